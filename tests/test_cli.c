/* test_cli.c - the `llmlab` binary as a user runs it: synth, generate (text and
 * --ids, greedy and seeded sampling), bench, and clear errors with exit codes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/generate.h"
#include "util/fixture_model.h"
#include "util/proc.h"

static char g_dir[256];

static void make_model(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/llmlab-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    char cmd[512], out[4096], err[4096];
    snprintf(cmd, sizeof cmd, "%s synth %s/m --preset tiny --seed 5", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "synth failed: %s", err);
}

static void drop_model(void) { fixture_rmtree(g_dir); }

TestSuite(cli, .init = make_model, .fini = drop_model);

Test(cli, generate_ids_equal_the_library_greedy_output) {
    char cmd[512], out[8192], err[4096];
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m --tokens 5,17,300,42 -n 12 --ids --no-eos --threads 2",
             LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(err, "decode:"), "speeds go to stderr: %s", err);

    char mdir[300];
    snprintf(mdir, sizeof mdir, "%s/m", g_dir);
    llmlab_model *m;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_model_load(&m, mdir, &e), LLMLAB_OK, "%s", e.msg);
    llmlab_ctx *ctx;
    llmlab_ctx_opts co = {.n_threads = 1, .max_seqs = 1, .kv_tokens = 64};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &e), LLMLAB_OK);
    int32_t prompt[] = {5, 17, 300, 42}, gen[12];
    int n = 0;
    llmlab_gen_opts go = {.max_new = 12, .samp = LLMLAB_SAMPLING_GREEDY};
    cr_assert_eq(llmlab_generate(ctx, 0, prompt, 4, &go, gen, &n, NULL, &e), LLMLAB_OK);
    char expect[512] = "";
    for (int i = 0; i < n; i++) snprintf(expect + strlen(expect), sizeof expect - strlen(expect), i ? " %d" : "%d", gen[i]);
    strcat(expect, "\n");
    cr_assert_str_eq(out, expect);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
}

Test(cli, seeded_sampling_is_reproducible_and_text_prompts_work) {
    char cmd[512], a[8192], b[8192], c[8192], err[4096];
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hello world' -n 16 --temp 1.0 --top-k 40 --seed 9 --ids --no-eos",
             LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, a, sizeof a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(proc_run(cmd, b, sizeof b, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a, b, "same seed, same tokens");
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hello world' -n 16 --temp 1.0 --top-k 40 --seed 10 --ids --no-eos",
             LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, c, sizeof c, err, sizeof err), 0, "%s", err);
    cr_assert_str_neq(a, c, "a different seed should change 16 sampled tokens");
}

Test(cli, errors_name_the_problem_and_exit_nonzero) {
    char cmd[512], out[4096], err[4096];
    snprintf(cmd, sizeof cmd, "%s generate -m /nonexistent/model -p hi", LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "/nonexistent/model"), "message names the path: %s", err);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p hi --temp -1", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "--temp"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m --tokens 1,x,3", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m --tokens 1,99999", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "vocabulary"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s frobnicate", LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "unknown command"), "%s", err);
}

Test(cli, bench_reports_fractions_and_writes_hdf5) {
    char cmd[768], out[8192], err[8192];
    snprintf(cmd, sizeof cmd, "%s bench -m %s/m --prompt 16 --gen 4 --reps 1 --threads 2 --out %s/bench.h5",
             LLMLAB_BIN, g_dir, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "of read bandwidth"), "%s", out);
    cr_assert(strstr(out, "prefill"), "%s", out);
    snprintf(cmd, sizeof cmd, "h5dump -H %s/bench.h5 >/dev/null 2>&1 || test ! -x \"$(command -v h5dump)\"", g_dir);
    cr_assert_eq(system(cmd), 0, "bench.h5 must be a valid HDF5 file");
}

/* `llmlab ppl` prints its figures and writes the run; bad windows are usage errors. */
Test(cli, ppl_prints_figures_and_writes_hdf5) {
    char cmd[2048], out[8192], err[8192], path[512];
    snprintf(path, sizeof path, "%s/text.txt", g_dir);
    proc_write_file(path, "It was a bright cold day in April, and the clocks were striking thirteen.\n"
                          "Winston Smith slipped quickly through the glass doors of Victory Mansions.\n");
    snprintf(cmd, sizeof cmd, "%s ppl -m %s/m -f %s --ctx 64 --stride 32 --threads 2 -o %s/ppl.h5", LLMLAB_BIN,
             g_dir, path, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    double ppl = 0;
    int scored = 0, total = 0, windows = 0;
    const char *p = strstr(out, "ppl: "), *t = strstr(out, "tokens scored: "), *w = strstr(out, "windows: ");
    cr_assert(p && t && w && strstr(out, "mean NLL: ") && strstr(out, "tok/s: "), "%s", out);
    cr_assert_eq(sscanf(p, "ppl: %lf", &ppl), 1);
    cr_assert_eq(sscanf(t, "tokens scored: %d of %d", &scored, &total), 2);
    cr_assert_eq(sscanf(w, "windows: %d", &windows), 1);
    cr_assert(ppl > 1 && ppl < 1e9, "%s", out);
    cr_assert_eq(total, 149, "the byte fallback: one token per byte, no BOS");
    cr_assert_eq(scored, 148);
    cr_assert_eq(windows, 4, "windows [0,64) [32,96) [64,128) [96,149)");
    snprintf(cmd, sizeof cmd, "h5dump -H %s/ppl.h5 2>/dev/null", g_dir);
    static char dump[1 << 20];
    if (system("command -v h5dump >/dev/null 2>&1") == 0) {
        cr_assert_eq(proc_run(cmd, dump, sizeof dump, err, sizeof err), 0);
        cr_assert(strstr(dump, "DATASET \"ppl_tokens\"") && strstr(dump, "\"nll\"") && strstr(dump, "ATTRIBUTE \"stride\"") &&
                      strstr(dump, "\"ppl_tok_per_s\""), "h5dump: %.2000s", dump);
    }
    const char *bad[][2] = {{"--stride 0", "--stride"}, {"--ctx 16 --stride 32", "--stride 32 must not exceed --ctx 16"},
                            {"--ctx 1", "--ctx"}, {"--stride 4096", "stride = 4096 must be in [1, ctx = 2048]"},
                            {"--attention 'window window'", "bad --attention"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s ppl -m %s/m -f %s %s", LLMLAB_BIN, g_dir, path, bad[i][0]);
        cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2, "%s: %s", bad[i][0], err);
        cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
    }
    snprintf(cmd, sizeof cmd, "%s ppl -m %s/m -f %s/missing.txt", LLMLAB_BIN, g_dir, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "missing.txt"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s ppl -m %s/m -f %s --attention 'window window=8' --ctx 64", LLMLAB_BIN, g_dir, path);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    double ppl_win = 0;
    cr_assert_eq(sscanf(strstr(out, "ppl: "), "ppl: %lf", &ppl_win), 1);
    cr_assert(ppl_win != ppl, "a sliding window of 8 changes the perplexity");
}

/* --chat wraps -p in the template (the template carries the BOS text); text output
 * goes through the streaming detokenizer. */
Test(cli, generate_chat_and_text_output) {
    char cmd[2048], a[8192], b[8192], err[4096];
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hi' --chat chatml --system 'Be brief.' -n 6 --ids --no-eos",
             LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, a, sizeof a, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(err, "prefill: 91 tokens"), "the chatml text is 91 bytes: %s", err);
    const char *text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    char list[1024] = "";
    for (const char *c = text; *c; c++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", c == text ? "" : ",", *c);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m --tokens %s -n 6 --ids --no-eos", LLMLAB_BIN, g_dir, list);
    cr_assert_eq(proc_run(cmd, b, sizeof b, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a, b, "--chat equals the rendered text given as ids");
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hi' -n 6 --no-eos", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, a, sizeof a, err, sizeof err), 0, "%s", err);
    cr_assert(strlen(a) >= 2 && a[strlen(a) - 1] == '\n', "text output ends the line: %s", a);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hi' --chat vicuna", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, a, sizeof a, err, sizeof err), 2);
    cr_assert(strstr(err, "unknown chat template 'vicuna'") && strstr(err, "llama-3"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s generate -m %s/m -p 'Hi' --system 'S'", LLMLAB_BIN, g_dir);
    cr_assert_eq(proc_run(cmd, a, sizeof a, err, sizeof err), 2);
    cr_assert(strstr(err, "--system needs --chat"), "%s", err);
}
