/* serve.h - the serving loop's run state, shared by engine_run.c (the iteration
 * loop), serve_queue.c (arrivals, closed loop, cancellation, the live index) and
 * serve_blocks.c (the block manager: admission, watermark, preemption by
 * recompute or swap).  Not part of any public API; docs/serving.md describes the
 * behaviour. */
#ifndef LLMLAB_SERVE_H
#define LLMLAB_SERVE_H

#include "arrivals.h"
#include "engine_internal.h"
#include "sched_view.h"

/* One run's serving state.  Per-iteration work is proportional to the live
 * requests: arrivals come off a heap, finished requests leave the live index. */
typedef struct {
    llmlab_engine *e;
    llmlab_seq *seqs;          /* [n] in request-list order */
    const llmlab_request *reqs; /* [n] the caller's list */
    int n;
    /* arrivals */
    llmlab_arrivals arr;       /* keyed on seqs[i].arrival_s; closed-loop release lists */
    /* the live index */
    llmlab_view_bufs vb;       /* live index (WAITING/RUNNING/SWAPPED, arrival order) and the view's buffers */
    int n_live;
    int n_done;                /* finished or cancelled */
    /* the scheduler's view; entry i stands for request vseq[i] */
    int full_view;             /* the sched plugin predates ABI 1.3: every request, list order */
    int n_view;
    llmlab_seq **vseq;         /* [n] */
    llmlab_sched_view view;
    /* counters of the step being built (reset when the step is logged) */
    int step_preempted, step_swap_in, step_swap_out;
    double swap_bytes;         /* run total */
} serve_run;

/* Tokens one decoding sequence forwards per step: the decoding plugin's maximum,
 * or exactly 1 in forced mode (llmlab_engine_score). */
static inline int serve_decode_width(const llmlab_engine *e) { return e->score_fn ? 1 : e->decode_tokens; }

/* ---- serve_queue.c ------------------------------------------------------------------ */

llmlab_status serve_alloc(serve_run *R, llmlab_engine *e, llmlab_seq *seqs, const llmlab_request *reqs, int n,
                          llmlab_err *err);
void serve_free(serve_run *R);
/* Validates closed-loop links (range, cycles) and queues every request that has a
 * known arrival. */
llmlab_status serve_queue_init(serve_run *R, llmlab_err *err);
/* Requests whose arrival time has come join the live index in arrival order. */
void serve_arrivals(serve_run *R, double now);
/* Cancels live requests whose deadline has passed. */
void serve_cancellations(serve_run *R, double now);
/* Drops finished requests from the live index (order kept). */
void serve_compact(serve_run *R);
/* The next arrival or cancellation deadline, or -1 when none. */
double serve_next_event(const serve_run *R);
/* A request leaves the run (finished, or cancelled when `cancelled`) at `now`:
 * its KV is released, and the requests it releases (closed loop) are queued. */
void serve_retire(serve_run *R, llmlab_seq *s, double now, int cancelled);

/* ---- serve_blocks.c ----------------------------------------------------------------- */

/* Reads the block-manager options into the engine (engine creation). */
llmlab_status llmlab_serve_configure(llmlab_engine *e, const llmlab_engine_opts *o, llmlab_err *err);
/* Sizes the host swap space from the options and the pool's block bytes. */
void serve_size_swap(llmlab_engine *e);
/* Fills R->view (and its arrays) for this iteration. */
void serve_build_view(serve_run *R, double now);
/* Tokens in s's cache (also while swapped out). */
int serve_computed(const llmlab_seq *s);
/* Tokens s needs in its cache before its next decode step. */
int serve_target(const llmlab_seq *s);
/* Blocks s holds, on the device or in swap. */
int serve_held(const llmlab_seq *s);
/* Frees s's KV and plugin state; s keeps its tokens. */
void serve_release(llmlab_engine *e, llmlab_seq *s);
/* Preempts a RUNNING request: mode LLMLAB_PREEMPT_SWAP swaps its cache to host
 * memory when there is room, else (and for RECOMPUTE) frees it for recompute. */
llmlab_status serve_preempt(serve_run *R, llmlab_seq *s, int mode, llmlab_err *err);
/* Carries out the plan's preempt[] (after schedule()). */
llmlab_status serve_plan_preempts(serve_run *R, llmlab_err *err);
/* Fits the plan's scheduled requests into the free KV blocks: drops admissions
 * and swap-ins that do not fit (latest arrival first; admissions also leave the
 * watermark free), then preempts running requests (pick_victim or the default)
 * until the rest fits; admits and swaps in what is left.  plan[] entries of
 * dropped or preempted requests become 0.  Errors name a request that cannot fit
 * even alone. */
llmlab_status serve_fit_plan(serve_run *R, double now, llmlab_err *err);

#endif
