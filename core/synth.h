/* synth.h - seeded random-weight models written in Hugging Face layout.
 *
 * `llmlab synth` and the tests make models with this, and load them back through
 * the normal loader, so the loader is exercised on every test run.
 */
#ifndef LLMLAB_SYNTH_H
#define LLMLAB_SYNTH_H

#include <stdint.h>

#include "config.h"

typedef struct {
    llmlab_config cfg;   /* shape; arch decides names (qkv_bias forces Qwen2 layout) */
    llmlab_dtype dtype;  /* storage dtype of every tensor */
    uint64_t seed;
    int n_shards;        /* 1: model.safetensors; >1: sharded with an index */
    int medusa_heads;    /* > 0: also medusa_lm_head.safetensors with that many random
                            Medusa heads (one ResBlock each, Medusa's layout) */
} llmlab_synth_opts;

/* Fills opts with a preset: "tiny", "tinyllama-1.1b", "llama3-8b".  Returns 0 or -1. */
int llmlab_synth_preset(llmlab_synth_opts *opts, const char *name);

/* Writes config.json + model.safetensors (or shards + index) into dir (created),
 * and medusa_lm_head.safetensors when opts->medusa_heads > 0. */
llmlab_status llmlab_synth_write(const llmlab_synth_opts *opts, const char *dir, llmlab_err *err);

/* As llmlab_synth_write, calling progress (when non-NULL) after each tensor with
 * the data bytes written so far and the total. */
typedef void (*llmlab_synth_progress_fn)(void *ud, uint64_t done_bytes, uint64_t total_bytes);
llmlab_status llmlab_synth_write_ex(const llmlab_synth_opts *opts, const char *dir,
                                    llmlab_synth_progress_fn progress, void *ud, llmlab_err *err);

/* Number of parameters a model of this shape holds (the LM head counted once
 * when tied, norms and biases included). */
uint64_t llmlab_synth_param_count(const llmlab_config *cfg);

#endif
