/* safetensors.c - opening (mmap + validation) and writing safetensors files.
 *
 * Opening trusts nothing in the file: the header length, every dtype, shape and
 * offset pair is checked before a pointer into the mapping is handed out, and
 * every message names the file and the tensor.  The header is copied into a
 * malloc'd buffer of exactly its length before cJSON parses it, so a parser
 * over-read is caught by ASan (and by the fuzzer) instead of reading the data.
 *
 * Writing goes to "path.tmp", is fsync'ed and renamed, so a crash or a full disk
 * never leaves a half-written file under the real name.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "error.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* as the reference implementation */
#define ST_MAX_INT (1ull << 53)              /* largest integer a JSON double holds exactly */
#define ST_INDEX_NAME "model.safetensors.index.json"

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    [LLMLAB_ST_F32] = {"F32", 4},         [LLMLAB_ST_F16] = {"F16", 2},
    [LLMLAB_ST_BF16] = {"BF16", 2},       [LLMLAB_ST_F64] = {"F64", 8},
    [LLMLAB_ST_I64] = {"I64", 8},         [LLMLAB_ST_I32] = {"I32", 4},
    [LLMLAB_ST_I16] = {"I16", 2},         [LLMLAB_ST_I8] = {"I8", 1},
    [LLMLAB_ST_U8] = {"U8", 1},           [LLMLAB_ST_BOOL] = {"BOOL", 1},
    [LLMLAB_ST_F8_E4M3] = {"F8_E4M3", 1}, [LLMLAB_ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define ST_N_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

const char *llmlab_st_dtype_name(llmlab_st_dtype t) {
    return (int)t >= 0 && (int)t < ST_N_DTYPES ? st_dtypes[t].name : "?";
}

size_t llmlab_st_dtype_size(llmlab_st_dtype t) {
    return (int)t >= 0 && (int)t < ST_N_DTYPES ? st_dtypes[t].size : 0;
}

int llmlab_st_dtype_parse(const char *name, llmlab_st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++) {
        if (!strcmp(name, st_dtypes[i].name)) {
            *out = (llmlab_st_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ---- small helpers ------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* A JSON number that is an integer in [0, 2^53]; -1 if not. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < 0 || d > (double)ST_MAX_INT) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* a * b into *out; -1 on overflow past limit. */
static int mul_checked(uint64_t a, uint64_t b, uint64_t limit, uint64_t *out) {
    if (a && b > limit / a) return -1;
    *out = a * b;
    return 0;
}

/* ---- the set ------------------------------------------------------------------- */

static llmlab_st_tensor *push_tensor(llmlab_st_set *set) {
    if ((set->n_tensors & (set->n_tensors - 1)) == 0) { /* grow at powers of two */
        size_t cap = set->n_tensors ? 2 * (size_t)set->n_tensors : 16;
        llmlab_st_tensor *t = realloc(set->tensors, cap * sizeof *t);
        if (!t) return NULL;
        set->tensors = t;
    }
    llmlab_st_tensor *t = &set->tensors[set->n_tensors];
    memset(t, 0, sizeof *t);
    return t;
}

void llmlab_st_close(llmlab_st_set *set) {
    if (!set) return;
    for (int i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    free(set->tensors);
    for (int i = 0; i < set->n_files; i++) {
        if (set->files[i].map) munmap(set->files[i].map, set->files[i].size);
        free(set->files[i].path);
    }
    free(set->files);
    memset(set, 0, sizeof *set);
}

const llmlab_st_tensor *llmlab_st_find(const llmlab_st_set *set, const char *name) {
    for (int i = 0; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i].name, name)) return &set->tensors[i];
    return NULL;
}

/* ---- header parsing ------------------------------------------------------------- */

typedef struct {
    const char *path;   /* for messages */
    const uint8_t *data;/* first byte after the header */
    uint64_t data_size; /* bytes after the header */
    int file;
} st_ctx;

static llmlab_status parse_shape(const st_ctx *c, const char *name, const cJSON *shape,
                                 llmlab_st_tensor *t, llmlab_err *err) {
    if (!cJSON_IsArray(shape))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: tensor '%.200s': 'shape' is not an array",
                              c->path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > LLMLAB_ST_MAX_DIMS)
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%.200s': shape has %d dimensions (at most %d)", c->path,
                              name, nd, LLMLAB_ST_MAX_DIMS);
    const cJSON *it;
    t->ndim = 0;
    cJSON_ArrayForEach(it, shape) {
        uint64_t d;
        if (json_u64(it, &d)) {
            if (cJSON_IsNumber(it))
                return llmlab_err_set(err, LLMLAB_EFORMAT,
                                      "%s: tensor '%.200s': shape dimension %d is %g, not a "
                                      "non-negative integer",
                                      c->path, name, t->ndim, it->valuedouble);
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "%s: tensor '%.200s': shape dimension %d is not a number", c->path,
                                  name, t->ndim);
        }
        t->shape[t->ndim++] = (int64_t)d;
    }
    return LLMLAB_OK;
}

static llmlab_status parse_offsets(const st_ctx *c, const char *name, const cJSON *offs,
                                   uint64_t *b, uint64_t *e, llmlab_err *err) {
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        json_u64(cJSON_GetArrayItem(offs, 0), b) || json_u64(cJSON_GetArrayItem(offs, 1), e))
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%.200s': 'data_offsets' must be [begin, end] with "
                              "non-negative integers",
                              c->path, name);
    if (*b > *e)
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%.200s': data_offsets [%llu, %llu] end before they begin",
                              c->path, name, (unsigned long long)*b, (unsigned long long)*e);
    if (*e > c->data_size)
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%.200s': data_offsets [%llu, %llu] past the end of the "
                              "data (file holds %llu bytes)",
                              c->path, name, (unsigned long long)*b, (unsigned long long)*e,
                              (unsigned long long)c->data_size);
    return LLMLAB_OK;
}

static llmlab_status parse_entry(llmlab_st_set *set, const st_ctx *c, const cJSON *ent,
                                 llmlab_err *err) {
    const char *name = ent->string ? ent->string : "";
    if (!cJSON_IsObject(ent))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: tensor '%.200s': entry is not an object",
                              c->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(ent, "dtype");
    if (!cJSON_IsString(dt))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: tensor '%.200s': 'dtype' missing or not a string",
                              c->path, name);
    llmlab_st_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    if (llmlab_st_dtype_parse(dt->valuestring, &tmp.dtype))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "%s: tensor '%.200s': unknown dtype '%.32s'",
                              c->path, name, dt->valuestring);
    llmlab_status s = parse_shape(c, name, cJSON_GetObjectItemCaseSensitive(ent, "shape"), &tmp, err);
    uint64_t b = 0, e = 0;
    if (!s) s = parse_offsets(c, name, cJSON_GetObjectItemCaseSensitive(ent, "data_offsets"), &b, &e, err);
    if (s) return s;
    uint64_t n = 1;
    for (int i = 0; i < tmp.ndim; i++)
        if (mul_checked(n, (uint64_t)tmp.shape[i], ST_MAX_INT, &n)) n = UINT64_MAX;
    uint64_t nbytes;
    if (n == UINT64_MAX || mul_checked(n, st_dtypes[tmp.dtype].size, UINT64_MAX, &nbytes) ||
        nbytes != e - b) {
        char sh[160];
        fmt_shape(sh, sizeof sh, tmp.shape, tmp.ndim);
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: tensor '%.200s': data_offsets [%llu, %llu] hold %llu bytes but "
                              "shape %s of %s needs %s",
                              c->path, name, (unsigned long long)b, (unsigned long long)e,
                              (unsigned long long)(e - b), sh, st_dtypes[tmp.dtype].name,
                              n == UINT64_MAX ? "more than 2^53 elements" : "a different size");
    }
    llmlab_st_tensor *t = push_tensor(set);
    if (!t || !(tmp.name = strdup(name)))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", c->path);
    tmp.data = c->data + b;
    tmp.nbytes = (size_t)nbytes;
    tmp.file = c->file;
    *t = tmp;
    set->n_tensors++;
    return LLMLAB_OK;
}

typedef struct {
    uint64_t b, e;
    int idx;
} st_span;

static int cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return 0;
}

/* Tensors [first, n_tensors) all lie in one file; none may share a byte. */
static llmlab_status check_overlap(const llmlab_st_set *set, const st_ctx *c, int first,
                                   llmlab_err *err) {
    int n = set->n_tensors - first;
    if (n < 2) return LLMLAB_OK;
    st_span *sp = malloc((size_t)n * sizeof *sp);
    if (!sp) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", c->path);
    for (int i = 0; i < n; i++) {
        const llmlab_st_tensor *t = &set->tensors[first + i];
        sp[i].b = (uint64_t)((const uint8_t *)t->data - c->data);
        sp[i].e = sp[i].b + t->nbytes;
        sp[i].idx = first + i;
    }
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    llmlab_status s = LLMLAB_OK;
    int far = 0; /* the span reaching furthest so far */
    for (int i = 1; i < n && !s; i++) {
        if (sp[i].e > sp[i].b && sp[i].b < sp[far].e)
            s = llmlab_err_set(err, LLMLAB_EFORMAT,
                               "%s: tensor '%.200s' [%llu, %llu] overlaps tensor '%.200s' [%llu, %llu]",
                               c->path, set->tensors[sp[i].idx].name, (unsigned long long)sp[i].b,
                               (unsigned long long)sp[i].e, set->tensors[sp[far].idx].name,
                               (unsigned long long)sp[far].b, (unsigned long long)sp[far].e);
        if (sp[i].e > sp[far].e) far = i;
    }
    free(sp);
    return s;
}

/* Parses the header of files[fi] and appends its tensors. */
static llmlab_status parse_header(llmlab_st_set *set, int fi, llmlab_err *err) {
    const llmlab_st_file *f = &set->files[fi];
    const uint8_t *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > ST_MAX_HEADER)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: header length %llu exceeds the %u-byte limit",
                              f->path, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: header length %llu runs past the end of the file (%zu bytes)",
                              f->path, (unsigned long long)hlen, f->size);
    char *h = malloc(hlen ? hlen : 1);
    if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", f->path);
    memcpy(h, p + 8, hlen);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, hlen, &end, 0);
    llmlab_status s = LLMLAB_OK;
    if (!root) {
        size_t pos = end ? (size_t)(end - h) : 0;
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: header is not valid JSON (near byte %zu of %llu)",
                           f->path, pos, (unsigned long long)hlen);
    } else if (!cJSON_IsObject(root)) {
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: header is not a JSON object", f->path);
    } else {
        for (const char *q = end; q < h + hlen; q++) {
            if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t') {
                s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: junk after the header JSON at byte %zu",
                                   f->path, (size_t)(q - h));
                break;
            }
        }
    }
    st_ctx c = {f->path, p + 8 + hlen, f->size - 8 - hlen, fi};
    int first = set->n_tensors;
    const cJSON *ent;
    if (!s) {
        cJSON_ArrayForEach(ent, root) {
            if (ent->string && !strcmp(ent->string, "__metadata__")) continue;
            if ((s = parse_entry(set, &c, ent, err))) break;
        }
    }
    if (!s) s = check_overlap(set, &c, first, err);
    cJSON_Delete(root);
    free(h);
    return s;
}

/* Maps path and appends it and its tensors to set.  On error the set holds
 * whatever was added so far, consistently; the caller closes it. */
static llmlab_status add_file(llmlab_st_set *set, const char *path, llmlab_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return llmlab_err_set(err, LLMLAB_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "%s: file is %zu bytes, too short for a safetensors header (8 bytes)",
                              path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int merr = errno;
    close(fd);
    if (map == MAP_FAILED) return llmlab_err_set(err, LLMLAB_EIO, "%s: mmap: %s", path, strerror(merr));
    llmlab_st_file *files = realloc(set->files, (size_t)(set->n_files + 1) * sizeof *files);
    char *p = strdup(path);
    if (files) set->files = files;
    if (!files || !p) {
        free(p);
        munmap(map, size);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    files[set->n_files] = (llmlab_st_file){p, map, size};
    set->n_files++;
    return parse_header(set, set->n_files - 1, err);
}

static int cmp_tensor_name(const void *a, const void *b) {
    const llmlab_st_tensor *x = *(const llmlab_st_tensor *const *)a;
    const llmlab_st_tensor *y = *(const llmlab_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static llmlab_status check_duplicates(const llmlab_st_set *set, llmlab_err *err) {
    if (set->n_tensors < 2) return LLMLAB_OK;
    const llmlab_st_tensor **v = malloc((size_t)set->n_tensors * sizeof *v);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int i = 0; i < set->n_tensors; i++) v[i] = &set->tensors[i];
    qsort(v, (size_t)set->n_tensors, sizeof *v, cmp_tensor_name);
    llmlab_status s = LLMLAB_OK;
    for (int i = 1; i < set->n_tensors && !s; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            s = llmlab_err_set(err, LLMLAB_EFORMAT, "tensor '%.200s' appears twice (in %s and %s)",
                               v[i]->name, set->files[v[i - 1]->file].path, set->files[v[i]->file].path);
    free(v);
    return s;
}

llmlab_status llmlab_st_open_file(llmlab_st_set *set, const char *path, llmlab_err *err) {
    llmlab_status s = add_file(set, path, err);
    if (!s) s = check_duplicates(set, err);
    if (s) llmlab_st_close(set);
    return s;
}

/* ---- directories and index files ---------------------------------------------- */

static llmlab_status read_text(const char *path, size_t limit, char **out, size_t *len,
                               llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    char *buf = malloc(limit + 1);
    size_t n = buf ? fread(buf, 1, limit + 1, f) : 0;
    int bad = !buf ? 1 : ferror(f) ? 2 : n > limit ? 3 : 0;
    fclose(f);
    if (bad) {
        free(buf);
        return bad == 1   ? llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path)
               : bad == 2 ? llmlab_err_set(err, LLMLAB_EIO, "%s: read error", path)
                          : llmlab_err_set(err, LLMLAB_EFORMAT, "%s: larger than %zu bytes", path, limit);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return LLMLAB_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct shard names of a weight_map, sorted; NULL-free strings borrowed from it. */
static llmlab_status shard_names(const cJSON *wm, const char *ipath, const char ***out, int *n_out,
                                 llmlab_err *err) {
    int n = cJSON_GetArraySize(wm), k = 0;
    const char **v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
            free(v);
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "%s: weight_map entry '%.200s' must name a shard file in the "
                                  "same directory",
                                  ipath, it->string ? it->string : "");
        }
        v[k++] = it->valuestring;
    }
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    int m = 0;
    for (int i = 0; i < k; i++)
        if (!m || strcmp(v[m - 1], v[i])) v[m++] = v[i];
    *out = v;
    *n_out = m;
    return LLMLAB_OK;
}

/* Every tensor the index names must sit in the shard it names. */
static llmlab_status check_weight_map(const llmlab_st_set *set, const cJSON *wm, const char *ipath,
                                      llmlab_err *err) {
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        const llmlab_st_tensor *t = llmlab_st_find(set, it->string);
        if (!t)
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "%s: tensor '%.200s' is listed in shard '%.200s' but no shard "
                                  "holds it",
                                  ipath, it->string, it->valuestring);
        const char *actual = base_name(set->files[t->file].path);
        if (strcmp(actual, it->valuestring))
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "%s: tensor '%.200s' is listed in shard '%.200s' but lies in "
                                  "'%.200s'",
                                  ipath, it->string, it->valuestring, actual);
    }
    return LLMLAB_OK;
}

static llmlab_status open_index(llmlab_st_set *set, const char *dir, const char *ipath,
                                llmlab_err *err) {
    char *text = NULL;
    size_t len = 0;
    llmlab_status s = read_text(ipath, ST_MAX_HEADER, &text, &len, err);
    if (s) return s;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root)
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: malformed JSON near byte %zu", ipath,
                           end ? (size_t)(end - text) : 0);
    else if (!cJSON_IsObject(wm))
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no 'weight_map' object", ipath);
    const char **names = NULL;
    int n = 0;
    if (!s) s = shard_names(wm, ipath, &names, &n, err);
    for (int i = 0; i < n && !s; i++) {
        char *sp = path_join(dir, names[i]);
        struct stat st;
        if (!sp) s = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        else if (stat(sp, &st))
            s = llmlab_err_set(err, LLMLAB_EIO, "shard '%s' named by %s is missing: %s", names[i], ipath,
                               strerror(errno));
        else s = add_file(set, sp, err);
        free(sp);
    }
    if (!s) s = check_duplicates(set, err);
    if (!s) s = check_weight_map(set, wm, ipath, err);
    free(names);
    cJSON_Delete(root);
    free(text);
    return s;
}

llmlab_status llmlab_st_open_dir(llmlab_st_set *set, const char *dir, llmlab_err *err) {
    char *ipath = path_join(dir, ST_INDEX_NAME);
    char *spath = path_join(dir, "model.safetensors");
    llmlab_status s = LLMLAB_OK;
    struct stat st;
    if (!ipath || !spath) s = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    else if (!stat(ipath, &st)) s = open_index(set, dir, ipath, err);
    else if (!stat(spath, &st)) s = llmlab_st_open_file(set, spath, err);
    else
        s = llmlab_err_set(err, LLMLAB_EIO, "%s: no model.safetensors or %s in this directory", dir,
                           ST_INDEX_NAME);
    if (s) llmlab_st_close(set);
    free(ipath);
    free(spath);
    return s;
}

/* ---- writing --------------------------------------------------------------------- */

struct llmlab_st_writer {
    int fd;
    char *path, *tmp;
    uint64_t expect, written; /* data bytes */
    unsigned char *buf;
    size_t buf_len;
};

#define ST_WBUF (1u << 20)

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Builds the padded header text; *out is malloc'd, *len a multiple of 8. */
static llmlab_status build_header(const llmlab_st_write_tensor *ts, int n, char **out, size_t *len,
                                  uint64_t *data_bytes, const char *path, llmlab_err *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    if (!root || !meta || !cJSON_AddStringToObject(meta, "format", "pt")) {
        cJSON_Delete(root);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    uint64_t off = 0;
    llmlab_status s = LLMLAB_OK;
    for (int i = 0; i < n && !s; i++) {
        const llmlab_st_write_tensor *t = &ts[i];
        uint64_t ne = 1, nb = 0;
        int bad = !t->name || llmlab_st_dtype_size(t->dtype) == 0 || t->ndim < 0 ||
                  t->ndim > LLMLAB_ST_MAX_DIMS || !strcmp(t->name, "__metadata__") ||
                  cJSON_GetObjectItemCaseSensitive(root, t->name);
        for (int d = 0; !bad && d < t->ndim; d++)
            bad = t->shape[d] < 0 || mul_checked(ne, (uint64_t)t->shape[d], ST_MAX_INT, &ne);
        bad = bad || mul_checked(ne, llmlab_st_dtype_size(t->dtype), ST_MAX_INT, &nb) ||
              off + nb > ST_MAX_INT;
        if (bad) {
            s = llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor %d '%.200s': bad or duplicate name, dtype or shape",
                               path, i, t->name ? t->name : "(null)");
            break;
        }
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!e || !cJSON_AddStringToObject(e, "dtype", llmlab_st_dtype_name(t->dtype)) || !shape || !offs) {
            s = llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
            break;
        }
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *text = s ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s) return s;
    if (!text) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
    char *h = malloc(padded);
    if (h) {
        memcpy(h, text, tl);
        memset(h + tl, ' ', padded - tl);
    }
    cJSON_free(text);
    if (!h) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    *out = h;
    *len = padded;
    *data_bytes = off;
    return LLMLAB_OK;
}

void llmlab_st_writer_abort(llmlab_st_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w->buf);
    free(w);
}

static llmlab_status writer_fail(llmlab_st_writer *w, const char *what, llmlab_err *err) {
    return llmlab_err_set(err, LLMLAB_EIO, "%s: %s failed: %s", w->tmp, what, strerror(errno));
}

llmlab_status llmlab_st_writer_open(llmlab_st_writer **out, const char *path,
                                    const llmlab_st_write_tensor *tensors, int n, llmlab_err *err) {
    *out = NULL;
    char *hdr = NULL;
    size_t hlen = 0;
    uint64_t total = 0;
    llmlab_status s = build_header(tensors, n, &hdr, &hlen, &total, path, err);
    if (s) return s;
    llmlab_st_writer *w = calloc(1, sizeof *w);
    size_t pl = strlen(path);
    if (w) {
        w->fd = -1;
        w->path = strdup(path);
        w->tmp = malloc(pl + 5);
        w->buf = malloc(ST_WBUF);
    }
    if (!w || !w->path || !w->tmp || !w->buf) {
        free(hdr);
        if (w) w->tmp = (free(w->tmp), NULL);
        llmlab_st_writer_abort(w);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    memcpy(w->tmp, path, pl);
    memcpy(w->tmp + pl, ".tmp", 5);
    w->expect = total;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        s = llmlab_err_set(err, LLMLAB_EIO, "%s: %s", w->tmp, strerror(errno));
        free(w->tmp); /* nothing was created: do not unlink someone else's file */
        w->tmp = NULL;
    } else {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
        if (write_all(w->fd, len8, 8) || write_all(w->fd, hdr, hlen)) s = writer_fail(w, "write", err);
    }
    free(hdr);
    if (s) {
        llmlab_st_writer_abort(w);
        return s;
    }
    *out = w;
    return LLMLAB_OK;
}

static llmlab_status writer_flush(llmlab_st_writer *w, llmlab_err *err) {
    if (w->buf_len && write_all(w->fd, w->buf, w->buf_len)) return writer_fail(w, "write", err);
    w->buf_len = 0;
    return LLMLAB_OK;
}

llmlab_status llmlab_st_writer_data(llmlab_st_writer *w, const void *data, size_t nbytes,
                                    llmlab_err *err) {
    if (nbytes > w->expect - w->written)
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: %zu more data bytes than the header declares",
                              w->path, (size_t)(nbytes - (w->expect - w->written)));
    w->written += nbytes;
    if (w->buf_len + nbytes <= ST_WBUF) {
        memcpy(w->buf + w->buf_len, data, nbytes);
        w->buf_len += nbytes;
        return LLMLAB_OK;
    }
    llmlab_status s = writer_flush(w, err);
    if (s) return s;
    if (nbytes >= ST_WBUF) return write_all(w->fd, data, nbytes) ? writer_fail(w, "write", err) : LLMLAB_OK;
    memcpy(w->buf, data, nbytes);
    w->buf_len = nbytes;
    return LLMLAB_OK;
}

/* After a rename, fsync the directory so the new name itself is durable. */
static void sync_parent_dir(const char *path) {
    char *d = strdup(path);
    if (!d) return;
    char *slash = strrchr(d, '/');
    if (slash == d) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(d, ".");
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(d);
}

llmlab_status llmlab_st_writer_finish(llmlab_st_writer *w, llmlab_err *err) {
    llmlab_status s = LLMLAB_OK;
    if (w->written != w->expect)
        s = llmlab_err_set(err, LLMLAB_EINVAL, "%s: %llu of %llu data bytes written", w->path,
                           (unsigned long long)w->written, (unsigned long long)w->expect);
    if (!s) s = writer_flush(w, err);
    if (!s && fsync(w->fd)) s = writer_fail(w, "fsync", err);
    if (!s) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc) s = writer_fail(w, "close", err);
    }
    if (!s && rename(w->tmp, w->path))
        s = llmlab_err_set(err, LLMLAB_EIO, "rename %s -> %s: %s", w->tmp, w->path, strerror(errno));
    if (!s) {
        sync_parent_dir(w->path);
        free(w->tmp);
        w->tmp = NULL; /* renamed: nothing to remove */
    }
    llmlab_st_writer_abort(w);
    return s;
}

llmlab_status llmlab_st_write(const char *path, const llmlab_st_write_tensor *tensors, int n,
                              llmlab_err *err) {
    llmlab_st_writer *w = NULL;
    llmlab_status s = llmlab_st_writer_open(&w, path, tensors, n, err);
    for (int i = 0; i < n && !s; i++) {
        uint64_t nb = llmlab_st_dtype_size(tensors[i].dtype);
        for (int d = 0; d < tensors[i].ndim; d++) nb *= (uint64_t)tensors[i].shape[d];
        if (nb && !tensors[i].data)
            s = llmlab_err_set(err, LLMLAB_EINVAL, "%s: tensor '%.200s' has no data", path, tensors[i].name);
        else if (nb) s = llmlab_st_writer_data(w, tensors[i].data, (size_t)nb, err);
    }
    if (s) {
        llmlab_st_writer_abort(w);
        return s;
    }
    return llmlab_st_writer_finish(w, err);
}
