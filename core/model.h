/* model.h - a loaded Llama-family decoder: config plus views of its weights.
 *
 * Large matrices stay in the memory-mapped safetensors files in their stored dtype
 * (f32, f16 or bf16), or in the mapped GGUF file (also q8_0, q4_0, q4_K blocks);
 * small vectors (norms, biases) are converted to owned f32.
 */
#ifndef LLMLAB_MODEL_H
#define LLMLAB_MODEL_H

#include <stdint.h>

#include "config.h"
#include "safetensors.h"

struct llmlab_tokenizer;
struct llmlab_gguf;

/* A read-only row-major matrix view [rows][cols] in dtype. */
typedef struct {
    llmlab_dtype dtype;
    const void *data;
    int64_t rows, cols;
} llmlab_mat;

typedef struct {
    float *attn_norm; /* [dim] */
    llmlab_mat wq;    /* [n_heads*head_dim][dim] */
    llmlab_mat wk;    /* [n_kv_heads*head_dim][dim] */
    llmlab_mat wv;    /* [n_kv_heads*head_dim][dim] */
    float *bq;        /* [n_heads*head_dim] or NULL */
    float *bk;        /* [n_kv_heads*head_dim] or NULL */
    float *bv;        /* [n_kv_heads*head_dim] or NULL */
    llmlab_mat wo;    /* [dim][n_heads*head_dim] */
    float *ffn_norm;  /* [dim] */
    llmlab_mat w_gate;/* [ffn_dim][dim] */
    llmlab_mat w_up;  /* [ffn_dim][dim] */
    llmlab_mat w_down;/* [dim][ffn_dim] */
} llmlab_layer;

/* Where contexts of a model run (llmlab_model.backend). */
enum { LLMLAB_BACKEND_CPU = 0, LLMLAB_BACKEND_CUDA = 1 };

struct llmlab_cuda_weights;

typedef struct llmlab_model {
    llmlab_config cfg;
    /* execution target of every context made for the model (docs/cuda.md); the
     * loader leaves CPU, callers (llmlab.model{backend=...}) set them */
    int backend;           /* LLMLAB_BACKEND_* */
    int device;            /* CUDA device ordinal */
    int deterministic;     /* CUDA: batch-invariant kernels, no cuBLAS */
    struct llmlab_cuda_weights *gpu; /* the weights on the device, uploaded by the first
                                        CUDA context and freed with the model; NULL */
    char *path;            /* model directory (or .gguf file), owned */
    llmlab_st_set st;      /* the mapped files */
    llmlab_mat embed;      /* [vocab][dim] */
    llmlab_layer *layers;  /* [n_layers] */
    float *final_norm;     /* [dim] */
    llmlab_mat lm_head;    /* [vocab][dim]; equals embed when tied */
    float *rope_inv_freq;  /* [head_dim/2], llama3 scaling applied */
    uint64_t weight_bytes; /* bytes of all matrices as stored (read per decode step) */
    char hash[17];         /* 64-bit FNV-1a of config.json + tensor headers, hex */
    struct llmlab_tokenizer *tok; /* owned: dir/tokenizer.json, else the byte fallback (tokenizer.h);
                                     its vocab_size <= cfg.vocab_size unless it is the fallback */
    struct llmlab_gguf *gguf; /* the mapped file of a model loaded from GGUF (model_gguf.c), else NULL;
                                 st is then empty and path names the .gguf file */
    void **owned;          /* [n_owned] matrices the loader copied (GGUF's un-permuted Q/K rows) */
    int n_owned;
} llmlab_model;

/* Loads a Hugging Face model directory (config.json + safetensors, and its
 * tokenizer.json when present), or a GGUF file (llama.cpp's format, docs/gguf.md):
 * a path to the file, or a directory holding exactly one *.gguf and no config.json.
 * Every tensor the architecture needs must exist with the shape the config implies. */
llmlab_status llmlab_model_load(llmlab_model **out, const char *dir, llmlab_err *err);
void llmlab_model_free(llmlab_model *m);
/* Chooses where the model's contexts run: LLMLAB_BACKEND_CPU, or CUDA on
 * device `device` (checked: EUNSUPPORTED naming the reason when the build has
 * no CUDA or the device is missing), deterministic = batch-invariant kernels.
 * Before any context exists. */
llmlab_status llmlab_model_set_backend(llmlab_model *m, int backend, int device, int deterministic, llmlab_err *err);
/* "cpu", "cuda" or "cuda-deterministic" (recorded with every run). */
const char *llmlab_model_backend_name(const llmlab_model *m);
/* Frees the model's device weights (core/forward_cuda.c; NULL is fine). */
void llmlab_cuda_weights_free(struct llmlab_cuda_weights *w);

/* ---- for the loaders (model.c, model_gguf.c) ------------------------------------ */

/* The GGUF file to load for `path`: *file = a malloc'd path when path is a file or
 * a directory with exactly one *.gguf and no config.json, else NULL (a Hugging
 * Face directory).  A directory with several .gguf files is an error. */
llmlab_status llmlab_model_gguf_file(const char *path, char **file, llmlab_err *err);
/* Fills m (zeroed, path set to the file) from a GGUF file. */
llmlab_status llmlab_model_load_gguf(llmlab_model *m, llmlab_err *err);
/* RoPE inverse frequencies [head_dim/2] of cfg as transformers computes them. */
void llmlab_rope_inv_freq(const llmlab_config *c, float *out);
/* The model hash (llmlab_model.hash): begin over the config.json text, then one
 * step per tensor in name order (name, dtype name as safetensors spells it,
 * shape, first and last 4 KiB of its stored bytes); printed as %016llx. */
uint64_t llmlab_model_hash_begin(const char *cfg_text, size_t cfg_len);
uint64_t llmlab_model_hash_tensor(uint64_t h, const char *name, const char *dtype_name, int ndim,
                                  const int64_t *shape, const void *data, size_t nbytes);

#endif
