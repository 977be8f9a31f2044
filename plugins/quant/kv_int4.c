/* kv_int4.c - a KV cache in int4 after KIVI (Liu et al. 2024, "KIVI: A
 * Tuning-Free Asymmetric 2bit Quantization for KV Cache"): keys quantized per
 * channel over the tokens of a KV block (KIVI's group G = kv_block_size),
 * values per token in groups of `group` channels, both asymmetric (f16 scale
 * and minimum), and the newest `residual` positions kept in f32 (KIVI's R).
 * KIVI's paper quantizes to 2 bits with G = 32 and R = 128; here the codes are
 * 4 bits, G is the engine's kv_block_size (default 16: set kv_block_size = 32
 * to get KIVI's G), R defaults to 128.  Choose it as the engine's kv_quant
 * (Lua: kv_quant = {"kv_int4", residual = 64}). */
#include "kv_plugin.h"

static const llmlab_param_spec kv_int4_params[] = {
    {"group", LLMLAB_PARAM_INT, "32", 1, 1 << 16, NULL,
     "channels per scale of per-token rows (values; keys when key_per_channel is false); divides head_dim"},
    {"residual", LLMLAB_PARAM_INT, "128", 0, 1 << 24, NULL,
     "newest positions kept in f32 (KIVI's R; whole KV blocks cool, so up to kv_block_size - 1 more stay f32)"},
    {"key_per_channel", LLMLAB_PARAM_BOOL, "true", 1, 0, NULL,
     "keys per channel over a KV block's tokens (KIVI); false: per token like values"},
};

static llmlab_status kv_int4_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                    llmlab_err *err) {
    llmlab_kv_format f = {.size = sizeof f,
                          .dtype = LLMLAB_KV_INT4,
                          .group = (int)h->param_int(p, "group"),
                          .key_per_channel = h->param_bool(p, "key_per_channel"),
                          .asymmetric = 1,
                          .residual = (int)h->param_int(p, "residual")};
    return kv_plugin_create(self, h, e, &f, "kv_int4", err);
}

static const llmlab_quant_ops kv_int4_ops = {
    sizeof(llmlab_quant_ops), kv_int4_create, kv_plugin_destroy, NULL, NULL, NULL, NULL, NULL,
};

static const llmlab_plugin_desc kv_int4_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_QUANT, "kv_int4", "1.0",
                            "KV cache in int4 after KIVI: keys per channel, values per token, f32 residual (kv_quant)",
                            kv_int4_params, 3, &kv_int4_ops);

const llmlab_plugin_desc *llmlab_builtin_kv_int4(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &kv_int4_desc;
}
