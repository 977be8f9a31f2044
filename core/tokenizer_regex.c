/* tokenizer_regex.c - PCRE2 patterns for pre-tokenizers, normalizers and decoders.
 *
 * Hugging Face compiles these patterns with Oniguruma and iterates matches the
 * way Rust's find_iter does; PCRE2 with UTF + UCP accepts the same syntax for
 * everything the Llama family uses (\p{L}, \p{N}, (?i:...), (?!\S), {1,3}).
 * PCRE2_MATCH_INVALID_UTF makes invalid UTF-8 in the subject unmatchable
 * instead of an error, so bytes no alternative can match stay between matches.
 * Compiled code is shared read-only between threads; match data is per call.
 */
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer_internal.h"

struct tok_regex {
    pcre2_code *code; /* compiled pattern (JIT-compiled when the platform has a JIT) */
};

struct tok_match {
    pcre2_match_data *md; /* room for one match (the whole-match pair) */
};

/* Code points that are letters (L) or numbers (N) in Unicode 16, which Hugging
 * Face's Oniguruma knows, but unassigned in the Unicode 14 tables of PCRE2 10.42
 * (ranges as PCRE2 class items). */
static const char extra_letters[] =
    "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D65}"
    "\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}"
    "\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}"
    "\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}"
    "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"
    "\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}";
static const char extra_numbers[] =
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}"
    "\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}";

/* Rewrites an Oniguruma pattern so PCRE2 matches the same characters: \s and
 * \S become White_Space exactly (PCRE2's \s also takes U+180E, Oniguruma's
 * does not), and \p{L} / \p{N} gain the code points newer Unicode assigned.
 * Escapes are copied whole and character classes tracked, so only real class
 * escapes are touched. */
static llmlab_status oniguruma_to_pcre2(const char *p, size_t n, tok_buf *out, llmlab_err *err) {
    int in_class = 0;
    llmlab_status st = LLMLAB_OK;
    for (size_t i = 0; i < n && st == LLMLAB_OK;) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *extra = NULL, *prop = NULL;
            size_t len = 2;
            if (e == 's' || e == 'S') {
                st = tok_buf_put(out, e == 's' ? "\\p{White_Space}" : "\\P{White_Space}", 15, err);
                i += 2;
                continue;
            }
            if (e == 'p' && i + 2 < n && (p[i + 2] == 'L' || p[i + 2] == 'N')) prop = p + i + 2, len = 3;
            else if (e == 'p' && i + 4 < n && p[i + 2] == '{' && (p[i + 3] == 'L' || p[i + 3] == 'N') && p[i + 4] == '}')
                prop = p + i + 3, len = 5;
            if (prop) extra = *prop == 'L' ? extra_letters : extra_numbers;
            if (extra) {
                if (!in_class) st = tok_buf_put(out, "[", 1, err);
                if (st == LLMLAB_OK) st = tok_buf_put(out, p + i, len, err);
                if (st == LLMLAB_OK) st = tok_buf_put(out, extra, strlen(extra), err);
                if (st == LLMLAB_OK && !in_class) st = tok_buf_put(out, "]", 1, err);
                i += len;
                continue;
            }
            if (e == 'Q') { /* \Q...\E: literal text, copied as it is */
                const char *end = memmem(p + i + 2, n - i - 2, "\\E", 2);
                size_t stop = end ? (size_t)(end - p) + 2 : n;
                st = tok_buf_put(out, p + i, stop - i, err);
                i = stop;
                continue;
            }
            st = tok_buf_put(out, p + i, 2, err);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            /* A ']' right after '[' or '[^' is a literal member. */
            size_t k = i + 1;
            if (k < n && p[k] == '^') k++;
            if (k < n && p[k] == ']') k++;
            st = tok_buf_put(out, p + i, k - i, err);
            in_class = 1;
            i = k;
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *end = memmem(p + i + 2, n - i - 2, ":]", 2);
            size_t stop = end ? (size_t)(end - p) + 2 : i + 1;
            st = tok_buf_put(out, p + i, stop - i, err);
            i = stop;
            continue;
        }
        if (in_class && c == ']') in_class = 0;
        st = tok_buf_put(out, p + i, 1, err);
        i++;
    }
    return st;
}

/* Compiles with PCRE2; *code = NULL and the message filled on a bad pattern. */
static llmlab_status compile(pcre2_code **code, const char *pattern, size_t len, uint32_t opt, const char *shown,
                             size_t shown_len, const char *where, llmlab_err *err) {
    int rc;
    PCRE2_SIZE off;
    *code = pcre2_compile((PCRE2_SPTR)pattern, len, opt, &rc, &off, NULL);
    if (*code) return LLMLAB_OK;
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: bad regex '%.*s': %s at offset %zu", where,
                          (int)(shown_len > 200 ? 200 : shown_len), shown, (const char *)msg, (size_t)off);
}

llmlab_status tok_regex_compile(tok_regex **out, const char *pattern, size_t len, int literal, const char *where,
                                llmlab_err *err) {
    *out = NULL;
    uint32_t opt = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *c;
    /* The pattern as written is compiled first so an error points into it. */
    llmlab_status st = compile(&c, pattern, len, opt, pattern, len, where, err);
    if (st != LLMLAB_OK) return st;
    if (!literal) {
        tok_buf rw = {0};
        pcre2_code_free(c);
        c = NULL;
        st = oniguruma_to_pcre2(pattern, len, &rw, err);
        if (st == LLMLAB_OK) st = compile(&c, rw.p ? rw.p : "", rw.len, opt, pattern, len, where, err);
        tok_buf_free(&rw);
        if (st != LLMLAB_OK) return st;
    }
    /* A JIT failure (no JIT on this platform, or out of executable memory) is not
     * an error: pcre2_match falls back to the interpreter. */
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    tok_regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(c);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", where);
    }
    re->code = c;
    *out = re;
    return LLMLAB_OK;
}

void tok_regex_free(tok_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

llmlab_status tok_match_create(tok_match **out, llmlab_err *err) {
    *out = NULL;
    tok_match *m = malloc(sizeof *m);
    if (!m || !(m->md = pcre2_match_data_create(1, NULL))) {
        free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory for regex match data");
    }
    *out = m;
    return LLMLAB_OK;
}

void tok_match_free(tok_match *m) {
    if (!m) return;
    pcre2_match_data_free(m->md);
    free(m);
}

int tok_regex_next(const tok_regex *re, tok_match *m, const char *s, size_t n, size_t *pos, size_t *last,
                   size_t *ms, size_t *me) {
    while (*pos <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, *pos, 0, m->md, NULL);
        /* No match, or a resource limit on a pathological pattern: no more matches. */
        if (rc < 0) return 0;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        if (ov[1] < ov[0]) return 0; /* \K games; never in tokenizer patterns */
        if (ov[0] == ov[1] && ov[1] == *last) {
            /* An empty match where the previous one ended: step one character. */
            if (*pos >= n) return 0;
            uint32_t c;
            *pos += tok_utf8_next((const unsigned char *)s + *pos, n - *pos, &c);
            continue;
        }
        *ms = ov[0];
        *me = ov[1];
        *last = ov[1];
        *pos = ov[1];
        return 1;
    }
    return 0;
}

llmlab_status tok_regex_replace(const tok_regex *re, tok_match *m, const char *s, size_t n, const char *rep,
                                size_t rn, tok_buf *out, llmlab_err *err) {
    size_t pos = 0, last = SIZE_MAX, ms, me, done = 0;
    llmlab_status st = LLMLAB_OK;
    while (st == LLMLAB_OK && tok_regex_next(re, m, s, n, &pos, &last, &ms, &me)) {
        st = tok_buf_put(out, s + done, ms - done, err);
        if (st == LLMLAB_OK) st = tok_buf_put(out, rep, rn, err);
        done = me;
    }
    return st == LLMLAB_OK ? tok_buf_put(out, s + done, n - done, err) : st;
}

int tok_regex_matches_at(const tok_regex *re, tok_match *m, const char *s, size_t n, size_t at) {
    return pcre2_match(re->code, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED, m->md, NULL) >= 0;
}
