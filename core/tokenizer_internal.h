/* tokenizer_internal.h - the parts of a tokenizer shared by core/tokenizer*.c.
 *
 * Pipeline (as the Hugging Face `tokenizers` library runs it):
 *   text -> split on non-normalized added tokens (raw text)
 *        -> each remaining piece: normalizer, then split on normalized added tokens
 *        -> pre-tokenizer (pieces -> words) -> BPE model (word -> ids)
 *        -> post-processor (BOS/EOS template) when add_special.
 * Decoding: ids -> token strings -> decoder chain (a streaming pipeline of
 * stages, tokenizer_decode.c) -> bytes.
 */
#ifndef LLMLAB_TOKENIZER_INTERNAL_H
#define LLMLAB_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tokenizer.h"

/* ---- growable buffers ------------------------------------------------------------- */

/* Bytes. */
typedef struct {
    char *p;    /* data (not NUL-terminated unless a function says so) */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
} tok_buf;

/* A slice of some tok_buf: [off, off + len). */
typedef struct {
    size_t off;  /* start byte */
    size_t len;  /* length in bytes */
    int32_t id;  /* added-token id when the piece is one, else -1 */
    int at_start; /* 1 when the piece begins at offset 0 of the original text */
} tok_piece;

/* Pieces. */
typedef struct {
    tok_piece *v; /* pieces in text order */
    size_t n;     /* used */
    size_t cap;   /* allocated */
} tok_pieces;

/* Ids. */
typedef struct {
    int32_t *v; /* ids */
    size_t n;   /* used */
    size_t cap; /* allocated */
} tok_ids;

llmlab_status tok_buf_reserve(tok_buf *b, size_t extra, llmlab_err *err);
llmlab_status tok_buf_put(tok_buf *b, const void *p, size_t n, llmlab_err *err);
void tok_buf_free(tok_buf *b);
llmlab_status tok_pieces_push(tok_pieces *ps, tok_piece p, llmlab_err *err);
llmlab_status tok_ids_push(tok_ids *ids, int32_t id, llmlab_err *err);
llmlab_status tok_ids_put(tok_ids *ids, const int32_t *v, size_t n, llmlab_err *err);

/* ---- the object ---------------------------------------------------------------------- */

enum tok_kind {
    TOK_KIND_BYTES = 0, /* the byte-level fallback */
    TOK_KIND_BPE = 1    /* a tokenizer.json BPE model */
};

struct tok_bpe_tok; /* the tokenizer.json pipeline (below) */

struct llmlab_tokenizer {
    enum tok_kind kind;      /* which of the two below is live */
    struct tok_bpe_tok *bpe; /* the tokenizer.json pipeline; NULL for the fallback */
};

/* ---- regexes (tokenizer_regex.c) --------------------------------------------------------- */

/* A compiled PCRE2 pattern (UTF, UCP, MATCH_INVALID_UTF; JIT when available). */
typedef struct tok_regex tok_regex;

/* Compiles pattern (len bytes); literal != 0 matches it as a plain string.  On a
 * bad pattern the message names `where` and gives PCRE2's message and offset. */
llmlab_status tok_regex_compile(tok_regex **out, const char *pattern, size_t len, int literal, const char *where,
                                llmlab_err *err);
void tok_regex_free(tok_regex *re);

/* Per-call matching scratch (a PCRE2 match data block). */
typedef struct tok_match tok_match;
llmlab_status tok_match_create(tok_match **out, llmlab_err *err);
void tok_match_free(tok_match *m);

/* Iterates over the matches of re in s[0..n) the way the Rust regex crate's
 * find_iter does: left to right, non-overlapping, an empty match never right
 * where the previous match ended.  *pos and *last carry the state (start both
 * at 0 and SIZE_MAX).  Returns 1 and [*ms, *me) for a match, 0 at the end. */
int tok_regex_next(const tok_regex *re, tok_match *m, const char *s, size_t n, size_t *pos, size_t *last,
                   size_t *ms, size_t *me);

/* Appends s[0..n) to out with every match of re replaced by rep[0..rn). */
llmlab_status tok_regex_replace(const tok_regex *re, tok_match *m, const char *s, size_t n, const char *rep,
                                size_t rn, tok_buf *out, llmlab_err *err);

/* 1 when re matches s[0..n) starting exactly at offset at (used for char classes). */
int tok_regex_matches_at(const tok_regex *re, tok_match *m, const char *s, size_t n, size_t at);

/* ---- hash tables (tokenizer_vocab.c) ---------------------------------------------------- */

/* Byte string -> id, keys stored by the owner (an arena of pieces). */
typedef struct {
    uint32_t *slot;   /* id + 1, 0 = empty; capacity is a power of two */
    uint32_t *hash;   /* full hash of the slot's key (skips most key compares) */
    uint32_t mask;    /* capacity - 1 */
    uint32_t n;       /* keys stored */
} tok_strmap;

/* The owner's keys: the piece of id i is arena + off[i], len[i] bytes. */
typedef struct {
    char *arena;      /* all piece bytes, each followed by a NUL */
    size_t arena_len; /* bytes used */
    size_t arena_cap; /* bytes allocated */
    uint32_t *off;    /* [n_ids] offset in arena, UINT32_MAX for an unused id */
    uint32_t *len;    /* [n_ids] length in bytes */
    int32_t n_ids;    /* ids 0..n_ids-1 have room */
} tok_pieces_store;

uint32_t tok_hash_bytes(const char *s, size_t n);
llmlab_status tok_strmap_init(tok_strmap *m, size_t expected, llmlab_err *err);
void tok_strmap_free(tok_strmap *m);
/* Looks s up among the keys of store; returns the id or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const tok_pieces_store *store, const char *s, size_t n);
/* Inserts id (whose piece is already in store); returns the id already mapped
 * to the same string, or -1 when it was new. */
int32_t tok_strmap_put(tok_strmap *m, const tok_pieces_store *store, int32_t id, llmlab_err *err,
                       llmlab_status *st);

/* Sets the piece of id (growing the store); an existing piece is replaced. */
llmlab_status tok_store_set(tok_pieces_store *st, int32_t id, const char *s, size_t n, llmlab_err *err);
void tok_store_free(tok_pieces_store *st);
static inline const char *tok_store_get(const tok_pieces_store *st, int32_t id, size_t *len) {
    if (id < 0 || id >= st->n_ids || st->off[id] == UINT32_MAX) return NULL;
    if (len) *len = st->len[id];
    return st->arena + st->off[id];
}

/* (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *key;   /* (left << 32 | right) + 1, 0 = empty */
    uint32_t *rank;  /* merge rank (its index in model.merges) */
    int32_t *id;     /* id of the merged token */
    uint32_t mask;   /* capacity - 1 */
    uint32_t n;      /* pairs stored */
} tok_pairmap;

llmlab_status tok_pairmap_init(tok_pairmap *m, size_t expected, llmlab_err *err);
void tok_pairmap_free(tok_pairmap *m);
/* Sets (or overwrites: the last merge of a pair wins, as in HF) a pair. */
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
static inline uint64_t tok_pair_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}
/* Finds (a, b); returns 1 and fills rank/id, or 0. */
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);

/* ---- normalizers (tokenizer_norm.c) ------------------------------------------------------ */

enum tok_norm_type {
    TOK_NORM_SEQUENCE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD,
    TOK_NORM_LOWERCASE, TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_STRIP
};

typedef struct tok_norm {
    enum tok_norm_type type;  /* what it does */
    struct tok_norm *items;   /* SEQUENCE: the normalizers in order */
    int n_items;              /* SEQUENCE: their count */
    char *str;                /* PREPEND: the prefix; REPLACE: the replacement */
    size_t str_len;           /* its length in bytes */
    tok_regex *re;            /* REPLACE: the pattern (literal or regex) */
    int left, right;          /* STRIP: which ends */
} tok_norm;

/* Normalizes in[0..n) into out (out->len reset first).  Invalid UTF-8 passes through. */
llmlab_status tok_norm_apply(const tok_norm *nm, const char *in, size_t n, tok_buf *out, tok_buf *tmp,
                             tok_match *m, llmlab_err *err);
void tok_norm_free(tok_norm *nm);

/* ---- pre-tokenizers (tokenizer_pretok.c) ------------------------------------------------- */

enum tok_pre_type {
    TOK_PRE_SEQUENCE, TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE, TOK_PRE_DIGITS,
    TOK_PRE_PUNCTUATION, TOK_PRE_WHITESPACE, TOK_PRE_WHITESPACE_SPLIT
};

/* How a split treats the matched delimiters (HF SplitDelimiterBehavior). */
enum tok_split_behavior {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS
};

enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };

typedef struct tok_pre {
    enum tok_pre_type type;           /* what it does */
    struct tok_pre *items;            /* SEQUENCE: the pre-tokenizers in order */
    int n_items;                      /* SEQUENCE: their count */
    tok_regex *re;                    /* SPLIT, WHITESPACE, BYTELEVEL(use_regex): the pattern */
    enum tok_split_behavior behavior; /* SPLIT, PUNCTUATION: delimiter handling */
    int invert;                       /* SPLIT: the matches are the pieces */
    int add_prefix_space;             /* BYTELEVEL: prepend ' ' to pieces not starting with one */
    char replacement[8];              /* METASPACE: the UTF-8 of the replacement char */
    int replacement_len;              /* METASPACE: its length */
    enum tok_prepend prepend;         /* METASPACE: when to prepend the replacement */
    int split;                        /* METASPACE: split before each replacement */
    int individual_digits;            /* DIGITS: one piece per digit */
} tok_pre;

/* Per-call pre-tokenizer scratch. */
typedef struct {
    tok_buf buf[2];       /* piece bytes, ping-pong between stages */
    tok_pieces pcs[2];    /* pieces over buf[i] */
    tok_buf tmp;          /* one piece being rewritten */
    tok_pieces spans;     /* match / non-match spans of one piece (id = 1 for a match) */
    int cur;              /* which of the two holds the current result */
} tok_pre_scratch;

/* Pre-tokenizes one piece (text[0..n), at_start as in tok_piece): the words end
 * up in sc->pcs[sc->cur] over sc->buf[sc->cur]. */
llmlab_status tok_pre_apply(const tok_pre *pt, const char *text, size_t n, int at_start, tok_pre_scratch *sc,
                            tok_match *m, llmlab_err *err);
void tok_pre_free(tok_pre *pt);
void tok_pre_scratch_free(tok_pre_scratch *sc);

/* The GPT-2 byte-to-unicode map: the code point standing for byte b, and back
 * (-1 for a code point that stands for no byte). */
uint32_t tok_bytelevel_cp(unsigned char b);
int tok_bytelevel_byte(uint32_t cp);

/* Character classes shared by normalizers and pre-tokenizers (Rust's char methods). */
int tok_is_whitespace(uint32_t c);   /* char::is_whitespace (White_Space) */
int tok_is_numeric(uint32_t c);      /* char::is_numeric (N*) */
int tok_is_punctuation(uint32_t c);  /* is_ascii_punctuation || P* */
/* Decodes one UTF-8 character at s[0..n): returns its length (>= 1) and sets *c,
 * or returns 1 with *c = UINT32_MAX for an invalid byte. */
size_t tok_utf8_next(const unsigned char *s, size_t n, uint32_t *c);
/* Encodes c into out[4]; returns the length. */
size_t tok_utf8_put(uint32_t c, char *out);

/* ---- the BPE model (tokenizer_bpe.c) ------------------------------------------------------ */

/* Per-call BPE scratch: the symbols of one word and the merge heap. */
typedef struct {
    struct tok_sym *sym;   /* symbols of the word being merged */
    size_t n_sym, cap_sym; /* used / allocated */
    struct tok_merge *heap;  /* candidate merges, a binary min-heap on (rank, pos) */
    size_t n_heap, cap_heap; /* used / allocated */
    tok_buf tmp;             /* a piece with continuing_subword_prefix / end_of_word_suffix */
} tok_bpe_scratch;

void tok_bpe_scratch_free(tok_bpe_scratch *sc);
/* Appends the ids of one word (pre-tokenized piece). */
llmlab_status tok_bpe_word(const struct tok_bpe_tok *m, const char *w, size_t n, tok_bpe_scratch *sc,
                           tok_ids *out, llmlab_err *err);

/* ---- added tokens ------------------------------------------------------------------------- */

typedef struct {
    char *content;      /* the token's text as in tokenizer.json */
    size_t len;         /* its length in bytes */
    char *pattern;      /* what is matched: content, normalized when `normalized` */
    size_t pattern_len; /* its length */
    int32_t id;         /* its id */
    int single_word;    /* only between non-word characters */
    int lstrip, rstrip; /* swallow whitespace on that side */
    int normalized;     /* matched on the normalized text */
    int special;        /* skipped by decode with skip_special */
} tok_added;

/* A node of the added-token trie: children form a sibling list. */
typedef struct {
    int32_t value;    /* index (into added) of the pattern ending here, -1 if none */
    uint32_t child;   /* first child node, 0 = none (the root is never a child) */
    uint32_t sibling; /* next sibling, 0 = none */
    uint8_t byte;     /* the byte on the edge into this node */
} tok_trie_node;

/* A byte trie over added-token patterns for leftmost-longest matching. */
typedef struct {
    tok_trie_node *node;     /* node 0 is the root */
    size_t n_node, cap_node; /* used / allocated */
    uint8_t first[256];      /* 1 for bytes some pattern starts with (a fast skip) */
} tok_trie;

/* ---- decoders (tokenizer_decode.c) -------------------------------------------------------- */

enum tok_dec_type {
    TOK_DEC_BYTELEVEL, TOK_DEC_METASPACE, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP
};

typedef struct {
    enum tok_dec_type type;   /* what it does */
    tok_regex *re;            /* REPLACE: the pattern */
    char *pat;                /* REPLACE with a String pattern: the string (else NULL) */
    size_t pat_len;           /* its length */
    char *content;            /* REPLACE: the replacement; STRIP: the UTF-8 of the char */
    size_t content_len;       /* its length */
    int start, stop;          /* STRIP: how many to remove at each end */
    char replacement[8];      /* METASPACE: the UTF-8 of the replacement char */
    int replacement_len;      /* METASPACE: its length */
    int prepend_never;        /* METASPACE: prepend_scheme "never" (keeps the first token's spaces) */
} tok_dec_stage;

/* ---- the whole tokenizer.json pipeline ---------------------------------------------------- */

struct tok_bpe_tok {
    char *what;                /* file name for messages */
    tok_pieces_store pieces;   /* id -> token string (added tokens override model pieces) */
    tok_strmap vocab;          /* model vocabulary: string -> id */
    int32_t model_size;        /* entries in model.vocab (HF's get_vocab_size) */
    int32_t n_ids;             /* largest id + 1 over the vocabulary and the added tokens */
    int32_t small_ids[0x800];  /* id of each code point < 0x800 as a one-char piece, -1 if none */
    tok_pairmap merges;        /* the merge table */
    int32_t unk_id;            /* unk_token's id; -1 without unk_token */
    char *unk_token;           /* unk_token as written (for the error when missing), or NULL */
    int fuse_unk;              /* consecutive unknowns become one unk */
    int byte_fallback;         /* unknown chars become <0xNN> tokens */
    int32_t byte_ids[256];     /* id of <0xNN>, -1 when absent */
    int ignore_merges;         /* a word that is a vocabulary entry is emitted whole */
    int split_meta;            /* words may be cut before a U+2581 that follows another
                                  character: no token spans such a place (see
                                  tokenizer_bpe.c) */
    char *cont_prefix;         /* continuing_subword_prefix or NULL */
    size_t cont_prefix_len;    /* its length */
    char *eow_suffix;          /* end_of_word_suffix or NULL */
    size_t eow_suffix_len;     /* its length */
    tok_added *added;          /* added tokens (JSON order) */
    int n_added;               /* their count */
    int32_t *added_of_id;      /* [n_ids] index into added, -1 when the id is not one */
    uint8_t *special;          /* [n_ids] 1 for special added tokens */
    tok_trie trie_raw;         /* non-normalized added tokens */
    tok_trie trie_norm;        /* normalized added tokens (patterns normalized) */
    tok_regex *word_re;        /* \w for single_word checks */
    tok_norm *norm;            /* normalizer or NULL */
    tok_pre *pre;              /* pre-tokenizer or NULL */
    int32_t *pp_before;        /* ids the post-processor puts before the sequence */
    int n_before;              /* their count */
    int32_t *pp_after;         /* ids it puts after */
    int n_after;               /* their count */
    tok_dec_stage *dec;        /* decoder chain, flattened */
    int n_dec;                 /* its length; 0 with has_decoder = 0 joins tokens with ' ' */
    int has_decoder;           /* tokenizer.json names a decoder */
    int bytelevel;             /* a ByteLevel pre-tokenizer or decoder is present */
    int32_t bos, eos;          /* see llmlab_tokenizer_bos/eos; -1 when none */
};

/* Added-token matching (tokenizer_added.c). */
llmlab_status tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t value, llmlab_err *err);
void tok_trie_free(tok_trie *t);
/* The longest pattern starting at s[0..n): returns its value (index into added) and
 * sets *len, or -1. */
int32_t tok_trie_longest(const tok_trie *t, const char *s, size_t n, size_t *len);

/* One segment of text after splitting on added tokens. */
typedef struct {
    size_t start, end; /* byte range in the text searched */
    int32_t added;     /* index into m->added, or -1 for plain text */
} tok_segment;

typedef struct {
    tok_segment *v;    /* segments in order */
    size_t n, cap;     /* used / allocated */
} tok_segments;

/* HF's AddedVocabulary::find_matches over s[0..n) with trie t (leftmost-longest,
 * single_word, lstrip, rstrip); segments cover the text (empty ones dropped). */
llmlab_status tok_added_split(const struct tok_bpe_tok *m, const tok_trie *t, const char *s, size_t n,
                              tok_segments *out, tok_match *mt, llmlab_err *err);

/* ---- the tokenizer.json pipeline (struct tok_bpe_tok) ----------------------------------- */

struct cJSON;
struct tok_dec;

/* Builds the pipeline from a parsed tokenizer.json; `what` names it in messages. */
llmlab_status tok_model_build(struct tok_bpe_tok **out, const struct cJSON *root, const char *what,
                              llmlab_err *err);
void tok_model_free(struct tok_bpe_tok *m);
const char *tok_model_kind(const struct tok_bpe_tok *m);
int tok_model_vocab_size(const struct tok_bpe_tok *m);
int32_t tok_model_bos(const struct tok_bpe_tok *m);
int32_t tok_model_eos(const struct tok_bpe_tok *m);
int32_t tok_model_token_id(const struct tok_bpe_tok *m, const char *s, size_t n);
/* The token string of id (NUL-terminated; *len its length when len is non-NULL), NULL if unused. */
const char *tok_model_piece(const struct tok_bpe_tok *m, int32_t id, size_t *len);
/* The string decoding starts from: a normalized added token's normalized form
 * (as HF decodes it), else the piece. */
const char *tok_model_dec_piece(const struct tok_bpe_tok *m, int32_t id, size_t *len);
int tok_model_is_special(const struct tok_bpe_tok *m, int32_t id);
/* Appends the ids of len bytes of text to out. */
llmlab_status tok_model_encode(const struct tok_bpe_tok *m, const char *text, size_t len, int add_special,
                               tok_ids *out, llmlab_err *err);

/* Decoder-chain state: push ids, bytes come out appended to out. */
llmlab_status tok_dec_create(struct tok_dec **out, const struct tok_bpe_tok *m, int skip_special,
                             llmlab_err *err);
llmlab_status tok_dec_push(struct tok_dec *d, int32_t id, tok_buf *out, llmlab_err *err);
/* Appends whatever the stages hold and resets d to its initial state. */
llmlab_status tok_dec_flush(struct tok_dec *d, tok_buf *out, llmlab_err *err);
void tok_dec_free(struct tok_dec *d);

/* ---- tokenizer.json parsing helpers (tokenizer_json.c, tokenizer_json_parts.c) ----------- */

/* `what` is the file name, `path` the JSON path of obj ("pre_tokenizer.pretokenizers[1]"). */
llmlab_status tok_json_bool(const struct cJSON *obj, const char *key, int def, const char *what, const char *path,
                            int *out, llmlab_err *err);
/* *out = NULL when absent or null and not required. */
llmlab_status tok_json_str(const struct cJSON *obj, const char *key, int required, const char *what,
                           const char *path, const char **out, llmlab_err *err);
llmlab_status tok_json_int(const struct cJSON *obj, const char *key, int def, long long lo, long long hi,
                           const char *what, const char *path, int *out, llmlab_err *err);
/* obj.pattern = {"String": s} or {"Regex": r}: compiles it (a String literally);
 * lit and lit_len get a copy of a String pattern (NULL for a Regex) when lit is non-NULL. */
llmlab_status tok_json_pattern(const struct cJSON *obj, const char *what, const char *path, tok_regex **re,
                               char **lit, size_t *lit_len, llmlab_err *err);
/* obj[key] must be a one-character string: its UTF-8 into out[8]. */
llmlab_status tok_json_char(const struct cJSON *obj, const char *key, const char *def, const char *what,
                            const char *path, char *out, int *out_len, llmlab_err *err);
char *tok_strndup(const char *s, size_t n);

llmlab_status tok_json_normalizer(tok_norm **out, const struct cJSON *v, const char *what, llmlab_err *err);
llmlab_status tok_json_pretokenizer(tok_pre **out, const struct cJSON *v, const char *what, int *bytelevel,
                                    llmlab_err *err);
llmlab_status tok_json_decoder(struct tok_bpe_tok *m, const struct cJSON *v, llmlab_err *err);
llmlab_status tok_json_postprocessor(struct tok_bpe_tok *m, const struct cJSON *v, llmlab_err *err);

#endif
