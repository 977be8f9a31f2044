/* attention.cu - paged attention on the device (cuda_attention.h): storing K/V
 * rows into the paged cache, and attention over it with every visibility rule of
 * the CPU kernel (kernels/cpu/ops.c llmlab_cpu_attention).
 *
 * Kernels, in launch order:
 *
 *   count    (rope_shifted only) grid (token, KV head, chunk): the number of
 *            visible keys in each chunk, so a chunk knows the rank of its first
 *            visible key (the sum of the earlier chunks' counts) and the query's
 *            rank (the sum of all of them, minus one).
 *   split    (flash-decoding) grid (token, KV head x head group, chunk): one
 *            block reduces the chunk's keys for up to `hb` query heads of one KV
 *            head (GQA: each key is loaded once for those heads), tile by tile
 *            of `tk` keys: resolve the keys (virtual index -> slot -> block,
 *            visibility), load the visible K and V records into shared memory
 *            (16-byte loads, decoded to f32), rotate keys (rope_shifted), scores
 *            by one warp per (head, key), then an online-softmax update per
 *            head (one thread, keys in order) and the accumulators (one thread
 *            per (head, dim), keys in order).  Writes (max, sum, acc[head_dim])
 *            per (token, head, chunk) to the work area.
 *   combine  grid (token, head): merges the chunks in chunk order (global max
 *            first, then the weighted sums in order) into out, and keeps the
 *            final (max, sum) for the mass pass.
 *   prefill  (deterministic == 0 and tiles, no rope_shifted) grid (tile, head):
 *            flash-attention style; 64 query rows of one sequence share every
 *            K/V tile loaded into shared memory; 4 threads per row; per-element
 *            visibility as a bit mask per row; online softmax in registers; no
 *            score matrix in memory.  Writes out and the final (max, sum).
 *   mass     grid (token, KV head, chunk): recomputes each visible key's score
 *            (the same code as split: same bits) and sums its probability
 *            exp(s - max) / sum over the group's query heads in head order, one
 *            thread per key, into mass[token][kv head][slot] (zero-filled first).
 *
 * Determinism.  A token's split/combine result depends only on its own keys,
 * the chunk size and head_dim (which fixes the key tile): the tiles of a chunk
 * start at the chunk's first virtual index, each reduction runs in a fixed order
 * by a fixed thread, the warp dot product has a fixed lane split and butterfly,
 * and the combine reads only the chunks the token has.  So neither the batch nor
 * n_splits nor how keys divide between prior slots and extras changes its bits.
 * The prefill kernel orders its reductions by slot tiles of the whole tile of
 * rows, so it is used only when deterministic == 0.
 *
 * f32 CUDA-core arithmetic throughout.  What tensor cores would gain: the
 * prefill kernel's two matrix products (Q K^T over 64 rows x tk keys, P V) are
 * where wgmma (bf16/f16 operands, f32 accumulation) would give about 10x the
 * CUDA-core FLOP rate on H200; decode is bound by K/V bandwidth and would gain
 * little.  The price: operands rounded to bf16/f16, so results further from the
 * f32 reference than this kernel's. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_quant_internal.cuh" /* llmlab_cuq_errf */
#include "llmlab/plugin.h"

namespace {

typedef llmlab_cuda_attn_args Args;

constexpr int kThreads = 128;            /* split, count, mass, combine, store blocks */
constexpr int kWarps = kThreads / 32;
constexpr int kMaxHeadDim = 256;
constexpr int kRows = 64;                /* prefill: query rows per pass */
constexpr int kPrefillThreads = kRows * 4; /* 4 threads per query row */
constexpr unsigned kFull = 0xffffffffu;
constexpr size_t kMaxDynSmem = 48 * 1024; /* the default limit: no opt-in needed */

/* What the host derives from the arguments, passed to every kernel. */
struct Geo {
    int group;       /* query heads per KV head */
    int hb;          /* split kernel: query heads per block */
    int n_hgroups;   /* split kernel: blocks per KV head (ceil(group / hb)) */
    int tk;          /* split and mass kernels: keys per tile */
    int vec16;       /* records can be read with 16-byte loads */
    int rope;        /* inv_freq != NULL */
    float *acc;      /* [n_tokens][n_heads][n_splits][head_dim] chunk accumulators */
    float *ml;       /* [n_tokens][n_heads][n_splits][2] chunk (max, sum) */
    int32_t *cnt;    /* [n_tokens][n_kv_heads][n_splits] visible keys per chunk */
    float *fin;      /* [n_tokens][n_heads][2] final (max, sum) */
};

/* ---- small device helpers -------------------------------------------------------------- */

__device__ __forceinline__ float neg_inf() { return __int_as_float((int)0xff800000u); }

/* Keys of token i: prior slots, then its extras. */
__device__ __forceinline__ int token_keys(const Args &a, int i) {
    return a.prior[i] + (a.extra_off[i + 1] - a.extra_off[i]);
}

/* The slot of virtual key v of token i. */
__device__ __forceinline__ int virt_slot(const Args &a, int i, int v) {
    int prior = a.prior[i];
    return v < prior ? v : a.extra_slots[a.extra_off[i] + (v - prior)];
}

/* llmlab_pattern_sees (kernels/cpu/ops.c) for token i. */
__device__ bool pattern_sees(const Args &a, int i, int32_t q_pos, int32_t k_pos) {
    if (a.pat_block <= 0 || k_pos == q_pos) return true;
    int qb = q_pos / a.pat_block, kb = k_pos / a.pat_block;
    if (kb < a.pat_global) return true;
    if (a.pat_window > 0 && qb - kb < a.pat_window) return true;
    if (a.layout && qb >= 0 && kb >= 0 && qb < a.layout_blocks && kb < a.layout_blocks &&
        a.layout[(size_t)qb * (size_t)a.layout_blocks + (size_t)kb])
        return true;
    if (a.rand && a.n_rand) {
        int n = min(a.n_rand[i], LLMLAB_CUDA_MAX_RANDOM_BLOCKS);
        const int32_t *r = a.rand + (size_t)i * LLMLAB_CUDA_MAX_RANDOM_BLOCKS;
        for (int j = 0; j < n; j++)
            if (r[j] == kb) return true;
    }
    return false;
}

/* Whether token i sees `slot` in KV head kvh (is_prior: one of its prior slots,
 * which must be valid in the lane when meta[i] says so), as key_visible in
 * kernels/cpu/ops.c.  When visible, *off is the byte offset of the slot's K
 * record in the pool (its V record is v_offset bytes later). */
__device__ bool key_visible(const Args &a, int i, int slot, bool is_prior, int kvh, long long *off) {
    if (slot < 0) return false;
    int bi = slot / a.block_size;
    if (bi >= a.table_stride) return false;
    int b = a.tables[(size_t)a.tok_table[i] * (size_t)a.table_stride + (size_t)bi];
    if (b < 0) return false; /* every slot of the block was evicted */
    int row = slot % a.block_size, lane = a.layer * a.n_kv_heads + kvh;
    size_t m = ((size_t)b * (size_t)a.n_lanes + (size_t)lane) * (size_t)a.block_size + (size_t)row;
    if (is_prior && a.meta && a.meta[i] && a.slot_valid && !a.slot_valid[m]) return false;
    if (a.pat_block > 0 && !pattern_sees(a, i, a.q_pos[i], a.slot_pos[m])) return false;
    *off = (long long)((size_t)b * a.block_bytes + (size_t)a.layer * a.layer_bytes +
                       ((size_t)row * (size_t)a.n_kv_heads + (size_t)kvh) * a.rec_bytes);
    return true;
}

__device__ __forceinline__ float f16_to_f32(unsigned bits) { return __half2float(__ushort_as_half((unsigned short)bits)); }
__device__ __forceinline__ float bf16_to_f32(unsigned bits) { return __uint_as_float(bits << 16); }

/* Two 16-bit elements of a little-endian word (element 2i in the low half). */
__device__ __forceinline__ void unpack2(uint32_t w, int dtype, float *o) {
    if (dtype == LLMLAB_KV_F16) {
        o[0] = f16_to_f32(w & 0xffffu);
        o[1] = f16_to_f32(w >> 16);
    } else {
        o[0] = bf16_to_f32(w & 0xffffu);
        o[1] = bf16_to_f32(w >> 16);
    }
}

/* Element d of a record as f32 (the decoders are exact). */
__device__ __forceinline__ float elem_at(const uint8_t *rec, int d, int dtype) {
    if (dtype == LLMLAB_KV_F32) return __ldg((const float *)rec + d);
    unsigned short h = __ldg((const unsigned short *)rec + d);
    return dtype == LLMLAB_KV_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

/* dst[k][head_dim] = the records at pool + off[k] + extra as f32, k < nk; keys
 * with off[k] < 0 are skipped (their rows are left as they were).  Why 16-byte
 * loads: decode reads every K/V byte once, and 16-byte packets keep the fewest
 * memory transactions in flight per byte. */
__device__ void load_records(const Args &a, int vec16, float *dst, const long long *off, int nk, size_t extra,
                             int tid, int nthreads) {
    const int hd = a.head_dim, dt = a.kv_dtype;
    if (vec16) {
        const int per = dt == LLMLAB_KV_F32 ? 4 : 8; /* elements per 16-byte packet */
        const int np = hd / per;                      /* packets per record */
        for (int e = tid; e < nk * np; e += nthreads) {
            int k = e / np, pk = e % np;
            if (off[k] < 0) continue;
            uint4 w = __ldg((const uint4 *)(a.pool + off[k] + extra) + pk);
            float *o = dst + (size_t)k * hd + (size_t)pk * per;
            if (per == 4) {
                o[0] = __uint_as_float(w.x);
                o[1] = __uint_as_float(w.y);
                o[2] = __uint_as_float(w.z);
                o[3] = __uint_as_float(w.w);
            } else {
                unpack2(w.x, dt, o);
                unpack2(w.y, dt, o + 2);
                unpack2(w.z, dt, o + 4);
                unpack2(w.w, dt, o + 6);
            }
        }
        return;
    }
    for (int e = tid; e < nk * hd; e += nthreads) {
        int k = e / hd, d = e % hd;
        if (off[k] < 0) continue;
        dst[e] = elem_at(a.pool + off[k] + extra, d, dt);
    }
}

/* One RoPE pair at position pos, as llmlab_cpu_rope: the angle in f32
 * ((float)pos * inv_freq), cosf/sinf, and no fused multiply-adds (the _rn
 * intrinsics keep nvcc from contracting, as -ffp-contract=off does on the CPU). */
__device__ __forceinline__ void rope_pair(float *x0p, float *x1p, int pos, float inv_freq) {
    float angle = __fmul_rn((float)pos, inv_freq);
    float c = cosf(angle), s = sinf(angle);
    float x0 = *x0p, x1 = *x1p;
    *x0p = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    *x1p = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

/* Rotates rows x[n][head_dim] at position pos (block-cooperative). */
__device__ void rope_rows(float *x, int n, int hd, int pos, const float *inv_freq, int tid, int nthreads) {
    int half = hd / 2;
    for (int e = tid; e < n * half; e += nthreads) {
        int r = e / half, j = e % half;
        rope_pair(x + (size_t)r * hd + j, x + (size_t)r * hd + j + half, pos, inv_freq[j]);
    }
}

/* x . y over n elements by one warp: lane l sums elements l, l + 32, ... in
 * order, then a xor butterfly (every lane ends with the same bits).  Used by
 * the split and mass kernels alike, so the mass pass sees the same scores. */
__device__ __forceinline__ float warp_dot(const float *x, const float *y, int n, int lane) {
    float s = 0.0f;
    for (int d = lane; d < n; d += 32) s = fmaf(x[d], y[d], s);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(kFull, s, o);
    return s;
}

/* The chunk's rank offset and the token's visible-key total (rope_shifted). */
__device__ void chunk_ranks(const Args &a, const Geo &g, int i, int kvh, int c, int *base, int *total) {
    const int32_t *cn = g.cnt + ((size_t)i * (size_t)a.n_kv_heads + (size_t)kvh) * (size_t)a.n_splits;
    int b = 0, t = 0;
    for (int c2 = 0; c2 < a.n_splits; c2++) {
        t += cn[c2];
        if (c2 < c) b += cn[c2];
    }
    *base = b;
    *total = t;
}

/* Shared memory of the split and mass kernels: key metadata first (8-byte
 * aligned), then floats. */
struct TileMeta {
    long long *off; /* [tk] K record offsets, -1 = not visible */
    int *slot;      /* [tk] */
    int *rank;      /* [tk] rope_shifted rank */
    int *run;       /* [4] running visible count of the chunk (run[0]) */
    float *f;       /* the float area */
};

__device__ __forceinline__ TileMeta carve(unsigned char *smem, int tk) {
    TileMeta t;
    t.off = (long long *)smem;
    t.slot = (int *)(t.off + tk);
    t.rank = t.slot + tk;
    t.run = t.rank + tk;
    t.f = (float *)(t.run + 4);
    return t;
}

/* Resolves virtual keys [t0, t0 + nk) of token i into tm (threads < nk, one key
 * each); returns, to every thread, whether any is visible.  Also a barrier. */
__device__ bool resolve_tile(const Args &a, int i, int kvh, int t0, int nk, const TileMeta &tm, int tid) {
    int vis = 0;
    if (tid < nk) {
        int v = t0 + tid, slot = virt_slot(a, i, v);
        long long off = -1;
        vis = key_visible(a, i, slot, v < a.prior[i], kvh, &off);
        tm.off[tid] = vis ? off : -1;
        tm.slot[tid] = slot;
    }
    return __syncthreads_or(vis) != 0;
}

/* Ranks of the tile's visible keys (one thread, keys in order). */
__device__ __forceinline__ void rank_tile(const TileMeta &tm, int nk) {
    int r = tm.run[0];
    for (int k = 0; k < nk; k++)
        if (tm.off[k] >= 0) tm.rank[k] = r++;
    tm.run[0] = r;
}

/* ---- count (rope_shifted) ----------------------------------------------------------------- */

__global__ void __launch_bounds__(kThreads) count_kernel(Args a, Geo g) {
    __shared__ int total;
    const int i = blockIdx.x, kvh = blockIdx.y, c = blockIdx.z, tid = threadIdx.x;
    const long long n_virt = token_keys(a, i), v0 = (long long)c * a.chunk;
    const int v1 = (int)min(v0 + a.chunk, n_virt);
    int n = 0;
    for (long long v = v0 + tid; v < v1; v += kThreads) {
        long long off;
        n += key_visible(a, i, virt_slot(a, i, (int)v), v < a.prior[i], kvh, &off) ? 1 : 0;
    }
    if (tid == 0) total = 0;
    __syncthreads();
    atomicAdd(&total, n); /* integers: the order does not matter */
    __syncthreads();
    if (tid == 0) g.cnt[((size_t)i * (size_t)a.n_kv_heads + (size_t)kvh) * (size_t)a.n_splits + (size_t)c] = total;
}

/* ---- split (flash-decoding) ---------------------------------------------------------------- */

/* One head's online-softmax step over a tile: s[k] (scores of visible keys)
 * becomes the probability weight exp(s - new max) (0 for invisible keys); the
 * running (max, sum) update and the factor the accumulators are scaled by. */
__device__ void online_step(float *s, const long long *off, int nk, float *m, float *l, float *alpha) {
    float mt = neg_inf();
    for (int k = 0; k < nk; k++)
        if (off[k] >= 0) mt = fmaxf(mt, s[k]);
    float mn = fmaxf(*m, mt);
    float al = expf(*m - mn); /* the first visible tile: exp(-inf) = 0 */
    float sum = *l * al;
    for (int k = 0; k < nk; k++) {
        float p = off[k] >= 0 ? expf(s[k] - mn) : 0.0f;
        s[k] = p;
        sum += p;
    }
    *m = mn;
    *l = sum;
    *alpha = al;
}

__global__ void __launch_bounds__(kThreads) split_kernel(Args a, Geo g) {
    extern __shared__ __align__(16) unsigned char g_smem[];
    const int tk = g.tk, hb = g.hb, hd = a.head_dim;
    const TileMeta tm = carve(g_smem, tk);
    float *sQ = tm.f;              /* [hb][hd] queries (rotated when rope_shifted) */
    float *sAcc = sQ + hb * hd;    /* [hb][hd] */
    float *sK = sAcc + hb * hd;    /* [tk][hd] */
    float *sV = sK + tk * hd;      /* [tk][hd] */
    float *sS = sV + tk * hd;      /* [hb][tk] scores, then weights */
    float *sM = sS + hb * tk;      /* [hb] running max */
    float *sL = sM + hb;           /* [hb] running sum */
    float *sAlpha = sL + hb;       /* [hb] this tile's rescale factor */

    const int i = blockIdx.x, c = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kvh = blockIdx.y / g.n_hgroups, hg = blockIdx.y % g.n_hgroups;
    const int h0 = kvh * g.group + hg * hb, nh = min(hb, g.group - hg * hb);
    const long long n_virt = token_keys(a, i), v0 = (long long)c * a.chunk;
    if (v0 >= n_virt) return; /* a chunk past the token's keys: the combine never reads it */
    const int v1 = (int)min(v0 + a.chunk, n_virt);

    int rank_base = 0, total = 0;
    if (g.rope) chunk_ranks(a, g, i, kvh, c, &rank_base, &total);
    const float *qi = a.q + ((size_t)i * (size_t)a.n_heads + (size_t)h0) * (size_t)hd;
    for (int e = tid; e < nh * hd; e += kThreads) {
        sQ[e] = qi[e];
        sAcc[e] = 0.0f;
    }
    if (tid < nh) {
        sM[tid] = neg_inf();
        sL[tid] = 0.0f;
    }
    if (tid == 0) tm.run[0] = rank_base;
    __syncthreads();
    if (g.rope && total > 0) { /* StreamingLLM: the query sits at the rank of the last visible key */
        rope_rows(sQ, nh, hd, total - 1, a.inv_freq, tid, kThreads);
        __syncthreads();
    }

    for (int t0 = (int)v0; t0 < v1; t0 += tk) {
        const int nk = min(tk, v1 - t0);
        if (!resolve_tile(a, i, kvh, t0, nk, tm, tid)) continue; /* uniform: nothing visible here */
        if (g.rope && tid == 0) rank_tile(tm, nk);
        load_records(a, g.vec16, sK, tm.off, nk, 0, tid, kThreads);
        load_records(a, g.vec16, sV, tm.off, nk, a.v_offset, tid, kThreads);
        __syncthreads();
        if (g.rope) {
            int half = hd / 2;
            for (int e = tid; e < nk * half; e += kThreads) {
                int k = e / half, j = e % half;
                if (tm.off[k] >= 0) rope_pair(sK + (size_t)k * hd + j, sK + (size_t)k * hd + j + half, tm.rank[k], a.inv_freq[j]);
            }
            __syncthreads();
        }
        for (int p = warp; p < nh * nk; p += kWarps) { /* one warp per (head, key) */
            int h = p / nk, k = p % nk;
            float s = 0.0f;
            if (tm.off[k] >= 0) s = warp_dot(sQ + (size_t)h * hd, sK + (size_t)k * hd, hd, lane) * a.scale;
            if (lane == 0) sS[h * tk + k] = s;
        }
        __syncthreads();
        if (tid < nh) online_step(sS + tid * tk, tm.off, nk, sM + tid, sL + tid, sAlpha + tid);
        __syncthreads();
        for (int e = tid; e < nh * hd; e += kThreads) { /* one thread per (head, dim), keys in order */
            int h = e / hd, d = e % hd;
            const float *w = sS + h * tk;
            float acc = sAcc[e] * sAlpha[h];
            for (int k = 0; k < nk; k++)
                if (tm.off[k] >= 0) acc = fmaf(w[k], sV[(size_t)k * hd + d], acc);
            sAcc[e] = acc;
        }
        __syncthreads();
    }

    for (int e = tid; e < nh * hd; e += kThreads) {
        int h = e / hd, d = e % hd;
        size_t part = ((size_t)i * (size_t)a.n_heads + (size_t)(h0 + h)) * (size_t)a.n_splits + (size_t)c;
        g.acc[part * (size_t)hd + (size_t)d] = sAcc[e];
    }
    if (tid < nh) {
        size_t part = ((size_t)i * (size_t)a.n_heads + (size_t)(h0 + tid)) * (size_t)a.n_splits + (size_t)c;
        g.ml[part * 2] = sM[tid];
        g.ml[part * 2 + 1] = sL[tid];
    }
}

/* ---- combine ------------------------------------------------------------------------------- */

__global__ void __launch_bounds__(kThreads) combine_kernel(Args a, Geo g) {
    const int i = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, hd = a.head_dim;
    const long long n_virt = token_keys(a, i);
    const long long used = (n_virt + a.chunk - 1) / a.chunk;
    float *out = a.out + ((size_t)i * (size_t)a.n_heads + (size_t)h) * (size_t)hd;
    float *fin = g.fin + ((size_t)i * (size_t)a.n_heads + (size_t)h) * 2;
    if (used > a.n_splits) { /* more keys than n_splits * chunk: loud, not silently truncated */
        for (int d = tid; d < hd; d += kThreads) out[d] = __int_as_float(0x7fc00000);
        if (tid == 0) fin[0] = fin[1] = __int_as_float(0x7fc00000);
        return;
    }
    const size_t base = ((size_t)i * (size_t)a.n_heads + (size_t)h) * (size_t)a.n_splits;
    const float *ml = g.ml + base * 2;
    float M = neg_inf(), L = 0.0f;
    for (int c = 0; c < (int)used; c++)
        if (ml[2 * c + 1] > 0.0f) M = fmaxf(M, ml[2 * c]);
    for (int c = 0; c < (int)used; c++)
        if (ml[2 * c + 1] > 0.0f) L = fmaf(ml[2 * c + 1], expf(ml[2 * c] - M), L);
    for (int d = tid; d < hd; d += kThreads) {
        float o = 0.0f;
        for (int c = 0; c < (int)used; c++)
            if (ml[2 * c + 1] > 0.0f) o = fmaf(g.acc[(base + (size_t)c) * (size_t)hd + (size_t)d], expf(ml[2 * c] - M), o);
        out[d] = L > 0.0f ? o / L : 0.0f;
    }
    if (tid == 0) {
        fin[0] = M;
        fin[1] = L;
    }
}

/* ---- prefill (flash attention over tiles of query rows) ------------------------------------- */

/* Row r of the pass: the bit mask of the visible keys among slots [s0, s0 + nk)
 * (bit k = slot s0 + k).  Prior slots by index; extras by walking the row's
 * ascending list with a cursor kept across key tiles. */
__device__ uint32_t row_mask(const Args &a, int i, int kvh, int s0, int nk, int *cursor) {
    const int prior = a.prior[i], x0 = a.extra_off[i], nx = a.extra_off[i + 1] - x0;
    const int32_t *ex = a.extra_slots + x0;
    int cur = *cursor;
    uint32_t mask = 0;
    for (int k = 0; k < nk; k++) {
        int slot = s0 + k;
        bool is_prior = slot < prior;
        if (!is_prior) {
            while (cur < nx && ex[cur] < slot) cur++;
            if (cur >= nx || ex[cur] != slot) continue;
        }
        long long off;
        if (key_visible(a, i, slot, is_prior, kvh, &off)) mask |= 1u << k;
    }
    *cursor = cur;
    return mask;
}

/* DPT: head dims per thread (head_dim <= 4 * DPT); TKP: keys per tile (<= 32,
 * one bit each in a row's mask).  Thread t serves row t / 4, dims t % 4 + 4j:
 * the 4 threads of a row read 4 consecutive floats of a key (different banks),
 * and the 8 rows of a warp read the same ones (broadcast). */
template <int DPT, int TKP>
__global__ void __launch_bounds__(kPrefillThreads) prefill_kernel(Args a, Geo g) {
    __shared__ float sK[TKP * 4 * DPT]; /* [TKP][head_dim] */
    __shared__ float sV[TKP * 4 * DPT]; /* [TKP][head_dim] */
    __shared__ long long sOff[TKP];     /* K record offsets of the first row's table, -1 = no block */
    __shared__ uint32_t sMask[kRows];   /* [rows] visible keys of the tile */
    __shared__ int sCur[kRows];         /* [rows] cursor into the row's extras */
    __shared__ int sSmax;               /* slots [0, sSmax) hold every key of the pass */

    const int t = blockIdx.x, h = blockIdx.y, kvh = h / g.group, hd = a.head_dim;
    const int tid = threadIdx.x, r = tid >> 2, part = tid & 3;
    const int first = a.tiles[2 * t], count = a.tiles[2 * t + 1];
    const int32_t *table = a.tables + (size_t)a.tok_table[first] * (size_t)a.table_stride;

    for (int r0 = 0; r0 < count; r0 += kRows) {
        const int nrows = min(kRows, count - r0);
        const bool active = r < nrows;
        const int ti = first + r0 + r; /* my row's token (when active) */
        if (tid < kRows) sCur[tid] = 0;
        if (tid == 0) {
            int smax = 0;
            for (int rr = 0; rr < nrows; rr++) {
                int j = first + r0 + rr, nx = a.extra_off[j + 1] - a.extra_off[j];
                smax = max(smax, a.prior[j]);
                if (nx > 0) smax = max(smax, a.extra_slots[a.extra_off[j] + nx - 1] + 1);
            }
            sSmax = smax;
        }
        __syncthreads();
        const int smax = sSmax;

        float q[DPT], acc[DPT];
        const float *qrow = a.q + ((size_t)(active ? ti : first) * (size_t)a.n_heads + (size_t)h) * (size_t)hd;
#pragma unroll
        for (int j = 0; j < DPT; j++) {
            int d = part + 4 * j;
            q[j] = active && d < hd ? qrow[d] : 0.0f;
            acc[j] = 0.0f;
        }
        float m = neg_inf(), l = 0.0f;

        for (int s0 = 0; s0 < smax; s0 += TKP) {
            const int nk = min(TKP, smax - s0);
            if (tid < nk) {
                int slot = s0 + tid, bi = slot / a.block_size;
                int b = bi < a.table_stride ? table[bi] : -1;
                sOff[tid] = b < 0 ? -1
                                  : (long long)((size_t)b * a.block_bytes + (size_t)a.layer * a.layer_bytes +
                                                ((size_t)(slot % a.block_size) * (size_t)a.n_kv_heads + (size_t)kvh) *
                                                    a.rec_bytes);
            }
            uint32_t built = 0;
            if (tid < nrows) built = row_mask(a, first + r0 + tid, kvh, s0, nk, &sCur[tid]);
            if (tid < kRows) sMask[tid] = built;
            if (!__syncthreads_or(built != 0)) continue; /* uniform: no row sees these slots */
            load_records(a, g.vec16, sK, sOff, nk, 0, tid, kPrefillThreads);
            load_records(a, g.vec16, sV, sOff, nk, a.v_offset, tid, kPrefillThreads);
            __syncthreads();

            const uint32_t mask = active ? sMask[r] : 0u;
            float s[TKP];
            float mt = neg_inf();
#pragma unroll
            for (int k = 0; k < TKP; k++) {
                if (k >= nk) break; /* nk is the same for the whole block: the shuffles stay converged */
                float p = 0.0f;
#pragma unroll
                for (int j = 0; j < DPT; j++) {
                    int d = part + 4 * j;
                    if (d < hd) p = fmaf(q[j], sK[k * hd + d], p);
                }
                p += __shfl_xor_sync(kFull, p, 1);
                p += __shfl_xor_sync(kFull, p, 2);
                s[k] = p * a.scale;
                if ((mask >> k) & 1u) mt = fmaxf(mt, s[k]);
            }
            if (mask) {
                float mn = fmaxf(m, mt), al = expf(m - mn);
                l *= al;
#pragma unroll
                for (int j = 0; j < DPT; j++) acc[j] *= al;
#pragma unroll
                for (int k = 0; k < TKP; k++) {
                    if (k >= nk) break;
                    if (!((mask >> k) & 1u)) continue;
                    float p = expf(s[k] - mn);
                    l += p;
#pragma unroll
                    for (int j = 0; j < DPT; j++) {
                        int d = part + 4 * j;
                        if (d < hd) acc[j] = fmaf(p, sV[k * hd + d], acc[j]);
                    }
                }
                m = mn;
            }
            __syncthreads(); /* before the next tile overwrites sK, sV, sOff, sMask */
        }

        if (active) {
            float *orow = a.out + ((size_t)ti * (size_t)a.n_heads + (size_t)h) * (size_t)hd;
#pragma unroll
            for (int j = 0; j < DPT; j++) {
                int d = part + 4 * j;
                if (d < hd) orow[d] = l > 0.0f ? acc[j] / l : 0.0f;
            }
            if (part == 0) {
                float *fin = g.fin + ((size_t)ti * (size_t)a.n_heads + (size_t)h) * 2;
                fin[0] = m;
                fin[1] = l;
            }
        }
        __syncthreads(); /* sCur and sSmax are reset by the next pass */
    }
}

/* ---- mass ---------------------------------------------------------------------------------- */

__global__ void __launch_bounds__(kThreads) mass_kernel(Args a, Geo g) {
    extern __shared__ __align__(16) unsigned char g_smem[];
    const int tk = g.tk, hd = a.head_dim;
    const TileMeta tm = carve(g_smem, tk);
    float *sQ = tm.f;           /* [hd] one query head */
    float *sK = sQ + hd;        /* [tk][hd] */
    float *sP = sK + tk * hd;   /* [tk] this head's probabilities */
    float *sMass = sP + tk;     /* [tk] summed over the group's heads */

    const int i = blockIdx.x, kvh = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long n_virt = token_keys(a, i);
    float *mrow = a.mass + ((size_t)i * (size_t)a.n_kv_heads + (size_t)kvh) * (size_t)a.mass_stride;
    /* Chunks blockIdx.z, + n_splits, ...: every key is covered whatever n_splits. */
    for (long long v0 = (long long)blockIdx.z * a.chunk; v0 < n_virt; v0 += (long long)gridDim.z * a.chunk) {
        const int c = (int)(v0 / a.chunk), v1 = (int)min(v0 + a.chunk, n_virt);
        int rank_base = 0, total = 0;
        if (g.rope) chunk_ranks(a, g, i, kvh, c, &rank_base, &total);
        if (tid == 0) tm.run[0] = rank_base;
        __syncthreads();
        for (int t0 = (int)v0; t0 < v1; t0 += tk) {
            const int nk = min(tk, v1 - t0);
            if (!resolve_tile(a, i, kvh, t0, nk, tm, tid)) continue;
            if (g.rope && tid == 0) rank_tile(tm, nk);
            load_records(a, g.vec16, sK, tm.off, nk, 0, tid, kThreads);
            if (tid < nk) sMass[tid] = 0.0f;
            __syncthreads();
            if (g.rope) {
                int half = hd / 2;
                for (int e = tid; e < nk * half; e += kThreads) {
                    int k = e / half, j = e % half;
                    if (tm.off[k] >= 0) rope_pair(sK + (size_t)k * hd + j, sK + (size_t)k * hd + j + half, tm.rank[k], a.inv_freq[j]);
                }
            }
            for (int hh = 0; hh < g.group; hh++) { /* the group's heads in order, as the CPU sums them */
                const int head = kvh * g.group + hh;
                const float *qh = a.q + ((size_t)i * (size_t)a.n_heads + (size_t)head) * (size_t)hd;
                for (int d = tid; d < hd; d += kThreads) sQ[d] = qh[d];
                __syncthreads();
                if (g.rope && total > 0) {
                    rope_rows(sQ, 1, hd, total - 1, a.inv_freq, tid, kThreads);
                    __syncthreads();
                }
                const float *fin = g.fin + ((size_t)i * (size_t)a.n_heads + (size_t)head) * 2;
                const float M = fin[0], L = fin[1], inv = L > 0.0f ? 1.0f / L : 0.0f;
                for (int k = warp; k < nk; k += kWarps) {
                    float p = 0.0f;
                    if (tm.off[k] >= 0) {
                        float s = warp_dot(sQ, sK + (size_t)k * hd, hd, lane) * a.scale;
                        p = L > 0.0f ? expf(s - M) * inv : 0.0f;
                    }
                    if (lane == 0) sP[k] = p;
                }
                __syncthreads();
                if (tid < nk) sMass[tid] += sP[tid]; /* one thread per key: heads summed in order */
            }
            if (tid < nk && tm.off[tid] >= 0 && tm.slot[tid] < a.mass_stride) mrow[tm.slot[tid]] = sMass[tid];
            __syncthreads();
        }
    }
}

/* ---- storing rows -------------------------------------------------------------------------- */

/* llmlab_f32_to_f16 (core/dtype.c) after the KV cache's saturation at +-65504
 * (kernels/cpu/kv_quant.c): the same integer steps, so the same bits, NaN included. */
__device__ uint16_t f16_bits(float f) {
    if (f > 65504.0f) f = 65504.0f;
    if (f < -65504.0f) f = -65504.0f;
    uint32_t u = __float_as_uint(f);
    uint32_t sign = (u >> 16) & 0x8000u, absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* subnormal or zero in f16 */
        if (absu < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absu >> 23, m = (absu & 0x7fffffu) | 0x800000u, shift = 126u - e;
        uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1u), r = m >> shift;
        if (rest > half || (rest == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
    r -= (127u - 15u) << 23;
    return (uint16_t)(sign | (r >> 13));
}

/* llmlab_f32_to_bf16 (core/dtype.h). */
__device__ uint16_t bf16_bits(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__device__ __forceinline__ void store_elem(uint8_t *rec, int d, float x, int dtype) {
    if (dtype == LLMLAB_KV_F32) ((uint32_t *)rec)[d] = __float_as_uint(x);
    else ((uint16_t *)rec)[d] = dtype == LLMLAB_KV_F16 ? f16_bits(x) : bf16_bits(x);
}

__global__ void __launch_bounds__(kThreads) store_kernel(Args a, const float *k, const float *v, const int32_t *blk,
                                                         const int32_t *row) {
    const int i = blockIdx.x, h = blockIdx.y, hd = a.head_dim;
    const int b = blk[i], r = row[i];
    if (b < 0 || r < 0 || r >= a.block_size) return;
    uint8_t *rec = a.pool + (size_t)b * a.block_bytes + (size_t)a.layer * a.layer_bytes +
                   ((size_t)r * (size_t)a.n_kv_heads + (size_t)h) * a.rec_bytes;
    const float *ks = k + ((size_t)i * (size_t)a.n_kv_heads + (size_t)h) * (size_t)hd;
    const float *vs = v + ((size_t)i * (size_t)a.n_kv_heads + (size_t)h) * (size_t)hd;
    for (int d = threadIdx.x; d < hd; d += kThreads) {
        store_elem(rec, d, ks[d], a.kv_dtype);
        store_elem(rec + a.v_offset, d, vs[d], a.kv_dtype);
    }
}

/* ---- host side ----------------------------------------------------------------------------- */

#define ATT_CHECK(call, what)                                  \
    do {                                                       \
        cudaError_t att_e_ = (call);                           \
        if (att_e_ != cudaSuccess) return llmlab_cuq_fail(err, att_e_, what); \
    } while (0)

size_t elem_bytes(int dtype) { return dtype == LLMLAB_KV_F32 ? 4 : 2; }

size_t align256(size_t x) { return (x + 255u) & ~(size_t)255u; }

struct WorkLayout {
    size_t ml, cnt, fin, total; /* byte offsets (acc at 0) and the total */
};

WorkLayout work_layout(int n_tokens, int n_heads, int head_dim, int n_splits) {
    WorkLayout w = {0, 0, 0, 0};
    if (n_tokens <= 0 || n_heads <= 0 || head_dim <= 0 || n_splits <= 0) return w;
    size_t parts = (size_t)n_tokens * (size_t)n_heads * (size_t)n_splits;
    w.ml = align256(parts * (size_t)head_dim * sizeof(float));
    w.cnt = w.ml + align256(parts * 2 * sizeof(float));
    w.fin = w.cnt + align256(parts * sizeof(int32_t)); /* per KV head; n_heads bounds n_kv_heads */
    w.total = w.fin + align256((size_t)n_tokens * (size_t)n_heads * 2 * sizeof(float));
    return w;
}

/* The layout fields shared by attention and store. */
llmlab_status check_layout(const Args *a, const char *who, llmlab_err *err) {
    if (a->kv_dtype != LLMLAB_KV_F32 && a->kv_dtype != LLMLAB_KV_F16 && a->kv_dtype != LLMLAB_KV_BF16)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: kv_dtype %d is not f32 (%d), f16 (%d) or bf16 (%d)", who, a->kv_dtype,
                    LLMLAB_KV_F32, LLMLAB_KV_F16, LLMLAB_KV_BF16);
    if (a->head_dim < 1 || a->head_dim > kMaxHeadDim)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: head_dim %d outside 1..%d", who, a->head_dim, kMaxHeadDim);
    if (a->n_kv_heads < 1 || a->block_size < 1 || a->layer < 0)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_kv_heads %d, block_size %d, layer %d (need >= 1, >= 1, >= 0)", who,
                    a->n_kv_heads, a->block_size, a->layer);
    if (!a->pool) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: pool is NULL", who);
    size_t es = elem_bytes(a->kv_dtype);
    if (a->rec_bytes != (size_t)a->head_dim * es)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: rec_bytes %zu is not head_dim %d x %zu bytes (%s)", who, a->rec_bytes,
                    a->head_dim, es, a->kv_dtype == LLMLAB_KV_F32 ? "f32" : a->kv_dtype == LLMLAB_KV_F16 ? "f16" : "bf16");
    size_t region = (size_t)a->block_size * (size_t)a->n_kv_heads * a->rec_bytes;
    if (a->v_offset < region || a->v_offset + region > a->layer_bytes ||
        ((size_t)a->layer + 1) * a->layer_bytes > a->block_bytes)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL,
                    "%s: layout does not fit: K region %zu bytes, v_offset %zu, layer_bytes %zu, layer %d, "
                    "block_bytes %zu",
                    who, region, a->v_offset, a->layer_bytes, a->layer, a->block_bytes);
    if (((uintptr_t)a->pool | a->block_bytes | a->layer_bytes | a->v_offset) % es)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: pool, block_bytes, layer_bytes or v_offset not aligned to %zu bytes", who,
                    es);
    return LLMLAB_OK;
}

llmlab_status check_attention(const Args *a, const void *work, llmlab_err *err) {
    const char *who = "cuda attention";
    if (!a) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: no arguments", who);
    llmlab_status st = check_layout(a, who, err);
    if (st) return st;
    if (a->n_heads < 1 || a->n_heads % a->n_kv_heads)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_heads %d is not a positive multiple of n_kv_heads %d", who, a->n_heads,
                    a->n_kv_heads);
    if (a->n_lanes < (a->layer + 1) * a->n_kv_heads)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_lanes %d < (layer %d + 1) x n_kv_heads %d", who, a->n_lanes, a->layer,
                    a->n_kv_heads);
    if (a->n_tokens < 0) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_tokens %d < 0", who, a->n_tokens);
    if (a->chunk < 1) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: chunk %d < 1", who, a->chunk);
    if (a->n_splits < 1 || a->n_splits > 65535)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_splits %d outside 1..65535", who, a->n_splits);
    if (a->n_heads > 65535) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_heads %d > 65535", who, a->n_heads);
    if (a->table_stride < 1) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: table_stride %d < 1", who, a->table_stride);
    if (a->pat_block < 0 || a->layout_blocks < 0)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: pattern block %d, layout_blocks %d (need >= 0)", who, a->pat_block,
                    a->layout_blocks);
    if (a->pat_block > 0 && !a->slot_pos)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: a pattern (block %d) needs slot_pos", who, a->pat_block);
    if (a->layout_blocks > 0 && !a->layout)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: layout_blocks %d without a layout", who, a->layout_blocks);
    if (a->inv_freq && a->head_dim % 2)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: rope_shifted needs an even head_dim, got %d", who, a->head_dim);
    if (a->mass && a->mass_stride < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: mass_stride %d < 1", who, a->mass_stride);
    if (a->tiles && a->n_tiles < 1) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: tiles given with n_tiles %d", who, a->n_tiles);
    if (a->n_tokens == 0) return LLMLAB_OK;
    if (!a->tables || !a->tok_table || !a->prior || !a->q_pos || !a->extra_off || !a->extra_slots || !a->q || !a->out)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL,
                    "%s: tables, tok_table, prior, q_pos, extra_off, extra_slots, q and out must all be set", who);
    if (!work) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: no work area (llmlab_cuda_attn_work_bytes)", who);
    return LLMLAB_OK;
}

/* Whether every record starts 16-byte aligned (the vectorized loads). */
int records_vec16(const Args *a) {
    return (((uintptr_t)a->pool | a->block_bytes | a->layer_bytes | a->v_offset | a->rec_bytes) % 16) == 0;
}

size_t split_smem(int hb, int tk, int hd) {
    return (size_t)tk * (sizeof(long long) + 2 * sizeof(int)) + 4 * sizeof(int) +
           sizeof(float) * (2 * (size_t)hb * hd + 2 * (size_t)tk * hd + (size_t)hb * tk + 3 * (size_t)hb);
}

size_t mass_smem(int tk, int hd) {
    return (size_t)tk * (sizeof(long long) + 2 * sizeof(int)) + 4 * sizeof(int) +
           sizeof(float) * ((size_t)hd + (size_t)tk * hd + 2 * (size_t)tk);
}

template <int DPT, int TKP>
llmlab_status launch_prefill(cudaStream_t s, const Args *a, const Geo &g, llmlab_err *err) {
    prefill_kernel<DPT, TKP><<<dim3((unsigned)a->n_tiles, (unsigned)a->n_heads), kPrefillThreads, 0, s>>>(*a, g);
    ATT_CHECK(cudaGetLastError(), "launch of the prefill kernel");
    return LLMLAB_OK;
}

} /* namespace */

extern "C" size_t llmlab_cuda_attn_work_bytes(int n_tokens, int n_heads, int head_dim, int n_splits) {
    return work_layout(n_tokens, n_heads, head_dim, n_splits).total;
}

extern "C" llmlab_status llmlab_cuda_attention(void *stream, const llmlab_cuda_attn_args *a, void *work,
                                               llmlab_err *err) {
    llmlab_status st = check_attention(a, work, err);
    if (st || a->n_tokens == 0) return st;
    const int hd = a->head_dim;
    Geo g;
    g.group = a->n_heads / a->n_kv_heads;
    /* Key tiles and head groups sized so the split kernel stays under 48 KiB of
     * shared memory: 32 keys up to head_dim 128, else 16; 8 heads, else 4. */
    g.tk = hd <= 128 ? 32 : 16;
    g.hb = hd <= 128 ? 8 : 4;
    if (g.group < g.hb) g.hb = g.group;
    g.n_hgroups = (g.group + g.hb - 1) / g.hb;
    g.vec16 = records_vec16(a);
    g.rope = a->inv_freq != NULL;
    WorkLayout wl = work_layout(a->n_tokens, a->n_heads, hd, a->n_splits);
    uint8_t *w = (uint8_t *)work;
    g.acc = (float *)w;
    g.ml = (float *)(w + wl.ml);
    g.cnt = (int32_t *)(w + wl.cnt);
    g.fin = (float *)(w + wl.fin);
    if ((long long)a->n_kv_heads * g.n_hgroups > 65535)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda attention: %d KV heads x %d head groups exceed the grid", a->n_kv_heads,
                    g.n_hgroups);
    size_t ssm = split_smem(g.hb, g.tk, hd), msm = mass_smem(g.tk, hd);
    if (ssm > kMaxDynSmem || msm > kMaxDynSmem)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda attention: internal: %zu / %zu bytes of shared memory", ssm, msm);

    cudaStream_t s = (cudaStream_t)stream;
    const unsigned nt = (unsigned)a->n_tokens;
    const bool prefill = !a->deterministic && a->tiles && !a->inv_freq;
    if (prefill) {
        st = hd <= 64 ? launch_prefill<16, 32>(s, a, g, err)
             : hd <= 128 ? launch_prefill<32, 32>(s, a, g, err)
                         : launch_prefill<64, 16>(s, a, g, err);
        if (st) return st;
    } else {
        dim3 kv_grid(nt, (unsigned)a->n_kv_heads, (unsigned)a->n_splits);
        if (g.rope) {
            count_kernel<<<kv_grid, kThreads, 0, s>>>(*a, g);
            ATT_CHECK(cudaGetLastError(), "launch of the key-count kernel");
        }
        split_kernel<<<dim3(nt, (unsigned)(a->n_kv_heads * g.n_hgroups), (unsigned)a->n_splits), kThreads, ssm, s>>>(*a, g);
        ATT_CHECK(cudaGetLastError(), "launch of the split kernel");
        combine_kernel<<<dim3(nt, (unsigned)a->n_heads), kThreads, 0, s>>>(*a, g);
        ATT_CHECK(cudaGetLastError(), "launch of the combine kernel");
    }
    if (a->mass) {
        size_t bytes = (size_t)a->n_tokens * (size_t)a->n_kv_heads * (size_t)a->mass_stride * sizeof(float);
        ATT_CHECK(cudaMemsetAsync(a->mass, 0, bytes, s), "zero-fill of the mass rows");
        mass_kernel<<<dim3(nt, (unsigned)a->n_kv_heads, (unsigned)a->n_splits), kThreads, msm, s>>>(*a, g);
        ATT_CHECK(cudaGetLastError(), "launch of the mass kernel");
    }
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_kv_store(void *stream, const llmlab_cuda_attn_args *a, const float *k,
                                              const float *v, const int32_t *blk, const int32_t *row, int n,
                                              llmlab_err *err) {
    const char *who = "cuda kv store";
    if (!a) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: no arguments", who);
    llmlab_status st = check_layout(a, who, err);
    if (st) return st;
    if (n < 0) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n %d < 0", who, n);
    if (n == 0) return LLMLAB_OK;
    if (!k || !v || !blk || !row) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: k, v, blk and row must be set", who);
    if (a->n_kv_heads > 65535) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "%s: n_kv_heads %d > 65535", who, a->n_kv_heads);
    store_kernel<<<dim3((unsigned)n, (unsigned)a->n_kv_heads), kThreads, 0, (cudaStream_t)stream>>>(*a, k, v, blk, row);
    ATT_CHECK(cudaGetLastError(), "launch of the store kernel");
    return LLMLAB_OK;
}
