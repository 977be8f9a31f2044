/* priority.c - priority classes with preemption.
 *
 * A request's priority is an integer class; a LOWER value is MORE urgent (0 runs
 * before 1), as in vLLM's priority scheduling.  Every iteration walks the live
 * requests in (priority, arrival) order: running requests run (a decode step or a
 * prompt chunk, within the token budget); a waiting or swapped request is
 * admitted when it fits; when it does not fit for lack of KV blocks or sequence
 * slots, running requests of a strictly lower class (larger value) are preempted,
 * chosen by the `victim` policy, until it fits (only when preempting all of them
 * would make it fit, so nobody is preempted in vain).  Admission is strict: once
 * a request cannot get in, no request behind it (same or lower class) is admitted
 * in that iteration.  A request of the same or a higher class is never preempted
 * to admit another; when a running request runs short of blocks to keep
 * decoding, requests behind it in the order (lower class, or the same class and
 * later arrival) are preempted, itself last, as vLLM does.
 *
 * victim: lowest_priority_latest (largest value, then latest arrival; vLLM's
 * default), most_blocks (frees the most memory per preemption), latest (latest
 * arrival whatever its class, among those eligible).  The same policy answers the
 * engine's pick_victim when a plan runs out of blocks mid-iteration.
 * preempt: auto (the engine's preempt_mode), recompute or swap (falls back to
 * recompute when the swap space is short). */
#include <string.h>

#include "llmlab/plugin.h"
#include "plugins/builtins.h"
#include "plugins/sched/sched_util.h"

typedef struct {
    const llmlab_host *h;
    char mode[16];
    llmlab_su_victim victim;
    llmlab_su_pass_bufs pass;
    llmlab_su_buf key;
} prio_state;

static const char *const victim_names[] = {"lowest_priority_latest", "most_blocks", "latest", NULL};
static const char *const mode_names[] = {"auto", "recompute", "swap", NULL};

static llmlab_status prio_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    prio_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    const char *vic = h->param_string(p, "victim"), *mode = h->param_string(p, "preempt");
    s->victim = LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST;
    for (int k = 0; victim_names[k]; k++)
        if (vic && !strcmp(vic, victim_names[k])) s->victim = (llmlab_su_victim)k;
    strncpy(s->mode, mode ? mode : "auto", sizeof s->mode - 1);
    *self = s;
    return LLMLAB_OK;
}

static void prio_destroy(void *self) {
    prio_state *s = self;
    if (!s) return;
    llmlab_su_pass_bufs_free(s->h, &s->pass);
    llmlab_su_buf_free(s->h, &s->key);
    s->h->free(s);
}

/* The rank key of every request: its priority class. */
static double *priority_keys(prio_state *s, const llmlab_sched_view *v) {
    double *key = llmlab_su_buf_get(s->h, &s->key, (size_t)v->n_reqs * sizeof *key);
    if (key)
        for (int i = 0; i < v->n_reqs; i++) key[i] = v->reqs[i].priority;
    return key;
}

static llmlab_status prio_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                   llmlab_err *err) {
    prio_state *s = self;
    llmlab_su_rank *order = llmlab_su_order(s->h, &s->pass, v);
    double *key = priority_keys(s, v);
    if (!order || !key) return LLMLAB_ENOMEM;
    int m = llmlab_su_rank_live(v, key, order);
    llmlab_su_pass_opts o = {.key = key, .preempt_for_admission = 1, .mode = llmlab_su_mode(s->mode, v, 0),
                             .victim = s->victim, .scratch = NULL};
    return llmlab_su_plan_pass(s->h, &s->pass, v, plan, v->token_budget, order, m, o);
}

static int prio_pick_victim(void *self, const llmlab_sched_view *v) {
    prio_state *s = self;
    double *key = priority_keys(s, v);
    return key ? llmlab_su_pick(v, NULL, key, s->victim) : -1;
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), prio_create, prio_destroy, prio_schedule,
                                     prio_pick_victim};

static const llmlab_param_spec params[] = {
    {"victim", LLMLAB_PARAM_ENUM, "lowest_priority_latest", 1, 0, victim_names,
     "which running request to preempt: lowest_priority_latest, most_blocks, latest"},
    {"preempt", LLMLAB_PARAM_ENUM, "auto", 1, 0, mode_names,
     "preemption mode: auto (the engine's preempt_mode), recompute, swap"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "priority", "1.0",
    "strict priority classes (lower value = more urgent) preempting lower classes for KV; victim policy as a hook",
    params, 2, &ops);

const llmlab_plugin_desc *llmlab_builtin_priority(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
