/* cmd_train_medusa.c - `llmlab train-medusa`: Medusa heads for a frozen model,
 * trained on the model's own continuations of random prompts (core/medusa_train.h).
 *
 * stdout: the before/after table and the file written; progress on stderr with
 * --verbose.  Usage errors exit 2, runtime errors 1. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/dtype.h"
#include "core/medusa_train.h"

static void train_medusa_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab train-medusa -m MODEL_DIR --out FILE [options]\n"
            "Trains Medusa heads (one ResBlock + vocabulary projection each) on a frozen model and\n"
            "writes them in the Medusa project's medusa_lm_head.safetensors layout, for the medusa\n"
            "decoding plugin (heads=FILE).  The data is the model's own continuations of random\n"
            "prompts (self-distillation); head k learns the token k+2 positions ahead.  CPU only\n"
            "(no CUDA training path).\n"
            "  -m DIR          model directory\n"
            "  --out FILE      output .safetensors (written atomically)\n"
            "  --heads K       heads to train (default 4; the default tree needs 4)\n"
            "  --samples N     generated texts (default 64; the last fifth is held out)\n"
            "  --len L         tokens generated per text (default 64)\n"
            "  --prompt-len P  random prompt tokens per text (default 8)\n"
            "  --steps S       Adam steps per head (default 300)\n"
            "  --batch B       positions per step (default 64)\n"
            "  --lr LR         learning rate (default 0.001)\n"
            "  --temp T        generation temperature, 0 = greedy (default 0)\n"
            "  --dtype T       f32 | f16 | bf16 of the file (default: the model's)\n"
            "  --seed X        prompts, sampling and batches (default 0)\n"
            "  --threads T     worker threads (default: all cores)\n"
            "  --verbose       progress on stderr\n");
}

typedef struct {
    const char *model, *out;
    const char *dtype;
    llmlab_medusa_train_opts o;
} tm_args;

/* One option; returns 0, 1 for --help, 2 on a usage error. */
static int parse_one(tm_args *a, int argc, char **argv, int *i) {
    const char *C = "train-medusa", *o = argv[*i], *v;
    llmlab_medusa_train_opts *t = &a->o;
#define VAL() if (!(v = llmlab_arg_value(C, argc, argv, i))) return 2
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) return 1;
    if (!strcmp(o, "--verbose")) { t->verbose = 1; return 0; }
    VAL();
    if (!strcmp(o, "-m")) a->model = v;
    else if (!strcmp(o, "--out")) a->out = v;
    else if (!strcmp(o, "--dtype")) a->dtype = v;
    else if (!strcmp(o, "--heads")) return llmlab_arg_int(C, o, v, 1, LLMLAB_MEDUSA_TRAIN_MAX_HEADS, &t->heads) ? 2 : 0;
    else if (!strcmp(o, "--samples")) return llmlab_arg_int(C, o, v, 2, 1 << 20, &t->samples) ? 2 : 0;
    else if (!strcmp(o, "--len")) return llmlab_arg_int(C, o, v, 2, 1 << 20, &t->len) ? 2 : 0;
    else if (!strcmp(o, "--prompt-len")) return llmlab_arg_int(C, o, v, 1, 1 << 20, &t->prompt_len) ? 2 : 0;
    else if (!strcmp(o, "--steps")) return llmlab_arg_int(C, o, v, 0, 1 << 30, &t->steps) ? 2 : 0;
    else if (!strcmp(o, "--batch")) return llmlab_arg_int(C, o, v, 1, 1 << 16, &t->batch) ? 2 : 0;
    else if (!strcmp(o, "--threads")) return llmlab_arg_int(C, o, v, 1, 4096, &t->threads) ? 2 : 0;
    else if (!strcmp(o, "--lr")) return llmlab_arg_float(C, o, v, 1e-9, 10, &t->lr) ? 2 : 0;
    else if (!strcmp(o, "--temp")) return llmlab_arg_float(C, o, v, 0, 100, &t->temperature) ? 2 : 0;
    else if (!strcmp(o, "--seed")) return llmlab_arg_u64(C, o, v, &t->seed) ? 2 : 0;
    else {
        fprintf(stderr, "llmlab train-medusa: unknown option '%s' (see --help)\n", o);
        return 2;
    }
#undef VAL
    return 0;
}

static int parse_args(tm_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    llmlab_medusa_train_defaults(&a->o);
    for (int i = 1; i < argc; i++) {
        int rc = parse_one(a, argc, argv, &i);
        if (rc) return rc;
    }
    if (!a->model || !a->out) {
        fprintf(stderr, "llmlab train-medusa: need -m MODEL_DIR and --out FILE\n");
        train_medusa_usage(stderr);
        return 2;
    }
    return 0;
}

static void print_report(const llmlab_medusa_train_report *r) {
    printf("positions: %d train, %d held out; data %.1f s, training %.1f s\n", r->n_train, r->n_heldout,
           r->seconds_data, r->seconds_train);
    printf("head  target  loss before  loss after  top-1 before  top-1 after  top-5 after\n");
    for (int k = 0; k < r->heads; k++)
        printf("%4d  t+%-4d  %11.4f  %10.4f  %12.3f  %11.3f  %11.3f\n", k, k + 2, r->loss_before[k],
               r->loss_after[k], r->acc_before[k], r->acc_after[k], r->top5_after[k]);
}

int llmlab_cmd_train_medusa(int argc, char **argv) {
    tm_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc == 1) {
        train_medusa_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    llmlab_dtype dt = LLMLAB_DTYPE_F32;
    if (a.dtype && llmlab_dtype_parse(a.dtype, &dt)) {
        fprintf(stderr, "llmlab train-medusa: --dtype: '%s' is not f32, f16 or bf16\n", a.dtype);
        return 2;
    }
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_medusa_heads heads = {0};
    llmlab_medusa_train_report rep;
    rc = 1;
    if (llmlab_model_load(&m, a.model, &err)) goto fail;
    if (!a.dtype) dt = m->lm_head.dtype;
    if (llmlab_medusa_train(m, &a.o, &heads, &rep, &err)) {
        rc = err.code == LLMLAB_EINVAL ? 2 : 1;
        goto fail;
    }
    print_report(&rep);
    if (llmlab_medusa_heads_write(&heads, dt, a.out, &err)) goto fail;
    printf("wrote %s (%d heads, %s)\n", a.out, heads.heads, llmlab_dtype_name(dt));
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab train-medusa: %s\n", err.msg);
end:
    llmlab_medusa_heads_free(&heads);
    llmlab_model_free(m);
    return rc;
}
