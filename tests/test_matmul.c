/* test_matmul.c - CPU matmul kernels: agreement with the plain-loop reference,
 * bit-exact batch and thread invariance, the embedding row gather, and the
 * bandwidth probe.
 *
 * Inputs are fresh random numbers every run (never zeros); the seed is printed in
 * every failure message so a failing run can be replayed with LLMLAB_TEST_SEED.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"
#include "tests/util/test_rng.h"

static const llmlab_dtype DTYPES[] = {LLMLAB_DTYPE_F32, LLMLAB_DTYPE_F16, LLMLAB_DTYPE_BF16};

/* ---- random inputs ------------------------------------------------------------ */


static float *rand_x(size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = test_rng_f();
    return x;
}

/* n random weights of type t, stored `misalign` bytes past a malloc'd address
 * (so only element alignment holds, as for weights mmapped from safetensors).
 * *base receives the pointer to free. */
static void *rand_w(llmlab_dtype t, size_t n, size_t misalign, void **base) {
    char *b = malloc(n * llmlab_dtype_size(t) + misalign);
    char *w = b + misalign;
    for (size_t i = 0; i < n; i++) {
        float f = test_rng_f();
        if (t == LLMLAB_DTYPE_F32) {
            memcpy(w + i * 4, &f, 4);
        } else {
            uint16_t h = t == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(f) : llmlab_f32_to_bf16(f);
            memcpy(w + i * 2, &h, 2);
        }
    }
    *base = b;
    return w;
}

static float weight_at(const void *W, llmlab_dtype t, size_t i) {
    float f[1];
    llmlab_to_f32(f, (const char *)W + i * llmlab_dtype_size(t), t, 1);
    return f[0];
}

/* ---- agreement with the reference ------------------------------------------------ */

/* Tolerance for one output, derived from the standard error bound of recursive f32
 * summation (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1):
 * summing K products in any order has |computed - exact| <= gamma_K * sum|x_k w_k|
 * with gamma_K ~ K*u, u = 2^-24.  The reference accumulates K terms in k order
 * (multiply and add rounded separately: K+1 roundings on each path); the kernel
 * sums K/8 terms per lane with FMA and 3 levels of lane reduction.  Both are
 * within (K+8)*u*S of the exact value (S = sum|x_k w_k|, the weights being exact
 * in f32 after widening), so |kernel - ref| <= 2*(K+8)*u*S.  This bound is
 * rigorous (no flaky failures) yet tight enough to catch indexing bugs: a wrong
 * weight row or x row moves the result by about S/sqrt(K) (hundreds of times the
 * bound), and even one dropped term (about S/K) exceeds it by 1/(2uK(K+8)) >= 2x
 * for K <= 2048.  A small rtol of 4 ulps covers the final rounding of y. */
static double tolerance(const float *x, const void *W, llmlab_dtype t, int n, int K, float ref) {
    double S = 0.0;
    for (int k = 0; k < K; k++) S += fabs((double)x[k] * weight_at(W, t, (size_t)n * K + k));
    const double u = 1.0 / (1 << 24);
    return 2.0 * (K + 8) * u * S + 4.0 * u * fabs(ref);
}

static void check_vs_ref(llmlab_threadpool *tp, llmlab_dtype t, int M, int N, int K) {
    void *wbase;
    /* misalign by one element: breaks 32-byte alignment of every weight row */
    void *W = rand_w(t, (size_t)N * K, llmlab_dtype_size(t), &wbase);
    float *xbase = rand_x((size_t)M * K + 1), *x = xbase + 1; /* x unaligned too */
    float *y = malloc((size_t)M * N * sizeof *y), *ref = malloc((size_t)M * N * sizeof *ref);
    llmlab_cpu_matmul(y, x, W, t, M, N, K, tp);
    llmlab_cpu_matmul_ref(ref, x, W, t, M, N, K);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float a = y[(size_t)m * N + n], r = ref[(size_t)m * N + n];
            double tol = tolerance(x + (size_t)m * K, W, t, n, K, r);
            cr_assert(fabs((double)a - r) <= tol,
                      "%s M=%d N=%d K=%d y[%d][%d]=%.9g ref=%.9g |diff|=%.3g > tol=%.3g (seed %llu, %s)",
                      llmlab_dtype_name(t), M, N, K, m, n, a, r, fabs((double)a - r), tol,
                      (unsigned long long)test_rng_seed, llmlab_cpu_simd_name());
        }
    free(wbase);
    free(xbase);
    free(y);
    free(ref);
}

static void all_shapes_vs_ref(void) {
    static const int Ms[] = {1, 3, 4, 5, 17};
    static const int Ks[] = {1, 7, 8, 9, 64, 67, 200, 2048};
    static const int Ns[] = {1, 5, 33, 100};
    test_rng_start();
    llmlab_threadpool *tp = llmlab_threadpool_create(2);
    cr_assert_not_null(tp);
    for (int ti = 0; ti < 3; ti++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                    check_vs_ref(tp, DTYPES[ti], Ms[mi], Ns[ni], Ks[ki]);
    /* K longer than one K block (512) with a tail: the prefill path parks
     * accumulators between blocks. */
    for (int ti = 0; ti < 3; ti++) check_vs_ref(tp, DTYPES[ti], 9, 29, 1100);
    llmlab_threadpool_free(tp);
}

Test(matmul, matches_reference) { all_shapes_vs_ref(); }

Test(matmul, scalar_path_matches_reference) {
    llmlab_cpu_force_scalar(1);
    cr_assert_str_eq(llmlab_cpu_simd_name(), "scalar");
    all_shapes_vs_ref();
    llmlab_cpu_force_scalar(0);
}

/* ---- batch and thread invariance ----------------------------------------------------- */

/* Row m of a 37-row batch, computed (a) alone, (b) at every position of batches
 * of 2..9 rows whose other rows are fresh random data (this runs every register
 * block shape: 4-row blocks and the 3/2/1-row rests), (c) in the full batch with
 * pools of 1, 2 and 3 threads: all must be bit-identical. */
static void check_invariance(llmlab_dtype t, int N, int K, llmlab_threadpool *tp2,
                             llmlab_threadpool *tp3) {
    enum { M = 37 };
    void *wbase;
    void *W = rand_w(t, (size_t)N * K, 2, &wbase);
    float *X = rand_x((size_t)M * K);
    float *y_full = malloc((size_t)M * N * sizeof(float));
    float *y_other = malloc((size_t)M * N * sizeof(float));
    float *xb = malloc((size_t)9 * K * sizeof(float)), *yb = malloc((size_t)9 * N * sizeof(float));
    size_t row_bytes = (size_t)N * sizeof(float);

    llmlab_cpu_matmul(y_full, X, W, t, M, N, K, NULL);
    llmlab_threadpool *pools[] = {tp2, tp3};
    for (int p = 0; p < 2; p++) {
        llmlab_cpu_matmul(y_other, X, W, t, M, N, K, pools[p]);
        cr_assert(!memcmp(y_full, y_other, (size_t)M * row_bytes),
                  "%s N=%d K=%d: %d-thread result differs from 1 thread (seed %llu)",
                  llmlab_dtype_name(t), N, K, p + 2, (unsigned long long)test_rng_seed);
    }
    for (int m = 0; m < M; m++) {
        for (int mb = 1; mb <= 9; mb++) {
            int pos = (m * 7 + mb) % mb;
            for (int i = 0; i < mb * K; i++) xb[i] = test_rng_f();
            memcpy(xb + (size_t)pos * K, X + (size_t)m * K, (size_t)K * sizeof(float));
            llmlab_cpu_matmul(yb, xb, W, t, mb, N, K, (m & 1) ? tp3 : NULL);
            cr_assert(!memcmp(yb + (size_t)pos * N, y_full + (size_t)m * N, row_bytes),
                      "%s N=%d K=%d: row %d differs at position %d of a %d-row batch (seed %llu)",
                      llmlab_dtype_name(t), N, K, m, pos, mb, (unsigned long long)test_rng_seed);
        }
    }
    free(wbase);
    free(X);
    free(y_full);
    free(y_other);
    free(xb);
    free(yb);
}

/* N = 53: two full 24-row tasks plus a 5-row task, which leaves N tails for
 * each register-block width (3, 4, 8). */
static void invariance_all(const int *Ks, int nK) {
    test_rng_start();
    llmlab_threadpool *tp2 = llmlab_threadpool_create(2), *tp3 = llmlab_threadpool_create(3);
    cr_assert(tp2 && tp3);
    for (int ti = 0; ti < 3; ti++)
        for (int ki = 0; ki < nK; ki++) check_invariance(DTYPES[ti], 53, Ks[ki], tp2, tp3);
    llmlab_threadpool_free(tp2);
    llmlab_threadpool_free(tp3);
}

Test(matmul, batch_and_thread_invariant) {
    /* K: tails of every length class, one K block exactly, and several K blocks
     * with a tail (521, 1100, 2900; at 2900 f32 weights prefill tasks take 12
     * rows instead of 24). */
    static const int Ks[] = {1, 7, 8, 9, 67, 512, 521, 1100, 2900};
    invariance_all(Ks, (int)(sizeof Ks / sizeof *Ks));
}

Test(matmul, scalar_path_batch_and_thread_invariant) {
    /* The scalar path has no K blocks or lanes: a few lengths suffice (and keep
     * the sanitizer build fast). */
    static const int Ks[] = {1, 7, 9, 67, 521};
    llmlab_cpu_force_scalar(1);
    invariance_all(Ks, (int)(sizeof Ks / sizeof *Ks));
    llmlab_cpu_force_scalar(0);
}

/* ---- embedding row gather -------------------------------------------------------------- */

static void check_row_gather(llmlab_dtype t) {
    /* Row 0: every 16-bit pattern (all f16 / bf16 values, NaNs and denormals
     * included); f32 rows: random.  Rows 1 and 2 with an odd K check the row
     * offset and the tail after the SIMD blocks. */
    int K = t == LLMLAB_DTYPE_F32 ? 1037 : 65536;
    size_t es = llmlab_dtype_size(t);
    void *wbase;
    char *W = rand_w(t, (size_t)3 * K, es, &wbase);
    if (t != LLMLAB_DTYPE_F32)
        for (int i = 0; i < K; i++) {
            uint16_t h = (uint16_t)i;
            memcpy(W + (size_t)i * 2, &h, 2);
        }
    float *out = malloc((size_t)K * sizeof(float));
    for (int row = 0; row < 3; row++) {
        llmlab_cpu_row_to_f32(out, W, t, row, K);
        for (int k = 0; k < K; k++) {
            float want = weight_at(W, t, (size_t)row * K + k);
            if (isnan(want)) {
                cr_assert(isnan(out[k]), "%s row %d k %d: want NaN", llmlab_dtype_name(t), row, k);
                continue;
            }
            cr_assert(!memcmp(&want, &out[k], 4), "%s row %d k %d: %.9g != %.9g (seed %llu)",
                      llmlab_dtype_name(t), row, k, out[k], want, (unsigned long long)test_rng_seed);
        }
    }
    /* odd K to exercise the tail of the vector loop */
    llmlab_cpu_row_to_f32(out, W, t, 1, 13);
    for (int k = 0; k < 13; k++) {
        float want = weight_at(W, t, (size_t)13 + k);
        cr_assert(isnan(want) ? isnan(out[k]) : !memcmp(&want, &out[k], 4), "%s K=13 k=%d",
                  llmlab_dtype_name(t), k);
    }
    free(out);
    free(wbase);
}

Test(row_to_f32, exact_vs_scalar_converters) {
    test_rng_start();
    for (int ti = 0; ti < 3; ti++) check_row_gather(DTYPES[ti]);
    llmlab_cpu_force_scalar(1);
    for (int ti = 0; ti < 3; ti++) check_row_gather(DTYPES[ti]);
    llmlab_cpu_force_scalar(0);
}

/* ---- bandwidth probe ----------------------------------------------------------------------- */

Test(read_bandwidth, positive_and_plausible) {
    llmlab_threadpool *tp = llmlab_threadpool_create(2);
    double bw = llmlab_cpu_read_bandwidth(tp, (size_t)64 << 20, 2);
    llmlab_threadpool_free(tp);
    cr_assert(bw > 1e8 && bw < 1e13, "read bandwidth %.3g B/s is implausible", bw);
}

Test(simd_name, known_value) {
    const char *s = llmlab_cpu_simd_name();
    cr_assert(!strcmp(s, "avx2+fma+f16c") || !strcmp(s, "scalar"), "simd name %s", s);
}
