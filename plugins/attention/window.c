/* window.c - sliding-window attention (Mistral 7B, Jiang et al. 2023; the local
 * attention of Longformer / Sparse Transformers).
 *
 * Every query at position q sees the W newest positions q-W+1 .. q, itself
 * included, and nothing older.  The mask is a structured pattern (block 1,
 * window W) the attention kernel evaluates on the fly, so a prompt prefilled in
 * one forward, a prompt fed in chunks and token-by-token decoding all see the
 * same keys.  Memory: after each step the keys no future query can see are
 * evicted; the cache then holds at most W - 1 committed tokens (the rolling
 * buffer of Mistral's reference code), and whole blocks go back to the pool.
 * The eviction never changes an output: it drops only keys the pattern already
 * hides.  (The prompt itself is evicted at its end, not chunk by chunk: the
 * engine starts the attention plugin's sequence once the prompt is in.)
 *
 * Copy this file to start a policy that evicts by position.  docs/attention/window.md. */
#include <stddef.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
    int window; /* W */
} window_state;

static const llmlab_param_spec window_params[] = {
    {"window", LLMLAB_PARAM_INT, "4096", 1, 1 << 24, NULL,
     "tokens each query sees, itself included (Mistral 7B: 4096)"},
};

static llmlab_status window_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_lane) + sizeof h->seq_kv_lane)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "window needs a host with ABI 1.2 (attention patterns)");
    window_state *w = h->alloc(sizeof *w);
    if (!w) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "window: out of memory");
    w->h = h;
    w->window = (int)h->param_int(p, "window");
    /* Block 1: the window counts tokens, not blocks. */
    llmlab_attn_pattern pat = {.size = sizeof pat, .block = 1, .window_blocks = w->window};
    llmlab_status st = h->engine_set_pattern(e, &pat, err);
    if (st) {
        h->free(w);
        return st;
    }
    *self = w;
    return LLMLAB_OK;
}

static void window_destroy(void *self) {
    window_state *w = self;
    if (w) w->h->free(w);
}

static llmlab_status window_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void window_seq_end(void *self, llmlab_seq *s) {}

/* Evicts (in every lane) the committed slots holding positions <= horizon. */
static llmlab_status evict_upto(const llmlab_host *h, llmlab_seq *s, int32_t horizon, llmlab_err *err) {
    int cap = h->seq_kv_len(s);
    int32_t *pos = h->alloc((size_t)cap * sizeof *pos);
    int *slots = h->alloc((size_t)cap * sizeof *slots);
    llmlab_status st = LLMLAB_OK;
    if (!pos || !slots) st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "window: out of memory for %d positions", cap);
    int n = st ? 0 : h->seq_kv_lane(s, 0, pos, NULL, NULL, NULL), k = 0;
    for (int i = 0; i < n; i++)
        if (pos[i] >= 0 && pos[i] <= horizon) slots[k++] = i; /* -1: evicted already */
    if (k > 0 && !(st = h->seq_kv_evict(s, slots, k, err))) h->metric_add(s, "evicted", (double)k);
    h->free(pos);
    h->free(slots);
    return st;
}

/* The next query sits at position next = seq_kv_len (the last accepted token,
 * not cached yet); every later query is further right.  Query q sees p > q - W,
 * so positions p <= next - W are invisible to all of them from now on. */
static llmlab_status window_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    window_state *w = self;
    int32_t horizon = (int32_t)w->h->seq_kv_len(s) - w->window;
    return horizon < 0 ? LLMLAB_OK : evict_upto(w->h, s, horizon, err);
}

static const llmlab_attention_ops window_ops = {
    sizeof(llmlab_attention_ops), window_create, window_destroy, window_seq_begin, window_seq_end, window_after_step,
};

static const llmlab_plugin_desc window_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "window", "1.0",
    "sliding window: each query sees its W newest positions; older keys are evicted",
    window_params, (int)(sizeof window_params / sizeof window_params[0]), &window_ops);

const llmlab_plugin_desc *llmlab_builtin_window(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &window_desc;
}
