/* report_plot.c - `llmlab report --plot DIR`: gnuplot scripts + data, run to PNG and SVG.
 *
 * Plots (each as NAME.png and NAME.svg, with NAME.dat and NAME.gp kept beside them so
 * a figure can be restyled by editing the script):
 *   <metric>_vs_<x>   the group mean of each metric against the first --by key, one
 *                     line per value of the second key (further keys averaged over);
 *   latency_cdf       the empirical CDF of request latency (finish_s - arrival_s of
 *                     the runs' requests tables), one line per group;
 *   kv_memory         resident KV bytes over time (steps table: start_s, kv_bytes) of
 *                     the first run of each group.
 * gnuplot (Debian: gnuplot-nox) draws them with its pngcairo and svg terminals. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "report_internal.h"
#include "results.h"

/* Runs `gnuplot script` (or `gnuplot --version` for NULL) with its output into
 * log (or nowhere); returns its exit status, 127 when it cannot start. */
static int run_gnuplot(const char *script, const char *log) {
    fflush(NULL); /* the child must not write our buffered output again */
    pid_t pid = fork();
    if (pid < 0) return 127;
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY), errfd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : out;
        if (out >= 0) dup2(out, 1);
        if (errfd >= 0) dup2(errfd, 2);
        if (script) execlp("gnuplot", "gnuplot", script, (char *)NULL);
        else execlp("gnuplot", "gnuplot", "--version", (char *)NULL);
        _exit(127);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return 127;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 127;
}

/* A name safe in file names: [A-Za-z0-9_.-], others become '_'. */
static void safe_name(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        buf[n++] = (*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= 'A' && *s <= 'Z'))
                       ? *s
                       : '_';
    buf[n] = '\0';
}

/* s as a gnuplot single-quoted string ('' escapes a quote). */
static void gq(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* The plot script's head: both terminals render the same commands (below). */
static FILE *open_script(const char *dir, const char *name, char *gp, size_t cap) {
    snprintf(gp, cap, "%s/%s.gp", dir, name);
    FILE *f = fopen(gp, "w");
    if (f) fprintf(f, "# %s: written by llmlab report; `gnuplot %s.gp` redraws %s.png and %s.svg\n", name, name, name, name);
    return f;
}

/* Writes the two outputs' terminal lines around the plot body (body is text of plot commands). */
static llmlab_status finish_script(FILE *f, const char *dir, const char *name, const char *gp, const char *body,
                                   llmlab_err *err) {
    static const char *const term[2][2] = {{"pngcairo size 900,560 noenhanced font ',10'", "png"},
                                           {"svg size 900,560 noenhanced dynamic", "svg"}};
    for (int t = 0; t < 2; t++) {
        char out[4200];
        snprintf(out, sizeof out, "%s/%s.%s", dir, name, term[t][1]);
        fprintf(f, "set terminal %s\nset output ", term[t][0]);
        gq(f, out);
        fprintf(f, "\n%s\nunset output\n", body);
    }
    if (fclose(f) != 0) return llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s'", gp);
    char log[4200];
    snprintf(log, sizeof log, "%s/gnuplot.log", dir);
    int rc = run_gnuplot(gp, log);
    if (rc) return llmlab_err_set(err, LLMLAB_EIO, "gnuplot %s failed (exit status %d; see %s)", gp, rc, log);
    return LLMLAB_OK;
}

/* "plot 'dat' index 0 using ... title '...', '' index 1 ..." into buf. */
static void plot_cmd(char *buf, size_t cap, const char *dat, const char *using_, const char *style, char **titles,
                     int n) {
    size_t at = (size_t)snprintf(buf, cap, "plot ");
    for (int i = 0; i < n && at < cap; i++) {
        char t[600];
        size_t k = 0;
        for (const char *s = titles[i]; *s && k + 2 < sizeof t; s++) { /* '' inside gnuplot quotes */
            if (*s == '\'') t[k++] = '\'';
            t[k++] = *s;
        }
        t[k] = '\0';
        at += (size_t)snprintf(buf + at, cap - at, "%s'%s' index %d using %s with %s title '%s'", i ? ", \\\n     " : "",
                               i ? "" : dat, i, using_, style, t);
    }
}

/* ---- metric against the first key ------------------------------------------------------------- */

/* 1 when column c has a number in every row of the groups (a numeric x axis). */
static int numeric_key(const llmlab_rtable *t, int k) { return !t->cols[t->by[k]].is_str; }

static llmlab_status metric_plot(const llmlab_rtable *t, const llmlab_rgroup *g, size_t ng, int m, const char *dir,
                                 llmlab_err *err) {
    const llmlab_rcol *mc = &t->cols[t->metrics[m]], *xc = &t->cols[t->by[0]];
    char name[600], sm[256], sx[256], gp[4200], dat[4200];
    safe_name(mc->name, sm, sizeof sm);
    safe_name(xc->name, sx, sizeof sx);
    snprintf(name, sizeof name, "%s_vs_%s", sm, sx);
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, name);
    FILE *d = fopen(dat, "w");
    if (!d) return llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s': %s", dat, strerror(errno));
    /* Series: the distinct labels of the second key, in group order (groups are sorted
     * by all keys, so each series' points come out with x ascending per block). */
    char **series = calloc(ng + 1, sizeof *series);
    int ns = 0;
    for (size_t i = 0; series && i < ng; i++) {
        char lab[512];
        llmlab_report_group_label(t, &g[i], 1, 1, lab, sizeof lab);
        int s = 0;
        while (s < ns && strcmp(series[s], lab)) s++;
        if (s == ns) series[ns++] = strdup(lab);
    }
    int xnum = numeric_key(t, 0);
    for (int s = 0; s < ns; s++) {
        fprintf(d, "# %s\n", series[s]);
        double last_x = NAN, sum = 0;
        int cnt = 0;
        char last_lab[256] = "";
        /* Averages consecutive groups with the same x (keys after the second). */
        for (size_t i = 0; i <= ng; i++) {
            char lab[512] = "", xl[256] = "";
            if (i < ng) {
                llmlab_report_group_label(t, &g[i], 1, 1, lab, sizeof lab);
                if (strcmp(lab, series[s])) continue;
                llmlab_report_cell(xc, g[i].rows[0], xl, sizeof xl);
            }
            double x = i < ng ? (xnum ? xc->num[g[i].rows[0]] : 0) : NAN;
            if (cnt && (i == ng || strcmp(xl, last_lab))) {
                if (xnum) fprintf(d, "%.17g %.17g\n", last_x, sum / cnt);
                else fprintf(d, "\"%s\" %.17g\n", last_lab, sum / cnt);
                sum = 0;
                cnt = 0;
            }
            if (i == ng) break;
            double v = llmlab_report_mean(mc, &g[i]);
            if (!isnan(v)) {
                sum += v;
                cnt++;
            }
            last_x = x;
            snprintf(last_lab, sizeof last_lab, "%s", xl);
        }
        fputs("\n\n", d);
    }
    fclose(d);
    FILE *f = open_script(dir, name, gp, sizeof gp);
    if (!f) {
        llmlab_results_free_strs(series, (size_t)ns);
        return llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s': %s", gp, strerror(errno));
    }
    fprintf(f, "set title ");
    gq(f, name);
    fprintf(f, "\nset xlabel ");
    gq(f, xc->name);
    fprintf(f, "\nset ylabel ");
    gq(f, mc->name);
    fprintf(f, "\nset grid\nset key outside right top\n%s\n", xnum ? "" : "set style data linespoints");
    char body[1 << 14];
    plot_cmd(body, sizeof body, dat, xnum ? "1:2" : "0:2:xtic(1)", "linespoints pt 7", series, ns);
    llmlab_status st = finish_script(f, dir, name, gp, body, err);
    llmlab_results_free_strs(series, (size_t)ns);
    return st;
}

/* ---- per-run series: latency CDF and KV memory over time ---------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Writes one block per group to dat; returns the number of non-empty blocks (0: skip). */
static int latency_blocks(const llmlab_rtable *t, const llmlab_rgroup *g, size_t ng, FILE *d, char **titles) {
    int nb = 0;
    for (size_t i = 0; i < ng; i++) {
        double *lat = NULL;
        size_t n = 0;
        for (size_t r = 0; r < g[i].n; r++) {
            double *a = NULL, *f = NULL;
            size_t na = 0, nf = 0;
            llmlab_err e = {0};
            const char *run = t->run[g[i].rows[r]];
            if (!llmlab_results_column_double(t->path, run, "requests", "arrival_s", &a, &na, &e) &&
                !llmlab_results_column_double(t->path, run, "requests", "finish_s", &f, &nf, &e) && na == nf && na) {
                double *grown = realloc(lat, (n + na) * sizeof *lat);
                if (grown) {
                    lat = grown;
                    for (size_t k = 0; k < na; k++)
                        if (f[k] >= 0) lat[n++] = f[k] - a[k]; /* finish_s = -1: did not finish */
                }
            }
            free(a);
            free(f);
        }
        if (!n) {
            free(lat);
            continue;
        }
        qsort(lat, n, sizeof *lat, cmp_double);
        for (size_t k = 0; k < n; k++) fprintf(d, "%.17g %.17g\n", lat[k], (double)(k + 1) / (double)n);
        fputs("\n\n", d);
        char lab[512];
        llmlab_report_group_label(t, &g[i], 0, t->n_by, lab, sizeof lab);
        titles[nb++] = strdup(lab);
        free(lat);
    }
    return nb;
}

static int kv_blocks(const llmlab_rtable *t, const llmlab_rgroup *g, size_t ng, FILE *d, char **titles) {
    int nb = 0;
    for (size_t i = 0; i < ng; i++) {
        double *ts = NULL, *kv = NULL;
        size_t n1 = 0, n2 = 0;
        llmlab_err e = {0};
        const char *run = t->run[g[i].rows[0]];
        if (!llmlab_results_column_double(t->path, run, "steps", "start_s", &ts, &n1, &e) &&
            !llmlab_results_column_double(t->path, run, "steps", "kv_bytes", &kv, &n2, &e) && n1 == n2 && n1) {
            for (size_t k = 0; k < n1; k++) fprintf(d, "%.17g %.17g\n", ts[k], kv[k] / 1048576.0);
            fputs("\n\n", d);
            char lab[512];
            llmlab_report_group_label(t, &g[i], 0, t->n_by, lab, sizeof lab);
            titles[nb++] = strdup(lab);
        }
        free(ts);
        free(kv);
    }
    return nb;
}

static llmlab_status series_plot(const llmlab_rtable *t, const llmlab_rgroup *g, size_t ng, const char *dir, int kv,
                                 llmlab_err *err) {
    const char *name = kv ? "kv_memory" : "latency_cdf";
    char gp[4200], dat[4200];
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, name);
    FILE *d = fopen(dat, "w");
    if (!d) return llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s': %s", dat, strerror(errno));
    char **titles = calloc(ng + 1, sizeof *titles);
    int nb = titles ? (kv ? kv_blocks(t, g, ng, d, titles) : latency_blocks(t, g, ng, d, titles)) : 0;
    fclose(d);
    if (nb == 0) { /* the runs have no such tables (e.g. plain metric results) */
        unlink(dat);
        free(titles);
        return LLMLAB_OK;
    }
    llmlab_status st = LLMLAB_OK;
    FILE *f = open_script(dir, name, gp, sizeof gp);
    if (!f) st = llmlab_err_set(err, LLMLAB_EIO, "cannot write '%s': %s", gp, strerror(errno));
    if (!st) {
        fprintf(f, "set title '%s'\nset grid\nset key outside right top\n",
                kv ? "resident KV cache over time (first run of each group)" : "request latency CDF");
        fprintf(f, kv ? "set xlabel 'time since start of run (s)'\nset ylabel 'KV MiB'\n"
                      : "set xlabel 'latency: finish - arrival (s)'\nset ylabel 'fraction of requests'\nset yrange [0:1]\n");
        char body[1 << 15];
        plot_cmd(body, sizeof body, dat, "1:2", "steps", titles, nb);
        st = finish_script(f, dir, name, gp, body, err);
    }
    llmlab_results_free_strs(titles, (size_t)nb);
    return st;
}

llmlab_status llmlab_report_plots(const llmlab_rtable *t, const llmlab_rgroup *groups, size_t n_groups, const char *dir,
                                  llmlab_err *err) {
    if (run_gnuplot(NULL, NULL) != 0)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "--plot needs gnuplot, which could not be run (install it: Debian package gnuplot-nox)");
    if (mkdir(dir, 0777) < 0 && errno != EEXIST)
        return llmlab_err_set(err, LLMLAB_EIO, "cannot create '%s': %s", dir, strerror(errno));
    llmlab_status st = LLMLAB_OK;
    for (int m = 0; m < t->n_metrics && t->n_by > 0 && !st; m++) st = metric_plot(t, groups, n_groups, m, dir, err);
    if (!st) st = series_plot(t, groups, n_groups, dir, 0, err);
    if (!st) st = series_plot(t, groups, n_groups, dir, 1, err);
    return st;
}
