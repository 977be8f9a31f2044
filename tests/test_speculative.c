/* test_speculative.c - draft-model and self speculative decoding.
 *
 * Greedy: token for token the autoregressive greedy output, for several shapes,
 * drafts that agree often or rarely, batch 1 and batch > 1 with sequences that
 * finish at different times; the KV cache after acceptance equals the one
 * autoregressive decoding leaves.  A draft that is the target itself accepts
 * everything: exactly k + 1 tokens per decoding forward. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"

static llmlab_registry *g_reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
}
static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(speculative, .init = setup, .fini = teardown);

/* A draft for `target`: same vocabulary, fewer layers, its own random weights. */
static void load_draft(fixture_model *d, const fixture_shape *target, uint64_t seed) {
    fixture_shape s = *target;
    s.name = "draft";
    s.layers = 1;
    s.dim = 64;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 0;
    s.ffn = 96;
    fixture_load(d, &s, seed);
}

/* min_k: the smallest draft length the plugin uses (adaptive k goes down to 1). */
static void check_lossless(const fixture_model *t, const char *what, const char *const *kv, int n_kv,
                           const char *decoding, int min_k, uint64_t seed) {
    dc_requests rq;
    dc_requests_make(&rq, 6, t->m->cfg.vocab_size, 3, 40, 1, 24, seed);
    dc_opts ar = {.max_batch = 1, .seed = seed};
    llmlab_run_result *want = dc_run(t->m, g_reg, &ar, &rq);
    for (int run = 0; run < 3; run++) { /* continuous batch 1 and 4, static (fcfs) batch 4 */
        int batch = run == 0 ? 1 : 4;
        const char *sched = run == 2 ? "fcfs" : "continuous";
        dc_opts o = {.decoding = decoding, .kv = kv, .n_kv = n_kv, .sched = sched, .max_batch = batch, .seed = seed};
        llmlab_run_result *got = dc_run(t->m, g_reg, &o, &rq);
        char label[160];
        snprintf(label, sizeof label, "%s, %s batch %d", what, sched, batch);
        dc_assert_same(want, got, label);
        cr_assert_geq(got->mean_accepted, 1.0, "%s: mean accepted %g", label, got->mean_accepted);
        /* Every decoding forward drafts min(k, remaining - 1) tokens: the draft's cache
         * must have been rolled back and caught up, or it drafts nothing. */
        long long dec_fwd = 0;
        for (int i = 0; i < got->n_reqs; i++) dec_fwd += got->forwards[i] > 0 ? got->forwards[i] - 1 : 0;
        cr_assert_geq(dc_metric(got, "drafted"), (double)min_k * (double)(dec_fwd - (long long)rq.n * min_k),
                      "%s: drafted only %g tokens in %lld decoding forwards", label, dc_metric(got, "drafted"), dec_fwd);
        llmlab_run_result_free(got);
    }
    llmlab_run_result_free(want);
    dc_requests_free(&rq);
}

Test(speculative, greedy_equals_autoregressive_on_several_shapes) {
    uint64_t seed = fixture_seed("speculative-greedy");
    for (int i = 0; i < 3; i++) {
        fixture_model t, d;
        fixture_load(&t, &fixture_shapes[i], seed + (uint64_t)i);
        load_draft(&d, &fixture_shapes[i], seed + 100 + (uint64_t)i);
        char draft_kv[300], what[128];
        snprintf(draft_kv, sizeof draft_kv, "draft=%s", d.dir);
        const char *kv[] = {draft_kv, "k=3"};
        snprintf(what, sizeof what, "shape %s, random draft", fixture_shapes[i].name);
        check_lossless(&t, what, kv, 2, "speculative", 3, seed);
        const char *kv_adapt[] = {draft_kv, "k=2", "adaptive=true", "k_max=6"};
        snprintf(what, sizeof what, "shape %s, random draft, adaptive k", fixture_shapes[i].name);
        check_lossless(&t, what, kv_adapt, 4, "speculative", 1, seed);
        const char *kv_self[] = {"exit_layer=1", "k=4"};
        snprintf(what, sizeof what, "shape %s, early-exit self draft", fixture_shapes[i].name);
        check_lossless(&t, what, kv_self, 2, "self_speculative", 4, seed);
        fixture_free(&d);
        fixture_free(&t);
    }
}

Test(speculative, self_draft_accepts_everything_k_plus_one_per_forward) {
    uint64_t seed = fixture_seed("speculative-self");
    fixture_model t;
    fixture_load(&t, &fixture_shapes[1], seed);
    for (int k = 1; k <= 5; k += 2) {
        dc_requests rq;
        /* max_new = 1 + (k+1)*T: the prefill's token, then T full drafts */
        dc_requests_make(&rq, 3, t.m->cfg.vocab_size, 5, 20, 1 + (k + 1) * 4, 1 + (k + 1) * 4, seed);
        char kk[16];
        snprintf(kk, sizeof kk, "k=%d", k);
        const char *kv[] = {"draft=self", kk};
        dc_opts o = {.decoding = "speculative", .kv = kv, .n_kv = 2, .max_batch = 3, .seed = seed};
        llmlab_run_result *r = dc_run(t.m, g_reg, &o, &rq);
        cr_assert_float_eq(r->mean_accepted, (double)(k + 1), 1e-12, "k=%d: mean accepted %g", k, r->mean_accepted);
        cr_assert_eq(dc_metric(r, "accepted"), dc_metric(r, "drafted"), "k=%d: every draft accepted", k);
        cr_assert_eq(dc_metric(r, "drafted"), 3.0 * 4 * k);
        llmlab_run_result_free(r);
        dc_requests_free(&rq);
    }
    fixture_free(&t);
}

Test(speculative, skipping_middle_layers_is_lossless_and_drafts_agree_sometimes) {
    uint64_t seed = fixture_seed("speculative-skip");
    fixture_shape s = fixture_shapes[0];
    s.layers = 4;
    fixture_model t;
    fixture_load(&t, &s, seed);
    const char *kv[] = {"skip=1-2", "k=4"};
    check_lossless(&t, "skip 1-2", kv, 2, "self_speculative", 4, seed);
    fixture_free(&t);
}

/* ---- the KV cache after acceptance ------------------------------------------------ */

Test(speculative, kv_cache_after_acceptance_equals_autoregressive) {
    uint64_t seed = fixture_seed("speculative-kv");
    fixture_model t, d;
    fixture_load(&t, &fixture_shapes[2], seed);
    load_draft(&d, &fixture_shapes[2], seed + 1);
    dc_requests rq;
    dc_requests_make(&rq, 5, t.m->cfg.vocab_size, 4, 30, 2, 20, seed);
    kv_snapshot want = {0}, got = {0}, self = {0};
    dc_opts ar = {.max_batch = 2, .seed = seed, .on_finish = kvs_on_finish, .on_finish_user = &want};
    llmlab_run_result_free(dc_run(t.m, g_reg, &ar, &rq));
    char dkv[300];
    snprintf(dkv, sizeof dkv, "draft=%s", d.dir);
    const char *kv[] = {dkv, "k=3"};
    dc_opts sp = {.decoding = "speculative", .kv = kv, .n_kv = 2, .max_batch = 3, .seed = seed,
                  .on_finish = kvs_on_finish, .on_finish_user = &got};
    llmlab_run_result_free(dc_run(t.m, g_reg, &sp, &rq));
    const char *kv_self[] = {"draft=self", "k=4"};
    dc_opts ss = {.decoding = "speculative", .kv = kv_self, .n_kv = 2, .max_batch = 4, .seed = seed,
                  .on_finish = kvs_on_finish, .on_finish_user = &self};
    llmlab_run_result_free(dc_run(t.m, g_reg, &ss, &rq));
    cr_assert_eq(want.n, rq.n);
    for (int i = 0; i < rq.n; i++) cr_assert_eq(want.len[i], rq.reqs[i].prompt_len + rq.reqs[i].max_new - 1);
    kvs_assert_same(&want, &got, rq.n, "random draft");
    kvs_assert_same(&want, &self, rq.n, "self draft");
    kvs_free(&want);
    kvs_free(&got);
    kvs_free(&self);
    dc_requests_free(&rq);
    fixture_free(&d);
    fixture_free(&t);
}

/* ---- errors ------------------------------------------------------------------------- */

Test(speculative, vocabulary_mismatch_and_bad_params_are_named) {
    uint64_t seed = fixture_seed("speculative-errors");
    fixture_model t, d;
    fixture_load(&t, &fixture_shapes[0], seed);
    fixture_shape s = fixture_shapes[0];
    s.vocab += 3;
    fixture_load(&d, &s, seed + 1);
    char dkv[300];
    snprintf(dkv, sizeof dkv, "%s", d.dir);
    llmlab_param_value v[1];
    llmlab_param_value_from_text(&v[0], "draft", dkv);
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"speculative", v, 1}, .n_threads = 1};
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, t.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "vocabulary") && strstr(err.msg, "share one tokenizer"), "%s", err.msg);
    llmlab_param_value_from_text(&v[0], "draft", "/nonexistent/model");
    memset(&err, 0, sizeof err);
    cr_assert_neq(llmlab_engine_create(&e, t.m, &o, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "/nonexistent/model"), "%s", err.msg);
    o.decoding = (llmlab_plugin_choice){"speculative", NULL, 0};
    memset(&err, 0, sizeof err);
    cr_assert_eq(llmlab_engine_create(&e, t.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "draft"), "missing draft named: %s", err.msg);
    llmlab_param_value_from_text(&v[0], "skip", "1-9");
    o.decoding = (llmlab_plugin_choice){"self_speculative", v, 1};
    memset(&err, 0, sizeof err);
    cr_assert_eq(llmlab_engine_create(&e, t.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "skip '1-9'"), "%s", err.msg);
    llmlab_param_value_from_text(&v[0], "k", "40");
    o.decoding = (llmlab_plugin_choice){"self_speculative", v, 1};
    memset(&err, 0, sizeof err);
    cr_assert_eq(llmlab_engine_create(&e, t.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "k"), "%s", err.msg);
    fixture_free(&d);
    fixture_free(&t);
}
