/* sinks.c - attention sinks plus a sliding window (StreamingLLM, Xiao et al.
 * 2024, "Efficient Streaming Language Models with Attention Sinks").
 *
 * Softmax attention parks a large share of its probability on the first few
 * tokens whatever they say; a plain window that drops them breaks the model as
 * soon as the text outgrows the window.  StreamingLLM keeps those S "sink"
 * tokens forever next to the W newest ones: a query at position q sees positions
 * 0 .. S-1 and q-W+1 .. q (itself included), S + W keys at most.
 *
 * Positions.  StreamingLLM gives the cached tokens their place in the cache, not
 * in the text: keys are cached before RoPE, and the query and each visible key
 * are rotated at their rank among the visible keys (the cache [0 1 2 3 | 6 7 8]
 * and query 9 become positions 0..6 and 7).  Relative distances then never
 * exceed S + W, which is what lets the model run past its training length.
 * positions=original keeps the text positions (RoPE applied once, when cached),
 * as a plain masked model would.
 *
 * Memory: after each step every key that is neither a sink nor inside the window
 * of the next query is evicted, so at most S + W - 1 tokens stay cached.  The
 * eviction drops only keys the pattern hides, so outputs equal the masked
 * computation exactly (with shifted positions too: ranks count visible keys).
 * docs/attention/sinks.md. */
#include <stddef.h>
#include <string.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
    int sinks, window; /* S, W */
} sinks_state;

static const char *const sinks_positions[] = {"shifted", "original", NULL};

static const llmlab_param_spec sinks_params[] = {
    {"sinks", LLMLAB_PARAM_INT, "4", 0, 1 << 24, NULL, "first positions kept for ever (attention sinks)"},
    {"window", LLMLAB_PARAM_INT, "1020", 1, 1 << 24, NULL, "newest positions each query sees, itself included"},
    {"positions", LLMLAB_PARAM_ENUM, "shifted", 1, 0, sinks_positions,
     "RoPE positions: shifted = rank in the cache (StreamingLLM), original = position in the text"},
};

static llmlab_status sinks_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                  llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_lane) + sizeof h->seq_kv_lane)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "sinks needs a host with ABI 1.2 (attention patterns)");
    sinks_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sinks: out of memory");
    a->h = h;
    a->sinks = (int)h->param_int(p, "sinks");
    a->window = (int)h->param_int(p, "window");
    /* Block 1: sinks and window count tokens.  Global blocks are the sinks. */
    llmlab_attn_pattern pat = {.size = sizeof pat,
                               .block = 1,
                               .global_blocks = a->sinks,
                               .window_blocks = a->window,
                               .rope_shifted = strcmp(h->param_string(p, "positions"), "shifted") == 0};
    llmlab_status st = h->engine_set_pattern(e, &pat, err);
    if (st) {
        h->free(a);
        return st;
    }
    *self = a;
    return LLMLAB_OK;
}

static void sinks_destroy(void *self) {
    sinks_state *a = self;
    if (a) a->h->free(a);
}

static llmlab_status sinks_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void sinks_seq_end(void *self, llmlab_seq *s) {}

/* Evicts (in every lane) the committed slots holding positions lo .. hi. */
static llmlab_status evict_range(const llmlab_host *h, llmlab_seq *s, int32_t lo, int32_t hi, llmlab_err *err) {
    int cap = h->seq_kv_len(s);
    int32_t *pos = h->alloc((size_t)cap * sizeof *pos);
    int *slots = h->alloc((size_t)cap * sizeof *slots);
    llmlab_status st = LLMLAB_OK;
    if (!pos || !slots) st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sinks: out of memory for %d positions", cap);
    int n = st ? 0 : h->seq_kv_lane(s, 0, pos, NULL, NULL, NULL), k = 0;
    for (int i = 0; i < n; i++)
        if (pos[i] >= lo && pos[i] <= hi) slots[k++] = i; /* -1 (evicted already) is below lo */
    if (k > 0 && !(st = h->seq_kv_evict(s, slots, k, err))) h->metric_add(s, "evicted", (double)k);
    h->free(pos);
    h->free(slots);
    return st;
}

/* Every later query q >= next = seq_kv_len sees p < S or p > q - W, so the
 * positions S .. next - W are gone for good.  The sinks are never touched. */
static llmlab_status sinks_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    sinks_state *a = self;
    int32_t horizon = (int32_t)a->h->seq_kv_len(s) - a->window;
    return horizon < a->sinks ? LLMLAB_OK : evict_range(a->h, s, a->sinks, horizon, err);
}

static const llmlab_attention_ops sinks_ops = {
    sizeof(llmlab_attention_ops), sinks_create, sinks_destroy, sinks_seq_begin, sinks_seq_end, sinks_after_step,
};

static const llmlab_plugin_desc sinks_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "sinks", "1.0",
    "StreamingLLM: S attention-sink tokens plus a window of W recent ones, positions by cache rank",
    sinks_params, (int)(sizeof sinks_params / sizeof sinks_params[0]), &sinks_ops);

const llmlab_plugin_desc *llmlab_builtin_sinks(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &sinks_desc;
}
