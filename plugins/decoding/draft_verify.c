/* draft_verify.c - see draft_verify.h. */
#include "draft_verify.h"

#include <string.h>

struct dv_seq {
    llmlab_seq *s;
    int k;                   /* current draft length (adaptive) */
    int n_drafts;            /* drafts made this step */
    int32_t drafts[DV_MAX_K];
    float *q;                /* [DV_MAX_K][vocab] draft distributions (sampled sequences) */
    int draft_forwards;      /* draft forwards this step */
    dv_seq *next;
};

/* Argmax with the engine's rule: the lowest index wins ties, NaN never wins. */
static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i])) best = i;
    return best;
}

static double uniform(const llmlab_host *h, llmlab_seq *s) {
    return (double)(h->seq_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Inverse-CDF draw from an unnormalised non-negative w[n] with total `sum`. */
static int32_t draw(const llmlab_host *h, llmlab_seq *s, const float *w, int n, double sum) {
    double u = uniform(h, s) * sum, cum = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (w[i] <= 0) continue;
        cum += w[i];
        last = i;
        if (u < cum) return i;
    }
    return last;
}

int dv_accept_greedy(const float *const *rows, const int32_t *drafts, int k, int vocab, int32_t *next) {
    int j = 0;
    while (j < k && argmax(rows[j], vocab) == drafts[j]) j++;
    *next = argmax(rows[j], vocab);
    return j;
}

static dv_seq *find(dv_state *d, const llmlab_seq *s) {
    for (dv_seq *q = d->seqs; q; q = q->next)
        if (q->s == s) return q;
    return NULL;
}

llmlab_status dv_create(dv_state **out, const llmlab_host *h, llmlab_engine *e, llmlab_aux *draft, int k,
                        int adaptive, int k_max, llmlab_err *err) {
    *out = NULL;
    dv_state *d = h->alloc(sizeof *d);
    if (!d) {
        h->aux_close(draft);
        return LLMLAB_ENOMEM;
    }
    d->h = h;
    d->e = e;
    d->draft = draft;
    d->k = k;
    d->adaptive = adaptive;
    d->k_max = adaptive ? (k_max > k ? k_max : k) : k;
    d->vocab = h->model_vocab(e);
    /* A draft forward holds at most one token per sequence per round, except the
     * catch-up round; its capacity is the engine's token budget like the aux's. */
    d->batch_cap = 512;
    d->logits = h->alloc(sizeof(float) * (size_t)d->batch_cap * (size_t)d->vocab);
    d->p = h->alloc(sizeof(float) * (size_t)d->vocab);
    d->batch = h->alloc(sizeof *d->batch * (size_t)d->batch_cap);
    d->batch_owner = h->alloc(sizeof *d->batch_owner * (size_t)d->batch_cap);
    if (!d->logits || !d->p || !d->batch || !d->batch_owner) {
        dv_destroy(d);
        return LLMLAB_ENOMEM;
    }
    *out = d;
    return LLMLAB_OK;
}

void dv_destroy(void *self) {
    dv_state *d = self;
    if (!d) return;
    const llmlab_host *h = d->h;
    while (d->seqs) {
        dv_seq *q = d->seqs;
        d->seqs = q->next;
        h->free(q->q);
        h->free(q);
    }
    if (d->draft) h->aux_close(d->draft);
    h->free(d->logits);
    h->free(d->p);
    h->free(d->batch);
    h->free(d->batch_owner);
    h->free(d);
}

llmlab_status dv_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    dv_state *d = self;
    dv_seq *q = d->h->alloc(sizeof *q);
    if (!q) return LLMLAB_ENOMEM;
    q->s = s;
    q->k = d->k;
    if (!d->h->seq_greedy(s) && !(q->q = d->h->alloc(sizeof(float) * (size_t)DV_MAX_K * (size_t)d->vocab))) {
        d->h->free(q);
        return LLMLAB_ENOMEM;
    }
    q->next = d->seqs;
    d->seqs = q;
    return LLMLAB_OK;
}

void dv_seq_end(void *self, llmlab_seq *s) {
    dv_state *d = self;
    for (dv_seq **pp = &d->seqs; *pp; pp = &(*pp)->next)
        if ((*pp)->s == s) {
            dv_seq *q = *pp;
            *pp = q->next;
            d->h->free(q->q);
            d->h->free(q);
            return;
        }
}

int dv_max_step_tokens(void *self) {
    dv_state *d = self;
    return d->k_max + 1;
}

/* ---- drafting ------------------------------------------------------------------ */

/* Chooses the next draft token of q from its draft logits (greedy or sampled). */
static void take_draft(dv_state *d, dv_seq *q, const float *logits) {
    const llmlab_host *h = d->h;
    int i = q->n_drafts++;
    if (!q->q) {
        q->drafts[i] = argmax(logits, d->vocab);
        return;
    }
    float *qi = q->q + (size_t)i * (size_t)d->vocab;
    h->seq_probs(q->s, logits, qi);
    q->drafts[i] = draw(h, q->s, qi, d->vocab, 1.0);
}

/* Runs the draft forward built in d->batch and hands each flagged row to its sequence. */
static llmlab_status flush(dv_state *d, llmlab_err *err) {
    if (d->batch_n == 0) return LLMLAB_OK;
    llmlab_status r = d->h->aux_forward(d->draft, d->batch, d->batch_n, d->logits, err);
    if (r) return r;
    for (int i = 0; i < d->batch_rows; i++) {
        dv_seq *q = d->batch_owner[i];
        q->draft_forwards++;
        take_draft(d, q, d->logits + (size_t)i * (size_t)d->vocab);
    }
    d->batch_n = d->batch_rows = 0;
    return LLMLAB_OK;
}

static llmlab_status push(dv_state *d, dv_seq *q, int32_t tok, int32_t pos, int want, llmlab_err *err) {
    if (d->batch_n == d->batch_cap) {
        llmlab_status r = flush(d, err);
        if (r) return r;
    }
    d->batch[d->batch_n++] = (llmlab_aux_token){q->s, tok, pos, want};
    if (want) d->batch_owner[d->batch_rows++] = q;
    return LLMLAB_OK;
}

/* Draft length for this step: no more drafts than the sequence can still accept. */
static int step_k(const dv_state *d, dv_seq *q) {
    int room = d->h->seq_remaining(q->s) - 1;
    int k = q->k < room ? q->k : room;
    return k < 0 ? 0 : k;
}

llmlab_status dv_step_begin(void *self, llmlab_seq *const *seqs, int n, llmlab_err *err) {
    dv_state *d = self;
    const llmlab_host *h = d->h;
    int rounds = 0;
    /* Round 1: every token the draft has not seen, up to and including the last
     * accepted one, whose logits give the first draft. */
    for (int i = 0; i < n; i++) {
        dv_seq *q = find(d, seqs[i]);
        if (!q) return LLMLAB_EINVAL;
        q->n_drafts = q->draft_forwards = 0;
        int kk = step_k(d, q);
        if (kk > rounds) rounds = kk;
        if (kk == 0) continue;
        const int32_t *toks = h->seq_tokens(q->s);
        int len = h->seq_len(q->s), seen = h->aux_kv_len(d->draft, q->s);
        for (int t = seen; t < len; t++) {
            llmlab_status r = push(d, q, toks[t], t, t == len - 1, err);
            if (r) return r;
        }
    }
    llmlab_status r = flush(d, err);
    /* Rounds 2..k: the previous draft in, the next draft out, all sequences at once. */
    for (int round = 1; round < rounds && !r; round++) {
        for (int i = 0; i < n && !r; i++) {
            dv_seq *q = find(d, seqs[i]);
            if (q->n_drafts != round || step_k(d, q) <= round) continue;
            r = push(d, q, q->drafts[round - 1], h->seq_len(q->s) - 1 + round, 1, err);
        }
        if (!r) r = flush(d, err);
    }
    return r;
}

llmlab_status dv_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    dv_state *d = self;
    const llmlab_host *h = d->h;
    dv_seq *q = find(d, s);
    if (!q) return LLMLAB_EINVAL;
    int pos = h->seq_kv_len(s);
    int prev = h->step_add(st, s, h->seq_tokens(s)[h->seq_len(s) - 1], pos, LLMLAB_ROW_LOGITS, -1);
    for (int i = 0; i < q->n_drafts && prev >= 0; i++)
        prev = h->step_add(st, s, q->drafts[i], pos + 1 + i, LLMLAB_ROW_LOGITS, prev);
    return prev < 0 ? LLMLAB_ENOKV : LLMLAB_OK;
}

/* Speculative sampling over the verified rows; returns accepted drafts, *next the
 * token after them (the correction or the bonus). */
static int accept_sampled(dv_state *d, dv_seq *q, const float *const *rows, int32_t *next) {
    const llmlab_host *h = d->h;
    int V = d->vocab;
    for (int j = 0; j < q->n_drafts; j++) {
        const float *qj = q->q + (size_t)j * (size_t)V;
        h->seq_probs(q->s, rows[j], d->p);
        int32_t x = q->drafts[j];
#ifdef DV_TEST_BROKEN_RULE
        continue; /* built only into a test plugin: accepting every draft lets q leak into the output */
#endif
        double ratio = qj[x] > 0 ? (double)d->p[x] / (double)qj[x] : 0;
        if (uniform(h, q->s) < ratio) continue; /* accepted with probability min(1, p/q) */
        double sum = 0;
        for (int v = 0; v < V; v++) {
            float w = d->p[v] - qj[v];
            d->p[v] = w > 0 ? w : 0;
            sum += d->p[v];
        }
        /* p == q everywhere the draft could land leaves no residual mass: then the
         * rejection had probability 0 up to rounding; draw from p itself. */
        if (sum <= 0) {
            h->seq_probs(q->s, rows[j], d->p);
            sum = 1;
        }
        *next = draw(h, q->s, d->p, V, sum);
        return j;
    }
    *next = h->seq_sample(q->s, rows[q->n_drafts]);
    return q->n_drafts;
}

static void adapt(dv_state *d, dv_seq *q, int accepted) {
    if (!d->adaptive || q->n_drafts == 0) return;
    if (accepted == q->n_drafts) q->k = q->k + 2 < d->k_max ? q->k + 2 : d->k_max;
    else if (q->k > 1) q->k--;
}

/* The batch index of s's last token in the step. */
static int last_row(const llmlab_host *h, llmlab_step *st, llmlab_seq *s) {
    int n = h->step_rows(st, s, NULL, 0), *all = h->alloc(sizeof(int) * (size_t)n), last = -1;
    if (all && h->step_rows(st, s, all, n) == n) last = all[n - 1];
    h->free(all);
    return last;
}

llmlab_status dv_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    dv_state *d = self;
    const llmlab_host *h = d->h;
    dv_seq *q = find(d, s);
    if (!q) return LLMLAB_EINVAL;
    int idx[DV_MAX_K + 1];
    int n = h->step_rows(st, s, idx, DV_MAX_K + 1);
    if (n <= 0) return LLMLAB_OK;
    if (n > DV_MAX_K + 1) { /* a long prompt chunk: only its last row matters */
        n = 1;
        idx[0] = last_row(h, st, s);
    }
    /* This step's rows: the root and the drafts; or, right after the prompt, the
     * prompt chunk, whose last row alone carries logits. */
    int k = n - 1 < q->n_drafts ? n - 1 : q->n_drafts;
    int *mine = idx + (n - 1 - k);
    const float *rows[DV_MAX_K + 1];
    for (int i = 0; i <= k; i++)
        if (!(rows[i] = h->step_logits(st, mine[i]))) return LLMLAB_EINVAL;
    q->n_drafts = k;
    int32_t out[DV_MAX_K + 1];
    int j = q->q ? accept_sampled(d, q, rows, &out[k]) : dv_accept_greedy(rows, q->drafts, k, d->vocab, &out[k]);
    memcpy(out, q->drafts, sizeof(int32_t) * (size_t)j);
    out[j] = out[k];
    /* Keep the root and the accepted drafts (the prompt's row is already committed). */
    int slots[DV_MAX_K + 1], n_slots = 0;
    for (int i = 0; i <= j; i++) {
        int slot = h->step_slot(st, mine[i]);
        if (slot >= h->seq_kv_len(s)) slots[n_slots++] = slot;
    }
    llmlab_status r = n_slots ? h->seq_kv_keep(s, slots, n_slots, err) : LLMLAB_OK;
    if (r) return r;
    /* The draft cache keeps only what the target accepted. */
    int kept = h->seq_kv_len(s);
    if (h->aux_kv_len(d->draft, s) > kept) h->aux_kv_truncate(d->draft, s, kept);
    if (k > 0 || q->draft_forwards > 0) {
        h->metric_add(s, "drafted", k);
        h->metric_add(s, "accepted", j);
        /* per-token acceptance a = accepted / (accepted + rejections) */
        h->metric_add(s, "rejections", j < k ? 1 : 0);
        h->metric_add(s, "draft_forwards", q->draft_forwards);
    }
    adapt(d, q, j);
    q->n_drafts = q->draft_forwards = 0;
    return h->seq_accept(s, out, j + 1, err);
}
