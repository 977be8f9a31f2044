/* tokenizer.h - text <-> token ids.
 *
 * For now the byte-level fallback: ids 0..255 are the bytes of UTF-8 text, so any
 * model (synthetic ones included) can take text prompts.  Ids >= 256 decode to
 * "<|id|>" since the fallback has no text for them.
 */
#ifndef LLMLAB_TOKENIZER_H
#define LLMLAB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* Encodes text into ids; returns the count (<= strlen(text)); ids must hold strlen(text). */
int llmlab_bytes_encode(const char *text, int32_t *ids);

/* Appends the text of one id to buf (NUL-terminated, truncated to cap); returns bytes written. */
size_t llmlab_bytes_decode_one(int32_t id, char *buf, size_t cap);

#endif
