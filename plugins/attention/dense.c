/* dense.c - the baseline attention plugin: every committed slot stays visible and
 * nothing is evicted.  Policies that evict (window, sinks, h2o, ...) start from
 * this file: after_step sees the sequence after each step and may call
 * host->seq_kv_evict. */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"

static llmlab_status dense_create(void **self, const llmlab_host *h, llmlab_engine *e,
                                  const llmlab_params *p, llmlab_err *err) {
    *self = NULL; /* no state: dense attention keeps everything */
    return LLMLAB_OK;
}
static void dense_destroy(void *self) {}
static llmlab_status dense_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void dense_seq_end(void *self, llmlab_seq *s) {}
static llmlab_status dense_after_step(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }

static const llmlab_attention_ops ops = {
    sizeof(llmlab_attention_ops), dense_create, dense_destroy, dense_seq_begin, dense_seq_end, dense_after_step,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "dense", "1.0", "full attention over every cached slot (no eviction)", NULL, 0, &ops);

const llmlab_plugin_desc *llmlab_builtin_dense(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
