/* ops.c - RMSNorm, RoPE, SwiGLU and paged attention on the CPU.
 *
 * These are a small share of decode time (the weight matmuls dominate), so they are
 * written as plain C with a fixed reduction order rather than hand-vectorised.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

void llmlab_cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] * inv) * w[i];
}

void llmlab_cpu_rope(float *x, int n_heads, int head_dim, int32_t pos, const float *inv_freq) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* Angle in f32 as transformers computes it (inv_freq[i] * float(pos)). */
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * (size_t)head_dim;
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x1 * c + x0 * s;
        }
    }
}

void llmlab_cpu_swiglu(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

float llmlab_cpu_dot(const float *a, const float *b, int n) {
    /* Eight independent partial sums: the compiler may vectorise them, but the
     * association (lane j sums elements j, j+8, ...) is fixed by the source. */
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

int llmlab_pattern_sees(const llmlab_attn_pattern *p, int32_t q_pos, int32_t k_pos, const int *rand, int n_rand) {
    if (!p || p->block <= 0 || k_pos == q_pos) return 1;
    int qb = q_pos / p->block, kb = k_pos / p->block;
    if (kb < p->global_blocks) return 1;
    if (p->window_blocks > 0 && qb - kb < p->window_blocks) return 1;
    if (p->layout && qb < p->layout_blocks && kb < p->layout_blocks &&
        p->layout[(size_t)qb * (size_t)p->layout_blocks + (size_t)kb])
        return 1;
    for (int i = 0; i < n_rand; i++)
        if (rand[i] == kb) return 1;
    return 0;
}

/* Whether the query sees `slot` (prior: must be valid in its lane). */
static int key_visible(const llmlab_attn_keys *k, int slot, int prior) {
    int lane = k->layer * k->kv->o.n_kv_heads + k->kv_head;
    long m = llmlab_kv_meta(k->kv, k->seq, slot, lane);
    if (m < 0 || (prior && !k->kv->slot_valid[m]) || (k->hide && k->hide[slot])) return 0;
    return !k->pat || k->pat->block <= 0 || llmlab_pattern_sees(k->pat, k->q_pos, k->kv->slot_pos[m], k->rand, k->n_rand);
}

/* Walks the visible keys in slot order, running body with the slot and a running index. */
#define FOR_EACH_KEY(keys, slot, idx, body)                                                     \
    do {                                                                                        \
        int idx = 0;                                                                            \
        for (int slot = 0; slot < (keys)->n_prior; slot++) {                                    \
            if (!key_visible((keys), slot, 1)) continue;                                        \
            body;                                                                               \
            idx++;                                                                              \
        }                                                                                       \
        for (int e_ = 0; e_ < (keys)->n_extra; e_++) {                                          \
            int slot = (keys)->extra[e_];                                                       \
            if (!key_visible((keys), slot, 0)) continue;                                        \
            body;                                                                               \
            idx++;                                                                              \
        }                                                                                       \
    } while (0)

static int count_visible(const llmlab_attn_keys *keys) {
    int n = 0;
    FOR_EACH_KEY(keys, slot, i, { n = i + 1; (void)slot; });
    return n;
}

/* A slot's key (which 0) or value (1) head as f32.  f32 storage: the cache's
 * own floats, read as always; other formats: the row decoded into buf (the
 * decoders are exact, so this is f32 attention over the decoded K/V). */
static inline const float *head_of(const llmlab_attn_keys *keys, int slot, int which, size_t hoff, float *buf) {
    const llmlab_kv *kv = keys->kv;
    if (kv->fmt.dtype == LLMLAB_KV_F32)
        return (which ? llmlab_kv_v_row(kv, keys->seq, slot, keys->layer) : llmlab_kv_k_row(kv, keys->seq, slot, keys->layer)) +
               hoff;
    return llmlab_kv_head(kv, keys->seq, slot, keys->layer, which, keys->kv_head, buf);
}

/* rope_shifted: the key of rank i is rotated at position i (into buf). */
static const float *key_at_rank(const llmlab_attn_keys *keys, const float *k, int rank, int head_dim, float *buf) {
    if (!keys->inv_freq) return k;
    memcpy(buf, k, (size_t)head_dim * sizeof *buf);
    llmlab_cpu_rope(buf, 1, head_dim, rank, keys->inv_freq);
    return buf;
}

void llmlab_cpu_attention(float *out, const float *q, int head_dim, const llmlab_attn_keys *keys,
                          float scale, float *scores, float *mass) {
    const size_t hoff = (size_t)keys->kv_head * (size_t)head_dim;
    float qbuf[LLMLAB_MAX_HEAD_DIM], kbuf[LLMLAB_MAX_HEAD_DIM], dbuf[LLMLAB_KV_MAX_HEAD_DIM];
    if (keys->inv_freq) /* StreamingLLM: the query sits at its rank, the last visible key */
        q = key_at_rank(keys, q, count_visible(keys) - 1, head_dim, qbuf);
    int n = 0;
    float mx = -INFINITY;
    FOR_EACH_KEY(keys, slot, i, {
        const float *k = key_at_rank(keys, head_of(keys, slot, 0, hoff, dbuf), i, head_dim, kbuf);
        float s = llmlab_cpu_dot(q, k, head_dim) * scale;
        scores[i] = s;
        if (s > mx) mx = s;
        n = i + 1;
    });
    memset(out, 0, (size_t)head_dim * sizeof *out);
    if (n == 0) return;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        scores[i] = expf(scores[i] - mx);
        sum += scores[i];
    }
    float inv = 1.0f / sum;
    FOR_EACH_KEY(keys, slot, i, {
        const float *v = head_of(keys, slot, 1, hoff, dbuf);
        float p = scores[i] * inv;
        for (int d = 0; d < head_dim; d++) out[d] += p * v[d];
        if (mass) mass[slot] += p;
    });
}

void llmlab_cpu_attention_ref(float *out, const float *q, int head_dim,
                              const llmlab_attn_keys *keys, float scale) {
    const size_t hoff = (size_t)keys->kv_head * (size_t)head_dim;
    float qbuf[LLMLAB_MAX_HEAD_DIM], kbuf[LLMLAB_MAX_HEAD_DIM], dbuf[LLMLAB_KV_MAX_HEAD_DIM],
        vbuf[LLMLAB_KV_MAX_HEAD_DIM];
    if (keys->inv_freq) q = key_at_rank(keys, q, count_visible(keys) - 1, head_dim, qbuf);
    double mx = -INFINITY, sum = 0.0;
    FOR_EACH_KEY(keys, slot, i, {
        const float *k = key_at_rank(keys, head_of(keys, slot, 0, hoff, dbuf), i, head_dim, kbuf);
        double s = 0.0;
        for (int d = 0; d < head_dim; d++) s += (double)q[d] * k[d];
        s *= scale;
        if (s > mx) mx = s;
        (void)i;
    });
    double acc[1024] = {0};
    FOR_EACH_KEY(keys, slot, i, {
        const float *k = key_at_rank(keys, head_of(keys, slot, 0, hoff, dbuf), i, head_dim, kbuf);
        const float *v = head_of(keys, slot, 1, hoff, vbuf);
        double s = 0.0;
        for (int d = 0; d < head_dim; d++) s += (double)q[d] * k[d];
        double p = exp(s * scale - mx);
        sum += p;
        for (int d = 0; d < head_dim && d < 1024; d++) acc[d] += p * v[d];
        (void)i;
    });
    for (int d = 0; d < head_dim && d < 1024; d++) out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.0f;
}
