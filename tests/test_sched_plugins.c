/* test_sched_plugins.c - the scheduler plugins static, chunked_prefill, priority,
 * mlfq and sjf: called directly through the registry on hand-made and random
 * views (every plan checked against the token budget, max_seqs, the KV blocks,
 * the watermark and the swap space), driven over whole random workloads by a
 * small block-accounting simulator in this file (every request finishes exactly
 * once), and run by the real engine on a synthetic model (greedy outputs equal
 * fcfs's: scheduling never changes greedy tokens). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/engine.h"
#include "core/params.h"
#include "core/registry.h"
#include "core/rng.h"
#include "util/fixture_model.h"

static llmlab_registry *g_reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK, "%s", err.msg);
}

static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(sched_plugins, .init = setup, .fini = teardown);

/* ---- a scheduler instance through the registry ------------------------------------ */

typedef struct {
    const llmlab_plugin_desc *d;
    const llmlab_sched_ops *ops;
    llmlab_params *p;
    void *self;
} sched_inst;

/* kv: "key", "value", ... pairs, NULL-terminated. */
static void inst_make(sched_inst *s, const char *name, const char *const *kv) {
    llmlab_err err = {0};
    llmlab_param_value vals[8];
    int n = 0;
    for (; kv && kv[2 * n]; n++) llmlab_param_value_from_text(&vals[n], kv[2 * n], kv[2 * n + 1]);
    s->d = llmlab_registry_find(g_reg, LLMLAB_PLUGIN_SCHED, name);
    cr_assert_not_null(s->d, "sched plugin '%s' is registered", name);
    s->ops = s->d->ops;
    cr_assert_eq(llmlab_params_create(&s->p, s->d, vals, n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(s->ops->create(&s->self, llmlab_host_table(), NULL, s->p, &err), LLMLAB_OK, "%s", err.msg);
}

static void inst_free(sched_inst *s) {
    s->ops->destroy(s->self);
    llmlab_params_free(s->p);
    memset(s, 0, sizeof *s);
}

/* The configurations every generic test runs. */
typedef struct {
    const char *name;
    const char *kv[9];
} sched_config;

static const sched_config configs[] = {
    {"static", {NULL}},
    {"static", {"max_batch", "3", "max_wait_s", "0.05", NULL}},
    {"chunked_prefill", {NULL}},
    {"chunked_prefill", {"chunk", "24", NULL}},
    {"priority", {NULL}},
    {"priority", {"victim", "most_blocks", "preempt", "swap", NULL}},
    {"priority", {"victim", "latest", "preempt", "recompute", NULL}},
    {"mlfq", {NULL}},
    {"mlfq", {"levels", "3", "base_quantum", "2", "unit", "iterations", "starve", "0.3", NULL}},
    {"sjf", {NULL}},
    {"sjf", {"preemptive", "true", NULL}},
};
enum { N_CONFIGS = sizeof configs / sizeof configs[0] };

/* ---- views and the plan checker ------------------------------------------------------ */

enum { MAXR = 64 };

typedef struct {
    llmlab_sched_req reqs[MAXR];
    int held[MAXR], pred[MAXR], run[MAXR];
    uint8_t pre[MAXR];
    llmlab_sched_view v;
    llmlab_sched_plan plan;
} vfix;

static int blocks(int t, int bs) { return t <= 0 ? 0 : (t + bs - 1) / bs; }

/* Finishes a view of n requests whose kv/swap totals are set: free blocks from
 * what the running / swapped requests hold. */
static void vfix_seal(vfix *f, int n, int kv_total, int swap_total) {
    int dev = 0, swp = 0;
    for (int i = 0; i < n; i++) {
        dev += f->reqs[i].state == LLMLAB_REQ_RUNNING ? f->held[i] : 0;
        swp += f->reqs[i].state == LLMLAB_REQ_SWAPPED ? f->held[i] : 0;
    }
    f->v.size = sizeof f->v;
    f->v.n_reqs = n;
    f->v.reqs = f->reqs;
    f->v.kv_blocks_total = kv_total;
    f->v.kv_blocks_free = kv_total - dev;
    f->v.swap_blocks_total = swap_total;
    f->v.swap_blocks_free = swap_total - swp;
    f->v.blocks_held = f->held;
    f->v.predicted_out = f->pred;
    f->plan = (llmlab_sched_plan){sizeof f->plan, f->run, f->pre};
}

/* Device blocks request i gains by running run[i] tokens (computed independently
 * of the plugins' ledger). */
static int dev_need(const vfix *f, int i) {
    const llmlab_sched_req *r = &f->reqs[i];
    int prefill = r->computed < r->target;
    int total = blocks(r->computed + (prefill ? f->run[i] : f->v.decode_tokens), f->v.kv_block_size);
    if (r->state == LLMLAB_REQ_SWAPPED && f->held[i] > total) total = f->held[i];
    int need = total - (r->state == LLMLAB_REQ_RUNNING ? f->held[i] : 0);
    return need > 0 ? need : 0;
}

/* 0 when the plan keeps every limit, else 1 with msg filled. */
static int check_plan(const vfix *f, char *msg, size_t cap) {
    const llmlab_sched_view *v = &f->v;
    int cost = 0, slots = 0, need = 0, need_adm = 0, freed = 0, swapped = 0, admits = 0, running = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &f->reqs[i];
        if (f->pre[i]) {
            if (r->state != LLMLAB_REQ_RUNNING || f->run[i] != 0 || f->pre[i] > 2)
                return snprintf(msg, cap, "request %d (state %d) preempted %d with run %d", r->id, r->state,
                                f->pre[i], f->run[i]), 1;
            freed += f->held[i];
            swapped += f->pre[i] == 2 ? f->held[i] : 0;
            continue;
        }
        slots += r->state == LLMLAB_REQ_RUNNING;
        running += r->state == LLMLAB_REQ_RUNNING;
        if (f->run[i] < 0) return snprintf(msg, cap, "request %d: run %d", r->id, f->run[i]), 1;
        if (f->run[i] == 0) continue;
        if (r->computed < r->target) {
            if (f->run[i] > r->target - r->computed)
                return snprintf(msg, cap, "request %d: %d prefill tokens, %d left", r->id, f->run[i],
                                r->target - r->computed), 1;
            cost += f->run[i];
        } else {
            if (f->run[i] != 1) return snprintf(msg, cap, "request %d: decode runs %d", r->id, f->run[i]), 1;
            cost += v->decode_tokens;
        }
        int n = dev_need(f, i);
        need += n;
        if (r->state != LLMLAB_REQ_RUNNING) slots++, need_adm += n, admits++;
    }
    if (cost > v->token_budget) return snprintf(msg, cap, "cost %d > budget %d", cost, v->token_budget), 1;
    if (slots > v->max_seqs) return snprintf(msg, cap, "%d sequences > max_seqs %d", slots, v->max_seqs), 1;
    if (need > v->kv_blocks_free + freed)
        return snprintf(msg, cap, "needs %d blocks, %d free + %d freed", need, v->kv_blocks_free, freed), 1;
    /* the watermark is waived for a lone admission when nothing runs (as the engine does) */
    if (admits && !(admits == 1 && running == 0) && need_adm > v->kv_blocks_free + freed - v->watermark_blocks)
        return snprintf(msg, cap, "admissions need %d blocks, free %d + freed %d - watermark %d", need_adm,
                        v->kv_blocks_free, freed, v->watermark_blocks), 1;
    if (swapped > v->swap_blocks_free)
        return snprintf(msg, cap, "swaps out %d blocks, %d swap free", swapped, v->swap_blocks_free), 1;
    return 0;
}

static void plan_of(sched_inst *s, vfix *f) {
    memset(f->run, 0, sizeof f->run);
    memset(f->pre, 0, sizeof f->pre);
    llmlab_err err = {0};
    cr_assert_eq(s->ops->schedule(s->self, &f->v, &f->plan, &err), LLMLAB_OK, "%s: %s", s->d->name, err.msg);
}

static int rnd(llmlab_rng *r, int lo, int hi) { return lo + (int)(llmlab_rng_next(r) % (uint64_t)(hi - lo + 1)); }

/* A random live view with consistent KV accounting. */
static void random_view(vfix *f, llmlab_rng *g) {
    memset(f, 0, sizeof *f);
    static const int bss[] = {1, 4, 16}, budgets[] = {16, 64, 256, 2048};
    int bs = bss[rnd(g, 0, 2)], total = rnd(g, 4, 300), swap_total = rnd(g, 0, 1) ? rnd(g, 0, 200) : 0;
    int n = rnd(g, 1, 40), dev = 0, swp = 0, running = 0;
    for (int i = 0; i < n; i++) {
        llmlab_sched_req *r = &f->reqs[i];
        int prompt = rnd(g, 1, 200), max_new = rnd(g, 1, 60);
        int gen = max_new > 1 && rnd(g, 0, 1) ? rnd(g, 1, max_new - 1) : 0;
        int target = gen ? prompt + gen - 1 : prompt, kind = rnd(g, 0, 99);
        *r = (llmlab_sched_req){.id = 1000 + 3 * i, .arrival_s = 0.1 * i + 0.01 * rnd(g, 0, 5), .prompt_len = prompt,
                                .target = target, .generated = gen, .max_new = max_new, .priority = rnd(g, 0, 3)};
        r->state = LLMLAB_REQ_WAITING;
        if (kind < 45) { /* running: mid-prefill, or decoding (computed == target) */
            int computed = gen == 0 ? rnd(g, 0, prompt - 1) : (rnd(g, 0, 4) ? target : rnd(g, 0, target - 1));
            if (dev + blocks(computed, bs) <= total) {
                r->state = LLMLAB_REQ_RUNNING;
                r->computed = computed;
                f->held[i] = blocks(computed, bs);
                dev += f->held[i];
                running++;
            }
        } else if (kind < 60 && swap_total > 0) {
            int computed = rnd(g, 0, 2) ? target : rnd(g, 1, target);
            if (swp + blocks(computed, bs) <= swap_total) {
                r->state = LLMLAB_REQ_SWAPPED;
                r->computed = computed;
                f->held[i] = blocks(computed, bs);
                swp += f->held[i];
            }
        }
        f->pred[i] = rnd(g, 0, 2) ? max_new : rnd(g, 1, 80);
    }
    f->v.now_s = 0.1 * n + 0.01 * rnd(g, 0, 100);
    f->v.kv_block_size = bs;
    f->v.token_budget = budgets[rnd(g, 0, 3)];
    f->v.max_seqs = running + rnd(g, 0, 12);
    if (f->v.max_seqs < 1) f->v.max_seqs = 1;
    f->v.decode_tokens = rnd(g, 0, 2) ? 1 : 3;
    f->v.watermark_blocks = rnd(g, 0, total / 10);
    f->v.preempt_mode = rnd(g, 1, 2);
    vfix_seal(f, n, total, swap_total);
}

Test(sched_plugins, random_views_keep_budget_slots_kv_watermark_and_swap) {
    uint64_t seed = fixture_seed("sched-random-views");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 1);
    static vfix f;
    char msg[256];
    for (int c = 0; c < N_CONFIGS; c++) {
        sched_inst s;
        inst_make(&s, configs[c].name, configs[c].kv);
        int scheduled = 0;
        for (int it = 0; it < 400; it++) {
            random_view(&f, &g);
            plan_of(&s, &f);
            cr_assert(!check_plan(&f, msg, sizeof msg), "%s config %d view %d: %s (seed %llu)", configs[c].name, c,
                      it, msg, (unsigned long long)seed);
            for (int i = 0; i < f.v.n_reqs; i++) scheduled += f.run[i] > 0;
            if (s.ops->pick_victim) { /* the engine's hook: a RUNNING request or -1 */
                int vic = s.ops->pick_victim(s.self, &f.v);
                int any = 0;
                for (int i = 0; i < f.v.n_reqs; i++) any |= f.reqs[i].state == LLMLAB_REQ_RUNNING;
                cr_assert(vic == -1 ? !any : vic >= 0 && vic < f.v.n_reqs && f.reqs[vic].state == LLMLAB_REQ_RUNNING,
                          "%s pick_victim gave %d", configs[c].name, vic);
            }
        }
        cr_assert_gt(scheduled, 100, "%s config %d scheduled something on random views", configs[c].name, c);
        inst_free(&s);
    }
}

/* ---- a block-accounting simulator over whole workloads -------------------------------- */

typedef struct {
    int n;
    int prompt[MAXR], max_new[MAXR], priority[MAXR], pred[MAXR];
    double arrival[MAXR];
    llmlab_req_state st[MAXR];
    int computed[MAXR], generated[MAXR], held[MAXR], finished[MAXR], first_run[MAXR];
    int kv_total, swap_total, bs, budget, max_seqs, decode_tokens, watermark, preempt_mode;
    double dt_s; /* simulated seconds per iteration */
} sim;

typedef void (*sim_observer)(void *user, const sim *S, const vfix *f, int iter);

static int sim_target(const sim *S, int i) {
    return S->generated[i] ? S->prompt[i] + S->generated[i] - 1 : S->prompt[i];
}

/* Runs the workload to completion (asserting progress); returns iterations. */
static int sim_run(sim *S, sched_inst *s, sim_observer obs, void *user, const char *what) {
    static vfix f;
    int map[MAXR];
    char msg[256];
    for (int i = 0; i < S->n; i++) S->st[i] = LLMLAB_REQ_FUTURE, S->first_run[i] = -1;
    for (int iter = 0; iter < 20000; iter++) {
        double now = iter * S->dt_s;
        memset(&f, 0, sizeof f);
        int m = 0, left = 0;
        for (int i = 0; i < S->n; i++) { /* requests are in arrival order */
            if (S->st[i] == LLMLAB_REQ_FUTURE && S->arrival[i] <= now) S->st[i] = LLMLAB_REQ_WAITING;
            left += S->st[i] != LLMLAB_REQ_FINISHED;
            if (S->st[i] == LLMLAB_REQ_FINISHED || S->st[i] == LLMLAB_REQ_FUTURE) continue;
            f.reqs[m] = (llmlab_sched_req){i, S->st[i], S->arrival[i], S->prompt[i], S->computed[i], sim_target(S, i),
                                           S->generated[i], S->max_new[i], S->priority[i]};
            f.held[m] = S->held[i];
            f.pred[m] = S->pred[i];
            map[m++] = i;
        }
        if (!left) return iter;
        f.v.now_s = now;
        f.v.kv_block_size = S->bs;
        f.v.token_budget = S->budget;
        f.v.max_seqs = S->max_seqs;
        f.v.decode_tokens = S->decode_tokens;
        f.v.watermark_blocks = S->watermark;
        f.v.preempt_mode = S->preempt_mode;
        vfix_seal(&f, m, S->kv_total, S->swap_total);
        plan_of(s, &f);
        cr_assert(!check_plan(&f, msg, sizeof msg), "%s: iteration %d: %s", what, iter, msg);
        if (obs) obs(user, S, &f, iter);
        for (int k = 0; k < m; k++) { /* preemptions first, as the engine does */
            int i = map[k];
            if (f.pre[k] == 1) S->st[i] = LLMLAB_REQ_WAITING, S->computed[i] = 0, S->held[i] = 0;
            if (f.pre[k] == 2) S->st[i] = LLMLAB_REQ_SWAPPED;
        }
        for (int k = 0; k < m; k++) {
            int i = map[k];
            if (f.run[k] <= 0) continue;
            if (S->first_run[i] < 0) S->first_run[i] = iter;
            S->st[i] = LLMLAB_REQ_RUNNING;
            if (S->computed[i] < sim_target(S, i)) {
                S->computed[i] += f.run[k];
                if (S->computed[i] == S->prompt[i] && S->generated[i] == 0) S->generated[i] = 1; /* first token */
            } else {
                S->computed[i]++;
                S->generated[i]++;
            }
            S->held[i] = blocks(S->computed[i], S->bs);
            if (S->generated[i] == S->max_new[i]) {
                cr_assert_eq(S->finished[i], 0, "%s: request %d finished twice", what, i);
                S->finished[i] = iter + 1;
                S->st[i] = LLMLAB_REQ_FINISHED;
                S->held[i] = 0;
            }
        }
    }
    cr_assert_fail("%s: the workload did not finish in 20000 iterations", what);
    return -1;
}

/* A random workload that fits the pool one request at a time. */
static void random_sim(sim *S, llmlab_rng *g) {
    memset(S, 0, sizeof *S);
    S->n = rnd(g, 5, 40);
    S->bs = rnd(g, 0, 1) ? 4 : 16;
    S->decode_tokens = rnd(g, 0, 2) ? 1 : 2;
    S->budget = rnd(g, 0, 1) ? 64 : 256;
    S->max_seqs = rnd(g, 1, 12);
    S->dt_s = 0.01;
    S->preempt_mode = rnd(g, 1, 2);
    int biggest = 0;
    double t = 0;
    for (int i = 0; i < S->n; i++) {
        S->prompt[i] = rnd(g, 1, 120);
        S->max_new[i] = rnd(g, 1, 40);
        S->priority[i] = rnd(g, 0, 2);
        S->pred[i] = rnd(g, 0, 3) ? S->max_new[i] : rnd(g, 1, 50);
        S->arrival[i] = t;
        t += rnd(g, 0, 3) ? 0.01 * rnd(g, 0, 8) : 0;
        int life = blocks(S->prompt[i] + S->max_new[i] + S->decode_tokens, S->bs);
        if (life > biggest) biggest = life;
    }
    S->watermark = rnd(g, 0, 2);
    S->kv_total = biggest + S->watermark + rnd(g, 0, 3 * biggest);
    S->swap_total = rnd(g, 0, 1) ? rnd(g, 0, 4 * biggest) : 0;
}

Test(sched_plugins, random_workloads_finish_every_request_exactly_once) {
    uint64_t seed = fixture_seed("sched-random-workloads");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 2);
    static sim S;
    for (int c = 0; c < N_CONFIGS; c++)
        for (int w = 0; w < 12; w++) {
            random_sim(&S, &g);
            sched_inst s;
            inst_make(&s, configs[c].name, configs[c].kv);
            char what[96];
            snprintf(what, sizeof what, "%s config %d workload %d (seed %llu)", configs[c].name, c, w,
                     (unsigned long long)seed);
            sim_run(&S, &s, NULL, NULL, what);
            for (int i = 0; i < S.n; i++) {
                cr_assert_gt(S.finished[i], 0, "%s: request %d never finished", what, i);
                cr_assert_eq(S.generated[i], S.max_new[i], "%s: request %d output", what, i);
            }
            inst_free(&s);
        }
}

/* ---- static ------------------------------------------------------------------------------ */

/* Batch epochs: from the first admission after everything finished until every
 * request admitted in it finished; no admission once a member decoded. */
typedef struct {
    int in_batch[MAXR], n_members, decoded, max_batch, max_members, epochs, mixed;
} static_watch;

static void static_observer(void *user, const sim *S, const vfix *f, int iter) {
    static_watch *w = user;
    int live = 0, prefill = 0, decode = 0;
    for (int i = 0; i < S->n; i++) live += w->in_batch[i] && S->st[i] != LLMLAB_REQ_FINISHED;
    if (!live) {
        memset(w->in_batch, 0, sizeof w->in_batch);
        w->n_members = w->decoded = 0;
    }
    for (int k = 0; k < f->v.n_reqs; k++) {
        int i = f->reqs[k].id;
        if (f->run[k] <= 0) continue;
        int is_prefill = f->reqs[k].computed < f->reqs[k].target;
        prefill |= is_prefill, decode |= !is_prefill;
        if (!w->in_batch[i]) {
            cr_assert(!w->decoded, "iteration %d: request %d joined a batch that was already decoding", iter, i);
            if (w->n_members == 0) w->epochs++;
            w->in_batch[i] = 1;
            w->n_members++;
        }
    }
    w->decoded |= decode;
    w->mixed |= prefill && decode;
    if (w->n_members > w->max_members) w->max_members = w->n_members;
}

Test(sched_plugins, static_never_admits_mid_batch_nor_mixes_phases) {
    uint64_t seed = fixture_seed("sched-static");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 3);
    static sim S;
    for (int w = 0; w < 20; w++) {
        random_sim(&S, &g);
        S.kv_total *= 4; /* room for whole batches */
        static_watch watch = {.max_batch = rnd(&g, 1, 5)};
        char mb[16];
        snprintf(mb, sizeof mb, "%d", watch.max_batch);
        const char *kv[] = {"max_batch", mb, NULL};
        sched_inst s;
        inst_make(&s, "static", kv);
        sim_run(&S, &s, static_observer, &watch, "static");
        cr_assert_leq(watch.max_members, watch.max_batch, "a batch of %d > max_batch %d (seed %llu)",
                      watch.max_members, watch.max_batch, (unsigned long long)seed);
        cr_assert(!watch.mixed, "static mixed prefill and decode in one iteration (seed %llu)",
                  (unsigned long long)seed);
        cr_assert_geq(watch.epochs * watch.max_batch, S.n, "every request ran in some batch");
        inst_free(&s);
    }
}

/* Two waiting requests of 8 tokens in a pool of plenty (block 4, budget 64). */
static void small_view(vfix *f, int n, int kv_total) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < n; i++) {
        f->reqs[i] = (llmlab_sched_req){.id = i, .state = LLMLAB_REQ_WAITING, .arrival_s = 0.1 * i, .prompt_len = 8,
                                        .target = 8, .max_new = 4};
        f->pred[i] = 4;
    }
    f->v.kv_block_size = 4;
    f->v.token_budget = 64;
    f->v.max_seqs = 16;
    f->v.decode_tokens = 1;
    f->v.preempt_mode = 1;
    vfix_seal(f, n, kv_total, 0);
}

Test(sched_plugins, static_waits_up_to_max_wait_for_a_full_batch) {
    static vfix f;
    const char *kv[] = {"max_batch", "4", "max_wait_s", "1.0", NULL};
    sched_inst s;
    inst_make(&s, "static", kv);
    small_view(&f, 2, 100);
    f.v.now_s = 0.5; /* the oldest arrived at 0: 0.5 s < 1 s */
    plan_of(&s, &f);
    cr_assert(f.run[0] == 0 && f.run[1] == 0, "a batch of 2 < 4 waits while max_wait_s has not passed");
    f.v.now_s = 1.0;
    plan_of(&s, &f);
    cr_assert(f.run[0] == 8 && f.run[1] == 8, "after max_wait_s the batch of 2 starts, both prompts whole");
    inst_free(&s);
    inst_make(&s, "static", kv);
    small_view(&f, 4, 100);
    f.v.now_s = 0.31;
    plan_of(&s, &f);
    for (int i = 0; i < 4; i++) cr_assert_eq(f.run[i], 8, "a full batch does not wait");
    inst_free(&s);
}

/* ---- chunked_prefill ------------------------------------------------------------------------ */

Test(sched_plugins, chunked_prefill_runs_decodes_first_then_chunks_to_the_budget) {
    static vfix f;
    memset(&f, 0, sizeof f);
    /* 3 decoding requests (2 tokens each per step), a half-done prefill, two waiting prompts */
    for (int i = 0; i < 3; i++) {
        f.reqs[i] = (llmlab_sched_req){.id = 10 + i, .state = LLMLAB_REQ_RUNNING, .arrival_s = i, .prompt_len = 20,
                                       .computed = 24, .target = 24, .generated = 5, .max_new = 50};
        f.held[i] = 2;
    }
    f.reqs[3] = (llmlab_sched_req){.id = 20, .state = LLMLAB_REQ_RUNNING, .arrival_s = 3, .prompt_len = 100,
                                   .computed = 40, .target = 100, .max_new = 9};
    f.held[3] = 3;
    for (int i = 4; i < 6; i++)
        f.reqs[i] = (llmlab_sched_req){.id = 30 + i, .state = LLMLAB_REQ_WAITING, .arrival_s = i, .prompt_len = 300,
                                       .target = 300, .max_new = 9};
    f.v.kv_block_size = 16;
    f.v.token_budget = 512;
    f.v.max_seqs = 16;
    f.v.decode_tokens = 2;
    f.v.preempt_mode = 1;
    vfix_seal(&f, 6, 1000, 0);
    const char *kv[] = {"chunk", "100", NULL};
    sched_inst s;
    inst_make(&s, "chunked_prefill", kv);
    plan_of(&s, &f);
    for (int i = 0; i < 3; i++) cr_assert_eq(f.run[i], 1, "decode %d runs first", i);
    cr_assert_eq(f.run[3], 60, "the running prefill finishes its 60 tokens (100 - 3 * 2 = 94 left)");
    cr_assert_eq(f.run[4], 34, "the first waiting prompt gets the rest of the chunk");
    cr_assert_eq(f.run[5], 0, "the budget is spent");
    /* a chunk larger than the engine's budget is capped by it */
    f.v.token_budget = 50;
    plan_of(&s, &f);
    int cost = 0;
    for (int i = 0; i < 6; i++) cost += f.reqs[i].computed < f.reqs[i].target ? f.run[i] : 2 * (f.run[i] > 0);
    cr_assert_eq(cost, 50, "chunk 100 is capped at token_budget 50");
    cr_assert_eq(f.run[3], 44, "3 decodes (6 tokens) then 44 prefill tokens");
    inst_free(&s);
}

Test(sched_plugins, chunked_prefill_never_starves_a_decode_for_a_prefill) {
    uint64_t seed = fixture_seed("sched-chunked");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 4);
    static vfix f;
    char msg[256];
    sched_inst s;
    inst_make(&s, "chunked_prefill", NULL);
    for (int it = 0; it < 500; it++) {
        random_view(&f, &g);
        f.v.kv_blocks_free += 100000; /* KV never short: only the budget decides */
        f.v.kv_blocks_total += 100000;
        plan_of(&s, &f);
        cr_assert(!check_plan(&f, msg, sizeof msg), "%s", msg);
        int prefill = 0, skipped_decode = 0, decodes = 0;
        for (int i = 0; i < f.v.n_reqs; i++) {
            const llmlab_sched_req *r = &f.reqs[i];
            int is_decode = r->state == LLMLAB_REQ_RUNNING && r->computed >= r->target;
            decodes += is_decode && f.run[i];
            skipped_decode += is_decode && !f.run[i];
            prefill += r->computed < r->target ? f.run[i] : 0;
        }
        /* a decode is left out only when the decodes before it took the budget; the
         * prefill tokens never exceed what the decodes left */
        int budget = f.v.token_budget < 512 ? f.v.token_budget : 512, left = budget - decodes * f.v.decode_tokens;
        if (skipped_decode)
            cr_assert_lt(left, f.v.decode_tokens, "view %d: a decode waited with %d tokens of budget left (seed %llu)",
                         it, left, (unsigned long long)seed);
        cr_assert_leq(prefill, left, "view %d: prefill tokens beyond what the decodes left", it);
    }
    inst_free(&s);
}

/* ---- priority -------------------------------------------------------------------------------- */

/* Pool of 10 blocks (block 4): A (prio 1) and B (prio 2) running with 4 blocks
 * each, a waiting request of class `prio` needing 6 blocks (24-token prompt). */
static void prio_view(vfix *f, int prio) {
    memset(f, 0, sizeof *f);
    f->reqs[0] = (llmlab_sched_req){.id = 1, .state = LLMLAB_REQ_RUNNING, .arrival_s = 0, .prompt_len = 10,
                                    .computed = 15, .target = 15, .generated = 6, .max_new = 40, .priority = 1};
    f->reqs[1] = (llmlab_sched_req){.id = 2, .state = LLMLAB_REQ_RUNNING, .arrival_s = 1, .prompt_len = 10,
                                    .computed = 14, .target = 14, .generated = 5, .max_new = 40, .priority = 2};
    f->reqs[2] = (llmlab_sched_req){.id = 3, .state = LLMLAB_REQ_WAITING, .arrival_s = 2, .prompt_len = 24,
                                    .target = 24, .max_new = 5, .priority = prio};
    f->held[0] = f->held[1] = 4;
    f->v.kv_block_size = 4;
    f->v.token_budget = 256;
    f->v.max_seqs = 8;
    f->v.decode_tokens = 1;
    f->v.preempt_mode = 1;
    vfix_seal(f, 3, 10, 0);
}

Test(sched_plugins, priority_preempts_lower_classes_and_never_a_higher_one) {
    static vfix f;
    sched_inst s;
    /* lowest_priority_latest: B (class 2) is enough to make room for class 0 */
    inst_make(&s, "priority", NULL);
    prio_view(&f, 0);
    plan_of(&s, &f);
    cr_assert(f.pre[1] == 1 && f.pre[0] == 0, "B (class 2) is the victim, A (class 1) keeps running");
    cr_assert_eq(f.run[2], 24, "the class-0 request is admitted with its whole prompt");
    cr_assert_eq(f.run[0], 1, "A decodes");
    /* class 1 waiting: B (class 2) may go, A (class 1, same) may not */
    prio_view(&f, 1);
    plan_of(&s, &f);
    cr_assert(f.pre[1] == 1 && f.pre[0] == 0 && f.run[2] == 24, "class 1 preempts class 2 only");
    /* class 2 waiting: neither A nor B is of a strictly lower class */
    prio_view(&f, 2);
    plan_of(&s, &f);
    cr_assert(!f.pre[0] && !f.pre[1] && f.run[2] == 0, "no preemption for an equal or lower class");
    cr_assert(f.run[0] == 1 && f.run[1] == 1, "both running requests decode");
    /* preempting B alone is not enough for a 9-block prompt of class 2 over class-... nothing in vain */
    prio_view(&f, 0);
    f.reqs[2].prompt_len = f.reqs[2].target = 40; /* 10 blocks + nothing else: needs both victims */
    plan_of(&s, &f);
    cr_assert(f.pre[0] == 1 && f.pre[1] == 1 && f.run[2] == 40, "both lower classes preempted when both are needed");
    f.reqs[2].prompt_len = f.reqs[2].target = 41; /* 11 blocks > the pool: nobody is preempted in vain */
    plan_of(&s, &f);
    cr_assert(!f.pre[0] && !f.pre[1] && f.run[2] == 0, "no preemption that cannot make room");
    cr_assert_eq(s.ops->pick_victim(s.self, &f.v), 1, "the engine's victim: lowest class (B)");
    inst_free(&s);
    /* most_blocks: A holds more blocks than B now */
    const char *mb[] = {"victim", "most_blocks", "preempt", "swap", NULL};
    inst_make(&s, "priority", mb);
    prio_view(&f, 0);
    f.reqs[0].computed = f.reqs[0].target = 20, f.held[0] = 5;
    vfix_seal(&f, 3, 10, 100);
    plan_of(&s, &f);
    cr_assert(f.pre[0] == 2 && !f.pre[1] && f.run[2] == 24, "most_blocks swaps out A (5 blocks)");
    cr_assert_eq(s.ops->pick_victim(s.self, &f.v), 0);
    vfix_seal(&f, 3, 10, 2); /* swap space too small: recompute instead */
    plan_of(&s, &f);
    cr_assert_eq(f.pre[0], 1, "swap falls back to recompute without swap space");
    inst_free(&s);
    const char *lt[] = {"victim", "latest", NULL};
    inst_make(&s, "priority", lt);
    prio_view(&f, 0);
    f.reqs[0].arrival_s = 1.5; /* A (class 1) now arrived after B (class 2) */
    plan_of(&s, &f);
    cr_assert(f.pre[0] == 1 && !f.pre[1], "latest preempts the latest arrival (A)");
    inst_free(&s);
}

Test(sched_plugins, priority_never_runs_a_lower_class_than_one_it_preempted) {
    uint64_t seed = fixture_seed("sched-priority");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 5);
    static vfix f;
    sched_inst s;
    inst_make(&s, "priority", NULL);
    int preemptions = 0;
    for (int it = 0; it < 2000; it++) {
        random_view(&f, &g);
        plan_of(&s, &f);
        int min_victim = 1 << 30, max_run = -1;
        for (int i = 0; i < f.v.n_reqs; i++) {
            if (f.pre[i] && f.reqs[i].priority < min_victim) min_victim = f.reqs[i].priority;
            if (f.run[i] > 0 && f.reqs[i].priority > max_run) max_run = f.reqs[i].priority;
            preemptions += f.pre[i] != 0;
        }
        cr_assert_leq(max_run, min_victim, "view %d: class %d runs while class %d was preempted (seed %llu)", it,
                      max_run, min_victim, (unsigned long long)seed);
    }
    cr_assert_gt(preemptions, 20, "random views made the priority plugin preempt");
    inst_free(&s);
}

/* ---- mlfq -------------------------------------------------------------------------------------- */

/* max_seqs 1: A (8-token prompt) runs alone; B (8 tokens) arrives while A is in
 * queue 0 and has to wait until A has used its 16-token quantum. */
typedef struct {
    int b_first;
} mlfq_watch;

Test(sched_plugins, mlfq_demotes_after_the_quantum) {
    static sim S;
    memset(&S, 0, sizeof S);
    S.n = 2;
    S.prompt[0] = S.prompt[1] = 8;
    S.max_new[0] = 40, S.max_new[1] = 3;
    S.pred[0] = 40, S.pred[1] = 3;
    S.arrival[0] = 0, S.arrival[1] = 0.025;
    S.kv_total = 100, S.bs = 4, S.budget = 64, S.max_seqs = 1, S.decode_tokens = 1, S.preempt_mode = 1;
    S.dt_s = 0.01;
    const char *kv[] = {"levels", "4", "base_quantum", "16", "unit", "tokens", "starve", "0", NULL};
    sched_inst s;
    inst_make(&s, "mlfq", kv);
    sim_run(&S, &s, NULL, NULL, "mlfq demotion");
    /* A: prefill 8 at iteration 0, decodes 1..8 bring its service to 16: demoted.
     * B (queue 0) preempts it at iteration 9. */
    cr_assert_eq(S.first_run[1], 9, "B first ran at iteration %d, want 9 (right after A's quantum)", S.first_run[1]);
    cr_assert_gt(S.finished[0], S.finished[1], "the short request finishes first");
    inst_free(&s);
    /* one level: plain FCFS, B waits for A to finish */
    memset(S.finished, 0, sizeof S.finished), memset(S.generated, 0, sizeof S.generated);
    memset(S.computed, 0, sizeof S.computed), memset(S.held, 0, sizeof S.held);
    const char *one[] = {"levels", "1", "starve", "0", NULL};
    inst_make(&s, "mlfq", one);
    sim_run(&S, &s, NULL, NULL, "mlfq one level");
    cr_assert_gt(S.first_run[1], 30, "with one queue nobody is demoted: B waits for A");
    inst_free(&s);
}

Test(sched_plugins, mlfq_skip_joins_by_prefill_and_promotes_the_starving) {
    static vfix f;
    memset(&f, 0, sizeof f);
    /* X (100-token prompt) arrived first, Y (10 tokens) after it */
    f.reqs[0] = (llmlab_sched_req){.id = 7, .state = LLMLAB_REQ_WAITING, .arrival_s = 0, .prompt_len = 100,
                                   .target = 100, .max_new = 5};
    f.reqs[1] = (llmlab_sched_req){.id = 8, .state = LLMLAB_REQ_WAITING, .arrival_s = 0.1, .prompt_len = 10,
                                   .target = 10, .max_new = 5};
    f.v.kv_block_size = 16;
    f.v.token_budget = 512;
    f.v.max_seqs = 1;
    f.v.decode_tokens = 1;
    f.v.now_s = 0.2;
    vfix_seal(&f, 2, 100, 0);
    const char *kv[] = {"levels", "4", "base_quantum", "4", "starve", "5", NULL};
    sched_inst s;
    inst_make(&s, "mlfq", kv);
    plan_of(&s, &f); /* quanta 4, 8, 16, 32: X joins queue 3, Y queue 2 */
    cr_assert(f.run[1] == 10 && f.run[0] == 0, "the short prompt skips ahead of the long one");
    /* Y runs (decoding) while X waits; after 5 s without running X is promoted to
     * queue 0 and, arrived first, goes ahead of Y (which has its slot: preempted) */
    f.reqs[1].state = LLMLAB_REQ_RUNNING, f.reqs[1].computed = 10, f.reqs[1].generated = 1, f.held[1] = 1;
    vfix_seal(&f, 2, 100, 0);
    f.v.now_s = 1.0;
    plan_of(&s, &f);
    cr_assert(f.run[1] == 1 && f.run[0] == 0, "Y keeps decoding");
    f.v.now_s = 5.5;
    plan_of(&s, &f);
    cr_assert(f.pre[1] == 1 && f.run[0] == 100, "the starving X is promoted to queue 0 and preempts Y (queue 2)");
    inst_free(&s);
    /* levels = 1: arrival order */
    const char *one[] = {"levels", "1", NULL};
    inst_make(&s, "mlfq", one);
    memset(&f.held, 0, sizeof f.held);
    f.reqs[1] = (llmlab_sched_req){.id = 8, .state = LLMLAB_REQ_WAITING, .arrival_s = 0.1, .prompt_len = 10,
                                   .target = 10, .max_new = 5};
    vfix_seal(&f, 2, 100, 0);
    plan_of(&s, &f);
    cr_assert(f.run[0] == 100 && f.run[1] == 0, "one queue: first come first served");
    inst_free(&s);
}

/* ---- sjf ---------------------------------------------------------------------------------------- */

Test(sched_plugins, sjf_orders_by_predicted_length_and_srpt_preempts) {
    static vfix f;
    small_view(&f, 3, 100);
    f.pred[0] = 50, f.pred[1] = 10, f.pred[2] = 30;
    f.v.max_seqs = 2;
    sched_inst s;
    inst_make(&s, "sjf", NULL);
    plan_of(&s, &f);
    cr_assert(f.run[1] == 8 && f.run[2] == 8 && f.run[0] == 0, "the two shortest predicted outputs go first");
    /* non-preemptive: a running long job keeps its slot */
    f.reqs[0].state = LLMLAB_REQ_RUNNING, f.reqs[0].computed = 8, f.reqs[0].generated = 1, f.held[0] = 2;
    f.v.max_seqs = 1;
    vfix_seal(&f, 3, 100, 0);
    plan_of(&s, &f);
    cr_assert(f.run[0] == 1 && !f.pre[0] && f.run[1] == 0, "non-preemptive: the running job continues");
    inst_free(&s);
    const char *kv[] = {"preemptive", "true", NULL};
    inst_make(&s, "sjf", kv);
    plan_of(&s, &f);
    cr_assert(f.pre[0] == 1 && f.run[1] == 8, "SRPT: 49 tokens left loses its slot to a 10-token job");
    f.pred[0] = 5; /* now the running job is the shortest */
    plan_of(&s, &f);
    cr_assert(!f.pre[0] && f.run[0] == 1 && f.run[1] == 0, "SRPT keeps the job with the least left");
    inst_free(&s);
}

Test(sched_plugins, sjf_admits_a_prefix_of_the_queue_sorted_by_prediction) {
    uint64_t seed = fixture_seed("sched-sjf");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 6);
    static vfix f;
    sched_inst s;
    inst_make(&s, "sjf", NULL);
    for (int it = 0; it < 500; it++) {
        random_view(&f, &g);
        plan_of(&s, &f);
        /* every admitted request predicts no more than every waiting one left out */
        int max_in = -1, min_out = 1 << 30;
        for (int i = 0; i < f.v.n_reqs; i++) {
            if (f.reqs[i].state != LLMLAB_REQ_WAITING && f.reqs[i].state != LLMLAB_REQ_SWAPPED) continue;
            if (f.run[i] > 0 && f.pred[i] > max_in) max_in = f.pred[i];
            if (f.run[i] == 0 && f.pred[i] < min_out) min_out = f.pred[i];
        }
        cr_assert_leq(max_in, min_out, "view %d: admitted a job of %d while one of %d waits (seed %llu)", it, max_in,
                      min_out, (unsigned long long)seed);
    }
    inst_free(&s);
}

/* ---- the real engine ---------------------------------------------------------------------------- */

/* Runs reqs[R] through an engine with sched plugin c; kv_tokens small = a pool
 * that forces preemptions (swap: by swapping when the plugin or engine can). */
static llmlab_run_result *engine_run(const fixture_model *fm, const sched_config *c, const llmlab_request *reqs, int n,
                                     int kv_tokens, int swap, uint64_t seed) {
    llmlab_param_value vals[4];
    int nv = 0;
    for (; c->kv[2 * nv]; nv++) llmlab_param_value_from_text(&vals[nv], c->kv[2 * nv], c->kv[2 * nv + 1]);
    llmlab_engine_opts o = {.registry = g_reg, .sched = {c->name, vals, nv}, .seed = seed, .n_threads = 2,
                            .kv_tokens = kv_tokens, .kv_block_size = 4, .max_seqs = 4, .token_budget = 32,
                            .swap_tokens = swap ? 512 : 0,
                            .preempt_mode = swap ? LLMLAB_PREEMPT_SWAP : LLMLAB_PREEMPT_RECOMPUTE};
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, fm->m, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_run(e, reqs, n, &res, &err), LLMLAB_OK, "%s (kv %d, swap %d): %s (seed %llu)", c->name,
                 kv_tokens, swap, err.msg, (unsigned long long)seed);
    llmlab_engine_free(e);
    return res;
}

Test(sched_plugins, engine_runs_every_plugin_to_fcfs_greedy_outputs, .timeout = 120) {
    uint64_t seed = fixture_seed("sched-engine");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 7);
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[1], 5);
    enum { R = 10 };
    int32_t prompts[R][48];
    llmlab_request reqs[R];
    for (int i = 0; i < R; i++) {
        /* long enough that four running requests need more than the tight pool's 24 blocks
         * (4 x (24 + 6) tokens / 4 per block = 30), so every seed puts the pool under pressure */
        int len = rnd(&g, 24, 48);
        for (int k = 0; k < len; k++) prompts[i][k] = (int32_t)rnd(&g, 0, fm.m->cfg.vocab_size - 1);
        reqs[i] = (llmlab_request){.id = i, .prompt = prompts[i], .prompt_len = len, .max_new = rnd(&g, 6, 12),
                                   .arrival_s = 0, .priority = rnd(&g, 0, 2)};
    }
    const sched_config fcfs = {"fcfs", {NULL}};
    const sched_config runs[] = {{"static", {"max_batch", "4", NULL}}, {"chunked_prefill", {"chunk", "20", NULL}},
                                 {"priority", {NULL}}, {"priority", {"victim", "most_blocks", NULL}},
                                 {"mlfq", {"base_quantum", "4", NULL}}, {"sjf", {"preemptive", "true", NULL}},
                                 {"sjf", {NULL}}};
    llmlab_run_result *ref = engine_run(&fm, &fcfs, reqs, R, 1024, 0, seed);
    long long preempted = 0, swapped = 0;
    for (size_t c = 0; c < sizeof runs / sizeof runs[0]; c++)
        for (int pool = 0; pool < 3; pool++) { /* roomy; tight with recompute; tight with swap */
            llmlab_run_result *res = engine_run(&fm, &runs[c], reqs, R, pool ? 96 : 1024, pool == 2, seed);
            cr_assert_eq(res->n_reqs, R);
            for (int i = 0; i < R; i++) {
                cr_assert_eq(res->req_id[i], i);
                cr_assert_eq(res->output_len[i], reqs[i].max_new, "%s pool %d: request %d output length", runs[c].name,
                             pool, i);
                cr_assert_geq(res->finish_s[i], 0, "%s: request %d finished", runs[c].name, i);
                int toks = 0;
                for (int k = 0; k < res->n_tok; k++) toks += res->tok_req[k] == i;
                cr_assert_eq(toks, reqs[i].max_new, "%s: request %d's tokens recorded once each", runs[c].name, i);
                cr_assert(!memcmp(res->output[i], ref->output[i], sizeof(int32_t) * (size_t)reqs[i].max_new),
                          "%s pool %d: request %d's greedy output differs from fcfs's (seed %llu)", runs[c].name, pool,
                          i, (unsigned long long)seed);
            }
            for (int k = 0; k < res->n_steps; k++) {
                cr_assert_leq(res->step_tokens[k], 32, "%s: step %d over the token budget", runs[c].name, k);
                cr_assert_leq(res->step_seqs[k], 4, "%s: step %d over max_seqs", runs[c].name, k);
                cr_assert_leq(res->step_kv_blocks[k], pool ? 24 : 256, "%s: step %d over the pool", runs[c].name, k);
            }
            preempted += pool ? res->preemptions_total : 0;
            swapped += pool == 2 ? res->swaps_total : 0;
            llmlab_run_result_free(res);
        }
    cr_assert_gt(preempted, 0, "the tight pool made some plugin preempt");
    cr_assert_gt(swapped, 0, "the tight pool with swap space swapped");
    llmlab_run_result_free(ref);
    fixture_free(&fm);
}
