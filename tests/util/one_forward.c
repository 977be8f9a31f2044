/* one_forward.c - one causal forward over a whole sequence, for comparisons. */
#include "one_forward.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

float *one_forward_logits(const llmlab_model *m, const int32_t *tok, int len) {
    cr_assert(len > 0 && len <= ONE_FORWARD_MAX, "one_forward_logits: %d tokens (1..%d)", len, ONE_FORWARD_MAX);
    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 3, .max_seqs = 1, .kv_tokens = 256, .max_batch = ONE_FORWARD_MAX};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_batch *b = llmlab_batch_create(ONE_FORWARD_MAX);
    cr_assert_not_null(b);
    for (int k = 0; k < len; k++) llmlab_batch_add(b, tok[k], 0, k, LLMLAB_TOK_LOGITS, -1);
    const llmlab_outputs *out;
    cr_assert_eq(llmlab_forward(ctx, b, &out, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(out->n_out, len);
    size_t V = (size_t)m->cfg.vocab_size;
    float *rows = malloc((size_t)len * V * sizeof *rows);
    cr_assert_not_null(rows);
    memcpy(rows, out->logits, (size_t)len * V * sizeof *rows);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    return rows;
}
