/* workload.c - seeded request lists: arrivals, lengths, classes, cancellations,
 * traces; the HDF5 record of a request list and its replay (workload.h). */
#include "workload.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"
#include "tokenizer.h"
#include "workload_internal.h"

/* One random stream per quantity (workload.h: changing one distribution leaves
 * the others' draws alone). */
enum {
    STREAM_ARRIVAL = 0x57a1,
    STREAM_PROMPT_LEN = 0x57a2,
    STREAM_OUTPUT_LEN = 0x57a3,
    STREAM_TOKENS = 0x57a4,
    STREAM_CLASS = 0x57a5,
    STREAM_CANCEL = 0x57a6
};

#define ZIPF_MAX_SUPPORT 10000000

void llmlab_workload_spec_init(llmlab_workload_spec *s) {
    memset(s, 0, sizeof *s);
    s->n = 0;
    s->arrival = LLMLAB_ARRIVAL_AT_ONCE;
    s->rate = 1.0;
    s->burstiness = 1.0;
    s->concurrency = 1;
    s->time_scale = 1.0;
    s->prompt = (llmlab_len_dist){LLMLAB_LEN_FIXED, 32, 0, NULL, 1, 0};
    s->output = (llmlab_len_dist){LLMLAB_LEN_FIXED, 32, 0, NULL, 1, 0};
    s->vocab = 256;
}

/* ---- random draws ------------------------------------------------------------------ */

/* Uniform in (0, 1): never 0, so logs and powers stay finite. */
static double uniform_open(llmlab_rng *r) {
    double u;
    do u = llmlab_rng_uniform_d(r);
    while (u <= 0.0);
    return u;
}

/* Gamma(shape k, scale 1): Marsaglia and Tsang's method, with the k < 1 boost
 * Gamma(k) = Gamma(k + 1) * U^(1/k). */
static double gamma_draw(llmlab_rng *r, double k) {
    if (k < 1.0) return gamma_draw(r, k + 1.0) * pow(uniform_open(r), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = llmlab_rng_normal(r), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = uniform_open(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

/* Uniform integer in [0, n) without modulo bias worth noticing (53-bit draw). */
static int64_t uniform_index(llmlab_rng *r, int64_t n) {
    int64_t k = (int64_t)(llmlab_rng_uniform_d(r) * (double)n);
    return k < n ? k : n - 1;
}

/* ---- length distributions ------------------------------------------------------------ */

typedef struct {
    llmlab_len_dist d;
    double mu;         /* lognormal: mean of the log */
    double *cdf;       /* zipf: [support] cumulative probabilities */
    int support;
    int *values;       /* empirical: [n_values] */
    int n_values;
} len_sampler;

/* least: the smallest length that makes sense (1 for prompts, 0 for outputs). */
static llmlab_status sampler_init(len_sampler *s, const llmlab_len_dist *d, const char *what, int least,
                                  llmlab_err *err) {
    memset(s, 0, sizeof *s);
    s->d = *d;
    if (d->min < 0 || (d->max > 0 && d->max < d->min))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s clamp [%d, %d] is empty", what, d->min, d->max);
    switch (d->kind) {
    case LLMLAB_LEN_FIXED:
        if (d->a < least || d->a != floor(d->a) || d->a > 1e9)
            return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s fixed length %g must be an integer >= %d", what,
                                  d->a, least);
        return LLMLAB_OK;
    case LLMLAB_LEN_UNIFORM:
        if (d->a < 0 || d->b < d->a || d->a != floor(d->a) || d->b != floor(d->b) || d->b > 1e9)
            return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s uniform [%g, %g] needs integers 0 <= lo <= hi",
                                  what, d->a, d->b);
        return LLMLAB_OK;
    case LLMLAB_LEN_LOGNORMAL:
        if (!(d->a > 0) || !(d->b >= 0) || d->b > 10)
            return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s lognormal needs mean > 0 and 0 <= sigma <= 10 "
                                  "(got mean %g, sigma %g)", what, d->a, d->b);
        s->mu = log(d->a) - 0.5 * d->b * d->b; /* so that E[length] = mean */
        return LLMLAB_OK;
    case LLMLAB_LEN_ZIPF: {
        if (!(d->a > 0) || d->b < 1 || d->b > ZIPF_MAX_SUPPORT || d->b != floor(d->b))
            return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s zipf needs s > 0 and an integer max in [1, %d] "
                                  "(got s %g, max %g)", what, ZIPF_MAX_SUPPORT, d->a, d->b);
        s->support = (int)d->b;
        if (!(s->cdf = malloc((size_t)s->support * sizeof *s->cdf)))
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        double sum = 0;
        for (int k = 1; k <= s->support; k++) s->cdf[k - 1] = sum += pow((double)k, -d->a);
        for (int k = 0; k < s->support; k++) s->cdf[k] /= sum;
        return LLMLAB_OK;
    }
    case LLMLAB_LEN_EMPIRICAL:
        if (!d->file) return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s empirical needs a file", what);
        return llmlab_read_lengths(d->file, &s->values, &s->n_values, err);
    }
    return llmlab_err_set(err, LLMLAB_EINVAL, "workload: %s: unknown distribution %d", what, (int)d->kind);
}

static void sampler_free(len_sampler *s) {
    free(s->cdf);
    free(s->values);
}

/* A length: a fixed one as given, a drawn one clamped to [min, max]. */
static int sampler_draw(const len_sampler *s, llmlab_rng *r) {
    if (s->d.kind == LLMLAB_LEN_FIXED) return (int)s->d.a;
    double x = 0;
    switch (s->d.kind) {
    case LLMLAB_LEN_FIXED: x = s->d.a; break;
    case LLMLAB_LEN_UNIFORM: x = s->d.a + (double)uniform_index(r, (int64_t)(s->d.b - s->d.a) + 1); break;
    case LLMLAB_LEN_LOGNORMAL: x = round(exp(s->mu + s->d.b * llmlab_rng_normal(r))); break;
    case LLMLAB_LEN_ZIPF: { /* first k with cdf >= u */
        double u = llmlab_rng_uniform_d(r);
        int lo = 0, hi = s->support - 1;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (s->cdf[mid] >= u) hi = mid;
            else lo = mid + 1;
        }
        x = lo + 1;
        break;
    }
    case LLMLAB_LEN_EMPIRICAL: x = s->values[uniform_index(r, s->n_values)]; break;
    }
    if (x < s->d.min) x = s->d.min;
    if (s->d.max > 0 && x > s->d.max) x = s->d.max;
    return x > 1e9 ? 1000000000 : (int)x;
}

/* ---- the workload ------------------------------------------------------------------ */

void llmlab_workload_free(llmlab_workload *w) {
    if (!w) return;
    for (int i = 0; w->texts && i < w->n; i++) free(w->texts[i]);
    free(w->texts);
    free(w->tokens);
    free(w->reqs);
    free(w);
}

static llmlab_workload *workload_alloc(int n) {
    llmlab_workload *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = n;
    if (!(w->reqs = calloc((size_t)(n > 0 ? n : 1), sizeof *w->reqs))) {
        free(w);
        return NULL;
    }
    return w;
}

/* Points every prompt with tokens into w->tokens (after it was (re)allocated);
 * offsets[i] = -1 for a request without tokens. */
static void link_prompts(llmlab_workload *w, const int64_t *offsets) {
    for (int i = 0; i < w->n; i++) w->reqs[i].prompt = offsets[i] >= 0 ? w->tokens + offsets[i] : NULL;
}

static llmlab_status check_spec(const llmlab_workload_spec *s, llmlab_err *err) {
    if (s->arrival != LLMLAB_ARRIVAL_TRACE && s->n < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: n = %d must be >= 0", s->n);
    int open_loop = s->arrival == LLMLAB_ARRIVAL_POISSON || s->arrival == LLMLAB_ARRIVAL_GAMMA;
    if (open_loop && !(s->rate > 0 && isfinite(s->rate)))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: rate %g must be a positive number of requests/s", s->rate);
    if (s->arrival == LLMLAB_ARRIVAL_GAMMA && !(s->burstiness > 0 && isfinite(s->burstiness)))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: burstiness %g must be > 0 (1 = Poisson)", s->burstiness);
    if (s->arrival == LLMLAB_ARRIVAL_CLOSED && (s->concurrency < 1 || !(s->think_s >= 0)))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: closed loop needs concurrency >= 1 (got %d) and "
                              "think_s >= 0 (got %g)", s->concurrency, s->think_s);
    if (s->arrival == LLMLAB_ARRIVAL_TRACE && (!s->trace || !(s->time_scale > 0)))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: a trace needs a file and time_scale > 0");
    if (!s->lengths_only && (s->vocab_lo < 0 || s->vocab <= s->vocab_lo))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: vocab range [%d, %d) is empty", s->vocab_lo, s->vocab);
    if (!(s->cancel_frac >= 0 && s->cancel_frac <= 1))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: cancel fraction %g must be in [0, 1]", s->cancel_frac);
    if (s->cancel_frac > 0 && !(s->cancel_min_s > 0 && s->cancel_max_s >= s->cancel_min_s))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: cancel_after_s range [%g, %g] needs 0 < min <= max",
                              s->cancel_min_s, s->cancel_max_s);
    double total = 0;
    for (int c = 0; c < s->n_classes; c++) {
        if (!(s->class_shares[c] >= 0))
            return llmlab_err_set(err, LLMLAB_EINVAL, "workload: priority class %d share %g must be >= 0", c,
                                  s->class_shares[c]);
        total += s->class_shares[c];
    }
    if (s->n_classes > 0 && !(total > 0))
        return llmlab_err_set(err, LLMLAB_EINVAL, "workload: priority class shares add up to 0");
    return LLMLAB_OK;
}

/* Arrival times (and closed-loop releases) of n requests.  The first request of
 * an open loop arrives at 0 and the gaps follow it, as vLLM's benchmark sends. */
static void draw_arrivals(const llmlab_workload_spec *s, llmlab_workload *w) {
    llmlab_rng r;
    llmlab_rng_seed(&r, s->seed, STREAM_ARRIVAL);
    double t = 0;
    for (int i = 0; i < w->n; i++) {
        llmlab_request *q = &w->reqs[i];
        switch (s->arrival) {
        case LLMLAB_ARRIVAL_POISSON:
            if (i > 0) t += -log(uniform_open(&r)) / s->rate;
            q->arrival_s = t;
            break;
        case LLMLAB_ARRIVAL_GAMMA: /* shape k, scale 1 / (rate k): mean gap 1 / rate, CV^2 1 / k */
            if (i > 0) t += gamma_draw(&r, s->burstiness) / (s->rate * s->burstiness);
            q->arrival_s = t;
            break;
        case LLMLAB_ARRIVAL_CLOSED: /* the client of request i - C sends this one next */
            q->released_by = i >= s->concurrency ? i - s->concurrency + 1 : 0;
            q->arrival_s = i >= s->concurrency ? s->think_s : 0;
            break;
        case LLMLAB_ARRIVAL_AT_ONCE:
        case LLMLAB_ARRIVAL_TRACE: break;
        }
    }
}

/* Priority classes and cancellations. */
static void draw_classes(const llmlab_workload_spec *s, llmlab_workload *w) {
    llmlab_rng rc, rx;
    llmlab_rng_seed(&rc, s->seed, STREAM_CLASS);
    llmlab_rng_seed(&rx, s->seed, STREAM_CANCEL);
    double total = 0;
    for (int c = 0; c < s->n_classes; c++) total += s->class_shares[c];
    for (int i = 0; i < w->n; i++) {
        if (s->n_classes > 0) {
            double u = llmlab_rng_uniform_d(&rc) * total, acc = 0;
            int c = 0;
            while (c < s->n_classes - 1 && (acc += s->class_shares[c]) <= u) c++;
            w->reqs[i].priority = s->class_values ? s->class_values[c] : c;
        }
        if (s->cancel_frac > 0) {
            double u = llmlab_rng_uniform_d(&rx), v = llmlab_rng_uniform_d(&rx);
            if (u < s->cancel_frac)
                w->reqs[i].cancel_after_s = s->cancel_min_s + v * (s->cancel_max_s - s->cancel_min_s);
        }
    }
}

/* Fills prompt tokens: the trace's ids, else uniform draws from the vocabulary;
 * texts wait in w->texts. */
static llmlab_status draw_tokens(const llmlab_workload_spec *s, const llmlab_trace_row *rows, llmlab_workload *w,
                                 llmlab_err *err) {
    /* texts were moved from rows to w->texts */
    int64_t total = 0;
    int64_t *off = malloc((size_t)(w->n > 0 ? w->n : 1) * sizeof *off);
    if (!off) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int i = 0; i < w->n; i++) {
        int has = !s->lengths_only && !(w->texts && w->texts[i]);
        off[i] = has ? total : -1;
        total += has ? w->reqs[i].prompt_len : 0;
    }
    w->n_tokens = total;
    if (!(w->tokens = malloc((size_t)(total ? total : 1) * sizeof *w->tokens))) {
        free(off);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    llmlab_rng r;
    llmlab_rng_seed(&r, s->seed, STREAM_TOKENS);
    int span = s->vocab - s->vocab_lo;
    for (int i = 0; i < w->n; i++) {
        if (off[i] < 0) continue;
        int32_t *t = w->tokens + off[i];
        if (rows && rows[i].ids) memcpy(t, rows[i].ids, (size_t)rows[i].n_ids * sizeof *t);
        else
            for (int k = 0; k < w->reqs[i].prompt_len; k++) t[k] = s->vocab_lo + (int32_t)uniform_index(&r, span);
    }
    link_prompts(w, off);
    free(off);
    return LLMLAB_OK;
}

/* Requests of a trace: arrival (shifted to start at 0, scaled), lengths, texts. */
static llmlab_status from_trace(const llmlab_workload_spec *s, llmlab_trace_row *rows, llmlab_workload *w,
                                llmlab_err *err) {
    double t0 = w->n ? rows[0].arrival_s : 0;
    for (int i = 0; i < w->n; i++) {
        llmlab_request *q = &w->reqs[i];
        llmlab_trace_row *r = &rows[i];
        q->arrival_s = (r->arrival_s - t0) * s->time_scale;
        q->max_new = r->output_len;
        q->prompt_len = r->ids ? r->n_ids : r->prompt_len > 0 ? r->prompt_len : 0;
        if (r->has_priority) q->priority = r->priority;
        if (r->has_cancel) q->cancel_after_s = r->cancel_after_s;
        if (r->ids && !s->lengths_only)
            for (int k = 0; k < r->n_ids; k++)
                if (r->ids[k] >= s->vocab && s->vocab > 0)
                    return llmlab_err_set(err, LLMLAB_EINVAL, "trace %s: request %d: token %d is outside the "
                                          "vocabulary (size %d)", s->trace, i, r->ids[k], s->vocab);
        if (r->text) {
            if (!w->texts && !(w->texts = calloc((size_t)w->n, sizeof *w->texts)))
                return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
            w->texts[i] = r->text; /* moved */
            r->text = NULL;
        }
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_workload_generate(const llmlab_workload_spec *s, const llmlab_tokenizer *tok, int add_special,
                                       llmlab_workload **out, llmlab_err *err) {
    *out = NULL;
    llmlab_status st = check_spec(s, err);
    if (st) return st;
    llmlab_trace_row *rows = NULL;
    int n = s->n;
    if (s->arrival == LLMLAB_ARRIVAL_TRACE && (st = llmlab_trace_read(s->trace, s->n, &rows, &n, err))) return st;
    llmlab_workload *w = workload_alloc(n);
    if (!w) {
        llmlab_trace_free(rows, n);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) w->reqs[i].id = i, w->reqs[i].stop_at_eos = s->stop_at_eos;
    draw_arrivals(s, w);
    draw_classes(s, w);
    if (rows) {
        st = from_trace(s, rows, w, err);
    } else {
        len_sampler ps, os;
        st = sampler_init(&ps, &s->prompt, "prompt length", 1, err);
        if (!st && (st = sampler_init(&os, &s->output, "output length", 0, err))) sampler_free(&ps);
        if (!st) {
            llmlab_rng rp, ro;
            llmlab_rng_seed(&rp, s->seed, STREAM_PROMPT_LEN);
            llmlab_rng_seed(&ro, s->seed, STREAM_OUTPUT_LEN);
            for (int i = 0; i < n; i++) {
                int p = sampler_draw(&ps, &rp);
                w->reqs[i].prompt_len = p > 0 ? p : 1; /* an empty prompt cannot run */
                w->reqs[i].max_new = sampler_draw(&os, &ro);
            }
            sampler_free(&ps);
            sampler_free(&os);
        }
    }
    if (!st) st = draw_tokens(s, rows, w, err);
    llmlab_trace_free(rows, n);
    if (!st && tok && w->texts) st = llmlab_workload_encode(w, tok, add_special, err);
    if (st) {
        llmlab_workload_free(w);
        return st;
    }
    *out = w;
    return LLMLAB_OK;
}

llmlab_status llmlab_workload_encode(llmlab_workload *w, const llmlab_tokenizer *tok, int add_special,
                                     llmlab_err *err) {
    if (!w->texts) return LLMLAB_OK;
    int32_t **ids = calloc((size_t)w->n, sizeof *ids);
    int64_t *off = malloc((size_t)w->n * sizeof *off), total = w->n_tokens;
    if (!ids || !off) {
        free(ids);
        free(off);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < w->n && !st; i++) {
        off[i] = w->reqs[i].prompt ? w->reqs[i].prompt - w->tokens : -1;
        if (!w->texts[i]) continue;
        int n = 0;
        st = llmlab_tokenizer_encode(tok, w->texts[i], strlen(w->texts[i]), add_special, &ids[i], &n, err);
        if (st) llmlab_err_prefix(err, "workload request %d: encoding its prompt", i);
        else if (n == 0)
            st = llmlab_err_set(err, LLMLAB_EINVAL, "workload request %d: the prompt encodes to no tokens", i);
        w->reqs[i].prompt_len = n;
        off[i] = total;
        total += n;
    }
    int32_t *grown = st ? NULL : realloc(w->tokens, (size_t)(total ? total : 1) * sizeof *grown);
    if (!st && !grown) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!st) {
        w->tokens = grown;
        for (int i = 0; i < w->n; i++)
            if (ids[i]) memcpy(w->tokens + off[i], ids[i], (size_t)w->reqs[i].prompt_len * sizeof *grown);
        w->n_tokens = total;
        link_prompts(w, off);
        for (int i = 0; i < w->n; i++) free(w->texts[i]);
        free(w->texts);
        w->texts = NULL;
    }
    for (int i = 0; i < w->n; i++) free(ids[i]);
    free(ids);
    free(off);
    return st;
}

llmlab_status llmlab_workload_from_requests(const llmlab_request *reqs, int n, llmlab_workload **out,
                                            llmlab_err *err) {
    *out = NULL;
    llmlab_workload *w = workload_alloc(n);
    int64_t *off = malloc((size_t)(n > 0 ? n : 1) * sizeof *off), total = 0;
    if (!w || !off) {
        llmlab_workload_free(w);
        free(off);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        off[i] = reqs[i].prompt ? total : -1;
        total += reqs[i].prompt ? reqs[i].prompt_len : 0;
    }
    if (!(w->tokens = malloc((size_t)(total ? total : 1) * sizeof *w->tokens))) {
        llmlab_workload_free(w);
        free(off);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    w->n_tokens = total;
    for (int i = 0; i < n; i++) {
        w->reqs[i] = reqs[i];
        w->reqs[i].sampling = NULL;
        if (off[i] >= 0) memcpy(w->tokens + off[i], reqs[i].prompt, (size_t)reqs[i].prompt_len * sizeof *w->tokens);
    }
    link_prompts(w, off);
    free(off);
    *out = w;
    return LLMLAB_OK;
}

/* ---- HDF5 record and replay ------------------------------------------------------------ */

static const char *const int_cols[] = {"id", "prompt_len", "max_new", "priority", "released_by", "stop_at_eos",
                                       "prompt_offset"};
enum { N_INT_COLS = 7 };

static int64_t int_field(const llmlab_request *q, int c, int64_t offset) {
    switch (c) {
    case 0: return q->id;
    case 1: return q->prompt_len;
    case 2: return q->max_new;
    case 3: return q->priority;
    case 4: return q->released_by;
    case 5: return q->stop_at_eos;
    default: return offset;
    }
}

llmlab_status llmlab_workload_record(llmlab_run *run, const llmlab_request *reqs, int n, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "workload", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    size_t N = (size_t)(n > 0 ? n : 1);
    int64_t *col = malloc(N * sizeof *col), *off = malloc(N * sizeof *off), total = 0;
    double *dcol = malloc(N * sizeof *dcol);
    llmlab_status st = col && off && dcol ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int i = 0; i < n && !st; i++) {
        off[i] = reqs[i].prompt ? total : -1;
        total += reqs[i].prompt ? reqs[i].prompt_len : 0;
    }
    for (int c = 0; c < N_INT_COLS && !st; c++) {
        st = llmlab_table_column(t, int_cols[c], LLMLAB_COL_INT, c == 1 || c == 2 ? "tokens" : "", err);
        for (int i = 0; i < n; i++) col[i] = int_field(&reqs[i], c, off[i]);
        if (!st && n) st = llmlab_table_append_ints(t, int_cols[c], col, (size_t)n, err);
    }
    for (int c = 0; c < 2 && !st; c++) {
        const char *name = c ? "cancel_after_s" : "arrival_s";
        st = llmlab_table_column(t, name, LLMLAB_COL_DOUBLE, "s", err);
        for (int i = 0; i < n; i++) dcol[i] = c ? reqs[i].cancel_after_s : reqs[i].arrival_s;
        if (!st && n) st = llmlab_table_append_doubles(t, name, dcol, (size_t)n, err);
    }
    llmlab_table *tt = st ? NULL : llmlab_run_table(run, "workload_tokens", err);
    if (!st && !tt) st = err ? err->code : LLMLAB_EINVAL;
    if (!st) st = llmlab_table_column(tt, "token", LLMLAB_COL_INT, "", err);
    for (int i = 0; i < n && !st; i++) { /* one request's prompt at a time: no second copy of all tokens */
        if (!reqs[i].prompt) continue;
        int64_t buf[512];
        for (int k = 0; k < reqs[i].prompt_len && !st; k += 512) {
            int m = reqs[i].prompt_len - k < 512 ? reqs[i].prompt_len - k : 512;
            for (int j = 0; j < m; j++) buf[j] = reqs[i].prompt[k + j];
            st = llmlab_table_append_ints(tt, "token", buf, (size_t)m, err);
        }
    }
    free(col);
    free(off);
    free(dcol);
    return st;
}

/* Reads an int column of the workload table into out[n] (checking the length). */
static llmlab_status read_ints(const char *path, const char *run, const char *table, const char *name, int64_t **out,
                               size_t *n, llmlab_err *err) {
    llmlab_status st = llmlab_results_column_int(path, run, table, name, out, n, err);
    if (st) llmlab_err_prefix(err, "replaying the workload of run '%s' in %s", run, path);
    return st;
}

llmlab_status llmlab_workload_read(const char *path, const char *run, llmlab_workload **out, llmlab_err *err) {
    *out = NULL;
    int64_t *cols[N_INT_COLS] = {0}, *tok = NULL;
    double *arr = NULL, *cancel = NULL;
    size_t n = 0, m, n_tok = 0;
    llmlab_status st = LLMLAB_OK;
    for (int c = 0; c < N_INT_COLS && !st; c++) {
        st = read_ints(path, run, "workload", int_cols[c], &cols[c], &m, err);
        if (!st && c == 0) n = m;
        if (!st && m != n) st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: run '%s': workload columns differ in length",
                                               path, run);
    }
    for (int c = 0; c < 2 && !st; c++) {
        st = llmlab_results_column_double(path, run, "workload", c ? "cancel_after_s" : "arrival_s", c ? &cancel : &arr,
                                          &m, err);
        if (!st && m != n)
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: run '%s': workload columns differ in length", path, run);
    }
    if (!st) st = read_ints(path, run, "workload_tokens", "token", &tok, &n_tok, err);
    llmlab_workload *w = st ? NULL : workload_alloc((int)n);
    if (!st && !w) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!st && !(w->tokens = malloc((n_tok ? n_tok : 1) * sizeof *w->tokens)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (size_t k = 0; !st && k < n_tok; k++) w->tokens[k] = (int32_t)tok[k];
    for (size_t i = 0; !st && i < n; i++) {
        llmlab_request *q = &w->reqs[i];
        int64_t off = cols[6][i];
        *q = (llmlab_request){.id = (int)cols[0][i], .prompt_len = (int)cols[1][i], .max_new = (int)cols[2][i],
                              .priority = (int)cols[3][i], .released_by = (int)cols[4][i],
                              .stop_at_eos = (int)cols[5][i], .arrival_s = arr[i], .cancel_after_s = cancel[i]};
        if (off >= 0 && (q->prompt_len < 0 || (uint64_t)off + (uint64_t)q->prompt_len > n_tok))
            st = llmlab_err_set(err, LLMLAB_EFORMAT,
                                "%s: run '%s': workload request %zu's prompt [%lld, +%d) lies outside workload_tokens "
                                "(%zu rows)", path, run, i, (long long)off, q->prompt_len, n_tok);
        q->prompt = off >= 0 ? w->tokens + off : NULL;
    }
    if (w) w->n_tokens = (int64_t)n_tok;
    for (int c = 0; c < N_INT_COLS; c++) free(cols[c]);
    free(tok);
    free(arr);
    free(cancel);
    if (st) {
        llmlab_workload_free(w);
        return st;
    }
    *out = w;
    return LLMLAB_OK;
}
