/* results_read.c - reading runs back from an HDF5 results file (schema version 1).
 *
 * Modest helpers for tests and for the merge/report commands: list the complete
 * runs, read one attribute, list a table's columns, read one column.  Every call
 * opens the file read-only, checks llmlab_schema_version, works, and closes it, so
 * a writer replacing the file (rename) never disturbs a reader.  Runs without
 * complete = 1 are invisible: list_runs skips them and the other calls refuse them.
 */
#define LLMLAB_RESULTS_INTERNAL
#include "results.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* An open file and the group a lookup starts from (a run group or the root). */
typedef struct {
    hid_t file;
    hid_t group;
    llmlab_res_quiet quiet;
} reader;

static void reader_close(reader *r) {
    if (r->group >= 0) H5Gclose(r->group);
    if (r->file >= 0) H5Fclose(r->file);
    llmlab_res_quiet_end(&r->quiet);
}

/* Fills err with "<what>: <HDF5 reason>" as code. */
static llmlab_status h5_err(llmlab_err *err, llmlab_status code, const char *what) {
    char why[256];
    llmlab_res_h5_reason(why, sizeof why);
    return llmlab_err_set(err, code, "%s: %s", what, why);
}

/* 1 when the run group `name` under runs carries complete = 1. */
static int run_is_complete(hid_t runs, const char *name) {
    int64_t v = 0;
    if (H5Aexists_by_name(runs, name, "complete", H5P_DEFAULT) <= 0) return 0;
    hid_t a = H5Aopen_by_name(runs, name, "complete", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return 0;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    return rc >= 0 && v == 1;
}

/* Opens path and the group of run (the root when run is NULL). */
static llmlab_status reader_open(reader *r, const char *path, const char *run, llmlab_err *err) {
    r->file = r->group = H5I_INVALID_HID;
    llmlab_res_quiet_begin(&r->quiet);
    if (!path || !*path) return llmlab_err_set(err, LLMLAB_EINVAL, "results path is empty");
    r->file = llmlab_res_open_checked(path, H5F_ACC_RDONLY, err);
    if (r->file < 0) return err ? err->code : LLMLAB_EFORMAT;
    if (!run) {
        r->group = H5Gopen2(r->file, "/", H5P_DEFAULT);
        return r->group < 0 ? h5_err(err, LLMLAB_EFORMAT, "opening /") : LLMLAB_OK;
    }
    llmlab_status st = llmlab_res_check_name(run, strlen(run), "run name", err);
    if (st) return st;
    hid_t runs = H5Gopen2(r->file, "runs", H5P_DEFAULT);
    if (runs < 0) return h5_err(err, LLMLAB_EFORMAT, "opening /runs");
    if (H5Lexists(runs, run, H5P_DEFAULT) <= 0)
        st = llmlab_err_set(err, LLMLAB_EINVAL, "no run named '%s'", run);
    else if (!run_is_complete(runs, run))
        st = llmlab_err_set(err, LLMLAB_EFORMAT, "run '%s' is incomplete (no complete = 1)", run);
    else if ((r->group = H5Gopen2(runs, run, H5P_DEFAULT)) < 0)
        st = h5_err(err, LLMLAB_EFORMAT, "opening the run group");
    H5Gclose(runs);
    return st;
}

/* Ends a public call: closes r and prefixes a failure message with the path. */
static llmlab_status reader_finish(reader *r, llmlab_status st, const char *path,
                                   llmlab_err *err) {
    reader_close(r);
    if (st) llmlab_err_prefix(err, "%s", path ? path : "(null)");
    return st;
}

void llmlab_results_free_strs(char **strs, size_t n) {
    if (!strs) return;
    for (size_t k = 0; k < n; k++) free(strs[k]);
    free(strs);
}

/* ---- listing runs ---------------------------------------------------------------------- */

typedef struct {
    char **names;
    size_t n, cap;
    int nomem;
} name_list;

static int push_name(name_list *l, const char *name) {
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->names, c * sizeof *p);
        if (!p) return -1;
        l->names = p;
        l->cap = c;
    }
    if (!(l->names[l->n] = strdup(name))) return -1;
    l->n++;
    return 0;
}

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    name_list *l = data;
    (void)info;
    if (!run_is_complete(g, name)) return 0;
    if (push_name(l, name) < 0) {
        l->nomem = 1;
        return -1;
    }
    return 0;
}

llmlab_status llmlab_results_list_runs(const char *path, char ***names, size_t *n,
                                       llmlab_err *err) {
    if (!names || !n) return llmlab_err_set(err, LLMLAB_EINVAL, "names/n is NULL");
    *names = NULL;
    *n = 0;
    reader r;
    llmlab_status st = reader_open(&r, path, NULL, err);
    hid_t runs = st ? H5I_INVALID_HID : H5Gopen2(r.file, "runs", H5P_DEFAULT);
    if (!st && runs < 0) st = h5_err(err, LLMLAB_EFORMAT, "opening /runs");
    name_list l = {0};
    if (!st) {
        /* Write order when the file tracks it (ours do), else by name. */
        hsize_t idx = 0;
        herr_t rc = H5Literate(runs, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, list_cb, &l);
        if (rc < 0 && !l.nomem && l.n == 0) {
            idx = 0;
            rc = H5Literate(runs, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &l);
        }
        if (l.nomem) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory listing runs");
        else if (rc < 0) st = h5_err(err, LLMLAB_EFORMAT, "listing /runs");
    }
    if (runs >= 0) H5Gclose(runs);
    if (st) {
        llmlab_results_free_strs(l.names, l.n);
    } else {
        *names = l.names;
        *n = l.n;
    }
    return reader_finish(&r, st, path, err);
}

/* ---- attributes ------------------------------------------------------------------------ */

/* Opens attribute key ("a" or "settings/decoding/a") below group g. */
static hid_t open_attr(hid_t g, const char *key, llmlab_err *err) {
    if (!key || !*key) {
        llmlab_err_set(err, LLMLAB_EINVAL, "attribute key is empty");
        return H5I_INVALID_HID;
    }
    const char *slash = strrchr(key, '/');
    char *grp = slash ? strndup(key, (size_t)(slash - key)) : strdup(".");
    const char *leaf = slash ? slash + 1 : key;
    hid_t a = H5I_INVALID_HID;
    if (!grp) {
        llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    } else if ((slash && H5Lexists(g, grp, H5P_DEFAULT) <= 0) || !*leaf ||
               H5Aexists_by_name(g, grp, leaf, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        llmlab_err_set(err, LLMLAB_EINVAL, "no attribute '%s'", key);
    } else if ((a = H5Aopen_by_name(g, grp, leaf, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        h5_err(err, LLMLAB_EFORMAT, "opening attribute");
    }
    free(grp);
    return a;
}

/* Class of the attribute's type, or H5T_NO_CLASS; also checks it holds one value. */
static H5T_class_t attr_class(hid_t a, int *is_vlen_str) {
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    *is_vlen_str = c == H5T_STRING && H5Tis_variable_str(t) > 0;
    if (s < 0 || H5Sget_simple_extent_npoints(s) != 1) c = H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return c;
}

static const char *class_name(H5T_class_t c) {
    return c == H5T_INTEGER ? "an integer"
           : c == H5T_FLOAT ? "a double"
           : c == H5T_STRING ? "a string"
                             : "not a single int, double or string";
}

/* Reads one attribute into *i, *d or *s according to want; shared by the three calls. */
static llmlab_status read_attr(const char *path, const char *run, const char *key,
                               H5T_class_t want, void *out, llmlab_err *err) {
    reader r;
    llmlab_status st = reader_open(&r, path, run, err);
    hid_t a = st ? H5I_INVALID_HID : open_attr(r.group, key, err);
    if (!st && a < 0) st = err ? err->code : LLMLAB_EINVAL;
    int vlen = 0;
    H5T_class_t c = st ? H5T_NO_CLASS : attr_class(a, &vlen);
    int ok = c == want || (want == H5T_FLOAT && c == H5T_INTEGER);
    if (!st && !ok)
        st = llmlab_err_set(err, LLMLAB_EINVAL, "attribute '%s' is %s, not %s", key,
                            class_name(c), class_name(want));
    else if (!st && want == H5T_STRING && !vlen)
        st = llmlab_err_set(err, LLMLAB_EFORMAT,
                            "attribute '%s' is a fixed-length string (llmlab writes "
                            "variable-length ones)", key);
    if (!st && want != H5T_STRING) {
        hid_t mt = want == H5T_FLOAT ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
        if (H5Aread(a, mt, out) < 0) st = h5_err(err, LLMLAB_EFORMAT, "reading attribute");
    } else if (!st) {
        hid_t mt = H5Aget_type(a);
        char *v = NULL;
        if (mt < 0 || H5Aread(a, mt, &v) < 0) {
            st = h5_err(err, LLMLAB_EFORMAT, "reading attribute");
        } else if (!(*(char **)out = strdup(v ? v : ""))) {
            st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        }
        H5free_memory(v);
        if (mt >= 0) H5Tclose(mt);
    }
    if (a >= 0) H5Aclose(a);
    return reader_finish(&r, st, path, err);
}

llmlab_status llmlab_results_attr_int(const char *path, const char *run, const char *key,
                                      int64_t *out, llmlab_err *err) {
    if (!out) return llmlab_err_set(err, LLMLAB_EINVAL, "out is NULL");
    return read_attr(path, run, key, H5T_INTEGER, out, err);
}

llmlab_status llmlab_results_attr_double(const char *path, const char *run, const char *key,
                                         double *out, llmlab_err *err) {
    if (!out) return llmlab_err_set(err, LLMLAB_EINVAL, "out is NULL");
    return read_attr(path, run, key, H5T_FLOAT, out, err);
}

llmlab_status llmlab_results_attr_str(const char *path, const char *run, const char *key,
                                      char **out, llmlab_err *err) {
    if (!out) return llmlab_err_set(err, LLMLAB_EINVAL, "out is NULL");
    *out = NULL;
    return read_attr(path, run, key, H5T_STRING, out, err);
}

/* ---- tables ------------------------------------------------------------------------------- */

/* Opens table of the reader's run: a 1-D compound dataset.  *ftype gets its type. */
static hid_t open_table(const reader *r, const char *table, hid_t *ftype, llmlab_err *err) {
    *ftype = H5I_INVALID_HID;
    if (llmlab_res_check_name(table, table ? strlen(table) : 0, "table name", err))
        return H5I_INVALID_HID;
    if (H5Lexists(r->group, table, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        llmlab_err_set(err, LLMLAB_EINVAL, "the run has no table '%s'", table);
        return H5I_INVALID_HID;
    }
    hid_t ds = H5Dopen2(r->group, table, H5P_DEFAULT);
    if (ds < 0) {
        h5_err(err, LLMLAB_EFORMAT, "opening the table");
        return H5I_INVALID_HID;
    }
    *ftype = H5Dget_type(ds);
    if (*ftype < 0 || H5Tget_class(*ftype) != H5T_COMPOUND) {
        llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' is not a table (compound dataset)", table);
        if (*ftype >= 0) H5Tclose(*ftype);
        H5Dclose(ds);
        *ftype = H5I_INVALID_HID;
        return H5I_INVALID_HID;
    }
    return ds;
}

llmlab_status llmlab_results_columns(const char *path, const char *run, const char *table,
                                     char ***names, size_t *n, llmlab_err *err) {
    if (!names || !n) return llmlab_err_set(err, LLMLAB_EINVAL, "names/n is NULL");
    *names = NULL;
    *n = 0;
    reader r;
    hid_t ftype = H5I_INVALID_HID;
    llmlab_status st = reader_open(&r, path, run, err);
    hid_t ds = st ? H5I_INVALID_HID : open_table(&r, table, &ftype, err);
    if (!st && ds < 0) st = err ? err->code : LLMLAB_EINVAL;
    int nm = st ? 0 : H5Tget_nmembers(ftype);
    name_list l = {0};
    for (int k = 0; !st && k < nm; k++) {
        char *m = H5Tget_member_name(ftype, (unsigned)k);
        if (!m || push_name(&l, m) < 0) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        H5free_memory(m);
    }
    if (st) {
        llmlab_results_free_strs(l.names, l.n);
    } else {
        *names = l.names;
        *n = l.n;
    }
    if (ftype >= 0) H5Tclose(ftype);
    if (ds >= 0) H5Dclose(ds);
    return reader_finish(&r, st, path, err);
}

/* A compound holding just `column` as mtype at offset 0 (reads that one field). */
static hid_t field_type(const char *column, hid_t mtype, size_t size) {
    hid_t t = H5Tcreate(H5T_COMPOUND, size);
    if (t >= 0 && H5Tinsert(t, column, 0, mtype) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* Reads column of table into a malloc'd array of elements: int64 (want INTEGER),
 * double (want FLOAT) or char* (want STRING, HDF5-allocated; caller copies). */
static llmlab_status read_column(const reader *r, const char *table, const char *column,
                                 H5T_class_t want, void **out, size_t *n, llmlab_err *err) {
    hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t str = H5I_INVALID_HID;
    hid_t ds = open_table(r, table, &ftype, err);
    if (ds < 0) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = LLMLAB_OK;
    int idx = column ? H5Tget_member_index(ftype, column) : -1;
    H5T_class_t c = idx < 0 ? H5T_NO_CLASS : H5Tget_member_class(ftype, (unsigned)idx);
    if (idx < 0) {
        H5Eclear2(H5E_DEFAULT);
        st = llmlab_err_set(err, LLMLAB_EINVAL, "table '%s' has no column '%s'", table,
                            column ? column : "(null)");
    } else if (!(c == want || (want == H5T_FLOAT && c == H5T_INTEGER))) {
        st = llmlab_err_set(err, LLMLAB_EINVAL, "column '%s' of table '%s' is %s, not %s", column,
                            table, class_name(c), class_name(want));
    }
    hssize_t np = st ? 0 : H5Sget_simple_extent_npoints(space = H5Dget_space(ds));
    if (!st && np < 0) st = h5_err(err, LLMLAB_EFORMAT, "reading the table's size");
    if (!st) {
        hid_t base = want == H5T_INTEGER ? H5T_NATIVE_INT64
                     : want == H5T_FLOAT ? H5T_NATIVE_DOUBLE
                                         : (str = H5Tcopy(H5T_C_S1));
        if (want == H5T_STRING) {
            /* The memory type takes the stored character set: HDF5 1.10 has no
             * UTF-8 <-> ASCII conversion, so a mismatch fails in a fresh process. */
            hid_t member = H5Tget_member_type(ftype, (unsigned)idx);
            H5Tset_size(str, H5T_VARIABLE);
            if (member >= 0) {
                H5Tset_cset(str, H5Tget_cset(member));
                H5Tclose(member);
            }
        }
        size_t esz = want == H5T_STRING ? sizeof(char *) : 8;
        mtype = field_type(column, base, esz);
        *out = np ? calloc((size_t)np, esz) : NULL;
        if (np && !*out) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        else if (np && (mtype < 0 || H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0))
            st = h5_err(err, LLMLAB_EFORMAT, "reading the column");
        if (st) {
            free(*out);
            *out = NULL;
        }
        *n = st ? 0 : (size_t)np;
    }
    if (str >= 0) H5Tclose(str);
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    H5Tclose(ftype);
    H5Dclose(ds);
    return st;
}

/* Shared body of the three column readers. */
static llmlab_status column_call(const char *path, const char *run, const char *table,
                                 const char *column, H5T_class_t want, void **out, size_t *n,
                                 llmlab_err *err) {
    *out = NULL;
    *n = 0;
    reader r; /* run == NULL: a table at the root (merge's /sweep) */
    llmlab_status st = reader_open(&r, path, run, err);
    if (!st) st = read_column(&r, table, column, want, out, n, err);
    if (!st && want == H5T_STRING) {
        /* Replace HDF5's strings by our own malloc'd copies ("" for NULL). */
        char **v = *out;
        for (size_t k = 0; k < *n; k++) {
            char *own = strdup(v[k] ? v[k] : "");
            H5free_memory(v[k]);
            v[k] = own;
            if (!own && !st) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        }
        if (st) {
            llmlab_results_free_strs(v, *n);
            *out = NULL;
            *n = 0;
        }
    }
    return reader_finish(&r, st, path, err);
}

llmlab_status llmlab_results_column_int(const char *path, const char *run, const char *table,
                                        const char *column, int64_t **out, size_t *n,
                                        llmlab_err *err) {
    if (!out || !n) return llmlab_err_set(err, LLMLAB_EINVAL, "out/n is NULL");
    void *p;
    llmlab_status st = column_call(path, run, table, column, H5T_INTEGER, &p, n, err);
    *out = p;
    return st;
}

llmlab_status llmlab_results_column_double(const char *path, const char *run,
                                           const char *table, const char *column, double **out,
                                           size_t *n, llmlab_err *err) {
    if (!out || !n) return llmlab_err_set(err, LLMLAB_EINVAL, "out/n is NULL");
    void *p;
    llmlab_status st = column_call(path, run, table, column, H5T_FLOAT, &p, n, err);
    *out = p;
    return st;
}

llmlab_status llmlab_results_column_str(const char *path, const char *run, const char *table,
                                        const char *column, char ***out, size_t *n,
                                        llmlab_err *err) {
    if (!out || !n) return llmlab_err_set(err, LLMLAB_EINVAL, "out/n is NULL");
    void *p;
    llmlab_status st = column_call(path, run, table, column, H5T_STRING, &p, n, err);
    *out = p;
    return st;
}
