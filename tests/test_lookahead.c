/* test_lookahead.c - lookahead decoding.
 *
 * The step layout: for W=2, N=3, G=1 the visibility matrix is the one the
 * method prescribes (written out by hand); for larger shapes every token's
 * context is a gap-free run of positions and the two branches never mix; the
 * parent tree handed to the engine gives exactly the same visibility.
 * Greedy: token for token the autoregressive greedy output, and the same KV
 * cache, on three fixture shapes with random and repetitive prompts, batch 1 and
 * batch 4 with sequences that finish at different times, for several (W, N, G).
 * Errors: sampled sequences are refused with a clear message; bad values
 * (N < 2, a step larger than the token budget) are named. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "plugins/decoding/lookahead_layout.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"

static llmlab_registry *g_reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
}
static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(lookahead, .init = setup, .fini = teardown);

/* ---- layout and visibility ------------------------------------------------------------- */

/* 1 when j is i or one of its ancestors through the parent links. */
static int in_ancestry(const llmlab_la_tok *t, int i, int j) {
    for (int p = i; p >= 0; p = t[p].parent)
        if (p == j) return 1;
    return 0;
}

Test(lookahead, small_layout_visibility_is_the_methods) {
    /* W=2, N=3, G=1 (chain of N-1 = 2):
     *   0 root          dpos 0
     *   1 L0[0] dpos 1   2 L0[1] dpos 2      (level 0: a chain after the root)
     *   3 L1[0] dpos 2   4 L1[1] dpos 3      (level 1: level 0 up to its column, then itself)
     *   5 V0[0] dpos 1   6 V0[1] dpos 2      (the candidate: a chain after the root) */
    enum { W = 2, N = 3, G = 1, D = 2, T = 7 };
    static const int want_dpos[T] = {0, 1, 2, 2, 3, 1, 2};
    static const int want_logits[T] = {1, 0, 0, 1, 1, 1, 1};
    static const char *want_sees[T] = {
        /* j: 0123456 */
        "1000000", /* root: itself */
        "1100000", /* L0[0]: root, itself */
        "1110000", /* L0[1]: root, L0[0], itself */
        "1101000", /* L1[0]: root, L0[0], itself */
        "1110100", /* L1[1]: root, L0[0], L0[1], itself */
        "1000010", /* V0[0]: root, itself */
        "1000011", /* V0[1]: root, V0[0], itself */
    };
    cr_assert_eq(llmlab_la_layout_count(W, N, G, D), T);
    llmlab_la_tok toks[T];
    llmlab_la_layout_build(W, N, G, D, toks);
    for (int i = 0; i < T; i++) {
        cr_assert_eq(toks[i].dpos, want_dpos[i], "token %d dpos", i);
        cr_assert_eq(toks[i].logits, want_logits[i], "token %d logits flag", i);
        for (int j = 0; j < T; j++) {
            int sees = j <= i && llmlab_la_sees(&toks[i], &toks[j]);
            cr_assert_eq(sees, want_sees[i][j] == '1', "token %d sees %d: %d, want %c", i, j, sees, want_sees[i][j]);
            cr_assert_eq(in_ancestry(toks, i, j), want_sees[i][j] == '1', "the tree the engine gets: %d sees %d", i,
                         j);
        }
    }
    cr_assert_eq(toks[3].kind, LLMLAB_LA_LOOK);
    cr_assert_eq(toks[3].row, 1);
    cr_assert_eq(toks[3].col, 0);
    cr_assert_eq(toks[6].kind, LLMLAB_LA_VERIFY);
    cr_assert_eq(toks[6].col, 1);
}

/* Every token's visible tokens (earlier in the layout, plus itself) have the
 * positions 0, 1, ..., dpos once each, its parent among them at dpos - 1, and
 * the lookahead and verification branches never see each other. */
static void check_layout(int W, int N, int n_cand, int D) {
    int n = llmlab_la_layout_count(W, N, n_cand, D);
    cr_assert_eq(n, 1 + W * (N - 1) + n_cand * D);
    llmlab_la_tok *t = calloc((size_t)n, sizeof *t);
    llmlab_la_layout_build(W, N, n_cand, D, t);
    for (int i = 0; i < n; i++) {
        int seen[64] = {0};
        cr_assert_lt(t[i].dpos, 64);
        for (int j = 0; j <= i; j++) {
            cr_assert_eq(llmlab_la_sees(&t[i], &t[j]), in_ancestry(t, i, j),
                         "W%d N%d G%d: token %d / %d: the rules and the parent tree disagree", W, N, n_cand, i, j);
            if (!llmlab_la_sees(&t[i], &t[j])) continue;
            cr_assert(t[j].kind == LLMLAB_LA_ROOT || t[j].kind == t[i].kind, "W%d N%d: token %d sees across branches",
                      W, N, i);
            seen[t[j].dpos]++;
        }
        for (int p = 0; p < 64; p++)
            cr_assert_eq(seen[p], p <= t[i].dpos, "W%d N%d G%d: token %d (dpos %d) sees %d tokens at dpos %d", W, N,
                         n_cand, i, t[i].dpos, seen[p], p);
        if (i == 0) cr_assert_eq(t[i].parent, -1);
        else {
            cr_assert(t[i].parent >= 0 && t[i].parent < i);
            cr_assert(llmlab_la_sees(&t[i], &t[t[i].parent]));
            cr_assert_eq(t[t[i].parent].dpos, t[i].dpos - 1);
        }
        if (t[i].kind == LLMLAB_LA_LOOK) cr_assert_eq(t[i].logits, t[i].row == N - 2);
    }
    free(t);
}

Test(lookahead, larger_layouts_give_every_token_a_gap_free_context) {
    check_layout(5, 4, 3, 3);
    check_layout(7, 5, 7, 4);
    check_layout(1, 2, 1, 1);
    check_layout(0, 5, 4, 2); /* verification only */
    check_layout(6, 6, 0, 0); /* lookahead only */
}

/* ---- greedy: lossless ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *kv[5];
    int n_kv;
} la_config;

static const la_config configs[] = {
    {"defaults W7 N5 G7", {"temperature=0"}, 1},
    {"W2 N3 G1", {"window=2", "ngram=3", "guess=1"}, 3},
    {"W1 N2 G1", {"window=1", "ngram=2", "guess=1", "pool_cap=1"}, 4},
    {"W4 N4 G4 prompt n-grams", {"window=4", "ngram=4", "guess=4", "prompt_ngrams=true"}, 4},
    {"W3 N3 G2 pool_cap 5 prompt n-grams", {"window=3", "ngram=3", "guess=2", "pool_cap=5", "prompt_ngrams=true"}, 5},
};
static const int n_configs = (int)(sizeof configs / sizeof configs[0]);

/* Runs rq with autoregressive (batch 1) and lookahead (batch 1 and 4); asserts
 * equal outputs and caches.  Returns lookahead's batch-4 run. */
static llmlab_run_result *check_lossless(const fixture_model *t, const dc_requests *rq, const la_config *c,
                                         const char *what, uint64_t seed) {
    kv_snapshot want = {0};
    dc_opts ar = {.max_batch = 1, .seed = seed, .on_finish = kvs_on_finish, .on_finish_user = &want};
    llmlab_run_result *ref = dc_run(t->m, g_reg, &ar, rq), *last = NULL;
    for (int batch = 1; batch <= 4; batch += 3) {
        kv_snapshot got = {0};
        dc_opts o = {.decoding = "lookahead", .kv = c->kv, .n_kv = c->n_kv, .max_batch = batch, .seed = seed,
                     .token_budget = 512, .on_finish = kvs_on_finish, .on_finish_user = &got};
        llmlab_run_result *res = dc_run(t->m, g_reg, &o, rq);
        char label[240];
        snprintf(label, sizeof label, "%s, %s, batch %d", what, c->name, batch);
        dc_assert_same(ref, res, label);
        kvs_assert_same(&want, &got, rq->n, label);
        cr_assert_leq(dc_metric(res, "accepted"), dc_metric(res, "drafted"), "%s", label);
        cr_assert_gt(dc_metric(res, "lookahead_tokens"), 0, "%s: no lookahead branch forwarded", label);
        kvs_free(&got);
        if (last) llmlab_run_result_free(last);
        last = res;
    }
    kvs_free(&want);
    llmlab_run_result_free(ref);
    return last;
}

Test(lookahead, greedy_equals_autoregressive_on_three_shapes, .timeout = 900) {
    uint64_t seed = fixture_seed("lookahead-greedy");
    for (int i = 0; i < 3; i++) {
        fixture_model t;
        fixture_load(&t, &fixture_shapes[i], seed + (uint64_t)i);
        int V = t.m->cfg.vocab_size;
        dc_requests rnd, rep;
        dc_requests_make(&rnd, 6, V, 3, 40, 1, 30, seed + 10 + (uint64_t)i);
        dc_requests_make_staggered_repetitive(&rep, 6, V, seed + 20 + (uint64_t)i);
        for (int c = 0; c < n_configs; c++) {
            char what[160];
            snprintf(what, sizeof what, "shape %s, random prompts", fixture_shapes[i].name);
            llmlab_run_result_free(check_lossless(&t, &rnd, &configs[c], what, seed));
            snprintf(what, sizeof what, "shape %s, repetitive prompts", fixture_shapes[i].name);
            llmlab_run_result_free(check_lossless(&t, &rep, &configs[c], what, seed));
        }
        dc_requests_free(&rnd);
        dc_requests_free(&rep);
        fixture_free(&t);
    }
}

/* Acceptance is not a correctness property; the figures are printed for the
 * docs.  With the prompt's n-grams in the pool, repetitive prompts must accept. */
Test(lookahead, acceptance_figures) {
    uint64_t seed = fixture_seed("lookahead-accepts");
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], seed);
    dc_requests rep, rnd;
    dc_requests_make_acceptance_sets(&rep, &rnd, t.m->cfg.vocab_size, seed);
    for (int c = 0; c < n_configs; c++) {
        llmlab_run_result *r = check_lossless(&t, &rep, &configs[c], "repetitive", seed);
        llmlab_run_result *q = check_lossless(&t, &rnd, &configs[c], "random", seed);
        char what[128];
        snprintf(what, sizeof what, "lookahead %s on %s", configs[c].name, fixture_shapes[0].name);
        dc_report_acceptance(what, r, q);
        if (strstr(configs[c].name, "prompt n-grams")) {
            cr_assert_gt(dc_metric(r, "accepted"), 0, "%s: nothing accepted on repetitive prompts", configs[c].name);
            cr_assert_gt(r->mean_accepted, 1.0, "%s", configs[c].name);
        }
        llmlab_run_result_free(r);
        llmlab_run_result_free(q);
    }
    dc_requests_free(&rep);
    dc_requests_free(&rnd);
    fixture_free(&t);
}

/* ---- errors --------------------------------------------------------------------------------- */

static llmlab_status try_create(const llmlab_model *m, const char *const *kv, int n_kv, llmlab_engine **e,
                                llmlab_err *err) {
    llmlab_param_value v[4];
    char keys[4][32];
    cr_assert_leq(n_kv, 4);
    for (int i = 0; i < n_kv; i++) {
        const char *eq = strchr(kv[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kv[i]), kv[i]);
        llmlab_param_value_from_text(&v[i], keys[i], eq + 1);
    }
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"lookahead", v, n_kv}, .n_threads = 1,
                            .token_budget = 256};
    *e = NULL;
    memset(err, 0, sizeof *err);
    return llmlab_engine_create(e, m, &o, err);
}

Test(lookahead, sampled_sequences_are_refused_clearly) {
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], 5);
    const char *kv[] = {"temperature=0.8"};
    llmlab_engine *e;
    llmlab_err err;
    cr_assert_eq(try_create(t.m, kv, 1, &e, &err), LLMLAB_OK, "%s", err.msg);
    int32_t prompt[] = {1, 2, 3, 4};
    llmlab_request req = {.id = 0, .prompt = prompt, .prompt_len = 4, .max_new = 5};
    llmlab_run_result *res = NULL;
    cr_assert_neq(llmlab_engine_run(e, &req, 1, &res, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "lookahead supports greedy decoding only (temperature 0)"), "%s", err.msg);
    cr_assert_null(res);
    llmlab_engine_free(e);
    fixture_free(&t);
}

Test(lookahead, bad_params_are_named) {
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], 6);
    llmlab_engine *e;
    llmlab_err err;
    const char *n1[] = {"ngram=1"};
    cr_assert_eq(try_create(t.m, n1, 1, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "'ngram'") && strstr(err.msg, "outside"), "%s", err.msg);
    const char *w0[] = {"window=0"};
    cr_assert_eq(try_create(t.m, w0, 1, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "'window'"), "%s", err.msg);
    const char *g0[] = {"guess=0"};
    cr_assert_eq(try_create(t.m, g0, 1, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "'guess'"), "%s", err.msg);
    /* 1 + 30*9 + 30*9 = 541 tokens per step: more than the budget of 256 */
    const char *big[] = {"window=30", "ngram=10", "guess=30"};
    cr_assert_eq(try_create(t.m, big, 3, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "541") && strstr(err.msg, "token budget"), "%s", err.msg);
    const char *ok[] = {"window=3", "ngram=2", "guess=2"};
    cr_assert_eq(try_create(t.m, ok, 3, &e, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_engine_decode_tokens(e), 1 + 3 * 1 + 2 * 1);
    llmlab_engine_free(e);
    fixture_free(&t);
}
