/* capacity.c - binary search on the request rate for the largest one meeting an
 * SLO target (capacity.h). */
#include "capacity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
    const llmlab_capacity_opts *o;
    llmlab_capacity_fn fn;
    void *user;
    llmlab_capacity_result *res;
    double target;
} search;

/* Evaluates one rate; *pass = attainment >= target.  Moves the bracket. */
static llmlab_status probe(search *S, double rate, int *pass, llmlab_err *err) {
    llmlab_capacity_result *r = S->res;
    llmlab_serve_metrics m;
    llmlab_status st = S->fn(S->user, rate, &m, err);
    if (st) return llmlab_err_prefix(err, "capacity search at %g requests/s", rate);
    int k = r->n_evals++;
    r->rates[k] = rate;
    r->attainment[k] = m.slo_attainment;
    r->goodput[k] = m.goodput_req_per_s;
    r->ttft_p99[k] = NAN;
    r->tpot_p99[k] = NAN;
    for (int p = 0; p < m.n_pct; p++)
        if (m.pct_at[p] == 99) r->ttft_p99[k] = m.ttft.pct[p], r->tpot_p99[k] = m.tpot.pct[p];
    *pass = m.slo_attainment >= S->target;
    if (*pass && rate > r->rate) r->rate = rate;
    if (!*pass && rate < r->fail_rate) r->fail_rate = rate;
    return LLMLAB_OK;
}

static llmlab_status check(const llmlab_capacity_opts *o, llmlab_err *err) {
    if (!(o->lo >= 0) || !(o->hi >= 0) || (o->hi > 0 && o->hi <= o->lo))
        return llmlab_err_set(err, LLMLAB_EINVAL, "capacity search: lo %g and hi %g must be >= 0 with hi > lo", o->lo,
                              o->hi);
    if (!(o->target >= 0 && o->target <= 1))
        return llmlab_err_set(err, LLMLAB_EINVAL, "capacity search: target %g must be in (0, 1]", o->target);
    if (!(o->rel_tol >= 0 && o->rel_tol < 1))
        return llmlab_err_set(err, LLMLAB_EINVAL, "capacity search: rel_tol %g must be in (0, 1)", o->rel_tol);
    if (o->max_evals < 0 || o->max_evals > LLMLAB_CAPACITY_MAX_EVALS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "capacity search: max_evals %d must be in 1..%d", o->max_evals,
                              LLMLAB_CAPACITY_MAX_EVALS);
    return LLMLAB_OK;
}

llmlab_status llmlab_capacity_search(const llmlab_capacity_opts *o, llmlab_capacity_fn fn, void *user,
                                     llmlab_capacity_result *out, llmlab_err *err) {
    memset(out, 0, sizeof *out);
    out->fail_rate = INFINITY;
    llmlab_status st = check(o, err);
    if (st) return st;
    double lo = o->lo > 0 ? o->lo : 1, tol = o->rel_tol > 0 ? o->rel_tol : 0.02;
    double min_rate = o->min_rate > 0 ? o->min_rate : lo / 1024, max_rate = o->max_rate > 0 ? o->max_rate : lo * 1048576;
    int max_evals = o->max_evals > 0 ? o->max_evals : 40, pass = 0;
    search S = {o, fn, user, out, o->target > 0 ? o->target : 0.9};
    st = probe(&S, lo, &pass, err);
    if (!st && o->hi > 0) st = probe(&S, o->hi, &pass, err);
    /* bracket: double up while nothing failed, quarter down while nothing passed */
    while (!st && isinf(out->fail_rate) && out->n_evals < max_evals) {
        double r = 2 * (out->rate > 0 ? out->rate : lo);
        if (r > max_rate) break;
        st = probe(&S, r, &pass, err);
    }
    while (!st && out->rate == 0 && out->n_evals < max_evals) {
        double r = out->fail_rate / 4;
        if (r < min_rate) break;
        st = probe(&S, r, &pass, err);
    }
    /* bisect the bracket [largest pass, smallest fail] */
    while (!st && out->rate > 0 && out->rate < out->fail_rate && !isinf(out->fail_rate) &&
           out->fail_rate - out->rate > tol * out->fail_rate && out->n_evals < max_evals)
        st = probe(&S, 0.5 * (out->rate + out->fail_rate), &pass, err);
    out->bracketed = !st && out->rate > 0 && out->rate < out->fail_rate && !isinf(out->fail_rate) &&
                     out->fail_rate - out->rate <= tol * out->fail_rate;
    return st;
}

/* ---- the ready-made evaluation: a generated workload on the simulator or the engine ---------- */

llmlab_status llmlab_capacity_eval(void *user, double rate, llmlab_serve_metrics *m, llmlab_err *err) {
    llmlab_capacity_ctx *c = user;
    llmlab_workload_spec spec = c->spec;
    spec.rate = rate;
    spec.lengths_only = c->sim != NULL;
    llmlab_workload *w = NULL;
    llmlab_status st = llmlab_workload_generate(&spec, NULL, 0, &w, err);
    llmlab_run_result *r = NULL;
    llmlab_itl_hist *itl = NULL;
    llmlab_serve_opts so = c->serve;
    if (!st && c->sim) {
        itl = malloc(sizeof *itl);
        if (!itl) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        if (!st) st = llmlab_sim_run(c->sim, w->reqs, w->n, &r, itl, err);
        so.itl_hist = itl;
        if (!so.kv_blocks_total) so.kv_blocks_total = llmlab_sim_kv_blocks(c->sim);
    } else if (!st) {
        st = c->engine ? llmlab_engine_run(c->engine, w->reqs, w->n, &r, err)
                       : llmlab_err_set(err, LLMLAB_EINVAL, "capacity search: no simulator or engine");
    }
    if (!st) st = llmlab_serve_metrics_compute(r, &so, m, err);
    llmlab_run_result_free(r);
    llmlab_workload_free(w);
    free(itl);
    return st;
}
