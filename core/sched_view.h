/* sched_view.h - the per-run buffers behind a scheduler's view, shared by the
 * real serving loop (serve_*.c) and the simulator (sim*.c): both build the same
 * llmlab_sched_view from a live index, so they keep the same arrays. */
#ifndef LLMLAB_SCHED_VIEW_H
#define LLMLAB_SCHED_VIEW_H

#include <stdint.h>

#include "llmlab/plugin.h"

typedef struct {
    int *live;              /* [n] arrived, unfinished requests (list indices), arrival order */
    int *vpos;              /* [n] view entry of each request (valid while it is in the view) */
    llmlab_sched_req *vreq; /* [n] the view's requests */
    int *held, *pred;       /* [n] blocks_held, predicted_out of each view entry */
    int *plan;              /* [n] run_tokens of the plan */
    int *need;              /* [n] KV blocks each scheduled entry takes this step */
    uint8_t *preempt;       /* [n] the plan's preempt */
} llmlab_view_bufs;

/* Allocates every buffer for n requests; ENOMEM naming `who` and n. */
llmlab_status llmlab_view_bufs_alloc(llmlab_view_bufs *b, int n, const char *who, llmlab_err *err);
void llmlab_view_bufs_free(llmlab_view_bufs *b); /* safe on a zeroed struct */

#endif
