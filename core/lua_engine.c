/* lua_engine.c - llmlab.engine, e:generate, e:run, and llmlab.results(path):write
 * (which also records llmlab.fidelity's results, lua_fidelity.c). */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "lua_internal.h"
#include "lua_sim.h"
#include "results.h"
#include "run_record.h"
#include "tokenizer.h"
#include "workload.h"

typedef llmlab_lua_engine lua_engine; /* lua_internal.h */
typedef llmlab_lua_result lua_result;

/* ---- plugin choice tables: {"name", key = value, ...} ------------------------------- */

typedef llmlab_lua_choice_values choice_values;

/* Reads field `kind` of the options table into a plugin choice; values point into
 * Lua strings kept alive by the options table. */
void llmlab_lua_read_choice(lua_State *L, int opts, const char *kind, llmlab_plugin_choice *c, choice_values *cv) {
    memset(c, 0, sizeof *c);
    cv->n = 0;
    int ty = lua_getfield(L, opts, kind);
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (ty == LUA_TSTRING) {
        c->name = lua_tostring(L, -1);
        lua_pop(L, 1);
        return;
    }
    if (ty != LUA_TTABLE) luaL_error(L, "llmlab.engine: '%s' must be a table like {\"name\", param = value}", kind);
    int t = lua_gettop(L);
    if (lua_geti(L, t, 1) != LUA_TSTRING) luaL_error(L, "llmlab.engine: %s[1] must be the plugin name", kind);
    c->name = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            if (cv->n == 64) luaL_error(L, "llmlab.engine: too many %s parameters", kind);
            llmlab_param_value *v = &cv->v[cv->n++];
            memset(v, 0, sizeof *v);
            v->key = lua_tostring(L, -2);
            switch (lua_type(L, -1)) {
            case LUA_TBOOLEAN: v->kind = LLMLAB_VAL_BOOL; v->b = lua_toboolean(L, -1); break;
            case LUA_TNUMBER:
                if (lua_isinteger(L, -1)) {
                    v->kind = LLMLAB_VAL_INT;
                    v->i = lua_tointeger(L, -1);
                    v->f = (double)v->i;
                } else {
                    v->kind = LLMLAB_VAL_FLOAT;
                    v->f = lua_tonumber(L, -1);
                }
                break;
            case LUA_TSTRING: v->kind = LLMLAB_VAL_STRING; v->s = lua_tostring(L, -1); break;
            case LUA_TUSERDATA: { /* a model (e.g. a speculative draft) stands for its directory */
                llmlab_lua_model *mu = luaL_testudata(L, -1, "llmlab.model");
                if (!mu) luaL_error(L, "llmlab.engine: %s parameter '%s' must be a number, string, boolean or model", kind, v->key);
                v->kind = LLMLAB_VAL_STRING;
                v->s = mu->m->path;
                break;
            }
            default: luaL_error(L, "llmlab.engine: %s parameter '%s' must be a number, string, boolean or model", kind, v->key);
            }
        } else if (!(lua_type(L, -2) == LUA_TNUMBER && lua_tointeger(L, -2) == 1)) {
            luaL_error(L, "llmlab.engine: %s: parameters are written key = value", kind);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static int engine_gc(lua_State *L) {
    lua_engine *u = luaL_checkudata(L, 1, "llmlab.engine");
    llmlab_engine_free(u->e);
    u->e = NULL;
    return 0;
}

int llmlab_lua_engine_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"model", "decoding", "attention", "quant", "sched", "seed",
                                       "kv_tokens", "kv_block_size", "max_seqs", "token_budget",
                                       "watermark", "swap_space", "preempt_mode", "kv_quant", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.engine", keys);
    lua_getfield(L, 1, "model");
    llmlab_lua_model *m = luaL_testudata(L, -1, "llmlab.model");
    if (!m || !m->m) return luaL_error(L, "llmlab.engine: 'model' must be a model from llmlab.model{...}");
    int model_idx = lua_gettop(L);
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    choice_values cv[5]; /* values point into Lua strings held by the options table */
    llmlab_engine_opts o = {.registry = ctx->registry};
    llmlab_lua_read_choice(L, 1, "decoding", &o.decoding, &cv[0]);
    llmlab_lua_read_choice(L, 1, "attention", &o.attention, &cv[1]);
    llmlab_lua_read_choice(L, 1, "quant", &o.quant, &cv[2]);
    llmlab_lua_read_choice(L, 1, "sched", &o.sched, &cv[3]);
    o.decoding.values = cv[0].v, o.decoding.n_values = cv[0].n;
    o.attention.values = cv[1].v, o.attention.n_values = cv[1].n;
    o.quant.values = cv[2].v, o.quant.n_values = cv[2].n;
    o.sched.values = cv[3].v, o.sched.n_values = cv[3].n;
    llmlab_lua_read_choice(L, 1, "kv_quant", &o.kv_quant, &cv[4]); /* KV-cache format (engine_kv.c) */
    o.kv_quant.values = cv[4].v, o.kv_quant.n_values = cv[4].n;
    o.seed = (uint64_t)llmlab_lua_opt_int(L, 1, "seed", 0);
    o.n_threads = m->threads;
    o.kv_tokens = llmlab_lua_opt_int(L, 1, "kv_tokens", 0);
    o.kv_block_size = llmlab_lua_opt_int(L, 1, "kv_block_size", ctx->settings->kv_block_size);
    o.max_seqs = llmlab_lua_opt_int(L, 1, "max_seqs", 0);
    o.token_budget = llmlab_lua_opt_int(L, 1, "token_budget", 0);
    llmlab_lua_read_serving(L, 1, &o); /* watermark, swap_space, preempt_mode (lua_serve.c) */
    lua_engine *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->e = NULL;
    u->seed = o.seed;
    luaL_setmetatable(L, "llmlab.engine");
    lua_pushvalue(L, model_idx); /* the engine keeps its model alive */
    lua_setiuservalue(L, -2, 1);
    llmlab_err err = {0};
    if (llmlab_engine_create(&u->e, m->m, &o, &err)) return llmlab_lua_fail(L, &err);
    return 1;
}

static void push_tokens(lua_State *L, const int32_t *t, int n) {
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, t[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int engine_generate(lua_State *L) {
    lua_engine *u = luaL_checkudata(L, 1, "llmlab.engine");
    int n = 0;
    int has_opts = lua_type(L, 3) == LUA_TTABLE;
    if (has_opts) {
        static const char *const keys[] = {"max_new", "temperature", "top_k", "top_p", "min_p", "stop_at_eos",
                                           "special", NULL};
        llmlab_lua_check_keys(L, 3, "generate", keys);
    }
    llmlab_sampling samp = llmlab_engine_sampling(u->e);
    int max_new = 32, stop = 1, special = 1;
    if (has_opts) {
        max_new = llmlab_lua_opt_int(L, 3, "max_new", 32);
        samp.temperature = (float)llmlab_lua_opt_num(L, 3, "temperature", samp.temperature);
        samp.top_k = llmlab_lua_opt_int(L, 3, "top_k", samp.top_k);
        samp.top_p = (float)llmlab_lua_opt_num(L, 3, "top_p", samp.top_p);
        samp.min_p = (float)llmlab_lua_opt_num(L, 3, "min_p", samp.min_p);
        stop = llmlab_lua_opt_bool(L, 3, "stop_at_eos", 1);
        special = llmlab_lua_opt_bool(L, 3, "special", 1);
    }
    if (max_new < 0) return luaL_error(L, "generate: max_new must be >= 0");
    const char *bad = llmlab_sampling_check(&samp);
    if (bad) return luaL_error(L, "generate: %s", bad);
    const llmlab_tokenizer *tok = llmlab_engine_model(u->e)->tok;
    int32_t *prompt = llmlab_lua_read_prompt_tok(L, 2, tok, special, &n);
    if (n == 0) {
        free(prompt);
        return luaL_error(L, "generate: the prompt is empty");
    }
    llmlab_request req = {.id = 0, .prompt = prompt, .prompt_len = n, .max_new = max_new, .sampling = &samp,
                          .stop_at_eos = stop};
    llmlab_run_result *r = NULL;
    llmlab_err err = {0};
    llmlab_status st = llmlab_engine_run(u->e, &req, 1, &r, &err);
    free(prompt);
    if (st) return llmlab_lua_fail(L, &err);
    lua_newtable(L);
    push_tokens(L, r->output[0], r->output_len[0]);
    lua_setfield(L, -2, "tokens");
    llmlab_lua_push_text(L, tok, r->output[0], r->output_len[0]);
    lua_setfield(L, -2, "text");
    lua_newtable(L);
    llmlab_lua_setint(L, "prompt_tokens", r->prompt_len[0]);
    llmlab_lua_setint(L, "new_tokens", r->output_len[0]);
    llmlab_lua_setnum(L, "ttft_s", r->first_token_s[0]);
    llmlab_lua_setnum(L, "wall_s", r->wall_s);
    llmlab_lua_setnum(L, "decode_tok_per_s", r->output_len[0] > 1 && r->finish_s[0] > r->first_token_s[0]
                                      ? (r->output_len[0] - 1) / (r->finish_s[0] - r->first_token_s[0]) : 0.0);
    llmlab_lua_setnum(L, "mean_accepted", r->mean_accepted);
    lua_setfield(L, -2, "metrics");
    llmlab_run_result_free(r);
    return 1;
}

static int result_gc(lua_State *L) {
    lua_result *u = luaL_checkudata(L, 1, "llmlab.result");
    llmlab_run_result_free(u->r);
    u->r = NULL;
    llmlab_fid_result_free(u->fid);
    u->fid = NULL;
    free(u->itl);
    u->itl = NULL;
    llmlab_workload_free(u->wl);
    u->wl = NULL;
    return 0;
}

/* Pushes {name = run total} of the plugin counters (e.g. drafted, accepted). */
static void push_metric_totals(lua_State *L, const llmlab_run_result *r) {
    lua_newtable(L);
    for (int m = 0; m < r->n_metrics; m++) {
        double sum = 0;
        for (int i = 0; i < r->n_reqs; i++) sum += r->metrics[(size_t)m * (size_t)r->n_reqs + (size_t)i];
        llmlab_lua_setnum(L, r->metric_names[m], sum);
    }
}

/* Userdata "llmlab.runbufs": e:run's request array and prompt buffers, freed by
 * __gc when a Lua error (a bad request) leaves e:run early. */
typedef struct {
    int n;                 /* prompts read so far */
    llmlab_request *reqs;  /* [n_reqs] */
    int32_t **prompts;     /* [n_reqs] malloc'd prompt ids */
} run_bufs;

static int run_bufs_gc(lua_State *L) {
    run_bufs *b = luaL_checkudata(L, 1, "llmlab.runbufs");
    for (int i = 0; b->prompts && i < b->n; i++) free(b->prompts[i]);
    free(b->prompts);
    free(b->reqs);
    *b = (run_bufs){0};
    return 0;
}

/* e:run(workload) -> {summary=..., requests=..., steps=..., _run=<userdata>}; the
 * workload is llmlab.workload{...} ({requests = {...}}) or a plain list of
 * request tables (llmlab.prompts{...}). */
static int engine_run(lua_State *L) {
    lua_engine *u = luaL_checkudata(L, 1, "llmlab.engine");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "requests") != LUA_TTABLE) {
        lua_pop(L, 1);
        if (lua_geti(L, 2, 1) != LUA_TTABLE)
            return luaL_error(L, "run: expected a workload from llmlab.workload{...} or a list of requests "
                                 "{prompt = ..., max_new = n} (llmlab.prompts{...})");
        lua_pop(L, 1);
        lua_pushvalue(L, 2);
    }
    int rq = lua_gettop(L);
    const llmlab_tokenizer *tok = llmlab_engine_model(u->e)->tok;
    int n = (int)luaL_len(L, rq);
    run_bufs *bufs = lua_newuserdatauv(L, sizeof *bufs, 0);
    *bufs = (run_bufs){0};
    luaL_setmetatable(L, "llmlab.runbufs");
    int bufs_idx = lua_gettop(L);
    llmlab_request *reqs = bufs->reqs = calloc((size_t)(n ? n : 1), sizeof *reqs);
    int32_t **prompts = bufs->prompts = calloc((size_t)(n ? n : 1), sizeof *prompts);
    if (!reqs || !prompts) return luaL_error(L, "out of memory");
    for (int i = 0; i < n; i++) {
        if (lua_geti(L, rq, i + 1) != LUA_TTABLE) return luaL_error(L, "run: request %d is not a table", i + 1);
        int special = llmlab_lua_opt_bool(L, lua_gettop(L), "special", 1);
        lua_getfield(L, -1, "prompt");
        prompts[i] = llmlab_lua_read_prompt_tok(L, lua_gettop(L), tok, special, &reqs[i].prompt_len);
        bufs->n = i + 1;
        lua_pop(L, 1);
        reqs[i].id = i;
        reqs[i].prompt = prompts[i];
        reqs[i].max_new = llmlab_lua_opt_int(L, lua_gettop(L), "max_new", 32);
        reqs[i].arrival_s = llmlab_lua_opt_num(L, lua_gettop(L), "arrival_s", 0.0);
        llmlab_lua_read_request_serving(L, lua_gettop(L), &reqs[i]); /* priority, cancel_after_s, released_by */
        reqs[i].stop_at_eos = llmlab_lua_opt_bool(L, lua_gettop(L), "stop_at_eos", 0);
        lua_pop(L, 1);
    }
    lua_result *res = lua_newuserdatauv(L, sizeof *res, 1);
    memset(res, 0, sizeof *res);
    luaL_setmetatable(L, "llmlab.result");
    lua_pushvalue(L, 1); /* the result keeps its engine alive for results:write */
    lua_setiuservalue(L, -2, 1);
    int res_idx = lua_gettop(L);
    llmlab_results_utc_now(res->start);
    llmlab_err err = {0};
    llmlab_status st = llmlab_engine_run(u->e, reqs, n, &res->r, &err);
    llmlab_results_utc_now(res->end);
    if (!st) st = llmlab_workload_from_requests(reqs, n, &res->wl, &err); /* recorded by results:write */
    lua_pushcfunction(L, run_bufs_gc); /* free the buffers now rather than at the next GC */
    lua_pushvalue(L, bufs_idx);
    lua_call(L, 1, 0);
    if (st) return llmlab_lua_fail(L, &err);
    llmlab_run_result *r = res->r;
    lua_newtable(L);
    lua_newtable(L);
    llmlab_lua_setint(L, "requests", r->n_reqs);
    llmlab_lua_setint(L, "prompt_tokens", r->prompt_tokens);
    llmlab_lua_setint(L, "output_tokens", r->output_tokens);
    llmlab_lua_setint(L, "target_forwards", r->target_forwards);
    llmlab_lua_setint(L, "steps", r->n_steps);
    llmlab_lua_setnum(L, "wall_s", r->wall_s);
    llmlab_lua_setnum(L, "output_tok_per_s", r->output_tok_per_s);
    llmlab_lua_setnum(L, "mean_accepted", r->mean_accepted);
    llmlab_lua_push_serving_summary(L, r); /* preemptions, swaps, cancelled, ... (lua_serve.c) */
    push_metric_totals(L, r);
    lua_setfield(L, -2, "metrics");
    lua_setfield(L, -2, "summary");
    llmlab_lua_push_run_serving(L, 3, res, llmlab_engine_kv(u->e)->o.n_blocks); /* result.serving (lua_sim.c) */
    lua_setfield(L, -2, "serving");
    lua_createtable(L, r->n_reqs, 0);
    for (int i = 0; i < r->n_reqs; i++) {
        lua_newtable(L);
        llmlab_lua_setint(L, "id", r->req_id[i]);
        llmlab_lua_setint(L, "prompt_len", r->prompt_len[i]);
        llmlab_lua_setint(L, "output_len", r->output_len[i]);
        llmlab_lua_setnum(L, "ttft_s", r->first_token_s[i] - r->arrival_s[i]);
        llmlab_lua_setnum(L, "latency_s", r->finish_s[i] - r->arrival_s[i]);
        llmlab_lua_setint(L, "target_forwards", r->forwards[i]);
        llmlab_lua_push_request_serving(L, r, i); /* status, preemptions, swaps (lua_serve.c) */
        push_tokens(L, r->output[i], r->output_len[i]);
        lua_setfield(L, -2, "tokens");
        llmlab_lua_push_text(L, tok, r->output[i], r->output_len[i]);
        lua_setfield(L, -2, "text");
        lua_newtable(L);
        for (int m = 0; m < r->n_metrics; m++) llmlab_lua_setnum(L, r->metric_names[m], r->metrics[(size_t)m * (size_t)r->n_reqs + (size_t)i]);
        lua_setfield(L, -2, "metrics");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "requests");
    lua_pushvalue(L, res_idx);
    lua_setfield(L, -2, "_run");
    return 1;
}

void llmlab_lua_open_engine(lua_State *L) {
    static const luaL_Reg methods[] = {{"generate", engine_generate}, {"run", engine_run},
                                       {"perplexity", llmlab_lua_engine_perplexity},
                                       {"weights", llmlab_lua_engine_weights}, {NULL, NULL}};
    luaL_newmetatable(L, "llmlab.engine");
    lua_pushcfunction(L, engine_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    llmlab_lua_gc_metatable(L, "llmlab.result", result_gc);
    llmlab_lua_gc_metatable(L, "llmlab.runbufs", run_bufs_gc);
}

/* ---- llmlab.results(path) ------------------------------------------------------------ */

/* results:write's optional 4th argument {key = number | string | boolean}: numbers
 * and booleans become columns of the run's one-row `summary` table (so `llmlab
 * report` groups them like any metric), strings attributes extra/<key>. */
static llmlab_status write_extra(lua_State *L, int idx, llmlab_run *run, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "summary", err);
    if (!t) return err->code;
    llmlab_status st = LLMLAB_OK;
    lua_pushnil(L);
    while (!st && lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return llmlab_err_set(err, LLMLAB_EINVAL, "results:write: extra metrics need string keys");
        }
        const char *k = lua_tostring(L, -2);
        char key[160];
        snprintf(key, sizeof key, "extra/%s", k);
        if (lua_type(L, -1) == LUA_TNUMBER) st = llmlab_table_append_double(t, k, lua_tonumber(L, -1), err);
        else if (lua_type(L, -1) == LUA_TBOOLEAN) st = llmlab_table_append_int(t, k, lua_toboolean(L, -1), err);
        else if (lua_type(L, -1) == LUA_TSTRING) st = llmlab_run_attr_str(run, key, lua_tostring(L, -1), err);
        else st = llmlab_err_set(err, LLMLAB_EINVAL, "results:write: extra metric '%s' is a %s (numbers, strings "
                                 "and booleans are recorded)", k, luaL_typename(L, -1));
        if (!st && llmlab_table_rows(t) != 1)
            st = llmlab_err_set(err, LLMLAB_EINVAL, "results:write: extra metric '%s' is already a summary column", k);
        lua_pop(L, 1);
    }
    if (st) lua_pop(L, 1); /* the key lua_next left */
    return st;
}

static int results_write(lua_State *L) {
    const char *path = luaL_checkstring(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4); /* slot 4 stays the extra table (or nil) under what is pushed below */
    lua_getfield(L, 3, "_run");
    lua_result *res = luaL_testudata(L, -1, "llmlab.result");
    if (!res || !res->r) return luaL_error(L, "results:write: expected the result of e:run(...) or llmlab.fidelity{...}");
    lua_getiuservalue(L, -1, 1);
    llmlab_sim *sim = llmlab_lua_result_sim(L, -1); /* a simulated run (lua_sim.c) */
    lua_engine *eu = sim ? NULL : luaL_checkudata(L, -1, "llmlab.engine");
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    char *script = NULL;
    FILE *f = fopen(ctx->script_path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        script = len >= 0 ? calloc((size_t)len + 1, 1) : NULL;
        if (script && fread(script, 1, (size_t)len, f) != (size_t)len) script[0] = 0;
        fclose(f);
    }
    llmlab_err err = {0};
    llmlab_run *run = llmlab_run_create(name, &err);
    llmlab_status st = run ? LLMLAB_OK : err.code;
    llmlab_record_info info = {ctx->script_path, script, sim ? "simulated" : llmlab_model_backend_name(llmlab_engine_model(eu->e)),
                               sim ? 0 : llmlab_engine_model(eu->e)->device,
                               sim ? 0 : llmlab_engine_threads(eu->e), sim ? llmlab_sim_options(sim)->seed : eu->seed,
                               res->start, res->end};
    if (!st && sim) st = llmlab_sim_record(run, sim, res->r, &info, &res->serve, &err);
    else if (!st) st = llmlab_record_run_serving(run, eu->e, res->r, &info, &res->serve, &err);
    if (!st && res->fid) st = llmlab_fidelity_record(run, res->fid, &err);
    if (!st && res->wl) st = llmlab_workload_record(run, res->wl->reqs, res->wl->n, &err); /* for replay */
    if (!st && !lua_isnoneornil(L, 4)) st = write_extra(L, 4, run, &err);
    if (!st) st = llmlab_results_write(path, run, &err);
    llmlab_run_free(run);
    free(script);
    if (st) return llmlab_lua_fail(L, &err);
    lua_pushstring(L, path);
    return 1;
}

int llmlab_lua_results_new(lua_State *L) {
    luaL_checkstring(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, results_write, 1);
    lua_setfield(L, -2, "write");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "path");
    return 1;
}

void llmlab_lua_open_results(lua_State *L) { (void)L; }
