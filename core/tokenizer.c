/* tokenizer.c - the public tokenizer object: loading by directory, the byte-level
 * fallback, facts, and the encode/decode/streaming entry points that dispatch to
 * the tokenizer.json pipeline (tokenizer_json.c, tokenizer_encode.c,
 * tokenizer_decode.c). */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

/* ---- loading ------------------------------------------------------------------------- */

llmlab_status llmlab_tokenizer_bytes(llmlab_tokenizer **out, llmlab_err *err) {
    *out = NULL;
    llmlab_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for the byte tokenizer");
    t->kind = TOK_KIND_BYTES;
    *out = t;
    return LLMLAB_OK;
}

llmlab_status llmlab_tokenizer_load_dir(llmlab_tokenizer **out, const char *dir, llmlab_err *err) {
    *out = NULL;
    size_t n = strlen(dir);
    char *path = malloc(n + sizeof "/tokenizer.json");
    if (!path) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    memcpy(path, dir, n);
    strcpy(path + n, "/tokenizer.json");
    struct stat st;
    llmlab_status s;
    if (stat(path, &st) == 0)
        s = llmlab_tokenizer_load_json(out, path, err);
    else
        s = llmlab_tokenizer_bytes(out, err);
    free(path);
    return s;
}

llmlab_status llmlab_tokenizer_from_json(llmlab_tokenizer **out, const struct cJSON *root, const char *what,
                                         llmlab_err *err) {
    *out = NULL;
    llmlab_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for a tokenizer");
    t->kind = TOK_KIND_BPE;
    llmlab_status s = tok_model_build(&t->bpe, root, what ? what : "tokenizer.json", err);
    if (s != LLMLAB_OK) {
        free(t);
        return s;
    }
    *out = t;
    return LLMLAB_OK;
}

void llmlab_tokenizer_free(llmlab_tokenizer *t) {
    if (!t) return;
    tok_model_free(t->bpe);
    free(t);
}

/* ---- facts --------------------------------------------------------------------------- */

const char *llmlab_tokenizer_kind(const llmlab_tokenizer *t) {
    return t->kind == TOK_KIND_BYTES ? "bytes" : tok_model_kind(t->bpe);
}

int llmlab_tokenizer_vocab_size(const llmlab_tokenizer *t) {
    return t->kind == TOK_KIND_BYTES ? 256 : tok_model_vocab_size(t->bpe);
}

int32_t llmlab_tokenizer_bos(const llmlab_tokenizer *t) {
    return t->kind == TOK_KIND_BYTES ? -1 : tok_model_bos(t->bpe);
}

int32_t llmlab_tokenizer_eos(const llmlab_tokenizer *t) {
    return t->kind == TOK_KIND_BYTES ? -1 : tok_model_eos(t->bpe);
}

/* The fallback's pieces are the 256 one-byte strings (NUL's piece is ""). */
static const char tok_byte_pieces[256][2] = {
#define P4(i) {(char)(i), 0}, {(char)((i) + 1), 0}, {(char)((i) + 2), 0}, {(char)((i) + 3), 0}
#define P16(i) P4(i), P4((i) + 4), P4((i) + 8), P4((i) + 12)
#define P64(i) P16(i), P16((i) + 16), P16((i) + 32), P16((i) + 48)
    P64(0), P64(64), P64(128), P64(192)
#undef P64
#undef P16
#undef P4
};

int32_t llmlab_tokenizer_token_id(const llmlab_tokenizer *t, const char *piece) {
    if (t->kind == TOK_KIND_BPE) return tok_model_token_id(t->bpe, piece, strlen(piece));
    if (piece[0] && !piece[1]) return (unsigned char)piece[0];
    return -1;
}

const char *llmlab_tokenizer_piece(const llmlab_tokenizer *t, int32_t id) {
    if (t->kind == TOK_KIND_BPE) return tok_model_piece(t->bpe, id, NULL);
    return id >= 0 && id < 256 ? tok_byte_pieces[id] : NULL;
}

int llmlab_tokenizer_is_special(const llmlab_tokenizer *t, int32_t id) {
    return t->kind == TOK_KIND_BPE ? tok_model_is_special(t->bpe, id) : 0;
}

/* ---- encoding ------------------------------------------------------------------------ */

llmlab_status llmlab_tokenizer_encode(const llmlab_tokenizer *t, const char *text, size_t len, int add_special,
                                      int32_t **ids, int *n, llmlab_err *err) {
    *ids = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX / 2)
        return llmlab_err_set(err, LLMLAB_EINVAL, "tokenizer: text of %zu bytes is too long to encode", len);
    if (t->kind == TOK_KIND_BYTES) {
        int32_t *v = malloc((len ? len : 1) * sizeof *v);
        if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory encoding %zu bytes", len);
        for (size_t i = 0; i < len; i++) v[i] = (unsigned char)text[i];
        *ids = v;
        *n = (int)len;
        return LLMLAB_OK;
    }
    tok_ids out = {0};
    llmlab_status s = tok_model_encode(t->bpe, text, len, add_special, &out, err);
    if (s != LLMLAB_OK) {
        free(out.v);
        return s;
    }
    if (!out.v && !(out.v = malloc(sizeof *out.v))) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    *ids = out.v;
    *n = (int)out.n;
    return LLMLAB_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

/* The fallback's bytes for one id: the byte itself, or "<|id|>". */
static llmlab_status bytes_decode_one(int32_t id, tok_buf *out, llmlab_err *err) {
    if (id < 0) return llmlab_err_set(err, LLMLAB_EINVAL, "tokenizer: id %d is negative", (int)id);
    if (id < 256) {
        char c = (char)id;
        return tok_buf_put(out, &c, 1, err);
    }
    char tmp[24];
    int w = snprintf(tmp, sizeof tmp, "<|%d|>", (int)id);
    return tok_buf_put(out, tmp, (size_t)w, err);
}

/* Streaming state.  out holds the held-back tail of the previous call at its
 * front, then this call's new bytes. */
struct llmlab_detok {
    const llmlab_tokenizer *t; /* the tokenizer (borrowed) */
    int skip_special;          /* drop special added tokens */
    struct tok_dec *dec;       /* decoder-chain state; NULL for the fallback */
    tok_buf out;               /* bytes of the current call, tail of the last one first */
    size_t ready;              /* bytes handed out by the last call (dropped at the next) */
};

/* Length of an incomplete UTF-8 character at the end of p[0..n) that more bytes
 * could still complete (0 when the tail is whole or can never become valid). */
static size_t utf8_incomplete_tail(const unsigned char *p, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = p[n - k];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte: look further back */
        size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        if (need == 0 || c > 0xF4) return 0;
        return k < need ? k : 0;
    }
    return 0;
}

llmlab_status llmlab_detok_create(llmlab_detok **out, const llmlab_tokenizer *t, int skip_special,
                                  llmlab_err *err) {
    *out = NULL;
    llmlab_detok *d = calloc(1, sizeof *d);
    if (!d) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for a detokenizer");
    d->t = t;
    d->skip_special = skip_special;
    if (t->kind == TOK_KIND_BPE) {
        llmlab_status s = tok_dec_create(&d->dec, t->bpe, skip_special, err);
        if (s != LLMLAB_OK) {
            free(d);
            return s;
        }
    }
    *out = d;
    return LLMLAB_OK;
}

/* Drops the bytes handed out last time, keeping the held tail at the front. */
static void detok_consume(llmlab_detok *d) {
    if (d->ready) {
        memmove(d->out.p, d->out.p + d->ready, d->out.len - d->ready);
        d->out.len -= d->ready;
        d->ready = 0;
    }
}

llmlab_status llmlab_detok_push(llmlab_detok *d, int32_t id, const char **text, size_t *len, llmlab_err *err) {
    *text = "";
    *len = 0;
    detok_consume(d);
    llmlab_status s = d->t->kind == TOK_KIND_BYTES ? bytes_decode_one(id, &d->out, err)
                                                   : tok_dec_push(d->dec, id, &d->out, err);
    if (s != LLMLAB_OK) return s;
    d->ready = d->out.len - utf8_incomplete_tail((const unsigned char *)d->out.p, d->out.len);
    *text = d->ready ? d->out.p : "";
    *len = d->ready;
    return LLMLAB_OK;
}

llmlab_status llmlab_detok_flush(llmlab_detok *d, const char **text, size_t *len, llmlab_err *err) {
    *text = "";
    *len = 0;
    detok_consume(d);
    if (d->dec) {
        llmlab_status s = tok_dec_flush(d->dec, &d->out, err);
        if (s != LLMLAB_OK) return s;
    }
    d->ready = d->out.len; /* everything goes; the next call starts afresh */
    *text = d->ready ? d->out.p : "";
    *len = d->ready;
    return LLMLAB_OK;
}

void llmlab_detok_free(llmlab_detok *d) {
    if (!d) return;
    tok_dec_free(d->dec);
    tok_buf_free(&d->out);
    free(d);
}

llmlab_status llmlab_tokenizer_decode(const llmlab_tokenizer *t, const int32_t *ids, int n, int skip_special,
                                      char **text, size_t *len, llmlab_err *err) {
    *text = NULL;
    if (len) *len = 0;
    tok_buf out = {0};
    struct tok_dec *dec = NULL;
    llmlab_status s = LLMLAB_OK;
    if (t->kind == TOK_KIND_BPE) s = tok_dec_create(&dec, t->bpe, skip_special, err);
    for (int i = 0; s == LLMLAB_OK && i < n; i++)
        s = dec ? tok_dec_push(dec, ids[i], &out, err) : bytes_decode_one(ids[i], &out, err);
    if (s == LLMLAB_OK && dec) s = tok_dec_flush(dec, &out, err);
    if (s == LLMLAB_OK) s = tok_buf_reserve(&out, 1, err);
    tok_dec_free(dec);
    if (s != LLMLAB_OK) {
        tok_buf_free(&out);
        return s;
    }
    out.p[out.len] = 0;
    *text = out.p;
    if (len) *len = out.len;
    return LLMLAB_OK;
}
