/* test_config.c - config.json parsing: defaults, llama3 RoPE, and every error
 * naming its key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "util/fsutil.h"

#define BASE_FIELDS                                                                         \
    "\"vocab_size\": 1000, \"hidden_size\": 64, \"intermediate_size\": 128, "                \
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4"

static const char *LLAMA = "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_FIELDS "}";

/* Parses text expecting failure with code; the message must contain needle. */
static void expect_err(const char *text, llmlab_status code, const char *needle) {
    llmlab_config c;
    llmlab_err e = {0};
    llmlab_status s = llmlab_config_parse(&c, text, &e);
    cr_assert_eq(s, code, "status %d (want %d) for %s: %s", s, code, text, e.msg);
    cr_assert_eq(e.code, code);
    cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

/* {"architectures": ["LlamaForCausalLM"], BASE_FIELDS, extra} */
static char *with(const char *extra) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_FIELDS ", %s}", extra);
    return buf;
}

/* The base fields with one replaced by a raw JSON value (or dropped when NULL). */
static char *replace(const char *key, const char *value) {
    static char buf[2048];
    const char *keys[] = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"};
    const char *vals[] = {"1000", "64", "128", "2", "4"};
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"architectures\": [\"LlamaForCausalLM\"]");
    for (int i = 0; i < 5; i++) {
        const char *v = strcmp(keys[i], key) ? vals[i] : value;
        if (v) n += (size_t)snprintf(buf + n, sizeof buf - n, ", \"%s\": %s", keys[i], v);
    }
    snprintf(buf + n, sizeof buf - n, "}");
    return buf;
}

Test(config, defaults) {
    llmlab_config c;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_parse(&c, LLAMA, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(c.arch, LLMLAB_ARCH_LLAMA);
    cr_assert_str_eq(c.arch_name, "LlamaForCausalLM");
    cr_assert_eq(c.vocab_size, 1000);
    cr_assert_eq(c.dim, 64);
    cr_assert_eq(c.ffn_dim, 128);
    cr_assert_eq(c.n_layers, 2);
    cr_assert_eq(c.n_heads, 4);
    cr_assert_eq(c.n_kv_heads, 4);
    cr_assert_eq(c.head_dim, 16);
    cr_assert_float_eq(c.rms_eps, 1e-6f, 1e-12);
    cr_assert_float_eq(c.rope_theta, 10000.0f, 1e-3);
    cr_assert_eq(c.rope_kind, LLMLAB_ROPE_DEFAULT);
    cr_assert_eq(c.tie_embeddings, 0);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert_eq(c.max_pos, 2048);
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(c.bos_id, -1);
    cr_assert_eq(c.n_eos, 0);
    cr_assert_eq(c.torch_dtype, LLMLAB_DTYPE_F32);
}

Test(config, all_fields) {
    const char *t = "{\"architectures\": [\"MistralForCausalLM\"], " BASE_FIELDS
                    ", \"num_key_value_heads\": 2, \"head_dim\": 32, \"rms_norm_eps\": 1e-5, "
                    "\"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
                    "\"max_position_embeddings\": 32768, \"sliding_window\": 4096, "
                    "\"bos_token_id\": 1, \"eos_token_id\": [2, 32000, 7], \"torch_dtype\": \"bfloat16\"}";
    llmlab_config c;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_parse(&c, t, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(c.arch, LLMLAB_ARCH_MISTRAL);
    cr_assert_eq(c.n_kv_heads, 2);
    cr_assert_eq(c.head_dim, 32);
    cr_assert_float_eq(c.rms_eps, 1e-5f, 1e-12);
    cr_assert_float_eq(c.rope_theta, 1e6f, 1e-1);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.max_pos, 32768);
    cr_assert_eq(c.sliding_window, 4096);
    cr_assert_eq(c.bos_id, 1);
    cr_assert_eq(c.n_eos, 3);
    cr_assert_eq(c.eos_ids[1], 32000);
    cr_assert(llmlab_config_is_eos(&c, 7));
    cr_assert_not(llmlab_config_is_eos(&c, 3));
    cr_assert_eq(c.torch_dtype, LLMLAB_DTYPE_BF16);
}

Test(config, head_dim_null_means_derived) {
    llmlab_config c;
    cr_assert_eq(llmlab_config_parse(&c, with("\"head_dim\": null"), NULL), LLMLAB_OK);
    cr_assert_eq(c.head_dim, 16);
}

Test(config, qwen2_has_qkv_bias_and_unused_window) {
    const char *t = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE_FIELDS
                    ", \"sliding_window\": 131072, \"use_sliding_window\": false, \"eos_token_id\": 5}";
    llmlab_config c;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_parse(&c, t, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(c.arch, LLMLAB_ARCH_QWEN2);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.sliding_window, 0);
    cr_assert_eq(c.n_eos, 1);
    cr_assert_eq(c.eos_ids[0], 5);
}

Test(config, llama3_rope_scaling) {
    const char *extra = "\"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, "
                        "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                        "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}";
    llmlab_config c;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_parse(&c, with(extra), &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(c.rope_kind, LLMLAB_ROPE_LLAMA3);
    cr_assert_float_eq(c.rope_factor, 8.0f, 0);
    cr_assert_float_eq(c.rope_low_freq_factor, 1.0f, 0);
    cr_assert_float_eq(c.rope_high_freq_factor, 4.0f, 0);
    cr_assert_eq(c.rope_orig_max_pos, 8192);
    /* the older "type" spelling and "default" */
    cr_assert_eq(llmlab_config_parse(&c, with("\"rope_scaling\": {\"type\": \"default\"}"), NULL), LLMLAB_OK);
    cr_assert_eq(c.rope_kind, LLMLAB_ROPE_DEFAULT);
    cr_assert_eq(llmlab_config_parse(&c, with("\"rope_scaling\": null"), NULL), LLMLAB_OK);
}

Test(config, model_type_without_architectures) {
    llmlab_config c;
    const char *t = "{\"model_type\": \"qwen2\", " BASE_FIELDS "}";
    cr_assert_eq(llmlab_config_parse(&c, t, NULL), LLMLAB_OK);
    cr_assert_eq(c.arch, LLMLAB_ARCH_QWEN2);
}

Test(config, malformed_json) {
    expect_err("{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 10,,}", LLMLAB_EFORMAT,
               "malformed JSON");
    expect_err("", LLMLAB_EFORMAT, "malformed JSON");
    expect_err("[1, 2]", LLMLAB_EFORMAT, "not an object");
}

Test(config, missing_keys) {
    expect_err(replace("hidden_size", NULL), LLMLAB_EFORMAT, "'hidden_size' is missing");
    expect_err(replace("vocab_size", NULL), LLMLAB_EFORMAT, "vocab_size");
    expect_err(replace("num_hidden_layers", NULL), LLMLAB_EFORMAT, "num_hidden_layers");
    expect_err("{" BASE_FIELDS "}", LLMLAB_EFORMAT, "architectures");
}

Test(config, bad_sizes) {
    expect_err(replace("hidden_size", "0"), LLMLAB_EINVAL, "hidden_size");
    expect_err(replace("vocab_size", "-5"), LLMLAB_EINVAL, "vocab_size");
    expect_err(replace("intermediate_size", "1e12"), LLMLAB_EINVAL, "intermediate_size");
    expect_err(replace("num_hidden_layers", "5000"), LLMLAB_EINVAL, "num_hidden_layers");
    expect_err(replace("num_attention_heads", "0"), LLMLAB_EINVAL, "num_attention_heads");
    expect_err(replace("hidden_size", "64.5"), LLMLAB_EFORMAT, "hidden_size");
    expect_err(with("\"num_key_value_heads\": 0"), LLMLAB_EINVAL, "num_key_value_heads");
    expect_err(with("\"rms_norm_eps\": -1"), LLMLAB_EINVAL, "rms_norm_eps");
    expect_err(with("\"rope_theta\": 0"), LLMLAB_EINVAL, "rope_theta");
    expect_err(with("\"head_dim\": 15"), LLMLAB_EINVAL, "head_dim");
    expect_err(with("\"max_position_embeddings\": 0"), LLMLAB_EINVAL, "max_position_embeddings");
    expect_err(replace("num_attention_heads", "5"), LLMLAB_EINVAL, "head_dim");
}

Test(config, heads_not_divisible) {
    expect_err(with("\"num_key_value_heads\": 3"), LLMLAB_EINVAL, "num_key_value_heads");
    expect_err(with("\"num_key_value_heads\": 8"), LLMLAB_EINVAL, "num_key_value_heads");
}

Test(config, wrong_types) {
    expect_err(replace("hidden_size", "\"64\""), LLMLAB_EFORMAT, "'hidden_size' must be an integer");
    expect_err(replace("vocab_size", "[1000]"), LLMLAB_EFORMAT, "vocab_size");
    expect_err(replace("num_attention_heads", "true"), LLMLAB_EFORMAT, "num_attention_heads");
    expect_err(with("\"rope_theta\": \"10000\""), LLMLAB_EFORMAT, "rope_theta");
    expect_err(with("\"tie_word_embeddings\": 1"), LLMLAB_EFORMAT, "tie_word_embeddings");
    expect_err(with("\"eos_token_id\": \"2\""), LLMLAB_EFORMAT, "eos_token_id");
    expect_err(with("\"eos_token_id\": [1, \"x\"]"), LLMLAB_EFORMAT, "eos_token_id");
    expect_err(with("\"eos_token_id\": [1,2,3,4,5,6,7,8,9]"), LLMLAB_EUNSUPPORTED, "eos_token_id");
    expect_err(with("\"bos_token_id\": -3"), LLMLAB_EINVAL, "bos_token_id");
    expect_err(with("\"torch_dtype\": 16"), LLMLAB_EFORMAT, "torch_dtype");
    expect_err(with("\"rope_scaling\": 8"), LLMLAB_EFORMAT, "rope_scaling");
    expect_err("{\"architectures\": \"LlamaForCausalLM\", " BASE_FIELDS "}", LLMLAB_EFORMAT, "architectures");
    expect_err("{\"architectures\": [7], " BASE_FIELDS "}", LLMLAB_EFORMAT, "architectures");
}

Test(config, product_overflow) {
    /* each size is within its own limit, the products are not */
    const char *t = "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 16000000, "
                    "\"hidden_size\": 16000000, \"intermediate_size\": 16, "
                    "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"head_dim\": 2}";
    expect_err(t, LLMLAB_EINVAL, "vocab_size");
    const char *t2 = "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 16, "
                     "\"hidden_size\": 16000000, \"intermediate_size\": 16000000, "
                     "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"head_dim\": 2}";
    expect_err(t2, LLMLAB_EINVAL, "intermediate_size");
    const char *t3 = "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 16, "
                     "\"hidden_size\": 16000000, \"intermediate_size\": 16, "
                     "\"num_hidden_layers\": 1, \"num_attention_heads\": 16000000, \"head_dim\": 16000000}";
    expect_err(t3, LLMLAB_EINVAL, "head_dim");
    const char *t4 = "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 16, "
                     "\"hidden_size\": 8192, \"intermediate_size\": 131072, "
                     "\"num_hidden_layers\": 1000, \"num_attention_heads\": 64}";
    expect_err(t4, LLMLAB_EINVAL, "num_hidden_layers");
}

Test(config, unsupported) {
    expect_err("{\"architectures\": [\"GPT2LMHeadModel\"], " BASE_FIELDS "}", LLMLAB_EUNSUPPORTED,
               "GPT2LMHeadModel");
    expect_err(with("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"), LLMLAB_EUNSUPPORTED,
               "yarn");
    expect_err(with("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"), LLMLAB_EUNSUPPORTED,
               "rope_scaling");
    expect_err(with("\"attention_bias\": true"), LLMLAB_EUNSUPPORTED, "attention_bias");
    expect_err(with("\"mlp_bias\": true"), LLMLAB_EUNSUPPORTED, "mlp_bias");
    expect_err(with("\"hidden_act\": \"gelu\""), LLMLAB_EUNSUPPORTED, "hidden_act");
    expect_err(with("\"torch_dtype\": \"float64\""), LLMLAB_EUNSUPPORTED, "torch_dtype");
}

Test(config, bad_llama3_block) {
    expect_err(with("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"), LLMLAB_EFORMAT,
               "original_max_position_embeddings");
    expect_err(with("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4, "
                    "\"high_freq_factor\": 1, \"original_max_position_embeddings\": 8192}"),
               LLMLAB_EINVAL, "high_freq_factor");
    expect_err(with("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": \"8\", \"low_freq_factor\": 1, "
                    "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}"),
               LLMLAB_EFORMAT, "factor");
}

Test(config, to_json_round_trip) {
    llmlab_config c;
    const char *extra = "\"num_key_value_heads\": 2, \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-5, "
                        "\"bos_token_id\": 128000, \"eos_token_id\": [128001, 128009], "
                        "\"torch_dtype\": \"bfloat16\", \"tie_word_embeddings\": true, "
                        "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, "
                        "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, "
                        "\"rope_type\": \"llama3\"}";
    cr_assert_eq(llmlab_config_parse(&c, with(extra), NULL), LLMLAB_OK);
    char *j = llmlab_config_to_json(&c);
    cr_assert_not_null(j);
    cr_assert(strstr(j, "\"model_type\":\t\"llama\""), "%s", j);
    cr_assert(strstr(j, "\"torch_dtype\":\t\"bfloat16\""), "%s", j);
    cr_assert(strstr(j, "\"rms_norm_eps\":\t1e-05"), "%s", j);
    cr_assert(strstr(j, "\"rope_type\":\t\"llama3\""), "%s", j);
    llmlab_config d;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_parse(&d, j, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0);
    free(j);
    /* Qwen2 and Mistral spellings */
    c.arch = LLMLAB_ARCH_QWEN2;
    c.qkv_bias = 1;
    j = llmlab_config_to_json(&c);
    cr_assert(strstr(j, "Qwen2ForCausalLM") && strstr(j, "\"qwen2\""));
    cr_assert_eq(llmlab_config_parse(&d, j, NULL), LLMLAB_OK);
    cr_assert_eq(d.qkv_bias, 1);
    free(j);
}

Test(config, load_file_prefixes_path) {
    char *dir = fsu_mkdtemp();
    char *p = fsu_join(dir, "config.json");
    const char *t = "{\"architectures\": [\"LlamaForCausalLM\"]}";
    fsu_write(p, t, strlen(t));
    llmlab_config c;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_config_load(&c, p, &e), LLMLAB_EFORMAT);
    cr_assert(strstr(e.msg, "config.json") && strstr(e.msg, "vocab_size"), "%s", e.msg);
    char *q = fsu_join(dir, "nope.json");
    cr_assert_eq(llmlab_config_load(&c, q, &e), LLMLAB_EIO);
    cr_assert(strstr(e.msg, "nope.json"), "%s", e.msg);
    fsu_rmtree(dir);
    free(p);
    free(q);
    free(dir);
}
