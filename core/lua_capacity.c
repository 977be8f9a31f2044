/* lua_capacity.c - llmlab.capacity{...}: the largest request rate meeting an SLO
 * target, on the simulator or a real engine (capacity.h):
 *   llmlab.capacity{simulate = {<llmlab.simulate options but workload>} | engine = e,
 *                   workload = function(rate) return llmlab.workload{...} end,
 *                   slo = {ttft =, tpot =, e2e =}, percentiles = {...}, target = 0.9,
 *                   lo = 1, hi = 0, tol = 0.02, max_evals = 40}
 *   -> {rate =, fail_rate =, bracketed =, evals = {{rate =, attainment =, goodput =, ...}, ...}} */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "error.h"
#include "lua_sim.h"

typedef struct {
    lua_State *L;
    int fn_ref;        /* the workload function (registry reference: the protected call has its own stack) */
    int engine_ref;    /* the engine userdata, or LUA_NOREF */
    llmlab_sim *sim;
    llmlab_serve_opts serve;
    llmlab_serve_metrics *m; /* where the protected call leaves the metrics */
} cap_ctx;

/* Protected part of one evaluation: (ctx, rate) -> metrics into ctx->m. */
static int eval_protected(lua_State *L) {
    cap_ctx *c = lua_touserdata(L, 1);
    double rate = lua_tonumber(L, 2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);
    lua_pushnumber(L, rate);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) return luaL_error(L, "llmlab.capacity: workload(%g) must return a workload", rate);
    int w = lua_gettop(L);
    llmlab_err err = {0};
    llmlab_serve_opts so = c->serve;
    if (c->sim) {
        int n = 0;
        llmlab_request *reqs = llmlab_lua_read_sim_requests(L, w, NULL, &n);
        llmlab_lua_result *res = lua_newuserdatauv(L, sizeof *res, 0); /* the result, freed by __gc */
        memset(res, 0, sizeof *res);
        luaL_setmetatable(L, "llmlab.result");
        if (!(res->itl = malloc(sizeof *res->itl))) return luaL_error(L, "out of memory");
        if (llmlab_sim_run(c->sim, reqs, n, &res->r, res->itl, &err)) return llmlab_lua_fail(L, &err);
        so.itl_hist = res->itl;
        so.kv_blocks_total = llmlab_sim_kv_blocks(c->sim);
        if (llmlab_serve_metrics_compute(res->r, &so, c->m, &err)) return llmlab_lua_fail(L, &err);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->engine_ref);
    int eng = lua_gettop(L);
    lua_getfield(L, eng, "run"); /* e:run(w): the engine reads the prompts */
    lua_pushvalue(L, eng);
    lua_pushvalue(L, w);
    lua_call(L, 2, 1);
    lua_getfield(L, -1, "_run");
    llmlab_lua_result *res = luaL_checkudata(L, -1, "llmlab.result");
    llmlab_engine *e = ((llmlab_lua_engine *)lua_touserdata(L, eng))->e;
    so.kv_blocks_total = llmlab_engine_kv(e)->o.n_blocks;
    if (llmlab_serve_metrics_compute(res->r, &so, c->m, &err)) return llmlab_lua_fail(L, &err);
    return 0;
}

static llmlab_status eval(void *user, double rate, llmlab_serve_metrics *m, llmlab_err *err) {
    cap_ctx *c = user;
    lua_State *L = c->L;
    c->m = m;
    lua_pushcfunction(L, eval_protected);
    lua_pushlightuserdata(L, c);
    lua_pushnumber(L, rate);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        llmlab_err_set(err, LLMLAB_EINVAL, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return LLMLAB_EINVAL;
    }
    return LLMLAB_OK;
}

static void push_result(lua_State *L, const llmlab_capacity_result *r) {
    lua_newtable(L);
    llmlab_lua_setnum(L, "rate", r->rate);
    llmlab_lua_setnum(L, "fail_rate", r->fail_rate);
    lua_pushboolean(L, r->bracketed);
    lua_setfield(L, -2, "bracketed");
    lua_createtable(L, r->n_evals, 0);
    for (int k = 0; k < r->n_evals; k++) {
        lua_createtable(L, 0, 5);
        llmlab_lua_setnum(L, "rate", r->rates[k]);
        llmlab_lua_setnum(L, "attainment", r->attainment[k]);
        llmlab_lua_setnum(L, "goodput", r->goodput[k]);
        llmlab_lua_setnum(L, "ttft_p99", r->ttft_p99[k]);
        llmlab_lua_setnum(L, "tpot_p99", r->tpot_p99[k]);
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "evals");
}

int llmlab_lua_capacity(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"simulate", "engine", "workload", "slo", "percentiles", "target", "lo", "hi",
                                       "tol", "max_evals", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.capacity", keys);
    cap_ctx c = {.L = L, .fn_ref = LUA_NOREF, .engine_ref = LUA_NOREF};
    if (lua_getfield(L, 1, "workload") != LUA_TFUNCTION)
        return luaL_error(L, "llmlab.capacity: workload must be a function(rate) returning llmlab.workload{...}");
    int fn_idx = lua_gettop(L);
    int eng_idx = 0, sty = lua_getfield(L, 1, "simulate"), ety = lua_getfield(L, 1, "engine");
    if ((sty == LUA_TNIL) == (ety == LUA_TNIL))
        return luaL_error(L, "llmlab.capacity: give exactly one of simulate = {...} and engine = e");
    if (sty == LUA_TTABLE) {
        int so = lua_gettop(L) - 1;
        llmlab_lua_check_keys(L, so, "llmlab.capacity: simulate", llmlab_lua_sim_keys);
        c.sim = llmlab_lua_new_sim(L, so); /* stays on the stack: alive for the search */
    } else if (sty != LUA_TNIL) {
        return luaL_error(L, "llmlab.capacity: simulate must be a table of llmlab.simulate options");
    } else {
        if (!luaL_testudata(L, -1, "llmlab.engine")) return luaL_error(L, "llmlab.capacity: engine must be an engine");
        eng_idx = lua_gettop(L);
    }
    llmlab_lua_read_serve_opts(L, 1, &c.serve);
    if (c.serve.slo_ttft_s <= 0 && c.serve.slo_tpot_s <= 0 && c.serve.slo_e2e_s <= 0)
        return luaL_error(L, "llmlab.capacity: give an SLO: slo = {ttft = s, tpot = s, e2e = s}");
    llmlab_capacity_opts o = {.lo = llmlab_lua_opt_num(L, 1, "lo", 1),
                              .hi = llmlab_lua_opt_num(L, 1, "hi", 0),
                              .target = llmlab_lua_opt_num(L, 1, "target", 0.9),
                              .rel_tol = llmlab_lua_opt_num(L, 1, "tol", 0.02),
                              .max_evals = llmlab_lua_opt_int(L, 1, "max_evals", 0)};
    lua_pushvalue(L, fn_idx);
    c.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (eng_idx) {
        lua_pushvalue(L, eng_idx);
        c.engine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    llmlab_capacity_result r;
    llmlab_err err = {0};
    llmlab_status st = llmlab_capacity_search(&o, eval, &c, &r, &err);
    luaL_unref(L, LUA_REGISTRYINDEX, c.fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c.engine_ref);
    if (st) return llmlab_lua_fail(L, &err);
    push_result(L, &r);
    return 1;
}
