/* sim_queue.c - the simulator's arrivals, closed-loop releases, cancellations and
 * live index (the engine's serve_queue.c rules on the simulated clock).
 *
 * Arrivals and closed-loop releases are arrivals.c's (shared with the engine),
 * keyed on each sim_req's arrival.  Arrived, unfinished requests form the live index in
 * arrival order. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sim_internal.h"

llmlab_status sim_queue_init(sim_run *R, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        const llmlab_request *r = &R->reqs[i];
        if (!(r->cancel_after_s >= 0))
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d: cancel_after_s %g must be >= 0 (0 = "
                                  "never)", r->id, r->cancel_after_s);
        R->q[i] = (sim_req){.state = LLMLAB_REQ_FUTURE, .arrival = r->arrival_s, .admit = -1, .first = -1,
                            .finish = -1, .cancel_at = -1};
    }
    return llmlab_arrivals_init(&R->arr, R->reqs, R->n, &R->q[0].arrival, sizeof R->q[0], "simulate", err);
}

void sim_arrivals(sim_run *R, double now) {
    for (int i; (i = llmlab_arrivals_pop(&R->arr, now)) >= 0;) {
        sim_req *q = &R->q[i];
        double after = R->reqs[i].cancel_after_s;
        q->state = LLMLAB_REQ_WAITING;
        q->cancel_at = after > 0 ? q->arrival + after : -1;
        if (R->reqs[i].max_new == 0) sim_retire(R, i, q->arrival, 0); /* nothing to generate */
        else R->vb.live[R->n_live++] = i;
    }
}

void sim_cancellations(sim_run *R, double now) {
    for (int k = 0; k < R->n_live; k++) {
        int i = R->vb.live[k];
        if (R->q[i].state != LLMLAB_REQ_FINISHED && R->q[i].cancel_at >= 0 && now >= R->q[i].cancel_at)
            sim_retire(R, i, now, 1);
    }
}

void sim_compact(sim_run *R) {
    int w = 0;
    for (int k = 0; k < R->n_live; k++)
        if (R->q[R->vb.live[k]].state != LLMLAB_REQ_FINISHED) R->vb.live[w++] = R->vb.live[k];
    R->n_live = w;
}

double sim_next_event(const sim_run *R) {
    double t = llmlab_arrivals_next(&R->arr);
    for (int k = 0; k < R->n_live; k++) {
        double c = R->q[R->vb.live[k]].cancel_at;
        if (c >= 0 && (t < 0 || c < t)) t = c;
    }
    return t;
}

void sim_retire(sim_run *R, int i, double now, int cancelled) {
    sim_req *q = &R->q[i];
    if (q->state == LLMLAB_REQ_SWAPPED) R->swap_free += q->held;
    else if (q->state == LLMLAB_REQ_RUNNING) R->free_blocks += q->held, R->n_running--;
    q->held = 0;
    q->cancelled = cancelled;
    R->cancelled += cancelled;
    q->state = LLMLAB_REQ_FINISHED;
    q->finish = now;
    R->n_done++;
    llmlab_arrivals_release(&R->arr, i, now);
}
