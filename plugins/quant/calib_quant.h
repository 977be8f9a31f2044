/* calib_quant.h - what the calibrated quant plugins (awq, gptq, smoothquant)
 * share: the calibration parameters, group-wise int codes in llmlab_qmat's
 * I4 layout, the packed-weight ops, and each method's core algorithm (exported so
 * tests can run it on chosen weights and inputs).  docs/quantization.md. */
#ifndef LLMLAB_PLUGINS_QUANT_CALIB_QUANT_H
#define LLMLAB_PLUGINS_QUANT_CALIB_QUANT_H

#include <stdint.h>

#include "core/threadpool.h"
#include "kernels/cpu/quant.h"
#include "llmlab/plugin.h"

/* The calibration parameters every calibrated plugin declares (recorded with its
 * other params, so a run is reproducible from its results file). */
#define LLMLAB_CALIB_PARAMS                                                                                      \
    {"source", LLMLAB_PARAM_STRING, "generate", 1, 0, NULL,                                                   \
     "calibration tokens: generate (sampled from the model) | random | a text file | a .ids file"},          \
        {"tokens", LLMLAB_PARAM_INT, "512", 1, 1 << 20, NULL,                                                 \
         "calibration tokens run through the unquantized model (memory: 4 bytes x tokens x inputs)"},        \
        {"seed", LLMLAB_PARAM_INT, "0", 0, 9007199254740992.0, NULL, "seed of the generate/random stream"}

/* ---- group-wise integer codes (I4_SYM / I4_ASYM of kernels/cpu/quant.h) ----------- */

/* One group's quantizer, scale (rounded up) and min (rounded down) already f16
 * as the packed format stores them, the same rounding llmlab_qmat_pack uses.
 * Symmetric: w = scale * code, code in [lo, hi] = [-2^(b-1), 2^(b-1) - 1];
 * asymmetric: w = scale * code + min, code in [0, 2^b - 1]. */
typedef struct {
    float scale, min;
    int lo, hi;
} llmlab_qgroup;

/* Fits a group to w[n] (min/max; symmetric: absmax / hi).  clip in (0, 1]
 * shrinks the range (AWQ's clipping search): values outside it saturate. */
llmlab_qgroup llmlab_qgroup_fit(const float *w, int n, int bits, int symmetric, float clip);
int llmlab_qgroup_code(const llmlab_qgroup *g, float w);
static inline float llmlab_qgroup_value(const llmlab_qgroup *g, int code) {
    return g->scale * (float)code + g->min;
}

/* Round to nearest of W[rows][cols] group by group: codes[rows][cols] (or NULL),
 * scale/min[rows][cols/group], deq[rows][cols] (or NULL) the values the codes
 * stand for. */
void llmlab_qgroup_rtn(const float *W, int64_t rows, int64_t cols, int group, int bits, int symmetric,
                       int8_t *codes, float *scale, float *min, float *deq);

/* ---- the plugins' shared plumbing --------------------------------------------------- */

typedef struct {
    const llmlab_host *h;
    llmlab_engine *e;
} llmlab_cq_base;

/* Reads source/tokens/seed and asks the engine for calibration (call in create). */
llmlab_status llmlab_cq_want_calibration(const llmlab_cq_base *b, const llmlab_params *p, const char *plugin,
                                         llmlab_err *err);
/* w as f32 [rows][cols] (malloc'd, free()) and its calibration inputs x[*n][cols]. */
llmlab_status llmlab_cq_weight(const llmlab_cq_base *b, const llmlab_weight *w, const char *plugin, float **W,
                               const float **X, int64_t *n, llmlab_err *err);
/* Checks a group-size param: 32, 64 or 128 (llmlab_qmat's I4 groups). */
llmlab_status llmlab_cq_check_group(int group, const char *plugin, llmlab_err *err);
/* Wraps a filled qmat as the packed handle (takes ownership). */
llmlab_status llmlab_cq_finish(llmlab_qmat *q, void **packed, double *bits, llmlab_err *err);
/* The quant ops on a packed llmlab_qmat. */
void llmlab_cq_unpack(void *self, void *packed);
void llmlab_cq_matmul(void *self, const void *packed, float *y, const float *x, int M, llmlab_threadpool *pool);
void llmlab_cq_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out);
size_t llmlab_cq_packed_bytes(void *self, const void *packed);

/* ---- the methods ---------------------------------------------------------------------- */

/* GPTQ (Frantar et al. 2022) of W[rows][cols] on inputs X[n][cols]. */
typedef struct {
    int bits;        /* 2..4 (stored in the 4-bit layout) */
    int group;       /* columns per scale; groups are static (fixed from W before any update) */
    int symmetric;
    int act_order;   /* columns in decreasing diag(H) order */
    int block;       /* columns per lazy batch update */
    double damp;     /* fraction of mean diag(H) added to the diagonal */
} llmlab_gptq_opts;

/* The part every weight reading the same inputs shares (q/k/v, gate/up): the
 * quantization order, the dead columns and the factor U of the damped H^-1. */
typedef struct llmlab_gptq_hessian llmlab_gptq_hessian;
llmlab_status llmlab_gptq_prepare(const float *X, int64_t n, int64_t cols, const llmlab_gptq_opts *o,
                                  llmlab_threadpool *pool, llmlab_gptq_hessian **out, llmlab_err *err);
void llmlab_gptq_hessian_free(llmlab_gptq_hessian *h);
/* Quantizes W[rows][cols] with a prepared Hessian (same cols and opts). */
llmlab_status llmlab_gptq_apply(const llmlab_gptq_hessian *h, const float *W, int64_t rows, int64_t cols,
                                const llmlab_gptq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                float *min, llmlab_err *err);
/* prepare + apply: writes codes[rows][cols], scale/min[rows][cols/group].  EINVAL
 * naming the problem for a cols not a multiple of group or a Hessian that stays
 * singular. */
llmlab_status llmlab_gptq_quantize(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                   const llmlab_gptq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                   float *min, llmlab_err *err);

/* AWQ (Lin et al. 2023) of W[rows][cols] on inputs X[n][cols]. */
typedef struct {
    int bits, group, symmetric;
    int grid;        /* alpha in {0, 1/grid, ..., (grid-1)/grid} */
    int max_rows;    /* input rows the searches use at most */
    int clip;        /* 1: per-group clipping search after the scaling */
} llmlab_awq_opts;

/* Writes codes/scale/min of W diag(s) as llmlab_gptq_quantize does, and
 * in_scale[cols] = 1/s; *alpha (when non-NULL) is the chosen exponent. */
llmlab_status llmlab_awq_quantize(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                  const llmlab_awq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                  float *min, float *in_scale, double *alpha, llmlab_err *err);

/* SmoothQuant (Xiao et al. 2022): s[cols] with s_j = max|X_j|^alpha / max|W_j|^(1-alpha)
 * (both maxima floored at 1e-5, as the reference code does). */
void llmlab_smoothquant_scales(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                               double alpha, float *s);

#endif
