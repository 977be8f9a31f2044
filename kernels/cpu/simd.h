/* simd.h - internal to kernels/cpu: the x86 SIMD target attribute and the cached
 * runtime choice between the AVX2 path and the portable scalar path.
 *
 * Why function attributes and not -march: the build must run on any x86-64 (and
 * other) CPU; only the functions marked LLMLAB_SIMD_FN are compiled for
 * AVX2+FMA+F16C, and they are reached only after the runtime check says so.
 */
#ifndef LLMLAB_KERNELS_CPU_SIMD_H
#define LLMLAB_KERNELS_CPU_SIMD_H

#if defined(__x86_64__) || defined(__i386__)
#define LLMLAB_X86 1
#include <immintrin.h>
/* A function compiled for AVX2 + FMA + F16C (Haswell / Zen 1 and later). */
#define LLMLAB_SIMD_FN __attribute__((target("avx2,fma,f16c")))
/* Same, forced inline so microkernels specialise on their compile-time shape. */
#define LLMLAB_SIMD_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#else
#define LLMLAB_X86 0
#endif

/* 1 when the AVX2+FMA+F16C kernels run on this CPU (and were not disabled with
 * llmlab_cpu_force_scalar), else 0.  Checked once, then cached. */
int llmlab_cpu_use_avx2(void);

#endif
