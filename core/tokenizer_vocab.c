/* tokenizer_vocab.c - the tokenizer's hash tables: token string -> id over an
 * arena of pieces, and (left id, right id) -> (rank, merged id) for BPE merges.
 * Open addressing with linear probing; tables are built once at load and only
 * read afterwards, so lookups need no locks. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

uint32_t tok_hash_bytes(const char *s, size_t n) {
    /* FNV-1a over 32 bits, then a final avalanche (murmur3's fmix32) so the low
     * bits used as the table index depend on every byte. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* Smallest power of two >= 2 * expected (load factor <= 1/2). */
static size_t table_cap(size_t expected) {
    size_t c = 16;
    while (c < 2 * expected) c *= 2;
    return c;
}

llmlab_status tok_strmap_init(tok_strmap *m, size_t expected, llmlab_err *err) {
    memset(m, 0, sizeof *m);
    if (expected > (1u << 29)) return llmlab_err_set(err, LLMLAB_EFORMAT, "tokenizer: vocabulary too large");
    size_t cap = table_cap(expected);
    m->slot = calloc(cap, sizeof *m->slot);
    m->hash = calloc(cap, sizeof *m->hash);
    if (!m->slot || !m->hash) {
        tok_strmap_free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for the vocabulary table");
    }
    m->mask = (uint32_t)(cap - 1);
    return LLMLAB_OK;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slot);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

int32_t tok_strmap_get(const tok_strmap *m, const tok_pieces_store *store, const char *s, size_t n) {
    if (!m->slot) return -1;
    uint32_t h = tok_hash_bytes(s, n);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t v = m->slot[i];
        if (!v) return -1;
        if (m->hash[i] != h) continue;
        int32_t id = (int32_t)(v - 1);
        size_t len;
        const char *p = tok_store_get(store, id, &len);
        if (p && len == n && memcmp(p, s, n) == 0) return id;
    }
}

/* Doubles the table, re-inserting every key. */
static llmlab_status strmap_grow(tok_strmap *m, llmlab_err *err) {
    size_t cap = ((size_t)m->mask + 1) * 2;
    uint32_t *slot = calloc(cap, sizeof *slot), *hash = calloc(cap, sizeof *hash);
    if (!slot || !hash) {
        free(slot);
        free(hash);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for the vocabulary table");
    }
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (!m->slot[i]) continue;
        uint32_t j = m->hash[i] & (uint32_t)(cap - 1);
        while (slot[j]) j = (j + 1) & (uint32_t)(cap - 1);
        slot[j] = m->slot[i];
        hash[j] = m->hash[i];
    }
    free(m->slot);
    free(m->hash);
    m->slot = slot;
    m->hash = hash;
    m->mask = (uint32_t)(cap - 1);
    return LLMLAB_OK;
}

int32_t tok_strmap_put(tok_strmap *m, const tok_pieces_store *store, int32_t id, llmlab_err *err,
                       llmlab_status *st) {
    *st = LLMLAB_OK;
    size_t n = 0;
    const char *s = tok_store_get(store, id, &n);
    int32_t old = tok_strmap_get(m, store, s, n);
    if (old >= 0) return old;
    if (2 * ((size_t)m->n + 1) > (size_t)m->mask + 1 && (*st = strmap_grow(m, err)) != LLMLAB_OK) return -1;
    uint32_t h = tok_hash_bytes(s, n), i = h & m->mask;
    while (m->slot[i]) i = (i + 1) & m->mask;
    m->slot[i] = (uint32_t)id + 1;
    m->hash[i] = h;
    m->n++;
    return -1;
}

llmlab_status tok_store_set(tok_pieces_store *st, int32_t id, const char *s, size_t n, llmlab_err *err) {
    if (id < 0) return llmlab_err_set(err, LLMLAB_EFORMAT, "tokenizer: negative id %d", (int)id);
    if (id >= st->n_ids) {
        int32_t cap = st->n_ids ? st->n_ids : 256;
        while (cap <= id) cap = cap > (1 << 29) ? id + 1 : cap * 2;
        uint32_t *off = realloc(st->off, (size_t)cap * sizeof *off);
        if (off) st->off = off;
        uint32_t *len = off ? realloc(st->len, (size_t)cap * sizeof *len) : NULL;
        if (len) st->len = len;
        if (!off || !len) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for %d ids", cap);
        for (int32_t i = st->n_ids; i < cap; i++) {
            st->off[i] = UINT32_MAX;
            st->len[i] = 0;
        }
        st->n_ids = cap;
    }
    if (st->arena_len + n + 1 > UINT32_MAX - 1)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "tokenizer: token strings exceed 4 GiB");
    if (st->arena_len + n + 1 > st->arena_cap) {
        size_t cap = st->arena_cap ? st->arena_cap : 4096;
        while (cap < st->arena_len + n + 1) cap *= 2;
        char *a = realloc(st->arena, cap);
        if (!a) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for token strings");
        st->arena = a;
        st->arena_cap = cap;
    }
    /* A replaced piece leaves its old bytes unused in the arena (rare: an added
     * token over a model id). */
    memcpy(st->arena + st->arena_len, s, n);
    st->arena[st->arena_len + n] = 0;
    st->off[id] = (uint32_t)st->arena_len;
    st->len[id] = (uint32_t)n;
    st->arena_len += n + 1;
    return LLMLAB_OK;
}

void tok_store_free(tok_pieces_store *st) {
    free(st->arena);
    free(st->off);
    free(st->len);
    memset(st, 0, sizeof *st);
}

/* ---- pairs ----------------------------------------------------------------------------- */

static uint32_t pair_hash(uint64_t k) {
    /* splitmix64's finalizer: cheap and mixes both ids into the low bits. */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    k ^= k >> 31;
    return (uint32_t)k;
}

llmlab_status tok_pairmap_init(tok_pairmap *m, size_t expected, llmlab_err *err) {
    memset(m, 0, sizeof *m);
    if (expected > (1u << 29)) return llmlab_err_set(err, LLMLAB_EFORMAT, "tokenizer: too many merges");
    size_t cap = table_cap(expected);
    m->key = calloc(cap, sizeof *m->key);
    m->rank = malloc(cap * sizeof *m->rank);
    m->id = malloc(cap * sizeof *m->id);
    if (!m->key || !m->rank || !m->id) {
        tok_pairmap_free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for the merge table");
    }
    m->mask = (uint32_t)(cap - 1);
    return LLMLAB_OK;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->id);
    memset(m, 0, sizeof *m);
}

void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    /* The table was sized for every merge at init, so it never fills. */
    uint64_t k = tok_pair_key(a, b);
    uint32_t i = pair_hash(k) & m->mask;
    while (m->key[i] && m->key[i] != k) i = (i + 1) & m->mask;
    if (!m->key[i]) m->n++;
    m->key[i] = k;
    m->rank[i] = rank;
    m->id[i] = id;
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    uint64_t k = tok_pair_key(a, b);
    for (uint32_t i = pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        uint64_t v = m->key[i];
        if (!v) return 0;
        if (v == k) {
            *rank = m->rank[i];
            *id = m->id[i];
            return 1;
        }
    }
}
