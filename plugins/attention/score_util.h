/* score_util.h - shared by the score-eviction attention plugins (h2o, snapkv,
 * tova): error messages, budgets from ratios, and a per-sequence tracker that
 * counts the tokens evicted each step (metric "evicted", averaged over lanes) and
 * checks that no lane keeps more than its budget.
 *
 * Header-only (static inline): each plugin includes it. */
#ifndef LLMLAB_PLUGINS_ATTENTION_SCORE_UTIL_H
#define LLMLAB_PLUGINS_ATTENTION_SCORE_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include "llmlab/plugin.h"
#include "plugins/plugin_util.h"

/* A token budget: `absolute` when > 0, else floor(ratio * prompt_len), at least
 * `at_least`. */
static inline int llmlab_att_budget(int absolute, double ratio, int prompt_len, int at_least) {
    int b = absolute > 0 ? absolute : (int)(ratio * (double)prompt_len);
    return b < at_least ? at_least : b;
}

/* Per-sequence record: lane-slots evicted so far (summed over lanes). */
typedef struct llmlab_att_seq {
    const llmlab_seq *s;
    long long evicted;
    struct llmlab_att_seq *next;
} llmlab_att_seq;

typedef struct {
    const llmlab_host *h;
    int lanes;
    int32_t *pos;        /* [pos_cap] scratch for seq_kv_lane */
    int pos_cap;
    llmlab_att_seq *seqs; /* live sequences (a list: batches are small) */
} llmlab_att_track;

static inline void llmlab_att_track_init(llmlab_att_track *t, const llmlab_host *h, const llmlab_engine *e) {
    t->h = h;
    t->lanes = h->kv_lanes(e);
    t->pos = NULL;
    t->pos_cap = 0;
    t->seqs = NULL;
}

/* The start of a score plugin's create(): the tracker, and the attention mass its
 * rule ranks by.  On failure the caller frees its own state. */
static inline llmlab_status llmlab_att_track_start(llmlab_att_track *t, const llmlab_host *h, llmlab_engine *e,
                                                   llmlab_err *err) {
    llmlab_att_track_init(t, h, e);
    return h->engine_want_mass(e, 0, err);
}

static inline void llmlab_att_track_free(llmlab_att_track *t) {
    while (t->seqs) {
        llmlab_att_seq *q = t->seqs;
        t->seqs = q->next;
        t->h->free(q);
    }
    t->h->free(t->pos);
    t->pos = NULL;
    t->pos_cap = 0;
}

/* A scratch of at least n int32 (NULL when out of memory). */
static inline int32_t *llmlab_att_scratch(llmlab_att_track *t, int n) {
    if (n <= t->pos_cap) return t->pos;
    int cap = t->pos_cap ? t->pos_cap : 64;
    while (cap < n) cap *= 2;
    int32_t *p = t->h->alloc((size_t)cap * sizeof *p);
    if (!p) return NULL;
    t->h->free(t->pos);
    t->pos = p;
    t->pos_cap = cap;
    return p;
}

static inline void llmlab_att_track_end(llmlab_att_track *t, const llmlab_seq *s) {
    for (llmlab_att_seq **pp = &t->seqs; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            llmlab_att_seq *q = *pp;
            *pp = q->next;
            t->h->free(q);
            return;
        }
}

/* Counts s's valid slots per lane; adds the tokens evicted since the last call
 * (lane-slots / lanes) to metric "evicted"; with capacity > 0, fails when a lane
 * keeps more than capacity (the engine's rule must have held it there). */
static inline llmlab_status llmlab_att_track_step(llmlab_att_track *t, llmlab_seq *s, int capacity, const char *who,
                                                  llmlab_err *err) {
    const llmlab_host *h = t->h;
    int tokens = h->seq_kv_len(s);
    if (tokens <= 0) return LLMLAB_OK; /* no cache (released) */
    llmlab_att_seq *q = t->seqs;
    while (q && q->s != s) q = q->next;
    if (!q) {
        if (!(q = h->alloc(sizeof *q))) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "%s: out of memory", who);
        q->s = s;
        q->next = t->seqs;
        t->seqs = q;
    }
    int32_t *pos = llmlab_att_scratch(t, tokens);
    if (!pos) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "%s: out of memory for %d positions", who, tokens);
    long long valid = 0;
    for (int lane = 0; lane < t->lanes; lane++) {
        int n = h->seq_kv_lane(s, lane, pos, NULL, NULL, NULL), c = 0;
        for (int i = 0; i < n; i++) c += pos[i] >= 0;
        if (capacity > 0 && c > capacity)
            return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                                   "%s: lane %d of sequence %d keeps %d tokens, over its budget of %d", who, lane,
                                   h->seq_id(s), c, capacity);
        valid += c;
    }
    long long evicted = (long long)tokens * t->lanes - valid;
    if (evicted != q->evicted && t->lanes > 0)
        h->metric_add(s, "evicted", (double)(evicted - q->evicted) / (double)t->lanes);
    q->evicted = evicted;
    return LLMLAB_OK;
}

#endif
