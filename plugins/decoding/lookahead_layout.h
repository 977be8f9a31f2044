/* lookahead_layout.h - the tokens of one lookahead-decoding step for one
 * sequence and which of them sees which (Fu et al. 2024, "Break the Sequential
 * Dependency of LLM Inference Using Lookahead Decoding"; the mask of
 * hao-ai-lab/LookaheadDecoding and llama.cpp's lookahead example).
 *
 * Layout, in batch order (dpos = position minus the root's position):
 *   0                      the root: the last accepted token, dpos 0;
 *   1 + j*W + i            lookahead token at level j (0..N-2), column i (0..W-1),
 *                          dpos 1 + i + j;
 *   1 + W*(N-1) + g*D + d  verification token d (0..D-1) of candidate g, dpos 1 + d.
 * With W = 0 the lookahead branch is left out (the step only verifies).
 *
 * Visibility (besides the sequence's cache, which every token sees):
 *   - every token sees the root and itself; the root sees nothing else;
 *   - lookahead (j, i) sees level 0's columns 0..i and, when j >= 1, the tokens of
 *     its own column i at levels 1..j: its context, root, L0[0..i], L1[i], ...,
 *     L(j-1)[i], is a plain sequence at dpos 0, 1, ..., i + j (one token each);
 *   - verification (g, d) sees (g, 0..d): each candidate is a chain after the root;
 *   - the two branches never see each other.
 * So every token's context is a gap-free run of positions, as if the model read
 * it left to right, and a verification row's logits are exactly the ones
 * autoregressive decoding would compute after that candidate prefix.
 *
 * These rules are a tree: with parent(L0[0]) = root, parent(L0[i]) = L0[i-1],
 * parent(Lj[i]) = L(j-1)[i] and each candidate chained from the root, a token
 * sees exactly its ancestors and itself.  The plugin therefore states the
 * visibility with the engine's tree mode (step_set_tree and these parents);
 * llmlab_la_sees writes the rules out directly, and the tests check that both
 * agree and that they give the matrix of the method's figure. */
#ifndef LLMLAB_PLUGINS_LOOKAHEAD_LAYOUT_H
#define LLMLAB_PLUGINS_LOOKAHEAD_LAYOUT_H

#include <stdint.h>

typedef enum { LLMLAB_LA_ROOT = 0, LLMLAB_LA_LOOK = 1, LLMLAB_LA_VERIFY = 2 } llmlab_la_kind;

typedef struct {
    llmlab_la_kind kind;
    int row;     /* LOOK: level 0..N-2; VERIFY: candidate 0..n_cand-1; ROOT: 0 */
    int col;     /* LOOK: column 0..W-1; VERIFY: depth 0..D-1; ROOT: 0 */
    int dpos;    /* position minus the root's */
    int parent;  /* layout index of its parent in the visibility tree (the token just
                    before it in its context); -1 for the root */
    int logits;  /* 1 = verify reads this row's logits (root, last level, verification) */
} llmlab_la_tok;

/* Tokens in the layout: 1 + W*(N-1) + n_cand*D. */
int llmlab_la_layout_count(int W, int N, int n_cand, int D);

/* Fills toks[llmlab_la_layout_count(W, N, n_cand, D)] in the order above. */
void llmlab_la_layout_build(int W, int N, int n_cand, int D, llmlab_la_tok *toks);

/* 1 when token a attends to token b under the rules above (a == b included). */
int llmlab_la_sees(const llmlab_la_tok *a, const llmlab_la_tok *b);

#endif
