/* topk_twist.c - an example out-of-tree decoding plugin: top-k sampling with a
 * repetition penalty (the "twist"), as in CTRL: before sampling, the logit of
 * every token already in the sequence is divided by `penalty` when positive and
 * multiplied by it when negative.  Not lossless: it changes the distribution on
 * purpose.  Everything it needs from llmlab comes through the host table. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "llmlab/plugin.h"

typedef struct {
    const llmlab_host *h;
    int k;
    double penalty, temperature;
    int vocab;
    float *work; /* [vocab] penalised logits */
} twist;

static llmlab_status twist_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                  llmlab_err *err) {
    twist *t = h->alloc(sizeof *t);
    if (!t) return LLMLAB_ENOMEM;
    t->h = h;
    t->k = (int)h->param_int(p, "k");
    t->penalty = h->param_float(p, "penalty");
    t->temperature = h->param_float(p, "temperature");
    t->vocab = h->model_vocab(e);
    t->work = h->alloc(sizeof(float) * (size_t)t->vocab);
    if (!t->work) {
        h->free(t);
        return LLMLAB_ENOMEM;
    }
    *self = t;
    return LLMLAB_OK;
}

static void twist_destroy(void *self) {
    twist *t = self;
    if (!t) return;
    t->h->free(t->work);
    t->h->free(t);
}

static llmlab_status twist_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void twist_seq_end(void *self, llmlab_seq *s) {}

static llmlab_status twist_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((twist *)self)->h;
    int32_t last = H->seq_tokens(s)[H->seq_len(s) - 1];
    return H->step_add(st, s, last, H->seq_kv_len(s), LLMLAB_ROW_LOGITS, -1) < 0 ? LLMLAB_ENOKV : LLMLAB_OK;
}

/* Top-k of the penalised logits, softmax at the temperature, one draw from the
 * sequence's seeded stream. */
static int32_t twist_draw(twist *t, llmlab_seq *s) {
    int top[256];
    int k = t->k < 256 ? t->k : 256, n = 0;
    for (int v = 0; v < t->vocab; v++) { /* insertion into a sorted top-k list */
        int pos = n < k ? n++ : k;
        while (pos > 0 && t->work[top[pos - 1]] < t->work[v]) {
            if (pos < k) top[pos] = top[pos - 1];
            pos--;
        }
        if (pos < k) top[pos] = v;
    }
    double w[256], sum = 0;
    for (int i = 0; i < n; i++) sum += (w[i] = exp((t->work[top[i]] - t->work[top[0]]) / t->temperature));
    double u = (double)(t->h->seq_rng_next(s) >> 11) * 0x1.0p-53 * sum;
    for (int i = 0; i < n; i++)
        if ((u -= w[i]) < 0) return top[i];
    return top[n - 1];
}

static llmlab_status twist_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    twist *t = self;
    const llmlab_host *H = t->h;
    int rows[512], n = H->step_rows(st, s, rows, 512);
    if (n <= 0) return LLMLAB_OK;
    int last = rows[(n < 512 ? n : 512) - 1], slot = H->step_slot(st, last);
    llmlab_status r;
    if (slot >= H->seq_kv_len(s) && (r = H->seq_kv_keep(s, &slot, 1, err))) return r;
    memcpy(t->work, H->step_logits(st, last), sizeof(float) * (size_t)t->vocab);
    const int32_t *seen = H->seq_tokens(s);
    for (int i = 0; i < H->seq_len(s); i++) {
        float *l = &t->work[seen[i]];
        *l = *l > 0 ? (float)(*l / t->penalty) : (float)(*l * t->penalty);
    }
    int32_t tok = twist_draw(t, s);
    if (H->size >= offsetof(llmlab_host, metric_add) + sizeof H->metric_add) /* probe, as for any later addition */
        H->metric_add(s, "penalised", (double)H->seq_len(s));
    return H->seq_accept(s, &tok, 1, err);
}

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), twist_create, twist_destroy, twist_seq_begin,
    twist_seq_end, twist_propose, twist_verify,
};

static const llmlab_param_spec params[] = {
    {"k", LLMLAB_PARAM_INT, "40", 1, 256, NULL, "sample among the k most likely tokens"},
    {"penalty", LLMLAB_PARAM_FLOAT, "1.3", 1, 10, NULL, "repetition penalty on tokens already in the sequence"},
    {"temperature", LLMLAB_PARAM_FLOAT, "1.0", 0.01, 100, NULL, "softmax temperature over the top k"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "topk_twist", "1.0", "top-k sampling with a repetition penalty (example plugin)",
    params, 3, &ops);

/* The one exported symbol (LLMLAB_PLUGIN_ENTRY_SYMBOL). */
const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t host_major, uint32_t host_minor, const llmlab_host *host);
const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t host_major, uint32_t host_minor, const llmlab_host *host) {
    return &desc;
}
