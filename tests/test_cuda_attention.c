/* test_cuda_attention.c - paged attention on the device (kernels/cuda/cuda_attention.h)
 * against the CPU kernels of kernels/cpu/ops.h.
 *
 * Every test builds a real host cache (core/kv_cache.h) in f32, f16 or bf16:
 * several sequences appended in small interleaved steps (so block tables are
 * scattered over the pool), fresh random K/V written into every slot of two
 * layers (layer 1 is attended, so the layer offsets matter), holes punched with
 * per-lane evictions and a whole block evicted (a -1 table entry).  The pool,
 * the per-slot metadata and the tables are uploaded as they are; batches mix
 * decode tokens, causal prefill chunks, tree and lookahead-mask extras and
 * tokens with no visible key.
 *
 *   reference    every (token, head) against llmlab_cpu_attention_ref (double)
 *                within atol + rtol*|ref|, and the attention mass against
 *                llmlab_cpu_attention's mass output, for the split/combine
 *                (decode) kernels and the prefill kernel, every pattern,
 *                rope_shifted, GQA and MHA, head_dim 30..256, both load paths.
 *   determinism  deterministic = 1: a token's output (and mass) is the same
 *                bits alone or with 20 other tokens, with any n_splits, and a
 *                prompt attended one-shot or incrementally.
 *   kv_store     rows stored on the device equal llmlab_kv_write's bytes.
 *   errors       bad arguments come back as EINVAL with a message (these run
 *                in a CUDA build even without a device).
 *
 * Tolerances.  The reference reads the same stored (decoded) K/V as the kernels,
 * so f16/bf16 storage adds no error of its own: what remains is f32 against
 * double for the scores (|s| < ~8 here, f32 dot over <= 256 terms: ~1e-6
 * absolute), exp and the weighted sums over <= ~700 keys of |v| < 1: far below
 * rtol 1e-4 with atol 2e-5.  rope_shifted adds the device's cosf/sinf (within 2
 * ulp of glibc's), ~1e-7 relative on a rotated key.
 *
 * Every test skips without a CUDA build or device (except the error checks,
 * which need no device); inputs are fresh random numbers, the seed is printed in
 * every failure message (replay with LLMLAB_TEST_SEED). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmlab/llmlab.h"

#ifndef LLMLAB_HAVE_CUDA

Test(cuda_attention, skipped_without_cuda) { cr_skip_test("built without CUDA (LLMLAB_CUDA=OFF or no toolkit)"); }

#else

#include "core/kv_cache.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_quant.h"
#include "kernels/cuda/cuda_stream.h" /* llmlab_cuda_qctx_stream */
#include "tests/util/cuda_device.h"
#include "tests/util/test_rng.h"

enum { NL = 2, LAYER = 1, BS = 16, MAXS = 32, MAXT = 640, MAXE = 200000 };
#define ATOL 2e-5
#define RTOL 1e-4
#define SEED ((unsigned long long)test_rng_seed)

static int rand_int(int lo, int hi) { return lo + (int)(test_rng_u64() % (uint64_t)(hi - lo + 1)); }

/* ---- the device ---------------------------------------------------------------------- */

static llmlab_cuda_qctx *g_ctx;

static void need_device(void) {
    g_ctx = cuda_test_device();
}

static void done_device(void) {
    llmlab_cuda_qctx_free(g_ctx);
    g_ctx = NULL;
}

/* Device buffers of one run, freed together. */
typedef struct {
    void *p[32];
    int n;
} dev_set;

static void *dev_alloc(dev_set *s, size_t bytes) {
    llmlab_err err = {0};
    void *d = NULL;
    cr_assert_lt(s->n, 32);
    cr_assert_eq(llmlab_cuda_mem_alloc(g_ctx, &d, bytes ? bytes : 16, &err), LLMLAB_OK, "%s", err.msg);
    s->p[s->n++] = d;
    return d;
}

/* A device copy of h (NULL stays NULL). */
static void *dev_up(dev_set *s, const void *h, size_t bytes) {
    if (!h) return NULL;
    llmlab_err err = {0};
    void *d = dev_alloc(s, bytes);
    if (bytes) cr_assert_eq(llmlab_cuda_mem_h2d(g_ctx, d, h, bytes, &err), LLMLAB_OK, "%s", err.msg);
    return d;
}

static void dev_down(void *h, const void *d, size_t bytes) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cuda_mem_d2h(g_ctx, h, d, bytes, &err), LLMLAB_OK, "%s", err.msg);
}

static void dev_free_all(dev_set *s) {
    for (int i = 0; i < s->n; i++) llmlab_cuda_mem_free(s->p[i]);
    s->n = 0;
}

/* ---- host caches ------------------------------------------------------------------------- */

typedef struct {
    llmlab_kv *kv;
    int nkv, nh, hd, dtype, nseq;
    int lens[MAXS];
    int holes[MAXS]; /* the sequence has evicted slots */
} cache;

static const char *dtype_name(int dt) { return dt == LLMLAB_KV_F32 ? "f32" : dt == LLMLAB_KV_F16 ? "f16" : "bf16"; }

static void rand_rows(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * test_rng_f();
}

/* A cache holding nseq sequences of lens[s] slots, appended in interleaved
 * steps of 1..7 slots (scattered block tables), positions slot + a per-sequence
 * offset, random K/V in every slot of every layer, all committed. */
static cache cache_new(int dtype, int nkv, int group, int hd, int nseq, const int *lens) {
    cache c = {.nkv = nkv, .nh = nkv * group, .hd = hd, .dtype = dtype, .nseq = nseq};
    int total_blocks = 0;
    for (int s = 0; s < nseq; s++) {
        c.lens[s] = lens[s];
        total_blocks += (lens[s] + BS - 1) / BS;
    }
    llmlab_kv_opts o = {.n_layers = NL, .n_kv_heads = nkv, .head_dim = hd, .block_size = BS,
                        .n_blocks = total_blocks + 4, .max_seqs = MAXS,
                        .fmt = {.size = sizeof(llmlab_kv_format), .dtype = dtype}};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_create(&c.kv, &o, &err), LLMLAB_OK, "%s", err.msg);
    int done[MAXS] = {0}, off[MAXS], left = 1;
    for (int s = 0; s < nseq; s++) off[s] = rand_int(0, 40);
    while (left) {
        left = 0;
        for (int s = 0; s < nseq; s++) {
            if (done[s] >= lens[s]) continue;
            int n = rand_int(1, 7), first;
            if (n > lens[s] - done[s]) n = lens[s] - done[s];
            int32_t pos[8];
            for (int j = 0; j < n; j++) pos[j] = done[s] + j + off[s];
            cr_assert_eq(llmlab_kv_append(c.kv, s, n, pos, &first, &err), LLMLAB_OK, "%s", err.msg);
            done[s] += n;
            left |= done[s] < lens[s];
        }
    }
    size_t rf = (size_t)nkv * (size_t)hd;
    float *k = malloc(rf * sizeof *k), *v = malloc(rf * sizeof *v);
    for (int s = 0; s < nseq; s++) {
        for (int slot = 0; slot < lens[s]; slot++)
            for (int l = 0; l < NL; l++) {
                rand_rows(k, rf, 1.0f);
                rand_rows(v, rf, 1.0f);
                llmlab_kv_write(c.kv, s, slot, l, k, v);
            }
        llmlab_kv_commit(c.kv, s);
    }
    free(k);
    free(v);
    return c;
}

/* Evicts about one slot in `every` of slots [0, upto) of seq, each in one random
 * lane of the attended layer (or in all lanes), and marks the sequence holed. */
static void punch_holes(cache *c, int seq, int upto, int every) {
    llmlab_err err = {0};
    for (int slot = 0; slot < upto; slot++) {
        if (rand_int(0, every - 1)) continue;
        if (rand_int(0, 3) == 0) cr_assert_eq(llmlab_kv_evict(c->kv, seq, &slot, 1, &err), LLMLAB_OK, "%s", err.msg);
        else
            cr_assert_eq(llmlab_kv_evict_lane(c->kv, seq, LAYER * c->nkv + rand_int(0, c->nkv - 1), &slot, 1, &err),
                         LLMLAB_OK, "%s", err.msg);
    }
    c->holes[seq] = 1;
}

/* Evicts every slot of table entry `blk` of seq in every lane: the block is freed. */
static void free_block(cache *c, int seq, int blk) {
    llmlab_err err = {0};
    int slots[BS];
    for (int r = 0; r < BS; r++) slots[r] = blk * BS + r;
    cr_assert_eq(llmlab_kv_evict(c->kv, seq, slots, BS, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_kv_slot_block(c->kv, seq, blk * BS), -1, "block %d of sequence %d was not freed", blk, seq);
    c->holes[seq] = 1;
}

/* Evicts slots [0, upto) of seq in the lane of KV head kvh: its query heads see nothing there. */
static void empty_lane(cache *c, int seq, int kvh, int upto) {
    llmlab_err err = {0};
    for (int slot = 0; slot < upto; slot++)
        cr_assert_eq(llmlab_kv_evict_lane(c->kv, seq, LAYER * c->nkv + kvh, &slot, 1, &err), LLMLAB_OK, "%s", err.msg);
    c->holes[seq] = 1;
}

/* ---- batches ----------------------------------------------------------------------------- */

typedef struct {
    int n;
    int seq[MAXT], prior[MAXT], q_pos[MAXT], n_rand[MAXT];
    uint8_t meta[MAXT];
    int extra_off[MAXT + 1];
    int *extra; /* [MAXE] */
    int rand[MAXT][LLMLAB_MAX_RANDOM_BLOCKS];
    int n_tiles;
    int tiles[MAXT][2];
} batch;

static batch *batch_new(void) {
    batch *b = calloc(1, sizeof *b);
    b->extra = malloc(MAXE * sizeof *b->extra);
    cr_assert(b && b->extra);
    return b;
}

static void batch_free(batch *b) {
    free(b->extra);
    free(b);
}

/* One token: `prior` prior slots of seq, then extras (ascending, >= prior);
 * its position is that of slot own (-1: 0). */
static void batch_token(batch *b, const cache *c, int seq, int prior, const int *extra, int n_extra, int own) {
    cr_assert_lt(b->n, MAXT);
    int i = b->n++, e0 = b->extra_off[i];
    cr_assert_leq(e0 + n_extra, MAXE);
    b->seq[i] = seq;
    b->prior[i] = prior;
    b->q_pos[i] = own >= 0 ? llmlab_kv_slot_pos(c->kv, seq, own) : 0;
    b->meta[i] = c->holes[seq] ? 1 : (uint8_t)rand_int(0, 1); /* meta 1 without holes: the same keys */
    if (n_extra) memcpy(b->extra + e0, extra, (size_t)n_extra * sizeof *extra);
    b->extra_off[i + 1] = e0 + n_extra;
}

static void batch_tile(batch *b, int first, int count) {
    b->tiles[b->n_tiles][0] = first;
    b->tiles[b->n_tiles][1] = count;
    b->n_tiles++;
}

/* A decode token: the last slot of seq, every earlier slot a prior key. */
static void add_decode(batch *b, const cache *c, int seq) {
    int own = c->lens[seq] - 1, first = b->n;
    batch_token(b, c, seq, own, &own, 1, own);
    batch_tile(b, first, 1);
}

/* A causal chunk: the last e slots of seq as tokens, each seeing the earlier
 * slots as prior keys and the chunk up to itself as extras; one tile. */
static void add_chunk(batch *b, const cache *c, int seq, int e) {
    int prior = c->lens[seq] - e, first = b->n, ex[MAXT];
    for (int j = 0; j < e; j++) {
        ex[j] = prior + j;
        batch_token(b, c, seq, prior, ex, j + 1, prior + j);
    }
    batch_tile(b, first, e);
}

/* A draft tree over the last n slots of seq: node j's parent parents[j] < j
 * (-1 = the root's parent is the prior context); extras = its ancestors and
 * itself, ascending. */
static void add_tree(batch *b, const cache *c, int seq, const int *parents, int n) {
    int prior = c->lens[seq] - n, first = b->n;
    for (int j = 0; j < n; j++) {
        int chain[64], m = 0;
        for (int a = j; a >= 0; a = parents[a]) chain[m++] = prior + a;
        int ex[64];
        for (int k = 0; k < m; k++) ex[k] = chain[m - 1 - k];
        batch_token(b, c, seq, prior, ex, m, prior + j);
    }
    batch_tile(b, first, n);
}

/* Lookahead-style mask rows over the last n slots: row j sees a random subset
 * of the earlier rows and itself. */
static void add_mask(batch *b, const cache *c, int seq, int n) {
    int prior = c->lens[seq] - n, first = b->n;
    for (int j = 0; j < n; j++) {
        int ex[MAXT], m = 0;
        for (int k = 0; k < j; k++)
            if (rand_int(0, 1)) ex[m++] = prior + k;
        ex[m++] = prior + j;
        batch_token(b, c, seq, prior, ex, m, prior + j);
    }
    batch_tile(b, first, n);
}

/* A token seeing only prior slots (every slot of seq), no extras. */
static void add_prior_only(batch *b, const cache *c, int seq) {
    int first = b->n;
    batch_token(b, c, seq, c->lens[seq], NULL, 0, c->lens[seq] - 1);
    batch_tile(b, first, 1);
}

/* A token with no key at all (no prior slot, no extra): zeros. */
static void add_empty(batch *b, const cache *c, int seq) {
    int first = b->n;
    batch_token(b, c, seq, 0, NULL, 0, -1);
    batch_tile(b, first, 1);
}

/* The pattern's random blocks for every token (as core/forward.c draws them). */
static void set_random_blocks(batch *b, const llmlab_attn_pattern *p) {
    for (int i = 0; i < b->n; i++) {
        b->n_rand[i] = 0;
        if (!p || p->block <= 0 || p->random_blocks <= 0) continue;
        int qb = b->q_pos[i] / p->block;
        b->n_rand[i] = llmlab_pattern_random_blocks(p->seed, qb, p->global_blocks, qb - p->window_blocks,
                                                    p->random_blocks, b->rand[i]);
    }
}

static int token_keys(const batch *b, int i) { return b->prior[i] + b->extra_off[i + 1] - b->extra_off[i]; }

/* ---- running ----------------------------------------------------------------------------- */

typedef struct {
    const llmlab_attn_pattern *pat; /* NULL: every key */
    const float *inv_freq;          /* rope_shifted: [hd/2], else NULL */
    int chunk;
    int n_splits;                   /* 0: as few as the longest token needs */
    int deterministic;
    int use_tiles;                  /* pass the batch's tiles */
    int want_mass;
} run_cfg;

static int needed_splits(const batch *b, int chunk) {
    int n = 1;
    for (int i = 0; i < b->n; i++) {
        int c = (token_keys(b, i) + chunk - 1) / chunk;
        if (c > n) n = c;
    }
    return n;
}

static int mass_stride_of(const cache *c) {
    int m = 1;
    for (int s = 0; s < c->nseq; s++)
        if (c->lens[s] > m) m = c->lens[s];
    return m;
}

static void inv_freq_for(float *inv, int hd) {
    for (int j = 0; j < hd / 2; j++) inv[j] = 1.0f / powf(10000.0f, (float)(2 * j) / (float)hd);
}

/* out[n][nh*hd] (and mass[n][nkv][mass_stride] when want_mass) on the device;
 * both are poisoned with NaN first and must come back finite. */
static void run_gpu(const cache *c, const batch *b, const float *q, const run_cfg *r, float *out, float *mass) {
    const llmlab_kv *kv = c->kv;
    dev_set ds = {0};
    llmlab_err err = {0};
    int stride = 1;
    for (int s = 0; s < MAXS; s++)
        if (kv->seqs[s].n_blocks > stride) stride = kv->seqs[s].n_blocks;
    int32_t *tables = malloc((size_t)MAXS * (size_t)stride * sizeof *tables);
    for (int s = 0; s < MAXS; s++)
        for (int j = 0; j < stride; j++) tables[(size_t)s * stride + j] = j < kv->seqs[s].n_blocks ? kv->seqs[s].blocks[j] : -1;
    size_t n_meta = (size_t)kv->o.n_blocks * (size_t)kv->n_lanes * BS, n = (size_t)b->n;
    size_t out_n = n * (size_t)c->nh * (size_t)c->hd;
    int ms = mass_stride_of(c), n_splits = r->n_splits ? r->n_splits : needed_splits(b, r->chunk);
    size_t mass_n = n * (size_t)c->nkv * (size_t)ms;
    const llmlab_attn_pattern *p = r->pat && r->pat->block > 0 ? r->pat : NULL;

    llmlab_cuda_attn_args a = {
        .pool = dev_up(&ds, kv->pool, (size_t)kv->o.n_blocks * kv->block_bytes),
        .block_bytes = kv->block_bytes,
        .layer_bytes = kv->region_bytes[0] + kv->region_bytes[1],
        .v_offset = kv->region_bytes[0],
        .rec_bytes = kv->rec_bytes[0],
        .kv_dtype = c->dtype,
        .block_size = BS,
        .n_kv_heads = c->nkv,
        .head_dim = c->hd,
        .n_heads = c->nh,
        .layer = LAYER,
        .slot_pos = dev_up(&ds, kv->slot_pos, n_meta * sizeof(int32_t)),
        .slot_valid = dev_up(&ds, kv->slot_valid, n_meta),
        .n_lanes = kv->n_lanes,
        .tables = dev_up(&ds, tables, (size_t)MAXS * (size_t)stride * sizeof(int32_t)),
        .table_stride = stride,
        .n_tokens = b->n,
        .tok_table = dev_up(&ds, b->seq, n * sizeof(int32_t)),
        .prior = dev_up(&ds, b->prior, n * sizeof(int32_t)),
        .q_pos = dev_up(&ds, b->q_pos, n * sizeof(int32_t)),
        .meta = dev_up(&ds, b->meta, n),
        .extra_off = dev_up(&ds, b->extra_off, (n + 1) * sizeof(int32_t)),
        .extra_slots = dev_up(&ds, b->extra, ((size_t)b->extra_off[b->n] + 1) * sizeof(int32_t)),
        .pat_block = p ? p->block : 0,
        .pat_global = p ? p->global_blocks : 0,
        .pat_window = p ? p->window_blocks : 0,
        .layout_blocks = p && p->layout ? p->layout_blocks : 0,
        .layout = p && p->layout ? dev_up(&ds, p->layout, (size_t)p->layout_blocks * (size_t)p->layout_blocks) : NULL,
        .rand = p ? dev_up(&ds, b->rand, n * LLMLAB_MAX_RANDOM_BLOCKS * sizeof(int32_t)) : NULL,
        .n_rand = p ? dev_up(&ds, b->n_rand, n * sizeof(int32_t)) : NULL,
        .inv_freq = r->inv_freq ? dev_up(&ds, r->inv_freq, (size_t)c->hd / 2 * sizeof(float)) : NULL,
        .q = dev_up(&ds, q, out_n * sizeof(float)),
        .out = dev_alloc(&ds, out_n * sizeof(float)),
        .scale = 1.0f / sqrtf((float)c->hd),
        .mass = r->want_mass ? dev_alloc(&ds, mass_n * sizeof(float)) : NULL,
        .mass_stride = ms,
        .chunk = r->chunk,
        .n_splits = n_splits,
        .deterministic = r->deterministic,
        .tiles = r->use_tiles ? dev_up(&ds, b->tiles, (size_t)b->n_tiles * 2 * sizeof(int32_t)) : NULL,
        .n_tiles = r->use_tiles ? b->n_tiles : 0,
    };
    size_t wb = llmlab_cuda_attn_work_bytes(b->n, c->nh, c->hd, n_splits);
    void *work = dev_alloc(&ds, wb);
    cr_assert_eq(llmlab_cuda_mem_set(g_ctx, a.out, 0xff, out_n * sizeof(float), &err), LLMLAB_OK, "%s", err.msg);
    if (a.mass) cr_assert_eq(llmlab_cuda_mem_set(g_ctx, a.mass, 0xff, mass_n * sizeof(float), &err), LLMLAB_OK);
    cr_assert_eq(llmlab_cuda_mem_set(g_ctx, work, 0xff, wb, &err), LLMLAB_OK, "%s", err.msg); /* no reliance on zeros */
    cr_assert_eq(llmlab_cuda_attention(llmlab_cuda_qctx_stream(g_ctx), &a, work, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_qctx_sync(g_ctx, &err), LLMLAB_OK, "attention kernels: %s", err.msg);
    dev_down(out, a.out, out_n * sizeof(float));
    if (mass) dev_down(mass, a.mass, mass_n * sizeof(float));
    dev_free_all(&ds);
    free(tables);
    for (size_t e = 0; e < out_n; e++)
        cr_assert(isfinite(out[e]), "out[%zu][%zu] not written or not finite (%g) (seed %llu)",
                  e / ((size_t)c->nh * c->hd), e % ((size_t)c->nh * c->hd), (double)out[e], SEED);
    for (size_t e = 0; mass && e < mass_n; e++)
        cr_assert(isfinite(mass[e]), "mass[%zu] not written or not finite (%g) (seed %llu)", e, (double)mass[e], SEED);
}

static llmlab_attn_keys keys_of(const cache *c, const batch *b, const run_cfg *r, int i, int kvh) {
    const llmlab_attn_pattern *p = r->pat && r->pat->block > 0 ? r->pat : NULL;
    return (llmlab_attn_keys){.kv = c->kv, .seq = b->seq[i], .layer = LAYER, .kv_head = kvh,
                              .n_prior = b->prior[i], .extra = b->extra + b->extra_off[i],
                              .n_extra = b->extra_off[i + 1] - b->extra_off[i], .pat = p, .q_pos = b->q_pos[i],
                              .rand = b->rand[i], .n_rand = b->n_rand[i], .inv_freq = r->inv_freq};
}

/* The CPU's answers: ref from llmlab_cpu_attention_ref, mass from llmlab_cpu_attention. */
static void run_ref(const cache *c, const batch *b, const float *q, const run_cfg *r, float *ref, float *mass) {
    int group = c->nh / c->nkv, hd = c->hd, ms = mass_stride_of(c);
    float scale = 1.0f / sqrtf((float)hd);
    float *scores = malloc((size_t)(ms + MAXT) * sizeof *scores), *tmp = malloc((size_t)hd * sizeof *tmp);
    for (int i = 0; i < b->n; i++)
        for (int h = 0; h < c->nh; h++) {
            llmlab_attn_keys keys = keys_of(c, b, r, i, h / group);
            size_t o = ((size_t)i * c->nh + (size_t)h) * (size_t)hd;
            llmlab_cpu_attention_ref(ref + o, q + o, hd, &keys, scale);
        }
    for (int i = 0; mass && i < b->n; i++)
        for (int kvh = 0; kvh < c->nkv; kvh++) {
            float *row = mass + ((size_t)i * c->nkv + (size_t)kvh) * (size_t)ms;
            memset(row, 0, (size_t)ms * sizeof *row);
            llmlab_attn_keys keys = keys_of(c, b, r, i, kvh);
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                llmlab_cpu_attention(tmp, q + ((size_t)i * c->nh + (size_t)h) * (size_t)hd, hd, &keys, scale, scores, row);
        }
    free(scores);
    free(tmp);
}

/* |got - want| <= atol + rtol |want| for all; rows of row_len elements. */
static void check_close(const float *got, const float *want, size_t n, size_t row_len, double atol, double rtol,
                        const char *what) {
    for (size_t e = 0; e < n; e++) {
        double d = fabs((double)got[e] - (double)want[e]);
        cr_assert(d <= atol + rtol * fabs((double)want[e]), "%s: token %zu element %zu: %.9g vs reference %.9g (seed %llu)",
                  what, e / row_len, e % row_len, (double)got[e], (double)want[e], SEED);
    }
}

/* Runs the batch on the device and compares with the CPU (outputs, and mass when asked). */
static void check_batch(const cache *c, batch *b, const run_cfg *r, float qscale, const char *what) {
    set_random_blocks(b, r->pat);
    size_t row = (size_t)c->nh * (size_t)c->hd, n = (size_t)b->n * row;
    size_t mn = (size_t)b->n * (size_t)c->nkv * (size_t)mass_stride_of(c);
    float *q = malloc(n * sizeof *q), *out = malloc(n * sizeof *out), *ref = malloc(n * sizeof *ref);
    float *mass = r->want_mass ? malloc(mn * sizeof *mass) : NULL, *mref = r->want_mass ? malloc(mn * sizeof *mref) : NULL;
    rand_rows(q, n, qscale);
    run_gpu(c, b, q, r, out, mass);
    run_ref(c, b, q, r, ref, mref);
    char msg[256];
    snprintf(msg, sizeof msg, "%s (%s, %d KV heads x %d, head_dim %d, chunk %d, %s kernel)", what, dtype_name(c->dtype),
             c->nkv, c->nh / c->nkv, c->hd, r->chunk, !r->deterministic && r->use_tiles && !r->inv_freq ? "prefill" : "split");
    check_close(out, ref, n, row, ATOL, RTOL, msg);
    if (mass) {
        /* mass sums <= group probabilities, each computed from the same kind of scores */
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " mass");
        check_close(mass, mref, mn, (size_t)c->nkv * (size_t)mass_stride_of(c), 2e-6, RTOL, msg);
    }
    free(q);
    free(out);
    free(ref);
    free(mass);
    free(mref);
}

/* ---- shapes ------------------------------------------------------------------------------- */

typedef struct {
    int nkv, group, hd;
} shape;

static const shape GQA128 = {2, 4, 128}, MHA64 = {4, 1, 64};
static const int DTYPES[] = {LLMLAB_KV_F32, LLMLAB_KV_F16, LLMLAB_KV_BF16};

/* The mixed batch: two long decode sequences with holes (one with a freed
 * block), a causal chunk (holes in its own slots too), a tree, lookahead mask
 * rows, a sequence whose first KV head lost every prior slot, a token with no
 * key at all and one with prior slots only. */
static cache mixed_cache(int dtype, shape s) {
    int lens[7] = {rand_int(600, 700), rand_int(250, 350), 90, 60, 45, 40, 5};
    cache c = cache_new(dtype, s.nkv, s.group, s.hd, 7, lens);
    punch_holes(&c, 0, lens[0] - 1, 5);
    free_block(&c, 0, 2);
    punch_holes(&c, 1, lens[1] - 1, 3);
    punch_holes(&c, 2, lens[2], 6); /* the chunk's own slots too: extras ignore valid bits, as on the CPU */
    punch_holes(&c, 3, lens[3] - 7, 4);
    empty_lane(&c, 5, 0, lens[5] - 1);
    return c;
}

static void mixed_batch(batch *b, const cache *c) {
    static const int parents[7] = {-1, 0, 0, 1, 1, 2, 4};
    add_decode(b, c, 0);
    add_chunk(b, c, 2, 20);
    add_decode(b, c, 1);
    add_tree(b, c, 3, parents, 7);
    add_mask(b, c, 4, 9);
    add_decode(b, c, 5);
    add_empty(b, c, 6);
    add_decode(b, c, 6);
    add_prior_only(b, c, 4);
}

/* ---- tests: against the CPU ------------------------------------------------------------------- */

Test(cuda_attention, split_kernels_match_the_cpu_on_mixed_batches) {
    need_device();
    const shape shapes[2] = {GQA128, MHA64};
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 3; di++) {
            cache c = mixed_cache(DTYPES[di], shapes[si]);
            batch *b = batch_new();
            mixed_batch(b, &c);
            run_cfg r = {.chunk = 64, .deterministic = 1, .want_mass = 1};
            check_batch(&c, b, &r, 3.0f, "mixed batch");
            r.chunk = 16; /* many more chunks, and more splits than needed */
            r.n_splits = needed_splits(b, 16) + 3;
            check_batch(&c, b, &r, 3.0f, "mixed batch, chunk 16");
            batch_free(b);
            llmlab_kv_free(c.kv);
        }
    done_device();
}

Test(cuda_attention, prefill_kernel_matches_the_cpu) {
    need_device();
    const shape shapes[2] = {GQA128, MHA64};
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 3; di += 2) { /* f32 and bf16 */
            cache c = mixed_cache(DTYPES[di], shapes[si]);
            batch *b = batch_new();
            mixed_batch(b, &c);
            add_chunk(b, &c, 1, 150); /* a tile of 150 rows: three passes of 64 */
            run_cfg r = {.chunk = 64, .deterministic = 0, .use_tiles = 1, .want_mass = 1};
            check_batch(&c, b, &r, 3.0f, "prefill tiles");
            batch_free(b);
            llmlab_kv_free(c.kv);
        }
    done_device();
}

Test(cuda_attention, patterns_match_the_cpu) {
    need_device();
    uint8_t layout[64 * 64];
    llmlab_attn_pattern pats[4] = {
        {.size = sizeof(llmlab_attn_pattern), .block = 1, .window_blocks = 48},
        {.size = sizeof(llmlab_attn_pattern), .block = 1, .global_blocks = 4, .window_blocks = 32},
        {.size = sizeof(llmlab_attn_pattern), .block = 8, .global_blocks = 1, .window_blocks = 2, .random_blocks = 3},
        {.size = sizeof(llmlab_attn_pattern), .block = 16, .layout = layout, .layout_blocks = 64},
    };
    static const char *names[4] = {"window", "sinks+window", "global+window+random", "layout"};
    pats[2].seed = test_rng_u64();
    for (int di = 0; di < 3; di++) {
        const shape s = di == 1 ? GQA128 : MHA64;
        for (int pi = 0; pi < 4; pi++) {
            for (int e = 0; e < 64 * 64; e++) layout[e] = rand_int(0, 2) == 0;
            cache c = mixed_cache(DTYPES[di], s);
            batch *b = batch_new();
            mixed_batch(b, &c);
            for (int det = 1; det >= 0; det--) {
                run_cfg r = {.pat = &pats[pi], .chunk = 32, .deterministic = det, .use_tiles = 1, .want_mass = 1};
                check_batch(&c, b, &r, 3.0f, names[pi]);
            }
            batch_free(b);
            llmlab_kv_free(c.kv);
        }
    }
    done_device();
}

Test(cuda_attention, rope_shifted_matches_the_cpu) {
    need_device();
    llmlab_attn_pattern sinks = {.size = sizeof sinks, .block = 1, .global_blocks = 4, .window_blocks = 40};
    const shape shapes[2] = {GQA128, {2, 4, 64}};
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 3; di++) {
            float inv[128];
            inv_freq_for(inv, shapes[si].hd);
            cache c = mixed_cache(DTYPES[di], shapes[si]);
            batch *b = batch_new();
            mixed_batch(b, &c);
            /* chunk 16: ranks carried over many chunks; tiles with deterministic 0 still
             * take the split kernels (rope_shifted ranks are per query) */
            run_cfg r = {.pat = &sinks, .inv_freq = inv, .chunk = 16, .deterministic = 0, .use_tiles = 1, .want_mass = 1};
            check_batch(&c, b, &r, 2.0f, "rope_shifted sinks+window");
            r.pat = NULL;
            r.chunk = 48;
            check_batch(&c, b, &r, 2.0f, "rope_shifted dense");
            batch_free(b);
            llmlab_kv_free(c.kv);
        }
    done_device();
}

/* head_dim 256 (16-key tiles, 4 heads per block: a group of 6 splits 4 + 2),
 * head_dims whose records are not 16-byte multiples (the element-wise loads),
 * and an odd group. */
Test(cuda_attention, other_head_dims_and_groups) {
    need_device();
    static const struct {
        int dtype;
        shape s;
    } cases[] = {
        {LLMLAB_KV_BF16, {2, 6, 256}}, {LLMLAB_KV_F32, {2, 6, 256}}, {LLMLAB_KV_F16, {3, 3, 36}},
        {LLMLAB_KV_F32, {1, 5, 30}},   {LLMLAB_KV_F16, {2, 12, 96}},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        cache c = mixed_cache(cases[ci].dtype, cases[ci].s);
        batch *b = batch_new();
        mixed_batch(b, &c);
        float inv[128];
        inv_freq_for(inv, cases[ci].s.hd);
        run_cfg r = {.chunk = 40, .deterministic = 1, .use_tiles = 1, .want_mass = 1};
        check_batch(&c, b, &r, 3.0f, "split");
        r.deterministic = 0;
        check_batch(&c, b, &r, 3.0f, "prefill");
        r.inv_freq = inv;
        check_batch(&c, b, &r, 2.0f, "rope_shifted");
        batch_free(b);
        llmlab_kv_free(c.kv);
    }
    done_device();
}

/* A token with more keys than n_splits * chunk breaks the contract: NaN, not a
 * silently truncated softmax. */
Test(cuda_attention, too_many_keys_for_the_splits_gives_nan) {
    need_device();
    int lens[1] = {200};
    cache c = cache_new(LLMLAB_KV_F32, 2, 2, 64, 1, lens);
    batch *b = batch_new();
    add_decode(b, &c, 0);
    size_t n = (size_t)c.nh * (size_t)c.hd;
    float *q = malloc(n * sizeof *q);
    rand_rows(q, n, 1.0f);
    run_cfg r = {.chunk = 64, .n_splits = 3, .deterministic = 1}; /* 192 < 200 keys */
    const llmlab_kv *kv = c.kv;
    dev_set ds = {0};
    llmlab_err err = {0};
    int32_t table[16];
    for (int j = 0; j < 16; j++) table[j] = j < kv->seqs[0].n_blocks ? kv->seqs[0].blocks[j] : -1;
    size_t n_meta = (size_t)kv->o.n_blocks * (size_t)kv->n_lanes * BS;
    llmlab_cuda_attn_args a = {
        .pool = dev_up(&ds, kv->pool, (size_t)kv->o.n_blocks * kv->block_bytes), .block_bytes = kv->block_bytes,
        .layer_bytes = kv->region_bytes[0] + kv->region_bytes[1], .v_offset = kv->region_bytes[0],
        .rec_bytes = kv->rec_bytes[0], .kv_dtype = LLMLAB_KV_F32, .block_size = BS, .n_kv_heads = 2, .head_dim = 64,
        .n_heads = 4, .layer = LAYER, .slot_pos = dev_up(&ds, kv->slot_pos, n_meta * 4),
        .slot_valid = dev_up(&ds, kv->slot_valid, n_meta), .n_lanes = kv->n_lanes, .tables = dev_up(&ds, table, sizeof table),
        .table_stride = 16, .n_tokens = 1, .tok_table = dev_up(&ds, b->seq, 4), .prior = dev_up(&ds, b->prior, 4),
        .q_pos = dev_up(&ds, b->q_pos, 4), .extra_off = dev_up(&ds, b->extra_off, 8),
        .extra_slots = dev_up(&ds, b->extra, 4), .q = dev_up(&ds, q, n * 4), .out = dev_alloc(&ds, n * 4),
        .scale = 0.125f, .chunk = r.chunk, .n_splits = r.n_splits, .deterministic = 1};
    void *work = dev_alloc(&ds, llmlab_cuda_attn_work_bytes(1, 4, 64, 3));
    cr_assert_eq(llmlab_cuda_attention(llmlab_cuda_qctx_stream(g_ctx), &a, work, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_cuda_qctx_sync(g_ctx, &err), LLMLAB_OK, "%s", err.msg);
    float *out = malloc(n * sizeof *out);
    dev_down(out, a.out, n * 4);
    for (size_t e = 0; e < n; e++) cr_assert(isnan(out[e]), "out[%zu] = %g, want NaN", e, (double)out[e]);
    dev_free_all(&ds);
    free(q);
    free(out);
    batch_free(b);
    llmlab_kv_free(c.kv);
    done_device();
}

/* ---- tests: determinism ---------------------------------------------------------------------- */

static void run_and_keep(const cache *c, const batch *b, const float *q, const run_cfg *r, float **out, float **mass) {
    size_t n = (size_t)b->n * (size_t)c->nh * (size_t)c->hd;
    size_t mn = (size_t)b->n * (size_t)c->nkv * (size_t)mass_stride_of(c);
    *out = malloc(n * sizeof **out);
    *mass = r->want_mass ? malloc(mn * sizeof **mass) : NULL;
    run_gpu(c, b, q, r, *out, *mass);
}

/* The batch's token i alone (same keys, same query). */
static void single_token(batch *one, const batch *b, int i) {
    int e0 = b->extra_off[i], ne = b->extra_off[i + 1] - e0;
    one->n = 1;
    one->n_tiles = 0;
    one->seq[0] = b->seq[i];
    one->prior[0] = b->prior[i];
    one->q_pos[0] = b->q_pos[i];
    one->meta[0] = b->meta[i];
    one->extra_off[0] = 0;
    one->extra_off[1] = ne;
    memcpy(one->extra, b->extra + e0, (size_t)ne * sizeof *one->extra);
    batch_tile(one, 0, 1);
}

Test(cuda_attention, deterministic_token_is_the_same_bits_alone_or_in_a_batch) {
    need_device();
    llmlab_attn_pattern sinks = {.size = sizeof sinks, .block = 1, .global_blocks = 4, .window_blocks = 100};
    for (int variant = 0; variant < 2; variant++) {
        int lens[21];
        for (int s = 0; s < 21; s++) lens[s] = rand_int(1, 600);
        lens[0] = 700;
        lens[1] = 40;
        cache c = cache_new(variant ? LLMLAB_KV_BF16 : LLMLAB_KV_F16, 2, 4, 128, 21, lens);
        punch_holes(&c, 0, lens[0] - 1, 4);
        batch *b = batch_new(), *one = batch_new();
        add_chunk(b, &c, 1, 3); /* prefill rows: extras */
        for (int s = 2; s < 21; s++) add_decode(b, &c, s);
        add_decode(b, &c, 0);
        float inv[64];
        inv_freq_for(inv, 128);
        run_cfg r = {.chunk = 64, .deterministic = 1, .use_tiles = 1, .want_mass = 1,
                     .pat = variant ? &sinks : NULL, .inv_freq = variant ? inv : NULL};
        set_random_blocks(b, r.pat);
        size_t row = (size_t)c.nh * (size_t)c.hd, mrow = (size_t)c.nkv * (size_t)mass_stride_of(&c);
        float *q = malloc((size_t)b->n * row * sizeof *q), *out, *mass;
        rand_rows(q, (size_t)b->n * row, 3.0f);
        run_and_keep(&c, b, q, &r, &out, &mass);
        for (int i = 0; i < b->n; i++) {
            single_token(one, b, i);
            set_random_blocks(one, r.pat);
            run_cfg r1 = r;
            r1.n_splits = 0; /* just what this token needs: fewer splits than the batch */
            float *out1, *mass1;
            run_and_keep(&c, one, q + (size_t)i * row, &r1, &out1, &mass1);
            cr_assert(!memcmp(out1, out + (size_t)i * row, row * sizeof *out),
                      "variant %d: token %d alone differs from the same token in a batch of %d (seed %llu)", variant, i,
                      b->n, SEED);
            cr_assert(!memcmp(mass1, mass + (size_t)i * mrow, mrow * sizeof *mass),
                      "variant %d: token %d's mass alone differs from the batch's (seed %llu)", variant, i, SEED);
            free(out1);
            free(mass1);
        }
        free(q);
        free(out);
        free(mass);
        batch_free(b);
        batch_free(one);
        llmlab_kv_free(c.kv);
    }
    done_device();
}

Test(cuda_attention, deterministic_one_shot_and_incremental_prefill_agree) {
    need_device();
    llmlab_attn_pattern sinks = {.size = sizeof sinks, .block = 1, .global_blocks = 4, .window_blocks = 90};
    for (int variant = 0; variant < 3; variant++) {
        int N = 300, P = rand_int(60, 240), lens[1] = {N};
        const int dtypes[3] = {LLMLAB_KV_F32, LLMLAB_KV_BF16, LLMLAB_KV_F16};
        cache c = cache_new(dtypes[variant], 2, 4, variant == 2 ? 64 : 128, 1, lens);
        float inv[64];
        inv_freq_for(inv, c.hd);
        batch *all = batch_new(), *inc = batch_new();
        add_chunk(all, &c, 0, N); /* prior 0: every key an extra */
        add_chunk(inc, &c, 0, N - P); /* the first P slots as prior keys */
        for (int i = 0; i < all->n; i++) all->meta[i] = 0;
        for (int i = 0; i < inc->n; i++) inc->meta[i] = 0;
        run_cfg r = {.chunk = 64, .deterministic = 1, .use_tiles = 1,
                     .pat = variant == 2 ? &sinks : NULL, .inv_freq = variant >= 1 ? inv : NULL};
        set_random_blocks(all, r.pat);
        set_random_blocks(inc, r.pat);
        size_t row = (size_t)c.nh * (size_t)c.hd;
        float *q = malloc((size_t)N * row * sizeof *q), *o_all, *o_inc, *m_all, *m_inc;
        rand_rows(q, (size_t)N * row, 3.0f);
        run_and_keep(&c, all, q, &r, &o_all, &m_all);
        run_and_keep(&c, inc, q + (size_t)P * row, &r, &o_inc, &m_inc);
        for (int j = P; j < N; j++)
            cr_assert(!memcmp(o_all + (size_t)j * row, o_inc + (size_t)(j - P) * row, row * sizeof *q),
                      "variant %d: token %d one-shot differs from incremental after %d prior slots (seed %llu)", variant,
                      j, P, SEED);
        /* and the one-shot run agrees with the CPU */
        float *ref = malloc((size_t)N * row * sizeof *ref);
        run_ref(&c, all, q, &r, ref, NULL);
        check_close(o_all, ref, (size_t)N * row, row, ATOL, RTOL, "one-shot prefill");
        free(ref);
        free(q);
        free(o_all);
        free(o_inc);
        batch_free(all);
        batch_free(inc);
        llmlab_kv_free(c.kv);
    }
    done_device();
}

/* ---- tests: storing rows ---------------------------------------------------------------------- */

/* Values that exercise the encoders: saturation, overflow, subnormals, ties, signed zero, NaN. */
static float special_value(void) {
    static const float sp[] = {70000.0f, -1e6f,  65519.0f, 65520.0f, -65504.0f, 1e-6f,  -3e-8f, 6e-8f,
                               -0.0f,    0.0f,   1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f,
                               1.0f + 3 * 0x1p-8f, 2049.0f, INFINITY, -INFINITY, NAN, 3.0e38f, 1e-40f};
    return sp[rand_int(0, (int)(sizeof sp / sizeof sp[0]) - 1)];
}

Test(cuda_attention, kv_store_writes_the_host_encoders_bytes) {
    need_device();
    const shape shapes[2] = {GQA128, {3, 1, 72}};
    for (int si = 0; si < 2; si++)
        for (int di = 0; di < 3; di++) {
            int lens[4] = {100, 37, 64, 5};
            cache c = cache_new(DTYPES[di], shapes[si].nkv, shapes[si].group, shapes[si].hd, 4, lens);
            llmlab_kv *kv = c.kv;
            dev_set ds = {0};
            llmlab_err err = {0};
            size_t pool_bytes = (size_t)kv->o.n_blocks * kv->block_bytes, rf = (size_t)c.nkv * (size_t)c.hd;
            uint8_t *d_pool = dev_up(&ds, kv->pool, pool_bytes);
            enum { N = 41 };
            int32_t blk[N], row[N];
            float *k = malloc(N * rf * sizeof *k), *v = malloc(N * rf * sizeof *v);
            uint8_t used[4][128] = {{0}};
            for (int i = 0; i < N; i++) {
                int seq, slot;
                do { /* distinct slots: the device writes them in parallel */
                    seq = rand_int(0, 3);
                    slot = rand_int(0, lens[seq] - 1);
                } while (used[seq][slot]);
                used[seq][slot] = 1;
                blk[i] = llmlab_kv_slot_block(kv, seq, slot);
                row[i] = slot % BS;
                for (size_t e = 0; e < rf; e++) {
                    k[i * rf + e] = rand_int(0, 3) ? 100.0f * test_rng_f() : special_value();
                    v[i * rf + e] = rand_int(0, 3) ? test_rng_f() : special_value();
                }
                llmlab_kv_write(kv, seq, slot, LAYER, k + i * rf, v + i * rf);
            }
            llmlab_cuda_attn_args a = {.pool = d_pool, .block_bytes = kv->block_bytes,
                                       .layer_bytes = kv->region_bytes[0] + kv->region_bytes[1],
                                       .v_offset = kv->region_bytes[0], .rec_bytes = kv->rec_bytes[0],
                                       .kv_dtype = c.dtype, .block_size = BS, .n_kv_heads = c.nkv, .head_dim = c.hd,
                                       .n_heads = c.nh, .layer = LAYER};
            float *dk = dev_up(&ds, k, N * rf * sizeof *k), *dv = dev_up(&ds, v, N * rf * sizeof *v);
            int32_t *dblk = dev_up(&ds, blk, sizeof blk), *drow = dev_up(&ds, row, sizeof row);
            cr_assert_eq(llmlab_cuda_kv_store(llmlab_cuda_qctx_stream(g_ctx), &a, dk, dv, dblk, drow, N, &err), LLMLAB_OK,
                         "%s", err.msg);
            cr_assert_eq(llmlab_cuda_qctx_sync(g_ctx, &err), LLMLAB_OK, "%s", err.msg);
            uint8_t *back = malloc(pool_bytes);
            dev_down(back, d_pool, pool_bytes);
            for (size_t e = 0; e < pool_bytes; e++)
                cr_assert_eq(back[e], kv->pool[e],
                             "%s head_dim %d: pool byte %zu (block %zu) is %#x on the device, %#x from llmlab_kv_write "
                             "(seed %llu)",
                             dtype_name(c.dtype), c.hd, e, e / kv->block_bytes, back[e], kv->pool[e], SEED);
            free(back);
            free(k);
            free(v);
            dev_free_all(&ds);
            llmlab_kv_free(kv);
        }
    done_device();
}

/* ---- tests: errors (no device needed) ------------------------------------------------------------ */

static _Alignas(16) uint8_t g_fake[256];

/* Arguments that pass every check (pointers never dereferenced). */
static llmlab_cuda_attn_args valid_args(void) {
    uint8_t *f = g_fake;
    size_t rec = 64 * 2, region = 16 * 2 * rec;
    return (llmlab_cuda_attn_args){
        .pool = f, .block_bytes = 2 * 2 * region, .layer_bytes = 2 * region, .v_offset = region, .rec_bytes = rec,
        .kv_dtype = LLMLAB_KV_F16, .block_size = 16, .n_kv_heads = 2, .head_dim = 64, .n_heads = 8, .layer = 1,
        .slot_pos = (const int32_t *)(const void *)f, .slot_valid = f, .n_lanes = 4,
        .tables = (const int32_t *)(const void *)f, .table_stride = 4, .n_tokens = 3,
        .tok_table = (const int32_t *)(const void *)f, .prior = (const int32_t *)(const void *)f,
        .q_pos = (const int32_t *)(const void *)f, .meta = f, .extra_off = (const int32_t *)(const void *)f,
        .extra_slots = (const int32_t *)(const void *)f, .q = (const float *)(const void *)f, .out = (float *)(void *)f,
        .scale = 0.125f, .chunk = 64, .n_splits = 4, .deterministic = 1};
}

static void expect_einval(const llmlab_cuda_attn_args *a, void *work, const char *needle) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_cuda_attention(NULL, a, work, &err), LLMLAB_EINVAL, "want EINVAL for %s", needle);
    cr_assert(strstr(err.msg, needle), "message for %s: %s", needle, err.msg);
}

Test(cuda_attention, bad_arguments_give_messages) {
    void *work = g_fake;
    llmlab_cuda_attn_args a;
#define BAD(field, value, needle) \
    a = valid_args();             \
    a.field = value;              \
    expect_einval(&a, work, needle)
    BAD(head_dim, 300, "head_dim 300");
    BAD(head_dim, 0, "head_dim 0");
    BAD(kv_dtype, LLMLAB_KV_INT8, "kv_dtype 3");
    BAD(rec_bytes, 129, "rec_bytes 129");
    BAD(n_heads, 7, "n_heads 7");
    BAD(n_splits, 0, "n_splits 0");
    BAD(chunk, 0, "chunk 0");
    BAD(n_tokens, -1, "n_tokens -1");
    BAD(v_offset, 8, "v_offset 8");
    BAD(n_lanes, 2, "n_lanes 2");
    BAD(table_stride, 0, "table_stride 0");
    a = valid_args();
    a.pat_block = 4;
    a.slot_pos = NULL;
    expect_einval(&a, work, "slot_pos");
    BAD(layout_blocks, 3, "layout_blocks 3");
    BAD(mass, (float *)(void *)g_fake, "mass_stride 0");
    BAD(tiles, (const int32_t *)(const void *)g_fake, "n_tiles 0");
    BAD(extra_slots, NULL, "extra_slots");
    BAD(pool, NULL, "pool");
    a = valid_args();
    a.inv_freq = (const float *)(const void *)g_fake;
    a.head_dim = 63;
    a.rec_bytes = 126;
    a.block_bytes = 2 * 2 * 16 * 2 * 126;
    a.layer_bytes = 2 * 16 * 2 * 126;
    a.v_offset = 16 * 2 * 126;
    expect_einval(&a, work, "even head_dim");
    a = valid_args();
    expect_einval(&a, NULL, "work");
#undef BAD
    /* kv_store */
    llmlab_err err = {0};
    a = valid_args();
    a.kv_dtype = 9;
    const float *fk = (const float *)(const void *)g_fake;
    const int32_t *fi = (const int32_t *)(const void *)g_fake;
    cr_assert_eq(llmlab_cuda_kv_store(NULL, &a, fk, fk, fi, fi, 2, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "kv_dtype 9"), "message: %s", err.msg);
    a = valid_args();
    cr_assert_eq(llmlab_cuda_kv_store(NULL, &a, fk, fk, fi, fi, -2, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "n -2"), "message: %s", err.msg);
    cr_assert_eq(llmlab_cuda_kv_store(NULL, &a, NULL, fk, fi, fi, 2, &err), LLMLAB_EINVAL);
    cr_assert_eq(llmlab_cuda_kv_store(NULL, NULL, fk, fk, fi, fi, 2, &err), LLMLAB_EINVAL);
    cr_assert_eq(llmlab_cuda_kv_store(NULL, &a, fk, fk, fi, fi, 0, &err), LLMLAB_OK, "n 0 is nothing to do");
    a.n_tokens = 0; /* an empty batch is nothing to do, even without a work area */
    cr_assert_eq(llmlab_cuda_attention(NULL, &a, NULL, &err), LLMLAB_OK, "%s", err.msg);
    /* the work area grows with every dimension */
    size_t w0 = llmlab_cuda_attn_work_bytes(4, 8, 128, 3);
    cr_assert_gt(w0, (size_t)4 * 8 * 3 * 128 * sizeof(float));
    cr_assert_gt(llmlab_cuda_attn_work_bytes(5, 8, 128, 3), w0);
    cr_assert_gt(llmlab_cuda_attn_work_bytes(4, 8, 128, 4), w0);
    cr_assert_gt(llmlab_cuda_attn_work_bytes(4, 8, 256, 3), w0);
    cr_assert_eq(llmlab_cuda_attn_work_bytes(0, 8, 128, 3), 0);
}

#endif
