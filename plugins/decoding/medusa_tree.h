/* medusa_tree.h - the candidate tree of Medusa decoding (docs/decoding/medusa.md).
 *
 * A tree is a set of paths; a path lists, for each depth d = 1, 2, ..., the rank
 * (0 = most likely) of the candidate taken from head d-1's top-k.  "0;1;0,0" is
 * the root's two best head-0 candidates, plus head 1's best after the first.
 * Every prefix of a path must be in the set.  Because all candidates at depth d
 * come from the same head on the same hidden state, siblings have distinct tokens.
 *
 * Nodes are numbered root first (node 0, the last accepted token), then by depth,
 * then lexicographically by path.  So a parent precedes its children, the children
 * of a node are contiguous and ordered by rank, and the nodes of depth <= d are a
 * prefix of the numbering (a tree cut at depth d is the first n_upto[d] nodes).
 *
 * Plain C (malloc); no dependency on the host table, so tests use it directly. */
#ifndef LLMLAB_PLUGINS_MEDUSA_TREE_H
#define LLMLAB_PLUGINS_MEDUSA_TREE_H

#include <stddef.h>
#include <stdint.h>

#define MEDUSA_MAX_DEPTH 16   /* longest path (= heads used) */
#define MEDUSA_MAX_NODES 4096 /* nodes, root excluded */
#define MEDUSA_MAX_RANK 65535 /* largest rank in a path */

typedef struct {
    int n;                          /* nodes, root included */
    int depth;                      /* longest path = heads the tree uses */
    int *parent;                    /* [n] parent node; -1 for the root */
    int *node_depth;                /* [n] 0 for the root */
    int *rank;                      /* [n] rank in its head's top-k; -1 for the root */
    int *child_first;               /* [n] first child (children are contiguous) */
    int *child_count;               /* [n] */
    int topk[MEDUSA_MAX_DEPTH];     /* [depth] candidates needed from head d: 1 + max rank at depth d+1 */
    int n_upto[MEDUSA_MAX_DEPTH + 1]; /* [depth + 1] nodes of depth <= d (n_upto[0] = 1: the root) */
} medusa_tree;

/* Parses "0;0,0;1;..." (whitespace ignored; an empty string is an error here: the
 * caller decides the default).  Returns 0, or -1 with a message in msg[cap]. */
int medusa_tree_parse(medusa_tree *t, const char *spec, char *msg, size_t cap);

/* The default tree, 63 nodes of depth 4 (a stand-in for Medusa's mc_sim_7b_63):
 * greedy expansion by estimated path acceptance.  Head k's rank-i candidate is
 * taken to be right with probability acc(k, i) = 0.6 * 0.8^k / (i + 1) (top-1
 * accuracy 0.6 for head 0, falling by 0.8 per head, rank weight 1/(i+1), ranks
 * 0..9); a path's estimate is the product along it.  Starting from the root,
 * the best-scoring child of the tree built so far is added, 63 times (ties: the
 * shallower, then the lexicographically smaller path).  Every node's score is at
 * most its parent's, so this also maximises the expected accepted length among
 * prefix-closed trees of 63 nodes under that model.  Returns 0, or -1 (no memory). */
int medusa_tree_default(medusa_tree *t);

void medusa_tree_free(medusa_tree *t);

/* Writes the tree as a spec string ("0;1;0,0;...") in node order; returns the
 * length it needed (like snprintf). */
size_t medusa_tree_format(const medusa_tree *t, char *buf, size_t cap);

/* The first n_use nodes as one sequence's slice of a step whose root sits at batch
 * index `base` and position root_pos: parents[i] = base + parent[i] (-1 for the
 * root), pos[i] = root_pos + depth of node i.  parents, pos: [n_use]. */
void medusa_tree_layout(const medusa_tree *t, int n_use, int base, int32_t root_pos, int *parents, int32_t *pos);

/* Tokens of the first n_use nodes: the root token, then node i's candidate
 * cand[(depth_i - 1) * stride + rank_i] (cand: [depth][stride] head top-k lists). */
void medusa_tree_tokens(const medusa_tree *t, int n_use, int32_t root, const int32_t *cand, int stride,
                        int32_t *tokens);

/* Nodes to forward when at most `max_drafts` draft tokens can still be accepted:
 * the tree cut at that depth (1 = the root alone when max_drafts <= 0). */
int medusa_tree_cut(const medusa_tree *t, int max_drafts);

#endif
