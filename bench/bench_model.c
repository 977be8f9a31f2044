/* bench_model.c - `llmlab bench`: prefill and decode speed of a model (directory or .gguf file),
 * against ceilings measured in the same run.
 *
 * Method (DEVELOPERS.md: shared, noisy machines): each repetition measures the
 * machine's read bandwidth and peak FMA rate, then a prefill and a decode, back to
 * back, so ratios are taken against a ceiling measured moments earlier; figures
 * are medians over repetitions.  Nothing here passes or fails on time.
 *
 *   decode bytes/token = every weight matrix of the layers + the LM head + one
 *                        embedding row + the K/V rows attended (f32)
 *   decode fraction    = bytes/token * tokens/s / measured read bandwidth
 *   prefill fraction   = 2 * matmul params * tokens/s / measured peak FMA rate
 */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"

typedef struct {
    const char *model_dir, *out;
    int threads, n_prompt, n_gen, reps;
} bench_args;

static void bench_usage(FILE *f) {
    fprintf(f, "usage: llmlab bench -m MODEL [--threads N] [--prompt N] [--gen N] [--reps R]\n"
               "                    [--out FILE.h5]\n"
               "  -m MODEL     a model directory or a .gguf file\n"
               "  --prompt N   prefill length (default 128)\n"
               "  --gen N      decode steps after the prefill (default 32)\n"
               "  --reps R     repetitions, interleaved with ceiling measurements (default 3)\n"
               "  --out FILE   also write the figures to an HDF5 file (group /bench)\n");
}

static int parse_bench_args(int argc, char **argv, bench_args *a) {
    const char *C = "bench";
    *a = (bench_args){.n_prompt = 128, .n_gen = 32, .reps = 3};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { bench_usage(stdout); return 1; }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "-m")) a->model_dir = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--threads")) { if (llmlab_arg_int(C, o, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "--prompt")) { if (llmlab_arg_int(C, o, v, 1, 1 << 20, &a->n_prompt)) return 2; }
        else if (!strcmp(o, "--gen")) { if (llmlab_arg_int(C, o, v, 2, 1 << 20, &a->n_gen)) return 2; }
        else if (!strcmp(o, "--reps")) { if (llmlab_arg_int(C, o, v, 1, 1000, &a->reps)) return 2; }
        else { fprintf(stderr, "llmlab bench: unknown option '%s'\n", o); bench_usage(stderr); return 2; }
    }
    if (!a->model_dir) {
        fprintf(stderr, "llmlab bench: need -m MODEL_DIR\n");
        return 2;
    }
    return 0;
}

/* ---- peak FMA rate ------------------------------------------------------------- */

typedef struct {
    long iters;
    double sink[256];
} fma_job;

/* Ten independent accumulators hide the FMA latency (4 cycles x 2 ports on Zen 3). */
__attribute__((target("avx2,fma"))) static void fma_task(void *arg, int t, int n) {
    fma_job *j = arg;
    __m256 a0 = _mm256_set1_ps(1.0f + t), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, a8 = a0, a9 = a0;
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < j->iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c); a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c); a9 = _mm256_fmadd_ps(a9, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7),
                                                                                _mm256_add_ps(a8, a9))));
    float out[8];
    _mm256_storeu_ps(out, s);
    j->sink[t % 256] = out[0];
}

/* Peak f32 FMA rate of the pool's threads in FLOP/s (one task per thread). */
double llmlab_bench_peak_flops(llmlab_threadpool *tp) {
    if (!__builtin_cpu_supports("fma")) return 0.0;
    fma_job j = {.iters = 20000000};
    int n = llmlab_threadpool_size(tp);
    double t0 = llmlab_now();
    llmlab_threadpool_run(tp, fma_task, &j, n);
    double dt = llmlab_now() - t0;
    return (double)n * (double)j.iters * 10.0 * 8.0 * 2.0 / dt;
}

/* ---- model runs -------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double r = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return r;
}

/* Bytes as stored: also right for GGUF block formats (q8_0, q4_0, q4_K). */
static uint64_t mat_bytes(const llmlab_mat *w) {
    return (uint64_t)w->rows * llmlab_dtype_row_bytes(w->dtype, w->cols);
}

/* Bytes one decode step reads at context length ctx_len. */
static double decode_bytes(const llmlab_model *m, double ctx_len) {
    const llmlab_config *c = &m->cfg;
    double b = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        b += (double)(mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
                      mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down));
    }
    b += (double)mat_bytes(&m->lm_head) + (double)llmlab_dtype_row_bytes(m->embed.dtype, c->dim);
    b += ctx_len * c->n_layers * 2.0 * c->n_kv_heads * c->head_dim * 4.0;
    return b;
}

static double matmul_params(const llmlab_model *m) {
    const llmlab_config *c = &m->cfg;
    double per_layer = (double)c->dim * c->head_dim * (2.0 * c->n_heads + 2.0 * c->n_kv_heads) +
                       3.0 * c->dim * c->ffn_dim;
    return per_layer * c->n_layers + (double)c->vocab_size * c->dim;
}

typedef struct {
    double bw, peak, prefill_tps, decode_tps;
} bench_rep;

static llmlab_status run_rep(llmlab_ctx *ctx, const bench_args *a, int rep, bench_rep *r,
                             llmlab_err *err) {
    const llmlab_model *m = llmlab_ctx_model(ctx);
    int32_t *prompt = malloc((size_t)a->n_prompt * sizeof *prompt);
    int32_t *out = malloc((size_t)a->n_gen * sizeof *out);
    if (!prompt || !out) {
        free(prompt);
        free(out);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "bench: out of memory");
    }
    llmlab_rng rng;
    llmlab_rng_seed(&rng, 1234, (uint64_t)rep);
    for (int i = 0; i < a->n_prompt; i++) prompt[i] = (int32_t)(llmlab_rng_next(&rng) % (uint64_t)m->cfg.vocab_size);
    r->bw = llmlab_cpu_read_bandwidth(llmlab_ctx_pool(ctx), (size_t)512 << 20, 3);
    r->peak = llmlab_bench_peak_flops(llmlab_ctx_pool(ctx));
    llmlab_gen_opts go = {.max_new = a->n_gen, .samp = LLMLAB_SAMPLING_GREEDY};
    llmlab_gen_stats gs = {0};
    int n_out = 0;
    llmlab_status st = llmlab_generate(ctx, 0, prompt, a->n_prompt, &go, out, &n_out, &gs, err);
    llmlab_kv_free_seq(llmlab_ctx_kv(ctx), 0);
    if (st == LLMLAB_OK) {
        r->prefill_tps = gs.n_prompt / gs.prefill_s;
        r->decode_tps = (gs.n_new - 1) / gs.decode_s;
    }
    free(prompt);
    free(out);
    return st;
}

static int write_h5(const char *path, const bench_args *a, const llmlab_model *m, int threads,
                    const bench_rep *reps, double bytes_tok) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t g = H5Gcreate2(f, "/bench", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0;
    double cols[4][1000];
    const char *names[4] = {"read_bandwidth_Bps", "peak_flops", "prefill_tok_per_s", "decode_tok_per_s"};
    for (int i = 0; i < a->reps; i++) {
        cols[0][i] = reps[i].bw;
        cols[1][i] = reps[i].peak;
        cols[2][i] = reps[i].prefill_tps;
        cols[3][i] = reps[i].decode_tps;
    }
    hsize_t dims[1] = {(hsize_t)a->reps};
    for (int c = 0; c < 4 && !rc; c++) rc |= H5LTmake_dataset_double(g, names[c], 1, dims, cols[c]) < 0;
    int ints[3] = {threads, a->n_prompt, a->n_gen};
    rc |= H5LTset_attribute_string(f, "/bench", "model_path", m->path) < 0;
    rc |= H5LTset_attribute_string(f, "/bench", "model_hash", m->hash) < 0;
    rc |= H5LTset_attribute_string(f, "/bench", "llmlab_commit", LLMLAB_GIT_COMMIT) < 0;
    rc |= H5LTset_attribute_string(f, "/bench", "cpu_kernels", llmlab_cpu_simd_name()) < 0;
    rc |= H5LTset_attribute_int(f, "/bench", "threads", &ints[0], 1) < 0;
    rc |= H5LTset_attribute_int(f, "/bench", "prompt_tokens", &ints[1], 1) < 0;
    rc |= H5LTset_attribute_int(f, "/bench", "decode_tokens", &ints[2], 1) < 0;
    rc |= H5LTset_attribute_double(f, "/bench", "decode_bytes_per_token", &bytes_tok, 1) < 0;
    if (g >= 0) H5Gclose(g);
    rc |= H5Fclose(f) < 0;
    return rc ? -1 : 0;
}

int llmlab_cmd_bench(int argc, char **argv) {
    bench_args a;
    int rc = parse_bench_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_ctx *ctx = NULL;
    bench_rep reps[1000];
    rc = 1;
    if (llmlab_model_load(&m, a.model_dir, &err)) goto fail;
    llmlab_ctx_opts co = {.n_threads = a.threads, .max_seqs = 1,
                          .kv_tokens = a.n_prompt + a.n_gen + 16,
                          .max_batch = a.n_prompt < 512 ? a.n_prompt : 512};
    if (llmlab_ctx_create(&ctx, m, &co, &err)) goto fail;
    int threads = llmlab_threadpool_size(llmlab_ctx_pool(ctx));
    fprintf(stderr, "bench: %s, %d threads, prompt %d, decode %d, %d reps (kernels %s)\n", a.model_dir,
            threads, a.n_prompt, a.n_gen, a.reps, llmlab_cpu_simd_name());
    for (int r = 0; r < a.reps; r++) {
        if (run_rep(ctx, &a, r, &reps[r], &err)) goto fail;
        fprintf(stderr, "  rep %d: bandwidth %.1f GB/s, peak %.0f GFLOP/s, prefill %.1f tok/s, decode %.2f tok/s\n",
                r, reps[r].bw / 1e9, reps[r].peak / 1e9, reps[r].prefill_tps, reps[r].decode_tps);
    }
    double v[4][1000];
    for (int r = 0; r < a.reps; r++) {
        v[0][r] = reps[r].bw; v[1][r] = reps[r].peak;
        v[2][r] = reps[r].prefill_tps; v[3][r] = reps[r].decode_tps;
    }
    double bw = median(v[0], a.reps), peak = median(v[1], a.reps);
    double pp = median(v[2], a.reps), tg = median(v[3], a.reps);
    double bytes_tok = decode_bytes(m, a.n_prompt + a.n_gen / 2.0);
    double flops_tok = 2.0 * matmul_params(m);
    printf("model            %s (%s, %.2f GB of weights)\n", a.model_dir,
           llmlab_dtype_name(m->layers[0].wq.dtype), (double)m->weight_bytes / 1e9);
    printf("threads          %d\n", threads);
    printf("read bandwidth   %.1f GB/s (median)\n", bw / 1e9);
    printf("peak f32 FMA     %.0f GFLOP/s (median)\n", peak / 1e9);
    printf("prefill          %.1f tok/s  (%.0f GFLOP/s, %.0f%% of peak)\n", pp, pp * flops_tok / 1e9,
           peak > 0 ? 100.0 * pp * flops_tok / peak : 0.0);
    printf("decode           %.2f tok/s  (%.3f GB/token, %.1f GB/s, %.0f%% of read bandwidth)\n", tg,
           bytes_tok / 1e9, tg * bytes_tok / 1e9, 100.0 * tg * bytes_tok / bw);
    if (a.out && write_h5(a.out, &a, m, threads, reps, bytes_tok)) {
        llmlab_err_set(&err, LLMLAB_EIO, "cannot write %s", a.out);
        goto fail;
    }
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab bench: %s\n", err.msg);
end:
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    return rc;
}
