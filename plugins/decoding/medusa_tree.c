/* medusa_tree.c - parsing, the default tree and step layout (see medusa_tree.h). */
#include "medusa_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int len;                   /* depth of the path */
    int r[MEDUSA_MAX_DEPTH];   /* [len] rank at each depth */
} tpath;

/* Node order: shallower first, then lexicographic by ranks. */
static int path_cmp(const void *pa, const void *pb) {
    const tpath *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    for (int i = 0; i < a->len; i++)
        if (a->r[i] != b->r[i]) return a->r[i] < b->r[i] ? -1 : 1;
    return 0;
}

static void path_text(const tpath *p, int len, char *buf, size_t cap) {
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < len && at < cap; i++) {
        int w = snprintf(buf + at, cap - at, i ? ",%d" : "%d", p->r[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
}

static int fail(char *msg, size_t cap, const char *what, const tpath *p, int len) {
    char text[MEDUSA_MAX_DEPTH * 8];
    if (p) path_text(p, len, text, sizeof text);
    if (msg && cap) snprintf(msg, cap, what, p ? text : "");
    return -1;
}

void medusa_tree_free(medusa_tree *t) {
    if (!t) return;
    free(t->parent);
    free(t->node_depth);
    free(t->rank);
    free(t->child_first);
    free(t->child_count);
    memset(t, 0, sizeof *t);
}

static int tree_alloc(medusa_tree *t, int n) {
    memset(t, 0, sizeof *t);
    t->n = n;
    t->parent = malloc((size_t)n * sizeof *t->parent);
    t->node_depth = malloc((size_t)n * sizeof *t->node_depth);
    t->rank = malloc((size_t)n * sizeof *t->rank);
    t->child_first = malloc((size_t)n * sizeof *t->child_first);
    t->child_count = calloc((size_t)n, sizeof *t->child_count);
    if (t->parent && t->node_depth && t->rank && t->child_first && t->child_count) return 0;
    medusa_tree_free(t);
    return -1;
}

/* Index in the sorted p[0..n) of the path equal to p[i] minus its last rank. */
static int find_prefix(const tpath *p, int n, int i) {
    tpath key = p[i];
    key.len--;
    const tpath *hit = bsearch(&key, p, (size_t)n, sizeof *p, path_cmp);
    return hit ? (int)(hit - p) : -1;
}

/* Sorts the paths, checks them and fills the tree's arrays. */
static int tree_build(medusa_tree *t, tpath *p, int n, char *msg, size_t cap) {
    qsort(p, (size_t)n, sizeof *p, path_cmp);
    for (int i = 1; i < n; i++)
        if (!path_cmp(&p[i - 1], &p[i])) return fail(msg, cap, "tree: duplicate path '%s'", &p[i], p[i].len);
    if (tree_alloc(t, n + 1)) return fail(msg, cap, "tree: out of memory", NULL, 0);
    t->parent[0] = -1, t->node_depth[0] = 0, t->rank[0] = -1, t->child_first[0] = -1;
    for (int i = 0; i < n; i++) {
        int node = i + 1, par = 0;
        if (p[i].len > 1) {
            int j = find_prefix(p, n, i);
            if (j < 0) {
                medusa_tree_free(t);
                return fail(msg, cap, "tree: the prefix '%s' of a path is not in the tree (every prefix must be)",
                            &p[i], p[i].len - 1);
            }
            par = j + 1;
        }
        t->parent[node] = par;
        t->node_depth[node] = p[i].len;
        t->rank[node] = p[i].r[p[i].len - 1];
        t->child_first[node] = -1;
        if (t->child_count[par]++ == 0) t->child_first[par] = node;
        if (p[i].len > t->depth) t->depth = p[i].len;
        int d = p[i].len - 1;
        if (t->rank[node] + 1 > t->topk[d]) t->topk[d] = t->rank[node] + 1;
    }
    for (int d = 0; d <= t->depth; d++) {
        int c = 0;
        while (c < t->n && t->node_depth[c] <= d) c++;
        t->n_upto[d] = c;
    }
    return 0;
}

/* Parses one path "r0,r1,..." of text[0..len) (spaces already removed). */
static int parse_path(const char *text, size_t len, tpath *out, char *msg, size_t cap) {
    out->len = 0;
    size_t i = 0;
    while (i < len) {
        if (out->len == MEDUSA_MAX_DEPTH) {
            if (msg) snprintf(msg, cap, "tree: a path is deeper than %d", MEDUSA_MAX_DEPTH);
            return -1;
        }
        long v = 0;
        size_t start = i;
        while (i < len && text[i] >= '0' && text[i] <= '9' && v <= MEDUSA_MAX_RANK) v = v * 10 + (text[i++] - '0');
        if (i == start || v > MEDUSA_MAX_RANK || (i < len && text[i] != ',') || (i < len && i + 1 == len)) {
            if (msg)
                snprintf(msg, cap, "tree: bad path '%.*s' (a path is comma-separated ranks 0..%d; paths are "
                         "separated by ';')", (int)(len > 64 ? 64 : len), text, MEDUSA_MAX_RANK);
            return -1;
        }
        out->r[out->len++] = (int)v;
        if (i < len) i++; /* the comma */
    }
    return 0;
}

int medusa_tree_parse(medusa_tree *t, const char *spec, char *msg, size_t cap) {
    memset(t, 0, sizeof *t);
    size_t n_chars = strlen(spec);
    char *clean = malloc(n_chars + 1);
    tpath *paths = malloc(sizeof *paths * (MEDUSA_MAX_NODES + 1));
    int n = 0, rc = 0;
    if (!clean || !paths) rc = fail(msg, cap, "tree: out of memory", NULL, 0);
    size_t k = 0;
    for (size_t i = 0; !rc && i < n_chars; i++)
        if (spec[i] != ' ' && spec[i] != '\t' && spec[i] != '\n') clean[k++] = spec[i];
    for (size_t at = 0; !rc && at < k;) {
        size_t end = at;
        while (end < k && clean[end] != ';') end++;
        if (end > at) { /* empty segments (";;", a trailing ';') are skipped */
            if (n == MEDUSA_MAX_NODES) rc = fail(msg, cap, "tree: more than 4096 paths", NULL, 0);
            else rc = parse_path(clean + at, end - at, &paths[n++], msg, cap);
        }
        at = end + 1;
    }
    if (!rc && n == 0) rc = fail(msg, cap, "tree: no paths", NULL, 0);
    if (!rc) rc = tree_build(t, paths, n, msg, cap);
    free(clean);
    free(paths);
    return rc;
}

/* ---- the default tree --------------------------------------------------------------- */

enum { DEF_NODES = 63, DEF_DEPTH = 4, DEF_RANKS = 10 };

/* Estimated probability that head k's rank-i candidate is right. */
static double est_acc(int k, int i) {
    double a = 0.6;
    for (int j = 0; j < k; j++) a *= 0.8;
    return a / (double)(i + 1);
}

typedef struct {
    tpath p;
    double score; /* product of est_acc along the path */
} tcand;

/* 1 when a beats b: higher score (beyond rounding), else the earlier path. */
static int cand_better(const tcand *a, const tcand *b) {
    double tol = 1e-12 * (a->score > b->score ? a->score : b->score);
    if (a->score > b->score + tol) return 1;
    if (b->score > a->score + tol) return 0;
    return path_cmp(&a->p, &b->p) < 0;
}

int medusa_tree_default(medusa_tree *t) {
    memset(t, 0, sizeof *t);
    int cap = DEF_RANKS + DEF_NODES * DEF_RANKS, n_front = 0;
    tcand *front = malloc((size_t)cap * sizeof *front);
    tpath *chosen = malloc(DEF_NODES * sizeof *chosen);
    if (!front || !chosen) {
        free(front);
        free(chosen);
        return -1;
    }
    for (int i = 0; i < DEF_RANKS; i++) {
        front[n_front] = (tcand){.p = {.len = 1}, .score = est_acc(0, i)};
        front[n_front++].p.r[0] = i;
    }
    for (int c = 0; c < DEF_NODES; c++) {
        int best = 0;
        for (int i = 1; i < n_front; i++)
            if (cand_better(&front[i], &front[best])) best = i;
        tcand pick = front[best];
        front[best] = front[--n_front];
        chosen[c] = pick.p;
        if (pick.p.len == DEF_DEPTH) continue;
        for (int i = 0; i < DEF_RANKS; i++) {
            tcand child = pick;
            child.p.r[child.p.len++] = i;
            child.score = pick.score * est_acc(pick.p.len, i);
            front[n_front++] = child;
        }
    }
    int rc = tree_build(t, chosen, DEF_NODES, NULL, 0);
    free(front);
    free(chosen);
    return rc;
}

/* ---- using a tree ---------------------------------------------------------------------- */

size_t medusa_tree_format(const medusa_tree *t, char *buf, size_t cap) {
    size_t at = 0;
    if (cap) buf[0] = 0;
    for (int i = 1; i < t->n; i++) {
        tpath p = {.len = t->node_depth[i]};
        for (int j = i; j > 0; j = t->parent[j]) p.r[t->node_depth[j] - 1] = t->rank[j];
        char text[MEDUSA_MAX_DEPTH * 8];
        path_text(&p, p.len, text, sizeof text);
        int w = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, i > 1 ? ";%s" : "%s", text);
        if (w > 0) at += (size_t)w;
    }
    return at;
}

void medusa_tree_layout(const medusa_tree *t, int n_use, int base, int32_t root_pos, int *parents, int32_t *pos) {
    for (int i = 0; i < n_use; i++) {
        parents[i] = t->parent[i] < 0 ? -1 : base + t->parent[i];
        pos[i] = root_pos + t->node_depth[i];
    }
}

void medusa_tree_tokens(const medusa_tree *t, int n_use, int32_t root, const int32_t *cand, int stride,
                        int32_t *tokens) {
    tokens[0] = root;
    for (int i = 1; i < n_use; i++) tokens[i] = cand[(t->node_depth[i] - 1) * stride + t->rank[i]];
}

int medusa_tree_cut(const medusa_tree *t, int max_drafts) {
    if (max_drafts <= 0) return 1;
    return t->n_upto[max_drafts < t->depth ? max_drafts : t->depth];
}
