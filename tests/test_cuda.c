/* test_cuda.c - GPU checks; each skips (not fails) without a CUDA build or device. */
#include <criterion/criterion.h>

#include "llmlab/llmlab.h"
#ifdef LLMLAB_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

Test(cuda, device_query) {
#ifndef LLMLAB_HAVE_CUDA
    cr_skip_test("built without CUDA (LLMLAB_CUDA=OFF or no toolkit)");
#else
    llmlab_err err = {0};
    int n = llmlab_cuda_device_count(&err);
    if (n == 0) cr_skip_test("no CUDA device: %s", err.msg);
    char name[256];
    int sms = 0;
    size_t mem = 0;
    cr_assert_eq(llmlab_cuda_device_info(0, name, sizeof name, &sms, &mem, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_gt(sms, 0);
    cr_assert_gt(mem, (size_t)1 << 30);
    cr_log_info("device 0: %s, %d SMs, %.1f GiB", name, sms, mem / 1073741824.0);
#endif
}
