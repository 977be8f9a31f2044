/* test_kv_cache.c - block accounting of the paged KV cache: allocation, free list,
 * copy-on-write, keep, evict and the out-of-memory path. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/kv_cache.h"

static llmlab_kv *make_kv(int blocks, int bs) {
    llmlab_kv_opts o = {.n_layers = 2, .n_kv_heads = 2, .head_dim = 4, .block_size = bs,
                        .n_blocks = blocks, .max_seqs = 4};
    llmlab_kv *kv = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_create(&kv, &o, &err), LLMLAB_OK, "%s", err.msg);
    return kv;
}

/* Writes value v into every K and V float of a slot (all layers). */
static void fill_slot(llmlab_kv *kv, int seq, int slot, float v) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 8; i++) {
            llmlab_kv_k_row(kv, seq, slot, l)[i] = v;
            llmlab_kv_v_row(kv, seq, slot, l)[i] = -v;
        }
}

static void append(llmlab_kv *kv, int seq, int n, int start_pos, float first_value) {
    int32_t pos[64];
    for (int i = 0; i < n; i++) pos[i] = start_pos + i;
    int first;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_append(kv, seq, n, pos, &first, &err), LLMLAB_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) fill_slot(kv, seq, first + i, first_value + (float)i);
}

Test(kv_cache, blocks_allocated_per_block_size_and_returned_on_free) {
    llmlab_kv *kv = make_kv(8, 4);
    append(kv, 0, 5, 0, 1);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    cr_assert_eq(llmlab_kv_resident_bytes(kv), 2 * llmlab_kv_block_bytes(kv));
    cr_assert_eq(llmlab_kv_block_bytes(kv), 2 * 2 * 4 * 8 * sizeof(float));
    append(kv, 0, 3, 5, 10);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    append(kv, 0, 1, 8, 20);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3);
    llmlab_kv_free_seq(kv, 0);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 0);
    llmlab_kv_free(kv);
}

Test(kv_cache, out_of_blocks_fails_cleanly) {
    llmlab_kv *kv = make_kv(2, 4);
    append(kv, 0, 6, 0, 1);
    int first;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_append(kv, 1, 5, NULL, &first, &err), LLMLAB_ENOKV);
    cr_assert(strstr(err.msg, "KV cache full"), "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 1), 0);
    cr_assert_eq(llmlab_kv_len(kv, 0), 6);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    llmlab_kv_free(kv);
}

Test(kv_cache, fork_shares_then_copies_on_write) {
    llmlab_kv *kv = make_kv(8, 4);
    append(kv, 0, 6, 0, 1);
    llmlab_kv_commit(kv, 0);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    append(kv, 1, 1, 6, 100); /* writes into the shared half-full block -> copy */
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3);
    cr_assert_eq(llmlab_kv_len(kv, 0), 6);
    cr_assert_float_eq(llmlab_kv_k_row(kv, 1, 6, 1)[0], 100.0f, 0);
    cr_assert_float_eq(llmlab_kv_k_row(kv, 1, 5, 1)[3], 6.0f, 0); /* copied content */
    cr_assert_neq(llmlab_kv_slot_block(kv, 0, 5), llmlab_kv_slot_block(kv, 1, 5));
    cr_assert_eq(llmlab_kv_slot_block(kv, 0, 0), llmlab_kv_slot_block(kv, 1, 0));
    llmlab_kv_free_seq(kv, 0);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2); /* the shared first block lives on in seq 1 */
    llmlab_kv_free_seq(kv, 1);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 0);
    llmlab_kv_free(kv);
}

Test(kv_cache, keep_compacts_accepted_slots_and_drops_the_rest) {
    llmlab_kv *kv = make_kv(8, 4);
    append(kv, 0, 3, 0, 1);
    llmlab_kv_commit(kv, 0);
    append(kv, 0, 7, 3, 10); /* provisional slots 3..9 hold 10..16 */
    int keep[] = {4, 6, 9};
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_keep(kv, 0, keep, 3, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 0), 6);
    cr_assert_eq(llmlab_kv_committed(kv, 0), 6);
    cr_assert_float_eq(llmlab_kv_k_row(kv, 0, 3, 0)[0], 11.0f, 0);
    cr_assert_float_eq(llmlab_kv_v_row(kv, 0, 4, 1)[7], -13.0f, 0);
    cr_assert_float_eq(llmlab_kv_k_row(kv, 0, 5, 1)[2], 16.0f, 0);
    cr_assert_eq(llmlab_kv_slot_pos(kv, 0, 5), 9);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    int bad[] = {1};
    cr_assert_eq(llmlab_kv_keep(kv, 0, bad, 1, &err), LLMLAB_EINVAL);
    llmlab_kv_free(kv);
}

Test(kv_cache, evict_frees_whole_blocks_only) {
    llmlab_kv *kv = make_kv(8, 4);
    append(kv, 0, 10, 0, 1);
    llmlab_kv_commit(kv, 0);
    llmlab_err err = {0};
    int ev[] = {0, 1, 2, 5};
    cr_assert_eq(llmlab_kv_evict(kv, 0, ev, 4, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3);
    cr_assert(!llmlab_kv_slot_valid(kv, 0, 1));
    cr_assert(llmlab_kv_slot_valid(kv, 0, 3));
    int ev2[] = {3};
    cr_assert_eq(llmlab_kv_evict(kv, 0, ev2, 1, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2, "block 0 fully evicted must return to the pool");
    cr_assert_eq(llmlab_kv_slot_block(kv, 0, 0), -1);
    cr_assert_null(llmlab_kv_k_row(kv, 0, 0, 0));
    /* the sequence keeps growing after holes */
    append(kv, 0, 3, 10, 50);
    cr_assert_eq(llmlab_kv_len(kv, 0), 13);
    cr_assert_float_eq(llmlab_kv_k_row(kv, 0, 12, 1)[0], 52.0f, 0);
    int prov[] = {11};
    cr_assert_eq(llmlab_kv_evict(kv, 0, prov, 1, &err), LLMLAB_EINVAL, "provisional slots are never evicted");
    llmlab_kv_free(kv);
}

Test(kv_cache, evict_in_a_shared_block_copies_first) {
    llmlab_kv *kv = make_kv(8, 4);
    append(kv, 0, 8, 0, 1);
    llmlab_kv_commit(kv, 0);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK);
    int ev[] = {1};
    cr_assert_eq(llmlab_kv_evict(kv, 1, ev, 1, &err), LLMLAB_OK);
    cr_assert(llmlab_kv_slot_valid(kv, 0, 1), "eviction in the fork must not touch the parent");
    cr_assert(!llmlab_kv_slot_valid(kv, 1, 1));
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3);
    llmlab_kv_free(kv);
}

Test(kv_cache, truncate_keeps_prefix_and_reuses_blocks) {
    llmlab_kv *kv = make_kv(4, 4);
    append(kv, 0, 16, 0, 1);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_truncate(kv, 0, 5, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2);
    append(kv, 1, 8, 0, 1);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 4);
    cr_assert_eq(llmlab_kv_truncate(kv, 0, 6, &err), LLMLAB_EINVAL);
    llmlab_kv_free(kv);
}

/* ---- lanes, compaction and score eviction (attention policies) ------------------ */

/* make_kv's geometry: 2 layers x 2 KV heads = 4 lanes of head_dim 4. */
enum { LANES = 4, HD = 4 };

/* The K value a slot holds in a lane: encodes position and lane, so moved data is checkable. */
static float lane_value(int32_t pos, int lane) { return (float)(pos * 10 + lane); }

static float *lane_k(llmlab_kv *kv, int seq, int slot, int lane) {
    return llmlab_kv_k_row(kv, seq, slot, lane / 2) + (lane % 2) * HD;
}

static void append_lane_coded(llmlab_kv *kv, int seq, int n, int start_pos) {
    int32_t pos[64];
    for (int i = 0; i < n; i++) pos[i] = start_pos + i;
    int first;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_append(kv, seq, n, pos, &first, &err), LLMLAB_OK, "%s", err.msg);
    for (int i = 0; i < n; i++)
        for (int lane = 0; lane < LANES; lane++)
            for (int d = 0; d < HD; d++) lane_k(kv, seq, first + i, lane)[d] = lane_value(pos[i], lane);
    llmlab_kv_commit(kv, seq);
}

Test(kv_cache, evict_lane_touches_one_lane_and_frees_a_block_only_when_all_lanes_are_empty) {
    llmlab_kv *kv = make_kv(8, 4);
    append_lane_coded(kv, 0, 10, 0);
    llmlab_err err = {0};
    int first_block[] = {0, 1, 2, 3};
    cr_assert_eq(llmlab_kv_evict_lane(kv, 0, 1, first_block, 4, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert(!llmlab_kv_lane_valid(kv, 0, 2, 1));
    cr_assert(llmlab_kv_lane_valid(kv, 0, 2, 0), "other lanes keep the slot");
    cr_assert(llmlab_kv_slot_valid(kv, 0, 2), "valid in some lane");
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3);
    for (int lane = 0; lane < LANES; lane++)
        if (lane != 1) cr_assert_eq(llmlab_kv_evict_lane(kv, 0, lane, first_block, 4, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 2, "a block empty in every lane returns to the pool");
    cr_assert_eq(llmlab_kv_evict_lane(kv, 0, LANES, first_block, 1, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "lane"), "%s", err.msg);
    llmlab_kv_free(kv);
}

Test(kv_cache, compaction_keeps_each_lanes_order_and_data_and_frees_the_tail) {
    llmlab_kv *kv = make_kv(16, 4);
    append_lane_coded(kv, 0, 20, 0);
    llmlab_err err = {0};
    /* each lane drops 8 different positions: equal counts, different keep sets */
    for (int lane = 0; lane < LANES; lane++) {
        int ev[8];
        for (int i = 0; i < 8; i++) ev[i] = (lane + 2 * i + (i > 3)) % 20;
        cr_assert_eq(llmlab_kv_evict_lane(kv, 0, lane, ev, 8, &err), LLMLAB_OK, "%s", err.msg);
    }
    int32_t before[LANES][20];
    for (int lane = 0; lane < LANES; lane++)
        for (int s = 0; s < 20; s++) before[lane][s] = llmlab_kv_lane_pos(kv, 0, s, lane);
    cr_assert_eq(llmlab_kv_blocks_used(kv), 5);
    cr_assert_eq(llmlab_kv_compact(kv, 0, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 0), 12);
    cr_assert_eq(llmlab_kv_tokens(kv, 0), 20, "the sequence still knows it saw 20 tokens");
    cr_assert_eq(llmlab_kv_blocks_used(kv), 3, "12 slots in blocks of 4");
    for (int lane = 0; lane < LANES; lane++) {
        int w = 0;
        for (int s = 0; s < 20; s++) {
            if (before[lane][s] < 0) continue;
            cr_assert_eq(llmlab_kv_lane_pos(kv, 0, w, lane), before[lane][s], "lane %d slot %d", lane, w);
            cr_assert_float_eq(lane_k(kv, 0, w, lane)[3], lane_value(before[lane][s], lane), 0);
            w++;
        }
        cr_assert_eq(w, 12);
    }
    /* appends continue after the compacted slots, at new positions */
    append_lane_coded(kv, 0, 2, 20);
    cr_assert_eq(llmlab_kv_lane_pos(kv, 0, 13, 2), 21);
    cr_assert_eq(llmlab_kv_tokens(kv, 0), 22);
    llmlab_kv_free(kv);
}

Test(kv_cache, compaction_of_a_forked_sequence_leaves_the_parent_alone) {
    llmlab_kv *kv = make_kv(16, 4);
    append_lane_coded(kv, 0, 12, 0);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_fork(kv, 0, 1, &err), LLMLAB_OK);
    int ev[] = {0, 1, 2, 5, 6};
    cr_assert_eq(llmlab_kv_evict(kv, 1, ev, 5, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_compact(kv, 1, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(llmlab_kv_len(kv, 1), 7);
    cr_assert_eq(llmlab_kv_lane_pos(kv, 1, 0, 3), 3);
    for (int s = 0; s < 12; s++) {
        cr_assert_eq(llmlab_kv_lane_pos(kv, 0, s, 3), s, "parent slot %d", s);
        cr_assert_float_eq(lane_k(kv, 0, s, 3)[0], lane_value(s, 3), 0);
    }
    llmlab_kv_free(kv);
}

Test(kv_cache, compaction_refuses_provisional_slots_and_skips_when_nothing_frees) {
    llmlab_kv *kv = make_kv(8, 4);
    append_lane_coded(kv, 0, 8, 0);
    llmlab_err err = {0};
    int ev[] = {3};
    cr_assert_eq(llmlab_kv_evict(kv, 0, ev, 1, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_compact(kv, 0, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_len(kv, 0), 8, "one hole frees no block: nothing moves");
    int first;
    cr_assert_eq(llmlab_kv_append(kv, 0, 1, NULL, &first, &err), LLMLAB_OK);
    int ev2[] = {4, 5, 6};
    cr_assert_eq(llmlab_kv_evict(kv, 0, ev2, 3, &err), LLMLAB_OK);
    cr_assert_eq(llmlab_kv_compact(kv, 0, &err), LLMLAB_EINVAL);
    llmlab_kv_free(kv);
}

/* Picking one victim at a time with llmlab_evict_pick must be what enforce does. */
Test(kv_cache, enforce_keeps_the_best_scores_and_protects_sinks_and_recent) {
    llmlab_kv *kv = make_kv(16, 4);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_enable_mass(kv, &err), LLMLAB_OK);
    append_lane_coded(kv, 0, 24, 0);
    srand(7);
    float val[LANES][24];
    for (int lane = 0; lane < LANES; lane++) {
        for (int s = 0; s < 24; s++) val[lane][s] = (float)(rand() % 5) / 4.0f; /* ties on purpose */
        llmlab_kv_add_mass(kv, 0, lane, val[lane], 24, 0);
    }
    llmlab_evict_rule r = {sizeof r, .capacity = 10, .recent = 3, .sinks = 2, .score = LLMLAB_SCORE_MASS};
    llmlab_kv_set_rule(kv, 0, &r);
    /* expected: iterate the pick rule on copies */
    uint8_t keep[LANES][24];
    int32_t pos[24];
    for (int s = 0; s < 24; s++) pos[s] = s;
    for (int lane = 0; lane < LANES; lane++) {
        memset(keep[lane], 1, 24);
        for (int left = 24; left > 10; left--) {
            int v = llmlab_evict_pick(&r, val[lane], pos, keep[lane], 24, 23);
            cr_assert_geq(v, 0);
            keep[lane][v] = 0;
        }
    }
    cr_assert_eq(llmlab_kv_enforce(kv, 0, 24, 23, &err), LANES * 14);
    for (int lane = 0; lane < LANES; lane++)
        for (int s = 0; s < 24; s++) {
            cr_assert_eq(llmlab_kv_lane_valid(kv, 0, s, lane), keep[lane][s], "lane %d slot %d", lane, s);
            if (s < 2 || s > 20) cr_assert(keep[lane][s], "sinks and the 3 newest are protected");
        }
    llmlab_kv_free(kv);
}

Test(kv_cache, add_mass_sums_valid_slots_and_last_holds_the_newest_query) {
    llmlab_kv *kv = make_kv(8, 4);
    llmlab_err err = {0};
    cr_assert_eq(llmlab_kv_enable_mass(kv, &err), LLMLAB_OK);
    append_lane_coded(kv, 0, 6, 0);
    float a[6] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.03125f}, b[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0, 0};
    llmlab_kv_add_mass(kv, 0, 2, a, 6, 1);
    llmlab_kv_add_mass(kv, 0, 2, b, 6, 0);
    long m = llmlab_kv_meta(kv, 0, 1, 2);
    cr_assert_float_eq(kv->mass[m], 0.25f + 0.2f, 0);
    cr_assert_float_eq(kv->obs[m], 0.25f, 0, "obs only from obs rows");
    cr_assert_float_eq(kv->last[m], 0.2f, 0);
    cr_assert_float_eq(kv->mass[llmlab_kv_meta(kv, 0, 1, 1)], 0.0f, 0, "other lanes untouched");
    llmlab_kv_free(kv);
}
