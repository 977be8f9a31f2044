/* forward.c - the batched forward pass of a Llama-family decoder on the CPU.
 *
 * One call runs every token of the batch through all layers:
 *   x = embed(token)
 *   per layer:  h = rmsnorm(x); q,k,v = h Wq,Wk,Wv (+bias); rope(q,k at pos);
 *               store k,v in the token's KV slot; a = attention(q, visible slots);
 *               x += a Wo;  h = rmsnorm(x);  x += (silu(h Wg) * h Wu) Wd
 *   out = rmsnorm(x) for flagged tokens; logits = out W_lm
 * Matmuls take the whole batch at once (weights are read once per forward); the
 * per-row ops and attention run per token, so no row depends on its neighbours.
 */
#include "forward.h"
#include "forward_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/ops.h"



const llmlab_model *llmlab_ctx_model(const llmlab_ctx *ctx) { return ctx->m; }
llmlab_kv *llmlab_ctx_kv(llmlab_ctx *ctx) { return ctx->kv; }
llmlab_threadpool *llmlab_ctx_pool(llmlab_ctx *ctx) { return ctx->pool; }
int llmlab_ctx_max_batch(const llmlab_ctx *ctx) { return ctx->max_batch; }

void llmlab_ctx_free(llmlab_ctx *c) {
    if (!c) return;
    llmlab_kv_free(c->kv); /* before the device side: a device pool is released through it */
    if (c->gpu) { /* the output rows live in its page-locked buffers */
        c->out.logits = c->out.hidden = c->out.tap = NULL;
        llmlab_cuda_fwd_free(c->gpu);
    }
    llmlab_threadpool_free(c->pool);
    void *bufs[] = {c->x, c->h, c->q, c->k, c->v, c->att, c->gate, c->up, c->tmp,
                    c->n_prior, c->vis_off, c->vis_slots, c->scores, c->out.out_index,
                    c->out.logits, c->out.hidden, c->out.tap, c->out.slot, c->seq_len0, c->seq_count, c->skip,
                    c->layout, c->rand, c->n_rand, c->units, c->seq_chain, c->row_off, c->row_len,
                    c->row_mass, c->scratch, c->unit_off};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c);
}

static void *alloc_floats(size_t rows, size_t cols, int *fail) {
    void *p = calloc(rows * cols, sizeof(float));
    if (!p) *fail = 1;
    return p;
}

llmlab_status llmlab_ctx_create(llmlab_ctx **out, const llmlab_model *m, const llmlab_ctx_opts *opts,
                                llmlab_err *err) {
    *out = NULL;
    llmlab_ctx_opts o = opts ? *opts : (llmlab_ctx_opts){0};
    const llmlab_config *cfg = &m->cfg;
    if (o.max_seqs <= 0) o.max_seqs = 64;
    if (o.max_batch <= 0) o.max_batch = 512;
    if (o.kv_block_size <= 0) o.kv_block_size = 16;
    if (o.kv_tokens <= 0) {
        long long t = (long long)cfg->max_pos * 4;
        o.kv_tokens = (int)(t > 65536 ? 65536 : t);
    }
    llmlab_ctx *c = calloc(1, sizeof *c);
    if (!c) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory creating a context");
    c->m = m;
    c->max_batch = o.max_batch;
    llmlab_kv_opts ko = {.n_layers = cfg->n_layers,
                         .n_kv_heads = cfg->n_kv_heads,
                         .head_dim = cfg->head_dim,
                         .block_size = o.kv_block_size,
                         .n_blocks = (o.kv_tokens + o.kv_block_size - 1) / o.kv_block_size,
                         .max_seqs = o.max_seqs,
                         .fmt = o.kv_format ? *o.kv_format : (llmlab_kv_format){0}};
    c->kv_tokens = ko.n_blocks * ko.block_size;
    llmlab_kv_mem dev_mem;
    llmlab_status st = LLMLAB_OK;
    if (m->backend == LLMLAB_BACKEND_CUDA) { /* the KV pool lives on the device */
        st = llmlab_cuda_fwd_create(c, &dev_mem, err);
        ko.mem = &dev_mem;
    }
    if (!st) st = llmlab_kv_create(&c->kv, &ko, err);
    if (st) {
        llmlab_cuda_fwd_free(c->gpu);
        free(c);
        return st;
    }
    c->pool = llmlab_threadpool_create(o.n_threads);
    size_t B = (size_t)o.max_batch, qd = (size_t)cfg->n_heads * (size_t)cfg->head_dim,
           kd = (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim;
    int fail = !c->pool;
    c->x = alloc_floats(B, (size_t)cfg->dim, &fail);
    c->h = alloc_floats(B, (size_t)cfg->dim, &fail);
    c->tmp = alloc_floats(B, (size_t)cfg->dim, &fail);
    c->q = alloc_floats(B, qd, &fail);
    c->att = alloc_floats(B, qd, &fail);
    c->k = alloc_floats(B, kd, &fail);
    c->v = alloc_floats(B, kd, &fail);
    c->gate = alloc_floats(B, (size_t)cfg->ffn_dim, &fail);
    c->up = alloc_floats(B, (size_t)cfg->ffn_dim, &fail);
    c->n_prior = calloc(B, sizeof(int32_t));
    c->vis_off = calloc(B + 1, sizeof(int32_t));
    c->vis_slots = calloc(B * (B + 1) / 2 + B, sizeof(int32_t));
    c->n_scratch = 4 * llmlab_threadpool_size(c->pool);
    c->scores = alloc_floats((size_t)c->n_scratch, (size_t)c->kv_tokens + B, &fail);
    c->out.out_index = calloc(B, sizeof(int32_t));
    c->out.slot = calloc(B, sizeof(int32_t));
    c->out.hidden = alloc_floats(B, (size_t)cfg->dim, &fail);
    c->out.tap = alloc_floats(B, (size_t)cfg->dim, &fail);
    c->out.logits = alloc_floats(B, (size_t)cfg->vocab_size, &fail);
    c->seq_len0 = calloc((size_t)o.max_seqs, sizeof(int32_t));
    c->seq_count = calloc((size_t)o.max_seqs, sizeof(int32_t));
    c->rand = calloc(B * LLMLAB_MAX_RANDOM_BLOCKS, sizeof(int32_t));
    c->n_rand = calloc(B, sizeof(int32_t));
    c->units = calloc((size_t)o.max_seqs, sizeof(int32_t));
    c->seq_chain = calloc((size_t)o.max_seqs, 1);
    c->row_off = calloc(B, sizeof(size_t));
    c->row_len = calloc(B, sizeof(int32_t));
    c->unit_off = calloc((size_t)o.max_seqs * (size_t)cfg->n_kv_heads, sizeof(size_t));
    if (fail || !c->n_prior || !c->vis_off || !c->vis_slots || !c->out.out_index || !c->out.slot ||
        !c->seq_len0 || !c->seq_count || !c->rand || !c->n_rand || !c->units || !c->seq_chain ||
        !c->row_off || !c->row_len || !c->unit_off) {
        llmlab_ctx_free(c);
        return llmlab_err_set(err, LLMLAB_ENOMEM,
                              "out of memory for activations of a %d-token batch", o.max_batch);
    }
    if (c->gpu && (st = llmlab_cuda_fwd_bind(c, err))) {
        llmlab_ctx_free(c);
        return st;
    }
    *out = c;
    return LLMLAB_OK;
}

/* ---- batch validation and visibility ------------------------------------------ */

static llmlab_status check_batch(const llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    const llmlab_config *cfg = &c->m->cfg;
    if (b->n <= 0) return llmlab_err_set(err, LLMLAB_EINVAL, "forward: empty batch");
    if (b->n > c->max_batch)
        return llmlab_err_set(err, LLMLAB_EINVAL, "forward: batch of %d tokens exceeds max_batch %d",
                              b->n, c->max_batch);
    if (b->tap_layer >= cfg->n_layers)
        return llmlab_err_set(err, LLMLAB_EINVAL, "forward: tap_layer %d but the model has %d layers",
                              b->tap_layer, cfg->n_layers);
    for (int i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= cfg->vocab_size)
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "forward: token %d at batch index %d outside the vocabulary (0..%d)",
                                  b->token[i], i, cfg->vocab_size - 1);
        if (b->seq[i] < 0 || b->seq[i] >= c->kv->o.max_seqs)
            return llmlab_err_set(err, LLMLAB_EINVAL, "forward: sequence id %d outside 0..%d",
                                  b->seq[i], c->kv->o.max_seqs - 1);
        if (b->pos[i] < 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "forward: negative position at index %d", i);
        if (b->vis == LLMLAB_VIS_TREE) {
            int p = b->parent[i];
            if (p >= i || p < -1 || (p >= 0 && b->seq[p] != b->seq[i]))
                return llmlab_err_set(err, LLMLAB_EINVAL,
                                      "forward: tree parent %d of token %d must be an earlier token "
                                      "of the same sequence, or -1",
                                      p, i);
        }
    }
    return LLMLAB_OK;
}

static int sees(const llmlab_batch *b, int i, int j) {
    if (b->seq[i] != b->seq[j]) return 0;
    if (i == j) return 1;
    switch (b->vis) {
    case LLMLAB_VIS_CAUSAL: return j < i;
    case LLMLAB_VIS_TREE:
        for (int p = b->parent[i]; p >= 0; p = b->parent[p])
            if (p == j) return 1;
        return 0;
    case LLMLAB_VIS_MASK:
        return (b->mask[(size_t)i * (size_t)b->mask_words + (size_t)(j / 64)] >> (j % 64)) & 1u;
    }
    return 0;
}

/* The BigBird random key blocks of the block holding position q_pos. */
static int random_blocks_of(const llmlab_attn_pattern *p, int32_t q_pos, int32_t *out) {
    if (p->block <= 0 || p->random_blocks <= 0) return 0;
    int qb = q_pos / p->block, tmp[LLMLAB_MAX_RANDOM_BLOCKS];
    int n = llmlab_pattern_random_blocks(p->seed, qb, p->global_blocks, qb - p->window_blocks, p->random_blocks, tmp);
    for (int i = 0; i < n; i++) out[i] = tmp[i];
    return n;
}

/* Bytes of one unit's scratch for a sequence of len slots (unit_view plus the
 * softmax scores), rounded to keep every unit's floats aligned. */
static size_t unit_bytes(int len) { return ((size_t)len * (4 * sizeof(float) + 2) + 15) & ~(size_t)15; }

static llmlab_status grow(void **p, size_t *cap, size_t need, llmlab_err *err) {
    if (need <= *cap) return LLMLAB_OK;
    void *q = realloc(*p, need);
    if (!q) return llmlab_err_set(err, LLMLAB_ENOMEM, "forward: out of memory for attention-mass buffers (%zu MiB)", need >> 20);
    *p = q;
    *cap = need;
    return LLMLAB_OK;
}

/* Mass mode: the (sequence, KV head) units, whether each sequence's rows form a
 * chain, and the per-row buffers of ROW tokens. */
static llmlab_status plan_mass(llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    int nkv = c->m->cfg.n_kv_heads, lanes = c->kv->n_lanes, ns = c->kv->o.max_seqs;
    int32_t *last_row = c->seq_count; /* reused: last batch row of each sequence so far */
    for (int s = 0; s < ns; s++) last_row[s] = -1;
    c->n_units = 0;
    size_t rows = 0, scratch = 0;
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], len = c->kv->seqs[s].len;
        if (last_row[s] < 0) {
            c->units[c->n_units++] = s;
            c->seq_chain[s] = 1;
            for (int h = 0; h < nkv; h++, scratch += unit_bytes(len)) c->unit_off[(size_t)(c->n_units - 1) * nkv + h] = scratch;
        }
        int parent = b->vis == LLMLAB_VIS_CAUSAL ? last_row[s] : b->parent[i];
        if (b->vis == LLMLAB_VIS_MASK || parent != last_row[s]) c->seq_chain[s] = 0;
        last_row[s] = i;
        c->row_len[i] = b->mass_mode[i] == LLMLAB_MASS_ROW ? len : 0;
        c->row_off[i] = rows;
        rows += (size_t)c->row_len[i] * (size_t)lanes;
    }
    llmlab_status st = grow((void **)&c->row_mass, &c->row_cap, rows * sizeof(float), err);
    if (!st) st = grow((void **)&c->scratch, &c->scratch_cap, scratch, err);
    return st;
}

int llmlab_ctx_row_mass(const llmlab_ctx *c, int index, int lane, const float **val) {
    if (!c->mass_on || index < 0 || index >= c->max_batch || c->row_len[index] == 0) return 0;
    *val = c->row_mass + c->row_off[index] + (size_t)lane * (size_t)c->row_len[index];
    return c->row_len[index];
}

/* Appends every token's slot to its sequence (rolling back on failure) and builds
 * the per-token visibility lists. */
static llmlab_status place_tokens(llmlab_ctx *c, const llmlab_batch *b, llmlab_err *err) {
    llmlab_kv *kv = c->kv;
    int ns = kv->o.max_seqs;
    memset(c->seq_count, 0, (size_t)ns * sizeof(int32_t));
    for (int s = 0; s < ns; s++) c->seq_len0[s] = kv->seqs[s].len;
    for (int i = 0; i < b->n; i++) c->out.slot[i] = c->seq_len0[b->seq[i]] + c->seq_count[b->seq[i]]++;
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], first;
        if (c->seq_count[s] == 0) continue;
        /* positions in slot order = this sequence's tokens in batch order */
        llmlab_status st = LLMLAB_OK;
        for (int j = i; j < b->n && st == LLMLAB_OK; j++)
            if (b->seq[j] == s) st = llmlab_kv_append(kv, s, 1, &b->pos[j], &first, err);
        c->seq_count[s] = 0; /* done with this sequence */
        if (st) {
            for (int t = 0; t < ns; t++)
                if (kv->seqs[t].len > c->seq_len0[t]) llmlab_kv_truncate(kv, t, c->seq_len0[t], NULL);
            return st;
        }
    }
    int off = 0;
    for (int i = 0; i < b->n; i++) {
        c->n_prior[i] = c->seq_len0[b->seq[i]];
        c->vis_off[i] = off;
        for (int j = 0; j <= i; j++)
            if (sees(b, i, j)) c->vis_slots[off++] = c->out.slot[j];
    }
    c->vis_off[b->n] = off;
    for (int i = 0; i < b->n; i++) c->n_rand[i] = random_blocks_of(&c->pat, b->pos[i], c->rand + (size_t)i * LLMLAB_MAX_RANDOM_BLOCKS);
    return c->mass_on ? plan_mass(c, b, err) : LLMLAB_OK;
}

/* ---- per-row tasks ---------------------------------------------------------------- */

typedef struct {
    llmlab_ctx *c;
    const llmlab_batch *b;
    int layer;
} layer_job;

static void rope_store_task(void *arg, int i, int n) {
    layer_job *j = arg;
    llmlab_ctx *c = j->c;
    const llmlab_config *cfg = &c->m->cfg;
    int qd = cfg->n_heads * cfg->head_dim, kd = cfg->n_kv_heads * cfg->head_dim;
    float *q = c->q + (size_t)i * qd, *k = c->k + (size_t)i * kd, *v = c->v + (size_t)i * kd;
    const llmlab_layer *L = &c->m->layers[j->layer];
    if (L->bq) {
        for (int d = 0; d < qd; d++) q[d] += L->bq[d];
        for (int d = 0; d < kd; d++) k[d] += L->bk[d];
        for (int d = 0; d < kd; d++) v[d] += L->bv[d];
    }
    if (!c->pat.rope_shifted) { /* shifted: attention rotates q and the keys at their cache ranks */
        llmlab_cpu_rope(q, cfg->n_heads, cfg->head_dim, j->b->pos[i], c->m->rope_inv_freq);
        llmlab_cpu_rope(k, cfg->n_kv_heads, cfg->head_dim, j->b->pos[i], c->m->rope_inv_freq);
    }
    llmlab_kv_write(c->kv, j->b->seq[i], c->out.slot[i], j->layer, k, v); /* in the cache's storage format */
}

/* The keys of batch token i for one KV head. */
static llmlab_attn_keys keys_of(const llmlab_ctx *c, const llmlab_batch *b, int i, int layer, int kv_head,
                                const uint8_t *hide) {
    return (llmlab_attn_keys){.kv = c->kv,
                              .seq = b->seq[i],
                              .layer = layer,
                              .kv_head = kv_head,
                              .n_prior = c->n_prior[i],
                              .extra = c->vis_slots + c->vis_off[i],
                              .n_extra = c->vis_off[i + 1] - c->vis_off[i],
                              .pat = c->pat.block > 0 ? &c->pat : NULL,
                              .q_pos = b->pos[i],
                              .rand = c->rand + (size_t)i * LLMLAB_MAX_RANDOM_BLOCKS,
                              .n_rand = c->n_rand[i],
                              .hide = hide,
                              .inv_freq = c->pat.rope_shifted ? c->m->rope_inv_freq : NULL};
}

/* Attention tasks: a contiguous range of (token, head) pairs per task, each task
 * owning one scores scratch row. */
static void attention_task(void *arg, int t, int n_tasks) {
    layer_job *j = arg;
    llmlab_ctx *c = j->c;
    const llmlab_config *cfg = &c->m->cfg;
    int nh = cfg->n_heads, hd = cfg->head_dim, group = cfg->n_heads / cfg->n_kv_heads;
    long total = (long)j->b->n * nh;
    long lo = total * t / n_tasks, hi = total * (t + 1) / n_tasks;
    float *scores = c->scores + (size_t)t * ((size_t)c->kv_tokens + (size_t)c->max_batch);
    float scale = 1.0f / sqrtf((float)hd);
    for (long p = lo; p < hi; p++) {
        int i = (int)(p / nh), h = (int)(p % nh);
        llmlab_attn_keys keys = keys_of(c, j->b, i, j->layer, h / group, NULL);
        llmlab_cpu_attention(c->att + (size_t)i * nh * hd + (size_t)h * hd,
                             c->q + (size_t)i * nh * hd + (size_t)h * hd, hd, &keys, scale, scores, NULL);
    }
}

/* A unit's view of its lane during a speculative chain: the rule's score per
 * slot, positions, which slots are still resident, and which the chain evicted. */
typedef struct {
    float *scores;  /* [len] softmax scratch of the kernel */
    float *val;     /* [len] this row's probabilities, summed over the group's heads */
    float *score;   /* [len] mass (or last) as the engine will have it after each commit */
    int32_t *pos;   /* [len] */
    uint8_t *alive; /* [len] valid in the lane and not evicted by the chain */
    uint8_t *hide;  /* [len] evicted by the chain: later rows do not see it */
} unit_view;

static unit_view unit_view_at(uint8_t *base, int len) {
    unit_view u;
    u.scores = (float *)base;
    u.val = u.scores + len;
    u.score = u.val + len;
    u.pos = (int32_t *)(u.score + len);
    u.alive = (uint8_t *)(u.pos + len);
    u.hide = u.alive + len;
    return u;
}

static void unit_view_init(const llmlab_ctx *c, unit_view *u, int seq, int lane, int len, int score_kind) {
    const llmlab_kv *kv = c->kv;
    int committed = kv->seqs[seq].n_committed;
    const float *src = score_kind == LLMLAB_SCORE_LAST ? kv->last : kv->mass;
    for (int slot = 0; slot < len; slot++) {
        long m = llmlab_kv_meta(kv, seq, slot, lane);
        u->alive[slot] = m >= 0 && kv->slot_valid[m];
        u->pos[slot] = m >= 0 ? kv->slot_pos[m] : -1;
        u->score[slot] = m >= 0 && slot < committed ? src[m] : 0.0f;
        u->hide[slot] = 0;
    }
}

/* After row i (slot `slot`) of a chain: the engine will add its mass, then evict
 * by the rule among slots [0, slot]; do the same here for the rows after it. */
static void unit_simulate(unit_view *u, const llmlab_evict_rule *r, int slot, int32_t newest) {
    for (int k = 0; k <= slot; k++) {
        if (r->score == LLMLAB_SCORE_LAST) u->score[k] = u->val[k];
        else if (u->alive[k]) u->score[k] += u->val[k];
    }
    int count = 0;
    for (int k = 0; k <= slot; k++) count += u->alive[k];
    if (count <= r->capacity) return;
    int victim = llmlab_evict_pick(r, u->score, u->pos, u->alive, slot + 1, newest);
    if (victim >= 0) u->alive[victim] = 0, u->hide[victim] = 1;
}

/* Mass mode: task t handles one (sequence, KV head) unit, its rows in batch order. */
static void attention_unit_task(void *arg, int t, int n_tasks) {
    layer_job *j = arg;
    llmlab_ctx *c = j->c;
    const llmlab_batch *b = j->b;
    const llmlab_config *cfg = &c->m->cfg;
    int nh = cfg->n_heads, hd = cfg->head_dim, nkv = cfg->n_kv_heads, group = nh / nkv;
    int seq = c->units[t / nkv], kvh = t % nkv, lane = j->layer * nkv + kvh, len = c->kv->seqs[seq].len;
    const llmlab_evict_rule *rule = &c->kv->seqs[seq].rule;
    float scale = 1.0f / sqrtf((float)hd);
    unit_view u = unit_view_at(c->scratch + c->unit_off[t], len);
    int simulate = rule->capacity > 0 && c->seq_chain[seq];
    if (simulate) unit_view_init(c, &u, seq, lane, len, rule->score);
    (void)n_tasks;
    for (int i = 0; i < b->n; i++) {
        if (b->seq[i] != seq) continue;
        memset(u.val, 0, (size_t)len * sizeof(float));
        llmlab_attn_keys keys = keys_of(c, b, i, j->layer, kvh, simulate ? u.hide : NULL);
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            llmlab_cpu_attention(c->att + (size_t)i * nh * hd + (size_t)h * hd,
                                 c->q + (size_t)i * nh * hd + (size_t)h * hd, hd, &keys, scale, u.scores, u.val);
        if (b->mass_mode[i] != LLMLAB_MASS_ROW) {
            llmlab_kv_add_mass(c->kv, seq, lane, u.val, len, b->mass_mode[i] == LLMLAB_MASS_OBS);
            continue;
        }
        memcpy(c->row_mass + c->row_off[i] + (size_t)lane * (size_t)len, u.val, (size_t)len * sizeof(float));
        if (simulate) unit_simulate(&u, rule, c->out.slot[i], b->pos[i]);
    }
}
static void rows_rmsnorm(llmlab_ctx *c, float *out, const float *x, const float *w, int rows) {
    const llmlab_config *cfg = &c->m->cfg;
    size_t d = (size_t)cfg->dim;
    for (int i = 0; i < rows; i++) llmlab_cpu_rmsnorm(out + i * d, x + i * d, w, cfg->dim, cfg->rms_eps);
}

void llmlab_ctx_set_linear(llmlab_ctx *ctx, llmlab_linear_fn fn, void *user) {
    ctx->linear = fn;
    ctx->linear_user = user;
}

const llmlab_mat *llmlab_model_matrix(const llmlab_model *m, int matrix) {
    int l = matrix / LLMLAB_MATS_PER_LAYER;
    if (l >= m->cfg.n_layers) return &m->lm_head;
    const llmlab_layer *L = &m->layers[l];
    const llmlab_mat *mats[LLMLAB_MATS_PER_LAYER] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                                     &L->w_gate, &L->w_up, &L->w_down};
    return mats[matrix % LLMLAB_MATS_PER_LAYER];
}

llmlab_status llmlab_ctx_set_skip(llmlab_ctx *c, const int *layers, int n, llmlab_err *err) {
    int L = c->m->cfg.n_layers;
    uint8_t *skip = calloc((size_t)L, 1);
    if (!skip) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (layers[i] < 0 || layers[i] >= L) {
            free(skip);
            return llmlab_err_set(err, LLMLAB_EINVAL, "skip layer %d outside 0..%d", layers[i], L - 1);
        }
        skip[layers[i]] = 1;
    }
    free(c->skip);
    c->skip = n > 0 ? skip : NULL;
    if (n <= 0) free(skip);
    return LLMLAB_OK;
}

llmlab_status llmlab_ctx_set_pattern(llmlab_ctx *c, const llmlab_attn_pattern *p, llmlab_err *err) {
    free(c->layout);
    c->layout = NULL;
    c->pat = (llmlab_attn_pattern){.size = sizeof c->pat};
    if (!p || p->block <= 0) return LLMLAB_OK;
    if (p->global_blocks < 0 || p->window_blocks < 0 || p->random_blocks < 0 || p->layout_blocks < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "attention pattern: negative block count");
    if (p->random_blocks > LLMLAB_MAX_RANDOM_BLOCKS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "attention pattern: %d random blocks, at most %d", p->random_blocks,
                              LLMLAB_MAX_RANDOM_BLOCKS);
    if (p->rope_shifted && c->m->cfg.head_dim > LLMLAB_MAX_HEAD_DIM)
        return llmlab_err_set(err, LLMLAB_EINVAL, "attention pattern: shifted positions need head_dim <= %d (model: %d)",
                              LLMLAB_MAX_HEAD_DIM, c->m->cfg.head_dim);
    c->pat = *p;
    c->pat.size = sizeof c->pat;
    if (p->layout && p->layout_blocks > 0) {
        size_t n = (size_t)p->layout_blocks * (size_t)p->layout_blocks;
        if (!(c->layout = malloc(n))) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        memcpy(c->layout, p->layout, n);
        c->pat.layout = c->layout;
    } else {
        c->pat.layout = NULL;
        c->pat.layout_blocks = 0;
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_ctx_set_kv_format(llmlab_ctx *c, const llmlab_kv_format *f, llmlab_err *err) {
    for (int s = 0; s < c->kv->o.max_seqs; s++)
        if (c->kv->seqs[s].active || c->kv->seqs[s].len > 0)
            return llmlab_err_set(err, LLMLAB_EINVAL, "KV format: the cache already holds sequence %d", s);
    llmlab_kv_opts o = c->kv->o;
    o.fmt = f ? *f : (llmlab_kv_format){0};
    llmlab_kv *kv = NULL;
    llmlab_status st = llmlab_kv_create(&kv, &o, err);
    if (!st && llmlab_kv_has_mass(c->kv)) st = llmlab_kv_enable_mass(kv, err);
    if (st) {
        llmlab_kv_free(kv);
        return st;
    }
    llmlab_kv_free(c->kv);
    c->kv = kv;
    return LLMLAB_OK;
}

llmlab_status llmlab_ctx_enable_mass(llmlab_ctx *c, llmlab_err *err) {
    llmlab_status st = llmlab_kv_enable_mass(c->kv, err);
    if (!st) c->mass_on = 1;
    return st;
}

static void matmul(llmlab_ctx *c, float *y, const float *x, int matrix, int M) {
    if (c->linear) {
        c->linear(c->linear_user, matrix, y, x, M, c->pool);
        return;
    }
    const llmlab_mat *W = llmlab_model_matrix(c->m, matrix);
    llmlab_cpu_matmul(y, x, W->data, W->dtype, M, (int)W->rows, (int)W->cols, c->pool);
}

static void run_layer(llmlab_ctx *c, const llmlab_batch *b, int l) {
    const llmlab_config *cfg = &c->m->cfg;
    const llmlab_layer *L = &c->m->layers[l];
    int n = b->n;
    size_t d = (size_t)cfg->dim;
    layer_job job = {c, b, l};
    int base = l * LLMLAB_MATS_PER_LAYER;

    rows_rmsnorm(c, c->h, c->x, L->attn_norm, n);
    matmul(c, c->q, c->h, base + LLMLAB_MAT_Q, n);
    matmul(c, c->k, c->h, base + LLMLAB_MAT_K, n);
    matmul(c, c->v, c->h, base + LLMLAB_MAT_V, n);
    for (int i = 0; i < n; i++) rope_store_task(&job, i, n);
    if (c->mass_on) llmlab_threadpool_run(c->pool, attention_unit_task, &job, c->n_units * cfg->n_kv_heads);
    else llmlab_threadpool_run(c->pool, attention_task, &job, c->n_scratch);
    matmul(c, c->tmp, c->att, base + LLMLAB_MAT_O, n);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->tmp[i];

    rows_rmsnorm(c, c->h, c->x, L->ffn_norm, n);
    matmul(c, c->gate, c->h, base + LLMLAB_MAT_GATE, n);
    matmul(c, c->up, c->h, base + LLMLAB_MAT_UP, n);
    size_t f = (size_t)cfg->ffn_dim;
    for (int i = 0; i < n; i++) llmlab_cpu_swiglu(c->gate + i * f, c->up + i * f, cfg->ffn_dim);
    matmul(c, c->tmp, c->gate, base + LLMLAB_MAT_DOWN, n);
    for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->tmp[i];
}

/* The CUDA forward (forward_cuda.c) after place_tokens; on failure the slots
 * it appended are dropped again, so nothing is added to the cache. */
static llmlab_status forward_on_device(llmlab_ctx *c, const llmlab_batch *b, const llmlab_outputs **out,
                                       llmlab_err *err) {
    c->out.n_out = 0;
    for (int i = 0; i < b->n; i++)
        if (b->flags[i]) c->out.out_index[c->out.n_out++] = i;
    llmlab_status st = llmlab_cuda_forward(c, b, err);
    if (st) {
        for (int s = 0; s < c->kv->o.max_seqs; s++)
            if (c->kv->seqs[s].len > c->seq_len0[s]) llmlab_kv_truncate(c->kv, s, c->seq_len0[s], NULL);
        return st;
    }
    *out = &c->out;
    return LLMLAB_OK;
}

llmlab_status llmlab_forward(llmlab_ctx *c, const llmlab_batch *b, const llmlab_outputs **out,
                             llmlab_err *err) {
    llmlab_status st = check_batch(c, b, err);
    if (st) return st;
    if ((st = place_tokens(c, b, err))) return st;
    if (c->gpu) return forward_on_device(c, b, out, err);
    const llmlab_model *m = c->m;
    const llmlab_config *cfg = &m->cfg;
    size_t d = (size_t)cfg->dim;

    for (int i = 0; i < b->n; i++)
        llmlab_cpu_row_to_f32(c->x + i * d, m->embed.data, m->embed.dtype, b->token[i], cfg->dim);

    c->out.n_out = 0;
    for (int i = 0; i < b->n; i++)
        if (b->flags[i]) c->out.out_index[c->out.n_out++] = i;

    int want_logits = 0;
    for (int r = 0; r < c->out.n_out; r++) want_logits |= b->flags[c->out.out_index[r]] & LLMLAB_TOK_LOGITS;

    for (int l = 0; l < cfg->n_layers; l++) {
        if (!c->skip || !c->skip[l]) run_layer(c, b, l); /* a skipped layer passes x through */
        if (l == b->tap_layer)
            for (int r = 0; r < c->out.n_out; r++)
                memcpy(c->out.tap + r * d, c->x + (size_t)c->out.out_index[r] * d, d * sizeof(float));
    }
    for (int r = 0; r < c->out.n_out; r++)
        llmlab_cpu_rmsnorm(c->out.hidden + r * d, c->x + (size_t)c->out.out_index[r] * d,
                           m->final_norm, cfg->dim, cfg->rms_eps);
    if (want_logits && c->out.n_out > 0)
        matmul(c, c->out.logits, c->out.hidden, cfg->n_layers * LLMLAB_MATS_PER_LAYER, c->out.n_out);
    *out = &c->out;
    return LLMLAB_OK;
}
