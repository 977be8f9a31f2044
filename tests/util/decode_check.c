/* decode_check.c - see decode_check.h. */
#include "decode_check.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

static int rand_in(llmlab_rng *g, int lo, int hi) { return lo + (int)(llmlab_rng_next(g) % (uint64_t)(hi - lo + 1)); }

static void alloc_requests(dc_requests *r, int n, int max_len) {
    r->n = n;
    r->reqs = calloc((size_t)n, sizeof *r->reqs);
    r->tokens = calloc((size_t)n * (size_t)max_len, sizeof *r->tokens);
    cr_assert(r->reqs && r->tokens);
}

void dc_requests_make(dc_requests *r, int n, int vocab, int min_len, int max_len, int min_new, int max_new,
                      uint64_t seed) {
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 777);
    alloc_requests(r, n, max_len);
    for (int i = 0; i < n; i++) {
        int32_t *p = r->tokens + (size_t)i * (size_t)max_len;
        int len = rand_in(&g, min_len, max_len);
        for (int k = 0; k < len; k++) p[k] = (int32_t)(llmlab_rng_next(&g) % (uint64_t)vocab);
        r->reqs[i] = (llmlab_request){.id = i, .prompt = p, .prompt_len = len, .max_new = rand_in(&g, min_new, max_new)};
    }
}

void dc_requests_make_repetitive(dc_requests *r, int n, int vocab, int len, int phrase, int max_new,
                                 uint64_t seed) {
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 778);
    alloc_requests(r, n, len);
    for (int i = 0; i < n; i++) {
        int32_t *p = r->tokens + (size_t)i * (size_t)len;
        for (int k = 0; k < phrase && k < len; k++) p[k] = (int32_t)(llmlab_rng_next(&g) % (uint64_t)vocab);
        for (int k = phrase; k < len; k++) /* repeat the phrase, one token in ten mutated */
            p[k] = llmlab_rng_next(&g) % 10 == 0 ? (int32_t)(llmlab_rng_next(&g) % (uint64_t)vocab) : p[k - phrase];
        r->reqs[i] = (llmlab_request){.id = i, .prompt = p, .prompt_len = len, .max_new = max_new};
    }
}

void dc_requests_make_staggered_repetitive(dc_requests *r, int n, int vocab, uint64_t seed) {
    dc_requests_make_repetitive(r, n, vocab, 48, 6, 40, seed);
    for (int i = 0; i < n; i++) r->reqs[i].max_new = 9 + 5 * i;
}

void dc_requests_make_acceptance_sets(dc_requests *rep, dc_requests *rnd, int vocab, uint64_t seed) {
    dc_requests_make_staggered_repetitive(rep, 8, vocab, seed + 1);
    dc_requests_make(rnd, 8, vocab, 8, 40, 16, 40, seed + 2);
}

void dc_report_acceptance(const char *what, const llmlab_run_result *rep, const llmlab_run_result *rnd) {
    fprintf(stderr, "%s: repetitive prompts: mean accepted %.3f (drafted %.0f, accepted %.0f); "
                    "random prompts: mean accepted %.3f (drafted %.0f, accepted %.0f)\n",
            what, rep->mean_accepted, dc_metric(rep, "drafted"), dc_metric(rep, "accepted"), rnd->mean_accepted,
            dc_metric(rnd, "drafted"), dc_metric(rnd, "accepted"));
    cr_assert_geq(rep->mean_accepted, 1.0, "%s", what);
    cr_assert_geq(rnd->mean_accepted, 1.0, "%s", what);
}

void dc_requests_free(dc_requests *r) {
    free(r->reqs);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

llmlab_engine *dc_engine(const llmlab_model *m, const llmlab_registry *reg, const dc_opts *o) {
    enum { MAXV = 32 };
    llmlab_param_value dec[MAXV], sched[1];
    char keys[MAXV][64];
    cr_assert_leq(o->n_kv, MAXV);
    for (int i = 0; i < o->n_kv; i++) {
        const char *eq = strchr(o->kv[i], '=');
        cr_assert(eq, "decode_check: '%s' is not key=value", o->kv[i]);
        snprintf(keys[i], sizeof keys[i], "%.*s", (int)(eq - o->kv[i]), o->kv[i]);
        llmlab_param_value_from_text(&dec[i], keys[i], eq + 1);
    }
    char mb[16];
    snprintf(mb, sizeof mb, "%d", o->max_batch > 0 ? o->max_batch : 8);
    llmlab_param_value_from_text(&sched[0], "max_batch", mb);
    llmlab_engine_opts eo = {.registry = reg,
                             .decoding = {o->decoding, dec, o->n_kv},
                             .sched = {o->sched ? o->sched : "continuous", sched, 1},
                             .seed = o->seed,
                             .n_threads = o->threads > 0 ? o->threads : 2,
                             .kv_tokens = 8192,
                             .max_seqs = 16,
                             .token_budget = o->token_budget > 0 ? o->token_budget : 256,
                             .on_finish = o->on_finish,
                             .on_finish_user = o->on_finish_user};
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_create(&e, m, &eo, &err), LLMLAB_OK, "engine with decoding '%s': %s",
                 o->decoding ? o->decoding : "autoregressive", err.msg);
    return e;
}

llmlab_run_result *dc_run(const llmlab_model *m, const llmlab_registry *reg, const dc_opts *o,
                          const dc_requests *r) {
    llmlab_engine *e = dc_engine(m, reg, o);
    llmlab_run_result *res = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_engine_run(e, r->reqs, r->n, &res, &err), LLMLAB_OK, "run with decoding '%s': %s",
                 o->decoding ? o->decoding : "autoregressive", err.msg);
    llmlab_engine_free(e);
    return res;
}

void dc_assert_same(const llmlab_run_result *want, const llmlab_run_result *got, const char *what) {
    cr_assert_eq(want->n_reqs, got->n_reqs, "%s: request count", what);
    for (int i = 0; i < want->n_reqs; i++) {
        cr_assert_eq(want->output_len[i], got->output_len[i], "%s: request %d output length %d, want %d", what,
                     want->req_id[i], got->output_len[i], want->output_len[i]);
        for (int k = 0; k < want->output_len[i]; k++)
            cr_assert_eq(want->output[i][k], got->output[i][k], "%s: request %d token %d is %d, greedy gives %d",
                         what, want->req_id[i], k, got->output[i][k], want->output[i][k]);
    }
}

double dc_metric(const llmlab_run_result *r, const char *name) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->metric_names[m], name)) {
            double s = 0;
            for (int i = 0; i < r->n_reqs; i++) s += r->metrics[(size_t)m * (size_t)(r->n_reqs ? r->n_reqs : 1) + (size_t)i];
            return s;
        }
    return 0;
}
