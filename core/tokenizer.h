/* tokenizer.h - text <-> token ids (docs/tokenizers.md).
 *
 * One opaque object for every kind of tokenizer a model may come with:
 *   - Hugging Face tokenizer.json (the Llama family): byte-level BPE (GPT-2,
 *     Llama-3, Qwen2: a pre-tokenizer regex + the byte-to-unicode map) and
 *     SentencePiece-style BPE with byte fallback (Llama-2, Mistral, TinyLlama:
 *     the metaspace "\xe2\x96\x81", <0xNN> byte tokens), with the normalizers,
 *     pre-tokenizers, added/special tokens, post-processors and decoders they use;
 *   - GGUF vocabularies (tokenizer.ggml.*), converted to the same pipeline
 *     (core/gguf_vocab.c);
 *   - the byte-level fallback for model directories without tokenizer.json:
 *     ids 0..255 are the bytes of the text; other ids decode to "<|id|>".
 *
 * Text is bytes: encode takes any byte string (valid UTF-8 or not, NULs
 * included) and decode returns the exact bytes the tokens stand for (never
 * U+FFFD substitutions), so decode(encode(s)) == s for byte-level tokenizers.
 * Encoding matches the Hugging Face `tokenizers` library id for id
 * (tests/test_tokenizer.c against fixtures the library made).
 *
 * A tokenizer is immutable after loading: encode/decode may run on many threads.
 */
#ifndef LLMLAB_TOKENIZER_H
#define LLMLAB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

struct cJSON;
typedef struct llmlab_tokenizer llmlab_tokenizer;

/* ---- loading -------------------------------------------------------------------- */

/* Loads a Hugging Face tokenizer.json file. */
llmlab_status llmlab_tokenizer_load_json(llmlab_tokenizer **out, const char *path, llmlab_err *err);

/* Builds a tokenizer from a parsed tokenizer.json tree (the GGUF loader builds
 * one); `what` names the source in error messages. */
llmlab_status llmlab_tokenizer_from_json(llmlab_tokenizer **out, const struct cJSON *root, const char *what,
                                         llmlab_err *err);

/* The byte-level fallback. */
llmlab_status llmlab_tokenizer_bytes(llmlab_tokenizer **out, llmlab_err *err);

/* What a model directory holds: dir/tokenizer.json if present, else the fallback. */
llmlab_status llmlab_tokenizer_load_dir(llmlab_tokenizer **out, const char *dir, llmlab_err *err);

/* Loads the vocabulary of a GGUF file (tokenizer.ggml.*: models "gpt2" and
 * "llama"), converted to the tokenizer.json pipeline (core/gguf_vocab.c, docs/gguf.md). */
llmlab_status llmlab_tokenizer_load_gguf(llmlab_tokenizer **out, const char *path, llmlab_err *err);

void llmlab_tokenizer_free(llmlab_tokenizer *t);

/* ---- facts ------------------------------------------------------------------------ */

/* "bytes" (the fallback), "bpe-bytelevel" or "bpe-sentencepiece". */
const char *llmlab_tokenizer_kind(const llmlab_tokenizer *t);
/* Largest id + 1 over the model vocabulary and the added tokens (256 for the fallback). */
int llmlab_tokenizer_vocab_size(const llmlab_tokenizer *t);
/* Beginning/end-of-sequence ids, -1 when the tokenizer has none.  BOS is what
 * the post-processor prepends, else the first special added token named <s>,
 * <|begin_of_text|> or <|endoftext|>; EOS is the first special added token named
 * </s>, <|end_of_text|>, <|endoftext|>, <|im_end|> or <|eot_id|>
 * (docs/tokenizers.md). */
int32_t llmlab_tokenizer_bos(const llmlab_tokenizer *t);
int32_t llmlab_tokenizer_eos(const llmlab_tokenizer *t);
/* The id of a vocabulary or added token written as in tokenizer.json, or -1. */
int32_t llmlab_tokenizer_token_id(const llmlab_tokenizer *t, const char *piece);
/* The token's string as in tokenizer.json (NUL-terminated), NULL for an unused id. */
const char *llmlab_tokenizer_piece(const llmlab_tokenizer *t, int32_t id);
/* 1 when id is a special added token (skipped by decode with skip_special). */
int llmlab_tokenizer_is_special(const llmlab_tokenizer *t, int32_t id);

/* ---- encoding and decoding --------------------------------------------------------- */

/* Encodes len bytes of text.  add_special applies the post-processor (e.g. a
 * leading BOS), like the Hugging Face library's add_special_tokens=True.
 * *ids is malloc'd (free() it), *n its count. */
llmlab_status llmlab_tokenizer_encode(const llmlab_tokenizer *t, const char *text, size_t len, int add_special,
                                      int32_t **ids, int *n, llmlab_err *err);

/* Decodes n ids into *text (malloc'd, NUL-terminated; *len bytes without the NUL).
 * skip_special drops special added tokens first.  An id outside the vocabulary
 * is an error. */
llmlab_status llmlab_tokenizer_decode(const llmlab_tokenizer *t, const int32_t *ids, int n, int skip_special,
                                      char **text, size_t *len, llmlab_err *err);

/* Streaming decode: ids one at a time, text out as soon as it is whole.  Bytes
 * that end inside a UTF-8 character are held back until the character
 * completes (or until flush), so a terminal never prints half a character.
 * The concatenation of every push and the final flush equals
 * llmlab_tokenizer_decode of the same ids. */
typedef struct llmlab_detok llmlab_detok;

llmlab_status llmlab_detok_create(llmlab_detok **out, const llmlab_tokenizer *t, int skip_special, llmlab_err *err);
/* Feeds one id; *text points to the bytes now ready (*len of them, possibly 0),
 * valid until the next call on d. */
llmlab_status llmlab_detok_push(llmlab_detok *d, int32_t id, const char **text, size_t *len, llmlab_err *err);
/* Returns whatever is held back (an incomplete UTF-8 tail) and resets d. */
llmlab_status llmlab_detok_flush(llmlab_detok *d, const char **text, size_t *len, llmlab_err *err);
void llmlab_detok_free(llmlab_detok *d);

#endif
