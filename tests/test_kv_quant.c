/* test_kv_quant.c - KV-cache storage formats (kv_cache.h, kernels/cpu/kv_quant.h,
 * plugins kv_f16 / kv_int8 / kv_int4):
 *   every format's row codec decodes within the bound of its math (f16/bf16:
 *   half an ulp; int8/int4: half a scale step, scales rounded up so nothing
 *   clips), and the fast decoders equal the scalar references bit for bit;
 *   rows written into a cache read back exactly from hot (f32) blocks and within
 *   the bound from packed ones, for keys per channel with the block's rows as
 *   the group; hot blocks are exactly those the residual window rule says;
 *   resident bytes follow the formula of each layout;
 *   attention over a quantized cache equals f32 attention over the decoded K/V
 *   bit for bit (and the double reference within rounding);
 *   fork / copy-on-write, keep and truncate work on packed and hot blocks;
 *   compaction after per-lane eviction leaves attention unchanged bit for bit for
 *   per-token formats, and for KIVI keys re-quantizes within half the new step;
 *   through the engine: kv_int8 / kv_int4 with window, sinks (StreamingLLM) and
 *   h2o evict quantized slots, run deterministically and hold fewer bytes than
 *   f32; kv_int8's teacher-forced top-1 agreement with the f32 model; prompt
 *   lookup with kv_int8 (also under h2o) reproduces autoregressive decoding with
 *   kv_int8 exactly; wrong choices are refused with messages that say why; the
 *   Lua option and the HDF5 record. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/engine.h"
#include "core/fidelity.h"
#include "core/kv_cache.h"
#include "core/params.h"
#include "core/results.h"
#include "core/rng.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kv_quant.h"
#include "kernels/cpu/ops.h"
#include "util/decode_check.h"
#include "util/fixture_model.h"
#include "util/proc.h"
#include "util/tmpdir.h"

enum { L = 2, NKV = 2, HD = 32, RF = NKV * HD, BS = 8, MAXS = 96 };

typedef struct {
    const char *name;
    llmlab_kv_format f;
} fmt_case;

#define FMT(...) {.size = sizeof(llmlab_kv_format), __VA_ARGS__}
static const fmt_case g_fmts[] = {
    {"f16", FMT(.dtype = LLMLAB_KV_F16)},
    {"bf16", FMT(.dtype = LLMLAB_KV_BF16)},
    {"int8", FMT(.dtype = LLMLAB_KV_INT8)},
    {"int8-g8", FMT(.dtype = LLMLAB_KV_INT8, .group = 8)},
    {"int8-asym", FMT(.dtype = LLMLAB_KV_INT8, .group = 16, .asymmetric = 1)},
    {"int4-tok", FMT(.dtype = LLMLAB_KV_INT4, .group = 16, .asymmetric = 1)},
    {"int4-sym", FMT(.dtype = LLMLAB_KV_INT4, .group = 8)},
    {"kivi", FMT(.dtype = LLMLAB_KV_INT4, .group = 32, .asymmetric = 1, .key_per_channel = 1)},
    {"kivi-r12", FMT(.dtype = LLMLAB_KV_INT4, .group = 32, .asymmetric = 1, .key_per_channel = 1, .residual = 12)},
    {"int8-r12", FMT(.dtype = LLMLAB_KV_INT8, .residual = 12)},
};
static const int g_nfmts = (int)(sizeof g_fmts / sizeof g_fmts[0]);

static int is_int(const llmlab_kv_format *f) { return f->dtype == LLMLAB_KV_INT8 || f->dtype == LLMLAB_KV_INT4; }
static int staged(const llmlab_kv_format *f) { return f->residual > 0 || f->key_per_channel; }

/* ---- random K/V and the error bound of a format ------------------------------------------- */

/* Values of varied magnitude per row, with outlier channels (KIVI's motivation
 * for per-channel keys) and now and then an exact zero. */
static float rand_val(llmlab_rng *g, float row_scale, int ch) {
    if (llmlab_rng_uniform(g) < 0.02f) return 0.0f;
    float v = (float)llmlab_rng_normal(g) * row_scale;
    return ch % 7 == 3 ? v * 8.0f : v;
}

static void rand_row(llmlab_rng *g, float *x, int n) {
    float scale = expf(2.0f * (float)llmlab_rng_normal(g)) * 0.5f;
    for (int i = 0; i < n; i++) x[i] = rand_val(g, scale, i % HD);
}

/* Largest |x - decode(encode(x))| for value x of a group with range [lo, hi]
 * (absmax for symmetric formats): kv_quant.h's bound plus f32 rounding. */
static double int_bound(int dtype, int asym, double lo, double hi, double x) {
    int bits = dtype == LLMLAB_KV_INT8 ? 8 : 4;
    double step;
    if (asym) {
        double m = lo - ldexp(fabs(lo), -10) - ldexp(1.0, -24); /* the min rounded down to f16 */
        step = (hi - m) / ((1 << bits) - 1);
    } else {
        double amax = fmax(fabs(lo), fabs(hi));
        step = amax / ((1 << (bits - 1)) - 1);
    }
    return 0.5 * step * (1.0 + ldexp(1.0, -9)) + ldexp(1.0, -25) + ldexp(fabs(x), -22);
}

static double float_bound(int dtype, double x) {
    return dtype == LLMLAB_KV_F16 ? ldexp(fabs(x), -11) + ldexp(1.0, -25) : ldexp(fabs(x), -8) + 1e-38;
}

/* Bound for x[i] of a row under per-token format f (group stats from the row). */
static double row_bound(const llmlab_kv_format *f, const float *row, int i) {
    if (!is_int(f)) return float_bound(f->dtype, row[i]);
    int g = f->group ? f->group : HD, g0 = i / g * g;
    double lo = INFINITY, hi = -INFINITY;
    for (int c = g0; c < g0 + g; c++) lo = fmin(lo, row[c]), hi = fmax(hi, row[c]);
    return int_bound(f->dtype, f->asymmetric, lo, hi, row[i]);
}

/* ---- the codec ------------------------------------------------------------------------------ */

static llmlab_kvq_row row_of(const llmlab_kv_format *f) {
    return (llmlab_kvq_row){f->dtype, HD, f->group ? f->group : HD, f->asymmetric};
}

Test(kv_quant, row_codec_round_trips_within_its_bound_and_fast_equals_reference) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("row_codec"), 1);
    for (int c = 0; c < g_nfmts; c++) {
        const llmlab_kv_format *f = &g_fmts[c].f;
        llmlab_kvq_row r = row_of(f);
        uint8_t rec[4 * HD + 64];
        float x[HD], y[HD], z[HD];
        for (int t = 0; t < 200; t++) {
            rand_row(&g, x, HD);
            llmlab_kvq_encode_row(&r, x, rec);
            llmlab_kvq_decode_row(&r, rec, y);
            llmlab_kvq_decode_row_ref(&r, rec, z);
            cr_assert(!memcmp(y, z, sizeof y), "%s: fast decoder differs from the reference", g_fmts[c].name);
            llmlab_cpu_force_scalar(1); /* the portable path too */
            llmlab_kvq_decode_row(&r, rec, y);
            llmlab_cpu_force_scalar(0);
            cr_assert(!memcmp(y, z, sizeof y), "%s: portable decoder differs from the reference", g_fmts[c].name);
            for (int i = 0; i < HD; i++)
                cr_assert(fabs((double)y[i] - x[i]) <= row_bound(f, x, i), "%s: value %d: %.9g decodes to %.9g (bound %g)",
                          g_fmts[c].name, i, x[i], y[i], row_bound(f, x, i));
        }
    }
}

Test(kv_quant, channel_codec_round_trips_over_the_rows_in_use) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("channel_codec"), 2);
    for (int asym = 0; asym < 2; asym++)
        for (int dt = LLMLAB_KV_INT8; dt <= LLMLAB_KV_INT4; dt++) {
            llmlab_kvq_row r = {dt, HD, HD, asym};
            float x[BS][HD], y[HD], z[HD];
            uint8_t codes[BS][HD], params[4 * HD], use[BS];
            for (int t = 0; t < 50; t++) {
                for (int i = 0; i < BS; i++) rand_row(&g, x[i], HD), use[i] = llmlab_rng_uniform(&g) < 0.8f;
                llmlab_kvq_encode_channels(&r, BS, &x[0][0], HD, use, &codes[0][0], HD, params);
                for (int ch = 0; ch < HD; ch++) {
                    double lo = INFINITY, hi = -INFINITY;
                    for (int i = 0; i < BS; i++)
                        if (use[i]) lo = fmin(lo, x[i][ch]), hi = fmax(hi, x[i][ch]);
                    for (int i = 0; i < BS; i++) {
                        if (!use[i]) continue;
                        llmlab_kvq_decode_channel_row(&r, codes[i], params, y);
                        llmlab_kvq_decode_channel_row_ref(&r, codes[i], params, z);
                        cr_assert(!memcmp(y, z, sizeof y), "per-channel fast decoder differs from the reference");
                        llmlab_cpu_force_scalar(1);
                        llmlab_kvq_decode_channel_row(&r, codes[i], params, y);
                        llmlab_cpu_force_scalar(0);
                        cr_assert(!memcmp(y, z, sizeof y), "per-channel portable decoder differs from the reference");
                        double b = int_bound(dt, asym, lo, hi, x[i][ch]);
                        cr_assert(fabs((double)y[ch] - x[i][ch]) <= b, "int%d asym %d: row %d ch %d: %.9g -> %.9g (bound %g)",
                                  dt == LLMLAB_KV_INT8 ? 8 : 4, asym, i, ch, x[i][ch], y[ch], b);
                    }
                }
            }
        }
}

Test(kv_quant, f16_scales_are_rounded_up_and_minima_down) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("f16_dir"), 3);
    for (int t = 0; t < 20000; t++) {
        float x = ldexpf(llmlab_rng_uniform(&g) + 0.5f, (int)(llmlab_rng_next(&g) % 45) - 30); /* < 65504 */
        float up = llmlab_f16_to_f32(llmlab_kvq_f16_up(x));
        cr_assert(up >= x && up <= x * (1.0f + 0x1p-10f) + 0x1p-24f, "f16_up(%.9g) = %.9g", x, up);
        float s = llmlab_rng_uniform(&g) < 0.5f ? -x : x;
        float dn = llmlab_f16_to_f32(llmlab_kvq_f16_down(s));
        cr_assert(dn <= s && dn >= s - fabsf(s) * 0x1p-10f - 0x1p-24f, "f16_down(%.9g) = %.9g", s, dn);
    }
    /* Past the f16 range both saturate (the documented limit: |x| < 65504). */
    cr_assert_eq(llmlab_f16_to_f32(llmlab_kvq_f16_up(1e6f)), 65504.0f);
    cr_assert_eq(llmlab_f16_to_f32(llmlab_kvq_f16_down(-1e6f)), -65504.0f);
    cr_assert_eq(llmlab_kvq_f16_up(0.0f), 0);
}

/* ---- a cache of each format --------------------------------------------------------------- */

static float g_orig[4][MAXS][L][2][RF]; /* what was written: [seq][slot][layer][K/V][head * HD + i] */

static llmlab_kv *kv_new(const llmlab_kv_format *f, int blocks) {
    llmlab_kv_opts o = {.n_layers = L, .n_kv_heads = NKV, .head_dim = HD, .block_size = BS, .n_blocks = blocks,
                        .max_seqs = 4, .fmt = f ? *f : (llmlab_kv_format){0}};
    llmlab_kv *kv = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_create(&kv, &o, &err), LLMLAB_OK, "%s", err.msg);
    return kv;
}

/* Appends n slots to seq with fresh random K/V (remembered in g_orig); commits
 * after each slot when commit_each. */
static void append_rand(llmlab_kv *kv, int seq, int n, llmlab_rng *g, int commit_each) {
    llmlab_err err = {0};
    for (int i = 0; i < n; i++) {
        int32_t pos = llmlab_kv_tokens(kv, seq) + llmlab_kv_len(kv, seq) - llmlab_kv_committed(kv, seq);
        int slot;
        cr_assert_eq(llmlab_kv_append(kv, seq, 1, &pos, &slot, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_lt(slot, MAXS);
        for (int l = 0; l < L; l++) {
            rand_row(g, g_orig[seq][slot][l][0], RF);
            rand_row(g, g_orig[seq][slot][l][1], RF);
            llmlab_kv_write(kv, seq, slot, l, g_orig[seq][slot][l][0], g_orig[seq][slot][l][1]);
        }
        if (commit_each) llmlab_kv_commit(kv, seq);
    }
}

/* Everything a slot decodes to: [layer][K/V][head * HD + i]. */
static void read_slot(const llmlab_kv *kv, int seq, int slot, float out[L][2][RF]) {
    float buf[HD];
    for (int l = 0; l < L; l++)
        for (int w = 0; w < 2; w++)
            for (int h = 0; h < NKV; h++) {
                const float *p = llmlab_kv_head(kv, seq, slot, l, w, h, buf);
                cr_assert_not_null(p);
                memcpy(out[l][w] + h * HD, p, HD * sizeof(float));
            }
}

/* Bound of element i of head h's row, reading slot of seq, given what was written
 * (orig) and, for keys per channel, the valid rows of the slot's block. */
static double read_bound(const llmlab_kv *kv, const llmlab_kv_format *f, int seq, int slot, int l, int w, int h,
                         int i, float orig[][L][2][RF]) {
    const float *row = orig[slot][l][w] + h * HD;
    if (!(w == 0 && f->key_per_channel)) return row_bound(f, row, i);
    int b0 = slot / BS * BS, lane = l * NKV + h;
    double lo = INFINITY, hi = -INFINITY;
    for (int r = b0; r < b0 + BS && r < llmlab_kv_len(kv, seq); r++)
        if (llmlab_kv_lane_valid(kv, seq, r, lane)) {
            double v = orig[r][l][0][h * HD + i];
            lo = fmin(lo, v), hi = fmax(hi, v);
        }
    return int_bound(f->dtype, f->asymmetric, lo, hi, row[i]);
}

/* Slots [0, n) of seq read back: exactly what was written from hot blocks (and
 * f32), within the format's bound from packed ones. */
static void check_reads(const llmlab_kv *kv, const fmt_case *fc, int seq, int n, float orig[][L][2][RF]) {
    for (int slot = 0; slot < n; slot++) {
        float got[L][2][RF];
        read_slot(kv, seq, slot, got);
        int hot = llmlab_kv_slot_hot(kv, seq, slot);
        for (int l = 0; l < L; l++)
            for (int w = 0; w < 2; w++) {
                if (hot) {
                    cr_assert(!memcmp(got[l][w], orig[slot][l][w], sizeof got[l][w]), "%s: hot slot %d reads back exactly",
                              fc->name, slot);
                    continue;
                }
                for (int h = 0; h < NKV; h++)
                    for (int i = 0; i < HD; i++) {
                        double b = read_bound(kv, &fc->f, seq, slot, l, w, h, i, orig);
                        double x = orig[slot][l][w][h * HD + i], y = got[l][w][h * HD + i];
                        cr_assert(fabs(y - x) <= b, "%s: slot %d layer %d %c head %d [%d]: wrote %.9g, read %.9g (bound %g)",
                                  fc->name, slot, l, "KV"[w], h, i, x, y, b);
                    }
            }
    }
}

/* Hot exactly when the format is staged and the block is not (full, committed and
 * older than the residual window). */
static void check_hot(const llmlab_kv *kv, const llmlab_kv_format *f, int seq) {
    int n = llmlab_kv_committed(kv, seq), len = llmlab_kv_len(kv, seq);
    for (int slot = 0; slot < len; slot++) {
        int bi = slot / BS, want = staged(f) && !((bi + 1) * BS <= n - f->residual);
        cr_assert_eq(llmlab_kv_slot_hot(kv, seq, slot), want, "slot %d of %d (committed %d, residual %d): hot %d, want %d",
                     slot, len, n, f->residual, !want, want);
    }
}

Test(kv_quant, cache_writes_read_back_and_blocks_cool_out_of_the_window) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("cache_rw"), 4);
    for (int c = 0; c < g_nfmts; c++) {
        llmlab_kv *kv = kv_new(&g_fmts[c].f, 16);
        for (int t = 0; t < 45; t++) {
            append_rand(kv, 0, 1, &g, 1);
            check_hot(kv, &g_fmts[c].f, 0);
        }
        check_reads(kv, &g_fmts[c], 0, 45, g_orig[0]);
        /* A prompt-sized append commits many slots at once: the same rule holds. */
        append_rand(kv, 1, 37, &g, 0);
        check_hot(kv, &g_fmts[c].f, 1);
        llmlab_kv_commit(kv, 1);
        check_hot(kv, &g_fmts[c].f, 1);
        check_reads(kv, &g_fmts[c], 1, 37, g_orig[1]);
        llmlab_kv_free(kv);
    }
}

/* Bytes of one head's row record and of one head's per-channel parameters. */
static size_t rec_bytes(const llmlab_kv_format *f, int keys) {
    if (!is_int(f)) return (size_t)HD * (f->dtype == LLMLAB_KV_F32 ? 4 : 2);
    size_t codes = (size_t)HD * (f->dtype == LLMLAB_KV_INT8 ? 8 : 4) / 8, per = f->asymmetric ? 4 : 2;
    if (keys && f->key_per_channel) return codes;
    return codes + (size_t)(HD / (f->group ? f->group : HD)) * per;
}

Test(kv_quant, resident_bytes_follow_each_layout) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("bytes"), 5);
    for (int c = -1; c < g_nfmts; c++) {
        llmlab_kv_format f32 = {.size = sizeof f32};
        const llmlab_kv_format *f = c < 0 ? &f32 : &g_fmts[c].f;
        llmlab_kv *kv = kv_new(f, 16);
        size_t chan = f->key_per_channel ? (size_t)HD * (f->asymmetric ? 4 : 2) : 0;
        size_t block = (size_t)L * ((size_t)BS * NKV * (rec_bytes(f, 1) + rec_bytes(f, 0)) + NKV * chan);
        cr_assert_eq(llmlab_kv_block_bytes(kv), block, "%s", c < 0 ? "f32" : g_fmts[c].name);
        cr_assert_float_eq(llmlab_kv_bytes_per_token(kv), (double)block / BS, 1e-12);
        append_rand(kv, 0, 29, &g, 1);
        int hot = 0;
        for (int bi = 0; bi < 4; bi++) hot += llmlab_kv_slot_hot(kv, 0, bi * BS);
        size_t want = 4 * block + (size_t)hot * L * 2 * BS * RF * sizeof(float);
        cr_assert_eq(llmlab_kv_resident_bytes(kv), want, "%s: %zu resident bytes, want %zu (%d hot blocks)",
                     c < 0 ? "f32" : g_fmts[c].name, llmlab_kv_resident_bytes(kv), want, hot);
        llmlab_kv_free(kv);
    }
    /* The numbers behind the formula for head_dim 32: an int8 head row is 32 codes
     * and one f16 scale (34 bytes, f32: 128); int4 KIVI values 16 + 4 bytes, keys
     * 16 bytes a row plus 128 bytes of per-channel scale and min per block. */
    llmlab_kv_format i8 = {.size = sizeof i8, .dtype = LLMLAB_KV_INT8};
    cr_assert_eq(rec_bytes(&i8, 0), 34);
    cr_assert_eq(rec_bytes(&g_fmts[7].f, 1) + rec_bytes(&g_fmts[7].f, 0), 16 + 20);
}

/* ---- attention over packed K/V ------------------------------------------------------------ */

static llmlab_attn_keys lane_keys(const llmlab_kv *kv, int seq, int layer, int head) {
    return (llmlab_attn_keys){.kv = kv, .seq = seq, .layer = layer, .kv_head = head,
                              .n_prior = llmlab_kv_len(kv, seq), .q_pos = 1 << 20};
}

/* Largest |value| of one head's decoded keys (which 0) or values (1) over n slots of sequence 0. */
static double lane_absmax(const llmlab_kv *kv, int n, int layer, int head, int which) {
    double m = 0;
    float buf[HD];
    for (int s = 0; s < n; s++) {
        const float *x = llmlab_kv_head(kv, 0, s, layer, which, head, buf);
        for (int i = 0; i < HD; i++) m = fmax(m, fabsf(x[i]));
    }
    return m;
}

Test(kv_quant, attention_equals_f32_attention_over_the_decoded_cache) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("attention"), 6);
    const float scale = 1.0f / sqrtf((float)HD);
    for (int c = 0; c < g_nfmts; c++) {
        llmlab_kv *kv = kv_new(&g_fmts[c].f, 16), *ref = kv_new(NULL, 16);
        append_rand(kv, 0, 45, &g, 1);
        int first;
        llmlab_err err = {0};
        cr_assert_eq(llmlab_kv_append(ref, 0, 45, NULL, &first, &err), LLMLAB_OK);
        for (int s = 0; s < 45; s++) {
            float dec[L][2][RF];
            read_slot(kv, 0, s, dec);
            for (int l = 0; l < L; l++) {
                memcpy(llmlab_kv_k_row(ref, 0, s, l), dec[l][0], sizeof dec[l][0]);
                memcpy(llmlab_kv_v_row(ref, 0, s, l), dec[l][1], sizeof dec[l][1]);
            }
        }
        for (int l = 0; l < L; l++)
            for (int h = 0; h < NKV; h++)
                for (int t = 0; t < 4; t++) {
                    float q[HD], out[HD], want[HD], dbl[HD], sc[64], mass[64] = {0}, mass_ref[64] = {0};
                    rand_row(&g, q, HD);
                    llmlab_attn_keys k = lane_keys(kv, 0, l, h), kr = lane_keys(ref, 0, l, h);
                    llmlab_cpu_attention(out, q, HD, &k, scale, sc, mass);
                    llmlab_cpu_attention(want, q, HD, &kr, scale, sc, mass_ref);
                    cr_assert(!memcmp(out, want, sizeof out), "%s: attention output differs from f32 over the decoded "
                              "cache (layer %d head %d)", g_fmts[c].name, l, h);
                    cr_assert(!memcmp(mass, mass_ref, sizeof mass), "%s: attention mass differs", g_fmts[c].name);
                    /* f32 against double: a score s = scale * q.k is off by up to about
                     * HD * eps * scale * sum|q| * max|k|, which exp turns into a relative
                     * error of each probability, so outputs move by that times max|v|. */
                    llmlab_cpu_attention_ref(dbl, q, HD, &k, scale);
                    double kmax = lane_absmax(kv, 45, l, h, 0), vmax = lane_absmax(kv, 45, l, h, 1), qsum = 0;
                    for (int i = 0; i < HD; i++) qsum += fabsf(q[i]);
                    double tol = (4.0 * HD * 0x1p-24 * scale * qsum * kmax + 1e-6) * vmax + 1e-30;
                    for (int i = 0; i < HD; i++)
                        cr_assert(fabs((double)out[i] - dbl[i]) <= tol, "%s: kernel %.9g vs double reference %.9g (tol %g)",
                                  g_fmts[c].name, out[i], dbl[i], tol);
                }
        llmlab_kv_free(kv);
        llmlab_kv_free(ref);
    }
}

/* ---- fork, copy-on-write, keep, truncate on packed blocks -------------------------------------- */

static void assert_same_slot(const llmlab_kv *a, int sa, int slot_a, const llmlab_kv *b, int sb, int slot_b,
                             const char *what) {
    float x[L][2][RF], y[L][2][RF];
    read_slot(a, sa, slot_a, x);
    read_slot(b, sb, slot_b, y);
    cr_assert(!memcmp(x, y, sizeof x), "%s: slot %d of sequence %d and slot %d of sequence %d differ", what, slot_a,
              sa, slot_b, sb);
}

Test(kv_quant, fork_copy_on_write_keep_and_truncate_on_packed_data) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("fork_keep"), 7);
    const fmt_case cases[] = {{"int8", FMT(.dtype = LLMLAB_KV_INT8)},
                              {"f16", FMT(.dtype = LLMLAB_KV_F16)},
                              {"kivi-r4", FMT(.dtype = LLMLAB_KV_INT4, .group = 32, .asymmetric = 1,
                                              .key_per_channel = 1, .residual = 4)}};
    for (int c = 0; c < 3; c++) {
        const fmt_case *fc = &cases[c];
        llmlab_kv *kv = kv_new(&fc->f, 16);
        llmlab_err err = {0};
        append_rand(kv, 0, 13, &g, 1);
        cr_assert_eq(llmlab_kv_fork(kv, 0, 3, &err), LLMLAB_OK, "%s", err.msg); /* seq 3: a frozen copy to compare */
        cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK, "%s", err.msg);
        memcpy(g_orig[1], g_orig[0], 13 * sizeof g_orig[0][0]); /* what sequence 1 holds */
        cr_assert_eq(llmlab_kv_blocks_used(kv), 2, "%s: forks share blocks", fc->name);
        append_rand(kv, 1, 3, &g, 0); /* provisional drafts into the shared half-full block */
        cr_assert_eq(llmlab_kv_blocks_used(kv), 3, "%s: the shared block was copied on write", fc->name);
        for (int s = 0; s < 13; s++) {
            assert_same_slot(kv, 0, s, kv, 3, s, fc->name);
            assert_same_slot(kv, 1, s, kv, 0, s, fc->name);
        }
        check_reads(kv, fc, 1, 16, g_orig[1]);
        /* keep drafts 14 and 15: they move to 13 and 14, as they were */
        float d14[L][2][RF], d15[L][2][RF], x[L][2][RF];
        read_slot(kv, 1, 14, d14);
        read_slot(kv, 1, 15, d15);
        int keep[2] = {14, 15};
        cr_assert_eq(llmlab_kv_keep(kv, 1, keep, 2, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_kv_len(kv, 1), 15);
        read_slot(kv, 1, 13, x);
        cr_assert(!memcmp(x, d14, sizeof x), "%s: kept draft 14 moved to 13 unchanged", fc->name);
        read_slot(kv, 1, 14, x);
        cr_assert(!memcmp(x, d15, sizeof x), "%s: kept draft 15 moved to 14 unchanged", fc->name);
        check_hot(kv, &fc->f, 1);
        /* truncate into the first block, shared with sequence 0, then append again */
        cr_assert_eq(llmlab_kv_truncate(kv, 1, 5, &err), LLMLAB_OK, "%s", err.msg);
        for (int s = 0; s < 5; s++) assert_same_slot(kv, 1, s, kv, 3, s, fc->name);
        for (int s = 0; s < 13; s++) assert_same_slot(kv, 0, s, kv, 3, s, fc->name);
        if (staged(&fc->f)) cr_assert(llmlab_kv_slot_hot(kv, 1, 0), "%s: a partly filled last block is hot", fc->name);
        append_rand(kv, 1, 3, &g, 0);
        llmlab_kv_commit(kv, 1);
        for (int s = 0; s < 13; s++) assert_same_slot(kv, 0, s, kv, 3, s, fc->name);
        for (int s = 5; s < 8; s++)
            for (int l = 0; l < L; l++)
                for (int w = 0; w < 2; w++) {
                    float buf[HD];
                    for (int h = 0; h < NKV; h++) {
                        const float *p = llmlab_kv_head(kv, 1, s, l, w, h, buf);
                        for (int i = 0; i < HD; i++)
                            cr_assert(fabs((double)p[i] - g_orig[1][s][l][w][h * HD + i]) <=
                                          read_bound(kv, &fc->f, 1, s, l, w, h, i, g_orig[1]),
                                      "%s: slot %d appended after truncate", fc->name, s);
                    }
                }
        cr_assert_eq(llmlab_kv_blocks_used(kv), 3, "%s: seq 0 / 3 share 2 blocks, seq 1 has its own", fc->name);
        llmlab_kv_free_seq(kv, 0);
        llmlab_kv_free_seq(kv, 1);
        llmlab_kv_free_seq(kv, 3);
        cr_assert_eq(llmlab_kv_blocks_used(kv), 0);
        cr_assert_eq(llmlab_kv_resident_bytes(kv), 0, "%s: staging copies go with their blocks", fc->name);
        llmlab_kv_free(kv);
    }
}

/* ---- eviction and compaction --------------------------------------------------------------------- */

/* Evicts, lane by lane, all but a random 8..20 of n committed slots. */
static void evict_random(llmlab_kv *kv, int seq, int n, llmlab_rng *g) {
    llmlab_err err = {0};
    for (int lane = 0; lane < L * NKV; lane++) {
        int keep = 8 + (int)(llmlab_rng_next(g) % 13), slots[MAXS], k = 0;
        uint8_t mark[MAXS] = {0};
        for (int i = 0; i < keep; i++) mark[llmlab_rng_next(g) % (uint64_t)n] = 1;
        for (int s = 0; s < n; s++)
            if (!mark[s]) slots[k++] = s;
        cr_assert_eq(llmlab_kv_evict_lane(kv, seq, lane, slots, k, &err), LLMLAB_OK, "%s", err.msg);
    }
}

Test(kv_quant, compaction_leaves_attention_unchanged_bit_for_bit_for_per_token_formats) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("compact_exact"), 8);
    const float scale = 1.0f / sqrtf((float)HD);
    for (int c = -1; c < g_nfmts; c++) {
        llmlab_kv_format f32 = {.size = sizeof f32};
        const llmlab_kv_format *f = c < 0 ? &f32 : &g_fmts[c].f;
        if (staged(f)) continue; /* f32 rows in hot blocks: the KIVI test below */
        llmlab_kv *kv = kv_new(f, 16);
        append_rand(kv, 0, 48, &g, 1);
        evict_random(kv, 0, 48, &g);
        float q[L * NKV][4][HD], before[L * NKV][4][HD], sc[64];
        for (int lane = 0; lane < L * NKV; lane++)
            for (int t = 0; t < 4; t++) {
                rand_row(&g, q[lane][t], HD);
                llmlab_attn_keys k = lane_keys(kv, 0, lane / NKV, lane % NKV);
                llmlab_cpu_attention(before[lane][t], q[lane][t], HD, &k, scale, sc, NULL);
            }
        int used = llmlab_kv_blocks_used(kv);
        llmlab_err err = {0};
        cr_assert_eq(llmlab_kv_compact(kv, 0, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_lt(llmlab_kv_blocks_used(kv), used, "compaction freed blocks");
        cr_assert_leq(llmlab_kv_len(kv, 0), 24);
        for (int lane = 0; lane < L * NKV; lane++)
            for (int t = 0; t < 4; t++) {
                float after[HD];
                llmlab_attn_keys k = lane_keys(kv, 0, lane / NKV, lane % NKV);
                llmlab_cpu_attention(after, q[lane][t], HD, &k, scale, sc, NULL);
                cr_assert(!memcmp(after, before[lane][t], sizeof after), "%s: lane %d: attention changed by compaction",
                          c < 0 ? "f32" : g_fmts[c].name, lane);
            }
        llmlab_kv_free(kv);
    }
}

/* One lane's valid slots in order: positions and decoded K and V. */
static int lane_list(const llmlab_kv *kv, int seq, int lane, int32_t *pos, float (*k)[HD], float (*v)[HD]) {
    int n = 0;
    float buf[HD];
    for (int s = 0; s < llmlab_kv_len(kv, seq); s++) {
        if (!llmlab_kv_lane_valid(kv, seq, s, lane)) continue;
        pos[n] = llmlab_kv_lane_pos(kv, seq, s, lane);
        memcpy(k[n], llmlab_kv_head(kv, seq, s, lane / NKV, 0, lane % NKV, buf), sizeof buf);
        memcpy(v[n], llmlab_kv_head(kv, seq, s, lane / NKV, 1, lane % NKV, buf), sizeof buf);
        n++;
    }
    return n;
}

Test(kv_quant, compaction_requantizes_kivi_keys_within_half_the_new_step) {
    llmlab_rng g;
    llmlab_rng_seed(&g, fixture_seed("compact_kivi"), 9);
    for (int c = 7; c <= 8; c++) { /* kivi, kivi-r12 */
        const llmlab_kv_format *f = &g_fmts[c].f;
        llmlab_kv *kv = kv_new(f, 16);
        append_rand(kv, 0, 48, &g, 1);
        evict_random(kv, 0, 48, &g);
        static int32_t pos0[L * NKV][MAXS], pos1[MAXS];
        static float k0[L * NKV][MAXS][HD], v0[L * NKV][MAXS][HD], k1[MAXS][HD], v1[MAXS][HD];
        int n0[L * NKV];
        for (int lane = 0; lane < L * NKV; lane++) n0[lane] = lane_list(kv, 0, lane, pos0[lane], k0[lane], v0[lane]);
        llmlab_err err = {0};
        cr_assert_eq(llmlab_kv_compact(kv, 0, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_leq(llmlab_kv_len(kv, 0), 24);
        int changed = 0;
        for (int lane = 0; lane < L * NKV; lane++) {
            int n1 = lane_list(kv, 0, lane, pos1, k1, v1);
            cr_assert_eq(n1, n0[lane]);
            cr_assert(!memcmp(pos1, pos0[lane], (size_t)n1 * sizeof *pos1), "lane %d: positions kept in order", lane);
            cr_assert(!memcmp(v1, v0[lane], (size_t)n1 * sizeof *v1), "%s lane %d: values (per token) moved exactly",
                      g_fmts[c].name, lane);
            for (int w = 0; w < n1; w++) /* after compaction row w of the lane is slot w */
                for (int i = 0; i < HD; i++) {
                    int b0 = w / BS * BS;
                    double lo = INFINITY, hi = -INFINITY;
                    for (int r = b0; r < b0 + BS && r < n1; r++) lo = fmin(lo, k0[lane][r][i]), hi = fmax(hi, k0[lane][r][i]);
                    double x = k0[lane][w][i], y = k1[w][i], b = int_bound(LLMLAB_KV_INT4, 1, lo, hi, x);
                    cr_assert(fabs(y - x) <= b, "%s lane %d row %d [%d]: key %.9g re-quantized to %.9g (bound %g)",
                              g_fmts[c].name, lane, w, i, x, y, b);
                    changed += y != x;
                }
        }
        if (c == 7) cr_assert_gt(changed, 0, "kivi without residual: moved keys were re-quantized");
        llmlab_kv_free(kv);
    }
}

/* ---- through the engine ------------------------------------------------------------------------ */

static llmlab_registry *g_reg;
static fixture_model g_fm;
/* head_dim 32: int4's value group of 32 is one group per head */
static const fixture_shape g_shape = {"kvq", 300, 128, 2, 4, 2, 256, 32, 0, 0, LLMLAB_DTYPE_F32};

/* A test attention plugin that tries to set the KV format (only kv_quant may). */
static llmlab_status rogue_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                  llmlab_err *err) {
    *self = NULL;
    llmlab_kv_format f = {.size = sizeof f, .dtype = LLMLAB_KV_INT8};
    return h->engine_set_kv_format(e, &f, err);
}
static void rogue_destroy(void *self) {}
static llmlab_status rogue_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void rogue_end(void *self, llmlab_seq *s) {}
static llmlab_status rogue_after(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static const llmlab_attention_ops rogue_ops = {sizeof(llmlab_attention_ops), rogue_create, rogue_destroy,
                                               rogue_begin, rogue_end, rogue_after};
static const llmlab_plugin_desc rogue_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "test_rogue_kv", "1.0", "sets a KV format from an attention plugin (test)", NULL, 0,
    &rogue_ops);
static const llmlab_plugin_desc *rogue_entry(uint32_t major, uint32_t minor, const llmlab_host *h) {
    return &rogue_desc;
}

static void engine_setup(void) {
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&g_reg, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_registry_add(g_reg, rogue_entry, "test", &err), LLMLAB_OK, "%s", err.msg);
    fixture_load(&g_fm, &g_shape, 77);
}

static void engine_teardown(void) {
    llmlab_registry_free(g_reg);
    fixture_free(&g_fm);
}

TestSuite(kv_engine, .init = engine_setup, .fini = engine_teardown);

/* "k=v k=v" into values (keys and texts kept in *store). */
typedef struct {
    char text[8][2][48];
    llmlab_param_value v[8];
    int n;
} pvals;

static void parse_vals(pvals *pv, const char *s) {
    pv->n = 0;
    while (s && *s) {
        while (*s == ' ') s++;
        if (!*s) break;
        int k = 0, t = 0;
        cr_assert_lt(pv->n, 8);
        while (*s && *s != '=') pv->text[pv->n][0][k++] = *s++;
        pv->text[pv->n][0][k] = 0;
        cr_assert_eq(*s, '=');
        s++;
        while (*s && *s != ' ') pv->text[pv->n][1][t++] = *s++;
        pv->text[pv->n][1][t] = 0;
        llmlab_param_value_from_text(&pv->v[pv->n], pv->text[pv->n][0], pv->text[pv->n][1]);
        pv->n++;
    }
}

typedef struct {
    const char *kv, *kv_p;    /* kv_quant plugin and values (NULL: f32) */
    const char *att, *att_p;  /* attention (NULL: dense) */
    const char *dec, *dec_p;  /* decoding (NULL: autoregressive) */
    const char *quant;        /* weight quant (NULL: none) */
} eng_spec;

static llmlab_status make_engine(const eng_spec *s, llmlab_engine **e, llmlab_err *err) {
    pvals kv, att, dec, sched;
    parse_vals(&kv, s->kv_p);
    parse_vals(&att, s->att_p);
    parse_vals(&dec, s->dec_p);
    parse_vals(&sched, "max_batch=8");
    llmlab_engine_opts o = {.registry = g_reg,
                            .decoding = {s->dec, dec.v, dec.n},
                            .attention = {s->att, att.v, att.n},
                            .quant = {s->quant, NULL, 0},
                            .sched = {"continuous", sched.v, sched.n},
                            .kv_quant = {s->kv, kv.v, kv.n},
                            .seed = 11,
                            .n_threads = 2,
                            .kv_tokens = 4096,
                            .kv_block_size = BS,
                            .max_seqs = 16,
                            .token_budget = 256};
    return llmlab_engine_create(e, g_fm.m, &o, err);
}

static llmlab_run_result *run_spec(const eng_spec *s, const dc_requests *r) {
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    cr_assert_eq(make_engine(s, &e, &err), LLMLAB_OK, "engine kv_quant=%s attention=%s: %s", s->kv ? s->kv : "f32",
                 s->att ? s->att : "dense", err.msg);
    llmlab_run_result *res = NULL;
    cr_assert_eq(llmlab_engine_run(e, r->reqs, r->n, &res, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_engine_free(e);
    return res;
}

static double mean_of(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return n ? s / n : 0;
}
static double mean_blocks(const llmlab_run_result *r) {
    double s = 0;
    for (int i = 0; i < r->n_steps; i++) s += r->step_kv_blocks[i];
    return r->n_steps ? s / r->n_steps : 0;
}

Test(kv_engine, quantized_caches_compose_with_evicting_attention_policies, .timeout = 120) {
    dc_requests r;
    dc_requests_make(&r, 4, g_shape.vocab, 28, 40, 20, 28, fixture_seed("compose"));
    static const char *const kvs[][2] = {{"kv_int8", ""},
                                         {"kv_int4", "residual=8"},
                                         {"kv_int4", "residual=0 key_per_channel=false"}};
    static const char *const atts[][2] = {{"window", "window=16"},
                                          {"sinks", "sinks=4 window=16"},
                                          {"h2o", "heavy=6 recent=6"}};
    for (int k = 0; k < 3; k++) {
        eng_spec dense = {.kv = kvs[k][0], .kv_p = kvs[k][1]};
        llmlab_run_result *d = run_spec(&dense, &r);
        for (int a = 0; a < 3; a++) {
            eng_spec s = {.kv = kvs[k][0], .kv_p = kvs[k][1], .att = atts[a][0], .att_p = atts[a][1]};
            eng_spec f32 = {.att = atts[a][0], .att_p = atts[a][1]};
            llmlab_run_result *x = run_spec(&s, &r), *y = run_spec(&s, &r), *z = run_spec(&f32, &r);
            char what[128];
            snprintf(what, sizeof what, "%s %s under %s, run twice", kvs[k][0], kvs[k][1], atts[a][0]);
            dc_assert_same(x, y, what);
            cr_assert_eq(x->n_steps, y->n_steps, "%s", what);
            cr_assert(!memcmp(x->step_kv_blocks, y->step_kv_blocks, (size_t)x->n_steps * sizeof(int)), "%s", what);
            cr_assert_lt(mean_blocks(x), 0.8 * mean_blocks(d), "%s: evictions free blocks (%.1f vs dense %.1f)", what,
                         mean_blocks(x), mean_blocks(d));
            double bx = mean_of(x->step_kv_bytes, x->n_steps), bz = mean_of(z->step_kv_bytes, z->n_steps);
            if (k != 1) /* int8, int4 without residual: every slot packed */
                cr_assert_lt(bx, 0.5 * bz, "%s: %.0f KV bytes on average, f32 %.0f", what, bx, bz);
            fprintf(stderr, "[compose] %-8s %-34s %-6s mean blocks %5.1f (dense %5.1f), mean KV bytes %8.0f (f32 %8.0f)\n",
                    kvs[k][0], kvs[k][1], atts[a][0], mean_blocks(x), mean_blocks(d), bx, bz);
            llmlab_run_result_free(x);
            llmlab_run_result_free(y);
            llmlab_run_result_free(z);
        }
        llmlab_run_result_free(d);
    }
    dc_requests_free(&r);
}

Test(kv_engine, prompt_lookup_with_kv_int8_reproduces_autoregressive_kv_int8, .timeout = 120) {
    dc_requests r;
    dc_requests_make_staggered_repetitive(&r, 16, g_shape.vocab, fixture_seed("spec"));
    static const char *const kvs[][2] = {{"kv_int8", ""}, {"kv_int4", "residual=0 key_per_channel=false"}};
    static const char *const atts[][2] = {{NULL, ""}, {"h2o", "heavy=8 recent=8"}};
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < 2; a++) {
            eng_spec ar = {.kv = kvs[k][0], .kv_p = kvs[k][1], .att = atts[a][0], .att_p = atts[a][1]};
            eng_spec pl = ar;
            pl.dec = "prompt_lookup", pl.dec_p = "num_pred_tokens=6";
            llmlab_run_result *want = run_spec(&ar, &r), *got = run_spec(&pl, &r);
            char what[128];
            snprintf(what, sizeof what, "prompt_lookup vs autoregressive, %s %s, attention %s", kvs[k][0], kvs[k][1],
                     atts[a][0] ? atts[a][0] : "dense");
            dc_assert_same(want, got, what);
            /* 16 requests: with 6, H2O's altered continuations accepted nothing for
             * about one seed in thirty, leaving the rollback path untested. */
            cr_assert_gt(dc_metric(got, "accepted"), 0, "%s: drafts were accepted", what);
            llmlab_run_result_free(want);
            llmlab_run_result_free(got);
        }
    dc_requests_free(&r);
}

/* texts[n] teacher-forced through the f32 model and through a quantized cache. */
static llmlab_fid_result *fidelity_of(const llmlab_model *m, const char *kv, const char *kv_p, const llmlab_fid_text *t,
                                      int n) {
    pvals pv;
    parse_vals(&pv, kv_p);
    llmlab_engine_opts o = {.registry = g_reg, .kv_quant = {kv, pv.v, pv.n}, .seed = 3, .n_threads = 2,
                            .kv_tokens = 8192, .kv_block_size = BS};
    llmlab_engine *dense = NULL, *pol = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_fidelity_engines(m, &o, &dense, &pol, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_null(llmlab_engine_kv_plugin(dense), "the reference keeps an f32 cache");
    llmlab_fid_result *f = NULL;
    llmlab_fid_opts fo = {0};
    cr_assert_eq(llmlab_fidelity(dense, pol, t, n, &fo, &f, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_engine_free(dense);
    llmlab_engine_free(pol);
    return f;
}

static void print_fid(const char *what, const llmlab_fid_result *f) {
    fprintf(stderr, "[fidelity] %-26s top1 %.4f  mean KL %.3g nats  ppl %.4f (f32 %.4f)  KV bytes %.0f (f32 %.0f)\n",
            what, f->top1_rate, f->mean_kl, f->ppl, f->ppl_dense, f->kv_bytes_mean, f->kv_bytes_mean_dense);
}

/* The zoo's trained target (6 layers, head_dim 64) on held-out text: n windows of
 * len tokens at random offsets. */
static int32_t *zoo_texts(llmlab_fid_text *t, int n, int len, uint64_t seed) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/zoo/target/heldout_ids.u16", LLMLAB_SOURCE_DIR);
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "cannot open %s", path);
    static uint8_t raw[1 << 17];
    size_t bytes = fread(raw, 1, sizeof raw, fp);
    fclose(fp);
    int total = (int)(bytes / 2);
    cr_assert_gt(total, len);
    int32_t *ids = malloc((size_t)n * (size_t)len * sizeof *ids);
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 9);
    for (int i = 0; i < n; i++) {
        int off = (int)(llmlab_rng_next(&g) % (uint64_t)(total - len));
        for (int j = 0; j < len; j++) ids[i * len + j] = raw[2 * (off + j)] | raw[2 * (off + j) + 1] << 8;
        t[i] = (llmlab_fid_text){ids + i * len, len, 16};
    }
    return ids;
}

/* Threshold.  int8 stores each head row with one f16 scale = absmax / 127 rounded
 * up, so every K/V value is within absmax / 254 of f32 (0.4% of the row's largest
 * value; kv_quant.h).  Attention logits and outputs move by about that fraction,
 * and the model's logits by a small multiple of it: the measured mean KL is
 * ~1e-5 nats on the synthetic model, and on the trained zoo model on held-out
 * text.  top-1 flips only where f32's two best logits are within that change of
 * each other: a fraction of a percent of positions (observed 99.1-100% over
 * eight seeds on both models).  0.98 leaves room for a few such near-ties per text
 * while still failing at once for a real defect (a wrong scale or a misread row
 * costs far more: int4 without the f32 window already drops to ~95%). */
Test(kv_engine, kv_int8_keeps_top1_agreement_with_fewer_bytes, .timeout = 180) {
    uint64_t seed = fixture_seed("fidelity");
    llmlab_rng g;
    llmlab_rng_seed(&g, seed, 5);
    static int32_t tok[4][160];
    llmlab_fid_text t[4];
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 160; j++) tok[i][j] = (int32_t)(llmlab_rng_next(&g) % (uint64_t)g_shape.vocab);
        t[i] = (llmlab_fid_text){tok[i], 160, 8};
    }
    llmlab_fid_result *i8 = fidelity_of(g_fm.m, "kv_int8", "", t, 4), *i4 = fidelity_of(g_fm.m, "kv_int4", "residual=0", t, 4);
    print_fid("synthetic kv_int8", i8);
    print_fid("synthetic kv_int4 R=0", i4);
    cr_assert_geq(i8->top1_rate, 0.98, "kv_int8 top-1 agreement %.4f", i8->top1_rate);
    cr_assert_gt(i8->mean_kl, 0.0, "quantization must change something");
    cr_assert_lt(i8->mean_kl, i4->mean_kl, "int8 is closer to f32 than int4");
    cr_assert_lt(i8->kv_bytes_mean, 0.3 * i8->kv_bytes_mean_dense, "int8 rows: 34 bytes a head instead of 128");
    llmlab_fid_result_free(i8);
    llmlab_fid_result_free(i4);

    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/zoo/target", LLMLAB_SOURCE_DIR);
    llmlab_model *zoo = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_model_load(&zoo, dir, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_fid_text zt[4];
    int32_t *ids = zoo_texts(zt, 4, 160, seed);
    i8 = fidelity_of(zoo, "kv_int8", "", zt, 4);
    print_fid("zoo kv_int8", i8);
    cr_assert_geq(i8->top1_rate, 0.98, "zoo: kv_int8 top-1 agreement %.4f", i8->top1_rate);
    cr_assert_lt(fabs(i8->ppl / i8->ppl_dense - 1.0), 0.01, "zoo: perplexity within 1%% of f32's");
    /* int8 head rows of 64: 66 bytes instead of 256 */
    cr_assert_lt(i8->kv_bytes_mean, 0.27 * i8->kv_bytes_mean_dense);
    llmlab_fid_result_free(i8);
    free(ids);
    llmlab_model_free(zoo);
}

Test(kv_engine, wrong_choices_are_refused_with_reasons) {
    static const struct {
        eng_spec s;
        const char *want;
    } cases[] = {
        {{.quant = "kv_int8"}, "is a KV-cache format, not a weight format: choose it as kv_quant"},
        {{.kv = "none"}, "kv_quant plugin 'none' packs weights"},
        {{.kv = "kv_nope"}, "no KV-cache format plugin named 'kv_nope'"},
        {{.kv = "kv_int4", .kv_p = "group=24"}, "group 24 must divide head_dim 32"},
        {{.kv = "kv_int8", .kv_p = "group=-1"}, "group"},
        {{.kv = "kv_f16", .kv_p = "dtype=fp8"}, "dtype"},
        {{.att = "test_rogue_kv"}, "only the plugin chosen as the engine's kv_quant"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llmlab_engine *e = NULL;
        llmlab_err err = {0};
        cr_assert_neq(make_engine(&cases[i].s, &e, &err), LLMLAB_OK, "case %zu must fail", i);
        cr_assert_null(e);
        cr_assert(strstr(err.msg, cases[i].want), "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
    }
    llmlab_engine *e = NULL;
    llmlab_err err = {0};
    eng_spec ok = {.kv = "kv_f16", .kv_p = "dtype=bf16"};
    cr_assert_eq(make_engine(&ok, &e, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_kv_format f = llmlab_engine_kv_format(e);
    cr_assert_eq(f.dtype, LLMLAB_KV_BF16);
    cr_assert_eq(llmlab_kv_block_bytes(llmlab_engine_kv(e)), (size_t)L * 2 * BS * RF * 2, "bf16: 2 bytes a value");
    cr_assert_str_eq(llmlab_engine_kv_plugin(e)->name, "kv_f16");
    llmlab_engine_free(e);
}

Test(kv_engine, lua_option_reaches_the_engine_and_the_record, .timeout = 60) {
    char *dir = tmpdir_make(), path[512], cmd[2048];
    const char *s =
        "local m = llmlab.model{path = llmlab.synth{dir = 'm', preset = 'tiny', seed = 2}}\n"
        "local e = llmlab.engine{model = m, kv_quant = {'kv_int4', residual = 64}, kv_block_size = 8, seed = 5}\n"
        "local r = e:run(llmlab.workload{lengths = {4, 9, 5}, max_new = 6, vocab = m.vocab})\n"
        "llmlab.results('out.h5'):write('kv', r)\n"
        "local f = llmlab.fidelity{model = m, kv_quant = 'kv_int8', texts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},"
        " prefix = 4}\n"
        "print(string.format('%.3f', f.top1))\n";
    snprintf(path, sizeof path, "%s/kv.lua", dir);
    proc_write_file(path, s);
    snprintf(cmd, sizeof cmd, "cd %s && %s run kv.lua", dir, LLMLAB_BIN);
    static char out[8192], err_out[8192];
    cr_assert_eq(proc_run(cmd, out, sizeof out, err_out, sizeof err_out), 0, "%s", err_out);
    double top1 = atof(out);
    cr_assert(top1 >= 0.0 && top1 <= 1.0, "top1 printed: %s", out);
    snprintf(path, sizeof path, "%s/out.h5", dir);
    char *plugin = NULL, *dtype = NULL;
    int64_t residual = 0, group = 0;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_results_attr_str(path, "kv", "settings/kv_quant/plugin", &plugin, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert_str_eq(plugin, "kv_int4");
    cr_assert_eq(llmlab_results_attr_int(path, "kv", "settings/kv_quant/residual", &residual, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert_eq(residual, 64);
    cr_assert_eq(llmlab_results_attr_str(path, "kv", "settings/kv_quant/kv_dtype", &dtype, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert_str_eq(dtype, "int4");
    /* tiny's head_dim is 16: the group of 32 covers the whole head */
    cr_assert_eq(llmlab_results_attr_int(path, "kv", "settings/kv_quant/kv_group", &group, &err), LLMLAB_OK, "%s",
                 err.msg);
    cr_assert_eq(group, 16);
    free(plugin);
    free(dtype);
    tmpdir_remove(dir);
}
