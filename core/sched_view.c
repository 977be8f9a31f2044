/* sched_view.c - see sched_view.h. */
#include "sched_view.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

llmlab_status llmlab_view_bufs_alloc(llmlab_view_bufs *b, int n, const char *who, llmlab_err *err) {
    size_t N = (size_t)(n > 0 ? n : 1);
    memset(b, 0, sizeof *b);
    b->live = malloc(N * sizeof *b->live);
    b->vpos = calloc(N, sizeof *b->vpos);
    b->vreq = calloc(N, sizeof *b->vreq);
    b->held = calloc(N, sizeof *b->held);
    b->pred = calloc(N, sizeof *b->pred);
    b->plan = calloc(N, sizeof *b->plan);
    b->need = calloc(N, sizeof *b->need);
    b->preempt = calloc(N, 1);
    if (!b->live || !b->vpos || !b->vreq || !b->held || !b->pred || !b->plan || !b->need || !b->preempt) {
        llmlab_view_bufs_free(b);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory for the scheduler view of %d requests", who, n);
    }
    return LLMLAB_OK;
}

void llmlab_view_bufs_free(llmlab_view_bufs *b) {
    free(b->live);
    free(b->vpos);
    free(b->vreq);
    free(b->held);
    free(b->pred);
    free(b->plan);
    free(b->need);
    free(b->preempt);
    memset(b, 0, sizeof *b);
}
