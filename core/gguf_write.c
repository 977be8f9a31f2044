/* gguf_write.c - the streaming GGUF writer (gguf_write.h).
 *
 * Metadata and tensor infos are encoded into memory as they are declared; start
 * writes them after the fixed header and pads to the alignment; data then
 * streams through a 1 MiB buffer, each tensor padded to the alignment as ggml
 * does, so offsets are known before any data is written and a 2 GB model never
 * needs more memory than one chunk of rows.
 */
#include "gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "gguf.h"

#define GW_BUF (1u << 20)

typedef struct {
    unsigned char *p; /* [n] encoded bytes */
    size_t n, cap;
} bytes;

struct llmlab_gguf_writer {
    char *path, *tmp;      /* final name, temp name (NULL once renamed or never created) */
    int fd;
    uint32_t alignment;
    bytes kv;              /* encoded metadata pairs */
    uint64_t n_kv;
    char **keys;           /* [n_kv] for the duplicate check */
    bytes ti;              /* encoded tensor infos */
    uint64_t n_t;
    uint64_t *t_size;      /* [n_t] data bytes of each tensor */
    char **t_names;        /* [n_t] */
    uint64_t data_size;    /* aligned data section so far */
    int oom, started;
    uint64_t cur, cur_done; /* tensor being written, its bytes so far */
    unsigned char *buf;    /* [GW_BUF] write buffer */
    size_t buf_len;
};

/* ---- encoding ------------------------------------------------------------------------- */

static void put(llmlab_gguf_writer *w, bytes *b, const void *d, size_t n) {
    if (w->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 256;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            w->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_le(llmlab_gguf_writer *w, bytes *b, uint64_t v, int nb) {
    unsigned char t[8];
    for (int i = 0; i < nb; i++) t[i] = (unsigned char)(v >> (8 * i));
    put(w, b, t, (size_t)nb);
}

static void put_str(llmlab_gguf_writer *w, bytes *b, const char *s, size_t len) {
    put_le(w, b, len, 8);
    put(w, b, s, len);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Key and type tag of a new pair. */
static void kv_head(llmlab_gguf_writer *w, const char *key, uint32_t type) {
    char **k = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
    char *dup = strdup(key);
    if (!k || !dup) {
        if (k) w->keys = k;
        free(dup);
        w->oom = 1;
        return;
    }
    w->keys = k;
    w->keys[w->n_kv++] = dup;
    put_str(w, &w->kv, key, strlen(key));
    put_le(w, &w->kv, type, 4);
}

void llmlab_gguf_kv_str(llmlab_gguf_writer *w, const char *key, const char *val) {
    kv_head(w, key, LLMLAB_GGUF_STRING);
    put_str(w, &w->kv, val, strlen(val));
}

void llmlab_gguf_kv_u32(llmlab_gguf_writer *w, const char *key, uint32_t val) {
    kv_head(w, key, LLMLAB_GGUF_U32);
    put_le(w, &w->kv, val, 4);
}

void llmlab_gguf_kv_i32(llmlab_gguf_writer *w, const char *key, int32_t val) {
    kv_head(w, key, LLMLAB_GGUF_I32);
    put_le(w, &w->kv, (uint32_t)val, 4);
}

void llmlab_gguf_kv_f32(llmlab_gguf_writer *w, const char *key, float val) {
    kv_head(w, key, LLMLAB_GGUF_F32);
    put_le(w, &w->kv, f32_bits(val), 4);
}

void llmlab_gguf_kv_bool(llmlab_gguf_writer *w, const char *key, int val) {
    kv_head(w, key, LLMLAB_GGUF_BOOL);
    put_le(w, &w->kv, val != 0, 1);
}

static void arr_head(llmlab_gguf_writer *w, const char *key, uint32_t elem, uint64_t n) {
    kv_head(w, key, LLMLAB_GGUF_ARRAY);
    put_le(w, &w->kv, elem, 4);
    put_le(w, &w->kv, n, 8);
}

void llmlab_gguf_kv_arr_str(llmlab_gguf_writer *w, const char *key, const char *const *s, const size_t *len,
                            uint64_t n) {
    arr_head(w, key, LLMLAB_GGUF_STRING, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, &w->kv, s[i], len ? len[i] : strlen(s[i]));
}

void llmlab_gguf_kv_arr_i32(llmlab_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    arr_head(w, key, LLMLAB_GGUF_I32, n);
    for (uint64_t i = 0; i < n; i++) put_le(w, &w->kv, (uint32_t)v[i], 4);
}

void llmlab_gguf_kv_arr_f32(llmlab_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    arr_head(w, key, LLMLAB_GGUF_F32, n);
    for (uint64_t i = 0; i < n; i++) put_le(w, &w->kv, f32_bits(v[i]), 4);
}

/* Bytes of one scalar of a fixed-size type, 0 for strings and arrays. */
static int scalar_bytes(llmlab_gguf_type t) {
    switch (t) {
    case LLMLAB_GGUF_U8: case LLMLAB_GGUF_I8: case LLMLAB_GGUF_BOOL: return 1;
    case LLMLAB_GGUF_U16: case LLMLAB_GGUF_I16: return 2;
    case LLMLAB_GGUF_U32: case LLMLAB_GGUF_I32: case LLMLAB_GGUF_F32: return 4;
    case LLMLAB_GGUF_U64: case LLMLAB_GGUF_I64: case LLMLAB_GGUF_F64: return 8;
    case LLMLAB_GGUF_STRING: case LLMLAB_GGUF_ARRAY: return 0;
    }
    return 0;
}

/* The value's raw little-endian bytes, re-read through the typed getters. */
static void put_scalar(llmlab_gguf_writer *w, const llmlab_gguf_value *v, llmlab_gguf_type t) {
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    switch (t) {
    case LLMLAB_GGUF_U8: case LLMLAB_GGUF_U16: case LLMLAB_GGUF_U32: case LLMLAB_GGUF_U64:
        llmlab_gguf_value_u64(v, &u);
        break;
    case LLMLAB_GGUF_I8: case LLMLAB_GGUF_I16: case LLMLAB_GGUF_I32: case LLMLAB_GGUF_I64:
        llmlab_gguf_value_i64(v, &i);
        u = (uint64_t)i;
        break;
    case LLMLAB_GGUF_BOOL: {
        int b = 0;
        llmlab_gguf_value_bool(v, &b);
        u = (uint64_t)b;
        break;
    }
    case LLMLAB_GGUF_F32:
        llmlab_gguf_value_f64(v, &d);
        u = f32_bits((float)d);
        break;
    case LLMLAB_GGUF_F64:
        llmlab_gguf_value_f64(v, &d);
        memcpy(&u, &d, 8);
        break;
    case LLMLAB_GGUF_STRING: case LLMLAB_GGUF_ARRAY: break;
    }
    put_le(w, &w->kv, u, scalar_bytes(t));
}

void llmlab_gguf_kv_copy(llmlab_gguf_writer *w, const char *key, const llmlab_gguf_value *v) {
    llmlab_gguf_type t = llmlab_gguf_value_type(v);
    size_t len;
    if (t == LLMLAB_GGUF_STRING) {
        const char *s = llmlab_gguf_value_str(v, &len);
        kv_head(w, key, t);
        put_str(w, &w->kv, s, len);
    } else if (t != LLMLAB_GGUF_ARRAY) {
        kv_head(w, key, t);
        put_scalar(w, v, t);
    } else {
        llmlab_gguf_type et = llmlab_gguf_arr_type(v);
        uint64_t n = llmlab_gguf_arr_len(v);
        if (et == LLMLAB_GGUF_ARRAY) return; /* nested arrays: no tokenizer key has them */
        arr_head(w, key, et, n);
        if (et == LLMLAB_GGUF_STRING) {
            for (uint64_t i = 0; i < n; i++) {
                const char *s = llmlab_gguf_arr_str(v, i, &len);
                put_str(w, &w->kv, s, len);
            }
        } else {
            put(w, &w->kv, llmlab_gguf_arr_data(v), (size_t)n * (size_t)scalar_bytes(et));
        }
    }
}

/* ---- tensors and data ---------------------------------------------------------------------- */

static uint64_t pad_up(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

llmlab_status llmlab_gguf_writer_tensor(llmlab_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                        const int64_t *ne, llmlab_err *err) {
    uint32_t blk, bb;
    if (w->started) return llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%s' declared after the data began", w->path, name);
    if (llmlab_ggml_type_size(type, &blk, &bb))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%s': unknown ggml type %u", w->path, name, type);
    if (n_dims < 1 || n_dims > LLMLAB_GGUF_MAX_DIMS || ne[0] % blk)
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%s': %d dims, rows of %lld (block %u)", w->path, name,
                              n_dims, (long long)ne[0], blk);
    uint64_t elems = 1;
    for (int i = 0; i < n_dims; i++) elems *= (uint64_t)ne[i];
    uint64_t *sz = realloc(w->t_size, (size_t)(w->n_t + 1) * sizeof *sz);
    if (sz) w->t_size = sz;
    char **nm = realloc(w->t_names, (size_t)(w->n_t + 1) * sizeof *nm);
    if (nm) w->t_names = nm;
    char *dup = strdup(name);
    if (!sz || !nm || !dup) {
        free(dup);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", w->path);
    }
    w->t_names[w->n_t] = dup;
    w->t_size[w->n_t++] = elems / blk * bb;
    put_str(w, &w->ti, name, strlen(name));
    put_le(w, &w->ti, (uint64_t)n_dims, 4);
    for (int i = 0; i < n_dims; i++) put_le(w, &w->ti, (uint64_t)ne[i], 8);
    put_le(w, &w->ti, type, 4);
    put_le(w, &w->ti, w->data_size, 8);
    w->data_size = pad_up(w->data_size + elems / blk * bb, w->alignment);
    return w->oom ? llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", w->path) : LLMLAB_OK;
}

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static llmlab_status flush(llmlab_gguf_writer *w, llmlab_err *err) {
    if (w->buf_len && write_all(w->fd, w->buf, w->buf_len))
        return llmlab_err_set(err, LLMLAB_EIO, "%s: write: %s", w->tmp, strerror(errno));
    w->buf_len = 0;
    return LLMLAB_OK;
}

static llmlab_status emit(llmlab_gguf_writer *w, const void *p, size_t n, llmlab_err *err) {
    const unsigned char *c = p;
    while (n) {
        size_t k = GW_BUF - w->buf_len < n ? GW_BUF - w->buf_len : n;
        memcpy(w->buf + w->buf_len, c, k);
        w->buf_len += k;
        c += k;
        n -= k;
        if (w->buf_len == GW_BUF) {
            llmlab_status s = flush(w, err);
            if (s) return s;
        }
    }
    return LLMLAB_OK;
}

static llmlab_status emit_zeros(llmlab_gguf_writer *w, uint64_t n, llmlab_err *err) {
    static const unsigned char z[64];
    llmlab_status s = LLMLAB_OK;
    while (n && !s) {
        size_t k = n < sizeof z ? (size_t)n : sizeof z;
        s = emit(w, z, k, err);
        n -= k;
    }
    return s;
}

llmlab_status llmlab_gguf_writer_create(llmlab_gguf_writer **out, const char *path, uint32_t alignment,
                                        llmlab_err *err) {
    *out = NULL;
    if (!alignment) alignment = LLMLAB_GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: alignment %u is not a power of two", path, alignment);
    llmlab_gguf_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path);
    if (w) {
        w->fd = -1;
        w->alignment = alignment;
        w->path = strdup(path);
        w->buf = malloc(GW_BUF);
    }
    if (!w || !w->path || !w->buf) {
        llmlab_gguf_writer_abort(w);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    w->tmp = malloc(pl + 5);
    if (!w->tmp) {
        llmlab_gguf_writer_abort(w);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    memcpy(w->tmp, path, pl);
    memcpy(w->tmp + pl, ".tmp", 5);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        llmlab_status s = llmlab_err_set(err, LLMLAB_EIO, "%s: %s", w->tmp, strerror(errno));
        free(w->tmp); /* nothing was created: do not unlink someone else's file */
        w->tmp = NULL;
        llmlab_gguf_writer_abort(w);
        return s;
    }
    *out = w;
    return LLMLAB_OK;
}

void llmlab_gguf_writer_abort(llmlab_gguf_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->kv.p);
    free(w->ti.p);
    for (uint64_t i = 0; i < w->n_kv && w->keys; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t_names[i]);
    free(w->t_names);
    free(w->t_size);
    free(w->buf);
    free(w);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The first name that occurs twice in v[n] (sorted in place), or NULL. */
static const char *duplicate(char **v, uint64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    for (uint64_t i = 1; i < n; i++)
        if (!strcmp(v[i - 1], v[i])) return v[i];
    return NULL;
}

llmlab_status llmlab_gguf_writer_start(llmlab_gguf_writer *w, llmlab_err *err) {
    /* general.alignment after the caller's keys, so general.architecture can come first */
    llmlab_gguf_kv_u32(w, "general.alignment", w->alignment);
    if (w->oom) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", w->path);
    const char *d = duplicate(w->keys, w->n_kv);
    if (d) return llmlab_err_set(err, LLMLAB_EINVAL, "%s: metadata key '%s' given twice", w->path, d);
    char **names = malloc((size_t)(w->n_t ? w->n_t : 1) * sizeof *names);
    if (!names) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", w->path);
    if (w->n_t) memcpy(names, w->t_names, (size_t)w->n_t * sizeof *names);
    d = duplicate(names, w->n_t);
    llmlab_status s = d ? llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%s' declared twice", w->path, d) : LLMLAB_OK;
    free(names);
    if (s) return s;
    unsigned char hdr[24];
    memcpy(hdr, "GGUF", 4);
    uint64_t fields[3] = {3, w->n_t, w->n_kv}; /* version, tensor count, metadata count */
    for (int i = 0; i < 4; i++) hdr[4 + i] = (unsigned char)(fields[0] >> (8 * i));
    for (int i = 0; i < 8; i++) hdr[8 + i] = (unsigned char)(fields[1] >> (8 * i));
    for (int i = 0; i < 8; i++) hdr[16 + i] = (unsigned char)(fields[2] >> (8 * i));
    s = emit(w, hdr, sizeof hdr, err);
    if (!s) s = emit(w, w->kv.p, w->kv.n, err);
    if (!s) s = emit(w, w->ti.p, w->ti.n, err);
    uint64_t at = sizeof hdr + w->kv.n + w->ti.n;
    if (!s) s = emit_zeros(w, pad_up(at, w->alignment) - at, err);
    w->started = 1;
    w->cur = 0;
    w->cur_done = 0;
    return s;
}

llmlab_status llmlab_gguf_writer_data(llmlab_gguf_writer *w, const void *p, size_t nbytes, llmlab_err *err) {
    const unsigned char *c = p;
    if (!w->started) return llmlab_err_set(err, LLMLAB_EINVAL, "%s: data before llmlab_gguf_writer_start", w->path);
    while (nbytes) {
        if (w->cur >= w->n_t)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: %zu data bytes past the last tensor", w->path, nbytes);
        uint64_t left = w->t_size[w->cur] - w->cur_done;
        size_t k = nbytes < left ? nbytes : (size_t)left;
        llmlab_status s = emit(w, c, k, err);
        if (s) return s;
        c += k;
        nbytes -= k;
        w->cur_done += k;
        if (w->cur_done == w->t_size[w->cur]) { /* each tensor padded to the alignment, as ggml writes them */
            s = emit_zeros(w, pad_up(w->cur_done, w->alignment) - w->cur_done, err);
            if (s) return s;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_gguf_writer_finish(llmlab_gguf_writer *w, llmlab_err *err) {
    llmlab_status s = LLMLAB_OK;
    if (!w->started) s = llmlab_gguf_writer_start(w, err);
    while (!s && w->cur < w->n_t && w->t_size[w->cur] == 0) w->cur++; /* empty tensors need no data */
    if (!s && w->cur != w->n_t)
        s = llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%s' got %llu of %llu bytes", w->path, w->t_names[w->cur],
                           (unsigned long long)w->cur_done, (unsigned long long)w->t_size[w->cur]);
    if (!s) s = flush(w, err);
    if (!s && fsync(w->fd)) s = llmlab_err_set(err, LLMLAB_EIO, "%s: fsync: %s", w->tmp, strerror(errno));
    if (!s) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc) s = llmlab_err_set(err, LLMLAB_EIO, "%s: close: %s", w->tmp, strerror(errno));
    }
    if (!s && rename(w->tmp, w->path))
        s = llmlab_err_set(err, LLMLAB_EIO, "rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
    if (!s) {
        free(w->tmp);
        w->tmp = NULL; /* renamed: nothing to remove */
    }
    llmlab_gguf_writer_abort(w);
    return s;
}
