/* cmd_sweep.c - `llmlab sweep SCRIPT.lua`: the script's llmlab.sweep{...} grid run
 * as one process per task, locally (-j N, resumable) or as a Slurm job array
 * (--slurm [--submit]) with a merge job chained after it.  docs/sweeps.md.
 *
 * The command first runs the script in "plan" mode: llmlab.sweep records the
 * sweep and stops the script (whatever the script does before the call, such as
 * making a model, has then been done once).  Each task is then
 * `llmlab sweep SCRIPT --task I --out DIR`, which runs the script again and
 * llmlab.sweep runs only task I, writing DIR/task-0000I.h5. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "core/lua_api.h"
#include "core/merge.h"
#include "core/sweep.h"

typedef struct {
    const char *script;  /* SCRIPT.lua as given */
    const char *out;     /* --out DIR or NULL */
    int jobs;            /* -j N: task processes at once */
    int64_t task;        /* --task I, or -1 */
    int retry_failed;    /* --retry-failed: rerun the failed tasks only */
    int status;          /* --status: list the tasks and stop */
    int slurm, submit;   /* --slurm, --submit */
    int no_merge;        /* --no-merge: skip merging after a local run */
    char **sets;         /* [n_sets] the --set values */
    int n_sets;
    char **pass;         /* [n_pass] options every task gets (--set, --config, --threads, ...) */
    int n_pass;
    llmlab_settings s;   /* INI < command line */
    llmlab_registry *reg;
} sweep_cli;

static void sweep_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab sweep SCRIPT.lua [-j N] [--out DIR] [--set key=value ...] [--config FILE]\n"
            "                    [--threads N] [--backend cpu|cuda] [--plugin-path DIRS]\n"
            "       llmlab sweep SCRIPT.lua --task I | --retry-failed | --status | --no-merge\n"
            "       llmlab sweep SCRIPT.lua --slurm [--submit] [--partition P] [--time T] [--gpus G]\n"
            "                    [--cpus-per-task C] [--mem M] [--account A] [--qos Q] [--max-parallel K]\n"
            "                    [--extra 'SBATCH OPTIONS']\n"
            "  -j N            run N task processes at once (default 1); finished tasks are skipped\n"
            "  --out DIR       sweep directory (default: <results_dir>/sweeps/<name>)\n"
            "  --task I        run task I in this process (what each job-array task runs)\n"
            "  --retry-failed  rerun only the tasks that failed\n"
            "  --status        list every task with its point, status and error\n"
            "  --no-merge      do not write DIR/merged.h5 after a local run\n"
            "  --slurm         write DIR/sweep.sbatch (an array job) and DIR/merge.sbatch; with --submit,\n"
            "                  submit both (merge after the array: --dependency=afterok) and print the job ids.\n"
            "                  Slurm options default to the [slurm] section of llmlab.ini.\n");
}

/* ---- command line ------------------------------------------------------------------------ */

static const char *const slurm_opts[][2] = {
    {"--partition", "slurm.partition"}, {"--time", "slurm.time"},   {"--gpus", "slurm.gpus"},
    {"--cpus-per-task", "slurm.cpus_per_task"}, {"--mem", "slurm.mem"}, {"--account", "slurm.account"},
    {"--qos", "slurm.qos"},             {"--max-parallel", "slurm.max_parallel"}, {"--extra", "slurm.extra"}};

static const char *slurm_key(const char *opt) {
    for (size_t i = 0; i < sizeof slurm_opts / sizeof slurm_opts[0]; i++)
        if (!strcmp(opt, slurm_opts[i][0])) return slurm_opts[i][1];
    return NULL;
}

static void pass_on(sweep_cli *c, const char *opt, const char *v) {
    c->pass[c->n_pass++] = (char *)opt;
    c->pass[c->n_pass++] = (char *)v;
}

/* One option with a value at argv[*i]; returns 0, or the exit status. */
static int parse_valued(sweep_cli *c, int argc, char **argv, int *i, char **config_abs, llmlab_err *err) {
    const char *o = argv[*i];
    const char *v = llmlab_arg_value("sweep", argc, argv, i);
    if (!v) return 2;
    const char *skey = slurm_key(o);
    const char *key = !strcmp(o, "--threads") ? "threads" : !strcmp(o, "--backend") ? "backend"
                      : !strcmp(o, "--plugin-path") ? "plugin_path" : NULL;
    if (skey || key) {
        if (llmlab_settings_set(&c->s, skey ? skey : key, v, err)) return -1;
        if (key) pass_on(c, o, v);
    } else if (!strcmp(o, "-j") || !strcmp(o, "--jobs")) {
        if (llmlab_arg_int("sweep", o, v, 1, 1024, &c->jobs)) return 2;
    } else if (!strcmp(o, "--task")) {
        int t;
        if (llmlab_arg_int("sweep", o, v, 0, LLMLAB_SWEEP_MAX_TASKS - 1, &t)) return 2;
        c->task = t;
    } else if (!strcmp(o, "--out")) {
        c->out = v;
    } else if (!strcmp(o, "--set")) {
        if (!strchr(v, '=') || v[0] == '=') {
            fprintf(stderr, "llmlab sweep: --set '%s': expected key=value\n", v);
            return 2;
        }
        c->sets[c->n_sets++] = (char *)v;
        pass_on(c, o, v);
    } else if (!strcmp(o, "--config")) {
        /* tasks may run elsewhere (Slurm): pass the absolute path */
        *config_abs = realpath(v, NULL);
        pass_on(c, o, *config_abs ? *config_abs : v);
    } else {
        return 3; /* not an option with a value */
    }
    return 0;
}

/* Settings (INI, then options in order) and arguments; 0 or an exit status. */
static int parse(sweep_cli *c, int argc, char **argv, char **config_abs) {
    llmlab_err err = {0};
    const char *config = NULL;
    char used[1024];
    c->task = -1;
    c->jobs = 1;
    llmlab_settings_defaults(&c->s);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config")) config = argv[i + 1];
    c->sets = calloc((size_t)argc, sizeof *c->sets);
    c->pass = calloc((size_t)argc * 2, sizeof *c->pass);
    if (!c->sets || !c->pass) return 1;
    if (llmlab_settings_find(&c->s, config, used, sizeof used, &err)) goto fail;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int *flag = !strcmp(o, "--retry-failed") ? &c->retry_failed : !strcmp(o, "--status") ? &c->status
                    : !strcmp(o, "--slurm") ? &c->slurm : !strcmp(o, "--submit") ? &c->submit
                    : !strcmp(o, "--no-merge") ? &c->no_merge : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            sweep_usage(stdout);
            return -2;
        }
        if (flag) {
            *flag = 1;
            continue;
        }
        if (o[0] == '-') {
            int rc = parse_valued(c, argc, argv, &i, config_abs, &err);
            if (rc < 0) goto fail;
            if (rc == 3) {
                fprintf(stderr, "llmlab sweep: unknown option '%s'\n", o);
                sweep_usage(stderr);
                return 2;
            }
            if (rc) return rc;
        } else if (!c->script) {
            c->script = o;
        } else {
            fprintf(stderr, "llmlab sweep: unexpected argument '%s'\n", o);
            return 2;
        }
    }
    if (!c->script) {
        fprintf(stderr, "llmlab sweep: need a SCRIPT.lua\n");
        sweep_usage(stderr);
        return 2;
    }
    if (c->submit && !c->slurm) {
        fprintf(stderr, "llmlab sweep: --submit needs --slurm\n");
        return 2;
    }
    if ((c->task >= 0) + c->retry_failed + c->status + c->slurm > 1) {
        fprintf(stderr, "llmlab sweep: use at most one of --task, --retry-failed, --status, --slurm\n");
        return 2;
    }
    if (llmlab_settings_apply_env(&c->s, &err) || llmlab_registry_create(&c->reg, &err) ||
        llmlab_registry_load_path(c->reg, c->s.plugin_path, &err))
        goto fail;
    return 0;
fail:
    fprintf(stderr, "llmlab sweep: %s\n", err.msg);
    return err.code == LLMLAB_EINVAL ? 2 : 1;
}

/* ---- plan, one task ---------------------------------------------------------------------- */

/* Runs the script up to its llmlab.sweep call; fills sw->spec.  0 or an exit status. */
static int plan(sweep_cli *c, llmlab_lua_sweep_req *sw) {
    memset(sw, 0, sizeof *sw);
    sw->mode = LLMLAB_LUA_SWEEP_PLAN;
    sw->outcome = -1;
    llmlab_lua_opts o = {c->script, c->n_sets, c->sets, &c->s, c->reg};
    llmlab_err err = {0};
    if (llmlab_lua_run_sweep(&o, sw, &err)) {
        fprintf(stderr, "llmlab sweep: %s\n", err.msg);
        return 1;
    }
    if (!sw->planned) {
        fprintf(stderr, "llmlab sweep: %s does not call llmlab.sweep{...} (docs/sweeps.md)\n", c->script);
        return 2;
    }
    return 0;
}

static int run_one_task(sweep_cli *c) {
    llmlab_lua_sweep_req sw;
    memset(&sw, 0, sizeof sw);
    sw.mode = LLMLAB_LUA_SWEEP_TASK;
    sw.task = c->task;
    sw.out = c->out;
    sw.outcome = -1;
    llmlab_lua_opts o = {c->script, c->n_sets, c->sets, &c->s, c->reg};
    llmlab_err err = {0};
    if (llmlab_lua_run_sweep(&o, &sw, &err)) {
        fprintf(stderr, "llmlab sweep: %s\n", err.msg);
        return 1;
    }
    if (sw.outcome < 0) {
        fprintf(stderr, "llmlab sweep: %s did not reach llmlab.sweep{...}\n", c->script);
        return 1;
    }
    return sw.outcome == LLMLAB_TASK_FAILED ? 1 : 0;
}

/* ---- --status ---------------------------------------------------------------------------- */

static int print_status(const llmlab_sweep_spec *s, const char *dir) {
    static const char *const names[] = {"missing", "ok", "failed"};
    int64_t count[3] = {0, 0, 0};
    printf("sweep %s: %lld tasks in %s\n%-6s %-8s %s\n", s->name, (long long)s->n_tasks, dir, "task", "status",
           "point / error");
    for (int64_t t = 0; t < s->n_tasks; t++) {
        char *error = NULL, point[1024];
        llmlab_task_state st = llmlab_sweep_task_state(dir, t, &error);
        llmlab_sweep_point_str(s, t, point, sizeof point);
        printf("%-6lld %-8s %s%s%s\n", (long long)t, names[st], point, error ? "\n                " : "",
               error ? error : "");
        count[st]++;
        free(error);
    }
    printf("%lld ok, %lld failed, %lld missing\n", (long long)count[1], (long long)count[2], (long long)count[0]);
    return 0;
}

/* ---- local runs -------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop; /* set by SIGINT/SIGTERM: stop starting tasks */

static void on_signal(int sig) { g_stop = sig; }

typedef struct {
    pid_t pid;     /* 0 when the slot is free */
    int64_t task;
} child;

/* Starts `llmlab sweep SCRIPT --task I --out DIR ...` with output into the task's log. */
static pid_t spawn_task(const sweep_cli *c, const char *self, const char *dir, int64_t task) {
    char tbuf[32], log[4200];
    snprintf(tbuf, sizeof tbuf, "%" PRId64, task);
    snprintf(log, sizeof log, "%s/logs/task-%05" PRId64 ".log", dir, task);
    char **argv = calloc((size_t)c->n_pass + 8, sizeof *argv);
    if (!argv) return -1;
    int n = 0;
    argv[n++] = (char *)self;
    argv[n++] = "sweep";
    argv[n++] = (char *)c->script;
    argv[n++] = "--task";
    argv[n++] = tbuf;
    argv[n++] = "--out";
    argv[n++] = (char *)dir;
    for (int i = 0; i < c->n_pass; i++) argv[n++] = c->pass[i];
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(self, argv);
        _exit(127);
    }
    free(argv);
    return pid;
}

/* The last non-empty line of a log file (for failure messages). */
static void last_line(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) snprintf(buf, cap, "%s", line);
    }
    fclose(f);
}

/* After a task process ended: records a failure when the process died without
 * writing its task file (crash, kill, a script error outside run()). */
static llmlab_task_state settle(const llmlab_sweep_spec *s, const char *dir, int64_t task, int wstatus) {
    llmlab_task_state st = llmlab_sweep_task_state(dir, task, NULL);
    int clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    if (st == LLMLAB_TASK_FAILED || (st == LLMLAB_TASK_OK && clean)) return st;
    char why[1400], tail[1024], log[4200], name[64];
    snprintf(log, sizeof log, "%s/logs/task-%05" PRId64 ".log", dir, task);
    last_line(log, tail, sizeof tail);
    if (WIFSIGNALED(wstatus))
        snprintf(why, sizeof why, "the task process was killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    else
        snprintf(why, sizeof why, "the task process exited with status %d without recording a result: %s",
                 WEXITSTATUS(wstatus), tail[0] ? tail : "(empty log)");
    llmlab_err err = {0};
    llmlab_sweep_task_name(task, name, sizeof name);
    llmlab_run *run = llmlab_run_create(name, &err);
    if (!run || llmlab_sweep_write_task(dir, s, task, run, why, &err))
        fprintf(stderr, "llmlab sweep: task %" PRId64 ": %s (and recording it failed: %s)\n", task, why, err.msg);
    llmlab_run_free(run);
    return LLMLAB_TASK_FAILED;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(int64_t done, int64_t total, int64_t failed, int running, double t0) {
    int w = 30, fill = total ? (int)(w * done / total) : w;
    char bar[64];
    for (int k = 0; k < w; k++) bar[k] = k < fill ? '#' : '-';
    bar[w] = '\0';
    int el = (int)(now_s() - t0);
    fprintf(stderr, "\r[%s] %lld/%lld  failed %lld  running %d  %d:%02d ", bar, (long long)done, (long long)total,
            (long long)failed, running, el / 60, el % 60);
    fflush(stderr);
}

/* Runs the tasks in todo[n] with c->jobs processes.  *failed counts failures. */
static int run_tasks(const sweep_cli *c, const llmlab_sweep_spec *s, const char *dir, const int64_t *todo, int64_t n,
                     int64_t *failed) {
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        fprintf(stderr, "llmlab sweep: cannot find the llmlab binary (/proc/self/exe): %s\n", strerror(errno));
        return 1;
    }
    self[len] = '\0';
    child *kids = calloc((size_t)c->jobs, sizeof *kids);
    if (!kids) return 1;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int tty = isatty(2), running = 0;
    int64_t next = 0, done = 0;
    double t0 = now_s();
    while ((next < n && !g_stop) || running > 0) {
        for (int k = 0; k < c->jobs && next < n && !g_stop; k++)
            if (!kids[k].pid) {
                kids[k].task = todo[next++];
                kids[k].pid = spawn_task(c, self, dir, kids[k].task);
                if (kids[k].pid < 0) { /* fork failed: stop starting tasks */
                    kids[k].pid = 0;
                    g_stop = SIGTERM;
                } else {
                    running++;
                }
            }
        if (tty) progress(done, n, *failed, running, t0);
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0) {
            if (errno == ECHILD) break;
            if (g_stop) /* interrupted: end the running tasks, which resume later */
                for (int k = 0; k < c->jobs; k++)
                    if (kids[k].pid) kill(kids[k].pid, SIGTERM);
            continue;
        }
        for (int k = 0; k < c->jobs; k++)
            if (kids[k].pid == pid) {
                kids[k].pid = 0;
                running--;
                if (!g_stop || !WIFSIGNALED(ws)) { /* tasks we interrupted just resume later */
                    *failed += settle(s, dir, kids[k].task, ws) == LLMLAB_TASK_FAILED;
                    done++;
                }
            }
    }
    if (tty) {
        progress(done, n, *failed, 0, t0);
        fputc('\n', stderr);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(kids);
    if (g_stop) {
        fprintf(stderr, "llmlab sweep: interrupted; %lld of %lld tasks finished (run the same command to resume)\n",
                (long long)done, (long long)n);
        return 130;
    }
    return 0;
}

/* Prints the failed tasks with their errors. */
static void list_failures(const llmlab_sweep_spec *s, const char *dir) {
    for (int64_t t = 0; t < s->n_tasks; t++) {
        char *error = NULL, point[1024];
        if (llmlab_sweep_task_state(dir, t, &error) == LLMLAB_TASK_FAILED) {
            llmlab_sweep_point_str(s, t, point, sizeof point);
            printf("  task %lld (%s) FAILED: %s\n", (long long)t, point, error ? error : "");
        }
        free(error);
    }
}

static int run_local(const sweep_cli *c, const llmlab_sweep_spec *s, const char *dir) {
    int64_t *todo = malloc((size_t)s->n_tasks * sizeof *todo), n = 0, n_ok = 0, n_failed_before = 0, failed = 0;
    if (!todo) return 1;
    for (int64_t t = 0; t < s->n_tasks; t++) {
        llmlab_task_state st = llmlab_sweep_task_state(dir, t, NULL);
        n_ok += st == LLMLAB_TASK_OK;
        n_failed_before += st == LLMLAB_TASK_FAILED;
        if (c->retry_failed ? st == LLMLAB_TASK_FAILED : st == LLMLAB_TASK_MISSING) todo[n++] = t;
    }
    if (n_ok || (n_failed_before && !c->retry_failed))
        fprintf(stderr, "llmlab sweep %s: %lld of %lld tasks already complete%s\n", s->name, (long long)n_ok,
                (long long)s->n_tasks,
                n_failed_before && !c->retry_failed ? ", failed ones kept (rerun them with --retry-failed)" : "");
    double t0 = now_s();
    int rc = run_tasks(c, s, dir, todo, n, &failed);
    free(todo);
    double dt = now_s() - t0;
    int64_t ok = 0, bad = 0;
    for (int64_t t = 0; t < s->n_tasks; t++) {
        llmlab_task_state st = llmlab_sweep_task_state(dir, t, NULL);
        ok += st == LLMLAB_TASK_OK;
        bad += st == LLMLAB_TASK_FAILED;
    }
    printf("sweep %s: ran %lld tasks in %.1f s (%d at once); %lld of %lld ok, %lld failed; %s\n", s->name,
           (long long)n, dt, c->jobs, (long long)ok, (long long)s->n_tasks, (long long)bad, dir);
    if (bad) list_failures(s, dir);
    if (rc) return rc;
    if (!c->no_merge && ok + bad > 0) {
        char merged[4200];
        snprintf(merged, sizeof merged, "%s/merged.h5", dir);
        const char *in[] = {dir};
        llmlab_merge_stats ms;
        llmlab_err err = {0};
        if (llmlab_merge(merged, in, 1, &ms, &err)) {
            fprintf(stderr, "llmlab sweep: merging: %s\n", err.msg);
            return 1;
        }
        printf("merged into %s\n", merged);
    }
    return bad ? 1 : 0;
}

/* ---- Slurm ------------------------------------------------------------------------------- */

/* Writes s single-quoted for the shell. */
static void shq(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

/* The #SBATCH lines every job of the sweep shares (site defaults, overrides). */
static void sbatch_common(FILE *f, const llmlab_slurm_settings *sl) {
    if (sl->partition[0]) fprintf(f, "#SBATCH --partition=%s\n", sl->partition);
    if (sl->account[0]) fprintf(f, "#SBATCH --account=%s\n", sl->account);
    if (sl->qos[0]) fprintf(f, "#SBATCH --qos=%s\n", sl->qos);
    if (sl->time[0]) fprintf(f, "#SBATCH --time=%s\n", sl->time);
    if (!sl->extra[0]) return;
    /* extra: options passed verbatim; one #SBATCH line per option (a word starting
     * with '-' starts the next one, so "--constraint h100" stays together). */
    fputs("#SBATCH", f);
    const char *p = sl->extra;
    int first = 1;
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        size_t n = strcspn(p, " \t");
        if (*p == '-' && !first) fputs("\n#SBATCH", f);
        fprintf(f, " %.*s", (int)n, p);
        first = 0;
        p += n;
    }
    fputc('\n', f);
}

static int write_array_script(const sweep_cli *c, const llmlab_sweep_spec *s, const char *dir, const char *self,
                              const char *script_abs, const char *cwd, char *path, size_t cap) {
    const llmlab_slurm_settings *sl = &c->s.slurm;
    snprintf(path, cap, "%s/sweep.sbatch", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "llmlab sweep: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "#!/bin/bash\n# llmlab sweep '%s': %lld tasks, one array task each (written by llmlab sweep --slurm)\n",
            s->name, (long long)s->n_tasks);
    fprintf(f, "#SBATCH --job-name=llmlab-%s\n", s->name);
    fprintf(f, "#SBATCH --array=0-%lld%%%d\n", (long long)s->n_tasks - 1, sl->max_parallel);
    fprintf(f, "#SBATCH --output=%s/logs/slurm-%%A_%%a.out\n", dir);
    fprintf(f, "#SBATCH --chdir=%s\n", cwd);
    fprintf(f, "#SBATCH --cpus-per-task=%d\n", sl->cpus_per_task);
    if (sl->gpus > 0) fprintf(f, "#SBATCH --gpus=%d\n", sl->gpus);
    if (sl->mem[0]) fprintf(f, "#SBATCH --mem=%s\n", sl->mem);
    sbatch_common(f, sl);
    fputs("set -euo pipefail\nexec ", f);
    shq(f, self);
    fputs(" sweep ", f);
    shq(f, script_abs);
    fputs(" --task \"$SLURM_ARRAY_TASK_ID\" --out ", f);
    shq(f, dir);
    for (int i = 0; i < c->n_pass; i++) {
        fputc(' ', f);
        shq(f, c->pass[i]);
    }
    fputc('\n', f);
    return fclose(f) ? 1 : 0;
}

static int write_merge_script(const sweep_cli *c, const llmlab_sweep_spec *s, const char *dir, const char *self,
                              const char *cwd, char *path, size_t cap) {
    snprintf(path, cap, "%s/merge.sbatch", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "llmlab sweep: cannot write '%s': %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "#!/bin/bash\n# merges the task files of sweep '%s' (submitted with --dependency=afterok:<array job>)\n",
            s->name);
    fprintf(f, "#SBATCH --job-name=llmlab-%s-merge\n#SBATCH --output=%s/logs/slurm-merge-%%j.out\n", s->name, dir);
    fprintf(f, "#SBATCH --chdir=%s\n#SBATCH --cpus-per-task=1\n", cwd);
    sbatch_common(f, &c->s.slurm);
    fputs("set -euo pipefail\nexec ", f);
    shq(f, self);
    fputs(" merge ", f);
    char merged[4200];
    snprintf(merged, sizeof merged, "%s/merged.h5", dir);
    shq(f, merged);
    fputc(' ', f);
    shq(f, dir);
    fputc('\n', f);
    return fclose(f) ? 1 : 0;
}

/* Runs sbatch with args; the job id from --parsable output ("123" or "123;cluster"). */
static int sbatch(char *const *argv, char *id, size_t cap) {
    int pfd[2];
    if (pipe(pfd) < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execvp("sbatch", argv);
        fprintf(stderr, "llmlab sweep: cannot run sbatch: %s\n", strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while (pid > 0 && n + 1 < cap && (r = read(pfd[0], id + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        n += (size_t)r;
    }
    id[n] = '\0';
    close(pfd[0]);
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return -1;
    id[strcspn(id, ";\n")] = '\0';
    return id[0] ? 0 : -1;
}

static int run_slurm(const sweep_cli *c, const llmlab_sweep_spec *s, const char *dir) {
    char self[PATH_MAX], cwd[PATH_MAX], arr[4200], mrg[4200];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    char *script_abs = realpath(c->script, NULL);
    if (len <= 0 || !getcwd(cwd, sizeof cwd) || !script_abs) {
        fprintf(stderr, "llmlab sweep: cannot resolve the binary, working directory or script path\n");
        free(script_abs);
        return 1;
    }
    self[len] = '\0';
    int rc = write_array_script(c, s, dir, self, script_abs, cwd, arr, sizeof arr);
    if (!rc) rc = write_merge_script(c, s, dir, self, cwd, mrg, sizeof mrg);
    free(script_abs);
    if (rc) return rc;
    printf("wrote %s (%lld array tasks, at most %d at once)\nwrote %s\n", arr, (long long)s->n_tasks,
           c->s.slurm.max_parallel, mrg);
    if (!c->submit) {
        printf("submit with: jid=$(sbatch --parsable %s) && sbatch --dependency=afterok:$jid %s\n", arr, mrg);
        return 0;
    }
    char id1[128], id2[128], dep[200];
    char *a1[] = {"sbatch", "--parsable", arr, NULL};
    if (sbatch(a1, id1, sizeof id1)) {
        fprintf(stderr, "llmlab sweep: sbatch %s failed\n", arr);
        return 1;
    }
    snprintf(dep, sizeof dep, "--dependency=afterok:%s", id1);
    char *a2[] = {"sbatch", "--parsable", dep, mrg, NULL};
    if (sbatch(a2, id2, sizeof id2)) {
        fprintf(stderr, "llmlab sweep: sbatch %s failed (the array job %s is queued)\n", mrg, id1);
        return 1;
    }
    printf("array job: %s\nmerge job: %s\n", id1, id2);
    return 0;
}

/* ---- the command ------------------------------------------------------------------------- */

static int sweep_main(sweep_cli *c) {
    if (c->task >= 0) return run_one_task(c);
    llmlab_lua_sweep_req sw;
    int rc = plan(c, &sw);
    if (rc) {
        llmlab_sweep_free(&sw.spec);
        return rc;
    }
    char dir[4096];
    llmlab_err err = {0};
    llmlab_sweep_dir(c->s.results_dir, c->out, sw.spec.name, dir, sizeof dir);
    if (llmlab_sweep_mkdirs(dir, &err) || llmlab_sweep_write_json(dir, &sw.spec, &err)) {
        fprintf(stderr, "llmlab sweep: %s\n", err.msg);
        llmlab_sweep_free(&sw.spec);
        return 1;
    }
    char *abs = realpath(dir, NULL); /* tasks and Slurm jobs get an absolute directory */
    if (c->status) rc = print_status(&sw.spec, abs ? abs : dir);
    else if (c->slurm) rc = run_slurm(c, &sw.spec, abs ? abs : dir);
    else rc = run_local(c, &sw.spec, abs ? abs : dir);
    free(abs);
    llmlab_sweep_free(&sw.spec);
    return rc;
}

int llmlab_cmd_sweep(int argc, char **argv) {
    sweep_cli c;
    memset(&c, 0, sizeof c);
    char *config_abs = NULL;
    int rc = parse(&c, argc, argv, &config_abs);
    if (rc == 0) rc = sweep_main(&c);
    llmlab_registry_free(c.reg);
    llmlab_settings_free(&c.s);
    free(c.sets);
    free(c.pass);
    free(config_abs);
    return rc == -2 ? 0 : rc;
}
