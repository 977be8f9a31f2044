/* test_forward.c - exactness properties of the one forward call (DESIGN.md):
 * one-shot vs incremental prefill, alone vs batched, tree vs chains, mask vs tree,
 * and agreement with an independent double-precision reference, over shapes
 * covering GQA/MQA/MHA, tied embeddings, qkv bias, head_dim 64/128, odd vocabs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "util/fixture_model.h"
#include "util/ref_model.h"

typedef struct {
    fixture_model fm;
    llmlab_ctx *ctx;
    llmlab_batch *b;
    int V;
} rig;

static void rig_open(rig *r, const fixture_shape *s, uint64_t seed, int block_size) {
    fixture_load(&r->fm, s, seed);
    llmlab_err err = {0};
    llmlab_ctx_opts o = {.n_threads = 2, .kv_block_size = block_size, .kv_tokens = 4096,
                         .max_seqs = 16, .max_batch = 128};
    cr_assert_eq(llmlab_ctx_create(&r->ctx, r->fm.m, &o, &err), LLMLAB_OK, "%s", err.msg);
    r->b = llmlab_batch_create(128);
    r->V = r->fm.m->cfg.vocab_size;
}

static void rig_close(rig *r) {
    llmlab_batch_free(r->b);
    llmlab_ctx_free(r->ctx);
    fixture_free(&r->fm);
}

static void random_tokens(int32_t *t, int n, int V, llmlab_rng *rng) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(llmlab_rng_next(rng) % (uint64_t)V);
}

static const llmlab_outputs *fwd(rig *r) {
    const llmlab_outputs *o = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_forward(r->ctx, r->b, &o, &err), LLMLAB_OK, "%s", err.msg);
    return o;
}

/* Runs tokens as one chain batch of seq at positions start.., all rows flagged;
 * copies logits into out[n][V] and commits. */
static void run_chain(rig *r, int seq, const int32_t *tok, int n, int start, float *out) {
    llmlab_batch_clear(r->b);
    for (int i = 0; i < n; i++) llmlab_batch_add(r->b, tok[i], seq, start + i, LLMLAB_TOK_LOGITS, -1);
    const llmlab_outputs *o = fwd(r);
    if (out) memcpy(out, o->logits, (size_t)n * r->V * sizeof(float));
    llmlab_kv_commit(llmlab_ctx_kv(r->ctx), seq);
}

static void assert_rows_equal(const float *a, const float *b, int rows, int V, const char *what,
                              const char *shape) {
    for (int i = 0; i < rows; i++)
        cr_assert(memcmp(a + (size_t)i * V, b + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                  "%s: row %d differs (shape %s)", what, i, shape);
}

Test(forward, oneshot_prefill_equals_incremental_and_chunked) {
    uint64_t seed = fixture_seed("oneshot");
    for (int si = 0; si < fixture_n_shapes; si++) {
        rig r;
        rig_open(&r, &fixture_shapes[si], seed + si, 4);
        llmlab_rng rng;
        llmlab_rng_seed(&rng, seed, si);
        enum { N = 23 };
        int32_t tok[N];
        random_tokens(tok, N, r.V, &rng);
        float *one = malloc(sizeof(float) * N * r.V), *inc = malloc(sizeof(float) * N * r.V),
              *chk = malloc(sizeof(float) * N * r.V);
        run_chain(&r, 0, tok, N, 0, one);
        for (int i = 0; i < N; i++) run_chain(&r, 1, tok + i, 1, i, inc + (size_t)i * r.V);
        for (int i = 0; i < N; i += 5) run_chain(&r, 2, tok + i, i + 5 <= N ? 5 : N - i, i, chk + (size_t)i * r.V);
        assert_rows_equal(one, inc, N, r.V, "one-shot vs incremental", fixture_shapes[si].name);
        assert_rows_equal(one, chk, N, r.V, "one-shot vs chunks of 5", fixture_shapes[si].name);
        free(one);
        free(inc);
        free(chk);
        rig_close(&r);
    }
}

Test(forward, sequence_alone_equals_inside_a_batch) {
    uint64_t seed = fixture_seed("batched");
    for (int si = 0; si < fixture_n_shapes; si++) {
        rig r;
        rig_open(&r, &fixture_shapes[si], seed + si, 16);
        llmlab_rng rng;
        llmlab_rng_seed(&rng, seed, 100 + si);
        enum { S = 3 };
        const int len[S] = {9, 17, 4};
        int32_t tok[S][17], next[S];
        float *alone[S], *alone_next[S];
        for (int s = 0; s < S; s++) {
            random_tokens(tok[s], len[s], r.V, &rng);
            random_tokens(&next[s], 1, r.V, &rng);
            alone[s] = malloc(sizeof(float) * len[s] * r.V);
            alone_next[s] = malloc(sizeof(float) * r.V);
            run_chain(&r, s, tok[s], len[s], 0, alone[s]);
            run_chain(&r, s, &next[s], 1, len[s], alone_next[s]);
        }
        /* Batched: the three prompts interleaved round-robin in one forward (seqs 10..12). */
        llmlab_batch_clear(r.b);
        int row_of[S][17];
        for (int i = 0, added = 1; added; i++) {
            added = 0;
            for (int s = 0; s < S; s++)
                if (i < len[s]) {
                    row_of[s][i] = llmlab_batch_add(r.b, tok[s][i], 10 + s, i, LLMLAB_TOK_LOGITS, -1);
                    added = 1;
                }
        }
        const llmlab_outputs *o = fwd(&r);
        for (int s = 0; s < S; s++) {
            for (int i = 0; i < len[s]; i++)
                cr_assert(memcmp(o->logits + (size_t)row_of[s][i] * r.V, alone[s] + (size_t)i * r.V,
                                 sizeof(float) * r.V) == 0,
                          "prefill row %d of seq %d differs batched vs alone (%s)", i, s,
                          fixture_shapes[si].name);
            llmlab_kv_commit(llmlab_ctx_kv(r.ctx), 10 + s);
        }
        /* One decode step of all three sequences together. */
        llmlab_batch_clear(r.b);
        for (int s = S - 1; s >= 0; s--) llmlab_batch_add(r.b, next[s], 10 + s, len[s], LLMLAB_TOK_LOGITS, -1);
        o = fwd(&r);
        for (int s = 0; s < S; s++)
            cr_assert(memcmp(o->logits + (size_t)(S - 1 - s) * r.V, alone_next[s], sizeof(float) * r.V) == 0,
                      "decode step of seq %d differs batched vs alone (%s)", s, fixture_shapes[si].name);
        for (int s = 0; s < S; s++) {
            free(alone[s]);
            free(alone_next[s]);
        }
        rig_close(&r);
    }
}

/* A small tree under a committed prefix:  0 -> {1, 2}, 1 -> 3, 2 -> 4, 3 -> 5. */
enum { TREE_N = 6, PREFIX = 7 };
static const int tree_parent[TREE_N] = {-1, 0, 0, 1, 2, 3};

static int tree_depth(int i) {
    int d = 0;
    for (int p = tree_parent[i]; p >= 0; p = tree_parent[p]) d++;
    return d;
}

/* Path root..node as tree indices; returns its length. */
static int tree_path(int node, int *path) {
    int rev[TREE_N], n = 0;
    for (int p = node; p >= 0; p = tree_parent[p]) rev[n++] = p;
    for (int i = 0; i < n; i++) path[i] = rev[n - 1 - i];
    return n;
}

static void add_tree(rig *r, const int32_t *nodes, llmlab_visibility vis) {
    llmlab_batch_clear(r->b);
    r->b->vis = vis;
    for (int i = 0; i < TREE_N; i++)
        llmlab_batch_add(r->b, nodes[i], 0, PREFIX + tree_depth(i), LLMLAB_TOK_LOGITS, tree_parent[i]);
    if (vis == LLMLAB_VIS_MASK)
        for (int i = 0; i < TREE_N; i++) {
            int path[TREE_N], n = tree_path(i, path);
            for (int k = 0; k < n; k++) llmlab_batch_see(r->b, i, path[k]);
        }
}

Test(forward, tree_nodes_equal_their_paths_as_chains) {
    uint64_t seed = fixture_seed("tree");
    for (int si = 0; si < fixture_n_shapes; si++) {
        rig r;
        rig_open(&r, &fixture_shapes[si], seed + si, 4);
        llmlab_rng rng;
        llmlab_rng_seed(&rng, seed, 200 + si);
        int32_t prefix[PREFIX], nodes[TREE_N];
        random_tokens(prefix, PREFIX, r.V, &rng);
        random_tokens(nodes, TREE_N, r.V, &rng);
        llmlab_kv *kv = llmlab_ctx_kv(r.ctx);
        llmlab_err err = {0};
        run_chain(&r, 0, prefix, PREFIX, 0, NULL);
        float *chain = malloc(sizeof(float) * TREE_N * r.V);
        for (int i = 0; i < TREE_N; i++) {
            int path[TREE_N], n = tree_path(i, path);
            int32_t toks[TREE_N];
            for (int k = 0; k < n; k++) toks[k] = nodes[path[k]];
            cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK, "%s", err.msg);
            float *rows = malloc(sizeof(float) * n * r.V);
            run_chain(&r, 1, toks, n, PREFIX, rows);
            memcpy(chain + (size_t)i * r.V, rows + (size_t)(n - 1) * r.V, sizeof(float) * r.V);
            free(rows);
            llmlab_kv_free_seq(kv, 1);
        }
        add_tree(&r, nodes, LLMLAB_VIS_TREE);
        const llmlab_outputs *o = fwd(&r);
        assert_rows_equal(o->logits, chain, TREE_N, r.V, "tree node vs its path", fixture_shapes[si].name);
        llmlab_kv_truncate(kv, 0, PREFIX, &err);
        add_tree(&r, nodes, LLMLAB_VIS_MASK);
        o = fwd(&r);
        assert_rows_equal(o->logits, chain, TREE_N, r.V, "mask node vs its path", fixture_shapes[si].name);
        free(chain);
        rig_close(&r);
    }
}

Test(forward, kv_truncate_then_reforward_equals_original) {
    uint64_t seed = fixture_seed("truncate");
    rig r;
    rig_open(&r, &fixture_shapes[0], seed, 4);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 1);
    int32_t a[13], x[6];
    random_tokens(a, 13, r.V, &rng);
    random_tokens(x, 6, r.V, &rng);
    float *first = malloc(sizeof(float) * 6 * r.V), *again = malloc(sizeof(float) * 6 * r.V);
    run_chain(&r, 0, a, 13, 0, NULL);
    run_chain(&r, 0, x, 6, 13, first);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_truncate(llmlab_ctx_kv(r.ctx), 0, 13, &err), LLMLAB_OK);
    run_chain(&r, 0, x, 6, 13, again);
    assert_rows_equal(first, again, 6, r.V, "after truncate", "gqa2");
    free(first);
    free(again);
    rig_close(&r);
}

Test(forward, fork_and_diverge_leaves_parent_untouched) {
    uint64_t seed = fixture_seed("fork");
    rig r;
    rig_open(&r, &fixture_shapes[1], seed, 4);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 2);
    int32_t p[10], child[5], y[4];
    random_tokens(p, 10, r.V, &rng); /* 10 = 2.5 blocks: the fork shares a half-full block */
    random_tokens(child, 5, r.V, &rng);
    random_tokens(y, 4, r.V, &rng);
    float *ref = malloc(sizeof(float) * 4 * r.V), *got = malloc(sizeof(float) * 4 * r.V);
    run_chain(&r, 3, p, 10, 0, NULL);
    run_chain(&r, 3, y, 4, 10, ref); /* the parent's continuation without any fork */
    llmlab_kv *kv = llmlab_ctx_kv(r.ctx);
    llmlab_err err = {0};
    run_chain(&r, 0, p, 10, 0, NULL);
    int used_before = llmlab_kv_blocks_used(kv);
    cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), used_before, "fork must share blocks, not copy them");
    run_chain(&r, 1, child, 5, 10, NULL); /* child writes into the shared half block */
    run_chain(&r, 0, y, 4, 10, got);
    assert_rows_equal(ref, got, 4, r.V, "parent after child diverged", "mqa-tied");
    free(ref);
    free(got);
    rig_close(&r);
}

Test(forward, keep_path_then_continue_equals_running_the_path) {
    uint64_t seed = fixture_seed("keep");
    rig r;
    rig_open(&r, &fixture_shapes[2], seed, 4);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 3);
    int32_t prefix[PREFIX], nodes[TREE_N], next;
    random_tokens(prefix, PREFIX, r.V, &rng);
    random_tokens(nodes, TREE_N, r.V, &rng);
    random_tokens(&next, 1, r.V, &rng);
    int path[TREE_N], n = tree_path(5, path); /* 0 -> 1 -> 3 -> 5 */
    int32_t direct[PREFIX + TREE_N + 1];
    memcpy(direct, prefix, sizeof prefix);
    for (int k = 0; k < n; k++) direct[PREFIX + k] = nodes[path[k]];
    direct[PREFIX + n] = next;
    float *ref = malloc(sizeof(float) * (PREFIX + n + 1) * r.V), *got = malloc(sizeof(float) * r.V);
    run_chain(&r, 4, direct, PREFIX + n + 1, 0, ref);

    llmlab_kv *kv = llmlab_ctx_kv(r.ctx);
    llmlab_err err = {0};
    run_chain(&r, 0, prefix, PREFIX, 0, NULL);
    add_tree(&r, nodes, LLMLAB_VIS_TREE);
    const llmlab_outputs *o = fwd(&r);
    int slots[TREE_N];
    for (int k = 0; k < n; k++) slots[k] = o->slot[path[k]];
    cr_assert_eq(llmlab_kv_keep(kv, 0, slots, n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 0), PREFIX + n);
    cr_assert_eq(llmlab_kv_committed(kv, 0), PREFIX + n);
    for (int k = 0; k < n; k++) cr_assert_eq(llmlab_kv_slot_pos(kv, 0, PREFIX + k), PREFIX + k);
    run_chain(&r, 0, &next, 1, PREFIX + n, got);
    cr_assert(memcmp(got, ref + (size_t)(PREFIX + n) * r.V, sizeof(float) * r.V) == 0,
              "continuing after keep(path) differs from running the path directly");
    free(ref);
    free(got);
    rig_close(&r);
}

/* Tolerance against the double reference: the engine accumulates in f32, so each
 * dot product of length K carries a relative error of order K * 2^-24 of the sum
 * of |terms|; through two layers, softmax and the LM head of these small models
 * that stays below 1e-3 relative to values of order 1-10 (observed ~1e-5).
 * Weights are identical on both sides (bf16/f16 convert exactly to double). */
#define REF_ATOL 2e-3
#define REF_RTOL 2e-3

Test(forward, matches_double_precision_reference) {
    uint64_t seed = fixture_seed("reference");
    for (int si = 0; si < fixture_n_shapes; si++) {
        rig r;
        rig_open(&r, &fixture_shapes[si], seed + si, 16);
        llmlab_rng rng;
        llmlab_rng_seed(&rng, seed, 300 + si);
        enum { T = 12 };
        int32_t tok[T];
        random_tokens(tok, T, r.V, &rng);
        int D = r.fm.m->cfg.dim;
        double *ref = malloc(sizeof(double) * T * r.V), *tap = malloc(sizeof(double) * T * D);
        ref_forward(r.fm.m, tok, T, ref, 0, tap);
        llmlab_batch_clear(r.b);
        r.b->tap_layer = 0;
        for (int i = 0; i < T; i++) llmlab_batch_add(r.b, tok[i], 0, i, LLMLAB_TOK_LOGITS | LLMLAB_TOK_HIDDEN, -1);
        const llmlab_outputs *o = fwd(&r);
        double max_err = 0;
        for (int i = 0; i < T * D; i++) {
            double e = fabs(o->tap[i] - tap[i]);
            cr_assert(e <= REF_ATOL + REF_RTOL * fabs(tap[i]), "%s: layer-0 hidden %d: %g vs %g",
                      fixture_shapes[si].name, i, o->tap[i], tap[i]);
        }
        for (int i = 0; i < T * r.V; i++) {
            double e = fabs(o->logits[i] - ref[i]);
            if (e > max_err) max_err = e;
            cr_assert(e <= REF_ATOL + REF_RTOL * fabs(ref[i]), "%s: logit %d (pos %d): %g vs %g",
                      fixture_shapes[si].name, i % r.V, i / r.V, o->logits[i], ref[i]);
        }
        for (int t = 0; t < T; t++) {
            int best = 0;
            for (int v = 1; v < r.V; v++)
                if (ref[t * r.V + v] > ref[t * r.V + best]) best = v;
            int got = 0;
            for (int v = 1; v < r.V; v++)
                if (o->logits[t * r.V + v] > o->logits[t * r.V + got]) got = v;
            cr_assert_eq(got, best, "%s: argmax at %d", fixture_shapes[si].name, t);
        }
        cr_log_info("%s: max |logit - ref| = %.3g", fixture_shapes[si].name, max_err);
        free(ref);
        free(tap);
        rig_close(&r);
    }
}

Test(forward, bad_batches_are_refused_without_touching_the_cache) {
    rig r;
    rig_open(&r, &fixture_shapes[0], 7, 16);
    llmlab_kv *kv = llmlab_ctx_kv(r.ctx);
    llmlab_err err = {0};
    const llmlab_outputs *o;
    llmlab_batch_clear(r.b);
    llmlab_batch_add(r.b, 1, 0, 0, LLMLAB_TOK_LOGITS, -1);
    llmlab_batch_add(r.b, r.V, 0, 1, LLMLAB_TOK_LOGITS, -1);
    cr_assert_eq(llmlab_forward(r.ctx, r.b, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "vocabulary"), "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 0), 0);
    llmlab_batch_clear(r.b);
    r.b->vis = LLMLAB_VIS_TREE;
    llmlab_batch_add(r.b, 1, 0, 0, LLMLAB_TOK_LOGITS, 1);
    cr_assert_eq(llmlab_forward(r.ctx, r.b, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "parent"), "%s", err.msg);
    llmlab_batch_clear(r.b);
    llmlab_batch_add(r.b, 1, 99, 0, LLMLAB_TOK_LOGITS, -1);
    cr_assert_eq(llmlab_forward(r.ctx, r.b, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "sequence"), "%s", err.msg);
    rig_close(&r);
}

Test(forward, out_of_kv_memory_is_an_error_and_rolls_back) {
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], 11);
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 1, .kv_block_size = 4, .kv_tokens = 8, .max_seqs = 2, .max_batch = 16};
    cr_assert_eq(llmlab_ctx_create(&ctx, fm.m, &co, &err), LLMLAB_OK);
    llmlab_batch *b = llmlab_batch_create(16);
    for (int i = 0; i < 6; i++) llmlab_batch_add(b, i + 1, 0, i, 0, -1);
    for (int i = 0; i < 4; i++) llmlab_batch_add(b, i + 1, 1, i, 0, -1);
    const llmlab_outputs *o;
    cr_assert_eq(llmlab_forward(ctx, b, &o, &err), LLMLAB_ENOKV);
    cr_assert(strstr(err.msg, "KV cache full"), "%s", err.msg);
    llmlab_kv *kv = llmlab_ctx_kv(ctx);
    cr_assert_eq(llmlab_kv_len(kv, 0), 0);
    cr_assert_eq(llmlab_kv_len(kv, 1), 0);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 0);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    fixture_free(&fm);
}
