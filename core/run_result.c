/* run_result.c - per-request rows and the per-step log of a run result
 * (run_result.h). */
#include "run_result.h"

#include <stdlib.h>
#include <string.h>

llmlab_status llmlab_run_result_alloc_requests(llmlab_run_result *r, int with_output, llmlab_err *err) {
    size_t N = (size_t)(r->n_reqs > 0 ? r->n_reqs : 1);
    int **ic[] = {&r->req_id, &r->prompt_len, &r->output_len, &r->forwards, &r->status, &r->preemptions,
                  &r->recomputed_tokens, &r->swaps};
    double **dc[] = {&r->arrival_s, &r->admit_s, &r->first_token_s, &r->finish_s};
    int bad = 0;
    for (size_t c = 0; c < sizeof ic / sizeof ic[0]; c++) bad |= !(*ic[c] = calloc(N, sizeof(int)));
    for (size_t c = 0; c < sizeof dc / sizeof dc[0]; c++) bad |= !(*dc[c] = calloc(N, sizeof(double)));
    if (with_output) bad |= !(r->output = calloc(N, sizeof *r->output));
    return bad ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for the result of %d requests", r->n_reqs)
               : LLMLAB_OK;
}

void llmlab_run_result_put(llmlab_run_result *r, int i, const llmlab_run_row *x) {
    r->req_id[i] = x->id;
    r->prompt_len[i] = x->prompt_len;
    r->output_len[i] = x->output_len;
    r->forwards[i] = x->forwards;
    r->status[i] = x->cancelled ? LLMLAB_RUN_CANCELLED : LLMLAB_RUN_FINISHED;
    r->preemptions[i] = x->preemptions;
    r->recomputed_tokens[i] = x->recomputed;
    r->swaps[i] = x->swaps;
    r->arrival_s[i] = x->arrival;
    r->admit_s[i] = x->admit;
    r->first_token_s[i] = x->first;
    r->finish_s[i] = x->finish;
    r->prompt_tokens += x->prompt_len;
    r->output_tokens += x->output_len;
    r->target_forwards += x->forwards;
    r->preemptions_total += x->preemptions;
    r->recomputed_tokens_total += x->recomputed;
    r->swaps_total += x->swaps;
    r->cancelled_total += x->cancelled != 0;
}

void llmlab_run_result_take_tokens(llmlab_run_result *r, int n, int *req, int *index, int32_t *tok, double *t) {
    r->n_tok = n;
    r->tok_req = req;
    r->tok_index = index;
    r->tok_id = tok;
    r->tok_time_s = t;
}

/* ---- per-step log ----------------------------------------------------------------------- */

#define STEP_COLS 13

/* The log's columns, doubles first (matching sizes[] below). */
static void step_cols(llmlab_step_log *L, void **cols[STEP_COLS]) {
    void **c[STEP_COLS] = {(void **)&L->start,    (void **)&L->dt,      (void **)&L->kv_bytes, (void **)&L->tokens,
                           (void **)&L->seqs,     (void **)&L->blocks,  (void **)&L->accepted, (void **)&L->prefill,
                           (void **)&L->decode,   (void **)&L->context, (void **)&L->preempted,
                           (void **)&L->swap_in,  (void **)&L->swap_out};
    memcpy(cols, c, sizeof c);
}

static size_t step_col_size(int c) { return c < 3 ? sizeof(double) : sizeof(int); }

int llmlab_step_log_push(llmlab_step_log *L, const llmlab_step_row *x, int first_cap) {
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : first_cap;
        void **cols[STEP_COLS];
        step_cols(L, cols);
        for (int c = 0; c < STEP_COLS; c++) {
            void *p = realloc(*cols[c], (size_t)cap * step_col_size(c));
            if (!p) return -1;
            *cols[c] = p;
        }
        L->cap = cap;
    }
    int k = L->n++;
    L->start[k] = x->start;
    L->dt[k] = x->dt;
    L->kv_bytes[k] = x->kv_bytes;
    L->tokens[k] = x->tokens;
    L->seqs[k] = x->seqs;
    L->blocks[k] = x->blocks;
    L->accepted[k] = x->accepted;
    L->prefill[k] = x->prefill;
    L->decode[k] = x->decode;
    L->context[k] = x->context;
    L->preempted[k] = x->preempted;
    L->swap_in[k] = x->swap_in;
    L->swap_out[k] = x->swap_out;
    return k;
}

void llmlab_step_log_free(llmlab_step_log *L) {
    void **cols[STEP_COLS];
    step_cols(L, cols);
    for (int c = 0; c < STEP_COLS; c++) free(*cols[c]);
    memset(L, 0, sizeof *L);
}

llmlab_status llmlab_step_log_move(llmlab_step_log *L, llmlab_run_result *r, llmlab_err *err) {
    void **cols[STEP_COLS];
    step_cols(L, cols);
    int bad = 0;
    for (int c = 0; c < STEP_COLS; c++) /* a run of no steps: one zero so every column is non-NULL */
        if (!*cols[c]) bad |= !(*cols[c] = calloc(1, step_col_size(c)));
    r->n_steps = L->n;
    r->step_start_s = L->start;
    r->step_dt_s = L->dt;
    r->step_kv_bytes = L->kv_bytes;
    r->step_tokens = L->tokens;
    r->step_seqs = L->seqs;
    r->step_kv_blocks = L->blocks;
    r->step_accepted = L->accepted;
    r->step_prefill_tokens = L->prefill;
    r->step_decode_seqs = L->decode;
    r->step_kv_context = L->context;
    r->step_preempted = L->preempted;
    r->step_swap_in = L->swap_in;
    r->step_swap_out = L->swap_out;
    memset(L, 0, sizeof *L);
    return bad ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
}
