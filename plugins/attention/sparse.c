/* sparse.c - static block-sparse attention patterns: Longformer (Beltagy et al.
 * 2020), BigBird (Zaheer et al. 2020) and a user-given block layout (the
 * "fixed" patterns of Sparse Transformers, Child et al. 2019, or anything else).
 *
 * Positions are grouped in blocks of `block` tokens; a query in block qb sees a
 * key in block kb <= qb (and always itself) when
 *   kb < global                         global blocks (the start of the text);
 *   qb - kb < window                    its own block and the window - 1 before;
 *   layout[qb][kb] = 1                  pattern=layout: the user's file;
 *   kb is one of qb's `random` blocks   pattern=bigbird: drawn from the blocks
 *                                       between the globals and the window,
 *                                       reproducibly from `seed`.
 * The attention kernel evaluates the rule per key (plugin.h llmlab_attn_pattern);
 * no mask is stored.
 *
 * Memory.  After each step, keys that no later query can see are evicted:
 * longformer drops what is outside the global blocks and older than the window of
 * the next query's block; layout drops a block once no later row of the file
 * marks it (and it is neither global nor in the window).  bigbird evicts nothing:
 * a later query block draws its random blocks from every block between the
 * globals and its window, so any old block may be needed again.  Evictions drop
 * only keys the pattern hides, so outputs equal the masked computation exactly.
 * docs/attention/sparse.md. */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

enum { PAT_LONGFORMER, PAT_BIGBIRD, PAT_LAYOUT };
enum { MAX_LAYOUT_BLOCKS = 4096 }; /* the layout is [n][n] bytes: 16 MiB at most */

typedef struct {
    const llmlab_host *h;
    int kind, block, global, window;
    int rows;          /* layout: query blocks in the file */
    int *last_use;     /* layout: [rows] last row marking key block kb, -1 = none */
} sparse_state;

static const char *const sparse_patterns[] = {"longformer", "bigbird", "layout", NULL};

static const llmlab_param_spec sparse_params[] = {
    {"pattern", LLMLAB_PARAM_ENUM, "longformer", 1, 0, sparse_patterns,
     "longformer (global + window), bigbird (+ random blocks) or layout (a block layout file)"},
    {"block", LLMLAB_PARAM_INT, "16", 1, 1 << 20, NULL, "tokens per block"},
    {"global", LLMLAB_PARAM_INT, "-1", -1, 1 << 24, NULL,
     "global blocks at the start every query sees; -1: 1 (layout: 0)"},
    {"window", LLMLAB_PARAM_INT, "-1", -1, 1 << 24, NULL,
     "blocks of the sliding window, the query's own included (0: none); -1: 3 (layout: 0)"},
    {"random", LLMLAB_PARAM_INT, "2", 0, 16, NULL, "bigbird: random key blocks per query block"},
    {"seed", LLMLAB_PARAM_INT, "0", 0, 9007199254740992.0, NULL, "bigbird: seed of the random blocks"},
    {"layout", LLMLAB_PARAM_STRING, "", 1, 0, NULL,
     "pattern=layout: text file, one line of 0/1 per query block, one character per key block"},
};

/* The whole file as a NUL-terminated host allocation. */
static char *slurp(const llmlab_host *h, const char *path, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        llmlab_plugin_fail(err, LLMLAB_EIO, "sparse: cannot open layout file '%s': %s", path, strerror(errno));
        return NULL;
    }
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *text = NULL;
    if (n < 0 || n > (1L << 26) || fseek(f, 0, SEEK_SET) != 0)
        llmlab_plugin_fail(err, LLMLAB_EIO, "sparse: cannot read layout file '%s' (not a regular file of at most 64 MiB)", path);
    else if (!(text = h->alloc((size_t)n + 1)))
        llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sparse: out of memory reading layout file '%s'", path);
    else if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        llmlab_plugin_fail(err, LLMLAB_EIO, "sparse: cannot read layout file '%s': %s", path, strerror(errno));
        h->free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

/* Parses a layout file: one line per query block (0, 1, ...), '0'/'1' per key
 * block; '#' starts a comment line; '\r' before a newline is ignored.  A row may
 * be shorter than the others (missing columns are 0) or longer with zeros, but a
 * 1 right of the diagonal (a later block) is an error: attention is causal.
 * Fills *out [rows][rows] (host allocation) and a->rows, a->last_use. */
static llmlab_status read_layout(sparse_state *a, const char *path, uint8_t **out, llmlab_err *err) {
    const llmlab_host *h = a->h;
    char *text = slurp(h, path, err);
    if (!text) return err ? err->code : LLMLAB_EIO;
    int rows = 0, line = 0;
    for (char *p = text; *p; line++) { /* pass 1: count and check rows */
        char *end = strchr(p, '\n'), *next = end ? end + 1 : p + strlen(p);
        size_t len = (size_t)((end ? end : next) - p);
        if (len > 0 && p[len - 1] == '\r') len--;
        if (p[0] != '#') {
            for (size_t c = 0; c < len; c++) {
                if (p[c] != '0' && p[c] != '1') {
                    char shown[8];
                    snprintf(shown, sizeof shown, isprint((unsigned char)p[c]) ? "'%c'" : "byte %d",
                             isprint((unsigned char)p[c]) ? p[c] : (unsigned char)p[c]);
                    h->free(text);
                    return llmlab_plugin_fail(err, LLMLAB_EFORMAT,
                                "sparse: layout file '%s' line %d column %zu: %s is not 0 or 1 (one line per "
                                "query block, one 0/1 character per key block)",
                                path, line + 1, c + 1, shown);
                }
                if (p[c] == '1' && (int)c > rows) {
                    h->free(text);
                    return llmlab_plugin_fail(err, LLMLAB_EFORMAT,
                                "sparse: layout file '%s' line %d: query block %d marks key block %zu, a later block "
                                "(attention is causal: row r may mark blocks 0..r)",
                                path, line + 1, rows, c);
                }
            }
            if (++rows > MAX_LAYOUT_BLOCKS) {
                h->free(text);
                return llmlab_plugin_fail(err, LLMLAB_EFORMAT, "sparse: layout file '%s' has more than %d rows", path,
                            MAX_LAYOUT_BLOCKS);
            }
        }
        p = next;
    }
    if (rows == 0) {
        h->free(text);
        return llmlab_plugin_fail(err, LLMLAB_EFORMAT, "sparse: layout file '%s' has no rows (one line of 0/1 per query block)",
                    path);
    }
    uint8_t *L = h->alloc((size_t)rows * (size_t)rows);
    int *last = h->alloc((size_t)rows * sizeof *last);
    if (!L || !last) {
        h->free(text), h->free(L), h->free(last);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sparse: out of memory for a layout of %d blocks", rows);
    }
    for (int kb = 0; kb < rows; kb++) last[kb] = -1;
    int r = 0;
    for (char *p = text; *p;) { /* pass 2: fill */
        char *end = strchr(p, '\n'), *next = end ? end + 1 : p + strlen(p);
        if (p[0] != '#') {
            for (int c = 0; c <= r && p + c < (end ? end : next) && p[c] != '\r'; c++)
                if (p[c] == '1') L[(size_t)r * (size_t)rows + (size_t)c] = 1, last[c] = r;
            r++;
        }
        p = next;
    }
    h->free(text);
    *out = L;
    a->rows = rows;
    a->last_use = last;
    return LLMLAB_OK;
}

static void sparse_destroy(void *self) {
    sparse_state *a = self;
    if (!a) return;
    a->h->free(a->last_use);
    a->h->free(a);
}

static llmlab_status sparse_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                   llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, seq_kv_lane) + sizeof h->seq_kv_lane)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "sparse needs a host with ABI 1.2 (attention patterns)");
    const char *kind = h->param_string(p, "pattern"), *path = h->param_string(p, "layout");
    sparse_state *a = h->alloc(sizeof *a);
    if (!a) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sparse: out of memory");
    a->h = h;
    a->kind = !strcmp(kind, "bigbird") ? PAT_BIGBIRD : !strcmp(kind, "layout") ? PAT_LAYOUT : PAT_LONGFORMER;
    a->block = (int)h->param_int(p, "block");
    a->global = (int)h->param_int(p, "global");
    a->window = (int)h->param_int(p, "window");
    /* -1: the pattern's own default; a layout file says everything by itself. */
    if (a->global < 0) a->global = a->kind == PAT_LAYOUT ? 0 : 1;
    if (a->window < 0) a->window = a->kind == PAT_LAYOUT ? 0 : 3;
    llmlab_attn_pattern pat = {.size = sizeof pat, .block = a->block, .global_blocks = a->global,
                               .window_blocks = a->window};
    uint8_t *layout = NULL;
    llmlab_status st = LLMLAB_OK;
    if (a->kind == PAT_LAYOUT && !path[0])
        st = llmlab_plugin_fail(err, LLMLAB_EINVAL, "sparse: pattern=layout needs layout=<file> (one line of 0/1 per query block)");
    else if (a->kind != PAT_LAYOUT && path[0])
        st = llmlab_plugin_fail(err, LLMLAB_EINVAL, "sparse: layout='%s' is only read with pattern=layout (pattern is %s)", path,
                  kind);
    else if (a->kind == PAT_LAYOUT && !(st = read_layout(a, path, &layout, err))) {
        pat.layout = layout;
        pat.layout_blocks = a->rows;
    }
    if (a->kind == PAT_BIGBIRD) {
        pat.random_blocks = (int)h->param_int(p, "random");
        pat.seed = (uint64_t)h->param_int(p, "seed");
    }
    if (!st) st = h->engine_set_pattern(e, &pat, err); /* copies the layout */
    h->free(layout);
    if (st) {
        sparse_destroy(a);
        return st;
    }
    *self = a;
    return LLMLAB_OK;
}

/* A layout covers rows * block positions; later queries would see only themselves. */
static llmlab_status sparse_seq_begin(void *self, llmlab_seq *s, llmlab_err *err) {
    sparse_state *a = self;
    if (a->kind != PAT_LAYOUT) return LLMLAB_OK;
    long long n = (long long)a->h->seq_len(s) + a->h->seq_remaining(s), cap = (long long)a->rows * a->block;
    if (n > cap)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL,
                    "sparse: sequence of %lld tokens (prompt and max_new) exceeds the block-sparse layout of %d "
                    "blocks x %d tokens (%lld positions)",
                    n, a->rows, a->block, cap);
    return LLMLAB_OK;
}

static void sparse_seq_end(void *self, llmlab_seq *s) {}

/* Whether some query in block qn or later still sees key block kb. */
static int block_needed(const sparse_state *a, int kb, int qn) {
    if (kb < a->global) return 1;
    if (a->window > 0 && qn - kb < a->window) return 1; /* later blocks see even less of the past */
    return a->kind == PAT_LAYOUT && kb < a->rows && a->last_use[kb] >= qn;
}

static llmlab_status sparse_after_step(void *self, llmlab_seq *s, llmlab_err *err) {
    sparse_state *a = self;
    const llmlab_host *h = a->h;
    if (a->kind == PAT_BIGBIRD) return LLMLAB_OK; /* random blocks may reach back anywhere */
    int next = h->seq_kv_len(s), qn = next / a->block; /* the next query's block */
    int newest_dead = a->window > 0 ? qn - a->window : qn; /* longformer: blocks past it are in the window */
    if (a->kind == PAT_LONGFORMER && newest_dead < a->global) return LLMLAB_OK; /* nothing to evict */
    int32_t *pos = h->alloc((size_t)next * sizeof *pos);
    int *slots = h->alloc((size_t)next * sizeof *slots);
    llmlab_status st = LLMLAB_OK;
    if (!pos || !slots) st = llmlab_plugin_fail(err, LLMLAB_ENOMEM, "sparse: out of memory for %d positions", next);
    int n = st ? 0 : h->seq_kv_lane(s, 0, pos, NULL, NULL, NULL), k = 0;
    for (int i = 0; i < n; i++)
        if (pos[i] >= 0 && !block_needed(a, pos[i] / a->block, qn)) slots[k++] = i;
    if (k > 0 && !(st = h->seq_kv_evict(s, slots, k, err))) h->metric_add(s, "evicted", (double)k);
    h->free(pos);
    h->free(slots);
    return st;
}

static const llmlab_attention_ops sparse_ops = {
    sizeof(llmlab_attention_ops), sparse_create, sparse_destroy, sparse_seq_begin, sparse_seq_end, sparse_after_step,
};

static const llmlab_plugin_desc sparse_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_ATTENTION, "sparse", "1.0",
    "static block-sparse attention: Longformer, BigBird or a layout file; unreachable keys are evicted",
    sparse_params, (int)(sizeof sparse_params / sizeof sparse_params[0]), &sparse_ops);

const llmlab_plugin_desc *llmlab_builtin_sparse(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &sparse_desc;
}
