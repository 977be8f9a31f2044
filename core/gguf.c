/* gguf.c - mapping and validating GGUF files (see gguf.h, docs/gguf.md).
 *
 * Parsing walks the mapping with one cursor whose every read is checked against
 * the bytes left; counts are checked against the bytes left *before* anything is
 * allocated for them (an element of any type takes at least one byte), so a file
 * claiming 2^40 tensors fails at once instead of exhausting memory.  Strings are
 * copied into one arena with a NUL after each; values refer to them by index
 * because the arena moves while it grows.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

#define GGUF_MAX_DEPTH 8       /* arrays nested deeper are refused (keeps recursion bounded) */
#define GGUF_MAX_NAME 65535    /* longest key or tensor name accepted (the spec's key limit) */
#define GGUF_MIN_KV 13         /* bytes of the smallest key/value: u64 len, 1-byte key, u32 type... */
#define GGUF_MIN_TENSOR 25     /* ... and of the smallest tensor info (1-byte name, 0 dims) */

/* ---- ggml types ------------------------------------------------------------------- */

static const struct {
    const char *name;   /* ggml's type name; NULL for retired or unassigned ids */
    uint32_t blck;      /* elements per block */
    uint32_t bytes;     /* bytes per block (ggml's sizeof(block_*)) */
} ggml_types[] = {
    [LLMLAB_GGML_F32] = {"f32", 1, 4},           [LLMLAB_GGML_F16] = {"f16", 1, 2},
    [LLMLAB_GGML_Q4_0] = {"q4_0", 32, 18},       [LLMLAB_GGML_Q4_1] = {"q4_1", 32, 20},
    [LLMLAB_GGML_Q5_0] = {"q5_0", 32, 22},       [LLMLAB_GGML_Q5_1] = {"q5_1", 32, 24},
    [LLMLAB_GGML_Q8_0] = {"q8_0", 32, 34},       [LLMLAB_GGML_Q8_1] = {"q8_1", 32, 36},
    [LLMLAB_GGML_Q2_K] = {"q2_K", 256, 84},      [LLMLAB_GGML_Q3_K] = {"q3_K", 256, 110},
    [LLMLAB_GGML_Q4_K] = {"q4_K", 256, 144},     [LLMLAB_GGML_Q5_K] = {"q5_K", 256, 176},
    [LLMLAB_GGML_Q6_K] = {"q6_K", 256, 210},     [LLMLAB_GGML_Q8_K] = {"q8_K", 256, 292},
    [LLMLAB_GGML_IQ2_XXS] = {"iq2_xxs", 256, 66}, [LLMLAB_GGML_IQ2_XS] = {"iq2_xs", 256, 74},
    [LLMLAB_GGML_IQ3_XXS] = {"iq3_xxs", 256, 98}, [LLMLAB_GGML_IQ1_S] = {"iq1_s", 256, 50},
    [LLMLAB_GGML_IQ4_NL] = {"iq4_nl", 32, 18},   [LLMLAB_GGML_IQ3_S] = {"iq3_s", 256, 110},
    [LLMLAB_GGML_IQ2_S] = {"iq2_s", 256, 82},    [LLMLAB_GGML_IQ4_XS] = {"iq4_xs", 256, 136},
    [LLMLAB_GGML_I8] = {"i8", 1, 1},             [LLMLAB_GGML_I16] = {"i16", 1, 2},
    [LLMLAB_GGML_I32] = {"i32", 1, 4},           [LLMLAB_GGML_I64] = {"i64", 1, 8},
    [LLMLAB_GGML_F64] = {"f64", 1, 8},           [LLMLAB_GGML_IQ1_M] = {"iq1_m", 256, 56},
    [LLMLAB_GGML_BF16] = {"bf16", 1, 2},         [LLMLAB_GGML_TQ1_0] = {"tq1_0", 256, 54},
    [LLMLAB_GGML_TQ2_0] = {"tq2_0", 256, 66},    [LLMLAB_GGML_MXFP4] = {"mxfp4", 32, 17},
    [LLMLAB_GGML_NVFP4] = {"nvfp4", 64, 36},     [LLMLAB_GGML_Q1_0] = {"q1_0", 128, 18},
};
#define GGML_N_TYPES (sizeof ggml_types / sizeof ggml_types[0])

int llmlab_ggml_type_size(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes) {
    if (type >= GGML_N_TYPES || !ggml_types[type].name) return -1;
    if (block_elems) *block_elems = ggml_types[type].blck;
    if (block_bytes) *block_bytes = ggml_types[type].bytes;
    return 0;
}

const char *llmlab_ggml_type_name(uint32_t type) {
    return type < GGML_N_TYPES && ggml_types[type].name ? ggml_types[type].name : "?";
}

/* ---- value types ------------------------------------------------------------------- */

static const char *const value_type_names[] = {"uint8", "int8",   "uint16", "int16", "uint32",
                                               "int32", "float32", "bool",  "string", "array",
                                               "uint64", "int64",  "float64"};
#define GGUF_N_VALUE_TYPES 13

const char *llmlab_gguf_type_name(llmlab_gguf_type t) {
    return (unsigned)t < GGUF_N_VALUE_TYPES ? value_type_names[t] : "?";
}

/* Bytes of one scalar of type t; 0 for strings and arrays. */
static uint64_t scalar_size(llmlab_gguf_type t) {
    switch (t) {
    case LLMLAB_GGUF_U8: case LLMLAB_GGUF_I8: case LLMLAB_GGUF_BOOL: return 1;
    case LLMLAB_GGUF_U16: case LLMLAB_GGUF_I16: return 2;
    case LLMLAB_GGUF_U32: case LLMLAB_GGUF_I32: case LLMLAB_GGUF_F32: return 4;
    case LLMLAB_GGUF_U64: case LLMLAB_GGUF_I64: case LLMLAB_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Fewest bytes one element of type t can take (a string's length field, an
 * array's type + count). */
static uint64_t min_size(llmlab_gguf_type t) {
    return t == LLMLAB_GGUF_STRING ? 8 : t == LLMLAB_GGUF_ARRAY ? 12 : scalar_size(t);
}

/* ---- the object ---------------------------------------------------------------------- */

struct llmlab_gguf_value {
    llmlab_gguf_type type;   /* the value's own type */
    llmlab_gguf_type elem;   /* ARRAY: element type */
    uint64_t n;              /* ARRAY: element count; STRING: byte length */
    uint64_t at;             /* scalars, arrays of scalars: file offset of the (first) element;
                                STRING, arrays of strings: index of the (first) string in g->strs */
    llmlab_gguf_value *kids; /* arrays of arrays: [n] element values (owned) */
    const llmlab_gguf *g;    /* the file holding the bytes and strings */
};

typedef struct {
    uint64_t off; /* first byte in g->arena (a NUL follows the string) */
    uint64_t len; /* bytes, NULs inside included */
} gguf_str;

typedef struct {
    uint64_t key;        /* index of the key in g->strs */
    llmlab_gguf_value v; /* its value */
} gguf_kv;

struct llmlab_gguf {
    char *path;                   /* as given to open (owned) */
    const uint8_t *map;           /* [size] bytes, read-only mapping */
    uint64_t size;                /* file size */
    uint32_t version;             /* 2 or 3 */
    uint32_t alignment;           /* general.alignment or 32; a power of two */
    uint64_t data_offset;         /* file offset of the data section */
    int64_t n_kv;                 /* metadata pairs */
    gguf_kv *kv;                  /* [n_kv] in file order */
    int64_t *kv_sorted;           /* [n_kv] indices into kv, by key (strcmp) */
    int64_t n_tensors;            /* tensor infos */
    llmlab_gguf_tensor *tensors;  /* [n_tensors] in file order */
    uint64_t *tensor_names;       /* [n_tensors] index of each name in strs (until fixup) */
    int64_t *tensors_sorted;      /* [n_tensors] indices into tensors, by name */
    char *arena;                  /* every metadata string and name, each NUL-terminated */
    uint64_t arena_len, arena_cap;
    gguf_str *strs;               /* [n_strs] strings in the arena */
    uint64_t n_strs, strs_cap;
};

static const char *str_at(const llmlab_gguf *g, uint64_t idx, size_t *len) {
    if (len) *len = (size_t)g->strs[idx].len;
    return g->arena + g->strs[idx].off;
}

static void free_value(llmlab_gguf_value *v) {
    if (v->type != LLMLAB_GGUF_ARRAY || !v->kids) return;
    for (uint64_t i = 0; i < v->n; i++) free_value(&v->kids[i]);
    free(v->kids);
}

void llmlab_gguf_close(llmlab_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) free_value(&g->kv[i].v);
    free(g->kv);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensor_names);
    free(g->tensors_sorted);
    free(g->arena);
    free(g->strs);
    if (g->map) munmap((void *)g->map, (size_t)g->size);
    free(g->path);
    free(g);
}

/* ---- the cursor ---------------------------------------------------------------------- */

typedef struct {
    llmlab_gguf *g;
    uint64_t pos;      /* next byte to read */
    char what[200];    /* the field being read, for messages: "metadata key 3 ('x')" */
    llmlab_err *err;
} gguf_cur;

/* EFORMAT "path: what: message". */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static llmlab_status bad(const gguf_cur *c, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->what[0]) return llmlab_err_set(c->err, LLMLAB_EFORMAT, "%s: %s: %s", c->g->path, c->what, msg);
    return llmlab_err_set(c->err, LLMLAB_EFORMAT, "%s: %s", c->g->path, msg);
}

static llmlab_status nomem(const gguf_cur *c) {
    return llmlab_err_set(c->err, LLMLAB_ENOMEM, "%s: out of memory", c->g->path);
}

static uint64_t left(const gguf_cur *c) { return c->g->size - c->pos; }

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static llmlab_status rd_u32(gguf_cur *c, const char *field, uint32_t *out) {
    if (left(c) < 4)
        return bad(c, "%s at byte %llu runs past the end of the file (%llu bytes)", field,
                   (unsigned long long)c->pos, (unsigned long long)c->g->size);
    *out = (uint32_t)le(c->g->map + c->pos, 4);
    c->pos += 4;
    return LLMLAB_OK;
}

static llmlab_status rd_u64(gguf_cur *c, const char *field, uint64_t *out) {
    if (left(c) < 8)
        return bad(c, "%s at byte %llu runs past the end of the file (%llu bytes)", field,
                   (unsigned long long)c->pos, (unsigned long long)c->g->size);
    *out = le(c->g->map + c->pos, 8);
    c->pos += 8;
    return LLMLAB_OK;
}

/* Makes room for k more strings and b more arena bytes. */
static int reserve(llmlab_gguf *g, uint64_t k, uint64_t b) {
    if (g->n_strs + k > g->strs_cap) {
        uint64_t cap = g->strs_cap ? g->strs_cap : 64;
        while (cap < g->n_strs + k) cap *= 2;
        gguf_str *s = realloc(g->strs, (size_t)cap * sizeof *s);
        if (!s) return -1;
        g->strs = s;
        g->strs_cap = cap;
    }
    if (g->arena_len + b > g->arena_cap) {
        uint64_t cap = g->arena_cap ? g->arena_cap : 4096;
        while (cap < g->arena_len + b) cap *= 2;
        char *a = realloc(g->arena, (size_t)cap);
        if (!a) return -1;
        g->arena = a;
        g->arena_cap = cap;
    }
    return 0;
}

/* Reads a string into the arena; *idx is its index in g->strs. */
static llmlab_status rd_str(gguf_cur *c, const char *field, uint64_t *idx) {
    uint64_t len;
    if (left(c) < 8)
        return bad(c, "%s length at byte %llu runs past the end of the file (%llu bytes)", field,
                   (unsigned long long)c->pos, (unsigned long long)c->g->size);
    len = le(c->g->map + c->pos, 8);
    if (len > left(c) - 8)
        return bad(c, "%s of %llu bytes at byte %llu runs past the end of the file (%llu bytes)", field,
                   (unsigned long long)len, (unsigned long long)c->pos, (unsigned long long)c->g->size);
    c->pos += 8;
    llmlab_gguf *g = c->g;
    if (reserve(g, 1, len + 1)) return nomem(c);
    memcpy(g->arena + g->arena_len, g->map + c->pos, (size_t)len);
    g->arena[g->arena_len + len] = 0;
    g->strs[g->n_strs] = (gguf_str){g->arena_len, len};
    *idx = g->n_strs++;
    g->arena_len += len + 1;
    c->pos += len;
    return LLMLAB_OK;
}

/* A key or tensor name: 1..GGUF_MAX_NAME bytes without NUL. */
static llmlab_status rd_name(gguf_cur *c, const char *field, uint64_t *idx) {
    llmlab_status s = rd_str(c, field, idx);
    if (s) return s;
    size_t len;
    const char *p = str_at(c->g, *idx, &len);
    if (len == 0) return bad(c, "%s is empty", field);
    if (len > GGUF_MAX_NAME) return bad(c, "%s is %zu bytes long (at most %d)", field, len, GGUF_MAX_NAME);
    if (memchr(p, 0, len)) return bad(c, "%s contains a NUL byte", field);
    return LLMLAB_OK;
}

/* ---- metadata values --------------------------------------------------------------- */

/* n bools at the cursor; in_array: they are array elements (for the message). */
static llmlab_status check_bools(gguf_cur *c, uint64_t n, int in_array) {
    for (uint64_t i = 0; i < n; i++) {
        uint8_t b = c->g->map[c->pos + i];
        if (b > 1 && in_array) return bad(c, "bool element %llu is %u (must be 0 or 1)", (unsigned long long)i, b);
        if (b > 1) return bad(c, "bool value is %u (must be 0 or 1)", b);
    }
    return LLMLAB_OK;
}

static const char *plural(llmlab_gguf_type t) {
    switch (t) {
    case LLMLAB_GGUF_STRING: return "strings";
    case LLMLAB_GGUF_ARRAY: return "arrays";
    case LLMLAB_GGUF_BOOL: return "bools";
    default: return "numbers";
    }
}

static llmlab_status parse_array(gguf_cur *c, llmlab_gguf_value *v, int depth);

static llmlab_status parse_value(gguf_cur *c, llmlab_gguf_type t, llmlab_gguf_value *v, int depth) {
    v->type = t;
    v->g = c->g;
    if (t == LLMLAB_GGUF_STRING) {
        llmlab_status s = rd_str(c, "string value", &v->at);
        if (!s) v->n = c->g->strs[v->at].len;
        return s;
    }
    if (t == LLMLAB_GGUF_ARRAY) return parse_array(c, v, depth);
    uint64_t sz = scalar_size(t);
    if (sz == 0) return bad(c, "unknown value type %u", (unsigned)t);
    if (left(c) < sz)
        return bad(c, "%s value at byte %llu runs past the end of the file (%llu bytes)", llmlab_gguf_type_name(t),
                   (unsigned long long)c->pos, (unsigned long long)c->g->size);
    if (t == LLMLAB_GGUF_BOOL) {
        llmlab_status s = check_bools(c, 1, 0);
        if (s) return s;
    }
    v->at = c->pos;
    c->pos += sz;
    return LLMLAB_OK;
}

static llmlab_status parse_array(gguf_cur *c, llmlab_gguf_value *v, int depth) {
    uint32_t et = 0;
    uint64_t n = 0;
    llmlab_status s = rd_u32(c, "array element type", &et);
    if (!s) s = rd_u64(c, "array length", &n);
    if (s) return s;
    v->type = LLMLAB_GGUF_ARRAY;
    v->g = c->g;
    if (et >= GGUF_N_VALUE_TYPES) return bad(c, "array of unknown element type %u", et);
    if (depth >= GGUF_MAX_DEPTH) return bad(c, "arrays nested deeper than %d levels", GGUF_MAX_DEPTH);
    llmlab_gguf_type t = (llmlab_gguf_type)et;
    if (n > left(c) / min_size(t))
        return bad(c, "array of %llu %s runs past the end of the file (%llu bytes left)", (unsigned long long)n,
                   plural(t), (unsigned long long)left(c));
    v->elem = t;
    if (t == LLMLAB_GGUF_STRING) {
        if (reserve(c->g, n, 0)) return nomem(c);
        v->at = c->g->n_strs;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t idx;
            char field[48];
            snprintf(field, sizeof field, "string %llu", (unsigned long long)i);
            if ((s = rd_str(c, field, &idx))) return s;
        }
        v->n = n;
        return LLMLAB_OK;
    }
    if (t == LLMLAB_GGUF_ARRAY) {
        v->kids = calloc(n ? (size_t)n : 1, sizeof *v->kids);
        if (!v->kids) return nomem(c);
        v->n = n; /* set first: free_value walks every kid (zeroed ones are harmless) */
        for (uint64_t i = 0; i < n; i++)
            if ((s = parse_array(c, &v->kids[i], depth + 1))) return s;
        return LLMLAB_OK;
    }
    if (t == LLMLAB_GGUF_BOOL && (s = check_bools(c, n, 1))) return s;
    v->at = c->pos;
    v->n = n;
    c->pos += n * scalar_size(t);
    return LLMLAB_OK;
}

static llmlab_status parse_kvs(gguf_cur *c, uint64_t n) {
    llmlab_gguf *g = c->g;
    g->kv = calloc(n ? (size_t)n : 1, sizeof *g->kv);
    if (!g->kv) return nomem(c);
    for (uint64_t i = 0; i < n; i++) {
        snprintf(c->what, sizeof c->what, "metadata key %llu", (unsigned long long)i);
        gguf_kv *kv = &g->kv[i];
        uint32_t t = 0;
        llmlab_status s = rd_name(c, "key", &kv->key);
        if (s) return s;
        g->n_kv = (int64_t)i + 1; /* from here on close() frees this pair */
        snprintf(c->what, sizeof c->what, "metadata key %llu ('%.120s')", (unsigned long long)i,
                 str_at(g, kv->key, NULL));
        if ((s = rd_u32(c, "value type", &t))) return s;
        if (t >= GGUF_N_VALUE_TYPES) return bad(c, "unknown value type %u", t);
        if ((s = parse_value(c, (llmlab_gguf_type)t, &kv->v, 0))) return s;
    }
    return LLMLAB_OK;
}

/* ---- sorted indices (lookup by name, duplicates) ------------------------------------- */

typedef struct {
    const char *s;
    int64_t i;
} name_ref;

static int cmp_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int r = strcmp(x->s, y->s);
    return r ? r : (x->i < y->i ? -1 : x->i > y->i);
}

/* Sorts names[0..n) into *order; a repeated name is an error naming both positions. */
static llmlab_status sort_names(gguf_cur *c, const char *const *names, int64_t n, const char *what,
                                int64_t **order) {
    name_ref *r = malloc((n ? (size_t)n : 1) * sizeof *r);
    *order = malloc((n ? (size_t)n : 1) * sizeof **order);
    if (!r || !*order) {
        free(r);
        return nomem(c);
    }
    for (int64_t i = 0; i < n; i++) r[i] = (name_ref){names[i], i};
    qsort(r, (size_t)n, sizeof *r, cmp_ref);
    llmlab_status s = LLMLAB_OK;
    c->what[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        (*order)[i] = r[i].i;
        if (!s && i && !strcmp(r[i - 1].s, r[i].s))
            s = bad(c, "%s '%.200s' appears twice (%s %lld and %lld)", what, r[i].s, what, (long long)r[i - 1].i,
                    (long long)r[i].i);
    }
    free(r);
    return s;
}

static int64_t find_sorted(const int64_t *order, int64_t n, const char *name,
                           const char *(*name_of)(const llmlab_gguf *, int64_t), const llmlab_gguf *g) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name_of(g, order[mid]), name);
        if (r == 0) return order[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static const char *kv_name(const llmlab_gguf *g, int64_t i) { return str_at(g, g->kv[i].key, NULL); }
static const char *tensor_name(const llmlab_gguf *g, int64_t i) { return g->tensors[i].name; }

/* ---- tensor infos -------------------------------------------------------------------- */

static llmlab_status parse_tensor(gguf_cur *c, int64_t i) {
    llmlab_gguf *g = c->g;
    llmlab_gguf_tensor *t = &g->tensors[i];
    snprintf(c->what, sizeof c->what, "tensor %lld", (long long)i);
    llmlab_status s = rd_name(c, "name", &g->tensor_names[i]);
    if (s) return s;
    snprintf(c->what, sizeof c->what, "tensor %lld ('%.120s')", (long long)i, str_at(g, g->tensor_names[i], NULL));
    uint32_t nd = 0;
    if ((s = rd_u32(c, "dimension count", &nd))) return s;
    if (nd > LLMLAB_GGUF_MAX_DIMS) return bad(c, "%u dimensions (at most %d)", nd, LLMLAB_GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    uint64_t ne = 1;
    for (int d = 0; d < LLMLAB_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        if (d < (int)nd && (s = rd_u64(c, "dimension", &v))) return s;
        if (v > (uint64_t)INT64_MAX || (v && ne > (uint64_t)INT64_MAX / v))
            return bad(c, "dimension %d (%llu) makes more than 2^63 elements", d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        ne *= v;
    }
    t->n_elements = ne;
    if ((s = rd_u32(c, "ggml type", &t->type))) return s;
    return rd_u64(c, "data offset", &t->offset);
}

/* general.alignment: absent -> 32; else a uint32 power of two. */
static llmlab_status read_alignment(gguf_cur *c) {
    llmlab_gguf *g = c->g;
    g->alignment = LLMLAB_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = find_sorted(g->kv_sorted, g->n_kv, "general.alignment", kv_name, g);
    if (i < 0) return LLMLAB_OK;
    const llmlab_gguf_value *v = &g->kv[i].v;
    snprintf(c->what, sizeof c->what, "metadata key %lld ('general.alignment')", (long long)i);
    if (v->type != LLMLAB_GGUF_U32) return bad(c, "is a %s, not a uint32", llmlab_gguf_type_name(v->type));
    uint32_t a = (uint32_t)le(g->map + v->at, 4);
    if (a == 0 || (a & (a - 1))) return bad(c, "%u is not a power of two", a);
    g->alignment = a;
    return LLMLAB_OK;
}

/* Offsets aligned, sizes from the type, every byte inside the data section. */
static llmlab_status place_tensor(gguf_cur *c, llmlab_gguf_tensor *t, int64_t i, uint64_t data_size) {
    snprintf(c->what, sizeof c->what, "tensor %lld ('%.120s')", (long long)i, t->name);
    if (t->offset % c->g->alignment)
        return bad(c, "data offset %llu is not a multiple of the alignment %u", (unsigned long long)t->offset,
                   c->g->alignment);
    uint32_t blck, bytes;
    t->known_type = llmlab_ggml_type_size(t->type, &blck, &bytes) == 0;
    if (t->known_type) {
        if (t->ne[0] % blck)
            return bad(c, "rows of %lld elements are not a multiple of the %s block size %u", (long long)t->ne[0],
                       llmlab_ggml_type_name(t->type), blck);
        uint64_t blocks = t->n_elements / blck;
        if (blocks > UINT64_MAX / bytes) return bad(c, "byte size overflows");
        t->nbytes = blocks * bytes;
    }
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
        return bad(c, "data [%llu, %llu) runs past the end of the data section (%llu bytes)",
                   (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                   (unsigned long long)data_size);
    t->data = c->g->map + c->g->data_offset + t->offset;
    return LLMLAB_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const llmlab_gguf_tensor *x = *(const llmlab_gguf_tensor *const *)a, *y = *(const llmlab_gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name); /* a fixed order, so messages are reproducible */
}

/* No two tensors of known size share a byte. */
static llmlab_status check_overlaps(gguf_cur *c) {
    llmlab_gguf *g = c->g;
    const llmlab_gguf_tensor **v = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *v);
    if (!v) return nomem(c);
    size_t n = 0;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].nbytes) v[n++] = &g->tensors[i];
    qsort(v, n, sizeof *v, cmp_offset);
    llmlab_status s = LLMLAB_OK;
    c->what[0] = 0;
    for (size_t i = 1; i < n && !s; i++)
        if (v[i - 1]->offset + v[i - 1]->nbytes > v[i]->offset)
            s = bad(c, "tensors '%.120s' [%llu, %llu) and '%.120s' [%llu, %llu) overlap", v[i - 1]->name,
                    (unsigned long long)v[i - 1]->offset, (unsigned long long)(v[i - 1]->offset + v[i - 1]->nbytes),
                    v[i]->name, (unsigned long long)v[i]->offset, (unsigned long long)(v[i]->offset + v[i]->nbytes));
    free(v);
    return s;
}

static llmlab_status parse_tensors(gguf_cur *c, uint64_t n) {
    llmlab_gguf *g = c->g;
    size_t cnt = n ? (size_t)n : 1;
    g->tensors = calloc(cnt, sizeof *g->tensors);
    g->tensor_names = calloc(cnt, sizeof *g->tensor_names);
    if (!g->tensors || !g->tensor_names) return nomem(c);
    llmlab_status s = LLMLAB_OK;
    for (uint64_t i = 0; i < n && !s; i++) s = parse_tensor(c, (int64_t)i);
    if (s) return s;
    g->n_tensors = (int64_t)n;
    /* The arena no longer moves: names become plain pointers. */
    for (uint64_t i = 0; i < n; i++) g->tensors[i].name = str_at(g, g->tensor_names[i], NULL);
    free(g->tensor_names);
    g->tensor_names = NULL;
    return LLMLAB_OK;
}

static llmlab_status place_data(gguf_cur *c) {
    llmlab_gguf *g = c->g;
    uint64_t a = g->alignment;
    g->data_offset = (c->pos + a - 1) / a * a;
    if (g->n_tensors == 0) return LLMLAB_OK;
    c->what[0] = 0;
    if (g->data_offset > g->size)
        return bad(c, "data section would start at byte %llu, past the end of the file (%llu bytes)",
                   (unsigned long long)g->data_offset, (unsigned long long)g->size);
    llmlab_status s = LLMLAB_OK;
    for (int64_t i = 0; i < g->n_tensors && !s; i++)
        s = place_tensor(c, &g->tensors[i], i, g->size - g->data_offset);
    return s ? s : check_overlaps(c);
}

/* ---- header and open ----------------------------------------------------------------- */

static llmlab_status parse_header(gguf_cur *c, uint64_t *n_tensors, uint64_t *n_kv) {
    llmlab_gguf *g = c->g;
    if (g->size < 4 || memcmp(g->map, "GGUF", 4)) {
        char m[20] = "";
        for (uint64_t i = 0; i < 4 && i < g->size; i++)
            snprintf(m + strlen(m), sizeof m - strlen(m), "%02x", g->map[i]);
        return bad(c, "not a GGUF file (magic bytes '%s', expected '47475546' = \"GGUF\")", m);
    }
    c->pos = 4;
    llmlab_status s = rd_u32(c, "version", &g->version);
    if (s) return s;
    if (g->version && (g->version & 0xFFFF) == 0)
        return llmlab_err_set(c->err, LLMLAB_EUNSUPPORTED,
                              "%s: version field 0x%08x is byte-swapped: big-endian GGUF files are not supported",
                              g->path, g->version);
    if (g->version < 2 || g->version > 3)
        return bad(c, "unsupported GGUF version %u (this reader reads versions 2 and 3)", g->version);
    if ((s = rd_u64(c, "tensor count", n_tensors)) || (s = rd_u64(c, "metadata key count", n_kv))) return s;
    if (*n_kv > left(c) / GGUF_MIN_KV)
        return bad(c, "metadata key count %llu is too large for a file of %llu bytes", (unsigned long long)*n_kv,
                   (unsigned long long)g->size);
    if (*n_tensors > left(c) / GGUF_MIN_TENSOR)
        return bad(c, "tensor count %llu is too large for a file of %llu bytes", (unsigned long long)*n_tensors,
                   (unsigned long long)g->size);
    return LLMLAB_OK;
}

static llmlab_status parse_all(gguf_cur *c) {
    uint64_t nt = 0, nk = 0;
    llmlab_status s = parse_header(c, &nt, &nk);
    if (!s) s = parse_kvs(c, nk);
    if (s) return s;
    llmlab_gguf *g = c->g;
    const char **names = malloc((nk ? (size_t)nk : 1) * sizeof *names);
    if (!names) return nomem(c);
    for (uint64_t i = 0; i < nk; i++) names[i] = str_at(g, g->kv[i].key, NULL);
    s = sort_names(c, names, g->n_kv, "metadata key", &g->kv_sorted);
    free(names);
    if (!s) s = read_alignment(c);
    if (!s) s = parse_tensors(c, nt);
    if (!s) {
        const char **tn = malloc((nt ? (size_t)nt : 1) * sizeof *tn);
        if (!tn) return nomem(c);
        for (uint64_t i = 0; i < nt; i++) tn[i] = g->tensors[i].name;
        s = sort_names(c, tn, g->n_tensors, "tensor", &g->tensors_sorted);
        free(tn);
    }
    if (!s) s = place_data(c);
    return s;
}

static llmlab_status map_file(llmlab_gguf *g, llmlab_err *err) {
    int fd = open(g->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", g->path, strerror(errno));
    struct stat st;
    llmlab_status s = LLMLAB_OK;
    if (fstat(fd, &st)) s = llmlab_err_set(err, LLMLAB_EIO, "%s: %s", g->path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) s = llmlab_err_set(err, LLMLAB_EIO, "%s: not a regular file", g->path);
    else if (st.st_size == 0) s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: empty file, not a GGUF file", g->path);
    if (!s) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) s = llmlab_err_set(err, LLMLAB_EIO, "%s: mmap: %s", g->path, strerror(errno));
        else {
            g->map = m;
            g->size = (uint64_t)st.st_size;
        }
    }
    close(fd);
    return s;
}

llmlab_status llmlab_gguf_open(llmlab_gguf **out, const char *path, llmlab_err *err) {
    *out = NULL;
    llmlab_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    llmlab_status s = map_file(g, err);
    if (!s) {
        gguf_cur c = {.g = g, .err = err};
        s = parse_all(&c);
    }
    if (s) {
        llmlab_gguf_close(g);
        return s;
    }
    *out = g;
    return LLMLAB_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */

const char *llmlab_gguf_path(const llmlab_gguf *g) { return g->path; }
uint32_t llmlab_gguf_version(const llmlab_gguf *g) { return g->version; }
uint32_t llmlab_gguf_alignment(const llmlab_gguf *g) { return g->alignment; }
uint64_t llmlab_gguf_data_offset(const llmlab_gguf *g) { return g->data_offset; }
uint64_t llmlab_gguf_file_size(const llmlab_gguf *g) { return g->size; }
int64_t llmlab_gguf_n_kv(const llmlab_gguf *g) { return g->n_kv; }

const char *llmlab_gguf_kv_key(const llmlab_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? kv_name(g, i) : NULL;
}

const llmlab_gguf_value *llmlab_gguf_kv_value(const llmlab_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i].v : NULL;
}

int64_t llmlab_gguf_find_key(const llmlab_gguf *g, const char *key) {
    return find_sorted(g->kv_sorted, g->n_kv, key, kv_name, g);
}

const llmlab_gguf_value *llmlab_gguf_get(const llmlab_gguf *g, const char *key) {
    return llmlab_gguf_kv_value(g, llmlab_gguf_find_key(g, key));
}

int64_t llmlab_gguf_n_tensors(const llmlab_gguf *g) { return g->n_tensors; }

const llmlab_gguf_tensor *llmlab_gguf_tensor_at(const llmlab_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const llmlab_gguf_tensor *llmlab_gguf_find_tensor(const llmlab_gguf *g, const char *name) {
    return llmlab_gguf_tensor_at(g, find_sorted(g->tensors_sorted, g->n_tensors, name, tensor_name, g));
}

llmlab_status llmlab_gguf_tensor_data(const llmlab_gguf *g, const llmlab_gguf_tensor *t, const void **data,
                                      size_t *nbytes, llmlab_err *err) {
    if (!t->known_type)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: tensor '%.200s': unknown ggml type id %u", g->path,
                              t->name, t->type);
    *data = t->data;
    *nbytes = (size_t)t->nbytes;
    return LLMLAB_OK;
}

/* ---- scalar conversion ----------------------------------------------------------------- */

typedef struct {
    int kind;   /* 0 unsigned, 1 signed, 2 floating, 3 bool */
    uint64_t u; /* kind 0, 3 */
    int64_t i;  /* kind 1 */
    double f;   /* kind 2 */
} gguf_num;

/* Decodes one scalar of type t at p; -1 for strings and arrays. */
static int load_num(llmlab_gguf_type t, const uint8_t *p, gguf_num *n) {
    uint64_t sz = scalar_size(t);
    if (!sz) return -1;
    uint64_t raw = le(p, (int)sz);
    *n = (gguf_num){0};
    switch (t) {
    case LLMLAB_GGUF_U8: case LLMLAB_GGUF_U16: case LLMLAB_GGUF_U32: case LLMLAB_GGUF_U64: n->u = raw; break;
    case LLMLAB_GGUF_I8: n->kind = 1; n->i = (int8_t)raw; break;
    case LLMLAB_GGUF_I16: n->kind = 1; n->i = (int16_t)raw; break;
    case LLMLAB_GGUF_I32: n->kind = 1; n->i = (int32_t)raw; break;
    case LLMLAB_GGUF_I64: n->kind = 1; n->i = (int64_t)raw; break;
    case LLMLAB_GGUF_BOOL: n->kind = 3; n->u = raw; break;
    case LLMLAB_GGUF_F32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, 4);
        n->kind = 2;
        n->f = f;
        break;
    }
    default: { /* F64 */
        double d;
        memcpy(&d, &raw, 8);
        n->kind = 2;
        n->f = d;
        break;
    }
    }
    return 0;
}

static int num_u64(const gguf_num *n, uint64_t *out) {
    if (n->kind == 0) *out = n->u;
    else if (n->kind == 1 && n->i >= 0) *out = (uint64_t)n->i;
    else return -1;
    return 0;
}

static int num_i64(const gguf_num *n, int64_t *out) {
    if (n->kind == 0 && n->u <= (uint64_t)INT64_MAX) *out = (int64_t)n->u;
    else if (n->kind == 1) *out = n->i;
    else return -1;
    return 0;
}

static int num_f64(const gguf_num *n, double *out) {
    if (n->kind == 0) *out = (double)n->u;
    else if (n->kind == 1) *out = (double)n->i;
    else if (n->kind == 2) *out = n->f;
    else return -1;
    return 0;
}

static int value_num(const llmlab_gguf_value *v, gguf_num *n) {
    if (!v || v->type == LLMLAB_GGUF_STRING || v->type == LLMLAB_GGUF_ARRAY) return -1;
    return load_num(v->type, v->g->map + v->at, n);
}

llmlab_gguf_type llmlab_gguf_value_type(const llmlab_gguf_value *v) { return v->type; }

int llmlab_gguf_value_u64(const llmlab_gguf_value *v, uint64_t *out) {
    gguf_num n;
    return value_num(v, &n) ? -1 : num_u64(&n, out);
}

int llmlab_gguf_value_i64(const llmlab_gguf_value *v, int64_t *out) {
    gguf_num n;
    return value_num(v, &n) ? -1 : num_i64(&n, out);
}

int llmlab_gguf_value_f64(const llmlab_gguf_value *v, double *out) {
    gguf_num n;
    return value_num(v, &n) ? -1 : num_f64(&n, out);
}

int llmlab_gguf_value_bool(const llmlab_gguf_value *v, int *out) {
    gguf_num n;
    if (value_num(v, &n) || n.kind != 3) return -1;
    *out = (int)n.u;
    return 0;
}

const char *llmlab_gguf_value_str(const llmlab_gguf_value *v, size_t *len) {
    if (!v || v->type != LLMLAB_GGUF_STRING) return NULL;
    return str_at(v->g, v->at, len);
}

/* ---- arrays ----------------------------------------------------------------------------- */

llmlab_gguf_type llmlab_gguf_arr_type(const llmlab_gguf_value *v) {
    return v && v->type == LLMLAB_GGUF_ARRAY ? v->elem : LLMLAB_GGUF_U8;
}

uint64_t llmlab_gguf_arr_len(const llmlab_gguf_value *v) {
    return v && v->type == LLMLAB_GGUF_ARRAY ? v->n : 0;
}

const char *llmlab_gguf_arr_str(const llmlab_gguf_value *v, uint64_t i, size_t *len) {
    if (!v || v->type != LLMLAB_GGUF_ARRAY || v->elem != LLMLAB_GGUF_STRING || i >= v->n) return NULL;
    return str_at(v->g, v->at + i, len);
}

static int arr_num(const llmlab_gguf_value *v, uint64_t i, gguf_num *n) {
    if (!v || v->type != LLMLAB_GGUF_ARRAY || i >= v->n) return -1;
    uint64_t sz = scalar_size(v->elem);
    return sz ? load_num(v->elem, v->g->map + v->at + i * sz, n) : -1;
}

int llmlab_gguf_arr_u64(const llmlab_gguf_value *v, uint64_t i, uint64_t *out) {
    gguf_num n;
    return arr_num(v, i, &n) ? -1 : num_u64(&n, out);
}

int llmlab_gguf_arr_i64(const llmlab_gguf_value *v, uint64_t i, int64_t *out) {
    gguf_num n;
    return arr_num(v, i, &n) ? -1 : num_i64(&n, out);
}

int llmlab_gguf_arr_f64(const llmlab_gguf_value *v, uint64_t i, double *out) {
    gguf_num n;
    return arr_num(v, i, &n) ? -1 : num_f64(&n, out);
}

int llmlab_gguf_arr_bool(const llmlab_gguf_value *v, uint64_t i, int *out) {
    gguf_num n;
    if (arr_num(v, i, &n) || n.kind != 3) return -1;
    *out = (int)n.u;
    return 0;
}

const llmlab_gguf_value *llmlab_gguf_arr_arr(const llmlab_gguf_value *v, uint64_t i) {
    if (!v || v->type != LLMLAB_GGUF_ARRAY || v->elem != LLMLAB_GGUF_ARRAY || i >= v->n) return NULL;
    return &v->kids[i];
}

const void *llmlab_gguf_arr_data(const llmlab_gguf_value *v) {
    if (!v || v->type != LLMLAB_GGUF_ARRAY || !scalar_size(v->elem)) return NULL;
    return v->g->map + v->at;
}

/* ---- typed getters by key ----------------------------------------------------------------- */

/* "int32 -5", "string", "array of 3 numbers": what a value holds, for messages. */
static void describe(const llmlab_gguf_value *v, char *buf, size_t cap) {
    gguf_num n;
    if (v->type == LLMLAB_GGUF_ARRAY)
        snprintf(buf, cap, "an array of %llu %s", (unsigned long long)v->n, plural(v->elem));
    else if (v->type == LLMLAB_GGUF_STRING) snprintf(buf, cap, "a string");
    else if (load_num(v->type, v->g->map + v->at, &n)) snprintf(buf, cap, "?");
    else if (n.kind == 1) snprintf(buf, cap, "%s %lld", llmlab_gguf_type_name(v->type), (long long)n.i);
    else if (n.kind == 2) snprintf(buf, cap, "%s %.9g", llmlab_gguf_type_name(v->type), n.f);
    else snprintf(buf, cap, "%s %llu", llmlab_gguf_type_name(v->type), (unsigned long long)n.u);
}

/* The key's value, or an EFORMAT "missing" error. */
static llmlab_status need_key(const llmlab_gguf *g, const char *key, const llmlab_gguf_value **v, llmlab_err *err) {
    *v = llmlab_gguf_get(g, key);
    return *v ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_EFORMAT, "%s: metadata key '%.200s' is missing", g->path, key);
}

static llmlab_status no_convert(const llmlab_gguf *g, const char *key, const llmlab_gguf_value *v, const char *want,
                                llmlab_err *err) {
    char d[96];
    describe(v, d, sizeof d);
    return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: metadata key '%.200s' holds %s, not %s", g->path, key, d, want);
}

llmlab_status llmlab_gguf_get_str(const llmlab_gguf *g, const char *key, const char **s, size_t *len,
                                  llmlab_err *err) {
    const llmlab_gguf_value *v;
    llmlab_status st = need_key(g, key, &v, err);
    if (st) return st;
    if (v->type != LLMLAB_GGUF_STRING) return no_convert(g, key, v, "a string", err);
    *s = str_at(g, v->at, len);
    return LLMLAB_OK;
}

llmlab_status llmlab_gguf_get_u64(const llmlab_gguf *g, const char *key, uint64_t *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && llmlab_gguf_value_u64(v, out)) st = no_convert(g, key, v, "a uint64", err);
    return st;
}

llmlab_status llmlab_gguf_get_i64(const llmlab_gguf *g, const char *key, int64_t *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && llmlab_gguf_value_i64(v, out)) st = no_convert(g, key, v, "an int64", err);
    return st;
}

llmlab_status llmlab_gguf_get_u32(const llmlab_gguf *g, const char *key, uint32_t *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    uint64_t x = 0;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && (llmlab_gguf_value_u64(v, &x) || x > UINT32_MAX)) st = no_convert(g, key, v, "a uint32", err);
    if (!st) *out = (uint32_t)x;
    return st;
}

llmlab_status llmlab_gguf_get_i32(const llmlab_gguf *g, const char *key, int32_t *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    int64_t x = 0;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && (llmlab_gguf_value_i64(v, &x) || x < INT32_MIN || x > INT32_MAX))
        st = no_convert(g, key, v, "an int32", err);
    if (!st) *out = (int32_t)x;
    return st;
}

llmlab_status llmlab_gguf_get_f64(const llmlab_gguf *g, const char *key, double *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && llmlab_gguf_value_f64(v, out)) st = no_convert(g, key, v, "a number", err);
    return st;
}

llmlab_status llmlab_gguf_get_f32(const llmlab_gguf *g, const char *key, float *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    double x = 0;
    llmlab_status st = need_key(g, key, &v, err);
    /* NaN and infinities pass through; a finite double beyond float range does
     * not (converting it would be undefined behaviour). */
    if (!st && (llmlab_gguf_value_f64(v, &x) || (isfinite(x) && (x > FLT_MAX || x < -FLT_MAX))))
        st = no_convert(g, key, v, "a float32", err);
    if (!st) *out = (float)x;
    return st;
}

llmlab_status llmlab_gguf_get_bool(const llmlab_gguf *g, const char *key, int *out, llmlab_err *err) {
    const llmlab_gguf_value *v;
    llmlab_status st = need_key(g, key, &v, err);
    if (!st && llmlab_gguf_value_bool(v, out)) st = no_convert(g, key, v, "a bool", err);
    return st;
}
