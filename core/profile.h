/* profile.h - `llmlab profile`: time a grid of iteration compositions on the
 * real backend and fit the cost model (costmodel.h) to them.
 *
 * Each grid point is one forward built by hand: D decoding sequences with C
 * cached tokens each, plus (optionally) one prefill chunk of P tokens after Q
 * cached ones.  Caches are set up untimed, each point is timed `reps` times
 * (the median is kept, or the fastest: the machine's own speed, as other load
 * only adds time) and the caches are truncated back between repetitions.
 * The grid covers pure decode (D = 1..max_seqs, several C), pure prefill (P up
 * to the token budget, Q = 0 and > 0) and mixed iterations.
 *
 * A forward is not all of an engine iteration: scheduling, sampling and the
 * per-sequence bookkeeping run around it.  With a registry, a short engine run
 * (continuous batching, all requests at t = 0, repeated `reps` times) measures
 * that overhead on its decode-only iterations (iteration start to the next
 * start, less the fitted forward time) and adds it to c0 and the per-decode
 * term. */
#ifndef LLMLAB_PROFILE_H
#define LLMLAB_PROFILE_H

#include "costmodel.h"
#include "model.h"
#include "registry.h"

typedef struct {
    int n_threads;    /* <= 0: all cores */
    int token_budget; /* largest batch; 0 = 512 */
    int max_seqs;     /* largest decode batch; 0 = 64 */
    int reps;         /* timed repetitions per point; 0 = 5 */
    int fastest;      /* keep the fastest repetition instead of the median */
    int quick;        /* a small grid (tests, a first look) */
    const llmlab_registry *registry; /* NULL: no engine-overhead run */
    int verbose;      /* progress on stderr */
} llmlab_profile_opts;

/* The profiled points: what each forward held and how long it took. */
typedef struct {
    int n;
    llmlab_iter_shape *shape;   /* [n] */
    double *t;                  /* [n] seconds (median or fastest repetition) */
    double overhead_c0, overhead_dec; /* engine overhead found (0 without a registry) */
} llmlab_profile_samples;

/* Profiles m and fits *out (kind fitted, shape of m, machine and model names).
 * samples (optional) receives the points; free with llmlab_profile_samples_free. */
llmlab_status llmlab_profile(const llmlab_model *m, const llmlab_profile_opts *o, llmlab_costmodel *out,
                             llmlab_profile_samples *samples, llmlab_err *err);
void llmlab_profile_samples_free(llmlab_profile_samples *s);

/* "host / CPU model name (N threads)" of this machine, for records. */
void llmlab_machine_name(char *buf, size_t cap, int n_threads);

#endif
