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
const llmlab_plugin_desc *llmlab_builtin_quant_int8(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_quant_int4(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_quant_fp8(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_kv_f16(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_kv_int8(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_kv_int4(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_awq(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_gptq(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_smoothquant(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_fcfs(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_continuous(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_static(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_chunked_prefill(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_priority(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_mlfq(uint32_t, uint32_t, const llmlab_host *);
const llmlab_plugin_desc *llmlab_builtin_sjf(uint32_t, uint32_t, const llmlab_host *);

/* NULL-terminated list, in registration order. */
extern const llmlab_plugin_entry_fn llmlab_builtin_plugins[];

#endif
