/* sim.h - the simulated executor: a sched plugin on a simulated clock
 * (docs/serving.md "Simulator and cost model").
 *
 * The same scheduler plugin instance type as the real engine (created through
 * the registry, the same view and plan ABI, the same live-request view) decides
 * every iteration; the simulator carries out the plan the way the engine does
 * (admission and swap-ins that fit the free blocks, the watermark, preemption by
 * recompute or swap, the plugin's pick_victim, cancellation, closed loops) but
 * forwards nothing: a cost model (costmodel.h) says how long the iteration took
 * and the clock advances by that.  KV blocks are counted per request as
 * ceil(tokens / block_size), the numbers the real cache has without eviction
 * policies.  Each request generates exactly max_new tokens (no EOS); a decode
 * forwards one token (speculative decoding is not simulated).
 *
 * The result is an llmlab_run_result with the real engine's per-request,
 * per-step and per-token records (output token ids are not known: r->output is
 * NULL and token ids are 0), so serve_metrics.c and the HDF5 writer apply as they
 * are.  Per-iteration work is proportional to the live requests and nothing is
 * allocated per token, so 100k requests take seconds.  Deterministic: the same
 * request list and options give the identical schedule. */
#ifndef LLMLAB_SIM_H
#define LLMLAB_SIM_H

#include "costmodel.h"
#include "engine.h"
#include "results.h"
#include "run_record.h"
#include "serve_metrics.h"

typedef struct llmlab_sim llmlab_sim;

typedef struct {
    const llmlab_registry *registry;
    llmlab_plugin_choice sched;   /* NULL name = fcfs, as the engine */
    llmlab_costmodel cost;        /* copied */
    int kv_tokens;                /* KV pool in tokens (> 0) */
    int kv_block_size;            /* 0 = 16 */
    int max_seqs;                 /* 0 = 64 */
    int token_budget;             /* 0 = 512 */
    double watermark;             /* fraction of blocks admissions leave free; 0 = 0.01, < 0 = none */
    int swap_tokens;              /* host swap space in tokens; 0 = none unless swap_bytes */
    double swap_bytes;            /* host swap space in bytes */
    int preempt_mode;             /* LLMLAB_PREEMPT_*: the mode of the simulator's own preemptions */
    double swap_bw;               /* bytes/s of swap copies; 0 = 16e9 (a PCIe 4.0 x16 link) */
    int record_tokens;            /* per-token records: 1 yes, 0 no, -1 auto (yes up to 4M tokens) */
    uint64_t seed;                /* recorded only: the simulator draws nothing */
} llmlab_sim_opts;

/* Validates the options and the sched plugin's parameters. */
llmlab_status llmlab_sim_create(llmlab_sim **out, const llmlab_sim_opts *o, llmlab_err *err);
void llmlab_sim_free(llmlab_sim *s);

/* Simulates the requests (their prompt ids are not read: prompt may be NULL).
 * itl (optional) receives every inter-token gap, also when per-token records
 * are off, for llmlab_serve_opts.itl_hist. */
llmlab_status llmlab_sim_run(llmlab_sim *s, const llmlab_request *reqs, int n, llmlab_run_result **out,
                             llmlab_itl_hist *itl, llmlab_err *err);

const llmlab_sim_opts *llmlab_sim_options(const llmlab_sim *s);
int llmlab_sim_kv_blocks(const llmlab_sim *s);   /* the pool in blocks */
const llmlab_plugin_desc *llmlab_sim_sched(const llmlab_sim *s);

/* Iteration j of a run (real or simulated) as the cost model sees it, from the
 * step records: prefill_tokens, decode_seqs and KV context as recorded; the
 * prefill chunks are taken as equal shares of the step's prefill tokens over its
 * prefilling sequences, each starting at an empty cache (exact for whole-prompt
 * prefills, an approximation for later chunks and recomputes). */
void llmlab_sim_step_shape(const llmlab_run_result *r, int j, llmlab_iter_shape *it);

/* Per-iteration error of a cost model against a run's steps: each iteration's
 * time is its start to the next one's (the engine's overhead between forwards
 * included; idle waits beyond 3x the median gap replaced by the median). */
typedef struct {
    int n;                 /* iterations compared */
    double mape;           /* mean |pred - real| / real */
    double bias;           /* mean (pred - real) / real */
    double wape;           /* sum |pred - real| / sum real: the error in time spent */
    double real_mean_s, pred_mean_s;
} llmlab_step_error;

/* real_s, pred_s (optional, [n_steps - 1] each) receive every iteration's times. */
llmlab_status llmlab_sim_step_error(const llmlab_costmodel *m, const llmlab_run_result *r, llmlab_step_error *out,
                                    double *real_s, double *pred_s, llmlab_err *err);

/* Records a simulated run: the run attributes of info, executor = "simulated",
 * settings/sched/..., settings/sim/... and cost/..., and the requests / steps /
 * tokens / summary / serving tables of res (serve: the serving table's options,
 * NULL = defaults; its KV pool defaults to the simulator's). */
llmlab_status llmlab_sim_record(llmlab_run *run, const llmlab_sim *s, const llmlab_run_result *res,
                                const llmlab_record_info *info, const llmlab_serve_opts *serve, llmlab_err *err);

#endif
