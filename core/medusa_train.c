/* medusa_train.c - Medusa heads trained on a frozen model (see medusa_train.h). */
#include "medusa_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "error.h"
#include "generate.h"
#include "kernels/cpu/kernels.h"
#include "rng.h"
#include "safetensors.h"

void llmlab_medusa_train_defaults(llmlab_medusa_train_opts *o) {
    *o = (llmlab_medusa_train_opts){.heads = 4, .samples = 64, .len = 64, .prompt_len = 8, .steps = 300,
                                    .batch = 64, .lr = 1e-3f, .temperature = 0.0f, .seed = 0, .threads = 0};
}

void llmlab_medusa_heads_free(llmlab_medusa_heads *h) {
    if (!h) return;
    free(h->w1);
    free(h->b1);
    free(h->w2);
    memset(h, 0, sizeof *h);
}

static llmlab_status check_opts(const llmlab_model *m, const llmlab_medusa_train_opts *o, llmlab_err *err) {
    if (o->heads < 1 || o->heads > LLMLAB_MEDUSA_TRAIN_MAX_HEADS)
        return llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: %d heads (1..%d)", o->heads,
                              LLMLAB_MEDUSA_TRAIN_MAX_HEADS);
    if (o->samples < 2)
        return llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: need at least 2 samples (one held out)");
    if (o->len <= o->heads)
        return llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: len %d must exceed the head count %d", o->len,
                              o->heads);
    if (o->prompt_len < 1 || o->prompt_len + o->len > m->cfg.max_pos)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "train-medusa: prompt %d + len %d tokens exceed max_pos %d (or prompt < 1)",
                              o->prompt_len, o->len, m->cfg.max_pos);
    if (o->steps < 0 || o->batch < 1 || !(o->lr > 0) || !(o->temperature >= 0))
        return llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: bad steps %d, batch %d, lr %g or temperature %g",
                              o->steps, o->batch, (double)o->lr, (double)o->temperature);
    return LLMLAB_OK;
}

/* ---- data ---------------------------------------------------------------------------- */

typedef struct {
    int n, cap, dim, K;
    float *h;    /* [cap][dim] final-normed hidden state at position t */
    int32_t *y;  /* [cap][K] token t+2+k */
} dataset;

static void data_free(dataset *d) {
    free(d->h);
    free(d->y);
    memset(d, 0, sizeof *d);
}

static llmlab_status data_init(dataset *d, int cap, int dim, int K, llmlab_err *err) {
    *d = (dataset){0, cap, dim, K, malloc(sizeof(float) * (size_t)cap * (size_t)dim),
                   malloc(sizeof(int32_t) * (size_t)cap * (size_t)K)};
    if (!d->h || !d->y) {
        data_free(d);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "train-medusa: out of memory for %d positions", cap);
    }
    return LLMLAB_OK;
}

/* One forward over tok[0..n) (fresh sequence 0) keeping the hidden states of
 * positions [first, last] into d, each with its K targets. */
static llmlab_status add_text(llmlab_ctx *ctx, llmlab_batch *b, const int32_t *tok, int n, int first, int last,
                              dataset *d, llmlab_err *err) {
    int chunk = b->cap;
    llmlab_status st = LLMLAB_OK;
    for (int i0 = 0; i0 < n && !st; i0 += chunk) {
        int i1 = i0 + chunk < n ? i0 + chunk : n;
        llmlab_batch_clear(b);
        for (int i = i0; i < i1; i++)
            llmlab_batch_add(b, tok[i], 0, i, (i >= first && i <= last) ? LLMLAB_TOK_HIDDEN : 0, -1);
        const llmlab_outputs *o;
        if ((st = llmlab_forward(ctx, b, &o, err))) break;
        llmlab_kv_commit(llmlab_ctx_kv(ctx), 0);
        for (int r = 0; r < o->n_out; r++) {
            int t = o->out_index[r] + i0;
            if (d->n == d->cap) return llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: dataset overflow");
            memcpy(d->h + (size_t)d->n * (size_t)d->dim, o->hidden + (size_t)r * (size_t)d->dim,
                   sizeof(float) * (size_t)d->dim);
            for (int k = 0; k < d->K; k++) d->y[(size_t)d->n * (size_t)d->K + (size_t)k] = tok[t + 2 + k];
            d->n++;
        }
    }
    llmlab_kv_free_seq(llmlab_ctx_kv(ctx), 0);
    return st;
}

/* Generates every sample and splits the positions: the last fifth of the samples
 * is held out. */
static llmlab_status make_data(const llmlab_model *m, const llmlab_medusa_train_opts *o, dataset *train,
                               dataset *held, llmlab_err *err) {
    int P = o->prompt_len, L = o->len, K = o->heads, per = L - K;
    int n_held = o->samples / 5 > 0 ? o->samples / 5 : 1, n_train = o->samples - n_held;
    llmlab_ctx *ctx = NULL;
    llmlab_ctx_opts co = {.n_threads = o->threads, .max_seqs = 1, .kv_tokens = P + L + 16, .max_batch = 256};
    llmlab_status st = llmlab_ctx_create(&ctx, m, &co, err);
    if (!st) st = data_init(train, n_train * per, m->cfg.dim, K, err);
    if (!st) st = data_init(held, n_held * per, m->cfg.dim, K, err);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(P + L + 1));
    llmlab_batch *b = llmlab_batch_create(256);
    if (!st && (!tok || !b)) st = llmlab_err_set(err, LLMLAB_ENOMEM, "train-medusa: out of memory");
    llmlab_rng rng;
    llmlab_rng_seed(&rng, o->seed, 1);
    for (int i = 0; i < o->samples && !st; i++) {
        for (int k = 0; k < P; k++) tok[k] = (int32_t)(llmlab_rng_next(&rng) % (uint64_t)m->cfg.vocab_size);
        llmlab_gen_opts go = {.max_new = L, .samp = {o->temperature, 0, 1.0f, 0.0f},
                              .seed = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)i, .stop_at_eos = 0};
        int n_out = 0;
        st = llmlab_generate(ctx, 0, tok, P, &go, tok + P, &n_out, NULL, err);
        llmlab_kv_free_seq(llmlab_ctx_kv(ctx), 0);
        if (!st && n_out != L)
            st = llmlab_err_set(err, LLMLAB_EINVAL, "train-medusa: generated %d of %d tokens", n_out, L);
        if (!st) st = add_text(ctx, b, tok, P + L, P - 1, P + L - 2 - K, i < n_train ? train : held, err);
        if (o->verbose && (i + 1) % 16 == 0)
            fprintf(stderr, "train-medusa: generated %d/%d texts\n", i + 1, o->samples);
    }
    free(tok);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    return st;
}

/* ---- one head: forward, loss, backward ------------------------------------------------------- */

typedef struct {
    int dim, vocab, B;
    llmlab_threadpool *pool;
    float *z;     /* [B][dim] W1 x + b1 */
    float *xo;    /* [B][dim] ResBlock output */
    float *lg;    /* [B][vocab] logits, then dloss/dlogits */
    float *t1;    /* [max(vocab, dim)][B] transposes */
    float *t2;    /* [dim][max(B, vocab)] transposes */
    float *dx;    /* [B][dim] */
} workspace;

static void ws_free(workspace *w) {
    free(w->z);
    free(w->xo);
    free(w->lg);
    free(w->t1);
    free(w->t2);
    free(w->dx);
    memset(w, 0, sizeof *w);
}

static int ws_init(workspace *w, int dim, int vocab, int B, llmlab_threadpool *pool) {
    size_t d = (size_t)dim, v = (size_t)vocab, b = (size_t)B, big = v > d ? v : d;
    *w = (workspace){dim, vocab, B, pool, malloc(sizeof(float) * b * d), malloc(sizeof(float) * b * d),
                     malloc(sizeof(float) * b * v), malloc(sizeof(float) * big * b),
                     malloc(sizeof(float) * d * (b > v ? b : v)), malloc(sizeof(float) * b * d)};
    if (w->z && w->xo && w->lg && w->t1 && w->t2 && w->dx) return 0;
    ws_free(w);
    return -1;
}

/* out[cols][rows] = in[rows][cols]^T */
static void transpose(float *out, const float *in, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            out[(size_t)c * (size_t)rows + (size_t)r] = in[(size_t)r * (size_t)cols + (size_t)c];
}

static float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* Head forward on x[B][dim] into w->lg; w->z and w->xo kept for the backward. */
static void head_forward(workspace *w, const float *w1, const float *b1, const float *w2, const float *x, int B) {
    size_t D = (size_t)w->dim;
    llmlab_cpu_matmul(w->z, x, w1, LLMLAB_DTYPE_F32, B, w->dim, w->dim, w->pool);
    for (size_t i = 0; i < (size_t)B * D; i++) {
        w->z[i] += b1[i % D];
        w->xo[i] = x[i] + w->z[i] * sigmoid(w->z[i]);
    }
    llmlab_cpu_matmul(w->lg, w->xo, w2, LLMLAB_DTYPE_F32, B, w->vocab, w->dim, w->pool);
}

/* Cross-entropy of each row against y; turns w->lg into dloss/dlogits (mean over
 * B) when grad.  Counts top-1 and top-5 hits. */
static double head_loss_rows(workspace *w, const int32_t *y, int y_stride, int B, int grad, int *top1, int *top5) {
    double loss = 0;
    size_t V = (size_t)w->vocab;
    for (int b = 0; b < B; b++) {
        float *l = w->lg + (size_t)b * V;
        int32_t t = y[(size_t)b * (size_t)y_stride];
        float mx = l[0];
        int above = 0; /* logits ranked above the target (ties: lower index first) */
        for (size_t i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        for (size_t i = 0; i < V; i++) above += l[i] > l[t] || (l[i] == l[t] && (int32_t)i < t);
        double sum = 0;
        for (size_t i = 0; i < V; i++) sum += exp((double)(l[i] - mx));
        loss += log(sum) - (double)(l[t] - mx);
        if (top1) *top1 += above == 0;
        if (top5) *top5 += above < 5;
        if (!grad) continue;
        for (size_t i = 0; i < V; i++) l[i] = (float)(exp((double)(l[i] - mx)) / sum / B);
        l[t] -= 1.0f / (float)B;
    }
    return loss / B;
}

/* Gradients from dloss/dlogits in w->lg: g_w2 = G^T xo, dxo = G W2,
 * dz = dxo * silu'(z), g_w1 = dz^T x, g_b1 = sum dz. */
static void head_backward(workspace *w, const float *w2, const float *x, int B, float *g_w1, float *g_b1,
                          float *g_w2) {
    int D = w->dim, V = w->vocab;
    transpose(w->t1, w->lg, B, V);  /* G^T [V][B] */
    transpose(w->t2, w->xo, B, D);  /* xo^T [D][B] */
    llmlab_cpu_matmul(g_w2, w->t1, w->t2, LLMLAB_DTYPE_F32, V, D, B, w->pool);
    transpose(w->t2, w2, V, D);     /* W2^T [D][V] */
    llmlab_cpu_matmul(w->dx, w->lg, w->t2, LLMLAB_DTYPE_F32, B, D, V, w->pool);
    memset(g_b1, 0, sizeof(float) * (size_t)D);
    for (size_t i = 0; i < (size_t)B * (size_t)D; i++) {
        float s = sigmoid(w->z[i]);
        w->dx[i] *= s * (1.0f + w->z[i] * (1.0f - s));
        g_b1[i % (size_t)D] += w->dx[i];
    }
    transpose(w->t1, w->dx, B, D);  /* dz^T [D][B] */
    transpose(w->t2, x, B, D);      /* x^T [D][B] */
    llmlab_cpu_matmul(g_w1, w->t1, w->t2, LLMLAB_DTYPE_F32, D, D, B, w->pool);
}

double llmlab_medusa_head_loss(const float *w1, const float *b1, const float *w2, int dim, int vocab,
                               const float *x, const int32_t *y, int B, float *g_w1, float *g_b1, float *g_w2) {
    workspace w;
    if (ws_init(&w, dim, vocab, B, NULL)) return NAN;
    head_forward(&w, w1, b1, w2, x, B);
    int grad = g_w1 && g_b1 && g_w2;
    double loss = head_loss_rows(&w, y, 1, B, grad, NULL, NULL);
    if (grad) head_backward(&w, w2, x, B, g_w1, g_b1, g_w2);
    ws_free(&w);
    return loss;
}

/* ---- training ------------------------------------------------------------------------------------ */

typedef struct {
    float *m, *v; /* [n] first and second moments */
    size_t n;
} adam_state;

static void adam_step(float *w, const float *g, adam_state *a, float lr, int t) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    double c1 = 1.0 - pow(b1, t), c2 = 1.0 - pow(b2, t);
    for (size_t i = 0; i < a->n; i++) {
        a->m[i] = (float)(b1 * a->m[i] + (1 - b1) * g[i]);
        a->v[i] = (float)(b2 * a->v[i] + (1 - b2) * (double)g[i] * g[i]);
        w[i] -= (float)(lr * (a->m[i] / c1) / (sqrt(a->v[i] / c2) + eps));
    }
}

/* Held-out loss and accuracies of head k over d, in batches. */
static void evaluate(workspace *w, const float *w1, const float *b1, const float *w2, const dataset *d, int k,
                     double *loss, double *acc, double *acc5) {
    double total = 0;
    int hit1 = 0, hit5 = 0;
    for (int i0 = 0; i0 < d->n; i0 += w->B) {
        int B = d->n - i0 < w->B ? d->n - i0 : w->B;
        head_forward(w, w1, b1, w2, d->h + (size_t)i0 * (size_t)d->dim, B);
        total += B * head_loss_rows(w, d->y + (size_t)i0 * (size_t)d->K + (size_t)k, d->K, B, 0, &hit1, &hit5);
    }
    *loss = d->n ? total / d->n : 0;
    *acc = d->n ? (double)hit1 / d->n : 0;
    if (acc5) *acc5 = d->n ? (double)hit5 / d->n : 0;
}

typedef struct {
    float *x;      /* [B][dim] gathered hidden states */
    int32_t *y;    /* [B] targets */
    float *g_w1, *g_b1, *g_w2; /* gradients [dim][dim], [dim], [vocab][dim] */
    adam_state a_w1, a_b1, a_w2;
} train_buf;

static void tb_free(train_buf *t) {
    void *p[] = {t->x,      t->y,      t->g_w1,   t->g_b1,   t->g_w2,  t->a_w1.m,
                 t->a_w1.v, t->a_b1.m, t->a_b1.v, t->a_w2.m, t->a_w2.v};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    memset(t, 0, sizeof *t);
}

static int tb_init(train_buf *t, int dim, int vocab, int B) {
    size_t d = (size_t)dim, dd = d * d, vd = (size_t)vocab * d;
    *t = (train_buf){malloc(sizeof(float) * (size_t)B * d), malloc(sizeof(int32_t) * (size_t)B),
                     malloc(sizeof(float) * dd), malloc(sizeof(float) * d), malloc(sizeof(float) * vd),
                     {calloc(dd, sizeof(float)), calloc(dd, sizeof(float)), dd},
                     {calloc(d, sizeof(float)), calloc(d, sizeof(float)), d},
                     {calloc(vd, sizeof(float)), calloc(vd, sizeof(float)), vd}};
    if (t->x && t->y && t->g_w1 && t->g_b1 && t->g_w2 && t->a_w1.m && t->a_w1.v && t->a_b1.m && t->a_b1.v &&
        t->a_w2.m && t->a_w2.v)
        return 0;
    tb_free(t);
    return -1;
}

static void tb_reset(train_buf *t) {
    adam_state *a[] = {&t->a_w1, &t->a_b1, &t->a_w2};
    for (int i = 0; i < 3; i++) {
        memset(a[i]->m, 0, a[i]->n * sizeof(float));
        memset(a[i]->v, 0, a[i]->n * sizeof(float));
    }
}

/* Trains head k of out on `train` (the same batch sequence for every head). */
static void train_head(workspace *w, train_buf *t, llmlab_medusa_heads *out, int k, const dataset *train,
                       const llmlab_medusa_train_opts *o) {
    size_t D = (size_t)out->dim;
    float *w1 = out->w1 + (size_t)k * D * D, *b1 = out->b1 + (size_t)k * D;
    float *w2 = out->w2 + (size_t)k * (size_t)out->vocab * D;
    llmlab_rng rng;
    llmlab_rng_seed(&rng, o->seed, 2);
    tb_reset(t);
    double run = 0;
    for (int s = 1; s <= o->steps; s++) {
        for (int b = 0; b < o->batch; b++) {
            size_t i = (size_t)(llmlab_rng_next(&rng) % (uint64_t)train->n);
            memcpy(t->x + (size_t)b * D, train->h + i * D, sizeof(float) * D);
            t->y[b] = train->y[i * (size_t)train->K + (size_t)k];
        }
        head_forward(w, w1, b1, w2, t->x, o->batch);
        double loss = head_loss_rows(w, t->y, 1, o->batch, 1, NULL, NULL);
        head_backward(w, w2, t->x, o->batch, t->g_w1, t->g_b1, t->g_w2);
        adam_step(w1, t->g_w1, &t->a_w1, o->lr, s);
        adam_step(b1, t->g_b1, &t->a_b1, o->lr, s);
        adam_step(w2, t->g_w2, &t->a_w2, o->lr, s);
        run = s == 1 ? loss : 0.95 * run + 0.05 * loss;
        if (o->verbose && (s % (o->steps / 5 > 0 ? o->steps / 5 : 1) == 0 || s == o->steps))
            fprintf(stderr, "train-medusa: head %d step %d/%d loss %.4f\n", k, s, o->steps, run);
    }
}

/* Initial heads: W1 = 0, b1 = 0, W2 = the LM head (f32). */
static llmlab_status heads_init(llmlab_medusa_heads *h, const llmlab_model *m, int K, llmlab_err *err) {
    int D = m->cfg.dim, V = m->cfg.vocab_size;
    *h = (llmlab_medusa_heads){K, D, V, calloc((size_t)K * (size_t)D * (size_t)D, sizeof(float)),
                               calloc((size_t)K * (size_t)D, sizeof(float)),
                               malloc(sizeof(float) * (size_t)K * (size_t)V * (size_t)D)};
    if (!h->w1 || !h->b1 || !h->w2) {
        llmlab_medusa_heads_free(h);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "train-medusa: out of memory for %d heads", K);
    }
    for (int k = 0; k < K; k++)
        for (int v = 0; v < V; v++)
            llmlab_cpu_row_to_f32(h->w2 + ((size_t)k * (size_t)V + (size_t)v) * (size_t)D, m->lm_head.data,
                                  m->lm_head.dtype, v, D);
    return LLMLAB_OK;
}

llmlab_status llmlab_medusa_train(const llmlab_model *m, const llmlab_medusa_train_opts *o, llmlab_medusa_heads *out,
                                  llmlab_medusa_train_report *rep, llmlab_err *err) {
    memset(out, 0, sizeof *out);
    llmlab_medusa_train_report r = {.heads = o->heads};
    llmlab_status st = check_opts(m, o, err);
    if (st) return st;
    dataset train = {0}, held = {0};
    workspace w = {0};
    train_buf tb = {0};
    llmlab_threadpool *pool = NULL;
    double t0 = llmlab_now();
    st = make_data(m, o, &train, &held, err);
    double t1 = llmlab_now();
    if (!st) st = heads_init(out, m, o->heads, err);
    if (!st && !(pool = llmlab_threadpool_create(o->threads)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "train-medusa: cannot start threads");
    int B = o->batch;
    if (!st && (ws_init(&w, out->dim, out->vocab, B, pool) || tb_init(&tb, out->dim, out->vocab, B)))
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "train-medusa: out of memory");
    size_t D = (size_t)out->dim, VD = (size_t)out->vocab * D;
    for (int k = 0; k < o->heads && !st; k++) {
        float *w1 = out->w1 + (size_t)k * D * D, *b1 = out->b1 + (size_t)k * D, *w2 = out->w2 + (size_t)k * VD;
        evaluate(&w, w1, b1, w2, &held, k, &r.loss_before[k], &r.acc_before[k], NULL);
        train_head(&w, &tb, out, k, &train, o);
        evaluate(&w, w1, b1, w2, &held, k, &r.loss_after[k], &r.acc_after[k], &r.top5_after[k]);
    }
    r.n_train = train.n;
    r.n_heldout = held.n;
    r.seconds_data = t1 - t0;
    r.seconds_train = llmlab_now() - t1;
    if (rep) *rep = r;
    ws_free(&w);
    tb_free(&tb);
    data_free(&train);
    data_free(&held);
    llmlab_threadpool_free(pool);
    if (st) llmlab_medusa_heads_free(out);
    return st;
}

/* ---- writing ---------------------------------------------------------------------------------------- */

static llmlab_st_dtype st_dtype(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F16 ? LLMLAB_ST_F16 : t == LLMLAB_DTYPE_BF16 ? LLMLAB_ST_BF16 : LLMLAB_ST_F32;
}

/* Appends n floats to the writer in dtype (buf: [n] uint16 scratch when not f32). */
static llmlab_status put(llmlab_st_writer *wr, const float *x, size_t n, llmlab_dtype dt, uint16_t *buf,
                         llmlab_err *err) {
    if (dt == LLMLAB_DTYPE_F32) return llmlab_st_writer_data(wr, x, n * sizeof(float), err);
    for (size_t i = 0; i < n; i++) buf[i] = dt == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(x[i]) : llmlab_f32_to_bf16(x[i]);
    return llmlab_st_writer_data(wr, buf, n * sizeof *buf, err);
}

llmlab_status llmlab_medusa_heads_write(const llmlab_medusa_heads *h, llmlab_dtype dtype, const char *path,
                                        llmlab_err *err) {
    int K = h->heads;
    size_t D = (size_t)h->dim, V = (size_t)h->vocab;
    llmlab_st_write_tensor *t = calloc((size_t)K * 3, sizeof *t);
    char (*names)[48] = calloc((size_t)K * 3, sizeof *names);
    uint16_t *buf = malloc(sizeof(uint16_t) * (V > D ? V : D) * D); /* one tensor converted */
    llmlab_status st = (!t || !names || !buf) ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
    for (int k = 0; k < K && !st; k++) {
        llmlab_st_write_tensor *x = t + 3 * k;
        snprintf(names[3 * k], sizeof names[0], "%d.0.linear.weight", k);
        snprintf(names[3 * k + 1], sizeof names[0], "%d.0.linear.bias", k);
        snprintf(names[3 * k + 2], sizeof names[0], "%d.1.weight", k);
        x[0] = (llmlab_st_write_tensor){names[3 * k], st_dtype(dtype), 2, {h->dim, h->dim}, NULL};
        x[1] = (llmlab_st_write_tensor){names[3 * k + 1], st_dtype(dtype), 1, {h->dim}, NULL};
        x[2] = (llmlab_st_write_tensor){names[3 * k + 2], st_dtype(dtype), 2, {h->vocab, h->dim}, NULL};
    }
    llmlab_st_writer *wr = NULL;
    if (!st) st = llmlab_st_writer_open(&wr, path, t, K * 3, err);
    for (int k = 0; k < K && !st; k++) {
        st = put(wr, h->w1 + (size_t)k * D * D, D * D, dtype, buf, err);
        if (!st) st = put(wr, h->b1 + (size_t)k * D, D, dtype, buf, err);
        if (!st) st = put(wr, h->w2 + (size_t)k * V * D, V * D, dtype, buf, err);
    }
    if (wr) {
        if (st) llmlab_st_writer_abort(wr);
        else st = llmlab_st_writer_finish(wr, err);
    }
    free(t);
    free(names);
    free(buf);
    return st;
}
