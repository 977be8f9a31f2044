/* test_gguf_model.c - GGUF files as llmlab models (core/model_gguf.c) and the
 * core GGUF writer (core/gguf_write*.c, `llmlab convert`).
 *
 * Files are written by the test's own writer (tests/util/gguf_model.c: the
 * llama.cpp converter's Q/K permutation and Q8_0/Q4_0 blocks encoded here from
 * the format description), with key order, tensor order, data order, version and
 * alignment changing every run (the seed is printed; LLMLAB_TEST_SEED repeats it).
 *   - F32/F16/BF16 files give logits bit-identical to the same safetensors model
 *     over a prefill and decode steps (GQA, MQA, tied, biases, head_dim 128);
 *   - Q8_0/Q4_0 files against a safetensors model holding the dequantized weights:
 *     a tolerance derived from the activation quantization, and top-1 agreement;
 *   - the core writer: convert -> load -> the same logits, its blocks decode
 *     (with the test's decoder) within each format's error bound, vocabularies
 *     round-trip encode/decode on the tokenizer fixtures;
 *   - damaged files: each a clear error naming the problem, never a crash. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/forward.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/rng.h"
#include "core/tokenizer.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/gguf_model.h"
#include "util/proc.h"
#include "util/tmpdir.h"
#include "util/tok_cases.h"

static char *dir;
static uint64_t g_seed;

static void setup(void) {
    dir = tmpdir_make();
    g_seed = fixture_seed("gguf_model");
}

static void teardown(void) { tmpdir_remove(dir); }

TestSuite(gguf_model, .init = setup, .fini = teardown, .timeout = 600);

static llmlab_model *load_ok(const char *path) {
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_model_load(&m, path, &err), LLMLAB_OK, "load %s: %s", path, err.msg);
    return m;
}

/* ---- running a token stream ------------------------------------------------------------------ */

enum { PROMPT = 12, STEPS = 5 };

/* Logits [n][vocab] for tok[n]: a prefill of `prompt` tokens (every row), then
 * the rest one token per forward (decode steps), 2 threads. */
static float *stream_logits(const llmlab_model *m, const int32_t *tok, int n, int prompt) {
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 2, .max_seqs = 1, .kv_tokens = n + 16, .max_batch = prompt};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_batch *b = llmlab_batch_create(prompt);
    size_t V = (size_t)m->cfg.vocab_size;
    float *out = malloc((size_t)n * V * sizeof *out);
    cr_assert(b && out);
    for (int i = 0; i < n;) {
        int k = i == 0 ? prompt : 1;
        llmlab_batch_clear(b);
        for (int j = 0; j < k; j++) llmlab_batch_add(b, tok[i + j], 0, i + j, LLMLAB_TOK_LOGITS, -1);
        const llmlab_outputs *o;
        cr_assert_eq(llmlab_forward(ctx, b, &o, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(o->n_out, k);
        memcpy(out + (size_t)i * V, o->logits, (size_t)k * V * sizeof *out);
        i += k;
    }
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    return out;
}

static int32_t *random_tokens(int n, int vocab, uint64_t seed) {
    llmlab_rng r;
    llmlab_rng_seed(&r, seed, 5);
    int32_t *t = malloc((size_t)n * sizeof *t);
    cr_assert_not_null(t);
    for (int i = 0; i < n; i++) t[i] = (int32_t)(llmlab_rng_next(&r) % (uint64_t)vocab);
    return t;
}

/* Asserts bit-identical logits of two models on the same stream. */
static void expect_same_logits(const llmlab_model *a, const llmlab_model *b, const char *what, uint64_t seed) {
    int n = PROMPT + STEPS;
    int32_t *tok = random_tokens(n, a->cfg.vocab_size, seed);
    float *x = stream_logits(a, tok, n, PROMPT), *y = stream_logits(b, tok, n, PROMPT);
    size_t V = (size_t)a->cfg.vocab_size;
    for (size_t i = 0; i < (size_t)n * V; i++)
        cr_assert(memcmp(&x[i], &y[i], 4) == 0, "%s: logit [%zu][%zu] %.9g != %.9g", what, i / V, i % V,
                  (double)x[i], (double)y[i]);
    free(tok);
    free(x);
    free(y);
}

static void expect_same_config(const llmlab_config *a, const llmlab_config *b, const char *what) {
    cr_assert(a->vocab_size == b->vocab_size && a->dim == b->dim && a->ffn_dim == b->ffn_dim &&
                  a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
                  a->head_dim == b->head_dim && a->tie_embeddings == b->tie_embeddings &&
                  a->qkv_bias == b->qkv_bias && a->rms_eps == b->rms_eps && a->rope_theta == b->rope_theta,
              "%s: config differs", what);
}

static uint32_t gm_type_of(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F16 ? GM_F16 : t == LLMLAB_DTYPE_BF16 ? GM_BF16 : GM_F32;
}

/* ---- exact: F32 / F16 / BF16 ------------------------------------------------------------------- */

Test(gguf_model, plain_types_match_safetensors_bit_for_bit) {
    for (int s = 0; s < fixture_n_shapes; s++) {
        const fixture_shape *sh = &fixture_shapes[s];
        fixture_model f;
        fixture_load(&f, sh, g_seed + (uint64_t)s);
        /* as the converter writes it; Qwen2 models also as "llama" (Q/K rows and biases permuted) */
        for (int as_llama = 0; as_llama <= (sh->qkv_bias ? 1 : 0); as_llama++) {
            gm_opts o = {.type = gm_type_of(sh->dtype), .arch = as_llama ? "llama" : NULL, .seed = g_seed + 31u * s};
            char name[96], what[128];
            snprintf(name, sizeof name, "%s-%d.gguf", sh->name, as_llama);
            char *path = gm_write(f.m, dir, name, &o);
            llmlab_model *g = load_ok(path);
            snprintf(what, sizeof what, "%s (%s, %s)", sh->name, llmlab_dtype_name(sh->dtype),
                     as_llama ? "as llama" : "native arch");
            expect_same_config(&f.m->cfg, &g->cfg, what);
            cr_assert_eq(g->weight_bytes, f.m->weight_bytes, "%s: weight bytes", what);
            cr_assert_eq(g->layers[0].wq.dtype, sh->dtype, "%s: stored dtype kept", what);
            cr_assert_str_eq(llmlab_tokenizer_kind(g->tok), "bytes", "%s: no vocabulary: byte fallback", what);
            expect_same_logits(f.m, g, what, g_seed + (uint64_t)s);
            llmlab_model_free(g);
            unlink(path);
            free(path);
        }
        fixture_free(&f);
    }
}

/* ---- quantized: Q8_0 / Q4_0 -------------------------------------------------------------------- */

/* Shapes whose every row length is a multiple of 32. */
static const fixture_shape qshapes[] = {
    {"q-gqa-untied", 300, 128, 2, 4, 2, 256, 0, 0, 0, LLMLAB_DTYPE_F32},
    {"q-mqa-tied-bias", 257, 64, 2, 2, 1, 160, 0, 1, 1, LLMLAB_DTYPE_F32},
};

/* Teacher-forced comparison of a quantized GGUF model q against r, the f32
 * model holding exactly the weights q's blocks decode to.  The only difference
 * left is that the GGUF kernels quantize each activation row to int8 blocks of
 * 32 (scale amax/127) before the integer dot products, as llama.cpp does.
 *
 * Tolerance.  Rounding x to the grid of step s = amax/127 adds an error uniform
 * in [-s/2, s/2] (standard deviation s/sqrt(12)) to each activation; for the
 * near-Gaussian activations of a block of 32, amax is about 2.5 sigma, so each
 * matmul output gets a relative error of about 2.5/(127*sqrt(12)) = 0.6%.  The
 * errors of the matmuls along the residual stream add independently, so after
 * n of them (7 per layer and the LM head: 15 here) the logits move by about
 * 0.6% * sqrt(15) = 2.2% of their RMS.  We allow 4x that on the RMS (9%) and a
 * single logit 6x the RMS bound (the largest of ~10^4 Gaussian draws is about
 * 4 sigma).  Top-1 agreement: an error of ~2% of the RMS swaps the top two only
 * where they are that close, which among ~300 logits spread over several units
 * happens at a few percent of positions (measured: 92-96%); we require 85% of
 * 160 positions (5 standard deviations below what we see; a wrong kernel or
 * layout agrees on ~1/vocab). */
static void compare_quantized(const llmlab_model *q, const llmlab_model *r, const char *what, uint64_t seed) {
    int n = 160, vocab = r->cfg.vocab_size;
    int32_t *tok = random_tokens(n, vocab, seed);
    float *x = stream_logits(q, tok, n, 32), *y = stream_logits(r, tok, n, 32);
    size_t V = (size_t)vocab;
    double se = 0, sr = 0, maxd = 0;
    int agree = 0;
    for (int i = 0; i < n; i++) {
        size_t ax = 0, ay = 0;
        for (size_t v = 0; v < V; v++) {
            double d = (double)x[i * V + v] - y[i * V + v];
            se += d * d;
            sr += (double)y[i * V + v] * y[i * V + v];
            if (fabs(d) > maxd) maxd = fabs(d);
            if (x[i * V + v] > x[i * V + ax]) ax = v;
            if (y[i * V + v] > y[i * V + ay]) ay = v;
        }
        agree += ax == ay;
    }
    double rms_err = sqrt(se / (double)(n * V)), rms = sqrt(sr / (double)(n * V));
    fprintf(stderr, "[gguf_model] %s: logits RMS %.3f, error RMS %.4f (%.2f%%), max %.4f, top-1 %d/%d\n", what, rms,
            rms_err, 100 * rms_err / rms, maxd, agree, n);
    cr_assert_gt(rms_err, 0.0, "%s: the int8 activations must change something (else the test is vacuous)", what);
    cr_assert_leq(rms_err, 0.09 * rms, "%s: error RMS %.4f above 9%% of the logits' RMS %.4f", what, rms_err, rms);
    cr_assert_leq(maxd, 6 * 0.09 * rms, "%s: a logit off by %.4f", what, maxd);
    cr_assert_geq(agree, n * 85 / 100, "%s: top-1 agrees on %d of %d positions", what, agree, n);
    free(tok);
    free(x);
    free(y);
}

static void quant_case(const fixture_shape *sh, uint32_t type, uint64_t seed) {
    fixture_model f;
    fixture_load(&f, sh, seed);
    gm_opts o = {.type = type, .seed = seed};
    char name[96];
    snprintf(name, sizeof name, "%s-%u.gguf", sh->name, type);
    char *path = gm_write(f.m, dir, name, &o);
    snprintf(name, sizeof name, "%s-%u-deq", sh->name, type);
    char *rdir = gm_write_dequantized(f.m, dir, name, type);
    llmlab_model *q = load_ok(path), *r = load_ok(rdir);
    cr_assert_eq(q->layers[0].wq.dtype, type == GM_Q8_0 ? LLMLAB_DTYPE_Q8_0 : LLMLAB_DTYPE_Q4_0);
    cr_assert_eq(q->embed.dtype, type == GM_Q8_0 ? LLMLAB_DTYPE_Q8_0 : LLMLAB_DTYPE_Q4_0);
    snprintf(name, sizeof name, "%s %s", sh->name, type == GM_Q8_0 ? "q8_0" : "q4_0");
    compare_quantized(q, r, name, seed + 1);
    llmlab_model_free(q);
    llmlab_model_free(r);
    fixture_rmtree(rdir);
    free(rdir);
    unlink(path);
    free(path);
    fixture_free(&f);
}

Test(gguf_model, q8_0_matches_its_dequantized_weights) {
    for (size_t s = 0; s < sizeof qshapes / sizeof qshapes[0]; s++) quant_case(&qshapes[s], GM_Q8_0, g_seed + s);
}

Test(gguf_model, q4_0_matches_its_dequantized_weights) {
    for (size_t s = 0; s < sizeof qshapes / sizeof qshapes[0]; s++) quant_case(&qshapes[s], GM_Q4_0, g_seed + 7 + s);
}

/* ---- the core writer ---------------------------------------------------------------------------- */

Test(gguf_model, core_writer_round_trips_logits) {
    for (int s = 0; s < fixture_n_shapes; s++) {
        const fixture_shape *sh = &fixture_shapes[s];
        fixture_model f;
        fixture_load(&f, sh, g_seed + 100u + (uint64_t)s);
        char path[512];
        snprintf(path, sizeof path, "%s/%s.gguf", dir, sh->name);
        llmlab_err err = {0};
        llmlab_gguf_write_opts o = {.type = sh->dtype};
        cr_assert_eq(llmlab_gguf_write_model(f.m, path, &o, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_model *g = load_ok(path);
        expect_same_config(&f.m->cfg, &g->cfg, sh->name);
        expect_same_logits(f.m, g, sh->name, g_seed + (uint64_t)s);
        /* GGUF -> GGUF keeps everything too */
        char again[520];
        snprintf(again, sizeof again, "%s/%s-2.gguf", dir, sh->name);
        cr_assert_eq(llmlab_gguf_write_model(g, again, &o, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_model *g2 = load_ok(again);
        expect_same_logits(g, g2, sh->name, g_seed + 1 + (uint64_t)s);
        llmlab_model_free(g2);
        llmlab_model_free(g);
        unlink(path);
        unlink(again);
        fixture_free(&f);
    }
}

/* Every row of the loaded quantized matrix w, decoded by the test's decoder, is
 * within the format's bound of the source row.  Codes are rounded on the grid
 * of the f32 scale d but decoded with d stored as f16 (relative error <= 2^-11),
 * which moves code q by at most |q| 2^-11 d:
 *   Q8_0: |w - w'| <= d/2 + 127 * 2^-11 d = 0.5621 d;
 *   Q4_0: <= d + 8 * 2^-11 d (the weight of largest magnitude with the other
 *         sign than the one that fixes d clamps at code 15, a full step off). */
static void expect_blocks_within_bound(const llmlab_mat *src, const llmlab_mat *w, uint32_t type, const char *what) {
    size_t rb = gm_row_bytes(type, w->cols);
    float *a = malloc((size_t)w->cols * sizeof *a), *b = malloc((size_t)w->cols * sizeof *b);
    cr_assert(a && b);
    for (int64_t r = 0; r < w->rows; r++) {
        llmlab_to_f32(a, (const char *)src->data + (size_t)r * (size_t)src->cols * 4, LLMLAB_DTYPE_F32, (size_t)src->cols);
        const unsigned char *row = (const unsigned char *)w->data + (size_t)r * rb;
        gm_dequantize(type, row, w->cols, b);
        for (int64_t k = 0; k < w->cols; k++) {
            const unsigned char *blk = row + (size_t)(k / 32) * (type == GM_Q8_0 ? 34 : 18);
            float d = fabsf(llmlab_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)));
            float bound = type == GM_Q8_0 ? 0.5622f * d : 1.0040f * d;
            cr_assert_leq(fabsf(a[k] - b[k]), bound + 1e-12f, "%s: row %lld col %lld: %g decodes to %g (d %g)", what,
                          (long long)r, (long long)k, (double)a[k], (double)b[k], (double)d);
        }
    }
    free(a);
    free(b);
}

Test(gguf_model, core_writer_quantizes_to_ggml_layouts) {
    const fixture_shape *sh = &qshapes[0];
    fixture_model f;
    fixture_load(&f, sh, g_seed + 200);
    const llmlab_dtype types[2] = {LLMLAB_DTYPE_Q8_0, LLMLAB_DTYPE_Q4_0};
    for (int t = 0; t < 2; t++) {
        char path[512];
        snprintf(path, sizeof path, "%s/core-%s.gguf", dir, llmlab_dtype_name(types[t]));
        llmlab_err err = {0};
        llmlab_gguf_write_opts o = {.type = types[t]};
        cr_assert_eq(llmlab_gguf_write_model(f.m, path, &o, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_model *g = load_ok(path);
        uint32_t gt = types[t] == LLMLAB_DTYPE_Q8_0 ? GM_Q8_0 : GM_Q4_0;
        for (int l = 0; l < sh->layers; l++) { /* q and k went through the permutation and back */
            expect_blocks_within_bound(&f.m->layers[l].wq, &g->layers[l].wq, gt, "attn_q");
            expect_blocks_within_bound(&f.m->layers[l].wk, &g->layers[l].wk, gt, "attn_k");
            expect_blocks_within_bound(&f.m->layers[l].w_down, &g->layers[l].w_down, gt, "ffn_down");
        }
        expect_blocks_within_bound(&f.m->embed, &g->embed, gt, "token_embd");
        cr_assert_eq(g->weight_bytes % (gt == GM_Q8_0 ? 34 : 18), 0);
        llmlab_model_free(g);
        unlink(path);
    }
    fixture_free(&f);
}

/* q4_K (super-blocks of 256) from the core writer, where row lengths allow it
 * (q4_0 where they do not), against the f32 model of the weights its blocks
 * decode to: the same comparison and tolerance as q8_0/q4_0 above. */
Test(gguf_model, core_writer_q4_k_runs) {
    const fixture_shape sh = {"q4k", 300, 256, 2, 4, 2, 320, 0, 0, 0, LLMLAB_DTYPE_F32};
    fixture_model f;
    fixture_load(&f, &sh, g_seed + 400);
    char path[512];
    snprintf(path, sizeof path, "%s/q4k.gguf", dir);
    llmlab_err err = {0};
    llmlab_gguf_write_opts o = {.type = LLMLAB_DTYPE_Q4_K};
    cr_assert_eq(llmlab_gguf_write_model(f.m, path, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_model *g = load_ok(path);
    cr_assert_eq(g->layers[0].wq.dtype, LLMLAB_DTYPE_Q4_K);
    cr_assert_eq(g->embed.dtype, LLMLAB_DTYPE_Q4_K);
    cr_assert_eq(g->layers[0].w_down.dtype, LLMLAB_DTYPE_Q4_0, "rows of 320: q4_0 fallback");
    char *rdir = gm_write_dequantized(g, dir, "q4k-deq", GM_F32);
    llmlab_model *r = load_ok(rdir);
    compare_quantized(g, r, "q4k (core writer)", g_seed + 401);
    llmlab_model_free(r);
    llmlab_model_free(g);
    fixture_rmtree(rdir);
    free(rdir);
    fixture_free(&f);
}

/* Llama-3.1 RoPE scaling travels as rope_freqs.weight (llama.cpp's converter):
 * the loaded inverse frequencies are the plain ones divided by the factors,
 * equal to transformers' llama3 values up to float rounding (a few ulp: the
 * factor is a float32 of a double expression), so logits agree to ~1e-5. */
Test(gguf_model, llama3_rope_scaling_round_trips) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    llmlab_config *c = &o.cfg;
    c->vocab_size = 200, c->dim = 64, c->n_layers = 1, c->n_heads = 4, c->n_kv_heads = 2, c->ffn_dim = 96;
    c->head_dim = 16, c->rope_kind = LLMLAB_ROPE_LLAMA3, c->rope_factor = 8.0f, c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f, c->rope_orig_max_pos = 64; /* wavelengths on both sides and between */
    o.seed = g_seed;
    char *src = fsu_join(dir, "l3");
    llmlab_err err = {0};
    cr_assert_eq(llmlab_synth_write(&o, src, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_model *m = load_ok(src);
    char *path = fsu_join(dir, "l3.gguf");
    llmlab_gguf_write_opts wo = {.type = LLMLAB_DTYPE_F32};
    cr_assert_eq(llmlab_gguf_write_model(m, path, &wo, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_model *g = load_ok(path);
    cr_assert_not_null(llmlab_gguf_find_tensor(g->gguf, "rope_freqs.weight"));
    int scaled = 0;
    for (int i = 0; i < 8; i++) {
        float a = m->rope_inv_freq[i], b = g->rope_inv_freq[i], plain = 1.0f / powf(10000.0f, (float)(2 * i) / 16.0f);
        scaled += a < plain * 0.99f;
        cr_assert_leq(fabsf(a - b), 4e-7f * fabsf(a), "inv_freq[%d]: %.9g vs %.9g", i, (double)a, (double)b);
    }
    cr_assert_geq(scaled, 3, "the scaling must change some frequencies (else the test is vacuous)");
    int n = 40;
    int32_t *tok = random_tokens(n, 200, g_seed);
    float *x = stream_logits(m, tok, n, 8), *y = stream_logits(g, tok, n, 8);
    for (int i = 0; i < n * 200; i++)
        cr_assert_leq(fabsf(x[i] - y[i]), 1e-4f + 1e-4f * fabsf(x[i]), "logit %d: %g vs %g", i, (double)x[i], (double)y[i]);
    free(tok), free(x), free(y);
    llmlab_model_free(g);
    llmlab_model_free(m);
    fixture_rmtree(src);
    free(src);
    free(path);
}

/* ---- vocabularies -------------------------------------------------------------------------------- */

/* A tiny model with the fixture's tokenizer.json, converted; every case of the
 * fixture must encode (with and without specials) and decode the same through
 * the GGUF vocabulary as through the tokenizer.json.  Cases holding one of
 * `skip` are left out: added tokens with lstrip/single_word/normalized flags,
 * which GGUF has no field for. */
static void vocab_case(const char *fixture, const char *const *skip) {
    fixture_shape sh = {fixture, 3400, 32, 1, 2, 1, 64, 0, 1, 0, LLMLAB_DTYPE_F32};
    fixture_model f;
    fixture_load(&f, &sh, g_seed);
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/tokenizers/%s/tokenizer.json", LLMLAB_TEST_DATA, fixture);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", f.dir);
    size_t len;
    char *text = fsu_read(src, &len);
    cr_assert_not_null(text);
    cr_assert_eq(fsu_write(dst, text, len), 0);
    free(text);
    llmlab_model *m = load_ok(f.dir);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, fixture);
    llmlab_err err = {0};
    llmlab_gguf_write_opts o = {.type = LLMLAB_DTYPE_F32};
    cr_assert_eq(llmlab_gguf_write_model(m, path, &o, &err), LLMLAB_OK, "%s: %s", fixture, err.msg);
    llmlab_model *g = load_ok(path);
    cr_assert_str_eq(llmlab_tokenizer_kind(g->tok), llmlab_tokenizer_kind(m->tok), "%s", fixture);
    tok_cases cs;
    tok_cases_load(&cs, fixture);
    int tested = 0;
    for (int i = 0; i < cs.n; i++) {
        int skipped = 0;
        for (int k = 0; skip && skip[k]; k++) skipped |= strstr(cs.v[i].text, skip[k]) != NULL;
        if (skipped) continue;
        tested++;
        for (int sp = 0; sp <= 1; sp++) {
            int32_t *a = NULL, *b = NULL;
            int na = 0, nb = 0;
            cr_assert_eq(llmlab_tokenizer_encode(m->tok, cs.v[i].text, cs.v[i].text_len, sp, &a, &na, &err), 0);
            cr_assert_eq(llmlab_tokenizer_encode(g->tok, cs.v[i].text, cs.v[i].text_len, sp, &b, &nb, &err), 0,
                         "%s line %d: %s", fixture, cs.v[i].line, err.msg);
            cr_assert(na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "%s line %d (special %d): ids differ",
                      fixture, cs.v[i].line, sp);
            char *da, *db;
            size_t la, lb;
            cr_assert_eq(llmlab_tokenizer_decode(m->tok, a, na, 0, &da, &la, &err), 0);
            cr_assert_eq(llmlab_tokenizer_decode(g->tok, b, nb, 0, &db, &lb, &err), 0);
            cr_assert(la == lb && !memcmp(da, db, la), "%s line %d: decodes differ", fixture, cs.v[i].line);
            free(a), free(b), free(da), free(db);
        }
    }
    cr_assert_gt(tested, cs.n / 2, "%s: most cases must be tested", fixture);
    tok_cases_free(&cs);
    llmlab_model_free(g);
    llmlab_model_free(m);
    unlink(path);
    fixture_free(&f);
}

Test(gguf_model, vocab_gpt2) {
    static const char *const skip[] = {"<|mask|>", "<word>", "hello world", NULL};
    vocab_case("bytelevel_gpt2", skip);
}
Test(gguf_model, vocab_llama3) { vocab_case("bytelevel_llama3", NULL); }
Test(gguf_model, vocab_qwen2) { vocab_case("bytelevel_qwen2", NULL); }
Test(gguf_model, vocab_sentencepiece) { vocab_case("sp_llama2", NULL); }

/* The byte fallback becomes a "gpt2" vocabulary that encodes and decodes the same. */
Test(gguf_model, vocab_byte_fallback) {
    fixture_shape sh = {"bytes", 300, 32, 1, 2, 1, 64, 0, 0, 0, LLMLAB_DTYPE_F32};
    fixture_model f;
    fixture_load(&f, &sh, g_seed);
    char path[512];
    snprintf(path, sizeof path, "%s/bytes.gguf", dir);
    llmlab_err err = {0};
    llmlab_gguf_write_opts o = {.type = LLMLAB_DTYPE_F16};
    cr_assert_eq(llmlab_gguf_write_model(f.m, path, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_model *g = load_ok(path);
    cr_assert_str_eq(llmlab_tokenizer_kind(g->tok), "bpe-bytelevel");
    llmlab_rng r;
    llmlab_rng_seed(&r, g_seed, 9);
    char text[200];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)(llmlab_rng_next(&r) % 256);
    int32_t *a, *b;
    int na, nb;
    cr_assert_eq(llmlab_tokenizer_encode(f.m->tok, text, sizeof text, 1, &a, &na, &err), 0);
    cr_assert_eq(llmlab_tokenizer_encode(g->tok, text, sizeof text, 1, &b, &nb, &err), 0, "%s", err.msg);
    cr_assert(na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "random bytes encode differently");
    int32_t ids[3] = {65, 299, 0};
    char *da, *db;
    size_t la, lb;
    cr_assert_eq(llmlab_tokenizer_decode(f.m->tok, ids, 3, 0, &da, &la, &err), 0);
    cr_assert_eq(llmlab_tokenizer_decode(g->tok, ids, 3, 0, &db, &lb, &err), 0);
    cr_assert(la == lb && !memcmp(da, db, la), "decode '%s' vs '%s'", da, db);
    free(a), free(b), free(da), free(db);
    llmlab_model_free(g);
    fixture_free(&f);
}

/* The zoo model (a Llama-3-style byte-level vocabulary) through `llmlab convert`:
 * the command itself loads the file back and compares config and tokens. */
Test(gguf_model, convert_cli) {
    char cmd[2048], out[4096], errout[4096], path[512];
    snprintf(path, sizeof path, "%s/zoo-q8.gguf", dir);
    snprintf(cmd, sizeof cmd, "%s convert %s/models/zoo/target %s --type q8_0", LLMLAB_BIN, LLMLAB_SOURCE_DIR, path);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0, "%s", errout);
    cr_assert(strstr(out, "wrote ") && strstr(out, "q8_0") && strstr(out, "bpe-bytelevel"), "%s", out);
    llmlab_model *g = load_ok(path);
    cr_assert_eq(g->cfg.vocab_size, 4096);
    cr_assert_eq(g->layers[0].wq.dtype, LLMLAB_DTYPE_Q8_0);
    llmlab_model_free(g);
    /* a directory holding only that file loads it */
    llmlab_model_free(load_ok(dir));
    snprintf(cmd, sizeof cmd, "%s convert %s/models/zoo/target %s/x.gguf --type q5_1", LLMLAB_BIN,
             LLMLAB_SOURCE_DIR, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 2);
    cr_assert(strstr(errout, "--type: 'q5_1'"), "%s", errout);
    snprintf(cmd, sizeof cmd, "%s synth %s/syn --vocab 300 --dim 64 --ffn 96 --gguf q4_0", LLMLAB_BIN, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errout, sizeof errout), 0, "%s", errout);
    snprintf(path, sizeof path, "%s/syn/model.q4_0.gguf", dir);
    g = load_ok(path);
    cr_assert_eq(g->layers[1].w_down.dtype, LLMLAB_DTYPE_Q4_0);
    llmlab_model_free(g);
    unlink(path);
}

/* ---- the streaming writer ------------------------------------------------------------------ */

static llmlab_gguf_writer *new_writer(const char *path, uint32_t align) {
    llmlab_gguf_writer *w = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_gguf_writer_create(&w, path, align, &err), LLMLAB_OK, "%s", err.msg);
    return w;
}

Test(gguf_model, writer_api_round_trips_and_refuses_misuse) {
    char *path = fsu_join(dir, "w.gguf"), *copy = fsu_join(dir, "copy.gguf");
    llmlab_err err = {0};
    llmlab_gguf_writer *w = new_writer(path, 64);
    static const char *const strs[] = {"a", "b c", "\xe2\x96\x81x"};
    const int32_t ints[2] = {1, -2};
    const float fl[3] = {0.5f, -1e-3f, 3e7f};
    llmlab_gguf_kv_str(w, "general.architecture", "x");
    llmlab_gguf_kv_u32(w, "t.u32", 4000000000u);
    llmlab_gguf_kv_i32(w, "t.i32", -7);
    llmlab_gguf_kv_f32(w, "t.f32", 1.25f);
    llmlab_gguf_kv_bool(w, "t.bool", 1);
    llmlab_gguf_kv_arr_str(w, "t.strs", strs, NULL, 3);
    llmlab_gguf_kv_arr_i32(w, "t.ints", ints, 2);
    llmlab_gguf_kv_arr_f32(w, "t.floats", fl, 3);
    const int64_t ne0[2] = {3, 2}, ne1[1] = {64};
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "a", LLMLAB_GGML_F32, 2, ne0, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "b", LLMLAB_GGML_Q8_0, 1, ne1, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_gguf_writer_start(w, &err), LLMLAB_OK, "%s", err.msg);
    float a[6] = {1, 2, 3, 4, 5, 6};
    unsigned char b[68];
    for (int i = 0; i < 68; i++) b[i] = (unsigned char)(i * 7 + 1);
    cr_assert_eq(llmlab_gguf_writer_data(w, a, sizeof a, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_data(w, b, 30, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_data(w, b + 30, 38, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_finish(w, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_gguf *g = NULL;
    cr_assert_eq(llmlab_gguf_open(&g, path, &err), LLMLAB_OK, "%s", err.msg);
    /* the same metadata copied value by value into a second file */
    w = new_writer(copy, 0);
    for (int64_t i = 0; i < llmlab_gguf_n_kv(g); i++)
        if (strcmp(llmlab_gguf_kv_key(g, i), "general.alignment"))
            llmlab_gguf_kv_copy(w, llmlab_gguf_kv_key(g, i), llmlab_gguf_kv_value(g, i));
    cr_assert_eq(llmlab_gguf_writer_finish(w, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_gguf *h = NULL;
    cr_assert_eq(llmlab_gguf_open(&h, copy, &err), LLMLAB_OK, "%s", err.msg);
    const llmlab_gguf *files[2] = {g, h};
    for (int k = 0; k < 2; k++) {
        const llmlab_gguf *f = files[k];
        uint32_t u;
        int32_t i;
        float x;
        int bo;
        const char *sv;
        cr_assert_eq(llmlab_gguf_version(f), 3);
        cr_assert_eq(llmlab_gguf_get_u32(f, "t.u32", &u, &err), 0);
        cr_assert_eq(u, 4000000000u);
        cr_assert_eq(llmlab_gguf_get_i32(f, "t.i32", &i, &err), 0);
        cr_assert_eq(i, -7);
        cr_assert_eq(llmlab_gguf_get_f32(f, "t.f32", &x, &err), 0);
        cr_assert_eq(x, 1.25f);
        cr_assert_eq(llmlab_gguf_get_bool(f, "t.bool", &bo, &err), 0);
        cr_assert_eq(bo, 1);
        cr_assert_eq(llmlab_gguf_get_str(f, "general.architecture", &sv, NULL, &err), 0);
        cr_assert_str_eq(sv, "x");
        const llmlab_gguf_value *v = llmlab_gguf_get(f, "t.strs");
        cr_assert_eq(llmlab_gguf_arr_len(v), 3);
        for (int j = 0; j < 3; j++) cr_assert_str_eq(llmlab_gguf_arr_str(v, (uint64_t)j, NULL), strs[j]);
        int64_t iv;
        double dv;
        v = llmlab_gguf_get(f, "t.ints");
        cr_assert(llmlab_gguf_arr_i64(v, 1, &iv) == 0 && iv == -2);
        v = llmlab_gguf_get(f, "t.floats");
        cr_assert(llmlab_gguf_arr_f64(v, 2, &dv) == 0 && (float)dv == 3e7f);
    }
    cr_assert_eq(llmlab_gguf_alignment(g), 64);
    const llmlab_gguf_tensor *ta = llmlab_gguf_find_tensor(g, "a"), *tb = llmlab_gguf_find_tensor(g, "b");
    cr_assert(ta && tb && ta->offset % 64 == 0 && tb->offset % 64 == 0);
    cr_assert(ta->ne[0] == 3 && ta->ne[1] == 2 && !memcmp(ta->data, a, sizeof a));
    cr_assert(tb->nbytes == 68 && !memcmp(tb->data, b, 68));
    llmlab_gguf_close(g);
    llmlab_gguf_close(h);
    /* misuse: each refused with a message, and nothing left behind */
    char *bad = fsu_join(dir, "bad.gguf"), tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", bad);
    w = new_writer(bad, 32);
    llmlab_gguf_kv_u32(w, "k", 1);
    llmlab_gguf_kv_u32(w, "k", 2);
    cr_assert_eq(llmlab_gguf_writer_start(w, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "metadata key 'k' given twice"), "%s", err.msg);
    llmlab_gguf_writer_abort(w);
    cr_assert(!fsu_exists(bad) && !fsu_exists(tmp));
    w = new_writer(bad, 32);
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "q", LLMLAB_GGML_Q4_0, 1, (const int64_t[]){40}, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "rows of 40 (block 32)"), "%s", err.msg);
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "u", 5, 1, (const int64_t[]){4}, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "unknown ggml type 5"), "%s", err.msg);
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "a", LLMLAB_GGML_F32, 2, ne0, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_start(w, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_data(w, a, 10, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_finish(w, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "tensor 'a' got 10 of 24 bytes"), "%s", err.msg);
    cr_assert(!fsu_exists(bad) && !fsu_exists(tmp));
    w = new_writer(bad, 32);
    cr_assert_eq(llmlab_gguf_writer_tensor(w, "a", LLMLAB_GGML_F32, 2, ne0, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_start(w, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_writer_data(w, b, 30, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "past the last tensor"), "%s", err.msg);
    llmlab_gguf_writer_abort(w);
    cr_assert(!fsu_exists(bad) && !fsu_exists(tmp));
    free(bad);
    free(path);
    free(copy);
}

/* ---- damaged files ----------------------------------------------------------------------------- */

static void expect_load_error(const char *path, llmlab_status code, const char *frag, const char *what) {
    llmlab_model *m = (llmlab_model *)1;
    llmlab_err err = {0};
    llmlab_status s = llmlab_model_load(&m, path, &err);
    cr_assert_null(m, "%s: no model on error", what);
    cr_assert_eq(s, code, "%s: status %s, message: %s", what, llmlab_status_name(s), err.msg);
    cr_assert(strstr(err.msg, frag), "%s: message '%s' lacks '%s'", what, err.msg, frag);
}

Test(gguf_model, damaged_files_are_clear_errors) {
    const fixture_shape *sh = &fixture_shapes[0];
    fixture_model f;
    fixture_load(&f, sh, g_seed + 300);
    const struct {
        const char *what;
        gm_opts o;
        llmlab_status code;
        const char *frag;
    } cases[] = {
        {"missing tensor", {.omit_tensor = "blk.1.ffn_up.weight"}, LLMLAB_EFORMAT, "tensor 'blk.1.ffn_up.weight' is missing"},
        {"missing norm", {.omit_tensor = "output_norm.weight"}, LLMLAB_EFORMAT, "'output_norm.weight' is missing"},
        {"missing key", {.omit_key = "llama.embedding_length"}, LLMLAB_EFORMAT,
         "metadata key 'llama.embedding_length' is missing"},
        {"missing eps", {.omit_key = "llama.attention.layer_norm_rms_epsilon"}, LLMLAB_EFORMAT,
         "'llama.attention.layer_norm_rms_epsilon' is missing"},
        {"wrong shape", {.odd_tensor = "blk.0.attn_k.weight", .odd_rows = 48}, LLMLAB_EFORMAT,
         "tensor 'blk.0.attn_k.weight' has shape [48, 64] but the metadata implies [32, 64]"},
        {"unknown type", {.odd_tensor = "blk.0.attn_v.weight", .odd_type = 5}, LLMLAB_EUNSUPPORTED,
         "tensor 'blk.0.attn_v.weight' has type unknown (ggml type id 5)"},
        {"unsupported type", {.odd_tensor = "blk.1.attn_output.weight", .odd_type = 6}, LLMLAB_EUNSUPPORTED,
         "'blk.1.attn_output.weight' has type q5_0 (ggml type id 6), which llmlab cannot run (supported: f32, f16, "
         "bf16, q8_0, q4_0, q4_K)"},
        {"unsupported arch", {.arch = "gpt2"}, LLMLAB_EUNSUPPORTED, "general.architecture 'gpt2' is not supported"},
        {"offset past the end", {.bad_offset = "blk.0.ffn_gate.weight"}, LLMLAB_EFORMAT,
         "runs past the end of the data section"},
        {"tensor count", {.tensor_count_add = (uint64_t)1 << 40}, LLMLAB_EFORMAT, "tensor count"},
        {"one extra tensor", {.tensor_count_add = 1}, LLMLAB_EFORMAT, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gm_opts o = cases[i].o;
        o.type = GM_F32;
        o.seed = g_seed + i;
        char name[64];
        snprintf(name, sizeof name, "bad%zu.gguf", i);
        char *path = gm_write(f.m, dir, name, &o);
        expect_load_error(path, cases[i].code, cases[i].frag, cases[i].what);
        unlink(path);
        free(path);
    }
    /* byte-level damage of a good file */
    gm_opts o = {.type = GM_F32, .seed = g_seed};
    char *path = gm_write(f.m, dir, "good.gguf", &o);
    size_t n;
    char *bytes = fsu_read(path, &n);
    cr_assert_not_null(bytes);
    llmlab_model_free(load_ok(path));
    char *bad = fsu_join(dir, "damaged.gguf");
    memcpy(bytes, "GGUX", 4);
    cr_assert_eq(fsu_write(bad, bytes, n), 0);
    expect_load_error(bad, LLMLAB_EFORMAT, "not a GGUF file", "bad magic");
    memcpy(bytes, "GGUF", 4);
    bytes[4] = 4; /* version 4 */
    cr_assert_eq(fsu_write(bad, bytes, n), 0);
    expect_load_error(bad, LLMLAB_EFORMAT, "unsupported GGUF version 4", "bad version");
    bytes[4] = 3;
    llmlab_rng r;
    llmlab_rng_seed(&r, g_seed, 3);
    const size_t cuts[] = {0, 3, 10, 23, 100, n / 3, n / 2, 3 * n / 4};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t cut = cuts[i] < n ? cuts[i] : n - 1;
        cr_assert_eq(fsu_write(bad, bytes, cut), 0);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cut, n);
        llmlab_model *m = NULL;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_model_load(&m, bad, &err), LLMLAB_EFORMAT, "%s: %s", what, err.msg);
        const char *frag = cut == 0 ? "empty file" : cut < 4 ? "not a GGUF file" : "past the end";
        cr_assert(strstr(err.msg, frag) || (cut >= 4 && strstr(err.msg, "too large for a file of")),
                  "%s: message '%s'", what, err.msg);
    }
    /* a directory with two .gguf files and no config.json */
    char *d2 = fsu_join(dir, "two");
    char *a = fsu_join(d2, "a.gguf"), *b = fsu_join(d2, "b.gguf");
    cr_assert_eq(mkdir(d2, 0755), 0);
    cr_assert_eq(fsu_write(a, bytes, n), 0);
    cr_assert_eq(fsu_write(b, bytes, n), 0);
    expect_load_error(d2, LLMLAB_EINVAL, "holds 2 .gguf files", "two files");
    unlink(b);
    llmlab_model_free(load_ok(d2));
    unlink(a);
    free(a), free(b), free(d2);
    free(bad);
    free(bytes);
    free(path);
    fixture_free(&f);
}
