/* gguf.h - reading GGUF files (llama.cpp's single-file model format), docs/gguf.md.
 *
 * Layout (versions 2 and 3, little-endian; ggml's docs/gguf.md):
 *   "GGUF"  u32 version  u64 tensor_count  u64 kv_count
 *   kv_count x  { string key, u32 value_type, value }
 *   tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   zero padding up to general.alignment (default 32), then the data section;
 *   tensor offsets count from the start of the data section.
 * A string is u64 length + bytes (no NUL); an array is u32 element type + u64 count
 * + elements (arrays may nest).
 *
 * The file is mapped read-only and validated completely at open: every length,
 * count and offset is checked against the file size before anything is read or
 * allocated, so a corrupt or hostile file yields LLMLAB_EFORMAT with a message
 * naming the file and the field, never a crash.  Metadata strings are copied out
 * (NUL-terminated); tensor data stays in the mapping.
 *
 * A file object is immutable after open: readers may share it across threads.
 */
#ifndef LLMLAB_GGUF_H
#define LLMLAB_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#define LLMLAB_GGUF_MAX_DIMS 4          /* ggml's GGML_MAX_DIMS */
#define LLMLAB_GGUF_DEFAULT_ALIGNMENT 32 /* when general.alignment is absent */

/* Metadata value types, numbered as in the file. */
typedef enum {
    LLMLAB_GGUF_U8 = 0,
    LLMLAB_GGUF_I8 = 1,
    LLMLAB_GGUF_U16 = 2,
    LLMLAB_GGUF_I16 = 3,
    LLMLAB_GGUF_U32 = 4,
    LLMLAB_GGUF_I32 = 5,
    LLMLAB_GGUF_F32 = 6,
    LLMLAB_GGUF_BOOL = 7, /* one byte, 0 or 1 (anything else is rejected at open) */
    LLMLAB_GGUF_STRING = 8,
    LLMLAB_GGUF_ARRAY = 9,
    LLMLAB_GGUF_U64 = 10,
    LLMLAB_GGUF_I64 = 11,
    LLMLAB_GGUF_F64 = 12
} llmlab_gguf_type;

/* "uint8", "int32", "float32", "bool", "string", "array", ...; "?" if unknown. */
const char *llmlab_gguf_type_name(llmlab_gguf_type t);

/* ggml tensor type ids (ggml.h's enum ggml_type; gaps are ids ggml retired). */
enum {
    LLMLAB_GGML_F32 = 0, LLMLAB_GGML_F16 = 1, LLMLAB_GGML_Q4_0 = 2, LLMLAB_GGML_Q4_1 = 3,
    LLMLAB_GGML_Q5_0 = 6, LLMLAB_GGML_Q5_1 = 7, LLMLAB_GGML_Q8_0 = 8, LLMLAB_GGML_Q8_1 = 9,
    LLMLAB_GGML_Q2_K = 10, LLMLAB_GGML_Q3_K = 11, LLMLAB_GGML_Q4_K = 12, LLMLAB_GGML_Q5_K = 13,
    LLMLAB_GGML_Q6_K = 14, LLMLAB_GGML_Q8_K = 15, LLMLAB_GGML_IQ2_XXS = 16, LLMLAB_GGML_IQ2_XS = 17,
    LLMLAB_GGML_IQ3_XXS = 18, LLMLAB_GGML_IQ1_S = 19, LLMLAB_GGML_IQ4_NL = 20, LLMLAB_GGML_IQ3_S = 21,
    LLMLAB_GGML_IQ2_S = 22, LLMLAB_GGML_IQ4_XS = 23, LLMLAB_GGML_I8 = 24, LLMLAB_GGML_I16 = 25,
    LLMLAB_GGML_I32 = 26, LLMLAB_GGML_I64 = 27, LLMLAB_GGML_F64 = 28, LLMLAB_GGML_IQ1_M = 29,
    LLMLAB_GGML_BF16 = 30, LLMLAB_GGML_TQ1_0 = 34, LLMLAB_GGML_TQ2_0 = 35, LLMLAB_GGML_MXFP4 = 39,
    LLMLAB_GGML_NVFP4 = 40, LLMLAB_GGML_Q1_0 = 41
};

/* Storage of a ggml type: a row of ne[0] elements is ne[0] / *block_elems blocks
 * of *block_bytes bytes each.  Returns 0, or -1 for an id this reader does not
 * know (outputs untouched); either pointer may be NULL. */
int llmlab_ggml_type_size(uint32_t type, uint32_t *block_elems, uint32_t *block_bytes);
/* "f32", "q8_0", "q4_K", ...; "?" for an unknown id. */
const char *llmlab_ggml_type_name(uint32_t type);

typedef struct llmlab_gguf llmlab_gguf;
typedef struct llmlab_gguf_value llmlab_gguf_value; /* one metadata value (scalar, string or array) */

/* One tensor.  Pointers stay valid until llmlab_gguf_close. */
typedef struct {
    const char *name;  /* NUL-terminated, unique in the file */
    uint32_t type;     /* ggml type id (LLMLAB_GGML_*), possibly one this reader does not know */
    int n_dims;        /* 0..LLMLAB_GGUF_MAX_DIMS as stored */
    int64_t ne[LLMLAB_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the row length (fastest-varying);
                                         dims past n_dims are 1.  A PyTorch shape is reversed. */
    uint64_t n_elements; /* product of ne */
    uint64_t offset;   /* bytes from the start of the data section; a multiple of the alignment */
    uint64_t nbytes;   /* storage size from the type's block size; 0 if the type is unknown */
    int known_type;    /* 1 if nbytes is meaningful (llmlab_ggml_type_size knows the type) */
    const void *data;  /* first byte, inside the read-only mapping */
} llmlab_gguf_tensor;

/* ---- the file --------------------------------------------------------------------- */

/* Maps and validates path.  On error *out is NULL and err names the file and field. */
llmlab_status llmlab_gguf_open(llmlab_gguf **out, const char *path, llmlab_err *err);
void llmlab_gguf_close(llmlab_gguf *g); /* NULL-safe */

const char *llmlab_gguf_path(const llmlab_gguf *g);
uint32_t llmlab_gguf_version(const llmlab_gguf *g);   /* 2 or 3 */
uint32_t llmlab_gguf_alignment(const llmlab_gguf *g); /* general.alignment or 32 */
uint64_t llmlab_gguf_data_offset(const llmlab_gguf *g); /* file offset of the data section */
uint64_t llmlab_gguf_file_size(const llmlab_gguf *g);

/* ---- metadata ---------------------------------------------------------------------- */

/* Key/value pairs in file order, i in [0, n_kv).  Keys are unique, non-empty and
 * contain no NUL byte. */
int64_t llmlab_gguf_n_kv(const llmlab_gguf *g);
const char *llmlab_gguf_kv_key(const llmlab_gguf *g, int64_t i);
const llmlab_gguf_value *llmlab_gguf_kv_value(const llmlab_gguf *g, int64_t i);
/* Index of key, or -1 (binary search over a sorted index). */
int64_t llmlab_gguf_find_key(const llmlab_gguf *g, const char *key);
/* The value of key, or NULL when absent. */
const llmlab_gguf_value *llmlab_gguf_get(const llmlab_gguf *g, const char *key);

/* Typed getters by key.  A missing key or a value that does not convert is
 * LLMLAB_EFORMAT with a message naming the file, the key and the stored type
 * (test llmlab_gguf_find_key first for optional keys).  Conversion rules:
 *   u32/i32/u64/i64  any integer type (uint8 .. int64) whose value fits the target
 *                    exactly; bool and floats are refused;
 *   f32              float32 as stored; float64 rounded to nearest (refused when
 *                    finite but beyond float range); integers rounded to nearest;
 *   f64              float32, float64, integers (rounded beyond 2^53);
 *   bool             bool only;
 *   str              string only: *s is NUL-terminated (it may hold NUL bytes
 *                    before *len; len may be NULL). */
llmlab_status llmlab_gguf_get_str(const llmlab_gguf *g, const char *key, const char **s, size_t *len,
                                  llmlab_err *err);
llmlab_status llmlab_gguf_get_u32(const llmlab_gguf *g, const char *key, uint32_t *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_i32(const llmlab_gguf *g, const char *key, int32_t *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_u64(const llmlab_gguf *g, const char *key, uint64_t *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_i64(const llmlab_gguf *g, const char *key, int64_t *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_f32(const llmlab_gguf *g, const char *key, float *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_f64(const llmlab_gguf *g, const char *key, double *out, llmlab_err *err);
llmlab_status llmlab_gguf_get_bool(const llmlab_gguf *g, const char *key, int *out, llmlab_err *err);

/* ---- values (scalars, strings, arrays) ---------------------------------------------- */

llmlab_gguf_type llmlab_gguf_value_type(const llmlab_gguf_value *v);
/* Scalar reads with the conversion rules above; 0, or -1 when the value's type
 * does not convert or the value does not fit. */
int llmlab_gguf_value_u64(const llmlab_gguf_value *v, uint64_t *out);
int llmlab_gguf_value_i64(const llmlab_gguf_value *v, int64_t *out);
int llmlab_gguf_value_f64(const llmlab_gguf_value *v, double *out);
int llmlab_gguf_value_bool(const llmlab_gguf_value *v, int *out);
/* A string value (NUL-terminated copy, *len bytes; len may be NULL), or NULL. */
const char *llmlab_gguf_value_str(const llmlab_gguf_value *v, size_t *len);

/* Arrays: element type and count (0 and LLMLAB_GGUF_U8 for a non-array). */
llmlab_gguf_type llmlab_gguf_arr_type(const llmlab_gguf_value *v);
uint64_t llmlab_gguf_arr_len(const llmlab_gguf_value *v);
/* Element i of an array of strings (NUL-terminated, *len bytes), or NULL when v is
 * not one or i is out of range. */
const char *llmlab_gguf_arr_str(const llmlab_gguf_value *v, uint64_t i, size_t *len);
/* Element i of an array of numbers or bools, converted as the scalar reads;
 * 0, or -1 (wrong element type, out of range, does not fit). */
int llmlab_gguf_arr_u64(const llmlab_gguf_value *v, uint64_t i, uint64_t *out);
int llmlab_gguf_arr_i64(const llmlab_gguf_value *v, uint64_t i, int64_t *out);
int llmlab_gguf_arr_f64(const llmlab_gguf_value *v, uint64_t i, double *out);
int llmlab_gguf_arr_bool(const llmlab_gguf_value *v, uint64_t i, int *out);
/* Element i of an array of arrays, or NULL. */
const llmlab_gguf_value *llmlab_gguf_arr_arr(const llmlab_gguf_value *v, uint64_t i);
/* The raw little-endian elements of an array of numbers or bools (inside the
 * mapping; not aligned in general: read with memcpy), or NULL. */
const void *llmlab_gguf_arr_data(const llmlab_gguf_value *v);

/* ---- tensors ---------------------------------------------------------------------- */

/* Tensor infos in file order, i in [0, n_tensors). */
int64_t llmlab_gguf_n_tensors(const llmlab_gguf *g);
const llmlab_gguf_tensor *llmlab_gguf_tensor_at(const llmlab_gguf *g, int64_t i);
/* By name (binary search), or NULL. */
const llmlab_gguf_tensor *llmlab_gguf_find_tensor(const llmlab_gguf *g, const char *name);
/* The tensor's bytes for use: an unknown ggml type id is LLMLAB_EUNSUPPORTED here
 * (not at open, so files holding a few exotic tensors still open). */
llmlab_status llmlab_gguf_tensor_data(const llmlab_gguf *g, const llmlab_gguf_tensor *t, const void **data,
                                      size_t *nbytes, llmlab_err *err);

#endif
