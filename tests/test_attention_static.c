/* test_attention_static.c - the static attention policies: window, sinks and
 * sparse (longformer, bigbird, layout).
 *
 *  - A window or sinks+window covering the whole text is dense attention: same
 *    greedy tokens, same KV cache, bit-identical logits.
 *  - Shorter windows: eviction only drops keys the pattern hides, so outputs and
 *    logits equal the same pattern run without any eviction (test_static below);
 *    after every step the cache holds exactly the keys some later query can see
 *    (an oracle built on the kernel's own rule, llmlab_pattern_sees); memory stays
 *    bounded and every block returns to the pool.
 *  - Shifted RoPE positions (StreamingLLM) checked by hand on a tiny cache.
 *  - Sparse patterns: visible sets equal hand-written masks, and the kernel equals
 *    a double-precision softmax restricted to those masks.
 *  - Bad parameters and layout files fail with messages naming the problem. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/params.h"
#include "core/registry.h"
#include "core/rng.h"
#include "kernels/cpu/ops.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/kv_snapshot.h"

static llmlab_registry *g_reg;
static fixture_model g_fm;
static char g_tmp[256]; /* layout files */

/* ---- test plugins ------------------------------------------------------------------ */

/* test_static: sets g_static and never evicts: the masked computation itself. */
static llmlab_attn_pattern g_static;

static llmlab_status static_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    *self = NULL;
    return h->engine_set_pattern(e, &g_static, err);
}
static void static_destroy(void *self) {}
static llmlab_status static_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void static_end(void *self, llmlab_seq *s) {}
static llmlab_status static_after(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static const llmlab_attention_ops static_ops = {sizeof static_ops, static_create, static_destroy,
                                                static_begin,       static_end,    static_after};
static const llmlab_plugin_desc static_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "test_static", "1.0", "g_static, no eviction", NULL, 0, &static_ops);
static const llmlab_plugin_desc *static_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return &static_desc; }

/* probe_<name>: runs plugin <name> and, after each of its after_step calls,
 * checks every lane of the cache against g_rule: a position p < next stays
 * exactly when some later query q (next <= q < end) sees it by the kernel's rule,
 * end = max(next + remaining, g_oracle_end); with g_keep_all, every position
 * stays (and the needed ones are among them). */
static const llmlab_plugin_desc *g_probe_inner;
static llmlab_plugin_desc g_probe_descs[4];
static char g_probe_names[4][32];
static int g_n_probes;
static const llmlab_plugin_desc *g_probe_next;
static llmlab_attn_pattern g_rule;
static int g_oracle_end, g_keep_all;
static long g_probe_checks;

typedef struct {
    const llmlab_host *h;
    void *inner;
    int lanes;
} probe_state;

static const llmlab_attention_ops *inner_ops(void) { return g_probe_inner->ops; }

static llmlab_status probe_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                  llmlab_err *err) {
    probe_state *ps = calloc(1, sizeof *ps);
    cr_assert(ps);
    ps->h = h;
    ps->lanes = h->kv_lanes(e);
    llmlab_status st = inner_ops()->create(&ps->inner, h, e, p, err);
    if (st) {
        free(ps);
        return st;
    }
    *self = ps;
    return LLMLAB_OK;
}
static void probe_destroy(void *self) {
    probe_state *ps = self;
    if (!ps) return;
    inner_ops()->destroy(ps->inner);
    free(ps);
}
static llmlab_status probe_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    return inner_ops()->seq_begin(((probe_state *)self)->inner, s, err);
}
static void probe_end(void *self, llmlab_seq *s) { inner_ops()->seq_end(((probe_state *)self)->inner, s); }

/* Whether a query at position q sees key position k under g_rule (forward.c's rule). */
static int rule_sees(int32_t q, int32_t k) {
    int rand[LLMLAB_MAX_RANDOM_BLOCKS], n_rand = 0;
    if (g_rule.block > 0 && g_rule.random_blocks > 0) {
        int qb = q / g_rule.block;
        n_rand = llmlab_pattern_random_blocks(g_rule.seed, qb, g_rule.global_blocks, qb - g_rule.window_blocks,
                                              g_rule.random_blocks, rand);
    }
    return llmlab_pattern_sees(&g_rule, q, k, rand, n_rand);
}

static llmlab_status probe_after(void *self, llmlab_seq *s, llmlab_err *err) {
    probe_state *ps = self;
    const llmlab_host *h = ps->h;
    llmlab_status st = inner_ops()->after_step(ps->inner, s, err);
    if (st) return st;
    int next = h->seq_kv_len(s), end = next + h->seq_remaining(s);
    if (end < g_oracle_end) end = g_oracle_end;
    int32_t *pos = malloc((size_t)(next + 1) * sizeof *pos);
    uint8_t *held = malloc((size_t)next + 1), *needed = malloc((size_t)next + 1);
    cr_assert(pos && held && needed);
    for (int p = 0; p < next; p++) {
        needed[p] = 0;
        for (int q = next; q < end && !needed[p]; q++) needed[p] = (uint8_t)rule_sees(q, p);
    }
    for (int lane = 0; lane < ps->lanes; lane++) {
        int n = h->seq_kv_lane(s, lane, pos, NULL, NULL, NULL);
        memset(held, 0, (size_t)next);
        for (int i = 0; i < n; i++) {
            if (pos[i] < 0) continue;
            cr_assert(pos[i] < next && !held[pos[i]], "lane %d: position %d twice or past %d", lane, pos[i], next);
            held[pos[i]] = 1;
        }
        for (int p = 0; p < next; p++) {
            if (g_keep_all)
                cr_assert(held[p], "request %d lane %d: position %d evicted (next %d), nothing should be",
                          h->seq_id(s), lane, p, next);
            else
                cr_assert_eq(held[p], needed[p],
                             "request %d lane %d, next query %d: position %d %s, though %s later query sees it",
                             h->seq_id(s), lane, next, p, held[p] ? "kept" : "evicted", needed[p] ? "a" : "no");
        }
    }
    g_probe_checks++;
    free(pos);
    free(held);
    free(needed);
    return LLMLAB_OK;
}

static const llmlab_attention_ops probe_ops = {sizeof probe_ops, probe_create, probe_destroy,
                                               probe_begin,      probe_end,    probe_after};
static const llmlab_plugin_desc *probe_entry(uint32_t a, uint32_t b, const llmlab_host *h) { return g_probe_next; }

/* Makes "probe_<inner>" available (same parameters as <inner>) and checks rule r
 * after every step of the next runs. */
static const char *probe_use(const char *inner, const llmlab_attn_pattern *r, int oracle_end, int keep_all) {
    g_probe_inner = llmlab_registry_find(g_reg, LLMLAB_PLUGIN_ATTENTION, inner);
    cr_assert(g_probe_inner, "no attention plugin '%s'", inner);
    g_rule = *r;
    g_oracle_end = oracle_end;
    g_keep_all = keep_all;
    char name[32];
    snprintf(name, sizeof name, "probe_%s", inner);
    for (int i = 0; i < g_n_probes; i++)
        if (!strcmp(g_probe_names[i], name)) return g_probe_names[i];
    cr_assert_lt(g_n_probes, 4);
    int k = g_n_probes++;
    snprintf(g_probe_names[k], sizeof g_probe_names[k], "%s", name);
    g_probe_descs[k] = *g_probe_inner;
    g_probe_descs[k].name = g_probe_names[k];
    g_probe_descs[k].ops = &probe_ops;
    g_probe_next = &g_probe_descs[k];
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_add(g_reg, probe_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    return g_probe_names[k];
}

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_registry_add(g_reg, static_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    fixture_load(&g_fm, &fixture_shapes[0], 31);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/llmlab-attn-XXXXXX");
    cr_assert_not_null(mkdtemp(g_tmp));
}

static void teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
    fixture_rmtree(g_tmp);
}

TestSuite(attention_static, .init = setup, .fini = teardown);

/* ---- running engines ------------------------------------------------------------------ */

typedef struct {
    const char *decoding;      /* NULL: autoregressive */
    const char *const *dec_kv; /* its "key=value" values */
    int n_dec;
    const char *attention;     /* NULL: dense */
    const char *const *kv;     /* "key=value" values of the attention plugin */
    int n_kv;
    int token_budget;          /* 0: 256 */
    int max_batch;             /* 0: 4 */
    int kv_block;              /* KV block size; 0: 4 */
    kv_snapshot *snap;         /* optional: every request's cache when it finishes */
} at_opts;

static llmlab_status at_engine(const llmlab_model *m, const at_opts *o, llmlab_engine **e, llmlab_err *err) {
    enum { MAXV = 16 };
    llmlab_param_value att[MAXV], dec[MAXV], sched;
    char keys[2 * MAXV][64], mb[16];
    cr_assert_leq(o->n_kv, MAXV);
    cr_assert_leq(o->n_dec, MAXV);
    for (int i = 0; i < o->n_kv + o->n_dec; i++) {
        const char *text = i < o->n_kv ? o->kv[i] : o->dec_kv[i - o->n_kv], *eq = strchr(text, '=');
        cr_assert(eq, "'%s' is not key=value", text);
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - text), text);
        llmlab_param_value_from_text(i < o->n_kv ? &att[i] : &dec[i - o->n_kv], keys[i], eq + 1);
    }
    snprintf(mb, sizeof mb, "%d", o->max_batch > 0 ? o->max_batch : 4);
    llmlab_param_value_from_text(&sched, "max_batch", mb);
    llmlab_engine_opts eo = {.registry = g_reg,
                             .decoding = {o->decoding, dec, o->n_dec},
                             .attention = {o->attention, att, o->n_kv},
                             .sched = {"continuous", &sched, 1},
                             .seed = 5,
                             .n_threads = 2,
                             .kv_tokens = 4096,
                             .kv_block_size = o->kv_block > 0 ? o->kv_block : 4,
                             .max_seqs = 8,
                             .token_budget = o->token_budget > 0 ? o->token_budget : 256,
                             .on_finish = o->snap ? kvs_on_finish : NULL,
                             .on_finish_user = o->snap};
    *e = NULL;
    return llmlab_engine_create(e, m, &eo, err);
}

static const char *name_of(const at_opts *o) { return o->attention ? o->attention : "dense"; }

/* Runs the requests greedily; *blocks_left (optional): KV blocks in use afterwards. */
static llmlab_run_result *at_run(const llmlab_model *m, const at_opts *o, const dc_requests *rq, int *blocks_left) {
    llmlab_engine *e;
    llmlab_err err = {0};
    cr_assert_eq(at_engine(m, o, &e, &err), LLMLAB_OK, "engine with attention '%s': %s", name_of(o), err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_run(e, rq->reqs, rq->n, &res, &err), LLMLAB_OK, "run with '%s': %s", name_of(o),
                 err.msg);
    if (blocks_left) *blocks_left = llmlab_kv_blocks_used(llmlab_engine_kv(e));
    llmlab_engine_free(e);
    return res;
}

/* Forced scoring: every text's logits at positions prefix-1 .. len-2. */
typedef struct {
    int vocab, max_len;
    float *logits; /* [n][max_len][vocab], 0 where not scored */
    long calls;
} score_buf;

static llmlab_status score_cb(void *user, int req, int pos, const float *logits, llmlab_err *err) {
    score_buf *b = user;
    cr_assert(pos >= 0 && pos < b->max_len);
    memcpy(b->logits + ((size_t)req * (size_t)b->max_len + (size_t)pos) * (size_t)b->vocab, logits,
           (size_t)b->vocab * sizeof(float));
    b->calls++;
    return LLMLAB_OK;
}

static int prefix_of(int len) { return len / 2 > 0 ? len / 2 : 1; }

static score_buf at_score(const llmlab_model *m, const at_opts *o, const dc_requests *rq) {
    score_buf b = {.vocab = m->cfg.vocab_size};
    int prefix[64];
    long want = 0;
    cr_assert_leq(rq->n, 64);
    for (int i = 0; i < rq->n; i++) {
        if (rq->reqs[i].prompt_len > b.max_len) b.max_len = rq->reqs[i].prompt_len;
        prefix[i] = prefix_of(rq->reqs[i].prompt_len);
        want += rq->reqs[i].prompt_len - prefix[i];
    }
    b.logits = calloc((size_t)rq->n * (size_t)b.max_len * (size_t)b.vocab, sizeof(float));
    cr_assert(b.logits);
    llmlab_engine *e;
    llmlab_err err = {0};
    cr_assert_eq(at_engine(m, o, &e, &err), LLMLAB_OK, "engine with attention '%s': %s", name_of(o), err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_score(e, rq->reqs, rq->n, prefix, score_cb, &b, &res, &err), LLMLAB_OK,
                 "scoring with '%s': %s", name_of(o), err.msg);
    cr_assert_eq(b.calls, want, "'%s': %ld positions scored, want %ld", name_of(o), b.calls, want);
    llmlab_run_result_free(res);
    llmlab_engine_free(e);
    return b;
}

static void assert_same_logits(const score_buf *want, const score_buf *got, int n, const char *what) {
    size_t per = (size_t)want->max_len * (size_t)want->vocab;
    for (int i = 0; i < n; i++)
        for (int p = 0; p < want->max_len; p++)
            cr_assert(memcmp(want->logits + i * per + (size_t)p * (size_t)want->vocab,
                             got->logits + i * per + (size_t)p * (size_t)want->vocab,
                             (size_t)want->vocab * sizeof(float)) == 0,
                      "%s: text %d, logits at position %d differ", what, i, p);
}

/* Text prompts (texts for scoring) of lengths [lo, hi], max_new in [nlo, nhi]. */
static void make_requests(dc_requests *rq, int n, int lo, int hi, int nlo, int nhi, uint64_t seed) {
    dc_requests_make(rq, n, g_fm.m->cfg.vocab_size, lo, hi, nlo, nhi, seed);
}

static void assert_same_lanes(const kv_snapshot *want, const kv_snapshot *got, int n, const char *what) {
    cr_assert_eq(want->n_lanes, got->n_lanes);
    for (int i = 0; i < n; i++)
        cr_assert(memcmp(want->lane_pos[i], got->lane_pos[i],
                         (size_t)want->len[i] * (size_t)want->n_lanes * sizeof(int32_t)) == 0,
                  "%s: request %d, per-lane positions or validity differ", what, i);
}

/* A shifted cache stores K before RoPE: rotated at its position it must be the
 * dense cache's K bit for bit; V, lengths and positions are equal as they are. */
static void assert_shifted_cache(const kv_snapshot *want, const kv_snapshot *got, int n, const llmlab_model *m,
                                 const char *what) {
    int L = m->cfg.n_layers, nkv = m->cfg.n_kv_heads, hd = m->cfg.head_dim;
    size_t rf = (size_t)nkv * (size_t)hd;
    float k[1024];
    cr_assert_leq(rf, 1024);
    cr_assert_eq(got->n, n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(got->len[i], want->len[i], "%s: request %d cache length", what, i);
        for (int slot = 0; slot < want->len[i]; slot++) {
            cr_assert_eq(got->pos[i][slot], want->pos[i][slot], "%s: request %d slot %d position", what, i, slot);
            for (int l = 0; l < L; l++) {
                const float *w = want->rows[i] + (size_t)slot * want->slot_floats + (size_t)l * 2 * rf;
                const float *g = got->rows[i] + (size_t)slot * got->slot_floats + (size_t)l * 2 * rf;
                memcpy(k, g, rf * sizeof(float));
                llmlab_cpu_rope(k, nkv, hd, got->pos[i][slot], m->rope_inv_freq);
                cr_assert(memcmp(k, w, rf * sizeof(float)) == 0, "%s: request %d slot %d layer %d: K rotated at "
                          "position %d differs from dense", what, i, slot, l, got->pos[i][slot]);
                cr_assert(memcmp(g + rf, w + rf, rf * sizeof(float)) == 0, "%s: request %d slot %d layer %d: V",
                          what, i, slot, l);
            }
        }
    }
    assert_same_lanes(want, got, n, what);
}

/* ---- a window covering the text is dense attention ---------------------------------------- */

/* Texts of at most 63 tokens (prompt <= 40, max_new <= 23): window 63 and 4 sinks +
 * window 59 see every earlier token, so they must be dense attention exactly:
 * same tokens, same cache (shifted: K stored before RoPE, equal once rotated),
 * bit-identical logits at every position (forced scoring).  Swept over shapes
 * with GQA, qkv bias (added before RoPE) and head_dim 128. */
Test(attention_static, covering_window_and_sinks_equal_dense) {
    uint64_t seed = fixture_seed("attention-covering");
    const int shapes[] = {0, 2, 3};
    const char *win[] = {"window=63"}, *orig[] = {"sinks=4", "window=59", "positions=original"},
               *shift[] = {"sinks=4", "window=59"}, *lf[] = {"pattern=longformer", "block=4", "global=1", "window=16"};
    const struct {
        const char *name, *label, *const *kv;
        int n, shifted;
    } cases[] = {{"window", "window 63", win, 1, 0},
                 {"sinks", "sinks 4 + window 59, original positions", orig, 3, 0},
                 {"sinks", "sinks 4 + window 59, shifted positions", shift, 2, 1},
                 {"sparse", "longformer block 4, 1 global + 16 window blocks", lf, 4, 0}};
    for (int si = 0; si < 3; si++) {
        fixture_model fm;
        fixture_load(&fm, &fixture_shapes[shapes[si]], seed + (uint64_t)si);
        dc_requests rq;
        dc_requests_make(&rq, 6, fm.m->cfg.vocab_size, 4, 40, 1, 23, seed + 10 + (uint64_t)si);
        kv_snapshot want = {0};
        at_opts dense = {.snap = &want};
        llmlab_run_result *ref = at_run(fm.m, &dense, &rq, NULL);
        score_buf ref_l = at_score(fm.m, &(at_opts){0}, &rq);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char what[160];
            snprintf(what, sizeof what, "%s on %s", cases[c].label, fixture_shapes[shapes[si]].name);
            kv_snapshot got = {0};
            at_opts o = {.attention = cases[c].name, .kv = cases[c].kv, .n_kv = cases[c].n, .snap = &got};
            llmlab_run_result *res = at_run(fm.m, &o, &rq, NULL);
            dc_assert_same(ref, res, what);
            if (cases[c].shifted) assert_shifted_cache(&want, &got, rq.n, fm.m, what);
            else {
                kvs_assert_same(&want, &got, rq.n, what);
                assert_same_lanes(&want, &got, rq.n, what);
            }
            o.snap = NULL;
            score_buf l = at_score(fm.m, &o, &rq);
            assert_same_logits(&ref_l, &l, rq.n, what);
            free(l.logits);
            kvs_free(&got);
            llmlab_run_result_free(res);
        }
        free(ref_l.logits);
        kvs_free(&want);
        llmlab_run_result_free(ref);
        dc_requests_free(&rq);
        fixture_free(&fm);
    }
}

/* ---- shorter windows: eviction changes nothing but memory -------------------------------- */

/* Steps of a single-request run that decode (after its prompt's prefill chunks). */
static int first_decode_step(const llmlab_run_result *r, int prompt_len) {
    int k = 0, done = 0;
    while (k < r->n_steps && done < prompt_len) done += r->step_tokens[k++];
    return k;
}

/* Runs `plugin` (through its probe, which checks the cache after every step)
 * against test_static with the same pattern: equal outputs one-shot and with
 * prompts fed in chunks of 5, bit-identical logits. */
static void assert_equals_masked(const char *plugin, const char *const *kv, int n_kv, const dc_requests *rq,
                                 int oracle_end, int keep_all) {
    const char *probe = probe_use(plugin, &g_static, oracle_end, keep_all);
    at_opts masked = {.attention = "test_static"};
    llmlab_run_result *want = at_run(g_fm.m, &masked, rq, NULL);
    score_buf want_l = at_score(g_fm.m, &masked, rq);
    for (int chunked = 0; chunked < 2; chunked++) {
        char what[96];
        snprintf(what, sizeof what, "%s %s%s", plugin, kv[0], chunked ? ", prompts in chunks of 5" : "");
        at_opts o = {.attention = probe, .kv = kv, .n_kv = n_kv, .token_budget = chunked ? 5 : 0,
                     .max_batch = chunked ? 2 : 4};
        int left = -1;
        long checks = g_probe_checks;
        llmlab_run_result *got = at_run(g_fm.m, &o, rq, &left);
        cr_assert_gt(g_probe_checks, checks + rq->n, "%s: the cache was checked after %ld steps only", what,
                     g_probe_checks - checks);
        dc_assert_same(want, got, what);
        cr_assert_eq(left, 0, "%s: %d KV blocks still in use after the run", what, left);
        score_buf l = at_score(g_fm.m, &o, rq);
        assert_same_logits(&want_l, &l, rq->n, what);
        free(l.logits);
        llmlab_run_result_free(got);
    }
    free(want_l.logits);
    llmlab_run_result_free(want);
}

/* Per-step KV blocks of one long request (prompt 21, 48 new tokens): after its
 * prompt, `plugin` stays within bound blocks while dense attention grows past it;
 * metric "evicted" ends at `evicted` tokens (-1: not checked). */
static void assert_bounded(const char *plugin, const char *const *kv, int n_kv, int bound, int budget, int evicted) {
    dc_requests rq;
    make_requests(&rq, 1, 21, 21, 48, 48, fixture_seed("attention-bound"));
    at_opts o = {.attention = plugin, .kv = kv, .n_kv = n_kv, .token_budget = budget}, dense = {.token_budget = budget};
    int left = -1;
    llmlab_run_result *r = at_run(g_fm.m, &o, &rq, &left), *d = at_run(g_fm.m, &dense, &rq, NULL);
    cr_assert_eq(left, 0, "%s: %d KV blocks in use after the run", plugin, left);
    int k0 = first_decode_step(r, 21);
    cr_assert_lt(k0, r->n_steps);
    for (int k = k0; k < r->n_steps; k++)
        cr_assert_leq(r->step_kv_blocks[k], bound, "%s: step %d holds %d KV blocks, bound %d", plugin, k,
                      r->step_kv_blocks[k], bound);
    cr_assert_eq(d->n_steps, r->n_steps);
    cr_assert_gt(d->step_kv_blocks[d->n_steps - 1], bound + 5, "dense attention should outgrow the bound (%d blocks)",
                 d->step_kv_blocks[d->n_steps - 1]);
    for (int k = k0 + 1; k < d->n_steps; k++) cr_assert_geq(d->step_kv_blocks[k], d->step_kv_blocks[k - 1]);
    if (evicted >= 0)
        cr_assert_eq(dc_metric(r, "evicted"), (double)evicted, "%s: %g tokens evicted, want %d", plugin,
                     dc_metric(r, "evicted"), evicted);
    llmlab_run_result_free(r);
    llmlab_run_result_free(d);
    dc_requests_free(&rq);
}

/* Window 7 over texts of up to 60 tokens (KV blocks of 4): after every step the
 * cache holds exactly positions next-6 .. next-1 in every lane (the probe), the
 * outputs and logits equal the unevicted masked run, prompts fed in chunks give
 * the same, and one request's cache stays within ceil(7/4)+1 = 3 blocks. */
Test(attention_static, window_evicts_only_hidden_keys_and_bounds_memory) {
    uint64_t seed = fixture_seed("attention-window");
    dc_requests rq;
    make_requests(&rq, 6, 10, 30, 10, 30, seed);
    const char *kv[] = {"window=7"};
    g_static = (llmlab_attn_pattern){.size = sizeof g_static, .block = 1, .window_blocks = 7};
    assert_equals_masked("window", kv, 1, &rq, 0, 0);
    /* the last step's cache holds 21 + 48 - 1 positions; all but the newest 7 went */
    assert_bounded("window", kv, 1, (7 + 3) / 4 + 1, 0, 21 + 48 - 1 - 7);
    assert_bounded("window", kv, 1, (7 + 3) / 4 + 1, 5, 21 + 48 - 1 - 7); /* prompt in chunks */
    dc_requests_free(&rq);
}

/* The positions lane `lane` of request req holds in a final cache. */
static int lane_holds(const kv_snapshot *s, int req, int lane, int32_t p) {
    for (int slot = 0; slot < s->len[req]; slot++)
        if (kvs_lane_pos(s, req, slot, lane) == p) return 1;
    return 0;
}

/* 3 sinks + window 6, both position modes: the probe checks after every step that
 * the sinks and positions next-5 .. next-1 are cached and nothing else; outputs
 * and logits equal the unevicted masked run (shifted too: ranks count visible keys,
 * and eviction only removes invisible ones); the sinks are still in every lane of
 * the final caches; one request stays within ceil((3+6)/4)+1 = 4 blocks. */
Test(attention_static, sinks_are_never_evicted_and_budget_holds) {
    uint64_t seed = fixture_seed("attention-sinks");
    dc_requests rq;
    make_requests(&rq, 6, 2, 30, 10, 30, seed);
    for (int shifted = 0; shifted < 2; shifted++) {
        const char *kv[] = {"sinks=3", "window=6", shifted ? "positions=shifted" : "positions=original"};
        g_static = (llmlab_attn_pattern){
            .size = sizeof g_static, .block = 1, .global_blocks = 3, .window_blocks = 6, .rope_shifted = shifted};
        assert_equals_masked("sinks", kv, 3, &rq, 0, 0);
        kv_snapshot snap = {0};
        at_opts o = {.attention = "sinks", .kv = kv, .n_kv = 3, .snap = &snap};
        llmlab_run_result *r = at_run(g_fm.m, &o, &rq, NULL);
        for (int i = 0; i < rq.n; i++)
            for (int lane = 0; lane < snap.n_lanes; lane++) {
                int held = 0;
                for (int slot = 0; slot < snap.len[i]; slot++) held += kvs_lane_pos(&snap, i, slot, lane) >= 0;
                cr_assert_leq(held, 3 + 6, "request %d lane %d holds %d tokens", i, lane, held);
                for (int32_t p = 0; p < 3 && p < rq.reqs[i].prompt_len; p++)
                    cr_assert(lane_holds(&snap, i, lane, p), "request %d lane %d: sink %d evicted", i, lane, p);
            }
        kvs_free(&snap);
        llmlab_run_result_free(r);
        assert_bounded("sinks", kv, 3, (3 + 6 + 3) / 4 + 1, 0, 21 + 48 - 1 - 6 - 3);
    }
    dc_requests_free(&rq);
}

/* ---- shifted positions, by hand ------------------------------------------------------------ */

enum { HD = 4 };
static const float g_inv[HD / 2] = {1.0f, 0.25f};

/* x rotated at position r with explicit cos/sin of r * inv_freq[i] (rotate_half:
 * element i pairs with element i + HD/2). */
static void rot(double out[HD], const float x[HD], int r) {
    for (int i = 0; i < HD / 2; i++) {
        double a = (double)r * (double)g_inv[i], c = cos(a), s = sin(a);
        out[i] = x[i] * c - x[i + HD / 2] * s;
        out[i + HD / 2] = x[i + HD / 2] * c + x[i] * s;
    }
}

/* softmax(scale q.k) V over the keys at positions kp[n]: the query rotated at qr,
 * key j at kr[j] (K, V: the unrotated rows by position). */
static void expect_attention(double out[HD], const float q[HD], float K[][HD], float V[][HD], const int *kp,
                             const int *kr, int n, int qr, double scale) {
    double qq[HD], kk[HD], s[16], mx = -INFINITY, sum = 0;
    rot(qq, q, qr);
    for (int j = 0; j < n; j++) {
        rot(kk, K[kp[j]], kr[j]);
        s[j] = 0;
        for (int d = 0; d < HD; d++) s[j] += qq[d] * kk[d];
        s[j] *= scale;
        if (s[j] > mx) mx = s[j];
    }
    for (int d = 0; d < HD; d++) out[d] = 0;
    for (int j = 0; j < n; j++) sum += (s[j] = exp(s[j] - mx));
    for (int j = 0; j < n; j++)
        for (int d = 0; d < HD; d++) out[d] += s[j] / sum * V[kp[j]][d];
}

static void assert_close(const float *got, const double *want, int n, const char *what) {
    for (int d = 0; d < n; d++)
        cr_assert(fabs(got[d] - want[d]) <= 1e-6 + 1e-5 * fabs(want[d]), "%s: element %d is %.9g, expected %.9g",
                  what, d, got[d], want[d]);
}

static llmlab_kv *tiny_kv(int n, int head_dim) {
    llmlab_kv *kv;
    llmlab_err err = {0};
    llmlab_kv_opts o = {.n_layers = 1, .n_kv_heads = 1, .head_dim = head_dim, .block_size = 4, .n_blocks = 16,
                        .max_seqs = 1};
    cr_assert_eq(llmlab_kv_create(&kv, &o, &err), LLMLAB_OK, "%s", err.msg);
    int32_t pos[64];
    int first;
    for (int i = 0; i < n; i++) pos[i] = i;
    cr_assert_eq(llmlab_kv_append(kv, 0, n, pos, &first, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_kv_commit(kv, 0);
    return kv;
}

/* One KV head of head_dim 4 holding positions 0..9 (K, V below), queried from
 * position 9 with pattern block 1, 2 sinks, window 3: it sees {0, 1, 7, 8, 9}.
 * inv_freq = {1, 1/4}, so the angles (r * 1, r / 4) rad are, shifted (ranks 0..4):
 *   keys 0, 1, 7, 8 -> (0, 0), (1, 0.25), (2, 0.5), (3, 0.75); query 9 -> (4, 1);
 * original positions:
 *   keys 0, 1, 7, 8 -> (0, 0), (1, 0.25), (7, 1.75), (8, 2); query 9 -> (9, 2.25);
 * and with position 1 evicted as well, shifted (ranks 0..3):
 *   keys 0, 7, 8 -> (0, 0), (1, 0.25), (2, 0.5); query 9 -> (3, 0.75).
 * The kernel must match these by hand, original must differ from shifted when the
 * pattern leaves a hole, and without a hole the two are the same bits. */
Test(attention_static, shifted_positions_match_a_hand_computation) {
    float K[10][HD], V[10][HD], q[HD] = {1.8f, -0.9f, 0.6f, 1.5f};
    for (int p = 0; p < 10; p++)
        for (int d = 0; d < HD; d++) {
            K[p][d] = sinf(0.7f * (float)p + 1.3f * (float)d) + 0.2f;
            V[p][d] = cosf(0.4f * (float)p - 0.9f * (float)d);
        }
    llmlab_kv *sh = tiny_kv(10, HD), *og = tiny_kv(10, HD); /* K before RoPE / K rotated at its position */
    for (int p = 0; p < 10; p++) {
        memcpy(llmlab_kv_k_row(sh, 0, p, 0), K[p], sizeof K[p]);
        memcpy(llmlab_kv_v_row(sh, 0, p, 0), V[p], sizeof V[p]);
        memcpy(llmlab_kv_k_row(og, 0, p, 0), K[p], sizeof K[p]);
        llmlab_cpu_rope(llmlab_kv_k_row(og, 0, p, 0), 1, HD, p, g_inv);
        memcpy(llmlab_kv_v_row(og, 0, p, 0), V[p], sizeof V[p]);
    }
    float q9[HD]; /* original: the engine rotates the query at its position before attention */
    memcpy(q9, q, sizeof q);
    llmlab_cpu_rope(q9, 1, HD, 9, g_inv);
    const float scale = 0.5f; /* 1 / sqrt(HD) */
    int32_t extra[1] = {9};
    llmlab_attn_pattern pat = {.size = sizeof pat, .block = 1, .global_blocks = 2, .window_blocks = 3,
                               .rope_shifted = 1};
    llmlab_attn_keys ks = {.kv = sh, .n_prior = 9, .extra = extra, .n_extra = 1, .pat = &pat, .q_pos = 9,
                           .inv_freq = g_inv};
    llmlab_attn_keys ko = ks;
    ko.kv = og;
    ko.inv_freq = NULL;
    float scores[16], out_s[HD], out_o[HD], ref[HD];
    double want[HD];

    const int vis[] = {0, 1, 7, 8, 9}, ranks[] = {0, 1, 2, 3, 4};
    llmlab_cpu_attention(out_s, q, HD, &ks, scale, scores, NULL);
    expect_attention(want, q, K, V, vis, ranks, 5, 4, scale);
    assert_close(out_s, want, HD, "shifted, keys {0,1,7,8,9} at ranks 0..4");
    llmlab_cpu_attention_ref(ref, q, HD, &ks, scale);
    assert_close(ref, want, HD, "shifted, double-precision reference kernel");

    llmlab_cpu_attention(out_o, q9, HD, &ko, scale, scores, NULL);
    expect_attention(want, q, K, V, vis, vis, 5, 9, scale);
    assert_close(out_o, want, HD, "original, keys {0,1,7,8,9} at their positions");
    double diff = 0;
    for (int d = 0; d < HD; d++) diff = fmax(diff, fabs(out_o[d] - out_s[d]));
    cr_assert_gt(diff, 1e-3, "original and shifted positions should differ across the hole (max diff %g)", diff);

    llmlab_attn_pattern all = pat; /* window 10: no hole, ranks are positions */
    all.window_blocks = 10;
    ks.pat = ko.pat = &all;
    llmlab_cpu_attention(out_s, q, HD, &ks, scale, scores, NULL);
    llmlab_cpu_attention(out_o, q9, HD, &ko, scale, scores, NULL);
    cr_assert(memcmp(out_s, out_o, sizeof out_s) == 0, "without a hole shifted and original must be the same bits");
    ks.pat = ko.pat = &pat;

    llmlab_err err = {0};
    int slot1 = 1;
    cr_assert_eq(llmlab_kv_evict(sh, 0, &slot1, 1, &err), LLMLAB_OK, "%s", err.msg);
    const int vis2[] = {0, 7, 8, 9}, ranks2[] = {0, 1, 2, 3};
    llmlab_cpu_attention(out_s, q, HD, &ks, scale, scores, NULL);
    expect_attention(want, q, K, V, vis2, ranks2, 4, 3, scale);
    assert_close(out_s, want, HD, "shifted, position 1 evicted: keys {0,7,8,9} at ranks 0..3");
    llmlab_kv_free(sh);
    llmlab_kv_free(og);
}

/* ---- sparse patterns: hand masks ------------------------------------------------------------- */

/* What a plugin gives the engine: its create() run against a host whose
 * engine_set_pattern records the pattern. */
static llmlab_attn_pattern g_cap;
static uint8_t g_cap_layout[256 * 256];

static llmlab_status cap_set_pattern(llmlab_engine *e, const llmlab_attn_pattern *p, llmlab_err *err) {
    g_cap = *p;
    if (p->layout) {
        cr_assert_leq(p->layout_blocks, 256);
        memcpy(g_cap_layout, p->layout, (size_t)p->layout_blocks * (size_t)p->layout_blocks);
        g_cap.layout = g_cap_layout;
    }
    return LLMLAB_OK;
}

static llmlab_attn_pattern capture(const char *plugin, const char *const *kv, int n) {
    const llmlab_plugin_desc *d = llmlab_registry_find(g_reg, LLMLAB_PLUGIN_ATTENTION, plugin);
    cr_assert(d);
    llmlab_param_value vals[16];
    char keys[16][64];
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - kv[i]), kv[i]);
        llmlab_param_value_from_text(&vals[i], keys[i], eq + 1);
    }
    llmlab_params *p = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_params_create(&p, d, vals, n, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_host h = *llmlab_host_table();
    h.engine_set_pattern = cap_set_pattern;
    const llmlab_attention_ops *ops = d->ops;
    void *self = NULL;
    memset(&g_cap, 0, sizeof g_cap);
    cr_assert_eq(ops->create(&self, &h, NULL, p, &err), LLMLAB_OK, "%s: %s", plugin, err.msg);
    ops->destroy(self);
    llmlab_params_free(p);
    cr_assert_eq(g_cap.size, sizeof g_cap, "%s set no pattern", plugin);
    return g_cap;
}

/* BigBird's random blocks, written again from llmlab_pattern_random_blocks'
 * documented rule: all of [lo, hi] when r covers it; else distinct draws, in
 * order, lo + z % span with z the splitmix64 outputs of the stream seeded with
 * seed ^ (qb * golden ratio), duplicates rejected. */
static int rule_random_blocks(uint64_t seed, int qb, int lo, int hi, int r, int *out) {
    const uint64_t golden = 0x9E3779B97F4A7C15ull;
    int span = hi - lo + 1, n = 0;
    if (span <= 0 || r <= 0) return 0;
    if (r >= span) {
        for (int b = lo; b <= hi; b++) out[n++] = b;
        return n;
    }
    uint64_t state = seed ^ ((uint64_t)qb * golden);
    while (n < r) {
        state += golden;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        int b = lo + (int)(z % (uint64_t)span), dup = 0;
        for (int i = 0; i < n; i++) dup |= out[i] == b;
        if (!dup) out[n++] = b;
    }
    return n;
}

/* The random blocks the forward gives a query at q (forward.c's call). */
static int rand_of(const llmlab_attn_pattern *p, int q, int *out) {
    if (p->random_blocks <= 0) return 0;
    int qb = q / p->block;
    return llmlab_pattern_random_blocks(p->seed, qb, p->global_blocks, qb - p->window_blocks, p->random_blocks, out);
}

/* Every query q < n sees exactly the keys marked '1' in mask[q] (q + 1 characters). */
static void assert_mask(const llmlab_attn_pattern *p, char mask[][64], int n, const char *what) {
    for (int q = 0; q < n; q++) {
        int rand[LLMLAB_MAX_RANDOM_BLOCKS], nr = rand_of(p, q, rand);
        cr_assert_eq((int)strlen(mask[q]), q + 1, "%s: mask row %d", what, q);
        for (int k = 0; k <= q; k++)
            cr_assert_eq(llmlab_pattern_sees(p, q, k, rand, nr), mask[q][k] == '1', "%s: query %d key %d: %s", what,
                         q, k, mask[q][k] == '1' ? "should be visible" : "should be hidden");
    }
}

/* The attention kernel over a cache of n random keys equals a double-precision
 * softmax over exactly the mask's keys (and so does the reference kernel). */
static void assert_kernel_follows_mask(const llmlab_attn_pattern *p, char mask[][64], int n, uint64_t seed,
                                       const char *what) {
    enum { D = 8 };
    llmlab_kv *kv = tiny_kv(n, D);
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 91);
    float K[64][D], V[64][D], q[D];
    for (int s = 0; s < n; s++)
        for (int d = 0; d < D; d++) {
            llmlab_kv_k_row(kv, 0, s, 0)[d] = K[s][d] = (float)llmlab_rng_normal(&g);
            llmlab_kv_v_row(kv, 0, s, 0)[d] = V[s][d] = (float)llmlab_rng_normal(&g);
        }
    for (int qp = 0; qp < n; qp++) {
        for (int d = 0; d < D; d++) q[d] = (float)llmlab_rng_normal(&g);
        int32_t extra[1] = {qp};
        int rand[LLMLAB_MAX_RANDOM_BLOCKS], nr = rand_of(p, qp, rand);
        llmlab_attn_keys keys = {.kv = kv, .n_prior = qp, .extra = extra, .n_extra = 1, .pat = p, .q_pos = qp,
                                 .rand = rand, .n_rand = nr};
        float out[D], ref[D], scores[64];
        double want[D] = {0}, s[64], mx = -INFINITY, sum = 0;
        for (int k = 0; k <= qp; k++) {
            if (mask[qp][k] != '1') continue;
            s[k] = 0;
            for (int d = 0; d < D; d++) s[k] += (double)q[d] * K[k][d];
            s[k] /= sqrt((double)D);
            if (s[k] > mx) mx = s[k];
        }
        for (int k = 0; k <= qp; k++)
            if (mask[qp][k] == '1') sum += (s[k] = exp(s[k] - mx));
        for (int k = 0; k <= qp; k++)
            for (int d = 0; mask[qp][k] == '1' && d < D; d++) want[d] += s[k] / sum * V[k][d];
        llmlab_cpu_attention(out, q, D, &keys, 1.0f / sqrtf((float)D), scores, NULL);
        llmlab_cpu_attention_ref(ref, q, D, &keys, 1.0f / sqrtf((float)D));
        char w[128];
        snprintf(w, sizeof w, "%s, query %d", what, qp);
        assert_close(out, want, D, w);
        assert_close(ref, want, D, w);
    }
    llmlab_kv_free(kv);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Block 2, 12 tokens (6 blocks). */
Test(attention_static, sparse_patterns_match_hand_masks) {
    uint64_t seed = fixture_seed("attention-sparse-masks");

    /* Longformer, 1 global block, window 2 blocks: query block qb sees blocks 0,
     * qb - 1 and qb (its own up to the query). */
    const char *lf[] = {"pattern=longformer", "block=2", "global=1", "window=2"};
    llmlab_attn_pattern p = capture("sparse", lf, 4);
    cr_assert(p.block == 2 && p.global_blocks == 1 && p.window_blocks == 2 && p.random_blocks == 0 && !p.layout &&
              !p.rope_shifted);
    char lf_mask[12][64] = {"1",         "11",         "111",         "1111",
                            "11111",     "111111",     "1100111",     "11001111",
                            "110000111", "1100001111", "11000000111", "110000001111"};
    assert_mask(&p, lf_mask, 12, "longformer");
    assert_kernel_follows_mask(&p, lf_mask, 12, seed, "longformer");

    /* The defaults: block 16, 1 global block, window 3 blocks. */
    const char *lf_default[] = {"pattern=longformer"};
    p = capture("sparse", lf_default, 1);
    cr_assert(p.block == 16 && p.global_blocks == 1 && p.window_blocks == 3 && p.random_blocks == 0);

    /* BigBird, 1 global block, window 1 (the query's own block), 2 random blocks
     * from [1, qb - 1]: none for blocks 0 and 1, all of it for block 2 ({1}) and
     * block 3 ({1, 2}), two draws of the rule for blocks 4 and 5. */
    const char *bb[] = {"pattern=bigbird", "block=2", "global=1", "window=1", "random=2", "seed=12345"};
    p = capture("sparse", bb, 6);
    cr_assert(p.block == 2 && p.global_blocks == 1 && p.window_blocks == 1 && p.random_blocks == 2 &&
              p.seed == 12345 && !p.layout);
    int r[LLMLAB_MAX_RANDOM_BLOCKS], want[LLMLAB_MAX_RANDOM_BLOCKS];
    cr_assert_eq(llmlab_pattern_random_blocks(p.seed, 2, 1, 1, 2, r), 1);
    cr_assert_eq(r[0], 1);
    cr_assert_eq(llmlab_pattern_random_blocks(p.seed, 3, 1, 2, 2, r), 2);
    cr_assert(r[0] == 1 && r[1] == 2);
    char bb_mask[12][64];
    for (int q = 0; q < 12; q++) {
        int qb = q / 2, n = rule_random_blocks(p.seed, qb, 1, qb - 1, 2, want);
        cr_assert_eq(llmlab_pattern_random_blocks(p.seed, qb, 1, qb - 1, 2, r), n);
        cr_assert(memcmp(r, want, (size_t)n * sizeof *r) == 0, "bigbird: random blocks of block %d", qb);
        for (int k = 0; k <= q; k++) {
            int kb = k / 2, vis = kb < 1 || kb == qb;
            for (int i = 0; i < n; i++) vis |= want[i] == kb;
            bb_mask[q][k] = vis ? '1' : '0';
        }
        bb_mask[q][q + 1] = 0;
    }
    assert_mask(&p, bb_mask, 12, "bigbird");
    assert_kernel_follows_mask(&p, bb_mask, 12, seed + 1, "bigbird");

    /* A layout file (a comment, CRLF line ends, a short row, a row padded with 0):
     *   block 0: 0        block 3: 1 3
     *   block 1: 1        block 4: 0 4
     *   block 2: 0 2      block 5: 1 4 5
     * and no global or window term unless given. */
    char path[300];
    snprintf(path, sizeof path, "%s/layout.txt", g_tmp);
    write_file(path, "# 6 query blocks\r\n1\r\n01\n101\n0101\n100010\n010011");
    char lay[320];
    snprintf(lay, sizeof lay, "layout=%s", path);
    const char *ly[] = {"pattern=layout", "block=2", lay};
    p = capture("sparse", ly, 3);
    cr_assert(p.block == 2 && p.global_blocks == 0 && p.window_blocks == 0 && p.random_blocks == 0 &&
              p.layout_blocks == 6 && p.layout);
    char ly_mask[12][64] = {"1",         "11",         "001",         "0011",
                            "11001",     "110011",     "0011001",     "00110011",
                            "110000001", "1100000011", "00110000111", "001100001111"};
    assert_mask(&p, ly_mask, 12, "layout");
    assert_kernel_follows_mask(&p, ly_mask, 12, seed + 2, "layout");
}

/* BigBird's random blocks come from the seed alone: the same seed gives the same
 * blocks (also through a second plugin instance), another seed changes some. */
Test(attention_static, bigbird_random_blocks_are_reproducible_from_the_seed) {
    const char *a[] = {"pattern=bigbird", "block=4", "global=2", "window=2", "random=3", "seed=777"};
    const char *b[] = {"pattern=bigbird", "block=4", "global=2", "window=2", "random=3", "seed=778"};
    llmlab_attn_pattern pa = capture("sparse", a, 6), pa2 = capture("sparse", a, 6), pb = capture("sparse", b, 6);
    cr_assert(memcmp(&pa, &pa2, sizeof pa) == 0);
    int changed = 0;
    for (int qb = 0; qb < 64; qb++) {
        int x[LLMLAB_MAX_RANDOM_BLOCKS], y[LLMLAB_MAX_RANDOM_BLOCKS], z[LLMLAB_MAX_RANDOM_BLOCKS];
        int nx = llmlab_pattern_random_blocks(pa.seed, qb, 2, qb - 2, 3, x);
        int ny = llmlab_pattern_random_blocks(pa2.seed, qb, 2, qb - 2, 3, y);
        int nz = llmlab_pattern_random_blocks(pb.seed, qb, 2, qb - 2, 3, z);
        int w[LLMLAB_MAX_RANDOM_BLOCKS], nw = rule_random_blocks(777, qb, 2, qb - 2, 3, w);
        cr_assert(nx == ny && nx == nz && nx == nw && nx == (qb - 3 < 3 ? (qb - 3 > 0 ? qb - 3 : 0) : 3),
                  "block %d: %d random blocks", qb, nx);
        cr_assert(memcmp(x, y, (size_t)nx * sizeof *x) == 0 && memcmp(x, w, (size_t)nx * sizeof *x) == 0);
        for (int i = 0; i < nx; i++) {
            cr_assert(x[i] >= 2 && x[i] <= qb - 2, "block %d draws block %d outside [2, %d]", qb, x[i], qb - 2);
            for (int j = 0; j < i; j++) cr_assert_neq(x[i], x[j], "block %d draws block %d twice", qb, x[i]);
        }
        changed += memcmp(x, z, (size_t)nx * sizeof *x) != 0;
    }
    cr_assert_gt(changed, 10, "seed 778 changed the random blocks of only %d query blocks", changed);
}

/* ---- sparse patterns in the engine ----------------------------------------------------------- */

/* Longformer (block 4, 1 global, window 2) evicts what no later query sees and
 * equals the masked run, with the cache bounded by 1 + 2 + 1 blocks; a layout
 * file evicts a block once no later row marks it; bigbird evicts nothing.  All
 * three equal the unevicted masked run, one-shot and in prompt chunks, with
 * bit-identical logits. */
Test(attention_static, sparse_patterns_in_the_engine_equal_the_masked_run) {
    uint64_t seed = fixture_seed("attention-sparse-engine");
    dc_requests rq;
    make_requests(&rq, 6, 2, 30, 10, 30, seed);

    const char *lf[] = {"pattern=longformer", "block=4", "global=1", "window=2"};
    g_static = capture("sparse", lf, 4);
    assert_equals_masked("sparse", lf, 4, &rq, 0, 0);
    assert_bounded("sparse", lf, 4, 1 + 2 + 1, 0, -1);

    /* 16 query blocks of 4 (64 positions >= prompt + max_new): the diagonal, block
     * 0 for every row, and random earlier blocks. */
    char text[16 * 18 + 1] = "", path[300], lay[320];
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 5);
    for (int r = 0; r < 16; r++) {
        for (int c = 0; c <= r; c++) strcat(text, c == 0 || c == r || llmlab_rng_next(&g) % 4 == 0 ? "1" : "0");
        strcat(text, "\n");
    }
    snprintf(path, sizeof path, "%s/engine_layout.txt", g_tmp);
    write_file(path, text);
    snprintf(lay, sizeof lay, "layout=%s", path);
    const char *ly[] = {"pattern=layout", "block=4", lay};
    g_static = capture("sparse", ly, 3);
    assert_equals_masked("sparse", ly, 3, &rq, 16 * 4, 0);

    const char *bb[] = {"pattern=bigbird", "block=4", "global=1", "window=1", "random=2", "seed=9"};
    g_static = capture("sparse", bb, 6);
    assert_equals_masked("sparse", bb, 6, &rq, 0, 1);
    dc_requests_free(&rq);
}

/* ---- speculative decoding ------------------------------------------------------------------- */

/* Drafts sit at later positions and see their own windows; eviction happens after
 * the step, from the first draft's position on, so it never hides a key a draft
 * needs: prompt_lookup (a chain) and lookahead (mask visibility) decode greedily
 * exactly as autoregressive decoding under window, sinks (shifted) and
 * longformer, with the cache checked after every step. */
Test(attention_static, speculative_decoding_is_exact_under_the_policies) {
    uint64_t seed = fixture_seed("attention-speculative");
    dc_requests rq;
    dc_requests_make_staggered_repetitive(&rq, 6, g_fm.m->cfg.vocab_size, seed);
    const char *win[] = {"window=7"}, *sk[] = {"sinks=3", "window=6"},
               *lf[] = {"pattern=longformer", "block=4", "global=1", "window=2"};
    const char *pl[] = {"num_pred_tokens=4"}, *la[] = {"window=3", "ngram=2", "guess=2"};
    const struct {
        const char *plugin, *const *kv;
        int n;
        llmlab_attn_pattern pat;
    } cases[] = {
        {"window", win, 1, {.size = sizeof(llmlab_attn_pattern), .block = 1, .window_blocks = 7}},
        {"sinks", sk, 2,
         {.size = sizeof(llmlab_attn_pattern), .block = 1, .global_blocks = 3, .window_blocks = 6, .rope_shifted = 1}},
        {"sparse", lf, 4, {.size = sizeof(llmlab_attn_pattern), .block = 4, .global_blocks = 1, .window_blocks = 2}},
    };
    double accepted = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        at_opts ar = {.attention = cases[c].plugin, .kv = cases[c].kv, .n_kv = cases[c].n};
        llmlab_run_result *want = at_run(g_fm.m, &ar, &rq, NULL);
        const char *probe = probe_use(cases[c].plugin, &cases[c].pat, 0, 0);
        for (int m = 0; m < 2; m++) {
            char what[96];
            snprintf(what, sizeof what, "%s under %s %s", m ? "lookahead" : "prompt_lookup", cases[c].plugin,
                     cases[c].kv[0]);
            at_opts o = {.decoding = m ? "lookahead" : "prompt_lookup", .dec_kv = m ? la : pl, .n_dec = m ? 3 : 1,
                         .attention = probe, .kv = cases[c].kv, .n_kv = cases[c].n};
            int left = -1;
            llmlab_run_result *got = at_run(g_fm.m, &o, &rq, &left);
            dc_assert_same(want, got, what);
            cr_assert_eq(left, 0, "%s: %d KV blocks left", what, left);
            accepted += dc_metric(got, "accepted");
            llmlab_run_result_free(got);
        }
        llmlab_run_result_free(want);
    }
    cr_assert_gt(accepted, 0, "no draft was ever accepted: the runs did not exercise multi-token steps");
    dc_requests_free(&rq);
}

/* ---- bad parameters ----------------------------------------------------------------------------- */

static void assert_engine_fails(const char *plugin, const char *const *kv, int n, const char *need1,
                                const char *need2) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    at_opts o = {.attention = plugin, .kv = kv, .n_kv = n};
    cr_assert_neq(at_engine(g_fm.m, &o, &e, &err), LLMLAB_OK, "%s %s: engine created", plugin, kv[0]);
    cr_assert_null(e);
    cr_assert(strstr(err.msg, need1) && (!need2 || strstr(err.msg, need2)), "%s %s: message '%s' should name '%s'%s%s",
              plugin, kv[0], err.msg, need1, need2 ? " and " : "", need2 ? need2 : "");
}

Test(attention_static, bad_parameters_and_layout_files_are_named) {
    const char *w0[] = {"window=0"};
    assert_engine_fails("window", w0, 1, "parameter 'window' = 0", "outside");
    assert_engine_fails("sinks", w0, 1, "parameter 'window' = 0", "outside");
    const char *s_neg[] = {"sinks=-1"};
    assert_engine_fails("sinks", s_neg, 1, "parameter 'sinks' = -1", "outside");
    const char *pos_bad[] = {"positions=rank"};
    assert_engine_fails("sinks", pos_bad, 1, "'positions'", "shifted, original");
    const char *rnd[] = {"pattern=bigbird", "random=17"};
    assert_engine_fails("sparse", rnd, 2, "parameter 'random' = 17", "outside");

    const char *no_file[] = {"pattern=layout"};
    assert_engine_fails("sparse", no_file, 1, "pattern=layout needs layout=<file>", NULL);
    const char *missing[] = {"pattern=layout", "layout=/nonexistent/llmlab-layout.txt"};
    assert_engine_fails("sparse", missing, 2, "cannot open layout file '/nonexistent/llmlab-layout.txt'",
                        "No such file");
    char path[300], lay[320];
    snprintf(path, sizeof path, "%s/bad.txt", g_tmp);
    snprintf(lay, sizeof lay, "layout=%s", path);
    const char *bad[] = {"pattern=layout", lay};
    char where[400];
    write_file(path, "1\n1x\n");
    snprintf(where, sizeof where, "layout file '%s' line 2 column 2", path);
    assert_engine_fails("sparse", bad, 2, where, "'x' is not 0 or 1");
    write_file(path, "1\n011\n");
    snprintf(where, sizeof where, "layout file '%s' line 2", path);
    assert_engine_fails("sparse", bad, 2, where, "marks key block 2, a later block");
    write_file(path, "");
    snprintf(where, sizeof where, "layout file '%s' has no rows", path);
    assert_engine_fails("sparse", bad, 2, where, NULL);
    write_file(path, "1\n11\n");
    const char *lf_with_layout[] = {"pattern=longformer", lay};
    assert_engine_fails("sparse", lf_with_layout, 2, "only read with pattern=layout", "longformer");

    /* A valid layout of 2 blocks x 2 tokens holds 4 positions: a 3-token prompt
     * with max_new 2 (5 tokens) is refused when the sequence starts. */
    const char *two[] = {"pattern=layout", "block=2", lay};
    at_opts o = {.attention = "sparse", .kv = two, .n_kv = 3};
    llmlab_engine *e;
    llmlab_err err = {0};
    cr_assert_eq(at_engine(g_fm.m, &o, &e, &err), LLMLAB_OK, "%s", err.msg);
    int32_t prompt[3] = {5, 17, 42};
    llmlab_request req = {.id = 0, .prompt = prompt, .prompt_len = 3, .max_new = 2};
    llmlab_run_result *res = NULL;
    cr_assert_neq(llmlab_engine_run(e, &req, 1, &res, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "sequence of 5 tokens") &&
                  strstr(err.msg, "exceeds the block-sparse layout of 2 blocks x 2 tokens"),
              "%s", err.msg);
    req.max_new = 1; /* 4 tokens fit */
    cr_assert_eq(llmlab_engine_run(e, &req, 1, &res, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(res->output_len[0], 1);
    llmlab_run_result_free(res);
    llmlab_engine_free(e);
}
