/* sim_internal.h - the simulator's run state, shared by sim.c (the loop),
 * sim_queue.c (arrivals, closed loop, cancellation, the live index),
 * sim_blocks.c (the block manager) and sim_result.c (the result and its record).
 * Not part of any public API. */
#ifndef LLMLAB_SIM_INTERNAL_H
#define LLMLAB_SIM_INTERNAL_H

#include "arrivals.h"
#include "params.h"
#include "registry.h"
#include "run_result.h"
#include "sched_view.h"
#include "sim.h"

struct llmlab_sim {
    llmlab_sim_opts o;          /* sched.values cleared: p holds them */
    const llmlab_plugin_desc *d;
    llmlab_params *p;
    int block_size, max_seqs, token_budget;
    int n_blocks;               /* the device pool */
    int watermark_blocks;       /* admissions leave this many free */
    int swap_blocks;            /* host swap space; 0 = none */
    double block_bytes;         /* KV bytes of one block (swap time, kv_bytes records) */
    double swap_bw;             /* bytes/s */
    int preempt_mode;           /* LLMLAB_PREEMPT_RECOMPUTE or _SWAP */
};

/* One request's simulated state. */
typedef struct {
    llmlab_req_state state;
    int computed;               /* tokens in its cache (device, or host while SWAPPED) */
    int generated;
    int held;                   /* blocks of that cache */
    int recompute_upto;         /* positions below this are prefilled again (recompute preemption) */
    int preemptions, swaps, recomputed;
    int cancelled;
    double arrival, admit, first, finish, cancel_at; /* cancel_at < 0: never */
} sim_req;


typedef struct {
    int on, n;                  /* n <= sum of max_new: sized once */
    int *req, *index;
    int32_t *tok;               /* ids are unknown to the simulator: 0 */
    double *t;
} sim_tokens;

typedef struct {
    llmlab_sim *S;
    const llmlab_request *reqs; /* [n] */
    int n;
    sim_req *q;                 /* [n] */
    llmlab_arrivals arr;        /* keyed on q[i].arrival; closed-loop release lists */
    /* the live index: arrived, unfinished requests in arrival order */
    llmlab_view_bufs vb;        /* live index and the view's buffers (sched_view.h) */
    int n_live, n_done;
    /* the view; entry k stands for request vidx[k] */
    int full_view, n_view;
    int *vidx;                  /* [n] */
    llmlab_sched_view view;
    /* the block pools */
    int free_blocks, swap_free;
    int n_running;              /* requests holding device KV (max_seqs) */
    /* counters of the step being built */
    int step_preempted, step_swap_in, step_swap_out;
    double step_swap_s;
    long long preemptions, recomputed, swaps, cancelled;
    double swap_bytes;
    /* records */
    llmlab_step_log L;
    sim_tokens T;
    llmlab_itl_hist *itl;       /* optional */
    double *last_tok;           /* [n] time of each request's last token (with itl) */
    double end;
} sim_run;

static inline int sim_blocks_of(const llmlab_sim *S, int tokens) { return (tokens + S->block_size - 1) / S->block_size; }

/* Tokens request i needs in its cache before its next decode. */
static inline int sim_target(const sim_run *R, int i) {
    return R->q[i].generated > 0 ? R->reqs[i].prompt_len + R->q[i].generated - 1 : R->reqs[i].prompt_len;
}

/* sim.c */
void sim_view_entry(sim_run *R, int k);

/* sim_queue.c */
llmlab_status sim_queue_init(sim_run *R, llmlab_err *err);
void sim_arrivals(sim_run *R, double now);
void sim_cancellations(sim_run *R, double now);
void sim_compact(sim_run *R);
double sim_next_event(const sim_run *R);
void sim_retire(sim_run *R, int i, double now, int cancelled);

/* sim_blocks.c */
llmlab_status sim_plan_preempts(sim_run *R, llmlab_err *err);
llmlab_status sim_fit_plan(sim_run *R, void *self, double now, llmlab_err *err);

/* sim_result.c */
llmlab_status sim_collect(sim_run *R, llmlab_run_result **out, llmlab_err *err);

#endif
