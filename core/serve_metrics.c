/* serve_metrics.c - TTFT, TPOT, ITL, E2E, queueing delay, throughput, goodput and
 * KV utilization of a run (serve_metrics.h, docs/serving.md "Metrics"). */
#include "serve_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static const double default_pct[] = {50, 90, 99};

double llmlab_percentile_sorted(const double *sorted, size_t n, double p) {
    if (n == 0) return NAN;
    /* numpy's "linear" method: rank p/100 * (n - 1), interpolate between neighbours. */
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    if (lo >= n - 1) return sorted[n - 1];
    double frac = rank - (double)lo;
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void dist_empty(llmlab_dist *d, int n_pct) {
    d->n = 0;
    d->mean = d->std = d->min = d->max = NAN;
    for (int k = 0; k < n_pct; k++) d->pct[k] = NAN;
}

void llmlab_dist_of(llmlab_dist *d, double *v, size_t n, const double *pct, int n_pct) {
    memset(d, 0, sizeof *d);
    if (n == 0) {
        dist_empty(d, n_pct);
        return;
    }
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    double mean = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) ss += (v[i] - mean) * (v[i] - mean);
    d->n = (long long)n;
    d->mean = mean;
    d->std = sqrt(ss / (double)n); /* numpy's np.std: population standard deviation */
    d->min = v[0];
    d->max = v[n - 1];
    for (int k = 0; k < n_pct; k++) d->pct[k] = llmlab_percentile_sorted(v, n, pct[k]);
}

/* ---- the ITL histogram ---------------------------------------------------------- */

#define ITL_LO 1e-6
#define ITL_GROWTH 1.01

void llmlab_itl_hist_init(llmlab_itl_hist *h) {
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
}

static int itl_bin(double g) {
    if (g <= ITL_LO) return 0;
    int b = (int)(log(g / ITL_LO) / log(ITL_GROWTH)) + 1;
    return b >= LLMLAB_ITL_BINS ? LLMLAB_ITL_BINS - 1 : b;
}

void llmlab_itl_hist_add(llmlab_itl_hist *h, double g) {
    if (g < 0) g = 0;
    h->n++;
    h->sum += g;
    h->sumsq += g * g;
    if (g < h->min) h->min = g;
    if (g > h->max) h->max = g;
    if (g == 0) h->zeros++;
    else h->bins[itl_bin(g)]++;
}

/* The value a bin stands for: the geometric middle of its edges, clamped to the
 * observed range (so a one-bin histogram gives its exact value back). */
static double itl_bin_value(const llmlab_itl_hist *h, int b) {
    double lo = b == 0 ? 0 : ITL_LO * pow(ITL_GROWTH, b - 1), hi = ITL_LO * pow(ITL_GROWTH, b);
    double v = b == 0 ? hi / 2 : sqrt(lo * hi);
    return v < h->min ? h->min : v > h->max ? h->max : v;
}

/* The value of the k-th smallest sample (0-based) as the histogram knows it. */
static double itl_rank_value(const llmlab_itl_hist *h, long long k) {
    if (k < h->zeros) return 0;
    long long seen = h->zeros;
    for (int b = 0; b < LLMLAB_ITL_BINS; b++) {
        seen += h->bins[b];
        if (k < seen) return itl_bin_value(h, b);
    }
    return h->max;
}

void llmlab_itl_hist_dist(const llmlab_itl_hist *h, llmlab_dist *d, const double *pct, int n_pct) {
    memset(d, 0, sizeof *d);
    if (h->n == 0) {
        dist_empty(d, n_pct);
        return;
    }
    double n = (double)h->n, mean = h->sum / n, var = h->sumsq / n - mean * mean;
    d->n = h->n;
    d->mean = mean;
    d->std = sqrt(var > 0 ? var : 0);
    d->min = h->min;
    d->max = h->max;
    for (int k = 0; k < n_pct; k++) {
        double rank = pct[k] / 100.0 * (n - 1);
        long long lo = (long long)floor(rank);
        double a = itl_rank_value(h, lo), b = itl_rank_value(h, lo + 1 < h->n ? lo + 1 : lo);
        d->pct[k] = a + (rank - (double)lo) * (b - a);
    }
}

/* ---- per-request figures ----------------------------------------------------------- */

static int completed(const llmlab_run_result *r, int i) {
    if (r->status && r->status[i] != LLMLAB_RUN_FINISHED) return 0;
    return r->output_len[i] >= 1 && r->first_token_s[i] >= 0 && r->finish_s[i] >= 0;
}

typedef struct {
    int id, idx;
} id_idx;

static int cmp_id(const void *a, const void *b) {
    int x = ((const id_idx *)a)->id, y = ((const id_idx *)b)->id;
    return (x > y) - (x < y);
}

static int find_idx(const id_idx *map, int n, int id) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (map[mid].id == id) return map[mid].idx;
        if (map[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Every gap between successive deliveries of completed requests, into *out
 * (malloc'd, *n of them).  Token records are in time order. */
static llmlab_status itl_samples(const llmlab_run_result *r, double **out, size_t *n, llmlab_err *err) {
    size_t N = (size_t)(r->n_reqs ? r->n_reqs : 1);
    id_idx *map = malloc(N * sizeof *map);
    double *last = malloc(N * sizeof *last);
    double *v = malloc((size_t)(r->n_tok ? r->n_tok : 1) * sizeof *v);
    if (!map || !last || !v) {
        free(map), free(last), free(v);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "serving metrics: out of memory for %d token records", r->n_tok);
    }
    for (int i = 0; i < r->n_reqs; i++) {
        map[i] = (id_idx){r->req_id[i], i};
        last[i] = NAN;
    }
    qsort(map, (size_t)r->n_reqs, sizeof *map, cmp_id);
    size_t k = 0;
    for (int t = 0; t < r->n_tok; t++) {
        int i = find_idx(map, r->n_reqs, r->tok_req[t]);
        if (i < 0 || !completed(r, i)) continue;
        double tt = r->tok_time_s[t];
        if (!isnan(last[i]) && tt != last[i]) v[k++] = tt - last[i];
        last[i] = tt;
    }
    free(map);
    free(last);
    *out = v;
    *n = k;
    return LLMLAB_OK;
}

static void set_pcts(llmlab_serve_metrics *m, const llmlab_serve_opts *o) {
    if (o && o->n_pct > 0) {
        m->n_pct = o->n_pct;
        memcpy(m->pct_at, o->pct, (size_t)o->n_pct * sizeof *o->pct);
    } else {
        m->n_pct = 3;
        memcpy(m->pct_at, default_pct, sizeof default_pct);
    }
}

static llmlab_status check_opts(const llmlab_serve_opts *o, llmlab_err *err) {
    if (!o) return LLMLAB_OK;
    if (o->n_pct < 0 || o->n_pct > LLMLAB_SERVE_MAX_PCT)
        return llmlab_err_set(err, LLMLAB_EINVAL, "serving metrics: %d percentiles given, at most %d", o->n_pct,
                              LLMLAB_SERVE_MAX_PCT);
    for (int k = 0; k < o->n_pct; k++)
        if (!(o->pct[k] >= 0 && o->pct[k] <= 100))
            return llmlab_err_set(err, LLMLAB_EINVAL, "serving metrics: percentile %g outside [0, 100]", o->pct[k]);
    if (o->kv_blocks_total < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "serving metrics: kv_blocks_total %d is negative",
                              o->kv_blocks_total);
    return LLMLAB_OK;
}

/* Whether completed request i meets every SLO given (TPOT of a one-token request
 * counts as 0, as in vLLM). */
static int meets_slo(const llmlab_serve_metrics *m, double ttft, double tpot, double e2e) {
    if (m->slo_ttft_s > 0 && ttft > m->slo_ttft_s) return 0;
    if (m->slo_tpot_s > 0 && tpot > m->slo_tpot_s) return 0;
    if (m->slo_e2e_s > 0 && e2e > m->slo_e2e_s) return 0;
    return 1;
}

/* Latency distributions, counts and goodput over the requests. */
static void request_metrics(const llmlab_run_result *r, llmlab_serve_metrics *m, double *buf) {
    size_t N = (size_t)(r->n_reqs ? r->n_reqs : 1);
    double *ttft = buf, *tpot = buf + N, *e2e = buf + 2 * N, *queue = buf + 3 * N;
    size_t nt = 0, np = 0;
    m->duration_s = 0;
    for (int i = 0; i < r->n_reqs; i++) {
        if (r->finish_s[i] > m->duration_s) m->duration_s = r->finish_s[i];
        if (r->status && r->status[i] == LLMLAB_RUN_CANCELLED) m->cancelled++;
        if (!completed(r, i)) continue;
        double a = r->arrival_s[i], t1 = r->first_token_s[i] - a, lat = r->finish_s[i] - a, tp = 0;
        int out = r->output_len[i];
        if (out > 1) tp = tpot[np++] = (lat - t1) / (double)(out - 1);
        ttft[nt] = t1;
        e2e[nt] = lat;
        queue[nt] = r->admit_s[i] >= 0 ? r->admit_s[i] - a : 0;
        nt++;
        m->completed++;
        m->input_tokens += r->prompt_len[i];
        m->output_tokens += out;
        m->good += meets_slo(m, t1, tp, lat);
    }
    if (m->duration_s <= 0) m->duration_s = r->wall_s;
    llmlab_dist_of(&m->ttft, ttft, nt, m->pct_at, m->n_pct);
    llmlab_dist_of(&m->tpot, tpot, np, m->pct_at, m->n_pct);
    llmlab_dist_of(&m->e2e, e2e, nt, m->pct_at, m->n_pct);
    llmlab_dist_of(&m->queue, queue, nt, m->pct_at, m->n_pct);
    double d = m->duration_s;
    m->req_per_s = d > 0 ? m->completed / d : 0;
    m->output_tok_per_s = d > 0 ? (double)m->output_tokens / d : 0;
    m->total_tok_per_s = d > 0 ? (double)(m->input_tokens + m->output_tokens) / d : 0;
    m->goodput_req_per_s = d > 0 ? m->good / d : 0;
    m->slo_attainment = r->n_reqs > 0 ? (double)m->good / r->n_reqs : NAN;
}

/* KV utilization per step: blocks used / pool (NaN without a pool size). */
static void kv_metrics(const llmlab_run_result *r, int pool, llmlab_serve_metrics *m, double *buf) {
    if (pool <= 0 || r->n_steps == 0) {
        m->kv_util_mean = m->kv_util_time_mean = NAN;
        dist_empty(&m->kv_util, m->n_pct);
        return;
    }
    double wsum = 0, wt = 0;
    for (int s = 0; s < r->n_steps; s++) {
        buf[s] = (double)r->step_kv_blocks[s] / pool;
        wsum += buf[s] * r->step_dt_s[s];
        wt += r->step_dt_s[s];
    }
    llmlab_dist_of(&m->kv_util, buf, (size_t)r->n_steps, m->pct_at, m->n_pct);
    m->kv_util_mean = m->kv_util.mean;
    m->kv_util_time_mean = wt > 0 ? wsum / wt : m->kv_util.mean;
}

llmlab_status llmlab_serve_metrics_compute(const llmlab_run_result *r, const llmlab_serve_opts *o,
                                           llmlab_serve_metrics *m, llmlab_err *err) {
    memset(m, 0, sizeof *m);
    llmlab_status st = check_opts(o, err);
    if (st) return st;
    set_pcts(m, o);
    m->requests = r->n_reqs;
    if (o) m->slo_ttft_s = o->slo_ttft_s, m->slo_tpot_s = o->slo_tpot_s, m->slo_e2e_s = o->slo_e2e_s;
    size_t N = (size_t)(r->n_reqs ? r->n_reqs : 1), S = (size_t)(r->n_steps ? r->n_steps : 1);
    double *buf = malloc((4 * N > S ? 4 * N : S) * sizeof *buf);
    if (!buf) return llmlab_err_set(err, LLMLAB_ENOMEM, "serving metrics: out of memory for %d requests", r->n_reqs);
    request_metrics(r, m, buf);
    kv_metrics(r, o ? o->kv_blocks_total : 0, m, buf);
    free(buf);
    if (r->n_tok == 0 && o && o->itl_hist) {
        llmlab_itl_hist_dist(o->itl_hist, &m->itl, m->pct_at, m->n_pct);
    } else {
        double *itl = NULL;
        size_t n_itl = 0;
        if ((st = itl_samples(r, &itl, &n_itl, err))) return st;
        llmlab_dist_of(&m->itl, itl, n_itl, m->pct_at, m->n_pct);
        free(itl);
    }
    m->preemptions = r->preemptions_total;
    m->recomputed_tokens = r->recomputed_tokens_total;
    m->swaps = r->swaps_total;
    return LLMLAB_OK;
}

/* ---- the `serving` table ---------------------------------------------------------- */

/* "p99", "p99_9" for 99.9, "p50". */
static void pct_name(char *buf, size_t cap, const char *metric, double p, const char *unit_suffix) {
    char num[32];
    snprintf(num, sizeof num, "%g", p);
    for (char *c = num; *c; c++)
        if (*c == '.') *c = '_';
    snprintf(buf, cap, "%s_p%s%s", metric, num, unit_suffix);
}

static llmlab_status put_d(llmlab_table *t, const char *name, double v, const char *unit, llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_DOUBLE, unit, err);
    return st ? st : llmlab_table_append_double(t, name, v, err);
}

static llmlab_status put_i(llmlab_table *t, const char *name, long long v, const char *unit, llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_INT, unit, err);
    return st ? st : llmlab_table_append_int(t, name, v, err);
}

/* metric_mean_s, metric_std_s, metric_min_s, metric_max_s, metric_p50_s, ... */
static llmlab_status put_dist(llmlab_table *t, const char *metric, const llmlab_dist *d, const llmlab_serve_metrics *m,
                              const char *unit, llmlab_err *err) {
    const char *sfx = unit[0] ? "_s" : "";
    char name[96];
    const char *stat[] = {"mean", "std", "min", "max"};
    const double val[] = {d->mean, d->std, d->min, d->max};
    llmlab_status st = LLMLAB_OK;
    for (int k = 0; k < 4 && !st; k++) {
        snprintf(name, sizeof name, "%s_%s%s", metric, stat[k], sfx);
        st = put_d(t, name, val[k], unit, err);
    }
    for (int k = 0; k < m->n_pct && !st; k++) {
        pct_name(name, sizeof name, metric, m->pct_at[k], sfx);
        st = put_d(t, name, d->pct[k], unit, err);
    }
    snprintf(name, sizeof name, "%s_count", metric);
    return st ? st : put_i(t, name, d->n, "", err);
}

llmlab_status llmlab_serve_metrics_record(llmlab_run *run, const llmlab_serve_metrics *m, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "serving", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = put_i(t, "requests", m->requests, "", err);
    if (!st) st = put_i(t, "completed", m->completed, "", err);
    if (!st) st = put_i(t, "cancelled", m->cancelled, "", err);
    if (!st) st = put_i(t, "input_tokens", m->input_tokens, "tokens", err);
    if (!st) st = put_i(t, "output_tokens", m->output_tokens, "tokens", err);
    if (!st) st = put_d(t, "duration_s", m->duration_s, "s", err);
    if (!st) st = put_d(t, "req_per_s", m->req_per_s, "1/s", err);
    if (!st) st = put_d(t, "output_tok_per_s", m->output_tok_per_s, "tokens/s", err);
    if (!st) st = put_d(t, "total_tok_per_s", m->total_tok_per_s, "tokens/s", err);
    if (!st) st = put_d(t, "slo_ttft_s", m->slo_ttft_s > 0 ? m->slo_ttft_s : NAN, "s", err);
    if (!st) st = put_d(t, "slo_tpot_s", m->slo_tpot_s > 0 ? m->slo_tpot_s : NAN, "s", err);
    if (!st) st = put_d(t, "slo_e2e_s", m->slo_e2e_s > 0 ? m->slo_e2e_s : NAN, "s", err);
    if (!st) st = put_i(t, "good", m->good, "", err);
    if (!st) st = put_d(t, "goodput_req_per_s", m->goodput_req_per_s, "1/s", err);
    if (!st) st = put_d(t, "slo_attainment", m->slo_attainment, "", err);
    const char *names[] = {"ttft", "tpot", "itl", "e2e", "queue"};
    const llmlab_dist *d[] = {&m->ttft, &m->tpot, &m->itl, &m->e2e, &m->queue};
    for (int k = 0; k < 5 && !st; k++) st = put_dist(t, names[k], d[k], m, "s", err);
    if (!st) st = put_i(t, "preemptions", m->preemptions, "", err);
    if (!st) st = put_i(t, "recomputed_tokens", m->recomputed_tokens, "tokens", err);
    if (!st) st = put_i(t, "swaps", m->swaps, "", err);
    if (!st) st = put_d(t, "kv_util_time_mean", m->kv_util_time_mean, "", err);
    if (!st) st = put_dist(t, "kv_util", &m->kv_util, m, "", err);
    return st;
}
