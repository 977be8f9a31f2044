/* safetensors.h - memory-mapped safetensors files, single or sharded.
 *
 * Format: u64 little-endian header length N, N bytes of JSON mapping tensor name
 * to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
 * byte after the header), optional "__metadata__".  Every tensor is validated at
 * open: offsets inside the file, size = product(shape) * dtype size, no overlaps.
 */
#ifndef LLMLAB_SAFETENSORS_H
#define LLMLAB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#define LLMLAB_ST_MAX_DIMS 8

typedef enum {
    LLMLAB_ST_F32, LLMLAB_ST_F16, LLMLAB_ST_BF16, LLMLAB_ST_F64, LLMLAB_ST_I64,
    LLMLAB_ST_I32, LLMLAB_ST_I16, LLMLAB_ST_I8, LLMLAB_ST_U8, LLMLAB_ST_BOOL,
    LLMLAB_ST_F8_E4M3, LLMLAB_ST_F8_E5M2
} llmlab_st_dtype;

typedef struct {
    char *name;                       /* owned */
    llmlab_st_dtype dtype;
    int ndim;
    int64_t shape[LLMLAB_ST_MAX_DIMS];
    const void *data;                 /* points into the mapping */
    size_t nbytes;
    int file;                         /* index into the set's files */
} llmlab_st_tensor;

typedef struct {
    char *path;      /* owned */
    void *map;       /* [size] bytes, read-only mapping */
    size_t size;
} llmlab_st_file;

typedef struct {
    int n_files;
    llmlab_st_file *files;     /* [n_files] */
    int n_tensors;
    llmlab_st_tensor *tensors; /* [n_tensors] */
} llmlab_st_set;

const char *llmlab_st_dtype_name(llmlab_st_dtype t);
size_t llmlab_st_dtype_size(llmlab_st_dtype t);

/* Opens one .safetensors file into an empty set (zero-initialise the set first). */
llmlab_status llmlab_st_open_file(llmlab_st_set *set, const char *path, llmlab_err *err);

/* Opens a model directory: model.safetensors, or the shards named by
 * model.safetensors.index.json (every shard named there must exist). */
llmlab_status llmlab_st_open_dir(llmlab_st_set *set, const char *dir, llmlab_err *err);

const llmlab_st_tensor *llmlab_st_find(const llmlab_st_set *set, const char *name);
void llmlab_st_close(llmlab_st_set *set);

/* Writing: tensors given in order, laid out contiguously after the header. */
typedef struct {
    const char *name;
    llmlab_st_dtype dtype;
    int ndim;
    int64_t shape[LLMLAB_ST_MAX_DIMS];
    const void *data; /* product(shape) * dtype size bytes */
} llmlab_st_write_tensor;

llmlab_status llmlab_st_write(const char *path, const llmlab_st_write_tensor *tensors, int n,
                              llmlab_err *err);

/* Streaming writer, for files too large to hold in memory (llmlab synth).  open
 * writes the header for tensors[0..n) (their data pointers are ignored) to
 * "path.tmp"; data appends the tensors' bytes in order, in pieces of any size;
 * finish checks every byte arrived, fsyncs and renames to path; abort (also
 * NULL-safe) removes the temp file.  After an error from data, call abort.
 * finish and abort always free the writer; a failed finish removes the temp file.
 * The header lists "__metadata__": {"format": "pt"} and then the tensors in the
 * order given, padded with spaces to a multiple of 8 bytes. */
typedef struct llmlab_st_writer llmlab_st_writer;
llmlab_status llmlab_st_writer_open(llmlab_st_writer **out, const char *path,
                                    const llmlab_st_write_tensor *tensors, int n, llmlab_err *err);
llmlab_status llmlab_st_writer_data(llmlab_st_writer *w, const void *data, size_t nbytes,
                                    llmlab_err *err);
llmlab_status llmlab_st_writer_finish(llmlab_st_writer *w, llmlab_err *err);
void llmlab_st_writer_abort(llmlab_st_writer *w);

/* Parses a safetensors dtype name ("F32", "BF16", ...); returns 0 or -1. */
int llmlab_st_dtype_parse(const char *name, llmlab_st_dtype *out);

#endif
