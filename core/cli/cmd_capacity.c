/* cmd_capacity.c - `llmlab capacity`: the largest Poisson (or gamma) request rate
 * at which a target share of requests meets the SLOs, on the simulator (a
 * profile or a hardware roofline) or on the real engine (core/capacity.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/capacity.h"
#include "core/error.h"

static void capacity_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab capacity (--profile P.json | --hardware NAME -m MODEL_DIR | --real -m MODEL_DIR)\n"
            "         [--sched NAME] [--param KEY=VALUE]... [--kv-tokens N] [--token-budget N] [--max-seqs N]\n"
            "         [-n N] [--seed S] [--burstiness B] [--prompt DIST] [--output DIST]\n"
            "         [--ttft S] [--tpot S] [--e2e S] [--target F] [--lo R] [--hi R] [--tol T] [--threads N]\n"
            "  executor: --profile (fitted cost model, `llmlab profile`), --hardware h200|h100|a100|l40s|\n"
            "            cpu-measured with the model's shape from -m (config.json), or --real: the CPU engine\n"
            "  workload: N requests (default 500) with Poisson arrivals (gamma with --burstiness B),\n"
            "            lengths DIST = fixed:N | uniform:A:B | lognormal:MEAN:SIGMA | zipf:S:MAX\n"
            "            (defaults prompt fixed:128, output fixed:128), fixed seed across rates\n"
            "  SLOs in seconds (at least one); --target: share of requests meeting all of them (0.9)\n"
            "  --lo R first rate tried (1), --hi R a rate known to fail (found by doubling), --tol 0.02\n");
}

static int parse_dist(const char *s, llmlab_len_dist *d) {
    char kind[16] = "";
    double a = 0, b = 0;
    int n = sscanf(s, "%15[a-z]:%lf:%lf", kind, &a, &b);
    memset(d, 0, sizeof *d);
    d->min = 1;
    if (n >= 2 && !strcmp(kind, "fixed")) d->kind = LLMLAB_LEN_FIXED;
    else if (n == 3 && !strcmp(kind, "uniform")) d->kind = LLMLAB_LEN_UNIFORM;
    else if (n == 3 && !strcmp(kind, "lognormal")) d->kind = LLMLAB_LEN_LOGNORMAL;
    else if (n == 3 && !strcmp(kind, "zipf")) d->kind = LLMLAB_LEN_ZIPF;
    else return -1;
    d->a = a;
    d->b = b;
    return 0;
}

typedef struct {
    const char *profile, *hardware, *model_dir, *sched;
    int real, kv_tokens, token_budget, max_seqs, threads;
    const char *params[32];
    int n_params;
    llmlab_workload_spec spec;
    llmlab_serve_opts serve;
    llmlab_capacity_opts o;
} cap_args;

static int parse_args(int argc, char **argv, cap_args *a) {
    const char *C = "capacity";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        float f;
#define VAL() if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2
#define NUM(dst, lo, hi) do { VAL(); if (llmlab_arg_float(C, o, v, lo, hi, &f)) return 2; dst = f; } while (0)
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { capacity_usage(stdout); return 1; }
        else if (!strcmp(o, "--profile")) { VAL(); a->profile = v; }
        else if (!strcmp(o, "--hardware")) { VAL(); a->hardware = v; }
        else if (!strcmp(o, "-m")) { VAL(); a->model_dir = v; }
        else if (!strcmp(o, "--real")) a->real = 1;
        else if (!strcmp(o, "--sched")) { VAL(); a->sched = v; }
        else if (!strcmp(o, "--param")) { VAL(); if (a->n_params == 32 || !strchr(v, '=')) { fprintf(stderr, "llmlab capacity: --param KEY=VALUE (at most 32)\n"); return 2; } a->params[a->n_params++] = v; }
        else if (!strcmp(o, "--kv-tokens")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 1 << 30, &a->kv_tokens)) return 2; }
        else if (!strcmp(o, "--token-budget")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 1 << 20, &a->token_budget)) return 2; }
        else if (!strcmp(o, "--max-seqs")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 1 << 20, &a->max_seqs)) return 2; }
        else if (!strcmp(o, "--threads")) { VAL(); if (llmlab_arg_int(C, o, v, 0, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "-n")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 10000000, &a->spec.n)) return 2; }
        else if (!strcmp(o, "--seed")) { VAL(); if (llmlab_arg_u64(C, o, v, &a->spec.seed)) return 2; }
        else if (!strcmp(o, "--burstiness")) { NUM(a->spec.burstiness, 1e-3, 1e3); a->spec.arrival = LLMLAB_ARRIVAL_GAMMA; }
        else if (!strcmp(o, "--prompt") || !strcmp(o, "--output")) {
            VAL();
            if (parse_dist(v, o[2] == 'p' ? &a->spec.prompt : &a->spec.output)) {
                fprintf(stderr, "llmlab capacity: bad length distribution for %s: '%s'\n", o, v);
                return 2;
            }
        }
        else if (!strcmp(o, "--ttft")) NUM(a->serve.slo_ttft_s, 1e-9, 1e9);
        else if (!strcmp(o, "--tpot")) NUM(a->serve.slo_tpot_s, 1e-9, 1e9);
        else if (!strcmp(o, "--e2e")) NUM(a->serve.slo_e2e_s, 1e-9, 1e9);
        else if (!strcmp(o, "--target")) NUM(a->o.target, 1e-6, 1);
        else if (!strcmp(o, "--lo")) NUM(a->o.lo, 1e-9, 1e9);
        else if (!strcmp(o, "--hi")) NUM(a->o.hi, 1e-9, 1e9);
        else if (!strcmp(o, "--tol")) NUM(a->o.rel_tol, 1e-6, 0.5);
        else { fprintf(stderr, "llmlab capacity: unknown option '%s'\n", o); capacity_usage(stderr); return 2; }
#undef NUM
#undef VAL
    }
    int executors = (a->profile != NULL) + (a->hardware != NULL) + a->real;
    if (executors != 1 || ((a->hardware || a->real) && !a->model_dir)) {
        fprintf(stderr, "llmlab capacity: give one executor: --profile P.json, --hardware NAME -m DIR, or --real -m DIR\n");
        return 2;
    }
    if (a->serve.slo_ttft_s <= 0 && a->serve.slo_tpot_s <= 0 && a->serve.slo_e2e_s <= 0) {
        fprintf(stderr, "llmlab capacity: give at least one SLO (--ttft, --tpot, --e2e seconds)\n");
        return 2;
    }
    return 0;
}

static void print_result(const llmlab_capacity_result *r, double target) {
    printf("%10s %11s %12s %12s %12s\n", "rate/s", "attainment", "goodput/s", "ttft_p99_s", "tpot_p99_s");
    for (int k = 0; k < r->n_evals; k++)
        printf("%10.4g %11.3f %12.4g %12.4g %12.4g\n", r->rates[k], r->attainment[k], r->goodput[k], r->ttft_p99[k],
               r->tpot_p99[k]);
    if (r->rate == 0) printf("capacity: below %.4g requests/s (no rate tried met %.0f%% of SLOs)\n", r->fail_rate,
                             100 * target);
    else if (isinf(r->fail_rate)) printf("capacity: above %.4g requests/s (every rate tried passed)\n", r->rate);
    else printf("capacity: %.4g requests/s (%.4g fails) at %.0f%% SLO attainment\n", r->rate, r->fail_rate,
                100 * target);
}

int llmlab_cmd_capacity(int argc, char **argv) {
    cap_args a = {0};
    llmlab_workload_spec_init(&a.spec);
    a.spec.n = 500;
    a.spec.arrival = LLMLAB_ARRIVAL_POISSON;
    a.spec.prompt = (llmlab_len_dist){LLMLAB_LEN_FIXED, 128, 0, NULL, 1, 0};
    a.spec.output = (llmlab_len_dist){LLMLAB_LEN_FIXED, 128, 0, NULL, 1, 0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_registry *reg = NULL;
    llmlab_model *m = NULL;
    llmlab_sim *sim = NULL;
    llmlab_engine *e = NULL;
    llmlab_param_value pv[32];
    for (int i = 0; i < a.n_params; i++) {
        char key[128];
        const char *eq = strchr(a.params[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - a.params[i]), a.params[i]);
        llmlab_param_value_from_text(&pv[i], strdup(key), eq + 1);
    }
    llmlab_plugin_choice sched = {a.sched, pv, a.n_params};
    llmlab_capacity_ctx ctx = {.spec = a.spec, .serve = a.serve};
    rc = 1;
    if (llmlab_registry_create(&reg, &err)) goto done;
    if (a.model_dir && llmlab_model_load(&m, a.model_dir, &err)) goto done;
    if (a.real) {
        llmlab_engine_opts eo = {.registry = reg, .sched = sched, .n_threads = a.threads, .kv_tokens = a.kv_tokens,
                                 .max_seqs = a.max_seqs, .token_budget = a.token_budget};
        if (llmlab_engine_create(&e, m, &eo, &err)) goto done;
        ctx.engine = e;
        ctx.spec.vocab = m->cfg.vocab_size;
    } else {
        llmlab_sim_opts so = {.registry = reg, .sched = sched, .kv_tokens = a.kv_tokens ? a.kv_tokens : 65536,
                              .max_seqs = a.max_seqs, .token_budget = a.token_budget, .record_tokens = 0};
        if (a.profile && llmlab_cost_load(&so.cost, a.profile, &err)) goto done;
        if (a.hardware) {
            llmlab_hw_spec hw;
            llmlab_model_shape sh;
            llmlab_model_shape_of(&sh, &m->cfg, 2, 2);
            if (llmlab_hw_lookup(a.hardware, a.threads, &hw, &err) || llmlab_cost_roofline(&so.cost, &sh, &hw, &err))
                goto done;
        }
        if (llmlab_sim_create(&sim, &so, &err)) goto done;
        ctx.sim = sim;
    }
    llmlab_capacity_result r;
    if (llmlab_capacity_search(&a.o, llmlab_capacity_eval, &ctx, &r, &err)) goto done;
    print_result(&r, a.o.target > 0 ? a.o.target : 0.9);
    rc = 0;
done:
    if (rc) fprintf(stderr, "llmlab capacity: %s\n", err.msg);
    for (int i = 0; i < a.n_params; i++) free((char *)pv[i].key);
    llmlab_sim_free(sim);
    llmlab_engine_free(e);
    llmlab_model_free(m);
    llmlab_registry_free(reg);
    return rc;
}
