/* lua_fidelity.c - llmlab.fidelity{...}: teacher-forced fidelity of an attention
 * policy against dense attention on the same texts (core/fidelity.h,
 * docs/attention/fidelity.md, docs/lua-api.md).
 *
 * Every buffer that must survive a Lua error (texts, engines, the result) is a
 * userdata anchored on the stack, so an error anywhere leaks nothing. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fidelity.h"
#include "lua_internal.h"
#include "results.h"
#include "tokenizer.h"



/* Copies the string-keyed pairs (and [1] when with_name) of table src into dst. */
static void copy_pairs(lua_State *L, int src, int dst, int with_name) {
    lua_pushnil(L);
    while (lua_next(L, src)) {
        int named = lua_type(L, -2) == LUA_TSTRING;
        int first = lua_type(L, -2) == LUA_TNUMBER && lua_tointeger(L, -2) == 1;
        if (!named && !(first && with_name))
            luaL_error(L, "llmlab.fidelity: attention parameters are written key = value");
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, dst);
    }
}

/* Pushes {attention = {"name", k = v, ...}}: opts.attention ("name" or a choice
 * table; default "dense") with opts.params {k = v} merged in. */
static int push_attention(lua_State *L, int opts) {
    lua_newtable(L);
    int holder = lua_gettop(L);
    lua_newtable(L);
    int choice = lua_gettop(L);
    int ty = lua_getfield(L, opts, "attention");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, "dense");
        lua_rawseti(L, choice, 1);
    } else if (ty == LUA_TSTRING) {
        lua_rawseti(L, choice, 1);
    } else if (ty == LUA_TTABLE) {
        copy_pairs(L, lua_gettop(L), choice, 1);
        lua_pop(L, 1);
    } else {
        luaL_error(L, "llmlab.fidelity: 'attention' must be a plugin name or a table like {\"name\", param = value}");
    }
    ty = lua_getfield(L, opts, "params");
    if (ty == LUA_TTABLE) copy_pairs(L, lua_gettop(L), choice, 0);
    else if (ty != LUA_TNIL) luaL_error(L, "llmlab.fidelity: 'params' must be a table {param = value}");
    lua_pop(L, 1);
    lua_setfield(L, holder, "attention");
    return holder;
}

/* Reads one text (string, encoded with the model's tokenizer and its special
 * tokens, or an id table at the top of the stack) into a userdata buffer stored
 * in keep[]; pops the text. */
static void read_text(lua_State *L, int keep, const llmlab_tokenizer *tok, llmlab_fid_text *t) {
    int len = 0;
    int32_t *ids = llmlab_lua_read_prompt_tok(L, lua_gettop(L), tok, 1, &len);
    int32_t *buf = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *buf, 0);
    memcpy(buf, ids, (size_t)len * sizeof *buf);
    free(ids);
    lua_rawseti(L, keep, (lua_Integer)luaL_len(L, keep) + 1);
    lua_pop(L, 1);
    t->tokens = buf;
    t->len = len;
}

/* texts = {...} or workload = llmlab.workload{...}: the texts [*n], in GC'd
 * buffers anchored in keep. */
static llmlab_fid_text *read_texts(lua_State *L, int opts, int keep, const llmlab_tokenizer *tok, int *n_out) {
    int has_texts = lua_getfield(L, opts, "texts") != LUA_TNIL;
    int has_wl = lua_getfield(L, opts, "workload") != LUA_TNIL;
    lua_pop(L, 2);
    if (has_texts == has_wl) luaL_error(L, "llmlab.fidelity: give exactly one of 'texts' or 'workload'");
    if (has_texts && lua_getfield(L, opts, "texts") != LUA_TTABLE)
        luaL_error(L, "llmlab.fidelity: 'texts' must be a list of strings or token-id tables");
    if (has_wl && (lua_getfield(L, opts, "workload") != LUA_TTABLE || lua_getfield(L, -1, "requests") != LUA_TTABLE))
        luaL_error(L, "llmlab.fidelity: 'workload' must come from llmlab.workload{...}");
    int src = lua_gettop(L);
    int n = (int)luaL_len(L, src);
    if (n <= 0) luaL_error(L, "llmlab.fidelity: no texts to score");
    llmlab_fid_text *t = lua_newuserdatauv(L, (size_t)n * sizeof *t, 0);
    lua_rawseti(L, keep, (lua_Integer)luaL_len(L, keep) + 1);
    for (int i = 0; i < n; i++) {
        lua_geti(L, src, i + 1);
        if (has_wl) {
            if (lua_type(L, -1) != LUA_TTABLE) luaL_error(L, "llmlab.fidelity: workload request %d is not a table", i + 1);
            lua_getfield(L, -1, "prompt");
            lua_remove(L, -2);
        }
        read_text(L, keep, tok, &t[i]);
    }
    lua_settop(L, src - 1 - has_wl);
    *n_out = n;
    return t;
}

/* prefix = N (every text) or {N1, N2, ...}; default 1 (score every token but the first). */
static void read_prefix(lua_State *L, int opts, llmlab_fid_text *t, int n) {
    int ty = lua_getfield(L, opts, "prefix");
    for (int i = 0; i < n; i++) {
        int ok = 1;
        lua_Integer v = 1;
        if (ty == LUA_TNUMBER) v = lua_tointegerx(L, -1, &ok);
        else if (ty == LUA_TTABLE) {
            if (luaL_len(L, -1) != n) luaL_error(L, "llmlab.fidelity: 'prefix' has %d entries for %d texts", (int)luaL_len(L, -1), n);
            lua_geti(L, -1, i + 1);
            v = lua_tointegerx(L, -1, &ok);
            lua_pop(L, 1);
        } else if (ty != LUA_TNIL) ok = 0;
        if (!ok || v < 0 || v > INT32_MAX) luaL_error(L, "llmlab.fidelity: 'prefix' must be an integer or a list of integers");
        t[i].prefix = (int)v;
    }
    lua_pop(L, 1);
}

/* A new llmlab.engine userdata (engine still NULL) holding the model alive. */
static llmlab_lua_engine *push_engine(lua_State *L, int model_idx, uint64_t seed) {
    llmlab_lua_engine *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->e = NULL;
    u->seed = seed;
    luaL_setmetatable(L, "llmlab.engine");
    lua_pushvalue(L, model_idx);
    lua_setiuservalue(L, -2, 1);
    return u;
}

static void push_per_token(lua_State *L, const llmlab_fid_result *f) {
    const char *names[] = {"req", "pos", "kl", "top1", "nll", "nll_dense"};
    lua_createtable(L, 0, 6);
    for (int c = 0; c < 6; c++) {
        lua_createtable(L, f->n_tok, 0);
        for (int k = 0; k < f->n_tok; k++) {
            switch (c) {
            case 0: lua_pushinteger(L, f->req[k]); break;
            case 1: lua_pushinteger(L, f->pos[k]); break;
            case 2: lua_pushnumber(L, f->kl[k]); break;
            case 3: lua_pushinteger(L, f->top1[k]); break;
            case 4: lua_pushnumber(L, f->nll[k]); break;
            default: lua_pushnumber(L, f->nll_dense[k]); break;
            }
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, names[c]);
    }
}

static void push_summary(lua_State *L, const llmlab_fid_result *f, int per_token) {
    lua_newtable(L);
    llmlab_lua_setnum(L, "kl", f->mean_kl);
    llmlab_lua_setnum(L, "top1", f->top1_rate);
    llmlab_lua_setnum(L, "ppl", f->ppl);
    llmlab_lua_setnum(L, "ppl_dense", f->ppl_dense);
    llmlab_lua_setnum(L, "nll", f->mean_nll);
    llmlab_lua_setnum(L, "nll_dense", f->mean_nll_dense);
    llmlab_lua_setint(L, "tokens", f->n_tok);
    llmlab_lua_setnum(L, "tok_per_s", f->tok_per_s);
    llmlab_lua_setnum(L, "tok_per_s_dense", f->tok_per_s_dense);
    llmlab_lua_setnum(L, "kv_bytes_mean", f->kv_bytes_mean);
    llmlab_lua_setnum(L, "kv_bytes_max", f->kv_bytes_max);
    llmlab_lua_setnum(L, "kv_bytes_mean_dense", f->kv_bytes_mean_dense);
    llmlab_lua_setnum(L, "kv_bytes_max_dense", f->kv_bytes_max_dense);
    llmlab_lua_setint(L, "groups", f->groups);
    lua_createtable(L, f->n_texts, 0);
    for (int i = 0; i < f->n_texts; i++) {
        lua_newtable(L);
        llmlab_lua_setint(L, "req", i);
        llmlab_lua_setint(L, "len", f->text_len[i]);
        llmlab_lua_setint(L, "prefix", f->text_prefix[i]);
        llmlab_lua_setint(L, "tokens", f->text_tokens[i]);
        llmlab_lua_setnum(L, "kl", f->text_kl[i]);
        llmlab_lua_setnum(L, "top1", f->text_top1[i]);
        llmlab_lua_setnum(L, "ppl", f->text_ppl[i]);
        llmlab_lua_setnum(L, "ppl_dense", f->text_ppl_dense[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "texts");
    if (per_token) {
        push_per_token(L, f);
        lua_setfield(L, -2, "per_token");
    }
}

/* The engines' options from the table at opts (choices read from holder too). */
static void read_engine_opts(lua_State *L, int opts, int holder, const llmlab_lua_model *m, llmlab_engine_opts *o,
                             llmlab_lua_choice_values cv[4]) {
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    *o = (llmlab_engine_opts){.registry = ctx->registry};
    llmlab_lua_read_choice(L, holder, "attention", &o->attention, &cv[0]);
    llmlab_lua_read_choice(L, opts, "quant", &o->quant, &cv[1]);
    llmlab_lua_read_choice(L, opts, "sched", &o->sched, &cv[2]);
    o->attention.values = cv[0].v, o->attention.n_values = cv[0].n;
    o->quant.values = cv[1].v, o->quant.n_values = cv[1].n;
    o->sched.values = cv[2].v, o->sched.n_values = cv[2].n;
    llmlab_lua_read_choice(L, opts, "kv_quant", &o->kv_quant, &cv[3]); /* the reference keeps f32 */
    o->kv_quant.values = cv[3].v, o->kv_quant.n_values = cv[3].n;
    o->seed = (uint64_t)llmlab_lua_opt_int(L, opts, "seed", 0);
    o->n_threads = llmlab_lua_opt_int(L, opts, "threads", m->threads);
    if (o->n_threads < 0) luaL_error(L, "llmlab.fidelity: threads must be >= 0");
    o->kv_tokens = llmlab_lua_opt_int(L, opts, "kv_tokens", 0);
    o->kv_block_size = llmlab_lua_opt_int(L, opts, "kv_block_size", ctx->settings->kv_block_size);
    o->max_seqs = llmlab_lua_opt_int(L, opts, "max_seqs", 0);
    o->token_budget = llmlab_lua_opt_int(L, opts, "token_budget", 0);
}

int llmlab_lua_fidelity(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"model", "attention", "params", "quant", "kv_quant", "sched", "seed", "threads",
                                       "kv_tokens", "kv_block_size", "max_seqs", "token_budget", "texts",
                                       "workload", "prefix", "ref_bytes", "per_token", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.fidelity", keys);
    lua_getfield(L, 1, "model");
    llmlab_lua_model *m = luaL_testudata(L, -1, "llmlab.model");
    if (!m || !m->m) return luaL_error(L, "llmlab.fidelity: 'model' must be a model from llmlab.model{...}");
    int model_idx = lua_gettop(L);
    int holder = push_attention(L, 1);
    lua_newtable(L); /* keep: the texts' buffers */
    int keep = lua_gettop(L), n = 0;
    llmlab_fid_text *texts = read_texts(L, 1, keep, m->m->tok, &n);
    read_prefix(L, 1, texts, n);
    double ref_bytes = llmlab_lua_opt_num(L, 1, "ref_bytes", 0);
    if (!(ref_bytes >= 0)) return luaL_error(L, "llmlab.fidelity: ref_bytes must be >= 0");
    llmlab_fid_opts fo = {(size_t)ref_bytes};
    int per_token = llmlab_lua_opt_bool(L, 1, "per_token", 1);
    llmlab_lua_choice_values cv[4];
    llmlab_engine_opts o;
    read_engine_opts(L, 1, holder, m, &o, cv);
    llmlab_lua_engine *pol = push_engine(L, model_idx, o.seed);
    int pol_idx = lua_gettop(L);
    llmlab_lua_engine *den = push_engine(L, model_idx, o.seed);
    llmlab_err err = {0};
    if (llmlab_fidelity_engines(m->m, &o, &den->e, &pol->e, &err)) return llmlab_lua_fail(L, &err);
    llmlab_lua_result *res = lua_newuserdatauv(L, sizeof *res, 1);
    memset(res, 0, sizeof *res);
    luaL_setmetatable(L, "llmlab.result");
    lua_pushvalue(L, pol_idx); /* the result keeps the policy engine for results:write */
    lua_setiuservalue(L, -2, 1);
    int res_idx = lua_gettop(L);
    llmlab_fid_result *f = NULL;
    llmlab_results_utc_now(res->start);
    llmlab_status st = llmlab_fidelity(den->e, pol->e, texts, n, &fo, &f, &err);
    llmlab_results_utc_now(res->end);
    llmlab_engine_free(den->e); /* its KV pool is not needed any more */
    den->e = NULL;
    if (st) return llmlab_lua_fail(L, &err);
    res->fid = f;
    res->r = f->run;
    f->run = NULL;
    push_summary(L, f, per_token);
    lua_pushvalue(L, res_idx);
    lua_setfield(L, -2, "_run");
    return 1;
}
