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
