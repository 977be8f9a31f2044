/* gguf_write_vocab.c - a model's vocabulary as tokenizer.ggml.* metadata.
 *
 * The inverse of core/gguf_vocab.c (docs/gguf.md lists the mapping), as
 * llama.cpp's converter writes it:
 *   - byte-level BPE tokenizer.json -> "gpt2": tokens, merges ("left right"),
 *     tokenizer.ggml.pre from the pre-tokenizer (GPT-2 "default", Llama-3
 *     "llama-bpe", Qwen2 "qwen2");
 *   - SentencePiece-style BPE (byte_fallback) -> "llama": tokens and scores.
 *     GGUF keeps scores, not merges, and readers rebuild the merges from the
 *     scores; a token's score here is minus the rank of the first merge that
 *     makes it, so the rebuilt order follows the original merge list;
 *   - added tokens: special -> control (3), others user-defined (4); the unk
 *     token type 2; SentencePiece byte tokens <0xNN> type 6; ids the tokenizer
 *     does not use up to vocab_size: "[PAD<id>]", type unused (5);
 *   - BOS/EOS ids and whether encoding adds them (tested by encoding "").
 * A GGUF source has its tokenizer.* keys copied unchanged; the byte fallback
 * becomes a "gpt2" vocabulary of the 256 bytes plus plain "<|id|>" tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "gguf.h"
#include "gguf_write.h"
#include "model.h"
#include "tokenizer.h"

/* The Split regexes of the Llama-3 and Qwen2 tokenizer.json pre-tokenizers (the
 * same strings core/gguf_vocab.c maps "llama-bpe" and "qwen2" back to). */
#define LLAMA3_REGEX                                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"   \
    "\\s+(?!\\S)|\\s+"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
    const llmlab_model *m;
    llmlab_gguf_writer *w;
    const char *what;    /* the tokenizer.json path, for messages */
    llmlab_err *err;
    int n;               /* tokens = cfg.vocab_size */
    const char **tok;    /* [n] strings (borrowed from the JSON tree or `names`) */
    int32_t *type;       /* [n] token types */
    float *score;        /* [n] scores ("llama" only) */
    char *names;         /* [n][16] storage for generated token strings */
} vw;

static void vw_free(vw *v) {
    free(v->tok);
    free(v->type);
    free(v->score);
    free(v->names);
}

static llmlab_status vw_alloc(vw *v) {
    v->n = v->m->cfg.vocab_size;
    v->tok = calloc((size_t)v->n, sizeof *v->tok);
    v->type = calloc((size_t)v->n, sizeof *v->type);
    v->score = calloc((size_t)v->n, sizeof *v->score);
    v->names = calloc((size_t)v->n, 16);
    if (!v->tok || !v->type || !v->score || !v->names)
        return llmlab_err_set(v->err, LLMLAB_ENOMEM, "out of memory for the vocabulary");
    return LLMLAB_OK;
}

/* BOS/EOS ids (the tokenizer's, else the config's) and whether encoding adds them. */
static llmlab_status write_specials(vw *v) {
    const llmlab_config *c = &v->m->cfg;
    int bos = llmlab_tokenizer_bos(v->m->tok), eos = llmlab_tokenizer_eos(v->m->tok);
    if (bos < 0) bos = c->bos_id;
    if (eos < 0 && c->n_eos > 0) eos = c->eos_ids[0];
    int32_t *ids = NULL;
    int n = 0;
    llmlab_status s = llmlab_tokenizer_encode(v->m->tok, "", 0, 1, &ids, &n, v->err);
    if (s) return s;
    int add_bos = bos >= 0 && n >= 1 && ids[0] == bos;
    int add_eos = eos >= 0 && n >= 1 + add_bos && ids[n - 1] == eos;
    free(ids);
    if (bos >= 0 && bos < v->n) llmlab_gguf_kv_u32(v->w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0 && eos < v->n) llmlab_gguf_kv_u32(v->w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    llmlab_gguf_kv_bool(v->w, "tokenizer.ggml.add_bos_token", add_bos);
    llmlab_gguf_kv_bool(v->w, "tokenizer.ggml.add_eos_token", add_eos);
    return LLMLAB_OK;
}

static void write_tokens(vw *v, int spm) {
    llmlab_gguf_kv_arr_str(v->w, "tokenizer.ggml.tokens", v->tok, NULL, (uint64_t)v->n);
    llmlab_gguf_kv_arr_i32(v->w, "tokenizer.ggml.token_type", v->type, (uint64_t)v->n);
    if (spm) llmlab_gguf_kv_arr_f32(v->w, "tokenizer.ggml.scores", v->score, (uint64_t)v->n);
}

/* ---- the byte fallback ------------------------------------------------------------------ */

/* GPT-2's byte-to-character map: printable Latin-1 bytes stand for themselves,
 * the others for U+0100 + their rank among the non-printable ones. UTF-8 into out. */
static void byte_char(int b, char *out) {
    int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff));
        cp = 256 + k;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = 0;
}

static llmlab_status bytes_vocab(vw *v) {
    llmlab_status s = vw_alloc(v);
    if (s) return s;
    for (int i = 0; i < v->n; i++) {
        char *name = v->names + (size_t)i * 16;
        if (i < 256) byte_char(i, name);
        else snprintf(name, 16, "<|%d|>", i);
        v->tok[i] = name;
        v->type[i] = TT_NORMAL;
    }
    llmlab_gguf_kv_str(v->w, "tokenizer.ggml.model", "gpt2");
    llmlab_gguf_kv_str(v->w, "tokenizer.ggml.pre", "default");
    write_tokens(v, 0);
    llmlab_gguf_kv_arr_str(v->w, "tokenizer.ggml.merges", NULL, NULL, 0);
    return write_specials(v);
}

/* ---- tokenizer.json ----------------------------------------------------------------------- */

typedef struct {
    const char *s;
    int id;
} entry;

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const entry *)a)->s, ((const entry *)b)->s);
}

static int lookup(const entry *e, int n, const char *s) {
    entry key = {s, 0};
    const entry *f = bsearch(&key, e, (size_t)n, sizeof *e, cmp_entry);
    return f ? f->id : -1;
}

/* One merge as "left right" into buf (NULL when malformed or too long). */
static const char *merge_str(const cJSON *it, char *buf, size_t cap) {
    if (cJSON_IsString(it)) return snprintf(buf, cap, "%s", it->valuestring) < (int)cap ? buf : NULL;
    const cJSON *l = cJSON_GetArrayItem(it, 0), *r = cJSON_GetArrayItem(it, 1);
    if (cJSON_GetArraySize(it) != 2 || !cJSON_IsString(l) || !cJSON_IsString(r)) return NULL;
    return snprintf(buf, cap, "%s %s", l->valuestring, r->valuestring) < (int)cap ? buf : NULL;
}

/* tokens and types from model.vocab, model.unk_token and added_tokens. */
static llmlab_status read_vocab(vw *v, const cJSON *root, int spm) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *it;
    if (!cJSON_IsObject(vocab)) return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: no model.vocab object", v->what);
    cJSON_ArrayForEach(it, vocab) {
        int id = cJSON_IsNumber(it) ? it->valueint : -1;
        if (id < 0 || id >= v->n)
            return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: token '%.60s' has id %d outside the model's %d rows",
                                  v->what, it->string, id, v->n);
        v->tok[id] = it->string;
        v->type[id] = TT_NORMAL;
        if (spm && strlen(it->string) == 6 && !strncmp(it->string, "<0x", 3) && it->string[5] == '>')
            v->type[id] = TT_BYTE;
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const cJSON *un = cJSON_IsString(unk) ? cJSON_GetObjectItemCaseSensitive(vocab, unk->valuestring) : NULL;
    if (cJSON_IsNumber(un)) v->type[un->valueint] = TT_UNKNOWN;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id"), *ct = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(ct) || id->valueint < 0 || id->valueint >= v->n)
            return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: an added token has no id inside the model's %d rows",
                                  v->what, v->n);
        v->tok[id->valueint] = ct->valuestring;
        if (v->type[id->valueint] != TT_UNKNOWN)
            v->type[id->valueint] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? TT_CONTROL : TT_USER;
    }
    for (int i = 0; i < v->n; i++)
        if (!v->tok[i]) {
            snprintf(v->names + (size_t)i * 16, 16, "[PAD%d]", i);
            v->tok[i] = v->names + (size_t)i * 16;
            v->type[i] = TT_UNUSED;
        }
    return LLMLAB_OK;
}

/* "default", "llama-bpe" or "qwen2" for the byte-level pre-tokenizer, or NULL. */
static const char *gpt2_pre(const cJSON *root) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(type)) return NULL;
    if (!strcmp(type->valuestring, "ByteLevel")) {
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(pt, "add_prefix_space");
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        return cJSON_IsTrue(aps) || cJSON_IsFalse(ur) ? NULL : "default";
    }
    if (strcmp(type->valuestring, "Sequence")) return NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex");
    const cJSON *blt = cJSON_GetObjectItemCaseSensitive(bl, "type");
    if (cJSON_GetArraySize(list) != 2 || !cJSON_IsString(rx) || !cJSON_IsString(blt) ||
        strcmp(blt->valuestring, "ByteLevel"))
        return NULL;
    if (!strcmp(rx->valuestring, LLAMA3_REGEX)) return "llama-bpe";
    if (!strcmp(rx->valuestring, QWEN2_REGEX)) return "qwen2";
    return NULL;
}

static llmlab_status write_merges(vw *v, const cJSON *merges) {
    int n = cJSON_GetArraySize(merges);
    char **m = calloc((size_t)(n ? n : 1), sizeof *m);
    llmlab_status s = m ? LLMLAB_OK : llmlab_err_set(v->err, LLMLAB_ENOMEM, "out of memory for the merges");
    char buf[1024];
    for (int i = 0; i < n && !s; i++) {
        const char *t = merge_str(cJSON_GetArrayItem(merges, i), buf, sizeof buf);
        if (!t) s = llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: model.merges[%d] is not a pair of tokens", v->what, i);
        else if (!(m[i] = strdup(t))) s = llmlab_err_set(v->err, LLMLAB_ENOMEM, "out of memory for the merges");
    }
    if (!s) llmlab_gguf_kv_arr_str(v->w, "tokenizer.ggml.merges", (const char *const *)m, NULL, (uint64_t)n);
    for (int i = 0; m && i < n; i++) free(m[i]);
    free(m);
    return s;
}

/* Scores for a "llama" vocabulary: -(rank of the first merge making the token);
 * tokens no merge makes rank after every merge, by id. */
static llmlab_status spm_scores(vw *v, const cJSON *merges) {
    int nm = cJSON_GetArraySize(merges);
    entry *e = malloc((size_t)v->n * sizeof *e);
    if (!e) return llmlab_err_set(v->err, LLMLAB_ENOMEM, "out of memory for the scores");
    for (int i = 0; i < v->n; i++) e[i] = (entry){v->tok[i], i}, v->score[i] = -(float)(nm + i);
    qsort(e, (size_t)v->n, sizeof *e, cmp_entry);
    char buf[1024];
    for (int i = 0; i < nm; i++) {
        const char *t = merge_str(cJSON_GetArrayItem(merges, i), buf, sizeof buf);
        const char *sp = t && t[0] ? strchr(t + 1, ' ') : NULL;
        if (!sp) {
            free(e);
            return llmlab_err_set(v->err, LLMLAB_EFORMAT, "%s: model.merges[%d] is not a pair of tokens", v->what, i);
        }
        memmove((char *)sp, sp + 1, strlen(sp + 1) + 1); /* "left right" -> "leftright" */
        int id = lookup(e, v->n, t);
        if (id >= 0 && v->score[id] < -(float)i) v->score[id] = -(float)i;
    }
    free(e);
    return LLMLAB_OK;
}

/* Whether the SentencePiece normalizer/pre-tokenizer prepends "▁". */
static int add_space_prefix(const cJSON *root) {
    char *norm = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    char *pre = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
    int r = (norm && strstr(norm, "\"Prepend\"")) ||
            (pre && strstr(pre, "\"Metaspace\"") && !strstr(pre, "\"prepend_scheme\":\"never\""));
    cJSON_free(norm);
    cJSON_free(pre);
    return r;
}

static llmlab_status json_vocab(vw *v, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") || !cJSON_IsArray(merges))
        return llmlab_err_set(v->err, LLMLAB_EUNSUPPORTED,
                              "%s: GGUF export needs a BPE tokenizer with merges (model.type is %s)", v->what,
                              cJSON_IsString(type) ? type->valuestring : "missing");
    int spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    const char *pre = spm ? NULL : gpt2_pre(root);
    if (!spm && !pre)
        return llmlab_err_set(v->err, LLMLAB_EUNSUPPORTED,
                              "%s: the pre-tokenizer is none GGUF readers know (byte-level GPT-2, Llama-3 or Qwen2 "
                              "regex; or SentencePiece-style BPE with byte_fallback)",
                              v->what);
    llmlab_status s = vw_alloc(v);
    if (!s) s = read_vocab(v, root, spm);
    if (!s && spm) s = spm_scores(v, merges);
    if (s) return s;
    llmlab_gguf_kv_str(v->w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) llmlab_gguf_kv_str(v->w, "tokenizer.ggml.pre", pre);
    write_tokens(v, spm);
    if (!spm) s = write_merges(v, merges);
    for (int i = 0; spm && i < v->n; i++)
        if (v->type[i] == TT_UNKNOWN) {
            llmlab_gguf_kv_u32(v->w, "tokenizer.ggml.unknown_token_id", (uint32_t)i);
            break;
        }
    if (spm) llmlab_gguf_kv_bool(v->w, "tokenizer.ggml.add_space_prefix", add_space_prefix(root));
    if (!s) s = write_specials(v);
    return s;
}

static llmlab_status tokenizer_json(vw *v) {
    size_t pl = strlen(v->m->path);
    char *path = malloc(pl + sizeof "/tokenizer.json");
    if (!path) return llmlab_err_set(v->err, LLMLAB_ENOMEM, "out of memory");
    memcpy(path, v->m->path, pl);
    memcpy(path + pl, "/tokenizer.json", sizeof "/tokenizer.json");
    v->what = path;
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long len = -1;
    if (f && !fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
        (text = malloc((size_t)len + 1)) && fread(text, 1, (size_t)len, f) == (size_t)len)
        text[len] = 0;
    else if (text) text = (free(text), NULL);
    if (f) fclose(f);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    llmlab_status s = root ? json_vocab(v, root)
                           : llmlab_err_set(v->err, LLMLAB_EIO, "%s: cannot read it as JSON", path);
    cJSON_Delete(root);
    free(path);
    return s;
}

/* ---- public ---------------------------------------------------------------------------------- */

llmlab_status llmlab_gguf_write_vocab(llmlab_gguf_writer *w, const llmlab_model *m, llmlab_err *err) {
    if (m->gguf) { /* a GGUF source: its vocabulary as it is */
        for (int64_t i = 0; i < llmlab_gguf_n_kv(m->gguf); i++) {
            const char *k = llmlab_gguf_kv_key(m->gguf, i);
            if (!strncmp(k, "tokenizer.", 10)) llmlab_gguf_kv_copy(w, k, llmlab_gguf_kv_value(m->gguf, i));
        }
        return LLMLAB_OK;
    }
    vw v = {.m = m, .w = w, .what = m->path, .err = err};
    llmlab_status s = !strcmp(llmlab_tokenizer_kind(m->tok), "bytes") ? bytes_vocab(&v) : tokenizer_json(&v);
    vw_free(&v);
    return s;
}
