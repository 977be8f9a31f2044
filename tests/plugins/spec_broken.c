/* spec_broken.c - a test plugin: draft-model speculative sampling built with
 * DV_TEST_BROKEN_RULE, which accepts every draft.  Its outputs follow the
 * draft's distribution, so a sound distribution test must reject them. */
#include "draft_verify.h"

static llmlab_status broken_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    llmlab_aux *draft;
    llmlab_status r = h->aux_open(e, h->param_string(p, "draft"), NULL, 0, &draft, err);
    if (r) return r;
    h->engine_set_sampling(e, (float)h->param_float(p, "temperature"), 0, 1.0f, 0.0f);
    return dv_create((dv_state **)self, h, e, draft, (int)h->param_int(p, "k"), 0, 0, err);
}

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), broken_create, dv_destroy, dv_seq_begin, dv_seq_end, dv_propose, dv_verify,
    dv_step_begin, dv_max_step_tokens,
};

static const llmlab_param_spec params[] = {
    {"draft", LLMLAB_PARAM_STRING, NULL, 0, -1, NULL, "draft model directory"},
    {"k", LLMLAB_PARAM_INT, "2", 1, DV_MAX_K, NULL, "draft tokens per step"},
    {"temperature", LLMLAB_PARAM_FLOAT, "1", 0, 100, NULL, "softmax temperature"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "spec_broken", "0.0", "test only: speculative sampling that accepts every draft",
    params, 3, &ops);

const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t major, uint32_t minor, const llmlab_host *host);
const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
