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
} llmlab_synth_opts;

/* Fills opts with a preset: "tiny", "tinyllama-1.1b", "llama3-8b".  Returns 0 or -1. */
int llmlab_synth_preset(llmlab_synth_opts *opts, const char *name);

/* Writes config.json + model.safetensors (or shards + index) into dir (created). */
llmlab_status llmlab_synth_write(const llmlab_synth_opts *opts, const char *dir, llmlab_err *err);

#endif
