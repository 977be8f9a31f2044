/* quant.h - packed weight formats and their CPU kernels (docs/quantization.md).
 *
 * One packed matrix type, llmlab_qmat, for every scheme the quant plugins and
 * the GGUF loader use.  Each format has
 *   - a packer from f32 rows (round to nearest; AWQ/GPTQ choose their own codes
 *     through llmlab_qmat_pack_codes),
 *   - a dequantizer (the reference meaning of the bits),
 *   - a scalar reference matmul and a SIMD fast matmul, batch invariant
 *     (kernels.h contract: threads split over weight rows, never over K).
 *
 * Activations: weight-only formats (I8_ROW, I4_*, FP8) multiply f32 activations
 * (W8A16/W4A16 semantics: the weight is dequantized in registers).  The GGUF
 * formats (Q8_0, Q4_0, Q4_K) quantize each activation row to int8 blocks of 32
 * with an f32 scale first, as llama.cpp does, and take integer dot products;
 * W8A8 (SmoothQuant) quantizes activations per token to int8.  Both references
 * do the same activation quantization, so fast vs reference differs only by
 * f32 summation order.
 *
 * in_scale (AWQ, SmoothQuant): when non-NULL, the matmul computes
 * y = (x * in_scale) W^T, i.e. the packed W already carries the inverse scaling
 * of its input channels; dequant_rows returns W * in_scale (the effective weight).
 */
#ifndef LLMLAB_KERNELS_CPU_QUANT_H
#define LLMLAB_KERNELS_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../../core/threadpool.h"
#include "llmlab/llmlab.h"

typedef enum {
    LLMLAB_QF_Q8_0 = 1,    /* ggml Q8_0 (llmlab.h LLMLAB_DTYPE_Q8_0), block 32, 8.5 bits */
    LLMLAB_QF_Q4_0 = 2,    /* ggml Q4_0, block 32, 4.5 bits */
    LLMLAB_QF_Q4_K = 3,    /* ggml Q4_K, super-block 256, 4.5 bits */
    LLMLAB_QF_I8_ROW = 4,  /* int8, one f32 scale per row (per output channel), symmetric */
    LLMLAB_QF_I4_SYM = 5,  /* int4 in [-8, 7], one f16 scale per `group` weights of a row */
    LLMLAB_QF_I4_ASYM = 6, /* uint4 in [0, 15], f16 scale and f16 min per group: w = s*q + m */
    LLMLAB_QF_FP8 = 7,     /* fp8 e4m3 (OCP, max 448), f32 scale per tensor or per row */
    LLMLAB_QF_W8A8 = 8     /* int8 per-row f32 scale; activations int8 per token (SmoothQuant) */
} llmlab_qformat;

typedef struct {
    llmlab_qformat format;
    int64_t rows, cols;    /* the matrix [rows][cols]; cols a multiple of the block/group */
    int group;             /* I4_*: weights per scale (32, 64, 128); else the format's block */
    int per_row;           /* FP8: 1 = one scale per row, 0 = one per tensor */
    const uint8_t *data;   /* packed rows, row r at data + r * row_bytes */
    size_t row_bytes;
    float *row_scale;      /* [rows] I8_ROW, W8A8, FP8 per row; [1] FP8 per tensor; else NULL */
    float *in_scale;       /* [cols] or NULL (see above) */
    int owns_data;         /* 1: data was allocated by the packer and is freed with the qmat */
} llmlab_qmat;

/* Bytes the packed weights take (data + scales), for bits per weight and resident bytes. */
size_t llmlab_qmat_bytes(const llmlab_qmat *q);
double llmlab_qmat_bits(const llmlab_qmat *q); /* 8 * bytes / (rows * cols) */

/* Packs W[rows][cols] (f32) by round to nearest.  group: I4_* group size; ignored
 * otherwise.  per_row: FP8 scale granularity.  in_scale[cols] (or NULL) is copied
 * and W is expected to be the already-scaled weight W / in_scale.  Fills *q
 * (owning its buffers).  EINVAL naming the problem for a cols that is not a
 * multiple of the block or group, an unknown format or group. */
llmlab_status llmlab_qmat_pack(llmlab_qmat *q, llmlab_qformat f, const float *W, int64_t rows, int64_t cols,
                               int group, int per_row, const float *in_scale, llmlab_err *err);

/* The same, reading W through read(ctx, row0, n, out[n][cols]) in chunks of rows,
 * so a large matrix is never held as f32 in full (plugins pass the host's
 * weight_rows; FP8 per tensor reads the rows twice: the scale, then the codes). */
typedef void (*llmlab_qmat_rows_fn)(void *ctx, int64_t row0, int64_t n, float *out);
llmlab_status llmlab_qmat_pack_rows(llmlab_qmat *q, llmlab_qformat f, llmlab_qmat_rows_fn read, void *ctx,
                                    int64_t rows, int64_t cols, int group, int per_row, const float *in_scale,
                                    llmlab_err *err);

/* Wraps GGUF block data in place (no copy, owns_data = 0): dtype Q8_0, Q4_0 or Q4_K. */
llmlab_status llmlab_qmat_wrap(llmlab_qmat *q, llmlab_dtype dtype, const void *data, int64_t rows, int64_t cols,
                               llmlab_err *err);

/* Packs given integer codes for the group formats (GPTQ/AWQ decide the codes and
 * scales themselves): codes[rows][cols] in the format's range, scale[rows][cols/group]
 * and, for I4_ASYM, min[rows][cols/group] (w = scale * code + min; I4_SYM:
 * w = scale * code).  Scales are stored as f16, rounded. */
llmlab_status llmlab_qmat_pack_codes(llmlab_qmat *q, llmlab_qformat f, const int8_t *codes, const float *scale,
                                     const float *min, int64_t rows, int64_t cols, int group,
                                     const float *in_scale, llmlab_err *err);

void llmlab_qmat_free(llmlab_qmat *q); /* frees what the qmat owns; safe on a zeroed qmat */

/* Rows [row0, row0 + n) of the effective weight as f32 into out[n][cols]. */
void llmlab_qmat_dequant_rows(const llmlab_qmat *q, int64_t row0, int64_t n, float *out);

/* y[M][rows] = x[M][cols] W^T.  Fast path (SIMD when the CPU has it), threaded
 * over rows; batch invariant. */
void llmlab_qmat_matmul(const llmlab_qmat *q, float *y, const float *x, int M, llmlab_threadpool *tp);
/* The scalar reference of the same arithmetic (same activation quantization). */
void llmlab_qmat_matmul_ref(const llmlab_qmat *q, float *y, const float *x, int M);

/* fp8 e4m3 (OCP: bias 7, no infinities, 0x7f/0xff NaN, max 448) conversions. */
float llmlab_fp8_e4m3_to_f32(uint8_t v);
uint8_t llmlab_f32_to_fp8_e4m3(float f); /* round to nearest even, saturating to +-448 */

#endif
