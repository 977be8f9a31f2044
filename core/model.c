/* model.c - loading a Llama-family model from a Hugging Face directory.
 *
 * config.json fixes every shape; each tensor the architecture needs is looked up
 * by its HF name and checked against that shape before the model is handed out.
 * Matrices are views into the read-only mapping; norms and biases become owned
 * f32 vectors.  RoPE inverse frequencies follow transformers bit for bit where
 * the C library allows (float32 arithmetic, as torch does).
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer.h"
#ifdef LLMLAB_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

#define MODEL_MAX_CONFIG (16u << 20)

static llmlab_status read_config_text(const char *path, char **out, size_t *len, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    char *buf = malloc(MODEL_MAX_CONFIG + 1);
    size_t n = buf ? fread(buf, 1, MODEL_MAX_CONFIG + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    llmlab_status s = LLMLAB_OK;
    if (!buf) s = llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    else if (rerr) s = llmlab_err_set(err, LLMLAB_EIO, "%s: read error", path);
    else if (n > MODEL_MAX_CONFIG) s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: too large for a config", path);
    else if (memchr(buf, 0, n)) s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: malformed JSON (NUL byte)", path);
    if (s) {
        free(buf);
        return s;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return LLMLAB_OK;
}

/* ---- tensor lookup ----------------------------------------------------------- */

static const char *dir_of(const llmlab_model *m) { return m->path; }

static llmlab_status find_typed(const llmlab_model *m, const char *name, int ndim,
                                const int64_t *want, const llmlab_st_tensor **out, llmlab_dtype *dt,
                                llmlab_err *err) {
    const llmlab_st_tensor *t = llmlab_st_find(&m->st, name);
    if (!t)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: tensor '%s' is missing (needed by %s)",
                              dir_of(m), name, m->cfg.arch_name);
    switch (t->dtype) {
    case LLMLAB_ST_F32: *dt = LLMLAB_DTYPE_F32; break;
    case LLMLAB_ST_F16: *dt = LLMLAB_DTYPE_F16; break;
    case LLMLAB_ST_BF16: *dt = LLMLAB_DTYPE_BF16; break;
    default:
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "%s: tensor '%s' has unsupported dtype %s (F32, F16 or BF16 only)",
                              dir_of(m), name, llmlab_st_dtype_name(t->dtype));
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char have[160], exp[64];
        size_t n = (size_t)snprintf(have, sizeof have, "[");
        for (int i = 0; i < t->ndim && n < sizeof have; i++)
            n += (size_t)snprintf(have + n, sizeof have - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (n < sizeof have) snprintf(have + n, sizeof have - n, "]");
        if (ndim == 1) snprintf(exp, sizeof exp, "[%lld]", (long long)want[0]);
        else snprintf(exp, sizeof exp, "[%lld, %lld]", (long long)want[0], (long long)want[1]);
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%s' has shape %s but config.json implies %s", dir_of(m),
                              name, have, exp);
    }
    if (((uintptr_t)t->data) % llmlab_dtype_size(*dt))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "%s: tensor '%s' is not aligned to its %zu-byte elements in the file",
                              dir_of(m), name, llmlab_dtype_size(*dt));
    *out = t;
    return LLMLAB_OK;
}

static llmlab_status get_mat(const llmlab_model *m, const char *name, int64_t rows, int64_t cols,
                             llmlab_mat *out, llmlab_err *err) {
    const int64_t want[2] = {rows, cols};
    const llmlab_st_tensor *t;
    llmlab_dtype dt;
    llmlab_status s = find_typed(m, name, 2, want, &t, &dt, err);
    if (s) return s;
    out->dtype = dt;
    out->data = t->data;
    out->rows = rows;
    out->cols = cols;
    return LLMLAB_OK;
}

static llmlab_status get_vec(const llmlab_model *m, const char *name, int64_t n, float **out,
                             llmlab_err *err) {
    const llmlab_st_tensor *t;
    llmlab_dtype dt;
    llmlab_status s = find_typed(m, name, 1, &n, &t, &dt, err);
    if (s) return s;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory for '%s'", dir_of(m), name);
    llmlab_to_f32(v, t->data, dt, (size_t)n);
    *out = v;
    return LLMLAB_OK;
}

static llmlab_status load_layer(llmlab_model *m, int i, llmlab_err *err) {
    const llmlab_config *c = &m->cfg;
    llmlab_layer *L = &m->layers[i];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    char name[128];
    llmlab_status s = LLMLAB_OK;
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", i, suffix), name)
    if (!s) s = get_vec(m, NAME("input_layernorm.weight"), c->dim, &L->attn_norm, err);
    if (!s) s = get_mat(m, NAME("self_attn.q_proj.weight"), q, c->dim, &L->wq, err);
    if (!s) s = get_mat(m, NAME("self_attn.k_proj.weight"), kv, c->dim, &L->wk, err);
    if (!s) s = get_mat(m, NAME("self_attn.v_proj.weight"), kv, c->dim, &L->wv, err);
    if (!s && c->qkv_bias) s = get_vec(m, NAME("self_attn.q_proj.bias"), q, &L->bq, err);
    if (!s && c->qkv_bias) s = get_vec(m, NAME("self_attn.k_proj.bias"), kv, &L->bk, err);
    if (!s && c->qkv_bias) s = get_vec(m, NAME("self_attn.v_proj.bias"), kv, &L->bv, err);
    if (!s) s = get_mat(m, NAME("self_attn.o_proj.weight"), c->dim, q, &L->wo, err);
    if (!s) s = get_vec(m, NAME("post_attention_layernorm.weight"), c->dim, &L->ffn_norm, err);
    if (!s) s = get_mat(m, NAME("mlp.gate_proj.weight"), c->ffn_dim, c->dim, &L->w_gate, err);
    if (!s) s = get_mat(m, NAME("mlp.up_proj.weight"), c->ffn_dim, c->dim, &L->w_up, err);
    if (!s) s = get_mat(m, NAME("mlp.down_proj.weight"), c->dim, c->ffn_dim, &L->w_down, err);
#undef NAME
    return s;
}

static uint64_t mat_bytes(const llmlab_mat *w) {
    return (uint64_t)w->rows * (uint64_t)w->cols * llmlab_dtype_size(w->dtype);
}

static llmlab_status load_weights(llmlab_model *m, llmlab_err *err) {
    const llmlab_config *c = &m->cfg;
    llmlab_status s = get_mat(m, "model.embed_tokens.weight", c->vocab_size, c->dim, &m->embed, err);
    if (s) return s;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->path);
    m->weight_bytes = mat_bytes(&m->embed);
    for (int i = 0; i < c->n_layers && !s; i++) {
        s = load_layer(m, i, err);
        const llmlab_layer *L = &m->layers[i];
        if (!s)
            m->weight_bytes += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) +
                               mat_bytes(&L->wo) + mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) +
                               mat_bytes(&L->w_down);
    }
    if (!s) s = get_vec(m, "model.norm.weight", c->dim, &m->final_norm, err);
    if (s) return s;
    if (c->tie_embeddings) {
        m->lm_head = m->embed; /* a stray lm_head.weight is ignored, as transformers does */
        return LLMLAB_OK;
    }
    if (!llmlab_st_find(&m->st, "lm_head.weight"))
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor 'lm_head.weight' is missing and config.json has "
                              "tie_word_embeddings false",
                              m->path);
    s = get_mat(m, "lm_head.weight", c->vocab_size, c->dim, &m->lm_head, err);
    if (!s) m->weight_bytes += mat_bytes(&m->lm_head);
    return s;
}

/* ---- RoPE ------------------------------------------------------------------------ */

/* transformers: inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all
 * float32; then _compute_llama3_parameters, again float32 tensor arithmetic with
 * Python scalars rounded to float32.  -ffp-contract=off keeps the roundings. */
void llmlab_rope_inv_freq(const llmlab_config *c, float *out) {
    int half = c->head_dim / 2;
    float base = c->rope_theta;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        out[i] = 1.0f / powf(base, e);
    }
    if (c->rope_kind != LLMLAB_ROPE_LLAMA3) return;
    float factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    float old_ctx = (float)c->rope_orig_max_pos;
    float low_wavelen = (float)((double)c->rope_orig_max_pos / (double)lo);
    float high_wavelen = (float)((double)c->rope_orig_max_pos / (double)hi);
    float two_pi = (float)(2.0 * M_PI);
    float span = (float)((double)hi - (double)lo);
    for (int i = 0; i < half; i++) {
        float f = out[i];
        /* torch evaluates `scalar / tensor` as tensor.reciprocal() * scalar */
        float wavelen = (1.0f / f) * two_pi;
        float v = wavelen > low_wavelen ? f / factor : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            float smooth = ((1.0f / wavelen) * old_ctx - lo) / span;
            v = (1.0f - smooth) * v / factor + smooth * v;
        }
        out[i] = v;
    }
}

/* ---- hash -------------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * FNV_PRIME;
    return h;
}

static int cmp_tensor_ptr(const void *a, const void *b) {
    return strcmp((*(const llmlab_st_tensor *const *)a)->name, (*(const llmlab_st_tensor *const *)b)->name);
}

uint64_t llmlab_model_hash_begin(const char *cfg_text, size_t cfg_len) {
    return fnv1a(FNV_OFFSET, cfg_text, cfg_len);
}

uint64_t llmlab_model_hash_tensor(uint64_t h, const char *name, const char *dtype_name, int ndim,
                                  const int64_t *shape, const void *data, size_t nbytes) {
    h = fnv1a(h, name, strlen(name) + 1);
    h = fnv1a(h, dtype_name, strlen(dtype_name) + 1);
    for (int d = 0; d < ndim; d++) {
        unsigned char le[8];
        for (int k = 0; k < 8; k++) le[k] = (unsigned char)((uint64_t)shape[d] >> (8 * k));
        h = fnv1a(h, le, 8);
    }
    size_t k = nbytes < 4096 ? nbytes : 4096;
    h = fnv1a(h, data, k);
    return fnv1a(h, (const unsigned char *)data + nbytes - k, k);
}

/* Over config.json and each tensor (by name order, so sharding does not matter):
 * name, dtype, shape, and the first and last 4 KiB of its data. */
static llmlab_status model_hash(llmlab_model *m, const char *cfg_text, size_t cfg_len, llmlab_err *err) {
    int n = m->st.n_tensors;
    const llmlab_st_tensor **v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < n; i++) v[i] = &m->st.tensors[i];
    qsort(v, (size_t)n, sizeof *v, cmp_tensor_ptr);
    uint64_t h = llmlab_model_hash_begin(cfg_text, cfg_len);
    for (int i = 0; i < n; i++)
        h = llmlab_model_hash_tensor(h, v[i]->name, llmlab_st_dtype_name(v[i]->dtype), v[i]->ndim, v[i]->shape,
                                     v[i]->data, v[i]->nbytes);
    free(v);
    snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)h);
    return LLMLAB_OK;
}

/* ---- public ------------------------------------------------------------------------- */

void llmlab_model_free(llmlab_model *m) {
    if (!m) return;
    llmlab_cuda_weights_free(m->gpu);
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layers; i++) {
            llmlab_layer *L = &m->layers[i];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
        }
        free(m->layers);
    }
    free(m->final_norm);
    free(m->rope_inv_freq);
    llmlab_tokenizer_free(m->tok);
    llmlab_st_close(&m->st);
    llmlab_gguf_close(m->gguf);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->path);
    free(m);
}

/* dir/tokenizer.json, else the byte fallback.  A real tokenizer may be smaller
 * than the embedding (padded vocabularies) but never larger; the fallback's 256
 * byte ids are not checked, so tiny synthetic vocabularies still load (their
 * prompts are checked against the vocabulary where they are used). */
static llmlab_status load_tokenizer(llmlab_model *m, const char *dir, llmlab_err *err) {
    llmlab_status s = llmlab_tokenizer_load_dir(&m->tok, dir, err);
    if (s) return llmlab_err_prefix(err, "%s: tokenizer", dir);
    int tv = llmlab_tokenizer_vocab_size(m->tok);
    if (strcmp(llmlab_tokenizer_kind(m->tok), "bytes") != 0 && tv > m->cfg.vocab_size)
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: the tokenizer (tokenizer.json) has %d tokens but the model's "
                              "vocab_size (config.json) is %d", dir, tv, m->cfg.vocab_size);
    return LLMLAB_OK;
}

static llmlab_status model_load_into(llmlab_model *m, const char *dir, llmlab_err *err) {
    size_t dl = strlen(dir);
    char *cpath = malloc(dl + sizeof "/config.json");
    if (!cpath) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    memcpy(cpath, dir, dl);
    memcpy(cpath + dl, "/config.json", sizeof "/config.json");
    char *text = NULL;
    size_t len = 0;
    llmlab_status s = read_config_text(cpath, &text, &len, err);
    if (!s && (s = llmlab_config_parse(&m->cfg, text, err))) llmlab_err_prefix(err, "%s", cpath);
    free(cpath);
    if (!s) s = llmlab_st_open_dir(&m->st, dir, err);
    if (!s) s = load_weights(m, err);
    if (!s) {
        m->rope_inv_freq = malloc((size_t)(m->cfg.head_dim / 2) * sizeof *m->rope_inv_freq);
        if (!m->rope_inv_freq) s = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        else llmlab_rope_inv_freq(&m->cfg, m->rope_inv_freq);
    }
    if (!s) s = model_hash(m, text, len, err);
    if (!s) s = load_tokenizer(m, dir, err);
    free(text);
    return s;
}

llmlab_status llmlab_model_load(llmlab_model **out, const char *dir, llmlab_err *err) {
    *out = NULL;
    char *gguf = NULL; /* a GGUF file instead of a Hugging Face directory (model_gguf.c) */
    llmlab_status s = llmlab_model_gguf_file(dir, &gguf, err);
    if (s) return s;
    llmlab_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(gguf);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    m->path = gguf ? gguf : strdup(dir);
    if (!m->path) {
        free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    s = gguf ? llmlab_model_load_gguf(m, err) : model_load_into(m, dir, err);
    if (s) {
        llmlab_model_free(m);
        return s;
    }
    *out = m;
    return LLMLAB_OK;
}

llmlab_status llmlab_model_set_backend(llmlab_model *m, int backend, int device, int deterministic, llmlab_err *err) {
    if (backend == LLMLAB_BACKEND_CPU) {
        m->backend = backend;
        return LLMLAB_OK;
    }
    if (backend != LLMLAB_BACKEND_CUDA) return llmlab_err_set(err, LLMLAB_EINVAL, "backend %d is not cpu or cuda", backend);
    if (m->gpu && m->device != device)
        return llmlab_err_set(err, LLMLAB_EINVAL, "backend cuda: the weights are already on device %d", m->device);
#ifndef LLMLAB_HAVE_CUDA
    (void)device, (void)deterministic;
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                          "backend cuda: this build has no CUDA (configure with a CUDA toolkit and -DLLMLAB_CUDA=ON)");
#else
    llmlab_err why = {0};
    int n = llmlab_cuda_device_count(&why);
    if (n == 0) return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "backend cuda: no CUDA device (%s)", why.msg);
    if (device < 0 || device >= n)
        return llmlab_err_set(err, LLMLAB_EINVAL, "backend cuda: device %d does not exist (%d device%s)", device, n,
                              n == 1 ? "" : "s");
    m->backend = backend;
    m->device = device;
    m->deterministic = deterministic != 0;
    return LLMLAB_OK;
#endif
}

const char *llmlab_model_backend_name(const llmlab_model *m) {
    if (m->backend != LLMLAB_BACKEND_CUDA) return "cpu";
    return m->deterministic ? "cuda-deterministic" : "cuda";
}
