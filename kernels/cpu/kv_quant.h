/* kv_quant.h - encoding and decoding the KV cache's storage formats (plugin.h
 * llmlab_kv_format), one head at a time.
 *
 * A "row" is one head's K or V vector of one token: head_dim values.  Per-token
 * formats store a row as one record of `row_bytes`:
 *   F32        [head_dim] f32
 *   F16, BF16  [head_dim] u16 (round to nearest even; f16 saturates at +-65504
 *              instead of overflowing to inf, so attention never sees inf/NaN)
 *   INT8/INT4  codes, then one f16 scale per `group` channels, then (asymmetric)
 *              one f16 minimum per group:
 *                [code bytes][G x f16 scale][G x f16 min]   G = head_dim / group
 *              INT8 codes: int8 (symmetric, -127..127) or uint8 (asymmetric,
 *              0..255); INT4 codes: two per byte, element 2i in the low nibble,
 *              symmetric stored +8 (1..15), asymmetric 0..15.
 * Keys per channel (KIVI): a block's rows of one head share, per channel, an f16
 * scale (and min); the rows keep only their codes, the parameters follow them
 * ([head_dim] scales, [head_dim] mins).
 *
 * Scales and minima are chosen so the codes never clip: the symmetric scale is
 * absmax / qmax rounded UP to the next f16, the minimum is rounded DOWN to an
 * f16 and the asymmetric scale (max - min) / qmax rounded up.  So every value
 * decodes within half a scale step: |x - decode(encode(x))| <= s / 2 (plus one
 * f32 rounding of min + code * s), for |x| < 65504.
 *
 * Decoding is x = code * s (symmetric) or x = min + code * s (asymmetric), a
 * multiply then an add in f32 (no FMA: the build has -ffp-contract=off and the
 * SIMD path does the same two operations), so the fast decoder equals the
 * reference bit for bit and attention over a quantized cache equals f32
 * attention over the decoded values exactly. */
#ifndef LLMLAB_KERNELS_CPU_KV_QUANT_H
#define LLMLAB_KERNELS_CPU_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/plugin.h"

/* How one row is stored. */
typedef struct {
    int dtype;     /* llmlab_kv_dtype */
    int head_dim;  /* values per row (even) */
    int group;     /* INT8/INT4 per-token rows: channels per scale (divides head_dim) */
    int asym;      /* INT8/INT4: scale and min (else symmetric scale only) */
} llmlab_kvq_row;

/* Bits of one code (32, 16, 8, 4). */
int llmlab_kvq_bits(int dtype);
/* Bytes of a row's codes: head_dim * bits / 8. */
size_t llmlab_kvq_code_bytes(const llmlab_kvq_row *f);
/* Bytes of a per-token record: codes plus (integer formats) its scales and mins. */
size_t llmlab_kvq_row_bytes(const llmlab_kvq_row *f);
/* Bytes of the per-channel parameters of one head of one block: [head_dim] f16
 * scales (+ [head_dim] f16 mins when asym). */
size_t llmlab_kvq_channel_bytes(const llmlab_kvq_row *f);

/* One row x[head_dim] into a record rec[row_bytes]. */
void llmlab_kvq_encode_row(const llmlab_kvq_row *f, const float *x, uint8_t *rec);
/* A record back to x[head_dim]: fast path (F16C for f16 where the CPU has it)
 * and the scalar reference it must equal bit for bit. */
void llmlab_kvq_decode_row(const llmlab_kvq_row *f, const uint8_t *rec, float *x);
void llmlab_kvq_decode_row_ref(const llmlab_kvq_row *f, const uint8_t *rec, float *x);

/* Keys per channel (INT8/INT4): n rows x[n][x_stride] (head_dim used) into codes
 * (row r at codes + r * code_stride, code bytes each) and params.  Only rows
 * with use[r] != 0 (NULL: all) set the per-channel ranges; every row gets codes
 * (clamped when outside the range).  No row in use: scales and mins 0. */
void llmlab_kvq_encode_channels(const llmlab_kvq_row *f, int n, const float *x, size_t x_stride, const uint8_t *use,
                                uint8_t *codes, size_t code_stride, uint8_t *params);
/* One row of such a block back to x[head_dim] (fast, and the reference). */
void llmlab_kvq_decode_channel_row(const llmlab_kvq_row *f, const uint8_t *codes, const uint8_t *params, float *x);
void llmlab_kvq_decode_channel_row_ref(const llmlab_kvq_row *f, const uint8_t *codes, const uint8_t *params,
                                       float *x);

/* The smallest f16 >= x (x >= 0) and the largest f16 <= x, as f16 bits, both
 * saturating at +-65504: the directed roundings of scales and minima. */
uint16_t llmlab_kvq_f16_up(float x);
uint16_t llmlab_kvq_f16_down(float x);

#endif
