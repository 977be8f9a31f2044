/* fp8.c - fp8 e4m3 weights (OCP: 4 exponent bits, 3 mantissa bits, max 448),
 * emulated on the CPU (docs/quantization.md "Plugins int8, int4, fp8").
 *   scale=channel  one f32 scale per output channel: w ~ s_row * e4m3(w / s_row),
 *                  s_row = max|row| / 448 (8 + 32/cols bits per weight);
 *   scale=tensor   one f32 scale for the whole matrix (8 bits + 32 per matrix).
 * Codes round to nearest even and saturate at +-448.  Activations stay f32; the
 * kernel widens the codes to f32 in registers (W8A16 semantics, as Hopper's fp8
 * GEMMs would with bf16 activations, without their fp8 activations).  Packing
 * reads the weight through the host's weight_rows (any stored dtype). */
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/quant.h"
#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
    int per_row;
} fp8_state;

static const char *const fp8_scales[] = {"channel", "tensor", NULL};

static const llmlab_param_spec fp8_params[] = {
    {"scale", LLMLAB_PARAM_ENUM, "channel", 1, 0, fp8_scales,
     "channel: an f32 scale per output channel; tensor: one f32 scale per matrix"},
};

static llmlab_status fp8_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, weight_rows) + sizeof h->weight_rows || !h->weight_rows)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "fp8 needs a host with ABI 1.3 (weight_rows)");
    fp8_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "fp8: out of memory");
    s->h = h;
    s->per_row = strcmp(h->param_string(p, "scale"), "channel") == 0;
    *self = s;
    return LLMLAB_OK;
}

static void fp8_destroy(void *self) {
    if (self) ((fp8_state *)self)->h->free(self);
}

typedef struct {
    const llmlab_host *h;
    const llmlab_weight *w;
} fp8_reader;

static void fp8_read(void *ctx, int64_t row0, int64_t n, float *out) {
    const fp8_reader *r = ctx;
    r->h->weight_rows(r->w, row0, n, out);
}

static llmlab_status fp8_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    fp8_state *s = self;
    llmlab_qmat *q = s->h->alloc(sizeof *q);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "fp8: out of memory");
    fp8_reader rd = {s->h, w};
    llmlab_status st =
        llmlab_qmat_pack_rows(q, LLMLAB_QF_FP8, fp8_read, &rd, w->rows, w->cols, 0, s->per_row, NULL, err);
    if (st) {
        s->h->free(q);
        return st;
    }
    *bits = llmlab_qmat_bits(q);
    *packed = q;
    return LLMLAB_OK;
}

static void fp8_unpack(void *self, void *packed) {
    llmlab_qmat_free(packed);
    ((fp8_state *)self)->h->free(packed);
}

static void fp8_matmul(void *self, const void *packed, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_qmat_matmul(packed, y, x, M, pool);
}

static void fp8_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out) {
    llmlab_qmat_dequant_rows(packed, row0, n, out);
}

static size_t fp8_packed_bytes(void *self, const void *packed) { return llmlab_qmat_bytes(packed); }

static const llmlab_quant_ops fp8_ops = {
    sizeof(llmlab_quant_ops), fp8_create, fp8_destroy, fp8_pack, fp8_unpack, fp8_matmul,
    fp8_dequant, fp8_packed_bytes,
};

static const llmlab_plugin_desc fp8_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "fp8", "1.0", "fp8 e4m3 weights with per-channel or per-tensor scales (CPU emulation)",
    fp8_params, (int)(sizeof fp8_params / sizeof fp8_params[0]), &fp8_ops);

const llmlab_plugin_desc *llmlab_builtin_quant_fp8(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &fp8_desc;
}
