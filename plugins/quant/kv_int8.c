/* kv_int8.c - a KV cache in int8: every token's K and V rows, per head, in
 * groups of `group` channels with one symmetric absmax scale each (f16, rounded
 * up so no code clips): 8 bits per value plus 16 bits per group.  Rows are
 * encoded as they are written, so nothing stays in f32 and every cache
 * operation (keep, eviction, compaction) moves the codes and scales unchanged.
 * Choose it as the engine's kv_quant (Lua: kv_quant = "kv_int8"). */
#include "kv_plugin.h"

static const llmlab_param_spec kv_int8_params[] = {
    {"group", LLMLAB_PARAM_INT, "0", 0, 1 << 16, NULL,
     "channels per scale within a head (divides head_dim); 0 = the whole head"},
};

static llmlab_status kv_int8_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                    llmlab_err *err) {
    llmlab_kv_format f = {.size = sizeof f, .dtype = LLMLAB_KV_INT8, .group = (int)h->param_int(p, "group")};
    return kv_plugin_create(self, h, e, &f, "kv_int8", err);
}

static const llmlab_quant_ops kv_int8_ops = {
    sizeof(llmlab_quant_ops), kv_int8_create, kv_plugin_destroy, NULL, NULL, NULL, NULL, NULL,
};

static const llmlab_plugin_desc kv_int8_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_QUANT, "kv_int8", "1.0",
                            "KV cache in int8, per token, symmetric f16 scale per group (kv_quant)", kv_int8_params, 1,
                            &kv_int8_ops);

const llmlab_plugin_desc *llmlab_builtin_kv_int8(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &kv_int8_desc;
}
