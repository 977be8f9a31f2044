/* test_perplexity.c - strided perplexity through the engine (core/perplexity.c):
 *   every NLL equals the one computed here from a one-shot forward over the same
 *   window (bit-identical logits, so the NLLs are compared exactly), and ppl is
 *   exp(their mean);
 *   windows and stride: which positions are scored by which window, counts for
 *   overlapping, disjoint and stride-1 windows (the plan re-derived here from
 *   Hugging Face's loop);
 *   an attention plugin applies (a sliding window changes the NLLs, but only of
 *   tokens whose context it cut);
 *   the BOS goes in front once; bad ctx/stride/texts are errors naming the value. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/perplexity.h"
#include "core/rng.h"
#include "core/tokenizer.h"
#include "util/fixture_model.h"
#include "util/one_forward.h"

static llmlab_registry *g_reg;
static fixture_model g_fm;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK, "%s", err.msg);
    fixture_load(&g_fm, &fixture_shapes[0], 77);
}

static void teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
}

TestSuite(ppl, .init = setup, .fini = teardown);

static llmlab_engine *make_engine(const char *attention, const llmlab_param_value *v, int nv) {
    llmlab_engine_opts o = {.registry = g_reg, .attention = {attention, v, nv}, .sched = {"continuous", NULL, 0},
                            .n_threads = 2, .kv_tokens = 2048, .max_seqs = 8, .token_budget = 24};
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, g_fm.m, &o, &err), LLMLAB_OK, "%s", err.msg);
    return e;
}

static int32_t *random_tokens(int n, const char *name) {
    llmlab_rng rng;
    llmlab_rng_seed(&rng, fixture_seed(name), 3);
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(llmlab_rng_next(&rng) % (uint64_t)g_fm.m->cfg.vocab_size);
    return t;
}

static llmlab_ppl_result *measure(llmlab_engine *e, const int32_t *tok, int n, int ctx, int stride) {
    llmlab_ppl_opts o = {ctx, stride};
    llmlab_ppl_result *r = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_perplexity(e, tok, n, &o, &r, &err), LLMLAB_OK, "%s", err.msg);
    return r;
}

/* -log softmax(x)[t] in double, as documented in perplexity.h. */
static double ref_nll(const float *x, int V, int t) {
    double mx = x[0], sum = 0;
    for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    return (mx + log(sum)) - (double)x[t];
}

/* Hugging Face's loop, written out again: expected NLL per position (NAN when
 * not scored), the window that scored it, and the window count. */
static int reference(const int32_t *tok, int n, int ctx, int stride, double *nll, int *win) {
    int V = g_fm.m->cfg.vocab_size, prev_end = 0, w = 0;
    for (int i = 0; i < n; i++) nll[i] = NAN, win[i] = -1;
    for (int begin = 0; begin < n; begin += stride) {
        int end = begin + ctx < n ? begin + ctx : n;
        int trg = end - prev_end; /* HF: the last trg tokens are targets; the first token has no prediction */
        int first = end - trg > begin + 1 ? end - trg : begin + 1;
        if (first < end) {
            float *logits = one_forward_logits(g_fm.m, tok + begin, end - begin);
            for (int p = first; p < end; p++) {
                nll[p] = ref_nll(logits + (size_t)(p - begin - 1) * (size_t)V, V, tok[p]);
                win[p] = w;
            }
            free(logits);
            w++;
        }
        prev_end = end;
        if (end == n) break;
    }
    return w;
}

static void check_against_reference(const int32_t *tok, int n, int ctx, int stride, int want_scored) {
    llmlab_engine *e = make_engine("dense", NULL, 0);
    llmlab_ppl_result *r = measure(e, tok, n, ctx, stride);
    double *nll = malloc((size_t)n * sizeof *nll);
    int *win = malloc((size_t)n * sizeof *win);
    int windows = reference(tok, n, ctx, stride ? stride : ctx, nll, win); /* stride 0 = ctx */
    cr_assert_eq(r->windows, windows, "ctx %d stride %d: windows", ctx, stride);
    cr_assert_eq(r->scored, want_scored, "ctx %d stride %d: scored %d", ctx, stride, r->scored);
    cr_assert_eq(r->n_tokens, n);
    cr_assert_eq(r->run->n_reqs, windows, "one engine request per window");
    int k = 0;
    double sum = 0;
    for (int p = 0; p < n; p++) {
        if (isnan(nll[p])) continue;
        cr_assert_lt(k, r->scored);
        cr_assert_eq(r->pos[k], p, "row %d: position %d, expected %d", k, r->pos[k], p);
        cr_assert_eq(r->window[k], win[p], "position %d: window %d, expected %d", p, r->window[k], win[p]);
        cr_assert(r->nll[k] == nll[p], "position %d: nll %.17g != one-shot %.17g", p, r->nll[k], nll[p]);
        sum += nll[p];
        k++;
    }
    cr_assert_eq(k, r->scored);
    cr_assert(fabs(r->mean_nll - sum / k) <= 1e-12 * fabs(sum / k), "mean nll %.17g vs %.17g", r->mean_nll, sum / k);
    cr_assert(fabs(r->ppl - exp(sum / k)) <= 1e-12 * exp(sum / k), "ppl %.17g vs exp(mean nll) %.17g", r->ppl, exp(sum / k));
    cr_assert(r->ppl > 1 && isfinite(r->ppl));
    cr_assert(r->wall_s > 0 && r->tok_per_s > 0);
    free(nll);
    free(win);
    llmlab_ppl_result_free(r);
    llmlab_engine_free(e);
}

Test(ppl, nll_equals_one_shot_forward_overlapping_windows) {
    int32_t *tok = random_tokens(100, "ppl-overlap");
    check_against_reference(tok, 100, 32, 16, 99); /* every token but the first */
    free(tok);
}

Test(ppl, nll_equals_one_shot_forward_disjoint_windows) {
    int32_t *tok = random_tokens(70, "ppl-disjoint");
    check_against_reference(tok, 70, 32, 0, 70 - 3); /* stride = ctx: three windows, their first tokens unscored */
    free(tok);
}

Test(ppl, nll_equals_one_shot_forward_stride_one_and_short_text) {
    int32_t *tok = random_tokens(12, "ppl-stride1");
    check_against_reference(tok, 12, 5, 1, 11);
    check_against_reference(tok, 12, 64, 0, 11); /* one window: the whole text */
    check_against_reference(tok, 2, 2, 0, 1);
    free(tok);
}

/* The plan for 100 tokens, ctx 32, stride 16, written out by hand. */
Test(ppl, window_plan_accounting) {
    int b[16], e[16], p[16];
    int W = llmlab_ppl_plan(100, 32, 16, b, e, p);
    cr_assert_eq(W, 6);
    const int wb[] = {0, 16, 32, 48, 64, 80}, we[] = {32, 48, 64, 80, 96, 100}, wp[] = {1, 16, 16, 16, 16, 16};
    int scored = 0;
    for (int k = 0; k < W; k++) {
        cr_assert(b[k] == wb[k] && e[k] == we[k] && p[k] == wp[k], "window %d: [%d, %d) prefix %d", k, b[k], e[k], p[k]);
        scored += e[k] - b[k] - p[k];
    }
    cr_assert_eq(scored, 99);
    /* disjoint: a one-token tail scores nothing and is not a window */
    cr_assert_eq(llmlab_ppl_plan(65, 32, 32, b, e, p), 2);
    cr_assert(b[1] == 32 && e[1] == 64 && p[1] == 1);
    cr_assert_eq(llmlab_ppl_plan(66, 32, 32, b, e, p), 3);
    cr_assert(b[2] == 64 && e[2] == 66 && p[2] == 1);
    /* stride 1: window k = [k, k + 4) scores only its last token (after window 0) */
    cr_assert_eq(llmlab_ppl_plan(10, 4, 1, b, e, p), 7);
    cr_assert(b[6] == 6 && e[6] == 10 && p[6] == 3);
    cr_assert_eq(llmlab_ppl_plan(10, 4, 1, NULL, NULL, NULL), 7);
}

/* Through the engine: a sliding window of 4 leaves each window's first tokens
 * (whose context fits) exactly as dense, and changes later ones. */
Test(ppl, attention_plugin_applies) {
    int32_t *tok = random_tokens(64, "ppl-window");
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, "window", "4");
    llmlab_engine *dense = make_engine("dense", NULL, 0), *win = make_engine("window", &v, 1);
    llmlab_ppl_result *a = measure(dense, tok, 64, 32, 0), *b = measure(win, tok, 64, 32, 0);
    cr_assert_eq(a->scored, b->scored);
    int differ = 0;
    for (int k = 0; k < a->scored; k++) {
        cr_assert_eq(a->pos[k], b->pos[k]);
        int rel = a->pos[k] - (a->window[k] == 0 ? 0 : 32); /* position inside its window */
        if (rel <= 4) cr_assert(a->nll[k] == b->nll[k], "position %d sees its whole context", a->pos[k]);
        differ += a->nll[k] != b->nll[k];
    }
    cr_assert_gt(differ, a->scored / 2, "the window changed %d of %d NLLs", differ, a->scored);
    cr_assert(a->ppl != b->ppl);
    llmlab_ppl_result_free(a);
    llmlab_ppl_result_free(b);
    llmlab_engine_free(dense);
    llmlab_engine_free(win);
    free(tok);
}

static void expect_error(const int32_t *tok, int n, int ctx, int stride, const char *must) {
    llmlab_engine *e = make_engine("dense", NULL, 0);
    llmlab_ppl_opts o = {ctx, stride};
    llmlab_ppl_result *r = (llmlab_ppl_result *)1;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_perplexity(e, tok, n, &o, &r, &err), LLMLAB_EINVAL, "n %d ctx %d stride %d", n, ctx, stride);
    cr_assert_null(r);
    cr_assert(strstr(err.msg, must), "'%s' lacks '%s'", err.msg, must);
    llmlab_engine_free(e);
}

Test(ppl, bad_arguments_are_errors) {
    int32_t tok[40] = {0};
    expect_error(tok, 40, 1, 0, "ctx = 1 must be >= 2");
    expect_error(tok, 40, 16, 17, "stride = 17 must be in [1, ctx = 16]");
    expect_error(tok, 40, 16, -1, "stride = -1");
    expect_error(tok, 0, 16, 0, "the text has 0 tokens");
    expect_error(tok, 1, 16, 0, "the text has 1 tokens");
    expect_error(NULL, 5, 16, 0, "the text has 0 tokens");
    expect_error(tok, 40, 4096, 0, "exceeds the model's max_position_embeddings (2048)");
    tok[7] = g_fm.m->cfg.vocab_size;
    expect_error(tok, 40, 16, 0, "position 7 is outside the vocabulary");
}

Test(ppl, default_ctx_is_the_model_context_capped) {
    cr_assert_eq(llmlab_ppl_default_ctx(g_fm.m), 2048);
    int32_t *tok = random_tokens(40, "ppl-default");
    llmlab_engine *e = make_engine("dense", NULL, 0);
    llmlab_ppl_result *r = measure(e, tok, 40, 0, 0);
    cr_assert(r->ctx == 2048 && r->stride == 2048 && r->windows == 1 && r->scored == 39);
    llmlab_ppl_result_free(r);
    llmlab_engine_free(e);
    free(tok);
}

/* The BOS goes in front once (never scored); without a BOS the text is encoded
 * without special tokens. */
Test(ppl, bos_goes_in_front_once) {
    llmlab_tokenizer *t = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_tokenizer_bytes(&t, &err), LLMLAB_OK, "%s", err.msg);
    int32_t *ids = NULL;
    int n = 0;
    cr_assert_eq(llmlab_ppl_encode(t, "ab\0c", 4, 1, &ids, &n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(n == 4 && ids[0] == 'a' && ids[2] == 0 && ids[3] == 'c', "the byte fallback has no BOS");
    free(ids);
    llmlab_tokenizer_free(t);
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizers/bytelevel_llama3/tokenizer.json", LLMLAB_TEST_DATA);
    if (access(path, R_OK) != 0) cr_skip_test("fixture %s not present", path);
    cr_assert_eq(llmlab_tokenizer_load_json(&t, path, &err), LLMLAB_OK, "%s", err.msg);
    int32_t bos = llmlab_tokenizer_bos(t), *plain = NULL;
    cr_assert_geq(bos, 0);
    int m = 0;
    const char *text = "Perplexity counts every token once.";
    cr_assert_eq(llmlab_tokenizer_encode(t, text, strlen(text), 0, &plain, &m, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_ppl_encode(t, text, strlen(text), 1, &ids, &n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(n, m + 1);
    cr_assert_eq(ids[0], bos);
    cr_assert(memcmp(ids + 1, plain, (size_t)m * sizeof *ids) == 0);
    free(ids);
    cr_assert_eq(llmlab_ppl_encode(t, text, strlen(text), 0, &ids, &n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(n == m && memcmp(ids, plain, (size_t)m * sizeof *ids) == 0);
    free(ids);
    free(plain);
    llmlab_tokenizer_free(t);
}
