/* medusa_heads.h - Medusa heads read from a medusa_lm_head.safetensors file and
 * evaluated on final-normed hidden states through the host table.
 *
 * Layout (FasterDecoding/Medusa: the state dict of its `medusa_head` ModuleList,
 * head h = nn.Sequential(ResBlock x L, nn.Linear(dim, vocab, bias=False))):
 *   "{h}.{l}.linear.weight"  [dim][dim]    ResBlock l of head h (l < L)
 *   "{h}.{l}.linear.bias"    [dim]
 *   "{h}.{L}.weight"         [vocab][dim]  the vocabulary projection
 * optionally every name prefixed "medusa_head." (a whole-model state dict).  A
 * ResBlock is x + SiLU(W x + b).  Matrices stay in the file's dtype (f32, f16,
 * bf16) in the mapping; biases are converted to f32. */
#ifndef LLMLAB_PLUGINS_MEDUSA_HEADS_H
#define LLMLAB_PLUGINS_MEDUSA_HEADS_H

#include "llmlab/plugin.h"

#define MEDUSA_MAX_HEADS 64
#define MEDUSA_MAX_BLOCKS 8

typedef struct {
    const void *data;  /* row-major, in the mapping */
    llmlab_dtype dtype;
} medusa_mat;

typedef struct {
    const llmlab_host *h;
    llmlab_tensors *file;
    int n_heads;       /* heads in the file */
    int n_blocks;      /* ResBlocks per head (L) */
    int dim, vocab;
    medusa_mat w1[MEDUSA_MAX_HEADS][MEDUSA_MAX_BLOCKS]; /* each [dim][dim] */
    float *b1;         /* [n_heads][n_blocks][dim] */
    medusa_mat w2[MEDUSA_MAX_HEADS];                   /* each [vocab][dim] */
} medusa_heads;

/* Opens path and checks every head against the model's dim and vocab; `need` is
 * the number of heads the tree uses.  On error returns non-OK with err->msg
 * naming the file and the tensor (or the head count). */
llmlab_status medusa_heads_open(medusa_heads *hd, const llmlab_host *h, const char *path, int dim, int vocab,
                                int need, llmlab_err *err);
void medusa_heads_close(medusa_heads *hd);

/* logits[M][vocab] = head k on x[M][dim]; work: [2][M][dim] scratch. */
void medusa_heads_run(const medusa_heads *hd, int k, const float *x, int M, float *work, float *logits,
                      llmlab_threadpool *pool);

/* The k best indices of x[n] into out[k], best first: larger value wins, the lower
 * index on ties, NaN never beats a number (llmlab_argmax's rule). */
void medusa_topk(const float *x, int n, int k, int32_t *out);

#endif
