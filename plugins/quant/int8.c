/* int8.c - int8 weights, two layouts (docs/quantization.md "Plugins int8, int4, fp8"):
 *   scheme=channel  one f32 scale per output channel (row), symmetric round to
 *                   nearest; activations stay f32 and the weight is widened in
 *                   registers (W8A16).  8 + 32/cols bits per weight.
 *   scheme=q8_0     llama.cpp's Q8_0: blocks of 32 weights with an f16 scale
 *                   (8.5 bits); activations are quantized to int8 blocks of 32
 *                   and the dot products are integer, as llama.cpp does.
 * Packing reads the weight through the host's weight_rows, so any stored dtype
 * works (f32, f16, bf16, or a GGUF file's blocks, which are then requantized).
 * The kernels are kernels/cpu/quant.h (AVX2 with a scalar reference). */
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/quant.h"
#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
    llmlab_qformat format;
} int8_state;

static const char *const int8_schemes[] = {"channel", "q8_0", NULL};

static const llmlab_param_spec int8_params[] = {
    {"scheme", LLMLAB_PARAM_ENUM, "channel", 1, 0, int8_schemes,
     "channel: an f32 scale per output channel, f32 activations (W8A16); q8_0: ggml Q8_0 blocks of 32, int8 "
     "activations (8.5 bits)"},
};

static llmlab_status int8_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, weight_rows) + sizeof h->weight_rows || !h->weight_rows)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "int8 needs a host with ABI 1.3 (weight_rows)");
    int8_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "int8: out of memory");
    s->h = h;
    s->format = strcmp(h->param_string(p, "scheme"), "q8_0") == 0 ? LLMLAB_QF_Q8_0 : LLMLAB_QF_I8_ROW;
    *self = s;
    return LLMLAB_OK;
}

static void int8_destroy(void *self) {
    if (self) ((int8_state *)self)->h->free(self);
}

/* The row reader the packer pulls f32 rows through (chunk by chunk). */
typedef struct {
    const llmlab_host *h;
    const llmlab_weight *w;
} int8_reader;

static void int8_read(void *ctx, int64_t row0, int64_t n, float *out) {
    const int8_reader *r = ctx;
    r->h->weight_rows(r->w, row0, n, out);
}

static llmlab_status int8_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    int8_state *s = self;
    llmlab_qmat *q = s->h->alloc(sizeof *q);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "int8: out of memory");
    int8_reader rd = {s->h, w};
    llmlab_status st = llmlab_qmat_pack_rows(q, s->format, int8_read, &rd, w->rows, w->cols, 0, 0, NULL, err);
    if (st) {
        s->h->free(q);
        return st;
    }
    *bits = llmlab_qmat_bits(q);
    *packed = q;
    return LLMLAB_OK;
}

static void int8_unpack(void *self, void *packed) {
    llmlab_qmat_free(packed);
    ((int8_state *)self)->h->free(packed);
}

static void int8_matmul(void *self, const void *packed, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_qmat_matmul(packed, y, x, M, pool);
}

static void int8_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out) {
    llmlab_qmat_dequant_rows(packed, row0, n, out);
}

static size_t int8_packed_bytes(void *self, const void *packed) { return llmlab_qmat_bytes(packed); }

static const llmlab_quant_ops int8_ops = {
    sizeof(llmlab_quant_ops), int8_create, int8_destroy, int8_pack, int8_unpack, int8_matmul,
    int8_dequant, int8_packed_bytes,
};

static const llmlab_plugin_desc int8_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "int8", "1.0", "int8 weights: per output channel (W8A16) or ggml Q8_0 blocks", int8_params,
    (int)(sizeof int8_params / sizeof int8_params[0]), &int8_ops);

const llmlab_plugin_desc *llmlab_builtin_quant_int8(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &int8_desc;
}
