/* stream.cu - see cuda_stream.h. */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_quant_internal.cuh"
#include "kernels/cuda/cuda_stream.h"

struct llmlab_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

extern "C" void *llmlab_cuda_qctx_stream(llmlab_cuda_qctx *c) { return (void *)c->stream; }

extern "C" llmlab_status llmlab_cuda_host_alloc(void **p, size_t bytes, llmlab_err *err) {
    *p = NULL;
    CUQ_CHECK(cudaMallocHost(p, bytes ? bytes : 1), "cudaMallocHost (page-locked host memory)");
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
    cudaGetLastError();
}

extern "C" llmlab_status llmlab_cuda_h2d_async(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes,
                                               llmlab_err *err) {
    if (bytes) CUQ_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "cudaMemcpyAsync (to the device)");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_d2h_async(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes,
                                               llmlab_err *err) {
    if (bytes) CUQ_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "cudaMemcpyAsync (to the host)");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_mem_info(llmlab_cuda_qctx *c, size_t *free_bytes, size_t *total_bytes,
                                              llmlab_err *err) {
    CUQ_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    CUQ_CHECK(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_capture_begin(llmlab_cuda_qctx *c, llmlab_err *err) {
    /* Thread-local mode: other threads' CUDA calls (none expected) do not break the capture. */
    CUQ_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_capture_end(llmlab_cuda_qctx *c, llmlab_cuda_graph **out, llmlab_err *err) {
    *out = NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    if (e != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        return llmlab_cuq_fail(err, e, "cudaStreamEndCapture");
    }
    cudaGraphExec_t x = NULL;
    e = cudaGraphInstantiate(&x, g, 0);
    if (e != cudaSuccess) {
        cudaGraphDestroy(g);
        return llmlab_cuq_fail(err, e, "cudaGraphInstantiate");
    }
    llmlab_cuda_graph *r = (llmlab_cuda_graph *)malloc(sizeof *r);
    if (!r) {
        cudaGraphExecDestroy(x);
        cudaGraphDestroy(g);
        return llmlab_cuq_errf(err, LLMLAB_ENOMEM, "out of host memory for a CUDA graph");
    }
    r->graph = g;
    r->exec = x;
    *out = r;
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_graph_launch(llmlab_cuda_qctx *c, llmlab_cuda_graph *g, llmlab_err *err) {
    CUQ_CHECK(cudaGraphLaunch(g->exec, c->stream), "cudaGraphLaunch");
    return LLMLAB_OK;
}

extern "C" void llmlab_cuda_graph_free(llmlab_cuda_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->graph);
    cudaGetLastError();
    free(g);
}

extern "C" const void *llmlab_cuda_wmat_rows(const llmlab_cuda_wmat *w, size_t *pitch) {
    *pitch = w->pitch;
    return w->data;
}
