/* model_gguf.c - a Llama-family model from a GGUF file (llama.cpp's format, docs/gguf.md).
 *
 * The config comes from the "{arch}.*" metadata keys llama.cpp writes, the
 * vocabulary size from token_embd's shape, and every tensor is checked against
 * that config before the model is handed out.  Matrices stay in the read-only
 * mapping in their stored type (f32, f16, bf16, q8_0, q4_0, q4_K), except Q and
 * K of "llama"/"mistral" files: llama.cpp's converter stores their rows permuted
 * for its interleaved RoPE, and llmlab rotates halves as transformers does
 * (DESIGN.md, Numerics), so those two matrices per layer are un-permuted into
 * owned copies.  Rows are whole blocks, so this works for every type.
 */
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

#define GG_MAX_SIZE (1L << 24) /* each size, as config.json allows */
#define GG_MAX_LAYERS 1024

typedef struct {
    llmlab_model *m;
    const llmlab_gguf *g;
    const char *file;  /* m->path, for messages */
    char arch[32];     /* general.architecture */
    int permuted;      /* Q/K rows stored for interleaved RoPE (llama, mistral) */
    llmlab_err *err;
} gload;

/* ---- which file ---------------------------------------------------------------------- */

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static int is_gguf_name(const char *n) {
    size_t l = strlen(n);
    return l > 5 && !strcmp(n + l - 5, ".gguf");
}

llmlab_status llmlab_model_gguf_file(const char *path, char **file, llmlab_err *err) {
    *file = NULL;
    struct stat st;
    if (stat(path, &st)) return LLMLAB_OK; /* the directory loader names the problem */
    if (S_ISREG(st.st_mode)) {
        *file = strdup(path);
        return *file ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    if (!S_ISDIR(st.st_mode)) return LLMLAB_OK;
    char *cfg = join(path, "config.json");
    if (!cfg) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    int hf = access(cfg, F_OK) == 0;
    free(cfg);
    DIR *d = hf ? NULL : opendir(path);
    if (!d) return LLMLAB_OK;
    int n = 0;
    char *found = NULL, first[256] = "", second[256] = "";
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_gguf_name(e->d_name)) continue;
        if (n++ == 0) snprintf(first, sizeof first, "%s", e->d_name);
        else if (n == 2) snprintf(second, sizeof second, "%s", e->d_name);
    }
    closedir(d);
    if (n > 1)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "%s: holds %d .gguf files ('%s', '%s', ...) and no config.json: give the file to load",
                              path, n, first, second);
    if (n == 0) return LLMLAB_OK;
    found = join(path, first);
    if (!found) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    *file = found;
    return LLMLAB_OK;
}

/* ---- metadata -------------------------------------------------------------------------- */

static const char *akey(const gload *l, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", l->arch, suffix);
    return buf;
}

/* A size "{arch}.suffix" in [lo, hi]: an unsigned integer, or an array of equal
 * ones (llama.cpp allows per-layer arrays; llmlab needs one value). */
static llmlab_status meta_int(gload *l, const char *suffix, int required, int def, long lo, long hi, int *out) {
    char key[128];
    akey(l, suffix, key, sizeof key);
    const llmlab_gguf_value *v = llmlab_gguf_get(l->g, key);
    if (!v) {
        if (required)
            return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: metadata key '%s' is missing (a %s model needs it)",
                                  l->file, key, l->arch);
        *out = def;
        return LLMLAB_OK;
    }
    uint64_t x = 0;
    if (llmlab_gguf_value_type(v) == LLMLAB_GGUF_ARRAY) {
        uint64_t n = llmlab_gguf_arr_len(v);
        if (n == 0) return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: metadata key '%s' is an empty array", l->file, key);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t y;
            if (llmlab_gguf_arr_u64(v, i, &y))
                return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                                      "%s: metadata key '%s': element %llu is not an unsigned integer", l->file, key,
                                      (unsigned long long)i);
            if (i && y != x)
                return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                                      "%s: metadata key '%s' varies per layer (%llu, then %llu at layer %llu); "
                                      "llmlab needs one value for all layers",
                                      l->file, key, (unsigned long long)x, (unsigned long long)y,
                                      (unsigned long long)i);
            x = y;
        }
    } else {
        llmlab_status s = llmlab_gguf_get_u64(l->g, key, &x, l->err);
        if (s) return s;
    }
    if (x < (uint64_t)lo || x > (uint64_t)hi)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: metadata key '%s' = %llu is outside [%ld, %ld]", l->file,
                              key, (unsigned long long)x, lo, hi);
    *out = (int)x;
    return LLMLAB_OK;
}

/* A positive finite float "{arch}.suffix". */
static llmlab_status meta_float(gload *l, const char *suffix, int required, float def, float *out) {
    char key[128];
    akey(l, suffix, key, sizeof key);
    if (llmlab_gguf_find_key(l->g, key) < 0) {
        if (required)
            return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: metadata key '%s' is missing (a %s model needs it)",
                                  l->file, key, l->arch);
        *out = def;
        return LLMLAB_OK;
    }
    llmlab_status s = llmlab_gguf_get_f32(l->g, key, out, l->err);
    if (!s && !(*out > 0.0f && isfinite(*out)))
        s = llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: metadata key '%s' = %g is not a positive number", l->file,
                           key, (double)*out);
    return s;
}

static llmlab_status read_arch(gload *l) {
    const char *a;
    llmlab_status s = llmlab_gguf_get_str(l->g, "general.architecture", &a, NULL, l->err);
    if (s) return s;
    llmlab_config *c = &l->m->cfg;
    const char *cls;
    if (!strcmp(a, "llama")) c->arch = LLMLAB_ARCH_LLAMA, cls = "LlamaForCausalLM", l->permuted = 1;
    else if (!strcmp(a, "mistral")) c->arch = LLMLAB_ARCH_MISTRAL, cls = "MistralForCausalLM", l->permuted = 1;
    else if (!strcmp(a, "qwen2")) c->arch = LLMLAB_ARCH_QWEN2, cls = "Qwen2ForCausalLM", c->qkv_bias = 1;
    else
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: general.architecture '%.64s' is not supported (llama, mistral, qwen2)", l->file, a);
    snprintf(l->arch, sizeof l->arch, "%s", a);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", cls);
    return LLMLAB_OK;
}

static llmlab_status read_sizes(gload *l) {
    llmlab_config *c = &l->m->cfg;
    llmlab_status s;
    int rope_dims = 0, vlen = 0;
    if ((s = meta_int(l, "context_length", 1, 0, 1, 1L << 30, &c->max_pos)) ||
        (s = meta_int(l, "embedding_length", 1, 0, 1, GG_MAX_SIZE, &c->dim)) ||
        (s = meta_int(l, "block_count", 1, 0, 1, GG_MAX_LAYERS, &c->n_layers)) ||
        (s = meta_int(l, "feed_forward_length", 1, 0, 1, GG_MAX_SIZE, &c->ffn_dim)) ||
        (s = meta_int(l, "attention.head_count", 1, 0, 1, GG_MAX_SIZE, &c->n_heads)) ||
        (s = meta_int(l, "attention.head_count_kv", 0, c->n_heads, 1, GG_MAX_SIZE, &c->n_kv_heads)))
        return s;
    char key[128];
    if (c->dim % c->n_heads && llmlab_gguf_find_key(l->g, akey(l, "attention.key_length", key, sizeof key)) < 0)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: %s.embedding_length %d is not a multiple of %s.attention.head_count %d and "
                              "there is no %s.attention.key_length",
                              l->file, l->arch, c->dim, l->arch, c->n_heads, l->arch);
    if ((s = meta_int(l, "attention.key_length", 0, c->dim / c->n_heads, 2, GG_MAX_SIZE, &c->head_dim)) ||
        (s = meta_int(l, "attention.value_length", 0, c->head_dim, 1, GG_MAX_SIZE, &vlen)) ||
        (s = meta_int(l, "rope.dimension_count", 0, c->head_dim, 1, GG_MAX_SIZE, &rope_dims)) ||
        (s = meta_int(l, "attention.sliding_window", 0, 0, 0, 1L << 30, &c->sliding_window)) ||
        (s = meta_float(l, "attention.layer_norm_rms_epsilon", 1, 0, &c->rms_eps)) ||
        (s = meta_float(l, "rope.freq_base", 0, 10000.0f, &c->rope_theta)))
        return s;
    if (vlen != c->head_dim)
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: %s.attention.value_length %d differs from the key length %d (not supported)",
                              l->file, l->arch, vlen, c->head_dim);
    if (rope_dims != c->head_dim)
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: %s.rope.dimension_count %d is not the head size %d (partial rotary is not "
                              "supported)",
                              l->file, l->arch, rope_dims, c->head_dim);
    if (c->head_dim % 2)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: head size %d must be even (RoPE rotates pairs)", l->file,
                              c->head_dim);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: %s.attention.head_count %d is not a multiple of %s.attention.head_count_kv %d",
                              l->file, l->arch, c->n_heads, l->arch, c->n_kv_heads);
    c->rope_kind = LLMLAB_ROPE_DEFAULT;
    return LLMLAB_OK;
}

/* ---- tensors ----------------------------------------------------------------------------- */

static llmlab_status tensor_dtype(gload *l, const llmlab_gguf_tensor *t, llmlab_dtype *dt) {
    switch (t->type) {
    case LLMLAB_GGML_F32: *dt = LLMLAB_DTYPE_F32; return LLMLAB_OK;
    case LLMLAB_GGML_F16: *dt = LLMLAB_DTYPE_F16; return LLMLAB_OK;
    case LLMLAB_GGML_BF16: *dt = LLMLAB_DTYPE_BF16; return LLMLAB_OK;
    case LLMLAB_GGML_Q8_0: *dt = LLMLAB_DTYPE_Q8_0; return LLMLAB_OK;
    case LLMLAB_GGML_Q4_0: *dt = LLMLAB_DTYPE_Q4_0; return LLMLAB_OK;
    case LLMLAB_GGML_Q4_K: *dt = LLMLAB_DTYPE_Q4_K; return LLMLAB_OK;
    default: break;
    }
    const char *tn = llmlab_ggml_type_name(t->type);
    return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                          "%s: tensor '%s' has type %s (ggml type id %u), which llmlab cannot run (supported: f32, "
                          "f16, bf16, q8_0, q4_0, q4_K)",
                          l->file, t->name, strcmp(tn, "?") ? tn : "unknown", t->type);
}

/* "[rows, cols]" from ggml's ne (reversed). */
static void shape_str(char *buf, size_t cap, const int64_t *ne, int n) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = n - 1; i >= 0 && k < cap; i--)
        k += (size_t)snprintf(buf + k, cap - k, "%lld%s", (long long)ne[i], i ? ", " : "");
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Tensor `name` with PyTorch shape [rows, cols] (cols 0: a vector of rows). */
static llmlab_status find(gload *l, const char *name, int64_t rows, int64_t cols, const llmlab_gguf_tensor **out,
                          llmlab_dtype *dt) {
    const llmlab_gguf_tensor *t = llmlab_gguf_find_tensor(l->g, name);
    if (!t)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: tensor '%s' is missing (needed by %s)", l->file, name,
                              l->arch);
    int64_t want[LLMLAB_GGUF_MAX_DIMS] = {cols ? cols : rows, cols ? rows : 1, 1, 1};
    int ok = 1;
    for (int i = 0; i < LLMLAB_GGUF_MAX_DIMS; i++) ok &= t->ne[i] == want[i];
    if (!ok) {
        char have[128], exp[64];
        shape_str(have, sizeof have, t->ne, t->n_dims);
        shape_str(exp, sizeof exp, want, cols ? 2 : 1);
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: tensor '%s' has shape %s but the metadata implies %s (shapes as [rows, cols]; "
                              "GGUF's ne lists them reversed)",
                              l->file, name, have, exp);
    }
    llmlab_status s = tensor_dtype(l, t, dt);
    if (s) return s;
    size_t es = llmlab_dtype_size(*dt);
    if (es && (uintptr_t)t->data % es)
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: tensor '%s' is not aligned to its %zu-byte elements (general.alignment %u)", l->file,
                              name, es, llmlab_gguf_alignment(l->g));
    *out = t;
    return LLMLAB_OK;
}

static llmlab_status own(gload *l, void *p) {
    llmlab_model *m = l->m;
    void **o = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *o);
    if (!o) {
        free(p);
        return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory", l->file);
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return LLMLAB_OK;
}

/* llama.cpp's converter stores HF row h*hd + p*hd/2 + j (rotary half p = 0, 1,
 * j < hd/2) of each head h at row h*hd + 2j + p, so that its RoPE over adjacent
 * pairs equals transformers' rotation of the two halves.  This puts the rows
 * back: dst (HF order) from src (GGUF order), rows of row_bytes bytes. */
static void unpermute_rows(unsigned char *dst, const unsigned char *src, int64_t rows, size_t row_bytes,
                           int64_t heads) {
    int64_t hd = rows / heads, half = hd / 2;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t p = 0; p < 2; p++)
            for (int64_t j = 0; j < half; j++)
                memcpy(dst + (size_t)(h * hd + p * half + j) * row_bytes,
                       src + (size_t)(h * hd + 2 * j + p) * row_bytes, row_bytes);
}

/* Matrix [rows][cols]; perm_heads > 0 un-permutes its rows into an owned copy. */
static llmlab_status get_mat(gload *l, const char *name, int64_t rows, int64_t cols, int perm_heads,
                             llmlab_mat *out) {
    const llmlab_gguf_tensor *t;
    llmlab_dtype dt;
    llmlab_status s = find(l, name, rows, cols, &t, &dt);
    if (s) return s;
    const void *data = t->data;
    if (perm_heads > 0) {
        size_t rb = llmlab_dtype_row_bytes(dt, cols);
        unsigned char *copy = malloc((size_t)rows * rb);
        if (!copy) return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory for '%s'", l->file, name);
        unpermute_rows(copy, t->data, rows, rb, perm_heads);
        if ((s = own(l, copy))) return s;
        data = copy;
    }
    *out = (llmlab_mat){dt, data, rows, cols};
    l->m->weight_bytes += t->nbytes;
    return LLMLAB_OK;
}

/* Vector [n] as owned f32 (f32/f16/bf16 storage); perm_heads as get_mat. */
static llmlab_status get_vec(gload *l, const char *name, int64_t n, int perm_heads, float **out) {
    const llmlab_gguf_tensor *t;
    llmlab_dtype dt;
    llmlab_status s = find(l, name, n, 0, &t, &dt);
    if (s) return s;
    if (!llmlab_dtype_size(dt))
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: tensor '%s' is a vector stored as %s; llmlab reads vectors in f32, f16 or bf16",
                              l->file, name, llmlab_ggml_type_name(t->type));
    float *v = malloc((size_t)n * sizeof *v), *tmp = perm_heads ? malloc((size_t)n * sizeof *tmp) : NULL;
    if (!v || (perm_heads && !tmp)) {
        free(v);
        free(tmp);
        return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory for '%s'", l->file, name);
    }
    if (perm_heads) {
        llmlab_to_f32(tmp, t->data, dt, (size_t)n);
        unpermute_rows((unsigned char *)v, (const unsigned char *)tmp, n, sizeof *v, perm_heads);
        free(tmp);
    } else {
        llmlab_to_f32(v, t->data, dt, (size_t)n);
    }
    *out = v;
    return LLMLAB_OK;
}

static llmlab_status load_layer(gload *l, int i) {
    const llmlab_config *c = &l->m->cfg;
    llmlab_layer *L = &l->m->layers[i];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int ph = l->permuted ? c->n_heads : 0, pk = l->permuted ? c->n_kv_heads : 0;
    char name[128];
    llmlab_status s = LLMLAB_OK;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", i, suffix), name)
    if (!s) s = get_vec(l, NAME("attn_norm.weight"), c->dim, 0, &L->attn_norm);
    if (!s) s = get_mat(l, NAME("attn_q.weight"), q, c->dim, ph, &L->wq);
    if (!s) s = get_mat(l, NAME("attn_k.weight"), kv, c->dim, pk, &L->wk);
    if (!s) s = get_mat(l, NAME("attn_v.weight"), kv, c->dim, 0, &L->wv);
    if (!s && c->qkv_bias) s = get_vec(l, NAME("attn_q.bias"), q, ph, &L->bq);
    if (!s && c->qkv_bias) s = get_vec(l, NAME("attn_k.bias"), kv, pk, &L->bk);
    if (!s && c->qkv_bias) s = get_vec(l, NAME("attn_v.bias"), kv, 0, &L->bv);
    if (!s) s = get_mat(l, NAME("attn_output.weight"), c->dim, q, 0, &L->wo);
    if (!s) s = get_vec(l, NAME("ffn_norm.weight"), c->dim, 0, &L->ffn_norm);
    if (!s) s = get_mat(l, NAME("ffn_gate.weight"), c->ffn_dim, c->dim, 0, &L->w_gate);
    if (!s) s = get_mat(l, NAME("ffn_up.weight"), c->ffn_dim, c->dim, 0, &L->w_up);
    if (!s) s = get_mat(l, NAME("ffn_down.weight"), c->dim, c->ffn_dim, 0, &L->w_down);
#undef NAME
    return s;
}

/* vocab_size from token_embd's rows ({arch}.vocab_size, when present, must agree);
 * tied embeddings when output.weight is absent; biases when the arch has them
 * (qwen2) or blk.0.attn_q.bias exists. */
static llmlab_status read_shape_facts(gload *l) {
    llmlab_config *c = &l->m->cfg;
    const llmlab_gguf_tensor *e = llmlab_gguf_find_tensor(l->g, "token_embd.weight");
    if (!e)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: tensor 'token_embd.weight' is missing (needed by %s)",
                              l->file, l->arch);
    if (e->n_dims != 2 || e->ne[1] < 1 || e->ne[1] > GG_MAX_SIZE)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: tensor 'token_embd.weight' is not a matrix of 1..%ld rows (%d dims, %lld rows)",
                              l->file, GG_MAX_SIZE, e->n_dims, (long long)e->ne[1]);
    c->vocab_size = (int)e->ne[1];
    int v = 0;
    llmlab_status s = meta_int(l, "vocab_size", 0, c->vocab_size, 1, GG_MAX_SIZE, &v);
    if (s) return s;
    if (v != c->vocab_size)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: %s.vocab_size is %d but tensor 'token_embd.weight' has %d rows", l->file, l->arch,
                              v, c->vocab_size);
    c->tie_embeddings = llmlab_gguf_find_tensor(l->g, "output.weight") == NULL;
    if (llmlab_gguf_find_tensor(l->g, "blk.0.attn_output.bias"))
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: tensor 'blk.0.attn_output.bias': output projection biases are not supported",
                              l->file);
    if (c->arch != LLMLAB_ARCH_QWEN2 && llmlab_gguf_find_tensor(l->g, "blk.0.attn_q.bias")) {
        /* q/k/v biases without an output bias: what llmlab calls Qwen2 (llama.cpp
         * allows them in "llama" files; the rows stay permuted as "llama") */
        c->arch = LLMLAB_ARCH_QWEN2;
        c->qkv_bias = 1;
        snprintf(c->arch_name, sizeof c->arch_name, "Qwen2ForCausalLM");
    }
    return LLMLAB_OK;
}

/* The shape checks config.json gets (products that would overflow), through
 * the config parser itself, so both loaders accept the same models. */
static llmlab_status check_config(gload *l) {
    char *json = llmlab_config_to_json(&l->m->cfg);
    if (!json) return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory", l->file);
    llmlab_config chk;
    llmlab_status s = llmlab_config_parse(&chk, json, l->err);
    free(json);
    if (s) llmlab_err_prefix(l->err, "%s: the metadata describes an invalid model", l->file);
    return s;
}

static llmlab_status load_weights(gload *l) {
    llmlab_model *m = l->m;
    const llmlab_config *c = &m->cfg;
    llmlab_status s = get_mat(l, "token_embd.weight", c->vocab_size, c->dim, 0, &m->embed);
    if (s) return s;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory", l->file);
    for (int i = 0; i < c->n_layers && !s; i++) s = load_layer(l, i);
    if (!s) s = get_vec(l, "output_norm.weight", c->dim, 0, &m->final_norm);
    if (s) return s;
    if (c->tie_embeddings) {
        m->lm_head = m->embed;
        return LLMLAB_OK;
    }
    return get_mat(l, "output.weight", c->vocab_size, c->dim, 0, &m->lm_head);
}

/* ---- RoPE ------------------------------------------------------------------------------- */

/* transformers' inverse frequencies, then what llama.cpp scales them by:
 * rope_freqs.weight (the converter's Llama-3 factors: theta_i / factor_i) and
 * {arch}.rope.scaling.type "linear" (theta_i / factor). */
static llmlab_status load_rope(gload *l) {
    llmlab_model *m = l->m;
    int half = m->cfg.head_dim / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof *m->rope_inv_freq);
    if (!m->rope_inv_freq) return llmlab_err_set(l->err, LLMLAB_ENOMEM, "%s: out of memory", l->file);
    llmlab_rope_inv_freq(&m->cfg, m->rope_inv_freq);
    if (llmlab_gguf_find_tensor(l->g, "rope_freqs.weight")) {
        float *ff = NULL;
        llmlab_status s = get_vec(l, "rope_freqs.weight", half, 0, &ff);
        for (int i = 0; !s && i < half; i++) {
            if (!(ff[i] > 0.0f && isfinite(ff[i])))
                s = llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: rope_freqs.weight[%d] = %g is not a positive factor",
                                   l->file, i, (double)ff[i]);
            else m->rope_inv_freq[i] /= ff[i];
        }
        free(ff);
        if (s) return s;
    }
    char key[128];
    akey(l, "rope.scaling.type", key, sizeof key);
    if (llmlab_gguf_find_key(l->g, key) < 0) return LLMLAB_OK;
    const char *type;
    llmlab_status s = llmlab_gguf_get_str(l->g, key, &type, NULL, l->err);
    if (s || !strcmp(type, "none")) return s;
    if (strcmp(type, "linear"))
        return llmlab_err_set(l->err, LLMLAB_EUNSUPPORTED,
                              "%s: %s = '%.40s' is not supported (none, linear; Llama-3 scaling comes as "
                              "rope_freqs.weight)",
                              l->file, key, type);
    float factor;
    if ((s = meta_float(l, "rope.scaling.factor", 1, 1.0f, &factor))) return s;
    for (int i = 0; i < half; i++) m->rope_inv_freq[i] /= factor;
    return LLMLAB_OK;
}

/* ---- vocabulary, special ids, hash --------------------------------------------------------- */

/* tokenizer.ggml.* as a tokenizer (core/gguf_vocab.c); the byte fallback when the
 * file carries none (model absent, "none" or "no_vocab"). */
static llmlab_status load_vocab(gload *l) {
    llmlab_model *m = l->m;
    const char *model = NULL;
    llmlab_status s = LLMLAB_OK;
    if (llmlab_gguf_find_key(l->g, "tokenizer.ggml.model") >= 0)
        s = llmlab_gguf_get_str(l->g, "tokenizer.ggml.model", &model, NULL, l->err);
    if (s) return s;
    if (!model || !strcmp(model, "none") || !strcmp(model, "no_vocab")) return llmlab_tokenizer_bytes(&m->tok, l->err);
    if ((s = llmlab_tokenizer_load_gguf(&m->tok, l->file, l->err))) return s;
    int tv = llmlab_tokenizer_vocab_size(m->tok);
    if (tv > m->cfg.vocab_size)
        return llmlab_err_set(l->err, LLMLAB_EFORMAT,
                              "%s: the vocabulary (tokenizer.ggml.tokens) has %d tokens but 'token_embd.weight' has "
                              "only %d rows",
                              l->file, tv, m->cfg.vocab_size);
    return LLMLAB_OK;
}

/* -1 when absent; else an id inside the embedding. */
static llmlab_status special_id(gload *l, const char *key, int *out) {
    *out = -1;
    if (llmlab_gguf_find_key(l->g, key) < 0) return LLMLAB_OK;
    int64_t x;
    llmlab_status s = llmlab_gguf_get_i64(l->g, key, &x, l->err);
    if (!s && (x < 0 || x >= l->m->cfg.vocab_size))
        s = llmlab_err_set(l->err, LLMLAB_EFORMAT, "%s: %s = %lld is not a token id (vocabulary of %d)", l->file, key,
                           (long long)x, l->m->cfg.vocab_size);
    if (!s) *out = (int)x;
    return s;
}

static llmlab_status read_specials(gload *l) {
    llmlab_config *c = &l->m->cfg;
    int eos, eot;
    llmlab_status s = special_id(l, "tokenizer.ggml.bos_token_id", &c->bos_id);
    if (!s) s = special_id(l, "tokenizer.ggml.eos_token_id", &eos);
    if (!s) s = special_id(l, "tokenizer.ggml.eot_token_id", &eot);
    if (s) return s;
    c->n_eos = 0;
    if (eos >= 0) c->eos_ids[c->n_eos++] = eos;
    if (eot >= 0 && eot != eos) c->eos_ids[c->n_eos++] = eot;
    return LLMLAB_OK;
}

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * FNV_PRIME;
    return h;
}

/* Over the header (metadata + tensor infos: every byte before the data) and the
 * first and last 4 KiB of each tensor, like the safetensors hash. */
static llmlab_status gguf_hash(gload *l) {
    FILE *f = fopen(l->file, "rb");
    if (!f) return llmlab_err_set(l->err, LLMLAB_EIO, "%s: %s", l->file, strerror(errno));
    uint64_t h = FNV_OFFSET, left = llmlab_gguf_data_offset(l->g);
    unsigned char buf[65536];
    while (left) {
        size_t k = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, k, f) != k) break;
        h = fnv1a(h, buf, k);
        left -= k;
    }
    fclose(f);
    if (left) return llmlab_err_set(l->err, LLMLAB_EIO, "%s: read error while hashing", l->file);
    for (int64_t i = 0; i < llmlab_gguf_n_tensors(l->g); i++) {
        const llmlab_gguf_tensor *t = llmlab_gguf_tensor_at(l->g, i);
        size_t k = t->nbytes < 4096 ? (size_t)t->nbytes : 4096;
        if (!t->known_type || !k) continue;
        h = fnv1a(h, t->data, k);
        h = fnv1a(h, (const unsigned char *)t->data + t->nbytes - k, k);
    }
    snprintf(l->m->hash, sizeof l->m->hash, "%016llx", (unsigned long long)h);
    return LLMLAB_OK;
}

llmlab_status llmlab_model_load_gguf(llmlab_model *m, llmlab_err *err) {
    gload l = {.m = m, .file = m->path, .err = err};
    llmlab_status s = llmlab_gguf_open(&m->gguf, m->path, err);
    if (s) return s;
    l.g = m->gguf;
    m->cfg.bos_id = -1;
    m->cfg.torch_dtype = LLMLAB_DTYPE_F32;
    if (!s) s = read_arch(&l);
    if (!s) s = read_sizes(&l);
    if (!s) s = read_shape_facts(&l);
    if (!s) s = check_config(&l);
    if (!s) s = load_weights(&l);
    if (!s && llmlab_dtype_size(m->embed.dtype)) m->cfg.torch_dtype = m->embed.dtype;
    if (!s) s = load_rope(&l);
    if (!s) s = read_specials(&l);
    if (!s) s = gguf_hash(&l);
    if (!s) s = load_vocab(&l);
    return s;
}
