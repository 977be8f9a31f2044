/* quant_mma.cu - tensor-core skinny GEMM for the int4 formats (I4_SYM, I4_ASYM),
 * y[M][rows] = x[M][cols] W^T for decode-sized M (any M, in tiles of 32).
 *
 * Why tensor cores at M = 1: the CUDA-core GEMV spends about 3.5 instructions
 * per int4 weight (nibble extraction, int -> float, FMA), close to the issue
 * rate needed to keep up with HBM; here a weight costs about 2 instructions
 * (extraction, exact bf16 conversion, scaling, two per bf16x2 op) and the
 * multiply-adds go to mma.sync, so the same kernel also serves M = 8..32 where
 * the CUDA-core version becomes compute-bound (the idea of Marlin, without its
 * offline re-packing: the bytes stay in the CPU layout).
 *
 * Work split: a block owns 16 weight rows (the mma's M) and up to 32 activation
 * rows (4 tiles of 8, the mma's N); its 8 warps split cols into chunks of 128,
 * warp w taking chunks w, w + 8, w + 16, ... in that order, and sum their
 * partial tiles in warp order at the end (fixed: batch invariant).
 *
 * Fragment mapping (PTX m16n8k16, groupID g = lane / 4, t = lane % 4): lane
 * (g, t) loads, for chunk c, the 16-byte packet p = 4c + t (32 weights) of rows
 * g and g + 8 and feeds them to 8 mmas.  The dot product does not care which
 * physical column a logical k stands for, as long as A and B agree, so each
 * mma (w, h) (w = word 0..3 of the packet, h = low/high nibbles) maps the
 * lane's logical columns (2t, 2t+1, 2t+8, 2t+9) to the packet-relative columns
 * (o, o+2, o+1, o+3) with o = 4w + 16h: a mask of 0x000F000F on the word
 * (shifted by 4h, or 8 + 4h) then yields exactly the bf16x2 pairs A needs, and
 * B is x at the same columns.  x is staged per warp in shared memory already
 * in that order and in bf16, read with coalesced float4 loads (a lane's own
 * columns are 128 bytes apart from its neighbours', which would waste most of
 * each L1 access if loaded directly).
 *
 * Numerics: weights become bf16 exactly as (n - 8) or n (the 0x4300 magic:
 * bf16 128 + n), then are scaled in bf16 (scale and min rounded to bf16, one
 * more rounding for the product): about 2^-8 relative per weight; x is rounded
 * to bf16 (x * in_scale first); accumulation is f32.  Compare with the CPU
 * reference within a bf16 tolerance. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include "kernels/cuda/cuda_quant_internal.cuh"

namespace {

constexpr int kWarps = 8;                /* warps per block, splitting cols */
constexpr int kThreads = 32 * kWarps;
constexpr int kRowsBlk = 16;             /* weight rows per block: the mma's M */
constexpr int kUnroll = 4;               /* chunks whose loads are in flight per warp */
constexpr int kChunk = 128;              /* cols per warp step: 4 lanes x 32 */

struct MmaArgs {
    const uint8_t *data;     /* [rows][pitch] packed rows */
    size_t pitch;
    int64_t rows, cols;
    int group;
    const float *in_scale;   /* [cols] or NULL */
    const float *x;          /* [M][cols] f32 */
    float *y;                /* [M][rows] */
    int M;
};

__device__ __forceinline__ uint32_t bf2_bits(__nv_bfloat162 v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

__device__ __forceinline__ __nv_bfloat162 bits_bf2(uint32_t u) {
    __nv_bfloat162 v;
    memcpy(&v, &u, 4);
    return v;
}

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int j) {
    return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; /* j constant after unrolling */
}

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half(__ldg((const unsigned short *)p)));
}

/* D = A B + D for one 16 x 8 x 16 tile, bf16 operands, f32 accumulators. */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* A lane's part of one chunk: the packets of rows g and g + 8 and their group
 * scale (and min) as bf16x2. */
struct Chunk {
    uint4 q[2];
    __nv_bfloat162 s[2], mn[2];
};

template <bool kAsym>
__device__ __forceinline__ Chunk load_chunk(const MmaArgs &a, const uint8_t *const (&row)[2], int64_t p, bool ok) {
    Chunk k;
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        if (ok) {
            const int64_t ng = a.cols / a.group, g = 32 * p / a.group;
            k.q[rr] = __ldg((const uint4 *)(row[rr] + 16 * p));
            k.s[rr] = __float2bfloat162_rn(f16_at(row[rr] + a.cols / 2 + 2 * g));
            k.mn[rr] = __float2bfloat162_rn(kAsym ? f16_at(row[rr] + a.cols / 2 + 2 * ng + 2 * g) : 0.0f);
        } else { /* past the end of cols: zero weights */
            k.q[rr] = make_uint4(0, 0, 0, 0);
            k.s[rr] = k.mn[rr] = __float2bfloat162_rn(0.0f);
        }
    }
    return k;
}

/* The 4 A registers of mma (w, h): rows g, g + 8 at the logical columns
 * (2t, 2t+1) (regs 0, 1) and (2t+8, 2t+9) (regs 2, 3), standing for the packet
 * columns (o, o+2) and (o+1, o+3), o = 4w + 16h. */
template <bool kAsym>
__device__ __forceinline__ void make_a(const Chunk &k, int w, int h, uint32_t (&a)[4]) {
    /* (0x4300 | n) is the bf16 128 + n; subtracting 136 (SYM) or 128 (ASYM)
     * is exact and leaves n - 8 or n. */
    const __nv_bfloat162 off = __float2bfloat162_rn(kAsym ? 128.0f : 136.0f);
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const uint32_t u = word_of(k.q[rr], w) >> (4 * h);
        __nv_bfloat162 lo = __hsub2(bits_bf2((u & 0x000F000Fu) | 0x43004300u), off);
        __nv_bfloat162 hi = __hsub2(bits_bf2(((u >> 8) & 0x000F000Fu) | 0x43004300u), off);
        if (kAsym) {
            lo = __hfma2(lo, k.s[rr], k.mn[rr]);
            hi = __hfma2(hi, k.s[rr], k.mn[rr]);
        } else {
            lo = __hmul2(lo, k.s[rr]);
            hi = __hmul2(hi, k.s[rr]);
        }
        a[rr] = bf2_bits(lo);
        a[2 + rr] = bf2_bits(hi);
    }
}

/* Stages x'[m0 .. m0 + mrows)[128 c .. 128 c + 128) of this warp's chunk as bf16
 * in fragment order: xs[(2w + h) * tile + r][t] holds (x[o], x[o+2], x[o+1],
 * x[o+3]) for the packet of lane column t, o = 4w + 16h, so a reader's 32 lanes
 * read 256 consecutive bytes.  Lane l loads the coalesced float4 at 4l, which is
 * exactly one such quadruple: t = l / 8, h = (l / 4) % 2, w = l % 4. */
__device__ __forceinline__ void stage_x(const MmaArgs &a, uint2 *xs, int64_t c, int m0, int tile, int mrows,
                                        int lane) {
    const int t = lane >> 3, q = 2 * (lane & 3) + ((lane >> 2) & 1);
    const int64_t k = kChunk * c + 4 * lane;
    for (int r = 0; r < mrows; r++) {
        uint2 v = make_uint2(0, 0);
        if (k < a.cols) {
            const float *xr = a.x + (size_t)(m0 + r) * a.cols;
            float4 x = __ldg((const float4 *)(xr + k));
            if (a.in_scale) {
                float4 s = __ldg((const float4 *)(a.in_scale + k));
                x.x *= s.x;
                x.y *= s.y;
                x.z *= s.z;
                x.w *= s.w;
            }
            v.x = bf2_bits(__floats2bfloat162_rn(x.x, x.z));
            v.y = bf2_bits(__floats2bfloat162_rn(x.y, x.w));
        }
        xs[(q * tile + r) * 4 + t] = v;
    }
}

/* Block b: weight rows [16 (b / n_mt), +16), activation rows [8 NT (b % n_mt), +8 NT).
 * Dynamic shared memory: kWarps * 8 * 8 NT * 4 uint2 (16 KiB per n-tile). */
template <bool kAsym, int NT>
__global__ void __launch_bounds__(kThreads, 2) mma_i4_kernel(const MmaArgs a) {
    extern __shared__ uint2 smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    constexpr int tile = 8 * NT;
    const int n_mt = (a.M + tile - 1) / tile;
    const int64_t r0 = (int64_t)(blockIdx.x / n_mt) * kRowsBlk;
    const int m0 = (int)(blockIdx.x % n_mt) * tile;
    const int mrows = min(tile, a.M - m0);
    uint2 *xs = smem + (size_t)warp * 8 * tile * 4;
    const uint8_t *row[2] = {a.data + (size_t)min(r0 + g, a.rows - 1) * a.pitch,
                             a.data + (size_t)min(r0 + g + 8, a.rows - 1) * a.pitch};
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    const int64_t np = a.cols / 32, nch = (np + 3) / 4;
    for (int64_t c0 = warp; c0 < nch; c0 += (int64_t)kWarps * kUnroll) {
        Chunk ch[kUnroll]; /* all loads of kUnroll chunks issued before the first use */
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t c = c0 + (int64_t)u * kWarps, p = 4 * c + t;
            ch[u] = load_chunk<kAsym>(a, row, p, c < nch && p < np);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t c = c0 + (int64_t)u * kWarps;
            if (c < nch) {    /* the same for the whole warp */
                __syncwarp(); /* the previous chunk's readers are done */
                stage_x(a, xs, c, m0, tile, mrows, lane);
                __syncwarp();
#pragma unroll
                for (int w = 0; w < 4; w++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        uint32_t A[4];
                        make_a<kAsym>(ch[u], w, h, A);
#pragma unroll
                        for (int j = 0; j < NT; j++) {
                            uint2 b = make_uint2(0, 0);
                            if (8 * j + g < mrows) b = xs[((2 * w + h) * tile + 8 * j + g) * 4 + t];
                            mma16816(acc[j], A, b.x, b.y);
                        }
                    }
            }
        }
    }

    /* Sum the warps' tiles in warp order; C fragment: regs 0, 1 = row g,
     * activation columns 2t, 2t+1; regs 2, 3 = row g + 8. */
    __syncthreads(); /* every warp is done with its staging area */
    float *red = (float *)smem; /* [kWarps][NT * 4][32] */
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) red[(warp * NT * 4 + j * 4 + e) * 32 + lane] = acc[j][e];
    __syncthreads();
    for (int i = threadIdx.x; i < NT * 4 * 32; i += kThreads) {
        const int e = i / 32, ln = i % 32, j = e / 4, reg = e % 4;
        float s = red[e * 32 + ln];
#pragma unroll
        for (int w = 1; w < kWarps; w++) s += red[(w * NT * 4 + e) * 32 + ln];
        const int64_t n = r0 + (ln >> 2) + (reg >= 2 ? 8 : 0);
        const int m = m0 + 8 * j + 2 * (ln & 3) + (reg & 1);
        if (n < a.rows && m < a.M) a.y[(size_t)m * a.rows + n] = s;
    }
}

template <bool kAsym, int NT>
llmlab_status launch(const llmlab_cuda_qctx *c, const MmaArgs &a, llmlab_err *err) {
    const int64_t n_mt = (a.M + 8 * NT - 1) / (8 * NT);
    const int64_t blocks = (a.rows + kRowsBlk - 1) / kRowsBlk * n_mt;
    if (blocks > 0x7fffffff)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda mma: %lld blocks exceed the grid limit (rows %lld, M %d)",
                               (long long)blocks, (long long)a.rows, a.M);
    const size_t smem = (size_t)kWarps * 8 * 8 * NT * 4 * sizeof(uint2);
    mma_i4_kernel<kAsym, NT><<<(unsigned)blocks, kThreads, smem, c->stream>>>(a);
    CUQ_LAUNCHED("int4 tensor-core kernel launch");
    return LLMLAB_OK;
}

template <bool kAsym>
llmlab_status launch_nt(const llmlab_cuda_qctx *c, const MmaArgs &a, llmlab_err *err) {
    if (a.M <= 8) return launch<kAsym, 1>(c, a, err);
    if (a.M <= 16) return launch<kAsym, 2>(c, a, err);
    return launch<kAsym, 4>(c, a, err);
}

/* Kernels whose shared memory exceeds the default 48 KiB need the opt-in. */
template <bool kAsym>
llmlab_status allow_smem(llmlab_err *err) {
    const int smem4 = kWarps * 8 * 8 * 4 * 4 * (int)sizeof(uint2);
    CUQ_CHECK(cudaFuncSetAttribute(mma_i4_kernel<kAsym, 4>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem4),
              "cudaFuncSetAttribute (shared memory of the int4 tensor-core kernel)");
    return LLMLAB_OK;
}

} /* namespace */

llmlab_status llmlab_cuq_mma_setup(llmlab_err *err) {
    llmlab_status st = allow_smem<false>(err);
    return st ? st : allow_smem<true>(err);
}

llmlab_status llmlab_cuq_mma(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                             llmlab_err *err) {
    MmaArgs a;
    a.data = w->data;
    a.pitch = w->pitch;
    a.rows = w->rows;
    a.cols = w->cols;
    a.group = w->group;
    a.in_scale = w->in_scale;
    a.x = x;
    a.y = y;
    a.M = M;
    if (w->format == LLMLAB_QF_I4_SYM) return launch_nt<false>(c, a, err);
    if (w->format == LLMLAB_QF_I4_ASYM) return launch_nt<true>(c, a, err);
    return llmlab_cuq_errf(err, LLMLAB_EUNSUPPORTED,
                           "cuda mma: the tensor-core path takes I4_SYM or I4_ASYM, not format %d", w->format);
}
