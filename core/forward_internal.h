/* forward_internal.h - the forward context's fields, shared by the CPU forward
 * (forward.c) and the CUDA one (forward_cuda.c) only. */
#ifndef LLMLAB_FORWARD_INTERNAL_H
#define LLMLAB_FORWARD_INTERNAL_H

#include "forward.h"
#include "kernels/cpu/ops.h"

struct llmlab_cuda_fwd;

struct llmlab_ctx {
    const llmlab_model *m;
    llmlab_kv *kv;
    llmlab_threadpool *pool;
    int max_batch;
    int kv_tokens;
    /* activations, [max_batch][...] */
    float *x;       /* [B][dim] residual stream */
    float *h;       /* [B][dim] normed input of a sub-block */
    float *q;       /* [B][n_heads*head_dim] */
    float *k;       /* [B][n_kv_heads*head_dim] */
    float *v;       /* [B][n_kv_heads*head_dim] */
    float *att;     /* [B][n_heads*head_dim] attention output */
    float *gate;    /* [B][ffn_dim] */
    float *up;      /* [B][ffn_dim] */
    float *tmp;     /* [B][dim] */
    /* visibility: per token, the prior-slot count and the visible batch slots (CSR) */
    int32_t *n_prior;   /* [B] */
    int32_t *vis_off;   /* [B+1] */
    int32_t *vis_slots; /* [B*B] worst case */
    int n_scratch;      /* attention scratch rows */
    float *scores;      /* [n_scratch][kv_tokens + B] */
    /* outputs */
    llmlab_outputs out;
    llmlab_linear_fn linear; /* NULL: dense kernel on the stored dtype */
    void *linear_user;
    uint8_t *skip;      /* [n_layers] 1 = layer left out (self-speculative drafts), or NULL */
    int32_t *seq_len0;  /* [max_seqs] sequence lengths before this batch */
    int32_t *seq_count; /* [max_seqs] tokens of each sequence in this batch */
    /* attention policies */
    llmlab_attn_pattern pat;  /* block 0 = dense */
    uint8_t *layout;          /* [layout_blocks^2] the pattern's copy */
    int32_t *rand;            /* [B][LLMLAB_MAX_RANDOM_BLOCKS] random key blocks per token */
    int32_t *n_rand;          /* [B] */
    int mass_on;              /* accumulate attention mass (one task per sequence x KV head) */
    int32_t *units;           /* [max_seqs] sequences of this batch, first-appearance order */
    int n_units;
    uint8_t *seq_chain;       /* [max_seqs] the sequence's rows form one chain */
    size_t *row_off;          /* [B] ROW tokens: offset of [n_lanes][len] in row_mass */
    int32_t *row_len;         /* [B] slots per lane in the row's buffer (0: none) */
    float *row_mass;          /* [row_cap] */
    size_t row_cap;
    uint8_t *scratch;         /* per unit: val, score f32, pos i32, alive u8, hide u8 per slot */
    size_t scratch_cap;
    size_t *unit_off;         /* [max_seqs * n_kv_heads] byte offset of each unit's scratch */
    struct llmlab_cuda_fwd *gpu; /* backend cuda: the device side (forward_cuda.c), else NULL */
};

/* ---- the CUDA side (forward_cuda.c; without CUDA these report EUNSUPPORTED) ---- */

/* Opens the model's device (uploading its weights on first use, kept with the
 * model) and makes the device side of c; fills *mem with the device memory the
 * KV pool must use.  c->m, c->max_batch are set; the KV cache is not made yet. */
llmlab_status llmlab_cuda_fwd_create(llmlab_ctx *c, llmlab_kv_mem *mem, llmlab_err *err);
/* Allocates what depends on the KV cache's sizes (block tables, metadata mirror). */
llmlab_status llmlab_cuda_fwd_bind(llmlab_ctx *c, llmlab_err *err);
void llmlab_cuda_fwd_free(struct llmlab_cuda_fwd *g);
/* Runs batch b on the device once its tokens are placed (place_tokens): the
 * same outputs as the CPU forward, in c->out. */
llmlab_status llmlab_cuda_forward(llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err);

#endif
