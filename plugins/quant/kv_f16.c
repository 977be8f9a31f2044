/* kv_f16.c - a KV cache in f16 or bf16: half the bytes of f32, rounded to
 * nearest even (f16 saturates at +-65504 rather than overflowing).  Choose it
 * as the engine's kv_quant (Lua: kv_quant = {"kv_f16", dtype = "bf16"}). */
#include <string.h>

#include "kv_plugin.h"

static const char *const dtypes[] = {"f16", "bf16", NULL};

static const llmlab_param_spec kv_f16_params[] = {
    {"dtype", LLMLAB_PARAM_ENUM, "f16", 1, 0, dtypes,
     "storage type: f16 (10-bit mantissa) or bf16 (f32's exponent range, 7-bit mantissa)"},
};

static llmlab_status kv_f16_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    int bf = !strcmp(h->param_string(p, "dtype"), "bf16");
    llmlab_kv_format f = {.size = sizeof f, .dtype = bf ? LLMLAB_KV_BF16 : LLMLAB_KV_F16};
    return kv_plugin_create(self, h, e, &f, "kv_f16", err);
}

static const llmlab_quant_ops kv_f16_ops = {
    sizeof(llmlab_quant_ops), kv_f16_create, kv_plugin_destroy, NULL, NULL, NULL, NULL, NULL,
};

static const llmlab_plugin_desc kv_f16_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_QUANT, "kv_f16", "1.0", "KV cache stored in f16 or bf16 (kv_quant)",
                            kv_f16_params, 1, &kv_f16_ops);

const llmlab_plugin_desc *llmlab_builtin_kv_f16(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &kv_f16_desc;
}
