/* sampler.h - choosing the next token from logits.
 *
 * Order of the filters follows Hugging Face generate(): temperature, top-k, top-p,
 * min-p, then a draw from the renormalised distribution.  temperature == 0 is
 * greedy: argmax, the lowest index winning ties (the same rule everywhere, so
 * lossless speculative methods can match it exactly).
 */
#ifndef LLMLAB_SAMPLER_H
#define LLMLAB_SAMPLER_H

#include "rng.h"

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    float min_p;       /* 0 = off */
} llmlab_sampling;

#define LLMLAB_SAMPLING_GREEDY ((llmlab_sampling){0.0f, 0, 1.0f, 0.0f})

/* Index of the largest value; the lowest index wins ties; NaNs never win. */
int llmlab_argmax(const float *x, int n);

/* Fills probs[n] with the filtered, renormalised distribution the sampler draws
 * from (greedy: one-hot at the argmax).  work: [n] ints of scratch. */
void llmlab_sampling_probs(float *probs, const float *logits, int n, const llmlab_sampling *s,
                           int *work);

/* Draws a token.  probs and work are [n] scratch arrays owned by the caller. */
int llmlab_sample(const float *logits, int n, const llmlab_sampling *s, llmlab_rng *rng,
                  float *probs, int *work);

/* Draws an index from a distribution p[n] that sums to ~1 (inverse CDF in index order). */
int llmlab_sample_from(const float *p, int n, llmlab_rng *rng);

/* Returns NULL when s is valid, else a message naming the bad field. */
const char *llmlab_sampling_check(const llmlab_sampling *s);

#endif
