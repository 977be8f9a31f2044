/* dtype.c - scalar f16 conversions (IEEE binary16) and dtype names. */
#include "dtype.h"

#include <string.h>

const char *llmlab_dtype_name(llmlab_dtype t) {
    switch (t) {
    case LLMLAB_DTYPE_F32: return "f32";
    case LLMLAB_DTYPE_F16: return "f16";
    case LLMLAB_DTYPE_BF16: return "bf16";
    case LLMLAB_DTYPE_Q8_0: return "q8_0";
    case LLMLAB_DTYPE_Q4_0: return "q4_0";
    case LLMLAB_DTYPE_Q4_K: return "q4_k";
    }
    return "?";
}

int llmlab_dtype_parse(const char *s, llmlab_dtype *out) {
    if (!strcmp(s, "f32") || !strcmp(s, "float32")) *out = LLMLAB_DTYPE_F32;
    else if (!strcmp(s, "f16") || !strcmp(s, "float16")) *out = LLMLAB_DTYPE_F16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = LLMLAB_DTYPE_BF16;
    else return -1;
    return 0;
}

float llmlab_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t llmlab_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
    if (absu < 0x38800000u) { /* subnormal or zero in f16 */
        if (absu < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t e = absu >> 23;
        uint32_t m = (absu & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = 1u << (shift - 1);
        uint32_t rest = m & ((1u << shift) - 1);
        uint32_t r = m >> shift;
        if (rest > half || (rest == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u); /* round to nearest even at bit 13 */
    r -= (127u - 15u) << 23;
    return (uint16_t)(sign | (r >> 13));
}

void llmlab_to_f32(float *dst, const void *src, llmlab_dtype t, size_t n) {
    if (t == LLMLAB_DTYPE_F32) {
        memcpy(dst, src, n * 4);
    } else if (t == LLMLAB_DTYPE_F16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = llmlab_f16_to_f32(s[i]);
    } else {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = llmlab_bf16_to_f32(s[i]);
    }
}
