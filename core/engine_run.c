/* engine_run.c - one run: requests in, tokens and metrics out.
 *
 * Each iteration:
 *   1. arrivals: requests whose arrival time has passed become WAITING;
 *   2. the sched plugin sees every request and returns tokens to run per request;
 *   3. the step is built: prompt chunks by the engine, decode tokens by the
 *      decoding plugin's propose();
 *   4. ONE forward;
 *   5. prompt chunks are committed; sequences whose rows carry logits go to the
 *      decoding plugin's verify(); unaccepted provisional slots are dropped; the
 *      attention plugin's after_step() may evict;
 *   6. finished sequences release their KV blocks.
 *
 * Forced mode (llmlab_engine_score) runs the same loop with the decoding plugin
 * left out: the engine itself forwards the text's next token for every decoding
 * sequence (forced_propose), hands the logits to the score callback, keeps the
 * slot and accepts the text's token (forced_verify). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_internal.h"
#include "error.h"
#include "generate.h"

void llmlab_run_result_free(llmlab_run_result *r) {
    if (!r) return;
    if (r->output)
        for (int i = 0; i < r->n_reqs; i++) free(r->output[i]);
    void *bufs[] = {r->req_id, r->prompt_len, r->output_len, r->forwards, r->arrival_s, r->admit_s,
                    r->first_token_s, r->finish_s, r->output, r->step_start_s, r->step_dt_s,
                    r->step_tokens, r->step_seqs, r->step_kv_blocks, r->step_kv_bytes, r->tok_req,
                    r->tok_index, r->tok_id, r->tok_time_s, r->metrics, r->step_accepted, r->step_metrics};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(r);
}

static const llmlab_sched_ops *sched_ops(const llmlab_engine *e) { return e->sched.d->ops; }
static const llmlab_decoding_ops *dec_ops(const llmlab_engine *e) { return e->dec.d->ops; }
static const llmlab_attention_ops *att_ops(const llmlab_engine *e) { return e->att.d->ops; }

/* Tokens one decoding sequence forwards per step: the decoding plugin's maximum,
 * or exactly 1 in forced mode. */
static int decode_width(const llmlab_engine *e) { return e->score_fn ? 1 : e->decode_tokens; }

/* Tokens a sequence needs in its KV cache before its next decode step: the prompt
 * at first; after a preemption, everything but the last accepted token. */
static int seq_target(const llmlab_seq *s) { return s->generated > 0 ? s->len - 1 : s->prompt_len; }

static int seq_computed(const llmlab_seq *s) {
    return s->kv < 0 ? 0 : llmlab_kv_tokens(llmlab_ctx_kv(s->e->ctx), s->kv);
}

/* One step's record.  The plugin counters of the step are taken from the engine
 * (and reset there). */
static llmlab_status step_log_push(llmlab_engine *e, step_log *L, double start, double dt, int tokens, int seqs,
                                   int blocks, double bytes, int accepted, llmlab_err *err) {
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 256;
        void **cols[] = {(void **)&L->start, (void **)&L->dt, (void **)&L->kv_bytes, (void **)&L->tokens,
                         (void **)&L->seqs, (void **)&L->blocks, (void **)&L->accepted, (void **)&L->metrics};
        const size_t sizes[] = {sizeof *L->start, sizeof *L->dt, sizeof *L->kv_bytes, sizeof *L->tokens,
                                sizeof *L->seqs, sizeof *L->blocks, sizeof *L->accepted,
                                LLMLAB_MAX_METRICS * sizeof *L->metrics};
        if (llmlab_grow_columns(cols, sizes, 8, cap)) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        L->cap = cap;
    }
    L->accepted[L->n] = accepted;
    memcpy(L->metrics + (size_t)L->n * LLMLAB_MAX_METRICS, e->step_metrics, sizeof e->step_metrics);
    memset(e->step_metrics, 0, sizeof e->step_metrics);
    L->start[L->n] = start;
    L->dt[L->n] = dt;
    L->tokens[L->n] = tokens;
    L->seqs[L->n] = seqs;
    L->blocks[L->n] = blocks;
    L->kv_bytes[L->n] = bytes;
    L->n++;
    return LLMLAB_OK;
}

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
    s->state = r->arrival_s > 0 ? LLMLAB_REQ_FUTURE : LLMLAB_REQ_WAITING;
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
        s->state = r->max_new == 0 ? LLMLAB_REQ_FINISHED : (r->arrival_s > 0 ? LLMLAB_REQ_FUTURE : LLMLAB_REQ_WAITING);
        s->admit_s = s->first_s = s->finish_s = -1;
        if (prefix) {
            llmlab_status st = seq_force(s, r, prefix[i], err);
            if (st) return st;
        }
    }
    return LLMLAB_OK;
}

static void seq_release(llmlab_engine *e, llmlab_seq *s) {
    if (s->state == LLMLAB_REQ_FINISHED && s->kv >= 0 && e->on_finish) e->on_finish(e->on_finish_user, e, s->id, s->kv);
    if (s->begun) {
        if (!s->forced) dec_ops(e)->seq_end(e->dec.self, s);
        att_ops(e)->seq_end(e->att.self, s);
        s->begun = 0;
    }
    if (s->kv >= 0) {
        llmlab_kv_free_seq(llmlab_ctx_kv(e->ctx), s->kv);
        llmlab_aux_release_seq(e, s->kv);
        e->kv_busy[s->kv] = 0;
        s->kv = -1;
    }
}

static llmlab_status seq_admit(llmlab_engine *e, llmlab_seq *s, double now, llmlab_err *err) {
    for (int k = 0; k < e->max_seqs; k++)
        if (!e->kv_busy[k]) {
            e->kv_busy[k] = 1;
            s->kv = k;
            s->state = LLMLAB_REQ_RUNNING;
            if (s->admit_s < 0) s->admit_s = now;
            return LLMLAB_OK;
        }
    return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' admitted more than max_seqs = %d sequences",
                          e->sched.d->name, e->max_seqs);
}

/* Fills the scheduler's view of every request. */
static void build_view(llmlab_engine *e, llmlab_seq *seqs, int n, llmlab_sched_req *v, double now,
                       llmlab_sched_view *view) {
    for (int i = 0; i < n; i++) {
        llmlab_seq *s = &seqs[i];
        v[i] = (llmlab_sched_req){s->id, s->state, s->arrival_s, s->prompt_len, seq_computed(s),
                                  seq_target(s), s->generated, s->max_new, 0};
    }
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    *view = (llmlab_sched_view){sizeof *view, now, n, v, kv->n_free, kv->o.n_blocks, kv->o.block_size,
                                e->token_budget, e->max_seqs, decode_width(e), .preempt_mode = 1};
}

static llmlab_status seq_begin(llmlab_engine *e, llmlab_seq *s, llmlab_err *err) {
    if (s->begun) return LLMLAB_OK;
    llmlab_status r = s->forced ? LLMLAB_OK : dec_ops(e)->seq_begin(e->dec.self, s, err);
    if (r) return llmlab_err_prefix(err, "decoding plugin '%s': seq_begin", e->dec.d->name);
    if ((r = att_ops(e)->seq_begin(e->att.self, s, err)))
        return llmlab_err_prefix(err, "attention plugin '%s': seq_begin", e->att.d->name);
    s->begun = 1;
    return LLMLAB_OK;
}

static int in_prefill(const llmlab_seq *s) { return seq_computed(s) < seq_target(s); }

/* Adds a prompt (or recompute) chunk of s to the step, as a chain. */
static llmlab_status add_prefill(llmlab_engine *e, llmlab_seq *s, int tokens, llmlab_step *st, llmlab_err *err) {
    int computed = seq_computed(s), target = seq_target(s);
    int n = tokens < target - computed ? tokens : target - computed, prev = -1;
    int last_flags = LLMLAB_ROW_LOGITS | (e->want_hidden ? LLMLAB_ROW_HIDDEN : 0);
    for (int k = 0; k < n; k++) {
        int last = computed + k == target - 1 && s->generated == 0;
        prev = llmlab_host_table()->step_add(st, s, s->tokens[computed + k], computed + k, last ? last_flags : 0, prev);
        if (prev < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "token budget exceeded by sched plugin '%s'", e->sched.d->name);
    }
    s->verify_now = computed + n == target && s->generated == 0;
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
    int pos = seq_computed(s);
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
    if (slot >= seq_computed(s) && (r = H->seq_kv_keep(s, &slot, 1, err)))
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

/* After the forward: commit prompt chunks, verify, drop leftovers, let attention evict. */
static llmlab_status finish_step(llmlab_engine *e, llmlab_seq *seqs, int n, const int *plan, llmlab_step *st,
                                 double now, llmlab_err *err) {
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    for (int i = 0; i < n; i++) {
        llmlab_seq *s = &seqs[i];
        if (plan[i] <= 0 || s->state != LLMLAB_REQ_RUNNING) continue;
        int was_prefill = seq_computed(s) < seq_target(s);
        if (was_prefill) llmlab_kv_commit(kv, s->kv);
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
        if (s->begun && s->state == LLMLAB_REQ_RUNNING) {
            llmlab_status r = llmlab_engine_after_step(s, err);
            if (r) return r;
        }
        if (s->state == LLMLAB_REQ_FINISHED) {
            s->finish_s = now;
            seq_release(e, s);
        }
    }
    return LLMLAB_OK;
}

static double earliest_future(const llmlab_seq *seqs, int n) {
    double t = -1;
    for (int i = 0; i < n; i++)
        if (seqs[i].state == LLMLAB_REQ_FUTURE && (t < 0 || seqs[i].arrival_s < t)) t = seqs[i].arrival_s;
    return t;
}

static void sleep_until(double t0, double t) {
    double dt = t - (llmlab_now() - t0);
    if (dt <= 0) return;
    struct timespec ts = {(time_t)dt, (long)((dt - (double)(time_t)dt) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Copies the run's per-request, per-step and per-token records into a result. */
static llmlab_status collect(llmlab_engine *e, llmlab_seq *seqs, int n, step_log *steps, double wall,
                             llmlab_run_result **out, llmlab_err *err) {
    llmlab_run_result *r = calloc(1, sizeof *r);
    if (!r) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    size_t N = (size_t)(n ? n : 1);
    r->n_reqs = n;
    r->req_id = calloc(N, sizeof(int));
    r->prompt_len = calloc(N, sizeof(int));
    r->output_len = calloc(N, sizeof(int));
    r->forwards = calloc(N, sizeof(int));
    r->arrival_s = calloc(N, sizeof(double));
    r->admit_s = calloc(N, sizeof(double));
    r->first_token_s = calloc(N, sizeof(double));
    r->finish_s = calloc(N, sizeof(double));
    r->output = calloc(N, sizeof(int32_t *));
    if (!r->req_id || !r->prompt_len || !r->output_len || !r->forwards || !r->arrival_s || !r->admit_s ||
        !r->first_token_s || !r->finish_s || !r->output) {
        llmlab_run_result_free(r);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    r->n_metrics = e->n_metrics;
    memcpy(r->metric_names, e->metric_names, sizeof r->metric_names);
    r->metrics = calloc((size_t)(e->n_metrics ? e->n_metrics : 1) * N, sizeof(double));
    if (!r->metrics) {
        llmlab_run_result_free(r);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    for (int k = 0; k < e->n_metrics; k++)
        for (int i = 0; i < n; i++) r->metrics[(size_t)k * N + (size_t)i] = seqs[i].metrics[k];
    long long fwd = 0;
    for (int i = 0; i < n; i++) {
        llmlab_seq *s = &seqs[i];
        r->req_id[i] = s->id;
        r->prompt_len[i] = s->prompt_len;
        r->output_len[i] = s->generated;
        r->forwards[i] = s->forwards;
        r->arrival_s[i] = s->arrival_s;
        r->admit_s[i] = s->admit_s;
        r->first_token_s[i] = s->first_s;
        r->finish_s[i] = s->finish_s;
        r->output[i] = malloc((size_t)(s->generated ? s->generated : 1) * sizeof(int32_t));
        if (!r->output[i]) {
            llmlab_run_result_free(r);
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        }
        memcpy(r->output[i], s->tokens + s->prompt_len, (size_t)s->generated * sizeof(int32_t));
        r->prompt_tokens += s->prompt_len;
        r->output_tokens += s->generated;
        fwd += s->forwards;
    }
    /* The step and token logs move into the result as they are. */
    r->n_steps = steps->n;
    r->step_start_s = steps->start;
    r->step_dt_s = steps->dt;
    r->step_tokens = steps->tokens;
    r->step_seqs = steps->seqs;
    r->step_kv_blocks = steps->blocks;
    r->step_kv_bytes = steps->kv_bytes;
    r->step_accepted = steps->accepted;
    /* per-step counters: [n_metrics][n_steps] columns out of the [step][MAX] log */
    size_t S = (size_t)(steps->n ? steps->n : 1);
    r->step_metrics = calloc((size_t)(e->n_metrics ? e->n_metrics : 1) * S, sizeof(double));
    if (!r->step_metrics) {
        free(steps->metrics);
        memset(steps, 0, sizeof *steps);
        llmlab_run_result_free(r);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    for (int k = 0; k < e->n_metrics; k++)
        for (int j = 0; j < steps->n; j++)
            r->step_metrics[(size_t)k * S + (size_t)j] = steps->metrics[(size_t)j * LLMLAB_MAX_METRICS + (size_t)k];
    free(steps->metrics);
    memset(steps, 0, sizeof *steps);
    r->n_tok = e->toks.n;
    r->tok_req = e->toks.req;
    r->tok_index = e->toks.index;
    r->tok_id = e->toks.tok;
    r->tok_time_s = e->toks.t;
    memset(&e->toks, 0, sizeof e->toks);
    r->wall_s = wall;
    r->target_forwards = fwd;
    r->output_tok_per_s = wall > 0 ? (double)r->output_tokens / wall : 0;
    /* Spec-Bench's "#mean accepted tokens": tokens per decoding target forward.  The
     * prefill forward's first token is left out on both sides, so autoregressive
     * decoding gives exactly 1 and a draft that is always right exactly k + 1. */
    long long dec_tok = 0, dec_fwd = 0;
    for (int i = 0; i < n; i++)
        if (seqs[i].forwards > 0) {
            dec_tok += seqs[i].generated - 1;
            dec_fwd += seqs[i].forwards - 1;
        }
    r->mean_accepted = dec_fwd ? (double)dec_tok / (double)dec_fwd : (r->output_tokens ? 1.0 : 0.0);
    *out = r;
    return LLMLAB_OK;
}

/* One iteration: schedule, build the step, forward, verify.  *progress tells
 * whether anything ran. */
static llmlab_status iterate(llmlab_engine *e, llmlab_seq *seqs, int n, llmlab_sched_req *view_reqs,
                             int *plan, uint8_t *preempt, llmlab_step *st, step_log *steps, int *progress,
                             llmlab_err *err) {
    double now = llmlab_now() - e->t0;
    llmlab_sched_view view;
    build_view(e, seqs, n, view_reqs, now, &view);
    memset(plan, 0, (size_t)n * sizeof *plan);
    memset(preempt, 0, (size_t)n);
    llmlab_sched_plan sp = {sizeof sp, plan, preempt};
    llmlab_status r = sched_ops(e)->schedule(e->sched.self, &view, &sp, err);
    if (r) return llmlab_err_prefix(err, "sched plugin '%s'", e->sched.d->name);
    for (int i = 0; i < n; i++) /* preemption by recompute: free the KV, keep the tokens */
        if (preempt[i] && seqs[i].state == LLMLAB_REQ_RUNNING) {
            seq_release(e, &seqs[i]);
            seqs[i].state = LLMLAB_REQ_WAITING;
        }
    llmlab_batch_clear(st->b);
    /* Prefill chunks first; then the decoding plugin sees all of this step's
     * decoders at once (step_begin) before proposing for each. */
    int total = 0, n_dec = 0;
    for (int i = 0; i < n && !r; i++) {
        if (plan[i] <= 0) continue;
        llmlab_seq *s = &seqs[i];
        if (s->state == LLMLAB_REQ_FINISHED || s->state == LLMLAB_REQ_FUTURE) {
            plan[i] = 0;
            continue;
        }
        if (s->state == LLMLAB_REQ_WAITING && (r = seq_admit(e, s, now, err))) return r;
        int prefill = in_prefill(s);
        total += prefill ? plan[i] : decode_width(e);
        if (total > e->token_budget)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "sched plugin '%s' planned more than the token budget %d (a decoding sequence "
                                  "counts %d tokens)", e->sched.d->name, e->token_budget, decode_width(e));
        if (prefill) r = add_prefill(e, s, plan[i], st, err);
        else if (!(r = seq_begin(e, s, err))) st->decoders[n_dec++] = s;
    }
    if (!r && !e->score_fn) r = decode_step_begin(e, st->decoders, n_dec, err);
    for (int k = 0; k < n_dec && !r; k++)
        r = e->score_fn ? forced_propose(e, st->decoders[k], st, err) : add_decode(e, st->decoders[k], st, err);
    if (r) return r;
    fill_chain_masks(st);
    *progress = st->b->n > 0;
    if (!*progress) return LLMLAB_OK;
    double t_start = llmlab_now();
    r = llmlab_forward(e->ctx, st->b, &st->out, err);
    if (r) return r;
    for (int i = 0; i < st->b->n; i++) st->row[i] = -1;
    for (int k = 0; k < st->out->n_out; k++) st->row[st->out->out_index[k]] = k;
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    int n_seqs = 0;
    for (int i = 0; i < n; i++) n_seqs += plan[i] > 0;
    int blocks = llmlab_kv_blocks_used(kv); /* peak of the step: before releases */
    long long gen0 = 0, gen1 = 0;
    for (int i = 0; i < n; i++) gen0 += seqs[i].generated;
    r = finish_step(e, seqs, n, plan, st, llmlab_now() - e->t0, err);
    st->out = NULL;
    if (r) return r;
    for (int i = 0; i < n; i++) gen1 += seqs[i].generated;
    double t_end = llmlab_now();
    return step_log_push(e, steps, t_start - e->t0, t_end - t_start, st->b->n, n_seqs, blocks,
                         (double)blocks * (double)llmlab_kv_block_bytes(kv), (int)(gen1 - gen0), err);
}

/* The run loop of both modes; prefix (forced mode) is NULL for a normal run. */
static llmlab_status run_loop(llmlab_engine *e, const llmlab_request *reqs, int n, const int *prefix,
                              llmlab_run_result **out, llmlab_err *err) {
    *out = NULL;
    llmlab_seq *seqs = calloc((size_t)(n ? n : 1), sizeof *seqs);
    llmlab_sched_req *view = calloc((size_t)(n ? n : 1), sizeof *view);
    int *plan = calloc((size_t)(n ? n : 1), sizeof *plan);
    uint8_t *preempt = calloc((size_t)(n ? n : 1), 1);
    llmlab_step st = {.e = e, .b = llmlab_batch_create(e->token_budget)};
    st.owner = calloc((size_t)e->token_budget, sizeof *st.owner);
    st.row = calloc((size_t)e->token_budget, sizeof *st.row);
    st.masked = calloc((size_t)e->token_budget, 1);
    st.decoders = calloc((size_t)(n ? n : 1), sizeof *st.decoders);
    step_log steps = {0};
    llmlab_status r = LLMLAB_OK;
    if (!seqs || !view || !plan || !preempt || !st.b || !st.owner || !st.row || !st.masked || !st.decoders)
        r = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!r) r = seqs_init(e, seqs, reqs, n, prefix, err);
    /* A fresh scheduler instance per run: schedulers keep per-run state. */
    if (!r) r = sched_ops(e)->create(&e->sched.self, llmlab_host_table(), e, e->sched.p, err);
    memset(&e->toks, 0, sizeof e->toks);
    e->n_metrics = 0;
    memset(e->step_metrics, 0, sizeof e->step_metrics);
    e->t0 = llmlab_now();
    int idle_rounds = 0;
    while (!r) {
        double now = llmlab_now() - e->t0;
        int live = 0, ready = 0;
        for (int i = 0; i < n; i++) {
            if (seqs[i].state == LLMLAB_REQ_FUTURE && seqs[i].arrival_s <= now) seqs[i].state = LLMLAB_REQ_WAITING;
            live += seqs[i].state != LLMLAB_REQ_FINISHED;
            ready += seqs[i].state == LLMLAB_REQ_WAITING || seqs[i].state == LLMLAB_REQ_RUNNING;
        }
        if (!live) break;
        if (!ready) {
            sleep_until(e->t0, earliest_future(seqs, n));
            continue;
        }
        int progress = 0;
        r = iterate(e, seqs, n, view, plan, preempt, &st, &steps, &progress, err);
        if (!r && !progress && ++idle_rounds > 1000 && earliest_future(seqs, n) < 0)
            r = llmlab_err_set(err, LLMLAB_EINVAL,
                               "sched plugin '%s' scheduled nothing while requests wait (KV pool of %d blocks "
                               "may be too small for the next request)",
                               e->sched.d->name, llmlab_ctx_kv(e->ctx)->o.n_blocks);
        if (progress) idle_rounds = 0;
    }
    double wall = llmlab_now() - e->t0;
    if (!r) r = collect(e, seqs, n, &steps, wall, out, err);
    for (int i = 0; i < n; i++) {
        if (seqs[i].e) seq_release(e, &seqs[i]);
        free(seqs[i].tokens);
    }
    sched_ops(e)->destroy(e->sched.self);
    e->sched.self = NULL;
    free(e->toks.req);
    free(e->toks.index);
    free(e->toks.tok);
    free(e->toks.t);
    memset(&e->toks, 0, sizeof e->toks);
    free(steps.start);
    free(steps.dt);
    free(steps.kv_bytes);
    free(steps.tokens);
    free(steps.seqs);
    free(steps.blocks);
    free(steps.accepted);
    free(steps.metrics);
    free(seqs);
    free(view);
    free(plan);
    free(preempt);
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
