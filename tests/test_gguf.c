/* test_gguf.c - the GGUF reader against files this test writes byte by byte.
 *
 * The writer (tests/util/gguf_writer.c) is independent of core/gguf.c (its own
 * little-endian encoding from the format description), so a misreading of the
 * format on one side does not cancel out on the other.  Values are fresh random
 * every run (the seed is printed; LLMLAB_TEST_SEED repeats a run): every metadata type,
 * nested arrays, strings with NUL bytes, a random alignment, F32/F16/Q8_0
 * tensors at shuffled aligned offsets.  Then one corrupt file per kind of damage,
 * each with the message fragment it must produce, and a truncation at every
 * offset of a small file. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "core/rng.h"
#include "util/fixture_model.h"
#include "util/fsutil.h"
#include "util/gguf_writer.h"
#include "util/tmpdir.h"

static char *dir;
static llmlab_rng g_rng;
static uint64_t g_seed;

static void setup(void) {
    dir = tmpdir_make();
    g_seed = fixture_seed("gguf");
    llmlab_rng_seed(&g_rng, g_seed, 0);
}

static void teardown(void) { tmpdir_remove(dir); }

TestSuite(gguf, .init = setup, .fini = teardown);

static uint64_t rnd(void) { return llmlab_rng_next(&g_rng); }

static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

/* ---- random metadata values (a model of what was written) -------------------------------- */

static const int scalar_bytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct tv {
    uint32_t type;    /* GGUF value type */
    uint64_t bits;    /* scalars: the stored little-endian bits */
    char *s;          /* strings: bytes (may hold NULs) */
    size_t len;       /* strings: byte count */
    uint32_t elem;    /* arrays: element type */
    uint64_t n;       /* arrays: element count */
    struct tv *kids;  /* arrays: [n] elements */
} tv;

static uint64_t rnd_scalar_bits(uint32_t t) {
    uint64_t r = rnd();
    if (t == GW_BOOL) return r & 1;
    if (t == GW_F32) {
        float f = (float)((double)(int64_t)r / 9.2e18 * pow(10, (int)rnd_below(20) - 10));
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }
    if (t == GW_F64) {
        double d = (double)(int64_t)r / 9.2e18 * pow(10, (int)rnd_below(200) - 100);
        uint64_t u;
        memcpy(&u, &d, 8);
        return u;
    }
    int nb = scalar_bytes[t];
    return nb == 8 ? r : r & ((1ull << (8 * nb)) - 1);
}

static void rnd_value(tv *v, uint32_t t, int depth) {
    memset(v, 0, sizeof *v);
    v->type = t;
    if (t == GW_STR) {
        v->len = rnd_below(4) ? rnd_below(40) : 0;
        v->s = malloc(v->len + 1);
        for (size_t i = 0; i < v->len; i++) v->s[i] = (char)(rnd_below(8) ? 32 + rnd_below(95) : rnd_below(256));
    } else if (t == GW_ARR) {
        do v->elem = (uint32_t)rnd_below(13);
        while (v->elem == GW_ARR && depth >= 2);
        v->n = rnd_below(5) == 0 ? 0 : rnd_below(5) == 0 ? 300 + rnd_below(700) : 1 + rnd_below(12);
        if (v->elem == GW_ARR || v->elem == GW_STR) v->n %= 40;
        if (depth > 0) v->n %= 8; /* keeps nested arrays small */
        v->kids = calloc(v->n ? v->n : 1, sizeof *v->kids);
        for (uint64_t i = 0; i < v->n; i++) rnd_value(&v->kids[i], v->elem, depth + 1);
    } else {
        v->bits = rnd_scalar_bits(t);
    }
}

static void free_tv(tv *v) {
    free(v->s);
    for (uint64_t i = 0; i < v->n; i++) free_tv(&v->kids[i]);
    free(v->kids);
}

/* The value's bytes without its type tag (arrays: element type, count, elements). */
static void put_value(gw_buf *b, const tv *v) {
    if (v->type == GW_STR) gw_put_str(b, v->s, v->len);
    else if (v->type == GW_ARR) {
        gw_put_u32(b, v->elem);
        gw_put_u64(b, v->n);
        for (uint64_t i = 0; i < v->n; i++) put_value(b, &v->kids[i]);
    } else gw_put_le(b, v->bits, scalar_bytes[v->type]);
}

/* ---- checking what the reader returns ------------------------------------------------------ */

static int is_signed(uint32_t t) { return t == GW_I8 || t == GW_I16 || t == GW_I32 || t == GW_I64; }

static int64_t sign_extend(uint64_t bits, int bytes) {
    if (bytes == 8) return (int64_t)bits;
    uint64_t m = 1ull << (8 * bytes - 1);
    return (int64_t)((bits ^ m) - m);
}

static double float_of(const tv *e) {
    if (e->type == GW_F32) {
        uint32_t u = (uint32_t)e->bits;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    double d;
    memcpy(&d, &e->bits, 8);
    return d;
}

/* Expected reads of a scalar through the u64/i64/f64/bool accessors. */
static void check_scalar(const tv *e, int ru, uint64_t u, int ri, int64_t i, int rf, double f, int rb, int b,
                         const char *where) {
    if (e->type == GW_BOOL) {
        cr_assert(ru && ri && rf && !rb, "%s: bool read as a number (seed %llu)", where, (unsigned long long)g_seed);
        cr_assert_eq((uint64_t)b, e->bits, "%s: bool %d want %llu", where, b, (unsigned long long)e->bits);
    } else if (e->type == GW_F32 || e->type == GW_F64) {
        cr_assert(ru && ri && !rf && rb, "%s: float conversions wrong", where);
        cr_assert(f == float_of(e), "%s: %.17g want %.17g (seed %llu)", where, f, float_of(e), (unsigned long long)g_seed);
    } else if (is_signed(e->type)) {
        int64_t want = sign_extend(e->bits, scalar_bytes[e->type]);
        cr_assert(!ri && i == want, "%s: i64 %lld want %lld", where, (long long)i, (long long)want);
        cr_assert_eq(!ru, want >= 0, "%s: u64 read of %lld", where, (long long)want);
        if (want >= 0) cr_assert_eq(u, (uint64_t)want);
        cr_assert(!rf && f == (double)want, "%s: f64 read", where);
        cr_assert(rb, "%s: integer read as bool", where);
    } else {
        cr_assert(!ru && u == e->bits, "%s: u64 %llu want %llu", where, (unsigned long long)u,
                  (unsigned long long)e->bits);
        cr_assert_eq(!ri, e->bits <= (uint64_t)INT64_MAX, "%s: i64 read of %llu", where, (unsigned long long)e->bits);
        cr_assert(!rf && f == (double)e->bits, "%s: f64 read", where);
        cr_assert(rb, "%s: integer read as bool", where);
    }
}

static void check_value(const llmlab_gguf_value *v, const tv *e, const char *where);

static void check_array(const llmlab_gguf_value *v, const tv *e, const char *where) {
    cr_assert_eq(llmlab_gguf_arr_type(v), (llmlab_gguf_type)e->elem, "%s: element type", where);
    cr_assert_eq(llmlab_gguf_arr_len(v), e->n, "%s: length %llu want %llu", where,
                 (unsigned long long)llmlab_gguf_arr_len(v), (unsigned long long)e->n);
    char w[256];
    for (uint64_t i = 0; i < e->n; i++) {
        const tv *k = &e->kids[i];
        snprintf(w, sizeof w, "%s[%llu]", where, (unsigned long long)i);
        if (e->elem == GW_ARR) {
            check_value(llmlab_gguf_arr_arr(v, i), k, w);
        } else if (e->elem == GW_STR) {
            size_t len = 0;
            const char *s = llmlab_gguf_arr_str(v, i, &len);
            cr_assert(s && len == k->len && !memcmp(s, k->s, len) && s[len] == 0, "%s: string differs", w);
        } else {
            uint64_t u = 0;
            int64_t x = 0;
            double f = 0;
            int b = 0;
            int ru = llmlab_gguf_arr_u64(v, i, &u), ri = llmlab_gguf_arr_i64(v, i, &x);
            int rf = llmlab_gguf_arr_f64(v, i, &f), rb = llmlab_gguf_arr_bool(v, i, &b);
            check_scalar(k, ru, u, ri, x, rf, f, rb, b, w);
        }
    }
    /* Out of range and wrong-kind element reads fail cleanly. */
    uint64_t u;
    cr_assert_eq(llmlab_gguf_arr_u64(v, e->n, &u), -1, "%s: read past the end", where);
    cr_assert_null(llmlab_gguf_arr_str(v, e->n, NULL));
    if (e->elem != GW_STR && e->elem != GW_ARR) {
        const unsigned char *raw = llmlab_gguf_arr_data(v);
        cr_assert(raw || e->n == 0);
        for (uint64_t i = 0; i < e->n; i++) {
            uint64_t bits = 0;
            int nb = scalar_bytes[e->elem];
            for (int j = 0; j < nb; j++) bits |= (uint64_t)raw[i * (uint64_t)nb + (uint64_t)j] << (8 * j);
            cr_assert_eq(bits, e->kids[i].bits, "%s: raw element %llu", where, (unsigned long long)i);
        }
    } else {
        cr_assert_null(llmlab_gguf_arr_data(v));
    }
}

static void check_value(const llmlab_gguf_value *v, const tv *e, const char *where) {
    cr_assert_not_null(v, "%s: no value", where);
    cr_assert_eq(llmlab_gguf_value_type(v), (llmlab_gguf_type)e->type, "%s: type %d want %u", where,
                 llmlab_gguf_value_type(v), e->type);
    if (e->type == GW_ARR) {
        check_array(v, e, where);
    } else if (e->type == GW_STR) {
        size_t len = 0;
        const char *s = llmlab_gguf_value_str(v, &len);
        cr_assert(s && len == e->len && !memcmp(s, e->s, len) && s[len] == 0, "%s: string differs", where);
    } else {
        uint64_t u = 0;
        int64_t x = 0;
        double f = 0;
        int b = 0;
        int ru = llmlab_gguf_value_u64(v, &u), ri = llmlab_gguf_value_i64(v, &x);
        int rf = llmlab_gguf_value_f64(v, &f), rb = llmlab_gguf_value_bool(v, &b);
        check_scalar(e, ru, u, ri, x, rf, f, rb, b, where);
    }
}

/* ---- a random file -------------------------------------------------------------------- */

typedef struct {
    char name[48];       /* unique */
    uint32_t type;       /* 0 F32, 1 F16, 8 Q8_0 */
    int n_dims;          /* 1..4 */
    uint64_t ne[4];      /* [n_dims] ggml order (ne[0] = row length) */
    uint64_t nbytes;     /* storage size */
    uint64_t offset;     /* in the data section */
    unsigned char *data; /* [nbytes] random bytes */
} tt;

/* Bytes of a tensor, from ggml's block layouts: F32 4, F16 2, Q8_0 = f16 scale + 32 int8. */
static uint64_t tensor_bytes(const tt *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return t->type == 0 ? 4 * n : t->type == 1 ? 2 * n : n / 32 * 34;
}

static void rnd_tensor(tt *t, int i) {
    static const uint32_t types[] = {0, 1, 8};
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "blk.%d.w%llu", i, (unsigned long long)rnd_below(1000));
    t->type = types[rnd_below(3)];
    t->n_dims = 1 + (int)rnd_below(4);
    for (int d = 0; d < t->n_dims; d++) t->ne[d] = 1 + rnd_below(d ? 3 : 40);
    if (t->type == 8) t->ne[0] = 32 * (1 + rnd_below(3));
    t->nbytes = tensor_bytes(t);
    t->data = malloc(t->nbytes);
    for (uint64_t j = 0; j < t->nbytes; j++) t->data[j] = (unsigned char)rnd();
}

typedef struct {
    uint32_t version, alignment; /* alignment 0: key absent (default 32) */
    int n_kv;                    /* random keys (general.alignment not counted) */
    char keys[40][48];           /* [n_kv] their names */
    tv vals[40];                 /* [n_kv] their values */
    int n_t;                     /* tensors */
    tt ts[8];                    /* [n_t] in file order */
    uint64_t data_offset;        /* where the data section starts */
    gw_buf file;                    /* the whole file */
} rfile;

static void build_random(rfile *f) {
    memset(f, 0, sizeof *f);
    f->version = rnd_below(4) ? 3 : 2;
    static const uint32_t aligns[] = {0, 1, 8, 16, 32, 64, 256};
    f->alignment = aligns[rnd_below(7)];
    f->n_kv = 14 + (int)rnd_below(20);
    for (int i = 0; i < f->n_kv; i++) {
        /* Every type at least once: keys 0..12 take types 0..12 in a shuffled order. */
        uint32_t t = i < 13 ? (uint32_t)((i * 5 + 3) % 13) : (uint32_t)rnd_below(13);
        snprintf(f->keys[i], sizeof f->keys[i], "test.k%d.%llx", i, (unsigned long long)rnd_below(1u << 20));
        rnd_value(&f->vals[i], t, 0);
    }
    f->n_t = 1 + (int)rnd_below(6);
    for (int i = 0; i < f->n_t; i++) rnd_tensor(&f->ts[i], i);
    uint32_t a = f->alignment ? f->alignment : 32;
    /* Data laid out in a shuffled order with random aligned gaps. */
    int order[8];
    for (int i = 0; i < f->n_t; i++) order[i] = i;
    for (int i = f->n_t - 1; i > 0; i--) {
        int j = (int)rnd_below((uint64_t)i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    uint64_t off = 0;
    for (int k = 0; k < f->n_t; k++) {
        tt *t = &f->ts[order[k]];
        off += a * rnd_below(3);
        t->offset = off;
        off = (off + t->nbytes + a - 1) / a * a;
    }
    gw_buf *b = &f->file;
    gw_put(b, "GGUF", 4);
    gw_put_u32(b, f->version);
    gw_put_u64(b, (uint64_t)f->n_t);
    gw_put_u64(b, (uint64_t)f->n_kv + (f->alignment != 0));
    for (int i = 0; i < f->n_kv; i++) {
        if (i == f->n_kv / 2 && f->alignment) {
            gw_put_cstr(b, "general.alignment");
            gw_put_u32(b, GW_U32);
            gw_put_u32(b, f->alignment);
        }
        gw_put_cstr(b, f->keys[i]);
        gw_put_u32(b, f->vals[i].type);
        put_value(b, &f->vals[i]);
    }
    for (int i = 0; i < f->n_t; i++) {
        tt *t = &f->ts[i];
        gw_put_cstr(b, t->name);
        gw_put_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) gw_put_u64(b, t->ne[d]);
        gw_put_u32(b, t->type);
        gw_put_u64(b, t->offset);
    }
    gw_pad_to(b, a);
    f->data_offset = b->n;
    size_t end = b->n;
    for (int i = 0; i < f->n_t; i++)
        if (f->data_offset + f->ts[i].offset + f->ts[i].nbytes > end) end = f->data_offset + f->ts[i].offset + f->ts[i].nbytes;
    while (b->n < end) gw_put_le(b, 0xAA, 1); /* fill, then the tensors over it */
    for (int i = 0; i < f->n_t; i++) memcpy(b->p + f->data_offset + f->ts[i].offset, f->ts[i].data, f->ts[i].nbytes);
}

static void free_random(rfile *f) {
    for (int i = 0; i < f->n_kv; i++) free_tv(&f->vals[i]);
    for (int i = 0; i < f->n_t; i++) free(f->ts[i].data);
    free(f->file.p);
}

Test(gguf, random_files_read_back_exactly) {
    for (int rep = 0; rep < 20; rep++) {
        rfile f;
        build_random(&f);
        char *p = gw_write_file(dir, "r.gguf", &f.file);
        llmlab_gguf *g = NULL;
        llmlab_err e = {0};
        cr_assert_eq(llmlab_gguf_open(&g, p, &e), LLMLAB_OK, "%s (seed %llu)", e.msg, (unsigned long long)g_seed);
        cr_assert_eq(llmlab_gguf_version(g), f.version);
        cr_assert_eq(llmlab_gguf_alignment(g), f.alignment ? f.alignment : 32u);
        cr_assert_eq(llmlab_gguf_data_offset(g), f.data_offset);
        cr_assert_eq(llmlab_gguf_file_size(g), f.file.n);
        cr_assert_eq(llmlab_gguf_n_kv(g), f.n_kv + (f.alignment != 0));
        for (int i = 0; i < f.n_kv; i++) {
            int64_t k = llmlab_gguf_find_key(g, f.keys[i]);
            cr_assert(k >= 0, "key %s not found", f.keys[i]);
            cr_assert_str_eq(llmlab_gguf_kv_key(g, k), f.keys[i]);
            cr_assert_eq(llmlab_gguf_kv_value(g, k), llmlab_gguf_get(g, f.keys[i]));
            /* File order: the alignment key (if any) sits before key n_kv/2. */
            cr_assert_eq(k, i + (f.alignment && i >= f.n_kv / 2));
            check_value(llmlab_gguf_get(g, f.keys[i]), &f.vals[i], f.keys[i]);
        }
        cr_assert_eq(llmlab_gguf_find_key(g, "test.absent"), -1);
        cr_assert_null(llmlab_gguf_get(g, "test.k"));
        cr_assert_eq(llmlab_gguf_n_tensors(g), f.n_t);
        for (int i = 0; i < f.n_t; i++) {
            const tt *t = &f.ts[i];
            const llmlab_gguf_tensor *r = llmlab_gguf_find_tensor(g, t->name);
            cr_assert_not_null(r, "tensor %s not found", t->name);
            cr_assert_eq(r, llmlab_gguf_tensor_at(g, i));
            cr_assert_str_eq(r->name, t->name);
            cr_assert_eq(r->type, t->type);
            cr_assert_eq(r->n_dims, t->n_dims);
            uint64_t n = 1;
            for (int d = 0; d < 4; d++) {
                cr_assert_eq((uint64_t)r->ne[d], d < t->n_dims ? t->ne[d] : 1u, "%s ne[%d]", t->name, d);
                n *= (uint64_t)r->ne[d];
            }
            cr_assert_eq(r->n_elements, n);
            cr_assert_eq(r->offset, t->offset);
            cr_assert_eq(r->nbytes, t->nbytes, "%s: %llu bytes want %llu", t->name, (unsigned long long)r->nbytes,
                         (unsigned long long)t->nbytes);
            const void *data = NULL;
            size_t nb = 0;
            cr_assert_eq(llmlab_gguf_tensor_data(g, r, &data, &nb, &e), LLMLAB_OK, "%s", e.msg);
            cr_assert_eq(nb, t->nbytes);
            cr_assert_eq(memcmp(data, t->data, nb), 0, "%s: data differs", t->name);
        }
        cr_assert_null(llmlab_gguf_find_tensor(g, "blk.absent"));
        llmlab_gguf_close(g);
        free(p);
        free_random(&f);
    }
}

/* ---- typed getters ------------------------------------------------------------------------ */

static char *getter_file(void) {
    gw_buf b = {0};
    gw_put(&b, "GGUF", 4);
    gw_put_u32(&b, 3);
    gw_put_u64(&b, 0);
    gw_put_u64(&b, 9);
    gw_put_cstr(&b, "a.u8"), gw_put_u32(&b, GW_U8), gw_put_le(&b, 200, 1);
    gw_put_cstr(&b, "a.i8"), gw_put_u32(&b, GW_I8), gw_put_le(&b, 0xFB, 1); /* -5 */
    gw_put_cstr(&b, "a.u64"), gw_put_u32(&b, GW_U64), gw_put_u64(&b, 1ull << 40);
    gw_put_cstr(&b, "a.i64"), gw_put_u32(&b, GW_I64), gw_put_u64(&b, (uint64_t)-3);
    gw_put_cstr(&b, "a.f64"), gw_put_u32(&b, GW_F64), gw_put_u64(&b, 0x4009200000000000ull); /* 3.140625 */
    gw_put_cstr(&b, "a.big"), gw_put_u32(&b, GW_F64), gw_put_u64(&b, 0x7FEFFFFFFFFFFFFFull); /* DBL_MAX */
    gw_put_cstr(&b, "a.b"), gw_put_u32(&b, GW_BOOL), gw_put_le(&b, 1, 1);
    gw_put_cstr(&b, "a.s"), gw_put_u32(&b, GW_STR), gw_put_cstr(&b, "llama");
    gw_put_cstr(&b, "a.arr"), gw_put_u32(&b, GW_ARR), gw_put_u32(&b, GW_I32), gw_put_u64(&b, 2), gw_put_u32(&b, 7),
        gw_put_u32(&b, 0xFFFFFFFF);
    char *p = gw_write_file(dir, "getters.gguf", &b);
    free(b.p);
    return p;
}

Test(gguf, typed_getters_convert_or_say_why) {
    char *p = getter_file();
    llmlab_gguf *g = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_gguf_open(&g, p, &e), LLMLAB_OK, "%s", e.msg);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    int b;
    const char *s;
    size_t len;
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.u8", &u32, &e), LLMLAB_OK);
    cr_assert_eq(u32, 200);
    cr_assert_eq(llmlab_gguf_get_i32(g, "a.i8", &i32, &e), LLMLAB_OK);
    cr_assert_eq(i32, -5);
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.i8", &u32, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "getters.gguf") && strstr(e.msg, "'a.i8'") && strstr(e.msg, "int8 -5") &&
                  strstr(e.msg, "uint32"), "%s", e.msg);
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.u64", &u32, &e), LLMLAB_EFORMAT, "2^40 fits no uint32");
    cr_assert_eq(llmlab_gguf_get_u64(g, "a.u64", &u64, &e), LLMLAB_OK);
    cr_assert_eq(u64, 1ull << 40);
    cr_assert_eq(llmlab_gguf_get_i32(g, "a.i64", &i32, &e), LLMLAB_OK);
    cr_assert_eq(i32, -3);
    cr_assert_eq(llmlab_gguf_get_i64(g, "a.u8", &i64, &e), LLMLAB_OK);
    cr_assert_eq(i64, 200);
    cr_assert_eq(llmlab_gguf_get_f32(g, "a.f64", &f32, &e), LLMLAB_OK);
    cr_assert_eq(f32, 3.140625f);
    cr_assert_eq(llmlab_gguf_get_f32(g, "a.i8", &f32, &e), LLMLAB_OK);
    cr_assert_eq(f32, -5.0f);
    cr_assert_eq(llmlab_gguf_get_f32(g, "a.big", &f32, &e), LLMLAB_EFORMAT, "DBL_MAX is no float");
    cr_assert_eq(llmlab_gguf_get_f64(g, "a.big", &f64, &e), LLMLAB_OK);
    cr_assert_eq(llmlab_gguf_get_i32(g, "a.f64", &i32, &e), LLMLAB_EFORMAT, "floats are not integers");
    cr_assert_eq(llmlab_gguf_get_bool(g, "a.b", &b, &e), LLMLAB_OK);
    cr_assert_eq(b, 1);
    cr_assert_eq(llmlab_gguf_get_bool(g, "a.u8", &b, &e), LLMLAB_EFORMAT);
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.b", &u32, &e), LLMLAB_EFORMAT);
    cr_assert_eq(llmlab_gguf_get_str(g, "a.s", &s, &len, &e), LLMLAB_OK);
    cr_assert_str_eq(s, "llama");
    cr_assert_eq(len, 5);
    cr_assert_eq(llmlab_gguf_get_str(g, "a.u8", &s, &len, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "holds uint8 200, not a string"), "%s", e.msg);
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.arr", &u32, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "array of 2 numbers"), "%s", e.msg);
    cr_assert_eq(llmlab_gguf_get_u32(g, "a.none", &u32, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "'a.none' is missing"), "%s", e.msg);
    const llmlab_gguf_value *arr = llmlab_gguf_get(g, "a.arr");
    int64_t x;
    cr_assert(!llmlab_gguf_arr_i64(arr, 1, &x) && x == -1);
    cr_assert_eq(llmlab_gguf_arr_u64(arr, 1, &u64), -1, "-1 is no uint64");
    cr_assert_eq(llmlab_gguf_n_tensors(g), 0);
    cr_assert_eq(llmlab_gguf_alignment(g), 32);
    llmlab_gguf_close(g);
    free(p);
}

Test(gguf, ggml_type_sizes_follow_the_block_layouts) {
    /* Block bytes from ggml-common.h's struct layouts, written out field by field. */
    const struct {
        uint32_t id, blck, bytes;
    } want[] = {
        {0, 1, 4},   {1, 1, 2},   {30, 1, 2},  {28, 1, 8},    {24, 1, 1},  {25, 1, 2},  {26, 1, 4},
        {27, 1, 8},  {2, 32, 2 + 16}, {3, 32, 2 + 2 + 16}, {6, 32, 2 + 4 + 16}, {7, 32, 2 + 2 + 4 + 16},
        {8, 32, 2 + 32}, {9, 32, 2 + 2 + 32}, {10, 256, 2 + 2 + 16 + 64}, {11, 256, 2 + 64 + 32 + 12},
        {12, 256, 2 + 2 + 12 + 128}, {13, 256, 2 + 2 + 12 + 32 + 128}, {14, 256, 2 + 16 + 128 + 64},
        {15, 256, 4 + 256 + 2 * 16}, {16, 256, 2 + 64}, {17, 256, 2 + 64 + 8}, {18, 256, 2 + 96},
        {19, 256, 2 + 32 + 16}, {20, 32, 2 + 16}, {21, 256, 2 + 64 + 8 + 32 + 4}, {22, 256, 2 + 64 + 16},
        {23, 256, 2 + 2 + 4 + 128}, {29, 256, 32 + 16 + 8}, {34, 256, 48 + 4 + 2}, {35, 256, 64 + 2},
        {39, 32, 1 + 16},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint32_t blck = 0, bytes = 0;
        cr_assert_eq(llmlab_ggml_type_size(want[i].id, &blck, &bytes), 0, "type %u unknown", want[i].id);
        cr_assert(blck == want[i].blck && bytes == want[i].bytes, "type %u (%s): %u/%u want %u/%u", want[i].id,
                  llmlab_ggml_type_name(want[i].id), blck, bytes, want[i].blck, want[i].bytes);
    }
    const uint32_t retired[] = {4, 5, 31, 32, 33, 36, 37, 38, 1000};
    for (size_t i = 0; i < sizeof retired / sizeof retired[0]; i++) {
        cr_assert_eq(llmlab_ggml_type_size(retired[i], NULL, NULL), -1, "id %u", retired[i]);
        cr_assert_str_eq(llmlab_ggml_type_name(retired[i]), "?");
    }
    cr_assert_str_eq(llmlab_ggml_type_name(8), "q8_0");
}

/* ---- a small file and its corruptions ---------------------------------------------------------- */

typedef enum {
    M_NONE, M_MAGIC, M_VERSION1, M_VERSION4, M_BIGENDIAN, M_TENSOR_COUNT, M_KV_COUNT, M_KEY_LEN, M_STR_LEN,
    M_ARRAY_COUNT, M_VALUE_TYPE, M_ELEM_TYPE, M_OFFSET_PAST, M_UNALIGNED, M_DUP_KEY, M_DUP_TENSOR, M_OVERLAP,
    M_BAD_BOOL, M_ALIGN_TYPE, M_ALIGN_POW2, M_DIMS, M_BLOCK, M_EMPTY_KEY, M_NUL_KEY, M_UNKNOWN_TYPE, M_DEEP,
} mutation;

/* Metadata: general.architecture, general.alignment = 32, a token array, a bool;
 * tensors "a" F32 [4, 2] at 0 and "b" Q8_0 [32] at 32: the file ends with b's last
 * byte, so every shorter prefix lacks something. */
static gw_buf small_file(mutation m) {
    gw_buf b = {0};
    gw_put(&b, m == M_MAGIC ? "GGUX" : "GGUF", 4);
    gw_put_u32(&b, m == M_VERSION1 ? 1 : m == M_VERSION4 ? 4 : m == M_BIGENDIAN ? 0x03000000u : 3);
    gw_put_u64(&b, m == M_TENSOR_COUNT ? 1ull << 40 : 2);
    gw_put_u64(&b, m == M_KV_COUNT ? 1ull << 62 : 4 + (m == M_DEEP));
    gw_put_cstr(&b, m == M_EMPTY_KEY ? "" : "general.architecture");
    gw_put_u32(&b, m == M_VALUE_TYPE ? 13 : GW_STR);
    if (m == M_STR_LEN) gw_put_u64(&b, 1ull << 33);
    else gw_put_cstr(&b, "llama");
    gw_put_cstr(&b, "general.alignment");
    gw_put_u32(&b, m == M_ALIGN_TYPE ? GW_U64 : GW_U32);
    if (m == M_ALIGN_TYPE) gw_put_u64(&b, 32);
    else gw_put_u32(&b, m == M_ALIGN_POW2 ? 48 : 32);
    if (m == M_KEY_LEN) gw_put_u64(&b, 5000000000ull);
    else if (m == M_NUL_KEY) gw_put_str(&b, "tok\0ens", 7);
    else gw_put_cstr(&b, "tokenizer.ggml.tokens");
    gw_put_u32(&b, GW_ARR);
    gw_put_u32(&b, m == M_ELEM_TYPE ? 99 : GW_STR);
    gw_put_u64(&b, m == M_ARRAY_COUNT ? 4000000000ull : 3);
    gw_put_cstr(&b, "<s>");
    gw_put_cstr(&b, "a");
    gw_put_cstr(&b, "b");
    gw_put_cstr(&b, m == M_DUP_KEY ? "general.architecture" : "tokenizer.ggml.add_bos_token");
    gw_put_u32(&b, GW_BOOL);
    gw_put_le(&b, m == M_BAD_BOOL ? 2 : 1, 1);
    if (m == M_DEEP) { /* 9 levels of arrays of arrays */
        gw_put_cstr(&b, "x.deep");
        gw_put_u32(&b, GW_ARR);
        for (int i = 0; i < 9; i++) gw_put_u32(&b, GW_ARR), gw_put_u64(&b, 1);
        gw_put_u32(&b, GW_U8), gw_put_u64(&b, 0);
    }
    /* tensor a */
    gw_put_cstr(&b, "a");
    gw_put_u32(&b, m == M_DIMS ? 5 : 2);
    gw_put_u64(&b, 4);
    gw_put_u64(&b, 2);
    if (m == M_DIMS) gw_put_u64(&b, 1), gw_put_u64(&b, 1), gw_put_u64(&b, 1);
    gw_put_u32(&b, 0);
    gw_put_u64(&b, 0);
    /* tensor b */
    gw_put_cstr(&b, m == M_DUP_TENSOR ? "a" : "b");
    gw_put_u32(&b, 1);
    gw_put_u64(&b, m == M_BLOCK ? 33 : 32);
    gw_put_u32(&b, m == M_UNKNOWN_TYPE ? 77 : 8);
    gw_put_u64(&b, m == M_OFFSET_PAST ? 64 : m == M_UNALIGNED ? 36 : m == M_OVERLAP ? 0 : 32);
    gw_pad_to(&b, 32);
    for (int i = 0; i < 32 + 34; i++) gw_put_le(&b, (uint64_t)rnd(), 1);
    return b;
}

Test(gguf, small_file_is_valid) {
    gw_buf b = small_file(M_NONE);
    char *p = gw_write_file(dir, "small.gguf", &b);
    llmlab_gguf *g = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_gguf_open(&g, p, &e), LLMLAB_OK, "%s", e.msg);
    const llmlab_gguf_tensor *t = llmlab_gguf_find_tensor(g, "b");
    cr_assert(t && t->nbytes == 34 && t->type == LLMLAB_GGML_Q8_0);
    cr_assert_eq((const unsigned char *)t->data - (const unsigned char *)llmlab_gguf_find_tensor(g, "a")->data, 32);
    cr_assert_eq(llmlab_gguf_data_offset(g) + 32 + 34, b.n);
    llmlab_gguf_close(g);
    free(p);
    free(b.p);
}

/* Opens the mutated small file; expects code and a message with the file name
 * and each of up to two fragments. */
static void expect_bad(mutation m, llmlab_status code, const char *n1, const char *n2) {
    gw_buf b = small_file(m);
    char name[32];
    snprintf(name, sizeof name, "bad%d.gguf", (int)m);
    char *p = gw_write_file(dir, name, &b);
    llmlab_gguf *g = (llmlab_gguf *)p; /* must be reset to NULL */
    llmlab_err e = {0};
    llmlab_status s = llmlab_gguf_open(&g, p, &e);
    cr_assert_eq(s, code, "mutation %d: status %d want %d: %s", (int)m, s, code, e.msg);
    cr_assert_null(g);
    cr_assert(strstr(e.msg, name), "no file name in '%s'", e.msg);
    cr_assert(!n1 || strstr(e.msg, n1), "mutation %d: '%s' lacks '%s'", (int)m, e.msg, n1);
    cr_assert(!n2 || strstr(e.msg, n2), "mutation %d: '%s' lacks '%s'", (int)m, e.msg, n2);
    free(p);
    free(b.p);
}

Test(gguf, corrupt_headers) {
    expect_bad(M_MAGIC, LLMLAB_EFORMAT, "not a GGUF file", "47475558");
    expect_bad(M_VERSION1, LLMLAB_EFORMAT, "unsupported GGUF version 1", NULL);
    expect_bad(M_VERSION4, LLMLAB_EFORMAT, "unsupported GGUF version 4", NULL);
    expect_bad(M_BIGENDIAN, LLMLAB_EUNSUPPORTED, "big-endian", NULL);
    expect_bad(M_TENSOR_COUNT, LLMLAB_EFORMAT, "tensor count 1099511627776 is too large", NULL);
    expect_bad(M_KV_COUNT, LLMLAB_EFORMAT, "metadata key count 4611686018427387904 is too large", NULL);
}

Test(gguf, corrupt_metadata) {
    expect_bad(M_KEY_LEN, LLMLAB_EFORMAT, "metadata key 2: key of 5000000000 bytes", "past the end of the file");
    expect_bad(M_STR_LEN, LLMLAB_EFORMAT, "metadata key 0 ('general.architecture'): string value of 8589934592",
               "past the end");
    expect_bad(M_ARRAY_COUNT, LLMLAB_EFORMAT,
               "metadata key 2 ('tokenizer.ggml.tokens'): array of 4000000000 strings runs past the end of the file",
               NULL);
    expect_bad(M_VALUE_TYPE, LLMLAB_EFORMAT, "('general.architecture'): unknown value type 13", NULL);
    expect_bad(M_ELEM_TYPE, LLMLAB_EFORMAT, "array of unknown element type 99", NULL);
    expect_bad(M_DUP_KEY, LLMLAB_EFORMAT, "metadata key 'general.architecture' appears twice", "0 and 3");
    expect_bad(M_BAD_BOOL, LLMLAB_EFORMAT, "('tokenizer.ggml.add_bos_token'): bool value is 2 (must be 0 or 1)", NULL);
    expect_bad(M_ALIGN_TYPE, LLMLAB_EFORMAT, "('general.alignment'): is a uint64, not a uint32", NULL);
    expect_bad(M_ALIGN_POW2, LLMLAB_EFORMAT, "48 is not a power of two", NULL);
    expect_bad(M_EMPTY_KEY, LLMLAB_EFORMAT, "metadata key 0: key is empty", NULL);
    expect_bad(M_NUL_KEY, LLMLAB_EFORMAT, "metadata key 2: key contains a NUL byte", NULL);
    expect_bad(M_DEEP, LLMLAB_EFORMAT, "('x.deep'): arrays nested deeper than 8", NULL);
}

Test(gguf, corrupt_tensors) {
    expect_bad(M_OFFSET_PAST, LLMLAB_EFORMAT, "tensor 1 ('b'): data [64, 98) runs past the end of the data section",
               "(66 bytes)");
    expect_bad(M_UNALIGNED, LLMLAB_EFORMAT, "tensor 1 ('b'): data offset 36 is not a multiple of the alignment 32",
               NULL);
    expect_bad(M_OVERLAP, LLMLAB_EFORMAT, "tensors 'a' [0, 32) and 'b' [0, 34) overlap", NULL);
    expect_bad(M_DUP_TENSOR, LLMLAB_EFORMAT, "tensor 'a' appears twice", NULL);
    expect_bad(M_DIMS, LLMLAB_EFORMAT, "tensor 0 ('a'): 5 dimensions (at most 4)", NULL);
    expect_bad(M_BLOCK, LLMLAB_EFORMAT, "rows of 33 elements are not a multiple of the q8_0 block size 32", NULL);
}

Test(gguf, unknown_tensor_type_fails_only_when_used) {
    gw_buf b = small_file(M_UNKNOWN_TYPE);
    char *p = gw_write_file(dir, "unk.gguf", &b);
    llmlab_gguf *g = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_gguf_open(&g, p, &e), LLMLAB_OK, "%s", e.msg);
    const llmlab_gguf_tensor *t = llmlab_gguf_find_tensor(g, "b");
    cr_assert(t && !t->known_type && t->nbytes == 0 && t->type == 77);
    const void *d;
    size_t n;
    cr_assert_eq(llmlab_gguf_tensor_data(g, t, &d, &n, &e), LLMLAB_EUNSUPPORTED);
    cr_assert(strstr(e.msg, "unk.gguf") && strstr(e.msg, "'b'") && strstr(e.msg, "unknown ggml type id 77"), "%s",
              e.msg);
    cr_assert_eq(llmlab_gguf_tensor_data(g, llmlab_gguf_find_tensor(g, "a"), &d, &n, &e), LLMLAB_OK);
    cr_assert_eq(n, 32);
    llmlab_gguf_close(g);
    free(p);
    free(b.p);
}

Test(gguf, every_truncation_fails_cleanly) {
    gw_buf b = small_file(M_NONE);
    char *p = fsu_join(dir, "cut.gguf");
    for (size_t n = 0; n < b.n; n++) {
        cr_assert_eq(fsu_write(p, b.p, n), 0);
        llmlab_gguf *g = NULL;
        llmlab_err e = {0};
        llmlab_status s = llmlab_gguf_open(&g, p, &e);
        cr_assert_eq(s, LLMLAB_EFORMAT, "prefix of %zu bytes: status %d (%s)", n, s, e.msg);
        cr_assert_null(g);
        cr_assert(strstr(e.msg, "cut.gguf"), "prefix of %zu bytes: '%s'", n, e.msg);
    }
    /* And random single-byte damage never crashes (any status is fine). */
    for (int rep = 0; rep < 300; rep++) {
        gw_buf c = small_file(M_NONE);
        c.p[rnd_below(c.n)] = (unsigned char)rnd();
        cr_assert_eq(fsu_write(p, c.p, c.n), 0);
        llmlab_gguf *g = NULL;
        llmlab_err e = {0};
        if (llmlab_gguf_open(&g, p, &e) == LLMLAB_OK) llmlab_gguf_close(g);
        else cr_assert(e.msg[0] && !g);
        free(c.p);
    }
    llmlab_err e = {0};
    llmlab_gguf *g = NULL;
    cr_assert_eq(llmlab_gguf_open(&g, "/nonexistent/x.gguf", &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "/nonexistent/x.gguf"), "%s", e.msg);
    free(p);
    free(b.p);
}
