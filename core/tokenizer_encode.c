/* tokenizer_encode.c - running a tokenizer.json pipeline on text, and its facts.
 *
 * As HF's TokenizerImpl::encode: split the raw text on non-normalized added
 * tokens; normalize each remaining piece; split it on normalized added tokens;
 * pre-tokenize the rest into words; run each word through the BPE model; then
 * the post-processor's template when add_special.  All scratch memory lives in a
 * per-call state, so one tokenizer serves many threads.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* Scratch for one encode call. */
typedef struct {
    tok_match *mt;       /* regex match data */
    tok_segments raw;    /* the text split on non-normalized added tokens */
    tok_segments norm;   /* one normalized piece split on normalized added tokens */
    tok_buf nbuf, ntmp;  /* the normalized piece, and the normalizer's scratch */
    tok_pre_scratch pre; /* pre-tokenizer scratch */
    tok_bpe_scratch bpe; /* BPE scratch */
} enc_state;

static void enc_state_free(enc_state *s) {
    tok_match_free(s->mt);
    free(s->raw.v);
    free(s->norm.v);
    tok_buf_free(&s->nbuf);
    tok_buf_free(&s->ntmp);
    tok_pre_scratch_free(&s->pre);
    tok_bpe_scratch_free(&s->bpe);
}

/* Splits s[0..n) on the added tokens of trie t (one plain segment without any). */
static llmlab_status split_added(const struct tok_bpe_tok *m, const tok_trie *t, const char *s, size_t n,
                                 tok_segments *out, enc_state *st, llmlab_err *err) {
    if (t->n_node) return tok_added_split(m, t, s, n, out, st->mt, err);
    out->n = 0;
    if (n == 0) return LLMLAB_OK;
    if (!out->cap) {
        if (!(out->v = malloc(sizeof *out->v))) return llmlab_err_set(err, LLMLAB_ENOMEM, "tokenizer: out of memory");
        out->cap = 1;
    }
    out->v[0] = (tok_segment){0, n, -1};
    out->n = 1;
    return LLMLAB_OK;
}

/* Pre-tokenizes and BPE-encodes one normalized piece. */
static llmlab_status encode_words(const struct tok_bpe_tok *m, const char *s, size_t n, int at_start, enc_state *st,
                                  tok_ids *out, llmlab_err *err) {
    if (!m->pre) return tok_bpe_word(m, s, n, &st->bpe, out, err);
    llmlab_status rc = tok_pre_apply(m->pre, s, n, at_start, &st->pre, st->mt, err);
    const tok_pieces *ws = &st->pre.pcs[st->pre.cur];
    const char *base = st->pre.buf[st->pre.cur].p;
    for (size_t i = 0; i < ws->n && rc == LLMLAB_OK; i++)
        rc = tok_bpe_word(m, base + ws->v[i].off, ws->v[i].len, &st->bpe, out, err);
    return rc;
}

/* Normalizes one raw piece and encodes what lies between normalized added tokens. */
static llmlab_status encode_piece(const struct tok_bpe_tok *m, const char *s, size_t n, int at_start, enc_state *st,
                                  tok_ids *out, llmlab_err *err) {
    llmlab_status rc = LLMLAB_OK;
    if (m->norm) {
        rc = tok_norm_apply(m->norm, s, n, &st->nbuf, &st->ntmp, st->mt, err);
        s = st->nbuf.p;
        n = st->nbuf.len;
    }
    if (rc == LLMLAB_OK) rc = split_added(m, &m->trie_norm, s, n, &st->norm, st, err);
    for (size_t i = 0; i < st->norm.n && rc == LLMLAB_OK; i++) {
        const tok_segment *g = &st->norm.v[i];
        if (g->added >= 0) rc = tok_ids_push(out, m->added[g->added].id, err);
        else rc = encode_words(m, s + g->start, g->end - g->start, at_start && g->start == 0, st, out, err);
    }
    return rc;
}

llmlab_status tok_model_encode(const struct tok_bpe_tok *m, const char *text, size_t len, int add_special,
                               tok_ids *out, llmlab_err *err) {
    enc_state st;
    memset(&st, 0, sizeof st);
    llmlab_status rc = tok_match_create(&st.mt, err);
    if (rc == LLMLAB_OK && add_special) rc = tok_ids_put(out, m->pp_before, (size_t)m->n_before, err);
    if (rc == LLMLAB_OK) rc = split_added(m, &m->trie_raw, text, len, &st.raw, &st, err);
    for (size_t i = 0; i < st.raw.n && rc == LLMLAB_OK; i++) {
        const tok_segment *g = &st.raw.v[i];
        if (g->added >= 0) rc = tok_ids_push(out, m->added[g->added].id, err);
        else rc = encode_piece(m, text + g->start, g->end - g->start, g->start == 0, &st, out, err);
    }
    if (rc == LLMLAB_OK && add_special) rc = tok_ids_put(out, m->pp_after, (size_t)m->n_after, err);
    enc_state_free(&st);
    return rc;
}

/* ---- facts ---------------------------------------------------------------------------- */

const char *tok_model_kind(const struct tok_bpe_tok *m) {
    return m->bytelevel ? "bpe-bytelevel" : "bpe-sentencepiece";
}

int tok_model_vocab_size(const struct tok_bpe_tok *m) { return m->n_ids; }
int32_t tok_model_bos(const struct tok_bpe_tok *m) { return m->bos; }
int32_t tok_model_eos(const struct tok_bpe_tok *m) { return m->eos; }

int32_t tok_model_token_id(const struct tok_bpe_tok *m, const char *s, size_t n) {
    /* Added tokens first, as HF's token_to_id (a short list). */
    for (int i = 0; i < m->n_added; i++)
        if (m->added[i].len == n && memcmp(m->added[i].content, s, n) == 0) return m->added[i].id;
    return tok_strmap_get(&m->vocab, &m->pieces, s, n);
}

const char *tok_model_piece(const struct tok_bpe_tok *m, int32_t id, size_t *len) {
    if (id < 0 || id >= m->n_ids) return NULL;
    int32_t a = m->added_of_id[id];
    if (a >= 0) {
        if (len) *len = m->added[a].len;
        return m->added[a].content;
    }
    return tok_store_get(&m->pieces, id, len);
}

const char *tok_model_dec_piece(const struct tok_bpe_tok *m, int32_t id, size_t *len) {
    if (id >= 0 && id < m->n_ids && m->added_of_id[id] >= 0) {
        const tok_added *a = &m->added[m->added_of_id[id]];
        *len = a->pattern_len;
        return a->pattern;
    }
    return tok_model_piece(m, id, len);
}

int tok_model_is_special(const struct tok_bpe_tok *m, int32_t id) {
    return id >= 0 && id < m->n_ids && m->special[id];
}
