/* tokenizer_decode.c - ids -> bytes through the tokenizer.json decoder chain,
 * one id at a time.
 *
 * HF decodes a whole list of token strings with each decoder in turn; here the
 * chain is a pipeline of stages that take tokens one by one, so streaming and
 * one-shot decoding are the same code (decode = push every id, then flush).
 * Stages before the first join (Fuse, ByteLevel) see whole tokens and keep HF's
 * per-token rules (Strip and Metaspace act on each token, Metaspace's "first
 * token" is the first one that reached it).  After a join everything is one
 * token arriving in chunks, so a stage there holds back the few bytes that
 * could still change (a partial match of a Replace pattern, trailing characters
 * Strip may remove, a possible <0xNN>) and releases them as soon as they are
 * settled, or at flush.  Decoding yields raw bytes: ByteFallback and ByteLevel
 * give the bytes themselves where HF would put U+FFFD.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* The state of one stage. */
struct dec_state {
    int joined;      /* input is one joined token arriving in chunks */
    int group;       /* BYTEFALLBACK: group byte runs into tokens (a later stage cares) */
    int ntok;        /* tokens seen (discrete input) */
    int lead_left;   /* STRIP, joined: leading characters still to remove; -1 once done */
    int passing;     /* BYTEFALLBACK, joined: the stream can no longer be one <0xNN> */
    tok_buf hold;    /* bytes held back (see the stage) */
    tok_buf o;       /* the stage's output scratch */
};

struct tok_dec {
    const struct tok_bpe_tok *m; /* the tokenizer (borrowed) */
    int skip_special;            /* drop special added tokens */
    int ntok;                    /* tokens pushed (no decoder: joined with ' ') */
    struct dec_state *s;         /* [m->n_dec] */
    tok_match *mt;               /* regex match data */
};

static llmlab_status feed(struct tok_dec *d, int i, const char *p, size_t n, tok_buf *out, llmlab_err *err);
static llmlab_status flush_from(struct tok_dec *d, int i, tok_buf *out, llmlab_err *err);

static int is_join(enum tok_dec_type t) { return t == TOK_DEC_FUSE || t == TOK_DEC_BYTELEVEL; }

llmlab_status tok_dec_create(struct tok_dec **out, const struct tok_bpe_tok *m, int skip_special, llmlab_err *err) {
    *out = NULL;
    struct tok_dec *d = calloc(1, sizeof *d);
    if (d) d->s = calloc((size_t)m->n_dec + 1, sizeof *d->s);
    if (!d || !d->s) {
        if (d) free(d->s);
        free(d);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for a decoder");
    }
    d->m = m;
    d->skip_special = skip_special;
    int joined = 0;
    for (int i = 0; i < m->n_dec; i++) {
        d->s[i].joined = joined;
        d->s[i].lead_left = m->dec[i].start;
        if (m->dec[i].type == TOK_DEC_BYTEFALLBACK && !joined)
            /* Token boundaries matter only to a per-token stage before the next join. */
            d->s[i].group = i + 1 < m->n_dec && !is_join(m->dec[i + 1].type);
        if (is_join(m->dec[i].type)) joined = 1;
    }
    llmlab_status st = tok_match_create(&d->mt, err);
    if (st != LLMLAB_OK) {
        tok_dec_free(d);
        return st;
    }
    *out = d;
    return LLMLAB_OK;
}

void tok_dec_free(struct tok_dec *d) {
    if (!d) return;
    for (int i = 0; i < d->m->n_dec; i++) {
        tok_buf_free(&d->s[i].hold);
        tok_buf_free(&d->s[i].o);
    }
    free(d->s);
    tok_match_free(d->mt);
    free(d);
}

/* ---- helpers ------------------------------------------------------------------------- */

/* Length of the longest proper prefix of pat[0..pn) that s[0..n) ends with. */
static size_t partial_suffix(const char *s, size_t n, const char *pat, size_t pn) {
    for (size_t k = pn - 1 < n ? pn - 1 : n; k > 0; k--)
        if (memcmp(s + n - k, pat, k) == 0) return k;
    return 0;
}

/* Streams hold + s through "replace every pat with rep" into o; unless final,
 * keeps in hold the tail that could start a match. */
static llmlab_status stream_replace(const char *pat, size_t pn, const char *rep, size_t rn, tok_buf *hold,
                                    const char *s, size_t n, int final, tok_buf *o, llmlab_err *err) {
    llmlab_status st = tok_buf_put(hold, s, n, err);
    if (st != LLMLAB_OK || hold->len == 0) return st;
    const char *h = hold->p;
    size_t len = hold->len, pos = 0;
    while (st == LLMLAB_OK && pos < len) {
        const char *hit = memmem(h + pos, len - pos, pat, pn);
        if (!hit) break;
        st = tok_buf_put(o, h + pos, (size_t)(hit - h) - pos, err);
        if (st == LLMLAB_OK) st = tok_buf_put(o, rep, rn, err);
        pos = (size_t)(hit - h) + pn;
    }
    if (st != LLMLAB_OK) return st;
    size_t keep = final ? 0 : partial_suffix(h + pos, len - pos, pat, pn);
    st = tok_buf_put(o, h + pos, len - pos - keep, err);
    if (keep) memmove(hold->p, h + len - keep, keep);
    hold->len = keep;
    return st;
}

/* ByteLevel: the bytes the token's characters stand for, or the token itself
 * when some character stands for no byte (HF keeps such tokens as they are). */
static llmlab_status bytelevel_map(const char *p, size_t n, tok_buf *o, llmlab_err *err) {
    size_t start = o->len;
    llmlab_status st = tok_buf_reserve(o, n, err);
    if (st != LLMLAB_OK) return st;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = tok_utf8_next((const unsigned char *)p + i, n - i, &c);
        int b = c == UINT32_MAX ? -1 : tok_bytelevel_byte(c);
        if (b < 0) {
            o->len = start;
            return tok_buf_put(o, p, n, err);
        }
        o->p[o->len++] = (char)b;
        i += k;
    }
    return LLMLAB_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ByteFallback's test: "<0xNN>" (parsed like Rust's u8::from_str_radix, which
 * also takes "+N"); returns the byte or -1. */
static int byte_token(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    if (p[3] == '+') return hexval(p[4]);
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* 1 when s[0..n) is all valid UTF-8. */
static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (c == UINT32_MAX) return 0;
    }
    return 1;
}

/* ---- stages ---------------------------------------------------------------------------- */

/* ByteFallback's pending byte run goes on: one token when it is valid UTF-8,
 * else one token per byte (HF: one U+FFFD each). */
static llmlab_status bf_release(struct tok_dec *d, int i, tok_buf *out, llmlab_err *err) {
    struct dec_state *s = &d->s[i];
    llmlab_status st = LLMLAB_OK;
    if (!s->hold.len) return st;
    if (valid_utf8(s->hold.p, s->hold.len)) st = feed(d, i + 1, s->hold.p, s->hold.len, out, err);
    else
        for (size_t k = 0; k < s->hold.len && st == LLMLAB_OK; k++) st = feed(d, i + 1, s->hold.p + k, 1, out, err);
    s->hold.len = 0;
    return st;
}

static llmlab_status stage_bytefallback(struct tok_dec *d, int i, const char *p, size_t n, tok_buf *out,
                                        llmlab_err *err) {
    struct dec_state *s = &d->s[i];
    llmlab_status st;
    if (s->joined) {
        /* The whole stream is one token: it is a byte only if it is exactly "<0xNN>". */
        if (s->passing) return feed(d, i + 1, p, n, out, err);
        if ((st = tok_buf_put(&s->hold, p, n, err)) != LLMLAB_OK) return st;
        if (s->hold.len <= 6) return LLMLAB_OK;
        s->passing = 1;
        st = feed(d, i + 1, s->hold.p, s->hold.len, out, err);
        s->hold.len = 0;
        return st;
    }
    int b = byte_token(p, n);
    if (b >= 0) {
        char c = (char)b;
        return s->group ? tok_buf_put(&s->hold, &c, 1, err) : feed(d, i + 1, &c, 1, out, err);
    }
    if ((st = bf_release(d, i, out, err)) != LLMLAB_OK) return st;
    return feed(d, i + 1, p, n, out, err);
}

/* Strip on a joined stream: leading characters removed as they come, trailing
 * ones (up to `stop`) held until something else follows or the stream ends. */
static llmlab_status strip_joined(struct tok_dec *d, int i, const char *p, size_t n, int final, tok_buf *out,
                                  llmlab_err *err) {
    const tok_dec_stage *g = &d->m->dec[i];
    struct dec_state *s = &d->s[i];
    const char *c = g->content;
    size_t cl = g->content_len;
    llmlab_status st = tok_buf_put(&s->hold, p, n, err);
    if (st != LLMLAB_OK || s->hold.len == 0) return st;
    const char *h = s->hold.p;
    size_t len = s->hold.len, pos = 0, keep = len;
    while (s->lead_left > 0 && pos < len) {
        if (len - pos >= cl && memcmp(h + pos, c, cl) == 0) {
            pos += cl;
            s->lead_left--;
        } else if (!final && len - pos < cl && memcmp(h + pos, c, len - pos) == 0) {
            break; /* part of a character: wait for the rest */
        } else {
            s->lead_left = 0;
        }
    }
    s->o.len = 0;
    if (s->lead_left == 0 || final) {
        size_t tail = len - (final ? 0 : partial_suffix(h + pos, len - pos, c, cl));
        for (int k = 0; k < g->stop && tail - pos >= cl && memcmp(h + tail - cl, c, cl) == 0; k++) tail -= cl;
        if ((st = tok_buf_put(&s->o, h + pos, tail - pos, err)) != LLMLAB_OK) return st;
        keep = final ? len : tail; /* final: the trailing run is dropped */
    } else {
        keep = pos; /* still in the leading run: a partial character waits */
    }
    if (len > keep) memmove(s->hold.p, h + keep, len - keep);
    s->hold.len = len - keep;
    return s->o.len ? feed(d, i + 1, s->o.p, s->o.len, out, err) : LLMLAB_OK;
}

/* Strip on one whole token. */
static void strip_token(const tok_dec_stage *g, const char **p, size_t *n) {
    const char *c = g->content;
    size_t cl = g->content_len, a = 0, b = *n;
    for (int k = 0; k < g->start && b - a >= cl && memcmp(*p + a, c, cl) == 0; k++) a += cl;
    for (int k = 0; k < g->stop && b - a >= cl && memcmp(*p + b - cl, c, cl) == 0; k++) b -= cl;
    *p += a;
    *n = b - a;
}

static llmlab_status stage(struct tok_dec *d, int i, const char *p, size_t n, tok_buf *out, llmlab_err *err) {
    const tok_dec_stage *g = &d->m->dec[i];
    struct dec_state *s = &d->s[i];
    llmlab_status st = LLMLAB_OK;
    s->o.len = 0;
    switch (g->type) {
    case TOK_DEC_FUSE: return feed(d, i + 1, p, n, out, err);
    case TOK_DEC_BYTELEVEL:
        if (s->joined) { /* mapped whole at flush */
            s->ntok++;
            return tok_buf_put(&s->hold, p, n, err);
        }
        st = bytelevel_map(p, n, &s->o, err);
        break;
    case TOK_DEC_BYTEFALLBACK: return stage_bytefallback(d, i, p, n, out, err);
    case TOK_DEC_REPLACE:
        if (!s->joined) st = tok_regex_replace(g->re, d->mt, p, n, g->content, g->content_len, &s->o, err);
        else if (g->pat && g->pat_len)
            st = stream_replace(g->pat, g->pat_len, g->content, g->content_len, &s->hold, p, n, 0, &s->o, err);
        else { /* a regex over the joined text: at flush */
            s->ntok++;
            return tok_buf_put(&s->hold, p, n, err);
        }
        break;
    case TOK_DEC_METASPACE: {
        /* HF: in the first token every replacement char goes (unless "never"), elsewhere -> ' '. */
        int first = s->joined || s->ntok == 0;
        const char *rep = first && !g->prepend_never ? "" : " ";
        tok_buf *h = &s->hold;
        if (!s->joined) h->len = 0;
        st = stream_replace(g->replacement, (size_t)g->replacement_len, rep, *rep ? 1 : 0, h, p, n, !s->joined,
                            &s->o, err);
        break;
    }
    case TOK_DEC_STRIP:
        if (s->joined) return strip_joined(d, i, p, n, 0, out, err);
        strip_token(g, &p, &n);
        st = tok_buf_put(&s->o, p, n, err);
        break;
    }
    s->ntok++;
    if (st != LLMLAB_OK) return st;
    if (s->joined && !s->o.len) return LLMLAB_OK; /* nothing settled yet */
    return feed(d, i + 1, s->o.p ? s->o.p : "", s->o.len, out, err);
}

/* Feeds a token (or a chunk of the joined token) to stage i; past the last
 * stage the bytes are output. */
static llmlab_status feed(struct tok_dec *d, int i, const char *p, size_t n, tok_buf *out, llmlab_err *err) {
    if (i >= d->m->n_dec) return tok_buf_put(out, p, n, err);
    return stage(d, i, p, n, out, err);
}

/* Releases what stage i holds (it is the end of the stream) and flushes the rest. */
static llmlab_status flush_from(struct tok_dec *d, int i, tok_buf *out, llmlab_err *err) {
    if (i >= d->m->n_dec) return LLMLAB_OK;
    const tok_dec_stage *g = &d->m->dec[i];
    struct dec_state *s = &d->s[i];
    llmlab_status st = LLMLAB_OK;
    s->o.len = 0;
    switch (g->type) {
    case TOK_DEC_FUSE: break;
    case TOK_DEC_BYTELEVEL:
        if (s->joined && s->hold.len) st = bytelevel_map(s->hold.p, s->hold.len, &s->o, err);
        break;
    case TOK_DEC_BYTEFALLBACK:
        if (!s->joined) {
            st = bf_release(d, i, out, err);
        } else if (s->hold.len) {
            int b = byte_token(s->hold.p, s->hold.len);
            char c = (char)b;
            st = b >= 0 ? tok_buf_put(&s->o, &c, 1, err) : tok_buf_put(&s->o, s->hold.p, s->hold.len, err);
        }
        break;
    case TOK_DEC_REPLACE:
        if (!s->joined) break;
        if (g->pat && g->pat_len)
            st = stream_replace(g->pat, g->pat_len, g->content, g->content_len, &s->hold, "", 0, 1, &s->o, err);
        else if (s->ntok > 0) /* the joined token exists once anything reached it */
            st = tok_regex_replace(g->re, d->mt, s->hold.p ? s->hold.p : "", s->hold.len, g->content,
                                   g->content_len, &s->o, err);
        break;
    case TOK_DEC_METASPACE:
        if (s->joined) st = tok_buf_put(&s->o, s->hold.p, s->hold.len, err);
        break;
    case TOK_DEC_STRIP:
        if (s->joined) st = strip_joined(d, i, "", 0, 1, out, err);
        s->o.len = 0;
        break;
    }
    if (st == LLMLAB_OK && s->o.len) st = feed(d, i + 1, s->o.p, s->o.len, out, err);
    s->hold.len = 0;
    s->ntok = 0;
    s->passing = 0;
    s->lead_left = g->start;
    return st == LLMLAB_OK ? flush_from(d, i + 1, out, err) : st;
}

/* ---- entry points ---------------------------------------------------------------------- */

llmlab_status tok_dec_push(struct tok_dec *d, int32_t id, tok_buf *out, llmlab_err *err) {
    size_t n;
    const char *p = tok_model_dec_piece(d->m, id, &n);
    if (!p)
        return llmlab_err_set(err, LLMLAB_EINVAL, "tokenizer: id %d is not in the vocabulary (size %d)", (int)id,
                              (int)d->m->n_ids);
    if (d->skip_special && d->m->special[id]) return LLMLAB_OK;
    if (!d->m->has_decoder) { /* HF without a decoder: tokens joined by spaces */
        llmlab_status st = d->ntok++ ? tok_buf_put(out, " ", 1, err) : LLMLAB_OK;
        return st == LLMLAB_OK ? tok_buf_put(out, p, n, err) : st;
    }
    d->ntok++;
    return feed(d, 0, p, n, out, err);
}

llmlab_status tok_dec_flush(struct tok_dec *d, tok_buf *out, llmlab_err *err) {
    llmlab_status st = flush_from(d, 0, out, err);
    d->ntok = 0;
    return st;
}
