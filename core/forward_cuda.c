/* forward_cuda.c - the batched forward of forward.c on an NVIDIA GPU.
 *
 * The host keeps everything that decides (the batch, the KV cache's block
 * tables, slot metadata and free lists: kv_cache.c, unchanged); the device holds
 * the weights, the activations and the packed KV pool, and runs the math.  One
 * forward:
 *
 *   1. place_tokens (forward.c) appends the batch's slots on the host, exactly as
 *      on the CPU; copies the cache queued since the last forward (copy-on-write,
 *      keep, compaction: kv_mem_copy) run first, in order, as one kernel;
 *   2. the step's small arrays (tokens, positions, target KV rows, each token's
 *      prior count and visible batch slots, random pattern blocks, the block
 *      tables of the batch's sequences) are packed into one page-locked buffer
 *      and sent with one copy; slot metadata of blocks changed since the last
 *      forward is sent with it and scattered into the device mirror;
 *   3. the layers run on the device (weights through kernels/cuda/quant_*: the
 *      custom GEMV for small batches, cuBLAS above; every matrix read once per
 *      forward), and the requested rows come back (logits, hidden, tap).
 *
 * Decode steps (one token per sequence, no attention mass) are captured into a
 * CUDA graph on their second occurrence of a shape and replayed afterwards:
 * every per-step value lives in the fixed step buffer, so one graph serves any
 * context that fits its split count and table width (both rounded up to powers
 * of two and part of the key).  Why: at batch 1 a Llama layer is ~15 kernels of
 * a few microseconds each, and launch gaps would cost a large share of the
 * step.
 *
 * Deterministic mode (llmlab_model.deterministic): the GEMV kernel for every
 * batch size (never cuBLAS) and the split attention kernel with a fixed chunk
 * for every token (never the prefill tiles), so a row's result is the same bits
 * whatever else the batch holds and however a prompt is chunked.  The default
 * mode takes cuBLAS from 9 rows up and the tiled prefill kernel for runs of a
 * sequence's tokens: faster, and equal to deterministic mode within f32/bf16
 * rounding only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "forward_internal.h"

#ifndef LLMLAB_HAVE_CUDA

static llmlab_status no_cuda(llmlab_err *err) {
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                          "backend cuda: this build has no CUDA (configure with a CUDA toolkit, LLMLAB_CUDA=ON)");
}
llmlab_status llmlab_cuda_fwd_create(llmlab_ctx *c, llmlab_kv_mem *mem, llmlab_err *err) {
    (void)c, (void)mem;
    return no_cuda(err);
}
llmlab_status llmlab_cuda_fwd_bind(llmlab_ctx *c, llmlab_err *err) {
    (void)c;
    return no_cuda(err);
}
void llmlab_cuda_fwd_free(struct llmlab_cuda_fwd *g) { (void)g; }
llmlab_status llmlab_cuda_forward(llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    (void)c, (void)b;
    return no_cuda(err);
}
void llmlab_cuda_weights_free(struct llmlab_cuda_weights *w) { (void)w; }

#else

#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_quant.h"
#include "kernels/cuda/cuda_stream.h"

enum {
    ATTN_CHUNK = 256,   /* keys per attention split: fixed, so results never depend on the batch */
    GEMV_MAX_M = 8,     /* default mode: GEMV up to this many rows, cuBLAS above */
    MAX_GRAPHS = 16,    /* captured decode shapes kept */
    TILE_ROWS = 64      /* prefill tile: consecutive query rows of one sequence */
};

/* ---- the model's weights on the device ------------------------------------------------ */

struct llmlab_cuda_weights {
    llmlab_cuda_qctx *qc;        /* the context the weights were uploaded with (their device) */
    int device;
    int n_mats;                  /* n_layers * LLMLAB_MATS_PER_LAYER + 1 */
    llmlab_cuda_wmat **mat;      /* [n_mats]; the LM head last */
    llmlab_cuda_wmat *embed_own; /* [vocab][dim] when not tied, else NULL (the LM head serves) */
    const void *embed;           /* [vocab][dim] rows in embed_dtype */
    int embed_dtype;
    float *norm;                 /* [n_layers][2][dim] attention, FFN; then [dim] final */
    float *bias;                 /* [n_layers][qd + 2 kd] q, k, v biases, or NULL */
    float *inv_freq;             /* [head_dim / 2] */
};

void llmlab_cuda_weights_free(struct llmlab_cuda_weights *w) {
    if (!w) return;
    for (int i = 0; w->mat && i < w->n_mats; i++) llmlab_cuda_wmat_free(w->mat[i]);
    free(w->mat);
    llmlab_cuda_wmat_free(w->embed_own);
    llmlab_cuda_mem_free(w->norm);
    llmlab_cuda_mem_free(w->bias);
    llmlab_cuda_mem_free(w->inv_freq);
    llmlab_cuda_qctx_free(w->qc);
    free(w);
}

static llmlab_status upload_mat(struct llmlab_cuda_weights *w, llmlab_cuda_wmat **out, const llmlab_mat *m,
                                const char *what, llmlab_err *err) {
    if (m->dtype != LLMLAB_DTYPE_F32 && m->dtype != LLMLAB_DTYPE_F16 && m->dtype != LLMLAB_DTYPE_BF16)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "backend cuda: %s is stored as a GGUF block type; the CUDA forward takes f32, f16 "
                              "and bf16 weights (convert the model, or use backend cpu)",
                              what);
    return llmlab_cuda_wmat_upload_dense(w->qc, out, m->data, (int)m->dtype, m->rows, m->cols, err);
}

/* Uploads f32 vectors (norms, biases) into one device array. */
static llmlab_status upload_vectors(struct llmlab_cuda_weights *w, float **dev, const float *const *src,
                                    const size_t *len, int n, llmlab_err *err) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += len[i];
    float *h = malloc(total * sizeof(float));
    if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory staging %zu floats", total);
    size_t at = 0;
    for (int i = 0; i < n; i++, at += len[i - 1]) memcpy(h + at, src[i], len[i] * sizeof(float));
    llmlab_status st = llmlab_cuda_mem_alloc(w->qc, (void **)dev, total * sizeof(float), err);
    if (!st) st = llmlab_cuda_mem_h2d(w->qc, *dev, h, total * sizeof(float), err);
    free(h);
    return st;
}

static llmlab_status upload_small(struct llmlab_cuda_weights *w, const llmlab_model *m, llmlab_err *err) {
    const llmlab_config *cfg = &m->cfg;
    int L = cfg->n_layers;
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim, kd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    const float **src = malloc((size_t)(3 * L + 1) * sizeof *src);
    size_t *len = malloc((size_t)(3 * L + 1) * sizeof *len);
    llmlab_status st = LLMLAB_OK;
    if (!src || !len) st = llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory");
    int n = 0;
    for (int l = 0; !st && l < L; l++) {
        src[n] = m->layers[l].attn_norm, len[n++] = (size_t)cfg->dim;
        src[n] = m->layers[l].ffn_norm, len[n++] = (size_t)cfg->dim;
    }
    if (!st) {
        src[n] = m->final_norm, len[n++] = (size_t)cfg->dim;
        st = upload_vectors(w, &w->norm, src, len, n, err);
    }
    if (!st && m->layers[0].bq) {
        n = 0;
        for (int l = 0; l < L; l++) {
            src[n] = m->layers[l].bq, len[n++] = qd;
            src[n] = m->layers[l].bk, len[n++] = kd;
            src[n] = m->layers[l].bv, len[n++] = kd;
        }
        st = upload_vectors(w, &w->bias, src, len, n, err);
    }
    if (!st) {
        src[0] = m->rope_inv_freq, len[0] = (size_t)cfg->head_dim / 2;
        st = upload_vectors(w, &w->inv_freq, src, len, 1, err);
    }
    free(src);
    free(len);
    return st;
}

/* Refuses a model the device cannot hold, before any upload. */
static llmlab_status check_fits(struct llmlab_cuda_weights *w, const llmlab_model *m, llmlab_err *err) {
    size_t free_b = 0, total_b = 0;
    llmlab_status st = llmlab_cuda_mem_info(w->qc, &free_b, &total_b, err);
    if (st) return st;
    if (m->weight_bytes + (256u << 20) > free_b)
        return llmlab_err_set(err, LLMLAB_ENOMEM,
                              "backend cuda: the model's weights need %.2f GiB, device %d has %.2f GiB free of %.2f GiB",
                              (double)m->weight_bytes / (1 << 30), w->device, (double)free_b / (1 << 30),
                              (double)total_b / (1 << 30));
    return LLMLAB_OK;
}

static llmlab_status weights_upload(const llmlab_model *m, struct llmlab_cuda_weights **out, llmlab_err *err) {
    const llmlab_config *cfg = &m->cfg;
    struct llmlab_cuda_weights *w = calloc(1, sizeof *w);
    if (!w) return llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory");
    w->device = m->device;
    w->n_mats = cfg->n_layers * LLMLAB_MATS_PER_LAYER + 1;
    llmlab_cuda_qopts qo = {m->device, m->deterministic, GEMV_MAX_M};
    llmlab_status st = llmlab_cuda_qctx_create(&w->qc, &qo, err);
    if (!st) st = check_fits(w, m, err);
    if (!st && !(w->mat = calloc((size_t)w->n_mats, sizeof *w->mat)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory");
    static const char *const names[LLMLAB_MATS_PER_LAYER] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"};
    for (int i = 0; !st && i < w->n_mats; i++) {
        char what[64];
        if (i == w->n_mats - 1) snprintf(what, sizeof what, "lm_head");
        else snprintf(what, sizeof what, "layer %d %s", i / LLMLAB_MATS_PER_LAYER, names[i % LLMLAB_MATS_PER_LAYER]);
        st = upload_mat(w, &w->mat[i], llmlab_model_matrix(m, i), what, err);
    }
    const llmlab_cuda_wmat *emb = NULL;
    if (!st && m->embed.data == m->lm_head.data && m->embed.dtype == m->lm_head.dtype) emb = w->mat[w->n_mats - 1];
    else if (!st && !(st = upload_mat(w, &w->embed_own, &m->embed, "embed_tokens", err))) emb = w->embed_own;
    if (!st) {
        size_t pitch;
        w->embed = llmlab_cuda_wmat_rows(emb, &pitch);
        w->embed_dtype = (int)m->embed.dtype;
        if (pitch != (size_t)cfg->dim * llmlab_dtype_size(m->embed.dtype))
            st = llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "backend cuda: dim %d gives padded embedding rows", cfg->dim);
    }
    if (!st) st = upload_small(w, m, err);
    if (!st) st = llmlab_cuda_qctx_sync(w->qc, err);
    if (st) {
        llmlab_cuda_weights_free(w);
        return st;
    }
    *out = w;
    return LLMLAB_OK;
}

/* ---- the context's device side ------------------------------------------------------------- */

typedef struct {
    int n, n_out, logits, tap, n_splits, stride; /* the key */
    int seen;                                     /* times this shape ran */
    llmlab_cuda_graph *g;                         /* captured on the second run */
} graph_slot;

/* Offsets (in int32 units) of the step arrays inside the step buffer. */
typedef struct {
    size_t tokens, pos, blk, row, table, prior, extra_off, extra, out_rows, rand, n_rand, tiles, meta, tables;
    size_t total; /* int32 units, the tables included */
} step_layout;

struct llmlab_cuda_fwd {
    llmlab_cuda_qctx *qc;     /* this context's stream, cuBLAS handle, GEMM workspace */
    void *stream;
    struct llmlab_cuda_weights *w;
    int deterministic;
    int max_batch;
    /* activations on the device, f32 */
    float *x, *h, *tmp;       /* [max_batch][dim] */
    float *q, *att;           /* [max_batch][n_heads * head_dim] */
    float *k, *v;             /* [max_batch][n_kv_heads * head_dim] */
    float *gate, *up;         /* [max_batch][ffn_dim] */
    float *hidden, *tap;      /* [max_batch][dim] output rows */
    float *logits;            /* [max_batch][vocab] */
    /* host side of the outputs: page-locked (graph-captured copies need it) */
    float *logits_h, *hidden_h, *tap_h; /* c->out points at these */
    /* the step buffer: device + page-locked twin, step_layout inside */
    int32_t *step_d, *step_h;
    step_layout lay;
    int table_stride;         /* block-table width the buffer holds */
    /* KV pool copies queued by the cache (kv_mem_copy), run in order before the next forward */
    uint8_t *pool;            /* the device pool (set by kv_mem_alloc) */
    size_t pool_bytes;
    llmlab_cuda_copy_op *ops_h; /* [ops_cap] */
    llmlab_cuda_copy_op *ops_d; /* [ops_cap] */
    int n_ops, ops_cap;
    char kv_error[512];       /* a queued copy that failed (the hook cannot return it) */
    /* slot metadata mirror: [n_blocks][n_lanes][block_size] each */
    int32_t *meta_pos;
    uint8_t *meta_valid;
    int32_t *dirty;           /* [n_blocks] host: blocks to resend */
    const llmlab_kv *mirror_of; /* the cache the mirror follows (set_kv_format makes a new one) */
    /* attention */
    void *attn_work;
    size_t attn_work_bytes;
    float *mass_d;            /* [max_batch][n_kv_heads][mass_stride] */
    float *mass_h;            /* page-locked twin */
    size_t mass_cap;          /* floats */
    /* the pattern's block layout on the device */
    uint8_t *layout_d;
    uint8_t *layout_h;        /* [layout_n] host copy of what layout_d holds (set_pattern may reuse the
                               * host buffer's address for another layout: compare the bytes) */
    size_t layout_n;
    uint64_t signature;       /* of what the graphs captured besides their key (check_signature) */
    graph_slot graphs[MAX_GRAPHS];
};

static int pow2_at_least(int v) {
    int p = 1;
    while (p < v) p *= 2;
    return p;
}

/* The device pool and its copies (llmlab_kv_mem hooks). */
static void *kv_mem_alloc(void *user, size_t bytes) {
    struct llmlab_cuda_fwd *g = user;
    void *p = NULL;
    if (llmlab_cuda_mem_alloc(g->qc, &p, bytes, NULL)) return NULL;
    g->pool = p;
    g->pool_bytes = bytes;
    return p;
}

static void kv_mem_release(void *user, void *p) {
    struct llmlab_cuda_fwd *g = user;
    llmlab_cuda_qctx_sync(g->qc, NULL);
    llmlab_cuda_mem_free(p);
    if (p == g->pool) g->pool = NULL, g->n_ops = 0;
}

static int in_pool(const struct llmlab_cuda_fwd *g, const void *p) {
    return g->pool && (const uint8_t *)p >= g->pool && (const uint8_t *)p < g->pool + g->pool_bytes;
}

/* Runs the queued pool copies (one ordered-copy kernel); synchronous upload of the list. */
static llmlab_status flush_copies(struct llmlab_cuda_fwd *g, llmlab_err *err) {
    if (g->n_ops == 0) return LLMLAB_OK;
    llmlab_status st = llmlab_cuda_mem_h2d(g->qc, g->ops_d, g->ops_h, (size_t)g->n_ops * sizeof *g->ops_h, err);
    if (!st) st = llmlab_cuda_copy_list(g->stream, g->pool, g->ops_d, g->n_ops, err);
    if (!st) st = llmlab_cuda_qctx_sync(g->qc, err); /* the list buffer is reused next time */
    g->n_ops = 0;
    return st;
}

static llmlab_status grow_ops(struct llmlab_cuda_fwd *g, llmlab_err *err) {
    int cap = g->ops_cap ? 2 * g->ops_cap : 4096;
    llmlab_cuda_copy_op *h = realloc(g->ops_h, (size_t)cap * sizeof *h);
    if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory for KV copies");
    g->ops_h = h;
    llmlab_cuda_mem_free(g->ops_d);
    g->ops_d = NULL;
    g->ops_cap = 0;
    llmlab_status st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->ops_d, (size_t)cap * sizeof *h, err);
    if (!st) g->ops_cap = cap;
    return st;
}

/* Pool-to-pool copies are queued (the cache issues thousands of small record
 * moves on keep and compaction; one kernel runs them in order); a copy with a
 * host side (swap) runs the queue first, then copies synchronously.  The hook
 * cannot fail back to the cache, so a failure here is kept and reported by the
 * next forward. */
static void kv_mem_copy(void *user, void *dst, const void *src, size_t n) {
    struct llmlab_cuda_fwd *g = user;
    llmlab_err err = {0};
    llmlab_status st;
    if (in_pool(g, dst) && in_pool(g, src)) {
        st = g->n_ops == g->ops_cap ? flush_copies(g, &err) : LLMLAB_OK;
        if (!st && g->ops_cap == 0) st = grow_ops(g, &err);
        if (!st)
            g->ops_h[g->n_ops++] = (llmlab_cuda_copy_op){(int64_t)((uint8_t *)dst - g->pool),
                                                         (int64_t)((const uint8_t *)src - g->pool), (int64_t)n};
    } else if (!(st = flush_copies(g, &err))) {
        st = in_pool(g, dst) ? llmlab_cuda_mem_h2d(g->qc, dst, src, n, &err) : llmlab_cuda_mem_d2h(g->qc, dst, src, n, &err);
    }
    if (st && !g->kv_error[0]) snprintf(g->kv_error, sizeof g->kv_error, "%s", err.msg);
}

static llmlab_status dev_floats(struct llmlab_cuda_fwd *g, float **p, size_t rows, size_t cols, llmlab_err *err) {
    return llmlab_cuda_mem_alloc(g->qc, (void **)p, rows * cols * sizeof(float), err);
}

static llmlab_status alloc_activations(llmlab_ctx *c, struct llmlab_cuda_fwd *g, llmlab_err *err) {
    const llmlab_config *cfg = &c->m->cfg;
    size_t B = (size_t)c->max_batch, qd = (size_t)cfg->n_heads * cfg->head_dim,
           kd = (size_t)cfg->n_kv_heads * cfg->head_dim, d = (size_t)cfg->dim, f = (size_t)cfg->ffn_dim;
    llmlab_status st = dev_floats(g, &g->x, B, d, err);
    if (!st) st = dev_floats(g, &g->h, B, d, err);
    if (!st) st = dev_floats(g, &g->tmp, B, d, err);
    if (!st) st = dev_floats(g, &g->q, B, qd, err);
    if (!st) st = dev_floats(g, &g->att, B, qd, err);
    if (!st) st = dev_floats(g, &g->k, B, kd, err);
    if (!st) st = dev_floats(g, &g->v, B, kd, err);
    if (!st) st = dev_floats(g, &g->gate, B, f, err);
    if (!st) st = dev_floats(g, &g->up, B, f, err);
    if (!st) st = dev_floats(g, &g->hidden, B, d, err);
    if (!st) st = dev_floats(g, &g->tap, B, d, err);
    if (!st) st = dev_floats(g, &g->logits, B, (size_t)cfg->vocab_size, err);
    if (!st) st = llmlab_cuda_host_alloc((void **)&g->logits_h, B * (size_t)cfg->vocab_size * sizeof(float), err);
    if (!st) st = llmlab_cuda_host_alloc((void **)&g->hidden_h, B * d * sizeof(float), err);
    if (!st) st = llmlab_cuda_host_alloc((void **)&g->tap_h, B * d * sizeof(float), err);
    return st;
}

/* cuBLAS takes 16-bit activations from a workspace of the context (quant_gemm.cu)
 * that grows with M x cols, and a grown workspace is a new allocation: a graph
 * captured before would keep using the freed one.  So it is sized once here, by
 * one GEMM at the largest M and cols this context can run, before any capture. */
static llmlab_status reserve_gemm(llmlab_ctx *c, struct llmlab_cuda_fwd *g, llmlab_err *err) {
    if (g->deterministic || c->max_batch <= GEMV_MAX_M) return LLMLAB_OK; /* never cuBLAS */
    const llmlab_cuda_wmat *big = NULL;
    int64_t rows = 0, cols = 0;
    for (int i = 0; i < g->w->n_mats; i++) {
        const llmlab_mat *m = llmlab_model_matrix(c->m, i);
        if (m->dtype != LLMLAB_DTYPE_F32 && m->cols > cols) big = g->w->mat[i], rows = m->rows, cols = m->cols;
    }
    if (!big) return LLMLAB_OK; /* f32 goes to cuBLAS without a copy */
    size_t B = (size_t)c->max_batch;
    float *x = NULL, *y = NULL;
    llmlab_status st = dev_floats(g, &x, B, (size_t)cols, err);
    if (!st) st = dev_floats(g, &y, B, (size_t)rows, err);
    if (!st) st = llmlab_cuda_mem_set(g->qc, x, 0, B * (size_t)cols * sizeof(float), err);
    if (!st) st = llmlab_cuda_matmul(g->qc, big, y, x, c->max_batch, LLMLAB_CUDA_PATH_GEMM, err);
    if (!st) st = llmlab_cuda_qctx_sync(g->qc, err);
    llmlab_cuda_mem_free(x);
    llmlab_cuda_mem_free(y);
    return st;
}

llmlab_status llmlab_cuda_fwd_create(llmlab_ctx *c, llmlab_kv_mem *mem, llmlab_err *err) {
    llmlab_model *m = (llmlab_model *)c->m; /* the device weights are cached on the model */
    llmlab_status st;
    if (llmlab_cuda_device_count(err) == 0) return LLMLAB_EUNSUPPORTED; /* err says why */
    if (!m->gpu && (st = weights_upload(m, &m->gpu, err))) return st;
    if (m->gpu->device != m->device)
        return llmlab_err_set(err, LLMLAB_EINVAL, "backend cuda: the model's weights are on device %d, not %d",
                              m->gpu->device, m->device);
    struct llmlab_cuda_fwd *g = calloc(1, sizeof *g);
    if (!g) return llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory");
    c->gpu = g;
    g->w = m->gpu;
    g->deterministic = m->deterministic;
    g->max_batch = c->max_batch;
    llmlab_cuda_qopts qo = {m->device, m->deterministic, GEMV_MAX_M};
    if ((st = llmlab_cuda_qctx_create(&g->qc, &qo, err))) return st;
    g->stream = llmlab_cuda_qctx_stream(g->qc);
    if ((st = alloc_activations(c, g, err)) || (st = reserve_gemm(c, g, err))) return st;
    *mem = (llmlab_kv_mem){kv_mem_alloc, kv_mem_release, kv_mem_copy, g};
    return LLMLAB_OK;
}

/* Lays out the step buffer for block tables table_stride wide. */
static step_layout layout_for(int B, int table_stride) {
    step_layout L;
    size_t at = 0, b = (size_t)B;
    L.tokens = at, at += b;
    L.pos = at, at += b;
    L.blk = at, at += b;
    L.row = at, at += b;
    L.table = at, at += b;
    L.prior = at, at += b;
    L.extra_off = at, at += b + 1;
    L.extra = at, at += b * (b + 1) / 2 + b;
    L.out_rows = at, at += b;
    L.rand = at, at += b * LLMLAB_CUDA_MAX_RANDOM_BLOCKS;
    L.n_rand = at, at += b;
    L.tiles = at, at += 2 * b;
    L.meta = at, at += (b + 3) / 4; /* bytes */
    at = (at + 3) & ~(size_t)3;     /* 16-byte aligned tables */
    L.tables = at, at += b * (size_t)table_stride;
    L.total = at;
    return L;
}

static llmlab_status graphs_drop(struct llmlab_cuda_fwd *g) {
    for (int i = 0; i < MAX_GRAPHS; i++) {
        llmlab_cuda_graph_free(g->graphs[i].g);
        g->graphs[i] = (graph_slot){0};
    }
    return LLMLAB_OK;
}

/* The step buffer for tables up to `stride` entries wide (grows; drops the graphs
 * that captured the old addresses). */
static llmlab_status reserve_step(struct llmlab_cuda_fwd *g, int stride, llmlab_err *err) {
    if (g->step_d && stride <= g->table_stride) return LLMLAB_OK;
    int s = pow2_at_least(stride < 16 ? 16 : stride);
    llmlab_status st = llmlab_cuda_qctx_sync(g->qc, err);
    if (st) return st;
    graphs_drop(g);
    llmlab_cuda_mem_free(g->step_d);
    llmlab_cuda_host_free(g->step_h);
    g->step_d = NULL, g->step_h = NULL, g->table_stride = 0;
    g->lay = layout_for(g->max_batch, s);
    size_t bytes = g->lay.total * sizeof(int32_t);
    if ((st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->step_d, bytes, err))) return st;
    if ((st = llmlab_cuda_host_alloc((void **)&g->step_h, bytes, err))) return st;
    memset(g->step_h, 0, bytes);
    g->table_stride = s;
    return LLMLAB_OK;
}

llmlab_status llmlab_cuda_fwd_bind(llmlab_ctx *c, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const llmlab_kv *kv = c->kv;
    size_t m = (size_t)kv->o.n_blocks * (size_t)kv->n_lanes * (size_t)kv->o.block_size;
    llmlab_status st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->meta_pos, m * sizeof(int32_t), err);
    if (!st) st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->meta_valid, m, err);
    if (!st) st = llmlab_cuda_mem_set(g->qc, g->meta_pos, 0, m * sizeof(int32_t), err);
    if (!st) st = llmlab_cuda_mem_set(g->qc, g->meta_valid, 0, m, err);
    if (!st && !(g->dirty = malloc((size_t)kv->o.n_blocks * sizeof *g->dirty)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory");
    if (!st) st = reserve_step(g, 64, err);
    if (!st) st = grow_ops(g, err);
    g->mirror_of = kv;
    /* c->out reads the page-locked buffers the device copies into */
    free(c->out.logits), free(c->out.hidden), free(c->out.tap);
    c->out.logits = g->logits_h, c->out.hidden = g->hidden_h, c->out.tap = g->tap_h;
    return st;
}

void llmlab_cuda_fwd_free(struct llmlab_cuda_fwd *g) {
    if (!g) return;
    if (g->qc) llmlab_cuda_qctx_sync(g->qc, NULL);
    graphs_drop(g);
    float *dev[] = {g->x, g->h, g->tmp, g->q, g->att, g->k, g->v, g->gate, g->up, g->hidden, g->tap, g->logits, g->mass_d};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) llmlab_cuda_mem_free(dev[i]);
    llmlab_cuda_mem_free(g->step_d);
    llmlab_cuda_mem_free(g->ops_d);
    llmlab_cuda_mem_free(g->meta_pos);
    llmlab_cuda_mem_free(g->meta_valid);
    llmlab_cuda_mem_free(g->attn_work);
    llmlab_cuda_mem_free(g->layout_d);
    free(g->layout_h);
    llmlab_cuda_host_free(g->step_h);
    llmlab_cuda_host_free(g->logits_h);
    llmlab_cuda_host_free(g->hidden_h);
    llmlab_cuda_host_free(g->tap_h);
    llmlab_cuda_host_free(g->mass_h);
    free(g->ops_h);
    free(g->dirty);
    llmlab_cuda_qctx_free(g->qc);
    free(g);
}

/* ---- one step --------------------------------------------------------------------------------- */

/* Slot metadata of the blocks changed since the last forward, to the mirror.
 * A new cache (set_kv_format) starts from zeros, as the host's does. */
static llmlab_status sync_meta(struct llmlab_cuda_fwd *g, llmlab_kv *kv, llmlab_err *err) {
    size_t per = (size_t)kv->n_lanes * (size_t)kv->o.block_size;
    llmlab_status st;
    if (g->mirror_of != kv) {
        size_t m = (size_t)kv->o.n_blocks * per;
        if ((st = llmlab_cuda_mem_set(g->qc, g->meta_pos, 0, m * sizeof(int32_t), err))) return st;
        if ((st = llmlab_cuda_mem_set(g->qc, g->meta_valid, 0, m, err))) return st;
        g->mirror_of = kv;
    }
    int n = llmlab_kv_meta_clean(kv, g->dirty);
    for (int i = 0; i < n;) { /* runs of consecutive blocks, one copy each */
        int j = i + 1;
        while (j < n && g->dirty[j] == g->dirty[j - 1] + 1) j++;
        size_t at = (size_t)g->dirty[i] * per, len = (size_t)(j - i) * per;
        if ((st = llmlab_cuda_mem_h2d(g->qc, g->meta_pos + at, kv->slot_pos + at, len * sizeof(int32_t), err))) return st;
        if ((st = llmlab_cuda_mem_h2d(g->qc, g->meta_valid + at, kv->slot_valid + at, len, err))) return st;
        i = j;
    }
    return LLMLAB_OK;
}

/* Each sequence's tokens are consecutive in the batch and there is more than one
 * of them somewhere: the prefill kernel's tiles; returns the tile count (0 =
 * decode kernel for all). */
static int plan_tiles(const llmlab_batch *b, int32_t *tiles) {
    int n = 0, multi = 0;
    for (int i = 0; i < b->n;) {
        int j = i + 1;
        while (j < b->n && b->seq[j] == b->seq[i] && j - i < TILE_ROWS) j++;
        multi |= j - i > 1;
        tiles[2 * n] = i, tiles[2 * n + 1] = j - i, n++;
        i = j;
    }
    return multi ? n : 0;
}

/* Fills the step buffer's host twin; returns the widest table used. */
static int pack_step(llmlab_ctx *c, const llmlab_batch *b, int *n_tiles, int *max_keys) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const step_layout *L = &g->lay;
    int32_t *h = g->step_h;
    llmlab_kv *kv = c->kv;
    int bs = kv->o.block_size, n_seqs = 0, widest = 0;
    int32_t *row_of = c->seq_count; /* reused: table row of each sequence in this step, -1 none */
    for (int s = 0; s < kv->o.max_seqs; s++) row_of[s] = -1;
    *max_keys = 1;
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], slot = c->out.slot[i];
        const llmlab_kv_seq *q = &kv->seqs[s];
        if (row_of[s] < 0) {
            row_of[s] = n_seqs++;
            int32_t *t = h + L->tables + (size_t)row_of[s] * (size_t)g->table_stride;
            memcpy(t, q->blocks, (size_t)q->n_blocks * sizeof(int32_t));
            if (q->n_blocks > widest) widest = q->n_blocks;
        }
        h[L->tokens + i] = b->token[i];
        h[L->pos + i] = b->pos[i];
        h[L->blk + i] = q->blocks[slot / bs];
        h[L->row + i] = slot % bs;
        h[L->table + i] = row_of[s];
        h[L->prior + i] = c->n_prior[i];
        h[L->extra_off + i] = c->vis_off[i];
        h[L->n_rand + i] = c->n_rand[i];
        memcpy(h + L->rand + (size_t)i * LLMLAB_CUDA_MAX_RANDOM_BLOCKS, c->rand + (size_t)i * LLMLAB_MAX_RANDOM_BLOCKS,
               LLMLAB_CUDA_MAX_RANDOM_BLOCKS * sizeof(int32_t));
        ((uint8_t *)(h + L->meta))[i] = 1; /* always consult the mirror: holes cost 1 byte per key */
        int keys = c->n_prior[i] + c->vis_off[i + 1] - c->vis_off[i];
        if (keys > *max_keys) *max_keys = keys;
    }
    h[L->extra_off + b->n] = c->vis_off[b->n];
    memcpy(h + L->extra, c->vis_slots, (size_t)c->vis_off[b->n] * sizeof(int32_t));
    memcpy(h + L->out_rows, c->out.out_index, (size_t)c->out.n_out * sizeof(int32_t));
    *n_tiles = g->deterministic ? 0 : plan_tiles(b, h + L->tiles);
    return widest;
}

static llmlab_cuda_attn_args attn_args(llmlab_ctx *c, const llmlab_batch *b, int n_splits, int n_tiles) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const llmlab_kv *kv = c->kv;
    const llmlab_config *cfg = &c->m->cfg;
    const step_layout *L = &g->lay;
    int32_t *d = g->step_d;
    llmlab_cuda_attn_args a = {0};
    a.pool = kv->pool;
    a.block_bytes = kv->block_bytes;
    a.layer_bytes = kv->region_bytes[0] + kv->region_bytes[1];
    a.v_offset = kv->region_bytes[0];
    a.rec_bytes = kv->rec_bytes[0];
    a.kv_dtype = kv->fmt.dtype;
    a.block_size = kv->o.block_size;
    a.n_kv_heads = cfg->n_kv_heads;
    a.head_dim = cfg->head_dim;
    a.n_heads = cfg->n_heads;
    a.slot_pos = g->meta_pos;
    a.slot_valid = g->meta_valid;
    a.n_lanes = kv->n_lanes;
    a.tables = d + L->tables;
    a.table_stride = g->table_stride;
    a.n_tokens = b->n;
    a.tok_table = d + L->table;
    a.prior = d + L->prior;
    a.q_pos = d + L->pos;
    a.meta = (const uint8_t *)(d + L->meta);
    a.extra_off = d + L->extra_off;
    a.extra_slots = d + L->extra;
    if (c->pat.block > 0) {
        a.pat_block = c->pat.block;
        a.pat_global = c->pat.global_blocks;
        a.pat_window = c->pat.window_blocks;
        a.layout_blocks = 0; /* the layout travels in its own array: see pattern_layout() */
        a.rand = d + L->rand;
        a.n_rand = d + L->n_rand;
        a.inv_freq = c->pat.rope_shifted ? g->w->inv_freq : NULL;
    }
    a.q = g->q;
    a.out = g->att;
    a.scale = 1.0f / sqrtf((float)cfg->head_dim);
    a.chunk = ATTN_CHUNK;
    a.n_splits = n_splits;
    a.deterministic = g->deterministic;
    a.tiles = n_tiles ? d + L->tiles : NULL;
    a.n_tiles = n_tiles;
    return a;
}

static llmlab_status matmul(llmlab_ctx *c, float *y, const float *x, int matrix, int M, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    return llmlab_cuda_matmul(g->qc, g->w->mat[matrix], y, x, M, LLMLAB_CUDA_PATH_AUTO, err);
}

/* The structured pattern's block layout, on the device while it is set. */
static llmlab_status pattern_layout(llmlab_ctx *c, llmlab_cuda_attn_args *a, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    if (!c->pat.layout || c->pat.layout_blocks <= 0) return LLMLAB_OK;
    size_t n = (size_t)c->pat.layout_blocks * (size_t)c->pat.layout_blocks;
    if (g->layout_n != n || memcmp(g->layout_h, c->pat.layout, n)) {
        llmlab_status st = LLMLAB_OK;
        if (g->layout_n != n) {
            llmlab_cuda_mem_free(g->layout_d);
            free(g->layout_h);
            g->layout_d = NULL, g->layout_h = NULL, g->layout_n = 0;
            if (!(g->layout_h = malloc(n)))
                return llmlab_err_set(err, LLMLAB_ENOMEM, "backend cuda: out of host memory for the pattern layout");
            st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->layout_d, n, err);
        }
        if (!st) st = llmlab_cuda_mem_h2d(g->qc, g->layout_d, c->pat.layout, n, err);
        if (st) return st;
        memcpy(g->layout_h, c->pat.layout, n);
        g->layout_n = n;
    }
    a->layout = g->layout_d;
    a->layout_blocks = c->pat.layout_blocks;
    return LLMLAB_OK;
}

/* Mass mode: the layer's per-slot probabilities back to the host, added to the
 * cache's accumulators in batch order (ACC/OBS rows) or kept per row (ROW),
 * as forward.c's attention_unit_task does. */
static llmlab_status take_mass(llmlab_ctx *c, const llmlab_batch *b, int layer, int stride, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    int nkv = c->m->cfg.n_kv_heads;
    size_t n = (size_t)b->n * (size_t)nkv * (size_t)stride;
    llmlab_status st = llmlab_cuda_d2h_async(g->qc, g->mass_h, g->mass_d, n * sizeof(float), err);
    if (!st) st = llmlab_cuda_qctx_sync(g->qc, err);
    if (st) return st;
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], len = c->kv->seqs[s].len;
        for (int h = 0; h < nkv; h++) {
            int lane = layer * nkv + h;
            const float *val = g->mass_h + ((size_t)i * (size_t)nkv + (size_t)h) * (size_t)stride;
            if (b->mass_mode[i] != LLMLAB_MASS_ROW)
                llmlab_kv_add_mass(c->kv, s, lane, val, len, b->mass_mode[i] == LLMLAB_MASS_OBS);
            else
                memcpy(c->row_mass + c->row_off[i] + (size_t)lane * (size_t)c->row_len[i], val,
                       (size_t)c->row_len[i] * sizeof(float));
        }
    }
    return LLMLAB_OK;
}

/* The CPU forward simulates a score-eviction rule row by row along a chain of
 * ROW tokens (forward.c unit_simulate); the device kernels do not. */
static llmlab_status check_mass_support(const llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], rows = 0;
        if (c->kv->seqs[s].rule.capacity <= 0 || !c->seq_chain[s]) continue;
        for (int j = 0; j < b->n; j++) rows += b->seq[j] == s && b->mass_mode[j] == LLMLAB_MASS_ROW;
        if (rows > 1)
            return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                                  "backend cuda: sequence %d verifies a chain of %d drafts under a score-eviction "
                                  "rule (H2O-style); the CUDA forward does not simulate evictions inside a chain: "
                                  "use backend cpu for this combination",
                                  s, rows);
    }
    return LLMLAB_OK;
}

typedef struct {
    const llmlab_batch *b;
    llmlab_cuda_attn_args a;
    int n_out, want_logits, mass_stride;
} step_plan;

static llmlab_status run_layer(llmlab_ctx *c, const step_plan *p, int l, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const struct llmlab_cuda_weights *w = g->w;
    const llmlab_config *cfg = &c->m->cfg;
    int n = p->b->n, base = l * LLMLAB_MATS_PER_LAYER, d = cfg->dim;
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim, kd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    const int32_t *dstep = g->step_d;
    const float *bias = w->bias ? w->bias + (size_t)l * (qd + 2 * kd) : NULL;
    llmlab_cuda_attn_args a = p->a;
    a.layer = l;
    llmlab_status st;
    if ((st = llmlab_cuda_rmsnorm(g->stream, g->h, g->x, w->norm + (size_t)(2 * l) * d, NULL, n, d, cfg->rms_eps, err)) ||
        (st = matmul(c, g->q, g->h, base + LLMLAB_MAT_Q, n, err)) ||
        (st = matmul(c, g->k, g->h, base + LLMLAB_MAT_K, n, err)) ||
        (st = matmul(c, g->v, g->h, base + LLMLAB_MAT_V, n, err)) ||
        (st = llmlab_cuda_bias_rope(g->stream, g->q, g->k, g->v, bias, bias ? bias + qd : NULL,
                                    bias ? bias + qd + kd : NULL, dstep + g->lay.pos, w->inv_freq, n, cfg->n_heads,
                                    cfg->n_kv_heads, cfg->head_dim, !c->pat.rope_shifted, err)) ||
        (st = llmlab_cuda_kv_store(g->stream, &a, g->k, g->v, dstep + g->lay.blk, dstep + g->lay.row, n, err)) ||
        (st = llmlab_cuda_attention(g->stream, &a, g->attn_work, err)))
        return st;
    if (a.mass && (st = take_mass(c, p->b, l, p->mass_stride, err))) return st;
    size_t nd = (size_t)n * (size_t)d;
    if ((st = matmul(c, g->tmp, g->att, base + LLMLAB_MAT_O, n, err)) ||
        (st = llmlab_cuda_add(g->stream, g->x, g->tmp, nd, err)) ||
        (st = llmlab_cuda_rmsnorm(g->stream, g->h, g->x, w->norm + (size_t)(2 * l + 1) * d, NULL, n, d, cfg->rms_eps,
                                  err)) ||
        (st = matmul(c, g->gate, g->h, base + LLMLAB_MAT_GATE, n, err)) ||
        (st = matmul(c, g->up, g->h, base + LLMLAB_MAT_UP, n, err)) ||
        (st = llmlab_cuda_swiglu(g->stream, g->gate, g->up, (size_t)n * (size_t)cfg->ffn_dim, err)) ||
        (st = matmul(c, g->tmp, g->gate, base + LLMLAB_MAT_DOWN, n, err)) ||
        (st = llmlab_cuda_add(g->stream, g->x, g->tmp, nd, err)))
        return st;
    return LLMLAB_OK;
}

/* Everything after the step upload: embedding, layers, output rows and their
 * copies to the host (the part a CUDA graph replays). */
static llmlab_status run_step(llmlab_ctx *c, const step_plan *p, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const llmlab_config *cfg = &c->m->cfg;
    const llmlab_batch *b = p->b;
    size_t d = (size_t)cfg->dim;
    const int32_t *dstep = g->step_d;
    llmlab_status st = llmlab_cuda_embed(g->stream, g->x, g->w->embed, g->w->embed_dtype, dstep + g->lay.tokens, b->n,
                                         cfg->dim, err);
    for (int l = 0; !st && l < cfg->n_layers; l++) {
        if (!c->skip || !c->skip[l]) st = run_layer(c, p, l, err); /* a skipped layer passes x through */
        for (int r = 0; !st && l == b->tap_layer && r < p->n_out; r++)
            st = llmlab_cuda_mem_d2d(g->qc, g->tap + (size_t)r * d, g->x + (size_t)c->out.out_index[r] * d,
                                     d * sizeof(float), err);
    }
    if (st || p->n_out == 0) return st;
    if ((st = llmlab_cuda_rmsnorm(g->stream, g->hidden, g->x, g->w->norm + (size_t)(2 * cfg->n_layers) * d,
                                  dstep + g->lay.out_rows, p->n_out, cfg->dim, cfg->rms_eps, err)))
        return st;
    if (p->want_logits &&
        ((st = matmul(c, g->logits, g->hidden, cfg->n_layers * LLMLAB_MATS_PER_LAYER, p->n_out, err)) ||
         (st = llmlab_cuda_d2h_async(g->qc, g->logits_h, g->logits,
                                     (size_t)p->n_out * (size_t)cfg->vocab_size * sizeof(float), err))))
        return st;
    if ((st = llmlab_cuda_d2h_async(g->qc, g->hidden_h, g->hidden, (size_t)p->n_out * d * sizeof(float), err)))
        return st;
    if (b->tap_layer >= 0)
        st = llmlab_cuda_d2h_async(g->qc, g->tap_h, g->tap, (size_t)p->n_out * d * sizeof(float), err);
    return st;
}

/* A decode step (one token per sequence, no attention mass): its graph slot. */
static graph_slot *graph_for(struct llmlab_cuda_fwd *g, const step_plan *p) {
    graph_slot key = {p->b->n, p->n_out, p->want_logits, p->b->tap_layer, p->a.n_splits, g->table_stride, 0, NULL};
    graph_slot *free_slot = NULL;
    for (int i = 0; i < MAX_GRAPHS; i++) {
        graph_slot *s = &g->graphs[i];
        if (s->seen && s->n == key.n && s->n_out == key.n_out && s->logits == key.logits && s->tap == key.tap &&
            s->n_splits == key.n_splits && s->stride == key.stride)
            return s;
        if (!s->seen && !free_slot) free_slot = s;
    }
    if (!free_slot) { /* full: start over (shapes are few in practice) */
        graphs_drop(g);
        free_slot = &g->graphs[0];
    }
    *free_slot = key;
    return free_slot;
}

static int is_decode_step(const llmlab_ctx *c, const llmlab_batch *b) {
    for (int i = 1; i < b->n; i++)
        for (int j = 0; j < i; j++)
            if (b->seq[i] == b->seq[j]) return 0;
    return !c->mass_on && b->tap_layer < 0; /* tap copies name rows: not captured */
}

/* Runs the step through its graph: eager on a shape's first run (workspaces
 * grow then), captured on the second, replayed after. */
static llmlab_status run_graphed(llmlab_ctx *c, const step_plan *p, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    graph_slot *s = graph_for(g, p);
    if (s->g) return llmlab_cuda_graph_launch(g->qc, s->g, err);
    if (s->seen++ == 0) return run_step(c, p, err);
    llmlab_status st = llmlab_cuda_capture_begin(g->qc, err);
    if (st) return st;
    st = run_step(c, p, err);
    llmlab_cuda_graph *graph = NULL;
    llmlab_err end_err = {0};
    llmlab_status st2 = llmlab_cuda_capture_end(g->qc, &graph, st ? &end_err : err);
    if (st || st2) {
        llmlab_cuda_graph_free(graph);
        return st ? st : st2;
    }
    s->g = graph;
    return llmlab_cuda_graph_launch(g->qc, s->g, err);
}

/* What changes the captured work besides the key: drop the graphs when it does. */
static void check_signature(llmlab_ctx *c) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const llmlab_config *cfg = &c->m->cfg;
    uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
    MIX((uintptr_t)c->kv->pool);
    MIX(c->pat.block), MIX(c->pat.global_blocks), MIX(c->pat.window_blocks), MIX(c->pat.rope_shifted);
    MIX((uintptr_t)g->layout_d);
    for (int l = 0; c->skip && l < cfg->n_layers; l++) MIX(c->skip[l] * (l + 1));
#undef MIX
    if (h != g->signature) {
        graphs_drop(g);
        g->signature = h;
    }
}

static llmlab_status reserve_buffers(llmlab_ctx *c, const llmlab_batch *b, int n_splits, int mass_stride,
                                     llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    const llmlab_config *cfg = &c->m->cfg;
    size_t need = llmlab_cuda_attn_work_bytes(c->max_batch, cfg->n_heads, cfg->head_dim, n_splits);
    llmlab_status st;
    if (need > g->attn_work_bytes) {
        if ((st = llmlab_cuda_qctx_sync(g->qc, err))) return st;
        graphs_drop(g); /* they captured the old buffer */
        llmlab_cuda_mem_free(g->attn_work);
        g->attn_work = NULL, g->attn_work_bytes = 0;
        if ((st = llmlab_cuda_mem_alloc(g->qc, &g->attn_work, need, err))) return st;
        g->attn_work_bytes = need;
    }
    size_t mass = (size_t)b->n * (size_t)cfg->n_kv_heads * (size_t)mass_stride;
    if (c->mass_on && mass > g->mass_cap) {
        if ((st = llmlab_cuda_qctx_sync(g->qc, err))) return st;
        llmlab_cuda_mem_free(g->mass_d);
        llmlab_cuda_host_free(g->mass_h);
        g->mass_d = NULL, g->mass_h = NULL, g->mass_cap = 0;
        if ((st = llmlab_cuda_mem_alloc(g->qc, (void **)&g->mass_d, mass * sizeof(float), err)) ||
            (st = llmlab_cuda_host_alloc((void **)&g->mass_h, mass * sizeof(float), err)))
            return st;
        g->mass_cap = mass;
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_cuda_forward(llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    struct llmlab_cuda_fwd *g = c->gpu;
    if (c->linear)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "backend cuda: quant plugins bring CPU kernels; the CUDA forward runs the model's own "
                              "f32/f16/bf16 weights (use quant=none, or backend cpu)");
    if (g->kv_error[0]) return llmlab_err_set(err, LLMLAB_EIO, "backend cuda: a KV cache copy failed: %s", g->kv_error);
    llmlab_status st = flush_copies(g, err);
    if (!st && c->mass_on) st = check_mass_support(c, b, err);
    if (!st) st = sync_meta(g, c->kv, err);
    if (st) return st;
    int widest = 0;
    for (int i = 0; i < b->n; i++)
        if (c->kv->seqs[b->seq[i]].n_blocks > widest) widest = c->kv->seqs[b->seq[i]].n_blocks;
    if ((st = reserve_step(g, widest, err))) return st;
    step_plan p = {.b = b, .n_out = c->out.n_out};
    for (int r = 0; r < p.n_out; r++) p.want_logits |= b->flags[c->out.out_index[r]] & LLMLAB_TOK_LOGITS;
    int n_tiles, max_keys;
    pack_step(c, b, &n_tiles, &max_keys);
    int n_splits = pow2_at_least((max_keys + ATTN_CHUNK - 1) / ATTN_CHUNK);
    for (int i = 0; i < b->n; i++)
        if (c->kv->seqs[b->seq[i]].len > p.mass_stride) p.mass_stride = c->kv->seqs[b->seq[i]].len;
    if ((st = reserve_buffers(c, b, n_splits, p.mass_stride, err))) return st;
    p.a = attn_args(c, b, n_splits, n_tiles);
    if (c->mass_on) p.a.mass = g->mass_d, p.a.mass_stride = p.mass_stride;
    if ((st = pattern_layout(c, &p.a, err))) return st;
    check_signature(c);
    size_t bytes = (g->lay.tables + (size_t)b->n * (size_t)g->table_stride) * sizeof(int32_t);
    if ((st = llmlab_cuda_h2d_async(g->qc, g->step_d, g->step_h, bytes, err))) return st;
    st = is_decode_step(c, b) ? run_graphed(c, &p, err) : run_step(c, &p, err);
    if (!st) st = llmlab_cuda_qctx_sync(g->qc, err);
    return st;
}

#endif
