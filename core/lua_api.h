/* lua_api.h - the `llmlab` Lua module: experiments as Lua 5.4 scripts.
 *
 *   llmlab.synth{dir=..., preset=..., seed=..., ...}  -> dir
 *   llmlab.model{path=..., backend="cpu", threads=...} -> model
 *   llmlab.engine{model=m, decoding={"autoregressive", temperature=0}, attention={"dense"},
 *                 quant={"none"}, sched={"fcfs", max_batch=8}, seed=...} -> engine
 *   e:generate(prompt_text_or_ids, {max_new=..., temperature=..., ...}) -> {tokens, text, metrics}
 *   llmlab.workload{n=, arrival="poisson", rate=, prompt_len=, output_len=, trace=, replay=, ...
 *                   | prompts={...} | lengths={...}, max_new=..., seed=...} -> workload (lua_workload.c)
 *   e:run(workload) -> result {summary, requests, steps}
 *   llmlab.results(path):write(run_name, result)
 *   llmlab.fidelity{model=m, attention={"name", ...}, texts={...} | workload=w, prefix=N, ...}
 *       -> {kl, top1, ppl, ppl_dense, tok_per_s, kv_bytes_mean, kv_bytes_max, texts, per_token, _run}
 *   llmlab.sweep{name=..., grid={k={...}, ...}, repeats=n, run=function(point) ... end}
 *   llmlab.plugins() -> list;  llmlab.load_plugin(path);  llmlab.args (from --set)
 * docs/lua-api.md is the reference. */
#ifndef LLMLAB_LUA_API_H
#define LLMLAB_LUA_API_H

#include "registry.h"
#include "settings.h"
#include "sweep.h"

/* How llmlab.sweep{...} behaves (docs/sweeps.md). */
typedef enum {
    LLMLAB_LUA_SWEEP_INLINE = 0, /* `llmlab run`: every task in this process, in order */
    LLMLAB_LUA_SWEEP_PLAN = 1,   /* record the sweep and stop the script there */
    LLMLAB_LUA_SWEEP_TASK = 2    /* run one task (`llmlab sweep SCRIPT --task I`) */
} llmlab_lua_sweep_mode;

/* What `llmlab sweep` asks of llmlab.sweep, and what it reports back. */
typedef struct {
    llmlab_lua_sweep_mode mode;
    int64_t task;            /* TASK: the task index to run */
    const char *out;         /* --out DIR, or NULL for results_dir/sweeps/<name> */
    int planned;             /* PLAN: set when llmlab.sweep stopped the script */
    llmlab_sweep_spec spec;  /* PLAN: the sweep declared (the caller frees it) */
    int outcome;             /* TASK: the task's llmlab_task_state after the call; -1 before */
} llmlab_lua_sweep_req;

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

/* Runs a script for `llmlab sweep`: llmlab.sweep{...} follows sw (plan the sweep,
 * or run one task); see docs/sweeps.md. */
llmlab_status llmlab_lua_run_sweep(const llmlab_lua_opts *o, llmlab_lua_sweep_req *sw, llmlab_err *err);

/* The sweep request of the running script (NULL under `llmlab run`). */
struct lua_State;
llmlab_lua_sweep_req *llmlab_lua_sweep_ctx(struct lua_State *L);

#endif
