/* bench_forward.c - `llmlab bench-forward`: decode and prefill speed of the whole
 * forward (CPU or CUDA) against ceilings measured in the same run.
 *
 * Method (DEVELOPERS.md: ratios within one run, medians over repetitions).  Each
 * repetition, in this order:
 *   1. the ceilings: memory bandwidth (CUDA: a device-to-device copy, bytes read
 *      + written over CUDA-event time; CPU: llmlab_cpu_read_bandwidth) and
 *      compute rate (CUDA: cuBLAS bf16 GEMM, 4096 x 4096 weights, M = 4096, f32
 *      activations rounded to bf16 as the forward's do; CPU: peak f32 FMA rate);
 *   2. decode at each batch size B: B sequences, each first filled with --ctx
 *      random tokens (untimed), one untimed warm-up step, then --steps forwards
 *      of B tokens (one per sequence, every row wanting logits, as a real decode
 *      step), wall-clock time around those steps only;
 *   3. prefill at each length L: one sequence of L tokens from an empty cache,
 *      in as few forwards as max_batch allows (one by default), logits of the
 *      last token only, wall-clock time.
 * Before the first repetition every prefill length runs once untimed (module
 * loads, cuBLAS heuristics).  Figures:
 *   bytes/step  = weight matrices of the layers + LM head + B embedding rows
 *                 + B * mean attended slots * KV bytes per slot (its format),
 *                 mean attended = ctx + 1 + (steps + 1) / 2;
 *   frac bw     = bytes/step / step time / that repetition's bandwidth;
 *   prefill FLOP = 2 * layer matmul params * L + 2 * vocab * dim (one logits row)
 *                 + attention 2 * n_layers * n_heads * head_dim * L * (L + 1);
 *   frac GEMM   = FLOP / time / that repetition's compute rate;
 *   batch 8 / batch 1 = aggregate decode tokens/s at B = 8 over B = 1.
 * Medians over repetitions, fractions too (each against its own repetition's
 * ceiling).  Nothing here passes or fails on time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/forward.h"
#include "core/generate.h"
#include "core/results.h"
#include "core/rng.h"
#include "core/synth_model.h"
#include "kernels/cpu/kernels.h"
#ifdef LLMLAB_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"
#endif

#define BF_MAX_LIST 16
#define BF_MAX_REPS 101
#define BF_GEMM_N 4096 /* the GEMM ceiling: [N][N] bf16 weights, M = N */
#define BF_GEMM_ITERS 10

typedef struct {
    const char *model, *preset, *out;
    int cuda, device, deterministic, threads, ctx, steps, reps, copy_mib;
    int dtype_set, kv_set;
    llmlab_dtype dtype;
    llmlab_kv_dtype kv;
    uint64_t seed;
    int n_batch, batch[BF_MAX_LIST];     /* decode batch sizes */
    int n_prefill, prefill[BF_MAX_LIST]; /* prefill lengths */
} bf_args;

static void bf_usage(FILE *f) {
    fprintf(f, "usage: llmlab bench-forward [--backend cpu|cuda] [--device N] [--preset NAME | -m MODEL]\n"
               "                            [--dtype bf16|f16|f32] [--batch LIST] [--ctx N] [--prefill LIST]\n"
               "                            [--steps N] [--reps R] [--deterministic] [--threads N] [--kv DTYPE]\n"
               "                            [--seed N] [--copy-mib N] [--out FILE.h5]\n"
               "  --backend B     where the forward runs (default cpu)\n"
               "  --device N      CUDA device (default 0)\n"
               "  --preset NAME   a synthetic model built in memory: tiny (default), tinyllama-1.1b, llama3-8b\n"
               "  -m MODEL        a model directory or .gguf file instead\n"
               "  --dtype T       weight dtype of the preset (default: the preset's)\n"
               "  --batch LIST    decode batch sizes (default 1,8,32,64)\n"
               "  --ctx N         tokens each decoding sequence holds before the timed steps (default 512)\n"
               "  --prefill LIST  prefill lengths, one sequence each (default 512,2048)\n"
               "  --steps N       timed decode steps per batch size (default 32)\n"
               "  --reps R        interleaved repetitions, medians reported (default 3)\n"
               "  --deterministic CUDA: batch-invariant kernels, no cuBLAS in the forward\n"
               "  --threads N     CPU threads (forward, model building; default: all cores)\n"
               "  --kv DTYPE      KV-cache storage f32, f16 or bf16 (default f32)\n"
               "  --seed N        seed of the synthetic weights and the tokens (default 1)\n"
               "  --copy-mib N    size of the bandwidth probe (default: CUDA 1024, CPU 512)\n"
               "  --out FILE      also write every figure to an HDF5 results file (run bench_forward_*)\n");
}

static int parse_list(const char *C, const char *opt, const char *s, int *out, int *n, long hi) {
    *n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > hi || *n == BF_MAX_LIST || (*end && *end != ',')) {
            fprintf(stderr, "llmlab %s: bad value for %s: '%s' (up to %d numbers 1..%ld, comma separated)\n", C, opt,
                    s, BF_MAX_LIST, hi);
            return -1;
        }
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) fprintf(stderr, "llmlab %s: %s needs at least one number\n", C, opt);
    return *n ? 0 : -1;
}

static int parse_named(const char *C, const char *o, const char *v, bf_args *a) {
    if (!strcmp(o, "--backend")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda")) {
            fprintf(stderr, "llmlab %s: bad value for --backend: '%s' (cpu or cuda)\n", C, v);
            return 2;
        }
        a->cuda = !strcmp(v, "cuda");
    } else if (!strcmp(o, "--dtype") || !strcmp(o, "--kv")) {
        llmlab_dtype t;
        if (llmlab_dtype_parse(v, &t) || llmlab_dtype_size(t) == 0) {
            fprintf(stderr, "llmlab %s: bad value for %s: '%s' (f32, f16 or bf16)\n", C, o, v);
            return 2;
        }
        if (!strcmp(o, "--dtype")) a->dtype = t, a->dtype_set = 1;
        else a->kv = t == LLMLAB_DTYPE_F32 ? LLMLAB_KV_F32 : t == LLMLAB_DTYPE_F16 ? LLMLAB_KV_F16 : LLMLAB_KV_BF16,
             a->kv_set = 1;
    } else if (!strcmp(o, "-m")) a->model = v;
    else if (!strcmp(o, "--preset")) a->preset = v;
    else if (!strcmp(o, "--out")) a->out = v;
    else if (!strcmp(o, "--batch")) return parse_list(C, o, v, a->batch, &a->n_batch, 4096) ? 2 : 0;
    else if (!strcmp(o, "--prefill")) return parse_list(C, o, v, a->prefill, &a->n_prefill, 1 << 20) ? 2 : 0;
    else if (!strcmp(o, "--seed")) return llmlab_arg_u64(C, o, v, &a->seed) ? 2 : 0;
    else if (!strcmp(o, "--device")) return llmlab_arg_int(C, o, v, 0, 64, &a->device) ? 2 : 0;
    else if (!strcmp(o, "--ctx")) return llmlab_arg_int(C, o, v, 1, 1 << 20, &a->ctx) ? 2 : 0;
    else if (!strcmp(o, "--steps")) return llmlab_arg_int(C, o, v, 1, 100000, &a->steps) ? 2 : 0;
    else if (!strcmp(o, "--reps")) return llmlab_arg_int(C, o, v, 1, BF_MAX_REPS, &a->reps) ? 2 : 0;
    else if (!strcmp(o, "--threads")) return llmlab_arg_int(C, o, v, 0, 4096, &a->threads) ? 2 : 0;
    else if (!strcmp(o, "--copy-mib")) return llmlab_arg_int(C, o, v, 1, 65536, &a->copy_mib) ? 2 : 0;
    else {
        fprintf(stderr, "llmlab %s: unknown option '%s'\n", C, o);
        bf_usage(stderr);
        return 2;
    }
    return 0;
}

static int parse_bf_args(int argc, char **argv, bf_args *a) {
    const char *C = "bench-forward";
    *a = (bf_args){.ctx = 512, .steps = 32, .reps = 3, .seed = 1};
    parse_list(C, "--batch", "1,8,32,64", a->batch, &a->n_batch, 4096);
    parse_list(C, "--prefill", "512,2048", a->prefill, &a->n_prefill, 1 << 20);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { bf_usage(stdout); return 1; }
        if (!strcmp(o, "--deterministic")) { a->deterministic = 1; continue; }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        int rc = parse_named(C, o, v, a);
        if (rc) return rc;
    }
    if (a->model && a->preset) {
        fprintf(stderr, "llmlab %s: give either --preset or -m, not both\n", C);
        return 2;
    }
    if (a->model && a->dtype_set) {
        fprintf(stderr, "llmlab %s: --dtype applies to --preset models only (a loaded model keeps its dtype)\n", C);
        return 2;
    }
    if (!a->model && !a->preset) a->preset = "tiny";
    if (!a->copy_mib) a->copy_mib = a->cuda ? 1024 : 512;
    return 0;
}

/* ---- figures ------------------------------------------------------------------- */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(const double *v, int n) {
    double s[BF_MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Bytes as stored: also right for GGUF block formats. */
static double mat_bytes(const llmlab_mat *w) {
    return (double)w->rows * (double)llmlab_dtype_row_bytes(w->dtype, w->cols);
}

/* Weight bytes one decode step of B tokens reads. */
static double step_weight_bytes(const llmlab_model *m, int B) {
    double b = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        b += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
             mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
    }
    return b + mat_bytes(&m->lm_head) + B * (double)llmlab_dtype_row_bytes(m->embed.dtype, m->cfg.dim);
}

/* Multiply-adds of one token through one layer's matrices. */
static double layer_params(const llmlab_config *c) {
    return (double)c->dim * c->head_dim * (2.0 * c->n_heads + 2.0 * c->n_kv_heads) + 3.0 * c->dim * c->ffn_dim;
}

static double prefill_flops(const llmlab_config *c, int L) {
    double attn = 2.0 * c->n_layers * c->n_heads * c->head_dim * (double)L * (L + 1.0);
    return 2.0 * layer_params(c) * c->n_layers * L + 2.0 * (double)c->vocab_size * c->dim + attn;
}

/* ---- ceilings ------------------------------------------------------------------ */

typedef struct {
    llmlab_threadpool *pool; /* CPU: the context's */
    size_t bytes;            /* bandwidth probe size */
    int cuda;
#ifdef LLMLAB_HAVE_CUDA
    llmlab_cuda_qctx *c;
    llmlab_cuda_timer *t;
    void *b1, *b2;           /* [bytes] copy source and destination */
    llmlab_cuda_wmat *w;     /* [N][N] bf16 */
    float *x, *y;            /* device [N][N] f32 */
#endif
} ceilings;

#ifdef LLMLAB_HAVE_CUDA
static float rand_unit(llmlab_rng *r) { return llmlab_rng_uniform(r) - 0.5f; }

/* Random f32 [n][n] on the host, uploaded as bf16 weights and as f32 activations. */
static llmlab_status gemm_setup(ceilings *c, llmlab_err *err) {
    size_t n = (size_t)BF_GEMM_N * BF_GEMM_N;
    float *h = malloc(n * sizeof *h);
    if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "bench-forward: out of host memory");
    llmlab_rng r;
    llmlab_rng_seed(&r, 77, 0);
    for (size_t i = 0; i < n; i++) h[i] = 0.05f * rand_unit(&r);
    llmlab_status st = llmlab_cuda_wmat_upload_bf16(c->c, &c->w, h, BF_GEMM_N, BF_GEMM_N, err);
    for (size_t i = 0; !st && i < n; i++) h[i] = 2.0f * rand_unit(&r);
    if (!st) st = llmlab_cuda_mem_alloc(c->c, (void **)&c->x, n * sizeof(float), err);
    if (!st) st = llmlab_cuda_mem_alloc(c->c, (void **)&c->y, n * sizeof(float), err);
    if (!st) st = llmlab_cuda_mem_h2d(c->c, c->x, h, n * sizeof(float), err);
    free(h);
    return st;
}

static llmlab_status cuda_ceil_init(ceilings *c, int device, llmlab_err *err) {
    llmlab_cuda_qopts o = {device, 0, 0};
    llmlab_status st = llmlab_cuda_qctx_create(&c->c, &o, err);
    if (!st) st = llmlab_cuda_timer_create(&c->t, err);
    if (!st) st = llmlab_cuda_mem_alloc(c->c, &c->b1, c->bytes, err);
    if (!st) st = llmlab_cuda_mem_alloc(c->c, &c->b2, c->bytes, err);
    if (!st) st = llmlab_cuda_mem_set(c->c, c->b1, 0x5a, c->bytes, err);
    if (!st) st = gemm_setup(c, err);
    double s; /* warm-up: workspaces are allocated by a first plain call */
    if (!st) st = llmlab_cuda_time_matmuls(c->c, &c->w, 1, c->y, c->x, BF_GEMM_N, LLMLAB_CUDA_PATH_GEMM, 2, 0, &s, err);
    if (!st) st = llmlab_cuda_mem_d2d(c->c, c->b2, c->b1, c->bytes, err);
    if (!st) st = llmlab_cuda_qctx_sync(c->c, err);
    return st;
}

static llmlab_status cuda_ceil_measure(ceilings *c, double *bw, double *rate, llmlab_err *err) {
    double s = 0, g = 0;
    llmlab_status st = llmlab_cuda_timer_start(c->t, c->c, err);
    if (!st) st = llmlab_cuda_mem_d2d(c->c, c->b2, c->b1, c->bytes, err);
    if (!st) st = llmlab_cuda_timer_stop(c->t, c->c, &s, err);
    if (!st) st = llmlab_cuda_time_matmuls(c->c, &c->w, 1, c->y, c->x, BF_GEMM_N, LLMLAB_CUDA_PATH_GEMM,
                                           BF_GEMM_ITERS, 0, &g, err);
    if (st) return st;
    *bw = 2.0 * (double)c->bytes / s; /* read + write */
    *rate = 2.0 * (double)BF_GEMM_N * BF_GEMM_N * BF_GEMM_N / g;
    return LLMLAB_OK;
}
#endif

static llmlab_status ceil_init(ceilings *c, const bf_args *a, llmlab_ctx *ctx, llmlab_err *err) {
    memset(c, 0, sizeof *c);
    c->pool = llmlab_ctx_pool(ctx);
    c->bytes = (size_t)a->copy_mib << 20;
    c->cuda = a->cuda;
#ifdef LLMLAB_HAVE_CUDA
    if (c->cuda) return cuda_ceil_init(c, a->device, err);
#endif
    (void)err;
    return LLMLAB_OK;
}

static llmlab_status ceil_measure(ceilings *c, double *bw, double *rate, llmlab_err *err) {
#ifdef LLMLAB_HAVE_CUDA
    if (c->cuda) return cuda_ceil_measure(c, bw, rate, err);
#endif
    (void)err;
    *bw = llmlab_cpu_read_bandwidth(c->pool, c->bytes, 3);
    *rate = llmlab_bench_peak_flops(c->pool);
    return LLMLAB_OK;
}

static void ceil_free(ceilings *c) {
#ifdef LLMLAB_HAVE_CUDA
    llmlab_cuda_wmat_free(c->w);
    llmlab_cuda_mem_free(c->x);
    llmlab_cuda_mem_free(c->y);
    llmlab_cuda_mem_free(c->b1);
    llmlab_cuda_mem_free(c->b2);
    llmlab_cuda_timer_free(c->t);
    llmlab_cuda_qctx_free(c->c);
#endif
    memset(c, 0, sizeof *c);
}

/* ---- the model runs ------------------------------------------------------------ */

typedef struct {
    const bf_args *a;
    llmlab_ctx *ctx;
    llmlab_batch *b;
    llmlab_rng rng; /* token ids */
    int vocab;
} runner;

static int32_t next_token(runner *w) { return (int32_t)(llmlab_rng_next(&w->rng) % (uint64_t)w->vocab); }

/* Runs the batch and commits what it appended to sequences [0, n_seq). */
static llmlab_status forward_commit(runner *w, int n_seq, llmlab_err *err) {
    const llmlab_outputs *out;
    llmlab_status st = llmlab_forward(w->ctx, w->b, &out, err);
    for (int s = 0; !st && s < n_seq; s++) llmlab_kv_commit(llmlab_ctx_kv(w->ctx), s);
    llmlab_batch_clear(w->b);
    return st;
}

/* Fills sequences [0, n_seq) with len random tokens each, max_batch tokens per
 * forward; a chunk's last token and each sequence's last token want logits. */
static llmlab_status fill(runner *w, int n_seq, int len, llmlab_err *err) {
    int cap = llmlab_ctx_max_batch(w->ctx);
    llmlab_batch_clear(w->b);
    for (int s = 0; s < n_seq; s++)
        for (int p = 0; p < len; p++) {
            int end = p == len - 1 || w->b->n == cap - 1;
            llmlab_batch_add(w->b, next_token(w), s, p, end ? LLMLAB_TOK_LOGITS : 0, -1);
            if (w->b->n == cap || (s == n_seq - 1 && p == len - 1)) {
                llmlab_status st = forward_commit(w, n_seq, err);
                if (st) return st;
            }
        }
    return LLMLAB_OK;
}

static void free_seqs(runner *w, int n_seq) {
    for (int s = 0; s < n_seq; s++) llmlab_kv_free_seq(llmlab_ctx_kv(w->ctx), s);
}

/* Seconds of --steps decode steps of B sequences holding --ctx tokens. */
static llmlab_status run_decode(runner *w, int B, double *secs, llmlab_err *err) {
    const bf_args *a = w->a;
    llmlab_status st = fill(w, B, a->ctx, err);
    double t0 = 0;
    for (int t = -1; t < a->steps && !st; t++) { /* t = -1: the warm-up step */
        if (t == 0) t0 = llmlab_now();
        for (int s = 0; s < B; s++) llmlab_batch_add(w->b, next_token(w), s, a->ctx + 1 + t, LLMLAB_TOK_LOGITS, -1);
        st = forward_commit(w, B, err);
    }
    *secs = llmlab_now() - t0;
    free_seqs(w, B);
    return st;
}

static llmlab_status run_prefill(runner *w, int L, double *secs, llmlab_err *err) {
    double t0 = llmlab_now();
    llmlab_status st = fill(w, 1, L, err);
    *secs = llmlab_now() - t0;
    free_seqs(w, 1);
    return st;
}

/* ---- one benchmark ------------------------------------------------------------- */

typedef struct {
    double bw[BF_MAX_REPS], rate[BF_MAX_REPS];                /* ceilings per rep */
    double dec_s[BF_MAX_REPS][BF_MAX_LIST];                   /* decode seconds (all steps) */
    double pre_s[BF_MAX_REPS][BF_MAX_LIST];                   /* prefill seconds */
    double kv_slot;                                           /* KV bytes per slot, all layers */
    char device[256], model[256];
    int threads;
} measured;

typedef struct { /* the medians of one batch size */
    double tps, step_s, wbytes, kvbytes, bytes, eff, frac;
} dec_row;

typedef struct { /* the medians of one prefill length */
    double tps, secs, flops, rate, frac;
} pre_row;

static double mean_attended(const bf_args *a) { return a->ctx + 1.0 + (a->steps + 1.0) / 2.0; }

static void decode_row(const bf_args *a, const llmlab_model *m, const measured *r, int bi, dec_row *d) {
    int B = a->batch[bi];
    double tps[BF_MAX_REPS], step[BF_MAX_REPS], frac[BF_MAX_REPS];
    d->wbytes = step_weight_bytes(m, B);
    d->kvbytes = B * mean_attended(a) * r->kv_slot;
    d->bytes = d->wbytes + d->kvbytes;
    for (int k = 0; k < a->reps; k++) {
        step[k] = r->dec_s[k][bi] / a->steps;
        tps[k] = B / step[k];
        frac[k] = d->bytes / step[k] / r->bw[k];
    }
    d->tps = median(tps, a->reps);
    d->step_s = median(step, a->reps);
    d->eff = d->bytes / d->step_s;
    d->frac = median(frac, a->reps);
}

static void prefill_row(const bf_args *a, const llmlab_model *m, const measured *r, int pi, pre_row *p) {
    int L = a->prefill[pi];
    double secs[BF_MAX_REPS], frac[BF_MAX_REPS];
    p->flops = prefill_flops(&m->cfg, L);
    for (int k = 0; k < a->reps; k++) {
        secs[k] = r->pre_s[k][pi];
        frac[k] = p->flops / secs[k] / r->rate[k];
    }
    p->secs = median(secs, a->reps);
    p->tps = L / p->secs;
    p->rate = p->flops / p->secs;
    p->frac = median(frac, a->reps);
}

/* Aggregate decode throughput at B = 8 over B = 1 (NaN when either is missing). */
static double batch_ratio(const bf_args *a, const dec_row *d) {
    double t1 = NAN, t8 = NAN;
    for (int i = 0; i < a->n_batch; i++) {
        if (a->batch[i] == 1) t1 = d[i].tps;
        if (a->batch[i] == 8) t8 = d[i].tps;
    }
    return t8 / t1;
}

static void print_table(const bf_args *a, const llmlab_model *m, const measured *r, const dec_row *d,
                        const pre_row *p) {
    printf("bench-forward   %s (%s weights, %.4g GB; KV %s, %.0f B/slot)\n", r->model,
           llmlab_dtype_name(m->layers[0].wq.dtype), (double)m->weight_bytes / 1e9,
           llmlab_kv_dtype_name(a->kv_set ? (int)a->kv : LLMLAB_KV_F32), r->kv_slot);
    printf("backend         %s: %s%s, %d reps\n", a->cuda ? "cuda" : "cpu", r->device,
           a->deterministic ? ", deterministic" : "", a->reps);
    printf("bandwidth       %.1f GB/s (%s, median)\n", median(r->bw, a->reps) / 1e9,
           a->cuda ? "device-to-device copy, read + write" : "read");
    printf("compute         %.3f TFLOP/s (%s, median)\n", median(r->rate, a->reps) / 1e12,
           a->cuda ? "cuBLAS bf16 GEMM 4096^3" : "peak f32 FMA");
    printf("decode          ctx %d, %d steps after 1 warm-up step, every row with logits\n", a->ctx, a->steps);
    printf("  %6s %11s %9s %9s %9s %7s\n", "batch", "tok/s", "ms/step", "MB/step", "GB/s", "of bw");
    for (int i = 0; i < a->n_batch; i++)
        printf("  %6d %11.1f %9.3f %9.1f %9.1f %6.1f%%\n", a->batch[i], d[i].tps, d[i].step_s * 1e3, d[i].bytes / 1e6,
               d[i].eff / 1e9, 100.0 * d[i].frac);
    printf("prefill         one sequence, logits of the last token\n");
    printf("  %6s %11s %9s %9s %8s\n", "tokens", "tok/s", "ms", "TFLOP/s", "of peak");
    for (int i = 0; i < a->n_prefill; i++)
        printf("  %6d %11.1f %9.3f %9.3f %7.1f%%\n", a->prefill[i], p[i].tps, p[i].secs * 1e3, p[i].rate / 1e12,
               100.0 * p[i].frac);
    double ratio = batch_ratio(a, d);
    if (isnan(ratio)) printf("batch 8 / batch 1 decode throughput  n/a (needs --batch with 1 and 8)\n");
    else printf("batch 8 / batch 1 decode throughput  %.2fx\n", ratio);
}

/* ---- HDF5 ------------------------------------------------------------------------ */

#define TRY(call) \
    do { if (!st) st = (call); } while (0)

static llmlab_status h5_attrs(llmlab_run *run, const bf_args *a, const llmlab_model *m, const measured *r,
                              double ratio, llmlab_err *err) {
    char now[32];
    llmlab_results_utc_now(now);
    llmlab_status st = LLMLAB_OK;
    TRY(llmlab_run_attr_str(run, "benchmark", "bench-forward", err));
    TRY(llmlab_run_attr_str(run, "date", now, err));
    TRY(llmlab_run_attr_str(run, "llmlab_commit", LLMLAB_GIT_COMMIT, err));
    TRY(llmlab_run_attr_str(run, "llmlab_version", LLMLAB_VERSION_STRING, err));
    TRY(llmlab_run_attr_str(run, "backend", llmlab_model_backend_name(m), err));
    TRY(llmlab_run_attr_str(run, "device", r->device, err));
    TRY(llmlab_run_attr_int(run, "device_index", a->device, err));
    TRY(llmlab_run_attr_int(run, "deterministic", a->deterministic, err));
    TRY(llmlab_run_attr_int(run, "threads", r->threads, err));
    TRY(llmlab_run_attr_str(run, "model", r->model, err));
    TRY(llmlab_run_attr_str(run, "model_hash", m->hash, err));
    TRY(llmlab_run_attr_str(run, "weight_dtype", llmlab_dtype_name(m->layers[0].wq.dtype), err));
    TRY(llmlab_run_attr_int(run, "weight_bytes", (int64_t)m->weight_bytes, err));
    TRY(llmlab_run_attr_str(run, "kv_dtype", llmlab_kv_dtype_name(a->kv_set ? (int)a->kv : LLMLAB_KV_F32), err));
    TRY(llmlab_run_attr_double(run, "kv_bytes_per_slot", r->kv_slot, err));
    TRY(llmlab_run_attr_int(run, "ctx", a->ctx, err));
    TRY(llmlab_run_attr_int(run, "steps", a->steps, err));
    TRY(llmlab_run_attr_int(run, "reps", a->reps, err));
    TRY(llmlab_run_attr_int(run, "seed", (int64_t)a->seed, err));
    TRY(llmlab_run_attr_int(run, "probe_bytes", (int64_t)a->copy_mib << 20, err));
    TRY(llmlab_run_attr_str(run, "bandwidth_probe", a->cuda ? "device-to-device copy (read + write)" : "cpu read", err));
    TRY(llmlab_run_attr_str(run, "compute_probe", a->cuda ? "cuBLAS bf16 GEMM 4096x4096x4096" : "peak f32 FMA", err));
    TRY(llmlab_run_attr_double(run, "bandwidth_Bps", median(r->bw, a->reps), err));
    TRY(llmlab_run_attr_double(run, "compute_flops", median(r->rate, a->reps), err));
    TRY(llmlab_run_attr_double(run, "batch8_over_batch1", ratio, err));
    return st;
}

static llmlab_table *table(llmlab_run *run, const char *name, llmlab_status *st, llmlab_err *err) {
    llmlab_table *t = *st ? NULL : llmlab_run_table(run, name, err);
    if (!*st && !t) *st = err->code ? err->code : LLMLAB_EINVAL;
    return t;
}

/* Per repetition: the ceilings, every decode and prefill timing. */
static llmlab_status h5_reps(llmlab_run *run, const bf_args *a, const llmlab_model *m, const measured *r,
                             llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    llmlab_table *c = table(run, "ceilings", &st, err), *d = table(run, "decode", &st, err);
    llmlab_table *p = table(run, "prefill", &st, err);
    for (int k = 0; k < a->reps && !st; k++) {
        TRY(llmlab_table_append_int(c, "rep", k, err));
        TRY(llmlab_table_append_double(c, "bandwidth_Bps", r->bw[k], err));
        TRY(llmlab_table_append_double(c, "compute_flops", r->rate[k], err));
        for (int i = 0; i < a->n_batch; i++) {
            double step = r->dec_s[k][i] / a->steps;
            TRY(llmlab_table_append_int(d, "rep", k, err));
            TRY(llmlab_table_append_int(d, "batch", a->batch[i], err));
            TRY(llmlab_table_append_double(d, "seconds", r->dec_s[k][i], err));
            TRY(llmlab_table_append_double(d, "tok_per_s", a->batch[i] / step, err));
            TRY(llmlab_table_append_double(d, "step_s", step, err));
        }
        for (int i = 0; i < a->n_prefill; i++) {
            TRY(llmlab_table_append_int(p, "rep", k, err));
            TRY(llmlab_table_append_int(p, "tokens", a->prefill[i], err));
            TRY(llmlab_table_append_double(p, "seconds", r->pre_s[k][i], err));
            TRY(llmlab_table_append_double(p, "tok_per_s", a->prefill[i] / r->pre_s[k][i], err));
            TRY(llmlab_table_append_double(p, "flop_rate", prefill_flops(&m->cfg, a->prefill[i]) / r->pre_s[k][i],
                                           err));
        }
    }
    return st;
}

/* The medians, one row per batch size and per prefill length. */
static llmlab_status h5_summary(llmlab_run *run, const bf_args *a, const dec_row *dr, const pre_row *pr,
                                llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    llmlab_table *d = table(run, "decode_summary", &st, err), *p = table(run, "prefill_summary", &st, err);
    TRY(llmlab_table_column(d, "tok_per_s", LLMLAB_COL_DOUBLE, "tokens/s", err));
    TRY(llmlab_table_column(d, "bytes_per_step", LLMLAB_COL_DOUBLE, "bytes", err));
    TRY(llmlab_table_column(p, "flop_rate", LLMLAB_COL_DOUBLE, "FLOP/s", err));
    for (int i = 0; i < a->n_batch && !st; i++) {
        TRY(llmlab_table_append_int(d, "batch", a->batch[i], err));
        TRY(llmlab_table_append_int(d, "ctx", a->ctx, err));
        TRY(llmlab_table_append_double(d, "tok_per_s", dr[i].tps, err));
        TRY(llmlab_table_append_double(d, "step_s", dr[i].step_s, err));
        TRY(llmlab_table_append_double(d, "bytes_per_step", dr[i].bytes, err));
        TRY(llmlab_table_append_double(d, "weight_bytes_per_step", dr[i].wbytes, err));
        TRY(llmlab_table_append_double(d, "kv_bytes_per_step", dr[i].kvbytes, err));
        TRY(llmlab_table_append_double(d, "eff_Bps", dr[i].eff, err));
        TRY(llmlab_table_append_double(d, "frac_bandwidth", dr[i].frac, err));
    }
    for (int i = 0; i < a->n_prefill && !st; i++) {
        TRY(llmlab_table_append_int(p, "tokens", a->prefill[i], err));
        TRY(llmlab_table_append_double(p, "tok_per_s", pr[i].tps, err));
        TRY(llmlab_table_append_double(p, "seconds", pr[i].secs, err));
        TRY(llmlab_table_append_double(p, "flops", pr[i].flops, err));
        TRY(llmlab_table_append_double(p, "flop_rate", pr[i].rate, err));
        TRY(llmlab_table_append_double(p, "frac_compute", pr[i].frac, err));
    }
    return st;
}

static llmlab_status write_h5(const bf_args *a, const llmlab_model *m, const measured *r, const dec_row *d,
                              const pre_row *p, llmlab_err *err) {
    char name[64], now[32];
    llmlab_results_utc_now(now);
    snprintf(name, sizeof name, "bench_forward_%.4s%.2s%.2sT%.2s%.2s%.2s%.3s", now, now + 5, now + 8, now + 11,
             now + 14, now + 17, now + 20);
    llmlab_run *run = llmlab_run_create(name, err);
    if (!run) return err->code;
    llmlab_status st = h5_attrs(run, a, m, r, batch_ratio(a, d), err);
    TRY(h5_reps(run, a, m, r, err));
    TRY(h5_summary(run, a, d, p, err));
    TRY(llmlab_results_write(a->out, run, err));
    llmlab_run_free(run);
    return st;
}

/* ---- setup ----------------------------------------------------------------------- */

static int max_of(const int *v, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static llmlab_status check_backend(const bf_args *a, char *dev, size_t cap, llmlab_err *err) {
    if (!a->cuda) return LLMLAB_OK;
#ifndef LLMLAB_HAVE_CUDA
    (void)dev;
    (void)cap;
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "--backend cuda: this build has no CUDA backend "
                          "(configure with -DLLMLAB_CUDA=ON where the CUDA toolkit is installed)");
#else
    int n = llmlab_cuda_device_count(err);
    if (n == 0) return llmlab_err_prefix(err, "--backend cuda: no CUDA device");
    if (a->device >= n)
        return llmlab_err_set(err, LLMLAB_EINVAL, "--device %d: this machine has %d CUDA device(s)", a->device, n);
    int sms = 0;
    size_t mem = 0;
    return llmlab_cuda_device_info(a->device, dev, cap, &sms, &mem, err);
#endif
}

static llmlab_status make_model(const bf_args *a, llmlab_model **m, char *label, size_t cap, llmlab_err *err) {
    if (a->model) {
        snprintf(label, cap, "%s", a->model);
        return llmlab_model_load(m, a->model, err);
    }
    llmlab_synth_opts o;
    if (llmlab_synth_preset(&o, a->preset))
        return llmlab_err_set(err, LLMLAB_EINVAL, "--preset %s: unknown (tiny, tinyllama-1.1b, llama3-8b)", a->preset);
    if (a->dtype_set) o.dtype = a->dtype;
    o.seed = a->seed;
    snprintf(label, cap, "synth %s", a->preset);
    double t0 = llmlab_now();
    llmlab_status st = llmlab_synth_model(&o, a->threads, m, err);
    if (!st)
        fprintf(stderr, "bench-forward: built %s in memory (%.2f GB) in %.1f s\n", a->preset,
                (double)(*m)->weight_bytes / 1e9, llmlab_now() - t0);
    return st;
}

/* The context every run shares: room for the largest batch at --ctx + warm-up +
 * steps tokens each, or the longest prefill, whichever is more. */
static llmlab_status make_ctx(const bf_args *a, const llmlab_model *m, llmlab_ctx **ctx, llmlab_err *err) {
    int max_b = max_of(a->batch, a->n_batch), max_p = max_of(a->prefill, a->n_prefill);
    long long per_seq = ((long long)a->ctx + 1 + a->steps + 15) / 16 * 16;
    long long tokens = (long long)max_b * per_seq, pre = ((long long)max_p + 15) / 16 * 16;
    if (pre > tokens) tokens = pre;
    if (a->ctx + 1 + a->steps > m->cfg.max_pos)
        return llmlab_err_set(err, LLMLAB_EINVAL, "--ctx %d + 1 + --steps %d exceeds the model's %d positions",
                              a->ctx, a->steps, m->cfg.max_pos);
    if (max_p > m->cfg.max_pos)
        return llmlab_err_set(err, LLMLAB_EINVAL, "--prefill %d exceeds the model's %d positions", max_p,
                              m->cfg.max_pos);
    if (tokens + 16 > (1LL << 30))
        return llmlab_err_set(err, LLMLAB_EINVAL, "--batch %d x --ctx %d: %lld KV slots is too many", max_b, a->ctx,
                              tokens);
    llmlab_kv_format kf = {.size = sizeof kf, .dtype = a->kv};
    llmlab_ctx_opts co = {.n_threads = a->threads, .max_seqs = max_b, .kv_tokens = (int)tokens + 16,
                          .max_batch = max_b > max_p ? max_b : max_p, .kv_format = a->kv_set ? &kf : NULL};
    return llmlab_ctx_create(ctx, m, &co, err);
}

static llmlab_status measure_all(const bf_args *a, runner *w, ceilings *c, measured *r, llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    double s;
    for (int i = 0; i < a->n_prefill && !st; i++) st = run_prefill(w, a->prefill[i], &s, err); /* warm-up */
    for (int k = 0; k < a->reps && !st; k++) {
        st = ceil_measure(c, &r->bw[k], &r->rate[k], err);
        for (int i = 0; i < a->n_batch && !st; i++) st = run_decode(w, a->batch[i], &r->dec_s[k][i], err);
        for (int i = 0; i < a->n_prefill && !st; i++) st = run_prefill(w, a->prefill[i], &r->pre_s[k][i], err);
        if (!st) {
            fprintf(stderr, "  rep %d: bandwidth %.1f GB/s, compute %.3f TFLOP/s, decode", k, r->bw[k] / 1e9,
                    r->rate[k] / 1e12);
            for (int i = 0; i < a->n_batch; i++)
                fprintf(stderr, " B=%d %.1f tok/s", a->batch[i], a->batch[i] * a->steps / r->dec_s[k][i]);
            fprintf(stderr, ", prefill");
            for (int i = 0; i < a->n_prefill; i++)
                fprintf(stderr, " %d: %.1f tok/s", a->prefill[i], a->prefill[i] / r->pre_s[k][i]);
            fprintf(stderr, "\n");
        }
    }
    return st;
}

static llmlab_status bench(const bf_args *a, measured *r, llmlab_err *err) {
    llmlab_model *m = NULL;
    llmlab_ctx *ctx = NULL;
    ceilings c = {0};
    runner w = {.a = a};
    llmlab_status st = check_backend(a, r->device, sizeof r->device, err);
    if (!st) st = make_model(a, &m, r->model, sizeof r->model, err);
    if (!st)
        st = llmlab_model_set_backend(m, a->cuda ? LLMLAB_BACKEND_CUDA : LLMLAB_BACKEND_CPU, a->device,
                                      a->deterministic, err);
    if (!st) st = make_ctx(a, m, &ctx, err);
    if (!st && !(w.b = llmlab_batch_create(llmlab_ctx_max_batch(ctx))))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "bench-forward: out of memory");
    if (!st) st = ceil_init(&c, a, ctx, err);
    if (!st) {
        w.ctx = ctx;
        w.vocab = m->cfg.vocab_size;
        llmlab_rng_seed(&w.rng, a->seed, 101);
        r->kv_slot = llmlab_kv_bytes_per_token(llmlab_ctx_kv(ctx));
        r->threads = llmlab_threadpool_size(llmlab_ctx_pool(ctx));
        if (!a->cuda)
            snprintf(r->device, sizeof r->device, "cpu (%s kernels, %d threads)", llmlab_cpu_simd_name(), r->threads);
        fprintf(stderr, "bench-forward: %s on %s, %d reps\n", r->model, r->device, a->reps);
        st = measure_all(a, &w, &c, r, err);
    }
    if (!st) {
        dec_row d[BF_MAX_LIST];
        pre_row p[BF_MAX_LIST];
        for (int i = 0; i < a->n_batch; i++) decode_row(a, m, r, i, &d[i]);
        for (int i = 0; i < a->n_prefill; i++) prefill_row(a, m, r, i, &p[i]);
        print_table(a, m, r, d, p);
        if (a->out && !(st = write_h5(a, m, r, d, p, err))) fprintf(stderr, "bench-forward: wrote %s\n", a->out);
    }
    ceil_free(&c);
    llmlab_batch_free(w.b);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    return st;
}

int llmlab_cmd_bench_forward(int argc, char **argv) {
    bf_args a;
    int rc = parse_bf_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    measured *r = calloc(1, sizeof *r);
    llmlab_err err = {0};
    if (!r) {
        fprintf(stderr, "llmlab bench-forward: out of memory\n");
        return 1;
    }
    llmlab_status st = bench(&a, r, &err);
    free(r);
    if (st) {
        fprintf(stderr, "llmlab bench-forward: %s\n", err.msg);
        return 1;
    }
    return 0;
}
