/* prompt_lookup.c - prompt lookup decoding: drafts copied from the sequence's
 * own text (prompt and generated tokens), verified in the one target forward.
 *
 * propose: the suffix n-gram's most recent earlier occurrence (ngram_match.h:
 * max_ngram down to min_ngram) gives up to num_pred_tokens drafts; they go to the
 * step as a chain after the root (the last accepted token), every row with logits.
 * verify: row j predicts the token after the root and j drafts.
 *   Greedy: accept drafts while each equals the target's argmax, then the argmax
 *   after the last accepted one (the bonus): exactly greedy decoding's output.
 *   Sampled: speculative sampling with a one-hot draft distribution q = e_d (the
 *   draft is a deterministic function of the prefix): accept d with probability
 *   min(1, p(d)/q(d)) = p(d); on rejection draw from normalize(max(0, p - q)),
 *   which is p with d removed and renormalised, and stop; after all drafts a bonus
 *   from p.  This is Leviathan/Chen's rule, so every token is distributed as the
 *   target's sampling distribution p (temperature, top-k/p, min-p applied).
 * Counters: "drafted" (drafts forwarded) and "accepted" (drafts accepted, bonus
 * excluded).  docs/decoding/prompt_lookup.md has the details. */
#include <stddef.h>

#include "decode_util.h"
#include "ngram_match.h"
#include "plugins/builtins.h"
#include "sampling_params.h"

typedef struct pl_seq {
    llmlab_seq *s;
    int n_draft;          /* drafts forwarded this step after the root (0 = root only) */
    int32_t *draft;       /* [num_pred + 1] this step's drafts in sequence order; then the accepted tokens */
    int *slots;           /* [num_pred + 1] KV slots kept by verify */
    struct pl_seq *next;
} pl_seq;

typedef struct {
    const llmlab_host *h;
    int max_ngram, min_ngram; /* suffix n-gram lengths tried, longest first */
    int num_pred;             /* most drafts per step */
    int vocab;
    float *probs;             /* [vocab] scratch: the target's sampling distribution */
    pl_seq *seqs;             /* per-sequence states (a list: batches are small) */
} pl_state;

enum { PL_ROW_BUF = 64 }; /* rows kept on the stack; more come from the host's alloc */

static llmlab_status pl_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                               llmlab_err *err) {
    int max_n = (int)h->param_int(p, "max_ngram"), min_n = (int)h->param_int(p, "min_ngram");
    if (min_n > max_n)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "min_ngram (%d) is larger than max_ngram (%d)", min_n, max_n);
    pl_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    a->h = h;
    a->max_ngram = max_n;
    a->min_ngram = min_n;
    a->num_pred = (int)h->param_int(p, "num_pred_tokens");
    a->vocab = h->model_vocab(e);
    if (!(a->probs = h->alloc(sizeof(float) * (size_t)a->vocab))) {
        h->free(a);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory for a distribution over %d tokens", a->vocab);
    }
    llmlab_apply_sampling_params(h, e, p);
    *self = a;
    return LLMLAB_OK;
}

static void pl_seq_free(const llmlab_host *h, pl_seq *q) {
    h->free(q->draft);
    h->free(q->slots);
    h->free(q);
}

static void pl_destroy(void *self) {
    pl_state *a = self;
    if (!a) return;
    while (a->seqs) {
        pl_seq *q = a->seqs;
        a->seqs = q->next;
        pl_seq_free(a->h, q);
    }
    a->h->free(a->probs);
    a->h->free(a);
}

static pl_seq *pl_find(pl_state *a, const llmlab_seq *s) {
    for (pl_seq *q = a->seqs; q; q = q->next)
        if (q->s == s) return q;
    return NULL;
}

static llmlab_status pl_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    pl_state *a = self;
    size_t n = (size_t)a->num_pred + 1;
    pl_seq *q = a->h->alloc(sizeof *q);
    if (q) {
        q->draft = a->h->alloc(sizeof(int32_t) * n);
        q->slots = a->h->alloc(sizeof(int) * n);
    }
    if (!q || !q->draft || !q->slots) {
        if (q) pl_seq_free(a->h, q);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory for sequence %d", a->h->seq_id(s));
    }
    q->s = s;
    q->next = a->seqs;
    a->seqs = q;
    return LLMLAB_OK;
}

static void pl_seq_end(void *self, llmlab_seq *s) {
    pl_state *a = self;
    for (pl_seq **pp = &a->seqs; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            pl_seq *q = *pp;
            *pp = q->next;
            pl_seq_free(a->h, q);
            return;
        }
}

static llmlab_status pl_no_state(const llmlab_host *h, llmlab_seq *s, llmlab_err *err) {
    return llmlab_plugin_fail(err, LLMLAB_EINVAL, "sequence %d has no state (seq_begin was not called)", h->seq_id(s));
}

static llmlab_status pl_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    pl_state *a = self;
    const llmlab_host *H = a->h;
    pl_seq *q = pl_find(a, s);
    if (!q) return pl_no_state(H, s, err);
    const int32_t *toks = H->seq_tokens(s);
    int len = H->seq_len(s), pos = H->seq_kv_len(s);
    /* Drafts beyond remaining - 1 could never be accepted: the bonus comes too. */
    int room = H->seq_remaining(s) - 1, k_max = a->num_pred < room ? a->num_pred : room;
    llmlab_ngram_match m = llmlab_ngram_lookup(toks, len, a->min_ngram, a->max_ngram, k_max);
    int prev = H->step_add(st, s, toks[len - 1], pos, LLMLAB_ROW_LOGITS, -1);
    if (prev < 0) return llmlab_plugin_fail(err, LLMLAB_ENOKV, "the step is full (sequence %d)", H->seq_id(s));
    q->n_draft = 0;
    for (int k = 0; k < m.count; k++) {
        q->draft[k] = toks[m.start + k];
        prev = H->step_add(st, s, q->draft[k], pos + 1 + k, LLMLAB_ROW_LOGITS, prev);
        if (prev < 0) return llmlab_plugin_fail(err, LLMLAB_ENOKV, "the step is full (sequence %d)", H->seq_id(s));
        q->n_draft = k + 1;
    }
    return LLMLAB_OK;
}

/* Greedy: drafts accepted while each equals the argmax of the row before it;
 * *next is the argmax after the last accepted draft. */
static int pl_accept_greedy(const llmlab_host *H, llmlab_seq *s, const llmlab_step *st, const int *rows,
                            const int32_t *draft, int k, int32_t *next) {
    for (int j = 0;; j++) {
        int32_t t = H->seq_sample(s, H->step_logits(st, rows[j]));
        if (j == k || t != draft[j]) {
            *next = t;
            return j;
        }
    }
}

/* A draw from probs[n] with token `skip` removed and the rest renormalised
 * (max(0, p - q) for a one-hot q at skip); u uniform in [0, 1). */
static int32_t pl_draw_without(const float *probs, int n, int32_t skip, double u) {
    double rest = 0;
    for (int i = 0; i < n; i++)
        if (i != skip) rest += probs[i];
    if (rest <= 0) return skip; /* p is one-hot at skip up to rounding: nothing else can come */
    double target = u * rest, cum = 0;
    int32_t last = skip;
    for (int i = 0; i < n; i++) {
        if (i == skip || probs[i] <= 0) continue;
        cum += probs[i];
        last = i;
        if (target < cum) return i;
    }
    return last; /* rounding left target above the total: the last possible token */
}

/* Sampled: the speculative-sampling rule with q one-hot at each draft. */
static int pl_accept_sampled(pl_state *a, llmlab_seq *s, const llmlab_step *st, const int *rows,
                             const int32_t *draft, int k, int32_t *next) {
    const llmlab_host *H = a->h;
    for (int j = 0; j < k; j++) {
        H->seq_probs(s, H->step_logits(st, rows[j]), a->probs);
        if (llmlab_dec_uniform(H, s) < (double)a->probs[draft[j]]) continue; /* accepted with p(d) */
        *next = pl_draw_without(a->probs, a->vocab, draft[j], llmlab_dec_uniform(H, s));
        return j;
    }
    *next = H->seq_sample(s, H->step_logits(st, rows[k])); /* the bonus, from p */
    return k;
}

/* Keeps the root's and the accepted drafts' slots, appends draft[0..acc) and
 * the next token, and counts. */
static llmlab_status pl_commit(pl_state *a, pl_seq *q, const llmlab_step *st, const int *rows, int acc,
                               int32_t next, llmlab_err *err) {
    const llmlab_host *H = a->h;
    for (int j = 0; j <= acc; j++) q->slots[j] = H->step_slot(st, rows[j]);
    llmlab_status r = H->seq_kv_keep(q->s, q->slots, acc + 1, err);
    if (r) return r;
    H->metric_add(q->s, "drafted", q->n_draft);
    H->metric_add(q->s, "accepted", acc);
    q->draft[acc] = next; /* drafts past acc were rejected: the next token takes acc's place */
    return H->seq_accept(q->s, q->draft, acc + 1, err);
}

static llmlab_status pl_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    pl_state *a = self;
    const llmlab_host *H = a->h;
    pl_seq *q = pl_find(a, s);
    if (!q) return pl_no_state(H, s, err);
    int buf[PL_ROW_BUF], *rows;
    int n = llmlab_dec_rows(H, st, s, buf, PL_ROW_BUF, &rows);
    if (n < 0) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status r = LLMLAB_OK;
    if (n > 0 && llmlab_dec_rows_are_prompt(H, st, s, rows))
        r = llmlab_dec_verify_prompt(H, s, st, rows[n - 1], err);
    else if (n > 0 && n != q->n_draft + 1)
        r = llmlab_plugin_fail(err, LLMLAB_EINVAL, "sequence %d has %d rows in the step, %d proposed", H->seq_id(s), n,
                            q->n_draft + 1);
    else if (n > 0) {
        int32_t next;
        int acc = H->seq_greedy(s) ? pl_accept_greedy(H, s, st, rows, q->draft, q->n_draft, &next)
                                   : pl_accept_sampled(a, s, st, rows, q->draft, q->n_draft, &next);
        r = pl_commit(a, q, st, rows, acc, next, err);
    }
    q->n_draft = 0;
    llmlab_dec_rows_free(H, rows, buf);
    return r;
}

static int pl_max_step_tokens(void *self) { return ((pl_state *)self)->num_pred + 1; }

static const llmlab_decoding_ops ops = {
    sizeof(llmlab_decoding_ops), pl_create, pl_destroy, pl_seq_begin, pl_seq_end, pl_propose, pl_verify,
    NULL,                        pl_max_step_tokens,
};

static const llmlab_param_spec params[] = {
    LLMLAB_SAMPLING_PARAM_SPECS,
    {"max_ngram", LLMLAB_PARAM_INT, "3", 1, 64, NULL, "longest suffix n-gram looked up (tried first)"},
    {"min_ngram", LLMLAB_PARAM_INT, "1", 1, 64, NULL, "shortest suffix n-gram looked up"},
    {"num_pred_tokens", LLMLAB_PARAM_INT, "10", 1, 256, NULL, "most draft tokens copied after a match per step"},
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "prompt_lookup", "1.0",
    "drafts copied from the sequence's own n-gram matches, verified in one forward (lossless)", params,
    (int)(sizeof params / sizeof params[0]), &ops);

const llmlab_plugin_desc *llmlab_builtin_prompt_lookup(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
