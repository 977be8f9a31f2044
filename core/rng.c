/* rng.c - xoshiro256** (Blackman & Vigna) seeded through splitmix64. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void llmlab_rng_seed(llmlab_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t llmlab_rng_next(llmlab_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

float llmlab_rng_uniform(llmlab_rng *r) { return (float)(llmlab_rng_next(r) >> 40) * 0x1.0p-24f; }

double llmlab_rng_uniform_d(llmlab_rng *r) { return (double)(llmlab_rng_next(r) >> 11) * 0x1.0p-53; }

double llmlab_rng_normal(llmlab_rng *r) {
    double u1 = llmlab_rng_uniform_d(r), u2 = llmlab_rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
