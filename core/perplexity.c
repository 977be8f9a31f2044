/* perplexity.c - strided, teacher-forced perplexity through the engine
 * (perplexity.h, docs/perplexity.md). */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"

int llmlab_ppl_default_ctx(const llmlab_model *m) {
    int c = m->cfg.max_pos;
    return c > 0 && c < LLMLAB_PPL_MAX_DEFAULT_CTX ? c : LLMLAB_PPL_MAX_DEFAULT_CTX;
}

/* Walks Hugging Face's loop: begin = 0, stride, 2 stride, ...; end = min(begin +
 * ctx, n); the scored part starts at max(previous end, begin + 1); stop once end
 * reaches n.  Windows that score nothing are skipped. */
int llmlab_ppl_plan(int n, int ctx, int stride, int *begin, int *end, int *prefix) {
    int count = 0, prev_end = 0;
    for (long long b = 0; b < n; b += stride) {
        int e = b + ctx < n ? (int)(b + ctx) : n;
        int first = prev_end > b + 1 ? prev_end : (int)b + 1;
        if (first < e) {
            if (begin) begin[count] = (int)b;
            if (end) end[count] = e;
            if (prefix) prefix[count] = first - (int)b;
            count++;
        }
        prev_end = e;
        if (e == n) break;
    }
    return count;
}

void llmlab_ppl_result_free(llmlab_ppl_result *r) {
    if (!r) return;
    free(r->pos);
    free(r->window);
    free(r->nll);
    llmlab_run_result_free(r->run);
    free(r);
}

static llmlab_status check_args(const llmlab_model *m, const int32_t *tokens, int n, int ctx, int stride,
                                llmlab_err *err) {
    if (!tokens || n < 2)
        return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: the text has %d tokens; at least 2 are needed (one "
                              "to predict from, one to score)", tokens ? n : 0);
    if (ctx < 2) return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: ctx = %d must be >= 2", ctx);
    if (m->cfg.max_pos > 0 && ctx > m->cfg.max_pos)
        return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: ctx = %d exceeds the model's max_position_embeddings "
                              "(%d)", ctx, m->cfg.max_pos);
    if (stride < 1 || stride > ctx)
        return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: stride = %d must be in [1, ctx = %d]", stride, ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: token %d at position %d is outside the vocabulary "
                                  "(size %d)", (int)tokens[i], i, m->cfg.vocab_size);
    return LLMLAB_OK;
}

/* ---- scoring ----------------------------------------------------------------------- */

typedef struct {
    const int32_t *tokens;  /* [n] the whole input */
    const int *begin;       /* [windows] first token of each window */
    const int *prefix;      /* [windows] context tokens of each window */
    const int *off;         /* [windows + 1] first result row of each window */
    int vocab;
    llmlab_ppl_result *res;
} ppl_ctx;

/* -log softmax(x)[t] = (max + log sum exp(x - max)) - x[t], in double. */
static double nll_of(const float *x, int V, int32_t t) {
    double mx = x[0];
    for (int i = 1; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    return (mx + log(sum)) - (double)x[t];
}

static llmlab_status score_row(void *user, int req, int pos, const float *logits, llmlab_err *err) {
    ppl_ctx *c = user;
    llmlab_ppl_result *r = c->res;
    if (req < 0 || req >= r->windows || pos < c->prefix[req] - 1 || c->off[req] + pos - (c->prefix[req] - 1) >= c->off[req + 1])
        return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: engine scored window %d position %d, which is not a "
                              "scored position", req, pos);
    int row = c->off[req] + pos - (c->prefix[req] - 1);
    int p = c->begin[req] + pos + 1; /* the predicted token's position in the input */
    double v = nll_of(logits, c->vocab, c->tokens[p]);
    if (!isfinite(v))
        return llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: window %d position %d: logits are not finite", req, pos);
    r->pos[row] = p;
    r->window[row] = req;
    r->nll[row] = v;
    return LLMLAB_OK;
}

/* Plans the windows into begin/prefix/off (malloc'd) and sizes the result. */
static llmlab_status plan(llmlab_ppl_result *r, int **begin, int **prefix, int **off, llmlab_request **reqs,
                          const int32_t *tokens, llmlab_err *err) {
    int W = llmlab_ppl_plan(r->n_tokens, r->ctx, r->stride, NULL, NULL, NULL);
    r->windows = W;
    int *end = malloc((size_t)W * sizeof *end);
    *begin = malloc((size_t)W * sizeof **begin);
    *prefix = malloc((size_t)W * sizeof **prefix);
    *off = malloc(((size_t)W + 1) * sizeof **off);
    *reqs = calloc((size_t)W, sizeof **reqs);
    if (!end || !*begin || !*prefix || !*off || !*reqs) {
        free(end);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "perplexity: out of memory");
    }
    llmlab_ppl_plan(r->n_tokens, r->ctx, r->stride, *begin, end, *prefix);
    (*off)[0] = 0;
    for (int k = 0; k < W; k++) {
        (*off)[k + 1] = (*off)[k] + (end[k] - (*begin)[k] - (*prefix)[k]);
        (*reqs)[k] = (llmlab_request){.id = k, .prompt = tokens + (*begin)[k], .prompt_len = end[k] - (*begin)[k]};
    }
    free(end);
    r->scored = (*off)[W];
    r->pos = malloc((size_t)r->scored * sizeof *r->pos);
    r->window = malloc((size_t)r->scored * sizeof *r->window);
    r->nll = malloc((size_t)r->scored * sizeof *r->nll);
    if (!r->pos || !r->window || !r->nll)
        return llmlab_err_set(err, LLMLAB_ENOMEM, "perplexity: out of memory for %d scored tokens", r->scored);
    for (int i = 0; i < r->scored; i++) r->window[i] = -1; /* -1: not scored yet */
    return LLMLAB_OK;
}

static llmlab_status run_windows(llmlab_engine *e, llmlab_ppl_result *r, const int32_t *tokens, llmlab_err *err) {
    int *begin = NULL, *prefix = NULL, *off = NULL;
    llmlab_request *reqs = NULL;
    llmlab_status st = plan(r, &begin, &prefix, &off, &reqs, tokens, err);
    if (!st) {
        ppl_ctx c = {tokens, begin, prefix, off, llmlab_engine_model(e)->cfg.vocab_size, r};
        double t0 = llmlab_now();
        st = llmlab_engine_score(e, reqs, r->windows, prefix, score_row, &c, &r->run, err);
        r->wall_s = llmlab_now() - t0;
        if (st) llmlab_err_prefix(err, "perplexity");
    }
    for (int i = 0; !st && i < r->scored; i++)
        if (r->window[i] < 0)
            st = llmlab_err_set(err, LLMLAB_EINVAL, "perplexity: scored token %d was never scored by the engine", i);
    free(begin);
    free(prefix);
    free(off);
    free(reqs);
    return st;
}

llmlab_status llmlab_perplexity(llmlab_engine *e, const int32_t *tokens, int n, const llmlab_ppl_opts *o,
                                llmlab_ppl_result **out, llmlab_err *err) {
    *out = NULL;
    const llmlab_model *m = llmlab_engine_model(e);
    int ctx = o && o->ctx ? o->ctx : llmlab_ppl_default_ctx(m);
    int stride = o && o->stride ? o->stride : ctx;
    llmlab_status st = check_args(m, tokens, n, ctx, stride, err);
    if (st) return st;
    llmlab_ppl_result *r = calloc(1, sizeof *r);
    if (!r) return llmlab_err_set(err, LLMLAB_ENOMEM, "perplexity: out of memory");
    r->n_tokens = n;
    r->ctx = ctx;
    r->stride = stride;
    if ((st = run_windows(e, r, tokens, err))) {
        llmlab_ppl_result_free(r);
        return st;
    }
    double sum = 0;
    for (int i = 0; i < r->scored; i++) sum += r->nll[i];
    r->mean_nll = sum / r->scored;
    r->ppl = exp(r->mean_nll);
    r->tok_per_s = r->wall_s > 0 ? r->scored / r->wall_s : 0;
    *out = r;
    return LLMLAB_OK;
}

/* ---- text in ------------------------------------------------------------------------ */

llmlab_status llmlab_ppl_encode(const llmlab_tokenizer *t, const char *text, size_t len, int bos, int32_t **ids,
                                int *n, llmlab_err *err) {
    *ids = NULL;
    *n = 0;
    int32_t *enc = NULL;
    int m = 0;
    llmlab_status st = llmlab_tokenizer_encode(t, text, len, 0, &enc, &m, err);
    if (st) return llmlab_err_prefix(err, "perplexity: encoding the text");
    int32_t b = bos ? llmlab_tokenizer_bos(t) : -1;
    if (b < 0) {
        *ids = enc;
        *n = m;
        return LLMLAB_OK;
    }
    int32_t *all = malloc(((size_t)m + 1) * sizeof *all);
    if (!all) {
        free(enc);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "perplexity: out of memory");
    }
    all[0] = b;
    if (m) memcpy(all + 1, enc, (size_t)m * sizeof *all);
    free(enc);
    *ids = all;
    *n = m + 1;
    return LLMLAB_OK;
}

/* ---- results record ------------------------------------------------------------------- */

static llmlab_status record_tokens(llmlab_run *run, const llmlab_ppl_result *r, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "ppl_tokens", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = llmlab_table_column(t, "pos", LLMLAB_COL_INT, "", err);
    for (int i = 0; i < r->scored && !st; i++) st = llmlab_table_append_int(t, "pos", r->pos[i], err);
    if (!st) st = llmlab_table_column(t, "window", LLMLAB_COL_INT, "", err);
    for (int i = 0; i < r->scored && !st; i++) st = llmlab_table_append_int(t, "window", r->window[i], err);
    if (!st) st = llmlab_table_column(t, "nll", LLMLAB_COL_DOUBLE, "nats", err);
    if (!st) st = llmlab_table_append_doubles(t, "nll", r->nll, (size_t)r->scored, err);
    return st;
}

static llmlab_status record_summary(llmlab_run *run, const llmlab_ppl_result *r, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "summary", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    const char *ni[] = {"scored_tokens", "windows"};
    int64_t vi[] = {r->scored, r->windows};
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < 2 && !st; i++) {
        st = llmlab_table_column(t, ni[i], LLMLAB_COL_INT, i ? "" : "tokens", err);
        if (!st) st = llmlab_table_append_int(t, ni[i], vi[i], err);
    }
    const char *nd[] = {"ppl", "nll", "ppl_tok_per_s"}, *ud[] = {"", "nats", "tokens/s"};
    double vd[] = {r->ppl, r->mean_nll, r->tok_per_s};
    for (int i = 0; i < 3 && !st; i++) {
        st = llmlab_table_column(t, nd[i], LLMLAB_COL_DOUBLE, ud[i], err);
        if (!st) st = llmlab_table_append_double(t, nd[i], vd[i], err);
    }
    return st;
}

llmlab_status llmlab_ppl_record(llmlab_run *run, const llmlab_ppl_result *r, int bos, llmlab_err *err) {
    llmlab_status st = llmlab_run_attr_int(run, "settings/ppl/ctx", r->ctx, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/ppl/stride", r->stride, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/ppl/bos", bos, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/ppl/n_tokens", r->n_tokens, err);
    if (!st) st = record_tokens(run, r, err);
    if (!st) st = record_summary(run, r, err);
    return st;
}
