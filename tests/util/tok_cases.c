/* tok_cases.c - reading the tokenizer fixtures' cases.jsonl. */
#include "tok_cases.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

/* Appends the UTF-8 of code point cp to out at *n. */
void tok_put_utf8(char *out, size_t *n, uint32_t cp) {
    if (cp < 0x80) out[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* The code point of a \uXXXX escape at p (just past the "\u"), joining a
 * surrogate pair written as two escapes; advances *p past what it read. */
static unsigned read_escape(const char **p) {
    unsigned cp = 0;
    sscanf(*p, "%4x", &cp);
    *p += 4;
    if (cp >= 0xD800 && cp < 0xDC00 && (*p)[0] == '\\' && (*p)[1] == 'u') {
        unsigned lo = 0;
        sscanf(*p + 2, "%4x", &lo);
        *p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    return cp;
}

char *tok_json_field(const char *line, const char *key, size_t *len) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    cr_assert(p, "no %s in %s", key, line);
    p += strlen(pat);
    char *out = malloc(strlen(p) + 1); /* escapes never decode longer than they are written */
    cr_assert_not_null(out);
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        char c = p[1];
        p += 2;
        if (c == 'u') tok_put_utf8(out, &n, read_escape(&p));
        else out[n++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == 'b' ? '\b' : c == 'f' ? '\f' : c;
    }
    out[n] = 0;
    *len = n;
    return out;
}

void tok_cases_load(tok_cases *c, const char *fixture) {
    memset(c, 0, sizeof *c);
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s/cases.jsonl", LLMLAB_TEST_DATA, fixture);
    char *all = fsu_read(path, NULL);
    cr_assert(all, "cannot read %s", path);
    int line = 0, cap = 0;
    for (char *s = all, *nl; *s; s = nl ? nl + 1 : s + strlen(s)) {
        line++;
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        if (!*s) continue;
        if (c->n == cap) {
            cap = cap ? 2 * cap : 64;
            c->v = realloc(c->v, (size_t)cap * sizeof *c->v);
            cr_assert_not_null(c->v);
        }
        tok_case *k = &c->v[c->n++];
        k->line = line;
        k->json = cJSON_Parse(s);
        cr_assert(k->json, "%s line %d is not JSON", path, line);
        k->text = tok_json_field(s, "text", &k->text_len);
        k->decoded = tok_json_field(s, "decoded", &k->decoded_len);
        k->decoded_skip = tok_json_field(s, "decoded_skip", &k->decoded_skip_len);
    }
    free(all);
}

void tok_cases_free(tok_cases *c) {
    for (int i = 0; i < c->n; i++) {
        cJSON_Delete(c->v[i].json);
        free(c->v[i].text);
        free(c->v[i].decoded);
        free(c->v[i].decoded_skip);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}
