/* test_synth.c - synthetic models: determinism, seeds, sharding, presets, RoPE
 * inverse frequencies against transformers, logits that are not flat, and the
 * `llmlab synth` argument parser. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/model.h"
#include "core/synth.h"
#include "util/fsutil.h"

/* The CLI lives in the binary, not the library: compile it into this test. */
#include "core/cli/cmd_synth.c"

static char *dir;

static void setup(void) { dir = fsu_mkdtemp(); cr_assert_not_null(dir); }
static void teardown(void) {
    fsu_rmtree(dir);
    free(dir);
}

TestSuite(synth, .init = setup, .fini = teardown);

static char *sub(const char *name) { return fsu_join(dir, name); }

static void write_to(const llmlab_synth_opts *o, const char *d) {
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_write(o, d, &e), LLMLAB_OK, "%s", e.msg);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = fsu_read(a, &na), *y = fsu_read(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static int same_in(const char *da, const char *db, const char *name) {
    char *a = fsu_join(da, name), *b = fsu_join(db, name);
    int s = same_file(a, b);
    free(a);
    free(b);
    return s;
}

Test(synth, deterministic) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    o.seed = 42;
    o.dtype = LLMLAB_DTYPE_BF16;
    char *a = sub("a"), *b = sub("b/nested"), *c = sub("c");
    write_to(&o, a);
    write_to(&o, b);
    cr_assert(same_in(a, b, "config.json"));
    cr_assert(same_in(a, b, "model.safetensors"), "same seed, different bytes");
    o.seed = 43;
    write_to(&o, c);
    cr_assert(same_in(a, c, "config.json"));
    cr_assert_not(same_in(a, c, "model.safetensors"), "different seed, same bytes");
    free(a);
    free(b);
    free(c);
}

Test(synth, sharded_equals_unsharded) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    o.seed = 3;
    o.cfg.qkv_bias = 1;
    char *a = sub("one"), *b = sub("four");
    write_to(&o, a);
    o.n_shards = 4;
    write_to(&o, b);
    llmlab_st_set sa = {0}, sb = {0};
    llmlab_err e = {0};
    cr_assert_eq(llmlab_st_open_dir(&sa, a, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(llmlab_st_open_dir(&sb, b, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(sa.n_files, 1);
    cr_assert_eq(sb.n_files, 4);
    cr_assert_eq(sa.n_tensors, sb.n_tensors);
    uint64_t total = 0;
    for (int i = 0; i < sa.n_tensors; i++) {
        const llmlab_st_tensor *x = &sa.tensors[i], *y = llmlab_st_find(&sb, x->name);
        cr_assert_not_null(y, "%s missing from shards", x->name);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs", x->name);
        total += x->nbytes;
    }
    /* index.json: total_size and one entry per tensor */
    char *ip = fsu_join(b, "model.safetensors.index.json");
    char *text = fsu_read(ip, NULL);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root);
    cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size");
    cr_assert(cJSON_IsNumber(ts));
    cr_assert_eq((uint64_t)ts->valuedouble, total);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "weight_map")), sa.n_tensors);
    cJSON_Delete(root);
    free(text);
    free(ip);
    char *p = fsu_join(b, "model-00004-of-00004.safetensors");
    cr_assert(fsu_exists(p));
    free(p);
    llmlab_st_close(&sa);
    llmlab_st_close(&sb);
    /* rewriting the sharded dir unsharded drops the index */
    o.n_shards = 1;
    write_to(&o, b);
    cr_assert(same_in(a, b, "model.safetensors"));
    char *idx = fsu_join(b, "model.safetensors.index.json");
    cr_assert_not(fsu_exists(idx));
    free(idx);
    free(a);
    free(b);
}

Test(synth, presets) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "nope"), -1);
    cr_assert_eq(llmlab_synth_preset(&o, "tinyllama-1.1b"), 0);
    cr_assert_eq(o.dtype, LLMLAB_DTYPE_BF16);
    cr_assert_eq(o.cfg.head_dim, 64);
    /* TinyLlama-1.1B and Llama-3-8B parameter counts as published */
    cr_assert_eq(llmlab_synth_param_count(&o.cfg), 1100048384ull);
    cr_assert_eq(llmlab_synth_preset(&o, "llama3-8b"), 0);
    cr_assert_eq(llmlab_synth_param_count(&o.cfg), 8030261248ull);
    cr_assert_eq(o.cfg.rope_kind, LLMLAB_ROPE_LLAMA3);
    cr_assert_eq(o.cfg.bos_id, 128000);
    cr_assert_eq(o.cfg.eos_ids[0], 128001);
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    cr_assert_eq(o.cfg.vocab_size, 512);
    cr_assert_eq(o.cfg.ffn_dim, 172);
    cr_assert_eq(o.dtype, LLMLAB_DTYPE_F32);
}

Test(synth, rejects_bad_shapes) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    o.cfg.n_kv_heads = 3;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_synth_write(&o, dir, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, "num_key_value_heads"), "%s", e.msg);
    llmlab_synth_preset(&o, "tiny");
    o.n_shards = 1000;
    cr_assert_eq(llmlab_synth_write(&o, dir, &e), LLMLAB_EINVAL);
    cr_assert(strstr(e.msg, "shards"), "%s", e.msg);
}

/* Bit patterns of transformers 5.x `_compute_llama3_parameters` (float32) for
 * head_dim 128, theta 500000, factor 8, low 1, high 4, original 8192. */
static const uint32_t LLAMA3_INV_FREQ[64] = {
    1065353216, 1062243009, 1059709382, 1057645444, 1054963644, 1052224381, 1049992931, 1047774305,
    1044812720, 1042400160, 1040434848, 1037480348, 1034871981, 1032747160, 1030233703, 1027413636,
    1025116360, 1023079743, 1020030793, 1017547065, 1015523779, 1012729580, 1010044269, 1007856767,
    1005516623, 1002613366, 1000248322, 998321717,  995260192,  990772486,  984863005,  979408798,
    973706706,  967045384,  960179666,  952658054,  950223245,  948239807,  945335425,  942703001,
    940558584,  938099311,  935253236,  932934773,  930956739,  927879669,  925373035,  923331087,
    920588484,  917878407,  915670731,  913386368,  910456336,  908069481,  906125108,  903112712,
    900532135,  898429952,  895853901,  893063879,  890791079,  888686786,  885670320,  883213055};

static float bits_to_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(synth, llama3_inv_freq_matches_transformers) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    o.cfg.dim = 256, o.cfg.n_heads = 2, o.cfg.n_kv_heads = 1, o.cfg.head_dim = 128, o.cfg.n_layers = 1;
    o.cfg.rope_theta = 500000.0f, o.cfg.rope_kind = LLMLAB_ROPE_LLAMA3, o.cfg.rope_factor = 8.0f;
    o.cfg.rope_low_freq_factor = 1.0f, o.cfg.rope_high_freq_factor = 4.0f, o.cfg.rope_orig_max_pos = 8192;
    o.cfg.max_pos = 16384;
    write_to(&o, dir);
    llmlab_model *m = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_model_load(&m, dir, &e), LLMLAB_OK, "%s", e.msg);
    int exact = 0;
    for (int i = 0; i < 64; i++) {
        float want = bits_to_f(LLAMA3_INV_FREQ[i]), got = m->rope_inv_freq[i];
        uint32_t gb;
        memcpy(&gb, &got, 4);
        exact += gb == LLAMA3_INV_FREQ[i];
        /* glibc powf and torch's SLEEF pow may differ by an ulp */
        cr_assert(fabsf(got - want) <= 4e-7f * want, "inv_freq[%d] = %.9g, transformers %.9g", i, got, want);
    }
    cr_assert_geq(exact, 56, "only %d of 64 bit-exact", exact);
    /* hand-checked: high band unchanged, low band divided by 8, one smoothed value */
    cr_assert_float_eq(m->rope_inv_freq[0], 1.0f, 0);
    double f10 = 1.0 / pow(500000.0, 20.0 / 128), f63 = 1.0 / pow(500000.0, 126.0 / 128) / 8;
    cr_assert(fabs(m->rope_inv_freq[10] - f10) < 1e-6 * f10, "%.9g vs %.9g", m->rope_inv_freq[10], f10);
    cr_assert(fabs(m->rope_inv_freq[63] - f63) < 1e-6 * f63, "%.9g vs %.9g", m->rope_inv_freq[63], f63);
    double f30 = 1.0 / pow(500000.0, 60.0 / 128), wl = 2 * M_PI / f30, s = (8192 / wl - 1) / 3;
    double w30 = (1 - s) * f30 / 8 + s * f30; /* smoothed band: 2048 < wavelen 2948 < 8192 */
    cr_assert(s > 0 && s < 1);
    cr_assert(fabs(m->rope_inv_freq[30] - w30) < 1e-5 * w30, "%.9g vs %.9g", m->rope_inv_freq[30], w30);
    cr_log_info("llama3 inv_freq: %d of 64 bit-identical to transformers", exact);
    llmlab_model_free(m);
}

Test(synth, default_inv_freq) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    write_to(&o, dir);
    llmlab_model *m = NULL;
    cr_assert_eq(llmlab_model_load(&m, dir, NULL), LLMLAB_OK);
    /* torch: 1.0 / (10000 ** (arange(0, 16, 2).float() / 16)) */
    const uint32_t want[8] = {1065353216, 1050798235, 1036831949, 1023510243,
                              1008981770, 995049016,  981668463,  967166816};
    for (int i = 0; i < 8; i++)
        cr_assert_float_eq(m->rope_inv_freq[i], bits_to_f(want[i]), 2e-7f * bits_to_f(want[i]), "i=%d", i);
    llmlab_model_free(m);
}

/* ---- a naive f32 forward, to check that logits spread over several units ---------- */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) o[i] = x[i] * r * w[i];
}

static void matvec(float *o, const llmlab_mat *w, const float *x) {
    const float *a = w->data;
    for (int64_t r = 0; r < w->rows; r++) {
        double s = 0;
        for (int64_t c = 0; c < w->cols; c++) s += (double)a[r * w->cols + c] * x[c];
        o[r] = (float)s;
    }
}

static void rope(float *v, int nh, int hd, int pos, const float *inv) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd / 2; i++) {
            float *a = &v[h * hd + i], *b = &v[h * hd + i + hd / 2];
            float c = cosf(pos * inv[i]), s = sinf(pos * inv[i]), x = *a, y = *b;
            *a = x * c - y * s;
            *b = y * c + x * s;
        }
}

Test(synth, tiny_logits_are_not_flat) {
    llmlab_synth_opts o;
    llmlab_synth_preset(&o, "tiny");
    write_to(&o, dir);
    llmlab_model *m = NULL;
    cr_assert_eq(llmlab_model_load(&m, dir, NULL), LLMLAB_OK);
    const llmlab_config *c = &m->cfg;
    enum { T = 8 };
    int D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, F = c->ffn_dim, V = c->vocab_size;
    int toks[T] = {1, 17, 300, 42, 42, 7, 511, 99};
    float *x = calloc((size_t)T * D, 4), *xn = calloc((size_t)D, 4), *q = calloc((size_t)H * hd, 4);
    float *K = calloc((size_t)T * KV * hd, 4), *Vv = calloc((size_t)T * KV * hd, 4);
    float *att = calloc((size_t)H * hd, 4), *tmp = calloc((size_t)D, 4), *g = calloc((size_t)F, 4);
    float *u = calloc((size_t)F, 4), *logits = calloc((size_t)V, 4);
    for (int t = 0; t < T; t++) memcpy(&x[t * D], (const float *)m->embed.data + (size_t)toks[t] * D, (size_t)D * 4);
    for (int l = 0; l < c->n_layers; l++) {
        const llmlab_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) { /* causal: position t sees 0..t, K/V filled in order */
            float *xt = &x[t * D];
            rmsnorm(xn, xt, L->attn_norm, D, c->rms_eps);
            matvec(q, &L->wq, xn);
            matvec(&K[t * KV * hd], &L->wk, xn);
            matvec(&Vv[t * KV * hd], &L->wv, xn);
            rope(q, H, hd, t, m->rope_inv_freq);
            rope(&K[t * KV * hd], KV, hd, t, m->rope_inv_freq);
            for (int h = 0; h < H; h++) {
                int kh = h / (H / KV);
                float sc[T], mx = -1e30f, sum = 0;
                for (int s = 0; s <= t; s++) {
                    float d = 0;
                    for (int i = 0; i < hd; i++) d += q[h * hd + i] * K[(s * KV + kh) * hd + i];
                    sc[s] = d / sqrtf((float)hd);
                    mx = fmaxf(mx, sc[s]);
                }
                for (int s = 0; s <= t; s++) sum += sc[s] = expf(sc[s] - mx);
                for (int i = 0; i < hd; i++) {
                    float a = 0;
                    for (int s = 0; s <= t; s++) a += sc[s] / sum * Vv[(s * KV + kh) * hd + i];
                    att[h * hd + i] = a;
                }
            }
            matvec(tmp, &L->wo, att);
            for (int i = 0; i < D; i++) xt[i] += tmp[i];
            rmsnorm(xn, xt, L->ffn_norm, D, c->rms_eps);
            matvec(g, &L->w_gate, xn);
            matvec(u, &L->w_up, xn);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + expf(-g[i])) * u[i];
            matvec(tmp, &L->w_down, g);
            for (int i = 0; i < D; i++) xt[i] += tmp[i];
        }
    }
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[t * D + i] * x[t * D + i];
        cr_assert(sqrt(ss / D) < 10, "residual rms %g at %d", sqrt(ss / D), t);
        rmsnorm(xn, &x[t * D], m->final_norm, D, c->rms_eps);
        matvec(logits, &m->lm_head, xn);
        double mean = 0, var = 0, mx = -1e30;
        for (int v = 0; v < V; v++) mean += logits[v] / V, mx = fmax(mx, logits[v]);
        for (int v = 0; v < V; v++) var += (logits[v] - mean) * (logits[v] - mean) / V;
        cr_assert(sqrt(var) > 1.0 && mx - mean > 3.0, "flat logits at %d: std %g, max-mean %g", t, sqrt(var),
                  mx - mean);
        cr_assert(sqrt(var) < 10.0, "logits std %g", sqrt(var));
    }
    free(x), free(xn), free(q), free(K), free(Vv), free(att), free(tmp), free(g), free(u), free(logits);
    llmlab_model_free(m);
}

/* ---- the command line ------------------------------------------------------------------ */

static int run_cli(const char **args, int n) { return llmlab_cmd_synth(n, (char **)args); }

Test(synth, cli_overrides_preset) {
    char *out = sub("cli");
    const char *args[] = {"synth", out, "--dim", "32", "--heads=2", "--kv-heads", "1", "--dtype", "bf16",
                          "--seed", "5", "--shards", "2", "--tie", "--preset", "tiny", "--vocab", "300"};
    cr_assert_eq(run_cli(args, 18), 0);
    llmlab_model *m = NULL;
    llmlab_err e = {0};
    cr_assert_eq(llmlab_model_load(&m, out, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(m->cfg.dim, 32);
    cr_assert_eq(m->cfg.n_heads, 2);
    cr_assert_eq(m->cfg.head_dim, 16);
    cr_assert_eq(m->cfg.vocab_size, 300);
    cr_assert_eq(m->cfg.tie_embeddings, 1);
    cr_assert_eq(m->embed.dtype, LLMLAB_DTYPE_BF16);
    cr_assert_eq(m->st.n_files, 2);
    llmlab_model_free(m);
    const char *q[] = {"synth", out, "--arch", "qwen2", "--head-dim", "32"};
    cr_assert_eq(run_cli(q, 6), 0);
    cr_assert_eq(llmlab_model_load(&m, out, &e), LLMLAB_OK, "%s", e.msg);
    cr_assert_eq(m->cfg.arch, LLMLAB_ARCH_QWEN2);
    cr_assert_eq(m->cfg.head_dim, 32);
    cr_assert_not_null(m->layers[0].bq);
    llmlab_model_free(m);
    free(out);
}

Test(synth, cli_usage_errors) {
    char *out = sub("bad");
    const char *a1[] = {"synth", out, "--bogus", "1"};
    cr_assert_eq(run_cli(a1, 4), 2);
    const char *a2[] = {"synth", out, "--dim", "abc"};
    cr_assert_eq(run_cli(a2, 4), 2);
    const char *a3[] = {"synth", out, "--dim"};
    cr_assert_eq(run_cli(a3, 3), 2);
    const char *a4[] = {"synth", "--dim", "64"};
    cr_assert_eq(run_cli(a4, 3), 2);
    const char *a5[] = {"synth", out, "--preset", "huge"};
    cr_assert_eq(run_cli(a5, 4), 2);
    const char *a6[] = {"synth", out, "--heads", "3"}; /* 64 % 3 */
    cr_assert_eq(run_cli(a6, 4), 2);
    const char *a7[] = {"synth", out, "--kv-heads", "3"};
    cr_assert_eq(run_cli(a7, 4), 2);
    const char *a8[] = {"synth", out, "--dtype", "f64"};
    cr_assert_eq(run_cli(a8, 4), 2);
    const char *a9[] = {"synth", out, "--seed", "-1"};
    cr_assert_eq(run_cli(a9, 4), 2);
    cr_assert_not(fsu_exists(out), "a usage error wrote files");
    const char *h[] = {"synth", "--help"};
    cr_assert_eq(run_cli(h, 2), 0);
    free(out);
}
