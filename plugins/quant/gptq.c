/* gptq.c - GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers").
 *
 * Each weight W[rows][cols] is quantized column by column; after a column is
 * rounded, its error is spread over the columns not yet quantized through the
 * inverse Hessian of the layer's squared output error, H = 2/n X^T X over the
 * calibration inputs X[n][cols] (the OBS update, applied to all rows at once
 * since H is shared by every row).  As in the paper:
 *   - dead columns (diag(H) = 0: an input that never fired) get H_ii = 1 and
 *     weight 0;
 *   - dampening: damp * mean(diag H) is added to the diagonal;
 *   - the updates use the upper Cholesky factor U of H^-1 (H^-1 = U^T U), whose
 *     row i is the update direction and U_ii the divisor;
 *   - lazy batches: columns go in blocks of `block`; inside a block the error
 *     updates the block only, the rest of the row gets one batched update per
 *     block (the paper's trick for memory traffic: U's trailing rows are read
 *     once per block and row tile instead of once per column);
 *   - act_order: columns in decreasing diag(H) order, with "static groups":
 *     each group's scale/min is fixed from the original weights in the original
 *     column order before any update, so llmlab_qmat's plain group layout holds
 *     whatever order the columns are quantized in.
 * Differences: the group scale/min are f16 and the asymmetric zero point is the
 * f16 group minimum (llmlab_qmat's I4_ASYM), not an integer zero; 2- and 3-bit
 * codes are stored in the 4-bit layout (accuracy of b bits, storage of 4).
 * Double precision for H, its factorization and the row updates.
 * docs/quantization.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"
#include "plugins/quant/calib_quant.h"

enum { ROW_TILE = 32 }; /* rows updated together: each U row read once per tile */
enum { NB = 64 };        /* panel width of the blocked factorization */

/* ---- the Hessian and the factor U ------------------------------------------------------
 *
 * GPTQ wants U upper with H^-1 = U^T U, H in quantization order.  With J the
 * order-reversing permutation and P = J H J = L L^T (lower Cholesky),
 * H^-1 = J L^-T L^-1 J = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper: so
 * U = J L^-1 J, one Cholesky and one triangular inverse (n^3 / 3 each) instead of
 * an inverse and a second Cholesky.  Both are blocked in panels of NB columns so
 * each pass over the matrix does NB columns' worth of work (memory traffic
 * n^3 / NB instead of n^3), and threaded over rows / columns; every entry is
 * summed in a fixed order, so the thread count never changes a bit. */

/* Four accumulators: independent add chains (a fixed order, so deterministic). */
static double dot(const double *a, const double *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

typedef struct {
    double *A;          /* [n][n] */
    const double *xt;   /* [n][m] inputs, transposed, reversed quantization order */
    double *diag;       /* [n] L's diagonal (inverse step) */
    int64_t n, m, k0, k1;
    double scale;
} fact_job;

static int tasks_of(llmlab_threadpool *pool, int64_t work) {
    int t = llmlab_threadpool_size(pool);
    return work < 64 || t < 1 ? 1 : 4 * t; /* interleaved rows: 4 per thread balance triangles */
}

/* Lower triangle of P = scale * xt xt^T. */
static void gram_task(void *arg, int t, int n_tasks) {
    fact_job *j = arg;
    for (int64_t a = t; a < j->n; a += n_tasks)
        for (int64_t b = 0; b <= a; b++) j->A[a * j->n + b] = j->scale * dot(j->xt + a * j->m, j->xt + b * j->m, j->m);
}

/* Panel [k0, k1): rows below the diagonal block, L_ij = (A_ij - sum_{k0<=k<j} L_ik L_jk) / L_jj. */
static void panel_task(void *arg, int t, int n_tasks) {
    fact_job *f = arg;
    int64_t n = f->n;
    for (int64_t i = f->k1 + t; i < n; i += n_tasks) {
        double *ri = f->A + i * n;
        for (int64_t j = f->k0; j < f->k1; j++) {
            const double *rj = f->A + j * n;
            ri[j] = (ri[j] - dot(ri + f->k0, rj + f->k0, j - f->k0)) / rj[j];
        }
    }
}

/* Trailing update: A_ij -= sum_{k in panel} L_ik L_jk for k1 <= j <= i. */
static void trailing_task(void *arg, int t, int n_tasks) {
    fact_job *f = arg;
    int64_t n = f->n, w = f->k1 - f->k0;
    for (int64_t i = f->k1 + t; i < n; i += n_tasks) {
        double *ri = f->A + i * n;
        for (int64_t j = f->k1; j <= i; j++) ri[j] -= dot(ri + f->k0, f->A + j * n + f->k0, w);
    }
}

/* Blocked right-looking Cholesky of the lower triangle in place; -1 if not
 * positive definite. */
static int cholesky(double *A, int64_t n, llmlab_threadpool *pool) {
    fact_job f = {A, NULL, NULL, n, 0, 0, 0, 0};
    for (int64_t k0 = 0; k0 < n; k0 += NB) {
        int64_t k1 = k0 + NB < n ? k0 + NB : n;
        for (int64_t j = k0; j < k1; j++) { /* the diagonal block */
            double *rj = A + j * n, s = rj[j] - dot(rj + k0, rj + k0, j - k0);
            if (!(s > 0)) return -1;
            rj[j] = sqrt(s);
            for (int64_t i = j + 1; i < k1; i++) {
                double *ri = A + i * n;
                ri[j] = (ri[j] - dot(ri + k0, rj + k0, j - k0)) / rj[j];
            }
        }
        f.k0 = k0, f.k1 = k1;
        llmlab_threadpool_run(pool, panel_task, &f, tasks_of(pool, n - k1));
        llmlab_threadpool_run(pool, trailing_task, &f, tasks_of(pool, n - k1));
    }
    return 0;
}

/* Row block [k0, k1) of M = L^-1, stored transposed: T = M^T in the upper
 * triangle (diagonal included; L's diagonal is in f->diag).  Task per column j
 * of M (row j of T, which only that task writes):
 *   M_ij = -(sum_{k=j}^{i-1} L_ik M_kj) / L_ii, the sum split at k0 into the rows
 *   done before (one long dot product) and the block's own rows (in order). */
static void inverse_task(void *arg, int t, int n_tasks) {
    fact_job *f = arg;
    int64_t n = f->n, k0 = f->k0, k1 = f->k1;
    for (int64_t j = t; j < k1; j += n_tasks) {
        double *tj = f->A + j * n; /* tj[k] = M_kj for k >= j */
        int64_t i = j < k0 ? k0 : j + 1;
        if (j >= k0) tj[j] = 1.0 / f->diag[j];
        for (; i < k1; i++) {
            const double *li = f->A + i * n;
            int64_t lo = j > k0 ? j : k0;
            double s = (j < k0 ? dot(li + j, tj + j, k0 - j) : 0.0) + dot(li + lo, tj + lo, i - lo);
            tj[i] = -s / f->diag[i];
        }
    }
}

/* A holds P (lower triangle).  On success its upper triangle holds U; 0, -1 not
 * positive definite, -2 out of memory. */
static int factor_u(double *A, int64_t n, llmlab_threadpool *pool) {
    if (cholesky(A, n, pool)) return -1;
    double *diag = malloc((size_t)n * sizeof *diag);
    if (!diag) return -2;
    for (int64_t i = 0; i < n; i++) diag[i] = A[i * n + i];
    fact_job f = {A, NULL, diag, n, 0, 0, 0, 0};
    for (int64_t k0 = 0; k0 < n; k0 += NB) {
        f.k0 = k0, f.k1 = k0 + NB < n ? k0 + NB : n;
        llmlab_threadpool_run(pool, inverse_task, &f, tasks_of(pool, f.k1));
    }
    free(diag);
    /* U_ab = M_{n-1-a, n-1-b} = T_{n-1-b, n-1-a}: an anti-transpose of the upper
     * triangle onto itself, done by swapping each pair once. */
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = a; b < n; b++) {
            int64_t a2 = n - 1 - b, b2 = n - 1 - a;
            if (a2 > a || (a2 == a && b2 > b)) {
                double v = A[a * n + b];
                A[a * n + b] = A[a2 * n + b2];
                A[a2 * n + b2] = v;
            }
        }
    return 0;
}

struct llmlab_gptq_hessian {
    int64_t cols;
    int64_t *perm;     /* [cols] column quantized at step a */
    uint8_t *dead;     /* [cols] by original column */
    double *U;         /* [cols][cols], upper */
};

void llmlab_gptq_hessian_free(llmlab_gptq_hessian *h) {
    if (!h) return;
    free(h->perm);
    free(h->dead);
    free(h->U);
    free(h);
}

/* ---- the column loop ------------------------------------------------------------------- */

typedef struct {
    const float *W;          /* [rows][cols] */
    const double *U;         /* [cols][cols], upper */
    const int64_t *perm;     /* [cols] column quantized at step a */
    const uint8_t *dead;     /* [cols] */
    int64_t rows, cols;
    const llmlab_gptq_opts *o;
    int8_t *codes;           /* [rows][cols] */
    float *scale, *min;      /* [rows][cols/group] */
    int failed;
} quant_job;

/* Static groups: scale/min of each group from the original row (dead columns 0). */
static void fit_groups(const quant_job *j, int64_t r, float *row, llmlab_qgroup *g) {
    int64_t ng = j->cols / j->o->group;
    for (int64_t c = 0; c < j->cols; c++) row[c] = j->dead[c] ? 0.0f : j->W[r * j->cols + c];
    for (int64_t k = 0; k < ng; k++) {
        g[k] = llmlab_qgroup_fit(row + k * j->o->group, j->o->group, j->o->bits, j->o->symmetric, 1.0f);
        j->scale[r * ng + k] = g[k].scale;
        j->min[r * ng + k] = g[k].min;
    }
}

/* Quantizes rows [r0, r0 + R): w[R][cols] the working rows in quantization order. */
static void quant_tile(quant_job *j, int64_t r0, int R, double *w, double *err, float *row, llmlab_qgroup *g) {
    int64_t cols = j->cols, ng = cols / j->o->group, B = j->o->block;
    for (int r = 0; r < R; r++) {
        fit_groups(j, r0 + r, row, g + (size_t)r * ng);
        for (int64_t a = 0; a < cols; a++) w[r * cols + a] = row[j->perm[a]];
    }
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        int64_t i2 = i1 + B < cols ? i1 + B : cols;
        for (int64_t a = i1; a < i2; a++) {
            const double *ua = j->U + a * cols;
            int64_t c = j->perm[a];
            for (int r = 0; r < R; r++) {
                double *wr = w + r * cols;
                const llmlab_qgroup *q = g + (size_t)r * ng + c / j->o->group;
                int code = llmlab_qgroup_code(q, (float)wr[a]);
                j->codes[(r0 + r) * cols + c] = (int8_t)code;
                double e = (wr[a] - (double)llmlab_qgroup_value(q, code)) / ua[a];
                err[r * B + (a - i1)] = e;
                for (int64_t b = a + 1; b < i2; b++) wr[b] -= e * ua[b];
            }
        }
        /* The lazy batch: the block's errors reach the rest of the row at once. */
        for (int64_t a = i1; a < i2; a++) {
            const double *ua = j->U + a * cols;
            for (int r = 0; r < R; r++) {
                double e = err[r * B + (a - i1)], *wr = w + r * cols;
                for (int64_t b = i2; b < cols; b++) wr[b] -= e * ua[b];
            }
        }
    }
}

static void quant_task(void *arg, int t, int n_tasks) {
    quant_job *j = arg;
    int64_t cols = j->cols, ng = cols / j->o->group;
    double *w = malloc((size_t)ROW_TILE * (size_t)cols * sizeof *w);
    double *err = malloc((size_t)ROW_TILE * (size_t)j->o->block * sizeof *err);
    float *row = malloc((size_t)cols * sizeof *row);
    llmlab_qgroup *g = malloc((size_t)ROW_TILE * (size_t)ng * sizeof *g);
    if (!w || !err || !row || !g) j->failed = 1;
    for (int64_t r0 = (int64_t)t * ROW_TILE; !j->failed && r0 < j->rows; r0 += (int64_t)n_tasks * ROW_TILE)
        quant_tile(j, r0, (int)(j->rows - r0 < ROW_TILE ? j->rows - r0 : ROW_TILE), w, err, row, g);
    free(w);
    free(err);
    free(row);
    free(g);
}

/* ---- the method ---------------------------------------------------------------------- */

static llmlab_status check_opts(const llmlab_gptq_opts *o, int64_t cols, llmlab_err *err) {
    if (o->bits < 2 || o->bits > 4)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "gptq: bits = %d, must be 2, 3 or 4", o->bits);
    if (o->group < 1 || cols % o->group)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "gptq: %lld columns are not a multiple of group = %d",
                                  (long long)cols, o->group);
    if (o->block < 1) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "gptq: block = %d, must be >= 1", o->block);
    if (!(o->damp >= 0)) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "gptq: damp = %g, must be >= 0", o->damp);
    return LLMLAB_OK;
}

/* diag(H) up to the factor 2/n, dead columns, and the quantization order. */
static void order_columns(const float *X, int64_t n, int64_t cols, int act_order, double *diag, uint8_t *dead,
                          int64_t *perm) {
    for (int64_t c = 0; c < cols; c++) diag[c] = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t c = 0; c < cols; c++) diag[c] += (double)X[t * cols + c] * X[t * cols + c];
    for (int64_t c = 0; c < cols; c++) {
        dead[c] = diag[c] == 0;
        perm[c] = c;
    }
    if (!act_order) return;
    /* Stable insertion sort: decreasing diag, ties by index (deterministic). */
    for (int64_t a = 1; a < cols; a++) {
        int64_t v = perm[a], b = a;
        for (; b > 0 && diag[perm[b - 1]] < diag[v]; b--) perm[b] = perm[b - 1];
        perm[b] = v;
    }
}

/* P = J H J (H damped, in quantization order) into A's lower triangle and
 * factored into U; retries with ten times the damping when rounding leaves P
 * indefinite (a rank-deficient H with damp 0). */
static llmlab_status build_u(const double *xt, int64_t n, int64_t cols, const uint8_t *dead, const int64_t *perm,
                             double damp, llmlab_threadpool *pool, double *A, llmlab_err *err) {
    fact_job gj = {A, xt, NULL, cols, n, 0, 0, 2.0 / (double)n};
    double tried = damp;
    for (int attempt = 0; attempt < 4; attempt++, damp = damp > 0 ? damp * 10 : 1e-6) {
        tried = damp;
        llmlab_threadpool_run(pool, gram_task, &gj, tasks_of(pool, cols));
        double mean = 0;
        for (int64_t p = 0; p < cols; p++) {
            if (dead[perm[cols - 1 - p]]) A[p * cols + p] = 1.0;
            mean += A[p * cols + p];
        }
        mean /= (double)cols;
        for (int64_t p = 0; p < cols; p++) A[p * cols + p] += damp * mean;
        int rc = factor_u(A, cols, pool);
        if (rc == 0) return LLMLAB_OK;
        if (rc == -2) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "gptq: out of memory");
    }
    return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                              "gptq: the Hessian of a %lld-column weight stays singular even with damp %g: raise damp "
                              "or the calibration tokens",
                              (long long)cols, tried);
}

llmlab_status llmlab_gptq_prepare(const float *X, int64_t n, int64_t cols, const llmlab_gptq_opts *o,
                                  llmlab_threadpool *pool, llmlab_gptq_hessian **out, llmlab_err *err) {
    *out = NULL;
    llmlab_status st = check_opts(o, cols, err);
    if (st) return st;
    llmlab_gptq_hessian *h = calloc(1, sizeof *h);
    double *diag = malloc((size_t)cols * sizeof *diag);
    double *xt = malloc((size_t)cols * (size_t)n * sizeof *xt);
    if (h) {
        h->cols = cols;
        h->perm = malloc((size_t)cols * sizeof *h->perm);
        h->dead = malloc((size_t)cols);
        h->U = malloc((size_t)cols * (size_t)cols * sizeof *h->U);
    }
    if (!h || !diag || !xt || !h->perm || !h->dead || !h->U)
        st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "gptq: out of memory for a %lld-column Hessian", (long long)cols);
    if (!st) {
        order_columns(X, n, cols, o->act_order, diag, h->dead, h->perm);
        /* Row p of xt: the input column quantized at step cols - 1 - p (P's order). */
        for (int64_t p = 0; p < cols; p++)
            for (int64_t t = 0; t < n; t++) xt[p * n + t] = X[t * cols + h->perm[cols - 1 - p]];
        st = build_u(xt, n, cols, h->dead, h->perm, o->damp, pool, h->U, err);
    }
    free(diag);
    free(xt);
    if (st) llmlab_gptq_hessian_free(h);
    else *out = h;
    return st;
}

llmlab_status llmlab_gptq_apply(const llmlab_gptq_hessian *h, const float *W, int64_t rows, int64_t cols,
                                const llmlab_gptq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                float *min, llmlab_err *err) {
    llmlab_status st = check_opts(o, cols, err);
    if (st) return st;
    if (h->cols != cols)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "gptq: a Hessian of %lld columns for a weight of %lld",
                                  (long long)h->cols, (long long)cols);
    quant_job j = {W, h->U, h->perm, h->dead, rows, cols, o, codes, scale, min, 0};
    int tiles = (int)((rows + ROW_TILE - 1) / ROW_TILE);
    int tasks = llmlab_threadpool_size(pool) > 0 ? llmlab_threadpool_size(pool) : 1;
    llmlab_threadpool_run(pool, quant_task, &j, tiles < tasks ? tiles : tasks);
    return j.failed ? llmlab_plugin_fail(err, LLMLAB_ENOMEM, "gptq: out of memory") : LLMLAB_OK;
}

llmlab_status llmlab_gptq_quantize(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                   const llmlab_gptq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                   float *min, llmlab_err *err) {
    llmlab_gptq_hessian *h;
    llmlab_status st = llmlab_gptq_prepare(X, n, cols, o, pool, &h, err);
    if (!st) st = llmlab_gptq_apply(h, W, rows, cols, o, pool, codes, scale, min, err);
    llmlab_gptq_hessian_free(h);
    return st;
}

/* ---- the plugin ---------------------------------------------------------------------- */

typedef struct {
    llmlab_cq_base b;
    llmlab_gptq_opts o;
    /* The last Hessian and the inputs it came from: q/k/v (and gate/up) read one
     * calibration buffer, so it is factored once for them. */
    const float *hess_x;
    llmlab_gptq_hessian *hess;
} gptq_state;

static const llmlab_param_spec gptq_params[] = {
    {"bits", LLMLAB_PARAM_INT, "4", 2, 4, NULL, "bits per weight code (2 and 3 are stored in the 4-bit layout)"},
    {"group", LLMLAB_PARAM_INT, "128", 32, 128, NULL, "weights per scale: 32, 64 or 128"},
    {"symmetric", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL, "symmetric codes (else scale and min per group)"},
    {"act_order", LLMLAB_PARAM_BOOL, "true", 1, 0, NULL, "quantize columns in decreasing diag(H) order"},
    {"damp", LLMLAB_PARAM_FLOAT, "0.01", 0, 1, NULL, "dampening: fraction of mean diag(H) added to the diagonal"},
    {"block", LLMLAB_PARAM_INT, "128", 1, 4096, NULL, "columns per lazy batch update"},
    LLMLAB_CALIB_PARAMS,
};

static void gptq_destroy(void *self) {
    if (!self) return;
    llmlab_gptq_hessian_free(((gptq_state *)self)->hess);
    ((gptq_state *)self)->b.h->free(self);
}

/* The Hessian of inputs X[n][cols], reused while the inputs stay the same. */
static llmlab_status hessian_for(gptq_state *s, const float *X, int64_t n, int64_t cols, llmlab_err *err) {
    if (s->hess && s->hess_x == X) return LLMLAB_OK;
    llmlab_gptq_hessian_free(s->hess);
    s->hess = NULL;
    s->hess_x = X;
    return llmlab_gptq_prepare(X, n, cols, &s->o, s->b.h->engine_pool(s->b.e), &s->hess, err);
}

static llmlab_status gptq_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    *self = NULL;
    gptq_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "gptq: out of memory");
    s->b = (llmlab_cq_base){h, e};
    s->o = (llmlab_gptq_opts){(int)h->param_int(p, "bits"), (int)h->param_int(p, "group"),
                              h->param_bool(p, "symmetric"), h->param_bool(p, "act_order"),
                              (int)h->param_int(p, "block"), h->param_float(p, "damp")};
    llmlab_status st = llmlab_cq_check_group(s->o.group, "gptq", err);
    if (!st) st = llmlab_cq_want_calibration(&s->b, p, "gptq", err);
    if (st) gptq_destroy(s);
    else *self = s;
    return st;
}

static llmlab_status gptq_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    gptq_state *s = self;
    float *W;
    const float *X;
    int64_t n;
    llmlab_status st = llmlab_cq_weight(&s->b, w, "gptq", &W, &X, &n, err);
    size_t ng = (size_t)w->rows * (size_t)(w->cols / s->o.group);
    int8_t *codes = malloc((size_t)w->rows * (size_t)w->cols);
    float *scale = malloc(ng * sizeof *scale), *min = malloc(ng * sizeof *min);
    if (!st && (!codes || !scale || !min)) st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "gptq: out of memory");
    if (!st) st = hessian_for(s, X, n, w->cols, err);
    if (!st)
        st = llmlab_gptq_apply(s->hess, W, w->rows, w->cols, &s->o, s->b.h->engine_pool(s->b.e), codes, scale, min,
                               err);
    if (!strcmp(w->name, "lm_head.weight")) { /* packed last: nothing shares its inputs */
        llmlab_gptq_hessian_free(s->hess);
        s->hess = NULL;
    }
    llmlab_qmat q = {0};
    llmlab_qformat f = s->o.symmetric ? LLMLAB_QF_I4_SYM : LLMLAB_QF_I4_ASYM;
    if (!st) st = llmlab_qmat_pack_codes(&q, f, codes, scale, min, w->rows, w->cols, s->o.group, NULL, err);
    if (!st) st = llmlab_cq_finish(&q, packed, bits, err);
    free(W);
    free(codes);
    free(scale);
    free(min);
    return st;
}

static const llmlab_quant_ops gptq_ops = {
    sizeof(llmlab_quant_ops), gptq_create,      gptq_destroy,          gptq_pack, llmlab_cq_unpack,
    llmlab_cq_matmul,         llmlab_cq_dequant, llmlab_cq_packed_bytes,
};

static const llmlab_plugin_desc gptq_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "gptq", "1.0",
    "GPTQ int4 group-wise: Hessian-based error compensation on calibration tokens (act_order, static groups)",
    gptq_params, (int)(sizeof gptq_params / sizeof gptq_params[0]), &gptq_ops);

const llmlab_plugin_desc *llmlab_builtin_gptq(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &gptq_desc;
}
