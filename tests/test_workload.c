/* test_workload.c - the workload generator (core/workload.c): arrival and length
 * distributions against their means and CVs over large samples (a fixed seed
 * and a fresh one), reproducibility from the seed, independent streams, trace
 * files and their errors, the HDF5 round trip of a request list, and
 * llmlab.workload{...} in Lua (down to e:run -> results:write -> replay). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lua_api.h"
#include "core/registry.h"
#include "core/results.h"
#include "core/settings.h"
#include "core/tokenizer.h"
#include "core/workload.h"
#include "util/fixture_model.h"
#include "util/proc.h"
#include "util/tmpdir.h"

static char *g_dir;

static void setup(void) { g_dir = tmpdir_make(); }
static void teardown(void) { tmpdir_remove(g_dir); }
TestSuite(workload, .init = setup, .fini = teardown);

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static llmlab_workload *gen(const llmlab_workload_spec *s) {
    llmlab_workload *w = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_workload_generate(s, NULL, 0, &w, &err), LLMLAB_OK, "%s", err.msg);
    return w;
}

static llmlab_status gen_err(const llmlab_workload_spec *s, llmlab_err *err) {
    llmlab_workload *w = NULL;
    llmlab_status st = llmlab_workload_generate(s, NULL, 0, &w, err);
    llmlab_workload_free(w);
    return st;
}

/* Mean and squared coefficient of variation of x[n]. */
static void moments(const double *x, int n, double *mean, double *cv2) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    v /= n - 1;
    *mean = m;
    *cv2 = v / (m * m);
}

/* The gaps between consecutive arrivals. */
static double *gaps(const llmlab_workload *w) {
    double *g = malloc(sizeof(double) * (size_t)w->n);
    for (int i = 1; i < w->n; i++) g[i - 1] = w->reqs[i].arrival_s - w->reqs[i - 1].arrival_s;
    return g;
}

/* Two seeds per statistical test: a fixed one and a fresh one (printed). */
static uint64_t seeds[2];
static void pick_seeds(const char *name) {
    seeds[0] = 12345;
    seeds[1] = fixture_seed(name);
}

Test(workload, poisson_and_gamma_gaps_have_the_asked_mean_and_cv) {
    pick_seeds("workload-arrivals");
    enum { N = 60000 };
    static const double bursts[] = {1.0, 0.25, 4.0};
    for (int si = 0; si < 2; si++)
        for (int b = 0; b < 4; b++) {
            llmlab_workload_spec s;
            llmlab_workload_spec_init(&s);
            s.n = N;
            s.seed = seeds[si];
            s.rate = 8.0;
            s.lengths_only = 1;
            s.arrival = b == 0 ? LLMLAB_ARRIVAL_POISSON : LLMLAB_ARRIVAL_GAMMA;
            s.burstiness = b == 0 ? 1.0 : bursts[b - 1];
            llmlab_workload *w = gen(&s);
            cr_assert_eq(w->reqs[0].arrival_s, 0.0, "the first request arrives at once");
            double *g = gaps(w), mean, cv2;
            moments(g, N - 1, &mean, &cv2);
            double want_cv2 = 1.0 / s.burstiness;
            /* standard errors: mean ~ sqrt(cv2 / N); CV^2 ~ cv2 sqrt((2 + 6 / k) / N) */
            double se_mean = sqrt(want_cv2 / N) / s.rate, se_cv2 = want_cv2 * sqrt((2 + 6 * want_cv2) / N);
            cr_assert_lt(fabs(mean - 1 / s.rate), 5 * se_mean, "seed %llu burstiness %g: mean gap %g, want %g",
                         (unsigned long long)s.seed, s.burstiness, mean, 1 / s.rate);
            cr_assert_lt(fabs(cv2 - want_cv2), 5 * se_cv2, "seed %llu burstiness %g: CV^2 %g, want %g",
                         (unsigned long long)s.seed, s.burstiness, cv2, want_cv2);
            for (int i = 1; i < N; i++) cr_assert_geq(w->reqs[i].arrival_s, w->reqs[i - 1].arrival_s);
            free(g);
            llmlab_workload_free(w);
        }
}

Test(workload, length_distributions_match_their_parameters) {
    pick_seeds("workload-lengths");
    enum { N = 50000 };
    const char *emp = path_in("lengths.txt");
    proc_write_file(emp, "# lengths seen\n5\n10\n\n10\n100  # a long one\n");
    for (int si = 0; si < 2; si++) {
        llmlab_workload_spec s;
        llmlab_workload_spec_init(&s);
        s.n = N;
        s.seed = seeds[si];
        s.lengths_only = 1;
        double x[N], mean, cv2;
        /* uniform [10, 20]: mean 15, variance (11^2 - 1) / 12 = 10 */
        s.prompt = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 10, 20, NULL, 1, 0};
        /* lognormal mean 200, sigma 0.5: CV^2 = exp(sigma^2) - 1 */
        s.output = (llmlab_len_dist){LLMLAB_LEN_LOGNORMAL, 200, 0.5, NULL, 1, 0};
        llmlab_workload *w = gen(&s);
        int seen[21] = {0};
        for (int i = 0; i < N; i++) {
            cr_assert(w->reqs[i].prompt_len >= 10 && w->reqs[i].prompt_len <= 20);
            seen[w->reqs[i].prompt_len]++;
            x[i] = w->reqs[i].prompt_len;
        }
        for (int k = 10; k <= 20; k++)
            cr_assert_gt(seen[k], N / 11 - 5 * sqrt(N / 11.0), "uniform value %d is rare", k);
        moments(x, N, &mean, &cv2);
        cr_assert_lt(fabs(mean - 15), 5 * sqrt(10.0 / N), "uniform mean %g", mean);
        for (int i = 0; i < N; i++) x[i] = w->reqs[i].max_new;
        moments(x, N, &mean, &cv2);
        double want = exp(0.25) - 1;
        cr_assert_lt(fabs(mean - 200) / 200, 5 * sqrt(want / N), "lognormal mean %g, want 200 (seed %llu)", mean,
                     (unsigned long long)s.seed);
        cr_assert_lt(fabs(cv2 - want), 0.05, "lognormal CV^2 %g, want %g", cv2, want);
        llmlab_workload_free(w);
        /* zipf s = 1.2 on 1..1000: P(1) = 1 / H, H = sum k^-1.2; empirical: the file's values */
        s.prompt = (llmlab_len_dist){LLMLAB_LEN_ZIPF, 1.2, 1000, NULL, 1, 0};
        s.output = (llmlab_len_dist){LLMLAB_LEN_EMPIRICAL, 0, 0, emp, 0, 0};
        w = gen(&s);
        double H = 0;
        for (int k = 1; k <= 1000; k++) H += pow(k, -1.2);
        int ones = 0, twos = 0, e5 = 0, e10 = 0, e100 = 0;
        for (int i = 0; i < N; i++) {
            int p = w->reqs[i].prompt_len, o = w->reqs[i].max_new;
            cr_assert(p >= 1 && p <= 1000, "zipf draw %d outside 1..1000", p);
            ones += p == 1, twos += p == 2;
            cr_assert(o == 5 || o == 10 || o == 100, "empirical draw %d is not in the file", o);
            e5 += o == 5, e10 += o == 10, e100 += o == 100;
        }
        double p1 = 1 / H, p2 = pow(2, -1.2) / H;
        cr_assert_lt(fabs((double)ones / N - p1), 5 * sqrt(p1 * (1 - p1) / N), "zipf P(1) %g, want %g",
                     (double)ones / N, p1);
        cr_assert_lt(fabs((double)twos / N - p2), 5 * sqrt(p2 * (1 - p2) / N), "zipf P(2)");
        cr_assert_lt(fabs(e10 / (double)N - 0.5), 5 * sqrt(0.25 / N), "empirical: 10 is half the file");
        cr_assert_lt(fabs(e5 / (double)N - 0.25), 5 * sqrt(0.1875 / N), "empirical: 5 a quarter");
        cr_assert_lt(fabs(e100 / (double)N - 0.25), 5 * sqrt(0.1875 / N), "empirical: 100 a quarter");
        llmlab_workload_free(w);
    }
}

Test(workload, clamps_classes_and_cancellations) {
    pick_seeds("workload-classes");
    enum { N = 40000 };
    for (int si = 0; si < 2; si++) {
        llmlab_workload_spec s;
        llmlab_workload_spec_init(&s);
        s.n = N;
        s.seed = seeds[si];
        s.lengths_only = 1;
        s.prompt = (llmlab_len_dist){LLMLAB_LEN_LOGNORMAL, 100, 1.5, NULL, 20, 300};
        static const double shares[] = {0.7, 0.2, 0.1};
        static const int values[] = {5, 1, 0};
        s.class_shares = shares;
        s.class_values = values;
        s.n_classes = 3;
        s.cancel_frac = 0.3;
        s.cancel_min_s = 1.0;
        s.cancel_max_s = 2.0;
        llmlab_workload *w = gen(&s);
        int count[6] = {0}, cancelled = 0, lo = 0, hi = 0;
        for (int i = 0; i < N; i++) {
            const llmlab_request *q = &w->reqs[i];
            cr_assert(q->prompt_len >= 20 && q->prompt_len <= 300, "clamped to [20, 300]: %d", q->prompt_len);
            lo += q->prompt_len == 20, hi += q->prompt_len == 300;
            cr_assert(q->priority == 5 || q->priority == 1 || q->priority == 0);
            count[q->priority]++;
            if (q->cancel_after_s > 0) {
                cancelled++;
                cr_assert(q->cancel_after_s >= 1.0 && q->cancel_after_s <= 2.0);
            }
        }
        cr_assert(lo > 0 && hi > 0, "both clamps are hit by a wide lognormal");
        const double want[] = {0.1, 0.2, 0, 0, 0, 0.7};
        for (int v = 0; v < 6; v++)
            cr_assert_lt(fabs(count[v] / (double)N - want[v]), 5 * sqrt(want[v] * (1 - want[v]) / N) + 1e-12,
                         "class of priority %d: share %g, want %g", v, count[v] / (double)N, want[v]);
        cr_assert_lt(fabs(cancelled / (double)N - 0.3), 5 * sqrt(0.21 / N), "cancel fraction");
        llmlab_workload_free(w);
    }
}

Test(workload, closed_loop_releases_each_client_after_its_previous_request) {
    llmlab_workload_spec s;
    llmlab_workload_spec_init(&s);
    s.n = 10;
    s.arrival = LLMLAB_ARRIVAL_CLOSED;
    s.concurrency = 3;
    s.think_s = 0.5;
    llmlab_workload *w = gen(&s);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(w->reqs[i].released_by, i < 3 ? 0 : i - 2, "request %d", i);
        cr_assert_eq(w->reqs[i].arrival_s, i < 3 ? 0.0 : 0.5);
        cr_assert_eq(w->reqs[i].id, i);
    }
    llmlab_workload_free(w);
}

static int same_requests(const llmlab_workload *a, const llmlab_workload *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const llmlab_request *x = &a->reqs[i], *y = &b->reqs[i];
        if (x->id != y->id || x->prompt_len != y->prompt_len || x->max_new != y->max_new ||
            x->arrival_s != y->arrival_s || x->priority != y->priority || x->cancel_after_s != y->cancel_after_s ||
            x->released_by != y->released_by || x->stop_at_eos != y->stop_at_eos || !x->prompt != !y->prompt)
            return 0;
        if (x->prompt && memcmp(x->prompt, y->prompt, sizeof(int32_t) * (size_t)x->prompt_len)) return 0;
    }
    return 1;
}

static void serving_spec(llmlab_workload_spec *s, uint64_t seed) {
    llmlab_workload_spec_init(s);
    s->n = 300;
    s->seed = seed;
    s->arrival = LLMLAB_ARRIVAL_GAMMA;
    s->rate = 3;
    s->burstiness = 0.5;
    s->prompt = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 1, 64, NULL, 1, 0};
    s->output = (llmlab_len_dist){LLMLAB_LEN_ZIPF, 1.1, 50, NULL, 1, 0};
    s->vocab_lo = 3;
    s->vocab = 300;
    static const double shares[] = {1, 3};
    s->class_shares = shares;
    s->n_classes = 2;
    s->cancel_frac = 0.1;
    s->cancel_min_s = s->cancel_max_s = 4.0;
}

Test(workload, the_seed_reproduces_the_list_and_streams_are_independent) {
    uint64_t seed = fixture_seed("workload-repro");
    llmlab_workload_spec s;
    serving_spec(&s, seed);
    llmlab_workload *a = gen(&s), *b = gen(&s);
    cr_assert(same_requests(a, b), "the same spec and seed give the same list");
    for (int64_t k = 0; k < a->n_tokens; k++) cr_assert(a->tokens[k] >= 3 && a->tokens[k] < 300, "token in [3, 300)");
    s.seed = seed + 1;
    llmlab_workload *c = gen(&s);
    cr_assert(!same_requests(a, c), "another seed gives another list");
    /* a different output distribution leaves arrivals, prompts and classes as they were */
    serving_spec(&s, seed);
    s.output = (llmlab_len_dist){LLMLAB_LEN_FIXED, 7, 0, NULL, 1, 0};
    llmlab_workload *d = gen(&s);
    int outputs_differ = 0;
    for (int i = 0; i < a->n; i++) {
        cr_assert_eq(a->reqs[i].arrival_s, d->reqs[i].arrival_s);
        cr_assert_eq(a->reqs[i].prompt_len, d->reqs[i].prompt_len);
        cr_assert_eq(a->reqs[i].priority, d->reqs[i].priority);
        cr_assert(!memcmp(a->reqs[i].prompt, d->reqs[i].prompt, sizeof(int32_t) * (size_t)a->reqs[i].prompt_len));
        outputs_differ |= d->reqs[i].max_new != a->reqs[i].max_new;
    }
    cr_assert(outputs_differ);
    llmlab_workload_free(a);
    llmlab_workload_free(b);
    llmlab_workload_free(c);
    llmlab_workload_free(d);
}

Test(workload, bad_specs_name_the_parameter) {
    llmlab_workload_spec s;
    llmlab_err err = {0};
    llmlab_workload_spec_init(&s);
    s.arrival = LLMLAB_ARRIVAL_POISSON;
    s.rate = 0;
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "rate 0"), "%s", err.msg);
    s.arrival = LLMLAB_ARRIVAL_GAMMA, s.rate = 1, s.burstiness = -1;
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "burstiness -1"), "%s", err.msg);
    llmlab_workload_spec_init(&s);
    s.prompt = (llmlab_len_dist){LLMLAB_LEN_UNIFORM, 9, 3, NULL, 1, 0};
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "prompt length uniform [9, 3]"), "%s", err.msg);
    s.prompt = (llmlab_len_dist){LLMLAB_LEN_ZIPF, 1.1, 1e9, NULL, 1, 0};
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "zipf") && strstr(err.msg, "max"), "%s", err.msg);
    s.prompt = (llmlab_len_dist){LLMLAB_LEN_FIXED, 8, 0, NULL, 1, 0};
    s.output = (llmlab_len_dist){LLMLAB_LEN_LOGNORMAL, -3, 1, NULL, 1, 0};
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "output length lognormal") && strstr(err.msg, "mean -3"), "%s", err.msg);
    s.output = (llmlab_len_dist){LLMLAB_LEN_EMPIRICAL, 0, 0, path_in("missing.txt"), 1, 0};
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EIO);
    cr_assert(strstr(err.msg, "missing.txt"), "%s", err.msg);
    const char *bad = path_in("bad_lengths.txt");
    proc_write_file(bad, "12\n\n7x\n");
    s.output.file = bad;
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EFORMAT);
    cr_assert(strstr(err.msg, "bad_lengths.txt:3:") && strstr(err.msg, "'7x'"), "%s", err.msg);
    llmlab_workload_spec_init(&s);
    s.vocab = 0;
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "vocab"), "%s", err.msg);
    llmlab_workload_spec_init(&s);
    static const double zero[] = {0, 0};
    s.class_shares = zero, s.n_classes = 2;
    cr_assert_eq(gen_err(&s, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "shares"), "%s", err.msg);
}

/* ---- traces ------------------------------------------------------------------------------ */

static llmlab_workload *trace_gen(const char *file, int n, llmlab_err *err, llmlab_status *st) {
    llmlab_workload_spec s;
    llmlab_workload_spec_init(&s);
    s.arrival = LLMLAB_ARRIVAL_TRACE;
    s.trace = file;
    s.n = n;
    s.vocab = 1000;
    s.time_scale = 0.5;
    llmlab_workload *w = NULL;
    *st = llmlab_workload_generate(&s, NULL, 0, &w, err);
    return w;
}

Test(workload, csv_and_jsonl_traces_replay_arrivals_lengths_and_texts) {
    const char *csv = path_in("trace.csv");
    proc_write_file(csv, "timestamp,prompt_len,output_len,prompt,priority\n"
                         "100.0,12,5,,\n"
                         "100.5,,3,\"hello, \"\"world\"\"\",2\n"
                         "\n"
                         "102,7,0,,1\r\n");
    llmlab_err err = {0};
    llmlab_status st;
    llmlab_workload *w = trace_gen(csv, 0, &err, &st);
    cr_assert_eq(st, LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(w->n, 3);
    cr_assert_float_eq(w->reqs[1].arrival_s, 0.25, 1e-12, "shifted to 0, scaled by 0.5");
    cr_assert_float_eq(w->reqs[2].arrival_s, 1.0, 1e-12);
    cr_assert(w->reqs[0].prompt_len == 12 && w->reqs[0].prompt && w->reqs[0].max_new == 5);
    cr_assert(w->texts && w->texts[1] && !strcmp(w->texts[1], "hello, \"world\""), "quoted text with a comma");
    cr_assert_null(w->reqs[1].prompt, "a text waits to be encoded");
    cr_assert(w->reqs[1].priority == 2 && w->reqs[2].priority == 1 && w->reqs[0].priority == 0);
    llmlab_tokenizer *tok = NULL;
    cr_assert_eq(llmlab_tokenizer_bytes(&tok, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_workload_encode(w, tok, 0, &err), LLMLAB_OK, "%s", err.msg);
    int32_t *ids = NULL;
    int n_ids = 0;
    cr_assert_eq(llmlab_tokenizer_encode(tok, "hello, \"world\"", 14, 0, &ids, &n_ids, &err), LLMLAB_OK);
    cr_assert_eq(w->reqs[1].prompt_len, n_ids);
    cr_assert(!memcmp(w->reqs[1].prompt, ids, sizeof(int32_t) * (size_t)n_ids), "the text's tokens");
    cr_assert(w->reqs[0].prompt && w->reqs[0].prompt_len == 12, "drawn prompts survive the encoding");
    free(ids);
    llmlab_workload_free(w);
    const char *jl = path_in("trace.jsonl");
    proc_write_file(jl, "{\"arrival\": 3.0, \"prompt\": [5, 6, 7], \"max_new\": 4, \"cancel_after_s\": 1.5}\n"
                        "{\"arrival\": 3.0, \"input_len\": 20, \"output_tokens\": 9}\n"
                        "{\"arrival\": 4.5, \"text\": \"abc\", \"output_len\": 2}\n");
    w = trace_gen(jl, 2, &err, &st);
    cr_assert_eq(st, LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(w->n, 2, "n = 2 reads the first two");
    cr_assert(w->reqs[0].prompt_len == 3 && w->reqs[0].prompt[2] == 7 && w->reqs[0].cancel_after_s == 1.5);
    cr_assert(w->reqs[1].prompt_len == 20 && w->reqs[1].max_new == 9 && w->reqs[1].arrival_s == 0);
    llmlab_workload_free(w);
    llmlab_workload_spec s;
    llmlab_workload_spec_init(&s);
    s.arrival = LLMLAB_ARRIVAL_TRACE, s.trace = jl;
    cr_assert_eq(llmlab_workload_generate(&s, tok, 0, &w, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(w->reqs[2].prompt && w->reqs[2].prompt_len == 3 && !w->texts, "texts encoded with the given tokenizer");
    llmlab_workload_free(w);
    llmlab_tokenizer_free(tok);
}

Test(workload, trace_errors_name_file_and_line) {
    static const struct {
        const char *name, *text, *want[2];
    } cases[] = {
        {"nohdr.csv", "arrival_s,output_len\n0,1\n", {"nohdr.csv:1:", "prompt_len or prompt"}},
        {"badnum.csv", "arrival_s,prompt_len,output_len\n0,4,2\n1,x4,2\n", {"badnum.csv:3:", "prompt_len 'x4'"}},
        {"order.csv", "arrival_s,prompt_len,output_len\n5,4,2\n\n4,4,2\n", {"order.csv:4:", "earlier"}},
        {"quote.csv", "arrival_s,prompt,output_len\n0,\"open,2\n", {"quote.csv:2:", "quote"}},
        {"short.csv", "arrival_s,prompt_len,output_len\n0,4\n", {"short.csv:2:", "output_len"}},
        {"empty.csv", "arrival_s,prompt_len,output_len\n", {"empty.csv", "no requests"}},
        {"obj.jsonl", "{\"arrival\": 0, \"prompt_len\": 3, \"output_len\": 1}\n[1, 2]\n",
         {"obj.jsonl:2:", "JSON object"}},
        {"type.jsonl", "{\"arrival\": \"soon\", \"prompt_len\": 3, \"output_len\": 1}\n", {"type.jsonl:1:", "number"}},
        {"noout.jsonl", "{\"arrival\": 0, \"prompt_len\": 3}\n", {"noout.jsonl:1:", "output_len"}},
        {"ids.jsonl", "{\"arrival\": 0, \"prompt\": [1, -2], \"output_len\": 1}\n", {"ids.jsonl:1:", "token 1"}},
        {"vocab.jsonl", "{\"arrival\": 0, \"prompt\": [1, 5000], \"output_len\": 1}\n", {"vocab.jsonl", "vocabulary"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *p = path_in(cases[c].name);
        proc_write_file(p, cases[c].text);
        llmlab_err err = {0};
        llmlab_status st;
        llmlab_workload *w = trace_gen(p, 0, &err, &st);
        cr_assert_neq(st, LLMLAB_OK, "%s was accepted", cases[c].name);
        cr_assert_null(w);
        for (int k = 0; k < 2; k++)
            cr_assert(strstr(err.msg, cases[c].want[k]), "%s: '%s' lacks '%s'", cases[c].name, err.msg,
                      cases[c].want[k]);
    }
    llmlab_err err = {0};
    llmlab_status st;
    cr_assert_null(trace_gen(path_in("nope.csv"), 0, &err, &st));
    cr_assert(st == LLMLAB_EIO && strstr(err.msg, "nope.csv"), "%s", err.msg);
}

/* ---- HDF5 ---------------------------------------------------------------------------------- */

Test(workload, hdf5_round_trip_gives_the_identical_list) {
    uint64_t seed = fixture_seed("workload-hdf5");
    llmlab_workload_spec s;
    serving_spec(&s, seed);
    llmlab_workload *w = gen(&s);
    /* a lengths-only request and a closed-loop release in the mix */
    llmlab_request extra[3];
    memcpy(extra, w->reqs, sizeof extra);
    extra[1].prompt = NULL;
    extra[2].released_by = 1;
    llmlab_workload *mixed = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_workload_from_requests(extra, 3, &mixed, &err), LLMLAB_OK);
    const char *file = path_in("runs.h5");
    const llmlab_workload *lists[2] = {w, mixed};
    const char *names[2] = {"big", "mixed"};
    for (int k = 0; k < 2; k++) {
        llmlab_run *run = llmlab_run_create(names[k], &err);
        cr_assert_not_null(run, "%s", err.msg);
        cr_assert_eq(llmlab_workload_record(run, lists[k]->reqs, lists[k]->n, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_results_write(file, run, &err), LLMLAB_OK, "%s", err.msg);
        llmlab_run_free(run);
        llmlab_workload *back = NULL;
        cr_assert_eq(llmlab_workload_read(file, names[k], &back, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert(same_requests(lists[k], back), "run '%s': the replayed list differs", names[k]);
        llmlab_workload_free(back);
    }
    llmlab_workload *none = NULL;
    cr_assert_neq(llmlab_workload_read(file, "absent", &none, &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "absent"), "%s", err.msg);
    llmlab_workload_free(w);
    llmlab_workload_free(mixed);
}

/* ---- Lua ----------------------------------------------------------------------------------- */

static llmlab_status lua_script(const char *name, const char *text, llmlab_err *err) {
    const char *path = path_in(name);
    proc_write_file(path, text);
    llmlab_settings set;
    llmlab_settings_defaults(&set);
    llmlab_registry *reg = NULL;
    cr_assert_eq(llmlab_registry_create(&reg, err), LLMLAB_OK);
    llmlab_lua_opts o = {.script_path = path, .settings = &set, .registry = reg};
    llmlab_status st = llmlab_lua_run(&o, err);
    llmlab_registry_free(reg);
    llmlab_settings_free(&set);
    return st;
}

Test(workload, lua_workloads_generate_legacy_lists_and_errors) {
    llmlab_err err = {0};
    const char *script =
        "local spec = {n = 40, seed = 9, arrival = 'poisson', rate = 20, prompt_len = {'uniform', 4, 12},\n"
        "  output_len = {'lognormal', 6, 0.3, max = 9}, vocab = 100, priorities = {0.5, 0.5},\n"
        "  cancel = {frac = 0.25, after_s = {1, 2}}}\n"
        "local w, w2 = llmlab.workload(spec), llmlab.workload(spec)\n"
        "assert(w.kind == 'workload' and w.n == 40 and #w.requests == 40)\n"
        "local last = -1\n"
        "for i, r in ipairs(w.requests) do\n"
        "  assert(#r.prompt == r.prompt_len and r.prompt_len >= 4 and r.prompt_len <= 12)\n"
        "  for _, t in ipairs(r.prompt) do assert(t >= 0 and t < 100) end\n"
        "  assert(r.max_new >= 1 and r.max_new <= 9 and r.arrival_s >= last)\n"
        "  assert(r.priority == 0 or r.priority == 1)\n"
        "  assert(r.cancel_after_s == 0 or (r.cancel_after_s >= 1 and r.cancel_after_s <= 2))\n"
        "  last = r.arrival_s\n"
        "  local q = w2.requests[i]\n"
        "  assert(q.arrival_s == r.arrival_s and q.max_new == r.max_new and q.prompt[1] == r.prompt[1])\n"
        "end\n"
        "assert(w.requests[1].arrival_s == 0)\n"
        "local c = llmlab.workload{n = 5, arrival = 'closed', concurrency = 2, think_s = 0.1, tokens = false}\n"
        "assert(c.requests[5].released_by == 3 and c.requests[2].released_by == 0 and c.requests[1].prompt == nil)\n"
        "local l = llmlab.workload{lengths = {3, 5}, max_new = {4, 0}, seed = 1, vocab = 50}\n"
        "assert(#l.requests[1].prompt == 3 and #l.requests[2].prompt == 5 and l.requests[2].max_new == 0)\n"
        "local p = llmlab.workload{prompts = {'hi there', {1, 2, 3}}, max_new = 6}\n"
        "assert(p.requests[1].prompt == 'hi there' and p.requests[1].text == 'hi there')\n"
        "assert(p.requests[2].prompt_len == 3 and p.requests[2].max_new == 6)\n";
    cr_assert_eq(lua_script("wl.lua", script, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_neq(lua_script("bad1.lua", "llmlab.workload{arrival = 'poison'}\n", &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "bad1.lua:1:") && strstr(err.msg, "'poison'"), "%s", err.msg);
    cr_assert_neq(lua_script("bad2.lua", "llmlab.workload{n = 3,\n prompt_len = {'zipf', 0, 10}}\n", &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "bad2.lua:") && strstr(err.msg, "zipf"), "%s", err.msg);
    cr_assert_neq(lua_script("bad3.lua", "llmlab.workload{trace = 'no_such.csv'}\n", &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "no_such.csv"), "%s", err.msg);
    cr_assert_neq(lua_script("bad4.lua", "llmlab.workload{rat = 3}\n", &err), LLMLAB_OK);
    cr_assert(strstr(err.msg, "unknown field 'rat'"), "%s", err.msg);
}

Test(workload, lua_run_records_the_workload_and_replay_gives_it_back, .timeout = 120) {
    llmlab_err err = {0};
    char script[4096];
    snprintf(script, sizeof script,
             "local m = llmlab.model{path = llmlab.synth{dir = '%s/m', preset = 'tiny', seed = 3}}\n"
             "local e = llmlab.engine{model = m, sched = {'priority'}, kv_tokens = 2048}\n"
             "local w = llmlab.workload{n = 6, seed = 4, model = m, arrival = 'poisson', rate = 200,\n"
             "  prompt_len = {'uniform', 2, 9}, output_len = {'uniform', 1, 4}, priorities = {0.5, 0.5}}\n"
             "local r = e:run(w)\n"
             "llmlab.results('%s/runs.h5'):write('r1', r)\n"
             "local back = llmlab.workload{replay = '%s/runs.h5', run = 'r1'}\n"
             "assert(#back.requests == 6)\n"
             "for i, q in ipairs(back.requests) do\n"
             "  local o = w.requests[i]\n"
             "  assert(q.arrival_s == o.arrival_s and q.max_new == o.max_new and q.priority == o.priority)\n"
             "  assert(#q.prompt == #o.prompt)\n"
             "  for k = 1, #o.prompt do assert(q.prompt[k] == o.prompt[k]) end\n"
             "end\n"
             "local r2 = e:run(back)\n"
             "for i = 1, 6 do\n"
             "  assert(#r2.requests[i].tokens == #r.requests[i].tokens)\n"
             "  for k = 1, #r.requests[i].tokens do assert(r2.requests[i].tokens[k] == r.requests[i].tokens[k]) end\n"
             "end\n",
             g_dir, g_dir, g_dir);
    cr_assert_eq(lua_script("replay.lua", script, &err), LLMLAB_OK, "%s", err.msg);
}
