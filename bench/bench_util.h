/* bench_util.h - measurements shared by the benchmarks (bench/). */
#ifndef LLMLAB_BENCH_UTIL_H
#define LLMLAB_BENCH_UTIL_H

#include "core/threadpool.h"

/* Peak f32 FMA rate of the pool's threads in FLOP/s, one AVX2 task per thread
 * (bench_model.c); 0 on a CPU without FMA.  The CPU's compute ceiling. */
double llmlab_bench_peak_flops(llmlab_threadpool *tp);

#endif
