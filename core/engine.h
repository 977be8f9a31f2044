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

/* How a preempted request gives back its KV (plan->preempt values, ABI 1.3). */
enum { LLMLAB_PREEMPT_DEFAULT = 0, LLMLAB_PREEMPT_RECOMPUTE = 1, LLMLAB_PREEMPT_SWAP = 2 };

/* How a request left the run (llmlab_run_result.status). */
enum { LLMLAB_RUN_FINISHED = 0, LLMLAB_RUN_CANCELLED = 1 };

typedef struct {
    const llmlab_registry *registry;
    llmlab_plugin_choice decoding, attention, quant, sched; /* NULL name = the baseline */
    llmlab_plugin_choice kv_quant; /* KV-cache format plugin (kv_f16, kv_int8, kv_int4); NULL name = f32 */
    uint64_t seed;
    int n_threads;     /* <= 0: all cores */
    int kv_tokens;     /* KV pool capacity in tokens; 0 = default */
    int kv_block_size; /* 0 = 16 */
    int max_seqs;      /* 0 = 64 */
    int token_budget;  /* tokens per forward; 0 = 512 */
    /* block manager (docs/serving.md "The serving loop") */
    double watermark;  /* fraction of KV blocks admissions must leave free; 0 = 0.01 (vLLM), < 0 = none */
    int swap_tokens;   /* host swap space in tokens (whole blocks); 0 = none unless swap_bytes */
    double swap_bytes; /* host swap space in bytes (rounded down to whole blocks); 0 = none */
    int preempt_mode;  /* LLMLAB_PREEMPT_*: the mode the engine uses for its own preemptions */
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
    int *status;               /* [n_reqs] LLMLAB_RUN_FINISHED / LLMLAB_RUN_CANCELLED */
    int *preemptions;          /* [n_reqs] times preempted (recompute or swap) */
    int *recomputed_tokens;    /* [n_reqs] tokens prefilled again after recompute preemptions */
    int *swaps;                /* [n_reqs] times swapped out to host memory */
    int n_metrics;             /* plugin counters (host->metric_add) */
    char metric_names[16][48];
    double *metrics;           /* [n_metrics][n_reqs] */
    /* per step [n_steps] */
    int n_steps;
    double *step_start_s, *step_dt_s;
    int *step_tokens, *step_seqs, *step_kv_blocks, *step_accepted;
    double *step_kv_bytes;
    int *step_prefill_tokens;  /* [n_steps] prompt (and recompute) tokens forwarded */
    int *step_decode_seqs;     /* [n_steps] sequences decoding (propose/verify) in the step */
    int *step_kv_context;      /* [n_steps] sum over the step's sequences of their KV slots at the
                                  forward (cached + this step's tokens): the context attended */
    int *step_preempted;       /* [n_steps] requests preempted before the step's forward */
    int *step_swap_in, *step_swap_out; /* [n_steps] KV blocks copied from / to host swap */
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
    long long preemptions_total, recomputed_tokens_total, swaps_total, cancelled_total; /* run totals */
    double swap_bytes;         /* bytes copied to and from host swap */
    double mean_accepted;      /* tokens per decoding target forward (the prefill's first token and
                                  forward left out): 1 for autoregressive, k + 1 for an always-right draft */
} llmlab_run_result;

void llmlab_run_result_free(llmlab_run_result *r);
/* Appends b's serving records (status .. swaps per request, prefill .. swap_out
 * per step, the run totals) to a's; call before a's n_reqs/n_steps grow.  0 or
 * -1 (out of memory). */
int llmlab_run_result_cat_serving(llmlab_run_result *a, const llmlab_run_result *b);

/* Engine options as text (Lua, CLI): swap space "4096" (tokens) or with a byte
 * unit ("512MiB", "2GB", "65536B"); preempt mode "recompute" or "swap". */
llmlab_status llmlab_parse_swap_space(const char *text, int *tokens, double *bytes, llmlab_err *err);
llmlab_status llmlab_parse_preempt_mode(const char *text, int *mode, llmlab_err *err);

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
/* The kv_quant plugin and its values (NULL: f32 KV), and the KV storage format. */
const llmlab_plugin_desc *llmlab_engine_kv_plugin(const llmlab_engine *e);
const llmlab_params *llmlab_engine_kv_params(const llmlab_engine *e);
llmlab_kv_format llmlab_engine_kv_format(const llmlab_engine *e);
double llmlab_engine_kv_bytes_per_token(const llmlab_engine *e); /* packed, all layers, K and V */
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
