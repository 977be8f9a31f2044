/* continuous.c - Orca-style iteration-level batching.
 *
 * Every iteration: each running request in decode takes one step (its decoding
 * plugin may forward up to view->decode_tokens tokens for it); then swapped-out
 * requests come back, then waiting requests are admitted, both in arrival order
 * (no waiting request passes a swapped one, as in vLLM), while a sequence slot,
 * the token budget and the KV pool less the watermark allow; prompts are
 * prefilled whole in that same iteration (a prompt longer than the whole budget
 * is prefilled in budget-sized chunks).  Finished requests leave at once and
 * their slots are reused the next iteration: that is the difference from fcfs's
 * static batches.
 *
 * reserve = true (Orca): a request reserves KV for prompt + max_new + one step's
 * drafts when it is admitted, so a running request never runs out of cache and
 * nothing is preempted.  reserve = false (vLLM): admission needs only the
 * prompt's blocks; blocks are taken as tokens are generated and, when they run
 * out, the engine preempts (its default victim: the latest arrival) by the
 * engine's preempt_mode.  The first request is admitted into an empty pool even
 * when its reservation does not fit: the engine then preempts or names it as
 * too large. */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"

typedef struct {
    const llmlab_host *h;
    int max_batch;
    int reserve;
} cont_state;

static llmlab_status cont_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    cont_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->max_batch = (int)h->param_int(p, "max_batch");
    s->reserve = h->param_bool(p, "reserve");
    *self = s;
    return LLMLAB_OK;
}

static void cont_destroy(void *self) {
    if (self) ((cont_state *)self)->h->free(self);
}

static int blocks_of(int tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

/* KV blocks request i may still claim: with reserve, its whole reservation less
 * what it holds; without, what its next step needs beyond what it holds. */
static int unclaimed_blocks(const cont_state *s, const llmlab_sched_view *v, int i) {
    const llmlab_sched_req *r = &v->reqs[i];
    int tokens = s->reserve ? r->prompt_len + r->max_new + v->decode_tokens
                            : (r->target > r->computed ? r->target : r->computed + v->decode_tokens);
    int need = blocks_of(tokens, v->kv_block_size) - v->blocks_held[i];
    return need > 0 ? need : 0;
}

/* Admits (or swaps in) request i if a slot, the budget and the blocks allow;
 * returns 0 when it must wait (and everyone after it too). */
static int try_admit(const cont_state *s, const llmlab_sched_view *v, int i, int *budget, int *free_blocks,
                     int *running, llmlab_sched_plan *plan) {
    const llmlab_sched_req *r = &v->reqs[i];
    if (*running >= s->max_batch || *running >= v->max_seqs || *budget <= 0) return 0;
    int need = v->blocks_held[i] * (r->state == LLMLAB_REQ_SWAPPED) + unclaimed_blocks(s, v, i);
    int empty = *running == 0 && v->kv_blocks_free == v->kv_blocks_total;
    if (need > *free_blocks - v->watermark_blocks && !empty) return 0;
    int want = r->target - r->computed;
    int cost = want > 0 ? want : v->decode_tokens;
    if (want > 0 && want > *budget && want <= v->token_budget) return 0; /* whole prefill next iteration */
    if (want <= 0 && cost > *budget) return 0;
    plan->run_tokens[i] = want > 0 ? (want < *budget ? want : *budget) : 1;
    *budget -= want > 0 ? plan->run_tokens[i] : cost;
    *free_blocks -= need;
    (*running)++;
    return 1;
}

static llmlab_status cont_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan, llmlab_err *err) {
    cont_state *s = self;
    int budget = v->token_budget, running = 0, free_blocks = v->kv_blocks_free;
    /* Running requests first: decodes (and chunks of prompts longer than the budget). */
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_RUNNING) continue;
        running++;
        free_blocks -= unclaimed_blocks(s, v, i);
        int want = r->target - r->computed;
        int cost = want > 0 ? want : v->decode_tokens;
        if (cost > budget) cost = want > 0 ? budget : 0;
        if (cost <= 0) continue;
        plan->run_tokens[i] = want > 0 ? cost : 1;
        budget -= cost;
    }
    /* Then swapped-out requests, then admissions, each in arrival order; never jump the queue. */
    for (int pass = 0; pass < 2; pass++) {
        llmlab_req_state want_state = pass == 0 ? LLMLAB_REQ_SWAPPED : LLMLAB_REQ_WAITING;
        for (int i = 0; i < v->n_reqs; i++) {
            if (v->reqs[i].state != want_state) continue;
            if (!try_admit(s, v, i, &budget, &free_blocks, &running, plan)) return LLMLAB_OK;
        }
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), cont_create, cont_destroy, cont_schedule, NULL};

static const llmlab_param_spec params[] = {
    {"max_batch", LLMLAB_PARAM_INT, "64", 1, 4096, NULL, "most requests running at once"},
    {"reserve", LLMLAB_PARAM_BOOL, "true", 1, 0, NULL,
     "reserve KV for prompt + max_new at admission (Orca); false: admit on the prompt's blocks and let the "
     "engine preempt when blocks run out (vLLM)"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "continuous", "1.1",
    "Orca iteration-level batching: finished requests leave and waiting ones join every iteration", params, 2,
    &ops);

const llmlab_plugin_desc *llmlab_builtin_continuous(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
