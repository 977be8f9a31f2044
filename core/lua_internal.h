/* lua_internal.h - pieces shared by lua_api.c, lua_engine.c and lua_fidelity.c. */
#ifndef LLMLAB_LUA_INTERNAL_H
#define LLMLAB_LUA_INTERNAL_H

#include <lua.h>

#include "engine.h"
#include "fidelity.h"
#include "lua_api.h"

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
/* A prompt (string: byte tokens, or a table of ids) as a malloc'd array [*n]. */
int32_t *llmlab_lua_read_prompt(lua_State *L, int idx, int *n);
/* llmlab.fidelity{...} (lua_fidelity.c). */
int llmlab_lua_fidelity(lua_State *L);

void llmlab_lua_open_engine(lua_State *L);
void llmlab_lua_open_results(lua_State *L);
int llmlab_lua_engine_new(lua_State *L);
int llmlab_lua_results_new(lua_State *L);

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
