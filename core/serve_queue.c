/* serve_queue.c - arrivals, closed-loop releases, cancellation and the live index
 * of the serving loop (serve.h).
 *
 * Arrivals and closed-loop releases are arrivals.c's (shared with the
 * simulator), keyed on each llmlab_seq's arrival_s.  Arrived,
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
    R->vseq = malloc(N * sizeof *R->vseq);
    if (!R->vseq) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for the serving state of %d requests", n);
    return llmlab_view_bufs_alloc(&R->vb, n, "serving loop", err);
}

void serve_free(serve_run *R) {
    llmlab_arrivals_free(&R->arr);
    llmlab_view_bufs_free(&R->vb);
    free(R->vseq);
    memset(R, 0, sizeof *R);
}

/* ---- arrivals and the closed loop ----------------------------------------------------- */

llmlab_status serve_queue_init(serve_run *R, llmlab_err *err) {
    for (int i = 0; i < R->n; i++) {
        if (!(R->reqs[i].cancel_after_s >= 0))
            return llmlab_err_set(err, LLMLAB_EINVAL, "request %d: cancel_after_s %g must be >= 0 (0 = never)",
                                  R->reqs[i].id, R->reqs[i].cancel_after_s);
        llmlab_seq *s = &R->seqs[i];
        R->vb.vpos[i] = -1;
        s->index = i;
        s->state = LLMLAB_REQ_FUTURE;
        s->cancel_s = -1;
    }
    return llmlab_arrivals_init(&R->arr, R->reqs, R->n, &R->seqs[0].arrival_s, sizeof R->seqs[0], NULL, err);
}

/* ---- arrivals, cancellation, retirement ------------------------------------------------ */

void serve_arrivals(serve_run *R, double now) {
    for (int i; (i = llmlab_arrivals_pop(&R->arr, now)) >= 0;) {
        llmlab_seq *s = &R->seqs[i];
        double after = R->reqs[i].cancel_after_s;
        s->state = LLMLAB_REQ_WAITING;
        s->cancel_s = after > 0 ? s->arrival_s + after : -1;
        if (s->max_new == 0) serve_retire(R, s, s->arrival_s, 0); /* nothing to generate */
        else R->vb.live[R->n_live++] = i;
    }
}

void serve_cancellations(serve_run *R, double now) {
    for (int k = 0; k < R->n_live; k++) {
        llmlab_seq *s = &R->seqs[R->vb.live[k]];
        if (s->state != LLMLAB_REQ_FINISHED && s->cancel_s >= 0 && now >= s->cancel_s) serve_retire(R, s, now, 1);
    }
}

void serve_compact(serve_run *R) {
    int w = 0;
    for (int k = 0; k < R->n_live; k++)
        if (R->seqs[R->vb.live[k]].state != LLMLAB_REQ_FINISHED) R->vb.live[w++] = R->vb.live[k];
    R->n_live = w;
}

double serve_next_event(const serve_run *R) {
    double t = llmlab_arrivals_next(&R->arr);
    for (int k = 0; k < R->n_live; k++) {
        double c = R->seqs[R->vb.live[k]].cancel_s;
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
    llmlab_arrivals_release(&R->arr, s->index, now);
}
