/* test_synth_model.c - the in-memory synthetic model (core/synth_model.c) equals
 * the same options written with llmlab_synth_write and loaded back: config,
 * hash, every tensor's bytes, and the logits of a forward, bit for bit; the
 * thread count changes nothing; bad options are errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/dtype.h"
#include "core/synth_model.h"
#include "core/tokenizer.h"
#include "util/fsutil.h"
#include "util/one_forward.h"
#include "util/test_rng.h"

static char *dir;

static void setup(void) {
    dir = fsu_mkdtemp();
    cr_assert_not_null(dir);
    test_rng_start();
}

static void teardown(void) {
    fsu_rmtree(dir);
    free(dir);
}

TestSuite(synth_model, .init = setup, .fini = teardown);

static llmlab_model *in_memory(const llmlab_synth_opts *o, int threads) {
    llmlab_model *m = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_model(o, threads, &m, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_not_null(m);
    return m;
}

static llmlab_model *from_disk(const llmlab_synth_opts *o, const char *name) {
    char *d = fsu_join(dir, name);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_write(o, d, &e), LLMLAB_OK, "%s", e.msg);
    llmlab_model *m = NULL;
    cr_assert_eq(llmlab_model_load(&m, d, &e), LLMLAB_OK, "%s", e.msg);
    free(d);
    return m;
}

static void same_mat(const llmlab_mat *a, const llmlab_mat *b, const char *what) {
    cr_assert_eq(a->dtype, b->dtype, "%s: dtype", what);
    cr_assert(a->rows == b->rows && a->cols == b->cols, "%s: shape", what);
    size_t n = (size_t)(a->rows * a->cols) * llmlab_dtype_size(a->dtype);
    cr_assert_eq(memcmp(a->data, b->data, n), 0, "%s: bytes differ", what);
}

static void same_vec(const float *a, const float *b, int n, const char *what) {
    cr_assert((a == NULL) == (b == NULL), "%s: present in one model only", what);
    if (a) cr_assert_eq(memcmp(a, b, (size_t)n * sizeof *a), 0, "%s: values differ", what);
}

/* Every weight and the model-level fields. */
static void same_weights(const llmlab_model *a, const llmlab_model *b) {
    const llmlab_config *c = &a->cfg;
    char *ja = llmlab_config_to_json(&a->cfg), *jb = llmlab_config_to_json(&b->cfg);
    cr_assert_str_eq(ja, jb, "configs differ");
    free(ja);
    free(jb);
    cr_assert_eq(a->weight_bytes, b->weight_bytes);
    cr_assert_eq(memcmp(a->rope_inv_freq, b->rope_inv_freq, (size_t)(c->head_dim / 2) * sizeof(float)), 0);
    same_mat(&a->embed, &b->embed, "embed");
    same_mat(&a->lm_head, &b->lm_head, "lm_head");
    cr_assert_eq(a->lm_head.data == a->embed.data, b->lm_head.data == b->embed.data, "tying differs");
    same_vec(a->final_norm, b->final_norm, c->dim, "final norm");
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *x = &a->layers[l], *y = &b->layers[l];
        same_mat(&x->wq, &y->wq, "wq");
        same_mat(&x->wk, &y->wk, "wk");
        same_mat(&x->wv, &y->wv, "wv");
        same_mat(&x->wo, &y->wo, "wo");
        same_mat(&x->w_gate, &y->w_gate, "w_gate");
        same_mat(&x->w_up, &y->w_up, "w_up");
        same_mat(&x->w_down, &y->w_down, "w_down");
        same_vec(x->attn_norm, y->attn_norm, c->dim, "attn norm");
        same_vec(x->ffn_norm, y->ffn_norm, c->dim, "ffn norm");
        same_vec(x->bq, y->bq, q, "bq");
        same_vec(x->bk, y->bk, kv, "bk");
        same_vec(x->bv, y->bv, kv, "bv");
    }
    cr_assert_str_eq(a->hash, b->hash, "the hash must be the loader's: %s vs %s", a->hash, b->hash);
}

/* Logits of a short causal forward over fresh random tokens, bit for bit. */
static void same_logits(const llmlab_model *a, const llmlab_model *b) {
    int32_t tok[12];
    int V = a->cfg.vocab_size;
    for (int i = 0; i < 12; i++) tok[i] = (int32_t)(test_rng_u64() % (uint64_t)V);
    float *la = one_forward_logits(a, tok, 12), *lb = one_forward_logits(b, tok, 12);
    float lo = la[0], hi = la[0];
    for (size_t i = 0; i < (size_t)12 * (size_t)V; i++) {
        lo = la[i] < lo ? la[i] : lo;
        hi = la[i] > hi ? la[i] : hi;
    }
    cr_assert(hi - lo > 0.1f, "logits are flat (%g..%g): the comparison would prove nothing", lo, hi);
    cr_assert_eq(memcmp(la, lb, (size_t)12 * (size_t)V * sizeof *la), 0,
                 "in-memory and loaded logits differ (LLMLAB_TEST_SEED=%llu)", (unsigned long long)test_rng_seed);
    free(la);
    free(lb);
}

static void check_equal_to_disk(llmlab_synth_opts *o, const char *name) {
    o->seed = test_rng_u64() % 100000;
    llmlab_model *mem = in_memory(o, 2), *disk = from_disk(o, name);
    same_weights(mem, disk);
    same_logits(mem, disk);
    cr_assert_str_eq(llmlab_tokenizer_kind(mem->tok), "bytes");
    cr_assert_not_null(llmlab_st_find(&mem->st, "model.layers.0.mlp.up_proj.weight"),
                       "tensors can be looked up by name");
    llmlab_model_free(mem);
    llmlab_model_free(disk);
}

Test(synth_model, tiny_preset_equals_the_written_model) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    check_equal_to_disk(&o, "tiny");
}

Test(synth_model, gqa_qkv_bias_bf16_untied_equals_the_written_model) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.vocab_size = 301, o.cfg.dim = 96, o.cfg.n_heads = 6, o.cfg.n_kv_heads = 2, o.cfg.head_dim = 16;
    o.cfg.n_layers = 3, o.cfg.ffn_dim = 200, o.cfg.qkv_bias = 1, o.cfg.tie_embeddings = 0;
    o.dtype = LLMLAB_DTYPE_BF16;
    check_equal_to_disk(&o, "gqa_bias_bf16");
}

Test(synth_model, tied_f16_equals_the_written_model) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.tie_embeddings = 1;
    o.dtype = LLMLAB_DTYPE_F16;
    check_equal_to_disk(&o, "tied_f16");
}

Test(synth_model, thread_count_changes_nothing) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.seed = test_rng_u64();
    o.dtype = LLMLAB_DTYPE_BF16;
    o.cfg.qkv_bias = 1;
    llmlab_model *a = in_memory(&o, 1), *b = in_memory(&o, 2), *c = in_memory(&o, 0);
    same_weights(a, b);
    same_weights(a, c);
    o.seed++;
    llmlab_model *d = in_memory(&o, 2);
    cr_assert_str_neq(a->hash, d->hash, "another seed, the same hash");
    cr_assert_neq(memcmp(a->embed.data, d->embed.data, 64), 0, "another seed, the same weights");
    llmlab_model_free(a);
    llmlab_model_free(b);
    llmlab_model_free(c);
    llmlab_model_free(d);
}

static void expect_error(const llmlab_synth_opts *o, int threads, llmlab_status code, const char *needle) {
    llmlab_model *m = (llmlab_model *)(void *)&m; /* poison: must come back NULL */
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_model(o, threads, &m, &e), code, "got '%s'", e.msg);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, needle), "message '%s' should mention '%s'", e.msg, needle);
}

Test(synth_model, bad_options_are_errors) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.dtype = LLMLAB_DTYPE_Q8_0;
    expect_error(&o, 1, LLMLAB_EINVAL, "dtype");
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.n_kv_heads = 3; /* 4 query heads cannot share 3 KV heads */
    expect_error(&o, 1, LLMLAB_EINVAL, "shape");
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.medusa_heads = 2;
    expect_error(&o, 1, LLMLAB_EUNSUPPORTED, "Medusa");
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    expect_error(&o, -3, LLMLAB_EINVAL, "n_threads");
    expect_error(NULL, 1, LLMLAB_EINVAL, "options");
}

/* synth.c steps xoshiro256** inline for speed: the stream must stay what
 * llmlab_rng_next gives (the values of every synthetic model written so far). */
Test(synth_model, stream_equals_the_project_rng) {
    llmlab_synth_tensor t = {.kind = LLMLAB_SYNTH_RANDOM, .std = 0.25f};
    snprintf(t.name, sizeof t.name, "model.layers.%d.mlp.up_proj.weight", (int)(test_rng_u64() % 32));
    uint64_t seed = test_rng_u64();
    for (int kind = 0; kind < 2; kind++) {
        t.kind = kind ? LLMLAB_SYNTH_NORM : LLMLAB_SYNTH_RANDOM;
        llmlab_synth_stream s, ref;
        llmlab_synth_stream_init(&s, seed, &t);
        llmlab_synth_stream_init(&ref, seed, &t);
        float got[1000];
        llmlab_synth_stream_next(&s, got, 300);
        llmlab_synth_stream_next(&s, got + 300, 700); /* across calls too */
        for (int i = 0; i < 1000; i++) {
            float u = (float)((int32_t)(llmlab_rng_next(&ref.r) >> 40) - (1 << 23)) * (1.0f / 8388608.0f);
            float want = kind ? 1.0f + 0.1f * u : 0.25f * 1.7320508f * u;
            cr_assert_eq(got[i], want, "value %d: %.9g, want %.9g (LLMLAB_TEST_SEED=%llu)", i, got[i], want,
                         (unsigned long long)test_rng_seed);
        }
    }
}
