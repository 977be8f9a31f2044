/* kernels.h - CPU kernels of the forward pass.
 *
 * Each fast kernel has a plain-loop reference beside it (suffix _ref) that tests
 * compare against with |out - ref| <= atol + rtol*|ref| on fresh random inputs.
 *
 * Batch invariance contract (DESIGN.md, "Numerics"): the value written for output
 * element (m, n) is computed by the same instruction sequence, with the same
 * K-chunking and the same SIMD lane split, whatever M is and however many threads
 * run.  Threads split over output columns n (weight rows), never over K.
 */
#ifndef LLMLAB_KERNELS_CPU_H
#define LLMLAB_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "../../core/threadpool.h"
#include "llmlab/llmlab.h"

/* y[m][n] = sum_k x[m][k] * W[n][k]  for m < M, n < N.
 *   y: [M][N] f32 (row stride N), x: [M][K] f32 (row stride K),
 *   W: [N][K] in wtype (f32, f16 or bf16), row-major as stored in safetensors,
 *      or a GGUF block type (Q8_0, Q4_0, Q4_K; K a multiple of the block): those
 *      run the packed-format kernels of quant.h (activations quantized to int8
 *      blocks of 32, as llama.cpp does).
 * f32 accumulation.  tp may be NULL (single thread). */
void llmlab_cpu_matmul(float *y, const float *x, const void *W, llmlab_dtype wtype,
                       int M, int N, int K, llmlab_threadpool *tp);

/* Reference: plain loops, f32 accumulation in k order. */
void llmlab_cpu_matmul_ref(float *y, const float *x, const void *W, llmlab_dtype wtype,
                           int M, int N, int K);

/* Gathers row `row` of W ([rows][K] in wtype, block types too) into out[K] as f32
 * (embedding lookup). */
void llmlab_cpu_row_to_f32(float *out, const void *W, llmlab_dtype wtype, int64_t row, int K);

/* Measured read bandwidth of this machine in bytes/s: every thread of tp streams
 * through its share of a buffer much larger than the last-level cache, median of
 * `reps` passes.  Used by benchmarks as the ceiling for decode. */
double llmlab_cpu_read_bandwidth(llmlab_threadpool *tp, size_t bytes, int reps);

/* Name of the SIMD path the matmul dispatches to on this CPU ("avx2+fma+f16c", "scalar"). */
const char *llmlab_cpu_simd_name(void);

/* Tests and benchmarks: force != 0 makes every kernel take the portable scalar path
 * (also batch invariant, but not bit-identical to the SIMD path); 0 restores the
 * best path for this CPU.  Call it only while no kernel is running. */
void llmlab_cpu_force_scalar(int force);

#endif
