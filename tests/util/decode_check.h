/* decode_check.h - running requests through an engine with a chosen decoding
 * plugin and comparing the outputs with autoregressive greedy decoding: the
 * property every lossless method must have. */
#ifndef LLMLAB_TEST_DECODE_CHECK_H
#define LLMLAB_TEST_DECODE_CHECK_H

#include "core/engine.h"

/* A decoding plugin with its values written as "key=value" strings. */
typedef struct {
    const char *decoding;        /* NULL = autoregressive */
    const char *const *kv;       /* "key=value" strings for the decoding plugin */
    int n_kv;
    const char *sched;           /* NULL = "continuous" */
    int max_batch;               /* sched max_batch; 0 = 8 */
    int token_budget;            /* 0 = 256 */
    int threads;                 /* 0 = 2 */
    uint64_t seed;
    llmlab_finish_fn on_finish;  /* optional */
    void *on_finish_user;
} dc_opts;

/* n random prompts (lengths in [min_len, max_len]) over vocab, each with its
 * own max_new in [min_new, max_new], so sequences finish at different times.
 * The requests point into *storage; free it with dc_requests_free. */
typedef struct {
    llmlab_request *reqs;
    int32_t *tokens;
    int n;
} dc_requests;

void dc_requests_make(dc_requests *r, int n, int vocab, int min_len, int max_len, int min_new, int max_new,
                      uint64_t seed);
/* Prompts that repeat their own n-grams (for prompt-lookup style methods): each is
 * a random phrase of `phrase` tokens repeated with small mutations. */
void dc_requests_make_repetitive(dc_requests *r, int n, int vocab, int len, int phrase, int max_new,
                                 uint64_t seed);
/* The repetitive set the n-gram tests share: 48-token prompts repeating a
 * 6-token phrase, max_new 9, 14, 19, ... so sequences finish apart. */
void dc_requests_make_staggered_repetitive(dc_requests *r, int n, int vocab, uint64_t seed);
void dc_requests_free(dc_requests *r);
/* The two prompt sets acceptance figures are quoted on: 8 staggered repetitive
 * requests and 8 random ones (prompts 8..40, max_new 16..40). */
void dc_requests_make_acceptance_sets(dc_requests *rep, dc_requests *rnd, int vocab, uint64_t seed);
/* Prints one line of acceptance figures (mean accepted, drafted, accepted) for
 * runs on those two sets, and asserts neither falls below 1 token per forward. */
void dc_report_acceptance(const char *what, const llmlab_run_result *rep, const llmlab_run_result *rnd);

/* Creates an engine (asserting success) on m with the options. */
llmlab_engine *dc_engine(const llmlab_model *m, const llmlab_registry *reg, const dc_opts *o);
/* Runs the requests through a fresh engine; asserts success. */
llmlab_run_result *dc_run(const llmlab_model *m, const llmlab_registry *reg, const dc_opts *o,
                          const dc_requests *r);
/* Asserts token-for-token equal outputs; `what` names the comparison. */
void dc_assert_same(const llmlab_run_result *want, const llmlab_run_result *got, const char *what);
/* Sum of plugin counter `name` over requests (0 when absent). */
double dc_metric(const llmlab_run_result *r, const char *name);

#endif
