/* engine.c - the iteration loop that runs requests through the four plugin kinds.
 *
 * Sections: plugin instances; the host function table; sequences and steps;
 * the run loop; results. */
#include "engine.h"
#include "engine_internal.h"
#include "serve.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "generate.h"
#include "kernels/cpu/kernels.h"
#include "weights.h"

/* ---- host function table ------------------------------------------------------------- */

static void host_log(int level, const char *plugin, const char *fmt, ...) {
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level > LLMLAB_LOG_INFO && !getenv("LLMLAB_DEBUG")) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llmlab [%s] %s: ", plugin ? plugin : "?", names[level & 3]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *host_alloc(size_t n) { return calloc(1, n ? n : 1); }
static void host_free(void *p) { free(p); }
static int host_vocab(const llmlab_engine *e) { return e->m->cfg.vocab_size; }
static int host_dim(const llmlab_engine *e) { return e->m->cfg.dim; }
static int host_layers(const llmlab_engine *e) { return e->m->cfg.n_layers; }
static int host_is_eos(const llmlab_engine *e, int32_t t) { return llmlab_config_is_eos(&e->m->cfg, t); }
static llmlab_threadpool *host_pool(llmlab_engine *e) { return llmlab_ctx_pool(e->ctx); }
static int host_seq_id(const llmlab_seq *s) { return s->id; }
static int host_seq_len(const llmlab_seq *s) { return s->len; }
static const int32_t *host_seq_tokens(const llmlab_seq *s) { return s->tokens; }
static int host_seq_prompt_len(const llmlab_seq *s) { return s->prompt_len; }
static int host_seq_remaining(const llmlab_seq *s) { return s->max_new - s->generated; }

/* Tokens whose KV the sequence has computed (the next position), evicted ones included. */
static int host_seq_kv_len(const llmlab_seq *s) {
    return s->kv < 0 ? 0 : llmlab_kv_tokens(llmlab_ctx_kv(s->e->ctx), s->kv);
}

static int32_t host_seq_sample(llmlab_seq *s, const float *logits) {
    int V = s->e->m->cfg.vocab_size;
    if (s->samp.temperature == 0.0f) return llmlab_argmax(logits, V);
    float *probs = malloc((size_t)V * sizeof *probs);
    int *work = malloc((size_t)V * sizeof *work);
    int32_t t = (probs && work) ? llmlab_sample(logits, V, &s->samp, &s->rng, probs, work)
                                : llmlab_argmax(logits, V);
    free(probs);
    free(work);
    return t;
}

static uint64_t host_seq_rng(llmlab_seq *s) { return llmlab_rng_next(&s->rng); }

static void host_seq_probs(const llmlab_seq *s, const float *logits, float *probs) {
    int V = s->e->m->cfg.vocab_size;
    int *work = malloc((size_t)V * sizeof *work);
    if (work) llmlab_sampling_probs(probs, logits, V, &s->samp, work);
    else { /* out of memory: the greedy distribution keeps lossless methods lossless */
        memset(probs, 0, (size_t)V * sizeof *probs);
        probs[llmlab_argmax(logits, V)] = 1.0f;
    }
    free(work);
}

static int host_seq_greedy(const llmlab_seq *s) { return s->samp.temperature == 0.0f; }

int llmlab_grow_columns(void **cols[], const size_t *elem_size, int n_cols, int new_cap) {
    int ok = 1;
    for (int c = 0; c < n_cols; c++) {
        void *g = realloc(*cols[c], (size_t)new_cap * elem_size[c]);
        if (g) *cols[c] = g; /* grown columns stay valid even if a later one fails */
        else ok = 0;
    }
    return ok ? 0 : -1;
}

void llmlab_engine_log_token(llmlab_engine *e, const llmlab_seq *s, int32_t tok, double t) {
    token_log *L = &e->toks;
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 1024;
        void **cols[] = {(void **)&L->req, (void **)&L->index, (void **)&L->tok, (void **)&L->t};
        const size_t sizes[] = {sizeof *L->req, sizeof *L->index, sizeof *L->tok, sizeof *L->t};
        if (llmlab_grow_columns(cols, sizes, 4, cap)) return; /* metrics only: generation goes on */
        L->cap = cap;
    }
    L->req[L->n] = s->id;
    L->index[L->n] = s->generated - 1;
    L->tok[L->n] = tok;
    L->t[L->n] = t;
    L->n++;
}

static llmlab_status host_seq_accept(llmlab_seq *s, const int32_t *tokens, int n, llmlab_err *err) {
    double t = llmlab_now() - s->e->t0;
    for (int i = 0; i < n && s->state != LLMLAB_REQ_FINISHED; i++) {
        if (tokens[i] < 0 || tokens[i] >= s->e->m->cfg.vocab_size)
            return llmlab_err_set(err, LLMLAB_EINVAL, "decoding plugin accepted token %d outside the vocabulary",
                                  tokens[i]);
        if (s->len == s->cap) {
            int32_t *g = realloc(s->tokens, (size_t)(s->cap * 2) * sizeof *g);
            if (!g) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
            s->tokens = g;
            s->cap *= 2;
        }
        s->tokens[s->len++] = tokens[i];
        s->generated++;
        if (s->generated == 1) s->first_s = t;
        llmlab_engine_log_token(s->e, s, tokens[i], t);
        if (s->generated >= s->max_new || (s->stop_eos && llmlab_config_is_eos(&s->e->m->cfg, tokens[i])))
            s->state = LLMLAB_REQ_FINISHED;
    }
    return LLMLAB_OK;
}

static llmlab_status host_seq_evict(llmlab_seq *s, const int *slots, int n, llmlab_err *err) {
    return llmlab_kv_evict(llmlab_ctx_kv(s->e->ctx), s->kv, slots, n, err);
}

/* Committed slots only: after compaction there are fewer of them than seq_kv_len. */
static int host_slot_valid(const llmlab_seq *s, int slot) {
    const llmlab_kv *kv = llmlab_ctx_kv(s->e->ctx);
    return s->kv >= 0 && slot >= 0 && slot < llmlab_kv_committed(kv, s->kv) && llmlab_kv_slot_valid(kv, s->kv, slot);
}

static int32_t host_slot_pos(const llmlab_seq *s, int slot) {
    const llmlab_kv *kv = llmlab_ctx_kv(s->e->ctx);
    if (s->kv < 0 || slot < 0 || slot >= llmlab_kv_committed(kv, s->kv)) return -1;
    return llmlab_kv_slot_pos(kv, s->kv, slot);
}

static int host_step_add(llmlab_step *st, llmlab_seq *s, int32_t token, int32_t pos, int flags, int parent) {
    int i = llmlab_batch_add(st->b, token, s->kv, pos, (uint8_t)flags, parent);
    s->e->step = st;
    if (i >= 0 && s->e->mass_on) st->b->mass_mode[i] = (uint8_t)llmlab_engine_mass_mode(s, pos);
    if (i >= 0) {
        st->owner[i] = s;
        st->masked[i] = 0; /* a fresh token keeps its parent chain until step_see says otherwise */
    }
    return i;
}

static void host_step_set_tree(llmlab_step *st) {
    if (st->b->vis == LLMLAB_VIS_CAUSAL) st->b->vis = LLMLAB_VIS_TREE; /* a mask already covers trees */
}

static void host_step_see(llmlab_step *st, int i, int j) {
    if (i < 0 || i >= st->b->n || j < 0 || j > i || st->owner[i] != st->owner[j]) return;
    st->b->vis = LLMLAB_VIS_MASK;
    st->masked[i] = 1;
    llmlab_batch_see(st->b, i, j);
}

static void host_want_hidden(llmlab_engine *e) { e->want_hidden = 1; }

static const float *host_step_logits(const llmlab_step *st, int i) {
    if (!st->out || i < 0 || i >= st->b->n || st->row[i] < 0 || !(st->b->flags[i] & LLMLAB_TOK_LOGITS)) return NULL;
    return st->out->logits + (size_t)st->row[i] * (size_t)st->e->m->cfg.vocab_size;
}

static const float *host_step_hidden(const llmlab_step *st, int i) {
    if (!st->out || i < 0 || i >= st->b->n || st->row[i] < 0 || !(st->b->flags[i] & LLMLAB_TOK_HIDDEN)) return NULL;
    return st->out->hidden + (size_t)st->row[i] * (size_t)st->e->m->cfg.dim;
}

/* Committed slots keep their cache index; provisional ones are numbered from
 * seq_kv_len, so `slot >= seq_kv_len` still tells them apart once compaction
 * has made the cache shorter than the token count. */
static int host_step_slot(const llmlab_step *st, int i) {
    if (!st->out || i < 0 || i >= st->b->n) return -1;
    const llmlab_kv *kv = llmlab_ctx_kv(st->e->ctx);
    int seq = st->b->seq[i], row = st->out->slot[i];
    return row >= llmlab_kv_committed(kv, seq) ? row + kv->seqs[seq].shift : row;
}

static int host_step_rows(const llmlab_step *st, const llmlab_seq *s, int *idx, int cap) {
    int n = 0;
    for (int i = 0; i < st->b->n; i++)
        if (st->owner[i] == s) {
            if (n < cap) idx[n] = i;
            n++;
        }
    return n;
}

/* Named per-request counters (e.g. "drafted", "accepted"): summed per request and
 * written as requests-table columns "m_<name>".  Past LLMLAB_MAX_METRICS names,
 * further names are reported once and dropped. */
static void host_metric_add(llmlab_seq *s, const char *name, double v) {
    llmlab_engine *e = s->e;
    int i = 0;
    while (i < e->n_metrics && strcmp(e->metric_names[i], name)) i++;
    if (i == e->n_metrics) {
        if (e->n_metrics == LLMLAB_MAX_METRICS || !name[0] || strlen(name) >= sizeof e->metric_names[0]) {
            host_log(LLMLAB_LOG_WARN, NULL, "metric '%s' dropped (at most %d names of < 48 bytes)", name,
                     LLMLAB_MAX_METRICS);
            return;
        }
        snprintf(e->metric_names[e->n_metrics++], sizeof e->metric_names[0], "%s", name);
    }
    s->metrics[i] += v;
    e->step_metrics[i] += v;
}

static void host_set_sampling(llmlab_engine *e, float t, int k, float p, float minp) {
    e->samp = (llmlab_sampling){t, k, p, minp};
}

static const llmlab_host host_table = {
    .size = sizeof(llmlab_host),
    .abi_major = LLMLAB_ABI_MAJOR,
    .abi_minor = LLMLAB_ABI_MINOR,
    .log = host_log,
    .alloc = host_alloc,
    .free = host_free,
    .param_int = llmlab_params_int,
    .param_float = llmlab_params_float,
    .param_bool = llmlab_params_bool,
    .param_string = llmlab_params_string,
    .model_vocab = host_vocab,
    .model_dim = host_dim,
    .model_layers = host_layers,
    .model_is_eos = host_is_eos,
    .engine_pool = host_pool,
    .seq_id = host_seq_id,
    .seq_len = host_seq_len,
    .seq_tokens = host_seq_tokens,
    .seq_prompt_len = host_seq_prompt_len,
    .seq_remaining = host_seq_remaining,
    .seq_kv_len = host_seq_kv_len,
    .seq_sample = host_seq_sample,
    .seq_rng_next = host_seq_rng,
    .seq_accept = host_seq_accept,
    .seq_kv_keep = llmlab_engine_seq_keep,
    .seq_kv_evict = host_seq_evict,
    .seq_kv_slot_valid = host_slot_valid,
    .seq_kv_slot_pos = host_slot_pos,
    .step_add = host_step_add,
    .step_set_tree = host_step_set_tree,
    .step_logits = host_step_logits,
    .step_hidden = host_step_hidden,
    .step_slot = host_step_slot,
    .step_rows = host_step_rows,
    .metric_add = host_metric_add,
    .matmul_dense = llmlab_cpu_matmul,
    .engine_set_sampling = host_set_sampling,
    /* ABI 1.1 */
    .seq_probs = host_seq_probs,
    .seq_greedy = host_seq_greedy,
    .step_see = host_step_see,
    .engine_want_hidden = host_want_hidden,
    .aux_open = llmlab_aux_open,
    .aux_close = llmlab_aux_close,
    .aux_vocab = llmlab_aux_vocab,
    .aux_layers = llmlab_aux_layers,
    .aux_forward = llmlab_aux_forward,
    .aux_kv_len = llmlab_aux_kv_len,
    .aux_kv_truncate = llmlab_aux_kv_truncate,
    .tensors_open = llmlab_tensors_open,
    .tensors_get = llmlab_tensors_get,
    .tensors_close = llmlab_tensors_close,
    .model_tensor = llmlab_engine_model_tensor,
    /* ABI 1.2 */
    .engine_set_pattern = llmlab_engine_set_pattern,
    .engine_want_mass = llmlab_engine_want_mass,
    .kv_lanes = llmlab_engine_kv_lanes,
    .model_kv_heads = llmlab_engine_kv_heads,
    .seq_kv_lane = llmlab_engine_seq_lane,
    .seq_kv_evict_lane = llmlab_engine_seq_evict_lane,
    .seq_set_evict_rule = llmlab_engine_seq_set_rule,
    .seq_kv_enforce = llmlab_engine_seq_enforce,
    .engine_set_kv_format = llmlab_engine_set_kv_format, /* ABI 1.3 (engine_kv.c) */
    /* ABI 1.3: calibration (engine_calib.c) */
    .engine_want_calibration = llmlab_engine_want_calibration,
    .calibration_inputs = llmlab_engine_calibration_inputs,
    .weight_rows = llmlab_weight_rows, /* weights.c */
};

const llmlab_host *llmlab_host_table(void) { return &host_table; }

/* ---- plugin instances ---------------------------------------------------------------- */

/* Every kind's ops table begins with llmlab_ops_head (plugin.h), so create and
 * destroy are reached the same way for all four kinds. */
static const llmlab_ops_head *ops_head(const llmlab_plugin_desc *d) { return d->ops; }

static void plugin_destroy(plugin_inst *pi) {
    if (!pi->d) return;
    ops_head(pi->d)->destroy(pi->self);
    pi->self = NULL;
}

/* Finds the plugin, validates its values, and creates an instance. */
static llmlab_status plugin_open(llmlab_engine *e, plugin_inst *pi, llmlab_plugin_kind kind,
                                 const llmlab_plugin_choice *c, const char *baseline, llmlab_err *err) {
    const char *name = c->name ? c->name : baseline;
    pi->d = llmlab_registry_find(e->reg, kind, name);
    if (!pi->d) {
        char known[512] = "";
        for (int i = 0; i < llmlab_registry_count(e->reg); i++) {
            const llmlab_plugin_desc *d = llmlab_registry_get(e->reg, i)->desc;
            if (d->kind == kind) snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", d->name);
        }
        return llmlab_err_set(err, LLMLAB_EINVAL, "no %s plugin named '%s' (registered: %s)",
                              llmlab_plugin_kind_name(kind), name, known);
    }
    llmlab_status st = llmlab_params_create(&pi->p, pi->d, c->values, c->n_values, err);
    if (st) return st;
    st = ops_head(pi->d)->create(&pi->self, &host_table, e, pi->p, err);
    if (st) {
        if (err && !err->msg[0]) llmlab_err_set(err, st, "%s", llmlab_status_name(st));
        llmlab_err_prefix(err, "%s plugin '%s': create failed", llmlab_plugin_kind_name(kind), name);
        pi->d = NULL; /* nothing to destroy */
    }
    return st;
}

/* ---- quantized weights ----------------------------------------------------------------- */

static void quant_linear(void *user, int matrix, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_engine *e = user;
    ((const llmlab_quant_ops *)e->quant.d->ops)->matmul(e->quant.self, e->packed[matrix], y, x, M, pool);
}

void llmlab_engine_matrix_name(const llmlab_model *m, int idx, char *buf, size_t cap) {
    static const char *names[LLMLAB_MATS_PER_LAYER] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                       "mlp.down_proj"};
    if (idx / LLMLAB_MATS_PER_LAYER >= m->cfg.n_layers) snprintf(buf, cap, "lm_head.weight");
    else snprintf(buf, cap, "model.layers.%d.%s.weight", idx / LLMLAB_MATS_PER_LAYER, names[idx % LLMLAB_MATS_PER_LAYER]);
}

static llmlab_status pack_weights(llmlab_engine *e, llmlab_err *err) {
    const llmlab_quant_ops *q = e->quant.d->ops;
    e->n_mats = e->m->cfg.n_layers * LLMLAB_MATS_PER_LAYER + 1;
    e->packed = calloc((size_t)e->n_mats, sizeof *e->packed);
    e->mat_bits = calloc((size_t)e->n_mats, sizeof *e->mat_bits);
    if (!e->packed || !e->mat_bits) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    double bits = 0, weights = 0;
    for (int i = 0; i < e->n_mats; i++) {
        const llmlab_mat *w = llmlab_model_matrix(e->m, i);
        char name[128];
        llmlab_engine_matrix_name(e->m, i, name, sizeof name);
        llmlab_weight wt = {sizeof wt, name, w->dtype, w->data, w->rows, w->cols};
        double b = 0;
        llmlab_status st = q->pack(e->quant.self, &wt, &e->packed[i], &b, err);
        if (st) return llmlab_err_prefix(err, "quant plugin '%s': packing %s", e->quant.d->name, name);
        e->mat_bits[i] = b;
        bits += b * (double)w->rows * (double)w->cols;
        weights += (double)w->rows * (double)w->cols;
    }
    e->bits_per_weight = bits / weights;
    llmlab_engine_route_linear(e, e->ctx);
    return LLMLAB_OK;
}

void llmlab_engine_route_linear(llmlab_engine *e, llmlab_ctx *ctx) {
    /* On the GPU the built-in `none` is the device's own dense path (its CPU
     * kernel would read host weights); any other quant plugin stays routed, and
     * the CUDA forward refuses it with a message (docs/cuda.md). */
    if (llmlab_ctx_model(ctx)->backend == LLMLAB_BACKEND_CUDA && !strcmp(e->quant.d->name, "none")) return;
    llmlab_ctx_set_linear(ctx, quant_linear, e);
}

/* The decoding plugin's most tokens per sequence and step (ABI 1.1 field). */
static llmlab_status read_decode_tokens(llmlab_engine *e, llmlab_err *err) {
    const llmlab_decoding_ops *d = e->dec.d->ops;
    e->decode_tokens = 1;
    if (d->size >= offsetof(llmlab_decoding_ops, max_step_tokens) + sizeof d->max_step_tokens && d->max_step_tokens)
        e->decode_tokens = d->max_step_tokens(e->dec.self);
    if (e->decode_tokens < 1 || e->decode_tokens > e->token_budget)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "decoding plugin '%s' forwards up to %d tokens per sequence and step, but the token "
                              "budget is %d: raise token_budget or lower the plugin's draft/tree size",
                              e->dec.d->name, e->decode_tokens, e->token_budget);
    return LLMLAB_OK;
}

/* ---- engine lifecycle --------------------------------------------------------------------- */

llmlab_status llmlab_engine_create(llmlab_engine **out, const llmlab_model *m, const llmlab_engine_opts *o,
                                   llmlab_err *err) {
    *out = NULL;
    llmlab_engine *e = calloc(1, sizeof *e);
    if (!e) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    e->m = m;
    e->reg = o->registry;
    e->seed = o->seed;
    e->samp = LLMLAB_SAMPLING_GREEDY;
    e->max_seqs = o->max_seqs > 0 ? o->max_seqs : 64;
    e->token_budget = o->token_budget > 0 ? o->token_budget : 512;
    e->kv_tokens = o->kv_tokens;
    e->kv_block_size = o->kv_block_size;
    e->on_finish = o->on_finish;
    e->on_finish_user = o->on_finish_user;
    llmlab_ctx_opts co = {.n_threads = o->n_threads, .kv_block_size = o->kv_block_size,
                          .kv_tokens = o->kv_tokens, .max_seqs = e->max_seqs, .max_batch = e->token_budget};
    llmlab_status st = llmlab_ctx_create(&e->ctx, m, &co, err);
    if (!st && !(e->kv_busy = calloc((size_t)e->max_seqs, 1))) st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    if (!st) st = llmlab_engine_check_kv_choices(e, o, err);
    if (!st && o->kv_quant.name) { /* first: its format rebuilds the (still empty) KV pool */
        e->kv_fmt_open = 1;
        st = plugin_open(e, &e->kvq, LLMLAB_PLUGIN_QUANT, &o->kv_quant, NULL, err);
        e->kv_fmt_open = 0;
        if (!st) st = llmlab_engine_kv_format_done(e, err);
    }
    if (!st) st = plugin_open(e, &e->quant, LLMLAB_PLUGIN_QUANT, &o->quant, "none", err);
    if (!st) st = llmlab_engine_calibrate(e, err); /* the quant plugin asked for it in create */
    if (!st) st = pack_weights(e, err);
    llmlab_engine_calibration_done(e);
    if (!st) st = plugin_open(e, &e->dec, LLMLAB_PLUGIN_DECODING, &o->decoding, "autoregressive", err);
    if (!st) st = read_decode_tokens(e, err);
    if (!st) st = plugin_open(e, &e->att, LLMLAB_PLUGIN_ATTENTION, &o->attention, "dense", err);
    /* The scheduler is validated now and instantiated per run (it keeps per-run state). */
    if (!st) st = plugin_open(e, &e->sched, LLMLAB_PLUGIN_SCHED, &o->sched, "fcfs", err);
    if (!st) plugin_destroy(&e->sched);
    if (!st) st = llmlab_serve_configure(e, o, err); /* watermark, swap space, preempt_mode */
    if (st) {
        llmlab_engine_free(e);
        return st;
    }
    *out = e;
    return LLMLAB_OK;
}

void llmlab_engine_free(llmlab_engine *e) {
    if (!e) return;
    plugin_destroy(&e->dec);
    plugin_destroy(&e->att);
    llmlab_aux_close_all(e); /* after the plugins: they may close their own in destroy */
    plugin_destroy(&e->sched);
    if (e->packed && e->quant.d)
        for (int i = 0; i < e->n_mats; i++)
            if (e->packed[i]) ((const llmlab_quant_ops *)e->quant.d->ops)->unpack(e->quant.self, e->packed[i]);
    plugin_destroy(&e->quant);
    plugin_destroy(&e->kvq);
    llmlab_params_free(e->kvq.p);
    llmlab_engine_calibration_done(e);
    llmlab_params_free(e->dec.p);
    llmlab_params_free(e->att.p);
    llmlab_params_free(e->quant.p);
    llmlab_params_free(e->sched.p);
    free(e->packed);
    free(e->mat_bits);
    free(e->kv_busy);
    llmlab_ctx_free(e->ctx);
    free(e);
}

static const plugin_inst *inst_of(const llmlab_engine *e, llmlab_plugin_kind k) {
    switch (k) {
    case LLMLAB_PLUGIN_DECODING: return &e->dec;
    case LLMLAB_PLUGIN_ATTENTION: return &e->att;
    case LLMLAB_PLUGIN_QUANT: return &e->quant;
    case LLMLAB_PLUGIN_SCHED: return &e->sched;
    }
    return NULL;
}

const llmlab_plugin_desc *llmlab_engine_plugin(const llmlab_engine *e, llmlab_plugin_kind k) {
    const plugin_inst *pi = inst_of(e, k);
    return pi ? pi->d : NULL;
}

const llmlab_params *llmlab_engine_params(const llmlab_engine *e, llmlab_plugin_kind k) {
    const plugin_inst *pi = inst_of(e, k);
    return pi ? pi->p : NULL;
}

const llmlab_model *llmlab_engine_model(const llmlab_engine *e) { return e->m; }
double llmlab_engine_bits_per_weight(const llmlab_engine *e) { return e->bits_per_weight; }

llmlab_sampling llmlab_engine_sampling(const llmlab_engine *e) { return e->samp; }
int llmlab_engine_threads(const llmlab_engine *e) { return llmlab_threadpool_size(llmlab_ctx_pool(e->ctx)); }
llmlab_kv *llmlab_engine_kv(llmlab_engine *e) { return llmlab_ctx_kv(e->ctx); }
int llmlab_engine_decode_tokens(const llmlab_engine *e) { return e->decode_tokens; }
