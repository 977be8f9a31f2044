/* engine_attn.c - what the host table gives attention policies (ABI 1.2):
 * structured visibility, attention-mass accumulators, per-lane reads and
 * evictions, score-eviction rules, and the bookkeeping that keeps speculative
 * decoding exact under eviction.
 *
 * Committing decode rows.  A decode row's attention probabilities wait in the
 * forward's per-row buffers (LLMLAB_MASS_ROW) until the decoding plugin keeps the
 * row; then, row by row in chain order, the engine adds them to the lane
 * accumulators and applies the sequence's eviction rule, exactly as if the rows
 * had come one step at a time.  The attention kernel simulated the same choices
 * while it ran the chain, so a later draft never saw a key an earlier one evicted.
 * Rejected rows are never added. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "error.h"
#include "generate.h"

static llmlab_kv *kv_of(const llmlab_seq *s) { return llmlab_ctx_kv(s->e->ctx); }

llmlab_status llmlab_engine_set_pattern(llmlab_engine *e, const llmlab_attn_pattern *p, llmlab_err *err) {
    if (p && p->size < sizeof(llmlab_attn_pattern))
        return llmlab_err_set(err, LLMLAB_EINVAL, "attention pattern: struct of %u bytes, expected %zu", p->size,
                              sizeof(llmlab_attn_pattern));
    return llmlab_ctx_set_pattern(e->ctx, p, err);
}

llmlab_status llmlab_engine_want_mass(llmlab_engine *e, int obs_window, llmlab_err *err) {
    if (obs_window < 0) return llmlab_err_set(err, LLMLAB_EINVAL, "attention mass: negative observation window");
    llmlab_status st = llmlab_ctx_enable_mass(e->ctx, err);
    if (st) return st;
    e->mass_on = 1;
    if (obs_window > e->obs_window) e->obs_window = obs_window;
    return LLMLAB_OK;
}

int llmlab_engine_kv_lanes(const llmlab_engine *e) { return e->m->cfg.n_layers * e->m->cfg.n_kv_heads; }
int llmlab_engine_kv_heads(const llmlab_engine *e) { return e->m->cfg.n_kv_heads; }

/* Which accumulator a row of s at position pos feeds (see forward.h). */
int llmlab_engine_mass_mode(const llmlab_seq *s, int32_t pos) {
    const llmlab_engine *e = s->e;
    int target = s->generated > 0 ? s->len - 1 : s->prompt_len;
    if (llmlab_kv_tokens(kv_of(s), s->kv) >= target) return LLMLAB_MASS_ROW; /* decoding: may be rejected */
    return e->obs_window > 0 && pos < s->prompt_len && pos >= s->prompt_len - e->obs_window ? LLMLAB_MASS_OBS
                                                                                           : LLMLAB_MASS_ACC;
}

int llmlab_engine_seq_lane(const llmlab_seq *s, int lane, int32_t *pos, float *mass, float *obs, float *last) {
    if (s->kv < 0) return 0;
    const llmlab_kv *kv = kv_of(s);
    int n = llmlab_kv_committed(kv, s->kv);
    if (lane < 0 || lane >= kv->n_lanes) return 0;
    for (int slot = 0; slot < n; slot++) {
        long m = llmlab_kv_meta(kv, s->kv, slot, lane);
        int ok = m >= 0 && kv->slot_valid[m];
        if (pos) pos[slot] = ok ? kv->slot_pos[m] : -1;
        if (mass) mass[slot] = ok && kv->mass ? kv->mass[m] : 0.0f;
        if (obs) obs[slot] = ok && kv->obs ? kv->obs[m] : 0.0f;
        if (last) last[slot] = ok && kv->last ? kv->last[m] : 0.0f;
    }
    return n;
}

llmlab_status llmlab_engine_seq_evict_lane(llmlab_seq *s, int lane, const int *slots, int n, llmlab_err *err) {
    return llmlab_kv_evict_lane(kv_of(s), s->kv, lane, slots, n, err);
}

llmlab_status llmlab_engine_seq_set_rule(llmlab_seq *s, const llmlab_evict_rule *r, llmlab_err *err) {
    if (r && r->size < sizeof(llmlab_evict_rule))
        return llmlab_err_set(err, LLMLAB_EINVAL, "eviction rule: struct of %u bytes, expected %zu", r->size,
                              sizeof(llmlab_evict_rule));
    if (r && r->capacity > 0) {
        if (!s->e->mass_on)
            return llmlab_err_set(err, LLMLAB_EINVAL, "eviction rule: call engine_want_mass in create first");
        if (r->score != LLMLAB_SCORE_MASS && r->score != LLMLAB_SCORE_LAST)
            return llmlab_err_set(err, LLMLAB_EINVAL, "eviction rule: unknown score %d", r->score);
        if (r->recent < 0 || r->sinks < 0 || r->recent + r->sinks > r->capacity)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "eviction rule: capacity %d must hold the %d recent and %d sink tokens it protects",
                                  r->capacity, r->recent, r->sinks);
    }
    llmlab_kv_set_rule(kv_of(s), s->kv, r);
    return LLMLAB_OK;
}

llmlab_status llmlab_engine_seq_enforce(llmlab_seq *s, llmlab_err *err) {
    llmlab_kv *kv = kv_of(s);
    int tokens = llmlab_kv_tokens(kv, s->kv);
    return llmlab_kv_enforce(kv, s->kv, llmlab_kv_committed(kv, s->kv), tokens - 1, err) < 0 ? LLMLAB_ENOMEM
                                                                                            : LLMLAB_OK;
}

/* Batch index of the token of s written to row `row` in the last forward, or -1. */
static int batch_index_of(const llmlab_step *st, const llmlab_seq *s, int row) {
    for (int i = 0; st && st->out && i < st->b->n; i++)
        if (st->owner[i] == s && st->out->slot[i] == row) return i;
    return -1;
}

/* Adds kept row k's probabilities (forward-time slots remapped to where keep
 * moved them) to every lane, then applies the rule with that row the newest. */
static llmlab_status commit_row(llmlab_seq *s, const int *rows, int k, int c0, float *buf, llmlab_err *err) {
    llmlab_engine *e = s->e;
    llmlab_kv *kv = kv_of(s);
    int i = batch_index_of(e->step, s, rows[k]);
    if (i < 0) return LLMLAB_OK; /* not a row of the last forward: nothing to add */
    for (int lane = 0; lane < kv->n_lanes; lane++) {
        const float *val;
        int len = llmlab_ctx_row_mass(e->ctx, i, lane, &val);
        if (len == 0) continue;
        memcpy(buf, val, (size_t)(c0 < len ? c0 : len) * sizeof *buf);
        for (int t = 0; t <= k; t++) buf[c0 + t] = rows[t] < len ? val[rows[t]] : 0.0f;
        llmlab_kv_add_mass(kv, s->kv, lane, buf, c0 + k + 1, 0);
    }
    if (kv->seqs[s->kv].rule.capacity > 0 &&
        llmlab_kv_enforce(kv, s->kv, c0 + k + 1, e->step->b->pos[i], err) < 0)
        return LLMLAB_ENOMEM;
    return LLMLAB_OK;
}

/* seq_kv_keep: slots are numbered as step_slot gave them (provisional ones from
 * seq_kv_len); rows are what the cache uses. */
llmlab_status llmlab_engine_seq_keep(llmlab_seq *s, const int *slots, int n, llmlab_err *err) {
    llmlab_kv *kv = kv_of(s);
    int shift = kv->seqs[s->kv].shift, c0 = llmlab_kv_committed(kv, s->kv);
    int *rows = malloc((size_t)(n > 0 ? n : 1) * sizeof *rows);
    float *buf = s->e->mass_on ? malloc((size_t)(c0 + n + 1) * sizeof *buf) : NULL;
    if (!rows || (s->e->mass_on && !buf)) {
        free(rows), free(buf);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory keeping KV slots");
    }
    for (int k = 0; k < n; k++) rows[k] = slots[k] - shift;
    llmlab_status st = llmlab_kv_keep(kv, s->kv, rows, n, err);
    double t0 = llmlab_now();
    for (int k = 0; !st && buf && k < n; k++) st = commit_row(s, rows, k, c0, buf, err);
    if (buf) s->e->policy_s += llmlab_now() - t0;
    free(rows);
    free(buf);
    return st;
}

/* The attention plugin's after_step, then compaction of the holes its evictions
 * left when that frees blocks.  Timed with the commits: the policy's share of a step. */
llmlab_status llmlab_engine_after_step(llmlab_seq *s, llmlab_err *err) {
    llmlab_engine *e = s->e;
    const llmlab_attention_ops *att = e->att.d->ops;
    double t0 = llmlab_now();
    llmlab_status r = att->after_step(e->att.self, s, err);
    if (r) return llmlab_err_prefix(err, "attention plugin '%s': after_step", e->att.d->name);
    if (s->kv >= 0 && (r = llmlab_kv_compact(kv_of(s), s->kv, err))) return r;
    e->policy_s += llmlab_now() - t0;
    return LLMLAB_OK;
}

double llmlab_engine_policy_seconds(const llmlab_engine *e) { return e->policy_s; }
