/* sim_queue.c - the simulator's arrivals, closed-loop releases, cancellations and
 * live index (the engine's serve_queue.c rules on the simulated clock).
 *
 * Requests with a known arrival wait on a min-heap keyed by (arrival, list
 * index); a closed-loop request (released_by = k) gets its arrival when request
 * k - 1 leaves the run.  Arrived, unfinished requests form the live index in
 * arrival order. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sim_internal.h"

static int before(const sim_run *R, int a, int b) {
    double ta = R->q[a].arrival, tb = R->q[b].arrival;
    return ta < tb || (ta == tb && a < b);
}

static void heap_push(sim_run *R, int i) {
    int k = R->n_heap++;
    for (; k > 0 && before(R, i, R->heap[(k - 1) / 2]); k = (k - 1) / 2) R->heap[k] = R->heap[(k - 1) / 2];
    R->heap[k] = i;
}

static int heap_pop(sim_run *R) {
    int top = R->heap[0], last = R->heap[--R->n_heap], k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= R->n_heap) break;
        if (c + 1 < R->n_heap && before(R, R->heap[c + 1], R->heap[c])) c++;
        if (!before(R, R->heap[c], last)) break;
        R->heap[k] = R->heap[c];
        k = c;
    }
    if (R->n_heap > 0) R->heap[k] = last;
    return top;
}

/* Every released_by chain must end at an open-loop request.  mark: 0 unseen,
 * 1 on the current walk, 2 known to end well. */
static llmlab_status check_chains(const sim_run *R, uint8_t *mark, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        int j = i;
        while (mark[j] == 0 && R->reqs[j].released_by > 0) {
            mark[j] = 1;
            j = R->reqs[j].released_by - 1;
        }
        if (mark[j] == 1)
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d: its released_by chain loops back to "
                                  "request %d, so none of them would arrive", R->reqs[i].id, R->reqs[j].id);
        for (j = i; mark[j] != 2;) {
            mark[j] = 2;
            if (R->reqs[j].released_by > 0) j = R->reqs[j].released_by - 1;
        }
    }
    return LLMLAB_OK;
}

llmlab_status sim_queue_init(sim_run *R, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        const llmlab_request *r = &R->reqs[i];
        if (r->released_by < 0 || r->released_by > R->n || r->released_by - 1 == i)
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d (list index %d): released_by %d must be "
                                  "0 (open loop) or the list index + 1 of another request (1..%d)", r->id, i,
                                  r->released_by, R->n);
        if (!(r->cancel_after_s >= 0))
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d: cancel_after_s %g must be >= 0 (0 = "
                                  "never)", r->id, r->cancel_after_s);
        R->rel_first[i] = R->rel_next[i] = -1;
        R->q[i] = (sim_req){.state = LLMLAB_REQ_FUTURE, .arrival = r->arrival_s, .admit = -1, .first = -1,
                            .finish = -1, .cancel_at = -1};
    }
    uint8_t *mark = calloc((size_t)(R->n > 0 ? R->n : 1), 1);
    if (!mark) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status st = check_chains(R, mark, err);
    free(mark);
    if (st) return st;
    for (int i = R->n - 1; i >= 0; i--) { /* release lists in list order */
        int k = R->reqs[i].released_by;
        if (k > 0) {
            R->rel_next[i] = R->rel_first[k - 1];
            R->rel_first[k - 1] = i;
        }
    }
    for (int i = 0; i < R->n; i++)
        if (R->reqs[i].released_by == 0) heap_push(R, i);
    return LLMLAB_OK;
}

void sim_arrivals(sim_run *R, double now) {
    while (R->n_heap > 0 && R->q[R->heap[0]].arrival <= now) {
        int i = heap_pop(R);
        sim_req *q = &R->q[i];
        double after = R->reqs[i].cancel_after_s;
        q->state = LLMLAB_REQ_WAITING;
        q->cancel_at = after > 0 ? q->arrival + after : -1;
        if (R->reqs[i].max_new == 0) sim_retire(R, i, q->arrival, 0); /* nothing to generate */
        else R->live[R->n_live++] = i;
    }
}

void sim_cancellations(sim_run *R, double now) {
    for (int k = 0; k < R->n_live; k++) {
        int i = R->live[k];
        if (R->q[i].state != LLMLAB_REQ_FINISHED && R->q[i].cancel_at >= 0 && now >= R->q[i].cancel_at)
            sim_retire(R, i, now, 1);
    }
}

void sim_compact(sim_run *R) {
    int w = 0;
    for (int k = 0; k < R->n_live; k++)
        if (R->q[R->live[k]].state != LLMLAB_REQ_FINISHED) R->live[w++] = R->live[k];
    R->n_live = w;
}

double sim_next_event(const sim_run *R) {
    double t = R->n_heap > 0 ? R->q[R->heap[0]].arrival : -1;
    for (int k = 0; k < R->n_live; k++) {
        double c = R->q[R->live[k]].cancel_at;
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
    for (int j = R->rel_first[i]; j >= 0; j = R->rel_next[j]) {
        R->q[j].arrival = now + R->reqs[j].arrival_s;
        heap_push(R, j);
    }
}
