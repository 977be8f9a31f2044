/* test_sweep.c - sweeps: grid expansion and task numbering, local runs with -j,
 * resume after a kill, --retry-failed, merge (and its refusals), report tables on a
 * hand-made file, plots, and the generated sbatch scripts (docs/sweeps.md). */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/results.h"
#include "core/sweep.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/proc.h"
#include "util/tmpdir.h"

static char *dir;
static char out[1 << 16], err[1 << 16];

static void setup(void) { dir = tmpdir_make(); }
static void teardown(void) { tmpdir_remove(dir); }
TestSuite(sweep, .init = setup, .fini = teardown, .timeout = 300);

/* Runs `cd dir && llmlab ARGS` and returns its exit status. */
static int llmlab(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int llmlab(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s", dir, LLMLAB_BIN, args);
    return proc_run(cmd, out, sizeof out, err, sizeof err);
}

static void write_in_dir(const char *name, const char *text) {
    char *p = fsu_join(dir, name);
    proc_write_file(p, text);
    free(p);
}

static char *path_in(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_in(const char *fmt, ...) {
    char rel[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    return fsu_join(dir, rel);
}

/* Lines of file that equal line. */
static int count_lines(const char *file, const char *line) {
    char *p = path_in("%s", file), *text = fsu_read(p, NULL);
    free(p);
    int n = 0;
    for (char *s = text ? strtok(text, "\n") : NULL; s; s = strtok(NULL, "\n")) n += !strcmp(s, line);
    free(text);
    return n;
}

/* ---- grid expansion ------------------------------------------------------------------------ */

static void add_ints(llmlab_sweep_spec *s, const char *name, int n, int base) {
    llmlab_err e = {0};
    cr_assert_eq(llmlab_sweep_add_param(s, name, &e), LLMLAB_OK, "%s", e.msg);
    for (int v = 0; v < n; v++) {
        llmlab_sweep_value x = {LLMLAB_SWEEP_INT, base + v, 0, NULL};
        cr_assert_eq(llmlab_sweep_add_value(s, &x, &e), LLMLAB_OK);
    }
}

Test(sweep, indexing_is_keys_sorted_last_fastest_repeat_outermost) {
    srand((unsigned)fixture_seed("sweep.indexing"));
    for (int trial = 0; trial < 20; trial++) {
        int na = 1 + rand() % 4, nb = 1 + rand() % 3, nc = 1 + rand() % 5, reps = 1 + rand() % 3;
        llmlab_sweep_spec s1, s2;
        llmlab_err e = {0};
        /* the same grid declared in two key orders */
        cr_assert_eq(llmlab_sweep_init(&s1, "g", reps, &e), LLMLAB_OK);
        add_ints(&s1, "zeta", nc, 100);
        add_ints(&s1, "alpha", na, 0);
        add_ints(&s1, "mid", nb, 10);
        cr_assert_eq(llmlab_sweep_finish(&s1, &e), LLMLAB_OK, "%s", e.msg);
        cr_assert_eq(llmlab_sweep_init(&s2, "g", reps, &e), LLMLAB_OK);
        add_ints(&s2, "mid", nb, 10);
        add_ints(&s2, "alpha", na, 0);
        add_ints(&s2, "zeta", nc, 100);
        cr_assert_eq(llmlab_sweep_finish(&s2, &e), LLMLAB_OK);
        cr_assert_eq(s1.n_tasks, (int64_t)na * nb * nc * reps);
        int64_t task = 0;
        for (int r = 0; r < reps; r++)
            for (int a = 0; a < na; a++)
                for (int b = 0; b < nb; b++)
                    for (int c = 0; c < nc; c++, task++) {
                        int i1[3], i2[3], r1, r2;
                        cr_assert_eq(llmlab_sweep_point(&s1, task, i1, &r1, &e), LLMLAB_OK);
                        cr_assert_eq(llmlab_sweep_point(&s2, task, i2, &r2, &e), LLMLAB_OK);
                        cr_assert(i1[0] == a && i1[1] == b && i1[2] == c && r1 == r, "task %" PRId64, task);
                        cr_assert(!memcmp(i1, i2, sizeof i1) && r1 == r2);
                    }
        int i[3], r;
        cr_assert_eq(llmlab_sweep_point(&s1, s1.n_tasks, i, &r, &e), LLMLAB_EINVAL);
        /* the JSON form reads back to the same numbering */
        char *j = llmlab_sweep_to_json(&s1);
        llmlab_sweep_spec s3;
        cr_assert_eq(llmlab_sweep_from_json(j, &s3, &e), LLMLAB_OK, "%s", e.msg);
        cr_assert_eq(s3.n_tasks, s1.n_tasks);
        char p1[256], p3[256];
        for (int64_t t = 0; t < s1.n_tasks; t++) {
            llmlab_sweep_point_str(&s1, t, p1, sizeof p1);
            llmlab_sweep_point_str(&s3, t, p3, sizeof p3);
            cr_assert_str_eq(p1, p3);
        }
        free(j);
        llmlab_sweep_free(&s1);
        llmlab_sweep_free(&s2);
        llmlab_sweep_free(&s3);
    }
}

Test(sweep, lua_grid_order_does_not_change_task_numbers) {
    /* Lua tables iterate in hash order; the point of each task must not depend on it
     * nor on the order the keys are written. */
    write_in_dir("a.lua", "llmlab.sweep{name='o', grid={b={'x','y'}, a={1,2,3}, c={true,false}, d=0.5},\n"
                          "  repeats=2, run=function(p) return {v=1} end}\n");
    write_in_dir("b.lua", "llmlab.sweep{name='o', repeats=2, grid={d={0.5}, c={true,false}, a={1,2,3}, b={'x','y'}},\n"
                          "  run=function(p) return {v=1} end}\n");
    cr_assert_eq(llmlab("sweep a.lua --status --out sa"), 0, "%s", err);
    char first[1 << 14];
    snprintf(first, sizeof first, "%s", strstr(out, "\n") + 1);
    cr_assert(strstr(first, "0      missing  a=1 b=x c=true d=0.5 repeat=0\n"), "%s", first);
    cr_assert(strstr(first, "1      missing  a=1 b=x c=false d=0.5 repeat=0\n"), "%s", first);
    cr_assert(strstr(first, "12     missing  a=1 b=x c=true d=0.5 repeat=1\n"), "%s", first);
    cr_assert(strstr(first, "23     missing  a=3 b=y c=false d=0.5 repeat=1\n"), "%s", first);
    for (int run = 0; run < 3; run++) {
        cr_assert_eq(llmlab("sweep %s.lua --status --out sa", run ? "b" : "a"), 0, "%s", err);
        cr_assert_str_eq(strstr(out, "\n") + 1, first);
    }
}

Test(sweep, bad_sweeps_are_clear_errors) {
    write_in_dir("r.lua", "llmlab.sweep{name='x', grid={['repeat']={1}}, run=function(p) end}\n");
    cr_assert_neq(llmlab("sweep r.lua --status"), 0);
    cr_assert(strstr(err, "r.lua:1:") && strstr(err, "'repeat'"), "%s", err);
    write_in_dir("e.lua", "llmlab.sweep{name='x', grid={k={}}, run=function(p) end}\n");
    cr_assert_neq(llmlab("sweep e.lua --status"), 0);
    cr_assert(strstr(err, "grid.k is an empty list"), "%s", err);
    write_in_dir("n.lua", "llmlab.sweep{name='a b', grid={k={1}}, run=function(p) end}\n");
    cr_assert_neq(llmlab("sweep n.lua --status"), 0);
    cr_assert(strstr(err, "sweep name 'a b'"), "%s", err);
    write_in_dir("t.lua", "llmlab.sweep{name='x', grid={k={1}}, runn=function(p) end}\n");
    cr_assert_neq(llmlab("sweep t.lua --status"), 0);
    cr_assert(strstr(err, "unknown field 'runn'"), "%s", err);
    write_in_dir("none.lua", "print('no sweep here')\n");
    cr_assert_eq(llmlab("sweep none.lua"), 2);
    cr_assert(strstr(err, "does not call llmlab.sweep"), "%s", err);
    write_in_dir("ok.lua", "llmlab.sweep{name='x', grid={k={1,2}}, run=function(p) return {v=p.k} end}\n");
    cr_assert_eq(llmlab("sweep ok.lua --task 2 --out o"), 1);
    cr_assert(strstr(err, "--task 2 is outside 0..1"), "%s", err);
    cr_assert_eq(llmlab("sweep ok.lua --submit"), 2);
}

/* ---- local runs --------------------------------------------------------------------------- */

/* The sweep /sweep table column as doubles (asserts it is there). */
static double *sweep_col(const char *file, const char *col, size_t *n) {
    double *v = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_column_double(file, NULL, "sweep", col, &v, n, &e), LLMLAB_OK, "%s", e.msg);
    return v;
}

Test(sweep, example_runs_locally_with_two_processes) {
    cr_assert_eq(llmlab("sweep %s/experiments/sweep_example.lua -j 2 --out ex --set repeats=1 --set models=m",
                        LLMLAB_SOURCE_DIR),
                 0, "%s\n%s", out, err);
    cr_assert(strstr(out, "6 of 6 ok, 0 failed"), "%s", out);
    char *merged = path_in("ex/merged.h5");
    size_t n, n2;
    double *task = sweep_col(merged, "task", &n), *k = sweep_col(merged, "k", &n2);
    double *win = sweep_col(merged, "window", &n2), *acc = sweep_col(merged, "mean_accepted", &n2);
    cr_assert_eq(n, 6);
    static const int ks[] = {1, 2, 4}, ws[] = {16, 64};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(task[i], (double)i);
        cr_assert_eq(k[i], ks[i / 2]);
        cr_assert_eq(win[i], ws[i % 2]);
        cr_assert(acc[i] >= 1.0 && acc[i] <= k[i] + 1.0, "mean accepted %g for k=%g", acc[i], k[i]);
    }
    char **st = NULL, **runs = NULL;
    size_t ns, nr;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_column_str(merged, NULL, "sweep", "status", &st, &ns, &e), LLMLAB_OK);
    for (size_t i = 0; i < ns; i++) cr_assert_str_eq(st[i], "ok");
    cr_assert_eq(llmlab_results_list_runs(merged, &runs, &nr, &e), LLMLAB_OK);
    cr_assert_eq(nr, 6);
    /* the copied runs keep their attributes and tables */
    int64_t kk = 0;
    cr_assert_eq(llmlab_results_attr_int(merged, runs[5], "settings/decoding/k", &kk, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(kk, 4);
    cr_assert_eq(llmlab_results_attr_int(merged, runs[5], "sweep/point/window", &kk, &e), LLMLAB_OK);
    cr_assert_eq(kk, 64);
    double *lat = NULL;
    size_t nl;
    cr_assert_eq(llmlab_results_column_double(merged, runs[5], "requests", "finish_s", &lat, &nl, &e), LLMLAB_OK);
    cr_assert_eq(nl, 4);
    free(lat);
    llmlab_results_free_strs(st, ns);
    llmlab_results_free_strs(runs, nr);
    free(task);
    free(k);
    free(win);
    free(acc);
    free(merged);
}

/* A plain-metric sweep whose tasks log that they started, sleep, and fail on
 * demand: x == 3 fails until a file `fixed` exists. */
static const char *slow_script =
    "local ms = llmlab.args.ms or 0\n"
    "llmlab.sweep{name='slow', grid={x={0,1,2,3,4,5,6,7}}, run=function(p)\n"
    "  local f = io.open('started.log', 'a'); f:write(p.x, '\\n'); f:close()\n"
    "  if ms > 0 then os.execute('sleep ' .. ms / 1000) end\n"
    "  if p.x == 3 and not io.open('fixed') then error('boom at x=3') end\n"
    "  return {y = p.x * p.x, half = p.x / 2, tag = 'x' .. p.x}\n"
    "end}\n";

static pid_t start_bg(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd %s && exec %s %s >/dev/null 2>&1", dir, LLMLAB_BIN, args);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0); /* its own group: the kill below takes the task processes too */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

static int n_task_files(const char *sub, int n) {
    int c = 0;
    for (int t = 0; t < n; t++) {
        char *p = path_in("%s/task-%05d.h5", sub, t);
        c += fsu_exists(p);
        free(p);
    }
    return c;
}

Test(sweep, killed_sweep_resumes_without_redoing_tasks) {
    write_in_dir("slow.lua", slow_script);
    write_in_dir("fixed", "");
    pid_t pid = start_bg("sweep slow.lua -j 2 --out s --set ms=300");
    struct timespec ts = {0, 50 * 1000 * 1000};
    for (int i = 0; i < 400 && n_task_files("s", 8) < 3; i++) nanosleep(&ts, NULL);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    int before = n_task_files("s", 8);
    cr_assert(before >= 3 && before < 8, "killed with %d of 8 tasks done", before);
    struct stat sb[8];
    int done[8];
    for (int t = 0; t < 8; t++) {
        char *p = path_in("s/task-%05d.h5", t);
        done[t] = stat(p, &sb[t]) == 0;
        free(p);
    }
    cr_assert_eq(llmlab("sweep slow.lua -j 2 --out s"), 0, "%s\n%s", out, err);
    cr_assert(strstr(err, "already complete"), "%s", err);
    for (int t = 0; t < 8; t++) {
        char line[8];
        snprintf(line, sizeof line, "%d", t);
        int starts = count_lines("started.log", line);
        if (done[t]) {
            struct stat now;
            char *p = path_in("s/task-%05d.h5", t);
            cr_assert_eq(stat(p, &now), 0);
            free(p);
            cr_assert(now.st_mtim.tv_sec == sb[t].st_mtim.tv_sec && now.st_mtim.tv_nsec == sb[t].st_mtim.tv_nsec,
                      "task %d was finished before the kill and must not be rewritten", t);
            cr_assert_eq(starts, 1, "task %d ran %d times", t, starts);
        } else {
            cr_assert(starts >= 1 && starts <= 2, "task %d started %d times", t, starts);
        }
    }
    char *merged = path_in("s/merged.h5");
    size_t n;
    double *task = sweep_col(merged, "task", &n), *y = sweep_col(merged, "y", &n);
    cr_assert_eq(n, 8, "one row per task, no duplicates");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(task[i], (double)i);
        cr_assert_eq(y[i], (double)(i * i));
    }
    char **runs = NULL;
    size_t nr;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_list_runs(merged, &runs, &nr, &e), LLMLAB_OK);
    cr_assert_eq(nr, 8);
    llmlab_results_free_strs(runs, nr);
    free(task);
    free(y);
    free(merged);
}

Test(sweep, failed_tasks_are_listed_and_retried_alone) {
    write_in_dir("slow.lua", slow_script);
    cr_assert_eq(llmlab("sweep slow.lua -j 2 --out f"), 1, "%s", err);
    cr_assert(strstr(out, "7 of 8 ok, 1 failed"), "%s", out);
    cr_assert(strstr(out, "task 3 (x=3 repeat=0) FAILED:") && strstr(out, "slow.lua:5: boom at x=3"), "%s", out);
    cr_assert_eq(llmlab("sweep slow.lua --status --out f"), 0);
    cr_assert(strstr(out, "3      failed") && strstr(out, "boom at x=3"), "%s", out);
    char *merged = path_in("f/merged.h5");
    char **st = NULL, **er = NULL;
    size_t n;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_results_column_str(merged, NULL, "sweep", "status", &st, &n, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_results_column_str(merged, NULL, "sweep", "error", &er, &n, &e), LLMLAB_OK);
    cr_assert_str_eq(st[3], "failed");
    cr_assert(strstr(er[3], "boom"), "%s", er[3]);
    llmlab_results_free_strs(st, n);
    llmlab_results_free_strs(er, n);
    /* a plain rerun keeps the failure; --retry-failed reruns task 3 only */
    cr_assert_eq(llmlab("sweep slow.lua -j 2 --out f"), 1);
    cr_assert_eq(count_lines("started.log", "3"), 1);
    write_in_dir("fixed", "");
    cr_assert_eq(llmlab("sweep slow.lua -j 2 --out f --retry-failed"), 0, "%s\n%s", out, err);
    for (int t = 0; t < 8; t++) {
        char line[8];
        snprintf(line, sizeof line, "%d", t);
        cr_assert_eq(count_lines("started.log", line), t == 3 ? 2 : 1, "task %d", t);
    }
    size_t ny;
    double *y = sweep_col(merged, "y", &ny);
    cr_assert_eq(y[3], 9.0);
    free(y);
    /* --task I reruns one task (here: finished, so skipped) */
    cr_assert_eq(llmlab("sweep slow.lua --task 3 --out f"), 0);
    cr_assert(strstr(err, "already complete"), "%s", err);
    free(merged);
}

Test(sweep, llmlab_run_runs_every_task_in_process) {
    write_in_dir("slow.lua", slow_script);
    write_in_dir("fixed", "");
    write_in_dir("llmlab.ini", "[llmlab]\nresults_dir = res\n");
    cr_assert_eq(llmlab("run slow.lua"), 0, "%s", err);
    cr_assert(strstr(out, "sweep slow: task 8/8 ok (x=7 repeat=0)"), "%s", out);
    cr_assert_eq(n_task_files("res/sweeps/slow", 8), 8);
    cr_assert_eq(llmlab("run slow.lua"), 0);
    cr_assert_eq(count_lines("started.log", "5"), 1, "finished tasks are skipped");
}

/* ---- merge -------------------------------------------------------------------------------- */

Test(sweep, merge_refuses_duplicate_tasks_and_other_schema_versions) {
    write_in_dir("slow.lua", slow_script);
    write_in_dir("fixed", "");
    cr_assert_eq(llmlab("sweep slow.lua -j 2 --out a --no-merge"), 0, "%s", err);
    cr_assert_eq(llmlab("merge m.h5 a a/task-00004.h5"), 2);
    cr_assert(strstr(err, "task 4 is in both") && strstr(err, "a/task-00004.h5"), "%s", err);
    char *m = path_in("m.h5");
    cr_assert_eq(access(m, F_OK), -1, "nothing written");
    free(m);
    /* a partial sweep merges, listing the missing tasks */
    char *t2 = path_in("a/task-00002.h5");
    cr_assert_eq(unlink(t2), 0);
    cr_assert_eq(llmlab("merge m.h5 a"), 0, "%s", err);
    cr_assert(strstr(out, "7 ok, 0 failed, 1 missing"), "%s", out);
    /* a task file of schema version 2 */
    char *t5 = path_in("a/task-00005.h5");
    hid_t f = H5Fopen(t5, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t a = H5Aopen(f, "llmlab_schema_version", H5P_DEFAULT);
    int64_t two = 2;
    cr_assert(H5Awrite(a, H5T_NATIVE_INT64, &two) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    cr_assert_eq(llmlab("merge m2.h5 a"), 2);
    cr_assert(strstr(err, "task-00005.h5") && strstr(err, "schema version 2"), "%s", err);
    /* files of another sweep */
    write_in_dir("other.lua", "llmlab.sweep{name='slow', grid={x={0,1}}, run=function(p) return {y=1} end}\n");
    cr_assert_eq(llmlab("sweep other.lua --out b --no-merge"), 0, "%s", err);
    cr_assert_eq(llmlab("merge m3.h5 a/task-00001.h5 b/task-00000.h5"), 2);
    cr_assert(strstr(err, "different sweeps"), "%s", err);
    free(t2);
    free(t5);
}

/* ---- report ------------------------------------------------------------------------------- */

/* A hand-made sweep: a in {1,2} x b in {"x","y"}, 3 repeats; metric m random,
 * cnt = a*10 (int); requests and steps tables for the plots. */
static void make_handmade(const char *sub, double m[12]) {
    llmlab_sweep_spec s;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_sweep_init(&s, "hand", 3, &e), LLMLAB_OK);
    add_ints(&s, "a", 2, 1);
    cr_assert_eq(llmlab_sweep_add_param(&s, "b", &e), LLMLAB_OK);
    llmlab_sweep_value x = {LLMLAB_SWEEP_STR, 0, 0, "x"}, y = {LLMLAB_SWEEP_STR, 0, 0, "y"};
    cr_assert_eq(llmlab_sweep_add_value(&s, &x, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_sweep_add_value(&s, &y, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_sweep_finish(&s, &e), LLMLAB_OK);
    char *d = path_in("%s", sub);
    cr_assert_eq(llmlab_sweep_mkdirs(d, &e), LLMLAB_OK);
    for (int t = 0; t < 12; t++) {
        char name[32];
        int idx[2], rep;
        llmlab_sweep_point(&s, t, idx, &rep, &e);
        llmlab_sweep_task_name(t, name, sizeof name);
        llmlab_run *run = llmlab_run_create(name, &e);
        llmlab_table *sum = llmlab_run_table(run, "summary", &e);
        m[t] = (double)rand() / RAND_MAX * 100.0;
        cr_assert_eq(llmlab_table_append_double(sum, "m", m[t], &e), LLMLAB_OK);
        cr_assert_eq(llmlab_table_append_int(sum, "cnt", (idx[0] + 1) * 10, &e), LLMLAB_OK);
        llmlab_table *rq = llmlab_run_table(run, "requests", &e), *st = llmlab_run_table(run, "steps", &e);
        for (int r = 0; r < 5; r++) {
            llmlab_table_append_double(rq, "arrival_s", 0.0, &e);
            llmlab_table_append_double(rq, "finish_s", 0.1 * (r + 1) * (idx[0] + 1), &e);
            llmlab_table_append_double(st, "start_s", 0.01 * r, &e);
            llmlab_table_append_double(st, "kv_bytes", 4096.0 * (r + 1), &e);
        }
        cr_assert_eq(llmlab_sweep_write_task(d, &s, t, run, NULL, &e), LLMLAB_OK, "%s", e.msg);
        llmlab_run_free(run);
    }
    free(d);
    llmlab_sweep_free(&s);
}

/* Finds the CSV row starting with key and reads its numbers into v (returns count). */
static int csv_row(const char *csv, const char *key, double *v, int cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s,", key);
    const char *p = strstr(csv, pat);
    cr_assert(p, "no row %s in\n%s", key, csv);
    p += strlen(pat);
    int n = 0;
    while (n < cap && *p && *p != '\n') {
        char *end;
        v[n++] = strtod(p, &end);
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

Test(sweep, report_tables_have_the_right_numbers) {
    srand((unsigned)fixture_seed("sweep.report"));
    double m[12];
    make_handmade("h", m);
    cr_assert_eq(llmlab("merge h.h5 h"), 0, "%s", err);
    cr_assert_eq(llmlab("report h.h5 --by a --metric m,cnt --format csv"), 0, "%s", err);
    const char *head = "a,n,m,m_min,m_max,cnt,cnt_min,cnt_max\n";
    cr_assert(!strncmp(out, head, strlen(head)), "%s", out);
    for (int a = 1; a <= 2; a++) {
        double sum = 0, lo = INFINITY, hi = -INFINITY, v[8];
        for (int t = 0; t < 12; t++)
            if ((t % 4) / 2 == a - 1) {
                sum += m[t];
                lo = fmin(lo, m[t]);
                hi = fmax(hi, m[t]);
            }
        char key[8];
        snprintf(key, sizeof key, "%d", a);
        cr_assert_eq(csv_row(out, key, v, 8), 7);
        cr_assert_eq(v[0], 6.0, "6 rows per a");
        cr_assert(fabs(v[1] - sum / 6) <= 1e-5 * fabs(sum / 6), "mean %g vs %g", v[1], sum / 6);
        cr_assert(fabs(v[2] - lo) <= 1e-5 * lo && fabs(v[3] - hi) <= 1e-5 * hi);
        cr_assert_eq(v[4], a * 10.0);
    }
    /* default grouping: every parameter (a, b); Markdown */
    cr_assert_eq(llmlab("report h.h5 --metric m --format md"), 0, "%s", err);
    cr_assert(strstr(out, "| a | b | n | m "), "%s", out);
    /* a=2 b=y is grid point 3: tasks 3, 7 and 11 (repeats 0, 1, 2) */
    double mean = (m[3] + m[7] + m[11]) / 3;
    const char *row = strstr(out, "| 2 | y | 3 | ");
    cr_assert(row, "%s", out);
    double got = strtod(row + strlen("| 2 | y | 3 | "), NULL);
    cr_assert(fabs(got - mean) <= 1e-5 * mean, "%g vs %g", got, mean);
    cr_assert_eq(llmlab("report h.h5 --metric nope"), 2);
    cr_assert(strstr(err, "no numeric metric 'nope'") && strstr(err, "m, cnt"), "%s", err);
    cr_assert_eq(llmlab("report h.h5 --by zz"), 2);
    cr_assert(strstr(err, "--by 'zz'"), "%s", err);
}

Test(sweep, report_groups_plain_runs_by_attributes) {
    llmlab_err e = {0};
    char *file = path_in("plain.h5");
    double v[6];
    srand((unsigned)fixture_seed("sweep.plain"));
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        llmlab_run *run = llmlab_run_create(name, &e);
        llmlab_run_attr_int(run, "settings/attention/window", i % 2 ? 64 : 32, &e);
        v[i] = (double)rand() / RAND_MAX;
        llmlab_table_append_double(llmlab_run_table(run, "summary", &e), "kl", v[i], &e);
        cr_assert_eq(llmlab_results_write(file, run, &e), LLMLAB_OK, "%s", e.msg);
        llmlab_run_free(run);
    }
    cr_assert_eq(llmlab("report plain.h5 --by settings/attention/window --format csv"), 0, "%s", err);
    double got[4];
    cr_assert_eq(csv_row(out, "64", got, 4), 4);
    double mean = (v[1] + v[3] + v[5]) / 3;
    cr_assert_eq(got[0], 3.0);
    cr_assert(fabs(got[1] - mean) <= 1e-5 * mean, "%g vs %g", got[1], mean);
    cr_assert_eq(llmlab("report plain.h5 --format csv"), 0);
    cr_assert(strstr(out, "\nr4,1,"), "one row per run: %s", out);
    free(file);
}

/* ---- plots -------------------------------------------------------------------------------- */

static void check_png(const char *file) {
    size_t n = 0;
    unsigned char *b = (unsigned char *)fsu_read(file, &n);
    cr_assert(b, "no %s", file);
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    cr_assert(n > 100 && !memcmp(b, magic, 8) && !memcmp(b + 12, "IHDR", 4), "%s is not a PNG", file);
    uint32_t w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19];
    cr_assert(w >= 100 && w <= 4000, "%s width %u", file, w);
    free(b);
}

static void check_svg(const char *file) {
    char cmd[2048], o[256], e[2048];
    if (system("python3 -c 'import xml.etree.ElementTree' >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd,
                 "python3 -c \"import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); "
                 "print(r.tag.split('}')[-1])\" %s",
                 file);
        cr_assert_eq(proc_run(cmd, o, sizeof o, e, sizeof e), 0, "%s does not parse as XML: %s", file, e);
        cr_assert_str_eq(o, "svg\n");
    } else {
        char *t = fsu_read(file, NULL);
        cr_assert(t && strstr(t, "<svg") && strstr(t, "</svg>"), "%s", file);
        free(t);
    }
}

Test(sweep, plots_are_valid_png_and_svg) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        double m[12];
        make_handmade("h", m);
        cr_assert_eq(llmlab("merge h.h5 h"), 0);
        cr_assert_neq(llmlab("report h.h5 --plot p"), 0);
        cr_assert(strstr(err, "gnuplot"), "a clear message without gnuplot: %s", err);
        cr_skip_test("gnuplot not installed (Debian: gnuplot-nox)");
    }
    double m[12];
    make_handmade("h", m);
    cr_assert_eq(llmlab("merge h.h5 h"), 0, "%s", err);
    cr_assert_eq(llmlab("report h.h5 --by a,b --plot p"), 0, "%s", err);
    static const char *const names[] = {"m_vs_a", "cnt_vs_a", "latency_cdf", "kv_memory"};
    for (int i = 0; i < 4; i++) {
        char *png = path_in("p/%s.png", names[i]), *svg = path_in("p/%s.svg", names[i]);
        check_png(png);
        check_svg(svg);
        free(png);
        free(svg);
    }
    char *dat = path_in("p/m_vs_a.dat"), *text = fsu_read(dat, NULL);
    cr_assert(text && strstr(text, "# b=x") && strstr(text, "# b=y"), "a line per value of b: %s", text);
    free(text);
    free(dat);
}

/* ---- Slurm scripts ------------------------------------------------------------------------- */

Test(sweep, sbatch_scripts_carry_ini_defaults_and_overrides) {
    write_in_dir("slow.lua", slow_script);
    write_in_dir("site.ini", "[slurm]\npartition = gpu\naccount = proj42\ntime = 0-02:00:00\ngpus = 1\n"
                             "cpus_per_task = 4\nmem = 16G\nmax_parallel = 3\nextra = --constraint=h100 --exclusive\n");
    cr_assert_eq(llmlab("sweep slow.lua --slurm --out sl --config site.ini --partition debug --max-parallel 2 "
                        "--set ms=5"),
                 0, "%s", err);
    char *p = path_in("sl/sweep.sbatch"), *s = fsu_read(p, NULL);
    cr_assert(s, "no sweep.sbatch: %s", out);
    const char *must[] = {"#!/bin/bash\n", "#SBATCH --array=0-7%2\n", "#SBATCH --partition=debug\n",
                          "#SBATCH --account=proj42\n", "#SBATCH --time=0-02:00:00\n", "#SBATCH --gpus=1\n",
                          "#SBATCH --cpus-per-task=4\n", "#SBATCH --mem=16G\n", "#SBATCH --constraint=h100\n",
                          "#SBATCH --exclusive\n", "--task \"$SLURM_ARRAY_TASK_ID\"", "'--set' 'ms=5'", LLMLAB_BIN,
                          "/slow.lua' --task"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) cr_assert(strstr(s, must[i]), "lacks %s:\n%s", must[i], s);
    cr_assert(strstr(s, "#SBATCH --output=/") && strstr(s, "/sl/logs/slurm-%A_%a.out"), "%s", s);
    cr_assert(strstr(s, "#SBATCH --chdir=/"), "%s", s);
    free(s);
    free(p);
    p = path_in("sl/merge.sbatch");
    s = fsu_read(p, NULL);
    cr_assert(s && strstr(s, "' merge '") && strstr(s, "/sl/merged.h5' '") && strstr(s, "#SBATCH --partition=debug\n"),
              "%s", s);
    cr_assert(!strstr(s, "--gpus"), "the merge job needs no GPU: %s", s);
    free(s);
    free(p);
    cr_assert(strstr(out, "--dependency=afterok:"), "%s", out);
    cr_assert_eq(llmlab("sweep slow.lua --slurm --out sl --time 1:75"), 2);
    cr_assert(strstr(err, "slurm.time") && strstr(err, "1:75"), "%s", err);
}
