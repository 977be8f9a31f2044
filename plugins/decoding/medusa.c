/* medusa.c - Medusa decoding (Cai et al. 2024; FasterDecoding/Medusa), batched.
 *
 * K heads on the target's final-normed hidden state guess the tokens 2..K+1
 * positions ahead; their top-k lists fill a candidate tree (medusa_tree.h) that
 * the target verifies in the engine's one forward with tree visibility.
 *
 * Per step and sequence:
 *   step_begin: the hidden state of the row that produced the sequence's last
 *     accepted token goes through every head used, all sequences of the step in
 *     one matmul per head; each head's top-k list is kept;
 *   propose: root = the last accepted token (at seq_kv_len), then the tree's
 *     nodes, node i at position root + depth(i), parent = its tree parent; every
 *     row returns logits and the hidden state.  A sequence with no hidden state
 *     yet (after a preemption) forwards the root alone;
 *   verify: greedy acceptance walks down from the root: the target's token at a
 *     node (seq_sample: argmax for greedy sequences, a draw for sampled ones) is
 *     accepted when a child carries it, else it is the bonus token and the walk
 *     stops.  Lossless: greedy output is exactly autoregressive greedy, sampled
 *     output is distributed as the target's.  Typical acceptance (Medusa's):
 *     a child passes when p_parent(token) > min(epsilon, delta * exp(-H(p_parent))),
 *     the deepest passing path wins (ties: higher likelihood), then a bonus token
 *     is drawn at its end; NOT lossless.  The kept KV slots are the root's and the
 *     accepted nodes' in path order; the bonus is the next root.
 * The first verify after the prompt sees only the prompt's last row (committed).
 * Never more tokens than seq_remaining allows are accepted, and the tree is cut
 * to the depth that can still be accepted. */
#include <math.h>
#include <string.h>

#include "llmlab/plugin.h"
#include "decode_util.h"
#include "medusa_heads.h"
#include "medusa_tree.h"
#include "sampling_params.h"

typedef struct md_seq {
    llmlab_seq *s;
    struct md_seq *next;
    int has_hidden;    /* hidden holds the state that predicted the next root */
    long stamp;        /* the step whose heads filled cand (0: none) */
    int n_use;         /* nodes forwarded this step, root included */
    float *hidden;     /* [dim] */
    int32_t *cand;     /* [depth][kmax] each head's top-k of this step */
    int32_t *tokens;   /* [tree.n] tokens forwarded this step, node order */
} md_seq;

typedef struct {
    const llmlab_host *h;
    llmlab_engine *e;
    medusa_tree tree;
    medusa_heads heads;
    int typical;       /* acceptance = typical */
    float epsilon, delta;
    int dim, vocab, kmax; /* kmax: longest top-k list any head must give */
    md_seq *seqs;      /* per-sequence states, a list */
    long step;         /* step_begin calls so far */
    int cap;           /* rows the step scratch holds */
    float *x;          /* [cap][dim] hidden states of the step's sequences */
    float *work;       /* [2][cap][dim] head scratch */
    float *logits;     /* [cap][vocab] one head's logits */
    md_seq **owner;    /* [cap] sequence of each row */
    float *probs;      /* [vocab] typical acceptance */
    int rows_cap;
    int *rows;         /* [rows_cap] a sequence's batch indices */
    int *parents;      /* [tree.n] */
    int32_t *pos;      /* [tree.n] */
    int *slots;        /* [tree.n] kept KV slots, path order */
    int32_t *acc;      /* [tree.n] accepted tokens then the bonus */
    uint8_t *ok;       /* [tree.n] typical: the node's path passes */
    double *ll;        /* [tree.n] typical: the path's log-likelihood */
} md_state;

/* ---- lifecycle ------------------------------------------------------------------------ */

static void seq_free(const llmlab_host *h, md_seq *q) {
    if (!q) return;
    h->free(q->hidden);
    h->free(q->cand);
    h->free(q->tokens);
    h->free(q);
}

static void free_step_scratch(md_state *S) {
    const llmlab_host *h = S->h;
    h->free(S->x);
    h->free(S->work);
    h->free(S->logits);
    h->free(S->owner);
    S->x = S->work = S->logits = NULL;
    S->owner = NULL;
    S->cap = 0;
}

static void md_destroy(void *self) {
    md_state *S = self;
    if (!S) return;
    const llmlab_host *h = S->h;
    while (S->seqs) {
        md_seq *q = S->seqs;
        S->seqs = q->next;
        seq_free(h, q);
    }
    free_step_scratch(S);
    void *bufs[] = {S->probs, S->rows, S->parents, S->pos, S->slots, S->acc, S->ok, S->ll};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) h->free(bufs[i]);
    medusa_heads_close(&S->heads);
    medusa_tree_free(&S->tree);
    h->free(S);
}

static llmlab_status load_tree(md_state *S, const llmlab_params *p, llmlab_err *err) {
    const char *spec = S->h->param_string(p, "tree");
    char msg[256];
    if (!spec || !spec[strspn(spec, " \t\n")]) {
        if (medusa_tree_default(&S->tree)) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    } else if (medusa_tree_parse(&S->tree, spec, msg, sizeof msg)) {
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "parameter 'tree': %s", msg);
    }
    S->kmax = 1;
    for (int d = 0; d < S->tree.depth; d++)
        if (S->tree.topk[d] > S->kmax) S->kmax = S->tree.topk[d];
    if (S->kmax > S->vocab)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "parameter 'tree': a path asks for rank %d but the vocabulary has %d "
                           "tokens", S->kmax - 1, S->vocab);
    return LLMLAB_OK;
}

static llmlab_status alloc_tree_scratch(md_state *S, llmlab_err *err) {
    const llmlab_host *h = S->h;
    size_t n = (size_t)S->tree.n;
    S->rows_cap = S->tree.n;
    S->probs = h->alloc(sizeof(float) * (size_t)S->vocab);
    S->rows = h->alloc(sizeof(int) * n);
    S->parents = h->alloc(sizeof(int) * n);
    S->pos = h->alloc(sizeof(int32_t) * n);
    S->slots = h->alloc(sizeof(int) * n);
    S->acc = h->alloc(sizeof(int32_t) * n);
    S->ok = h->alloc(n);
    S->ll = h->alloc(sizeof(double) * n);
    if (!S->probs || !S->rows || !S->parents || !S->pos || !S->slots || !S->acc || !S->ok || !S->ll)
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    return LLMLAB_OK;
}

static llmlab_status md_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                               llmlab_err *err) {
    md_state *S = h->alloc(sizeof *S);
    if (!S) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    S->h = h;
    S->e = e;
    S->dim = h->model_dim(e);
    S->vocab = h->model_vocab(e);
    S->typical = !strcmp(h->param_string(p, "acceptance"), "typical");
    S->epsilon = (float)h->param_float(p, "epsilon");
    S->delta = (float)h->param_float(p, "delta");
    llmlab_status st = load_tree(S, p, err);
    if (!st) st = medusa_heads_open(&S->heads, h, h->param_string(p, "heads"), S->dim, S->vocab, S->tree.depth, err);
    if (!st) st = alloc_tree_scratch(S, err);
    if (st) {
        md_destroy(S);
        return st;
    }
    llmlab_apply_sampling_params(h, e, p);
    h->engine_want_hidden(e); /* the prompt's last row feeds the first heads evaluation */
    *self = S;
    return LLMLAB_OK;
}

static md_seq *find(md_state *S, const llmlab_seq *s) {
    for (md_seq *q = S->seqs; q; q = q->next)
        if (q->s == s) return q;
    return NULL;
}

/* A fresh state each time: after a preemption the sequence starts again with no
 * hidden state. */
static llmlab_status md_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    md_state *S = self;
    const llmlab_host *h = S->h;
    md_seq *q = find(S, s);
    if (q) {
        q->has_hidden = 0;
        q->stamp = 0;
        return LLMLAB_OK;
    }
    q = h->alloc(sizeof *q);
    if (q) {
        q->hidden = h->alloc(sizeof(float) * (size_t)S->dim);
        q->cand = h->alloc(sizeof(int32_t) * (size_t)(S->tree.depth ? S->tree.depth : 1) * (size_t)S->kmax);
        q->tokens = h->alloc(sizeof(int32_t) * (size_t)S->tree.n);
    }
    if (!q || !q->hidden || !q->cand || !q->tokens) {
        seq_free(h, q);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    }
    q->s = s;
    q->next = S->seqs;
    S->seqs = q;
    return LLMLAB_OK;
}

static void md_seq_end(void *self, llmlab_seq *s) {
    md_state *S = self;
    for (md_seq **at = &S->seqs; *at; at = &(*at)->next)
        if ((*at)->s == s) {
            md_seq *q = *at;
            *at = q->next;
            seq_free(S->h, q);
            return;
        }
}

/* ---- step_begin: all heads for all sequences ------------------------------------------ */

static llmlab_status grow_step_scratch(md_state *S, int n, llmlab_err *err) {
    if (n <= S->cap) return LLMLAB_OK;
    const llmlab_host *h = S->h;
    free_step_scratch(S);
    S->x = h->alloc(sizeof(float) * (size_t)n * (size_t)S->dim);
    S->work = h->alloc(sizeof(float) * 2 * (size_t)n * (size_t)S->dim);
    S->logits = h->alloc(sizeof(float) * (size_t)n * (size_t)S->vocab);
    S->owner = h->alloc(sizeof(md_seq *) * (size_t)n);
    if (!S->x || !S->work || !S->logits || !S->owner) {
        free_step_scratch(S);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory for %d sequences' heads", n);
    }
    S->cap = n;
    return LLMLAB_OK;
}

static int min_int(int a, int b) { return a < b ? a : b; }

static llmlab_status md_step_begin(void *self, llmlab_seq *const *seqs, int n, llmlab_err *err) {
    md_state *S = self;
    const llmlab_host *h = S->h;
    S->step++;
    llmlab_status st = grow_step_scratch(S, n, err);
    if (st) return st;
    int m = 0, depth = 0;
    for (int i = 0; i < n; i++) {
        md_seq *q = find(S, seqs[i]);
        int drafts = min_int(h->seq_remaining(seqs[i]) - 1, S->tree.depth);
        if (!q || !q->has_hidden || drafts <= 0) continue;
        if (drafts > depth) depth = drafts;
        memcpy(S->x + (size_t)m * (size_t)S->dim, q->hidden, sizeof(float) * (size_t)S->dim);
        S->owner[m++] = q;
    }
    if (m == 0) return LLMLAB_OK;
    for (int k = 0; k < depth; k++) {
        medusa_heads_run(&S->heads, k, S->x, m, S->work, S->logits, h->engine_pool(S->e));
        for (int r = 0; r < m; r++)
            medusa_topk(S->logits + (size_t)r * (size_t)S->vocab, S->vocab, S->tree.topk[k],
                        S->owner[r]->cand + (size_t)k * (size_t)S->kmax);
    }
    for (int r = 0; r < m; r++) S->owner[r]->stamp = S->step;
    return LLMLAB_OK;
}

/* ---- propose ------------------------------------------------------------------------------ */

static llmlab_status md_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    md_state *S = self;
    const llmlab_host *h = S->h;
    md_seq *q = find(S, s);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "propose for a sequence that never began");
    int ready = q->has_hidden && q->stamp == S->step;
    int n_use = ready ? medusa_tree_cut(&S->tree, h->seq_remaining(s) - 1) : 1;
    int32_t root = h->seq_tokens(s)[h->seq_len(s) - 1], root_pos = h->seq_kv_len(s);
    medusa_tree_tokens(&S->tree, n_use, root, q->cand, S->kmax, q->tokens);
    medusa_tree_layout(&S->tree, n_use, 0, root_pos, S->parents, S->pos);
    const int flags = LLMLAB_ROW_LOGITS | LLMLAB_ROW_HIDDEN;
    int base = h->step_add(st, s, root, root_pos, flags, -1);
    if (base < 0) return LLMLAB_ENOKV; /* the engine sized the step: it is full */
    if (n_use > 1) h->step_set_tree(st);
    for (int i = 1; i < n_use; i++) {
        int at = h->step_add(st, s, q->tokens[i], S->pos[i], flags, base + S->parents[i]);
        if (at < 0) return LLMLAB_ENOKV;
        if (at != base + i) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "step indices of one sequence are not consecutive");
    }
    q->n_use = n_use;
    return LLMLAB_OK;
}

/* ---- verify ------------------------------------------------------------------------------- */

/* s's batch indices into S->rows (grown when a prompt chunk is longer); the count. */
static int read_rows(md_state *S, llmlab_seq *s, const llmlab_step *st, llmlab_err *err) {
    int n = S->h->step_rows(st, s, S->rows, S->rows_cap);
    if (n <= S->rows_cap) return n;
    int *g = S->h->alloc(sizeof(int) * (size_t)n);
    if (!g) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory"), -1;
    S->h->free(S->rows);
    S->rows = g;
    S->rows_cap = n;
    return S->h->step_rows(st, s, S->rows, S->rows_cap);
}

/* The child of `node` among the first n_use nodes whose token is tok, or -1. */
static int child_with(const md_state *S, const md_seq *q, int node, int n_use, int32_t tok) {
    const medusa_tree *t = &S->tree;
    for (int c = t->child_first[node], e = c + t->child_count[node]; c >= 0 && c < e && c < n_use; c++)
        if (q->tokens[c] == tok) return c;
    return -1;
}

/* Greedy acceptance: follows the target's own tokens down the tree.  Fills
 * S->acc[0..m] (m accepted, then the bonus) and returns the last accepted node. */
static int walk_exact(md_state *S, md_seq *q, llmlab_seq *s, const llmlab_step *st, int n_use, int max_acc,
                      int *m_out) {
    const llmlab_host *h = S->h;
    int cur = 0, m = 0;
    for (;;) {
        int32_t tok = h->seq_sample(s, h->step_logits(st, S->rows[cur]));
        int c = m < max_acc ? child_with(S, q, cur, n_use, tok) : -1;
        S->acc[m] = tok;
        if (c < 0) break;
        m++;
        cur = c;
    }
    *m_out = m;
    return cur;
}

/* The distribution typical acceptance tests against: the sequence's sampling
 * distribution, or softmax(logits) at temperature 1 for a greedy sequence. */
static void typical_probs(const md_state *S, llmlab_seq *s, const float *logits, float *p) {
    const llmlab_host *h = S->h;
    if (!h->seq_greedy(s)) {
        h->seq_probs(s, logits, p);
        return;
    }
    float mx = -INFINITY;
    for (int i = 0; i < S->vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < S->vocab; i++) {
        p[i] = isnan(logits[i]) ? 0.0f : expf(logits[i] - mx);
        sum += p[i];
    }
    for (int i = 0; i < S->vocab; i++) p[i] = (float)(p[i] / sum);
}

static float typical_threshold(const md_state *S, const float *p) {
    double H = 0;
    for (int i = 0; i < S->vocab; i++)
        if (p[i] > 0) H -= (double)p[i] * log((double)p[i]);
    double t = (double)S->delta * exp(-H);
    return (float)(t < S->epsilon ? t : S->epsilon);
}

/* Typical acceptance: the deepest node whose whole path passes (ties: the higher
 * path likelihood, then the earlier node).  Fills S->acc like walk_exact. */
static int walk_typical(md_state *S, md_seq *q, llmlab_seq *s, const llmlab_step *st, int n_use, int max_acc,
                        int *m_out) {
    const llmlab_host *h = S->h;
    const medusa_tree *t = &S->tree;
    int best = 0, probs_of = -1;
    float thr = 0;
    S->ok[0] = 1;
    S->ll[0] = 0;
    for (int i = 1; i < n_use; i++) {
        int p = t->parent[i];
        S->ok[i] = 0;
        if (!S->ok[p] || t->node_depth[i] > max_acc) continue;
        if (probs_of != p) { /* children are contiguous: one distribution per parent */
            typical_probs(S, s, h->step_logits(st, S->rows[p]), S->probs);
            thr = typical_threshold(S, S->probs);
            probs_of = p;
        }
        float pr = S->probs[q->tokens[i]];
        if (!(pr > thr)) continue;
        S->ok[i] = 1;
        S->ll[i] = S->ll[p] + log((double)pr);
        int d = t->node_depth[i], db = t->node_depth[best];
        if (d > db || (d == db && S->ll[i] > S->ll[best])) best = i;
    }
    int m = t->node_depth[best];
    for (int j = best; j > 0; j = t->parent[j]) S->acc[t->node_depth[j] - 1] = q->tokens[j];
    S->acc[m] = h->seq_sample(s, h->step_logits(st, S->rows[best]));
    *m_out = m;
    return best;
}

/* Remembers the hidden state of batch row `row` for the next heads evaluation. */
static void keep_hidden(md_state *S, md_seq *q, const llmlab_step *st, int row) {
    const float *hid = S->h->step_hidden(st, row);
    q->has_hidden = hid != NULL;
    if (hid) memcpy(q->hidden, hid, sizeof(float) * (size_t)S->dim);
}

/* The first verify: the prompt's last row, already committed. */
static llmlab_status verify_prompt(md_state *S, md_seq *q, llmlab_seq *s, const llmlab_step *st, int last,
                                   llmlab_err *err) {
    const llmlab_host *h = S->h;
    int32_t tok = h->seq_sample(s, h->step_logits(st, last));
    keep_hidden(S, q, st, last);
    h->metric_add(s, "drafted", 0);
    h->metric_add(s, "accepted", 0);
    return h->seq_accept(s, &tok, 1, err);
}

static llmlab_status md_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    md_state *S = self;
    const llmlab_host *h = S->h;
    md_seq *q = find(S, s);
    if (!q) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "verify for a sequence that never began");
    int n = read_rows(S, s, st, err);
    if (n < 0) return err ? err->code : LLMLAB_ENOMEM;
    if (n == 0) return LLMLAB_OK;
    if (h->step_slot(st, S->rows[n - 1]) < h->seq_kv_len(s)) return verify_prompt(S, q, s, st, S->rows[n - 1], err);
    if (n != q->n_use)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "verify sees %d rows of the sequence, propose added %d", n, q->n_use);
    for (int i = 0; i < n; i++)
        if (!h->step_logits(st, S->rows[i]))
            return llmlab_plugin_fail(err, LLMLAB_EINVAL, "row %d of the sequence carries no logits", i);
    int max_acc = min_int(h->seq_remaining(s) - 1, S->tree.depth), m = 0;
    int last = S->typical ? walk_typical(S, q, s, st, n, max_acc, &m) : walk_exact(S, q, s, st, n, max_acc, &m);
    for (int j = last, k = m; k >= 0; j = S->tree.parent[j], k--) S->slots[k] = h->step_slot(st, S->rows[j]);
    llmlab_status r = h->seq_kv_keep(s, S->slots, m + 1, err);
    if (r) return r;
    keep_hidden(S, q, st, S->rows[last]);
    h->metric_add(s, "drafted", n - 1);
    h->metric_add(s, "accepted", m);
    return h->seq_accept(s, S->acc, m + 1, err);
}

static int md_max_step_tokens(void *self) { return ((md_state *)self)->tree.n; }

/* ---- descriptor ------------------------------------------------------------------------------ */

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), md_create, md_destroy, md_seq_begin, md_seq_end, md_propose, md_verify,
    md_step_begin, md_max_step_tokens,
};

static const char *const acceptances[] = {"greedy", "typical", NULL};

static const llmlab_param_spec params[] = {
    {"heads", LLMLAB_PARAM_STRING, NULL, 1, 0, NULL,
     "medusa_lm_head.safetensors for this model (Medusa layout; required)"},
    {"tree", LLMLAB_PARAM_STRING, "", 1, 0, NULL,
     "candidate paths 'r;r,r;...' (top-k rank per depth); empty = the default 63-node depth-4 tree"},
    {"acceptance", LLMLAB_PARAM_ENUM, "greedy", 1, 0, acceptances,
     "greedy: the target's own token must be in the tree (lossless); typical: Medusa's rule (not lossless)"},
    {"epsilon", LLMLAB_PARAM_FLOAT, "0.09", 0, 1, NULL, "typical: hard threshold on p(token)"},
    {"delta", LLMLAB_PARAM_FLOAT, "0.3", 0, 1, NULL, "typical: entropy-scaled threshold delta * exp(-H)"},
    LLMLAB_SAMPLING_PARAM_SPECS,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "medusa", "1.0", "Medusa heads propose a candidate tree, verified in one forward",
    params, (int)(sizeof params / sizeof params[0]), &ops);

#include "plugins/builtins.h"

const llmlab_plugin_desc *llmlab_builtin_medusa(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
