/* cmd_ppl.c - `llmlab ppl`: perplexity of a text file under a model, through the
 * engine so an attention or quant plugin applies (docs/perplexity.md).
 *
 * stdout carries the figures; progress and errors go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/error.h"
#include "core/perplexity.h"
#include "core/run_record.h"

enum { PPL_MAX_VALUES = 16 };

/* A plugin choice from "name k=v k=v" (the text is split in place). */
typedef struct {
    char text[512];                            /* the option's value, split into name and values */
    llmlab_param_value values[PPL_MAX_VALUES]; /* k=v pairs, pointing into text */
    llmlab_plugin_choice choice;               /* name + values for the engine */
} plugin_arg;

typedef struct {
    const char *model_dir, *file, *out, *name;
    int ctx, stride, bos, threads, batch;
    plugin_arg attention, quant, kv_quant;
} ppl_args;

static void ppl_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab ppl -m MODEL_DIR -f TEXT_FILE [--ctx N] [--stride S] [--no-bos]\n"
            "         [--attention 'NAME k=v ...'] [--quant 'NAME k=v ...'] [--kv-quant 'NAME k=v ...']\n"
            "         [--threads N] [--batch B]\n"
            "         [-o OUT.h5 [--name RUN]]\n"
            "  -f FILE       the text (bytes, encoded with the model's tokenizer)\n"
            "  --ctx N       tokens per window (default: min(max_position_embeddings, %d))\n"
            "  --stride S    tokens each window moves by, 1..ctx (default ctx: disjoint windows); a\n"
            "                window scores only the tokens no earlier window scored\n"
            "  --no-bos      do not put the tokenizer's BOS in front of the text\n"
            "  --attention P an attention plugin with its values, e.g. 'window window=256'\n"
            "  --quant P     a quant plugin with its values\n"
            "  --kv-quant P  a KV-cache format, e.g. 'kv_int8' or 'kv_int4 residual=64' (default f32)\n"
            "  --batch B     windows scored together (default 16)\n"
            "  -o FILE       add the run (settings, per-token NLLs) to an HDF5 results file\n"
            "  --name RUN    the run's name in that file (default \"ppl\")\n",
            LLMLAB_PPL_MAX_DEFAULT_CTX);
}

/* Splits "name k=v k=v" into a plugin choice; -1 on a bad value. */
static int parse_plugin(plugin_arg *p, const char *text) {
    if (strlen(text) >= sizeof p->text) return -1;
    snprintf(p->text, sizeof p->text, "%s", text);
    char *save = NULL, *tok = strtok_r(p->text, " ", &save);
    if (!tok) return -1;
    p->choice = (llmlab_plugin_choice){tok, p->values, 0};
    while ((tok = strtok_r(NULL, " ", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || p->choice.n_values == PPL_MAX_VALUES) return -1;
        *eq = 0;
        llmlab_param_value_from_text(&p->values[p->choice.n_values++], tok, eq + 1);
    }
    return 0;
}

static int parse_args(int argc, char **argv, ppl_args *a) {
    const char *C = "ppl";
    *a = (ppl_args){.bos = 1, .batch = 16, .name = "ppl"};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
#define VAL() if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { ppl_usage(stdout); return 1; }
        else if (!strcmp(o, "-m")) { VAL(); a->model_dir = v; }
        else if (!strcmp(o, "-f")) { VAL(); a->file = v; }
        else if (!strcmp(o, "-o")) { VAL(); a->out = v; }
        else if (!strcmp(o, "--name")) { VAL(); a->name = v; }
        else if (!strcmp(o, "--ctx")) { VAL(); if (llmlab_arg_int(C, o, v, 2, 1 << 24, &a->ctx)) return 2; }
        else if (!strcmp(o, "--stride")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 1 << 24, &a->stride)) return 2; }
        else if (!strcmp(o, "--threads")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "--batch")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 1024, &a->batch)) return 2; }
        else if (!strcmp(o, "--no-bos")) a->bos = 0;
        else if (!strcmp(o, "--attention") || !strcmp(o, "--quant") || !strcmp(o, "--kv-quant")) {
            VAL();
            plugin_arg *p = !strcmp(o, "--quant") ? &a->quant : !strcmp(o, "--kv-quant") ? &a->kv_quant : &a->attention;
            if (parse_plugin(p, v)) {
                fprintf(stderr, "llmlab ppl: bad %s '%s' (NAME key=value ..., at most %d values)\n", o, v,
                        PPL_MAX_VALUES);
                return 2;
            }
        }
        else { fprintf(stderr, "llmlab ppl: unknown option '%s'\n", o); ppl_usage(stderr); return 2; }
#undef VAL
    }
    if (!a->model_dir || !a->file) {
        fprintf(stderr, "llmlab ppl: need -m MODEL_DIR and -f TEXT_FILE\n");
        ppl_usage(stderr);
        return 2;
    }
    if (a->ctx && a->stride > a->ctx) {
        fprintf(stderr, "llmlab ppl: --stride %d must not exceed --ctx %d\n", a->stride, a->ctx);
        return 2;
    }
    return 0;
}

/* The whole file, NUL-terminated (malloc'd). */
static char *read_file(const char *path, size_t *len, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        llmlab_err_set(err, LLMLAB_EIO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || fseek(f, 0, SEEK_SET) != 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        llmlab_err_set(err, LLMLAB_EIO, "cannot read %s", path);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static llmlab_status write_run(const ppl_args *a, const llmlab_engine *e, const llmlab_ppl_result *r,
                               const char *start, const char *end, llmlab_err *err) {
    llmlab_run *run = llmlab_run_create(a->name, err);
    if (!run) return err->code;
    llmlab_record_info info = {NULL, NULL, "cpu", 0, llmlab_engine_threads(e), 0, start, end};
    llmlab_status st = llmlab_record_run(run, e, r->run, &info, err);
    if (!st) st = llmlab_run_attr_str(run, "settings/ppl/text_file", a->file, err);
    if (!st) st = llmlab_ppl_record(run, r, a->bos, err);
    if (!st) st = llmlab_results_write(a->out, run, err);
    llmlab_run_free(run);
    return st;
}

static void print_result(const ppl_args *a, const llmlab_ppl_result *r, int bos_added) {
    printf("ppl: %.6f\n", r->ppl);
    printf("mean NLL: %.6f nats\n", r->mean_nll);
    printf("tokens scored: %d of %d (%s)\n", r->scored, r->n_tokens, bos_added ? "BOS in front" : "no BOS");
    printf("windows: %d (ctx %d, stride %d)\n", r->windows, r->ctx, r->stride);
    printf("tok/s: %.1f\n", r->tok_per_s);
    if (a->out) printf("run '%s' written to %s\n", a->name, a->out);
}

/* Engine options: the chosen plugins, `batch` windows in flight at once. */
static llmlab_engine_opts engine_opts(const ppl_args *a, const llmlab_registry *reg, int ctx) {
    llmlab_engine_opts o = {.registry = reg, .n_threads = a->threads, .max_seqs = a->batch,
                            .kv_tokens = a->batch * (ctx + 16), .sched = {"continuous", NULL, 0}};
    if (a->attention.choice.name) o.attention = a->attention.choice;
    if (a->quant.choice.name) o.quant = a->quant.choice;
    if (a->kv_quant.choice.name) o.kv_quant = a->kv_quant.choice;
    return o;
}

int llmlab_cmd_ppl(int argc, char **argv) {
    ppl_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_registry *reg = NULL;
    llmlab_engine *e = NULL;
    llmlab_ppl_result *r = NULL;
    int32_t *ids = NULL;
    int n = 0;
    size_t len = 0;
    char start[32], end[32];
    char *text = read_file(a.file, &len, &err);
    rc = 1;
    if (!text || llmlab_model_load(&m, a.model_dir, &err) || llmlab_registry_create(&reg, &err)) goto fail;
    if (llmlab_ppl_encode(m->tok, text, len, a.bos, &ids, &n, &err)) goto fail;
    llmlab_ppl_opts po = {a.ctx, a.stride};
    int ctx = a.ctx ? a.ctx : llmlab_ppl_default_ctx(m);
    llmlab_engine_opts eo = engine_opts(&a, reg, ctx);
    if (llmlab_engine_create(&e, m, &eo, &err)) goto fail;
    fprintf(stderr, "ppl: %s, %d tokens, ctx %d\n", a.file, n, ctx);
    llmlab_results_utc_now(start);
    if (llmlab_perplexity(e, ids, n, &po, &r, &err)) {
        rc = err.code == LLMLAB_EINVAL ? 2 : 1;
        goto report;
    }
    llmlab_results_utc_now(end);
    if (a.out && write_run(&a, e, r, start, end, &err)) goto fail;
    print_result(&a, r, a.bos && llmlab_tokenizer_bos(m->tok) >= 0);
    rc = 0;
    goto done;
fail:
    rc = 1;
report:
    fprintf(stderr, "llmlab ppl: %s\n", err.msg);
done:
    llmlab_ppl_result_free(r);
    llmlab_engine_free(e);
    llmlab_registry_free(reg);
    llmlab_model_free(m);
    free(ids);
    free(text);
    return rc;
}
