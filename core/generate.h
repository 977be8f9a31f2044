/* generate.h - prompt -> continuation for one sequence, straight on the core
 * forward (the plugin engine builds on the same pieces). */
#ifndef LLMLAB_GENERATE_H
#define LLMLAB_GENERATE_H

#include <stdint.h>

#include "forward.h"
#include "sampler.h"

typedef struct {
    int max_new;          /* tokens to generate */
    llmlab_sampling samp;
    uint64_t seed;        /* sampling stream = (seed, seq) */
    int stop_at_eos;      /* stop after an eos id of the config */
} llmlab_gen_opts;

typedef struct {
    int n_prompt, n_new;
    double prefill_s;     /* wall time of the prompt's forwards */
    double decode_s;      /* wall time of the decode steps (incl. sampling) */
} llmlab_gen_stats;

/* Generates up to opts->max_new tokens for sequence seq (which must be empty) into
 * out[max_new]; *n_out is the count.  The prompt is prefilled in chunks of the
 * context's max_batch.  The sequence is left in the cache (free it when done). */
llmlab_status llmlab_generate(llmlab_ctx *ctx, int seq, const int32_t *prompt, int n_prompt,
                              const llmlab_gen_opts *opts, int32_t *out, int *n_out,
                              llmlab_gen_stats *stats, llmlab_err *err);

/* Prefills tokens into seq at positions start.. (committing them); the logits of the
 * last token are copied to last_logits[vocab] when non-NULL. */
llmlab_status llmlab_prefill(llmlab_ctx *ctx, int seq, const int32_t *tokens, int n, int start,
                             float *last_logits, llmlab_err *err);

double llmlab_now(void); /* monotonic seconds */

#endif
