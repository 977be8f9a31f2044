/* weights.h - reading weight rows of any stored dtype as f32 (the host's
 * weight_rows, plugin.h ABI 1.3). */
#ifndef LLMLAB_WEIGHTS_H
#define LLMLAB_WEIGHTS_H

#include <stdint.h>

#include "llmlab/plugin.h"

/* Rows [row0, row0 + n) of w ([rows][cols] in f32, f16, bf16, Q8_0, Q4_0 or
 * Q4_K) into out[n][cols].  Rows outside w, or a block type whose cols is not
 * whole blocks, give NaN rows (the loader refuses such tensors before any
 * plugin sees them). */
void llmlab_weight_rows(const llmlab_weight *w, int64_t row0, int64_t n, float *out);

#endif
