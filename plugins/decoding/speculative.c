/* speculative.c - speculative decoding with a draft model (Leviathan et al. 2023;
 * Chen et al. 2023).
 *
 * The draft is any model directory sharing the target's vocabulary, or "self"
 * (the target's own weights with a separate cache: every draft is accepted, a
 * check of the machinery).  Drafting, verification and cache rollback live in
 * draft_verify.c; this file declares the parameters and opens the draft. */
#include "draft_verify.h"
#include "plugins/builtins.h"
#include "sampling_params.h"

static llmlab_status spec_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    llmlab_aux *draft;
    llmlab_status r = h->aux_open(e, h->param_string(p, "draft"), NULL, 0, &draft, err);
    if (r) return r;
    llmlab_apply_sampling_params(h, e, p);
    return dv_create((dv_state **)self, h, e, draft, (int)h->param_int(p, "k"), h->param_bool(p, "adaptive"),
                     (int)h->param_int(p, "k_max"), err);
}

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), spec_create, dv_destroy, dv_seq_begin, dv_seq_end, dv_propose, dv_verify,
    dv_step_begin, dv_max_step_tokens,
};

static const llmlab_param_spec params[] = {
    {"draft", LLMLAB_PARAM_STRING, NULL, 0, -1, NULL, "draft model directory (same vocabulary), or \"self\""},
    {"k", LLMLAB_PARAM_INT, "4", 1, DV_MAX_K, NULL, "draft tokens per step (the start value when adaptive)"},
    {"adaptive", LLMLAB_PARAM_BOOL, "false", 0, -1, NULL, "k += 2 after a fully accepted draft, k -= 1 after a rejection"},
    {"k_max", LLMLAB_PARAM_INT, "8", 1, DV_MAX_K, NULL, "adaptive: largest k"},
    LLMLAB_SAMPLING_PARAM_SPECS,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "speculative", "1.0",
    "draft model proposes k tokens, one target forward verifies (greedy exact; sampling by the Leviathan/Chen rule)",
    params, 4 + LLMLAB_SAMPLING_N_PARAMS, &ops);

const llmlab_plugin_desc *llmlab_builtin_speculative(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
