/* kv_store.c - packed KV block storage: layout, hot blocks' f32 staging copies,
 * cooling and heating, and moving a head's row between slots (kv_store.h). */
#include "kv_store.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/cpu/kv_quant.h"

/* ---- layout ---------------------------------------------------------------------------- */

static int is_int(int dtype) { return dtype == LLMLAB_KV_INT8 || dtype == LLMLAB_KV_INT4; }

const char *llmlab_kv_dtype_name(int dtype) {
    static const char *names[] = {"f32", "f16", "bf16", "int8", "int4"};
    return dtype >= 0 && dtype <= LLMLAB_KV_INT4 ? names[dtype] : "?";
}

llmlab_status llmlab_kv_format_check(llmlab_kv_format *f, int head_dim, llmlab_err *err) {
    if (f->dtype < LLMLAB_KV_F32 || f->dtype > LLMLAB_KV_INT4)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV format: unknown dtype %d (0 f32, 1 f16, 2 bf16, 3 int8, 4 int4)",
                              f->dtype);
    const char *name = llmlab_kv_dtype_name(f->dtype);
    if (f->residual < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV format %s: residual %d must be >= 0", name, f->residual);
    if (!is_int(f->dtype)) {
        if (f->key_per_channel || f->asymmetric || f->group)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "KV format %s: group, key_per_channel and asymmetric apply to int8/int4 only", name);
        if (f->dtype == LLMLAB_KV_F32) f->residual = 0; /* f32 is its own full precision */
        else if (head_dim > LLMLAB_KV_MAX_HEAD_DIM)
            return llmlab_err_set(err, LLMLAB_EINVAL, "KV format %s: head_dim %d exceeds %d", name, head_dim,
                                  LLMLAB_KV_MAX_HEAD_DIM);
        return LLMLAB_OK;
    }
    if (head_dim > LLMLAB_KV_MAX_HEAD_DIM)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV format %s: head_dim %d exceeds %d", name, head_dim,
                              LLMLAB_KV_MAX_HEAD_DIM);
    if (f->group == 0 || f->group > head_dim) f->group = head_dim; /* a head smaller than a group is one group */
    if (f->group < 0 || head_dim % f->group != 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV format %s: group %d must divide head_dim %d", name, f->group,
                              head_dim);
    if (head_dim % 2 != 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "KV format %s: head_dim %d must be even", name, head_dim);
    return LLMLAB_OK;
}

static llmlab_kvq_row row_fmt(const llmlab_kv *kv, int which) {
    const llmlab_kv_format *f = &kv->fmt;
    int kpc = which == 0 && f->key_per_channel;
    return (llmlab_kvq_row){f->dtype, kv->o.head_dim, kpc ? kv->o.head_dim : f->group, f->asymmetric};
}

int llmlab_kvs_per_channel(const llmlab_kv *kv) { return kv->fmt.key_per_channel; }

llmlab_status llmlab_kvs_init(llmlab_kv *kv, llmlab_err *err) {
    kv->fmt = kv->o.fmt;
    kv->fmt.size = sizeof kv->fmt;
    llmlab_status st = llmlab_kv_format_check(&kv->fmt, kv->o.head_dim, err);
    if (st) return st;
    const llmlab_kv_format *f = &kv->fmt;
    size_t bs = (size_t)kv->o.block_size, nkv = (size_t)kv->o.n_kv_heads;
    for (int w = 0; w < 2; w++) {
        llmlab_kvq_row r = row_fmt(kv, w);
        kv->rec_bytes[w] = w == 0 && f->key_per_channel ? llmlab_kvq_code_bytes(&r) : llmlab_kvq_row_bytes(&r);
        kv->region_bytes[w] = bs * nkv * kv->rec_bytes[w];
    }
    if (f->key_per_channel) {
        llmlab_kvq_row r = row_fmt(kv, 0);
        kv->chan_bytes = llmlab_kvq_channel_bytes(&r);
        kv->region_bytes[0] += nkv * kv->chan_bytes;
    }
    kv->block_bytes = (size_t)kv->o.n_layers * (kv->region_bytes[0] + kv->region_bytes[1]);
    kv->staged = f->dtype != LLMLAB_KV_F32 && (f->residual > 0 || f->key_per_channel);
    if (kv->mem.alloc && (kv->staged || (f->dtype != LLMLAB_KV_F32 && f->dtype != LLMLAB_KV_F16 &&
                                         f->dtype != LLMLAB_KV_BF16)))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "KV cache: format %s%s cannot live in device memory (f32, f16 and bf16 can)",
                              llmlab_kv_dtype_name(f->dtype), kv->staged ? " with an f32 window" : "");
    size_t pool_bytes = (size_t)kv->o.n_blocks * kv->block_bytes;
    kv->pool = kv->mem.alloc ? kv->mem.alloc(kv->mem.user, pool_bytes) : malloc(pool_bytes);
    kv->stage = calloc((size_t)kv->o.n_blocks, sizeof *kv->stage);
    if (f->key_per_channel) kv->scratch = malloc(bs * (size_t)kv->o.head_dim * sizeof(float));
    if (!kv->pool || !kv->stage || (f->key_per_channel && !kv->scratch))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: cannot allocate %zu MiB for %d blocks of %d tokens (%s)",
                              ((size_t)kv->o.n_blocks * kv->block_bytes) >> 20, kv->o.n_blocks, kv->o.block_size,
                              llmlab_kv_dtype_name(f->dtype));
    return LLMLAB_OK;
}

void llmlab_kvs_free(llmlab_kv *kv) {
    if (kv->stage)
        for (int b = 0; b < kv->o.n_blocks; b++) free(kv->stage[b]);
    free(kv->stage);
    if (kv->mem.alloc) {
        if (kv->pool) kv->mem.release(kv->mem.user, kv->pool);
    } else
        free(kv->pool);
    free(kv->scratch);
}

void llmlab_kvs_pool_copy(const llmlab_kv *kv, void *dst, const void *src, size_t n) {
    if (kv->mem.copy) kv->mem.copy(kv->mem.user, dst, src, n);
    else memcpy(dst, src, n);
}

/* ---- addressing ---------------------------------------------------------------------------- */

static uint8_t *region(const llmlab_kv *kv, int b, int layer, int which) {
    return kv->pool + (size_t)b * kv->block_bytes + (size_t)layer * (kv->region_bytes[0] + kv->region_bytes[1]) +
           (which ? kv->region_bytes[0] : 0);
}

static uint8_t *record(const llmlab_kv *kv, int b, int row, int layer, int which, int head) {
    return region(kv, b, layer, which) + ((size_t)row * (size_t)kv->o.n_kv_heads + (size_t)head) * kv->rec_bytes[which];
}

/* Per-channel key parameters of one head: after the block's K records. */
static uint8_t *chan_params(const llmlab_kv *kv, int b, int layer, int head) {
    return region(kv, b, layer, 0) + (size_t)kv->o.block_size * (size_t)kv->o.n_kv_heads * kv->rec_bytes[0] +
           (size_t)head * kv->chan_bytes;
}

static float *staged(const llmlab_kv *kv, int b, int row, int layer, int which, int head) {
    size_t bs = (size_t)kv->o.block_size;
    return kv->stage[b] + (((size_t)layer * 2u + (size_t)which) * bs + (size_t)row) * kv->row_floats +
           (size_t)head * (size_t)kv->o.head_dim;
}

static const uint8_t *lane_valid(const llmlab_kv *kv, int b, int layer, int head) {
    int lane = layer * kv->o.n_kv_heads + head;
    return kv->slot_valid + ((size_t)b * (size_t)kv->n_lanes + (size_t)lane) * (size_t)kv->o.block_size;
}

static int per_channel_key(const llmlab_kv *kv, int which) { return which == 0 && kv->fmt.key_per_channel; }

/* ---- reading and writing rows ----------------------------------------------------------------- */

/* A cold block's row decoded into x. */
static void decode(const llmlab_kv *kv, int b, int row, int layer, int which, int head, float *x) {
    llmlab_kvq_row f = row_fmt(kv, which);
    const uint8_t *rec = record(kv, b, row, layer, which, head);
    if (per_channel_key(kv, which)) llmlab_kvq_decode_channel_row(&f, rec, chan_params(kv, b, layer, head), x);
    else llmlab_kvq_decode_row(&f, rec, x);
}

const float *llmlab_kvs_read(const llmlab_kv *kv, int b, int row, int layer, int which, int head, float *buf) {
    if (kv->fmt.dtype == LLMLAB_KV_F32) return (const float *)(const void *)record(kv, b, row, layer, which, head);
    if (kv->stage[b]) return staged(kv, b, row, layer, which, head);
    decode(kv, b, row, layer, which, head, buf);
    return buf;
}

void llmlab_kvs_requant_keys(llmlab_kv *kv, int b, int layer, int head, const float *x, size_t x_stride) {
    llmlab_kvq_row f = row_fmt(kv, 0);
    size_t stride = (size_t)kv->o.n_kv_heads * kv->rec_bytes[0];
    llmlab_kvq_encode_channels(&f, kv->o.block_size, x, x_stride, lane_valid(kv, b, layer, head),
                               record(kv, b, 0, layer, 0, head), stride, chan_params(kv, b, layer, head));
}

/* A per-channel key row into a cold block: the head's rows are decoded, the row
 * replaced, and the block's keys of that head re-quantized. */
static void write_channel_key(llmlab_kv *kv, int b, int row, int layer, int head, const float *x) {
    size_t hd = (size_t)kv->o.head_dim;
    for (int r = 0; r < kv->o.block_size; r++)
        if (r != row) decode(kv, b, r, layer, 0, head, kv->scratch + (size_t)r * hd);
    memcpy(kv->scratch + (size_t)row * hd, x, hd * sizeof(float));
    llmlab_kvs_requant_keys(kv, b, layer, head, kv->scratch, hd);
}

/* One head's row x into (b, row) in whatever form the block has. */
static void put_row(llmlab_kv *kv, int b, int row, int layer, int which, int head, const float *x) {
    size_t hd = (size_t)kv->o.head_dim;
    if (kv->stage[b]) memcpy(staged(kv, b, row, layer, which, head), x, hd * sizeof(float));
    else if (per_channel_key(kv, which)) write_channel_key(kv, b, row, layer, head, x);
    else {
        llmlab_kvq_row f = row_fmt(kv, which);
        llmlab_kvq_encode_row(&f, x, record(kv, b, row, layer, which, head));
    }
}

void llmlab_kv_write(llmlab_kv *kv, int seq, int slot, int layer, const float *k, const float *v) {
    int b = llmlab_kv_slot_block(kv, seq, slot), row = slot % kv->o.block_size;
    size_t rb = kv->row_floats * sizeof(float);
    if (kv->fmt.dtype == LLMLAB_KV_F32) { /* the f32 layout: one head-major row per slot */
        memcpy(record(kv, b, row, layer, 0, 0), k, rb);
        memcpy(record(kv, b, row, layer, 1, 0), v, rb);
        return;
    }
    if (kv->stage[b]) {
        memcpy(staged(kv, b, row, layer, 0, 0), k, rb);
        memcpy(staged(kv, b, row, layer, 1, 0), v, rb);
        return;
    }
    size_t hd = (size_t)kv->o.head_dim;
    for (int h = 0; h < kv->o.n_kv_heads; h++) {
        put_row(kv, b, row, layer, 0, h, k + (size_t)h * hd);
        put_row(kv, b, row, layer, 1, h, v + (size_t)h * hd);
    }
}

void llmlab_kvs_move(llmlab_kv *kv, int fb, int fr, int tb, int tr, int layer, int head, int defer_keys) {
    float buf[LLMLAB_KV_MAX_HEAD_DIM];
    for (int w = 0; w < 2; w++) {
        if (!kv->stage[tb] && (kv->fmt.dtype == LLMLAB_KV_F32 || (!kv->stage[fb] && !per_channel_key(kv, w)))) {
            /* cold to cold per-token records (f32 included): the bytes, scales and all */
            llmlab_kvs_pool_copy(kv, record(kv, tb, tr, layer, w, head), record(kv, fb, fr, layer, w, head),
                                 kv->rec_bytes[w]);
            continue;
        }
        if (defer_keys && !kv->stage[tb] && per_channel_key(kv, w)) continue;
        put_row(kv, tb, tr, layer, w, head, llmlab_kvs_read(kv, fb, fr, layer, w, head, buf));
    }
}

/* ---- hot blocks ------------------------------------------------------------------------------ */

int llmlab_kvs_is_hot(const llmlab_kv *kv, int b) { return b >= 0 && kv->stage[b] != NULL; }

static llmlab_status stage_alloc(llmlab_kv *kv, int b, llmlab_err *err) {
    kv->stage[b] = malloc(kv->block_floats * sizeof(float));
    if (!kv->stage[b])
        return llmlab_err_set(err, LLMLAB_ENOMEM, "KV cache: out of memory for an f32 staging block (%zu KiB)",
                              (kv->block_floats * sizeof(float)) >> 10);
    kv->n_hot++;
    return LLMLAB_OK;
}

llmlab_status llmlab_kvs_fresh(llmlab_kv *kv, int b, llmlab_err *err) {
    if (!kv->staged || kv->stage[b]) return LLMLAB_OK;
    return stage_alloc(kv, b, err);
}

void llmlab_kvs_release(llmlab_kv *kv, int b) {
    if (!kv->stage[b]) return;
    free(kv->stage[b]);
    kv->stage[b] = NULL;
    kv->n_hot--;
}

llmlab_status llmlab_kvs_copy(llmlab_kv *kv, int dst, int src, llmlab_err *err) {
    llmlab_kvs_pool_copy(kv, kv->pool + (size_t)dst * kv->block_bytes, kv->pool + (size_t)src * kv->block_bytes,
                         kv->block_bytes);
    if (!kv->stage[src]) {
        llmlab_kvs_release(kv, dst);
        return LLMLAB_OK;
    }
    llmlab_status st = kv->stage[dst] ? LLMLAB_OK : stage_alloc(kv, dst, err);
    if (!st) memcpy(kv->stage[dst], kv->stage[src], kv->block_floats * sizeof(float));
    return st;
}

void llmlab_kvs_cool(llmlab_kv *kv, int b) {
    if (!kv->stage[b]) return;
    int bs = kv->o.block_size, nkv = kv->o.n_kv_heads;
    for (int l = 0; l < kv->o.n_layers; l++)
        for (int w = 0; w < 2; w++) {
            llmlab_kvq_row f = row_fmt(kv, w);
            for (int h = 0; h < nkv; h++) {
                if (per_channel_key(kv, w)) {
                    llmlab_kvs_requant_keys(kv, b, l, h, staged(kv, b, 0, l, 0, h), kv->row_floats);
                    continue;
                }
                for (int r = 0; r < bs; r++)
                    llmlab_kvq_encode_row(&f, staged(kv, b, r, l, w, h), record(kv, b, r, l, w, h));
            }
        }
    llmlab_kvs_release(kv, b);
}

llmlab_status llmlab_kvs_heat(llmlab_kv *kv, int b, llmlab_err *err) {
    if (kv->stage[b] || kv->fmt.dtype == LLMLAB_KV_F32) return LLMLAB_OK;
    llmlab_status st = stage_alloc(kv, b, err);
    if (st) return st;
    for (int l = 0; l < kv->o.n_layers; l++)
        for (int w = 0; w < 2; w++)
            for (int h = 0; h < kv->o.n_kv_heads; h++)
                for (int r = 0; r < kv->o.block_size; r++) decode(kv, b, r, l, w, h, staged(kv, b, r, l, w, h));
    return LLMLAB_OK;
}
