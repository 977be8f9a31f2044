/* test_install.c - the plugin author's path end to end: `cmake --install` to a
 * temporary prefix, build plugins/examples/topk_twist against the installed
 * files alone, load it from a Lua script, and find its name and params in the
 * HDF5 run. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fixture_model.h"
#include "util/proc.h"

static char out[1 << 16], err[1 << 16];

Test(install, example_plugin_builds_against_installed_files_and_runs, .timeout = 300) {
    char dir[256], cmd[4096];
    snprintf(dir, sizeof dir, "/tmp/llmlab-install-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cmake --install %s --prefix %s/prefix", LLMLAB_BUILD_DIR, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "install failed: %s", err);
    /* Only the installed tree is visible to the plugin build: no source include paths. */
    snprintf(cmd, sizeof cmd,
             "cmake -S %s/plugins/examples/topk_twist -B %s/pb -DCMAKE_PREFIX_PATH=%s/prefix && cmake --build %s/pb",
             LLMLAB_SOURCE_DIR, dir, dir, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "plugin build failed: %s\n%s", out, err);
    snprintf(cmd, sizeof cmd, "pkg-config --cflags llmlab");
    char script[2048], path[512];
    snprintf(script, sizeof script,
             "local name, kind = llmlab.load_plugin('%s/pb/topk_twist.so')\n"
             "assert(name == 'topk_twist' and kind == 'decoding')\n"
             "local m = llmlab.model{path = llmlab.synth{dir = '%s/m', preset = 'tiny', seed = 4}}\n"
             "local e = llmlab.engine{model = m, decoding = {'topk_twist', k = 7}, seed = 1}\n"
             "local r = e:run(llmlab.workload{lengths = {5, 6}, max_new = 8, vocab = m.vocab})\n"
             "assert(r.summary.output_tokens == 16)\n"
             "llmlab.results('%s/twist.h5'):write('twist', r)\n"
             "for _, p in ipairs(llmlab.plugins()) do if p.name == 'topk_twist' then print(p.origin) end end\n",
             dir, dir, dir);
    snprintf(path, sizeof path, "%s/twist.lua", dir);
    proc_write_file(path, script);
    snprintf(cmd, sizeof cmd, "%s/prefix/bin/llmlab run %s", dir, path);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "topk_twist.so"), "%s", out);
    if (system("command -v h5dump >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "h5dump -A -g /runs/twist/settings/decoding %s/twist.h5", dir);
        cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
        cr_assert(strstr(out, "\"topk_twist\""), "%s", out);
        cr_assert(strstr(out, "ATTRIBUTE \"k\"") && strstr(out, "(0): 7"), "%s", out);
        cr_assert(strstr(out, "ATTRIBUTE \"penalty\"") && strstr(out, "1.3"), "default filled in: %s", out);
        snprintf(cmd, sizeof cmd, "h5dump -H -d /runs/twist/requests %s/twist.h5", dir);
        cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
        cr_assert(strstr(out, "\"m_penalised\""), "plugin metric counter becomes a requests column: %s", out);
    }
    /* The same plugin through LLMLAB_PLUGIN_PATH, listed by `llmlab plugins`. */
    snprintf(cmd, sizeof cmd, "LLMLAB_PLUGIN_PATH=%s/pb %s plugins", dir, LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "topk_twist") && strstr(out, "penalty"), "%s", out);
    fixture_rmtree(dir);
}
