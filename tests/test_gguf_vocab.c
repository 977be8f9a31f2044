/* test_gguf_vocab.c - GGUF vocabularies (tokenizer.ggml.*) as tokenizers.
 *
 * Each fixture tokenizer.json (made by the Hugging Face `tokenizers` library,
 * tools/make_tokenizer_fixtures.py) is rewritten here as the GGUF file
 * llama.cpp's converter would make of it, byte by byte with the test writer
 * (tests/util/gguf_writer.c, independent of the reader); then
 * llmlab_tokenizer_load_gguf must reproduce every case the library recorded:
 * ids, ids with special tokens, and both decodes.  For the
 * SentencePiece fixture the file carries scores and no merges, so the merges are
 * rebuilt from the vocabulary.  The key order, version and alignment of the
 * written files change every run.  Then the errors (unsupported model, unknown
 * pre-tokenizer, count mismatch, bad merges and ids) and `llmlab tokenize`. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/rng.h"
#include "core/tokenizer.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/gguf_writer.h"
#include "util/proc.h"
#include "util/tmpdir.h"
#include "util/tok_cases.h"

static char *dir;
static llmlab_rng g_rng;
static uint64_t g_seed;

static void setup(void) {
    dir = tmpdir_make();
    g_seed = fixture_seed("gguf_vocab");
    llmlab_rng_seed(&g_rng, g_seed, 0);
}

static void teardown(void) { tmpdir_remove(dir); }

TestSuite(gguf_vocab, .init = setup, .fini = teardown, .timeout = 300);

static uint64_t rnd(void) { return llmlab_rng_next(&g_rng); }

/* ---- metadata pairs, encoded with tests/util/gguf_writer.c ------------------------------ */

/* One metadata pair, already encoded (type tag + value) after its key. */
typedef struct {
    gw_buf kv; /* key, type tag and value, as they go into the file */
} entry;

typedef struct {
    entry e[32]; /* pairs in the order they were added (shuffled when written) */
    int n;       /* pairs used */
} kvlist;

static gw_buf *new_kv(kvlist *l, const char *key, uint32_t type) {
    cr_assert_lt(l->n, 32);
    gw_buf *b = &l->e[l->n++].kv;
    memset(b, 0, sizeof *b);
    gw_put_cstr(b, key);
    gw_put_le(b, type, 4);
    return b;
}

static void kv_str(kvlist *l, const char *key, const char *v) { gw_put_cstr(new_kv(l, key, GW_STR), v); }
static void kv_u32(kvlist *l, const char *key, uint32_t v) { gw_put_le(new_kv(l, key, GW_U32), v, 4); }
static void kv_bool(kvlist *l, const char *key, int v) { gw_put_le(new_kv(l, key, GW_BOOL), (uint64_t)v, 1); }

static gw_buf *kv_array(kvlist *l, const char *key, uint32_t elem, uint64_t n) {
    gw_buf *b = new_kv(l, key, GW_ARR);
    gw_put_le(b, elem, 4);
    gw_put_le(b, n, 8);
    return b;
}

/* Writes the pairs in a random order, version 2 or 3, no tensors. */
static char *write_gguf(const char *name, kvlist *l) {
    for (int i = l->n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        entry t = l->e[i];
        l->e[i] = l->e[j];
        l->e[j] = t;
    }
    gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_put_le(&b, rnd() % 2 ? 3 : 2, 4);
    gw_put_le(&b, 0, 8);
    gw_put_le(&b, (uint64_t)l->n, 8);
    for (int i = 0; i < l->n; i++) {
        gw_put(&b, l->e[i].kv.p, l->e[i].kv.n);
        free(l->e[i].kv.p);
    }
    l->n = 0;
    char *p = gw_write_file(dir, name, &b);
    free(b.p);
    return p;
}

/* ---- fixtures -> GGUF metadata ---------------------------------------------------------------- */

typedef struct {
    int n;           /* tokens */
    const char **tok; /* [n] token strings (borrowed from the JSON tree) */
    int *type;       /* [n] GGUF token types */
    int bos;         /* the BOS the template adds, or -1 */
    int unk;         /* model.unk_token id, or -1 */
    cJSON *root;     /* the fixture tokenizer.json */
} fixture;

static char *fixture_path(const char *name, const char *file) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/tokenizers/%s/%s", LLMLAB_TEST_DATA, name, file);
    return p;
}

static int id_of(const fixture *f, const char *s) {
    for (int i = 0; i < f->n; i++)
        if (f->tok[i] && !strcmp(f->tok[i], s)) return i;
    return -1;
}

/* Reads the fixture's vocabulary and added tokens; token types as llama.cpp's
 * converter assigns them. */
static void load_fixture(fixture *f, const char *name, int spm) {
    memset(f, 0, sizeof *f);
    char *text = fsu_read(fixture_path(name, "tokenizer.json"), NULL);
    cr_assert_not_null(text, "fixture %s missing", name);
    f->root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(f->root);
    const cJSON *model = cJSON_GetObjectItem(f->root, "model"), *vocab = cJSON_GetObjectItem(model, "vocab");
    const cJSON *added = cJSON_GetObjectItem(f->root, "added_tokens"), *it;
    cJSON_ArrayForEach(it, vocab) if (it->valueint + 1 > f->n) f->n = it->valueint + 1;
    cJSON_ArrayForEach(it, added) if (cJSON_GetObjectItem(it, "id")->valueint + 1 > f->n) f->n =
        cJSON_GetObjectItem(it, "id")->valueint + 1;
    f->tok = calloc((size_t)f->n, sizeof *f->tok);
    f->type = calloc((size_t)f->n, sizeof *f->type);
    cJSON_ArrayForEach(it, vocab) {
        f->tok[it->valueint] = it->string;
        f->type[it->valueint] = 1;
        if (spm && !strncmp(it->string, "<0x", 3) && strlen(it->string) == 6) f->type[it->valueint] = 6;
    }
    cJSON_ArrayForEach(it, added) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        f->tok[id] = cJSON_GetObjectItem(it, "content")->valuestring;
        f->type[id] = cJSON_IsTrue(cJSON_GetObjectItem(it, "special")) ? 3 : 4;
    }
    for (int i = 0; i < f->n; i++) cr_assert_not_null(f->tok[i], "%s: id %d unused", name, i);
    const cJSON *unk = cJSON_GetObjectItem(model, "unk_token");
    f->unk = cJSON_IsString(unk) ? id_of(f, unk->valuestring) : -1;
    if (f->unk >= 0) f->type[f->unk] = 2;
    /* The BOS: the template's first special token, if any. */
    f->bos = -1;
    const cJSON *pp = cJSON_GetObjectItem(f->root, "post_processor");
    char *pps = pp ? cJSON_PrintUnformatted(pp) : NULL;
    const char *sp = pps ? strstr(pps, "\"SpecialToken\":{\"id\":\"") : NULL;
    if (sp) {
        char piece[64] = "";
        sscanf(sp + strlen("\"SpecialToken\":{\"id\":\""), "%63[^\"]", piece);
        f->bos = id_of(f, piece);
    }
    free(pps);
}

static void free_fixture(fixture *f) {
    cJSON_Delete(f->root);
    free(f->tok);
    free(f->type);
}

static void kv_tokens(kvlist *l, const fixture *f) {
    gw_buf *b = kv_array(l, "tokenizer.ggml.tokens", GW_STR, (uint64_t)f->n);
    for (int i = 0; i < f->n; i++) gw_put_cstr(b, f->tok[i]);
    b = kv_array(l, "tokenizer.ggml.token_type", GW_I32, (uint64_t)f->n);
    for (int i = 0; i < f->n; i++) gw_put_le(b, (uint64_t)f->type[i], 4);
}

static void kv_merges(kvlist *l, const fixture *f) {
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(f->root, "model"), "merges"), *it;
    gw_buf *b = kv_array(l, "tokenizer.ggml.merges", GW_STR, (uint64_t)cJSON_GetArraySize(m));
    cJSON_ArrayForEach(it, m) {
        char s[512];
        if (cJSON_IsString(it)) snprintf(s, sizeof s, "%s", it->valuestring);
        else snprintf(s, sizeof s, "%s %s", cJSON_GetArrayItem(it, 0)->valuestring, cJSON_GetArrayItem(it, 1)->valuestring);
        gw_put_cstr(b, s);
    }
}

/* Scores as a SentencePiece model has them: -id for normal tokens, 0 otherwise. */
static void kv_scores(kvlist *l, const fixture *f) {
    gw_buf *b = kv_array(l, "tokenizer.ggml.scores", GW_F32, (uint64_t)f->n);
    for (int i = 0; i < f->n; i++) {
        float s = f->type[i] == 1 ? (float)-i : 0.0f;
        uint32_t u;
        memcpy(&u, &s, 4);
        gw_put_le(b, u, 4);
    }
}

/* The GGUF file llama.cpp would write for the fixture; pre: tokenizer.ggml.pre
 * (NULL for "llama" models). */
static char *fixture_gguf(const char *name, const char *pre, fixture *f) {
    int spm = pre == NULL;
    load_fixture(f, name, spm);
    kvlist l = {0};
    kv_str(&l, "general.architecture", spm ? "llama" : "qwen2");
    kv_str(&l, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    kv_tokens(&l, f);
    if (spm) kv_scores(&l, f);
    else {
        kv_str(&l, "tokenizer.ggml.pre", pre);
        kv_merges(&l, f);
    }
    if (f->bos >= 0) kv_u32(&l, "tokenizer.ggml.bos_token_id", (uint32_t)f->bos);
    if (f->unk >= 0) kv_u32(&l, "tokenizer.ggml.unknown_token_id", (uint32_t)f->unk);
    kv_bool(&l, "tokenizer.ggml.add_bos_token", f->bos >= 0);
    kv_bool(&l, "tokenizer.ggml.add_eos_token", 0);
    char file[64];
    snprintf(file, sizeof file, "%s.gguf", name);
    return write_gguf(file, &l);
}

/* ---- the cases ------------------------------------------------------------------------------- */

static void expect_ids(const cJSON *want, const int32_t *got, int n, const char *what, int line) {
    int ok = cJSON_GetArraySize(want) == n;
    for (int i = 0; ok && i < n; i++) ok = cJSON_GetArrayItem(want, i)->valueint == got[i];
    if (!ok) {
        char g[2048] = "";
        for (int i = 0; i < n && strlen(g) < 2000; i++) snprintf(g + strlen(g), sizeof g - strlen(g), "%d ", (int)got[i]);
        char *w = cJSON_PrintUnformatted(want);
        cr_assert_fail("case %d: %s: got [%s] want %s", line, what, g, w);
    }
}

static void expect_decode(const llmlab_tokenizer *t, const cJSON *ids, int skip, const char *want, size_t wlen,
                          int line) {
    int n = cJSON_GetArraySize(ids);
    int32_t *v = malloc(((size_t)n + 1) * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = cJSON_GetArrayItem(ids, i)->valueint;
    char *text = NULL;
    size_t len = 0;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_decode(t, v, n, skip, &text, &len, &e), LLMLAB_OK, "case %d: %s", line, e.msg);
    cr_assert(len == wlen && !memcmp(text, want, len), "case %d: decode(skip=%d) '%.*s' want '%s'", line, skip,
              (int)len, text, want);
    free(text);
    free(v);
}

/* Every case of the fixture through the GGUF tokenizer. */
static void check_cases(const char *name, const llmlab_tokenizer *t) {
    tok_cases cs;
    tok_cases_load(&cs, name);
    for (int i = 0; i < cs.n; i++) {
        const tok_case *c = &cs.v[i];
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL;
            int n = 0;
            llmlab_err e = {0};
            cr_assert_eq(llmlab_tokenizer_encode(t, c->text, c->text_len, special, &ids, &n, &e), LLMLAB_OK,
                         "case %d: %s", c->line, e.msg);
            expect_ids(cJSON_GetObjectItem(c->json, special ? "ids_special" : "ids"), ids, n,
                       special ? "ids_special" : "ids", c->line);
            free(ids);
        }
        const cJSON *ids = cJSON_GetObjectItem(c->json, "ids_special");
        expect_decode(t, ids, 0, c->decoded, c->decoded_len, c->line);
        expect_decode(t, ids, 1, c->decoded_skip, c->decoded_skip_len, c->line);
    }
    cr_assert_gt(cs.n, 40, "%s: only %d cases", name, cs.n);
    tok_cases_free(&cs);
}

static void run_fixture(const char *name, const char *pre, const char *kind) {
    fixture f;
    char *p = fixture_gguf(name, pre, &f);
    llmlab_tokenizer *t = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_load_gguf(&t, p, &e), LLMLAB_OK, "%s (seed %llu)", e.msg, (unsigned long long)g_seed);
    cr_assert_str_eq(llmlab_tokenizer_kind(t), kind);
    cr_assert_eq(llmlab_tokenizer_vocab_size(t), f.n);
    if (f.bos >= 0) cr_assert_eq(llmlab_tokenizer_bos(t), f.bos);
    for (int i = 0; i < f.n; i++) {
        cr_assert_eq(llmlab_tokenizer_token_id(t, f.tok[i]), i, "token %d '%s'", i, f.tok[i]);
        cr_assert_eq(llmlab_tokenizer_is_special(t, i), f.type[i] == 2 || f.type[i] == 3, "token %d special", i);
    }
    check_cases(name, t);
    llmlab_tokenizer_free(t);
    free_fixture(&f);
    free(p);
}

Test(gguf_vocab, llama3_bytelevel_matches_the_library) { run_fixture("bytelevel_llama3", "llama-bpe", "bpe-bytelevel"); }
Test(gguf_vocab, qwen2_bytelevel_matches_the_library) { run_fixture("bytelevel_qwen2", "qwen2", "bpe-bytelevel"); }
Test(gguf_vocab, llama2_sentencepiece_matches_the_library) { run_fixture("sp_llama2", NULL, "bpe-sentencepiece"); }

/* ---- errors ------------------------------------------------------------------------------------ */

/* A tiny "gpt2" vocabulary: a, b, ab, <|s|> (control); merge "a b". */
typedef enum { E_BERT, E_PRE, E_TYPES, E_SCORES, E_MERGE, E_MERGE_FORM, E_BOS, E_NO_TOKENS, E_NO_MODEL, E_DUP, E_TYPE9,
               E_BOS_MISSING } err_case;

static char *tiny_gguf(err_case c) {
    kvlist l = {0};
    if (c != E_NO_MODEL) kv_str(&l, "tokenizer.ggml.model", c == E_BERT ? "bert" : c == E_SCORES ? "llama" : "gpt2");
    kv_str(&l, "tokenizer.ggml.pre", c == E_PRE ? "falcon-9" : "default");
    const char *toks[] = {"a", "b", "ab", c == E_DUP ? "a" : "<|s|>"};
    if (c != E_NO_TOKENS) {
        gw_buf *b = kv_array(&l, "tokenizer.ggml.tokens", GW_STR, 4);
        for (int i = 0; i < 4; i++) gw_put_cstr(b, toks[i]);
    }
    int nt = c == E_TYPES ? 3 : 4;
    gw_buf *b = kv_array(&l, "tokenizer.ggml.token_type", GW_I32, (uint64_t)nt);
    for (int i = 0; i < nt; i++) gw_put_le(b, i == 3 ? 3 : c == E_TYPE9 ? 9 : 1, 4);
    if (c == E_SCORES) {
        b = kv_array(&l, "tokenizer.ggml.scores", GW_F32, 5);
        for (int i = 0; i < 5; i++) gw_put_le(b, 0, 4);
    }
    b = kv_array(&l, "tokenizer.ggml.merges", GW_STR, 1);
    gw_put_cstr(b, c == E_MERGE ? "a c" : c == E_MERGE_FORM ? "ab" : "a b");
    if (c != E_BOS_MISSING) kv_u32(&l, "tokenizer.ggml.bos_token_id", c == E_BOS ? 4 : 3);
    kv_bool(&l, "tokenizer.ggml.add_bos_token", 1);
    return write_gguf("tiny.gguf", &l);
}

static void expect_err(err_case c, llmlab_status code, const char *n1, const char *n2) {
    char *p = tiny_gguf(c);
    llmlab_tokenizer *t = (llmlab_tokenizer *)p;
    llmlab_err e = {0};
    llmlab_status s = llmlab_tokenizer_load_gguf(&t, p, &e);
    cr_assert_eq(s, code, "case %d: status %d want %d: %s", (int)c, s, code, e.msg);
    cr_assert_null(t);
    cr_assert(strstr(e.msg, "tiny.gguf"), "case %d: no file in '%s'", (int)c, e.msg);
    cr_assert(!n1 || strstr(e.msg, n1), "case %d: '%s' lacks '%s'", (int)c, e.msg, n1);
    cr_assert(!n2 || strstr(e.msg, n2), "case %d: '%s' lacks '%s'", (int)c, e.msg, n2);
    free(p);
}

Test(gguf_vocab, errors_name_the_problem) {
    expect_err(E_BERT, LLMLAB_EUNSUPPORTED, "tokenizer.ggml.model 'bert' is not supported", "'gpt2'");
    expect_err(E_PRE, LLMLAB_EUNSUPPORTED, "tokenizer.ggml.pre 'falcon-9' is not supported", "'llama-bpe'");
    expect_err(E_TYPES, LLMLAB_EFORMAT, "tokenizer.ggml.token_type has 3 entries for 4 tokens", NULL);
    expect_err(E_SCORES, LLMLAB_EFORMAT, "tokenizer.ggml.scores has 5 entries for 4 tokens", NULL);
    expect_err(E_MERGE, LLMLAB_EFORMAT, "tokenizer.ggml.merges[0] ('a c'): its right part is not a token", NULL);
    expect_err(E_MERGE_FORM, LLMLAB_EFORMAT, "merges[0] ('ab') is not 'left right'", NULL);
    expect_err(E_BOS, LLMLAB_EFORMAT, "tokenizer.ggml.bos_token_id = 4 is outside the vocabulary (4 tokens)", NULL);
    expect_err(E_NO_TOKENS, LLMLAB_EFORMAT, "no tokenizer.ggml.tokens", NULL);
    expect_err(E_NO_MODEL, LLMLAB_EFORMAT, "no tokenizer.ggml.model", NULL);
    expect_err(E_DUP, LLMLAB_EUNSUPPORTED, "tokens 0 and 3 are both 'a'", NULL);
    expect_err(E_TYPE9, LLMLAB_EFORMAT, "tokenizer.ggml.token_type[0] is not a token type", NULL);
    expect_err(E_BOS_MISSING, LLMLAB_EFORMAT, "add_bos_token is true but tokenizer.ggml.bos_token_id is missing",
               NULL);
    /* Not a GGUF file at all: the reader's message comes through. */
    char *p = fsu_join(dir, "x.gguf");
    proc_write_file(p, "{\"model\": {}}");
    llmlab_tokenizer *t = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_tokenizer_load_gguf(&t, p, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "not a GGUF file"), "%s", e.msg);
    free(p);
}

/* ---- llmlab tokenize -------------------------------------------------------------------------- */

Test(gguf_vocab, tokenize_command_reads_gguf_and_json) {
    fixture f;
    char *p = fixture_gguf("bytelevel_llama3", "llama-bpe", &f);
    /* The "Hello world" case of the fixture. */
    tok_cases cs;
    tok_cases_load(&cs, "bytelevel_llama3");
    const cJSON *c = NULL;
    for (int i = 0; i < cs.n && !c; i++)
        if (cs.v[i].text_len == 11 && !memcmp(cs.v[i].text, "Hello world", 11)) c = cs.v[i].json;
    cr_assert_not_null(c);
    char want[256] = "", want_sp[256] = "";
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(c, "ids")) snprintf(want + strlen(want), sizeof want - strlen(want),
                                                                     "%s%d", want[0] ? " " : "", it->valueint);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(c, "ids_special")) snprintf(
        want_sp + strlen(want_sp), sizeof want_sp - strlen(want_sp), "%s%d", want_sp[0] ? " " : "", it->valueint);
    char cmd[4096], out[4096], err[4096];
    /* GGUF and tokenizer.json give the same ids; the file kind comes from its magic. */
    const char *files[2] = {p, fixture_path("bytelevel_llama3", "tokenizer.json")};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' -p 'Hello world'", LLMLAB_BIN, files[k]);
        cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s: %s", cmd, err);
        cr_assert(!strncmp(out, want, strlen(want)) && !strcmp(out + strlen(want), "\n"), "'%s' want '%s'", out, want);
    }
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' -p 'Hello world' --special", LLMLAB_BIN, p);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(!strncmp(out, want_sp, strlen(want_sp)), "'%s' want '%s'", out, want_sp);
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' -p 'Hello world' --special --count", LLMLAB_BIN, p);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert_eq(atoi(out), cJSON_GetArraySize(cJSON_GetObjectItem(c, "ids_special")));
    /* --decode gives the text back; --pieces one "id<TAB>piece" line per token. */
    char ids_csv[256];
    snprintf(ids_csv, sizeof ids_csv, "%s", want_sp);
    for (char *q = ids_csv; *q; q++)
        if (*q == ' ') *q = ',';
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' --decode %s", LLMLAB_BIN, p, ids_csv);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(out, "<|begin_of_text|>Hello world\n");
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' -p 'Hello' --pieces", LLMLAB_BIN, p);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 0, "%s", err);
    char *tab = strchr(out, '\t'), *end = strchr(out, '\n');
    cr_assert(tab && end && tab < end, "'%s'", out);
    *end = 0;
    int first = atoi(out);
    cr_assert(first >= 0 && first < f.n, "'%s'", out);
    cr_assert_str_eq(tab + 1, f.tok[first], "piece of %d", first);
    /* Bad input: exit 1 with the loader's message; bad usage: exit 2. */
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s/none.gguf' -p x", LLMLAB_BIN, dir);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "none.gguf"), "%s", err);
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer '%s' --decode 1,x", LLMLAB_BIN, p);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2, "%s", err);
    snprintf(cmd, sizeof cmd, "%s tokenize -p x", LLMLAB_BIN);
    cr_assert_eq(proc_run(cmd, out, sizeof out, err, sizeof err), 2, "%s", err);
    tok_cases_free(&cs);
    free_fixture(&f);
    free(p);
}
