/* cuda_device.h - the device the CUDA kernel tests run on. */
#ifndef LLMLAB_TEST_CUDA_DEVICE_H
#define LLMLAB_TEST_CUDA_DEVICE_H

#ifdef LLMLAB_HAVE_CUDA
#include "kernels/cuda/cuda_quant.h"

/* Skips the running test when there is no CUDA device; otherwise starts the
 * test's random stream (tests/util/test_rng.h) and returns a fresh context on
 * device 0 (not deterministic), to free with llmlab_cuda_qctx_free. */
llmlab_cuda_qctx *cuda_test_device(void);
#endif

#endif
