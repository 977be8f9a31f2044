/* fuzz_gguf_model.c - libFuzzer harness for loading GGUF files as models
 * (core/model_gguf.c on top of the reader).
 *
 * Each input is written as a .gguf file and loaded with llmlab_model_load.
 * Whatever the bytes, the load must either fail with a message and no model, or
 * give a model whose every matrix lies inside the mapping (or an owned copy):
 * both ends of every row range are touched, so ASan sees an over-read, and the
 * stored bytes must add up to weight_bytes.  Build and run: tests/fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

/* Touches the first and last byte of w; returns its stored bytes. */
static uint64_t touch(const llmlab_mat *w, unsigned *sum) {
    uint64_t nb = (uint64_t)w->rows * llmlab_dtype_row_bytes(w->dtype, w->cols);
    if (!w->data || w->rows <= 0 || w->cols <= 0 || nb == 0) abort();
    const uint8_t *p = w->data;
    *sum += p[0] + p[nb - 1];
    return nb;
}

static void check_model(const llmlab_model *m) {
    const llmlab_config *c = &m->cfg;
    unsigned sum = 0;
    uint64_t bytes = touch(&m->embed, &sum);
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        bytes += touch(&L->wq, &sum) + touch(&L->wk, &sum) + touch(&L->wv, &sum) + touch(&L->wo, &sum) +
                 touch(&L->w_gate, &sum) + touch(&L->w_up, &sum) + touch(&L->w_down, &sum);
        sum += (L->attn_norm[c->dim - 1] != 0) + (L->ffn_norm[0] != 0);
        if (c->qkv_bias && (!L->bq || !L->bk || !L->bv)) abort();
    }
    if (!c->tie_embeddings) bytes += touch(&m->lm_head, &sum);
    if (bytes != m->weight_bytes || !m->tok || !m->rope_inv_freq || !m->final_norm) abort();
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) snprintf(path, sizeof path, "/tmp/llmlab-fuzz-gguf-model-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    if (llmlab_model_load(&m, path, &err) == LLMLAB_OK) {
        check_model(m);
        llmlab_model_free(m);
    } else if (err.msg[0] == 0 || m != NULL) {
        abort(); /* every failure explains itself and returns no model */
    }
    return 0;
}
