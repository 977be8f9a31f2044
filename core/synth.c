/* synth.c - seeded random-weight models in Hugging Face layout.
 *
 * Each tensor draws from its own xoshiro256** stream, seeded from (seed, tensor
 * name), so values do not depend on tensor order, chunking or sharding.  Values
 * are uniform with the standard deviation a sane initialisation would give
 * (projections 1/sqrt(fan_in), norms 1 +- 0.1, LM head 2/sqrt(dim) so logits
 * spread over several units), rounded to f16/bf16 by dtype.h.
 *
 * With medusa_heads > 0, medusa_lm_head.safetensors gets that many random Medusa
 * heads in the Medusa project's layout (plugins/decoding/medusa_heads.h), in the
 * model's dtype, seeded like every other tensor.
 *
 * Files are streamed: the safetensors header goes first with precomputed
 * offsets, then each tensor in chunks, so even the 16 GB llama3-8b preset never
 * holds more than one chunk in memory.  Every file is written to a temp name,
 * fsync'ed and renamed.
 */
#include "synth.h"
#include "rng.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "dtype.h"
#include "error.h"
#include "safetensors.h"

#define SYNTH_CHUNK 65536 /* elements generated per step */

/* ---- presets ------------------------------------------------------------------ */

static void base_llama(llmlab_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = LLMLAB_ARCH_LLAMA;
    snprintf(c->arch_name, sizeof c->arch_name, "LlamaForCausalLM");
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_kind = LLMLAB_ROPE_DEFAULT;
    c->bos_id = 1;
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    c->max_pos = 2048;
}

int llmlab_synth_preset(llmlab_synth_opts *o, const char *name) {
    memset(o, 0, sizeof *o);
    llmlab_config *c = &o->cfg;
    base_llama(c);
    o->n_shards = 1;
    if (!strcmp(name, "tiny")) {
        c->vocab_size = 512, c->dim = 64, c->n_layers = 2, c->n_heads = 4, c->n_kv_heads = 2;
        c->ffn_dim = 172;
        o->dtype = LLMLAB_DTYPE_F32;
    } else if (!strcmp(name, "tinyllama-1.1b")) {
        c->vocab_size = 32000, c->dim = 2048, c->n_layers = 22, c->n_heads = 32, c->n_kv_heads = 4;
        c->ffn_dim = 5632;
        o->dtype = LLMLAB_DTYPE_BF16;
    } else if (!strcmp(name, "llama3-8b")) {
        c->vocab_size = 128256, c->dim = 4096, c->n_layers = 32, c->n_heads = 32, c->n_kv_heads = 8;
        c->ffn_dim = 14336, c->max_pos = 8192, c->rope_theta = 500000.0f;
        c->rope_kind = LLMLAB_ROPE_LLAMA3, c->rope_factor = 8.0f, c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f, c->rope_orig_max_pos = 8192;
        c->bos_id = 128000, c->eos_ids[0] = 128001;
        o->dtype = LLMLAB_DTYPE_BF16;
    } else {
        return -1;
    }
    c->head_dim = c->dim / c->n_heads;
    c->torch_dtype = o->dtype;
    return 0;
}

uint64_t llmlab_synth_param_count(const llmlab_config *c) {
    uint64_t d = (uint64_t)c->dim, q = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    uint64_t kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim, f = (uint64_t)c->ffn_dim;
    uint64_t layer = 2 * d + 2 * q * d + 2 * kv * d + 3 * f * d + (c->qkv_bias ? q + 2 * kv : 0);
    uint64_t emb = (uint64_t)c->vocab_size * d;
    return emb + (uint64_t)c->n_layers * layer + d + (c->tie_embeddings ? 0 : emb);
}

/* ---- random numbers ------------------------------------------------------------------ */

typedef llmlab_rng rng_t;

/* The stream of one tensor: (seed, FNV-1a of its name) through the project's
 * seeding (core/rng.c), so every tensor is reproducible on its own. */
static void rng_seed(rng_t *r, uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    llmlab_rng_seed(r, seed * 0x9e3779b97f4a7c15ull ^ h, 0);
}

void llmlab_synth_stream_init(llmlab_synth_stream *s, uint64_t seed, const llmlab_synth_tensor *t) {
    rng_seed(&s->r, seed, t->name);
    s->norm = t->kind == LLMLAB_SYNTH_NORM;
    s->amp = t->std * 1.7320508f; /* uniform [-a, a) has std a/sqrt(3) */
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* Each value: u uniform in [-1, 1), exactly representable (the top 24 bits of
 * llmlab_rng_next, core/rng.c's xoshiro256**), then scaled.  The generator is
 * stepped here on locals: the state stays in registers instead of a call with
 * four loads and stores per value, several times faster, which matters for the
 * 8e9 values of the llama3-8b preset built in memory.  test_synth_model checks
 * the stream against llmlab_rng_next. */
void llmlab_synth_stream_next(llmlab_synth_stream *s, float *vals, size_t k) {
    uint64_t s0 = s->r.s[0], s1 = s->r.s[1], s2 = s->r.s[2], s3 = s->r.s[3];
    const float amp = s->amp;
    const int norm = s->norm;
    for (size_t i = 0; i < k; i++) {
        uint64_t out = rotl64(s1 * 5, 7) * 9, t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = rotl64(s3, 45);
        float u = (float)((int32_t)(out >> 40) - (1 << 23)) * (1.0f / 8388608.0f);
        vals[i] = norm ? 1.0f + 0.1f * u : amp * u;
    }
    s->r.s[0] = s0, s->r.s[1] = s1, s->r.s[2] = s2, s->r.s[3] = s3;
}

void llmlab_synth_encode(llmlab_dtype dt, const float *vals, void *out, size_t k) {
    if (dt == LLMLAB_DTYPE_F32) {
        if (out != (const void *)vals) memcpy(out, vals, k * sizeof *vals);
        return;
    }
    uint16_t *h = out;
    for (size_t i = 0; i < k; i++)
        h[i] = dt == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(vals[i]) : llmlab_f32_to_bf16(vals[i]);
}

/* ---- tensor plan ------------------------------------------------------------------------ */

typedef llmlab_synth_kind tkind;
typedef llmlab_synth_tensor tplan;
#define T_RANDOM LLMLAB_SYNTH_RANDOM
#define T_NORM LLMLAB_SYNTH_NORM

typedef struct {
    tplan *t;
    int n;
} plan_t;

static void plan_add(plan_t *p, const char *name, int64_t rows, int64_t cols, tkind kind, float std,
                     llmlab_dtype dt) {
    tplan *t = &p->t[p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->kind = kind;
    t->std = std;
    t->bytes = (uint64_t)rows * (uint64_t)(cols ? cols : 1) * llmlab_dtype_size(dt);
    t->shard = 0;
}

static void plan_layer(plan_t *p, const llmlab_config *c, int i, llmlab_dtype dt) {
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    float sd = 1.0f / sqrtf((float)d);
    char n[96];
#define LN(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", i, suffix), n)
    plan_add(p, LN("input_layernorm.weight"), d, 0, T_NORM, 0, dt);
    plan_add(p, LN("self_attn.q_proj.weight"), q, d, T_RANDOM, sd, dt);
    plan_add(p, LN("self_attn.k_proj.weight"), kv, d, T_RANDOM, sd, dt);
    plan_add(p, LN("self_attn.v_proj.weight"), kv, d, T_RANDOM, sd, dt);
    if (c->qkv_bias) {
        plan_add(p, LN("self_attn.q_proj.bias"), q, 0, T_RANDOM, 0.1f, dt);
        plan_add(p, LN("self_attn.k_proj.bias"), kv, 0, T_RANDOM, 0.1f, dt);
        plan_add(p, LN("self_attn.v_proj.bias"), kv, 0, T_RANDOM, 0.1f, dt);
    }
    plan_add(p, LN("self_attn.o_proj.weight"), d, q, T_RANDOM, 1.0f / sqrtf((float)q), dt);
    plan_add(p, LN("post_attention_layernorm.weight"), d, 0, T_NORM, 0, dt);
    plan_add(p, LN("mlp.gate_proj.weight"), c->ffn_dim, d, T_RANDOM, sd, dt);
    plan_add(p, LN("mlp.up_proj.weight"), c->ffn_dim, d, T_RANDOM, sd, dt);
    plan_add(p, LN("mlp.down_proj.weight"), d, c->ffn_dim, T_RANDOM, 1.0f / sqrtf((float)c->ffn_dim), dt);
#undef LN
}

static llmlab_status plan_build(plan_t *p, const llmlab_config *c, llmlab_dtype dt, llmlab_err *err) {
    int per_layer = 9 + (c->qkv_bias ? 3 : 0);
    int cap = 3 + c->n_layers * per_layer;
    p->n = 0;
    p->t = calloc((size_t)cap, sizeof *p->t);
    if (!p->t) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth: out of memory");
    float head_sd = 2.0f / sqrtf((float)c->dim);
    /* Tied: the embedding doubles as the LM head, so it takes the head's scale
     * (the first RMSNorm makes the input scale irrelevant). */
    plan_add(p, "model.embed_tokens.weight", c->vocab_size, c->dim, T_RANDOM,
             c->tie_embeddings ? head_sd : 1.0f, dt);
    for (int i = 0; i < c->n_layers; i++) plan_layer(p, c, i, dt);
    plan_add(p, "model.norm.weight", c->dim, 0, T_NORM, 0, dt);
    if (!c->tie_embeddings) plan_add(p, "lm_head.weight", c->vocab_size, c->dim, T_RANDOM, head_sd, dt);
    return LLMLAB_OK;
}

/* Random Medusa heads in Medusa's medusa_lm_head layout: per head one ResBlock
 * ("{h}.0.linear.weight" [dim][dim], "{h}.0.linear.bias" [dim]) and the vocabulary
 * projection "{h}.1.weight" [vocab][dim] at the LM head's scale. */
static llmlab_status plan_medusa(plan_t *p, const llmlab_config *c, int heads, llmlab_dtype dt, llmlab_err *err) {
    p->n = 0;
    p->t = calloc((size_t)heads * 3, sizeof *p->t);
    if (!p->t) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth: out of memory");
    char n[96];
    for (int h = 0; h < heads; h++) {
        snprintf(n, sizeof n, "%d.0.linear.weight", h);
        plan_add(p, n, c->dim, c->dim, T_RANDOM, 1.0f / sqrtf((float)c->dim), dt);
        snprintf(n, sizeof n, "%d.0.linear.bias", h);
        plan_add(p, n, c->dim, 0, T_RANDOM, 0.1f, dt);
        snprintf(n, sizeof n, "%d.1.weight", h);
        plan_add(p, n, c->vocab_size, c->dim, T_RANDOM, 2.0f / sqrtf((float)c->dim), dt);
    }
    return LLMLAB_OK;
}

/* Contiguous runs of tensors per shard, balanced by bytes, none empty. */
static void plan_shards(plan_t *p, int n_shards) {
    uint64_t total = 0, start = 0;
    for (int i = 0; i < p->n; i++) total += p->t[i].bytes;
    int prev = 0;
    for (int i = 0; i < p->n; i++) {
        int s = total ? (int)((double)start * n_shards / (double)total) : 0;
        if (s < prev) s = prev;
        if (s > prev + 1) s = prev + 1;
        if (n_shards - 1 - s > p->n - 1 - i) s = prev + 1; /* too few tensors left */
        if (s > n_shards - 1) s = n_shards - 1;
        if (i == 0) s = 0;
        p->t[i].shard = prev = s;
        start += p->t[i].bytes;
    }
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct {
    llmlab_dtype dtype;
    uint64_t seed;
    float *vals;
    unsigned char *bytes;
    uint64_t done, total;
    llmlab_synth_progress_fn progress;
    void *ud;
} gen_t;

static llmlab_status write_tensor(gen_t *g, llmlab_st_writer *w, const tplan *t, llmlab_err *err) {
    llmlab_synth_stream r;
    llmlab_synth_stream_init(&r, g->seed, t);
    uint64_t n = t->bytes / llmlab_dtype_size(g->dtype);
    for (uint64_t at = 0; at < n;) {
        size_t k = n - at < SYNTH_CHUNK ? (size_t)(n - at) : SYNTH_CHUNK;
        llmlab_synth_stream_next(&r, g->vals, k);
        llmlab_synth_encode(g->dtype, g->vals, g->bytes, k);
        size_t nb = k * llmlab_dtype_size(g->dtype);
        llmlab_status s = llmlab_st_writer_data(w, g->bytes, nb, err);
        if (s) return s;
        at += k;
    }
    g->done += t->bytes;
    if (g->progress) g->progress(g->ud, g->done, g->total);
    return LLMLAB_OK;
}

static llmlab_st_dtype st_dtype_of(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F16 ? LLMLAB_ST_F16 : t == LLMLAB_DTYPE_BF16 ? LLMLAB_ST_BF16 : LLMLAB_ST_F32;
}

static llmlab_status write_shard(gen_t *g, const plan_t *p, int shard, const char *path, llmlab_err *err) {
    llmlab_st_write_tensor *wt = calloc((size_t)p->n, sizeof *wt);
    if (!wt) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth: out of memory");
    int n = 0, first = -1;
    for (int i = 0; i < p->n; i++) {
        if (p->t[i].shard != shard) continue;
        if (first < 0) first = i;
        wt[n].name = p->t[i].name;
        wt[n].dtype = st_dtype_of(g->dtype);
        wt[n].ndim = p->t[i].ndim;
        wt[n].shape[0] = p->t[i].shape[0];
        wt[n].shape[1] = p->t[i].shape[1];
        n++;
    }
    llmlab_st_writer *w = NULL;
    llmlab_status s = llmlab_st_writer_open(&w, path, wt, n, err);
    free(wt);
    for (int i = first; i >= 0 && i < p->n && !s; i++)
        if (p->t[i].shard == shard) s = write_tensor(g, w, &p->t[i], err);
    if (s) {
        llmlab_st_writer_abort(w);
        return s;
    }
    return llmlab_st_writer_finish(w, err);
}

static llmlab_status write_text_atomic(const char *path, const char *text, llmlab_err *err) {
    size_t pl = strlen(path), n = strlen(text);
    char *tmp = malloc(pl + 5);
    if (!tmp) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    llmlab_status s = LLMLAB_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = llmlab_err_set(err, LLMLAB_EIO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    for (size_t off = 0; off < n && !s;) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) s = llmlab_err_set(err, LLMLAB_EIO, "%s: write failed: %s", tmp, strerror(errno));
        else off += (size_t)w;
    }
    if (!s && fsync(fd)) s = llmlab_err_set(err, LLMLAB_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) && !s) s = llmlab_err_set(err, LLMLAB_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path)) s = llmlab_err_set(err, LLMLAB_EIO, "rename %s: %s", path, strerror(errno));
    if (s) unlink(tmp);
    free(tmp);
    return s;
}

static llmlab_status make_dirs(const char *dir, llmlab_err *err) {
    char *p = strdup(dir);
    if (!p) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status s = LLMLAB_OK;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q) continue;
        char c = *q;
        *q = 0;
        if (mkdir(p, 0755) && errno != EEXIST) {
            s = llmlab_err_set(err, LLMLAB_EIO, "%s: cannot create directory: %s", p, strerror(errno));
            break;
        }
        *q = c;
        if (!c) break;
    }
    struct stat st;
    if (!s && (stat(dir, &st) || !S_ISDIR(st.st_mode)))
        s = llmlab_err_set(err, LLMLAB_EIO, "%s: not a directory", dir);
    free(p);
    return s;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

static void shard_name(char *buf, size_t cap, int k, int n) {
    snprintf(buf, cap, "model-%05d-of-%05d.safetensors", k + 1, n);
}

static llmlab_status write_index(const plan_t *p, int n_shards, const char *dir, llmlab_err *err) {
    uint64_t total = 0;
    for (int i = 0; i < p->n; i++) total += p->t[i].bytes;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    int ok = root && meta && wm && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (int i = 0; ok && i < p->n; i++) {
        char sn[64];
        shard_name(sn, sizeof sn, p->t[i].shard, n_shards);
        ok = cJSON_AddStringToObject(wm, p->t[i].name, sn) != NULL;
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    char *path = join(dir, "model.safetensors.index.json");
    llmlab_status s = !text || !path ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory")
                                     : write_text_atomic(path, text, err);
    cJSON_free(text);
    free(path);
    return s;
}

/* Writes the safetensors file(s); with shards, the index goes last (it names them)
 * and a stale single file is removed, and the other way round. */
static llmlab_status write_weights(gen_t *g, plan_t *p, int n_shards, const char *dir, llmlab_err *err) {
    char *single = join(dir, "model.safetensors"), *index = join(dir, "model.safetensors.index.json");
    llmlab_status s = !single || !index ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
    if (!s && n_shards == 1) {
        s = write_shard(g, p, 0, single, err);
        if (!s) unlink(index);
    }
    for (int k = 0; !s && n_shards > 1 && k < n_shards; k++) {
        char sn[64];
        shard_name(sn, sizeof sn, k, n_shards);
        char *sp = join(dir, sn);
        s = sp ? write_shard(g, p, k, sp, err) : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        free(sp);
    }
    if (!s && n_shards > 1) {
        s = write_index(p, n_shards, dir, err);
        if (!s) unlink(single);
    }
    free(single);
    free(index);
    return s;
}

/* The config as it will be written, validated by the same parser the loader uses. */
static llmlab_status synth_config(const llmlab_synth_opts *o, llmlab_config *c, char **json, llmlab_err *err) {
    *c = o->cfg;
    c->torch_dtype = o->dtype;
    if (c->qkv_bias) c->arch = LLMLAB_ARCH_QWEN2;
    if (c->arch == LLMLAB_ARCH_QWEN2) c->qkv_bias = 1;
    *json = llmlab_config_to_json(c);
    if (!*json) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth: out of memory");
    llmlab_config back;
    llmlab_status s = llmlab_config_parse(&back, *json, err);
    if (s) {
        llmlab_err_prefix(err, "synth: invalid model shape");
        free(*json);
        *json = NULL;
    }
    return s;
}

llmlab_status llmlab_synth_write_ex(const llmlab_synth_opts *o, const char *dir, llmlab_synth_progress_fn progress,
                                    void *ud, llmlab_err *err) {
    if (o->dtype != LLMLAB_DTYPE_F32 && o->dtype != LLMLAB_DTYPE_F16 && o->dtype != LLMLAB_DTYPE_BF16)
        return llmlab_err_set(err, LLMLAB_EINVAL, "synth: bad dtype %d", (int)o->dtype);
    llmlab_config c;
    char *json = NULL;
    llmlab_status s = synth_config(o, &c, &json, err);
    if (s) return s;
    plan_t p = {0}, mp = {0};
    s = plan_build(&p, &c, o->dtype, err);
    if (!s && (o->n_shards < 1 || o->n_shards > p.n || o->n_shards > 99999))
        s = llmlab_err_set(err, LLMLAB_EINVAL, "synth: %d shards for %d tensors", o->n_shards, p.n);
    if (!s && (o->medusa_heads < 0 || o->medusa_heads > 64))
        s = llmlab_err_set(err, LLMLAB_EINVAL, "synth: %d Medusa heads (0..64)", o->medusa_heads);
    if (!s && o->medusa_heads > 0) s = plan_medusa(&mp, &c, o->medusa_heads, o->dtype, err);
    if (!s) s = make_dirs(dir, err);
    char *cpath = s ? NULL : join(dir, "config.json");
    if (!s) s = cpath ? write_text_atomic(cpath, json, err) : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    gen_t g = {o->dtype, o->seed, NULL, NULL, 0, 0, progress, ud};
    if (!s) {
        plan_shards(&p, o->n_shards);
        for (int i = 0; i < p.n; i++) g.total += p.t[i].bytes;
        for (int i = 0; i < mp.n; i++) g.total += mp.t[i].bytes;
        g.vals = malloc(SYNTH_CHUNK * sizeof *g.vals);
        g.bytes = malloc(SYNTH_CHUNK * sizeof *g.vals);
        if (!g.vals || !g.bytes) s = llmlab_err_set(err, LLMLAB_ENOMEM, "synth: out of memory");
    }
    if (!s) s = write_weights(&g, &p, o->n_shards, dir, err);
    if (!s && mp.n) {
        char *mpath = join(dir, "medusa_lm_head.safetensors");
        s = mpath ? write_shard(&g, &mp, 0, mpath, err) : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        free(mpath);
    }
    free(mp.t);
    free(g.vals);
    free(g.bytes);
    free(cpath);
    free(p.t);
    free(json);
    return s;
}

llmlab_status llmlab_synth_plan(const llmlab_synth_opts *o, llmlab_config *cfg, char **json,
                                llmlab_synth_tensor **tensors, int *n, llmlab_err *err) {
    *tensors = NULL;
    *n = 0;
    *json = NULL;
    if (o->dtype != LLMLAB_DTYPE_F32 && o->dtype != LLMLAB_DTYPE_F16 && o->dtype != LLMLAB_DTYPE_BF16)
        return llmlab_err_set(err, LLMLAB_EINVAL, "synth: bad dtype %d", (int)o->dtype);
    llmlab_config c;
    llmlab_status s = synth_config(o, &c, json, err);
    /* the config as a loader parses it back from config.json */
    if (!s) s = llmlab_config_parse(cfg, *json, err);
    plan_t p = {0};
    if (!s) s = plan_build(&p, cfg, o->dtype, err);
    if (s) {
        free(*json);
        *json = NULL;
        return s;
    }
    *tensors = p.t;
    *n = p.n;
    return LLMLAB_OK;
}

llmlab_status llmlab_synth_write(const llmlab_synth_opts *opts, const char *dir, llmlab_err *err) {
    return llmlab_synth_write_ex(opts, dir, NULL, NULL, err);
}
