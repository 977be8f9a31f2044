/* test_engine.c - the engine path through plugins reproduces the core generate()
 * token for token (greedy and seeded sampling), alone and in static batches. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/engine.h"
#include "core/generate.h"
#include "core/rng.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"

static llmlab_registry *g_reg;
static fixture_model g_fm;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
    fixture_load(&g_fm, &fixture_shapes[0], 21);
}

static void teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
}

TestSuite(engine, .init = setup, .fini = teardown);

static void core_generate(const int32_t *prompt, int n, int max_new, llmlab_sampling samp, uint64_t seed,
                          int32_t *out, int *n_out) {
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 2, .max_seqs = 1, .kv_tokens = 256};
    cr_assert_eq(llmlab_ctx_create(&ctx, g_fm.m, &co, &err), LLMLAB_OK);
    llmlab_gen_opts go = {.max_new = max_new, .samp = samp, .seed = seed};
    cr_assert_eq(llmlab_generate(ctx, 0, prompt, n, &go, out, n_out, NULL, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_ctx_free(ctx);
}

static llmlab_engine *make_engine(const llmlab_param_value *dec_vals, int n_dec, int max_batch, uint64_t seed) {
    llmlab_engine *e;
    llmlab_err err = {0};
    llmlab_param_value mb;
    char text[16];
    snprintf(text, sizeof text, "%d", max_batch);
    llmlab_param_value_from_text(&mb, "max_batch", text);
    llmlab_engine_opts o = {.registry = g_reg,
                            .decoding = {"autoregressive", dec_vals, n_dec},
                            .sched = {"fcfs", &mb, 1},
                            .seed = seed,
                            .n_threads = 2,
                            .kv_tokens = 2048,
                            .max_seqs = 8,
                            .token_budget = 64};
    cr_assert_eq(llmlab_engine_create(&e, g_fm.m, &o, &err), LLMLAB_OK, "%s", err.msg);
    return e;
}

Test(engine, greedy_and_sampled_equal_core_generate_alone_and_batched) {
    uint64_t seed = fixture_seed("engine");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { R = 5 };
    int32_t prompts[R][40];
    int plen[R] = {7, 40, 3, 19, 11}, max_new[R] = {12, 5, 9, 1, 16};
    for (int i = 0; i < R; i++)
        for (int k = 0; k < plen[i]; k++) prompts[i][k] = (int32_t)(llmlab_rng_next(&rng) % 509);
    llmlab_sampling modes[2] = {LLMLAB_SAMPLING_GREEDY, {0.9f, 50, 0.95f, 0.0f}};
    for (int m = 0; m < 2; m++) {
        llmlab_param_value vals[3];
        char t[32], k[32], p[32];
        snprintf(t, sizeof t, "%g", modes[m].temperature);
        snprintf(k, sizeof k, "%d", modes[m].top_k);
        snprintf(p, sizeof p, "%g", modes[m].top_p);
        llmlab_param_value_from_text(&vals[0], "temperature", t);
        llmlab_param_value_from_text(&vals[1], "top_k", k);
        llmlab_param_value_from_text(&vals[2], "top_p", p);
        for (int batch = 1; batch <= 3; batch += 2) {
            llmlab_engine *e = make_engine(vals, 3, batch, seed);
            llmlab_request reqs[R];
            for (int i = 0; i < R; i++)
                reqs[i] = (llmlab_request){.id = i, .prompt = prompts[i], .prompt_len = plen[i], .max_new = max_new[i]};
            llmlab_run_result *res;
            llmlab_err err = {0};
            cr_assert_eq(llmlab_engine_run(e, reqs, R, &res, &err), LLMLAB_OK, "%s", err.msg);
            for (int i = 0; i < R; i++) {
                int32_t want[64];
                int n_want = 0;
                /* the engine seeds request i's stream as (seed, i); core generate as (seed, seq 0) */
                llmlab_rng_seed(&rng, seed, (uint64_t)i);
                core_generate(prompts[i], plen[i], max_new[i], modes[m], seed, want, &n_want);
                if (i != 0 && modes[m].temperature > 0) continue; /* streams differ: only request 0 shares (seed, 0) */
                cr_assert_eq(res->output_len[i], n_want, "mode %d batch %d req %d length", m, batch, i);
                cr_assert(memcmp(res->output[i], want, sizeof(int32_t) * (size_t)n_want) == 0,
                          "mode %d batch %d request %d: engine tokens differ from core generate", m, batch, i);
            }
            cr_assert_float_eq(res->mean_accepted, 1.0, 1e-12, "autoregressive accepts one token per forward");
            long long total = 0;
            for (int i = 0; i < R; i++) total += max_new[i];
            cr_assert_eq(res->output_tokens, total);
            cr_assert_eq(res->n_tok, total);
            int max_seqs = 0;
            for (int s = 0; s < res->n_steps; s++)
                if (res->step_seqs[s] > max_seqs) max_seqs = res->step_seqs[s];
            cr_assert_leq(max_seqs, batch, "fcfs max_batch %d respected", batch);
            if (batch == 3) cr_assert_eq(max_seqs, 3, "static batches of 3 run together");
            llmlab_run_result_free(res);
            llmlab_engine_free(e);
        }
    }
}

Test(engine, sampled_batch_equals_each_request_alone) {
    uint64_t seed = fixture_seed("engine-sampled");
    llmlab_param_value vals[1];
    llmlab_param_value_from_text(&vals[0], "temperature", "1.0");
    int32_t prompt[3][6] = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}, {13, 14, 15, 16, 17, 18}};
    llmlab_request reqs[3];
    for (int i = 0; i < 3; i++) reqs[i] = (llmlab_request){.id = 10 + i, .prompt = prompt[i], .prompt_len = 6, .max_new = 10};
    llmlab_err err = {0};
    llmlab_engine *batched = make_engine(vals, 1, 3, seed);
    llmlab_run_result *all;
    cr_assert_eq(llmlab_engine_run(batched, reqs, 3, &all, &err), LLMLAB_OK, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        llmlab_engine *alone = make_engine(vals, 1, 1, seed);
        llmlab_run_result *one;
        cr_assert_eq(llmlab_engine_run(alone, &reqs[i], 1, &one, &err), LLMLAB_OK);
        cr_assert(memcmp(one->output[0], all->output[i], sizeof(int32_t) * 10) == 0,
                  "request %d sampled differently inside a batch", reqs[i].id);
        llmlab_run_result_free(one);
        llmlab_engine_free(alone);
    }
    llmlab_run_result_free(all);
    llmlab_engine_free(batched);
}

Test(engine, unknown_plugin_and_bad_params_are_named) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"medusa_x", NULL, 0}};
    cr_assert_eq(llmlab_engine_create(&e, g_fm.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "no decoding plugin named 'medusa_x'") && strstr(err.msg, "autoregressive"), "%s", err.msg);
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, "max_batch", "0");
    o = (llmlab_engine_opts){.registry = g_reg, .sched = {"fcfs", &v, 1}};
    cr_assert_eq(llmlab_engine_create(&e, g_fm.m, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "sched plugin 'fcfs'") && strstr(err.msg, "max_batch"), "%s", err.msg);
}

/* ---- mask visibility (step_see) next to other sequences ------------------------------ */

/* A decoding plugin that forwards the root and one guess (the root token again)
 * whose visibility is given with step_see, then verifies greedily: its output must
 * be greedy decoding's while other sequences prefill in the same steps. */
typedef struct {
    const llmlab_host *h;
} see_state;

static llmlab_status see_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    see_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    *self = s;
    return LLMLAB_OK;
}
static void see_destroy(void *self) {
    if (self) ((see_state *)self)->h->free(self);
}
static llmlab_status see_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void see_end(void *self, llmlab_seq *s) {}
static int see_max(void *self) { return 2; }

static llmlab_status see_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((see_state *)self)->h;
    int32_t last = H->seq_tokens(s)[H->seq_len(s) - 1];
    int root = H->step_add(st, s, last, H->seq_kv_len(s), LLMLAB_ROW_LOGITS, -1);
    if (H->seq_remaining(s) < 2) return root < 0 ? LLMLAB_ENOKV : LLMLAB_OK;
    int guess = H->step_add(st, s, last, H->seq_kv_len(s) + 1, LLMLAB_ROW_LOGITS, -1);
    if (guess < 0) return LLMLAB_ENOKV;
    H->step_see(st, guess, root);
    return LLMLAB_OK;
}

static llmlab_status see_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((see_state *)self)->h;
    int rows[512];
    int n = H->step_rows(st, s, rows, 512);
    /* one guess when the last two rows both carry logits; the prompt's rows have one */
    int k = n >= 2 && H->step_logits(st, rows[n - 2]) ? 1 : 0;
    int *mine = rows + (n - 1 - k);
    const float *l0 = H->step_logits(st, mine[0]);
    if (!l0) return LLMLAB_EINVAL;
    int32_t out[2], slots[2];
    int n_out = 0, n_slots = 0;
    int32_t t0 = H->seq_sample(s, l0);
    if (H->step_slot(st, mine[0]) >= H->seq_kv_len(s)) slots[n_slots++] = H->step_slot(st, mine[0]);
    out[n_out++] = t0;
    if (k == 1 && H->seq_tokens(s)[H->seq_len(s) - 1] == t0) { /* the guess was right */
        slots[n_slots++] = H->step_slot(st, mine[1]);
        out[n_out++] = H->seq_sample(s, H->step_logits(st, mine[1]));
    }
    llmlab_status r = n_slots ? H->seq_kv_keep(s, slots, n_slots, err) : LLMLAB_OK;
    return r ? r : H->seq_accept(s, out, n_out, err);
}

static const llmlab_decoding_ops see_ops = {sizeof see_ops, see_create, see_destroy, see_begin, see_end,
                                            see_propose, see_verify, NULL, see_max};
static const llmlab_plugin_desc see_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "test_see", "1.0", "root + one guess seen through step_see", NULL, 0, &see_ops);
static const llmlab_plugin_desc *see_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return &see_desc; }

Test(engine, step_see_sequences_beside_prefills_equal_greedy) {
    uint64_t seed = fixture_seed("engine-step-see");
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_add(g_reg, see_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    dc_requests rq;
    dc_requests_make(&rq, 10, g_fm.m->cfg.vocab_size, 2, 30, 1, 20, seed);
    dc_opts ar = {.max_batch = 1, .seed = seed};
    llmlab_run_result *want = dc_run(g_fm.m, g_reg, &ar, &rq);
    dc_opts see = {.decoding = "test_see", .max_batch = 4, .seed = seed};
    llmlab_run_result *got = dc_run(g_fm.m, g_reg, &see, &rq);
    dc_assert_same(want, got, "step_see chain at batch 4 with staggered admissions");
    llmlab_run_result_free(want);
    llmlab_run_result_free(got);
    dc_requests_free(&rq);
}
