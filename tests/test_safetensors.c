/* test_safetensors.c - safetensors round trips, sharded directories, and a clear
 * message for each kind of corrupt file. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/safetensors.h"
#include "util/fsutil.h"

static char *dir;

static void setup(void) { dir = fsu_mkdtemp(); cr_assert_not_null(dir); }
static void teardown(void) {
    fsu_rmtree(dir);
    free(dir);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

/* Opens a raw file with the given header + data bytes; expects failure with code
 * and a message containing each of up to two needles. */
static void expect_raw(const char *header, size_t data_len, llmlab_status code, const char *n1,
                       const char *n2) {
    char *p = fsu_join(dir, "model.safetensors");
    cr_assert_eq(fsu_write_st_raw(p, header, data_len), 0);
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    llmlab_status s = llmlab_st_open_file(&set, p, &e);
    cr_assert_eq(s, code, "status %d want %d: %s", s, code, e.msg);
    cr_assert(strstr(e.msg, "model.safetensors"), "no file name in '%s'", e.msg);
    cr_assert(!n1 || strstr(e.msg, n1), "'%s' lacks '%s'", e.msg, n1);
    cr_assert(!n2 || strstr(e.msg, n2), "'%s' lacks '%s'", e.msg, n2);
    cr_assert_eq(set.n_files, 0, "set not closed on error");
    free(p);
}

Test(safetensors, round_trip) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3c00, 0x4000, 0xc000};
    int64_t c[1] = {-42};
    llmlab_st_write_tensor ts[4] = {
        {.name = "w.a", .dtype = LLMLAB_ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "w.b", .dtype = LLMLAB_ST_BF16, .ndim = 1, .shape = {3}, .data = b},
        {.name = "w.\"quoted\"", .dtype = LLMLAB_ST_I64, .ndim = 0, .data = c},
        {.name = "empty", .dtype = LLMLAB_ST_F16, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    char *p = fsu_join(dir, "x.safetensors");
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_write(p, ts, 4, &e), LLMLAB_OK, "%s", e.msg);
    size_t n;
    char *raw = fsu_read(p, &n);
    uint64_t hl = 0;
    memcpy(&hl, raw, 8);
    cr_assert_eq(hl % 8, 0, "header length %llu not padded to 8", (unsigned long long)hl);
    cr_assert_eq(n, 8 + hl + 24 + 6 + 8);
    cr_assert_eq(raw[8 + hl - 1], ' ');
    free(raw);
    char *tmp = fsu_join(dir, "x.safetensors.tmp");
    cr_assert_not(fsu_exists(tmp));
    free(tmp);

    llmlab_st_set set = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(set.n_files, 1);
    cr_assert_eq(set.n_tensors, 4);
    cr_assert_str_eq(set.tensors[0].name, "w.a"); /* header order kept */
    const llmlab_st_tensor *t = llmlab_st_find(&set, "w.a");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, LLMLAB_ST_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->nbytes, 24);
    cr_assert_eq(memcmp(t->data, a, 24), 0);
    t = llmlab_st_find(&set, "w.b");
    cr_assert_eq(t->dtype, LLMLAB_ST_BF16);
    cr_assert_eq(memcmp(t->data, b, 6), 0);
    t = llmlab_st_find(&set, "w.\"quoted\"");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(memcmp(t->data, c, 8), 0);
    t = llmlab_st_find(&set, "empty");
    cr_assert_eq(t->nbytes, 0);
    cr_assert_null(llmlab_st_find(&set, "missing"));
    llmlab_st_close(&set);
    llmlab_st_close(&set); /* idempotent */
    free(p);
}

Test(safetensors, dtype_names_and_sizes) {
    llmlab_st_dtype d;
    cr_assert_eq(llmlab_st_dtype_parse("F8_E4M3", &d), 0);
    cr_assert_eq(d, LLMLAB_ST_F8_E4M3);
    cr_assert_eq(llmlab_st_dtype_size(LLMLAB_ST_F64), 8);
    cr_assert_eq(llmlab_st_dtype_size(LLMLAB_ST_BOOL), 1);
    cr_assert_str_eq(llmlab_st_dtype_name(LLMLAB_ST_BF16), "BF16");
    cr_assert_eq(llmlab_st_dtype_parse("F4", &d), -1);
}

Test(safetensors, file_too_short) {
    char *p = fsu_join(dir, "model.safetensors");
    fsu_write(p, "abc", 3);
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "3 bytes") && strstr(e.msg, "too short"), "%s", e.msg);
    free(p);
}

Test(safetensors, missing_file) {
    char *p = fsu_join(dir, "nope.safetensors");
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "nope.safetensors"), "%s", e.msg);
    free(p);
}

Test(safetensors, header_length_past_eof) {
    char *p = fsu_join(dir, "model.safetensors");
    unsigned char buf[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    fsu_write(p, buf, 10);
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "header length 200") && strstr(e.msg, "past the end"), "%s", e.msg);
    unsigned char huge[8] = {0, 0, 0, 0, 0, 0, 0, 0x80};
    fsu_write(p, huge, 8);
    cr_assert_eq(llmlab_st_open_file(&set, p, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "limit"), "%s", e.msg);
    free(p);
}

Test(safetensors, header_not_json) {
    expect_raw("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]", 4, LLMLAB_EFORMAT,
               "not valid JSON", NULL);
    expect_raw("[1, 2, 3]", 0, LLMLAB_EFORMAT, "not a JSON object", NULL);
    expect_raw("{}  x", 0, LLMLAB_EFORMAT, "junk", NULL);
    expect_raw("{\"a\": 5}", 0, LLMLAB_EFORMAT, "tensor 'a'", "not an object");
}

Test(safetensors, empty_header_ok) {
    char *p = fsu_join(dir, "model.safetensors");
    fsu_write_st_raw(p, "{\"__metadata__\": {\"format\": \"pt\"}}   ", 0);
    llmlab_st_set set = {0};
    cr_assert_eq(llmlab_st_open_file(&set, p, NULL), LLMLAB_OK);
    cr_assert_eq(set.n_tensors, 0);
    llmlab_st_close(&set);
    free(p);
}

Test(safetensors, offsets_past_end) {
    expect_raw("{\"model.layers.0.mlp.up_proj.weight\": {\"dtype\": \"F32\", \"shape\": [4], "
               "\"data_offsets\": [8, 24]}}",
               16, LLMLAB_EFORMAT, "tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [8, 24] past the end",
               "16 bytes");
    expect_raw("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "end before");
    expect_raw("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "data_offsets");
    expect_raw("{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 1e300]}}", 16,
               LLMLAB_EFORMAT, "tensor 't'", "data_offsets");
}

Test(safetensors, overlapping_tensors) {
    expect_raw("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
               "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
               16, LLMLAB_EFORMAT, "overlaps", "'a'");
}

Test(safetensors, size_mismatch) {
    expect_raw("{\"t\": {\"dtype\": \"F16\", \"shape\": [2, 3], \"data_offsets\": [0, 8]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "shape [2, 3] of F16");
    /* product overflows 64 bits */
    expect_raw("{\"t\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
               "\"data_offsets\": [0, 8]}}",
               16, LLMLAB_EFORMAT, "tensor 't'", "2^53");
}

Test(safetensors, unknown_dtype) {
    expect_raw("{\"t\": {\"dtype\": \"Q4_K\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 16,
               LLMLAB_EUNSUPPORTED, "tensor 't'", "unknown dtype 'Q4_K'");
    expect_raw("{\"t\": {\"dtype\": 5, \"shape\": [2], \"data_offsets\": [0, 2]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "dtype");
}

Test(safetensors, bad_shape) {
    expect_raw("{\"t\": {\"dtype\": \"U8\", \"shape\": [-2], \"data_offsets\": [0, 2]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "-2");
    expect_raw("{\"t\": {\"dtype\": \"U8\", \"shape\": [1.5], \"data_offsets\": [0, 2]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "shape");
    expect_raw("{\"t\": {\"dtype\": \"U8\", \"shape\": \"2\", \"data_offsets\": [0, 2]}}", 16, LLMLAB_EFORMAT,
               "tensor 't'", "shape");
    expect_raw("{\"t\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 16,
               LLMLAB_EFORMAT, "tensor 't'", "9 dimensions");
}

Test(safetensors, duplicate_in_one_file) {
    expect_raw("{\"t\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}, "
               "\"t\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]}}",
               16, LLMLAB_EFORMAT, "'t'", "twice");
}

/* Writes a two-shard directory: a+b in shard 1, c in shard 2, and an index. */
static void write_sharded(const char *index_json) {
    float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
    llmlab_st_write_tensor s1[2] = {{.name = "a", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {2}, .data = a},
                                    {.name = "b", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {3}, .data = b}};
    llmlab_st_write_tensor s2[1] = {{.name = "c", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {1}, .data = c}};
    char *p1 = fsu_join(dir, "model-00001-of-00002.safetensors");
    char *p2 = fsu_join(dir, "model-00002-of-00002.safetensors");
    char *pi = fsu_join(dir, "model.safetensors.index.json");
    cr_assert_eq(llmlab_st_write(p1, s1, 2, NULL), LLMLAB_OK);
    cr_assert_eq(llmlab_st_write(p2, s2, 1, NULL), LLMLAB_OK);
    cr_assert_eq(fsu_write(pi, index_json, strlen(index_json)), 0);
    free(p1);
    free(p2);
    free(pi);
}

static const char *GOOD_INDEX = "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {"
                                "\"a\": \"model-00001-of-00002.safetensors\", "
                                "\"b\": \"model-00001-of-00002.safetensors\", "
                                "\"c\": \"model-00002-of-00002.safetensors\"}}";

Test(safetensors, sharded_dir) {
    write_sharded(GOOD_INDEX);
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(set.n_files, 2);
    cr_assert_eq(set.n_tensors, 3);
    const llmlab_st_tensor *t = llmlab_st_find(&set, "c");
    cr_assert_not_null(t);
    cr_assert(strstr(set.files[t->file].path, "model-00002-of-00002"));
    cr_assert_float_eq(((const float *)t->data)[0], 6.0f, 0);
    cr_assert_float_eq(((const float *)llmlab_st_find(&set, "b")->data)[2], 5.0f, 0);
    llmlab_st_close(&set);
}

Test(safetensors, missing_shard_named) {
    write_sharded(GOOD_INDEX);
    char *p2 = fsu_join(dir, "model-00002-of-00002.safetensors");
    remove(p2);
    free(p2);
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "model-00002-of-00002.safetensors") && strstr(e.msg, "index.json") &&
                  strstr(e.msg, "missing"),
              "%s", e.msg);
    cr_assert_eq(set.n_files, 0);
}

Test(safetensors, index_names_wrong_shard) {
    write_sharded("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                  "\"c\": \"model-00001-of-00002.safetensors\", "
                  "\"b\": \"model-00002-of-00002.safetensors\"}}");
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "tensor 'c'") && strstr(e.msg, "model-00002-of-00002"), "%s", e.msg);
}

Test(safetensors, index_lists_absent_tensor) {
    write_sharded("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                  "\"zz\": \"model-00002-of-00002.safetensors\"}}");
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "'zz'"), "%s", e.msg);
}

Test(safetensors, bad_index) {
    write_sharded("{\"weight_map\": [1]}");
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "weight_map"), "%s", e.msg);
    write_sharded("{\"weight_map\": {\"a\": \"../etc/passwd\"}}");
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "'a'"), "%s", e.msg);
    write_sharded("{\"weight_map\": ");
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "malformed JSON"), "%s", e.msg);
}

Test(safetensors, duplicate_across_shards) {
    float a[2] = {1, 2};
    llmlab_st_write_tensor t = {.name = "a", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {2}, .data = a};
    char *p1 = fsu_join(dir, "s1.safetensors"), *p2 = fsu_join(dir, "s2.safetensors");
    char *pi = fsu_join(dir, "model.safetensors.index.json");
    llmlab_st_write(p1, &t, 1, NULL);
    llmlab_st_write(p2, &t, 1, NULL);
    const char *idx = "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}";
    fsu_write(pi, idx, strlen(idx));
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "'a'") && strstr(e.msg, "twice"), "%s", e.msg);
    free(p1);
    free(p2);
    free(pi);
}

Test(safetensors, empty_dir) {
    llmlab_st_set set = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&set, dir, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "no model.safetensors"), "%s", e.msg);
}

Test(safetensors, write_rejects_bad_input) {
    float a[2] = {1, 2};
    llmlab_st_write_tensor ts[2] = {{.name = "a", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {2}, .data = a},
                                    {.name = "a", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {2}, .data = a}};
    char *p = fsu_join(dir, "w.safetensors");
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_write(p, ts, 2, &e), LLMLAB_EINVAL);
    ts[1].name = "b";
    ts[1].shape[0] = -1;
    cr_assert_eq(llmlab_st_write(p, ts, 2, &e), LLMLAB_EINVAL);
    cr_assert_not(fsu_exists(p));
    free(p);
}

Test(safetensors, streaming_writer_counts_bytes) {
    llmlab_st_write_tensor t = {.name = "x", .dtype = LLMLAB_ST_U8, .ndim = 1, .shape = {10}};
    char *p = fsu_join(dir, "s.safetensors");
    llmlab_st_writer *w;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_writer_open(&w, p, &t, 1, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_st_writer_data(w, "abcde", 5, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_st_writer_finish(w, &e), LLMLAB_EINVAL); /* 5 of 10 */
    cr_assert(strstr(e.msg, "5 of 10"), "%s", e.msg);
    cr_assert_not(fsu_exists(p));
    char *tmp = fsu_join(dir, "s.safetensors.tmp");
    cr_assert_not(fsu_exists(tmp));
    cr_assert_eq(llmlab_st_writer_open(&w, p, &t, 1, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_st_writer_data(w, "0123456789x", 11, &e), LLMLAB_EINVAL);
    llmlab_st_writer_abort(w);
    cr_assert_not(fsu_exists(tmp));
    free(tmp);
    free(p);
}

/* A full disk: RLIMIT_FSIZE makes write() fail with EFBIG (SIGXFSZ ignored). */
Test(safetensors, write_error_leaves_no_file) {
    static float big[1 << 18]; /* 1 MiB */
    llmlab_st_write_tensor t = {.name = "big", .dtype = LLMLAB_ST_F32, .ndim = 1, .shape = {1 << 18}, .data = big};
    char *p = fsu_join(dir, "full.safetensors");
    char *tmp = fsu_join(dir, "full.safetensors.tmp");
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_write(p, &t, 1, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "full.safetensors.tmp") && strstr(e.msg, "write"), "%s", e.msg);
    cr_assert_not(fsu_exists(p));
    cr_assert_not(fsu_exists(tmp));
    free(p);
    free(tmp);
}
