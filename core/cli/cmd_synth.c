/* cmd_synth.c - `llmlab synth`: write a seeded random-weight model directory.
 *
 *   llmlab synth OUT_DIR [--preset NAME] [--arch A] [--vocab N] ... [--shards N] [--medusa K] [--gguf TYPE]
 *
 * The preset is applied first and every other option overrides it, whatever the
 * order on the command line.  Usage errors exit 2, write errors exit 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cli/commands.h"
#include "core/dtype.h"
#include "core/gguf_write.h"
#include "core/model.h"
#include "core/synth.h"

static void synth_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab synth OUT_DIR [options]\n"
            "Writes config.json + model.safetensors with seeded random weights (HF layout).\n"
            "  --preset NAME       tiny (default) | tinyllama-1.1b | llama3-8b\n"
            "  --arch A            llama | mistral | qwen2 (qwen2 implies q/k/v bias)\n"
            "  --vocab N --dim N --layers N --heads N --kv-heads N --ffn N\n"
            "  --head-dim N        default dim/heads\n"
            "  --max-pos N         max_position_embeddings\n"
            "  --rope-theta F      --eps F (rms_norm_eps)\n"
            "  --sliding-window N  recorded in config.json (Mistral)\n"
            "  --dtype T           f32 | f16 | bf16\n"
            "  --seed S            random seed (default 0)\n"
            "  --tie               tie the LM head to the embedding\n"
            "  --qkv-bias          q/k/v projection biases (Qwen2 layout)\n"
            "  --shards N          write N shards + model.safetensors.index.json\n"
            "  --gguf TYPE         also write OUT_DIR/model.TYPE.gguf, the same weights as a GGUF file\n"
            "                      (f32 | f16 | bf16 | q8_0 | q4_0 | q4_k; `llmlab convert` does the same)\n"
            "  --medusa K          also write OUT_DIR/medusa_lm_head.safetensors: K random Medusa heads\n"
            "                      (one ResBlock each, Medusa's layout, the model's dtype; for the\n"
            "                      medusa decoding plugin; train real ones with `llmlab train-medusa`)\n");
}

static int parse_int(const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "llmlab synth: %s: '%s' is not an integer in [%ld, %ld]\n", opt, v, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_pos_float(const char *opt, const char *v, float *out) {
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (errno || end == v || *end || !(x > 0.0f)) {
        fprintf(stderr, "llmlab synth: %s: '%s' is not a positive number\n", opt, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_arch(const char *v, llmlab_config *c) {
    if (!strcmp(v, "llama")) c->arch = LLMLAB_ARCH_LLAMA, c->qkv_bias = 0;
    else if (!strcmp(v, "mistral")) c->arch = LLMLAB_ARCH_MISTRAL, c->qkv_bias = 0;
    else if (!strcmp(v, "qwen2")) c->arch = LLMLAB_ARCH_QWEN2, c->qkv_bias = 1;
    else {
        fprintf(stderr, "llmlab synth: --arch: '%s' is not llama, mistral or qwen2\n", v);
        return -1;
    }
    return 0;
}

/* Splits "--opt=value" or "--opt value"; returns the value or NULL (message printed). */
static const char *opt_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, "llmlab synth: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

typedef struct {
    llmlab_synth_opts o;
    int head_dim_given;
    const char *dir;
    int gguf;               /* --gguf given */
    llmlab_dtype gguf_type;
} synth_args;

/* One option with a value; returns 0, or -1 after printing a message. */
static int apply_valued(synth_args *a, const char *name, const char *v) {
    llmlab_config *c = &a->o.cfg;
    const long M = 1L << 24;
    if (!strcmp(name, "--arch")) return parse_arch(v, c);
    if (!strcmp(name, "--vocab")) return parse_int(name, v, 1, M, &c->vocab_size);
    if (!strcmp(name, "--dim")) return parse_int(name, v, 1, M, &c->dim);
    if (!strcmp(name, "--layers")) return parse_int(name, v, 1, 1024, &c->n_layers);
    if (!strcmp(name, "--heads")) return parse_int(name, v, 1, M, &c->n_heads);
    if (!strcmp(name, "--kv-heads")) return parse_int(name, v, 1, M, &c->n_kv_heads);
    if (!strcmp(name, "--ffn")) return parse_int(name, v, 1, M, &c->ffn_dim);
    if (!strcmp(name, "--max-pos")) return parse_int(name, v, 1, 1L << 30, &c->max_pos);
    if (!strcmp(name, "--sliding-window")) return parse_int(name, v, 0, 1L << 30, &c->sliding_window);
    if (!strcmp(name, "--shards")) return parse_int(name, v, 1, 99999, &a->o.n_shards);
    if (!strcmp(name, "--medusa")) return parse_int(name, v, 1, 64, &a->o.medusa_heads);
    if (!strcmp(name, "--rope-theta")) return parse_pos_float(name, v, &c->rope_theta);
    if (!strcmp(name, "--eps")) return parse_pos_float(name, v, &c->rms_eps);
    if (!strcmp(name, "--head-dim")) {
        a->head_dim_given = 1;
        return parse_int(name, v, 2, M, &c->head_dim);
    }
    if (!strcmp(name, "--gguf")) {
        a->gguf = 1;
        if (llmlab_gguf_parse_type(v, &a->gguf_type)) {
            fprintf(stderr, "llmlab synth: --gguf: '%s' is not f32, f16, bf16, q8_0, q4_0 or q4_k\n", v);
            return -1;
        }
        return 0;
    }
    if (!strcmp(name, "--dtype")) {
        if (llmlab_dtype_parse(v, &a->o.dtype)) {
            fprintf(stderr, "llmlab synth: --dtype: '%s' is not f32, f16 or bf16\n", v);
            return -1;
        }
        return 0;
    }
    if (!strcmp(name, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 0);
        if (errno || end == v || *end || v[0] == '-') {
            fprintf(stderr, "llmlab synth: --seed: '%s' is not a non-negative integer\n", v);
            return -1;
        }
        a->o.seed = s;
        return 0;
    }
    fprintf(stderr, "llmlab synth: unknown option '%s' (see --help)\n", name);
    return -1;
}

static int is_valued(const char *name) {
    static const char *const known[] = {"--preset", "--arch", "--vocab", "--dim", "--layers", "--heads",
                                        "--kv-heads", "--ffn", "--head-dim", "--max-pos", "--rope-theta",
                                        "--eps", "--sliding-window", "--dtype", "--seed", "--shards",
                                        "--medusa", "--gguf"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(name, known[i])) return 1;
    return 0;
}

static const char *find_preset(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--preset=", 9)) return argv[i] + 9;
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) return argv[i + 1];
    }
    return "tiny";
}

/* Returns 0, 1 for --help, or 2 on a usage error. */
static int parse_args(synth_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    const char *preset = find_preset(argc, argv);
    if (llmlab_synth_preset(&a->o, preset)) {
        fprintf(stderr, "llmlab synth: unknown preset '%s' (tiny, tinyllama-1.1b, llama3-8b)\n", preset);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return 1;
        if (!strcmp(arg, "--tie")) a->o.cfg.tie_embeddings = 1;
        else if (!strcmp(arg, "--qkv-bias")) a->o.cfg.qkv_bias = 1, a->o.cfg.arch = LLMLAB_ARCH_QWEN2;
        else if (!strncmp(arg, "--", 2)) {
            char name[64];
            const char *eq = strchr(arg, '=');
            size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
            snprintf(name, sizeof name, "%.*s", (int)(nl < 63 ? nl : 63), arg);
            if (!is_valued(name)) {
                int flag = !strcmp(name, "--tie") || !strcmp(name, "--qkv-bias");
                fprintf(stderr, "llmlab synth: %s '%s' (see --help)\n",
                        flag ? "no value allowed for" : "unknown option", name);
                return 2;
            }
            const char *v = opt_value(argc, argv, &i, eq);
            if (!v) return 2;
            if (!strcmp(name, "--preset")) continue;
            if (apply_valued(a, name, v)) return 2;
        } else if (!a->dir) {
            a->dir = arg;
        } else {
            fprintf(stderr, "llmlab synth: unexpected argument '%s'\n", arg);
            return 2;
        }
    }
    if (!a->dir) {
        fprintf(stderr, "llmlab synth: missing OUT_DIR\n");
        synth_usage(stderr);
        return 2;
    }
    return 0;
}

static void show_progress(void *ud, uint64_t done, uint64_t total) {
    (void)ud;
    fprintf(stderr, "\rsynth: %5.1f%% of %.2f GB", total ? 100.0 * (double)done / (double)total : 100.0,
            (double)total / 1e9);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* --gguf: the model just written, loaded back and written as OUT_DIR/model.TYPE.gguf. */
static int write_gguf(const synth_args *a, int tty) {
    size_t n = strlen(a->dir) + 32;
    char *path = malloc(n);
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    int rc = 1;
    if (!path) {
        fprintf(stderr, "llmlab synth: out of memory\n");
        return 1;
    }
    snprintf(path, n, "%s/model.%s.gguf", a->dir, llmlab_dtype_name(a->gguf_type));
    llmlab_gguf_write_opts o = {.type = a->gguf_type, .progress = tty ? show_progress : NULL};
    if (llmlab_model_load(&m, a->dir, &err) || llmlab_gguf_write_model(m, path, &o, &err))
        fprintf(stderr, "llmlab synth: --gguf: %s\n", err.msg);
    else rc = 0, printf("wrote %s\n", path);
    llmlab_model_free(m);
    free(path);
    return rc;
}

int llmlab_cmd_synth(int argc, char **argv) {
    synth_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc == 1) {
        synth_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    llmlab_config *c = &a.o.cfg;
    if (!a.head_dim_given) {
        if (c->dim % c->n_heads) {
            fprintf(stderr, "llmlab synth: --dim %d is not a multiple of --heads %d; give --head-dim\n", c->dim,
                    c->n_heads);
            return 2;
        }
        c->head_dim = c->dim / c->n_heads;
    }
    c->torch_dtype = a.o.dtype;
    /* Validate the shape with the loader's own parser: usage error, not I/O error. */
    llmlab_err err = {0};
    llmlab_config check = *c;
    if (check.qkv_bias) check.arch = LLMLAB_ARCH_QWEN2;
    char *json = llmlab_config_to_json(&check);
    if (!json) {
        fprintf(stderr, "llmlab synth: out of memory\n");
        return 1;
    }
    llmlab_status s = llmlab_config_parse(&check, json, &err);
    free(json);
    if (s) {
        fprintf(stderr, "llmlab synth: invalid model shape: %s\n", err.msg);
        return 2;
    }
    int tty = isatty(2);
    s = llmlab_synth_write_ex(&a.o, a.dir, tty ? show_progress : NULL, NULL, &err);
    if (s) {
        fprintf(stderr, "llmlab synth: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (%llu parameters)\n", a.dir, (unsigned long long)llmlab_synth_param_count(&check));
    if (a.o.medusa_heads > 0)
        printf("wrote %s/medusa_lm_head.safetensors (%d Medusa heads)\n", a.dir, a.o.medusa_heads);
    return a.gguf ? write_gguf(&a, tty) : 0;
}
