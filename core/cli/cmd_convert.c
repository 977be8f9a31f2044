/* cmd_convert.c - `llmlab convert`: a model as a GGUF file llama.cpp can load.
 *
 *   llmlab convert MODEL OUT.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k] [--name NAME]
 *
 * MODEL is a Hugging Face directory or a GGUF file (re-typed).  The written file
 * is loaded back and checked against the source (same config; the tokenizer
 * encodes a sample text identically) before the command reports success.
 * Usage errors exit 2, conversion errors 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/gguf_write.h"
#include "core/model.h"
#include "core/tokenizer.h"

static void convert_usage(FILE *f) {
    fprintf(f, "usage: llmlab convert MODEL OUT.gguf [--type T] [--name NAME]\n"
               "Writes MODEL (a Hugging Face directory or a .gguf file) as a GGUF file that llama.cpp\n"
               "and llmlab both load (llama.cpp's tensor names, metadata keys and Q/K row order).\n"
               "  --type T      matrices in f32 | f16 (default) | bf16 | q8_0 | q4_0 | q4_k; norms stay f32\n"
               "  --name NAME   general.name (default: the model directory's name)\n");
}

static void show_progress(void *ud, uint64_t done, uint64_t total) {
    (void)ud;
    fprintf(stderr, "\rconvert: %5.1f%% of %.2f GB", total ? 100.0 * (double)done / (double)total : 100.0,
            (double)total / 1e9);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* The config fields both loaders must agree on. */
static int same_config(const llmlab_config *a, const llmlab_config *b) {
    return a->vocab_size == b->vocab_size && a->dim == b->dim && a->ffn_dim == b->ffn_dim &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->rms_eps == b->rms_eps && a->rope_theta == b->rope_theta &&
           a->tie_embeddings == b->tie_embeddings && a->qkv_bias == b->qkv_bias && a->max_pos == b->max_pos;
}

/* Encodes a sample with both tokenizers; 0 when the ids agree. */
static int same_tokens(const llmlab_model *a, const llmlab_model *b, llmlab_err *err) {
    static const char text[] = "Hello world! The quick brown fox, 1234 times.\n  Indented line\twith a tab.";
    int32_t *x = NULL, *y = NULL;
    int nx = 0, ny = 0;
    int rc = llmlab_tokenizer_encode(a->tok, text, sizeof text - 1, 1, &x, &nx, err) ||
             llmlab_tokenizer_encode(b->tok, text, sizeof text - 1, 1, &y, &ny, err) || nx != ny ||
             memcmp(x, y, (size_t)nx * sizeof *x);
    free(x);
    free(y);
    return rc;
}

/* Weights in the matrices weight_bytes counts. */
static double matrix_elements(const llmlab_model *m) {
    const llmlab_config *c = &m->cfg;
    double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double layer = 2.0 * q * c->dim + 2.0 * kv * c->dim + 3.0 * (double)c->ffn_dim * c->dim;
    return layer * c->n_layers + (c->tie_embeddings ? 1.0 : 2.0) * (double)c->vocab_size * c->dim;
}

/* Tensors per stored type of the written file, e.g. "q4_0 155, f32 45". */
static void type_summary(const llmlab_model *m, char *out, size_t cap) {
    int count[64] = {0};
    for (int64_t i = 0; i < llmlab_gguf_n_tensors(m->gguf); i++) {
        uint32_t t = llmlab_gguf_tensor_at(m->gguf, i)->type;
        if (t < 64) count[t]++;
    }
    size_t k = 0;
    out[0] = 0;
    for (uint32_t t = 0; t < 64 && k < cap; t++)
        if (count[t]) k += (size_t)snprintf(out + k, cap - k, "%s%s %d", k ? ", " : "", llmlab_ggml_type_name(t), count[t]);
}

int llmlab_cmd_convert(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *type = "f16", *name = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            convert_usage(stdout);
            return 0;
        }
        if (!strcmp(o, "--type") || !strcmp(o, "--name")) {
            const char *v = llmlab_arg_value("convert", argc, argv, &i);
            if (!v) return 2;
            *(o[2] == 't' ? &type : &name) = v;
        } else if (o[0] == '-' && o[1]) {
            fprintf(stderr, "llmlab convert: unknown option '%s'\n", o);
            convert_usage(stderr);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = o;
        } else {
            fprintf(stderr, "llmlab convert: unexpected argument '%s'\n", o);
            return 2;
        }
    }
    llmlab_dtype dt;
    if (npos != 2) {
        fprintf(stderr, "llmlab convert: need MODEL and OUT.gguf\n");
        convert_usage(stderr);
        return 2;
    }
    if (llmlab_gguf_parse_type(type, &dt)) {
        fprintf(stderr, "llmlab convert: --type: '%s' is not f32, f16, bf16, q8_0, q4_0 or q4_k\n", type);
        return 2;
    }
    llmlab_err err = {0};
    llmlab_model *src = NULL, *out = NULL;
    int rc = 1;
    if (llmlab_model_load(&src, pos[0], &err)) goto fail;
    llmlab_gguf_write_opts o = {.type = dt, .name = name, .progress = isatty(2) ? show_progress : NULL};
    if (llmlab_gguf_write_model(src, pos[1], &o, &err)) goto fail;
    if (llmlab_model_load(&out, pos[1], &err)) {
        llmlab_err_prefix(&err, "the written file does not load back");
        goto fail;
    }
    if (!same_config(&src->cfg, &out->cfg)) {
        fprintf(stderr, "llmlab convert: %s loads with a config different from %s\n", pos[1], pos[0]);
        goto end;
    }
    if (same_tokens(src, out, &err)) {
        fprintf(stderr, "llmlab convert: %s: its vocabulary encodes a sample text differently from %s's%s%s\n",
                pos[1], pos[0], err.msg[0] ? ": " : "", err.msg);
        goto end;
    }
    char types[256];
    type_summary(out, types, sizeof types);
    printf("wrote %s (%.2f GB of weights, %.3f bits/weight; tensors: %s; tokenizer %s)\n", pos[1],
           (double)out->weight_bytes / 1e9, 8.0 * (double)out->weight_bytes / matrix_elements(out), types,
           llmlab_tokenizer_kind(out->tok));
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab convert: %s\n", err.msg);
end:
    llmlab_model_free(src);
    llmlab_model_free(out);
    return rc;
}
