/* config.c - reading and writing Hugging Face config.json (Llama, Mistral, Qwen2).
 *
 * Parsing is strict about types and sizes and names the offending key in every
 * message: a model whose config.json is wrong must fail here, with a sentence a
 * researcher can act on, and never later as an out-of-bounds read in a kernel.
 * All JSON goes through cJSON.
 */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dtype.h"
#include "error.h"

#define CFG_MAX_SIZE (1 << 24)        /* any single dimension */
#define CFG_MAX_LAYERS 1024
#define CFG_MAX_ELEMS (1ull << 40)    /* any one matrix, and the whole model */
#define CFG_MAX_FILE (16u << 20)      /* config.json larger than this is not a config */

/* ---- typed getters ----------------------------------------------------------- */

const char *llmlab_json_type_name(const struct cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

/* Reads an integer in [lo, hi].  Absent (or null when null_ok) keeps *out = def
 * unless required.  Returns OK or fills err naming the key. */
static llmlab_status get_int(const cJSON *obj, const char *key, int required, int def, long long lo,
                             long long hi, int *out, llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' is missing", key);
        *out = def;
        return LLMLAB_OK;
    }
    if (!cJSON_IsNumber(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' must be an integer, not %s", key,
                              llmlab_json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' must be an integer, not %g", key, d);
    if (d < (double)lo || d > (double)hi)
        return llmlab_err_set(err, LLMLAB_EINVAL, "'%s' = %.0f is out of range [%lld, %lld]", key, d,
                              lo, hi);
    *out = (int)d;
    return LLMLAB_OK;
}

/* Reads a finite number > 0 (absent or null -> def). */
static llmlab_status get_pos_num(const cJSON *obj, const char *key, double def, double *out,
                                 llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LLMLAB_OK;
    }
    if (!cJSON_IsNumber(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' must be a number, not %s", key,
                              llmlab_json_type_name(v));
    /* Stored as float: values that round to 0, a subnormal or inf are rejected. */
    if (!isfinite(v->valuedouble) || v->valuedouble < (double)FLT_MIN || v->valuedouble > 3.0e38)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'%s' = %g must be a positive number in float range", key,
                              v->valuedouble);
    *out = v->valuedouble;
    return LLMLAB_OK;
}

static llmlab_status get_bool(const cJSON *obj, const char *key, int def, int *out, llmlab_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LLMLAB_OK;
    }
    if (!cJSON_IsBool(v))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' must be true or false, not %s", key,
                              llmlab_json_type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return LLMLAB_OK;
}

/* ---- sections ------------------------------------------------------------------ */

static llmlab_status parse_arch(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *name = NULL;
    if (archs) {
        if (!cJSON_IsArray(archs) || cJSON_GetArraySize(archs) < 1)
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "'architectures' must be a non-empty array of strings");
        const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
        if (!cJSON_IsString(a0))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "'architectures'[0] must be a string, not %s",
                                  llmlab_json_type_name(a0));
        name = a0->valuestring;
    } else {
        /* Why: some hand-written configs carry only model_type. */
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        if (!cJSON_IsString(mt))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "'architectures' is missing");
        if (!strcmp(mt->valuestring, "llama")) name = "LlamaForCausalLM";
        else if (!strcmp(mt->valuestring, "mistral")) name = "MistralForCausalLM";
        else if (!strcmp(mt->valuestring, "qwen2")) name = "Qwen2ForCausalLM";
        else
            return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                                  "'model_type' \"%.100s\" is not supported (llama, mistral, qwen2)",
                                  mt->valuestring);
    }
    if (!strcmp(name, "LlamaForCausalLM")) cfg->arch = LLMLAB_ARCH_LLAMA;
    else if (!strcmp(name, "MistralForCausalLM")) cfg->arch = LLMLAB_ARCH_MISTRAL;
    else if (!strcmp(name, "Qwen2ForCausalLM")) cfg->arch = LLMLAB_ARCH_QWEN2;
    else
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "'architectures' names \"%.100s\", which is not supported "
                              "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                              name);
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", name);
    return LLMLAB_OK;
}

static llmlab_status parse_sizes(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    llmlab_status s;
    if ((s = get_int(root, "vocab_size", 1, 0, 1, CFG_MAX_SIZE, &cfg->vocab_size, err)) ||
        (s = get_int(root, "hidden_size", 1, 0, 1, CFG_MAX_SIZE, &cfg->dim, err)) ||
        (s = get_int(root, "intermediate_size", 1, 0, 1, CFG_MAX_SIZE, &cfg->ffn_dim, err)) ||
        (s = get_int(root, "num_hidden_layers", 1, 0, 1, CFG_MAX_LAYERS, &cfg->n_layers, err)) ||
        (s = get_int(root, "num_attention_heads", 1, 0, 1, CFG_MAX_SIZE, &cfg->n_heads, err)) ||
        (s = get_int(root, "num_key_value_heads", 0, cfg->n_heads, 1, CFG_MAX_SIZE,
                     &cfg->n_kv_heads, err)) ||
        (s = get_int(root, "max_position_embeddings", 0, 2048, 1, 1 << 30, &cfg->max_pos, err)))
        return s;
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!hd || cJSON_IsNull(hd)) {
        if (cfg->dim % cfg->n_heads)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "'hidden_size' %d is not a multiple of 'num_attention_heads' %d "
                                  "and no 'head_dim' is given",
                                  cfg->dim, cfg->n_heads);
        cfg->head_dim = cfg->dim / cfg->n_heads;
    } else if ((s = get_int(root, "head_dim", 1, 0, 1, CFG_MAX_SIZE, &cfg->head_dim, err))) {
        return s;
    }
    if (cfg->head_dim % 2)
        return llmlab_err_set(err, LLMLAB_EINVAL, "'head_dim' %d must be even (RoPE rotates pairs)",
                              cfg->head_dim);
    if (cfg->n_kv_heads > cfg->n_heads || cfg->n_heads % cfg->n_kv_heads)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'num_attention_heads' %d is not a multiple of "
                              "'num_key_value_heads' %d",
                              cfg->n_heads, cfg->n_kv_heads);
    return LLMLAB_OK;
}

/* Rejects shapes whose matrices would not fit a 64-bit byte count comfortably. */
static llmlab_status check_products(const llmlab_config *cfg, llmlab_err *err) {
    /* each size is <= 2^24, so any two multiply without overflow; check before a third */
    uint64_t q = (uint64_t)cfg->n_heads * (uint64_t)cfg->head_dim;
    uint64_t qdim = q > CFG_MAX_ELEMS / (uint64_t)cfg->dim ? CFG_MAX_ELEMS + 1 : q * (uint64_t)cfg->dim;
    uint64_t emb = (uint64_t)cfg->vocab_size * (uint64_t)cfg->dim;
    uint64_t ffn = (uint64_t)cfg->ffn_dim * (uint64_t)cfg->dim;
    if (qdim > CFG_MAX_ELEMS)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'num_attention_heads' * 'head_dim' * 'hidden_size' exceeds 2^40 elements "
                              "(%d * %d * %d)",
                              cfg->n_heads, cfg->head_dim, cfg->dim);
    if (emb > CFG_MAX_ELEMS)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'vocab_size' * 'hidden_size' = %llu elements is absurd (limit 2^40)",
                              (unsigned long long)emb);
    if (ffn > CFG_MAX_ELEMS)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'intermediate_size' * 'hidden_size' = %llu elements is absurd "
                              "(limit 2^40)",
                              (unsigned long long)ffn);
    uint64_t kv = (uint64_t)cfg->n_kv_heads * (uint64_t)cfg->head_dim; /* <= q: kv heads <= heads */
    kv *= (uint64_t)cfg->dim;
    uint64_t layer = 2 * qdim + 2 * kv + 3 * ffn;
    uint64_t total = layer * (uint64_t)cfg->n_layers + 2 * emb;
    if (total > CFG_MAX_ELEMS)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'num_hidden_layers' %d with these sizes gives %llu parameters, which "
                              "is absurd (limit 2^40)",
                              cfg->n_layers, (unsigned long long)total);
    return LLMLAB_OK;
}

static llmlab_status parse_rope(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    double theta, eps;
    llmlab_status s;
    /* transformers >= 5 writes RoPE settings only as "rope_parameters": {rope_type,
     * rope_theta, factor, ...}; older files use top-level rope_theta/rope_scaling.
     * Top-level keys win when both exist (Hub files often carry both). */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'rope_parameters' must be an object or null, not %s",
                              llmlab_json_type_name(rp));
    if (!cJSON_IsObject(rp)) rp = NULL;
    const cJSON *theta_src = (rp && !cJSON_GetObjectItemCaseSensitive(root, "rope_theta")) ? rp : root;
    if ((s = get_pos_num(theta_src, "rope_theta", 10000.0, &theta, err)) ||
        (s = get_pos_num(root, "rms_norm_eps", 1e-6, &eps, err)))
        return s;
    if (eps >= 1.0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "'rms_norm_eps' = %g is absurd (must be < 1)", eps);
    cfg->rope_theta = (float)theta;
    cfg->rms_eps = (float)eps;
    cfg->rope_kind = LLMLAB_ROPE_DEFAULT;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if ((!rs || cJSON_IsNull(rs)) && rp) rs = rp;
    if (!rs || cJSON_IsNull(rs)) return LLMLAB_OK;
    if (!cJSON_IsObject(rs))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'rope_scaling' must be an object or null, not %s",
                              llmlab_json_type_name(rs));
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(ty))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'rope_scaling' needs a string 'rope_type'");
    if (!strcmp(ty->valuestring, "default")) return LLMLAB_OK;
    if (strcmp(ty->valuestring, "llama3"))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "'rope_scaling' type \"%.64s\" is not supported (default, llama3)",
                              ty->valuestring);
    double f, lo, hi;
    if ((s = get_pos_num(rs, "factor", 0, &f, err)) ||
        (s = get_pos_num(rs, "low_freq_factor", 0, &lo, err)) ||
        (s = get_pos_num(rs, "high_freq_factor", 0, &hi, err)) ||
        (s = get_int(rs, "original_max_position_embeddings", 1, 0, 1, 1 << 30, &cfg->rope_orig_max_pos,
                     err))) {
        llmlab_err_prefix(err, "rope_scaling");
        return s;
    }
    if (f == 0 || lo == 0 || hi == 0)
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "'rope_scaling' llama3 needs 'factor', 'low_freq_factor' and "
                              "'high_freq_factor'");
    if (hi <= lo)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "'rope_scaling': 'high_freq_factor' %g must exceed 'low_freq_factor' %g",
                              hi, lo);
    cfg->rope_kind = LLMLAB_ROPE_LLAMA3;
    cfg->rope_factor = (float)f;
    cfg->rope_low_freq_factor = (float)lo;
    cfg->rope_high_freq_factor = (float)hi;
    return LLMLAB_OK;
}

static llmlab_status parse_flags(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    llmlab_status s;
    int attn_bias = 0, mlp_bias = 0;
    if ((s = get_bool(root, "tie_word_embeddings", 0, &cfg->tie_embeddings, err)) ||
        (s = get_bool(root, "attention_bias", 0, &attn_bias, err)) ||
        (s = get_bool(root, "mlp_bias", 0, &mlp_bias, err)))
        return s;
    if (mlp_bias)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "'mlp_bias' = true is not supported");
    if (cfg->arch == LLMLAB_ARCH_QWEN2) {
        cfg->qkv_bias = 1;
    } else if (attn_bias) {
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "'attention_bias' = true is not supported for %s (it adds an o_proj "
                              "bias); only Qwen2's q/k/v bias is",
                              cfg->arch_name);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "'hidden_act' must be a string, not %s",
                                  llmlab_json_type_name(act));
        if (strcmp(act->valuestring, "silu"))
            return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                                  "'hidden_act' \"%.64s\" is not supported (silu)", act->valuestring);
    }
    if ((s = get_int(root, "sliding_window", 0, 0, 0, 1 << 30, &cfg->sliding_window, err))) return s;
    int use_sw = 1;
    if ((s = get_bool(root, "use_sliding_window", 1, &use_sw, err))) return s;
    if (!use_sw) cfg->sliding_window = 0; /* Qwen2 writes a window it does not use */
    return LLMLAB_OK;
}

static llmlab_status parse_tokens(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    llmlab_status s;
    if ((s = get_int(root, "bos_token_id", 0, -1, 0, 0x7fffffff, &cfg->bos_id, err))) return s;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    cfg->n_eos = 0;
    if (!e || cJSON_IsNull(e)) return LLMLAB_OK;
    if (cJSON_IsNumber(e)) {
        cfg->n_eos = 1;
        return get_int(root, "eos_token_id", 1, 0, 0, 0x7fffffff, &cfg->eos_ids[0], err);
    }
    if (!cJSON_IsArray(e))
        return llmlab_err_set(err, LLMLAB_EFORMAT,
                              "'eos_token_id' must be an integer or an array of integers, not %s",
                              llmlab_json_type_name(e));
    int n = cJSON_GetArraySize(e);
    if (n > LLMLAB_MAX_EOS)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "'eos_token_id' lists %d ids (at most %d)", n,
                              LLMLAB_MAX_EOS);
    const cJSON *it;
    cJSON_ArrayForEach(it, e) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!cJSON_IsNumber(it) || d != floor(d) || d < 0 || d > 0x7fffffff)
            return llmlab_err_set(err, LLMLAB_EFORMAT,
                                  "'eos_token_id'[%d] must be a non-negative integer", cfg->n_eos);
        cfg->eos_ids[cfg->n_eos++] = (int)d;
    }
    return LLMLAB_OK;
}

static llmlab_status parse_dtype(llmlab_config *cfg, const cJSON *root, llmlab_err *err) {
    const char *key = "torch_dtype";
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!t) { /* newer transformers write "dtype" */
        key = "dtype";
        t = cJSON_GetObjectItemCaseSensitive(root, key);
    }
    cfg->torch_dtype = LLMLAB_DTYPE_F32;
    if (!t || cJSON_IsNull(t)) return LLMLAB_OK;
    if (!cJSON_IsString(t))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "'%s' must be a string, not %s", key,
                              llmlab_json_type_name(t));
    if (llmlab_dtype_parse(t->valuestring, &cfg->torch_dtype))
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "'%s' \"%.64s\" is not supported (float32, float16, bfloat16)", key,
                              t->valuestring);
    return LLMLAB_OK;
}

/* ---- public ------------------------------------------------------------------------ */

llmlab_status llmlab_config_parse(llmlab_config *cfg, const char *json_text, llmlab_err *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!json_text) return llmlab_err_set(err, LLMLAB_EINVAL, "no config text");
    size_t len = strlen(json_text);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json_text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= json_text ? (size_t)(end - json_text) : 0;
        return llmlab_err_set(err, LLMLAB_EFORMAT, "malformed JSON near byte %zu", pos);
    }
    llmlab_status s = LLMLAB_OK;
    if (!cJSON_IsObject(root))
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "malformed config: top level is %s, not an object",
                           llmlab_json_type_name(root));
    if (!s) s = parse_arch(cfg, root, err);
    if (!s) s = parse_sizes(cfg, root, err);
    if (!s) s = check_products(cfg, err);
    if (!s) s = parse_rope(cfg, root, err);
    if (!s) s = parse_flags(cfg, root, err);
    if (!s) s = parse_tokens(cfg, root, err);
    if (!s) s = parse_dtype(cfg, root, err);
    cJSON_Delete(root);
    return s;
}

llmlab_status llmlab_config_load(llmlab_config *cfg, const char *path, llmlab_err *err) {
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    char *buf = malloc(CFG_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, CFG_MAX_FILE + 1, f);
    int rerr = ferror(f);
    fclose(f);
    llmlab_status s = LLMLAB_OK;
    if (rerr) s = llmlab_err_set(err, LLMLAB_EIO, "%s: read error", path);
    else if (n > CFG_MAX_FILE)
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: larger than %u bytes; not a config", path,
                           CFG_MAX_FILE);
    else if (memchr(buf, 0, n))
        s = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: malformed JSON (contains a NUL byte)", path);
    if (!s) {
        buf[n] = 0;
        s = llmlab_config_parse(cfg, buf, err);
        if (s) llmlab_err_prefix(err, "%s", path);
    }
    free(buf);
    return s;
}

int llmlab_config_is_eos(const llmlab_config *cfg, int token) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == token) return 1;
    return 0;
}

/* ---- writing ----------------------------------------------------------------------- */

/* The double whose shortest decimal form round-trips f, so 1e-5f prints "1e-05"
 * rather than "9.99999974737875e-06". */
static double float_to_json_double(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return strtod(buf, NULL);
    }
    return (double)f;
}

static const char *model_type_name(llmlab_arch a) {
    return a == LLMLAB_ARCH_MISTRAL ? "mistral" : a == LLMLAB_ARCH_QWEN2 ? "qwen2" : "llama";
}

static const char *arch_class_name(llmlab_arch a) {
    return a == LLMLAB_ARCH_MISTRAL ? "MistralForCausalLM"
           : a == LLMLAB_ARCH_QWEN2 ? "Qwen2ForCausalLM"
                                    : "LlamaForCausalLM";
}

static const char *torch_dtype_name(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F16 ? "float16" : t == LLMLAB_DTYPE_BF16 ? "bfloat16" : "float32";
}

static void add_rope_scaling(cJSON *root, const llmlab_config *cfg) {
    if (cfg->rope_kind != LLMLAB_ROPE_LLAMA3) {
        cJSON_AddNullToObject(root, "rope_scaling");
        return;
    }
    cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
    if (!rs) return;
    cJSON_AddNumberToObject(rs, "factor", float_to_json_double(cfg->rope_factor));
    cJSON_AddNumberToObject(rs, "high_freq_factor", float_to_json_double(cfg->rope_high_freq_factor));
    cJSON_AddNumberToObject(rs, "low_freq_factor", float_to_json_double(cfg->rope_low_freq_factor));
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", cfg->rope_orig_max_pos);
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
}

static void add_token_ids(cJSON *root, const llmlab_config *cfg) {
    if (cfg->bos_id >= 0) cJSON_AddNumberToObject(root, "bos_token_id", cfg->bos_id);
    else cJSON_AddNullToObject(root, "bos_token_id");
    if (cfg->n_eos == 1) {
        cJSON_AddNumberToObject(root, "eos_token_id", cfg->eos_ids[0]);
    } else if (cfg->n_eos > 1) {
        cJSON *arr = cJSON_CreateIntArray(cfg->eos_ids, cfg->n_eos);
        if (arr) cJSON_AddItemToObject(root, "eos_token_id", arr);
    } else {
        cJSON_AddNullToObject(root, "eos_token_id");
    }
}

char *llmlab_config_to_json(const llmlab_config *cfg) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    const char *arch = arch_class_name(cfg->arch);
    cJSON *archs = cJSON_CreateStringArray(&arch, 1);
    if (archs) cJSON_AddItemToObject(root, "architectures", archs);
    int qwen = cfg->arch == LLMLAB_ARCH_QWEN2;
    if (!qwen) cJSON_AddBoolToObject(root, "attention_bias", cfg->qkv_bias != 0);
    cJSON_AddNumberToObject(root, "attention_dropout", 0.0);
    add_token_ids(root, cfg);
    cJSON_AddNumberToObject(root, "head_dim", cfg->head_dim);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddNumberToObject(root, "hidden_size", cfg->dim);
    cJSON_AddNumberToObject(root, "initializer_range", 0.02);
    cJSON_AddNumberToObject(root, "intermediate_size", cfg->ffn_dim);
    cJSON_AddNumberToObject(root, "max_position_embeddings", cfg->max_pos);
    if (qwen) cJSON_AddNumberToObject(root, "max_window_layers", cfg->n_layers);
    if (cfg->arch == LLMLAB_ARCH_LLAMA) cJSON_AddBoolToObject(root, "mlp_bias", 0);
    cJSON_AddStringToObject(root, "model_type", model_type_name(cfg->arch));
    cJSON_AddNumberToObject(root, "num_attention_heads", cfg->n_heads);
    cJSON_AddNumberToObject(root, "num_hidden_layers", cfg->n_layers);
    cJSON_AddNumberToObject(root, "num_key_value_heads", cfg->n_kv_heads);
    if (cfg->arch == LLMLAB_ARCH_LLAMA) cJSON_AddNumberToObject(root, "pretraining_tp", 1);
    cJSON_AddNumberToObject(root, "rms_norm_eps", float_to_json_double(cfg->rms_eps));
    add_rope_scaling(root, cfg);
    cJSON_AddNumberToObject(root, "rope_theta", float_to_json_double(cfg->rope_theta));
    if (cfg->sliding_window > 0) cJSON_AddNumberToObject(root, "sliding_window", cfg->sliding_window);
    else if (cfg->arch != LLMLAB_ARCH_LLAMA) cJSON_AddNullToObject(root, "sliding_window");
    cJSON_AddBoolToObject(root, "tie_word_embeddings", cfg->tie_embeddings != 0);
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype_name(cfg->torch_dtype));
    cJSON_AddStringToObject(root, "transformers_version", "4.44.0");
    cJSON_AddBoolToObject(root, "use_cache", 1);
    if (qwen) cJSON_AddBoolToObject(root, "use_sliding_window", cfg->sliding_window > 0);
    cJSON_AddNumberToObject(root, "vocab_size", cfg->vocab_size);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return NULL;
    /* cJSON allocates with malloc by default; return a copy with a final newline so
     * the caller frees with free() whatever hooks cJSON was built with. */
    size_t n = strlen(text);
    char *out = malloc(n + 2);
    if (out) {
        memcpy(out, text, n);
        out[n] = '\n';
        out[n + 1] = 0;
    }
    cJSON_free(text);
    return out;
}
