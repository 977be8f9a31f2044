/* synth.h - seeded random-weight models written in Hugging Face layout.
 *
 * `llmlab synth` and the tests make models with this, and load them back through
 * the normal loader, so the loader is exercised on every test run.
 */
#ifndef LLMLAB_SYNTH_H
#define LLMLAB_SYNTH_H

#include <stdint.h>

#include "config.h"
#include "rng.h"

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

/* ---- the tensors and their values (synth.c; shared with synth_model.c) ------------ */

typedef enum { LLMLAB_SYNTH_RANDOM, LLMLAB_SYNTH_NORM } llmlab_synth_kind;

/* One tensor of a synthetic model, as it is written. */
typedef struct {
    char name[96];            /* Hugging Face name */
    int ndim;
    int64_t shape[2];         /* [rows][cols]; cols 0 for a vector */
    llmlab_synth_kind kind;   /* NORM: 1 + 0.1 u; RANDOM: uniform with standard deviation std */
    float std;
    uint64_t bytes;           /* in the storage dtype */
    int shard;
} llmlab_synth_tensor;

/* The model opts describes: *cfg as a loader parses it back from the config.json
 * that llmlab_synth_write writes, *json that text (malloc'd), and its tensors in
 * file order (*tensors malloc'd, *n of them).  EINVAL for a bad dtype or shape. */
llmlab_status llmlab_synth_plan(const llmlab_synth_opts *opts, llmlab_config *cfg, char **json,
                                llmlab_synth_tensor **tensors, int *n, llmlab_err *err);

/* The value stream of one tensor: seeded from (seed, its name) alone, so any
 * tensor can be generated on its own, in any order, on any thread. */
typedef struct {
    llmlab_rng r;
    float amp;
    int norm;
} llmlab_synth_stream;

void llmlab_synth_stream_init(llmlab_synth_stream *s, uint64_t seed, const llmlab_synth_tensor *t);
/* The next k values of the tensor, in f32 (exactly what f16/bf16 then round). */
void llmlab_synth_stream_next(llmlab_synth_stream *s, float *vals, size_t k);
/* vals[k] in storage dtype dt at out (out may equal vals for f32). */
void llmlab_synth_encode(llmlab_dtype dt, const float *vals, void *out, size_t k);

#endif
