/* kv_snapshot.h - the KV cache each request leaves when it finishes (taken in
 * the engine's on_finish callback), to check that a decoding plugin kept exactly
 * the slots autoregressive decoding would have: same length, positions and K/V.
 * Per lane (layer, KV head) it also records which token each slot holds, or -1
 * where the slot is not valid there (attention policies evict per lane).
 * Header-only (static inline): include it in the test files that use it. */
#ifndef LLMLAB_TEST_KV_SNAPSHOT_H
#define LLMLAB_TEST_KV_SNAPSHOT_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"

enum { KVS_MAX_REQS = 64 };

typedef struct {
    int n;                          /* requests recorded */
    int len[KVS_MAX_REQS];          /* slots in the request's cache */
    int32_t *pos[KVS_MAX_REQS];     /* [len] position of each slot */
    float *rows[KVS_MAX_REQS];      /* [len][layers][2][row_floats] K then V per layer */
    size_t slot_floats;             /* layers * 2 * row_floats */
    int n_lanes;                    /* layers * kv_heads */
    int32_t *lane_pos[KVS_MAX_REQS]; /* [len][n_lanes] position held, -1 = not valid in that lane */
} kv_snapshot;

/* An llmlab_finish_fn: records request req_id's cache (user = kv_snapshot *). */
static inline void kvs_on_finish(void *user, llmlab_engine *e, int req_id, int kv_seq) {
    kv_snapshot *s = user;
    llmlab_kv *kv = llmlab_engine_kv(e);
    int len = llmlab_kv_len(kv, kv_seq), L = kv->o.n_layers;
    size_t rf = kv->row_floats;
    cr_assert(req_id >= 0 && req_id < KVS_MAX_REQS, "kv_snapshot: request id %d", req_id);
    s->slot_floats = (size_t)L * 2 * rf;
    s->n_lanes = kv->n_lanes;
    s->len[req_id] = len;
    s->pos[req_id] = malloc((size_t)(len ? len : 1) * sizeof(int32_t));
    s->rows[req_id] = calloc((size_t)(len ? len : 1) * s->slot_floats, sizeof(float));
    s->lane_pos[req_id] = malloc((size_t)(len ? len : 1) * (size_t)kv->n_lanes * sizeof(int32_t));
    cr_assert(s->pos[req_id] && s->rows[req_id] && s->lane_pos[req_id]);
    for (int slot = 0; slot < len; slot++) {
        s->pos[req_id][slot] = llmlab_kv_slot_pos(kv, kv_seq, slot);
        for (int lane = 0; lane < kv->n_lanes; lane++)
            s->lane_pos[req_id][(size_t)slot * (size_t)kv->n_lanes + (size_t)lane] =
                llmlab_kv_lane_pos(kv, kv_seq, slot, lane);
        if (llmlab_kv_slot_block(kv, kv_seq, slot) < 0) continue; /* block freed: K/V stay 0 */
        for (int l = 0; l < L; l++) {
            float *dst = s->rows[req_id] + (size_t)slot * s->slot_floats + (size_t)l * 2 * rf;
            memcpy(dst, llmlab_kv_k_row(kv, kv_seq, slot, l), rf * sizeof(float));
            memcpy(dst + rf, llmlab_kv_v_row(kv, kv_seq, slot, l), rf * sizeof(float));
        }
    }
    s->n++;
}

/* Asserts got holds the same caches as want for requests 0..n-1. */
static inline void kvs_assert_same(const kv_snapshot *want, const kv_snapshot *got, int n, const char *what) {
    cr_assert_eq(want->n, n, "%s: %d caches recorded for autoregressive, want %d", what, want->n, n);
    cr_assert_eq(got->n, n, "%s: %d caches recorded, want %d", what, got->n, n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(got->len[i], want->len[i], "%s: request %d cache length %d, autoregressive %d", what, i,
                     got->len[i], want->len[i]);
        cr_assert(memcmp(got->pos[i], want->pos[i], (size_t)want->len[i] * sizeof(int32_t)) == 0,
                  "%s: request %d slot positions differ", what, i);
        cr_assert(memcmp(got->rows[i], want->rows[i], (size_t)want->len[i] * want->slot_floats * sizeof(float)) == 0,
                  "%s: request %d K/V differ from autoregressive decoding", what, i);
    }
}

/* The position slot `slot` of request req holds in lane `lane`, -1 when not valid there. */
static inline int32_t kvs_lane_pos(const kv_snapshot *s, int req, int slot, int lane) {
    return s->lane_pos[req][(size_t)slot * (size_t)s->n_lanes + (size_t)lane];
}

static inline void kvs_free(kv_snapshot *s) {
    for (int i = 0; i < KVS_MAX_REQS; i++) {
        free(s->pos[i]);
        free(s->rows[i]);
        free(s->lane_pos[i]);
    }
    memset(s, 0, sizeof *s);
}

#endif
