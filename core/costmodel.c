/* costmodel.c - iteration time from composition: a fitted linear form and a
 * roofline form (costmodel.h, docs/serving.md "Simulator and cost model"). */
#include "costmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "generate.h"
#include "kernels/cpu/kernels.h"
#include "threadpool.h"

void llmlab_iter_add(llmlab_iter_shape *it, int chunk, int cached) {
    if (chunk <= 0) {
        it->decode_seqs++;
        it->decode_kv += cached + 1; /* the decode token sees itself too */
        return;
    }
    it->prefill_seqs++;
    it->prefill_tokens += chunk;
    it->prefill_ctx += cached;
    it->prefill_attn += (double)chunk * cached + (double)chunk * (chunk + 1) / 2.0;
}

void llmlab_model_shape_of(llmlab_model_shape *s, const llmlab_config *c, double bpw, double kv_bytes) {
    memset(s, 0, sizeof *s);
    s->n_layers = c->n_layers;
    s->dim = c->dim;
    s->ffn_dim = c->ffn_dim;
    s->n_heads = c->n_heads;
    s->n_kv_heads = c->n_kv_heads;
    s->head_dim = c->head_dim;
    s->vocab = c->vocab_size;
    double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    double per_layer = (double)c->dim * (q + 2 * kv) + q * c->dim + 3.0 * c->dim * c->ffn_dim;
    s->weight_params = per_layer * c->n_layers + (double)c->dim * c->vocab_size;
    s->weight_bytes = s->weight_params * bpw;
    s->kv_bytes_per_token = 2.0 * c->n_layers * kv * kv_bytes;
}

/* ---- hardware specs -------------------------------------------------------------- */

/* Dense bf16 tensor-core peaks and HBM bandwidths from the vendors' data sheets
 * (SXM parts; sparsity excluded). */
static const llmlab_hw_spec builtin_hw[] = {
    {"h200", 989e12, 4.8e12, 1, 1, 0},
    {"h100", 989e12, 3.35e12, 1, 1, 0},
    {"a100", 312e12, 2.039e12, 1, 1, 0},
    {"l40s", 362e12, 0.864e12, 1, 1, 0},
};

/* Achieved f32 matmul rate of this machine: a [256][1024] x [1024][1024] product,
 * best of three (the rate a prefill can reach, not the FMA peak). */
static double measure_matmul_rate(llmlab_threadpool *tp) {
    enum { M = 256, N = 1024, K = 1024 };
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K), *y = malloc(sizeof(float) * M * N);
    double best = 0;
    if (x && w && y) {
        for (int i = 0; i < M * K; i++) x[i] = (float)(((unsigned)i * 7919u) % 1000u) * 1e-3f;
        for (int i = 0; i < N * K; i++) w[i] = (float)(((unsigned)i * 104729u) % 1000u) * 1e-3f - 0.5f;
        for (int r = 0; r < 3; r++) {
            double t0 = llmlab_now();
            llmlab_cpu_matmul(y, x, w, LLMLAB_DTYPE_F32, M, N, K, tp);
            double dt = llmlab_now() - t0, rate = dt > 0 ? 2.0 * M * N * K / dt : 0;
            if (rate > best) best = rate;
        }
    }
    free(x), free(w), free(y);
    return best;
}

llmlab_status llmlab_hw_lookup(const char *name, int n_threads, llmlab_hw_spec *out, llmlab_err *err) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof builtin_hw / sizeof builtin_hw[0]; i++)
        if (!strcmp(name, builtin_hw[i].name)) {
            *out = builtin_hw[i];
            return LLMLAB_OK;
        }
    if (strcmp(name, "cpu-measured"))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "hardware '%s' is not known (built-in: h200, h100, a100, l40s, cpu-measured; or give "
                              "peak_flops and mem_bw)", name);
    llmlab_threadpool *tp = llmlab_threadpool_create(n_threads > 0 ? n_threads : llmlab_ncores());
    if (!tp) return llmlab_err_set(err, LLMLAB_ENOMEM, "cpu-measured: cannot start %d threads", n_threads);
    snprintf(out->name, sizeof out->name, "cpu-measured");
    out->mem_bw = llmlab_cpu_read_bandwidth(tp, (size_t)256 << 20, 3);
    out->peak_flops = measure_matmul_rate(tp);
    out->compute_eff = out->memory_eff = 1;
    llmlab_threadpool_free(tp);
    if (!(out->mem_bw > 0) || !(out->peak_flops > 0))
        return llmlab_err_set(err, LLMLAB_EINVAL, "cpu-measured: the measurement failed (bandwidth %g B/s, %g FLOP/s)",
                              out->mem_bw, out->peak_flops);
    return LLMLAB_OK;
}

/* ---- prediction ------------------------------------------------------------------- */

static void features(const llmlab_iter_shape *it, double f[LLMLAB_COST_NTERMS]) {
    f[LLMLAB_COST_C0] = 1;
    f[LLMLAB_COST_PF] = it->prefill_tokens;
    f[LLMLAB_COST_DEC] = it->decode_seqs;
    f[LLMLAB_COST_KV] = it->decode_kv;
    f[LLMLAB_COST_ATTN] = it->prefill_attn;
}

static double roofline_time(const llmlab_costmodel *m, const llmlab_iter_shape *it) {
    const llmlab_model_shape *s = &m->shape;
    const llmlab_hw_spec *h = &m->hw;
    double tokens = it->prefill_tokens + it->decode_seqs;
    double logit_rows = it->decode_seqs + it->prefill_seqs;
    double layer_params = s->weight_params - (double)s->dim * s->vocab;
    double flops = 2.0 * layer_params * tokens + 2.0 * s->dim * (double)s->vocab * logit_rows +
                   4.0 * s->n_layers * (double)s->n_heads * s->head_dim * (it->decode_kv + it->prefill_attn);
    double bytes = s->weight_bytes + s->kv_bytes_per_token * (it->decode_kv + it->prefill_ctx + tokens);
    double tc = flops / (h->peak_flops * h->compute_eff), tm = bytes / (h->mem_bw * h->memory_eff);
    return h->overhead_s + (tc > tm ? tc : tm);
}

double llmlab_cost_predict(const llmlab_costmodel *m, const llmlab_iter_shape *it) {
    if (m->kind == LLMLAB_COST_ROOFLINE) return roofline_time(m, it);
    double f[LLMLAB_COST_NTERMS], t = 0;
    features(it, f);
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++) t += m->coef[k] * f[k];
    return t > 0 ? t : 0;
}

/* ---- fitting ---------------------------------------------------------------------- */

/* Solves A x = b (n x n, row-major) by Gaussian elimination with partial
 * pivoting; returns -1 when A is singular. */
static int solve(double *A, double *b, double *x, int n) {
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c])) p = r;
        if (fabs(A[p * n + c]) < 1e-12) return -1;
        for (int k = 0; k < n; k++) {
            double t = A[c * n + k];
            A[c * n + k] = A[p * n + k];
            A[p * n + k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < n; r++) {
            double f = A[r * n + c] / A[c * n + c];
            for (int k = c; k < n; k++) A[r * n + k] -= f * A[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        double s = b[c];
        for (int k = c + 1; k < n; k++) s -= A[c * n + k] * x[k];
        x[c] = s / A[c * n + c];
    }
    return 0;
}

/* Relative least squares over the active terms: minimizes sum ((pred - t) / t)^2,
 * so short and long iterations weigh alike.  Features are scaled by their
 * largest value first to keep the normal equations well conditioned. */
static int fit_active(const llmlab_iter_shape *its, const double *t, int n, const int *active, const double *scale,
                      double *coef) {
    enum { T = LLMLAB_COST_NTERMS };
    int idx[T], na = 0;
    for (int k = 0; k < T; k++)
        if (active[k]) idx[na++] = k;
    double A[T * T] = {0}, b[T] = {0}, x[T] = {0};
    for (int i = 0; i < n; i++) {
        double f[T], w = 1.0 / (t[i] * t[i]);
        features(&its[i], f);
        for (int a = 0; a < na; a++) {
            double fa = f[idx[a]] / scale[idx[a]];
            b[a] += w * fa * t[i];
            for (int c = 0; c < na; c++) A[a * na + c] += w * fa * f[idx[c]] / scale[idx[c]];
        }
    }
    if (solve(A, b, x, na)) return -1;
    memset(coef, 0, sizeof(double) * T);
    for (int a = 0; a < na; a++) coef[idx[a]] = x[a] / scale[idx[a]];
    return 0;
}

static void fit_quality(llmlab_costmodel *m, const llmlab_iter_shape *its, const double *t, int n) {
    double mean = 0, ss_tot = 0, ss_res = 0, ape = 0;
    for (int i = 0; i < n; i++) mean += t[i] / n;
    for (int i = 0; i < n; i++) {
        double p = llmlab_cost_predict(m, &its[i]);
        ss_res += (p - t[i]) * (p - t[i]);
        ss_tot += (t[i] - mean) * (t[i] - mean);
        ape += fabs(p - t[i]) / t[i];
    }
    m->fit_mape = ape / n;
    m->fit_r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1;
}

llmlab_status llmlab_cost_fit(llmlab_costmodel *m, const llmlab_iter_shape *its, const double *t, int n,
                              llmlab_err *err) {
    enum { T = LLMLAB_COST_NTERMS };
    if (n < T) return llmlab_err_set(err, LLMLAB_EINVAL, "cost model fit: %d iterations, need at least %d", n, T);
    double scale[T] = {0};
    for (int i = 0; i < n; i++) {
        if (!(t[i] > 0) || !isfinite(t[i]))
            return llmlab_err_set(err, LLMLAB_EINVAL, "cost model fit: iteration %d has time %g s (must be > 0)", i, t[i]);
        double f[T];
        features(&its[i], f);
        for (int k = 0; k < T; k++)
            if (fabs(f[k]) > scale[k]) scale[k] = fabs(f[k]);
    }
    int active[T];
    for (int k = 0; k < T; k++) active[k] = scale[k] > 0; /* a term never exercised stays 0 */
    double coef[T];
    /* Active-set refits: drop the most negative coefficient until none is left
     * (a physical cost is never negative; it happens when terms are collinear). */
    for (int round = 0; round < T; round++) {
        if (fit_active(its, t, n, active, scale, coef))
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "cost model fit: the profiled iterations do not vary enough to separate the terms "
                                  "(profile more batch compositions)");
        int worst = -1;
        for (int k = 0; k < T; k++)
            if (active[k] && coef[k] < 0 && (worst < 0 || coef[k] * scale[k] < coef[worst] * scale[worst])) worst = k;
        if (worst < 0) break;
        active[worst] = 0;
    }
    m->kind = LLMLAB_COST_FITTED;
    memcpy(m->coef, coef, sizeof coef);
    m->n_samples = n;
    fit_quality(m, its, t, n);
    return LLMLAB_OK;
}

llmlab_status llmlab_cost_roofline(llmlab_costmodel *m, const llmlab_model_shape *shape, const llmlab_hw_spec *hw,
                                   llmlab_err *err) {
    if (!(hw->peak_flops > 0) || !(hw->mem_bw > 0))
        return llmlab_err_set(err, LLMLAB_EINVAL, "roofline '%s': peak_flops (%g) and mem_bw (%g) must be > 0",
                              hw->name, hw->peak_flops, hw->mem_bw);
    if (!(hw->compute_eff > 0 && hw->compute_eff <= 1) || !(hw->memory_eff > 0 && hw->memory_eff <= 1))
        return llmlab_err_set(err, LLMLAB_EINVAL, "roofline '%s': compute_eff (%g) and memory_eff (%g) must be in (0, 1]",
                              hw->name, hw->compute_eff, hw->memory_eff);
    if (hw->overhead_s < 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "roofline '%s': overhead_s %g is negative", hw->name, hw->overhead_s);
    if (shape->n_layers <= 0 || shape->weight_bytes <= 0)
        return llmlab_err_set(err, LLMLAB_EINVAL, "roofline: the model shape is empty (layers %d, weight bytes %g)",
                              shape->n_layers, shape->weight_bytes);
    memset(m, 0, sizeof *m);
    m->kind = LLMLAB_COST_ROOFLINE;
    m->shape = *shape;
    m->hw = *hw;
    snprintf(m->machine, sizeof m->machine, "%s", hw->name);
    return LLMLAB_OK;
}

/* ---- profile.json ------------------------------------------------------------------- */

static const char *const coef_names[LLMLAB_COST_NTERMS] = {"c0_s", "prefill_token_s", "decode_seq_s",
                                                            "decode_kv_token_s", "prefill_attn_pair_s"};

static void shape_to_json(cJSON *o, const llmlab_model_shape *s) {
    cJSON_AddNumberToObject(o, "layers", s->n_layers);
    cJSON_AddNumberToObject(o, "dim", s->dim);
    cJSON_AddNumberToObject(o, "ffn_dim", s->ffn_dim);
    cJSON_AddNumberToObject(o, "heads", s->n_heads);
    cJSON_AddNumberToObject(o, "kv_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", s->head_dim);
    cJSON_AddNumberToObject(o, "vocab", s->vocab);
    cJSON_AddNumberToObject(o, "weight_params", s->weight_params);
    cJSON_AddNumberToObject(o, "weight_bytes", s->weight_bytes);
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", s->kv_bytes_per_token);
}

llmlab_status llmlab_cost_save(const llmlab_costmodel *m, const char *path, llmlab_err *err) {
    cJSON *root = cJSON_CreateObject(), *coef = cJSON_CreateObject(), *shape = cJSON_CreateObject(),
          *hw = cJSON_CreateObject();
    if (!root || !coef || !shape || !hw) {
        cJSON_Delete(root), cJSON_Delete(coef), cJSON_Delete(shape), cJSON_Delete(hw);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    }
    cJSON_AddStringToObject(root, "format", "llmlab-costmodel-1");
    cJSON_AddStringToObject(root, "kind", m->kind == LLMLAB_COST_ROOFLINE ? "roofline" : "fitted");
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++) cJSON_AddNumberToObject(coef, coef_names[k], m->coef[k]);
    cJSON_AddItemToObject(root, "coef", coef);
    shape_to_json(shape, &m->shape);
    cJSON_AddItemToObject(root, "shape", shape);
    cJSON_AddStringToObject(hw, "name", m->hw.name);
    cJSON_AddNumberToObject(hw, "peak_flops", m->hw.peak_flops);
    cJSON_AddNumberToObject(hw, "mem_bw", m->hw.mem_bw);
    cJSON_AddNumberToObject(hw, "compute_eff", m->hw.compute_eff);
    cJSON_AddNumberToObject(hw, "memory_eff", m->hw.memory_eff);
    cJSON_AddNumberToObject(hw, "overhead_s", m->hw.overhead_s);
    cJSON_AddItemToObject(root, "hw", hw);
    cJSON_AddStringToObject(root, "machine", m->machine);
    cJSON_AddStringToObject(root, "model", m->model);
    cJSON_AddNumberToObject(root, "threads", m->threads);
    cJSON_AddNumberToObject(root, "samples", m->n_samples);
    cJSON_AddNumberToObject(root, "fit_mape", m->fit_mape);
    cJSON_AddNumberToObject(root, "fit_r2", m->fit_r2);
    cJSON_AddNumberToObject(root, "engine_overhead_c0_s", m->overhead_c0);
    cJSON_AddNumberToObject(root, "engine_overhead_decode_s", m->overhead_dec);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "wb");
    int bad = !f || fputs(text, f) < 0 || fputc('\n', f) < 0;
    if (f && fclose(f)) bad = 1;
    free(text);
    return bad ? llmlab_err_set(err, LLMLAB_EIO, "%s: cannot write the cost model", path) : LLMLAB_OK;
}

/* Reads number `key` of object o into *v; missing = error naming the field. */
static llmlab_status num_field(const cJSON *o, const char *where, const char *key, double *v, const char *path,
                               llmlab_err *err) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s.%s must be a number (got %s)", path, where, key,
                              llmlab_json_type_name(x));
    *v = x->valuedouble;
    return LLMLAB_OK;
}

static llmlab_status shape_from_json(llmlab_model_shape *s, const cJSON *o, const char *path, llmlab_err *err) {
    const char *ik[] = {"layers", "dim", "ffn_dim", "heads", "kv_heads", "head_dim", "vocab"};
    int *iv[] = {&s->n_layers, &s->dim, &s->ffn_dim, &s->n_heads, &s->n_kv_heads, &s->head_dim, &s->vocab};
    llmlab_status st = LLMLAB_OK;
    for (int k = 0; k < 7 && !st; k++) {
        double v = 0;
        st = num_field(o, "shape", ik[k], &v, path, err);
        *iv[k] = (int)v;
    }
    if (!st) st = num_field(o, "shape", "weight_params", &s->weight_params, path, err);
    if (!st) st = num_field(o, "shape", "weight_bytes", &s->weight_bytes, path, err);
    if (!st) st = num_field(o, "shape", "kv_bytes_per_token", &s->kv_bytes_per_token, path, err);
    return st;
}

static llmlab_status hw_from_json(llmlab_hw_spec *h, const cJSON *o, const char *path, llmlab_err *err) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    snprintf(h->name, sizeof h->name, "%s", cJSON_IsString(name) ? name->valuestring : "");
    llmlab_status st = num_field(o, "hw", "peak_flops", &h->peak_flops, path, err);
    if (!st) st = num_field(o, "hw", "mem_bw", &h->mem_bw, path, err);
    if (!st) st = num_field(o, "hw", "compute_eff", &h->compute_eff, path, err);
    if (!st) st = num_field(o, "hw", "memory_eff", &h->memory_eff, path, err);
    if (!st) st = num_field(o, "hw", "overhead_s", &h->overhead_s, path, err);
    return st;
}

static void str_field(const cJSON *o, const char *key, char *out, size_t cap) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, cap, "%s", cJSON_IsString(x) ? x->valuestring : "");
}

static llmlab_status cost_from_json(llmlab_costmodel *m, const cJSON *root, const char *path, llmlab_err *err) {
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "fitted") && strcmp(kind->valuestring, "roofline")))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: \"kind\" must be \"fitted\" or \"roofline\"", path);
    m->kind = strcmp(kind->valuestring, "roofline") ? LLMLAB_COST_FITTED : LLMLAB_COST_ROOFLINE;
    const cJSON *coef = cJSON_GetObjectItemCaseSensitive(root, "coef");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "shape");
    const cJSON *hw = cJSON_GetObjectItemCaseSensitive(root, "hw");
    if (!cJSON_IsObject(coef) || !cJSON_IsObject(shape) || !cJSON_IsObject(hw))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: \"coef\", \"shape\" and \"hw\" must be objects", path);
    llmlab_status st = LLMLAB_OK;
    for (int k = 0; k < LLMLAB_COST_NTERMS && !st; k++) {
        st = num_field(coef, "coef", coef_names[k], &m->coef[k], path, err);
        if (!st && m->kind == LLMLAB_COST_FITTED && !(m->coef[k] >= 0))
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: coef.%s = %g must be >= 0", path, coef_names[k], m->coef[k]);
    }
    if (!st) st = shape_from_json(&m->shape, shape, path, err);
    if (!st) st = hw_from_json(&m->hw, hw, path, err);
    if (st) return st;
    str_field(root, "machine", m->machine, sizeof m->machine);
    str_field(root, "model", m->model, sizeof m->model);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "threads");
    m->threads = cJSON_IsNumber(x) ? x->valueint : 0;
    x = cJSON_GetObjectItemCaseSensitive(root, "samples");
    m->n_samples = cJSON_IsNumber(x) ? x->valueint : 0;
    x = cJSON_GetObjectItemCaseSensitive(root, "fit_mape");
    m->fit_mape = cJSON_IsNumber(x) ? x->valuedouble : 0;
    x = cJSON_GetObjectItemCaseSensitive(root, "fit_r2");
    m->fit_r2 = cJSON_IsNumber(x) ? x->valuedouble : 0;
    x = cJSON_GetObjectItemCaseSensitive(root, "engine_overhead_c0_s");
    m->overhead_c0 = cJSON_IsNumber(x) ? x->valuedouble : 0;
    x = cJSON_GetObjectItemCaseSensitive(root, "engine_overhead_decode_s");
    m->overhead_dec = cJSON_IsNumber(x) ? x->valuedouble : 0;
    if (m->kind == LLMLAB_COST_ROOFLINE) {
        llmlab_costmodel r;
        if ((st = llmlab_cost_roofline(&r, &m->shape, &m->hw, err))) return llmlab_err_prefix(err, "%s", path);
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_cost_load(llmlab_costmodel *m, const char *path, llmlab_err *err) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot open the cost model", path);
    char *text = NULL;
    long len = -1;
    if (!fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (text = calloc((size_t)len + 1, 1)))
        if (fread(text, 1, (size_t)len, f) != (size_t)len) len = -1;
    fclose(f);
    if (!text || len < 0) {
        free(text);
        return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot read the cost model", path);
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: not a JSON object (a profile from `llmlab profile`?)", path);
    }
    llmlab_status st = cost_from_json(m, root, path, err);
    cJSON_Delete(root);
    return st;
}
