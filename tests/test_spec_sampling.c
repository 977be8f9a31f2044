/* test_spec_sampling.c - speculative sampling preserves the target distribution.
 *
 * On a tiny-vocabulary model, the exact law of the first four sampled tokens is
 * computed from the target's logits (the engine's own sampling distribution at
 * each prefix).  Many seeded requests are then sampled with autoregressive
 * decoding, with speculative sampling (a different random draft, k = 2, so
 * acceptances, rejections with residual draws and bonus tokens all occur) and
 * with a deliberately broken rule that accepts every draft.  Pearson chi-square
 * tests on the pairs (t1,t2), (t2,t3), (t3,t4) at significance 0.001 each (bins
 * with expected count < 5 pooled): autoregressive and speculative must pass, the
 * broken rule must fail — the test can tell. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/sampler.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"

enum { V = 8, NTOK = 4, PLEN = 3, NSAMPLES = 16000 };
static const float TEMP = 0.7f;

static const fixture_shape tiny = {"tiny-vocab", V, 32, 2, 2, 1, 64, 0, 0, 0, LLMLAB_DTYPE_F32};
static const fixture_shape tiny_draft = {"tiny-draft", V, 32, 1, 2, 1, 48, 0, 0, 0, LLMLAB_DTYPE_F32};

/* Sampling distribution of the next token after prompt + prefix[n]. */
static void next_probs(llmlab_ctx *ctx, const int32_t *prompt, const int32_t *prefix, int n, float *p) {
    llmlab_batch *b = llmlab_batch_create(PLEN + NTOK);
    int len = PLEN + n;
    for (int i = 0; i < len; i++)
        llmlab_batch_add(b, i < PLEN ? prompt[i] : prefix[i - PLEN], 0, i, i == len - 1 ? LLMLAB_TOK_LOGITS : 0, -1);
    const llmlab_outputs *o;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_forward(ctx, b, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_kv_truncate(llmlab_ctx_kv(ctx), 0, 0, NULL);
    llmlab_sampling s = {TEMP, 0, 1.0f, 0.0f};
    int work[V];
    llmlab_sampling_probs(p, o->logits, V, &s, work);
    llmlab_batch_free(b);
}

/* joint[t1][t2][t3][t4], exactly. */
static void exact_joint(const llmlab_model *m, const int32_t *prompt, double *joint) {
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 1, .max_seqs = 1, .kv_tokens = 64, .max_batch = 16};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK);
    float p1[V], p2[V], p3[V], p4[V];
    next_probs(ctx, prompt, NULL, 0, p1);
    for (int a = 0; a < V; a++) {
        int32_t pre[NTOK] = {a};
        next_probs(ctx, prompt, pre, 1, p2);
        for (int b = 0; b < V; b++) {
            pre[1] = b;
            next_probs(ctx, prompt, pre, 2, p3);
            for (int c = 0; c < V; c++) {
                pre[2] = c;
                next_probs(ctx, prompt, pre, 3, p4);
                for (int d = 0; d < V; d++)
                    joint[((a * V + b) * V + c) * V + d] = (double)p1[a] * p2[b] * p3[c] * p4[d];
            }
        }
    }
    llmlab_ctx_free(ctx);
}

/* Marginal of the pair (t_i, t_{i+1}), i in 0..2, from the joint. */
static void pair_marginal(const double *joint, int i, double *pair) {
    memset(pair, 0, sizeof(double) * V * V);
    for (int x = 0; x < V * V * V * V; x++) {
        int t[4] = {x / (V * V * V), (x / (V * V)) % V, (x / V) % V, x % V};
        pair[t[i] * V + t[i + 1]] += joint[x];
    }
}

/* Chi-square upper 0.001 quantile by Wilson-Hilferty (accurate to ~1% for df >= 3). */
static double chi2_crit_001(int df) {
    double z = 3.0902, a = 2.0 / (9.0 * df);
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Pearson statistic / critical value for counts against expected probabilities. */
static double chi2_ratio(const long *count, const double *prob, int bins, long n) {
    double stat = 0, pooled_e = 0, pooled_o = 0;
    int df = -1;
    for (int i = 0; i < bins; i++) {
        double e = prob[i] * (double)n;
        if (e < 5) {
            pooled_e += e;
            pooled_o += (double)count[i];
            continue;
        }
        stat += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    if (pooled_e > 0) {
        stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / (pooled_e > 1e-9 ? pooled_e : 1e-9);
        df++;
    }
    cr_assert_geq(df, 3, "too few bins");
    return stat / chi2_crit_001(df);
}

/* Samples NSAMPLES requests and returns the largest chi-square ratio of the 3 pairs. */
static double worst_ratio(const llmlab_model *m, const llmlab_registry *reg, const char *decoding,
                          const char *const *kv, int n_kv, const int32_t *prompt, const double *joint,
                          uint64_t seed) {
    dc_requests rq;
    dc_requests_make(&rq, NSAMPLES, V, PLEN, PLEN, NTOK, NTOK, seed);
    for (int i = 0; i < NSAMPLES; i++) rq.reqs[i].prompt = prompt; /* one prompt, many random streams */
    dc_opts o = {.decoding = decoding, .kv = kv, .n_kv = n_kv, .max_batch = 16, .seed = seed, .threads = 1};
    llmlab_run_result *r = dc_run(m, reg, &o, &rq);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        long count[V * V] = {0};
        double prob[V * V];
        pair_marginal(joint, i, prob);
        for (int q = 0; q < NSAMPLES; q++) {
            cr_assert_eq(r->output_len[q], NTOK);
            count[r->output[q][i] * V + r->output[q][i + 1]]++;
        }
        double ratio = chi2_ratio(count, prob, V * V, NSAMPLES);
        fprintf(stderr, "  %s: pair (t%d,t%d) chi2/crit = %.3f\n", decoding ? decoding : "autoregressive", i + 1,
                i + 2, ratio);
        if (ratio > worst) worst = ratio;
    }
    llmlab_run_result_free(r);
    dc_requests_free(&rq);
    return worst;
}

Test(spec_sampling, speculative_sampling_matches_target_law_and_broken_rule_fails, .timeout = 600) {
    uint64_t seed = fixture_seed("spec-sampling");
    llmlab_registry *reg;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_registry_load(reg, LLMLAB_TEST_PLUGIN_DIR "/testplugin_spec_broken.so", &err), LLMLAB_OK,
                 "%s", err.msg);
    fixture_model t, d;
    fixture_load(&t, &tiny, seed);
    fixture_load(&d, &tiny_draft, seed + 1);
    int32_t prompt[PLEN] = {1, 5, 2};
    double *joint = malloc(sizeof(double) * V * V * V * V);
    exact_joint(t.m, prompt, joint);

    char temp[32], draft[300];
    snprintf(temp, sizeof temp, "temperature=%g", TEMP);
    snprintf(draft, sizeof draft, "draft=%s", d.dir);
    const char *ar_kv[] = {temp};
    const char *sp_kv[] = {temp, draft, "k=2"};
    double ar = worst_ratio(t.m, reg, NULL, ar_kv, 1, prompt, joint, seed);
    double sp = worst_ratio(t.m, reg, "speculative", sp_kv, 3, prompt, joint, seed + 7);
    double broken = worst_ratio(t.m, reg, "spec_broken", sp_kv, 3, prompt, joint, seed + 13);
    cr_assert_lt(ar, 1.0, "autoregressive sampling rejected at 0.001 (chi2/crit %.3f): the exact law is wrong", ar);
    cr_assert_lt(sp, 1.0, "speculative sampling does not follow the target law (chi2/crit %.3f)", sp);
    cr_assert_gt(broken, 1.0, "the broken rule passed (chi2/crit %.3f): the test cannot tell", broken);
    free(joint);
    fixture_free(&d);
    fixture_free(&t);
    llmlab_registry_free(reg);
}
