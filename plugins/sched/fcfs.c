/* fcfs.c - first come, first served with static (request-level) batching.
 *
 * When nothing runs, admit up to max_batch arrived requests in arrival order
 * (while their whole prompt + max_new fits in the free KV blocks); run them
 * until every one of them finishes; only then admit the next batch.  Prompts are
 * prefilled whole when the token budget allows, else in budget-sized chunks.
 * This is the simplest baseline; continuous batching and the others live in the
 * serving issue's plugins. */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"

typedef struct {
    const llmlab_host *h;
    int max_batch;
    int *members;  /* [max_batch] indices (into the view) of the current static batch */
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

/* KV the request can need: its tokens plus the provisional slots of one step. */
static int blocks_for(const llmlab_sched_req *r, const llmlab_sched_view *v) {
    return (r->prompt_len + r->max_new + v->decode_tokens + v->kv_block_size - 1) / v->kv_block_size;
}

/* Forms the next static batch: arrived requests in arrival order while they fit. */
static void form_batch(fcfs_state *s, const llmlab_sched_view *v) {
    int free_blocks = v->kv_blocks_free;
    s->n_members = 0;
    for (int i = 0; i < v->n_reqs && s->n_members < s->max_batch && s->n_members < v->max_seqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_WAITING) continue;
        int need = blocks_for(r, v);
        if (need > free_blocks) break; /* first come, first served: never jump the queue */
        free_blocks -= need;
        s->members[s->n_members++] = i;
    }
}

static llmlab_status fcfs_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                   llmlab_err *err) {
    fcfs_state *s = self;
    int live = 0;
    for (int k = 0; k < s->n_members; k++) live += v->reqs[s->members[k]].state != LLMLAB_REQ_FINISHED;
    if (live == 0) form_batch(s, v);
    int budget = v->token_budget;
    for (int k = 0; k < s->n_members && budget > 0; k++) {
        const llmlab_sched_req *r = &v->reqs[s->members[k]];
        if (r->state == LLMLAB_REQ_FINISHED) continue;
        int want = r->target - r->computed; /* prompt tokens still to prefill */
        if (want <= 0) {                    /* decode: one step, drafts included */
            if (v->decode_tokens > budget) break;
            plan->run_tokens[s->members[k]] = 1;
            budget -= v->decode_tokens;
            continue;
        }
        if (want > budget) want = budget;
        plan->run_tokens[s->members[k]] = want;
        budget -= want;
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), fcfs_create, fcfs_destroy, fcfs_schedule, NULL};

static const llmlab_param_spec params[] = {
    {"max_batch", LLMLAB_PARAM_INT, "8", 1, 4096, NULL, "requests batched together (static batching)"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "fcfs", "1.0", "first come first served, static batches of up to max_batch",
    params, 1, &ops);

const llmlab_plugin_desc *llmlab_builtin_fcfs(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
