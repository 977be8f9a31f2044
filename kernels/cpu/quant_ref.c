/* quant_ref.c - the scalar reference of every packed-format matmul, and the
 * portable scalar kernel (the same arithmetic on activations prepared once per
 * call; llmlab_cpu_force_scalar and CPUs without AVX2 run it).
 *
 * The arithmetic both follow, per output y[m][n] (x' = x * in_scale):
 *   weight-only (I8_ROW, I4_*, FP8): acc = sum_k x'_k * v_k in k order, v_k the
 *     code's value (I8_ROW: code, FP8: table[code], I4: the dequantized weight);
 *     y = acc * row scale (I8_ROW, FP8) or acc (I4).
 *   GGUF (Q8_0, Q4_0, Q4_K): x' is cut into blocks of 32, each quantized to
 *     int8 with d = max|x'| / 127; per block b, isum_b = sum of code products
 *     (exact), t1 += (scale_b * d_b) * isum_b and, Q4_K only, t2 += min_b * s_b
 *     with s_b = d_b * sum of the block's activation codes; y = t1 - t2.
 *   W8A8: x' quantized per row with d = max|x'| / 127, isum = the exact integer
 *     dot, y = (isum * d) * row scale.
 * The fast kernels do the same products with other summation orders (8-lane
 * accumulators), so they differ from this reference only by f32 summation
 * order (W8A8: not at all, its sums are integers). */
#include <math.h>
#include <stdlib.h>

#include "quant_internal.h"

llmlab_qact_kind llmlab_qact_kind_of(llmlab_qformat f) {
    switch (f) {
    case LLMLAB_QF_Q8_0:
    case LLMLAB_QF_Q4_0:
    case LLMLAB_QF_Q4_K: return LLMLAB_QACT_BLOCK8;
    case LLMLAB_QF_W8A8: return LLMLAB_QACT_ROW8;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_I4_SYM:
    case LLMLAB_QF_I4_ASYM:
    case LLMLAB_QF_FP8: return LLMLAB_QACT_F32;
    }
    return LLMLAB_QACT_F32;
}

/* ---- activation quantization ---------------------------------------------------------- */

static inline float xin(const float *x, const float *in_scale, int64_t k) {
    return in_scale ? x[k] * in_scale[k] : x[k];
}

void llmlab_qact_block(const float *x, const float *in_scale, int8_t q[LLMLAB_QBLOCK], float *d, float *s) {
    float v[LLMLAB_QBLOCK], amax = 0.0f;
    for (int i = 0; i < LLMLAB_QBLOCK; i++) {
        v[i] = xin(x, in_scale, i);
        amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
    }
    float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < LLMLAB_QBLOCK; i++) {
        q[i] = llmlab_qact_code(v[i], id);
        sum += q[i];
    }
    *d = dd;
    *s = dd * (float)sum;
}

float llmlab_qact_row_scale(const float *x, const float *in_scale, int64_t K) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        float v = fabsf(xin(x, in_scale, k));
        amax = v > amax ? v : amax;
    }
    return amax / 127.0f;
}

static float inv_or_zero(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

/* ---- weight-only formats -------------------------------------------------------------- */

/* The value v_k the dot product multiplies (see the top comment). */
static inline float w_value(const llmlab_qmat *q, const uint8_t *row, int64_t k) {
    switch (q->format) {
    case LLMLAB_QF_I8_ROW: return (float)(int8_t)row[k];
    case LLMLAB_QF_FP8: return llmlab_fp8_e4m3_table[row[k]];
    case LLMLAB_QF_I4_SYM:
    case LLMLAB_QF_I4_ASYM: {
        int64_t ng = q->cols / q->group;
        const uint8_t *p = row + (k / 32) * 16 + (k % 16), *sc = row + q->cols / 2;
        int n = k % 32 < 16 ? *p & 15 : *p >> 4;
        float s = llmlab_q_f16(sc + 2 * (k / q->group));
        if (q->format == LLMLAB_QF_I4_SYM) return s * (float)(n - 8);
        return s * (float)n + llmlab_q_f16(sc + 2 * ng + 2 * (k / q->group));
    }
    default: return 0.0f;
    }
}

static inline float w_row_scale(const llmlab_qmat *q, int64_t n) {
    switch (q->format) {
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_W8A8: return q->row_scale[n];
    case LLMLAB_QF_FP8: return q->row_scale[q->per_row ? n : 0];
    default: return 1.0f;
    }
}

/* x is the raw row when in_scale != NULL (reference) or x' already (prepared). */
static float dot_f32(const llmlab_qmat *q, int64_t n, const float *x, const float *in_scale) {
    const uint8_t *row = q->data + (size_t)n * q->row_bytes;
    float acc = 0.0f;
    for (int64_t k = 0; k < q->cols; k++) {
        float p = xin(x, in_scale, k) * w_value(q, row, k);
        acc = acc + p;
    }
    if (q->format == LLMLAB_QF_I8_ROW || q->format == LLMLAB_QF_FP8) acc = acc * w_row_scale(q, n);
    return acc;
}

/* ---- GGUF formats ----------------------------------------------------------------------- */

/* The two terms of activation block b (weights [32b, 32b + 32)) against codes xq[32]. */
static void gguf_block(const llmlab_qmat *q, const uint8_t *row, int64_t b, const int8_t *xq, float xd, float xs,
                       float *t1, float *t2) {
    int32_t isum = 0;
    float scale = 0.0f, mins = 0.0f;
    if (q->format == LLMLAB_QF_Q8_0) {
        const uint8_t *blk = row + 34 * b;
        for (int i = 0; i < 32; i++) isum += (int8_t)blk[2 + i] * xq[i];
        scale = llmlab_q_f16(blk);
    } else if (q->format == LLMLAB_QF_Q4_0) {
        const uint8_t *blk = row + 18 * b;
        for (int i = 0; i < 16; i++) isum += ((blk[2 + i] & 15) - 8) * xq[i] + ((blk[2 + i] >> 4) - 8) * xq[i + 16];
        scale = llmlab_q_f16(blk);
    } else { /* Q4_K: sub-block j of super-block b / 8 */
        const uint8_t *sb = row + 144 * (b / 8);
        int j = (int)(b % 8), sc, mn;
        const uint8_t *qs = sb + 16 + 32 * (j / 2);
        for (int i = 0; i < 32; i++) isum += (j & 1 ? qs[i] >> 4 : qs[i] & 15) * xq[i];
        llmlab_q4k_scale_min(sb + 4, j, &sc, &mn);
        scale = llmlab_q_f16(sb) * (float)sc;
        mins = llmlab_q_f16(sb + 2) * (float)mn;
    }
    *t1 = (scale * xd) * (float)isum;
    *t2 = q->format == LLMLAB_QF_Q4_K ? mins * xs : 0.0f;
}

/* Reference: each activation block is quantized where it is used (no scratch). */
static float dot_gguf_ref(const llmlab_qmat *q, int64_t n, const float *x) {
    const uint8_t *row = q->data + (size_t)n * q->row_bytes;
    float acc1 = 0.0f, acc2 = 0.0f;
    for (int64_t b = 0; b < q->cols / LLMLAB_QBLOCK; b++) {
        int8_t xq[LLMLAB_QBLOCK];
        float xd, xs, t1, t2;
        const float *in = q->in_scale ? q->in_scale + LLMLAB_QBLOCK * b : NULL;
        llmlab_qact_block(x + LLMLAB_QBLOCK * b, in, xq, &xd, &xs);
        gguf_block(q, row, b, xq, xd, xs, &t1, &t2);
        acc1 = acc1 + t1;
        acc2 = acc2 + t2;
    }
    return acc1 - acc2;
}

static float dot_gguf_prepared(const llmlab_qmat *q, int64_t n, const llmlab_qact *a, int m) {
    const uint8_t *row = q->data + (size_t)n * q->row_bytes;
    int64_t nb = q->cols / LLMLAB_QBLOCK;
    const int8_t *xq = a->xq + (size_t)m * a->K;
    const float *xd = a->xd + (size_t)m * nb, *xs = a->xs + (size_t)m * nb;
    float acc1 = 0.0f, acc2 = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        float t1, t2;
        gguf_block(q, row, b, xq + LLMLAB_QBLOCK * b, xd[b], xs[b], &t1, &t2);
        acc1 = acc1 + t1;
        acc2 = acc2 + t2;
    }
    return acc1 - acc2;
}

/* ---- W8A8 ---------------------------------------------------------------------------------- */

static float dot_w8a8(const llmlab_qmat *q, int64_t n, const int8_t *xq, const float *x, float xd) {
    const int8_t *w = (const int8_t *)(q->data + (size_t)n * q->row_bytes);
    float id = inv_or_zero(xd);
    int64_t isum = 0;
    for (int64_t k = 0; k < q->cols; k++)
        isum += w[k] * (xq ? xq[k] : llmlab_qact_code(xin(x, q->in_scale, k), id));
    return ((float)isum * xd) * q->row_scale[n];
}

/* ---- entry points ----------------------------------------------------------------------------- */

void llmlab_qmat_matmul_ref(const llmlab_qmat *q, float *y, const float *x, int M) {
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * q->cols;
        float xd = q->format == LLMLAB_QF_W8A8 ? llmlab_qact_row_scale(xm, q->in_scale, q->cols) : 0.0f;
        for (int64_t n = 0; n < q->rows; n++) {
            float v;
            switch (llmlab_qact_kind_of(q->format)) {
            case LLMLAB_QACT_BLOCK8: v = dot_gguf_ref(q, n, xm); break;
            case LLMLAB_QACT_ROW8: v = dot_w8a8(q, n, NULL, xm, xd); break;
            default: v = dot_f32(q, n, xm, q->in_scale); break;
            }
            y[(size_t)m * q->rows + n] = v;
        }
    }
}

void llmlab_qmat_rows_scalar(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1) {
    llmlab_qact_kind kind = llmlab_qact_kind_of(q->format);
    for (int m = 0; m < a->M; m++)
        for (int64_t n = n0; n < n1; n++) {
            float v;
            if (kind == LLMLAB_QACT_BLOCK8) v = dot_gguf_prepared(q, n, a, m);
            else if (kind == LLMLAB_QACT_ROW8) v = dot_w8a8(q, n, a->xq + (size_t)m * a->K, NULL, a->xd[m]);
            else v = dot_f32(q, n, a->xf + (size_t)m * a->K, NULL);
            y[(size_t)m * q->rows + n] = v;
        }
}

/* ---- activation preparation (scalar; the AVX2 one gives the same bits) ------------------------ */

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

llmlab_status llmlab_qact_prepare(llmlab_qact *a, const llmlab_qmat *q, const float *x, int M, int simd) {
    memset(a, 0, sizeof *a);
    a->M = M;
    a->K = q->cols;
    size_t MK = (size_t)M * (size_t)q->cols, nb = (size_t)q->cols / LLMLAB_QBLOCK;
    llmlab_qact_kind kind = llmlab_qact_kind_of(q->format);
    size_t bytes = kind == LLMLAB_QACT_BLOCK8 ? up64(MK) + 2 * up64((size_t)M * nb * sizeof(float))
                   : kind == LLMLAB_QACT_ROW8 ? up64(MK) + up64((size_t)M * sizeof(float))
                   : q->in_scale          ? MK * sizeof(float)
                                          : 0;
    if (bytes == 0) {
        a->xf = x; /* weight-only without in_scale: x as given */
        return LLMLAB_OK;
    }
    char *buf = malloc(bytes);
    if (!buf) return LLMLAB_ENOMEM;
    a->buf = buf;
    if (kind == LLMLAB_QACT_F32) {
        a->xf = (const float *)(void *)buf;
    } else {
        a->xq = (int8_t *)buf;
        a->xd = (float *)(void *)(buf + up64(MK));
        if (kind == LLMLAB_QACT_BLOCK8) a->xs = (float *)(void *)(buf + up64(MK) + up64((size_t)M * nb * sizeof(float)));
    }
#if defined(__x86_64__) || defined(__i386__)
    if (simd) {
        llmlab_qact_prepare_avx2(a, q, x);
        return LLMLAB_OK;
    }
#endif
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * q->cols;
        if (kind == LLMLAB_QACT_F32) {
            float *o = (float *)a->xf + (size_t)m * q->cols;
            for (int64_t k = 0; k < q->cols; k++) o[k] = xm[k] * q->in_scale[k];
        } else if (kind == LLMLAB_QACT_ROW8) {
            float d = llmlab_qact_row_scale(xm, q->in_scale, q->cols), id = inv_or_zero(d);
            a->xd[m] = d;
            for (int64_t k = 0; k < q->cols; k++) a->xq[(size_t)m * q->cols + k] = llmlab_qact_code(xin(xm, q->in_scale, k), id);
        } else {
            for (size_t b = 0; b < nb; b++)
                llmlab_qact_block(xm + LLMLAB_QBLOCK * b, q->in_scale ? q->in_scale + LLMLAB_QBLOCK * b : NULL,
                                  a->xq + (size_t)m * q->cols + LLMLAB_QBLOCK * b, &a->xd[m * nb + b], &a->xs[m * nb + b]);
        }
    }
    return LLMLAB_OK;
}

void llmlab_qact_free(llmlab_qact *a) {
    free(a->buf);
    a->buf = NULL;
}
