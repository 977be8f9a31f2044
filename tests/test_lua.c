/* test_lua.c - `llmlab run` as a user runs it: errors with file:line, --set,
 * parameter errors that name plugin/param/allowed values, settings precedence
 * (INI < command line < Lua), and the HDF5 run it writes, read back by h5dump. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fixture_model.h"
#include "util/proc.h"

static char g_dir[256];
static char out[65536], err[65536];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-lua-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}
static void teardown(void) { fixture_rmtree(g_dir); }
TestSuite(lua, .init = setup, .fini = teardown);

/* Writes script text to DIR/name and runs `llmlab run` on it with extra args, in DIR. */
static int run_script(const char *name, const char *text, const char *args) {
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    proc_write_file(path, text);
    snprintf(cmd, sizeof cmd, "cd %s && %s run %s %s", g_dir, LLMLAB_BIN, name, args ? args : "");
    return proc_run(cmd, out, sizeof out, err, sizeof err);
}

Test(lua, syntax_error_reports_file_and_line) {
    cr_assert_eq(run_script("bad.lua", "local a = 1\nlocal b = = 2\n", NULL), 1);
    cr_assert(strstr(err, "bad.lua:2:"), "%s", err);
}

Test(lua, runtime_error_reports_file_and_line) {
    cr_assert_eq(run_script("rt.lua", "local x = 1\n\nllmlab.model{path = '/no/such/model'}\n", NULL), 1);
    cr_assert(strstr(err, "rt.lua:3:") && strstr(err, "/no/such/model"), "%s", err);
    cr_assert_eq(run_script("typo.lua", "llmlab.model{pth = 'x'}\n", NULL), 1);
    cr_assert(strstr(err, "typo.lua:1:") && strstr(err, "unknown field 'pth'"), "%s", err);
}

Test(lua, set_values_arrive_typed) {
    const char *s = "print(llmlab.args.k, math.type(llmlab.args.k), llmlab.args.name, llmlab.args.x, llmlab.args.flag)\n";
    cr_assert_eq(run_script("args.lua", s, "--set k=8 --set name=h2o --set x=0.25 --set flag=true"), 0, "%s", err);
    cr_assert_str_eq(out, "8\tinteger\th2o\t0.25\ttrue\n");
    cr_assert_eq(run_script("args.lua", s, "--set novalue"), 2);
    cr_assert(strstr(err, "key=value"), "%s", err);
}

static const char *engine_script =
    "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 3}}\n"
    "local e = llmlab.engine{model = m, sched = {'fcfs', max_batch = 0}}\n";

Test(lua, bad_plugin_params_name_plugin_param_and_range) {
    cr_assert_eq(run_script("params.lua", engine_script, NULL), 1);
    cr_assert(strstr(err, "params.lua:2:") && strstr(err, "sched plugin 'fcfs'") && strstr(err, "'max_batch'") &&
                  strstr(err, "[1, 4096]"),
              "%s", err);
    const char *enum_bad = "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny'}}\n"
                           "llmlab.engine{model = m, decoding = {'autoregressive', tempreature = 1}}\n";
    cr_assert_eq(run_script("p2.lua", enum_bad, NULL), 1);
    cr_assert(strstr(err, "unknown parameter 'tempreature'") && strstr(err, "temperature, top_k, top_p, min_p"), "%s", err);
    const char *no_plugin = "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny'}}\n"
                            "llmlab.engine{model = m, attention = {'h2o_typo'}}\n";
    cr_assert_eq(run_script("p3.lua", no_plugin, NULL), 1);
    cr_assert(strstr(err, "no attention plugin named 'h2o_typo'") && strstr(err, "dense"), "%s", err);
}

Test(lua, settings_precedence_ini_then_command_line_then_lua) {
    char ini[512];
    snprintf(ini, sizeof ini, "%s/llmlab.ini", g_dir);
    proc_write_file(ini, "[llmlab]\nthreads = 1\n");
    const char *s = "local d = llmlab.synth{dir = 'm', preset = 'tiny'}\n"
                    "print(llmlab.model{path = d}.threads, llmlab.model{path = d, threads = 3}.threads)\n";
    cr_assert_eq(run_script("prec.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "1\t3\n", "INI value, then Lua override");
    cr_assert_eq(run_script("prec.lua", s, "--threads 2"), 0, "%s", err);
    cr_assert_str_eq(out, "2\t3\n", "command line beats INI, Lua beats both");
    proc_write_file(ini, "[llmlab]\nthreds = 1\n");
    cr_assert_eq(run_script("prec.lua", s, NULL), 2);
    cr_assert(strstr(err, "llmlab.ini:2:") && strstr(err, "threds"), "%s", err);
}

Test(lua, run_writes_documented_hdf5_layout) {
    if (system("command -v h5dump >/dev/null 2>&1") != 0) cr_skip_test("h5dump (hdf5-tools) not installed");
    const char *s = "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 2}}\n"
                    "local e = llmlab.engine{model = m, sched = {'fcfs', max_batch = 2}, seed = 5}\n"
                    "local r = e:run(llmlab.workload{lengths = {4, 9, 5}, max_new = 6, vocab = m.vocab})\n"
                    "llmlab.results('out.h5'):write('first', r)\n"
                    "llmlab.results('out.h5'):write('second', e:run(llmlab.workload{prompts = {'hi'}, max_new = 3}))\n"
                    "print(r.summary.output_tokens)\n";
    cr_assert_eq(run_script("h5.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "18\n");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "h5dump -H %s/out.h5", g_dir);
    static char dump[1 << 20], derr[4096];
    cr_assert_eq(proc_run(cmd, dump, sizeof dump, derr, sizeof derr), 0, "%s", derr);
    const char *must[] = {"GROUP \"first\"", "GROUP \"second\"", "ATTRIBUTE \"llmlab_schema_version\"",
                          "ATTRIBUTE \"seed\"", "ATTRIBUTE \"backend\"", "ATTRIBUTE \"threads\"",
                          "ATTRIBUTE \"host\"", "ATTRIBUTE \"git_commit\"", "ATTRIBUTE \"script\"",
                          "ATTRIBUTE \"start_time\"", "ATTRIBUTE \"end_time\"", "ATTRIBUTE \"llmlab_version\"",
                          "GROUP \"model\"", "ATTRIBUTE \"hash\"", "ATTRIBUTE \"config\"",
                          "GROUP \"decoding\"", "ATTRIBUTE \"temperature\"", "ATTRIBUTE \"top_p\"",
                          "GROUP \"sched\"", "ATTRIBUTE \"max_batch\"", "GROUP \"attention\"", "GROUP \"quant\"",
                          "DATASET \"requests\"", "DATASET \"steps\"", "DATASET \"tokens\"", "DATASET \"summary\"",
                          "H5T_COMPOUND", "\"first_token_s\"", "\"kv_blocks_used\"", "\"output_tok_per_s\""};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        cr_assert(strstr(dump, must[i]), "h5dump lacks %s", must[i]);
    snprintf(cmd, sizeof cmd, "h5dump -a /runs/first/settings/sched/max_batch %s/out.h5", g_dir);
    cr_assert_eq(proc_run(cmd, dump, sizeof dump, derr, sizeof derr), 0, "%s", derr);
    cr_assert(strstr(dump, "(0): 2"), "max_batch recorded as 2: %s", dump);
    cr_assert_eq(run_script("h5.lua", s, NULL), 1, "writing run 'first' again must be refused");
    cr_assert(strstr(err, "first"), "%s", err);
}

Test(lua, quickstart_runs) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s run %s/experiments/quickstart.lua --set out=%s/q.h5 --set max_new=4", g_dir,
             LLMLAB_BIN, LLMLAB_SOURCE_DIR, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "results written to"), "%s", out);
    char h5[512];
    snprintf(h5, sizeof h5, "%s/q.h5", g_dir);
    cr_assert_eq(access(h5, R_OK), 0);
}

/* A speculative run from Lua: a derived draft passed as a model object, counters
 * in the summary, and m_* columns in the requests, steps and summary tables. */
Test(lua, speculative_run_records_draft_counters) {
    if (system("command -v h5dump >/dev/null 2>&1") != 0) cr_skip_test("h5dump (hdf5-tools) not installed");
    const char *s =
        "local t = llmlab.synth{dir = 't', preset = 'tiny', seed = 3}\n"
        "local d = llmlab.model{path = llmlab.derive{src = t, dir = 'd', dtype = 'bf16'}}\n"
        "local m = llmlab.model{path = t}\n"
        "local w = llmlab.workload{lengths = {5, 12, 7}, max_new = 10, vocab = m.vocab}\n"
        "local ar = llmlab.engine{model = m, sched = {'continuous', max_batch = 3}}:run(w)\n"
        "local e = llmlab.engine{model = m, decoding = {'speculative', draft = d, k = 3},\n"
        "                        sched = {'continuous', max_batch = 3}}\n"
        "local r = e:run(w)\n"
        "for i, q in ipairs(r.requests) do\n"
        "  assert(table.concat(q.tokens, ',') == table.concat(ar.requests[i].tokens, ','), 'greedy differs')\n"
        "end\n"
        "llmlab.results('s.h5'):write('spec', r)\n"
        "print(r.summary.metrics.drafted > 0, r.summary.metrics.accepted <= r.summary.metrics.drafted,\n"
        "      r.summary.mean_accepted >= 1)\n";
    cr_assert_eq(run_script("spec.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "true\ttrue\ttrue\n");
    char cmd[1024];
    static char dump[1 << 20], derr[4096];
    snprintf(cmd, sizeof cmd, "h5dump -H %s/s.h5", g_dir);
    cr_assert_eq(proc_run(cmd, dump, sizeof dump, derr, sizeof derr), 0, "%s", derr);
    const char *must[] = {"\"m_drafted\"", "\"m_accepted\"", "\"m_rejections\"", "\"m_draft_forwards\"", "\"accepted\"",
                          "ATTRIBUTE \"draft\"", "ATTRIBUTE \"k\""};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) cr_assert(strstr(dump, must[i]), "h5dump lacks %s", must[i]);
}
