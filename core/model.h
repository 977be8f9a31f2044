/* model.h - a loaded Llama-family decoder: config plus views of its weights.
 *
 * Large matrices stay in the memory-mapped safetensors files in their stored dtype
 * (f32, f16 or bf16); small vectors (norms, biases) are converted to owned f32.
 */
#ifndef LLMLAB_MODEL_H
#define LLMLAB_MODEL_H

#include <stdint.h>

#include "config.h"
#include "safetensors.h"

struct llmlab_tokenizer;

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

typedef struct llmlab_model {
    llmlab_config cfg;
    char *path;            /* model directory, owned */
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
} llmlab_model;

/* Loads a Hugging Face model directory (config.json + safetensors, and its
 * tokenizer.json when present).  Every tensor the architecture needs must exist
 * with the shape config.json implies. */
llmlab_status llmlab_model_load(llmlab_model **out, const char *dir, llmlab_err *err);
void llmlab_model_free(llmlab_model *m);

#endif
