/* cuda_quant.h - CUDA kernels for the packed weight formats (C API).
 *
 * A packed llmlab_qmat (kernels/cpu/quant.h) is uploaded to the device with its
 * bytes unchanged: each row keeps the CPU layout (quant_internal.h), only the
 * row pitch is rounded up to 16 bytes so every row starts 16-byte aligned.
 * Three paths compute y[M][rows] = x[M][cols] W^T on the device:
 *
 *   GEMV  the dequantize-fused kernel (quant_gemv.cu): one block of 128 threads
 *         per 4 weight rows and per 8 (int4: 4) activation rows, 16-byte loads, the
 *         reduction over cols split across the block in a fixed order, warp
 *         shuffles, f32 accumulation.  Activations f32.  Meant for decode
 *         (M = 1..32) and used for every M in deterministic mode.
 *   MMA   int4 formats only (quant_mma.cu): weights dequantized in registers
 *         to bf16 and multiplied with mma.sync (m16n8k16), activations rounded
 *         to bf16, f32 accumulation.  16 weight rows and up to 32 activation
 *         rows per block; the fast decode path for int4 at M = 1..32.
 *   GEMM  dequantize tiles of W to bf16 + cuBLAS (quant_gemm.cu): activations
 *         rounded to bf16, f32 accumulation on the tensor cores.  Meant for
 *         prefill.  Dense matrices go to cuBLAS as stored (f16, bf16, f32).
 *
 * Numerics, per format (the same meaning as llmlab_qmat_matmul_ref):
 *   I8_ROW, FP8, I4_SYM, I4_ASYM, BF16   weights dequantized in registers, f32
 *        activations (x * in_scale when the qmat has one), f32 accumulation;
 *        only the summation order differs from the CPU reference.
 *   Q8_0, Q4_0   each activation row is quantized to int8 blocks of 32 first,
 *        exactly as the CPU reference does (same codes, same scales), then
 *        integer dot products per block (dp4a), so only the f32 accumulation of
 *        the block results differs.
 *   GEMM path    W dequantized (effective weight, in_scale folded in) and x
 *        rounded to bf16: compare it with dequant(W) x within bf16 tolerance.
 *   MMA path     the weight, its scale and x rounded to bf16 (about 2^-8
 *        relative each): compare with the CPU reference within bf16 tolerance.
 *
 * Batch invariance: the GEMV and MMA kernels' value of y[m][n] does not depend
 * on M (same partition of cols over threads and warps, same reduction order,
 * for every M and every M tile).  The GEMM path is not batch invariant (cuBLAS
 * picks kernels by shape); in deterministic mode LLMLAB_CUDA_PATH_AUTO takes
 * the GEMV kernel for every M and format (f32 arithmetic, closest to the CPU).
 *
 * Not supported on the device: Q4_K and W8A8 (LLMLAB_EUNSUPPORTED at upload).
 *
 * Every CUDA and cuBLAS call is checked; failures come back as llmlab_err
 * (LLMLAB_EUNSUPPORTED for a missing device, LLMLAB_ENOMEM for device memory,
 * LLMLAB_EINVAL for bad arguments, LLMLAB_EIO for a failed kernel or copy).
 * Built only with CUDA (LLMLAB_HAVE_CUDA). */
#ifndef LLMLAB_CUDA_QUANT_H
#define LLMLAB_CUDA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/cpu/quant.h"

/* The format of a device matrix: an llmlab_qformat, or one of these for a dense
 * matrix (bf16 is the baseline; the values stay clear of llmlab_qformat). */
#define LLMLAB_CUDA_DENSE_BF16 0
#define LLMLAB_CUDA_DENSE_F16 100
#define LLMLAB_CUDA_DENSE_F32 101

typedef struct llmlab_cuda_qctx llmlab_cuda_qctx; /* device, stream, cuBLAS, workspace */
typedef struct llmlab_cuda_wmat llmlab_cuda_wmat; /* a weight matrix on the device */
typedef struct llmlab_cuda_timer llmlab_cuda_timer;

typedef struct {
    int device;        /* CUDA device index (default 0) */
    int deterministic; /* 1: AUTO always takes the batch-invariant GEMV kernel */
    int gemv_max_m;    /* AUTO takes GEMV for M <= this (0: 32) */
} llmlab_cuda_qopts;

typedef enum {
    LLMLAB_CUDA_PATH_AUTO = 0, /* deterministic: GEMV; else M <= gemv_max_m: MMA for the
                                * int4 formats, GEMV for the others; larger M: GEMM */
    LLMLAB_CUDA_PATH_GEMV = 1, /* dequantize-fused kernel, any M (tiles of 8 rows of x) */
    LLMLAB_CUDA_PATH_GEMM = 2, /* bf16 tiles + cuBLAS (dense bf16: cuBLAS on W directly) */
    LLMLAB_CUDA_PATH_MMA = 3   /* int4 only: tensor-core skinny GEMM, bf16 operands */
} llmlab_cuda_path;

/* ---- context ------------------------------------------------------------------ */

/* opts may be NULL (device 0, not deterministic).  EUNSUPPORTED without a device. */
llmlab_status llmlab_cuda_qctx_create(llmlab_cuda_qctx **out, const llmlab_cuda_qopts *opts, llmlab_err *err);
void llmlab_cuda_qctx_free(llmlab_cuda_qctx *c); /* NULL is fine */
/* Waits for the context's stream; reports an asynchronous kernel failure. */
llmlab_status llmlab_cuda_qctx_sync(llmlab_cuda_qctx *c, llmlab_err *err);
size_t llmlab_cuda_qctx_l2_bytes(const llmlab_cuda_qctx *c); /* the device's L2 cache size */

/* ---- device matrices ---------------------------------------------------------------- */

/* Copies q (data, row_scale, in_scale) to the device.  EINVAL when q's row_bytes,
 * group or cols do not match its format; EUNSUPPORTED for Q4_K and W8A8. */
llmlab_status llmlab_cuda_wmat_upload(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const llmlab_qmat *q,
                                      llmlab_err *err);
/* A dense bf16 matrix from W[rows][cols] f32 (rounded to nearest even); cols a
 * multiple of 8. */
llmlab_status llmlab_cuda_wmat_upload_bf16(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const float *W,
                                           int64_t rows, int64_t cols, llmlab_err *err);
/* A dense matrix from the stored rows data[rows][cols] of dtype LLMLAB_DTYPE_F32,
 * F16 or BF16 (llmlab.h), copied unchanged (format LLMLAB_CUDA_DENSE_F32, F16,
 * BF16).  cols must fill whole 16-byte packets: a multiple of 4 (f32) or 8
 * (f16, bf16); EINVAL naming the shape otherwise.  Numerics of the paths:
 *   GEMV  weights converted exactly to f32, f32 activations and accumulation
 *         (batch invariant, as for every format);
 *   GEMM  f16: x rounded to f16 (|x| > 65504 becomes inf), cuBLAS f16 x f16
 *         -> f32 with f32 accumulation; bf16: x rounded to bf16; f32: cuBLAS
 *         on the f32 operands with CUBLAS_COMPUTE_32F (no TF32). */
llmlab_status llmlab_cuda_wmat_upload_dense(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const void *data, int dtype,
                                            int64_t rows, int64_t cols, llmlab_err *err);
void llmlab_cuda_wmat_free(llmlab_cuda_wmat *w); /* NULL is fine */
/* llmlab_qformat or LLMLAB_CUDA_DENSE_BF16 / _F16 / _F32 */
int llmlab_cuda_wmat_format(const llmlab_cuda_wmat *w);
/* Bytes one pass over the matrix reads: packed weights + scales (+ in_scale),
 * without the row padding; what "effective bandwidth" counts. */
size_t llmlab_cuda_wmat_bytes(const llmlab_cuda_wmat *w);

/* ---- matmul --------------------------------------------------------------------- */

/* y[M][rows] = x[M][cols] W^T on the context's stream (asynchronous: errors of
 * the kernels themselves show at the next sync).  x and y are device pointers,
 * x 16-byte aligned.  M >= 1. */
llmlab_status llmlab_cuda_matmul(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                                 llmlab_cuda_path path, llmlab_err *err);

/* ---- device memory and timing (for tests and benchmarks) ----------------------------- */

llmlab_status llmlab_cuda_mem_alloc(llmlab_cuda_qctx *c, void **p, size_t bytes, llmlab_err *err);
void llmlab_cuda_mem_free(void *p); /* NULL is fine */
llmlab_status llmlab_cuda_mem_h2d(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes, llmlab_err *err);
llmlab_status llmlab_cuda_mem_d2h(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes, llmlab_err *err);
/* Asynchronous device-to-device copy on the context's stream. */
llmlab_status llmlab_cuda_mem_d2d(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes, llmlab_err *err);
/* Fills bytes with the byte value v (asynchronous; e.g. NaN poison 0xff). */
llmlab_status llmlab_cuda_mem_set(llmlab_cuda_qctx *c, void *p, int v, size_t bytes, llmlab_err *err);

/* Seconds per call of `iters` calls llmlab_cuda_matmul(c, w[i % n], y, x, M,
 * path), i = 0, 1, ..., timed with CUDA events.  graph = 1 captures the calls
 * into a CUDA graph and times one replay (no host launch gaps between the
 * kernels, as a decode step run from a graph); graph = 0 times plain launches.
 * Make one call with graph = 0 first: workspaces are allocated then, and
 * allocation is not allowed during a capture. */
llmlab_status llmlab_cuda_time_matmuls(llmlab_cuda_qctx *c, llmlab_cuda_wmat *const *w, int n, float *y, const float *x,
                                       int M, llmlab_cuda_path path, int iters, int graph, double *seconds,
                                       llmlab_err *err);

/* CUDA events on the context's stream: start, then stop gives the seconds
 * between them (stop waits for the stream). */
llmlab_status llmlab_cuda_timer_create(llmlab_cuda_timer **t, llmlab_err *err);
void llmlab_cuda_timer_free(llmlab_cuda_timer *t);
llmlab_status llmlab_cuda_timer_start(llmlab_cuda_timer *t, llmlab_cuda_qctx *c, llmlab_err *err);
llmlab_status llmlab_cuda_timer_stop(llmlab_cuda_timer *t, llmlab_cuda_qctx *c, double *seconds, llmlab_err *err);

#ifdef __cplusplus
}
#endif
#endif
