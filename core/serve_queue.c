/* serve_queue.c - arrivals, closed-loop releases, cancellation and the live index
 * of the serving loop (serve.h).
 *
 * Requests whose arrival time is known wait on a min-heap keyed by (arrival_s,
 * list index); a closed-loop request (released_by = k) has no arrival time until
 * request k - 1 leaves the run, and waits on k - 1's release list.  Arrived,
 * unfinished requests form the live index in arrival order: the only requests an
 * iteration looks at, so a run of 100k requests costs what is live per step. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "serve.h"

llmlab_status serve_alloc(serve_run *R, llmlab_engine *e, llmlab_seq *seqs, const llmlab_request *reqs, int n,
                          llmlab_err *err) {
    memset(R, 0, sizeof *R);
    R->e = e;
    R->seqs = seqs;
    R->reqs = reqs;
    R->n = n;
    size_t N = (size_t)(n > 0 ? n : 1);
    R->heap = malloc(N * sizeof *R->heap);
    R->rel_first = malloc(N * sizeof *R->rel_first);
    R->rel_next = malloc(N * sizeof *R->rel_next);
    R->live = malloc(N * sizeof *R->live);
    R->vseq = malloc(N * sizeof *R->vseq);
    R->vpos = malloc(N * sizeof *R->vpos);
    R->vreq = calloc(N, sizeof *R->vreq);
    R->held = calloc(N, sizeof *R->held);
    R->pred = calloc(N, sizeof *R->pred);
    R->plan = calloc(N, sizeof *R->plan);
    R->need = calloc(N, sizeof *R->need);
    R->preempt = calloc(N, 1);
    if (!R->heap || !R->rel_first || !R->rel_next || !R->live || !R->vseq || !R->vpos || !R->vreq || !R->held ||
        !R->pred || !R->plan || !R->need || !R->preempt)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for the serving state of %d requests", n);
    return LLMLAB_OK;
}

void serve_free(serve_run *R) {
    void *bufs[] = {R->heap, R->rel_first, R->rel_next, R->live, R->vseq, R->vpos,
                    R->vreq, R->held, R->pred, R->plan, R->need, R->preempt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(R, 0, sizeof *R);
}

/* ---- the arrival heap ---------------------------------------------------------------- */

static int earlier(const serve_run *R, int a, int b) {
    double ta = R->seqs[a].arrival_s, tb = R->seqs[b].arrival_s;
    return ta < tb || (ta == tb && a < b);
}

static void heap_push(serve_run *R, int i) {
    int k = R->n_heap++;
    while (k > 0 && earlier(R, i, R->heap[(k - 1) / 2])) {
        R->heap[k] = R->heap[(k - 1) / 2];
        k = (k - 1) / 2;
    }
    R->heap[k] = i;
}

static int heap_pop(serve_run *R) {
    int top = R->heap[0], last = R->heap[--R->n_heap], k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= R->n_heap) break;
        if (c + 1 < R->n_heap && earlier(R, R->heap[c + 1], R->heap[c])) c++;
        if (!earlier(R, R->heap[c], last)) break;
        R->heap[k] = R->heap[c];
        k = c;
    }
    if (R->n_heap > 0) R->heap[k] = last;
    return top;
}

/* ---- closed loop ----------------------------------------------------------------------- */

/* Every chain of released_by links must end at an open-loop request, or its
 * requests would never arrive.  color: 0 unseen, 1 on the walk, 2 fine. */
static llmlab_status check_chains(const serve_run *R, uint8_t *color, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        int j = i;
        while (color[j] == 0 && R->reqs[j].released_by > 0) {
            color[j] = 1;
            j = R->reqs[j].released_by - 1;
        }
        if (color[j] == 1)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "request %d: its closed-loop chain (released_by) comes back to request %d: "
                                  "none of them would ever arrive", R->reqs[i].id, R->reqs[j].id);
        for (j = i; color[j] != 2; j = R->reqs[j].released_by > 0 ? R->reqs[j].released_by - 1 : j) color[j] = 2;
    }
    return LLMLAB_OK;
}

llmlab_status serve_queue_init(serve_run *R, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        int k = R->reqs[i].released_by;
        if (k < 0 || k > R->n || k - 1 == i)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "request %d (list index %d): released_by %d must be 0 (open loop) or the list "
                                  "index + 1 of another request (1..%d)", R->reqs[i].id, i, k, R->n);
        if (R->reqs[i].cancel_after_s < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "request %d: cancel_after_s %g must be >= 0 (0 = never)",
                                  R->reqs[i].id, R->reqs[i].cancel_after_s);
        R->rel_first[i] = R->rel_next[i] = R->vpos[i] = -1;
    }
    uint8_t *color = calloc((size_t)(R->n > 0 ? R->n : 1), 1);
    if (!color) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status st = check_chains(R, color, err);
    free(color);
    if (st) return st;
    /* Release lists in list order: requests released together arrive in that order. */
    for (int i = R->n - 1; i >= 0; i--) {
        llmlab_seq *s = &R->seqs[i];
        s->index = i;
        s->state = LLMLAB_REQ_FUTURE;
        s->cancel_s = -1;
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

/* ---- arrivals, cancellation, retirement ------------------------------------------------ */

void serve_arrivals(serve_run *R, double now) {
    while (R->n_heap > 0 && R->seqs[R->heap[0]].arrival_s <= now) {
        int i = heap_pop(R);
        llmlab_seq *s = &R->seqs[i];
        double after = R->reqs[i].cancel_after_s;
        s->state = LLMLAB_REQ_WAITING;
        s->cancel_s = after > 0 ? s->arrival_s + after : -1;
        if (s->max_new == 0) serve_retire(R, s, s->arrival_s, 0); /* nothing to generate */
        else R->live[R->n_live++] = i;
    }
}

void serve_cancellations(serve_run *R, double now) {
    for (int k = 0; k < R->n_live; k++) {
        llmlab_seq *s = &R->seqs[R->live[k]];
        if (s->state != LLMLAB_REQ_FINISHED && s->cancel_s >= 0 && now >= s->cancel_s) serve_retire(R, s, now, 1);
    }
}

void serve_compact(serve_run *R) {
    int w = 0;
    for (int k = 0; k < R->n_live; k++)
        if (R->seqs[R->live[k]].state != LLMLAB_REQ_FINISHED) R->live[w++] = R->live[k];
    R->n_live = w;
}

double serve_next_event(const serve_run *R) {
    double t = R->n_heap > 0 ? R->seqs[R->heap[0]].arrival_s : -1;
    for (int k = 0; k < R->n_live; k++) {
        double c = R->seqs[R->live[k]].cancel_s;
        if (c >= 0 && (t < 0 || c < t)) t = c;
    }
    return t;
}

void serve_retire(serve_run *R, llmlab_seq *s, double now, int cancelled) {
    if (s->state == LLMLAB_REQ_SWAPPED) llmlab_kv_swap_drop(&R->e->swap, &s->swapped);
    s->cancelled = cancelled;
    s->state = LLMLAB_REQ_FINISHED;
    s->finish_s = now;
    serve_release(R->e, s);
    R->n_done++;
    for (int j = R->rel_first[s->index]; j >= 0; j = R->rel_next[j]) {
        R->seqs[j].arrival_s = now + R->reqs[j].arrival_s;
        heap_push(R, j);
    }
}
