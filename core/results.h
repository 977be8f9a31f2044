/* results.h - the HDF5 results file (schema version 1): run records, writer, reader.
 *
 * An experiment run is collected in memory as an llmlab_run: typed attributes
 * (every setting, with nested groups such as "settings/decoding/temperature") and
 * named tables (requests, steps, tokens, summary) whose columns hold int64, double
 * or UTF-8 strings.  llmlab_results_write() then adds the run, in one step, to an
 * HDF5 file under /runs/<name>: one group per run, one compound dataset per table.
 * docs/results-format.md is the specification of the file.
 *
 * Safety: the original file is never opened for writing.  The writer copies it to
 * "<path>.tmp-<pid>", adds the run there, fsyncs and rename()s it over the
 * original, so a crash, SIGKILL or full disk leaves either the old file or the new
 * one, never a mixture, and never a run without its `complete` = 1 attribute.
 *
 * Names: run, table and column names and each component of an attribute key are
 * 1..255 bytes, with no '/', no control characters, and not "." or "..".  In an
 * attribute key '/' separates groups: "settings/decoding/k" is attribute "k" of
 * group settings/decoding inside the run group.
 *
 * Threads: HDF5 serializes its calls; use one llmlab_run from one thread at a time.
 */
#ifndef LLMLAB_RESULTS_H
#define LLMLAB_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

/* The schema version this code writes and reads (file root attribute
 * llmlab_schema_version and run attribute schema_version). */
#define LLMLAB_RESULTS_SCHEMA_VERSION 1

typedef struct llmlab_run llmlab_run;
typedef struct llmlab_table llmlab_table;

/* Element type of a table column (and of an attribute). */
typedef enum {
    LLMLAB_COL_INT = 0,    /* int64; -1 by convention when a value is missing */
    LLMLAB_COL_DOUBLE = 1, /* IEEE double; NaN when a value is missing */
    LLMLAB_COL_STR = 2     /* variable-length UTF-8 string; "" when missing */
} llmlab_coltype;

/* ---- building a run in memory --------------------------------------------------- */

/* A new, empty run called name; NULL (with err filled) on a bad name or no memory. */
llmlab_run *llmlab_run_create(const char *name, llmlab_err *err);
void llmlab_run_free(llmlab_run *run);
const char *llmlab_run_name(const llmlab_run *run);

/* Sets attribute key (a path: "seed", "settings/decoding/temperature") to value;
 * setting a key again replaces its value and type.  EINVAL for an empty key or
 * component, "."/"..", control characters, a group named like a table of the run,
 * or a writer-owned attribute at the run's top (name, schema_version, complete).
 * A NULL string value is stored as "". */
llmlab_status llmlab_run_attr_str(llmlab_run *run, const char *key, const char *value,
                                  llmlab_err *err);
llmlab_status llmlab_run_attr_int(llmlab_run *run, const char *key, int64_t value,
                                  llmlab_err *err);
llmlab_status llmlab_run_attr_double(llmlab_run *run, const char *key, double value,
                                     llmlab_err *err);

/* The table called name, created (empty, no columns) on first use; owned by run.
 * NULL with err filled for a bad name or a name used by an attribute group. */
llmlab_table *llmlab_run_table(llmlab_run *run, const char *name, llmlab_err *err);

/* Declares a column (optional: appending to an unknown column declares it with no
 * unit).  unit is free text ("s", "tokens", "bytes"; NULL or "" for none) and is
 * stored in the table's `units` attribute.  Declaring an existing column again is
 * fine when the type matches (a non-empty unit replaces the old one). */
llmlab_status llmlab_table_column(llmlab_table *t, const char *name, llmlab_coltype type,
                                  const char *unit, llmlab_err *err);

/* Append one value to the end of column name.  Row-wise use: append one value to
 * every column per row; column-wise use: fill one column after another.  Either
 * way all columns must have the same length when the run is written.  EINVAL when
 * the column holds another type. */
llmlab_status llmlab_table_append_int(llmlab_table *t, const char *name, int64_t v,
                                      llmlab_err *err);
llmlab_status llmlab_table_append_double(llmlab_table *t, const char *name, double v,
                                         llmlab_err *err);
llmlab_status llmlab_table_append_str(llmlab_table *t, const char *name, const char *v,
                                      llmlab_err *err);
/* Bulk forms: append n values at once. */
llmlab_status llmlab_table_append_ints(llmlab_table *t, const char *name, const int64_t *v,
                                       size_t n, llmlab_err *err);
llmlab_status llmlab_table_append_doubles(llmlab_table *t, const char *name, const double *v,
                                          size_t n, llmlab_err *err);

/* Number of rows so far: the length of the longest column (0 without columns). */
size_t llmlab_table_rows(const llmlab_table *t);

/* ---- writing ------------------------------------------------------------------- */

/* Adds run to the results file at path (created when missing) as /runs/<name>.
 * The run is not modified.  Errors (the file is then unchanged and no temporary is
 * left behind):
 *   EINVAL  a table whose columns differ in length or that has no columns;
 *           a run of that name already in the file;
 *   EFORMAT path exists but is not HDF5, not an llmlab results file, or has another
 *           schema version;
 *   EIO     the directory is missing, or any read/write/fsync/rename failed (the
 *           message carries the errno or HDF5 reason, e.g. "File too large"). */
llmlab_status llmlab_results_write(const char *path, const llmlab_run *run, llmlab_err *err);

/* Writes the current UTC time as ISO 8601 with milliseconds, e.g.
 * "2024-05-01T12:34:56.789Z", into out (>= 32 bytes) - the format of start_time and
 * end_time. */
void llmlab_results_utc_now(char out[32]);

/* ---- reading (results_read.c) ---------------------------------------------------- */

/* Names of the complete runs in the file, in the order they were written.  *names
 * is malloc'd (free with llmlab_results_free_strs); a file without runs gives
 * *n = 0 and *names = NULL. */
llmlab_status llmlab_results_list_runs(const char *path, char ***names, size_t *n,
                                       llmlab_err *err);

/* Reads attribute key of run (run == NULL: of the file root, e.g.
 * "llmlab_schema_version").  _int needs an integer attribute; _double accepts
 * integers too (exact below 2^53); _str needs a string and returns it malloc'd.
 * EINVAL when the run or attribute is missing or has another type. */
llmlab_status llmlab_results_attr_int(const char *path, const char *run, const char *key,
                                      int64_t *out, llmlab_err *err);
llmlab_status llmlab_results_attr_double(const char *path, const char *run, const char *key,
                                         double *out, llmlab_err *err);
llmlab_status llmlab_results_attr_str(const char *path, const char *run, const char *key,
                                      char **out, llmlab_err *err);

/* Column names of a table in stored order (malloc'd; free with
 * llmlab_results_free_strs).  Here and in the column readers below, run == NULL
 * names a table at the file root (the /sweep table of a merged sweep). */
llmlab_status llmlab_results_columns(const char *path, const char *run, const char *table,
                                     char ***names, size_t *n, llmlab_err *err);

/* Reads one column of a table; *out is malloc'd (NULL when *n == 0).  _double
 * converts integer columns; _int needs an integer column; _str needs a string
 * column (free with llmlab_results_free_strs). */
llmlab_status llmlab_results_column_int(const char *path, const char *run, const char *table,
                                        const char *column, int64_t **out, size_t *n,
                                        llmlab_err *err);
llmlab_status llmlab_results_column_double(const char *path, const char *run,
                                           const char *table, const char *column, double **out,
                                           size_t *n, llmlab_err *err);
llmlab_status llmlab_results_column_str(const char *path, const char *run, const char *table,
                                        const char *column, char ***out, size_t *n,
                                        llmlab_err *err);

/* Frees an array of n malloc'd strings returned above (NULL is fine). */
void llmlab_results_free_strs(char **strs, size_t n);

/* ---- internal: shared by results.c and results_read.c only ------------------------ */
#ifdef LLMLAB_RESULTS_INTERNAL
#include <hdf5.h>

/* Silences HDF5's error printing for the current thread until quiet_end. */
typedef struct {
    H5E_auto2_t fn;
    void *data;
} llmlab_res_quiet;
void llmlab_res_quiet_begin(llmlab_res_quiet *q);
void llmlab_res_quiet_end(const llmlab_res_quiet *q);

/* EINVAL unless name is a valid run/table/column name or key component; what is
 * "run name", "table name", ... for the message. */
llmlab_status llmlab_res_check_name(const char *name, size_t len, const char *what,
                                    llmlab_err *err);

/* The innermost reason on HDF5's error stack ("File too large", "file signature
 * not found"), or "unknown HDF5 error"; clears the stack. */
void llmlab_res_h5_reason(char *buf, size_t cap);

/* Opens path read-only after checking that it is an llmlab results file of this
 * schema version.  Returns the file id or H5I_INVALID_HID with err filled (EIO:
 * missing/unreadable; EFORMAT: not HDF5, not llmlab, other schema version). */
hid_t llmlab_res_open_checked(const char *path, unsigned flags, llmlab_err *err);

/* For merge.c: a new results file at path (must not exist) with the root
 * attributes and an empty /runs; the file id or H5I_INVALID_HID with err filled. */
hid_t llmlab_res_create_file(const char *path, llmlab_err *err);
/* Writes table t as dataset t's name under loc, exactly as a run's tables. */
llmlab_status llmlab_res_write_table(hid_t loc, const llmlab_table *t, llmlab_err *err);
/* Writes a scalar attribute on obj (i, d or s by type). */
llmlab_status llmlab_res_put_attr(hid_t obj, const char *name, llmlab_coltype type, int64_t i, double d,
                                  const char *s, llmlab_err *err);
#endif

#endif
