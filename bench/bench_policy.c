/* bench_policy.c - `llmlab bench-policy`: what an attention/KV policy costs per
 * decode step, against dense attention measured in the same repetition.
 *
 * Method (DEVELOPERS.md: shared, noisy machines): every repetition runs dense
 * first, then each policy, on the same batch of seeded random prompts; figures
 * are medians over repetitions, never one absolute time.  Per run:
 *   step_ms      median wall time of the decode steps (every sequence decoding)
 *   step_ratio   step_ms / dense step_ms of the same repetition: the whole effect
 *                (scoring in the kernel, eviction, and fewer keys to attend)
 *   policy_share policy seconds / decode step seconds: time outside the forward
 *                spent committing attention mass, evicting, in after_step and
 *                compacting (the "cost of the policy"; target < 5%)
 *   kv_bytes     resident KV bytes at the last step the whole batch decoded
 * Nothing here passes or fails on time. */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/rng.h"

enum { MAX_POLICIES = 8, MAX_VALUES = 8, MAX_REPS = 64 };

typedef struct {
    char text[256];                       /* "h2o heavy=32 recent=32" as given */
    char *name;
    llmlab_param_value values[MAX_VALUES];
    int n_values;
} policy_arg;

typedef struct {
    const char *model_dir, *out;
    int threads, batch, n_prompt, n_gen, reps;
    policy_arg pol[MAX_POLICIES + 1];     /* [0] = dense */
    int n_pol;
} policy_bench_args;

typedef struct {
    double step_ms, policy_share, kv_bytes;
} run_figures;

static void usage(FILE *f) {
    fprintf(f, "usage: llmlab bench-policy -m MODEL_DIR --policy 'NAME [key=value ...]' [--policy ...]\n"
               "                           [--batch N] [--prompt N] [--gen N] [--reps R] [--threads N]\n"
               "                           [--out FILE.h5]\n"
               "  --policy P   an attention plugin with its values, e.g. 'h2o heavy=64 recent=64'\n"
               "  --batch N    sequences decoding together (default 32)\n"
               "  --prompt N   prompt length (default 256)   --gen N  tokens generated (default 32)\n"
               "  --reps R     repetitions, dense and every policy interleaved (default 3)\n");
}

/* Splits "name k=v k=v" in place into a plugin choice. */
static int parse_policy(policy_arg *p, const char *text) {
    snprintf(p->text, sizeof p->text, "%s", text);
    char *save = NULL, *tok = strtok_r(p->text, " ", &save);
    if (!tok) return -1;
    p->name = tok;
    p->n_values = 0;
    while ((tok = strtok_r(NULL, " ", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq || p->n_values == MAX_VALUES) return -1;
        *eq = 0;
        llmlab_param_value_from_text(&p->values[p->n_values++], tok, eq + 1);
    }
    return 0;
}

static int parse_args(int argc, char **argv, policy_bench_args *a) {
    const char *C = "bench-policy";
    *a = (policy_bench_args){.batch = 32, .n_prompt = 256, .n_gen = 32, .reps = 3, .n_pol = 1};
    parse_policy(&a->pol[0], "dense");
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { usage(stdout); return 1; }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "-m")) a->model_dir = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--policy")) {
            if (a->n_pol > MAX_POLICIES || parse_policy(&a->pol[a->n_pol++], v)) {
                fprintf(stderr, "llmlab bench-policy: bad --policy '%s' (NAME key=value ..., at most %d)\n", v,
                        MAX_POLICIES);
                return 2;
            }
        }
        else if (!strcmp(o, "--threads")) { if (llmlab_arg_int(C, o, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "--batch")) { if (llmlab_arg_int(C, o, v, 1, 1024, &a->batch)) return 2; }
        else if (!strcmp(o, "--prompt")) { if (llmlab_arg_int(C, o, v, 1, 1 << 20, &a->n_prompt)) return 2; }
        else if (!strcmp(o, "--gen")) { if (llmlab_arg_int(C, o, v, 2, 1 << 20, &a->n_gen)) return 2; }
        else if (!strcmp(o, "--reps")) { if (llmlab_arg_int(C, o, v, 1, MAX_REPS, &a->reps)) return 2; }
        else { fprintf(stderr, "llmlab bench-policy: unknown option '%s'\n", o); usage(stderr); return 2; }
    }
    if (!a->model_dir || a->n_pol < 2) {
        fprintf(stderr, "llmlab bench-policy: need -m MODEL_DIR and at least one --policy\n");
        return 2;
    }
    return 0;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One run of the batch with one attention plugin. */
static llmlab_status run_policy(const llmlab_model *m, const llmlab_registry *reg, const policy_bench_args *a,
                                const policy_arg *p, const llmlab_request *reqs, run_figures *f, llmlab_err *err) {
    llmlab_engine_opts o = {.registry = reg, .n_threads = a->threads, .max_seqs = a->batch,
                            /* every prompt in one step, so the whole batch decodes together */
                            .token_budget = a->batch * a->n_prompt < 16384 ? a->batch * a->n_prompt : 16384,
                            .kv_tokens = a->batch * (a->n_prompt + a->n_gen + 32),
                            .attention = {p->name, p->values, p->n_values},
                            .sched = {"continuous", NULL, 0}};
    llmlab_engine *e = NULL;
    llmlab_run_result *r = NULL;
    llmlab_status st = llmlab_engine_create(&e, m, &o, err);
    if (!st) st = llmlab_engine_run(e, reqs, a->batch, &r, err);
    if (!st) {
        double *dt = malloc((size_t)(r->n_steps ? r->n_steps : 1) * sizeof *dt);
        int n = 0;
        for (int i = 0; dt && i < r->n_steps; i++)
            if (r->step_tokens[i] == a->batch && r->step_seqs[i] == a->batch) dt[n++] = r->step_dt_s[i];
        double all = 0;
        for (int i = 0; i < r->n_steps; i++) all += r->step_dt_s[i];
        f->step_ms = n ? 1e3 * median(dt, n) : 0;
        f->policy_share = all > 0 ? llmlab_engine_policy_seconds(e) / all : 0;
        f->kv_bytes = 0;
        for (int i = 0; i < r->n_steps; i++) /* the last step the whole batch decoded */
            if (r->step_tokens[i] == a->batch && r->step_seqs[i] == a->batch) f->kv_bytes = r->step_kv_bytes[i];
        free(dt);
    }
    llmlab_run_result_free(r);
    llmlab_engine_free(e);
    return st ? llmlab_err_prefix(err, "policy '%s'", p->name) : LLMLAB_OK;
}

static int write_h5(const char *path, const policy_bench_args *a, const llmlab_model *m,
                    run_figures f[][MAX_POLICIES + 1]) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return -1;
    int rc = 0;
    for (int p = 0; p < a->n_pol && !rc; p++) {
        char name[300];
        snprintf(name, sizeof name, "/policy_%d", p);
        hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) { rc = 1; break; }
        double cols[3][MAX_REPS];
        for (int r = 0; r < a->reps; r++) {
            cols[0][r] = f[r][p].step_ms;
            cols[1][r] = f[r][p].policy_share;
            cols[2][r] = f[r][p].kv_bytes;
        }
        hsize_t dims[1] = {(hsize_t)a->reps};
        rc |= H5LTmake_dataset_double(g, "decode_step_ms", 1, dims, cols[0]) < 0;
        rc |= H5LTmake_dataset_double(g, "policy_share", 1, dims, cols[1]) < 0;
        rc |= H5LTmake_dataset_double(g, "kv_bytes", 1, dims, cols[2]) < 0;
        rc |= H5LTset_attribute_string(file, name, "policy", a->pol[p].name) < 0;
        H5Gclose(g);
    }
    int ints[4] = {a->batch, a->n_prompt, a->n_gen, a->reps};
    rc |= H5LTset_attribute_string(file, "/", "model_hash", m->hash) < 0;
    rc |= H5LTset_attribute_string(file, "/", "llmlab_commit", LLMLAB_GIT_COMMIT) < 0;
    rc |= H5LTset_attribute_int(file, "/", "batch_prompt_gen_reps", ints, 4) < 0;
    rc |= H5Fclose(file) < 0;
    return rc ? -1 : 0;
}

int llmlab_cmd_bench_policy(int argc, char **argv) {
    policy_bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_registry *reg = NULL;
    llmlab_request reqs[1024];
    int32_t *prompts = NULL;
    static run_figures f[MAX_REPS][MAX_POLICIES + 1];
    rc = 1;
    if (llmlab_model_load(&m, a.model_dir, &err) || llmlab_registry_create(&reg, &err)) goto fail;
    if (!(prompts = malloc((size_t)a.batch * (size_t)a.n_prompt * sizeof *prompts))) {
        llmlab_err_set(&err, LLMLAB_ENOMEM, "out of memory");
        goto fail;
    }
    llmlab_rng rng;
    llmlab_rng_seed(&rng, 99, 0);
    for (int i = 0; i < a.batch * a.n_prompt; i++) prompts[i] = (int32_t)(llmlab_rng_next(&rng) % (uint64_t)m->cfg.vocab_size);
    for (int i = 0; i < a.batch; i++)
        reqs[i] = (llmlab_request){.id = i, .prompt = prompts + (size_t)i * a.n_prompt, .prompt_len = a.n_prompt,
                                   .max_new = a.n_gen};
    fprintf(stderr, "bench-policy: %s, batch %d, prompt %d, gen %d, %d reps\n", a.model_dir, a.batch, a.n_prompt,
            a.n_gen, a.reps);
    for (int r = 0; r < a.reps; r++)
        for (int p = 0; p < a.n_pol; p++) {
            if (run_policy(m, reg, &a, &a.pol[p], reqs, &f[r][p], &err)) goto fail;
            fprintf(stderr, "  rep %d %-8s step %.2f ms, policy share %.2f%%, decode KV %.1f MB\n", r, a.pol[p].name,
                    f[r][p].step_ms, 100 * f[r][p].policy_share, f[r][p].kv_bytes / 1e6);
        }
    printf("%-40s %12s %11s %13s %10s\n", "policy", "step ms", "vs dense", "policy share", "decode KV MB");
    for (int p = 0; p < a.n_pol; p++) {
        double ms[MAX_REPS], ratio[MAX_REPS], share[MAX_REPS], kv[MAX_REPS];
        char label[300] = "";
        snprintf(label, sizeof label, "%s", a.pol[p].name);
        for (int k = 0; k < a.pol[p].n_values; k++)
            snprintf(label + strlen(label), sizeof label - strlen(label), " %s=%s", a.pol[p].values[k].key,
                     a.pol[p].values[k].s);
        for (int r = 0; r < a.reps; r++) {
            ms[r] = f[r][p].step_ms;
            ratio[r] = f[r][0].step_ms > 0 ? f[r][p].step_ms / f[r][0].step_ms : 0;
            share[r] = f[r][p].policy_share;
            kv[r] = f[r][p].kv_bytes;
        }
        printf("%-40s %12.2f %10.3fx %12.2f%% %10.1f\n", label, median(ms, a.reps), median(ratio, a.reps),
               100 * median(share, a.reps), median(kv, a.reps) / 1e6);
    }
    if (a.out && write_h5(a.out, &a, m, f)) {
        llmlab_err_set(&err, LLMLAB_EIO, "cannot write %s", a.out);
        goto fail;
    }
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab bench-policy: %s\n", err.msg);
end:
    free(prompts);
    llmlab_registry_free(reg);
    llmlab_model_free(m);
    return rc;
}
