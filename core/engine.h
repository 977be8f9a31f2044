/* engine.h - a model plus one plugin of each kind, running requests.
 *
 * Every iteration: the sched plugin decides which requests run how many tokens;
 * prompt tokens are added by the engine, decode tokens by the decoding plugin's
 * propose(); ONE forward runs them all; the decoding plugin's verify() accepts
 * tokens; the attention plugin's after_step() may evict.  Weights multiply
 * through the quant plugin.  The engine owns allocation, timing and metrics. */
#ifndef LLMLAB_ENGINE_H
#define LLMLAB_ENGINE_H

#include "forward.h"
#include "params.h"
#include "registry.h"
#include "sampler.h"

typedef struct llmlab_engine llmlab_engine;

/* Called when a request finishes, before its KV blocks are released: kv_seq is
 * its sequence in llmlab_engine_kv(e) (tests compare caches; tools inspect them). */
typedef void (*llmlab_finish_fn)(void *user, llmlab_engine *e, int req_id, int kv_seq);

/* A plugin choice: registry name + its values (validated at engine creation). */
typedef struct {
    const char *name;
    const llmlab_param_value *values;
    int n_values;
} llmlab_plugin_choice;

typedef struct {
    const llmlab_registry *registry;
    llmlab_plugin_choice decoding, attention, quant, sched; /* NULL name = the baseline */
    uint64_t seed;
    int n_threads;     /* <= 0: all cores */
    int kv_tokens;     /* KV pool capacity in tokens; 0 = default */
    int kv_block_size; /* 0 = 16 */
    int max_seqs;      /* 0 = 64 */
    int token_budget;  /* tokens per forward; 0 = 512 */
    llmlab_finish_fn on_finish; /* optional */
    void *on_finish_user;
} llmlab_engine_opts;

typedef struct {
    int id;
    const int32_t *prompt;    /* [prompt_len] */
    int prompt_len;
    int max_new;
    double arrival_s;         /* relative to the run's start */
    int priority;
    const llmlab_sampling *sampling; /* NULL: the decoding plugin's settings */
    int stop_at_eos;
    /* serving workloads */
    double cancel_after_s;    /* > 0: the client cancels the request this long after it arrives */
    int released_by;          /* closed loop: k > 0 = this request arrives arrival_s seconds after
                                 request k - 1 of the list finishes (or is cancelled); 0 = arrival_s
                                 is absolute (so a zeroed request is open-loop) */
} llmlab_request;

/* What a run produced; all arrays owned by the result. */
typedef struct {
    int n_reqs;
    /* per request [n_reqs] */
    int *req_id, *prompt_len, *output_len, *forwards;
    double *arrival_s, *admit_s, *first_token_s, *finish_s;
    int32_t **output;          /* [n_reqs][output_len] */
    int n_metrics;             /* plugin counters (host->metric_add) */
    char metric_names[16][48];
    double *metrics;           /* [n_metrics][n_reqs] */
    /* per step [n_steps] */
    int n_steps;
    double *step_start_s, *step_dt_s;
    int *step_tokens, *step_seqs, *step_kv_blocks, *step_accepted;
    double *step_kv_bytes;
    double *step_metrics;      /* [n_metrics][n_steps] plugin counters per step */
    /* per token [n_tok] */
    int n_tok;
    int *tok_req, *tok_index;
    int32_t *tok_id;
    double *tok_time_s;
    /* summary */
    double wall_s;
    long long prompt_tokens, output_tokens, target_forwards;
    double output_tok_per_s;
    double mean_accepted;      /* tokens per decoding target forward (the prefill's first token and
                                  forward left out): 1 for autoregressive, k + 1 for an always-right draft */
} llmlab_run_result;

void llmlab_run_result_free(llmlab_run_result *r);

llmlab_status llmlab_engine_create(llmlab_engine **out, const llmlab_model *m,
                                   const llmlab_engine_opts *opts, llmlab_err *err);
void llmlab_engine_free(llmlab_engine *e);

/* Runs the requests to completion (arrivals honoured on the real clock). */
llmlab_status llmlab_engine_run(llmlab_engine *e, const llmlab_request *reqs, int n,
                                llmlab_run_result **out, llmlab_err *err);

/* Teacher-forced scoring (forced mode).  Called once per scored position, in
 * position order per request: logits[vocab] are the model's output at text
 * position pos (it has seen text[0..pos] through the engine's attention plugin),
 * i.e. the distribution of text[pos + 1].  The pointer is valid during the call
 * only.  A non-OK return (with err filled) stops the run with that error. */
typedef llmlab_status (*llmlab_score_fn)(void *user, int req_id, int pos, const float *logits,
                                         llmlab_err *err);

/* Runs each request's prompt (the WHOLE text, prompt_len tokens) teacher-forced:
 * the first prefix_len[i] tokens are prefilled (scheduled and chunked by the sched
 * plugin as usual); then every later text token is fed as the decode token, one
 * per sequence and step, sequences batched as in llmlab_engine_run.  fn scores
 * positions prefix_len[i] - 1 .. prompt_len - 2 (prompt_len - prefix_len[i] calls;
 * the first is the prefill's last row).  After each token the engine keeps its KV
 * slot (host seq_kv_keep), appends the text's next token (host seq_accept) and
 * runs the attention plugin's after_step, exactly as in decoding, so evictions
 * happen token by token.  The decoding plugin is not called at all (not even
 * seq_begin/seq_end); max_new, sampling and stop_at_eos of the requests are
 * ignored.  Needs 1 <= prefix_len[i] < prompt_len.  The result is a normal run
 * result: output = the forced tokens text[prefix_len..), per-step KV records. */
llmlab_status llmlab_engine_score(llmlab_engine *e, const llmlab_request *reqs, int n,
                                  const int *prefix_len, llmlab_score_fn fn, void *user,
                                  llmlab_run_result **out, llmlab_err *err);

/* The chosen plugins and their validated values (for records and listings). */
const llmlab_plugin_desc *llmlab_engine_plugin(const llmlab_engine *e, llmlab_plugin_kind k);
const llmlab_params *llmlab_engine_params(const llmlab_engine *e, llmlab_plugin_kind k);
const llmlab_model *llmlab_engine_model(const llmlab_engine *e);
double llmlab_engine_bits_per_weight(const llmlab_engine *e);
llmlab_sampling llmlab_engine_sampling(const llmlab_engine *e); /* the decoding plugin's default */
int llmlab_engine_threads(const llmlab_engine *e);
llmlab_kv *llmlab_engine_kv(llmlab_engine *e);
int llmlab_engine_decode_tokens(const llmlab_engine *e); /* the decoding plugin's max per step */
/* Seconds spent in attention-policy work outside the forward (committing
 * attention mass, score eviction, after_step, compaction), summed over runs. */
double llmlab_engine_policy_seconds(const llmlab_engine *e);

#endif
