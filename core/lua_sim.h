/* lua_sim.h - serving metrics, the simulator, profiles and capacity search in Lua
 * (lua_sim.c, lua_capacity.c).  Not part of any public API. */
#ifndef LLMLAB_LUA_SIM_H
#define LLMLAB_LUA_SIM_H

#include <lua.h>

#include "lua_internal.h"
#include "sim.h"

struct llmlab_tokenizer;

/* {slo = {ttft =, tpot =, e2e =}, percentiles = {...}} at t (nil: defaults). */
void llmlab_lua_read_serve_opts(lua_State *L, int t, llmlab_serve_opts *o);
/* Pushes the metrics as a table {ttft = {mean =, p50 =, ...}, goodput =, ...}. */
void llmlab_lua_push_serve_metrics(lua_State *L, const llmlab_serve_metrics *m);
/* e:run's result.serving: options from argument opts_arg (may be absent) kept in
 * res->serve (pool of kv_blocks for utilization); pushes the metrics table. */
void llmlab_lua_push_run_serving(lua_State *L, int opts_arg, llmlab_lua_result *res, int kv_blocks);
/* The simulator a result's user value holds (value at idx), or NULL. */
llmlab_sim *llmlab_lua_result_sim(lua_State *L, int idx);

/* The cost model of options table opts (profile = ... | hardware = ..., model /
 * shape, weight_bytes, kv_bytes); raises a Lua error on bad input. */
void llmlab_lua_read_cost(lua_State *L, int opts, llmlab_costmodel *m, int threads);
/* llmlab.simulate's options (all but workload and the metric options). */
extern const char *const llmlab_lua_sim_keys[];
void llmlab_lua_read_sim_opts(lua_State *L, int opts, llmlab_sim_opts *o, llmlab_lua_choice_values *cv);
/* Pushes a new "llmlab.sim" userdata made from options table opts. */
llmlab_sim *llmlab_lua_new_sim(lua_State *L, int opts);
/* Reads a workload (llmlab.workload{...} or a list of requests) at idx; the list
 * lives in a userdata pushed on the stack (garbage collected). */
llmlab_request *llmlab_lua_read_sim_requests(lua_State *L, int idx, const struct llmlab_tokenizer *tok, int *n);
/* Pushes the per-step columns of r. */
void llmlab_lua_push_steps(lua_State *L, const llmlab_run_result *r);

void llmlab_lua_open_sim(lua_State *L);
int llmlab_lua_simulate(lua_State *L);
int llmlab_lua_profile(lua_State *L);
int llmlab_lua_capacity(lua_State *L);
int llmlab_lua_step_error(lua_State *L);

#endif
