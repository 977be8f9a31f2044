/* tokenizer_pretok.c - pre-tokenizers: a piece of normalized text -> words.
 *
 * Each stage maps a list of pieces to a new list (bytes copied into the other of
 * two buffers).  Splitting follows HF's NormalizedString::split: the text is cut
 * into spans that alternate between matches and the text between them, then the
 * delimiter behavior folds the spans, then empty pieces are dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* The GPT-2 ByteLevel alphabet: printable Latin-1 bytes stand for themselves;
 * the others (0-32, 127-160, 173) take the code points from 256 up, in order. */
uint32_t tok_bytelevel_cp(unsigned char b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return (uint32_t)b + 162u; /* 256 + 33 + (b - 127) */
    if (b == 173) return 323;
    return b;
}

int tok_bytelevel_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 173;
    return -1;
}

/* Appends a piece with bytes p[0..n) to the output list (empty pieces vanish). */
static llmlab_status emit(tok_buf *b, tok_pieces *ps, const char *p, size_t n, int at_start, llmlab_err *err) {
    if (n == 0) return LLMLAB_OK;
    tok_piece pc = {b->len, n, -1, at_start};
    llmlab_status st = tok_buf_put(b, p, n, err);
    return st == LLMLAB_OK ? tok_pieces_push(ps, pc, err) : st;
}

/* Adds a span [a, b) to the span list. */
static llmlab_status span(tok_pieces *sp, size_t a, size_t b, int is_match, llmlab_err *err) {
    tok_piece p = {a, b - a, is_match, 0};
    return tok_pieces_push(sp, p, err);
}

/* Spans of s[0..n) from a regex (HF's Pattern for a regex). */
static llmlab_status spans_regex(const tok_regex *re, const char *s, size_t n, tok_pieces *sp, tok_match *m,
                                 llmlab_err *err) {
    sp->n = 0;
    if (n == 0) return span(sp, 0, 0, 0, err);
    size_t pos = 0, last = SIZE_MAX, ms, me, prev = 0;
    llmlab_status st = LLMLAB_OK;
    while (st == LLMLAB_OK && tok_regex_next(re, m, s, n, &pos, &last, &ms, &me)) {
        if (prev != ms) st = span(sp, prev, ms, 0, err);
        if (st == LLMLAB_OK) st = span(sp, ms, me, 1, err);
        prev = me;
    }
    if (st == LLMLAB_OK && prev != n) st = span(sp, prev, n, 0, err);
    return st;
}

/* Spans of s[0..n) from a character predicate: every matching character is a
 * match span of its own (HF's Pattern for Fn(char) -> bool). */
static llmlab_status spans_pred(int (*pred)(uint32_t), const char *s, size_t n, tok_pieces *sp, llmlab_err *err) {
    sp->n = 0;
    if (n == 0) return span(sp, 0, 0, 0, err);
    size_t last = 0;
    llmlab_status st = LLMLAB_OK;
    for (size_t i = 0; i < n && st == LLMLAB_OK;) {
        uint32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (pred(c)) {
            if (last < i) st = span(sp, last, i, 0, err);
            if (st == LLMLAB_OK) st = span(sp, i, i + k, 1, err);
            last = i + k;
        }
        i += k;
    }
    if (st == LLMLAB_OK && last < n) st = span(sp, last, n, 0, err);
    return st;
}

/* Spans of s[0..n) splitting at every occurrence of the string r[0..rn). */
static llmlab_status spans_string(const char *r, size_t rn, const char *s, size_t n, tok_pieces *sp,
                                  llmlab_err *err) {
    sp->n = 0;
    if (n == 0) return span(sp, 0, 0, 0, err);
    size_t last = 0;
    llmlab_status st = LLMLAB_OK;
    for (size_t i = 0; i + rn <= n && st == LLMLAB_OK;) {
        const char *hit = memmem(s + i, n - i, r, rn);
        if (!hit) break;
        size_t at = (size_t)(hit - s);
        if (last < at) st = span(sp, last, at, 0, err);
        if (st == LLMLAB_OK) st = span(sp, at, at + rn, 1, err);
        last = i = at + rn;
    }
    if (st == LLMLAB_OK && last < n) st = span(sp, last, n, 0, err);
    return st;
}

/* Folds the spans by delimiter behavior (in place); afterwards id = 1 marks a
 * span to drop (Removed's delimiters). */
static void fold(tok_pieces *sp, enum tok_split_behavior b, int invert) {
    tok_piece *v = sp->v;
    size_t n = sp->n, k = 0;
    if (invert)
        for (size_t i = 0; i < n; i++) v[i].id = !v[i].id;
    int prev = 0;
    switch (b) {
    case TOK_SPLIT_REMOVED: return;
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) v[i].id = 0;
        return;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].id != 0;
            if (m == prev && k > 0) v[k - 1].len = v[i].off + v[i].len - v[k - 1].off;
            else v[k++] = (tok_piece){v[i].off, v[i].len, 0, 0};
            prev = m;
        }
        break;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].id != 0;
            if (m && !prev && k > 0) v[k - 1].len = v[i].off + v[i].len - v[k - 1].off;
            else v[k++] = (tok_piece){v[i].off, v[i].len, 0, 0};
            prev = m;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT:
        /* HF folds from the right: a delimiter joins the span after it.  Built in
         * place from the end, then moved to the front. */
        k = n;
        for (size_t i = n; i-- > 0;) {
            int m = v[i].id != 0;
            if (m && !prev && k < n) {
                v[k].len = v[k].off + v[k].len - v[i].off;
                v[k].off = v[i].off;
            } else {
                v[--k] = (tok_piece){v[i].off, v[i].len, 0, 0};
            }
            prev = m;
        }
        if (n > k) memmove(v, v + k, (n - k) * sizeof *v);
        k = n - k;
        break;
    }
    sp->n = k;
}

/* Emits the folded spans of s as pieces; the first inherits at_start when it
 * starts at byte 0. */
static llmlab_status emit_spans(const tok_pieces *sp, const char *s, int at_start, tok_buf *b, tok_pieces *ps,
                                llmlab_err *err) {
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->v[i].id) continue;
        llmlab_status st = emit(b, ps, s + sp->v[i].off, sp->v[i].len, at_start && sp->v[i].off == 0, err);
        if (st != LLMLAB_OK) return st;
    }
    return LLMLAB_OK;
}

/* ByteLevel: optional prefix space, optional GPT-2 regex split, bytes -> chars. */
static llmlab_status pre_bytelevel(const tok_pre *pt, const char *s, size_t n, int at_start, tok_pre_scratch *sc,
                                   tok_buf *b, tok_pieces *ps, tok_match *m, llmlab_err *err) {
    tok_buf *t = &sc->tmp;
    t->len = 0;
    llmlab_status st = LLMLAB_OK;
    if (pt->add_prefix_space && (n == 0 || s[0] != ' ')) st = tok_buf_put(t, " ", 1, err);
    if (st == LLMLAB_OK) st = tok_buf_put(t, s, n, err);
    if (st != LLMLAB_OK) return st;
    if (pt->re) {
        st = spans_regex(pt->re, t->p, t->len, &sc->spans, m, err);
        if (st != LLMLAB_OK) return st;
    } else {
        sc->spans.n = 0;
        if ((st = span(&sc->spans, 0, t->len, 0, err)) != LLMLAB_OK) return st;
    }
    for (size_t i = 0; i < sc->spans.n; i++) {
        const tok_piece *p = &sc->spans.v[i];
        if (p->len == 0) continue;
        if ((st = tok_buf_reserve(b, 2 * p->len, err)) != LLMLAB_OK) return st;
        tok_piece pc = {b->len, 0, -1, at_start && p->off == 0};
        for (size_t j = 0; j < p->len; j++) b->len += tok_utf8_put(tok_bytelevel_cp((unsigned char)t->p[p->off + j]), b->p + b->len);
        pc.len = b->len - pc.off;
        if ((st = tok_pieces_push(ps, pc, err)) != LLMLAB_OK) return st;
    }
    return LLMLAB_OK;
}

/* Metaspace: ' ' -> replacement, the prepend scheme, then split before each
 * replacement (MergedWithNext). */
static llmlab_status pre_metaspace(const tok_pre *pt, const char *s, size_t n, int at_start, tok_pre_scratch *sc,
                                   tok_buf *b, tok_pieces *ps, llmlab_err *err) {
    tok_buf *t = &sc->tmp;
    t->len = 0;
    size_t rl = (size_t)pt->replacement_len;
    int starts = (n >= 1 && s[0] == ' ') || (n >= rl && memcmp(s, pt->replacement, rl) == 0);
    int prepend = !starts && (pt->prepend == TOK_PREPEND_ALWAYS || (pt->prepend == TOK_PREPEND_FIRST && at_start));
    llmlab_status st = prepend ? tok_buf_put(t, pt->replacement, rl, err) : LLMLAB_OK;
    for (size_t i = 0; i < n && st == LLMLAB_OK; i++)
        st = s[i] == ' ' ? tok_buf_put(t, pt->replacement, rl, err) : tok_buf_put(t, s + i, 1, err);
    if (st != LLMLAB_OK) return st;
    if (!pt->split) return emit(b, ps, t->p, t->len, at_start, err);
    st = spans_string(pt->replacement, rl, t->p, t->len, &sc->spans, err);
    if (st != LLMLAB_OK) return st;
    fold(&sc->spans, TOK_SPLIT_MERGED_NEXT, 0);
    return emit_spans(&sc->spans, t->p, at_start, b, ps, err);
}

/* One (non-sequence) stage on one piece. */
static llmlab_status pre_one(const tok_pre *pt, const char *s, size_t n, int at_start, tok_pre_scratch *sc,
                             tok_buf *b, tok_pieces *ps, tok_match *m, llmlab_err *err) {
    llmlab_status st;
    switch (pt->type) {
    case TOK_PRE_BYTELEVEL: return pre_bytelevel(pt, s, n, at_start, sc, b, ps, m, err);
    case TOK_PRE_METASPACE: return pre_metaspace(pt, s, n, at_start, sc, b, ps, err);
    case TOK_PRE_SPLIT:
        st = spans_regex(pt->re, s, n, &sc->spans, m, err);
        if (st == LLMLAB_OK) fold(&sc->spans, pt->behavior, pt->invert);
        break;
    case TOK_PRE_WHITESPACE:
        st = spans_regex(pt->re, s, n, &sc->spans, m, err);
        if (st == LLMLAB_OK) fold(&sc->spans, TOK_SPLIT_REMOVED, 1);
        break;
    case TOK_PRE_DIGITS:
        st = spans_pred(tok_is_numeric, s, n, &sc->spans, err);
        if (st == LLMLAB_OK)
            fold(&sc->spans, pt->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, 0);
        break;
    case TOK_PRE_PUNCTUATION:
        st = spans_pred(tok_is_punctuation, s, n, &sc->spans, err);
        if (st == LLMLAB_OK) fold(&sc->spans, pt->behavior, 0);
        break;
    case TOK_PRE_WHITESPACE_SPLIT:
        st = spans_pred(tok_is_whitespace, s, n, &sc->spans, err);
        if (st == LLMLAB_OK) fold(&sc->spans, TOK_SPLIT_REMOVED, 0);
        break;
    default: return llmlab_err_set(err, LLMLAB_EINVAL, "tokenizer: nested pre-tokenizer sequence");
    }
    return st == LLMLAB_OK ? emit_spans(&sc->spans, s, at_start, b, ps, err) : st;
}

llmlab_status tok_pre_apply(const tok_pre *pt, const char *text, size_t n, int at_start, tok_pre_scratch *sc,
                            tok_match *m, llmlab_err *err) {
    int cur = 0;
    sc->buf[0].len = 0;
    sc->pcs[0].n = 0;
    llmlab_status st = emit(&sc->buf[0], &sc->pcs[0], text, n, at_start, err);
    int n_stage = pt->type == TOK_PRE_SEQUENCE ? pt->n_items : 1;
    for (int i = 0; i < n_stage && st == LLMLAB_OK; i++) {
        const tok_pre *stage = pt->type == TOK_PRE_SEQUENCE ? &pt->items[i] : pt;
        int dst = 1 - cur;
        sc->buf[dst].len = 0;
        sc->pcs[dst].n = 0;
        for (size_t j = 0; j < sc->pcs[cur].n && st == LLMLAB_OK; j++) {
            tok_piece p = sc->pcs[cur].v[j];
            st = pre_one(stage, sc->buf[cur].p + p.off, p.len, p.at_start, sc, &sc->buf[dst], &sc->pcs[dst], m, err);
        }
        cur = dst;
    }
    sc->cur = cur;
    return st;
}

void tok_pre_free(tok_pre *pt) {
    if (!pt) return;
    for (int i = 0; i < pt->n_items; i++) tok_regex_free(pt->items[i].re);
    free(pt->items);
    tok_regex_free(pt->re);
    free(pt);
}

void tok_pre_scratch_free(tok_pre_scratch *sc) {
    for (int i = 0; i < 2; i++) {
        tok_buf_free(&sc->buf[i]);
        free(sc->pcs[i].v);
    }
    tok_buf_free(&sc->tmp);
    free(sc->spans.v);
    memset(sc, 0, sizeof *sc);
}
