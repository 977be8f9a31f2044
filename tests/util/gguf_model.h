/* gguf_model.h - a loaded (safetensors) model written as the GGUF file llama.cpp's
 * converter would make of it, by the test's own code.
 *
 * Independent of core/gguf_write*.c: the bytes go through tests/util/gguf_writer.c,
 * the Q/K rows are permuted with the converter's formula (per head,
 * reshape(2, hd/2).swapaxes: HF row p*hd/2 + j goes to row 2j + p), and Q8_0 /
 * Q4_0 blocks are encoded here from the format description.  Knobs damage the
 * file in the ways the loader must refuse. */
#ifndef LLMLAB_TEST_GGUF_MODEL_H
#define LLMLAB_TEST_GGUF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

/* ggml type ids the writer encodes for matrices. */
enum { GM_F32 = 0, GM_F16 = 1, GM_Q4_0 = 2, GM_Q8_0 = 8, GM_BF16 = 30 };

typedef struct {
    uint32_t type;            /* matrices: GM_F32 (from f32), GM_F16 (f16), GM_BF16 (bf16), GM_Q8_0, GM_Q4_0 */
    const char *arch;         /* general.architecture; NULL: "qwen2" for Qwen2 models, else "llama" */
    uint64_t seed;            /* shuffles keys and tensors, picks version 2/3 and the alignment */
    /* damage */
    const char *omit_tensor;  /* leave this tensor out */
    const char *omit_key;     /* leave this metadata key out */
    const char *odd_tensor;   /* this tensor gets: */
    uint32_t odd_type;        /*   this ggml type instead (when != 0; its bytes are zeros) */
    int64_t odd_rows;         /*   this many rows instead (when != 0) */
    const char *bad_offset;   /* this tensor's offset points past the end of the file */
    uint64_t tensor_count_add; /* added to the tensor count in the header */
} gm_opts;

/* Writes m as dir/name; returns the malloc'd path.  Asserts on failure. */
char *gm_write(const llmlab_model *m, const char *dir, const char *name, const gm_opts *o);

/* Q8_0 / Q4_0 of n (multiple of 32) floats into blocks, and back. */
void gm_quantize(uint32_t type, const float *x, int64_t n, unsigned char *out);
void gm_dequantize(uint32_t type, const unsigned char *in, int64_t n, float *out);
size_t gm_row_bytes(uint32_t type, int64_t cols);

/* A Hugging Face directory (config.json + f32 model.safetensors) with m's weights,
 * every matrix replaced by quantize-then-dequantize with `type` (GM_Q8_0 or
 * GM_Q4_0; GM_F32 copies, decoding block types of a loaded GGUF model): the f32
 * model a quantized GGUF file stands for.
 * Returns the malloc'd directory (dir/name). */
char *gm_write_dequantized(const llmlab_model *m, const char *dir, const char *name, uint32_t type);

#endif
