/* calibrate.c - calibration token streams and the matrix inputs they produce
 * (calibrate.h).
 *
 * Sections: the request; building the stream (generate / random / file); the
 * capture forward; lookups by matrix name. */
#include "calibrate.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "forward.h"
#include "generate.h"
#include "kernels/cpu/kernels.h"
#include "rng.h"
#include "tokenizer.h"

/* Distinct matrix inputs per layer: q/k/v read one normed hidden state, gate/up
 * another, o_proj and down_proj their own.  The LM head's buffer comes last. */
enum { BUF_QKV, BUF_O, BUF_GATE_UP, BUF_DOWN, BUFS_PER_LAYER };

/* Most tokens one capture forward takes: bounds the context's logits buffer
 * ([max_batch][vocab] floats) for large vocabularies. */
enum { CALIB_MAX_BATCH = 128 };

struct llmlab_calib {
    char *source;
    int n_tokens;
    uint64_t seed;
    const llmlab_model *m;   /* set by run */
    int32_t *tokens;         /* [n_tokens] the stream */
    int *seq_start;          /* [n_seqs + 1] */
    int n_seqs;
    int seq_cap;             /* most tokens per sequence (the context, or n_tokens) */
    int n_bufs;              /* n_layers * BUFS_PER_LAYER + 1 */
    float **buf;             /* [n_bufs] each [n_tokens][cols of its matrices] */
    int64_t row;             /* stream row of the forward in progress */
    int64_t rows;            /* rows captured (n_tokens after run) */
};

/* ---- the request ---------------------------------------------------------------------- */

static int is_builtin_source(const char *s) { return !strcmp(s, "generate") || !strcmp(s, "random"); }

llmlab_status llmlab_calib_create(llmlab_calib **out, const char *source, int n_tokens, uint64_t seed,
                                  llmlab_err *err) {
    *out = NULL;
    if (!source || !source[0])
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "calibration: empty source (use \"generate\", \"random\" or a file path)");
    if (n_tokens < 1)
        return llmlab_err_set(err, LLMLAB_EINVAL, "calibration: tokens = %d, need at least 1", n_tokens);
    if (!is_builtin_source(source)) {
        FILE *f = fopen(source, "rb");
        if (!f)
            return llmlab_err_set(err, LLMLAB_EIO,
                                  "calibration source '%s' is neither \"generate\", \"random\" nor a readable "
                                  "file: %s",
                                  source, strerror(errno));
        fclose(f);
    }
    llmlab_calib *c = calloc(1, sizeof *c);
    if (!c || !(c->source = strdup(source))) {
        free(c);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    c->n_tokens = n_tokens;
    c->seed = seed;
    *out = c;
    return LLMLAB_OK;
}

static void free_buffers(llmlab_calib *c) {
    for (int i = 0; c->buf && i < c->n_bufs; i++) free(c->buf[i]);
    free(c->buf);
    c->buf = NULL;
    c->rows = 0;
}

void llmlab_calib_free(llmlab_calib *c) {
    if (!c) return;
    free_buffers(c);
    free(c->tokens);
    free(c->seq_start);
    free(c->source);
    free(c);
}

/* ---- the stream -------------------------------------------------------------------- */

/* Cuts tokens[0, n) into sequences of seq_cap (the last may be shorter). */
static llmlab_status cut_stream(llmlab_calib *c, llmlab_err *err) {
    int n_seqs = (c->n_tokens + c->seq_cap - 1) / c->seq_cap;
    if (!(c->seq_start = malloc((size_t)(n_seqs + 1) * sizeof *c->seq_start)))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int k = 0; k <= n_seqs; k++) c->seq_start[k] = k * c->seq_cap < c->n_tokens ? k * c->seq_cap : c->n_tokens;
    c->n_seqs = n_seqs;
    return LLMLAB_OK;
}

static llmlab_status stream_random(llmlab_calib *c, llmlab_err *err) {
    llmlab_rng rng;
    llmlab_rng_seed(&rng, c->seed, 0);
    uint64_t V = (uint64_t)c->m->cfg.vocab_size;
    for (int i = 0; i < c->n_tokens; i++) c->tokens[i] = (int32_t)(llmlab_rng_next(&rng) % V);
    return cut_stream(c, err);
}

/* Sequence k: BOS (or, for a model without one, a token drawn from the seeded
 * stream), then tokens sampled at temperature 1 from the unquantized model until
 * EOS or seq_cap tokens. */
static llmlab_status stream_generate(llmlab_calib *c, llmlab_ctx *ctx, llmlab_err *err) {
    const llmlab_config *cfg = &c->m->cfg;
    int32_t bos = cfg->bos_id >= 0 ? cfg->bos_id : (c->m->tok ? llmlab_tokenizer_bos(c->m->tok) : -1);
    int max_seqs = c->n_tokens; /* a sequence has at least one token */
    if (!(c->seq_start = malloc((size_t)(max_seqs + 1) * sizeof *c->seq_start)))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, c->seed, 0);
    int total = 0;
    c->n_seqs = 0;
    llmlab_status st = LLMLAB_OK;
    while (!st && total < c->n_tokens) {
        int len = c->n_tokens - total < c->seq_cap ? c->n_tokens - total : c->seq_cap;
        uint64_t r = llmlab_rng_next(&rng); /* the sequence's sampling seed */
        int32_t first = bos >= 0 && bos < cfg->vocab_size ? bos : (int32_t)(r % (uint64_t)cfg->vocab_size);
        c->tokens[total] = first;
        int n_out = 0;
        if (len > 1) {
            llmlab_gen_opts go = {.max_new = len - 1, .samp = {1.0f, 0, 1.0f, 0.0f}, .seed = r, .stop_at_eos = 1};
            st = llmlab_generate(ctx, 0, &first, 1, &go, c->tokens + total + 1, &n_out, NULL, err);
            llmlab_kv_free_seq(llmlab_ctx_kv(ctx), 0);
        }
        c->seq_start[c->n_seqs++] = total;
        total += 1 + n_out;
    }
    c->seq_start[c->n_seqs] = total;
    return st ? llmlab_err_prefix(err, "calibration: generating text") : LLMLAB_OK;
}

static char *read_file(const char *path, size_t *len, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        llmlab_err_set(err, LLMLAB_EIO, "calibration file '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *g = realloc(buf, 2 * cap + 1);
        if (!g) free(buf);
        buf = g;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) llmlab_err_set(err, LLMLAB_ENOMEM, "calibration file '%s': out of memory", path);
    else if (bad) {
        free(buf);
        buf = NULL;
        llmlab_err_set(err, LLMLAB_EIO, "calibration file '%s': read error", path);
    } else {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Whitespace-separated decimal ids; stops after `want` of them.  *n: ids read. */
static llmlab_status parse_ids(const llmlab_calib *c, const char *text, int want, int32_t *out, int *n,
                               llmlab_err *err) {
    const char *p = text;
    *n = 0;
    while (*n < want) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end && !isspace((unsigned char)*end)))
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "calibration file '%s': id %d is not an integer (near \"%.20s\")", c->source,
                                  *n + 1, p);
        if (errno || v < 0 || v >= c->m->cfg.vocab_size)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "calibration file '%s': id %d = %lld is outside the vocabulary [0, %d)", c->source,
                                  *n + 1, v, c->m->cfg.vocab_size);
        out[(*n)++] = (int32_t)v;
        p = end;
    }
    return LLMLAB_OK;
}

static llmlab_status stream_file(llmlab_calib *c, llmlab_err *err) {
    size_t len = 0;
    char *text = read_file(c->source, &len, err);
    if (!text) return err ? err->code : LLMLAB_EIO;
    llmlab_status st = LLMLAB_OK;
    int n = 0;
    if (ends_with(c->source, ".ids")) st = parse_ids(c, text, c->n_tokens, c->tokens, &n, err);
    else if (!c->m->tok)
        st = llmlab_err_set(err, LLMLAB_EINVAL, "calibration file '%s': the model has no tokenizer", c->source);
    else {
        int32_t *ids = NULL;
        st = llmlab_tokenizer_encode(c->m->tok, text, len, 1, &ids, &n, err);
        if (st) llmlab_err_prefix(err, "calibration file '%s'", c->source);
        else memcpy(c->tokens, ids, (size_t)(n < c->n_tokens ? n : c->n_tokens) * sizeof *ids);
        free(ids);
    }
    free(text);
    if (!st && n < c->n_tokens)
        st = llmlab_err_set(err, LLMLAB_EINVAL,
                            "calibration file '%s' holds %d tokens but tokens = %d were asked: lower tokens or "
                            "give a longer file",
                            c->source, n, c->n_tokens);
    return st ? st : cut_stream(c, err);
}

/* ---- the capture forward ----------------------------------------------------------- */

static int buffer_of(const llmlab_calib *c, int matrix) {
    int layer = matrix / LLMLAB_MATS_PER_LAYER;
    if (layer >= c->m->cfg.n_layers) return c->n_bufs - 1;
    switch (matrix % LLMLAB_MATS_PER_LAYER) {
    case LLMLAB_MAT_Q:
    case LLMLAB_MAT_K:
    case LLMLAB_MAT_V: return layer * BUFS_PER_LAYER + BUF_QKV;
    case LLMLAB_MAT_O: return layer * BUFS_PER_LAYER + BUF_O;
    case LLMLAB_MAT_GATE:
    case LLMLAB_MAT_UP: return layer * BUFS_PER_LAYER + BUF_GATE_UP;
    default: return layer * BUFS_PER_LAYER + BUF_DOWN;
    }
}

/* Keeps x, then multiplies exactly as the dense forward does.  Matrices sharing
 * an input copy the same rows again: cols floats per row against the rows * cols
 * of the matmul, so not worth tracking which member came first. */
static void capture_linear(void *user, int matrix, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_calib *c = user;
    const llmlab_mat *W = llmlab_model_matrix(c->m, matrix);
    float *dst = c->buf[buffer_of(c, matrix)] + (size_t)c->row * (size_t)W->cols;
    memcpy(dst, x, (size_t)M * (size_t)W->cols * sizeof *x);
    llmlab_cpu_matmul(y, x, W->data, W->dtype, M, (int)W->rows, (int)W->cols, pool);
}

/* A matrix reading buffer i (its cols are the buffer's width). */
static int owner_of(const llmlab_calib *c, int i) {
    static const int first[BUFS_PER_LAYER] = {LLMLAB_MAT_Q, LLMLAB_MAT_O, LLMLAB_MAT_GATE, LLMLAB_MAT_DOWN};
    if (i == c->n_bufs - 1) return c->m->cfg.n_layers * LLMLAB_MATS_PER_LAYER;
    return (i / BUFS_PER_LAYER) * LLMLAB_MATS_PER_LAYER + first[i % BUFS_PER_LAYER];
}

static llmlab_status alloc_buffers(llmlab_calib *c, llmlab_err *err) {
    c->n_bufs = c->m->cfg.n_layers * BUFS_PER_LAYER + 1;
    double bytes = 0;
    for (int i = 0; i < c->n_bufs; i++)
        bytes += 4.0 * c->n_tokens * (double)llmlab_model_matrix(c->m, owner_of(c, i))->cols;
    int ok = (c->buf = calloc((size_t)c->n_bufs, sizeof *c->buf)) != NULL;
    for (int i = 0; ok && i < c->n_bufs; i++) {
        size_t n = (size_t)c->n_tokens * (size_t)llmlab_model_matrix(c->m, owner_of(c, i))->cols;
        ok = (c->buf[i] = malloc(n * sizeof(float))) != NULL;
    }
    if (ok) return LLMLAB_OK;
    free_buffers(c);
    return llmlab_err_set(err, LLMLAB_ENOMEM,
                          "calibration: out of memory for the inputs of %d tokens (%.0f MB): lower tokens",
                          c->n_tokens, bytes / 1e6);
}

/* Runs each sequence from an empty cache with every token flagged for logits,
 * so the LM head sees every row too. */
static llmlab_status capture(llmlab_calib *c, llmlab_ctx *ctx, llmlab_err *err) {
    llmlab_status st = alloc_buffers(c, err);
    if (st) return st;
    int chunk = llmlab_ctx_max_batch(ctx);
    llmlab_batch *b = llmlab_batch_create(chunk);
    if (!b) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_ctx_set_linear(ctx, capture_linear, c);
    c->row = 0;
    for (int k = 0; k < c->n_seqs && !st; k++) {
        int s0 = c->seq_start[k], s1 = c->seq_start[k + 1];
        for (int i0 = s0; i0 < s1 && !st; i0 += chunk) {
            int i1 = i0 + chunk < s1 ? i0 + chunk : s1;
            llmlab_batch_clear(b);
            for (int i = i0; i < i1; i++) llmlab_batch_add(b, c->tokens[i], 0, i - s0, LLMLAB_TOK_LOGITS, -1);
            const llmlab_outputs *o;
            st = llmlab_forward(ctx, b, &o, err);
            if (!st) llmlab_kv_commit(llmlab_ctx_kv(ctx), 0);
            c->row += i1 - i0;
        }
        llmlab_kv_free_seq(llmlab_ctx_kv(ctx), 0);
    }
    llmlab_ctx_set_linear(ctx, NULL, NULL);
    llmlab_batch_free(b);
    if (st) {
        free_buffers(c);
        return llmlab_err_prefix(err, "calibration forward");
    }
    c->rows = c->row;
    return LLMLAB_OK;
}

llmlab_status llmlab_calib_run(llmlab_calib *c, const llmlab_model *m, int n_threads, llmlab_err *err) {
    free_buffers(c);
    free(c->tokens);
    free(c->seq_start);
    c->tokens = NULL;
    c->seq_start = NULL;
    c->m = m;
    c->seq_cap = m->cfg.max_pos < c->n_tokens ? m->cfg.max_pos : c->n_tokens;
    if (!(c->tokens = malloc((size_t)c->n_tokens * sizeof *c->tokens)))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "calibration: out of memory for %d tokens", c->n_tokens);
    llmlab_ctx *ctx = NULL;
    llmlab_ctx_opts co = {.n_threads = n_threads, .kv_tokens = c->seq_cap, .max_seqs = 1,
                          .max_batch = c->seq_cap < CALIB_MAX_BATCH ? c->seq_cap : CALIB_MAX_BATCH};
    llmlab_status st = llmlab_ctx_create(&ctx, m, &co, err);
    if (!st) {
        if (!strcmp(c->source, "generate")) st = stream_generate(c, ctx, err);
        else if (!strcmp(c->source, "random")) st = stream_random(c, err);
        else st = stream_file(c, err);
    }
    if (!st) st = capture(c, ctx, err);
    llmlab_ctx_free(ctx);
    return st;
}

const int32_t *llmlab_calib_tokens(const llmlab_calib *c, int *n, const int **seq_start, int *n_seqs) {
    if (!c->seq_start) return NULL;
    *n = c->seq_start[c->n_seqs];
    if (seq_start) *seq_start = c->seq_start;
    if (n_seqs) *n_seqs = c->n_seqs;
    return c->tokens;
}

/* ---- lookups ------------------------------------------------------------------------- */

int llmlab_calib_matrix_index(const llmlab_model *m, const char *name) {
    static const char *names[LLMLAB_MATS_PER_LAYER] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                                       "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                                       "mlp.gate_proj.weight",    "mlp.up_proj.weight",
                                                       "mlp.down_proj.weight"};
    if (!name) return -1;
    if (!strcmp(name, "lm_head.weight")) return m->cfg.n_layers * LLMLAB_MATS_PER_LAYER;
    int layer = -1, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0 || layer >= m->cfg.n_layers)
        return -1;
    for (int k = 0; k < LLMLAB_MATS_PER_LAYER; k++)
        if (!strcmp(name + used, names[k])) return layer * LLMLAB_MATS_PER_LAYER + k;
    return -1;
}

const float *llmlab_calib_matrix_inputs(const llmlab_calib *c, int matrix, int64_t *rows) {
    if (!c || !c->buf || !c->m || matrix < 0 || matrix > c->m->cfg.n_layers * LLMLAB_MATS_PER_LAYER) return NULL;
    *rows = c->rows;
    return c->buf[buffer_of(c, matrix)];
}

const float *llmlab_calib_inputs(const llmlab_calib *c, const char *name, int64_t *rows) {
    if (!c || !c->m) return NULL;
    return llmlab_calib_matrix_inputs(c, llmlab_calib_matrix_index(c->m, name), rows);
}
