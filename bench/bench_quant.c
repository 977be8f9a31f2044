/* bench_quant.c - `llmlab bench-quant`: speed of every packed weight format's CPU
 * matmul (kernels/cpu/quant.h) against the f32 and f16 dense matmul, on the same
 * matrix shapes, batch sizes and threads, in the same run (docs/quantization.md).
 *
 * Method (shared, noisy machines): for each shape and M, each repetition
 * measures the machine's read bandwidth and then times every format once,
 * back to back (interleaved), each over enough calls to last ~20 ms; figures
 * are medians over repetitions.  Nothing passes or fails on time.
 *   weight GB/s   = bytes of the packed weights (scales included) / time per
 *                   call: each call reads the weights once (decode is bound by it)
 *   of bandwidth  = weight GB/s / the measured read bandwidth
 *   vs f16        = f16 dense time / this format's time
 *   GFLOP/s       = 2 M rows cols / time (prefill is bound by this) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/results.h"
#include "core/rng.h"
#include "core/threadpool.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"

enum { BQ_MAX_SHAPES = 8, BQ_MAX_M = 8, BQ_MAX_REPS = 100 };

typedef struct {
    const char *name;
    int dense;            /* 1: llmlab_cpu_matmul on dt; 0: a packed llmlab_qmat */
    llmlab_dtype dt;
    llmlab_qformat f;
    int group, per_row;
} bq_format;

static const bq_format BQ_FORMATS[] = {
    {"f32", 1, LLMLAB_DTYPE_F32, 0, 0, 0},
    {"f16", 1, LLMLAB_DTYPE_F16, 0, 0, 0},
    {"q8_0", 0, 0, LLMLAB_QF_Q8_0, 0, 0},
    {"q4_0", 0, 0, LLMLAB_QF_Q4_0, 0, 0},
    {"q4_k", 0, 0, LLMLAB_QF_Q4_K, 0, 0},
    {"int8_channel", 0, 0, LLMLAB_QF_I8_ROW, 0, 0},
    {"int4_g128_sym", 0, 0, LLMLAB_QF_I4_SYM, 128, 0},
    {"int4_g128_asym", 0, 0, LLMLAB_QF_I4_ASYM, 128, 0},
    {"fp8_channel", 0, 0, LLMLAB_QF_FP8, 0, 1},
    {"w8a8", 0, 0, LLMLAB_QF_W8A8, 0, 0},
};
#define BQ_N_FORMATS ((int)(sizeof BQ_FORMATS / sizeof BQ_FORMATS[0]))

typedef struct {
    int n_shapes, rows[BQ_MAX_SHAPES], cols[BQ_MAX_SHAPES];
    int n_m, m[BQ_MAX_M];
    int threads, reps;
    const char *out;
} bq_args;

static void bq_usage(FILE *f) {
    fprintf(f, "usage: llmlab bench-quant [--shape ROWSxCOLS]... [--m 1,8,128] [--threads N] [--reps R]\n"
               "                          [--out FILE.h5]\n"
               "  --shape RxC  weight matrix [R][C] (repeatable; default 2048x5632 and 5632x2048,\n"
               "               TinyLlama-1.1B's MLP down and gate/up projections)\n"
               "  --m LIST     activation rows per call, comma separated (default 1,8,128)\n"
               "  --threads N  threads (default: all cores)\n"
               "  --reps R     interleaved repetitions, medians reported (default 5)\n"
               "  --out FILE   also add the figures to an HDF5 results file (a run named bench_quant_<time>)\n");
}

static int parse_shape(const char *v, int *r, int *c) {
    char *end;
    long a = strtol(v, &end, 10);
    if (*end != 'x' || a < 1 || a > 1 << 20) return -1;
    long b = strtol(end + 1, &end, 10);
    if (*end || b < 1 || b > 1 << 20) return -1;
    *r = (int)a;
    *c = (int)b;
    return 0;
}

static int parse_m_list(const char *v, bq_args *a) {
    a->n_m = 0;
    for (const char *p = v; *p;) {
        char *end;
        long m = strtol(p, &end, 10);
        if (end == p || m < 1 || m > 65536 || a->n_m == BQ_MAX_M || (*end && *end != ',')) return -1;
        a->m[a->n_m++] = (int)m;
        p = *end ? end + 1 : end;
    }
    return a->n_m ? 0 : -1;
}

static int parse_bq_args(int argc, char **argv, bq_args *a) {
    const char *C = "bench-quant";
    *a = (bq_args){.n_m = 3, .m = {1, 8, 128}, .reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { bq_usage(stdout); return 1; }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--threads")) { if (llmlab_arg_int(C, o, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "--reps")) { if (llmlab_arg_int(C, o, v, 1, BQ_MAX_REPS, &a->reps)) return 2; }
        else if (!strcmp(o, "--m")) {
            if (parse_m_list(v, a)) {
                fprintf(stderr, "llmlab bench-quant: bad value for --m: '%s' (e.g. 1,8,128; at most %d)\n", v, BQ_MAX_M);
                return 2;
            }
        } else if (!strcmp(o, "--shape")) {
            if (a->n_shapes == BQ_MAX_SHAPES || parse_shape(v, &a->rows[a->n_shapes], &a->cols[a->n_shapes])) {
                fprintf(stderr, "llmlab bench-quant: bad value for --shape: '%s' (ROWSxCOLS, at most %d)\n", v,
                        BQ_MAX_SHAPES);
                return 2;
            }
            a->n_shapes++;
        } else { fprintf(stderr, "llmlab bench-quant: unknown option '%s'\n", o); bq_usage(stderr); return 2; }
    }
    if (!a->n_shapes) {
        a->n_shapes = 2;
        a->rows[0] = 2048, a->cols[0] = 5632;
        a->rows[1] = 5632, a->cols[1] = 2048;
    }
    return 0;
}

/* ---- one shape: the weights in every format ------------------------------------------------ */

typedef struct {
    int rows, cols;
    float *w32;        /* [rows][cols] */
    uint16_t *w16;     /* [rows][cols] f16 */
    llmlab_qmat q[BQ_N_FORMATS];
    int ok[BQ_N_FORMATS]; /* 0: the format cannot take these cols (skipped) */
} bq_shape;

static void bq_shape_free(bq_shape *s) {
    free(s->w32);
    free(s->w16);
    for (int f = 0; f < BQ_N_FORMATS; f++) llmlab_qmat_free(&s->q[f]);
}

static llmlab_status bq_shape_make(bq_shape *s, int rows, int cols, llmlab_err *err) {
    memset(s, 0, sizeof *s);
    s->rows = rows;
    s->cols = cols;
    size_t n = (size_t)rows * (size_t)cols;
    s->w32 = malloc(n * sizeof(float));
    s->w16 = malloc(n * sizeof(uint16_t));
    if (!s->w32 || !s->w16) return llmlab_err_set(err, LLMLAB_ENOMEM, "bench-quant: out of memory for %dx%d", rows, cols);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, 42, (uint64_t)rows * 131 + (uint64_t)cols);
    for (size_t i = 0; i < n; i++) { /* like a trained layer: ~N(0, 0.02) via the sum of 4 uniforms */
        double u = 0;
        for (int k = 0; k < 4; k++) u += (double)(llmlab_rng_next(&rng) >> 11) / 9007199254740992.0 - 0.5;
        s->w32[i] = (float)(u * 0.035);
        s->w16[i] = llmlab_f32_to_f16(s->w32[i]);
    }
    for (int f = 0; f < BQ_N_FORMATS; f++) {
        const bq_format *F = &BQ_FORMATS[f];
        if (F->dense) {
            s->ok[f] = 1;
            continue;
        }
        llmlab_err e2 = {0};
        s->ok[f] = llmlab_qmat_pack(&s->q[f], F->f, s->w32, rows, cols, F->group, F->per_row, NULL, &e2) == LLMLAB_OK;
        if (!s->ok[f]) fprintf(stderr, "bench-quant: %s skipped for %dx%d: %s\n", F->name, rows, cols, e2.msg);
    }
    return LLMLAB_OK;
}

static double bq_weight_bytes(const bq_shape *s, int f) {
    const bq_format *F = &BQ_FORMATS[f];
    if (F->dense) return (double)s->rows * s->cols * (double)llmlab_dtype_size(F->dt);
    return (double)llmlab_qmat_bytes(&s->q[f]);
}

static void bq_call(const bq_shape *s, int f, float *y, const float *x, int M, llmlab_threadpool *tp) {
    const bq_format *F = &BQ_FORMATS[f];
    if (F->dense)
        llmlab_cpu_matmul(y, x, F->dt == LLMLAB_DTYPE_F32 ? (const void *)s->w32 : (const void *)s->w16, F->dt, M,
                          s->rows, s->cols, tp);
    else
        llmlab_qmat_matmul(&s->q[f], y, x, M, tp);
}

/* Seconds per call, over `iters` calls. */
static double bq_time(const bq_shape *s, int f, float *y, const float *x, int M, llmlab_threadpool *tp, int iters) {
    double t0 = llmlab_now();
    for (int i = 0; i < iters; i++) bq_call(s, f, y, x, M, tp);
    return (llmlab_now() - t0) / iters;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double tmp[BQ_MAX_REPS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* ---- the results record ------------------------------------------------------------------------ */

typedef struct {
    llmlab_run *run;
    llmlab_table *summary, *samples;
} bq_record;

static llmlab_status bq_sample(bq_record *r, const bq_shape *s, int M, const char *fmt, int rep, double t,
                               double bw, llmlab_err *err) {
    if (!r->run) return LLMLAB_OK;
    llmlab_status st = llmlab_table_append_int(r->samples, "rows", s->rows, err);
    if (!st) st = llmlab_table_append_int(r->samples, "cols", s->cols, err);
    if (!st) st = llmlab_table_append_int(r->samples, "m", M, err);
    if (!st) st = llmlab_table_append_str(r->samples, "format", fmt, err);
    if (!st) st = llmlab_table_append_int(r->samples, "rep", rep, err);
    if (!st) st = llmlab_table_append_double(r->samples, "time_s", t, err);
    if (!st) st = llmlab_table_append_double(r->samples, "read_bandwidth_Bps", bw, err);
    return st;
}

static llmlab_status bq_summary(bq_record *r, const bq_shape *s, int M, int f, double t, double bw, double t16,
                                int iters, llmlab_err *err) {
    double bytes = bq_weight_bytes(s, f), bits = 8.0 * bytes / ((double)s->rows * s->cols);
    double gbs = bytes / t / 1e9, flops = 2.0 * M * (double)s->rows * s->cols / t / 1e9;
    printf("  %-15s %6.3f %8.2f %10.3f %11.1f %7.1f%% %8.2fx %9.1f\n", BQ_FORMATS[f].name, bits, bytes / 1e6, t * 1e3,
           gbs, 100 * gbs * 1e9 / bw, t16 / t, flops);
    if (!r->run) return LLMLAB_OK;
    llmlab_table *T = r->summary;
    llmlab_status st = llmlab_table_append_int(T, "rows", s->rows, err);
    if (!st) st = llmlab_table_append_int(T, "cols", s->cols, err);
    if (!st) st = llmlab_table_append_int(T, "m", M, err);
    if (!st) st = llmlab_table_append_str(T, "format", BQ_FORMATS[f].name, err);
    if (!st) st = llmlab_table_append_double(T, "bits_per_weight", bits, err);
    if (!st) st = llmlab_table_append_int(T, "weight_bytes", (int64_t)bytes, err);
    if (!st) st = llmlab_table_append_int(T, "iters", iters, err);
    if (!st) st = llmlab_table_append_double(T, "time_s", t, err);
    if (!st) st = llmlab_table_append_double(T, "weight_GBps", gbs, err);
    if (!st) st = llmlab_table_append_double(T, "read_bandwidth_Bps", bw, err);
    if (!st) st = llmlab_table_append_double(T, "bandwidth_fraction", gbs * 1e9 / bw, err);
    if (!st) st = llmlab_table_append_double(T, "speedup_vs_f16", t16 / t, err);
    if (!st) st = llmlab_table_append_double(T, "gflops", flops, err);
    return st;
}

static llmlab_status bq_record_open(bq_record *r, const bq_args *a, int threads, llmlab_err *err) {
    memset(r, 0, sizeof *r);
    if (!a->out) return LLMLAB_OK;
    char now[32], name[64];
    llmlab_results_utc_now(now);
    snprintf(name, sizeof name, "bench_quant_%s", now);
    r->run = llmlab_run_create(name, err);
    if (!r->run) return err->code ? err->code : LLMLAB_ENOMEM;
    llmlab_status st = llmlab_run_attr_str(r->run, "kind", "bench-quant", err);
    if (!st) st = llmlab_run_attr_str(r->run, "start_time", now, err);
    if (!st) st = llmlab_run_attr_str(r->run, "llmlab_commit", LLMLAB_GIT_COMMIT, err);
    if (!st) st = llmlab_run_attr_str(r->run, "cpu_kernels", llmlab_cpu_simd_name(), err);
    if (!st) st = llmlab_run_attr_int(r->run, "threads", threads, err);
    if (!st) st = llmlab_run_attr_int(r->run, "reps", a->reps, err);
    if (!st) r->summary = llmlab_run_table(r->run, "matmul", err);
    if (!st && r->summary) r->samples = llmlab_run_table(r->run, "samples", err);
    if (!st && (!r->summary || !r->samples)) st = err->code ? err->code : LLMLAB_ENOMEM;
    if (!st) st = llmlab_table_column(r->summary, "time_s", LLMLAB_COL_DOUBLE, "s", err);
    if (!st) st = llmlab_table_column(r->summary, "weight_bytes", LLMLAB_COL_INT, "bytes", err);
    if (!st) st = llmlab_table_column(r->summary, "weight_GBps", LLMLAB_COL_DOUBLE, "GB/s", err);
    if (!st) st = llmlab_table_column(r->summary, "read_bandwidth_Bps", LLMLAB_COL_DOUBLE, "B/s", err);
    if (!st) st = llmlab_table_column(r->summary, "gflops", LLMLAB_COL_DOUBLE, "GFLOP/s", err);
    if (!st) st = llmlab_table_column(r->samples, "time_s", LLMLAB_COL_DOUBLE, "s", err);
    return st;
}

/* ---- one shape and M: interleaved repetitions ------------------------------------------------------- */

static llmlab_status bq_measure(const bq_shape *s, int M, const bq_args *a, llmlab_threadpool *tp, bq_record *rec,
                                llmlab_err *err) {
    float *x = malloc(sizeof(float) * (size_t)M * s->cols), *y = malloc(sizeof(float) * (size_t)M * s->rows);
    if (!x || !y) {
        free(x);
        free(y);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "bench-quant: out of memory for M = %d", M);
    }
    llmlab_rng rng;
    llmlab_rng_seed(&rng, 7, (uint64_t)M);
    for (size_t i = 0; i < (size_t)M * s->cols; i++) x[i] = (float)((double)(llmlab_rng_next(&rng) >> 11) / 9007199254740992.0 - 0.5);
    /* Calls per timing: enough for ~20 ms, from one warm-up call each. */
    int iters[BQ_N_FORMATS];
    for (int f = 0; f < BQ_N_FORMATS; f++) {
        if (!s->ok[f]) continue;
        double t = bq_time(s, f, y, x, M, tp, 1);
        iters[f] = t > 0.02 ? 1 : (int)(0.02 / (t > 1e-6 ? t : 1e-6)) + 1;
    }
    double times[BQ_N_FORMATS][BQ_MAX_REPS];
    double bws[BQ_MAX_REPS];
    llmlab_status st = LLMLAB_OK;
    for (int r = 0; r < a->reps && !st; r++) {
        bws[r] = llmlab_cpu_read_bandwidth(tp, (size_t)256 << 20, 1);
        for (int f = 0; f < BQ_N_FORMATS && !st; f++) {
            if (!s->ok[f]) continue;
            times[f][r] = bq_time(s, f, y, x, M, tp, iters[f]);
            st = bq_sample(rec, s, M, BQ_FORMATS[f].name, r, times[f][r], bws[r], err);
        }
    }
    double bw = median(bws, a->reps), t16 = median(times[1], a->reps);
    printf("\n%dx%d weights, M = %d (read bandwidth %.1f GB/s, median of %d)\n", s->rows, s->cols, M, bw / 1e9, a->reps);
    printf("  %-15s %6s %8s %10s %11s %8s %9s %9s\n", "format", "bits", "MB", "ms/call", "weight GB/s", "of bw",
           "vs f16", "GFLOP/s");
    for (int f = 0; f < BQ_N_FORMATS && !st; f++)
        if (s->ok[f]) st = bq_summary(rec, s, M, f, median(times[f], a->reps), bw, t16, iters[f], err);
    free(x);
    free(y);
    return st;
}

int llmlab_cmd_bench_quant(int argc, char **argv) {
    bq_args a;
    int rc = parse_bq_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_threadpool *tp = llmlab_threadpool_create(a.threads);
    if (!tp) {
        fprintf(stderr, "llmlab bench-quant: cannot start %d threads\n", a.threads);
        return 1;
    }
    int threads = llmlab_threadpool_size(tp);
    printf("bench-quant: %d threads, kernels %s, %d reps\n", threads, llmlab_cpu_simd_name(), a.reps);
    llmlab_err err = {0};
    bq_record rec;
    llmlab_status st = bq_record_open(&rec, &a, threads, &err);
    for (int i = 0; i < a.n_shapes && !st; i++) {
        bq_shape s;
        st = bq_shape_make(&s, a.rows[i], a.cols[i], &err);
        for (int j = 0; j < a.n_m && !st; j++) st = bq_measure(&s, a.m[j], &a, tp, &rec, &err);
        bq_shape_free(&s);
    }
    if (!st && rec.run) {
        char end[32];
        llmlab_results_utc_now(end);
        st = llmlab_run_attr_str(rec.run, "end_time", end, &err);
        if (!st) st = llmlab_results_write(a.out, rec.run, &err);
        if (!st) printf("\nwrote %s (run %s)\n", a.out, llmlab_run_name(rec.run));
    }
    llmlab_run_free(rec.run);
    llmlab_threadpool_free(tp);
    if (st) {
        fprintf(stderr, "llmlab bench-quant: %s\n", err.msg);
        return 1;
    }
    return 0;
}
