/* threadpool.c - workers wait on a condition variable for a "generation" bump,
 * then claim task indices with an atomic counter until none are left.
 *
 * Why a counter and not a static split: decode kernels are memory-bound and the
 * two cores of a shared machine are not equally fast at every moment; dynamic
 * claiming keeps both busy.  Results do not depend on who runs which task.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct llmlab_threadpool {
    int n_threads;            /* including the caller */
    pthread_t *workers;       /* [n_threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* signalled when a new job starts or on shutdown */
    pthread_cond_t done;      /* signalled when the last worker leaves a job */
    unsigned long generation; /* bumped for each job */
    int shutdown;
    int busy_workers;         /* workers still inside the current job */
    llmlab_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
};

int llmlab_ncores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void run_tasks(llmlab_threadpool *tp) {
    for (;;) {
        int i = atomic_fetch_add(&tp->next_task, 1);
        if (i >= tp->n_tasks) break;
        tp->fn(tp->ctx, i, tp->n_tasks);
    }
}

static void *worker_main(void *arg) {
    llmlab_threadpool *tp = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&tp->mu);
    for (;;) {
        while (!tp->shutdown && tp->generation == seen) pthread_cond_wait(&tp->wake, &tp->mu);
        if (tp->shutdown) break;
        seen = tp->generation;
        pthread_mutex_unlock(&tp->mu);
        run_tasks(tp);
        pthread_mutex_lock(&tp->mu);
        if (--tp->busy_workers == 0) pthread_cond_signal(&tp->done);
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

llmlab_threadpool *llmlab_threadpool_create(int n_threads) {
    if (n_threads <= 0) n_threads = llmlab_ncores();
    llmlab_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    atomic_init(&tp->next_task, 0);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            free(tp);
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&tp->workers[i], NULL, worker_main, tp) != 0) {
                tp->n_threads = i + 1; /* keep the ones that started */
                break;
            }
        }
    }
    return tp;
}

void llmlab_threadpool_free(llmlab_threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    tp->shutdown = 1;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->n_threads - 1; i++) pthread_join(tp->workers[i], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    free(tp->workers);
    free(tp);
}

int llmlab_threadpool_size(const llmlab_threadpool *tp) { return tp ? tp->n_threads : 1; }

void llmlab_threadpool_run(llmlab_threadpool *tp, llmlab_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!tp || tp->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
        return;
    }
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->ctx = ctx;
    tp->n_tasks = n_tasks;
    atomic_store(&tp->next_task, 0);
    tp->busy_workers = tp->n_threads - 1;
    tp->generation++;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);

    run_tasks(tp);

    pthread_mutex_lock(&tp->mu);
    while (tp->busy_workers > 0) pthread_cond_wait(&tp->done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}
