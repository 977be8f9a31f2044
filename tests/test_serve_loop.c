/* test_serve_loop.c - the serving loop (core/engine_run.c, serve_*.c): the live
 * view, the block manager (admission, per-step allocation, preemption by
 * recompute and by swap), cancellation and closed-loop arrivals.
 *
 * The key property: preemption (recompute or swap, by the engine or asked by the
 * scheduler) never changes a greedy output or the KV cache a request ends with.
 * Two test schedulers live here: t_chaos (ABI 1.3: checks every view it gets,
 * admits greedily, preempts at random, holds a chosen request to make
 * cancellation deterministic) and t_old (built as ABI 1.2: must get the full
 * request list). */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/kv_cache.h"
#include "core/params.h"
#include "core/registry.h"
#include "core/rng.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"

static llmlab_registry *g_reg;
static fixture_model g_fm;

/* ---- what the test schedulers saw (one run at a time) ------------------------------------ */

enum { TS_MAX_IDS = 64 };

static struct {
    int violations;
    char first[256];             /* the first violation */
    double first_seen[TS_MAX_IDS], last_seen[TS_MAX_IDS];
    int calls, victim_calls;
    int expect_n;                /* t_old: the full list's length */
    int saw_future, saw_finished;
} g_ts;

static void ts_reset(void) {
    memset(&g_ts, 0, sizeof g_ts);
    for (int i = 0; i < TS_MAX_IDS; i++) g_ts.first_seen[i] = g_ts.last_seen[i] = -1;
}

static void ts_violation(const char *what, int id, double now) {
    if (g_ts.violations++ == 0) snprintf(g_ts.first, sizeof g_ts.first, "%s (request %d at %.6f s)", what, id, now);
}

/* ---- t_chaos: ABI 1.3 --------------------------------------------------------------------- */

typedef struct {
    const llmlab_host *h;
    llmlab_rng rng;
    int preempt_every;  /* 0 = never, else preempt a random running request with chance 1/n per call */
    int victim;         /* pick_victim answers with a random running request (else -1) */
    int hold_id, hold_after, hold_swap; /* stop scheduling request hold_id once it generated hold_after */
} chaos;

static llmlab_status chaos_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                  llmlab_err *err) {
    chaos *c = h->alloc(sizeof *c);
    if (!c) return LLMLAB_ENOMEM;
    c->h = h;
    llmlab_rng_seed(&c->rng, (uint64_t)h->param_int(p, "seed"), 99);
    c->preempt_every = (int)h->param_int(p, "preempt_every");
    c->victim = h->param_bool(p, "victim");
    c->hold_id = (int)h->param_int(p, "hold_id");
    c->hold_after = (int)h->param_int(p, "hold_after");
    c->hold_swap = h->param_bool(p, "hold_swap");
    *self = c;
    return LLMLAB_OK;
}

static void chaos_destroy(void *self) {
    if (self) ((chaos *)self)->h->free(self);
}

/* The view must hold only live requests, in arrival order, with sane fields. */
static void chaos_check_view(const llmlab_sched_view *v) {
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_WAITING && r->state != LLMLAB_REQ_RUNNING && r->state != LLMLAB_REQ_SWAPPED)
            ts_violation("a request that is not live is in the view", r->id, v->now_s);
        if (r->arrival_s > v->now_s) ts_violation("a request in the view has not arrived", r->id, v->now_s);
        if (i > 0 && r->arrival_s < v->reqs[i - 1].arrival_s) ts_violation("view not in arrival order", r->id, v->now_s);
        if (v->blocks_held[i] < 0 || (r->state == LLMLAB_REQ_WAITING && v->blocks_held[i] != 0))
            ts_violation("blocks_held wrong", r->id, v->now_s);
        if (v->predicted_out[i] != r->max_new) ts_violation("predicted_out is not max_new", r->id, v->now_s);
        if (r->id >= 0 && r->id < TS_MAX_IDS) {
            if (g_ts.first_seen[r->id] < 0) g_ts.first_seen[r->id] = v->now_s;
            g_ts.last_seen[r->id] = v->now_s;
        }
    }
    if (v->kv_blocks_free < 0 || v->kv_blocks_free > v->kv_blocks_total || v->swap_blocks_free < 0 ||
        v->swap_blocks_free > v->swap_blocks_total)
        ts_violation("pool counts out of range", -1, v->now_s);
}

static int chaos_random_running(chaos *c, const llmlab_sched_view *v) {
    int n = 0;
    for (int i = 0; i < v->n_reqs; i++) n += v->reqs[i].state == LLMLAB_REQ_RUNNING;
    if (n == 0) return -1;
    int k = (int)(llmlab_rng_next(&c->rng) % (uint64_t)n);
    for (int i = 0; i < v->n_reqs; i++)
        if (v->reqs[i].state == LLMLAB_REQ_RUNNING && k-- == 0) return i;
    return -1;
}

/* Tokens to run for request i (0 = leave it), charging *budget. */
static int chaos_tokens(const llmlab_sched_view *v, int i, int *budget) {
    const llmlab_sched_req *r = &v->reqs[i];
    int want = r->target - r->computed;
    if (want <= 0) {
        if (v->decode_tokens > *budget) return 0;
        *budget -= v->decode_tokens;
        return 1;
    }
    int n = want < *budget ? want : *budget;
    *budget -= n;
    return n;
}

static llmlab_status chaos_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                                    llmlab_err *err) {
    chaos *c = self;
    g_ts.calls++;
    chaos_check_view(v);
    if (c->preempt_every > 0 && llmlab_rng_next(&c->rng) % (uint64_t)c->preempt_every == 0) {
        int i = chaos_random_running(c, v);
        if (i >= 0) plan->preempt[i] = (uint8_t)(1 + llmlab_rng_next(&c->rng) % 2);
    }
    int budget = v->token_budget, running = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        const llmlab_sched_req *r = &v->reqs[i];
        if (r->state != LLMLAB_REQ_RUNNING || plan->preempt[i]) continue;
        running++;
        if (r->id == c->hold_id && r->generated >= c->hold_after) {
            if (c->hold_swap) plan->preempt[i] = 2;
            continue;
        }
        plan->run_tokens[i] = chaos_tokens(v, i, &budget);
    }
    for (int pass = 0; pass < 2; pass++) /* swapped ones back first, then admissions, arrival order */
        for (int i = 0; i < v->n_reqs && running < v->max_seqs && budget > 0; i++) {
            const llmlab_sched_req *r = &v->reqs[i];
            if (r->state != (pass ? LLMLAB_REQ_WAITING : LLMLAB_REQ_SWAPPED)) continue;
            if (r->id == c->hold_id && r->generated >= c->hold_after) continue;
            if ((plan->run_tokens[i] = chaos_tokens(v, i, &budget)) > 0) running++;
        }
    return LLMLAB_OK;
}

static int chaos_pick_victim(void *self, const llmlab_sched_view *v) {
    chaos *c = self;
    g_ts.victim_calls++;
    int i = c->victim ? chaos_random_running(c, v) : -1;
    if (i >= 0 && v->reqs[i].state != LLMLAB_REQ_RUNNING) ts_violation("victim not running", v->reqs[i].id, v->now_s);
    return i;
}

static const llmlab_sched_ops chaos_ops = {sizeof chaos_ops, chaos_create, chaos_destroy, chaos_schedule,
                                           chaos_pick_victim};
static const llmlab_param_spec chaos_params[] = {
    {"seed", LLMLAB_PARAM_INT, "1", 0, 1e9, NULL, "random stream"},
    {"preempt_every", LLMLAB_PARAM_INT, "0", 0, 1000, NULL, "preempt with chance 1/n per iteration"},
    {"victim", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL, "pick_victim picks a random running request"},
    {"hold_id", LLMLAB_PARAM_INT, "-1", -1, 1e9, NULL, "request to stop scheduling"},
    {"hold_after", LLMLAB_PARAM_INT, "0", 0, 1e9, NULL, "tokens it may generate first"},
    {"hold_swap", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL, "swap it out when held"},
};
static const llmlab_plugin_desc chaos_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_SCHED, "t_chaos", "0", "test scheduler", chaos_params, 6, &chaos_ops);
static const llmlab_plugin_desc *chaos_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return &chaos_desc; }

/* ---- t_old: a scheduler built against ABI 1.2 ----------------------------------------------- */

static llmlab_status old_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    *self = NULL;
    return LLMLAB_OK;
}
static void old_destroy(void *self) {}

/* fcfs by view index, as 1.2 plugins could: every request, list order. */
static llmlab_status old_schedule(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan, llmlab_err *err) {
    g_ts.calls++;
    if (v->n_reqs != g_ts.expect_n) ts_violation("a 1.2 plugin got a partial view", v->n_reqs, v->now_s);
    int budget = v->token_budget, running = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        g_ts.saw_future |= v->reqs[i].state == LLMLAB_REQ_FUTURE;
        g_ts.saw_finished |= v->reqs[i].state == LLMLAB_REQ_FINISHED;
        running += v->reqs[i].state == LLMLAB_REQ_RUNNING;
    }
    for (int i = 0; i < v->n_reqs; i++) {
        llmlab_req_state s = v->reqs[i].state;
        if (s == LLMLAB_REQ_RUNNING || (s == LLMLAB_REQ_WAITING && running < v->max_seqs)) {
            int n = chaos_tokens(v, i, &budget);
            plan->run_tokens[i] = n;
            running += n > 0 && s == LLMLAB_REQ_WAITING;
        }
    }
    return LLMLAB_OK;
}

static const llmlab_sched_ops old_ops = {offsetof(llmlab_sched_ops, pick_victim), old_create, old_destroy,
                                         old_schedule, NULL};
static const llmlab_plugin_desc old_desc = {1, 2, sizeof(llmlab_plugin_desc), LLMLAB_PLUGIN_SCHED, "t_old", "0",
                                            "a 1.2 scheduler", NULL, 0, &old_ops};
static const llmlab_plugin_desc *old_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return &old_desc; }

/* ---- setup -------------------------------------------------------------------------------------- */

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_registry_add(g_reg, chaos_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_registry_add(g_reg, old_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    fixture_load(&g_fm, &fixture_shapes[0], 31);
}

static void teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
}

TestSuite(serve, .init = setup, .fini = teardown);

typedef struct {
    const char *sched;            /* NULL = continuous */
    const char *sched_kv[6];      /* "key=value" */
    const char *decoding;         /* NULL = autoregressive */
    const char *dec_kv[4];
    int kv_tokens, block, budget, max_seqs, swap_tokens, preempt_mode;
    double watermark;
    llmlab_finish_fn on_finish;
    void *on_finish_user;
} eng_cfg;

static int to_values(const char *const *kv, llmlab_param_value *v, char keys[][32]) {
    int n = 0;
    for (; n < 6 && kv[n]; n++) {
        const char *eq = strchr(kv[n], '=');
        cr_assert(eq, "bad test parameter %s", kv[n]);
        snprintf(keys[n], 32, "%.*s", (int)(eq - kv[n]), kv[n]);
        llmlab_param_value_from_text(&v[n], keys[n], eq + 1);
    }
    return n;
}

static llmlab_status engine_try(const eng_cfg *c, llmlab_engine **e, llmlab_err *err) {
    llmlab_param_value sv[6], dv[6];
    char sk[6][32], dk[6][32];
    int ns = to_values(c->sched_kv, sv, sk), nd = to_values(c->dec_kv, dv, dk);
    llmlab_engine_opts o = {.registry = g_reg,
                            .decoding = {c->decoding ? c->decoding : "autoregressive", dv, nd},
                            .sched = {c->sched ? c->sched : "continuous", sv, ns},
                            .seed = 5,
                            .n_threads = 2,
                            .kv_tokens = c->kv_tokens ? c->kv_tokens : 4096,
                            .kv_block_size = c->block ? c->block : 8,
                            .max_seqs = c->max_seqs ? c->max_seqs : 8,
                            .token_budget = c->budget ? c->budget : 48,
                            .watermark = c->watermark,
                            .swap_tokens = c->swap_tokens,
                            .preempt_mode = c->preempt_mode,
                            .on_finish = c->on_finish,
                            .on_finish_user = c->on_finish_user};
    return llmlab_engine_create(e, g_fm.m, &o, err);
}

static llmlab_run_result *run_cfg(const eng_cfg *c, const llmlab_request *reqs, int n) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(engine_try(c, &e, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_run_result *r = NULL;
    llmlab_status st = llmlab_engine_run(e, reqs, n, &r, &err);
    llmlab_engine_free(e);
    cr_assert_eq(st, LLMLAB_OK, "%s", err.msg);
    return r;
}

/* Random prompts and lengths; arrivals spread over [0, spread) seconds. */
static void make_workload(dc_requests *w, int n, int max_prompt, int max_new, double spread, uint64_t seed) {
    dc_requests_make(w, n, g_fm.m->cfg.vocab_size, 3, max_prompt, 1, max_new, seed);
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 4242);
    for (int i = 0; i < n; i++) {
        w->reqs[i].arrival_s = spread * (double)(llmlab_rng_next(&g) % 1000) / 1000.0;
        w->reqs[i].priority = (int)(llmlab_rng_next(&g) % 3);
    }
}

/* ---- invariants of any run ------------------------------------------------------------------ */

typedef struct {
    int budget, pool_blocks;
    int check_order;   /* FCFS-like: first admissions follow arrival order */
} run_limits;

static void check_run(const llmlab_run_result *r, const llmlab_request *reqs, int n, const run_limits *lim,
                      const char *what) {
    cr_assert_eq(r->n_reqs, n, "%s", what);
    long long pre = 0, out_blocks = 0, in_blocks = 0, pre_steps = 0;
    for (int j = 0; j < r->n_steps; j++) {
        cr_assert_leq(r->step_tokens[j], lim->budget, "%s: step %d ran %d tokens, budget %d", what, j,
                      r->step_tokens[j], lim->budget);
        cr_assert_leq(r->step_kv_blocks[j], lim->pool_blocks, "%s: step %d holds %d blocks of %d", what, j,
                      r->step_kv_blocks[j], lim->pool_blocks);
        cr_assert_leq(r->step_prefill_tokens[j] + r->step_decode_seqs[j], r->step_tokens[j], "%s", what);
        cr_assert_leq(r->step_decode_seqs[j], r->step_seqs[j], "%s", what);
        pre_steps += r->step_preempted[j];
        out_blocks += r->step_swap_out[j];
        in_blocks += r->step_swap_in[j];
    }
    int *seen = calloc((size_t)n, sizeof *seen);
    cr_assert(seen);
    for (int k = 0; k < r->n_tok; k++) { /* every token logged once, in order, as output */
        int i = r->tok_req[k];
        cr_assert(i >= 0 && i < n, "%s", what);
        cr_assert_eq(r->tok_index[k], seen[i], "%s: request %d token %d logged out of order", what, i, seen[i]);
        cr_assert_eq(r->tok_id[k], r->output[i][seen[i]], "%s", what);
        cr_assert_leq(r->tok_time_s[k], r->finish_s[i], "%s: request %d produced a token after it left", what, i);
        seen[i]++;
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(seen[i], r->output_len[i], "%s: request %d: %d tokens logged, output %d", what, i, seen[i],
                     r->output_len[i]);
        if (r->status[i] == LLMLAB_RUN_FINISHED)
            cr_assert_eq(r->output_len[i], reqs[i].max_new, "%s: request %d finished with %d of %d tokens", what,
                         i, r->output_len[i], reqs[i].max_new);
        else
            cr_assert(reqs[i].cancel_after_s > 0, "%s: request %d cancelled without a deadline", what, i);
        cr_assert_geq(r->finish_s[i], r->arrival_s[i], "%s", what);
        if (r->admit_s[i] >= 0) cr_assert_geq(r->admit_s[i], r->arrival_s[i], "%s: request %d", what, i);
        if (r->first_token_s[i] >= 0) cr_assert_geq(r->first_token_s[i], r->admit_s[i], "%s", what);
        pre += r->preemptions[i];
        cr_assert_leq(r->swaps[i], r->preemptions[i], "%s", what);
        if (i < TS_MAX_IDS && g_ts.first_seen[i] >= 0) { /* the live view, as the test scheduler saw it */
            cr_assert_geq(g_ts.first_seen[i], r->arrival_s[i], "%s: request %d in a view before it arrived", what, i);
            cr_assert_leq(g_ts.last_seen[i], r->finish_s[i], "%s: request %d in a view after it left", what, i);
        }
    }
    cr_assert_eq(pre, r->preemptions_total, "%s", what);
    /* A preemption is logged with the next forward; a cancellation can leave none. */
    cr_assert_leq(pre_steps, pre, "%s: %lld preemptions in the step table, %lld in the requests", what, pre_steps, pre);
    if (r->cancelled_total == 0)
        cr_assert_eq(pre_steps, pre, "%s: %lld preemptions in the step table, %lld in the requests", what, pre_steps,
                     pre);
    cr_assert_leq(in_blocks, out_blocks, "%s: more blocks swapped in than out", what);
    if (r->cancelled_total == 0) cr_assert_eq(in_blocks, out_blocks, "%s: swapped blocks never came back", what);
    if (lim->check_order)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                int before = r->arrival_s[i] < r->arrival_s[j] || (r->arrival_s[i] == r->arrival_s[j] && i < j);
                if (before && r->admit_s[i] >= 0 && r->admit_s[j] >= 0)
                    cr_assert_leq(r->admit_s[i], r->admit_s[j], "%s: request %d admitted after the later %d", what,
                                  i, j);
            }
    cr_assert_eq(g_ts.violations, 0, "%s: the scheduler saw %d bad views; first: %s", what, g_ts.violations, g_ts.first);
    free(seen);
}

static void assert_same_outputs(const llmlab_run_result *want, const llmlab_run_result *got, const char *what) {
    for (int i = 0; i < want->n_reqs; i++) {
        int n = got->output_len[i] < want->output_len[i] ? got->output_len[i] : want->output_len[i];
        if (got->status[i] == LLMLAB_RUN_FINISHED)
            cr_assert_eq(got->output_len[i], want->output_len[i], "%s: request %d length", what, i);
        for (int k = 0; k < n; k++)
            cr_assert_eq(got->output[i][k], want->output[i][k], "%s: request %d token %d: %d, without preemption %d",
                         what, i, k, got->output[i][k], want->output[i][k]);
    }
}

/* ---- the block manager's KV operations --------------------------------------------------------- */

static llmlab_kv *small_kv(int n_blocks, int block, int mass) {
    llmlab_kv_opts o = {.n_layers = 2, .n_kv_heads = 2, .head_dim = 8, .block_size = block, .n_blocks = n_blocks,
                        .max_seqs = 4};
    llmlab_kv *kv = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_create(&kv, &o, &err), LLMLAB_OK, "%s", err.msg);
    if (mass) cr_assert_eq(llmlab_kv_enable_mass(kv, &err), LLMLAB_OK);
    return kv;
}

static void append_n(llmlab_kv *kv, int seq, int n, int pos0) {
    llmlab_err err = {0};
    int32_t pos[64];
    int first;
    for (int i = 0; i < n; i++) pos[i] = pos0 + i;
    int predicted = llmlab_kv_append_blocks(kv, seq, n), before = kv->n_free;
    cr_assert_eq(llmlab_kv_append(kv, seq, n, pos, &first, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(before - kv->n_free, predicted, "append of %d took %d blocks, predicted %d", n, before - kv->n_free,
                 predicted);
    llmlab_kv_commit(kv, seq);
}

Test(serve, append_blocks_predicts_every_allocation) {
    uint64_t seed = fixture_seed("serve_append");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 1);
    llmlab_kv *kv = small_kv(64, 4, 0);
    llmlab_err err = {0};
    for (int round = 0; round < 50; round++) {
        int len = llmlab_kv_len(kv, 0);
        append_n(kv, 0, 1 + (int)(llmlab_rng_next(&g) % 9), len);
        if (llmlab_rng_next(&g) % 4 == 0) { /* a fork shares the partly filled last block: copy-on-write */
            llmlab_kv_free_seq(kv, 1);
            cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK);
            append_n(kv, 1, 1 + (int)(llmlab_rng_next(&g) % 3), llmlab_kv_len(kv, 1));
        }
        if (llmlab_kv_len(kv, 0) > 40) { /* evict a whole block: the trailing rule, and a refill */
            int slots[4] = {0, 1, 2, 3};
            llmlab_kv_free_seq(kv, 1);
            cr_assert_eq(llmlab_kv_evict(kv, 0, slots, 4, &err), LLMLAB_OK);
            llmlab_kv_free_seq(kv, 0);
        }
    }
    llmlab_kv_free(kv);
}

/* Every slot's K/V rows and per-lane metadata of seq, in order. */
typedef struct {
    int len, committed, tokens, n;
    float *rows;
    int32_t *pos;
    uint8_t *valid;
    float *mass, *obs, *last;
} seq_image;

static void image_take(seq_image *im, const llmlab_kv *kv, int seq) {
    int len = llmlab_kv_len(kv, seq), lanes = kv->n_lanes, L = kv->o.n_layers;
    size_t rf = kv->row_floats, m = (size_t)len * (size_t)lanes;
    memset(im, 0, sizeof *im);
    im->len = im->n = len;
    im->committed = llmlab_kv_committed(kv, seq);
    im->tokens = llmlab_kv_tokens(kv, seq);
    im->rows = calloc((size_t)len * (size_t)L * 2 * rf + 1, sizeof(float));
    im->pos = calloc(m + 1, sizeof(int32_t));
    im->valid = calloc(m + 1, 1);
    im->mass = calloc(m + 1, sizeof(float));
    im->obs = calloc(m + 1, sizeof(float));
    im->last = calloc(m + 1, sizeof(float));
    for (int s = 0; s < len; s++) {
        if (llmlab_kv_slot_block(kv, seq, s) < 0) continue;
        for (int l = 0; l < L; l++) {
            memcpy(im->rows + ((size_t)s * L + l) * 2 * rf, llmlab_kv_k_row(kv, seq, s, l), rf * sizeof(float));
            memcpy(im->rows + ((size_t)s * L + l) * 2 * rf + rf, llmlab_kv_v_row(kv, seq, s, l), rf * sizeof(float));
        }
        for (int lane = 0; lane < lanes; lane++) {
            long x = llmlab_kv_meta(kv, seq, s, lane);
            size_t k = (size_t)s * lanes + lane;
            im->pos[k] = kv->slot_pos[x];
            im->valid[k] = kv->slot_valid[x];
            im->mass[k] = kv->mass[x];
            im->obs[k] = kv->obs[x];
            im->last[k] = kv->last[x];
        }
    }
}

static void image_assert_same(const seq_image *a, const seq_image *b) {
    cr_assert(a->len == b->len && a->committed == b->committed && a->tokens == b->tokens, "lengths differ");
    size_t m = (size_t)a->len * 4; /* 4 lanes */
    cr_assert(memcmp(a->rows, b->rows, (size_t)a->len * 2 * 2 * 16 * sizeof(float)) == 0, "K/V differ");
    cr_assert(memcmp(a->pos, b->pos, m * sizeof(int32_t)) == 0, "positions differ");
    cr_assert(memcmp(a->valid, b->valid, m) == 0, "valid bits differ");
    cr_assert(memcmp(a->mass, b->mass, m * sizeof(float)) == 0 && memcmp(a->obs, b->obs, m * sizeof(float)) == 0 &&
                  memcmp(a->last, b->last, m * sizeof(float)) == 0,
              "attention-mass accumulators differ");
}

static void image_free(seq_image *im) {
    free(im->rows), free(im->pos), free(im->valid), free(im->mass), free(im->obs), free(im->last);
}

Test(serve, swap_out_and_in_restore_a_cache_exactly) {
    uint64_t seed = fixture_seed("serve_swap_kv");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 2);
    llmlab_kv *kv = small_kv(16, 4, 1);
    llmlab_err err = {0};
    append_n(kv, 0, 14, 0);
    for (int s = 0; s < 14; s++) /* fresh random K/V, never zeros */
        for (int l = 0; l < 2; l++) {
            float *k = llmlab_kv_k_row(kv, 0, s, l), *v = llmlab_kv_v_row(kv, 0, s, l);
            for (size_t d = 0; d < kv->row_floats; d++) {
                k[d] = (float)(llmlab_rng_next(&g) % 2001) / 1000.0f - 1.0f;
                v[d] = (float)(llmlab_rng_next(&g) % 2001) / 1000.0f - 1.5f;
            }
        }
    float val[14];
    for (int lane = 0; lane < kv->n_lanes; lane++) {
        for (int s = 0; s < 14; s++) val[s] = (float)(llmlab_rng_next(&g) % 1000) / 999.0f + 0.001f;
        llmlab_kv_add_mass(kv, 0, lane, val, 14, lane % 2);
    }
    int lane_ev[2] = {1, 9}, block_ev[4] = {4, 5, 6, 7};
    cr_assert_eq(llmlab_kv_evict_lane(kv, 0, 1, lane_ev, 2, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_evict(kv, 0, block_ev, 4, &err), LLMLAB_OK); /* block 1 freed: a -1 table entry */
    int held = llmlab_kv_seq_blocks(kv, 0);
    cr_assert_eq(held, 3);
    seq_image before, after;
    image_take(&before, kv, 0);

    llmlab_kv_swap sw;
    llmlab_kv_swap_init(&sw, kv, 2); /* too small: nothing changes */
    llmlab_kv_swapped h = {0};
    cr_assert_eq(llmlab_kv_swap_out(kv, &sw, 0, &h, &err), LLMLAB_ENOKV);
    cr_assert_eq(llmlab_kv_seq_blocks(kv, 0), 3);
    llmlab_kv_swap_init(&sw, kv, 8);
    int free0 = kv->n_free;
    cr_assert_eq(llmlab_kv_swap_out(kv, &sw, 0, &h, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(sw.used, 3);
    cr_assert_eq(kv->n_free, free0 + 3, "swap-out frees the device blocks");
    append_n(kv, 1, 56, 0); /* other blocks get reused: the swap-in lands elsewhere */
    cr_assert_eq(llmlab_kv_swap_in(kv, &sw, &h, 2, &err), LLMLAB_ENOKV, "3 blocks do not fit in %d free", kv->n_free);
    llmlab_kv_free_seq(kv, 1);
    append_n(kv, 1, 9, 0);
    cr_assert_eq(llmlab_kv_swap_in(kv, &sw, &h, 2, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(sw.used, 0);
    image_take(&after, kv, 2);
    image_assert_same(&before, &after);
    append_n(kv, 2, 5, 14); /* the restored sequence grows as before (refills its freed tail) */
    image_free(&before);
    image_free(&after);
    llmlab_kv_free(kv);
}

/* ---- exactness under preemption ------------------------------------------------------------- */

/* A run under a tiny pool (with preemption) against one under a big pool.
 * want_swaps: 1 = some preemption must be a swap, 0 = some must recompute,
 * -1 = either. */
static void exact_case(const eng_cfg *tiny, const char *what, uint64_t seed, int want_swaps) {
    dc_requests w;
    make_workload(&w, 16, 36, 24, 0, seed); /* all at once: the most contention */
    eng_cfg big = *tiny;
    big.kv_tokens = 4096;
    big.sched = "continuous";
    memset(big.sched_kv, 0, sizeof big.sched_kv);
    big.preempt_mode = 0;
    big.swap_tokens = 0;
    kv_snapshot ref_kv = {0}, got_kv = {0};
    big.on_finish = kvs_on_finish, big.on_finish_user = &ref_kv;
    eng_cfg small = *tiny;
    small.on_finish = kvs_on_finish, small.on_finish_user = &got_kv;
    ts_reset();
    llmlab_run_result *ref = run_cfg(&big, w.reqs, w.n);
    cr_assert_eq(ref->preemptions_total, 0, "%s: the big pool preempted", what);
    ts_reset();
    llmlab_run_result *got = run_cfg(&small, w.reqs, w.n);
    run_limits lim = {small.budget, small.kv_tokens / small.block, 0};
    check_run(got, w.reqs, w.n, &lim, what);
    cr_assert_gt(got->preemptions_total, 0, "%s: no preemption: the test did not exercise them", what);
    if (want_swaps > 0) cr_assert_gt(got->swaps_total, 0, "%s: nothing was swapped", what);
    if (want_swaps == 0) cr_assert_gt(got->recomputed_tokens_total, 0, "%s: nothing was recomputed", what);
    assert_same_outputs(ref, got, what);
    kvs_assert_same(&ref_kv, &got_kv, w.n, what); /* the caches too, bit for bit */
    fprintf(stderr, "%s: %lld preemptions, %lld swaps (%.0f bytes), %lld tokens recomputed, %d steps\n", what,
            got->preemptions_total, got->swaps_total, got->swap_bytes, got->recomputed_tokens_total, got->n_steps);
    kvs_free(&ref_kv);
    kvs_free(&got_kv);
    llmlab_run_result_free(ref);
    llmlab_run_result_free(got);
    dc_requests_free(&w);
}

Test(serve, recompute_preemption_keeps_greedy_output_exact) {
    uint64_t seed = fixture_seed("serve_recompute");
    eng_cfg c = {.sched_kv = {"reserve=false"}, .kv_tokens = 72, .block = 8, .budget = 48};
    exact_case(&c, "engine preemption by recompute (continuous, reserve=false)", seed, 0);
}

Test(serve, swap_preemption_keeps_greedy_output_exact) {
    uint64_t seed = fixture_seed("serve_swap");
    eng_cfg c = {.sched_kv = {"reserve=false"}, .kv_tokens = 72, .block = 8, .budget = 48, .swap_tokens = 512,
                 .preempt_mode = LLMLAB_PREEMPT_SWAP};
    exact_case(&c, "engine preemption by swap", seed, 1);
    eng_cfg s = c; /* swap space for two blocks: most preemptions fall back to recompute */
    s.swap_tokens = 16;
    exact_case(&s, "engine preemption by swap, small swap space", seed + 1, -1);
}

Test(serve, scheduler_preemptions_and_victims_keep_greedy_output_exact) {
    uint64_t seed = fixture_seed("serve_chaos");
    char sd[32];
    snprintf(sd, sizeof sd, "seed=%llu", (unsigned long long)(seed % 1000000));
    eng_cfg c = {.sched = "t_chaos", .sched_kv = {sd, "preempt_every=3", "victim=true"}, .kv_tokens = 112,
                 .block = 8, .budget = 40, .swap_tokens = 64, .preempt_mode = LLMLAB_PREEMPT_SWAP};
    exact_case(&c, "scheduler preemptions (recompute and swap) and pick_victim", seed, 1);
    cr_assert_gt(g_ts.victim_calls, 0, "pick_victim was never asked");
}

Test(serve, speculative_decoding_under_preemption_stays_exact) {
    uint64_t seed = fixture_seed("serve_spec");
    eng_cfg c = {.sched_kv = {"reserve=false"}, .decoding = "prompt_lookup", .dec_kv = {"num_pred_tokens=3"},
                 .kv_tokens = 72, .block = 8, .budget = 48, .swap_tokens = 256,
                 .preempt_mode = LLMLAB_PREEMPT_SWAP};
    exact_case(&c, "prompt_lookup under swap preemption", seed, 1);
    c.preempt_mode = LLMLAB_PREEMPT_RECOMPUTE;
    c.swap_tokens = 0;
    exact_case(&c, "prompt_lookup under recompute preemption", seed + 7, 0);
    /* A draft model with its own (aux) cache: dropped at preemption, rebuilt by the plugin. */
    eng_cfg d = {.sched_kv = {"reserve=false"}, .decoding = "self_speculative", .dec_kv = {"exit_layer=1", "k=3"},
                 .kv_tokens = 72, .block = 8, .budget = 48, .swap_tokens = 256, .preempt_mode = LLMLAB_PREEMPT_SWAP};
    exact_case(&d, "self_speculative (early exit draft) under swap preemption", seed + 11, 1);
    d.preempt_mode = LLMLAB_PREEMPT_RECOMPUTE;
    exact_case(&d, "self_speculative (early exit draft) under recompute preemption", seed + 13, 0);
}

/* ---- invariants under random workloads ---------------------------------------------------------- */

Test(serve, random_workloads_keep_budget_pool_order_and_finish_once) {
    uint64_t seed = fixture_seed("serve_random");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 3);
    static const char *scheds[] = {"fcfs", "continuous", "continuous", "t_chaos"};
    for (int round = 0; round < 8; round++) {
        eng_cfg c = {.sched = scheds[round % 4], .block = 4 << (int)(llmlab_rng_next(&g) % 2),
                     .budget = 24 + (int)(llmlab_rng_next(&g) % 40), .max_seqs = 2 + (int)(llmlab_rng_next(&g) % 6),
                     .watermark = (llmlab_rng_next(&g) % 2) ? 0.1 : 0};
        c.kv_tokens = c.block * (20 + (int)(llmlab_rng_next(&g) % 20));
        if (round % 4 == 2) c.sched_kv[0] = "reserve=false";
        if (round % 4 == 3) c.sched_kv[0] = "preempt_every=4";
        if (llmlab_rng_next(&g) % 2) {
            c.preempt_mode = LLMLAB_PREEMPT_SWAP;
            c.swap_tokens = c.block * (1 + (int)(llmlab_rng_next(&g) % 30));
        }
        dc_requests w;
        make_workload(&w, 14, 30, 20, 0.02, seed + (uint64_t)round);
        for (int i = 0; i < w.n; i++) /* some requests are cancelled: their output must be a prefix */
            if (llmlab_rng_next(&g) % 5 == 0) w.reqs[i].cancel_after_s = 0.001 * (double)(llmlab_rng_next(&g) % 20);
        char what[160];
        snprintf(what, sizeof what, "round %d: %s %s, block %d, pool %d, budget %d, max_seqs %d, swap %d", round,
                 c.sched, c.sched_kv[0] ? c.sched_kv[0] : "", c.block, c.kv_tokens, c.budget, c.max_seqs,
                 c.swap_tokens);
        ts_reset();
        llmlab_run_result *r = run_cfg(&c, w.reqs, w.n);
        run_limits lim = {c.budget, c.kv_tokens / c.block, round % 4 == 0 || round % 4 == 1};
        check_run(r, w.reqs, w.n, &lim, what);
        eng_cfg big = {.kv_tokens = 4096};
        for (int i = 0; i < w.n; i++) w.reqs[i].cancel_after_s = 0;
        llmlab_run_result *ref = run_cfg(&big, w.reqs, w.n);
        assert_same_outputs(ref, r, what);
        llmlab_run_result_free(ref);
        llmlab_run_result_free(r);
        dc_requests_free(&w);
    }
}

/* ---- cancellation ------------------------------------------------------------------------------ */

static int32_t g_prompt[2][8] = {{5, 17, 99, 3, 250, 41, 8, 77}, {300, 2, 19, 64, 128, 7, 33, 401}};

Test(serve, cancellation_frees_blocks_and_stops_output) {
    for (int swap = 0; swap < 2; swap++) {
        /* Request 0 runs 20 tokens, then the scheduler holds it (RUNNING with its
         * KV, or swapped out) until it is cancelled at 0.02 s; request 1 arrives
         * at 0.05 s and must find the pool empty. */
        const char *hold_swap = swap ? "hold_swap=true" : "hold_swap=false";
        eng_cfg c = {.sched = "t_chaos", .sched_kv = {"hold_id=0", "hold_after=20", hold_swap},
                     .kv_tokens = 256, .block = 8, .swap_tokens = swap ? 64 : 0};
        llmlab_request reqs[2] = {
            {.id = 0, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 100, .cancel_after_s = 0.02},
            {.id = 1, .prompt = g_prompt[1], .prompt_len = 8, .max_new = 5, .arrival_s = 0.05},
        };
        ts_reset();
        llmlab_run_result *r = run_cfg(&c, reqs, 2);
        run_limits lim = {48, 32, 0};
        check_run(r, reqs, 2, &lim, swap ? "cancel while swapped" : "cancel while running");
        cr_assert_eq(r->status[0], LLMLAB_RUN_CANCELLED);
        cr_assert_eq(r->status[1], LLMLAB_RUN_FINISHED);
        /* Normally it is held after 20 tokens; on a machine stalled for 20 ms it
         * is cancelled earlier with fewer, and the properties stay the same. */
        int kept = r->output_len[0];
        cr_assert_leq(kept, 20, "held after 20 tokens, it generated %d", kept);
        cr_assert_geq(r->finish_s[0], 0.02);
        cr_assert_eq(r->cancelled_total, 1);
        cr_assert_eq(r->swaps[0], swap && kept == 20);
        int after = 0;
        for (int j = 0; j < r->n_steps; j++)
            if (r->step_start_s[j] > r->finish_s[0]) {
                after++;
                cr_assert_leq(r->step_kv_blocks[j], 2, "step %d after the cancellation holds %d blocks", j,
                              r->step_kv_blocks[j]);
            }
        cr_assert_geq(after, 5, "request 1's steps come after the cancellation");
        eng_cfg big = {0}; /* the kept tokens are the uncancelled output's prefix */
        reqs[0].cancel_after_s = 0;
        reqs[0].max_new = kept > 0 ? kept : 1;
        llmlab_run_result *ref = run_cfg(&big, reqs, 2);
        assert_same_outputs(ref, r, "cancelled output");
        llmlab_run_result_free(ref);
        llmlab_run_result_free(r);
    }
}

Test(serve, cancellation_of_a_waiting_request) {
    eng_cfg c = {.sched = "t_chaos", .sched_kv = {"hold_id=1", "hold_after=0"}};
    llmlab_request reqs[2] = {
        {.id = 0, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 6},
        {.id = 1, .prompt = g_prompt[1], .prompt_len = 8, .max_new = 6, .arrival_s = 0.001, .cancel_after_s = 0.01},
    };
    ts_reset();
    llmlab_run_result *r = run_cfg(&c, reqs, 2);
    cr_assert_eq(r->status[1], LLMLAB_RUN_CANCELLED);
    cr_assert_eq(r->output_len[1], 0);
    cr_assert_lt(r->admit_s[1], 0, "never admitted");
    cr_assert_geq(r->finish_s[1], 0.011 - 1e-9);
    cr_assert_eq(r->status[0], LLMLAB_RUN_FINISHED);
    llmlab_run_result_free(r);
}

/* ---- closed loop ------------------------------------------------------------------------------ */

Test(serve, closed_loop_arrival_follows_finish_or_cancel) {
    eng_cfg c = {.sched = "t_chaos", .sched_kv = {"hold_id=2", "hold_after=3"}};
    llmlab_request reqs[4] = {
        {.id = 0, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 7},
        {.id = 1, .prompt = g_prompt[1], .prompt_len = 8, .max_new = 4, .arrival_s = 0.01, .released_by = 1},
        /* held after 3 tokens, cancelled 5 ms after it arrives: it still releases request 3 */
        {.id = 2, .prompt = g_prompt[0], .prompt_len = 5, .max_new = 9, .released_by = 2, .cancel_after_s = 0.005},
        {.id = 3, .prompt = g_prompt[1], .prompt_len = 6, .max_new = 2, .arrival_s = 0.002, .released_by = 3},
    };
    ts_reset();
    llmlab_run_result *r = run_cfg(&c, reqs, 4);
    run_limits lim = {48, 512, 1};
    check_run(r, reqs, 4, &lim, "closed loop");
    cr_assert_eq(r->arrival_s[1], r->finish_s[0] + 0.01, "request 1 arrives 0.01 s after request 0 finishes");
    cr_assert_eq(r->arrival_s[2], r->finish_s[1]);
    cr_assert_eq(r->status[2], LLMLAB_RUN_CANCELLED);
    cr_assert_leq(r->output_len[2], 3);
    cr_assert_eq(r->arrival_s[3], r->finish_s[2] + 0.002, "a cancellation releases the next request too");
    for (int i = 1; i < 4; i++) cr_assert_geq(r->admit_s[i], r->arrival_s[i]);
    llmlab_run_result_free(r);

    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    eng_cfg d = {0};
    cr_assert_eq(engine_try(&d, &e, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_request cyc[3] = {
        {.id = 10, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 2},
        {.id = 11, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 2, .released_by = 3},
        {.id = 12, .prompt = g_prompt[0], .prompt_len = 8, .max_new = 2, .released_by = 2},
    };
    cr_assert_eq(llmlab_engine_run(e, cyc, 3, &r, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "request 11") && strstr(err.msg, "ever arrive"), "%s", err.msg);
    cyc[1].released_by = 4;
    cr_assert_eq(llmlab_engine_run(e, cyc, 3, &r, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "released_by 4"), "%s", err.msg);
    llmlab_engine_free(e);
}

/* ---- old plugins get the full view ----------------------------------------------------------- */

Test(serve, abi_1_2_scheduler_gets_every_request) {
    dc_requests w;
    make_workload(&w, 9, 20, 12, 0.02, fixture_seed("serve_old"));
    w.reqs[8].arrival_s = 0.03; /* surely in the future at the first iteration */
    eng_cfg c = {.sched = "t_old", .max_seqs = 3};
    ts_reset();
    g_ts.expect_n = w.n;
    llmlab_run_result *r = run_cfg(&c, w.reqs, w.n);
    cr_assert_eq(g_ts.violations, 0, "%s", g_ts.first);
    cr_assert(g_ts.saw_future && g_ts.saw_finished, "the full view shows future and finished requests");
    eng_cfg big = {0};
    llmlab_run_result *ref = run_cfg(&big, w.reqs, w.n);
    assert_same_outputs(ref, r, "ABI 1.2 scheduler");
    llmlab_run_result_free(ref);
    llmlab_run_result_free(r);
    dc_requests_free(&w);
}

/* ---- errors ------------------------------------------------------------------------------------ */

Test(serve, a_request_too_large_for_the_pool_is_named) {
    int32_t prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = (int32_t)(i * 7 % 509);
    const char *scheds[] = {"fcfs", "continuous"};
    for (int k = 0; k < 2; k++) {
        llmlab_engine *e = NULL;
        llmlab_err err = {0};
        eng_cfg c = {.sched = scheds[k], .kv_tokens = 32, .block = 8};
        cr_assert_eq(engine_try(&c, &e, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_request big = {.id = 7, .prompt = prompt, .prompt_len = 40, .max_new = 3};
        llmlab_run_result *r = NULL;
        cr_assert_eq(llmlab_engine_run(e, &big, 1, &r, &err), LLMLAB_ENOKV, "%s: %s", scheds[k], err.msg);
        cr_assert(strstr(err.msg, "request 7") && strstr(err.msg, "4 blocks of 8"), "%s", err.msg);
        llmlab_request grows = {.id = 8, .prompt = prompt, .prompt_len = 20, .max_new = 30}; /* fits, then not */
        cr_assert_eq(llmlab_engine_run(e, &grows, 1, &r, &err), LLMLAB_ENOKV, "%s", err.msg);
        cr_assert(strstr(err.msg, "request 8") && strstr(err.msg, "even alone"), "%s", err.msg);
        llmlab_engine_free(e);
    }
}

Test(serve, bad_block_manager_options_are_refused) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    eng_cfg c = {.preempt_mode = LLMLAB_PREEMPT_SWAP};
    cr_assert_eq(engine_try(&c, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "preempt_mode") && strstr(err.msg, "swap"), "%s", err.msg);
    eng_cfg w = {.watermark = 1.5};
    cr_assert_eq(engine_try(&w, &e, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "watermark"), "%s", err.msg);
    int tokens;
    double bytes;
    cr_assert_eq(llmlab_parse_swap_space("4096", &tokens, &bytes, &err), LLMLAB_OK);
    cr_assert(tokens == 4096 && bytes == 0);
    cr_assert_eq(llmlab_parse_swap_space("512MiB", &tokens, &bytes, &err), LLMLAB_OK);
    cr_assert(tokens == 0 && bytes == 536870912.0);
    cr_assert_eq(llmlab_parse_swap_space("2GB", &tokens, &bytes, &err), LLMLAB_OK);
    cr_assert(bytes == 2e9);
    cr_assert_eq(llmlab_parse_swap_space("12 parsecs", &tokens, &bytes, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "12 parsecs"), "%s", err.msg);
    cr_assert_eq(llmlab_parse_swap_space("-5", &tokens, &bytes, &err), LLMLAB_EINVAL);
    int mode;
    cr_assert_eq(llmlab_parse_preempt_mode("swap", &mode, &err), LLMLAB_OK);
    cr_assert_eq(mode, LLMLAB_PREEMPT_SWAP);
    cr_assert_eq(llmlab_parse_preempt_mode("evict", &mode, &err), LLMLAB_EINVAL);
}
