/* sim_blocks.c - the simulator's block manager: the engine's serve_blocks.c rules
 * on block counts instead of a KV cache.
 *
 * A request's cache takes ceil(tokens / block_size) blocks (the real cache
 * without eviction policies).  The plan is carried out as the engine does: the
 * plan's preemptions first; then admissions and swap-ins that do not fit are
 * dropped, latest arrival first (admissions also leave the watermark free while
 * anything runs); then, while the running requests' appends still do not fit,
 * a victim is preempted (the plugin's pick_victim, else the lowest priority and
 * latest arrival) by the simulator's preempt_mode; what is left is admitted and
 * swapped in.  Swap copies cost block bytes / swap_bw each way. */
#include <stddef.h>

#include "error.h"
#include "sim_internal.h"

/* Keeps view entry k (of request i) in step with a change made while carrying
 * out the plan, so pick_victim sees the pool as it is. */
static void view_sync(sim_run *R, int k) {
    if (k < 0) return;
    sim_view_entry(R, k);
    R->view.kv_blocks_free = R->free_blocks;
    R->view.swap_blocks_free = R->swap_free;
}

static double copy_seconds(const sim_run *R, int blocks) { return blocks * R->S->block_bytes / R->S->swap_bw; }

/* Preempts running request i (view entry k, or -1): swap when asked and there is
 * room, else recompute. */
static void preempt(sim_run *R, int i, int k, int mode) {
    sim_req *q = &R->q[i];
    if (q->state != LLMLAB_REQ_RUNNING) return;
    q->preemptions++;
    R->preemptions++;
    R->step_preempted++;
    R->n_running--;
    if (mode == LLMLAB_PREEMPT_SWAP && q->held <= R->swap_free) {
        R->free_blocks += q->held;
        R->swap_free -= q->held;
        q->state = LLMLAB_REQ_SWAPPED;
        q->swaps++;
        R->swaps++;
        R->step_swap_out += q->held;
        R->step_swap_s += copy_seconds(R, q->held);
        R->swap_bytes += q->held * R->S->block_bytes;
    } else { /* recompute: the tokens stay, the cache goes */
        if (q->computed > q->recompute_upto) q->recompute_upto = q->computed;
        R->free_blocks += q->held;
        q->held = 0;
        q->computed = 0;
        q->state = LLMLAB_REQ_WAITING;
    }
    view_sync(R, k);
}

llmlab_status sim_plan_preempts(sim_run *R, llmlab_err *err) {
    for (int k = 0; k < R->n_view; k++) {
        if (!R->vb.preempt[k]) continue;
        int i = R->vidx[k];
        if (R->vb.preempt[k] > LLMLAB_PREEMPT_SWAP)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s': preempt[%d] = %d for request %d (1 = "
                                  "recompute, 2 = swap)", R->S->d->name, k, R->vb.preempt[k], R->reqs[i].id);
        if (R->q[i].state != LLMLAB_REQ_RUNNING) continue;
        preempt(R, i, k, R->vb.preempt[k]);
        R->vb.plan[k] = 0; /* a preempted request waits at least one iteration */
    }
    return LLMLAB_OK;
}

/* The view entry of request i, or -1. */
static int entry_of(const sim_run *R, int i) {
    int k = R->vb.vpos[i];
    return k >= 0 && k < R->n_view && R->vidx[k] == i ? k : -1;
}

/* The running request to preempt when blocks run out (-1: none). */
static int pick_victim(sim_run *R, void *self, llmlab_status *st, llmlab_err *err) {
    const llmlab_sched_ops *o = R->S->d->ops;
    if (!R->full_view && o->size >= offsetof(llmlab_sched_ops, pick_victim) + sizeof o->pick_victim &&
        o->pick_victim) {
        int k = o->pick_victim(self, &R->view);
        if (k >= 0) {
            if (k < R->n_view && R->q[R->vidx[k]].state == LLMLAB_REQ_RUNNING) return R->vidx[k];
            *st = llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s': pick_victim returned %d, not the index of "
                                 "a running request (view of %d)", R->S->d->name, k, R->n_view);
            return -1;
        }
    }
    int v = -1;
    for (int k = 0; k < R->n_live; k++) { /* arrival order: >= keeps the latest */
        int i = R->vb.live[k];
        if (R->q[i].state == LLMLAB_REQ_RUNNING && (v < 0 || R->reqs[i].priority >= R->reqs[v].priority)) v = i;
    }
    return v;
}

static int is_admission(const sim_req *q) { return q->state == LLMLAB_REQ_WAITING || q->state == LLMLAB_REQ_SWAPPED; }

/* Blocks request i takes from the free list this step for `tokens` more tokens
 * (a swap-in also brings its cache back). */
static int step_blocks(const sim_run *R, int i, int tokens) {
    const sim_req *q = &R->q[i];
    int grow = sim_blocks_of(R->S, q->computed + tokens) - sim_blocks_of(R->S, q->computed);
    return grow + (q->state == LLMLAB_REQ_SWAPPED ? q->held : 0);
}

/* Blocks each scheduled entry takes (need[k]); checks the token budget and that
 * a request could fit alone; sums running requests' and admissions' blocks. */
static llmlab_status count_plan(sim_run *R, int *need, int *need_run, int *need_adm, llmlab_err *err) {
    const llmlab_sim *S = R->S;
    int total = 0;
    *need_run = *need_adm = 0;
    for (int k = 0; k < R->n_view; k++) {
        int i = R->vidx[k];
        sim_req *q = &R->q[i];
        if (R->vb.plan[k] <= 0 || q->state == LLMLAB_REQ_FINISHED || q->state == LLMLAB_REQ_FUTURE) {
            R->vb.plan[k] = 0;
            continue;
        }
        int left = sim_target(R, i) - q->computed, tokens = left > 0 ? (R->vb.plan[k] < left ? R->vb.plan[k] : left) : 1;
        if ((total += tokens) > S->token_budget)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' planned more than the token budget %d (a "
                                  "decoding sequence counts 1 token)", S->d->name, S->token_budget);
        need[k] = step_blocks(R, i, tokens);
        int after = sim_blocks_of(S, q->computed + tokens);
        if (after > S->n_blocks)
            return llmlab_err_set(err, LLMLAB_ENOKV, "simulate: request %d cannot fit in the KV cache even alone: with "
                                  "this step's %d tokens it needs %d blocks (%d tokens cached), the pool has %d "
                                  "blocks of %d tokens; raise kv_tokens or shorten the request", R->reqs[i].id,
                                  tokens, after, q->computed, S->n_blocks, S->block_size);
        if (is_admission(q)) *need_adm += need[k];
        else *need_run += need[k];
    }
    return LLMLAB_OK;
}

/* Admissions and swap-ins that do not fit go, latest arrival first. */
static void drop_admissions(sim_run *R, const int *need, int need_run, int *need_adm) {
    int wm = R->view.watermark_blocks, running = R->n_running > 0;
    for (int k = R->n_view - 1; k >= 0 && *need_adm > 0; k--) {
        if (R->vb.plan[k] <= 0 || !is_admission(&R->q[R->vidx[k]])) continue;
        int left = R->free_blocks - need_run - *need_adm;
        if (left >= 0 && (left >= wm || !running)) break;
        *need_adm -= need[k];
        R->vb.plan[k] = 0;
    }
}

static llmlab_status admit(sim_run *R, int i, double now, llmlab_err *err) {
    sim_req *q = &R->q[i];
    if (R->n_running >= R->S->max_seqs)
        return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' ran more than max_seqs = %d sequences at once",
                              R->S->d->name, R->S->max_seqs);
    if (q->state == LLMLAB_REQ_SWAPPED) {
        R->swap_free += q->held;
        R->free_blocks -= q->held;
        R->step_swap_in += q->held;
        R->step_swap_s += copy_seconds(R, q->held);
        R->swap_bytes += q->held * R->S->block_bytes;
    }
    q->state = LLMLAB_REQ_RUNNING;
    R->n_running++;
    if (q->admit < 0) q->admit = now;
    return LLMLAB_OK;
}

llmlab_status sim_fit_plan(sim_run *R, void *self, double now, llmlab_err *err) {
    int *need = R->vb.need, need_run, need_adm;
    llmlab_status st = count_plan(R, need, &need_run, &need_adm, err);
    if (st) return st;
    drop_admissions(R, need, need_run, &need_adm);
    while (need_run > R->free_blocks) { /* out of blocks: preempt, then retry */
        R->view.kv_blocks_free = R->free_blocks;
        int v = pick_victim(R, self, &st, err);
        if (st) return st;
        if (v < 0)
            return llmlab_err_set(err, LLMLAB_ENOKV, "simulate: %d KV blocks needed, %d free and nothing left to "
                                  "preempt", need_run, R->free_blocks);
        int k = entry_of(R, v);
        preempt(R, v, k, R->S->preempt_mode);
        if (k >= 0 && R->vb.plan[k] > 0) {
            need_run -= need[k];
            R->vb.plan[k] = 0;
        }
    }
    /* Appends take their blocks now: the step's peak is counted before releases. */
    for (int k = 0; k < R->n_view && !st; k++) {
        if (R->vb.plan[k] <= 0) continue;
        int i = R->vidx[k], grow = need[k] - (R->q[i].state == LLMLAB_REQ_SWAPPED ? R->q[i].held : 0);
        if (is_admission(&R->q[i])) st = admit(R, i, now, err);
        if (!st) R->free_blocks -= grow;
    }
    return st;
}
