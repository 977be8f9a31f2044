/* test_sim.c - the simulated executor (core/sim.c), the cost model
 * (core/costmodel.c) and the capacity search (core/capacity.c):
 *   - a hand-computed schedule on a constant-cost model;
 *   - determinism, and replay of a request list stored in a results file;
 *   - invariants on random workloads under a small KV pool (recompute and swap);
 *   - the same plan, step for step, as the real engine on a synthetic model;
 *   - closed loops and cancellation;
 *   - 100k requests (no timing assertion: it must finish within the ctest timeout);
 *   - the least-squares fit recovers known coefficients; the roofline formula;
 *     profile.json round trip and its errors;
 *   - capacity search brackets a known threshold and is monotone in the cost. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/capacity.h"
#include "core/costmodel.h"
#include "core/engine.h"
#include "core/registry.h"
#include "core/rng.h"
#include "core/sim.h"
#include "core/workload.h"
#include "util/fixture_model.h"
#include "util/proc.h"
#include "util/tmpdir.h"

static llmlab_registry *reg;

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK, "%s", err.msg);
}
static void teardown(void) { llmlab_registry_free(reg); }
TestSuite(sim, .init = setup, .fini = teardown, .timeout = 600);

/* A fitted cost model with the given coefficients (c0, per prefill token, per
 * decode, per decode KV token, per prefill pair) and a tiny KV shape. */
static llmlab_costmodel cost_of(double c0, double pf, double dec, double kv, double attn) {
    llmlab_costmodel m;
    memset(&m, 0, sizeof m);
    m.kind = LLMLAB_COST_FITTED;
    m.coef[LLMLAB_COST_C0] = c0, m.coef[LLMLAB_COST_PF] = pf, m.coef[LLMLAB_COST_DEC] = dec;
    m.coef[LLMLAB_COST_KV] = kv, m.coef[LLMLAB_COST_ATTN] = attn;
    m.shape.kv_bytes_per_token = 1024;
    return m;
}

static llmlab_sim *make_sim(const char *sched, const llmlab_costmodel *cost, int kv_tokens, int budget, int max_seqs) {
    llmlab_sim_opts o = {.registry = reg, .sched = {sched, NULL, 0}, .cost = *cost, .kv_tokens = kv_tokens,
                         .token_budget = budget, .max_seqs = max_seqs, .record_tokens = 1};
    llmlab_sim *s = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_OK, "%s", err.msg);
    return s;
}

/* n requests with random lengths and Poisson-like arrivals at `rate`. */
static llmlab_request *random_reqs(llmlab_rng *rng, int n, double rate, int max_prompt, int max_out) {
    llmlab_request *r = calloc((size_t)n, sizeof *r);
    cr_assert(r);
    double t = 0;
    for (int i = 0; i < n; i++) {
        t += -log(1 - llmlab_rng_uniform_d(rng)) / rate;
        r[i] = (llmlab_request){.id = i, .prompt_len = 1 + (int)(llmlab_rng_next(rng) % (uint64_t)max_prompt),
                                .max_new = 1 + (int)(llmlab_rng_next(rng) % (uint64_t)max_out), .arrival_s = t,
                                .priority = (int)(llmlab_rng_next(rng) % 3)};
    }
    return r;
}

/* ---- a hand-computed schedule -------------------------------------------------------------- */

/* Constant 1 s iterations, continuous batching: both prompts prefill in
 * iteration 1 (t 0..1, first tokens at 1), then one decode per iteration. */
Test(sim, hand_schedule_constant_cost) {
    llmlab_costmodel c = cost_of(1.0, 0, 0, 0, 0);
    llmlab_sim *s = make_sim("continuous", &c, 4096, 512, 8);
    llmlab_request rq[3] = {{.id = 7, .prompt_len = 4, .max_new = 3},
                            {.id = 8, .prompt_len = 6, .max_new = 1},
                            {.id = 9, .prompt_len = 2, .max_new = 2, .arrival_s = 1.5}};
    llmlab_run_result *r = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_sim_run(s, rq, 3, &r, NULL, &err), LLMLAB_OK, "%s", err.msg);
    /* iteration 1 [0,1): prefill 4 + 6; tokens 7:0 and 8:0 at 1 (8 finishes)
     * iteration 2 [1,2): decode 7; token 7:1 at 2 (request 9 arrives at 1.5, waits)
     * iteration 3 [2,3): decode 7 + prefill 9; 7:2 and 9:0 at 3 (7 finishes)
     * iteration 4 [3,4): decode 9; 9:1 at 4 */
    cr_assert_eq(r->n_steps, 4);
    const int tokens[4] = {10, 1, 3, 1}, seqs[4] = {2, 1, 2, 1}, prefill[4] = {10, 0, 2, 0};
    for (int j = 0; j < 4; j++) {
        cr_assert(r->step_start_s[j] == j && r->step_dt_s[j] == 1.0, "step %d at %g for %g", j, r->step_start_s[j],
                  r->step_dt_s[j]);
        cr_assert_eq(r->step_tokens[j], tokens[j], "step %d", j);
        cr_assert_eq(r->step_seqs[j], seqs[j], "step %d", j);
        cr_assert_eq(r->step_prefill_tokens[j], prefill[j], "step %d", j);
    }
    cr_assert(r->first_token_s[0] == 1 && r->finish_s[0] == 3 && r->admit_s[0] == 0);
    cr_assert(r->first_token_s[1] == 1 && r->finish_s[1] == 1);
    cr_assert(r->arrival_s[2] == 1.5 && r->admit_s[2] == 2 && r->first_token_s[2] == 3 && r->finish_s[2] == 4);
    cr_assert_eq(r->output_tokens, 6);
    cr_assert_eq(r->n_tok, 6);
    /* KV blocks (16 tokens each): step 1: 1 + 1; step 2: request 7 only */
    cr_assert_eq(r->step_kv_blocks[0], 2);
    cr_assert_eq(r->step_kv_blocks[1], 1);
    /* per-token records in time order, indices per request */
    cr_assert(r->tok_req[0] == 7 && r->tok_index[0] == 0 && r->tok_time_s[0] == 1);
    cr_assert(r->tok_req[5] == 9 && r->tok_index[5] == 1 && r->tok_time_s[5] == 4);
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(r, NULL, &m, NULL), LLMLAB_OK);
    cr_assert(m.ttft.mean == (1.0 + 1.0 + 1.5) / 3 && m.e2e.max == 3.0 && m.duration_s == 4.0);
    cr_assert(m.tpot.mean == 1.0 && m.itl.n == 3);
    llmlab_run_result_free(r);
    llmlab_sim_free(s);
}

/* The cost model's terms advance the clock: one prefill of 10 tokens after 0
 * cached ones costs c0 + 10 pf + 55 attn. */
Test(sim, iteration_time_is_the_cost_model) {
    llmlab_costmodel c = cost_of(0.5, 0.25, 0.125, 0.0625, 0.03125);
    llmlab_sim *s = make_sim("continuous", &c, 4096, 512, 8);
    llmlab_request rq = {.id = 0, .prompt_len = 10, .max_new = 2};
    llmlab_run_result *r = NULL;
    cr_assert_eq(llmlab_sim_run(s, &rq, 1, &r, NULL, NULL), LLMLAB_OK);
    cr_assert_eq(r->n_steps, 2);
    cr_assert(r->step_dt_s[0] == 0.5 + 10 * 0.25 + 55 * 0.03125);
    cr_assert(r->step_dt_s[1] == 0.5 + 0.125 + 11 * 0.0625); /* decode at 10 cached: sees 11 */
    cr_assert(r->step_kv_context[1] == 11);
    llmlab_run_result_free(r);
    llmlab_sim_free(s);
}

/* ---- determinism and replay -------------------------------------------------------------- */

static void assert_same_schedule(const llmlab_run_result *a, const llmlab_run_result *b) {
    cr_assert_eq(a->n_steps, b->n_steps);
    cr_assert_eq(a->n_reqs, b->n_reqs);
    for (int j = 0; j < a->n_steps; j++)
        cr_assert(a->step_start_s[j] == b->step_start_s[j] && a->step_dt_s[j] == b->step_dt_s[j] &&
                      a->step_tokens[j] == b->step_tokens[j] && a->step_seqs[j] == b->step_seqs[j] &&
                      a->step_kv_blocks[j] == b->step_kv_blocks[j] && a->step_preempted[j] == b->step_preempted[j],
                  "step %d differs", j);
    for (int i = 0; i < a->n_reqs; i++)
        cr_assert(a->arrival_s[i] == b->arrival_s[i] && a->admit_s[i] == b->admit_s[i] &&
                      a->first_token_s[i] == b->first_token_s[i] && a->finish_s[i] == b->finish_s[i] &&
                      a->preemptions[i] == b->preemptions[i],
                  "request %d differs", i);
}

Test(sim, deterministic_and_replayed_from_results_file) {
    uint64_t seed = fixture_seed("deterministic_and_replayed_from_results_file");
    llmlab_workload_spec spec;
    llmlab_workload_spec_init(&spec);
    spec.n = 300;
    spec.seed = seed;
    spec.arrival = LLMLAB_ARRIVAL_POISSON;
    spec.rate = 40;
    spec.prompt = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 8, 200, NULL, 1, 0};
    spec.output = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 1, 120, NULL, 1, 0};
    spec.lengths_only = 1;
    llmlab_workload *w = NULL, *back = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_workload_generate(&spec, NULL, 0, &w, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_costmodel c = cost_of(2e-3, 2e-5, 1e-4, 1e-7, 1e-9);
    llmlab_sim *s = make_sim("chunked_prefill", &c, 2048, 256, 32); /* small pool: preemptions */
    llmlab_run_result *r1 = NULL, *r2 = NULL, *r3 = NULL;
    cr_assert_eq(llmlab_sim_run(s, w->reqs, w->n, &r1, NULL, &err), LLMLAB_OK, "%s (seed %llu)", err.msg,
                 (unsigned long long)seed);
    cr_assert_eq(llmlab_sim_run(s, w->reqs, w->n, &r2, NULL, &err), LLMLAB_OK, "%s", err.msg);
    assert_same_schedule(r1, r2);
    /* store the request list, read it back, simulate again: the same schedule */
    char *dir = tmpdir_make(), path[512];
    snprintf(path, sizeof path, "%s/w.h5", dir);
    llmlab_run *run = llmlab_run_create("sim1", &err);
    cr_assert(run);
    cr_assert_eq(llmlab_workload_record(run, w->reqs, w->n, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_record_info info = {NULL, NULL, "simulated", 0, 0, seed, "", ""};
    cr_assert_eq(llmlab_sim_record(run, s, r1, &info, NULL, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_results_write(path, run, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_run_free(run);
    cr_assert_eq(llmlab_workload_read(path, "sim1", &back, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(back->n, w->n);
    cr_assert_eq(llmlab_sim_run(s, back->reqs, back->n, &r3, NULL, &err), LLMLAB_OK, "%s", err.msg);
    assert_same_schedule(r1, r3);
    /* the record holds the serving table and the simulator's settings */
    double *col = NULL;
    size_t n = 0;
    cr_assert_eq(llmlab_results_column_double(path, "sim1", "serving", "ttft_p99_s", &col, &n, &err), LLMLAB_OK,
                 "%s", err.msg);
    cr_assert(n == 1 && col[0] > 0);
    free(col);
    char *exec = NULL;
    cr_assert_eq(llmlab_results_attr_str(path, "sim1", "executor", &exec, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_str_eq(exec, "simulated");
    free(exec);
    tmpdir_remove(dir);
    llmlab_run_result_free(r1);
    llmlab_run_result_free(r2);
    llmlab_run_result_free(r3);
    llmlab_workload_free(w);
    llmlab_workload_free(back);
    llmlab_sim_free(s);
}

/* ---- invariants under random workloads ------------------------------------------------------- */

static void check_invariants(const llmlab_run_result *r, const llmlab_request *rq, int n, int budget, int pool,
                             uint64_t seed, const char *sched) {
    long long toks = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(r->status[i], LLMLAB_RUN_FINISHED, "%s: request %d (seed %llu)", sched, i,
                     (unsigned long long)seed);
        cr_assert_eq(r->output_len[i], rq[i].max_new, "%s: request %d emitted %d of %d", sched, i, r->output_len[i],
                     rq[i].max_new);
        cr_assert(r->arrival_s[i] <= r->admit_s[i] && r->admit_s[i] < r->first_token_s[i] &&
                      r->first_token_s[i] <= r->finish_s[i],
                  "%s: request %d times %g %g %g %g", sched, i, r->arrival_s[i], r->admit_s[i], r->first_token_s[i],
                  r->finish_s[i]);
        toks += rq[i].max_new;
    }
    cr_assert_eq(r->n_tok, toks);
    for (int j = 0; j < r->n_steps; j++) {
        cr_assert(r->step_tokens[j] <= budget, "%s: step %d has %d tokens", sched, j, r->step_tokens[j]);
        cr_assert(r->step_kv_blocks[j] <= pool, "%s: step %d holds %d blocks", sched, j, r->step_kv_blocks[j]);
        cr_assert(r->step_tokens[j] == r->step_prefill_tokens[j] + r->step_decode_seqs[j]);
        if (j) cr_assert(r->step_start_s[j] >= r->step_start_s[j - 1] + r->step_dt_s[j - 1]);
    }
    /* every request's tokens in index order, times non-decreasing */
    int *next = calloc((size_t)n, sizeof *next);
    double *last = calloc((size_t)n, sizeof *last);
    for (int t = 0; t < r->n_tok; t++) {
        int i = r->tok_req[t];
        cr_assert_eq(r->tok_index[t], next[i]++, "%s: token order of request %d", sched, i);
        cr_assert(r->tok_time_s[t] >= last[i]);
        last[i] = r->tok_time_s[t];
    }
    free(next);
    free(last);
}

Test(sim, invariants_every_scheduler_small_pool) {
    uint64_t seed = fixture_seed("invariants_every_scheduler_small_pool");
    const char *scheds[] = {"fcfs", "continuous", "static", "chunked_prefill", "priority", "mlfq", "sjf"};
    llmlab_costmodel c = cost_of(1e-3, 1e-5, 5e-5, 1e-8, 1e-9);
    for (size_t k = 0; k < sizeof scheds / sizeof scheds[0]; k++) {
        if (!llmlab_registry_find(reg, LLMLAB_PLUGIN_SCHED, scheds[k])) {
            fprintf(stderr, "sched plugin %s is not registered: skipped\n", scheds[k]);
            continue;
        }
        for (int mode = LLMLAB_PREEMPT_RECOMPUTE; mode <= LLMLAB_PREEMPT_SWAP; mode++) {
            llmlab_rng rng;
            llmlab_rng_seed(&rng, seed, k);
            int n = 150, budget = 128, pool_tokens = 640;
            llmlab_request *rq = random_reqs(&rng, n, 200, 100, 80);
            llmlab_sim_opts o = {.registry = reg, .sched = {scheds[k], NULL, 0}, .cost = c, .kv_tokens = pool_tokens,
                                 .token_budget = budget, .max_seqs = 16, .preempt_mode = mode,
                                 .swap_tokens = mode == LLMLAB_PREEMPT_SWAP ? 4096 : 0, .record_tokens = 1};
            llmlab_sim *s = NULL;
            llmlab_run_result *r = NULL;
            llmlab_err err = {0};
            cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_OK, "%s", err.msg);
            cr_assert_eq(llmlab_sim_run(s, rq, n, &r, NULL, &err), LLMLAB_OK, "%s mode %d: %s (seed %llu)", scheds[k],
                         mode, err.msg, (unsigned long long)seed);
            check_invariants(r, rq, n, budget, pool_tokens / 16, seed, scheds[k]);
            if (mode == LLMLAB_PREEMPT_SWAP) cr_assert(r->swaps_total <= r->preemptions_total);
            else cr_assert_eq(r->swaps_total, 0);
            llmlab_run_result_free(r);
            llmlab_sim_free(s);
            free(rq);
        }
    }
}

/* A pool that cannot hold everyone forces the simulator's own preemptions
 * (continuous without reservation): recompute counts the dropped tokens. */
Test(sim, preemption_recompute_and_swap_accounting) {
    llmlab_costmodel c = cost_of(1e-3, 1e-5, 5e-5, 0, 0);
    llmlab_request rq[8];
    for (int i = 0; i < 8; i++) rq[i] = (llmlab_request){.id = i, .prompt_len = 30, .max_new = 60};
    llmlab_param_value noreserve = {.key = "reserve", .kind = LLMLAB_VAL_BOOL, .b = 0};
    for (int mode = LLMLAB_PREEMPT_RECOMPUTE; mode <= LLMLAB_PREEMPT_SWAP; mode++) {
        llmlab_sim_opts o = {.registry = reg, .sched = {"continuous", &noreserve, 1}, .cost = c, .kv_tokens = 320,
                             .token_budget = 512, .max_seqs = 8, .preempt_mode = mode, .swap_tokens = 4096,
                             .record_tokens = 1};
        llmlab_sim *s = NULL;
        llmlab_run_result *r = NULL;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_sim_run(s, rq, 8, &r, NULL, &err), LLMLAB_OK, "%s", err.msg);
        check_invariants(r, rq, 8, 512, 20, 0, "continuous");
        cr_assert(r->preemptions_total > 0, "8 x 90 tokens in 320 must preempt");
        if (mode == LLMLAB_PREEMPT_RECOMPUTE) {
            cr_assert(r->recomputed_tokens_total > 0 && r->swaps_total == 0);
        } else {
            cr_assert(r->swaps_total > 0 && r->recomputed_tokens_total == 0 && r->swap_bytes > 0);
            long long in = 0, out = 0;
            for (int j = 0; j < r->n_steps; j++) in += r->step_swap_in[j], out += r->step_swap_out[j];
            cr_assert_eq(in, out, "every swapped-out block comes back");
        }
        long long pre = 0;
        for (int i = 0; i < 8; i++) pre += r->preemptions[i];
        cr_assert_eq(pre, r->preemptions_total);
        llmlab_run_result_free(r);
        llmlab_sim_free(s);
    }
}

/* ---- the simulator makes the engine's plan ---------------------------------------------------- */

/* All requests at t = 0, so nothing depends on the clock: the real engine and the
 * simulator must run the same compositions step by step (same plugin, same block
 * manager rules), also when a small pool forces preemptions by recompute or swap. */
typedef struct {
    const char *sched;
    const char *param;  /* a bool parameter set to false, or NULL */
    int kv_tokens, preempt_mode;
} same_case;

static void compare_steps(const llmlab_run_result *sim, const llmlab_run_result *real, const same_case *c,
                          uint64_t seed) {
    cr_assert_eq(sim->n_steps, real->n_steps, "%s pool %d mode %d: %d simulated steps, %d real (seed %llu)", c->sched,
                 c->kv_tokens, c->preempt_mode, sim->n_steps, real->n_steps, (unsigned long long)seed);
    for (int j = 0; j < real->n_steps; j++)
        cr_assert(sim->step_tokens[j] == real->step_tokens[j] && sim->step_seqs[j] == real->step_seqs[j] &&
                      sim->step_prefill_tokens[j] == real->step_prefill_tokens[j] &&
                      sim->step_decode_seqs[j] == real->step_decode_seqs[j] &&
                      sim->step_kv_blocks[j] == real->step_kv_blocks[j] &&
                      sim->step_kv_context[j] == real->step_kv_context[j] &&
                      sim->step_preempted[j] == real->step_preempted[j] &&
                      sim->step_swap_in[j] == real->step_swap_in[j] && sim->step_swap_out[j] == real->step_swap_out[j],
                  "%s pool %d mode %d step %d: sim tokens %d seqs %d prefill %d blocks %d ctx %d pre %d, real %d %d "
                  "%d %d %d %d (seed %llu)",
                  c->sched, c->kv_tokens, c->preempt_mode, j, sim->step_tokens[j], sim->step_seqs[j],
                  sim->step_prefill_tokens[j], sim->step_kv_blocks[j], sim->step_kv_context[j], sim->step_preempted[j],
                  real->step_tokens[j], real->step_seqs[j], real->step_prefill_tokens[j], real->step_kv_blocks[j],
                  real->step_kv_context[j], real->step_preempted[j], (unsigned long long)seed);
    for (int i = 0; i < real->n_reqs; i++) cr_assert_eq(sim->output_len[i], real->output_len[i]);
    cr_assert_eq(sim->preemptions_total, real->preemptions_total);
    cr_assert_eq(sim->recomputed_tokens_total, real->recomputed_tokens_total);
    cr_assert_eq(sim->swaps_total, real->swaps_total);
}

Test(sim, same_steps_as_real_engine) {
    uint64_t seed = fixture_seed("same_steps_as_real_engine");
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], seed);
    const same_case cases[] = {
        {"continuous", NULL, 8192, 1},        {"continuous", "reserve", 512, 1}, {"continuous", "reserve", 512, 2},
        {"chunked_prefill", NULL, 512, 1},    {"chunked_prefill", NULL, 512, 2}, {"fcfs", NULL, 512, 1},
        {"static", NULL, 512, 1},             {"priority", NULL, 512, 1},        {"priority", NULL, 512, 2},
        {"mlfq", NULL, 512, 2},               {"sjf", NULL, 512, 1},
    };
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 99);
    int n = 24;
    llmlab_request *rq = random_reqs(&rng, n, 1e9, 60, 40);
    int32_t *prompt = calloc(64, sizeof *prompt);
    for (int i = 0; i < n; i++) rq[i].arrival_s = 0, rq[i].prompt = prompt;
    llmlab_costmodel cost = cost_of(1e-3, 1e-5, 5e-5, 0, 0);
    cost.shape.kv_bytes_per_token = 1; /* swap copies cost next to nothing */
    long long preempted = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const same_case *c = &cases[k];
        if (!llmlab_registry_find(reg, LLMLAB_PLUGIN_SCHED, c->sched)) continue;
        llmlab_param_value off = {.key = c->param, .kind = LLMLAB_VAL_BOOL, .b = 0};
        llmlab_plugin_choice ch = {c->sched, c->param ? &off : NULL, c->param ? 1 : 0};
        int swap = c->preempt_mode == LLMLAB_PREEMPT_SWAP ? 4096 : 0;
        llmlab_engine_opts eo = {.registry = reg, .sched = ch, .n_threads = 1, .kv_tokens = c->kv_tokens,
                                 .max_seqs = 12, .token_budget = 96, .preempt_mode = c->preempt_mode,
                                 .swap_tokens = swap};
        llmlab_sim_opts so = {.registry = reg, .sched = ch, .cost = cost, .kv_tokens = c->kv_tokens, .max_seqs = 12,
                              .token_budget = 96, .preempt_mode = c->preempt_mode, .swap_tokens = swap,
                              .record_tokens = 1};
        llmlab_engine *e = NULL;
        llmlab_sim *s = NULL;
        llmlab_run_result *real = NULL, *sim = NULL;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_engine_create(&e, fm.m, &eo, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_engine_run(e, rq, n, &real, &err), LLMLAB_OK, "%s: %s", c->sched, err.msg);
        cr_assert_eq(llmlab_sim_create(&s, &so, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_sim_run(s, rq, n, &sim, NULL, &err), LLMLAB_OK, "%s: %s", c->sched, err.msg);
        compare_steps(sim, real, c, seed);
        preempted += real->preemptions_total;
        llmlab_run_result_free(real);
        llmlab_run_result_free(sim);
        llmlab_sim_free(s);
        llmlab_engine_free(e);
    }
    cr_assert(preempted > 0, "the small pool should force preemptions somewhere (seed %llu)",
              (unsigned long long)seed);
    free(prompt);
    free(rq);
    fixture_free(&fm);
}

/* ---- closed loop and cancellation ------------------------------------------------------------ */

Test(sim, closed_loop_and_cancellation) {
    llmlab_costmodel c = cost_of(0.25, 0, 0, 0, 0);
    llmlab_sim *s = make_sim("continuous", &c, 4096, 512, 8);
    /* 0 at t = 0 (3 tokens: finishes at 0.75); 1 arrives 0.5 s after 0 finishes;
     * 2 is cancelled 0.6 s after it arrives at 0 (it wants 100 tokens) */
    llmlab_request rq[3] = {{.id = 0, .prompt_len = 5, .max_new = 3},
                            {.id = 1, .prompt_len = 5, .max_new = 2, .arrival_s = 0.5, .released_by = 1},
                            {.id = 2, .prompt_len = 5, .max_new = 100, .cancel_after_s = 0.6}};
    llmlab_run_result *r = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_sim_run(s, rq, 3, &r, NULL, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(r->finish_s[0] == 0.75);
    cr_assert(r->arrival_s[1] == 1.25 && r->admit_s[1] == 1.25 && r->finish_s[1] == 1.75);
    /* cancelled at the first iteration boundary at or after 0.6: 0.75, with the tokens it had */
    cr_assert_eq(r->status[2], LLMLAB_RUN_CANCELLED);
    cr_assert(r->finish_s[2] == 0.75 && r->output_len[2] == 3);
    cr_assert_eq(r->cancelled_total, 1);
    llmlab_run_result_free(r);
    /* a loop of released_by links is refused, naming a request */
    llmlab_request loop[2] = {{.id = 0, .prompt_len = 1, .max_new = 1, .released_by = 2},
                              {.id = 1, .prompt_len = 1, .max_new = 1, .released_by = 1}};
    cr_assert_eq(llmlab_sim_run(s, loop, 2, &r, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "released_by"), "%s", err.msg);
    llmlab_sim_free(s);
}

Test(sim, bad_options_and_requests) {
    llmlab_costmodel c = cost_of(1e-3, 0, 0, 0, 0);
    llmlab_sim_opts o = {.registry = reg, .cost = c, .kv_tokens = 0};
    llmlab_sim *s = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "kv_tokens"), "%s", err.msg);
    o.kv_tokens = 1024;
    o.sched.name = "no_such_sched";
    cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "no_such_sched"), "%s", err.msg);
    o.sched.name = NULL;
    memset(&o.cost, 0, sizeof o.cost);
    cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "cost model"), "%s", err.msg);
    s = make_sim("continuous", &c, 64, 512, 8);
    llmlab_request big = {.id = 5, .prompt_len = 100, .max_new = 1};
    llmlab_run_result *r = NULL;
    cr_assert_neq(llmlab_sim_run(s, &big, 1, &r, NULL, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "request 5") || strstr(err.msg, "scheduled nothing"), "%s", err.msg);
    llmlab_request neg = {.id = 6, .prompt_len = 0, .max_new = 1};
    cr_assert_eq(llmlab_sim_run(s, &neg, 1, &r, NULL, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "request 6"), "%s", err.msg);
    llmlab_sim_free(s);
}

/* ---- scale ---------------------------------------------------------------------------------------- */

/* 100k requests below saturation, compact records (no per-token rows, an ITL
 * histogram); no timing assertion. */
Test(sim, hundred_thousand_requests) {
    llmlab_rng rng;
    llmlab_rng_seed(&rng, 4242, 1);
    int n = 100000;
    llmlab_request *rq = random_reqs(&rng, n, 60, 400, 200);
    llmlab_config cfg = {.dim = 4096, .ffn_dim = 14336, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8,
                         .head_dim = 128, .vocab_size = 128256};
    llmlab_model_shape sh;
    llmlab_model_shape_of(&sh, &cfg, 2, 2);
    llmlab_hw_spec hw;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_hw_lookup("h200", 0, &hw, &err), LLMLAB_OK);
    llmlab_costmodel c;
    cr_assert_eq(llmlab_cost_roofline(&c, &sh, &hw, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_sim_opts o = {.registry = reg, .sched = {"continuous", NULL, 0}, .cost = c, .kv_tokens = 400000,
                         .token_budget = 2048, .max_seqs = 256, .record_tokens = 0};
    llmlab_sim *s = NULL;
    cr_assert_eq(llmlab_sim_create(&s, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_itl_hist *itl = malloc(sizeof *itl);
    llmlab_run_result *r = NULL;
    cr_assert_eq(llmlab_sim_run(s, rq, n, &r, itl, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(r->n_tok, 0);
    long long want = 0;
    for (int i = 0; i < n; i++) want += rq[i].max_new;
    cr_assert_eq(r->output_tokens, want);
    llmlab_serve_opts so = {.itl_hist = itl, .kv_blocks_total = llmlab_sim_kv_blocks(s)};
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(r, &so, &m, &err), LLMLAB_OK);
    cr_assert_eq(m.completed, n);
    cr_assert_eq(m.itl.n, want - n); /* one gap per token after the first of each request */
    cr_assert(m.itl.pct[1] > 0 && m.kv_util.max <= 1);
    llmlab_run_result_free(r);
    free(itl);
    free(rq);
    llmlab_sim_free(s);
}

/* ---- cost model ----------------------------------------------------------------------------------- */

static void random_shapes(llmlab_rng *rng, llmlab_iter_shape *it, int n) {
    for (int i = 0; i < n; i++) {
        memset(&it[i], 0, sizeof it[i]);
        int d = (int)(llmlab_rng_next(rng) % 65), chunks = (int)(llmlab_rng_next(rng) % 3);
        for (int k = 0; k < d; k++) llmlab_iter_add(&it[i], 0, 1 + (int)(llmlab_rng_next(rng) % 2000));
        for (int k = 0; k < chunks; k++)
            llmlab_iter_add(&it[i], 1 + (int)(llmlab_rng_next(rng) % 512), (int)(llmlab_rng_next(rng) % 1000));
        if (it[i].decode_seqs == 0 && it[i].prefill_tokens == 0) llmlab_iter_add(&it[i], 0, 10);
    }
}

Test(sim, cost_fit_recovers_known_coefficients) {
    uint64_t seed = fixture_seed("cost_fit_recovers_known_coefficients");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 3);
    enum { N = 1000 };
    llmlab_iter_shape *it = malloc(N * sizeof *it);
    double t[N];
    random_shapes(&rng, it, N);
    const double truth[LLMLAB_COST_NTERMS] = {2e-3, 3e-5, 1.5e-4, 1e-7, 2e-9};
    llmlab_costmodel want = cost_of(truth[0], truth[1], truth[2], truth[3], truth[4]);
    /* exact timings: recovered to rounding */
    for (int i = 0; i < N; i++) t[i] = llmlab_cost_predict(&want, &it[i]);
    llmlab_costmodel got;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cost_fit(&got, it, t, N, &err), LLMLAB_OK, "%s", err.msg);
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++)
        cr_assert(fabs(got.coef[k] - truth[k]) <= 1e-6 * truth[k], "term %d: %g vs %g (seed %llu)", k, got.coef[k],
                  truth[k], (unsigned long long)seed);
    cr_assert(got.fit_mape < 1e-9 && got.fit_r2 > 1 - 1e-9);
    /* 1% multiplicative noise: coefficients within 15% (the small terms are the
     * least determined), predictions on fresh compositions within 1% on average */
    for (int i = 0; i < N; i++) t[i] = llmlab_cost_predict(&want, &it[i]) * (1 + 0.01 * llmlab_rng_normal(&rng));
    cr_assert_eq(llmlab_cost_fit(&got, it, t, N, &err), LLMLAB_OK, "%s", err.msg);
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++)
        cr_assert(fabs(got.coef[k] - truth[k]) <= 0.15 * truth[k], "noisy term %d: %g vs %g (seed %llu)", k,
                  got.coef[k], truth[k], (unsigned long long)seed);
    llmlab_iter_shape fresh[100];
    random_shapes(&rng, fresh, 100);
    double ape = 0;
    for (int i = 0; i < 100; i++)
        ape += fabs(llmlab_cost_predict(&got, &fresh[i]) / llmlab_cost_predict(&want, &fresh[i]) - 1) / 100;
    cr_assert(ape < 0.01, "mean prediction error %g (seed %llu)", ape, (unsigned long long)seed);
    /* a term that does not exist comes out >= 0 (not negative), the rest still fit */
    llmlab_costmodel no_kv = cost_of(truth[0], truth[1], truth[2], 0, truth[4]);
    for (int i = 0; i < N; i++) t[i] = llmlab_cost_predict(&no_kv, &it[i]) * (1 + 0.01 * llmlab_rng_normal(&rng));
    cr_assert_eq(llmlab_cost_fit(&got, it, t, N, &err), LLMLAB_OK, "%s", err.msg);
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++) cr_assert(got.coef[k] >= 0, "term %d negative: %g", k, got.coef[k]);
    cr_assert(fabs(got.coef[LLMLAB_COST_DEC] - truth[2]) <= 0.1 * truth[2]);
    /* errors: too few points, a bad time */
    cr_assert_eq(llmlab_cost_fit(&got, it, t, 3, &err), LLMLAB_EINVAL);
    t[7] = -1;
    cr_assert_eq(llmlab_cost_fit(&got, it, t, N, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "iteration 7"), "%s", err.msg);
    free(it);
}

Test(sim, roofline_formula) {
    llmlab_config cfg = {.dim = 4096, .ffn_dim = 14336, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8,
                         .head_dim = 128, .vocab_size = 128256};
    llmlab_model_shape sh;
    llmlab_model_shape_of(&sh, &cfg, 2, 2);
    double per_layer = 4096.0 * (4096 + 2 * 1024) + 4096.0 * 4096 + 3 * 4096.0 * 14336;
    cr_assert(sh.weight_params == 32 * per_layer + 4096.0 * 128256);
    cr_assert(sh.kv_bytes_per_token == 2.0 * 32 * 1024 * 2);
    llmlab_hw_spec hw = {"test", 1e15, 4e12, 1, 1, 1e-4};
    llmlab_costmodel m;
    cr_assert_eq(llmlab_cost_roofline(&m, &sh, &hw, NULL), LLMLAB_OK);
    /* one decode at context 99: memory bound, weights + 100 KV reads + 1 KV write */
    llmlab_iter_shape it = {0};
    llmlab_iter_add(&it, 0, 99);
    double bytes = sh.weight_bytes + sh.kv_bytes_per_token * 101;
    cr_assert(fabs(llmlab_cost_predict(&m, &it) - (1e-4 + bytes / 4e12)) < 1e-15);
    /* a 4096-token prefill: compute bound */
    memset(&it, 0, sizeof it);
    llmlab_iter_add(&it, 4096, 0);
    double flops = 2 * 32 * per_layer * 4096 + 2 * 4096.0 * 128256 + 4.0 * 32 * 32 * 128 * (4096.0 * 4097 / 2);
    cr_assert(fabs(llmlab_cost_predict(&m, &it) - (1e-4 + flops / 1e15)) < 1e-12);
    hw.mem_bw = 0;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cost_roofline(&m, &sh, &hw, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "mem_bw"), "%s", err.msg);
    cr_assert_eq(llmlab_hw_lookup("tpu-v9", 0, &hw, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "tpu-v9") && strstr(err.msg, "h200"), "%s", err.msg);
}

Test(sim, profile_json_round_trip_and_errors) {
    char *dir = tmpdir_make(), path[512];
    snprintf(path, sizeof path, "%s/p.json", dir);
    llmlab_costmodel m = cost_of(1.5e-3, 2.5e-5, 3.5e-4, 4.5e-8, 5.5e-10), back;
    snprintf(m.machine, sizeof m.machine, "test machine");
    m.shape.n_layers = 6;
    m.n_samples = 42;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cost_save(&m, path, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cost_load(&back, path, &err), LLMLAB_OK, "%s", err.msg);
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++) cr_assert(back.coef[k] == m.coef[k]);
    cr_assert(back.kind == LLMLAB_COST_FITTED && back.shape.n_layers == 6 && back.n_samples == 42);
    cr_assert_str_eq(back.machine, "test machine");
    FILE *f = fopen(path, "w");
    fputs("{\"kind\": \"fitted\", \"coef\": {\"c0_s\": \"x\"}, \"shape\": {}, \"hw\": {}}", f);
    fclose(f);
    cr_assert_eq(llmlab_cost_load(&back, path, &err), LLMLAB_EFORMAT);
    cr_assert(strstr(err.msg, "coef.c0_s") && strstr(err.msg, path), "%s", err.msg);
    snprintf(path, sizeof path, "%s/missing.json", dir);
    cr_assert_eq(llmlab_cost_load(&back, path, &err), LLMLAB_EIO);
    tmpdir_remove(dir);
}

/* ---- capacity search ------------------------------------------------------------------------------- */

static llmlab_status threshold_eval(void *user, double rate, llmlab_serve_metrics *m, llmlab_err *err) {
    memset(m, 0, sizeof *m);
    m->slo_attainment = rate <= *(double *)user ? 0.95 : 0.5;
    return LLMLAB_OK;
}

Test(sim, capacity_brackets_a_threshold) {
    uint64_t seed = fixture_seed("capacity_brackets_a_threshold");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 5);
    for (int trial = 0; trial < 20; trial++) {
        double cap = exp(8 * llmlab_rng_uniform_d(&rng) - 3); /* 0.05 .. 150 requests/s */
        llmlab_capacity_opts o = {.lo = 1, .rel_tol = 0.01};
        llmlab_capacity_result r;
        cr_assert_eq(llmlab_capacity_search(&o, threshold_eval, &cap, &r, NULL), LLMLAB_OK);
        cr_assert(r.bracketed, "capacity %g not bracketed (seed %llu)", cap, (unsigned long long)seed);
        cr_assert(r.rate <= cap && r.fail_rate > cap && r.fail_rate - r.rate <= 0.01 * r.fail_rate,
                  "capacity %g: found [%g, %g]", cap, r.rate, r.fail_rate);
        for (int k = 0; k < r.n_evals; k++) /* every probe agrees with its side of the bracket */
            cr_assert((r.rates[k] <= r.rate) == (r.attainment[k] >= 0.9));
    }
    double never = -1, always = 1e12;
    llmlab_capacity_opts o = {.lo = 1};
    llmlab_capacity_result r;
    cr_assert_eq(llmlab_capacity_search(&o, threshold_eval, &never, &r, NULL), LLMLAB_OK);
    cr_assert(r.rate == 0 && !r.bracketed);
    o.max_rate = 1000;
    cr_assert_eq(llmlab_capacity_search(&o, threshold_eval, &always, &r, NULL), LLMLAB_OK);
    cr_assert(isinf(r.fail_rate) && r.rate >= 500 && !r.bracketed);
    o = (llmlab_capacity_opts){.lo = 2, .hi = 1};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_capacity_search(&o, threshold_eval, &never, &r, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "hi"), "%s", err.msg);
}

/* On the simulator: a model twice as fast serves at least as high a rate, and
 * each search's ends pass and fail as reported. */
Test(sim, capacity_on_simulator_monotone_in_cost) {
    double caps[2];
    for (int k = 0; k < 2; k++) {
        double scale = k ? 0.5 : 1.0;
        llmlab_costmodel c = cost_of(4e-3 * scale, 4e-5 * scale, 2e-4 * scale, 1e-7 * scale, 0);
        llmlab_sim *s = make_sim("continuous", &c, 16384, 512, 32);
        llmlab_capacity_ctx ctx = {.sim = s};
        llmlab_workload_spec_init(&ctx.spec);
        ctx.spec.n = 300;
        ctx.spec.seed = 11;
        ctx.spec.arrival = LLMLAB_ARRIVAL_POISSON;
        ctx.spec.prompt = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 16, 256, NULL, 1, 0};
        ctx.spec.output = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 8, 128, NULL, 1, 0};
        ctx.serve = (llmlab_serve_opts){.slo_ttft_s = 0.25, .slo_tpot_s = 0.05};
        llmlab_capacity_opts o = {.lo = 1, .rel_tol = 0.02};
        llmlab_capacity_result r;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_capacity_search(&o, llmlab_capacity_eval, &ctx, &r, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert(r.bracketed && r.rate > 0, "rate %g fail %g", r.rate, r.fail_rate);
        llmlab_serve_metrics m;
        cr_assert_eq(llmlab_capacity_eval(&ctx, r.rate, &m, &err), LLMLAB_OK);
        cr_assert(m.slo_attainment >= 0.9);
        cr_assert_eq(llmlab_capacity_eval(&ctx, r.fail_rate, &m, &err), LLMLAB_OK);
        cr_assert(m.slo_attainment < 0.9);
        caps[k] = r.rate;
        llmlab_sim_free(s);
    }
    cr_assert(caps[1] >= caps[0], "twice as fast: %g vs %g requests/s", caps[1], caps[0]);
}

/* ---- Lua and the command line -------------------------------------------------------------------- */

static int run_cmd(const char *dir, const char *args, char *out, size_t cap, char *errout, size_t ecap) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && %s %s", dir, LLMLAB_BIN, args);
    return proc_run(cmd, out, cap, errout, ecap);
}

/* llmlab.simulate, result.serving, results:write of a simulated run,
 * llmlab.capacity on the simulator, e:run's serving table, llmlab.profile and
 * llmlab.step_error, through a script. */
Test(sim, lua_simulate_capacity_profile) {
    char *dir = tmpdir_make();
    fixture_model fm;
    fixture_load(&fm, &fixture_shapes[0], 7);
    char script[8192], path[512];
    snprintf(script, sizeof script,
             "local shape = {dim = 4096, layers = 32, heads = 32, kv_heads = 8, ffn = 14336, vocab = 128256}\n"
             "local function wl(rate) return llmlab.workload{n = 200, seed = 5, arrival = 'poisson', rate = rate,\n"
             "  tokens = false, prompt_len = {'uniform', 64, 1024}, output_len = {'uniform', 16, 256}} end\n"
             "local s = llmlab.simulate{shape = shape, hardware = 'a100', sched = 'chunked_prefill', workload = wl(20),\n"
             "  kv_tokens = 100000, token_budget = 1024, max_seqs = 64, slo = {ttft = 0.5, tpot = 0.05},\n"
             "  percentiles = {50, 99.9}, steps = true}\n"
             "local m = s.serving\n"
             "assert(m.completed == 200 and m.ttft['p99_9'] >= m.ttft.p50 and m.tpot.n > 0, 'serving')\n"
             "assert(#s.requests == 200 and #s.steps.start_s == s.summary.steps, 'tables')\n"
             "local R = llmlab.results('out.h5')\n"
             "R:write('sim', s)\n"
             "local c = llmlab.capacity{simulate = {shape = shape, hardware = 'a100', sched = 'continuous',\n"
             "  kv_tokens = 100000, token_budget = 2048, max_seqs = 64}, workload = wl,\n"
             "  slo = {ttft = 0.5, tpot = 0.05}, lo = 1, tol = 0.05}\n"
             "assert(c.bracketed and c.rate > 1 and c.fail_rate > c.rate and #c.evals > 2, 'capacity')\n"
             "print(string.format('capacity %%.3f', c.rate))\n"
             "local model = llmlab.model{path = '%s', threads = 1}\n"
             "local e = llmlab.engine{model = model, sched = 'continuous', kv_tokens = 4096, max_seqs = 8}\n"
             "local w = llmlab.workload{model = model, n = 12, seed = 2, arrival = 'poisson', rate = 200,\n"
             "  prompt_len = {'uniform', 4, 40}, output_len = {'uniform', 2, 12}}\n"
             "local r = e:run(w, {slo = {e2e = 100}})\n"
             "assert(r.serving.completed == 12 and r.serving.slo_attainment == 1 and r.serving.kv_util.max > 0, 'e:run')\n"
             "local p = llmlab.profile{model = model, quick = true, reps = 1, out = 'p.json'}\n"
             "assert(p.kind == 'fitted' and #p.samples >= 5 and p.c0_s >= 0, 'profile')\n"
             "local se = llmlab.step_error{result = r, profile = 'p.json'}\n"
             "assert(se.n > 0 and se.mape >= 0, 'step_error')\n"
             "local s2 = llmlab.simulate{model = model, profile = 'p.json', sched = 'continuous', workload = w,\n"
             "  kv_tokens = 4096, max_seqs = 8}\n"
             "assert(s2.serving.completed == 12, 'simulate with a profile')\n"
             "R:write('sim2', s2)\n"
             "local c2 = llmlab.capacity{engine = e, workload = function(rate) return llmlab.workload{model = model,\n"
             "  n = 6, seed = 1, arrival = 'poisson', rate = rate, prompt_len = 8, output_len = 4} end,\n"
             "  slo = {e2e = 100}, lo = 100, max_evals = 3}\n"
             "assert(c2.rate >= 100 and c2.fail_rate == math.huge and #c2.evals == 3, 'capacity on the engine')\n",
             fm.m->path);
    snprintf(path, sizeof path, "%s/s.lua", dir);
    proc_write_file(path, script);
    static char out[1 << 16], errout[1 << 16];
    int rc = run_cmd(dir, "run s.lua", out, sizeof out, errout, sizeof errout);
    cr_assert_eq(rc, 0, "llmlab run: %s%s", out, errout);
    snprintf(path, sizeof path, "%s/out.h5", dir);
    double *col = NULL;
    size_t n = 0;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_results_column_double(path, "sim", "serving", "ttft_p99_9_s", &col, &n, &err), LLMLAB_OK,
                 "%s", err.msg);
    free(col);
    cr_assert_eq(llmlab_results_column_double(path, "sim", "steps", "duration_s", &col, &n, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert(n > 0);
    free(col);
    char *sched = NULL;
    cr_assert_eq(llmlab_results_attr_str(path, "sim", "settings/sched/plugin", &sched, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_str_eq(sched, "chunked_prefill");
    free(sched);
    /* the command line: profile, then capacity on it */
    char args[1024];
    snprintf(args, sizeof args, "profile %s --out p2.json --quick --reps 1 --threads 1 --quiet", fm.m->path);
    rc = run_cmd(dir, args, out, sizeof out, errout, sizeof errout);
    cr_assert_eq(rc, 0, "%s%s", out, errout);
    cr_assert(strstr(out, "mean abs error"), "%s", out);
    rc = run_cmd(dir, "capacity --profile p2.json -n 100 --prompt uniform:4:40 --output fixed:8 --ttft 0.5 "
                      "--kv-tokens 8192 --max-seqs 16",
                 out, sizeof out, errout, sizeof errout);
    cr_assert_eq(rc, 0, "%s%s", out, errout);
    cr_assert(strstr(out, "capacity: "), "%s", out);
    rc = run_cmd(dir, "capacity --profile p2.json", out, sizeof out, errout, sizeof errout);
    cr_assert_eq(rc, 2, "no SLO is a usage error");
    cr_assert(strstr(errout, "SLO"), "%s", errout);
    fixture_free(&fm);
    tmpdir_remove(dir);
}
