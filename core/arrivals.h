/* arrivals.h - when the requests of a run arrive: the open-loop arrival heap and
 * the closed-loop release lists, shared by the engine's serving loop
 * (serve_queue.c) and the simulator (sim_queue.c).  Not part of any public API.
 *
 * Requests whose arrival time is known wait on a min-heap keyed by (arrival
 * time, list index); a closed-loop request (released_by = k) has no arrival time
 * until request k - 1 leaves the run, and then arrives its own arrival_s later. */
#ifndef LLMLAB_ARRIVALS_H
#define LLMLAB_ARRIVALS_H

#include <stddef.h>

#include "engine.h"
#include "error.h"

typedef struct {
    const llmlab_request *reqs; /* [n] the caller's list */
    int n;
    /* Request i's arrival time lives in the caller's per-request record, at
     * at + i * stride bytes (read for ordering, written on release), so the
     * heap keeps no copy that could drift from it. */
    char *at;
    size_t stride;
    int *heap, n_heap;          /* [n] requests with a known arrival: min-heap on (time, index) */
    int *rel_first, *rel_next;  /* [n] requests released by request k, a linked list in list order (-1 ends) */
} llmlab_arrivals;

/* Every released_by must be 0 (open loop) or the list index + 1 of another
 * request, and every chain of links must end at an open-loop request (else none
 * of its requests would ever arrive).  who prefixes the message ("simulate"), or
 * NULL. */
llmlab_status llmlab_check_release_chains(const llmlab_request *reqs, int n, const char *who, llmlab_err *err);

/* Checks the chains, builds the release lists and puts the open-loop requests
 * on the heap.  time points at request 0's arrival time (already set to its
 * arrival_s) in records stride bytes apart.  A zeroed A may be freed. */
llmlab_status llmlab_arrivals_init(llmlab_arrivals *A, const llmlab_request *reqs, int n, double *time, size_t stride,
                                   const char *who, llmlab_err *err);
void llmlab_arrivals_free(llmlab_arrivals *A);

/* The earliest known arrival time, -1 when none is known. */
double llmlab_arrivals_next(const llmlab_arrivals *A);
/* Takes the earliest request arriving at or before now off the heap; -1 if none. */
int llmlab_arrivals_pop(llmlab_arrivals *A, double now);
/* Request i left the run at now: the requests it releases arrive their own
 * arrival_s later. */
void llmlab_arrivals_release(llmlab_arrivals *A, int i, double now);

#endif
