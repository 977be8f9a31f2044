/* quant.c - packing, wrapping and dequantizing llmlab_qmat (quant.h), and the fp8
 * e4m3 conversions.  The byte layouts are described in quant_internal.h; the
 * matmul kernels live in quant_ref.c (reference), quant_matmul.c (dispatch,
 * scalar path) and quant_avx2.c (SIMD path).
 *
 * Packers round to nearest.  Scales that the format stores as f16 are rounded to
 * f16 first (upwards, so no weight clips) and the codes are chosen against the
 * stored scale, so the round-trip error is at most half a step of the scale
 * actually used (the tests check this bound per format). */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/error.h"
#include "quant_internal.h"

/* ---- fp8 e4m3 ------------------------------------------------------------------- */

/* |value| of code c: exponent e = bits 6..3 (bias 7), mantissa m = bits 2..0;
 * e = 0: m/8 * 2^-6 = m / 512 (subnormal); else (1 + m/8) * 2^(e-7) =
 * (8 + m) * 2^e / 1024; e = 15, m = 7 is NaN (no infinities in e4m3). */
#define FP8_MAG(c)                                                                            \
    (((c) & 0x7f) == 0x7f ? NAN                                                               \
     : (((c) >> 3) & 15) == 0                                                                  \
         ? (float)((c) & 7) / 512.0f                                                           \
         : (float)(8 + ((c) & 7)) * (float)(1u << (((c) >> 3) & 15)) / 1024.0f)
#define FP8_VAL(c) (((c) & 0x80) ? -FP8_MAG(c) : FP8_MAG(c))
#define FP8_R4(c) FP8_VAL(c), FP8_VAL((c) + 1), FP8_VAL((c) + 2), FP8_VAL((c) + 3)
#define FP8_R16(c) FP8_R4(c), FP8_R4((c) + 4), FP8_R4((c) + 8), FP8_R4((c) + 12)
#define FP8_R64(c) FP8_R16(c), FP8_R16((c) + 16), FP8_R16((c) + 32), FP8_R16((c) + 48)

/* Why a constant table: decoding is one indexed load (and one gather in the AVX2
 * kernel), and the table is computed by the compiler, not at run time. */
const float llmlab_fp8_e4m3_table[256] = {FP8_R64(0), FP8_R64(64), FP8_R64(128), FP8_R64(192)};

float llmlab_fp8_e4m3_to_f32(uint8_t v) { return llmlab_fp8_e4m3_table[v]; }

uint8_t llmlab_f32_to_fp8_e4m3(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7f); /* NaN */
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7e); /* >= 448 or inf: saturate */
    if (a < 0x3c800000u) {                                /* below 2^-6: subnormal steps of 2^-9 */
        int32_t m = llmlab_q_rne(fabsf(f) * 512.0f);     /* exact scaling; 0..8 (8 = 2^-6) */
        return (uint8_t)(sign | m);
    }
    uint32_t r = a + 0x7ffffu + ((a >> 20) & 1u); /* round to nearest even at mantissa bit 20 */
    uint32_t e = (r >> 23) - 127u + 7u;           /* a carry moves into the exponent */
    return (uint8_t)(sign | (e << 3) | ((r >> 20) & 7u));
}

/* ---- shapes and sizes ---------------------------------------------------------------- */

static const char *format_name(llmlab_qformat f) {
    switch (f) {
    case LLMLAB_QF_Q8_0: return "q8_0";
    case LLMLAB_QF_Q4_0: return "q4_0";
    case LLMLAB_QF_Q4_K: return "q4_k";
    case LLMLAB_QF_I8_ROW: return "i8_row";
    case LLMLAB_QF_I4_SYM: return "i4_sym";
    case LLMLAB_QF_I4_ASYM: return "i4_asym";
    case LLMLAB_QF_FP8: return "fp8";
    case LLMLAB_QF_W8A8: return "w8a8";
    }
    return "?";
}

static int is_group_format(llmlab_qformat f) { return f == LLMLAB_QF_I4_SYM || f == LLMLAB_QF_I4_ASYM; }

/* Weights per block (GGUF formats), per scale group (I4_*), or 1. */
static int block_of(llmlab_qformat f, int group) {
    switch (f) {
    case LLMLAB_QF_Q8_0:
    case LLMLAB_QF_Q4_0: return 32;
    case LLMLAB_QF_Q4_K: return 256;
    case LLMLAB_QF_I4_SYM:
    case LLMLAB_QF_I4_ASYM: return group;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_FP8:
    case LLMLAB_QF_W8A8: return 1;
    }
    return 0;
}

static size_t row_bytes_of(llmlab_qformat f, int64_t cols, int group) {
    switch (f) {
    case LLMLAB_QF_Q8_0: return (size_t)(cols / 32) * 34;
    case LLMLAB_QF_Q4_0: return (size_t)(cols / 32) * 18;
    case LLMLAB_QF_Q4_K: return (size_t)(cols / 256) * 144;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_FP8:
    case LLMLAB_QF_W8A8: return (size_t)cols;
    case LLMLAB_QF_I4_SYM: return (size_t)cols / 2 + 2 * (size_t)(cols / group);
    case LLMLAB_QF_I4_ASYM: return (size_t)cols / 2 + 4 * (size_t)(cols / group);
    }
    return 0;
}

static size_t n_row_scales(const llmlab_qmat *q) {
    switch (q->format) {
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_W8A8: return (size_t)q->rows;
    case LLMLAB_QF_FP8: return q->per_row ? (size_t)q->rows : 1;
    default: return 0;
    }
}

size_t llmlab_qmat_bytes(const llmlab_qmat *q) {
    size_t b = (size_t)q->rows * q->row_bytes + n_row_scales(q) * sizeof(float);
    if (q->in_scale) b += (size_t)q->cols * sizeof(float);
    return b;
}

double llmlab_qmat_bits(const llmlab_qmat *q) {
    double n = (double)q->rows * (double)q->cols;
    return n > 0 ? 8.0 * (double)llmlab_qmat_bytes(q) / n : 0.0;
}

/* Validates format, shape and group; fills the shape fields of *q. */
static llmlab_status check_shape(llmlab_qmat *q, llmlab_qformat f, int64_t rows, int64_t cols, int group,
                                 llmlab_err *err) {
    if (f < LLMLAB_QF_Q8_0 || f > LLMLAB_QF_W8A8)
        return llmlab_err_set(err, LLMLAB_EINVAL, "quant: unknown packed format %d", (int)f);
    if (rows < 1 || cols < 1 || rows > INT32_MAX || cols > INT32_MAX)
        return llmlab_err_set(err, LLMLAB_EINVAL, "quant %s: bad matrix shape [%lld][%lld]", format_name(f),
                              (long long)rows, (long long)cols);
    if (is_group_format(f) && group != 32 && group != 64 && group != 128 && group != 256)
        return llmlab_err_set(err, LLMLAB_EINVAL, "quant %s: group = %d, expected 32, 64, 128 or 256",
                              format_name(f), group);
    int b = block_of(f, group);
    if (cols % b)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "quant %s: cols = %lld is not a multiple of the %s of %d weights", format_name(f),
                              (long long)cols, is_group_format(f) ? "group" : "block", b);
    memset(q, 0, sizeof *q);
    q->format = f;
    q->rows = rows;
    q->cols = cols;
    q->group = b;
    q->row_bytes = row_bytes_of(f, cols, group);
    return LLMLAB_OK;
}

void llmlab_qmat_free(llmlab_qmat *q) {
    if (!q) return;
    if (q->owns_data) free((void *)q->data);
    free(q->row_scale);
    free(q->in_scale);
    memset(q, 0, sizeof *q);
}

/* Allocates data, row scales and the in_scale copy of a packed qmat. */
static llmlab_status alloc_packed(llmlab_qmat *q, int per_row, const float *in_scale, llmlab_err *err) {
    q->per_row = per_row;
    q->owns_data = 1;
    q->data = calloc((size_t)q->rows, q->row_bytes);
    size_t ns = n_row_scales(q);
    if (ns) q->row_scale = calloc(ns, sizeof(float));
    if (in_scale) {
        q->in_scale = malloc((size_t)q->cols * sizeof(float));
        if (q->in_scale) memcpy(q->in_scale, in_scale, (size_t)q->cols * sizeof(float));
    }
    if (!q->data || (ns && !q->row_scale) || (in_scale && !q->in_scale)) {
        llmlab_qmat_free(q);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "quant: out of memory packing a [%lld][%lld] matrix",
                              (long long)q->rows, (long long)q->cols);
    }
    return LLMLAB_OK;
}

/* ---- packers, one per format (row w[cols] into the row's bytes) -------------------------- */

static void put_f16(uint8_t *p, float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* An f16 scale as stored, its magnitude rounded up (never below |v|), so the
 * extreme weight of a block maps inside the code range instead of clipping.
 * Why it matters: scales of blocks with max |w| < ~0.008 are f16 subnormals,
 * spaced 2^-24 apart; rounding such a scale down by up to half a spacing
 * would clip the extreme code by up to 127 * 2^-25. */
static float f16_round_up(float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    if (fabsf(llmlab_f16_to_f32(h)) < fabsf(v)) h++; /* sign-magnitude: +1 is the next magnitude */
    return llmlab_f16_to_f32(h);
}

/* An f16 never above v (the I4_ASYM minimum: no weight falls below it). */
static float f16_round_down(float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    float r = llmlab_f16_to_f32(h);
    if (r > v) h = v > 0 ? (uint16_t)(h - 1) : (uint16_t)(h + 1);
    return llmlab_f16_to_f32(h);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static float absmax(const float *w, int64_t n) {
    float a = 0.0f;
    for (int64_t i = 0; i < n; i++) a = fabsf(w[i]) > a ? fabsf(w[i]) : a;
    return a;
}

static void pack_q8_0_row(uint8_t *dst, const float *w, int64_t cols) {
    for (int64_t b = 0; b < cols / 32; b++, w += 32, dst += 34) {
        float d = f16_round_up(absmax(w, 32) / 127.0f);
        put_f16(dst, d);
        for (int i = 0; i < 32; i++)
            dst[2 + i] = (uint8_t)(int8_t)(d > 0 ? clampi(llmlab_q_rne(w[i] / d), -127, 127) : 0);
    }
}

/* ggml's choice: d = (the weight of largest magnitude) / -8, so that weight maps
 * to code 0 exactly and the other side reaches +7 (all 16 levels used). */
static void pack_q4_0_row(uint8_t *dst, const float *w, int64_t cols) {
    for (int64_t b = 0; b < cols / 32; b++, w += 32, dst += 18) {
        float mx = 0.0f;
        for (int i = 0; i < 32; i++) mx = fabsf(w[i]) > fabsf(mx) ? w[i] : mx;
        float d = f16_round_up(mx / -8.0f);
        put_f16(dst, d);
        for (int i = 0; i < 16; i++) {
            int lo = d != 0 ? clampi(llmlab_q_rne(w[i] / d) + 8, 0, 15) : 8;
            int hi = d != 0 ? clampi(llmlab_q_rne(w[i + 16] / d) + 8, 0, 15) : 8;
            dst[2 + i] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Inverse of llmlab_q4k_scale_min: 6-bit scale codes sc[8] and min codes mn[8]. */
static void q4k_put_scales(uint8_t *s12, const int *sc, const int *mn) {
    for (int j = 0; j < 4; j++) {
        s12[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s12[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        s12[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

/* Q4_K, min/max per sub-block of 32: w = d*sc_j * n - dmin*mn_j.  The offset
 * dmin*mn_j is rounded up to cover the sub-block's minimum (clamped at 0, as
 * ggml keeps mins <= 0), then the step d*sc_j is rounded up to cover its
 * maximum, so only rounding to the nearest of 16 levels remains. */
static void pack_q4_k_block(uint8_t *dst, const float *w) {
    float mn[8], need[8], mx_mn = 0.0f, mx_need = 0.0f;
    int scq[8], mnq[8];
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = -INFINITY;
        for (int i = 0; i < 32; i++) {
            lo = w[32 * j + i] < lo ? w[32 * j + i] : lo;
            hi = w[32 * j + i] > hi ? w[32 * j + i] : hi;
        }
        mn[j] = -lo;
        need[j] = hi; /* completed below once the offset is known */
        mx_mn = mn[j] > mx_mn ? mn[j] : mx_mn;
    }
    float dmin = f16_round_up(mx_mn / 63.0f);
    for (int j = 0; j < 8; j++) {
        mnq[j] = dmin > 0 ? clampi((int)ceilf(mn[j] / dmin), 0, 63) : 0;
        need[j] = (need[j] + dmin * (float)mnq[j]) / 15.0f;
        need[j] = need[j] > 0 ? need[j] : 0.0f;
        mx_need = need[j] > mx_need ? need[j] : mx_need;
    }
    float d = f16_round_up(mx_need / 63.0f);
    put_f16(dst, d);
    put_f16(dst + 2, dmin);
    for (int j = 0; j < 8; j++) scq[j] = d > 0 ? clampi((int)ceilf(need[j] / d), 0, 63) : 0;
    q4k_put_scales(dst + 4, scq, mnq);
    uint8_t *qs = dst + 16;
    memset(qs, 0, 128);
    for (int j = 0; j < 8; j++) {
        float step = d * (float)scq[j], off = dmin * (float)mnq[j];
        for (int i = 0; i < 32; i++) {
            int n = step > 0 ? clampi(llmlab_q_rne((w[32 * j + i] + off) / step), 0, 15) : 0;
            /* chunk j/2 of 32 bytes: even sub-blocks in the low nibbles, odd in the high */
            qs[32 * (j / 2) + i] |= (uint8_t)(j & 1 ? n << 4 : n);
        }
    }
}

static void pack_q4_k_row(uint8_t *dst, const float *w, int64_t cols) {
    for (int64_t b = 0; b < cols / 256; b++) pack_q4_k_block(dst + 144 * b, w + 256 * b);
}

/* Stores nibble n of weight k of an I4 row (32-weight chunks laid out as Q4_0). */
static void put_nibble(uint8_t *row, int64_t k, int n) {
    uint8_t *p = row + (k / 32) * 16 + (k % 16);
    *p = (uint8_t)(k % 32 < 16 ? (*p & 0xF0) | n : (*p & 0x0F) | (n << 4));
}

static void pack_i4_row(uint8_t *dst, const float *w, int64_t cols, int group, int asym) {
    int64_t ng = cols / group;
    uint8_t *scales = dst + cols / 2, *mins = scales + 2 * ng;
    for (int64_t g = 0; g < ng; g++) {
        const float *wg = w + g * group;
        float s, m = 0.0f;
        if (asym) {
            float lo = wg[0], hi = wg[0];
            for (int i = 1; i < group; i++) {
                lo = wg[i] < lo ? wg[i] : lo;
                hi = wg[i] > hi ? wg[i] : hi;
            }
            m = f16_round_down(lo);
            s = f16_round_up((hi - m) / 15.0f);
            put_f16(mins + 2 * g, m);
        } else {
            s = f16_round_up(absmax(wg, group) / 7.0f);
        }
        put_f16(scales + 2 * g, s);
        for (int i = 0; i < group; i++) {
            int n = asym ? (s > 0 ? clampi(llmlab_q_rne((wg[i] - m) / s), 0, 15) : 0)
                         : (s > 0 ? clampi(llmlab_q_rne(wg[i] / s), -8, 7) : 0) + 8;
            put_nibble(dst, g * group + i, n);
        }
    }
}

static void pack_i8_row(uint8_t *dst, float *scale, const float *w, int64_t cols) {
    float s = absmax(w, cols) / 127.0f;
    *scale = s;
    for (int64_t k = 0; k < cols; k++) dst[k] = (uint8_t)(int8_t)(s > 0 ? clampi(llmlab_q_rne(w[k] / s), -127, 127) : 0);
}

static void pack_fp8_codes(uint8_t *dst, const float *w, int64_t n, float s) {
    for (int64_t k = 0; k < n; k++) dst[k] = s > 0 ? llmlab_f32_to_fp8_e4m3(w[k] / s) : 0;
}

/* Non-finite weights, and magnitudes an f16 scale cannot hold, are input errors.
 * W holds rows [r0, r0 + rows) of the matrix (for the message). */
static llmlab_status check_values(llmlab_qformat f, const float *W, int64_t r0, int64_t rows, int64_t cols,
                                  llmlab_err *err) {
    int f16_scales = f != LLMLAB_QF_I8_ROW && f != LLMLAB_QF_W8A8 && f != LLMLAB_QF_FP8;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = W[r * cols + c];
            if (!isfinite(v) || (f16_scales && fabsf(v) > 60000.0f))
                return llmlab_err_set(err, LLMLAB_EINVAL,
                                      "quant %s: weight [%lld][%lld] = %g cannot be packed (%s)", format_name(f),
                                      (long long)(r0 + r), (long long)c, (double)v,
                                      isfinite(v) ? "too large for an f16 scale" : "not finite");
        }
    return LLMLAB_OK;
}

static void pack_row(llmlab_qmat *q, int64_t r, const float *w) {
    uint8_t *dst = (uint8_t *)q->data + (size_t)r * q->row_bytes;
    switch (q->format) {
    case LLMLAB_QF_Q8_0: pack_q8_0_row(dst, w, q->cols); break;
    case LLMLAB_QF_Q4_0: pack_q4_0_row(dst, w, q->cols); break;
    case LLMLAB_QF_Q4_K: pack_q4_k_row(dst, w, q->cols); break;
    case LLMLAB_QF_I4_SYM: pack_i4_row(dst, w, q->cols, q->group, 0); break;
    case LLMLAB_QF_I4_ASYM: pack_i4_row(dst, w, q->cols, q->group, 1); break;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_W8A8: pack_i8_row(dst, &q->row_scale[r], w, q->cols); break;
    case LLMLAB_QF_FP8:
        if (q->per_row) q->row_scale[r] = absmax(w, q->cols) / 448.0f;
        pack_fp8_codes(dst, w, q->cols, q->row_scale[q->per_row ? r : 0]);
        break;
    }
}

/* Rows per chunk of the row reader: 64 rows of f32 scratch (a 14336-wide matrix:
 * 3.5 MiB), so a large matrix (an LM head) never exists as f32 in full. */
#define PACK_CHUNK 64

llmlab_status llmlab_qmat_pack_rows(llmlab_qmat *q, llmlab_qformat f, llmlab_qmat_rows_fn read, void *ctx,
                                    int64_t rows, int64_t cols, int group, int per_row, const float *in_scale,
                                    llmlab_err *err) {
    llmlab_status st = check_shape(q, f, rows, cols, group, err);
    if (st) return st;
    int64_t chunk = rows < PACK_CHUNK ? rows : PACK_CHUNK;
    float *buf = malloc(sizeof(float) * (size_t)(chunk * cols));
    if (!buf)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "quant %s: out of memory for %lld rows of %lld", format_name(f),
                              (long long)chunk, (long long)cols);
    float tensor_amax = 0.0f;
    int per_tensor = f == LLMLAB_QF_FP8 && !per_row;
    for (int64_t r0 = 0; per_tensor && !st && r0 < rows; r0 += chunk) { /* FP8 per tensor: the scale first */
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        read(ctx, r0, n, buf);
        st = check_values(f, buf, r0, n, cols, err);
        float a = absmax(buf, n * cols);
        tensor_amax = a > tensor_amax ? a : tensor_amax;
    }
    if (!st) st = alloc_packed(q, f == LLMLAB_QF_FP8 ? per_row != 0 : 0, in_scale, err);
    if (!st && per_tensor) q->row_scale[0] = tensor_amax / 448.0f;
    for (int64_t r0 = 0; !st && r0 < rows; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        read(ctx, r0, n, buf);
        st = check_values(f, buf, r0, n, cols, err);
        for (int64_t r = 0; !st && r < n; r++) pack_row(q, r0 + r, buf + r * cols);
    }
    free(buf);
    if (st) llmlab_qmat_free(q);
    return st;
}

typedef struct {
    const float *W;
    int64_t cols;
} f32_reader;

static void read_f32(void *ctx, int64_t row0, int64_t n, float *out) {
    const f32_reader *r = ctx;
    memcpy(out, r->W + row0 * r->cols, sizeof(float) * (size_t)(n * r->cols));
}

llmlab_status llmlab_qmat_pack(llmlab_qmat *q, llmlab_qformat f, const float *W, int64_t rows, int64_t cols,
                               int group, int per_row, const float *in_scale, llmlab_err *err) {
    f32_reader r = {W, cols};
    return llmlab_qmat_pack_rows(q, f, read_f32, &r, rows, cols, group, per_row, in_scale, err);
}

llmlab_status llmlab_qmat_pack_codes(llmlab_qmat *q, llmlab_qformat f, const int8_t *codes, const float *scale,
                                     const float *min, int64_t rows, int64_t cols, int group,
                                     const float *in_scale, llmlab_err *err) {
    if (!is_group_format(f))
        return llmlab_err_set(err, LLMLAB_EINVAL, "quant: pack_codes takes i4_sym or i4_asym, not %s",
                              format_name(f));
    int asym = f == LLMLAB_QF_I4_ASYM;
    if (asym && !min) return llmlab_err_set(err, LLMLAB_EINVAL, "quant i4_asym: pack_codes needs the mins");
    llmlab_status st = check_shape(q, f, rows, cols, group, err);
    if (st) return st;
    int lo = asym ? 0 : -8, hi = asym ? 15 : 7;
    int64_t ng = cols / group;
    for (int64_t i = 0; i < rows * cols; i++)
        if (codes[i] < lo || codes[i] > hi)
            return llmlab_err_set(err, LLMLAB_EINVAL, "quant %s: code [%lld][%lld] = %d is outside [%d, %d]",
                                  format_name(f), (long long)(i / cols), (long long)(i % cols), codes[i], lo, hi);
    for (int64_t i = 0; i < rows * ng; i++)
        if (!isfinite(scale[i]) || fabsf(scale[i]) > 65504.0f || (asym && (!isfinite(min[i]) || fabsf(min[i]) > 65504.0f)))
            return llmlab_err_set(err, LLMLAB_EINVAL, "quant %s: scale/min of row %lld group %lld does not fit f16",
                                  format_name(f), (long long)(i / ng), (long long)(i % ng));
    st = alloc_packed(q, 0, in_scale, err);
    if (st) return st;
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *dst = (uint8_t *)q->data + (size_t)r * q->row_bytes;
        uint8_t *scales = dst + cols / 2, *mins = scales + 2 * ng;
        for (int64_t g = 0; g < ng; g++) {
            put_f16(scales + 2 * g, scale[r * ng + g]);
            if (asym) put_f16(mins + 2 * g, min[r * ng + g]);
        }
        for (int64_t k = 0; k < cols; k++) put_nibble(dst, k, codes[r * cols + k] + (asym ? 0 : 8));
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_qmat_wrap(llmlab_qmat *q, llmlab_dtype dtype, const void *data, int64_t rows, int64_t cols,
                               llmlab_err *err) {
    llmlab_qformat f = dtype == LLMLAB_DTYPE_Q8_0   ? LLMLAB_QF_Q8_0
                       : dtype == LLMLAB_DTYPE_Q4_0 ? LLMLAB_QF_Q4_0
                       : dtype == LLMLAB_DTYPE_Q4_K ? LLMLAB_QF_Q4_K
                                                    : (llmlab_qformat)0;
    if (!f)
        return llmlab_err_set(err, LLMLAB_EINVAL, "quant: cannot wrap dtype %s (q8_0, q4_0 or q4_k only)",
                              llmlab_dtype_name(dtype));
    if (!data) return llmlab_err_set(err, LLMLAB_EINVAL, "quant %s: no data to wrap", format_name(f));
    llmlab_status st = check_shape(q, f, rows, cols, 0, err);
    if (st) return st;
    q->data = data;
    return LLMLAB_OK;
}

/* ---- dequantization (the reference meaning of the bits) ------------------------------ */

static void dequant_q8_0(const uint8_t *row, int64_t cols, float *out) {
    for (int64_t b = 0; b < cols / 32; b++, row += 34) {
        float d = llmlab_q_f16(row);
        for (int i = 0; i < 32; i++) *out++ = d * (float)(int8_t)row[2 + i];
    }
}

static void dequant_q4_0(const uint8_t *row, int64_t cols, float *out) {
    for (int64_t b = 0; b < cols / 32; b++, row += 18, out += 32) {
        float d = llmlab_q_f16(row);
        for (int i = 0; i < 16; i++) {
            out[i] = d * (float)((row[2 + i] & 15) - 8);
            out[i + 16] = d * (float)((row[2 + i] >> 4) - 8);
        }
    }
}

/* As ggml: w = (d * sc) * n - (dmin * mn), both products in f32. */
static void dequant_q4_k(const uint8_t *row, int64_t cols, float *out) {
    for (int64_t b = 0; b < cols / 256; b++, row += 144) {
        float d = llmlab_q_f16(row), dmin = llmlab_q_f16(row + 2);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            llmlab_q4k_scale_min(row + 4, j, &sc, &mn);
            float step = d * (float)sc, off = dmin * (float)mn;
            const uint8_t *qs = row + 16 + 32 * (j / 2);
            for (int i = 0; i < 32; i++) *out++ = step * (float)(j & 1 ? qs[i] >> 4 : qs[i] & 15) - off;
        }
    }
}

static void dequant_i4(const uint8_t *row, int64_t cols, int group, int asym, float *out) {
    int64_t ng = cols / group;
    const uint8_t *scales = row + cols / 2, *mins = scales + 2 * ng;
    for (int64_t k = 0; k < cols; k++) {
        const uint8_t *p = row + (k / 32) * 16 + (k % 16);
        int n = k % 32 < 16 ? *p & 15 : *p >> 4;
        float s = llmlab_q_f16(scales + 2 * (k / group));
        out[k] = asym ? s * (float)n + llmlab_q_f16(mins + 2 * (k / group)) : s * (float)(n - 8);
    }
}

void llmlab_qmat_dequant_rows(const llmlab_qmat *q, int64_t row0, int64_t n, float *out) {
    for (int64_t r = row0; r < row0 + n; r++) {
        const uint8_t *row = q->data + (size_t)r * q->row_bytes;
        float *o = out + (r - row0) * q->cols;
        switch (q->format) {
        case LLMLAB_QF_Q8_0: dequant_q8_0(row, q->cols, o); break;
        case LLMLAB_QF_Q4_0: dequant_q4_0(row, q->cols, o); break;
        case LLMLAB_QF_Q4_K: dequant_q4_k(row, q->cols, o); break;
        case LLMLAB_QF_I4_SYM: dequant_i4(row, q->cols, q->group, 0, o); break;
        case LLMLAB_QF_I4_ASYM: dequant_i4(row, q->cols, q->group, 1, o); break;
        case LLMLAB_QF_I8_ROW:
        case LLMLAB_QF_W8A8:
            for (int64_t k = 0; k < q->cols; k++) o[k] = q->row_scale[r] * (float)(int8_t)row[k];
            break;
        case LLMLAB_QF_FP8: {
            float s = q->row_scale[q->per_row ? r : 0];
            for (int64_t k = 0; k < q->cols; k++) o[k] = s * llmlab_fp8_e4m3_table[row[k]];
            break;
        }
        }
        if (q->in_scale)
            for (int64_t k = 0; k < q->cols; k++) o[k] *= q->in_scale[k];
    }
}
