/* quant_matmul.c - llmlab_qmat_matmul: prepares the activations once per call
 * (x * in_scale, or int8 codes for the GGUF formats and W8A8), then runs the
 * AVX2 kernel (quant_avx2.c) or the scalar one (quant_ref.c) over tasks of
 * weight rows on the thread pool.
 *
 * Batch invariance: the preparation of row m depends on row m alone, and every
 * task computes each of its y[m][n] with the same instruction sequence whatever
 * M is and whichever thread runs it (threads split weight rows, never K). */
#include <stdlib.h>

#include "kernels.h"
#include "quant_internal.h"
#include "simd.h"

/* Weight rows per task.  Why 16: a multiple of most register-block widths in
 * quant_avx2.c (1, 2, 4; the GGUF decode tiles of 3 end each task with one
 * 1-wide tile), small enough that the pool's dynamic claiming keeps
 * both cores busy to the end, and 16 rows of the widest format (FP8/int8, 1
 * byte per weight) of a 14336-wide matrix (229 KiB) stay in L2 while every
 * 4-row block of x passes over them in prefill. */
#define QROWS_PER_TASK 16

typedef struct {
    const llmlab_qmat *q;
    const llmlab_qact *a;
    float *y;
    int simd;
} qtask_ctx;

static void qtask(void *ctx, int task, int n_tasks) {
    const qtask_ctx *c = ctx;
    int64_t n0 = (int64_t)task * QROWS_PER_TASK;
    int64_t n1 = n0 + QROWS_PER_TASK < c->q->rows ? n0 + QROWS_PER_TASK : c->q->rows;
#if LLMLAB_X86
    if (c->simd) {
        llmlab_qmat_rows_avx2(c->q, c->a, c->y, n0, n1);
        return;
    }
#endif
    llmlab_qmat_rows_scalar(c->q, c->a, c->y, n0, n1);
}

void llmlab_qmat_matmul(const llmlab_qmat *q, float *y, const float *x, int M, llmlab_threadpool *tp) {
    if (M <= 0 || q->rows <= 0) return;
    int simd = llmlab_cpu_use_avx2();
    llmlab_qact a;
    if (llmlab_qact_prepare(&a, q, x, M, simd) != LLMLAB_OK) {
        /* No memory for the prepared activations: the reference needs none and
         * computes the same values up to f32 summation order. */
        llmlab_qmat_matmul_ref(q, y, x, M);
        return;
    }
    qtask_ctx c = {.q = q, .a = &a, .y = y, .simd = simd};
    int n_tasks = (int)((q->rows + QROWS_PER_TASK - 1) / QROWS_PER_TASK);
    llmlab_threadpool_run(tp, qtask, &c, n_tasks);
    llmlab_qact_free(&a);
}
