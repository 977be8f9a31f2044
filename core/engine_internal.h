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
};

struct llmlab_step {
    llmlab_engine *e;
    llmlab_batch *b;
    const llmlab_outputs *out;
    llmlab_seq **owner;      /* [cap] sequence of each batch token */
    int *row;                /* [cap] output row of each batch token, -1 if none */
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
    int *tokens, *seqs, *blocks;
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
    /* the run in progress */
    double t0;
    uint8_t *kv_busy;        /* [max_seqs] */
    token_log toks;
    llmlab_status cb_status; /* first error a host callback hit */
    char metric_names[LLMLAB_MAX_METRICS][48]; /* counters plugins added with metric_add */
    int n_metrics;
};

/* Reallocates n_cols parallel arrays to new_cap elements each; 0 or -1. */
int llmlab_grow_columns(void **cols[], const size_t *elem_size, int n_cols, int new_cap);
void llmlab_engine_log_token(llmlab_engine *e, const llmlab_seq *s, int32_t tok, double t);

#endif
