/* capacity.h - the largest request rate a deployment serves within its SLOs
 * (docs/serving.md "Capacity search").
 *
 * A rate passes when the share of requests meeting every SLO (serve_metrics.h
 * slo_attainment: cancelled and unfinished requests count as misses) is at least
 * `target`.  The search evaluates a caller's function at rates: it brackets the
 * capacity (growing the upper end by doubling while it still passes, shrinking
 * the lower end by quartering while it fails), then bisects until the bracket is
 * within rel_tol.  The caller keeps the workload's seed fixed across rates, so
 * the same random draws are only stretched in time (a Poisson workload at rate r
 * has exactly its gaps at rate 1 divided by r) and attainment falls with rate up
 * to what the executor's own randomness allows.  The real engine's timing noise
 * can break monotonicity near the capacity; the result is then a rate where the
 * evaluation passed next to one where it failed. */
#ifndef LLMLAB_CAPACITY_H
#define LLMLAB_CAPACITY_H

#include "engine.h"
#include "serve_metrics.h"
#include "sim.h"
#include "workload.h"

/* Evaluates the workload at `rate` requests/s into *m. */
typedef llmlab_status (*llmlab_capacity_fn)(void *user, double rate, llmlab_serve_metrics *m, llmlab_err *err);

typedef struct {
    double lo;       /* first rate tried (> 0); 0 = 1 request/s */
    double hi;       /* an upper end known to fail, 0 = found by doubling from lo */
    double target;   /* attainment needed, in (0, 1]; 0 = 0.9 */
    double rel_tol;  /* stop when hi - lo <= rel_tol * hi; 0 = 0.02 */
    int max_evals;   /* 0 = 40 */
    double min_rate; /* give up below this rate (capacity 0); 0 = lo / 1024 */
    double max_rate; /* give up above this rate (bracket open); 0 = lo * 2^20 */
} llmlab_capacity_opts;

#define LLMLAB_CAPACITY_MAX_EVALS 64

typedef struct {
    double rate;       /* the largest passing rate found (0: even min_rate failed) */
    double fail_rate;  /* the smallest failing rate found (INFINITY: none up to max_rate) */
    int bracketed;     /* 1 when both ends were found and the bracket is within rel_tol */
    int n_evals;
    double rates[LLMLAB_CAPACITY_MAX_EVALS];      /* [n_evals] in evaluation order */
    double attainment[LLMLAB_CAPACITY_MAX_EVALS]; /* [n_evals] */
    double goodput[LLMLAB_CAPACITY_MAX_EVALS];    /* [n_evals] requests/s meeting the SLOs */
    double ttft_p99[LLMLAB_CAPACITY_MAX_EVALS], tpot_p99[LLMLAB_CAPACITY_MAX_EVALS]; /* [n_evals] or NaN */
} llmlab_capacity_result;

llmlab_status llmlab_capacity_search(const llmlab_capacity_opts *o, llmlab_capacity_fn fn, void *user,
                                     llmlab_capacity_result *out, llmlab_err *err);

/* A ready evaluation: spec's workload at the rate asked (spec->rate replaced,
 * seed kept), run on the simulator (sim) or the real engine (engine, prompt
 * tokens drawn from spec's vocab), measured with serve (SLOs, percentiles). */
typedef struct {
    llmlab_sim *sim;                 /* one of sim and engine */
    llmlab_engine *engine;
    llmlab_workload_spec spec;       /* arrival poisson or gamma */
    llmlab_serve_opts serve;
} llmlab_capacity_ctx;

llmlab_status llmlab_capacity_eval(void *ctx, double rate, llmlab_serve_metrics *m, llmlab_err *err);

#endif
