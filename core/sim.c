/* sim.c - the simulated executor (sim.h): the serving loop of engine_run.c and
 * serve_*.c with the forward replaced by a cost model and the clock by a number.
 *
 * Per iteration, as in the engine: arrivals and cancellations at the iteration's
 * start; the sched plugin sees the live requests and plans; the plan's
 * preemptions are carried out; the plan is fitted into the free KV blocks
 * (sim_blocks.c); the iteration's composition goes to the cost model; at its end
 * prefill chunks are counted, decodes emit one token each, finished requests
 * leave (and release their closed-loop successors). */
#include "sim_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- the simulator handle ------------------------------------------------------------ */

static llmlab_status check_opts(const llmlab_sim_opts *o, llmlab_err *err) {
    if (!o->registry) return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: no plugin registry");
    if (o->kv_tokens <= 0) return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: kv_tokens %d must be > 0", o->kv_tokens);
    if (o->kv_block_size < 0 || o->max_seqs < 0 || o->token_budget < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: kv_block_size %d, max_seqs %d, token_budget %d must be >= 0",
                              o->kv_block_size, o->max_seqs, o->token_budget);
    if (o->watermark >= 1)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: watermark %g must be below 1", o->watermark);
    if (o->swap_tokens < 0 || o->swap_bytes < 0 || o->swap_bw < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: swap_tokens %d, swap_bytes %g, swap_bw %g must be >= 0",
                              o->swap_tokens, o->swap_bytes, o->swap_bw);
    if (o->preempt_mode < LLMLAB_PREEMPT_DEFAULT || o->preempt_mode > LLMLAB_PREEMPT_SWAP)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: preempt_mode %d is not recompute (1) or swap (2)",
                              o->preempt_mode);
    if (o->cost.kind != LLMLAB_COST_FITTED && o->cost.kind != LLMLAB_COST_ROOFLINE)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: no cost model (give a profile or a hardware spec)");
    return LLMLAB_OK;
}

llmlab_status llmlab_sim_create(llmlab_sim **out, const llmlab_sim_opts *o, llmlab_err *err) {
    *out = NULL;
    llmlab_status st = check_opts(o, err);
    if (st) return st;
    const char *name = o->sched.name ? o->sched.name : "fcfs";
    const llmlab_plugin_desc *d = llmlab_registry_find(o->registry, LLMLAB_PLUGIN_SCHED, name);
    if (!d) return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: no sched plugin '%s' (see `llmlab plugins`)", name);
    llmlab_sim *s = calloc(1, sizeof *s);
    if (!s) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    s->o = *o;
    s->o.sched.values = NULL; /* the caller's values are read once, here */
    s->o.sched.n_values = 0;
    s->o.sched.name = d->name;
    s->d = d;
    if ((st = llmlab_params_create(&s->p, d, o->sched.values, o->sched.n_values, err))) {
        free(s);
        return llmlab_err_prefix(err, "simulate");
    }
    s->block_size = o->kv_block_size ? o->kv_block_size : 16;
    s->max_seqs = o->max_seqs ? o->max_seqs : 64;
    s->token_budget = o->token_budget ? o->token_budget : 512;
    s->n_blocks = o->kv_tokens / s->block_size;
    if (s->n_blocks < 1) {
        llmlab_sim_free(s);
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: kv_tokens %d is less than one block of %d tokens",
                              o->kv_tokens, s->block_size);
    }
    double wm = o->watermark == 0 ? 0.01 : o->watermark < 0 ? 0 : o->watermark;
    s->watermark_blocks = (int)(wm * s->n_blocks);
    s->block_bytes = o->cost.shape.kv_bytes_per_token * s->block_size;
    s->swap_blocks = o->swap_tokens / s->block_size;
    if (o->swap_bytes > 0 && s->block_bytes > 0) s->swap_blocks += (int)(o->swap_bytes / s->block_bytes);
    s->swap_bw = o->swap_bw > 0 ? o->swap_bw : 16e9;
    s->preempt_mode = o->preempt_mode ? o->preempt_mode : LLMLAB_PREEMPT_RECOMPUTE;
    *out = s;
    return LLMLAB_OK;
}

void llmlab_sim_free(llmlab_sim *s) {
    if (!s) return;
    llmlab_params_free(s->p);
    free(s);
}

const llmlab_sim_opts *llmlab_sim_options(const llmlab_sim *s) { return &s->o; }
int llmlab_sim_kv_blocks(const llmlab_sim *s) { return s->n_blocks; }
const llmlab_plugin_desc *llmlab_sim_sched(const llmlab_sim *s) { return s->d; }

/* ---- run state ------------------------------------------------------------------------- */

static void run_free(sim_run *R) {
    llmlab_arrivals_free(&R->arr);
    llmlab_step_log_free(&R->L);
    llmlab_view_bufs_free(&R->vb);
    void *bufs[] = {R->q, R->vidx, R->last_tok, R->T.req, R->T.index, R->T.tok, R->T.t};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static llmlab_status run_alloc(sim_run *R, llmlab_sim *S, const llmlab_request *reqs, int n, llmlab_itl_hist *itl,
                               llmlab_err *err) {
    memset(R, 0, sizeof *R);
    R->S = S;
    R->reqs = reqs;
    R->n = n;
    R->itl = itl;
    size_t N = (size_t)(n > 0 ? n : 1);
    R->q = calloc(N, sizeof *R->q);
    R->vidx = malloc(N * sizeof *R->vidx);
    if (itl) R->last_tok = calloc(N, sizeof *R->last_tok);
    if (!R->q || !R->vidx || (itl && !R->last_tok))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "simulate: out of memory for %d requests", n);
    llmlab_status st = llmlab_view_bufs_alloc(&R->vb, n, "simulate", err);
    if (st) return st;
    R->free_blocks = S->n_blocks;
    R->swap_free = S->swap_blocks;
    R->full_view = S->d->abi_minor < 3;
    return LLMLAB_OK;
}

/* Per-token records: sized once from the requests' max_new (each request emits
 * exactly that many tokens), so nothing grows per token. */
static llmlab_status tokens_alloc(sim_run *R, llmlab_err *err) {
    long long total = 0;
    for (int i = 0; i < R->n; i++) total += R->reqs[i].max_new > 0 ? R->reqs[i].max_new : 0;
    int rec = R->S->o.record_tokens;
    if (rec < 0) rec = total <= 4000000;
    if (!rec) return LLMLAB_OK;
    if (total > 0x7fffffffLL)
        return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: %lld output tokens are too many for per-token records "
                              "(set record_tokens = 0)", total);
    size_t T = (size_t)(total ? total : 1);
    R->T.req = malloc(T * sizeof *R->T.req);
    R->T.index = malloc(T * sizeof *R->T.index);
    R->T.tok = calloc(T, sizeof *R->T.tok);
    R->T.t = malloc(T * sizeof *R->T.t);
    if (!R->T.req || !R->T.index || !R->T.tok || !R->T.t)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "simulate: out of memory for %lld token records (set "
                              "record_tokens = 0)", total);
    R->T.on = 1;
    return LLMLAB_OK;
}

static llmlab_status check_requests(const llmlab_request *reqs, int n, llmlab_err *err) {
    for (int i = 0; i < n; i++) {
        const llmlab_request *r = &reqs[i];
        if (r->prompt_len <= 0 || r->max_new < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d: prompt_len %d must be > 0 and max_new "
                                  "%d >= 0", r->id, r->prompt_len, r->max_new);
        if (!(r->arrival_s >= 0) || !isfinite(r->arrival_s))
            return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: request %d: arrival_s %g must be >= 0", r->id,
                                  r->arrival_s);
    }
    return LLMLAB_OK;
}

/* ---- one iteration ---------------------------------------------------------------------- */

/* The view of the live requests (or, for a plugin older than ABI 1.3, of every
 * request in list order). */
static void build_view(sim_run *R, double now) {
    const llmlab_sim *S = R->S;
    R->n_view = R->full_view ? R->n : R->n_live;
    for (int k = 0; k < R->n_view; k++) {
        int i = R->full_view ? k : R->vb.live[k];
        R->vidx[k] = i;
        R->vb.vpos[i] = k;
        sim_view_entry(R, k);
    }
    R->view = (llmlab_sched_view){sizeof R->view, now, R->n_view, R->vb.vreq, R->free_blocks, S->n_blocks,
                                  S->block_size, S->token_budget, S->max_seqs, 1, S->watermark_blocks,
                                  R->swap_free, S->swap_blocks, R->vb.held, R->vb.pred, S->preempt_mode};
}

void sim_view_entry(sim_run *R, int k) {
    int i = R->vidx[k];
    const llmlab_request *r = &R->reqs[i];
    const sim_req *q = &R->q[i];
    R->vb.vreq[k] = (llmlab_sched_req){r->id, q->state, q->arrival, r->prompt_len, q->computed,
                                    sim_target(R, i), q->generated, r->max_new, r->priority};
    R->vb.held[k] = q->held;
    R->vb.pred[k] = r->max_new; /* the simulator's requests emit exactly max_new tokens: an oracle */
}

static llmlab_status schedule(sim_run *R, void *self, double now, llmlab_err *err) {
    build_view(R, now);
    memset(R->vb.plan, 0, (size_t)R->n_view * sizeof *R->vb.plan);
    memset(R->vb.preempt, 0, (size_t)R->n_view);
    llmlab_sched_plan sp = {sizeof sp, R->vb.plan, R->vb.preempt};
    const llmlab_sched_ops *ops = R->S->d->ops;
    llmlab_status st = ops->schedule(self, &R->view, &sp, err);
    return st ? llmlab_err_prefix(err, "sched plugin '%s'", R->S->d->name) : LLMLAB_OK;
}

/* Emits one token of request i at time t. */
static void emit(sim_run *R, int i, double t) {
    sim_req *q = &R->q[i];
    q->generated++;
    if (q->generated == 1) q->first = t;
    else if (R->itl) llmlab_itl_hist_add(R->itl, t - R->last_tok[i]);
    if (R->itl) R->last_tok[i] = t;
    if (R->T.on) {
        R->T.req[R->T.n] = R->reqs[i].id;
        R->T.index[R->T.n] = q->generated - 1;
        R->T.t[R->T.n] = t;
        R->T.n++;
    }
}

/* Counts the planned work into the iteration's shape and checks the budget. */
static llmlab_status compose(sim_run *R, llmlab_iter_shape *it, int *seqs, llmlab_err *err) {
    const llmlab_sim *S = R->S;
    int total = 0;
    memset(it, 0, sizeof *it);
    *seqs = 0;
    for (int k = 0; k < R->n_view; k++) {
        if (R->vb.plan[k] <= 0) continue;
        int i = R->vidx[k], want = sim_target(R, i) - R->q[i].computed;
        total += want > 0 ? R->vb.plan[k] : 1;
        if (total > S->token_budget)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' planned more than the token budget %d (a "
                                  "decoding sequence counts 1 token)", S->d->name, S->token_budget);
        llmlab_iter_add(it, want > 0 ? (R->vb.plan[k] < want ? R->vb.plan[k] : want) : 0, R->q[i].computed);
        (*seqs)++;
    }
    return LLMLAB_OK;
}

/* The iteration's end: chunks counted, tokens emitted, finished requests out. */
static void finish_step(sim_run *R, double end, int *accepted, double *context) {
    const llmlab_sim *S = R->S;
    *accepted = 0;
    *context = 0;
    for (int k = 0; k < R->n_view; k++) {
        if (R->vb.plan[k] <= 0) continue;
        int i = R->vidx[k];
        sim_req *q = &R->q[i];
        int target = sim_target(R, i), want = target - q->computed;
        if (want > 0) {
            int chunk = R->vb.plan[k] < want ? R->vb.plan[k] : want;
            int redo = (q->recompute_upto < q->computed + chunk ? q->recompute_upto : q->computed + chunk) - q->computed;
            if (redo > 0) q->recomputed += redo, R->recomputed += redo;
            q->computed += chunk;
            if (q->computed == target && q->generated == 0) emit(R, i, end), (*accepted)++;
        } else {
            q->computed++;
            emit(R, i, end);
            (*accepted)++;
        }
        q->held = sim_blocks_of(S, q->computed);
        *context += q->computed;
        if (q->generated >= R->reqs[i].max_new) sim_retire(R, i, end, 0);
    }
}

static llmlab_status log_step(sim_run *R, double start, double dt, const llmlab_iter_shape *it, int seqs,
                              int blocks, int accepted, double context, llmlab_err *err) {
    llmlab_step_row x = {start, dt, blocks * R->S->block_bytes, it->prefill_tokens + it->decode_seqs, seqs, blocks,
                         accepted, it->prefill_tokens, it->decode_seqs, context > 2e9 ? 2000000000 : (int)context,
                         R->step_preempted, R->step_swap_in, R->step_swap_out};
    if (llmlab_step_log_push(&R->L, &x, 1024) < 0)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "simulate: out of memory for %d steps", 2 * R->L.cap);
    R->step_preempted = R->step_swap_in = R->step_swap_out = 0;
    R->step_swap_s = 0;
    return LLMLAB_OK;
}

/* One iteration at `now`; *dt = 0 when nothing ran. */
static llmlab_status iterate(sim_run *R, void *self, double now, double *dt, llmlab_err *err) {
    *dt = 0;
    llmlab_status st = schedule(R, self, now, err);
    if (!st) st = sim_plan_preempts(R, err);
    if (!st) st = sim_fit_plan(R, self, now, err);
    llmlab_iter_shape it;
    int seqs = 0;
    if (!st) st = compose(R, &it, &seqs, err);
    if (st || seqs == 0) return st;
    int blocks = R->S->n_blocks - R->free_blocks; /* the step's peak: before releases */
    double t = llmlab_cost_predict(&R->S->o.cost, &it) + R->step_swap_s, context = 0;
    int accepted = 0;
    finish_step(R, now + t, &accepted, &context);
    *dt = t > 0 ? t : 1e-12; /* a zero-cost model still moves the clock on */
    return log_step(R, now, t, &it, seqs, blocks, accepted, context, err);
}

/* Idle: no live request, or the plugin scheduled nothing (it may wait for a
 * batch to fill): jump to the next event, ticking 1 ms while live requests wait
 * so a plugin that waits for time to pass sees it pass. */
static llmlab_status idle(sim_run *R, double *now, int *idle_rounds, llmlab_err *err) {
    double next = sim_next_event(R);
    if (R->n_live == 0) {
        *now = next > *now ? next : *now;
        return LLMLAB_OK;
    }
    if (++*idle_rounds > 1000000 && next < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "sched plugin '%s' scheduled nothing while %d requests wait (KV pool of %d blocks may "
                              "be too small for the next request)", R->S->d->name, R->n_live, R->S->n_blocks);
    double tick = *now + 1e-3;
    *now = next >= 0 && next < tick ? (next > *now ? next : *now) : tick;
    return LLMLAB_OK;
}

static llmlab_status loop(sim_run *R, void *self, llmlab_err *err) {
    double now = 0;
    int idle_rounds = 0;
    llmlab_status st = LLMLAB_OK;
    while (!st) {
        sim_arrivals(R, now);
        sim_cancellations(R, now);
        sim_compact(R);
        if (R->n_done == R->n) break;
        double dt = 0;
        if (R->n_live > 0) st = iterate(R, self, now, &dt, err);
        if (st) break;
        if (dt > 0) {
            now += dt;
            idle_rounds = 0;
        } else {
            st = idle(R, &now, &idle_rounds, err);
        }
    }
    R->end = now;
    return st;
}

llmlab_status llmlab_sim_run(llmlab_sim *S, const llmlab_request *reqs, int n, llmlab_run_result **out,
                             llmlab_itl_hist *itl, llmlab_err *err) {
    *out = NULL;
    if (n < 0 || (n > 0 && !reqs)) return llmlab_err_set(err, LLMLAB_EINVAL, "simulate: no requests");
    if (itl) llmlab_itl_hist_init(itl);
    sim_run R;
    memset(&R, 0, sizeof R);
    llmlab_status st = check_requests(reqs, n, err);
    if (!st) st = run_alloc(&R, S, reqs, n, itl, err);
    if (!st) st = tokens_alloc(&R, err);
    if (!st) st = sim_queue_init(&R, err);
    void *self = NULL;
    const llmlab_sched_ops *ops = S->d->ops;
    if (!st && (st = ops->create(&self, llmlab_host_table(), NULL, S->p, err)))
        llmlab_err_prefix(err, "sched plugin '%s': create", S->d->name);
    if (!st) st = loop(&R, self, err);
    if (self) ops->destroy(self);
    if (!st) st = sim_collect(&R, out, err);
    run_free(&R);
    return st;
}
