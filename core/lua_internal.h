/* lua_internal.h - pieces shared by lua_api.c, lua_engine.c and lua_fidelity.c. */
#ifndef LLMLAB_LUA_INTERNAL_H
#define LLMLAB_LUA_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "fidelity.h"
#include "lua_api.h"
#include "serve_metrics.h"

typedef struct {
    llmlab_model *m;
    int threads;
} llmlab_lua_model;

/* Userdata "llmlab.engine"; user value 1 keeps its model alive. */
typedef struct {
    llmlab_engine *e;
    uint64_t seed;
} llmlab_lua_engine;

/* Userdata "llmlab.result": a finished run kept for results:write; user value 1
 * keeps the engine that ran it alive. */
typedef struct {
    llmlab_run_result *r;
    char start[32], end[32];
    llmlab_fid_result *fid;  /* llmlab.fidelity's measurement (recorded too), else NULL */
    llmlab_serve_opts serve; /* the `serving` table's options (e:run, llmlab.simulate: lua_sim.c) */
    llmlab_itl_hist *itl;    /* llmlab.simulate's ITL histogram (malloc'd), else NULL */
    struct llmlab_workload *wl; /* the request list e:run ran (recorded for replay), else NULL */
} llmlab_lua_result;

/* Plugin parameter values read from Lua; they point into Lua strings. */
typedef struct {
    llmlab_param_value v[64];
    int n;
} llmlab_lua_choice_values;

llmlab_lua_opts *llmlab_lua_ctx(lua_State *L);
int llmlab_lua_opt_int(lua_State *L, int t, const char *key, int def);
double llmlab_lua_opt_num(lua_State *L, int t, const char *key, double def);
const char *llmlab_lua_opt_str(lua_State *L, int t, const char *key, const char *def);
int llmlab_lua_opt_bool(lua_State *L, int t, const char *key, int def);
int llmlab_lua_fail(lua_State *L, const llmlab_err *err);
void llmlab_lua_check_keys(lua_State *L, int t, const char *what, const char *const *allowed);

/* Field `kind` of options table opts ("name" or {"name", k = v}) into c. */
void llmlab_lua_read_choice(lua_State *L, int opts, const char *kind, llmlab_plugin_choice *c,
                            llmlab_lua_choice_values *cv);
/* A prompt as a malloc'd array [*n] (lua_text.c): a table of ids, or a string
 * encoded with tok; add_special runs the tokenizer's post-processor (a leading
 * BOS for Llama tokenizers), but a text that starts with the BOS itself (chat
 * template output) does not get a second one. */
int32_t *llmlab_lua_read_prompt_tok(lua_State *L, int idx, const struct llmlab_tokenizer *tok, int add_special,
                                    int *n);
/* Pushes the text of ids (decoded, special tokens skipped; ids the tokenizer has
 * no text for, such as padding rows of a larger embedding, left out). */
void llmlab_lua_push_text(lua_State *L, const struct llmlab_tokenizer *tok, const int32_t *ids, int n);
/* Pushes model method `name` (encode, decode, tokenizer) and returns 1, else 0. */
int llmlab_lua_model_method(lua_State *L, const char *name);
/* llmlab.chat(...), llmlab.prompts{...}, e:perplexity(...) (lua_text.c). */
int llmlab_lua_chat(lua_State *L);
int llmlab_lua_prompts(lua_State *L);
int llmlab_lua_engine_perplexity(lua_State *L);
/* e:weights() (lua_quant.c). */
int llmlab_lua_engine_weights(lua_State *L);
/* Serving options and records (lua_serve.c): llmlab.engine's watermark,
 * swap_space, preempt_mode; a request table's priority, cancel_after_s,
 * released_by; the run's serving counters in e:run's summary and requests. */
void llmlab_lua_read_serving(lua_State *L, int opts, llmlab_engine_opts *o);
void llmlab_lua_read_request_serving(lua_State *L, int t, llmlab_request *r);
void llmlab_lua_push_serving_summary(lua_State *L, const llmlab_run_result *r);
void llmlab_lua_push_request_serving(lua_State *L, const llmlab_run_result *r, int i);
/* llmlab.workload{...} (lua_workload.c). */
int llmlab_lua_workload(lua_State *L);
/* llmlab.fidelity{...} (lua_fidelity.c). */
int llmlab_lua_fidelity(lua_State *L);
/* llmlab.sweep{...} (lua_sweep.c). */
int llmlab_lua_sweep(lua_State *L);

void llmlab_lua_open_engine(lua_State *L);
void llmlab_lua_open_results(lua_State *L);
int llmlab_lua_engine_new(lua_State *L);
int llmlab_lua_results_new(lua_State *L);

/* Registers metatable `name` whose only metamethod is __gc = gc (userdata that
 * own C buffers). */
static inline void llmlab_lua_gc_metatable(lua_State *L, const char *name, lua_CFunction gc) {
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

/* t[k] = v on the table at the top of the stack. */
static inline void llmlab_lua_setnum(lua_State *L, const char *k, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}
static inline void llmlab_lua_setint(lua_State *L, const char *k, long long v) {
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

#endif
