/* lua_sweep.c - llmlab.sweep{name=, grid=, repeats=, run=}: a grid of settings run as
 * numbered tasks, one results file per task (sweep.h, docs/sweeps.md).
 *
 * Under `llmlab sweep` the command decides what the call does (llmlab_lua_sweep_req):
 * PLAN records the sweep and stops the script; TASK runs one task.  Under
 * `llmlab run` (no request) every task runs here, in order, skipping finished ones. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "lua_internal.h"
#include "results.h"
#include "run_record.h"
#include "sweep.h"

#define SPEC_META "llmlab.sweep_spec"

/* The spec lives in a userdata while it is built, so a Lua error frees it (__gc). */
static int spec_gc(lua_State *L) {
    llmlab_sweep_free(luaL_checkudata(L, 1, SPEC_META));
    return 0;
}

static llmlab_sweep_spec *new_spec(lua_State *L) {
    llmlab_sweep_spec *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    if (luaL_newmetatable(L, SPEC_META)) {
        lua_pushcfunction(L, spec_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return s;
}

/* The value at the top of the stack as a grid value (raises on other types). */
static void read_value(lua_State *L, const char *key, int i, llmlab_sweep_value *v) {
    memset(v, 0, sizeof *v);
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            v->type = LLMLAB_SWEEP_INT;
            v->i = lua_tointeger(L, -1);
        } else {
            v->type = LLMLAB_SWEEP_NUM;
            v->d = lua_tonumber(L, -1);
        }
        break;
    case LUA_TBOOLEAN:
        v->type = LLMLAB_SWEEP_BOOL;
        v->i = lua_toboolean(L, -1);
        break;
    case LUA_TSTRING:
        v->type = LLMLAB_SWEEP_STR;
        v->s = (char *)lua_tostring(L, -1); /* copied by llmlab_sweep_add_value */
        break;
    default:
        luaL_error(L, "llmlab.sweep: grid.%s[%d] must be a number, string or boolean (got %s)", key, i,
                   luaL_typename(L, -1));
    }
}

/* Reads name, repeats and grid of the options table at index 1 into s. */
static void read_spec(lua_State *L, llmlab_sweep_spec *s) {
    llmlab_err err = {0};
    const char *name = llmlab_lua_opt_str(L, 1, "name", NULL);
    if (!name) luaL_error(L, "llmlab.sweep: 'name' is required");
    if (llmlab_sweep_init(s, name, llmlab_lua_opt_int(L, 1, "repeats", 1), &err)) llmlab_lua_fail(L, &err);
    int ty = lua_getfield(L, 1, "grid");
    if (ty != LUA_TTABLE) luaL_error(L, "llmlab.sweep: 'grid' must be a table {key = {values...}, ...}");
    int g = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, g)) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "llmlab.sweep: grid keys must be strings");
        const char *key = lua_tostring(L, -2);
        if (llmlab_sweep_add_param(s, key, &err)) llmlab_lua_fail(L, &err);
        llmlab_sweep_value v;
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_Integer n = luaL_len(L, -1);
            if (n < 1) luaL_error(L, "llmlab.sweep: grid.%s is an empty list", key);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_geti(L, -1, i);
                read_value(L, key, (int)i, &v);
                if (llmlab_sweep_add_value(s, &v, &err)) llmlab_lua_fail(L, &err);
                lua_pop(L, 1);
            }
        } else { /* a single value: a one-point axis */
            read_value(L, key, 1, &v);
            if (llmlab_sweep_add_value(s, &v, &err)) llmlab_lua_fail(L, &err);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (llmlab_sweep_finish(s, &err)) llmlab_lua_fail(L, &err);
}

/* Pushes the point of task as {key = value, ..., repeat = r, task = i}. */
static void push_point(lua_State *L, const llmlab_sweep_spec *s, int64_t task) {
    int idx[LLMLAB_SWEEP_MAX_PARAMS], rep = 0;
    llmlab_err err = {0};
    if (s->n_params > LLMLAB_SWEEP_MAX_PARAMS) luaL_error(L, "llmlab.sweep: more than 256 grid keys");
    if (llmlab_sweep_point(s, task, idx, &rep, &err)) llmlab_lua_fail(L, &err);
    lua_createtable(L, 0, s->n_params + 2);
    for (int p = 0; p < s->n_params; p++) {
        const llmlab_sweep_value *v = &s->params[p].values[idx[p]];
        if (v->type == LLMLAB_SWEEP_INT) lua_pushinteger(L, v->i);
        else if (v->type == LLMLAB_SWEEP_NUM) lua_pushnumber(L, v->d);
        else if (v->type == LLMLAB_SWEEP_BOOL) lua_pushboolean(L, (int)v->i);
        else lua_pushstring(L, v->s);
        lua_setfield(L, -2, s->params[p].name);
    }
    llmlab_lua_setint(L, "repeat", rep);
    llmlab_lua_setint(L, "task", task);
}

/* The running script's text (malloc'd, "" when unreadable). */
static char *read_script(const char *path) {
    char *text = NULL;
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f && fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = calloc((size_t)len + 1, 1)) &&
            fread(text, 1, (size_t)len, f) != (size_t)len)
            text[0] = '\0';
    }
    if (f) fclose(f);
    return text ? text : calloc(1, 1);
}

/* An e:run or llmlab.fidelity result: the run as results:write records it. */
static llmlab_status record_engine_result(lua_State *L, llmlab_lua_result *res, llmlab_run *run, llmlab_err *err) {
    lua_getiuservalue(L, -1, 1);
    llmlab_lua_engine *eu = luaL_testudata(L, -1, "llmlab.engine");
    lua_pop(L, 1);
    if (!eu || !res->r) return llmlab_err_set(err, LLMLAB_EINVAL, "the result has no engine run");
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    char *script = read_script(ctx->script_path);
    llmlab_record_info info = {ctx->script_path, script, llmlab_model_backend_name(llmlab_engine_model(eu->e)),
                               llmlab_engine_model(eu->e)->device,
                               llmlab_engine_threads(eu->e), eu->seed, res->start, res->end};
    llmlab_status st = llmlab_record_run(run, eu->e, res->r, &info, err);
    if (!st && res->fid) st = llmlab_fidelity_record(run, res->fid, err);
    free(script);
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A plain table {metric = number | boolean | string, ...}: one summary row, columns
 * sorted by name. */
static llmlab_status record_plain(lua_State *L, int t, llmlab_run *run, const char *start, const char *end,
                                  llmlab_err *err) {
    const char *names[512];
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            return llmlab_err_set(err, LLMLAB_EINVAL, "the result table's keys must be strings (metric names)");
        }
        if (n == 512) {
            lua_pop(L, 1);
            return llmlab_err_set(err, LLMLAB_EINVAL, "the result table has more than 512 fields");
        }
        names[n++] = lua_tostring(L, -1); /* alive: the table holds its keys */
    }
    if (n == 0) return llmlab_err_set(err, LLMLAB_EINVAL, "the result table is empty");
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    llmlab_table *sum = llmlab_run_table(run, "summary", err);
    if (!sum) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < n && !st; i++) {
        int ty = lua_getfield(L, t, names[i]);
        if (ty == LUA_TNUMBER && lua_isinteger(L, -1)) st = llmlab_table_append_int(sum, names[i], lua_tointeger(L, -1), err);
        else if (ty == LUA_TNUMBER) st = llmlab_table_append_double(sum, names[i], lua_tonumber(L, -1), err);
        else if (ty == LUA_TBOOLEAN) st = llmlab_table_append_int(sum, names[i], lua_toboolean(L, -1), err);
        else if (ty == LUA_TSTRING) st = llmlab_table_append_str(sum, names[i], lua_tostring(L, -1), err);
        else
            st = llmlab_err_set(err, LLMLAB_EINVAL, "result field '%s' must be a number, boolean or string (got %s)",
                                names[i], lua_typename(L, ty));
        lua_pop(L, 1);
    }
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    char *script = read_script(ctx->script_path);
    if (!st) st = llmlab_run_attr_str(run, "script_path", ctx->script_path, err);
    if (!st) st = llmlab_run_attr_str(run, "script", script, err);
    if (!st) st = llmlab_run_attr_str(run, "start_time", start, err);
    if (!st) st = llmlab_run_attr_str(run, "end_time", end, err);
    free(script);
    return st;
}

/* Fills run from what the task's function returned (at index t). */
static llmlab_status record_result(lua_State *L, int t, llmlab_run *run, const char *start, const char *end,
                                   llmlab_err *err) {
    if (lua_type(L, t) != LUA_TTABLE)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "run function returned %s; expected the result of e:run, llmlab.fidelity or a "
                              "table of numbers",
                              luaL_typename(L, t));
    lua_getfield(L, t, "_run");
    llmlab_lua_result *res = luaL_testudata(L, -1, "llmlab.result");
    llmlab_status st = res ? record_engine_result(L, res, run, err) : record_plain(L, t, run, start, end, err);
    lua_pop(L, 1);
    return st;
}

/* Runs task with the function at index fn; writes its task file.  Returns the
 * task's state (OK or FAILED); raises only when the file cannot be written. */
static llmlab_task_state run_task(lua_State *L, int fn, const llmlab_sweep_spec *s, const char *dir, int64_t task) {
    char name[64], start[32], end[32];
    llmlab_err err = {0};
    llmlab_sweep_task_name(task, name, sizeof name);
    llmlab_results_utc_now(start);
    lua_pushvalue(L, fn);
    push_point(L, s, task);
    char *error = NULL;
    llmlab_run *run = NULL;
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        error = strdup(m ? m : "(error object is not a string)");
    } else {
        llmlab_results_utc_now(end);
        if (!(run = llmlab_run_create(name, &err)) || record_result(L, lua_gettop(L), run, start, end, &err))
            error = strdup(err.msg);
    }
    lua_pop(L, 1);
    if (error) { /* a fresh run: nothing half-recorded goes to the file */
        llmlab_run_free(run);
        llmlab_results_utc_now(end);
        run = llmlab_run_create(name, &err);
        if (run) {
            llmlab_run_attr_str(run, "start_time", start, NULL);
            llmlab_run_attr_str(run, "end_time", end, NULL);
        }
    }
    llmlab_status st = run ? llmlab_sweep_write_task(dir, s, task, run, error ? error : NULL, &err) : err.code;
    llmlab_run_free(run);
    if (error) fprintf(stderr, "llmlab sweep %s: task %lld failed: %s\n", s->name, (long long)task, error);
    free(error);
    if (st) llmlab_lua_fail(L, &err);
    return error ? LLMLAB_TASK_FAILED : LLMLAB_TASK_OK;
}

int llmlab_lua_sweep(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"name", "grid", "repeats", "run", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.sweep", keys);
    if (lua_getfield(L, 1, "run") != LUA_TFUNCTION) return luaL_error(L, "llmlab.sweep: 'run' must be a function(point)");
    int fn = lua_gettop(L);
    llmlab_sweep_spec *s = new_spec(L);
    read_spec(L, s);
    llmlab_lua_sweep_req *sw = llmlab_lua_sweep_ctx(L);
    if (sw && sw->mode == LLMLAB_LUA_SWEEP_PLAN) {
        if (sw->planned) return luaL_error(L, "llmlab.sweep: a script may declare one sweep");
        sw->spec = *s; /* ownership moves to the command */
        memset(s, 0, sizeof *s);
        sw->planned = 1;
        return luaL_error(L, "llmlab.sweep: planned (the script stops here)");
    }
    char dir[4096];
    llmlab_err err = {0};
    llmlab_sweep_dir(llmlab_lua_ctx(L)->settings->results_dir, sw ? sw->out : NULL, s->name, dir, sizeof dir);
    if (llmlab_sweep_mkdirs(dir, &err)) return llmlab_lua_fail(L, &err);
    int64_t first = 0, last = s->n_tasks - 1, n_ok = 0, n_failed = 0, n_skipped = 0;
    if (sw && sw->mode == LLMLAB_LUA_SWEEP_TASK) {
        if (sw->outcome >= 0) return luaL_error(L, "llmlab.sweep: a script may declare one sweep");
        if (sw->task < 0 || sw->task >= s->n_tasks)
            return luaL_error(L, "llmlab.sweep: --task %I is outside 0..%I (sweep '%s' has %I tasks)",
                              (lua_Integer)sw->task, (lua_Integer)s->n_tasks - 1, s->name, (lua_Integer)s->n_tasks);
        first = last = sw->task;
    }
    for (int64_t t = first; t <= last; t++) {
        llmlab_task_state ts = llmlab_sweep_task_state(dir, t, NULL);
        if (ts == LLMLAB_TASK_OK) {
            n_skipped++;
            if (sw) fprintf(stderr, "llmlab sweep %s: task %lld is already complete; skipped\n", s->name, (long long)t);
        } else {
            ts = run_task(L, fn, s, dir, t);
            n_ok += ts == LLMLAB_TASK_OK;
            n_failed += ts == LLMLAB_TASK_FAILED;
            if (!sw) {
                char point[1024];
                llmlab_sweep_point_str(s, t, point, sizeof point);
                printf("sweep %s: task %lld/%lld %s (%s)\n", s->name, (long long)t + 1, (long long)s->n_tasks,
                       ts == LLMLAB_TASK_OK ? "ok" : "FAILED", point);
            }
        }
        if (sw) sw->outcome = (int)ts;
    }
    lua_newtable(L);
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "dir");
    llmlab_lua_setint(L, "tasks", s->n_tasks);
    llmlab_lua_setint(L, "ok", n_ok);
    llmlab_lua_setint(L, "failed", n_failed);
    llmlab_lua_setint(L, "skipped", n_skipped);
    return 1;
}
