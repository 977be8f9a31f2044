/* kv_store.h - internal to the KV cache: where a block's K/V bytes live in each
 * storage format, hot blocks' f32 staging copies, and moving one head's row
 * between slots (kv_cache.h explains the formats and when blocks cool).
 * Everything here works on block ids; kv_cache.c owns tables and refcounts. */
#ifndef LLMLAB_KV_STORE_H
#define LLMLAB_KV_STORE_H

#include "kv_cache.h"

/* Validates kv->o.fmt, computes the layout sizes and allocates the pool, the
 * staging table and the scratch rows. */
llmlab_status llmlab_kvs_init(llmlab_kv *kv, llmlab_err *err);
void llmlab_kvs_free(llmlab_kv *kv);

/* Copies pool bytes (or pool <-> host bytes) through kv->mem when the pool is
 * off the host, memcpy otherwise. */
void llmlab_kvs_pool_copy(const llmlab_kv *kv, void *dst, const void *src, size_t n);

/* A block just taken from the free list: staged formats give it a staging copy
 * (ENOMEM when it cannot be allocated). */
llmlab_status llmlab_kvs_fresh(llmlab_kv *kv, int b, llmlab_err *err);
/* A block going back to the free list: drops its staging copy. */
void llmlab_kvs_release(llmlab_kv *kv, int b);
/* Copies block src's data (packed bytes, and its staging copy when hot) to dst. */
llmlab_status llmlab_kvs_copy(llmlab_kv *kv, int dst, int src, llmlab_err *err);

/* Encodes a hot block's staging copy into its packed block and frees the copy. */
void llmlab_kvs_cool(llmlab_kv *kv, int b);
/* Gives a cold block a staging copy holding its decoded rows. */
llmlab_status llmlab_kvs_heat(llmlab_kv *kv, int b, llmlab_err *err);
int llmlab_kvs_is_hot(const llmlab_kv *kv, int b);

/* Keys per channel in a cold block? (then rows cannot be written one by one) */
int llmlab_kvs_per_channel(const llmlab_kv *kv);

/* Copies one head's K and V (layer, head) from (fb, row fr) to (tb, row tr),
 * converting between hot and cold blocks.  With defer_keys, per-channel keys
 * bound for a cold block are left for llmlab_kvs_requant_keys. */
void llmlab_kvs_move(llmlab_kv *kv, int fb, int fr, int tb, int tr, int layer, int head, int defer_keys);
/* One head's row as f32 (pointer into f32 storage, or decoded into buf). */
const float *llmlab_kvs_read(const llmlab_kv *kv, int b, int row, int layer, int which, int head, float *buf);
/* Re-quantizes the per-channel keys of (block b, layer, head) from
 * x[block_size][x_stride]; rows whose lane is not valid do not set the range. */
void llmlab_kvs_requant_keys(llmlab_kv *kv, int b, int layer, int head, const float *x, size_t x_stride);

#endif
