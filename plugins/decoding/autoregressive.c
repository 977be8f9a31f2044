/* autoregressive.c - the baseline decoding plugin: one token per step.
 *
 * propose: forward the last accepted token.  verify: draw the next token from its
 * logits (greedy when temperature is 0) and keep its KV slot.  The first token
 * after the prompt comes from the prompt's last row, which the engine has already
 * committed: that is why verify keeps a slot only when it is still provisional.
 * Copy this file to start a new decoding plugin (docs/plugins.md). */
#include "llmlab/plugin.h"
#include "sampling_params.h"

typedef struct {
    const llmlab_host *h; /* the host table: every call back into llmlab goes through it */
} ar_state;

static llmlab_status ar_create(void **self, const llmlab_host *h, llmlab_engine *e,
                               const llmlab_params *p, llmlab_err *err) {
    ar_state *a = h->alloc(sizeof *a);
    if (!a) return LLMLAB_ENOMEM;
    a->h = h;
    llmlab_apply_sampling_params(h, e, p);
    *self = a;
    return LLMLAB_OK;
}

static void ar_destroy(void *self) {
    if (self) ((ar_state *)self)->h->free(self);
}

static llmlab_status ar_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void ar_seq_end(void *self, llmlab_seq *s) {}

static llmlab_status ar_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((ar_state *)self)->h;
    int32_t last = H->seq_tokens(s)[H->seq_len(s) - 1];
    if (H->step_add(st, s, last, H->seq_kv_len(s), LLMLAB_ROW_LOGITS, -1) < 0)
        return LLMLAB_ENOKV; /* the engine sized the step; this means it is full */
    return LLMLAB_OK;
}

static llmlab_status ar_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((ar_state *)self)->h;
    int rows[1024];
    int n = H->step_rows(st, s, rows, 1024);
    if (n <= 0) return LLMLAB_OK;
    int last = rows[n > 1024 ? 1023 : n - 1];
    int slot = H->step_slot(st, last);
    llmlab_status r;
    if (slot >= H->seq_kv_len(s) && (r = H->seq_kv_keep(s, &slot, 1, err))) return r;
    int32_t tok = H->seq_sample(s, H->step_logits(st, last));
    return H->seq_accept(s, &tok, 1, err);
}

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), ar_create, ar_destroy, ar_seq_begin, ar_seq_end, ar_propose, ar_verify, NULL, NULL,
};

static const llmlab_param_spec params[] = {LLMLAB_SAMPLING_PARAM_SPECS};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "autoregressive", "1.0", "one token per target forward (greedy or sampled)",
    params, LLMLAB_SAMPLING_N_PARAMS, &ops);

#include "plugins/builtins.h"

const llmlab_plugin_desc *llmlab_builtin_autoregressive(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
