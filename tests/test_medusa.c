/* test_medusa.c - the medusa decoding plugin, its candidate tree, its heads file,
 * `llmlab synth --medusa` and Medusa head training.
 *
 * Greedy Medusa must reproduce autoregressive greedy token for token (several
 * shapes, batch 1 and > 1, sequences finishing at different times); trees are
 * checked by hand; bad heads files fail with messages naming the tensor; training
 * must beat the untrained heads on held-out positions; typical acceptance accepts
 * at least what greedy does on the same first step. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/medusa_train.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "plugins/decoding/medusa_tree.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"
#include "util/fsutil.h"
#include "util/proc.h"

static llmlab_registry *g_reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK, "%s", err.msg);
}

static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(medusa, .init = setup, .fini = teardown, .timeout = 300);

/* ---- helpers ------------------------------------------------------------------------- */

/* Trains K heads on fm's model (small and fast) and writes them to fm->dir/name in
 * the model's dtype; returns the malloc'd path. */
static char *train_heads(const fixture_model *fm, int K, int steps, uint64_t seed, const char *name,
                         llmlab_medusa_train_report *rep) {
    llmlab_medusa_train_opts o;
    llmlab_medusa_train_defaults(&o);
    o.heads = K, o.samples = 24, o.len = 40, o.prompt_len = 6, o.steps = steps, o.batch = 32;
    o.lr = 3e-3f, o.seed = seed, o.threads = 1;
    llmlab_medusa_heads h;
    llmlab_medusa_train_report r;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_medusa_train(fm->m, &o, &h, &r, &err), LLMLAB_OK, "train: %s", err.msg);
    char *path = fsu_join(fm->dir, name);
    cr_assert_eq(llmlab_medusa_heads_write(&h, fm->m->lm_head.dtype, path, &err), LLMLAB_OK, "write: %s", err.msg);
    llmlab_medusa_heads_free(&h);
    if (rep) *rep = r;
    return path;
}

/* "key=value" strings for the medusa plugin (storage kept by the caller). */
typedef struct {
    char text[6][600];
    const char *kv[6];
    int n;
} kv_list;

static void kv_add(kv_list *l, const char *key, const char *value) {
    snprintf(l->text[l->n], sizeof l->text[0], "%s=%s", key, value);
    l->kv[l->n] = l->text[l->n];
    l->n++;
}

/* snap: when non-NULL, receives the KV cache each request leaves. */
static llmlab_run_result *run_medusa_kv(const llmlab_model *m, const kv_list *kv, int max_batch, const dc_requests *r,
                                        uint64_t seed, kv_snapshot *snap) {
    dc_opts o = {.decoding = "medusa", .kv = kv->kv, .n_kv = kv->n, .max_batch = max_batch, .seed = seed,
                 .on_finish = snap ? kvs_on_finish : NULL, .on_finish_user = snap};
    return dc_run(m, g_reg, &o, r);
}

static llmlab_run_result *run_medusa(const llmlab_model *m, const kv_list *kv, int max_batch, const dc_requests *r,
                                     uint64_t seed) {
    return run_medusa_kv(m, kv, max_batch, r, seed, NULL);
}

static llmlab_run_result *run_greedy(const llmlab_model *m, int max_batch, const dc_requests *r, kv_snapshot *snap) {
    dc_opts o = {.max_batch = max_batch, .on_finish = snap ? kvs_on_finish : NULL, .on_finish_user = snap};
    return dc_run(m, g_reg, &o, r);
}

/* Value of plugin counter `name` in step j (0 when absent). */
static double step_metric(const llmlab_run_result *r, const char *name, int j) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->metric_names[m], name)) return r->step_metrics[(size_t)m * (size_t)r->n_steps + (size_t)j];
    return 0;
}

/* Creates (and frees) an engine with the medusa plugin; returns the status. */
static llmlab_status try_engine(const llmlab_model *m, const char *heads, const char *tree, llmlab_err *err) {
    llmlab_param_value v[2];
    int n = 1;
    llmlab_param_value_from_text(&v[0], "heads", heads);
    if (tree) llmlab_param_value_from_text(&v[n++], "tree", tree);
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"medusa", v, n}, .sched = {"continuous", NULL, 0},
                            .n_threads = 1, .kv_tokens = 1024, .max_seqs = 4, .token_budget = 256};
    llmlab_engine *e = NULL;
    memset(err, 0, sizeof *err);
    llmlab_status st = llmlab_engine_create(&e, m, &o, err);
    llmlab_engine_free(e);
    return st;
}

/* ---- (a) greedy Medusa == autoregressive greedy -------------------------------------- */

Test(medusa, greedy_equals_autoregressive_on_three_shapes_batch_1_and_4) {
    uint64_t seed = fixture_seed("medusa_greedy");
    const int shapes[] = {0, 1, 4}; /* gqa2-untied f32, mqa-tied f32, bf16-hd64 */
    double accepted = 0, drafted = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const fixture_shape *sh = &fixture_shapes[shapes[si]];
        fixture_model fm;
        fixture_load(&fm, sh, seed + si);
        char *heads = train_heads(&fm, 4, 150, seed + si, "medusa_lm_head.safetensors", NULL);
        dc_requests r;
        dc_requests_make(&r, 6, sh->vocab, 2, 24, 1, 40, seed + 17 * si);
        kv_snapshot want_kv = {0};
        llmlab_run_result *want = run_greedy(fm.m, 1, &r, &want_kv);
        for (int batch = 1; batch <= 4; batch += 3) {
            kv_list kv = {0};
            kv_add(&kv, "heads", heads);
            kv_snapshot got_kv = {0};
            llmlab_run_result *got = run_medusa_kv(fm.m, &kv, batch, &r, seed, &got_kv);
            char what[96];
            snprintf(what, sizeof what, "medusa %s batch %d", sh->name, batch);
            dc_assert_same(want, got, what);
            kvs_assert_same(&want_kv, &got_kv, r.n, what); /* the accepted path compacted exactly */
            kvs_free(&got_kv);
            accepted += dc_metric(got, "accepted");
            drafted += dc_metric(got, "drafted");
            cr_assert_geq(got->mean_accepted, 1.0, "%s: mean accepted %g", what, got->mean_accepted);
            llmlab_run_result_free(got);
        }
        /* a hand-written small tree too, batch 3, and fcfs's static batches */
        kv_list kv = {0};
        kv_add(&kv, "heads", heads);
        kv_add(&kv, "tree", "0;1;2;0,0;0,1;1,0;0,0,0;0,0,0,0");
        llmlab_run_result *got = run_medusa(fm.m, &kv, 3, &r, seed);
        dc_assert_same(want, got, "medusa small tree batch 3");
        llmlab_run_result_free(got);
        dc_opts fo = {.decoding = "medusa", .kv = kv.kv, .n_kv = 1, .sched = "fcfs", .max_batch = 3, .seed = seed};
        got = dc_run(fm.m, g_reg, &fo, &r);
        dc_assert_same(want, got, "medusa default tree, fcfs batch 3");
        llmlab_run_result_free(got);
        llmlab_run_result_free(want);
        kvs_free(&want_kv);
        dc_requests_free(&r);
        free(heads);
        fixture_free(&fm);
    }
    cr_assert_gt(drafted, 0, "nothing was drafted");
    cr_assert_gt(accepted, 0, "no draft token was ever accepted: the tree path went untested");
}

/* Sampled sequences go through the same tree; a seed reproduces the output. */
Test(medusa, sampling_is_reproducible_and_batch_invariant) {
    uint64_t seed = fixture_seed("medusa_sampling");
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[2], seed);
    char *heads = train_heads(&fm, 4, 60, seed, "h.safetensors", NULL);
    dc_requests r;
    dc_requests_make(&r, 4, fixture_shapes[2].vocab, 3, 12, 5, 30, seed);
    kv_list kv = {0};
    kv_add(&kv, "heads", heads);
    kv_add(&kv, "temperature", "0.8");
    kv_add(&kv, "top_k", "40");
    llmlab_run_result *a = run_medusa(fm.m, &kv, 1, &r, seed);
    llmlab_run_result *b = run_medusa(fm.m, &kv, 4, &r, seed);
    dc_assert_same(a, b, "seeded medusa sampling, batch 1 vs 4");
    llmlab_run_result_free(a);
    llmlab_run_result_free(b);
    dc_requests_free(&r);
    free(heads);
    fixture_free(&fm);
}

/* ---- (b) a small tree by hand -------------------------------------------------------- */

Test(medusa, small_tree_parents_positions_tokens_by_hand) {
    medusa_tree t;
    char msg[256] = "";
    /* given out of order on purpose: nodes are numbered by depth, then path */
    cr_assert_eq(medusa_tree_parse(&t, "0;1;0,0;0,1;1,0;0,0,0", msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(t.n, 7);
    cr_assert_eq(t.depth, 3);
    /* nodes: 0 root, 1 [0], 2 [1], 3 [0,0], 4 [0,1], 5 [1,0], 6 [0,0,0] */
    const int parent[7] = {-1, 0, 0, 1, 1, 2, 3}, depth[7] = {0, 1, 1, 2, 2, 2, 3}, rank[7] = {-1, 0, 1, 0, 1, 0, 0};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(t.parent[i], parent[i], "parent of node %d", i);
        cr_assert_eq(t.node_depth[i], depth[i], "depth of node %d", i);
        cr_assert_eq(t.rank[i], rank[i], "rank of node %d", i);
    }
    cr_assert(t.topk[0] == 2 && t.topk[1] == 2 && t.topk[2] == 1);
    cr_assert(t.child_first[0] == 1 && t.child_count[0] == 2);
    cr_assert(t.child_first[1] == 3 && t.child_count[1] == 2);
    cr_assert(t.child_first[2] == 5 && t.child_count[2] == 1);
    cr_assert(t.child_first[3] == 6 && t.child_count[3] == 1);
    cr_assert(t.child_count[4] == 0 && t.child_count[5] == 0 && t.child_count[6] == 0);
    /* the step: root at batch index 10, position 100 */
    int parents[7];
    int32_t pos[7];
    medusa_tree_layout(&t, 7, 10, 100, parents, pos);
    const int want_parent[7] = {-1, 10, 10, 11, 11, 12, 13};
    const int32_t want_pos[7] = {100, 101, 101, 102, 102, 102, 103};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(parents[i], want_parent[i], "batch parent of node %d", i);
        cr_assert_eq(pos[i], want_pos[i], "position of node %d", i);
    }
    /* head top-k lists [depth][stride 2]: head 0 {50, 51}, head 1 {60, 61}, head 2 {70} */
    const int32_t cand[6] = {50, 51, 60, 61, 70, -1};
    int32_t tok[7];
    medusa_tree_tokens(&t, 7, 9, cand, 2, tok);
    const int32_t want_tok[7] = {9, 50, 51, 60, 61, 60, 70};
    for (int i = 0; i < 7; i++) cr_assert_eq(tok[i], want_tok[i], "token of node %d", i);
    /* cut by the drafts that can still be accepted */
    cr_assert(medusa_tree_cut(&t, 0) == 1 && medusa_tree_cut(&t, 1) == 3 && medusa_tree_cut(&t, 2) == 6);
    cr_assert(medusa_tree_cut(&t, 3) == 7 && medusa_tree_cut(&t, 50) == 7);
    char text[128];
    medusa_tree_format(&t, text, sizeof text);
    cr_assert_str_eq(text, "0;1;0,0;0,1;1,0;0,0,0");
    medusa_tree_free(&t);
}

Test(medusa, bad_tree_specs_are_refused_with_the_reason) {
    medusa_tree t;
    char msg[256];
    struct {
        const char *spec, *needle;
    } cases[] = {
        {"0;1,0", "prefix '1'"},       {"0;0;1", "duplicate path '0'"}, {"0;a", "bad path 'a'"},
        {"0;0,", "bad path '0,'"},     {" ; ", "no paths"},             {"0;0,1,x", "bad path"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msg[0] = 0;
        cr_assert_eq(medusa_tree_parse(&t, cases[i].spec, msg, sizeof msg), -1, "'%s' accepted", cases[i].spec);
        cr_assert(strstr(msg, cases[i].needle), "'%s': message '%s' lacks '%s'", cases[i].spec, msg, cases[i].needle);
    }
    /* through the engine: the message names the parameter */
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], 5);
    char *heads = train_heads(&fm, 2, 1, 5, "h.safetensors", NULL);
    llmlab_err err;
    cr_assert_neq(try_engine(fm.m, heads, "0;2,0", &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "parameter 'tree'") && strstr(err.msg, "prefix '2'"), "%s", err.msg);
    free(heads);
    fixture_free(&fm);
}

/* ---- (c) the default tree ------------------------------------------------------------------ */

Test(medusa, default_tree_has_63_nodes_depth_4_and_is_prefix_closed) {
    medusa_tree t;
    cr_assert_eq(medusa_tree_default(&t), 0);
    cr_assert_eq(t.n, 64, "63 nodes + the root, got %d", t.n - 1);
    cr_assert_eq(t.depth, 4);
    cr_assert_eq(t.topk[0], 10, "the root takes head 0's top-10");
    char text[2048];
    cr_assert_lt(medusa_tree_format(&t, text, sizeof text), sizeof text);
    /* every path's every prefix is a path of the tree (checked on the text) */
    char *paths[64];
    int n = 0;
    for (char *p = strtok(text, ";"); p; p = strtok(NULL, ";")) paths[n++] = p;
    cr_assert_eq(n, 63);
    for (int i = 0; i < n; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s", paths[i]);
        for (char *c = strrchr(prefix, ','); c; c = strrchr(prefix, ',')) {
            *c = 0;
            int found = 0;
            for (int j = 0; j < n && !found; j++) found = !strcmp(paths[j], prefix);
            cr_assert(found, "prefix '%s' of '%s' is not in the default tree", prefix, paths[i]);
        }
    }
    /* siblings distinct and ordered, ranks within top-10, parents before children */
    for (int i = 1; i < t.n; i++) {
        cr_assert_lt(t.parent[i], i);
        cr_assert(t.rank[i] >= 0 && t.rank[i] < 10);
        cr_assert_eq(t.node_depth[i], t.node_depth[t.parent[i]] + 1);
        if (i > 1 && t.parent[i] == t.parent[i - 1]) cr_assert_gt(t.rank[i], t.rank[i - 1]);
    }
    /* the format parses back to the same tree */
    medusa_tree u;
    char msg[256] = "", again[2048];
    medusa_tree_format(&t, again, sizeof again);
    cr_assert_eq(medusa_tree_parse(&u, again, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(u.n, t.n);
    for (int i = 0; i < t.n; i++) cr_assert(u.parent[i] == t.parent[i] && u.rank[i] == t.rank[i]);
    medusa_tree_free(&u);
    medusa_tree_free(&t);
}

/* ---- (d) bad heads files ------------------------------------------------------------------- */

typedef struct {
    char names[64][64];
    llmlab_st_write_tensor t[64];
    int n;
    float *buf; /* zeros, big enough for every tensor */
} st_list;

static void st_add(st_list *l, const char *name, int64_t rows, int64_t cols) {
    snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
    l->t[l->n] = (llmlab_st_write_tensor){l->names[l->n], LLMLAB_ST_F32, cols ? 2 : 1, {rows, cols}, l->buf};
    l->n++;
}

/* Medusa-layout heads of the given shape; skip (may be NULL) names a tensor left out. */
static void write_heads_file(const char *path, const char *prefix, int heads, int dim, int vocab, const char *skip) {
    st_list *l = calloc(1, sizeof *l);
    l->buf = calloc((size_t)(vocab > dim ? vocab : dim) * (size_t)dim, sizeof(float));
    cr_assert(l && l->buf);
    char name[64];
    for (int h = 0; h < heads; h++) {
        const char *suffix[3] = {"0.linear.weight", "0.linear.bias", "1.weight"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "%s%d.%s", prefix, h, suffix[k]);
            if (skip && !strcmp(name, skip)) continue;
            st_add(l, name, k == 2 ? vocab : dim, k == 1 ? 0 : dim);
        }
    }
    llmlab_err err = {0};
    cr_assert_eq(llmlab_st_write(path, l->t, l->n, &err), LLMLAB_OK, "%s", err.msg);
    free(l->buf);
    free(l);
}

Test(medusa, bad_heads_files_name_the_problem) {
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], 9); /* vocab 509, dim 64 */
    char *path = fsu_join(fm.dir, "heads.safetensors");
    llmlab_err err;
    /* the good layout loads, also with the "medusa_head." prefix */
    write_heads_file(path, "", 4, 64, 509, NULL);
    cr_assert_eq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK, "%s", err.msg);
    write_heads_file(path, "medusa_head.", 4, 64, 509, NULL);
    cr_assert_eq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK, "%s", err.msg);
    /* wrong dim */
    write_heads_file(path, "", 4, 32, 509, NULL);
    cr_assert_neq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "'0.0.linear.weight' has shape [32, 32]") && strstr(err.msg, "needs [64, 64]"), "%s",
              err.msg);
    /* wrong vocabulary */
    write_heads_file(path, "", 4, 64, 500, NULL);
    cr_assert_neq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "'0.1.weight' has shape [500, 64]") && strstr(err.msg, "needs [509, 64]"), "%s",
              err.msg);
    /* a missing tensor */
    write_heads_file(path, "", 4, 64, 509, "2.0.linear.bias");
    cr_assert_neq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "missing tensor '2.0.linear.bias'"), "%s", err.msg);
    /* fewer heads than the tree is deep */
    write_heads_file(path, "", 2, 64, 509, NULL);
    cr_assert_neq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "has 2 heads, the tree needs 4"), "%s", err.msg);
    cr_assert_eq(try_engine(fm.m, path, "0;1;0,0", &err), LLMLAB_OK, "a depth-2 tree fits 2 heads: %s", err.msg);
    /* not Medusa heads at all, and no file */
    write_heads_file(path, "x.", 1, 64, 509, NULL);
    cr_assert_neq(try_engine(fm.m, path, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "no Medusa head tensors"), "%s", err.msg);
    cr_assert_neq(try_engine(fm.m, "/nonexistent/medusa.safetensors", NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "/nonexistent/medusa.safetensors"), "%s", err.msg);
    /* the parameter is required */
    llmlab_engine_opts o = {.registry = g_reg, .decoding = {"medusa", NULL, 0}, .n_threads = 1, .kv_tokens = 256};
    llmlab_engine *e = NULL;
    cr_assert_neq(llmlab_engine_create(&e, fm.m, &o, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "heads"), "%s", err.msg);
    free(path);
    fixture_free(&fm);
}

/* ---- (e) training -------------------------------------------------------------------------- */

Test(medusa, training_beats_untrained_heads_on_held_out_positions) {
    uint64_t seed = fixture_seed("medusa_train");
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], seed);
    llmlab_medusa_train_opts o;
    llmlab_medusa_train_defaults(&o);
    /* 160 texts: a small held-out set is easily dominated by one text stuck in a
     * loop, where the untrained heads (which repeat the next token) are strong */
    o.heads = 2, o.samples = 160, o.len = 48, o.steps = 400, o.batch = 32, o.lr = 3e-3f, o.seed = seed, o.threads = 1;
    llmlab_medusa_heads h;
    llmlab_medusa_train_report r;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_medusa_train(fm.m, &o, &h, &r, &err), LLMLAB_OK, "%s", err.msg);
    fprintf(stderr, "[medusa_train] head 0: loss %.3f -> %.3f, top-1 %.3f -> %.3f (%d held-out positions, %.1f s)\n",
            r.loss_before[0], r.loss_after[0], r.acc_before[0], r.acc_after[0], r.n_heldout,
            r.seconds_data + r.seconds_train);
    cr_assert_eq(r.n_heldout, 32 * (48 - 2));
    cr_assert_eq(r.n_train, 128 * (48 - 2));
    cr_assert_lt(r.loss_after[0], r.loss_before[0], "held-out loss did not fall");
    cr_assert_gt(r.acc_after[0], r.acc_before[0], "held-out head-0 top-1 did not rise");
    /* the written file is what the plugin reads */
    char *path = fsu_join(fm.dir, "trained.safetensors");
    cr_assert_eq(llmlab_medusa_heads_write(&h, LLMLAB_DTYPE_F32, path, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(try_engine(fm.m, path, "0;1;0,0;0,1", &err), LLMLAB_OK, "%s", err.msg);
    free(path);
    llmlab_medusa_heads_free(&h);
    fixture_free(&fm);
}

/* The hand-written backprop against central differences. */
Test(medusa, head_gradients_match_finite_differences) {
    enum { D = 6, V = 11, B = 5 };
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("medusa_grad"), 3);
    float w1[D * D], b1[D], w2[V * D], x[B * D], gw1[D * D], gb1[D], gw2[V * D];
    int32_t y[B];
    for (int i = 0; i < D * D; i++) w1[i] = (float)(0.5 * llmlab_rng_normal(&g));
    for (int i = 0; i < D; i++) b1[i] = (float)(0.3 * llmlab_rng_normal(&g));
    for (int i = 0; i < V * D; i++) w2[i] = (float)(0.7 * llmlab_rng_normal(&g));
    for (int i = 0; i < B * D; i++) x[i] = (float)llmlab_rng_normal(&g);
    for (int i = 0; i < B; i++) y[i] = (int32_t)(llmlab_rng_next(&g) % V);
    llmlab_medusa_head_loss(w1, b1, w2, D, V, x, y, B, gw1, gb1, gw2);
    struct {
        float *w, *g;
        int n;
    } params[3] = {{w1, gw1, D * D}, {b1, gb1, D}, {w2, gw2, V * D}};
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < params[p].n; i++) {
            float keep = params[p].w[i], eps = 1e-2f;
            params[p].w[i] = keep + eps;
            double up = llmlab_medusa_head_loss(w1, b1, w2, D, V, x, y, B, NULL, NULL, NULL);
            params[p].w[i] = keep - eps;
            double down = llmlab_medusa_head_loss(w1, b1, w2, D, V, x, y, B, NULL, NULL, NULL);
            params[p].w[i] = keep;
            double num = (up - down) / (2 * eps), ana = params[p].g[i];
            cr_assert_leq(fabs(num - ana), 2e-3 + 2e-2 * fabs(num), "param %d[%d]: analytic %g, numeric %g", p, i,
                          ana, num);
        }
}

/* ---- (f) typical acceptance ------------------------------------------------------------------ */

/* On the same first tree step (same prompt, same heads, same logits) every node of
 * the path greedy accepts passes the typical test (p(argmax) > delta * exp(-H)
 * since exp(-H) <= max p), so typical accepts at least as many tokens. */
Test(medusa, typical_accepts_at_least_greedy_on_the_first_step) {
    uint64_t seed = fixture_seed("medusa_typical");
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[1], seed);
    char *heads = train_heads(&fm, 4, 150, seed, "h.safetensors", NULL);
    dc_requests all;
    dc_requests_make(&all, 10, fixture_shapes[1].vocab, 2, 16, 12, 12, seed);
    double sum_g = 0, sum_t = 0;
    for (int i = 0; i < all.n; i++) {
        dc_requests one = {all.reqs + i, all.tokens, 1};
        kv_list kg = {0}, kt = {0};
        kv_add(&kg, "heads", heads);
        kv_add(&kt, "heads", heads);
        kv_add(&kt, "acceptance", "typical");
        llmlab_run_result *g = run_medusa(fm.m, &kg, 1, &one, seed);
        llmlab_run_result *t = run_medusa(fm.m, &kt, 1, &one, seed);
        cr_assert(g->n_steps >= 2 && t->n_steps >= 2);
        double ag = step_metric(g, "accepted", 1), at = step_metric(t, "accepted", 1);
        cr_assert_geq(at, ag, "request %d: typical accepted %g on the first tree step, greedy %g", i, at, ag);
        cr_assert_eq(step_metric(t, "drafted", 1), 63, "the whole default tree is drafted");
        cr_assert_eq(g->output[0][0], t->output[0][0], "the first token comes from the prompt alone");
        sum_g += ag, sum_t += at;
        llmlab_run_result_free(g);
        llmlab_run_result_free(t);
    }
    fprintf(stderr, "[medusa_typical] first-step accepted over %d prompts: greedy %g, typical %g\n", all.n, sum_g,
            sum_t);
    dc_requests_free(&all);
    free(heads);
    fixture_free(&fm);
}

/* ---- (g) synth --medusa ------------------------------------------------------------------------ */

Test(medusa, synth_medusa_heads_load_and_decode_exactly) {
    uint64_t seed = fixture_seed("medusa_synth");
    char *dir = fsu_mkdtemp();
    cr_assert(dir);
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.vocab_size = 300, o.dtype = LLMLAB_DTYPE_BF16, o.seed = seed, o.medusa_heads = 3;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_synth_write(&o, dir, &err), LLMLAB_OK, "%s", err.msg);
    char *heads = fsu_join(dir, "medusa_lm_head.safetensors");
    llmlab_st_set set = {0};
    cr_assert_eq(llmlab_st_open_file(&set, heads, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(set.n_tensors, 9);
    const llmlab_st_tensor *w2 = llmlab_st_find(&set, "2.1.weight");
    cr_assert(w2 && w2->dtype == LLMLAB_ST_BF16 && w2->shape[0] == 300 && w2->shape[1] == 64);
    llmlab_st_close(&set);
    llmlab_model *m = NULL;
    cr_assert_eq(llmlab_model_load(&m, dir, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_neq(try_engine(m, heads, NULL, &err), LLMLAB_OK, "3 heads cannot serve the depth-4 default tree");
    dc_requests r;
    dc_requests_make(&r, 3, 300, 2, 10, 4, 20, seed);
    kv_list kv = {0};
    kv_add(&kv, "heads", heads);
    kv_add(&kv, "tree", "0;1;2;0,0;1,0;0,0,0");
    llmlab_run_result *want = run_greedy(m, 2, &r, NULL), *got = run_medusa(m, &kv, 2, &r, seed);
    dc_assert_same(want, got, "medusa with synth heads");
    llmlab_run_result_free(want);
    llmlab_run_result_free(got);
    dc_requests_free(&r);
    llmlab_model_free(m);
    free(heads);
    fsu_rmtree(dir);
    free(dir);
}

/* The CLI: synth --medusa, then train-medusa, then the plugin loads the result. */
Test(medusa, cli_synth_and_train_medusa) {
    char *dir = fsu_mkdtemp();
    char cmd[1024], out[8192], errout[8192];
    snprintf(cmd, sizeof cmd, "%s synth %s/m --vocab 260 --medusa 2 --seed 4", LLMLAB_BIN, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0, "%s", errout);
    cr_assert(strstr(out, "medusa_lm_head.safetensors (2 Medusa heads)"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s synth --help", LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0);
    cr_assert(strstr(out, "--medusa K"), "%s", out);
    snprintf(cmd, sizeof cmd,
             "%s train-medusa -m %s/m --out %s/t.safetensors --heads 3 --samples 6 --len 16 --steps 20 --threads 1",
             LLMLAB_BIN, dir, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0, "%s", errout);
    cr_assert(strstr(out, "top-1 before") && strstr(out, "wrote"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s train-medusa -m %s/m --out %s/t.safetensors --heads 9 --len 5", LLMLAB_BIN, dir, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 2, "len <= heads is a usage error");
    cr_assert(strstr(errout, "len 5 must exceed the head count 9"), "%s", errout);
    snprintf(cmd, sizeof cmd, "%s train-medusa --help", LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0);
    cr_assert(strstr(out, "CPU only"), "%s", out);
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/m", dir);
    cr_assert_eq(llmlab_model_load(&m, path, &err), LLMLAB_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    cr_assert_eq(try_engine(m, path, "0;0,0;0,0,0", &err), LLMLAB_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/m/medusa_lm_head.safetensors", dir);
    cr_assert_eq(try_engine(m, path, "0;1;0,0", &err), LLMLAB_OK, "%s", err.msg);
    llmlab_model_free(m);
    fsu_rmtree(dir);
    free(dir);
}
