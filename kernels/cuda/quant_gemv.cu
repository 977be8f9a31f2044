/* quant_gemv.cu - the dequantize-fused GEMV / skinny GEMM of every device format:
 * y[M][rows] = x[M][cols] W^T with W packed as on the CPU (quant_internal.h).
 *
 * Decode is memory-bound: at M = 1 every weight byte is used for one multiply-add
 * (two for int4), so the kernel is built to stream the packed bytes at full
 * bandwidth and to keep the dequantization cheap enough not to become the limit:
 *
 *   - one block of 128 threads (4 warps) owns kRows = 4 weight rows and up to 8
 *     activation rows (an "M tile"); blocks of the same weight rows and different
 *     M tiles are launched next to each other, so the second reads the weights
 *     from L2, not from HBM;
 *   - the reduction over cols is split over all 128 threads at the granularity of
 *     a 16-byte packet (32 int4 / 16 int8 or fp8 / 8 bf16 or f16 / 4 f32 weights,
 *     or one 32-weight GGUF block), thread t taking packets t, t + 128, t + 256,
 *     ... in that order;
 *   - each thread issues the loads of two packets of all 4 rows (8 independent
 *     16-byte loads) before the first use, to keep enough bytes in flight;
 *   - activations (f32) are read as float4 through the read-only cache and reused
 *     from registers for the 4 rows;
 *   - partial sums are reduced by a warp-shuffle butterfly, then across the 4
 *     warps through shared memory in warp order.
 *
 * Batch invariance: the partition of cols over threads, the order of the
 * multiply-adds inside a thread and both reduction trees are the same for every
 * M and every M tile, and every multiply-add is an explicit fmaf (no contraction
 * left to the compiler), so y[m][n] does not depend on M.
 *
 * Accumulation is f32 throughout.  Activations are f32 (x * in_scale when the
 * matrix has one); Q8_0/Q4_0 take the int8 activation blocks made by
 * quantize_act_kernel, exactly as the CPU reference quantizes them. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "kernels/cuda/cuda_quant_internal.cuh"

namespace {

constexpr int kThreads = 128;             /* threads per block */
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 4;                  /* weight rows per block */
constexpr unsigned kFull = 0xffffffffu;   /* all lanes of a warp */

struct GemvArgs {
    const uint8_t *data;      /* [rows][pitch] packed rows */
    size_t pitch;
    int64_t rows, cols;
    int group;                /* I4: weights per scale */
    const float *row_scale;   /* [rows] or [1] (I8_ROW, FP8), else NULL */
    int per_row;
    const float *in_scale;    /* [cols] or NULL */
    const float *x;           /* [M][cols] f32 activations */
    const int8_t *xq;         /* [M][cols] int8 activation codes (Q8_0, Q4_0) */
    const float *xd;          /* [M][cols/32] their block scales */
    const int *xsum;          /* [M][cols/32] sum of each block's codes */
    float *y;                 /* [M][rows] */
    int M;
};

/* ---- bit tricks --------------------------------------------------------------------- */

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int j) {
    return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; /* j is a constant after unrolling */
}

/* Byte i (0..3) of v as the float 2^23 + byte.  Why: a PRMT places the byte in
 * the low mantissa bits under the exponent of 2^23 (0x4B000000), and one exact
 * FADD removes the offset afterwards; int->float conversion (I2F) issues at a
 * quarter of the FADD rate on sm_90 and would bound the int4 kernel. */
__device__ __forceinline__ float byte_magic(uint32_t v, int i) {
    return __int_as_float((int)__byte_perm(v, 0x4B000000u, 0x7540u | (unsigned)i));
}

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half(__ldg((const unsigned short *)p)));
}

/* Two e4m3 codes (low byte first) to f32.  Why: on sm_89+ cuda_fp8.h lowers this
 * to one cvt.rn.f16x2.e4m3x2, and f16 holds every e4m3 value exactly. */
__device__ __forceinline__ float2 fp8x2_to_float2(uint32_t v) {
    __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v & 0xffffu), __NV_E4M3);
    return __half22float2(__half2(h));
}

/* Four activations x'[k..k+3] of one row (k a multiple of 4). */
__device__ __forceinline__ float4 load_x4(const GemvArgs &a, const float *xrow, int64_t k) {
    float4 v = __ldg((const float4 *)(xrow + k));
    if (a.in_scale) { /* uniform branch: the same for every thread */
        float4 s = __ldg((const float4 *)(a.in_scale + k));
        v.x *= s.x;
        v.y *= s.y;
        v.z *= s.z;
        v.w *= s.w;
    }
    return v;
}

/* acc[r] += w[r][0..3] . x[0..3] in a fixed order. */
template <int R>
__device__ __forceinline__ void fma4(float (&acc)[R], const float (&w)[R][4], float4 x) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        acc[r] = fmaf(w[r][0], x.x, acc[r]);
        acc[r] = fmaf(w[r][1], x.y, acc[r]);
        acc[r] = fmaf(w[r][2], x.z, acc[r]);
        acc[r] = fmaf(w[r][3], x.w, acc[r]);
    }
}

/* ---- formats: the packet each thread loads and what it adds to acc --------------------- */

/* Dense bf16 (the baseline): 8 weights per packet; bf16 -> f32 is a 16-bit shift. */
struct FmtBF16 {
    static constexpr int kPer = 8;
    static constexpr int kMaxMT = 8;
    typedef uint4 Packet;
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        return __ldg((const uint4 *)(row + 16 * p));
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float w[kRows][4];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                uint32_t u0 = word_of(pk[r], 2 * h), u1 = word_of(pk[r], 2 * h + 1);
                w[r][0] = __uint_as_float(u0 << 16);
                w[r][1] = __uint_as_float(u0 & 0xffff0000u);
                w[r][2] = __uint_as_float(u1 << 16);
                w[r][3] = __uint_as_float(u1 & 0xffff0000u);
            }
#pragma unroll
            for (int mi = 0; mi < MT; mi++)
                fma4(acc[mi], w, load_x4(a, a.x + (size_t)m[mi] * a.cols, 8 * p + 4 * h));
        }
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* Dense f16: 8 weights per packet, element 0 in the low half of word 0; f16 ->
 * f32 is exact (a hardware conversion). */
struct FmtF16 {
    static constexpr int kPer = 8;
    static constexpr int kMaxMT = 8;
    typedef uint4 Packet;
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        return __ldg((const uint4 *)(row + 16 * p));
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float w[kRows][4];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                uint32_t u0 = word_of(pk[r], 2 * h), u1 = word_of(pk[r], 2 * h + 1);
                w[r][0] = __half2float(__ushort_as_half((unsigned short)(u0 & 0xffffu)));
                w[r][1] = __half2float(__ushort_as_half((unsigned short)(u0 >> 16)));
                w[r][2] = __half2float(__ushort_as_half((unsigned short)(u1 & 0xffffu)));
                w[r][3] = __half2float(__ushort_as_half((unsigned short)(u1 >> 16)));
            }
#pragma unroll
            for (int mi = 0; mi < MT; mi++)
                fma4(acc[mi], w, load_x4(a, a.x + (size_t)m[mi] * a.cols, 8 * p + 4 * h));
        }
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* Dense f32: 4 weights per packet, used as loaded. */
struct FmtF32 {
    static constexpr int kPer = 4;
    static constexpr int kMaxMT = 8;
    typedef uint4 Packet;
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        return __ldg((const uint4 *)(row + 16 * p));
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
        float w[kRows][4];
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int i = 0; i < 4; i++) w[r][i] = __uint_as_float(word_of(pk[r], i));
#pragma unroll
        for (int mi = 0; mi < MT; mi++) fma4(acc[mi], w, load_x4(a, a.x + (size_t)m[mi] * a.cols, 4 * p));
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* I8_ROW: 16 int8 codes per packet; the row scale multiplies the finished sum. */
struct FmtI8 {
    static constexpr int kPer = 16;
    static constexpr int kMaxMT = 8;
    typedef uint4 Packet;
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        return __ldg((const uint4 *)(row + 16 * p));
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float w[kRows][4];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                /* Flipping the sign bits turns int8 c into c + 128 in 0..255. */
                uint32_t u = word_of(pk[r], j) ^ 0x80808080u;
#pragma unroll
                for (int i = 0; i < 4; i++) w[r][i] = byte_magic(u, i) - 8388736.0f; /* 2^23 + 128 */
            }
#pragma unroll
            for (int mi = 0; mi < MT; mi++)
                fma4(acc[mi], w, load_x4(a, a.x + (size_t)m[mi] * a.cols, 16 * p + 4 * j));
        }
    }
    __device__ static float row_factor(const GemvArgs &a, int64_t row) { return __ldg(a.row_scale + row); }
};

/* FP8 e4m3: 16 codes per packet; scale per row or per tensor after the sum. */
struct FmtFP8 {
    static constexpr int kPer = 16;
    static constexpr int kMaxMT = 8;
    typedef uint4 Packet;
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        return __ldg((const uint4 *)(row + 16 * p));
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float w[kRows][4];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                uint32_t u = word_of(pk[r], j);
                float2 lo = fp8x2_to_float2(u), hi = fp8x2_to_float2(u >> 16);
                w[r][0] = lo.x;
                w[r][1] = lo.y;
                w[r][2] = hi.x;
                w[r][3] = hi.y;
            }
#pragma unroll
            for (int mi = 0; mi < MT; mi++)
                fma4(acc[mi], w, load_x4(a, a.x + (size_t)m[mi] * a.cols, 16 * p + 4 * j));
        }
    }
    __device__ static float row_factor(const GemvArgs &a, int64_t row) {
        return __ldg(a.row_scale + (a.per_row ? row : 0));
    }
};

/* I4_SYM / I4_ASYM: 32 nibbles per packet (16 bytes), all in one group since
 * groups are 32, 64 or 128 weights.  Byte i holds weight i (low nibble) and
 * weight i + 16 (high nibble).  The group scale (and min) multiply the packet's
 * partial sums once, not every weight:
 *   SYM:  sum_i s (n_i - 8) x_i = s * sum_i (n_i - 8) x_i
 *   ASYM: sum_i (s n_i + m) x_i = s * sum_i n_i x_i + m * sum_i x_i */
template <bool kAsym>
struct FmtI4 {
    static constexpr int kPer = 32;
    /* Why 4: the per-packet partial sums double the accumulators, and an M tile
     * of 8 needs more than 255 registers (spills). */
    static constexpr int kMaxMT = 4;
    struct Packet {
        uint4 q;
        float s, mn;
    };
    __device__ static Packet load(const GemvArgs &a, const uint8_t *row, int64_t p) {
        Packet k;
        int64_t ng = a.cols / a.group, g = 32 * p / a.group;
        k.q = __ldg((const uint4 *)(row + 16 * p));
        k.s = f16_at(row + a.cols / 2 + 2 * g);
        k.mn = kAsym ? f16_at(row + a.cols / 2 + 2 * ng + 2 * g) : 0.0f;
        return k;
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
        float part[MT][kRows], xsum[MT];
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
            xsum[mi] = 0.0f;
#pragma unroll
            for (int r = 0; r < kRows; r++) part[mi][r] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) { /* weights 4j .. 4j + 3 of the packet */
            float w[kRows][4];
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                uint32_t u = word_of(pk[r].q, j & 3);
                uint32_t nib = j < 4 ? (u & 0x0F0F0F0Fu) : ((u >> 4) & 0x0F0F0F0Fu);
#pragma unroll
                for (int i = 0; i < 4; i++) /* exact: n - 8 (SYM) or n (ASYM) */
                    w[r][i] = byte_magic(nib, i) - (kAsym ? 8388608.0f : 8388616.0f);
            }
#pragma unroll
            for (int mi = 0; mi < MT; mi++) {
                float4 xv = load_x4(a, a.x + (size_t)m[mi] * a.cols, 32 * p + 4 * j);
                if (kAsym) xsum[mi] = (((xsum[mi] + xv.x) + xv.y) + xv.z) + xv.w;
                fma4(part[mi], w, xv);
            }
        }
#pragma unroll
        for (int mi = 0; mi < MT; mi++)
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                acc[mi][r] = fmaf(pk[r].s, part[mi][r], acc[mi][r]);
                if (kAsym) acc[mi][r] = fmaf(pk[r].mn, xsum[mi], acc[mi][r]);
            }
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* Rows of the GGUF formats are only 2-byte aligned (34- and 18-byte blocks), so
 * the blocks are read as 16-bit words, as llama.cpp's CUDA kernels do; the
 * warp's loads of consecutive blocks still cover contiguous bytes. */
__device__ __forceinline__ uint32_t u32_at2(const unsigned short *h) {
    return (uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16);
}

/* Block p of a GGUF row whose blocks are an f16 scale followed by NW 32-bit
 * words of codes (Q8_0: 34 bytes, NW 8; Q4_0: 18 bytes, NW 4). */
template <int BlockBytes, int NW>
__device__ __forceinline__ float load_gguf_block(const uint8_t *row, int64_t p, uint32_t (&q)[NW]) {
    const unsigned short *h = (const unsigned short *)(row + BlockBytes * p);
#pragma unroll
    for (int i = 0; i < NW; i++) q[i] = u32_at2(h + 1 + 2 * i);
    return __half2float(__ushort_as_half(__ldg(h)));
}

/* Q8_0: one block (f16 d + 32 int8) per packet; dp4a gives the exact integer
 * dot with the block's int8 activation codes, then t = (d * xd) * isum as in
 * the CPU reference. */
struct FmtQ8_0 {
    static constexpr int kPer = 32;
    static constexpr int kMaxMT = 8;
    struct Packet {
        uint32_t q[8];
        float d;
    };
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        Packet k;
        k.d = load_gguf_block<34, 8>(row, p, k.q);
        return k;
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
        const int64_t nb = a.cols / 32;
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
            const int4 *xq = (const int4 *)(a.xq + (size_t)m[mi] * a.cols + 32 * p);
            int4 x0 = __ldg(xq), x1 = __ldg(xq + 1);
            float xd = __ldg(a.xd + (size_t)m[mi] * nb + p);
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                const uint32_t *q = pk[r].q;
                int s = __dp4a((int)q[0], x0.x, 0);
                s = __dp4a((int)q[1], x0.y, s);
                s = __dp4a((int)q[2], x0.z, s);
                s = __dp4a((int)q[3], x0.w, s);
                s = __dp4a((int)q[4], x1.x, s);
                s = __dp4a((int)q[5], x1.y, s);
                s = __dp4a((int)q[6], x1.z, s);
                s = __dp4a((int)q[7], x1.w, s);
                acc[mi][r] = fmaf(pk[r].d * xd, (float)s, acc[mi][r]);
            }
        }
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* Q4_0: one block (f16 d + 16 bytes of nibbles, weight i in the low nibble of
 * byte i, weight i + 16 in the high one) per packet.  isum = sum (n - 8) xq is
 * formed exactly as sum n xq - 8 sum xq (dp4a on the unsigned nibbles). */
struct FmtQ4_0 {
    static constexpr int kPer = 32;
    static constexpr int kMaxMT = 8;
    struct Packet {
        uint32_t q[4];
        float d;
    };
    __device__ static Packet load(const GemvArgs &, const uint8_t *row, int64_t p) {
        Packet k;
        k.d = load_gguf_block<18, 4>(row, p, k.q);
        return k;
    }
    template <int MT>
    __device__ static void dot(const GemvArgs &a, const Packet (&pk)[kRows], int64_t p, const int (&m)[MT],
                               float (&acc)[MT][kRows]) {
        const int64_t nb = a.cols / 32;
#pragma unroll
        for (int mi = 0; mi < MT; mi++) {
            const int4 *xq = (const int4 *)(a.xq + (size_t)m[mi] * a.cols + 32 * p);
            int4 x0 = __ldg(xq), x1 = __ldg(xq + 1);
            float xd = __ldg(a.xd + (size_t)m[mi] * nb + p);
            int qsum8 = 8 * __ldg(a.xsum + (size_t)m[mi] * nb + p);
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                const uint32_t *q = pk[r].q;
                int s = __dp4a((int)(q[0] & 0x0F0F0F0Fu), x0.x, 0);
                s = __dp4a((int)(q[1] & 0x0F0F0F0Fu), x0.y, s);
                s = __dp4a((int)(q[2] & 0x0F0F0F0Fu), x0.z, s);
                s = __dp4a((int)(q[3] & 0x0F0F0F0Fu), x0.w, s);
                s = __dp4a((int)((q[0] >> 4) & 0x0F0F0F0Fu), x1.x, s);
                s = __dp4a((int)((q[1] >> 4) & 0x0F0F0F0Fu), x1.y, s);
                s = __dp4a((int)((q[2] >> 4) & 0x0F0F0F0Fu), x1.z, s);
                s = __dp4a((int)((q[3] >> 4) & 0x0F0F0F0Fu), x1.w, s);
                acc[mi][r] = fmaf(pk[r].d * xd, (float)(s - qsum8), acc[mi][r]);
            }
        }
    }
    __device__ static float row_factor(const GemvArgs &, int64_t) { return 1.0f; }
};

/* ---- the kernel -------------------------------------------------------------------------- */

/* Block b: weight rows [4 (b / n_mt), +4), activation rows [MT (b % n_mt), +MT).
 * Rows past the end are clamped for loading (always valid memory) and not stored. */
template <class F, int MT>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const GemvArgs a) {
    const int n_mt = (a.M + MT - 1) / MT;
    const int64_t r0 = (int64_t)(blockIdx.x / n_mt) * kRows;
    const int m0 = (int)(blockIdx.x % n_mt) * MT;
    const uint8_t *row[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) row[r] = a.data + (size_t)min(r0 + r, a.rows - 1) * a.pitch;
    int m[MT];
#pragma unroll
    for (int mi = 0; mi < MT; mi++) m[mi] = min(m0 + mi, a.M - 1);
    float acc[MT][kRows];
#pragma unroll
    for (int mi = 0; mi < MT; mi++)
#pragma unroll
        for (int r = 0; r < kRows; r++) acc[mi][r] = 0.0f;

    const int64_t np = a.cols / F::kPer;
    int64_t p = threadIdx.x;
    /* Two packets per row per iteration: all 8 loads are issued before the first
     * is used.  The packets are still added in increasing p order. */
    for (; p + kThreads < np; p += 2 * kThreads) {
        typename F::Packet u[kRows], v[kRows];
#pragma unroll
        for (int r = 0; r < kRows; r++) u[r] = F::load(a, row[r], p);
#pragma unroll
        for (int r = 0; r < kRows; r++) v[r] = F::load(a, row[r], p + kThreads);
        F::template dot<MT>(a, u, p, m, acc);
        F::template dot<MT>(a, v, p + kThreads, m, acc);
    }
    if (p < np) {
        typename F::Packet u[kRows];
#pragma unroll
        for (int r = 0; r < kRows; r++) u[r] = F::load(a, row[r], p);
        F::template dot<MT>(a, u, p, m, acc);
    }

    /* Butterfly over the warp (fixed order), then the 4 warps in warp order. */
    __shared__ float red[kWarps][MT * kRows];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int mi = 0; mi < MT; mi++)
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            float v = acc[mi][r];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
            if (lane == 0) red[warp][mi * kRows + r] = v;
        }
    __syncthreads();
    if (threadIdx.x < MT * kRows) {
        const int mi = threadIdx.x / kRows, r = threadIdx.x % kRows;
        const int mm = m0 + mi;
        const int64_t n = r0 + r;
        if (mm < a.M && n < a.rows) {
            float s = red[0][threadIdx.x];
#pragma unroll
            for (int w = 1; w < kWarps; w++) s += red[w][threadIdx.x];
            a.y[(size_t)mm * a.rows + n] = s * F::row_factor(a, n);
        }
    }
}

/* One warp per activation block of 32 (lane i holds element i): codes
 * q = rne(x' * (1 / d)) clamped to +-127 with d = max|x'| / 127, exactly as
 * llmlab_qact_block computes them on the CPU (IEEE division, no fast math). */
__global__ void quantize_act_kernel(const float *x, const float *in_scale, int64_t cols, int64_t n_blocks, int8_t *xq,
                                    float *xd, int *xsum) {
    const int64_t b = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (b >= n_blocks) return; /* b is the same for the whole warp */
    const int64_t nb = cols / 32, k = (b % nb) * 32 + lane;
    float v = x[b * 32 + lane];
    if (in_scale) v *= in_scale[k];
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(kFull, amax, off));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int q = __float2int_rn(v * id); /* round half to even, like the CPU's magic-number add */
    q = q > 127 ? 127 : q < -127 ? -127 : q;
    int s = q;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(kFull, s, off);
    xq[b * 32 + lane] = (int8_t)q;
    if (lane == 0) {
        xd[b] = d;
        xsum[b] = s;
    }
}

template <class F, int MT>
llmlab_status launch(const llmlab_cuda_qctx *c, const GemvArgs &a, llmlab_err *err) {
    const int64_t n_mt = (a.M + MT - 1) / MT;
    const int64_t blocks = (a.rows + kRows - 1) / kRows * n_mt;
    if (blocks > 0x7fffffff)
        return llmlab_cuq_errf(err, LLMLAB_EINVAL, "cuda gemv: %lld blocks exceed the grid limit (rows %lld, M %d)",
                               (long long)blocks, (long long)a.rows, a.M);
    gemv_kernel<F, MT><<<(unsigned)blocks, kThreads, 0, c->stream>>>(a);
    CUQ_LAUNCHED("gemv kernel launch");
    return LLMLAB_OK;
}

/* M tile: the smallest of 1, 2, 4, 8 holding M, at most the format's kMaxMT
 * (larger M: several tiles, each block re-reading its 4 weight rows from L2). */
template <class F>
llmlab_status launch_mt(const llmlab_cuda_qctx *c, const GemvArgs &a, llmlab_err *err) {
    if (a.M == 1) return launch<F, 1>(c, a, err);
    if (a.M == 2) return launch<F, 2>(c, a, err);
    if (a.M <= 4 || F::kMaxMT == 4) return launch<F, 4>(c, a, err);
    return launch<F, (F::kMaxMT > 4 ? 8 : 4)>(c, a, err);
}

} /* namespace */

llmlab_status llmlab_cuq_quantize_act(llmlab_cuda_qctx *c, const float *x, const float *in_scale, int M,
                                     int64_t cols, llmlab_err *err) {
    const size_t n = (size_t)M * (size_t)cols;
    llmlab_status st;
    if ((st = llmlab_cuq_reserve((void **)&c->xq, &c->xq_cap, n, 1, "cudaMalloc of int8 activations", err))) return st;
    if ((st = llmlab_cuq_reserve((void **)&c->xd, &c->xd_cap, n / 32, sizeof(float),
                                 "cudaMalloc of activation scales", err)))
        return st;
    if ((st = llmlab_cuq_reserve((void **)&c->xsum, &c->xsum_cap, n / 32, sizeof(int),
                                 "cudaMalloc of activation sums", err)))
        return st;
    const int64_t n_blocks = (int64_t)(n / 32);
    const int warps = 8;
    quantize_act_kernel<<<(unsigned)((n_blocks + warps - 1) / warps), 32 * warps, 0, c->stream>>>(
        x, in_scale, cols, n_blocks, c->xq, c->xd, c->xsum);
    CUQ_LAUNCHED("activation quantization kernel launch");
    return LLMLAB_OK;
}

llmlab_status llmlab_cuq_gemv(llmlab_cuda_qctx *c, const llmlab_cuda_wmat *w, float *y, const float *x, int M,
                              llmlab_err *err) {
    GemvArgs a;
    a.data = w->data;
    a.pitch = w->pitch;
    a.rows = w->rows;
    a.cols = w->cols;
    a.group = w->group;
    a.row_scale = w->row_scale;
    a.per_row = w->per_row;
    a.in_scale = w->in_scale;
    a.x = x;
    a.xq = NULL;
    a.xd = NULL;
    a.xsum = NULL;
    a.y = y;
    a.M = M;
    if (w->format == LLMLAB_QF_Q8_0 || w->format == LLMLAB_QF_Q4_0) {
        llmlab_status st = llmlab_cuq_quantize_act(c, x, w->in_scale, M, w->cols, err);
        if (st) return st;
        a.xq = c->xq;
        a.xd = c->xd;
        a.xsum = c->xsum;
    }
    switch (w->format) {
    case LLMLAB_CUDA_DENSE_BF16: return launch_mt<FmtBF16>(c, a, err);
    case LLMLAB_CUDA_DENSE_F16: return launch_mt<FmtF16>(c, a, err);
    case LLMLAB_CUDA_DENSE_F32: return launch_mt<FmtF32>(c, a, err);
    case LLMLAB_QF_I8_ROW: return launch_mt<FmtI8>(c, a, err);
    case LLMLAB_QF_FP8: return launch_mt<FmtFP8>(c, a, err);
    case LLMLAB_QF_I4_SYM: return launch_mt<FmtI4<false> >(c, a, err);
    case LLMLAB_QF_I4_ASYM: return launch_mt<FmtI4<true> >(c, a, err);
    case LLMLAB_QF_Q8_0: return launch_mt<FmtQ8_0>(c, a, err);
    case LLMLAB_QF_Q4_0: return launch_mt<FmtQ4_0>(c, a, err);
    default: break;
    }
    return llmlab_cuq_errf(err, LLMLAB_EUNSUPPORTED, "cuda gemv: format %d has no kernel", w->format);
}
