/* lookahead.c - lookahead decoding (Fu et al. 2024; hao-ai-lab/LookaheadDecoding):
 * Jacobi iteration over a 2-D window generates n-grams, a pool keyed by first
 * token keeps them, and candidates whose key is the last accepted token are
 * verified, all in the engine's one target forward per step.
 *
 * Per sequence:
 *   window  [N-1][W] tokens: level j, column i is a guess for the position
 *           1 + i + j after the root (the last accepted token);
 *   pool    per key token, up to pool_cap (N-1)-grams that followed it (a ring:
 *           the oldest goes first; duplicates are not stored twice).
 * Each step (layout and visibility: lookahead_layout.h) forwards the root, the
 * lookahead branch (the window) and the verification branch (up to G pool
 * candidates for the root, each a chain from the root).  From the outputs:
 *   verify  greedy: a candidate's tokens are accepted while each equals the
 *           target's argmax after the tokens before it; the longest match wins
 *           (ties: the most recent n-gram), then the argmax after it (the bonus):
 *           exactly greedy decoding's output;
 *   collect for each column i the n-gram (L0[i], L1[i], ..., L(N-2)[i], y[i]),
 *           y[i] the argmax of the last level's row i, goes into the pool under
 *           key L0[i];
 *   update  levels move up (L0 is dropped, Lj = L(j+1)) and the last level becomes
 *           y; when v candidate tokens were accepted besides the bonus, the root
 *           moved v positions further than one step, so every level shifts v
 *           columns left and the freed columns get random tokens of the sequence.
 * The window starts as tokens drawn at random (the sequence's seeded stream)
 * from the sequence so far, i.e. the prompt, as llama.cpp's example does.
 * Greedy decoding only.
 * Counters: "drafted" (verification tokens), "accepted" (candidate tokens
 * accepted, bonus excluded), "lookahead_tokens" (lookahead-branch tokens).
 * docs/decoding/lookahead.md has the details and the defaults' reasons. */
#include <string.h>

#include "decode_util.h"
#include "lookahead_layout.h"
#include "plugins/builtins.h"
#include "sampling_params.h"

/* ---- layout ------------------------------------------------------------------------ */

int llmlab_la_layout_count(int W, int N, int n_cand, int D) { return 1 + W * (N - 1) + n_cand * D; }

void llmlab_la_layout_build(int W, int N, int n_cand, int D, llmlab_la_tok *toks) {
    int t = 0;
    toks[t++] = (llmlab_la_tok){LLMLAB_LA_ROOT, 0, 0, 0, -1, 1};
    for (int j = 0; j < N - 1; j++)
        for (int i = 0; i < W; i++) {
            /* context predecessor: level 0 chains along its columns, higher levels climb their column */
            int parent = j > 0 ? 1 + (j - 1) * W + i : (i > 0 ? 1 + (i - 1) : 0);
            toks[t++] = (llmlab_la_tok){LLMLAB_LA_LOOK, j, i, 1 + i + j, parent, j == N - 2};
        }
    for (int g = 0; g < n_cand; g++)
        for (int d = 0; d < D; d++) {
            int parent = d > 0 ? t - 1 : 0;
            toks[t++] = (llmlab_la_tok){LLMLAB_LA_VERIFY, g, d, 1 + d, parent, 1};
        }
}

int llmlab_la_sees(const llmlab_la_tok *a, const llmlab_la_tok *b) {
    if (b->kind == LLMLAB_LA_ROOT) return 1;
    if (a->kind != b->kind) return 0; /* the root sees only itself; the branches never mix */
    if (a->kind == LLMLAB_LA_VERIFY) return a->row == b->row && b->col <= a->col;
    if (b->row == 0) return b->col <= a->col;         /* level 0 up to a's column */
    return b->col == a->col && b->row <= a->row;      /* a's own column, levels 1..a's */
}

/* ---- the n-gram pool ------------------------------------------------------------------ */

typedef struct {
    int32_t *grams; /* [cap][len] ring, allocated at the first insert */
    int count;      /* n-grams held, <= cap */
    int head;       /* next index written (the oldest once full) */
} la_key;

typedef struct {
    la_key *keys;   /* [vocab] indexed by the n-gram's first token */
    int cap;        /* n-grams per key */
    int len;        /* tokens stored per n-gram: N - 1 (the key is not stored) */
} la_pool;

static void pool_free(const llmlab_host *h, la_pool *p, int vocab) {
    if (p->keys)
        for (int k = 0; k < vocab; k++) h->free(p->keys[k].grams);
    h->free(p->keys);
    p->keys = NULL;
}

/* The i-th most recent n-gram under key (i < count). */
static const int32_t *pool_get(const la_pool *p, int32_t key, int i) {
    const la_key *k = &p->keys[key];
    int slot = (k->head - 1 - i + 2 * p->cap) % p->cap;
    return k->grams + (size_t)slot * (size_t)p->len;
}

/* Adds gram[len] under key unless it is there already. */
static llmlab_status pool_add(const llmlab_host *h, la_pool *p, int32_t key, const int32_t *gram) {
    la_key *k = &p->keys[key];
    for (int i = 0; i < k->count; i++)
        if (!memcmp(pool_get(p, key, i), gram, sizeof(int32_t) * (size_t)p->len)) return LLMLAB_OK;
    if (!k->grams && !(k->grams = h->alloc(sizeof(int32_t) * (size_t)p->cap * (size_t)p->len)))
        return LLMLAB_ENOMEM;
    memcpy(k->grams + (size_t)k->head * (size_t)p->len, gram, sizeof(int32_t) * (size_t)p->len);
    k->head = (k->head + 1) % p->cap;
    if (k->count < p->cap) k->count++;
    return LLMLAB_OK;
}

/* ---- plugin state --------------------------------------------------------------------- */

typedef struct la_seq {
    llmlab_seq *s;
    int32_t *win;        /* [N-1][W] the window: level j, column i at win[j*W + i] */
    la_pool pool;
    int32_t *cand;       /* [G][N-1] this step's candidates (first `depth` tokens used) */
    int32_t *out;        /* [N] tokens accepted by a verify */
    int *slots;          /* [N] KV slots kept by a verify */
    int n_cand, depth;   /* candidates forwarded, tokens per candidate chain */
    int looked;          /* 1 = the lookahead branch was forwarded this step */
    int proposed;        /* 1 = propose() ran since the last verify */
    struct la_seq *next;
} la_seq;

typedef struct {
    const llmlab_host *h;
    int W, N, G;         /* window, n-gram size, most candidates verified */
    int pool_cap;        /* n-grams kept per key */
    int prompt_ngrams;   /* 1 = the pool starts with the prompt's n-grams */
    int vocab;
    int max_tokens;      /* 1 + W*(N-1) + G*(N-1) */
    llmlab_la_tok *layout; /* [max_tokens] scratch: the step's layout */
    int *idx;            /* [max_tokens] scratch: batch index of each layout token */
    int32_t *fresh;      /* [W] scratch: the last level's argmaxes */
    int32_t *gram;       /* [N] scratch: an n-gram being collected */
    la_seq *seqs;        /* per-sequence states (a list: batches are small) */
} la_state;

enum { LA_ROW_BUF = 256 }; /* rows kept on the stack; more come from the host's alloc */

static void la_destroy(void *self);

static llmlab_status la_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                               llmlab_err *err) {
    la_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    a->h = h;
    a->W = (int)h->param_int(p, "window");
    a->N = (int)h->param_int(p, "ngram");
    a->G = (int)h->param_int(p, "guess");
    a->pool_cap = (int)h->param_int(p, "pool_cap");
    a->prompt_ngrams = h->param_bool(p, "prompt_ngrams");
    a->vocab = h->model_vocab(e);
    a->max_tokens = llmlab_la_layout_count(a->W, a->N, a->G, a->N - 1);
    a->layout = h->alloc(sizeof *a->layout * (size_t)a->max_tokens);
    a->idx = h->alloc(sizeof *a->idx * (size_t)a->max_tokens);
    a->fresh = h->alloc(sizeof *a->fresh * (size_t)a->W);
    a->gram = h->alloc(sizeof *a->gram * (size_t)a->N);
    if (!a->layout || !a->idx || !a->fresh || !a->gram) {
        int n = a->max_tokens;
        la_destroy(a);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory for a step of %d tokens", n);
    }
    llmlab_apply_sampling_params(h, e, p);
    *self = a;
    return LLMLAB_OK;
}

static void la_seq_free(la_state *a, la_seq *q) {
    const llmlab_host *h = a->h;
    pool_free(h, &q->pool, a->vocab);
    h->free(q->win);
    h->free(q->cand);
    h->free(q->out);
    h->free(q->slots);
    h->free(q);
}

static void la_destroy(void *self) {
    la_state *a = self;
    if (!a) return;
    while (a->seqs) {
        la_seq *q = a->seqs;
        a->seqs = q->next;
        la_seq_free(a, q);
    }
    a->h->free(a->layout);
    a->h->free(a->idx);
    a->h->free(a->fresh);
    a->h->free(a->gram);
    a->h->free(a);
}

static la_seq *la_find(la_state *a, const llmlab_seq *s) {
    for (la_seq *q = a->seqs; q; q = q->next)
        if (q->s == s) return q;
    return NULL;
}

/* A token drawn uniformly from the first n tokens of s (its seeded stream). */
static int32_t la_random_token(const llmlab_host *h, llmlab_seq *s, int n) {
    return h->seq_tokens(s)[h->seq_rng_next(s) % (uint64_t)n];
}

/* The pool's start: every n-gram of the sequence's tokens, oldest first. */
static llmlab_status la_seed_pool(la_state *a, la_seq *q) {
    const int32_t *toks = a->h->seq_tokens(q->s);
    int len = a->h->seq_len(q->s);
    for (int i = 0; i + a->N <= len; i++) {
        llmlab_status r = pool_add(a->h, &q->pool, toks[i], toks + i + 1);
        if (r) return r;
    }
    return LLMLAB_OK;
}

static llmlab_status la_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    la_state *a = self;
    const llmlab_host *h = a->h;
    if (!h->seq_greedy(s))
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED,
                               "lookahead supports greedy decoding only (temperature 0); sequence %d samples",
                               h->seq_id(s));
    la_seq *q = h->alloc(sizeof *q);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory for sequence %d", h->seq_id(s));
    q->s = s;
    q->pool = (la_pool){h->alloc(sizeof(la_key) * (size_t)a->vocab), a->pool_cap, a->N - 1};
    q->win = h->alloc(sizeof(int32_t) * (size_t)(a->N - 1) * (size_t)a->W);
    q->cand = h->alloc(sizeof(int32_t) * (size_t)a->G * (size_t)(a->N - 1));
    q->out = h->alloc(sizeof(int32_t) * (size_t)a->N);
    q->slots = h->alloc(sizeof(int) * (size_t)a->N);
    llmlab_status r = (!q->pool.keys || !q->win || !q->cand || !q->out || !q->slots) ? LLMLAB_ENOMEM : LLMLAB_OK;
    if (!r && a->prompt_ngrams) r = la_seed_pool(a, q);
    if (r) {
        la_seq_free(a, q);
        return llmlab_plugin_fail(err, r, "out of memory for sequence %d's window and n-gram pool", h->seq_id(s));
    }
    int len = h->seq_len(s);
    for (int c = 0; c < (a->N - 1) * a->W; c++) q->win[c] = la_random_token(h, s, len);
    q->next = a->seqs;
    a->seqs = q;
    return LLMLAB_OK;
}

static void la_seq_end(void *self, llmlab_seq *s) {
    la_state *a = self;
    for (la_seq **pp = &a->seqs; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            la_seq *q = *pp;
            *pp = q->next;
            la_seq_free(a, q);
            return;
        }
}

/* ---- propose ---------------------------------------------------------------------------- */

/* Copies up to G pool n-grams under root, most recent first, cut to D tokens and
 * without repeats, into q->cand; returns how many. */
static int la_pick_candidates(const la_state *a, la_seq *q, int32_t root, int D) {
    int n = 0, have = q->pool.keys[root].count, stride = a->N - 1;
    for (int i = 0; i < have && n < a->G; i++) {
        const int32_t *gram = pool_get(&q->pool, root, i);
        size_t bytes = sizeof(int32_t) * (size_t)D;
        int dup = 0;
        for (int g = 0; g < n && !dup; g++) dup = !memcmp(q->cand + (size_t)g * (size_t)stride, gram, bytes);
        if (!dup) memcpy(q->cand + (size_t)n++ * (size_t)stride, gram, bytes);
    }
    return n;
}

static int32_t la_token_of(const la_state *a, const la_seq *q, const llmlab_la_tok *t, int32_t root) {
    switch (t->kind) {
    case LLMLAB_LA_LOOK: return q->win[t->row * a->W + t->col];
    case LLMLAB_LA_VERIFY: return q->cand[t->row * (a->N - 1) + t->col];
    default: return root;
    }
}

static llmlab_status la_no_state(const llmlab_host *h, llmlab_seq *s, llmlab_err *err) {
    return llmlab_plugin_fail(err, LLMLAB_EINVAL, "sequence %d has no state (seq_begin was not called)", h->seq_id(s));
}

static llmlab_status la_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    la_state *a = self;
    const llmlab_host *H = a->h;
    la_seq *q = la_find(a, s);
    if (!q) return la_no_state(H, s, err);
    int remaining = H->seq_remaining(s), p0 = H->seq_kv_len(s);
    int32_t root = H->seq_tokens(s)[H->seq_len(s) - 1];
    /* Candidate tokens past remaining - 1 could never be accepted (the bonus comes
     * too); the window only pays off when a later step can still verify. */
    q->depth = remaining - 1 < a->N - 1 ? remaining - 1 : a->N - 1;
    if (q->depth < 0) q->depth = 0;
    q->looked = remaining >= 3;
    q->n_cand = q->depth > 0 ? la_pick_candidates(a, q, root, q->depth) : 0;
    int W = q->looked ? a->W : 0;
    int n = llmlab_la_layout_count(W, a->N, q->n_cand, q->depth);
    llmlab_la_layout_build(W, a->N, q->n_cand, q->depth, a->layout);
    /* The method's visibility is the layout's parent tree (lookahead_layout.h), so
     * tree visibility states it exactly; a single chain needs nothing. */
    if (W > 0 || q->n_cand > 1) H->step_set_tree(st);
    for (int t = 0; t < n; t++) {
        const llmlab_la_tok *L = &a->layout[t];
        a->idx[t] = H->step_add(st, s, la_token_of(a, q, L, root), p0 + L->dpos, L->logits ? LLMLAB_ROW_LOGITS : 0,
                                L->parent >= 0 ? a->idx[L->parent] : -1);
        if (a->idx[t] < 0)
            return llmlab_plugin_fail(err, LLMLAB_ENOKV, "the step is full (sequence %d, token %d of %d)",
                                   H->seq_id(s), t, n);
    }
    H->metric_add(s, "drafted", q->n_cand * q->depth);
    H->metric_add(s, "lookahead_tokens", W * (a->N - 1));
    q->proposed = 1;
    return LLMLAB_OK;
}

/* ---- verify ------------------------------------------------------------------------------ */

static int la_row_look(const la_state *a, int level, int col) { return 1 + level * a->W + col; }

static int la_row_verify(const la_state *a, const la_seq *q, int g, int d) {
    return 1 + (q->looked ? a->W * (a->N - 1) : 0) + g * q->depth + d;
}

static int32_t la_argmax_row(const llmlab_host *H, llmlab_seq *s, const llmlab_step *st, int row) {
    return H->seq_sample(s, H->step_logits(st, row)); /* greedy sequences only: the engine's argmax */
}

/* The longest-matching candidate: *best (-1 = none), its matched length (the
 * return value) and the target's token after the match in *next. */
static int la_best_candidate(const la_state *a, la_seq *q, const llmlab_step *st, const int *rows, int *best,
                             int32_t *next) {
    const llmlab_host *H = a->h;
    int32_t after_root = la_argmax_row(H, q->s, st, rows[0]);
    int best_m = 0;
    *best = -1;
    *next = after_root;
    for (int g = 0; g < q->n_cand; g++) {
        const int32_t *c = q->cand + (size_t)g * (size_t)(a->N - 1);
        int m = 0;
        int32_t t = after_root;
        while (m < q->depth && c[m] == t) t = la_argmax_row(H, q->s, st, rows[la_row_verify(a, q, g, m++)]);
        if (m > best_m) {
            best_m = m;
            *best = g;
            *next = t;
        }
    }
    return best_m;
}

/* Collects the window's n-grams, moves its levels up and realigns it after a
 * jump of `extra` positions beyond one. */
static llmlab_status la_update_window(la_state *a, la_seq *q, const llmlab_step *st, const int *rows, int extra) {
    const llmlab_host *H = a->h;
    int W = a->W, levels = a->N - 1;
    for (int i = 0; i < W; i++) a->fresh[i] = la_argmax_row(H, q->s, st, rows[la_row_look(a, levels - 1, i)]);
    for (int i = 0; i < W; i++) {
        for (int j = 0; j < levels; j++) a->gram[j] = q->win[j * W + i];
        a->gram[levels] = a->fresh[i];
        llmlab_status r = pool_add(H, &q->pool, a->gram[0], a->gram + 1);
        if (r) return r;
    }
    memmove(q->win, q->win + W, sizeof(int32_t) * (size_t)(levels - 1) * (size_t)W);
    memcpy(q->win + (size_t)(levels - 1) * (size_t)W, a->fresh, sizeof(int32_t) * (size_t)W);
    if (extra <= 0) return LLMLAB_OK;
    int keep = extra < W ? W - extra : 0, len = H->seq_len(q->s);
    for (int j = 0; j < levels; j++) {
        int32_t *lv = q->win + (size_t)j * (size_t)W;
        memmove(lv, lv + (W - keep), sizeof(int32_t) * (size_t)keep);
        for (int i = keep; i < W; i++) lv[i] = la_random_token(H, q->s, len);
    }
    return LLMLAB_OK;
}

/* Keeps the root's and the accepted candidate tokens' slots and appends them
 * with the next token. */
static llmlab_status la_commit(la_state *a, la_seq *q, const llmlab_step *st, const int *rows, int best, int m,
                               int32_t next, llmlab_err *err) {
    const llmlab_host *H = a->h;
    q->slots[0] = H->step_slot(st, rows[0]);
    for (int d = 0; d < m; d++) {
        q->out[d] = q->cand[(size_t)best * (size_t)(a->N - 1) + (size_t)d];
        q->slots[d + 1] = H->step_slot(st, rows[la_row_verify(a, q, best, d)]);
    }
    q->out[m] = next;
    llmlab_status r = H->seq_kv_keep(q->s, q->slots, m + 1, err);
    if (r) return r;
    H->metric_add(q->s, "accepted", m);
    return H->seq_accept(q->s, q->out, m + 1, err);
}

static llmlab_status la_verify_step(la_state *a, la_seq *q, const llmlab_step *st, const int *rows, int n,
                                    llmlab_err *err) {
    const llmlab_host *H = a->h;
    int proposed = q->proposed ? llmlab_la_layout_count(q->looked ? a->W : 0, a->N, q->n_cand, q->depth) : 0;
    if (n != proposed)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "sequence %d has %d rows in the step, %d proposed",
                               H->seq_id(q->s), n, proposed);
    int best;
    int32_t next;
    int m = la_best_candidate(a, q, st, rows, &best, &next);
    llmlab_status r = la_commit(a, q, st, rows, best, m, next, err);
    if (!r && q->looked && (r = la_update_window(a, q, st, rows, m)))
        return llmlab_plugin_fail(err, r, "out of memory for sequence %d's n-gram pool", H->seq_id(q->s));
    return r;
}

static llmlab_status la_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    la_state *a = self;
    const llmlab_host *H = a->h;
    la_seq *q = la_find(a, s);
    if (!q) return la_no_state(H, s, err);
    int buf[LA_ROW_BUF], *rows;
    int n = llmlab_dec_rows(H, st, s, buf, LA_ROW_BUF, &rows);
    if (n < 0) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status r = LLMLAB_OK;
    if (n > 0 && llmlab_dec_rows_are_prompt(H, st, s, rows)) r = llmlab_dec_verify_prompt(H, s, st, rows[n - 1], err);
    else if (n > 0) r = la_verify_step(a, q, st, rows, n, err);
    q->proposed = 0;
    llmlab_dec_rows_free(H, rows, buf);
    return r;
}

static int la_max_step_tokens(void *self) { return ((la_state *)self)->max_tokens; }

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), la_create, la_destroy, la_seq_begin, la_seq_end, la_propose, la_verify,
    NULL,                        la_max_step_tokens,
};

static const llmlab_param_spec params[] = {
    LLMLAB_SAMPLING_PARAM_SPECS,
    {"window", LLMLAB_PARAM_INT, "7", 1, 64, NULL, "W: lookahead window width (future positions per level)"},
    {"ngram", LLMLAB_PARAM_INT, "5", 2, 16, NULL, "N: n-gram size; the window has N-1 levels"},
    {"guess", LLMLAB_PARAM_INT, "7", 1, 64, NULL, "G: most pool candidates verified per step"},
    {"pool_cap", LLMLAB_PARAM_INT, "7", 1, 1024, NULL, "n-grams kept per key token (oldest dropped first)"},
    {"prompt_ngrams", LLMLAB_PARAM_BOOL, "false", 1, 0, NULL, "start the pool with the prompt's n-grams"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "lookahead", "1.0",
    "Jacobi lookahead window + n-gram pool verified in one forward (greedy only, lossless)", params,
    (int)(sizeof params / sizeof params[0]), &ops);

const llmlab_plugin_desc *llmlab_builtin_lookahead(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
