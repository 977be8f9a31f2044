/* test_cuda_quant.c - the CUDA quant kernels (kernels/cuda/cuda_quant.h) against
 * the CPU reference of kernels/cpu/quant.h.
 *
 * Every test skips (not fails) in a build without CUDA or on a machine without
 * a CUDA device.  Inputs are fresh random numbers every run (never zeros); the
 * seed is printed in every failure message (replay with LLMLAB_TEST_SEED).
 *
 *   exact        integer-valued weights, scales that are powers of two and
 *                integer activations: every product and partial sum is an
 *                integer (or a multiple of 1/4) below 2^22, exact in bf16 as
 *                well, so any summation order gives the exact result and the
 *                GEMV and (int4) MMA kernels must equal llmlab_qmat_matmul_ref
 *                bit for bit.  cols = 9216 so the kernels' unrolled loops
 *                wrap and their tails run.
 *   random       the packers' real scales on uniform random data: the GEMV
 *                kernel within the f32 summation bound of the reference, the
 *                MMA kernel and the GEMM path (bf16 operands) within a bf16
 *                rounding bound.
 *   invariance   a row's GEMV (and MMA) result is the same bits whatever M.
 *   errors       bad matrices and arguments give llmlab_err messages.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmlab/llmlab.h"

#ifndef LLMLAB_HAVE_CUDA

Test(cuda_quant, skipped_without_cuda) { cr_skip_test("built without CUDA (LLMLAB_CUDA=OFF or no toolkit)"); }

#else

#include "core/dtype.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"
#include "tests/util/cuda_device.h"
#include "tests/util/test_rng.h"

/* ---- random numbers ------------------------------------------------------------- */


static int rand_int(int lo, int hi) { return lo + (int)(test_rng_u64() % (uint64_t)(hi - lo + 1)); }

/* ---- the device ------------------------------------------------------------------ */

static llmlab_cuda_qctx *g_ctx;

/* Skips the test without a device; otherwise a context (not deterministic). */
static void need_device(void) {
    g_ctx = cuda_test_device();
}

static void done_device(void) {
    llmlab_cuda_qctx_free(g_ctx);
    g_ctx = NULL;
}

static void *dev_copy(const void *h, size_t bytes) {
    llmlab_err err = {0};
    void *d = NULL;
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, &d, bytes, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_mem_h2d(g_ctx, d, h, bytes, &err), LLMLAB_OK, "%s", err.msg);
    return d;
}

/* y[M][rows] = x[M][cols] W^T on the device through path; y is poisoned with NaN
 * first and every element must come back finite (all of them written). */
static void dev_matmul(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M, int64_t rows,
                       int64_t cols, llmlab_cuda_path path, const char *what) {
    llmlab_err err = {0};
    size_t ny = (size_t)M * (size_t)rows;
    float *dx = dev_copy(x, (size_t)M * (size_t)cols * sizeof(float)), *dy = NULL;
    cr_assert_eq(llmlab_cuda_mem_alloc(c, (void **)&dy, ny * sizeof(float), &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_mem_set(c, dy, 0xff, ny * sizeof(float), &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_matmul(c, w, dy, dx, M, path, &err), LLMLAB_OK, "%s: %s", what, err.msg);
    cr_assert_eq(llmlab_cuda_qctx_sync(c, &err), LLMLAB_OK, "%s: %s", what, err.msg);
    cr_assert_eq(llmlab_cuda_mem_d2h(c, y, dy, ny * sizeof(float), &err), LLMLAB_OK, "%s", err.msg);
    for (size_t i = 0; i < ny; i++)
        cr_assert(isfinite(y[i]), "%s M=%d: y[%zu][%zu] not written or not finite (%g) (seed %llu)", what, M,
                  i / (size_t)rows, i % (size_t)rows, (double)y[i], (unsigned long long)test_rng_seed);
    llmlab_cuda_mem_free(dx);
    llmlab_cuda_mem_free(dy);
}

static llmlab_cuda_wmat *upload(const llmlab_qmat *q) {
    llmlab_err err = {0};
    llmlab_cuda_wmat *w = NULL;
    cr_assert_eq(llmlab_cuda_wmat_upload(g_ctx, &w, q, &err), LLMLAB_OK, "%s", err.msg);
    return w;
}

/* ---- the formats under test --------------------------------------------------------- */

typedef struct {
    llmlab_qformat f;
    int group, per_row, in_scale;
    const char *name;
} fcase;

static const fcase CASES[] = {
    {LLMLAB_QF_I8_ROW, 0, 0, 0, "i8_row"},         {LLMLAB_QF_FP8, 0, 1, 0, "fp8 per row"},
    {LLMLAB_QF_FP8, 0, 0, 0, "fp8 per tensor"},    {LLMLAB_QF_I4_SYM, 32, 0, 0, "i4_sym g32"},
    {LLMLAB_QF_I4_SYM, 64, 0, 0, "i4_sym g64"},    {LLMLAB_QF_I4_SYM, 128, 0, 0, "i4_sym g128"},
    {LLMLAB_QF_I4_ASYM, 32, 0, 0, "i4_asym g32"},  {LLMLAB_QF_I4_ASYM, 64, 0, 0, "i4_asym g64"},
    {LLMLAB_QF_I4_ASYM, 128, 0, 0, "i4_asym g128"}, {LLMLAB_QF_Q8_0, 0, 0, 0, "q8_0"},
    {LLMLAB_QF_Q4_0, 0, 0, 0, "q4_0"},             {LLMLAB_QF_I4_SYM, 128, 0, 1, "i4_sym g128 + in_scale"},
    {LLMLAB_QF_I4_ASYM, 64, 0, 1, "i4_asym g64 + in_scale"}, {LLMLAB_QF_FP8, 0, 1, 1, "fp8 per row + in_scale"},
    {LLMLAB_QF_Q8_0, 0, 0, 1, "q8_0 + in_scale"},  {LLMLAB_QF_I4_SYM, 256, 0, 0, "i4_sym g256"},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static int is_gguf(llmlab_qformat f) { return f == LLMLAB_QF_Q8_0 || f == LLMLAB_QF_Q4_0; }
static int is_i4(llmlab_qformat f) { return f == LLMLAB_QF_I4_SYM || f == LLMLAB_QF_I4_ASYM; }

/* ---- exact cases -------------------------------------------------------------------- */

static void put_f16(uint8_t *p, float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* A matrix of c's format whose every weight is a multiple of 1/2 with |w| <= 127,
 * scales powers of two; in_scale (when c asks for one) powers of two.  *raw
 * receives the GGUF bytes the qmat wraps (free after the qmat); wrapped GGUF
 * matrices have no in_scale (the random test covers that case). */
static void exact_matrix(llmlab_qmat *q, const fcase *c, int64_t rows, int64_t cols, float *in_scale,
                         uint8_t **raw) {
    llmlab_err err = {0};
    *raw = NULL;
    const float *ins = c->in_scale ? in_scale : NULL;
    if (c->f == LLMLAB_QF_I4_SYM || c->f == LLMLAB_QF_I4_ASYM) {
        int asym = c->f == LLMLAB_QF_I4_ASYM;
        int64_t ng = cols / c->group;
        int8_t *codes = malloc((size_t)(rows * cols));
        float *scale = malloc((size_t)(rows * ng) * sizeof(float)), *mn = malloc((size_t)(rows * ng) * sizeof(float));
        for (int64_t i = 0; i < rows * cols; i++) codes[i] = (int8_t)(asym ? rand_int(0, 15) : rand_int(-8, 7));
        for (int64_t i = 0; i < rows * ng; i++) {
            scale[i] = rand_int(0, 1) ? 0.5f : 1.0f;
            mn[i] = (float)rand_int(-8, 0);
        }
        cr_assert_eq(llmlab_qmat_pack_codes(q, c->f, codes, scale, asym ? mn : NULL, rows, cols, c->group, ins, &err),
                     LLMLAB_OK, "%s", err.msg);
        free(codes);
        free(scale);
        free(mn);
    } else if (is_gguf(c->f)) {
        int q8 = c->f == LLMLAB_QF_Q8_0;
        size_t bb = q8 ? 34 : 18, nb = (size_t)(cols / 32);
        uint8_t *b = malloc(bb * nb * (size_t)rows);
        for (size_t i = 0; i < nb * (size_t)rows; i++) {
            uint8_t *blk = b + i * bb;
            put_f16(blk, rand_int(0, 1) ? 0.5f : 1.0f);
            for (size_t j = 2; j < bb; j++) blk[j] = q8 ? (uint8_t)(int8_t)rand_int(-8, 8) : (uint8_t)rand_int(0, 255);
        }
        cr_assert_eq(llmlab_qmat_wrap(q, q8 ? LLMLAB_DTYPE_Q8_0 : LLMLAB_DTYPE_Q4_0, b, rows, cols, &err), LLMLAB_OK,
                     "%s", err.msg);
        *raw = b;
    } else { /* I8_ROW / FP8: integers, one per row at the format's max -> scale 1 */
        float top = c->f == LLMLAB_QF_I8_ROW ? 127.0f : 448.0f;
        int lim = c->f == LLMLAB_QF_I8_ROW ? 8 : 16; /* e4m3 holds the integers up to 16 */
        float *W = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t k = 0; k < cols; k++) W[r * cols + k] = (float)rand_int(-lim, lim);
            W[r * cols + rand_int(0, (int)cols - 1)] = rand_int(0, 1) ? top : -top;
        }
        cr_assert_eq(llmlab_qmat_pack(q, c->f, W, rows, cols, 0, c->per_row, ins, &err), LLMLAB_OK, "%s", err.msg);
        int ns = c->f == LLMLAB_QF_FP8 && !c->per_row ? 1 : (int)rows;
        for (int i = 0; i < ns; i++)
            cr_assert_eq(q->row_scale[i], 1.0f, "%s: the packer chose scale %g, not 1 (test premise)", c->name,
                         (double)q->row_scale[i]);
        free(W);
    }
}

/* Integer activations in [-8, 8]; each block of 32 has one +-127 so that the
 * GGUF activation scale d = 127 / 127 = 1 and the int8 codes are x itself. */
static float *exact_x(int M, int64_t cols) {
    float *x = malloc((size_t)M * (size_t)cols * sizeof(float));
    for (size_t i = 0; i < (size_t)M * (size_t)cols; i++) x[i] = (float)rand_int(-8, 8);
    for (size_t b = 0; b < (size_t)M * (size_t)cols / 32; b++) x[32 * b + (size_t)rand_int(0, 31)] = rand_int(0, 1) ? 127.0f : -127.0f;
    return x;
}

Test(cuda_quant, gemv_exact_on_integer_data) {
    need_device();
    const int64_t rows = 13, cols = 9216;
    static const int Ms[] = {1, 2, 4, 11, 37};
    float *ins = malloc((size_t)cols * sizeof(float));
    for (int64_t k = 0; k < cols; k++) ins[k] = rand_int(0, 1) ? 0.5f : 1.0f;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const fcase *c = &CASES[ci];
        if (c->in_scale && is_gguf(c->f)) continue;
        llmlab_qmat q = {0};
        uint8_t *raw;
        exact_matrix(&q, c, rows, cols, ins, &raw);
        llmlab_cuda_wmat *w = upload(&q);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int M = Ms[mi];
            float *x = exact_x(M, cols), *y = malloc((size_t)M * rows * sizeof(float)),
                  *ref = malloc((size_t)M * rows * sizeof(float));
            llmlab_qmat_matmul_ref(&q, ref, x, M);
            for (int path = LLMLAB_CUDA_PATH_GEMV; path <= LLMLAB_CUDA_PATH_MMA; path += 2) {
                if (path == LLMLAB_CUDA_PATH_MMA && !is_i4(c->f)) continue;
                const char *pn = path == LLMLAB_CUDA_PATH_MMA ? "mma" : "gemv";
                dev_matmul(g_ctx, w, y, x, M, rows, cols, (llmlab_cuda_path)path, c->name);
                for (int64_t i = 0; i < M * rows; i++)
                    cr_assert(y[i] == ref[i], "%s %s M=%d y[%lld][%lld] = %.9g, exact reference %.9g (seed %llu)",
                              c->name, pn, M, (long long)(i / rows), (long long)(i % rows), (double)y[i],
                              (double)ref[i], (unsigned long long)test_rng_seed);
            }
            /* The bf16 GEMM path: the weights and x are exact in bf16 too (and
             * the GGUF activation codes are x itself); its tensor-core sums are
             * trusted to 4 ulps of the exact value. */
            dev_matmul(g_ctx, w, y, x, M, rows, cols, LLMLAB_CUDA_PATH_GEMM, c->name);
            for (int64_t i = 0; i < M * rows; i++)
                cr_assert(fabsf(y[i] - ref[i]) <= 4.0f * 0x1p-24f * fabsf(ref[i]) + 1e-6f,
                          "%s gemm M=%d y[%lld][%lld] = %.9g, exact reference %.9g (seed %llu)", c->name, M,
                          (long long)(i / rows), (long long)(i % rows), (double)y[i], (double)ref[i],
                          (unsigned long long)test_rng_seed);
            free(x);
            free(y);
            free(ref);
        }
        llmlab_cuda_wmat_free(w);
        llmlab_qmat_free(&q);
        free(raw);
    }
    free(ins);
    done_device();
}

/* ---- random cases ------------------------------------------------------------------- */

/* The effective weights W'[rows][cols] (in_scale folded in), for the bounds and
 * the GEMM path's reference. */
static float *dequant_all(const llmlab_qmat *q) {
    float *W = malloc((size_t)(q->rows * q->cols) * sizeof(float));
    llmlab_qmat_dequant_rows(q, 0, q->rows, W);
    return W;
}

/* S = sum_k |x_k W'_k| and L2 = sqrt(sum_k (x_k W'_k)^2) of one output. */
static void magnitudes(const float *W, const float *x, int64_t cols, double *S, double *L2) {
    double s = 0, l = 0;
    for (int64_t k = 0; k < cols; k++) {
        double p = (double)W[k] * x[k];
        s += fabs(p);
        l += p * p;
    }
    *S = s;
    *L2 = sqrt(l);
}

/* Checks y (GEMV) against llmlab_qmat_matmul_ref and y2 (GEMM) against dequant(W) x.
 *
 * GEMV: both sides sum the same K products (same activation codes for the GGUF
 * formats) in different orders; by the standard bound for recursive f32
 * summation (Higham 3.1) each is within (K + 40) u S of the exact sum of the
 * rounded products (u = 2^-24; + 40 covers the per-packet partial sums and the
 * reduction tree), and the products themselves differ by at most 2 u S (scale
 * applied per weight vs per packet), so |y - ref| <= 2 (K + 42) u S.  A wrong
 * weight, scale or activation moves y by about S / sqrt(K): far outside.
 *
 * GEMM: W' and x are rounded to bf16 (relative error <= 2^-8 each, random in
 * sign), so the error is a sum of K terms of size <= 2^-7 |x_k W'_k| with
 * standard deviation about 0.82 * 2^-8 * L2; 2^-5 * L2 is ten standard
 * deviations, plus rtol 1e-2 as the brief for bf16 paths asks. */
static void check_random(const fcase *c, const llmlab_qmat *q, const float *W, const float *x, int M, const float *y,
                         const float *ref, const float *y2, const float *y3) {
    const double u = 0x1p-24;
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * q->cols;
        for (int64_t n = 0; n < q->rows; n++) {
            double S, L2, exact = 0;
            const float *wn = W + n * q->cols;
            /* W already holds W * in_scale: S and the exact sum use raw x. */
            magnitudes(wn, xm, q->cols, &S, &L2);
            for (int64_t k = 0; k < q->cols; k++) exact += (double)wn[k] * xm[k];
            size_t i = (size_t)m * (size_t)q->rows + (size_t)n;
            double tol = 2.0 * ((double)q->cols + 42.0) * u * S + 4.0 * u * fabs(ref[i]);
            cr_assert(fabs((double)y[i] - ref[i]) <= tol,
                      "%s gemv M=%d y[%d][%lld] = %.9g, reference %.9g, |diff| %.3g > %.3g (seed %llu)", c->name, M,
                      m, (long long)n, (double)y[i], (double)ref[i], fabs((double)y[i] - ref[i]), tol,
                      (unsigned long long)test_rng_seed);
            double tol2 = 0x1p-5 * L2 + 1e-2 * fabs(exact) + 4.0 * (double)q->cols * u * S;
            cr_assert(fabs((double)y2[i] - exact) <= tol2,
                      "%s gemm M=%d y[%d][%lld] = %.9g, dequant(W) x = %.9g, |diff| %.3g > %.3g (seed %llu)", c->name,
                      M, m, (long long)n, (double)y2[i], exact, fabs((double)y2[i] - exact), tol2,
                      (unsigned long long)test_rng_seed);
            if (!y3) continue;
            /* MMA: the weight is rounded twice (scale to bf16, then the
             * product) and x once, 2^-8 relative each: standard deviation
             * about 2^-8 L2, the bound sixteen of them; ASYM's s n + m can
             * cancel, so its rounding is relative to |s n| + |m|: twice that. */
            double tol3 = (c->f == LLMLAB_QF_I4_ASYM ? 0x1p-3 : 0x1p-4) * L2 + 1e-2 * fabs(exact) +
                          4.0 * (double)q->cols * u * S;
            cr_assert(fabs((double)y3[i] - exact) <= tol3,
                      "%s mma M=%d y[%d][%lld] = %.9g, dequant(W) x = %.9g, |diff| %.3g > %.3g (seed %llu)", c->name,
                      M, m, (long long)n, (double)y3[i], exact, fabs((double)y3[i] - exact), tol3,
                      (unsigned long long)test_rng_seed);
        }
    }
}

Test(cuda_quant, gemv_and_gemm_match_reference_on_random_data) {
    need_device();
    /* 37: a partial block of 4 rows; 768: int4 rows of 390..432 bytes, so some
     * need the padded device pitch */
    const int64_t rows = 37, cols = 768;
    static const int Ms[] = {1, 2, 3, 5, 8, 13, 32, 37};
    float *ins = malloc((size_t)cols * sizeof(float));
    for (int64_t k = 0; k < cols; k++) ins[k] = 0.25f + 1.5f * (test_rng_f() + 1.0f);
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const fcase *c = &CASES[ci];
        llmlab_err err = {0};
        llmlab_qmat q = {0};
        float *Wf = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t i = 0; i < rows * cols; i++) Wf[i] = 0.1f * test_rng_f();
        cr_assert_eq(llmlab_qmat_pack(&q, c->f, Wf, rows, cols, c->group, c->per_row, c->in_scale ? ins : NULL, &err),
                     LLMLAB_OK, "%s: %s", c->name, err.msg);
        float *W = dequant_all(&q);
        llmlab_cuda_wmat *w = upload(&q);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
            int M = Ms[mi];
            float *x = malloc((size_t)M * cols * sizeof(float));
            for (int64_t i = 0; i < M * cols; i++) x[i] = test_rng_f();
            float *y = malloc((size_t)M * rows * sizeof(float)), *y2 = malloc((size_t)M * rows * sizeof(float)),
                  *y3 = malloc((size_t)M * rows * sizeof(float)), *ref = malloc((size_t)M * rows * sizeof(float));
            llmlab_qmat_matmul_ref(&q, ref, x, M);
            dev_matmul(g_ctx, w, y, x, M, rows, cols, LLMLAB_CUDA_PATH_GEMV, c->name);
            dev_matmul(g_ctx, w, y2, x, M, rows, cols, LLMLAB_CUDA_PATH_GEMM, c->name);
            if (is_i4(c->f)) dev_matmul(g_ctx, w, y3, x, M, rows, cols, LLMLAB_CUDA_PATH_MMA, c->name);
            check_random(c, &q, W, x, M, y, ref, y2, is_i4(c->f) ? y3 : NULL);
            free(x);
            free(y);
            free(y2);
            free(y3);
            free(ref);
        }
        llmlab_cuda_wmat_free(w);
        llmlab_qmat_free(&q);
        free(W);
        free(Wf);
    }
    free(ins);
    done_device();
}

/* The bf16 baseline: GEMV against sum bf16(W) x in double (f32 bound), cuBLAS
 * against the same within the bf16 bound of x's rounding. */
Test(cuda_quant, bf16_baseline_matches_reference) {
    need_device();
    const int64_t rows = 45, cols = 1032; /* cols a multiple of 8, not of 16 */
    static const int Ms[] = {1, 4, 9, 33};
    float *Wf = malloc((size_t)(rows * cols) * sizeof(float)), *Wb = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) {
        Wf[i] = test_rng_f();
        Wb[i] = llmlab_bf16_to_f32(llmlab_f32_to_bf16(Wf[i]));
    }
    llmlab_err err = {0};
    llmlab_cuda_wmat *w = NULL;
    cr_assert_eq(llmlab_cuda_wmat_upload_bf16(g_ctx, &w, Wf, rows, cols, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_wmat_format(w), LLMLAB_CUDA_DENSE_BF16);
    cr_assert_eq(llmlab_cuda_wmat_bytes(w), (size_t)(rows * cols * 2));
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
        int M = Ms[mi];
        float *x = malloc((size_t)M * cols * sizeof(float)), *y = malloc((size_t)M * rows * sizeof(float)),
              *y2 = malloc((size_t)M * rows * sizeof(float));
        for (int64_t i = 0; i < M * cols; i++) x[i] = test_rng_f();
        dev_matmul(g_ctx, w, y, x, M, rows, cols, LLMLAB_CUDA_PATH_GEMV, "bf16");
        dev_matmul(g_ctx, w, y2, x, M, rows, cols, LLMLAB_CUDA_PATH_GEMM, "bf16 cublas");
        for (int m = 0; m < M; m++)
            for (int64_t n = 0; n < rows; n++) {
                double S, L2, exact = 0;
                magnitudes(Wb + n * cols, x + (size_t)m * cols, cols, &S, &L2);
                for (int64_t k = 0; k < cols; k++) exact += (double)Wb[n * cols + k] * x[(size_t)m * cols + k];
                size_t i = (size_t)m * rows + (size_t)n;
                double tol = (cols + 40.0) * 0x1p-24 * S, tol2 = 0x1p-6 * L2 + 1e-2 * fabs(exact) + tol;
                cr_assert(fabs(y[i] - exact) <= tol, "bf16 gemv M=%d y[%d][%lld] = %.9g, exact %.9g (seed %llu)", M,
                          m, (long long)n, (double)y[i], exact, (unsigned long long)test_rng_seed);
                cr_assert(fabs(y2[i] - exact) <= tol2, "bf16 cublas M=%d y[%d][%lld] = %.9g, exact %.9g (seed %llu)",
                          M, m, (long long)n, (double)y2[i], exact, (unsigned long long)test_rng_seed);
            }
        free(x);
        free(y);
        free(y2);
    }
    llmlab_cuda_wmat_free(w);
    free(Wf);
    free(Wb);
    done_device();
}

/* ---- batch invariance --------------------------------------------------------------- */

/* Row m of an M-row GEMV (int4: and MMA) equals, bit for bit, the same row
 * alone (M = 1) and in a 3-row batch; in deterministic mode AUTO takes the GEMV
 * kernel for M = 64 too. */
Test(cuda_quant, gemv_is_batch_invariant) {
    need_device();
    llmlab_err err = {0};
    llmlab_cuda_qctx *det = NULL;
    llmlab_cuda_qopts o = {0, 1, 0};
    cr_assert_eq(llmlab_cuda_qctx_create(&det, &o, &err), LLMLAB_OK, "%s", err.msg);
    const int64_t rows = 21, cols = 2048;
    const int Mbig = 64;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const fcase *c = &CASES[ci];
        llmlab_qmat q = {0};
        float *Wf = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t i = 0; i < rows * cols; i++) Wf[i] = test_rng_f();
        float *ins = malloc((size_t)cols * sizeof(float));
        for (int64_t k = 0; k < cols; k++) ins[k] = 0.5f + test_rng_f() * test_rng_f();
        cr_assert_eq(llmlab_qmat_pack(&q, c->f, Wf, rows, cols, c->group, c->per_row, c->in_scale ? ins : NULL, &err),
                     LLMLAB_OK, "%s: %s", c->name, err.msg);
        llmlab_cuda_wmat *w = upload(&q);
        float *x = malloc((size_t)Mbig * cols * sizeof(float));
        for (int64_t i = 0; i < Mbig * cols; i++) x[i] = test_rng_f();
        float *yb = malloc((size_t)Mbig * rows * sizeof(float)), *ya = malloc((size_t)Mbig * rows * sizeof(float));
        float y1[21], y3[3 * 21];
        dev_matmul(g_ctx, w, yb, x, Mbig, rows, cols, LLMLAB_CUDA_PATH_GEMV, c->name);
        dev_matmul(det, w, ya, x, Mbig, rows, cols, LLMLAB_CUDA_PATH_AUTO, c->name);
        cr_assert(!memcmp(ya, yb, (size_t)Mbig * rows * sizeof(float)),
                  "%s: deterministic AUTO at M=%d differs from the GEMV kernel (seed %llu)", c->name, Mbig,
                  (unsigned long long)test_rng_seed);
        static const int probe[] = {0, 5, 31, 63};
        for (int path = LLMLAB_CUDA_PATH_GEMV; path <= LLMLAB_CUDA_PATH_MMA; path += 2) {
            if (path == LLMLAB_CUDA_PATH_MMA && !is_i4(c->f)) continue;
            const char *pn = path == LLMLAB_CUDA_PATH_MMA ? "mma" : "gemv";
            if (path == LLMLAB_CUDA_PATH_MMA)
                dev_matmul(g_ctx, w, yb, x, Mbig, rows, cols, LLMLAB_CUDA_PATH_MMA, c->name);
            for (size_t pi = 0; pi < sizeof probe / sizeof *probe; pi++) {
                int m = probe[pi];
                dev_matmul(g_ctx, w, y1, x + (size_t)m * cols, 1, rows, cols, (llmlab_cuda_path)path, c->name);
                cr_assert(!memcmp(y1, yb + (size_t)m * rows, sizeof y1),
                          "%s %s: row %d alone differs from row %d of a %d-row batch (seed %llu)", c->name, pn, m, m,
                          Mbig, (unsigned long long)test_rng_seed);
                int m3 = m < Mbig - 2 ? m : Mbig - 3;
                dev_matmul(g_ctx, w, y3, x + (size_t)m3 * cols, 3, rows, cols, (llmlab_cuda_path)path, c->name);
                cr_assert(!memcmp(y3, yb + (size_t)m3 * rows, sizeof y3),
                          "%s %s: rows %d..%d as a 3-row batch differ from the %d-row batch (seed %llu)", c->name, pn,
                          m3, m3 + 2, Mbig, (unsigned long long)test_rng_seed);
            }
        }
        llmlab_cuda_wmat_free(w);
        llmlab_qmat_free(&q);
        free(Wf);
        free(ins);
        free(x);
        free(yb);
        free(ya);
    }
    llmlab_cuda_qctx_free(det);
    done_device();
}

/* ---- errors ----------------------------------------------------------------------------- */

Test(cuda_quant, bad_input_gives_messages) {
    need_device();
    llmlab_err err = {0};
    llmlab_cuda_wmat *w = NULL;
    float W[2 * 256];
    for (int i = 0; i < 2 * 256; i++) W[i] = test_rng_f();

    llmlab_qmat q = {0};
    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_Q4_K, W, 2, 256, 0, 0, NULL, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_wmat_upload(g_ctx, &w, &q, &err), LLMLAB_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "Q4_K"), "message: %s", err.msg);
    cr_assert_null(w);
    llmlab_qmat_free(&q);

    cr_assert_eq(llmlab_qmat_pack(&q, LLMLAB_QF_I4_SYM, W, 2, 256, 64, 0, NULL, &err), LLMLAB_OK, "%s", err.msg);
    q.row_bytes += 2; /* a layout that does not match the format */
    cr_assert_eq(llmlab_cuda_wmat_upload(g_ctx, &w, &q, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "row_bytes"), "message: %s", err.msg);
    q.row_bytes -= 2;
    q.group = 48;
    cr_assert_eq(llmlab_cuda_wmat_upload(g_ctx, &w, &q, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "group 48"), "message: %s", err.msg);
    q.group = 64;
    w = upload(&q);
    float *dx = NULL, *dy = NULL;
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, (void **)&dx, 4 * 256 * sizeof(float) + 16, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, (void **)&dy, 4 * 2 * sizeof(float), &err), LLMLAB_OK);
    cr_assert_eq(llmlab_cuda_matmul(g_ctx, w, dy, dx, 0, LLMLAB_CUDA_PATH_AUTO, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "M 0"), "message: %s", err.msg);
    cr_assert_eq(llmlab_cuda_matmul(g_ctx, w, dy, dx + 1, 1, LLMLAB_CUDA_PATH_AUTO, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "16-byte aligned"), "message: %s", err.msg);
    cr_assert_eq(llmlab_cuda_matmul(g_ctx, w, dy, dx, 1, (llmlab_cuda_path)7, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "path 7"), "message: %s", err.msg);
    llmlab_cuda_wmat *wb = NULL;
    cr_assert_eq(llmlab_cuda_wmat_upload_bf16(g_ctx, &wb, W, 2, 256, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_matmul(g_ctx, wb, dy, dx, 1, LLMLAB_CUDA_PATH_MMA, &err), LLMLAB_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "I4_SYM or I4_ASYM"), "message: %s", err.msg);
    llmlab_cuda_wmat_free(wb);
    llmlab_cuda_mem_free(dx);
    llmlab_cuda_mem_free(dy);
    llmlab_cuda_wmat_free(w);
    llmlab_qmat_free(&q);

    cr_assert_eq(llmlab_cuda_wmat_upload_bf16(g_ctx, &w, W, 2, 250, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "cols 250"), "message: %s", err.msg);
    llmlab_cuda_qctx *c2 = NULL;
    llmlab_cuda_qopts o = {999, 0, 0};
    cr_assert_eq(llmlab_cuda_qctx_create(&c2, &o, &err), LLMLAB_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "device 999"), "message: %s", err.msg);
    done_device();
}

#endif
