/* ngram_match.h - finding a draft continuation by n-gram matching in the
 * sequence's own tokens (prompt lookup decoding; lookahead's prompt n-grams).
 *
 * The rule (prompt_lookup's; docs/decoding/prompt_lookup.md): for n from max_n
 * down to min_n, take the last n tokens (the suffix n-gram) and look for its most
 * recent earlier occurrence, i.e. the largest start i < len - n with
 * toks[i .. i+n) == toks[len-n .. len); the proposal is the tokens that followed
 * it, toks[i+n .. min(i+n+max_pred, len)).  An occurrence may overlap the suffix.
 * The first n with an occurrence wins; a longer n-gram is the more specific
 * context.  Hugging Face's prompt lookup takes the earliest occurrence instead;
 * the most recent one follows the text's latest repetition.
 *
 * Header-only (static inline) so plugins and tests use the same code. */
#ifndef LLMLAB_PLUGINS_NGRAM_MATCH_H
#define LLMLAB_PLUGINS_NGRAM_MATCH_H

#include <stdint.h>

typedef struct {
    int start; /* index in toks of the first proposed token */
    int count; /* proposed tokens: toks[start .. start+count); 0 = no match */
    int n;     /* length of the matched suffix n-gram (0 = no match) */
} llmlab_ngram_match;

/* 1 when toks[a .. a+n) equals toks[b .. b+n). */
static inline int llmlab_ngram_equal(const int32_t *toks, int a, int b, int n) {
    for (int k = 0; k < n; k++)
        if (toks[a + k] != toks[b + k]) return 0;
    return 1;
}

/* Matches the suffix of toks[len] as described above.  min_n >= 1; max_pred >= 0
 * caps the proposal (0 finds nothing to propose). */
static inline llmlab_ngram_match llmlab_ngram_lookup(const int32_t *toks, int len, int min_n, int max_n,
                                                     int max_pred) {
    llmlab_ngram_match m = {0, 0, 0};
    if (max_pred <= 0 || min_n < 1) return m;
    for (int n = max_n < len - 1 ? max_n : len - 1; n >= min_n; n--) {
        int suffix = len - n;
        for (int i = suffix - 1; i >= 0; i--) /* most recent first */
            if (llmlab_ngram_equal(toks, i, suffix, n)) {
                int follow = len - (i + n); /* >= 1 since i < suffix */
                m.start = i + n;
                m.count = follow < max_pred ? follow : max_pred;
                m.n = n;
                return m;
            }
    }
    return m;
}

#endif
