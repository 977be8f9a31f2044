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
 * Storage formats (plugin.h llmlab_kv_format, chosen when the cache is created).
 * Per-block layout, for each layer: the K region, then the V region.  A region
 * is [block_size][n_kv_heads] records of one head's row (kernels/cpu/kv_quant.h:
 * f32, f16, bf16, or int8/int4 codes with their f16 scales per `group` channels),
 * followed, for keys per channel (KIVI), by [n_kv_heads] blocks of per-channel
 * f16 scales (and mins).  For f32 a record is head_dim floats, so the block is
 * exactly the old [block_size][n_kv_heads][head_dim] f32 K, then V.  The pool's
 * block size is the packed size: llmlab_kv_block_bytes and resident bytes are
 * the true bytes of the format.  Per-block metadata: [n_lanes][block_size] each.
 *
 * Hot blocks (the f32 residual window).  A format is "staged" when it keeps the
 * newest `residual` slots of a sequence in f32 or quantizes keys per channel
 * over a block's rows.  Then every block starts hot: besides its packed block it
 * owns an f32 staging copy ([n_layers][2][block_size][n_kv_heads * head_dim]),
 * allocated with the block, which writes and reads use.  A block cools -- its
 * staging is encoded into the packed block and freed -- once it is full, all its
 * slots are committed and none is among the newest `residual` committed slots
 * (window: [n_committed - residual, n_committed)).  Why blocks and not a
 * per-sequence ring of f32 slots: KIVI's per-channel key scales span a block's
 * rows, so a block can only be quantized when all its rows are there anyway;
 * block granularity then needs no second copy of slot data, no per-slot "where
 * is it" lookup in the attention kernel, and fork/copy-on-write, keep, eviction
 * and compaction stay block operations.  The cost: up to block_size - 1 slots
 * beyond the window stay f32 (a block cools only whole), and resident bytes
 * count a hot block's packed block and its staging copy both.
 *
 * Cooling happens when slots are committed (commit, keep) and after compaction.
 * A block shared by fork is cooled in place for every sharer.  truncate re-heats
 * a cold block that becomes the partly filled last block, so appends always
 * write f32 rows into hot blocks; per-token formats without residual (int8 per
 * token, f16, bf16) are not staged: rows are encoded as they are written.
 *
 * Moving slots (keep, compact) on packed data: per-token records are copied as
 * bytes (codes and scales unchanged), so attention after compaction equals
 * attention before bit for bit; a slot moved from a hot block into a cold one
 * is encoded on the way.  Keys per channel cannot move alone (their scales are
 * the destination block's): compaction re-quantizes each cold destination block
 * whose rows changed, per lane, from the decoded values of the rows it then
 * holds.  That adds at most half of the new scale step to those keys.
 */
#ifndef LLMLAB_KV_CACHE_H
#define LLMLAB_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/plugin.h"

/* Longest head a quantized cache decodes on the stack (f32 caches: any). */
#define LLMLAB_KV_MAX_HEAD_DIM 1024

/* Where the packed pool lives.  NULL (llmlab_kv_opts.mem) = host memory; the
 * CUDA backend passes device memory.  The cache then never reads or writes pool
 * bytes itself: every byte it moves (copy-on-write, keep, compaction, swap)
 * goes through copy, which may queue the copies as long as it runs them in
 * order before the next forward (kernels/cuda: one ordered copy kernel).  Only
 * the per-token formats f32/f16/bf16 can live off the host (the others re-encode
 * rows on the host). */
typedef struct {
    void *(*alloc)(void *user, size_t bytes);            /* NULL on failure */
    void (*release)(void *user, void *p);
    /* n bytes from src to dst; one side may be host memory (swap) */
    void (*copy)(void *user, void *dst, const void *src, size_t n);
    void *user;
} llmlab_kv_mem;

typedef struct {
    int n_layers;
    int n_kv_heads;
    int head_dim;
    int block_size; /* token slots per block; 0 -> 16 */
    int n_blocks;   /* blocks in the pool */
    int max_seqs;   /* sequence ids are 0 .. max_seqs-1 */
    llmlab_kv_format fmt; /* storage format; all zero = f32 (group 0 = head_dim) */
    const llmlab_kv_mem *mem; /* the pool's memory (copied); NULL = host */
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
    size_t block_floats;  /* floats of one block in f32 (an f32 block, a staging copy):
                             n_layers * 2 * block_size * row_floats */
    int n_lanes;          /* n_layers * n_kv_heads */
    llmlab_kv_format fmt; /* validated storage format (group resolved) */
    int staged;           /* blocks start hot (f32 staging) and cool later */
    size_t rec_bytes[2];  /* K / V bytes of one head's row of one slot (a record) */
    size_t chan_bytes;    /* per-channel key parameters of one head (KIVI), else 0 */
    size_t region_bytes[2]; /* K / V bytes of one layer in a block: records, then channel params */
    size_t block_bytes;   /* packed bytes of one block: n_layers * (K + V region) */
    uint8_t *pool;        /* [n_blocks][block_bytes] packed storage */
    float **stage;        /* [n_blocks] hot block's f32 copy [n_layers][2][block_size][row_floats], or NULL */
    int n_hot;            /* blocks with a staging copy */
    float *scratch;       /* [block_size][head_dim] re-quantizing a block's keys per channel */
    int32_t *slot_pos;    /* [n_blocks][n_lanes][block_size] position of the token held */
    uint8_t *slot_valid;  /* [n_blocks][n_lanes][block_size] 1 = attendable */
    uint8_t *meta_dirty;  /* [n_blocks] 1 = slot_pos/slot_valid changed since the last
                             llmlab_kv_meta_clean (a device mirror re-reads those blocks) */
    llmlab_kv_mem mem;    /* the pool's memory; alloc NULL = host */
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

/* Blocks whose metadata changed since the last call, in ascending order, into
 * out[n_blocks]; clears the marks.  Returns the count. */
int llmlab_kv_meta_clean(llmlab_kv *kv, int32_t *out);
/* 1 when the pool is not in host memory (llmlab_kv_opts.mem). */
int llmlab_kv_pool_off_host(const llmlab_kv *kv);

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
/* Blocks in use * block bytes, plus the f32 staging copies of hot blocks. */
size_t llmlab_kv_resident_bytes(const llmlab_kv *kv);
/* Bytes one slot takes in packed blocks (all layers, K and V, scales included;
 * per-channel parameters amortised over the block's rows): block_bytes / block_size. */
double llmlab_kv_bytes_per_token(const llmlab_kv *kv);
/* "f32", "f16", "bf16", "int8", "int4". */
const char *llmlab_kv_dtype_name(int dtype);
/* Checks a format against head_dim; a group of 0 or larger than head_dim becomes
 * head_dim (a head is then one group). */
llmlab_status llmlab_kv_format_check(llmlab_kv_format *f, int head_dim, llmlab_err *err);

/* ---- block manager support (the serving loop) ------------------------------------ */

/* Blocks the sequence holds (table entries whose block was not freed by eviction). */
int llmlab_kv_seq_blocks(const llmlab_kv *kv, int seq);
/* Fresh blocks an append of n slots to seq would take from the free list (new
 * blocks, a copy-on-write of a shared last block, a trailing block freed by
 * eviction); an append succeeds iff this is <= n_free. */
int llmlab_kv_append_blocks(const llmlab_kv *kv, int seq, int n);

/* Host swap space (preemption by swap, as vLLM's swap_space).  The area is an
 * account of `total` blocks; a swapped sequence keeps its blocks in one host
 * buffer of its own.  A swap block holds everything a device block owns: its
 * bytes (llmlab_kv_block_bytes, whatever the storage format) and its per-slot
 * metadata (positions, valid bits, attention-mass accumulators). */
typedef struct {
    int total, used;       /* blocks */
    size_t block_bytes;    /* host bytes of one swapped cold block (data + metadata) */
} llmlab_kv_swap;

/* A sequence's cache while swapped out: its block table and counters as they were. */
typedef struct {
    uint8_t *data;         /* [bytes] the held blocks' records in table order */
    int32_t *table;        /* [n_blocks] index into data, -1 = a block freed by eviction */
    int n_blocks, n_held;
    size_t bytes;          /* host bytes held (hot blocks carry their f32 staging copy too) */
    int len, n_committed, shift, dirty;
    llmlab_evict_rule rule;
} llmlab_kv_swapped;

void llmlab_kv_swap_init(llmlab_kv_swap *sw, const llmlab_kv *kv, int total_blocks);
/* Copies seq's committed cache (no provisional slots allowed) into *out and frees
 * the sequence on the device.  LLMLAB_ENOKV (nothing changed) when the swap space
 * lacks room for its blocks. */
llmlab_status llmlab_kv_swap_out(llmlab_kv *kv, llmlab_kv_swap *sw, int seq, llmlab_kv_swapped *out,
                                 llmlab_err *err);
/* Restores *in into the empty sequence seq and releases its swap blocks.
 * LLMLAB_ENOKV (nothing changed) when the pool lacks in->n_held free blocks. */
llmlab_status llmlab_kv_swap_in(llmlab_kv *kv, llmlab_kv_swap *sw, llmlab_kv_swapped *in, int seq,
                                llmlab_err *err);
/* Releases a swapped cache without restoring it (a cancelled request). */
void llmlab_kv_swap_drop(llmlab_kv_swap *sw, llmlab_kv_swapped *h);

/* Slot accessors: -1 / NULL when the slot's block was freed. */
int llmlab_kv_slot_block(const llmlab_kv *kv, int seq, int slot);
int llmlab_kv_slot_valid(const llmlab_kv *kv, int seq, int slot); /* valid in any lane */
int32_t llmlab_kv_slot_pos(const llmlab_kv *kv, int seq, int slot); /* lane 0's token */
/* Index of (seq, slot, lane) in the metadata arrays, or -1 when the block was freed. */
long llmlab_kv_meta(const llmlab_kv *kv, int seq, int slot, int lane);
int llmlab_kv_lane_valid(const llmlab_kv *kv, int seq, int slot, int lane);
int32_t llmlab_kv_lane_pos(const llmlab_kv *kv, int seq, int slot, int lane); /* -1: not valid */
/* K (or V) row [n_kv_heads][head_dim] of a slot in a layer: f32 caches only
 * (NULL for other formats; use llmlab_kv_write / llmlab_kv_head). */
float *llmlab_kv_k_row(const llmlab_kv *kv, int seq, int slot, int layer);
float *llmlab_kv_v_row(const llmlab_kv *kv, int seq, int slot, int layer);
/* Stores a slot's K and V rows k[n_kv_heads][head_dim], v[same] of one layer in
 * the cache's format (the slot must be allocated; its block private). */
void llmlab_kv_write(llmlab_kv *kv, int seq, int slot, int layer, const float *k, const float *v);
/* One head's K (which 0) or V (1) of a slot as f32: a pointer into the cache for
 * f32 storage and hot blocks, else the row decoded into buf[head_dim].  NULL
 * when the slot's block was freed. */
const float *llmlab_kv_head(const llmlab_kv *kv, int seq, int slot, int layer, int which, int head, float *buf);
/* Whether the block holding a slot is hot (has its f32 staging copy). */
int llmlab_kv_slot_hot(const llmlab_kv *kv, int seq, int slot);

#endif
