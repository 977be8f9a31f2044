/* lua_api.h - the `llmlab` Lua module: experiments as Lua 5.4 scripts.
 *
 *   llmlab.synth{dir=..., preset=..., seed=..., ...}  -> dir
 *   llmlab.model{path=..., backend="cpu", threads=...} -> model
 *   llmlab.engine{model=m, decoding={"autoregressive", temperature=0}, attention={"dense"},
 *                 quant={"none"}, sched={"fcfs", max_batch=8}, seed=...} -> engine
 *   e:generate(prompt_text_or_ids, {max_new=..., temperature=..., ...}) -> {tokens, text, metrics}
 *   llmlab.workload{prompts={...} | lengths={...}, max_new=..., seed=...} -> workload
 *   e:run(workload) -> result {summary, requests, steps}
 *   llmlab.results(path):write(run_name, result)
 *   llmlab.fidelity{model=m, attention={"name", ...}, texts={...} | workload=w, prefix=N, ...}
 *       -> {kl, top1, ppl, ppl_dense, tok_per_s, kv_bytes_mean, kv_bytes_max, texts, per_token, _run}
 *   llmlab.plugins() -> list;  llmlab.load_plugin(path);  llmlab.args (from --set)
 * docs/lua-api.md is the reference. */
#ifndef LLMLAB_LUA_API_H
#define LLMLAB_LUA_API_H

#include "registry.h"
#include "settings.h"

typedef struct {
    const char *script_path;
    int n_set;
    char **set;                  /* [n_set] "key=value" */
    llmlab_settings *settings;   /* effective INI + command-line settings */
    llmlab_registry *registry;
} llmlab_lua_opts;

/* Runs a script; errors (syntax, runtime, API misuse) come back in err as
 * "script.lua:LINE: message" with a traceback. */
llmlab_status llmlab_lua_run(const llmlab_lua_opts *o, llmlab_err *err);

#endif
