/* quant_ctx.cu - the context, device matrices, memory helpers and the matmul
 * dispatch of the CUDA quant kernels (cuda_quant.h).  Every CUDA and cuBLAS
 * call is checked and failures become llmlab_err messages, never aborts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_quant_internal.cuh"

/* ---- errors -------------------------------------------------------------------- */

llmlab_status llmlab_cuq_fail(llmlab_err *err, cudaError_t e, const char *what) {
    llmlab_status st = LLMLAB_EIO;
    if (e == cudaErrorMemoryAllocation) st = LLMLAB_ENOMEM;
    else if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice)
        st = LLMLAB_EUNSUPPORTED;
    if (err) {
        snprintf(err->msg, sizeof err->msg, "CUDA: %s failed: %s", what, cudaGetErrorString(e));
        err->code = st;
    }
    /* Clears a non-sticky error so later calls are not reported as failing;
     * a sticky one (a kernel fault) stays, and every later call says so. */
    cudaGetLastError();
    return st;
}

llmlab_status llmlab_cuq_blas_fail(llmlab_err *err, cublasStatus_t s, const char *what) {
    llmlab_status st = s == CUBLAS_STATUS_ALLOC_FAILED ? LLMLAB_ENOMEM : LLMLAB_EIO;
    if (err) {
        snprintf(err->msg, sizeof err->msg, "cuBLAS: %s failed: %s", what, cublasGetStatusString(s));
        err->code = st;
    }
    return st;
}

llmlab_status llmlab_cuq_errf(llmlab_err *err, llmlab_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = st;
    }
    return st;
}

llmlab_status llmlab_cuq_reserve(void **buf, size_t *cap, size_t n, size_t sz, const char *what, llmlab_err *err) {
    if (n <= *cap) return LLMLAB_OK;
    if (*buf) {
        /* The old buffer may still be read by queued kernels of this stream;
         * cudaFree waits for the device, so freeing here is safe. */
        CUQ_CHECK(cudaFree(*buf), what);
        *buf = NULL;
        *cap = 0;
    }
    CUQ_CHECK(cudaMalloc(buf, n * sz), what);
    *cap = n;
    return LLMLAB_OK;
}

/* ---- context --------------------------------------------------------------------- */

static const size_t kBlasWorkspace = (size_t)32 << 20; /* cuBLAS's recommendation for Hopper */

extern "C" llmlab_status llmlab_cuda_qctx_create(llmlab_cuda_qctx **out, const llmlab_cuda_qopts *opts,
                                                 llmlab_err *err) {
    *out = NULL;
    llmlab_cuda_qopts o = {0, 0, 0};
    if (opts) o = *opts;
    if (o.gemv_max_m < 0) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: gemv_max_m %d < 0", o.gemv_max_m);
    int n = 0;
    CUQ_CHECK(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (o.device < 0 || o.device >= n)
        return llmlab_cuq_errf(err, LLMLAB_EUNSUPPORTED, "cuda quant: device %d does not exist (%d devices)", o.device, n);
    llmlab_cuda_qctx *c = (llmlab_cuda_qctx *)calloc(1, sizeof *c);
    if (!c) return llmlab_cuq_errf(err, LLMLAB_ENOMEM, "cuda quant: out of host memory");
    c->device = o.device;
    c->deterministic = o.deterministic != 0;
    c->gemv_max_m = o.gemv_max_m ? o.gemv_max_m : 32;
    llmlab_status st = LLMLAB_OK;
    int l2 = 0;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, c->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) st = llmlab_cuq_fail(err, e, "context setup (cudaSetDevice/cudaStreamCreate)");
    c->l2_bytes = (size_t)l2;
    if (st == LLMLAB_OK) st = llmlab_cuq_mma_setup(err);
    /* Why an explicit cuBLAS workspace: without one cuBLAS may allocate on
     * first use, which fails inside a CUDA graph capture. */
    if (st == LLMLAB_OK) {
        e = cudaMalloc(&c->blas_ws, kBlasWorkspace);
        if (e != cudaSuccess) st = llmlab_cuq_fail(err, e, "cudaMalloc of the cuBLAS workspace");
    }
    if (st == LLMLAB_OK) {
        cublasStatus_t s = cublasCreate(&c->blas);
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(c->blas, c->stream);
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetWorkspace(c->blas, c->blas_ws, kBlasWorkspace);
        if (s != CUBLAS_STATUS_SUCCESS) st = llmlab_cuq_blas_fail(err, s, "cublasCreate/SetStream/SetWorkspace");
    }
    if (st != LLMLAB_OK) {
        llmlab_cuda_qctx_free(c);
        return st;
    }
    *out = c;
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_qctx_free(llmlab_cuda_qctx *c) {
    if (!c) return;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->blas) cublasDestroy(c->blas);
    cudaFree(c->xq);
    cudaFree(c->xd);
    cudaFree(c->xsum);
    cudaFree(c->xb);
    cudaFree(c->wb);
    cudaFree(c->blas_ws);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError(); /* nothing to report from a teardown */
    free(c);
}

extern "C" llmlab_status llmlab_cuda_qctx_sync(llmlab_cuda_qctx *c, llmlab_err *err) {
    CUQ_CHECK(cudaStreamSynchronize(c->stream), "a kernel on the quant stream (cudaStreamSynchronize)");
    return LLMLAB_OK;
}

extern "C" size_t llmlab_cuda_qctx_l2_bytes(const llmlab_cuda_qctx *c) { return c->l2_bytes; }

/* ---- device matrices -------------------------------------------------------------------- */

/* Bytes a packed row of format f must take (quant_internal.h layouts); 0 for a
 * format the device does not run. */
static size_t expected_row_bytes(int f, int64_t cols, int group) {
    switch (f) {
    case LLMLAB_CUDA_DENSE_BF16:
    case LLMLAB_CUDA_DENSE_F16: return (size_t)cols * 2;
    case LLMLAB_CUDA_DENSE_F32: return (size_t)cols * 4;
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_FP8: return (size_t)cols;
    case LLMLAB_QF_I4_SYM: return (size_t)(cols / 2 + 2 * (cols / group));
    case LLMLAB_QF_I4_ASYM: return (size_t)(cols / 2 + 4 * (cols / group));
    case LLMLAB_QF_Q8_0: return (size_t)(cols / 32 * 34);
    case LLMLAB_QF_Q4_0: return (size_t)(cols / 32 * 18);
    default: return 0;
    }
}

static const char *format_name(int f) {
    switch (f) {
    case LLMLAB_CUDA_DENSE_BF16: return "bf16";
    case LLMLAB_CUDA_DENSE_F16: return "f16";
    case LLMLAB_CUDA_DENSE_F32: return "f32";
    case LLMLAB_QF_Q8_0: return "Q8_0";
    case LLMLAB_QF_Q4_0: return "Q4_0";
    case LLMLAB_QF_Q4_K: return "Q4_K";
    case LLMLAB_QF_I8_ROW: return "I8_ROW";
    case LLMLAB_QF_I4_SYM: return "I4_SYM";
    case LLMLAB_QF_I4_ASYM: return "I4_ASYM";
    case LLMLAB_QF_FP8: return "FP8";
    case LLMLAB_QF_W8A8: return "W8A8";
    default: return "unknown";
    }
}

/* EINVAL/EUNSUPPORTED unless q describes a matrix the device kernels run. */
static llmlab_status check_qmat(const llmlab_qmat *q, int *group, llmlab_err *err) {
    int f = (int)q->format;
    if (f == LLMLAB_QF_Q4_K || f == LLMLAB_QF_W8A8) {
        if (err) {
            snprintf(err->msg, sizeof err->msg, "cuda quant: format %s has no CUDA kernel (CPU only)", format_name(f));
            err->code = LLMLAB_EUNSUPPORTED;
        }
        return LLMLAB_EUNSUPPORTED;
    }
    if (expected_row_bytes(f, 64, 32) == 0 || f == LLMLAB_CUDA_DENSE_BF16 || f == LLMLAB_CUDA_DENSE_F16 ||
        f == LLMLAB_CUDA_DENSE_F32)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: unknown format %d", f);
    if (q->rows < 1 || q->cols < 1 || !q->data)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: empty matrix (rows %lld, cols %lld) or no data",
                               (long long)q->rows, (long long)q->cols);
    int g = 0;
    if (f == LLMLAB_QF_I4_SYM || f == LLMLAB_QF_I4_ASYM) {
        g = q->group;
        if (g != 32 && g != 64 && g != 128 && g != 256)
            return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: int4 group %d is not 32, 64, 128 or 256", g);
    } else if (f == LLMLAB_QF_Q8_0 || f == LLMLAB_QF_Q4_0) {
        g = 32;
    }
    /* 16 weights per 16-byte packet for the 8-bit formats, 32 for the others. */
    int64_t unit = (f == LLMLAB_QF_I8_ROW || f == LLMLAB_QF_FP8) ? 16 : (g > 32 ? g : 32);
    if (q->cols % unit)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: %s cols %lld is not a multiple of %lld", format_name(f),
                               (long long)q->cols, (long long)unit);
    size_t want = expected_row_bytes(f, q->cols, g ? g : 32);
    if (q->row_bytes != want)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: %s row_bytes %lld, but the format needs %lld", format_name(f),
                       (long long)q->row_bytes, (long long)want);
    if ((f == LLMLAB_QF_I8_ROW || f == LLMLAB_QF_FP8) && !q->row_scale)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: %s matrix without row_scale", format_name(f));
    *group = g;
    return LLMLAB_OK;
}

static llmlab_status wmat_alloc(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, int f, int64_t rows, int64_t cols,
                                int group, llmlab_err *err) {
    llmlab_cuda_wmat *w = (llmlab_cuda_wmat *)calloc(1, sizeof *w);
    if (!w) return llmlab_cuq_errf(err, LLMLAB_ENOMEM, "cuda quant: out of host memory");
    w->format = f;
    w->rows = rows;
    w->cols = cols;
    w->group = group;
    w->row_bytes = expected_row_bytes(f, cols, group ? group : 32);
    w->pitch = (w->row_bytes + 15) & ~(size_t)15;
    w->device = c->device;
    *out = w;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) e = cudaMalloc((void **)&w->data, w->pitch * (size_t)rows);
    if (e != cudaSuccess) {
        llmlab_cuda_wmat_free(w);
        *out = NULL;
        return llmlab_cuq_fail(err, e, "cudaMalloc of the weight matrix");
    }
    return LLMLAB_OK;
}

static llmlab_status upload_floats(float **dst, const float *src, size_t n, llmlab_err *err) {
    CUQ_CHECK(cudaMalloc((void **)dst, n * sizeof(float)), "cudaMalloc of scales");
    CUQ_CHECK(cudaMemcpy(*dst, src, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy of scales");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_wmat_upload(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const llmlab_qmat *q,
                                                 llmlab_err *err) {
    *out = NULL;
    int group = 0;
    llmlab_status st = check_qmat(q, &group, err);
    if (st) return st;
    llmlab_cuda_wmat *w;
    if ((st = wmat_alloc(c, &w, (int)q->format, q->rows, q->cols, group, err))) return st;
    w->per_row = q->per_row != 0;
    /* Rows keep their bytes; only the pitch changes (a 2-D copy pads each row). */
    cudaError_t e = cudaMemcpy2D(w->data, w->pitch, q->data, q->row_bytes, q->row_bytes, (size_t)q->rows,
                                 cudaMemcpyHostToDevice);
    if (e != cudaSuccess) st = llmlab_cuq_fail(err, e, "cudaMemcpy2D of the packed rows");
    if (!st && (w->format == LLMLAB_QF_I8_ROW || w->format == LLMLAB_QF_FP8)) {
        int per_row = w->format == LLMLAB_QF_I8_ROW || w->per_row;
        w->per_row = per_row;
        st = upload_floats(&w->row_scale, q->row_scale, per_row ? (size_t)q->rows : 1, err);
    }
    if (!st && q->in_scale) st = upload_floats(&w->in_scale, q->in_scale, (size_t)q->cols, err);
    if (st) {
        llmlab_cuda_wmat_free(w);
        return st;
    }
    *out = w;
    return LLMLAB_OK;
}

/* f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

extern "C" llmlab_status llmlab_cuda_wmat_upload_bf16(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const float *W,
                                                      int64_t rows, int64_t cols, llmlab_err *err) {
    *out = NULL;
    if (rows < 1 || cols < 8 || cols % 8 || !W)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: bf16 matrix rows %lld, cols %lld (cols a multiple of 8)",
                               (long long)rows, (long long)cols);
    uint16_t *h = (uint16_t *)malloc((size_t)rows * (size_t)cols * 2);
    if (!h) return llmlab_cuq_errf(err, LLMLAB_ENOMEM, "cuda quant: out of host memory for a %lld x %lld bf16 matrix",
                                    (long long)rows, (long long)cols);
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) h[i] = f32_to_bf16(W[i]);
    llmlab_cuda_wmat *w;
    llmlab_status st = wmat_alloc(c, &w, LLMLAB_CUDA_DENSE_BF16, rows, cols, 0, err);
    if (!st) {
        cudaError_t e = cudaMemcpy2D(w->data, w->pitch, h, (size_t)cols * 2, (size_t)cols * 2, (size_t)rows,
                                     cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            st = llmlab_cuq_fail(err, e, "cudaMemcpy2D of the bf16 rows");
            llmlab_cuda_wmat_free(w);
        } else {
            *out = w;
        }
    }
    free(h);
    return st;
}

extern "C" llmlab_status llmlab_cuda_wmat_upload_dense(llmlab_cuda_qctx *c, llmlab_cuda_wmat **out, const void *data,
                                                       int dtype, int64_t rows, int64_t cols, llmlab_err *err) {
    *out = NULL;
    int f;
    int64_t unit; /* elements per 16-byte packet */
    switch (dtype) {
    case LLMLAB_DTYPE_F32:
        f = LLMLAB_CUDA_DENSE_F32;
        unit = 4;
        break;
    case LLMLAB_DTYPE_F16:
        f = LLMLAB_CUDA_DENSE_F16;
        unit = 8;
        break;
    case LLMLAB_DTYPE_BF16:
        f = LLMLAB_CUDA_DENSE_BF16;
        unit = 8;
        break;
    default:
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: dense matrix dtype %d is not f32, f16 or bf16",
                               dtype);
    }
    if (rows < 1 || cols < unit || cols % unit || !data)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL,
                               "cuda quant: dense %s matrix rows %lld, cols %lld (cols a multiple of %lld) or no data",
                               format_name(f), (long long)rows, (long long)cols, (long long)unit);
    llmlab_cuda_wmat *w;
    llmlab_status st = wmat_alloc(c, &w, f, rows, cols, 0, err);
    if (st) return st;
    /* The stored rows unchanged; the 2-D copy places them at the 16-byte pitch. */
    cudaError_t e = cudaMemcpy2D(w->data, w->pitch, data, w->row_bytes, w->row_bytes, (size_t)rows,
                                 cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        st = llmlab_cuq_fail(err, e, "cudaMemcpy2D of the dense rows");
        llmlab_cuda_wmat_free(w);
        return st;
    }
    *out = w;
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_wmat_free(llmlab_cuda_wmat *w) {
    if (!w) return;
    cudaSetDevice(w->device);
    cudaFree(w->data);
    cudaFree(w->row_scale);
    cudaFree(w->in_scale);
    cudaGetLastError();
    free(w);
}

extern "C" int llmlab_cuda_wmat_format(const llmlab_cuda_wmat *w) { return w->format; }

extern "C" size_t llmlab_cuda_wmat_bytes(const llmlab_cuda_wmat *w) {
    size_t b = w->row_bytes * (size_t)w->rows;
    if (w->row_scale) b += (w->per_row ? (size_t)w->rows : 1) * sizeof(float);
    if (w->in_scale) b += (size_t)w->cols * sizeof(float);
    return b;
}

/* ---- matmul dispatch ------------------------------------------------------------------ */

extern "C" llmlab_status llmlab_cuda_matmul(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x,
                                            int M, llmlab_cuda_path path, llmlab_err *err) {
    if (M < 1) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: M %d < 1", M);
    if (!x || !y || ((uintptr_t)x & 15))
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: x (%p) must be a 16-byte aligned device pointer, y (%p) non-NULL",
                               (const void *)x, (void *)y);
    if (w->device != c->device)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: matrix on device %d, context on device %d", w->device,
                               c->device);
    CUQ_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    switch (path) {
    case LLMLAB_CUDA_PATH_AUTO:
        if (c->deterministic) return llmlab_cuq_gemv(c, w, y, x, M, err);
        if (M > c->gemv_max_m) return llmlab_cuq_gemm(c, w, y, x, M, err);
        if (w->format == LLMLAB_QF_I4_SYM || w->format == LLMLAB_QF_I4_ASYM) return llmlab_cuq_mma(c, w, y, x, M, err);
        return llmlab_cuq_gemv(c, w, y, x, M, err);
    case LLMLAB_CUDA_PATH_GEMV: return llmlab_cuq_gemv(c, w, y, x, M, err);
    case LLMLAB_CUDA_PATH_GEMM: return llmlab_cuq_gemm(c, w, y, x, M, err);
    case LLMLAB_CUDA_PATH_MMA: return llmlab_cuq_mma(c, w, y, x, M, err);
    }
    return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: unknown path %d", (int)path);
}

/* ---- memory and timing ----------------------------------------------------------------- */

extern "C" llmlab_status llmlab_cuda_mem_alloc(llmlab_cuda_qctx *c, void **p, size_t bytes, llmlab_err *err) {
    *p = NULL;
    CUQ_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    CUQ_CHECK(cudaMalloc(p, bytes ? bytes : 1), "cudaMalloc");
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_mem_free(void *p) {
    if (p) cudaFree(p);
    cudaGetLastError();
}

extern "C" llmlab_status llmlab_cuda_mem_h2d(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes,
                                             llmlab_err *err) {
    /* Ordered after the stream's queued work, and complete on return. */
    CUQ_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "cudaMemcpyAsync host to device");
    CUQ_CHECK(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize after a copy to the device");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_mem_d2h(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes,
                                             llmlab_err *err) {
    CUQ_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync device to host");
    CUQ_CHECK(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize after a copy to the host");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_mem_d2d(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes,
                                             llmlab_err *err) {
    CUQ_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "cudaMemcpyAsync device to device");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_mem_set(llmlab_cuda_qctx *c, void *p, int v, size_t bytes, llmlab_err *err) {
    CUQ_CHECK(cudaMemsetAsync(p, v, bytes, c->stream), "cudaMemsetAsync");
    return LLMLAB_OK;
}

struct llmlab_cuda_timer {
    cudaEvent_t start, stop;
};

extern "C" llmlab_status llmlab_cuda_timer_create(llmlab_cuda_timer **t, llmlab_err *err) {
    *t = (llmlab_cuda_timer *)calloc(1, sizeof **t);
    if (!*t) return llmlab_cuq_errf(err, LLMLAB_ENOMEM, "cuda quant: out of host memory");
    cudaError_t e = cudaEventCreate(&(*t)->start);
    if (e == cudaSuccess) e = cudaEventCreate(&(*t)->stop);
    if (e != cudaSuccess) {
        llmlab_cuda_timer_free(*t);
        *t = NULL;
        return llmlab_cuq_fail(err, e, "cudaEventCreate");
    }
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_timer_free(llmlab_cuda_timer *t) {
    if (!t) return;
    if (t->start) cudaEventDestroy(t->start);
    if (t->stop) cudaEventDestroy(t->stop);
    cudaGetLastError();
    free(t);
}

extern "C" llmlab_status llmlab_cuda_timer_start(llmlab_cuda_timer *t, llmlab_cuda_qctx *c, llmlab_err *err) {
    CUQ_CHECK(cudaEventRecord(t->start, c->stream), "cudaEventRecord");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_timer_stop(llmlab_cuda_timer *t, llmlab_cuda_qctx *c, double *seconds,
                                                llmlab_err *err) {
    float ms = 0;
    CUQ_CHECK(cudaEventRecord(t->stop, c->stream), "cudaEventRecord");
    CUQ_CHECK(cudaEventSynchronize(t->stop), "cudaEventSynchronize (a timed kernel failed)");
    CUQ_CHECK(cudaEventElapsedTime(&ms, t->start, t->stop), "cudaEventElapsedTime");
    *seconds = ms * 1e-3;
    return LLMLAB_OK;
}

/* ---- timing many calls ------------------------------------------------------------------ */

static llmlab_status launch_calls(llmlab_cuda_qctx *c, llmlab_cuda_wmat *const *w, int n, float *y, const float *x,
                                  int M, llmlab_cuda_path path, int iters, llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < iters && !st; i++) st = llmlab_cuda_matmul(c, w[i % n], y, x, M, path, err);
    return st;
}

/* Captures the calls into an executable graph (*exec, NULL on failure). */
static llmlab_status capture_calls(llmlab_cuda_qctx *c, llmlab_cuda_wmat *const *w, int n, float *y, const float *x,
                                   int M, llmlab_cuda_path path, int iters, cudaGraphExec_t *exec, llmlab_err *err) {
    cudaGraph_t g = NULL;
    *exec = NULL;
    CUQ_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    llmlab_status st = launch_calls(c, w, n, y, x, M, path, iters, err);
    cudaError_t e = cudaStreamEndCapture(c->stream, &g); /* always ends the capture */
    if (!st && e != cudaSuccess) st = llmlab_cuq_fail(err, e, "cudaStreamEndCapture");
    if (!st) {
        e = cudaGraphInstantiate(exec, g, 0);
        if (e != cudaSuccess) {
            *exec = NULL;
            st = llmlab_cuq_fail(err, e, "cudaGraphInstantiate");
        }
    }
    if (g) cudaGraphDestroy(g);
    return st;
}

extern "C" llmlab_status llmlab_cuda_time_matmuls(llmlab_cuda_qctx *c, llmlab_cuda_wmat *const *w, int n, float *y,
                                                  const float *x, int M, llmlab_cuda_path path, int iters, int graph,
                                                  double *seconds, llmlab_err *err) {
    if (n < 1 || iters < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda quant: timing needs n >= 1 matrices (%d) and iters >= 1 (%d)",
                               n, iters);
    llmlab_cuda_timer *t = NULL;
    cudaGraphExec_t exec = NULL;
    llmlab_status st = llmlab_cuda_timer_create(&t, err);
    if (!st && graph) {
        st = capture_calls(c, w, n, y, x, M, path, iters, &exec, err);
        if (!st) { /* the first replay uploads the graph: keep it out of the timing */
            cudaError_t e = cudaGraphLaunch(exec, c->stream);
            if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
            if (e != cudaSuccess) st = llmlab_cuq_fail(err, e, "cudaGraphLaunch (warm-up replay)");
        }
    }
    if (!st) st = llmlab_cuda_timer_start(t, c, err);
    if (!st) {
        if (graph) {
            cudaError_t e = cudaGraphLaunch(exec, c->stream);
            if (e != cudaSuccess) st = llmlab_cuq_fail(err, e, "cudaGraphLaunch");
        } else {
            st = launch_calls(c, w, n, y, x, M, path, iters, err);
        }
    }
    double s = 0;
    if (!st) st = llmlab_cuda_timer_stop(t, c, &s, err);
    if (!st) *seconds = s / iters;
    if (exec) cudaGraphExecDestroy(exec);
    llmlab_cuda_timer_free(t);
    return st;
}
