/* results.c - building run records in memory and adding them to an HDF5 results
 * file without ever putting the runs already there at risk.
 *
 * Layout written (docs/results-format.md is the specification):
 *   /                      attrs llmlab_schema_version = 1, llmlab_version
 *   /runs                  group, link creation order tracked (runs listed in write order)
 *   /runs/<name>           group: run attributes, settings subgroups, one compound
 *                          dataset per table (attrs `columns`, `units`), and last of
 *                          all the attribute complete = 1
 *
 * Write protocol (results_write): lock the directory (flock), drop stale temporaries
 * of dead writers, validate the existing file read-only, copy its bytes to
 * "<path>.tmp-<pid>", add the run to the copy through HDF5, close, fsync, rename()
 * over <path>, fsync the directory.  Any failure closes and unlinks the temporary,
 * so the original file is byte-for-byte unchanged.
 */
#define LLMLAB_RESULTS_INTERNAL
#include "results.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#ifndef LLMLAB_GIT_COMMIT
#define LLMLAB_GIT_COMMIT "unknown"
#endif

#define RES_NAME_MAX 255        /* bytes in one name or key component */
#define RES_KEY_MAX 1024        /* bytes in a whole attribute key */
#define RES_CHUNK_BYTES 262144  /* target bytes per table chunk */
#define RES_SLAB_ROWS 65536     /* rows converted and written per H5Dwrite */
#define RES_COPY_BUF (1 << 20)  /* bytes per read/write when copy_file_range is unusable */
#define RES_DEFLATE_LEVEL 1     /* cheap; shuffle does most of the work on numbers */

/* ---- in-memory records ------------------------------------------------------------ */

typedef struct {
    char *key; /* full path, "settings/decoding/k" */
    llmlab_coltype type;
    int64_t i;
    double d;
    char *s;
} run_attr;

typedef struct {
    char *name;
    char *unit; /* "" when none */
    llmlab_coltype type;
    size_t n, cap; /* values held / allocated */
    union {
        int64_t *i;
        double *d;
        char **s;
        void *p;
    } v;
} table_col;

struct llmlab_table {
    char *name;
    table_col *cols;
    size_t ncols, cap;
    size_t hint; /* index of the column appended to last (row-wise appends hit hint+1) */
};

struct llmlab_run {
    char *name;
    run_attr *attrs;
    size_t nattrs, cap;
    llmlab_table **tables;
    size_t ntables, tcap;
};

static const char *type_name(llmlab_coltype t) {
    switch (t) {
    case LLMLAB_COL_INT: return "integers";
    case LLMLAB_COL_DOUBLE: return "doubles";
    case LLMLAB_COL_STR: return "strings";
    }
    return "unknown";
}

/* Grows *p (elements of size sz) so that it holds at least need; 0 or -1 (ENOMEM). */
static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 8;
    while (c < need) {
        if (c > SIZE_MAX / 2 / sz) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * sz);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---- names ------------------------------------------------------------------------ */

llmlab_status llmlab_res_check_name(const char *name, size_t len, const char *what,
                                    llmlab_err *err) {
    if (!name || len == 0) return llmlab_err_set(err, LLMLAB_EINVAL, "%s is empty", what);
    if (len > RES_NAME_MAX)
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s '%.40s...' is longer than %d bytes", what,
                              name, RES_NAME_MAX);
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s '%.*s' is reserved", what, (int)len, name);
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)name[k];
        if (c == '/')
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s '%.*s' contains '/'", what, (int)len,
                                  name);
        if (c < 0x20 || c == 0x7f)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "%s '%.*s' contains control character 0x%02x", what, (int)len,
                                  name, c);
    }
    return LLMLAB_OK;
}

static llmlab_status check_name0(const char *name, const char *what, llmlab_err *err) {
    if (!name) return llmlab_err_set(err, LLMLAB_EINVAL, "%s is NULL", what);
    return llmlab_res_check_name(name, strlen(name), what, err);
}

/* Length of the first component of key when key has a '/', else 0. */
static size_t group_prefix_len(const char *key) {
    const char *slash = strchr(key, '/');
    return slash ? (size_t)(slash - key) : 0;
}

static int run_has_table(const llmlab_run *run, const char *name, size_t len) {
    for (size_t k = 0; k < run->ntables; k++)
        if (strlen(run->tables[k]->name) == len && !memcmp(run->tables[k]->name, name, len))
            return 1;
    return 0;
}

/* Validates an attribute key: path components, writer-owned names, table clashes. */
static llmlab_status check_key(const llmlab_run *run, const char *key, llmlab_err *err) {
    if (!key || !*key) return llmlab_err_set(err, LLMLAB_EINVAL, "attribute key is empty");
    size_t len = strlen(key);
    if (len > RES_KEY_MAX)
        return llmlab_err_set(err, LLMLAB_EINVAL, "attribute key '%.40s...' is longer than %d bytes",
                              key, RES_KEY_MAX);
    for (const char *p = key;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        llmlab_err sub = {0};
        if (llmlab_res_check_name(p, n, "component", &sub))
            return llmlab_err_set(err, LLMLAB_EINVAL, "attribute key '%s': %s", key, sub.msg);
        if (!slash) break;
        p = slash + 1;
    }
    if (!strcmp(key, "name") || !strcmp(key, "schema_version") || !strcmp(key, "complete"))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "attribute '%s' is written by the results writer itself", key);
    size_t g = group_prefix_len(key);
    if (g && run_has_table(run, key, g))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "attribute key '%s': group '%.*s' is the name of a table of run '%s'",
                              key, (int)g, key, run->name);
    return LLMLAB_OK;
}

/* ---- runs ----------------------------------------------------------------------------- */

llmlab_run *llmlab_run_create(const char *name, llmlab_err *err) {
    if (check_name0(name, "run name", err)) return NULL;
    llmlab_run *run = calloc(1, sizeof *run);
    if (run) run->name = strdup(name);
    if (!run || !run->name) {
        free(run);
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory creating run '%s'", name);
        return NULL;
    }
    return run;
}

static void table_free(llmlab_table *t) {
    if (!t) return;
    for (size_t c = 0; c < t->ncols; c++) {
        table_col *col = &t->cols[c];
        if (col->type == LLMLAB_COL_STR)
            for (size_t k = 0; k < col->n; k++) free(col->v.s[k]);
        free(col->v.p);
        free(col->name);
        free(col->unit);
    }
    free(t->cols);
    free(t->name);
    free(t);
}

void llmlab_run_free(llmlab_run *run) {
    if (!run) return;
    for (size_t k = 0; k < run->nattrs; k++) {
        free(run->attrs[k].key);
        free(run->attrs[k].s);
    }
    for (size_t k = 0; k < run->ntables; k++) table_free(run->tables[k]);
    free(run->attrs);
    free(run->tables);
    free(run->name);
    free(run);
}

const char *llmlab_run_name(const llmlab_run *run) { return run ? run->name : NULL; }

/* Finds or adds the record for key (validated); NULL on ENOMEM with err filled. */
static run_attr *attr_slot(llmlab_run *run, const char *key, llmlab_err *err) {
    for (size_t k = 0; k < run->nattrs; k++)
        if (!strcmp(run->attrs[k].key, key)) {
            free(run->attrs[k].s);
            run->attrs[k].s = NULL;
            return &run->attrs[k];
        }
    char *copy = strdup(key);
    if (!copy || grow((void **)&run->attrs, &run->cap, run->nattrs + 1, sizeof *run->attrs)) {
        free(copy);
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory setting attribute '%s'", key);
        return NULL;
    }
    run_attr *a = &run->attrs[run->nattrs++];
    memset(a, 0, sizeof *a);
    a->key = copy;
    return a;
}

llmlab_status llmlab_run_attr_str(llmlab_run *run, const char *key, const char *value,
                                  llmlab_err *err) {
    if (!run) return llmlab_err_set(err, LLMLAB_EINVAL, "run is NULL");
    llmlab_status st = check_key(run, key, err);
    if (st) return st;
    char *s = strdup(value ? value : "");
    if (!s) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory setting attribute '%s'", key);
    run_attr *a = attr_slot(run, key, err);
    if (!a) {
        free(s);
        return LLMLAB_ENOMEM;
    }
    a->type = LLMLAB_COL_STR;
    a->s = s;
    return LLMLAB_OK;
}

/* The checked, typed slot of a numeric attribute (shared by _int and _double). */
static llmlab_status numeric_attr(llmlab_run *run, const char *key, llmlab_coltype type, run_attr **out,
                                  llmlab_err *err) {
    if (!run) return llmlab_err_set(err, LLMLAB_EINVAL, "run is NULL");
    llmlab_status st = check_key(run, key, err);
    if (st) return st;
    run_attr *a = attr_slot(run, key, err);
    if (!a) return LLMLAB_ENOMEM;
    a->type = type;
    *out = a;
    return LLMLAB_OK;
}

llmlab_status llmlab_run_attr_int(llmlab_run *run, const char *key, int64_t value,
                                  llmlab_err *err) {
    run_attr *a = NULL;
    llmlab_status st = numeric_attr(run, key, LLMLAB_COL_INT, &a, err);
    if (!st) a->i = value;
    return st;
}

llmlab_status llmlab_run_attr_double(llmlab_run *run, const char *key, double value,
                                     llmlab_err *err) {
    run_attr *a = NULL;
    llmlab_status st = numeric_attr(run, key, LLMLAB_COL_DOUBLE, &a, err);
    if (!st) a->d = value;
    return st;
}

static const run_attr *find_attr(const llmlab_run *run, const char *key) {
    for (size_t k = 0; k < run->nattrs; k++)
        if (!strcmp(run->attrs[k].key, key)) return &run->attrs[k];
    return NULL;
}

/* ---- tables ---------------------------------------------------------------------------- */

llmlab_table *llmlab_run_table(llmlab_run *run, const char *name, llmlab_err *err) {
    if (!run) {
        llmlab_err_set(err, LLMLAB_EINVAL, "run is NULL");
        return NULL;
    }
    if (check_name0(name, "table name", err)) return NULL;
    for (size_t k = 0; k < run->ntables; k++)
        if (!strcmp(run->tables[k]->name, name)) return run->tables[k];
    size_t len = strlen(name);
    for (size_t k = 0; k < run->nattrs; k++) {
        size_t g = group_prefix_len(run->attrs[k].key);
        if (g == len && !memcmp(run->attrs[k].key, name, len)) {
            llmlab_err_set(err, LLMLAB_EINVAL,
                           "table name '%s' is already an attribute group (key '%s')", name,
                           run->attrs[k].key);
            return NULL;
        }
    }
    llmlab_table *t = calloc(1, sizeof *t);
    if (t) t->name = strdup(name);
    if (!t || !t->name ||
        grow((void **)&run->tables, &run->tcap, run->ntables + 1, sizeof *run->tables)) {
        table_free(t);
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory creating table '%s'", name);
        return NULL;
    }
    run->tables[run->ntables++] = t;
    return t;
}

static table_col *find_col(llmlab_table *t, const char *name) {
    size_t next = t->hint + 1 < t->ncols ? t->hint + 1 : 0;
    if (next < t->ncols && !strcmp(t->cols[next].name, name)) return &t->cols[t->hint = next];
    for (size_t c = 0; c < t->ncols; c++)
        if (!strcmp(t->cols[c].name, name)) return &t->cols[t->hint = c];
    return NULL;
}

static int valid_type(llmlab_coltype type) {
    return type == LLMLAB_COL_INT || type == LLMLAB_COL_DOUBLE || type == LLMLAB_COL_STR;
}

/* Declares or finds column name of the given type; NULL with err filled on error. */
static table_col *get_col(llmlab_table *t, const char *name, llmlab_coltype type,
                          const char *unit, llmlab_err *err) {
    if (!t) {
        llmlab_err_set(err, LLMLAB_EINVAL, "table is NULL");
        return NULL;
    }
    table_col *col = name ? find_col(t, name) : NULL;
    if (col && col->type != type) {
        llmlab_err_set(err, LLMLAB_EINVAL, "column '%s' of table '%s' holds %s, not %s", name,
                       t->name, type_name(col->type), type_name(type));
        return NULL;
    }
    char *u = unit && *unit ? strdup(unit) : NULL;
    if (unit && *unit && !u) goto nomem;
    if (col) {
        if (u) {
            free(col->unit);
            col->unit = u;
        }
        return col;
    }
    llmlab_err sub = {0};
    if (check_name0(name, "column name", &sub)) {
        free(u);
        llmlab_err_set(err, LLMLAB_EINVAL, "table '%s': %s", t->name, sub.msg);
        return NULL;
    }
    if (!u && !(u = strdup(""))) goto nomem;
    if (grow((void **)&t->cols, &t->cap, t->ncols + 1, sizeof *t->cols)) goto nomem;
    col = &t->cols[t->ncols];
    memset(col, 0, sizeof *col);
    if (!(col->name = strdup(name))) goto nomem;
    col->unit = u;
    col->type = type;
    t->hint = t->ncols++;
    return col;
nomem:
    free(u);
    llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory adding column '%s' to table '%s'",
                   name ? name : "?", t->name);
    return NULL;
}

llmlab_status llmlab_table_column(llmlab_table *t, const char *name, llmlab_coltype type,
                                  const char *unit, llmlab_err *err) {
    if (!valid_type(type))
        return llmlab_err_set(err, LLMLAB_EINVAL, "column '%s': unknown type %d",
                              name ? name : "?", (int)type);
    return get_col(t, name, type, unit, err) ? LLMLAB_OK : err ? err->code : LLMLAB_EINVAL;
}

/* Makes room for n more values in the column (of type, declared if new). */
static table_col *reserve(llmlab_table *t, const char *name, llmlab_coltype type, size_t n,
                          llmlab_err *err) {
    table_col *col = get_col(t, name, type, NULL, err);
    if (!col) return NULL;
    size_t sz = type == LLMLAB_COL_STR ? sizeof(char *) : 8;
    if (col->n + n < col->n || grow(&col->v.p, &col->cap, col->n + n, sz)) {
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory appending to column '%s' of table '%s'",
                       name, t->name);
        return NULL;
    }
    return col;
}

static llmlab_status col_fail(llmlab_err *err) { return err ? err->code : LLMLAB_EINVAL; }

llmlab_status llmlab_table_append_int(llmlab_table *t, const char *name, int64_t v,
                                      llmlab_err *err) {
    table_col *col = reserve(t, name, LLMLAB_COL_INT, 1, err);
    if (!col) return col_fail(err);
    col->v.i[col->n++] = v;
    return LLMLAB_OK;
}

llmlab_status llmlab_table_append_double(llmlab_table *t, const char *name, double v,
                                         llmlab_err *err) {
    table_col *col = reserve(t, name, LLMLAB_COL_DOUBLE, 1, err);
    if (!col) return col_fail(err);
    col->v.d[col->n++] = v;
    return LLMLAB_OK;
}

llmlab_status llmlab_table_append_str(llmlab_table *t, const char *name, const char *v,
                                      llmlab_err *err) {
    char *s = strdup(v ? v : "");
    if (!s) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory appending a string");
    table_col *col = reserve(t, name, LLMLAB_COL_STR, 1, err);
    if (!col) {
        free(s);
        return col_fail(err);
    }
    col->v.s[col->n++] = s;
    return LLMLAB_OK;
}

llmlab_status llmlab_table_append_ints(llmlab_table *t, const char *name, const int64_t *v,
                                       size_t n, llmlab_err *err) {
    if (n && !v) return llmlab_err_set(err, LLMLAB_EINVAL, "column '%s': values are NULL", name);
    table_col *col = reserve(t, name, LLMLAB_COL_INT, n, err);
    if (!col) return col_fail(err);
    if (n) memcpy(col->v.i + col->n, v, n * sizeof *v);
    col->n += n;
    return LLMLAB_OK;
}

llmlab_status llmlab_table_append_doubles(llmlab_table *t, const char *name, const double *v,
                                          size_t n, llmlab_err *err) {
    if (n && !v) return llmlab_err_set(err, LLMLAB_EINVAL, "column '%s': values are NULL", name);
    table_col *col = reserve(t, name, LLMLAB_COL_DOUBLE, n, err);
    if (!col) return col_fail(err);
    if (n) memcpy(col->v.d + col->n, v, n * sizeof *v);
    col->n += n;
    return LLMLAB_OK;
}

size_t llmlab_table_rows(const llmlab_table *t) {
    size_t n = 0;
    for (size_t c = 0; t && c < t->ncols; c++)
        if (t->cols[c].n > n) n = t->cols[c].n;
    return n;
}

/* Every table has columns, all of the same length. */
static llmlab_status check_tables(const llmlab_run *run, llmlab_err *err) {
    for (size_t k = 0; k < run->ntables; k++) {
        const llmlab_table *t = run->tables[k];
        if (t->ncols == 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "table '%s' has no columns", t->name);
        for (size_t c = 1; c < t->ncols; c++)
            if (t->cols[c].n != t->cols[0].n)
                return llmlab_err_set(err, LLMLAB_EINVAL,
                                      "table '%s': column '%s' has %zu values but '%s' has %zu",
                                      t->name, t->cols[c].name, t->cols[c].n, t->cols[0].name,
                                      t->cols[0].n);
    }
    return LLMLAB_OK;
}

/* ---- HDF5 plumbing ------------------------------------------------------------------------ */

void llmlab_res_quiet_begin(llmlab_res_quiet *q) {
    q->fn = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5Eclear2(H5E_DEFAULT);
}

void llmlab_res_quiet_end(const llmlab_res_quiet *q) {
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, q->fn, q->data);
}

typedef struct {
    char *buf;
    size_t cap;
} reason_ctx;

static herr_t reason_cb(unsigned n, const H5E_error2_t *e, void *data) {
    reason_ctx *r = data;
    if (n == 0 && e && e->desc) snprintf(r->buf, r->cap, "%s", e->desc);
    return 0;
}

void llmlab_res_h5_reason(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown HDF5 error");
    reason_ctx r = {buf, cap};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, reason_cb, &r);
    H5Eclear2(H5E_DEFAULT);
    /* System-call failures read "... errno = 27, error message = 'File too large', ...":
     * keep just the strerror text. */
    const char *tag = "error message = '";
    char *p = strstr(buf, tag);
    if (p) {
        p += strlen(tag);
        char *q = strchr(p, '\'');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        memmove(buf, p, n);
        buf[n] = '\0';
    }
}

/* Fills err with EIO "<what>: <HDF5 reason>"; call right after the failing H5 call. */
static llmlab_status h5_fail(llmlab_err *err, const char *what) {
    char why[256];
    llmlab_res_h5_reason(why, sizeof why);
    return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", what, why);
}

/* A file-access property list: strong close, no failure on file systems without
 * file locking (we lock the directory ourselves) and, for writing, objects in the
 * HDF5 1.8 format (readable by every HDF5 since 2008; reading accepts any). */
static hid_t make_fapl(int for_write) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    if ((for_write && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) ||
        H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

hid_t llmlab_res_open_checked(const char *path, unsigned flags, llmlab_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        llmlab_err_set(err, LLMLAB_EIO, "cannot open: %s", strerror(errno));
        return H5I_INVALID_HID;
    }
    struct stat sb;
    int isreg = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    close(fd);
    if (!isreg) {
        llmlab_err_set(err, LLMLAB_EIO, "not a regular file");
        return H5I_INVALID_HID;
    }
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        llmlab_err_set(err, LLMLAB_EFORMAT, "not an HDF5 file");
        return H5I_INVALID_HID;
    }
    hid_t fapl = make_fapl(flags != H5F_ACC_RDONLY);
    hid_t file = fapl < 0 ? H5I_INVALID_HID : H5Fopen(path, flags, fapl);
    if (file < 0) {
        h5_fail(err, "cannot open as HDF5");
        if (err) err->code = LLMLAB_EFORMAT;
        if (fapl >= 0) H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    H5Pclose(fapl);
    int64_t version = -1;
    llmlab_status st = LLMLAB_OK;
    hid_t a = H5Aexists(file, "llmlab_schema_version") > 0
                  ? H5Aopen(file, "llmlab_schema_version", H5P_DEFAULT)
                  : H5I_INVALID_HID;
    hid_t t = a < 0 ? H5I_INVALID_HID : H5Aget_type(a);
    if (a < 0)
        st = llmlab_err_set(err, LLMLAB_EFORMAT,
                            "an HDF5 file but not an llmlab results file (no root attribute "
                            "llmlab_schema_version)");
    else if (t < 0 || H5Tget_class(t) != H5T_INTEGER ||
             H5Aread(a, H5T_NATIVE_INT64, &version) < 0)
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "root attribute llmlab_schema_version is not an "
                                                 "integer");
    else if (version != LLMLAB_RESULTS_SCHEMA_VERSION)
        st = llmlab_err_set(err, LLMLAB_EFORMAT,
                            "results schema version %lld; this llmlab reads and writes version %d",
                            (long long)version, LLMLAB_RESULTS_SCHEMA_VERSION);
    else if (H5Lexists(file, "runs", H5P_DEFAULT) <= 0)
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "not an llmlab results file (no /runs group)");
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (st) {
        H5Eclear2(H5E_DEFAULT);
        H5Fclose(file);
        return H5I_INVALID_HID;
    }
    return file;
}

/* A variable-length UTF-8 string type (close with H5Tclose). */
static hid_t str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* A link (H5P_LINK_CREATE) or attribute (H5P_ATTRIBUTE_CREATE) creation property
 * list marking the new name as UTF-8; H5P_DEFAULT when that fails (names are then
 * stored as the same bytes, just labelled ASCII).  Close with close_plist. */
static hid_t utf8_names(hid_t cls) {
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_char_encoding(p, H5T_CSET_UTF8) < 0) {
        H5Pclose(p);
        p = H5I_INVALID_HID;
    }
    return p >= 0 ? p : H5P_DEFAULT;
}

static void close_plist(hid_t p) {
    if (p != H5P_DEFAULT) H5Pclose(p);
}

/* Writes a scalar attribute name on obj; what names it in the message. */
static llmlab_status put_attr(hid_t obj, const char *name, llmlab_coltype type, int64_t i,
                              double d, const char *s, const char *what, llmlab_err *err) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t ftype = type == LLMLAB_COL_STR      ? str_type()
                  : type == LLMLAB_COL_DOUBLE ? H5Tcopy(H5T_IEEE_F64LE)
                                              : H5Tcopy(H5T_STD_I64LE);
    hid_t mtype = type == LLMLAB_COL_STR      ? H5Tcopy(ftype)
                  : type == LLMLAB_COL_DOUBLE ? H5Tcopy(H5T_NATIVE_DOUBLE)
                                              : H5Tcopy(H5T_NATIVE_INT64);
    const void *buf = type == LLMLAB_COL_STR      ? (const void *)&s
                      : type == LLMLAB_COL_DOUBLE ? (const void *)&d
                                                  : (const void *)&i;
    llmlab_status st = LLMLAB_OK;
    hid_t a = H5I_INVALID_HID, acpl = utf8_names(H5P_ATTRIBUTE_CREATE);
    /* The reason must be read before any cleanup call, which clears HDF5's stack. */
    if (space < 0 || ftype < 0 || mtype < 0 ||
        (a = H5Acreate2(obj, name, ftype, space, acpl, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, mtype, buf) < 0)
        st = h5_fail(err, what);
    close_plist(acpl);
    if (a >= 0) H5Aclose(a);
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    return st;
}

/* Writes a 1-D string array attribute (a table's columns / units lists). */
static llmlab_status put_str_array(hid_t obj, const char *name, const char *const *v, size_t n,
                                   const char *what, llmlab_err *err) {
    hsize_t dim = n;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t t = str_type();
    hid_t a = H5I_INVALID_HID, acpl = utf8_names(H5P_ATTRIBUTE_CREATE);
    llmlab_status st = LLMLAB_OK;
    if (space < 0 || t < 0 || (a = H5Acreate2(obj, name, t, space, acpl, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, t, v) < 0)
        st = h5_fail(err, what);
    close_plist(acpl);
    if (a >= 0) H5Aclose(a);
    if (t >= 0) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
    return st;
}

/* ---- writing a run into an open file ---------------------------------------------------- */

/* Opens, creating where missing, the group named by the first glen bytes of key
 * (components separated by '/') below base.  Returns the id or a negative value. */
static hid_t open_group_path(hid_t base, const char *key, size_t glen, llmlab_err *err) {
    char comp[RES_NAME_MAX + 1];
    hid_t cur = H5Gopen2(base, ".", H5P_DEFAULT);
    if (cur < 0) h5_fail(err, "opening the run group");
    for (size_t at = 0; cur >= 0 && at < glen;) {
        const char *p = key + at;
        const char *slash = memchr(p, '/', glen - at);
        size_t n = slash ? (size_t)(slash - p) : glen - at;
        memcpy(comp, p, n);
        comp[n] = '\0';
        htri_t has = H5Lexists(cur, comp, H5P_DEFAULT);
        hid_t lcpl = utf8_names(H5P_LINK_CREATE);
        hid_t next = has > 0   ? H5Gopen2(cur, comp, H5P_DEFAULT)
                     : has == 0 ? H5Gcreate2(cur, comp, lcpl, H5P_DEFAULT, H5P_DEFAULT)
                                : H5I_INVALID_HID;
        if (next < 0) {
            char what[RES_KEY_MAX + 64];
            snprintf(what, sizeof what, "creating group '%.*s'", (int)glen, key);
            h5_fail(err, what);
        }
        close_plist(lcpl);
        H5Gclose(cur);
        cur = next;
        at += n + 1;
    }
    return cur;
}

static llmlab_status write_attrs(hid_t g, const llmlab_run *run, llmlab_err *err) {
    char what[RES_KEY_MAX + 64];
    for (size_t k = 0; k < run->nattrs; k++) {
        const run_attr *a = &run->attrs[k];
        const char *slash = strrchr(a->key, '/');
        hid_t obj = slash ? open_group_path(g, a->key, (size_t)(slash - a->key), err) : g;
        if (obj < 0) return LLMLAB_EIO;
        snprintf(what, sizeof what, "writing attribute '%s'", a->key);
        llmlab_status st =
            put_attr(obj, slash ? slash + 1 : a->key, a->type, a->i, a->d, a->s, what, err);
        if (slash) H5Gclose(obj);
        if (st) return st;
    }
    llmlab_status st = put_attr(g, "name", LLMLAB_COL_STR, 0, 0, run->name, "writing 'name'", err);
    if (!st)
        st = put_attr(g, "schema_version", LLMLAB_COL_INT, LLMLAB_RESULTS_SCHEMA_VERSION, 0, NULL,
                      "writing 'schema_version'", err);
    if (!st && !find_attr(run, "llmlab_version"))
        st = put_attr(g, "llmlab_version", LLMLAB_COL_STR, 0, 0, LLMLAB_VERSION_STRING,
                      "writing 'llmlab_version'", err);
    if (!st && !find_attr(run, "git_commit"))
        st = put_attr(g, "git_commit", LLMLAB_COL_STR, 0, 0, LLMLAB_GIT_COMMIT,
                      "writing 'git_commit'", err);
    return st;
}

/* The table's row types: in memory (native, 8 bytes per column at offset 8*c) and
 * in the file (little-endian, same names and order).  Returns 0 or -1. */
static int make_row_types(const llmlab_table *t, hid_t *mtype, hid_t *ftype) {
    size_t rs = 8 * t->ncols;
    hid_t s = str_type();
    *mtype = H5Tcreate(H5T_COMPOUND, rs);
    *ftype = H5Tcreate(H5T_COMPOUND, rs);
    int rc = s >= 0 && *mtype >= 0 && *ftype >= 0 ? 0 : -1;
    for (size_t c = 0; rc == 0 && c < t->ncols; c++) {
        const table_col *col = &t->cols[c];
        hid_t m = col->type == LLMLAB_COL_STR ? s
                  : col->type == LLMLAB_COL_DOUBLE ? H5T_NATIVE_DOUBLE
                                                   : H5T_NATIVE_INT64;
        hid_t f = col->type == LLMLAB_COL_STR ? s
                  : col->type == LLMLAB_COL_DOUBLE ? H5T_IEEE_F64LE
                                                   : H5T_STD_I64LE;
        if (H5Tinsert(*mtype, col->name, 8 * c, m) < 0 || H5Tinsert(*ftype, col->name, 8 * c, f) < 0)
            rc = -1;
    }
    if (s >= 0) H5Tclose(s);
    return rc;
}

/* Chunked, resizable along rows, shuffle + deflate when the library has zlib. */
static hid_t make_dcpl(size_t nrows, size_t rowsize) {
    hsize_t chunk = RES_CHUNK_BYTES / rowsize;
    if (chunk < 1) chunk = 1;
    if (nrows > 0 && chunk > nrows) chunk = nrows;
    if (nrows == 0 && chunk > 64) chunk = 64;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return dcpl;
    int rc = H5Pset_chunk(dcpl, 1, &chunk) < 0 ? -1 : 0;
    if (rc == 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0)
        rc = H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, RES_DEFLATE_LEVEL) < 0 ? -1 : 0;
    if (rc < 0) {
        H5Pclose(dcpl);
        return H5I_INVALID_HID;
    }
    return dcpl;
}

/* Packs rows [r0, r0+m) into buf: row r at buf + r*rs, column c at offset 8*c
 * (int64, double or char* as the column's type). */
static void pack_rows(const llmlab_table *t, size_t r0, size_t m, unsigned char *buf) {
    size_t rs = 8 * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        const table_col *col = &t->cols[c];
        unsigned char *dst = buf + 8 * c;
        if (col->type == LLMLAB_COL_STR)
            for (size_t r = 0; r < m; r++) memcpy(dst + r * rs, &col->v.s[r0 + r], sizeof(char *));
        else
            for (size_t r = 0; r < m; r++) memcpy(dst + r * rs, &col->v.i[r0 + r], 8);
    }
}

/* Writes all rows of t into dataset ds (file space fspace) in slabs. */
static llmlab_status write_rows(const llmlab_table *t, hid_t ds, hid_t fspace, hid_t mtype,
                                const char *what, llmlab_err *err) {
    size_t n = t->cols[0].n, rs = 8 * t->ncols;
    size_t slab = n < RES_SLAB_ROWS ? n : RES_SLAB_ROWS;
    if (n == 0) return LLMLAB_OK;
    unsigned char *buf = malloc(slab * rs);
    if (!buf) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
    llmlab_status st = LLMLAB_OK;
    for (size_t r0 = 0; !st && r0 < n; r0 += slab) {
        hsize_t start = r0, count = n - r0 < slab ? n - r0 : slab;
        pack_rows(t, r0, (size_t)count, buf);
        hid_t ms = H5Screate_simple(1, &count, NULL);
        if (ms < 0 || H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
            H5Dwrite(ds, mtype, ms, fspace, H5P_DEFAULT, buf) < 0)
            st = h5_fail(err, what);
        if (ms >= 0) H5Sclose(ms);
    }
    free(buf);
    return st;
}

static llmlab_status write_table(hid_t g, const llmlab_table *t, llmlab_err *err) {
    char what[RES_NAME_MAX + 64];
    snprintf(what, sizeof what, "writing table '%s'", t->name);
    hsize_t n = t->cols[0].n, maxn = H5S_UNLIMITED;
    hid_t mtype = H5I_INVALID_HID, ftype = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hid_t space = H5Screate_simple(1, &n, &maxn), lcpl = utf8_names(H5P_LINK_CREATE);
    hid_t dcpl = make_dcpl((size_t)n, 8 * t->ncols);
    llmlab_status st = LLMLAB_OK;
    if (space < 0 || dcpl < 0 || make_row_types(t, &mtype, &ftype) < 0 ||
        (ds = H5Dcreate2(g, t->name, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0)
        st = h5_fail(err, what);
    else
        st = write_rows(t, ds, space, mtype, what, err);
    if (!st) {
        const char **names = malloc(t->ncols * sizeof *names);
        const char **units = malloc(t->ncols * sizeof *units);
        if (!names || !units) st = llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", what);
        for (size_t c = 0; !st && c < t->ncols; c++) {
            names[c] = t->cols[c].name;
            units[c] = t->cols[c].unit;
        }
        if (!st) st = put_str_array(ds, "columns", names, t->ncols, what, err);
        if (!st) st = put_str_array(ds, "units", units, t->ncols, what, err);
        free(names);
        free(units);
    }
    if (ds >= 0) H5Dclose(ds);
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    close_plist(lcpl);
    return st;
}

/* Adds /runs/<name> with everything in run; the attribute complete = 1 goes last. */
static llmlab_status write_run(hid_t file, const llmlab_run *run, llmlab_err *err) {
    hid_t runs = H5Gopen2(file, "runs", H5P_DEFAULT);
    if (runs < 0) return h5_fail(err, "opening /runs");
    hid_t lcpl = utf8_names(H5P_LINK_CREATE);
    hid_t g = H5Gcreate2(runs, run->name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    llmlab_status st = g < 0 ? h5_fail(err, "creating the run group") : LLMLAB_OK;
    close_plist(lcpl);
    if (!st) st = write_attrs(g, run, err);
    for (size_t k = 0; !st && k < run->ntables; k++) st = write_table(g, run->tables[k], err);
    if (!st) st = put_attr(g, "complete", LLMLAB_COL_INT, 1, 0, NULL, "writing 'complete'", err);
    if (g >= 0) H5Gclose(g);
    H5Gclose(runs);
    return st;
}

/* ---- the file protocol: lock, temp copy, fsync, rename ------------------------------------ */

typedef struct {
    const char *path;
    char *dir;        /* directory of path (malloc'd) */
    const char *base; /* last component of path */
    char *tmp;        /* "<path>.tmp-<pid>" (malloc'd) */
    int dirfd;        /* open on dir, flock'ed */
    int tmp_made;     /* tmp may exist and must go on failure */
    hid_t file;       /* tmp opened by HDF5 */
} writer;

static llmlab_status writer_init(writer *w, const char *path, llmlab_err *err) {
    memset(w, 0, sizeof *w);
    w->path = path;
    w->dirfd = -1;
    w->file = H5I_INVALID_HID;
    const char *slash = strrchr(path, '/');
    w->base = slash ? slash + 1 : path;
    if (!*w->base || !strcmp(w->base, ".") || !strcmp(w->base, ".."))
        return llmlab_err_set(err, LLMLAB_EINVAL, "names a directory, not a file");
    size_t dl = slash ? (size_t)(slash - path) : 1;
    w->dir = slash ? strndup(path, dl ? dl : 1) : strdup(".");
    w->tmp = malloc(strlen(path) + 32);
    if (!w->dir || !w->tmp) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    snprintf(w->tmp, strlen(path) + 32, "%s.tmp-%ld", path, (long)getpid());
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0)
        return llmlab_err_set(err, LLMLAB_EIO, "cannot open directory '%s': %s", w->dir,
                              strerror(errno));
    /* Serializes writers of this directory (best effort: some network file systems
     * refuse flock on directories; the temp-and-rename protocol stays safe then, but
     * two simultaneous writers of one file could lose one run). */
    while (flock(w->dirfd, LOCK_EX) < 0 && errno == EINTR) {
    }
    return LLMLAB_OK;
}

static void writer_done(writer *w) {
    if (w->file >= 0) H5Fclose(w->file);
    if (w->tmp_made) unlink(w->tmp);
    if (w->dirfd >= 0) close(w->dirfd); /* releases the lock */
    free(w->dir);
    free(w->tmp);
}

/* Removes "<base>.tmp-<pid>" files of writers that are gone (crashed or killed). */
static void drop_stale_temps(const writer *w) {
    DIR *d = opendir(w->dir);
    if (!d) return;
    size_t bl = strlen(w->base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        if (strncmp(s, w->base, bl) || strncmp(s + bl, ".tmp-", 5)) continue;
        s += bl + 5;
        char *end;
        long pid = strtol(s, &end, 10);
        if (!*s || *end || pid <= 0) continue;
        if (pid == (long)getpid() || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
            unlinkat(w->dirfd, e->d_name, 0);
    }
    closedir(d);
}

/* Copies src to a new file dst with permissions mode (copy_file_range, falling back
 * to read/write).  errno-based EIO on failure; dst may be left partial. */
static llmlab_status copy_bytes(const char *src, const char *dst, mode_t mode, llmlab_err *err) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return llmlab_err_set(err, LLMLAB_EIO, "cannot read: %s", strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return llmlab_err_set(err, LLMLAB_EIO, "cannot create '%s': %s", dst, strerror(e));
    }
    char *buf = malloc(RES_COPY_BUF);
    int fail = buf ? 0 : ENOMEM, fast = 1;
    size_t copied = 0;
    while (!fail) {
        ssize_t r;
        if (fast) {
            r = copy_file_range(in, NULL, out, NULL, (size_t)1 << 30, 0);
            if (r < 0 && copied == 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
                                         errno == EOPNOTSUPP)) {
                fast = 0;
                continue;
            }
        } else {
            r = read(in, buf, RES_COPY_BUF);
            for (ssize_t w = 0, k; r > 0 && w < r; w += k)
                if ((k = write(out, buf + w, (size_t)(r - w))) < 0) {
                    if (errno == EINTR) k = 0;
                    else r = -1;
                }
        }
        if (r == 0) break;
        if (r < 0 && errno != EINTR) fail = errno;
        if (r > 0) copied += (size_t)r;
    }
    if (!fail && fchmod(out, mode) < 0) fail = errno;
    if (close(out) < 0 && !fail) fail = errno;
    close(in);
    free(buf);
    if (fail)
        return llmlab_err_set(err, LLMLAB_EIO, "copying to '%s': %s", dst, strerror(fail));
    return LLMLAB_OK;
}

/* The existing file must be an llmlab results file of our schema without run name. */
static llmlab_status check_existing(const char *path, const char *name, llmlab_err *err) {
    hid_t file = llmlab_res_open_checked(path, H5F_ACC_RDONLY, err);
    if (file < 0) return err ? err->code : LLMLAB_EFORMAT;
    hid_t runs = H5Gopen2(file, "runs", H5P_DEFAULT);
    htri_t has = runs < 0 ? -1 : H5Lexists(runs, name, H5P_DEFAULT);
    llmlab_status st = has < 0   ? h5_fail(err, "reading /runs")
                       : has > 0 ? llmlab_err_set(err, LLMLAB_EINVAL,
                                                  "a run named '%s' is already in the file", name)
                                 : LLMLAB_OK;
    if (runs >= 0) H5Gclose(runs);
    H5Fclose(file);
    return st;
}

/* Root attributes and an empty /runs in a freshly created file. */
static llmlab_status init_new_file(hid_t file, llmlab_err *err) {
    llmlab_status st = put_attr(file, "llmlab_schema_version", LLMLAB_COL_INT,
                                LLMLAB_RESULTS_SCHEMA_VERSION, 0, NULL,
                                "writing llmlab_schema_version", err);
    if (!st)
        st = put_attr(file, "llmlab_version", LLMLAB_COL_STR, 0, 0, LLMLAB_VERSION_STRING,
                      "writing llmlab_version", err);
    if (st) return st;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = H5I_INVALID_HID;
    if (gcpl < 0 ||
        H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        (g = H5Gcreate2(file, "runs", H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0)
        st = h5_fail(err, "creating /runs");
    if (g >= 0) H5Gclose(g);
    if (gcpl >= 0) H5Pclose(gcpl);
    return st;
}

/* Creates a fresh results file at w->tmp: root attributes and an empty /runs. */
static llmlab_status create_new(writer *w, hid_t fapl, llmlab_err *err) {
    w->file = H5Fcreate(w->tmp, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (w->file < 0) return h5_fail(err, "creating the file");
    return init_new_file(w->file, err);
}

/* ---- pieces for llmlab merge (merge.c) -------------------------------------------------- */

hid_t llmlab_res_create_file(const char *path, llmlab_err *err) {
    hid_t fapl = make_fapl(1);
    hid_t file = fapl < 0 ? H5I_INVALID_HID : H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (file < 0) h5_fail(err, "creating the file");
    if (fapl >= 0) H5Pclose(fapl);
    if (file >= 0 && init_new_file(file, err)) {
        H5Fclose(file);
        unlink(path);
        return H5I_INVALID_HID;
    }
    return file;
}

llmlab_status llmlab_res_write_table(hid_t loc, const llmlab_table *t, llmlab_err *err) {
    if (t->ncols == 0) return llmlab_err_set(err, LLMLAB_EINVAL, "table '%s' has no columns", t->name);
    for (size_t c = 1; c < t->ncols; c++)
        if (t->cols[c].n != t->cols[0].n)
            return llmlab_err_set(err, LLMLAB_EINVAL, "table '%s': columns differ in length", t->name);
    return write_table(loc, t, err);
}

llmlab_status llmlab_res_put_attr(hid_t obj, const char *name, llmlab_coltype type, int64_t i, double d,
                                  const char *s, llmlab_err *err) {
    char what[RES_NAME_MAX + 64];
    snprintf(what, sizeof what, "writing attribute '%s'", name);
    return put_attr(obj, name, type, i, d, s, what, err);
}

/* Validates the existing file (if any) and opens w->tmp as its copy or a new file. */
static llmlab_status open_target(writer *w, const char *name, llmlab_err *err) {
    struct stat sb;
    int exists = stat(w->path, &sb) == 0;
    if (!exists && errno != ENOENT)
        return llmlab_err_set(err, LLMLAB_EIO, "cannot stat: %s", strerror(errno));
    llmlab_status st = exists ? check_existing(w->path, name, err) : LLMLAB_OK;
    if (st) return st;
    hid_t fapl = make_fapl(1);
    if (fapl < 0) return h5_fail(err, "file access properties");
    w->tmp_made = 1;
    if (!exists) {
        st = create_new(w, fapl, err);
    } else if (!(st = copy_bytes(w->path, w->tmp, sb.st_mode & 07777, err))) {
        w->file = H5Fopen(w->tmp, H5F_ACC_RDWR, fapl);
        if (w->file < 0) st = h5_fail(err, "reopening the copy");
    }
    H5Pclose(fapl);
    return st;
}

/* Closes the temp file, makes it durable and moves it over the original. */
static llmlab_status commit(writer *w, llmlab_err *err) {
    herr_t rc = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) return h5_fail(err, "closing");
    int fd = open(w->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return llmlab_err_set(err, LLMLAB_EIO, "fsync of '%s': %s", w->tmp, strerror(e));
    }
    if (close(fd) < 0)
        return llmlab_err_set(err, LLMLAB_EIO, "closing '%s': %s", w->tmp, strerror(errno));
    if (rename(w->tmp, w->path) < 0)
        return llmlab_err_set(err, LLMLAB_EIO, "renaming '%s' over it: %s", w->tmp,
                              strerror(errno));
    w->tmp_made = 0;
    /* Makes the rename durable; some file systems refuse fsync on a directory, and the
     * new file is complete either way, so a failure here is not reported. */
    (void)fsync(w->dirfd);
    return LLMLAB_OK;
}

llmlab_status llmlab_results_write(const char *path, const llmlab_run *run, llmlab_err *err) {
    if (!path || !*path) return llmlab_err_set(err, LLMLAB_EINVAL, "results path is empty");
    if (!run) return llmlab_err_set(err, LLMLAB_EINVAL, "%s: run is NULL", path);
    llmlab_status st = check_tables(run, err);
    if (st) {
        llmlab_err_prefix(err, "%s: run '%s'", path, run->name);
        return st;
    }
    llmlab_res_quiet q;
    llmlab_res_quiet_begin(&q);
    writer w;
    st = writer_init(&w, path, err);
    if (!st) {
        drop_stale_temps(&w);
        st = open_target(&w, run->name, err);
    }
    if (!st) st = write_run(w.file, run, err);
    if (!st) st = commit(&w, err);
    writer_done(&w);
    llmlab_res_quiet_end(&q);
    if (st) llmlab_err_prefix(err, "%s: cannot add run '%s'", path, run->name);
    return st;
}

void llmlab_results_utc_now(char out[32]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}
