/* cuda_backend.h - what the C side knows of the CUDA backend.
 *
 * Built only when CMake finds a CUDA toolkit (LLMLAB_HAVE_CUDA); the C code calls
 * these through llmlab_cuda_available() so a CPU-only build never references them. */
#ifndef LLMLAB_CUDA_BACKEND_H
#define LLMLAB_CUDA_BACKEND_H

#include "llmlab/llmlab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 (and a reason in err) when there is no driver,
 * no device, or the build has no CUDA. */
int llmlab_cuda_device_count(llmlab_err *err);

/* Fills name (e.g. "NVIDIA H200"), SM count and memory of device dev. */
llmlab_status llmlab_cuda_device_info(int dev, char *name, size_t name_cap, int *sm_count,
                                      size_t *total_mem, llmlab_err *err);

#ifdef __cplusplus
}
#endif
#endif
