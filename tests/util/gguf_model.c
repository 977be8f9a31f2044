/* gguf_model.c - models as llama.cpp GGUF files, written by the test's own code. */
#include "gguf_model.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "fsutil.h"
#include "gguf_writer.h"
#include "kernels/cpu/kernels.h"

/* ---- blocks (ggml's formats, from their description) ------------------------------------ */

/* Q8_0: 32 weights = f16 scale d, then int8 q[32]; w = d * q; d = max|x| / 127. */
static void q8_0_block(const float *x, unsigned char *out) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t h = llmlab_f32_to_f16(d);
    out[0] = (unsigned char)h, out[1] = (unsigned char)(h >> 8);
    for (int i = 0; i < 32; i++) out[2 + i] = (unsigned char)(int8_t)lrintf(x[i] * id);
}

/* Q4_0: 32 weights = f16 scale d, then 16 bytes: weight i < 16 in the low nibble of
 * byte i, weight i + 16 in its high nibble; w = d * (q - 8), q in 0..15.  d is the
 * signed value of largest magnitude divided by -8, so that weight maps to q = 0. */
static void q4_0_block(const float *x, unsigned char *out) {
    float m = 0;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    float d = m / -8.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t h = llmlab_f32_to_f16(d);
    out[0] = (unsigned char)h, out[1] = (unsigned char)(h >> 8);
    for (int i = 0; i < 16; i++) {
        int lo = (int)lrintf(x[i] * id + 8.0f), hi = (int)lrintf(x[i + 16] * id + 8.0f);
        lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
        hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
        out[2 + i] = (unsigned char)(lo | hi << 4);
    }
}

size_t gm_row_bytes(uint32_t type, int64_t cols) {
    switch (type) {
    case GM_F32: return (size_t)cols * 4;
    case GM_F16: case GM_BF16: return (size_t)cols * 2;
    case GM_Q8_0: return (size_t)(cols / 32) * 34;
    case GM_Q4_0: return (size_t)(cols / 32) * 18;
    case 6: return (size_t)(cols / 32) * 22;   /* q5_0 */
    case 14: return (size_t)(cols / 256) * 210; /* q6_K */
    default: return (size_t)cols * 4;          /* unknown ids: any size */
    }
}

void gm_quantize(uint32_t type, const float *x, int64_t n, unsigned char *out) {
    cr_assert(n % 32 == 0 && (type == GM_Q8_0 || type == GM_Q4_0));
    for (int64_t b = 0; b < n / 32; b++)
        if (type == GM_Q8_0) q8_0_block(x + 32 * b, out + 34 * b);
        else q4_0_block(x + 32 * b, out + 18 * b);
}

void gm_dequantize(uint32_t type, const unsigned char *in, int64_t n, float *out) {
    for (int64_t b = 0; b < n / 32; b++) {
        const unsigned char *p = in + (type == GM_Q8_0 ? 34 : 18) * b;
        float d = llmlab_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        for (int i = 0; i < 32; i++) {
            int q = type == GM_Q8_0 ? (int8_t)p[2 + i] : i < 16 ? (p[2 + i] & 15) - 8 : (p[2 + i - 16] >> 4) - 8;
            out[32 * b + i] = d * (float)q;
        }
    }
}

/* ---- the tensor list --------------------------------------------------------------------- */

typedef struct {
    char name[64];
    uint32_t type;
    int n_dims;
    int64_t ne[2];         /* ggml order: ne[0] = cols */
    unsigned char *data;   /* [nbytes] */
    size_t nbytes;
    uint64_t offset;
} gm_tensor;

typedef struct {
    gm_tensor t[512];
    int n;
    const gm_opts *o;
} gm_list;

/* HF row of GGUF row r: rows permuted per head (heads > 0) as the converter does. */
static int64_t hf_row(int64_t r, int64_t rows, int heads) {
    if (heads <= 0) return r;
    int64_t hd = rows / heads, h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

static void encode_rows(uint32_t type, const float *x, int64_t rows, int64_t cols, unsigned char *out) {
    size_t rb = gm_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + r * cols;
        unsigned char *dst = out + (size_t)r * rb;
        if (type == GM_F32) memcpy(dst, src, (size_t)cols * 4);
        else if (type == GM_F16 || type == GM_BF16)
            for (int64_t i = 0; i < cols; i++) {
                uint16_t h = type == GM_F16 ? llmlab_f32_to_f16(src[i]) : llmlab_f32_to_bf16(src[i]);
                dst[2 * i] = (unsigned char)h, dst[2 * i + 1] = (unsigned char)(h >> 8);
            }
        else gm_quantize(type, src, cols, dst);
    }
}

/* Adds a tensor from f32 values x[rows][cols] (cols 0: a vector of rows). */
static void add(gm_list *l, const char *name, const float *x, int64_t rows, int64_t cols, uint32_t type, int heads) {
    const gm_opts *o = l->o;
    if (o->omit_tensor && !strcmp(o->omit_tensor, name)) return;
    cr_assert_lt(l->n, 512);
    gm_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int odd = o->odd_tensor && !strcmp(o->odd_tensor, name);
    int64_t c = cols ? cols : rows, r = cols ? rows : 1;
    float *perm = malloc((size_t)(r * c) * sizeof *perm);
    cr_assert_not_null(perm);
    for (int64_t i = 0; i < r * c; i++) { /* vectors permute elements, matrices rows */
        int64_t row = cols ? i / c : i, col = cols ? i % c : 0, n_rows = cols ? r : c;
        perm[i] = x[cols ? hf_row(row, n_rows, heads) * c + col : hf_row(row, n_rows, heads)];
    }
    t->type = cols ? type : GM_F32;
    if (odd && o->odd_type) t->type = o->odd_type;
    if (odd && o->odd_rows) r = o->odd_rows;
    t->n_dims = cols ? 2 : 1;
    t->ne[0] = c, t->ne[1] = r;
    t->nbytes = (size_t)r * gm_row_bytes(t->type, c);
    t->data = calloc(t->nbytes ? t->nbytes : 1, 1);
    cr_assert_not_null(t->data);
    int known = t->type == GM_F32 || t->type == GM_F16 || t->type == GM_BF16 || t->type == GM_Q8_0 || t->type == GM_Q4_0;
    if (known && !(odd && o->odd_rows)) encode_rows(t->type, perm, r, c, t->data);
    free(perm);
}

/* w as f32; block types (a loaded GGUF model) through the kernels' row decoder. */
static float *mat_f32(const llmlab_mat *w) {
    float *x = malloc((size_t)(w->rows * w->cols) * sizeof *x);
    cr_assert_not_null(x);
    if (llmlab_dtype_size(w->dtype)) llmlab_to_f32(x, w->data, w->dtype, (size_t)(w->rows * w->cols));
    else
        for (int64_t r = 0; r < w->rows; r++) llmlab_cpu_row_to_f32(x + r * w->cols, w->data, w->dtype, r, (int)w->cols);
    return x;
}

static void add_mat(gm_list *l, const char *name, const llmlab_mat *w, uint32_t type, int heads) {
    float *x = mat_f32(w);
    add(l, name, x, w->rows, w->cols, type, heads);
    free(x);
}

static void build(gm_list *l, const llmlab_model *m, const char *arch) {
    const llmlab_config *c = &m->cfg;
    int perm = strcmp(arch, "qwen2") != 0;
    uint32_t ty = l->o->type;
    add_mat(l, "token_embd.weight", &m->embed, ty, 0);
    char n[64];
    for (int i = 0; i < c->n_layers; i++) {
        const llmlab_layer *L = &m->layers[i];
        int hq = perm ? c->n_heads : 0, hk = perm ? c->n_kv_heads : 0;
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        add(l, NM("attn_norm.weight"), L->attn_norm, c->dim, 0, ty, 0);
        add_mat(l, NM("attn_q.weight"), &L->wq, ty, hq);
        add_mat(l, NM("attn_k.weight"), &L->wk, ty, hk);
        add_mat(l, NM("attn_v.weight"), &L->wv, ty, 0);
        if (c->qkv_bias) {
            add(l, NM("attn_q.bias"), L->bq, L->wq.rows, 0, ty, hq);
            add(l, NM("attn_k.bias"), L->bk, L->wk.rows, 0, ty, hk);
            add(l, NM("attn_v.bias"), L->bv, L->wv.rows, 0, ty, 0);
        }
        add_mat(l, NM("attn_output.weight"), &L->wo, ty, 0);
        add(l, NM("ffn_norm.weight"), L->ffn_norm, c->dim, 0, ty, 0);
        add_mat(l, NM("ffn_gate.weight"), &L->w_gate, ty, 0);
        add_mat(l, NM("ffn_up.weight"), &L->w_up, ty, 0);
        add_mat(l, NM("ffn_down.weight"), &L->w_down, ty, 0);
#undef NM
    }
    add(l, "output_norm.weight", m->final_norm, c->dim, 0, ty, 0);
    if (!c->tie_embeddings) add_mat(l, "output.weight", &m->lm_head, ty, 0);
}

/* ---- metadata ----------------------------------------------------------------------------- */

typedef struct {
    gw_buf kv[32];
    int n;
} kv_list;

static gw_buf *kv_new(kv_list *k, const gm_opts *o, const char *key, uint32_t type) {
    if (o->omit_key && !strcmp(o->omit_key, key)) return NULL;
    cr_assert_lt(k->n, 32);
    gw_buf *b = &k->kv[k->n++];
    memset(b, 0, sizeof *b);
    gw_put_cstr(b, key);
    gw_put_u32(b, type);
    return b;
}

/* An unsigned value in a type llama.cpp's readers accept (uint32 mostly). */
static void kv_uint(kv_list *k, const gm_opts *o, llmlab_rng *r, const char *key, uint64_t v) {
    uint32_t t = llmlab_rng_next(r) % 4 ? GW_U32 : GW_U64;
    gw_buf *b = kv_new(k, o, key, t);
    if (b) gw_put_le(b, v, t == GW_U32 ? 4 : 8);
}

static void kv_f32(kv_list *k, const gm_opts *o, const char *key, float v) {
    gw_buf *b = kv_new(k, o, key, GW_F32);
    uint32_t u;
    memcpy(&u, &v, 4);
    if (b) gw_put_u32(b, u);
}

static void kv_str(kv_list *k, const gm_opts *o, const char *key, const char *v) {
    gw_buf *b = kv_new(k, o, key, GW_STR);
    if (b) gw_put_cstr(b, v);
}

static void build_meta(kv_list *k, const llmlab_model *m, const gm_opts *o, const char *arch, llmlab_rng *r,
                       uint32_t align) {
    const llmlab_config *c = &m->cfg;
    char key[128];
#define K(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    kv_str(k, o, "general.architecture", arch);
    kv_str(k, o, "general.name", "test model");
    if (align != 32 || llmlab_rng_next(r) % 2) { /* a uint32, as the format demands */
        gw_buf *b = kv_new(k, o, "general.alignment", GW_U32);
        if (b) gw_put_u32(b, align);
    }
    kv_uint(k, o, r, K("context_length"), (uint64_t)c->max_pos);
    kv_uint(k, o, r, K("embedding_length"), (uint64_t)c->dim);
    kv_uint(k, o, r, K("block_count"), (uint64_t)c->n_layers);
    kv_uint(k, o, r, K("feed_forward_length"), (uint64_t)c->ffn_dim);
    kv_uint(k, o, r, K("attention.head_count"), (uint64_t)c->n_heads);
    kv_uint(k, o, r, K("attention.head_count_kv"), (uint64_t)c->n_kv_heads);
    if (c->head_dim * c->n_heads != c->dim || llmlab_rng_next(r) % 2)
        kv_uint(k, o, r, K("attention.key_length"), (uint64_t)c->head_dim);
    if (llmlab_rng_next(r) % 2) kv_uint(k, o, r, K("rope.dimension_count"), (uint64_t)c->head_dim);
    kv_f32(k, o, K("rope.freq_base"), c->rope_theta);
    kv_f32(k, o, K("attention.layer_norm_rms_epsilon"), c->rms_eps);
#undef K
}

/* ---- the file ------------------------------------------------------------------------------- */

char *gm_write(const llmlab_model *m, const char *dir, const char *name, const gm_opts *o) {
    llmlab_rng r;
    llmlab_rng_seed(&r, o->seed, 77);
    const char *arch = o->arch ? o->arch : m->cfg.arch == LLMLAB_ARCH_QWEN2 ? "qwen2" : "llama";
    static const uint32_t aligns[] = {32, 32, 64, 128, 256};
    uint32_t align = aligns[llmlab_rng_next(&r) % 5];
    gm_list *l = calloc(1, sizeof *l);
    cr_assert_not_null(l);
    l->o = o;
    build(l, m, arch);
    kv_list k = {0};
    build_meta(&k, m, o, arch, &r, align);
    /* shuffled key order, info order and (independently) data order */
    for (int i = k.n - 1; i > 0; i--) {
        int j = (int)(llmlab_rng_next(&r) % (uint64_t)(i + 1));
        gw_buf t = k.kv[i];
        k.kv[i] = k.kv[j], k.kv[j] = t;
    }
    int *order = malloc((size_t)l->n * sizeof *order);
    cr_assert_not_null(order);
    for (int i = 0; i < l->n; i++) order[i] = i;
    for (int i = l->n - 1; i > 0; i--) {
        int j = (int)(llmlab_rng_next(&r) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        gm_tensor *t = &l->t[order[i]];
        t->offset = off;
        off = (off + t->nbytes + align - 1) / align * align;
    }
    for (int i = l->n - 1; i > 0; i--) {
        int j = (int)(llmlab_rng_next(&r) % (uint64_t)(i + 1));
        gm_tensor t = l->t[i];
        l->t[i] = l->t[j], l->t[j] = t;
    }
    gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_put_u32(&b, llmlab_rng_next(&r) % 2 ? 3 : 2);
    gw_put_u64(&b, (uint64_t)l->n + o->tensor_count_add);
    gw_put_u64(&b, (uint64_t)k.n);
    for (int i = 0; i < k.n; i++) {
        gw_put(&b, k.kv[i].p, k.kv[i].n);
        free(k.kv[i].p);
    }
    for (int i = 0; i < l->n; i++) {
        gm_tensor *t = &l->t[i];
        gw_put_cstr(&b, t->name);
        gw_put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) gw_put_u64(&b, (uint64_t)t->ne[d]);
        gw_put_u32(&b, t->type);
        int bad = o->bad_offset && !strcmp(o->bad_offset, t->name);
        gw_put_u64(&b, bad ? ((uint64_t)1 << 40) : t->offset);
    }
    gw_pad_to(&b, align);
    uint64_t total = off; /* the data section, each tensor at its (shuffled) offset */
    unsigned char *data = calloc(total ? total : 1, 1);
    cr_assert_not_null(data);
    for (int i = 0; i < l->n; i++) memcpy(data + l->t[i].offset, l->t[i].data, l->t[i].nbytes);
    gw_put(&b, data, total);
    char *path = gw_write_file(dir, name, &b);
    free(data);
    free(b.p);
    for (int i = 0; i < l->n; i++) free(l->t[i].data);
    free(order);
    free(l);
    return path;
}

/* ---- the dequantized twin ---------------------------------------------------------------------- */

typedef struct {
    llmlab_st_write_tensor t[512];
    float *data[512];
    int n;
} st_list;

static void st_add(st_list *s, const char *name, const float *x, int64_t rows, int64_t cols, uint32_t type) {
    cr_assert_lt(s->n, 512);
    int64_t n = cols ? rows * cols : rows;
    float *v = malloc((size_t)n * sizeof *v);
    cr_assert_not_null(v);
    if (cols && (type == GM_Q8_0 || type == GM_Q4_0)) {
        unsigned char *q = malloc(gm_row_bytes(type, cols));
        cr_assert_not_null(q);
        for (int64_t r = 0; r < rows; r++) {
            gm_quantize(type, x + r * cols, cols, q);
            gm_dequantize(type, q, cols, v + r * cols);
        }
        free(q);
    } else {
        memcpy(v, x, (size_t)n * sizeof *v);
    }
    char *nm = strdup(name);
    cr_assert_not_null(nm);
    s->t[s->n] = (llmlab_st_write_tensor){nm, LLMLAB_ST_F32, cols ? 2 : 1, {rows, cols}, v};
    s->data[s->n++] = v;
}

static void st_mat(st_list *s, const char *name, const llmlab_mat *w, uint32_t type) {
    float *x = mat_f32(w);
    st_add(s, name, x, w->rows, w->cols, type);
    free(x);
}

char *gm_write_dequantized(const llmlab_model *m, const char *dir, const char *name, uint32_t type) {
    const llmlab_config *c = &m->cfg;
    char *out = fsu_join(dir, name);
    cr_assert_not_null(out);
    cr_assert(mkdir(out, 0755) == 0 || errno == EEXIST, "mkdir %s", out);
    st_list *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    st_mat(s, "model.embed_tokens.weight", &m->embed, type);
    char n[128];
    for (int i = 0; i < c->n_layers; i++) {
        const llmlab_layer *L = &m->layers[i];
#define NM(x) (snprintf(n, sizeof n, "model.layers.%d.%s", i, x), n)
        st_add(s, NM("input_layernorm.weight"), L->attn_norm, c->dim, 0, type);
        st_mat(s, NM("self_attn.q_proj.weight"), &L->wq, type);
        st_mat(s, NM("self_attn.k_proj.weight"), &L->wk, type);
        st_mat(s, NM("self_attn.v_proj.weight"), &L->wv, type);
        if (c->qkv_bias) {
            st_add(s, NM("self_attn.q_proj.bias"), L->bq, L->wq.rows, 0, type);
            st_add(s, NM("self_attn.k_proj.bias"), L->bk, L->wk.rows, 0, type);
            st_add(s, NM("self_attn.v_proj.bias"), L->bv, L->wv.rows, 0, type);
        }
        st_mat(s, NM("self_attn.o_proj.weight"), &L->wo, type);
        st_add(s, NM("post_attention_layernorm.weight"), L->ffn_norm, c->dim, 0, type);
        st_mat(s, NM("mlp.gate_proj.weight"), &L->w_gate, type);
        st_mat(s, NM("mlp.up_proj.weight"), &L->w_up, type);
        st_mat(s, NM("mlp.down_proj.weight"), &L->w_down, type);
#undef NM
    }
    st_add(s, "model.norm.weight", m->final_norm, c->dim, 0, type);
    if (!c->tie_embeddings) st_mat(s, "lm_head.weight", &m->lm_head, type);
    char *st_path = fsu_join(out, "model.safetensors");
    llmlab_err err = {0};
    cr_assert_eq(llmlab_st_write(st_path, s->t, s->n, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_config cfg = *c;
    cfg.torch_dtype = LLMLAB_DTYPE_F32;
    char *json = llmlab_config_to_json(&cfg);
    char *cfg_path = fsu_join(out, "config.json");
    cr_assert_not_null(json);
    cr_assert_eq(fsu_write(cfg_path, json, strlen(json)), 0);
    free(json);
    free(cfg_path);
    free(st_path);
    for (int i = 0; i < s->n; i++) {
        free((char *)s->t[i].name);
        free(s->data[i]);
    }
    free(s);
    return out;
}
