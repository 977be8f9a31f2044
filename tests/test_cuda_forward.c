/* test_cuda_forward.c - the whole forward on the GPU (backend cuda, core/forward_cuda.c)
 * against the CPU backend, and the exactness properties of deterministic mode.
 *
 * Every GPU test skips (not fails) in a build without CUDA or on a machine
 * without a device; `refused_without_a_device` runs exactly there and checks the
 * error a user gets.  Inputs are fresh random tokens every run; the seed is
 * printed (replay with LLMLAB_TEST_SEED).
 *
 *   logits      teacher-forced: a prompt prefilled in uneven chunks, then single
 *               decode steps, on the CPU and on the GPU from the same files;
 *               every logit within atol + rtol |ref| (f32 weights: the GPU sums
 *               in another order, ~1e-5 relative; bf16 weights: cuBLAS rounds
 *               activations to bf16 above 8 rows, ~1e-2), and the argmax
 *               agreeing on >= 97% of rows (ties and near-ties may flip).
 *   exactness   deterministic mode: one-shot vs chunked prefill and alone vs
 *               batched give the same bits; prompt lookup reproduces greedy
 *               autoregressive output token for token through the engine
 *               (drafts, partial acceptance, KV truncation on the device).
 *   policies    the window and H2O policies (evictions, holes, compaction, the
 *               device's ordered KV copies, attention mass back to the host) run
 *               on the GPU and agree with themselves batched vs alone.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/forward.h"
#include "core/model.h"
#include "core/registry.h"
#include "core/rng.h"
#include "core/params.h"
#include "tests/util/decode_check.h"
#include "tests/util/fixture_model.h"

#ifdef LLMLAB_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

static int have_device(void) {
#ifdef LLMLAB_HAVE_CUDA
    llmlab_err err = {0};
    return llmlab_cuda_device_count(&err) > 0;
#else
    return 0;
#endif
}

static void need_device(void) {
    if (!have_device()) cr_skip_test("no CUDA device (or a build without CUDA)");
}

/* Shapes the CUDA forward takes: rows 16-byte aligned (dims multiples of 8). */
static const fixture_shape g_shapes[] = {
    {"gqa-f32", 512, 128, 3, 8, 2, 256, 0, 0, 0, LLMLAB_DTYPE_F32},
    {"mha-tied-bias-f32", 384, 128, 2, 4, 4, 192, 0, 1, 1, LLMLAB_DTYPE_F32},
    {"gqa-hd128-bf16", 1000, 256, 2, 4, 1, 512, 128, 0, 0, LLMLAB_DTYPE_BF16},
    {"qwen-like-f16", 640, 192, 2, 6, 2, 384, 32, 0, 1, LLMLAB_DTYPE_F16},
};

Test(cuda_forward, refused_without_a_device) {
    if (have_device()) cr_skip_test("a CUDA device is present");
    fixture_model f;
    fixture_load(&f, &g_shapes[0], 5);
    llmlab_err err = {0};
    llmlab_status st = llmlab_model_set_backend(f.m, LLMLAB_BACKEND_CUDA, 0, 0, &err);
    cr_assert_neq(st, LLMLAB_OK, "backend cuda accepted without a device");
    cr_assert(strstr(err.msg, "cuda"), "the message names the backend: %s", err.msg);
    cr_assert_eq(f.m->backend, LLMLAB_BACKEND_CPU, "a refused backend leaves the model on the CPU");
    fixture_free(&f);
}

/* A second copy of the fixture's model, on the GPU. */
static llmlab_model *gpu_twin(const fixture_model *f, int deterministic) {
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_model_load(&m, f->dir, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_model_set_backend(m, LLMLAB_BACKEND_CUDA, 0, deterministic, &err), LLMLAB_OK, "%s", err.msg);
    return m;
}

/* A test's model on the GPU (skips without a device): the CPU fixture, its
 * GPU twin, the built-in plugins and the test's seed. */
typedef struct {
    uint64_t seed;
    fixture_model f;
    llmlab_model *gm;
    llmlab_registry *reg;
} gpu_fixture;

static void gpu_open(gpu_fixture *g, const char *name, const fixture_shape *shape, int deterministic) {
    need_device();
    g->seed = fixture_seed(name);
    fixture_load(&g->f, shape, g->seed);
    g->gm = gpu_twin(&g->f, deterministic);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g->reg, &err), LLMLAB_OK, "%s", err.msg); /* with the built-in plugins */
}

static void gpu_close(gpu_fixture *g) {
    llmlab_registry_free(g->reg);
    llmlab_model_free(g->gm);
    fixture_free(&g->f);
}

static llmlab_ctx *ctx_of(const llmlab_model *m) {
    llmlab_ctx *c = NULL;
    llmlab_err err = {0};
    llmlab_ctx_opts o = {.n_threads = 2, .kv_tokens = 2048, .max_seqs = 8, .max_batch = 128};
    cr_assert_eq(llmlab_ctx_create(&c, m, &o, &err), LLMLAB_OK, "%s", err.msg);
    return c;
}

/* Forwards tok[from, to) of sequence seq; copies every row's logits to out. */
static void run_chunk(llmlab_ctx *c, llmlab_batch *b, int seq, const int32_t *tok, int from, int to, float *out) {
    llmlab_batch_clear(b);
    for (int i = from; i < to; i++) llmlab_batch_add(b, tok[i], seq, i, LLMLAB_TOK_LOGITS, -1);
    const llmlab_outputs *o = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_forward(c, b, &o, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(o->n_out, to - from);
    size_t V = (size_t)llmlab_ctx_model(c)->cfg.vocab_size;
    memcpy(out + (size_t)from * V, o->logits, (size_t)(to - from) * V * sizeof(float));
    llmlab_kv_commit(llmlab_ctx_kv(c), seq);
}

/* logits[len][vocab] of tok: prefill in chunks (cuts[] ascending, ending at
 * prefill), then one token per forward. */
static float *stream_logits(const llmlab_model *m, const int32_t *tok, int len, const int *cuts, int n_cuts) {
    size_t V = (size_t)m->cfg.vocab_size;
    float *out = malloc((size_t)len * V * sizeof(float));
    cr_assert(out);
    llmlab_ctx *c = ctx_of(m);
    llmlab_batch *b = llmlab_batch_create(128);
    int at = 0;
    for (int k = 0; k < n_cuts; k++) run_chunk(c, b, 0, tok, at, cuts[k], out), at = cuts[k];
    for (; at < len; at++) run_chunk(c, b, 0, tok, at, at + 1, out);
    llmlab_batch_free(b);
    llmlab_ctx_free(c);
    return out;
}

static void random_tokens(int32_t *t, int n, int vocab, llmlab_rng *g) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(llmlab_rng_next(g) % (uint64_t)vocab);
}

Test(cuda_forward, logits_match_the_cpu_backend, .timeout = 300) {
    need_device();
    uint64_t seed = fixture_seed("cuda-logits");
    for (size_t s = 0; s < sizeof g_shapes / sizeof g_shapes[0]; s++) {
        const fixture_shape *sh = &g_shapes[s];
        fixture_model f;
        fixture_load(&f, sh, seed + s);
        llmlab_model *gm = gpu_twin(&f, 0);
        llmlab_rng g;
        llmlab_rng_seed(&g, seed, s);
        enum { LEN = 72 };
        int32_t tok[LEN];
        random_tokens(tok, LEN, sh->vocab, &g);
        static const int cuts[] = {7, 20, 48};
        float *want = stream_logits(f.m, tok, LEN, cuts, 3), *got = stream_logits(gm, tok, LEN, cuts, 3);
        size_t V = (size_t)sh->vocab;
        double rtol = sh->dtype == LLMLAB_DTYPE_F32 ? 2e-4 : 3e-2, worst = 0;
        int agree = 0;
        for (int r = 0; r < LEN; r++) {
            const float *w = want + (size_t)r * V, *x = got + (size_t)r * V;
            double scale = 0;
            for (size_t v = 0; v < V; v++) scale = fmax(scale, fabs(w[v]));
            for (size_t v = 0; v < V; v++) {
                double e = fabs((double)x[v] - w[v]), bound = rtol * (scale + fabs(w[v]));
                cr_assert(e <= bound, "%s row %d logit %zu: gpu %g cpu %g (bound %g; seed %llu)", sh->name, r, v,
                          x[v], w[v], bound, (unsigned long long)seed);
                worst = fmax(worst, e / (scale + 1e-30));
            }
            size_t aw = 0, ax = 0;
            for (size_t v = 1; v < V; v++) aw = w[v] > w[aw] ? v : aw, ax = x[v] > x[ax] ? v : ax;
            agree += aw == ax;
        }
        fprintf(stderr, "[cuda-logits] %-18s max |gpu-cpu| / max|logit| %.2e, argmax agreement %d/%d\n", sh->name,
                worst, agree, LEN);
        cr_assert_geq(agree, LEN * 97 / 100, "%s: argmax agrees on %d of %d rows", sh->name, agree, LEN);
        free(want), free(got);
        llmlab_model_free(gm);
        fixture_free(&f);
    }
}

Test(cuda_forward, deterministic_prefill_chunking_and_batching_are_exact, .timeout = 300) {
    gpu_fixture fx;
    gpu_open(&fx, "cuda-exact", &g_shapes[2], 1);
    llmlab_model *gm = fx.gm;
    uint64_t seed = fx.seed;
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 9);
    enum { LEN = 90 };
    int32_t tok[LEN];
    random_tokens(tok, LEN, g_shapes[2].vocab, &g);
    size_t V = (size_t)gm->cfg.vocab_size;
    static const int one[] = {LEN}, chunks[] = {13, 14, 40, 77};
    float *a = stream_logits(gm, tok, LEN, one, 1), *b = stream_logits(gm, tok, LEN, chunks, 4);
    for (int r = 0; r < LEN; r++)
        cr_assert(!memcmp(a + r * V, b + r * V, V * sizeof(float)),
                  "row %d: one-shot and chunked prefill differ in deterministic mode (seed %llu)", r,
                  (unsigned long long)seed);
    /* alone vs with five other sequences in every forward */
    llmlab_ctx *c = ctx_of(gm);
    llmlab_batch *bt = llmlab_batch_create(128);
    int32_t other[5][LEN];
    for (int s = 0; s < 5; s++) random_tokens(other[s], LEN, (int)V, &g);
    for (int at = 0; at < LEN; at++) {
        llmlab_batch_clear(bt);
        for (int s = 0; s < 5; s++) llmlab_batch_add(bt, other[s][at], s + 1, at, LLMLAB_TOK_LOGITS, -1);
        int idx = llmlab_batch_add(bt, tok[at], 0, at, LLMLAB_TOK_LOGITS, -1);
        const llmlab_outputs *o = NULL;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_forward(c, bt, &o, &err), LLMLAB_OK, "%s", err.msg);
        for (int s = 0; s <= 5; s++) llmlab_kv_commit(llmlab_ctx_kv(c), s);
        cr_assert_eq(o->out_index[5], idx);
        cr_assert(!memcmp(o->logits + 5 * V, b + at * V, V * sizeof(float)),
                  "position %d: batched with 5 others differs from alone (seed %llu)", at, (unsigned long long)seed);
    }
    llmlab_batch_free(bt);
    llmlab_ctx_free(c);
    free(a), free(b);
    gpu_close(&fx);
}

Test(cuda_forward, speculative_greedy_equals_autoregressive_on_the_gpu, .timeout = 300) {
    gpu_fixture fx;
    gpu_open(&fx, "cuda-spec", &g_shapes[0], 1);
    llmlab_model *gm = fx.gm;
    uint64_t seed = fx.seed;
    dc_requests r;
    dc_requests_make_staggered_repetitive(&r, 8, gm->cfg.vocab_size, seed);
    dc_opts ar = {.seed = seed};
    static const char *const pl_kv[] = {"num_pred_tokens=5"};
    dc_opts pl = {.decoding = "prompt_lookup", .kv = pl_kv, .n_kv = 1, .seed = seed};
    llmlab_run_result *want = dc_run(gm, fx.reg, &ar, &r), *got = dc_run(gm, fx.reg, &pl, &r);
    dc_assert_same(want, got, "prompt_lookup vs autoregressive on the GPU (deterministic)");
    cr_assert_gt(dc_metric(got, "accepted"), 0, "drafts were accepted, so KV truncation ran on the device");
    llmlab_run_result_free(want);
    llmlab_run_result_free(got);
    dc_requests_free(&r);
    gpu_close(&fx);
}

/* Runs the requests with an attention policy, all at once or one by one. */
static llmlab_run_result *run_policy(const llmlab_model *m, const llmlab_registry *reg, const char *att,
                                     const char *params, const dc_requests *r, int max_batch) {
    llmlab_param_value pv[4];
    int n = 0;
    char buf[128], keys[4][32], mb[16];
    snprintf(buf, sizeof buf, "%s", params);
    for (char *t = strtok(buf, " "); t && n < 4; t = strtok(NULL, " "), n++) {
        char *eq = strchr(t, '=');
        cr_assert(eq, "policy parameter '%s' is not key=value", t);
        *eq = 0;
        snprintf(keys[n], sizeof keys[n], "%s", t);
        llmlab_param_value_from_text(&pv[n], keys[n], eq + 1);
    }
    snprintf(mb, sizeof mb, "%d", max_batch);
    llmlab_param_value sv[1];
    llmlab_param_value_from_text(&sv[0], "max_batch", mb);
    llmlab_engine_opts o = {.registry = reg,
                            .attention = {att, pv, n},
                            .sched = {"continuous", sv, 1},
                            .seed = 3,
                            .n_threads = 2,
                            .kv_tokens = 4096,
                            .max_seqs = 16,
                            .token_budget = 256};
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, m, &o, &err), LLMLAB_OK, "%s: %s", att, err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_run(e, r->reqs, r->n, &res, &err), LLMLAB_OK, "%s: %s", att, err.msg);
    llmlab_engine_free(e);
    return res;
}

Test(cuda_forward, evicting_policies_run_on_the_gpu_batch_invariantly, .timeout = 300) {
    gpu_fixture fx;
    gpu_open(&fx, "cuda-policies", &g_shapes[0], 1);
    dc_requests r;
    dc_requests_make(&r, 6, fx.gm->cfg.vocab_size, 30, 60, 30, 50, fx.seed);
    static const char *const pol[][2] = {{"window", "window=24"}, {"sinks", "sinks=4 window=20"},
                                         {"h2o", "heavy=8 recent=8"}};
    for (int p = 0; p < 3; p++) {
        llmlab_run_result *all = run_policy(fx.gm, fx.reg, pol[p][0], pol[p][1], &r, 8),
                          *alone = run_policy(fx.gm, fx.reg, pol[p][0], pol[p][1], &r, 1);
        char what[96];
        snprintf(what, sizeof what, "%s on the GPU: batch 8 vs batch 1", pol[p][0]);
        dc_assert_same(alone, all, what);
        llmlab_run_result_free(all);
        llmlab_run_result_free(alone);
    }
    dc_requests_free(&r);
    gpu_close(&fx);
}
