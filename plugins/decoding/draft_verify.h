/* draft_verify.h - draft-then-verify decoding shared by the speculative and
 * self_speculative plugins: an auxiliary model proposes k tokens per sequence
 * (its forwards batched across every decoding sequence of the step), the target
 * verifies them in the engine's one forward.
 *
 * Greedy sequences: accept while the draft equals the target's argmax, then the
 * target's token (lossless: the output is exactly greedy decoding's).
 * Sampled sequences: Leviathan/Chen speculative sampling on full distributions:
 * accept x ~ q with probability min(1, p(x)/q(x)); on rejection draw from
 * normalize(max(0, p - q)) and stop; after k acceptances a bonus from p.  p and q
 * are the engine's sampling distributions (temperature, top-k/p, min-p applied),
 * so the output is distributed exactly as sampling from the target.
 *
 * The draft's KV cache is rolled back to the accepted length after each verify;
 * tokens the draft has not seen yet (the prompt, a fully accepted draft's last
 * token) are fed in the next step's first draft forward. */
#ifndef LLMLAB_PLUGINS_DRAFT_VERIFY_H
#define LLMLAB_PLUGINS_DRAFT_VERIFY_H

#include "llmlab/plugin.h"

#define DV_MAX_K 32

typedef struct dv_seq dv_seq;

typedef struct {
    const llmlab_host *h;
    llmlab_engine *e;
    llmlab_aux *draft;
    int k;               /* draft length (the starting one when adaptive) */
    int k_max;           /* adaptive: upper bound */
    int adaptive;        /* 1: k += 2 after a fully accepted draft, k -= 1 after a rejection */
    int vocab;
    dv_seq *seqs;        /* linked list of per-sequence states */
    float *logits;       /* [token_budget][vocab] draft forward outputs */
    float *p;            /* [vocab] scratch: target distribution */
    llmlab_aux_token *batch; /* [token_budget] draft forward being built */
    int batch_cap, batch_n;
    dv_seq **batch_owner;    /* [token_budget] state of each flagged row, in row order */
    int batch_rows;
} dv_state;

/* Creates the state around an opened draft (k, adaptive, k_max from the caller's
 * params); takes ownership of `draft`. */
llmlab_status dv_create(dv_state **out, const llmlab_host *h, llmlab_engine *e, llmlab_aux *draft, int k,
                        int adaptive, int k_max, llmlab_err *err);
void dv_destroy(void *self);
llmlab_status dv_seq_begin(void *self, llmlab_seq *s, llmlab_err *err);
void dv_seq_end(void *self, llmlab_seq *s);
llmlab_status dv_step_begin(void *self, llmlab_seq *const *seqs, int n, llmlab_err *err);
llmlab_status dv_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err);
llmlab_status dv_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err);
int dv_max_step_tokens(void *self);

/* Greedy acceptance: how many of drafts[k] match argmax of target rows [k+1][vocab]
 * (row i is the target's prediction after i drafts) and the token after them. */
int dv_accept_greedy(const float *const *target_rows, const int32_t *drafts, int k, int vocab, int32_t *next);

#endif
