/* fuzz_gguf.c - libFuzzer harness for the GGUF reader and the vocabulary conversion.
 *
 * Each input is written as a file and opened (so mmap is exercised).  Whatever
 * the bytes, the open must either succeed with every value readable and every
 * tensor inside the mapping, or fail with a message.  An opened file is also
 * handed to llmlab_tokenizer_load_gguf, and a tokenizer that loads encodes and
 * decodes a short text.  Build and run: see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gguf.h"
#include "core/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

/* Reads every element of v (recursively); returns a checksum so nothing is optimised away. */
static unsigned walk(const llmlab_gguf_value *v) {
    unsigned sum = 0;
    uint64_t u;
    int64_t i;
    double d;
    int b;
    size_t len;
    if (llmlab_gguf_value_type(v) == LLMLAB_GGUF_STRING) {
        const char *s = llmlab_gguf_value_str(v, &len);
        if (!s || s[len] != 0) abort();
        return len ? (unsigned char)s[len - 1] : 0;
    }
    if (llmlab_gguf_value_type(v) != LLMLAB_GGUF_ARRAY) {
        sum += !llmlab_gguf_value_u64(v, &u) + !llmlab_gguf_value_i64(v, &i) + !llmlab_gguf_value_f64(v, &d) +
               !llmlab_gguf_value_bool(v, &b);
        return sum;
    }
    uint64_t n = llmlab_gguf_arr_len(v);
    for (uint64_t k = 0; k < n; k++) {
        switch (llmlab_gguf_arr_type(v)) {
        case LLMLAB_GGUF_STRING: {
            const char *s = llmlab_gguf_arr_str(v, k, &len);
            if (!s || s[len] != 0) abort();
            sum += len;
            break;
        }
        case LLMLAB_GGUF_ARRAY: {
            const llmlab_gguf_value *kid = llmlab_gguf_arr_arr(v, k);
            if (!kid) abort();
            sum += walk(kid);
            break;
        }
        default:
            sum += !llmlab_gguf_arr_u64(v, k, &u) + !llmlab_gguf_arr_i64(v, k, &i) + !llmlab_gguf_arr_f64(v, k, &d) +
                   !llmlab_gguf_arr_bool(v, k, &b);
        }
    }
    if (llmlab_gguf_arr_str(v, n, &len) || llmlab_gguf_arr_u64(v, n, &u) == 0) abort(); /* past the end */
    return sum;
}

static void check_file(const llmlab_gguf *g) {
    unsigned sum = 0;
    for (int64_t k = 0; k < llmlab_gguf_n_kv(g); k++) {
        const char *key = llmlab_gguf_kv_key(g, k);
        if (!key || llmlab_gguf_find_key(g, key) != k) abort(); /* keys are unique */
        sum += walk(llmlab_gguf_kv_value(g, k));
    }
    uint64_t end = llmlab_gguf_file_size(g), data = llmlab_gguf_data_offset(g);
    for (int64_t k = 0; k < llmlab_gguf_n_tensors(g); k++) {
        const llmlab_gguf_tensor *t = llmlab_gguf_tensor_at(g, k);
        if (llmlab_gguf_find_tensor(g, t->name) != t) abort();
        if (t->offset % llmlab_gguf_alignment(g) || data + t->offset + t->nbytes > end) abort();
        const void *p;
        size_t nb;
        llmlab_err err = {0};
        if (llmlab_gguf_tensor_data(g, t, &p, &nb, &err) == LLMLAB_OK) {
            const uint8_t *q = p;
            if (nb != t->nbytes) abort();
            if (nb) sum += q[0] + q[nb - 1]; /* touch both ends of the mapped bytes */
        } else if (t->known_type || err.msg[0] == 0) {
            abort(); /* only an unknown type may refuse */
        }
    }
    (void)sum;
}

static void try_vocab(void) {
    llmlab_tokenizer *t = NULL;
    llmlab_err err = {0};
    if (llmlab_tokenizer_load_gguf(&t, path, &err) != LLMLAB_OK) {
        if (t || err.msg[0] == 0) abort();
        return;
    }
    int32_t *ids = NULL;
    int n = 0;
    static const char text[] = "Hello world, 123 \xc3\xa9\xe2\x96\x81 <s>";
    if (llmlab_tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &n, &err) == LLMLAB_OK) {
        char *out = NULL;
        size_t len = 0;
        if (llmlab_tokenizer_decode(t, ids, n, 0, &out, &len, &err) == LLMLAB_OK) free(out);
        free(ids);
    }
    llmlab_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) snprintf(path, sizeof path, "/tmp/llmlab-fuzz-gguf-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    llmlab_gguf *g = NULL;
    llmlab_err err = {0};
    if (llmlab_gguf_open(&g, path, &err) == LLMLAB_OK) {
        check_file(g);
        llmlab_gguf_close(g);
        try_vocab();
    } else if (err.msg[0] == 0 || g != NULL) {
        abort(); /* every failure explains itself and returns no object */
    }
    return 0;
}
