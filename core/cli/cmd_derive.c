/* cmd_derive.c - `llmlab derive`: a copy of a model with its first layers and/or
 * another dtype (a draft that agrees often with its source).
 *
 *   llmlab derive SRC_DIR OUT_DIR [--layers N] [--dtype f32|f16|bf16]
 *
 * Usage errors exit 2, load/write errors exit 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/commands.h"
#include "core/derive.h"
#include "core/dtype.h"

static void derive_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab derive SRC_DIR OUT_DIR [--layers N] [--dtype T]\n"
            "Writes a copy of the model in SRC_DIR keeping its first N layers (default all)\n"
            "in dtype T (default: the source's), e.g. a speculative draft that agrees often\n"
            "with its target:  llmlab derive models/target models/draft --layers 2 --dtype bf16\n");
}

int llmlab_cmd_derive(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0, layers = 0, have_dtype = 0;
    llmlab_dtype dtype = LLMLAB_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            derive_usage(stdout);
            return 0;
        }
        if ((!strcmp(a, "--layers") || !strcmp(a, "--dtype")) && i + 1 >= argc) {
            fprintf(stderr, "llmlab derive: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--layers")) {
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno || *end || v < 1 || v > 100000) {
                fprintf(stderr, "llmlab derive: --layers: '%s' is not a positive integer\n", argv[i]);
                return 2;
            }
            layers = (int)v;
        } else if (!strcmp(a, "--dtype")) {
            if (llmlab_dtype_parse(argv[++i], &dtype)) {
                fprintf(stderr, "llmlab derive: --dtype: '%s' is not one of f32, f16, bf16\n", argv[i]);
                return 2;
            }
            have_dtype = 1;
        } else if (a[0] == '-' || n_pos == 2) {
            fprintf(stderr, "llmlab derive: unexpected argument '%s'\n", a);
            derive_usage(stderr);
            return 2;
        } else {
            pos[n_pos++] = a;
        }
    }
    if (n_pos != 2) {
        derive_usage(stderr);
        return 2;
    }
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    if (llmlab_model_load(&m, pos[0], &err)) {
        fprintf(stderr, "llmlab derive: %s\n", err.msg);
        return 1;
    }
    llmlab_derive_opts o = {have_dtype ? dtype : m->cfg.torch_dtype, layers};
    llmlab_status st = llmlab_derive_write(m, &o, pos[1], &err);
    if (st) fprintf(stderr, "llmlab derive: %s\n", err.msg);
    else fprintf(stderr, "wrote %s: %d of %d layers, %s\n", pos[1], layers ? layers : m->cfg.n_layers, m->cfg.n_layers,
                 llmlab_dtype_name(o.dtype));
    llmlab_model_free(m);
    return st ? 1 : 0;
}
