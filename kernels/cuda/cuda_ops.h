/* cuda_ops.h - the per-row kernels of the CUDA forward (C API): embedding
 * lookup, RMSNorm, bias + RoPE, SwiGLU, residual adds, storing K/V rows into the
 * paged cache, on-device argmax and sampling, and an ordered list of copies.
 *
 * Every function enqueues on `stream` (a cudaStream_t passed as void * so C
 * callers need no CUDA header) and returns at once; a bad launch comes back as
 * an llmlab_err, a failure inside a kernel shows at the next synchronisation.
 * Pointers are device pointers unless said otherwise.  Activations are f32.
 *
 * Each kernel computes a row the way its CPU reference in kernels/cpu/ops.c
 * does (same formula, f32), with a reduction order fixed by the row length
 * alone, so a row's result never depends on the other rows of the batch (batch
 * invariance, deterministic mode).  Built only with CUDA (LLMLAB_HAVE_CUDA). */
#ifndef LLMLAB_CUDA_OPS_H
#define LLMLAB_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x[n][dim] = f32(table[tokens[i]][0..dim)); table dtype LLMLAB_DTYPE_F32/F16/BF16
 * (llmlab.h), rows of dim elements. */
llmlab_status llmlab_cuda_embed(void *stream, float *x, const void *table, int dtype, const int32_t *tokens, int n,
                                int dim, llmlab_err *err);

/* out[r][dim] = rmsnorm(x[rows ? rows[r] : r][dim]) * w[dim] for r < n_rows,
 * as llmlab_cpu_rmsnorm (f32 sum of squares, 1/sqrtf(ss/dim + eps)). */
llmlab_status llmlab_cuda_rmsnorm(void *stream, float *out, const float *x, const float *w, const int32_t *rows,
                                  int n_rows, int dim, float eps, llmlab_err *err);

/* x[i] += y[i], i < n. */
llmlab_status llmlab_cuda_add(void *stream, float *x, const float *y, size_t n, llmlab_err *err);

/* Per token i < n: q += bq, k += bk, v += bv (biases may be NULL), then, when
 * rotate, RoPE (HF rotate-half, angle = (float)pos[i] * inv_freq[j], cosf/sinf)
 * on the n_heads query heads and n_kv_heads key heads.  q: [n][n_heads*head_dim],
 * k, v: [n][n_kv_heads*head_dim], pos: [n], inv_freq: [head_dim/2]. */
llmlab_status llmlab_cuda_bias_rope(void *stream, float *q, float *k, float *v, const float *bq, const float *bk,
                                    const float *bv, const int32_t *pos, const float *inv_freq, int n, int n_heads,
                                    int n_kv_heads, int head_dim, int rotate, llmlab_err *err);

/* gate[i] = silu(gate[i]) * up[i] (g / (1 + expf(-g)) * u), i < n. */
llmlab_status llmlab_cuda_swiglu(void *stream, float *gate, const float *up, size_t n, llmlab_err *err);

/* out[r] = argmax of logits[r][vocab] for r < rows: the lowest index wins ties,
 * NaN never wins (llmlab_argmax). */
llmlab_status llmlab_cuda_argmax(void *stream, int32_t *out, const float *logits, int rows, int vocab,
                                 llmlab_err *err);

/* Sampling parameters of one row (core/sampler.h semantics: temperature, then
 * top-k, top-p, min-p, renormalise; temperature 0 = argmax). */
typedef struct {
    float temperature;
    int top_k;   /* 0 = off */
    float top_p; /* 1 = off */
    float min_p; /* 0 = off */
} llmlab_cuda_sampling;

/* out[r] = the token row r draws: the filtered distribution of logits[r] (as
 * llmlab_sampling_probs builds it) inverted at u[r] in [0, 1) (the CDF walked
 * in index order, as llmlab_sample_from).  s: [rows] device array, u: [rows]
 * uniforms drawn by the host's seeded generator, so runs replay.  work: device
 * scratch of llmlab_cuda_sample_work_bytes(rows, vocab) bytes. */
size_t llmlab_cuda_sample_work_bytes(int rows, int vocab);
llmlab_status llmlab_cuda_sample(void *stream, int32_t *out, const float *logits, const llmlab_cuda_sampling *s,
                                 const float *u, int rows, int vocab, void *work, llmlab_err *err);

/* An ordered list of byte copies inside one allocation: for i = 0, 1, ..., n-1
 * in that order, copy ops[i].bytes bytes from base + ops[i].src to base +
 * ops[i].dst (one block, a barrier between copies, so a copy may read what an
 * earlier one wrote, as the host's memcpy sequence would).  ops: device [n]. */
typedef struct {
    int64_t dst, src, bytes;
} llmlab_cuda_copy_op;
llmlab_status llmlab_cuda_copy_list(void *stream, uint8_t *base, const llmlab_cuda_copy_op *ops, int n,
                                    llmlab_err *err);

#ifdef __cplusplus
}
#endif
#endif
