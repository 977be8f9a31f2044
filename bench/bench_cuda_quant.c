/* bench_cuda_quant.c - `llmlab bench-cuda-quant`: speed of the CUDA kernels of
 * every packed weight format against a bf16 baseline and the device's copy
 * bandwidth, all measured in the same run.
 *
 * Method (METHOD.md of the GPU notes; DEVELOPERS.md: ratios within one run):
 *   - ceiling: a device-to-device copy of --copy-mib MiB, bytes read + written
 *     over CUDA-event time, median of the repetitions;
 *   - for each shape (rows x cols = out x in features) every format is uploaded
 *     several times, enough copies to total 3x the L2 cache, and consecutive
 *     launches rotate over the copies, so the weights come from HBM as in a
 *     real decode step, not from L2;
 *   - one timing = CUDA events around one replay of a CUDA graph of `iters`
 *     calls (iters chosen on the first repetition so one timing lasts about
 *     2 ms; --no-graph: plain back-to-back launches, which adds the launch gaps),
 *     divided by iters; repetitions are interleaved over M, formats and paths,
 *     and the figures are medians over repetitions;
 *   - effective bytes = packed weights + scales (+ in_scale) + activations
 *     (f32, M x cols) read once; effective GB/s = bytes / time; fraction = that
 *     over the copy bandwidth; speedup = median bf16 time / median time, against
 *     the faster of our bf16 GEMV and cuBLAS's bf16 GEMM at the same M.
 * Kernels: gemv (every format), mma (the int4 tensor-core kernel), gemm
 * (dequantize + cuBLAS for packed formats, cuBLAS itself for bf16).
 * Nothing here passes or fails on time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/args.h"
#include "core/cli/commands.h"

#ifndef LLMLAB_HAVE_CUDA

int llmlab_cmd_bench_cuda_quant(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llmlab bench-cuda-quant: this build has no CUDA backend "
                    "(configure with -DLLMLAB_CUDA=ON where the CUDA toolkit is installed)\n");
    return 1;
}

#else

#include "core/results.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"

#define MAX_LIST 16
#define MAX_REPS 101

typedef struct {
    char name[32];
    int fmt; /* llmlab_qformat or LLMLAB_CUDA_DENSE_BF16 */
    int group, per_row;
} bfmt;

typedef struct {
    int device, reps, no_gemm, no_graph, copy_mib;
    int n_ms, ms[MAX_LIST];
    int n_shapes;
    int64_t rows[MAX_LIST], cols[MAX_LIST];
    int n_fmts;
    bfmt fmts[MAX_LIST];
    const char *out;
} cq_args;

static void cq_usage(FILE *f) {
    fprintf(f, "usage: llmlab bench-cuda-quant [--device N] [--reps R] [--m LIST] [--shapes LIST]\n"
               "                               [--formats LIST] [--no-gemm] [--no-graph] [--copy-mib N] [--out FILE.h5]\n"
               "  --m LIST        activation rows, default 1,8,16,32\n"
               "  --shapes LIST   ROWSxCOLS (out x in), default 4096x4096,14336x4096,4096x14336\n"
               "                  (Llama-3-8B: q/o, gate/up, down projections)\n"
               "  --formats LIST  default bf16,i8_row,fp8,i4_sym:128,i4_asym:128,i4_sym:32,q8_0,q4_0\n"
               "                  (also fp8_tensor, i4_sym:G / i4_asym:G with G = 32, 64, 128, 256)\n"
               "  --reps R        interleaved repetitions, median reported (default 5)\n"
               "  --no-gemm       skip the dequantize + cuBLAS path of the packed formats\n"
               "  --no-graph      time plain back-to-back launches instead of a CUDA graph replay\n"
               "  --copy-mib N    size of the device-to-device copy that measures bandwidth (default 1024)\n"
               "  --out FILE      also write every figure to an HDF5 results file (run bench_cuda_quant_*)\n");
}

static int parse_int_list(const char *s, int *out, int cap, int lo, int hi) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi || n == cap || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n;
}

static int parse_shapes(const char *s, cq_args *a) {
    const char *p = s;
    a->n_shapes = 0;
    while (*p) {
        char *end;
        long long r = strtoll(p, &end, 10), c;
        if (end == p || *end != 'x' || r < 1 || a->n_shapes == MAX_LIST) return -1;
        p = end + 1;
        c = strtoll(p, &end, 10);
        if (end == p || c < 32 || c % 256 || (*end && *end != ',')) return -1;
        a->rows[a->n_shapes] = r;
        a->cols[a->n_shapes++] = c;
        p = *end ? end + 1 : end;
    }
    return a->n_shapes ? 0 : -1;
}

static int parse_format(const char *tok, size_t len, bfmt *f) {
    char t[32];
    if (len == 0 || len >= sizeof t) return -1;
    memcpy(t, tok, len);
    t[len] = 0;
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", t);
    int g = 0;
    if (!strcmp(t, "bf16")) f->fmt = LLMLAB_CUDA_DENSE_BF16;
    else if (!strcmp(t, "i8_row")) f->fmt = LLMLAB_QF_I8_ROW;
    else if (!strcmp(t, "fp8")) f->fmt = LLMLAB_QF_FP8, f->per_row = 1;
    else if (!strcmp(t, "fp8_tensor")) f->fmt = LLMLAB_QF_FP8;
    else if (!strcmp(t, "q8_0")) f->fmt = LLMLAB_QF_Q8_0;
    else if (!strcmp(t, "q4_0")) f->fmt = LLMLAB_QF_Q4_0;
    else if (sscanf(t, "i4_sym:%d", &g) == 1) f->fmt = LLMLAB_QF_I4_SYM, f->group = g;
    else if (sscanf(t, "i4_asym:%d", &g) == 1) f->fmt = LLMLAB_QF_I4_ASYM, f->group = g;
    else return -1;
    if ((f->fmt == LLMLAB_QF_I4_SYM || f->fmt == LLMLAB_QF_I4_ASYM) && g != 32 && g != 64 && g != 128 && g != 256)
        return -1;
    return 0;
}

static int parse_formats(const char *s, cq_args *a) {
    a->n_fmts = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (a->n_fmts == MAX_LIST || parse_format(s, len, &a->fmts[a->n_fmts])) return -1;
        a->n_fmts++;
        s += len + (e ? 1 : 0);
    }
    return a->n_fmts ? 0 : -1;
}

static int parse_cq_args(int argc, char **argv, cq_args *a) {
    const char *C = "bench-cuda-quant";
    memset(a, 0, sizeof *a);
    a->reps = 5;
    a->copy_mib = 1024;
    parse_int_list("1,8,16,32", a->ms, MAX_LIST, 1, 4096);
    a->n_ms = 4;
    parse_shapes("4096x4096,14336x4096,4096x14336", a);
    parse_formats("bf16,i8_row,fp8,i4_sym:128,i4_asym:128,i4_sym:32,q8_0,q4_0", a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { cq_usage(stdout); return 1; }
        if (!strcmp(o, "--no-gemm")) { a->no_gemm = 1; continue; }
        if (!strcmp(o, "--no-graph")) { a->no_graph = 1; continue; }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--device")) { if (llmlab_arg_int(C, o, v, 0, 64, &a->device)) return 2; }
        else if (!strcmp(o, "--reps")) { if (llmlab_arg_int(C, o, v, 1, MAX_REPS, &a->reps)) return 2; }
        else if (!strcmp(o, "--copy-mib")) { if (llmlab_arg_int(C, o, v, 1, 65536, &a->copy_mib)) return 2; }
        else if (!strcmp(o, "--m")) {
            if ((a->n_ms = parse_int_list(v, a->ms, MAX_LIST, 1, 4096)) <= 0) {
                fprintf(stderr, "llmlab %s: bad value for --m: '%s' (e.g. 1,8,16,32)\n", C, v);
                return 2;
            }
        } else if (!strcmp(o, "--shapes")) {
            if (parse_shapes(v, a)) {
                fprintf(stderr, "llmlab %s: bad value for --shapes: '%s' (e.g. 4096x4096; cols a multiple of 256)\n",
                        C, v);
                return 2;
            }
        } else if (!strcmp(o, "--formats")) {
            if (parse_formats(v, a)) {
                fprintf(stderr, "llmlab %s: bad value for --formats: '%s' (see --help)\n", C, v);
                return 2;
            }
        } else {
            fprintf(stderr, "llmlab %s: unknown option '%s'\n", C, o);
            cq_usage(stderr);
            return 2;
        }
    }
    return 0;
}

/* ---- measuring ----------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

typedef struct {
    llmlab_cuda_qctx *c;
    llmlab_cuda_timer *t;
    float *x, *y; /* device: [max M][max cols], [max M][max rows] */
} bench_dev;

/* Copy bandwidth: bytes read + written per second over one timed copy of n. */
static llmlab_status copy_bw(bench_dev *d, void *dst, const void *src, size_t n, double *bw, llmlab_err *err) {
    double s;
    llmlab_status st = llmlab_cuda_timer_start(d->t, d->c, err);
    if (!st) st = llmlab_cuda_mem_d2d(d->c, dst, src, n, err);
    if (!st) st = llmlab_cuda_timer_stop(d->t, d->c, &s, err);
    if (!st) *bw = 2.0 * (double)n / s;
    return st;
}

/* Seconds per call of `iters` calls rotating over the n copies of a matrix. */
static llmlab_status time_calls(bench_dev *d, llmlab_cuda_wmat *const *w, int n, int M, llmlab_cuda_path path, int iters,
                                int graph, double *sec, llmlab_err *err) {
    return llmlab_cuda_time_matmuls(d->c, w, n, d->y, d->x, M, path, iters, graph, sec, err);
}

/* ---- matrices ------------------------------------------------------------------ */

typedef struct {
    llmlab_cuda_wmat *w[64]; /* copies of one matrix, rotated to defeat L2 */
    int n;
    size_t bytes;            /* effective bytes of one pass over the weights */
} wset;

static void wset_free(wset *s) {
    for (int i = 0; i < s->n; i++) llmlab_cuda_wmat_free(s->w[i]);
    s->n = 0;
}

static llmlab_status upload_set(bench_dev *d, const bfmt *f, const float *W, int64_t rows, int64_t cols, wset *s,
                                llmlab_err *err) {
    llmlab_qmat q = {0};
    llmlab_status st = LLMLAB_OK;
    memset(s, 0, sizeof *s);
    if (f->fmt != LLMLAB_CUDA_DENSE_BF16)
        st = llmlab_qmat_pack(&q, (llmlab_qformat)f->fmt, W, rows, cols, f->group, f->per_row, NULL, err);
    size_t l2 = llmlab_cuda_qctx_l2_bytes(d->c);
    for (int i = 0; i < 64 && !st; i++) {
        st = f->fmt == LLMLAB_CUDA_DENSE_BF16 ? llmlab_cuda_wmat_upload_bf16(d->c, &s->w[i], W, rows, cols, err)
                                              : llmlab_cuda_wmat_upload(d->c, &s->w[i], &q, err);
        if (st) break;
        s->n = i + 1;
        s->bytes = llmlab_cuda_wmat_bytes(s->w[0]);
        if ((size_t)s->n * s->bytes >= 3 * (l2 ? l2 : ((size_t)64 << 20))) break;
    }
    llmlab_qmat_free(&q);
    if (st) wset_free(s);
    return st;
}

/* ---- one run ------------------------------------------------------------------- */

typedef struct {
    int64_t rows, cols;
    int M, f, path;  /* path: 0 GEMV, 1 GEMM, 2 MMA (int4) */
    int iters;
    double t[MAX_REPS];
    double med, gbps, frac, speedup, speedup_cublas;
} entry;

static const char *PATH_NAME[3] = {"gemv", "gemm", "mma"};
static const llmlab_cuda_path PATH_OF[3] = {LLMLAB_CUDA_PATH_GEMV, LLMLAB_CUDA_PATH_GEMM, LLMLAB_CUDA_PATH_MMA};

/* The name in the tables: cuBLAS for the GEMM path of bf16. */
static const char *kernel_name(const cq_args *a, const entry *e) {
    if (e->path != 1) return PATH_NAME[e->path];
    return a->fmts[e->f].fmt == LLMLAB_CUDA_DENSE_BF16 ? "cublas" : "dequant+cublas";
}

static uint64_t g_rng = 0x2545f4914f6cdd1dull;

static float rand_weight(void) { /* xorshift64*; uniform in [-0.05, 0.05) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    uint64_t z = g_rng * 0x2545f4914f6cdd1dull;
    return ((float)(z >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
}

/* Whether format f is timed on path p (0 GEMV, 1 GEMM, 2 MMA). */
static int has_path(const cq_args *a, const bfmt *f, int p) {
    if (p == 0) return 1;
    if (p == 1) return f->fmt == LLMLAB_CUDA_DENSE_BF16 || !a->no_gemm;
    return f->fmt == LLMLAB_QF_I4_SYM || f->fmt == LLMLAB_QF_I4_ASYM;
}

/* Measures every (M, format, path) of one shape into e[*n_e ...], advancing *n_e. */
static llmlab_status bench_shape(const cq_args *a, bench_dev *d, int si, entry *e, int *n_e, llmlab_err *err) {
    const int64_t rows = a->rows[si], cols = a->cols[si];
    float *W = malloc((size_t)(rows * cols) * sizeof *W);
    wset *sets = calloc((size_t)a->n_fmts, sizeof *sets);
    if (!W || !sets) {
        free(W);
        free(sets);
        snprintf(err->msg, sizeof err->msg, "bench-cuda-quant: out of host memory for %lldx%lld", (long long)rows,
                 (long long)cols);
        return err->code = LLMLAB_ENOMEM;
    }
    for (int64_t i = 0; i < rows * cols; i++) W[i] = rand_weight();
    llmlab_status st = LLMLAB_OK;
    for (int fi = 0; fi < a->n_fmts && !st; fi++) {
        st = upload_set(d, &a->fmts[fi], W, rows, cols, &sets[fi], err);
        if (!st)
            fprintf(stderr, "  %lldx%lld %-12s %7.2f MB x %d copies\n", (long long)rows, (long long)cols,
                    a->fmts[fi].name, sets[fi].bytes / 1e6, sets[fi].n);
    }
    free(W);
    int base = *n_e;
    for (int mi = 0; mi < a->n_ms && !st; mi++)
        for (int fi = 0; fi < a->n_fmts; fi++)
            for (int p = 0; p < 3; p++) {
                if (!has_path(a, &a->fmts[fi], p)) continue;
                entry *x = &e[(*n_e)++];
                memset(x, 0, sizeof *x);
                x->rows = rows, x->cols = cols, x->M = a->ms[mi], x->f = fi, x->path = p;
            }
    for (int r = 0; r < a->reps && !st; r++)
        for (int i = base; i < *n_e && !st; i++) {
            entry *x = &e[i];
            const wset *s = &sets[x->f];
            llmlab_cuda_path path = PATH_OF[x->path];
            if (r == 0) { /* warm up (module load, cuBLAS heuristics), then size iters */
                double t1 = 0;
                st = time_calls(d, s->w, s->n, x->M, path, 2, 0, &t1, err);
                if (!st) st = time_calls(d, s->w, s->n, x->M, path, 1, 0, &t1, err);
                int it = t1 > 0 ? (int)(2e-3 / t1) : 100;
                x->iters = it < 3 ? 3 : it > 500 ? 500 : it;
            }
            if (!st) st = time_calls(d, s->w, s->n, x->M, path, x->iters, !a->no_graph, &x->t[r], err);
        }
    for (int i = base; i < *n_e && !st; i++) {
        entry *x = &e[i];
        x->med = median(x->t, a->reps);
        x->gbps = ((double)sets[x->f].bytes + 4.0 * (double)x->M * (double)cols) / x->med / 1e9;
    }
    for (int fi = 0; fi < a->n_fmts; fi++) wset_free(&sets[fi]);
    free(sets);
    return st;
}

/* Speedups against the bf16 entries of the same shape and M. */
static void ratios(const cq_args *a, entry *e, int n, double copy_gbps) {
    for (int i = 0; i < n; i++) {
        double own = 0, cublas = 0;
        for (int j = 0; j < n; j++)
            if (e[j].rows == e[i].rows && e[j].cols == e[i].cols && e[j].M == e[i].M &&
                a->fmts[e[j].f].fmt == LLMLAB_CUDA_DENSE_BF16) {
                if (e[j].path == 0) own = e[j].med;
                else if (e[j].path == 1) cublas = e[j].med;
            }
        double best = own > 0 && (cublas <= 0 || own < cublas) ? own : cublas;
        e[i].frac = e[i].gbps / copy_gbps;
        e[i].speedup = best > 0 ? best / e[i].med : 0;
        e[i].speedup_cublas = cublas > 0 ? cublas / e[i].med : 0;
    }
}

static void print_table(const cq_args *a, const entry *e, int n, double copy_gbps) {
    printf("\n%-11s %4s %-12s %-15s %6s %10s %8s %7s %8s %8s\n", "shape", "M", "format", "kernel", "iters",
           "median us", "eff GB/s", "of copy", "x bf16", "x cuBLAS");
    for (int i = 0; i < n; i++) {
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)e[i].rows, (long long)e[i].cols);
        printf("%-11s %4d %-12s %-15s %6d %10.2f %8.0f %6.1f%% %7.2fx %7.2fx\n", shape, e[i].M, a->fmts[e[i].f].name,
               kernel_name(a, &e[i]), e[i].iters, e[i].med * 1e6, e[i].gbps, 100.0 * e[i].gbps / copy_gbps,
               e[i].speedup, e[i].speedup_cublas);
    }
    /* The target: int4 group-128 decode at M = 1 >= 3x bf16. */
    for (int i = 0; i < n; i++)
        if (e[i].M == 1 && e[i].path != 1 && a->fmts[e[i].f].fmt == LLMLAB_QF_I4_SYM && a->fmts[e[i].f].group == 128)
            printf("target i4_sym:128 M=1 %lldx%lld %s: %.2fx the best bf16 (>= 3x: %s)\n", (long long)e[i].rows,
                   (long long)e[i].cols, PATH_NAME[e[i].path], e[i].speedup, e[i].speedup >= 3.0 ? "met" : "NOT met");
}

static llmlab_status write_h5(const cq_args *a, const entry *e, int n, const double *copy, const char *dev, int sms,
                              llmlab_err *err) {
    char name[64], now[32];
    llmlab_results_utc_now(now);
    snprintf(name, sizeof name, "bench_cuda_quant_%.4s%.2s%.2sT%.2s%.2s%.2s", now, now + 5, now + 8, now + 11, now + 14,
             now + 17);
    llmlab_run *run = llmlab_run_create(name, err);
    if (!run) return err->code;
    llmlab_status st = llmlab_run_attr_str(run, "benchmark", "bench-cuda-quant", err);
    if (!st) st = llmlab_run_attr_str(run, "device", dev, err);
    if (!st) st = llmlab_run_attr_int(run, "sm_count", sms, err);
    if (!st) st = llmlab_run_attr_str(run, "llmlab_commit", LLMLAB_GIT_COMMIT, err);
    if (!st) st = llmlab_run_attr_int(run, "reps", a->reps, err);
    if (!st) st = llmlab_run_attr_double(run, "copy_GBps", median(copy, a->reps) / 1e9, err);
    if (!st) st = llmlab_run_attr_str(run, "activations", "f32", err);
    if (!st) st = llmlab_run_attr_str(run, "timing", a->no_graph ? "launches" : "graph replay", err);
    llmlab_table *tc = st ? NULL : llmlab_run_table(run, "copy", err);
    if (!st && !tc) st = err->code;
    for (int r = 0; r < a->reps && !st; r++) st = llmlab_table_append_double(tc, "GBps", copy[r] / 1e9, err);
    llmlab_table *t = st ? NULL : llmlab_run_table(run, "matmul", err);
    if (!st && !t) st = err->code;
    if (!st) st = llmlab_table_column(t, "median_s", LLMLAB_COL_DOUBLE, "s", err);
    if (!st) st = llmlab_table_column(t, "eff_GBps", LLMLAB_COL_DOUBLE, "GB/s", err);
    for (int i = 0; i < n && !st; i++) {
        const entry *x = &e[i];
        st = llmlab_table_append_int(t, "rows", x->rows, err);
        if (!st) st = llmlab_table_append_int(t, "cols", x->cols, err);
        if (!st) st = llmlab_table_append_int(t, "M", x->M, err);
        if (!st) st = llmlab_table_append_str(t, "format", a->fmts[x->f].name, err);
        if (!st) st = llmlab_table_append_str(t, "path", PATH_NAME[x->path], err);
        if (!st) st = llmlab_table_append_str(t, "kernel", kernel_name(a, x), err);
        if (!st) st = llmlab_table_append_int(t, "iters", x->iters, err);
        if (!st) st = llmlab_table_append_double(t, "median_s", x->med, err);
        if (!st) st = llmlab_table_append_double(t, "eff_GBps", x->gbps, err);
        if (!st) st = llmlab_table_append_double(t, "frac_copy_bw", x->frac, err);
        if (!st) st = llmlab_table_append_double(t, "speedup_vs_bf16", x->speedup, err);
        if (!st) st = llmlab_table_append_double(t, "speedup_vs_cublas", x->speedup_cublas, err);
    }
    if (!st) st = llmlab_results_write(a->out, run, err);
    llmlab_run_free(run);
    return st;
}

static llmlab_status run_bench(const cq_args *a, llmlab_err *err) {
    bench_dev d = {0};
    void *b1 = NULL, *b2 = NULL;
    entry *e = NULL;
    int n_e = 0;
    double copy[MAX_REPS];
    char dev[256] = "";
    int sms = 0;
    size_t mem = 0;
    llmlab_cuda_qopts o = {a->device, 0, 0};
    llmlab_status st = llmlab_cuda_qctx_create(&d.c, &o, err);
    if (!st) st = llmlab_cuda_device_info(a->device, dev, sizeof dev, &sms, &mem, err);
    if (!st) st = llmlab_cuda_timer_create(&d.t, err);
    int64_t max_rows = 0, max_cols = 0;
    int max_m = 0;
    for (int i = 0; i < a->n_shapes; i++) {
        if (a->rows[i] > max_rows) max_rows = a->rows[i];
        if (a->cols[i] > max_cols) max_cols = a->cols[i];
    }
    for (int i = 0; i < a->n_ms; i++) max_m = a->ms[i] > max_m ? a->ms[i] : max_m;
    size_t nx = (size_t)max_m * (size_t)max_cols, ny = (size_t)max_m * (size_t)max_rows;
    if (!st) st = llmlab_cuda_mem_alloc(d.c, (void **)&d.x, nx * sizeof(float), err);
    if (!st) st = llmlab_cuda_mem_alloc(d.c, (void **)&d.y, ny * sizeof(float), err);
    if (!st) { /* random activations (never zeros) */
        float *hx = malloc(nx * sizeof *hx);
        if (!hx) {
            snprintf(err->msg, sizeof err->msg, "bench-cuda-quant: out of host memory");
            st = err->code = LLMLAB_ENOMEM;
        } else {
            for (size_t i = 0; i < nx; i++) hx[i] = 20.0f * rand_weight();
            st = llmlab_cuda_mem_h2d(d.c, d.x, hx, nx * sizeof *hx, err);
            free(hx);
        }
    }
    size_t cb = (size_t)a->copy_mib << 20;
    if (!st) st = llmlab_cuda_mem_alloc(d.c, &b1, cb, err);
    if (!st) st = llmlab_cuda_mem_alloc(d.c, &b2, cb, err);
    if (!st) st = llmlab_cuda_mem_set(d.c, b1, 0x5a, cb, err);
    if (!st) fprintf(stderr, "bench-cuda-quant: %s, %d SMs, %.0f GiB, L2 %.0f MiB, %d reps\n", dev, sms,
                     mem / 1073741824.0, llmlab_cuda_qctx_l2_bytes(d.c) / 1048576.0, a->reps);
    double warm;
    if (!st) st = copy_bw(&d, b2, b1, cb, &warm, err);
    for (int r = 0; r < a->reps && !st; r++) st = copy_bw(&d, b2, b1, cb, &copy[r], err);
    llmlab_cuda_mem_free(b1);
    llmlab_cuda_mem_free(b2);
    int per_shape = 0;
    for (int fi = 0; fi < a->n_fmts; fi++)
        for (int p = 0; p < 3; p++) per_shape += has_path(a, &a->fmts[fi], p);
    if (!st && !(e = calloc((size_t)(per_shape * a->n_ms * a->n_shapes), sizeof *e))) {
        snprintf(err->msg, sizeof err->msg, "bench-cuda-quant: out of host memory");
        st = err->code = LLMLAB_ENOMEM;
    }
    for (int si = 0; si < a->n_shapes && !st; si++) st = bench_shape(a, &d, si, e, &n_e, err);
    if (!st) {
        double cg = median(copy, a->reps) / 1e9;
        printf("device          %s (%d SMs)\n", dev, sms);
        printf("copy bandwidth  %.0f GB/s (read + write, %d MiB, median of %d)\n", cg, a->copy_mib, a->reps);
        printf("timing          %s, median of %d interleaved repetitions\n",
               a->no_graph ? "back-to-back launches" : "CUDA graph replay", a->reps);
        ratios(a, e, n_e, cg);
        print_table(a, e, n_e, cg);
        if (a->out) {
            st = write_h5(a, e, n_e, copy, dev, sms, err);
            if (!st) fprintf(stderr, "bench-cuda-quant: wrote %s\n", a->out);
        }
    }
    free(e);
    llmlab_cuda_mem_free(d.x);
    llmlab_cuda_mem_free(d.y);
    llmlab_cuda_timer_free(d.t);
    llmlab_cuda_qctx_free(d.c);
    return st;
}

int llmlab_cmd_bench_cuda_quant(int argc, char **argv) {
    cq_args a;
    int rc = parse_cq_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    if (llmlab_cuda_device_count(&err) == 0) {
        fprintf(stderr, "llmlab bench-cuda-quant: no CUDA device: %s\n", err.msg);
        return 1;
    }
    if (run_bench(&a, &err)) {
        fprintf(stderr, "llmlab bench-cuda-quant: %s\n", err.msg);
        return 1;
    }
    return 0;
}

#endif
