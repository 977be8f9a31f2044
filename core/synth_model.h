/* synth_model.h - a seeded random-weight model built in memory (no files).
 *
 * The same model llmlab_synth_write writes and llmlab_model_load reads back
 * (synth.h): same config, tensors, values, hash and logits, bit for bit, with
 * the byte-level tokenizer.  For benchmarks of large presets (llama3-8b: 16 GB
 * in bf16) that need no copy on disk.
 */
#ifndef LLMLAB_SYNTH_MODEL_H
#define LLMLAB_SYNTH_MODEL_H

#include "model.h"
#include "synth.h"

/* Builds the model of opts (shape, dtype f32/f16/bf16, seed; n_shards is
 * ignored; medusa_heads must be 0) with n_threads threads (0: all cores, 1: the
 * caller's thread only); the values do not depend on n_threads.  Free it with
 * llmlab_model_free.  EINVAL for a bad dtype, shape or thread count, ENOMEM when
 * the weights do not fit. */
llmlab_status llmlab_synth_model(const llmlab_synth_opts *opts, int n_threads, llmlab_model **out,
                                 llmlab_err *err);

#endif
