/* builtins.h - entry functions of the plugins compiled into llmlab.  Adding a
 * built-in: write plugins/<kind>/<name>.c with an entry function, declare it here
 * and list it in plugins/builtins.c. */
#ifndef LLMLAB_PLUGINS_BUILTINS_H
#define LLMLAB_PLUGINS_BUILTINS_H

#include "llmlab/plugin.h"

const llmlab_plugin_desc *llmlab_builtin_autoregressive(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_speculative(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_self_speculative(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_prompt_lookup(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_lookahead(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_medusa(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_dense(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_window(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_sinks(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_sparse(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_h2o(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_snapkv(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_tova(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_quant_none(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_fcfs(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_continuous(uint32_t, uint32_t, const llmlab_host *);

/* NULL-terminated list, in registration order. */
extern const llmlab_plugin_entry_fn llmlab_builtin_plugins[];

#endif
