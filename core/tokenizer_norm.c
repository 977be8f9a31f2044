/* tokenizer_norm.c - UTF-8 helpers, Rust's character classes, and the
 * normalizers (NFC/NFD/NFKC/NFKD through utf8proc, Lowercase, Prepend, Replace,
 * Strip).  Text is bytes: every normalizer leaves invalid UTF-8 bytes as they are
 * and works on the valid characters around them. */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer_internal.h"

/* ---- UTF-8 ------------------------------------------------------------------------------ */

size_t tok_utf8_next(const unsigned char *s, size_t n, uint32_t *c) {
    unsigned char b = s[0];
    if (b < 0x80) {
        *c = b;
        return 1;
    }
    size_t need;
    uint32_t v, min;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
        v = b & 0x1F;
        min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        v = b & 0x0F;
        min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        v = b & 0x07;
        min = 0x10000;
    } else {
        *c = UINT32_MAX;
        return 1;
    }
    if (n < need) {
        *c = UINT32_MAX;
        return 1;
    }
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *c = UINT32_MAX;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid. */
    if (v < min || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) {
        *c = UINT32_MAX;
        return 1;
    }
    *c = v;
    return need;
}

size_t tok_utf8_put(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- character classes ------------------------------------------------------------------ */

int tok_is_whitespace(uint32_t c) {
    /* The White_Space property, as Rust's char::is_whitespace. */
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* Numbers newer than utf8proc's tables that Rust's char::is_numeric (HF's
 * Digits) knows. */
static const uint32_t numeric_extra[][2] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x11DE0, 0x11DE9},
    {0x16130, 0x16139}, {0x16D70, 0x16D79}, {0x16FF4, 0x16FF6}, {0x1CCF0, 0x1CCF9},
    {0x1E5F1, 0x1E5FA}
};

/* Where HF's Punctuation (the unicode_categories crate's older tables, plus
 * ASCII punctuation) and utf8proc's P* categories disagree: [first, last, HF]. */
static const uint32_t punct_fix[][3] = {
    {0x61D, 0x61D, 0}, {0x9FD, 0x9FD, 0}, {0xA76, 0xA76, 0}, {0xC77, 0xC77, 0}, {0xC84, 0xC84, 0},
    {0x166D, 0x166D, 1}, {0x1B7D, 0x1B7E, 0}, {0x2E43, 0x2E4F, 0}, {0x2E52, 0x2E5D, 0},
    {0x10EAD, 0x10EAD, 0}, {0x10F55, 0x10F59, 0}, {0x10F86, 0x10F89, 0}, {0x111C9, 0x111C9, 1},
    {0x1144B, 0x1144F, 0}, {0x1145A, 0x1145B, 0}, {0x1145D, 0x1145D, 0}, {0x11660, 0x1166C, 0},
    {0x116B9, 0x116B9, 0}, {0x1183B, 0x1183B, 0}, {0x11944, 0x11946, 0}, {0x119E2, 0x119E2, 0},
    {0x11A3F, 0x11A46, 0}, {0x11A9A, 0x11A9C, 0}, {0x11A9E, 0x11AA2, 0}, {0x11B00, 0x11B09, 0},
    {0x11C41, 0x11C45, 0}, {0x11C70, 0x11C71, 0}, {0x11EF7, 0x11EF8, 0}, {0x11F43, 0x11F4F, 0},
    {0x11FFF, 0x11FFF, 0}, {0x12FF1, 0x12FF2, 0}, {0x16E97, 0x16E9A, 0}, {0x16FE2, 0x16FE2, 0},
    {0x1E95E, 0x1E95F, 0}
};

int tok_is_numeric(uint32_t c) {
    if (c == UINT32_MAX) return 0;
    for (size_t i = 0; c >= 0x10D40 && i < sizeof numeric_extra / sizeof numeric_extra[0]; i++)
        if (c >= numeric_extra[i][0] && c <= numeric_extra[i][1]) return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int tok_is_punctuation(uint32_t c) {
    if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                         (c >= 0x7B && c <= 0x7E);
    if (c == UINT32_MAX) return 0;
    for (size_t i = 0; i < sizeof punct_fix / sizeof punct_fix[0] && c >= punct_fix[i][0]; i++)
        if (c <= punct_fix[i][1]) return (int)punct_fix[i][2];
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ---- normalizers ------------------------------------------------------------------------ */

/* Code points HF's normalizer does not know: its Unicode tables (the
 * unicode-normalization-alignments crate) predate Unicode 10, so these later
 * characters with a combining class or a decomposition (and U+11935, which only
 * composes into one of them) pass through NFC/NFD/NFKC/NFKD unchanged and act as
 * starters.  Splitting the text at them gives exactly that. */
static const uint32_t norm_opaque[][2] = {
    {0x7FD, 0x7FD}, {0x898, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE}, {0xC3C, 0xC3C}, {0xD3B, 0xD3C},
    {0xEBA, 0xEBA}, {0x1715, 0x1715}, {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA}, {0x32FF, 0x32FF},
    {0xA7F2, 0xA7F4}, {0xA82C, 0xA82C}, {0xAB69, 0xAB69}, {0x10781, 0x10785}, {0x10787, 0x107B0},
    {0x107B2, 0x107BA}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x11935, 0x11935}, {0x11938, 0x11938},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E030, 0x1E06D},
    {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1F16C, 0x1F16C}, {0x1FBF0, 0x1FBF9}
};

static int is_norm_opaque(uint32_t c) {
    if (c < 0x7FD) return 0;
    size_t lo = 0, hi = sizeof norm_opaque / sizeof norm_opaque[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < norm_opaque[mid][0]) hi = mid;
        else if (c > norm_opaque[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* Lowercase mappings newer than utf8proc's tables that Rust's char::to_lowercase
 * (HF's Lowercase) has: [first, last, delta]. */
static const int32_t lower_extra[][3] = {
    {0x1C89, 0x1C89, 1}, {0xA7CB, 0xA7CB, -42343}, {0xA7CC, 0xA7CC, 1}, {0xA7CE, 0xA7CE, 1},
    {0xA7D2, 0xA7D2, 1}, {0xA7D4, 0xA7D4, 1}, {0xA7DA, 0xA7DA, 1}, {0xA7DC, 0xA7DC, -42561},
    {0x10D50, 0x10D65, 32}, {0x16EA0, 0x16EB8, 27}};

static uint32_t to_lower(uint32_t c) {
    for (size_t i = 0; i < sizeof lower_extra / sizeof lower_extra[0]; i++)
        if ((int32_t)c >= lower_extra[i][0] && (int32_t)c <= lower_extra[i][1]) return (uint32_t)((int32_t)c + lower_extra[i][2]);
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
}

/* Length of the run at the start of s[0..n) that goes through utf8proc: valid
 * UTF-8 without characters HF's normalizer does not know. */
static size_t valid_run(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = tok_utf8_next(s + i, n - i, &c);
        if (c == UINT32_MAX || is_norm_opaque(c)) break;
        i += k;
    }
    return i;
}

static llmlab_status norm_unicode(enum tok_norm_type type, const char *in, size_t n, tok_buf *out,
                                  llmlab_err *err) {
    utf8proc_option_t opt = UTF8PROC_STABLE;
    if (type == TOK_NORM_NFC || type == TOK_NORM_NFKC) opt |= UTF8PROC_COMPOSE;
    else opt |= UTF8PROC_DECOMPOSE;
    if (type == TOK_NORM_NFKC || type == TOK_NORM_NFKD) opt |= UTF8PROC_COMPAT;
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < n) {
        size_t run = valid_run(s + i, n - i);
        if (run == 0) { /* an invalid byte or an unknown character: through as it is */
            uint32_t c;
            size_t k = tok_utf8_next(s + i, n - i, &c);
            llmlab_status st = tok_buf_put(out, s + i, k, err);
            if (st != LLMLAB_OK) return st;
            i += k;
            continue;
        }
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t k = utf8proc_map(s + i, (utf8proc_ssize_t)run, &dst, opt);
        if (k < 0) {
            free(dst);
            return llmlab_err_set(err, k == UTF8PROC_ERROR_NOMEM ? LLMLAB_ENOMEM : LLMLAB_EINVAL,
                                  "tokenizer: Unicode normalization failed: %s", utf8proc_errmsg(k));
        }
        llmlab_status st = tok_buf_put(out, dst, (size_t)k, err);
        free(dst);
        if (st != LLMLAB_OK) return st;
        i += run;
    }
    return LLMLAB_OK;
}

static llmlab_status norm_lowercase(const char *in, size_t n, tok_buf *out, llmlab_err *err) {
    llmlab_status st = tok_buf_reserve(out, n + 16, err);
    const unsigned char *s = (const unsigned char *)in;
    for (size_t i = 0; i < n && st == LLMLAB_OK;) {
        uint32_t c;
        size_t k = tok_utf8_next(s + i, n - i, &c);
        if (c < 0x80) {
            char b = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            st = tok_buf_put(out, &b, 1, err);
        } else if (c == UINT32_MAX) {
            st = tok_buf_put(out, s + i, k, err);
        } else if (c == 0x130) {
            /* The one unconditional multi-character lowercase mapping (Rust's
             * char::to_lowercase): capital I with dot -> i + combining dot above. */
            st = tok_buf_put(out, "i\xcc\x87", 3, err);
        } else {
            char u[4];
            st = tok_buf_put(out, u, tok_utf8_put(to_lower(c), u), err);
        }
        i += k;
    }
    return st;
}

static llmlab_status norm_strip(const tok_norm *nm, const char *in, size_t n, tok_buf *out, llmlab_err *err) {
    const unsigned char *s = (const unsigned char *)in;
    size_t a = 0, b = n;
    while (nm->left && a < b) {
        uint32_t c;
        size_t k = tok_utf8_next(s + a, b - a, &c);
        if (!tok_is_whitespace(c)) break;
        a += k;
    }
    while (nm->right && b > a) {
        /* The last character starts at the last non-continuation byte within 4. */
        size_t st = b - 1;
        while (st > a && b - st < 4 && (s[st] & 0xC0) == 0x80) st--;
        uint32_t c;
        size_t k = tok_utf8_next(s + st, b - st, &c);
        if (st + k != b || !tok_is_whitespace(c)) break;
        b = st;
    }
    return tok_buf_put(out, in + a, b - a, err);
}

/* One (non-sequence) normalizer: in -> out (appended). */
static llmlab_status norm_one(const tok_norm *nm, const char *in, size_t n, tok_buf *out, tok_match *m,
                              llmlab_err *err) {
    switch (nm->type) {
    case TOK_NORM_NFC:
    case TOK_NORM_NFD:
    case TOK_NORM_NFKC:
    case TOK_NORM_NFKD: return norm_unicode(nm->type, in, n, out, err);
    case TOK_NORM_LOWERCASE: return norm_lowercase(in, n, out, err);
    case TOK_NORM_PREPEND: {
        if (n == 0) return LLMLAB_OK; /* HF prepends only to non-empty strings */
        llmlab_status st = tok_buf_put(out, nm->str, nm->str_len, err);
        return st == LLMLAB_OK ? tok_buf_put(out, in, n, err) : st;
    }
    case TOK_NORM_REPLACE: return tok_regex_replace(nm->re, m, in, n, nm->str, nm->str_len, out, err);
    case TOK_NORM_STRIP: return norm_strip(nm, in, n, out, err);
    case TOK_NORM_SEQUENCE: break;
    }
    return llmlab_err_set(err, LLMLAB_EINVAL, "tokenizer: nested normalizer sequence");
}

llmlab_status tok_norm_apply(const tok_norm *nm, const char *in, size_t n, tok_buf *out, tok_buf *tmp,
                             tok_match *m, llmlab_err *err) {
    out->len = 0;
    if (nm->type != TOK_NORM_SEQUENCE) return norm_one(nm, in, n, out, m, err);
    /* Sequences are flattened at load; ping-pong between out and tmp, ending in out. */
    tok_buf *src = NULL, *dst = (nm->n_items % 2) ? out : tmp;
    if (nm->n_items == 0) return tok_buf_put(out, in, n, err);
    for (int i = 0; i < nm->n_items; i++) {
        dst->len = 0;
        llmlab_status st = src ? norm_one(&nm->items[i], src->p, src->len, dst, m, err)
                               : norm_one(&nm->items[i], in, n, dst, m, err);
        if (st != LLMLAB_OK) return st;
        src = dst;
        dst = dst == out ? tmp : out;
    }
    return LLMLAB_OK;
}

void tok_norm_free(tok_norm *nm) {
    if (!nm) return;
    for (int i = 0; i < nm->n_items; i++) {
        free(nm->items[i].str);
        tok_regex_free(nm->items[i].re);
    }
    free(nm->items);
    free(nm->str);
    tok_regex_free(nm->re);
    free(nm);
}
