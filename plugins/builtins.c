/* builtins.c - the list of built-in plugins registered at start. */
#include "builtins.h"

const llmlab_plugin_entry_fn llmlab_builtin_plugins[] = {
    llmlab_builtin_autoregressive,
    llmlab_builtin_speculative,
    llmlab_builtin_self_speculative,
    llmlab_builtin_prompt_lookup,
    llmlab_builtin_lookahead,
    llmlab_builtin_medusa,
    llmlab_builtin_dense,
    llmlab_builtin_window,
    llmlab_builtin_sinks,
    llmlab_builtin_sparse,
    llmlab_builtin_h2o,
    llmlab_builtin_snapkv,
    llmlab_builtin_tova,
    llmlab_builtin_quant_none,
    llmlab_builtin_fcfs,
    llmlab_builtin_continuous,
    NULL,
};
