/* rng.h - seeded random streams (xoshiro256**), one per sequence.
 *
 * A stream is derived from (seed, stream id) with splitmix64, so sequence 3 of a
 * seeded run draws the same numbers whatever other sequences run beside it.
 */
#ifndef LLMLAB_RNG_H
#define LLMLAB_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} llmlab_rng;

void llmlab_rng_seed(llmlab_rng *r, uint64_t seed, uint64_t stream);
uint64_t llmlab_rng_next(llmlab_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float llmlab_rng_uniform(llmlab_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double llmlab_rng_uniform_d(llmlab_rng *r);
/* Standard normal (Box-Muller). */
double llmlab_rng_normal(llmlab_rng *r);

#endif
