/* tokenizer_added.c - finding added tokens in text (HF's AddedVocabulary).
 *
 * Patterns live in a byte trie; the text is scanned for the leftmost position
 * where any pattern starts and the longest pattern there is taken (Aho-Corasick
 * "leftmost-longest", non-overlapping).  Each match is then checked and widened
 * like AddedVocabulary::find_matches: single_word needs non-word characters (or
 * the text's ends) on both sides, lstrip/rstrip swallow neighbouring whitespace.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

static llmlab_status trie_node(tok_trie *t, uint8_t byte, uint32_t *out, llmlab_err *err) {
    if (t->n_node == t->cap_node) {
        size_t cap = t->cap_node ? 2 * t->cap_node : 64;
        tok_trie_node *n = realloc(t->node, cap * sizeof *n);
        if (!n) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for the added-token trie");
        t->node = n;
        t->cap_node = cap;
    }
    t->node[t->n_node] = (tok_trie_node){-1, 0, 0, byte};
    *out = (uint32_t)t->n_node++;
    return LLMLAB_OK;
}

llmlab_status tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t value, llmlab_err *err) {
    uint32_t cur;
    llmlab_status st;
    if (n == 0) return LLMLAB_OK;
    if (t->n_node == 0 && (st = trie_node(t, 0, &cur, err)) != LLMLAB_OK) return st;
    cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        uint32_t c = t->node[cur].child;
        while (c && t->node[c].byte != b) c = t->node[c].sibling;
        if (!c) {
            if ((st = trie_node(t, b, &c, err)) != LLMLAB_OK) return st;
            t->node[c].sibling = t->node[cur].child;
            t->node[cur].child = c;
        }
        cur = c;
    }
    if (t->node[cur].value < 0) t->node[cur].value = value; /* an earlier equal pattern wins */
    t->first[(uint8_t)s[0]] = 1;
    return LLMLAB_OK;
}

void tok_trie_free(tok_trie *t) {
    free(t->node);
    memset(t, 0, sizeof *t);
}

int32_t tok_trie_longest(const tok_trie *t, const char *s, size_t n, size_t *len) {
    if (!t->n_node || !n || !t->first[(uint8_t)s[0]]) return -1;
    int32_t best = -1;
    uint32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t->node[cur].child;
        while (c && t->node[c].byte != (uint8_t)s[i]) c = t->node[c].sibling;
        if (!c) break;
        cur = c;
        if (t->node[c].value >= 0) {
            best = t->node[c].value;
            *len = i + 1;
        }
    }
    return best;
}

/* ---- find_matches ------------------------------------------------------------------- */

static llmlab_status seg_push(tok_segments *o, size_t a, size_t b, int32_t added, llmlab_err *err) {
    if (a >= b) return LLMLAB_OK; /* HF drops empty splits */
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        tok_segment *v = realloc(o->v, cap * sizeof *v);
        if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for text segments");
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = (tok_segment){a, b, added};
    return LLMLAB_OK;
}

/* Start of the character that ends at s[end] (an invalid byte counts alone). */
static size_t char_before(const char *s, size_t end) {
    size_t a = end - 1;
    while (a > 0 && end - a < 4 && ((unsigned char)s[a] & 0xC0) == 0x80) a--;
    uint32_t c;
    size_t k = tok_utf8_next((const unsigned char *)s + a, end - a, &c);
    return (c != UINT32_MAX && a + k == end) ? a : end - 1;
}

/* Rust regex \w (Unicode word character) for the character at s[at]. */
static int word_at(const struct tok_bpe_tok *m, const char *s, size_t n, size_t at, tok_match *mt) {
    return m->word_re && tok_regex_matches_at(m->word_re, mt, s, n, at);
}

static int space_at(const char *s, size_t n, size_t at, size_t *k) {
    uint32_t c;
    *k = tok_utf8_next((const unsigned char *)s + at, n - at, &c);
    return tok_is_whitespace(c);
}

llmlab_status tok_added_split(const struct tok_bpe_tok *m, const tok_trie *t, const char *s, size_t n,
                              tok_segments *out, tok_match *mt, llmlab_err *err) {
    out->n = 0;
    size_t done = 0; /* HF's start_offset */
    llmlab_status st = LLMLAB_OK;
    for (size_t i = 0; i < n && st == LLMLAB_OK;) {
        size_t len = 0;
        int32_t a = tok_trie_longest(t, s + i, n - i, &len);
        if (a < 0) {
            i++;
            continue;
        }
        size_t start = i, stop = i + len;
        i = stop; /* the matcher goes on after the match, whatever happens to it below */
        const tok_added *tk = &m->added[a];
        if (tk->single_word) {
            int left_ok = start == 0 || !word_at(m, s, n, char_before(s, start), mt);
            int right_ok = stop == n || !word_at(m, s, n, stop, mt);
            if (!left_ok || !right_ok) continue;
        }
        if (tk->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t b = char_before(s, ns), k;
                if (!space_at(s, n, b, &k)) break;
                ns = b;
            }
            start = ns > done ? ns : done;
        }
        if (tk->rstrip) {
            size_t k;
            while (stop < n && space_at(s, n, stop, &k)) stop += k;
        }
        if (done < start) st = seg_push(out, done, start, -1, err);
        if (st == LLMLAB_OK) st = seg_push(out, start, stop, a, err);
        done = stop;
    }
    if (st == LLMLAB_OK && done < n) st = seg_push(out, done, n, -1, err);
    return st;
}
