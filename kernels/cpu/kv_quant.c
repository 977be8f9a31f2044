/* kv_quant.c - the KV cache's row codecs (kv_quant.h): scalar references, and a
 * fast decoder that differs only where a vector instruction gives the same bits
 * (F16C widening of f16; the integer decoders are plain loops the compiler may
 * vectorise, with the same multiply-then-add per element). */
#include "kv_quant.h"

#include <math.h>
#include <string.h>

#include "../../core/dtype.h"
#include "simd.h"

#define F16_MAX 65504.0f

int llmlab_kvq_bits(int dtype) {
    switch (dtype) {
    case LLMLAB_KV_F16:
    case LLMLAB_KV_BF16: return 16;
    case LLMLAB_KV_INT8: return 8;
    case LLMLAB_KV_INT4: return 4;
    default: return 32;
    }
}

static int is_int(int dtype) { return dtype == LLMLAB_KV_INT8 || dtype == LLMLAB_KV_INT4; }

size_t llmlab_kvq_code_bytes(const llmlab_kvq_row *f) {
    return (size_t)f->head_dim * (size_t)llmlab_kvq_bits(f->dtype) / 8u;
}

size_t llmlab_kvq_row_bytes(const llmlab_kvq_row *f) {
    size_t b = llmlab_kvq_code_bytes(f);
    if (is_int(f->dtype)) b += (size_t)(f->head_dim / f->group) * 2u * (f->asym ? 2u : 1u);
    return b;
}

size_t llmlab_kvq_channel_bytes(const llmlab_kvq_row *f) { return (size_t)f->head_dim * 2u * (f->asym ? 2u : 1u); }

/* ---- f16 helpers ------------------------------------------------------------------- */

static float h2f(uint16_t h) { return llmlab_f16_to_f32(h); }

static uint16_t f16_sat(float x) {
    if (x > F16_MAX) x = F16_MAX;
    if (x < -F16_MAX) x = -F16_MAX;
    return llmlab_f32_to_f16(x);
}

/* One f16 step away from zero / toward zero of h (finite, not at the saturation ends). */
static uint16_t f16_away(uint16_t h) { return (uint16_t)(h + 1u); }

uint16_t llmlab_kvq_f16_up(float x) {
    if (!(x > 0.0f)) return 0; /* 0, negative or NaN: no scale */
    uint16_t h = f16_sat(x);
    if (h2f(h) < x && h < 0x7bffu) h = f16_away(h); /* rounded down: one step up */
    return h;
}

uint16_t llmlab_kvq_f16_down(float x) {
    if (x != x) return 0;
    uint16_t h = f16_sat(x);
    float v = h2f(h);
    if (v <= x) return h;
    if (h == 0x0000u) return 0x8001u;            /* +0 above a tiny negative x: the smallest negative */
    if (h & 0x8000u) return h < 0xfbffu ? f16_away(h) : h; /* negative: one step more negative */
    return (uint16_t)(h - 1u);                   /* positive: one step toward zero */
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint16_t get16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ---- quantising one group ------------------------------------------------------------- */

/* The parameters of n values at x[i * stride] (use[i] == 0 rows skipped): the f16
 * bits of scale and min.  Symmetric: min 0. */
static void group_params(const float *x, size_t stride, int n, const uint8_t *use, int bits, int asym, uint16_t *hs,
                         uint16_t *hm) {
    float lo = INFINITY, hi = -INFINITY, amax = 0.0f;
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (use && !use[i]) continue;
        float v = x[(size_t)i * stride];
        if (v != v) continue; /* a NaN would poison the range; it decodes as the clamp */
        any = 1;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        if (fabsf(v) > amax) amax = fabsf(v);
    }
    *hs = *hm = 0;
    if (!any) return;
    if (!asym) {
        *hs = llmlab_kvq_f16_up(amax / (float)((1 << (bits - 1)) - 1));
        return;
    }
    *hm = llmlab_kvq_f16_down(lo);
    *hs = llmlab_kvq_f16_up((hi - h2f(*hm)) / (float)((1 << bits) - 1));
}

/* The code of v for scale s and min m: symmetric -qmax..qmax, asymmetric 0..qmax. */
static int quant_one(float v, float s, float m, int bits, int asym) {
    if (!(s > 0.0f)) return 0;
    int qmax = asym ? (1 << bits) - 1 : (1 << (bits - 1)) - 1, qmin = asym ? 0 : -qmax;
    float t = asym ? (v - m) / s : v / s;
    if (!(t > (float)qmin)) return qmin; /* also NaN */
    if (t > (float)qmax) return qmax;
    int c = (int)lrintf(t);
    return c < qmin ? qmin : c > qmax ? qmax : c;
}

static void put_code(uint8_t *codes, int i, int c, int bits, int asym) {
    if (bits == 8) {
        codes[i] = asym ? (uint8_t)c : (uint8_t)(int8_t)c;
        return;
    }
    uint8_t nib = (uint8_t)(asym ? c : c + 8) & 0x0fu;
    uint8_t *p = codes + i / 2;
    *p = (i & 1) ? (uint8_t)((*p & 0x0fu) | (nib << 4)) : (uint8_t)((*p & 0xf0u) | nib);
}

static int get_code(const uint8_t *codes, int i, int bits, int asym) {
    if (bits == 8) return asym ? (int)codes[i] : (int)(int8_t)codes[i];
    int nib = (i & 1) ? codes[i / 2] >> 4 : codes[i / 2] & 0x0f;
    return asym ? nib : nib - 8;
}

/* ---- per-token rows -------------------------------------------------------------------- */

void llmlab_kvq_encode_row(const llmlab_kvq_row *f, const float *x, uint8_t *rec) {
    int hd = f->head_dim;
    switch ((llmlab_kv_dtype)f->dtype) {
    case LLMLAB_KV_F32: memcpy(rec, x, (size_t)hd * sizeof(float)); return;
    case LLMLAB_KV_F16:
        for (int i = 0; i < hd; i++) put16(rec + 2 * i, f16_sat(x[i]));
        return;
    case LLMLAB_KV_BF16:
        for (int i = 0; i < hd; i++) put16(rec + 2 * i, llmlab_f32_to_bf16(x[i]));
        return;
    case LLMLAB_KV_INT8:
    case LLMLAB_KV_INT4: break;
    }
    int bits = llmlab_kvq_bits(f->dtype), G = hd / f->group;
    uint8_t *sc = rec + llmlab_kvq_code_bytes(f), *mn = sc + 2 * G;
    for (int g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * (size_t)f->group;
        uint16_t hs, hm;
        group_params(xg, 1, f->group, NULL, bits, f->asym, &hs, &hm);
        float s = h2f(hs), m = h2f(hm);
        for (int i = 0; i < f->group; i++)
            put_code(rec, g * f->group + i, quant_one(xg[i], s, m, bits, f->asym), bits, f->asym);
        put16(sc + 2 * g, hs);
        if (f->asym) put16(mn + 2 * g, hm);
    }
}

/* Integer rows: per group, x = code * s or min + code * s. */
static void decode_int_row(const llmlab_kvq_row *f, const uint8_t *rec, float *x) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype), G = hd / f->group, gs = f->group;
    const uint8_t *sc = rec + llmlab_kvq_code_bytes(f), *mn = sc + 2 * G;
    for (int g = 0; g < G; g++) {
        float s = h2f(get16(sc + 2 * g)), m = f->asym ? h2f(get16(mn + 2 * g)) : 0.0f;
        float *xg = x + (size_t)g * (size_t)gs;
        int c0 = g * gs;
        if (bits == 8 && f->asym)
            for (int i = 0; i < gs; i++) xg[i] = m + (float)rec[c0 + i] * s;
        else if (bits == 8)
            for (int i = 0; i < gs; i++) xg[i] = (float)(int8_t)rec[c0 + i] * s;
        else if (f->asym)
            for (int i = 0; i < gs; i++) xg[i] = m + (float)get_code(rec, c0 + i, 4, 1) * s;
        else
            for (int i = 0; i < gs; i++) xg[i] = (float)get_code(rec, c0 + i, 4, 0) * s;
    }
}

void llmlab_kvq_decode_row_ref(const llmlab_kvq_row *f, const uint8_t *rec, float *x) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype);
    switch ((llmlab_kv_dtype)f->dtype) {
    case LLMLAB_KV_F32: memcpy(x, rec, (size_t)hd * sizeof(float)); return;
    case LLMLAB_KV_F16:
        for (int i = 0; i < hd; i++) x[i] = h2f(get16(rec + 2 * i));
        return;
    case LLMLAB_KV_BF16:
        for (int i = 0; i < hd; i++) x[i] = llmlab_bf16_to_f32(get16(rec + 2 * i));
        return;
    case LLMLAB_KV_INT8:
    case LLMLAB_KV_INT4: break;
    }
    int G = hd / f->group;
    const uint8_t *sc = rec + llmlab_kvq_code_bytes(f), *mn = sc + 2 * G;
    for (int i = 0; i < hd; i++) {
        int g = i / f->group;
        float s = h2f(get16(sc + 2 * g)), c = (float)get_code(rec, i, bits, f->asym);
        x[i] = f->asym ? h2f(get16(mn + 2 * g)) + c * s : c * s;
    }
}

#if LLMLAB_X86
/* Codes i .. i + 7 (i a multiple of 8) as eight int32: int8 sign-extended, uint8
 * zero-extended, int4 nibbles unpacked in element order (low nibble first) and,
 * symmetric, shifted back by 8.  Exact, like the scalar get_code. */
LLMLAB_SIMD_INLINE __m256i codes8(const uint8_t *codes, int i, int bits, int asym) {
    if (bits == 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(codes + i));
        return asym ? _mm256_cvtepu8_epi32(b) : _mm256_cvtepi8_epi32(b);
    }
    uint32_t w;
    memcpy(&w, codes + i / 2, 4);
    __m128i b = _mm_cvtsi32_si128((int)w), m4 = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    __m256i q = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    return asym ? q : _mm256_sub_epi32(q, _mm256_set1_epi32(8));
}

/* Integer rows, eight values at a time: the same multiply (and add) as the
 * reference, so the same bits; a group that is not a multiple of 8 goes scalar. */
LLMLAB_SIMD_FN static void int_row_avx2(const llmlab_kvq_row *f, const uint8_t *rec, float *x) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype), gs = f->group, G = hd / gs;
    const uint8_t *sc = rec + llmlab_kvq_code_bytes(f), *mn = sc + 2 * G;
    for (int g = 0; g < G; g++) {
        float s = h2f(get16(sc + 2 * g)), m = f->asym ? h2f(get16(mn + 2 * g)) : 0.0f;
        __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
        int c0 = g * gs, i = 0;
        for (; gs % 8 == 0 && i + 8 <= gs; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(codes8(rec, c0 + i, bits, f->asym)), vs);
            _mm256_storeu_ps(x + c0 + i, f->asym ? _mm256_add_ps(vm, v) : v);
        }
        for (; i < gs; i++) {
            float c = (float)get_code(rec, c0 + i, bits, f->asym);
            x[c0 + i] = f->asym ? m + c * s : c * s;
        }
    }
}

/* F16C widening is exact, so this equals the scalar conversion bit for bit
 * (llmlab_f16_to_f32 handles subnormals, inf and NaN the same way). */
LLMLAB_SIMD_FN static void f16_row_avx2(const uint8_t *rec, float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(rec + 2 * i))));
    for (; i < n; i++) x[i] = h2f(get16(rec + 2 * i));
}
#endif

void llmlab_kvq_decode_row(const llmlab_kvq_row *f, const uint8_t *rec, float *x) {
    int hd = f->head_dim;
    switch ((llmlab_kv_dtype)f->dtype) {
    case LLMLAB_KV_F32: memcpy(x, rec, (size_t)hd * sizeof(float)); return;
    case LLMLAB_KV_F16:
#if LLMLAB_X86
        if (llmlab_cpu_use_avx2()) {
            f16_row_avx2(rec, x, hd);
            return;
        }
#endif
        llmlab_kvq_decode_row_ref(f, rec, x);
        return;
    case LLMLAB_KV_BF16:
        for (int i = 0; i < hd; i++) x[i] = llmlab_bf16_to_f32(get16(rec + 2 * i));
        return;
    case LLMLAB_KV_INT8:
    case LLMLAB_KV_INT4:
#if LLMLAB_X86
        if (llmlab_cpu_use_avx2()) {
            int_row_avx2(f, rec, x);
            return;
        }
#endif
        decode_int_row(f, rec, x);
        return;
    }
}

/* ---- keys per channel ------------------------------------------------------------------- */

void llmlab_kvq_encode_channels(const llmlab_kvq_row *f, int n, const float *x, size_t x_stride, const uint8_t *use,
                                uint8_t *codes, size_t code_stride, uint8_t *params) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype);
    uint8_t *sc = params, *mn = params + 2 * hd;
    for (int c = 0; c < hd; c++) {
        uint16_t hs, hm;
        group_params(x + c, x_stride, n, use, bits, f->asym, &hs, &hm);
        float s = h2f(hs), m = h2f(hm);
        for (int r = 0; r < n; r++)
            put_code(codes + (size_t)r * code_stride, c, quant_one(x[(size_t)r * x_stride + c], s, m, bits, f->asym),
                     bits, f->asym);
        put16(sc + 2 * c, hs);
        if (f->asym) put16(mn + 2 * c, hm);
    }
}

void llmlab_kvq_decode_channel_row_ref(const llmlab_kvq_row *f, const uint8_t *codes, const uint8_t *params,
                                       float *x) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype);
    const uint8_t *sc = params, *mn = params + 2 * hd;
    for (int c = 0; c < hd; c++) {
        float s = h2f(get16(sc + 2 * c)), q = (float)get_code(codes, c, bits, f->asym);
        x[c] = f->asym ? h2f(get16(mn + 2 * c)) + q * s : q * s;
    }
}

#if LLMLAB_X86
/* Per channel the parameters change every element, so widen 8 scales (and 8
 * mins) at a time with F16C; codes are widened to f32 exactly; then the same
 * multiply and add as the reference. */
LLMLAB_SIMD_FN static void channel_row_avx2(const llmlab_kvq_row *f, const uint8_t *codes, const uint8_t *params,
                                            float *x) {
    int hd = f->head_dim, bits = llmlab_kvq_bits(f->dtype), c = 0;
    const uint8_t *sc = params, *mn = params + 2 * hd;
    for (; c + 8 <= hd; c += 8) {
        __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(sc + 2 * c)));
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(codes8(codes, c, bits, f->asym)), s);
        if (f->asym)
            v = _mm256_add_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(mn + 2 * c))), v);
        _mm256_storeu_ps(x + c, v);
    }
    for (; c < hd; c++) {
        float s = h2f(get16(sc + 2 * c)), q = (float)get_code(codes, c, bits, f->asym);
        x[c] = f->asym ? h2f(get16(mn + 2 * c)) + q * s : q * s;
    }
}
#endif

void llmlab_kvq_decode_channel_row(const llmlab_kvq_row *f, const uint8_t *codes, const uint8_t *params, float *x) {
#if LLMLAB_X86
    if (llmlab_cpu_use_avx2()) {
        channel_row_avx2(f, codes, params, x);
        return;
    }
#endif
    llmlab_kvq_decode_channel_row_ref(f, codes, params, x);
}
