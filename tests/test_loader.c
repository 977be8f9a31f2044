/* test_loader.c - llmlab_model_load on synthetic models of every supported shape,
 * and a clear message (no crash) for each kind of broken model directory. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/model.h"
#include "core/synth.h"
#include "util/fsutil.h"

static char *dir;

static void setup(void) { dir = fsu_mkdtemp(); cr_assert_not_null(dir); }
static void teardown(void) {
    fsu_rmtree(dir);
    free(dir);
}

TestSuite(loader, .init = setup, .fini = teardown);

static llmlab_synth_opts tiny(void) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.seed = 7;
    return o;
}

static void synth(const llmlab_synth_opts *o) {
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_write(o, dir, &e), LLMLAB_OK, "%s", e.msg);
}

static llmlab_model *load_ok(void) {
    llmlab_model *m = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_model_load(&m, dir, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_not_null(m);
    return m;
}

static void expect_load_err(llmlab_status code, const char *n1, const char *n2) {
    llmlab_model *m = (llmlab_model *)1;
    llmlab_err e = {0};
    llmlab_status s = llmlab_model_load(&m, dir, &e);
    cr_assert_eq(s, code, "status %d want %d: %s", s, code, e.msg);
    cr_assert_null(m);
    cr_assert(!n1 || strstr(e.msg, n1), "'%s' lacks '%s'", e.msg, n1);
    cr_assert(!n2 || strstr(e.msg, n2), "'%s' lacks '%s'", e.msg, n2);
}

static void check_mat(const llmlab_mat *w, llmlab_dtype dt, int64_t rows, int64_t cols) {
    cr_assert_eq(w->dtype, dt);
    cr_assert_eq(w->rows, rows);
    cr_assert_eq(w->cols, cols);
    cr_assert_not_null(w->data);
}

/* Loads and checks every shape against the synth options. */
static void check_model(const llmlab_synth_opts *o) {
    synth(o);
    llmlab_model *m = load_ok();
    const llmlab_config *c = &m->cfg;
    int64_t q = (int64_t)o->cfg.n_heads * o->cfg.head_dim, kv = (int64_t)o->cfg.n_kv_heads * o->cfg.head_dim;
    cr_assert_eq(c->vocab_size, o->cfg.vocab_size);
    cr_assert_eq(c->head_dim, o->cfg.head_dim);
    cr_assert_eq(c->torch_dtype, o->dtype);
    check_mat(&m->embed, o->dtype, c->vocab_size, c->dim);
    check_mat(&m->lm_head, o->dtype, c->vocab_size, c->dim);
    uint64_t es = llmlab_dtype_size(o->dtype);
    uint64_t per_layer = (uint64_t)(2 * q * c->dim + 2 * kv * c->dim + 3 * (int64_t)c->ffn_dim * c->dim) * es;
    uint64_t emb = (uint64_t)c->vocab_size * (uint64_t)c->dim * es;
    cr_assert_eq(m->weight_bytes, emb * (c->tie_embeddings ? 1 : 2) + per_layer * (uint64_t)c->n_layers);
    if (c->tie_embeddings) cr_assert_eq(m->lm_head.data, m->embed.data);
    else cr_assert_neq(m->lm_head.data, m->embed.data);
    for (int i = 0; i < c->n_layers; i++) {
        const llmlab_layer *L = &m->layers[i];
        check_mat(&L->wq, o->dtype, q, c->dim);
        check_mat(&L->wk, o->dtype, kv, c->dim);
        check_mat(&L->wv, o->dtype, kv, c->dim);
        check_mat(&L->wo, o->dtype, c->dim, q);
        check_mat(&L->w_gate, o->dtype, c->ffn_dim, c->dim);
        check_mat(&L->w_up, o->dtype, c->ffn_dim, c->dim);
        check_mat(&L->w_down, o->dtype, c->dim, c->ffn_dim);
        cr_assert_not_null(L->attn_norm);
        cr_assert_not_null(L->ffn_norm);
        for (int k = 0; k < c->dim; k++)
            cr_assert(L->attn_norm[k] > 0.85f && L->attn_norm[k] < 1.15f, "norm %g", L->attn_norm[k]);
        if (c->qkv_bias) {
            cr_assert_not_null(L->bq);
            cr_assert_not_null(L->bk);
            cr_assert_not_null(L->bv);
            cr_assert(L->bk[kv - 1] != 0.0f);
        } else {
            cr_assert_null(L->bq);
        }
    }
    cr_assert_not_null(m->final_norm);
    cr_assert_not_null(m->rope_inv_freq);
    cr_assert_float_eq(m->rope_inv_freq[0], 1.0f, 0);
    cr_assert_eq(strlen(m->hash), 16);
    cr_assert_eq(strspn(m->hash, "0123456789abcdef"), 16);
    llmlab_model_free(m);
}

Test(loader, tiny_f32) {
    llmlab_synth_opts o = tiny();
    check_model(&o);
}

Test(loader, tiny_f16_bf16) {
    llmlab_synth_opts o = tiny();
    o.dtype = LLMLAB_DTYPE_F16;
    check_model(&o);
    o.dtype = LLMLAB_DTYPE_BF16;
    check_model(&o);
}

Test(loader, tied) {
    llmlab_synth_opts o = tiny();
    o.cfg.tie_embeddings = 1;
    check_model(&o);
}

Test(loader, qwen2_qkv_bias) {
    llmlab_synth_opts o = tiny();
    o.cfg.qkv_bias = 1;
    o.cfg.arch = LLMLAB_ARCH_QWEN2;
    check_model(&o);
    llmlab_model *m = load_ok();
    cr_assert_eq(m->cfg.arch, LLMLAB_ARCH_QWEN2);
    llmlab_model_free(m);
}

Test(loader, mistral) {
    llmlab_synth_opts o = tiny();
    o.cfg.arch = LLMLAB_ARCH_MISTRAL;
    o.cfg.sliding_window = 32;
    check_model(&o);
    llmlab_model *m = load_ok();
    cr_assert_eq(m->cfg.sliding_window, 32);
    cr_assert_str_eq(m->cfg.arch_name, "MistralForCausalLM");
    llmlab_model_free(m);
}

Test(loader, head_dim_128) {
    llmlab_synth_opts o = tiny();
    o.cfg.dim = 256, o.cfg.n_heads = 2, o.cfg.n_kv_heads = 1, o.cfg.head_dim = 128;
    check_model(&o);
}

Test(loader, head_dim_not_dim_over_heads) {
    llmlab_synth_opts o = tiny();
    o.cfg.head_dim = 32; /* 4 heads * 32 = 128 != dim 64 */
    check_model(&o);
}

Test(loader, kv_heads_variants) {
    int kvs[3] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        llmlab_synth_opts o = tiny();
        o.cfg.n_kv_heads = kvs[i];
        check_model(&o);
    }
}

Test(loader, odd_vocab) {
    llmlab_synth_opts o = tiny();
    o.cfg.vocab_size = 509;
    check_model(&o);
}

Test(loader, sharded) {
    llmlab_synth_opts o = tiny();
    o.n_shards = 3;
    check_model(&o);
}

Test(loader, f32_matrix_is_a_view_of_the_file) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    llmlab_model *m = load_ok();
    const llmlab_st_tensor *t = llmlab_st_find(&m->st, "model.layers.1.mlp.down_proj.weight");
    cr_assert_eq(m->layers[1].w_down.data, t->data);
    const float *v = m->embed.data;
    double ss = 0;
    for (int i = 0; i < 64 * 512; i++) ss += (double)v[i] * v[i];
    double sd = sqrt(ss / (64 * 512));
    cr_assert(sd > 0.9 && sd < 1.1, "embedding std %g", sd);
    llmlab_model_free(m);
}

Test(loader, free_null) { llmlab_model_free(NULL); }

/* ---- broken directories ------------------------------------------------------------ */

typedef void (*edit_fn)(llmlab_st_write_tensor *ts, int *n, void *scratch);

/* Rewrites dir/model.safetensors through edit(). */
static void rewrite(edit_fn edit) {
    char *p = fsu_join(dir, "model.safetensors");
    char *q = fsu_join(dir, "model.safetensors.new");
    llmlab_st_set set = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, NULL), LLMLAB_OK);
    llmlab_st_write_tensor *ts = calloc((size_t)set.n_tensors, sizeof *ts);
    for (int i = 0; i < set.n_tensors; i++) {
        ts[i].name = set.tensors[i].name;
        ts[i].dtype = set.tensors[i].dtype;
        ts[i].ndim = set.tensors[i].ndim;
        memcpy(ts[i].shape, set.tensors[i].shape, sizeof ts[i].shape);
        ts[i].data = set.tensors[i].data;
    }
    int n = set.n_tensors;
    static double scratch[1 << 16];
    edit(ts, &n, scratch);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_write(q, ts, n, &e), LLMLAB_OK, "%s", e.msg);
    free(ts);
    llmlab_st_close(&set);
    cr_assert_eq(rename(q, p), 0);
    free(p);
    free(q);
}

static int find(llmlab_st_write_tensor *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, name)) return i;
    cr_assert_fail("no tensor %s", name);
    return -1;
}

static void drop_up_proj(llmlab_st_write_tensor *ts, int *n, void *scratch) {
    int i = find(ts, *n, "model.layers.1.mlp.up_proj.weight");
    memmove(&ts[i], &ts[i + 1], (size_t)(*n - i - 1) * sizeof *ts);
    (*n)--;
}

Test(loader, missing_tensor) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    rewrite(drop_up_proj);
    expect_load_err(LLMLAB_EFORMAT, "'model.layers.1.mlp.up_proj.weight' is missing", dir);
}

static void drop_lm_head(llmlab_st_write_tensor *ts, int *n, void *scratch) {
    int i = find(ts, *n, "lm_head.weight");
    memmove(&ts[i], &ts[i + 1], (size_t)(*n - i - 1) * sizeof *ts);
    (*n)--;
}

Test(loader, missing_lm_head_untied) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    rewrite(drop_lm_head);
    expect_load_err(LLMLAB_EFORMAT, "lm_head.weight", "tie_word_embeddings");
}

/* Synth untied, then mark tied: the stray lm_head.weight is ignored. */
Test(loader, tied_ignores_stray_lm_head) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    char *cp = fsu_join(dir, "config.json");
    o.cfg.tie_embeddings = 1;
    char *j = llmlab_config_to_json(&o.cfg);
    fsu_write(cp, j, strlen(j));
    llmlab_model *m = load_ok();
    cr_assert_eq(m->lm_head.data, m->embed.data);
    llmlab_model_free(m);
    free(j);
    free(cp);
}

/* config.json and the file disagree about intermediate_size. */
Test(loader, shape_disagrees_with_config) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    o.cfg.ffn_dim = 180;
    char *cp = fsu_join(dir, "config.json");
    char *j = llmlab_config_to_json(&o.cfg);
    fsu_write(cp, j, strlen(j));
    expect_load_err(LLMLAB_EFORMAT, "'model.layers.0.mlp.gate_proj.weight' has shape [172, 64]",
                    "config.json implies [180, 64]");
    free(j);
    free(cp);
}

static void to_f64(llmlab_st_write_tensor *ts, int *n, void *scratch) {
    int i = find(ts, *n, "model.layers.0.self_attn.k_proj.weight");
    const float *src = ts[i].data;
    double *d = scratch;
    for (int k = 0; k < 32 * 64; k++) d[k] = src[k];
    ts[i].dtype = LLMLAB_ST_F64;
    ts[i].data = d;
}

Test(loader, unsupported_matrix_dtype) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    rewrite(to_f64);
    expect_load_err(LLMLAB_EUNSUPPORTED, "'model.layers.0.self_attn.k_proj.weight'", "unsupported dtype F64");
}

static void norm_to_i32(llmlab_st_write_tensor *ts, int *n, void *scratch) {
    int i = find(ts, *n, "model.norm.weight");
    ts[i].dtype = LLMLAB_ST_I32;
}

Test(loader, unsupported_vector_dtype) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    rewrite(norm_to_i32);
    expect_load_err(LLMLAB_EUNSUPPORTED, "'model.norm.weight'", "I32");
}

static void vec_as_matrix(llmlab_st_write_tensor *ts, int *n, void *scratch) {
    int i = find(ts, *n, "model.layers.0.input_layernorm.weight");
    ts[i].ndim = 2;
    ts[i].shape[0] = 8;
    ts[i].shape[1] = 8;
}

Test(loader, vector_with_wrong_rank) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    rewrite(vec_as_matrix);
    expect_load_err(LLMLAB_EFORMAT, "'model.layers.0.input_layernorm.weight' has shape [8, 8]", "[64]");
}

Test(loader, truncated_file) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    char *p = fsu_join(dir, "model.safetensors");
    size_t n = 0;
    free(fsu_read(p, &n));
    cr_assert_eq(fsu_truncate(p, n / 2), 0);
    expect_load_err(LLMLAB_EFORMAT, "model.safetensors", "past the end");
    cr_assert_eq(fsu_truncate(p, 5), 0);
    expect_load_err(LLMLAB_EFORMAT, "model.safetensors", "too short");
    free(p);
}

Test(loader, absurd_config) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    char *cp = fsu_join(dir, "config.json");
    const char *t = "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 1000000000, "
                    "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 2, "
                    "\"num_attention_heads\": 4}";
    fsu_write(cp, t, strlen(t));
    expect_load_err(LLMLAB_EINVAL, "config.json", "vocab_size");
    fsu_write(cp, "{", 1);
    expect_load_err(LLMLAB_EFORMAT, "config.json", "malformed JSON");
    remove(cp);
    expect_load_err(LLMLAB_EIO, "config.json", NULL);
    free(cp);
}

Test(loader, no_weights) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    char *p = fsu_join(dir, "model.safetensors");
    remove(p);
    free(p);
    expect_load_err(LLMLAB_EIO, "no model.safetensors", NULL);
}

Test(loader, hash_tracks_content) {
    llmlab_synth_opts o = tiny();
    synth(&o);
    llmlab_model *a = load_ok();
    char h1[17];
    memcpy(h1, a->hash, 17);
    llmlab_model_free(a);
    o.seed = 8;
    synth(&o);
    llmlab_model *b = load_ok();
    cr_assert_str_neq(h1, b->hash);
    llmlab_model_free(b);
    o.seed = 7;
    o.n_shards = 2;
    synth(&o);
    llmlab_model *c = load_ok();
    cr_assert_str_eq(h1, c->hash, "sharding changed the hash");
    llmlab_model_free(c);
}
