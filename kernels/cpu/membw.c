/* membw.c - measured read bandwidth of this machine: the ceiling a memory-bound
 * decode matmul is compared against in benchmarks. */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simd.h"

/* Why 1 MiB chunks: many more tasks than threads, so the pool's dynamic claiming
 * keeps every thread streaming until the end; each chunk is long enough that
 * the hardware prefetcher ramps up and the per-task overhead is negligible. */
#define BW_CHUNK (1u << 20)

typedef struct {
    const float *buf;
    size_t n_floats;
    float *sinks; /* one per task: the sums are stored so the reads cannot be dropped */
} bw_ctx;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float sum_scalar(const float *p, size_t n) {
    float s[4] = {0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) s[j] += p[i + j];
    for (; i < n; i++) s[0] += p[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

#if LLMLAB_X86
/* Four independent accumulators so the adds (3-4 cycle latency) never limit the
 * load rate; 128 bytes per iteration. */
LLMLAB_SIMD_FN static float sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return sum_scalar(lanes, 8) + sum_scalar(p + i, n - i);
}
#endif

static void bw_task(void *ctx, int task, int n_tasks) {
    bw_ctx *c = ctx;
    size_t per = BW_CHUNK / sizeof(float);
    size_t b = (size_t)task * per;
    size_t n = b + per <= c->n_floats ? per : c->n_floats - b;
#if LLMLAB_X86
    if (llmlab_cpu_use_avx2()) {
        c->sinks[task] = sum_avx2(c->buf + b, n);
        return;
    }
#endif
    c->sinks[task] = sum_scalar(c->buf + b, n);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double llmlab_cpu_read_bandwidth(llmlab_threadpool *tp, size_t bytes, int reps) {
    if (reps < 1) reps = 1;
    size_t n_floats = bytes / sizeof(float);
    if (n_floats == 0) return 0.0;
    int n_tasks = (int)((n_floats * sizeof(float) + BW_CHUNK - 1) / BW_CHUNK);
    float *buf = malloc(n_floats * sizeof(float));
    float *sinks = calloc((size_t)n_tasks, sizeof(float));
    double *times = malloc((size_t)reps * sizeof(double));
    if (!buf || !sinks || !times) {
        free(buf);
        free(sinks);
        free(times);
        return 0.0;
    }
    /* Why fill with 1.0: fault every page in before timing, and keep the sums
     * normal numbers (denormal adds can be slow on some CPUs). */
    for (size_t i = 0; i < n_floats; i++) buf[i] = 1.0f;
    bw_ctx c = {buf, n_floats, sinks};
    llmlab_threadpool_run(tp, bw_task, &c, n_tasks); /* warm-up pass: TLB, threads awake */
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        llmlab_threadpool_run(tp, bw_task, &c, n_tasks);
        times[r] = now_seconds() - t0;
    }
    qsort(times, (size_t)reps, sizeof(double), cmp_double);
    double median = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    /* Read the sinks once more through a volatile so the sums are observable. */
    volatile float keep = 0.0f;
    for (int i = 0; i < n_tasks; i++) keep += sinks[i];
    (void)keep;
    free(buf);
    free(sinks);
    free(times);
    return median > 0 ? (double)(n_floats * sizeof(float)) / median : 0.0;
}
