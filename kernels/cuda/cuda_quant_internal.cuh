/* cuda_quant_internal.cuh - shared by kernels/cuda/quant_*.cu (and ops.cu, for
 * the error helpers): the device matrix and context structs, error helpers and
 * the kernel launchers. */
#ifndef LLMLAB_CUDA_QUANT_INTERNAL_CUH
#define LLMLAB_CUDA_QUANT_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_quant.h"

struct llmlab_cuda_wmat {
    int format;            /* llmlab_qformat or LLMLAB_CUDA_DENSE_BF16 / _F16 / _F32 */
    int64_t rows, cols;    /* the matrix [rows][cols] */
    int group;             /* I4_*: weights per scale; Q8_0/Q4_0: 32; else 0 */
    int per_row;           /* FP8: 1 = row_scale[rows], 0 = row_scale[1] */
    uint8_t *data;         /* [rows][pitch] bytes, each row as on the CPU + padding */
    size_t row_bytes;      /* bytes of a row as packed (without padding) */
    size_t pitch;          /* row_bytes rounded up to 16: 16-byte aligned rows */
    float *row_scale;      /* [rows] (I8_ROW, FP8 per row), [1] (FP8 per tensor) or NULL */
    float *in_scale;       /* [cols] or NULL */
    int device;
};

struct llmlab_cuda_qctx {
    int device;
    int deterministic;
    int gemv_max_m;
    size_t l2_bytes;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;         /* cuBLAS workspace (32 MiB) */
    /* Workspace, grown on demand (never shrunk): */
    int8_t *xq;            /* [M][cols] int8 activation codes (Q8_0, Q4_0) */
    float *xd;             /* [M][cols/32] activation block scales */
    int *xsum;             /* [M][cols/32] sum of each block's codes */
    size_t xq_cap, xd_cap, xsum_cap; /* elements */
    uint16_t *xb;          /* [M][cols] bf16 (f16 for dense f16) activations (GEMM path) */
    size_t xb_cap;         /* elements */
    uint16_t *wb;          /* [tile rows][cols] dequantized bf16 weight tile (GEMM path) */
    size_t wb_cap;         /* elements */
};

/* Fills err from a failed CUDA call; returns the status (EUNSUPPORTED for no
 * device/driver, ENOMEM for allocation failures, EIO otherwise). */
llmlab_status llmlab_cuq_fail(llmlab_err *err, cudaError_t e, const char *what);
llmlab_status llmlab_cuq_blas_fail(llmlab_err *err, cublasStatus_t s, const char *what);
/* Fills err with a formatted message and code st; returns st. */
llmlab_status llmlab_cuq_errf(llmlab_err *err, llmlab_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CUQ_CHECK(call, what)                                           \
    do {                                                                \
        cudaError_t cuq_e_ = (call);                                    \
        if (cuq_e_ != cudaSuccess) return llmlab_cuq_fail(err, cuq_e_, what); \
    } while (0)

/* After a <<<>>> launch: a bad configuration shows in cudaGetLastError. */
#define CUQ_LAUNCHED(what) CUQ_CHECK(cudaGetLastError(), what)

/* Grows a workspace buffer to hold at least n elements of size sz. */
llmlab_status llmlab_cuq_reserve(void **buf, size_t *cap, size_t n, size_t sz, const char *what, llmlab_err *err);

/* Kernel launchers (quant_gemv.cu, quant_gemm.cu); arguments already checked. */
llmlab_status llmlab_cuq_gemv(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                              llmlab_err *err);
llmlab_status llmlab_cuq_gemm(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                              llmlab_err *err);
/* The int4 tensor-core kernel (quant_mma.cu): I4_SYM / I4_ASYM only; its
 * setup raises the shared-memory limit of the kernels that need more than
 * 48 KiB (once per context, on the current device). */
llmlab_status llmlab_cuq_mma(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                             llmlab_err *err);
llmlab_status llmlab_cuq_mma_setup(llmlab_err *err);
/* Q8_0/Q4_0 activation quantization into c->xq/xd/xsum (x * in_scale when given). */
llmlab_status llmlab_cuq_quantize_act(llmlab_cuda_qctx *c, const float *x, const float *in_scale, int M,
                                     int64_t cols, llmlab_err *err);

#endif
