/* tova.c - Token Omission Via Attention (Oren et al. 2024, "Transformers are
 * Multi-State RNNs").
 *
 * A fixed budget of tokens per lane (layer, KV head).  After the prompt, each
 * lane keeps the `budget` tokens the prompt's last query attends to most; then,
 * after every committed decode token, while a lane holds more than `budget`
 * tokens, the one the newest query attends to least is dropped (the newest token
 * itself included: no recent window, as in the paper).  Optional `sinks`: the
 * first positions are never dropped.
 *
 * The choice is made per KV head (a KV head's score sums the probabilities of its
 * GQA group's query heads), where the paper averages over all heads of a layer and
 * drops the same token from every head.  Per-head keep sets are what frees memory
 * in this engine: the cache is compacted lane by lane, so every lane's count, not
 * a layer's union of them, decides the blocks in use.
 *
 * The engine applies the rule {capacity budget, recent 0, sinks, last query} itself
 * (and simulates it inside speculative chains); after_step only checks budgets
 * and counts evictions (metric "evicted").  docs/attention/tova.md. */
#include "plugins/builtins.h"
#include "score_util.h"

typedef struct {
    const llmlab_host *h;
    int budget, sinks;
    llmlab_att_track track;
} tova_state;

static const llmlab_param_spec tova_params[] = {
    {"budget", LLMLAB_PARAM_INT, "512", 1, 1 << 24, NULL, "tokens kept per lane (layer, KV head)"},
    {"sinks", LLMLAB_PARAM_INT, "0", 0, 1 << 24, NULL, "first positions never dropped (attention sinks); < budget"},
};

static llmlab_status tova_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_enforce) + sizeof h->seq_kv_enforce)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "tova needs a host with ABI 1.2 (attention policies)");
    int budget = (int)h->param_int(p, "budget"), sinks = (int)h->param_int(p, "sinks");
    if (sinks >= budget)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                               "tova: sinks (%d) must be smaller than budget (%d): the budget holds the sinks and "
                               "at least one token chosen by attention",
                               sinks, budget);
    tova_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "tova: out of memory");
    a->h = h;
    a->budget = budget;
    a->sinks = sinks;
    llmlab_status st = llmlab_att_track_start(&a->track, h, e, err);
    if (st) {
        h->free(a);
        return st;
    }
    *self = a;
    return LLMLAB_OK;
}

static void tova_destroy(void *self) {
    tova_state *a = self;
    if (!a) return;
    llmlab_att_track_free(&a->track);
    a->h->free(a);
}

static llmlab_status tova_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    tova_state *a = self;
    llmlab_evict_rule rule = {sizeof rule, a->budget, 0, a->sinks, LLMLAB_SCORE_LAST};
    llmlab_status st = a->h->seq_set_evict_rule(s, &rule, err);
    if (!st) st = a->h->seq_kv_enforce(s, err); /* the prompt, by its last query's attention */
    if (!st) st = llmlab_att_track_step(&a->track, s, a->budget, "tova", err);
    return st;
}

static void tova_seq_end(void *self, llmlab_seq *s) {
    tova_state *a = self;
    llmlab_att_track_step(&a->track, s, 0, "tova", NULL); /* the last step: no after_step */
    llmlab_att_track_end(&a->track, s);
}

static llmlab_status tova_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    tova_state *a = self;
    return llmlab_att_track_step(&a->track, s, a->budget, "tova", err);
}

static const llmlab_attention_ops tova_ops = {
    sizeof(llmlab_attention_ops), tova_create, tova_destroy, tova_seq_begin, tova_seq_end, tova_after_step,
};

static const llmlab_plugin_desc tova_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_ATTENTION, "tova", "1.0",
                            "TOVA: a fixed budget per KV head; drops the token the newest query attends to least",
                            tova_params, (int)(sizeof tova_params / sizeof tova_params[0]), &tova_ops);

const llmlab_plugin_desc *llmlab_builtin_tova(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &tova_desc;
}
