/* dtype.h - element types and scalar conversions between f32, f16 and bf16.
 *
 * These scalar helpers are the reference; SIMD kernels use F16C / shifts and are
 * checked against them.  Rounding to f16/bf16 is round-to-nearest-even, as in
 * PyTorch, so synthetic models and HF fixtures agree bit for bit.
 */
#ifndef LLMLAB_DTYPE_H
#define LLMLAB_DTYPE_H

#include <stdint.h>
#include <string.h>

#include "llmlab/llmlab.h"

/* Bytes per element of the plain types (f32, f16, bf16); 0 for block formats
 * (llmlab_dtype_row_bytes covers both). */
static inline size_t llmlab_dtype_size(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F32 ? 4 : t == LLMLAB_DTYPE_F16 || t == LLMLAB_DTYPE_BF16 ? 2 : 0;
}

/* Weights per block (1 for plain types) and bytes per block. */
static inline int64_t llmlab_dtype_block(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_Q8_0 || t == LLMLAB_DTYPE_Q4_0 ? 32 : t == LLMLAB_DTYPE_Q4_K ? 256 : 1;
}
static inline size_t llmlab_dtype_block_bytes(llmlab_dtype t) {
    switch (t) {
    case LLMLAB_DTYPE_Q8_0: return 34;
    case LLMLAB_DTYPE_Q4_0: return 18;
    case LLMLAB_DTYPE_Q4_K: return 144;
    default: return llmlab_dtype_size(t);
    }
}
/* Bytes of a row of `cols` elements (cols a multiple of the block). */
static inline size_t llmlab_dtype_row_bytes(llmlab_dtype t, int64_t cols) {
    return (size_t)(cols / llmlab_dtype_block(t)) * llmlab_dtype_block_bytes(t);
}

const char *llmlab_dtype_name(llmlab_dtype t); /* "f32", "f16", "bf16" */
/* Parses "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16"; returns 0 on success. */
int llmlab_dtype_parse(const char *s, llmlab_dtype *out);

static inline float llmlab_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t llmlab_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float llmlab_f16_to_f32(uint16_t h);
uint16_t llmlab_f32_to_f16(float f);

/* Converts n elements of type t at src to f32. */
void llmlab_to_f32(float *dst, const void *src, llmlab_dtype t, size_t n);

#endif
