/* test_settings.c - llmlab.ini site settings: defaults, a full file, every error
 * with its line number and key, precedence INI < command line < Lua, lookup order,
 * LLMLAB_PLUGIN_PATH, and the to_ini round trip. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/settings.h"
#include "util/fsutil.h"

static char *tmp_dir;

static void setup(void) {
    tmp_dir = fsu_mkdtemp();
    cr_assert(tmp_dir, "cannot create a temp dir");
}

static void teardown(void) {
    fsu_rmtree(tmp_dir);
    free(tmp_dir);
    tmp_dir = NULL;
}

TestSuite(settings, .init = setup, .fini = teardown);

/* Writes text to tmp_dir/name; returns the malloc'd path. */
static char *write_ini(const char *name, const char *text) {
    char *path = fsu_join(tmp_dir, name);
    cr_assert(path);
    cr_assert_eq(fsu_write(path, text, strlen(text)), 0, "cannot write %s", path);
    return path;
}

/* Loads text expecting code; the message must start with "path:line: " (line > 0)
 * and contain each needle (NULL-terminated list). */
static void expect_load_err(const char *text, llmlab_status code, int line, ...) {
    char *path = write_ini("bad.ini", text);
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    llmlab_status st = llmlab_settings_load_file(&s, path, &e);
    cr_assert_eq(st, code, "status %d (want %d): %s", st, code, e.msg);
    cr_assert_eq(e.code, code);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    cr_assert(!strncmp(e.msg, prefix, strlen(prefix)), "message '%s' does not start with '%s'",
              e.msg, prefix);
    va_list ap;
    va_start(ap, line);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
    va_end(ap);
    llmlab_settings_free(&s);
    free(path);
}

/* set() expecting EINVAL with needle in the message and s unchanged. */
static void expect_set_err(const char *key, const char *value, const char *needle) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    cr_assert_eq(llmlab_settings_set(&s, "slurm.time", "02:00:00", NULL), LLMLAB_OK);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_set(&s, key, value, &e), LLMLAB_EINVAL, "%s=%s accepted", key,
                 value);
    cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
    cr_assert_str_eq(s.slurm.time, "02:00:00");
    cr_assert_eq(s.threads, 0);
    llmlab_settings_free(&s);
}

static void expect_set_ok(const char *key, const char *value) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_set(&s, key, value, &e), LLMLAB_OK, "%s=%s: %s", key, value,
                 e.msg);
    llmlab_settings_free(&s);
}

static const char *FULL =
    "; site settings\n"
    "# another comment\n"
    "[llmlab]\n"
    "backend = cuda\n"
    "device = 1\n"
    "  threads = 8   ; indented, with an inline comment\n"
    "plugin_path = /opt/llmlab/plugins:/home/me/plugins\n"
    "results_dir = /scratch/me/results\n"
    "kv_block_size = 32\n"
    "deterministic = yes\n"
    "\n"
    "[slurm]\n"
    "partition = gpu\n"
    "account = proj42\n"
    "time = 1-12:30:00\n"
    "gpus = 2\n"
    "cpus_per_task = 16\n"
    "mem = 64G\n"
    "max_parallel = 8\n"
    "qos = high\n"
    "extra = --constraint=h100 --exclusive\n";

static void check_full(const llmlab_settings *s) {
    cr_assert_str_eq(s->backend, "cuda");
    cr_assert_eq(s->device, 1);
    cr_assert_eq(s->threads, 8);
    cr_assert_str_eq(s->plugin_path, "/opt/llmlab/plugins:/home/me/plugins");
    cr_assert_str_eq(s->results_dir, "/scratch/me/results");
    cr_assert_eq(s->kv_block_size, 32);
    cr_assert(s->deterministic);
    cr_assert_str_eq(s->slurm.partition, "gpu");
    cr_assert_str_eq(s->slurm.account, "proj42");
    cr_assert_str_eq(s->slurm.time, "1-12:30:00");
    cr_assert_eq(s->slurm.gpus, 2);
    cr_assert_eq(s->slurm.cpus_per_task, 16);
    cr_assert_str_eq(s->slurm.mem, "64G");
    cr_assert_eq(s->slurm.max_parallel, 8);
    cr_assert_str_eq(s->slurm.qos, "high");
    cr_assert_str_eq(s->slurm.extra, "--constraint=h100 --exclusive");
}

/* Every field of a and b is equal. */
static void check_same(const llmlab_settings *a, const llmlab_settings *b) {
    cr_assert_str_eq(a->backend, b->backend);
    cr_assert_eq(a->device, b->device);
    cr_assert_eq(a->threads, b->threads);
    cr_assert_str_eq(a->plugin_path, b->plugin_path);
    cr_assert_str_eq(a->results_dir, b->results_dir);
    cr_assert_eq(a->kv_block_size, b->kv_block_size);
    cr_assert_eq(a->deterministic, b->deterministic);
    cr_assert_str_eq(a->slurm.partition, b->slurm.partition);
    cr_assert_str_eq(a->slurm.account, b->slurm.account);
    cr_assert_str_eq(a->slurm.time, b->slurm.time);
    cr_assert_eq(a->slurm.gpus, b->slurm.gpus);
    cr_assert_eq(a->slurm.cpus_per_task, b->slurm.cpus_per_task);
    cr_assert_str_eq(a->slurm.mem, b->slurm.mem);
    cr_assert_eq(a->slurm.max_parallel, b->slurm.max_parallel);
    cr_assert_str_eq(a->slurm.qos, b->slurm.qos);
    cr_assert_str_eq(a->slurm.extra, b->slurm.extra);
}

/* ---- defaults and a valid file ------------------------------------------------ */

Test(settings, defaults) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    cr_assert_str_eq(s.backend, "cpu");
    cr_assert_eq(s.device, 0);
    cr_assert_eq(s.threads, 0);
    cr_assert_str_eq(s.plugin_path, "");
    cr_assert_str_eq(s.results_dir, "results");
    cr_assert_eq(s.kv_block_size, 16);
    cr_assert(!s.deterministic);
    cr_assert_str_eq(s.slurm.partition, "");
    cr_assert_str_eq(s.slurm.account, "");
    cr_assert_str_eq(s.slurm.time, "01:00:00");
    cr_assert_eq(s.slurm.gpus, 0);
    cr_assert_eq(s.slurm.cpus_per_task, 1);
    cr_assert_str_eq(s.slurm.mem, "");
    cr_assert_eq(s.slurm.max_parallel, 1);
    cr_assert_str_eq(s.slurm.qos, "");
    cr_assert_str_eq(s.slurm.extra, "");
    llmlab_settings_free(&s);
    llmlab_settings_free(&s); /* twice is fine */
}

Test(settings, full_file) {
    char *path = write_ini("llmlab.ini", FULL);
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, path, &e), LLMLAB_OK, "%s", e.msg);
    check_full(&s);
    llmlab_settings_free(&s);
    cr_assert_str_eq(s.results_dir, "results", "free resets to the defaults");
    free(path);
}

Test(settings, partial_file_keeps_defaults_and_last_value_wins) {
    char *path = write_ini("p.ini", "[slurm]\r\ngpus = 1\r\n[llmlab]\r\nthreads = 2\r\n"
                                    "threads = 3\r\n[slurm]\r\nmem = 512\r\n");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, path, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(s.threads, 3);
    cr_assert_eq(s.slurm.gpus, 1);
    cr_assert_str_eq(s.slurm.mem, "512");
    cr_assert_str_eq(s.backend, "cpu");
    cr_assert_str_eq(s.slurm.time, "01:00:00");
    llmlab_settings_free(&s);
    free(path);
}

Test(settings, booleans) {
    const char *yes[] = {"true", "yes", "1", "on", "TRUE", "On"};
    const char *no[] = {"false", "no", "0", "off", "False", "OFF"};
    for (int i = 0; i < 6; i++) {
        llmlab_settings s;
        llmlab_settings_defaults(&s);
        cr_assert_eq(llmlab_settings_set(&s, "deterministic", yes[i], NULL), LLMLAB_OK);
        cr_assert(s.deterministic, "%s", yes[i]);
        cr_assert_eq(llmlab_settings_set(&s, "llmlab.deterministic", no[i], NULL), LLMLAB_OK);
        cr_assert(!s.deterministic, "%s", no[i]);
    }
}

/* ---- file errors: line numbers and key names ------------------------------------ */

Test(settings, unknown_key_line_3) {
    expect_load_err("[llmlab]\nthreads = 2\nthread = 4\n", LLMLAB_EINVAL, 3, "'thread'",
                    "[llmlab]", "threads", "kv_block_size", NULL);
}

Test(settings, bad_int_line_5) {
    expect_load_err("; c\n[llmlab]\nbackend = cpu\ndevice = 0\nthreads = four\n", LLMLAB_EINVAL,
                    5, "threads", "'four'", "integer from 0 to", NULL);
}

Test(settings, int_out_of_range) {
    expect_load_err("[llmlab]\nthreads = -1\n", LLMLAB_EINVAL, 2, "threads", "'-1'", NULL);
    expect_load_err("[llmlab]\n\nkv_block_size = 0\n", LLMLAB_EINVAL, 3, "kv_block_size",
                    "from 1 to", NULL);
    expect_load_err("[slurm]\ncpus_per_task = 0\n", LLMLAB_EINVAL, 2, "slurm.cpus_per_task",
                    NULL);
    expect_load_err("[slurm]\nmax_parallel = 0\n", LLMLAB_EINVAL, 2, "slurm.max_parallel", NULL);
    expect_load_err("[slurm]\ngpus = -2\n", LLMLAB_EINVAL, 2, "slurm.gpus", NULL);
    expect_load_err("[llmlab]\ndevice = 99999999999999999999\n", LLMLAB_EINVAL, 2, "device",
                    NULL);
    expect_load_err("[llmlab]\ndevice = 1.5\n", LLMLAB_EINVAL, 2, "device", NULL);
    expect_load_err("[llmlab]\ndevice =\n", LLMLAB_EINVAL, 2, "device", NULL);
}

Test(settings, bad_bool) {
    expect_load_err("[llmlab]\ndeterministic = maybe\n", LLMLAB_EINVAL, 2, "deterministic",
                    "'maybe'", "true, false, yes, no, 1, 0, on, off", NULL);
}

Test(settings, bad_backend_lists_allowed) {
    expect_load_err("[llmlab]\n\n\nbackend = gpu\n", LLMLAB_EINVAL, 4, "backend", "'gpu'",
                    "cpu, cuda", NULL);
}

Test(settings, unknown_section) {
    expect_load_err("[llmlab]\nthreads = 1\n[slurmm]\npartition = x\n", LLMLAB_EINVAL, 3,
                    "[slurmm]", "[llmlab], [slurm]", NULL);
    /* Even when it holds no key. */
    expect_load_err("[llmlab]\n[extras]\n", LLMLAB_EINVAL, 2, "[extras]", NULL);
}

Test(settings, key_outside_section) {
    expect_load_err("; top\nthreads = 4\n[llmlab]\n", LLMLAB_EINVAL, 2, "'threads'",
                    "outside any section", "[llmlab]", NULL);
}

Test(settings, syntax_errors) {
    expect_load_err("[llmlab]\nthreads = 2\njust some words\n", LLMLAB_EINVAL, 3,
                    "syntax error", "just some words", NULL);
    expect_load_err("[llmlab\nthreads = 2\n", LLMLAB_EINVAL, 1, "syntax error", NULL);
    /* A syntax error before a bad value is the one reported. */
    expect_load_err("[llmlab]\noops\nthreads = x\n", LLMLAB_EINVAL, 2, "syntax error", NULL);
    /* And a bad value before a syntax error. */
    expect_load_err("[llmlab]\nthreads = x\noops\n", LLMLAB_EINVAL, 2, "threads", NULL);
}

Test(settings, line_too_long) {
    char text[600];
    int n = snprintf(text, sizeof text, "[slurm]\nextra = ");
    memset(text + n, 'x', 300);
    snprintf(text + n + 300, sizeof text - (size_t)n - 300, "\n");
    expect_load_err(text, LLMLAB_EINVAL, 2, "line too long", NULL);
}

Test(settings, bad_slurm_time) {
    const char *bad[] = {"1:00:00:00", "abc", "01:60:00", "1-24", "1-", "00:00:00",
                         "0",          "-5",  "1:2:3:4",  "1h", "12:75"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[slurm]\npartition = gpu\ntime = %s\n", bad[i]);
        expect_load_err(text, LLMLAB_EINVAL, 3, "slurm.time", bad[i], "D-HH:MM:SS", NULL);
    }
    const char *good[] = {"30", "30:15", "01:00:00", "100:00:00", "1-00:00:00", "2-12",
                          "2-12:30", "INFINITE", "unlimited"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_set_ok("slurm.time", good[i]);
}

Test(settings, bad_slurm_mem) {
    const char *bad[] = {"16GB", "G", "16 G", "-1G", "1.5G", "16X", "1234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[slurm]\n\nmem = %s\n", bad[i]);
        expect_load_err(text, LLMLAB_EINVAL, 3, "slurm.mem", "16G", NULL);
    }
    const char *good[] = {"16G", "512", "1024M", "2T", "64g", "0", ""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) expect_set_ok("slurm.mem", good[i]);
}

Test(settings, bad_names) {
    expect_load_err("[slurm]\npartition = gpu a100\n", LLMLAB_EINVAL, 2, "slurm.partition",
                    "without spaces", NULL);
    expect_load_err("[llmlab]\nresults_dir =\n", LLMLAB_EINVAL, 2, "results_dir", "non-empty",
                    NULL);
}

Test(settings, missing_file_is_eio) {
    char *path = fsu_join(tmp_dir, "nope.ini");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, path, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, path), "message '%s' lacks the path", e.msg);
    /* A directory cannot be read either. */
    cr_assert_eq(llmlab_settings_load_file(&s, tmp_dir, &e), LLMLAB_EIO, "%s", e.msg);
    cr_assert(strstr(e.msg, tmp_dir));
    free(path);
}

/* ---- set() --------------------------------------------------------------------- */

Test(settings, set_errors_leave_settings_unchanged) {
    expect_set_err("thread", "4", "unknown setting 'thread'");
    expect_set_err("slurm.threads", "4", "slurm.partition");
    expect_set_err("nosuch.threads", "4", "unknown setting");
    expect_set_err("threads", "many", "threads: bad value 'many'");
    expect_set_err("slurm.time", "25:99", "slurm.time");
    expect_set_err("backend", "tpu", "cpu, cuda");
    expect_set_err("slurm.extra", "--a\n--b", "control characters");
    expect_set_err("plugin_path", "/a ;/b", "INI comment");
}

Test(settings, set_trims_and_replaces_strings) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    cr_assert_eq(llmlab_settings_set(&s, "threads", "  12 ", NULL), LLMLAB_OK);
    cr_assert_eq(s.threads, 12);
    for (int i = 0; i < 5; i++) /* ASan checks the old strings are freed */
        cr_assert_eq(llmlab_settings_set(&s, "slurm.partition", i % 2 ? "a" : "bb", NULL),
                     LLMLAB_OK);
    cr_assert_str_eq(s.slurm.partition, "bb");
    cr_assert_eq(llmlab_settings_set(&s, "results_dir", " out ", NULL), LLMLAB_OK);
    cr_assert_str_eq(s.results_dir, "out");
    llmlab_settings_free(&s);
}

/* ---- precedence: INI < command line < Lua --------------------------------------- */

Test(settings, precedence_ini_cli_lua) {
    char *path = write_ini("llmlab.ini",
                           "[llmlab]\nthreads = 4\nbackend = cuda\n[slurm]\npartition = ini\n");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, path, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(s.threads, 4);
    /* Command line: --threads 8 --slurm-partition cli */
    cr_assert_eq(llmlab_settings_set(&s, "threads", "8", &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_settings_set(&s, "slurm.partition", "cli", &e), LLMLAB_OK);
    /* Lua: settings { threads = 2 } */
    cr_assert_eq(llmlab_settings_set(&s, "llmlab.threads", "2", &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(s.threads, 2, "Lua wins over the command line and the INI");
    cr_assert_str_eq(s.slurm.partition, "cli", "the command line wins over the INI");
    cr_assert_str_eq(s.backend, "cuda", "INI wins over the defaults");
    cr_assert_eq(s.kv_block_size, 16, "untouched keys keep their defaults");
    llmlab_settings_free(&s);
    free(path);
}

/* ---- lookup order ----------------------------------------------------------------- */

typedef struct {
    char cwd[4096];
    char *home, *xdg; /* saved values, NULL = was unset */
} saved_env;

static char *dup_env(const char *name) {
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

static void restore_var(const char *name, char *v) {
    if (v) setenv(name, v, 1);
    else unsetenv(name);
    free(v);
}

static void save_env(saved_env *sv) {
    cr_assert(getcwd(sv->cwd, sizeof sv->cwd));
    sv->home = dup_env("HOME");
    sv->xdg = dup_env("XDG_CONFIG_HOME");
}

static void restore_env(saved_env *sv) {
    cr_assert_eq(chdir(sv->cwd), 0);
    restore_var("HOME", sv->home);
    restore_var("XDG_CONFIG_HOME", sv->xdg);
}

/* Makes tmp_dir/rel (and parents) and writes an INI setting threads = n there. */
static char *make_config(const char *rel_dir, int threads) {
    char cmd_dir[4096];
    snprintf(cmd_dir, sizeof cmd_dir, "%s/%s", tmp_dir, rel_dir);
    for (char *p = cmd_dir + strlen(tmp_dir) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(cmd_dir, 0700);
        *p = '/';
    }
    mkdir(cmd_dir, 0700);
    char text[64], *path = NULL;
    snprintf(text, sizeof text, "[llmlab]\nthreads = %d\n", threads);
    cr_assert(asprintf(&path, "%s/llmlab.ini", cmd_dir) > 0);
    cr_assert_eq(fsu_write(path, text, strlen(text)), 0);
    return path;
}

/* find() and return the threads value loaded; used_path goes to used. */
static int find_threads(const char *explicit_path, char *used, size_t cap) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_find(&s, explicit_path, used, cap, &e), LLMLAB_OK, "%s", e.msg);
    int t = s.threads;
    llmlab_settings_free(&s);
    return t;
}

Test(settings, lookup_order) {
    saved_env sv;
    save_env(&sv);
    char used[4096];
    char *work = fsu_join(tmp_dir, "work");
    char *home = fsu_join(tmp_dir, "home");
    char *xdg = fsu_join(tmp_dir, "xdg");
    cr_assert_eq(mkdir(work, 0700), 0);
    cr_assert_eq(chdir(work), 0);
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");

    /* Nothing anywhere: defaults, used_path "". */
    cr_assert_eq(find_threads(NULL, used, sizeof used), 0);
    cr_assert_str_eq(used, "");

    /* $HOME/.config/llmlab/llmlab.ini */
    char *home_ini = make_config("home/.config/llmlab", 3);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 3);
    cr_assert_str_eq(used, home_ini);

    /* $XDG_CONFIG_HOME replaces $HOME/.config when set... */
    setenv("XDG_CONFIG_HOME", xdg, 1);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 0, "XDG dir has no file");
    char *xdg_ini = make_config("xdg/llmlab", 5);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 5);
    cr_assert_str_eq(used, xdg_ini);
    /* ...unless empty or relative. */
    setenv("XDG_CONFIG_HOME", "", 1);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 3);
    setenv("XDG_CONFIG_HOME", "relative/dir", 1);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 3);
    setenv("XDG_CONFIG_HOME", xdg, 1);

    /* ./llmlab.ini beats the user file. */
    char *cwd_ini = make_config("work", 7);
    cr_assert_eq(find_threads(NULL, used, sizeof used), 7);
    cr_assert_str_eq(used, "./llmlab.ini");

    /* --config beats everything; "" means none given. */
    char *explicit_ini = make_config("elsewhere", 9);
    cr_assert_eq(find_threads(explicit_ini, used, sizeof used), 9);
    cr_assert_str_eq(used, explicit_ini);
    cr_assert_eq(find_threads("", NULL, 0), 7);

    restore_env(&sv);
    free(work), free(home), free(xdg);
    free(home_ini), free(xdg_ini), free(cwd_ini), free(explicit_ini);
}

Test(settings, lookup_explicit_must_exist) {
    char *path = fsu_join(tmp_dir, "missing.ini");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    char used[4096];
    cr_assert_eq(llmlab_settings_find(&s, path, used, sizeof used, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, path), "%s", e.msg);
    /* used_path too small */
    char *ok = make_config("cfg", 2);
    char tiny[4];
    cr_assert_eq(llmlab_settings_find(&s, ok, tiny, sizeof tiny, &e), LLMLAB_EINVAL);
    cr_assert_eq(s.threads, 0, "nothing loaded when used_path does not fit");
    free(path), free(ok);
}

Test(settings, lookup_reports_errors_of_found_file) {
    saved_env sv;
    save_env(&sv);
    cr_assert_eq(chdir(tmp_dir), 0);
    char *path = write_ini("llmlab.ini", "[llmlab]\nbogus = 1\n");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_find(&s, NULL, NULL, 0, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, "./llmlab.ini:2: "), "%s", e.msg);
    cr_assert(strstr(e.msg, "'bogus'"), "%s", e.msg);
    llmlab_settings_free(&s);
    restore_env(&sv);
    free(path);
}

/* ---- environment ------------------------------------------------------------------ */

Test(settings, env_plugin_path_appended) {
    char *saved = dup_env(LLMLAB_SETTINGS_ENV_PLUGIN_PATH);
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};

    unsetenv(LLMLAB_SETTINGS_ENV_PLUGIN_PATH);
    cr_assert_eq(llmlab_settings_apply_env(&s, &e), LLMLAB_OK);
    cr_assert_str_eq(s.plugin_path, "");

    setenv(LLMLAB_SETTINGS_ENV_PLUGIN_PATH, "/env/a:/env/b", 1);
    cr_assert_eq(llmlab_settings_apply_env(&s, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(s.plugin_path, "/env/a:/env/b", "no leading ':' when INI had none");

    cr_assert_eq(llmlab_settings_set(&s, "plugin_path", "/ini/p", &e), LLMLAB_OK);
    cr_assert_eq(llmlab_settings_apply_env(&s, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(s.plugin_path, "/ini/p:/env/a:/env/b", "INI/CLI first, then env");

    setenv(LLMLAB_SETTINGS_ENV_PLUGIN_PATH, "", 1);
    cr_assert_eq(llmlab_settings_apply_env(&s, &e), LLMLAB_OK);
    cr_assert_str_eq(s.plugin_path, "/ini/p:/env/a:/env/b", "empty env changes nothing");

    setenv(LLMLAB_SETTINGS_ENV_PLUGIN_PATH, "/x\n/y", 1);
    cr_assert_eq(llmlab_settings_apply_env(&s, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, LLMLAB_SETTINGS_ENV_PLUGIN_PATH), "%s", e.msg);

    llmlab_settings_free(&s);
    restore_var(LLMLAB_SETTINGS_ENV_PLUGIN_PATH, saved);
}

/* ---- writing back ------------------------------------------------------------------ */

static void round_trip(const llmlab_settings *a) {
    char *path = fsu_join(tmp_dir, "out.ini");
    FILE *f = fopen(path, "w");
    cr_assert(f);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_to_ini(a, f, &e), LLMLAB_OK, "%s", e.msg);
    fclose(f);
    llmlab_settings b;
    llmlab_settings_defaults(&b);
    /* Start b away from a so every key must come from the file. */
    cr_assert_eq(llmlab_settings_set(&b, "slurm.time", "5", NULL), LLMLAB_OK);
    cr_assert_eq(llmlab_settings_set(&b, "slurm.qos", "other", NULL), LLMLAB_OK);
    cr_assert_eq(llmlab_settings_load_file(&b, path, &e), LLMLAB_OK, "%s", e.msg);
    check_same(a, &b);
    llmlab_settings_free(&b);
    free(path);
}

Test(settings, round_trip_full_and_defaults) {
    char *path = write_ini("llmlab.ini", FULL);
    llmlab_settings a;
    llmlab_settings_defaults(&a);
    cr_assert_eq(llmlab_settings_load_file(&a, path, NULL), LLMLAB_OK);
    round_trip(&a);
    llmlab_settings_free(&a);
    round_trip(&a); /* the defaults, with empty strings */
    free(path);
}

Test(settings, to_ini_rejects_too_long_value) {
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    char dirs[400];
    memset(dirs, 'd', sizeof dirs - 1);
    dirs[sizeof dirs - 1] = '\0';
    cr_assert_eq(llmlab_settings_set(&s, "plugin_path", dirs, NULL), LLMLAB_OK);
    FILE *f = tmpfile();
    cr_assert(f);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_to_ini(&s, f, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, "plugin_path"), "%s", e.msg);
    fclose(f);
    llmlab_settings_free(&s);
}

/* ---- the shipped example and small syntax points ------------------------------------- */

Test(settings, example_file_is_valid_and_all_defaults) {
    llmlab_settings s, d;
    llmlab_settings_defaults(&s);
    llmlab_settings_defaults(&d);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, LLMLAB_TEST_DATA "/../../llmlab.ini.example", &e),
                 LLMLAB_OK, "%s", e.msg);
    check_same(&s, &d);
    llmlab_settings_free(&s);
}

Test(settings, bom_and_colon_separator) {
    char *path = write_ini("b.ini", "\xef\xbb\xbf[llmlab]\nthreads: 3\n[slurm]\ntime: 10:00\n");
    llmlab_settings s;
    llmlab_settings_defaults(&s);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_settings_load_file(&s, path, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(s.threads, 3);
    cr_assert_str_eq(s.slurm.time, "10:00");
    llmlab_settings_free(&s);
    free(path);
}
