/* one_forward.h - the logits of one causal forward over a token sequence from an
 * empty cache: the engine's own forward (core/forward.c), so results computed
 * some other way through the engine (teacher-forced scoring, strided perplexity)
 * can be compared with it bit for bit. */
#ifndef LLMLAB_TEST_ONE_FORWARD_H
#define LLMLAB_TEST_ONE_FORWARD_H

#include <stdint.h>

#include "core/forward.h"

enum { ONE_FORWARD_MAX = 128 }; /* tokens one call takes at most */

/* logits[len][vocab] (malloc'd) for tok[len] at positions 0..len-1 of one
 * sequence, every token flagged for logits, in a fresh context (3 threads).
 * Asserts success and len <= ONE_FORWARD_MAX. */
float *one_forward_logits(const llmlab_model *m, const int32_t *tok, int len);

#endif
