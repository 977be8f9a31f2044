/* fixture_model.h - synthetic models for tests, written to a temporary directory
 * and loaded back through the real loader. */
#ifndef LLMLAB_TEST_FIXTURE_MODEL_H
#define LLMLAB_TEST_FIXTURE_MODEL_H

#include <stdint.h>

#include "core/forward.h"
#include "core/synth.h"

typedef struct {
    const char *name;
    int vocab, dim, layers, heads, kv_heads, ffn, head_dim; /* head_dim 0 = dim/heads */
    int tie, qkv_bias;
    llmlab_dtype dtype;
} fixture_shape;

/* Writes a model of that shape (seeded) into a fresh temp dir and loads it.
 * Aborts the test (cr_assert) on failure.  fixture_free removes the directory. */
typedef struct {
    char dir[256];
    llmlab_model *m;
} fixture_model;

void fixture_load(fixture_model *f, const fixture_shape *s, uint64_t seed);
void fixture_free(fixture_model *f);

/* A seed for fresh random inputs: LLMLAB_TEST_SEED from the environment, else time
 * based; printed to stderr so a failure can be replayed. */
uint64_t fixture_seed(const char *test_name);

/* The shapes the exactness tests sweep (GQA kv 1/2/=heads, tied/untied, qkv bias,
 * head_dim 64 and 128, vocab not a multiple of 8 or 32). */
extern const fixture_shape fixture_shapes[];
extern const int fixture_n_shapes;

/* Removes a directory tree (used for temp dirs). */
void fixture_rmtree(const char *dir);

#endif
