/* fidelity.h - how closely an attention/KV policy or a quantization scheme
 * follows the unmodified model on the same text, teacher-forced
 * (docs/attention/fidelity.md, docs/quantization.md).
 *
 * The texts run through two engines on the same model in forced mode
 * (llmlab_engine_score): the dense reference and the policy.  For every scored
 * position pos (prefix - 1 .. len - 2), with p = softmax of the dense logits and
 * q = softmax of the policy's, both predicting text[pos + 1]:
 *   kl        = KL(p || q) = sum_i p_i (log p_i - log q_i), nats, in double with
 *               log-softmax computed stably (max subtracted, log-sum-exp);
 *   top1      = 1 when argmax p == argmax q (lowest index on ties);
 *   nll       = -log q(text[pos + 1]);  nll_dense = -log p(text[pos + 1]).
 * Per text and overall (token-weighted): mean kl, top-1 rate, and perplexity
 * exp(mean nll) under each engine.
 *
 * Memory: the dense run goes first and keeps its raw logits rows (float) of a
 * group of texts: scored tokens x vocab x 4 bytes, at most opts.ref_bytes (a
 * single text larger than that still forms a group of its own).  Then the policy
 * runs the same group and each of its rows is compared on the spot.  Raw logits
 * (not log-probabilities) are kept so both sides' log-softmax come from the same
 * code in double: identical logits give kl == 0 exactly. */
#ifndef LLMLAB_FIDELITY_H
#define LLMLAB_FIDELITY_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "results.h"

typedef struct {
    const int32_t *tokens; /* [len] the whole text */
    int len;
    int prefix;            /* tokens prefilled before scoring starts; 1 <= prefix < len */
} llmlab_fid_text;

typedef struct {
    size_t ref_bytes;      /* most bytes of dense logits kept at once; 0 = 1 GiB */
} llmlab_fid_opts;

typedef struct {
    /* per scored token [n_tok]: texts in order, positions ascending */
    int n_tok;
    int *req;              /* [n_tok] text index */
    int *pos;              /* [n_tok] position scored (its logits predict text[pos + 1]) */
    double *kl;            /* [n_tok] KL(p_dense || q_policy), nats */
    int *top1;             /* [n_tok] 1 = same argmax */
    double *nll;           /* [n_tok] -log q_policy(text[pos + 1]) */
    double *nll_dense;     /* [n_tok] -log p_dense(text[pos + 1]) */
    /* per text [n_texts] */
    int n_texts;
    int *text_len, *text_prefix, *text_tokens; /* [n_texts] length, prefix, scored tokens */
    double *text_kl, *text_top1, *text_ppl, *text_ppl_dense; /* [n_texts] */
    /* overall, token-weighted over every scored token */
    double mean_kl, top1_rate, mean_nll, mean_nll_dense, ppl, ppl_dense;
    /* measured on each engine's runs: scored tokens per second over the steps
     * that forwarded only forced tokens (no prompt chunk), and KV bytes resident
     * at the end of each step's forward, mean and max over all steps */
    double tok_per_s, tok_per_s_dense;
    double kv_bytes_mean, kv_bytes_max, kv_bytes_mean_dense, kv_bytes_max_dense;
    int groups;            /* dense-then-policy rounds the memory bound needed */
    size_t ref_bytes;      /* the bound used */
    char reference[64];    /* the reference engine's attention plugin ("dense") */
    llmlab_run_result *run; /* the policy's run(s), groups concatenated (time offsets added); owned */
} llmlab_fid_result;

void llmlab_fid_result_free(llmlab_fid_result *f);

/* Creates the pair of engines a fidelity measurement compares: the policy from
 * opts and the reference from the same opts with attention "dense", quant "none"
 * and f32 KV storage: the unmodified model. */
llmlab_status llmlab_fidelity_engines(const llmlab_model *m, const llmlab_engine_opts *opts,
                                      llmlab_engine **dense, llmlab_engine **policy, llmlab_err *err);

/* Runs texts[n] through dense and policy (same model) and measures fidelity. */
llmlab_status llmlab_fidelity(llmlab_engine *dense, llmlab_engine *policy, const llmlab_fid_text *texts, int n,
                              const llmlab_fid_opts *opts, llmlab_fid_result **out, llmlab_err *err);

/* Adds the measurement to a run record that llmlab_record_run filled with the
 * policy engine's run: tables `fidelity` and `fidelity_texts`, summary columns,
 * settings/fidelity attributes (docs/results-format.md). */
llmlab_status llmlab_fidelity_record(llmlab_run *run, const llmlab_fid_result *f, llmlab_err *err);

#endif
