/* calibrate.h - calibration inputs for quant plugins (AWQ, GPTQ, SmoothQuant).
 *
 * A quant plugin asks for calibration in create() (host engine_want_calibration);
 * before pack() the engine builds a token stream, runs it through the
 * unquantized model and keeps, for every distinct matrix input, the rows x the
 * dense forward multiplied with: q/k/v share one buffer (they read the same
 * normed hidden state), gate/up share one, o_proj, down_proj and the LM head have
 * their own.  pack() reads them through host calibration_inputs; the engine frees
 * them once every weight is packed (docs/quantization.md).
 *
 * Sources: "generate" (text sampled from the model itself at temperature 1,
 * seeded; each sequence starts at BOS and ends at EOS or the context length),
 * "random" (uniform token ids, seeded), or a file: text encoded with the model's
 * tokenizer (a BOS first when the tokenizer adds one), or whitespace-separated
 * token ids when the name ends in ".ids".  The stream is cut into sequences of at
 * most the model's context (max_position_embeddings), each run from an empty
 * cache.
 */
#ifndef LLMLAB_CALIBRATE_H
#define LLMLAB_CALIBRATE_H

#include <stdint.h>

#include "model.h"

typedef struct llmlab_calib llmlab_calib;

/* Records a request.  EINVAL naming the problem for n_tokens < 1 or an empty
 * source; EIO for a source that is neither "generate", "random" nor a readable
 * file. */
llmlab_status llmlab_calib_create(llmlab_calib **out, const char *source, int n_tokens, uint64_t seed,
                                  llmlab_err *err);
void llmlab_calib_free(llmlab_calib *c);

/* Builds the token stream and captures every matrix input on a private forward
 * context (n_threads threads) of m.  Errors name the source: an unreadable or
 * malformed file, ids outside the vocabulary, a file with fewer than n_tokens
 * tokens, or the memory the inputs need. */
llmlab_status llmlab_calib_run(llmlab_calib *c, const llmlab_model *m, int n_threads, llmlab_err *err);

/* The stream after run: tokens[*n] and the sequences it was cut into,
 * seq_start[*n_seqs + 1] (sequence k is tokens[seq_start[k] .. seq_start[k+1])). */
const int32_t *llmlab_calib_tokens(const llmlab_calib *c, int *n, const int **seq_start, int *n_seqs);

/* The matrix index (forward.h: layer * LLMLAB_MATS_PER_LAYER + LLMLAB_MAT_*, the
 * LM head last) of a Hugging Face weight name such as
 * "model.layers.3.self_attn.k_proj.weight" or "lm_head.weight"; -1 otherwise. */
int llmlab_calib_matrix_index(const llmlab_model *m, const char *name);

/* Inputs x[*rows][cols] the matrix saw (cols = the weight's cols), or NULL before
 * run / for an unknown matrix.  Valid until llmlab_calib_free. */
const float *llmlab_calib_matrix_inputs(const llmlab_calib *c, int matrix, int64_t *rows);
const float *llmlab_calib_inputs(const llmlab_calib *c, const char *name, int64_t *rows);

#endif
