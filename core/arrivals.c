/* arrivals.c - the open-loop arrival heap and closed-loop release lists of a run
 * (arrivals.h). */
#include "arrivals.h"

#include <stdint.h>
#include <stdlib.h>

static double time_of(const llmlab_arrivals *A, int i) { return *(const double *)(A->at + (size_t)i * A->stride); }

static int earlier(const llmlab_arrivals *A, int a, int b) {
    double ta = time_of(A, a), tb = time_of(A, b);
    return ta < tb || (ta == tb && a < b);
}

static void heap_push(llmlab_arrivals *A, int i) {
    int k = A->n_heap++;
    for (; k > 0 && earlier(A, i, A->heap[(k - 1) / 2]); k = (k - 1) / 2) A->heap[k] = A->heap[(k - 1) / 2];
    A->heap[k] = i;
}

static int heap_pop(llmlab_arrivals *A) {
    int top = A->heap[0], last = A->heap[--A->n_heap], k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= A->n_heap) break;
        if (c + 1 < A->n_heap && earlier(A, A->heap[c + 1], A->heap[c])) c++;
        if (!earlier(A, A->heap[c], last)) break;
        A->heap[k] = A->heap[c];
        k = c;
    }
    if (A->n_heap > 0) A->heap[k] = last;
    return top;
}

/* Walks each chain once.  mark: 0 unseen, 1 on the current walk, 2 known to end
 * at an open-loop request. */
static llmlab_status check_loops(const llmlab_request *reqs, int n, uint8_t *mark, const char *pre, const char *who,
                                 llmlab_err *err) {
    for (int i = 0; i < n; i++) {
        int j = i;
        while (mark[j] == 0 && reqs[j].released_by > 0) {
            mark[j] = 1;
            j = reqs[j].released_by - 1;
        }
        if (mark[j] == 1)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s%srequest %d: its closed-loop chain (released_by) comes "
                                  "back to request %d: none of them would ever arrive", who, pre, reqs[i].id,
                                  reqs[j].id);
        for (j = i; mark[j] != 2; j = reqs[j].released_by > 0 ? reqs[j].released_by - 1 : j) mark[j] = 2;
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_check_release_chains(const llmlab_request *reqs, int n, const char *who, llmlab_err *err) {
    const char *pre = who ? ": " : "";
    who = who ? who : "";
    for (int i = 0; i < n; i++) {
        int k = reqs[i].released_by;
        if (k < 0 || k > n || k - 1 == i)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s%srequest %d (list index %d): released_by %d must be 0 "
                                  "(open loop) or the list index + 1 of another request (1..%d)", who, pre,
                                  reqs[i].id, i, k, n);
    }
    uint8_t *mark = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!mark) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s%sout of memory", who, pre);
    llmlab_status st = check_loops(reqs, n, mark, pre, who, err);
    free(mark);
    return st;
}

llmlab_status llmlab_arrivals_init(llmlab_arrivals *A, const llmlab_request *reqs, int n, double *time, size_t stride,
                                   const char *who, llmlab_err *err) {
    *A = (llmlab_arrivals){.reqs = reqs, .n = n, .at = (char *)time, .stride = stride};
    llmlab_status st = llmlab_check_release_chains(reqs, n, who, err);
    if (st) return st;
    size_t N = (size_t)(n > 0 ? n : 1);
    A->heap = malloc(N * sizeof *A->heap);
    A->rel_first = malloc(N * sizeof *A->rel_first);
    A->rel_next = malloc(N * sizeof *A->rel_next);
    if (!A->heap || !A->rel_first || !A->rel_next)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s%sout of memory for the arrivals of %d requests",
                              who ? who : "", who ? ": " : "", n);
    for (int i = 0; i < n; i++) A->rel_first[i] = A->rel_next[i] = -1;
    for (int i = n - 1; i >= 0; i--) { /* release lists in list order: released together, arrive in that order */
        int k = reqs[i].released_by;
        if (k > 0) {
            A->rel_next[i] = A->rel_first[k - 1];
            A->rel_first[k - 1] = i;
        }
    }
    for (int i = 0; i < n; i++)
        if (reqs[i].released_by == 0) heap_push(A, i);
    return LLMLAB_OK;
}

void llmlab_arrivals_free(llmlab_arrivals *A) {
    free(A->heap);
    free(A->rel_first);
    free(A->rel_next);
    A->heap = A->rel_first = A->rel_next = NULL;
    A->n_heap = 0;
}

double llmlab_arrivals_next(const llmlab_arrivals *A) { return A->n_heap > 0 ? time_of(A, A->heap[0]) : -1; }

int llmlab_arrivals_pop(llmlab_arrivals *A, double now) {
    return A->n_heap > 0 && time_of(A, A->heap[0]) <= now ? heap_pop(A) : -1;
}

void llmlab_arrivals_release(llmlab_arrivals *A, int i, double now) {
    for (int j = A->rel_first[i]; j >= 0; j = A->rel_next[j]) {
        *(double *)(A->at + (size_t)j * A->stride) = now + A->reqs[j].arrival_s;
        heap_push(A, j);
    }
}
