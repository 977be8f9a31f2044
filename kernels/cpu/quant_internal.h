/* quant_internal.h - internal to kernels/cpu/quant*.c: the byte layouts of the
 * packed formats, the activation preparation shared by the reference and the
 * fast kernels, and the per-path row kernels.
 *
 * Row layouts (row r at q->data + r * q->row_bytes):
 *   Q8_0, Q4_0, Q4_K    ggml blocks, exactly as in a GGUF file (llmlab.h).
 *   I8_ROW, W8A8        int8 code[cols]; w = row_scale[r] * code.
 *   FP8                 e4m3 code[cols]; w = scale * fp8(code), scale = row_scale[r]
 *                       (per row) or row_scale[0] (per tensor).
 *   I4_SYM, I4_ASYM     nibbles[cols / 2], then f16 scale[cols / group], then (ASYM)
 *                       f16 min[cols / group].  The nibbles of each 32 weights take
 *                       16 bytes as in Q4_0: weight i < 16 in the low nibble of
 *                       byte i, weight i + 16 in the high nibble of byte i, so one
 *                       16-byte load and two masks give 32 weights in order.
 *                       Stored nibble n: SYM w = s * (n - 8), ASYM w = s * n + m.
 */
#ifndef LLMLAB_KERNELS_CPU_QUANT_INTERNAL_H
#define LLMLAB_KERNELS_CPU_QUANT_INTERNAL_H

#include <string.h>

#include "../../core/dtype.h"
#include "quant.h"

#define LLMLAB_QBLOCK 32 /* activation block of the GGUF formats (llama.cpp's Q8_0) */

/* fp8 e4m3 value of every code (a compile-time constant table, quant.c). */
extern const float llmlab_fp8_e4m3_table[256];

/* An f16 stored at any byte address, as f32. */
static inline float llmlab_q_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return llmlab_f16_to_f32(h);
}

/* Q4_K sub-block j (0..7) scale and min codes from the 12 packed bytes:
 * j < 4: the low 6 bits of bytes j and j + 4; j >= 4: the low / high nibble of
 * byte j + 4 with the two high bits taken from the top of bytes j - 4 / j. */
static inline void llmlab_q4k_scale_min(const uint8_t *s12, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s12[j] & 63;
        *mn = s12[j + 4] & 63;
    } else {
        *sc = (s12[j + 4] & 0xF) | ((s12[j - 4] >> 6) << 4);
        *mn = (s12[j + 4] >> 4) | ((s12[j] >> 6) << 4);
    }
}

/* Round to nearest, ties to even, for |v| < 2^22 (the activation codes).  The
 * magic constant pushes the fraction out of the f32 mantissa, so the add rounds
 * in the FPU's default mode (nearest even), exactly what _mm256_cvtps_epi32 does
 * in the SIMD preparation; no libm call. */
static inline int32_t llmlab_q_rne(float v) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float t = v + magic; /* no -ffast-math: the compiler keeps the rounding add */
    return (int32_t)(t - magic);
}

/* Activations prepared once per matmul call (the fast paths). */
typedef struct {
    int M;
    int64_t K;
    const float *xf; /* [M][K] f32 x * in_scale (weight-only formats) */
    int8_t *xq;      /* [M][K] int8 codes (GGUF formats, W8A8) */
    float *xd;       /* GGUF: [M][K/32] block scales; W8A8: [M] row scales */
    float *xs;       /* GGUF: [M][K/32] block scale * sum of the block's codes */
    void *buf;       /* the one allocation behind the arrays above */
} llmlab_qact;

/* Kind of activation handling of a format. */
typedef enum { LLMLAB_QACT_F32 = 0, LLMLAB_QACT_BLOCK8 = 1, LLMLAB_QACT_ROW8 = 2 } llmlab_qact_kind;
llmlab_qact_kind llmlab_qact_kind_of(llmlab_qformat f);

/* One activation block of 32: codes q = rne(x' / d), d = max|x'| / 127 (0 for an
 * all-zero block), s = d * sum(q), with x' = x * in_scale (in_scale may be NULL). */
void llmlab_qact_block(const float *x, const float *in_scale, int8_t q[LLMLAB_QBLOCK], float *d, float *s);
/* W8A8: the per-token scale d = max|x'| / 127 of a row of K, and one code. */
float llmlab_qact_row_scale(const float *x, const float *in_scale, int64_t K);
static inline int8_t llmlab_qact_code(float v, float inv_d) {
    int32_t c = llmlab_q_rne(v * inv_d);
    return (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
}

/* Prepares x[M][K] for q (scalar or SIMD, the same bits); LLMLAB_ENOMEM when the
 * scratch cannot be allocated.  llmlab_qact_free releases it. */
llmlab_status llmlab_qact_prepare(llmlab_qact *a, const llmlab_qmat *q, const float *x, int M, int simd);
void llmlab_qact_free(llmlab_qact *a);

/* Scalar kernel on prepared activations: y[m][n] for every m and n in [n0, n1).
 * The same arithmetic as llmlab_qmat_matmul_ref, bit for bit. */
void llmlab_qmat_rows_scalar(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1);

#if defined(__x86_64__) || defined(__i386__)
/* AVX2 kernels (quant_avx2.c); call only when llmlab_cpu_use_avx2(). */
void llmlab_qmat_rows_avx2(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1);
void llmlab_qact_prepare_avx2(llmlab_qact *a, const llmlab_qmat *q, const float *x);
#endif

#endif
