/* tok_cases.h - the cases.jsonl file of a tokenizer fixture
 * (tests/data/tokenizers/<name>/, written by the Hugging Face `tokenizers`
 * library through tools/make_tokenizer_fixtures.py): one JSON object a line with
 * the text, its ids without and with special tokens, and the two decodes of the
 * ids with special tokens. */
#ifndef LLMLAB_TEST_TOK_CASES_H
#define LLMLAB_TEST_TOK_CASES_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef struct {
    int line;                /* 1-based line in cases.jsonl */
    cJSON *json;             /* the parsed line ("ids", "ids_special": arrays of ids) */
    char *text;              /* [text_len] "text", exact bytes (NULs kept), NUL-terminated */
    size_t text_len;
    char *decoded;           /* [decoded_len] "decoded": decode(ids_special) */
    size_t decoded_len;
    char *decoded_skip;      /* [decoded_skip_len] "decoded_skip": the same, special tokens skipped */
    size_t decoded_skip_len;
} tok_case;

typedef struct {
    tok_case *v; /* [n] in file order (empty lines skipped) */
    int n;
} tok_cases;

/* Reads tests/data/tokenizers/<fixture>/cases.jsonl; asserts that the file
 * exists and every line is JSON with the three strings. */
void tok_cases_load(tok_cases *c, const char *fixture);
void tok_cases_free(tok_cases *c);

/* Decodes the JSON string value of "key" in one line into exact bytes (cJSON
 * would stop at an escaped NUL); malloc'd and NUL-terminated, *len bytes.
 * Asserts that the key is there. */
char *tok_json_field(const char *line, const char *key, size_t *len);

/* Appends the UTF-8 of code point cp (up to 4 bytes) to out at *n. */
void tok_put_utf8(char *out, size_t *n, uint32_t cp);

#endif
