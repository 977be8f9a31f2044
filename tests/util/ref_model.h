/* ref_model.h - an independent naive Llama forward in double precision.
 *
 * It shares nothing with the engine but the weight views: no KV cache, no batch,
 * no kernels; full causal attention recomputed from scratch, RoPE angles from
 * rope_theta in double.  Tests compare the engine against it with tolerances. */
#ifndef LLMLAB_TEST_REF_MODEL_H
#define LLMLAB_TEST_REF_MODEL_H

#include <stdint.h>

#include "core/model.h"

/* logits: [T][vocab] for tokens at positions 0..T-1 (may be NULL).
 * tap: [T][dim] residual stream after layer tap_layer (tap_layer < 0: unused). */
void ref_forward(const llmlab_model *m, const int32_t *tokens, int T, double *logits,
                 int tap_layer, double *tap);

#endif
