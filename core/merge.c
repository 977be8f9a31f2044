/* merge.c - sweep task files into one results file with a /sweep table (merge.h). */
#define LLMLAB_RESULTS_INTERNAL
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "results.h"
#include "sweep.h"

/* One task run found in an input file. */
typedef struct {
    char *file;   /* the input file holding it */
    char *run;    /* its run name there */
    int state;    /* llmlab_task_state: OK or FAILED */
    char *error;  /* sweep/error ("" when ok) */
} task_src;

/* A column of the merged summary metrics. */
typedef struct {
    char *name;          /* the summary column's name */
    llmlab_coltype type; /* INT when every task has ints, DOUBLE when numbers mix, STR */
} metric_col;

typedef struct {
    llmlab_sweep_spec spec; /* from the first task's sweep/grid */
    char *grid;             /* that JSON text (every task must carry the same) */
    char *grid_file;        /* the file it came from (for messages) */
    task_src *tasks;        /* [spec.n_tasks], file == NULL where missing */
    metric_col *metrics;    /* [n_metrics] */
    int n_metrics;
} merge_state;

static void state_free(merge_state *m) {
    for (int64_t t = 0; m->tasks && t < m->spec.n_tasks; t++) {
        free(m->tasks[t].file);
        free(m->tasks[t].run);
        free(m->tasks[t].error);
    }
    for (int c = 0; c < m->n_metrics; c++) free(m->metrics[c].name);
    free(m->metrics);
    free(m->tasks);
    free(m->grid);
    free(m->grid_file);
    llmlab_sweep_free(&m->spec);
}

/* ---- collecting the inputs ------------------------------------------------------------ */

static int is_task_file(const char *n) {
    size_t len = strlen(n);
    if (strncmp(n, "task-", 5) != 0 || len < 9 || strcmp(n + len - 3, ".h5") != 0) return 0;
    for (size_t k = 5; k < len - 3; k++)
        if (n[k] < '0' || n[k] > '9') return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends path, or a directory's task-*.h5 files in name order, to *files. */
static llmlab_status expand_input(const char *path, char ***files, int *n, llmlab_err *err) {
    struct stat sb;
    if (stat(path, &sb) < 0) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    char **found = NULL;
    int nf = 0;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)))
            if (is_task_file(e->d_name)) {
                char **g = realloc(found, (size_t)(nf + 1) * sizeof *g);
                size_t len = strlen(path) + strlen(e->d_name) + 2;
                if (!g || !(g[nf] = malloc(len))) {
                    free(g ? g : found);
                    closedir(d);
                    return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
                }
                snprintf(g[nf++], len, "%s/%s", path, e->d_name);
                found = g;
            }
        closedir(d);
        if (nf > 1) qsort(found, (size_t)nf, sizeof *found, cmp_str);
    } else {
        found = malloc(sizeof *found);
        if (!found || !(found[0] = strdup(path))) {
            free(found);
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        }
        nf = 1;
    }
    char **all = realloc(*files, (size_t)(*n + nf) * sizeof *all);
    if (!all) {
        llmlab_results_free_strs(found, (size_t)nf);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    memcpy(all + *n, found, (size_t)nf * sizeof *found);
    free(found);
    *files = all;
    *n += nf;
    return LLMLAB_OK;
}

/* ---- reading the task runs -------------------------------------------------------------- */

/* 1 when a and b have the same name and grid (repeats may differ: the repeat
 * index is outermost, so more repeats only add tasks at the end). */
static int same_grid(const llmlab_sweep_spec *a, const llmlab_sweep_spec *b) {
    if (strcmp(a->name, b->name) != 0 || a->n_params != b->n_params) return 0;
    for (int p = 0; p < a->n_params; p++) {
        const llmlab_sweep_param *x = &a->params[p], *y = &b->params[p];
        if (strcmp(x->name, y->name) != 0 || x->n_values != y->n_values) return 0;
        for (int v = 0; v < x->n_values; v++) {
            const llmlab_sweep_value *u = &x->values[v], *w = &y->values[v];
            if (u->type != w->type || u->i != w->i || (u->type == LLMLAB_SWEEP_NUM && u->d != w->d) ||
                (u->type == LLMLAB_SWEEP_STR && strcmp(u->s, w->s) != 0))
                return 0;
        }
    }
    return 1;
}

/* Adopts the grid of file (the first seen, or one with more repeats of the same
 * grid); refuses a different sweep. */
static llmlab_status check_grid(merge_state *m, const char *file, const char *grid, llmlab_err *err) {
    if (m->grid && strcmp(grid, m->grid) == 0) return LLMLAB_OK;
    llmlab_sweep_spec other;
    if (llmlab_sweep_from_json(grid, &other, err)) return llmlab_err_prefix(err, "%s", file);
    if (m->grid && !same_grid(&m->spec, &other)) {
        llmlab_status st = llmlab_err_set(err, LLMLAB_EINVAL,
                                          "%s (sweep '%s', %lld tasks) and %s (sweep '%s', %lld tasks) belong to "
                                          "different sweeps (their grids differ); merge each sweep on its own",
                                          m->grid_file, m->spec.name, (long long)m->spec.n_tasks, file, other.name,
                                          (long long)other.n_tasks);
        llmlab_sweep_free(&other);
        return st;
    }
    if (m->grid && other.n_tasks <= m->spec.n_tasks) {
        llmlab_sweep_free(&other);
        return LLMLAB_OK;
    }
    task_src *t = realloc(m->tasks, (size_t)other.n_tasks * sizeof *t);
    char *g = strdup(grid), *gf = strdup(file);
    if (!t || !g || !gf) {
        if (t) m->tasks = t;
        free(g);
        free(gf);
        llmlab_sweep_free(&other);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    int64_t had = m->grid ? m->spec.n_tasks : 0;
    memset(t + had, 0, (size_t)(other.n_tasks - had) * sizeof *t);
    m->tasks = t;
    free(m->grid);
    free(m->grid_file);
    m->grid = g;
    m->grid_file = gf;
    llmlab_sweep_free(&m->spec);
    m->spec = other;
    return LLMLAB_OK;
}

/* Adds the summary columns of a task run to the metric list. */
static llmlab_status note_metrics(merge_state *m, const char *file, const char *run, llmlab_err *err) {
    char **cols = NULL;
    size_t nc = 0;
    llmlab_err e2 = {0};
    if (llmlab_results_columns(file, run, "summary", &cols, &nc, &e2)) return LLMLAB_OK; /* no summary */
    llmlab_status st = LLMLAB_OK;
    for (size_t c = 0; c < nc && !st; c++) {
        int64_t *iv = NULL;
        double *dv = NULL;
        size_t n = 0;
        llmlab_coltype ty = !llmlab_results_column_int(file, run, "summary", cols[c], &iv, &n, &e2) ? LLMLAB_COL_INT
                            : !llmlab_results_column_double(file, run, "summary", cols[c], &dv, &n, &e2)
                                ? LLMLAB_COL_DOUBLE
                                : LLMLAB_COL_STR;
        free(iv);
        free(dv);
        int k = 0;
        while (k < m->n_metrics && strcmp(m->metrics[k].name, cols[c]) != 0) k++;
        if (k < m->n_metrics) {
            if (m->metrics[k].type != ty && m->metrics[k].type != LLMLAB_COL_STR && ty != LLMLAB_COL_STR)
                m->metrics[k].type = LLMLAB_COL_DOUBLE; /* ints and doubles mixed */
            continue;
        }
        metric_col *g = realloc(m->metrics, (size_t)(m->n_metrics + 1) * sizeof *g);
        if (!g || !(g[m->n_metrics].name = strdup(cols[c]))) {
            if (g) m->metrics = g;
            st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
            break;
        }
        g[m->n_metrics++].type = ty;
        m->metrics = g;
    }
    llmlab_results_free_strs(cols, nc);
    return st;
}

/* Reads one run of file: a sweep task, recorded in m (duplicates refused). */
static llmlab_status add_run(merge_state *m, const char *file, const char *run, llmlab_err *err) {
    char *grid = NULL, *status = NULL, *error = NULL;
    int64_t task = -1, schema = -1;
    llmlab_err e2 = {0};
    if (llmlab_results_attr_str(file, run, "sweep/grid", &grid, &e2) ||
        llmlab_results_attr_int(file, run, "sweep/task", &task, &e2))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: run '%s' is not a sweep task (no sweep/grid and sweep/task attributes)",
                              file, run);
    llmlab_status st = llmlab_results_attr_int(file, run, "schema_version", &schema, err);
    if (!st && schema != LLMLAB_RESULTS_SCHEMA_VERSION)
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: run '%s' has schema version %lld; this llmlab merges version %d",
                            file, run, (long long)schema, LLMLAB_RESULTS_SCHEMA_VERSION);
    if (!st) st = check_grid(m, file, grid, err);
    if (!st && (task < 0 || task >= m->spec.n_tasks))
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: run '%s' has task %lld outside 0..%lld", file, run, (long long)task,
                            (long long)m->spec.n_tasks - 1);
    if (!st && m->tasks[task].file)
        st = llmlab_err_set(err, LLMLAB_EINVAL, "task %lld is in both %s and %s; remove one of them (a task may appear once)",
                            (long long)task, m->tasks[task].file, file);
    if (!st) st = llmlab_results_attr_str(file, run, "sweep/status", &status, err);
    if (!st) st = llmlab_results_attr_str(file, run, "sweep/error", &error, err);
    if (!st) {
        task_src *t = &m->tasks[task];
        t->state = strcmp(status, "ok") == 0 ? LLMLAB_TASK_OK : LLMLAB_TASK_FAILED;
        t->file = strdup(file);
        t->run = strdup(run);
        t->error = error;
        error = NULL;
        if (!t->file || !t->run) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    if (!st && m->tasks[task].state == LLMLAB_TASK_OK) st = note_metrics(m, file, run, err);
    free(grid);
    free(status);
    free(error);
    return st;
}

static llmlab_status read_file(merge_state *m, const char *file, llmlab_err *err) {
    char **runs = NULL;
    size_t n = 0;
    llmlab_status st = llmlab_results_list_runs(file, &runs, &n, err);
    if (st) return llmlab_err_prefix(err, "refusing input");
    if (n == 0) st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: no runs (not a sweep task file)", file);
    for (size_t r = 0; r < n && !st; r++) st = add_run(m, file, runs[r], err);
    llmlab_results_free_strs(runs, n);
    return st;
}

/* ---- writing the merged file ------------------------------------------------------------- */

/* Column type of a grid parameter: int for ints/booleans, double when numbers mix,
 * string when any value is a string. */
static llmlab_coltype param_type(const llmlab_sweep_param *p) {
    llmlab_coltype t = LLMLAB_COL_INT;
    for (int v = 0; v < p->n_values; v++) {
        if (p->values[v].type == LLMLAB_SWEEP_STR) return LLMLAB_COL_STR;
        if (p->values[v].type == LLMLAB_SWEEP_NUM) t = LLMLAB_COL_DOUBLE;
    }
    return t;
}

static llmlab_status append_param(llmlab_table *t, const llmlab_sweep_param *p, const llmlab_sweep_value *v,
                                  llmlab_err *err) {
    llmlab_coltype ty = param_type(p);
    if (ty == LLMLAB_COL_STR) {
        char buf[512];
        llmlab_sweep_value_str(v, buf, sizeof buf);
        return llmlab_table_append_str(t, p->name, buf, err);
    }
    if (ty == LLMLAB_COL_DOUBLE)
        return llmlab_table_append_double(t, p->name, v->type == LLMLAB_SWEEP_NUM ? v->d : (double)v->i, err);
    return llmlab_table_append_int(t, p->name, v->i, err);
}

/* The name a metric gets in /sweep: its own, or summary_<name> when a fixed or
 * parameter column already has that name. */
static void metric_name(const merge_state *m, const char *name, char *buf, size_t cap) {
    int clash = !strcmp(name, "task") || !strcmp(name, "repeat") || !strcmp(name, "status") || !strcmp(name, "error");
    for (int p = 0; p < m->spec.n_params; p++) clash |= !strcmp(name, m->spec.params[p].name);
    snprintf(buf, cap, clash ? "summary_%s" : "%s", name);
}

/* One metric value of task t (missing: -1, NaN or ""). */
static llmlab_status append_metric(llmlab_table *tb, const merge_state *m, const task_src *t, const metric_col *c,
                                   llmlab_err *err) {
    char col[300];
    metric_name(m, c->name, col, sizeof col);
    llmlab_err e2 = {0};
    size_t n = 0;
    int have = t->file && t->state == LLMLAB_TASK_OK;
    if (c->type == LLMLAB_COL_STR) {
        char **v = NULL;
        have = have && !llmlab_results_column_str(t->file, t->run, "summary", c->name, &v, &n, &e2) && n > 0;
        llmlab_status st = llmlab_table_append_str(tb, col, have ? v[0] : "", err);
        llmlab_results_free_strs(v, n);
        return st;
    }
    if (c->type == LLMLAB_COL_INT) {
        int64_t *v = NULL;
        have = have && !llmlab_results_column_int(t->file, t->run, "summary", c->name, &v, &n, &e2) && n > 0;
        llmlab_status st = llmlab_table_append_int(tb, col, have ? v[0] : -1, err);
        free(v);
        return st;
    }
    double *v = NULL;
    have = have && !llmlab_results_column_double(t->file, t->run, "summary", c->name, &v, &n, &e2) && n > 0;
    llmlab_status st = llmlab_table_append_double(tb, col, have ? v[0] : (double)NAN, err);
    free(v);
    return st;
}

/* Builds the /sweep table in a scratch run. */
static llmlab_status build_table(const merge_state *m, llmlab_run *holder, llmlab_table **out, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(holder, "sweep", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    static const char *const state_names[] = {"missing", "ok", "failed"};
    llmlab_status st = LLMLAB_OK;
    int idx[LLMLAB_SWEEP_MAX_PARAMS], rep;
    for (int64_t k = 0; k < m->spec.n_tasks && !st; k++) {
        const task_src *ts = &m->tasks[k];
        st = llmlab_sweep_point(&m->spec, k, idx, &rep, err);
        if (!st) st = llmlab_table_append_int(t, "task", k, err);
        for (int p = 0; p < m->spec.n_params && !st; p++)
            st = append_param(t, &m->spec.params[p], &m->spec.params[p].values[idx[p]], err);
        if (!st) st = llmlab_table_append_int(t, "repeat", rep, err);
        if (!st) st = llmlab_table_append_str(t, "status", state_names[ts->file ? ts->state : 0], err);
        if (!st) st = llmlab_table_append_str(t, "error", ts->error ? ts->error : "", err);
        for (int c = 0; c < m->n_metrics && !st; c++) st = append_metric(t, m, ts, &m->metrics[c], err);
    }
    *out = t;
    return st;
}

/* ---- copying runs -------------------------------------------------------------------------- */

/* H5Ocopy of a group with dense attribute storage holding variable-length strings
 * crashes HDF5 1.10 (h5copy too), so runs are copied without attributes and the
 * attributes of every object are then copied here, value by value. */
static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_obj) {
    (void)info;
    hid_t dst = *(hid_t *)dst_obj, a = H5Aopen(src, name, H5P_DEFAULT);
    hid_t ftype = a < 0 ? -1 : H5Aget_type(a), space = a < 0 ? -1 : H5Aget_space(a);
    hid_t mtype = ftype < 0 ? -1 : H5Tget_native_type(ftype, H5T_DIR_ASCEND);
    hssize_t np = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    size_t sz = mtype < 0 ? 0 : H5Tget_size(mtype);
    void *buf = np >= 0 && sz ? calloc((size_t)(np ? np : 1), sz) : NULL;
    herr_t rc = -1;
    hid_t acpl = H5Pcreate(H5P_ATTRIBUTE_CREATE), b = -1;
    if (acpl >= 0) H5Pset_char_encoding(acpl, H5T_CSET_UTF8);
    if (buf && H5Aread(a, mtype, buf) >= 0) {
        b = H5Acreate2(dst, name, ftype, space, acpl >= 0 ? acpl : H5P_DEFAULT, H5P_DEFAULT);
        rc = b >= 0 && H5Awrite(b, mtype, buf) >= 0 ? 0 : -1;
        if (H5Tdetect_class(mtype, H5T_VLEN) > 0 || H5Tis_variable_str(mtype) > 0)
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, buf);
    }
    free(buf);
    if (b >= 0) H5Aclose(b);
    if (acpl >= 0) H5Pclose(acpl);
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    if (ftype >= 0) H5Tclose(ftype);
    if (a >= 0) H5Aclose(a);
    return rc;
}

/* H5Ovisit callback: copies the attributes of object `name` (below the source
 * run) to the object of the same path below the copied run. */
static herr_t copy_obj_attrs(hid_t src_run, const char *name, const H5O_info_t *info, void *dst_run) {
    (void)info;
    hid_t so = H5Oopen(src_run, name, H5P_DEFAULT), dob = H5Oopen(*(hid_t *)dst_run, name, H5P_DEFAULT);
    hsize_t idx = 0;
    herr_t rc = so >= 0 && dob >= 0 ? H5Aiterate2(so, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &dob) : -1;
    if (so >= 0) H5Oclose(so);
    if (dob >= 0) H5Oclose(dob);
    return rc < 0 ? -1 : 0;
}

/* Copies group src/path of file f to runs/name. */
static herr_t copy_run(hid_t f, const char *path, hid_t runs, const char *name) {
    hid_t ocp = H5Pcreate(H5P_OBJECT_COPY);
    herr_t rc = ocp < 0 || H5Pset_copy_object(ocp, H5O_COPY_WITHOUT_ATTR_FLAG) < 0 ? -1 : 0;
    if (!rc) rc = H5Ocopy(f, path, runs, name, ocp, H5P_DEFAULT);
    if (ocp >= 0) H5Pclose(ocp);
    hid_t sg = rc < 0 ? -1 : H5Gopen2(f, path, H5P_DEFAULT), dg = rc < 0 ? -1 : H5Gopen2(runs, name, H5P_DEFAULT);
    if (sg < 0 || dg < 0) rc = -1;
    if (!rc) rc = H5Ovisit(sg, H5_INDEX_NAME, H5_ITER_INC, copy_obj_attrs, &dg);
    if (sg >= 0) H5Gclose(sg);
    if (dg >= 0) H5Gclose(dg);
    return rc;
}

/* Copies every task run into the new file's /runs, in task order. */
static llmlab_status copy_runs(const merge_state *m, hid_t dst, llmlab_err *err) {
    hid_t runs = H5Gopen2(dst, "runs", H5P_DEFAULT);
    if (runs < 0) return llmlab_err_set(err, LLMLAB_EIO, "opening /runs of the new file");
    llmlab_status st = LLMLAB_OK;
    for (int64_t k = 0; k < m->spec.n_tasks && !st; k++) {
        const task_src *t = &m->tasks[k];
        if (!t->file) continue;
        char src[600], name[64];
        snprintf(src, sizeof src, "/runs/%s", t->run);
        llmlab_sweep_task_name(k, name, sizeof name);
        hid_t f = llmlab_res_open_checked(t->file, H5F_ACC_RDONLY, err);
        if (f < 0) {
            st = llmlab_err_prefix(err, "%s", t->file);
            break;
        }
        if (copy_run(f, src, runs, name) < 0) {
            char why[256];
            llmlab_res_h5_reason(why, sizeof why);
            st = llmlab_err_set(err, LLMLAB_EIO, "copying run '%s' of %s: %s", t->run, t->file, why);
        }
        H5Fclose(f);
    }
    H5Gclose(runs);
    return st;
}

/* Writes everything into the new file tmp. */
static llmlab_status write_merged(const merge_state *m, const char *tmp, llmlab_err *err) {
    hid_t f = llmlab_res_create_file(tmp, err);
    if (f < 0) return err ? err->code : LLMLAB_EIO;
    llmlab_status st = llmlab_res_put_attr(f, "sweep_name", LLMLAB_COL_STR, 0, 0, m->spec.name, err);
    if (!st) st = llmlab_res_put_attr(f, "sweep_grid", LLMLAB_COL_STR, 0, 0, m->grid, err);
    if (!st) st = copy_runs(m, f, err);
    llmlab_run *holder = st ? NULL : llmlab_run_create("sweep", err);
    llmlab_table *t = NULL;
    if (!st && !holder) st = err ? err->code : LLMLAB_ENOMEM;
    if (!st) st = build_table(m, holder, &t, err);
    if (!st) st = llmlab_res_write_table(f, t, err);
    llmlab_run_free(holder);
    if (H5Fclose(f) < 0 && !st) st = llmlab_err_set(err, LLMLAB_EIO, "closing '%s'", tmp);
    return st;
}

/* fsync(tmp), rename over out, fsync the directory. */
static llmlab_status commit(const char *tmp, const char *out, llmlab_err *err) {
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return llmlab_err_set(err, LLMLAB_EIO, "fsync of '%s': %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, out) < 0) return llmlab_err_set(err, LLMLAB_EIO, "renaming '%s' to '%s': %s", tmp, out, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* best effort, as in results.c */
        (void)fsync(dfd);
        close(dfd);
    }
    return LLMLAB_OK;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

llmlab_status llmlab_merge(const char *out, const char *const *inputs, int n_inputs, llmlab_merge_stats *stats,
                           llmlab_err *err) {
    merge_state m;
    memset(&m, 0, sizeof m);
    char **files = NULL;
    int nf = 0;
    llmlab_status st = LLMLAB_OK;
    if (!out || !*out) return llmlab_err_set(err, LLMLAB_EINVAL, "merge: the output path is empty");
    for (int i = 0; i < n_inputs && !st; i++) st = expand_input(inputs[i], &files, &nf, err);
    int used = 0;
    for (int i = 0; i < nf && !st; i++) {
        if (same_file(files[i], out)) continue; /* re-merging into the same file */
        st = read_file(&m, files[i], err);
        used++;
    }
    if (!st && used == 0) st = llmlab_err_set(err, LLMLAB_EINVAL, "merge: no task files found in the inputs");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    if (!st) {
        llmlab_res_quiet q;
        llmlab_res_quiet_begin(&q);
        unlink(tmp);
        st = write_merged(&m, tmp, err);
        if (!st) st = commit(tmp, out, err);
        if (st) unlink(tmp);
        llmlab_res_quiet_end(&q);
    }
    if (!st && stats) {
        memset(stats, 0, sizeof *stats);
        stats->tasks = m.spec.n_tasks;
        for (int64_t k = 0; k < m.spec.n_tasks; k++) {
            stats->ok += m.tasks[k].file && m.tasks[k].state == LLMLAB_TASK_OK;
            stats->failed += m.tasks[k].file && m.tasks[k].state == LLMLAB_TASK_FAILED;
            stats->missing += !m.tasks[k].file;
        }
    }
    llmlab_results_free_strs(files, (size_t)nf);
    state_free(&m);
    return st;
}
