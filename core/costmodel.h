/* costmodel.h - how long one engine iteration takes, from its composition
 * (docs/serving.md "Simulator and cost model").
 *
 * An iteration is described by what it forwards (llmlab_iter_shape).  Two forms:
 *
 *   fitted (LLMLAB_COST_FITTED), coefficients from profiled iterations
 *   (`llmlab profile`, least squares with non-negative coefficients):
 *     t = c0 + c_pf * prefill_tokens + c_dec * decode_seqs
 *            + c_kv * decode_kv + c_attn * prefill_attn
 *   c0: per-iteration fixed cost (weights streamed once, scheduling, sampling
 *   set-up); c_pf, c_dec: per-token cost of the weight matmuls (they differ on a
 *   real backend because a decode row also samples and is memory bound);
 *   c_kv: reading one cached K/V token for a decode query; c_attn: one
 *   query-key pair of prefill attention (quadratic in the chunk, linear in the
 *   context a chunk attends).
 *
 *   roofline (LLMLAB_COST_ROOFLINE), from a hardware spec one need not have:
 *     t = overhead + max(flops / (peak * compute_eff), bytes / (bw * memory_eff))
 *   flops = 2 * weight params * tokens + 2 * dim * vocab * logit rows
 *           + 4 * layers * heads * head_dim * (decode_kv + prefill_attn)
 *   bytes = weight bytes (read once per iteration) + KV bytes read (decode_kv +
 *           prefill context) + KV bytes written (tokens).
 *
 * Limits: no separate terms for tensor/pipeline parallelism, communication,
 * CUDA-graph padding or kernel-size effects (the roofline is a lower bound on
 * time unless the efficiencies are set below 1). */
#ifndef LLMLAB_COSTMODEL_H
#define LLMLAB_COSTMODEL_H

#include "config.h"
#include "llmlab/llmlab.h"

/* What one iteration forwards. */
typedef struct {
    int prefill_tokens;   /* prompt and recompute tokens */
    int prefill_seqs;     /* sequences with a prefill chunk */
    int decode_seqs;      /* sequences decoding one token each */
    double decode_kv;     /* sum over decoding sequences of the KV tokens they attend */
    double prefill_ctx;   /* sum over prefill chunks of the cached tokens before the chunk */
    double prefill_attn;  /* sum over prefill chunks of query-key pairs:
                             chunk * cached_before + chunk * (chunk + 1) / 2 */
} llmlab_iter_shape;

/* Adds one sequence's share of an iteration: a prefill chunk of `chunk` tokens
 * after `cached` cached ones, or (chunk == 0) a decode with `cached` cached. */
void llmlab_iter_add(llmlab_iter_shape *it, int chunk, int cached);

/* The model's size as the roofline needs it (from a config.json). */
typedef struct {
    int n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, vocab;
    double weight_params;   /* matmul weights (layers + LM head), embeddings left out */
    double weight_bytes;    /* weight_params * bytes_per_weight */
    double kv_bytes_per_token; /* 2 * layers * kv_heads * head_dim * kv bytes per value */
} llmlab_model_shape;

/* bytes_per_weight: 2 for f16/bf16, 1 for int8/fp8 ...; kv_bytes: per cached value. */
void llmlab_model_shape_of(llmlab_model_shape *s, const llmlab_config *cfg, double bytes_per_weight,
                           double kv_bytes);

/* A hardware spec for the roofline. */
typedef struct {
    char name[64];
    double peak_flops;   /* FLOP/s of the matmul dtype (dense) */
    double mem_bw;       /* bytes/s */
    double compute_eff, memory_eff; /* achievable fractions (0, 1]; 1 = pure roofline */
    double overhead_s;   /* per iteration (launches, scheduling); 0 default */
} llmlab_hw_spec;

/* Built-in specs: "h200", "h100", "a100", "l40s", "cpu-measured" (this machine's
 * matmul rate and memory bandwidth measured now with n_threads threads).  Unknown
 * names are an error listing the known ones. */
llmlab_status llmlab_hw_lookup(const char *name, int n_threads, llmlab_hw_spec *out, llmlab_err *err);

typedef enum { LLMLAB_COST_FITTED = 1, LLMLAB_COST_ROOFLINE = 2 } llmlab_cost_kind;

enum { LLMLAB_COST_C0, LLMLAB_COST_PF, LLMLAB_COST_DEC, LLMLAB_COST_KV, LLMLAB_COST_ATTN, LLMLAB_COST_NTERMS };

typedef struct {
    llmlab_cost_kind kind;
    double coef[LLMLAB_COST_NTERMS];   /* fitted: seconds per unit of each term */
    llmlab_model_shape shape;
    llmlab_hw_spec hw;                 /* roofline: the spec; fitted: machine name only */
    char machine[128];                 /* where the profile ran (host, CPU model) */
    char model[256];                   /* model path or name the profile used */
    int threads;                       /* threads of the profiled backend */
    int n_samples;                     /* fitted: iterations fitted */
    double fit_mape;                   /* fitted: mean |pred - t| / t over the samples */
    double fit_r2;                     /* fitted: coefficient of determination */
    double overhead_c0, overhead_dec;  /* fitted: the engine's overhead around the forward, included in
                                          coef[C0] and coef[DEC] (profile.h); 0 when not measured */
} llmlab_costmodel;

/* Predicted seconds of one iteration (>= 0). */
double llmlab_cost_predict(const llmlab_costmodel *m, const llmlab_iter_shape *it);

/* Least squares over n profiled iterations (times t[n] in seconds) with every
 * coefficient >= 0 (terms that would come out negative are dropped and the rest
 * refitted); needs n >= LLMLAB_COST_NTERMS.  Sets kind, coef, n_samples, fit_*. */
llmlab_status llmlab_cost_fit(llmlab_costmodel *m, const llmlab_iter_shape *its, const double *t, int n,
                              llmlab_err *err);

/* A roofline model of shape on hw. */
llmlab_status llmlab_cost_roofline(llmlab_costmodel *m, const llmlab_model_shape *shape, const llmlab_hw_spec *hw,
                                   llmlab_err *err);

/* profile.json: {"kind": "fitted"|"roofline", "coef": {...}, "shape": {...},
 * "hw": {...}, "machine": ..., ...}.  Errors name the file and the field. */
llmlab_status llmlab_cost_save(const llmlab_costmodel *m, const char *path, llmlab_err *err);
llmlab_status llmlab_cost_load(llmlab_costmodel *m, const char *path, llmlab_err *err);

#endif
