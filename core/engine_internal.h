/* engine_internal.h - the engine's data, shared by engine.c (lifecycle, host
 * table) and engine_run.c (the iteration loop).  Not part of any public API. */
#ifndef LLMLAB_ENGINE_INTERNAL_H
#define LLMLAB_ENGINE_INTERNAL_H

#include "engine.h"
#include "rng.h"

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
    int begun;               /* plugins' seq_begin has run */
    int verify_now;          /* this step's rows go to the decoding plugin */
    llmlab_sampling samp;
    llmlab_rng rng;
    double arrival_s, admit_s, first_s, finish_s;
    int forwards;            /* target forwards whose rows this sequence verified */
    double metrics[LLMLAB_MAX_METRICS]; /* plugin counters, indexed like engine->metric_names */
    const int32_t *forced;   /* [prompt_len + max_new] forced mode: the whole text (caller's); else NULL */
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
    int n, cap;
    double *start, *dt, *kv_bytes;
    int *tokens, *seqs, *blocks, *accepted;
    double *metrics;         /* [cap][LLMLAB_MAX_METRICS] plugin counters added during the step */
} step_log;

struct llmlab_engine {
    const llmlab_model *m;
    llmlab_ctx *ctx;
    plugin_inst dec, att, quant, sched;
    const llmlab_registry *reg;
    void **packed;           /* [n_mats] quant plugin handles, LLMLAB_MATS_PER_LAYER per layer + head */
    int n_mats;
    double bits_per_weight;
    llmlab_sampling samp;
    uint64_t seed;
    int token_budget, max_seqs;
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
};

/* Reallocates n_cols parallel arrays to new_cap elements each; 0 or -1. */
int llmlab_grow_columns(void **cols[], const size_t *elem_size, int n_cols, int new_cap);
void llmlab_engine_log_token(llmlab_engine *e, const llmlab_seq *s, int32_t tok, double t);
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
