/* kv_cache.h - the paged KV cache (PagedAttention layout).
 *
 * Storage is a pool of fixed-size blocks (default 16 token slots).  Each sequence
 * owns a block table: slot s of a sequence lives in block table[s / block_size],
 * row s % block_size.  Every slot keeps the position it was written at and a valid
 * bit, so evicted slots leave holes that attention skips, and a block whose slots
 * are all invalid goes back to the free list.
 *
 * Slots [0, n_committed) of a sequence are committed; slots [n_committed, len)
 * are provisional: written by the last forward (drafts, tree nodes) until a
 * decoding algorithm keeps some of them (keep) or drops them (truncate).
 *
 * Blocks are reference-counted: fork shares the parent's blocks, and the first
 * write into a shared block copies it (copy-on-write).
 *
 * Per-block layout, for each layer: K [block_size][n_kv_heads][head_dim] f32,
 * then V with the same shape.
 */
#ifndef LLMLAB_KV_CACHE_H
#define LLMLAB_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

typedef struct {
    int n_layers;
    int n_kv_heads;
    int head_dim;
    int block_size; /* token slots per block; 0 -> 16 */
    int n_blocks;   /* blocks in the pool */
    int max_seqs;   /* sequence ids are 0 .. max_seqs-1 */
} llmlab_kv_opts;

typedef struct {
    int32_t *blocks;  /* [cap_blocks] block ids, -1 = freed (all its slots evicted) */
    int n_blocks;     /* entries in use in blocks[] */
    int cap_blocks;
    int len;          /* slots in use, committed + provisional */
    int n_committed;  /* slots [0, n_committed) are committed */
    int active;       /* the sequence exists */
} llmlab_kv_seq;

typedef struct llmlab_kv {
    llmlab_kv_opts o;
    size_t row_floats;    /* n_kv_heads * head_dim: floats of one slot's K (or V) in one layer */
    size_t block_floats;  /* floats of one block: n_layers * 2 * block_size * row_floats */
    float *pool;          /* [n_blocks][block_floats] */
    int32_t *slot_pos;    /* [n_blocks * block_size] position each slot was written at */
    uint8_t *slot_valid;  /* [n_blocks * block_size] 1 = attendable */
    int32_t *refcount;    /* [n_blocks] sequences sharing the block; 0 = free */
    int32_t *free_list;   /* [n_blocks] stack of free block ids */
    int n_free;
    llmlab_kv_seq *seqs;  /* [max_seqs] */
} llmlab_kv;

llmlab_status llmlab_kv_create(llmlab_kv **out, const llmlab_kv_opts *opts, llmlab_err *err);
void llmlab_kv_free(llmlab_kv *kv);

/* Appends n provisional slots to seq (creating it if needed) at positions pos[0..n),
 * allocating blocks; on success *first_slot is the index of the first new slot.
 * LLMLAB_ENOKV (nothing changed) when the pool cannot hold them. */
llmlab_status llmlab_kv_append(llmlab_kv *kv, int seq, int n, const int32_t *pos,
                               int *first_slot, llmlab_err *err);
/* Drops every slot at index >= n (committed or not); frees emptied blocks. */
llmlab_status llmlab_kv_truncate(llmlab_kv *kv, int seq, int n, llmlab_err *err);
/* Makes dst a copy of src sharing its blocks (copy-on-write).  dst must be empty. */
llmlab_status llmlab_kv_fork(llmlab_kv *kv, int src, int dst, llmlab_err *err);
/* Commits the provisional slots listed (ascending, each >= n_committed), moving them
 * to n_committed, n_committed+1, ... in order, and drops all other provisional slots. */
llmlab_status llmlab_kv_keep(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err);
/* Commits all provisional slots as they are. */
void llmlab_kv_commit(llmlab_kv *kv, int seq);
/* Marks committed slots invalid; blocks left with no valid slot are freed. */
llmlab_status llmlab_kv_evict(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err);
/* Releases every block of seq; the id can be reused. */
void llmlab_kv_free_seq(llmlab_kv *kv, int seq);

/* Makes the block holding `slot` private to seq (copy-on-write) and returns it. */
llmlab_status llmlab_kv_make_writable(llmlab_kv *kv, int seq, int slot, llmlab_err *err);

int llmlab_kv_len(const llmlab_kv *kv, int seq);
int llmlab_kv_committed(const llmlab_kv *kv, int seq);
int llmlab_kv_blocks_used(const llmlab_kv *kv);
size_t llmlab_kv_block_bytes(const llmlab_kv *kv);
size_t llmlab_kv_resident_bytes(const llmlab_kv *kv); /* blocks in use * block bytes */

/* Slot accessors: -1 / NULL when the slot's block was freed. */
int llmlab_kv_slot_block(const llmlab_kv *kv, int seq, int slot);
int llmlab_kv_slot_valid(const llmlab_kv *kv, int seq, int slot);
int32_t llmlab_kv_slot_pos(const llmlab_kv *kv, int seq, int slot);
/* K (or V) row [n_kv_heads][head_dim] of a slot in a layer. */
float *llmlab_kv_k_row(const llmlab_kv *kv, int seq, int slot, int layer);
float *llmlab_kv_v_row(const llmlab_kv *kv, int seq, int slot, int layer);

#endif
