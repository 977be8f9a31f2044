/* perplexity.h - teacher-forced perplexity of a token sequence, through the
 * engine so the engine's attention and quant plugins apply (docs/perplexity.md).
 *
 * Windows follow Hugging Face's strided perplexity: window k covers tokens
 * [k * stride, min(k * stride + ctx, n)); windows stop after the first one that
 * reaches the end.  In each window only the tokens no earlier window scored are
 * scored (the rest is context), and a window's first token is never scored (it
 * has nothing to be predicted from), so:
 *   stride < ctx:   every token but the first is scored (n - 1);
 *   stride == ctx:  disjoint windows; each window's first token is context only
 *                   (n - windows scored).
 * A window that would score nothing (a one-token tail of disjoint windows) is
 * not run and not counted.  Every window starts from an empty KV cache: all
 * windows are requests of ONE llmlab_engine_score call, so they run batched, the
 * first token of the window prefilled (more when it overlaps the previous
 * window: the context part) and the scored tokens fed one per step, exactly as
 * in decoding.
 *
 * NLL of a scored token t at position p (the logits row x of position p - 1):
 *   nll = (max(x) + log(sum_i exp(x_i - max(x)))) - x_t, in double, summed in
 * index order; ppl = exp(mean nll over every scored token). */
#ifndef LLMLAB_PERPLEXITY_H
#define LLMLAB_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "results.h"
#include "tokenizer.h"

/* Largest default window: min(config max_position_embeddings, this). */
#define LLMLAB_PPL_MAX_DEFAULT_CTX 2048

typedef struct {
    int ctx;    /* most tokens per window; 0 = llmlab_ppl_default_ctx(model) */
    int stride; /* tokens the window moves by, 1 <= stride <= ctx; 0 = ctx */
} llmlab_ppl_opts;

typedef struct {
    int n_tokens;       /* tokens of the input */
    int ctx, stride;    /* the values used */
    int windows;        /* windows run */
    int scored;         /* tokens scored */
    int *pos;           /* [scored] position of each scored token, ascending */
    int *window;        /* [scored] the window (0-based) that scored it */
    double *nll;        /* [scored] -log p(token | its window's context), nats */
    double mean_nll;    /* mean of nll[] */
    double ppl;         /* exp(mean_nll) */
    double wall_s;      /* seconds of the whole scoring run */
    double tok_per_s;   /* scored / wall_s */
    llmlab_run_result *run; /* the engine's run (requests = windows), owned; for run records */
} llmlab_ppl_result;

/* The default window of a model: min(max_position_embeddings, LLMLAB_PPL_MAX_DEFAULT_CTX). */
int llmlab_ppl_default_ctx(const llmlab_model *m);

/* The windows for n tokens, in order: window k is [begin[k], end[k]) with its
 * first prefix[k] tokens as context (it scores begin[k] + prefix[k] .. end[k] - 1).
 * Returns the number of windows; the arrays (each may be NULL: count only) need
 * room for that many.  Needs n >= 1, ctx >= 2, 1 <= stride <= ctx. */
int llmlab_ppl_plan(int n, int ctx, int stride, int *begin, int *end, int *prefix);

/* Scores tokens[n] (see the top of this file).  Errors: n < 2, ctx < 2, ctx
 * larger than the model's max_position_embeddings, stride outside [1, ctx],
 * tokens outside the vocabulary. */
llmlab_status llmlab_perplexity(llmlab_engine *e, const int32_t *tokens, int n, const llmlab_ppl_opts *o,
                                llmlab_ppl_result **out, llmlab_err *err);
void llmlab_ppl_result_free(llmlab_ppl_result *r);

/* Text -> the tokens perplexity scores.  With bos and a tokenizer BOS
 * (llmlab_tokenizer_bos >= 0) the text is encoded without special tokens and the
 * BOS put in front ONCE, at position 0 of the whole text (Hugging Face style: it
 * is context for the first window only, never scored); else the text is encoded
 * without special tokens.  *ids is malloc'd. */
llmlab_status llmlab_ppl_encode(const llmlab_tokenizer *t, const char *text, size_t len, int bos, int32_t **ids,
                                int *n, llmlab_err *err);

/* Adds the measurement to a run record that llmlab_record_run filled with r->run:
 * table `ppl_tokens` (pos, window, nll) and settings/ppl/ attributes plus a
 * `ppl_summary` table (docs/results-format.md). */
llmlab_status llmlab_ppl_record(llmlab_run *run, const llmlab_ppl_result *r, int bos, llmlab_err *err);

#endif
