/* quant_gemm.cu - the prefill path: dequantize W to bf16 tiles, then cuBLAS.
 *
 * For large M the matmul is bound by the tensor cores, not by the weight bytes,
 * so the packed weights are expanded once per call into a bf16 tile of up to
 * kTileBytes and multiplied with cublasGemmEx (bf16 inputs, f32 accumulation
 * and output).  The expansion costs one read of the packed weights and one
 * write + read of the bf16 tile: next to 2*M*rows*cols FLOPs that is small once
 * M is in the hundreds; for decode-sized M the fused GEMV kernel is the path.
 *
 * Numerics: the effective weight (scale, min, in_scale folded in) is computed
 * in f32 and rounded to bf16; x is rounded to bf16; accumulation is f32.  The
 * GGUF formats use unquantized (bf16) activations here, unlike the GEMV kernel
 * and the CPU reference, so compare this path with dequant(W) x.
 *
 * Dense matrices skip the expansion: cuBLAS reads the stored rows (f16 and
 * bf16 with x rounded to the same type, f32 with f32 x and CUBLAS_COMPUTE_32F,
 * which never uses TF32 unless the handle's math mode asks for it).
 *
 * Not batch invariant: cuBLAS chooses its kernel (and split of K) by shape, so
 * a row's result can change with M; deterministic mode never routes here. */
#include <cuda_bf16.h>
#include <string.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/cuda/cuda_quant_internal.cuh"

namespace {

constexpr size_t kTileBytes = (size_t)64 << 20; /* bf16 weight tile workspace */
constexpr int kThreads = 256;

struct DequantArgs {
    const uint8_t *data; /* [rows][pitch] packed rows */
    size_t pitch;
    int64_t row0, n_rows, cols;
    int group;
    const float *row_scale;
    int per_row;
    const float *in_scale;      /* [cols] or NULL */
    __nv_bfloat16 *out;         /* [n_rows][cols] */
};

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half(__ldg((const unsigned short *)p)));
}

/* Weights [32 p, 32 p + 32) (8-bit formats: [16 p, 16 p + 16)) of one row as f32,
 * before in_scale; the same values llmlab_qmat_dequant_rows gives. */
template <int F>
__device__ void decode(const DequantArgs &a, const uint8_t *row, int64_t n, int64_t p, float *w) {
    if (F == LLMLAB_QF_I8_ROW || F == LLMLAB_QF_FP8) {
        const float s = __ldg(a.row_scale + (F == LLMLAB_QF_I8_ROW || a.per_row ? n : 0));
        uint4 v = __ldg((const uint4 *)(row + 16 * p));
        uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            uint8_t b = (uint8_t)(u[i / 4] >> (8 * (i % 4)));
            float c;
            if (F == LLMLAB_QF_I8_ROW) {
                c = (float)(int8_t)b;
            } else {
                __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
                c = __half2float(__half(h));
            }
            w[i] = s * c;
        }
    } else if (F == LLMLAB_QF_I4_SYM || F == LLMLAB_QF_I4_ASYM) {
        const int64_t ng = a.cols / a.group, g = 32 * p / a.group;
        const float s = f16_at(row + a.cols / 2 + 2 * g);
        const float mn = F == LLMLAB_QF_I4_ASYM ? f16_at(row + a.cols / 2 + 2 * ng + 2 * g) : 0.0f;
        uint4 v = __ldg((const uint4 *)(row + 16 * p));
        uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int b = (int)((u[i / 4] >> (8 * (i % 4))) & 0xffu);
            if (F == LLMLAB_QF_I4_SYM) {
                w[i] = s * (float)((b & 15) - 8);
                w[i + 16] = s * (float)((b >> 4) - 8);
            } else {
                /* Two roundings, no FMA: the CPU's s * n + m exactly. */
                w[i] = __fadd_rn(__fmul_rn(s, (float)(b & 15)), mn);
                w[i + 16] = __fadd_rn(__fmul_rn(s, (float)(b >> 4)), mn);
            }
        }
    } else if (F == LLMLAB_QF_Q8_0) {
        const uint8_t *blk = row + 34 * p;
        const float d = f16_at(blk);
        for (int i = 0; i < 32; i++) w[i] = d * (float)(int8_t)blk[2 + i];
    } else { /* Q4_0 */
        const uint8_t *blk = row + 18 * p;
        const float d = f16_at(blk);
        for (int i = 0; i < 16; i++) {
            int b = blk[2 + i];
            w[i] = d * (float)((b & 15) - 8);
            w[i + 16] = d * (float)((b >> 4) - 8);
        }
    }
}

/* One thread per packet of a row: decode, fold in_scale, round to bf16, store. */
template <int F>
__global__ void dequant_kernel(const DequantArgs a) {
    constexpr int kPer = (F == LLMLAB_QF_I8_ROW || F == LLMLAB_QF_FP8) ? 16 : 32;
    const int64_t np = a.cols / kPer;
    const int64_t t = (int64_t)blockIdx.x * kThreads + threadIdx.x;
    if (t >= a.n_rows * np) return;
    const int64_t r = t / np, p = t % np, n = a.row0 + r;
    float w[32];
    decode<F>(a, a.data + (size_t)n * a.pitch, n, p, w);
    if (a.in_scale)
#pragma unroll
        for (int i = 0; i < kPer; i++) w[i] *= __ldg(a.in_scale + kPer * p + i);
    /* 16-byte stores of 8 bf16 each (cols is a multiple of 16, so aligned). */
    uint4 *dst = (uint4 *)(a.out + (size_t)r * a.cols + kPer * p);
#pragma unroll
    for (int v = 0; v < kPer / 8; v++) {
        uint32_t u[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __nv_bfloat162 h = __floats2bfloat162_rn(w[8 * v + 2 * i], w[8 * v + 2 * i + 1]);
            memcpy(&u[i], &h, 4);
        }
        dst[v] = make_uint4(u[0], u[1], u[2], u[3]);
    }
}

__global__ void to_bf16_kernel(const float *x, __nv_bfloat16 *out, size_t n) {
    size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void to_f16_kernel(const float *x, __half *out, size_t n) {
    size_t i = (size_t)blockIdx.x * kThreads + threadIdx.x;
    if (i < n) out[i] = __float2half_rn(x[i]);
}

bool is_dense(int f) {
    return f == LLMLAB_CUDA_DENSE_BF16 || f == LLMLAB_CUDA_DENSE_F16 || f == LLMLAB_CUDA_DENSE_F32;
}

llmlab_status dequant_tile(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, int64_t row0, int64_t n_rows,
                           llmlab_err *err) {
    DequantArgs a;
    a.data = w->data;
    a.pitch = w->pitch;
    a.row0 = row0;
    a.n_rows = n_rows;
    a.cols = w->cols;
    a.group = w->group;
    a.row_scale = w->row_scale;
    a.per_row = w->per_row;
    a.in_scale = w->in_scale;
    a.out = (__nv_bfloat16 *)c->wb;
    const int kPer = (w->format == LLMLAB_QF_I8_ROW || w->format == LLMLAB_QF_FP8) ? 16 : 32;
    const int64_t threads = n_rows * (w->cols / kPer);
    const unsigned blocks = (unsigned)((threads + kThreads - 1) / kThreads);
    switch (w->format) {
    case LLMLAB_QF_I8_ROW: dequant_kernel<LLMLAB_QF_I8_ROW><<<blocks, kThreads, 0, c->stream>>>(a); break;
    case LLMLAB_QF_FP8: dequant_kernel<LLMLAB_QF_FP8><<<blocks, kThreads, 0, c->stream>>>(a); break;
    case LLMLAB_QF_I4_SYM: dequant_kernel<LLMLAB_QF_I4_SYM><<<blocks, kThreads, 0, c->stream>>>(a); break;
    case LLMLAB_QF_I4_ASYM: dequant_kernel<LLMLAB_QF_I4_ASYM><<<blocks, kThreads, 0, c->stream>>>(a); break;
    case LLMLAB_QF_Q8_0: dequant_kernel<LLMLAB_QF_Q8_0><<<blocks, kThreads, 0, c->stream>>>(a); break;
    case LLMLAB_QF_Q4_0: dequant_kernel<LLMLAB_QF_Q4_0><<<blocks, kThreads, 0, c->stream>>>(a); break;
    default: return llmlab_cuq_errf(err, LLMLAB_EUNSUPPORTED, "cuda gemm: format %d has no dequantizer", w->format);
    }
    CUQ_LAUNCHED("dequantize kernel launch");
    return LLMLAB_OK;
}

} /* namespace */

llmlab_status llmlab_cuq_gemm(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                              llmlab_err *err) {
    if (w->rows > 0x7fffffff || w->cols > 0x7fffffff)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda gemm: %lld x %lld exceeds cuBLAS's int dimensions",
                               (long long)w->rows, (long long)w->cols);
    const size_t nx = (size_t)M * (size_t)w->cols;
    const int f = w->format;
    /* The operand type of W and x: the stored type for dense matrices, bf16 for
     * the dequantized tiles.  f32 goes to cuBLAS as it is (COMPUTE_32F: no TF32). */
    const cudaDataType_t ty = f == LLMLAB_CUDA_DENSE_F32 ? CUDA_R_32F : f == LLMLAB_CUDA_DENSE_F16 ? CUDA_R_16F
                                                                                                 : CUDA_R_16BF;
    const size_t esize = f == LLMLAB_CUDA_DENSE_F32 ? 4 : 2;
    const void *xin = x;
    llmlab_status st = LLMLAB_OK;
    if (f != LLMLAB_CUDA_DENSE_F32) {
        st = llmlab_cuq_reserve((void **)&c->xb, &c->xb_cap, nx, 2, "cudaMalloc of 16-bit activations", err);
        if (st) return st;
        const unsigned blocks = (unsigned)((nx + kThreads - 1) / kThreads);
        if (f == LLMLAB_CUDA_DENSE_F16) to_f16_kernel<<<blocks, kThreads, 0, c->stream>>>(x, (__half *)c->xb, nx);
        else to_bf16_kernel<<<blocks, kThreads, 0, c->stream>>>(x, (__nv_bfloat16 *)c->xb, nx);
        CUQ_LAUNCHED("activation conversion kernel launch");
        xin = c->xb;
    }

    const int dense = is_dense(f);
    int64_t tile = w->rows;
    if (!dense) {
        int64_t fit = (int64_t)(kTileBytes / 2 / (size_t)w->cols);
        fit = fit >= 128 ? fit / 128 * 128 : 128; /* whole 128-row tiles for cuBLAS */
        tile = fit < w->rows ? fit : w->rows;
        st = llmlab_cuq_reserve((void **)&c->wb, &c->wb_cap, (size_t)tile * (size_t)w->cols, 2,
                                "cudaMalloc of the bf16 weight tile", err);
        if (st) return st;
    }
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < w->rows; r0 += tile) {
        const int64_t n = w->rows - r0 < tile ? w->rows - r0 : tile;
        const void *A;
        int lda;
        if (dense) { /* the rows as stored, pitch in elements */
            A = w->data + (size_t)r0 * w->pitch;
            lda = (int)(w->pitch / esize);
        } else {
            if ((st = dequant_tile(c, w, r0, n, err))) return st;
            A = c->wb;
            lda = (int)w->cols;
        }
        /* Column-major view: y^T[rows][M] (ld = rows) = W_tile (op T of a
         * cols x n column-major matrix) times x^T (cols x M, ld = cols). */
        cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, M, (int)w->cols, &one, A, ty, lda,
                                        xin, ty, (int)w->cols, &zero, y + r0, CUDA_R_32F, (int)w->rows,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS)
            return llmlab_cuq_blas_fail(err, s,
                                        ty == CUDA_R_32F   ? "cublasGemmEx (f32 x f32 -> f32)"
                                        : ty == CUDA_R_16F ? "cublasGemmEx (f16 x f16 -> f32)"
                                                           : "cublasGemmEx (bf16 x bf16 -> f32)");
    }
    return LLMLAB_OK;
}
