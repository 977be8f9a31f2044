/* mlfq.c - FastServe's skip-join multi-level feedback queue.
 *
 * `levels` queues; queue k has quantum base_quantum * 2^k (FastServe doubles
 * them).  Service is counted in `unit`:
 *   tokens      tokens forwarded for the request (prompt chunk tokens, 1 per
 *               decode step);
 *   iterations  iterations the request ran in.
 * Skip-join: a new request joins the highest queue whose quantum covers its
 * prefill (prompt_len tokens, or the ceil(prompt_len / token_budget) iterations it
 * takes), so long prompts start lower instead of all entering queue 0.  A request
 * that has used its level's quantum is demoted one level (its count restarts);
 * recomputing the tokens a preemption dropped is not service.
 * Starvation guard: a request that has not run for `starve` seconds is promoted
 * to queue 0 (0 turns the guard off).
 * Every iteration the live requests run in (level, arrival) order within the
 * token budget, KV blocks and max_seqs; a waiting request that does not fit
 * preempts running requests of strictly lower levels (lowest level first, then
 * latest arrival), swapping when the engine has swap space and recomputing
 * otherwise (`preempt` = auto; or force recompute / swap).  State is kept by
 * request id across iterations; a preempted request keeps its level. */
#include <math.h>
#include <string.h>

#include "llmlab/plugin.h"
#include "plugins/builtins.h"
#include "plugins/sched/sched_util.h"

typedef struct {
    int level;
    double service;    /* at its current level, in `unit` */
    double last_run_s; /* when it last ran (its arrival before that) */
    int prefilled;     /* prompt tokens it has had in its cache at some point */
} mlfq_req;

typedef struct {
    const llmlab_host *h;
    int levels, tokens_unit;
    double base_quantum, starve;
    char mode[16];
    llmlab_su_map map;  /* request id -> index into st */
    llmlab_su_buf st;   /* mlfq_req[] of the previous iteration's live requests */
    llmlab_su_buf next; /* mlfq_req[n_reqs] of this iteration */
    llmlab_su_pass_bufs pass;
    llmlab_su_buf key;
} mlfq_state;

static const char *const unit_names[] = {"tokens", "iterations", NULL};
static const char *const mode_names[] = {"auto", "recompute", "swap", NULL};

static llmlab_status mlfq_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    mlfq_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    s->levels = (int)h->param_int(p, "levels");
    s->base_quantum = (double)h->param_int(p, "base_quantum");
    s->starve = h->param_float(p, "starve");
    const char *unit = h->param_string(p, "unit"), *mode = h->param_string(p, "preempt");
    s->tokens_unit = !unit || !strcmp(unit, "tokens");
    strncpy(s->mode, mode ? mode : "auto", sizeof s->mode - 1);
    *self = s;
    return LLMLAB_OK;
}

static void mlfq_destroy(void *self) {
    mlfq_state *s = self;
    if (!s) return;
    llmlab_su_buf *bufs[] = {&s->st, &s->next, &s->key};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) llmlab_su_buf_free(s->h, bufs[k]);
    llmlab_su_pass_bufs_free(s->h, &s->pass);
    llmlab_su_map_free(s->h, &s->map);
    s->h->free(s);
}

static double quantum(const mlfq_state *s, int level) { return ldexp(s->base_quantum, level); }

/* Skip-join: the highest level whose quantum covers the request's prefill. */
static int join_level(const mlfq_state *s, const llmlab_sched_view *v, const llmlab_sched_req *r) {
    double cost = s->tokens_unit ? r->prompt_len : ceil((double)r->prompt_len / (double)v->token_budget);
    int k = 0;
    while (k < s->levels - 1 && quantum(s, k) < cost) k++;
    return k;
}

/* This iteration's state of every view entry (by id from the last one, or new). */
static mlfq_req *current_state(mlfq_state *s, const llmlab_sched_view *v) {
    mlfq_req *next = llmlab_su_buf_get(s->h, &s->next, (size_t)v->n_reqs * sizeof *next);
    if (!next) return NULL;
    const mlfq_req *prev = s->st.p;
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        int j = llmlab_su_map_get(&s->map, r->id);
        next[i] = j >= 0 ? prev[j] : (mlfq_req){join_level(s, v, r), 0, r->arrival_s, 0};
        if (s->starve > 0 && v->now_s - next[i].last_run_s >= s->starve) { /* starvation guard */
            next[i].level = 0;
            next[i].service = 0;
            next[i].last_run_s = v->now_s;
        }
    }
    return next;
}

/* Charges this iteration's service, demotes, and keeps the state for the next.
 * Only progress is service: new prompt tokens and decode steps.  Recomputing
 * what a preemption dropped is not, or a request would use up its quantum
 * recomputing and be preempted again before it gained a token (a livelock). */
static llmlab_status commit_state(mlfq_state *s, const llmlab_sched_view *v, const llmlab_sched_plan *plan,
                                  mlfq_req *next) {
    for (int i = 0; i < v->n_reqs; i++) {
        if (plan->run_tokens[i] <= 0) continue;
        mlfq_req *q = &next[i];
        const llmlab_sched_req *r = &v->reqs[i];
        int fresh = 1; /* a decode step */
        if (llmlab_su_in_prefill(r)) {
            int upto = r->computed + plan->run_tokens[i];
            if (upto > r->prompt_len) upto = r->prompt_len;
            fresh = upto > q->prefilled ? upto - q->prefilled : 0;
            if (upto > q->prefilled) q->prefilled = upto;
        }
        q->last_run_s = v->now_s;
        if (!fresh) continue;
        q->service += s->tokens_unit ? fresh : 1;
        if (q->service >= quantum(s, q->level) && q->level < s->levels - 1) {
            q->level++;
            q->service = 0;
        }
    }
    mlfq_req *st = llmlab_su_buf_get(s->h, &s->st, (size_t)v->n_reqs * sizeof *st);
    if (!st || llmlab_su_map_reset(s->h, &s->map, v->n_reqs)) return LLMLAB_ENOMEM;
    memcpy(st, next, (size_t)v->n_reqs * sizeof *st);
    for (int i = 0; i < v->n_reqs; i++) llmlab_su_map_put(&s->map, v->reqs[i].id, i);
    return LLMLAB_OK;
}

static llmlab_status mlfq_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                   llmlab_err *err) {
    mlfq_state *s = self;
    mlfq_req *next = current_state(s, v);
    llmlab_su_rank *order = llmlab_su_order(s->h, &s->pass, v);
    double *key = llmlab_su_buf_get(s->h, &s->key, (size_t)v->n_reqs * sizeof *key);
    if (!next || !order || !key) return LLMLAB_ENOMEM;
    for (int i = 0; i < v->n_reqs; i++) key[i] = next[i].level;
    int m = llmlab_su_rank_live(v, key, order);
    llmlab_su_pass_opts o = {.key = key, .preempt_for_admission = 1, .mode = llmlab_su_mode(s->mode, v, 1),
                             .victim = LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST, .scratch = NULL};
    llmlab_status st = llmlab_su_plan_pass(s->h, &s->pass, v, plan, v->token_budget, order, m, o);
    return st ? st : commit_state(s, v, plan, next);
}

/* The engine's victim: lowest level, then latest arrival. */
static int mlfq_pick_victim(void *self, const llmlab_sched_view *v) {
    mlfq_state *s = self;
    double *key = llmlab_su_buf_get(s->h, &s->key, (size_t)v->n_reqs * sizeof *key);
    if (!key) return -1;
    const mlfq_req *prev = s->st.p;
    for (int i = 0; i < v->n_reqs; i++) {
        int j = llmlab_su_map_get(&s->map, v->reqs[i].id);
        key[i] = j >= 0 ? prev[j].level : join_level(s, v, &v->reqs[i]);
    }
    return llmlab_su_pick(v, NULL, key, LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST);
}

static const llmlab_sched_ops ops = {sizeof(llmlab_sched_ops), mlfq_create, mlfq_destroy, mlfq_schedule,
                                     mlfq_pick_victim};

static const llmlab_param_spec params[] = {
    {"levels", LLMLAB_PARAM_INT, "4", 1, 32, NULL, "number of queues (quanta base_quantum * 2^k)"},
    {"base_quantum", LLMLAB_PARAM_INT, "32", 1, 1e9, NULL, "quantum of the top queue, in unit"},
    {"unit", LLMLAB_PARAM_ENUM, "tokens", 1, 0, unit_names, "what a quantum counts: tokens or iterations"},
    {"starve", LLMLAB_PARAM_FLOAT, "10", 0, 1e9, NULL,
     "seconds without running after which a request is promoted to the top queue (0 = never)"},
    {"preempt", LLMLAB_PARAM_ENUM, "auto", 1, 0, mode_names,
     "auto (swap when the engine has swap space, else recompute), recompute, swap"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "mlfq", "1.0",
    "FastServe skip-join multi-level feedback queue: join by prefill size, demote after each quantum, preempt "
    "lower levels",
    params, 5, &ops);

const llmlab_plugin_desc *llmlab_builtin_mlfq(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
