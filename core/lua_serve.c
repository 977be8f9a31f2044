/* lua_serve.c - the serving loop's options and records in Lua (lua_internal.h):
 *   llmlab.engine{watermark = 0.01, swap_space = 4096 | "512MiB", preempt_mode = "recompute" | "swap"}
 *   e:run requests {priority = 0, cancel_after_s = 0, released_by = 0}
 *   e:run results: summary.preemptions/recomputed_tokens/swaps/swap_bytes/cancelled,
 *   requests[i].status ("finished" | "cancelled"), preemptions, recomputed_tokens, swaps. */
#include <lauxlib.h>
#include <lua.h>

#include "lua_internal.h"

void llmlab_lua_read_serving(lua_State *L, int opts, llmlab_engine_opts *o) {
    llmlab_err err = {0};
    o->watermark = llmlab_lua_opt_num(L, opts, "watermark", 0.0);
    if (lua_getfield(L, opts, "watermark") == LUA_TNUMBER && lua_tonumber(L, -1) == 0)
        o->watermark = -1; /* an explicit 0: no watermark (0 in the C options means the default) */
    lua_pop(L, 1);
    int ty = lua_getfield(L, opts, "swap_space");
    if (ty == LUA_TNUMBER || ty == LUA_TSTRING) {
        const char *text = lua_tostring(L, -1); /* numbers read as their text: tokens */
        if (llmlab_parse_swap_space(text, &o->swap_tokens, &o->swap_bytes, &err)) llmlab_lua_fail(L, &err);
    } else if (ty != LUA_TNIL)
        luaL_error(L, "llmlab.engine: swap_space must be a number of tokens or a string with a byte unit");
    lua_pop(L, 1);
    const char *mode = llmlab_lua_opt_str(L, opts, "preempt_mode", NULL);
    if (mode && llmlab_parse_preempt_mode(mode, &o->preempt_mode, &err)) llmlab_lua_fail(L, &err);
}

void llmlab_lua_read_request_serving(lua_State *L, int t, llmlab_request *r) {
    r->priority = llmlab_lua_opt_int(L, t, "priority", 0);
    r->cancel_after_s = llmlab_lua_opt_num(L, t, "cancel_after_s", 0.0);
    r->released_by = llmlab_lua_opt_int(L, t, "released_by", 0);
}

void llmlab_lua_push_serving_summary(lua_State *L, const llmlab_run_result *r) {
    llmlab_lua_setint(L, "preemptions", r->preemptions_total);
    llmlab_lua_setint(L, "recomputed_tokens", r->recomputed_tokens_total);
    llmlab_lua_setint(L, "swaps", r->swaps_total);
    llmlab_lua_setnum(L, "swap_bytes", r->swap_bytes);
    llmlab_lua_setint(L, "cancelled", r->cancelled_total);
}

void llmlab_lua_push_request_serving(lua_State *L, const llmlab_run_result *r, int i) {
    lua_pushstring(L, r->status[i] == LLMLAB_RUN_CANCELLED ? "cancelled" : "finished");
    lua_setfield(L, -2, "status");
    llmlab_lua_setint(L, "preemptions", r->preemptions[i]);
    llmlab_lua_setint(L, "recomputed_tokens", r->recomputed_tokens[i]);
    llmlab_lua_setint(L, "swaps", r->swaps[i]);
}
