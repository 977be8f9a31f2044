/* awq.c - AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for
 * LLM Compression and Acceleration").
 *
 * A few input channels carry much larger activations than the rest; their
 * weights matter most to the output.  AWQ scales those weight columns up before
 * group-wise rounding (W diag(s)) and the inputs down by the same factor (x / s),
 * which leaves the product unchanged but shrinks the relative rounding error of
 * the salient columns.  Per input channel s_j = mean|x_j|^alpha (normalized by
 * sqrt(max s * min s), as the reference code does), with alpha searched on a
 * grid {0, 1/grid, ..., (grid-1)/grid} to minimize the layer output error
 * || Q(W diag(s)) (x / s) - W x ||^2 on (a subsample of) the calibration inputs;
 * alpha = 0 is plain round-to-nearest, so the search never does worse on the
 * rows it sees.  Then, optionally, the clipping search: per output row and
 * group the range is shrunk to r * absmax for r in {1, 0.95, ..., 0.55},
 * keeping the r with the least output error of that group (skipped for q/k,
 * whose errors the attention softmax amplifies, as in the reference code).
 * The matmul folds 1/s into the activations (llmlab_qmat in_scale).
 * Differences: llm-awq searches one s per shared input (q/k/v together, folded
 * into the preceding RMSNorm); here each matrix gets its own s, since the
 * scaling is applied inside each matmul anyway; the search uses the layer's own
 * output, not the whole block's; the alpha search evaluates at most 4096 evenly
 * spaced weight rows (an LM head's vocabulary), the codes cover every row.
 * docs/quantization.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "plugins/builtins.h"
#include "plugins/plugin_util.h"
#include "plugins/quant/calib_quant.h"

enum { CLIP_STEPS = 10 }; /* ratios 1 - i/20, i < 10: llm-awq's n_grid 20, max_shrink 0.5 */
enum { SEARCH_ROWS = 4096 }; /* weight rows the alpha search evaluates at most */

/* ---- the scale search ------------------------------------------------------------------ */

typedef struct {
    const float *W;          /* [rows][cols] */
    const float *Xs;         /* [m][cols] the subsample */
    const float *Yref;       /* [m][rows] Xs W^T */
    int64_t rows, cols, m;
    const llmlab_awq_opts *o;
    llmlab_threadpool *pool;
    float *ws, *deq, *xs, *y; /* scratch: [rows][cols] x2, [m][cols], [m][rows] */
    float *gs, *gm;           /* scratch: [rows][cols/group] group scales and mins */
} search_job;

/* s_j = mean|x_j|^alpha / sqrt(max s * min s). */
static void scales_for(const double *mean, int64_t cols, double alpha, float *s) {
    double hi = 0, lo = INFINITY;
    for (int64_t c = 0; c < cols; c++) {
        double v = pow(fmax(mean[c], 1e-4), alpha);
        s[c] = (float)v;
        hi = fmax(hi, v);
        lo = fmin(lo, v);
    }
    double norm = sqrt(hi * lo);
    for (int64_t c = 0; c < cols; c++) s[c] = (float)(s[c] / norm);
}

/* || (Xs / s) Q(W diag(s))^T - Yref ||^2: the output error the packed weight gives. */
static double output_error(search_job *j, const float *s) {
    for (int64_t r = 0; r < j->rows; r++)
        for (int64_t c = 0; c < j->cols; c++) j->ws[r * j->cols + c] = j->W[r * j->cols + c] * s[c];
    llmlab_qgroup_rtn(j->ws, j->rows, j->cols, j->o->group, j->o->bits, j->o->symmetric, NULL, j->gs, j->gm, j->deq);
    for (int64_t t = 0; t < j->m; t++)
        for (int64_t c = 0; c < j->cols; c++) j->xs[t * j->cols + c] = j->Xs[t * j->cols + c] * (1.0f / s[c]);
    llmlab_cpu_matmul(j->y, j->xs, j->deq, LLMLAB_DTYPE_F32, (int)j->m, (int)j->rows, (int)j->cols, j->pool);
    double e = 0;
    for (int64_t i = 0; i < j->m * j->rows; i++) {
        double d = (double)j->y[i] - j->Yref[i];
        e += d * d;
    }
    return e;
}

/* ---- the clipping search --------------------------------------------------------------- */

typedef struct {
    const float *ws;         /* [rows][cols] W diag(s) */
    const double *gram;      /* [cols/group][group][group] per group of x / s */
    int64_t rows, cols;
    const llmlab_awq_opts *o;
    int do_clip;
    int8_t *codes;           /* [rows][cols] */
    float *scale, *min;      /* [rows][cols/group] */
} clip_job;

/* d^T G d for d = Q_r(w) - w over one group. */
static double group_error(const llmlab_qgroup *q, const float *w, const double *G, int n, double *d) {
    for (int i = 0; i < n; i++) d[i] = (double)llmlab_qgroup_value(q, llmlab_qgroup_code(q, w[i])) - w[i];
    double e = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < n; k++) s += G[i * n + k] * d[k];
        e += d[i] * s;
    }
    return e;
}

static void clip_task(void *arg, int t, int n_tasks) {
    clip_job *j = arg;
    int G = j->o->group;
    int64_t ng = j->cols / G;
    double d[128];
    for (int64_t r = t; r < j->rows; r += n_tasks)
        for (int64_t g = 0; g < ng; g++) {
            const float *w = j->ws + r * j->cols + g * G;
            llmlab_qgroup best = llmlab_qgroup_fit(w, G, j->o->bits, j->o->symmetric, 1.0f);
            if (j->do_clip) {
                double best_e = group_error(&best, w, j->gram + g * G * G, G, d);
                for (int i = 1; i < CLIP_STEPS; i++) {
                    llmlab_qgroup q = llmlab_qgroup_fit(w, G, j->o->bits, j->o->symmetric, 1.0f - (float)i / 20.0f);
                    double e = group_error(&q, w, j->gram + g * G * G, G, d);
                    if (e < best_e) best_e = e, best = q;
                }
            }
            j->scale[r * ng + g] = best.scale;
            j->min[r * ng + g] = best.min;
            for (int i = 0; i < G; i++) j->codes[r * j->cols + g * G + i] = (int8_t)llmlab_qgroup_code(&best, w[i]);
        }
}

/* Per group g: G_g = sum_t x_t,g x_t,g^T over the subsample, x = Xs / s. */
static void group_grams(const float *xs, int64_t m, int64_t cols, int G, double *gram) {
    memset(gram, 0, (size_t)cols * (size_t)G * sizeof *gram);
    for (int64_t t = 0; t < m; t++)
        for (int64_t g = 0; g < cols / G; g++) {
            const float *x = xs + t * cols + g * G;
            double *Gg = gram + g * G * G;
            for (int i = 0; i < G; i++)
                for (int k = 0; k < G; k++) Gg[i * G + k] += (double)x[i] * x[k];
        }
}

/* ---- the method ---------------------------------------------------------------------- */

static llmlab_status check_opts(const llmlab_awq_opts *o, int64_t cols, llmlab_err *err) {
    if (o->bits < 2 || o->bits > 4)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "awq: bits = %d, must be 2, 3 or 4", o->bits);
    if (o->group < 1 || o->group > 128 || cols % o->group)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "awq: %lld columns are not a multiple of group = %d",
                                  (long long)cols, o->group);
    if (o->grid < 1 || o->max_rows < 1)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "awq: grid = %d and max_rows = %d must be >= 1", o->grid,
                                  o->max_rows);
    return LLMLAB_OK;
}

/* Rows floor(i * n / m), i < m, of X[n][cols]: evenly spaced rows. */
static void subsample(const float *X, int64_t n, int64_t cols, int64_t m, float *Xs) {
    for (int64_t t = 0; t < m; t++) memcpy(Xs + t * cols, X + (t * n / m) * cols, (size_t)cols * sizeof *Xs);
}

/* The alpha search on m input rows and at most SEARCH_ROWS weight rows (an LM
 * head's 32000+ rows would make each grid point a full-vocabulary matmul; the
 * error curve over alpha is an average over rows, which an even subsample of
 * 4096 rows estimates closely).  Fills best_s[cols]. */
static llmlab_status search_scales(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                   int64_t m, const llmlab_awq_opts *o, llmlab_threadpool *pool, float *best_s,
                                   double *alpha_out, llmlab_err *err) {
    int64_t rs = rows < SEARCH_ROWS ? rows : SEARCH_ROWS, ng = cols / o->group;
    double *mean = calloc((size_t)cols, sizeof *mean);
    float *s = malloc((size_t)cols * sizeof *s), *Ws = malloc((size_t)(rs * cols) * sizeof *Ws);
    float *Xs = malloc((size_t)(m * cols) * sizeof *Xs), *Yref = malloc((size_t)(m * rs) * sizeof *Yref);
    float *ws = malloc((size_t)(rs * cols) * sizeof *ws), *deq = malloc((size_t)(rs * cols) * sizeof *deq);
    float *xs = malloc((size_t)(m * cols) * sizeof *xs), *y = malloc((size_t)(m * rs) * sizeof *y);
    float *gs = malloc((size_t)(rs * ng) * sizeof *gs), *gm = malloc((size_t)(rs * ng) * sizeof *gm);
    llmlab_status st = LLMLAB_OK;
    if (!mean || !s || !Ws || !Xs || !Yref || !ws || !deq || !xs || !y || !gs || !gm)
        st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "awq: out of memory for a [%lld][%lld] weight", (long long)rows,
                                (long long)cols);
    if (!st) {
        for (int64_t t = 0; t < n; t++)
            for (int64_t c = 0; c < cols; c++) mean[c] += fabs((double)X[t * cols + c]);
        for (int64_t c = 0; c < cols; c++) mean[c] /= (double)n;
        subsample(X, n, cols, m, Xs);
        subsample(W, rows, cols, rs, Ws);
        llmlab_cpu_matmul(Yref, Xs, Ws, LLMLAB_DTYPE_F32, (int)m, (int)rs, (int)cols, pool);
        search_job j = {Ws, Xs, Yref, rs, cols, m, o, pool, ws, deq, xs, y, gs, gm};
        double best = INFINITY;
        for (int k = 0; k < o->grid; k++) {
            double alpha = (double)k / o->grid;
            scales_for(mean, cols, alpha, s);
            double e = output_error(&j, s);
            if (e < best) best = e, *alpha_out = alpha, memcpy(best_s, s, (size_t)cols * sizeof *s);
        }
    }
    free(mean);
    free(s);
    free(Ws);
    free(Xs);
    free(Yref);
    free(ws);
    free(deq);
    free(xs);
    free(y);
    free(gs);
    free(gm);
    return st;
}

/* Codes of W diag(s), each group's range clipped where that lowers its output
 * error on the m input rows (x / s). */
static llmlab_status code_groups(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n, int64_t m,
                                 const float *s, const llmlab_awq_opts *o, llmlab_threadpool *pool, int8_t *codes,
                                 float *scale, float *min, llmlab_err *err) {
    float *ws = malloc((size_t)(rows * cols) * sizeof *ws);
    float *xs = o->clip ? malloc((size_t)(m * cols) * sizeof *xs) : NULL;
    double *gram = o->clip ? malloc((size_t)cols * (size_t)o->group * sizeof *gram) : NULL;
    if (!ws || (o->clip && (!xs || !gram))) {
        free(ws);
        free(xs);
        free(gram);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "awq: out of memory for a [%lld][%lld] weight", (long long)rows,
                                  (long long)cols);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) ws[r * cols + c] = W[r * cols + c] * s[c];
    if (o->clip) {
        subsample(X, n, cols, m, xs);
        for (int64_t t = 0; t < m; t++)
            for (int64_t c = 0; c < cols; c++) xs[t * cols + c] *= 1.0f / s[c];
        group_grams(xs, m, cols, o->group, gram);
    }
    clip_job cj = {ws, gram, rows, cols, o, o->clip, codes, scale, min};
    llmlab_threadpool_run(pool, clip_task, &cj, 4 * llmlab_threadpool_size(pool));
    free(ws);
    free(xs);
    free(gram);
    return LLMLAB_OK;
}

llmlab_status llmlab_awq_quantize(const float *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                  const llmlab_awq_opts *o, llmlab_threadpool *pool, int8_t *codes, float *scale,
                                  float *min, float *in_scale, double *alpha_out, llmlab_err *err) {
    llmlab_status st = check_opts(o, cols, err);
    if (st) return st;
    int64_t m = n < o->max_rows ? n : o->max_rows;
    float *s = malloc((size_t)cols * sizeof *s);
    double alpha = 0;
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "awq: out of memory");
    st = search_scales(W, rows, cols, X, n, m, o, pool, s, &alpha, err);
    if (!st) st = code_groups(W, rows, cols, X, n, m, s, o, pool, codes, scale, min, err);
    if (!st)
        for (int64_t c = 0; c < cols; c++) in_scale[c] = 1.0f / s[c];
    if (alpha_out) *alpha_out = alpha;
    free(s);
    return st;
}

/* ---- the plugin ---------------------------------------------------------------------- */

typedef struct {
    llmlab_cq_base b;
    llmlab_awq_opts o;
} awq_state;

static const llmlab_param_spec awq_params[] = {
    {"group", LLMLAB_PARAM_INT, "128", 32, 128, NULL, "weights per scale: 32, 64 or 128"},
    {"symmetric", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL, "symmetric codes (AWQ: false, scale and min per group)"},
    {"grid", LLMLAB_PARAM_INT, "20", 1, 1000, NULL, "alpha grid points in [0, 1)"},
    {"max_rows", LLMLAB_PARAM_INT, "512", 1, 1 << 20, NULL, "calibration rows the searches use at most"},
    {"clip", LLMLAB_PARAM_BOOL, "true", 1, 0, NULL, "search a clipping ratio per group (not for q/k)"},
    LLMLAB_CALIB_PARAMS,
};

static void awq_destroy(void *self) {
    if (self) ((awq_state *)self)->b.h->free(self);
}

static llmlab_status awq_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    *self = NULL;
    awq_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "awq: out of memory");
    s->b = (llmlab_cq_base){h, e};
    s->o = (llmlab_awq_opts){4, (int)h->param_int(p, "group"), h->param_bool(p, "symmetric"),
                             (int)h->param_int(p, "grid"), (int)h->param_int(p, "max_rows"), h->param_bool(p, "clip")};
    llmlab_status st = llmlab_cq_check_group(s->o.group, "awq", err);
    if (!st) st = llmlab_cq_want_calibration(&s->b, p, "awq", err);
    if (st) awq_destroy(s);
    else *self = s;
    return st;
}

static int is_query_or_key(const char *name) { return strstr(name, "q_proj") || strstr(name, "k_proj"); }

static llmlab_status awq_pack(void *self, const llmlab_weight *w, void **packed, double *bits, llmlab_err *err) {
    awq_state *s = self;
    float *W;
    const float *X;
    int64_t n;
    llmlab_status st = llmlab_cq_weight(&s->b, w, "awq", &W, &X, &n, err);
    size_t ng = (size_t)w->rows * (size_t)(w->cols / s->o.group);
    int8_t *codes = malloc((size_t)w->rows * (size_t)w->cols);
    float *scale = malloc(ng * sizeof *scale), *min = malloc(ng * sizeof *min);
    float *in_scale = malloc((size_t)w->cols * sizeof *in_scale);
    if (!st && (!codes || !scale || !min || !in_scale))
        st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "awq: out of memory");
    llmlab_awq_opts o = s->o;
    o.clip = o.clip && !is_query_or_key(w->name);
    if (!st)
        st = llmlab_awq_quantize(W, w->rows, w->cols, X, n, &o, s->b.h->engine_pool(s->b.e), codes, scale, min,
                                 in_scale, NULL, err);
    llmlab_qmat q = {0};
    llmlab_qformat f = s->o.symmetric ? LLMLAB_QF_I4_SYM : LLMLAB_QF_I4_ASYM;
    if (!st) st = llmlab_qmat_pack_codes(&q, f, codes, scale, min, w->rows, w->cols, s->o.group, in_scale, err);
    if (!st) st = llmlab_cq_finish(&q, packed, bits, err);
    free(W);
    free(codes);
    free(scale);
    free(min);
    free(in_scale);
    return st;
}

static const llmlab_quant_ops awq_ops = {
    sizeof(llmlab_quant_ops), awq_create,        awq_destroy,           awq_pack, llmlab_cq_unpack,
    llmlab_cq_matmul,         llmlab_cq_dequant, llmlab_cq_packed_bytes,
};

static const llmlab_plugin_desc awq_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "awq", "1.0",
    "AWQ int4 group-wise: activation-aware channel scales searched on calibration tokens, then clipping",
    awq_params, (int)(sizeof awq_params / sizeof awq_params[0]), &awq_ops);

const llmlab_plugin_desc *llmlab_builtin_awq(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &awq_desc;
}
