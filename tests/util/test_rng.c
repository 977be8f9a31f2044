/* test_rng.c - see test_rng.h. */
#include "test_rng.h"

#include <stdlib.h>
#include <time.h>

uint64_t test_rng_seed;
static uint64_t state;

void test_rng_start(void) {
    const char *s = getenv("LLMLAB_TEST_SEED");
    test_rng_seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    state = test_rng_seed;
}

uint64_t test_rng_u64(void) { /* splitmix64 */
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float test_rng_f(void) { return (float)((test_rng_u64() >> 40) + 0.5) / (float)(1 << 23) - 1.0f; }
