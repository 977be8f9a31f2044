/* tokenizer_json_parts.c - the pipeline stages of a tokenizer.json: normalizer,
 * pre-tokenizer, post-processor and decoder.  Nested "Sequence"s are flattened
 * into one list per stage; a type this code does not run is LLMLAB_EUNSUPPORTED
 * naming it ("tok.json: normalizer type 'BertNormalizer' is not supported"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizer_internal.h"

/* GPT-2's pre-tokenizer regex (ByteLevel with use_regex). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Rust regex's \w+|[^\w\s]+ (the Whitespace pre-tokenizer) in PCRE2 terms. */
static const char whitespace_pattern[] =
    "[\\p{Alphabetic}\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]+"
    "|[^\\p{Alphabetic}\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}\\s]+";

/* Grows a flat array of n elements of size `size` by one, zeroed. */
static void *grow1(void **v, int *n, size_t size, llmlab_err *err, const char *what) {
    char *p = realloc(*v, ((size_t)*n + 1) * size);
    if (!p) {
        llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        return NULL;
    }
    *v = p;
    memset(p + (size_t)*n * size, 0, size);
    return p + (size_t)(*n)++ * size;
}

/* v must be an object with a string "type"; *type gets it. */
static llmlab_status typed(const cJSON *v, const char *what, const char *path, const char **type, llmlab_err *err) {
    if (!cJSON_IsObject(v)) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be an object", what, path);
    return tok_json_str(v, "type", 1, what, path, type, err);
}

/* The array v[key] of a Sequence. */
static llmlab_status seq_items(const cJSON *v, const char *key, const char *what, const char *path,
                               const cJSON **arr, llmlab_err *err) {
    *arr = cJSON_GetObjectItemCaseSensitive(v, key);
    if (!cJSON_IsArray(*arr))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s must be an array", what, path, key);
    return LLMLAB_OK;
}

/* ---- normalizers ------------------------------------------------------------------------ */

static llmlab_status norm_leaf(tok_norm *nm, const cJSON *v, const char *type, const char *what, const char *path,
                               llmlab_err *err) {
    static const struct {
        const char *name;
        enum tok_norm_type type;
    } simple[] = {{"NFC", TOK_NORM_NFC},
                  {"NFD", TOK_NORM_NFD},
                  {"NFKC", TOK_NORM_NFKC},
                  {"NFKD", TOK_NORM_NFKD},
                  {"Lowercase", TOK_NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(type, simple[i].name) == 0) {
            nm->type = simple[i].type;
            return LLMLAB_OK;
        }
    const char *s;
    llmlab_status st;
    if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
        int prepend = type[1] == 'r';
        nm->type = prepend ? TOK_NORM_PREPEND : TOK_NORM_REPLACE;
        if ((st = tok_json_str(v, prepend ? "prepend" : "content", 1, what, path, &s, err)) != LLMLAB_OK) return st;
        if (!(nm->str = tok_strndup(s, strlen(s)))) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        nm->str_len = strlen(s);
        return prepend ? LLMLAB_OK : tok_json_pattern(v, what, path, &nm->re, NULL, NULL, err);
    }
    if (strcmp(type, "Strip") == 0) {
        nm->type = TOK_NORM_STRIP;
        if ((st = tok_json_bool(v, "strip_left", 1, what, path, &nm->left, err)) != LLMLAB_OK) return st;
        return tok_json_bool(v, "strip_right", 1, what, path, &nm->right, err);
    }
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: normalizer type '%.60s' is not supported", what, path,
                          type);
}

static llmlab_status norm_collect(tok_norm *seq, const cJSON *v, const char *what, const char *path, int depth,
                                  llmlab_err *err) {
    const char *type;
    llmlab_status st = typed(v, what, path, &type, err);
    if (st != LLMLAB_OK) return st;
    if (strcmp(type, "Sequence") != 0) {
        tok_norm *leaf = grow1((void **)&seq->items, &seq->n_items, sizeof *leaf, err, what);
        return leaf ? norm_leaf(leaf, v, type, what, path, err) : LLMLAB_ENOMEM;
    }
    if (depth > 32) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: sequences nested too deeply", what, path);
    const cJSON *arr;
    if ((st = seq_items(v, "normalizers", what, path, &arr, err)) != LLMLAB_OK) return st;
    int i = 0;
    for (const cJSON *e = arr->child; e && st == LLMLAB_OK; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof p, "%.200s.normalizers[%d]", path, i);
        st = norm_collect(seq, e, what, p, depth + 1, err);
    }
    return st;
}

llmlab_status tok_json_normalizer(tok_norm **out, const cJSON *v, const char *what, llmlab_err *err) {
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return LLMLAB_OK;
    tok_norm *seq = calloc(1, sizeof *seq);
    if (!seq) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
    seq->type = TOK_NORM_SEQUENCE;
    llmlab_status st = norm_collect(seq, v, what, "normalizer", 0, err);
    if (st != LLMLAB_OK) {
        tok_norm_free(seq);
        return st;
    }
    *out = seq;
    return LLMLAB_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------- */

static llmlab_status behavior(const cJSON *v, const char *what, const char *path, enum tok_split_behavior *out,
                              llmlab_err *err) {
    static const char *const names[] = {[TOK_SPLIT_REMOVED] = "Removed",
                                        [TOK_SPLIT_ISOLATED] = "Isolated",
                                        [TOK_SPLIT_MERGED_PREV] = "MergedWithPrevious",
                                        [TOK_SPLIT_MERGED_NEXT] = "MergedWithNext",
                                        [TOK_SPLIT_CONTIGUOUS] = "Contiguous"};
    const char *s;
    llmlab_status st = tok_json_str(v, "behavior", 0, what, path, &s, err);
    if (st != LLMLAB_OK) return st;
    *out = TOK_SPLIT_ISOLATED;
    if (!s) return LLMLAB_OK;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum tok_split_behavior)i;
            return LLMLAB_OK;
        }
    return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.behavior '%.60s' is not one of Removed, Isolated, "
                          "MergedWithPrevious, MergedWithNext, Contiguous", what, path, s);
}

/* Metaspace's prepend_scheme, or the older add_prefix_space. */
static llmlab_status prepend_scheme(const cJSON *v, const char *what, const char *path, enum tok_prepend *out,
                                    llmlab_err *err) {
    const char *s;
    int aps;
    llmlab_status st = tok_json_str(v, "prepend_scheme", 0, what, path, &s, err);
    if (st == LLMLAB_OK) st = tok_json_bool(v, "add_prefix_space", 1, what, path, &aps, err);
    if (st != LLMLAB_OK) return st;
    if (!s) {
        *out = aps ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        return LLMLAB_OK;
    }
    if (strcmp(s, "always") == 0) *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0) *out = TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0) *out = TOK_PREPEND_NEVER;
    else
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.prepend_scheme '%.60s' is not always, first or never",
                              what, path, s);
    return LLMLAB_OK;
}

static llmlab_status pre_leaf(tok_pre *pt, const cJSON *v, const char *type, const char *what, const char *path,
                              int *bytelevel, llmlab_err *err) {
    llmlab_status st;
    if (strcmp(type, "Split") == 0) {
        pt->type = TOK_PRE_SPLIT;
        if ((st = behavior(v, what, path, &pt->behavior, err)) != LLMLAB_OK) return st;
        if ((st = tok_json_bool(v, "invert", 0, what, path, &pt->invert, err)) != LLMLAB_OK) return st;
        return tok_json_pattern(v, what, path, &pt->re, NULL, NULL, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        int use_regex;
        pt->type = TOK_PRE_BYTELEVEL;
        *bytelevel = 1;
        if ((st = tok_json_bool(v, "add_prefix_space", 1, what, path, &pt->add_prefix_space, err)) != LLMLAB_OK ||
            (st = tok_json_bool(v, "use_regex", 1, what, path, &use_regex, err)) != LLMLAB_OK)
            return st;
        return use_regex ? tok_regex_compile(&pt->re, gpt2_pattern, sizeof gpt2_pattern - 1, 0, what, err) : LLMLAB_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        pt->type = TOK_PRE_METASPACE;
        if ((st = tok_json_char(v, "replacement", "\xe2\x96\x81", what, path, pt->replacement, &pt->replacement_len,
                                err)) != LLMLAB_OK ||
            (st = prepend_scheme(v, what, path, &pt->prepend, err)) != LLMLAB_OK)
            return st;
        return tok_json_bool(v, "split", 1, what, path, &pt->split, err);
    }
    if (strcmp(type, "Digits") == 0) {
        pt->type = TOK_PRE_DIGITS;
        return tok_json_bool(v, "individual_digits", 0, what, path, &pt->individual_digits, err);
    }
    if (strcmp(type, "Punctuation") == 0) {
        pt->type = TOK_PRE_PUNCTUATION;
        return behavior(v, what, path, &pt->behavior, err);
    }
    if (strcmp(type, "Whitespace") == 0) {
        pt->type = TOK_PRE_WHITESPACE;
        return tok_regex_compile(&pt->re, whitespace_pattern, sizeof whitespace_pattern - 1, 0, what, err);
    }
    if (strcmp(type, "WhitespaceSplit") == 0) {
        pt->type = TOK_PRE_WHITESPACE_SPLIT;
        return LLMLAB_OK;
    }
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: pre-tokenizer type '%.60s' is not supported", what,
                          path, type);
}

static llmlab_status pre_collect(tok_pre *seq, const cJSON *v, const char *what, const char *path, int depth,
                                 int *bytelevel, llmlab_err *err) {
    const char *type;
    llmlab_status st = typed(v, what, path, &type, err);
    if (st != LLMLAB_OK) return st;
    if (strcmp(type, "Sequence") != 0) {
        tok_pre *leaf = grow1((void **)&seq->items, &seq->n_items, sizeof *leaf, err, what);
        return leaf ? pre_leaf(leaf, v, type, what, path, bytelevel, err) : LLMLAB_ENOMEM;
    }
    if (depth > 32) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: sequences nested too deeply", what, path);
    const cJSON *arr;
    if ((st = seq_items(v, "pretokenizers", what, path, &arr, err)) != LLMLAB_OK) return st;
    int i = 0;
    for (const cJSON *e = arr->child; e && st == LLMLAB_OK; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof p, "%.200s.pretokenizers[%d]", path, i);
        st = pre_collect(seq, e, what, p, depth + 1, bytelevel, err);
    }
    return st;
}

llmlab_status tok_json_pretokenizer(tok_pre **out, const cJSON *v, const char *what, int *bytelevel,
                                    llmlab_err *err) {
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return LLMLAB_OK;
    tok_pre *seq = calloc(1, sizeof *seq);
    if (!seq) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
    seq->type = TOK_PRE_SEQUENCE;
    llmlab_status st = pre_collect(seq, v, what, "pre_tokenizer", 0, bytelevel, err);
    if (st != LLMLAB_OK) {
        tok_pre_free(seq);
        return st;
    }
    *out = seq;
    return LLMLAB_OK;
}

/* ---- post-processors -------------------------------------------------------------------- */

/* Wraps the current template: before = pre + before, after = after + post. */
static llmlab_status wrap(struct tok_bpe_tok *m, const int32_t *pre, int npre, const int32_t *post, int npost,
                          llmlab_err *err) {
    int32_t *b = malloc(((size_t)m->n_before + (size_t)npre + 1) * sizeof *b);
    int32_t *a = realloc(m->pp_after, ((size_t)m->n_after + (size_t)npost + 1) * sizeof *a);
    if (a) m->pp_after = a;
    if (!a || !b) {
        free(b);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", m->what);
    }
    if (npre) memcpy(b, pre, (size_t)npre * sizeof *b);
    if (m->n_before) memcpy(b + npre, m->pp_before, (size_t)m->n_before * sizeof *b);
    free(m->pp_before);
    m->pp_before = b;
    m->n_before += npre;
    if (npost) memcpy(a + m->n_after, post, (size_t)npost * sizeof *a);
    m->n_after += npost;
    return LLMLAB_OK;
}

static llmlab_status check_id(const struct tok_bpe_tok *m, long long id, const char *path, llmlab_err *err) {
    if (id < 0 || id >= m->n_ids || !tok_model_piece(m, (int32_t)id, NULL))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: %lld is not a token id (vocabulary size %d)", m->what,
                              path, id, (int)m->n_ids);
    return LLMLAB_OK;
}

/* The ids TemplateProcessing's special_tokens map gives name, appended to ids. */
static llmlab_status template_special(const struct tok_bpe_tok *m, const cJSON *specials, const char *name,
                                      const char *path, int32_t **ids, int *n, llmlab_err *err) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(specials, name);
    const cJSON *list = e ? cJSON_GetObjectItemCaseSensitive(e, "ids") : NULL;
    if (!cJSON_IsArray(list))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: special token '%.60s' has no ids in special_tokens",
                              m->what, path, name);
    int k = 0;
    for (const cJSON *x = list->child; x; x = x->next, k++) {
        char p[256];
        snprintf(p, sizeof p, "%.120s.special_tokens['%.60s'].ids[%d]", path, name, k);
        if (!cJSON_IsNumber(x) || x->valuedouble != (double)(long long)x->valuedouble)
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be an integer", m->what, p);
        llmlab_status st = check_id(m, (long long)x->valuedouble, p, err);
        if (st != LLMLAB_OK) return st;
        int32_t *slot = grow1((void **)ids, n, sizeof **ids, err, m->what);
        if (!slot) return LLMLAB_ENOMEM;
        *slot = (int32_t)x->valuedouble;
    }
    return LLMLAB_OK;
}

/* One item of "single": a special token name (*is_seq = 0) or the sequence. */
static llmlab_status template_item(const struct tok_bpe_tok *m, const cJSON *e, const char *path, const char **name,
                                   int *is_seq, llmlab_err *err) {
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
    const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
    const cJSON *body = sp ? sp : sq;
    const cJSON *id = body ? cJSON_GetObjectItemCaseSensitive(body, "id") : NULL;
    if (!cJSON_IsString(id))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be {\"SpecialToken\": {\"id\": ...}} or "
                              "{\"Sequence\": {\"id\": ...}}", m->what, path);
    *is_seq = sq != NULL;
    *name = id->valuestring;
    if (*is_seq && strcmp(*name, "A") != 0)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: the single template uses sequence '%.20s'", m->what,
                              path, *name);
    return LLMLAB_OK;
}

static llmlab_status template_processing(struct tok_bpe_tok *m, const cJSON *v, const char *path, llmlab_err *err) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(v, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(v, "special_tokens");
    if (!cJSON_IsArray(single))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.single must be an array", m->what, path);
    int32_t *pre = NULL, *post = NULL;
    int npre = 0, npost = 0, seen_seq = 0, i = 0;
    llmlab_status st = LLMLAB_OK;
    for (const cJSON *e = single->child; e && st == LLMLAB_OK; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof p, "%.200s.single[%d]", path, i);
        const char *name;
        int is_seq;
        if ((st = template_item(m, e, p, &name, &is_seq, err)) != LLMLAB_OK) break;
        if (is_seq && seen_seq++)
            st = llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: the sequence appears twice", m->what, p);
        else if (!is_seq)
            st = template_special(m, specials, name, path, seen_seq ? &post : &pre, seen_seq ? &npost : &npre, err);
    }
    if (st == LLMLAB_OK && !seen_seq)
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.single has no Sequence", m->what, path);
    if (st == LLMLAB_OK) st = wrap(m, pre, npre, post, npost, err);
    free(pre);
    free(post);
    return st;
}

/* RobertaProcessing / BertProcessing: "cls": [token, id] before, "sep" after. */
static llmlab_status cls_sep(struct tok_bpe_tok *m, const cJSON *v, const char *path, llmlab_err *err) {
    int32_t ids[2];
    static const char *const keys[2] = {"cls", "sep"};
    for (int k = 0; k < 2; k++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, keys[k]);
        const cJSON *id = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, 1) : NULL;
        char p[256];
        snprintf(p, sizeof p, "%.200s.%s", path, keys[k]);
        if (!cJSON_IsNumber(id))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s must be [token, id]", m->what, p);
        llmlab_status st = check_id(m, (long long)id->valuedouble, p, err);
        if (st != LLMLAB_OK) return st;
        ids[k] = (int32_t)id->valuedouble;
    }
    return wrap(m, &ids[0], 1, &ids[1], 1, err);
}

static llmlab_status post_one(struct tok_bpe_tok *m, const cJSON *v, const char *path, int depth, llmlab_err *err) {
    const char *type;
    llmlab_status st = typed(v, m->what, path, &type, err);
    if (st != LLMLAB_OK) return st;
    if (strcmp(type, "ByteLevel") == 0) return LLMLAB_OK; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return template_processing(m, v, path, err);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) return cls_sep(m, v, path, err);
    if (strcmp(type, "Sequence") != 0)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: post-processor type '%.60s' is not supported",
                              m->what, path, type);
    if (depth > 32) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: sequences nested too deeply", m->what, path);
    const cJSON *arr;
    if ((st = seq_items(v, "processors", m->what, path, &arr, err)) != LLMLAB_OK) return st;
    int i = 0;
    for (const cJSON *e = arr->child; e && st == LLMLAB_OK; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof p, "%.200s.processors[%d]", path, i);
        st = post_one(m, e, p, depth + 1, err);
    }
    return st;
}

llmlab_status tok_json_postprocessor(struct tok_bpe_tok *m, const cJSON *v, llmlab_err *err) {
    if (!v || cJSON_IsNull(v)) return LLMLAB_OK;
    return post_one(m, v, "post_processor", 0, err);
}

/* ---- decoders --------------------------------------------------------------------------- */

static llmlab_status dec_leaf(struct tok_bpe_tok *m, tok_dec_stage *d, const cJSON *v, const char *type,
                              const char *path, llmlab_err *err) {
    const char *what = m->what;
    llmlab_status st;
    if (strcmp(type, "ByteLevel") == 0) {
        d->type = TOK_DEC_BYTELEVEL;
        m->bytelevel = 1;
        return LLMLAB_OK;
    }
    if (strcmp(type, "ByteFallback") == 0 || strcmp(type, "Fuse") == 0) {
        d->type = type[0] == 'B' ? TOK_DEC_BYTEFALLBACK : TOK_DEC_FUSE;
        return LLMLAB_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        enum tok_prepend scheme;
        d->type = TOK_DEC_METASPACE;
        if ((st = tok_json_char(v, "replacement", "\xe2\x96\x81", what, path, d->replacement, &d->replacement_len,
                                err)) != LLMLAB_OK ||
            (st = prepend_scheme(v, what, path, &scheme, err)) != LLMLAB_OK)
            return st;
        d->prepend_never = scheme == TOK_PREPEND_NEVER;
        return LLMLAB_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *s;
        d->type = TOK_DEC_REPLACE;
        if ((st = tok_json_str(v, "content", 1, what, path, &s, err)) != LLMLAB_OK) return st;
        if (!(d->content = tok_strndup(s, strlen(s)))) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        d->content_len = strlen(s);
        return tok_json_pattern(v, what, path, &d->re, &d->pat, &d->pat_len, err);
    }
    if (strcmp(type, "Strip") == 0) {
        char c[8];
        int cl;
        d->type = TOK_DEC_STRIP;
        if ((st = tok_json_char(v, "content", " ", what, path, c, &cl, err)) != LLMLAB_OK ||
            (st = tok_json_int(v, "start", 0, 0, 1 << 20, what, path, &d->start, err)) != LLMLAB_OK ||
            (st = tok_json_int(v, "stop", 0, 0, 1 << 20, what, path, &d->stop, err)) != LLMLAB_OK)
            return st;
        if (!(d->content = tok_strndup(c, (size_t)cl))) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        d->content_len = (size_t)cl;
        return LLMLAB_OK;
    }
    return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: %s: decoder type '%.60s' is not supported", what, path, type);
}

static llmlab_status dec_collect(struct tok_bpe_tok *m, const cJSON *v, const char *path, int depth, llmlab_err *err) {
    const char *type;
    llmlab_status st = typed(v, m->what, path, &type, err);
    if (st != LLMLAB_OK) return st;
    if (strcmp(type, "Sequence") != 0) {
        tok_dec_stage *d = grow1((void **)&m->dec, &m->n_dec, sizeof *d, err, m->what);
        return d ? dec_leaf(m, d, v, type, path, err) : LLMLAB_ENOMEM;
    }
    if (depth > 32) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s: sequences nested too deeply", m->what, path);
    const cJSON *arr;
    if ((st = seq_items(v, "decoders", m->what, path, &arr, err)) != LLMLAB_OK) return st;
    int i = 0;
    for (const cJSON *e = arr->child; e && st == LLMLAB_OK; e = e->next, i++) {
        char p[256];
        snprintf(p, sizeof p, "%.200s.decoders[%d]", path, i);
        st = dec_collect(m, e, p, depth + 1, err);
    }
    return st;
}

llmlab_status tok_json_decoder(struct tok_bpe_tok *m, const cJSON *v, llmlab_err *err) {
    if (!v || cJSON_IsNull(v)) return LLMLAB_OK;
    m->has_decoder = 1;
    return dec_collect(m, v, "decoder", 0, err);
}
