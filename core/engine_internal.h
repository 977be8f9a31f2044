/* engine_internal.h - the engine's data, shared by engine.c (lifecycle, host
 * table) and engine_run.c (the iteration loop).  Not part of any public API. */
#ifndef LLMLAB_ENGINE_INTERNAL_H
#define LLMLAB_ENGINE_INTERNAL_H

#include "engine.h"
#include "rng.h"
#include "run_result.h"

/* ---- types ------------------------------------------------------------------------ */

typedef struct {
    const llmlab_plugin_desc *d;
    llmlab_params *p;
    void *self;
} plugin_inst;

#define LLMLAB_MAX_METRICS 16
#define LLMLAB_MAX_AUX 4

struct llmlab_seq {
    llmlab_engine *e;
    int id;
    int kv;                  /* KV sequence id, -1 while not admitted */
    int32_t *tokens;         /* [cap] prompt + accepted tokens */
    int len, cap;
    int prompt_len, max_new, generated, stop_eos;
    llmlab_req_state state;
    int dec_begun, att_begun; /* the decoding / attention plugin's seq_begin has run */
    int verify_now;          /* this step's rows go to the decoding plugin */
    llmlab_sampling samp;
    llmlab_rng rng;
    double arrival_s, admit_s, first_s, finish_s;
    int forwards;            /* target forwards whose rows this sequence verified */
    double metrics[LLMLAB_MAX_METRICS]; /* plugin counters, indexed like engine->metric_names */
    const int32_t *forced;   /* [prompt_len + max_new] forced mode: the whole text (caller's); else NULL */
    /* serving (engine_run.c, serve_*.c) */
    int index;               /* position in the run's request list */
    int priority;            /* lower = more urgent (vLLM) */
    double cancel_s;         /* absolute cancellation time, < 0 = never */
    int cancelled;           /* left the run by cancellation */
    int preemptions, swaps, recomputed;
    int recompute_upto;      /* positions below this are prefilled again (recompute preemption) */
    llmlab_kv_swapped swapped; /* its cache while SWAPPED */
};

struct llmlab_step {
    llmlab_engine *e;
    llmlab_batch *b;
    const llmlab_outputs *out;
    llmlab_seq **owner;      /* [cap] sequence of each batch token */
    int *row;                /* [cap] output row of each batch token, -1 if none */
    uint8_t *masked;         /* [cap] 1 = the token's visibility came from step_see */
    llmlab_seq **decoders;   /* [n_reqs] sequences decoding in this step */
};

/* Growable per-token log of a run. */
typedef struct {
    int n, cap;
    int *req, *index;
    int32_t *tok;
    double *t;
} token_log;

typedef struct {
    llmlab_step_log c;       /* the step_* columns (run_result.h) */
    double *metrics;         /* [c.cap][LLMLAB_MAX_METRICS] plugin counters added during the step */
} step_log;

struct llmlab_engine {
    const llmlab_model *m;
    llmlab_ctx *ctx;
    plugin_inst dec, att, quant, sched;
    plugin_inst kvq;         /* kv_quant: a KV-format plugin (quant kind, pack NULL); d NULL = f32 KV */
    llmlab_kv_format kv_fmt; /* the KV cache's storage format (engine_kv.c) */
    int kv_fmt_open;         /* 1 while kv_quant's create runs: only then may the format be set */
    int kv_fmt_set;          /* kv_quant's create set it */
    const llmlab_registry *reg;
    void **packed;           /* [n_mats] quant plugin handles, LLMLAB_MATS_PER_LAYER per layer + head */
    int n_mats;
    double *mat_bits;        /* [n_mats] bits per weight the quant plugin reported for each matrix */
    double bits_per_weight;
    llmlab_sampling samp;
    uint64_t seed;
    int token_budget, max_seqs;
    double watermark;        /* fraction of KV blocks admissions leave free */
    int preempt_mode;        /* LLMLAB_PREEMPT_RECOMPUTE or _SWAP: the engine's own preemptions */
    int swap_tokens;         /* host swap space as given (tokens, bytes) */
    double swap_bytes;
    llmlab_kv_swap swap;     /* host swap space in blocks (total 0 = none), sized at each run */
    int kv_tokens, kv_block_size; /* as given in the options (aux caches get the same) */
    int decode_tokens;       /* most tokens the decoding plugin forwards per sequence */
    int want_hidden;         /* prompt-last rows also return the hidden state */
    llmlab_aux *aux[LLMLAB_MAX_AUX]; /* auxiliary models plugins opened */
    int n_aux;
    llmlab_finish_fn on_finish;
    void *on_finish_user;
    /* the run in progress */
    double t0;
    uint8_t *kv_busy;        /* [max_seqs] */
    token_log toks;
    llmlab_status cb_status; /* first error a host callback hit */
    char metric_names[LLMLAB_MAX_METRICS][48]; /* counters plugins added with metric_add */
    int n_metrics;
    double step_metrics[LLMLAB_MAX_METRICS]; /* counters of the step in progress */
    llmlab_score_fn score_fn; /* forced mode (llmlab_engine_score) while non-NULL */
    void *score_user;
    /* attention policies (engine_attn.c) */
    int mass_on;             /* the attention plugin asked for attention mass */
    int obs_window;          /* prompt queries feeding the `obs` accumulator */
    const llmlab_step *step; /* the step being built or verified (set by step_add) */
    double policy_s;         /* time in attention-policy work outside the forward */
    struct llmlab_calib *calib; /* calibration a quant plugin asked for; freed once weights are packed */
};

/* Reallocates n_cols parallel arrays to new_cap elements each; 0 or -1. */
int llmlab_grow_columns(void **cols[], const size_t *elem_size, int n_cols, int new_cap);
void llmlab_engine_log_token(llmlab_engine *e, const llmlab_seq *s, int32_t tok, double t);
/* The Hugging Face name of packed matrix idx (layer * LLMLAB_MATS_PER_LAYER + kind, then
 * the LM head), e.g. "model.layers.0.mlp.up_proj.weight". */
void llmlab_engine_matrix_name(const llmlab_model *m, int idx, char *buf, size_t cap);
/* Sends ctx's weight matmuls through the engine's quant plugin (same model). */
void llmlab_engine_route_linear(llmlab_engine *e, llmlab_ctx *ctx);

/* engine_attn.c: the host table's attention-policy functions (ABI 1.2). */
llmlab_status llmlab_engine_set_pattern(llmlab_engine *e, const llmlab_attn_pattern *p, llmlab_err *err);
llmlab_status llmlab_engine_want_mass(llmlab_engine *e, int obs_window, llmlab_err *err);
int llmlab_engine_kv_lanes(const llmlab_engine *e);
int llmlab_engine_kv_heads(const llmlab_engine *e);
int llmlab_engine_mass_mode(const llmlab_seq *s, int32_t pos);
int llmlab_engine_seq_lane(const llmlab_seq *s, int lane, int32_t *pos, float *mass, float *obs, float *last);
llmlab_status llmlab_engine_seq_evict_lane(llmlab_seq *s, int lane, const int *slots, int n, llmlab_err *err);
llmlab_status llmlab_engine_seq_set_rule(llmlab_seq *s, const llmlab_evict_rule *r, llmlab_err *err);
llmlab_status llmlab_engine_seq_enforce(llmlab_seq *s, llmlab_err *err);
llmlab_status llmlab_engine_seq_keep(llmlab_seq *s, const int *slots, int n, llmlab_err *err);
llmlab_status llmlab_engine_after_step(llmlab_seq *s, llmlab_err *err);

/* engine_calib.c: the host table's calibration functions (ABI 1.3) and the engine's steps. */
llmlab_status llmlab_engine_want_calibration(llmlab_engine *e, const char *source, int n_tokens, uint64_t seed,
                                             llmlab_err *err);
const float *llmlab_engine_calibration_inputs(const llmlab_engine *e, const char *name, int64_t *rows);
llmlab_status llmlab_engine_calibrate(llmlab_engine *e, llmlab_err *err); /* runs a pending request */
void llmlab_engine_calibration_done(llmlab_engine *e);                   /* frees the inputs */

/* engine_kv.c: the KV-cache format (ABI 1.3 engine_set_kv_format) and the checks
 * that keep weight plugins out of kv_quant and KV-format plugins out of quant. */
llmlab_status llmlab_engine_set_kv_format(llmlab_engine *e, const llmlab_kv_format *f, llmlab_err *err);
llmlab_status llmlab_engine_check_kv_choices(const llmlab_engine *e, const llmlab_engine_opts *o, llmlab_err *err);
llmlab_status llmlab_engine_kv_format_done(const llmlab_engine *e, llmlab_err *err);

/* engine_aux.c: the host table's aux-model and tensor-file functions. */
llmlab_status llmlab_aux_open(llmlab_engine *e, const char *model, const int *skip, int n_skip,
                              llmlab_aux **out, llmlab_err *err);
void llmlab_aux_close(llmlab_aux *a);
int llmlab_aux_vocab(const llmlab_aux *a);
int llmlab_aux_layers(const llmlab_aux *a);
llmlab_status llmlab_aux_forward(llmlab_aux *a, const llmlab_aux_token *t, int n, float *logits,
                                 llmlab_err *err);
int llmlab_aux_kv_len(const llmlab_aux *a, const llmlab_seq *s);
void llmlab_aux_kv_truncate(llmlab_aux *a, const llmlab_seq *s, int len);
void llmlab_aux_release_seq(llmlab_engine *e, int kv_seq);
void llmlab_aux_close_all(llmlab_engine *e);
llmlab_status llmlab_tensors_open(const char *path, llmlab_tensors **out, llmlab_err *err);
void llmlab_tensors_close(llmlab_tensors *t);
const void *llmlab_tensors_get(const llmlab_tensors *t, const char *name, llmlab_dtype *dtype, int64_t shape[4],
                               int *ndim);
const void *llmlab_engine_model_tensor(const llmlab_engine *e, const char *name, llmlab_dtype *dtype,
                                       int64_t shape[4], int *ndim);

#endif
