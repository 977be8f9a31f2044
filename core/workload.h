/* workload.h - serving workloads: request lists with arrival times, lengths,
 * priority classes and cancellations, seeded and reproducible; trace replay; the
 * exact list stored in (and read back from) an HDF5 run.
 *
 * Arrivals (llmlab_arrival_kind):
 *   at_once  every request at t = 0 (an offline batch);
 *   poisson  exponential gaps at `rate` requests/s;
 *   gamma    gamma gaps with mean 1/rate and shape `burstiness`, as vLLM's serving
 *            benchmark: the gaps' CV^2 is 1/burstiness, so burstiness 1 is Poisson,
 *            < 1 burstier, > 1 more regular;
 *   closed   `concurrency` clients each sending its next request think_s seconds
 *            after its previous one finished or was cancelled (llmlab_request
 *            released_by); the first `concurrency` requests arrive at 0;
 *   trace    arrival times (and lengths or texts) from a CSV or JSONL file.
 * Lengths (llmlab_len_dist): fixed, uniform integers, lognormal (mean, sigma of the
 * underlying normal), zipf (P(k) ~ k^-s on 1..max) or empirical (uniform draws from
 * the values in a file).
 * Each quantity draws from its own random stream of the seed (arrivals, prompt
 * lengths, output lengths, tokens, classes, cancellations), so changing one
 * distribution leaves the draws of the others as they were. */
#ifndef LLMLAB_WORKLOAD_H
#define LLMLAB_WORKLOAD_H

#include <stdint.h>

#include "engine.h"
#include "results.h"

struct llmlab_tokenizer;

typedef enum {
    LLMLAB_LEN_FIXED = 0,     /* a */
    LLMLAB_LEN_UNIFORM = 1,   /* integers in [a, b] */
    LLMLAB_LEN_LOGNORMAL = 2, /* mean a (of the lengths), sigma b (of their log) */
    LLMLAB_LEN_ZIPF = 3,      /* exponent s = a > 0, support 1..b */
    LLMLAB_LEN_EMPIRICAL = 4  /* values of `file`: integers, one per line, '#' comments */
} llmlab_len_kind;

typedef struct {
    llmlab_len_kind kind;
    double a, b;
    const char *file;
    int min, max;             /* random draws are clamped to [min, max]; max 0 = no upper bound
                                 (a prompt is at least 1 token whatever min says) */
} llmlab_len_dist;

typedef enum {
    LLMLAB_ARRIVAL_AT_ONCE = 0,
    LLMLAB_ARRIVAL_POISSON = 1,
    LLMLAB_ARRIVAL_GAMMA = 2,
    LLMLAB_ARRIVAL_CLOSED = 3,
    LLMLAB_ARRIVAL_TRACE = 4
} llmlab_arrival_kind;

typedef struct {
    int n;                     /* requests; trace: the first n of the file (0 = all) */
    uint64_t seed;
    llmlab_arrival_kind arrival;
    double rate;               /* requests/s (poisson, gamma) */
    double burstiness;         /* gamma shape (1 = Poisson) */
    int concurrency;           /* closed loop clients */
    double think_s;            /* closed loop: gap between a finish and the next request */
    const char *trace;         /* trace file: .csv, or .jsonl (also detected by a leading '{') */
    double time_scale;         /* trace arrival times are multiplied by this (after shifting the
                                  first to 0) */
    llmlab_len_dist prompt, output;
    int vocab_lo, vocab;       /* drawn prompt tokens are uniform in [vocab_lo, vocab) */
    int lengths_only;          /* 1: no prompt tokens (reqs[i].prompt NULL): for the simulator */
    const double *class_shares;/* [n_classes] shares of priority classes (normalized); NULL: all 0 */
    const int *class_values;   /* [n_classes] priority of each class; NULL: 0, 1, ... */
    int n_classes;
    double cancel_frac;        /* fraction of requests the client cancels */
    double cancel_min_s, cancel_max_s; /* their cancel_after_s, uniform in [min, max] (> 0) */
    int stop_at_eos;
} llmlab_workload_spec;

/* A request list and the storage its prompts point into. */
typedef struct llmlab_workload {
    int n;
    llmlab_request *reqs;      /* [n]; ids 0..n-1; prompt NULL for lengths-only requests and for texts
                                  not encoded yet */
    int32_t *tokens;           /* [n_tokens] every prompt, flat */
    int64_t n_tokens;
    char **texts;              /* [n] prompt texts from a text trace (NULL entries elsewhere), or NULL */
} llmlab_workload;

/* Defaults: at_once, n 0 (set it; for a trace 0 = the whole file), rate 1,
 * burstiness 1, concurrency 1, time_scale 1, prompt and output fixed 32 tokens
 * (min 1), vocab [0, 256). */
void llmlab_workload_spec_init(llmlab_workload_spec *s);

/* Builds the request list.  Texts of a trace are encoded with tok when given
 * (add_special: the tokenizer's BOS etc.), else kept in texts[] for the caller to
 * encode (llmlab_workload_encode).  Errors name the parameter and value, or the
 * file and line of a trace or empirical-length file. */
llmlab_status llmlab_workload_generate(const llmlab_workload_spec *s, const struct llmlab_tokenizer *tok,
                                       int add_special, llmlab_workload **out, llmlab_err *err);

/* Encodes the texts still waiting (requests with prompt NULL and a text). */
llmlab_status llmlab_workload_encode(llmlab_workload *w, const struct llmlab_tokenizer *tok, int add_special,
                                     llmlab_err *err);

/* A deep copy of reqs (prompts included; sampling pointers are not kept). */
llmlab_status llmlab_workload_from_requests(const llmlab_request *reqs, int n, llmlab_workload **out,
                                            llmlab_err *err);

void llmlab_workload_free(llmlab_workload *w);

/* Adds the `workload` table (one row per request: id, arrival_s, prompt_len,
 * max_new, priority, cancel_after_s, released_by, stop_at_eos, prompt_offset) and
 * the `workload_tokens` table (column token: every prompt, flat; request i's prompt
 * is rows [prompt_offset, prompt_offset + prompt_len), prompt_offset -1 when it
 * had no tokens) to run. */
llmlab_status llmlab_workload_record(llmlab_run *run, const llmlab_request *reqs, int n, llmlab_err *err);

/* Reads the request list run `run` of results file path recorded. */
llmlab_status llmlab_workload_read(const char *path, const char *run, llmlab_workload **out, llmlab_err *err);

#endif
