/* decode_util.h - small pieces the n-gram decoding plugins (prompt_lookup,
 * lookahead) share: error messages, a sequence's rows of a step, the verify of
 * the prompt's last row, and uniform draws from a sequence's random stream.
 * Header-only and ABI-clean: everything goes through the host table. */
#ifndef LLMLAB_PLUGINS_DECODE_UTIL_H
#define LLMLAB_PLUGINS_DECODE_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include "llmlab/plugin.h"
#include "plugins/plugin_util.h"

/* The batch indices of s's tokens in the step, in order.  *rows is buf[cap] when
 * they fit, else a host allocation the caller frees with llmlab_dec_rows_free.
 * Returns the count, or -1 when out of memory. */
static inline int llmlab_dec_rows(const llmlab_host *h, const llmlab_step *st, const llmlab_seq *s, int *buf,
                                  int cap, int **rows) {
    int n = h->step_rows(st, s, buf, cap);
    *rows = buf;
    if (n <= cap) return n;
    int *big = h->alloc(sizeof(int) * (size_t)n);
    if (!big) return -1;
    h->step_rows(st, s, big, n);
    *rows = big;
    return n;
}

static inline void llmlab_dec_rows_free(const llmlab_host *h, int *rows, const int *buf) {
    if (rows != buf) h->free(rows);
}

/* 1 when the step's rows of s are a prompt chunk the engine already committed
 * (the first verify after the prompt), not tokens propose() added. */
static inline int llmlab_dec_rows_are_prompt(const llmlab_host *h, const llmlab_step *st, llmlab_seq *s,
                                             const int *rows) {
    return h->step_slot(st, rows[0]) < h->seq_kv_len(s);
}

/* The first verify after the prompt: the next token from the prompt's last row
 * (committed already; autoregressive.c keeps a slot only while provisional). */
static inline llmlab_status llmlab_dec_verify_prompt(const llmlab_host *h, llmlab_seq *s, const llmlab_step *st,
                                                     int last_row, llmlab_err *err) {
    int slot = h->step_slot(st, last_row);
    llmlab_status r;
    if (slot >= h->seq_kv_len(s) && (r = h->seq_kv_keep(s, &slot, 1, err))) return r;
    const float *logits = h->step_logits(st, last_row);
    if (!logits) return llmlab_plugin_fail(err, LLMLAB_EINVAL, "the prompt's last row of sequence %d has no logits",
                                        h->seq_id(s));
    int32_t tok = h->seq_sample(s, logits);
    return h->seq_accept(s, &tok, 1, err);
}

/* Uniform in [0, 1) with 53 bits from the sequence's own stream. */
static inline double llmlab_dec_uniform(const llmlab_host *h, llmlab_seq *s) {
    return (double)(h->seq_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
