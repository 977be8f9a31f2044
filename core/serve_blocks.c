/* serve_blocks.c - the serving loop's block manager (serve.h): the scheduler's
 * view, admission with a watermark, per-step block allocation, preemption by
 * recompute or by swap to host memory, and swap-in.
 *
 * The sched plugin decides (which requests run how many tokens, whom to preempt);
 * this file carries the plan out against the KV pool as it is.  KV blocks are
 * allocated per step as tokens are appended, so before each forward the engine
 * counts the blocks every scheduled request's tokens will take
 * (llmlab_kv_append_blocks: exactly what the appends will allocate, drafts
 * included) and makes them fit: the forward's appends then cannot fail. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "serve.h"

static const llmlab_sched_ops *sched_ops(const llmlab_engine *e) { return e->sched.d->ops; }

/* ---- options ----------------------------------------------------------------------------- */

llmlab_status llmlab_serve_configure(llmlab_engine *e, const llmlab_engine_opts *o, llmlab_err *err) {
    if (o->watermark >= 1 || o->watermark != o->watermark)
        return llmlab_err_set(err, LLMLAB_EINVAL, "engine option watermark = %g: a fraction of the KV blocks "
                              "below 1 (0 = the default 0.01, negative = none)", o->watermark);
    e->watermark = o->watermark == 0 ? 0.01 : (o->watermark < 0 ? 0 : o->watermark);
    if (o->preempt_mode < LLMLAB_PREEMPT_DEFAULT || o->preempt_mode > LLMLAB_PREEMPT_SWAP)
        return llmlab_err_set(err, LLMLAB_EINVAL, "engine option preempt_mode = %d: 1 (recompute) or 2 (swap)",
                              o->preempt_mode);
    e->preempt_mode = o->preempt_mode == LLMLAB_PREEMPT_SWAP ? LLMLAB_PREEMPT_SWAP : LLMLAB_PREEMPT_RECOMPUTE;
    if (o->swap_tokens < 0 || o->swap_bytes < 0 || o->swap_bytes != o->swap_bytes)
        return llmlab_err_set(err, LLMLAB_EINVAL, "engine option swap_space: %d tokens / %g bytes must be >= 0",
                              o->swap_tokens, o->swap_bytes);
    e->swap_tokens = o->swap_tokens;
    e->swap_bytes = o->swap_bytes;
    serve_size_swap(e);
    if (e->preempt_mode == LLMLAB_PREEMPT_SWAP && e->swap.total == 0)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "engine option preempt_mode = swap needs host swap space of at least one KV block "
                              "(swap_space = %d tokens / %g bytes; a block is %d tokens, %zu bytes)",
                              o->swap_tokens, o->swap_bytes, llmlab_ctx_kv(e->ctx)->o.block_size,
                              e->swap.block_bytes);
    return LLMLAB_OK;
}

llmlab_status llmlab_parse_swap_space(const char *text, int *tokens, double *bytes, llmlab_err *err) {
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", -1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
                 {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    char *end = NULL;
    double v = text ? strtod(text, &end) : -1;
    while (end && *end == ' ') end++;
    *tokens = 0;
    *bytes = 0;
    for (size_t u = 0; end && end != text && v >= 0 && u < sizeof units / sizeof units[0]; u++) {
        if (strcmp(end, units[u].unit)) continue;
        if (units[u].scale < 0) { /* a plain number: tokens */
            if (v > 2147483647.0 || v != (double)(long long)v) break;
            *tokens = (int)v;
        } else
            *bytes = v * units[u].scale;
        return LLMLAB_OK;
    }
    return llmlab_err_set(err, LLMLAB_EINVAL, "swap_space = '%s': a whole number of tokens, or bytes with a unit "
                          "(B, KB, MB, GB, KiB, MiB, GiB)", text ? text : "(null)");
}

llmlab_status llmlab_parse_preempt_mode(const char *text, int *mode, llmlab_err *err) {
    if (text && !strcmp(text, "recompute")) *mode = LLMLAB_PREEMPT_RECOMPUTE;
    else if (text && !strcmp(text, "swap")) *mode = LLMLAB_PREEMPT_SWAP;
    else
        return llmlab_err_set(err, LLMLAB_EINVAL, "preempt_mode = '%s': \"recompute\" or \"swap\"",
                              text ? text : "(null)");
    return LLMLAB_OK;
}

void serve_size_swap(llmlab_engine *e) {
    const llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    llmlab_kv_swap_init(&e->swap, kv, 0); /* block bytes of the pool as it is now */
    double blocks = (double)(e->swap_tokens / kv->o.block_size) + e->swap_bytes / (double)e->swap.block_bytes;
    e->swap.total = blocks > 1e9 ? 1000000000 : (int)blocks;
}

/* ---- a request's cache ------------------------------------------------------------------- */

int serve_computed(const llmlab_seq *s) {
    if (s->state == LLMLAB_REQ_SWAPPED) return s->swapped.n_committed + s->swapped.shift;
    return s->kv < 0 ? 0 : llmlab_kv_tokens(llmlab_ctx_kv(s->e->ctx), s->kv);
}

int serve_target(const llmlab_seq *s) { return s->generated > 0 ? s->len - 1 : s->prompt_len; }

int serve_held(const llmlab_seq *s) {
    if (s->state == LLMLAB_REQ_SWAPPED) return s->swapped.n_held;
    return s->kv < 0 ? 0 : llmlab_kv_seq_blocks(llmlab_ctx_kv(s->e->ctx), s->kv);
}

/* Tokens s forwards this step when scheduled for `plan` tokens. */
static int step_tokens(const llmlab_seq *s, int plan) {
    int left = serve_target(s) - serve_computed(s);
    return left > 0 ? (plan < left ? plan : left) : serve_decode_width(s->e);
}

/* Blocks s takes from the free list this step to append `tokens` (a swap-in
 * counts the blocks it brings back). */
static int step_blocks(const llmlab_seq *s, int tokens) {
    const llmlab_kv *kv = llmlab_ctx_kv(s->e->ctx);
    int bs = kv->o.block_size;
    if (s->state == LLMLAB_REQ_SWAPPED) {
        const llmlab_kv_swapped *h = &s->swapped;
        int refill = h->len % bs != 0 && h->table[h->n_blocks - 1] < 0;
        return h->n_held + (h->len + tokens + bs - 1) / bs - h->n_blocks + refill;
    }
    if (s->kv < 0) return (tokens + bs - 1) / bs;
    return llmlab_kv_append_blocks(kv, s->kv, tokens);
}

void serve_release(llmlab_engine *e, llmlab_seq *s) {
    if (s->state == LLMLAB_REQ_FINISHED && !s->cancelled && s->kv >= 0 && e->on_finish)
        e->on_finish(e->on_finish_user, e, s->id, s->kv);
    if (s->dec_begun) {
        if (!s->forced) ((const llmlab_decoding_ops *)e->dec.d->ops)->seq_end(e->dec.self, s);
        s->dec_begun = 0;
    }
    if (s->att_begun) {
        ((const llmlab_attention_ops *)e->att.d->ops)->seq_end(e->att.self, s);
        s->att_begun = 0;
    }
    if (s->kv >= 0) {
        llmlab_kv_free_seq(llmlab_ctx_kv(e->ctx), s->kv);
        llmlab_aux_release_seq(e, s->kv);
        e->kv_busy[s->kv] = 0;
        s->kv = -1;
    }
}

/* A KV sequence id for s (admission or swap-in). */
static llmlab_status take_kv_seq(llmlab_engine *e, llmlab_seq *s, llmlab_err *err) {
    for (int k = 0; k < e->max_seqs; k++)
        if (!e->kv_busy[k]) {
            e->kv_busy[k] = 1;
            s->kv = k;
            return LLMLAB_OK;
        }
    return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' ran more than max_seqs = %d sequences at once",
                          e->sched.d->name, e->max_seqs);
}

/* ---- the view ----------------------------------------------------------------------------- */

static void view_entry(serve_run *R, int i, llmlab_seq *s) {
    R->vseq[i] = s;
    R->vb.vpos[s->index] = i;
    R->vb.vreq[i] = (llmlab_sched_req){s->id, s->state, s->arrival_s, s->prompt_len, serve_computed(s),
                                    serve_target(s), s->generated, s->max_new, s->priority};
    R->vb.held[i] = serve_held(s);
    R->vb.pred[i] = s->max_new;
}

/* Keeps s's view entry in step with a state change made while carrying out a plan
 * (pick_victim sees the pool as it is). */
static void view_sync(serve_run *R, llmlab_seq *s) {
    int i = R->vb.vpos[s->index];
    if (i < 0 || i >= R->n_view || R->vseq[i] != s) return;
    R->vb.vreq[i].state = s->state;
    R->vb.vreq[i].computed = serve_computed(s);
    R->vb.held[i] = serve_held(s);
    R->view.kv_blocks_free = llmlab_ctx_kv(R->e->ctx)->n_free;
    R->view.swap_blocks_free = R->e->swap.total - R->e->swap.used;
}

void serve_build_view(serve_run *R, double now) {
    llmlab_engine *e = R->e;
    if (R->full_view) {
        R->n_view = R->n;
        for (int i = 0; i < R->n; i++) view_entry(R, i, &R->seqs[i]);
    } else {
        R->n_view = R->n_live;
        for (int k = 0; k < R->n_live; k++) view_entry(R, k, &R->seqs[R->vb.live[k]]);
    }
    const llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    R->view = (llmlab_sched_view){sizeof R->view, now, R->n_view, R->vb.vreq, kv->n_free, kv->o.n_blocks,
                                  kv->o.block_size, e->token_budget, e->max_seqs, serve_decode_width(e),
                                  (int)(e->watermark * kv->o.n_blocks), e->swap.total - e->swap.used,
                                  e->swap.total, R->vb.held, R->vb.pred, e->preempt_mode};
}

/* ---- preemption ------------------------------------------------------------------------------ */

/* Swaps s out; 0 when the swap space lacks room (nothing changed). */
static int swap_out(serve_run *R, llmlab_seq *s, llmlab_status *st, llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    int held = llmlab_kv_seq_blocks(kv, s->kv);
    if (held > e->swap.total - e->swap.used) return 0;
    /* The decoding plugin forgets the sequence (its draft caches are dropped and
     * rebuilt later from the tokens); the attention plugin keeps its state, as the
     * cache comes back exactly as it was. */
    if (s->dec_begun) {
        if (!s->forced) ((const llmlab_decoding_ops *)e->dec.d->ops)->seq_end(e->dec.self, s);
        s->dec_begun = 0;
    }
    llmlab_aux_release_seq(e, s->kv);
    if ((*st = llmlab_kv_swap_out(kv, &e->swap, s->kv, &s->swapped, err))) return 1;
    e->kv_busy[s->kv] = 0;
    s->kv = -1;
    s->state = LLMLAB_REQ_SWAPPED;
    s->swaps++;
    R->step_swap_out += held;
    R->swap_bytes += (double)s->swapped.bytes;
    return 1;
}

llmlab_status serve_preempt(serve_run *R, llmlab_seq *s, int mode, llmlab_err *err) {
    if (s->state != LLMLAB_REQ_RUNNING) return LLMLAB_OK;
    s->preemptions++;
    R->step_preempted++;
    llmlab_status st = LLMLAB_OK;
    if (mode == LLMLAB_PREEMPT_SWAP && swap_out(R, s, &st, err)) {
        view_sync(R, s);
        return st;
    }
    /* Recompute (or swap space full): the tokens stay, the cache goes. */
    int computed = serve_computed(s);
    if (computed > s->recompute_upto) s->recompute_upto = computed;
    serve_release(R->e, s);
    s->state = LLMLAB_REQ_WAITING;
    view_sync(R, s);
    return LLMLAB_OK;
}

llmlab_status serve_plan_preempts(serve_run *R, llmlab_err *err) {
    for (int i = 0; i < R->n_view; i++) {
        if (!R->vb.preempt[i]) continue;
        if (R->vb.preempt[i] > LLMLAB_PREEMPT_SWAP)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s': preempt[%d] = %d for request %d (1 = "
                                  "recompute, 2 = swap)", R->e->sched.d->name, i, R->vb.preempt[i], R->vseq[i]->id);
        if (R->vseq[i]->state != LLMLAB_REQ_RUNNING) continue;
        llmlab_status st = serve_preempt(R, R->vseq[i], R->vb.preempt[i], err);
        if (st) return st;
        R->vb.plan[i] = 0; /* a preempted request waits at least one iteration */
    }
    return LLMLAB_OK;
}

/* The victim when blocks run out: the plugin's pick_victim (ABI 1.3), else the
 * running request with the lowest priority (largest value), latest arrival on
 * ties.  NULL when nothing runs. */
static llmlab_seq *pick_victim(serve_run *R, llmlab_err *err, llmlab_status *st) {
    llmlab_engine *e = R->e;
    const llmlab_sched_ops *o = sched_ops(e);
    if (!R->full_view && o->size >= offsetof(llmlab_sched_ops, pick_victim) + sizeof o->pick_victim &&
        o->pick_victim) {
        int i = o->pick_victim(e->sched.self, &R->view);
        if (i >= 0) {
            if (i < R->n_view && R->vseq[i]->state == LLMLAB_REQ_RUNNING) return R->vseq[i];
            *st = llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s': pick_victim returned %d, not the index "
                                 "of a running request (view of %d)", e->sched.d->name, i, R->n_view);
            return NULL;
        }
    }
    llmlab_seq *v = NULL;
    for (int k = 0; k < R->n_live; k++) { /* live order = arrival order: >= keeps the latest */
        llmlab_seq *s = &R->seqs[R->vb.live[k]];
        if (s->state == LLMLAB_REQ_RUNNING && (!v || s->priority >= v->priority)) v = s;
    }
    return v;
}

/* ---- fitting a plan into the pool ---------------------------------------------------------- */

static int is_admission(const llmlab_seq *s) {
    return s->state == LLMLAB_REQ_WAITING || s->state == LLMLAB_REQ_SWAPPED;
}

/* Per scheduled entry: tokens, blocks; checks the token budget and that the
 * request could fit alone.  Sums blocks of running requests and admissions. */
static llmlab_status count_plan(serve_run *R, int *need_run, int *need_adm, llmlab_err *err) {
    llmlab_engine *e = R->e;
    const llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    int total = 0;
    *need_run = *need_adm = 0;
    for (int i = 0; i < R->n_view; i++) {
        llmlab_seq *s = R->vseq[i];
        if (R->vb.plan[i] <= 0 || s->state == LLMLAB_REQ_FINISHED || s->state == LLMLAB_REQ_FUTURE) {
            R->vb.plan[i] = 0;
            continue;
        }
        int tokens = step_tokens(s, R->vb.plan[i]);
        if ((total += tokens) > e->token_budget)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sched plugin '%s' planned more than the token budget %d (a "
                                  "decoding sequence counts %d tokens)", e->sched.d->name, e->token_budget,
                                  serve_decode_width(e));
        R->vb.need[i] = step_blocks(s, tokens);
        int after = R->vb.need[i] + (s->state == LLMLAB_REQ_RUNNING ? serve_held(s) : 0);
        if (after > kv->o.n_blocks)
            return llmlab_err_set(err, LLMLAB_ENOKV,
                                  "request %d cannot fit in the KV cache even alone: with this step's %d tokens it "
                                  "needs %d blocks (%d tokens cached), the pool has %d blocks of %d tokens; raise "
                                  "kv_tokens or shorten the request", s->id, tokens, after, serve_computed(s),
                                  kv->o.n_blocks, kv->o.block_size);
        if (is_admission(s)) *need_adm += R->vb.need[i];
        else *need_run += R->vb.need[i];
    }
    return LLMLAB_OK;
}

/* Admissions and swap-ins that do not fit are dropped, latest arrival first, so
 * those that stay are the earliest (no queue jumping).  They must also leave the
 * watermark free, unless nothing runs (a request larger than pool - watermark
 * could never start otherwise). */
static void drop_admissions(serve_run *R, int need_run, int *need_adm) {
    llmlab_engine *e = R->e;
    const llmlab_kv *kv = llmlab_ctx_kv(e->ctx);
    int running = 0, wm = R->view.watermark_blocks;
    for (int k = 0; k < R->n_live && !running; k++) running = R->seqs[R->vb.live[k]].state == LLMLAB_REQ_RUNNING;
    for (int i = R->n_view - 1; i >= 0 && *need_adm > 0; i--) {
        if (R->vb.plan[i] <= 0 || !is_admission(R->vseq[i])) continue;
        int left = kv->n_free - need_run - *need_adm;
        if (left >= 0 && (left >= wm || !running)) break;
        *need_adm -= R->vb.need[i];
        R->vb.plan[i] = 0;
    }
}

static llmlab_status admit(serve_run *R, llmlab_seq *s, double now, llmlab_err *err) {
    llmlab_engine *e = R->e;
    llmlab_status st = take_kv_seq(e, s, err);
    if (st) return st;
    if (s->state == LLMLAB_REQ_SWAPPED) {
        int held = s->swapped.n_held;
        double bytes = (double)s->swapped.bytes;
        if ((st = llmlab_kv_swap_in(llmlab_ctx_kv(e->ctx), &e->swap, &s->swapped, s->kv, err))) return st;
        R->step_swap_in += held;
        R->swap_bytes += bytes;
    }
    s->state = LLMLAB_REQ_RUNNING;
    if (s->admit_s < 0) s->admit_s = now;
    return LLMLAB_OK;
}

llmlab_status serve_fit_plan(serve_run *R, double now, llmlab_err *err) {
    llmlab_kv *kv = llmlab_ctx_kv(R->e->ctx);
    int need_run, need_adm;
    llmlab_status st = count_plan(R, &need_run, &need_adm, err);
    if (st) return st;
    drop_admissions(R, need_run, &need_adm);
    while (need_run > kv->n_free) { /* out of blocks: preempt, then retry */
        R->view.kv_blocks_free = kv->n_free;
        llmlab_seq *v = pick_victim(R, err, &st);
        if (st) return st;
        if (!v)
            return llmlab_err_set(err, LLMLAB_ENOKV, "KV cache: %d blocks needed, %d free and nothing left to "
                                  "preempt", need_run, kv->n_free);
        int i = R->vb.vpos[v->index];
        int scheduled = i >= 0 && i < R->n_view && R->vseq[i] == v && R->vb.plan[i] > 0;
        if ((st = serve_preempt(R, v, R->e->preempt_mode, err))) return st;
        if (scheduled) {
            need_run -= R->vb.need[i];
            R->vb.plan[i] = 0;
        }
    }
    for (int i = 0; i < R->n_view && !st; i++)
        if (R->vb.plan[i] > 0 && is_admission(R->vseq[i])) st = admit(R, R->vseq[i], now, err);
    return st;
}
