/* gguf_write.h - writing GGUF files (llama.cpp's format, docs/gguf.md).
 *
 * Two layers:
 *   - a streaming writer: metadata and tensor infos first, then each tensor's
 *     bytes in the declared order; offsets, alignment padding and the header
 *     are handled here.  GGUF v3, little-endian; the file appears under its
 *     name only when complete (temp file, fsync, rename);
 *   - llmlab_gguf_write_model: a loaded Llama-family model as the GGUF file
 *     llama.cpp's converter would make of it (tensor names, "{arch}.*" keys,
 *     Q/K rows permuted for interleaved RoPE, tokenizer.ggml.*), in f32, f16,
 *     bf16, q8_0, q4_0 or q4_K.  `llmlab convert` and `llmlab synth --gguf` use it.
 */
#ifndef LLMLAB_GGUF_WRITE_H
#define LLMLAB_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

struct llmlab_model;

/* ---- the streaming writer ------------------------------------------------------------ */

typedef struct llmlab_gguf_writer llmlab_gguf_writer;

/* alignment: a power of two (0 = 32, ggml's default); written as general.alignment. */
llmlab_status llmlab_gguf_writer_create(llmlab_gguf_writer **out, const char *path, uint32_t alignment,
                                        llmlab_err *err);
/* Removes the temp file (if any) and frees w; NULL-safe.  Use it on any error. */
void llmlab_gguf_writer_abort(llmlab_gguf_writer *w);

/* Metadata, in the order given (general.alignment is appended by start; do not
 * set it).  Allocation failures and duplicate keys are reported by start. */
void llmlab_gguf_kv_str(llmlab_gguf_writer *w, const char *key, const char *val);
void llmlab_gguf_kv_u32(llmlab_gguf_writer *w, const char *key, uint32_t val);
void llmlab_gguf_kv_i32(llmlab_gguf_writer *w, const char *key, int32_t val);
void llmlab_gguf_kv_f32(llmlab_gguf_writer *w, const char *key, float val);
void llmlab_gguf_kv_bool(llmlab_gguf_writer *w, const char *key, int val);
/* Arrays: n strings (len[i] bytes each; len NULL = NUL-terminated), int32, float32. */
void llmlab_gguf_kv_arr_str(llmlab_gguf_writer *w, const char *key, const char *const *s, const size_t *len,
                            uint64_t n);
void llmlab_gguf_kv_arr_i32(llmlab_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void llmlab_gguf_kv_arr_f32(llmlab_gguf_writer *w, const char *key, const float *v, uint64_t n);
/* A value copied from an open GGUF file (scalars, strings, arrays of them). */
struct llmlab_gguf_value;
void llmlab_gguf_kv_copy(llmlab_gguf_writer *w, const char *key, const struct llmlab_gguf_value *v);

/* Declares the next tensor: ggml type id (LLMLAB_GGML_*), n_dims ne[] in ggml
 * order (ne[0] = row length).  EINVAL for an unknown type or a row length that
 * is not a multiple of its block. */
llmlab_status llmlab_gguf_writer_tensor(llmlab_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                                        const int64_t *ne, llmlab_err *err);
/* Writes the header, metadata and tensor infos; then data may follow. */
llmlab_status llmlab_gguf_writer_start(llmlab_gguf_writer *w, llmlab_err *err);
/* Appends the next nbytes of tensor data (tensors in declared order, any split). */
llmlab_status llmlab_gguf_writer_data(llmlab_gguf_writer *w, const void *p, size_t nbytes, llmlab_err *err);
/* Checks every tensor got all its bytes, then fsync + rename; frees w. */
llmlab_status llmlab_gguf_writer_finish(llmlab_gguf_writer *w, llmlab_err *err);

/* ---- models ------------------------------------------------------------------------------- */

typedef void (*llmlab_gguf_progress_fn)(void *ud, uint64_t done_bytes, uint64_t total_bytes);

typedef struct {
    llmlab_dtype type;       /* the matrices (token_embd, blk.*, output): F32, F16, BF16, Q8_0, Q4_0, Q4_K;
                                norms, biases and rope_freqs are always f32, as llama.cpp writes them */
    const char *name;        /* general.name; NULL = the model directory's name */
    llmlab_gguf_progress_fn progress; /* may be NULL */
    void *progress_ud;
} llmlab_gguf_write_opts;

/* Writes m as GGUF to path.  The vocabulary (tokenizer.ggml.*) comes from the
 * model's tokenizer.json ("gpt2" for byte-level BPE with the GPT-2, Llama-3 or
 * Qwen2 pre-tokenizer; "llama" for SentencePiece-style BPE with byte fallback),
 * is copied from a GGUF source, or, for the byte fallback, is a "gpt2" vocabulary
 * whose ids 0..255 are the bytes and whose other ids are plain tokens "<|id|>"
 * (no merges), which encodes and decodes as the fallback does.
 * EUNSUPPORTED: a type not listed, a tokenizer.json of another kind. */
llmlab_status llmlab_gguf_write_model(const struct llmlab_model *m, const char *path, const llmlab_gguf_write_opts *o,
                                      llmlab_err *err);

/* The tokenizer.ggml.* keys for m's vocabulary, as described above (gguf_write_vocab.c). */
llmlab_status llmlab_gguf_write_vocab(llmlab_gguf_writer *w, const struct llmlab_model *m, llmlab_err *err);

/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"/"q4_K" -> dtype; 0, or -1 when unknown. */
int llmlab_gguf_parse_type(const char *s, llmlab_dtype *out);

#endif
