/* test_attention_score.c - the score-eviction attention plugins: h2o, snapkv, tova.
 *
 *   a budget that holds the whole sequence changes nothing: greedy outputs and the
 *   final KV cache are dense's, bit for bit;
 *   h2o: every lane keeps exactly heavy + recent tokens after every step, never an
 *   evicted one of the recent window; what it evicts is, step by step, the rule's
 *   choice recomputed here from the cache's own scores (prompt time: the lowest
 *   accumulated mass outside the recent window; then one per decode token); keep
 *   sets differ between lanes with equal counts; blocks go back to the pool and the
 *   cache holds fewer bytes than dense's, its size bounded while dense's grows;
 *   speculative decoding (draft "self", a derived draft with rejections, self-
 *   speculative with a skipped layer, prompt lookup, and an oracle draft that
 *   proposes the autoregressive tokens, so every row of 7-token chains is
 *   accepted) under h2o and tova gives the outputs and the per-lane KV cache of
 *   autoregressive decoding exactly, with evictions inside the chains and several
 *   sequences per batch;
 *   tova: the same step-by-step check with the newest query's attention and sinks;
 *   snapkv: per lane, the kept prompt positions are the window plus the top pooled
 *   votes recomputed here from the obs scores read back before the eviction, and
 *   the pooling changes the choice (so a missing or wrong pooling would fail);
 *   bad parameters are refused with messages naming them.
 *
 * The checks run in "probe" plugins: each wraps a built-in (same parameters) and
 * inspects the cache before and after the built-in's seq_begin and after every
 * step. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/derive.h"
#include "core/engine.h"
#include "core/engine_internal.h"
#include "plugins/builtins.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/kv_snapshot.h"

enum { MAXREQ = 16, MAXLANES = 16, MAXPOS = 512, BLOCK = 8 };

static llmlab_registry *g_reg;

/* ---- probes: built-ins wrapped with checks ------------------------------------------ */

enum { P_H2O, P_SNAPKV, P_TOVA, P_N };
static const char *const probe_names[P_N] = {"probe_h2o", "probe_snapkv", "probe_tova"};
static const llmlab_plugin_entry_fn probe_inner[P_N] = {llmlab_builtin_h2o, llmlab_builtin_snapkv,
                                                        llmlab_builtin_tova};
static llmlab_plugin_desc probe_desc[P_N];
static llmlab_attention_ops probe_ops[P_N];

typedef struct {
    int kind;
    const llmlab_attention_ops *in;
    void *self;
    const llmlab_host *h;
    llmlab_engine *e;
    /* h2o / tova rule, as this test understands the parameters */
    int heavy, recent, sinks, budget, score;
    double heavy_ratio, recent_ratio;
    /* snapkv */
    int window, kernel;
} probe;

/* What the probes saw, all sequences of a run. */
static struct {
    int strict;            /* one token per step: check each eviction is the rule's choice */
    int begins, steps, evictions_seen, evictions_checked;
    int chain_evictions;   /* lane-steps that committed >= 2 tokens and evicted >= 2 */
    int lanes_checked, pool_matters; /* snapkv */
    int capacity[MAXREQ];  /* per request id */
    int32_t prev_newest[MAXREQ];
    uint8_t prev[MAXREQ][MAXLANES][MAXPOS]; /* valid positions per lane at the last check */
} g_pr;

static void probe_reset(int strict) {
    memset(&g_pr, 0, sizeof g_pr);
    g_pr.strict = strict;
}

static llmlab_status probe_create(int kind, void **self, const llmlab_host *h, llmlab_engine *e,
                                  const llmlab_params *p, llmlab_err *err) {
    probe *q = calloc(1, sizeof *q);
    cr_assert_not_null(q);
    q->kind = kind;
    q->h = h;
    q->e = e;
    q->in = probe_inner[kind](LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR, h)->ops;
    if (kind == P_H2O) {
        q->heavy = (int)h->param_int(p, "heavy");
        q->recent = (int)h->param_int(p, "recent");
        q->heavy_ratio = h->param_float(p, "heavy_ratio");
        q->recent_ratio = h->param_float(p, "recent_ratio");
        q->score = LLMLAB_SCORE_MASS;
    } else if (kind == P_TOVA) {
        q->budget = (int)h->param_int(p, "budget");
        q->sinks = (int)h->param_int(p, "sinks");
        q->score = LLMLAB_SCORE_LAST;
    } else {
        q->window = (int)h->param_int(p, "window");
        q->kernel = (int)h->param_int(p, "kernel");
        q->budget = (int)h->param_int(p, "budget");
        cr_assert_gt(q->budget, 0, "the snapkv probe wants an absolute budget");
    }
    llmlab_status st = q->in->create(&q->self, h, e, p, err);
    if (st) {
        free(q);
        return st;
    }
    *self = q;
    return LLMLAB_OK;
}
static llmlab_status probe_create_h2o(void **s, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                      llmlab_err *err) {
    return probe_create(P_H2O, s, h, e, p, err);
}
static llmlab_status probe_create_snapkv(void **s, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                         llmlab_err *err) {
    return probe_create(P_SNAPKV, s, h, e, p, err);
}
static llmlab_status probe_create_tova(void **s, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                       llmlab_err *err) {
    return probe_create(P_TOVA, s, h, e, p, err);
}

static void probe_destroy(void *self) {
    probe *q = self;
    if (!q) return;
    q->in->destroy(q->self);
    free(q);
}

/* One lane of s as seq_kv_lane gives it. */
typedef struct {
    int n;
    int32_t pos[MAXPOS];
    float mass[MAXPOS], obs[MAXPOS], last[MAXPOS];
} lane_read;

static void read_lane(const probe *q, const llmlab_seq *s, int lane, lane_read *r) {
    cr_assert_leq(q->h->seq_kv_len(s), MAXPOS);
    r->n = q->h->seq_kv_lane(s, lane, r->pos, r->mass, r->obs, r->last);
}

static int is_protected(int32_t pos, int32_t newest, int recent, int sinks) {
    return pos < sinks || pos > newest - recent;
}

/* The rule's choice, computed one eviction at a time: while more than capacity
 * entries are kept, drop the unprotected one with the lowest score, the oldest on
 * ties.  keep[i] = 1 for the survivors. */
static void rule_reference(const lane_read *r, const float *score, int capacity, int recent, int sinks,
                           int32_t newest, uint8_t *keep) {
    int count = 0;
    for (int i = 0; i < r->n; i++) count += keep[i] = r->pos[i] >= 0;
    for (; count > capacity; count--) {
        int best = -1;
        for (int i = 0; i < r->n; i++) {
            if (!keep[i] || is_protected(r->pos[i], newest, recent, sinks)) continue;
            if (best < 0 || score[i] < score[best] || (score[i] == score[best] && r->pos[i] < r->pos[best])) best = i;
        }
        cr_assert_geq(best, 0, "rule reference: nothing evictable");
        keep[best] = 0;
    }
}

/* SnapKV's choice recomputed: votes of the pre-window positions, summed over a
 * centred window of `kernel` (zero outside [0, P)), then the `keep` best (higher
 * sum, then older) by repeated selection.  pooled = 0: no pooling (kernel 1). */
static void snapkv_reference(const lane_read *r, int P, int kernel, int keep, int pooled, uint8_t *kept_pos) {
    static float votes[MAXPOS];
    static double sum[MAXPOS];
    static uint8_t have[MAXPOS];
    memset(votes, 0, sizeof votes);
    memset(have, 0, sizeof have);
    for (int i = 0; i < r->n; i++)
        if (r->pos[i] >= 0 && r->pos[i] < P) votes[r->pos[i]] = r->obs[i], have[r->pos[i]] = 1;
    int half = pooled ? kernel / 2 : 0;
    for (int p = 0; p < P; p++) {
        sum[p] = 0.0;
        for (int d = -half; d <= half; d++)
            if (p + d >= 0 && p + d < P) sum[p] += (double)votes[p + d];
    }
    memset(kept_pos, 0, MAXPOS);
    for (int k = 0; k < keep; k++) {
        int best = -1;
        for (int p = 0; p < P; p++)
            if (have[p] && !kept_pos[p] && (best < 0 || sum[p] > sum[best])) best = p; /* ascending p: older wins ties */
        if (best < 0) break;
        kept_pos[best] = 1;
    }
}

static int h2o_part(int absolute, double ratio, int L) {
    int b = absolute > 0 ? absolute : (int)(ratio * (double)L);
    return b < 1 ? 1 : b;
}

static llmlab_status probe_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    probe *q = self;
    const llmlab_host *h = q->h;
    int lanes = h->kv_lanes(q->e), req = h->seq_id(s), L = h->seq_prompt_len(s);
    int32_t newest = h->seq_kv_len(s) - 1;
    cr_assert_leq(lanes, MAXLANES);
    cr_assert(req >= 0 && req < MAXREQ);
    static lane_read before[MAXLANES];
    for (int lane = 0; lane < lanes; lane++) read_lane(q, s, lane, &before[lane]);
    llmlab_status st = q->in->seq_begin(q->self, s, err);
    if (st) return st;
    g_pr.begins++;
    int capacity = 0, recent = 0, sinks = 0;
    if (q->kind == P_H2O) {
        recent = h2o_part(q->recent, q->recent_ratio, L);
        capacity = h2o_part(q->heavy, q->heavy_ratio, L) + recent;
    } else if (q->kind == P_TOVA) {
        capacity = q->budget;
        sinks = q->sinks;
    }
    g_pr.capacity[req] = capacity;
    for (int lane = 0; lane < lanes; lane++) {
        lane_read after;
        read_lane(q, s, lane, &after);
        cr_assert_eq(after.n, before[lane].n, "seq_begin does not compact");
        uint8_t keep[MAXPOS];
        if (q->kind == P_SNAPKV) {
            int budget = q->budget;
            if (L <= budget) {
                for (int i = 0; i < after.n; i++) keep[i] = before[lane].pos[i] >= 0;
            } else {
                uint8_t top[MAXPOS], raw[MAXPOS];
                int P = L - q->window;
                snapkv_reference(&before[lane], P, q->kernel, budget - q->window, 1, top);
                snapkv_reference(&before[lane], P, q->kernel, budget - q->window, 0, raw);
                g_pr.lanes_checked++;
                g_pr.pool_matters += memcmp(top, raw, MAXPOS) != 0;
                for (int i = 0; i < after.n; i++) {
                    int32_t p = before[lane].pos[i];
                    keep[i] = p >= 0 && (p >= P || top[p]);
                }
            }
        } else {
            const float *score = q->score == LLMLAB_SCORE_LAST ? before[lane].last : before[lane].mass;
            rule_reference(&before[lane], score, capacity, recent, sinks, newest, keep);
        }
        int count = 0;
        for (int i = 0; i < after.n; i++) {
            cr_assert_eq(after.pos[i] >= 0, keep[i],
                         "%s, request %d, lane %d: position %d is %s after seq_begin; the reference %s it",
                         probe_names[q->kind], req, lane, before[lane].pos[i], after.pos[i] >= 0 ? "kept" : "evicted",
                         keep[i] ? "keeps" : "evicts");
            count += keep[i];
        }
        memset(g_pr.prev[req][lane], 0, MAXPOS);
        for (int i = 0; i < after.n; i++)
            if (after.pos[i] >= 0) g_pr.prev[req][lane][after.pos[i]] = 1;
        if (q->kind == P_SNAPKV && L > q->budget) cr_assert_eq(count, q->budget, "snapkv keeps the budget per lane");
        if (q->kind != P_SNAPKV && L > capacity) cr_assert_eq(count, capacity);
    }
    g_pr.prev_newest[req] = newest;
    return LLMLAB_OK;
}

static void probe_seq_end(void *self, llmlab_seq *s) {
    probe *q = self;
    q->in->seq_end(q->self, s);
}

/* After a step (before compaction): per lane, the positions lost since the last
 * check were unprotected when evicted and the count is min(capacity, tokens);
 * strict (one token per step): each lost position scored no higher than any
 * unprotected survivor (older on ties), read from the cache's own accumulators.
 * (The engine does not call after_step in a sequence's last step; on_finish
 * snapshots cover it.) */
static void step_check(probe *q, llmlab_seq *s) {
    const llmlab_host *h = q->h;
    llmlab_kv *kv = llmlab_engine_kv(q->e);
    int seq = s->kv, req = h->seq_id(s), lanes = h->kv_lanes(q->e), capacity = g_pr.capacity[req];
    int recent = q->kind == P_H2O ? h2o_part(q->recent, q->recent_ratio, h->seq_prompt_len(s)) : 0;
    int sinks = q->kind == P_TOVA ? q->sinks : 0;
    int committed = llmlab_kv_committed(kv, seq);
    int32_t newest = llmlab_kv_tokens(kv, seq) - 1, prev_newest = g_pr.prev_newest[req];
    cr_assert_lt(newest, MAXPOS);
    const float *score = q->score == LLMLAB_SCORE_LAST ? kv->last : kv->mass;
    for (int lane = 0; lane < lanes; lane++) {
        uint8_t cur[MAXPOS] = {0}, gone[MAXPOS] = {0};
        int count = 0, prev_count = 0, evicted = 0;
        for (int p = 0; p < MAXPOS; p++) prev_count += g_pr.prev[req][lane][p];
        for (int slot = 0; slot < committed; slot++) {
            long m = llmlab_kv_meta(kv, seq, slot, lane);
            if (m >= 0 && kv->slot_valid[m]) cur[kv->slot_pos[m]] = 1, count++;
        }
        int want = prev_count + (newest - prev_newest);
        if (want > capacity) want = capacity;
        cr_assert_eq(count, want, "%s, request %d, lane %d: %d tokens kept, want %d (capacity %d)",
                     probe_names[q->kind], req, lane, count, want, capacity);
        /* lost since the last check: kept then (or new this step), not kept now */
        for (int32_t p = 0; p <= newest; p++) {
            if (cur[p] || !(g_pr.prev[req][lane][p] || p > prev_newest)) continue;
            gone[p] = 1;
            evicted++;
            cr_assert(!is_protected(p, newest, recent, sinks),
                      "%s, request %d, lane %d: evicted position %d is protected (newest %d, recent %d, sinks %d)",
                      probe_names[q->kind], req, lane, p, newest, recent, sinks);
        }
        cr_assert_eq(evicted, prev_count + (newest - prev_newest) - count, "%s, request %d, lane %d: evictions",
                     probe_names[q->kind], req, lane);
        if (newest - prev_newest >= 2 && evicted >= 2) g_pr.chain_evictions++;
        /* strict: each lost position, where its block still holds it (a block left
         * with no valid slot went back to the pool), scored no higher than any
         * unprotected survivor */
        for (int slot = 0; g_pr.strict && slot < committed; slot++) {
            long m = llmlab_kv_meta(kv, seq, slot, lane);
            if (m < 0 || kv->slot_valid[m]) continue;
            int32_t p = kv->slot_pos[m];
            if (p < 0 || p > newest || !gone[p]) continue;
            gone[p] = 0; /* once */
            g_pr.evictions_checked++;
            for (int s2 = 0; s2 < committed; s2++) {
                long m2 = llmlab_kv_meta(kv, seq, s2, lane);
                if (m2 < 0 || !kv->slot_valid[m2] || is_protected(kv->slot_pos[m2], newest, recent, sinks)) continue;
                cr_assert(score[m] < score[m2] || (score[m] == score[m2] && p < kv->slot_pos[m2]),
                          "%s, request %d, lane %d: evicted position %d (score %.9g) while position %d (score %.9g) "
                          "stays",
                          probe_names[q->kind], req, lane, p, score[m], kv->slot_pos[m2], score[m2]);
            }
        }
        g_pr.evictions_seen += evicted;
        memcpy(g_pr.prev[req][lane], cur, MAXPOS);
    }
    g_pr.prev_newest[req] = newest;
}

static llmlab_status probe_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    probe *q = self;
    llmlab_status st = q->in->after_step(q->self, s, err);
    if (st) return st;
    g_pr.steps++;
    if (q->kind != P_SNAPKV) step_check(q, s);
    return LLMLAB_OK;
}

static const llmlab_plugin_desc *probe_entry_h2o(uint32_t a, uint32_t b, const llmlab_host *h) {
    return &probe_desc[P_H2O];
}
static const llmlab_plugin_desc *probe_entry_snapkv(uint32_t a, uint32_t b, const llmlab_host *h) {
    return &probe_desc[P_SNAPKV];
}
static const llmlab_plugin_desc *probe_entry_tova(uint32_t a, uint32_t b, const llmlab_host *h) {
    return &probe_desc[P_TOVA];
}

/* ---- an oracle draft: the autoregressive run's own tokens --------------------------
 * propose: the root and the next ORACLE_K tokens of the reference output (what
 * autoregressive decoding under the same policy produced); verify: greedy, accept
 * drafts while each is the target's argmax, then the argmax.  When speculative
 * decoding under eviction is exact, every draft is accepted: long chains with
 * evictions inside every one of them. */

enum { ORACLE_K = 6 };
static const llmlab_run_result *g_oracle_ref;
static const llmlab_host *g_oracle_h;

static const int32_t *oracle_tokens(int req, int *n) {
    for (int i = 0; i < g_oracle_ref->n_reqs; i++)
        if (g_oracle_ref->req_id[i] == req) {
            *n = g_oracle_ref->output_len[i];
            return g_oracle_ref->output[i];
        }
    cr_assert_fail("oracle: no reference for request %d", req);
    return NULL;
}

static llmlab_status oracle_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    g_oracle_h = h;
    h->engine_set_sampling(e, 0.0f, 0, 1.0f, 0.0f);
    *self = NULL;
    return LLMLAB_OK;
}
static void oracle_destroy(void *self) {}
static llmlab_status oracle_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void oracle_seq_end(void *self, llmlab_seq *s) {}
static int oracle_max_step_tokens(void *self) { return ORACLE_K + 1; }

static llmlab_status oracle_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = g_oracle_h;
    int len = H->seq_len(s), gen = len - H->seq_prompt_len(s), n_ref;
    const int32_t *ref = oracle_tokens(H->seq_id(s), &n_ref);
    int32_t pos = H->seq_kv_len(s);
    int prev = H->step_add(st, s, H->seq_tokens(s)[len - 1], pos, LLMLAB_ROW_LOGITS, -1);
    cr_assert_geq(prev, 0);
    for (int j = 1; j <= ORACLE_K && j < H->seq_remaining(s) && gen - 1 + j < n_ref; j++) {
        prev = H->step_add(st, s, ref[gen - 1 + j], pos + j, LLMLAB_ROW_LOGITS, prev);
        cr_assert_geq(prev, 0);
    }
    return LLMLAB_OK;
}

static llmlab_status oracle_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = g_oracle_h;
    int rows[ORACLE_K + 1024];
    int n = H->step_rows(st, s, rows, ORACLE_K + 1024);
    cr_assert(n > 0 && n <= ORACLE_K + 1024);
    llmlab_status r;
    if (H->step_slot(st, rows[0]) < H->seq_kv_len(s)) { /* the prompt's last row */
        int32_t tok = H->seq_sample(s, H->step_logits(st, rows[n - 1]));
        return H->seq_accept(s, &tok, 1, err);
    }
    int32_t toks[ORACLE_K + 1];
    int slots[ORACLE_K + 1], j = 0;
    const llmlab_step *cst = st;
    for (;;) {
        int32_t best = H->seq_sample(s, H->step_logits(cst, rows[j]));
        slots[j] = H->step_slot(cst, rows[j]);
        if (j + 1 < n) {
            int32_t pos_tok;
            int n_ref;
            const int32_t *ref = oracle_tokens(H->seq_id(s), &n_ref);
            pos_tok = ref[H->seq_len(s) - H->seq_prompt_len(s) - 1 + j + 1];
            if (pos_tok == best) {
                toks[j] = best;
                j++;
                continue;
            }
        }
        toks[j] = best;
        break;
    }
    H->metric_add(s, "drafted", n - 1);
    H->metric_add(s, "accepted", j);
    if ((r = H->seq_kv_keep(s, slots, j + 1, err))) return r;
    return H->seq_accept(s, toks, j + 1, err);
}

static const llmlab_decoding_ops oracle_ops = {sizeof(llmlab_decoding_ops), oracle_create, oracle_destroy,
                                               oracle_seq_begin, oracle_seq_end, oracle_propose, oracle_verify,
                                               NULL, oracle_max_step_tokens};
static const llmlab_plugin_desc oracle_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_DECODING, "oracle", "1.0", "drafts the reference output (test)", NULL, 0,
                            &oracle_ops);
static const llmlab_plugin_desc *oracle_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return &oracle_desc; }

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
    llmlab_plugin_create_fn creates[P_N] = {probe_create_h2o, probe_create_snapkv, probe_create_tova};
    llmlab_plugin_entry_fn entries[P_N] = {probe_entry_h2o, probe_entry_snapkv, probe_entry_tova};
    for (int k = 0; k < P_N; k++) {
        const llmlab_plugin_desc *in = probe_inner[k](LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR, NULL);
        probe_ops[k] = (llmlab_attention_ops){sizeof(llmlab_attention_ops), creates[k], probe_destroy,
                                              probe_seq_begin, probe_seq_end, probe_after_step};
        probe_desc[k] = *in;
        probe_desc[k].name = probe_names[k];
        probe_desc[k].ops = &probe_ops[k];
        cr_assert_eq(llmlab_registry_add(g_reg, entries[k], "test", &err), LLMLAB_OK, "%s", err.msg);
    }
    cr_assert_eq(llmlab_registry_add(g_reg, oracle_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
}
static void teardown(void) { llmlab_registry_free(g_reg); }

TestSuite(attention_score, .init = setup, .fini = teardown);

/* ---- runs ----------------------------------------------------------------------------- */

typedef struct {
    const char *attention; /* NULL = dense */
    const char *const *att;
    int n_att;
    const char *decoding; /* NULL = autoregressive */
    const char *const *dec;
    int n_dec;
    int max_batch; /* 0 = 4 */
    uint64_t seed;
    llmlab_finish_fn on_finish;
    void *user;
} as_opts;

static void to_values(llmlab_param_value *v, char (*keys)[64], const char *const *kv, int n) {
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        cr_assert(eq, "'%s' is not key=value", kv[i]);
        snprintf(keys[i], 64, "%.*s", (int)(eq - kv[i]), kv[i]);
        llmlab_param_value_from_text(&v[i], keys[i], eq + 1);
    }
}

static llmlab_status as_engine(llmlab_engine **e, const llmlab_model *m, const as_opts *o, llmlab_err *err) {
    llmlab_param_value att[8], dec[8], sched[1];
    char akeys[8][64], dkeys[8][64], mb[16];
    cr_assert(o->n_att <= 8 && o->n_dec <= 8);
    to_values(att, akeys, o->att, o->n_att);
    to_values(dec, dkeys, o->dec, o->n_dec);
    snprintf(mb, sizeof mb, "%d", o->max_batch > 0 ? o->max_batch : 4);
    llmlab_param_value_from_text(&sched[0], "max_batch", mb);
    llmlab_engine_opts eo = {.registry = g_reg,
                             .decoding = {o->decoding, dec, o->n_dec},
                             .attention = {o->attention, att, o->n_att},
                             .sched = {"continuous", sched, 1},
                             .seed = o->seed,
                             .n_threads = 2,
                             .kv_tokens = 4096,
                             .kv_block_size = BLOCK,
                             .max_seqs = MAXREQ,
                             .token_budget = 256,
                             .on_finish = o->on_finish,
                             .on_finish_user = o->user};
    return llmlab_engine_create(e, m, &eo, err);
}

/* Runs the requests; *blocks_after (optional) = KV blocks in use once the run ended. */
static llmlab_run_result *as_run(const llmlab_model *m, const as_opts *o, const dc_requests *r, int *blocks_after) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(as_engine(&e, m, o, &err), LLMLAB_OK, "engine (attention %s, decoding %s): %s",
                 o->attention ? o->attention : "dense", o->decoding ? o->decoding : "autoregressive", err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_run(e, r->reqs, r->n, &res, &err), LLMLAB_OK, "run (attention %s, decoding %s): %s",
                 o->attention ? o->attention : "dense", o->decoding ? o->decoding : "autoregressive", err.msg);
    if (blocks_after) *blocks_after = llmlab_kv_blocks_used(llmlab_engine_kv(e));
    llmlab_engine_free(e);
    return res;
}

/* ---- per-lane snapshots (on_finish) --------------------------------------------------- */

typedef struct {
    int lanes, hd, n;
    int tokens[MAXREQ];            /* tokens the cache has seen */
    int count[MAXREQ][MAXLANES];   /* valid slots per lane */
    int32_t *pos[MAXREQ][MAXLANES]; /* [count] positions, slot order */
    float *kv[MAXREQ][MAXLANES];    /* [count][2][hd] K then V of the lane's head */
    size_t resident[MAXREQ];       /* pool bytes in use when the request finished */
    kv_snapshot whole;             /* kv_snapshot.h's view (lane 0 positions, all heads) */
} lane_snap;

static void ls_on_finish(void *user, llmlab_engine *e, int req_id, int kv_seq) {
    lane_snap *s = user;
    llmlab_kv *kv = llmlab_engine_kv(e);
    cr_assert(req_id >= 0 && req_id < MAXREQ);
    s->lanes = kv->n_lanes;
    s->hd = kv->o.head_dim;
    s->tokens[req_id] = llmlab_kv_tokens(kv, kv_seq);
    s->resident[req_id] = llmlab_kv_resident_bytes(kv);
    int n = llmlab_kv_committed(kv, kv_seq), hd = s->hd;
    for (int lane = 0; lane < s->lanes; lane++) {
        int layer = lane / kv->o.n_kv_heads, head = lane % kv->o.n_kv_heads, c = 0;
        s->pos[req_id][lane] = malloc((size_t)(n + 1) * sizeof(int32_t));
        s->kv[req_id][lane] = malloc((size_t)(n + 1) * 2 * (size_t)hd * sizeof(float));
        cr_assert(s->pos[req_id][lane] && s->kv[req_id][lane]);
        for (int slot = 0; slot < n; slot++) {
            if (!llmlab_kv_lane_valid(kv, kv_seq, slot, lane)) continue;
            s->pos[req_id][lane][c] = llmlab_kv_lane_pos(kv, kv_seq, slot, lane);
            memcpy(s->kv[req_id][lane] + (size_t)c * 2 * hd, llmlab_kv_k_row(kv, kv_seq, slot, layer) + head * hd,
                   (size_t)hd * sizeof(float));
            memcpy(s->kv[req_id][lane] + ((size_t)c * 2 + 1) * hd, llmlab_kv_v_row(kv, kv_seq, slot, layer) + head * hd,
                   (size_t)hd * sizeof(float));
            c++;
        }
        s->count[req_id][lane] = c;
    }
    s->n++;
    kvs_on_finish(&s->whole, e, req_id, kv_seq);
}

static void ls_free(lane_snap *s) {
    for (int r = 0; r < MAXREQ; r++)
        for (int l = 0; l < MAXLANES; l++) {
            free(s->pos[r][l]);
            free(s->kv[r][l]);
        }
    kvs_free(&s->whole);
    memset(s, 0, sizeof *s);
}

/* Per lane: the same positions valid, in the same order, with the same K and V. */
static void ls_assert_same(const lane_snap *want, const lane_snap *got, int n, const char *what) {
    cr_assert_eq(want->n, n, "%s: %d caches recorded for the reference, want %d", what, want->n, n);
    cr_assert_eq(got->n, n, "%s: %d caches recorded, want %d", what, got->n, n);
    for (int r = 0; r < n; r++) {
        cr_assert_eq(got->tokens[r], want->tokens[r], "%s: request %d saw %d tokens, reference %d", what, r,
                     got->tokens[r], want->tokens[r]);
        for (int l = 0; l < want->lanes; l++) {
            int c = want->count[r][l];
            cr_assert_eq(got->count[r][l], c, "%s: request %d lane %d keeps %d tokens, reference %d", what, r, l,
                         got->count[r][l], c);
            for (int i = 0; i < c; i++)
                cr_assert_eq(got->pos[r][l][i], want->pos[r][l][i],
                             "%s: request %d lane %d: kept token %d is position %d, reference %d", what, r, l, i,
                             got->pos[r][l][i], want->pos[r][l][i]);
            cr_assert(memcmp(got->kv[r][l], want->kv[r][l], (size_t)c * 2 * (size_t)want->hd * sizeof(float)) == 0,
                      "%s: request %d lane %d: K/V differ", what, r, l);
        }
    }
}

static int same_set(const lane_snap *s, int r, int a, int b) {
    return s->count[r][a] == s->count[r][b] &&
           memcmp(s->pos[r][a], s->pos[r][b], (size_t)s->count[r][a] * sizeof(int32_t)) == 0;
}

/* ---- a budget that holds everything: dense, bit for bit ----------------------------- */

Test(attention_score, budget_over_the_sequence_equals_dense) {
    uint64_t seed = fixture_seed("attention-score-dense");
    fixture_model t;
    fixture_load(&t, &fixture_shapes[0], seed);
    dc_requests rq;
    dc_requests_make(&rq, 6, t.m->cfg.vocab_size, 5, 60, 4, 30, seed);
    lane_snap want = {0};
    as_opts dense = {.seed = seed, .on_finish = ls_on_finish, .user = &want};
    llmlab_run_result *ref = as_run(t.m, &dense, &rq, NULL);
    const char *h2o[] = {"heavy=100", "recent=100"};
    const char *snap[] = {"budget=200", "window=8"};
    const char *tova[] = {"budget=200", "sinks=2"};
    struct {
        const char *name;
        const char *const *kv;
        int n;
    } cases[] = {{"h2o", h2o, 2}, {"snapkv", snap, 2}, {"tova", tova, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lane_snap got = {0};
        as_opts o = {.attention = cases[c].name, .att = cases[c].kv, .n_att = cases[c].n, .seed = seed,
                     .on_finish = ls_on_finish, .user = &got};
        llmlab_run_result *res = as_run(t.m, &o, &rq, NULL);
        dc_assert_same(ref, res, cases[c].name);
        kvs_assert_same(&want.whole, &got.whole, rq.n, cases[c].name);
        ls_assert_same(&want, &got, rq.n, cases[c].name);
        cr_assert_eq(dc_metric(res, "evicted"), 0.0, "%s evicted with a budget over the sequence", cases[c].name);
        llmlab_run_result_free(res);
        ls_free(&got);
    }
    llmlab_run_result_free(ref);
    ls_free(&want);
    dc_requests_free(&rq);
    fixture_free(&t);
}

/* ---- h2o: budgets, the recent window, the rule, memory -------------------------------- */

Test(attention_score, h2o_keeps_budgets_and_recent_window_and_frees_memory) {
    uint64_t seed = fixture_seed("attention-score-h2o");
    fixture_shape shape = fixture_shapes[0];
    shape.layers = 3; /* 6 lanes */
    fixture_model t;
    fixture_load(&t, &shape, seed);
    enum { HEAVY = 7, RECENT = 5, CAP = HEAVY + RECENT };
    dc_requests rq;
    dc_requests_make(&rq, 6, t.m->cfg.vocab_size, 20, 50, 30, 60, seed);
    const char *kv[] = {"heavy=7", "recent=5"};

    /* batch 4, one token per step: every eviction checked against the rule */
    probe_reset(1);
    lane_snap got = {0};
    as_opts o = {.attention = "probe_h2o", .att = kv, .n_att = 2, .seed = seed, .on_finish = ls_on_finish, .user = &got};
    int blocks_after = -1;
    llmlab_run_result *res = as_run(t.m, &o, &rq, &blocks_after);
    cr_assert_eq(g_pr.begins, rq.n);
    cr_assert_gt(g_pr.evictions_checked, 0);
    cr_assert_eq(blocks_after, 0, "every block back in the pool after the run (%d in use)", blocks_after);
    int differ = 0;
    for (int r = 0; r < rq.n; r++) {
        int T = rq.reqs[r].prompt_len + rq.reqs[r].max_new - 1; /* the last token is never in the cache */
        cr_assert_eq(got.tokens[r], T);
        for (int l = 0; l < got.lanes; l++) {
            cr_assert_eq(got.count[r][l], CAP, "request %d lane %d keeps %d, want heavy + recent = %d", r, l,
                         got.count[r][l], CAP);
            for (int p = T - RECENT; p < T; p++) { /* the recent window, every one of them */
                int found = 0;
                for (int i = 0; i < got.count[r][l]; i++) found |= got.pos[r][l][i] == p;
                cr_assert(found, "request %d lane %d: recent position %d was evicted", r, l, p);
            }
            differ += !same_set(&got, r, 0, l);
        }
    }
    cr_assert_gt(differ, 0, "every lane kept the same positions: keep sets are not per head");
    /* evicted tokens per lane: (T - CAP) per request */
    double want_ev = 0;
    for (int r = 0; r < rq.n; r++) want_ev += rq.reqs[r].prompt_len + rq.reqs[r].max_new - 1 - CAP;
    cr_assert_float_eq(dc_metric(res, "evicted"), want_ev, 1e-9, "metric evicted %g, want %g", dc_metric(res, "evicted"),
                       want_ev);
    llmlab_run_result_free(res);
    ls_free(&got);

    /* batch 1: the cache stays bounded while dense's grows, and holds fewer bytes */
    lane_snap hs = {0}, ds = {0};
    as_opts h1 = {.attention = "h2o", .att = kv, .n_att = 2, .max_batch = 1, .seed = seed, .on_finish = ls_on_finish,
                  .user = &hs};
    as_opts d1 = {.max_batch = 1, .seed = seed, .on_finish = ls_on_finish, .user = &ds};
    llmlab_run_result *hr = as_run(t.m, &h1, &rq, NULL), *dr = as_run(t.m, &d1, &rq, NULL);
    /* after a request's prefill, its step's blocks: the compacted CAP slots, one block
     * filling up, the next token's; dense: its whole length */
    int bound = (CAP + BLOCK - 1) / BLOCK + 1, late_max = 0;
    for (int i = 0; i < hr->n_steps; i++)
        if (hr->step_tokens[i] == 1) late_max = hr->step_kv_blocks[i] > late_max ? hr->step_kv_blocks[i] : late_max;
    cr_assert_leq(late_max, bound, "h2o decode steps hold up to %d blocks, bound %d", late_max, bound);
    cr_assert_gt(dr->step_kv_blocks[dr->n_steps - 1], bound, "dense's last step holds %d blocks",
                 dr->step_kv_blocks[dr->n_steps - 1]);
    for (int r = 0; r < rq.n; r++)
        cr_assert_lt(hs.resident[r], ds.resident[r], "request %d: h2o holds %zu bytes at the end, dense %zu", r,
                     hs.resident[r], ds.resident[r]);
    llmlab_run_result_free(hr);
    llmlab_run_result_free(dr);
    ls_free(&hs);
    ls_free(&ds);

    /* default ratios: heavy and recent 10% of each prompt (at least 1 each) */
    probe_reset(1);
    lane_snap rs = {0};
    as_opts ro = {.attention = "probe_h2o", .seed = seed, .on_finish = ls_on_finish, .user = &rs};
    res = as_run(t.m, &ro, &rq, NULL);
    for (int r = 0; r < rq.n; r++) {
        int L = rq.reqs[r].prompt_len, part = L / 10 > 0 ? L / 10 : 1;
        for (int l = 0; l < rs.lanes; l++) cr_assert_eq(rs.count[r][l], 2 * part, "request %d (prompt %d)", r, L);
    }
    llmlab_run_result_free(res);
    ls_free(&rs);
    dc_requests_free(&rq);
    fixture_free(&t);
}

/* ---- speculative decoding is exact under score eviction ------------------------------- */

static void check_spec_exact(const char *attention, const char *const *att, int n_att, uint64_t seed) {
    fixture_shape shape = fixture_shapes[0];
    shape.layers = 3;
    fixture_model t;
    fixture_load(&t, &shape, seed);
    char *ddir = fsu_mkdtemp();
    cr_assert_not_null(ddir);
    llmlab_err err = {0};
    llmlab_derive_opts dopt = {.dtype = LLMLAB_DTYPE_F32, .n_layers = 1};
    cr_assert_eq(llmlab_derive_write(t.m, &dopt, ddir, &err), LLMLAB_OK, "%s", err.msg);
    char dkv[300];
    snprintf(dkv, sizeof dkv, "draft=%s", ddir);

    dc_requests rq, rep;
    dc_requests_make(&rq, 6, t.m->cfg.vocab_size, 20, 48, 12, 36, seed);
    dc_requests_make_repetitive(&rep, 5, t.m->cfg.vocab_size, 40, 5, 30, seed + 1);

    probe_reset(1); /* autoregressive: every eviction checked against the rule */
    lane_snap want = {0}, want_rep = {0};
    char probe_name[32];
    snprintf(probe_name, sizeof probe_name, "probe_%s", attention);
    as_opts ar = {.attention = probe_name, .att = att, .n_att = n_att, .seed = seed, .on_finish = ls_on_finish, .user = &want};
    llmlab_run_result *ref = as_run(t.m, &ar, &rq, NULL);
    cr_assert_gt(g_pr.evictions_checked, 0);
    ar.user = &want_rep;
    llmlab_run_result *ref_rep = as_run(t.m, &ar, &rep, NULL);
    cr_assert_gt(dc_metric(ref, "evicted"), 0.0);

    const char *self_kv[] = {"draft=self", "k=5"};
    const char *derived_kv[] = {dkv, "k=3"};
    const char *skip_kv[] = {"skip=1", "k=4"};
    const char *pl_kv[] = {"num_pred_tokens=6"};
    struct {
        const char *what, *decoding;
        const char *const *kv;
        int n, repetitive, batch;
    } cases[] = {
        {"speculative, draft self", "speculative", self_kv, 2, 0, 4},
        {"speculative, derived 1-layer draft", "speculative", derived_kv, 2, 0, 3},
        {"self_speculative, layer 1 skipped", "self_speculative", skip_kv, 2, 0, 4},
        {"prompt_lookup", "prompt_lookup", pl_kv, 1, 1, 5},
        {"speculative, draft self, batch 1", "speculative", self_kv, 2, 0, 1},
        {"oracle draft (the autoregressive tokens), k 6", "oracle", NULL, 0, 0, 4},
        {"oracle draft (the autoregressive tokens), k 6, repetitive prompts", "oracle", NULL, 0, 1, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char label[200];
        snprintf(label, sizeof label, "%s under %s", cases[c].what, attention);
        probe_reset(0); /* several tokens per step: budgets and protection checked */
        lane_snap got = {0};
        as_opts o = {.attention = probe_name, .att = att, .n_att = n_att, .decoding = cases[c].decoding, .dec = cases[c].kv,
                     .n_dec = cases[c].n, .max_batch = cases[c].batch, .seed = seed, .on_finish = ls_on_finish,
                     .user = &got};
        const dc_requests *set = cases[c].repetitive ? &rep : &rq;
        g_oracle_ref = cases[c].repetitive ? ref_rep : ref;
        llmlab_run_result *res = as_run(t.m, &o, set, NULL);
        dc_assert_same(cases[c].repetitive ? ref_rep : ref, res, label);
        ls_assert_same(cases[c].repetitive ? &want_rep : &want, &got, set->n, label);
        double drafted = dc_metric(res, "drafted"), accepted = dc_metric(res, "accepted");
        fprintf(stderr, "%s: mean accepted %.3f, drafted %.0f, accepted %.0f, evicted %.0f, lane-steps with "
                "evictions inside a chain %d\n", label, res->mean_accepted, drafted, accepted,
                dc_metric(res, "evicted"), g_pr.chain_evictions);
        if (strcmp(cases[c].decoding, "prompt_lookup")) /* random text: prompt lookup may never be right */
            cr_assert_gt(accepted, 0.0, "%s: no draft accepted: no chain ever committed", label);
        if (c == 1) cr_assert_lt(accepted, drafted, "%s: the derived draft was never rejected", label);
        if (!strcmp(cases[c].decoding, "oracle")) {
            cr_assert_eq(accepted, drafted, "%s: the oracle's drafts are autoregressive decoding's tokens", label);
            cr_assert_gt(res->mean_accepted, 4.0, "%s: chains too short", label);
            cr_assert_gt(g_pr.chain_evictions, 0, "%s: no step committed a chain that evicted", label);
        }
        llmlab_run_result_free(res);
        ls_free(&got);
    }
    llmlab_run_result_free(ref);
    llmlab_run_result_free(ref_rep);
    ls_free(&want);
    ls_free(&want_rep);
    dc_requests_free(&rq);
    dc_requests_free(&rep);
    fsu_rmtree(ddir);
    free(ddir);
    fixture_free(&t);
}

Test(attention_score, speculative_equals_autoregressive_under_h2o) {
    const char *kv[] = {"heavy=6", "recent=4"};
    check_spec_exact("h2o", kv, 2, fixture_seed("attention-score-spec-h2o"));
}

Test(attention_score, speculative_equals_autoregressive_under_tova) {
    const char *kv[] = {"budget=10", "sinks=2"};
    check_spec_exact("tova", kv, 2, fixture_seed("attention-score-spec-tova"));
}

/* ---- tova: the newest query's choice, sinks kept -------------------------------------- */

Test(attention_score, tova_drops_what_the_newest_query_ignores) {
    uint64_t seed = fixture_seed("attention-score-tova");
    fixture_model t;
    fixture_load(&t, &fixture_shapes[1], seed); /* MQA: one KV head per layer */
    dc_requests rq;
    dc_requests_make(&rq, 5, t.m->cfg.vocab_size, 16, 40, 20, 40, seed);
    const char *kv[] = {"budget=9", "sinks=3"};
    probe_reset(1);
    lane_snap got = {0};
    as_opts o = {.attention = "probe_tova", .att = kv, .n_att = 2, .seed = seed, .on_finish = ls_on_finish, .user = &got};
    int blocks_after = -1;
    llmlab_run_result *res = as_run(t.m, &o, &rq, &blocks_after);
    cr_assert_gt(g_pr.evictions_checked, 0);
    cr_assert_eq(blocks_after, 0);
    for (int r = 0; r < rq.n; r++)
        for (int l = 0; l < got.lanes; l++) {
            cr_assert_eq(got.count[r][l], 9);
            for (int p = 0; p < 3; p++) cr_assert_eq(got.pos[r][l][p], p, "request %d lane %d: sink %d evicted", r, l, p);
        }
    llmlab_run_result_free(res);
    ls_free(&got);
    dc_requests_free(&rq);
    fixture_free(&t);
}

/* ---- snapkv: the window plus the top pooled votes ------------------------------------- */

Test(attention_score, snapkv_keeps_window_and_top_pooled_votes) {
    uint64_t seed = fixture_seed("attention-score-snapkv");
    for (int shape = 0; shape < 2; shape++) {
        fixture_model t;
        fixture_load(&t, &fixture_shapes[shape], seed + (uint64_t)shape);
        enum { WINDOW = 8, BUDGET = 20 };
        dc_requests rq;
        dc_requests_make(&rq, 6, t.m->cfg.vocab_size, 12, 90, 5, 20, seed);
        const char *kv[] = {"window=8", "kernel=5", "budget=20"};
        probe_reset(0);
        lane_snap got = {0};
        as_opts o = {.attention = "probe_snapkv", .att = kv, .n_att = 3, .seed = seed, .on_finish = ls_on_finish,
                     .user = &got};
        llmlab_run_result *res = as_run(t.m, &o, &rq, NULL);
        cr_assert_eq(g_pr.begins, rq.n);
        cr_assert_gt(g_pr.lanes_checked, 0);
        cr_assert_gt(g_pr.pool_matters, 0, "pooling never changed the choice in %d lanes: the test could not tell",
                     g_pr.lanes_checked);
        double want_ev = 0;
        for (int r = 0; r < rq.n; r++) {
            int L = rq.reqs[r].prompt_len, T = L + rq.reqs[r].max_new - 1;
            int kept = L > BUDGET ? BUDGET : L;
            want_ev += L - kept;
            for (int l = 0; l < got.lanes; l++) {
                cr_assert_eq(got.count[r][l], kept + (T - L), "request %d lane %d: no eviction while decoding", r, l);
                int window = 0;
                for (int i = 0; i < got.count[r][l]; i++) window += got.pos[r][l][i] >= L - WINDOW;
                cr_assert_eq(window, T - (L > WINDOW ? L - WINDOW : 0),
                             "request %d lane %d: window or decoded tokens missing", r, l);
            }
        }
        cr_assert_float_eq(dc_metric(res, "evicted"), want_ev, 1e-9);
        llmlab_run_result_free(res);

        /* no decode-time eviction: speculative decoding gives the same cache */
        lane_snap sp = {0};
        const char *self_kv[] = {"draft=self", "k=4"};
        as_opts so = {.attention = "snapkv", .att = kv, .n_att = 3, .decoding = "speculative", .dec = self_kv, .n_dec = 2,
                      .seed = seed, .on_finish = ls_on_finish, .user = &sp};
        lane_snap ar = {0};
        as_opts ao = {.attention = "snapkv", .att = kv, .n_att = 3, .seed = seed, .on_finish = ls_on_finish, .user = &ar};
        llmlab_run_result *r1 = as_run(t.m, &ao, &rq, NULL), *r2 = as_run(t.m, &so, &rq, NULL);
        dc_assert_same(r1, r2, "snapkv, speculative");
        ls_assert_same(&ar, &sp, rq.n, "snapkv, speculative");
        ls_assert_same(&got, &ar, rq.n, "snapkv, probe against plain");
        llmlab_run_result_free(r1);
        llmlab_run_result_free(r2);
        ls_free(&sp);
        ls_free(&ar);
        ls_free(&got);
        dc_requests_free(&rq);
        fixture_free(&t);
    }
}

/* ---- bad parameters ------------------------------------------------------------------ */

static void expect_refused(const llmlab_model *m, const char *attention, const char *const *kv, int n,
                           const char *needle1, const char *needle2) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    as_opts o = {.attention = attention, .att = kv, .n_att = n};
    cr_assert_neq(as_engine(&e, m, &o, &err), LLMLAB_OK, "%s accepted %s", attention, kv[0]);
    cr_assert_null(e);
    cr_assert(strstr(err.msg, needle1) && (!needle2 || strstr(err.msg, needle2)), "%s %s: message '%s'", attention,
              kv[0], err.msg);
}

Test(attention_score, bad_parameters_are_refused_with_their_names) {
    fixture_model t;
    fixture_load(&t, &fixture_shapes[1], 7);
    const char *a[] = {"heavy_ratio=1.5"};
    expect_refused(t.m, "h2o", a, 1, "heavy_ratio", "outside");
    const char *b[] = {"recent_ratio=-0.1"};
    expect_refused(t.m, "h2o", b, 1, "recent_ratio", "outside");
    const char *c[] = {"heavy=-3"};
    expect_refused(t.m, "h2o", c, 1, "heavy", "outside");
    const char *d[] = {"kernel=4"};
    expect_refused(t.m, "snapkv", d, 1, "kernel (4)", "odd");
    const char *f[] = {"budget=16", "window=32"};
    expect_refused(t.m, "snapkv", f, 2, "budget (16)", "window (32)");
    const char *g[] = {"ratio=2"};
    expect_refused(t.m, "snapkv", g, 1, "ratio", "outside");
    const char *h[] = {"budget=4", "sinks=4"};
    expect_refused(t.m, "tova", h, 2, "sinks (4)", "budget (4)");
    const char *i[] = {"budget=0"};
    expect_refused(t.m, "tova", i, 1, "budget", "outside");
    fixture_free(&t);
}
