/* fuzz_tokenizer.c - libFuzzer harness for the tokenizer.
 *
 * The first input byte picks what the rest is:
 *   0-127    a tokenizer.json: it must load or fail with a message, never crash
 *            or leak; a loaded one must encode a few strings and decode them;
 *   128-191  text for the GPT-2 fixture (byte-level BPE, no normalizer; its
 *            whitespace-swallowing lstrip/rstrip added tokens dropped):
 *            decode(encode(x)) must be x, byte for byte;
 *   192-255  text for the Llama-2 fixture (SentencePiece-style BPE with byte
 *            fallback): encoding must work.
 * Every decode is also streamed, and the stream must equal the one-shot text.
 * The fixtures are read from $LLMLAB_TOKENIZER_FIXTURES (default
 * tests/data/tokenizers, i.e. run from the repository root).  Build and run:
 * see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static llmlab_tokenizer *gpt2, *llama2; /* fixtures, loaded once */

/* Loads a fixture; lossless != 0 drops the added tokens with lstrip/rstrip
 * (they swallow whitespace, so decode(encode(x)) could not be x). */
static llmlab_tokenizer *fixture(const char *name, int lossless) {
    const char *dir = getenv("LLMLAB_TOKENIZER_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", dir ? dir : "tests/data/tokenizers", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_tokenizer: cannot open %s (run from the repository root)\n", path);
        abort();
    }
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cJSON *root = cJSON_ParseWithLength(buf, n);
    cJSON *added = root ? cJSON_GetObjectItem(root, "added_tokens") : NULL;
    for (cJSON *e = added ? added->child : NULL, *next; lossless && e; e = next) {
        next = e->next;
        if (cJSON_IsTrue(cJSON_GetObjectItem(e, "lstrip")) || cJSON_IsTrue(cJSON_GetObjectItem(e, "rstrip")))
            cJSON_Delete(cJSON_DetachItemViaPointer(added, e));
    }
    llmlab_tokenizer *t;
    llmlab_err err = {0};
    if (!root || llmlab_tokenizer_from_json(&t, root, path, &err) != LLMLAB_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        abort();
    }
    cJSON_Delete(root);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    gpt2 = fixture("bytelevel_gpt2", 1);
    llama2 = fixture("sp_llama2", 0);
    return 0;
}

/* Encodes text, decodes the ids one-shot and streamed (which must agree);
 * returns the one-shot text (malloc'd), or NULL when encoding failed. */
static char *encode_decode(const llmlab_tokenizer *t, const char *text, size_t n, size_t *len) {
    int32_t *ids;
    int k;
    llmlab_err err = {0};
    if (llmlab_tokenizer_encode(t, text, n, 1, &ids, &k, &err) != LLMLAB_OK) {
        if (!err.msg[0]) abort();
        return NULL;
    }
    char *out;
    if (llmlab_tokenizer_decode(t, ids, k, 0, &out, len, &err) != LLMLAB_OK) abort();
    llmlab_detok *d;
    if (llmlab_detok_create(&d, t, 0, &err) != LLMLAB_OK) abort();
    size_t got = 0;
    for (int i = 0; i <= k; i++) {
        const char *p;
        size_t m;
        llmlab_status s = i < k ? llmlab_detok_push(d, ids[i], &p, &m, &err) : llmlab_detok_flush(d, &p, &m, &err);
        if (s != LLMLAB_OK || got + m > *len || memcmp(out + got, p, m) != 0) abort();
        got += m;
    }
    if (got != *len) abort();
    llmlab_detok_free(d);
    free(ids);
    return out;
}

static void fuzz_json(const char *data, size_t size) {
    cJSON *root = cJSON_ParseWithLength(data, size);
    if (!root) return;
    llmlab_tokenizer *t;
    llmlab_err err = {0};
    if (llmlab_tokenizer_from_json(&t, root, "fuzz.json", &err) == LLMLAB_OK) {
        static const char *const texts[] = {"", "Hello world", " a  b\n\t", "\xe2\x96\x81x\xff\xc3", "<s>x</s>"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            size_t len;
            free(encode_decode(t, texts[i], strlen(texts[i]), &len));
        }
        int v = llmlab_tokenizer_vocab_size(t);
        for (int32_t id = -1; id <= v && id < 64; id++) (void)llmlab_tokenizer_piece(t, id);
        llmlab_tokenizer_free(t);
    } else if (!err.msg[0]) {
        abort();
    }
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t n = size - 1;
    /* A copy of exactly n bytes, so ASan sees any over-read. */
    char *text = malloc(n ? n : 1);
    if (!text) return 0;
    memcpy(text, data + 1, n);
    if (data[0] < 128) {
        fuzz_json(text, n);
    } else {
        size_t len;
        char *back = encode_decode(data[0] < 192 ? gpt2 : llama2, text, n, &len);
        if (data[0] < 192 && (!back || len != n || memcmp(back, text, n) != 0)) abort();
        free(back);
    }
    free(text);
    return 0;
}
