/* quant_avx2.c - AVX2+FMA+F16C kernels of the packed formats (quant.h), reached
 * only when llmlab_cpu_use_avx2() says so.  The reference is quant_ref.c.
 *
 * Invariance (kernels.h): every output (m, n) owns one 8-lane accumulator (two
 * for Q4_K: the scale term and the min term; integer lanes for W8A8) that
 * advances over K in the same chunk order, and ends in the same reduction tree,
 * whatever the register block (MR rows of x times NR weight rows) it sits in.
 * Register blocks only decide how many outputs advance together, so y[m][n] is
 * bit-identical for any M and any thread count.
 *
 * Families:
 *   weight-only (I8_ROW, FP8, I4_*): 32 weights decoded to four f32 vectors in
 *     registers, four FMAs with x per output; FP8 through f16 bits (fp8_8), I4
 *     as s * n + bias with one FMA.
 *   GGUF (Q8_0, Q4_0, Q4_K): int8 activation blocks of 32 against the weight
 *     block: maddubs (u8 x s8 -> pairs of i16) then madd with ones (-> i32
 *     lanes), one FMA per block with the product of the two scales, as
 *     llama.cpp does.  Q8_0 goes through the sign trick: |w| is unsigned,
 *     sign(x, w) carries the sign, the product is the same and maddubs cannot
 *     saturate (2 * 128 * 127 < 32767); Q4_0 multiplies the unsigned nibbles
 *     and subtracts 8 * (sum of the codes), formed once per activation block.
 *     With AVX-VNNI (runtime check) one vpdpbusd replaces maddubs + madd.
 *     Every variant forms the same exact i32 lanes, so the VNNI and AVX2
 *     paths give the same bits.
 *   W8A8: the same integer dot over a whole row in i32 lanes (exact).
 */
#include <cpuid.h>
#include <math.h>
#include <stdatomic.h>

#include "quant_internal.h"
#include "simd.h"

#if LLMLAB_X86

/* The reduction tree of matmul.c: (lo128 + hi128), then pairs. */
LLMLAB_SIMD_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LLMLAB_SIMD_INLINE int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

LLMLAB_SIMD_INLINE float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LLMLAB_SIMD_INLINE float f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h); /* exact widening, the same value as llmlab_f16_to_f32 */
}

LLMLAB_SIMD_INLINE __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

/* ---- activation preparation (the same bits as the scalar code in quant_ref.c) ---------- */

LLMLAB_SIMD_INLINE __m256 load_xin(const float *x, const float *in, int64_t k) {
    __m256 v = _mm256_loadu_ps(x + k);
    return in ? _mm256_mul_ps(v, _mm256_loadu_ps(in + k)) : v;
}

/* Codes rne(v * id) of 32 values into dst[32] in order; returns their sum.
 * cvtps_epi32 rounds to nearest even like llmlab_q_rne; |v * id| <= 127 so the
 * saturating packs never clip.  The packs interleave 128-bit lanes, and the
 * dword permutation (0,4,1,5,2,6,3,7) puts the 8 groups of 4 codes back in order. */
LLMLAB_SIMD_INLINE int32_t codes32(const __m256 v[4], float id, int8_t *dst) {
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], vid));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], vid));
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)dst, p);
    return hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
}

LLMLAB_SIMD_FN static void prep_block8(llmlab_qact *a, const llmlab_qmat *q, const float *x) {
    int64_t K = q->cols, nb = K / LLMLAB_QBLOCK;
    for (int m = 0; m < a->M; m++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t k = b * LLMLAB_QBLOCK;
            __m256 v[4];
            for (int t = 0; t < 4; t++) v[t] = load_xin(x + (size_t)m * K, q->in_scale, k + 8 * t);
            __m256 mx = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
            float d = hmax8(mx) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            int32_t sum = codes32(v, id, a->xq + (size_t)m * K + k);
            a->xd[m * nb + b] = d;
            a->xs[m * nb + b] = d * (float)sum;
        }
}

LLMLAB_SIMD_FN static void prep_row8(llmlab_qact *a, const llmlab_qmat *q, const float *x) {
    int64_t K = q->cols, K32 = K & ~(int64_t)31;
    for (int m = 0; m < a->M; m++) {
        const float *xm = x + (size_t)m * K;
        __m256 mx = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) mx = _mm256_max_ps(mx, abs_ps(load_xin(xm, q->in_scale, k)));
        float amax = hmax8(mx);
        for (; k < K; k++) {
            float v = q->in_scale ? xm[k] * q->in_scale[k] : xm[k];
            amax = fabsf(v) > amax ? fabsf(v) : amax;
        }
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t *dst = a->xq + (size_t)m * K;
        for (k = 0; k < K32; k += 32) {
            __m256 v[4];
            for (int t = 0; t < 4; t++) v[t] = load_xin(xm, q->in_scale, k + 8 * t);
            codes32(v, id, dst + k);
        }
        for (; k < K; k++) dst[k] = llmlab_qact_code(q->in_scale ? xm[k] * q->in_scale[k] : xm[k], id);
        a->xd[m] = d;
    }
}

LLMLAB_SIMD_FN static void prep_f32(llmlab_qact *a, const llmlab_qmat *q, const float *x) {
    float *o = (float *)a->xf;
    for (int m = 0; m < a->M; m++) {
        const float *xm = x + (size_t)m * q->cols;
        float *om = o + (size_t)m * q->cols;
        int64_t k = 0;
        for (; k + 8 <= q->cols; k += 8) _mm256_storeu_ps(om + k, load_xin(xm, q->in_scale, k));
        for (; k < q->cols; k++) om[k] = xm[k] * q->in_scale[k];
    }
}

void llmlab_qact_prepare_avx2(llmlab_qact *a, const llmlab_qmat *q, const float *x) {
    switch (llmlab_qact_kind_of(q->format)) {
    case LLMLAB_QACT_BLOCK8: prep_block8(a, q, x); break;
    case LLMLAB_QACT_ROW8: prep_row8(a, q, x); break;
    case LLMLAB_QACT_F32: prep_f32(a, q, x); break;
    }
}

/* ---- weight-only formats: f32 activations, weights decoded in registers ------------------- */

/* FP8: 8 codes, each in the high byte of a 16-bit lane, as f32 values / 256.
 * Why not the 256-entry table: it needs a gather per 8 weights, measured 4-5x
 * slower than this (the table stays the reference: scalar path and dequant).
 * e4m3 s.eeee.mmm becomes the f16 s.0eeee.mmm0000000 (an arithmetic shift right
 * by one copies the sign, the mask clears the copy), whose value is exactly the
 * e4m3 value * 2^-8 (exponent bias 15 vs 7; e4m3 subnormals land on f16
 * subnormals), and F16C widens it exactly.  The kernel multiplies the sum by
 * 256 (exact) before the row scale.  The NaN codes 0x7f/0xff would read as
 * +-480; the packer never writes them (it saturates at 448). */
LLMLAB_SIMD_INLINE __m256 fp8_8(__m128i hi_bytes) {
    __m128i h = _mm_and_si128(_mm_srai_epi16(hi_bytes, 1), _mm_set1_epi16((short)0xBF80));
    return _mm256_cvtph_ps(h);
}

/* 32 weights of `row` from column k (a multiple of 32) as four f32 vectors:
 * I8_ROW the codes, FP8 the values / 256 (fp8_8), I4 the dequantized weights
 * s * n + bias from the group's sb[0] = s, sb[1] = bias (bias = -8 s for SYM,
 * exact: s * (n - 8) fits the f32 mantissa, so the FMA rounds nothing). */
LLMLAB_SIMD_INLINE void dec32(const uint8_t *row, int64_t k, const float *sb, const llmlab_qformat f, __m256 w[4]) {
    if (f == LLMLAB_QF_I8_ROW) {
        for (int t = 0; t < 4; t++)
            w[t] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(row + k + 8 * t))));
    } else if (f == LLMLAB_QF_FP8) {
        for (int h = 0; h < 2; h++) {
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(row + k + 16 * h));
            w[2 * h] = fp8_8(_mm_unpacklo_epi8(_mm_setzero_si128(), b));
            w[2 * h + 1] = fp8_8(_mm_unpackhi_epi8(_mm_setzero_si128(), b));
        }
    } else {
        const __m128i m4 = _mm_set1_epi8(15);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(row + k / 2));
        __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
        __m256 vs = _mm256_broadcast_ss(sb), vb = _mm256_broadcast_ss(sb + 1);
        w[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), vs, vb);
        w[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), vs, vb);
        w[2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), vs, vb);
        w[3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), vs, vb);
    }
}

/* I4: scale and bias of the group holding column k of `row`, into sb[2].  Why
 * once per group and not per 32 weights: the f16 loads and conversions cost as
 * much as decoding the 32 nibbles (measured 20-25% of the decode kernel). */
LLMLAB_SIMD_INLINE void group_sb(const llmlab_qmat *q, const uint8_t *row, int64_t k, const llmlab_qformat f, float *sb) {
    const uint8_t *sc = row + q->cols / 2 + 2 * (k / q->group);
    sb[0] = f16c(sc);
    sb[1] = f == LLMLAB_QF_I4_SYM ? -8.0f * sb[0] : f16c(sc + 2 * (q->cols / q->group));
}

/* n (< 8) codes of an I8_ROW / FP8 row tail, zero-padded: code 0 is the value 0
 * in both, so the padding lanes add 0 * 0. */
LLMLAB_SIMD_INLINE __m256 dec8(const uint8_t *row, int64_t k, int n, const llmlab_qformat f) {
    uint8_t buf[8] = {0};
    memcpy(buf, row + k, (size_t)n);
    __m128i c = _mm_loadl_epi64((const __m128i *)(const void *)buf);
    if (f == LLMLAB_QF_FP8) return fp8_8(_mm_unpacklo_epi8(_mm_setzero_si128(), c));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c));
}

LLMLAB_SIMD_INLINE __m256 load_x_tail(const float *x, int n) {
    float buf[8] = {0};
    memcpy(buf, x, (size_t)n * 4);
    return _mm256_loadu_ps(buf);
}

LLMLAB_SIMD_INLINE void tile_wonly(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                                   const llmlab_qformat f, const int MR, const int NR) {
    int64_t K = q->cols;
    const float *x = a->xf + (size_t)m0 * K;
    const uint8_t *w0 = q->data + (size_t)n0 * q->row_bytes;
    __m256 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    const int i4 = f == LLMLAB_QF_I4_SYM || f == LLMLAB_QF_I4_ASYM;
    float sb[4][2] = {{0}};
    int64_t k = 0;
    for (; k + 32 <= K; k += 32)
        for (int j = 0; j < NR; j++) {
            __m256 w[4];
            if (i4 && k % q->group == 0) group_sb(q, w0 + (size_t)j * q->row_bytes, k, f, sb[j]);
            dec32(w0 + (size_t)j * q->row_bytes, k, sb[j], f, w);
            for (int i = 0; i < MR; i++)
                for (int t = 0; t < 4; t++)
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)i * K + k + 8 * t), w[t], acc[i][j]);
        }
    if (f == LLMLAB_QF_I8_ROW || f == LLMLAB_QF_FP8) { /* I4 rows are whole groups of 32 */
        for (; k < K; k += 8) {
            int n = K - k < 8 ? (int)(K - k) : 8;
            for (int j = 0; j < NR; j++) {
                __m256 w = dec8(w0 + (size_t)j * q->row_bytes, k, n, f);
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm256_fmadd_ps(load_x_tail(x + (size_t)i * K + k, n), w, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float v = hsum8(acc[i][j]);
            if (f == LLMLAB_QF_I8_ROW) v = v * q->row_scale[n0 + j];
            if (f == LLMLAB_QF_FP8) v = (v * 256.0f) * q->row_scale[q->per_row ? n0 + j : 0];
            y[(size_t)(m0 + i) * q->rows + n0 + j] = v;
        }
}

/* ---- GGUF formats: int8 activation blocks x weight blocks ----------------------------------- */

/* i32 lanes of the dot of unsigned u8 weights with signed i8 activations. */
LLMLAB_SIMD_INLINE __m256i dot_u8s8(__m256i wu, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wu, x), _mm256_set1_epi16(1));
}

/* AVX-VNNI vpdpbusd: acc + the same i32 lanes as dot_u8s8(wu, x) (sums of 4
 * u8 x s8 products, exact, no i16 saturation step), in one instruction instead
 * of two.  Why inline asm: the avxvnni target attribute would have to spread to
 * every always-inline helper here; the asm is reached only from the *_vnni
 * instantiations, after has_avxvnni() said yes. */
LLMLAB_SIMD_INLINE __m256i dpbusd(__m256i acc, __m256i wu, __m256i x) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(wu), "xm"(x));
    return acc;
}

/* AVX-VNNI (CPUID leaf 7 sub-leaf 1, EAX bit 4); the OS ymm check is already
 * part of llmlab_cpu_use_avx2.  -1 unchecked, then cached (same value from
 * every thread). */
static _Atomic int g_avxvnni = -1;
static int has_avxvnni(void) {
    int v = g_avxvnni;
    if (v < 0) {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        v = __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) ? (int)((eax >> 4) & 1) : 0;
        g_avxvnni = v;
    }
    return v;
}

/* An f16 at any address, widened exactly and broadcast to 8 lanes.  Why not
 * f16c() then a broadcast: vpbroadcastw + vcvtph2ps skip the move to and from
 * a scalar register (measured ~3% on the Q4_0 decode kernel). */
LLMLAB_SIMD_INLINE __m256 f16x8(const uint8_t *p) {
    int16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16(h));
}

/* Weight block b of a Q8_0 / Q4_0 row and its scale.  Q8_0: the 32 signed
 * codes.  Q4_0: the 32 UNSIGNED nibbles n (the -8 is applied later, once per
 * activation block, see tile_q8), weight i < 16 from the low nibble of byte i,
 * weight i + 16 from the high nibble.  Why the broadcast load and the variable
 * shift: vbroadcasti128 from memory costs no ALU slot, and one srlv shifts the
 * upper copy by 4 and the lower by 0, so one AND finishes the unpack (2 ALU ops
 * instead of shift, 2 ANDs and an insert). */
LLMLAB_SIMD_INLINE __m256i load_wblock(const uint8_t *row, int64_t b, const llmlab_qformat f, __m256 *d) {
    if (f == LLMLAB_QF_Q8_0) {
        const uint8_t *blk = row + 34 * b;
        *d = f16x8(blk);
        return _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
    }
    const uint8_t *blk = row + 18 * b;
    *d = f16x8(blk);
    __m256i r = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(blk + 2)));
    return _mm256_and_si256(_mm256_srlv_epi64(r, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(15));
}

/* Q8_0 / Q4_0.  Every output keeps one f32 accumulator over the blocks (one
 * FMA per block by d_w * d_x, horizontal sum once at the end), and its i32
 * lanes per block are the exact sums of 4 consecutive code products, the same
 * integers whichever way they are formed:
 *   Q8_0: the sign trick, maddubs(|w|, sign(x, w)) (no saturation, see top).
 *   Q4_0: maddubs(n, x) - maddubs(8, x) in i16 pairs, = sum (n - 8) x exactly
 *     (|values| <= 2 * 15 * 127 + 2 * 8 * 127 < 32767).  Why: maddubs(8, x)
 *     depends on the activation block only, so it is formed once per x row
 *     and block and serves all NR weight rows, where the sign trick needed
 *     sub, abs and sign per weight row (and sign per pair).
 * VNNI (vnni = 1): one vpdpbusd per pair, on unsigned weights (Q8_0: w + 128
 *   by an XOR of the sign bit; Q4_0: n) and started from the lanes
 *   -(128 or 8) * sum of the 4 codes, formed once per x row and block: the
 *   same exact integers again, in 1 instruction per pair instead of 3-4.
 * d_w * d_x is formed as a vector product of two broadcasts (the same IEEE
 * product as the scalar one) so no scalar multiply sits in the pair loop. */
LLMLAB_SIMD_INLINE void tile_q8(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                                const llmlab_qformat f, const int MR, const int NR, const int vnni) {
    int64_t K = q->cols, nb = K / LLMLAB_QBLOCK;
    const int8_t *xq = a->xq + (size_t)m0 * K;
    const float *xd = a->xd + (size_t)m0 * nb;
    const uint8_t *w0 = q->data + (size_t)n0 * q->row_bytes;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i ws[4], wa[4];
        __m256 dw[4];
        for (int j = 0; j < NR; j++) {
            ws[j] = load_wblock(w0 + (size_t)j * q->row_bytes, b, f, &dw[j]);
            if (f == LLMLAB_QF_Q8_0) wa[j] = vnni ? _mm256_xor_si256(ws[j], _mm256_set1_epi8(-128)) : _mm256_abs_epi8(ws[j]);
            else wa[j] = ws[j];
        }
        for (int i = 0; i < MR; i++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + (size_t)i * K + LLMLAB_QBLOCK * b));
            __m256 dx = _mm256_broadcast_ss(&xd[(size_t)i * nb + b]);
            __m256i x8 = _mm256_setzero_si256();
            if (vnni) {
                __m256i off = _mm256_set1_epi8(f == LLMLAB_QF_Q8_0 ? -128 : 8); /* as u8: 128 or 8 */
                x8 = _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(_mm256_setzero_si256(), off, xv));
                for (int j = 0; j < NR; j++) {
                    __m256 p = _mm256_cvtepi32_ps(dpbusd(x8, wa[j], xv));
                    acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw[j], dx), p, acc[i][j]);
                }
                continue;
            }
            if (f == LLMLAB_QF_Q4_0) x8 = _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv);
            for (int j = 0; j < NR; j++) {
                __m256i p16 = f == LLMLAB_QF_Q8_0 ? _mm256_maddubs_epi16(wa[j], _mm256_sign_epi8(xv, ws[j]))
                                                  : _mm256_sub_epi16(_mm256_maddubs_epi16(ws[j], xv), x8);
                __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw[j], dx), p, acc[i][j]);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(size_t)(m0 + i) * q->rows + n0 + j] = hsum8(acc[i][j]);
}

/* Q4_K's 12 scale bytes as 8 scale codes and 8 min codes in f32 lanes, with
 * 32-bit word operations instead of 16 byte-wise extractions (the scalar
 * decode cost as much as the nibble dot products).  From the layout (bytes
 * s[0..11], words w0 = s[0..3], w1 = s[4..7], w2 = s[8..11]): sub-blocks 0-3
 * have scale s[j] & 63 and min s[j+4] & 63; sub-blocks 4-7 have scale
 * (s[j+4] & 15) | (s[j-4] >> 6) << 4 and min (s[j+4] >> 4) | (s[j] >> 6) << 4,
 * i.e. per byte lane of the words below. */
LLMLAB_SIMD_INLINE void q4k_scales8(const uint8_t *s12, __m256 *sc, __m256 *mn) {
    uint32_t w[3];
    memcpy(w, s12, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    uint64_t scales = (uint64_t)(w[0] & low6) | (uint64_t)((w[2] & low4) | ((w[0] >> 6) & top2) << 4) << 32;
    uint64_t mins = (uint64_t)(w[1] & low6) | (uint64_t)(((w[2] >> 4) & low4) | ((w[1] >> 6) & top2) << 4) << 32;
    *sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)scales)));
    *mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mins)));
}

/* Q4_K: per super-block, the 8 sub-block steps d*sc and offsets dmin*mn are
 * decoded once per weight row; each 32-byte chunk of nibbles holds two
 * sub-blocks (low nibbles, then high), both unsigned, so maddubs takes them
 * directly.  The offsets meet the activation block sums d_b * sum(codes) in a
 * second accumulator, one FMA per super-block for all 8 sub-blocks. */
LLMLAB_SIMD_INLINE void tile_q4k(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                                 const int MR, const int NR, const int vnni) {
    int64_t K = q->cols, nb = K / LLMLAB_QBLOCK;
    const int8_t *xq = a->xq + (size_t)m0 * K;
    const float *xd = a->xd + (size_t)m0 * nb, *xs = a->xs + (size_t)m0 * nb;
    const uint8_t *w0 = q->data + (size_t)n0 * q->row_bytes;
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256 acc[4][4], accm[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = accm[i][j] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < K / 256; sb++) {
        float scale[4][4][8]; /* [i][j][sub-block]: d * sc_t * d_x of the activation block */
        __m256 offs[4];
        for (int j = 0; j < NR; j++) {
            const uint8_t *blk = w0 + (size_t)j * q->row_bytes + 144 * sb;
            __m256 sc, mn;
            q4k_scales8(blk + 4, &sc, &mn);
            __m256 step = _mm256_mul_ps(_mm256_set1_ps(f16c(blk)), sc); /* d * sc: exact, as the reference */
            offs[j] = _mm256_mul_ps(_mm256_set1_ps(f16c(blk + 2)), mn);
            for (int i = 0; i < MR; i++)
                _mm256_storeu_ps(scale[i][j], _mm256_mul_ps(step, _mm256_loadu_ps(xd + (size_t)i * nb + 8 * sb)));
        }
        for (int c = 0; c < 4; c++) {
            __m256i lo[4], hi[4];
            for (int j = 0; j < NR; j++) {
                __m256i raw = _mm256_loadu_si256(
                    (const __m256i *)(const void *)(w0 + (size_t)j * q->row_bytes + 144 * sb + 16 + 32 * c));
                lo[j] = _mm256_and_si256(raw, m4);
                hi[j] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            int64_t b = 8 * sb + 2 * c;
            for (int i = 0; i < MR; i++) {
                const int8_t *xi = xq + (size_t)i * K + LLMLAB_QBLOCK * b;
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)xi);
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(xi + 32));
                for (int j = 0; j < NR; j++) {
                    const __m256i z = _mm256_setzero_si256();
                    __m256i p0 = vnni ? dpbusd(z, lo[j], x0) : dot_u8s8(lo[j], x0);
                    __m256i p1 = vnni ? dpbusd(z, hi[j], x1) : dot_u8s8(hi[j], x1);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&scale[i][j][2 * c]), _mm256_cvtepi32_ps(p0), acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&scale[i][j][2 * c + 1]), _mm256_cvtepi32_ps(p1), acc[i][j]);
                }
            }
        }
        for (int i = 0; i < MR; i++) {
            __m256 s = _mm256_loadu_ps(xs + (size_t)i * nb + 8 * sb);
            for (int j = 0; j < NR; j++) accm[i][j] = _mm256_fmadd_ps(offs[j], s, accm[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) y[(size_t)(m0 + i) * q->rows + n0 + j] = hsum8(acc[i][j]) - hsum8(accm[i][j]);
}

/* ---- W8A8: exact integer dot per row ---------------------------------------------------------------- */

LLMLAB_SIMD_INLINE void tile_w8a8(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                                  const int MR, const int NR) {
    int64_t K = q->cols, K32 = K & ~(int64_t)31;
    const int8_t *xq = a->xq + (size_t)m0 * K;
    const int8_t *w0 = (const int8_t *)(const void *)(q->data + (size_t)n0 * q->row_bytes);
    __m256i acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_si256();
    for (int64_t k = 0; k < K32; k += 32) {
        __m256i ws[4], wa[4];
        for (int j = 0; j < NR; j++) {
            ws[j] = _mm256_loadu_si256((const __m256i *)(const void *)(w0 + (size_t)j * q->row_bytes + k));
            wa[j] = _mm256_abs_epi8(ws[j]);
        }
        for (int i = 0; i < MR; i++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + (size_t)i * K + k));
            for (int j = 0; j < NR; j++)
                acc[i][j] = _mm256_add_epi32(acc[i][j], dot_u8s8(wa[j], _mm256_sign_epi8(xv, ws[j])));
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            const int8_t *w = w0 + (size_t)j * q->row_bytes, *x = xq + (size_t)i * K;
            int64_t isum = hsum8i(acc[i][j]);
            for (int64_t k = K32; k < K; k++) isum += w[k] * x[k];
            y[(size_t)(m0 + i) * q->rows + n0 + j] = ((float)isum * a->xd[m0 + i]) * q->row_scale[n0 + j];
        }
}

/* ---- drivers ------------------------------------------------------------------------------------------ */

LLMLAB_SIMD_INLINE void tile(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                             const llmlab_qformat f, const int MR, const int NR, const int vnni) {
    switch (f) {
    case LLMLAB_QF_Q8_0:
    case LLMLAB_QF_Q4_0: tile_q8(q, a, y, m0, n0, f, MR, NR, vnni); break;
    case LLMLAB_QF_Q4_K: tile_q4k(q, a, y, m0, n0, MR, NR, vnni); break;
    case LLMLAB_QF_W8A8: tile_w8a8(q, a, y, m0, n0, MR, NR); break;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_I4_SYM:
    case LLMLAB_QF_I4_ASYM:
    case LLMLAB_QF_FP8: tile_wonly(q, a, y, m0, n0, f, MR, NR); break;
    }
}

/* Rows [m0, m0 + MR) of x against weight rows [n0, n1): NR-wide tiles, then
 * 1-wide tiles for the tail. */
LLMLAB_SIMD_INLINE void strip(const llmlab_qmat *q, const llmlab_qact *a, float *y, int m0, int64_t n0,
                              int64_t n1, const llmlab_qformat f, const int MR, const int NR, const int vnni) {
    int64_t n = n0;
    for (; n + NR <= n1; n += NR) tile(q, a, y, m0, n, f, MR, NR, vnni);
    for (; n < n1; n++) tile(q, a, y, m0, n, f, MR, 1, vnni);
}

/* 4 rows of x at a time (each decoded weight block serves 4 rows: prefill),
 * then the rest; decode (one row) advances 4 weight rows at once so 4 row
 * streams keep memory busy and 4 independent FMA chains hide the latency.
 * Why NR = 1 for the GGUF formats with 3 or 4 x rows (and 2 for Q8_0): 4 x 2
 * accumulators plus the decoded weights, scales and per-block activation
 * terms exceed the 16 ymm registers and spill; 4 x 1 stays in registers
 * (measured 1.2-1.5x faster at M = 2..4, equal at M = 128).  Decode of the
 * GGUF formats: 3 weight rows (measured 5-15% faster than 4, which spills). */
LLMLAB_SIMD_INLINE void rows_fmt(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1,
                                 const llmlab_qformat f, const int vnni) {
    const int gguf = f == LLMLAB_QF_Q8_0 || f == LLMLAB_QF_Q4_0 || f == LLMLAB_QF_Q4_K;
    const int nr1 = gguf ? 3 : 4, nr4 = gguf ? 1 : 2, nr3 = gguf ? 1 : 2, nr2 = f == LLMLAB_QF_Q8_0 ? 1 : 2;
    int m = 0;
    for (; m + 4 <= a->M; m += 4) strip(q, a, y, m, n0, n1, f, 4, nr4, vnni);
    switch (a->M - m) {
    case 3: strip(q, a, y, m, n0, n1, f, 3, nr3, vnni); break;
    case 2: strip(q, a, y, m, n0, n1, f, 2, nr2, vnni); break;
    case 1: strip(q, a, y, m, n0, n1, f, 1, nr1, vnni); break;
    default: break;
    }
}

/* One instantiation per format, so the format branches fold away. */
#define QROWS_FN(name, fmt, vnni)                                                                           \
    LLMLAB_SIMD_FN static void name(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1) { \
        rows_fmt(q, a, y, n0, n1, fmt, vnni);                                                               \
    }
QROWS_FN(rows_q8_0, LLMLAB_QF_Q8_0, 0)
QROWS_FN(rows_q4_0, LLMLAB_QF_Q4_0, 0)
QROWS_FN(rows_q4_k, LLMLAB_QF_Q4_K, 0)
QROWS_FN(rows_q8_0_vnni, LLMLAB_QF_Q8_0, 1)
QROWS_FN(rows_q4_0_vnni, LLMLAB_QF_Q4_0, 1)
QROWS_FN(rows_q4_k_vnni, LLMLAB_QF_Q4_K, 1)
QROWS_FN(rows_i8, LLMLAB_QF_I8_ROW, 0)
QROWS_FN(rows_i4s, LLMLAB_QF_I4_SYM, 0)
QROWS_FN(rows_i4a, LLMLAB_QF_I4_ASYM, 0)
QROWS_FN(rows_fp8, LLMLAB_QF_FP8, 0)
QROWS_FN(rows_w8a8, LLMLAB_QF_W8A8, 0)

void llmlab_qmat_rows_avx2(const llmlab_qmat *q, const llmlab_qact *a, float *y, int64_t n0, int64_t n1) {
    int vnni = has_avxvnni();
    switch (q->format) {
    case LLMLAB_QF_Q8_0: (vnni ? rows_q8_0_vnni : rows_q8_0)(q, a, y, n0, n1); break;
    case LLMLAB_QF_Q4_0: (vnni ? rows_q4_0_vnni : rows_q4_0)(q, a, y, n0, n1); break;
    case LLMLAB_QF_Q4_K: (vnni ? rows_q4_k_vnni : rows_q4_k)(q, a, y, n0, n1); break;
    case LLMLAB_QF_I8_ROW: rows_i8(q, a, y, n0, n1); break;
    case LLMLAB_QF_I4_SYM: rows_i4s(q, a, y, n0, n1); break;
    case LLMLAB_QF_I4_ASYM: rows_i4a(q, a, y, n0, n1); break;
    case LLMLAB_QF_FP8: rows_fp8(q, a, y, n0, n1); break;
    case LLMLAB_QF_W8A8: rows_w8a8(q, a, y, n0, n1); break;
    }
}

#endif /* LLMLAB_X86 */
