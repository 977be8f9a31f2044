/* forward.h - the one batched forward call (DESIGN.md, "The one forward call").
 *
 * A batch holds tokens of several sequences.  Each token carries its id, sequence,
 * explicit position and flags.  Tokens are appended to their sequence's KV cache as
 * provisional slots in batch order.  Which earlier batch tokens a token may see is
 * given by the visibility mode:
 *   CAUSAL: every earlier token of the same sequence in the batch (a chain);
 *   TREE:   its ancestors through parent[] (an index into the batch, -1 = none);
 *   MASK:   bit j of mask row i (j < n, same sequence).
 * Every token also sees all valid committed-or-provisional slots its sequence had
 * before this batch, and itself.
 */
#ifndef LLMLAB_FORWARD_H
#define LLMLAB_FORWARD_H

#include <stdint.h>

#include "kv_cache.h"
#include "model.h"
#include "threadpool.h"

enum { LLMLAB_TOK_LOGITS = 1, LLMLAB_TOK_HIDDEN = 2 };
/* What a token's attention probabilities do when attention mass is on
 * (llmlab_ctx_enable_mass): ACC adds them to its sequence's accumulators at once
 * (rows that are committed whatever happens: prompt chunks); OBS does the same and
 * feeds `obs` too; ROW keeps them per row until the engine commits the row
 * (llmlab_ctx_row_mass), so rejected drafts leave no trace. */
enum { LLMLAB_MASS_ACC = 0, LLMLAB_MASS_OBS = 1, LLMLAB_MASS_ROW = 2 };
typedef enum { LLMLAB_VIS_CAUSAL = 0, LLMLAB_VIS_TREE = 1, LLMLAB_VIS_MASK = 2 } llmlab_visibility;

typedef struct {
    int n;                  /* tokens in the batch */
    int cap;                /* capacity */
    int32_t *token;         /* [cap] token ids */
    int32_t *seq;           /* [cap] sequence ids */
    int32_t *pos;           /* [cap] positions (RoPE angle index) */
    uint8_t *flags;         /* [cap] LLMLAB_TOK_* */
    int32_t *parent;        /* [cap] TREE: parent index in batch or -1 */
    uint8_t *mass_mode;     /* [cap] LLMLAB_MASS_* (default ACC) */
    uint64_t *mask;         /* [cap][mask_words] MASK: bit j of row i = i sees j */
    int mask_words;         /* (cap + 63) / 64 */
    llmlab_visibility vis;
    int tap_layer;          /* -1 none; else residual stream after layer tap_layer
                               is returned for tokens flagged HIDDEN */
} llmlab_batch;

llmlab_batch *llmlab_batch_create(int cap);
void llmlab_batch_free(llmlab_batch *b);
void llmlab_batch_clear(llmlab_batch *b); /* n = 0, vis = CAUSAL, tap = -1, mask zeroed */
/* Appends a token; returns its index or -1 when full. */
int llmlab_batch_add(llmlab_batch *b, int32_t token, int32_t seq, int32_t pos, uint8_t flags,
                     int32_t parent);
/* MASK mode: let token i see token j. */
void llmlab_batch_see(llmlab_batch *b, int i, int j);

/* Results of the last forward; buffers belong to the context and stay valid until
 * the next forward.  Rows follow batch order over tokens whose flags are non-zero. */
typedef struct {
    int n_out;
    int32_t *out_index; /* [n_out] batch index of each row */
    float *logits;      /* [n_out][vocab] (filled for rows flagged LOGITS) */
    float *hidden;      /* [n_out][dim] final-normed hidden state (rows flagged HIDDEN) */
    float *tap;         /* [n_out][dim] residual after tap_layer (when tap_layer >= 0) */
    int32_t *slot;      /* [n] KV slot each batch token was written to */
} llmlab_outputs;

typedef struct {
    int n_threads;   /* <= 0: all cores */
    int kv_block_size; /* 0: 16 */
    int kv_tokens;   /* capacity of the KV pool in token slots; 0: max_seqs * max_pos (capped) */
    int max_seqs;    /* 0: 64 */
    int max_batch;   /* tokens per forward; 0: 512 */
    const llmlab_kv_format *kv_format; /* KV storage (kv_cache.h); NULL: f32 */
} llmlab_ctx_opts;

typedef struct llmlab_ctx llmlab_ctx;

llmlab_status llmlab_ctx_create(llmlab_ctx **out, const llmlab_model *m, const llmlab_ctx_opts *opts,
                                llmlab_err *err);
void llmlab_ctx_free(llmlab_ctx *ctx);
llmlab_kv *llmlab_ctx_kv(llmlab_ctx *ctx);
const llmlab_model *llmlab_ctx_model(const llmlab_ctx *ctx);
llmlab_threadpool *llmlab_ctx_pool(llmlab_ctx *ctx);
int llmlab_ctx_max_batch(const llmlab_ctx *ctx);

/* Matrix indices for a linear hook: layer * LLMLAB_MATS_PER_LAYER + one of the
 * LLMLAB_MAT_* below; the LM head is n_layers * LLMLAB_MATS_PER_LAYER. */
enum { LLMLAB_MAT_Q, LLMLAB_MAT_K, LLMLAB_MAT_V, LLMLAB_MAT_O, LLMLAB_MAT_GATE, LLMLAB_MAT_UP,
       LLMLAB_MAT_DOWN, LLMLAB_MATS_PER_LAYER };

/* y[M][rows] = x[M][cols] W^T for weight matrix `matrix` (a quant plugin's kernel). */
typedef void (*llmlab_linear_fn)(void *user, int matrix, float *y, const float *x, int M,
                                 llmlab_threadpool *pool);
/* Routes every weight matmul through fn (NULL restores the built-in dense kernel). */
void llmlab_ctx_set_linear(llmlab_ctx *ctx, llmlab_linear_fn fn, void *user);
/* Leaves layers[n] out of every later forward (the residual stream passes through
 * them; their KV slots are allocated but never read).  n = 0 restores all. */
llmlab_status llmlab_ctx_set_skip(llmlab_ctx *ctx, const int *layers, int n, llmlab_err *err);
/* The structured visibility every later forward applies (NULL or block 0: dense).
 * The layout is copied. */
llmlab_status llmlab_ctx_set_pattern(llmlab_ctx *ctx, const llmlab_attn_pattern *p, llmlab_err *err);
/* Rebuilds the (empty) KV cache in storage format f (NULL: f32); EINVAL when
 * a sequence is in it.  Attention mass stays on if it was. */
llmlab_status llmlab_ctx_set_kv_format(llmlab_ctx *ctx, const llmlab_kv_format *f, llmlab_err *err);
/* Turns on attention-mass accumulation (kv_cache.h).  Attention then runs one task
 * per (sequence, KV head), rows in batch order, so sums are deterministic, and a
 * sequence with a score-eviction rule whose rows form a chain has the rule
 * simulated row by row (a later row does not see what an earlier row evicted). */
llmlab_status llmlab_ctx_enable_mass(llmlab_ctx *ctx, llmlab_err *err);
/* The probabilities row `index` (a ROW token of the last forward) gave lane
 * `lane`, indexed by slot; returns their count (0 when the row kept none). */
int llmlab_ctx_row_mass(const llmlab_ctx *ctx, int index, int lane, const float **val);
/* The weight matrix with that index. */
const llmlab_mat *llmlab_model_matrix(const llmlab_model *m, int matrix);

/* Runs the batch: writes each token's K/V into new provisional slots of its sequence
 * and returns the requested rows.  On error nothing is appended to the cache. */
llmlab_status llmlab_forward(llmlab_ctx *ctx, const llmlab_batch *b, const llmlab_outputs **out,
                             llmlab_err *err);

#endif
