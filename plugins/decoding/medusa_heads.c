/* medusa_heads.c - loading, checking and running Medusa heads (see medusa_heads.h). */
#include "medusa_heads.h"

#include "decode_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- f16/bf16 biases to f32 (plugins reach no core helpers) ------------------------- */

static float bits_to_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float f16_to_f32(uint16_t x) {
    uint32_t sign = (uint32_t)(x & 0x8000u) << 16, e = (x >> 10) & 0x1fu, man = x & 0x3ffu;
    if (e == 0) { /* zero or subnormal: man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (e == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((e + 112u) << 23) | (man << 13));
}

static void to_f32(float *dst, const void *src, llmlab_dtype dt, int n) {
    const uint16_t *h = src;
    for (int i = 0; i < n; i++)
        dst[i] = dt == LLMLAB_DTYPE_F32 ? ((const float *)src)[i]
               : dt == LLMLAB_DTYPE_F16 ? f16_to_f32(h[i])
                                        : bits_to_f32((uint32_t)h[i] << 16);
}

/* ---- finding and checking tensors ------------------------------------------------------ */

typedef struct {
    const llmlab_host *h;
    llmlab_tensors *file;
    const char *path;
    const char *prefix;   /* "" or "medusa_head." */
    int dim, vocab;       /* the model's */
} reader;

/* "{prefix}{head}.{index}{suffix}" */
static void tname(char *buf, size_t cap, const reader *r, int head, int index, const char *suffix) {
    snprintf(buf, cap, "%s%d.%d%s", r->prefix, head, index, suffix);
}

static int has(const reader *r, int head, int index, const char *suffix) {
    char name[160];
    llmlab_dtype dt;
    int64_t shape[4];
    int nd;
    tname(name, sizeof name, r, head, index, suffix);
    return r->h->tensors_get(r->file, name, &dt, shape, &nd) != NULL;
}

static void shape_text(char *buf, size_t cap, const int64_t *shape, int nd) {
    size_t at = 0;
    for (int i = 0; i < nd && at < cap; i++) {
        int w = snprintf(buf + at, cap - at, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
}

/* The tensor {head}.{index}{suffix}, which must be [rows][cols] (cols 0: a vector [rows]). */
static llmlab_status get_checked(const reader *r, int head, int index, const char *suffix, int64_t rows,
                                 int64_t cols, medusa_mat *out, llmlab_err *err) {
    char name[160], got[96], want[64];
    int64_t shape[4];
    int nd;
    tname(name, sizeof name, r, head, index, suffix);
    out->data = r->h->tensors_get(r->file, name, &out->dtype, shape, &nd);
    if (!out->data)
        return llmlab_plugin_fail(err, LLMLAB_EFORMAT, "medusa heads %s: missing tensor '%s' (or not f32/f16/bf16)",
                           r->path, name);
    int want_nd = cols ? 2 : 1;
    int64_t want_shape[2] = {rows, cols};
    if (nd != want_nd || shape[0] != rows || (cols && shape[1] != cols)) {
        shape_text(got, sizeof got, shape, nd);
        shape_text(want, sizeof want, want_shape, want_nd);
        return llmlab_plugin_fail(err, LLMLAB_EFORMAT,
                           "medusa heads %s: tensor '%s' has shape [%s], the model needs [%s] (model dim %d, vocab %d)",
                           r->path, name, got, want, r->dim, r->vocab);
    }
    return LLMLAB_OK;
}

/* Picks the name prefix and counts blocks and heads. */
static llmlab_status layout(reader *r, int *n_heads, int *n_blocks, llmlab_err *err) {
    static const char *const prefixes[] = {"", "medusa_head."};
    for (int i = 0; i < 2; i++) {
        r->prefix = prefixes[i];
        if (has(r, 0, 0, ".linear.weight") || has(r, 0, 0, ".weight")) break;
        if (i == 1)
            return llmlab_plugin_fail(err, LLMLAB_EFORMAT,
                               "medusa heads %s: no Medusa head tensors (expected '0.0.linear.weight' or "
                               "'0.0.weight', optionally prefixed 'medusa_head.')", r->path);
    }
    int L = 0;
    while (L <= MEDUSA_MAX_BLOCKS && has(r, 0, L, ".linear.weight")) L++;
    if (L > MEDUSA_MAX_BLOCKS)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "medusa heads %s: more than %d ResBlocks per head", r->path,
                           MEDUSA_MAX_BLOCKS);
    int H = 0;
    while (H <= MEDUSA_MAX_HEADS && (has(r, H, L, ".weight") || has(r, H, 0, ".linear.weight"))) H++;
    if (H > MEDUSA_MAX_HEADS)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "medusa heads %s: more than %d heads", r->path, MEDUSA_MAX_HEADS);
    *n_heads = H;
    *n_blocks = L;
    return LLMLAB_OK;
}

static llmlab_status check_heads(medusa_heads *hd, const reader *r, llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    for (int k = 0; k < hd->n_heads && !st; k++) {
        for (int l = 0; l < hd->n_blocks && !st; l++) {
            medusa_mat b;
            st = get_checked(r, k, l, ".linear.weight", hd->dim, hd->dim, &hd->w1[k][l], err);
            if (!st) st = get_checked(r, k, l, ".linear.bias", hd->dim, 0, &b, err);
            float *bias = hd->b1 + ((size_t)k * (size_t)hd->n_blocks + (size_t)l) * (size_t)hd->dim;
            if (!st) to_f32(bias, b.data, b.dtype, hd->dim);
        }
        if (!st) st = get_checked(r, k, hd->n_blocks, ".weight", hd->vocab, hd->dim, &hd->w2[k], err);
    }
    return st;
}

llmlab_status medusa_heads_open(medusa_heads *hd, const llmlab_host *h, const char *path, int dim, int vocab,
                                int need, llmlab_err *err) {
    memset(hd, 0, sizeof *hd);
    hd->h = h;
    hd->dim = dim;
    hd->vocab = vocab;
    llmlab_status st = h->tensors_open(path, &hd->file, err);
    if (st) return st;
    reader r = {h, hd->file, path, "", dim, vocab};
    st = layout(&r, &hd->n_heads, &hd->n_blocks, err);
    if (!st && hd->n_heads < need)
        st = llmlab_plugin_fail(err, LLMLAB_EINVAL,
                         "medusa heads %s: the file has %d head%s, the tree needs %d (one per tree depth): use a "
                         "shallower tree or more heads", path, hd->n_heads, hd->n_heads == 1 ? "" : "s", need);
    if (!st && !(hd->b1 = h->alloc(sizeof(float) * (size_t)(hd->n_heads * hd->n_blocks + 1) * (size_t)dim)))
        st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    if (!st) st = check_heads(hd, &r, err);
    if (st) medusa_heads_close(hd);
    return st;
}

void medusa_heads_close(medusa_heads *hd) {
    if (!hd->h) return;
    if (hd->file) hd->h->tensors_close(hd->file);
    hd->h->free(hd->b1);
    memset(hd, 0, sizeof *hd);
}

/* ---- running ------------------------------------------------------------------------------ */

void medusa_heads_run(const medusa_heads *hd, int k, const float *x, int M, float *work, float *logits,
                      llmlab_threadpool *pool) {
    size_t D = (size_t)hd->dim, MD = (size_t)M * D;
    float *cur = work, *z = work + MD;
    memcpy(cur, x, MD * sizeof *cur);
    for (int l = 0; l < hd->n_blocks; l++) {
        const medusa_mat *W = &hd->w1[k][l];
        const float *b = hd->b1 + ((size_t)k * (size_t)hd->n_blocks + (size_t)l) * D;
        hd->h->matmul_dense(z, cur, W->data, W->dtype, M, hd->dim, hd->dim, pool);
        for (size_t i = 0; i < MD; i++) {
            float t = z[i] + b[i % D];
            cur[i] += t / (1.0f + expf(-t));
        }
    }
    const medusa_mat *P = &hd->w2[k];
    hd->h->matmul_dense(logits, cur, P->data, P->dtype, M, hd->vocab, hd->dim, pool);
}

/* a (index ia) ranks above b (index ib). */
static int beats(float a, int ia, float b, int ib) {
    if (isnan(a)) return isnan(b) && ia < ib;
    if (isnan(b)) return 1;
    return a > b || (a == b && ia < ib);
}

void medusa_topk(const float *x, int n, int k, int32_t *out) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && !beats(x[i], i, x[out[k - 1]], out[k - 1])) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && beats(x[i], i, x[out[j - 1]], out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
}
