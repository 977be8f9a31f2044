/* matmul_ref.c - plain-loop reference for llmlab_cpu_matmul: the obvious code, no
 * blocking, f32 accumulation in k order.  Tests compare the fast kernels to it
 * with |y - ref| <= atol + rtol*|ref|; it is never on a hot path. */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "../../core/dtype.h"
#include "quant.h"

/* Element k of a weight row, read with memcpy so no alignment is assumed. */
static float ref_weight(const char *row, int k, llmlab_dtype t) {
    if (t == LLMLAB_DTYPE_F32) {
        float f;
        memcpy(&f, row + (size_t)k * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, row + (size_t)k * 2, 2);
    return t == LLMLAB_DTYPE_F16 ? llmlab_f16_to_f32(h) : llmlab_bf16_to_f32(h);
}

void llmlab_cpu_matmul_ref(float *y, const float *x, const void *W, llmlab_dtype wtype, int M,
                           int N, int K) {
    if (llmlab_dtype_block(wtype) > 1) { /* GGUF blocks: the packed-format reference */
        llmlab_qmat q;
        if (llmlab_qmat_wrap(&q, wtype, W, N, K, NULL) != LLMLAB_OK) {
            for (size_t i = 0; i < (size_t)M * (size_t)N; i++) y[i] = NAN;
            return;
        }
        llmlab_qmat_matmul_ref(&q, y, x, M);
        return;
    }
    size_t row_bytes = (size_t)K * llmlab_dtype_size(wtype);
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const char *w = (const char *)W + (size_t)n * row_bytes;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += x[(size_t)m * K + k] * ref_weight(w, k, wtype);
            y[(size_t)m * N + n] = acc;
        }
    }
}
