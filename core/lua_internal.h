/* lua_internal.h - pieces shared by lua_api.c and lua_engine.c. */
#ifndef LLMLAB_LUA_INTERNAL_H
#define LLMLAB_LUA_INTERNAL_H

#include <lua.h>

#include "engine.h"
#include "lua_api.h"

typedef struct {
    llmlab_model *m;
    int threads;
} llmlab_lua_model;

llmlab_lua_opts *llmlab_lua_ctx(lua_State *L);
int llmlab_lua_opt_int(lua_State *L, int t, const char *key, int def);
double llmlab_lua_opt_num(lua_State *L, int t, const char *key, double def);
const char *llmlab_lua_opt_str(lua_State *L, int t, const char *key, const char *def);
int llmlab_lua_opt_bool(lua_State *L, int t, const char *key, int def);
int llmlab_lua_fail(lua_State *L, const llmlab_err *err);
void llmlab_lua_check_keys(lua_State *L, int t, const char *what, const char *const *allowed);

void llmlab_lua_open_engine(lua_State *L);
void llmlab_lua_open_results(lua_State *L);
int llmlab_lua_engine_new(lua_State *L);
int llmlab_lua_results_new(lua_State *L);

#endif
