/* report.c - `llmlab report`: rows from a results file, groups, tables (report.h). */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "report_internal.h"
#include "results.h"
#include "sweep.h"

/* ---- the row table -------------------------------------------------------------------------- */

static void rtable_free(llmlab_rtable *t) {
    for (int c = 0; c < t->n_cols; c++) {
        free(t->cols[c].name);
        free(t->cols[c].num);
        llmlab_results_free_strs(t->cols[c].str, t->cols[c].str ? t->n_rows : 0);
    }
    free(t->cols);
    llmlab_results_free_strs(t->run, t->run ? t->n_rows : 0);
    llmlab_results_free_strs(t->params, (size_t)t->n_params);
    free(t->metrics);
    free(t->by);
}

static int find_col(const llmlab_rtable *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (!strcmp(t->cols[c].name, name)) return c;
    return -1;
}

/* A new column (values zeroed: NaN for numbers, "" for strings, filled by the caller). */
static llmlab_rcol *add_col(llmlab_rtable *t, const char *name, int is_str, llmlab_err *err) {
    llmlab_rcol *g = realloc(t->cols, (size_t)(t->n_cols + 1) * sizeof *g);
    if (!g) {
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        return NULL;
    }
    t->cols = g;
    llmlab_rcol *c = &g[t->n_cols];
    memset(c, 0, sizeof *c);
    c->name = strdup(name);
    c->is_str = is_str;
    size_t n = t->n_rows ? t->n_rows : 1;
    if (is_str) c->str = calloc(n, sizeof *c->str);
    else c->num = malloc(n * sizeof *c->num);
    if (!c->name || (is_str ? !c->str : !c->num)) {
        free(c->name);
        free(c->str);
        free(c->num);
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t r = 0; !is_str && r < t->n_rows; r++) c->num[r] = NAN;
    for (size_t r = 0; is_str && r < t->n_rows; r++) c->str[r] = strdup("");
    t->n_cols++;
    return c;
}

/* Splits "a,b,c" into a malloc'd list. */
static char **split_list(const char *s, int *n) {
    *n = 0;
    char **out = calloc(strlen(s) + 1, sizeof *out);
    if (!out) return NULL;
    for (const char *p = s; *p;) {
        size_t k = strcspn(p, ",");
        if (k) out[(*n)++] = strndup(p, k);
        p += k + (p[k] == ',');
    }
    return out;
}

/* Rows from the /sweep table of a merged file: tasks with status ok. */
static llmlab_status load_sweep(llmlab_rtable *t, const char *grid, llmlab_err *err) {
    char **names = NULL, **status = NULL;
    size_t nc = 0, n = 0;
    llmlab_status st = llmlab_results_columns(t->path, NULL, "sweep", &names, &nc, err);
    if (!st) st = llmlab_results_column_str(t->path, NULL, "sweep", "status", &status, &n, err);
    size_t *keep = st ? NULL : malloc((n ? n : 1) * sizeof *keep);
    if (!st && !keep) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    size_t nk = 0;
    for (size_t r = 0; !st && r < n; r++)
        if (!strcmp(status[r], "ok")) keep[nk++] = r;
    t->n_rows = nk;
    for (size_t c = 0; !st && c < nc; c++) {
        double *d = NULL;
        char **s = NULL;
        size_t m = 0;
        llmlab_err e2 = {0};
        int is_str = llmlab_results_column_double(t->path, NULL, "sweep", names[c], &d, &m, &e2) != LLMLAB_OK;
        if (is_str) st = llmlab_results_column_str(t->path, NULL, "sweep", names[c], &s, &m, err);
        llmlab_rcol *col = st ? NULL : add_col(t, names[c], is_str, err);
        if (!st && !col) st = err ? err->code : LLMLAB_ENOMEM;
        for (size_t k = 0; !st && k < nk; k++) {
            if (is_str) {
                free(col->str[k]);
                col->str[k] = strdup(s[keep[k]]);
            } else {
                col->num[k] = d[keep[k]];
            }
        }
        free(d);
        llmlab_results_free_strs(s, is_str ? m : 0);
    }
    int tc = find_col(t, "task");
    t->run = st ? NULL : calloc(nk ? nk : 1, sizeof *t->run);
    for (size_t k = 0; t->run && k < nk; k++) {
        char name[64];
        llmlab_sweep_task_name(tc >= 0 ? (int64_t)t->cols[tc].num[k] : (int64_t)keep[k], name, sizeof name);
        t->run[k] = strdup(name);
    }
    llmlab_sweep_spec spec;
    if (!st && !llmlab_sweep_from_json(grid, &spec, err)) {
        t->params = calloc((size_t)spec.n_params + 1, sizeof *t->params);
        for (int p = 0; t->params && p < spec.n_params; p++) t->params[t->n_params++] = strdup(spec.params[p].name);
        llmlab_sweep_free(&spec);
    }
    llmlab_results_free_strs(names, nc);
    llmlab_results_free_strs(status, n);
    free(keep);
    return st;
}

/* Rows from the runs of any results file: summary columns (first row) and `run`. */
static llmlab_status load_runs(llmlab_rtable *t, llmlab_err *err) {
    char **runs = NULL;
    size_t n = 0;
    llmlab_status st = llmlab_results_list_runs(t->path, &runs, &n, err);
    if (st) return st;
    t->n_rows = n;
    t->run = runs;
    llmlab_rcol *rc = add_col(t, "run", 1, err);
    if (!rc) return err ? err->code : LLMLAB_ENOMEM;
    for (size_t r = 0; r < n; r++) {
        free(rc->str[r]);
        rc->str[r] = strdup(runs[r]);
    }
    t->params = calloc(1, sizeof *t->params);
    if (t->params) t->params[t->n_params++] = strdup("run");
    for (size_t r = 0; r < n && !st; r++) {
        char **cols = NULL;
        size_t nc = 0;
        llmlab_err e2 = {0};
        if (llmlab_results_columns(t->path, runs[r], "summary", &cols, &nc, &e2)) continue;
        for (size_t c = 0; c < nc && !st; c++) {
            double *d = NULL;
            size_t m = 0;
            if (llmlab_results_column_double(t->path, runs[r], "summary", cols[c], &d, &m, &e2) || m == 0) {
                free(d);
                continue; /* string columns are not metrics */
            }
            int k = find_col(t, cols[c]);
            if (k < 0 && !add_col(t, cols[c], 0, err)) st = err ? err->code : LLMLAB_ENOMEM;
            if (!st) t->cols[k < 0 ? t->n_cols - 1 : k].num[r] = d[0];
            free(d);
        }
        llmlab_results_free_strs(cols, nc);
    }
    return st;
}

/* A --by key that is not a column: the run attribute of that name, per row. */
static llmlab_status attr_col(llmlab_rtable *t, const char *key, llmlab_err *err) {
    double *d = malloc((t->n_rows ? t->n_rows : 1) * sizeof *d);
    char **s = calloc(t->n_rows ? t->n_rows : 1, sizeof *s);
    int any_str = 0, found = 0;
    for (size_t r = 0; d && s && r < t->n_rows; r++) {
        llmlab_err e2 = {0};
        d[r] = NAN;
        if (!llmlab_results_attr_double(t->path, t->run[r], key, &d[r], &e2)) found = 1;
        else if (!llmlab_results_attr_str(t->path, t->run[r], key, &s[r], &e2)) found = any_str = 1;
    }
    llmlab_status st = !d || !s ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
    if (!st && !found) {
        char known[1024] = "";
        for (int c = 0; c < t->n_cols; c++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", c ? ", " : "", t->cols[c].name);
        st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: --by '%s' is neither a column (%s) nor a run attribute", t->path, key,
                            known);
    }
    llmlab_rcol *c = st ? NULL : add_col(t, key, any_str, err);
    if (!st && !c) st = err ? err->code : LLMLAB_ENOMEM;
    for (size_t r = 0; !st && r < t->n_rows; r++) {
        if (!any_str) {
            c->num[r] = d[r];
            continue;
        }
        char buf[64];
        snprintf(buf, sizeof buf, "%g", d[r]);
        free(c->str[r]);
        c->str[r] = s[r] ? strdup(s[r]) : isnan(d[r]) ? strdup("") : strdup(buf);
    }
    free(d);
    llmlab_results_free_strs(s, t->n_rows);
    return st;
}

/* ---- choosing keys and metrics --------------------------------------------------------------- */

static int is_fixed(const char *n) {
    return !strcmp(n, "task") || !strcmp(n, "repeat") || !strcmp(n, "status") || !strcmp(n, "error") ||
           !strcmp(n, "run");
}

static llmlab_status choose(llmlab_rtable *t, const llmlab_report_opts *o, llmlab_err *err) {
    int nb = 0, nm = 0;
    char **by = o->by ? split_list(o->by, &nb) : NULL;
    char **ms = o->metrics ? split_list(o->metrics, &nm) : NULL;
    llmlab_status st = LLMLAB_OK;
    if (!o->by) {
        by = calloc((size_t)t->n_params + 1, sizeof *by);
        for (int p = 0; by && p < t->n_params; p++) by[nb++] = strdup(t->params[p]);
    }
    t->by = calloc((size_t)nb + 1, sizeof *t->by);
    for (int b = 0; !st && b < nb; b++) {
        int c = find_col(t, by[b]);
        if (c < 0 && !(st = attr_col(t, by[b], err))) c = t->n_cols - 1;
        if (!st) t->by[t->n_by++] = c;
    }
    t->metrics = calloc((size_t)t->n_cols + (size_t)nm + 1, sizeof *t->metrics);
    for (int m = 0; !st && m < nm; m++) {
        int c = find_col(t, ms[m]);
        if (c < 0 || t->cols[c].is_str) {
            char known[2048] = "";
            for (int k = 0; k < t->n_cols; k++)
                if (!t->cols[k].is_str && !is_fixed(t->cols[k].name))
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "",
                             t->cols[k].name);
            st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: no numeric metric '%s' (metrics: %s)", t->path, ms[m], known);
        } else {
            t->metrics[t->n_metrics++] = c;
        }
    }
    for (int c = 0; !st && !o->metrics && c < t->n_cols; c++) {
        int used = is_fixed(t->cols[c].name) || t->cols[c].is_str;
        for (int b = 0; b < t->n_by; b++) used |= t->by[b] == c;
        for (int p = 0; p < t->n_params; p++) used |= !strcmp(t->params[p], t->cols[c].name);
        if (!used) t->metrics[t->n_metrics++] = c;
    }
    llmlab_results_free_strs(by, (size_t)nb);
    llmlab_results_free_strs(ms, (size_t)nm);
    return st;
}

/* ---- groups ------------------------------------------------------------------------------------ */

void llmlab_report_cell(const llmlab_rcol *c, size_t row, char *buf, size_t cap) {
    if (c->is_str) snprintf(buf, cap, "%s", c->str[row] ? c->str[row] : "");
    else if (isnan(c->num[row])) snprintf(buf, cap, "nan");
    else if (c->num[row] == floor(c->num[row]) && fabs(c->num[row]) < 1e15) snprintf(buf, cap, "%.0f", c->num[row]);
    else snprintf(buf, cap, "%.6g", c->num[row]);
}

/* Orders rows a and b by the --by keys: numbers numerically (NaN last), strings bytewise. */
static int cmp_rows(const llmlab_rtable *t, size_t a, size_t b) {
    for (int k = 0; k < t->n_by; k++) {
        const llmlab_rcol *c = &t->cols[t->by[k]];
        int r;
        if (c->is_str) {
            r = strcmp(c->str[a], c->str[b]);
        } else {
            double x = c->num[a], y = c->num[b];
            r = isnan(x) || isnan(y) ? isnan(x) - isnan(y) : (x > y) - (x < y);
        }
        if (r) return r;
    }
    return 0;
}

/* Sorts row indices by the keys (insertion sort: stable, and reports are small). */
static void sort_rows(const llmlab_rtable *t, size_t *idx, size_t n) {
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0 && cmp_rows(t, idx[j - 1], v) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

static llmlab_rgroup *make_groups(const llmlab_rtable *t, size_t *ng, size_t **order) {
    size_t *idx = malloc((t->n_rows ? t->n_rows : 1) * sizeof *idx);
    llmlab_rgroup *g = calloc(t->n_rows ? t->n_rows : 1, sizeof *g);
    *ng = 0;
    *order = idx;
    if (!idx || !g) {
        free(g);
        return NULL;
    }
    for (size_t r = 0; r < t->n_rows; r++) idx[r] = r;
    sort_rows(t, idx, t->n_rows);
    for (size_t r = 0; r < t->n_rows; r++) {
        if (r == 0 || cmp_rows(t, idx[r - 1], idx[r]) != 0) g[(*ng)++].rows = idx + r;
        g[*ng - 1].n++;
    }
    return g;
}

void llmlab_report_group_label(const llmlab_rtable *t, const llmlab_rgroup *g, int first_key, int n_keys, char *buf,
                               size_t cap) {
    size_t at = 0;
    buf[0] = '\0';
    for (int k = first_key; k < first_key + n_keys && k < t->n_by && at < cap; k++) {
        char v[256];
        llmlab_report_cell(&t->cols[t->by[k]], g->rows[0], v, sizeof v);
        at += (size_t)snprintf(buf + at, cap - at, "%s%s=%s", at ? " " : "", t->cols[t->by[k]].name, v);
    }
    if (!buf[0]) snprintf(buf, cap, "all");
}

double llmlab_report_mean(const llmlab_rcol *c, const llmlab_rgroup *g) {
    double s = 0;
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        if (!isnan(c->num[g->rows[i]])) {
            s += c->num[g->rows[i]];
            n++;
        }
    return n ? s / (double)n : NAN;
}

static void min_max(const llmlab_rcol *c, const llmlab_rgroup *g, double *lo, double *hi) {
    *lo = *hi = NAN;
    for (size_t i = 0; i < g->n; i++) {
        double v = c->num[g->rows[i]];
        if (isnan(v)) continue;
        if (isnan(*lo) || v < *lo) *lo = v;
        if (isnan(*hi) || v > *hi) *hi = v;
    }
}

/* ---- printing ---------------------------------------------------------------------------------- */

/* The report as a grid of strings: header row + one row per group. */
typedef struct {
    char ***cell;  /* [rows][cols] */
    int rows, cols;
} grid;

static void fmt_num(double v, char *buf, size_t cap) {
    if (isnan(v)) snprintf(buf, cap, "nan");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, "%.6g", v);
}

static grid build_grid(const llmlab_rtable *t, const llmlab_rgroup *g, size_t ng) {
    int spread = 0;
    for (size_t i = 0; i < ng; i++) spread |= g[i].n > 1;
    grid out = {NULL, (int)ng + 1, t->n_by + 1 + t->n_metrics * (spread ? 3 : 1)};
    out.cell = calloc((size_t)out.rows, sizeof *out.cell);
    for (int r = 0; out.cell && r < out.rows; r++) {
        char **row = out.cell[r] = calloc((size_t)out.cols, sizeof *row);
        if (!row) continue;
        int c = 0;
        char buf[512];
        for (int k = 0; k < t->n_by; k++) {
            if (r == 0) row[c++] = strdup(t->cols[t->by[k]].name);
            else {
                llmlab_report_cell(&t->cols[t->by[k]], g[r - 1].rows[0], buf, sizeof buf);
                row[c++] = strdup(buf);
            }
        }
        snprintf(buf, sizeof buf, "%zu", r ? g[r - 1].n : 0);
        row[c++] = strdup(r ? buf : "n");
        for (int m = 0; m < t->n_metrics; m++) {
            const llmlab_rcol *mc = &t->cols[t->metrics[m]];
            double lo = NAN, hi = NAN;
            if (r) min_max(mc, &g[r - 1], &lo, &hi);
            for (int part = 0; part < (spread ? 3 : 1); part++) {
                if (r == 0) {
                    snprintf(buf, sizeof buf, "%s%s", mc->name, part == 0 ? "" : part == 1 ? "_min" : "_max");
                } else {
                    fmt_num(part == 0 ? llmlab_report_mean(mc, &g[r - 1]) : part == 1 ? lo : hi, buf, sizeof buf);
                }
                row[c++] = strdup(buf);
            }
        }
    }
    return out;
}

static void grid_free(grid *g) {
    for (int r = 0; g->cell && r < g->rows; r++) llmlab_results_free_strs(g->cell[r], g->cell[r] ? (size_t)g->cols : 0);
    free(g->cell);
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void print_grid(const grid *g, llmlab_report_format fmt, FILE *f) {
    int *w = calloc((size_t)g->cols, sizeof *w);
    for (int r = 0; w && r < g->rows; r++)
        for (int c = 0; c < g->cols; c++) {
            int l = (int)strlen(g->cell[r][c] ? g->cell[r][c] : "");
            if (l > w[c]) w[c] = l;
        }
    for (int r = 0; w && r < g->rows; r++) {
        for (int c = 0; c < g->cols; c++) {
            const char *s = g->cell[r][c] ? g->cell[r][c] : "";
            if (fmt == LLMLAB_REPORT_CSV) {
                if (c) fputc(',', f);
                csv_field(f, s);
            } else if (fmt == LLMLAB_REPORT_MD) {
                fprintf(f, "| %-*s ", w[c], s);
            } else {
                fprintf(f, c ? "  %*s" : "%-*s", w[c], s);
            }
        }
        fputs(fmt == LLMLAB_REPORT_MD ? "|\n" : "\n", f);
        if (r == 0 && fmt == LLMLAB_REPORT_MD) {
            for (int c = 0; c < g->cols; c++) {
                fputs("| ", f);
                for (int k = 0; k < w[c]; k++) fputc('-', f);
                fputc(' ', f);
            }
            fputs("|\n", f);
        }
    }
    free(w);
}

/* ---- the command ------------------------------------------------------------------------------- */

llmlab_status llmlab_report(const llmlab_report_opts *o, FILE *out, llmlab_err *err) {
    llmlab_rtable t;
    memset(&t, 0, sizeof t);
    t.path = o->path;
    char *grid_json = NULL;
    llmlab_err e2 = {0};
    llmlab_status st;
    if (!llmlab_results_attr_str(o->path, NULL, "sweep_grid", &grid_json, &e2)) st = load_sweep(&t, grid_json, err);
    else if (e2.code == LLMLAB_EINVAL) st = load_runs(&t, err); /* no such attribute: not a merged sweep */
    else st = llmlab_err_set(err, e2.code, "%s", e2.msg);
    free(grid_json);
    if (!st) st = choose(&t, o, err);
    if (!st && t.n_rows == 0) st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: no complete runs / ok tasks to report", o->path);
    size_t ng = 0, *order = NULL;
    llmlab_rgroup *groups = st ? NULL : make_groups(&t, &ng, &order);
    if (!st && !groups) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!st) {
        grid g = build_grid(&t, groups, ng);
        print_grid(&g, o->format, out);
        grid_free(&g);
    }
    if (!st && o->plot_dir) st = llmlab_report_plots(&t, groups, ng, o->plot_dir, err);
    free(groups);
    free(order);
    rtable_free(&t);
    return st;
}
