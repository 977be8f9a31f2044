/* smoothquant.c - SmoothQuant W8A8 (Xiao et al. 2022, "SmoothQuant: Accurate
 * and Efficient Post-Training Quantization for Large Language Models").
 *
 * Int8 activations per token lose the small channels when a few channels carry
 * outliers (the token's absmax sets the step).  SmoothQuant migrates part of
 * that range into the weights: per input channel
 *   s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
 * (max|X_j| over the calibration tokens, max|W_j| over the weight's rows), the
 * weight becomes W diag(s), quantized to int8 per output channel, and at run
 * time each token's x / s is quantized to int8 with its own absmax scale;
 * int32 dot products (llmlab_qmat W8A8 with in_scale = 1/s).  alpha = 0.5 is
 * the paper's default; alpha = 0 moves everything to the activations' side.
 * Differences: the paper folds 1/s into the preceding LayerNorm, so q/k/v
 * (and gate/up) share one s computed from their concatenated weights; here each
 * matrix has its own s (the scaling happens inside its matmul), and every
 * linear layer including o_proj, down_proj and the LM head is W8A8 (the paper's
 * O3 setting keeps a few of them in other precisions).  docs/quantization.md. */
#include <math.h>
#include <stdlib.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"
#include "plugins/quant/calib_quant.h"

void llmlab_smoothquant_scales(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                               double alpha, float *s) {
    for (int64_t c = 0; c < cols; c++) {
        double ax = 0, wx = 0;
        for (int64_t t = 0; t < n; t++) ax = fmax(ax, fabs((double)X[t * cols + c]));
        for (int64_t r = 0; r < rows; r++) wx = fmax(wx, fabs((double)W[r * cols + c]));
        double v = pow(fmax(ax, 1e-5), alpha) / pow(fmax(wx, 1e-5), 1.0 - alpha);
        s[c] = (float)fmax(v, 1e-5);
    }
}

typedef struct {
    llmlab_cq_base b;
    double alpha;
} sq_state;

static const llmlab_param_spec sq_params[] = {
    {"alpha", LLMLAB_PARAM_FLOAT, "0.5", 0, 1, NULL,
     "migration strength: 0 = all range on activations, 1 = on weights"},
    LLMLAB_CALIB_PARAMS,
};

static void sq_destroy(void *self) {
    if (self) ((sq_state *)self)->b.h->free(self);
}

static llmlab_status sq_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                               llmlab_err *err) {
    *self = NULL;
    sq_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "smoothquant: out of memory");
    s->b = (llmlab_cq_base){h, e};
    s->alpha = h->param_float(p, "alpha");
    llmlab_status st = llmlab_cq_want_calibration(&s->b, p, "smoothquant", err);
    if (st) sq_destroy(s);
    else *self = s;
    return st;
}

static llmlab_status sq_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    sq_state *s = self;
    float *W;
    const float *X;
    int64_t n;
    llmlab_status st = llmlab_cq_weight(&s->b, w, "smoothquant", &W, &X, &n, err);
    float *sc = malloc((size_t)w->cols * sizeof *sc);
    if (!st && !sc) st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "smoothquant: out of memory");
    llmlab_qmat q = {0};
    if (!st) {
        llmlab_smoothquant_scales(W, w->rows, w->cols, X, n, s->alpha, sc);
        for (int64_t r = 0; r < w->rows; r++)
            for (int64_t c = 0; c < w->cols; c++) W[r * w->cols + c] *= sc[c];
        for (int64_t c = 0; c < w->cols; c++) sc[c] = 1.0f / sc[c]; /* in_scale: x / s */
        st = llmlab_qmat_pack(&q, LLMLAB_QF_W8A8, W, w->rows, w->cols, 0, 0, sc, err);
    }
    if (!st) st = llmlab_cq_finish(&q, packed, bits, err);
    free(W);
    free(sc);
    return st;
}

static const llmlab_quant_ops sq_ops = {
    sizeof(llmlab_quant_ops), sq_create,         sq_destroy,            sq_pack, llmlab_cq_unpack,
    llmlab_cq_matmul,         llmlab_cq_dequant, llmlab_cq_packed_bytes,
};

static const llmlab_plugin_desc sq_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "smoothquant", "1.0",
    "SmoothQuant W8A8: per-channel smoothing s = max|X|^alpha / max|W|^(1-alpha), int8 weights and activations",
    sq_params, (int)(sizeof sq_params / sizeof sq_params[0]), &sq_ops);

const llmlab_plugin_desc *llmlab_builtin_smoothquant(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &sq_desc;
}
