/* engine_aux.c - what the host table gives plugins beyond the engine's own model:
 * auxiliary models (speculative drafts, layer-skipping self drafts) and reading
 * extra safetensors files (Medusa heads).
 *
 * An aux is a model (loaded from a directory, or the engine's own weights) with
 * its own llmlab_ctx: its own paged KV cache, indexed by the engine's KV sequence
 * ids, so a draft's cache lives and dies with the engine sequence it shadows. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "error.h"

struct llmlab_aux {
    llmlab_engine *e;
    llmlab_model *own;        /* loaded by aux_open, or NULL when sharing e->m */
    const llmlab_model *m;
    llmlab_ctx *ctx;
    llmlab_batch *b;
};

/* Opens the aux and registers it with the engine, which frees its per-sequence
 * caches and closes it with the engine. */
llmlab_status llmlab_aux_open(llmlab_engine *e, const char *model, const int *skip, int n_skip,
                              llmlab_aux **out, llmlab_err *err) {
    *out = NULL;
    if (e->n_aux == LLMLAB_MAX_AUX)
        return llmlab_err_set(err, LLMLAB_EINVAL, "at most %d auxiliary models per engine", LLMLAB_MAX_AUX);
    if (!model || !model[0]) return llmlab_err_set(err, LLMLAB_EINVAL, "auxiliary model: no model given");
    llmlab_aux *a = calloc(1, sizeof *a);
    if (!a) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    a->e = e;
    llmlab_status st = LLMLAB_OK;
    if (!strcmp(model, "self")) a->m = e->m;
    else if (!(st = llmlab_model_load(&a->own, model, err))) a->m = a->own;
    if (!st && a->m->cfg.vocab_size != e->m->cfg.vocab_size)
        st = llmlab_err_set(err, LLMLAB_EINVAL,
                            "draft model '%s' has a vocabulary of %d tokens but the target has %d: "
                            "draft and target must share one tokenizer",
                            model, a->m->cfg.vocab_size, e->m->cfg.vocab_size);
    llmlab_ctx_opts co = {.n_threads = llmlab_threadpool_size(llmlab_ctx_pool(e->ctx)),
                          .kv_block_size = e->kv_block_size, .kv_tokens = e->kv_tokens,
                          .max_seqs = e->max_seqs, .max_batch = e->token_budget};
    if (!st) st = llmlab_ctx_create(&a->ctx, a->m, &co, err);
    if (!st && n_skip > 0) st = llmlab_ctx_set_skip(a->ctx, skip, n_skip, err);
    /* The engine's own weights go through its quant plugin, so "self" is the target. */
    if (!st && a->m == e->m) llmlab_engine_route_linear(e, a->ctx);
    if (!st && !(a->b = llmlab_batch_create(e->token_budget)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (st) {
        llmlab_aux_close(a);
        return llmlab_err_prefix(err, "auxiliary model '%s'", model);
    }
    e->aux[e->n_aux++] = a;
    *out = a;
    return LLMLAB_OK;
}

static void aux_destroy(llmlab_aux *a) {
    llmlab_batch_free(a->b);
    llmlab_ctx_free(a->ctx);
    llmlab_model_free(a->own);
    free(a);
}

void llmlab_aux_close(llmlab_aux *a) {
    if (!a) return;
    llmlab_engine *e = a->e;
    for (int i = 0; i < e->n_aux; i++)
        if (e->aux[i] == a) {
            e->aux[i] = e->aux[--e->n_aux];
            break;
        }
    aux_destroy(a);
}

int llmlab_aux_vocab(const llmlab_aux *a) { return a->m->cfg.vocab_size; }
int llmlab_aux_layers(const llmlab_aux *a) { return a->m->cfg.n_layers; }

static int seq_kv(const llmlab_seq *s) { return s->kv; }

/* One chunk of at most the batch capacity; rows go to logits in order. */
static llmlab_status aux_forward_chunk(llmlab_aux *a, const llmlab_aux_token *t, int n, float *logits, int *rows,
                                       llmlab_err *err) {
    llmlab_batch_clear(a->b);
    for (int i = 0; i < n; i++) {
        if (seq_kv(t[i].seq) < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "auxiliary forward for a sequence that is not running");
        llmlab_batch_add(a->b, t[i].token, seq_kv(t[i].seq), t[i].pos, t[i].logits ? LLMLAB_TOK_LOGITS : 0, -1);
    }
    const llmlab_outputs *o;
    llmlab_status st = llmlab_forward(a->ctx, a->b, &o, err);
    if (st) return llmlab_err_prefix(err, "auxiliary model forward");
    llmlab_kv *kv = llmlab_ctx_kv(a->ctx);
    for (int i = 0; i < n; i++) llmlab_kv_commit(kv, seq_kv(t[i].seq));
    size_t V = (size_t)a->m->cfg.vocab_size;
    if (logits) memcpy(logits + (size_t)*rows * V, o->logits, (size_t)o->n_out * V * sizeof(float));
    *rows += o->n_out;
    return LLMLAB_OK;
}

/* Splits calls larger than the batch capacity into chunks run in order: a
 * sequence's later tokens then see its earlier ones through the cache. */
llmlab_status llmlab_aux_forward(llmlab_aux *a, const llmlab_aux_token *t, int n, float *logits,
                                 llmlab_err *err) {
    int rows = 0;
    for (int done = 0; done < n;) {
        int chunk = n - done < a->b->cap ? n - done : a->b->cap;
        llmlab_status st = aux_forward_chunk(a, t + done, chunk, logits, &rows, err);
        if (st) return st;
        done += chunk;
    }
    return LLMLAB_OK;
}

int llmlab_aux_kv_len(const llmlab_aux *a, const llmlab_seq *s) {
    return s->kv < 0 ? 0 : llmlab_kv_len(llmlab_ctx_kv(a->ctx), s->kv);
}

void llmlab_aux_kv_truncate(llmlab_aux *a, const llmlab_seq *s, int len) {
    if (s->kv >= 0) llmlab_kv_truncate(llmlab_ctx_kv(a->ctx), s->kv, len, NULL);
}

/* Called by the engine when a sequence releases its KV (finish, preemption). */
void llmlab_aux_release_seq(llmlab_engine *e, int kv_seq) {
    for (int i = 0; i < e->n_aux; i++) llmlab_kv_free_seq(llmlab_ctx_kv(e->aux[i]->ctx), kv_seq);
}

void llmlab_aux_close_all(llmlab_engine *e) {
    while (e->n_aux > 0) llmlab_aux_close(e->aux[e->n_aux - 1]);
}

/* ---- safetensors files for plugins --------------------------------------------------- */

struct llmlab_tensors {
    llmlab_st_set set;
};

llmlab_status llmlab_tensors_open(const char *path, llmlab_tensors **out, llmlab_err *err) {
    *out = NULL;
    llmlab_tensors *t = calloc(1, sizeof *t);
    if (!t) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status st = llmlab_st_open_file(&t->set, path, err);
    if (st) {
        free(t);
        return st;
    }
    *out = t;
    return LLMLAB_OK;
}

void llmlab_tensors_close(llmlab_tensors *t) {
    if (!t) return;
    llmlab_st_close(&t->set);
    free(t);
}

/* A tensor of a set as the ABI describes it: f32/f16/bf16 only (others read as absent). */
static const void *tensor_view(const llmlab_st_set *set, const char *name, llmlab_dtype *dtype, int64_t shape[4],
                               int *ndim) {
    const llmlab_st_tensor *x = llmlab_st_find(set, name);
    if (!x || x->ndim > 4) return NULL;
    switch (x->dtype) {
    case LLMLAB_ST_F32: *dtype = LLMLAB_DTYPE_F32; break;
    case LLMLAB_ST_F16: *dtype = LLMLAB_DTYPE_F16; break;
    case LLMLAB_ST_BF16: *dtype = LLMLAB_DTYPE_BF16; break;
    default: return NULL;
    }
    *ndim = x->ndim;
    for (int i = 0; i < 4; i++) shape[i] = i < x->ndim ? x->shape[i] : 1;
    return x->data;
}

const void *llmlab_tensors_get(const llmlab_tensors *t, const char *name, llmlab_dtype *dtype, int64_t shape[4],
                               int *ndim) {
    return tensor_view(&t->set, name, dtype, shape, ndim);
}

const void *llmlab_engine_model_tensor(const llmlab_engine *e, const char *name, llmlab_dtype *dtype,
                                       int64_t shape[4], int *ndim) {
    if (!strcmp(name, "lm_head.weight")) { /* tied models have no such tensor: give the matrix used */
        const llmlab_mat *w = &e->m->lm_head;
        *dtype = w->dtype;
        *ndim = 2;
        shape[0] = w->rows, shape[1] = w->cols, shape[2] = shape[3] = 1;
        return w->data;
    }
    return tensor_view(&e->m->st, name, dtype, shape, ndim);
}
