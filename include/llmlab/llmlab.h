/* llmlab.h - the public embedding API of llmlab (status codes, errors, dtypes).
 *
 * Plugins and embedding programs include this header; everything in it is part
 * of the stable surface.  Handles are opaque: their layout may change between
 * versions without breaking callers.
 */
#ifndef LLMLAB_LLMLAB_H
#define LLMLAB_LLMLAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLMLAB_VERSION_MAJOR 0
#define LLMLAB_VERSION_MINOR 1
#define LLMLAB_VERSION_PATCH 0
#define LLMLAB_VERSION_STRING "0.1.0"

typedef enum {
    LLMLAB_OK = 0,
    LLMLAB_EINVAL = 1,      /* bad argument, parameter or configuration value */
    LLMLAB_EIO = 2,         /* a file could not be opened, read or written */
    LLMLAB_EFORMAT = 3,     /* a file is malformed (JSON, safetensors, ...) */
    LLMLAB_ENOMEM = 4,      /* host memory exhausted */
    LLMLAB_ENOKV = 5,       /* no free KV-cache block */
    LLMLAB_EUNSUPPORTED = 6 /* valid input that this build cannot handle */
} llmlab_status;

/* An error record owned by the caller.  msg is always NUL-terminated. */
typedef struct {
    llmlab_status code;
    char msg[512];
} llmlab_err;

const char *llmlab_status_name(llmlab_status s);

/* Element types of weights, activations and KV storage. */
typedef enum {
    LLMLAB_DTYPE_F32 = 0,
    LLMLAB_DTYPE_F16 = 1,
    LLMLAB_DTYPE_BF16 = 2,
    /* llama.cpp's block formats as stored in GGUF files (a row is whole blocks):
     * Q8_0: 32 weights = f16 d + int8 q[32], w = d * q (34 bytes);
     * Q4_0: 32 weights = f16 d + 16 bytes of nibbles (weight i < 16 in the low
     *       nibble of byte i, weight i >= 16 in the high nibble of byte i - 16),
     *       w = d * (q - 8) (18 bytes);
     * Q4_K: 256 weights = f16 d, f16 dmin, 12 bytes of 6-bit sub-block scales and
     *       mins, 128 bytes of nibbles (144 bytes). */
    LLMLAB_DTYPE_Q8_0 = 3,
    LLMLAB_DTYPE_Q4_0 = 4,
    LLMLAB_DTYPE_Q4_K = 5
} llmlab_dtype;

#ifdef __cplusplus
}
#endif
#endif
