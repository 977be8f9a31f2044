/* cuda_stream.h - the CUDA runtime pieces the C side of the backend needs
 * (core/forward_cuda.c): the context's stream, pinned host memory, asynchronous
 * copies, CUDA graphs, and a device matrix's rows.  Thin, checked wrappers:
 * every failure comes back as an llmlab_err naming the call.  Built only with
 * CUDA (LLMLAB_HAVE_CUDA). */
#ifndef LLMLAB_CUDA_STREAM_H
#define LLMLAB_CUDA_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The context's stream (a cudaStream_t). */
void *llmlab_cuda_qctx_stream(llmlab_cuda_qctx *c);

/* Page-locked host memory (asynchronous copies need it to overlap). */
llmlab_status llmlab_cuda_host_alloc(void **p, size_t bytes, llmlab_err *err);
void llmlab_cuda_host_free(void *p); /* NULL is fine */

/* Asynchronous copies on the context's stream (host side page-locked). */
llmlab_status llmlab_cuda_h2d_async(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes, llmlab_err *err);
llmlab_status llmlab_cuda_d2h_async(llmlab_cuda_qctx *c, void *dst, const void *src, size_t bytes, llmlab_err *err);

/* Free and total device memory of the current device. */
llmlab_status llmlab_cuda_mem_info(llmlab_cuda_qctx *c, size_t *free_bytes, size_t *total_bytes, llmlab_err *err);

/* A captured sequence of work on the context's stream, replayed as one launch. */
typedef struct llmlab_cuda_graph llmlab_cuda_graph;
llmlab_status llmlab_cuda_capture_begin(llmlab_cuda_qctx *c, llmlab_err *err);
/* Ends the capture and instantiates it (on failure the capture is ended and dropped). */
llmlab_status llmlab_cuda_capture_end(llmlab_cuda_qctx *c, llmlab_cuda_graph **out, llmlab_err *err);
llmlab_status llmlab_cuda_graph_launch(llmlab_cuda_qctx *c, llmlab_cuda_graph *g, llmlab_err *err);
void llmlab_cuda_graph_free(llmlab_cuda_graph *g); /* NULL is fine */

/* A dense matrix's rows on the device and their pitch in bytes (rows are
 * 16-byte aligned; pitch == cols * element size when that is a multiple of 16). */
const void *llmlab_cuda_wmat_rows(const llmlab_cuda_wmat *w, size_t *pitch);

#ifdef __cplusplus
}
#endif
#endif
