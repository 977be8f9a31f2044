/* test_results.c - the HDF5 results file: round trips on fresh random values,
 * independent checks with h5dump (and h5py when present), refusals with clear
 * messages, and crash / full-disk safety of the writer (SIGKILL mid-write,
 * RLIMIT_FSIZE). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/results.h"
#include "util/fsutil.h"
#include "util/tmpdir.h"

static char *dir;

static void setup(void) { dir = tmpdir_make(); }

static void teardown(void) { tmpdir_remove(dir); }

TestSuite(results, .init = setup, .fini = teardown);

/* ---- random data ------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec;
    return splitmix(&s);
}

static const char *const SAMPLES[] = {"", "héllo wörld", "日本語のテキスト", "emoji 🚀 ok",
                                      "quote ' and \" and \\", "tab\tand\nnewline"};

/* The values of one run: attributes and a requests table of n rows. */
typedef struct {
    size_t n;
    int64_t *id, *out_len;
    double *arrival;
    char **prompt;
    int64_t seed_attr, k;
    double temperature;
    char *script; /* ~100 KB, larger than HDF5's 64 KB compact-attribute limit */
} run_data;

static run_data make_data(uint64_t seed, size_t n) {
    run_data d = {.n = n};
    d.id = malloc((n + 1) * sizeof *d.id);
    d.out_len = malloc((n + 1) * sizeof *d.out_len);
    d.arrival = malloc((n + 1) * sizeof *d.arrival);
    d.prompt = malloc((n + 1) * sizeof *d.prompt);
    cr_assert(d.id && d.out_len && d.arrival && d.prompt);
    for (size_t r = 0; r < n; r++) {
        d.id[r] = (int64_t)splitmix(&seed);
        d.out_len[r] = (int64_t)(splitmix(&seed) % 5000);
        d.arrival[r] = (double)(splitmix(&seed) >> 11) * 0x1p-53 * 1e4 - 5e3;
        char buf[96];
        size_t which = splitmix(&seed) % 8;
        if (which < 6)
            snprintf(buf, sizeof buf, "%s", SAMPLES[which]);
        else
            snprintf(buf, sizeof buf, "row %zu ü %016" PRIx64, r, splitmix(&seed));
        d.prompt[r] = strdup(buf);
    }
    if (n > 3) {
        d.arrival[0] = NAN;
        d.arrival[1] = -0.0;
        d.arrival[2] = INFINITY;
        d.id[3] = INT64_MIN;
    }
    d.seed_attr = (int64_t)splitmix(&seed);
    d.k = (int64_t)(splitmix(&seed) % 100);
    d.temperature = (double)(splitmix(&seed) >> 11) * 0x1p-53;
    size_t len = 100000;
    d.script = malloc(len + 1);
    for (size_t k = 0; k < len; k++) d.script[k] = (char)('a' + splitmix(&seed) % 26);
    memcpy(d.script, "-- ü\n", 6);
    d.script[len] = '\0';
    return d;
}

static void free_data(run_data *d) {
    for (size_t r = 0; r < d->n; r++) free(d->prompt[r]);
    free(d->id);
    free(d->out_len);
    free(d->arrival);
    free(d->prompt);
    free(d->script);
}

/* Asserts that call (which reports into the llmlab_err `e` in scope) succeeds. */
#define OK(call)                                                                            \
    do {                                                                                    \
        llmlab_status s_ = (call);                                                          \
        cr_assert_eq(s_, LLMLAB_OK, "%s failed (%d): %s", #call, s_, e.msg);                \
    } while (0)

/* A run holding d: attributes of every type (top level and nested), a requests table
 * filled row-wise, a steps table filled column-wise, a one-row summary and an empty
 * table. */
static llmlab_run *build_run(const char *name, const run_data *d) {
    llmlab_err e = {0};
    llmlab_run *run = llmlab_run_create(name, &e);
    cr_assert(run, "%s", e.msg);
    OK(llmlab_run_attr_int(run, "seed", d->seed_attr, &e));
    OK(llmlab_run_attr_str(run, "backend", "cpu", &e));
    OK(llmlab_run_attr_str(run, "empty", "", &e));
    OK(llmlab_run_attr_str(run, "script", d->script, &e));
    OK(llmlab_run_attr_str(run, "settings/decoding/name", "autoregressive", &e));
    OK(llmlab_run_attr_double(run, "settings/decoding/temperature", 99.0, &e));
    OK(llmlab_run_attr_double(run, "settings/decoding/temperature", d->temperature, &e));
    OK(llmlab_run_attr_int(run, "settings/decoding/k", d->k, &e));
    OK(llmlab_run_attr_str(run, "settings/sched/name", "continuous", &e));

    llmlab_table *req = llmlab_run_table(run, "requests", &e);
    cr_assert(req, "%s", e.msg);
    OK(llmlab_table_column(req, "id", LLMLAB_COL_INT, NULL, &e));
    OK(llmlab_table_column(req, "arrival_s", LLMLAB_COL_DOUBLE, "s", &e));
    OK(llmlab_table_column(req, "prompt", LLMLAB_COL_STR, NULL, &e));
    for (size_t r = 0; r < d->n; r++) {
        OK(llmlab_table_append_int(req, "id", d->id[r], &e));
        OK(llmlab_table_append_double(req, "arrival_s", d->arrival[r], &e));
        OK(llmlab_table_append_str(req, "prompt", d->prompt[r], &e));
        OK(llmlab_table_append_int(req, "output_len", d->out_len[r], &e)); /* auto-declared */
    }
    cr_assert_eq(llmlab_table_rows(req), d->n);

    llmlab_table *steps = llmlab_run_table(run, "steps", &e);
    cr_assert(steps, "%s", e.msg);
    OK(llmlab_table_append_ints(steps, "step", d->out_len, d->n, &e));
    OK(llmlab_table_append_doubles(steps, "time_s", d->arrival, d->n, &e));

    llmlab_table *sum = llmlab_run_table(run, "summary", &e);
    cr_assert(sum, "%s", e.msg);
    OK(llmlab_table_append_int(sum, "requests", (int64_t)d->n, &e));
    OK(llmlab_table_append_double(sum, "tokens_per_s", d->temperature * 1000, &e));
    OK(llmlab_table_append_str(sum, "note", "ünïcode", &e));

    llmlab_table *none = llmlab_run_table(run, "tokens", &e);
    cr_assert(none, "%s", e.msg);
    cr_assert_eq(llmlab_run_table(run, "tokens", &e), none, "tables are created once");
    OK(llmlab_table_column(none, "request", LLMLAB_COL_INT, NULL, &e));
    OK(llmlab_table_column(none, "time_s", LLMLAB_COL_DOUBLE, "s", &e));
    return run;
}

static void write_ok(const char *path, const llmlab_run *run) {
    llmlab_err e = {0};
    llmlab_status st = llmlab_results_write(path, run, &e);
    cr_assert_eq(st, LLMLAB_OK, "write '%s': %s", llmlab_run_name(run), e.msg);
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Reads run name back and compares everything with d. */
static void check_run(const char *path, const char *name, const run_data *d) {
    llmlab_err e = {0};
    int64_t i;
    double x;
    char *s;
    OK(llmlab_results_attr_int(path, name, "seed", &i, &e));
    cr_assert_eq(i, d->seed_attr);
    OK(llmlab_results_attr_int(path, name, "settings/decoding/k", &i, &e));
    cr_assert_eq(i, d->k);
    OK(llmlab_results_attr_double(path, name, "settings/decoding/k", &x, &e));
    cr_assert_eq(x, (double)d->k);
    OK(llmlab_results_attr_double(path, name, "settings/decoding/temperature", &x, &e));
    cr_assert(same_double(x, d->temperature), "temperature %.17g vs %.17g", x, d->temperature);
    OK(llmlab_results_attr_int(path, name, "schema_version", &i, &e));
    cr_assert_eq(i, 1);
    OK(llmlab_results_attr_int(path, name, "complete", &i, &e));
    cr_assert_eq(i, 1);
    const char *strs[][2] = {{"backend", "cpu"},
                             {"empty", ""},
                             {"name", name},
                             {"llmlab_version", LLMLAB_VERSION_STRING},
                             {"settings/decoding/name", "autoregressive"},
                             {"settings/sched/name", "continuous"},
                             {"script", d->script}};
    for (size_t k = 0; k < sizeof strs / sizeof *strs; k++) {
        llmlab_status st = llmlab_results_attr_str(path, name, strs[k][0], &s, &e);
        cr_assert_eq(st, LLMLAB_OK, "%s: %s", strs[k][0], e.msg);
        cr_assert_str_eq(s, strs[k][1], "attribute %s", strs[k][0]);
        free(s);
    }
    OK(llmlab_results_attr_str(path, name, "git_commit", &s, &e));
    cr_assert(s[0], "git_commit is filled in by the writer");
    free(s);

    char **cols;
    size_t nc;
    OK(llmlab_results_columns(path, name, "requests", &cols, &nc, &e));
    const char *want[] = {"id", "arrival_s", "prompt", "output_len"};
    cr_assert_eq(nc, 4);
    for (size_t c = 0; c < 4; c++) cr_assert_str_eq(cols[c], want[c]);
    llmlab_results_free_strs(cols, nc);

    int64_t *iv;
    double *dv;
    char **sv;
    size_t n;
    OK(llmlab_results_column_int(path, name, "requests", "id", &iv, &n, &e));
    cr_assert_eq(n, d->n);
    for (size_t r = 0; r < n; r++) cr_assert_eq(iv[r], d->id[r], "id row %zu", r);
    free(iv);
    OK(llmlab_results_column_int(path, name, "requests", "output_len", &iv, &n, &e));
    for (size_t r = 0; r < n; r++) cr_assert_eq(iv[r], d->out_len[r], "output_len row %zu", r);
    free(iv);
    OK(llmlab_results_column_double(path, name, "requests", "output_len", &dv, &n, &e));
    for (size_t r = 0; r < n; r++) cr_assert_eq(dv[r], (double)d->out_len[r]);
    free(dv);
    OK(llmlab_results_column_double(path, name, "requests", "arrival_s", &dv, &n, &e));
    for (size_t r = 0; r < n; r++)
        cr_assert(same_double(dv[r], d->arrival[r]), "arrival row %zu: %g vs %g", r, dv[r],
                  d->arrival[r]);
    free(dv);
    OK(llmlab_results_column_str(path, name, "requests", "prompt", &sv, &n, &e));
    cr_assert_eq(n, d->n);
    for (size_t r = 0; r < n; r++) cr_assert_str_eq(sv[r], d->prompt[r], "prompt row %zu", r);
    llmlab_results_free_strs(sv, n);

    OK(llmlab_results_column_double(path, name, "steps", "time_s", &dv, &n, &e));
    cr_assert_eq(n, d->n);
    free(dv);
    OK(llmlab_results_column_str(path, name, "summary", "note", &sv, &n, &e));
    cr_assert_eq(n, 1);
    cr_assert_str_eq(sv[0], "ünïcode");
    llmlab_results_free_strs(sv, n);
    OK(llmlab_results_column_int(path, name, "tokens", "request", &iv, &n, &e));
    cr_assert_eq(n, 0);
    cr_assert_null(iv);
}

/* Expects the status and a message containing each non-NULL needle. */
static void expect(llmlab_status got, llmlab_status want, const llmlab_err *e, const char *n1,
                   const char *n2) {
    cr_assert_eq(got, want, "status %d (want %d): %s", got, want, e->msg);
    if (n1) cr_assert(strstr(e->msg, n1), "message '%s' lacks '%s'", e->msg, n1);
    if (n2) cr_assert(strstr(e->msg, n2), "message '%s' lacks '%s'", e->msg, n2);
}

/* Number of "<anything>.tmp-" entries in dir. */
static int count_temps(void) {
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp-")) n++;
    closedir(d);
    return n;
}

/* ---- round trips -------------------------------------------------------------------- */

Test(results, round_trip_two_runs) {
    uint64_t seed = fresh_seed();
    cr_log_info("seed %" PRIu64, seed);
    char *path = fsu_join(dir, "r.h5");
    run_data a = make_data(seed, 257), b = make_data(seed + 1, 1000);
    llmlab_run *ra = build_run("a", &a), *rb = build_run("run b ü", &b);
    write_ok(path, ra);
    write_ok(path, rb);

    llmlab_err e = {0};
    char **names;
    size_t n;
    OK(llmlab_results_list_runs(path, &names, &n, &e));
    cr_assert_eq(n, 2);
    cr_assert_str_eq(names[0], "a");
    cr_assert_str_eq(names[1], "run b ü");
    llmlab_results_free_strs(names, n);
    int64_t v;
    OK(llmlab_results_attr_int(path, NULL, "llmlab_schema_version", &v, &e));
    cr_assert_eq(v, 1);
    check_run(path, "a", &a);
    check_run(path, "run b ü", &b);
    cr_assert_eq(count_temps(), 0);

    /* Wrong types, missing things. */
    double x;
    char *s;
    int64_t *iv;
    size_t m;
    expect(llmlab_results_attr_int(path, "a", "settings/decoding/temperature", &v, &e),
           LLMLAB_EINVAL, &e, "temperature", "not an integer");
    expect(llmlab_results_attr_str(path, "a", "seed", &s, &e), LLMLAB_EINVAL, &e, "seed",
           "not a string");
    expect(llmlab_results_attr_double(path, "a", "nope/x", &x, &e), LLMLAB_EINVAL, &e,
           "no attribute 'nope/x'", path);
    expect(llmlab_results_attr_int(path, "zz", "seed", &v, &e), LLMLAB_EINVAL, &e, "no run", "zz");
    expect(llmlab_results_column_int(path, "a", "requests", "arrival_s", &iv, &m, &e),
           LLMLAB_EINVAL, &e, "arrival_s", "not an integer");
    expect(llmlab_results_column_int(path, "a", "requests", "nope", &iv, &m, &e), LLMLAB_EINVAL,
           &e, "no column 'nope'", NULL);
    expect(llmlab_results_column_int(path, "a", "nope", "id", &iv, &m, &e), LLMLAB_EINVAL, &e,
           "no table 'nope'", NULL);
    llmlab_run_free(ra);
    llmlab_run_free(rb);
    free_data(&a);
    free_data(&b);
    free(path);
}

/* Runs `cmd`, returning its stdout (malloc'd) or NULL. */
static char *capture(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[len] = '\0';
    pclose(p);
    return buf;
}

Test(results, h5dump_sees_compound_tables) {
    if (system("command -v h5dump >/dev/null 2>&1") != 0)
        cr_skip_test("h5dump not installed (Debian package hdf5-tools)");
    char *path = fsu_join(dir, "d.h5");
    run_data a = make_data(fresh_seed(), 10);
    llmlab_run *ra = build_run("a", &a);
    write_ok(path, ra);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "h5dump -H -d /runs/a/requests '%s' 2>&1", path);
    char *out = capture(cmd);
    cr_assert(out);
    const char *need[] = {"H5T_COMPOUND", "H5T_STD_I64LE \"id\";", "H5T_IEEE_F64LE \"arrival_s\";",
                          "STRSIZE H5T_VARIABLE;", "H5T_CSET_UTF8;", "\"prompt\";",
                          "H5T_STD_I64LE \"output_len\";", "DATASPACE  SIMPLE { ( 10 ) / ( H5S_UNLIMITED ) }",
                          "ATTRIBUTE \"columns\"", "ATTRIBUTE \"units\""};
    for (size_t k = 0; k < sizeof need / sizeof *need; k++)
        cr_assert(strstr(out, need[k]), "h5dump output lacks '%s':\n%s", need[k], out);
    free(out);
    snprintf(cmd, sizeof cmd, "h5dump -a /llmlab_schema_version '%s' 2>&1", path);
    out = capture(cmd);
    cr_assert(out && strstr(out, "H5T_STD_I64LE") && strstr(out, "(0): 1\n"),
              "root attribute llmlab_schema_version is not 1:\n%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "h5dump -A -g /runs/a/settings/decoding '%s' 2>&1", path);
    out = capture(cmd);
    cr_assert(out && strstr(out, "ATTRIBUTE \"temperature\"") && strstr(out, "\"autoregressive\""),
              "settings group:\n%s", out);
    free(out);
    llmlab_run_free(ra);
    free_data(&a);
    free(path);
}

Test(results, h5py_reads_structured_array) {
    if (system("python3 -c 'import h5py' >/dev/null 2>&1") != 0)
        cr_skip_test("python3 with h5py not available (not installed in CI on purpose)");
    char *path = fsu_join(dir, "p.h5");
    run_data a = make_data(fresh_seed(), 20);
    llmlab_run *ra = build_run("a", &a);
    write_ok(path, ra);
    char *script = fsu_join(dir, "read.py");
    const char *py =
        "import sys, h5py\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "assert int(f.attrs['llmlab_schema_version']) == 1\n"
        "run = f['runs/a']\n"
        "assert int(run.attrs['complete']) == 1\n"
        "t = run['requests'][()]\n"
        "assert t.dtype.names == ('id', 'arrival_s', 'prompt', 'output_len'), t.dtype.names\n"
        "p = t['prompt'][5]\n"
        "p = p.decode('utf-8') if isinstance(p, bytes) else p\n"
        "print(len(t), int(t['id'][5]), int(t['output_len'][7]), repr(float(t['arrival_s'][6])))\n"
        "sys.stdout.buffer.write(p.encode('utf-8'))\n";
    cr_assert_eq(fsu_write(script, py, strlen(py)), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' 2>&1", script, path);
    char *out = capture(cmd);
    cr_assert(out, "popen failed");
    long long n0, id5, ol7;
    double ar6;
    cr_assert_eq(sscanf(out, "%lld %lld %lld %lf", &n0, &id5, &ol7, &ar6), 4, "python said:\n%s",
                 out);
    cr_assert(n0 == 20 && id5 == a.id[5] && ol7 == a.out_len[7] && same_double(ar6, a.arrival[6]),
              "python said:\n%s", out);
    char *nl = strchr(out, '\n');
    cr_assert(nl && !strcmp(nl + 1, a.prompt[5]), "prompt row 5: python said:\n%s", out);
    free(out);
    free(script);
    llmlab_run_free(ra);
    free_data(&a);
    free(path);
}

/* ---- refusals ------------------------------------------------------------------------ */

Test(results, bad_names_and_keys_refused) {
    llmlab_err e = {0};
    cr_assert_null(llmlab_run_create("", &e));
    cr_assert(strstr(e.msg, "run name is empty"), "%s", e.msg);
    cr_assert_null(llmlab_run_create("a/b", &e));
    cr_assert(strstr(e.msg, "'a/b' contains '/'"), "%s", e.msg);
    cr_assert_null(llmlab_run_create("..", &e));
    cr_assert_null(llmlab_run_create("x\ny", &e));
    cr_assert(strstr(e.msg, "control character"), "%s", e.msg);

    llmlab_run *run = llmlab_run_create("ok", &e);
    cr_assert(run);
    expect(llmlab_run_attr_int(run, "", 1, &e), LLMLAB_EINVAL, &e, "empty", NULL);
    expect(llmlab_run_attr_int(run, "a//b", 1, &e), LLMLAB_EINVAL, &e, "'a//b'", "empty");
    expect(llmlab_run_attr_int(run, "/a", 1, &e), LLMLAB_EINVAL, &e, "'/a'", NULL);
    expect(llmlab_run_attr_int(run, "a/", 1, &e), LLMLAB_EINVAL, &e, "'a/'", NULL);
    expect(llmlab_run_attr_int(run, "x/../y", 1, &e), LLMLAB_EINVAL, &e, "reserved", NULL);
    expect(llmlab_run_attr_str(run, "complete", "1", &e), LLMLAB_EINVAL, &e, "'complete'",
           "written by the results writer");
    expect(llmlab_run_attr_str(run, "schema_version", "1", &e), LLMLAB_EINVAL, &e,
           "schema_version", NULL);
    expect(llmlab_run_attr_str(run, "name", "x", &e), LLMLAB_EINVAL, &e, "'name'", NULL);
    OK(llmlab_run_attr_str(run, "settings/complete", "nested is fine", &e));

    cr_assert_null(llmlab_run_table(run, "a/b", &e));
    cr_assert(strstr(e.msg, "table name 'a/b' contains '/'"), "%s", e.msg);
    cr_assert_null(llmlab_run_table(run, "settings", &e));
    cr_assert(strstr(e.msg, "attribute group"), "%s", e.msg);
    llmlab_table *t = llmlab_run_table(run, "requests", &e);
    cr_assert(t);
    expect(llmlab_run_attr_int(run, "requests/x", 1, &e), LLMLAB_EINVAL, &e, "table", "requests");
    expect(llmlab_table_append_int(t, "", 1, &e), LLMLAB_EINVAL, &e, "column name is empty",
           NULL);
    expect(llmlab_table_append_int(t, "a/b", 1, &e), LLMLAB_EINVAL, &e, "contains '/'", NULL);
    OK(llmlab_table_append_int(t, "id", 1, &e));
    expect(llmlab_table_append_double(t, "id", 1.0, &e), LLMLAB_EINVAL, &e,
           "column 'id' of table 'requests' holds integers, not doubles", NULL);
    expect(llmlab_table_column(t, "id", LLMLAB_COL_STR, NULL, &e), LLMLAB_EINVAL, &e,
           "holds integers", NULL);
    expect(llmlab_table_column(t, "y", (llmlab_coltype)7, NULL, &e), LLMLAB_EINVAL, &e,
           "unknown type", NULL);

    /* Unequal columns and empty tables are refused before the disk is touched. */
    char *path = fsu_join(dir, "x.h5");
    OK(llmlab_table_append_ints(t, "n", (const int64_t[]){1, 2}, 2, &e));
    expect(llmlab_results_write(path, run, &e), LLMLAB_EINVAL, &e,
           "column 'n' has 2 values but 'id' has 1", path);
    OK(llmlab_table_append_int(t, "id", 2, &e));
    cr_assert(llmlab_run_table(run, "blank", &e));
    expect(llmlab_results_write(path, run, &e), LLMLAB_EINVAL, &e, "table 'blank' has no columns",
           NULL);
    cr_assert(!fsu_exists(path));
    cr_assert_eq(count_temps(), 0);
    llmlab_run_free(run);
    free(path);
}

/* A one-row run called name. */
static llmlab_run *tiny_run(const char *name) {
    llmlab_err e = {0};
    llmlab_run *run = llmlab_run_create(name, &e);
    cr_assert(run, "%s", e.msg);
    llmlab_table *t = llmlab_run_table(run, "summary", &e);
    cr_assert(t);
    OK(llmlab_table_append_double(t, "x", 1.5, &e));
    return run;
}

Test(results, duplicate_run_refused_file_unchanged) {
    char *path = fsu_join(dir, "dup.h5");
    llmlab_run *a = tiny_run("a");
    write_ok(path, a);
    size_t n0, n1;
    char *before = fsu_read(path, &n0);
    llmlab_err e = {0};
    expect(llmlab_results_write(path, a, &e), LLMLAB_EINVAL, &e, "'a' is already in the file",
           path);
    char *after = fsu_read(path, &n1);
    cr_assert(n0 == n1 && !memcmp(before, after, n0), "file changed by a refused write");
    cr_assert_eq(count_temps(), 0);
    free(before);
    free(after);
    llmlab_run_free(a);
    free(path);
}

Test(results, other_schema_version_refused) {
    char *path = fsu_join(dir, "v2.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = H5Acreate2(f, "llmlab_schema_version", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t two = 2;
    cr_assert(at >= 0 && H5Awrite(at, H5T_NATIVE_INT64, &two) >= 0);
    H5Aclose(at);
    H5Sclose(sp);
    H5Gclose(H5Gcreate2(f, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    llmlab_run *a = tiny_run("a");
    llmlab_err e = {0};
    expect(llmlab_results_write(path, a, &e), LLMLAB_EFORMAT, &e, "schema version 2", path);
    char **names;
    size_t n;
    expect(llmlab_results_list_runs(path, &names, &n, &e), LLMLAB_EFORMAT, &e, "version 2",
           path);
    cr_assert_eq(count_temps(), 0);
    llmlab_run_free(a);
    free(path);
}

Test(results, foreign_files_refused) {
    llmlab_run *a = tiny_run("a");
    llmlab_err e = {0};
    char *text = fsu_join(dir, "notes.h5");
    cr_assert_eq(fsu_write(text, "hello, not hdf5\n", 16), 0);
    expect(llmlab_results_write(text, a, &e), LLMLAB_EFORMAT, &e, text, "not an HDF5 file");

    char *plain = fsu_join(dir, "plain.h5");
    hid_t f = H5Fcreate(plain, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0);
    H5Fclose(f);
    expect(llmlab_results_write(plain, a, &e), LLMLAB_EFORMAT, &e, plain,
           "not an llmlab results file");

    char *nodir = fsu_join(dir, "missing/sub/r.h5");
    expect(llmlab_results_write(nodir, a, &e), LLMLAB_EIO, &e, "missing/sub",
           "No such file or directory");
    expect(llmlab_results_write(dir, a, &e), LLMLAB_EIO, &e, dir, "not a regular file");
    char **names;
    size_t n;
    expect(llmlab_results_list_runs(nodir, &names, &n, &e), LLMLAB_EIO, &e, nodir, NULL);
    cr_assert_eq(count_temps(), 0);
    llmlab_run_free(a);
    free(text);
    free(plain);
    free(nodir);
}

Test(results, incomplete_run_is_invisible) {
    char *path = fsu_join(dir, "inc.h5");
    llmlab_run *a = tiny_run("a");
    write_ok(path, a);
    /* What a writer without the protocol could leave: a run group without complete. */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    H5Gclose(H5Gcreate2(f, "runs/half", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    llmlab_err e = {0};
    char **names;
    size_t n;
    OK(llmlab_results_list_runs(path, &names, &n, &e));
    cr_assert(n == 1 && !strcmp(names[0], "a"));
    llmlab_results_free_strs(names, n);
    double x;
    expect(llmlab_results_attr_double(path, "half", "x", &x, &e), LLMLAB_EFORMAT, &e,
           "'half' is incomplete", NULL);
    llmlab_run_free(a);
    free(path);
}

/* ---- crash and full-disk safety -------------------------------------------------------- */

/* A run with a tokens table of n rows (4 columns: ~32 bytes per row). */
static llmlab_run *big_run(const char *name, size_t n, uint64_t seed) {
    llmlab_err e = {0};
    llmlab_run *run = llmlab_run_create(name, &e);
    if (!run) return NULL;
    llmlab_table *t = llmlab_run_table(run, "tokens", &e);
    for (size_t r = 0; t && r < n; r++) {
        if (llmlab_table_append_int(t, "request", (int64_t)(r / 100), &e) ||
            llmlab_table_append_int(t, "index", (int64_t)(r % 100), &e) ||
            llmlab_table_append_int(t, "token", (int64_t)(splitmix(&seed) % 32000), &e) ||
            llmlab_table_append_double(t, "time_s", (double)(splitmix(&seed) >> 11) * 0x1p-53, &e))
            break;
    }
    return run;
}

Test(results, sigkill_mid_write_keeps_old_runs) {
    uint64_t seed = fresh_seed();
    char *path = fsu_join(dir, "k.h5");
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        run_data a = make_data(seed, 100);
        llmlab_run *ra = build_run("a", &a);
        llmlab_err e = {0};
        char ok = llmlab_results_write(path, ra, &e) == LLMLAB_OK ? 'y' : 'n';
        llmlab_run *rb = big_run("b", 2000000, seed);
        if (write(fds[1], &ok, 1) != 1 || ok != 'y' || !rb) _exit(2);
        llmlab_results_write(path, rb, &e);
        _exit(3); /* finishing means the parent was too slow to kill us */
    }
    close(fds[1]);
    char ok = 0;
    cr_assert_eq(read(fds[0], &ok, 1), 1);
    cr_assert_eq(ok, 'y', "child failed to write run a");
    close(fds[0]);
    struct stat sa;
    cr_assert_eq(stat(path, &sa), 0);
    /* Wait until the temp file holds some of b's rows, then kill. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)pid);
    struct stat st;
    int waited = 0;
    while (!(stat(tmp, &st) == 0 && st.st_size > sa.st_size + (1 << 19)) && waited < 20000) {
        usleep(1000);
        waited++;
    }
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "child was not killed mid-write (status %d, waited %d ms)", status, waited);
    cr_log_info("killed after %d ms, temp file had %lld bytes", waited,
                stat(tmp, &st) == 0 ? (long long)st.st_size : -1LL);

    /* Run a is intact, run b does not exist, in the file or as complete in the temp. */
    run_data a = make_data(seed, 100);
    check_run(path, "a", &a);
    llmlab_err e = {0};
    char **names;
    size_t n;
    OK(llmlab_results_list_runs(path, &names, &n, &e));
    cr_assert(n == 1 && !strcmp(names[0], "a"), "runs after the kill: %zu", n);
    llmlab_results_free_strs(names, n);
    double x;
    expect(llmlab_results_attr_double(path, "b", "seed", &x, &e), LLMLAB_EINVAL, &e,
           "no run named 'b'", NULL);
    if (fsu_exists(tmp) && llmlab_results_list_runs(tmp, &names, &n, &e) == LLMLAB_OK) {
        for (size_t k = 0; k < n; k++) cr_assert_str_neq(names[k], "b");
        llmlab_results_free_strs(names, n);
    }

    /* The next write succeeds and sweeps away the dead writer's temp file. */
    llmlab_run *c = tiny_run("c");
    write_ok(path, c);
    cr_assert(!fsu_exists(tmp), "stale temp file of the killed writer is still there");
    cr_assert_eq(count_temps(), 0);
    OK(llmlab_results_list_runs(path, &names, &n, &e));
    cr_assert(n == 2 && !strcmp(names[0], "a") && !strcmp(names[1], "c"));
    llmlab_results_free_strs(names, n);
    check_run(path, "a", &a);
    llmlab_run_free(c);
    free_data(&a);
    free(path);
}

/* In a child limited to limit bytes per file, writes a big run to path; returns the
 * status and message the writer gave. */
static llmlab_status write_limited(const char *path, rlim_t limit, char msg[512]) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        llmlab_run *run = big_run("big", 300000, 42);
        struct rlimit rl = {limit, limit};
        llmlab_err e = {0};
        if (!run || setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(2);
        e.code = llmlab_results_write(path, run, &e);
        if (write(fds[1], &e, sizeof e) != (ssize_t)sizeof e) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    llmlab_err e = {0};
    ssize_t got = read(fds[0], &e, sizeof e);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(got == (ssize_t)sizeof e && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child failed (status %d)", status);
    memcpy(msg, e.msg, 512);
    return e.code;
}

Test(results, full_disk_leaves_file_unchanged) {
    char *path = fsu_join(dir, "full.h5");
    run_data a = make_data(fresh_seed(), 50);
    llmlab_run *ra = build_run("a", &a);
    write_ok(path, ra);
    size_t n0, n1;
    char *before = fsu_read(path, &n0);
    cr_assert(before);
    char msg[512];
    /* Room for the copy of the file but not for the new run (~10 MB of random data). */
    llmlab_status st = write_limited(path, (rlim_t)n0 + (256 << 10), msg);
    cr_assert_eq(st, LLMLAB_EIO, "status %d: %s", st, msg);
    cr_assert(strstr(msg, path) && strstr(msg, "File too large"), "message: %s", msg);
    cr_log_info("full disk while writing: %s", msg);
    /* No room even for the copy. */
    st = write_limited(path, (rlim_t)n0 / 2, msg);
    cr_assert_eq(st, LLMLAB_EIO, "status %d: %s", st, msg);
    cr_assert(strstr(msg, path) && strstr(msg, "File too large"), "message: %s", msg);
    cr_log_info("full disk while copying: %s", msg);

    char *after = fsu_read(path, &n1);
    cr_assert(n0 == n1 && !memcmp(before, after, n0), "file changed by a failed write");
    cr_assert_eq(count_temps(), 0, "a temp file was left behind");
    check_run(path, "a", &a);
    llmlab_run *b = tiny_run("b");
    write_ok(path, b);
    free(before);
    free(after);
    llmlab_run_free(ra);
    llmlab_run_free(b);
    free_data(&a);
    free(path);
}

Test(results, concurrent_writers_keep_every_run) {
    char *path = fsu_join(dir, "c.h5");
    enum { NW = 6 };
    pid_t pids[NW];
    for (int k = 0; k < NW; k++) {
        pids[k] = fork();
        cr_assert(pids[k] >= 0);
        if (pids[k] == 0) {
            char name[16];
            snprintf(name, sizeof name, "w%d", k);
            llmlab_run *run = big_run(name, 20000, (uint64_t)k);
            llmlab_err e = {0};
            _exit(run && llmlab_results_write(path, run, &e) == LLMLAB_OK ? 0 : 1);
        }
    }
    for (int k = 0; k < NW; k++) {
        int status;
        cr_assert_eq(waitpid(pids[k], &status, 0), pids[k]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d failed", k);
    }
    llmlab_err e = {0};
    char **names;
    size_t n;
    OK(llmlab_results_list_runs(path, &names, &n, &e));
    cr_assert_eq(n, NW, "%zu of %d runs survived concurrent writes", n, NW);
    llmlab_results_free_strs(names, n);
    int64_t *iv;
    OK(llmlab_results_column_int(path, "w3", "tokens", "index", &iv, &n, &e));
    cr_assert(n == 20000 && iv[12345] == 45);
    free(iv);
    cr_assert_eq(count_temps(), 0);
    free(path);
}

Test(results, utc_now_is_iso8601) {
    char t[32];
    llmlab_results_utc_now(t);
    int y, mo, d, h, mi, s, ms;
    char z = 0;
    cr_assert_eq(strlen(t), 24, "%s", t);
    cr_assert_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8,
                 "%s", t);
    cr_assert(y >= 2024 && mo >= 1 && mo <= 12 && z == 'Z', "%s", t);
}
