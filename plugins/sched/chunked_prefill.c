/* chunked_prefill.c - Sarathi-Serve's stall-free batching.
 *
 * Every iteration spends a token budget of `chunk` tokens (capped by the engine's
 * token_budget):
 *   1. every running request in decode takes one step first (each charged
 *      view->decode_tokens), in arrival order;
 *   2. what is left goes to prompt chunks: running requests part-way through
 *      their prefill, then swapped-out requests coming back, then waiting ones,
 *      each in arrival order, each chunk as long as the budget left allows;
 * so a long prompt never stalls the decodes of the others (Sarathi's point: lower
 * time-between-tokens at the same load).  Admission reserves the request's whole
 * prefill in KV blocks and leaves the watermark free; the first waiting request
 * that does not fit stops admissions (no queue jumping).  When blocks run short
 * for a running request, the latest-arrived running request is preempted
 * (vLLM's choice; the engine's preempt_mode, swap falling back to recompute when
 * swap space is short). */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"
#include "plugins/sched/sched_util.h"

typedef struct {
    const llmlab_host *h;
    int chunk;
    llmlab_su_pass_bufs pass;
} cp_state;

static llmlab_status cp_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                               llmlab_err *err) {
    cp_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->chunk = (int)h->param_int(p, "chunk");
    *self = s;
    return LLMLAB_OK;
}

static void cp_destroy(void *self) {
    cp_state *s = self;
    if (!s) return;
    llmlab_su_pass_bufs_free(s->h, &s->pass);
    s->h->free(s);
}

/* Pass order: decodes, running prefills, swapped, waiting; arrival order within. */
static int phase_of(const llmlab_sched_req *r) {
    switch (r->state) {
    case LLMLAB_REQ_RUNNING: return llmlab_su_in_prefill(r) ? 1 : 0;
    case LLMLAB_REQ_SWAPPED: return 2;
    case LLMLAB_REQ_WAITING: return 3;
    case LLMLAB_REQ_FINISHED:
    case LLMLAB_REQ_FUTURE: return -1;
    }
    return -1;
}

static llmlab_status cp_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan, llmlab_err *err) {
    cp_state *s = self;
    llmlab_su_rank *order = llmlab_su_order(s->h, &s->pass, v);
    if (!order) return LLMLAB_ENOMEM;
    int m = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        int ph = phase_of(&v->reqs[i]);
        if (ph >= 0) order[m++] = (llmlab_su_rank){ph, 0, v->reqs[i].arrival_s, v->reqs[i].id, i};
    }
    /* Victims only for blocks running requests need: the latest arrival. */
    llmlab_su_pass_opts o = {.key = NULL, .preempt_for_admission = 0, .mode = llmlab_su_default_mode(v),
                             .victim = LLMLAB_SU_VICTIM_LATEST, .scratch = NULL};
    return llmlab_su_plan_pass(s->h, &s->pass, v, plan, s->chunk, order, m, o);
}

static int cp_pick_victim(void *self, const llmlab_sched_view *v) {
    return llmlab_su_pick(v, NULL, NULL, LLMLAB_SU_VICTIM_LATEST);
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), cp_create, cp_destroy, cp_schedule, cp_pick_victim};

static const llmlab_param_spec params[] = {
    {"chunk", LLMLAB_PARAM_INT, "512", 1, 1 << 24, NULL,
     "tokens per iteration, decodes and prompt chunks together (capped by the engine's token_budget)"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "chunked_prefill", "1.0",
    "Sarathi-Serve: a token budget per iteration, decodes first, then prompt chunks in arrival order", params, 1,
    &ops);

const llmlab_plugin_desc *llmlab_builtin_chunked_prefill(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
