/* synth_model.c - a seeded random-weight model built in memory, no files.
 *
 * The model equals, bit for bit, what llmlab_synth_write writes and
 * llmlab_model_load reads back: the same config (parsed back from the same
 * config.json text), the same tensors and values (synth.c's plan and per-tensor
 * streams), norms and biases rounded through the storage dtype and widened to
 * f32 as the loader does, the same hash.  Benchmarks use it to run the 16 GB
 * llama3-8b preset without writing it to disk first.
 *
 * Memory: one 64-byte aligned arena holds every tensor as the safetensors file
 * would ([rows][cols] in the storage dtype, each tensor at a 64-byte boundary);
 * m->st lists them (names, shapes, pointers into the arena; no files), so code
 * that looks tensors up by name (llmlab_engine_model_tensor) works as on a loaded
 * model.  The arena is the model's single owned buffer (m->owned[0]), freed by
 * llmlab_model_free.
 *
 * Threads: one task per tensor, largest first, claimed dynamically from the
 * pool.  Each tensor's stream depends on (seed, its name) alone, so the values
 * do not depend on the thread count or on which thread made which tensor.  Why
 * not rows: a stream cannot jump ahead cheaply, and for llama3-8b the largest
 * tensor (the 0.5e9-weight embedding) is still no more than one thread's fair
 * share on 16 cores.
 */
#include "synth_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "threadpool.h"
#include "tokenizer.h"

#define ARENA_ALIGN 64
#define GEN_CHUNK 4096 /* f32 values generated per step for f16/bf16 tensors */

typedef struct {
    const llmlab_synth_tensor *t; /* [n] the plan */
    int n;
    int *order;                   /* [n] task -> tensor, largest first */
    unsigned char *arena;
    size_t *off;                  /* [n] byte offset of each tensor in the arena */
    llmlab_dtype dt;
    uint64_t seed;
} gen_job;

static void gen_task(void *ctx, int task, int n_tasks) {
    (void)n_tasks;
    const gen_job *j = ctx;
    int i = j->order[task];
    const llmlab_synth_tensor *t = &j->t[i];
    size_t es = llmlab_dtype_size(j->dt), n = (size_t)(t->bytes / es);
    unsigned char *dst = j->arena + j->off[i];
    llmlab_synth_stream s;
    llmlab_synth_stream_init(&s, j->seed, t);
    if (j->dt == LLMLAB_DTYPE_F32) { /* straight into place */
        llmlab_synth_stream_next(&s, (float *)(void *)dst, n);
        return;
    }
    float vals[GEN_CHUNK];
    for (size_t at = 0; at < n; at += GEN_CHUNK) {
        size_t k = n - at < GEN_CHUNK ? n - at : GEN_CHUNK;
        llmlab_synth_stream_next(&s, vals, k);
        llmlab_synth_encode(j->dt, vals, dst + at * es, k);
    }
}

/* Task order: largest tensor first, ties by plan index (an insertion sort: a few
 * hundred tensors, and qsort_r is not C11). */
static void sort_largest_first(int *order, int n, const llmlab_synth_tensor *t) {
    for (int i = 0; i < n; i++) {
        int k = i;
        while (k > 0 && t[order[k - 1]].bytes < t[i].bytes) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
    }
}

static llmlab_st_dtype st_dtype(llmlab_dtype dt) {
    return dt == LLMLAB_DTYPE_F16 ? LLMLAB_ST_F16 : dt == LLMLAB_DTYPE_BF16 ? LLMLAB_ST_BF16 : LLMLAB_ST_F32;
}

/* Allocates the arena and fills m->st with one entry per planned tensor. */
static llmlab_status make_arena(llmlab_model *m, gen_job *j, llmlab_err *err) {
    size_t total = 0;
    j->off = malloc((size_t)j->n * sizeof *j->off);
    j->order = malloc((size_t)j->n * sizeof *j->order);
    m->st.tensors = calloc((size_t)j->n, sizeof *m->st.tensors);
    m->owned = calloc(1, sizeof *m->owned);
    if (!j->off || !j->order || !m->st.tensors || !m->owned)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
    for (int i = 0; i < j->n; i++) {
        j->off[i] = total;
        total += ((size_t)j->t[i].bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    }
    j->arena = aligned_alloc(ARENA_ALIGN, total ? total : ARENA_ALIGN);
    if (!j->arena)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory for %.2f GB of weights", total / 1e9);
    m->owned[m->n_owned++] = j->arena;
    for (int i = 0; i < j->n; i++) {
        const llmlab_synth_tensor *t = &j->t[i];
        llmlab_st_tensor *x = &m->st.tensors[i];
        if (!(x->name = strdup(t->name))) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
        m->st.n_tensors = i + 1;
        x->dtype = st_dtype(j->dt);
        x->ndim = t->ndim;
        x->shape[0] = t->shape[0];
        x->shape[1] = t->shape[1];
        x->data = j->arena + j->off[i];
        x->nbytes = (size_t)t->bytes;
        x->file = -1; /* no file behind it */
    }
    return LLMLAB_OK;
}

/* ---- the model's views, as model.c's loader sets them ---------------------------- */

static llmlab_status view_mat(llmlab_model *m, const char *name, int64_t rows, int64_t cols, llmlab_mat *w,
                              llmlab_dtype dt, llmlab_err *err) {
    const llmlab_st_tensor *t = llmlab_st_find(&m->st, name);
    if (!t || t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return llmlab_err_set(err, LLMLAB_EINVAL, "synth model: tensor '%s' missing from the plan", name);
    *w = (llmlab_mat){.dtype = dt, .data = t->data, .rows = rows, .cols = cols};
    return LLMLAB_OK;
}

static llmlab_status view_vec(llmlab_model *m, const char *name, int64_t n, float **out, llmlab_dtype dt,
                              llmlab_err *err) {
    const llmlab_st_tensor *t = llmlab_st_find(&m->st, name);
    if (!t || t->ndim != 1 || t->shape[0] != n)
        return llmlab_err_set(err, LLMLAB_EINVAL, "synth model: tensor '%s' missing from the plan", name);
    if (!(*out = malloc((size_t)n * sizeof **out)))
        return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory for '%s'", name);
    llmlab_to_f32(*out, t->data, dt, (size_t)n); /* rounded through the storage dtype, as loaded */
    return LLMLAB_OK;
}

static llmlab_status view_layer(llmlab_model *m, int i, llmlab_dtype dt, llmlab_err *err) {
    const llmlab_config *c = &m->cfg;
    llmlab_layer *L = &m->layers[i];
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    char n[128];
    llmlab_status s = LLMLAB_OK;
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", i, suffix), n)
    if (!s) s = view_vec(m, NAME("input_layernorm.weight"), c->dim, &L->attn_norm, dt, err);
    if (!s) s = view_mat(m, NAME("self_attn.q_proj.weight"), q, c->dim, &L->wq, dt, err);
    if (!s) s = view_mat(m, NAME("self_attn.k_proj.weight"), kv, c->dim, &L->wk, dt, err);
    if (!s) s = view_mat(m, NAME("self_attn.v_proj.weight"), kv, c->dim, &L->wv, dt, err);
    if (!s && c->qkv_bias) s = view_vec(m, NAME("self_attn.q_proj.bias"), q, &L->bq, dt, err);
    if (!s && c->qkv_bias) s = view_vec(m, NAME("self_attn.k_proj.bias"), kv, &L->bk, dt, err);
    if (!s && c->qkv_bias) s = view_vec(m, NAME("self_attn.v_proj.bias"), kv, &L->bv, dt, err);
    if (!s) s = view_mat(m, NAME("self_attn.o_proj.weight"), c->dim, q, &L->wo, dt, err);
    if (!s) s = view_vec(m, NAME("post_attention_layernorm.weight"), c->dim, &L->ffn_norm, dt, err);
    if (!s) s = view_mat(m, NAME("mlp.gate_proj.weight"), c->ffn_dim, c->dim, &L->w_gate, dt, err);
    if (!s) s = view_mat(m, NAME("mlp.up_proj.weight"), c->ffn_dim, c->dim, &L->w_up, dt, err);
    if (!s) s = view_mat(m, NAME("mlp.down_proj.weight"), c->dim, c->ffn_dim, &L->w_down, dt, err);
#undef NAME
    return s;
}

static uint64_t mat_bytes(const llmlab_mat *w) {
    return (uint64_t)w->rows * (uint64_t)w->cols * llmlab_dtype_size(w->dtype);
}

static llmlab_status make_views(llmlab_model *m, llmlab_dtype dt, llmlab_err *err) {
    const llmlab_config *c = &m->cfg;
    llmlab_status s = view_mat(m, "model.embed_tokens.weight", c->vocab_size, c->dim, &m->embed, dt, err);
    if (!s && !(m->layers = calloc((size_t)c->n_layers, sizeof *m->layers)))
        s = llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
    if (s) return s;
    m->weight_bytes = mat_bytes(&m->embed);
    for (int i = 0; i < c->n_layers && !s; i++) {
        s = view_layer(m, i, dt, err);
        const llmlab_layer *L = &m->layers[i];
        if (!s)
            m->weight_bytes += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
                               mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
    }
    if (!s) s = view_vec(m, "model.norm.weight", c->dim, &m->final_norm, dt, err);
    if (s) return s;
    if (c->tie_embeddings) {
        m->lm_head = m->embed;
        return LLMLAB_OK;
    }
    s = view_mat(m, "lm_head.weight", c->vocab_size, c->dim, &m->lm_head, dt, err);
    if (!s) m->weight_bytes += mat_bytes(&m->lm_head);
    return s;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const llmlab_st_tensor *const *)a)->name, (*(const llmlab_st_tensor *const *)b)->name);
}

/* The hash the loader computes over the written files (model.c). */
static llmlab_status make_hash(llmlab_model *m, const char *json, llmlab_err *err) {
    int n = m->st.n_tensors;
    const llmlab_st_tensor **v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
    for (int i = 0; i < n; i++) v[i] = &m->st.tensors[i];
    qsort(v, (size_t)n, sizeof *v, cmp_tensor_name);
    uint64_t h = llmlab_model_hash_begin(json, strlen(json));
    for (int i = 0; i < n; i++)
        h = llmlab_model_hash_tensor(h, v[i]->name, llmlab_st_dtype_name(v[i]->dtype), v[i]->ndim, v[i]->shape,
                                     v[i]->data, v[i]->nbytes);
    free(v);
    snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)h);
    return LLMLAB_OK;
}

static llmlab_status check_opts(const llmlab_synth_opts *o, int n_threads, llmlab_err *err) {
    if (!o) return llmlab_err_set(err, LLMLAB_EINVAL, "synth model: no options");
    if (o->medusa_heads != 0)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED,
                              "synth model: medusa_heads = %d, but Medusa heads are only written to files "
                              "(llmlab_synth_write)", o->medusa_heads);
    if (n_threads < 0 || n_threads > 4096)
        return llmlab_err_set(err, LLMLAB_EINVAL, "synth model: n_threads = %d (0 = all cores, at most 4096)",
                              n_threads);
    return LLMLAB_OK;
}

/* Fills m (zeroed) from the plan. */
static llmlab_status build(llmlab_model *m, const llmlab_synth_opts *o, int n_threads, llmlab_err *err) {
    char *json = NULL;
    llmlab_synth_tensor *plan = NULL;
    int n = 0;
    llmlab_status s = llmlab_synth_plan(o, &m->cfg, &json, &plan, &n, err);
    gen_job j = {.t = plan, .n = n, .dt = o->dtype, .seed = o->seed};
    if (!s) s = make_arena(m, &j, err);
    if (!s) {
        llmlab_threadpool *tp = n_threads == 1 ? NULL : llmlab_threadpool_create(n_threads);
        if (n_threads != 1 && !tp) {
            s = llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: cannot start %d threads", n_threads);
        } else {
            sort_largest_first(j.order, n, plan);
            llmlab_threadpool_run(tp, gen_task, &j, n);
            llmlab_threadpool_free(tp);
        }
    }
    if (!s) s = make_views(m, o->dtype, err);
    if (!s && !(m->rope_inv_freq = malloc((size_t)(m->cfg.head_dim / 2) * sizeof *m->rope_inv_freq)))
        s = llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
    if (!s) llmlab_rope_inv_freq(&m->cfg, m->rope_inv_freq);
    if (!s) s = make_hash(m, json, err);
    if (!s) s = llmlab_tokenizer_bytes(&m->tok, err);
    free(j.off);
    free(j.order);
    free(plan);
    free(json);
    return s;
}

llmlab_status llmlab_synth_model(const llmlab_synth_opts *o, int n_threads, llmlab_model **out, llmlab_err *err) {
    *out = NULL;
    llmlab_status s = check_opts(o, n_threads, err);
    if (s) return s;
    llmlab_model *m = calloc(1, sizeof *m);
    char path[96];
    snprintf(path, sizeof path, "synth:seed=%llu,%s", (unsigned long long)o->seed, llmlab_dtype_name(o->dtype));
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "synth model: out of memory");
    }
    s = build(m, o, n_threads, err);
    if (s) {
        llmlab_model_free(m);
        return s;
    }
    *out = m;
    return LLMLAB_OK;
}
