/* sjf.c - shortest job first by predicted output length.
 *
 * The job length is view->predicted_out: the engine's estimator, or the true
 * output length when the workload is an oracle (engines older than ABI 1.3: the
 * request's max_new).
 * Non-preemptive (default): running requests keep running (arrival order); the
 * waiting ones are admitted shortest predicted output first (ties: arrival), and
 * the first one that does not fit stops admissions, so a long request is not
 * passed over forever by shorter ones behind it once it heads the queue.
 * preemptive = true (SRPT-like): every live request ranks by its predicted
 * remaining output (predicted_out - generated); a waiting request that does not
 * fit preempts running requests with strictly longer remaining work (the longest
 * first).  Either way, a running request short of blocks to keep decoding
 * preempts the requests ranked after it (itself last); the mode is `preempt`
 * (auto = the engine's preempt_mode). */
#include <string.h>

#include "llmlab/plugin.h"
#include "plugins/builtins.h"
#include "plugins/sched/sched_util.h"

typedef struct {
    const llmlab_host *h;
    int preemptive;
    char mode[16];
    llmlab_su_pass_bufs pass;
    llmlab_su_buf key;
} sjf_state;

static const char *const mode_names[] = {"auto", "recompute", "swap", NULL};

static llmlab_status sjf_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    sjf_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->preemptive = h->param_bool(p, "preemptive");
    const char *mode = h->param_string(p, "preempt");
    strncpy(s->mode, mode ? mode : "auto", sizeof s->mode - 1);
    *self = s;
    return LLMLAB_OK;
}

static void sjf_destroy(void *self) {
    sjf_state *s = self;
    if (!s) return;
    llmlab_su_pass_bufs_free(s->h, &s->pass);
    llmlab_su_buf_free(s->h, &s->key);
    s->h->free(s);
}

/* Rank keys: predicted remaining output (preemptive) or predicted output. */
static double *job_keys(sjf_state *s, const llmlab_sched_view *v) {
    double *key = llmlab_su_buf_get(s->h, &s->key, (size_t)v->n_reqs * sizeof *key);
    if (!key) return NULL;
    for (int i = 0; i < v->n_reqs; i++) {
        int left = llmlab_su_predicted(v, i) - (s->preemptive ? v->reqs[i].generated : 0);
        key[i] = left > 0 ? left : 0;
    }
    return key;
}

static llmlab_status sjf_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan, llmlab_err *err) {
    sjf_state *s = self;
    llmlab_su_rank *order = llmlab_su_order(s->h, &s->pass, v);
    double *key = job_keys(s, v);
    if (!order || !key) return LLMLAB_ENOMEM;
    int m = llmlab_su_rank_live(v, key, order);
    /* Non-preemptive: running requests first (arrival order), then the queue by length. */
    for (int k = 0; k < m && !s->preemptive; k++) {
        int run = v->reqs[order[k].idx].state == LLMLAB_REQ_RUNNING;
        order[k].k2 = run ? 0 : order[k].k1;
        order[k].k1 = run ? -1 : 0;
    }
    llmlab_su_pass_opts o = {.key = key, .preempt_for_admission = s->preemptive,
                             .mode = llmlab_su_mode(s->mode, v, 0),
                             .victim = s->preemptive ? LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST : LLMLAB_SU_VICTIM_LATEST,
                             .scratch = NULL};
    return llmlab_su_plan_pass(s->h, &s->pass, v, plan, v->token_budget, order, m, o);
}

static int sjf_pick_victim(void *self, const llmlab_sched_view *v) {
    sjf_state *s = self;
    double *key = job_keys(s, v);
    if (!key) return -1;
    return llmlab_su_pick(v, NULL, key, s->preemptive ? LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST : LLMLAB_SU_VICTIM_LATEST);
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), sjf_create, sjf_destroy, sjf_schedule,
                                     sjf_pick_victim};

static const llmlab_param_spec params[] = {
    {"preemptive", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL,
     "SRPT-like: rank by predicted remaining output and preempt longer running requests"},
    {"preempt", LLMLAB_PARAM_ENUM, "auto", 1, 0, mode_names,
     "preemption mode: auto (the engine's preempt_mode), recompute, swap"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "sjf", "1.0",
    "shortest job first by predicted output length (oracle or estimator); preemptive = SRPT-like", params, 2, &ops);

const llmlab_plugin_desc *llmlab_builtin_sjf(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
