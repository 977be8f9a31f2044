/* test_rng.h - the fresh random numbers of the kernel tests.
 *
 * One splitmix64 stream per test process, seeded from LLMLAB_TEST_SEED when set
 * (to replay a failure), else from the clock; tests print test_rng_seed in their
 * failure messages. */
#ifndef LLMLAB_TEST_RNG_H
#define LLMLAB_TEST_RNG_H

#include <stdint.h>

extern uint64_t test_rng_seed; /* the seed of the current stream */

/* (Re)starts the stream: LLMLAB_TEST_SEED, else time and clock mixed. */
void test_rng_start(void);
uint64_t test_rng_u64(void);
/* Uniform in [-1, 1), never exactly zero. */
float test_rng_f(void);

#endif
