/* test_cuda_ops.c - the per-row kernels of kernels/cuda/cuda_ops.h and the dense
 * weight matrices (f32, f16, bf16) of kernels/cuda/cuda_quant.h against their
 * CPU references.
 *
 * Every test skips (not fails) in a build without CUDA or on a machine without
 * a CUDA device.  Inputs are fresh random numbers every run (never zeros); the
 * seed is printed in every failure message (replay with LLMLAB_TEST_SEED).
 *
 *   exact       embedding (f32/f16/bf16 -> f32), add, argmax (ties, NaN,
 *               signed zeros), the copy list, the v bias: bit for bit.
 *   tolerance   RMSNorm (f32 sums in another order), RoPE and SwiGLU (the
 *               device's sincosf / expf are within 2 ulp, not glibc's bits),
 *               dense GEMV and GEMM (f32 accumulation; GEMM with x rounded to
 *               f16 / bf16 exactly as the reference rounds it, f32 without TF32).
 *   sampling    the CPU distribution (llmlab_sampling_probs) is inverted at a u
 *               in the middle of a token's CDF interval, and the device must
 *               draw that token; logits are spread so that no ranking, top-p or
 *               min-p decision lies near a rounding boundary (exact ties are
 *               tested separately: equal logits give equal probabilities on
 *               both sides).
 *   invariance  a row's result is the same bits alone and in a batch of 37
 *               (RMSNorm, RoPE, argmax, sampling, dense GEMV for M = 1..128).
 *   errors      bad shapes and arguments give llmlab_err messages. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmlab/llmlab.h"

#ifndef LLMLAB_HAVE_CUDA

Test(cuda_ops, skipped_without_cuda) { cr_skip_test("built without CUDA (LLMLAB_CUDA=OFF or no toolkit)"); }

#else

#include "core/dtype.h"
#include "core/sampler.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_quant.h"
#include "kernels/cuda/cuda_stream.h"
#include "tests/util/cuda_device.h"
#include "tests/util/test_rng.h"

#define SEED ((unsigned long long)test_rng_seed)

/* ---- random numbers ------------------------------------------------------------- */

static int rand_int(int lo, int hi) { return lo + (int)(test_rng_u64() % (uint64_t)(hi - lo + 1)); }
static double rand_unit(void) { return (double)(test_rng_u64() >> 11) * 0x1p-53; } /* [0, 1) */

/* ---- the device ------------------------------------------------------------------ */

static llmlab_cuda_qctx *g_ctx;
static void *g_stream;

/* Skips the test without a device; otherwise a context and its stream. */
static void need_device(void) {
    g_ctx = cuda_test_device();
    g_stream = llmlab_cuda_qctx_stream(g_ctx);
}

static void done_device(void) {
    llmlab_cuda_qctx_free(g_ctx);
    g_ctx = NULL;
    g_stream = NULL;
}

/* Device buffer of `bytes`, filled with 0xff (NaN for floats, -1 for ints). */
static void *dev_alloc(size_t bytes) {
    llmlab_err err = {0};
    void *d = NULL;
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, &d, bytes, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_mem_set(g_ctx, d, 0xff, bytes, &err), LLMLAB_OK, "%s", err.msg);
    return d;
}

static void *dev_copy(const void *h, size_t bytes) {
    llmlab_err err = {0};
    void *d = NULL;
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, &d, bytes ? bytes : 1, &err), LLMLAB_OK, "%s", err.msg);
    if (bytes) cr_assert_eq(llmlab_cuda_mem_h2d(g_ctx, d, h, bytes, &err), LLMLAB_OK, "%s", err.msg);
    return d;
}

/* Waits for the stream (reporting a failed kernel), then copies back. */
static void to_host(void *h, const void *d, size_t bytes, const char *what) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cuda_qctx_sync(g_ctx, &err), LLMLAB_OK, "%s: %s", what, err.msg);
    cr_assert_eq(llmlab_cuda_mem_d2h(g_ctx, h, d, bytes, &err), LLMLAB_OK, "%s: %s", what, err.msg);
}

/* Asserts that a call returned LLMLAB_OK. */
static void ok(llmlab_status st, const llmlab_err *err, const char *what) {
    cr_assert_eq(st, LLMLAB_OK, "%s: %s (seed %llu)", what, err->msg, SEED);
}

static float *rand_floats(size_t n, float scale) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = scale * test_rng_f();
    return v;
}

/* ---- embedding, add ------------------------------------------------------------------ */

Test(cuda_ops, embed_is_exact_for_f32_f16_bf16) {
    need_device();
    const int vocab = 1000, dim = 136, n = 37;
    int32_t tok[37];
    for (int i = 0; i < n; i++) tok[i] = rand_int(0, vocab - 1);
    tok[0] = 0;
    tok[1] = vocab - 1;
    tok[5] = tok[4]; /* a repeated token */
    int32_t *dtok = dev_copy(tok, sizeof tok);
    float *dx = dev_alloc((size_t)n * dim * sizeof(float));
    float *x = malloc((size_t)n * dim * sizeof(float)), *ref = malloc((size_t)n * dim * sizeof(float));
    static const llmlab_dtype types[] = {LLMLAB_DTYPE_F32, LLMLAB_DTYPE_F16, LLMLAB_DTYPE_BF16};
    for (int ti = 0; ti < 3; ti++) {
        llmlab_dtype t = types[ti];
        size_t es = llmlab_dtype_size(t), nt = (size_t)vocab * dim;
        uint8_t *table = malloc(nt * es);
        for (size_t i = 0; i < nt; i++) {
            float v = 4.0f * test_rng_f();
            if (t == LLMLAB_DTYPE_F32) memcpy(table + 4 * i, &v, 4);
            else {
                uint16_t h = t == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(v) : llmlab_f32_to_bf16(v);
                memcpy(table + 2 * i, &h, 2);
            }
        }
        void *dt = dev_copy(table, nt * es);
        llmlab_err err = {0};
        ok(llmlab_cuda_embed(g_stream, dx, dt, (int)t, dtok, n, dim, &err), &err, "embed");
        to_host(x, dx, (size_t)n * dim * sizeof(float), "embed");
        for (int i = 0; i < n; i++) llmlab_cpu_row_to_f32(ref + (size_t)i * dim, table, t, tok[i], dim);
        for (size_t i = 0; i < (size_t)n * dim; i++)
            cr_assert(!memcmp(&x[i], &ref[i], 4), "embed %s: x[%zu][%zu] = %.9g, CPU %.9g (seed %llu)",
                      llmlab_dtype_name(t), i / (size_t)dim, i % (size_t)dim, (double)x[i], (double)ref[i], SEED);
        llmlab_cuda_mem_free(dt);
        free(table);
    }
    llmlab_cuda_mem_free(dtok);
    llmlab_cuda_mem_free(dx);
    free(x);
    free(ref);
    done_device();
}

Test(cuda_ops, add_is_exact_and_swiglu_matches_cpu) {
    need_device();
    const size_t n = 100003;
    float *x = rand_floats(n, 3.0f), *y = rand_floats(n, 3.0f), *out = malloc(n * sizeof(float));
    float *dx = dev_copy(x, n * sizeof(float)), *dy = dev_copy(y, n * sizeof(float));
    llmlab_err err = {0};
    ok(llmlab_cuda_add(g_stream, dx, dy, n, &err), &err, "add");
    to_host(out, dx, n * sizeof(float), "add");
    for (size_t i = 0; i < n; i++) {
        float want = x[i] + y[i];
        cr_assert(!memcmp(&out[i], &want, 4), "add [%zu]: %.9g, want %.9g (seed %llu)", i, (double)out[i],
                  (double)want, SEED);
    }
    /* SwiGLU: gates in [-10, 10) so that expf sees both tails. */
    for (size_t i = 0; i < n; i++) x[i] = 10.0f * test_rng_f();
    ok(llmlab_cuda_mem_h2d(g_ctx, dx, x, n * sizeof(float), &err), &err, "h2d");
    ok(llmlab_cuda_swiglu(g_stream, dx, dy, n, &err), &err, "swiglu");
    to_host(out, dx, n * sizeof(float), "swiglu");
    llmlab_cpu_swiglu(x, y, (int)n);
    for (size_t i = 0; i < n; i++) {
        /* expf within 2 ulp on the device, ~1 on the CPU; the rest is IEEE. */
        double tol = 1e-6 * fabs(x[i]) + 1e-37;
        cr_assert(fabs((double)out[i] - x[i]) <= tol, "swiglu [%zu]: %.9g, CPU %.9g (seed %llu)", i, (double)out[i],
                  (double)x[i], SEED);
    }
    llmlab_cuda_mem_free(dx);
    llmlab_cuda_mem_free(dy);
    free(x);
    free(y);
    free(out);
    done_device();
}

/* ---- RMSNorm --------------------------------------------------------------------------- */

/* rows n_rows of out (device) against llmlab_cpu_rmsnorm of x[rows[r]]. */
static void check_rmsnorm(const float *out, const float *x, const float *w, const int32_t *rows, int n_rows, int dim,
                          float eps, const char *what) {
    float *ref = malloc((size_t)dim * sizeof(float));
    /* f32 sum of squares in two orders: a relative difference far below
     * sqrt(dim) * 2^-24 per element in practice; eps >= 1e-3 makes a wrong
     * or missing eps visible. */
    double rtol = 2e-6 * sqrt((double)dim);
    for (int r = 0; r < n_rows; r++) {
        llmlab_cpu_rmsnorm(ref, x + (size_t)(rows ? rows[r] : r) * dim, w, dim, eps);
        for (int i = 0; i < dim; i++) {
            double o = out[(size_t)r * dim + i];
            cr_assert(fabs(o - ref[i]) <= 1e-7 + rtol * fabs(ref[i]),
                      "rmsnorm %s dim %d: out[%d][%d] = %.9g, CPU %.9g (seed %llu)", what, dim, r, i, o,
                      (double)ref[i], SEED);
        }
    }
    free(ref);
}

Test(cuda_ops, rmsnorm_matches_cpu_and_is_batch_invariant) {
    need_device();
    static const int dims[] = {64, 1000, 4096};
    const int n = 37;
    for (int di = 0; di < 3; di++) {
        const int dim = dims[di];
        const size_t nb = (size_t)n * dim * sizeof(float);
        const float eps = (float)(1e-3 + 0.1 * rand_unit());
        float *x = rand_floats((size_t)n * dim, 2.0f), *w = rand_floats((size_t)dim, 1.5f);
        int32_t rows[37];
        for (int r = 0; r < n; r++) rows[r] = rand_int(0, n - 1);
        float *dx = dev_copy(x, nb), *dw = dev_copy(w, (size_t)dim * sizeof(float)), *dout = dev_alloc(nb);
        int32_t *drows = dev_copy(rows, sizeof rows);
        float *plain = malloc(nb), *gathered = malloc(nb), *one = malloc((size_t)dim * sizeof(float));
        llmlab_err err = {0};

        ok(llmlab_cuda_rmsnorm(g_stream, dout, dx, dw, NULL, n, dim, eps, &err), &err, "rmsnorm");
        to_host(plain, dout, nb, "rmsnorm");
        check_rmsnorm(plain, x, w, NULL, n, dim, eps, "rows = NULL");
        ok(llmlab_cuda_rmsnorm(g_stream, dout, dx, dw, drows, n, dim, eps, &err), &err, "rmsnorm gather");
        to_host(gathered, dout, nb, "rmsnorm gather");
        check_rmsnorm(gathered, x, w, rows, n, dim, eps, "gathered");
        for (int r = 0; r < n; r++)
            cr_assert(!memcmp(gathered + (size_t)r * dim, plain + (size_t)rows[r] * dim, (size_t)dim * sizeof(float)),
                      "rmsnorm dim %d: gathered row %d differs from row %d of the plain batch (seed %llu)", dim, r,
                      rows[r], SEED);
        /* Batch invariance: a row alone (n_rows 1) gives the bits it has in the batch of 37. */
        for (int k = 0; k < 4; k++) {
            int r = k == 0 ? 0 : k == 1 ? n - 1 : rand_int(1, n - 2);
            ok(llmlab_cuda_rmsnorm(g_stream, dout, dx + (size_t)r * dim, dw, NULL, 1, dim, eps, &err), &err,
               "rmsnorm row");
            to_host(one, dout, (size_t)dim * sizeof(float), "rmsnorm row");
            cr_assert(!memcmp(one, plain + (size_t)r * dim, (size_t)dim * sizeof(float)),
                      "rmsnorm dim %d: row %d alone differs from the batch of %d (seed %llu)", dim, r, n, SEED);
        }
        /* In place (out == x) gives the same bits. */
        ok(llmlab_cuda_rmsnorm(g_stream, dx, dx, dw, NULL, n, dim, eps, &err), &err, "rmsnorm in place");
        to_host(gathered, dx, nb, "rmsnorm in place");
        cr_assert(!memcmp(gathered, plain, nb), "rmsnorm dim %d: in place differs (seed %llu)", dim, SEED);
        llmlab_cuda_mem_free(dx);
        llmlab_cuda_mem_free(dw);
        llmlab_cuda_mem_free(dout);
        llmlab_cuda_mem_free(drows);
        free(x);
        free(w);
        free(plain);
        free(gathered);
        free(one);
    }
    done_device();
}

/* ---- bias + RoPE ------------------------------------------------------------------------ */

typedef struct {
    int n, n_heads, n_kv, head_dim, bias, rotate;
    float theta;
} rope_case;

static void run_bias_rope(const rope_case *c) {
    const int hd = c->head_dim, n = c->n, qw = c->n_heads * hd, kw = c->n_kv * hd;
    float *q = rand_floats((size_t)n * qw, 2.0f), *k = rand_floats((size_t)n * kw, 2.0f),
          *v = rand_floats((size_t)n * kw, 2.0f);
    float *bq = rand_floats((size_t)qw, 1.0f), *bk = rand_floats((size_t)kw, 1.0f), *bv = rand_floats((size_t)kw, 1.0f);
    float *inv = malloc((size_t)(hd / 2) * sizeof(float));
    for (int j = 0; j < hd / 2; j++) inv[j] = powf(c->theta, -2.0f * (float)j / (float)hd);
    float *q0 = malloc((size_t)n * qw * 4), *k0 = malloc((size_t)n * kw * 4), *v0 = malloc((size_t)n * kw * 4);
    memcpy(q0, q, (size_t)n * qw * 4);
    memcpy(k0, k, (size_t)n * kw * 4);
    memcpy(v0, v, (size_t)n * kw * 4);
    int32_t *pos = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) pos[i] = i == 0 ? 0 : rand_int(1, 200000);
    float *dq = dev_copy(q, (size_t)n * qw * 4), *dk = dev_copy(k, (size_t)n * kw * 4),
          *dv = dev_copy(v, (size_t)n * kw * 4);
    float *dbq = dev_copy(bq, (size_t)qw * 4), *dbk = dev_copy(bk, (size_t)kw * 4), *dbv = dev_copy(bv, (size_t)kw * 4);
    float *dinv = dev_copy(inv, (size_t)(hd / 2) * 4);
    int32_t *dpos = dev_copy(pos, (size_t)n * 4);
    llmlab_err err = {0};
    ok(llmlab_cuda_bias_rope(g_stream, dq, dk, dv, c->bias ? dbq : NULL, c->bias ? dbk : NULL, c->bias ? dbv : NULL,
                             dpos, dinv, n, c->n_heads, c->n_kv, hd, c->rotate, &err),
       &err, "bias_rope");
    float *gq = malloc((size_t)n * qw * 4), *gk = malloc((size_t)n * kw * 4), *gv = malloc((size_t)n * kw * 4);
    to_host(gq, dq, (size_t)n * qw * 4, "bias_rope q");
    to_host(gk, dk, (size_t)n * kw * 4, "bias_rope k");
    to_host(gv, dv, (size_t)n * kw * 4, "bias_rope v");
    /* CPU: the biases (one f32 add each, as core/forward.c), then llmlab_cpu_rope. */
    for (int i = 0; i < n; i++) {
        if (c->bias) {
            for (int d = 0; d < qw; d++) q[(size_t)i * qw + d] += bq[d];
            for (int d = 0; d < kw; d++) {
                k[(size_t)i * kw + d] += bk[d];
                v[(size_t)i * kw + d] += bv[d];
            }
        }
    }
    float *rq = malloc((size_t)n * qw * 4), *rk = malloc((size_t)n * kw * 4);
    memcpy(rq, q, (size_t)n * qw * 4);
    memcpy(rk, k, (size_t)n * kw * 4);
    if (c->rotate)
        for (int i = 0; i < n; i++) {
            llmlab_cpu_rope(rq + (size_t)i * qw, c->n_heads, hd, pos[i], inv);
            llmlab_cpu_rope(rk + (size_t)i * kw, c->n_kv, hd, pos[i], inv);
        }
    cr_assert(!memcmp(gv, v, (size_t)n * kw * 4), "bias_rope: v differs from v + bv (seed %llu)", SEED);
    for (int which = 0; which < 2; which++) {
        const float *g = which ? gk : gq, *ref = which ? rk : rq, *in = which ? k : q;
        const int heads = which ? c->n_kv : c->n_heads;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < hd; j++) {
                    size_t at = ((size_t)i * heads + h) * hd;
                    int jj = j < hd / 2 ? j : j - hd / 2;
                    /* sincosf within 2 ulp: |diff| <= ~4e-7 (|x0| + |x1|). */
                    double tol = c->rotate ? 1e-6 * (fabs(in[at + jj]) + fabs(in[at + jj + hd / 2])) + 1e-7 : 0.0;
                    cr_assert(fabs((double)g[at + j] - ref[at + j]) <= tol,
                              "bias_rope %s: token %d head %d [%d] = %.9g, CPU %.9g (pos %d, head_dim %d, seed %llu)",
                              which ? "k" : "q", i, h, j, (double)g[at + j], (double)ref[at + j], pos[i], hd, SEED);
                }
    }
    /* Batch invariance: the last token alone gives the bits it has in the batch. */
    if (n > 1) {
        const int i = n - 1;
        float *d1q = dev_copy(q0 + (size_t)i * qw, (size_t)qw * 4);
        float *d1k = dev_copy(k0 + (size_t)i * kw, (size_t)kw * 4);
        float *d1v = dev_copy(v0 + (size_t)i * kw, (size_t)kw * 4);
        ok(llmlab_cuda_bias_rope(g_stream, d1q, d1k, d1v, c->bias ? dbq : NULL, c->bias ? dbk : NULL,
                                 c->bias ? dbv : NULL, dpos + i, dinv, 1, c->n_heads, c->n_kv, hd, c->rotate, &err),
           &err, "bias_rope one token");
        float *one = malloc((size_t)(qw > kw ? qw : kw) * 4);
        to_host(one, d1q, (size_t)qw * 4, "bias_rope one token");
        cr_assert(!memcmp(one, gq + (size_t)i * qw, (size_t)qw * 4),
                  "bias_rope: q of token %d alone differs (seed %llu)", i, SEED);
        to_host(one, d1k, (size_t)kw * 4, "bias_rope one token");
        cr_assert(!memcmp(one, gk + (size_t)i * kw, (size_t)kw * 4),
                  "bias_rope: k of token %d alone differs (seed %llu)", i, SEED);
        free(one);
        llmlab_cuda_mem_free(d1q);
        llmlab_cuda_mem_free(d1k);
        llmlab_cuda_mem_free(d1v);
    }
    llmlab_cuda_mem_free(dq);
    llmlab_cuda_mem_free(dk);
    llmlab_cuda_mem_free(dv);
    llmlab_cuda_mem_free(dbq);
    llmlab_cuda_mem_free(dbk);
    llmlab_cuda_mem_free(dbv);
    llmlab_cuda_mem_free(dinv);
    llmlab_cuda_mem_free(dpos);
    free(q);
    free(k);
    free(v);
    free(bq);
    free(bk);
    free(bv);
    free(inv);
    free(pos);
    free(gq);
    free(gk);
    free(gv);
    free(rq);
    free(rk);
    free(q0);
    free(k0);
    free(v0);
}

Test(cuda_ops, bias_rope_matches_cpu) {
    need_device();
    static const rope_case cases[] = {
        {37, 8, 2, 128, 1, 1, 10000.0f}, {5, 4, 4, 64, 0, 1, 1000000.0f}, {7, 2, 1, 32, 1, 0, 10000.0f},
        {3, 3, 1, 80, 1, 1, 500000.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_bias_rope(&cases[i]);
    done_device();
}

/* ---- argmax ------------------------------------------------------------------------------- */

/* Row r of logits[rows][vocab]: values on a coarse grid (many ties) and, by
 * row, NaNs (first, somewhere, everywhere), signed zeros, infinities. */
static void argmax_row(float *x, int vocab, int r) {
    for (int i = 0; i < vocab; i++) x[i] = (float)rand_int(-40, 40) / 8.0f;
    switch (r % 8) {
    case 1: x[0] = NAN; break;
    case 2:
        for (int i = 0; i < vocab; i++) x[i] = NAN;
        break;
    case 3:
        for (int i = 0; i < vocab; i++) x[i] = (i & 1) ? -0.0f : 0.0f;
        break;
    case 4:
        for (int i = 0; i < vocab; i++) x[i] = rand_int(0, 3) ? NAN : -INFINITY;
        break;
    case 5: x[vocab - 1] = INFINITY; break;
    case 6:
        x[rand_int(0, vocab - 1)] = NAN;
        x[rand_int(0, vocab - 1)] = 6.0f;
        break;
    default: break;
    }
}

Test(cuda_ops, argmax_matches_cpu_on_ties_and_nan) {
    need_device();
    static const int vocabs[] = {1, 7, 1000, 128256};
    const int rows = 37;
    for (int vi = 0; vi < 4; vi++) {
        const int vocab = vocabs[vi];
        float *l = malloc((size_t)rows * vocab * sizeof(float));
        for (int r = 0; r < rows; r++) argmax_row(l + (size_t)r * vocab, vocab, r);
        float *dl = dev_copy(l, (size_t)rows * vocab * sizeof(float));
        int32_t *dout = dev_alloc(rows * sizeof(int32_t)), out[37], one;
        llmlab_err err = {0};
        ok(llmlab_cuda_argmax(g_stream, dout, dl, rows, vocab, &err), &err, "argmax");
        to_host(out, dout, sizeof out, "argmax");
        for (int r = 0; r < rows; r++) {
            int want = llmlab_argmax(l + (size_t)r * vocab, vocab);
            cr_assert_eq(out[r], want, "argmax vocab %d row %d: %d, CPU %d (seed %llu)", vocab, r, out[r], want, SEED);
        }
        for (int r = 0; r < rows; r += 9) {
            ok(llmlab_cuda_argmax(g_stream, dout, dl + (size_t)r * vocab, 1, vocab, &err), &err, "argmax one row");
            to_host(&one, dout, sizeof one, "argmax one row");
            cr_assert_eq(one, out[r], "argmax vocab %d: row %d alone %d, in the batch %d (seed %llu)", vocab, r, one,
                         out[r], SEED);
        }
        llmlab_cuda_mem_free(dl);
        llmlab_cuda_mem_free(dout);
        free(l);
    }
    done_device();
}

/* ---- sampling ------------------------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The CPU distribution of a row, its filters chosen so that every decision is
 * clear: logits spread on a grid (neighbours differ by >= ~1e-4 relative in
 * probability, far above expf's ulps), the top-p cut between two ranks'
 * cumulative sums, the min-p floor between two ranks' probabilities. */
typedef struct {
    llmlab_sampling s;
    int nan_row; /* a NaN logit: the CPU's unfiltered walk ends at vocab - 1 */
} srow;

/* Logits of one row: a random permutation of a grid (distinct values), or
 * (ties) a handful of levels, many tokens on each. */
static void sample_logits(float *l, int vocab, int ties) {
    if (ties) {
        for (int i = 0; i < vocab; i++) l[i] = (float)rand_int(-3, 3);
        return;
    }
    const float step = 14.0f / (float)vocab;
    for (int i = 0; i < vocab; i++) l[i] = (float)i * step - 7.0f;
    for (int i = vocab - 1; i > 0; i--) { /* Fisher-Yates */
        int j = rand_int(0, i);
        float t = l[i];
        l[i] = l[j];
        l[j] = t;
    }
}

/* Sorted (descending) unfiltered probabilities of a row at temperature T. */
static float *sorted_probs(const float *l, int vocab, float T, int *work) {
    float *p = malloc((size_t)vocab * sizeof(float));
    llmlab_sampling plain = {T, 0, 1.0f, 0.0f};
    llmlab_sampling_probs(p, l, vocab, &plain, work);
    qsort(p, (size_t)vocab, sizeof(float), cmp_desc);
    return p;
}

/* Filters for row r (mode by row number); top_p and min_p placed between
 * ranks of the row's own distribution. */
static srow sample_params(const float *l, int vocab, int r, int *work) {
    srow o = {{1.0f, 0, 1.0f, 0.0f}, 0};
    static const float temps[] = {0.6f, 1.0f, 1.7f};
    o.s.temperature = temps[r % 3];
    const int lim = vocab < 3000 ? vocab : 3000; /* cut ranks among the top 3000 */
    switch (r % 9) {
    case 0: o.s.temperature = 0.0f; break;
    case 1: break; /* temperature only */
    case 2: o.s.top_k = rand_int(1, lim); break;
    case 3: o.s.top_k = r % 2 ? 1 : vocab + 5; break;
    case 4:
    case 5:
    case 6: {
        float *p = sorted_probs(l, vocab, o.s.temperature, work);
        double cum = 0.0, before = 0.0;
        int R = rand_int(1, lim);
        while (R > 1 && p[R - 1] < 2e-5f) R--; /* the cut's margin (p[R-1] / 2) far above rounding */
        for (int i = 0; i < R; i++) {
            before = cum;
            cum += p[i];
        }
        if (r % 9 != 5) o.s.top_p = (float)((before + cum) / 2.0); /* the cut falls on rank R - 1 */
        if (r % 9 != 4 && R < vocab) {
            int R2 = rand_int(1, lim < vocab - 1 ? lim : vocab - 1); /* keep ranks 0 .. R2 - 1 */
            o.s.min_p = (float)(((double)p[R2 - 1] + p[R2]) / 2.0 / p[0]);
            if (r % 9 == 6) o.s.top_k = rand_int(1, lim);
        }
        if (o.s.top_p >= 1.0f) o.s.top_p = 1.0f;
        free(p);
        break;
    }
    case 7: o.nan_row = vocab > 1; break;
    default: o.s.top_k = rand_int(1, 60); break;
    }
    return o;
}

/* A u in the middle of the CDF interval of a token the CPU distribution q
 * gives enough mass (>= 2e-5, else the most likely one); *want = that token. */
static float pick_u(const float *q, int vocab, int *want) {
    int n_ok = 0, best = 0;
    for (int i = 0; i < vocab; i++) {
        if (q[i] >= 2e-5f) n_ok++;
        if (q[i] > q[best]) best = i;
    }
    int j = best;
    if (n_ok > 0) {
        int k = rand_int(0, n_ok - 1);
        for (int i = 0; i < vocab; i++)
            if (q[i] >= 2e-5f && k-- == 0) {
                j = i;
                break;
            }
    }
    double lo = 0.0;
    for (int i = 0; i < j; i++)
        if (q[i] > 0.0f) lo += q[i];
    *want = j;
    return (float)(lo + q[j] / 2.0);
}

static void run_sampling(int vocab, int ties) {
    const int rows = 37;
    float *l = malloc((size_t)rows * vocab * sizeof(float)), *q = malloc((size_t)vocab * sizeof(float));
    int *work = malloc((size_t)vocab * sizeof(int));
    llmlab_cuda_sampling s[37];
    float u[37];
    int want[37];
    for (int r = 0; r < rows; r++) {
        float *lr = l + (size_t)r * vocab;
        sample_logits(lr, vocab, ties);
        srow p = sample_params(lr, vocab, r, work);
        if (ties && r % 9 >= 4 && r % 9 <= 6) p.s.min_p = 0.0f; /* ties: top_k, top_p between levels, greedy */
        s[r] = (llmlab_cuda_sampling){p.s.temperature, p.s.top_k, p.s.top_p, p.s.min_p};
        cr_assert_null(llmlab_sampling_check(&p.s), "test premise: bad sampling parameters for row %d", r);
        llmlab_sampling_probs(q, lr, vocab, &p.s, work);
        u[r] = pick_u(q, vocab, &want[r]);
        if (p.nan_row) {
            lr[rand_int(0, vocab - 1)] = NAN;
            want[r] = vocab - 1;
        }
        if (p.s.temperature == 0.0f) want[r] = llmlab_argmax(lr, vocab);
        else if (!p.nan_row) { /* the premise: the CPU walk at u gives that token */
            double cum = 0.0;
            int got = -1;
            for (int i = 0; i < vocab && got < 0; i++)
                if (q[i] > 0.0f && (double)u[r] < (cum += q[i])) got = i;
            cr_assert_eq(got, want[r], "test premise: CPU draw %d at u %.9g, not %d (seed %llu)", got, (double)u[r],
                         want[r], SEED);
        }
    }
    size_t wb = llmlab_cuda_sample_work_bytes(rows, vocab);
    cr_assert(wb >= (size_t)rows * (size_t)vocab * (sizeof(float) + sizeof(uint64_t)), "work bytes %zu", wb);
    float *dl = dev_copy(l, (size_t)rows * vocab * sizeof(float)), *du = dev_copy(u, sizeof u);
    llmlab_cuda_sampling *ds = dev_copy(s, sizeof s);
    int32_t *dout = dev_alloc(sizeof(int32_t) * rows), out[37], again[37], one;
    void *dwork = dev_alloc(wb);
    llmlab_err err = {0};
    ok(llmlab_cuda_sample(g_stream, dout, dl, ds, du, rows, vocab, dwork, &err), &err, "sample");
    to_host(out, dout, sizeof out, "sample");
    for (int r = 0; r < rows; r++)
        cr_assert_eq(out[r], want[r],
                     "sample vocab %d%s row %d (T %g, top_k %d, top_p %.9g, min_p %.9g, u %.9g): token %d, CPU %d "
                     "(seed %llu)",
                     vocab, ties ? " (ties)" : "", r, (double)s[r].temperature, s[r].top_k, (double)s[r].top_p,
                     (double)s[r].min_p, (double)u[r], out[r], want[r], SEED);
    /* The same inputs give the same tokens; a row alone gives its token in the batch. */
    ok(llmlab_cuda_sample(g_stream, dout, dl, ds, du, rows, vocab, dwork, &err), &err, "sample again");
    to_host(again, dout, sizeof again, "sample again");
    cr_assert(!memcmp(out, again, sizeof out), "sample vocab %d: a second run differs (seed %llu)", vocab, SEED);
    for (int r = 1; r < rows; r += 5) {
        ok(llmlab_cuda_sample(g_stream, dout, dl + (size_t)r * vocab, ds + r, du + r, 1, vocab, dwork, &err), &err,
           "sample one row");
        to_host(&one, dout, sizeof one, "sample one row");
        cr_assert_eq(one, out[r], "sample vocab %d: row %d alone draws %d, in the batch %d (seed %llu)", vocab, r, one,
                     out[r], SEED);
    }
    llmlab_cuda_mem_free(dl);
    llmlab_cuda_mem_free(du);
    llmlab_cuda_mem_free(ds);
    llmlab_cuda_mem_free(dout);
    llmlab_cuda_mem_free(dwork);
    free(l);
    free(q);
    free(work);
}

Test(cuda_ops, sample_matches_cpu_distribution) {
    need_device();
    run_sampling(128256, 0);
    run_sampling(1000, 0);
    run_sampling(50, 0);
    done_device();
}

Test(cuda_ops, sample_ranks_ties_by_index) {
    need_device();
    run_sampling(1000, 1);
    run_sampling(9000, 1); /* candidate sets beyond the shared-memory sort */
    done_device();
}

/* ---- the copy list ------------------------------------------------------------------------ */

Test(cuda_ops, copy_list_matches_memcpy_sequence) {
    need_device();
    const size_t size = (size_t)1 << 20;
    uint8_t *base = malloc(size), *ref = malloc(size), *got = malloc(size);
    for (size_t i = 0; i < size; i++) base[i] = (uint8_t)test_rng_u64();
    memcpy(ref, base, size);
    enum { NOPS = 300 };
    llmlab_cuda_copy_op ops[NOPS];
    int n = 0;
    while (n < NOPS) {
        int aligned = n % 2 == 0;
        int64_t bytes = aligned ? 16 * (int64_t)rand_int(0, 1500) : (int64_t)rand_int(0, 20000);
        int64_t src = aligned ? 16 * (int64_t)rand_int(0, (int)(size / 16) - 1500) : rand_int(0, (int)size - 20001);
        int64_t dst = aligned ? 16 * (int64_t)rand_int(0, (int)(size / 16) - 1500) : rand_int(0, (int)size - 20001);
        if (n > 0 && n % 3 == 1) src = ops[n - 1].dst; /* reads what the previous copy wrote */
        if (src + bytes > (int64_t)size || dst + bytes > (int64_t)size) continue;
        if (src < dst + bytes && dst < src + bytes) continue; /* a copy's own ranges never overlap */
        ops[n++] = (llmlab_cuda_copy_op){dst, src, bytes};
        memcpy(ref + dst, ref + src, (size_t)bytes);
    }
    uint8_t *dbase = dev_copy(base, size);
    llmlab_cuda_copy_op *dops = dev_copy(ops, sizeof ops);
    llmlab_err err = {0};
    ok(llmlab_cuda_copy_list(g_stream, dbase, dops, n, &err), &err, "copy_list");
    to_host(got, dbase, size, "copy_list");
    size_t first = 0;
    while (first < size && got[first] == ref[first]) first++;
    cr_assert_eq(first, size, "copy_list: byte %zu is %d, the memcpy sequence gives %d (seed %llu)", first,
                 first < size ? got[first] : 0, first < size ? ref[first] : 0, SEED);
    cr_assert(memcmp(got, base, size), "copy_list: nothing was copied (test premise)");
    llmlab_cuda_mem_free(dbase);
    llmlab_cuda_mem_free(dops);
    free(base);
    free(ref);
    free(got);
    done_device();
}

/* ---- dense weight matrices -------------------------------------------------------------------- */

typedef struct {
    llmlab_dtype t;
    int64_t cols;
    int fmt;
    const char *name;
} dense_case;

static const dense_case DENSE[] = {
    {LLMLAB_DTYPE_F32, 1004, LLMLAB_CUDA_DENSE_F32, "f32"}, /* cols % 8 == 4: an odd number of packets */
    {LLMLAB_DTYPE_F16, 1000, LLMLAB_CUDA_DENSE_F16, "f16"}, /* cols % 16 == 8 */
    {LLMLAB_DTYPE_BF16, 1000, LLMLAB_CUDA_DENSE_BF16, "bf16"},
};

/* W[rows][cols] in t's storage (random, never zero), and its f32 values. */
static void *dense_weights(const dense_case *c, int64_t rows, float *wf) {
    size_t n = (size_t)(rows * c->cols), es = llmlab_dtype_size(c->t);
    uint8_t *W = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        float v = test_rng_f();
        if (c->t == LLMLAB_DTYPE_F32) {
            memcpy(W + 4 * i, &v, 4);
            wf[i] = v;
        } else {
            uint16_t h = c->t == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(v) : llmlab_f32_to_bf16(v);
            memcpy(W + 2 * i, &h, 2);
            wf[i] = c->t == LLMLAB_DTYPE_F16 ? llmlab_f16_to_f32(h) : llmlab_bf16_to_f32(h);
        }
    }
    return W;
}

/* x as the GEMM path feeds it to cuBLAS: rounded to f16 / bf16, f32 as is. */
static float gemm_x(const dense_case *c, float v) {
    if (c->t == LLMLAB_DTYPE_F16) return llmlab_f16_to_f32(llmlab_f32_to_f16(v));
    if (c->t == LLMLAB_DTYPE_BF16) return llmlab_bf16_to_f32(llmlab_f32_to_bf16(v));
    return v;
}

/* The exact dot product of w and x (x rounded as round_x says) in double, and
 * a tolerance for an f32 accumulation of it in any order: 2^-24 times ten
 * times the root sum of squares of the running sums (the error of a
 * left-to-right f32 sum is a sum of roundings of those, of random sign), plus
 * a few ulps of the result.  TF32 or a wrong rounding of x is 10-50 times
 * larger at these sizes. */
static double dot_and_tol(const float *w, const float *x, int64_t cols, const dense_case *round_x, double *tol) {
    double s = 0.0, ss = 0.0;
    for (int64_t k = 0; k < cols; k++) {
        s += (double)w[k] * (round_x ? gemm_x(round_x, x[k]) : x[k]);
        ss += s * s;
    }
    *tol = 0x1p-24 * (10.0 * sqrt(ss) + 4.0 * fabs(s)) + 1e-30;
    return s;
}

static void dev_matmul(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *dx, int M, int64_t rows,
                       llmlab_cuda_path path, const char *what) {
    llmlab_err err = {0};
    size_t ny = (size_t)M * (size_t)rows;
    float *dy = dev_alloc(ny * sizeof(float));
    ok(llmlab_cuda_matmul(c, w, dy, dx, M, path, &err), &err, what);
    cr_assert_eq(llmlab_cuda_qctx_sync(c, &err), LLMLAB_OK, "%s: %s", what, err.msg);
    to_host(y, dy, ny * sizeof(float), what);
    for (size_t i = 0; i < ny; i++)
        cr_assert(isfinite(y[i]), "%s M=%d: y[%zu][%zu] not written (%g) (seed %llu)", what, M, i / (size_t)rows,
                  i % (size_t)rows, (double)y[i], SEED);
    llmlab_cuda_mem_free(dy);
}

Test(cuda_ops, dense_matmul_matches_cpu) {
    need_device();
    const int64_t rows = 45;
    static const int Ms[] = {1, 3, 17, 128};
    for (int ci = 0; ci < 3; ci++) {
        const dense_case *c = &DENSE[ci];
        const int64_t cols = c->cols;
        float *wf = malloc((size_t)(rows * cols) * sizeof(float));
        void *W = dense_weights(c, rows, wf);
        llmlab_err err = {0};
        llmlab_cuda_wmat *w = NULL;
        ok(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, (int)c->t, rows, cols, &err), &err, c->name);
        cr_assert_eq(llmlab_cuda_wmat_format(w), c->fmt, "%s: format", c->name);
        cr_assert_eq(llmlab_cuda_wmat_bytes(w), (size_t)(rows * cols) * llmlab_dtype_size(c->t), "%s: bytes", c->name);
        for (int mi = 0; mi < 4; mi++) {
            const int M = Ms[mi];
            float *x = rand_floats((size_t)M * cols, 1.0f), *dx = dev_copy(x, (size_t)M * cols * sizeof(float));
            float *yv = malloc((size_t)M * rows * sizeof(float)), *yg = malloc((size_t)M * rows * sizeof(float)),
                  *yc = malloc((size_t)M * rows * sizeof(float));
            dev_matmul(g_ctx, w, yv, dx, M, rows, LLMLAB_CUDA_PATH_GEMV, "dense gemv");
            dev_matmul(g_ctx, w, yg, dx, M, rows, LLMLAB_CUDA_PATH_GEMM, "dense gemm");
            llmlab_cpu_matmul(yc, x, W, c->t, M, (int)rows, (int)cols, NULL);
            for (int m = 0; m < M; m++)
                for (int64_t n = 0; n < rows; n++) {
                    size_t i = (size_t)m * rows + (size_t)n;
                    const float *wn = wf + n * cols, *xm = x + (size_t)m * cols;
                    double tol, tolg;
                    double exact = dot_and_tol(wn, xm, cols, NULL, &tol);
                    double exact_g = dot_and_tol(wn, xm, cols, c, &tolg);
                    cr_assert(fabs((double)yc[i] - exact) <= tol,
                              "%s CPU M=%d y[%d][%lld] = %.9g, exact %.9g (test premise, seed %llu)", c->name, M, m,
                              (long long)n, (double)yc[i], exact, SEED);
                    cr_assert(fabs((double)yv[i] - yc[i]) <= 2.0 * tol,
                              "%s gemv M=%d y[%d][%lld] = %.9g, CPU %.9g, exact %.9g (seed %llu)", c->name, M, m,
                              (long long)n, (double)yv[i], (double)yc[i], exact, SEED);
                    cr_assert(fabs((double)yg[i] - exact_g) <= tolg,
                              "%s gemm M=%d y[%d][%lld] = %.9g, exact with x as %s %.9g (seed %llu)", c->name, M, m,
                              (long long)n, (double)yg[i], c->name, exact_g, SEED);
                }
            llmlab_cuda_mem_free(dx);
            free(x);
            free(yv);
            free(yg);
            free(yc);
        }
        llmlab_cuda_wmat_free(w);
        free(W);
        free(wf);
    }
    done_device();
}

/* Row m of a 128-row GEMV equals, bit for bit, the same rows in batches of 1,
 * 3 and 17; a deterministic context's AUTO takes the GEMV kernel at M = 128. */
Test(cuda_ops, dense_gemv_is_batch_invariant) {
    need_device();
    llmlab_err err = {0};
    llmlab_cuda_qctx *det = NULL;
    llmlab_cuda_qopts o = {0, 1, 0};
    ok(llmlab_cuda_qctx_create(&det, &o, &err), &err, "deterministic context");
    const int64_t rows = 21;
    const int Mbig = 128;
    static const int sub[] = {1, 3, 17};
    for (int ci = 0; ci < 3; ci++) {
        const dense_case *c = &DENSE[ci];
        const int64_t cols = c->cols;
        float *wf = malloc((size_t)(rows * cols) * sizeof(float));
        void *W = dense_weights(c, rows, wf);
        llmlab_cuda_wmat *w = NULL;
        ok(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, (int)c->t, rows, cols, &err), &err, c->name);
        float *x = rand_floats((size_t)Mbig * cols, 1.0f), *dx = dev_copy(x, (size_t)Mbig * cols * sizeof(float));
        float *yb = malloc((size_t)Mbig * rows * sizeof(float)), *ya = malloc((size_t)Mbig * rows * sizeof(float)),
              *ys = malloc((size_t)17 * rows * sizeof(float));
        dev_matmul(g_ctx, w, yb, dx, Mbig, rows, LLMLAB_CUDA_PATH_GEMV, c->name);
        dev_matmul(det, w, ya, dx, Mbig, rows, LLMLAB_CUDA_PATH_AUTO, c->name);
        cr_assert(!memcmp(ya, yb, (size_t)Mbig * rows * sizeof(float)),
                  "%s: deterministic AUTO at M=%d differs from the GEMV kernel (seed %llu)", c->name, Mbig, SEED);
        static const int probe[] = {0, 5, 64, 127};
        for (int pi = 0; pi < 4; pi++)
            for (int si = 0; si < 3; si++) {
                int M = sub[si], m = probe[pi] + M <= Mbig ? probe[pi] : Mbig - M;
                dev_matmul(g_ctx, w, ys, dx + (size_t)m * cols, M, rows, LLMLAB_CUDA_PATH_GEMV, c->name);
                cr_assert(!memcmp(ys, yb + (size_t)m * rows, (size_t)M * rows * sizeof(float)),
                          "%s gemv: rows %d..%d as a %d-row batch differ from the %d-row batch (seed %llu)", c->name, m,
                          m + M - 1, M, Mbig, SEED);
            }
        llmlab_cuda_wmat_free(w);
        llmlab_cuda_mem_free(dx);
        free(W);
        free(wf);
        free(x);
        free(yb);
        free(ya);
        free(ys);
    }
    llmlab_cuda_qctx_free(det);
    done_device();
}

/* ---- errors ------------------------------------------------------------------------------------ */

/* st must be EINVAL with `needle` in the message. */
static void bad(llmlab_status st, const llmlab_err *err, const char *needle) {
    cr_assert_eq(st, LLMLAB_EINVAL, "expected EINVAL (%s), got %d: %s", needle, (int)st, err->msg);
    cr_assert(strstr(err->msg, needle), "message \"%s\" does not name \"%s\"", err->msg, needle);
}

Test(cuda_ops, bad_input_gives_messages) {
    need_device();
    llmlab_err err = {0};
    float W[16 * 256];
    for (int i = 0; i < 16 * 256; i++) W[i] = test_rng_f();
    llmlab_cuda_wmat *w = NULL;
    bad(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, LLMLAB_DTYPE_F32, 2, 250, &err), &err, "cols 250");
    cr_assert_null(w);
    bad(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, LLMLAB_DTYPE_F16, 2, 12, &err), &err, "cols 12");
    bad(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, LLMLAB_DTYPE_BF16, 0, 256, &err), &err, "rows 0");
    bad(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, LLMLAB_DTYPE_Q8_0, 2, 256, &err), &err, "dtype 3");
    bad(llmlab_cuda_wmat_upload_dense(g_ctx, &w, NULL, LLMLAB_DTYPE_F32, 2, 256, &err), &err, "no data");
    cr_assert_null(w);
    ok(llmlab_cuda_wmat_upload_dense(g_ctx, &w, W, LLMLAB_DTYPE_F32, 2, 252, &err), &err, "f32 cols 252");
    float *dx = dev_alloc(256 * sizeof(float)), *dy = dev_alloc(16 * sizeof(float));
    cr_assert_eq(llmlab_cuda_matmul(g_ctx, w, dy, dx, 1, LLMLAB_CUDA_PATH_MMA, &err), LLMLAB_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "I4_SYM or I4_ASYM"), "message: %s", err.msg);
    llmlab_cuda_wmat_free(w);

    void *s = g_stream;
    int32_t *di = dev_alloc(64);
    bad(llmlab_cuda_embed(s, dy, dx, LLMLAB_DTYPE_Q4_0, di, 1, 4, &err), &err, "dtype 4");
    bad(llmlab_cuda_embed(s, dy, dx, LLMLAB_DTYPE_F32, di, 1, 0, &err), &err, "dim 0");
    bad(llmlab_cuda_rmsnorm(s, dy, dx, dx, NULL, 1, 0, 1e-5f, &err), &err, "dim 0");
    bad(llmlab_cuda_rmsnorm(s, dy, dx, dx, NULL, -1, 4, 1e-5f, &err), &err, "n_rows -1");
    bad(llmlab_cuda_rmsnorm(s, dy, dx, dx, NULL, 1, 4, -1.0f, &err), &err, "eps");
    bad(llmlab_cuda_bias_rope(s, dx, dx, dx, NULL, NULL, NULL, di, dx, 1, 1, 1, 7, 1, &err), &err, "head_dim 7");
    bad(llmlab_cuda_bias_rope(s, dx, dx, dx, NULL, NULL, NULL, NULL, dx, 1, 1, 1, 8, 1, &err), &err,
        "rotate needs pos");
    bad(llmlab_cuda_argmax(s, di, dx, 1, 0, &err), &err, "vocab 0");
    bad(llmlab_cuda_argmax(s, di, dx, -2, 4, &err), &err, "rows -2");
    bad(llmlab_cuda_sample(s, di, dx, (const llmlab_cuda_sampling *)dx, dx, 1, 0, dy, &err), &err, "vocab 0");
    bad(llmlab_cuda_sample(s, di, dx, (const llmlab_cuda_sampling *)dx, dx, 1, 4, (uint8_t *)dy + 4, &err), &err,
        "16-byte aligned");
    bad(llmlab_cuda_copy_list(s, (uint8_t *)dx, (const llmlab_cuda_copy_op *)dy, -1, &err), &err, "n -1");
    cr_assert_eq(llmlab_cuda_sample_work_bytes(0, 10), 0);
    cr_assert_eq(llmlab_cuda_sample_work_bytes(3, 0), 0);
    /* Empty batches are fine and launch nothing. */
    ok(llmlab_cuda_rmsnorm(s, dy, dx, dx, NULL, 0, 4, 1e-5f, &err), &err, "rmsnorm of 0 rows");
    ok(llmlab_cuda_copy_list(s, (uint8_t *)dx, NULL, 0, &err), &err, "empty copy list");
    ok(llmlab_cuda_qctx_sync(g_ctx, &err), &err, "sync");
    llmlab_cuda_mem_free(dx);
    llmlab_cuda_mem_free(dy);
    llmlab_cuda_mem_free(di);
    done_device();
}

#endif
