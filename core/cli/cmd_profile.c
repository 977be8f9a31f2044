/* cmd_profile.c - `llmlab profile`: time a grid of iteration compositions on this
 * machine and save the fitted cost model for the simulator (core/profile.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/error.h"
#include "core/profile.h"

static void profile_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab profile MODEL_DIR --out PROFILE.json [--threads N] [--token-budget N]\n"
            "         [--max-seqs N] [--reps N] [--fastest] [--quick] [--no-engine] [--quiet]\n"
            "  Times forwards of decode batches, prefill chunks and mixes on the CPU backend,\n"
            "  fits t = c0 + c_pf*prefill_tokens + c_dec*decode_seqs + c_kv*decode_kv\n"
            "  + c_attn*prefill_attn (docs/serving.md) and writes it with the model shape and\n"
            "  the machine.  A short engine run adds the scheduling/sampling overhead.\n"
            "  --token-budget N  largest batch (default 512)   --max-seqs N  largest decode batch (64)\n"
            "  --reps N          timed repetitions per point, the median kept (5)\n"
            "  --fastest         keep the fastest repetition instead (the machine's own speed)\n"
            "  --quick           a small grid (a first look, tests)\n"
            "  --no-engine       forwards only (no engine-overhead run)\n");
}

int llmlab_cmd_profile(int argc, char **argv) {
    const char *C = "profile", *dir = NULL, *out = NULL;
    llmlab_profile_opts o = {.verbose = 1};
    int engine = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { profile_usage(stdout); return 0; }
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) { VAL(); out = v; }
        else if (!strcmp(a, "--threads")) { VAL(); if (llmlab_arg_int(C, a, v, 0, 4096, &o.n_threads)) return 2; }
        else if (!strcmp(a, "--token-budget")) { VAL(); if (llmlab_arg_int(C, a, v, 1, 1 << 20, &o.token_budget)) return 2; }
        else if (!strcmp(a, "--max-seqs")) { VAL(); if (llmlab_arg_int(C, a, v, 1, 65536, &o.max_seqs)) return 2; }
        else if (!strcmp(a, "--reps")) { VAL(); if (llmlab_arg_int(C, a, v, 1, 15, &o.reps)) return 2; }
        else if (!strcmp(a, "--quick")) o.quick = 1;
        else if (!strcmp(a, "--fastest")) o.fastest = 1;
        else if (!strcmp(a, "--no-engine")) engine = 0;
        else if (!strcmp(a, "--quiet")) o.verbose = 0;
        else if (a[0] == '-') { fprintf(stderr, "llmlab profile: unknown option '%s'\n", a); profile_usage(stderr); return 2; }
        else if (!dir) dir = a;
        else { fprintf(stderr, "llmlab profile: one model directory, got '%s' too\n", a); return 2; }
#undef VAL
    }
    if (!dir || !out) {
        profile_usage(stderr);
        return 2;
    }
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_registry *reg = NULL;
    llmlab_costmodel cm;
    llmlab_profile_samples s = {0};
    int rc = 1;
    if (llmlab_model_load(&m, dir, &err) || (engine && llmlab_registry_create(&reg, &err))) goto done;
    o.registry = reg;
    if (llmlab_profile(m, &o, &cm, &s, &err) || llmlab_cost_save(&cm, out, &err)) goto done;
    printf("profiled %d iterations on %s\n", s.n, cm.machine);
    printf("  c0              %10.4g s          (engine overhead %.3g s of it)\n", cm.coef[LLMLAB_COST_C0],
           s.overhead_c0);
    printf("  prefill token   %10.4g s\n", cm.coef[LLMLAB_COST_PF]);
    printf("  decode seq      %10.4g s          (engine overhead %.3g s of it)\n", cm.coef[LLMLAB_COST_DEC],
           s.overhead_dec);
    printf("  decode kv token %10.4g s\n", cm.coef[LLMLAB_COST_KV]);
    printf("  prefill pair    %10.4g s\n", cm.coef[LLMLAB_COST_ATTN]);
    printf("  fit: mean abs error %.1f%%, R^2 %.4f -> %s\n", 100 * cm.fit_mape, cm.fit_r2, out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "llmlab profile: %s\n", err.msg);
    llmlab_profile_samples_free(&s);
    llmlab_registry_free(reg);
    llmlab_model_free(m);
    return rc;
}
