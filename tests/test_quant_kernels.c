/* test_quant_kernels.c - the packed weight formats of kernels/cpu/quant.h:
 * round-trip error bounds per format, fast vs reference matmul, bit-exact batch
 * and thread invariance, the scalar path, GGUF blocks written by hand from the
 * format description, the fp8 e4m3 code table, and input errors.
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
#include "kernels/cpu/quant.h"
#include "tests/util/test_rng.h"

/* ---- random inputs ---------------------------------------------------------------- */


/* Weights like a trained layer's: each row its own magnitude (1e-3 .. 1), a few
 * outliers 8x larger, and a row whose values are all of one sign (the
 * asymmetric formats' hard case). */
static float *rand_weights(int64_t rows, int64_t cols) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t r = 0; r < rows; r++) {
        float mag = powf(10.0f, -3.0f * (float)(test_rng_u64() % 1000) / 1000.0f);
        for (int64_t c = 0; c < cols; c++) {
            float v = test_rng_f() * mag;
            if (test_rng_u64() % 97 == 0) v *= 8.0f;
            if (r == 1) v = fabsf(v) + 0.5f * mag;
            w[r * cols + c] = v;
        }
    }
    return w;
}

static float *rand_x(size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = test_rng_f() * (test_rng_u64() % 50 == 0 ? 6.0f : 1.0f);
    return x;
}

/* ---- the formats under test ------------------------------------------------------------- */

typedef struct {
    llmlab_qformat f;
    int group, per_row;
    const char *name;
} fmt_case;

static const fmt_case CASES[] = {
    {LLMLAB_QF_Q8_0, 0, 0, "q8_0"},          {LLMLAB_QF_Q4_0, 0, 0, "q4_0"},
    {LLMLAB_QF_Q4_K, 0, 0, "q4_k"},          {LLMLAB_QF_I8_ROW, 0, 0, "i8_row"},
    {LLMLAB_QF_I4_SYM, 32, 0, "i4_sym/32"},  {LLMLAB_QF_I4_SYM, 128, 0, "i4_sym/128"},
    {LLMLAB_QF_I4_ASYM, 64, 0, "i4_asym/64"}, {LLMLAB_QF_I4_ASYM, 128, 0, "i4_asym/128"},
    {LLMLAB_QF_FP8, 0, 1, "fp8/row"},        {LLMLAB_QF_FP8, 0, 0, "fp8/tensor"},
    {LLMLAB_QF_W8A8, 0, 0, "w8a8"},
};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

/* Formats without a block constraint take any cols. */
static int any_cols(llmlab_qformat f) { return f == LLMLAB_QF_I8_ROW || f == LLMLAB_QF_FP8 || f == LLMLAB_QF_W8A8; }

static void pack_ok(llmlab_qmat *q, const fmt_case *c, const float *W, int64_t rows, int64_t cols, const float *in) {
    llmlab_err err = {0};
    llmlab_status st = llmlab_qmat_pack(q, c->f, W, rows, cols, c->group, c->per_row, in, &err);
    cr_assert_eq(st, LLMLAB_OK, "%s pack [%lld][%lld]: %s", c->name, (long long)rows, (long long)cols, err.msg);
}

/* ---- round trips -------------------------------------------------------------------------- */

static float amax_of(const float *w, int64_t n) {
    float a = 0;
    for (int64_t i = 0; i < n; i++) a = fabsf(w[i]) > a ? fabsf(w[i]) : a;
    return a;
}

/* The largest |w - dequant(w)| a format allows for element k of row w[cols],
 * from the format's math (RTN: half a quantization step), with the step derived
 * from the weights themselves, never from the packed bytes.  slack = 2^-9 covers
 * the f16 rounding of stored scales (relative 2^-11) and f32 rounding. */
static double rt_bound(const fmt_case *c, const float *w, int64_t cols, int64_t k, float tensor_amax, int *clamped) {
    /* f16 scales are rounded up, by at most 2^-11 relative or, for subnormal
     * f16 scales (small blocks), 2^-24 absolute: h16 is half of the latter */
    const double slack = 1.0 + 1.0 / 512, eps = 4e-7 * fabs(w[k]), h16 = 1.0 / (1 << 25);
    *clamped = 0;
    switch (c->f) {
    case LLMLAB_QF_Q8_0: { /* d = max|w| / 127 per block of 32 */
        return amax_of(w + k / 32 * 32, 32) / 127.0 / 2 * slack + h16 + eps;
    }
    case LLMLAB_QF_Q4_0: { /* d = wmax / -8: codes w/d in [-8, 8], +8 clamps to 7 (error <= |d|) */
        float d = amax_of(w + k / 32 * 32, 32) / 8.0f;
        int same_sign_as_max = 0;
        for (int i = 0; i < 32; i++)
            if (fabsf(w[k / 32 * 32 + i]) == d * 8.0f) same_sign_as_max = (w[k / 32 * 32 + i] > 0) == (w[k] > 0);
        *clamped = !same_sign_as_max && fabsf(w[k]) > 7.4f * d;
        return *clamped ? d * slack + 2 * h16 + eps : d / 2.0 * slack + h16 + eps;
    }
    case LLMLAB_QF_Q4_K: { /* step of sub-block j covers (max_j - min(min_j, 0) + dmin) / 15 with 6-bit
                              scales of d = max step / 63 rounded up: step_j <= need_j + d */
        const float *sb = w + k / 256 * 256;
        double need[8], mx_need = 0, mx_mn = 0, range[8];
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = -INFINITY;
            for (int i = 0; i < 32; i++) {
                lo = sb[32 * j + i] < lo ? sb[32 * j + i] : lo;
                hi = sb[32 * j + i] > hi ? sb[32 * j + i] : hi;
            }
            range[j] = hi - lo;
            mx_mn = -lo > mx_mn ? -lo : mx_mn;
        }
        for (int j = 0; j < 8; j++) {
            need[j] = (range[j] + mx_mn / 63 * slack) / 15;
            mx_need = need[j] > mx_need ? need[j] : mx_need;
        }
        return (need[(k % 256) / 32] + mx_need / 63) / 2 * slack + 2 * h16 + eps;
    }
    case LLMLAB_QF_I4_SYM: /* s = max|w| / 7 per group */
        return amax_of(w + k / c->group * c->group, c->group) / 7.0 / 2 * slack + h16 + eps;
    case LLMLAB_QF_I4_ASYM: { /* s = (max - m) / 15 per group, m = min rounded down to f16 */
        const float *g = w + k / c->group * c->group;
        float lo = g[0], hi = g[0];
        for (int i = 1; i < c->group; i++) {
            lo = g[i] < lo ? g[i] : lo;
            hi = g[i] > hi ? g[i] : hi;
        }
        return ((hi - lo) + fabs(lo) / 1024) / 15.0 / 2 * slack + 2 * h16 + eps;
    }
    case LLMLAB_QF_I8_ROW:
    case LLMLAB_QF_W8A8: /* s = max|row| / 127 in f32 */
        return amax_of(w, cols) / 127.0 / 2 * (1 + 1e-6) + eps;
    case LLMLAB_QF_FP8: { /* 3 mantissa bits: half an ulp is <= 2^-4 |w|; subnormals step 2^-9 s */
        double s = (c->per_row ? amax_of(w, cols) : tensor_amax) / 448.0;
        return fabs(w[k]) / 16 * (1 + 1e-6) + s / 1024 * (1 + 1e-6) + eps;
    }
    }
    return 0;
}

Test(quant_kernels, round_trip_within_format_bound) {
    test_rng_start();
    const int64_t rows = 13, cols = 512;
    float *W = rand_weights(rows, cols), *D = malloc(sizeof(float) * (size_t)(rows * cols));
    float tensor_amax = amax_of(W, rows * cols);
    for (int ci = 0; ci < N_CASES; ci++) {
        const fmt_case *c = &CASES[ci];
        llmlab_qmat q;
        pack_ok(&q, c, W, rows, cols, NULL);
        llmlab_qmat_dequant_rows(&q, 0, rows, D);
        double worst = 0;
        int n_clamped = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                int clamped;
                double e = fabs((double)W[r * cols + k] - D[r * cols + k]);
                double b = rt_bound(c, W + r * cols, cols, k, tensor_amax, &clamped);
                n_clamped += clamped;
                cr_assert(e <= b, "%s: |w - deq| at [%lld][%lld] = %.4g > bound %.4g (w = %.6g, deq = %.6g, seed %llu)",
                          c->name, (long long)r, (long long)k, e, b, W[r * cols + k], D[r * cols + k],
                          (unsigned long long)test_rng_seed);
                worst = e / b > worst ? e / b : worst;
            }
        /* Not trivially loose: some element comes near the bound (RTN errors are
         * uniform over half a step), except fp8 whose bound is relative. */
        if (c->f != LLMLAB_QF_FP8) cr_assert(worst > 0.5, "%s: worst error only %.2f of the bound", c->name, worst);
        /* A partial dequant gives the same rows. */
        float *part = malloc(sizeof(float) * (size_t)(3 * cols));
        llmlab_qmat_dequant_rows(&q, 5, 3, part);
        cr_assert(!memcmp(part, D + 5 * cols, sizeof(float) * (size_t)(3 * cols)), "%s: dequant of rows 5..7", c->name);
        free(part);
        llmlab_qmat_free(&q);
    }
    free(W);
    free(D);
}

/* Bits per weight from the layouts: data + scales over rows * cols. */
Test(quant_kernels, bits_per_weight) {
    test_rng_start();
    const int64_t rows = 8, cols = 1024;
    float *W = rand_weights(rows, cols);
    const double expect[N_CASES] = {8.5, 4.5, 4.5, 8 + 32.0 / cols, 4.5, 4.125, 4.5, 4.25,
                                    8 + 32.0 / cols, 8 + 32.0 / (rows * cols), 8 + 32.0 / cols};
    for (int ci = 0; ci < N_CASES; ci++) {
        llmlab_qmat q;
        pack_ok(&q, &CASES[ci], W, rows, cols, NULL);
        cr_assert(fabs(llmlab_qmat_bits(&q) - expect[ci]) < 1e-12, "%s: %.6f bits, expected %.6f", CASES[ci].name,
                  llmlab_qmat_bits(&q), expect[ci]);
        llmlab_qmat_free(&q);
    }
    free(W);
}

/* ---- fast vs reference ----------------------------------------------------------------------- */

/* Tolerance for one output, from the error bound of f32 summation in any order
 * (Higham 3.1): |computed - exact| <= gamma_n * S with n the number of terms
 * and S the sum of their magnitudes.  The reference and the fast kernel form the
 * same products (the same activation quantization, the same scale products)
 * and only sum them in another order (8 lanes + a 3-level tree vs k order), so
 * |fast - ref| <= 2 (K + 8) u S.  S bounds the terms from the dequantized
 * weights and activations: |x'| plus the activation quantization step for the
 * GGUF formats, |w| plus the Q4_K sub-block offset (its two terms are summed
 * separately).  A wrong row or block moves y by about S / sqrt(K), hundreds of
 * times this. */
static double tol_for(const llmlab_qmat *q, const float *x, const float *in, const float *deq, double ref,
                      float row_off) {
    const double u = 1.0 / (1 << 24);
    double S = 0;
    for (int64_t k = 0; k < q->cols; k++) {
        double xv = fabs((double)x[k] * (in ? in[k] : 1.0f));
        if (q->format == LLMLAB_QF_Q8_0 || q->format == LLMLAB_QF_Q4_0 || q->format == LLMLAB_QF_Q4_K)
            xv += amax_of(x + k / 32 * 32, 32) * (in ? amax_of(in + k / 32 * 32, 32) : 1.0f) / 127.0;
        S += xv * (fabs(deq[k]) + row_off);
    }
    return 2.0 * (double)(q->cols + 8) * u * S + 4.0 * u * fabs(ref);
}

static void check_fast_vs_ref(const fmt_case *c, int M, int64_t rows, int64_t cols, int with_in, llmlab_threadpool *tp) {
    float *W = rand_weights(rows, cols), *x = rand_x((size_t)M * (size_t)cols), *in = NULL;
    if (with_in) {
        in = malloc(sizeof(float) * (size_t)cols);
        for (int64_t k = 0; k < cols; k++) in[k] = 0.25f + fabsf(test_rng_f()) * 4.0f;
    }
    llmlab_qmat q;
    pack_ok(&q, c, W, rows, cols, in);
    float *y = malloc(sizeof(float) * (size_t)(M * rows)), *ref = malloc(sizeof(float) * (size_t)(M * rows));
    float *deq = malloc(sizeof(float) * (size_t)(rows * cols));
    llmlab_qmat_matmul(&q, y, x, M, tp);
    llmlab_qmat_matmul_ref(&q, ref, x, M);
    /* deq without in_scale: the tolerance multiplies x by in itself */
    float *keep = q.in_scale;
    q.in_scale = NULL;
    llmlab_qmat_dequant_rows(&q, 0, rows, deq);
    q.in_scale = keep;
    for (int m = 0; m < M; m++)
        for (int64_t n = 0; n < rows; n++) {
            float a = y[(size_t)m * rows + n], r = ref[(size_t)m * rows + n];
            float off = c->f == LLMLAB_QF_Q4_K ? 2.0f * amax_of(W + n * cols, cols) : 0.0f;
            double tol = c->f == LLMLAB_QF_W8A8 ? 0.0 /* integer sums: exact */
                                                : tol_for(&q, x + (size_t)m * cols, in, deq + n * cols, r, off);
            cr_assert(fabs((double)a - r) <= tol && isfinite(a),
                      "%s M=%d rows=%lld cols=%lld in=%d y[%d][%lld]=%.9g ref=%.9g |diff|=%.3g > tol=%.3g (seed %llu, %s)",
                      c->name, M, (long long)rows, (long long)cols, with_in, m, (long long)n, a, r,
                      fabs((double)a - r), tol, (unsigned long long)test_rng_seed, llmlab_cpu_simd_name());
        }
    llmlab_qmat_free(&q);
    free(W);
    free(x);
    free(in);
    free(y);
    free(ref);
    free(deq);
}

static void all_vs_ref(void) {
    static const int Ms[] = {1, 3, 17};
    test_rng_start();
    llmlab_threadpool *tp = llmlab_threadpool_create(2);
    cr_assert_not_null(tp);
    for (int ci = 0; ci < N_CASES; ci++)
        for (int mi = 0; mi < 3; mi++) {
            check_fast_vs_ref(&CASES[ci], Ms[mi], 37, 512, mi == 1, tp);
            check_fast_vs_ref(&CASES[ci], Ms[mi], 13, 256, mi != 1, NULL);
            if (any_cols(CASES[ci].f)) { /* K tails: 203 = 6 * 32 + 8 + 3 */
                check_fast_vs_ref(&CASES[ci], Ms[mi], 21, 203, mi == 2, tp);
                check_fast_vs_ref(&CASES[ci], Ms[mi], 5, 7, 0, tp);
            }
        }
    llmlab_threadpool_free(tp);
}

Test(quant_kernels, fast_matches_reference) { all_vs_ref(); }

Test(quant_kernels, scalar_path_matches_reference) {
    llmlab_cpu_force_scalar(1);
    all_vs_ref();
    llmlab_cpu_force_scalar(0);
}

/* The scalar kernel does the reference's arithmetic on prepared activations:
 * bit-identical to it; and the SIMD path stays within the summation tolerance of
 * the scalar path (checked through the reference above). */
Test(quant_kernels, scalar_path_is_the_reference_bit_for_bit) {
    test_rng_start();
    const int M = 5;
    const int64_t rows = 19, cols = 256;
    for (int ci = 0; ci < N_CASES; ci++) {
        float *W = rand_weights(rows, cols), *x = rand_x((size_t)M * cols);
        llmlab_qmat q;
        pack_ok(&q, &CASES[ci], W, rows, cols, NULL);
        float *y = malloc(sizeof(float) * M * rows), *ref = malloc(sizeof(float) * M * rows);
        llmlab_cpu_force_scalar(1);
        llmlab_qmat_matmul(&q, y, x, M, NULL);
        llmlab_cpu_force_scalar(0);
        llmlab_qmat_matmul_ref(&q, ref, x, M);
        cr_assert(!memcmp(y, ref, sizeof(float) * M * rows), "%s: scalar kernel differs from the reference (seed %llu)",
                  CASES[ci].name, (unsigned long long)test_rng_seed);
        llmlab_qmat_free(&q);
        free(W);
        free(x);
        free(y);
        free(ref);
    }
}

/* ---- batch and thread invariance ---------------------------------------------------------------- */

/* M rows in one call equal M calls of one row, bit for bit; rows placed at
 * every position of smaller batches of fresh random rows (every register-block
 * shape: 4-row blocks and the 3/2/1 rests) too; and 1, 2 or 3 threads agree. */
static void check_invariance(const fmt_case *c, int64_t rows, int64_t cols, llmlab_threadpool *tp2,
                             llmlab_threadpool *tp3) {
    enum { M = 17 };
    float *W = rand_weights(rows, cols), *X = rand_x((size_t)M * cols);
    llmlab_qmat q;
    pack_ok(&q, c, W, rows, cols, NULL);
    size_t row_bytes = sizeof(float) * (size_t)rows;
    float *y_full = malloc(M * row_bytes), *y_other = malloc(M * row_bytes);
    float *xb = malloc(sizeof(float) * 6 * (size_t)cols), *yb = malloc(6 * row_bytes);
    llmlab_qmat_matmul(&q, y_full, X, M, NULL);
    llmlab_threadpool *pools[] = {tp2, tp3};
    for (int p = 0; p < 2; p++) {
        llmlab_qmat_matmul(&q, y_other, X, M, pools[p]);
        cr_assert(!memcmp(y_full, y_other, M * row_bytes), "%s: %d threads differ from 1 (seed %llu, %s)", c->name,
                  p + 2, (unsigned long long)test_rng_seed, llmlab_cpu_simd_name());
    }
    for (int m = 0; m < M; m++) {
        llmlab_qmat_matmul(&q, yb, X + (size_t)m * cols, 1, (m & 1) ? tp2 : NULL);
        cr_assert(!memcmp(yb, y_full + (size_t)m * rows, row_bytes),
                  "%s: row %d alone differs from the %d-row batch (seed %llu, %s)", c->name, m, M,
                  (unsigned long long)test_rng_seed, llmlab_cpu_simd_name());
        int mb = 2 + m % 5, pos = m % mb;
        for (size_t i = 0; i < (size_t)mb * cols; i++) xb[i] = test_rng_f();
        memcpy(xb + (size_t)pos * cols, X + (size_t)m * cols, sizeof(float) * (size_t)cols);
        llmlab_qmat_matmul(&q, yb, xb, mb, tp3);
        cr_assert(!memcmp(yb + (size_t)pos * rows, y_full + (size_t)m * rows, row_bytes),
                  "%s: row %d differs at position %d of a %d-row batch (seed %llu, %s)", c->name, m, pos, mb,
                  (unsigned long long)test_rng_seed, llmlab_cpu_simd_name());
    }
    llmlab_qmat_free(&q);
    free(W);
    free(X);
    free(y_full);
    free(y_other);
    free(xb);
    free(yb);
}

/* rows = 53: three 16-row tasks and a 5-row one, so every register-block width
 * leaves an N tail. */
static void invariance_all(void) {
    test_rng_start();
    llmlab_threadpool *tp2 = llmlab_threadpool_create(2), *tp3 = llmlab_threadpool_create(3);
    cr_assert(tp2 && tp3);
    for (int ci = 0; ci < N_CASES; ci++) check_invariance(&CASES[ci], 53, 512, tp2, tp3);
    for (int ci = 0; ci < N_CASES; ci++)
        if (any_cols(CASES[ci].f)) check_invariance(&CASES[ci], 29, 203, tp2, tp3);
    llmlab_threadpool_free(tp2);
    llmlab_threadpool_free(tp3);
}

Test(quant_kernels, batch_and_thread_invariant) { invariance_all(); }

Test(quant_kernels, batch_and_thread_invariant_scalar) {
    llmlab_cpu_force_scalar(1);
    invariance_all();
    llmlab_cpu_force_scalar(0);
}

/* ---- in_scale --------------------------------------------------------------------------------------- */

/* in_scale multiplies x once per row: with it, the weight-only formats give
 * exactly what the same packed weights give on x * in_scale computed outside;
 * dequant returns W * in_scale. */
Test(quant_kernels, in_scale_scales_the_activations) {
    test_rng_start();
    const int M = 3;
    const int64_t rows = 11, cols = 256;
    for (int ci = 0; ci < N_CASES; ci++) {
        const fmt_case *c = &CASES[ci];
        float *W = rand_weights(rows, cols), *x = rand_x((size_t)M * cols), *in = malloc(sizeof(float) * cols);
        float *xs = malloc(sizeof(float) * M * cols);
        for (int64_t k = 0; k < cols; k++) in[k] = 0.5f + fabsf(test_rng_f()) * 2.0f;
        for (int m = 0; m < M; m++)
            for (int64_t k = 0; k < cols; k++) xs[m * cols + k] = x[m * cols + k] * in[k];
        llmlab_qmat qi, q0;
        pack_ok(&qi, c, W, rows, cols, in);
        pack_ok(&q0, c, W, rows, cols, NULL);
        float *y1 = malloc(sizeof(float) * M * rows), *y2 = malloc(sizeof(float) * M * rows);
        llmlab_qmat_matmul(&qi, y1, x, M, NULL);
        llmlab_qmat_matmul(&q0, y2, xs, M, NULL);
        cr_assert(!memcmp(y1, y2, sizeof(float) * M * rows), "%s: in_scale differs from scaling x outside (seed %llu)",
                  c->name, (unsigned long long)test_rng_seed);
        float *d1 = malloc(sizeof(float) * rows * cols), *d0 = malloc(sizeof(float) * rows * cols);
        llmlab_qmat_dequant_rows(&qi, 0, rows, d1);
        llmlab_qmat_dequant_rows(&q0, 0, rows, d0);
        for (int64_t i = 0; i < rows * cols; i++)
            cr_assert(d1[i] == d0[i] * in[i % cols], "%s: dequant with in_scale at %lld", c->name, (long long)i);
        cr_assert_gt(llmlab_qmat_bytes(&qi), llmlab_qmat_bytes(&q0), "%s: in_scale bytes counted", c->name);
        llmlab_qmat_free(&qi);
        llmlab_qmat_free(&q0);
        free(W);
        free(x);
        free(in);
        free(xs);
        free(y1);
        free(y2);
        free(d1);
        free(d0);
    }
}

/* ---- GGUF blocks laid out by hand ------------------------------------------------------------------- */

/* The documented meaning of the bytes (llmlab.h / ggml), written here
 * independently of the packer: random bytes in, the formula's values out. */
static float h2f(const uint8_t *p) { return llmlab_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void put_h(uint8_t *p, float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* Q4_K's 12 scale bytes: sub-blocks 0-3 take the low 6 bits of bytes j (scale)
 * and j + 4 (min); sub-blocks 4-7 take the low/high nibble of byte j + 4 as the
 * low 4 bits of scale/min, and the top 2 bits of byte j - 4 (scale) / byte j (min). */
static void q4k_sm(const uint8_t *s, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] % 64;
        *mn = s[j + 4] % 64;
    } else {
        *sc = (s[j + 4] % 16) + 16 * (s[j - 4] / 64);
        *mn = (s[j + 4] / 16) + 16 * (s[j] / 64);
    }
}

/* Fills rows of blocks with random bytes and finite f16 scales; returns the
 * expected dequantized matrix [rows][cols]. */
static float *hand_blocks(llmlab_dtype t, uint8_t *data, int64_t rows, int64_t cols) {
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    size_t bb = llmlab_dtype_block_bytes(t);
    int64_t bw = llmlab_dtype_block(t);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < cols / bw; b++) {
            uint8_t *blk = data + (size_t)(r * (cols / bw) + b) * bb;
            float *o = w + r * cols + b * bw;
            for (size_t i = 0; i < bb; i++) blk[i] = (uint8_t)test_rng_u64();
            put_h(blk, test_rng_f() * 0.05f);
            if (t == LLMLAB_DTYPE_Q8_0) {
                for (int i = 0; i < 32; i++) o[i] = h2f(blk) * (float)(int8_t)blk[2 + i];
            } else if (t == LLMLAB_DTYPE_Q4_0) { /* weight i < 16: low nibble of byte i; i >= 16: high of i - 16 */
                for (int i = 0; i < 32; i++) o[i] = h2f(blk) * (float)((i < 16 ? blk[2 + i] % 16 : blk[2 + i - 16] / 16) - 8);
            } else { /* Q4_K: 64-weight chunk c: low nibbles of qs[32c..] = sub-block 2c, high = 2c + 1 */
                put_h(blk + 2, fabsf(test_rng_f()) * 0.02f);
                for (int i = 0; i < 256; i++) {
                    int sub = i / 32, sc, mn;
                    q4k_sm(blk + 4, sub, &sc, &mn);
                    uint8_t byte = blk[16 + 32 * (i / 64) + i % 32];
                    int nib = sub % 2 ? byte / 16 : byte % 16;
                    o[i] = h2f(blk) * (float)sc * (float)nib - h2f(blk + 2) * (float)mn;
                }
            }
        }
    return w;
}

Test(quant_kernels, gguf_blocks_by_hand) {
    test_rng_start();
    static const llmlab_dtype T[] = {LLMLAB_DTYPE_Q8_0, LLMLAB_DTYPE_Q4_0, LLMLAB_DTYPE_Q4_K};
    const int64_t rows = 7, cols = 512;
    const int M = 3;
    llmlab_threadpool *tp = llmlab_threadpool_create(2);
    for (int ti = 0; ti < 3; ti++) {
        size_t bytes = llmlab_dtype_row_bytes(T[ti], cols) * rows;
        uint8_t *base = malloc(bytes + 1), *data = base + 1; /* odd address: GGUF data needs no alignment */
        float *expect = hand_blocks(T[ti], data, rows, cols), *deq = malloc(sizeof(float) * rows * cols);
        llmlab_qmat q;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_qmat_wrap(&q, T[ti], data, rows, cols, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(q.owns_data, 0);
        llmlab_qmat_dequant_rows(&q, 0, rows, deq);
        for (int64_t i = 0; i < rows * cols; i++)
            cr_assert(deq[i] == expect[i], "%s: dequant[%lld] = %.9g, the format says %.9g (seed %llu)",
                      llmlab_dtype_name(T[ti]), (long long)i, deq[i], expect[i], (unsigned long long)test_rng_seed);
        /* the dense path: row gather and matmul through llmlab_cpu_* */
        float row[512];
        llmlab_cpu_row_to_f32(row, data, T[ti], 4, (int)cols);
        cr_assert(!memcmp(row, expect + 4 * cols, sizeof row), "%s: llmlab_cpu_row_to_f32", llmlab_dtype_name(T[ti]));
        float *x = rand_x((size_t)M * cols), *y = malloc(sizeof(float) * M * rows), *yq = malloc(sizeof(float) * M * rows);
        llmlab_cpu_matmul(y, x, data, T[ti], M, (int)rows, (int)cols, tp);
        llmlab_qmat_matmul(&q, yq, x, M, NULL);
        cr_assert(!memcmp(y, yq, sizeof(float) * M * rows), "%s: dense matmul differs from the qmat kernel",
                  llmlab_dtype_name(T[ti]));
        llmlab_cpu_matmul_ref(yq, x, data, T[ti], M, (int)rows, (int)cols);
        /* Against the f32 dot of the documented weights: the activations are
         * quantized to int8 per block of 32 (error <= d_b / 2 per element, d_b =
         * max|x_b| / 127), so |y - w.x| <= sum_k |w_k| d_b / 2 plus summation. */
        for (int m = 0; m < M; m++)
            for (int64_t n = 0; n < rows; n++) {
                double exact = 0, bound = 0, S = 0;
                for (int64_t k = 0; k < cols; k++) {
                    double wk = expect[n * cols + k], xk = x[m * cols + k];
                    exact += wk * xk;
                    bound += fabs(wk) * amax_of(x + m * cols + k / 32 * 32, 32) / 127.0 / 2;
                    S += fabs(wk) * (fabs(xk) + 0.1);
                }
                bound += 4.0 * (double)cols / (1 << 24) * S * (T[ti] == LLMLAB_DTYPE_Q4_K ? 8 : 1);
                float a = y[m * rows + n], r = yq[m * rows + n];
                cr_assert(fabs(a - exact) <= bound && fabs(r - exact) <= bound,
                          "%s y[%d][%lld]: fast %.7g ref %.7g, f32 dot %.7g, bound %.3g (seed %llu)",
                          llmlab_dtype_name(T[ti]), m, (long long)n, a, r, exact, bound, (unsigned long long)test_rng_seed);
            }
        llmlab_qmat_free(&q);
        free(base);
        free(expect);
        free(deq);
        free(x);
        free(y);
        free(yq);
    }
    llmlab_threadpool_free(tp);
}

/* ---- fp8 e4m3 ------------------------------------------------------------------------------------------- */

/* The OCP e4m3 definition: sign, 4 exponent bits (bias 7), 3 mantissa bits;
 * exponent 0 is subnormal (m / 8 * 2^-6); S.1111.111 is NaN; no infinities. */
static double e4m3_def(int c) {
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}

Test(quant_kernels, fp8_e4m3_all_codes) {
    for (int c = 0; c < 256; c++) {
        float v = llmlab_fp8_e4m3_to_f32((uint8_t)c);
        double d = e4m3_def(c);
        if (isnan(d)) {
            cr_assert(isnan(v), "code 0x%02x must be NaN", c);
            cr_assert(isnan(llmlab_fp8_e4m3_to_f32(llmlab_f32_to_fp8_e4m3(v))), "NaN must stay NaN");
            continue;
        }
        cr_assert(v == d, "code 0x%02x: %.9g, definition %.9g", c, v, d);
        cr_assert_eq(llmlab_f32_to_fp8_e4m3(v), c, "code 0x%02x does not round-trip (got 0x%02x)", c,
                     llmlab_f32_to_fp8_e4m3(v));
    }
    cr_assert(llmlab_fp8_e4m3_to_f32(0x7e) == 448.0f && llmlab_fp8_e4m3_to_f32(0xfe) == -448.0f);
    cr_assert(llmlab_fp8_e4m3_to_f32(0x01) == 0x1p-9f, "smallest subnormal 2^-9");
    cr_assert_eq(llmlab_f32_to_fp8_e4m3(1e6f), 0x7e, "saturates to +448");
    cr_assert_eq(llmlab_f32_to_fp8_e4m3(-INFINITY), 0xfe, "saturates to -448");
    cr_assert_eq(llmlab_f32_to_fp8_e4m3(NAN) & 0x7f, 0x7f);
}

/* The matmul kernels decode every finite code exactly: row c of a hand-made FP8
 * matrix holds code c then zeros, x = e_0, so y[c] is the code's value (sums
 * with exact zeros, scale 1); with x = e_k the same holds at every lane k. */
Test(quant_kernels, fp8_kernel_decodes_every_code) {
    enum { R = 256, C = 40 };
    uint8_t *codes = calloc(R, C);
    float scale = 1.0f, x[C], y[R];
    for (int k = 0; k < C; k++) {
        for (int c = 0; c < R; c++) codes[c * C + k] = (c & 0x7f) == 0x7f ? 0 : (uint8_t)c;
        llmlab_qmat q = {.format = LLMLAB_QF_FP8, .rows = R, .cols = C, .group = 1, .per_row = 0,
                         .data = codes, .row_bytes = C, .row_scale = &scale};
        for (int i = 0; i < C; i++) x[i] = i == k ? 1.0f : 0.0f;
        for (int path = 0; path < 2; path++) {
            llmlab_cpu_force_scalar(path);
            llmlab_qmat_matmul(&q, y, x, 1, NULL);
            for (int c = 0; c < R; c++)
                if ((c & 0x7f) != 0x7f)
                    cr_assert(y[c] == llmlab_fp8_e4m3_to_f32((uint8_t)c), "lane %d code 0x%02x: %.9g (%s)", k, c, y[c],
                              llmlab_cpu_simd_name());
        }
        llmlab_cpu_force_scalar(0);
        memset(codes, 0, (size_t)R * C);
    }
    free(codes);
}

/* Every f32 rounds to the nearest finite code, ties to the even mantissa:
 * midpoints between neighbours, points just off them, and random values,
 * checked against a search over all codes. */
static int nearest_code(float f) {
    if (fabsf(f) >= 448.0f) return f < 0 ? 0xfe : 0x7e;
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 0x7f; c++) {
        double dd = fabs(e4m3_def(c) - fabs((double)f));
        if (dd < bd || (dd == bd && (c & 1) == 0)) {
            bd = dd;
            best = c;
        }
    }
    return (f < 0 ? 0x80 : 0) | best; /* the sign stays, -0 included */
}

Test(quant_kernels, fp8_e4m3_rounding) {
    test_rng_start();
    for (int c = 0; c < 0x7e; c++) { /* positive neighbours c, c + 1 */
        double lo = e4m3_def(c), hi = e4m3_def(c + 1), mid = (lo + hi) / 2;
        for (int sgn = 0; sgn < 2; sgn++) {
            float m = (float)(sgn ? -mid : mid);
            int want = ((c & 1) == 0 ? c : c + 1) | (sgn ? 0x80 : 0);
            cr_assert_eq(llmlab_f32_to_fp8_e4m3(m), want, "midpoint %.9g between codes 0x%02x and 0x%02x: got 0x%02x",
                         m, c, c + 1, llmlab_f32_to_fp8_e4m3(m));
            float above = nextafterf((float)mid, INFINITY), below = nextafterf((float)mid, 0);
            cr_assert_eq(llmlab_f32_to_fp8_e4m3(above), c + 1, "just above the midpoint of 0x%02x", c);
            cr_assert_eq(llmlab_f32_to_fp8_e4m3(below), c, "just below the midpoint of 0x%02x", c);
        }
    }
    for (int i = 0; i < 20000; i++) {
        float f = test_rng_f() * powf(2.0f, (float)(int)(test_rng_u64() % 24) - 12.0f);
        int want = nearest_code(f), got = llmlab_f32_to_fp8_e4m3(f);
        cr_assert_eq(got, want, "f = %.9g: code 0x%02x, nearest 0x%02x (seed %llu)", f, got, want,
                     (unsigned long long)test_rng_seed);
    }
}

/* ---- pack_codes ----------------------------------------------------------------------------------------- */

Test(quant_kernels, pack_codes_round_trip) {
    test_rng_start();
    const int64_t rows = 5, cols = 256;
    for (int asym = 0; asym < 2; asym++) {
        const int group = asym ? 64 : 128;
        int64_t ng = cols / group;
        int8_t *codes = malloc((size_t)(rows * cols));
        float *scale = malloc(sizeof(float) * rows * ng), *mn = malloc(sizeof(float) * rows * ng);
        for (int64_t i = 0; i < rows * cols; i++) codes[i] = (int8_t)((int)(test_rng_u64() % 16) - (asym ? 0 : 8));
        for (int64_t i = 0; i < rows * ng; i++) {
            scale[i] = fabsf(test_rng_f()) * 0.01f;
            mn[i] = test_rng_f() * 0.05f;
        }
        llmlab_qmat q;
        llmlab_err err = {0};
        llmlab_qformat f = asym ? LLMLAB_QF_I4_ASYM : LLMLAB_QF_I4_SYM;
        cr_assert_eq(llmlab_qmat_pack_codes(&q, f, codes, scale, asym ? mn : NULL, rows, cols, group, NULL, &err),
                     LLMLAB_OK, "%s", err.msg);
        float *d = malloc(sizeof(float) * rows * cols);
        llmlab_qmat_dequant_rows(&q, 0, rows, d);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                float s = llmlab_f16_to_f32(llmlab_f32_to_f16(scale[r * ng + k / group]));
                float m = asym ? llmlab_f16_to_f32(llmlab_f32_to_f16(mn[r * ng + k / group])) : 0.0f;
                float want = asym ? s * (float)codes[r * cols + k] + m : s * (float)codes[r * cols + k];
                cr_assert(d[r * cols + k] == want, "asym=%d [%lld][%lld]: %.9g, expected %.9g", asym, (long long)r,
                          (long long)k, d[r * cols + k], want);
            }
        codes[7] = asym ? 16 : -9;
        llmlab_qmat bad;
        cr_assert_eq(llmlab_qmat_pack_codes(&bad, f, codes, scale, asym ? mn : NULL, rows, cols, group, NULL, &err),
                     LLMLAB_EINVAL);
        cr_assert(strstr(err.msg, "[0][7]"), "message names the code: %s", err.msg);
        llmlab_qmat_free(&q);
        free(codes);
        free(scale);
        free(mn);
        free(d);
    }
}

/* ---- input errors ----------------------------------------------------------------------------------------- */

Test(quant_kernels, bad_input_errors) {
    float W[2 * 96];
    for (int i = 0; i < 2 * 96; i++) W[i] = (float)(i % 7) - 3.0f + 0.5f;
    llmlab_qmat q;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_Q4_K, W, 2, 96, 0, 0, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "cols = 96") && strstr(err.msg, "256"), "%s", err.msg);
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_I4_SYM, W, 2, 96, 48, 0, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "group = 48"), "%s", err.msg);
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_I4_ASYM, W, 2, 96, 64, 0, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "cols = 96") && strstr(err.msg, "group"), "%s", err.msg);
    cr_assert_eq(llmlab_qmat_pack(&q, (llmlab_qformat)42, W, 2, 96, 0, 0, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "42"), "%s", err.msg);
    W[96 + 5] = NAN;
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_Q8_0, W, 2, 96, 0, 0, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "[1][5]") && strstr(err.msg, "not finite"), "%s", err.msg);
    cr_assert_eq(llmlab_qmat_wrap(&q, LLMLAB_DTYPE_F16, W, 2, 96, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "f16"), "%s", err.msg);
    cr_assert_eq(llmlab_qmat_wrap(&q, LLMLAB_DTYPE_Q8_0, W, 2, 100, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "cols = 100"), "%s", err.msg);
    llmlab_qmat_free(NULL);
    memset(&q, 0, sizeof q);
    llmlab_qmat_free(&q); /* safe on a zeroed qmat */
}
