/* test_serve_metrics.c - serving metrics (core/serve_metrics.c) on hand-computed
 * traces: TTFT, TPOT (vLLM's definition, one-token requests left out), ITL
 * (deliveries: tokens of one step share a time), E2E, queueing delay, numpy's
 * percentile method, throughput over the duration, goodput under SLOs, KV
 * utilization, the ITL histogram, and the `serving` table in a results file. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/results.h"
#include "core/rng.h"
#include "core/serve_metrics.h"
#include "util/fixture_model.h"
#include "util/tmpdir.h"

#define CLOSE(a, b) cr_assert(fabs((a) - (b)) <= 1e-12 + 1e-12 * fabs(b), "%s = %.17g, expected %.17g", #a, (double)(a), (double)(b))

/* ---- a hand trace ---------------------------------------------------------------------
 * req 0: arrival 0,   admit 0.5, tokens at 1.0 1.5 2.0 2.5 3.0       -> TTFT 1, E2E 3, TPOT 0.5
 * req 1: arrival 1,   admit 1,   one token at 2.0                    -> TTFT 1, E2E 1, no TPOT
 * req 2: arrival 2,   admit 2.5, tokens at 3.0 3.0 (one step) 6.0    -> TTFT 1, E2E 4, TPOT 1.5, ITL {3}
 * req 3: arrival 0.5, cancelled at 2.5 after one token at 1.2        -> left out of every latency
 * steps: kv blocks 2, 4, 8 of a pool of 8; durations 1, 1, 2. */

typedef struct {
    llmlab_run_result r;
    int req_id[4], prompt_len[4], output_len[4], status[4];
    double arrival[4], admit[4], first[4], finish[4];
    int tok_req[11], tok_index[11];
    int32_t tok_id[11];
    double tok_t[11];
    int step_blocks[3];
    double step_dt[3];
} trace;

static void hand_trace(trace *t) {
    memset(t, 0, sizeof *t);
    const int ids[4] = {10, 11, 12, 13}, pl[4] = {10, 20, 30, 40}, ol[4] = {5, 1, 3, 1};
    const int st[4] = {LLMLAB_RUN_FINISHED, LLMLAB_RUN_FINISHED, LLMLAB_RUN_FINISHED, LLMLAB_RUN_CANCELLED};
    const double arr[4] = {0, 1, 2, 0.5}, adm[4] = {0.5, 1, 2.5, 0.5}, fi[4] = {1.0, 2.0, 3.0, 1.2},
                 fin[4] = {3.0, 2.0, 6.0, 2.5};
    for (int i = 0; i < 4; i++) {
        t->req_id[i] = ids[i], t->prompt_len[i] = pl[i], t->output_len[i] = ol[i], t->status[i] = st[i];
        t->arrival[i] = arr[i], t->admit[i] = adm[i], t->first[i] = fi[i], t->finish[i] = fin[i];
    }
    /* token records in time order, as the engine logs them */
    const int treq[11] = {10, 13, 10, 10, 11, 10, 10, 12, 12, 12, 99};
    const double tt[11] = {1.0, 1.2, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.0, 6.0, 7.0};
    int idx[4] = {0};
    for (int k = 0; k < 11; k++) {
        t->tok_req[k] = treq[k];
        t->tok_t[k] = tt[k];
        t->tok_index[k] = treq[k] == 99 ? 0 : idx[treq[k] - 10]++;
    }
    const int sb[3] = {2, 4, 8};
    const double sd[3] = {1, 1, 2};
    memcpy(t->step_blocks, sb, sizeof sb);
    memcpy(t->step_dt, sd, sizeof sd);
    llmlab_run_result *r = &t->r;
    r->n_reqs = 4;
    r->req_id = t->req_id, r->prompt_len = t->prompt_len, r->output_len = t->output_len, r->status = t->status;
    r->arrival_s = t->arrival, r->admit_s = t->admit, r->first_token_s = t->first, r->finish_s = t->finish;
    r->n_tok = 11;
    r->tok_req = t->tok_req, r->tok_index = t->tok_index, r->tok_id = t->tok_id, r->tok_time_s = t->tok_t;
    r->n_steps = 3;
    r->step_kv_blocks = t->step_blocks;
    r->step_dt_s = t->step_dt;
    r->wall_s = 6.5;
    r->preemptions_total = 3, r->recomputed_tokens_total = 40, r->swaps_total = 1;
}

Test(serve_metrics, hand_trace_latencies) {
    trace t;
    hand_trace(&t);
    llmlab_serve_opts o = {.kv_blocks_total = 8};
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    cr_assert_eq(m.requests, 4);
    cr_assert_eq(m.completed, 3);
    cr_assert_eq(m.cancelled, 1);
    cr_assert_eq(m.n_pct, 3);
    cr_assert(m.pct_at[0] == 50 && m.pct_at[1] == 90 && m.pct_at[2] == 99);
    /* TTFT 1, 1, 1 */
    cr_assert_eq(m.ttft.n, 3);
    cr_assert(m.ttft.mean == 1 && m.ttft.std == 0 && m.ttft.pct[0] == 1 && m.ttft.pct[2] == 1);
    /* E2E 3, 1, 4: sorted 1 3 4; p90 at rank 1.8 -> 3.8, p99 at 1.98 -> 3.98 */
    cr_assert_eq(m.e2e.n, 3);
    CLOSE(m.e2e.mean, 8.0 / 3);
    CLOSE(m.e2e.std, sqrt((pow(3 - 8.0 / 3, 2) + pow(1 - 8.0 / 3, 2) + pow(4 - 8.0 / 3, 2)) / 3));
    cr_assert(m.e2e.pct[0] == 3 && m.e2e.min == 1 && m.e2e.max == 4);
    CLOSE(m.e2e.pct[1], 3.8);
    CLOSE(m.e2e.pct[2], 3.98);
    /* TPOT: (3 - 1) / 4 = 0.5 and (4 - 1) / 2 = 1.5; the one-token request has none */
    cr_assert_eq(m.tpot.n, 2);
    cr_assert(m.tpot.mean == 1.0 && m.tpot.pct[0] == 1.0 && m.tpot.min == 0.5 && m.tpot.max == 1.5);
    CLOSE(m.tpot.pct[1], 1.4);
    /* ITL: four gaps of 0.5 (req 0), one of 3 (req 2: 3.0, 3.0 is one delivery, then 6.0);
     * the cancelled request and the unknown id 99 are left out */
    cr_assert_eq(m.itl.n, 5);
    cr_assert(m.itl.mean == 1.0 && m.itl.pct[0] == 0.5 && m.itl.max == 3.0);
    CLOSE(m.itl.pct[1], 2.0);
    CLOSE(m.itl.pct[2], 2.9);
    /* queueing delay 0.5, 0, 0.5 */
    CLOSE(m.queue.mean, 1.0 / 3);
    cr_assert(m.queue.pct[0] == 0.5 && m.queue.min == 0);
}

Test(serve_metrics, hand_trace_throughput_goodput_kv) {
    trace t;
    hand_trace(&t);
    llmlab_serve_opts o = {.kv_blocks_total = 8, .slo_ttft_s = 1.0, .slo_tpot_s = 1.0};
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    /* duration: 0 .. the last finish (6.0), not wall_s */
    cr_assert(m.duration_s == 6.0);
    cr_assert_eq(m.output_tokens, 9);
    cr_assert_eq(m.input_tokens, 60);
    cr_assert(m.req_per_s == 0.5 && m.output_tok_per_s == 1.5 && m.total_tok_per_s == 11.5);
    /* SLO TTFT <= 1 and TPOT <= 1: req 0 (1, 0.5) and req 1 (1, counted 0) meet it, req 2
     * (TPOT 1.5) does not; the cancelled one never counts */
    cr_assert_eq(m.good, 2);
    CLOSE(m.goodput_req_per_s, 2.0 / 6);
    cr_assert(m.slo_attainment == 0.5);
    o = (llmlab_serve_opts){.slo_e2e_s = 2.0};
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    cr_assert_eq(m.good, 1);
    o = (llmlab_serve_opts){.slo_ttft_s = 0.999};
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    cr_assert_eq(m.good, 0);
    /* KV: 2/8, 4/8, 8/8 -> mean 7/12; weighted by 1, 1, 2 s -> 2.75/4 */
    o = (llmlab_serve_opts){.kv_blocks_total = 8};
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    CLOSE(m.kv_util_mean, 7.0 / 12);
    cr_assert(m.kv_util_time_mean == 0.6875 && m.kv_util.max == 1 && m.kv_util.pct[0] == 0.5);
    cr_assert(m.preemptions == 3 && m.recomputed_tokens == 40 && m.swaps == 1);
    /* without a pool size utilization is unknown */
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, NULL, &m, NULL), LLMLAB_OK);
    cr_assert(isnan(m.kv_util_mean) && isnan(m.kv_util.pct[0]));
}

Test(serve_metrics, custom_percentiles_and_bad_options) {
    trace t;
    hand_trace(&t);
    llmlab_serve_opts o = {.n_pct = 2, .pct = {0, 100}};
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    cr_assert(m.e2e.pct[0] == 1 && m.e2e.pct[1] == 4);
    llmlab_err err = {0};
    o = (llmlab_serve_opts){.n_pct = 1, .pct = {101}};
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "101"), "%s", err.msg);
    o = (llmlab_serve_opts){.n_pct = LLMLAB_SERVE_MAX_PCT + 1};
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, &err), LLMLAB_EINVAL);
}

/* A run where nothing completed: every latency is NaN, throughput 0. */
Test(serve_metrics, nothing_completed) {
    trace t;
    hand_trace(&t);
    for (int i = 0; i < 4; i++) t.status[i] = LLMLAB_RUN_CANCELLED;
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, NULL, &m, NULL), LLMLAB_OK);
    cr_assert_eq(m.completed, 0);
    cr_assert_eq(m.cancelled, 4);
    cr_assert(isnan(m.ttft.mean) && isnan(m.itl.pct[1]) && m.ttft.n == 0);
    cr_assert(m.req_per_s == 0 && m.goodput_req_per_s == 0 && m.slo_attainment == 0);
}

/* numpy's linear percentile: p0 = min, p100 = max, p50 = the median (the middle
 * element, or the mean of the two middle ones), monotone in p. */
Test(serve_metrics, percentile_matches_numpy_definition) {
    uint64_t seed = fixture_seed("percentile_matches_numpy_definition");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 1);
    for (int trial = 0; trial < 50; trial++) {
        int n = 1 + (int)(llmlab_rng_next(&rng) % 40);
        double v[40];
        for (int i = 0; i < n; i++) v[i] = (double)(llmlab_rng_next(&rng) % 100000) / 7.0 - 3000;
        llmlab_dist d;
        const double pct[5] = {0, 25, 50, 75, 100};
        llmlab_dist_of(&d, v, (size_t)n, pct, 5); /* sorts v */
        cr_assert(d.pct[0] == v[0] && d.pct[4] == v[n - 1], "seed %llu", (unsigned long long)seed);
        double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        CLOSE(d.pct[2], median);
        for (int k = 1; k < 5; k++) cr_assert(d.pct[k] >= d.pct[k - 1]);
        /* p25 by hand: rank (n - 1) / 4 */
        double rank = (n - 1) / 4.0, lo = floor(rank);
        double want = v[(int)lo] + (rank - lo) * ((int)lo + 1 < n ? v[(int)lo + 1] - v[(int)lo] : 0);
        CLOSE(d.pct[1], want);
    }
    cr_assert(isnan(llmlab_percentile_sorted(NULL, 0, 50)));
}

/* The histogram's percentiles are within 1% of the exact ones; mean, min, max
 * and counts are exact. */
Test(serve_metrics, itl_histogram_close_to_exact) {
    uint64_t seed = fixture_seed("itl_histogram_close_to_exact");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 2);
    enum { N = 20000 };
    double *v = malloc(N * sizeof *v);
    llmlab_itl_hist *h = malloc(sizeof *h);
    cr_assert(v && h);
    llmlab_itl_hist_init(h);
    double sum = 0;
    for (int i = 0; i < N; i++) {
        /* log-uniform gaps from 1 ms to 1 s, and some exact zeros */
        double u = (double)(llmlab_rng_next(&rng) >> 11) / 9007199254740992.0;
        v[i] = i % 50 == 0 ? 0 : 1e-3 * pow(1000, u);
        sum += v[i];
        llmlab_itl_hist_add(h, v[i]);
    }
    const double pct[4] = {10, 50, 90, 99};
    llmlab_dist exact, approx;
    llmlab_itl_hist_dist(h, &approx, pct, 4);
    llmlab_dist_of(&exact, v, N, pct, 4);
    cr_assert_eq(approx.n, N);
    CLOSE(approx.mean, sum / N);
    cr_assert(approx.min == exact.min && approx.max == exact.max);
    for (int k = 0; k < 4; k++)
        cr_assert(fabs(approx.pct[k] - exact.pct[k]) <= 0.01 * exact.pct[k] + 1e-9, "p%g: %g vs exact %g (seed %llu)",
                  pct[k], approx.pct[k], exact.pct[k], (unsigned long long)seed);
    free(v);
    free(h);
}

Test(serve_metrics, serving_table_in_results_file) {
    trace t;
    hand_trace(&t);
    llmlab_serve_opts o = {.n_pct = 2, .pct = {50, 99.9}, .slo_ttft_s = 1.0, .kv_blocks_total = 8};
    llmlab_serve_metrics m;
    cr_assert_eq(llmlab_serve_metrics_compute(&t.r, &o, &m, NULL), LLMLAB_OK);
    char *dir = tmpdir_make(), path[512];
    snprintf(path, sizeof path, "%s/m.h5", dir);
    llmlab_err err = {0};
    llmlab_run *run = llmlab_run_create("r1", &err);
    cr_assert(run);
    cr_assert_eq(llmlab_serve_metrics_record(run, &m, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_results_write(path, run, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_run_free(run);
    double *col = NULL;
    size_t n = 0;
    cr_assert_eq(llmlab_results_column_double(path, "r1", "serving", "e2e_p50_s", &col, &n, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert(n == 1 && col[0] == 3.0);
    free(col);
    cr_assert_eq(llmlab_results_column_double(path, "r1", "serving", "e2e_p99_9_s", &col, &n, &err), LLMLAB_OK, "%s",
                 err.msg);
    CLOSE(col[0], 3.998);
    free(col);
    cr_assert_eq(llmlab_results_column_double(path, "r1", "serving", "slo_attainment", &col, &n, &err), LLMLAB_OK);
    cr_assert(col[0] == 0.75); /* TTFT <= 1 s only: the three completed requests meet it */
    free(col);
    cr_assert_eq(llmlab_results_column_double(path, "r1", "serving", "slo_tpot_s", &col, &n, &err), LLMLAB_OK);
    cr_assert(isnan(col[0]));
    free(col);
    tmpdir_remove(dir);
}
