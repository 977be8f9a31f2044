/* ops.h - element-wise and per-row CPU ops of the forward pass (RMSNorm, RoPE,
 * SwiGLU) and paged attention.  All of them work row by row, so a row's result
 * never depends on other rows of the batch.
 */
#ifndef LLMLAB_KERNELS_CPU_OPS_H
#define LLMLAB_KERNELS_CPU_OPS_H

#include <stdint.h>

#include "../../core/kv_cache.h"

/* out[n] = (x[n] * rsqrt(mean(x^2) + eps)) * w[n], f32 as in transformers' LlamaRMSNorm. */
void llmlab_cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotates n_heads heads of head_dim each, in place, at position pos (HF "rotate_half":
 * element i pairs with i + head_dim/2).  inv_freq: [head_dim/2]. */
void llmlab_cpu_rope(float *x, int n_heads, int head_dim, int32_t pos, const float *inv_freq);

/* gate[n] = silu(gate[n]) * up[n] */
void llmlab_cpu_swiglu(float *gate, const float *up, int n);

/* Longest head the attention kernel rotates on the fly (rope_shifted). */
#define LLMLAB_MAX_HEAD_DIM 512
/* Most BigBird random blocks per query block. */
#define LLMLAB_MAX_RANDOM_BLOCKS 16

/* The keys one query may attend, in slot order: the slots among [0, n_prior) of
 * the sequence valid in the query's lane, then the slots listed in extra[]
 * (ascending; the last is the query itself).  A structured pattern, when given,
 * hides keys by position (plugin.h llmlab_attn_pattern); hide[] hides slots a
 * speculative chain evicted earlier in the same forward. */
typedef struct {
    const llmlab_kv *kv;
    int seq;
    int layer;
    int kv_head;
    int n_prior;
    const int32_t *extra;  /* [n_extra] */
    int n_extra;
    const llmlab_attn_pattern *pat; /* NULL or block 0: every key */
    int32_t q_pos;         /* the query's position (pattern) */
    const int *rand;       /* [n_rand] random key blocks of the query's block */
    int n_rand;
    const uint8_t *hide;   /* [slots] 1 = not visible, or NULL */
    const float *inv_freq; /* rope_shifted: q and keys arrive unrotated and are
                              rotated at their rank among the visible keys */
} llmlab_attn_keys;

/* The pattern's rule for one key position (plugin.h). */
int llmlab_pattern_sees(const llmlab_attn_pattern *p, int32_t q_pos, int32_t k_pos, const int *rand, int n_rand);

/* out[head_dim] = softmax(scale * q.K) V over the keys.  scores: [n_prior + n_extra]
 * scratch.  Reduces over keys in slot order with one fixed blocking, whatever else
 * runs in the batch.  A query with no visible key gets zeros.  mass, when not
 * NULL, is indexed by slot: mass[slot] += the key's probability (the attention
 * mass H2O-style policies accumulate, without a score matrix in memory). */
void llmlab_cpu_attention(float *out, const float *q, int head_dim, const llmlab_attn_keys *keys,
                          float scale, float *scores, float *mass);

/* Reference: double precision, plain loops. */
void llmlab_cpu_attention_ref(float *out, const float *q, int head_dim,
                              const llmlab_attn_keys *keys, float scale);

/* Dot product with a fixed 8-lane split (deterministic, shared by attention). */
float llmlab_cpu_dot(const float *a, const float *b, int n);

#endif
