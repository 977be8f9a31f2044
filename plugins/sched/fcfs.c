/* fcfs.c - first come, first served with static (request-level) batching.
 *
 * When no member of the current batch is left, admit up to max_batch arrived
 * requests in arrival order while their whole prompt + max_new fits in the free
 * KV blocks less the watermark (the first one is admitted even when it does not:
 * the engine then preempts or names it as too large); run them until every one
 * of them finishes; only then admit the next batch.  Prompts are prefilled whole
 * when the token budget allows, else in budget-sized chunks.  A member the
 * engine preempts stays a member and resumes.  This is the simplest baseline;
 * continuous batching and the others live in their own plugins.
 *
 * State is kept by request id: since ABI 1.3 the view lists only live requests,
 * so view indices change from one iteration to the next. */
#include <stdlib.h>

#include "llmlab/plugin.h"
#include "plugins/builtins.h"

typedef struct {
    const llmlab_host *h;
    int max_batch;
    int *members;  /* [max_batch] request ids of the current static batch, ascending */
    int n_members;
} fcfs_state;

static llmlab_status fcfs_create(void **self, const llmlab_host *h, llmlab_engine *e,
                                 const llmlab_params *p, llmlab_err *err) {
    fcfs_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->max_batch = (int)h->param_int(p, "max_batch");
    s->members = h->alloc(sizeof(int) * (size_t)s->max_batch);
    if (!s->members) {
        h->free(s);
        return LLMLAB_ENOMEM;
    }
    *self = s;
    return LLMLAB_OK;
}

static void fcfs_destroy(void *self) {
    fcfs_state *s = self;
    if (!s) return;
    s->h->free(s->members);
    s->h->free(s);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int is_member(const fcfs_state *s, int id) {
    return bsearch(&id, s->members, (size_t)s->n_members, sizeof(int), cmp_int) != NULL;
}

/* KV the request can need: its tokens plus the provisional slots of one step. */
static int blocks_for(const llmlab_sched_req *r, const llmlab_sched_view *v) {
    return (r->prompt_len + r->max_new + v->decode_tokens + v->kv_block_size - 1) / v->kv_block_size;
}

/* Forms the next static batch: arrived requests in arrival order while they fit. */
static void form_batch(fcfs_state *s, const llmlab_sched_view *v) {
    int free_blocks = v->kv_blocks_free - v->watermark_blocks;
    s->n_members = 0;
    for (int i = 0; i < v->n_reqs && s->n_members < s->max_batch && s->n_members < v->max_seqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_WAITING) continue;
        int need = blocks_for(r, v);
        if (need > free_blocks && s->n_members > 0) break; /* first come, first served: never jump the queue */
        free_blocks -= need;
        s->members[s->n_members++] = r->id;
    }
    qsort(s->members, (size_t)s->n_members, sizeof(int), cmp_int);
}

static llmlab_status fcfs_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                   llmlab_err *err) {
    fcfs_state *s = self;
    int live = 0;
    for (int i = 0; i < v->n_reqs; i++)
        live += v->reqs[i].state != LLMLAB_REQ_FINISHED && v->reqs[i].state != LLMLAB_REQ_FUTURE &&
                is_member(s, v->reqs[i].id);
    if (live == 0) form_batch(s, v);
    int budget = v->token_budget;
    for (int i = 0; i < v->n_reqs && budget > 0; i++) { /* members in arrival order */
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state == LLMLAB_REQ_FINISHED || r->state == LLMLAB_REQ_FUTURE || !is_member(s, r->id)) continue;
        int want = r->target - r->computed; /* prompt (or recompute) tokens still to prefill */
        if (want <= 0) {                    /* decode: one step, drafts included */
            if (v->decode_tokens > budget) break;
            plan->run_tokens[i] = 1;
            budget -= v->decode_tokens;
            continue;
        }
        if (want > budget) want = budget;
        plan->run_tokens[i] = want;
        budget -= want;
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), fcfs_create, fcfs_destroy, fcfs_schedule, NULL};

static const llmlab_param_spec params[] = {
    {"max_batch", LLMLAB_PARAM_INT, "8", 1, 4096, NULL, "requests batched together (static batching)"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "fcfs", "1.1", "first come first served, static batches of up to max_batch",
    params, 1, &ops);

const llmlab_plugin_desc *llmlab_builtin_fcfs(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
