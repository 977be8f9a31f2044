/* device.cu - CUDA device discovery with every runtime call checked.
 *
 * Errors become llmlab_err messages (never aborts), so a machine without a GPU
 * or driver reports "no CUDA device" and GPU tests skip. */
#include <cuda_runtime.h>
#include <stdio.h>

#include "kernels/cuda/cuda_backend.h"

static llmlab_status cuda_fail(llmlab_err *err, cudaError_t e, const char *what) {
    if (err) {
        snprintf(err->msg, sizeof err->msg, "CUDA: %s failed: %s", what, cudaGetErrorString(e));
        err->code = LLMLAB_EUNSUPPORTED;
    }
    return LLMLAB_EUNSUPPORTED;
}

extern "C" int llmlab_cuda_device_count(llmlab_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cuda_fail(err, e, "cudaGetDeviceCount");
        cudaGetLastError(); /* clear the sticky error so later calls are not poisoned */
        return 0;
    }
    return n;
}

extern "C" llmlab_status llmlab_cuda_device_info(int dev, char *name, size_t name_cap, int *sm_count,
                                                 size_t *total_mem, llmlab_err *err) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, dev);
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaGetDeviceProperties");
    snprintf(name, name_cap, "%s", p.name);
    *sm_count = p.multiProcessorCount;
    *total_mem = p.totalGlobalMem;
    return LLMLAB_OK;
}
