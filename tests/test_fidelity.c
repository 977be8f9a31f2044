/* test_fidelity.c - teacher-forced scoring (llmlab_engine_score) and the fidelity
 * measurement (core/fidelity.c, llmlab.fidelity):
 *   forced mode with dense attention gives, position by position, the logits of
 *   one causal forward over the whole text, bit for bit, with texts batched and
 *   prompts chunked;
 *   dense against dense: kl == 0 exactly, top-1 == 1, equal perplexities;
 *   perplexity is exp(mean NLL) of the reference logits, computed here independently;
 *   an evicting policy (a test plugin: a sliding window) is exact while nothing was
 *   evicted, differs afterwards, and holds fewer KV bytes;
 *   memory groups give the same numbers as one group;
 *   bad prefixes and unknown plugins are named in the errors;
 *   llmlab.fidelity from Lua writes the fidelity table into HDF5. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/fidelity.h"
#include "core/results.h"
#include "core/rng.h"
#include "util/fixture_model.h"
#include "util/one_forward.h"
#include "util/proc.h"

static llmlab_registry *g_reg;
static fixture_model g_fm;

/* ---- a test attention policy: keep the W newest positions (evicting in after_step) --- */

enum { WIN = 12 };
static int g_after_steps; /* after_step calls, all sequences */

static const llmlab_host *g_host;

static llmlab_status win_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                llmlab_err *err) {
    g_host = h;
    *self = NULL;
    return LLMLAB_OK;
}
static void win_destroy(void *self) {}
static llmlab_status win_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void win_end(void *self, llmlab_seq *s) {}

/* Every lane holds the same tokens (seq_kv_evict evicts from all), so lane 0's
 * positions (-1: not valid) tell which committed slots to evict. */
static llmlab_status win_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    g_after_steps++;
    int32_t pos[4096];
    int slots[4096], k = 0;
    cr_assert_leq(g_host->seq_kv_len(s), 4096);
    int n = g_host->seq_kv_lane(s, 0, pos, NULL, NULL, NULL);
    int32_t newest = -1;
    for (int i = 0; i < n; i++) newest = pos[i] > newest ? pos[i] : newest;
    for (int i = 0; i < n; i++)
        if (pos[i] >= 0 && pos[i] <= newest - WIN) slots[k++] = i;
    return k ? g_host->seq_kv_evict(s, slots, k, err) : LLMLAB_OK;
}

static const llmlab_attention_ops win_ops = {sizeof(llmlab_attention_ops), win_create, win_destroy, win_begin,
                                             win_end, win_after_step};
static const llmlab_plugin_desc win_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "test_window", "1.0", "keeps the 12 newest positions (test)", NULL, 0, &win_ops);
static const llmlab_plugin_desc *win_entry(uint32_t major, uint32_t minor, const llmlab_host *h) { return &win_desc; }

static void setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_registry_add(g_reg, win_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    fixture_load(&g_fm, &fixture_shapes[0], 41);
}

static void teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
}

TestSuite(fidelity, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------------------ */

enum { NT = 3, MAXLEN = 80 };

typedef struct {
    int32_t tok[NT][MAXLEN];
    int len[NT], prefix[NT];
} texts;

static void make_texts(texts *t, uint64_t seed) {
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 7);
    static const int len[NT] = {80, 33, 57}, prefix[NT] = {20, 1, 31};
    for (int i = 0; i < NT; i++) {
        t->len[i] = len[i];
        t->prefix[i] = prefix[i];
        for (int k = 0; k < len[i]; k++) t->tok[i][k] = (int32_t)(llmlab_rng_next(&rng) % (uint64_t)g_fm.m->cfg.vocab_size);
    }
}

static llmlab_engine_opts engine_opts(const char *attention, int token_budget) {
    return (llmlab_engine_opts){.registry = g_reg, .attention = {attention, NULL, 0}, .sched = {"continuous", NULL, 0},
                                .n_threads = 2, .kv_tokens = 1024, .max_seqs = 8, .token_budget = token_budget};
}

typedef struct {
    const texts *t;
    float *want[NT];    /* [len][vocab] one-forward logits per text */
    int next_pos[NT];   /* the position the next call must carry */
    int calls;
} check_ctx;

static llmlab_status check_row(void *user, int req, int pos, const float *logits, llmlab_err *err) {
    check_ctx *c = user;
    size_t V = (size_t)g_fm.m->cfg.vocab_size;
    cr_assert(req >= 0 && req < NT, "request id %d", req);
    cr_assert_eq(pos, c->next_pos[req], "request %d scored position %d, expected %d", req, pos, c->next_pos[req]);
    cr_assert(memcmp(logits, c->want[req] + (size_t)pos * V, V * sizeof *logits) == 0,
              "request %d position %d: forced logits differ from the one-shot forward", req, pos);
    c->next_pos[req]++;
    c->calls++;
    return LLMLAB_OK;
}

static void make_fid_texts(llmlab_fid_text *ft, const texts *t) {
    for (int i = 0; i < NT; i++) ft[i] = (llmlab_fid_text){t->tok[i], t->len[i], t->prefix[i]};
}

static llmlab_fid_result *measure(const char *attention, const texts *t, size_t ref_bytes) {
    llmlab_engine_opts o = engine_opts(attention, 16);
    llmlab_engine *dense, *policy;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_fidelity_engines(g_fm.m, &o, &dense, &policy, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_fid_text ft[NT];
    make_fid_texts(ft, t);
    llmlab_fid_opts fo = {ref_bytes};
    llmlab_fid_result *f = NULL;
    cr_assert_eq(llmlab_fidelity(dense, policy, ft, NT, &fo, &f, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_engine_free(dense);
    llmlab_engine_free(policy);
    return f;
}

/* ---- (a) forced dense == one forward ------------------------------------------------------ */

Test(fidelity, forced_dense_logits_equal_one_forward_bit_for_bit) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-forced"));
    check_ctx c = {.t = &t};
    llmlab_request reqs[NT];
    for (int i = 0; i < NT; i++) {
        c.want[i] = one_forward_logits(g_fm.m, t.tok[i], t.len[i]);
        c.next_pos[i] = t.prefix[i] - 1;
        /* max_new and sampling are ignored in forced mode */
        reqs[i] = (llmlab_request){.id = i, .prompt = t.tok[i], .prompt_len = t.len[i], .max_new = 0};
    }
    llmlab_engine_opts o = engine_opts("dense", 16); /* prompts of 20 and 31 tokens arrive in chunks */
    llmlab_engine *e;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, g_fm.m, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_run_result *r;
    cr_assert_eq(llmlab_engine_score(e, reqs, NT, t.prefix, check_row, &c, &r, &err), LLMLAB_OK, "%s", err.msg);
    int total = 0, batched = 0;
    for (int i = 0; i < NT; i++) {
        total += t.len[i] - t.prefix[i];
        cr_assert_eq(c.next_pos[i], t.len[i] - 1, "request %d scored up to position %d", i, c.next_pos[i] - 1);
        cr_assert_eq(r->prompt_len[i], t.prefix[i]);
        cr_assert_eq(r->output_len[i], t.len[i] - t.prefix[i]);
        cr_assert(memcmp(r->output[i], t.tok[i] + t.prefix[i], sizeof(int32_t) * (size_t)r->output_len[i]) == 0,
                  "request %d: the output is the forced text", i);
        free(c.want[i]);
    }
    for (int s = 0; s < r->n_steps; s++) batched |= r->step_seqs[s] == NT;
    cr_assert_eq(c.calls, total);
    cr_assert_eq(r->output_tokens, total);
    cr_assert(batched, "the texts ran batched in some step");
    cr_assert(r->n_steps > 0 && r->step_kv_bytes[r->n_steps - 1] > 0, "KV bytes are recorded per step");
    llmlab_run_result_free(r);
    /* the same engine still decodes normally afterwards */
    llmlab_request g = {.id = 0, .prompt = t.tok[0], .prompt_len = 5, .max_new = 3};
    cr_assert_eq(llmlab_engine_run(e, &g, 1, &r, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(r->output_len[0], 3);
    llmlab_run_result_free(r);
    llmlab_engine_free(e);
}

/* ---- (b) dense vs dense ---------------------------------------------------------------------- */

Test(fidelity, dense_against_dense_is_exact) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-dense"));
    llmlab_fid_result *f = measure("dense", &t, 0);
    int total = 0;
    for (int i = 0; i < NT; i++) total += t.len[i] - t.prefix[i];
    cr_assert_eq(f->n_tok, total);
    for (int k = 0; k < f->n_tok; k++) {
        cr_assert(f->kl[k] == 0.0, "token %d (text %d pos %d): kl %g", k, f->req[k], f->pos[k], f->kl[k]);
        cr_assert_eq(f->top1[k], 1);
        cr_assert(f->nll[k] == f->nll_dense[k]);
    }
    cr_assert(f->mean_kl == 0.0 && f->top1_rate == 1.0, "kl %g top1 %g", f->mean_kl, f->top1_rate);
    cr_assert(f->ppl == f->ppl_dense && isfinite(f->ppl) && f->ppl > 1, "ppl %g vs %g", f->ppl, f->ppl_dense);
    for (int i = 0; i < NT; i++) cr_assert(f->text_kl[i] == 0.0 && f->text_ppl[i] == f->text_ppl_dense[i]);
    cr_assert_eq(f->groups, 1);
    cr_assert_str_eq(f->reference, "dense");
    cr_assert(f->kv_bytes_max == f->kv_bytes_max_dense && f->kv_bytes_max > 0);
    cr_assert(f->tok_per_s > 0 && f->tok_per_s_dense > 0);
    llmlab_fid_result_free(f);
}

/* ---- (c) perplexity from the logits, independently -------------------------------------------- */

/* -log softmax(x)[t] with a plain two-pass long double log-sum-exp. */
static double nll_of(const float *x, int V, int t) {
    long double mx = x[0], s = 0;
    for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++) s += expl((long double)x[i] - mx);
    return (double)(logl(s) + mx - (long double)x[t]);
}

Test(fidelity, perplexity_is_exp_mean_nll_of_the_logits) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-ppl"));
    llmlab_fid_result *f = measure("test_window", &t, 0);
    int V = g_fm.m->cfg.vocab_size;
    double sum = 0;
    int k = 0;
    for (int i = 0; i < NT; i++) {
        float *x = one_forward_logits(g_fm.m, t.tok[i], t.len[i]);
        double text_sum = 0;
        for (int pos = t.prefix[i] - 1; pos <= t.len[i] - 2; pos++, k++) {
            double nll = nll_of(x + (size_t)pos * (size_t)V, V, t.tok[i][pos + 1]);
            cr_assert_eq(f->req[k], i);
            cr_assert_eq(f->pos[k], pos);
            cr_assert(fabs(f->nll_dense[k] - nll) <= 1e-9 * (1 + nll), "text %d pos %d: nll %.17g vs %.17g", i, pos,
                      f->nll_dense[k], nll);
            text_sum += nll;
        }
        double want = exp(text_sum / (t.len[i] - t.prefix[i]));
        cr_assert(fabs(f->text_ppl_dense[i] - want) <= 1e-9 * want, "text %d: ppl %.17g vs %.17g", i,
                  f->text_ppl_dense[i], want);
        sum += text_sum;
        free(x);
    }
    double want = exp(sum / k);
    cr_assert(fabs(f->ppl_dense - want) <= 1e-9 * want, "ppl_dense %.17g vs exp(mean nll) %.17g", f->ppl_dense, want);
    double pol = 0;
    for (int j = 0; j < f->n_tok; j++) pol += f->nll[j];
    cr_assert(fabs(f->ppl - exp(pol / f->n_tok)) <= 1e-12 * f->ppl, "policy ppl is exp(mean nll)");
    llmlab_fid_result_free(f);
}

/* ---- an evicting policy: exact until the first eviction, then not ------------------------------- */

Test(fidelity, window_policy_exact_before_eviction_and_smaller_kv) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-window"));
    g_after_steps = 0;
    llmlab_fid_result *f = measure("test_window", &t, 0);
    int differs = 0, expected_calls = 0;
    for (int k = 0; k < f->n_tok; k++) {
        /* scoring pos sees positions 0..pos: all kept while pos < WIN; the prompt's
         * last row is computed before any eviction */
        int exact = f->pos[k] < WIN || f->pos[k] == t.prefix[f->req[k]] - 1;
        if (exact) cr_assert(f->kl[k] == 0.0, "text %d pos %d: kl %g before any eviction", f->req[k], f->pos[k], f->kl[k]);
        cr_assert(f->kl[k] > -1e-12 && f->top1[k] >= 0 && f->top1[k] <= 1);
        differs += f->kl[k] > 0;
    }
    /* after every accepted token but each text's last (the sequence is finished then) */
    for (int i = 0; i < NT; i++) expected_calls += t.len[i] - t.prefix[i] - 1;
    cr_assert_eq(g_after_steps, expected_calls, "after_step ran after every forced token (%d calls)", g_after_steps);
    cr_assert(differs > 0 && f->mean_kl > 0 && f->top1_rate <= 1.0, "evictions change the distributions");
    cr_assert(f->kv_bytes_max < f->kv_bytes_max_dense, "the window holds fewer KV bytes: %g vs %g", f->kv_bytes_max,
              f->kv_bytes_max_dense);
    cr_assert(f->kv_bytes_mean < f->kv_bytes_mean_dense);
    llmlab_fid_result_free(f);
}

/* ---- memory groups ------------------------------------------------------------------------------ */

Test(fidelity, groups_give_the_numbers_of_one_group) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-groups"));
    llmlab_fid_result *one = measure("test_window", &t, 0), *many = measure("test_window", &t, 1);
    cr_assert_eq(one->groups, 1);
    cr_assert_eq(many->groups, NT, "a bound of 1 byte runs every text alone");
    cr_assert_eq(one->n_tok, many->n_tok);
    for (int k = 0; k < one->n_tok; k++)
        cr_assert(one->kl[k] == many->kl[k] && one->nll[k] == many->nll[k] && one->top1[k] == many->top1[k],
                  "token %d: batching must not change the numbers", k);
    cr_assert(one->ppl == many->ppl && one->mean_kl == many->mean_kl);
    const llmlab_run_result *r = many->run;
    cr_assert_eq(r->n_reqs, NT);
    int steps = 0;
    for (int i = 0; i < NT; i++) {
        cr_assert_eq(r->req_id[i], i);
        cr_assert_eq(r->output_len[i], t.len[i] - t.prefix[i]);
        cr_assert(memcmp(r->output[i], t.tok[i] + t.prefix[i], sizeof(int32_t) * (size_t)r->output_len[i]) == 0);
    }
    for (int s = 1; s < r->n_steps; s++) cr_assert(r->step_start_s[s] >= r->step_start_s[s - 1], "joined steps in time order");
    steps = r->n_steps;
    cr_assert(steps >= one->run->n_steps);
    cr_assert_eq(r->n_tok, one->run->n_tok);
    cr_assert_eq(r->output_tokens, one->run->output_tokens);
    llmlab_fid_result_free(one);
    llmlab_fid_result_free(many);
}

/* ---- (d) bad input ---------------------------------------------------------------------------- */

Test(fidelity, bad_prefix_and_unknown_plugin_are_named) {
    texts t;
    make_texts(&t, fixture_seed("fidelity-bad"));
    llmlab_engine_opts o = engine_opts("dense", 16);
    llmlab_engine *dense, *policy;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_fidelity_engines(g_fm.m, &o, &dense, &policy, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_fid_text ft[NT];
    llmlab_fid_result *f = NULL;
    int bad[2] = {0, t.len[1]};
    for (int b = 0; b < 2; b++) {
        make_fid_texts(ft, &t);
        ft[1].prefix = bad[b];
        cr_assert_eq(llmlab_fidelity(dense, policy, ft, NT, NULL, &f, &err), LLMLAB_EINVAL);
        cr_assert_null(f);
        cr_assert(strstr(err.msg, "fidelity: text 1: prefix") && strstr(err.msg, "[1, 32]"), "%s", err.msg);
        /* the engine's own check, straight through llmlab_engine_score */
        llmlab_request req = {.id = 5, .prompt = t.tok[1], .prompt_len = t.len[1]};
        llmlab_run_result *r = NULL;
        check_ctx c = {0};
        cr_assert_eq(llmlab_engine_score(policy, &req, 1, &bad[b], check_row, &c, &r, &err), LLMLAB_EINVAL);
        cr_assert(strstr(err.msg, "request 5: prefix_len") && strstr(err.msg, "[1, 32]"), "%s", err.msg);
        cr_assert_null(r);
        cr_assert_eq(c.calls, 0);
    }
    make_fid_texts(ft, &t);
    ft[2].len = 1;
    ft[2].prefix = 1;
    cr_assert_eq(llmlab_fidelity(dense, policy, ft, NT, NULL, &f, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "text 2 has 1 tokens"), "%s", err.msg);
    cr_assert_eq(llmlab_fidelity(dense, policy, ft, 0, NULL, &f, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "no texts"), "%s", err.msg);
    llmlab_engine_free(dense);
    llmlab_engine_free(policy);
    o = engine_opts("h2o_typo", 16);
    cr_assert_eq(llmlab_fidelity_engines(g_fm.m, &o, &dense, &policy, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "fidelity: policy engine") && strstr(err.msg, "no attention plugin named 'h2o_typo'") &&
                  strstr(err.msg, "dense"),
              "%s", err.msg);
    cr_assert(dense == NULL && policy == NULL);
}

/* ---- Lua and HDF5 ------------------------------------------------------------------------------- */

Test(fidelity, lua_fidelity_writes_the_fidelity_table) {
    char dir[] = "/tmp/llmlab-fid-XXXXXX", path[512], cmd[1024], h5[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/fid.lua", dir);
    snprintf(h5, sizeof h5, "%s/fid.h5", dir);
    proc_write_file(path,
                    "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 5}, threads = 2}\n"
                    "local w = llmlab.workload{lengths = {40, 25}, seed = 9, vocab = m.vocab}\n"
                    "local r = llmlab.fidelity{model = m, attention = 'dense', workload = w, prefix = {10, 3},\n"
                    "                          kv_tokens = 512, token_budget = 32}\n"
                    "assert(r.kl == 0 and r.top1 == 1 and r.ppl == r.ppl_dense, 'dense vs dense')\n"
                    "assert(r.tokens == 52 and #r.per_token.kl == 52 and #r.texts == 2)\n"
                    "assert(r.per_token.pos[1] == 9 and r.per_token.req[31] == 1 and r.texts[2].prefix == 3)\n"
                    "assert(r.kv_bytes_max > 0 and r.kv_bytes_mean > 0 and r.tok_per_s > 0)\n"
                    "llmlab.results('fid.h5'):write('fid', r)\n"
                    "local ok, e = pcall(llmlab.fidelity, {model = m, attention = 'nope', texts = {'abc'}})\n"
                    "assert(not ok and e:find(\"no attention plugin named 'nope'\"), e)\n"
                    "ok, e = pcall(llmlab.fidelity, {model = m, texts = {'abc'}, prefix = 3})\n"
                    "assert(not ok and e:find('prefix 3 must be in %[1, 2%]'), e)\n"
                    "print(string.format('%.6f', r.ppl))\n");
    char out[4096], errs[8192];
    snprintf(cmd, sizeof cmd, "cd %s && %s run fid.lua", dir, LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, errs, sizeof errs), 0, "%s", errs);
    llmlab_err err = {0};
    double *kl = NULL, *ppl = NULL;
    int64_t *pos = NULL;
    size_t n = 0, n1 = 0, n2 = 0;
    cr_assert_eq(llmlab_results_column_double(h5, "fid", "fidelity", "kl", &kl, &n, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(n, 52);
    for (size_t k = 0; k < n; k++) cr_assert(kl[k] == 0.0);
    cr_assert_eq(llmlab_results_column_int(h5, "fid", "fidelity", "pos", &pos, &n1, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(n1 == 52 && pos[0] == 9 && pos[29] == 38 && pos[30] == 2, "positions of text 0 then text 1");
    cr_assert_eq(llmlab_results_column_double(h5, "fid", "summary", "ppl", &ppl, &n2, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(n2 == 1 && fabs(ppl[0] - atof(out)) <= 1e-6 * ppl[0], "summary ppl %g, script printed %s", ppl[0], out);
    char **cols = NULL;
    size_t nc = 0;
    cr_assert_eq(llmlab_results_columns(h5, "fid", "fidelity", &cols, &nc, &err), LLMLAB_OK, "%s", err.msg);
    const char *want[] = {"req", "pos", "kl", "top1", "nll", "nll_dense"};
    cr_assert_eq(nc, 6);
    for (size_t c = 0; c < nc; c++) cr_assert_str_eq(cols[c], want[c]);
    char *ref = NULL;
    cr_assert_eq(llmlab_results_attr_str(h5, "fid", "settings/fidelity/reference", &ref, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_str_eq(ref, "dense");
    free(ref);
    llmlab_results_free_strs(cols, nc);
    free(kl);
    free(pos);
    free(ppl);
    fixture_rmtree(dir);
}
