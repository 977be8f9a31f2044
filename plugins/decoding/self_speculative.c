/* self_speculative.c - the target drafts for itself with a subset of its layers
 * (Draft & Verify, Zhang et al. 2023: skip intermediate layers; LayerSkip /
 * early exit: skip the last layers and read the shared final norm + LM head).
 *
 * The draft runs the target's own weights (through the same quant plugin) with
 * the chosen layers left out and its own KV cache; the full model verifies.
 * Draft/verify machinery: draft_verify.c (greedy exact; sampling by the
 * Leviathan/Chen rule).
 *
 * Left out: sharing the early layers' KV between draft and target (LayerSkip's
 * cache reuse); here the draft recomputes them in its own cache. */
#include <stdlib.h>
#include <string.h>

#include "decode_util.h"
#include "draft_verify.h"
#include "plugins/builtins.h"
#include "sampling_params.h"

/* Parses "3,5-7,10" into layer indices; returns the count or -1 on a bad list. */
static int parse_layers(const char *text, int *out, int cap, int n_layers) {
    int n = 0;
    const char *c = text;
    while (*c) {
        char *end;
        long a = strtol(c, &end, 10), b = a;
        if (end == c) return -1;
        c = end;
        if (*c == '-') {
            b = strtol(c + 1, &end, 10);
            if (end == c + 1) return -1;
            c = end;
        }
        if (a < 0 || b < a || b >= n_layers) return -1;
        for (long l = a; l <= b; l++) {
            if (n == cap) return -1;
            out[n++] = (int)l;
        }
        if (*c == ',') c++;
        else if (*c) return -1;
    }
    return n;
}

static llmlab_status self_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    int L = h->model_layers(e), exit_layer = (int)h->param_int(p, "exit_layer");
    int *skip = h->alloc(sizeof(int) * (size_t)(2 * L + 1));
    if (!skip) return LLMLAB_ENOMEM;
    const char *list = h->param_string(p, "skip");
    int n = parse_layers(list, skip, 2 * L, L);
    llmlab_status r = LLMLAB_OK;
    if (n < 0) {
        r = llmlab_plugin_fail(err, LLMLAB_EINVAL, "skip '%s': give layer indices and ranges in 0..%d, e.g. \"2,4-6\"",
                            list, L - 1);
    } else if (exit_layer > L) {
        r = llmlab_plugin_fail(err, LLMLAB_EINVAL, "exit_layer %d: the model has %d layers", exit_layer, L);
    } else {
        if (exit_layer > 0) /* early exit after exit_layer layers: leave out the rest */
            for (int l = exit_layer; l < L; l++) skip[n++] = l;
        if (n == 0)
            r = llmlab_plugin_fail(err, LLMLAB_EINVAL,
                                "give skip (layers to leave out) or exit_layer: the draft would be the full model");
    }
    llmlab_aux *draft = NULL;
    if (!r) r = h->aux_open(e, "self", skip, n, &draft, err);
    h->free(skip);
    if (r) return r;
    llmlab_apply_sampling_params(h, e, p);
    return dv_create((dv_state **)self, h, e, draft, (int)h->param_int(p, "k"), h->param_bool(p, "adaptive"),
                     (int)h->param_int(p, "k_max"), err);
}

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), self_create, dv_destroy, dv_seq_begin, dv_seq_end, dv_propose, dv_verify,
    dv_step_begin, dv_max_step_tokens,
};

static const llmlab_param_spec params[] = {
    {"skip", LLMLAB_PARAM_STRING, "", 0, -1, NULL, "layers the draft leaves out, e.g. \"2,4-6\""},
    {"exit_layer", LLMLAB_PARAM_INT, "0", 0, 4096, NULL, "early exit: the draft runs only the first exit_layer layers (0 = off)"},
    {"k", LLMLAB_PARAM_INT, "4", 1, DV_MAX_K, NULL, "draft tokens per step (the start value when adaptive)"},
    {"adaptive", LLMLAB_PARAM_BOOL, "false", 0, -1, NULL, "k += 2 after a fully accepted draft, k -= 1 after a rejection"},
    {"k_max", LLMLAB_PARAM_INT, "8", 1, DV_MAX_K, NULL, "adaptive: largest k"},
    LLMLAB_SAMPLING_PARAM_SPECS,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "self_speculative", "1.0",
    "the target with layers skipped (or an early exit) drafts k tokens; the full model verifies", params,
    5 + LLMLAB_SAMPLING_N_PARAMS, &ops);

const llmlab_plugin_desc *llmlab_builtin_self_speculative(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
