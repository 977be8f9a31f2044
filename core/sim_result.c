/* sim_result.c - the simulator's run result (the engine's llmlab_run_result) and
 * its record in a results file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sim_internal.h"

/* Per-request columns. */
static void collect_requests(const sim_run *R, llmlab_run_result *r) {
    for (int i = 0; i < R->n; i++) {
        const sim_req *q = &R->q[i];
        /* one verified forward per token: the prefill's, then one per decode */
        llmlab_run_row x = {R->reqs[i].id, R->reqs[i].prompt_len, q->generated, q->generated, q->cancelled,
                            q->preemptions, q->recomputed, q->swaps, q->arrival, q->admit, q->first, q->finish};
        llmlab_run_result_put(r, i, &x);
    }
}

/* The token log moves into the result. */
static void move_tokens(sim_run *R, llmlab_run_result *r) {
    llmlab_run_result_take_tokens(r, R->T.n, R->T.req, R->T.index, R->T.tok, R->T.t);
    memset(&R->T, 0, sizeof R->T);
}

llmlab_status sim_collect(sim_run *R, llmlab_run_result **out, llmlab_err *err) {
    llmlab_run_result *r = calloc(1, sizeof *r);
    if (!r) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    move_tokens(R, r);
    r->n_reqs = R->n;
    llmlab_status st = llmlab_step_log_move(&R->L, r, err);
    if (!st) st = llmlab_run_result_alloc_requests(r, 0, err);
    r->metrics = calloc(1, sizeof(double)); /* no plugin counters: n_metrics = 0 */
    r->step_metrics = calloc(1, sizeof(double));
    if (!st && (!r->metrics || !r->step_metrics)) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (st) {
        llmlab_run_result_free(r);
        return llmlab_err_prefix(err, "simulate");
    }
    collect_requests(R, r); /* also the run totals: the sums of the per-request counts */
    r->wall_s = R->end;
    r->output_tok_per_s = R->end > 0 ? (double)r->output_tokens / R->end : 0;
    r->mean_accepted = r->output_tokens ? 1.0 : 0.0;
    r->swap_bytes = R->swap_bytes;
    *out = r;
    return LLMLAB_OK;
}

/* ---- per-iteration error ------------------------------------------------------------------------- */

void llmlab_sim_step_shape(const llmlab_run_result *r, int j, llmlab_iter_shape *it) {
    memset(it, 0, sizeof *it);
    int P = r->step_prefill_tokens ? r->step_prefill_tokens[j] : 0;
    int D = r->step_decode_seqs ? r->step_decode_seqs[j] : r->step_seqs[j];
    int np = r->step_seqs[j] - D;
    double ctx = r->step_kv_context ? r->step_kv_context[j] : 0;
    it->decode_seqs = D;
    it->decode_kv = ctx - P > D ? ctx - P : D; /* the prefills' own tokens are their whole context */
    if (P > 0 && np > 0) {
        double c = (double)P / np;
        it->prefill_tokens = P;
        it->prefill_seqs = np;
        it->prefill_attn = np * c * (c + 1) / 2;
    }
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

llmlab_status llmlab_sim_step_error(const llmlab_costmodel *m, const llmlab_run_result *r, llmlab_step_error *out,
                                    double *real_s, double *pred_s, llmlab_err *err) {
    memset(out, 0, sizeof *out);
    if (r->n_steps < 2) return llmlab_err_set(err, LLMLAB_EINVAL, "step error: the run has %d steps (need 2)", r->n_steps);
    double *gap = malloc((size_t)r->n_steps * sizeof *gap);
    if (!gap) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    int n = r->n_steps - 1;
    for (int j = 0; j < n; j++) {
        double g = r->step_start_s[j + 1] - r->step_start_s[j] - r->step_dt_s[j];
        gap[j] = g > 0 ? g : 0;
    }
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) {
        free(gap);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    memcpy(sorted, gap, (size_t)n * sizeof *gap);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_dbl);
    double med = sorted[n / 2];
    free(sorted);
    double abs_sum = 0;
    for (int j = 0; j < n; j++) {
        double real = r->step_dt_s[j] + (gap[j] <= 3 * med ? gap[j] : med);
        llmlab_iter_shape it;
        llmlab_sim_step_shape(r, j, &it);
        double pred = llmlab_cost_predict(m, &it);
        if (real_s) real_s[j] = real;
        if (pred_s) pred_s[j] = pred;
        if (!(real > 0)) continue;
        abs_sum += fabs(pred - real);
        out->mape += fabs(pred - real) / real;
        out->bias += (pred - real) / real;
        out->real_mean_s += real;
        out->pred_mean_s += pred;
        out->n++;
    }
    free(gap);
    if (out->n) {
        out->wape = abs_sum / (out->real_mean_s > 0 ? out->real_mean_s : 1);
        out->mape /= out->n, out->bias /= out->n;
        out->real_mean_s /= out->n, out->pred_mean_s /= out->n;
    }
    return LLMLAB_OK;
}

/* ---- the record ---------------------------------------------------------------------------- */

static llmlab_status record_sched(llmlab_run *run, const llmlab_sim *s, llmlab_err *err) {
    llmlab_status st = llmlab_run_attr_str(run, "settings/sched/plugin", s->d->name, err);
    if (!st) st = llmlab_run_attr_str(run, "settings/sched/plugin_version", s->d->version ? s->d->version : "", err);
    for (int i = 0; i < s->d->n_params && !st; i++) {
        char key[320], val[256];
        snprintf(key, sizeof key, "settings/sched/%s", s->d->params[i].name);
        const llmlab_param_slot *v = &s->p->v[i];
        switch (s->d->params[i].type) {
        case LLMLAB_PARAM_INT: st = llmlab_run_attr_int(run, key, v->i, err); break;
        case LLMLAB_PARAM_FLOAT: st = llmlab_run_attr_double(run, key, v->f, err); break;
        case LLMLAB_PARAM_BOOL: st = llmlab_run_attr_int(run, key, v->b, err); break;
        default:
            llmlab_params_format(s->p, i, val, sizeof val);
            st = llmlab_run_attr_str(run, key, val, err);
            break;
        }
    }
    return st;
}

static llmlab_status record_sim(llmlab_run *run, const llmlab_sim *s, llmlab_err *err) {
    const char *ik[] = {"settings/sim/kv_tokens", "settings/sim/kv_block_size", "settings/sim/kv_blocks",
                        "settings/sim/max_seqs", "settings/sim/token_budget", "settings/sim/watermark_blocks",
                        "settings/sim/swap_blocks", "settings/sim/preempt_mode"};
    const int64_t iv[] = {s->o.kv_tokens, s->block_size, s->n_blocks, s->max_seqs, s->token_budget,
                          s->watermark_blocks, s->swap_blocks, s->preempt_mode};
    llmlab_status st = llmlab_run_attr_str(run, "executor", "simulated", err);
    for (size_t k = 0; k < sizeof iv / sizeof iv[0] && !st; k++) st = llmlab_run_attr_int(run, ik[k], iv[k], err);
    if (!st) st = llmlab_run_attr_double(run, "settings/sim/swap_bw", s->swap_bw, err);
    return st;
}

static llmlab_status record_cost(llmlab_run *run, const llmlab_costmodel *m, llmlab_err *err) {
    static const char *const coef[LLMLAB_COST_NTERMS] = {"cost/c0_s", "cost/prefill_token_s", "cost/decode_seq_s",
                                                          "cost/decode_kv_token_s", "cost/prefill_attn_pair_s"};
    llmlab_status st = llmlab_run_attr_str(run, "cost/kind", m->kind == LLMLAB_COST_ROOFLINE ? "roofline" : "fitted",
                                           err);
    for (int k = 0; k < LLMLAB_COST_NTERMS && !st; k++) st = llmlab_run_attr_double(run, coef[k], m->coef[k], err);
    if (!st) st = llmlab_run_attr_str(run, "cost/hw", m->hw.name, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/peak_flops", m->hw.peak_flops, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/mem_bw", m->hw.mem_bw, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/compute_eff", m->hw.compute_eff, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/memory_eff", m->hw.memory_eff, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/overhead_s", m->hw.overhead_s, err);
    if (!st) st = llmlab_run_attr_str(run, "cost/machine", m->machine, err);
    if (!st) st = llmlab_run_attr_str(run, "cost/model", m->model, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/fit_mape", m->fit_mape, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/weight_bytes", m->shape.weight_bytes, err);
    if (!st) st = llmlab_run_attr_double(run, "cost/kv_bytes_per_token", m->shape.kv_bytes_per_token, err);
    return st;
}

llmlab_status llmlab_sim_record(llmlab_run *run, const llmlab_sim *s, const llmlab_run_result *res,
                                const llmlab_record_info *info, const llmlab_serve_opts *serve, llmlab_err *err) {
    llmlab_serve_opts o = serve ? *serve : (llmlab_serve_opts){0};
    if (o.kv_blocks_total == 0) o.kv_blocks_total = s->n_blocks;
    llmlab_status st = llmlab_record_run_serving(run, NULL, res, info, &o, err);
    if (!st) st = record_sim(run, s, err);
    if (!st) st = record_sched(run, s, err);
    if (!st) st = record_cost(run, &s->o.cost, err);
    return st;
}
