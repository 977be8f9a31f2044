/* medusa_train.h - training Medusa heads on a frozen model (Medusa-1 with
 * self-distillation), on the CPU.
 *
 * Data: the model continues random prompts (greedy, or sampled at a temperature)
 * with llmlab_generate; one forward over each whole text gives the final-normed
 * hidden state h_t of every position.  The base LM head on h_t predicts token
 * t+1; head k learns token t+2+k by cross-entropy.  Positions run from the last
 * prompt token to the last one whose K targets are all generated text; the last
 * fifth of the samples is held out for evaluation.
 *
 * Heads: one ResBlock each, x = h + SiLU(W1 h + b1), logits = W2 x; W2 starts as
 * the LM head and W1, b1 at zero (as Medusa initialises them), so an untrained
 * head repeats the base model's next-token guess.  Heads are independent, so they
 * are trained one after the other on the same batches (the same optimum as the
 * summed loss): Adam (0.9, 0.999, 1e-8), constant learning rate, hand-written
 * backprop with batch-invariant matmuls (deterministic for a seed and any thread
 * count).  Medusa's per-head loss weights (0.8^k) do not matter here: the heads
 * share no parameters and Adam is invariant to a loss scale. */
#ifndef LLMLAB_MEDUSA_TRAIN_H
#define LLMLAB_MEDUSA_TRAIN_H

#include <stdint.h>

#include "model.h"

#define LLMLAB_MEDUSA_TRAIN_MAX_HEADS 16

typedef struct {
    int heads;          /* K heads (default 4) */
    int samples;        /* generated texts (default 64; a fifth held out, at least 1) */
    int len;            /* tokens generated per text (default 64; must exceed heads) */
    int prompt_len;     /* random prompt tokens per text (default 8) */
    int steps;          /* Adam steps per head (default 300) */
    int batch;          /* positions per step (default 64) */
    float lr;           /* learning rate (default 1e-3) */
    float temperature;  /* generation: 0 = greedy (default) */
    uint64_t seed;      /* prompts, sampling and batches */
    int threads;        /* <= 0: all cores */
    int verbose;        /* progress lines on stderr */
} llmlab_medusa_train_opts;

void llmlab_medusa_train_defaults(llmlab_medusa_train_opts *o);

/* Heads in f32, one ResBlock each. */
typedef struct {
    int heads, dim, vocab;
    float *w1;   /* [heads][dim][dim] */
    float *b1;   /* [heads][dim] */
    float *w2;   /* [heads][vocab][dim] */
} llmlab_medusa_heads;

void llmlab_medusa_heads_free(llmlab_medusa_heads *h);

/* Held-out figures per head, before (initial heads) and after training. */
typedef struct {
    int heads;
    int n_train, n_heldout;                          /* positions */
    double loss_before[LLMLAB_MEDUSA_TRAIN_MAX_HEADS]; /* mean cross-entropy, nats */
    double loss_after[LLMLAB_MEDUSA_TRAIN_MAX_HEADS];
    double acc_before[LLMLAB_MEDUSA_TRAIN_MAX_HEADS];  /* top-1 accuracy */
    double acc_after[LLMLAB_MEDUSA_TRAIN_MAX_HEADS];
    double top5_after[LLMLAB_MEDUSA_TRAIN_MAX_HEADS];  /* top-5 accuracy after training */
    double seconds_data, seconds_train;
} llmlab_medusa_train_report;

/* Generates the data, trains, and fills *out (free with llmlab_medusa_heads_free)
 * and *rep (may be NULL). */
llmlab_status llmlab_medusa_train(const llmlab_model *m, const llmlab_medusa_train_opts *o,
                                  llmlab_medusa_heads *out, llmlab_medusa_train_report *rep, llmlab_err *err);

/* Writes the heads in Medusa's layout ("{h}.0.linear.weight", "{h}.0.linear.bias",
 * "{h}.1.weight") with the given dtype, atomically. */
llmlab_status llmlab_medusa_heads_write(const llmlab_medusa_heads *h, llmlab_dtype dtype, const char *path,
                                        llmlab_err *err);

/* One head's mean cross-entropy over x[B][dim] with targets y[B], and (when the
 * gradient pointers are non-NULL) its gradients, overwritten: g_w1[dim][dim],
 * g_b1[dim], g_w2[vocab][dim].  w1, b1, w2 as in llmlab_medusa_heads for one head.
 * Exposed for a finite-difference test of the backprop. */
double llmlab_medusa_head_loss(const float *w1, const float *b1, const float *w2, int dim, int vocab,
                               const float *x, const int32_t *y, int B, float *g_w1, float *g_b1, float *g_w2);

#endif
