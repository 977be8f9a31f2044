/* int4.c - 4-bit weights by round to nearest (docs/quantization.md "Plugins int8,
 * int4, fp8").
 *   format=group  `group` weights of a row (32, 64 or 128) share an f16 scale:
 *                 symmetric=true:  w ~ s * q, q in [-8, 7], s = max|w| / 7
 *                                  (4 + 16/group bits: 4.125 at group 128);
 *                 symmetric=false: w ~ s * q + m, q in [0, 15], m = min,
 *                                  s = (max - min) / 15, f16 m too (4 + 32/group:
 *                                  4.25 at group 128).
 *   format=q4_0   llama.cpp's Q4_0 (blocks of 32, f16 scale, 4.5 bits).
 *   format=q4_k   llama.cpp's Q4_K (super-blocks of 256: 8 sub-blocks of 32 with
 *                 6-bit scales and mins, 4.5 bits), packed here by plain min/max.
 * The group formats keep f32 activations and dequantize in registers (W4A16);
 * q4_0 and q4_k quantize activations to int8 blocks of 32 (integer dot
 * products, as llama.cpp).  q4_0/q4_k fix their own block and symmetry, so
 * `group` and `symmetric` apply to format=group only.  Packing reads the weight
 * through the host's weight_rows (any stored dtype).  AWQ and GPTQ (awq.c,
 * gptq.c) choose better codes for the same group layout. */
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/quant.h"
#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
    llmlab_qformat format;
    int group;
} int4_state;

static const char *const int4_formats[] = {"group", "q4_0", "q4_k", NULL};

static const llmlab_param_spec int4_params[] = {
    {"group", LLMLAB_PARAM_INT, "128", 32, 128, NULL, "weights per f16 scale: 32, 64 or 128 (format=group)"},
    {"symmetric", LLMLAB_PARAM_BOOL, "true", 1, 0, NULL,
     "true: codes -8..7 times a scale; false: codes 0..15 times a scale plus a min (format=group)"},
    {"format", LLMLAB_PARAM_ENUM, "group", 1, 0, int4_formats,
     "group: llmlab's group layout; q4_0 / q4_k: llama.cpp's block layouts (4.5 bits)"},
};

static llmlab_status int4_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, weight_rows) + sizeof h->weight_rows || !h->weight_rows)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "int4 needs a host with ABI 1.3 (weight_rows)");
    int group = (int)h->param_int(p, "group");
    if (group != 32 && group != 64 && group != 128)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "int4: group = %d, expected 32, 64 or 128", group);
    const char *fmt = h->param_string(p, "format");
    int4_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "int4: out of memory");
    s->h = h;
    s->group = group;
    if (!strcmp(fmt, "q4_0")) s->format = LLMLAB_QF_Q4_0;
    else if (!strcmp(fmt, "q4_k")) s->format = LLMLAB_QF_Q4_K;
    else s->format = h->param_bool(p, "symmetric") ? LLMLAB_QF_I4_SYM : LLMLAB_QF_I4_ASYM;
    /* q4_0 / q4_k are symmetric-free block layouts of 32 (sub-)blocks: say so when
     * the other params ask for something else (32 and the default 128 are quiet). */
    if (s->format != LLMLAB_QF_I4_SYM && s->format != LLMLAB_QF_I4_ASYM &&
        ((group != 32 && group != 128) || !h->param_bool(p, "symmetric")))
        h->log(LLMLAB_LOG_WARN, "int4", "format=%s has its own block layout: group and symmetric are ignored", fmt);
    *self = s;
    return LLMLAB_OK;
}

static void int4_destroy(void *self) {
    if (self) ((int4_state *)self)->h->free(self);
}

typedef struct {
    const llmlab_host *h;
    const llmlab_weight *w;
} int4_reader;

static void int4_read(void *ctx, int64_t row0, int64_t n, float *out) {
    const int4_reader *r = ctx;
    r->h->weight_rows(r->w, row0, n, out);
}

static llmlab_status int4_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    int4_state *s = self;
    llmlab_qmat *q = s->h->alloc(sizeof *q);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "int4: out of memory");
    int4_reader rd = {s->h, w};
    llmlab_status st = llmlab_qmat_pack_rows(q, s->format, int4_read, &rd, w->rows, w->cols, s->group, 0, NULL, err);
    if (st) {
        s->h->free(q);
        return st;
    }
    *bits = llmlab_qmat_bits(q);
    *packed = q;
    return LLMLAB_OK;
}

static void int4_unpack(void *self, void *packed) {
    llmlab_qmat_free(packed);
    ((int4_state *)self)->h->free(packed);
}

static void int4_matmul(void *self, const void *packed, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_qmat_matmul(packed, y, x, M, pool);
}

static void int4_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out) {
    llmlab_qmat_dequant_rows(packed, row0, n, out);
}

static size_t int4_packed_bytes(void *self, const void *packed) { return llmlab_qmat_bytes(packed); }

static const llmlab_quant_ops int4_ops = {
    sizeof(llmlab_quant_ops), int4_create, int4_destroy, int4_pack, int4_unpack, int4_matmul,
    int4_dequant, int4_packed_bytes,
};

static const llmlab_plugin_desc int4_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "int4", "1.0", "4-bit weights, round to nearest: f16 scale per group (sym/asym), or ggml Q4_0/Q4_K",
    int4_params, (int)(sizeof int4_params / sizeof int4_params[0]), &int4_ops);

const llmlab_plugin_desc *llmlab_builtin_quant_int4(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &int4_desc;
}
