/* lua_api.c - the `llmlab` Lua module and the script runner.
 *
 * Userdata types: llmlab.model (a loaded model), llmlab.engine (model + plugins),
 * llmlab.result (a finished run, kept for results:write), llmlab.results (a
 * results file).  Errors raised here go through luaL_error, so Lua prefixes the
 * script's file:line. */
#include "lua_api.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "engine.h"
#include "error.h"
#include "generate.h"
#include "lua_internal.h"
#include "lua_sim.h"
#include "results.h"
#include "derive.h"
#include "synth.h"

/* ---- shared helpers ---------------------------------------------------------------- */

llmlab_lua_opts *llmlab_lua_ctx(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "llmlab.ctx");
    llmlab_lua_opts *o = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return o;
}

int llmlab_lua_opt_int(lua_State *L, int t, const char *key, int def) {
    int ty = lua_getfield(L, t, key), ok;
    int v = def;
    if (ty != LUA_TNIL) {
        lua_Integer i = lua_tointegerx(L, -1, &ok);
        if (!ok) luaL_error(L, "field '%s' must be an integer", key);
        v = (int)i;
    }
    lua_pop(L, 1);
    return v;
}

double llmlab_lua_opt_num(lua_State *L, int t, const char *key, double def) {
    int ty = lua_getfield(L, t, key), ok;
    double v = def;
    if (ty != LUA_TNIL) {
        v = lua_tonumberx(L, -1, &ok);
        if (!ok) luaL_error(L, "field '%s' must be a number", key);
    }
    lua_pop(L, 1);
    return v;
}

const char *llmlab_lua_opt_str(lua_State *L, int t, const char *key, const char *def) {
    int ty = lua_getfield(L, t, key);
    const char *v = def;
    if (ty != LUA_TNIL) {
        if (ty != LUA_TSTRING) luaL_error(L, "field '%s' must be a string", key);
        v = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the string stays alive: it is referenced by the table */
    return v;
}

int llmlab_lua_opt_bool(lua_State *L, int t, const char *key, int def) {
    int ty = lua_getfield(L, t, key);
    int v = def;
    if (ty != LUA_TNIL) {
        if (ty != LUA_TBOOLEAN) luaL_error(L, "field '%s' must be true or false", key);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* Raises the error record as a Lua error (file:line is added by luaL_error). */
int llmlab_lua_fail(lua_State *L, const llmlab_err *err) { return luaL_error(L, "%s", err->msg); }

/* Rejects keys of an options table that are not in allowed[] (typos are errors). */
void llmlab_lua_check_keys(lua_State *L, int t, const char *what, const char *const *allowed) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) continue;
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (int i = 0; allowed[i]; i++) ok |= !strcmp(allowed[i], k);
        if (!ok) {
            char list[512] = "";
            for (int i = 0; allowed[i]; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
            luaL_error(L, "%s: unknown field '%s' (fields: %s)", what, k, list);
        }
    }
}

/* ---- llmlab.synth -------------------------------------------------------------------- */

static int l_synth(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"dir", "preset", "seed", "dtype", "vocab", "dim", "layers", "heads",
                                       "kv_heads", "ffn", "head_dim", "tie", "qkv_bias", "shards", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.synth", keys);
    const char *dir = llmlab_lua_opt_str(L, 1, "dir", NULL);
    if (!dir) return luaL_error(L, "llmlab.synth: 'dir' is required");
    llmlab_synth_opts o;
    const char *preset = llmlab_lua_opt_str(L, 1, "preset", "tiny");
    if (llmlab_synth_preset(&o, preset))
        return luaL_error(L, "llmlab.synth: unknown preset '%s' (presets: tiny, tinyllama-1.1b, llama3-8b)", preset);
    o.seed = (uint64_t)llmlab_lua_opt_int(L, 1, "seed", (int)o.seed);
    const char *dt = llmlab_lua_opt_str(L, 1, "dtype", NULL);
    if (dt && llmlab_dtype_parse(dt, &o.dtype)) return luaL_error(L, "llmlab.synth: dtype '%s' is not f32, f16 or bf16", dt);
    o.cfg.vocab_size = llmlab_lua_opt_int(L, 1, "vocab", o.cfg.vocab_size);
    o.cfg.dim = llmlab_lua_opt_int(L, 1, "dim", o.cfg.dim);
    o.cfg.n_layers = llmlab_lua_opt_int(L, 1, "layers", o.cfg.n_layers);
    int heads_given = llmlab_lua_opt_int(L, 1, "heads", 0);
    if (heads_given) o.cfg.n_heads = heads_given;
    o.cfg.n_kv_heads = llmlab_lua_opt_int(L, 1, "kv_heads", o.cfg.n_kv_heads);
    o.cfg.ffn_dim = llmlab_lua_opt_int(L, 1, "ffn", o.cfg.ffn_dim);
    o.cfg.head_dim = llmlab_lua_opt_int(L, 1, "head_dim", o.cfg.dim / o.cfg.n_heads);
    o.cfg.tie_embeddings = llmlab_lua_opt_bool(L, 1, "tie", o.cfg.tie_embeddings);
    o.cfg.qkv_bias = llmlab_lua_opt_bool(L, 1, "qkv_bias", o.cfg.qkv_bias);
    if (o.cfg.qkv_bias) {
        o.cfg.arch = LLMLAB_ARCH_QWEN2;
        snprintf(o.cfg.arch_name, sizeof o.cfg.arch_name, "Qwen2ForCausalLM");
    }
    o.n_shards = llmlab_lua_opt_int(L, 1, "shards", 1);
    llmlab_err err = {0};
    if (llmlab_synth_write(&o, dir, &err)) return llmlab_lua_fail(L, &err);
    lua_pushstring(L, dir);
    return 1;
}

/* ---- llmlab.derive ------------------------------------------------------------------- */

/* llmlab.derive{src=DIR, dir=OUT, layers=N, dtype=T} -> OUT: the source's first
 * N layers in dtype T (a draft that agrees often with its source). */
static int l_derive(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"src", "dir", "layers", "dtype", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.derive", keys);
    const char *src = llmlab_lua_opt_str(L, 1, "src", NULL), *dir = llmlab_lua_opt_str(L, 1, "dir", NULL);
    if (!src || !dir) return luaL_error(L, "llmlab.derive: 'src' and 'dir' are required");
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    if (llmlab_model_load(&m, src, &err)) return llmlab_lua_fail(L, &err);
    llmlab_derive_opts o = {m->cfg.torch_dtype, llmlab_lua_opt_int(L, 1, "layers", 0)};
    const char *dt = llmlab_lua_opt_str(L, 1, "dtype", NULL);
    if (dt && llmlab_dtype_parse(dt, &o.dtype)) {
        llmlab_model_free(m);
        return luaL_error(L, "llmlab.derive: dtype '%s' is not f32, f16 or bf16", dt);
    }
    llmlab_status st = llmlab_derive_write(m, &o, dir, &err);
    llmlab_model_free(m);
    if (st) return llmlab_lua_fail(L, &err);
    lua_pushstring(L, dir);
    return 1;
}

/* ---- llmlab.model -------------------------------------------------------------------- */

static int model_gc(lua_State *L) {
    llmlab_lua_model *u = luaL_checkudata(L, 1, "llmlab.model");
    llmlab_model_free(u->m);
    u->m = NULL;
    return 0;
}

static int model_index(lua_State *L) {
    llmlab_lua_model *u = luaL_checkudata(L, 1, "llmlab.model");
    const char *k = luaL_checkstring(L, 2);
    const llmlab_config *c = &u->m->cfg;
    if (!strcmp(k, "path")) lua_pushstring(L, u->m->path);
    else if (!strcmp(k, "vocab")) lua_pushinteger(L, c->vocab_size);
    else if (!strcmp(k, "dim")) lua_pushinteger(L, c->dim);
    else if (!strcmp(k, "layers")) lua_pushinteger(L, c->n_layers);
    else if (!strcmp(k, "heads")) lua_pushinteger(L, c->n_heads);
    else if (!strcmp(k, "kv_heads")) lua_pushinteger(L, c->n_kv_heads);
    else if (!strcmp(k, "hash")) lua_pushstring(L, u->m->hash);
    else if (!strcmp(k, "backend")) lua_pushstring(L, llmlab_model_backend_name(u->m));
    else if (!strcmp(k, "device")) lua_pushinteger(L, u->m->device);
    else if (!strcmp(k, "deterministic")) lua_pushboolean(L, u->m->deterministic);
    else if (!strcmp(k, "threads")) lua_pushinteger(L, u->threads);
    else if (!strcmp(k, "params")) {
        double p = (double)c->vocab_size * c->dim * (c->tie_embeddings ? 1 : 2);
        p += (double)c->n_layers * ((double)c->dim * c->head_dim * (2.0 * c->n_heads + 2.0 * c->n_kv_heads) +
                                    3.0 * c->dim * c->ffn_dim);
        lua_pushinteger(L, (lua_Integer)p);
    } else if (!llmlab_lua_model_method(L, k)) lua_pushnil(L); /* encode, decode, tokenizer (lua_text.c) */
    return 1;
}

static int l_model(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"path", "backend", "threads", "device", "deterministic", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.model", keys);
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    const char *path = llmlab_lua_opt_str(L, 1, "path", NULL);
    if (!path) return luaL_error(L, "llmlab.model: 'path' is required");
    const char *backend = llmlab_lua_opt_str(L, 1, "backend", ctx->settings->backend);
    if (strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0)
        return luaL_error(L, "llmlab.model: backend '%s' is not one of: cpu, cuda", backend);
    int device = llmlab_lua_opt_int(L, 1, "device", ctx->settings->device);
    if (device < 0) return luaL_error(L, "llmlab.model: device must be >= 0 (got %d)", device);
    int deterministic = llmlab_lua_opt_bool(L, 1, "deterministic", 0);
    int threads = llmlab_lua_opt_int(L, 1, "threads", ctx->settings->threads);
    if (threads < 0) return luaL_error(L, "llmlab.model: threads must be >= 0");
    llmlab_lua_model *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->m = NULL;
    u->threads = threads;
    luaL_setmetatable(L, "llmlab.model");
    llmlab_err err = {0};
    if (llmlab_model_load(&u->m, path, &err)) return llmlab_lua_fail(L, &err);
    if (!strcmp(backend, "cuda") && llmlab_model_set_backend(u->m, LLMLAB_BACKEND_CUDA, device, deterministic, &err))
        return llmlab_lua_fail(L, &err);
    return 1;
}

/* llmlab.workload{...} lives in lua_workload.c. */

/* ---- llmlab.plugins / load_plugin ------------------------------------------------- */

static void push_param_spec(lua_State *L, const llmlab_param_spec *sp) {
    lua_newtable(L);
    lua_pushstring(L, sp->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, llmlab_param_type_name(sp->type));
    lua_setfield(L, -2, "type");
    if (sp->default_value) {
        lua_pushstring(L, sp->default_value);
        lua_setfield(L, -2, "default");
    }
    if (sp->min <= sp->max && (sp->type == LLMLAB_PARAM_INT || sp->type == LLMLAB_PARAM_FLOAT)) {
        lua_pushnumber(L, sp->min);
        lua_setfield(L, -2, "min");
        lua_pushnumber(L, sp->max);
        lua_setfield(L, -2, "max");
    }
    if (sp->type == LLMLAB_PARAM_ENUM) {
        lua_newtable(L);
        for (int c = 0; sp->choices[c]; c++) {
            lua_pushstring(L, sp->choices[c]);
            lua_rawseti(L, -2, c + 1);
        }
        lua_setfield(L, -2, "choices");
    }
    lua_pushstring(L, sp->doc ? sp->doc : "");
    lua_setfield(L, -2, "doc");
}

static int l_plugins(lua_State *L) {
    llmlab_registry *r = llmlab_lua_ctx(L)->registry;
    lua_newtable(L);
    for (int i = 0; i < llmlab_registry_count(r); i++) {
        const llmlab_registry_entry *en = llmlab_registry_get(r, i);
        const llmlab_plugin_desc *d = en->desc;
        lua_newtable(L);
        lua_pushstring(L, llmlab_plugin_kind_name(d->kind));
        lua_setfield(L, -2, "kind");
        lua_pushstring(L, d->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, d->version ? d->version : "");
        lua_setfield(L, -2, "version");
        lua_pushstring(L, d->doc ? d->doc : "");
        lua_setfield(L, -2, "doc");
        lua_pushstring(L, en->origin);
        lua_setfield(L, -2, "origin");
        lua_newtable(L);
        for (int p = 0; p < d->n_params; p++) {
            push_param_spec(L, &d->params[p]);
            lua_rawseti(L, -2, p + 1);
        }
        lua_setfield(L, -2, "params");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_load_plugin(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    llmlab_err err = {0};
    llmlab_registry *r = llmlab_lua_ctx(L)->registry;
    int before = llmlab_registry_count(r);
    if (llmlab_registry_load(r, path, &err)) return llmlab_lua_fail(L, &err);
    const llmlab_plugin_desc *d = llmlab_registry_get(r, before)->desc;
    lua_pushstring(L, d->name);
    lua_pushstring(L, llmlab_plugin_kind_name(d->kind));
    return 2;
}

/* ---- module and runner -------------------------------------------------------------- */

static void push_arg_value(lua_State *L, const char *v) {
    char *end;
    long long i = strtoll(v, &end, 10);
    if (*v && !*end) {
        lua_pushinteger(L, i);
        return;
    }
    double d = strtod(v, &end);
    if (*v && !*end) lua_pushnumber(L, d);
    else if (!strcmp(v, "true") || !strcmp(v, "false")) lua_pushboolean(L, v[0] == 't');
    else lua_pushstring(L, v);
}

static void open_module(lua_State *L, const llmlab_lua_opts *o) {
    static const luaL_Reg model_meta[] = {{"__gc", model_gc}, {"__index", model_index}, {NULL, NULL}};
    luaL_newmetatable(L, "llmlab.model");
    luaL_setfuncs(L, model_meta, 0);
    lua_pop(L, 1);
    llmlab_lua_open_engine(L);
    llmlab_lua_open_results(L);
    llmlab_lua_open_sim(L); /* llmlab.simulate, .profile, .capacity (lua_sim.c) */
    static const luaL_Reg fns[] = {{"synth", l_synth},     {"derive", l_derive},     {"model", l_model},
                                   {"engine", llmlab_lua_engine_new}, {"workload", llmlab_lua_workload},
                                   {"results", llmlab_lua_results_new}, {"plugins", l_plugins},
                                   {"load_plugin", l_load_plugin}, {"fidelity", llmlab_lua_fidelity},
                                   {"chat", llmlab_lua_chat}, {"prompts", llmlab_lua_prompts},
                                   {"sweep", llmlab_lua_sweep}, {"simulate", llmlab_lua_simulate},
                                   {"profile", llmlab_lua_profile}, {"capacity", llmlab_lua_capacity},
                                   {"step_error", llmlab_lua_step_error},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_newtable(L);
    for (int i = 0; i < o->n_set; i++) {
        const char *eq = strchr(o->set[i], '=');
        lua_pushlstring(L, o->set[i], (size_t)(eq - o->set[i]));
        push_arg_value(L, eq + 1);
        lua_settable(L, -3);
    }
    lua_setfield(L, -2, "args");
    lua_pushstring(L, LLMLAB_VERSION_STRING);
    lua_setfield(L, -2, "version");
    lua_setglobal(L, "llmlab");
}

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

llmlab_lua_sweep_req *llmlab_lua_sweep_ctx(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, "llmlab.sweep");
    llmlab_lua_sweep_req *sw = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return sw;
}

static llmlab_status run_script(const llmlab_lua_opts *o, llmlab_lua_sweep_req *sw, llmlab_err *err) {
    for (int i = 0; i < o->n_set; i++)
        if (!strchr(o->set[i], '=') || o->set[i][0] == '=')
            return llmlab_err_set(err, LLMLAB_EINVAL, "--set '%s': expected key=value", o->set[i]);
    lua_State *L = luaL_newstate();
    if (!L) return llmlab_err_set(err, LLMLAB_ENOMEM, "cannot create a Lua state");
    luaL_openlibs(L);
    lua_pushlightuserdata(L, (void *)o);
    lua_setfield(L, LUA_REGISTRYINDEX, "llmlab.ctx");
    lua_pushlightuserdata(L, sw); /* NULL under `llmlab run` */
    lua_setfield(L, LUA_REGISTRYINDEX, "llmlab.sweep");
    open_module(L, o);
    lua_pushcfunction(L, traceback);
    llmlab_status st = LLMLAB_OK;
    if (luaL_loadfile(L, o->script_path) != LUA_OK) {
        st = llmlab_err_set(err, LLMLAB_EINVAL, "%s", lua_tostring(L, -1));
    } else if (lua_pcall(L, 0, 0, -2) != LUA_OK && !(sw && sw->planned)) {
        /* (a planning llmlab.sweep stops the script with an error on purpose) */
        st = llmlab_err_set(err, LLMLAB_EINVAL, "%s", lua_tostring(L, -1));
    }
    lua_close(L);
    return st;
}

llmlab_status llmlab_lua_run(const llmlab_lua_opts *o, llmlab_err *err) { return run_script(o, NULL, err); }

llmlab_status llmlab_lua_run_sweep(const llmlab_lua_opts *o, llmlab_lua_sweep_req *sw, llmlab_err *err) {
    return run_script(o, sw, err);
}
