/* kv_cache.c - block pool, per-sequence block tables, copy-on-write, keep/evict.
 *
 * Invariants (checked by tests/test_kv_cache.c):
 *  - a block is on the free list iff its refcount is 0;
 *  - a sequence's table entry is -1 only when every slot of that block was evicted;
 *  - slots at index >= len hold nothing: their block rows are reusable;
 *  - within a lane, valid committed slots are in position order.
 */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kv_store.h"

/* Metadata index of (block, lane, row): [n_blocks][n_lanes][block_size]. */
static size_t meta_index(const llmlab_kv *kv, int block, int lane, int row) {
    return ((size_t)block * (size_t)kv->n_lanes + (size_t)lane) * (size_t)kv->o.block_size + (size_t)row;
}
static size_t meta_per_block(const llmlab_kv *kv) { return (size_t)kv->n_lanes * (size_t)kv->o.block_size; }
/* Block b's positions or valid bits are about to change (a device mirror must
 * re-read it; llmlab_kv_meta_clean). */
static void meta_touch(llmlab_kv *kv, int b) { kv->meta_dirty[b] = 1; }

llmlab_status llmlab_kv_create(llmlab_kv **out, const llmlab_kv_opts *opts, llmlab_err *err) {
    *out = NULL;
    llmlab_kv_opts o = *opts;
    if (o.block_size == 0) o.block_size = 16;
    if (o.n_layers <= 0 || o.n_kv_heads <= 0 || o.head_dim <= 0 || o.block_size <= 0 ||
        o.n_blocks <= 0 || o.max_seqs <= 0)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "KV cache: every size must be positive (layers %d, kv heads %d, "
                              "head_dim %d, block_size %d, blocks %d, max_seqs %d)",
                              o.n_layers, o.n_kv_heads, o.head_dim, o.block_size, o.n_blocks,
                              o.max_seqs);
    llmlab_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory");
    kv->o = o;
    kv->row_floats = (size_t)o.n_kv_heads * (size_t)o.head_dim;
    kv->block_floats = (size_t)o.n_layers * 2u * (size_t)o.block_size * kv->row_floats;
    kv->n_lanes = o.n_layers * o.n_kv_heads;
    if (o.mem) kv->mem = *o.mem;
    kv->o.mem = o.mem ? &kv->mem : NULL; /* so a cache made from kv->o shares the memory */
    size_t n_slots = (size_t)o.n_blocks * meta_per_block(kv);
    llmlab_status st = llmlab_kvs_init(kv, err); /* the packed pool in o.fmt */
    if (st) {
        llmlab_kv_free(kv);
        return st;
    }
    kv->slot_pos = calloc(n_slots, sizeof *kv->slot_pos);
    kv->slot_valid = calloc(n_slots, 1);
    kv->meta_dirty = calloc((size_t)o.n_blocks, 1);
    kv->refcount = calloc((size_t)o.n_blocks, sizeof *kv->refcount);
    kv->free_list = malloc((size_t)o.n_blocks * sizeof *kv->free_list);
    kv->seqs = calloc((size_t)o.max_seqs, sizeof *kv->seqs);
    if (!kv->slot_pos || !kv->slot_valid || !kv->meta_dirty || !kv->refcount || !kv->free_list || !kv->seqs) {
        size_t mib = ((size_t)o.n_blocks * kv->block_bytes) >> 20;
        llmlab_kv_free(kv);
        return llmlab_err_set(err, LLMLAB_ENOMEM,
                              "KV cache: cannot allocate %zu MiB for %d blocks of %d tokens", mib,
                              o.n_blocks, o.block_size);
    }
    /* Stack order so block 0 is handed out first: runs are easy to read in a debugger. */
    for (int i = 0; i < o.n_blocks; i++) kv->free_list[i] = o.n_blocks - 1 - i;
    kv->n_free = o.n_blocks;
    *out = kv;
    return LLMLAB_OK;
}

void llmlab_kv_free(llmlab_kv *kv) {
    if (!kv) return;
    if (kv->seqs)
        for (int s = 0; s < kv->o.max_seqs; s++) free(kv->seqs[s].blocks);
    llmlab_kvs_free(kv);
    free(kv->slot_pos);
    free(kv->slot_valid);
    free(kv->meta_dirty);
    free(kv->mass);
    free(kv->obs);
    free(kv->last);
    free(kv->refcount);
    free(kv->free_list);
    free(kv->seqs);
    free(kv);
}

static llmlab_status check_seq(const llmlab_kv *kv, int seq, llmlab_err *err) {
    if (seq < 0 || seq >= kv->o.max_seqs)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: sequence id %d outside 0..%d", seq,
                              kv->o.max_seqs - 1);
    return LLMLAB_OK;
}

static void block_release(llmlab_kv *kv, int b) {
    if (b < 0) return;
    if (--kv->refcount[b] == 0) {
        llmlab_kvs_release(kv, b);
        kv->free_list[kv->n_free++] = b;
    }
}

static int block_take(llmlab_kv *kv) {
    if (kv->n_free == 0) return -1;
    int b = kv->free_list[--kv->n_free];
    kv->refcount[b] = 1;
    return b;
}

static llmlab_status table_reserve(llmlab_kv_seq *s, int n_blocks, llmlab_err *err) {
    if (n_blocks <= s->cap_blocks) return LLMLAB_OK;
    int cap = s->cap_blocks ? s->cap_blocks : 8;
    while (cap < n_blocks) cap *= 2;
    int32_t *nb = realloc(s->blocks, (size_t)cap * sizeof *nb);
    if (!nb) return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory for a block table");
    s->blocks = nb;
    s->cap_blocks = cap;
    return LLMLAB_OK;
}

/* Copies block src into a fresh block and returns its id; -1 when none is free,
 * -2 when its staging copy cannot be allocated. */
static int block_copy(llmlab_kv *kv, int src) {
    int dst = block_take(kv);
    if (dst < 0) return -1;
    if (llmlab_kvs_copy(kv, dst, src, NULL)) {
        block_release(kv, dst);
        return -2;
    }
    size_t m = meta_per_block(kv), d = (size_t)dst * m, sidx = (size_t)src * m;
    meta_touch(kv, dst);
    memcpy(kv->slot_pos + d, kv->slot_pos + sidx, m * sizeof *kv->slot_pos);
    memcpy(kv->slot_valid + d, kv->slot_valid + sidx, m);
    float *acc[] = {kv->mass, kv->obs, kv->last};
    for (int a = 0; a < 3; a++)
        if (acc[a]) memcpy(acc[a] + d, acc[a] + sidx, m * sizeof(float));
    return dst;
}

llmlab_status llmlab_kv_make_writable(llmlab_kv *kv, int seq, int slot, llmlab_err *err) {
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bi = slot / kv->o.block_size;
    int b = s->blocks[bi];
    if (b < 0 || kv->refcount[b] == 1) return LLMLAB_OK;
    int nb = block_copy(kv, b);
    if (nb == -2) return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory copying a hot block");
    if (nb < 0)
        return llmlab_err_set(err, LLMLAB_ENOKV,
                              "KV cache: no free block for copy-on-write of sequence %d "
                              "(%d blocks of %d tokens, all in use)",
                              seq, kv->o.n_blocks, kv->o.block_size);
    kv->refcount[b]--;
    s->blocks[bi] = nb;
    return LLMLAB_OK;
}

llmlab_status llmlab_kv_append(llmlab_kv *kv, int seq, int n, const int32_t *pos, int *first_slot,
                               llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    if (n < 0) return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: negative append count %d", n);
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bs = kv->o.block_size;
    int new_len = s->len + n;
    int need_blocks = (new_len + bs - 1) / bs;
    /* A shared last block must be copied before its free rows are written. */
    int cow = (n > 0 && s->len % bs != 0 && s->blocks[s->n_blocks - 1] >= 0 &&
               kv->refcount[s->blocks[s->n_blocks - 1]] > 1);
    int fresh = need_blocks - s->n_blocks + cow;
    if (fresh > kv->n_free)
        return llmlab_err_set(err, LLMLAB_ENOKV,
                              "KV cache full: sequence %d needs %d more blocks, %d of %d free "
                              "(block size %d tokens)",
                              seq, fresh, kv->n_free, kv->o.n_blocks, bs);
    if ((st = table_reserve(s, need_blocks, err))) return st;
    if (cow && (st = llmlab_kv_make_writable(kv, seq, s->len - 1, err))) return st;
    /* A trailing block freed by eviction still has free rows: give it a fresh block. */
    if (n > 0 && s->len % bs != 0 && s->blocks[s->n_blocks - 1] < 0) {
        int b = block_take(kv);
        if (b < 0) return llmlab_err_set(err, LLMLAB_ENOKV, "KV cache full (sequence %d)", seq);
        memset(kv->slot_valid + meta_index(kv, b, 0, 0), 0, meta_per_block(kv));
        meta_touch(kv, b);
        s->blocks[s->n_blocks - 1] = b;
        if ((st = llmlab_kvs_fresh(kv, b, err))) return st; /* the block stays, cold: still usable */
    }
    while (s->n_blocks < need_blocks) {
        int b = block_take(kv);
        if (b < 0) return llmlab_err_set(err, LLMLAB_ENOKV, "KV cache full (sequence %d)", seq);
        memset(kv->slot_valid + meta_index(kv, b, 0, 0), 0, meta_per_block(kv));
        meta_touch(kv, b);
        if ((st = llmlab_kvs_fresh(kv, b, err))) { /* staged formats: the block's f32 copy */
            block_release(kv, b);
            llmlab_kv_truncate(kv, seq, s->len, NULL); /* returns the blocks taken so far */
            return st;
        }
        s->blocks[s->n_blocks++] = b;
    }
    for (int i = 0; i < n; i++) {
        int slot = s->len + i;
        meta_touch(kv, s->blocks[slot / bs]);
        for (int lane = 0; lane < kv->n_lanes; lane++) {
            size_t si = meta_index(kv, s->blocks[slot / bs], lane, slot % bs);
            kv->slot_pos[si] = pos ? pos[i] : slot;
            kv->slot_valid[si] = 1;
            if (kv->mass) kv->mass[si] = kv->obs[si] = kv->last[si] = 0.0f;
        }
    }
    *first_slot = s->len;
    s->len = new_len;
    s->active = 1;
    return LLMLAB_OK;
}

llmlab_status llmlab_kv_truncate(llmlab_kv *kv, int seq, int n, llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    if (n < 0 || n > s->len)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "KV cache: cannot truncate sequence %d of length %d to %d", seq,
                              s->len, n);
    int bs = kv->o.block_size;
    int keep_blocks = (n + bs - 1) / bs;
    for (int i = keep_blocks; i < s->n_blocks; i++) block_release(kv, s->blocks[i]);
    s->n_blocks = keep_blocks;
    s->len = n;
    if (s->n_committed > n) s->n_committed = n;
    /* Staged formats append into hot blocks only: a cold block that is now the
     * partly filled last one gets its f32 copy back (made private first). */
    if (kv->staged && n % bs != 0 && s->blocks[keep_blocks - 1] >= 0 &&
        !llmlab_kvs_is_hot(kv, s->blocks[keep_blocks - 1])) {
        if ((st = llmlab_kv_make_writable(kv, seq, n - 1, err))) return st;
        return llmlab_kvs_heat(kv, s->blocks[keep_blocks - 1], err);
    }
    return LLMLAB_OK;
}

/* Cools the hot blocks of seq that are full, committed and older than the
 * residual window (kv_cache.h "Hot blocks"). */
static void seq_cool(llmlab_kv *kv, int seq) {
    if (!kv->staged) return;
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bs = kv->o.block_size, limit = s->n_committed - kv->fmt.residual;
    for (int bi = 0; bi < s->n_blocks && (bi + 1) * bs <= limit; bi++)
        if (s->blocks[bi] >= 0) llmlab_kvs_cool(kv, s->blocks[bi]);
}

void llmlab_kv_free_seq(llmlab_kv *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs) return;
    llmlab_kv_seq *s = &kv->seqs[seq];
    for (int i = 0; i < s->n_blocks; i++) block_release(kv, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->n_committed = 0;
    s->active = 0;
    s->shift = 0;
    s->dirty = 0;
    s->rule = (llmlab_evict_rule){0};
}

llmlab_status llmlab_kv_fork(llmlab_kv *kv, int src, int dst, llmlab_err *err) {
    llmlab_status st;
    if ((st = check_seq(kv, src, err)) || (st = check_seq(kv, dst, err))) return st;
    if (src == dst) return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: fork of %d onto itself", src);
    llmlab_kv_seq *s = &kv->seqs[src], *d = &kv->seqs[dst];
    if (d->len > 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: fork target sequence %d is not empty",
                              dst);
    if ((st = table_reserve(d, s->n_blocks, err))) return st;
    for (int i = 0; i < s->n_blocks; i++) {
        d->blocks[i] = s->blocks[i];
        if (s->blocks[i] >= 0) kv->refcount[s->blocks[i]]++;
    }
    d->n_blocks = s->n_blocks;
    d->len = s->len;
    d->n_committed = s->n_committed;
    d->shift = s->shift;
    d->rule = s->rule;
    d->active = 1;
    return LLMLAB_OK;
}

void llmlab_kv_commit(llmlab_kv *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs) return;
    kv->seqs[seq].n_committed = kv->seqs[seq].len;
    seq_cool(kv, seq);
}

/* Copies one lane of slot `from` to slot `to` of the same sequence: the lane's K
 * and V head vectors and its metadata.  defer_keys: per-channel keys bound for a
 * cold block are re-quantized later by the caller (compaction). */
static void lane_move(llmlab_kv *kv, llmlab_kv_seq *s, int from, int to, int lane, int defer_keys) {
    int bs = kv->o.block_size;
    int fb = s->blocks[from / bs], tb = s->blocks[to / bs];
    int fr = from % bs, tr = to % bs;
    int layer = lane / kv->o.n_kv_heads, head = lane % kv->o.n_kv_heads;
    size_t d = meta_index(kv, tb, lane, tr), f = meta_index(kv, fb, lane, fr);
    meta_touch(kv, tb);
    kv->slot_pos[d] = kv->slot_pos[f];
    kv->slot_valid[d] = kv->slot_valid[f]; /* first: per-channel keys take their range from valid rows */
    if (kv->mass) {
        kv->mass[d] = kv->mass[f];
        kv->obs[d] = kv->obs[f];
        kv->last[d] = kv->last[f];
    }
    llmlab_kvs_move(kv, fb, fr, tb, tr, layer, head, defer_keys);
}

/* Copies slot `from` to slot `to` of the same sequence (to < from), all lanes. */
static void slot_move(llmlab_kv *kv, llmlab_kv_seq *s, int from, int to) {
    for (int lane = 0; lane < kv->n_lanes; lane++) lane_move(kv, s, from, to, lane, 0);
}

llmlab_status llmlab_kv_keep(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    int prev = s->n_committed - 1;
    for (int i = 0; i < n; i++) {
        if (slots[i] <= prev || slots[i] >= s->len)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "KV cache: keep of sequence %d: slot %d is not an ascending "
                                  "provisional slot (committed %d, length %d)",
                                  seq, slots[i], s->n_committed, s->len);
        prev = slots[i];
    }
    for (int i = 0; i < n; i++) {
        int to = s->n_committed + i;
        if (slots[i] == to) continue;
        if ((st = llmlab_kv_make_writable(kv, seq, to, err))) return st;
        slot_move(kv, s, slots[i], to);
    }
    int new_len = s->n_committed + n;
    if ((st = llmlab_kv_truncate(kv, seq, new_len, err))) return st;
    s->n_committed = new_len;
    seq_cool(kv, seq);
    return LLMLAB_OK;
}

static llmlab_status check_evict(const llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    const llmlab_kv_seq *s = &kv->seqs[seq];
    for (int i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= s->n_committed)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "KV cache: evict of sequence %d: slot %d is not committed "
                                  "(committed %d); provisional slots are never evicted",
                                  seq, slots[i], s->n_committed);
    return LLMLAB_OK;
}

/* Returns the blocks holding `slots` whose every used row is now invalid in every
 * lane.  A partly filled last block stays: it still takes appends. */
static void release_empty_blocks(llmlab_kv *kv, llmlab_kv_seq *s, const int *slots, int n) {
    int bs = kv->o.block_size;
    for (int i = 0; i < n; i++) {
        int bi = slots[i] / bs, b = s->blocks[bi];
        if (b < 0 || (bi == s->n_blocks - 1 && s->len - bi * bs < bs)) continue;
        const uint8_t *v = kv->slot_valid + meta_index(kv, b, 0, 0);
        size_t m = meta_per_block(kv), any = 0;
        for (size_t r = 0; r < m && !any; r++) any = v[r];
        if (!any) {
            block_release(kv, b);
            s->blocks[bi] = -1;
        }
    }
}

/* Invalidates slots in lanes [lane0, lane1). */
static llmlab_status evict_lanes(llmlab_kv *kv, int seq, int lane0, int lane1, const int *slots, int n,
                                 llmlab_err *err) {
    llmlab_status st = check_evict(kv, seq, slots, n, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bs = kv->o.block_size;
    for (int i = 0; i < n; i++) {
        if (s->blocks[slots[i] / bs] < 0) continue;
        if ((st = llmlab_kv_make_writable(kv, seq, slots[i], err))) return st;
        meta_touch(kv, s->blocks[slots[i] / bs]);
        for (int lane = lane0; lane < lane1; lane++)
            kv->slot_valid[meta_index(kv, s->blocks[slots[i] / bs], lane, slots[i] % bs)] = 0;
    }
    if (n > 0) s->dirty = 1;
    release_empty_blocks(kv, s, slots, n);
    return LLMLAB_OK;
}

llmlab_status llmlab_kv_evict(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err) {
    return evict_lanes(kv, seq, 0, kv->n_lanes, slots, n, err);
}

llmlab_status llmlab_kv_evict_lane(llmlab_kv *kv, int seq, int lane, const int *slots, int n,
                                   llmlab_err *err) {
    if (lane < 0 || lane >= kv->n_lanes)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: lane %d outside 0..%d", lane, kv->n_lanes - 1);
    return evict_lanes(kv, seq, lane, lane + 1, slots, n, err);
}

/* ---- compaction ------------------------------------------------------------------ */

/* Drops the table entries of freed blocks: the slots after them renumber, their
 * order stays, and no data moves. */
static void drop_freed_entries(llmlab_kv *kv, llmlab_kv_seq *s) {
    int bs = kv->o.block_size, w = 0, removed = 0;
    for (int i = 0; i < s->n_blocks; i++) {
        if (s->blocks[i] < 0) { /* only full blocks are ever freed */
            removed += bs;
            continue;
        }
        s->blocks[w++] = s->blocks[i];
    }
    s->n_blocks = w;
    s->len -= removed;
    s->n_committed -= removed;
    s->shift += removed;
}

/* Valid slots of a lane in [0, len). */
static int lane_count(const llmlab_kv *kv, const llmlab_kv_seq *s, int lane) {
    int bs = kv->o.block_size, n = 0;
    for (int slot = 0; slot < s->len; slot++) {
        int b = s->blocks[slot / bs];
        n += b >= 0 && kv->slot_valid[meta_index(kv, b, lane, slot % bs)];
    }
    return n;
}

/* Staged formats: the blocks that will hold the residual window (and the last,
 * partly filled block) once the sequence is `keep` slots long must be hot before
 * slots move into them, as if the slots had been appended there. */
static llmlab_status heat_window(llmlab_kv *kv, llmlab_kv_seq *s, int keep, llmlab_err *err) {
    if (!kv->staged) return LLMLAB_OK;
    int bs = kv->o.block_size, limit = keep - kv->fmt.residual;
    for (int bi = limit > 0 ? limit / bs : 0; bi < (keep + bs - 1) / bs; bi++) {
        llmlab_status st = llmlab_kvs_heat(kv, s->blocks[bi], err);
        if (st) return st;
    }
    return LLMLAB_OK;
}

/* Moves one lane's valid slots to the front in slot order.  Keys per channel
 * (keys != NULL): the lane's keys are read in their new order first, and every
 * cold block from the first moved row on is re-quantized from them. */
static void compact_lane(llmlab_kv *kv, llmlab_kv_seq *s, int lane, int keep, float *keys) {
    int bs = kv->o.block_size, hd = kv->o.head_dim, layer = lane / kv->o.n_kv_heads, head = lane % kv->o.n_kv_heads;
    int w = 0, first_moved = -1;
    for (int slot = 0; slot < s->len && keys; slot++)
        if (kv->slot_valid[meta_index(kv, s->blocks[slot / bs], lane, slot % bs)]) {
            float *dst = keys + (size_t)w++ * (size_t)hd;
            const float *k = llmlab_kvs_read(kv, s->blocks[slot / bs], slot % bs, layer, 0, head, dst);
            if (k != dst) memcpy(dst, k, (size_t)hd * sizeof(float));
        }
    w = 0;
    for (int slot = 0; slot < s->len; slot++) {
        if (!kv->slot_valid[meta_index(kv, s->blocks[slot / bs], lane, slot % bs)]) continue;
        if (slot != w) {
            lane_move(kv, s, slot, w, lane, keys != NULL);
            if (first_moved < 0) first_moved = w;
        }
        w++;
    }
    int count = w, nb_keep = (keep + bs - 1) / bs;
    /* Rows past the lane's count hold nothing now (also those past `keep` in the
     * last block: they must not widen a per-channel key range). */
    for (; w < nb_keep * bs; w++) {
        meta_touch(kv, s->blocks[w / bs]);
        kv->slot_valid[meta_index(kv, s->blocks[w / bs], lane, w % bs)] = 0;
    }
    if (!keys || first_moved < 0) return;
    memset(keys + (size_t)count * (size_t)hd, 0, (size_t)(nb_keep * bs - count) * (size_t)hd * sizeof(float));
    for (int bi = first_moved / bs; bi < nb_keep; bi++)
        if (!llmlab_kvs_is_hot(kv, s->blocks[bi]))
            llmlab_kvs_requant_keys(kv, s->blocks[bi], layer, head, keys + (size_t)bi * (size_t)bs * (size_t)hd,
                                    (size_t)hd);
}

llmlab_status llmlab_kv_compact(llmlab_kv *kv, int seq, llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    if (!s->dirty) return LLMLAB_OK;
    if (s->len != s->n_committed)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: compaction of sequence %d with provisional slots", seq);
    s->dirty = 0;
    drop_freed_entries(kv, s);
    int bs = kv->o.block_size, keep = 0;
    for (int lane = 0; lane < kv->n_lanes; lane++) {
        int c = lane_count(kv, s, lane);
        if (c > keep) keep = c;
    }
    int nb_keep = (keep + bs - 1) / bs;
    if (nb_keep >= s->n_blocks) return LLMLAB_OK; /* no block would come free */
    for (int bi = 0; bi < nb_keep; bi++)
        if ((st = llmlab_kv_make_writable(kv, seq, bi * bs, err))) return st;
    if ((st = heat_window(kv, s, keep, err))) return st;
    float *keys = NULL; /* [nb_keep * bs][head_dim] one lane's keys in their new order */
    if (llmlab_kvs_per_channel(kv) &&
        !(keys = malloc((size_t)nb_keep * (size_t)bs * (size_t)kv->o.head_dim * sizeof(float))))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory compacting sequence %d", seq);
    for (int lane = 0; lane < kv->n_lanes; lane++) compact_lane(kv, s, lane, keep, keys);
    free(keys);
    int removed = s->len - keep;
    s->n_committed = keep; /* truncate releases the tail blocks */
    if ((st = llmlab_kv_truncate(kv, seq, keep, err))) return st;
    s->shift += removed;
    seq_cool(kv, seq);
    return LLMLAB_OK;
}

int llmlab_kv_tokens(const llmlab_kv *kv, int seq) { return kv->seqs[seq].n_committed + kv->seqs[seq].shift; }

/* ---- attention mass and score eviction ----------------------------------------- */

llmlab_status llmlab_kv_enable_mass(llmlab_kv *kv, llmlab_err *err) {
    if (kv->mass) return LLMLAB_OK;
    size_t n = (size_t)kv->o.n_blocks * meta_per_block(kv);
    kv->mass = calloc(n, sizeof(float));
    kv->obs = calloc(n, sizeof(float));
    kv->last = calloc(n, sizeof(float));
    if (!kv->mass || !kv->obs || !kv->last) {
        free(kv->mass), free(kv->obs), free(kv->last);
        kv->mass = kv->obs = kv->last = NULL;
        return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory for attention-mass scores (%zu MiB)",
                              (3 * n * sizeof(float)) >> 20);
    }
    return LLMLAB_OK;
}

int llmlab_kv_has_mass(const llmlab_kv *kv) { return kv->mass != NULL; }

void llmlab_kv_add_mass(llmlab_kv *kv, int seq, int lane, const float *val, int n, int obs) {
    if (!kv->mass) return;
    const llmlab_kv_seq *s = &kv->seqs[seq];
    int bs = kv->o.block_size;
    for (int slot = 0; slot < n && slot < s->len; slot++) {
        int b = s->blocks[slot / bs];
        if (b < 0) continue;
        size_t m = meta_index(kv, b, lane, slot % bs);
        kv->last[m] = val[slot];
        if (!kv->slot_valid[m]) continue;
        kv->mass[m] += val[slot];
        if (obs) kv->obs[m] += val[slot];
    }
}

void llmlab_kv_set_rule(llmlab_kv *kv, int seq, const llmlab_evict_rule *rule) {
    kv->seqs[seq].rule = rule ? *rule : (llmlab_evict_rule){0};
}

static int is_protected(const llmlab_evict_rule *r, int32_t pos, int32_t newest) {
    return pos < r->sinks || pos > newest - r->recent;
}

int llmlab_evict_pick(const llmlab_evict_rule *r, const float *score, const int32_t *pos, const uint8_t *valid,
                      int n, int32_t newest) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!valid[i] || is_protected(r, pos[i], newest)) continue;
        if (best < 0 || score[i] < score[best] || (score[i] == score[best] && pos[i] < pos[best])) best = i;
    }
    return best;
}

typedef struct {
    float score;
    int32_t pos;
    int slot;
} evict_cand;

static int cand_cmp(const void *a, const void *b) {
    const evict_cand *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* One lane: evicts the `excess` lowest-scored unprotected slots of [0, upto).
 * Taking them in sorted order is what picking one at a time would do, since no
 * score changes in between. */
static llmlab_status enforce_lane(llmlab_kv *kv, int seq, int lane, int upto, int32_t newest, evict_cand *c,
                                  int *n_evicted, llmlab_err *err) {
    llmlab_kv_seq *s = &kv->seqs[seq];
    const llmlab_evict_rule *r = &s->rule;
    const float *score = r->score == LLMLAB_SCORE_LAST ? kv->last : kv->mass;
    int bs = kv->o.block_size, valid = 0, nc = 0;
    for (int slot = 0; slot < upto; slot++) {
        int b = s->blocks[slot / bs];
        if (b < 0) continue;
        size_t m = meta_index(kv, b, lane, slot % bs);
        if (!kv->slot_valid[m]) continue;
        valid++;
        if (!is_protected(r, kv->slot_pos[m], newest)) c[nc++] = (evict_cand){score[m], kv->slot_pos[m], slot};
    }
    int excess = valid - r->capacity;
    if (excess <= 0 || nc == 0) return LLMLAB_OK;
    if (excess > nc) excess = nc;
    if (excess == 1) { /* the usual decode step: one victim, a linear scan instead of a sort */
        int best = 0;
        for (int i = 1; i < nc; i++)
            if (cand_cmp(&c[i], &c[best]) < 0) best = i;
        c[0] = c[best];
    } else
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    for (int i = 0; i < excess; i++) {
        llmlab_status st = llmlab_kv_evict_lane(kv, seq, lane, &c[i].slot, 1, err);
        if (st) return st;
    }
    *n_evicted += excess;
    return LLMLAB_OK;
}

int llmlab_kv_enforce(llmlab_kv *kv, int seq, int upto, int32_t newest, llmlab_err *err) {
    llmlab_kv_seq *s = &kv->seqs[seq];
    if (s->rule.capacity <= 0 || !kv->mass) return 0;
    if (upto > s->n_committed) upto = s->n_committed;
    evict_cand *c = malloc((size_t)(upto > 0 ? upto : 1) * sizeof *c);
    if (!c) {
        llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory choosing evictions");
        return -1;
    }
    int n = 0;
    for (int lane = 0; lane < kv->n_lanes; lane++)
        if (enforce_lane(kv, seq, lane, upto, newest, c, &n, err)) {
            free(c);
            return -1;
        }
    free(c);
    return n;
}

int llmlab_kv_len(const llmlab_kv *kv, int seq) { return kv->seqs[seq].len; }
int llmlab_kv_committed(const llmlab_kv *kv, int seq) { return kv->seqs[seq].n_committed; }
int llmlab_kv_blocks_used(const llmlab_kv *kv) { return kv->o.n_blocks - kv->n_free; }
size_t llmlab_kv_block_bytes(const llmlab_kv *kv) { return kv->block_bytes; }
size_t llmlab_kv_resident_bytes(const llmlab_kv *kv) {
    return (size_t)llmlab_kv_blocks_used(kv) * llmlab_kv_block_bytes(kv) +
           (size_t)kv->n_hot * kv->block_floats * sizeof(float);
}
double llmlab_kv_bytes_per_token(const llmlab_kv *kv) { return (double)kv->block_bytes / (double)kv->o.block_size; }

int llmlab_kv_slot_block(const llmlab_kv *kv, int seq, int slot) {
    return kv->seqs[seq].blocks[slot / kv->o.block_size];
}

long llmlab_kv_meta(const llmlab_kv *kv, int seq, int slot, int lane) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    return b < 0 ? -1 : (long)meta_index(kv, b, lane, slot % kv->o.block_size);
}

int llmlab_kv_lane_valid(const llmlab_kv *kv, int seq, int slot, int lane) {
    long m = llmlab_kv_meta(kv, seq, slot, lane);
    return m >= 0 && kv->slot_valid[m];
}

int32_t llmlab_kv_lane_pos(const llmlab_kv *kv, int seq, int slot, int lane) {
    long m = llmlab_kv_meta(kv, seq, slot, lane);
    return m >= 0 && kv->slot_valid[m] ? kv->slot_pos[m] : -1;
}

int llmlab_kv_slot_valid(const llmlab_kv *kv, int seq, int slot) {
    for (int lane = 0; lane < kv->n_lanes; lane++)
        if (llmlab_kv_lane_valid(kv, seq, slot, lane)) return 1;
    return 0;
}

int32_t llmlab_kv_slot_pos(const llmlab_kv *kv, int seq, int slot) {
    long m = llmlab_kv_meta(kv, seq, slot, 0);
    return m < 0 ? -1 : kv->slot_pos[m];
}

static float *kv_row(const llmlab_kv *kv, int seq, int slot, int layer, int which) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    if (b < 0 || kv->fmt.dtype != LLMLAB_KV_F32) return NULL;
    size_t bs = (size_t)kv->o.block_size;
    size_t off = ((size_t)layer * 2u + (size_t)which) * bs * kv->row_floats +
                 (size_t)(slot % kv->o.block_size) * kv->row_floats;
    return (float *)(void *)(kv->pool + (size_t)b * kv->block_bytes) + off;
}

const float *llmlab_kv_head(const llmlab_kv *kv, int seq, int slot, int layer, int which, int head, float *buf) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    return b < 0 ? NULL : llmlab_kvs_read(kv, b, slot % kv->o.block_size, layer, which, head, buf);
}

int llmlab_kv_slot_hot(const llmlab_kv *kv, int seq, int slot) {
    return llmlab_kvs_is_hot(kv, llmlab_kv_slot_block(kv, seq, slot));
}

float *llmlab_kv_k_row(const llmlab_kv *kv, int seq, int slot, int layer) {
    return kv_row(kv, seq, slot, layer, 0);
}
float *llmlab_kv_v_row(const llmlab_kv *kv, int seq, int slot, int layer) {
    return kv_row(kv, seq, slot, layer, 1);
}

/* ---- block manager support: append planning, host swap ---------------------------- */

int llmlab_kv_seq_blocks(const llmlab_kv *kv, int seq) {
    const llmlab_kv_seq *s = &kv->seqs[seq];
    int n = 0;
    for (int i = 0; i < s->n_blocks; i++) n += s->blocks[i] >= 0;
    return n;
}

/* Mirrors llmlab_kv_append's allocations. */
int llmlab_kv_append_blocks(const llmlab_kv *kv, int seq, int n) {
    const llmlab_kv_seq *s = &kv->seqs[seq];
    if (n <= 0) return 0;
    int bs = kv->o.block_size, need = (s->len + n + bs - 1) / bs - s->n_blocks;
    if (s->len % bs != 0) {
        int last = s->blocks[s->n_blocks - 1];
        need += last < 0 || kv->refcount[last] > 1; /* refilled or copied on write */
    }
    return need;
}

/* Host bytes of one block's metadata: positions, valid bits, mass accumulators. */
static size_t meta_bytes(const llmlab_kv *kv) {
    return meta_per_block(kv) * (sizeof(int32_t) + 1 + (kv->mass ? 3 * sizeof(float) : 0));
}

void llmlab_kv_swap_init(llmlab_kv_swap *sw, const llmlab_kv *kv, int total_blocks) {
    sw->total = total_blocks > 0 ? total_blocks : 0;
    sw->used = 0;
    sw->block_bytes = llmlab_kv_block_bytes(kv) + meta_bytes(kv);
}

/* Host bytes block b takes in swap: its packed bytes and metadata, a hot flag,
 * and a hot block's f32 staging copy (kv_cache.h "Hot blocks"). */
static size_t swap_record_bytes(const llmlab_kv *kv, int b) {
    return llmlab_kv_block_bytes(kv) + meta_bytes(kv) + 1 +
           (llmlab_kvs_is_hot(kv, b) ? kv->block_floats * sizeof(float) : 0);
}

/* Block b (all it owns, as block_copy copies it) to host bytes; returns the
 * bytes written.  Keep block_save/block_load in step with block_copy: whatever a
 * block owns must travel. */
static size_t block_save(const llmlab_kv *kv, int b, uint8_t *dst) {
    uint8_t *p = dst;
    size_t bytes = llmlab_kv_block_bytes(kv), m = meta_per_block(kv), at = (size_t)b * m;
    llmlab_kvs_pool_copy(kv, p, kv->pool + (size_t)b * bytes, bytes);
    p += bytes;
    memcpy(p, kv->slot_pos + at, m * sizeof *kv->slot_pos);
    p += m * sizeof *kv->slot_pos;
    memcpy(p, kv->slot_valid + at, m);
    p += m;
    const float *acc[] = {kv->mass, kv->obs, kv->last};
    for (int a = 0; a < 3 && kv->mass; a++, p += m * sizeof(float)) memcpy(p, acc[a] + at, m * sizeof(float));
    *p++ = (uint8_t)llmlab_kvs_is_hot(kv, b);
    if (p[-1]) {
        memcpy(p, kv->stage[b], kv->block_floats * sizeof(float));
        p += kv->block_floats * sizeof(float);
    }
    return (size_t)(p - dst);
}

/* The reverse of block_save into the fresh block b; returns the bytes read, 0
 * when a staging copy cannot be allocated. */
static size_t block_load(llmlab_kv *kv, int b, const uint8_t *src, llmlab_err *err) {
    const uint8_t *p = src;
    size_t bytes = llmlab_kv_block_bytes(kv), m = meta_per_block(kv), at = (size_t)b * m;
    llmlab_kvs_pool_copy(kv, kv->pool + (size_t)b * bytes, p, bytes);
    p += bytes;
    meta_touch(kv, b);
    memcpy(kv->slot_pos + at, p, m * sizeof *kv->slot_pos);
    p += m * sizeof *kv->slot_pos;
    memcpy(kv->slot_valid + at, p, m);
    p += m;
    float *acc[] = {kv->mass, kv->obs, kv->last};
    for (int a = 0; a < 3 && kv->mass; a++, p += m * sizeof(float)) memcpy(acc[a] + at, p, m * sizeof(float));
    if (*p++) {
        if (llmlab_kvs_fresh(kv, b, err)) return 0;
        memcpy(kv->stage[b], p, kv->block_floats * sizeof(float));
        p += kv->block_floats * sizeof(float);
    } else
        llmlab_kvs_release(kv, b); /* a cold block: no staging copy */
    return (size_t)(p - src);
}

llmlab_status llmlab_kv_swap_out(llmlab_kv *kv, llmlab_kv_swap *sw, int seq, llmlab_kv_swapped *out,
                                 llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    if (s->len != s->n_committed)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: swap-out of sequence %d with provisional slots", seq);
    int held = llmlab_kv_seq_blocks(kv, seq);
    if (held > sw->total - sw->used)
        return llmlab_err_set(err, LLMLAB_ENOKV, "KV swap space full: sequence %d needs %d blocks, %d of %d free",
                              seq, held, sw->total - sw->used, sw->total);
    llmlab_kv_swapped h = {.n_blocks = s->n_blocks, .n_held = held, .len = s->len, .n_committed = s->n_committed,
                           .shift = s->shift, .dirty = s->dirty, .rule = s->rule};
    for (int i = 0; i < s->n_blocks; i++)
        if (s->blocks[i] >= 0) h.bytes += swap_record_bytes(kv, s->blocks[i]);
    h.data = malloc(h.bytes ? h.bytes : 1);
    h.table = malloc((size_t)(s->n_blocks ? s->n_blocks : 1) * sizeof *h.table);
    if (!h.data || !h.table) {
        free(h.data);
        free(h.table);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "KV swap: out of host memory for %d blocks (%zu bytes)", held,
                              h.bytes);
    }
    size_t at = 0;
    for (int i = 0, k = 0; i < s->n_blocks; i++) {
        h.table[i] = s->blocks[i] < 0 ? -1 : k++;
        if (s->blocks[i] >= 0) at += block_save(kv, s->blocks[i], h.data + at);
    }
    sw->used += held;
    llmlab_kv_free_seq(kv, seq);
    *out = h;
    return LLMLAB_OK;
}

llmlab_status llmlab_kv_swap_in(llmlab_kv *kv, llmlab_kv_swap *sw, llmlab_kv_swapped *in, int seq,
                                llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    if (s->active || s->len > 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV cache: swap-in into sequence %d, which is in use", seq);
    if (in->n_held > kv->n_free)
        return llmlab_err_set(err, LLMLAB_ENOKV, "KV cache full: swap-in of sequence %d needs %d blocks, %d of %d free",
                              seq, in->n_held, kv->n_free, kv->o.n_blocks);
    if ((st = table_reserve(s, in->n_blocks, err))) return st;
    size_t at = 0; /* records are in table order */
    for (int i = 0; i < in->n_blocks; i++) {
        int b = in->table[i] < 0 ? -1 : block_take(kv);
        size_t got = b < 0 ? 1 : block_load(kv, b, in->data + at, err);
        if (got == 0) { /* out of memory for a staging copy: give back what was taken */
            for (int k = 0; k <= i; k++) block_release(kv, k < i ? s->blocks[k] : b);
            return err ? err->code : LLMLAB_ENOMEM;
        }
        if (b >= 0) at += got;
        s->blocks[i] = b;
    }
    s->n_blocks = in->n_blocks;
    s->len = in->len;
    s->n_committed = in->n_committed;
    s->shift = in->shift;
    s->dirty = in->dirty;
    s->rule = in->rule;
    s->active = 1;
    llmlab_kv_swap_drop(sw, in);
    return LLMLAB_OK;
}

void llmlab_kv_swap_drop(llmlab_kv_swap *sw, llmlab_kv_swapped *h) {
    sw->used -= h->n_held;
    free(h->data);
    free(h->table);
    *h = (llmlab_kv_swapped){0};
}

int llmlab_kv_meta_clean(llmlab_kv *kv, int32_t *out) {
    int n = 0;
    for (int b = 0; b < kv->o.n_blocks; b++)
        if (kv->meta_dirty[b]) {
            out[n++] = b;
            kv->meta_dirty[b] = 0;
        }
    return n;
}

int llmlab_kv_pool_off_host(const llmlab_kv *kv) { return kv->mem.alloc != NULL; }
