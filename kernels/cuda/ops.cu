/* ops.cu - the per-row kernels of the CUDA forward (cuda_ops.h): embedding,
 * RMSNorm, residual add, bias + RoPE, SwiGLU, argmax, sampling and the ordered
 * copy list.
 *
 * These are a small share of a decode step (the weight matmuls dominate), so
 * they are written for clarity with a few cheap rules for speed: element-wise
 * ops are grid-stride loops, per-row reductions take one block per row with a
 * fixed tree (a butterfly inside each warp, then the warp results in warp
 * order), and no reduction uses atomics.  A row's reduction order depends on
 * the row length and the (constant) block size only, never on the number of
 * rows, so every row's result is batch invariant.
 *
 * Where the CPU reference rounds an expression step by step (kernels/cpu/ops.c
 * is compiled with -ffp-contract=off), the kernels spell the steps with
 * __fmul_rn / __fadd_rn so nvcc cannot fuse them into an FMA; the remaining
 * differences are the summation order of reductions and the device's expf,
 * sinf and cosf (at most 2 ulp, CUDA programming guide, not bit-equal to
 * glibc). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_quant_internal.cuh"

namespace {

constexpr unsigned kFull = 0xffffffffu; /* all lanes of a warp */
constexpr int kEltThreads = 256;        /* element-wise kernels */
constexpr int kEltMaxBlocks = 4096;     /* grid-stride: enough blocks to fill an H200 */
constexpr int kRowThreads = 256;        /* RMSNorm: one block per row */
constexpr int kArgThreads = 512;        /* argmax: one block per row (rows of ~128k) */
constexpr int kST = 512;                /* sampling: one block per row */
constexpr int kSmemKeys = 4096;         /* sampling: sort in shared memory up to this many keys */
constexpr int kCopyThreads = 1024;      /* the copy list: one block */
/* Sampling: the candidate set must hold this much more than top_p before the
 * top-p cut is known to lie inside it; far above the difference between two
 * summation orders of <= 2^31 probabilities in double (~2^31 * 2^-53). */
constexpr double kTopPMargin = 1e-9;

/* ---- block-wide reductions (every thread of the block must call them) ------------------- */

/* Sum over the block: a butterfly inside each warp (every lane ends with the
 * same bits: float addition commutes), then the warp sums in warp order. */
template <int T, class V>
__device__ V block_sum(V v) {
    __shared__ V part[T / 32];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    V s = part[0];
    for (int w = 1; w < T / 32; w++) s += part[w];
    __syncthreads(); /* part is free for the next call */
    return s;
}

/* Minimum (want_max = false) or maximum of an int over the block. */
template <int T>
__device__ int block_minmax(int v, bool want_max) {
    __shared__ int part[T / 32];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const int o = __shfl_xor_sync(kFull, v, off);
        v = want_max ? max(v, o) : min(v, o);
    }
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    int s = part[0];
    for (int w = 1; w < T / 32; w++) s = want_max ? max(s, part[w]) : min(s, part[w]);
    __syncthreads();
    return s;
}

/* Exclusive prefix sum over the threads in thread order with a fixed
 * association (a Kogge-Stone scan inside each warp, then the warp totals added
 * in warp order); *total gets the sum over all threads. */
template <int T, class V>
__device__ V block_exclusive_scan(V v, V *total) {
    __shared__ V wsum[T / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    V inc = v;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const V o = __shfl_up_sync(kFull, inc, off);
        if (lane >= off) inc += o;
    }
    V exc = __shfl_up_sync(kFull, inc, 1);
    if (lane == 0) exc = V(0);
    if (lane == 31) wsum[warp] = inc;
    __syncthreads();
    V base = V(0), all = V(0);
    for (int w = 0; w < T / 32; w++) {
        if (w < warp) base += wsum[w];
        all += wsum[w];
    }
    __syncthreads();
    *total = all;
    return base + exc;
}

/* The argmax order (llmlab_argmax): a number beats NaN, a larger value beats a
 * smaller one, and on equal values (also -0 vs +0, or two NaNs) the lower
 * index wins.  A strict total order on (value, index) pairs, so any reduction
 * tree finds the same winner. */
__device__ __forceinline__ bool ranks_first(float av, int ai, float bv, int bi) {
    const bool an = isnan(av), bn = isnan(bv);
    if (an != bn) return bn;
    if (!an && av != bv) return av > bv;
    return ai < bi;
}

/* Index of the largest of x[n] (n >= 1) by ranks_first. */
template <int T>
__device__ int block_argmax(const float *x, int n) {
    float bv = __int_as_float(0x7fc00000); /* nothing yet: NaN at index INT_MAX loses to all */
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < n; i += T) {
        const float v = x[i];
        if (ranks_first(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(kFull, bv, off);
        const int oi = __shfl_xor_sync(kFull, bi, off);
        if (ranks_first(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    __shared__ float pv[T / 32];
    __shared__ int pi[T / 32];
    if ((threadIdx.x & 31) == 0) {
        pv[threadIdx.x >> 5] = bv;
        pi[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    bv = pv[0];
    bi = pi[0];
    for (int w = 1; w < T / 32; w++)
        if (ranks_first(pv[w], pi[w], bv, bi)) {
            bv = pv[w];
            bi = pi[w];
        }
    __syncthreads();
    return bi;
}

/* The contiguous share [*lo, *hi) of n items that thread threadIdx.x owns in
 * the ordered walks (thread t before thread t + 1, as the items). */
template <int T>
__device__ __forceinline__ void my_share(int n, int *lo, int *hi) {
    const int64_t per = ((int64_t)n + T - 1) / T;
    const int64_t a = (int64_t)threadIdx.x * per;
    *lo = (int)(a < n ? a : n);
    *hi = (int)(a + per < n ? a + per : n);
}

/* ---- element-wise and per-row kernels ------------------------------------------------------ */

__global__ void embed_kernel(float *x, const void *table, int dtype, const int32_t *tokens, int n, int dim) {
    const size_t total = (size_t)n * (size_t)dim;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / (size_t)dim, d = i % (size_t)dim;
        const size_t src = (size_t)tokens[t] * (size_t)dim + d;
        float v;
        if (dtype == LLMLAB_DTYPE_F32)
            v = ((const float *)table)[src];
        else if (dtype == LLMLAB_DTYPE_F16) /* every f16 is exact in f32 */
            v = __half2float(__ushort_as_half(((const unsigned short *)table)[src]));
        else /* bf16: the top half of an f32 */
            v = __uint_as_float((uint32_t)((const uint16_t *)table)[src] << 16);
        x[i] = v;
    }
}

/* One block per row: ss = sum x^2 in the block's fixed order, then
 * out = (x * inv) * w with inv = 1 / sqrtf(ss / dim + eps) (IEEE sqrt and
 * division: nvcc's default -prec-sqrt/-prec-div). */
__global__ void __launch_bounds__(kRowThreads)
    rmsnorm_kernel(float *out, const float *x, const float *w, const int32_t *rows, int dim, float eps) {
    const int r = blockIdx.x;
    const float *xr = x + (size_t)(rows ? rows[r] : r) * (size_t)dim;
    float acc = 0.0f;
    for (int i = threadIdx.x; i < dim; i += kRowThreads) acc = fmaf(xr[i], xr[i], acc);
    const float ss = block_sum<kRowThreads>(acc);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    float *o = out + (size_t)r * (size_t)dim;
    for (int i = threadIdx.x; i < dim; i += kRowThreads) o[i] = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
}

__global__ void add_kernel(float *x, const float *y, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

/* x[i][c] += b[c], c < width (the v bias). */
__global__ void add_bias_kernel(float *x, const float *b, int n, int width) {
    const size_t total = (size_t)n * (size_t)width;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], b[i % (size_t)width]);
}

/* One thread per (token i, head h, pair j): q heads first, then k heads.  The
 * pair (j, j + half) gets its biases, then the HF rotate-half rotation at
 * angle (float)pos[i] * inv_freq[j], each product and sum rounded as on the
 * CPU (llmlab_cpu_rope). */
__global__ void bias_rope_kernel(float *q, float *k, const float *bq, const float *bk, const int32_t *pos,
                                 const float *inv_freq, int n, int n_heads, int n_kv_heads, int head_dim,
                                 int rotate) {
    const int half = head_dim / 2, heads = n_heads + n_kv_heads;
    const size_t total = (size_t)n * (size_t)heads * (size_t)half;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(t % (size_t)half);
        const size_t th = t / (size_t)half;
        const int h = (int)(th % (size_t)heads);
        const size_t i = th / (size_t)heads;
        float *x;
        const float *b;
        if (h < n_heads) {
            x = q + (i * (size_t)n_heads + (size_t)h) * (size_t)head_dim;
            b = bq ? bq + (size_t)h * (size_t)head_dim : NULL;
        } else {
            const int hk = h - n_heads;
            x = k + (i * (size_t)n_kv_heads + (size_t)hk) * (size_t)head_dim;
            b = bk ? bk + (size_t)hk * (size_t)head_dim : NULL;
        }
        float x0 = x[j], x1 = x[j + half];
        if (b) {
            x0 = __fadd_rn(x0, b[j]);
            x1 = __fadd_rn(x1, b[j + half]);
        }
        if (rotate) {
            const float angle = __fmul_rn((float)pos[i], inv_freq[j]);
            float s, c;
            sincosf(angle, &s, &c);
            const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            const float y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
            x0 = y0;
            x1 = y1;
        }
        x[j] = x0;
        x[j + half] = x1;
    }
}

__global__ void swiglu_kernel(float *gate, const float *up, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
    }
}

__global__ void __launch_bounds__(kArgThreads) argmax_kernel(int32_t *out, const float *logits, int vocab) {
    const int r = blockIdx.x;
    const int best = block_argmax<kArgThreads>(logits + (size_t)r * (size_t)vocab, vocab);
    if (threadIdx.x == 0) out[r] = best;
}

/* ---- sampling ------------------------------------------------------------------------------ */

/* Ranking (llmlab_sampling_probs): higher probability first, lower index on
 * ties.  For p >= 0 (never NaN here) the float's bits order as its value, so
 * ascending 64-bit keys (~bits(p), i) are exactly that ranking. */
__device__ __forceinline__ uint64_t rank_key(float p, int i) {
    return ((uint64_t)(~__float_as_uint(p)) << 32) | (uint32_t)i;
}
__device__ __forceinline__ float key_prob(uint64_t key) { return __uint_as_float(~(uint32_t)(key >> 32)); }

/* Ascending bitonic sort of a[n], n a power of two; one block, a barrier per
 * pass (n log2(n)^2 / 4 compare-exchanges). */
__device__ void bitonic_sort(uint64_t *a, unsigned n) {
    for (unsigned k = 2; k <= n; k <<= 1) /* n <= 2^30: k never overflows */
        for (unsigned j = k >> 1; j > 0; j >>= 1) {
            for (unsigned i = threadIdx.x; i < n; i += kST) {
                const unsigned l = i ^ j;
                if (l > i) {
                    const uint64_t x = a[i], y = a[l];
                    const bool up = (i & k) == 0;
                    if (up ? x > y : x < y) {
                        a[i] = y;
                        a[l] = x;
                    }
                }
            }
            __syncthreads();
        }
}

/* A threshold t (float bits) such that the kept set is a prefix of the
 * candidates C = {i : p[i] >= t}: C is a prefix of the ranking, and the walk
 * over it stops inside it when C holds top_k items, or more than top_p of the
 * mass (plus a margin for summation order), or t <= min_p * pmax (the first
 * item outside fails the min-p test).  Binary search over the bits for the
 * largest such t (the smallest C, the cheapest sort); t = 1 (every p > 0) when
 * none is: then C is the whole support and the items outside have p = 0. */
__device__ uint32_t candidate_threshold(const float *p, int vocab, const llmlab_cuda_sampling &s, float pmax,
                                        float floor_p) {
    uint32_t lo = 1u, hi = __float_as_uint(pmax) + 1u; /* C(hi) is empty */
    while (hi - lo > 1u) {
        const uint32_t mid = lo + (hi - lo) / 2u;
        int cnt = 0;
        double mass = 0.0;
        for (int i = threadIdx.x; i < vocab; i += kST) {
            const float v = p[i];
            if (__float_as_uint(v) >= mid) {
                cnt++;
                mass += (double)v;
            }
        }
        cnt = block_sum<kST>(cnt);
        mass = block_sum<kST>(mass);
        const bool enough = (s.top_k > 0 && cnt >= s.top_k) ||
                            (s.top_p < 1.0f && mass >= (double)s.top_p + kTopPMargin) ||
                            (s.min_p > 0.0f && mid <= __float_as_uint(floor_p));
        if (enough) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Writes the keys of C = {i : bits(p[i]) >= t} to keys (in index order),
 * pads them with ~0 to a power of two and returns |C|. */
__device__ int compact_candidates(const float *p, int vocab, uint32_t t, uint64_t *keys, int *padded) {
    int lo, hi;
    my_share<kST>(vocab, &lo, &hi);
    int c = 0;
    for (int i = lo; i < hi; i++) c += __float_as_uint(p[i]) >= t;
    int total = 0;
    int at = block_exclusive_scan<kST>(c, &total);
    for (int i = lo; i < hi; i++)
        if (__float_as_uint(p[i]) >= t) keys[at++] = rank_key(p[i], i);
    int np = 1;
    while (np < total) np <<= 1;
    for (int i = total + threadIdx.x; i < np; i += kST) keys[i] = ~0ull;
    __syncthreads();
    *padded = np;
    return total;
}

/* Sorts keys[np] (np a power of two): in shared memory when they fit. */
__device__ void sort_keys(uint64_t *keys, int np) {
    if (np <= kSmemKeys) {
        __shared__ uint64_t sk[kSmemKeys];
        for (int i = threadIdx.x; i < np; i += kST) sk[i] = keys[i];
        __syncthreads();
        bitonic_sort(sk, (unsigned)np);
        for (int i = threadIdx.x; i < np; i += kST) keys[i] = sk[i];
        __syncthreads();
    } else {
        bitonic_sort(keys, (unsigned)np);
    }
}

/* The cuts of llmlab_sampling_probs over the ranked keys[R] (R = min(|C|,
 * top_k)): walking the ranks in order, stop before rank r when r >= 1 and its
 * p < floor_p (min-p), after rank r when the running sum reaches top_p
 * (top-p).  Returns keep; *kept = the sum of the kept p (double, rank order:
 * each thread walks its share from the scanned sum of the shares before it). */
__device__ int keep_walk(const uint64_t *keys, int R, const llmlab_cuda_sampling &s, float floor_p, double *kept) {
    int lo, hi;
    my_share<kST>(R, &lo, &hi);
    double part = 0.0;
    for (int r = lo; r < hi; r++) part += (double)key_prob(keys[r]);
    double total;
    double cum = block_exclusive_scan<kST>(part, &total);
    int stop = -1;
    for (int r = lo; r < hi; r++) {
        const float pr = key_prob(keys[r]);
        if (s.min_p > 0.0f && r >= 1 && pr < floor_p) {
            stop = r;
            break;
        }
        cum += (double)pr;
        if (s.top_p < 1.0f && cum >= (double)s.top_p) {
            stop = r + 1;
            break;
        }
    }
    /* The lowest thread that stopped holds the first cut; without a cut, the
     * thread that owns rank R - 1 holds the sum of all R. */
    const int who = block_minmax<kST>(stop >= 0 ? (int)threadIdx.x : INT_MAX, false);
    const int per = (int)(((int64_t)R + kST - 1) / kST);
    __shared__ int keep_sh;
    __shared__ double kept_sh;
    if (who == INT_MAX ? (int)threadIdx.x == (R - 1) / per : (int)threadIdx.x == who) {
        keep_sh = who == INT_MAX ? R : stop;
        kept_sh = cum;
    }
    __syncthreads();
    const int keep = keep_sh;
    *kept = kept_sh;
    __syncthreads();
    return keep;
}

/* The probability the draw sees for token i: p[i] unfiltered; else p[i] / kept
 * for the kept tokens (key <= the last kept key) and 0 for the others. */
__device__ __forceinline__ float final_prob(const float *p, int i, bool filtered, uint64_t klast, double kept) {
    const float v = p[i];
    if (!filtered) return v;
    return rank_key(v, i) <= klast ? (float)((double)v / kept) : 0.0f;
}

/* llmlab_sample_from: the CDF walked in index order (tokens with q <= 0
 * skipped), the first i with u < cum; the last token with q > 0 when rounding
 * left u above the total.  Each thread walks its contiguous share from the
 * scanned sum of the shares before it. */
__device__ int draw(const float *p, int vocab, bool filtered, uint64_t klast, double kept, double u) {
    int lo, hi;
    my_share<kST>(vocab, &lo, &hi);
    double part = 0.0;
    for (int i = lo; i < hi; i++) {
        const float q = final_prob(p, i, filtered, klast, kept);
        if (q > 0.0f) part += (double)q;
    }
    double total;
    double cum = block_exclusive_scan<kST>(part, &total);
    int hit = INT_MAX, last = -1;
    for (int i = lo; i < hi; i++) {
        const float q = final_prob(p, i, filtered, klast, kept);
        if (!(q > 0.0f)) continue;
        cum += (double)q;
        last = i;
        if (u < cum) {
            hit = i;
            break;
        }
    }
    hit = block_minmax<kST>(hit, false);
    if (hit != INT_MAX) return hit;
    last = block_minmax<kST>(last, true);
    return last >= 0 ? last : 0;
}

/* One row, temperature > 0 (see llmlab_cuda_sample in the host part). */
__device__ int sample_row(const float *l, float *p, uint64_t *keys, int vocab, const llmlab_cuda_sampling &s, double u,
                          int amax) {
    /* Softmax as llmlab_sampling_probs: expf((l - max) / T) in f32, the sum in double. */
    const float mx = l[amax];
    double part = 0.0;
    for (int i = threadIdx.x; i < vocab; i += kST) {
        const float e = expf(__fdiv_rn(__fsub_rn(l[i], mx), s.temperature));
        p[i] = e;
        part += (double)e;
    }
    const double sum = block_sum<kST>(part);
    /* A NaN (a NaN or +inf logit): every probability is NaN, and the CPU's walk
     * then ends at the last token. */
    if (isnan(sum)) return vocab - 1;
    for (int i = threadIdx.x; i < vocab; i += kST) p[i] = (float)((double)p[i] / sum);
    __syncthreads();
    const bool filtered = s.top_k > 0 || s.top_p < 1.0f || s.min_p > 0.0f;
    if (!filtered) return draw(p, vocab, false, 0, 1.0, u);

    /* p is monotone in the logit, so the argmax holds the largest p. */
    const float pmax = p[amax];
    const float floor_p = __fmul_rn(s.min_p, pmax);
    const uint32_t t = candidate_threshold(p, vocab, s, pmax, floor_p);
    int np = 1;
    const int nc = compact_candidates(p, vocab, t, keys, &np);
    sort_keys(keys, np);
    const int R = s.top_k > 0 && s.top_k < nc ? s.top_k : nc;
    double kept = 1.0;
    const int keep = keep_walk(keys, R, s, floor_p, &kept);
    return draw(p, vocab, true, keys[keep - 1], kept, u);
}

__global__ void __launch_bounds__(kST)
    sample_kernel(int32_t *out, const float *logits, const llmlab_cuda_sampling *s, const float *u, int vocab,
                  uint8_t *work, size_t row_bytes, size_t keys_off) {
    const int r = blockIdx.x;
    const float *l = logits + (size_t)r * (size_t)vocab;
    float *p = (float *)(work + (size_t)r * row_bytes);
    uint64_t *keys = (uint64_t *)(work + (size_t)r * row_bytes + keys_off);
    const llmlab_cuda_sampling sp = s[r];
    const int amax = block_argmax<kST>(l, vocab);
    /* sp is the same for the whole block: the branch is uniform. */
    const int tok = sp.temperature == 0.0f ? amax : sample_row(l, p, keys, vocab, sp, (double)u[r], amax);
    if (threadIdx.x == 0) out[r] = tok;
}

/* ---- the copy list ------------------------------------------------------------------------- */

/* Plain loads and stores (never the read-only cache: a copy may read bytes an
 * earlier copy of this kernel wrote); the barrier makes them visible. */
__global__ void __launch_bounds__(kCopyThreads) copy_list_kernel(uint8_t *base, const llmlab_cuda_copy_op *ops, int n) {
    for (int k = 0; k < n; k++) {
        const llmlab_cuda_copy_op op = ops[k];
        uint8_t *d = base + op.dst;
        const uint8_t *s = base + op.src;
        if ((((uintptr_t)d | (uintptr_t)s | (uintptr_t)op.bytes) & 15) == 0) {
            uint4 *d4 = (uint4 *)d;
            const uint4 *s4 = (const uint4 *)s;
            for (int64_t i = threadIdx.x; i < op.bytes / 16; i += kCopyThreads) d4[i] = s4[i];
        } else {
            for (int64_t i = threadIdx.x; i < op.bytes; i += kCopyThreads) d[i] = s[i];
        }
        __syncthreads();
    }
}

} /* namespace */

/* ---- host side: argument checks and launches ---------------------------------------------- */

namespace {

unsigned elt_blocks(size_t n) {
    const size_t b = (n + kEltThreads - 1) / kEltThreads;
    return (unsigned)(b < (size_t)kEltMaxBlocks ? b : (size_t)kEltMaxBlocks);
}

cudaStream_t as_stream(void *stream) { return (cudaStream_t)stream; }

/* Bytes of one row's sampling scratch: p[vocab] (16-byte aligned), then the
 * keys [pow2 >= vocab]. */
size_t sample_keys_offset(int vocab) { return ((size_t)vocab * sizeof(float) + 15) & ~(size_t)15; }
size_t sample_row_bytes(int vocab) {
    size_t np = 1;
    while (np < (size_t)vocab) np <<= 1;
    return (sample_keys_offset(vocab) + np * sizeof(uint64_t) + 15) & ~(size_t)15;
}

} /* namespace */

extern "C" llmlab_status llmlab_cuda_embed(void *stream, float *x, const void *table, int dtype, const int32_t *tokens,
                                           int n, int dim, llmlab_err *err) {
    if (n < 0 || dim < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda embed: n %d, dim %d (n >= 0, dim >= 1)", n, dim);
    if (dtype != LLMLAB_DTYPE_F32 && dtype != LLMLAB_DTYPE_F16 && dtype != LLMLAB_DTYPE_BF16)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda embed: table dtype %d is not f32, f16 or bf16", dtype);
    if (n == 0) return LLMLAB_OK;
    if (!x || !table || !tokens)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda embed: NULL pointer (x %p, table %p, tokens %p)", (void *)x,
                               table, (const void *)tokens);
    embed_kernel<<<elt_blocks((size_t)n * (size_t)dim), kEltThreads, 0, as_stream(stream)>>>(x, table, dtype, tokens,
                                                                                          n, dim);
    CUQ_LAUNCHED("embedding kernel launch");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_rmsnorm(void *stream, float *out, const float *x, const float *w,
                                             const int32_t *rows, int n_rows, int dim, float eps, llmlab_err *err) {
    if (n_rows < 0 || dim < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda rmsnorm: n_rows %d, dim %d (n_rows >= 0, dim >= 1)", n_rows,
                               dim);
    if (!(eps >= 0.0f)) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda rmsnorm: eps %g < 0", (double)eps);
    if (n_rows == 0) return LLMLAB_OK;
    if (!out || !x || !w)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda rmsnorm: NULL pointer (out %p, x %p, w %p)", (void *)out,
                               (const void *)x, (const void *)w);
    rmsnorm_kernel<<<(unsigned)n_rows, kRowThreads, 0, as_stream(stream)>>>(out, x, w, rows, dim, eps);
    CUQ_LAUNCHED("rmsnorm kernel launch");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_add(void *stream, float *x, const float *y, size_t n, llmlab_err *err) {
    if (n == 0) return LLMLAB_OK;
    if (!x || !y)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda add: NULL pointer (x %p, y %p)", (void *)x, (const void *)y);
    add_kernel<<<elt_blocks(n), kEltThreads, 0, as_stream(stream)>>>(x, y, n);
    CUQ_LAUNCHED("add kernel launch");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_bias_rope(void *stream, float *q, float *k, float *v, const float *bq,
                                               const float *bk, const float *bv, const int32_t *pos,
                                               const float *inv_freq, int n, int n_heads, int n_kv_heads,
                                               int head_dim, int rotate, llmlab_err *err) {
    if (n < 0 || n_heads < 0 || n_kv_heads < 0 || head_dim < 2 || head_dim % 2)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL,
                               "cuda bias_rope: n %d, n_heads %d, n_kv_heads %d, head_dim %d (head_dim even, >= 2)", n,
                               n_heads, n_kv_heads, head_dim);
    if (n == 0) return LLMLAB_OK;
    if ((n_heads > 0 && !q) || (n_kv_heads > 0 && !k) || (bv && n_kv_heads > 0 && !v))
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda bias_rope: NULL q (%p), k (%p) or v (%p)", (void *)q,
                               (void *)k, (void *)v);
    if (rotate && (!pos || !inv_freq))
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda bias_rope: rotate needs pos (%p) and inv_freq (%p)",
                               (const void *)pos, (const void *)inv_freq);
    cudaStream_t st = as_stream(stream);
    const size_t pairs = (size_t)n * (size_t)(n_heads + n_kv_heads) * (size_t)(head_dim / 2);
    if (pairs > 0 && (rotate || bq || bk)) {
        bias_rope_kernel<<<elt_blocks(pairs), kEltThreads, 0, st>>>(q, k, bq, bk, pos, inv_freq, n, n_heads,
                                                                    n_kv_heads, head_dim, rotate);
        CUQ_LAUNCHED("bias + rope kernel launch");
    }
    const int width = n_kv_heads * head_dim;
    if (bv && width > 0) {
        add_bias_kernel<<<elt_blocks((size_t)n * (size_t)width), kEltThreads, 0, st>>>(v, bv, n, width);
        CUQ_LAUNCHED("v bias kernel launch");
    }
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_swiglu(void *stream, float *gate, const float *up, size_t n, llmlab_err *err) {
    if (n == 0) return LLMLAB_OK;
    if (!gate || !up)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda swiglu: NULL pointer (gate %p, up %p)", (void *)gate,
                               (const void *)up);
    swiglu_kernel<<<elt_blocks(n), kEltThreads, 0, as_stream(stream)>>>(gate, up, n);
    CUQ_LAUNCHED("swiglu kernel launch");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_argmax(void *stream, int32_t *out, const float *logits, int rows, int vocab,
                                            llmlab_err *err) {
    if (rows < 0 || vocab < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda argmax: rows %d, vocab %d (rows >= 0, vocab >= 1)", rows,
                               vocab);
    if (rows == 0) return LLMLAB_OK;
    if (!out || !logits)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda argmax: NULL pointer (out %p, logits %p)", (void *)out,
                               (const void *)logits);
    argmax_kernel<<<(unsigned)rows, kArgThreads, 0, as_stream(stream)>>>(out, logits, vocab);
    CUQ_LAUNCHED("argmax kernel launch");
    return LLMLAB_OK;
}

extern "C" size_t llmlab_cuda_sample_work_bytes(int rows, int vocab) {
    if (rows < 1 || vocab < 1) return 0;
    return (size_t)rows * sample_row_bytes(vocab);
}

/* Per row, one block of kST threads (llmlab_sampling_probs + llmlab_sample_from):
 *   1. argmax (temperature 0: the answer);
 *   2. p = expf((l - max) / T) (f32), normalised by their double sum;
 *   3. filters on: the smallest candidate set C = {p >= t} that must hold the
 *      kept tokens (binary search on t, <= 31 passes over p), the keys of C
 *      sorted (bitonic; in shared memory up to 4096 keys), the walk over the
 *      ranks for the top-k / top-p / min-p cuts and the kept mass;
 *   4. the CDF walk in index order at u.
 * Cost: a handful of passes over the row plus ~30 for the search (each reads
 * p, vocab floats, mostly from L2), and the sort: |C| log2(|C|)^2 / 4
 * compare-exchanges, small for usual settings (top_k 50; top_p 0.9 on a peaked
 * distribution) but 2^17 keys (~150 passes over 1 MiB) for a flat
 * distribution with top_p near 1 at a 128k vocabulary.
 * Double sums are formed per thread share and scanned in a fixed order, not
 * strictly left to right as on the CPU; they differ in the last bits of the
 * double (~1e-16 relative), which moves a cut or a draw only when top_p or u
 * lies that close to a boundary.  Together with expf's ulps this is why the
 * device draws "the same token as the CPU" for every u not within ~1e-6 of a
 * CDF boundary, and bit-identical tokens for the same inputs every run. */
extern "C" llmlab_status llmlab_cuda_sample(void *stream, int32_t *out, const float *logits,
                                            const llmlab_cuda_sampling *s, const float *u, int rows, int vocab,
                                            void *work, llmlab_err *err) {
    if (rows < 0 || vocab < 1)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda sample: rows %d, vocab %d (rows >= 0, vocab >= 1)", rows,
                               vocab);
    if (vocab > (1 << 30))
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda sample: vocab %d above 2^30", vocab);
    if (rows == 0) return LLMLAB_OK;
    if (!out || !logits || !s || !u || !work)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda sample: NULL pointer (out %p, logits %p, s %p, u %p, work %p)",
                               (void *)out, (const void *)logits, (const void *)s, (const void *)u, work);
    if ((uintptr_t)work & 15)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda sample: work (%p) is not 16-byte aligned", work);
    sample_kernel<<<(unsigned)rows, kST, 0, as_stream(stream)>>>(out, logits, s, u, vocab, (uint8_t *)work,
                                                                 sample_row_bytes(vocab), sample_keys_offset(vocab));
    CUQ_LAUNCHED("sampling kernel launch");
    return LLMLAB_OK;
}

extern "C" llmlab_status llmlab_cuda_copy_list(void *stream, uint8_t *base, const llmlab_cuda_copy_op *ops, int n,
                                               llmlab_err *err) {
    if (n < 0) return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda copy_list: n %d < 0", n);
    if (n == 0) return LLMLAB_OK;
    if (!base || !ops)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda copy_list: NULL pointer (base %p, ops %p)", (void *)base,
                               (const void *)ops);
    copy_list_kernel<<<1, kCopyThreads, 0, as_stream(stream)>>>(base, ops, n);
    CUQ_LAUNCHED("copy list kernel launch");
    return LLMLAB_OK;
}
