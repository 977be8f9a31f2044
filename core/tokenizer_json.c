/* tokenizer_json.c - loading a Hugging Face tokenizer.json: the file, the BPE
 * model (vocabulary, merges, options) and the added tokens; the normalizer,
 * pre-tokenizer, post-processor and decoder are parsed in tokenizer_json_parts.c.
 *
 * Every malformed input is an LLMLAB_EFORMAT naming the file and the JSON path
 * ("tok.json: model.merges[12]: token 'ab' is not in the vocabulary"); valid
 * input this code cannot run (WordPiece, an unknown normalizer) is
 * LLMLAB_EUNSUPPORTED naming the type.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "tokenizer_internal.h"

#define TOK_MAX_FILE (1ull << 30)   /* a tokenizer.json larger than 1 GiB is not one */
#define TOK_MAX_ID ((1 << 30) - 1)  /* ids must fit comfortably in int32 */

/* ---- small JSON helpers --------------------------------------------------------------- */

char *tok_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

llmlab_status tok_json_bool(const cJSON *obj, const char *key, int def, const char *what, const char *path,
                            int *out, llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LLMLAB_OK;
    }
    if (!cJSON_IsBool(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s must be a boolean, not %s", what, path, key,
                              llmlab_json_type_name(v));
    *out = cJSON_IsTrue(v);
    return LLMLAB_OK;
}

llmlab_status tok_json_str(const cJSON *obj, const char *key, int required, const char *what, const char *path,
                           const char **out, llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s is missing", what, path, key);
        return LLMLAB_OK;
    }
    if (!cJSON_IsString(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s must be a string, not %s", what, path, key,
                              llmlab_json_type_name(v));
    *out = v->valuestring;
    return LLMLAB_OK;
}

/* An integer value v in [lo, hi]. */
static llmlab_status int_value(const cJSON *v, long long lo, long long hi, const char *what, const char *path,
                               long long *out, llmlab_err *err) {
    if (!cJSON_IsNumber(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be an integer, not %s", what, path, llmlab_json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < (double)lo || d > (double)hi)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s = %g is not an integer in [%lld, %lld]", what, path, d,
                              lo, hi);
    *out = (long long)d;
    return LLMLAB_OK;
}

llmlab_status tok_json_int(const cJSON *obj, const char *key, int def, long long lo, long long hi,
                           const char *what, const char *path, int *out, llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LLMLAB_OK;
    }
    char p[256];
    snprintf(p, sizeof p, "%.200s.%s", path, key);
    long long x;
    llmlab_status st = int_value(v, lo, hi, what, p, &x, err);
    if (st == LLMLAB_OK) *out = (int)x;
    return st;
}

llmlab_status tok_json_pattern(const cJSON *obj, const char *what, const char *path, tok_regex **re, char **lit,
                               size_t *lit_len, llmlab_err *err) {
    *re = NULL;
    if (lit) *lit = NULL;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    if (!cJSON_IsObject(pat))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.pattern must be {\"String\": ...} or {\"Regex\": ...}",
                              what, path);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *v = s ? s : r;
    if (!cJSON_IsString(v) || (s && r))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.pattern must be {\"String\": ...} or {\"Regex\": ...}",
                              what, path);
    char where[300];
    snprintf(where, sizeof where, "%s: %s.pattern", what, path);
    size_t n = strlen(v->valuestring);
    llmlab_status st = tok_regex_compile(re, v->valuestring, n, s != NULL, where, err);
    if (st != LLMLAB_OK) return st;
    if (lit && s) {
        if (!(*lit = tok_strndup(v->valuestring, n))) {
            tok_regex_free(*re);
            *re = NULL;
            return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        }
        *lit_len = n;
    }
    return LLMLAB_OK;
}

llmlab_status tok_json_char(const cJSON *obj, const char *key, const char *def, const char *what,
                            const char *path, char *out, int *out_len, llmlab_err *err) {
    const char *s;
    llmlab_status st = tok_json_str(obj, key, def == NULL, what, path, &s, err);
    if (st != LLMLAB_OK) return st;
    if (!s) s = def;
    size_t n = strlen(s);
    uint32_t c;
    if (n == 0 || tok_utf8_next((const unsigned char *)s, n, &c) != n || c == UINT32_MAX)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s must be a single character, not '%s'", what, path,
                              key, s);
    memcpy(out, s, n);
    *out_len = (int)n;
    return LLMLAB_OK;
}

/* ---- the model ---------------------------------------------------------------------- */

static llmlab_status load_vocab(struct tok_bpe_tok *m, const cJSON *vocab, llmlab_err *err) {
    if (!cJSON_IsObject(vocab))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.vocab must be an object, not %s", m->what,
                              vocab ? llmlab_json_type_name(vocab) : "missing");
    int n = cJSON_GetArraySize(vocab);
    llmlab_status st = tok_strmap_init(&m->vocab, (size_t)n, err);
    for (int i = 0; i < 0x800; i++) m->small_ids[i] = -1;
    int32_t max_id = -1;
    for (const cJSON *e = vocab->child; e && st == LLMLAB_OK; e = e->next) {
        char p[128];
        snprintf(p, sizeof p, "model.vocab['%.80s']", e->string);
        long long id;
        if ((st = int_value(e, 0, TOK_MAX_ID, m->what, p, &id, err)) != LLMLAB_OK) break;
        if (tok_store_get(&m->pieces, (int32_t)id, NULL))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: id %lld is also the id of '%.80s'", m->what, p,
                                  id, tok_store_get(&m->pieces, (int32_t)id, NULL));
        size_t len = strlen(e->string);
        if ((st = tok_store_set(&m->pieces, (int32_t)id, e->string, len, err)) != LLMLAB_OK) break;
        int32_t old = tok_strmap_put(&m->vocab, &m->pieces, (int32_t)id, err, &st);
        if (st != LLMLAB_OK) break;
        if (old >= 0)
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: the token appears twice (ids %d and %lld)",
                                  m->what, p, (int)old, id);
        uint32_t c;
        if (len && tok_utf8_next((const unsigned char *)e->string, len, &c) == len && c < 0x800)
            m->small_ids[c] = (int32_t)id;
        if (id > max_id) max_id = (int32_t)id;
    }
    m->model_size = n;
    m->n_ids = max_id + 1;
    for (int b = 0; b < 256 && st == LLMLAB_OK; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = tok_strmap_get(&m->vocab, &m->pieces, name, 6);
    }
    return st;
}

/* Splits merge i (a "left right" string or a [left, right] pair) into its two tokens. */
static llmlab_status merge_parts(const struct tok_bpe_tok *m, const cJSON *e, int i, const char **a, size_t *an,
                                 const char **b, size_t *bn, llmlab_err *err) {
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        /* HF: exactly two parts separated by one space. */
        if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.merges[%d]: '%.80s' is not \"left right\"",
                                  m->what, i, s);
        *a = s;
        *an = (size_t)(sp - s);
        *b = sp + 1;
        *bn = strlen(sp + 1);
        return LLMLAB_OK;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
        cJSON_IsString(e->child->next)) {
        *a = e->child->valuestring;
        *an = strlen(*a);
        *b = e->child->next->valuestring;
        *bn = strlen(*b);
        return LLMLAB_OK;
    }
    return llmlab_err_set(err, LLMLAB_EFORMAT,
                          "%s: model.merges[%d] must be a \"left right\" string or a [left, right] pair, not %s",
                          m->what, i, llmlab_json_type_name(e));
}

static llmlab_status token_of(const struct tok_bpe_tok *m, const char *s, size_t n, int i, int32_t *id,
                              llmlab_err *err) {
    *id = tok_strmap_get(&m->vocab, &m->pieces, s, n);
    if (*id < 0)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.merges[%d]: token '%.*s' is not in the vocabulary",
                              m->what, i, (int)(n > 80 ? 80 : n), s);
    return LLMLAB_OK;
}

static llmlab_status load_merges(struct tok_bpe_tok *m, const cJSON *merges, llmlab_err *err) {
    if (!merges || cJSON_IsNull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.merges must be an array, not %s", m->what,
                              llmlab_json_type_name(merges));
    int n = merges ? cJSON_GetArraySize(merges) : 0;
    llmlab_status st = tok_pairmap_init(&m->merges, (size_t)n, err);
    tok_buf cat = {0};
    int i = 0;
    for (const cJSON *e = merges ? merges->child : NULL; e && st == LLMLAB_OK; e = e->next, i++) {
        const char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        int32_t ia, ib, inew;
        if ((st = merge_parts(m, e, i, &a, &an, &b, &bn, err)) != LLMLAB_OK) break;
        if ((st = token_of(m, a, an, i, &ia, err)) != LLMLAB_OK) break;
        if ((st = token_of(m, b, bn, i, &ib, err)) != LLMLAB_OK) break;
        /* The merged token is left + right without right's continuing_subword_prefix. */
        if (bn < m->cont_prefix_len) {
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: model.merges[%d]: '%.80s' is shorter than the prefix",
                                m->what, i, b);
            break;
        }
        cat.len = 0;
        if ((st = tok_buf_put(&cat, a, an, err)) != LLMLAB_OK) break;
        if ((st = tok_buf_put(&cat, b + m->cont_prefix_len, bn - m->cont_prefix_len, err)) != LLMLAB_OK) break;
        if ((st = token_of(m, cat.p, cat.len, i, &inew, err)) != LLMLAB_OK) break;
        tok_pairmap_put(&m->merges, ia, ib, (uint32_t)i, inew);
    }
    tok_buf_free(&cat);
    return st;
}

/* An optional string option of the model, copied. */
static llmlab_status model_str(struct tok_bpe_tok *m, const cJSON *model, const char *key, char **out,
                               size_t *len, llmlab_err *err) {
    const char *s;
    llmlab_status st = tok_json_str(model, key, 0, m->what, "model", &s, err);
    if (st != LLMLAB_OK || !s) return st;
    if (!(*out = tok_strndup(s, strlen(s)))) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
    if (len) *len = strlen(s);
    return LLMLAB_OK;
}

/* SentencePiece-style files have no pre-tokenizer, so the whole text is one BPE
 * word.  When U+2581 is a token and no token has U+2581 right after another
 * character, no merge can ever join the two sides of such a place, and the word
 * can be merged piece by piece with the same result (tokenizer_bpe.c). */
static void find_split_meta(struct tok_bpe_tok *m) {
    static const char meta[] = "\xe2\x96\x81";
    m->split_meta = 0;
    if (m->cont_prefix || m->eow_suffix || tok_strmap_get(&m->vocab, &m->pieces, meta, 3) < 0) return;
    for (int32_t id = 0; id < m->pieces.n_ids; id++) {
        size_t n;
        const char *p = tok_store_get(&m->pieces, id, &n);
        for (const char *q = p; q && (q = memmem(q, n - (size_t)(q - p), meta, 3)); q += 3)
            if (q > p && (q - p < 3 || memcmp(q - 3, meta, 3) != 0)) return;
    }
    m->split_meta = 1;
}

static llmlab_status load_model(struct tok_bpe_tok *m, const cJSON *model, llmlab_err *err) {
    if (!model || cJSON_IsNull(model))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: 'model' is missing", m->what);
    if (!cJSON_IsObject(model))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: 'model' must be an object, not %s", m->what, llmlab_json_type_name(model));
    const char *type;
    llmlab_status st = tok_json_str(model, "type", 0, m->what, "model", &type, err);
    if (st != LLMLAB_OK) return st;
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: model has no type and no merges: only BPE is supported",
                              m->what);
    if (type && strcmp(type, "BPE") != 0)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: model type '%.60s' is not supported (only BPE)",
                              m->what, type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: model.dropout must be null or 0 for inference", m->what);
    if ((st = model_str(m, model, "continuing_subword_prefix", &m->cont_prefix, &m->cont_prefix_len, err)) ||
        (st = model_str(m, model, "end_of_word_suffix", &m->eow_suffix, &m->eow_suffix_len, err)) ||
        (st = model_str(m, model, "unk_token", &m->unk_token, NULL, err)) ||
        (st = tok_json_bool(model, "fuse_unk", 0, m->what, "model", &m->fuse_unk, err)) ||
        (st = tok_json_bool(model, "byte_fallback", 0, m->what, "model", &m->byte_fallback, err)) ||
        (st = tok_json_bool(model, "ignore_merges", 0, m->what, "model", &m->ignore_merges, err)))
        return st;
    if ((st = load_vocab(m, cJSON_GetObjectItemCaseSensitive(model, "vocab"), err)) != LLMLAB_OK) return st;
    if ((st = load_merges(m, cJSON_GetObjectItemCaseSensitive(model, "merges"), err)) != LLMLAB_OK) return st;
    find_split_meta(m);
    /* A missing unk_token is an error only when a text needs it (as in HF). */
    m->unk_id = m->unk_token ? tok_strmap_get(&m->vocab, &m->pieces, m->unk_token, strlen(m->unk_token)) : -1;
    return LLMLAB_OK;
}

/* ---- added tokens ------------------------------------------------------------------- */

/* The added token with this content, or -1. */
static int added_find(const struct tok_bpe_tok *m, const char *s, size_t n) {
    for (int i = 0; i < m->n_added; i++)
        if (m->added[i].len == n && memcmp(m->added[i].content, s, n) == 0) return i;
    return -1;
}

/* HF's id for a new added token: its model id if the vocabulary has it, else
 * the next id after the model vocabulary and the earlier added tokens.  (The
 * "id" written in tokenizer.json is not used, as in HF.) */
static int32_t added_new_id(const struct tok_bpe_tok *m, const char *s, size_t n) {
    int32_t id = tok_strmap_get(&m->vocab, &m->pieces, s, n);
    if (id >= 0) return id;
    int32_t max = -1;
    for (int i = 0; i < m->n_added; i++)
        if (m->added[i].id > max) max = m->added[i].id;
    if (max < 0) return m->model_size;
    return (max >= m->model_size || m->model_size == 0) ? max + 1 : m->model_size;
}

static llmlab_status parse_added(struct tok_bpe_tok *m, const cJSON *e, int i, llmlab_err *err) {
    char p[64];
    snprintf(p, sizeof p, "added_tokens[%d]", i);
    if (!cJSON_IsObject(e))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be an object, not %s", m->what, p, llmlab_json_type_name(e));
    const char *content;
    tok_added a = {0};
    llmlab_status st = tok_json_str(e, "content", 1, m->what, p, &content, err);
    if (st == LLMLAB_OK) st = tok_json_bool(e, "special", 0, m->what, p, &a.special, err);
    if (st == LLMLAB_OK) st = tok_json_bool(e, "single_word", 0, m->what, p, &a.single_word, err);
    if (st == LLMLAB_OK) st = tok_json_bool(e, "lstrip", 0, m->what, p, &a.lstrip, err);
    if (st == LLMLAB_OK) st = tok_json_bool(e, "rstrip", 0, m->what, p, &a.rstrip, err);
    if (st == LLMLAB_OK) st = tok_json_bool(e, "normalized", !a.special, m->what, p, &a.normalized, err);
    if (st != LLMLAB_OK) return st;
    size_t n = strlen(content);
    if (n == 0) return LLMLAB_OK; /* HF ignores empty added tokens */
    int old = added_find(m, content, n);
    if (old >= 0) { /* a repeated content: the later flags win, special sticks */
        a.special |= m->added[old].special;
        a.content = m->added[old].content;
        a.len = n;
        a.id = m->added[old].id;
        m->added[old] = a;
        return LLMLAB_OK;
    }
    a.id = added_new_id(m, content, n);
    if (a.id > TOK_MAX_ID) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: too many tokens", m->what, p);
    if (!(a.content = tok_strndup(content, n))) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
    a.len = n;
    m->added[m->n_added++] = a;
    return LLMLAB_OK;
}

/* Builds the id tables and the two tries (patterns of normalized tokens are
 * normalized first, as HF does). */
static llmlab_status index_added(struct tok_bpe_tok *m, llmlab_err *err) {
    for (int i = 0; i < m->n_added; i++)
        if (m->added[i].id >= m->n_ids) m->n_ids = m->added[i].id + 1;
    m->added_of_id = malloc(((size_t)m->n_ids + 1) * sizeof *m->added_of_id);
    m->special = calloc((size_t)m->n_ids + 1, 1);
    if (!m->added_of_id || !m->special) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
    for (int32_t i = 0; i < m->n_ids; i++) m->added_of_id[i] = -1;
    llmlab_status st = LLMLAB_OK;
    tok_buf nb = {0}, tmp = {0};
    tok_match *mt = NULL;
    int any_single = 0;
    if ((st = tok_match_create(&mt, err)) != LLMLAB_OK) return st;
    /* Specials first: HF's matcher lists them first, and an earlier pattern wins a tie. */
    for (int pass = 0; pass < 2 && st == LLMLAB_OK; pass++) {
        for (int i = 0; i < m->n_added && st == LLMLAB_OK; i++) {
            tok_added *a = &m->added[i];
            if (a->special != (pass == 0)) continue;
            m->added_of_id[a->id] = i;
            any_single |= a->single_word;
            if (!a->normalized || !m->norm) {
                a->pattern = a->content;
                a->pattern_len = a->len;
                st = tok_trie_add(a->normalized ? &m->trie_norm : &m->trie_raw, a->content, a->len, i, err);
                continue;
            }
            if ((st = tok_norm_apply(m->norm, a->content, a->len, &nb, &tmp, mt, err)) != LLMLAB_OK) break;
            if (!(a->pattern = tok_strndup(nb.p ? nb.p : "", nb.len))) {
                st = llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
                break;
            }
            a->pattern_len = nb.len;
            st = tok_trie_add(&m->trie_norm, a->pattern, a->pattern_len, i, err);
        }
    }
    tok_buf_free(&nb);
    tok_buf_free(&tmp);
    tok_match_free(mt);
    /* HF's decode skips a token when the string it decodes (a normalized token's
     * normalized form) is the content of a special token. */
    for (int i = 0; i < m->n_added && st == LLMLAB_OK; i++) {
        size_t n;
        const char *s = tok_model_dec_piece(m, m->added[i].id, &n);
        int k = added_find(m, s, n);
        m->special[m->added[i].id] = (uint8_t)(k >= 0 && m->added[k].special);
    }
    if (st == LLMLAB_OK && any_single) {
        /* Rust regex's Unicode \w, for single_word's "is a word character" (\p{L}
         * adds the letters newer than PCRE2's tables, see tokenizer_regex.c). */
        static const char word[] = "[\\p{Alphabetic}\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";
        st = tok_regex_compile(&m->word_re, word, sizeof word - 1, 0, m->what, err);
    }
    return st;
}

static llmlab_status load_added(struct tok_bpe_tok *m, const cJSON *list, llmlab_err *err) {
    if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: added_tokens must be an array, not %s", m->what,
                              llmlab_json_type_name(list));
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    m->added = calloc((size_t)n + 1, sizeof *m->added);
    if (!m->added) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
    llmlab_status st = LLMLAB_OK;
    int i = 0;
    for (const cJSON *e = n ? list->child : NULL; e && st == LLMLAB_OK; e = e->next, i++)
        st = parse_added(m, e, i, err);
    return st == LLMLAB_OK ? index_added(m, err) : st;
}

/* ---- facts ---------------------------------------------------------------------------- */

/* The first special added token among names (NULL-terminated), or -1. */
static int32_t named_special(const struct tok_bpe_tok *m, const char *const *names) {
    for (; *names; names++) {
        int i = added_find(m, *names, strlen(*names));
        if (i >= 0 && m->added[i].special) return m->added[i].id;
    }
    return -1;
}

static void set_facts(struct tok_bpe_tok *m) {
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>",
                                            NULL};
    m->bos = m->n_before > 0 ? m->pp_before[0] : named_special(m, bos_names);
    m->eos = named_special(m, eos_names);
}

/* ---- entry points --------------------------------------------------------------------- */

llmlab_status tok_model_build(struct tok_bpe_tok **out, const cJSON *root, const char *what, llmlab_err *err) {
    *out = NULL;
    struct tok_bpe_tok *m = calloc(1, sizeof *m);
    if (!m || !(m->what = tok_strndup(what, strlen(what)))) {
        free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
    }
    m->unk_id = -1;
    m->bos = m->eos = -1;
    llmlab_status st = LLMLAB_OK;
    if (!cJSON_IsObject(root)) st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: the top level must be an object", what);
    if (st == LLMLAB_OK) st = load_model(m, cJSON_GetObjectItemCaseSensitive(root, "model"), err);
    if (st == LLMLAB_OK) st = tok_json_normalizer(&m->norm, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), what, err);
    if (st == LLMLAB_OK)
        st = tok_json_pretokenizer(&m->pre, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), what,
                                   &m->bytelevel, err);
    if (st == LLMLAB_OK) st = load_added(m, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err);
    if (st == LLMLAB_OK) st = tok_json_postprocessor(m, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err);
    if (st == LLMLAB_OK) st = tok_json_decoder(m, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err);
    if (st != LLMLAB_OK) {
        tok_model_free(m);
        return st;
    }
    set_facts(m);
    *out = m;
    return LLMLAB_OK;
}

static llmlab_status read_file(const char *path, char **buf, size_t *len, llmlab_err *err) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot open: %s", path, strerror(errno));
    tok_buf b = {0};
    llmlab_status st = LLMLAB_OK;
    for (;;) {
        if ((st = tok_buf_reserve(&b, 1 << 16, err)) != LLMLAB_OK) break;
        size_t k = fread(b.p + b.len, 1, b.cap - b.len, f);
        b.len += k;
        if (b.len > TOK_MAX_FILE) {
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: larger than 1 GiB: not a tokenizer.json", path);
            break;
        }
        if (k == 0) {
            if (ferror(f)) st = llmlab_err_set(err, LLMLAB_EIO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (st != LLMLAB_OK) {
        tok_buf_free(&b);
        return st;
    }
    *buf = b.p;
    *len = b.len;
    return LLMLAB_OK;
}

/* Byte offset of the first JSON escape \u0000 in text[len], or len when there is
 * none.  An escape is a 'u' after an odd run of backslashes (an even run is
 * escaped backslashes followed by plain text). */
static size_t find_nul_escape(const char *text, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++) {
        if (memcmp(text + i, "\\u0000", 6) != 0) continue;
        size_t run = 1;
        while (run <= i && text[i - run] == '\\') run++;
        if (run % 2 == 1) return i; /* run counts this backslash plus those before it */
    }
    return len;
}

llmlab_status llmlab_tokenizer_load_json(llmlab_tokenizer **out, const char *path, llmlab_err *err) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    llmlab_status st = read_file(path, &buf, &len, err);
    if (st != LLMLAB_OK) return st;
    /* cJSON strings end at NUL, so a token holding U+0000 would silently become
     * a shorter token (and encode differently from Hugging Face's library):
     * refuse such files rather than load them wrong. */
    size_t nul = find_nul_escape(buf ? buf : "", len);
    if (nul < len) {
        free(buf);
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "%s: a string holds U+0000 (\\u0000 at byte %zu), which llmlab's tokenizer cannot "
                              "represent",
                              path, nul);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf ? buf : "", len, &end, 0);
    if (!root) {
        size_t at = end && buf ? (size_t)(end - buf) : 0;
        free(buf);
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: not valid JSON (error near byte %zu of %zu)", path, at, len);
    }
    free(buf);
    st = llmlab_tokenizer_from_json(out, root, path, err);
    cJSON_Delete(root);
    return st;
}

void tok_model_free(struct tok_bpe_tok *m) {
    if (!m) return;
    tok_store_free(&m->pieces);
    tok_strmap_free(&m->vocab);
    tok_pairmap_free(&m->merges);
    for (int i = 0; i < m->n_added; i++) {
        if (m->added[i].pattern != m->added[i].content) free(m->added[i].pattern);
        free(m->added[i].content);
    }
    free(m->added);
    free(m->added_of_id);
    free(m->special);
    tok_trie_free(&m->trie_raw);
    tok_trie_free(&m->trie_norm);
    tok_regex_free(m->word_re);
    tok_norm_free(m->norm);
    tok_pre_free(m->pre);
    free(m->pp_before);
    free(m->pp_after);
    for (int i = 0; i < m->n_dec; i++) {
        tok_regex_free(m->dec[i].re);
        free(m->dec[i].pat);
        free(m->dec[i].content);
    }
    free(m->dec);
    free(m->unk_token);
    free(m->cont_prefix);
    free(m->eow_suffix);
    free(m->what);
    free(m);
}
