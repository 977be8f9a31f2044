/* test_bench_forward.c - `llmlab bench-forward` on the CPU: a short run succeeds,
 * writes the tables and attributes it promises with figures that follow from
 * the model's shape (bytes per step, prefill FLOP), and bad options fail with a
 * message naming the option. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/results.h"
#include "core/synth_model.h"
#include "util/fsutil.h"
#include "util/proc.h"

static char *dir;

static void setup(void) {
    dir = fsu_mkdtemp();
    cr_assert_not_null(dir);
}

static void teardown(void) {
    fsu_rmtree(dir);
    free(dir);
}

TestSuite(bench_forward, .init = setup, .fini = teardown);

static char out[16384], errout[16384];

static int run(const char *args) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s bench-forward %s", LLMLAB_BIN, args);
    return proc_run(cmd, out, sizeof out, errout, sizeof errout);
}

static double *column(const char *h5, const char *run_name, const char *table, const char *col, size_t want) {
    double *v = NULL;
    size_t n = 0;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_column_double(h5, run_name, table, col, &v, &n, &e), LLMLAB_OK, "%s/%s: %s", table,
                 col, e.msg);
    cr_assert_eq(n, want, "%s/%s: %zu rows, want %zu", table, col, n, want);
    return v;
}

static void near(double got, double want, const char *what) {
    cr_assert(fabs(got - want) <= 1e-9 * fabs(want), "%s: %.17g, want %.17g", what, got, want);
}

/* What one decode step of B tokens reads for the tiny f32 preset (KV f32). */
static double tiny_step_bytes(const llmlab_model *m, int B, int ctx, int steps) {
    const llmlab_config *c = &m->cfg;
    double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double layer = (2 * q * c->dim + 2 * kv * c->dim + 3.0 * c->ffn_dim * c->dim) * 4;
    double weights = c->n_layers * layer + (double)c->vocab_size * c->dim * 4 + B * c->dim * 4.0;
    double slot = c->n_layers * 2 * kv * 4;
    return weights + B * (ctx + 1 + (steps + 1) / 2.0) * slot;
}

static double tiny_prefill_flops(const llmlab_config *c, int L) {
    double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double per_tok = c->n_layers * (2 * q * c->dim + 2 * kv * c->dim + 3.0 * c->ffn_dim * c->dim);
    return 2 * per_tok * L + 2.0 * c->vocab_size * c->dim + 2.0 * c->n_layers * q * L * (L + 1.0);
}

Test(bench_forward, cpu_smoke_run_writes_its_tables) {
    char args[512], *h5 = fsu_join(dir, "x.h5");
    snprintf(args, sizeof args,
             "--backend cpu --preset tiny --batch 1,2 --ctx 16 --prefill 16 --steps 2 --reps 1 --threads 2 "
             "--copy-mib 32 --out %s", h5);
    cr_assert_eq(run(args), 0, "bench-forward failed: %s", errout);
    cr_assert(strstr(out, "decode") && strstr(out, "prefill") && strstr(out, "bandwidth"), "table: %s", out);

    char **runs = NULL;
    size_t nr = 0;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_list_runs(h5, &runs, &nr, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(nr, 1);
    cr_assert(!strncmp(runs[0], "bench_forward_", 14), "run name %s", runs[0]);

    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    o.seed = 1;
    llmlab_model *m = NULL;
    cr_assert_eq(llmlab_synth_model(&o, 1, &m, &e), LLMLAB_OK, "%s", e.msg);
    char *s = NULL;
    cr_assert_eq(llmlab_results_attr_str(h5, runs[0], "model_hash", &s, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(s, m->hash, "the run records the hash of the model it measured");
    free(s);
    cr_assert_eq(llmlab_results_attr_str(h5, runs[0], "backend", &s, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(s, "cpu");
    free(s);
    cr_assert_eq(llmlab_results_attr_str(h5, runs[0], "llmlab_commit", &s, &e), LLMLAB_OK, "%s", e.msg);
    free(s);

    double *bw = column(h5, runs[0], "ceilings", "bandwidth_Bps", 1);
    cr_assert(bw[0] > 1e6 && isfinite(bw[0]), "bandwidth %g", bw[0]);
    double *batch = column(h5, runs[0], "decode_summary", "batch", 2);
    double *bytes = column(h5, runs[0], "decode_summary", "bytes_per_step", 2);
    double *tps = column(h5, runs[0], "decode_summary", "tok_per_s", 2);
    double *frac = column(h5, runs[0], "decode_summary", "frac_bandwidth", 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(batch[i], i + 1);
        near(bytes[i], tiny_step_bytes(m, i + 1, 16, 2), "bytes per step");
        cr_assert(tps[i] > 0 && isfinite(tps[i]) && frac[i] > 0 && isfinite(frac[i]), "tok/s %g, frac %g", tps[i],
                  frac[i]);
    }
    double *flops = column(h5, runs[0], "prefill_summary", "flops", 1);
    near(flops[0], tiny_prefill_flops(&m->cfg, 16), "prefill FLOP");
    double *rows = column(h5, runs[0], "decode", "step_s", 2);
    double *pre = column(h5, runs[0], "prefill", "seconds", 1);
    cr_assert(rows[0] > 0 && pre[0] > 0);
    free(bw), free(batch), free(bytes), free(tps), free(frac), free(flops), free(rows), free(pre);
    llmlab_results_free_strs(runs, nr);
    llmlab_model_free(m);
    free(h5);
}

static void bad(const char *args, int rc, const char *needle) {
    cr_assert_eq(run(args), rc, "'%s' gave stderr: %s", args, errout);
    cr_assert(strstr(errout, needle), "'%s': message '%s' should mention '%s'", args, errout, needle);
}

Test(bench_forward, bad_options_fail_with_a_message) {
    bad("--backend gpu", 2, "--backend");
    bad("--batch 0", 2, "--batch");
    bad("--batch 1,x", 2, "--batch");
    bad("--prefill ''", 2, "--prefill");
    bad("--dtype q8_0", 2, "--dtype");
    bad("--kv int8", 2, "--kv");
    bad("--steps", 2, "--steps");
    bad("--reps 0", 2, "--reps");
    bad("--preset tiny -m somewhere", 2, "not both");
    bad("-m somewhere --dtype bf16", 2, "--dtype");
    bad("--frobnicate 3", 2, "--frobnicate");
    bad("--preset huge --reps 1", 1, "--preset huge");
    bad("--ctx 4000 --batch 1 --prefill 8 --reps 1", 1, "--ctx 4000");
    bad("--prefill 5000 --batch 1 --ctx 8 --reps 1", 1, "--prefill 5000");
}

/* Without a GPU (or without CUDA in the build) --backend cuda is a clear error;
 * with one, the short run succeeds. */
Test(bench_forward, cuda_backend_runs_or_says_why_not) {
    int rc = run("--backend cuda --preset tiny --batch 1 --ctx 8 --prefill 8 --steps 1 --reps 1 --copy-mib 16");
    if (rc != 0) {
        cr_assert_eq(rc, 1, "stderr: %s", errout);
        cr_assert(strstr(errout, "CUDA"), "the error should name CUDA: %s", errout);
    }
}
