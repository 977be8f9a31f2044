/* gguf_vocab.c - a GGUF file's vocabulary (tokenizer.ggml.*) as an llmlab tokenizer.
 *
 * Like Hugging Face's converters, this builds the equivalent tokenizer.json tree
 * in memory and hands it to llmlab_tokenizer_from_json: one pipeline for both
 * sources, so a GGUF vocabulary encodes exactly as the tokenizer.json it came
 * from.  The mapping (docs/gguf.md):
 *
 *   "gpt2"   byte-level BPE: tokens + merges ("a b"), pre-tokenizer chosen by
 *            tokenizer.ggml.pre, ByteLevel decoder;
 *   "llama"  SentencePiece-style BPE with byte fallback: merges are regenerated
 *            from the vocabulary in score order (GGUF stores scores, not merges),
 *            metaspace normalizer + decoder chain;
 *   control and unknown tokens become special added tokens, user-defined ones
 *   non-special added tokens; BOS/EOS come from add_bos_token / add_eos_token.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

#define SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* GGUF token types (llama.cpp's llama_token_type). */
enum { TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The Split regexes of llama.cpp's "llama-bpe" and "qwen2" pre-tokenizers, as
 * their tokenizer.json files write them (tools/make_tokenizer_fixtures.py). */
#define LLAMA3_REGEX                                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"   \
    "\\s+(?!\\S)|\\s+"

typedef enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2 } pre_kind;

static const struct {
    const char *name; /* tokenizer.ggml.pre */
    pre_kind kind;
} pre_names[] = {{"default", PRE_GPT2}, {"gpt-2", PRE_GPT2}, {"llama-bpe", PRE_LLAMA3}, {"llama3", PRE_LLAMA3},
                 {"qwen2", PRE_QWEN2}};
#define N_PRE (sizeof pre_names / sizeof pre_names[0])

/* ---- the vocabulary ---------------------------------------------------------------------- */

typedef struct {
    const llmlab_gguf *g;
    const char *path;          /* for messages */
    int spm;                   /* 1 for "llama", 0 for "gpt2" */
    int32_t n;                 /* tokens */
    const char **tok;          /* [n] token strings (NUL-terminated, in the GGUF object) */
    size_t *len;               /* [n] their byte lengths */
    int *type;                 /* [n] token types (TT_NORMAL when the file has none) */
    double *score;             /* [n] scores (0 when the file has none) */
    int32_t *slot;             /* [cap] open-addressing table: token id or -1 */
    size_t cap;                /* table size, a power of two >= 2n */
    int32_t bos, eos, unk;     /* ids or -1 */
    int add_bos, add_eos, add_space_prefix;
    llmlab_err *err;
} vocab;

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The id of the token with these bytes, or -1. */
static int32_t lookup(const vocab *v, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & (v->cap - 1);; i = (i + 1) & (v->cap - 1)) {
        int32_t id = v->slot[i];
        if (id < 0) return -1;
        if (v->len[id] == n && !memcmp(v->tok[id], s, n)) return id;
    }
}

static void free_vocab(vocab *v) {
    free(v->tok);
    free(v->len);
    free(v->type);
    free(v->score);
    free(v->slot);
}

static llmlab_status fmt_err(const vocab *v, const char *what) {
    return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: %s", v->path, what);
}

static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k;
    }
    return 1;
}

/* tokenizer.ggml.tokens: strings, valid UTF-8 without NUL (JSON strings), unique. */
static llmlab_status read_tokens(vocab *v) {
    const llmlab_gguf_value *t = llmlab_gguf_get(v->g, "tokenizer.ggml.tokens");
    if (!t) return fmt_err(v, "no tokenizer.ggml.tokens array: this GGUF file carries no vocabulary");
    if (llmlab_gguf_value_type(t) != LLMLAB_GGUF_ARRAY || llmlab_gguf_arr_type(t) != LLMLAB_GGUF_STRING)
        return fmt_err(v, "tokenizer.ggml.tokens is not an array of strings");
    uint64_t n = llmlab_gguf_arr_len(t);
    if (n == 0 || n >= (1u << 30))
        return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: tokenizer.ggml.tokens holds %llu tokens", v->path,
                              (unsigned long long)n);
    v->n = (int32_t)n;
    for (v->cap = 16; v->cap < 2 * n; v->cap *= 2) {}
    v->tok = malloc(n * sizeof *v->tok);
    v->len = malloc(n * sizeof *v->len);
    v->type = malloc(n * sizeof *v->type);
    v->score = calloc(n, sizeof *v->score);
    v->slot = malloc(v->cap * sizeof *v->slot);
    if (!v->tok || !v->len || !v->type || !v->score || !v->slot)
        return llmlab_err_set(v->err, LLMLAB_ENOMEM, "%s: out of memory", v->path);
    memset(v->slot, 0xFF, v->cap * sizeof *v->slot); /* every slot -1 */
    for (int32_t i = 0; i < v->n; i++) {
        v->tok[i] = llmlab_gguf_arr_str(t, (uint64_t)i, &v->len[i]);
        v->type[i] = TT_NORMAL;
        if (memchr(v->tok[i], 0, v->len[i]) || !utf8_valid((const unsigned char *)v->tok[i], v->len[i]))
            return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: token %d is not valid UTF-8 without NUL bytes", v->path,
                                  (int)i);
        size_t h = hash_bytes(v->tok[i], v->len[i]) & (v->cap - 1);
        for (; v->slot[h] >= 0; h = (h + 1) & (v->cap - 1))
            if (v->len[v->slot[h]] == v->len[i] && !memcmp(v->tok[v->slot[h]], v->tok[i], v->len[i]))
                return llmlab_err_set(v->err, LLMLAB_EUNSUPPORTED,
                                      "%s: tokens %d and %d are both '%.100s' (a tokenizer.json vocabulary cannot "
                                      "hold duplicates)",
                                      v->path, (int)v->slot[h], (int)i, v->tok[i]);
        v->slot[h] = i;
    }
    return LLMLAB_OK;
}

/* An optional per-token array (token_type, scores) of exactly n numbers, or NULL. */
static llmlab_status per_token(vocab *v, const char *key, const llmlab_gguf_value **out) {
    *out = llmlab_gguf_get(v->g, key);
    if (!*out) return LLMLAB_OK;
    if (llmlab_gguf_value_type(*out) != LLMLAB_GGUF_ARRAY)
        return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: %s is not an array", v->path, key);
    llmlab_gguf_type et = llmlab_gguf_arr_type(*out);
    if (et == LLMLAB_GGUF_STRING || et == LLMLAB_GGUF_ARRAY || et == LLMLAB_GGUF_BOOL)
        return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: %s is an array of %ss, not of numbers", v->path, key,
                              llmlab_gguf_type_name(et));
    if (llmlab_gguf_arr_len(*out) != (uint64_t)v->n)
        return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: %s has %llu entries for %d tokens", v->path, key,
                              (unsigned long long)llmlab_gguf_arr_len(*out), (int)v->n);
    return LLMLAB_OK;
}

static llmlab_status read_types_scores(vocab *v) {
    const llmlab_gguf_value *tt, *sc;
    llmlab_status s = per_token(v, "tokenizer.ggml.token_type", &tt);
    if (!s) s = per_token(v, "tokenizer.ggml.scores", &sc);
    if (s) return s;
    for (int32_t i = 0; tt && i < v->n; i++) {
        int64_t x = -1;
        if (llmlab_gguf_arr_i64(tt, (uint64_t)i, &x) || x < TT_UNDEFINED || x > TT_BYTE)
            return llmlab_err_set(v->err, LLMLAB_EFORMAT,
                                  "%s: tokenizer.ggml.token_type[%d] is not a token type (0..6)", v->path, (int)i);
        v->type[i] = (int)x;
    }
    for (int32_t i = 0; sc && i < v->n; i++) {
        if (llmlab_gguf_arr_f64(sc, (uint64_t)i, &v->score[i])) v->score[i] = 0;
        if (isnan(v->score[i])) v->score[i] = -INFINITY; /* NaN would break the sort order */
    }
    return LLMLAB_OK;
}

/* An optional token id key: *id = -1 when absent; out of range is an error. */
static llmlab_status token_id(vocab *v, const char *key, int32_t *id) {
    *id = -1;
    if (llmlab_gguf_find_key(v->g, key) < 0) return LLMLAB_OK;
    int64_t x;
    llmlab_status s = llmlab_gguf_get_i64(v->g, key, &x, v->err);
    if (s) return s;
    if (x < 0 || x >= v->n)
        return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: %s = %lld is outside the vocabulary (%d tokens)", v->path,
                              key, (long long)x, (int)v->n);
    *id = (int32_t)x;
    return LLMLAB_OK;
}

static llmlab_status opt_bool(vocab *v, const char *key, int dflt, int *out) {
    *out = dflt;
    if (llmlab_gguf_find_key(v->g, key) < 0) return LLMLAB_OK;
    return llmlab_gguf_get_bool(v->g, key, out, v->err);
}

static llmlab_status read_specials(vocab *v) {
    llmlab_status s = token_id(v, "tokenizer.ggml.bos_token_id", &v->bos);
    if (!s) s = token_id(v, "tokenizer.ggml.eos_token_id", &v->eos);
    if (!s) s = token_id(v, "tokenizer.ggml.unknown_token_id", &v->unk);
    if (!s) s = opt_bool(v, "tokenizer.ggml.add_bos_token", v->spm, &v->add_bos);
    if (!s) s = opt_bool(v, "tokenizer.ggml.add_eos_token", 0, &v->add_eos);
    if (!s) s = opt_bool(v, "tokenizer.ggml.add_space_prefix", 1, &v->add_space_prefix);
    if (s) return s;
    /* A default add_bos_token (llama: true) without a BOS id adds nothing; an
     * explicit one must name its token. */
    if (v->add_bos && v->bos < 0) {
        if (llmlab_gguf_find_key(v->g, "tokenizer.ggml.add_bos_token") >= 0)
            return fmt_err(v, "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing");
        v->add_bos = 0;
    }
    if (v->add_eos && v->eos < 0)
        return fmt_err(v, "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing");
    for (int32_t i = 0; v->spm && v->unk < 0 && i < v->n; i++)
        if (v->type[i] == TT_UNKNOWN) v->unk = i;
    return LLMLAB_OK;
}

/* ---- JSON building ----------------------------------------------------------------------- */

/* cJSON reports allocation failure by returning NULL; `ok` collects it. */
typedef struct {
    int ok;
} jb;

static cJSON *chk(jb *b, cJSON *x) {
    if (!x) b->ok = 0;
    return x;
}

static void add(jb *b, cJSON *obj, const char *key, cJSON *item) {
    if (!item || !cJSON_AddItemToObject(obj, key, item)) {
        b->ok = 0;
        cJSON_Delete(item);
    }
}

static void push(jb *b, cJSON *arr, cJSON *item) {
    if (!item || !cJSON_AddItemToArray(arr, item)) {
        b->ok = 0;
        cJSON_Delete(item);
    }
}

static cJSON *typed(jb *b, const char *type) {
    cJSON *o = chk(b, cJSON_CreateObject());
    if (o) add(b, o, "type", cJSON_CreateString(type));
    return o;
}

static cJSON *str_pattern(jb *b, const char *kind, const char *text) {
    cJSON *o = chk(b, cJSON_CreateObject());
    if (o) add(b, o, kind, cJSON_CreateString(text));
    return o;
}

static cJSON *replace(jb *b, const char *from, const char *to) {
    cJSON *o = typed(b, "Replace");
    if (!o) return NULL;
    add(b, o, "pattern", str_pattern(b, "String", from));
    add(b, o, "content", cJSON_CreateString(to));
    return o;
}

static cJSON *byte_level(jb *b, int use_regex) {
    cJSON *o = typed(b, "ByteLevel");
    if (!o) return NULL;
    add(b, o, "add_prefix_space", cJSON_CreateFalse());
    add(b, o, "trim_offsets", cJSON_CreateTrue());
    add(b, o, "use_regex", cJSON_CreateBool(use_regex));
    return o;
}

static cJSON *byte_level_decoder(jb *b) {
    cJSON *o = typed(b, "ByteLevel");
    if (!o) return NULL;
    add(b, o, "add_prefix_space", cJSON_CreateTrue());
    add(b, o, "trim_offsets", cJSON_CreateTrue());
    add(b, o, "use_regex", cJSON_CreateTrue());
    return o;
}

/* Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)]. */
static cJSON *split_then_bytes(jb *b, const char *regex) {
    cJSON *seq = typed(b, "Sequence"), *list = chk(b, cJSON_CreateArray()), *split = typed(b, "Split");
    if (split) {
        add(b, split, "pattern", str_pattern(b, "Regex", regex));
        add(b, split, "behavior", cJSON_CreateString("Isolated"));
        add(b, split, "invert", cJSON_CreateFalse());
    }
    if (list) {
        push(b, list, split);
        push(b, list, byte_level(b, 0));
    } else cJSON_Delete(split);
    if (seq) add(b, seq, "pretokenizers", list);
    else cJSON_Delete(list);
    return seq;
}

static cJSON *added_token(jb *b, const vocab *v, int32_t id, int special) {
    cJSON *o = chk(b, cJSON_CreateObject());
    if (!o) return NULL;
    add(b, o, "id", cJSON_CreateNumber(id));
    add(b, o, "content", cJSON_CreateString(v->tok[id]));
    add(b, o, "single_word", cJSON_CreateFalse());
    add(b, o, "lstrip", cJSON_CreateFalse());
    add(b, o, "rstrip", cJSON_CreateFalse());
    add(b, o, "normalized", cJSON_CreateFalse());
    add(b, o, "special", cJSON_CreateBool(special));
    return o;
}

static cJSON *added_tokens(jb *b, const vocab *v) {
    cJSON *a = chk(b, cJSON_CreateArray());
    for (int32_t i = 0; a && i < v->n; i++) {
        int t = v->type[i];
        if (t == TT_CONTROL || t == TT_UNKNOWN || t == TT_USER) push(b, a, added_token(b, v, i, t != TT_USER));
    }
    return a;
}

/* {"SpecialToken": {"id": piece, "type_id": t}} or {"Sequence": {"id": "A", ...}}. */
static cJSON *template_item(jb *b, const char *kind, const char *id, int type_id) {
    cJSON *o = chk(b, cJSON_CreateObject()), *in = chk(b, cJSON_CreateObject());
    if (in) {
        add(b, in, "id", cJSON_CreateString(id));
        add(b, in, "type_id", cJSON_CreateNumber(type_id));
    }
    if (o) add(b, o, kind, in);
    else cJSON_Delete(in);
    return o;
}

/* [BOS] $seq [EOS] appended to arr. */
static void template_part(jb *b, const vocab *v, cJSON *arr, const char *seq, int type_id) {
    if (v->add_bos) push(b, arr, template_item(b, "SpecialToken", v->tok[v->bos], type_id));
    push(b, arr, template_item(b, "Sequence", seq, type_id));
    if (v->add_eos) push(b, arr, template_item(b, "SpecialToken", v->tok[v->eos], type_id));
}

static void special_entry(jb *b, const vocab *v, cJSON *map, int32_t id) {
    if (cJSON_GetObjectItemCaseSensitive(map, v->tok[id])) return; /* BOS == EOS */
    cJSON *o = chk(b, cJSON_CreateObject()), *ids = chk(b, cJSON_CreateArray()), *toks = chk(b, cJSON_CreateArray());
    if (ids) push(b, ids, cJSON_CreateNumber(id));
    if (toks) push(b, toks, cJSON_CreateString(v->tok[id]));
    if (o) {
        add(b, o, "id", cJSON_CreateString(v->tok[id]));
        add(b, o, "ids", ids);
        add(b, o, "tokens", toks);
        add(b, map, v->tok[id], o);
    } else {
        cJSON_Delete(ids);
        cJSON_Delete(toks);
    }
}

/* TemplateProcessing adding BOS/EOS, or JSON null when neither is added. */
static cJSON *post_processor(jb *b, const vocab *v) {
    if (!v->add_bos && !v->add_eos) return chk(b, cJSON_CreateNull());
    cJSON *o = typed(b, "TemplateProcessing"), *single = chk(b, cJSON_CreateArray()), *pair = chk(b, cJSON_CreateArray());
    cJSON *map = chk(b, cJSON_CreateObject());
    if (single) template_part(b, v, single, "A", 0);
    if (pair) {
        template_part(b, v, pair, "A", 0);
        template_part(b, v, pair, "B", 1);
    }
    if (map && v->add_bos) special_entry(b, v, map, v->bos);
    if (map && v->add_eos) special_entry(b, v, map, v->eos);
    if (o) {
        add(b, o, "single", single);
        add(b, o, "pair", pair);
        add(b, o, "special_tokens", map);
    } else {
        cJSON_Delete(single);
        cJSON_Delete(pair);
        cJSON_Delete(map);
    }
    return o;
}

/* model.vocab: keys refer to the GGUF object's strings (it outlives the tree). */
static cJSON *vocab_object(jb *b, const vocab *v) {
    cJSON *o = chk(b, cJSON_CreateObject());
    for (int32_t i = 0; o && i < v->n; i++) {
        cJSON *num = cJSON_CreateNumber(i);
        if (!num || !cJSON_AddItemToObjectCS(o, v->tok[i], num)) {
            b->ok = 0;
            cJSON_Delete(num);
            break;
        }
    }
    return o;
}

static cJSON *merge_pair(jb *b, const vocab *v, int32_t l, int32_t r) {
    cJSON *m = chk(b, cJSON_CreateArray());
    if (m) {
        push(b, m, cJSON_CreateStringReference(v->tok[l]));
        push(b, m, cJSON_CreateStringReference(v->tok[r]));
    }
    return m;
}

/* ---- merges ------------------------------------------------------------------------------ */

/* "gpt2": tokenizer.ggml.merges "left right" (split at the first space after the
 * first byte, as llama.cpp does); left, right and left+right must be tokens. */
static llmlab_status gpt2_merges(jb *b, const vocab *v, cJSON *out) {
    const llmlab_gguf_value *m = llmlab_gguf_get(v->g, "tokenizer.ggml.merges");
    if (!m) return fmt_err(v, "model 'gpt2' needs tokenizer.ggml.merges, which is missing");
    if (llmlab_gguf_value_type(m) != LLMLAB_GGUF_ARRAY || llmlab_gguf_arr_type(m) != LLMLAB_GGUF_STRING)
        return fmt_err(v, "tokenizer.ggml.merges is not an array of strings");
    char *joined = NULL;
    size_t cap = 0;
    llmlab_status s = LLMLAB_OK;
    for (uint64_t i = 0; i < llmlab_gguf_arr_len(m) && !s && b->ok; i++) {
        size_t len;
        const char *t = llmlab_gguf_arr_str(m, i, &len);
        const char *sp = len > 1 ? memchr(t + 1, ' ', len - 1) : NULL;
        if (!sp) {
            s = llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: tokenizer.ggml.merges[%llu] ('%.100s') is not 'left right'",
                               v->path, (unsigned long long)i, t);
            break;
        }
        size_t ll = (size_t)(sp - t), rl = len - ll - 1;
        int32_t l = lookup(v, t, ll), r = lookup(v, sp + 1, rl);
        if (ll + rl > cap) {
            char *nj = realloc(joined, cap = 2 * (ll + rl));
            if (!nj) {
                s = llmlab_err_set(v->err, LLMLAB_ENOMEM, "%s: out of memory", v->path);
                break;
            }
            joined = nj;
        }
        memcpy(joined, t, ll);
        memcpy(joined + ll, sp + 1, rl);
        const char *missing = l < 0 ? "its left part" : r < 0 ? "its right part" : lookup(v, joined, ll + rl) < 0 ? "the merged token" : NULL;
        if (missing)
            s = llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: tokenizer.ggml.merges[%llu] ('%.100s'): %s is not a token",
                               v->path, (unsigned long long)i, t, missing);
        else push(b, out, merge_pair(b, v, l, r));
    }
    free(joined);
    return s;
}

/* Mergeable tokens (normal, undefined, user-defined) ordered by descending score, ties by id. */
typedef struct {
    double score;
    int32_t id;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
    int32_t l, r;
} id_pair;

static int cmp_pair(const void *a, const void *b) {
    const id_pair *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

static int mergeable(int type) { return type == TT_NORMAL || type == TT_UNDEFINED || type == TT_USER; }

/* "llama": the merges a SentencePiece vocabulary implies (the rule of
 * tools/make_tokenizer_fixtures.py, spm_merges, and of Hugging Face's
 * SentencePiece converter): for each mergeable token in score order, every split
 * at a code point boundary into two tokens, ordered by (left id, right id). */
static llmlab_status spm_merges(jb *b, const vocab *v, cJSON *out) {
    scored *order = malloc((size_t)v->n * sizeof *order);
    size_t longest = 1, k = 0;
    for (int32_t i = 0; i < v->n; i++)
        if (v->len[i] > longest) longest = v->len[i];
    id_pair *local = malloc(longest * sizeof *local);
    if (!order || !local) {
        free(order);
        free(local);
        return llmlab_err_set(v->err, LLMLAB_ENOMEM, "%s: out of memory", v->path);
    }
    for (int32_t i = 0; i < v->n; i++)
        if (mergeable(v->type[i])) order[k++] = (scored){v->score[i], i};
    qsort(order, k, sizeof *order, cmp_scored);
    for (size_t j = 0; j < k && b->ok; j++) {
        const char *t = v->tok[order[j].id];
        size_t len = v->len[order[j].id], nl = 0;
        for (size_t cut = 1; cut < len; cut++) {
            if (((unsigned char)t[cut] & 0xC0) == 0x80) continue; /* inside a character */
            int32_t l = lookup(v, t, cut), r = lookup(v, t + cut, len - cut);
            if (l >= 0 && r >= 0) local[nl++] = (id_pair){l, r};
        }
        qsort(local, nl, sizeof *local, cmp_pair);
        for (size_t q = 0; q < nl; q++) push(b, out, merge_pair(b, v, local[q].l, local[q].r));
    }
    free(order);
    free(local);
    return LLMLAB_OK;
}

/* ---- the tree ----------------------------------------------------------------------------- */

static cJSON *bpe_model(jb *b, const vocab *v, int ignore_merges) {
    cJSON *m = typed(b, "BPE");
    if (!m) return NULL;
    add(b, m, "dropout", cJSON_CreateNull());
    add(b, m, "unk_token", v->spm && v->unk >= 0 ? cJSON_CreateString(v->tok[v->unk]) : cJSON_CreateNull());
    add(b, m, "continuing_subword_prefix", cJSON_CreateNull());
    add(b, m, "end_of_word_suffix", cJSON_CreateNull());
    add(b, m, "fuse_unk", cJSON_CreateBool(v->spm));
    add(b, m, "byte_fallback", cJSON_CreateBool(v->spm));
    add(b, m, "ignore_merges", cJSON_CreateBool(ignore_merges));
    add(b, m, "vocab", vocab_object(b, v));
    return m;
}

static llmlab_status gpt2_parts(jb *b, const vocab *v, cJSON *root, cJSON **model) {
    const char *pre = "default";
    if (llmlab_gguf_find_key(v->g, "tokenizer.ggml.pre") >= 0) {
        llmlab_status s = llmlab_gguf_get_str(v->g, "tokenizer.ggml.pre", &pre, NULL, v->err);
        if (s) return s;
    }
    size_t k = 0;
    while (k < N_PRE && strcmp(pre_names[k].name, pre)) k++;
    if (k == N_PRE) {
        char known[160] = "";
        for (size_t i = 0; i < N_PRE; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'", i ? ", " : "", pre_names[i].name);
        return llmlab_err_set(v->err, LLMLAB_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%.80s' is not supported (known: %s)",
                              v->path, pre, known);
    }
    pre_kind pk = pre_names[k].kind;
    add(b, root, "normalizer", pk == PRE_QWEN2 ? typed(b, "NFC") : cJSON_CreateNull());
    add(b, root, "pre_tokenizer",
        pk == PRE_GPT2 ? byte_level(b, 1) : split_then_bytes(b, pk == PRE_LLAMA3 ? LLAMA3_REGEX : QWEN2_REGEX));
    add(b, root, "decoder", byte_level_decoder(b));
    *model = bpe_model(b, v, pk == PRE_LLAMA3);
    return LLMLAB_OK;
}

static void spm_parts(jb *b, const vocab *v, cJSON *root, cJSON **model) {
    if (v->add_space_prefix) {
        cJSON *norm = typed(b, "Sequence"), *list = chk(b, cJSON_CreateArray()), *prep = typed(b, "Prepend");
        if (prep) add(b, prep, "prepend", cJSON_CreateString(SPACE));
        if (list) {
            push(b, list, prep);
            push(b, list, replace(b, " ", SPACE));
        } else cJSON_Delete(prep);
        if (norm) add(b, norm, "normalizers", list);
        else cJSON_Delete(list);
        add(b, root, "normalizer", norm);
    } else {
        add(b, root, "normalizer", replace(b, " ", SPACE));
    }
    add(b, root, "pre_tokenizer", cJSON_CreateNull());
    cJSON *dec = typed(b, "Sequence"), *list = chk(b, cJSON_CreateArray());
    if (list) {
        push(b, list, replace(b, SPACE, " "));
        push(b, list, typed(b, "ByteFallback"));
        push(b, list, typed(b, "Fuse"));
        if (v->add_space_prefix) {
            cJSON *strip = typed(b, "Strip");
            if (strip) {
                add(b, strip, "content", cJSON_CreateString(" "));
                add(b, strip, "start", cJSON_CreateNumber(1));
                add(b, strip, "stop", cJSON_CreateNumber(0));
            }
            push(b, list, strip);
        }
    }
    if (dec) add(b, dec, "decoders", list);
    else cJSON_Delete(list);
    add(b, root, "decoder", dec);
    *model = bpe_model(b, v, 0);
}

/* The tokenizer.json tree for v (caller deletes). */
static llmlab_status build_tree(vocab *v, cJSON **out) {
    jb b = {1};
    cJSON *root = chk(&b, cJSON_CreateObject()), *model = NULL;
    if (!root) return llmlab_err_set(v->err, LLMLAB_ENOMEM, "%s: out of memory", v->path);
    add(&b, root, "version", cJSON_CreateString("1.0"));
    add(&b, root, "truncation", cJSON_CreateNull());
    add(&b, root, "padding", cJSON_CreateNull());
    add(&b, root, "added_tokens", added_tokens(&b, v));
    llmlab_status s = LLMLAB_OK;
    if (v->spm) spm_parts(&b, v, root, &model);
    else s = gpt2_parts(&b, v, root, &model);
    add(&b, root, "post_processor", post_processor(&b, v));
    cJSON *merges = chk(&b, cJSON_CreateArray());
    if (!s && merges && model) s = v->spm ? spm_merges(&b, v, merges) : gpt2_merges(&b, v, merges);
    if (model) add(&b, model, "merges", merges);
    else cJSON_Delete(merges);
    if (model) add(&b, root, "model", model);
    if (!s && !b.ok) s = llmlab_err_set(v->err, LLMLAB_ENOMEM, "%s: out of memory", v->path);
    if (s) {
        cJSON_Delete(root);
        return s;
    }
    *out = root;
    return LLMLAB_OK;
}

static llmlab_status convert(const llmlab_gguf *g, const char *path, llmlab_tokenizer **out, llmlab_err *err) {
    vocab v = {.g = g, .path = path, .err = err};
    const char *model;
    if (llmlab_gguf_find_key(g, "tokenizer.ggml.model") < 0)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no tokenizer.ggml.model: this GGUF file carries no vocabulary",
                              path);
    llmlab_status s = llmlab_gguf_get_str(g, "tokenizer.ggml.model", &model, NULL, err);
    if (s) return s;
    if (strcmp(model, "gpt2") && strcmp(model, "llama"))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "%s: tokenizer.ggml.model '%.80s' is not supported (known: 'gpt2' = byte-level BPE, "
                              "'llama' = SentencePiece BPE)",
                              path, model);
    v.spm = !strcmp(model, "llama");
    cJSON *root = NULL;
    s = read_tokens(&v);
    if (!s) s = read_types_scores(&v);
    if (!s) s = read_specials(&v);
    if (!s) s = build_tree(&v, &root);
    if (!s) s = llmlab_tokenizer_from_json(out, root, path, err);
    cJSON_Delete(root);
    free_vocab(&v);
    return s;
}

llmlab_status llmlab_tokenizer_load_gguf(llmlab_tokenizer **out, const char *path, llmlab_err *err) {
    *out = NULL;
    llmlab_gguf *g = NULL;
    llmlab_status s = llmlab_gguf_open(&g, path, err);
    if (s) return s;
    s = convert(g, path, out, err);
    llmlab_gguf_close(g);
    return s;
}
