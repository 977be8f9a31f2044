/* cuda_attention.h - paged attention on the device (C API): storing K/V rows
 * into the paged cache and attending over it, with every visibility rule of the
 * CPU kernel (kernels/cpu/ops.h llmlab_cpu_attention).
 *
 * The cache.  The device pool has the host cache's layout (core/kv_cache.h) for
 * the per-token formats f32, f16 and bf16: block b starts at pool + b *
 * block_bytes; in it, layer l's K region at l * layer_bytes, its V region
 * v_offset bytes later; in a region, the record of (row r, KV head h) at
 * (r * n_kv_heads + h) * rec_bytes, head_dim elements.  A sequence's slot s
 * lives in block tables[t][s / block_size], row s % block_size (t: the token's
 * table row); a block id of -1 means every slot of it was evicted.
 *
 * The keys of token i, in order ("virtual index" v = 0, 1, ...):
 *   v < prior[i]:       slot v, visible when (meta[i] == 0 or slot_valid of
 *                       the slot in the token's lane is 1) and the pattern
 *                       admits slot_pos of the slot;
 *   v >= prior[i]:      slot extra_slots[extra_off[i] + v - prior[i]] (this
 *                       batch's tokens the token sees; ascending, each >=
 *                       prior[i]; the last is the token itself), visible when
 *                       the pattern admits it (valid bits are not consulted).
 * Any key whose block id is -1 is not visible.
 * meta[i] == 0 promises the slots have no holes and needs no metadata: every
 * prior slot is valid, and positions are only read when a pattern is set.
 * meta == NULL means all 0; slot_valid == NULL means every slot valid.
 * Patterns (plugin.h llmlab_attn_pattern, llmlab_pattern_sees): a key at the
 * query's own position is always seen; else block > 0 admits key block kb
 * (kb = k_pos / block, qb = q_pos / block) when kb < global, or qb - kb <
 * window (window > 0), or layout[qb][kb] (qb, kb < layout_blocks), or kb is
 * one of the token's random blocks.
 * rope_shifted (inv_freq != NULL): q and the keys are stored unrotated; the key
 * of rank r among the visible keys is rotated at position r and the query at
 * the rank of the last visible key (StreamingLLM), as the CPU kernel does.
 *
 * Output: out[i][h] = softmax(scale * q.K) V over the visible keys (zeros when
 * none), f32 accumulation.  With mass: mass[i][kvh][slot] = the probability of
 * slot summed over the query heads of KV head kvh (0 for slots not seen);
 * slots < mass_stride.
 *
 * Determinism.  The keys of a token are cut into chunks of `chunk` virtual
 * indices; each (token, head, chunk) reduces its keys in virtual-index order,
 * and the chunks are merged in chunk order.  So with a fixed chunk a token's
 * output is the same bits whatever the batch holds and however its keys are
 * split between prior slots and extras (one-shot vs incremental prefill), in
 * the decode kernel; n_splits does not change them either.  A token with more
 * than n_splits * chunk keys gets NaN from the decode kernel (a broken
 * contract made loud).  The prefill kernel (tiles of query rows sharing K/V
 * loads) is used only when deterministic is 0, tiles are given and
 * rope_shifted is off (its ranks are per query, so keys cannot be shared).
 *
 * Limits: head_dim <= 256 (EINVAL beyond), kv_dtype f32/f16/bf16 only.
 *
 * CUDA graphs.  Every per-token value comes from device arrays, and grid sizes
 * depend only on n_tokens, n_heads and n_splits, so a decode step captured once
 * replays for any contexts that fit n_splits * chunk keys. */
#ifndef LLMLAB_CUDA_ATTENTION_H
#define LLMLAB_CUDA_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMLAB_CUDA_MAX_RANDOM_BLOCKS 16 /* = LLMLAB_MAX_RANDOM_BLOCKS (kernels/cpu/ops.h) */

typedef struct {
    /* the paged cache */
    uint8_t *pool;            /* [n_blocks][block_bytes] */
    size_t block_bytes;
    size_t layer_bytes;       /* K region + V region of one layer */
    size_t v_offset;          /* from a layer's K region to its V region */
    size_t rec_bytes;         /* one head's row of one slot */
    int kv_dtype;             /* LLMLAB_KV_F32, LLMLAB_KV_F16, LLMLAB_KV_BF16 (plugin.h) */
    int block_size, n_kv_heads, head_dim, n_heads;
    int layer;
    const int32_t *slot_pos;  /* [n_blocks][n_lanes][block_size] positions, or NULL */
    const uint8_t *slot_valid;/* [n_blocks][n_lanes][block_size] 1 = attendable, or NULL */
    int n_lanes;              /* n_layers * n_kv_heads; lane = layer * n_kv_heads + kv head */
    const int32_t *tables;    /* [n_tables][table_stride] block ids, -1 = freed */
    int table_stride;
    /* the batch, [n_tokens] each */
    int n_tokens;
    const int32_t *tok_table; /* row of tables */
    const int32_t *prior;     /* prior slot count */
    const int32_t *q_pos;     /* the query's position */
    const uint8_t *meta;      /* 1 = check slot_valid (needs the metadata arrays) */
    const int32_t *extra_off; /* [n_tokens + 1] into extra_slots */
    const int32_t *extra_slots;
    /* the structured pattern (block 0: none) */
    int pat_block, pat_global, pat_window, layout_blocks;
    const uint8_t *layout;    /* [layout_blocks][layout_blocks] or NULL */
    const int32_t *rand;      /* [n_tokens][LLMLAB_CUDA_MAX_RANDOM_BLOCKS] or NULL */
    const int32_t *n_rand;    /* [n_tokens] or NULL */
    const float *inv_freq;    /* rope_shifted: [head_dim/2]; else NULL */
    /* input and output */
    const float *q;           /* [n_tokens][n_heads * head_dim] */
    float *out;               /* [n_tokens][n_heads * head_dim] */
    float scale;
    float *mass;              /* [n_tokens][n_kv_heads][mass_stride] or NULL */
    int mass_stride;
    /* splitting */
    int chunk;                /* virtual keys per chunk (> 0) */
    int n_splits;             /* chunks per token: every token has <= n_splits * chunk keys */
    int deterministic;        /* 1: the decode kernel for every token */
    /* prefill tiles: runs of consecutive batch tokens of one sequence, [n_tiles][2]
     * (first token, count); NULL = decode kernel for every token.  When used,
     * the tiles cover every token exactly once and a tile's rows share one
     * table row (tok_table of its first token).  One block per (tile, head)
     * takes 64 rows at a time: keep counts <= 64 for parallelism. */
    const int32_t *tiles;
    int n_tiles;
} llmlab_cuda_attn_args;

/* Device scratch bytes llmlab_cuda_attention needs for these sizes. */
size_t llmlab_cuda_attn_work_bytes(int n_tokens, int n_heads, int head_dim, int n_splits);

/* Attention of one layer for every token of the batch (see the top). */
llmlab_status llmlab_cuda_attention(void *stream, const llmlab_cuda_attn_args *a, void *work, llmlab_err *err);

/* Writes the K and V rows of n tokens of one layer into the cache: token i goes
 * to block blk[i], row row[i], encoded in kv_dtype (f16/bf16: round to nearest
 * even as kernels/cpu/kv_quant.c encodes; f16 saturates at +-65504).
 * k, v: [n][n_kv_heads * head_dim].  a supplies the layout and layer only. */
llmlab_status llmlab_cuda_kv_store(void *stream, const llmlab_cuda_attn_args *a, const float *k, const float *v,
                                   const int32_t *blk, const int32_t *row, int n, llmlab_err *err);

#ifdef __cplusplus
}
#endif
#endif
