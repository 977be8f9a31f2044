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

/* ---- text: tokenizers, chat templates, prompt files, perplexity ------------------------ */

/* The byte fallback (no tokenizer.json): encode/decode round trip on fresh random
 * bytes (NULs and invalid UTF-8 included), text prompts in generate and run, the
 * decoded text of the output. */
Test(lua, encode_decode_round_trip_on_the_byte_fallback) {
    char s[1024];
    snprintf(s, sizeof s,
             "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 3}}\n"
             "math.randomseed(%llu)\n"
             "for round = 1, 20 do\n"
             "  local b = {}\n"
             "  for i = 1, math.random(0, 300) do b[i] = string.char(math.random(0, 255)) end\n"
             "  local s = table.concat(b)\n"
             "  local ids = m:encode(s)\n"
             "  assert(#ids == #s and m:decode(ids) == s, 'round trip failed in round ' .. round)\n"
             "end\n"
             "local t = m:tokenizer()\n"
             "print(t.kind, t.vocab_size, t.bos, t.eos, table.concat(m:encode('Hi!'), ','))\n"
             "local e = llmlab.engine{model = m}\n"
             "local g = e:generate('Hello', {max_new = 6, stop_at_eos = false})\n"
             "assert(g.metrics.prompt_tokens == 5)\n"
             "local r = e:run(llmlab.workload{prompts = {'Hello', {72, 105}}, max_new = 4})\n"
             "print(r.requests[1].prompt_len, r.requests[2].prompt_len, type(r.requests[1].text),\n"
             "      r.requests[1].text == m:decode(r.requests[1].tokens, {skip_special = true}))\n",
             (unsigned long long)fixture_seed("lua-roundtrip"));
    cr_assert_eq(run_script("bytes.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "bytes\t256\tnil\tnil\t72,105,33\n5\t2\tstring\ttrue\n");
}

Test(lua, chat_renders_and_rejects_bad_conversations) {
    const char *s = "print(llmlab.chat('chatml', {{role = 'user', content = 'Hi'}}))\n"
                    "print(llmlab.chat('llama-2', {{role = 'system', content = 'S'}, {role = 'user', content = 'U'}},\n"
                    "                  {generation_prompt = false}))\n";
    cr_assert_eq(run_script("chat.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                          "<|im_start|>assistant\n\n<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]\n");
    cr_assert_eq(run_script("chat2.lua", "llmlab.chat('vicuna', {{role = 'user', content = 'x'}})\n", NULL), 1);
    cr_assert(strstr(err, "chat2.lua:1:") && strstr(err, "unknown chat template 'vicuna'") &&
                  strstr(err, "llama-2, llama-3, chatml (alias qwen), mistral"), "%s", err);
    cr_assert_eq(run_script("chat3.lua", "llmlab.chat('mistral', {{role = 'assistant', content = 'x'}})\n", NULL), 1);
    cr_assert(strstr(err, "message 1 has role 'assistant' where 'user'"), "%s", err);
}

/* llmlab.prompts on temp files: lines (blank and CRLF lines), JSONL with text,
 * ids, messages and per-request lengths, chat wrapping, limit; bad lines name
 * file:line; e:run takes the list and returns text. */
Test(lua, prompts_files_feed_run) {
    char p[512];
    snprintf(p, sizeof p, "%s/p.txt", g_dir);
    proc_write_file(p, "first prompt\r\n\n   \nsecond prompt\nthird\n");
    snprintf(p, sizeof p, "%s/p.jsonl", g_dir);
    proc_write_file(p, "{\"prompt\": \"text one\", \"max_new\": 2}\n"
                       "\n"
                       "{\"prompt_ids\": [5, 6, 7], \"output_len\": 3}\n"
                       "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n");
    snprintf(p, sizeof p, "%s/bad.jsonl", g_dir);
    proc_write_file(p, "{\"prompt\": \"ok\"}\n{\"prompt\": oops}\n");
    const char *s =
        "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 3}}\n"
        "local a = llmlab.prompts{file = 'p.txt', max_new = 5}\n"
        "print(#a, a[1].prompt, a[2].prompt, a[3].max_new, a[1].special)\n"
        "print(#llmlab.prompts{file = 'p.txt', limit = 2})\n"
        "local j = llmlab.prompts{file = 'p.jsonl', chat = 'chatml', system = 'Be brief.', max_new = 4}\n"
        "print(#j, j[1].max_new, j[2].max_new, j[3].max_new, table.concat(j[2].prompt, ','), j[3].special)\n"
        "print(j[3].prompt)\n"
        "local e = llmlab.engine{model = m, sched = {'continuous', max_batch = 4}}\n"
        "local r = e:run(a)\n"
        "print(r.summary.requests, r.summary.output_tokens, r.requests[1].prompt_len, type(r.requests[2].text))\n"
        "local rj = e:run(j)\n"
        "print(rj.requests[2].prompt_len, rj.summary.output_tokens)\n";
    cr_assert_eq(run_script("prompts.lua", s, NULL), 0, "%s", err);
    cr_assert_str_eq(out, "3\tfirst prompt\tsecond prompt\t5\tnil\n"
                          "2\n"
                          "3\t2\t3\t4\t5,6,7\tfalse\n"
                          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\n"
                          "3\t15\t12\tstring\n"
                          "3\t9\n");
    cr_assert_eq(run_script("bad.lua", "llmlab.prompts{file = 'bad.jsonl'}\n", NULL), 1);
    cr_assert(strstr(err, "bad.lua:1:") && strstr(err, "bad.jsonl:2: not a JSON object"), "%s", err);
    cr_assert_eq(run_script("bad2.lua", "llmlab.prompts{file = 'p.jsonl'}\n", NULL), 1);
    cr_assert(strstr(err, "p.jsonl:4:") && strstr(err, "needs a chat template"), "%s", err);
    cr_assert_eq(run_script("bad3.lua", "llmlab.prompts{file = 'nope.txt'}\n", NULL), 1);
    cr_assert(strstr(err, "cannot open nope.txt"), "%s", err);
}

Test(lua, perplexity_from_text_and_ids) {
    const char *s =
        "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 3}}\n"
        "local e = llmlab.engine{model = m}\n"
        "local text = string.rep('the cat sat on the mat. ', 8)\n"
        "local p = e:perplexity(text, {ctx = 64, stride = 32})\n"
        "local sum = 0\n"
        "for _, v in ipairs(p.token_nll) do sum = sum + v end\n"
        "assert(p.ppl > 1 and p.ppl < math.huge and math.abs(math.log(p.ppl) - sum / #p.token_nll) < 1e-9)\n"
        "local q = e:perplexity(m:encode(text), {ctx = 64, stride = 32})\n"
        "print(p.tokens, p.windows, #p.token_nll, q.ppl == p.ppl, p.token_pos[1], p.token_pos[#p.token_pos])\n"
        "print(pcall(e.perplexity, e, text, {stride = 0}))\n";
    cr_assert_eq(run_script("ppl.lua", s, NULL), 0, "%s", err);
    const char *want = "191\t5\t191\ttrue\t1\t191\nfalse\t"; /* windows [0,64) [32,96) ... [128,192) */
    cr_assert(!strncmp(out, want, strlen(want)), "%s", out);
    cr_assert(strstr(out, "stride = 0 must be >= 1"), "%s", out);
}

/* A real tokenizer.json (a byte-level Llama-3 fixture) in a synthetic model dir:
 * BOS from the post-processor, chat text encoded without a second BOS, and a
 * tokenizer larger than the model's vocabulary refused at load. */
Test(lua, model_with_tokenizer_json) {
    char tj[512];
    snprintf(tj, sizeof tj, "%s/tokenizers/bytelevel_llama3/tokenizer.json", LLMLAB_TEST_DATA);
    if (access(tj, R_OK) != 0) cr_skip_test("fixture %s not present", tj);
    char s[2048];
    snprintf(s, sizeof s,
             "local function with_tok(dir, vocab)\n"
             "  llmlab.synth{dir = dir, preset = 'tiny', vocab = vocab, seed = 4}\n"
             "  local src, dst = assert(io.open('%s', 'rb')), assert(io.open(dir .. '/tokenizer.json', 'wb'))\n"
             "  dst:write(src:read('a')); src:close(); dst:close()\n"
             "  return dir\n"
             "end\n"
             "local m = llmlab.model{path = with_tok('mt', 4096)}\n"
             "local t = m:tokenizer()\n"
             "local ids = m:encode('Hello world')\n"
             "print(t.kind, t.vocab_size, t.bos, ids[1] == t.bos, m:decode(ids), m:decode(ids, {skip_special = true}))\n"
             "local text = llmlab.chat('llama-3', {{role = 'user', content = 'Hi'}})\n"
             "local plain = m:encode(text, {special = false})\n"
             "local e = llmlab.engine{model = m}\n"
             "local g1 = e:generate(text, {special = false, max_new = 3, stop_at_eos = false})\n"
             "local g2 = e:generate(text, {max_new = 3, stop_at_eos = false})\n"
             "print(plain[1] == t.bos, plain[2] == t.bos, #plain == g1.metrics.prompt_tokens,\n"
             "      g2.metrics.prompt_tokens == g1.metrics.prompt_tokens)\n"
             "local p = e:perplexity('The quick brown fox.')\n"
             "print(p.input_tokens == #m:encode('The quick brown fox.', {special = false}) + 1, p.tokens == p.input_tokens - 1)\n"
             "llmlab.model{path = with_tok('small', 1000)}\n",
             tj);
    cr_assert_eq(run_script("tok.lua", s, NULL), 1, "a 3263-token tokenizer must not load into a 1000-row model");
    cr_assert_str_eq(out, "bpe-bytelevel\t3263\t0\ttrue\t<|begin_of_text|>Hello world\tHello world\n"
                          "true\tfalse\ttrue\ttrue\n"
                          "true\ttrue\n");
    cr_assert(strstr(err, "tok.lua:") && strstr(err, "3263") && strstr(err, "1000") && strstr(err, "tokenizer"), "%s", err);
}

Test(lua, text_prompts_example_runs) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && %s run %s/experiments/text_prompts.lua --set prompts=%s/experiments/data/prompts.txt "
             "--set out=%s/t.h5 --set max_new=4",
             g_dir, LLMLAB_BIN, LLMLAB_SOURCE_DIR, LLMLAB_SOURCE_DIR, g_dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "6 plain prompts") && strstr(out, "perplexity of") && strstr(out, "results written to"),
              "%s", out);
}
