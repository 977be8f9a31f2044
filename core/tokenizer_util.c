/* tokenizer_util.c - growable byte, piece and id buffers for the tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* Grows *v (elements of size `size`, *cap of them) to hold at least `need`. */
static llmlab_status grow(void **v, size_t *cap, size_t need, size_t size, llmlab_err *err) {
    if (need <= *cap) return LLMLAB_OK;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    if (c > SIZE_MAX / size) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: buffer too large");
    void *p = realloc(*v, c * size);
    if (!p) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory (%zu bytes)", c * size);
    *v = p;
    *cap = c;
    return LLMLAB_OK;
}

llmlab_status tok_buf_reserve(tok_buf *b, size_t extra, llmlab_err *err) {
    return grow((void **)&b->p, &b->cap, b->len + extra, 1, err);
}

llmlab_status tok_buf_put(tok_buf *b, const void *p, size_t n, llmlab_err *err) {
    if (n == 0) return LLMLAB_OK;
    llmlab_status s = tok_buf_reserve(b, n, err);
    if (s != LLMLAB_OK) return s;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return LLMLAB_OK;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

llmlab_status tok_pieces_push(tok_pieces *ps, tok_piece p, llmlab_err *err) {
    llmlab_status s = grow((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v, err);
    if (s != LLMLAB_OK) return s;
    ps->v[ps->n++] = p;
    return LLMLAB_OK;
}

llmlab_status tok_ids_push(tok_ids *ids, int32_t id, llmlab_err *err) {
    if (ids->n == ids->cap) {
        llmlab_status s = grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v, err);
        if (s != LLMLAB_OK) return s;
    }
    ids->v[ids->n++] = id;
    return LLMLAB_OK;
}

llmlab_status tok_ids_put(tok_ids *ids, const int32_t *v, size_t n, llmlab_err *err) {
    llmlab_status s = grow((void **)&ids->v, &ids->cap, ids->n + n, sizeof *ids->v, err);
    if (s != LLMLAB_OK) return s;
    if (n) memcpy(ids->v + ids->n, v, n * sizeof *v);
    ids->n += n;
    return LLMLAB_OK;
}
