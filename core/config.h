/* config.h - model hyper-parameters read from a Hugging Face config.json. */
#ifndef LLMLAB_CONFIG_H
#define LLMLAB_CONFIG_H

#include "llmlab/llmlab.h"

#define LLMLAB_MAX_EOS 8

typedef enum {
    LLMLAB_ARCH_LLAMA = 0,   /* LlamaForCausalLM */
    LLMLAB_ARCH_MISTRAL = 1, /* MistralForCausalLM */
    LLMLAB_ARCH_QWEN2 = 2    /* Qwen2ForCausalLM (q/k/v projections carry a bias) */
} llmlab_arch;

typedef enum { LLMLAB_ROPE_DEFAULT = 0, LLMLAB_ROPE_LLAMA3 = 1 } llmlab_rope_kind;

typedef struct {
    llmlab_arch arch;
    char arch_name[64];      /* as written in "architectures"[0] */
    int vocab_size;          /* rows of the embedding and LM head */
    int dim;                 /* hidden_size */
    int ffn_dim;             /* intermediate_size */
    int n_layers;            /* num_hidden_layers */
    int n_heads;             /* num_attention_heads */
    int n_kv_heads;          /* num_key_value_heads (GQA/MQA), defaults to n_heads */
    int head_dim;            /* head_dim, defaults to dim / n_heads */
    float rms_eps;           /* rms_norm_eps */
    float rope_theta;        /* rope_theta, default 10000 */
    llmlab_rope_kind rope_kind;
    float rope_factor;       /* llama3: factor */
    float rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;   /* llama3: original_max_position_embeddings */
    int tie_embeddings;      /* tie_word_embeddings: LM head = embedding */
    int qkv_bias;            /* q/k/v projections have a bias (Qwen2, or attention_bias) */
    int max_pos;             /* max_position_embeddings */
    int sliding_window;      /* Mistral's sliding_window, 0 = none (recorded, used by policies) */
    int bos_id;              /* -1 when absent */
    int n_eos;
    int eos_ids[LLMLAB_MAX_EOS];
    llmlab_dtype torch_dtype; /* "torch_dtype" when present, else F32 */
} llmlab_config;

/* Parses and validates config.json text.  Rejects missing/absurd values with a
 * message naming the key (zero, negative, or sizes whose products overflow). */
/* "a number", "an array", ... for error messages about a JSON value of the wrong type. */
struct cJSON;
const char *llmlab_json_type_name(const struct cJSON *v);

llmlab_status llmlab_config_parse(llmlab_config *cfg, const char *json_text, llmlab_err *err);
llmlab_status llmlab_config_load(llmlab_config *cfg, const char *path, llmlab_err *err);

/* Writes cfg as a Hugging Face config.json; returns the malloc'd text or NULL. */
char *llmlab_config_to_json(const llmlab_config *cfg);

int llmlab_config_is_eos(const llmlab_config *cfg, int token);

#endif
