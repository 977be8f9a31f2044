/* tokenizer_bpe.c - the BPE model: one pre-tokenized word -> ids.
 *
 * As Hugging Face's BPE::merge_word + Word::merge_all: the word starts as one
 * symbol per character (with continuing_subword_prefix / end_of_word_suffix,
 * <0xNN> byte fallback, or the unknown token), then the adjacent pair of lowest
 * merge rank is merged, ties to the leftmost, until no pair has a merge.  A
 * binary heap holds candidate pairs; entries made stale by an earlier merge are
 * skipped when popped (the pair at that position no longer yields the same
 * token), so a word of n characters costs O(n log n) - SentencePiece-style files
 * without a pre-tokenizer hand the whole text over as one word.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* One symbol of the word being merged. */
struct tok_sym {
    int32_t id;   /* token id */
    int32_t prev; /* index of the previous live symbol, -1 at the start */
    int32_t next; /* index of the next live symbol, -1 at the end */
    uint32_t len; /* bytes covered; 0 once merged into its left neighbour */
};

/* A candidate merge of the symbol at pos with its right neighbour. */
struct tok_merge {
    uint32_t rank; /* merge rank (lower first) */
    int32_t pos;   /* index of the left symbol (ties: lower first) */
    int32_t id;    /* id of the merged token */
};

void tok_bpe_scratch_free(tok_bpe_scratch *sc) {
    free(sc->sym);
    free(sc->heap);
    tok_buf_free(&sc->tmp);
    memset(sc, 0, sizeof *sc);
}

static llmlab_status add_sym(tok_bpe_scratch *sc, int32_t id, uint32_t len, llmlab_err *err) {
    if (sc->n_sym == sc->cap_sym) {
        size_t cap = sc->cap_sym ? 2 * sc->cap_sym : 64;
        struct tok_sym *s = realloc(sc->sym, cap * sizeof *s);
        if (!s) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for BPE symbols");
        sc->sym = s;
        sc->cap_sym = cap;
    }
    int32_t i = (int32_t)sc->n_sym++;
    sc->sym[i] = (struct tok_sym){id, i - 1, -1, len};
    if (i > 0) sc->sym[i - 1].next = i;
    return LLMLAB_OK;
}

/* ---- heap --------------------------------------------------------------------------- */

static int merge_before(const struct tok_merge *a, const struct tok_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static llmlab_status heap_push(tok_bpe_scratch *sc, struct tok_merge m, llmlab_err *err) {
    if (sc->n_heap == sc->cap_heap) {
        size_t cap = sc->cap_heap ? 2 * sc->cap_heap : 64;
        struct tok_merge *h = realloc(sc->heap, cap * sizeof *h);
        if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for the BPE heap");
        sc->heap = h;
        sc->cap_heap = cap;
    }
    struct tok_merge *h = sc->heap;
    size_t i = sc->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_before(&m, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
    return LLMLAB_OK;
}

static struct tok_merge heap_pop(tok_bpe_scratch *sc) {
    struct tok_merge *h = sc->heap, top = h[0], last = h[--sc->n_heap];
    size_t n = sc->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && merge_before(&h[c + 1], &h[c])) c++;
        if (!merge_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

/* Pushes the merge of symbol a with its right neighbour b, if there is one. */
static llmlab_status push_pair(const struct tok_bpe_tok *m, tok_bpe_scratch *sc, int32_t a, llmlab_err *err) {
    int32_t b = sc->sym[a].next;
    if (b < 0) return LLMLAB_OK;
    uint32_t rank;
    int32_t id;
    if (!tok_pairmap_get(&m->merges, sc->sym[a].id, sc->sym[b].id, &rank, &id)) return LLMLAB_OK;
    return heap_push(sc, (struct tok_merge){rank, a, id}, err);
}

static llmlab_status merge_all(const struct tok_bpe_tok *m, tok_bpe_scratch *sc, llmlab_err *err) {
    sc->n_heap = 0;
    llmlab_status st = LLMLAB_OK;
    for (int32_t i = 0; i + 1 < (int32_t)sc->n_sym && st == LLMLAB_OK; i++) st = push_pair(m, sc, i, err);
    while (sc->n_heap && st == LLMLAB_OK) {
        struct tok_merge top = heap_pop(sc);
        struct tok_sym *s = sc->sym;
        struct tok_sym *left = &s[top.pos];
        if (left->len == 0 || left->next < 0) continue;
        int32_t rp = left->next;
        uint32_t rank;
        int32_t id;
        /* Stale: the pair here changed since this entry was pushed. */
        if (!tok_pairmap_get(&m->merges, left->id, s[rp].id, &rank, &id) || id != top.id) continue;
        left->id = top.id;
        left->len += s[rp].len;
        left->next = s[rp].next;
        s[rp].len = 0;
        if (left->next >= 0) s[left->next].prev = top.pos;
        if (left->prev >= 0) st = push_pair(m, sc, left->prev, err);
        if (st == LLMLAB_OK) st = push_pair(m, sc, top.pos, err);
    }
    return st;
}

/* ---- initial symbols ------------------------------------------------------------------ */

/* The vocabulary id of one character c (bytes p[0..k)) with the prefix/suffix
 * decorations HF adds; -1 when absent.  The decorated piece is left in sc->tmp. */
static llmlab_status char_id(const struct tok_bpe_tok *m, const char *p, size_t k, uint32_t c, int first,
                             int last, tok_bpe_scratch *sc, int32_t *id, llmlab_err *err) {
    int pre = !first && m->cont_prefix, suf = last && m->eow_suffix;
    if (!pre && !suf) {
        *id = c < 0x800 ? m->small_ids[c] : tok_strmap_get(&m->vocab, &m->pieces, p, k);
        return LLMLAB_OK;
    }
    tok_buf *t = &sc->tmp;
    t->len = 0;
    llmlab_status st = pre ? tok_buf_put(t, m->cont_prefix, m->cont_prefix_len, err) : LLMLAB_OK;
    if (st == LLMLAB_OK) st = tok_buf_put(t, p, k, err);
    if (st == LLMLAB_OK && suf) st = tok_buf_put(t, m->eow_suffix, m->eow_suffix_len, err);
    if (st != LLMLAB_OK) return st;
    *id = tok_strmap_get(&m->vocab, &m->pieces, t->p, t->len);
    return LLMLAB_OK;
}

/* Adds <0xNN> symbols for the bytes of the piece (p, or sc->tmp when decorated);
 * *ok = 0 (nothing added) when some byte has no token. */
static llmlab_status byte_syms(const struct tok_bpe_tok *m, const char *p, size_t k, int decorated,
                               tok_bpe_scratch *sc, int *ok, llmlab_err *err) {
    const unsigned char *b = (const unsigned char *)(decorated ? sc->tmp.p : p);
    size_t n = decorated ? sc->tmp.len : k;
    *ok = 0;
    for (size_t i = 0; i < n; i++)
        if (m->byte_ids[b[i]] < 0) return LLMLAB_OK;
    *ok = 1;
    for (size_t i = 0; i < n; i++) {
        llmlab_status st = add_sym(sc, m->byte_ids[b[i]], 1, err);
        if (st != LLMLAB_OK) return st;
    }
    return LLMLAB_OK;
}

static llmlab_status unk_missing(const struct tok_bpe_tok *m, llmlab_err *err) {
    return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.unk_token '%s' is not in the vocabulary", m->what,
                          m->unk_token);
}

/* The word's characters as symbols (HF's merge_word before merge_all). */
static llmlab_status initial_syms(const struct tok_bpe_tok *m, const char *w, size_t n, tok_bpe_scratch *sc,
                                  llmlab_err *err) {
    sc->n_sym = 0;
    uint32_t unk_len = 0; /* bytes of the pending unknown token, 0 = none */
    llmlab_status st = LLMLAB_OK;
    for (size_t i = 0; i < n && st == LLMLAB_OK;) {
        uint32_t c;
        size_t k = tok_utf8_next((const unsigned char *)w + i, n - i, &c);
        int32_t id;
        int first = i == 0, last = i + k == n;
        int decorated = (!first && m->cont_prefix) || (last && m->eow_suffix);
        if (c == UINT32_MAX) c = 0x800; /* an invalid byte: looked up as it is */
        st = char_id(m, w + i, k, c, first, last, sc, &id, err);
        if (st != LLMLAB_OK) break;
        if (id >= 0) {
            if (unk_len) st = add_sym(sc, m->unk_id, unk_len, err);
            unk_len = 0;
            if (st == LLMLAB_OK) st = add_sym(sc, id, (uint32_t)k, err);
        } else {
            int ok = 0;
            /* HF quirk kept: byte tokens go in before a pending unknown. */
            if (m->byte_fallback) st = byte_syms(m, w + i, k, decorated, sc, &ok, err);
            if (st == LLMLAB_OK && !ok && m->unk_token) {
                if (m->unk_id < 0) return unk_missing(m, err);
                if (unk_len && !m->fuse_unk) {
                    st = add_sym(sc, m->unk_id, unk_len, err);
                    unk_len = 0;
                }
                unk_len += (uint32_t)k;
            }
        }
        i += k;
    }
    if (st == LLMLAB_OK && unk_len) st = add_sym(sc, m->unk_id, unk_len, err);
    return st;
}

/* Merges one word (or a piece of one) and appends its ids. */
static llmlab_status bpe_merge(const struct tok_bpe_tok *m, const char *w, size_t n, tok_bpe_scratch *sc, tok_ids *out,
                               llmlab_err *err) {
    llmlab_status st = initial_syms(m, w, n, sc, err);
    if (st == LLMLAB_OK && sc->n_sym > 1) st = merge_all(m, sc, err);
    for (size_t i = 0; i < sc->n_sym && st == LLMLAB_OK; i++)
        if (sc->sym[i].len) st = tok_ids_push(out, sc->sym[i].id, err);
    return st;
}

/* Where the next piece of a long word starts: before a U+2581 that does not
 * follow another U+2581 (split_meta's guarantee: no token spans it), or n. */
static size_t next_cut(const char *w, size_t n, size_t from) {
    static const char meta[] = "\xe2\x96\x81";
    for (size_t i = from + 1; i + 3 <= n;) {
        const char *q = memmem(w + i, n - i, meta, 3);
        if (!q) break;
        size_t at = (size_t)(q - w);
        if (at < 3 || memcmp(w + at - 3, meta, 3) != 0) return at;
        i = at + 3;
    }
    return n;
}

llmlab_status tok_bpe_word(const struct tok_bpe_tok *m, const char *w, size_t n, tok_bpe_scratch *sc,
                           tok_ids *out, llmlab_err *err) {
    if (n == 0) return LLMLAB_OK;
    if (m->ignore_merges) {
        int32_t id = tok_strmap_get(&m->vocab, &m->pieces, w, n);
        if (id >= 0) return tok_ids_push(out, id, err);
    }
    if (!m->split_meta) return bpe_merge(m, w, n, sc, out, err);
    llmlab_status st = LLMLAB_OK;
    for (size_t a = 0; a < n && st == LLMLAB_OK;) {
        size_t b = next_cut(w, n, a);
        st = bpe_merge(m, w + a, b - a, sc, out, err);
        a = b;
    }
    return st;
}
