/* profile.c - timing a grid of iteration compositions on the real backend and
 * fitting the cost model (profile.h). */
#include "profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "engine.h"
#include "error.h"
#include "forward.h"
#include "generate.h"
#include "rng.h"
#include "threadpool.h"

/* ---- machine ------------------------------------------------------------------------------ */

void llmlab_machine_name(char *buf, size_t cap, int n_threads) {
    char host[128] = "unknown", cpu[160] = "unknown cpu", line[512];
    gethostname(host, sizeof host - 1);
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(cpu, sizeof cpu, "%s", c + 2);
                cpu[strcspn(cpu, "\n")] = 0;
            }
            break;
        }
    if (f) fclose(f);
    snprintf(buf, cap, "%s / %s (%d threads)", host, cpu, n_threads);
}

/* ---- the grid ------------------------------------------------------------------------------ */

typedef struct {
    int decode, ctx;     /* D sequences decoding with ctx cached tokens */
    int prefill, cached; /* one chunk of prefill tokens after cached ones (0 = none) */
} grid_point;

typedef struct {
    llmlab_ctx *ctx;
    llmlab_batch *b;
    llmlab_rng rng;
    int vocab, max_seqs, budget, reps, fastest;
    int *len;             /* [max_seqs + 1] committed tokens of each sequence */
} prof;

static int32_t rand_tok(prof *P) { return (int32_t)(llmlab_rng_next(&P->rng) % (uint64_t)P->vocab); }

/* Brings sequence seq to exactly n committed tokens (untimed): truncates, or
 * prefills the missing ones in budget-sized chunks. */
static llmlab_status set_len(prof *P, int seq, int n, llmlab_err *err) {
    llmlab_kv *kv = llmlab_ctx_kv(P->ctx);
    if (P->len[seq] > n) {
        llmlab_status st = llmlab_kv_truncate(kv, seq, n, err);
        if (st) return st;
        P->len[seq] = n;
    }
    while (P->len[seq] < n) {
        int chunk = n - P->len[seq] < P->budget ? n - P->len[seq] : P->budget;
        llmlab_batch_clear(P->b);
        for (int k = 0; k < chunk; k++) llmlab_batch_add(P->b, rand_tok(P), seq, P->len[seq] + k, 0, -1);
        const llmlab_outputs *out;
        llmlab_status st = llmlab_forward(P->ctx, P->b, &out, err);
        if (st) return st;
        llmlab_kv_commit(kv, seq);
        P->len[seq] += chunk;
    }
    return LLMLAB_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The time kept of n repetitions v[n] (sorted in place): the median, or the
 * fastest (the machine's own speed: other load only ever adds time). */
static double pick(double *v, int n, int fastest) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return fastest ? v[0] : v[n / 2];
}

/* Times one grid point: reps forwards (median or fastest kept), caches put back after each. */
static llmlab_status time_point(prof *P, const grid_point *g, llmlab_iter_shape *it, double *t, llmlab_err *err) {
    int pf_seq = P->max_seqs;
    llmlab_status st = LLMLAB_OK;
    for (int d = 0; d < g->decode && !st; d++) st = set_len(P, d, g->ctx, err);
    if (!st && g->prefill > 0) st = set_len(P, pf_seq, g->cached, err);
    if (st) return st;
    memset(it, 0, sizeof *it);
    for (int d = 0; d < g->decode; d++) llmlab_iter_add(it, 0, g->ctx);
    if (g->prefill > 0) llmlab_iter_add(it, g->prefill, g->cached);
    double times[16];
    llmlab_kv *kv = llmlab_ctx_kv(P->ctx);
    for (int r = 0; r < P->reps && !st; r++) {
        llmlab_batch_clear(P->b);
        for (int d = 0; d < g->decode; d++) llmlab_batch_add(P->b, rand_tok(P), d, g->ctx, LLMLAB_TOK_LOGITS, -1);
        for (int k = 0; k < g->prefill; k++)
            llmlab_batch_add(P->b, rand_tok(P), pf_seq, g->cached + k, k == g->prefill - 1 ? LLMLAB_TOK_LOGITS : 0, -1);
        const llmlab_outputs *out;
        double t0 = llmlab_now();
        st = llmlab_forward(P->ctx, P->b, &out, err);
        times[r] = llmlab_now() - t0;
        for (int d = 0; d < g->decode && !st; d++) st = llmlab_kv_truncate(kv, d, g->ctx, err);
        if (!st && g->prefill > 0) st = llmlab_kv_truncate(kv, pf_seq, g->cached, err);
    }
    if (st) return st;
    *t = pick(times, P->reps, P->fastest);
    return LLMLAB_OK;
}

/* The grid for a model with max_pos positions, budget tokens per batch and
 * max_seqs decoding sequences; returns the point count (into g, cap entries). */
static int make_grid(grid_point *g, int cap, int quick, int budget, int max_seqs, int max_pos) {
    static const int ctx_full[] = {32, 256, 768}, ctx_quick[] = {32, 128};
    static const int dec_full[] = {1, 2, 4, 8, 16, 32, 64, 128}, dec_quick[] = {1, 4, 16};
    static const int pf_full[] = {16, 64, 128, 256, 512, 1024}, pf_quick[] = {16, 64};
    static const int q_full[] = {0, 256}, q_quick[] = {0, 64};
    const int *cs = quick ? ctx_quick : ctx_full, *ds = quick ? dec_quick : dec_full;
    const int *ps = quick ? pf_quick : pf_full, *qs = quick ? q_quick : q_full;
    int nc = quick ? 2 : 3, nd = quick ? 3 : 8, np = quick ? 2 : 6, nq = 2, n = 0;
    for (int c = 0; c < nc; c++) /* pure decode */
        for (int d = 0; d < nd; d++)
            if (cs[c] + 1 < max_pos && ds[d] <= max_seqs && ds[d] <= budget && n < cap)
                g[n++] = (grid_point){ds[d], cs[c], 0, 0};
    for (int q = 0; q < nq; q++) /* pure prefill */
        for (int p = 0; p < np; p++)
            if (ps[p] <= budget && qs[q] + ps[p] <= max_pos && n < cap) g[n++] = (grid_point){0, 0, ps[p], qs[q]};
    for (int d = 1; d < nd; d += 2) /* mixed: decodes plus one chunk */
        for (int p = 1; p < np; p += 2)
            if (ds[d] <= max_seqs && ds[d] + ps[p] <= budget && cs[1] + 1 < max_pos && ps[p] <= max_pos && n < cap)
                g[n++] = (grid_point){ds[d], cs[1], ps[p], 0};
    return n;
}

/* ---- the engine's overhead around the forward ---------------------------------------------- */

/* Runs a short continuous-batching workload through the engine `reps` times (all
 * requests at t = 0: every run makes the same steps), keeps each decode-only
 * iteration's median (or fastest) time from its start to the next start, and
 * fits (that time - predicted forward) = a + b * decode_seqs (a, b >= 0). */
static llmlab_status engine_overhead(const llmlab_model *m, const llmlab_profile_opts *o, const llmlab_costmodel *fwd,
                                     int budget, int max_seqs, int reps, double *a, double *b, llmlab_err *err) {
    *a = *b = 0;
    llmlab_engine_opts eo = {.registry = o->registry, .sched = {.name = "continuous"}, .n_threads = o->n_threads,
                             .token_budget = budget, .max_seqs = max_seqs};
    llmlab_engine *e = NULL;
    llmlab_status st = llmlab_engine_create(&e, m, &eo, err);
    if (st) return st;
    enum { PROMPT = 32 };
    int n = max_seqs < 16 ? max_seqs : 16, new_tokens = o->quick ? 16 : 48, runs = 0;
    int32_t *prompt = malloc(PROMPT * sizeof *prompt);
    llmlab_request *reqs = calloc((size_t)n, sizeof *reqs);
    llmlab_run_result *first = NULL, *r = NULL;
    double *times = NULL; /* [steps][reps] */
    if (!prompt || !reqs) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int k = 0; !st && k < PROMPT; k++) prompt[k] = (int32_t)((k * 131 + 7) % m->cfg.vocab_size);
    for (int i = 0; !st && i < n; i++)
        reqs[i] = (llmlab_request){.id = i, .prompt = prompt, .prompt_len = PROMPT, .max_new = new_tokens + 4 * i};
    for (int rep = 0; !st && rep < reps; rep++) {
        if ((st = llmlab_engine_run(e, reqs, n, &r, err))) break;
        if (!first) {
            first = r;
            if (!(times = malloc((size_t)(r->n_steps ? r->n_steps : 1) * (size_t)reps * sizeof *times)))
                st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        }
        if (!st && r->n_steps == first->n_steps) {
            for (int j = 0; j + 1 < r->n_steps; j++)
                times[(size_t)j * (size_t)reps + (size_t)runs] = r->step_start_s[j + 1] - r->step_start_s[j];
            runs++;
        }
        if (r != first) llmlab_run_result_free(r);
        r = NULL;
    }
    double S = 0, Sx = 0, Sy = 0, Sxx = 0, Sxy = 0;
    for (int j = 0; !st && runs > 0 && first->step_prefill_tokens && j + 1 < first->n_steps; j++) {
        if (first->step_prefill_tokens[j] != 0) continue;
        llmlab_iter_shape it = {.decode_seqs = first->step_decode_seqs[j], .decode_kv = first->step_kv_context[j]};
        double x = it.decode_seqs;
        double y = pick(times + (size_t)j * (size_t)reps, runs, o->fastest) - llmlab_cost_predict(fwd, &it);
        S += 1, Sx += x, Sy += y, Sxx += x * x, Sxy += x * y;
    }
    if (S >= 3) {
        double den = S * Sxx - Sx * Sx;
        *b = den > 0 ? (S * Sxy - Sx * Sy) / den : 0;
        if (*b < 0) *b = 0;
        *a = (Sy - *b * Sx) / S;
        if (*a < 0) *a = 0;
    }
    llmlab_run_result_free(first);
    free(times);
    free(reqs);
    free(prompt);
    llmlab_engine_free(e);
    return st;
}

/* ---- profile ---------------------------------------------------------------------------------- */

static llmlab_status run_grid(prof *P, const grid_point *g, int n, llmlab_profile_samples *s, int verbose,
                              llmlab_err *err) {
    for (int i = 0; i < n; i++) {
        llmlab_status st = time_point(P, &g[i], &s->shape[i], &s->t[i], err);
        if (st) return llmlab_err_prefix(err, "profile point %d (decode %d at %d, prefill %d after %d)", i,
                                         g[i].decode, g[i].ctx, g[i].prefill, g[i].cached);
        if (verbose)
            fprintf(stderr, "\rprofile: %d/%d  decode %3d @ %4d + prefill %4d @ %4d: %8.3f ms   ", i + 1, n,
                    g[i].decode, g[i].ctx, g[i].prefill, g[i].cached, s->t[i] * 1e3);
    }
    if (verbose) fprintf(stderr, "\n");
    s->n = n;
    return LLMLAB_OK;
}

static llmlab_status prof_open(prof *P, const llmlab_model *m, int budget, int max_seqs, int threads, int reps,
                               llmlab_err *err) {
    memset(P, 0, sizeof *P);
    int max_pos = m->cfg.max_pos > 0 ? m->cfg.max_pos : 2048;
    int per_seq = (max_pos < 800 ? max_pos : 800) + 32;
    llmlab_ctx_opts co = {.n_threads = threads, .max_seqs = max_seqs + 1, .max_batch = budget,
                          .kv_tokens = (max_seqs + 1) * per_seq + budget + 64};
    llmlab_status st = llmlab_ctx_create(&P->ctx, m, &co, err);
    if (st) return st;
    P->b = llmlab_batch_create(budget);
    P->len = calloc((size_t)max_seqs + 1, sizeof *P->len);
    if (!P->b || !P->len) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_rng_seed(&P->rng, 12345, 7);
    P->vocab = m->cfg.vocab_size;
    P->max_seqs = max_seqs;
    P->budget = budget;
    P->reps = reps;
    return LLMLAB_OK;
}

static void prof_close(prof *P) {
    llmlab_batch_free(P->b);
    llmlab_ctx_free(P->ctx);
    free(P->len);
}

static double weight_bytes_per_param(const llmlab_model *m) {
    const llmlab_mat *w = &m->layers[0].wq;
    return (double)llmlab_dtype_row_bytes(w->dtype, w->cols) / (double)w->cols;
}

llmlab_status llmlab_profile(const llmlab_model *m, const llmlab_profile_opts *o, llmlab_costmodel *out,
                             llmlab_profile_samples *samples, llmlab_err *err) {
    memset(out, 0, sizeof *out);
    int budget = o->token_budget > 0 ? o->token_budget : 512, max_seqs = o->max_seqs > 0 ? o->max_seqs : 64;
    int reps = o->reps > 0 ? (o->reps < 16 ? o->reps : 15) : 5;
    int threads = o->n_threads > 0 ? o->n_threads : llmlab_ncores();
    grid_point g[128];
    int n = make_grid(g, 128, o->quick, budget, max_seqs, m->cfg.max_pos > 0 ? m->cfg.max_pos : 2048);
    llmlab_profile_samples s = {0};
    s.shape = calloc((size_t)n + 1, sizeof *s.shape);
    s.t = calloc((size_t)n + 1, sizeof *s.t);
    prof P;
    memset(&P, 0, sizeof P);
    llmlab_status st = !s.shape || !s.t ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
    if (!st) st = prof_open(&P, m, budget, max_seqs, threads, reps, err);
    P.fastest = o->fastest;
    if (!st) st = run_grid(&P, g, n, &s, o->verbose, err);
    double kv_bpt = P.ctx ? llmlab_kv_bytes_per_token(llmlab_ctx_kv(P.ctx)) : 0;
    prof_close(&P);
    if (!st) st = llmlab_cost_fit(out, s.shape, s.t, s.n, err);
    if (!st && o->registry) {
        double a, b;
        st = engine_overhead(m, o, out, budget, max_seqs, reps, &a, &b, err);
        if (!st) {
            out->coef[LLMLAB_COST_C0] += a;
            out->coef[LLMLAB_COST_DEC] += b;
            s.overhead_c0 = out->overhead_c0 = a;
            s.overhead_dec = out->overhead_dec = b;
        }
    }
    llmlab_model_shape_of(&out->shape, &m->cfg, weight_bytes_per_param(m), 4.0);
    if (kv_bpt > 0) out->shape.kv_bytes_per_token = kv_bpt; /* the cache's own format */
    out->threads = threads;
    llmlab_machine_name(out->machine, sizeof out->machine, threads);
    snprintf(out->hw.name, sizeof out->hw.name, "profiled");
    snprintf(out->model, sizeof out->model, "%s", m->path ? m->path : "");
    if (!st && samples) *samples = s;
    else llmlab_profile_samples_free(&s);
    return st;
}

void llmlab_profile_samples_free(llmlab_profile_samples *s) {
    if (!s) return;
    free(s->shape);
    free(s->t);
    memset(s, 0, sizeof *s);
}
