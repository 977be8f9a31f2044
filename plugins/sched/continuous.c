/* continuous.c - Orca-style iteration-level batching.
 *
 * Every iteration: each running request in decode takes one step (its decoding
 * plugin may forward up to view->decode_tokens tokens for it); then waiting
 * requests are admitted in arrival order while a sequence slot, the token budget
 * and the KV pool allow, and their prompts are prefilled whole in that same
 * iteration (a prompt longer than the whole budget is prefilled in budget-sized
 * chunks).  A request reserves KV for prompt + max_new + one step's drafts when it
 * is admitted, so a running request never runs out of cache: no preemption.
 * Finished requests leave at once and their slots are reused the next iteration:
 * that is the difference from fcfs's static batches. */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"

typedef struct {
    const llmlab_host *h;
    int max_batch;
} cont_state;

static llmlab_status cont_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    cont_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->max_batch = (int)h->param_int(p, "max_batch");
    *self = s;
    return LLMLAB_OK;
}

static void cont_destroy(void *self) {
    if (self) ((cont_state *)self)->h->free(self);
}

static int blocks_of(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

/* KV blocks a request may still claim: its whole reservation less what it holds. */
static int unclaimed_blocks(const llmlab_sched_req *r, const llmlab_sched_view *v) {
    int reserve = blocks_of(r->prompt_len + r->max_new + v->decode_tokens, v->kv_block_size);
    int held = blocks_of(r->computed, v->kv_block_size);
    return reserve > held ? reserve - held : 0;
}

static llmlab_status cont_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan, llmlab_err *err) {
    cont_state *s = self;
    int budget = v->token_budget, running = 0, free_blocks = v->kv_blocks_free;
    /* Running requests first: decodes (and chunks of prompts longer than the budget). */
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_RUNNING) continue;
        running++;
        free_blocks -= unclaimed_blocks(r, v);
        int want = r->target - r->computed;
        int cost = want > 0 ? want : v->decode_tokens;
        if (cost > budget) cost = want > 0 ? budget : 0;
        if (cost <= 0) continue;
        plan->run_tokens[i] = want > 0 ? cost : 1;
        budget -= cost;
    }
    /* Then admissions in arrival order; never jump the queue. */
    for (int i = 0; i < v->n_reqs && budget > 0; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_WAITING) continue;
        if (running >= s->max_batch || running >= v->max_seqs) break;
        int need = unclaimed_blocks(r, v);
        if (need > free_blocks) break;
        int want = r->target - r->computed;
        if (want > budget && want <= v->token_budget) break; /* whole prefill next iteration */
        plan->run_tokens[i] = want < budget ? want : budget;
        budget -= plan->run_tokens[i];
        free_blocks -= need;
        running++;
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), cont_create, cont_destroy, cont_schedule, NULL};

static const llmlab_param_spec params[] = {
    {"max_batch", LLMLAB_PARAM_INT, "64", 1, 4096, NULL, "most requests running at once"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "continuous", "1.0",
    "Orca iteration-level batching: finished requests leave and waiting ones join every iteration", params, 1,
    &ops);

const llmlab_plugin_desc *llmlab_builtin_continuous(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
