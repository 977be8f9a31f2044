/* cuda_device.c - see cuda_device.h. */
#include "cuda_device.h"

#ifdef LLMLAB_HAVE_CUDA
#include <criterion/criterion.h>

#include "kernels/cuda/cuda_backend.h"
#include "test_rng.h"

llmlab_cuda_qctx *cuda_test_device(void) {
    llmlab_err err = {0};
    if (llmlab_cuda_device_count(&err) == 0) cr_skip_test("no CUDA device: %s", err.msg);
    test_rng_start();
    llmlab_cuda_qopts o = {0, 0, 0};
    llmlab_cuda_qctx *c = NULL;
    cr_assert_eq(llmlab_cuda_qctx_create(&c, &o, &err), LLMLAB_OK, "%s", err.msg);
    return c;
}
#else
typedef int cuda_device_unused; /* ISO C wants a declaration in every file */
#endif
