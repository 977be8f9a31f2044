/* gguf_write_model.c - a loaded Llama-family model as a GGUF file (gguf_write.h).
 *
 * What llama.cpp's converter (convert_hf_to_gguf.py) writes for a Llama or
 * Qwen2 checkpoint, so the file loads in llama.cpp and in llmlab alike:
 *   - general.architecture "llama" (Llama, Mistral) or "qwen2", and the
 *     "{arch}.*" hyper-parameters llama.cpp requires;
 *   - tensor names token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v,
 *     attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output
 *     (absent when tied), with ggml's reversed dims;
 *   - for "llama", Q and K rows (and biases) permuted per head into interleaved
 *     pairs, the inverse of what model_gguf.c undoes;
 *   - Llama-3 RoPE scaling as rope_freqs.weight (one factor per frequency);
 *   - matrices in the chosen type, vectors in f32.
 * Quantized rows go through kernels/cpu/quant.h's packers (ggml's bit layouts).
 * A matrix whose row length is not a multiple of the type's block falls back
 * (q4_K -> q4_0 -> f16), as llama-quantize falls back for such tensors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "gguf.h"
#include "gguf_write.h"
#include "model.h"
#include "../kernels/cpu/quant.h"

#define CHUNK_FLOATS (1u << 22) /* rows converted per step: 16 MiB of f32 */

int llmlab_gguf_parse_type(const char *s, llmlab_dtype *out) {
    static const struct {
        const char *name;
        llmlab_dtype t;
    } names[] = {{"f32", LLMLAB_DTYPE_F32},   {"f16", LLMLAB_DTYPE_F16},   {"bf16", LLMLAB_DTYPE_BF16},
                 {"q8_0", LLMLAB_DTYPE_Q8_0}, {"q4_0", LLMLAB_DTYPE_Q4_0}, {"q4_k", LLMLAB_DTYPE_Q4_K},
                 {"q4_K", LLMLAB_DTYPE_Q4_K}, {"Q8_0", LLMLAB_DTYPE_Q8_0}, {"Q4_0", LLMLAB_DTYPE_Q4_0},
                 {"Q4_K", LLMLAB_DTYPE_Q4_K}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i].name)) {
            *out = names[i].t;
            return 0;
        }
    return -1;
}

static uint32_t ggml_type_of(llmlab_dtype t) {
    switch (t) {
    case LLMLAB_DTYPE_F32: return LLMLAB_GGML_F32;
    case LLMLAB_DTYPE_F16: return LLMLAB_GGML_F16;
    case LLMLAB_DTYPE_BF16: return LLMLAB_GGML_BF16;
    case LLMLAB_DTYPE_Q8_0: return LLMLAB_GGML_Q8_0;
    case LLMLAB_DTYPE_Q4_0: return LLMLAB_GGML_Q4_0;
    case LLMLAB_DTYPE_Q4_K: return LLMLAB_GGML_Q4_K;
    }
    return LLMLAB_GGML_F32;
}

/* llama.cpp's llama_ftype for a file whose matrices are all of type t. */
static uint32_t file_type(llmlab_dtype t) {
    switch (t) {
    case LLMLAB_DTYPE_F32: return 0;  /* ALL_F32 */
    case LLMLAB_DTYPE_F16: return 1;  /* MOSTLY_F16 */
    case LLMLAB_DTYPE_Q4_0: return 2; /* MOSTLY_Q4_0 */
    case LLMLAB_DTYPE_Q8_0: return 7; /* MOSTLY_Q8_0 */
    case LLMLAB_DTYPE_Q4_K: return 14; /* MOSTLY_Q4_K_S */
    case LLMLAB_DTYPE_BF16: return 32; /* MOSTLY_BF16 */
    }
    return 0;
}

/* The type a [*][cols] matrix gets when `want` is asked for. */
static llmlab_dtype fit_type(llmlab_dtype want, int64_t cols) {
    if (want == LLMLAB_DTYPE_Q4_K && cols % 256) want = LLMLAB_DTYPE_Q4_0;
    if ((want == LLMLAB_DTYPE_Q8_0 || want == LLMLAB_DTYPE_Q4_0) && cols % 32) want = LLMLAB_DTYPE_F16;
    return want;
}

static llmlab_qformat qformat_of(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_Q8_0 ? LLMLAB_QF_Q8_0 : t == LLMLAB_DTYPE_Q4_0 ? LLMLAB_QF_Q4_0 : LLMLAB_QF_Q4_K;
}

/* ---- the tensor list -------------------------------------------------------------------- */

typedef struct {
    char name[64];
    const llmlab_mat *mat; /* a matrix [rows][cols], or NULL for a vector */
    const float *vec;      /* [rows] f32 */
    int64_t rows, cols;    /* cols 0 for vectors */
    int perm_heads;        /* > 0: rows permuted per head for interleaved RoPE */
    llmlab_dtype type;     /* stored type */
} item;

typedef struct {
    const llmlab_model *m;
    const llmlab_gguf_write_opts *o;
    llmlab_gguf_writer *w;
    const char *path;
    item *items;
    int n;
    float *rope_factors;  /* [head_dim/2] Llama-3 scaling, or NULL */
    uint64_t done, total; /* data bytes, for progress */
    llmlab_err *err;
} gexp;

static void add_mat(gexp *e, const char *name, const llmlab_mat *w, int perm) {
    item *it = &e->items[e->n++];
    *it = (item){.mat = w, .rows = w->rows, .cols = w->cols, .perm_heads = perm, .type = fit_type(e->o->type, w->cols)};
    snprintf(it->name, sizeof it->name, "%s", name);
}

static void add_vec(gexp *e, const char *name, const float *v, int64_t n, int perm) {
    item *it = &e->items[e->n++];
    *it = (item){.vec = v, .rows = n, .perm_heads = perm, .type = LLMLAB_DTYPE_F32};
    snprintf(it->name, sizeof it->name, "%s", name);
}

/* Llama-3 factors as the converter computes them: per frequency f (float32, as
 * torch), wavelength 2 pi / f; 1 below the high-frequency wavelength, `factor`
 * above the low one, 1 / ((1 - s) / factor + s) between (s the smoothing). */
static void llama3_factors(const llmlab_config *c, float *out) {
    int half = c->head_dim / 2;
    double lo_wl = c->rope_orig_max_pos / (double)c->rope_low_freq_factor;
    double hi_wl = c->rope_orig_max_pos / (double)c->rope_high_freq_factor;
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        double wl = 2.0 * M_PI / (double)f;
        double r = wl < hi_wl ? 1.0 : wl > lo_wl ? (double)c->rope_factor : 0.0;
        if (r == 0.0) {
            double s = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                       ((double)c->rope_high_freq_factor - c->rope_low_freq_factor);
            r = 1.0 / ((1.0 - s) / c->rope_factor + s);
        }
        out[i] = (float)r;
    }
}

static llmlab_status plan(gexp *e) {
    const llmlab_model *m = e->m;
    const llmlab_config *c = &m->cfg;
    int llama = c->arch != LLMLAB_ARCH_QWEN2;
    e->items = calloc((size_t)c->n_layers * 12 + 4, sizeof *e->items);
    if (!e->items) return llmlab_err_set(e->err, LLMLAB_ENOMEM, "out of memory");
    add_mat(e, "token_embd.weight", &m->embed, 0);
    char n[64];
    for (int i = 0; i < c->n_layers; i++) {
        const llmlab_layer *L = &m->layers[i];
        int ph = llama ? c->n_heads : 0, pk = llama ? c->n_kv_heads : 0;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        add_vec(e, NAME("attn_norm.weight"), L->attn_norm, c->dim, 0);
        add_mat(e, NAME("attn_q.weight"), &L->wq, ph);
        add_mat(e, NAME("attn_k.weight"), &L->wk, pk);
        add_mat(e, NAME("attn_v.weight"), &L->wv, 0);
        if (c->qkv_bias) {
            add_vec(e, NAME("attn_q.bias"), L->bq, L->wq.rows, ph);
            add_vec(e, NAME("attn_k.bias"), L->bk, L->wk.rows, pk);
            add_vec(e, NAME("attn_v.bias"), L->bv, L->wv.rows, 0);
        }
        add_mat(e, NAME("attn_output.weight"), &L->wo, 0);
        add_vec(e, NAME("ffn_norm.weight"), L->ffn_norm, c->dim, 0);
        add_mat(e, NAME("ffn_gate.weight"), &L->w_gate, 0);
        add_mat(e, NAME("ffn_up.weight"), &L->w_up, 0);
        add_mat(e, NAME("ffn_down.weight"), &L->w_down, 0);
#undef NAME
    }
    add_vec(e, "output_norm.weight", m->final_norm, c->dim, 0);
    if (!c->tie_embeddings) add_mat(e, "output.weight", &m->lm_head, 0);
    if (c->rope_kind == LLMLAB_ROPE_LLAMA3) {
        e->rope_factors = malloc((size_t)(c->head_dim / 2) * sizeof *e->rope_factors);
        if (!e->rope_factors) return llmlab_err_set(e->err, LLMLAB_ENOMEM, "out of memory");
        llama3_factors(c, e->rope_factors);
        add_vec(e, "rope_freqs.weight", e->rope_factors, c->head_dim / 2, 0);
    }
    return LLMLAB_OK;
}

/* ---- metadata ------------------------------------------------------------------------------ */

/* The model directory's (or file's) last path component, without ".gguf". */
static void default_name(const char *path, char *out, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t len = n - b;
    if (len > 5 && !strncmp(path + n - 5, ".gguf", 5)) len -= 5;
    snprintf(out, cap, "%.*s", (int)len, path + b);
}

static void write_meta(gexp *e) {
    llmlab_gguf_writer *w = e->w;
    const llmlab_config *c = &e->m->cfg;
    const char *a = c->arch == LLMLAB_ARCH_QWEN2 ? "qwen2" : "llama";
    char name[256], k[128];
    if (e->o->name) snprintf(name, sizeof name, "%s", e->o->name);
    else default_name(e->m->path, name, sizeof name);
    llmlab_gguf_kv_str(w, "general.architecture", a);
    llmlab_gguf_kv_str(w, "general.type", "model");
    llmlab_gguf_kv_str(w, "general.name", name);
    llmlab_gguf_kv_u32(w, "general.file_type", file_type(e->o->type));
    if (!llmlab_dtype_size(e->o->type)) llmlab_gguf_kv_u32(w, "general.quantization_version", 2);
#define K(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    llmlab_gguf_kv_u32(w, K("vocab_size"), (uint32_t)c->vocab_size);
    llmlab_gguf_kv_u32(w, K("context_length"), (uint32_t)c->max_pos);
    llmlab_gguf_kv_u32(w, K("embedding_length"), (uint32_t)c->dim);
    llmlab_gguf_kv_u32(w, K("block_count"), (uint32_t)c->n_layers);
    llmlab_gguf_kv_u32(w, K("feed_forward_length"), (uint32_t)c->ffn_dim);
    llmlab_gguf_kv_u32(w, K("attention.head_count"), (uint32_t)c->n_heads);
    llmlab_gguf_kv_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    llmlab_gguf_kv_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
    llmlab_gguf_kv_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
    llmlab_gguf_kv_f32(w, K("rope.freq_base"), c->rope_theta);
    llmlab_gguf_kv_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim);
    llmlab_gguf_kv_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps);
    if (c->sliding_window > 0) llmlab_gguf_kv_u32(w, K("attention.sliding_window"), (uint32_t)c->sliding_window);
#undef K
}

/* ---- data ------------------------------------------------------------------------------------ */

/* HF row of GGUF row r when rows are permuted per head (inverse of model_gguf.c). */
static int64_t src_row(int64_t r, int64_t rows, int heads) {
    if (heads <= 0) return r;
    int64_t hd = rows / heads, h = r / hd, rr = r % hd;
    return h * hd + (rr % 2) * (hd / 2) + rr / 2;
}

static uint64_t item_bytes(const item *it) {
    return (uint64_t)(it->cols ? it->rows : 1) * llmlab_dtype_row_bytes(it->type, it->cols ? it->cols : it->rows);
}

static void progress(gexp *e, uint64_t n) {
    e->done += n;
    if (e->o->progress) e->o->progress(e->o->progress_ud, e->done, e->total);
}

static llmlab_status emit_f32(gexp *e, const float *x, size_t n, llmlab_dtype t, void *scratch) {
    const void *p = x;
    size_t nb = n * 4;
    if (t == LLMLAB_DTYPE_F16 || t == LLMLAB_DTYPE_BF16) {
        uint16_t *h = scratch;
        for (size_t i = 0; i < n; i++) h[i] = t == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(x[i]) : llmlab_f32_to_bf16(x[i]);
        p = h;
        nb = n * 2;
    }
    return llmlab_gguf_writer_data(e->w, p, nb, e->err);
}

static llmlab_status write_vec(gexp *e, const item *it) {
    float *v = malloc((size_t)it->rows * sizeof *v);
    if (!v) return llmlab_err_set(e->err, LLMLAB_ENOMEM, "out of memory for '%s'", it->name);
    for (int64_t r = 0; r < it->rows; r++) v[r] = it->vec[src_row(r, it->rows, it->perm_heads)];
    llmlab_status s = llmlab_gguf_writer_data(e->w, v, (size_t)it->rows * sizeof *v, e->err);
    free(v);
    if (!s) progress(e, (uint64_t)it->rows * 4);
    return s;
}

/* Rows [r0, r0 + n) of the (permuted) source as f32 into out[n][cols]. */
static void src_rows(const item *it, const llmlab_qmat *wrapped, int64_t r0, int64_t n, float *out) {
    const llmlab_mat *W = it->mat;
    size_t rb = llmlab_dtype_row_bytes(W->dtype, W->cols);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = src_row(r0 + i, it->rows, it->perm_heads);
        float *o = out + (size_t)i * (size_t)W->cols;
        if (wrapped) llmlab_qmat_dequant_rows(wrapped, r, 1, o);
        else llmlab_to_f32(o, (const unsigned char *)W->data + (size_t)r * rb, W->dtype, (size_t)W->cols);
    }
}

static llmlab_status write_mat(gexp *e, const item *it) {
    const llmlab_mat *W = it->mat;
    llmlab_qmat wq = {0};
    llmlab_status s = LLMLAB_OK;
    if (!llmlab_dtype_size(W->dtype) && (s = llmlab_qmat_wrap(&wq, W->dtype, W->data, W->rows, W->cols, e->err)))
        return s;
    int64_t chunk = (int64_t)(CHUNK_FLOATS / (uint64_t)W->cols);
    if (chunk < 1) chunk = 1;
    if (chunk > W->rows) chunk = W->rows;
    float *buf = malloc((size_t)chunk * (size_t)W->cols * sizeof *buf);
    uint16_t *half = malloc((size_t)chunk * (size_t)W->cols * sizeof *half);
    if (!buf || !half) s = llmlab_err_set(e->err, LLMLAB_ENOMEM, "out of memory for '%s'", it->name);
    for (int64_t r0 = 0; r0 < W->rows && !s; r0 += chunk) {
        int64_t n = W->rows - r0 < chunk ? W->rows - r0 : chunk;
        src_rows(it, llmlab_dtype_size(W->dtype) ? NULL : &wq, r0, n, buf);
        size_t nb;
        if (llmlab_dtype_size(it->type)) {
            s = emit_f32(e, buf, (size_t)n * (size_t)W->cols, it->type, half);
            nb = (size_t)n * llmlab_dtype_row_bytes(it->type, W->cols);
        } else {
            llmlab_qmat q = {0};
            s = llmlab_qmat_pack(&q, qformat_of(it->type), buf, n, W->cols, 0, 0, NULL, e->err);
            nb = (size_t)n * q.row_bytes;
            if (!s) s = llmlab_gguf_writer_data(e->w, q.data, nb, e->err);
            llmlab_qmat_free(&q);
        }
        if (!s) progress(e, nb);
    }
    free(buf);
    free(half);
    llmlab_qmat_free(&wq);
    if (s) llmlab_err_prefix(e->err, "tensor '%s'", it->name);
    return s;
}

static llmlab_status write_all_items(gexp *e) {
    llmlab_status s = LLMLAB_OK;
    for (int i = 0; i < e->n && !s; i++) {
        const item *it = &e->items[i];
        int64_t ne[2] = {it->cols ? it->cols : it->rows, it->rows};
        s = llmlab_gguf_writer_tensor(e->w, it->name, ggml_type_of(it->type), it->cols ? 2 : 1, ne, e->err);
        e->total += item_bytes(it);
    }
    if (!s) s = llmlab_gguf_writer_start(e->w, e->err);
    for (int i = 0; i < e->n && !s; i++)
        s = e->items[i].mat ? write_mat(e, &e->items[i]) : write_vec(e, &e->items[i]);
    return s;
}

llmlab_status llmlab_gguf_write_model(const llmlab_model *m, const char *path, const llmlab_gguf_write_opts *o,
                                      llmlab_err *err) {
    switch (o->type) {
    case LLMLAB_DTYPE_F32: case LLMLAB_DTYPE_F16: case LLMLAB_DTYPE_BF16:
    case LLMLAB_DTYPE_Q8_0: case LLMLAB_DTYPE_Q4_0: case LLMLAB_DTYPE_Q4_K: break;
    default: return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: GGUF type %d is not supported", path, (int)o->type);
    }
    gexp e = {.m = m, .o = o, .path = path, .err = err};
    llmlab_status s = plan(&e);
    if (!s) s = llmlab_gguf_writer_create(&e.w, path, LLMLAB_GGUF_DEFAULT_ALIGNMENT, err);
    if (!s) {
        write_meta(&e);
        s = llmlab_gguf_write_vocab(e.w, m, err);
    }
    if (!s) s = write_all_items(&e);
    if (!s) {
        s = llmlab_gguf_writer_finish(e.w, err);
        e.w = NULL;
    }
    llmlab_gguf_writer_abort(e.w);
    free(e.items);
    free(e.rope_factors);
    if (s) llmlab_err_prefix(err, "writing %s", path);
    return s;
}
