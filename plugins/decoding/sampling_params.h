/* sampling_params.h - the sampling parameters every built-in decoding plugin
 * declares (temperature, top_k, top_p, min_p), and setting them on the engine.
 * Built-in only: an out-of-tree plugin declares its own (docs/plugins.md). */
#ifndef LLMLAB_PLUGINS_SAMPLING_PARAMS_H
#define LLMLAB_PLUGINS_SAMPLING_PARAMS_H

#include "llmlab/plugin.h"

#define LLMLAB_SAMPLING_PARAM_SPECS                                                                              \
    {"temperature", LLMLAB_PARAM_FLOAT, "0", 0, 100, NULL, "softmax temperature; 0 = greedy (argmax, lowest id on ties)"}, \
    {"top_k", LLMLAB_PARAM_INT, "0", 0, 1e9, NULL, "keep the k most likely tokens; 0 = off"},                     \
    {"top_p", LLMLAB_PARAM_FLOAT, "1", 1e-9, 1, NULL, "keep the smallest set with this much mass; 1 = off"},     \
    {"min_p", LLMLAB_PARAM_FLOAT, "0", 0, 1, NULL, "drop tokens below min_p * p(top token); 0 = off"}
#define LLMLAB_SAMPLING_N_PARAMS 4

/* Makes the declared sampling values the engine's default for its sequences. */
static inline void llmlab_apply_sampling_params(const llmlab_host *h, llmlab_engine *e, const llmlab_params *p) {
    h->engine_set_sampling(e, (float)h->param_float(p, "temperature"), (int)h->param_int(p, "top_k"),
                           (float)h->param_float(p, "top_p"), (float)h->param_float(p, "min_p"));
}

#endif
