/* engine_run.c - one run: requests in, tokens and metrics out.
 *
 * Each iteration:
 *   1. arrivals: requests whose arrival time has passed join the live index;
 *      requests past their cancellation deadline leave (serve_queue.c);
 *   2. the sched plugin sees the live requests (every request for plugins built
 *      against ABI <= 1.2) and returns tokens to run and requests to preempt;
 *   3. the block manager carries the plan out (serve_blocks.c): preemptions,
 *      admissions and swap-ins that fit, preemption of victims when the step's
 *      tokens need more KV blocks than are free;
 *   4. the step is built: prompt (or recompute) chunks by the engine, decode
 *      tokens by the decoding plugin's propose(); ONE forward;
 *   5. prompt chunks are committed; sequences whose rows carry logits go to the
 *      decoding plugin's verify(); unaccepted provisional slots are dropped; the
 *      attention plugin's after_step() may evict;
 *   6. finished sequences release their KV blocks and their closed-loop
 *      successors get an arrival time.
 *
 * Forced mode (llmlab_engine_score) runs the same loop with the decoding plugin
 * left out: the engine itself forwards the text's next token for every decoding
 * sequence (forced_propose), hands the logits to the score callback, keeps the
 * slot and accepts the text's token (forced_verify). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "generate.h"
#include "serve.h"

void llmlab_run_result_free(llmlab_run_result *r) {
    if (!r) return;
    if (r->output)
        for (int i = 0; i < r->n_reqs; i++) free(r->output[i]);
    void *bufs[] = {r->req_id, r->prompt_len, r->output_len, r->forwards, r->arrival_s, r->admit_s,
                    r->first_token_s, r->finish_s, r->output, r->step_start_s, r->step_dt_s,
                    r->step_tokens, r->step_seqs, r->step_kv_blocks, r->step_kv_bytes, r->tok_req,
                    r->tok_index, r->tok_id, r->tok_time_s, r->metrics, r->step_accepted, r->step_metrics,
                    r->status, r->preemptions, r->recomputed_tokens, r->swaps, r->step_prefill_tokens,
                    r->step_decode_seqs, r->step_kv_context, r->step_preempted, r->step_swap_in,
                    r->step_swap_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(r);
}

/* *dst[n0] grows to n0 + n1 with src[n1]; a missing column (NULL) or source
 * counts as zeros. */
static int cat_column(void *dst, size_t n0, const void *src, size_t n1, size_t elem) {
    void **d = dst;
    int fresh = *d == NULL;
    char *g = realloc(*d, (n0 + n1 ? n0 + n1 : 1) * elem);
    if (!g) return -1;
    if (fresh) memset(g, 0, n0 * elem);
    if (src) memcpy(g + n0 * elem, src, n1 * elem);
    else memset(g + n0 * elem, 0, n1 * elem);
    *d = g;
    return 0;
}

int llmlab_run_result_cat_serving(llmlab_run_result *a, const llmlab_run_result *b) {
    size_t ra = (size_t)a->n_reqs, rb = (size_t)b->n_reqs, sa = (size_t)a->n_steps, sb = (size_t)b->n_steps;
    int **req[] = {&a->status, &a->preemptions, &a->recomputed_tokens, &a->swaps};
    const int *req_b[] = {b->status, b->preemptions, b->recomputed_tokens, b->swaps};
    int **step[] = {&a->step_prefill_tokens, &a->step_decode_seqs, &a->step_kv_context, &a->step_preempted,
                    &a->step_swap_in, &a->step_swap_out};
    const int *step_b[] = {b->step_prefill_tokens, b->step_decode_seqs, b->step_kv_context, b->step_preempted,
                           b->step_swap_in, b->step_swap_out};
    for (size_t c = 0; c < 4; c++)
        if (cat_column(req[c], ra, req_b[c], rb, sizeof(int))) return -1;
    for (size_t c = 0; c < 6; c++)
        if (cat_column(step[c], sa, step_b[c], sb, sizeof(int))) return -1;
    a->preemptions_total += b->preemptions_total;
    a->recomputed_tokens_total += b->recomputed_tokens_total;
    a->swaps_total += b->swaps_total;
    a->cancelled_total += b->cancelled_total;
    a->swap_bytes += b->swap_bytes;
    return 0;
}

static const llmlab_sched_ops *sched_ops(const llmlab_engine *e) { return e->sched.d->ops; }
static const llmlab_decoding_ops *dec_ops(const llmlab_engine *e) { return e->dec.d->ops; }
static const llmlab_attention_ops *att_ops(const llmlab_engine *e) { return e->att.d->ops; }

/* ---- the step log -------------------------------------------------------------------------- */

static void step_log_free(step_log *L) {
    llmlab_step_log_free(&L->c);
    free(L->metrics);
    L->metrics = NULL;
}

/* One step's record.  The plugin counters of the step are taken from the engine
 * and the serving counters from the run (and reset there). */
static llmlab_status step_log_push(serve_run *R, step_log *L, llmlab_step_row *x, llmlab_err *err) {
    llmlab_engine *e = R->e;
    x->preempted = R->step_preempted;
    x->swap_in = R->step_swap_in;
    x->swap_out = R->step_swap_out;
    int old_cap = L->c.cap, k = llmlab_step_log_push(&L->c, x, 256);
    if (k < 0) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (L->c.cap != old_cap) { /* the counters grow with the columns */
        double *m = realloc(L->metrics, (size_t)L->c.cap * LLMLAB_MAX_METRICS * sizeof *m);
        if (!m) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        L->metrics = m;
    }
    memcpy(L->metrics + (size_t)k * LLMLAB_MAX_METRICS, e->step_metrics, sizeof e->step_metrics);
    memset(e->step_metrics, 0, sizeof e->step_metrics);
    R->step_preempted = R->step_swap_in = R->step_swap_out = 0;
    return LLMLAB_OK;
}

/* ---- requests ------------------------------------------------------------------------------ */

/* Forced mode: the request's prompt is the whole text; its first prefix tokens
 * become the sequence's prompt and the rest are fed one per step. */
static llmlab_status seq_force(llmlab_seq *s, const llmlab_request *r, int prefix, llmlab_err *err) {
    if (prefix < 1 || prefix >= r->prompt_len)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "request %d: prefix_len %d must be in [1, %d] (a text of %d tokens needs at least one "
                              "token after the prefix to score)", r->id, prefix, r->prompt_len - 1, r->prompt_len);
    s->forced = r->prompt;
    s->len = s->prompt_len = prefix;
    s->max_new = r->prompt_len - prefix;
    s->stop_eos = 0;
    return LLMLAB_OK;
}

/* prefix: [n] forced mode's prefix lengths, NULL for a normal run. */
static llmlab_status seqs_init(llmlab_engine *e, llmlab_seq *seqs, const llmlab_request *reqs, int n,
                               const int *prefix, llmlab_err *err) {
    for (int i = 0; i < n; i++) {
        const llmlab_request *r = &reqs[i];
        if (r->prompt_len <= 0 || (r->max_new < 0 && !prefix))
            return llmlab_err_set(err, LLMLAB_EINVAL, "request %d: empty prompt or negative max_new", r->id);
        for (int k = 0; k < r->prompt_len; k++)
            if (r->prompt[k] < 0 || r->prompt[k] >= e->m->cfg.vocab_size)
                return llmlab_err_set(err, LLMLAB_EINVAL, "request %d: prompt token %d outside the vocabulary (size %d)",
                                      r->id, r->prompt[k], e->m->cfg.vocab_size);
        if (r->sampling && llmlab_sampling_check(r->sampling))
            return llmlab_err_set(err, LLMLAB_EINVAL, "request %d: %s", r->id, llmlab_sampling_check(r->sampling));
        llmlab_seq *s = &seqs[i];
        s->e = e;
        s->id = r->id;
        s->kv = -1;
        s->cap = r->prompt_len + (prefix ? 0 : r->max_new) + 1;
        if (!(s->tokens = malloc((size_t)s->cap * sizeof *s->tokens)))
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        memcpy(s->tokens, r->prompt, (size_t)r->prompt_len * sizeof *s->tokens);
        s->len = s->prompt_len = r->prompt_len;
        s->max_new = r->max_new;
        s->stop_eos = r->stop_at_eos;
        s->samp = r->sampling ? *r->sampling : e->samp;
        llmlab_rng_seed(&s->rng, e->seed, (uint64_t)r->id);
        s->arrival_s = r->arrival_s;
        s->priority = r->priority;
        s->admit_s = s->first_s = s->finish_s = -1;
        if (prefix) {
            llmlab_status st = seq_force(s, r, prefix[i], err);
            if (st) return st;
        }
    }
    return LLMLAB_OK;
}

static llmlab_status seq_begin(llmlab_engine *e, llmlab_seq *s, llmlab_err *err) {
    if (!s->dec_begun) {
        llmlab_status r = s->forced ? LLMLAB_OK : dec_ops(e)->seq_begin(e->dec.self, s, err);
        if (r) return llmlab_err_prefix(err, "decoding plugin '%s': seq_begin", e->dec.d->name);
        s->dec_begun = 1;
    }
    if (!s->att_begun) {
        llmlab_status r = att_ops(e)->seq_begin(e->att.self, s, err);
        if (r) return llmlab_err_prefix(err, "attention plugin '%s': seq_begin", e->att.d->name);
        s->att_begun = 1;
    }
    return LLMLAB_OK;
}

static int in_prefill(const llmlab_seq *s) { return serve_computed(s) < serve_target(s); }

/* Adds a prompt (or recompute) chunk of s to the step, as a chain; returns the
 * tokens added in *added. */
static llmlab_status add_prefill(llmlab_engine *e, llmlab_seq *s, int tokens, llmlab_step *st, int *added,
                                 llmlab_err *err) {
    int computed = serve_computed(s), target = serve_target(s);
    int n = tokens < target - computed ? tokens : target - computed, prev = -1;
    int last_flags = LLMLAB_ROW_LOGITS | (e->want_hidden ? LLMLAB_ROW_HIDDEN : 0);
    for (int k = 0; k < n; k++) {
        int last = computed + k == target - 1 && s->generated == 0;
        prev = llmlab_host_table()->step_add(st, s, s->tokens[computed + k], computed + k, last ? last_flags : 0, prev);
        if (prev < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "token budget exceeded by sched plugin '%s'", e->sched.d->name);
    }
    int redo = (computed + n < s->recompute_upto ? computed + n : s->recompute_upto) - computed;
    if (redo > 0) s->recomputed += redo;
    s->verify_now = computed + n == target && s->generated == 0;
    *added = n;
    return LLMLAB_OK;
}

/* The decoding plugin's step_begin (ABI 1.1, optional) over this step's decoders. */
static llmlab_status decode_step_begin(llmlab_engine *e, llmlab_seq *const *dec, int n_dec, llmlab_err *err) {
    const llmlab_decoding_ops *d = dec_ops(e);
    if (n_dec == 0 || d->size < offsetof(llmlab_decoding_ops, step_begin) + sizeof d->step_begin || !d->step_begin)
        return LLMLAB_OK;
    llmlab_status r = d->step_begin(e->dec.self, dec, n_dec, err);
    return r ? llmlab_err_prefix(err, "decoding plugin '%s': step_begin", e->dec.d->name) : LLMLAB_OK;
}

static llmlab_status add_decode(llmlab_engine *e, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    s->verify_now = 1;
    int before = st->b->n;
    llmlab_status r = dec_ops(e)->propose(e->dec.self, s, st, err);
    if (r) return llmlab_err_prefix(err, "decoding plugin '%s': propose", e->dec.d->name);
    if (st->b->n - before > e->decode_tokens)
        return llmlab_err_set(err, LLMLAB_EINVAL, "decoding plugin '%s' proposed %d tokens, more than its "
                              "max_step_tokens %d", e->dec.d->name, st->b->n - before, e->decode_tokens);
    return LLMLAB_OK;
}

/* Forced mode's propose: the last accepted text token at position seq_kv_len,
 * with logits (what autoregressive decoding forwards). */
static llmlab_status forced_propose(llmlab_engine *e, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    s->verify_now = 1;
    int pos = serve_computed(s);
    if (llmlab_host_table()->step_add(st, s, s->tokens[s->len - 1], pos, LLMLAB_ROW_LOGITS, -1) < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "forced mode: token budget exceeded by sched plugin '%s'",
                              e->sched.d->name);
    return LLMLAB_OK;
}

/* Forced mode's verify: the sequence's last row (the prompt's last token, or the
 * forced token) is scored, its slot kept, and the text's next token accepted. */
static llmlab_status forced_verify(llmlab_engine *e, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = llmlab_host_table();
    int last = -1;
    for (int i = 0; i < st->b->n; i++)
        if (st->owner[i] == s) last = i;
    const float *logits = last >= 0 ? H->step_logits(st, last) : NULL;
    if (!logits || st->b->pos[last] != s->len - 1)
        return llmlab_err_set(err, LLMLAB_EINVAL, "forced mode: request %d has no logits row for position %d",
                              s->id, s->len - 1);
    int slot = H->step_slot(st, last);
    llmlab_status r = LLMLAB_OK;
    if (slot >= serve_computed(s) && (r = H->seq_kv_keep(s, &slot, 1, err)))
        return llmlab_err_prefix(err, "forced mode: request %d: keeping the slot of position %d", s->id, s->len - 1);
    if ((r = e->score_fn(e->score_user, s->id, s->len - 1, logits, err)))
        return llmlab_err_prefix(err, "forced mode: request %d: score callback at position %d", s->id, s->len - 1);
    return H->seq_accept(s, &s->forced[s->len], 1, err);
}

/* In mask visibility, tokens that never got step_see see their parent chain. */
static void fill_chain_masks(llmlab_step *st) {
    llmlab_batch *b = st->b;
    if (b->vis != LLMLAB_VIS_MASK) return;
    for (int i = 0; i < b->n; i++)
        if (!st->masked[i])
            for (int p = b->parent[i]; p >= 0; p = b->parent[p]) llmlab_batch_see(b, i, p);
}

/* After the forward: commit prompt chunks, verify, drop leftovers, let attention
 * evict, retire finished requests. */
static llmlab_status finish_step(serve_run *R, llmlab_step *st, llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    for (int i = 0; i < R->n_view; i++) {
        llmlab_seq *s = R->vseq[i];
        if (R->vb.plan[i] <= 0 || s->state != LLMLAB_REQ_RUNNING) continue;
        if (in_prefill(s)) llmlab_kv_commit(kv, s->kv);
        if (s->verify_now) {
            llmlab_status r = seq_begin(e, s, err);
            if (r) return r;
            if (s->forced) r = forced_verify(e, s, st, err);
            else if ((r = dec_ops(e)->verify(e->dec.self, s, st, err)))
                llmlab_err_prefix(err, "decoding plugin '%s': verify", e->dec.d->name);
            if (r) return r;
            s->forwards++;
            s->verify_now = 0;
        }
        if (s->kv >= 0 && llmlab_kv_len(kv, s->kv) > llmlab_kv_committed(kv, s->kv))
            llmlab_kv_truncate(kv, s->kv, llmlab_kv_committed(kv, s->kv), NULL);
        if (s->att_begun && s->state == LLMLAB_REQ_RUNNING) {
            llmlab_status r = llmlab_engine_after_step(s, err);
            if (r) return r;
        }
        if (s->state == LLMLAB_REQ_FINISHED) serve_retire(R, s, llmlab_now() - e->t0, 0); /* after its last token */
    }
    return LLMLAB_OK;
}

static void sleep_until(double t0, double t) {
    double dt = t - (llmlab_now() - t0);
    if (dt <= 0) return;
    struct timespec ts = {(time_t)dt, (long)((dt - (double)(time_t)dt) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- results --------------------------------------------------------------------------------- */

static llmlab_status collect_requests(llmlab_engine *e, const llmlab_seq *seqs, int n, llmlab_run_result *r,
                                      llmlab_err *err) {
    size_t N = (size_t)(n ? n : 1);
    llmlab_status st = llmlab_run_result_alloc_requests(r, 1, err);
    if (st) return st;
    r->n_metrics = e->n_metrics;
    memcpy(r->metric_names, e->metric_names, sizeof r->metric_names);
    r->metrics = calloc((size_t)(e->n_metrics ? e->n_metrics : 1) * N, sizeof(double));
    if (!r->metrics) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int k = 0; k < e->n_metrics; k++)
        for (int i = 0; i < n; i++) r->metrics[(size_t)k * N + (size_t)i] = seqs[i].metrics[k];
    for (int i = 0; i < n; i++) {
        const llmlab_seq *s = &seqs[i];
        llmlab_run_row x = {s->id, s->prompt_len, s->generated, s->forwards, s->cancelled, s->preemptions,
                            s->recomputed, s->swaps, s->arrival_s, s->admit_s, s->first_s, s->finish_s};
        llmlab_run_result_put(r, i, &x);
        if (!(r->output[i] = malloc((size_t)(s->generated ? s->generated : 1) * sizeof(int32_t))))
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        memcpy(r->output[i], s->tokens + s->prompt_len, (size_t)s->generated * sizeof(int32_t));
    }
    return LLMLAB_OK;
}

/* The step log moves into the result; plugin counters become [n_metrics][n_steps]. */
static llmlab_status collect_steps(llmlab_engine *e, step_log *L, llmlab_run_result *r, llmlab_err *err) {
    double *metrics = L->metrics;
    int n = L->c.n;
    L->metrics = NULL;
    llmlab_status st = llmlab_step_log_move(&L->c, r, err);
    size_t S = (size_t)(n ? n : 1);
    r->step_metrics = calloc((size_t)(e->n_metrics ? e->n_metrics : 1) * S, sizeof(double));
    if (r->step_metrics)
        for (int k = 0; k < e->n_metrics; k++)
            for (int j = 0; j < n; j++)
                r->step_metrics[(size_t)k * S + (size_t)j] = metrics[(size_t)j * LLMLAB_MAX_METRICS + (size_t)k];
    free(metrics);
    if (st) return st;
    return r->step_metrics ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
}

/* Copies the run's per-request, per-step and per-token records into a result. */
static llmlab_status collect(serve_run *R, step_log *steps, double wall, llmlab_run_result **out,
                             llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_run_result *r = calloc(1, sizeof *r);
    if (!r) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    r->n_reqs = R->n;
    llmlab_status st = collect_requests(e, R->seqs, R->n, r, err);
    if (!st) st = collect_steps(e, steps, r, err);
    if (st) {
        llmlab_run_result_free(r);
        return st;
    }
    llmlab_run_result_take_tokens(r, e->toks.n, e->toks.req, e->toks.index, e->toks.tok, e->toks.t);
    memset(&e->toks, 0, sizeof e->toks);
    r->wall_s = wall;
    r->output_tok_per_s = wall > 0 ? (double)r->output_tokens / wall : 0;
    r->swap_bytes = R->swap_bytes;
    /* Spec-Bench's "#mean accepted tokens": tokens per decoding target forward.  The
     * prefill forward's first token is left out on both sides, so autoregressive
     * decoding gives exactly 1 and a draft that is always right exactly k + 1. */
    long long dec_tok = 0, dec_fwd = 0;
    for (int i = 0; i < R->n; i++)
        if (R->seqs[i].forwards > 0) {
            dec_tok += R->seqs[i].generated - 1;
            dec_fwd += R->seqs[i].forwards - 1;
        }
    r->mean_accepted = dec_fwd ? (double)dec_tok / (double)dec_fwd : (r->output_tokens ? 1.0 : 0.0);
    *out = r;
    return LLMLAB_OK;
}

/* ---- one iteration ---------------------------------------------------------------------------- */

/* Builds the step from the fitted plan: prefill chunks first; then the decoding
 * plugin sees all of this step's decoders at once (step_begin) before proposing
 * for each. */
static llmlab_status build_step(serve_run *R, llmlab_step *st, llmlab_step_row *x, llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_status r = LLMLAB_OK;
    int n_dec = 0;
    llmlab_batch_clear(st->b);
    for (int i = 0; i < R->n_view && !r; i++) {
        if (R->vb.plan[i] <= 0) continue;
        llmlab_seq *s = R->vseq[i];
        int added = 0;
        x->seqs++;
        if (in_prefill(s)) {
            r = add_prefill(e, s, R->vb.plan[i], st, &added, err);
            x->prefill += added;
        } else if (!(r = seq_begin(e, s, err)))
            st->decoders[n_dec++] = s;
    }
    if (!r && !e->score_fn) r = decode_step_begin(e, st->decoders, n_dec, err);
    for (int k = 0; k < n_dec && !r; k++)
        r = e->score_fn ? forced_propose(e, st->decoders[k], st, err) : add_decode(e, st->decoders[k], st, err);
    x->decode = n_dec;
    if (!r) fill_chain_masks(st);
    return r;
}

/* One iteration: schedule, fit the plan, build the step, forward, verify.
 * *progress tells whether a forward ran. */
static llmlab_status iterate(serve_run *R, llmlab_step *st, step_log *steps, int *progress, llmlab_err *err) {
    llmlab_engine *e = R->e;
    double now = llmlab_now() - e->t0;
    serve_build_view(R, now);
    memset(R->vb.plan, 0, (size_t)R->n_view * sizeof *R->vb.plan);
    memset(R->vb.preempt, 0, (size_t)R->n_view);
    llmlab_sched_plan sp = {sizeof sp, R->vb.plan, R->vb.preempt};
    llmlab_status r = sched_ops(e)->schedule(e->sched.self, &R->view, &sp, err);
    if (r) return llmlab_err_prefix(err, "sched plugin '%s'", e->sched.d->name);
    if ((r = serve_plan_preempts(R, err)) || (r = serve_fit_plan(R, now, err))) return r;
    llmlab_step_row x = {0};
    if ((r = build_step(R, st, &x, err))) return r;
    *progress = st->b->n > 0;
    if (!*progress) return LLMLAB_OK;
    double t_start = llmlab_now();
    r = llmlab_forward(e->ctx, st->b, &st->out, err);
    if (r) return r;
    for (int i = 0; i < st->b->n; i++) st->row[i] = -1;
    for (int k = 0; k < st->out->n_out; k++) st->row[st->out->out_index[k]] = k;
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    long long gen0 = 0, gen1 = 0;
    for (int i = 0; i < R->n_view; i++)
        if (R->vb.plan[i] > 0) {
            gen0 += R->vseq[i]->generated;
            x.context += llmlab_kv_len(kv, R->vseq[i]->kv);
        }
    x.blocks = llmlab_kv_blocks_used(kv); /* peak of the step: before releases */
    x.kv_bytes = (double)llmlab_kv_resident_bytes(kv); /* packed blocks + f32 staging of hot ones (kv_cache.h) */
    r = finish_step(R, st, err);
    st->out = NULL;
    if (r) return r;
    for (int i = 0; i < R->n_view; i++)
        if (R->vb.plan[i] > 0) gen1 += R->vseq[i]->generated;
    double t_end = llmlab_now();
    x.start = t_start - e->t0;
    x.dt = t_end - t_start;
    x.tokens = st->b->n;
    x.accepted = (int)(gen1 - gen0);
    return step_log_push(R, steps, &x, err);
}

/* Nothing ran although requests are live.  A request whose prompt alone exceeds
 * the pool, with nothing running, can never start: that is an error now.
 * Otherwise the scheduler may be waiting on purpose (e.g. for a batch to fill):
 * wait for the next event, and give up only after a long idle spell with none. */
static llmlab_status idle(serve_run *R, double idle_since, llmlab_err *err) {
    llmlab_engine *e = R->e;
    const llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    int running = 0;
    const llmlab_seq *head = NULL;
    for (int k = 0; k < R->n_live; k++) {
        const llmlab_seq *s = &R->seqs[R->vb.live[k]];
        running |= s->state == LLMLAB_REQ_RUNNING;
        if (!head && s->state == LLMLAB_REQ_WAITING) head = s;
    }
    int bs = kv->o.block_size;
    if (!running && head && (serve_target(head) + bs - 1) / bs > kv->o.n_blocks)
        return llmlab_err_set(err, LLMLAB_ENOKV,
                              "request %d cannot fit in the KV cache even alone: %d tokens to prefill need %d "
                              "blocks, the pool has %d blocks of %d tokens; raise kv_tokens", head->id,
                              serve_target(head), (serve_target(head) + bs - 1) / bs, kv->o.n_blocks, bs);
    double now = llmlab_now() - e->t0, next = serve_next_event(R);
    if (next < 0 && now - idle_since > 10.0)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "sched plugin '%s' scheduled nothing for %.0f s while %d requests wait and nothing "
                              "else can happen (KV pool: %d blocks of %d tokens, %d free)",
                              e->sched.d->name, now - idle_since, R->n_live, kv->o.n_blocks, bs, kv->n_free);
    sleep_until(e->t0, next >= 0 && next < now + 1e-3 ? next : now + 1e-3);
    return LLMLAB_OK;
}

/* ---- the run ----------------------------------------------------------------------------------- */

static llmlab_status serve_loop(serve_run *R, llmlab_step *st, step_log *steps, llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_status r = LLMLAB_OK;
    double idle_since = -1;
    while (!r) {
        double now = llmlab_now() - e->t0;
        serve_arrivals(R, now);
        serve_cancellations(R, now);
        serve_compact(R);
        if (R->n_done == R->n) break;
        if (R->n_live == 0) { /* nothing arrived yet: the heap holds the next arrival */
            double next = serve_next_event(R);
            if (next < 0)
                return llmlab_err_set(err, LLMLAB_EINVAL, "serving loop: %d requests neither arrived nor can arrive",
                                      R->n - R->n_done);
            sleep_until(e->t0, next);
            continue;
        }
        int progress = 0;
        r = iterate(R, st, steps, &progress, err);
        if (r || progress) {
            idle_since = -1;
            continue;
        }
        if (idle_since < 0) idle_since = now;
        r = idle(R, idle_since, err);
    }
    return r;
}

/* The run loop of both modes; prefix (forced mode) is NULL for a normal run. */
static llmlab_status run_loop(llmlab_engine *e, const llmlab_request *reqs, int n, const int *prefix,
                              llmlab_run_result **out, llmlab_err *err) {
    *out = NULL;
    llmlab_seq *seqs = calloc((size_t)(n ? n : 1), sizeof *seqs);
    serve_run R;
    llmlab_step st = {.e = e, .b = llmlab_batch_create(e->token_budget)};
    st.owner = calloc((size_t)e->token_budget, sizeof *st.owner);
    st.row = calloc((size_t)e->token_budget, sizeof *st.row);
    st.masked = calloc((size_t)e->token_budget, 1);
    st.decoders = calloc((size_t)(n ? n : 1), sizeof *st.decoders);
    step_log steps = {0};
    llmlab_status r = serve_alloc(&R, e, seqs, reqs, n, err);
    if (!r && (!seqs || !st.b || !st.owner || !st.row || !st.masked || !st.decoders))
        r = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!r) r = seqs_init(e, seqs, reqs, n, prefix, err);
    if (!r) r = serve_queue_init(&R, err);
    /* Plugins built before ABI 1.3 expect every request in the view. */
    R.full_view = e->sched.d->abi_major == 1 && e->sched.d->abi_minor < 3;
    serve_size_swap(e);
    /* A fresh scheduler instance per run: schedulers keep per-run state. */
    if (!r) r = sched_ops(e)->create(&e->sched.self, llmlab_host_table(), e, e->sched.p, err);
    memset(&e->toks, 0, sizeof e->toks);
    e->n_metrics = 0;
    memset(e->step_metrics, 0, sizeof e->step_metrics);
    e->t0 = llmlab_now();
    if (!r) r = serve_loop(&R, &st, &steps, err);
    double wall = llmlab_now() - e->t0;
    if (!r) r = collect(&R, &steps, wall, out, err);
    for (int i = 0; i < n && seqs; i++) {
        if (seqs[i].state == LLMLAB_REQ_SWAPPED) llmlab_kv_swap_drop(&e->swap, &seqs[i].swapped);
        if (seqs[i].e) serve_release(e, &seqs[i]);
        free(seqs[i].tokens);
    }
    if (e->sched.self) sched_ops(e)->destroy(e->sched.self);
    e->sched.self = NULL;
    free(e->toks.req);
    free(e->toks.index);
    free(e->toks.tok);
    free(e->toks.t);
    memset(&e->toks, 0, sizeof e->toks);
    step_log_free(&steps);
    serve_free(&R);
    free(seqs);
    free(st.owner);
    free(st.row);
    free(st.masked);
    free(st.decoders);
    llmlab_batch_free(st.b);
    return r;
}

llmlab_status llmlab_engine_run(llmlab_engine *e, const llmlab_request *reqs, int n, llmlab_run_result **out,
                                llmlab_err *err) {
    return run_loop(e, reqs, n, NULL, out, err);
}

llmlab_status llmlab_engine_score(llmlab_engine *e, const llmlab_request *reqs, int n, const int *prefix_len,
                                  llmlab_score_fn fn, void *user, llmlab_run_result **out, llmlab_err *err) {
    *out = NULL;
    if (!fn || (n > 0 && (!reqs || !prefix_len)))
        return llmlab_err_set(err, LLMLAB_EINVAL, "llmlab_engine_score: requests, prefix_len and fn are required");
    e->score_fn = fn;
    e->score_user = user;
    llmlab_status r = run_loop(e, reqs, n, prefix_len, out, err);
    e->score_fn = NULL;
    e->score_user = NULL;
    return r;
}
