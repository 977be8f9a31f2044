/* snapkv.c - SnapKV (Li et al. 2024, "SnapKV: LLM Knows What You are Looking for
 * Before Generation"): compresses the prompt once, when it is in the KV cache.
 *
 * Per lane (layer, KV head): the queries of the observation window (the last
 * `window` prompt positions) vote for the earlier prompt positions with their
 * attention probabilities (the engine's `obs` accumulator: for a KV head, the sum
 * over its GQA group's query heads, i.e. the group average up to a constant);
 * the votes are average-pooled along positions (kernel `kernel`, stride 1, zero
 * padding over the pre-window positions only: PyTorch avg_pool1d with padding
 * kernel/2 and count_include_pad, as SnapKV's code; we rank by the window sums,
 * which is the same order); the `budget - window` best pooled positions stay,
 * together with the whole window; ties keep the older position.  Every other
 * pre-window position is evicted from that lane only (per-head keep sets).
 *
 * Decoding adds tokens without eviction (SnapKV compresses the prompt only), so
 * the engine's attention-mass mode is on but no eviction rule is set.
 * docs/attention/snapkv.md has the details. */
#include <stdlib.h>

#include "plugins/builtins.h"
#include "score_util.h"

typedef struct {
    const llmlab_host *h;
    int window, kernel, budget; /* budget 0 = ratio of the prompt */
    double ratio;
    int lanes;
} snapkv_state;

static const llmlab_param_spec snapkv_params[] = {
    {"window", LLMLAB_PARAM_INT, "64", 1, 1 << 20, NULL, "observation window: the last prompt positions whose queries vote (always kept)"},
    {"kernel", LLMLAB_PARAM_INT, "5", 1, 1 << 16, NULL, "average-pooling kernel along positions (odd)"},
    {"budget", LLMLAB_PARAM_INT, "0", 0, 1 << 24, NULL, "prompt tokens kept per lane, window included (0 = ratio of the prompt); >= window"},
    {"ratio", LLMLAB_PARAM_FLOAT, "0.2", 0, 1, NULL, "budget as a fraction of the prompt length when budget = 0 (at least the window)"},
};

static llmlab_status snapkv_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_enforce) + sizeof h->seq_kv_enforce)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "snapkv needs a host with ABI 1.2 (attention policies)");
    int window = (int)h->param_int(p, "window"), kernel = (int)h->param_int(p, "kernel");
    int budget = (int)h->param_int(p, "budget");
    if (kernel % 2 == 0)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                               "snapkv: kernel (%d) must be odd: the pooling window is centred on each position",
                               kernel);
    if (budget > 0 && budget < window)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                               "snapkv: budget (%d) is below the observation window (%d): the window is always kept",
                               budget, window);
    snapkv_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "snapkv: out of memory");
    a->h = h;
    a->window = window;
    a->kernel = kernel;
    a->budget = budget;
    a->ratio = h->param_float(p, "ratio");
    a->lanes = h->kv_lanes(e);
    llmlab_status st = h->engine_want_mass(e, window, err);
    if (st) {
        h->free(a);
        return st;
    }
    *self = a;
    return LLMLAB_OK;
}

static void snapkv_destroy(void *self) {
    snapkv_state *a = self;
    if (a) a->h->free(a);
}

typedef struct {
    double score; /* pooled votes (window sum) */
    int32_t pos;
    int slot;
} snap_cand;

/* Best first: higher pooled score, then the older position. */
static int snap_cmp(const void *x, const void *y) {
    const snap_cand *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* One lane: keeps the `keep` best pooled positions of [0, P) and evicts the rest. */
static llmlab_status snapkv_lane(snapkv_state *a, llmlab_seq *s, int lane, int P, int keep, int32_t *pos, float *obs,
                                 float *votes, int *slot_of, snap_cand *c, int *ev, llmlab_err *err) {
    const llmlab_host *h = a->h;
    int n = h->seq_kv_lane(s, lane, pos, NULL, obs, NULL);
    for (int p = 0; p < P; p++) votes[p] = 0.0f, slot_of[p] = -1;
    for (int i = 0; i < n; i++)
        if (pos[i] >= 0 && pos[i] < P) votes[pos[i]] = obs[i], slot_of[pos[i]] = i;
    int r = a->kernel / 2, nc = 0;
    for (int p = 0; p < P; p++) {
        if (slot_of[p] < 0) continue; /* already gone from this lane */
        double sum = 0.0;             /* zero padding: positions outside [0, P) add nothing */
        for (int q = p - r; q <= p + r; q++)
            if (q >= 0 && q < P) sum += (double)votes[q];
        c[nc++] = (snap_cand){sum, p, slot_of[p]};
    }
    if (nc <= keep) return LLMLAB_OK;
    qsort(c, (size_t)nc, sizeof *c, snap_cmp);
    int ne = 0;
    for (int i = keep; i < nc; i++) ev[ne++] = c[i].slot;
    return h->seq_kv_evict_lane(s, lane, ev, ne, err);
}

static llmlab_status snapkv_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    snapkv_state *a = self;
    const llmlab_host *h = a->h;
    int L = h->seq_prompt_len(s);
    int budget = llmlab_att_budget(a->budget, a->ratio, L, a->window);
    if (L <= budget) return LLMLAB_OK; /* the prompt fits: nothing to compress */
    int P = L - a->window;             /* pre-window positions (budget >= window, so P > 0) */
    int keep = budget - a->window;
    int tokens = h->seq_kv_len(s);
    int32_t *pos = h->alloc((size_t)tokens * sizeof *pos);
    float *obs = h->alloc((size_t)tokens * sizeof *obs);
    float *votes = h->alloc((size_t)P * sizeof *votes);
    int *slot_of = h->alloc((size_t)P * sizeof *slot_of);
    int *ev = h->alloc((size_t)P * sizeof *ev);
    snap_cand *c = h->alloc((size_t)P * sizeof *c);
    llmlab_status st = LLMLAB_OK;
    if (!pos || !obs || !votes || !slot_of || !ev || !c)
        st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "snapkv: out of memory for a prompt of %d tokens", L);
    for (int lane = 0; lane < a->lanes && !st; lane++)
        st = snapkv_lane(a, s, lane, P, keep, pos, obs, votes, slot_of, c, ev, err);
    if (!st) h->metric_add(s, "evicted", (double)(L - budget));
    h->free(pos);
    h->free(obs);
    h->free(votes);
    h->free(slot_of);
    h->free(ev);
    h->free(c);
    return st;
}

static void snapkv_seq_end(void *self, llmlab_seq *s) {}

static llmlab_status snapkv_after_step(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }

static const llmlab_attention_ops snapkv_ops = {
    sizeof(llmlab_attention_ops), snapkv_create, snapkv_destroy, snapkv_seq_begin, snapkv_seq_end, snapkv_after_step,
};

static const llmlab_plugin_desc snapkv_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_ATTENTION, "snapkv", "1.0",
                            "SnapKV: compresses the prompt per KV head to the window plus the positions its "
                            "queries attend to most (pooled)",
                            snapkv_params, (int)(sizeof snapkv_params / sizeof snapkv_params[0]), &snapkv_ops);

const llmlab_plugin_desc *llmlab_builtin_snapkv(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &snapkv_desc;
}
