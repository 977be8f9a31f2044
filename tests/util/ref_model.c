/* ref_model.c - plain loops, double precision, straight from the HF modeling code. */
#include "ref_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

static double w_at(const llmlab_mat *w, int64_t r, int64_t c) {
    size_t i = (size_t)(r * w->cols + c);
    switch (w->dtype) {
    case LLMLAB_DTYPE_F32: return ((const float *)w->data)[i];
    case LLMLAB_DTYPE_F16: return llmlab_f16_to_f32(((const uint16_t *)w->data)[i]);
    case LLMLAB_DTYPE_BF16: return llmlab_bf16_to_f32(((const uint16_t *)w->data)[i]);
    default: break; /* block formats: the reference model reads plain weights only */
    }
    return 0;
}

/* y[T][rows] = x[T][cols] W^T (+ b) */
static void linear(double *y, const double *x, const llmlab_mat *w, const float *b, int T) {
    for (int t = 0; t < T; t++)
        for (int64_t r = 0; r < w->rows; r++) {
            double s = b ? b[r] : 0.0;
            for (int64_t c = 0; c < w->cols; c++) s += x[t * w->cols + c] * w_at(w, r, c);
            y[t * w->rows + r] = s;
        }
}

static void rmsnorm(double *y, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

static void rope(double *v, int hd, int pos, const llmlab_config *c) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow((double)c->rope_theta, -2.0 * i / hd);
        double a = pos * inv_freq, x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cos(a) - x1 * sin(a);
        v[i + half] = x1 * cos(a) + x0 * sin(a);
    }
}

static void attention(double *out, const double *q, const double *k, const double *v, int T,
                      const llmlab_config *c) {
    int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, group = nh / nkv;
    double *p = malloc((size_t)T * sizeof *p);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            int g = h / group;
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += q[(t * nh + h) * hd + i] * k[(s * nkv + g) * hd + i];
                p[s] = d / sqrt((double)hd);
                if (p[s] > mx) mx = p[s];
            }
            for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int s = 0; s <= t; s++) acc += p[s] * v[(s * nkv + g) * hd + i];
                out[(t * nh + h) * hd + i] = acc / sum;
            }
        }
    free(p);
}

void ref_forward(const llmlab_model *m, const int32_t *tokens, int T, double *logits,
                 int tap_layer, double *tap) {
    const llmlab_config *c = &m->cfg;
    int D = c->dim, F = c->ffn_dim, Q = c->n_heads * c->head_dim, K = c->n_kv_heads * c->head_dim;
    double *x = calloc((size_t)T * D, sizeof *x), *h = calloc((size_t)T * D, sizeof *h);
    double *q = calloc((size_t)T * Q, sizeof *q), *k = calloc((size_t)T * K, sizeof *k);
    double *v = calloc((size_t)T * K, sizeof *v), *a = calloc((size_t)T * Q, sizeof *a);
    double *g = calloc((size_t)T * F, sizeof *g), *u = calloc((size_t)T * F, sizeof *u);
    double *o = calloc((size_t)T * D, sizeof *o);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) x[t * D + i] = w_at(&m->embed, tokens[t], i);
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) rmsnorm(h + t * D, x + t * D, L->attn_norm, D, c->rms_eps);
        linear(q, h, &L->wq, L->bq, T);
        linear(k, h, &L->wk, L->bk, T);
        linear(v, h, &L->wv, L->bv, T);
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < c->n_heads; hh++) rope(q + t * Q + hh * c->head_dim, c->head_dim, t, c);
            for (int hh = 0; hh < c->n_kv_heads; hh++) rope(k + t * K + hh * c->head_dim, c->head_dim, t, c);
        }
        attention(a, q, k, v, T, c);
        linear(o, a, &L->wo, NULL, T);
        for (int i = 0; i < T * D; i++) x[i] += o[i];
        for (int t = 0; t < T; t++) rmsnorm(h + t * D, x + t * D, L->ffn_norm, D, c->rms_eps);
        linear(g, h, &L->w_gate, NULL, T);
        linear(u, h, &L->w_up, NULL, T);
        for (int i = 0; i < T * F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        linear(o, g, &L->w_down, NULL, T);
        for (int i = 0; i < T * D; i++) x[i] += o[i];
        if (l == tap_layer && tap) memcpy(tap, x, (size_t)T * D * sizeof *x);
    }
    if (logits) {
        for (int t = 0; t < T; t++) rmsnorm(h + t * D, x + t * D, m->final_norm, D, c->rms_eps);
        linear(logits, h, &m->lm_head, NULL, T);
    }
    free(x); free(h); free(q); free(k); free(v); free(a); free(g); free(u); free(o);
}
