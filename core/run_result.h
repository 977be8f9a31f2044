/* run_result.h - building an llmlab_run_result: the per-request rows and the
 * per-step log, shared by the engine's serving loop (engine_run.c) and the
 * simulator (sim.c, sim_result.c).  Not part of any public API. */
#ifndef LLMLAB_RUN_RESULT_H
#define LLMLAB_RUN_RESULT_H

#include "engine.h"
#include "error.h"

/* ---- per-request columns ---------------------------------------------------------------- */

/* What one request did. */
typedef struct {
    int id, prompt_len, output_len, forwards, cancelled, preemptions, recomputed, swaps;
    double arrival, admit, first, finish; /* seconds from the run's start; -1: never */
} llmlab_run_row;

/* Allocates r's n_reqs per-request columns (zeroed; output too when with_output). */
llmlab_status llmlab_run_result_alloc_requests(llmlab_run_result *r, int with_output, llmlab_err *err);

/* Writes request i's row and adds it to the run totals (prompt and output
 * tokens, target forwards, preemptions, recomputed tokens, swaps, cancelled). */
void llmlab_run_result_put(llmlab_run_result *r, int i, const llmlab_run_row *x);

/* Hands the per-token columns ([n] each) to r, which frees them. */
void llmlab_run_result_take_tokens(llmlab_run_result *r, int n, int *req, int *index, int32_t *tok, double *t);

/* ---- per-step log ----------------------------------------------------------------------- */

/* What one iteration did (the result's step_* columns). */
typedef struct {
    double start, dt, kv_bytes;
    int tokens, seqs, blocks, accepted, prefill, decode, context, preempted, swap_in, swap_out;
} llmlab_step_row;

/* The step log, grown by doubling so a run never reallocates per step. */
typedef struct {
    int n, cap;
    double *start, *dt, *kv_bytes; /* [cap] */
    int *tokens, *seqs, *blocks, *accepted, *prefill, *decode, *context, *preempted, *swap_in, *swap_out; /* [cap] */
} llmlab_step_log;

/* Appends a row (the first growth makes room for first_cap); -1 when out of memory. */
int llmlab_step_log_push(llmlab_step_log *L, const llmlab_step_row *x, int first_cap);
void llmlab_step_log_free(llmlab_step_log *L);
/* Moves the log into r's n_steps and step_* columns (a run of no steps still gets
 * non-NULL columns) and leaves L empty. */
llmlab_status llmlab_step_log_move(llmlab_step_log *L, llmlab_run_result *r, llmlab_err *err);

#endif
