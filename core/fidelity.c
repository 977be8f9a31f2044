/* fidelity.c - teacher-forced fidelity of an attention policy against dense
 * attention (fidelity.h, docs/attention/fidelity.md).
 *
 * Texts go in groups whose dense logits fit opts.ref_bytes.  Per group: the dense
 * engine scores the group and its rows are copied aside; the policy engine scores
 * the same group and each row is compared with the stored one as it arrives.  The
 * policy's run results of all groups are concatenated into one record. */
#include "fidelity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sampler.h"

#define FID_DEFAULT_REF_BYTES ((size_t)1 << 30)

void llmlab_fid_result_free(llmlab_fid_result *f) {
    if (!f) return;
    void *bufs[] = {f->req, f->pos, f->kl, f->top1, f->nll, f->nll_dense, f->text_len, f->text_prefix,
                    f->text_tokens, f->text_kl, f->text_top1, f->text_ppl, f->text_ppl_dense};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    llmlab_run_result_free(f->run);
    free(f);
}

llmlab_status llmlab_fidelity_engines(const llmlab_model *m, const llmlab_engine_opts *opts,
                                      llmlab_engine **dense, llmlab_engine **policy, llmlab_err *err) {
    *dense = *policy = NULL;
    llmlab_status st = llmlab_engine_create(policy, m, opts, err);
    if (st) return llmlab_err_prefix(err, "fidelity: policy engine");
    llmlab_engine_opts d = *opts;
    d.attention = (llmlab_plugin_choice){"dense", NULL, 0};
    /* The reference is the unmodified model: quantization is measured against it too. */
    d.quant = (llmlab_plugin_choice){"none", NULL, 0};
    d.kv_quant = (llmlab_plugin_choice){NULL, NULL, 0}; /* and f32 KV storage */
    if ((st = llmlab_engine_create(dense, m, &d, err))) {
        llmlab_engine_free(*policy);
        *policy = NULL;
        return llmlab_err_prefix(err, "fidelity: dense engine");
    }
    return LLMLAB_OK;
}

/* ---- checks and allocation ------------------------------------------------------------ */

static llmlab_status check_texts(const llmlab_fid_text *t, int n, int vocab, llmlab_err *err) {
    if (n <= 0 || !t) return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: no texts to score");
    for (int i = 0; i < n; i++) {
        if (!t[i].tokens || t[i].len < 2)
            return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: text %d has %d tokens; at least 2 are needed "
                                  "(a prefix and one token to score)", i, t[i].tokens ? t[i].len : 0);
        if (t[i].prefix < 1 || t[i].prefix >= t[i].len)
            return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: text %d: prefix %d must be in [1, %d] (the text "
                                  "has %d tokens and at least one must follow the prefix)",
                                  i, t[i].prefix, t[i].len - 1, t[i].len);
        for (int k = 0; k < t[i].len; k++)
            if (t[i].tokens[k] < 0 || t[i].tokens[k] >= vocab)
                return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: text %d: token %d at position %d is outside "
                                      "the vocabulary (size %d)", i, t[i].tokens[k], k, vocab);
    }
    return LLMLAB_OK;
}

static llmlab_status result_alloc(llmlab_fid_result *f, const llmlab_fid_text *t, int n, llmlab_err *err) {
    size_t T = 0;
    for (int i = 0; i < n; i++) T += (size_t)(t[i].len - t[i].prefix);
    f->n_tok = (int)T;
    f->n_texts = n;
    f->req = malloc(T * sizeof *f->req);
    f->pos = malloc(T * sizeof *f->pos);
    f->kl = malloc(T * sizeof *f->kl);
    f->top1 = malloc(T * sizeof *f->top1);
    f->nll = malloc(T * sizeof *f->nll);
    f->nll_dense = malloc(T * sizeof *f->nll_dense);
    f->text_len = malloc((size_t)n * sizeof(int));
    f->text_prefix = malloc((size_t)n * sizeof(int));
    f->text_tokens = malloc((size_t)n * sizeof(int));
    f->text_kl = malloc((size_t)n * sizeof(double));
    f->text_top1 = malloc((size_t)n * sizeof(double));
    f->text_ppl = malloc((size_t)n * sizeof(double));
    f->text_ppl_dense = malloc((size_t)n * sizeof(double));
    if (!f->req || !f->pos || !f->kl || !f->top1 || !f->nll || !f->nll_dense || !f->text_len || !f->text_prefix ||
        !f->text_tokens || !f->text_kl || !f->text_top1 || !f->text_ppl || !f->text_ppl_dense)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "fidelity: out of memory for %zu scored tokens", T);
    for (size_t k = 0; k < T; k++) f->req[k] = -1; /* -1: not scored yet */
    for (int i = 0; i < n; i++) {
        f->text_len[i] = t[i].len;
        f->text_prefix[i] = t[i].prefix;
        f->text_tokens[i] = t[i].len - t[i].prefix;
    }
    return LLMLAB_OK;
}

/* ---- the two score callbacks ------------------------------------------------------------ */

typedef struct {
    const llmlab_fid_text *texts;
    int g0, g1;              /* texts [g0, g1) run in this group */
    const size_t *off;       /* [n_texts + 1] first per-token index of each text */
    float *rows;             /* [off[g1] - off[g0]][vocab] the dense run's logits */
    double *lp, *lq;         /* [vocab] scratch: log-softmax of the dense and the policy row */
    int vocab;
    llmlab_fid_result *res;
} fid_ctx;

/* Per-token index of (req, pos); EINVAL when the engine scored something else. */
static llmlab_status token_index(const fid_ctx *c, int req, int pos, size_t *idx, llmlab_err *err) {
    if (req < c->g0 || req >= c->g1 || pos < c->texts[req].prefix - 1 || pos > c->texts[req].len - 2)
        return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: engine scored request %d position %d, which is not "
                              "a scored position of the texts being run", req, pos);
    *idx = c->off[req] + (size_t)(pos - (c->texts[req].prefix - 1));
    return LLMLAB_OK;
}

static llmlab_status keep_dense_row(void *user, int req, int pos, const float *logits, llmlab_err *err) {
    fid_ctx *c = user;
    size_t idx = 0;
    llmlab_status st = token_index(c, req, pos, &idx, err);
    if (st) return st;
    memcpy(c->rows + (idx - c->off[c->g0]) * (size_t)c->vocab, logits, (size_t)c->vocab * sizeof *logits);
    return LLMLAB_OK;
}

/* out[V] = log softmax(x) in double: x - max - log(sum exp(x - max)).  -1 when
 * the row is not finite. */
static int log_softmax(const float *x, int V, double *out) {
    double mx = x[0];
    for (int i = 1; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        out[i] = (double)x[i] - mx;
        sum += exp(out[i]);
    }
    double lse = log(sum);
    if (!isfinite(mx) || !isfinite(lse)) return -1;
    for (int i = 0; i < V; i++) out[i] -= lse;
    return 0;
}

static llmlab_status compare_row(void *user, int req, int pos, const float *logits, llmlab_err *err) {
    fid_ctx *c = user;
    size_t idx = 0;
    llmlab_status st = token_index(c, req, pos, &idx, err);
    if (st) return st;
    const float *ref = c->rows + (idx - c->off[c->g0]) * (size_t)c->vocab;
    if (log_softmax(ref, c->vocab, c->lp) || log_softmax(logits, c->vocab, c->lq))
        return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: text %d position %d: logits are not finite", req, pos);
    double kl = 0;
    for (int i = 0; i < c->vocab; i++) kl += exp(c->lp[i]) * (c->lp[i] - c->lq[i]);
    int32_t next = c->texts[req].tokens[pos + 1];
    llmlab_fid_result *f = c->res;
    f->req[idx] = req;
    f->pos[idx] = pos;
    f->kl[idx] = kl;
    f->top1[idx] = llmlab_argmax(ref, c->vocab) == llmlab_argmax(logits, c->vocab);
    f->nll[idx] = -c->lq[next];
    f->nll_dense[idx] = -c->lp[next];
    return LLMLAB_OK;
}

/* ---- step statistics of the runs -------------------------------------------------------- */

typedef struct {
    double dec_tok, dec_s;   /* forced tokens and time of steps without prompt chunks */
    double kv_sum, kv_max;   /* resident KV bytes over all steps */
    long long kv_n;
} run_stats;

static void stats_add(run_stats *a, const llmlab_run_result *r) {
    for (int j = 0; j < r->n_steps; j++) {
        if (r->step_accepted[j] > 0 && r->step_tokens[j] == r->step_accepted[j]) { /* forced tokens only */
            a->dec_tok += r->step_accepted[j];
            a->dec_s += r->step_dt_s[j];
        }
        a->kv_sum += r->step_kv_bytes[j];
        if (r->step_kv_bytes[j] > a->kv_max) a->kv_max = r->step_kv_bytes[j];
        a->kv_n++;
    }
}

static void stats_finish(const run_stats *a, double *tok_per_s, double *kv_mean, double *kv_max) {
    *tok_per_s = a->dec_s > 0 ? a->dec_tok / a->dec_s : 0;
    *kv_mean = a->kv_n ? a->kv_sum / (double)a->kv_n : 0;
    *kv_max = a->kv_max;
}

/* ---- concatenating the policy's runs of several groups --------------------------------- */

/* Appends n1 elements of src to *dst (n0 elements); -1 when out of memory. */
static int cat(void *dst, size_t n0, const void *src, size_t n1, size_t elem) {
    void **d = dst;
    void *g = realloc(*d, (n0 + n1 ? n0 + n1 : 1) * elem);
    if (!g) return -1;
    if (n1) memcpy((char *)g + n0 * elem, src, n1 * elem);
    *d = g;
    return 0;
}

static void shift_times(double *t, size_t n, double dt) {
    for (size_t i = 0; i < n; i++)
        if (t[i] >= 0) t[i] += dt;
}

/* Metric columns [names][rows] of a and b merged by name into [union][na + nb]. */
static int cat_metrics(double **out, char names[][48], int *n_names, const double *a, size_t na, size_t a_stride,
                       const llmlab_run_result *rb, const double *b, size_t nb, size_t b_stride) {
    int n_old = *n_names, map[16];
    for (int k = 0; k < rb->n_metrics; k++) {
        int i = 0;
        while (i < *n_names && strcmp(names[i], rb->metric_names[k])) i++;
        if (i == *n_names && *n_names < 16) memcpy(names[(*n_names)++], rb->metric_names[k], 48);
        map[k] = i < 16 ? i : -1;
    }
    size_t N = na + nb ? na + nb : 1;
    double *m = calloc((size_t)(*n_names ? *n_names : 1) * N, sizeof *m);
    if (!m) return -1;
    for (int k = 0; k < n_old; k++) memcpy(m + (size_t)k * N, a + (size_t)k * a_stride, na * sizeof *m);
    for (int k = 0; k < rb->n_metrics; k++)
        if (map[k] >= 0) memcpy(m + (size_t)map[k] * N + na, b + (size_t)k * b_stride, nb * sizeof *m);
    *out = m;
    return 0;
}

/* Appends run b (its times shifted by a->wall_s) to run a; b is freed. */
static llmlab_status run_cat(llmlab_run_result *a, llmlab_run_result *b, llmlab_err *err) {
    size_t ra = (size_t)a->n_reqs, rb = (size_t)b->n_reqs, sa = (size_t)a->n_steps, sb = (size_t)b->n_steps;
    size_t ta = (size_t)a->n_tok, tb = (size_t)b->n_tok;
    double off = a->wall_s;
    shift_times(b->admit_s, rb, off);
    shift_times(b->first_token_s, rb, off);
    shift_times(b->finish_s, rb, off);
    shift_times(b->arrival_s, rb, off);
    shift_times(b->step_start_s, sb, off);
    shift_times(b->tok_time_s, tb, off);
    char names[16][48];
    int n_names = a->n_metrics;
    memcpy(names, a->metric_names, sizeof names);
    double *m = NULL, *sm = NULL;
    int bad = cat(&a->req_id, ra, b->req_id, rb, sizeof(int)) || cat(&a->prompt_len, ra, b->prompt_len, rb, sizeof(int)) ||
              cat(&a->output_len, ra, b->output_len, rb, sizeof(int)) || cat(&a->forwards, ra, b->forwards, rb, sizeof(int)) ||
              cat(&a->arrival_s, ra, b->arrival_s, rb, sizeof(double)) || cat(&a->admit_s, ra, b->admit_s, rb, sizeof(double)) ||
              cat(&a->first_token_s, ra, b->first_token_s, rb, sizeof(double)) ||
              cat(&a->finish_s, ra, b->finish_s, rb, sizeof(double)) || cat(&a->output, ra, b->output, rb, sizeof(int32_t *)) ||
              cat(&a->step_start_s, sa, b->step_start_s, sb, sizeof(double)) ||
              cat(&a->step_dt_s, sa, b->step_dt_s, sb, sizeof(double)) || cat(&a->step_tokens, sa, b->step_tokens, sb, sizeof(int)) ||
              cat(&a->step_seqs, sa, b->step_seqs, sb, sizeof(int)) || cat(&a->step_kv_blocks, sa, b->step_kv_blocks, sb, sizeof(int)) ||
              cat(&a->step_accepted, sa, b->step_accepted, sb, sizeof(int)) ||
              cat(&a->step_kv_bytes, sa, b->step_kv_bytes, sb, sizeof(double)) || cat(&a->tok_req, ta, b->tok_req, tb, sizeof(int)) ||
              cat(&a->tok_index, ta, b->tok_index, tb, sizeof(int)) || cat(&a->tok_id, ta, b->tok_id, tb, sizeof(int32_t)) ||
              cat(&a->tok_time_s, ta, b->tok_time_s, tb, sizeof(double)) ||
              cat_metrics(&m, names, &n_names, a->metrics, ra, ra ? ra : 1, b, b->metrics, rb, rb ? rb : 1);
    if (!bad) bad = llmlab_run_result_cat_serving(a, b);
    int n_after_req = n_names;
    n_names = a->n_metrics; /* the same union again, now for the step columns */
    memcpy(names, a->metric_names, sizeof names);
    if (!bad) bad = cat_metrics(&sm, names, &n_names, a->step_metrics, sa, sa ? sa : 1, b, b->step_metrics, sb, sb ? sb : 1);
    if (bad || n_after_req != n_names) {
        free(m);
        free(sm);
        llmlab_run_result_free(b);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "fidelity: out of memory joining the runs of several groups");
    }
    for (size_t i = 0; i < rb; i++) b->output[i] = NULL; /* moved to a */
    free(a->metrics);
    free(a->step_metrics);
    a->metrics = m;
    a->step_metrics = sm;
    a->n_metrics = n_names;
    memcpy(a->metric_names, names, sizeof names);
    a->n_reqs += b->n_reqs;
    a->n_steps += b->n_steps;
    a->n_tok += b->n_tok;
    a->wall_s += b->wall_s;
    a->prompt_tokens += b->prompt_tokens;
    a->output_tokens += b->output_tokens;
    a->target_forwards += b->target_forwards;
    a->output_tok_per_s = a->wall_s > 0 ? (double)a->output_tokens / a->wall_s : 0;
    long long dec_tok = 0, dec_fwd = 0;
    for (int i = 0; i < a->n_reqs; i++)
        if (a->forwards[i] > 0) {
            dec_tok += a->output_len[i] - 1;
            dec_fwd += a->forwards[i] - 1;
        }
    a->mean_accepted = dec_fwd ? (double)dec_tok / (double)dec_fwd : (a->output_tokens ? 1.0 : 0.0);
    llmlab_run_result_free(b);
    return LLMLAB_OK;
}

/* ---- the measurement -------------------------------------------------------------------- */

/* Scores texts [c->g0, c->g1) with the dense engine, then the policy. */
static llmlab_status run_group(llmlab_engine *dense, llmlab_engine *policy, fid_ctx *c, run_stats *sd,
                               run_stats *sp, llmlab_err *err) {
    int n = c->g1 - c->g0;
    llmlab_request *reqs = calloc((size_t)n, sizeof *reqs);
    int *prefix = calloc((size_t)n, sizeof *prefix);
    if (!reqs || !prefix) {
        free(reqs);
        free(prefix);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "fidelity: out of memory");
    }
    for (int i = 0; i < n; i++) {
        const llmlab_fid_text *t = &c->texts[c->g0 + i];
        reqs[i] = (llmlab_request){.id = c->g0 + i, .prompt = t->tokens, .prompt_len = t->len};
        prefix[i] = t->prefix;
    }
    llmlab_run_result *rd = NULL, *rp = NULL;
    llmlab_status st = llmlab_engine_score(dense, reqs, n, prefix, keep_dense_row, c, &rd, err);
    if (st) llmlab_err_prefix(err, "fidelity: dense run");
    if (!st && (st = llmlab_engine_score(policy, reqs, n, prefix, compare_row, c, &rp, err)))
        llmlab_err_prefix(err, "fidelity: policy run");
    free(reqs);
    free(prefix);
    if (!st) {
        stats_add(sd, rd);
        stats_add(sp, rp);
        if (!c->res->run) c->res->run = rp;
        else st = run_cat(c->res->run, rp, err);
    } else {
        llmlab_run_result_free(rp);
    }
    llmlab_run_result_free(rd);
    for (size_t k = c->off[c->g0]; !st && k < c->off[c->g1]; k++)
        if (c->res->req[k] < 0)
            st = llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: per-token entry %zu was never scored", k);
    return st;
}

/* Means per text and overall (token-weighted), summed in index order. */
static void summarize(llmlab_fid_result *f, const size_t *off) {
    double kl = 0, top1 = 0, nll = 0, nlld = 0;
    for (int i = 0; i < f->n_texts; i++) {
        double a = 0, b = 0, c = 0, d = 0, cnt = (double)(off[i + 1] - off[i]);
        for (size_t k = off[i]; k < off[i + 1]; k++) {
            a += f->kl[k];
            b += f->top1[k];
            c += f->nll[k];
            d += f->nll_dense[k];
        }
        f->text_kl[i] = a / cnt;
        f->text_top1[i] = b / cnt;
        f->text_ppl[i] = exp(c / cnt);
        f->text_ppl_dense[i] = exp(d / cnt);
        kl += a, top1 += b, nll += c, nlld += d;
    }
    double T = (double)f->n_tok;
    f->mean_kl = kl / T;
    f->top1_rate = top1 / T;
    f->mean_nll = nll / T;
    f->mean_nll_dense = nlld / T;
    f->ppl = exp(f->mean_nll);
    f->ppl_dense = exp(f->mean_nll_dense);
}

/* Texts [g0, end) whose dense rows fit `bytes` (always at least text g0). */
static int group_end(const size_t *off, int n, int g0, int vocab, size_t bytes) {
    int g1 = g0 + 1;
    while (g1 < n && (off[g1 + 1] - off[g0]) * (size_t)vocab * sizeof(float) <= bytes) g1++;
    return g1;
}

static llmlab_status measure(llmlab_engine *dense, llmlab_engine *policy, fid_ctx *c, int n, size_t bytes,
                             llmlab_err *err) {
    run_stats sd = {0}, sp = {0};
    llmlab_status st = LLMLAB_OK;
    for (int g0 = 0; g0 < n && !st; g0 = c->g1) {
        c->g0 = g0;
        c->g1 = group_end(c->off, n, g0, c->vocab, bytes);
        size_t rows = c->off[c->g1] - c->off[g0];
        float *buf = malloc(rows * (size_t)c->vocab * sizeof *buf);
        if (!buf)
            return llmlab_err_set(err, LLMLAB_ENOMEM, "fidelity: out of memory for %zu dense logits rows of %d "
                                  "(lower ref_bytes)", rows, c->vocab);
        c->rows = buf;
        st = run_group(dense, policy, c, &sd, &sp, err);
        free(buf);
        c->rows = NULL;
        c->res->groups++;
    }
    llmlab_fid_result *f = c->res;
    stats_finish(&sd, &f->tok_per_s_dense, &f->kv_bytes_mean_dense, &f->kv_bytes_max_dense);
    stats_finish(&sp, &f->tok_per_s, &f->kv_bytes_mean, &f->kv_bytes_max);
    return st;
}

llmlab_status llmlab_fidelity(llmlab_engine *dense, llmlab_engine *policy, const llmlab_fid_text *texts, int n,
                              const llmlab_fid_opts *opts, llmlab_fid_result **out, llmlab_err *err) {
    *out = NULL;
    const llmlab_model *m = llmlab_engine_model(policy);
    if (llmlab_engine_model(dense) != m)
        return llmlab_err_set(err, LLMLAB_EINVAL, "fidelity: the dense and policy engines must share one model");
    int V = m->cfg.vocab_size;
    llmlab_status st = check_texts(texts, n, V, err);
    if (st) return st;
    llmlab_fid_result *f = calloc(1, sizeof *f);
    size_t *off = calloc((size_t)n + 1, sizeof *off);
    double *lp = malloc((size_t)V * sizeof *lp), *lq = malloc((size_t)V * sizeof *lq);
    if (!f || !off || !lp || !lq) st = llmlab_err_set(err, LLMLAB_ENOMEM, "fidelity: out of memory");
    if (!st) st = result_alloc(f, texts, n, err);
    if (!st) {
        for (int i = 0; i < n; i++) off[i + 1] = off[i] + (size_t)(texts[i].len - texts[i].prefix);
        f->ref_bytes = opts && opts->ref_bytes ? opts->ref_bytes : FID_DEFAULT_REF_BYTES;
        snprintf(f->reference, sizeof f->reference, "%s", llmlab_engine_plugin(dense, LLMLAB_PLUGIN_ATTENTION)->name);
        fid_ctx c = {.texts = texts, .off = off, .lp = lp, .lq = lq, .vocab = V, .res = f};
        st = measure(dense, policy, &c, n, f->ref_bytes, err);
    }
    if (!st) summarize(f, off);
    free(off);
    free(lp);
    free(lq);
    if (st) {
        llmlab_fid_result_free(f);
        return st;
    }
    *out = f;
    return LLMLAB_OK;
}

/* ---- results record ------------------------------------------------------------------- */

static llmlab_status col_ints(llmlab_table *t, const char *name, const int *v, size_t n, const char *unit,
                              llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_INT, unit, err);
    for (size_t i = 0; i < n && !st; i++) st = llmlab_table_append_int(t, name, v[i], err);
    return st;
}

static llmlab_status col_doubles(llmlab_table *t, const char *name, const double *v, size_t n, const char *unit,
                                 llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_DOUBLE, unit, err);
    if (!st && n) st = llmlab_table_append_doubles(t, name, v, n, err);
    return st;
}

static llmlab_status record_tokens(llmlab_run *run, const llmlab_fid_result *f, llmlab_err *err) {
    size_t T = (size_t)f->n_tok;
    llmlab_table *t = llmlab_run_table(run, "fidelity", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = col_ints(t, "req", f->req, T, "", err);
    if (!st) st = col_ints(t, "pos", f->pos, T, "", err);
    if (!st) st = col_doubles(t, "kl", f->kl, T, "nats", err);
    if (!st) st = col_ints(t, "top1", f->top1, T, "", err);
    if (!st) st = col_doubles(t, "nll", f->nll, T, "nats", err);
    if (!st) st = col_doubles(t, "nll_dense", f->nll_dense, T, "nats", err);
    return st;
}

static llmlab_status record_texts(llmlab_run *run, const llmlab_fid_result *f, llmlab_err *err) {
    size_t n = (size_t)f->n_texts;
    llmlab_table *t = llmlab_run_table(run, "fidelity_texts", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = llmlab_table_column(t, "req", LLMLAB_COL_INT, "", err);
    for (size_t i = 0; i < n && !st; i++) st = llmlab_table_append_int(t, "req", (int64_t)i, err);
    if (!st) st = col_ints(t, "len", f->text_len, n, "tokens", err);
    if (!st) st = col_ints(t, "prefix", f->text_prefix, n, "tokens", err);
    if (!st) st = col_ints(t, "scored", f->text_tokens, n, "tokens", err);
    if (!st) st = col_doubles(t, "kl", f->text_kl, n, "nats", err);
    if (!st) st = col_doubles(t, "top1", f->text_top1, n, "", err);
    if (!st) st = col_doubles(t, "ppl", f->text_ppl, n, "", err);
    if (!st) st = col_doubles(t, "ppl_dense", f->text_ppl_dense, n, "", err);
    return st;
}

static llmlab_status record_summary(llmlab_run *run, const llmlab_fid_result *f, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "summary", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = llmlab_table_column(t, "scored_tokens", LLMLAB_COL_INT, "tokens", err);
    if (!st) st = llmlab_table_append_int(t, "scored_tokens", f->n_tok, err);
    const char *names[] = {"kl", "top1", "nll", "nll_dense", "ppl", "ppl_dense", "decode_tok_per_s",
                           "dense_decode_tok_per_s", "kv_mean_bytes", "kv_max_bytes", "dense_kv_mean_bytes",
                           "dense_kv_max_bytes"};
    const char *units[] = {"nats", "", "nats", "nats", "", "", "tokens/s", "tokens/s", "bytes", "bytes", "bytes",
                           "bytes"};
    double v[] = {f->mean_kl, f->top1_rate, f->mean_nll, f->mean_nll_dense, f->ppl, f->ppl_dense, f->tok_per_s,
                  f->tok_per_s_dense, f->kv_bytes_mean, f->kv_bytes_max, f->kv_bytes_mean_dense, f->kv_bytes_max_dense};
    for (size_t i = 0; i < sizeof v / sizeof v[0] && !st; i++) {
        st = llmlab_table_column(t, names[i], LLMLAB_COL_DOUBLE, units[i], err);
        if (!st) st = llmlab_table_append_double(t, names[i], v[i], err);
    }
    return st;
}

llmlab_status llmlab_fidelity_record(llmlab_run *run, const llmlab_fid_result *f, llmlab_err *err) {
    llmlab_status st = llmlab_run_attr_str(run, "settings/fidelity/reference", f->reference, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/fidelity/ref_bytes", (int64_t)f->ref_bytes, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/fidelity/groups", f->groups, err);
    if (!st) st = record_tokens(run, f, err);
    if (!st) st = record_texts(run, f, err);
    if (!st) st = record_summary(run, f, err);
    return st;
}
