/* matmul.c - y[m][n] = sum_k x[m][k] * W[n][k] on the CPU, f32/f16/bf16 weights,
 * f32 accumulation, batch and thread invariant (DESIGN.md, "Numerics").
 *
 * The invariance contract, which every kernel below follows exactly:
 *   for each output (m, n) there is ONE 8-lane f32 accumulator `acc`, zeroed, and
 *     for k0 = 0, 8, 16, ... while k0 + 8 <= K:   acc = fma(x[m][k0..k0+8], W[n][k0..k0+8], acc)
 *     if K % 8 != 0:                              acc = fma(x tail, W tail, acc)  (zero-padded)
 *     y[m][n] = hsum8(acc)                        (one fixed reduction tree)
 * Kernels differ only in how many (m, n) pairs they advance together (register
 * blocking: MR rows of x times NR rows of W, each pair with its own accumulator),
 * and in whether a long K is cut into blocks with the accumulators parked in
 * memory between blocks (a store and reload of a vector is exact).  Neither
 * changes the arithmetic seen by any one accumulator, so y[m][n] is bit-identical
 * for M = 1 or 512, for any other rows in the batch, and for any thread count
 * (threads split N into tasks, never K).
 *
 * The portable scalar path (no AVX2, or llmlab_cpu_force_scalar) is also
 * invariant, with its own order: plain k-order accumulation per (m, n).
 */
#include "kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/dtype.h"
#include "quant.h"
#include "simd.h"

/* ---- dispatch ---------------------------------------------------------------- */

/* -1: not checked yet, 0: scalar, 1: avx2+fma+f16c.  Atomic because the first
 * calls may come from several threads at once; they all store the same value. */
static _Atomic int g_simd_level = -1;
static _Atomic int g_force_scalar = 0;

static int detect_avx2(void) {
#if LLMLAB_X86
    __builtin_cpu_init();
    /* Why all three: FMA for the dot products, F16C for f16 weights, AVX2 for
     * the integer widening of bf16.  libgcc also checks that the OS saves ymm. */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

int llmlab_cpu_use_avx2(void) {
    if (atomic_load_explicit(&g_force_scalar, memory_order_relaxed)) return 0;
    int level = atomic_load_explicit(&g_simd_level, memory_order_relaxed);
    if (level < 0) {
        level = detect_avx2();
        atomic_store_explicit(&g_simd_level, level, memory_order_relaxed);
    }
    return level;
}

void llmlab_cpu_force_scalar(int force) { atomic_store(&g_force_scalar, force != 0); }

const char *llmlab_cpu_simd_name(void) { return llmlab_cpu_use_avx2() ? "avx2+fma+f16c" : "scalar"; }

/* ---- shared task layout ---------------------------------------------------------- */

/* Weight rows per task.  Why 24: a multiple of every register-block width used
 * below (3, 4, 8), so only the last task has an N tail, and small enough that
 * the pool's dynamic claiming balances the cores.  Prefill (M >= 4) reuses a
 * task's rows for every 4-row block of x, so they must stay in L2 meanwhile:
 * when 24 rows exceed TASK_L2_BYTES (24 x 5632 f32 = 540 KiB, more than a Zen 3
 * L2 of 512 KiB) a prefill task takes 12 rows (still a multiple of 3 and 4). */
#define ROWS_PER_TASK 24
#define TASK_L2_BYTES (256u << 10)

/* Why K blocks of 512 when M >= 4: a 4-row block of x is reused by every
 * weight-row tile of the task; 4 x 512 f32 (8 KiB) stays in L1 across the
 * tiles, where whole rows (4 x 5632 f32 = 90 KiB) would be re-read from L2 for
 * each tile.  On the Zen 5 dev machine (48 KiB L1, fast L2) this measured
 * neutral (+-2% at M=128); it is meant for smaller caches (Zen 3: 32 KiB L1). */
#define K_BLOCK 512

/* Why 8 weight rows per decode tile: 8 independent FMA chains cover the FMA
 * latency (4 cycles x 2 pipes), and 8 concurrent row streams keep many cache
 * misses in flight (4 and 6 rows were not measurably faster). */
#define DEC_NR 8

typedef struct {
    float *y;
    const float *x;
    const char *W;
    llmlab_dtype wtype;
    int M, N, K;
    size_t w_row_bytes;
    int k_block;       /* multiple of 8 */
    int rows_per_task; /* ROWS_PER_TASK or half of it */
} matmul_ctx;

static void matmul_run(matmul_ctx *c, llmlab_task_fn fn, llmlab_threadpool *tp) {
    int n_tasks = (c->N + c->rows_per_task - 1) / c->rows_per_task;
    llmlab_threadpool_run(tp, fn, c, n_tasks);
}

/* Reads element i of a weight row as f32.  memcpy: W may come straight from an
 * mmapped file, so no alignment beyond one byte is assumed in the scalar code. */
static inline float w_elem(const char *w, size_t i, llmlab_dtype t) {
    if (t == LLMLAB_DTYPE_F32) {
        float f;
        memcpy(&f, w + i * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, w + i * 2, 2);
    return t == LLMLAB_DTYPE_F16 ? llmlab_f16_to_f32(h) : llmlab_bf16_to_f32(h);
}

/* ---- scalar path ------------------------------------------------------------------ */

/* One dot product in k order.  Separate multiply and add (the build uses
 * -ffp-contract=off), so no compiler can change its rounding. */
static float dot_scalar(const float *x, const char *w, llmlab_dtype t, int K) {
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        float p = x[k] * w_elem(w, (size_t)k, t);
        acc = acc + p;
    }
    return acc;
}

static void matmul_task_scalar(void *ctx, int task, int n_tasks) {
    matmul_ctx *c = ctx;
    int n0 = task * c->rows_per_task;
    int n1 = n0 + c->rows_per_task < c->N ? n0 + c->rows_per_task : c->N;
    for (int m = 0; m < c->M; m++)
        for (int n = n0; n < n1; n++)
            c->y[(size_t)m * c->N + n] =
                dot_scalar(c->x + (size_t)m * c->K, c->W + (size_t)n * c->w_row_bytes, c->wtype, c->K);
}

/* ---- AVX2 path ---------------------------------------------------------------------- */
#if LLMLAB_X86

/* 8 weights starting at element i of row w, widened to f32.  Unaligned loads:
 * safetensors data is only guaranteed aligned to the element size. */
LLMLAB_SIMD_INLINE __m256 load_w8(const char *w, size_t i, llmlab_dtype t) {
    if (t == LLMLAB_DTYPE_F32) return _mm256_loadu_ps((const float *)(const void *)(w + i * 4));
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(w + i * 2));
    if (t == LLMLAB_DTYPE_F16) return _mm256_cvtph_ps(h); /* F16C: exact widening */
    /* bf16 is the top half of an f32: zero-extend to 32 bits and shift up (exact). */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The K tail (n < 8 elements) zero-padded to 8 lanes: the padding lanes add
 * 0 * 0 to their accumulator lanes, the same in every kernel. */
LLMLAB_SIMD_INLINE __m256 load_w_tail(const char *w, size_t i, int n, llmlab_dtype t) {
    float buf[8] = {0}; /* 32 bytes: room for 8 elements of any type */
    memcpy(buf, w + i * llmlab_dtype_size(t), (size_t)n * llmlab_dtype_size(t));
    return load_w8((const char *)buf, 0, t);
}

LLMLAB_SIMD_INLINE __m256 load_x_tail(const float *x, int n) {
    float buf[8] = {0};
    memcpy(buf, x, (size_t)n * 4);
    return _mm256_loadu_ps(buf);
}

/* The one fixed reduction tree of the contract: (lo128 + hi128), then pairs. */
LLMLAB_SIMD_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Decode only (MR == 1): once per 64-byte line of each weight row, prefetch the
 * line DECODE_PREFETCH bytes ahead.  Why: with one row of x, f16/bf16 weights
 * give 2x fewer bytes per instruction than f32, so the out-of-order window holds
 * too few cache misses to saturate DRAM.  Measured on the Zen 5 dev machine, A/B
 * interleaved call by call (2 threads, 2048x5632 and 32000x2048): f16/bf16 +5 to
 * +45%, f32 0 to +8%; 512 and 2048 bytes were worse than 1024.  Prefetches past
 * the end of W are harmless (they never fault). */
#define DECODE_PREFETCH 1024
LLMLAB_SIMD_INLINE void prefetch_rows(const char *w, size_t ldw, int k, llmlab_dtype t, const int NR) {
    for (int j = 0; j < NR; j++)
        _mm_prefetch(w + (size_t)j * ldw + (size_t)k * llmlab_dtype_size(t) + DECODE_PREFETCH,
                     _MM_HINT_T0);
}

/* The microkernel: advances MR x NR accumulators over k in [k0, k1) (multiples of
 * 8), then, if ktail > 0, over the zero-padded tail starting at k1.  MR, NR, t
 * are compile-time constants at every call site (always_inline), so the loops
 * unroll and acc[][] lives in registers.
 * Why all NR weight vectors are loaded before the MR x rows: each widened weight
 * vector (a load plus a convert for f16/bf16) is reused by MR FMAs, and the x
 * loads fold into the FMAs as memory operands, so MR*NR + NR <= 15 registers. */
LLMLAB_SIMD_INLINE void tile_run(__m256 acc[4][8], const float *x, size_t ldx, const char *w,
                                 size_t ldw, llmlab_dtype t, int k0, int k1, int ktail,
                                 const int MR, const int NR) {
    for (int k = k0; k < k1; k += 8) {
        __m256 wv[8];
        if (MR == 1 && (k & (int)(64 / llmlab_dtype_size(t) - 1)) == 0) prefetch_rows(w, ldw, k, t, NR);
        for (int j = 0; j < NR; j++) wv[j] = load_w8(w + (size_t)j * ldw, (size_t)k, t);
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)i * ldx + k);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (ktail > 0) {
        __m256 wv[8];
        for (int j = 0; j < NR; j++) wv[j] = load_w_tail(w + (size_t)j * ldw, (size_t)k1, ktail, t);
        for (int i = 0; i < MR; i++) {
            __m256 xv = load_x_tail(x + (size_t)i * ldx + k1, ktail);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
}

/* Starts a tile's accumulators: zero for the first K block, else reloaded from
 * where the previous block parked them (exact: a vector store/load round trip). */
LLMLAB_SIMD_INLINE void tile_begin(__m256 acc[4][8], const __m256 *park, const int MR,
                                   const int NR) {
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = park ? park[i * NR + j] : _mm256_setzero_ps();
}

/* Ends a tile: reduce into y after the last K block, else park for the next. */
LLMLAB_SIMD_INLINE void tile_end(__m256 acc[4][8], __m256 *park, float *y, size_t ldy,
                                 const int MR, const int NR) {
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (park) park[i * NR + j] = acc[i][j];
            else y[(size_t)i * ldy + j] = hsum8(acc[i][j]);
        }
}

/* One MR x NR tile over the K block [kb, ke) of rows x (MR of them) and weight
 * row w (NR of them).  first/last: whether this is the first/last K block;
 * park holds the accumulators between blocks (unused with a single block). */
LLMLAB_SIMD_INLINE void tile(const matmul_ctx *c, const float *x, const char *w, float *y,
                             __m256 *park, int kb, int ke, int last, llmlab_dtype t,
                             const int MR, const int NR) {
    __m256 acc[4][8];
    tile_begin(acc, kb > 0 ? park : NULL, MR, NR);
    tile_run(acc, x, (size_t)c->K, w, c->w_row_bytes, t, kb, ke, last ? (c->K & 7) : 0, MR, NR);
    tile_end(acc, last ? NULL : park, y, (size_t)c->N, MR, NR);
}

/* Rows [m0, m0+MR) of x against weight rows [n0, n1): NR-wide tiles, then
 * 1-wide tiles for the N tail, for each K block of c->k_block in order. */
LLMLAB_SIMD_INLINE void strip(const matmul_ctx *c, int m0, int n0, int n1, const int MR,
                              const int NR, llmlab_dtype t) {
    const float *x = c->x + (size_t)m0 * c->K;
    float *y = c->y + (size_t)m0 * c->N;
    size_t ldw = c->w_row_bytes;
    int K8 = c->K & ~7;
    __m256 park[4 * ROWS_PER_TASK]; /* MR x (n1 - n0) accumulators between K blocks */
    int kb = 0;
    do {
        int ke = kb + c->k_block < K8 ? kb + c->k_block : K8;
        int last = ke == K8;
        int n = n0;
        for (; n + NR <= n1; n += NR)
            tile(c, x, c->W + (size_t)n * ldw, y + n, park + (size_t)(n - n0) * MR, kb, ke, last, t,
                 MR, NR);
        for (; n < n1; n++)
            tile(c, x, c->W + (size_t)n * ldw, y + n, park + (size_t)(n - n0) * MR, kb, ke, last, t,
                 MR, 1);
        kb = ke;
    } while (kb < K8);
}

/* One task: weight rows [n0, n1) against every row of x, 4 rows of x at a time
 * so each weight vector loaded is used 4 times (prefill), then the M % 4 rest
 * with narrower blocks.  Register blocks (MR x NR): 4x3 and 3x4 use 12
 * accumulators; 2x4 and 1x8 keep 8 independent FMA chains in flight, enough to
 * hide the FMA latency (4 cycles x 2 pipes) in decode. */
LLMLAB_SIMD_INLINE void task_avx2(const matmul_ctx *c, int task, llmlab_dtype t) {
    int n0 = task * c->rows_per_task;
    int n1 = n0 + c->rows_per_task < c->N ? n0 + c->rows_per_task : c->N;
    int m = 0;
    for (; m + 4 <= c->M; m += 4) strip(c, m, n0, n1, 4, 3, t);
    switch (c->M - m) {
    case 3: strip(c, m, n0, n1, 3, 4, t); break;
    case 2: strip(c, m, n0, n1, 2, 4, t); break;
    case 1: strip(c, m, n0, n1, 1, DEC_NR, t); break;
    default: break;
    }
}

/* One instantiation per weight type, so the dtype branch in load_w8 folds away. */
LLMLAB_SIMD_FN static void matmul_task_f32(void *ctx, int task, int n_tasks) {
    task_avx2(ctx, task, LLMLAB_DTYPE_F32);
}
LLMLAB_SIMD_FN static void matmul_task_f16(void *ctx, int task, int n_tasks) {
    task_avx2(ctx, task, LLMLAB_DTYPE_F16);
}
LLMLAB_SIMD_FN static void matmul_task_bf16(void *ctx, int task, int n_tasks) {
    task_avx2(ctx, task, LLMLAB_DTYPE_BF16);
}

#endif /* LLMLAB_X86 */

void llmlab_cpu_matmul(float *y, const float *x, const void *W, llmlab_dtype wtype, int M, int N,
                       int K, llmlab_threadpool *tp) {
    if (M <= 0 || N <= 0) return;
    if (llmlab_dtype_block(wtype) > 1) { /* GGUF block weights: the packed-format kernels */
        llmlab_qmat q;
        if (llmlab_qmat_wrap(&q, wtype, W, N, K, NULL) != LLMLAB_OK) {
            /* K not whole blocks: the loader refuses such tensors; poison the
             * output rather than read past a row. */
            for (size_t i = 0; i < (size_t)M * (size_t)N; i++) y[i] = NAN;
            return;
        }
        llmlab_qmat_matmul(&q, y, x, M, tp);
        return;
    }
    matmul_ctx c = {.y = y, .x = x, .W = W, .wtype = wtype, .M = M, .N = N, .K = K,
                    .w_row_bytes = (size_t)K * llmlab_dtype_size(wtype)};
    /* Decode (M < 4) streams each weight row once, so one long K pass keeps the
     * hardware prefetcher on long contiguous streams; see K_BLOCK for prefill. */
    c.k_block = M >= 4 ? K_BLOCK : (K > 0 ? K : 8);
    c.rows_per_task = M >= 4 && ROWS_PER_TASK * c.w_row_bytes > TASK_L2_BYTES ? ROWS_PER_TASK / 2
                                                                               : ROWS_PER_TASK;
    llmlab_task_fn fn = matmul_task_scalar;
#if LLMLAB_X86
    if (llmlab_cpu_use_avx2()) {
        fn = wtype == LLMLAB_DTYPE_F32   ? matmul_task_f32
             : wtype == LLMLAB_DTYPE_F16 ? matmul_task_f16
                                         : matmul_task_bf16;
    }
#endif
    matmul_run(&c, fn, tp);
}

/* ---- embedding row gather -------------------------------------------------------------- */

#if LLMLAB_X86
LLMLAB_SIMD_FN static void row_to_f32_avx2(float *out, const char *w, llmlab_dtype t, int K) {
    int k = 0;
    for (; k + 8 <= K; k += 8) _mm256_storeu_ps(out + k, load_w8(w, (size_t)k, t));
    for (; k < K; k++) out[k] = w_elem(w, (size_t)k, t);
}
#endif

void llmlab_cpu_row_to_f32(float *out, const void *W, llmlab_dtype wtype, int64_t row, int K) {
    if (llmlab_dtype_block(wtype) > 1) { /* a quantized token_embd row */
        llmlab_qmat q;
        if (llmlab_qmat_wrap(&q, wtype, W, row + 1, K, NULL) != LLMLAB_OK) {
            for (int k = 0; k < K; k++) out[k] = NAN;
            return;
        }
        llmlab_qmat_dequant_rows(&q, row, 1, out);
        return;
    }
    const char *w = (const char *)W + (size_t)row * (size_t)K * llmlab_dtype_size(wtype);
    if (wtype == LLMLAB_DTYPE_F32) {
        memcpy(out, w, (size_t)K * 4);
        return;
    }
#if LLMLAB_X86
    if (llmlab_cpu_use_avx2()) {
        row_to_f32_avx2(out, w, wtype, K);
        return;
    }
#endif
    for (int k = 0; k < K; k++) out[k] = w_elem(w, (size_t)k, wtype);
}
