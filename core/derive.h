/* derive.h - a model made from another: its first layers, in another dtype.
 *
 * `llmlab derive` writes such a copy as a Hugging Face directory: a cheap draft
 * that agrees often with its source (the same embedding, LM head and early
 * layers), for speculative decoding studies. */
#ifndef LLMLAB_DERIVE_H
#define LLMLAB_DERIVE_H

#include "model.h"

typedef struct {
    llmlab_dtype dtype;  /* storage dtype of the copy */
    int n_layers;        /* keep layers [0, n_layers); 0 = all */
} llmlab_derive_opts;

/* Writes dir/config.json and dir/model.safetensors (dir is created if needed). */
llmlab_status llmlab_derive_write(const llmlab_model *src, const llmlab_derive_opts *o, const char *dir,
                                  llmlab_err *err);

#endif
