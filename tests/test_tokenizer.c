/* test_tokenizer.c - the tokenizer against the Hugging Face `tokenizers` library.
 *
 * tests/data/tokenizers/<name>/ hold a tokenizer.json and cases.jsonl made by the
 * library itself (tools/make_tokenizer_fixtures.py): every id, every decoded
 * string must match exactly.  Then properties on fresh random input (the seed is
 * printed; replay with LLMLAB_TEST_SEED): byte-level round trips on random
 * UTF-8 and random bytes, streaming decode equal to one-shot decode on random
 * id sequences, thread safety, and clear errors for malformed files.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/rng.h"
#include "core/tokenizer.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/tok_cases.h"

#define TOK_DIR LLMLAB_TEST_DATA "/tokenizers"

/* ---- helpers ------------------------------------------------------------------------ */

/* The fixture directories (malloc'd names, sorted); returns their count. */
static int fixture_dirs(char ***out) {
    DIR *d = opendir(TOK_DIR);
    cr_assert(d, "cannot open %s", TOK_DIR);
    char **v = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/tokenizer.json", TOK_DIR, e->d_name);
        if (!fsu_exists(path)) continue;
        v = realloc(v, (size_t)(n + 1) * sizeof *v);
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++) /* sorted, so runs are reproducible */
        for (int j = i + 1; j < n; j++)
            if (strcmp(v[j], v[i]) < 0) {
                char *t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    *out = v;
    return n;
}

static void free_dirs(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static llmlab_tokenizer *load_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", TOK_DIR, name);
    llmlab_tokenizer *t = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_load_json(&t, path, &e), LLMLAB_OK, "%s: %s", name, e.msg);
    return t;
}

/* The fixture's tokenizer.json with the top-level key `key` replaced by the JSON
 * text `value` (NULL: keep), built through llmlab_tokenizer_from_json. */
static llmlab_tokenizer *load_variant(const char *name, const char *key, const char *value) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", TOK_DIR, name);
    size_t n;
    char *text = fsu_read(path, &n);
    cr_assert(text);
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    cr_assert(root);
    if (key) {
        cJSON *v = cJSON_Parse(value);
        cr_assert(v, "bad variant JSON %s", value);
        cJSON_ReplaceItemInObjectCaseSensitive(root, key, v);
    }
    llmlab_tokenizer *t = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_from_json(&t, root, name, &e), LLMLAB_OK, "%s: %s", name, e.msg);
    cJSON_Delete(root);
    return t;
}

/* A fresh seed (printed; LLMLAB_TEST_SEED replays it), returned, and stream
 * `stream` of it in *r. */
static uint64_t seeded_rng(llmlab_rng *r, const char *test_name, uint64_t stream) {
    uint64_t seed = fixture_seed(test_name);
    llmlab_rng_seed(r, seed, stream);
    return seed;
}

/* Hex of a byte string, for failure messages (static buffer). */
static const char *hex(const char *s, size_t n) {
    static char buf[2048];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 3 < sizeof buf; i++) k += (size_t)snprintf(buf + k, sizeof buf - k, "%02x", (unsigned char)s[i]);
    buf[k] = 0;
    return buf;
}

static void expect_ids(const cJSON *want, const int32_t *ids, int n, const char *what, int line) {
    cr_assert_eq(cJSON_GetArraySize(want), n, "%s line %d: %d ids, want %d", what, line, n, cJSON_GetArraySize(want));
    int i = 0;
    for (const cJSON *e = want->child; e; e = e->next, i++)
        cr_assert_eq(ids[i], (int32_t)e->valuedouble, "%s line %d: id[%d] = %d, want %d", what, line, i, ids[i],
                     (int)e->valuedouble);
}

/* Decodes ids with skip and checks the bytes. */
static void expect_decode(const llmlab_tokenizer *t, const int32_t *ids, int n, int skip, const char *want,
                          size_t wn, const char *what, int line) {
    char *text;
    size_t len;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_decode(t, ids, n, skip, &text, &len, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert(len == wn && memcmp(text, want, wn) == 0, "%s line %d skip=%d: decoded %s, want %s", what, line, skip,
              hex(text, len), hex(want, wn));
    cr_assert_eq(text[len], 0);
    free(text);
}

/* Length of the valid UTF-8 character at p[0..n), 0 if there is none. */
static size_t valid_char(const unsigned char *p, size_t n) {
    size_t need = p[0] < 0x80 ? 1 : p[0] >= 0xC2 && p[0] < 0xE0 ? 2 : p[0] >= 0xE0 && p[0] < 0xF0 ? 3
                  : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    if (!need || need > n) return 0;
    for (size_t i = 1; i < need; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    uint32_t c = need == 1 ? p[0] : need == 2 ? p[0] & 0x1Fu : need == 3 ? p[0] & 0x0Fu : p[0] & 0x07u;
    for (size_t i = 1; i < need; i++) c = (c << 6) | (p[i] & 0x3Fu);
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[need] || (c >= 0xD800 && c < 0xE000) || c > 0x10FFFF) return 0;
    return need;
}

/* 1 when cutting the text s[0..n) at `cut` splits a valid character. */
static int splits_char(const char *s, size_t n, size_t cut) {
    for (size_t k = 1; k <= 3 && k <= cut; k++) {
        size_t len = valid_char((const unsigned char *)s + cut - k, n - (cut - k));
        if (len > k) return 1;
    }
    return 0;
}

/* Pushes every id then flushes; returns the concatenated output (malloc'd) and
 * checks that no push ended in the middle of a valid character. */
static char *stream_once(llmlab_detok *d, const int32_t *ids, int n, size_t *len) {
    char *all = malloc(1);
    size_t total = 0, *cuts = malloc(((size_t)n + 1) * sizeof *cuts);
    llmlab_err e = {0};
    for (int i = 0; i <= n; i++) {
        const char *p;
        size_t k;
        if (i < n) cr_assert_eq(llmlab_detok_push(d, ids[i], &p, &k, &e), LLMLAB_OK, "%s", e.msg);
        else cr_assert_eq(llmlab_detok_flush(d, &p, &k, &e), LLMLAB_OK, "%s", e.msg);
        all = realloc(all, total + k + 1);
        memcpy(all + total, p, k);
        total += k;
        cuts[i] = total;
    }
    for (int i = 0; i < n; i++)
        cr_assert(!splits_char(all, total, cuts[i]), "push %d cut a character: %s", i, hex(all, total));
    free(cuts);
    const char *p;
    size_t k;
    cr_assert_eq(llmlab_detok_flush(d, &p, &k, &e), LLMLAB_OK);
    cr_assert_eq(k, 0, "a second flush gave %zu bytes", k);
    *len = total;
    return all;
}

/* Streams ids through a fresh detokenizer twice (flush must reset it) and
 * returns the output. */
static char *stream(const llmlab_tokenizer *t, const int32_t *ids, int n, int skip, size_t *len) {
    llmlab_detok *d;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_detok_create(&d, t, skip, &e), LLMLAB_OK, "%s", e.msg);
    size_t n1, n2;
    char *a = stream_once(d, ids, n, &n1), *b = stream_once(d, ids, n, &n2);
    cr_assert(n1 == n2 && memcmp(a, b, n1) == 0, "the detokenizer was not reset by flush");
    free(b);
    llmlab_detok_free(d);
    *len = n1;
    return a;
}

/* ---- the fixtures ------------------------------------------------------------------- */

static void check_fixture(const char *name) {
    llmlab_tokenizer *t = load_fixture(name);
    const char *kind = llmlab_tokenizer_kind(t);
    if (strncmp(name, "bytelevel", 9) == 0) cr_assert_str_eq(kind, "bpe-bytelevel", "%s", name);
    if (strncmp(name, "sp_", 3) == 0) cr_assert_str_eq(kind, "bpe-sentencepiece", "%s", name);
    tok_cases cs;
    tok_cases_load(&cs, name);
    for (int i = 0; i < cs.n; i++) {
        const tok_case *c = &cs.v[i];
        int line = c->line;
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ids;
            int n;
            llmlab_err e = {0};
            cr_assert_eq(llmlab_tokenizer_encode(t, c->text, c->text_len, sp, &ids, &n, &e), LLMLAB_OK, "%s", e.msg);
            expect_ids(cJSON_GetObjectItem(c->json, sp ? "ids_special" : "ids"), ids, n, name, line);
            if (sp) {
                expect_decode(t, ids, n, 0, c->decoded, c->decoded_len, name, line);
                expect_decode(t, ids, n, 1, c->decoded_skip, c->decoded_skip_len, name, line);
                size_t len;
                char *st = stream(t, ids, n, 0, &len);
                cr_assert(len == c->decoded_len && memcmp(st, c->decoded, len) == 0, "%s line %d: streamed %s", name,
                          line, hex(st, len));
                free(st);
            }
            free(ids);
        }
    }
    cr_assert_gt(cs.n, 20, "%s: only %d cases", name, cs.n);
    tok_cases_free(&cs);
    llmlab_tokenizer_free(t);
}

Test(tokenizer, fixtures_match_the_hf_library) {
    char **dirs;
    int n = fixture_dirs(&dirs);
    cr_assert_geq(n, 4, "only %d tokenizer fixtures under %s", n, TOK_DIR);
    for (int i = 0; i < n; i++) check_fixture(dirs[i]);
    free_dirs(dirs, n);
}

Test(tokenizer, facts) {
    llmlab_tokenizer *t = load_fixture("sp_llama2");
    cr_assert_eq(llmlab_tokenizer_bos(t), llmlab_tokenizer_token_id(t, "<s>"));
    cr_assert_eq(llmlab_tokenizer_eos(t), llmlab_tokenizer_token_id(t, "</s>"));
    cr_assert(llmlab_tokenizer_is_special(t, llmlab_tokenizer_bos(t)));
    cr_assert_eq(llmlab_tokenizer_token_id(t, "<0x0A>"), 13);
    cr_assert_eq(llmlab_tokenizer_token_id(t, "no such token"), -1);
    int v = llmlab_tokenizer_vocab_size(t), used = 0;
    for (int32_t id = 0; id < v; id++) { /* piece and token_id are inverse */
        const char *p = llmlab_tokenizer_piece(t, id);
        if (!p) continue;
        used++;
        cr_assert_eq(llmlab_tokenizer_token_id(t, p), id, "piece '%s'", p);
    }
    cr_assert_eq(used, v);
    cr_assert_null(llmlab_tokenizer_piece(t, v));
    cr_assert_null(llmlab_tokenizer_piece(t, -1));
    llmlab_tokenizer_free(t);

    t = load_fixture("bytelevel_llama3");
    cr_assert_eq(llmlab_tokenizer_bos(t), llmlab_tokenizer_token_id(t, "<|begin_of_text|>"));
    cr_assert_eq(llmlab_tokenizer_eos(t), llmlab_tokenizer_token_id(t, "<|end_of_text|>"));
    cr_assert_gt(llmlab_tokenizer_token_id(t, "<|eot_id|>"), 0);
    cr_assert(!llmlab_tokenizer_is_special(t, llmlab_tokenizer_token_id(t, "a")));
    llmlab_tokenizer_free(t);

    t = load_fixture("bytelevel_qwen2"); /* no BOS in the template: the named token */
    cr_assert_eq(llmlab_tokenizer_bos(t), llmlab_tokenizer_token_id(t, "<|endoftext|>"));
    cr_assert_eq(llmlab_tokenizer_eos(t), llmlab_tokenizer_token_id(t, "<|endoftext|>"));
    llmlab_tokenizer_free(t);
}

/* ---- random text --------------------------------------------------------------------- */

static uint32_t pick(llmlab_rng *r, uint32_t n) { return (uint32_t)(llmlab_rng_next(r) % n); }

/* Random valid UTF-8 (cap bytes of room): ASCII words, whitespace runs, every
 * plane (4-byte code points included), combining marks, contractions, and the
 * given extra strings (added tokens). */
static size_t random_utf8(llmlab_rng *r, char *buf, size_t cap, const char *const *extra, int n_extra) {
    static const uint32_t spaces[] = {' ', '\t', '\n', '\r', 0xA0, 0x3000, 0x2009, 0x85, 0x2028, 0x180E, 0x200B, 0xFEFF};
    static const char *const words[] = {"hello", " world", "don't", "'s", "'LL", "  return x", "1234567", "==", "\r\n"};
    size_t n = 0;
    int k = (int)pick(r, 60);
    for (int i = 0; i < k && n + 64 < cap; i++) {
        uint32_t c;
        switch (pick(r, 9)) {
        case 0: c = 0x20 + pick(r, 0x5F); break;
        case 1: c = spaces[pick(r, sizeof spaces / sizeof spaces[0])]; break;
        case 2: c = 0x80 + pick(r, 0x780); break;
        case 3: c = 0x800 + pick(r, 0xD000); break;
        case 4: c = 0x10000 + pick(r, 0x100000); break;
        case 5: c = 0x300 + pick(r, 0x70); break; /* combining marks */
        case 6: c = pick(r, 0x20); break;         /* controls, NUL included */
        case 7: {
            const char *w = words[pick(r, sizeof words / sizeof words[0])];
            memcpy(buf + n, w, strlen(w));
            n += strlen(w);
            continue;
        }
        default:
            if (n_extra) {
                const char *w = extra[pick(r, (uint32_t)n_extra)];
                memcpy(buf + n, w, strlen(w));
                n += strlen(w);
            }
            continue;
        }
        if (c >= 0xD800 && c < 0xE000) c = 0xE000 + (c & 0xFF); /* no surrogates */
        tok_put_utf8(buf, &n, c);
    }
    return n;
}

static size_t random_bytes(llmlab_rng *r, char *buf, size_t cap) {
    size_t n = pick(r, (uint32_t)(cap < 200 ? cap : 200));
    for (size_t i = 0; i < n; i++) buf[i] = (char)(pick(r, 4) == 0 ? 0 : pick(r, 256));
    return n;
}

/* Added tokens a round trip keeps (lstrip/rstrip ones swallow whitespace). */
static int lossless_added(const char *name, const char **out, int cap) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", TOK_DIR, name);
    char *text = fsu_read(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "added_tokens")) {
        if (cJSON_IsTrue(cJSON_GetObjectItem(e, "lstrip")) || cJSON_IsTrue(cJSON_GetObjectItem(e, "rstrip"))) continue;
        if (n < cap) out[n++] = strdup(cJSON_GetObjectItem(e, "content")->valuestring);
    }
    cJSON_Delete(root);
    return n;
}

static void roundtrip(const llmlab_tokenizer *t, const char *s, size_t n, const char *name, uint64_t seed) {
    int32_t *ids;
    int k;
    char *back;
    size_t bn;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_encode(t, s, n, 0, &ids, &k, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_tokenizer_decode(t, ids, k, 0, &back, &bn, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert(bn == n && memcmp(back, s, n) == 0, "%s (seed %llu): %s -> %s", name, (unsigned long long)seed,
              hex(s, n), hex(back, bn));
    free(back);
    free(ids);
}

/* decode(encode(.)) is a projection for a normalizing tokenizer: applying it twice
 * changes nothing, and the ids of the projected text are the ids of the text. */
static void projection(const llmlab_tokenizer *t, const char *s, size_t n, const char *name, uint64_t seed) {
    int32_t *a, *b;
    int na, nb;
    char *x, *y;
    size_t xn, yn;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_encode(t, s, n, 0, &a, &na, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_tokenizer_decode(t, a, na, 0, &x, &xn, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_tokenizer_encode(t, x, xn, 0, &b, &nb, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_tokenizer_decode(t, b, nb, 0, &y, &yn, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert(xn == yn && memcmp(x, y, xn) == 0, "%s (seed %llu): not idempotent on %s", name,
              (unsigned long long)seed, hex(s, n));
    cr_assert(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0, "%s (seed %llu): ids change on %s", name,
              (unsigned long long)seed, hex(s, n));
    free(a);
    free(b);
    free(x);
    free(y);
}

Test(tokenizer, bytelevel_round_trips_random_text_and_bytes) {
    llmlab_rng r;
    uint64_t seed = seeded_rng(&r, "tokenizer_roundtrip", 0);
    char **dirs;
    int nd = fixture_dirs(&dirs), tested = 0;
    char buf[8192];
    for (int i = 0; i < nd; i++) {
        if (strncmp(dirs[i], "bytelevel", 9) != 0) continue;
        tested++;
        const char *extra[64];
        int ne = lossless_added(dirs[i], extra, 64);
        /* Without the normalizer byte-level BPE is lossless: exact round trips. */
        llmlab_tokenizer *raw = load_variant(dirs[i], "normalizer", "null");
        llmlab_tokenizer *t = load_fixture(dirs[i]);
        for (int k = 0; k < 400; k++) {
            size_t n = random_utf8(&r, buf, sizeof buf, extra, ne);
            roundtrip(raw, buf, n, dirs[i], seed);
            projection(t, buf, n, dirs[i], seed);
            n = random_bytes(&r, buf, sizeof buf);
            roundtrip(raw, buf, n, dirs[i], seed);
            projection(t, buf, n, dirs[i], seed);
        }
        for (int k = 0; k < ne; k++) free((char *)extra[k]);
        llmlab_tokenizer_free(raw);
        llmlab_tokenizer_free(t);
    }
    cr_assert_geq(tested, 2);
    free_dirs(dirs, nd);
}

/* ---- streaming --------------------------------------------------------------------------- */

/* Random ids over the whole vocabulary (byte tokens, halves of characters,
 * specials) and ids of random text; streaming must equal one-shot decoding. */
static void stream_matches_decode(const llmlab_tokenizer *t, llmlab_rng *r, const char *name, uint64_t seed) {
    int v = llmlab_tokenizer_vocab_size(t);
    int32_t ids[64];
    char buf[4096];
    for (int k = 0; k < 300; k++) {
        int n = 0;
        if (k % 3 == 2) {
            int32_t *enc;
            size_t len = random_utf8(r, buf, sizeof buf, NULL, 0);
            llmlab_err e = {0};
            cr_assert_eq(llmlab_tokenizer_encode(t, buf, len, 1, &enc, &n, &e), LLMLAB_OK, "%s", e.msg);
            if (n > 64) n = 64;
            memcpy(ids, enc, (size_t)n * sizeof *ids);
            free(enc);
        } else {
            n = (int)pick(r, 40);
            for (int i = 0; i < n; i++) {
                do ids[i] = (int32_t)pick(r, (uint32_t)v);
                while (!llmlab_tokenizer_piece(t, ids[i]));
            }
        }
        for (int skip = 0; skip < 2; skip++) {
            char *one;
            size_t on, sn;
            llmlab_err e = {0};
            cr_assert_eq(llmlab_tokenizer_decode(t, ids, n, skip, &one, &on, &e), LLMLAB_OK, "%s", e.msg);
            char *st = stream(t, ids, n, skip, &sn);
            cr_assert(sn == on && memcmp(st, one, on) == 0, "%s (seed %llu) skip=%d: stream %s != decode %s", name,
                      (unsigned long long)seed, skip, hex(st, sn), hex(one, on));
            free(st);
            free(one);
        }
    }
}

/* Decoder chains beyond the fixtures' (each a place where per-token and joined
 * stages differ). */
static const char *const decoder_variants[] = {
    "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\",\"split\":true}",
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Metaspace\",\"replacement\":"
    "\"\\u2581\",\"prepend_scheme\":\"first\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":2,\"stop\":1}]}",
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\","
    "\"content\":\"\\u2581\",\"start\":2,\"stop\":2},{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\\u2581\"},"
    "\"content\":\"_\"},{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"never\"}]}",
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"ByteFallback\"},{\"type\":\"Replace\","
    "\"pattern\":{\"Regex\":\"\\u2581+\"},\"content\":\" \"}]}",
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a|\"},\"content\":\"<>\"},"
    "{\"type\":\"ByteLevel\"},{\"type\":\"Strip\",\"content\":\"e\",\"start\":1,\"stop\":3}]}",
    "null",
};

Test(tokenizer, streaming_equals_one_shot_decode) {
    llmlab_rng r;
    uint64_t seed = seeded_rng(&r, "tokenizer_stream", 1);
    char **dirs;
    int nd = fixture_dirs(&dirs);
    for (int i = 0; i < nd; i++) {
        llmlab_tokenizer *t = load_fixture(dirs[i]);
        stream_matches_decode(t, &r, dirs[i], seed);
        llmlab_tokenizer_free(t);
    }
    free_dirs(dirs, nd);
    for (size_t i = 0; i < sizeof decoder_variants / sizeof decoder_variants[0]; i++) {
        llmlab_tokenizer *t = load_variant("sp_llama2", "decoder", decoder_variants[i]);
        stream_matches_decode(t, &r, decoder_variants[i], seed);
        llmlab_tokenizer_free(t);
    }
}

/* Decodes pieces (by name) with a decoder variant. */
static void expect_pieces(const char *decoder, const char *const *pieces, int n, const char *want) {
    llmlab_tokenizer *t = load_variant("sp_llama2", "decoder", decoder);
    int32_t ids[16];
    for (int i = 0; i < n; i++) {
        ids[i] = llmlab_tokenizer_token_id(t, pieces[i]);
        cr_assert_geq(ids[i], 0, "no token '%s'", pieces[i]);
    }
    expect_decode(t, ids, n, 0, want, strlen(want), decoder, 0);
    size_t sn;
    char *st = stream(t, ids, n, 0, &sn);
    cr_assert(sn == strlen(want) && memcmp(st, want, sn) == 0, "streamed %s", hex(st, sn));
    free(st);
    llmlab_tokenizer_free(t);
}

Test(tokenizer, decoder_rules_as_hf) {
    /* Values from the HF library: Metaspace drops every replacement char of the
     * first token; Strip acts per token; ByteFallback groups valid bytes into one
     * token (so "A" + U+2581 is the first token here). */
    const char *const ms[] = {"\xe2\x96\x81", "a", "\xe2\x96\x81" "b"};
    expect_pieces(decoder_variants[0], ms, 3, "a b");
    const char *bf_chain = "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":"
                           "\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"first\"},{\"type\":"
                           "\"Strip\",\"content\":\" \",\"start\":2,\"stop\":0}]}";
    const char *const bf1[] = {"<0xE2>", "<0x96>", "<0x81>", "a", "<0x41>"};
    expect_pieces(bf_chain, bf1, 5, "aA");
    const char *const bf2[] = {"<0x41>", "<0xE2>", "<0x96>", "<0x81>", "a", "<0x41>"};
    expect_pieces(bf_chain, bf2, 6, "AaA");
    const char *const none[] = {"a", "<s>", "\xe2\x96\x81" "b"};
    expect_pieces("null", none, 3, "a <s> \xe2\x96\x81" "b");
}

/* ---- concurrency, long words --------------------------------------------------------- */

struct enc_job {
    const llmlab_tokenizer *t; /* shared tokenizer */
    const char *text;          /* shared input */
    size_t len;                /* its length */
    int32_t *ids;              /* result */
    int n;                     /* its count */
};

static void *enc_thread(void *arg) {
    struct enc_job *j = arg;
    for (int rep = 0; rep < 5; rep++) {
        free(j->ids);
        llmlab_err e = {0};
        if (llmlab_tokenizer_encode(j->t, j->text, j->len, 1, &j->ids, &j->n, &e) != LLMLAB_OK) j->n = -1;
    }
    return NULL;
}

Test(tokenizer, one_tokenizer_many_threads) {
    llmlab_rng r;
    seeded_rng(&r, "tokenizer_threads", 2);
    llmlab_tokenizer *t = load_fixture("bytelevel_llama3");
    static char text[200000];
    size_t len = 0;
    while (len + 8192 < sizeof text) len += random_utf8(&r, text + len, 8192, NULL, 0);
    int32_t *want;
    int wn;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_encode(t, text, len, 1, &want, &wn, &e), LLMLAB_OK);
    struct enc_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct enc_job){t, text, len, NULL, 0};
        pthread_create(&th[i], NULL, enc_thread, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert(jobs[i].n == wn && memcmp(jobs[i].ids, want, (size_t)wn * sizeof *want) == 0, "thread %d differs", i);
        free(jobs[i].ids);
    }
    free(want);
    llmlab_tokenizer_free(t);
}

Test(tokenizer, long_single_word_is_fast_enough) {
    /* SentencePiece-style files have no pre-tokenizer: a text without spaces is
     * one word; the heap-based merge keeps this O(n log n). */
    llmlab_tokenizer *t = load_fixture("sp_llama2");
    static const char sentence[] = "The quick brown fox jumps over the lazy dog; return the value. ";
    size_t n = 400000, m = sizeof sentence - 1;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = sentence[i % m];
    int32_t *ids;
    int k;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_encode(t, s, n, 0, &ids, &k, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_lt(k, (int)n / 2, "%d tokens for %zu letters: merges did not happen", k, n);
    char *back;
    size_t bn;
    cr_assert_eq(llmlab_tokenizer_decode(t, ids, k, 1, &back, &bn, &e), LLMLAB_OK);
    cr_assert(bn == n && memcmp(back, s, n) == 0);
    free(back);
    free(ids);
    free(s);
    llmlab_tokenizer_free(t);
}

/* ---- errors ---------------------------------------------------------------------------- */

/* Writes text as a tokenizer.json in a temp dir and loads it expecting code and
 * a message containing needle. */
static void expect_load_error(const char *text, size_t len, llmlab_status code, const char *needle) {
    char *dir = fsu_mkdtemp();
    char *path = fsu_join(dir, "tok.json");
    cr_assert_eq(fsu_write(path, text, len), 0);
    llmlab_tokenizer *t = (llmlab_tokenizer *)1;
    llmlab_err e = {0};
    llmlab_status s = llmlab_tokenizer_load_json(&t, path, &e);
    cr_assert_eq(s, code, "status %d (want %d): %s", s, code, e.msg);
    cr_assert_null(t);
    cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
    cr_assert(strstr(e.msg, "tok.json"), "message '%s' does not name the file", e.msg);
    fsu_rmtree(dir);
    free(path);
    free(dir);
}

#define MODEL(extra) "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}," extra "}}"
#define ERR(text, code, needle) expect_load_error(text, strlen(text), code, needle)

Test(tokenizer, malformed_files_name_the_problem) {
    char path[1024];
    snprintf(path, sizeof path, "%s/sp_llama2/tokenizer.json", TOK_DIR);
    size_t n;
    char *good = fsu_read(path, &n);
    expect_load_error(good, n / 2, LLMLAB_EFORMAT, "not valid JSON"); /* truncated */
    free(good);
    ERR("[1, 2]", LLMLAB_EFORMAT, "top level");
    ERR("{\"version\": \"1.0\"}", LLMLAB_EFORMAT, "'model' is missing");
    ERR("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", LLMLAB_EUNSUPPORTED, "'WordPiece'");
    ERR("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", LLMLAB_EUNSUPPORTED, "'Unigram'");
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":[1,2],\"merges\":[]}}", LLMLAB_EFORMAT, "model.vocab must be an object");
    ERR(MODEL("\"merges\":[\"a zz\"]"), LLMLAB_EFORMAT, "model.merges[0]: token 'zz' is not in the vocabulary");
    ERR(MODEL("\"merges\":[\"a b\",[\"b\",\"a\"]]"), LLMLAB_EFORMAT, "model.merges[1]: token 'ba' is not in the vocabulary");
    ERR(MODEL("\"merges\":[\"a b c\"]"), LLMLAB_EFORMAT, "model.merges[0]");
    ERR(MODEL("\"merges\":[3]"), LLMLAB_EFORMAT, "model.merges[0]");
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", LLMLAB_EFORMAT, "id 0");
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}}", LLMLAB_EFORMAT, "model.vocab['a']");
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", LLMLAB_EFORMAT, "model.vocab['a']");
    ERR(MODEL("\"merges\":[],\"dropout\":0.1"), LLMLAB_EUNSUPPORTED, "dropout");
    /* a token holding U+0000 cannot be represented: refused, not loaded as a shorter token */
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\u0000b\":0},\"merges\":[]}}", LLMLAB_EUNSUPPORTED, "U+0000");
    /* an escaped backslash followed by the text u0000 is an ordinary token */
    ERR("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\\\\u0000\":0},\"merges\":[\"x y\"]}}", LLMLAB_EFORMAT,
        "model.merges[0]");
}

Test(tokenizer, malformed_pipeline_stages_name_the_problem) {
    const char *m = MODEL("\"merges\":[\"a b\"]");
    char buf[2048];
    struct {
        const char *key, *value;
        llmlab_status code;
        const char *needle;
    } cases[] = {
        {"normalizer", "{\"type\":\"BertNormalizer\"}", LLMLAB_EUNSUPPORTED, "normalizer type 'BertNormalizer' is not supported"},
        {"normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Nope\"}]}",
         LLMLAB_EUNSUPPORTED, "normalizer.normalizers[1]"},
        {"pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(ab\"},\"behavior\":\"Isolated\"}",
         LLMLAB_EFORMAT, "offset"},
        {"pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}",
         LLMLAB_EFORMAT, "Sideways"},
        {"pre_tokenizer", "{\"type\":\"BertPreTokenizer\"}", LLMLAB_EUNSUPPORTED, "'BertPreTokenizer'"},
        {"pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"ab\"}", LLMLAB_EFORMAT, "single character"},
        {"decoder", "{\"type\":\"WordPiece\"}", LLMLAB_EUNSUPPORTED, "decoder type 'WordPiece'"},
        {"decoder", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[\"},\"content\":\"\"}", LLMLAB_EFORMAT, "bad regex"},
        {"post_processor", "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
                           "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{}}",
         LLMLAB_EFORMAT, "'<s>'"},
        {"post_processor", "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"x\"}},"
                           "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"x\":{\"ids\":[99]}}}",
         LLMLAB_EFORMAT, "99 is not a token id"},
        {"added_tokens", "[{\"id\":5}]", LLMLAB_EFORMAT, "added_tokens[0].content is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, "{\"%s\": %s, %s", cases[i].key, cases[i].value, m + 1);
        ERR(buf, cases[i].code, cases[i].needle);
    }
}

Test(tokenizer, missing_unk_token_fails_when_needed) {
    const char *text = MODEL("\"merges\":[\"a b\"],\"unk_token\":\"<unk>\"");
    char *dir = fsu_mkdtemp();
    char *path = fsu_join(dir, "tok.json");
    cr_assert_eq(fsu_write(path, text, strlen(text)), 0);
    llmlab_tokenizer *t;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_load_json(&t, path, &e), LLMLAB_OK, "%s", e.msg);
    int32_t *ids;
    int n;
    cr_assert_eq(llmlab_tokenizer_encode(t, "ab", 2, 0, &ids, &n, &e), LLMLAB_OK);
    cr_assert(n == 1 && ids[0] == 2);
    free(ids);
    cr_assert_eq(llmlab_tokenizer_encode(t, "abc", 3, 0, &ids, &n, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "'<unk>'"), "%s", e.msg);
    int32_t bad = 7;
    char *out;
    cr_assert_eq(llmlab_tokenizer_decode(t, &bad, 1, 0, &out, NULL, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, "7"), "%s", e.msg);
    llmlab_tokenizer_free(t);
    fsu_rmtree(dir);
    free(path);
    free(dir);
}

/* ---- the byte fallback ------------------------------------------------------------------- */

Test(tokenizer, byte_fallback_round_trip) {
    llmlab_rng r;
    uint64_t seed = seeded_rng(&r, "tokenizer_bytes", 3);
    char *dir = fsu_mkdtemp();
    llmlab_tokenizer *t;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_load_dir(&t, dir, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(llmlab_tokenizer_kind(t), "bytes");
    cr_assert_eq(llmlab_tokenizer_vocab_size(t), 256);
    cr_assert_eq(llmlab_tokenizer_bos(t), -1);
    cr_assert_eq(llmlab_tokenizer_eos(t), -1);
    cr_assert_eq(llmlab_tokenizer_token_id(t, "A"), 65);
    cr_assert_str_eq(llmlab_tokenizer_piece(t, 66), "B");
    char buf[256];
    for (int k = 0; k < 200; k++) {
        size_t n = random_bytes(&r, buf, sizeof buf);
        int32_t *ids;
        int ni;
        cr_assert_eq(llmlab_tokenizer_encode(t, buf, n, 1, &ids, &ni, &e), LLMLAB_OK);
        cr_assert_eq((size_t)ni, n);
        for (size_t i = 0; i < n; i++) cr_assert_eq(ids[i], (unsigned char)buf[i]);
        char *back;
        size_t bn;
        cr_assert_eq(llmlab_tokenizer_decode(t, ids, ni, 0, &back, &bn, &e), LLMLAB_OK);
        cr_assert(bn == n && memcmp(back, buf, n) == 0, "seed %llu", (unsigned long long)seed);
        size_t sn;
        char *st = stream(t, ids, ni, 0, &sn);
        cr_assert(sn == n && memcmp(st, buf, n) == 0, "seed %llu: streamed differently", (unsigned long long)seed);
        free(st);
        free(back);
        free(ids);
    }
    int32_t big[2] = {300, 'x'};
    char *out;
    size_t on;
    cr_assert_eq(llmlab_tokenizer_decode(t, big, 2, 0, &out, &on, &e), LLMLAB_OK);
    cr_assert_str_eq(out, "<|300|>x");
    free(out);
    llmlab_tokenizer_free(t);

    /* A directory with tokenizer.json gets the real tokenizer. */
    char src[1024];
    snprintf(src, sizeof src, "%s/sp_llama2/tokenizer.json", TOK_DIR);
    size_t n;
    char *json = fsu_read(src, &n);
    char *dst = fsu_join(dir, "tokenizer.json");
    cr_assert_eq(fsu_write(dst, json, n), 0);
    cr_assert_eq(llmlab_tokenizer_load_dir(&t, dir, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_str_eq(llmlab_tokenizer_kind(t), "bpe-sentencepiece");
    llmlab_tokenizer_free(t);
    free(json);
    free(dst);
    fsu_rmtree(dir);
    free(dir);
}
