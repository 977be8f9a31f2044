/* test_quant_calib.c - engine calibration (core/calibrate.h) and the calibrated
 * quant methods: AWQ, GPTQ, SmoothQuant (plugins/quant/calib_quant.h).
 *
 * Calibration must hand each plugin exactly the rows the dense forward
 * multiplies; each method must beat its plain baseline on a case built so that
 * the method's idea has something to win (and fresh random weights every run);
 * each plugin must run through an engine, deterministically, at its bits. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/calibrate.h"
#include "core/engine.h"
#include "core/rng.h"
#include "core/synth.h"
#include "core/tokenizer.h"
#include "kernels/cpu/kernels.h"
#include "plugins/quant/calib_quant.h"
#include "util/fixture_model.h"
#include "util/tmpdir.h"

/* A synthetic model whose every matrix has cols a multiple of 128 (the I4 groups):
 * dim 128, 2 heads of 64 (1 KV head), ffn 256, vocab 300, 2 layers. */
static void load_model(fixture_model *f, int max_pos, uint64_t seed) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.vocab_size = 300, o.cfg.dim = 128, o.cfg.n_layers = 2, o.cfg.n_heads = 2, o.cfg.n_kv_heads = 1;
    o.cfg.head_dim = 64, o.cfg.ffn_dim = 256, o.cfg.max_pos = max_pos;
    o.seed = seed;
    char *dir = tmpdir_make();
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    free(dir);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_synth_write(&o, f->dir, &err), LLMLAB_OK, "%s", err.msg);
    f->m = NULL;
    cr_assert_eq(llmlab_model_load(&f->m, f->dir, &err), LLMLAB_OK, "%s", err.msg);
}

static llmlab_calib *calibrate(const llmlab_model *m, const char *source, int n, uint64_t seed) {
    llmlab_calib *c;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_calib_create(&c, source, n, seed, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_calib_run(c, m, 2, &err), LLMLAB_OK, "%s: %s", source, err.msg);
    return c;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- calibration ------------------------------------------------------------------ */

/* Forward hook that keeps the last row of x seen by one matrix. */
typedef struct {
    const llmlab_model *m;
    int matrix;
    float *row; /* [cols] */
} last_row_hook;

static void keep_last_row(void *user, int matrix, float *y, const float *x, int M, llmlab_threadpool *pool) {
    last_row_hook *h = user;
    const llmlab_mat *W = llmlab_model_matrix(h->m, matrix);
    if (matrix == h->matrix) memcpy(h->row, x + (size_t)(M - 1) * (size_t)W->cols, (size_t)W->cols * sizeof(float));
    llmlab_cpu_matmul(y, x, W->data, W->dtype, M, (int)W->rows, (int)W->cols, pool);
}

/* The input matrix `matrix` gets for token tok[n-1] after tok[0..n-1] from an empty cache. */
static void direct_input(const llmlab_model *m, const int32_t *tok, int n, int matrix, float *row) {
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 1, .max_seqs = 1, .kv_tokens = 64, .max_batch = 64};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK, "%s", err.msg);
    last_row_hook h = {m, matrix, row};
    llmlab_ctx_set_linear(ctx, keep_last_row, &h);
    llmlab_batch *b = llmlab_batch_create(n);
    for (int i = 0; i < n; i++) llmlab_batch_add(b, tok[i], 0, i, LLMLAB_TOK_LOGITS, -1);
    const llmlab_outputs *o;
    cr_assert_eq(llmlab_forward(ctx, b, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
}

Test(calib, captures_exactly_the_dense_inputs) {
    uint64_t seed = fixture_seed("calib-capture");
    fixture_model fm;
    load_model(&fm, 24, seed);
    const llmlab_model *m = fm.m;
    enum { N = 60 };
    llmlab_calib *c = calibrate(m, "random", N, seed);
    int n, n_seqs;
    const int *start;
    const int32_t *tok = llmlab_calib_tokens(c, &n, &start, &n_seqs);
    cr_assert_eq(n, N);
    cr_assert_eq(n_seqs, 3, "60 tokens in sequences of at most the context 24: 24 + 24 + 12");
    cr_assert(start[0] == 0 && start[1] == 24 && start[2] == 48 && start[3] == 60);

    int n_mats = m->cfg.n_layers * LLMLAB_MATS_PER_LAYER + 1;
    for (int i = 0; i < n_mats; i++) {
        int64_t rows = 0;
        cr_assert_not_null(llmlab_calib_matrix_inputs(c, i, &rows), "matrix %d has inputs", i);
        cr_assert_eq(rows, N);
    }
    /* Shared inputs share one buffer; names map to the right matrices. */
    int64_t r;
    const float *q = llmlab_calib_inputs(c, "model.layers.1.self_attn.q_proj.weight", &r);
    cr_assert(q == llmlab_calib_inputs(c, "model.layers.1.self_attn.k_proj.weight", &r));
    cr_assert(q == llmlab_calib_inputs(c, "model.layers.1.self_attn.v_proj.weight", &r));
    cr_assert(q != llmlab_calib_inputs(c, "model.layers.1.self_attn.o_proj.weight", &r));
    cr_assert(llmlab_calib_inputs(c, "model.layers.0.mlp.gate_proj.weight", &r) ==
              llmlab_calib_inputs(c, "model.layers.0.mlp.up_proj.weight", &r));
    cr_assert(llmlab_calib_inputs(c, "lm_head.weight", &r) == llmlab_calib_matrix_inputs(c, n_mats - 1, &r));
    cr_assert_null(llmlab_calib_inputs(c, "model.layers.2.mlp.up_proj.weight", &r), "layer 2 does not exist");
    cr_assert_null(llmlab_calib_inputs(c, "model.embed_tokens.weight", &r));
    cr_assert_null(llmlab_calib_inputs(c, "model.layers.0.mlp.up_proj.bias", &r));

    /* Rows at sequence starts/ends and a random one, every matrix: bit-exact
     * against a direct forward of the row's sequence prefix (the forward is
     * batch invariant, so the prefix length does not change a value). */
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 1);
    int picks[] = {0, 23, 24, 47, 59, (int)(llmlab_rng_next(&rng) % N)};
    float want[256];
    for (size_t p = 0; p < sizeof picks / sizeof picks[0]; p++) {
        int row = picks[p], k = 0;
        while (start[k + 1] <= row) k++;
        for (int i = 0; i < n_mats; i++) {
            const llmlab_mat *W = llmlab_model_matrix(m, i);
            direct_input(m, tok + start[k], row - start[k] + 1, i, want);
            const float *got = llmlab_calib_matrix_inputs(c, i, &r) + (size_t)row * (size_t)W->cols;
            cr_assert(memcmp(got, want, (size_t)W->cols * sizeof(float)) == 0,
                      "row %d matrix %d: the captured input differs from the dense forward's", row, i);
        }
    }
    llmlab_calib_free(c);
    fixture_free(&fm);
}

Test(calib, sources_generate_random_and_files) {
    uint64_t seed = fixture_seed("calib-sources");
    fixture_model fm;
    load_model(&fm, 24, seed);
    const llmlab_model *m = fm.m;
    int n, n_seqs, n2;
    const int *start;

    /* generate: each sequence starts at BOS and ends at EOS or the context. */
    llmlab_calib *g = calibrate(m, "generate", 50, seed);
    const int32_t *tok = llmlab_calib_tokens(g, &n, &start, &n_seqs);
    cr_assert_eq(n, 50);
    for (int k = 0; k < n_seqs; k++) {
        int len = start[k + 1] - start[k];
        cr_assert(len >= 1 && len <= 24, "sequence %d has %d tokens", k, len);
        cr_assert_eq(tok[start[k]], m->cfg.bos_id, "sequence %d starts at BOS", k);
        if (k < n_seqs - 1 && len < 24)
            cr_assert(llmlab_config_is_eos(&m->cfg, tok[start[k + 1] - 1]), "sequence %d ended early without EOS", k);
    }
    for (int i = 0; i < n; i++) cr_assert(tok[i] >= 0 && tok[i] < m->cfg.vocab_size);
    llmlab_calib *g2 = calibrate(m, "generate", 50, seed);
    cr_assert(memcmp(tok, llmlab_calib_tokens(g2, &n2, NULL, NULL), 50 * sizeof *tok) == 0, "same seed, same text");
    llmlab_calib_free(g2);
    g2 = calibrate(m, "generate", 50, seed + 1);
    cr_assert(memcmp(tok, llmlab_calib_tokens(g2, &n2, NULL, NULL), 50 * sizeof *tok) != 0, "another seed, other text");
    llmlab_calib_free(g2);
    llmlab_calib_free(g);

    /* random: seeded, spread over the vocabulary. */
    llmlab_calib *r = calibrate(m, "random", 40, seed);
    tok = llmlab_calib_tokens(r, &n, &start, &n_seqs);
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        cr_assert(tok[i] >= 0 && tok[i] < m->cfg.vocab_size);
        distinct += i > 0 && tok[i] != tok[i - 1];
    }
    cr_assert_gt(distinct, 20);
    llmlab_calib *r2 = calibrate(m, "random", 40, seed);
    cr_assert(memcmp(tok, llmlab_calib_tokens(r2, &n2, NULL, NULL), 40 * sizeof *tok) == 0);
    llmlab_calib_free(r2);
    llmlab_calib_free(r);

    /* files: text through the model's tokenizer (with its BOS), ids as written. */
    char *dir = tmpdir_make(), path[512];
    const char *text = "The quick brown fox jumps over the lazy dog, and then it calibrates a quantizer. "
                       "Calibration text is cut into sequences of at most the context length.";
    snprintf(path, sizeof path, "%s/calib.txt", dir);
    write_file(path, text);
    int32_t *ids;
    int n_ids;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_tokenizer_encode(m->tok, text, strlen(text), 1, &ids, &n_ids, &err), LLMLAB_OK);
    cr_assert_geq(n_ids, 30);
    llmlab_calib *t = calibrate(m, path, 30, 0);
    cr_assert(memcmp(llmlab_calib_tokens(t, &n, NULL, &n_seqs), ids, 30 * sizeof *ids) == 0);
    cr_assert_eq(n_seqs, 2);
    llmlab_calib_free(t);
    free(ids);
    snprintf(path, sizeof path, "%s/calib.ids", dir);
    write_file(path, "5 7 299\n\t11 0 13  \n");
    int32_t want_ids[] = {5, 7, 299, 11, 0};
    t = calibrate(m, path, 5, 0);
    cr_assert(memcmp(llmlab_calib_tokens(t, &n, NULL, NULL), want_ids, sizeof want_ids) == 0);
    llmlab_calib_free(t);
    tmpdir_remove(dir);
    fixture_free(&fm);
}

/* run() of a request that must fail with a message holding both needles. */
static void run_fails(const llmlab_model *m, const char *source, int n, const char *needle1, const char *needle2) {
    llmlab_calib *c;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_calib_create(&c, source, n, 0, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_neq(llmlab_calib_run(c, m, 1, &err), LLMLAB_OK, "%s should fail", source);
    cr_assert(strstr(err.msg, needle1) && strstr(err.msg, needle2), "message: %s", err.msg);
    llmlab_calib_free(c);
}

Test(calib, bad_sources_fail_with_clear_messages) {
    fixture_model fm;
    load_model(&fm, 64, 7);
    llmlab_calib *c = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_calib_create(&c, "no-such-source", 16, 0, &err), LLMLAB_EIO);
    cr_assert(strstr(err.msg, "no-such-source") && strstr(err.msg, "generate"), "%s", err.msg);
    cr_assert_eq(llmlab_calib_create(&c, "random", 0, 0, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "tokens"), "%s", err.msg);
    cr_assert_eq(llmlab_calib_create(&c, "", 16, 0, &err), LLMLAB_EINVAL);

    char *dir = tmpdir_make(), path[512];
    snprintf(path, sizeof path, "%s/big.ids", dir);
    write_file(path, "1 2 300 4");
    run_fails(fm.m, path, 4, "id 3 = 300", "big.ids");
    snprintf(path, sizeof path, "%s/junk.ids", dir);
    write_file(path, "1 2 x3 4");
    run_fails(fm.m, path, 4, "not an integer", "junk.ids");
    snprintf(path, sizeof path, "%s/short.txt", dir);
    write_file(path, "too short");
    run_fails(fm.m, path, 5000, "short.txt", "tokens = 5000");

    /* Through an engine: the plugin's create fails, naming the plugin and the source. */
    llmlab_registry *reg;
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK);
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, "source", "no-such-file.txt");
    llmlab_engine_opts o = {.registry = reg, .quant = {"gptq", &v, 1}, .n_threads = 1, .kv_tokens = 256, .max_seqs = 2};
    llmlab_engine *e = NULL;
    cr_assert_neq(llmlab_engine_create(&e, fm.m, &o, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "gptq") && strstr(err.msg, "no-such-file.txt"), "%s", err.msg);
    llmlab_param_value_from_text(&v, "group", "100");
    o.quant = (llmlab_plugin_choice){"awq", &v, 1};
    cr_assert_neq(llmlab_engine_create(&e, fm.m, &o, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "awq") && strstr(err.msg, "group = 100"), "%s", err.msg);
    llmlab_registry_free(reg);
    tmpdir_remove(dir);
    fixture_free(&fm);
}

/* ---- the methods against their baselines ---------------------------------------------- */

static float *gaussian(llmlab_rng *rng, int64_t n, double sd) {
    float *x = malloc((size_t)n * sizeof *x);
    cr_assert_not_null(x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(sd * llmlab_rng_normal(rng));
    return x;
}

/* || X (Wq - W)^T ||_F^2 in double: the layer output error of the effective weight Wq. */
static double layer_error(const float *Wq, const float *W, int64_t rows, int64_t cols, const float *X, int64_t n) {
    double e = 0;
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double d = 0;
            for (int64_t c = 0; c < cols; c++)
                d += (double)X[t * cols + c] * ((double)Wq[r * cols + c] - W[r * cols + c]);
            e += d * d;
        }
    return e;
}

/* The effective weight of a qmat (in_scale folded in). */
static float *effective(const llmlab_qmat *q) {
    float *out = malloc((size_t)(q->rows * q->cols) * sizeof *out);
    llmlab_qmat_dequant_rows(q, 0, q->rows, out);
    return out;
}

static double rtn_error(llmlab_qformat f, const float *W, int64_t rows, int64_t cols, int group, const float *X,
                        int64_t n) {
    llmlab_qmat q = {0};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_qmat_pack(&q, f, W, rows, cols, group, 0, NULL, &err), LLMLAB_OK, "%s", err.msg);
    float *Wq = effective(&q);
    double e = layer_error(Wq, W, rows, cols, X, n);
    free(Wq);
    llmlab_qmat_free(&q);
    return e;
}

/* Error of codes/scale/min (+ in_scale) packed the plugins' way. */
static double codes_error(llmlab_qformat f, const int8_t *codes, const float *scale, const float *min,
                          const float *in_scale, const float *W, int64_t rows, int64_t cols, int group, const float *X,
                          int64_t n) {
    llmlab_qmat q = {0};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_qmat_pack_codes(&q, f, codes, scale, min, rows, cols, group, in_scale, &err), LLMLAB_OK, "%s",
                 err.msg);
    float *Wq = effective(&q);
    double e = layer_error(Wq, W, rows, cols, X, n);
    free(Wq);
    llmlab_qmat_free(&q);
    return e;
}

Test(methods, group_codes_match_the_rtn_packer) {
    uint64_t seed = fixture_seed("qgroup-rtn");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { R = 7, C = 256, G = 64 };
    float *W = gaussian(&rng, R * C, 0.05);
    for (int sym = 0; sym < 2; sym++) {
        llmlab_qformat f = sym ? LLMLAB_QF_I4_SYM : LLMLAB_QF_I4_ASYM;
        int8_t codes[R * C];
        float scale[R * C / G], min[R * C / G], deq[R * C];
        llmlab_qgroup_rtn(W, R, C, G, 4, sym, codes, scale, min, deq);
        llmlab_qmat a = {0}, b = {0};
        llmlab_err err = {0};
        cr_assert_eq(llmlab_qmat_pack(&a, f, W, R, C, G, 0, NULL, &err), LLMLAB_OK);
        cr_assert_eq(llmlab_qmat_pack_codes(&b, f, codes, scale, min, R, C, G, NULL, &err), LLMLAB_OK, "%s", err.msg);
        float *da = effective(&a), *db = effective(&b);
        cr_assert(memcmp(da, db, sizeof deq) == 0, "sym %d: the plugins' codes are the packer's RTN codes", sym);
        cr_assert(memcmp(da, deq, sizeof deq) == 0, "sym %d: qgroup values are what the format dequantizes to", sym);
        free(da);
        free(db);
        llmlab_qmat_free(&a);
        llmlab_qmat_free(&b);
    }
    free(W);
}

/* GPTQ vs RTN.  Why it must hold: X has low effective rank (32 latent factors
 * spread over 256 channels, plus 5% noise), so the rounding error of one column
 * can be cancelled almost entirely by adjusting correlated columns that are not
 * yet rounded, which is exactly GPTQ's update; RTN rounds every column alone.
 * Independent columns would leave GPTQ little to gain, so that case is not
 * where the property has to hold. */
Test(methods, gptq_output_error_below_rtn) {
    uint64_t seed = fixture_seed("gptq-vs-rtn");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { R = 96, C = 256, N = 512, K = 32, G = 128 };
    float *W = gaussian(&rng, R * C, 0.05), *Z = gaussian(&rng, N * K, 1.0), *A = gaussian(&rng, K * C, 1.0);
    float *X = gaussian(&rng, N * C, 0.05 * sqrt(K));
    for (int t = 0; t < N; t++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K; k++) X[t * C + c] += Z[t * K + k] * A[k * C + c];
    int8_t *codes = malloc(R * C);
    float scale[R * C / G], min[R * C / G];
    llmlab_threadpool *pool = llmlab_threadpool_create(2);
    for (int variant = 0; variant < 3; variant++) {
        int sym = variant == 2, act = variant != 1;
        llmlab_gptq_opts o = {4, G, sym, act, 128, 0.01};
        llmlab_err err = {0};
        cr_assert_eq(llmlab_gptq_quantize(W, R, C, X, N, &o, pool, codes, scale, min, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_qformat f = sym ? LLMLAB_QF_I4_SYM : LLMLAB_QF_I4_ASYM;
        double eg = codes_error(f, codes, scale, min, NULL, W, R, C, G, X, N);
        double er = rtn_error(f, W, R, C, G, X, N);
        cr_assert_lt(eg, 0.3 * er, "sym %d act_order %d: GPTQ error %g not below 0.3 x RTN's %g (seed %llu)", sym,
                     act, eg, er, (unsigned long long)seed);
    }
    /* Lazy batches change only the order of the same updates: block 16 and 128
     * give the same codes up to rare ties flipped by rounding. */
    int8_t *codes16 = malloc(R * C);
    llmlab_gptq_opts o128 = {4, G, 0, 1, 128, 0.01}, o16 = {4, G, 0, 1, 16, 0.01};
    llmlab_err e1 = {0};
    cr_assert_eq(llmlab_gptq_quantize(W, R, C, X, N, &o128, pool, codes, scale, min, &e1), LLMLAB_OK);
    cr_assert_eq(llmlab_gptq_quantize(W, R, C, X, N, &o16, pool, codes16, scale, min, &e1), LLMLAB_OK);
    int differ = 0;
    for (int i = 0; i < R * C; i++) differ += codes[i] != codes16[i];
    cr_assert_lt(differ, R * C / 200, "%d of %d codes differ between block 128 and block 16", differ, R * C);
    free(codes16);
    /* A dead input channel: its weights become 0 and nothing breaks. */
    for (int t = 0; t < N; t++) X[t * C + 5] = 0;
    llmlab_gptq_opts o = {4, G, 0, 1, 128, 0.01};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_gptq_quantize(W, R, C, X, N, &o, pool, codes, scale, min, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(isfinite(codes_error(LLMLAB_QF_I4_ASYM, codes, scale, min, NULL, W, R, C, G, X, N)));
    llmlab_threadpool_free(pool);
    free(codes);
    free(W);
    free(Z);
    free(A);
    free(X);
}

/* Inputs with 4 salient channels (activations x40) among 256 of unit scale. */
static float *salient_inputs(llmlab_rng *rng, int n, int cols, double factor, int *chan) {
    float *X = gaussian(rng, (int64_t)n * cols, 1.0);
    for (int k = 0; k < 4; k++) {
        chan[k] = (int)(llmlab_rng_next(rng) % (uint64_t)cols);
        for (int t = 0; t < n; t++) X[t * cols + chan[k]] *= (float)factor;
    }
    return X;
}

/* AWQ vs RTN.  Why it must hold: 4 of 256 input channels carry activations 40x
 * larger, so RTN's output error is dominated by the rounding error of those
 * channels' weights (each amplified 40x).  Scaling those columns up by s shrinks
 * their error relative to their contribution by ~s while the other columns of
 * their groups pay only a little; alpha = 0 (RTN itself) is on the grid, and the
 * search runs on the very rows the error is measured on, so AWQ can only match
 * or beat RTN, and with salient channels it wins by far. */
Test(methods, awq_output_error_below_rtn_with_salient_channels) {
    uint64_t seed = fixture_seed("awq-vs-rtn");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { R = 128, C = 256, N = 256, G = 128 };
    int chan[4];
    float *W = gaussian(&rng, R * C, 0.05), *X = salient_inputs(&rng, N, C, 40.0, chan);
    int8_t *codes = malloc(R * C);
    float scale[R * C / G], min[R * C / G], in_scale[C];
    llmlab_threadpool *pool = llmlab_threadpool_create(2);
    for (int clip = 0; clip < 2; clip++) {
        llmlab_awq_opts o = {4, G, 0, 20, 512, clip};
        double alpha = -1;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_awq_quantize(W, R, C, X, N, &o, pool, codes, scale, min, in_scale, &alpha, &err),
                     LLMLAB_OK, "%s", err.msg);
        double ea = codes_error(LLMLAB_QF_I4_ASYM, codes, scale, min, in_scale, W, R, C, G, X, N);
        double er = rtn_error(LLMLAB_QF_I4_ASYM, W, R, C, G, X, N);
        cr_assert_gt(alpha, 0.0, "salient channels call for scaling");
        cr_assert_lt(ea, 0.5 * er, "clip %d: AWQ error %g (alpha %g) not below half of RTN's %g (seed %llu)", clip, ea,
                     alpha, er, (unsigned long long)seed);
    }
    llmlab_threadpool_free(pool);
    free(codes);
    free(W);
    free(X);
}

/* || Y - X W^T ||^2 where Y comes from the W8A8 kernel (int8 activations per token). */
static double w8a8_error(const float *W, int rows, int cols, const float *X, int n, const float *s) {
    float *Ws = malloc((size_t)rows * cols * sizeof *Ws), *inv = NULL, *Y = malloc((size_t)n * rows * sizeof *Y);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) Ws[r * cols + c] = W[r * cols + c] * (s ? s[c] : 1.0f);
    if (s) {
        inv = malloc((size_t)cols * sizeof *inv);
        for (int c = 0; c < cols; c++) inv[c] = 1.0f / s[c];
    }
    llmlab_qmat q = {0};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_W8A8, Ws, rows, cols, 0, 0, inv, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_qmat_matmul_ref(&q, Y, X, n);
    double e = 0;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double ref = 0;
            for (int c = 0; c < cols; c++) ref += (double)X[t * cols + c] * W[r * cols + c];
            e += (Y[t * rows + r] - ref) * (Y[t * rows + r] - ref);
        }
    llmlab_qmat_free(&q);
    free(Ws);
    free(inv);
    free(Y);
    return e;
}

/* SmoothQuant vs plain W8A8.  Why it must hold: 4 outlier channels (x60) set
 * every token's int8 step, so the 252 ordinary channels are quantized to a
 * handful of levels; alpha = 0.5 divides the outlier channels by ~sqrt(60 x
 * their weight range ratio), cutting the token's absmax several fold, while the
 * weights (int8 per row, smooth gaussian) absorb the factor at little cost.
 * alpha = 0 leaves the outliers in the activations (only rescales channels by
 * their weight maxima), so it suffers like plain W8A8. */
Test(methods, smoothquant_error_below_plain_w8a8_with_outliers) {
    uint64_t seed = fixture_seed("smoothquant");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { R = 128, C = 256, N = 64 };
    int chan[4];
    float *W = gaussian(&rng, R * C, 0.05), *X = salient_inputs(&rng, N, C, 60.0, chan);
    float s05[C], s0[C];
    llmlab_smoothquant_scales(W, R, C, X, N, 0.5, s05);
    llmlab_smoothquant_scales(W, R, C, X, N, 0.0, s0);
    double e05 = w8a8_error(W, R, C, X, N, s05), e0 = w8a8_error(W, R, C, X, N, s0);
    double eplain = w8a8_error(W, R, C, X, N, NULL);
    cr_assert_lt(e05, 0.25 * e0, "alpha 0.5 error %g not below 0.25 x alpha 0's %g (seed %llu)", e05, e0,
                 (unsigned long long)seed);
    cr_assert_lt(e05, 0.25 * eplain, "alpha 0.5 error %g not below 0.25 x plain W8A8's %g (seed %llu)", e05, eplain,
                 (unsigned long long)seed);
    /* The formula itself on one channel. */
    double ax = 0, wx = 0;
    for (int t = 0; t < N; t++) ax = fmax(ax, fabs(X[t * C + chan[0]]));
    for (int r = 0; r < R; r++) wx = fmax(wx, fabs(W[r * C + chan[0]]));
    cr_assert_float_eq(s05[chan[0]], sqrt(ax) / sqrt(wx), 1e-5 * sqrt(ax / wx));
    free(W);
    free(X);
}

/* ---- the plugins through an engine ------------------------------------------------------ */

static llmlab_run_result *generate(const llmlab_model *m, llmlab_registry *reg, const char *plugin,
                                   const llmlab_param_value *v, int nv, double *bits) {
    llmlab_engine_opts o = {.registry = reg, .quant = {plugin, v, nv}, .seed = 5, .n_threads = 2,
                            .kv_tokens = 512, .max_seqs = 4, .token_budget = 64};
    llmlab_engine *e;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, m, &o, &err), LLMLAB_OK, "%s: %s", plugin, err.msg);
    int32_t p0[] = {1, 17, 42, 99, 7}, p1[] = {1, 250, 3};
    llmlab_request reqs[2] = {{.id = 0, .prompt = p0, .prompt_len = 5, .max_new = 12},
                              {.id = 1, .prompt = p1, .prompt_len = 3, .max_new = 12}};
    llmlab_run_result *res;
    cr_assert_eq(llmlab_engine_run(e, reqs, 2, &res, &err), LLMLAB_OK, "%s: %s", plugin, err.msg);
    *bits = llmlab_engine_bits_per_weight(e);
    llmlab_engine_free(e);
    return res;
}

/* Bits per weight over the engine's matrices: codes + group scale (+ min) +
 * row scales + the f32 in_scale per input channel, weighted by size. */
static double expected_bits(const llmlab_model *m, double code_bits, double per_group, int group, int row_scale,
                            int in_scale) {
    double bits = 0, weights = 0;
    for (int i = 0; i <= m->cfg.n_layers * LLMLAB_MATS_PER_LAYER; i++) {
        const llmlab_mat *w = llmlab_model_matrix(m, i);
        double rc = (double)w->rows * (double)w->cols;
        double b = code_bits * rc + (group ? per_group * rc / group : 0) + (row_scale ? 32.0 * w->rows : 0) +
                   (in_scale ? 32.0 * w->cols : 0);
        bits += b;
        weights += rc;
    }
    return bits / weights;
}

Test(plugins, awq_gptq_smoothquant_generate_deterministically) {
    uint64_t seed = fixture_seed("calib-plugins");
    fixture_model fm;
    load_model(&fm, 64, seed);
    llmlab_registry *reg;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK);
    const char *names[] = {"awq", "gptq", "smoothquant"};
    double want[] = {expected_bits(fm.m, 4, 32, 128, 0, 1), expected_bits(fm.m, 4, 32, 128, 0, 0),
                     expected_bits(fm.m, 8, 0, 0, 1, 1)};
    for (int p = 0; p < 3; p++) {
        llmlab_param_value v[2];
        llmlab_param_value_from_text(&v[0], "tokens", "96");
        llmlab_param_value_from_text(&v[1], "source", p == 1 ? "random" : "generate");
        double bits_a, bits_b;
        llmlab_run_result *a = generate(fm.m, reg, names[p], v, 2, &bits_a);
        llmlab_run_result *b = generate(fm.m, reg, names[p], v, 2, &bits_b);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(a->output_len[i], 12, "%s request %d", names[p], i);
            cr_assert_eq(b->output_len[i], a->output_len[i]);
            cr_assert(memcmp(a->output[i], b->output[i], (size_t)a->output_len[i] * sizeof(int32_t)) == 0,
                      "%s: two runs of request %d differ", names[p], i);
        }
        cr_assert_eq(bits_a, bits_b);
        cr_assert_float_eq(bits_a, want[p], 1e-9, "%s: %.6f bits per weight, expected %.6f", names[p], bits_a, want[p]);
        llmlab_run_result_free(a);
        llmlab_run_result_free(b);
    }
    llmlab_registry_free(reg);
    fixture_free(&fm);
}
