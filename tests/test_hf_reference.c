/* test_hf_reference.c - llmlab's loader + forward against Hugging Face transformers.
 *
 * Fixtures: tests/data/hf/<name>/ made by tools/make_hf_fixtures.py (see its header
 * for why each shape was chosen): a real HF checkpoint (config.json +
 * model.safetensors, f32), tokens.txt (24 ids), logits.f32 ([T][vocab] little-endian
 * f32 from transformers' eager float32 forward at positions 0..T-1), greedy.txt (16
 * ids model.generate(do_sample=False) appends to the first 8 ids), meta.txt.
 *
 * For each of llama (GQA, llama3 RoPE scaling, untied, vocab 251), mistral (MQA,
 * head_dim 32 != hidden/heads, tied) and qwen2 (q/k/v bias, theta 1e6, tied):
 *   config   the parsed config is what the fixture was built with;
 *   logits   one batch of all T tokens (CAUSAL) reproduces every logits row;
 *   chunked  the same T tokens in chunks of 7 (committing after each) reproduce
 *            the same rows: attention over committed KV slots across block
 *            boundaries (block size 4) agrees with the one-batch result;
 *   greedy   8-token prefill, then 16 one-token decode steps, argmax each step
 *            (lowest index wins ties), equals greedy.txt exactly.
 *
 * Tolerance: |llmlab - hf| <= ATOL + RTOL*|hf| elementwise, and identical argmax
 * per row.  Both sides compute in f32 with f32 weights; they differ only in
 * summation order (dot products of 64..160 terms, softmax over <= 24 keys,
 * RMSNorm over 64/128) and in libm exp/sin/cos.  The fixture script measures the
 * f32 rounding error of this very forward as |hf_f32 - hf_f64| (meta.txt): 1.1e-5
 * to 1.8e-5 on logits of magnitude <= 8.2.  Two independent f32 evaluations then
 * differ by at most about twice that, so ATOL = 2e-4 (plus RTOL = 2e-5, i.e. 1.6e-4
 * more at the largest logit) leaves ~5-10x headroom, while every feature the test
 * targets moves the logits by >= 6 when broken (meta.txt ablations: llama3 scaling
 * off 7.0, RoPE off 7.0-8.9, wrong GQA head map 10.4, Qwen2 biases off 6.5) and the
 * smallest top-1/top-2 gap anywhere is 0.057, so argmax cannot flip within the
 * tolerance.  Observed on the CPU backend when written: max |diff| 1.2e-5 (llama),
 * 1.4e-5 (mistral), 2.1e-5 (qwen2), the same in one batch and in chunks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/forward.h"
#include "core/kv_cache.h"
#include "core/model.h"

#define HF_DIR LLMLAB_TEST_DATA "/hf"
#define ATOL 2e-4
#define RTOL 2e-5
#define MAX_IDS 64

typedef struct {
    const char *name;
    llmlab_arch arch;
    int vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim;
    int tie, qkv_bias;
    llmlab_rope_kind rope_kind;
    float rope_theta;
} hf_expect;

static const hf_expect EXPECT_LLAMA = {"llama", LLMLAB_ARCH_LLAMA, 251, 64, 2, 4, 2, 16, 160, 0, 0,
                                       LLMLAB_ROPE_LLAMA3, 500000.0f};
static const hf_expect EXPECT_MISTRAL = {"mistral", LLMLAB_ARCH_MISTRAL, 300, 64, 2, 4, 1, 32, 100, 1, 0,
                                         LLMLAB_ROPE_DEFAULT, 10000.0f};
static const hf_expect EXPECT_QWEN2 = {"qwen2", LLMLAB_ARCH_QWEN2, 320, 128, 2, 2, 2, 64, 72, 1, 1,
                                       LLMLAB_ROPE_DEFAULT, 1000000.0f};

/* ---- fixture files ---------------------------------------------------------------- */

static void fixture_path(char *buf, size_t cap, const char *name, const char *file) {
    int n = snprintf(buf, cap, "%s/%s/%s", HF_DIR, name, file);
    cr_assert(n > 0 && (size_t)n < cap, "path too long");
}

static char *read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open fixture %s (run tools/make_hf_fixtures.py)", path);
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    cr_assert(len >= 0);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    cr_assert(buf);
    cr_assert(fread(buf, 1, (size_t)len, f) == (size_t)len, "short read on %s", path);
    buf[len] = '\0';
    fclose(f);
    if (len_out) *len_out = (size_t)len;
    return buf;
}

/* Whitespace-separated integers; returns how many. */
static int read_ints(const char *name, const char *file, int *out, int cap) {
    char path[1024];
    fixture_path(path, sizeof path, name, file);
    char *text = read_file(path, NULL);
    int n = 0;
    char *p = text, *end;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        cr_assert(n < cap, "%s: more than %d integers", path, cap);
        out[n++] = (int)v;
        p = end;
    }
    free(text);
    return n;
}

typedef struct {
    int tokens[MAX_IDS], n_tokens;
    int greedy[MAX_IDS], n_greedy;
    int T, vocab;
    float *logits; /* [T][vocab] */
} hf_fixture;

static void fixture_load(hf_fixture *fx, const char *name) {
    memset(fx, 0, sizeof *fx);
    fx->n_tokens = read_ints(name, "tokens.txt", fx->tokens, MAX_IDS);
    fx->n_greedy = read_ints(name, "greedy.txt", fx->greedy, MAX_IDS);
    int shape[2];
    cr_assert_eq(read_ints(name, "logits_shape.txt", shape, 2), 2);
    fx->T = shape[0];
    fx->vocab = shape[1];
    cr_assert_eq(fx->T, fx->n_tokens, "%s: logits rows %d != tokens %d", name, fx->T, fx->n_tokens);
    cr_assert(fx->n_greedy > 0 && fx->n_tokens >= 8);

    char path[1024];
    size_t len;
    fixture_path(path, sizeof path, name, "logits.f32");
    unsigned char *raw = (unsigned char *)read_file(path, &len);
    size_t count = (size_t)fx->T * (size_t)fx->vocab;
    cr_assert_eq(len, count * 4, "%s: %zu bytes, expected %zu", path, len, count * 4);
    fx->logits = malloc(count * sizeof *fx->logits);
    cr_assert(fx->logits);
    for (size_t i = 0; i < count; i++) { /* little-endian on any host */
        const unsigned char *b = raw + 4 * i;
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        memcpy(&fx->logits[i], &u, sizeof u);
    }
    free(raw);
}

/* ---- llmlab side ---------------------------------------------------------------- */

static llmlab_model *model_load(const char *name) {
    char dir[1024];
    int n = snprintf(dir, sizeof dir, "%s/%s", HF_DIR, name);
    cr_assert(n > 0 && (size_t)n < sizeof dir);
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    llmlab_status s = llmlab_model_load(&m, dir, &err);
    cr_assert_eq(s, LLMLAB_OK, "llmlab_model_load(%s): %s: %s", dir, llmlab_status_name(s), err.msg);
    cr_assert(m);
    return m;
}

static llmlab_ctx *ctx_create(const llmlab_model *m, int n_threads, int block_size) {
    llmlab_ctx_opts o = {.n_threads = n_threads, .kv_block_size = block_size, .kv_tokens = 128,
                         .max_seqs = 2, .max_batch = 64};
    llmlab_ctx *ctx = NULL;
    llmlab_err err = {0};
    llmlab_status s = llmlab_ctx_create(&ctx, m, &o, &err);
    cr_assert_eq(s, LLMLAB_OK, "llmlab_ctx_create: %s: %s", llmlab_status_name(s), err.msg);
    return ctx;
}

static const llmlab_outputs *forward(llmlab_ctx *ctx, const llmlab_batch *b) {
    const llmlab_outputs *out = NULL;
    llmlab_err err = {0};
    llmlab_status s = llmlab_forward(ctx, b, &out, &err);
    cr_assert_eq(s, LLMLAB_OK, "llmlab_forward: %s: %s", llmlab_status_name(s), err.msg);
    cr_assert(out);
    return out;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i; /* strict: lowest index wins ties */
    return best;
}

/* Compares one llmlab logits row with fixture row t; returns max |diff| and sets
 * *bad when a value is out of tolerance or not finite. */
static double compare_row(const float *got, const float *ref, int vocab, int *bad, int *worst_col,
                          double *worst_excess) {
    double maxd = 0.0;
    for (int v = 0; v < vocab; v++) {
        double d = fabs((double)got[v] - (double)ref[v]);
        double lim = ATOL + RTOL * fabs((double)ref[v]);
        if (!isfinite(got[v]) || !(d <= lim)) {
            *bad = 1;
            if (!isfinite(got[v]) || d - lim > *worst_excess) {
                *worst_excess = isfinite(got[v]) ? d - lim : INFINITY;
                *worst_col = v;
            }
        }
        if (!isfinite(got[v])) d = INFINITY;
        if (d > maxd) maxd = d;
    }
    return maxd;
}

/* Checks the rows of `out` as fixture rows first_t .. first_t + out->n_out - 1. */
typedef struct {
    double maxd[MAX_IDS];
    int argmax_ok[MAX_IDS];
    int bad[MAX_IDS];
    int worst_col[MAX_IDS];
} row_report;

static void check_rows(const hf_fixture *fx, const llmlab_outputs *out, int first_t, row_report *r) {
    for (int i = 0; i < out->n_out; i++) {
        int t = first_t + i;
        cr_assert(t < fx->T);
        const float *got = out->logits + (size_t)i * (size_t)fx->vocab;
        const float *ref = fx->logits + (size_t)t * (size_t)fx->vocab;
        double excess = -1.0;
        r->bad[t] = 0;
        r->worst_col[t] = -1;
        r->maxd[t] = compare_row(got, ref, fx->vocab, &r->bad[t], &r->worst_col[t], &excess);
        r->argmax_ok[t] = argmax(got, fx->vocab) == argmax(ref, fx->vocab);
    }
}

/* Prints the per-position table (always, so the log shows the observed error) and
 * fails when any row is out of tolerance or its argmax differs. */
static void report_rows(const char *what, const hf_fixture *fx, const row_report *r) {
    double maxd = 0.0;
    int n_bad = 0, worst_t = 0;
    for (int t = 0; t < fx->T; t++) {
        if (r->maxd[t] > maxd) maxd = r->maxd[t], worst_t = t;
        if (r->bad[t] || !r->argmax_ok[t]) n_bad++;
    }
    fprintf(stderr, "[hf_reference] %s: max |diff| %.3g at position %d (tolerance %.0e + %.0e*|ref|)\n",
            what, maxd, worst_t, ATOL, RTOL);
    if (n_bad) {
        for (int t = 0; t < fx->T; t++)
            fprintf(stderr, "  pos %2d  max|diff| %.4g  %s%s (worst vocab col %d)\n", t, r->maxd[t],
                    r->bad[t] ? "OUT OF TOLERANCE" : "ok", r->argmax_ok[t] ? "" : ", ARGMAX DIFFERS",
                    r->worst_col[t]);
    }
    cr_assert_eq(n_bad, 0, "%s: %d of %d positions differ from transformers (max |diff| %.4g at position %d)",
                 what, n_bad, fx->T, maxd, worst_t);
}

/* ---- the checks ------------------------------------------------------------------- */

static void check_config(const hf_expect *e) {
    llmlab_model *m = model_load(e->name);
    const llmlab_config *c = &m->cfg;
    cr_expect_eq(c->arch, e->arch, "%s: arch", e->name);
    cr_expect_eq(c->vocab_size, e->vocab, "%s: vocab_size", e->name);
    cr_expect_eq(c->dim, e->dim, "%s: hidden_size", e->name);
    cr_expect_eq(c->n_layers, e->n_layers, "%s: num_hidden_layers", e->name);
    cr_expect_eq(c->n_heads, e->n_heads, "%s: num_attention_heads", e->name);
    cr_expect_eq(c->n_kv_heads, e->n_kv_heads, "%s: num_key_value_heads", e->name);
    cr_expect_eq(c->head_dim, e->head_dim, "%s: head_dim", e->name);
    cr_expect_eq(c->ffn_dim, e->ffn_dim, "%s: intermediate_size", e->name);
    cr_expect_eq(!!c->tie_embeddings, e->tie, "%s: tie_word_embeddings", e->name);
    cr_expect_eq(!!c->qkv_bias, e->qkv_bias, "%s: qkv bias", e->name);
    cr_expect_eq(c->rope_kind, e->rope_kind, "%s: rope kind", e->name);
    cr_expect_eq(c->rope_theta, e->rope_theta, "%s: rope_theta %g", e->name, (double)c->rope_theta);
    if (e->rope_kind == LLMLAB_ROPE_LLAMA3) {
        cr_expect_eq(c->rope_factor, 8.0f);
        cr_expect_eq(c->rope_low_freq_factor, 1.0f);
        cr_expect_eq(c->rope_high_freq_factor, 4.0f);
        cr_expect_eq(c->rope_orig_max_pos, 64);
    }
    cr_expect_eq(m->embed.rows, e->vocab);
    cr_expect_eq(m->lm_head.rows, e->vocab);
    cr_expect_eq(m->lm_head.cols, e->dim);
    if (e->tie) cr_expect_eq(m->lm_head.data, m->embed.data, "%s: tied LM head is not the embedding", e->name);
    else cr_expect_neq(m->lm_head.data, m->embed.data, "%s: untied LM head aliases the embedding", e->name);
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        cr_expect_eq(L->wq.rows, (int64_t)e->n_heads * e->head_dim);
        cr_expect_eq(L->wk.rows, (int64_t)e->n_kv_heads * e->head_dim);
        cr_expect_eq(L->wo.cols, (int64_t)e->n_heads * e->head_dim);
        cr_expect_eq(L->bq != NULL, e->qkv_bias, "%s: layer %d q bias", e->name, l);
        cr_expect_eq(L->bk != NULL, e->qkv_bias, "%s: layer %d k bias", e->name, l);
        cr_expect_eq(L->bv != NULL, e->qkv_bias, "%s: layer %d v bias", e->name, l);
    }
    llmlab_model_free(m);
}

/* All T tokens of sequence 0 in one batch, positions 0..T-1, every row's logits. */
static void check_logits(const char *name) {
    hf_fixture fx;
    fixture_load(&fx, name);
    llmlab_model *m = model_load(name);
    cr_assert_eq(m->cfg.vocab_size, fx.vocab);
    llmlab_ctx *ctx = ctx_create(m, 0, 0);
    llmlab_batch *b = llmlab_batch_create(fx.T);
    cr_assert(b);
    for (int t = 0; t < fx.T; t++)
        cr_assert_eq(llmlab_batch_add(b, fx.tokens[t], 0, t, LLMLAB_TOK_LOGITS, -1), t);
    const llmlab_outputs *out = forward(ctx, b);
    cr_assert_eq(out->n_out, fx.T);
    for (int i = 0; i < out->n_out; i++) cr_assert_eq(out->out_index[i], i);

    row_report r;
    check_rows(&fx, out, 0, &r);
    char what[64];
    snprintf(what, sizeof what, "%s one-batch prefill", name);
    report_rows(what, &fx, &r);

    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    free(fx.logits);
}

/* The same tokens in chunks of 7 (7+7+7+3), committing after each chunk. */
static void check_chunked(const char *name) {
    enum { CHUNK = 7 };
    hf_fixture fx;
    fixture_load(&fx, name);
    llmlab_model *m = model_load(name);
    llmlab_ctx *ctx = ctx_create(m, 3, 4);
    llmlab_kv *kv = llmlab_ctx_kv(ctx);
    llmlab_batch *b = llmlab_batch_create(CHUNK);
    cr_assert(b);
    row_report r;
    for (int t0 = 0; t0 < fx.T; t0 += CHUNK) {
        llmlab_batch_clear(b);
        for (int t = t0; t < fx.T && t < t0 + CHUNK; t++)
            cr_assert_geq(llmlab_batch_add(b, fx.tokens[t], 0, t, LLMLAB_TOK_LOGITS, -1), 0);
        const llmlab_outputs *out = forward(ctx, b);
        cr_assert_eq(out->n_out, b->n);
        check_rows(&fx, out, t0, &r);
        llmlab_kv_commit(kv, 0);
        cr_assert_eq(llmlab_kv_committed(kv, 0), t0 + b->n);
    }
    char what[64];
    snprintf(what, sizeof what, "%s chunked prefill (7 per batch, KV block 4)", name);
    report_rows(what, &fx, &r);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    free(fx.logits);
}

/* 8-token prefill, then greedy decode one token per forward. */
static void check_greedy(const char *name) {
    enum { PREFIX = 8 };
    hf_fixture fx;
    fixture_load(&fx, name);
    llmlab_model *m = model_load(name);
    llmlab_ctx *ctx = ctx_create(m, 1, 0);
    llmlab_kv *kv = llmlab_ctx_kv(ctx);
    llmlab_batch *b = llmlab_batch_create(PREFIX);
    cr_assert(b);
    const int vocab = m->cfg.vocab_size;

    for (int t = 0; t < PREFIX; t++)
        llmlab_batch_add(b, fx.tokens[t], 0, t, t == PREFIX - 1 ? LLMLAB_TOK_LOGITS : 0, -1);
    const llmlab_outputs *out = forward(ctx, b);
    cr_assert_eq(out->n_out, 1);
    cr_assert_eq(out->out_index[0], PREFIX - 1);
    llmlab_kv_commit(kv, 0);

    int got[MAX_IDS];
    for (int i = 0; i < fx.n_greedy; i++) {
        got[i] = argmax(out->logits, vocab);
        if (i + 1 == fx.n_greedy) break;
        llmlab_batch_clear(b);
        llmlab_batch_add(b, got[i], 0, PREFIX + i, LLMLAB_TOK_LOGITS, -1);
        out = forward(ctx, b);
        cr_assert_eq(out->n_out, 1);
        llmlab_kv_commit(kv, 0);
    }
    cr_assert_eq(llmlab_kv_committed(kv, 0), PREFIX + fx.n_greedy - 1);

    int first_diff = -1;
    for (int i = 0; i < fx.n_greedy && first_diff < 0; i++)
        if (got[i] != fx.greedy[i]) first_diff = i;
    if (first_diff >= 0) {
        fprintf(stderr, "[hf_reference] %s greedy:\n  llmlab:", name);
        for (int i = 0; i < fx.n_greedy; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  hf:    ");
        for (int i = 0; i < fx.n_greedy; i++) fprintf(stderr, " %d", fx.greedy[i]);
        fprintf(stderr, "\n");
    }
    cr_assert_eq(first_diff, -1, "%s: greedy decode differs from transformers at step %d (%d vs %d)", name,
                 first_diff, first_diff >= 0 ? got[first_diff] : 0, first_diff >= 0 ? fx.greedy[first_diff] : 0);

    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    free(fx.logits);
}

Test(hf_reference, llama_config) { check_config(&EXPECT_LLAMA); }
Test(hf_reference, llama_logits) { check_logits("llama"); }
Test(hf_reference, llama_chunked) { check_chunked("llama"); }
Test(hf_reference, llama_greedy) { check_greedy("llama"); }

Test(hf_reference, mistral_config) { check_config(&EXPECT_MISTRAL); }
Test(hf_reference, mistral_logits) { check_logits("mistral"); }
Test(hf_reference, mistral_chunked) { check_chunked("mistral"); }
Test(hf_reference, mistral_greedy) { check_greedy("mistral"); }

Test(hf_reference, qwen2_config) { check_config(&EXPECT_QWEN2); }
Test(hf_reference, qwen2_logits) { check_logits("qwen2"); }
Test(hf_reference, qwen2_chunked) { check_chunked("qwen2"); }
Test(hf_reference, qwen2_greedy) { check_greedy("qwen2"); }
