/* kv_cache.c - block pool, per-sequence block tables, copy-on-write, keep/evict.
 *
 * Invariants (checked by tests/test_kv_cache.c):
 *  - a block is on the free list iff its refcount is 0;
 *  - a sequence's table entry is -1 only when every slot of that block was evicted;
 *  - slots at index >= len hold nothing: their block rows are reusable.
 */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static size_t slot_index(const llmlab_kv *kv, int block, int row) {
    return (size_t)block * (size_t)kv->o.block_size + (size_t)row;
}

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
    size_t n_slots = (size_t)o.n_blocks * (size_t)o.block_size;
    kv->pool = malloc((size_t)o.n_blocks * kv->block_floats * sizeof(float));
    kv->slot_pos = calloc(n_slots, sizeof *kv->slot_pos);
    kv->slot_valid = calloc(n_slots, 1);
    kv->refcount = calloc((size_t)o.n_blocks, sizeof *kv->refcount);
    kv->free_list = malloc((size_t)o.n_blocks * sizeof *kv->free_list);
    kv->seqs = calloc((size_t)o.max_seqs, sizeof *kv->seqs);
    if (!kv->pool || !kv->slot_pos || !kv->slot_valid || !kv->refcount || !kv->free_list ||
        !kv->seqs) {
        size_t mib = ((size_t)o.n_blocks * kv->block_floats * sizeof(float)) >> 20;
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
    free(kv->pool);
    free(kv->slot_pos);
    free(kv->slot_valid);
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
    if (--kv->refcount[b] == 0) kv->free_list[kv->n_free++] = b;
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

/* Copies block src into a fresh block and returns its id, or -1 when none is free. */
static int block_copy(llmlab_kv *kv, int src) {
    int dst = block_take(kv);
    if (dst < 0) return -1;
    memcpy(kv->pool + (size_t)dst * kv->block_floats, kv->pool + (size_t)src * kv->block_floats,
           kv->block_floats * sizeof(float));
    size_t bs = (size_t)kv->o.block_size;
    memcpy(kv->slot_pos + dst * bs, kv->slot_pos + src * bs, bs * sizeof *kv->slot_pos);
    memcpy(kv->slot_valid + dst * bs, kv->slot_valid + src * bs, bs);
    return dst;
}

llmlab_status llmlab_kv_make_writable(llmlab_kv *kv, int seq, int slot, llmlab_err *err) {
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bi = slot / kv->o.block_size;
    int b = s->blocks[bi];
    if (b < 0 || kv->refcount[b] == 1) return LLMLAB_OK;
    int nb = block_copy(kv, b);
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
        memset(kv->slot_valid + slot_index(kv, b, 0), 0, (size_t)bs);
        s->blocks[s->n_blocks - 1] = b;
    }
    while (s->n_blocks < need_blocks) {
        int b = block_take(kv);
        if (b < 0) return llmlab_err_set(err, LLMLAB_ENOKV, "KV cache full (sequence %d)", seq);
        memset(kv->slot_valid + slot_index(kv, b, 0), 0, (size_t)bs);
        s->blocks[s->n_blocks++] = b;
    }
    for (int i = 0; i < n; i++) {
        int slot = s->len + i;
        size_t si = slot_index(kv, s->blocks[slot / bs], slot % bs);
        kv->slot_pos[si] = pos ? pos[i] : slot;
        kv->slot_valid[si] = 1;
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
    return LLMLAB_OK;
}

void llmlab_kv_free_seq(llmlab_kv *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs) return;
    llmlab_kv_seq *s = &kv->seqs[seq];
    for (int i = 0; i < s->n_blocks; i++) block_release(kv, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->n_committed = 0;
    s->active = 0;
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
    d->active = 1;
    return LLMLAB_OK;
}

void llmlab_kv_commit(llmlab_kv *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs) return;
    kv->seqs[seq].n_committed = kv->seqs[seq].len;
}

/* Copies slot `from` to slot `to` of the same sequence (to < from), all layers. */
static void slot_move(llmlab_kv *kv, llmlab_kv_seq *s, int from, int to) {
    int bs = kv->o.block_size;
    int fb = s->blocks[from / bs], tb = s->blocks[to / bs];
    int fr = from % bs, tr = to % bs;
    size_t row = kv->row_floats;
    for (int l = 0; l < kv->o.n_layers; l++) {
        for (int kvi = 0; kvi < 2; kvi++) {
            size_t off = ((size_t)l * 2u + (size_t)kvi) * (size_t)bs * row;
            float *src = kv->pool + (size_t)fb * kv->block_floats + off + (size_t)fr * row;
            float *dst = kv->pool + (size_t)tb * kv->block_floats + off + (size_t)tr * row;
            memcpy(dst, src, row * sizeof(float));
        }
    }
    kv->slot_pos[slot_index(kv, tb, tr)] = kv->slot_pos[slot_index(kv, fb, fr)];
    kv->slot_valid[slot_index(kv, tb, tr)] = kv->slot_valid[slot_index(kv, fb, fr)];
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
    return LLMLAB_OK;
}

llmlab_status llmlab_kv_evict(llmlab_kv *kv, int seq, const int *slots, int n, llmlab_err *err) {
    llmlab_status st = check_seq(kv, seq, err);
    if (st) return st;
    llmlab_kv_seq *s = &kv->seqs[seq];
    int bs = kv->o.block_size;
    for (int i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= s->n_committed)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "KV cache: evict of sequence %d: slot %d is not committed "
                                  "(committed %d); provisional slots are never evicted",
                                  seq, slots[i], s->n_committed);
    for (int i = 0; i < n; i++) {
        int bi = slots[i] / bs;
        if (s->blocks[bi] < 0) continue;
        if ((st = llmlab_kv_make_writable(kv, seq, slots[i], err))) return st;
        kv->slot_valid[slot_index(kv, s->blocks[bi], slots[i] % bs)] = 0;
    }
    /* Return blocks whose every used slot is now invalid. */
    for (int i = 0; i < n; i++) {
        int bi = slots[i] / bs;
        int b = s->blocks[bi];
        if (b < 0) continue;
        int rows = (bi == s->n_blocks - 1) ? s->len - bi * bs : bs;
        int any = 0;
        for (int r = 0; r < rows && !any; r++) any = kv->slot_valid[slot_index(kv, b, r)];
        if (!any && rows == bs) { /* a partly filled last block stays: it still takes appends */
            block_release(kv, b);
            s->blocks[bi] = -1;
        }
    }
    return LLMLAB_OK;
}

int llmlab_kv_len(const llmlab_kv *kv, int seq) { return kv->seqs[seq].len; }
int llmlab_kv_committed(const llmlab_kv *kv, int seq) { return kv->seqs[seq].n_committed; }
int llmlab_kv_blocks_used(const llmlab_kv *kv) { return kv->o.n_blocks - kv->n_free; }
size_t llmlab_kv_block_bytes(const llmlab_kv *kv) { return kv->block_floats * sizeof(float); }
size_t llmlab_kv_resident_bytes(const llmlab_kv *kv) {
    return (size_t)llmlab_kv_blocks_used(kv) * llmlab_kv_block_bytes(kv);
}

int llmlab_kv_slot_block(const llmlab_kv *kv, int seq, int slot) {
    return kv->seqs[seq].blocks[slot / kv->o.block_size];
}

int llmlab_kv_slot_valid(const llmlab_kv *kv, int seq, int slot) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    return b >= 0 && kv->slot_valid[slot_index(kv, b, slot % kv->o.block_size)];
}

int32_t llmlab_kv_slot_pos(const llmlab_kv *kv, int seq, int slot) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    return b < 0 ? -1 : kv->slot_pos[slot_index(kv, b, slot % kv->o.block_size)];
}

static float *kv_row(const llmlab_kv *kv, int seq, int slot, int layer, int which) {
    int b = llmlab_kv_slot_block(kv, seq, slot);
    if (b < 0) return NULL;
    size_t bs = (size_t)kv->o.block_size;
    size_t off = ((size_t)layer * 2u + (size_t)which) * bs * kv->row_floats +
                 (size_t)(slot % kv->o.block_size) * kv->row_floats;
    return kv->pool + (size_t)b * kv->block_floats + off;
}

float *llmlab_kv_k_row(const llmlab_kv *kv, int seq, int slot, int layer) {
    return kv_row(kv, seq, slot, layer, 0);
}
float *llmlab_kv_v_row(const llmlab_kv *kv, int seq, int slot, int layer) {
    return kv_row(kv, seq, slot, layer, 1);
}
