/* test_prompt_lookup.c - prompt lookup decoding.
 *
 * The matcher on hand-made token strings (which occurrence, which tokens).
 * Greedy: token for token the autoregressive greedy output on three fixture
 * shapes, random and repetitive prompts, batch 1 and batch 4 with sequences that
 * finish at different times, and the same KV cache left behind; on repetitive
 * prompts drafts are accepted (more than one token per decoding forward).
 * Sampled: the law of the first generated tokens equals the target's sampling law
 * (total-variation distance against the exact law, bound derived below).
 * Errors: bad parameter values are named. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/sampler.h"
#include "plugins/decoding/ngram_match.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"

static llmlab_registry *g_reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
}
static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(prompt_lookup, .init = setup, .fini = teardown);

/* ---- the matcher ----------------------------------------------------------------------- */

Test(prompt_lookup, matcher_takes_longest_suffix_and_most_recent_occurrence) {
    /*                 0   1  2  3   4   5  6  7  8   9   10  11 12 13 */
    const int32_t t[] = {10, 2, 3, 11, 12, 4, 2, 3, 13, 14, 15, 1, 2, 3};
    int len = 14;
    /* [1,2,3] never occurred before; [2,3] did at 1 and 6: the most recent, 6, wins */
    llmlab_ngram_match m = llmlab_ngram_lookup(t, len, 1, 3, 4);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(m.start, 8);
    cr_assert_eq(m.count, 4, "capped by max_pred");
    const int32_t want[] = {13, 14, 15, 1};
    for (int k = 0; k < m.count; k++) cr_assert_eq(t[m.start + k], want[k]);
    /* only 3-grams allowed: nothing */
    m = llmlab_ngram_lookup(t, len, 3, 3, 4);
    cr_assert_eq(m.count, 0);
    cr_assert_eq(m.n, 0);
    /* only 1-grams: the last earlier 3 is at 7 */
    m = llmlab_ngram_lookup(t, len, 1, 1, 10);
    cr_assert_eq(m.n, 1);
    cr_assert_eq(m.start, 8);
    cr_assert_eq(m.count, 6, "everything up to the end: 13 14 15 1 2 3");
    /* max_pred 0 proposes nothing */
    cr_assert_eq(llmlab_ngram_lookup(t, len, 1, 3, 0).count, 0);
}

Test(prompt_lookup, matcher_handles_overlaps_and_short_inputs) {
    /* [2,1,2] occurs at 1 (overlapping the suffix at 3): the continuation runs to the end */
    const int32_t t[] = {1, 2, 1, 2, 1, 2};
    llmlab_ngram_match m = llmlab_ngram_lookup(t, 6, 1, 3, 10);
    cr_assert_eq(m.n, 3);
    cr_assert_eq(m.start, 4);
    cr_assert_eq(m.count, 2);
    cr_assert_eq(t[m.start], 1);
    cr_assert_eq(t[m.start + 1], 2);
    /* a single token has nothing before it; two equal tokens match as a 1-gram */
    cr_assert_eq(llmlab_ngram_lookup(t, 1, 1, 3, 10).count, 0);
    const int32_t u[] = {7, 7};
    m = llmlab_ngram_lookup(u, 2, 1, 3, 10);
    cr_assert_eq(m.n, 1);
    cr_assert_eq(m.start, 1);
    cr_assert_eq(m.count, 1);
    /* no repeated token at all */
    const int32_t v[] = {1, 2, 3, 4, 5};
    cr_assert_eq(llmlab_ngram_lookup(v, 5, 1, 3, 10).count, 0);
}

/* ---- greedy: lossless ------------------------------------------------------------------- */

/* Runs rq with autoregressive (batch 1) and prompt_lookup (batch 1 and 4) and
 * asserts equal outputs and caches.  Returns prompt_lookup's batch-4 run. */
static llmlab_run_result *check_lossless(const fixture_model *t, const dc_requests *rq, const char *const *kv,
                                         int n_kv, const char *what, uint64_t seed) {
    kv_snapshot want = {0};
    dc_opts ar = {.max_batch = 1, .seed = seed, .on_finish = kvs_on_finish, .on_finish_user = &want};
    llmlab_run_result *ref = dc_run(t->m, g_reg, &ar, rq), *last = NULL;
    for (int batch = 1; batch <= 4; batch += 3) {
        kv_snapshot got = {0};
        dc_opts o = {.decoding = "prompt_lookup", .kv = kv, .n_kv = n_kv, .max_batch = batch, .seed = seed,
                     .on_finish = kvs_on_finish, .on_finish_user = &got};
        llmlab_run_result *res = dc_run(t->m, g_reg, &o, rq);
        char label[200];
        snprintf(label, sizeof label, "%s, batch %d", what, batch);
        dc_assert_same(ref, res, label);
        kvs_assert_same(&want, &got, rq->n, label);
        cr_assert_leq(dc_metric(res, "accepted"), dc_metric(res, "drafted"), "%s", label);
        kvs_free(&got);
        if (last) llmlab_run_result_free(last);
        last = res;
    }
    kvs_free(&want);
    llmlab_run_result_free(ref);
    return last;
}

Test(prompt_lookup, greedy_equals_autoregressive_on_three_shapes, .timeout = 600) {
    uint64_t seed = fixture_seed("prompt-lookup-greedy");
    const char *kv_default[] = {"temperature=0"};
    const char *kv_small[] = {"max_ngram=2", "min_ngram=2", "num_pred_tokens=3"};
    for (int i = 0; i < 3; i++) {
        fixture_model t;
        fixture_load(&t, &fixture_shapes[i], seed + (uint64_t)i);
        int V = t.m->cfg.vocab_size;
        char what[160];
        dc_requests rq;
        dc_requests_make(&rq, 6, V, 3, 40, 1, 24, seed + 10 + (uint64_t)i);
        snprintf(what, sizeof what, "shape %s, random prompts", fixture_shapes[i].name);
        llmlab_run_result_free(check_lossless(&t, &rq, kv_default, 1, what, seed));
        dc_requests_free(&rq);
        dc_requests_make_staggered_repetitive(&rq, 6, V, seed + 20 + (uint64_t)i);
        snprintf(what, sizeof what, "shape %s, repetitive prompts", fixture_shapes[i].name);
        llmlab_run_result_free(check_lossless(&t, &rq, kv_default, 1, what, seed));
        snprintf(what, sizeof what, "shape %s, repetitive prompts, 2-grams, 3 drafts", fixture_shapes[i].name);
        llmlab_run_result_free(check_lossless(&t, &rq, kv_small, 3, what, seed));
        dc_requests_free(&rq);
        fixture_free(&t);
    }
}

Test(prompt_lookup, repetitive_prompts_accept_drafts) {
    uint64_t seed = fixture_seed("prompt-lookup-accepts");
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], seed);
    dc_requests rep, rnd;
    dc_requests_make_acceptance_sets(&rep, &rnd, t.m->cfg.vocab_size, seed);
    const char *kv[] = {"temperature=0"};
    llmlab_run_result *r = check_lossless(&t, &rep, kv, 1, "repetitive", seed);
    llmlab_run_result *q = check_lossless(&t, &rnd, kv, 1, "random", seed);
    char what[96];
    snprintf(what, sizeof what, "prompt_lookup on %s", fixture_shapes[0].name);
    dc_report_acceptance(what, r, q);
    cr_assert_gt(dc_metric(r, "accepted"), 0, "no draft accepted on repetitive prompts");
    cr_assert_gt(r->mean_accepted, 1.0, "mean accepted %g", r->mean_accepted);
    llmlab_run_result_free(r);
    llmlab_run_result_free(q);
    dc_requests_free(&rep);
    dc_requests_free(&rnd);
    fixture_free(&t);
}

/* ---- sampled: the target law ------------------------------------------------------------- */

/* Why total variation with this bound.  With n independent samples of a law p
 * over K cells and empirical law p^, E|p^_c - p_c| <= sd = sqrt(p_c (1 - p_c) / n),
 * so E[TV(p^, p)] <= mu = 1/2 sum_c sqrt(p_c (1 - p_c) / n).  TV(p^, p) moves by at
 * most 1/n when one sample changes, so McDiarmid's inequality gives
 * P(TV >= mu + t) <= exp(-2 n t^2): with t = sqrt(ln(1/alpha) / (2n)) a correct
 * sampler fails a check with probability at most alpha.  alpha = 1e-6 per check
 * (3 pairs x 2 configurations: family-wise 6e-6).  For V = 8, K = 64 cells and
 * n = 100000, mu <= 1/2 sqrt(K/n) = 0.0126 and t = 0.0083: the bound is below
 * 0.021.  The test also computes the distance two plausible bugs would give
 * (accepting every draft; on rejection drawing from p instead of p without the
 * draft) and asserts each is above twice the bound: a buggy sampler's empirical
 * TV is then at least (bug TV - its own bound) > bound, so it would fail. */
enum { SV = 8, NTOK = 4, SPLEN = 12, NSAMPLES = 100000 };
static const double ALPHA = 1e-6;

static const fixture_shape tiny = {"tiny-vocab", SV, 32, 2, 2, 1, 64, 0, 0, 0, LLMLAB_DTYPE_F32};

/* The sampling law after prompt + prefix[n] (the engine's own filters). */
static void next_probs(llmlab_ctx *ctx, const llmlab_sampling *samp, const int32_t *prompt, const int32_t *prefix,
                       int n, float *p) {
    llmlab_batch *b = llmlab_batch_create(SPLEN + NTOK);
    int len = SPLEN + n;
    for (int i = 0; i < len; i++)
        llmlab_batch_add(b, i < SPLEN ? prompt[i] : prefix[i - SPLEN], 0, i, i == len - 1 ? LLMLAB_TOK_LOGITS : 0, -1);
    const llmlab_outputs *o;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_forward(ctx, b, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_kv_truncate(llmlab_ctx_kv(ctx), 0, 0, NULL);
    int work[SV];
    llmlab_sampling_probs(p, o->logits, SV, samp, work);
    llmlab_batch_free(b);
}

/* cond[prefix][V]: the law of token k+1 after every prefix of k tokens, for
 * k = 0..NTOK-1, prefixes numbered base V in a table of 1 + V + V^2 + V^3 rows. */
static int prefix_row(const int32_t *pre, int k) {
    int row = 0, first = 0, width = 1;
    for (int j = 0; j < k; j++) {
        first += width;
        width *= SV;
    }
    for (int j = 0; j < k; j++) row = row * SV + pre[j];
    return first + row;
}

static float *exact_conditionals(const llmlab_model *m, const llmlab_sampling *samp, const int32_t *prompt) {
    int rows = 1 + SV + SV * SV + SV * SV * SV;
    float *cond = malloc(sizeof(float) * (size_t)rows * SV);
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 1, .max_seqs = 1, .kv_tokens = 64, .max_batch = 32};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK);
    for (int k = 0; k < NTOK; k++) {
        int count = 1;
        for (int j = 0; j < k; j++) count *= SV;
        for (int x = 0; x < count; x++) {
            int32_t pre[NTOK];
            for (int j = k - 1, y = x; j >= 0; j--, y /= SV) pre[j] = y % SV;
            next_probs(ctx, samp, prompt, pre, k, cond + (size_t)prefix_row(pre, k) * SV);
        }
    }
    llmlab_ctx_free(ctx);
    return cond;
}

/* The exact law of the pair (t_{i+1}, t_{i+2}), i = 0..2, as [V][V]. */
static void exact_pair(const float *cond, int i, double *pair) {
    memset(pair, 0, sizeof(double) * SV * SV);
    int total = 1;
    for (int j = 0; j < i + 2; j++) total *= SV;
    for (int x = 0; x < total; x++) {
        int32_t pre[NTOK];
        for (int j = i + 1, y = x; j >= 0; j--, y /= SV) pre[j] = y % SV;
        double p = 1;
        for (int j = 0; j < i + 2; j++) p *= cond[(size_t)prefix_row(pre, j) * SV + (size_t)pre[j]];
        pair[pre[i] * SV + pre[i + 1]] += p;
    }
}

/* The law of (t1, t2) under a broken verify.  t2 is verified against the draft
 * d(t1) the matcher proposes after prompt + t1 (always one here):
 * accept_all: t2 = d; from_p: P(t2 = d) = p(d) + (1 - p(d)) p(d), else (1 - p(d)) p(x). */
static void broken_first_pair(const float *cond, const int32_t *prompt, int accept_all, double *pair) {
    memset(pair, 0, sizeof(double) * SV * SV);
    for (int a = 0; a < SV; a++) {
        int32_t seq[SPLEN + 1];
        memcpy(seq, prompt, sizeof(int32_t) * SPLEN);
        seq[SPLEN] = a;
        llmlab_ngram_match m = llmlab_ngram_lookup(seq, SPLEN + 1, 1, 3, 1);
        cr_assert_eq(m.count, 1, "the prompt must give every first token a draft");
        int32_t d = seq[m.start], pre[1] = {a};
        double pa = cond[a];
        const float *p2 = cond + (size_t)prefix_row(pre, 1) * SV;
        for (int b = 0; b < SV; b++) {
            double q = accept_all ? (b == d) : (b == d ? p2[d] + (1 - p2[d]) * p2[d] : (1 - p2[d]) * p2[b]);
            pair[a * SV + b] += pa * q;
        }
    }
}

static double tv(const double *p, const double *q, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += fabs(p[i] - q[i]);
    return s / 2;
}

static double tv_bound(const double *p, int n, long samples) {
    double mu = 0;
    for (int i = 0; i < n; i++) mu += sqrt(p[i] * (1 - p[i]) / (double)samples);
    return mu / 2 + sqrt(log(1 / ALPHA) / (2.0 * (double)samples));
}

/* NSAMPLES requests of the one prompt, each with its own random stream, in runs
 * of CHUNK (the engine's per-iteration work grows with the request count);
 * returns their outputs as [NSAMPLES][NTOK]. */
static int32_t *sample_outputs(const fixture_model *t, const char *const *kv, int n_kv, const int32_t *prompt,
                               uint64_t seed) {
    enum { CHUNK = 5000 };
    int32_t *out = malloc(sizeof(int32_t) * NSAMPLES * NTOK);
    double drafted = 0, accepted = 0;
    for (int c = 0; c < NSAMPLES / CHUNK; c++) {
        dc_requests rq;
        dc_requests_make(&rq, CHUNK, SV, SPLEN, SPLEN, NTOK, NTOK, seed);
        for (int i = 0; i < CHUNK; i++) rq.reqs[i].prompt = prompt;
        /* streams are seeded by (seed, request id): a new seed per run */
        dc_opts o = {.decoding = "prompt_lookup", .kv = kv, .n_kv = n_kv, .max_batch = 16,
                     .seed = seed * 1000003u + (uint64_t)c, .threads = 1};
        llmlab_run_result *r = dc_run(t->m, g_reg, &o, &rq);
        for (int q = 0; q < CHUNK; q++) {
            cr_assert_eq(r->output_len[q], NTOK);
            memcpy(out + (size_t)(c * CHUNK + q) * NTOK, r->output[q], sizeof(int32_t) * NTOK);
        }
        drafted += dc_metric(r, "drafted");
        accepted += dc_metric(r, "accepted");
        llmlab_run_result_free(r);
        dc_requests_free(&rq);
    }
    cr_assert_gt(accepted, 0, "no draft accepted: the rule is not exercised");
    cr_assert_lt(accepted, drafted, "no draft rejected: the rule is not exercised");
    return out;
}

static void check_sampled_law(const fixture_model *t, const llmlab_sampling *samp, const char *const *kv, int n_kv,
                              const int32_t *prompt, uint64_t seed) {
    float *cond = exact_conditionals(t->m, samp, prompt);
    int32_t *out = sample_outputs(t, kv, n_kv, prompt, seed);
    for (int i = 0; i < NTOK - 1; i++) {
        double want[SV * SV], got[SV * SV] = {0};
        exact_pair(cond, i, want);
        for (int q = 0; q < NSAMPLES; q++) got[out[q * NTOK + i] * SV + out[q * NTOK + i + 1]] += 1.0 / NSAMPLES;
        double d = tv(got, want, SV * SV), bound = tv_bound(want, SV * SV, NSAMPLES);
        fprintf(stderr, "prompt_lookup sampled (T=%g, top_k=%d): pair (t%d,t%d) TV %.4f, bound %.4f\n",
                samp->temperature, samp->top_k, i + 1, i + 2, d, bound);
        cr_assert_lt(d, bound, "pair (t%d,t%d): TV %.4f from the target law exceeds %.4f (alpha %g)", i + 1, i + 2,
                     d, bound, ALPHA);
        if (i > 0) continue;
        double broken[SV * SV];
        for (int mode = 0; mode < 2; mode++) {
            broken_first_pair(cond, prompt, mode == 0, broken);
            double bd = tv(broken, want, SV * SV);
            fprintf(stderr, "  a %s rule would be at TV %.4f\n", mode == 0 ? "accept-every-draft" : "resample-from-p",
                    bd);
            cr_assert_gt(bd, 2 * bound, "the check cannot tell the %s bug (TV %.4f, bound %.4f)",
                         mode == 0 ? "accept-every-draft" : "resample-from-p", bd, bound);
        }
    }
    free(out);
    free(cond);
}

Test(prompt_lookup, sampling_preserves_the_target_law, .timeout = 600) {
    uint64_t seed = fixture_seed("prompt-lookup-sampled");
    /* The model is fixed so the check's power against the bugs (computed exactly
     * below) is known; the random streams are fresh every run. */
    fixture_model t;
    fixture_load(&t, &tiny, 2);
    /* every token occurs in the prompt, so after any t1 the matcher drafts */
    const int32_t prompt[SPLEN] = {0, 1, 2, 3, 4, 5, 6, 7, 3, 1, 6, 2};
    llmlab_sampling plain = {1.0f, 0, 1.0f, 0.0f}, topk = {0.7f, 5, 1.0f, 0.0f};
    const char *kv_plain[] = {"temperature=1"};
    const char *kv_topk[] = {"temperature=0.7", "top_k=5"};
    check_sampled_law(&t, &plain, kv_plain, 1, prompt, seed + 1);
    check_sampled_law(&t, &topk, kv_topk, 2, prompt, seed + 2);
    fixture_free(&t);
}

/* ---- errors --------------------------------------------------------------------------------- */

static llmlab_status try_create(const llmlab_model *m, const char *key, const char *value, llmlab_err *err) {
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, key, value);
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"prompt_lookup", &v, 1}, .n_threads = 1};
    llmlab_engine *e = NULL;
    memset(err, 0, sizeof *err);
    llmlab_status st = llmlab_engine_create(&e, m, &o, err);
    llmlab_engine_free(e);
    return st;
}

Test(prompt_lookup, bad_params_are_named) {
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], 3);
    llmlab_err err;
    cr_assert_eq(try_create(t.m, "min_ngram", "4", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "min_ngram (4) is larger than max_ngram (3)"), "%s", err.msg);
    cr_assert_eq(try_create(t.m, "num_pred_tokens", "0", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "num_pred_tokens"), "%s", err.msg);
    cr_assert_eq(try_create(t.m, "max_ngram", "0", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "max_ngram"), "%s", err.msg);
    cr_assert_eq(try_create(t.m, "num_pred_tokens", "600", &err), LLMLAB_EINVAL, "above the range and the budget");
    cr_assert_eq(try_create(t.m, "num_pred_tokens", "5", &err), LLMLAB_OK, "%s", err.msg);
    fixture_free(&t);
}
