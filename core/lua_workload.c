/* lua_workload.c - llmlab.workload{...}: serving workloads from core/workload.c
 * as Lua request tables (docs/lua-api.md, docs/serving.md "Workloads"), and the
 * way back from such a table to a C request list. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "lua_internal.h"
#include "rng.h"
#include "tokenizer.h"
#include "workload.h"

/* Userdata "llmlab.wlbox": owns a C workload while Lua tables are built from it,
 * so a Lua error on the way frees it (__gc). */
typedef struct {
    llmlab_workload *w;
} wl_box;

static int box_gc(lua_State *L) {
    wl_box *b = luaL_checkudata(L, 1, "llmlab.wlbox");
    llmlab_workload_free(b->w);
    b->w = NULL;
    return 0;
}

static wl_box *push_box(lua_State *L) {
    wl_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->w = NULL;
    if (luaL_newmetatable(L, "llmlab.wlbox")) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

/* ---- options ------------------------------------------------------------------------ */

/* t[k] as a number (positional or named), or def when absent. */
static double num_at(lua_State *L, int t, int pos, const char *name, double def, const char *what) {
    int ty = lua_geti(L, t, pos);
    if (ty == LUA_TNIL && name) {
        lua_pop(L, 1);
        ty = lua_getfield(L, t, name);
    }
    double v = def;
    if (ty != LUA_TNIL) {
        if (ty != LUA_TNUMBER) luaL_error(L, "llmlab.workload: %s: '%s' must be a number", what, name ? name : "?");
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* A length distribution: n (fixed), {"fixed", n}, {"uniform", lo, hi},
 * {"lognormal", mean, sigma}, {"zipf", s, max}, {"empirical", file}; optional
 * min = / max = clamps (zipf's max is its support). */
static void read_len(lua_State *L, int opts, const char *key, llmlab_len_dist *d) {
    int ty = lua_getfield(L, opts, key);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (ty == LUA_TNUMBER) {
        *d = (llmlab_len_dist){LLMLAB_LEN_FIXED, lua_tonumber(L, -1), 0, NULL, d->min, 0};
        lua_pop(L, 1);
        return;
    }
    if (ty != LUA_TTABLE || lua_geti(L, -1, 1) != LUA_TSTRING)
        luaL_error(L, "llmlab.workload: '%s' must be a number or a table like {\"uniform\", lo, hi}, "
                      "{\"lognormal\", mean, sigma}, {\"zipf\", s, max}, {\"empirical\", file}", key);
    const char *kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    int t = lua_gettop(L);
    static const char *const kinds[] = {"fixed", "uniform", "lognormal", "zipf", "empirical", NULL};
    int k = 0;
    while (kinds[k] && strcmp(kinds[k], kind)) k++;
    if (!kinds[k])
        luaL_error(L, "llmlab.workload: %s distribution '%s' is not one of fixed, uniform, lognormal, zipf, empirical",
                   key, kind);
    d->kind = (llmlab_len_kind)k;
    d->file = NULL;
    if (d->kind == LLMLAB_LEN_EMPIRICAL) {
        if (lua_geti(L, t, 2) != LUA_TSTRING)
            luaL_error(L, "llmlab.workload: %s: {\"empirical\", file} needs a file", key);
        d->file = lua_tostring(L, -1); /* kept alive by the options table */
        lua_pop(L, 1);
    } else {
        static const char *const a_names[] = {"n", "lo", "mean", "s"}, *const b_names[] = {NULL, "hi", "sigma", "max"};
        d->a = num_at(L, t, 2, a_names[k], -1, key);
        d->b = b_names[k] ? num_at(L, t, 3, b_names[k], -1, key) : 0;
    }
    d->min = (int)num_at(L, t, 0, "min", d->min, key);
    if (d->kind != LLMLAB_LEN_ZIPF) d->max = (int)num_at(L, t, 0, "max", 0, key);
    lua_pop(L, 1);
}

static llmlab_arrival_kind read_arrival(lua_State *L, int opts) {
    const char *a = llmlab_lua_opt_str(L, opts, "arrival", NULL);
    if (!a) return LLMLAB_ARRIVAL_AT_ONCE;
    static const char *const names[] = {"at_once", "poisson", "gamma", "closed", NULL};
    for (int k = 0; names[k]; k++)
        if (!strcmp(a, names[k])) return (llmlab_arrival_kind)k;
    luaL_error(L, "llmlab.workload: arrival '%s' is not one of at_once, poisson, gamma, closed (or give trace=)", a);
    return LLMLAB_ARRIVAL_AT_ONCE;
}

/* priorities = {share of class 0, share of class 1, ...}: shares [*n] in a Lua
 * userdata buffer left on the stack. */
static double *read_shares(lua_State *L, int opts, int *n) {
    *n = 0;
    if (lua_getfield(L, opts, "priorities") == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "llmlab.workload: 'priorities' must be a list of class shares");
    int t = lua_gettop(L), k = (int)luaL_len(L, t);
    if (k < 1 || k > 1024) luaL_error(L, "llmlab.workload: 'priorities' needs 1 to 1024 class shares");
    double *s = lua_newuserdatauv(L, sizeof(double) * (size_t)k, 0);
    lua_replace(L, t);
    lua_getfield(L, opts, "priorities");
    for (int c = 0; c < k; c++) {
        if (lua_geti(L, -1, c + 1) != LUA_TNUMBER)
            luaL_error(L, "llmlab.workload: priorities[%d] must be a number", c + 1);
        s[c] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *n = k;
    return s;
}

/* cancel = {frac = f, after_s = t or {lo, hi}} */
static void read_cancel(lua_State *L, int opts, llmlab_workload_spec *s) {
    if (lua_getfield(L, opts, "cancel") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "llmlab.workload: 'cancel' must be {frac = f, after_s = t or {lo, hi}}");
    int t = lua_gettop(L);
    static const char *const keys[] = {"frac", "after_s", NULL};
    llmlab_lua_check_keys(L, t, "llmlab.workload cancel", keys);
    s->cancel_frac = llmlab_lua_opt_num(L, t, "frac", 0);
    int ty = lua_getfield(L, t, "after_s");
    if (ty == LUA_TNUMBER) {
        s->cancel_min_s = s->cancel_max_s = lua_tonumber(L, -1);
    } else if (ty == LUA_TTABLE) {
        s->cancel_min_s = num_at(L, lua_gettop(L), 1, NULL, -1, "cancel.after_s");
        s->cancel_max_s = num_at(L, lua_gettop(L), 2, NULL, -1, "cancel.after_s");
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "llmlab.workload: cancel.after_s must be seconds or {lo, hi}");
    }
    lua_pop(L, 2);
}

/* ---- pushing requests ------------------------------------------------------------------ */

static void push_ids(lua_State *L, const int32_t *ids, int n) {
    lua_createtable(L, n, 0);
    for (int k = 0; k < n; k++) {
        lua_pushinteger(L, ids[k]);
        lua_rawseti(L, -2, k + 1);
    }
}

/* Sets the fields of request q on the table at the top (prompt left to the caller). */
static void set_request_fields(lua_State *L, const llmlab_request *q) {
    llmlab_lua_setint(L, "id", q->id);
    llmlab_lua_setint(L, "prompt_len", q->prompt_len);
    llmlab_lua_setint(L, "max_new", q->max_new);
    llmlab_lua_setnum(L, "arrival_s", q->arrival_s);
    llmlab_lua_setint(L, "priority", q->priority);
    llmlab_lua_setnum(L, "cancel_after_s", q->cancel_after_s);
    llmlab_lua_setint(L, "released_by", q->released_by);
    lua_pushboolean(L, q->stop_at_eos);
    lua_setfield(L, -2, "stop_at_eos");
}

/* {kind = "workload", n = N, requests = {...}} from w. */
static void push_workload(lua_State *L, const llmlab_workload *w) {
    lua_createtable(L, 0, 3);
    lua_createtable(L, w->n, 0);
    for (int i = 0; i < w->n; i++) {
        const llmlab_request *q = &w->reqs[i];
        lua_createtable(L, 0, 10);
        set_request_fields(L, q);
        if (q->prompt) push_ids(L, q->prompt, q->prompt_len);
        else if (w->texts && w->texts[i]) lua_pushstring(L, w->texts[i]); /* e:run encodes it */
        else lua_pushnil(L);                                              /* lengths only */
        lua_setfield(L, -2, "prompt");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "requests");
    llmlab_lua_setint(L, "n", w->n);
    lua_pushstring(L, "workload");
    lua_setfield(L, -2, "kind");
}

/* ---- llmlab.workload ----------------------------------------------------------------- */

/* The legacy lists: prompts = {text or ids, ...} or lengths = {n, ...} give the
 * prompts (lengths: tokens drawn as before, stream (seed, 0xa11ce), so old scripts
 * get the same prompts); max_new = n or {n, ...}.  wl is the index of the table
 * push_workload made; arrivals and the rest come from it. */
static void apply_lists(lua_State *L, int opts, int wl, int has_prompts, const llmlab_workload_spec *s, int n) {
    int top = lua_gettop(L);
    lua_getfield(L, opts, has_prompts ? "prompts" : "lengths");
    int src = lua_gettop(L);
    int mnt = lua_getfield(L, opts, "max_new") == LUA_TTABLE ? lua_gettop(L) : 0;
    lua_getfield(L, wl, "requests");
    int reqs = lua_gettop(L);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, s->seed, 0xa11ce);
    for (int i = 0; i < n; i++) {
        lua_geti(L, reqs, i + 1);
        int rq = lua_gettop(L);
        int ty = lua_geti(L, src, i + 1);
        if (has_prompts && ty == LUA_TSTRING) { /* e:run encodes the text with its model's tokenizer */
            if (lua_rawlen(L, -1) == 0) luaL_error(L, "llmlab.workload: prompt %d is empty", i + 1);
            lua_pushvalue(L, -1);
            lua_setfield(L, rq, "text");
            lua_pushnil(L);
        } else if (has_prompts && ty == LUA_TTABLE) {
            lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
        } else if (has_prompts) {
            luaL_error(L, "llmlab.workload: prompt %d must be a string or a table of token ids", i + 1);
        } else {
            int ok;
            lua_Integer len = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
            if (!ok || len <= 0) luaL_error(L, "llmlab.workload: length %d must be a positive integer", i + 1);
            lua_createtable(L, (int)len, 0);
            for (lua_Integer k = 1; k <= len; k++) {
                lua_pushinteger(L, (lua_Integer)(llmlab_rng_next(&rng) % (uint64_t)s->vocab));
                lua_rawseti(L, -2, k);
            }
            lua_pushinteger(L, len);
        }
        lua_setfield(L, rq, "prompt_len");
        lua_setfield(L, rq, "prompt");
        if (mnt) {
            int ok;
            lua_geti(L, mnt, i + 1);
            lua_Integer v = lua_tointegerx(L, -1, &ok);
            if (!ok) luaL_error(L, "llmlab.workload: max_new[%d] must be an integer", i + 1);
            if (v < 0) luaL_error(L, "llmlab.workload: max_new must be >= 0");
            lua_setfield(L, rq, "max_new");
        }
        lua_settop(L, reqs);
    }
    lua_settop(L, top);
}

int llmlab_lua_workload(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"n", "seed", "arrival", "rate", "burstiness", "concurrency", "think_s",
                                       "trace", "time_scale", "prompt_len", "output_len", "vocab", "vocab_lo",
                                       "model", "priorities", "cancel", "tokens", "stop_at_eos", "replay", "run",
                                       "prompts", "lengths", "max_new", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.workload", keys);
    wl_box *box = push_box(L);
    const char *replay = llmlab_lua_opt_str(L, 1, "replay", NULL);
    llmlab_err err = {0};
    if (replay) {
        const char *run = llmlab_lua_opt_str(L, 1, "run", NULL);
        if (!run) return luaL_error(L, "llmlab.workload: replay = \"%s\" needs run = the run's name", replay);
        if (llmlab_workload_read(replay, run, &box->w, &err)) return llmlab_lua_fail(L, &err);
        push_workload(L, box->w);
        return 1;
    }
    int has_prompts = lua_getfield(L, 1, "prompts") == LUA_TTABLE;
    int has_lengths = lua_getfield(L, 1, "lengths") == LUA_TTABLE;
    lua_pop(L, 2);
    if (has_prompts && has_lengths) return luaL_error(L, "llmlab.workload: give one of 'prompts' or 'lengths'");
    llmlab_workload_spec s;
    llmlab_workload_spec_init(&s);
    const llmlab_tokenizer *tok = NULL;
    if (lua_getfield(L, 1, "model") != LUA_TNIL) {
        llmlab_lua_model *m = luaL_testudata(L, -1, "llmlab.model");
        if (!m || !m->m) return luaL_error(L, "llmlab.workload: 'model' must be a model from llmlab.model{...}");
        tok = m->m->tok;
        s.vocab = m->m->cfg.vocab_size;
    }
    lua_pop(L, 1);
    s.seed = (uint64_t)llmlab_lua_opt_int(L, 1, "seed", 0);
    s.arrival = read_arrival(L, 1);
    s.trace = llmlab_lua_opt_str(L, 1, "trace", NULL);
    if (s.trace) s.arrival = LLMLAB_ARRIVAL_TRACE;
    s.rate = llmlab_lua_opt_num(L, 1, "rate", s.rate);
    s.burstiness = llmlab_lua_opt_num(L, 1, "burstiness", s.burstiness);
    s.concurrency = llmlab_lua_opt_int(L, 1, "concurrency", s.concurrency);
    s.think_s = llmlab_lua_opt_num(L, 1, "think_s", 0);
    s.time_scale = llmlab_lua_opt_num(L, 1, "time_scale", 1);
    s.vocab = llmlab_lua_opt_int(L, 1, "vocab", s.vocab);
    s.vocab_lo = llmlab_lua_opt_int(L, 1, "vocab_lo", 0);
    s.lengths_only = !llmlab_lua_opt_bool(L, 1, "tokens", 1) || has_prompts || has_lengths;
    s.stop_at_eos = llmlab_lua_opt_bool(L, 1, "stop_at_eos", 0);
    read_len(L, 1, "prompt_len", &s.prompt);
    read_len(L, 1, "output_len", &s.output);
    int mn = lua_getfield(L, 1, "max_new");
    lua_pop(L, 1);
    if (mn == LUA_TNUMBER) read_len(L, 1, "max_new", &s.output);
    else if (mn == LUA_TTABLE && !has_prompts && !has_lengths)
        return luaL_error(L, "llmlab.workload: a list of max_new needs prompts= or lengths= (else use output_len=)");
    else if (mn != LUA_TNIL && mn != LUA_TTABLE)
        return luaL_error(L, "llmlab.workload: max_new must be a number or a list");
    s.class_shares = read_shares(L, 1, &s.n_classes);
    read_cancel(L, 1, &s);
    if (has_prompts || has_lengths) {
        lua_getfield(L, 1, has_prompts ? "prompts" : "lengths");
        s.n = (int)luaL_len(L, -1);
        lua_pop(L, 1);
    } else {
        s.n = llmlab_lua_opt_int(L, 1, "n", s.trace ? 0 : 1);
    }
    if (has_lengths && s.vocab <= 0) return luaL_error(L, "llmlab.workload: vocab must be positive");
    if (llmlab_workload_generate(&s, tok, 1, &box->w, &err)) return llmlab_lua_fail(L, &err);
    push_workload(L, box->w);
    if (has_prompts || has_lengths) apply_lists(L, 1, lua_gettop(L), has_prompts, &s, s.n);
    return 1;
}
