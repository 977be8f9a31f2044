/* serve_metrics.h - serving metrics of a run, measured the way vLLM's serving
 * benchmark measures them (docs/serving.md "Metrics").
 *
 * From an llmlab_run_result (the real engine's or the simulator's):
 *   TTFT   first_token_s - arrival_s
 *   TPOT   (e2e - ttft) / (output_len - 1), requests with one token left out
 *   ITL    every gap between a request's successive token deliveries (tokens a
 *          request gets in one step share a time and count as one delivery, as a
 *          streamed chunk does in vLLM)
 *   E2E    finish_s - arrival_s
 *   queue  admit_s - arrival_s (first admission)
 * each with mean, standard deviation, min, max and percentiles (numpy's default
 * linear interpolation, as vLLM's np.percentile); throughput over the run's
 * duration (arrival-clock start to the last request's finish); goodput = requests
 * meeting every given SLO per second (DistServe, vLLM --goodput); preemptions,
 * recomputed tokens, swaps; KV utilization over the steps.
 * Only completed requests (finished, not cancelled, at least one token) enter the
 * latency figures, as vLLM keeps only successful requests. */
#ifndef LLMLAB_SERVE_METRICS_H
#define LLMLAB_SERVE_METRICS_H

#include <stddef.h>

#include "engine.h"
#include "results.h"

#define LLMLAB_SERVE_MAX_PCT 8

typedef struct llmlab_serve_opts {
    int n_pct;                           /* 0: the defaults 50, 90, 99 */
    double pct[LLMLAB_SERVE_MAX_PCT];    /* [n_pct] percentiles in [0, 100] */
    double slo_ttft_s, slo_tpot_s, slo_e2e_s; /* <= 0: no SLO on that metric */
    int kv_blocks_total;                 /* KV pool in blocks (utilization); 0: unknown -> NaN */
    /* Optional ITL source when the result holds no per-token records (the
     * simulator's compact mode): a histogram, see llmlab_itl_hist. */
    const struct llmlab_itl_hist *itl_hist;
} llmlab_serve_opts;

/* One metric's distribution over its samples (NaN everywhere when n == 0). */
typedef struct {
    long long n;
    double mean, std, min, max;
    double pct[LLMLAB_SERVE_MAX_PCT];    /* [n_pct] of the metrics record */
} llmlab_dist;

typedef struct {
    int n_pct;
    double pct_at[LLMLAB_SERVE_MAX_PCT]; /* [n_pct] the percentiles asked for */
    int requests, completed, cancelled;  /* completed: finished with >= 1 token */
    long long input_tokens, output_tokens; /* of completed requests */
    double duration_s;                   /* 0 .. last finish (or cancellation) */
    double req_per_s, output_tok_per_s, total_tok_per_s;
    double slo_ttft_s, slo_tpot_s, slo_e2e_s; /* as given (<= 0: none) */
    int good;                            /* completed requests meeting every SLO */
    double goodput_req_per_s;            /* good / duration_s */
    double slo_attainment;               /* good / requests (cancelled ones fail) */
    llmlab_dist ttft, tpot, itl, e2e, queue;
    long long preemptions, recomputed_tokens, swaps;
    double kv_util_mean;                 /* mean over steps of kv_blocks_used / pool */
    double kv_util_time_mean;            /* the same weighted by step duration */
    llmlab_dist kv_util;                 /* per-step utilization distribution */
} llmlab_serve_metrics;

/* Computes the metrics.  o == NULL: defaults (p50/p90/p99, no SLOs). */
llmlab_status llmlab_serve_metrics_compute(const llmlab_run_result *r, const llmlab_serve_opts *o,
                                           llmlab_serve_metrics *out, llmlab_err *err);

/* Writes the metrics as table `serving` (one row) of run (docs/results-format.md). */
llmlab_status llmlab_serve_metrics_record(llmlab_run *run, const llmlab_serve_metrics *m, llmlab_err *err);

/* numpy.percentile(x, p) with the default linear method on sorted[n] (ascending),
 * p in [0, 100]; NaN when n == 0. */
double llmlab_percentile_sorted(const double *sorted, size_t n, double p);

/* Fills d from v[n] (sorted in place) at percentiles pct[n_pct]. */
void llmlab_dist_of(llmlab_dist *d, double *v, size_t n, const double *pct, int n_pct);

/* ---- an ITL histogram for runs without per-token records --------------------- */

/* Log-spaced bins, each 1% wide relative to its lower edge, from 1 us to about
 * 2 h, plus exact counts of zero gaps; percentiles come out to within 1% of the
 * exact value.  Mean, min and max are exact. */
#define LLMLAB_ITL_BINS 2300
typedef struct llmlab_itl_hist {
    long long n, zeros;
    long long bins[LLMLAB_ITL_BINS];
    double sum, sumsq, min, max;
} llmlab_itl_hist;

void llmlab_itl_hist_init(llmlab_itl_hist *h);
void llmlab_itl_hist_add(llmlab_itl_hist *h, double gap_s);
/* Fills d from the histogram (percentile = the geometric middle of its bin). */
void llmlab_itl_hist_dist(const llmlab_itl_hist *h, llmlab_dist *d, const double *pct, int n_pct);

#endif
