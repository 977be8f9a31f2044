/* kv_cache.h - the paged KV cache (PagedAttention layout).
 *
 * Storage is a pool of fixed-size blocks (default 16 token slots).  Each sequence
 * owns a block table: slot s of a sequence lives in block table[s / block_size],
 * row s % block_size.
 *
 * Lanes.  A lane is one (layer, KV head) pair: lane = layer * n_kv_heads + kv_head.
 * Every slot keeps, per lane, the position of the token it holds and a valid bit,
 * so attention policies may evict a token from some heads only (H2O's per-head
 * keep sets).  Evicted slots leave holes that attention skips; a block with no
 * valid slot in any lane goes back to the free list; compact() closes the holes,
 * lane by lane in position order, and returns the freed tail blocks, so per-head
 * budgets really shrink memory.  After compaction a slot of different lanes may
 * hold different tokens; `shift` counts the slots compaction removed, so the
 * sequence still knows how many tokens it has seen (n_committed + shift).
 *
 * Attention mass.  With llmlab_kv_enable_mass, every slot also carries three f32
 * accumulators per lane (mass, obs, last; see plugin.h), moved and freed with it.
 *
 * Slots [0, n_committed) of a sequence are committed; slots [n_committed, len)
 * are provisional: written by the last forward (drafts, tree nodes) until a
 * decoding algorithm keeps some of them (keep) or drops them (truncate).
 *
 * Blocks are reference-counted: fork shares the parent's blocks, and the first
 * write into a shared block copies it (copy-on-write).
 *
 * Per-block layout, for each layer: K [block_size][n_kv_heads][head_dim] f32,
 * then V with the same shape.  Per-block metadata: [n_lanes][block_size] each.
 */
#ifndef LLMLAB_KV_CACHE_H
#define LLMLAB_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/plugin.h"

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
    int shift;        /* slots removed by compaction: tokens seen = n_committed + shift */
    int dirty;        /* evicted since the last compaction */
    llmlab_evict_rule rule; /* score eviction (capacity 0 = none) */
} llmlab_kv_seq;

typedef struct llmlab_kv {
    llmlab_kv_opts o;
    size_t row_floats;    /* n_kv_heads * head_dim: floats of one slot's K (or V) in one layer */
    size_t block_floats;  /* floats of one block: n_layers * 2 * block_size * row_floats */
    int n_lanes;          /* n_layers * n_kv_heads */
    float *pool;          /* [n_blocks][block_floats] */
    int32_t *slot_pos;    /* [n_blocks][n_lanes][block_size] position of the token held */
    uint8_t *slot_valid;  /* [n_blocks][n_lanes][block_size] 1 = attendable */
    float *mass;          /* [n_blocks][n_lanes][block_size] or NULL (see enable_mass) */
    float *obs;           /* same */
    float *last;          /* same */
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
/* Marks committed slots invalid in every lane; blocks left with no valid slot are freed. */
llmlab_status llmlab_kv_evict(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err);
/* The same in one lane only. */
llmlab_status llmlab_kv_evict_lane(llmlab_kv *kv, int seq, int lane, const int *slots, int n,
                                   llmlab_err *err);
/* Closes the holes of a sequence with no provisional slots: per lane, valid slots
 * move to the front in slot (= position) order; the length becomes the largest
 * lane's count and the blocks past it are freed.  Does nothing when that would
 * free no block.  Attention over the moved slots is unchanged bit for bit: it
 * reduces over valid slots in order, and the order is kept. */
llmlab_status llmlab_kv_compact(llmlab_kv *kv, int seq, llmlab_err *err);
/* Tokens the sequence's committed slots have seen: n_committed + shift. */
int llmlab_kv_tokens(const llmlab_kv *kv, int seq);

/* Attention-mass accumulators (allocated on first call). */
llmlab_status llmlab_kv_enable_mass(llmlab_kv *kv, llmlab_err *err);
int llmlab_kv_has_mass(const llmlab_kv *kv);
/* Adds one committed query's probabilities val[n] (indexed by slot, 0 where it did
 * not look) to lane `lane` of seq: mass += val, obs += val when `obs`, last = val. */
void llmlab_kv_add_mass(llmlab_kv *kv, int seq, int lane, const float *val, int n, int obs);
/* Score eviction (plugin.h llmlab_evict_rule). */
void llmlab_kv_set_rule(llmlab_kv *kv, int seq, const llmlab_evict_rule *rule);
/* Applies seq's rule to slots [0, upto) with `newest` the newest position: every
 * lane keeps its capacity best.  Returns the slots evicted (all lanes). */
int llmlab_kv_enforce(llmlab_kv *kv, int seq, int upto, int32_t newest, llmlab_err *err);
/* The rule's choice among n candidates: index of the unprotected valid entry with
 * the lowest score (oldest position on ties), or -1.  Shared by the engine and the
 * attention kernel's simulation of a speculative chain. */
int llmlab_evict_pick(const llmlab_evict_rule *rule, const float *score, const int32_t *pos,
                      const uint8_t *valid, int n, int32_t newest);
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
int llmlab_kv_slot_valid(const llmlab_kv *kv, int seq, int slot); /* valid in any lane */
int32_t llmlab_kv_slot_pos(const llmlab_kv *kv, int seq, int slot); /* lane 0's token */
/* Index of (seq, slot, lane) in the metadata arrays, or -1 when the block was freed. */
long llmlab_kv_meta(const llmlab_kv *kv, int seq, int slot, int lane);
int llmlab_kv_lane_valid(const llmlab_kv *kv, int seq, int slot, int lane);
int32_t llmlab_kv_lane_pos(const llmlab_kv *kv, int seq, int slot, int lane); /* -1: not valid */
/* K (or V) row [n_kv_heads][head_dim] of a slot in a layer. */
float *llmlab_kv_k_row(const llmlab_kv *kv, int seq, int slot, int layer);
float *llmlab_kv_v_row(const llmlab_kv *kv, int seq, int slot, int layer);

#endif
