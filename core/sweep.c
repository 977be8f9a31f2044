/* sweep.c - grid expansion, task numbering and task files (sweep.h, docs/sweeps.md). */
#include "sweep.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

/* ---- the spec ------------------------------------------------------------------------ */

static int valid_sweep_name(const char *s) {
    if (!s || !*s || !strcmp(s, ".") || !strcmp(s, "..") || strlen(s) > 128) return 0;
    for (; *s; s++)
        if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

static int valid_param_name(const char *s) {
    if (!s || !*s || strlen(s) > 64 || (*s >= '0' && *s <= '9')) return 0;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

llmlab_status llmlab_sweep_init(llmlab_sweep_spec *s, const char *name, int repeats, llmlab_err *err) {
    memset(s, 0, sizeof *s);
    if (!valid_sweep_name(name))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "sweep name '%s' must be 1..128 characters of A-Z a-z 0-9 . _ - (it names a directory)",
                              name ? name : "(null)");
    if (repeats < 1 || repeats > LLMLAB_SWEEP_MAX_TASKS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': repeats = %d must be in 1..%d", name, repeats,
                              LLMLAB_SWEEP_MAX_TASKS);
    s->name = strdup(name);
    s->repeats = repeats;
    return s->name ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
}

void llmlab_sweep_free(llmlab_sweep_spec *s) {
    if (!s) return;
    for (int p = 0; p < s->n_params; p++) {
        for (int v = 0; v < s->params[p].n_values; v++) free(s->params[p].values[v].s);
        free(s->params[p].values);
        free(s->params[p].name);
    }
    free(s->params);
    free(s->name);
    memset(s, 0, sizeof *s);
}

llmlab_status llmlab_sweep_add_param(llmlab_sweep_spec *s, const char *name, llmlab_err *err) {
    if (!valid_param_name(name) || !strcmp(name, "repeat") || !strcmp(name, "task"))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "sweep '%s': grid key '%s' must be an identifier ([A-Za-z_][A-Za-z0-9_]*, "
                              "at most 64) other than 'repeat' and 'task'",
                              s->name, name ? name : "(null)");
    if (s->n_params == LLMLAB_SWEEP_MAX_PARAMS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': more than %d grid keys", s->name, LLMLAB_SWEEP_MAX_PARAMS);
    llmlab_sweep_param *np = realloc(s->params, (size_t)(s->n_params + 1) * sizeof *np);
    if (!np) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    s->params = np;
    llmlab_sweep_param *p = &np[s->n_params];
    memset(p, 0, sizeof *p);
    if (!(p->name = strdup(name))) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    s->n_params++;
    return LLMLAB_OK;
}

llmlab_status llmlab_sweep_add_value(llmlab_sweep_spec *s, const llmlab_sweep_value *v, llmlab_err *err) {
    if (s->n_params == 0) return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': a value before any key", s->name);
    llmlab_sweep_param *p = &s->params[s->n_params - 1];
    llmlab_sweep_value *nv = realloc(p->values, (size_t)(p->n_values + 1) * sizeof *nv);
    if (!nv) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    p->values = nv;
    nv[p->n_values] = *v;
    nv[p->n_values].s = NULL;
    if (v->type == LLMLAB_SWEEP_STR && !(nv[p->n_values].s = strdup(v->s ? v->s : "")))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    p->n_values++;
    return LLMLAB_OK;
}

static int cmp_param(const void *a, const void *b) {
    return strcmp(((const llmlab_sweep_param *)a)->name, ((const llmlab_sweep_param *)b)->name);
}

llmlab_status llmlab_sweep_finish(llmlab_sweep_spec *s, llmlab_err *err) {
    /* Sorting by name makes the numbering independent of Lua's table order. */
    if (s->n_params > 1) qsort(s->params, (size_t)s->n_params, sizeof *s->params, cmp_param);
    int64_t g = 1;
    for (int p = 0; p < s->n_params; p++) {
        if (p > 0 && !strcmp(s->params[p].name, s->params[p - 1].name))
            return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': grid key '%s' given twice", s->name,
                                  s->params[p].name);
        if (s->params[p].n_values == 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': grid key '%s' has no values", s->name,
                                  s->params[p].name);
        g *= s->params[p].n_values;
        if (g > LLMLAB_SWEEP_MAX_TASKS) break;
    }
    if (g > LLMLAB_SWEEP_MAX_TASKS || g * s->repeats > LLMLAB_SWEEP_MAX_TASKS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': more than %d tasks", s->name, LLMLAB_SWEEP_MAX_TASKS);
    s->grid_points = g;
    s->n_tasks = g * s->repeats;
    return LLMLAB_OK;
}

llmlab_status llmlab_sweep_point(const llmlab_sweep_spec *s, int64_t task, int *idx, int *repeat,
                                 llmlab_err *err) {
    if (task < 0 || task >= s->n_tasks)
        return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': task %" PRId64 " is outside 0..%" PRId64, s->name,
                              task, s->n_tasks - 1);
    *repeat = (int)(task / s->grid_points);
    int64_t g = task % s->grid_points;
    for (int p = s->n_params - 1; p >= 0; p--) { /* mixed radix, last key fastest */
        idx[p] = (int)(g % s->params[p].n_values);
        g /= s->params[p].n_values;
    }
    return LLMLAB_OK;
}

void llmlab_sweep_value_str(const llmlab_sweep_value *v, char *buf, size_t cap) {
    switch (v->type) {
    case LLMLAB_SWEEP_INT: snprintf(buf, cap, "%" PRId64, v->i); break;
    case LLMLAB_SWEEP_NUM: snprintf(buf, cap, "%.17g", v->d); break;
    case LLMLAB_SWEEP_BOOL: snprintf(buf, cap, "%s", v->i ? "true" : "false"); break;
    default: snprintf(buf, cap, "%s", v->s ? v->s : ""); break;
    }
    if (v->type == LLMLAB_SWEEP_NUM) { /* shortest text that reads back the same */
        for (int prec = 1; prec <= 17; prec++) {
            char t[64];
            snprintf(t, sizeof t, "%.*g", prec, v->d);
            if (strtod(t, NULL) == v->d) {
                snprintf(buf, cap, "%s", t);
                break;
            }
        }
    }
}

void llmlab_sweep_point_str(const llmlab_sweep_spec *s, int64_t task, char *buf, size_t cap) {
    int idx[LLMLAB_SWEEP_MAX_PARAMS], rep = 0;
    buf[0] = '\0';
    if (s->n_params > LLMLAB_SWEEP_MAX_PARAMS || llmlab_sweep_point(s, task, idx, &rep, NULL)) return;
    size_t at = 0;
    for (int p = 0; p < s->n_params && at < cap; p++) {
        char v[256];
        llmlab_sweep_value_str(&s->params[p].values[idx[p]], v, sizeof v);
        at += (size_t)snprintf(buf + at, cap - at, "%s=%s ", s->params[p].name, v);
    }
    if (at < cap) snprintf(buf + at, cap - at, "repeat=%d", rep);
}

/* ---- the directory and task files ------------------------------------------------------ */

void llmlab_sweep_dir(const char *results_dir, const char *out, const char *name, char *buf, size_t cap) {
    if (out && *out) snprintf(buf, cap, "%s", out);
    else snprintf(buf, cap, "%s/sweeps/%s", results_dir && *results_dir ? results_dir : "results", name);
}

static llmlab_status mkdir_p(const char *dir, llmlab_err *err) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return llmlab_err_set(err, LLMLAB_EINVAL, "directory path too long: '%s'", dir);
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0') continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0777) < 0 && errno != EEXIST)
            return llmlab_err_set(err, LLMLAB_EIO, "cannot create directory '%s': %s", p, strerror(errno));
        *q = c;
        if (!c) break;
    }
    struct stat sb;
    if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return llmlab_err_set(err, LLMLAB_EIO, "'%s' is not a directory", dir);
    return LLMLAB_OK;
}

llmlab_status llmlab_sweep_mkdirs(const char *dir, llmlab_err *err) {
    char logs[4200];
    snprintf(logs, sizeof logs, "%s/logs", dir);
    llmlab_status st = mkdir_p(dir, err);
    return st ? st : mkdir_p(logs, err);
}

void llmlab_sweep_task_name(int64_t task, char *buf, size_t cap) { snprintf(buf, cap, "task-%05" PRId64, task); }

void llmlab_sweep_task_path(const char *dir, int64_t task, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/task-%05" PRId64 ".h5", dir, task);
}

llmlab_task_state llmlab_sweep_task_state(const char *dir, int64_t task, char **error) {
    char path[4200], name[64], *status = NULL;
    llmlab_err err = {0};
    if (error) *error = NULL;
    llmlab_sweep_task_path(dir, task, path, sizeof path);
    llmlab_sweep_task_name(task, name, sizeof name);
    if (access(path, F_OK) < 0) return LLMLAB_TASK_MISSING;
    if (llmlab_results_attr_str(path, name, "sweep/status", &status, &err)) {
        if (error) *error = strdup(err.msg);
        return LLMLAB_TASK_FAILED;
    }
    int ok = !strcmp(status, "ok");
    free(status);
    if (!ok && error) llmlab_results_attr_str(path, name, "sweep/error", error, &err);
    return ok ? LLMLAB_TASK_OK : LLMLAB_TASK_FAILED;
}

static llmlab_status point_attrs(llmlab_run *run, const llmlab_sweep_spec *s, int64_t task, llmlab_err *err) {
    int idx[LLMLAB_SWEEP_MAX_PARAMS], rep;
    if (s->n_params > LLMLAB_SWEEP_MAX_PARAMS) return llmlab_err_set(err, LLMLAB_EINVAL, "sweep '%s': more than 256 grid keys", s->name);
    llmlab_status st = llmlab_sweep_point(s, task, idx, &rep, err);
    char params[LLMLAB_SWEEP_MAX_PARAMS * 66] = "";
    for (int p = 0; p < s->n_params && !st; p++) {
        const llmlab_sweep_value *v = &s->params[p].values[idx[p]];
        char key[128];
        snprintf(key, sizeof key, "sweep/point/%s", s->params[p].name);
        snprintf(params + strlen(params), sizeof params - strlen(params), "%s%s", p ? "," : "", s->params[p].name);
        if (v->type == LLMLAB_SWEEP_NUM) st = llmlab_run_attr_double(run, key, v->d, err);
        else if (v->type == LLMLAB_SWEEP_STR) st = llmlab_run_attr_str(run, key, v->s, err);
        else st = llmlab_run_attr_int(run, key, v->i, err); /* booleans as 0/1, as everywhere in the schema */
    }
    if (!st) st = llmlab_run_attr_str(run, "sweep/params", params, err);
    if (!st) st = llmlab_run_attr_int(run, "sweep/repeat", rep, err);
    return st;
}

llmlab_status llmlab_sweep_write_task(const char *dir, const llmlab_sweep_spec *s, int64_t task,
                                      llmlab_run *run, const char *error, llmlab_err *err) {
    char name[64], path[4200], tmp[4300];
    llmlab_sweep_task_name(task, name, sizeof name);
    if (strcmp(llmlab_run_name(run), name) != 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "task %" PRId64 ": the run must be named '%s'", task, name);
    llmlab_status st = point_attrs(run, s, task, err);
    if (!st) st = llmlab_run_attr_str(run, "sweep/name", s->name, err);
    if (!st) st = llmlab_run_attr_int(run, "sweep/task", task, err);
    if (!st) st = llmlab_run_attr_int(run, "sweep/tasks", s->n_tasks, err);
    if (!st) st = llmlab_run_attr_str(run, "sweep/status", error ? "failed" : "ok", err);
    if (!st) st = llmlab_run_attr_str(run, "sweep/error", error ? error : "", err);
    char *grid = st ? NULL : llmlab_sweep_to_json(s);
    if (!st && !grid) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!st) st = llmlab_run_attr_str(run, "sweep/grid", grid, err);
    free(grid);
    if (st) return st;
    /* llmlab_results_write is atomic for its own file; writing a fresh file under a
     * private name and renaming it over the task file makes replacing an older
     * (failed) record atomic too. */
    llmlab_sweep_task_path(dir, task, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/.%s.new-%ld.h5", dir, name, (long)getpid());
    unlink(tmp);
    if ((st = llmlab_results_write(tmp, run, err))) return st;
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return llmlab_err_set(err, LLMLAB_EIO, "renaming '%s' to '%s': %s", tmp, path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* makes the rename durable; best effort, as in results.c */
        (void)fsync(dfd);
        close(dfd);
    }
    return LLMLAB_OK;
}

static const char *const vtype_names[] = {"int", "num", "str", "bool"};

static cJSON *value_json(const llmlab_sweep_value *v) {
    switch (v->type) {
    case LLMLAB_SWEEP_INT: return cJSON_CreateNumber((double)v->i);
    case LLMLAB_SWEEP_NUM: return cJSON_CreateNumber(v->d);
    case LLMLAB_SWEEP_BOOL: return cJSON_CreateBool((int)v->i);
    default: return cJSON_CreateString(v->s ? v->s : "");
    }
}

char *llmlab_sweep_to_json(const llmlab_sweep_spec *s) {
    cJSON *j = cJSON_CreateObject(), *params = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "name", s->name);
    cJSON_AddNumberToObject(j, "repeats", s->repeats);
    cJSON_AddNumberToObject(j, "tasks", (double)s->n_tasks);
    cJSON_AddNumberToObject(j, "grid_points", (double)s->grid_points);
    cJSON_AddStringToObject(j, "order", "keys sorted by name, last key fastest, repeat outermost");
    for (int p = 0; p < s->n_params; p++) {
        cJSON *o = cJSON_CreateObject(), *types = cJSON_CreateArray(), *vals = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "name", s->params[p].name);
        for (int v = 0; v < s->params[p].n_values; v++) {
            cJSON_AddItemToArray(types, cJSON_CreateString(vtype_names[s->params[p].values[v].type]));
            cJSON_AddItemToArray(vals, value_json(&s->params[p].values[v]));
        }
        cJSON_AddItemToObject(o, "types", types);
        cJSON_AddItemToObject(o, "values", vals);
        cJSON_AddItemToArray(params, o);
    }
    cJSON_AddItemToObject(j, "params", params);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

/* One value of a parsed "values" array with its "types" entry. */
static int json_value(const cJSON *val, const cJSON *type, llmlab_sweep_value *v) {
    memset(v, 0, sizeof *v);
    const char *t = cJSON_GetStringValue(type);
    if (!t) return -1;
    if (!strcmp(t, "int") && cJSON_IsNumber(val)) {
        v->i = (int64_t)val->valuedouble; /* exact: grid integers are written from int64 below 2^53 */
    } else if (!strcmp(t, "num") && cJSON_IsNumber(val)) {
        v->type = LLMLAB_SWEEP_NUM;
        v->d = val->valuedouble;
    } else if (!strcmp(t, "bool") && cJSON_IsBool(val)) {
        v->type = LLMLAB_SWEEP_BOOL;
        v->i = cJSON_IsTrue(val);
    } else if (!strcmp(t, "str") && cJSON_IsString(val)) {
        v->type = LLMLAB_SWEEP_STR;
        v->s = val->valuestring;
    } else {
        return -1;
    }
    return 0;
}

llmlab_status llmlab_sweep_from_json(const char *text, llmlab_sweep_spec *s, llmlab_err *err) {
    memset(s, 0, sizeof *s);
    cJSON *j = cJSON_Parse(text);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *rep = cJSON_GetObjectItemCaseSensitive(j, "repeats");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "params");
    llmlab_status st = LLMLAB_OK;
    if (!cJSON_IsString(name) || !cJSON_IsNumber(rep) || !cJSON_IsArray(params))
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "sweep description: not valid JSON with name, repeats, params");
    if (!st) st = llmlab_sweep_init(s, name->valuestring, (int)rep->valuedouble, err);
    const cJSON *p;
    cJSON_ArrayForEach(p, params) {
        if (st) break;
        const cJSON *pn = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *types = cJSON_GetObjectItemCaseSensitive(p, "types");
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(p, "values");
        if (!cJSON_IsString(pn) || !cJSON_IsArray(types) || !cJSON_IsArray(vals) ||
            cJSON_GetArraySize(types) != cJSON_GetArraySize(vals)) {
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "sweep description: a parameter lacks name, types or values");
            break;
        }
        st = llmlab_sweep_add_param(s, pn->valuestring, err);
        for (int k = 0; !st && k < cJSON_GetArraySize(vals); k++) {
            llmlab_sweep_value v;
            if (json_value(cJSON_GetArrayItem(vals, k), cJSON_GetArrayItem(types, k), &v))
                st = llmlab_err_set(err, LLMLAB_EFORMAT, "sweep description: parameter '%s' value %d is malformed",
                                    pn->valuestring, k + 1);
            else st = llmlab_sweep_add_value(s, &v, err);
        }
    }
    if (!st) st = llmlab_sweep_finish(s, err);
    cJSON_Delete(j);
    if (st) llmlab_sweep_free(s);
    return st;
}

llmlab_status llmlab_sweep_write_json(const char *dir, const llmlab_sweep_spec *s, llmlab_err *err) {
    char *text = llmlab_sweep_to_json(s);
    if (!text) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/sweep.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    free(text);
    if (!ok || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    return LLMLAB_OK;
}
