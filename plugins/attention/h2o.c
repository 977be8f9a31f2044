/* h2o.c - Heavy-Hitter Oracle (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle for
 * Efficient Generative Inference of Large Language Models").
 *
 * Every lane (layer, KV head) keeps at most heavy + recent tokens: the `recent`
 * newest positions, always, and the `heavy` others with the largest accumulated
 * attention (the column sums of the attention matrix over every committed query;
 * for a KV head, over the query heads of its GQA group).  Keep sets are per lane,
 * so heads keep different tokens and the freed slots really return memory (the
 * engine compacts the cache lane by lane).
 *
 * seq_begin: budgets from the prompt length (ratios, or absolute counts), the
 * rule {capacity heavy + recent, recent, no sinks, accumulated mass} and one
 * enforcement of it (prompt-time eviction).  From then on the engine applies the
 * rule after each committed decode token, and simulates it inside a speculative
 * chain, so speculative decoding evicts exactly as autoregressive decoding does.
 * after_step only checks the budgets and counts evictions (metric "evicted").
 * docs/attention/h2o.md has the details. */
#include "plugins/builtins.h"
#include "score_util.h"

typedef struct {
    const llmlab_host *h;
    int heavy, recent;              /* absolute counts, 0 = from the ratio */
    double heavy_ratio, recent_ratio;
    llmlab_att_track track;
    struct h2o_cap {                /* capacity per live sequence, for the budget check */
        const llmlab_seq *s;
        int capacity;
        struct h2o_cap *next;
    } *caps;
} h2o_state;

static const llmlab_param_spec h2o_params[] = {
    {"heavy", LLMLAB_PARAM_INT, "0", 0, 1 << 24, NULL, "heavy-hitter tokens kept per lane (0 = heavy_ratio of the prompt)"},
    {"recent", LLMLAB_PARAM_INT, "0", 0, 1 << 24, NULL, "newest tokens always kept per lane (0 = recent_ratio of the prompt)"},
    {"heavy_ratio", LLMLAB_PARAM_FLOAT, "0.1", 0, 1, NULL, "heavy budget as a fraction of the prompt length (at least 1)"},
    {"recent_ratio", LLMLAB_PARAM_FLOAT, "0.1", 0, 1, NULL, "recent budget as a fraction of the prompt length (at least 1)"},
};

static llmlab_status h2o_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_enforce) + sizeof h->seq_kv_enforce)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "h2o needs a host with ABI 1.2 (attention policies)");
    h2o_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "h2o: out of memory");
    a->h = h;
    a->heavy = (int)h->param_int(p, "heavy");
    a->recent = (int)h->param_int(p, "recent");
    a->heavy_ratio = h->param_float(p, "heavy_ratio");
    a->recent_ratio = h->param_float(p, "recent_ratio");
    llmlab_status st = llmlab_att_track_start(&a->track, h, e, err);
    if (st) {
        h->free(a);
        return st;
    }
    *self = a;
    return LLMLAB_OK;
}

static void h2o_destroy(void *self) {
    h2o_state *a = self;
    if (!a) return;
    while (a->caps) {
        struct h2o_cap *c = a->caps;
        a->caps = c->next;
        a->h->free(c);
    }
    llmlab_att_track_free(&a->track);
    a->h->free(a);
}

static int h2o_capacity(const h2o_state *a, const llmlab_seq *s) {
    for (const struct h2o_cap *c = a->caps; c; c = c->next)
        if (c->s == s) return c->capacity;
    return 0;
}

static llmlab_status h2o_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    h2o_state *a = self;
    const llmlab_host *h = a->h;
    int L = h->seq_prompt_len(s);
    int heavy = llmlab_att_budget(a->heavy, a->heavy_ratio, L, 1);
    int recent = llmlab_att_budget(a->recent, a->recent_ratio, L, 1);
    struct h2o_cap *c = h->alloc(sizeof *c);
    if (!c) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "h2o: out of memory");
    c->s = s;
    c->capacity = heavy + recent;
    c->next = a->caps;
    a->caps = c;
    llmlab_evict_rule rule = {sizeof rule, heavy + recent, recent, 0, LLMLAB_SCORE_MASS};
    llmlab_status st = h->seq_set_evict_rule(s, &rule, err);
    if (!st) st = h->seq_kv_enforce(s, err); /* the prompt: every lane down to heavy + recent */
    if (!st) st = llmlab_att_track_step(&a->track, s, c->capacity, "h2o", err);
    return st;
}

/* The engine skips after_step in a sequence's last step: count its evictions here
 * (the cache is still there). */
static void h2o_seq_end(void *self, llmlab_seq *s) {
    h2o_state *a = self;
    llmlab_att_track_step(&a->track, s, 0, "h2o", NULL);
    for (struct h2o_cap **pp = &a->caps; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            struct h2o_cap *c = *pp;
            *pp = c->next;
            a->h->free(c);
            break;
        }
    llmlab_att_track_end(&a->track, s);
}

/* The engine already applied the rule to every committed token. */
static llmlab_status h2o_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    h2o_state *a = self;
    return llmlab_att_track_step(&a->track, s, h2o_capacity(a, s), "h2o", err);
}

static const llmlab_attention_ops h2o_ops = {
    sizeof(llmlab_attention_ops), h2o_create, h2o_destroy, h2o_seq_begin, h2o_seq_end, h2o_after_step,
};

static const llmlab_plugin_desc h2o_desc =
    LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_ATTENTION, "h2o", "1.0",
                            "Heavy-Hitter Oracle: per KV head, the recent tokens plus the heavy hitters of "
                            "accumulated attention",
                            h2o_params, (int)(sizeof h2o_params / sizeof h2o_params[0]), &h2o_ops);

const llmlab_plugin_desc *llmlab_builtin_h2o(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &h2o_desc;
}
