/* threadpool.h - a fixed pool of worker threads that runs one parallel-for at a time.
 *
 * Kernels split work over output rows/columns, never over a reduction, so the
 * thread count never changes a result (batch and thread invariance, DESIGN.md).
 */
#ifndef LLMLAB_THREADPOOL_H
#define LLMLAB_THREADPOOL_H

typedef struct llmlab_threadpool llmlab_threadpool;

/* fn is called once for each task index in [0, n_tasks); calls may run concurrently. */
typedef void (*llmlab_task_fn)(void *ctx, int task, int n_tasks);

/* n_threads <= 0 means "all online cores".  Returns NULL when threads cannot start. */
llmlab_threadpool *llmlab_threadpool_create(int n_threads);
void llmlab_threadpool_free(llmlab_threadpool *tp);
int llmlab_threadpool_size(const llmlab_threadpool *tp);

/* Runs fn(ctx, i, n_tasks) for every i and returns when all are done.  The caller's
 * thread works too.  tp may be NULL: then everything runs on the caller's thread. */
void llmlab_threadpool_run(llmlab_threadpool *tp, llmlab_task_fn fn, void *ctx, int n_tasks);

/* Number of online cores. */
int llmlab_ncores(void);

#endif
