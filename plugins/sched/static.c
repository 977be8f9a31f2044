/* static.c - request-level (static) batching as FasterTransformer serves.
 *
 * A batch forms from the arrived requests in arrival order: up to max_batch of
 * them (and max_seqs), while each one's whole lifetime of KV (prompt + max_new +
 * one step's drafts) fits in the free blocks less the watermark.  With max_wait_s
 * > 0 the batch waits, up to that long after its oldest request arrived, for
 * max_batch requests to be there.  The batch then runs its context phase (every
 * member's prompt, in budget-sized chunks; no decoding meanwhile) and its
 * generation phase (every member decodes, in lockstep) until its last member
 * finishes; nobody joins mid-batch, so short requests wait for the longest one.
 * Members are kept by request id (the view lists only live requests).
 *
 * Difference from fcfs: fcfs is the simplest baseline and starts a batch with
 * whatever has arrived, mixing prefill chunks and decodes in one iteration; static
 * reproduces FasterTransformer's request-level batching (a batch may wait to
 * fill, separate context and generation phases) as the baseline that Orca and
 * vLLM compare against. */
#include <stdlib.h>

#include "llmlab/plugin.h"
#include "plugins/builtins.h"
#include "plugins/sched/sched_util.h"

typedef struct {
    const llmlab_host *h;
    int max_batch;
    double max_wait_s;
    int *members;        /* [max_batch] request ids of the current batch, ascending */
    int n_members;
    llmlab_su_buf handled, live;
} static_state;

static llmlab_status static_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    static_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->max_batch = (int)h->param_int(p, "max_batch");
    s->max_wait_s = h->param_float(p, "max_wait_s");
    s->members = h->alloc(sizeof(int) * (size_t)s->max_batch);
    if (!s->members) {
        h->free(s);
        return LLMLAB_ENOMEM;
    }
    *self = s;
    return LLMLAB_OK;
}

static void static_destroy(void *self) {
    static_state *s = self;
    if (!s) return;
    llmlab_su_buf_free(s->h, &s->handled);
    llmlab_su_buf_free(s->h, &s->live);
    s->h->free(s->members);
    s->h->free(s);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int is_member(const static_state *s, int id) {
    return bsearch(&id, s->members, (size_t)s->n_members, sizeof(int), cmp_int) != NULL;
}

/* Blocks a request may use over its whole life (static batches never preempt). */
static int lifetime_blocks(const llmlab_sched_view *v, int i) {
    const llmlab_sched_req *r = &v->reqs[i];
    return llmlab_su_blocks_of(r->prompt_len + r->max_new + v->decode_tokens, v->kv_block_size);
}

/* Forms the next batch, or leaves it empty while it waits to fill. */
static void form_batch(static_state *s, const llmlab_sched_view *v) {
    int cap = s->max_batch < v->max_seqs ? s->max_batch : v->max_seqs;
    int room = v->kv_blocks_free - llmlab_su_watermark(v), waiting = 0, oldest = -1, fits = 1, n = 0;
    for (int i = 0; i < v->n_reqs && n < cap; i++) {
        if (v->reqs[i].state != LLMLAB_REQ_WAITING) continue;
        waiting++;
        if (oldest < 0) oldest = i;
        if (!fits) continue;
        int need = lifetime_blocks(v, i);
        if (need > room) { /* first come, first served: never jump the queue */
            fits = 0;
            continue;
        }
        room -= need;
        s->members[n++] = v->reqs[i].id;
    }
    /* The watermark is waived for a lone request when nothing runs (as the engine does). */
    if (n == 0 && oldest >= 0 && lifetime_blocks(v, oldest) <= v->kv_blocks_free) s->members[n++] = v->reqs[oldest].id;
    /* Wait for the batch to fill only while it could still grow. */
    if (n < cap && fits && oldest >= 0 && v->now_s - v->reqs[oldest].arrival_s < s->max_wait_s) n = 0;
    qsort(s->members, (size_t)n, sizeof(int), cmp_int);
    s->n_members = n;
}

static llmlab_status static_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                     llmlab_err *err) {
    static_state *s = self;
    size_t n = (size_t)v->n_reqs;
    uint8_t *live = llmlab_su_buf_get(s->h, &s->live, n), *handled = llmlab_su_buf_get(s->h, &s->handled, n);
    if (!live || !handled) return LLMLAB_ENOMEM;
    int n_live = 0, context = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        llmlab_req_state st = v->reqs[i].state;
        live[i] = st != LLMLAB_REQ_FINISHED && st != LLMLAB_REQ_FUTURE && is_member(s, v->reqs[i].id);
        n_live += live[i];
    }
    if (n_live == 0) {
        form_batch(s, v);
        for (int i = 0; i < v->n_reqs; i++) {
            live[i] = v->reqs[i].state == LLMLAB_REQ_WAITING && is_member(s, v->reqs[i].id);
            n_live += live[i];
        }
    }
    for (int i = 0; i < v->n_reqs; i++)
        context |= live[i] && (v->reqs[i].state != LLMLAB_REQ_RUNNING || llmlab_su_in_prefill(&v->reqs[i]));
    llmlab_su_ledger L;
    llmlab_su_begin(&L, v, plan, v->token_budget, handled);
    /* Context phase: prompts only; generation phase: every member decodes. */
    for (int i = 0; i < v->n_reqs; i++) {
        if (!live[i]) continue;
        int prefill = v->reqs[i].state != LLMLAB_REQ_RUNNING || llmlab_su_in_prefill(&v->reqs[i]);
        if (prefill == context) llmlab_su_try_run(&L, i, v->token_budget);
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), static_create, static_destroy, static_schedule,
                                     NULL};

static const llmlab_param_spec params[] = {
    {"max_batch", LLMLAB_PARAM_INT, "8", 1, 4096, NULL, "requests batched together"},
    {"max_wait_s", LLMLAB_PARAM_FLOAT, "0", 0, 1e9, NULL,
     "how long a batch may wait (from its oldest request's arrival) to fill up to max_batch"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "static", "1.0",
    "FasterTransformer request-level batching: a batch (which may wait max_wait_s to fill) prefills, then decodes "
    "in lockstep until its last member finishes; unlike fcfs, waits to fill and never mixes phases",
    params, 2, &ops);

const llmlab_plugin_desc *llmlab_builtin_static(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
