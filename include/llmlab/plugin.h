/* plugin.h - the llmlab plugin ABI (version 1.3).
 *
 * A plugin is a shared object exporting one function, llmlab_plugin_entry (see
 * LLMLAB_PLUGIN_ENTRY_SYMBOL).  The host calls it with its ABI version and its
 * function table; the plugin returns a const descriptor.  The host compares the
 * descriptor's ABI major, minor and struct size before calling anything else
 * (PostgreSQL's PG_MODULE_MAGIC idea), so a plugin built against another major
 * version is refused with a clear message and never runs.
 *
 * Rules that keep old plugins working (SQLite's extension routine table):
 *  - every struct passed across the boundary starts with its size in bytes;
 *  - structs and tables only grow at the end; a field is never moved or retyped;
 *  - the host checks `size` before reading a field a plugin may not have;
 *  - a minor bump adds fields at the end; a major bump breaks compatibility.
 * Handles (engine, sequence, step, params, pool) are opaque: plugins reach them
 * only through the host function table.
 *
 * Four kinds of plugins (DESIGN.md "Plugin kinds"):
 *   decoding  - what to forward for a sequence this step, and what to accept;
 *   attention - which cached slots stay, evictions over a budget;
 *   quant     - a packed weight format with its matmul;
 *   sched     - which requests run how many tokens this iteration.
 * docs/plugins.md walks through writing one of each.
 */
#ifndef LLMLAB_PLUGIN_H
#define LLMLAB_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/llmlab.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLMLAB_ABI_MAJOR 1
#define LLMLAB_ABI_MINOR 3
#define LLMLAB_PLUGIN_ENTRY_SYMBOL "llmlab_plugin_entry"

/* ---- opaque handles ------------------------------------------------------------ */

typedef struct llmlab_engine llmlab_engine;   /* one model + one plugin of each kind */
typedef struct llmlab_seq llmlab_seq;         /* a request being generated */
typedef struct llmlab_step llmlab_step;       /* the batch of one engine iteration */
typedef struct llmlab_params llmlab_params;   /* validated parameter values */
typedef struct llmlab_threadpool llmlab_threadpool;
typedef struct llmlab_aux llmlab_aux;         /* a second model with its own KV cache (1.1) */
typedef struct llmlab_tensors llmlab_tensors; /* an open safetensors file (1.1) */

typedef enum {
    LLMLAB_PLUGIN_DECODING = 1,
    LLMLAB_PLUGIN_ATTENTION = 2,
    LLMLAB_PLUGIN_QUANT = 3,
    LLMLAB_PLUGIN_SCHED = 4
} llmlab_plugin_kind;

/* ---- parameters ------------------------------------------------------------------ */

typedef enum {
    LLMLAB_PARAM_INT = 1,
    LLMLAB_PARAM_FLOAT = 2,
    LLMLAB_PARAM_BOOL = 3,
    LLMLAB_PARAM_STRING = 4,
    LLMLAB_PARAM_ENUM = 5
} llmlab_param_type;

/* One declared parameter.  The host validates every value from Lua, INI or the
 * command line against it before create() and records all of them in results. */
typedef struct {
    const char *name;            /* identifier: [a-z_][a-z0-9_]* */
    llmlab_param_type type;
    const char *default_value;   /* as text ("8", "0.5", "true", "greedy"); NULL = required */
    double min, max;             /* INT/FLOAT range, inclusive; ignored when min > max */
    const char *const *choices;  /* ENUM: NULL-terminated list of allowed strings */
    const char *doc;             /* one line */
} llmlab_param_spec;

/* ---- the host function table (grows only at the end) ---------------------------- */

enum { LLMLAB_LOG_ERROR = 0, LLMLAB_LOG_WARN = 1, LLMLAB_LOG_INFO = 2, LLMLAB_LOG_DEBUG = 3 };
enum { LLMLAB_ROW_LOGITS = 1, LLMLAB_ROW_HIDDEN = 2 }; /* flags of step_add */

/* One token of an auxiliary-model forward (ABI 1.1).  Tokens of one sequence go
 * in position order; each sees its sequence's cached slots and its earlier
 * tokens in the call (a causal chain). */
typedef struct {
    llmlab_seq *seq;      /* whose draft cache the token extends */
    int32_t token;
    int32_t pos;
    int logits;           /* 1 = return this token's logits */
} llmlab_aux_token;

/* ---- attention policies (ABI 1.2) ------------------------------------------------ */

/* Structured visibility of cached keys, evaluated by the attention kernel (never a
 * mask in memory).  A key at position k is visible to a query at position q when
 * block == 0 (no pattern), when it is the query itself, or when, with
 * qb = q / block and kb = k / block, any of these holds:
 *   kb < global_blocks                    global tokens / attention sinks;
 *   qb - kb < window_blocks               sliding window (block 1: the W newest
 *                                         positions, the query included);
 *   layout[qb * layout_blocks + kb] != 0  a user block-sparse layout (rows past
 *                                         the layout see nothing but themselves);
 *   kb is one of the random_blocks blocks drawn for qb (BigBird): distinct blocks
 *   from [global_blocks, qb - window_blocks] drawn by llmlab_pattern_random_blocks
 *   below with `seed`; all of them when there are fewer.
 * Keys are always earlier than their queries (causal); batch tokens keep the
 * visibility their decoding plugin gave them and the pattern applies on top.
 * rope_shifted: keys are cached before RoPE and every query/key is rotated at its
 * rank among the query's visible keys (StreamingLLM's cache positions) instead of
 * its original position. */
typedef struct {
    uint32_t size;          /* sizeof(llmlab_attn_pattern) */
    int block;              /* tokens per block; 0 = dense (every cached key visible) */
    int global_blocks;
    int window_blocks;      /* 0 = no window term */
    int random_blocks;
    uint64_t seed;
    const uint8_t *layout;  /* [layout_blocks][layout_blocks] or NULL; copied by the host */
    int layout_blocks;
    int rope_shifted;
} llmlab_attn_pattern;

/* The random key blocks of query block qb (BigBird): min(r, hi - lo + 1) distinct
 * blocks of [lo, hi], in draw order, written to out[r].  Draws are uniform by
 * rejection from a splitmix64 stream seeded with seed ^ (qb * golden ratio), so a
 * pattern is reproducible from its seed alone.  Returns the count. */
static inline int llmlab_pattern_random_blocks(uint64_t seed, int qb, int lo, int hi, int r, int *out) {
    int span = hi - lo + 1, n = 0;
    if (span <= 0 || r <= 0) return 0;
    if (r >= span) {
        for (int i = 0; i < span; i++) out[n++] = lo + i;
        return n;
    }
    uint64_t x = seed ^ ((uint64_t)(uint32_t)qb * 0x9E3779B97F4A7C15ull);
    while (n < r) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        int b = lo + (int)(z % (uint64_t)span), dup = 0;
        for (int i = 0; i < n; i++) dup |= out[i] == b;
        if (!dup) out[n++] = b;
    }
    return n;
}

/* Per-slot attention-mass accumulators the attention kernel fills, per lane
 * (lane = layer * n_kv_heads + kv_head; a KV head's mass sums the probabilities of
 * the query heads of its GQA group):
 *   mass - every committed query's probabilities, summed (H2O);
 *   obs  - the same, only from prompt queries in the last obs_window positions (SnapKV);
 *   last - the probabilities from the newest committed query alone (TOVA).
 * Rows that a decoding plugin drops (rejected drafts) leave no trace. */

/* Score eviction run by the engine itself after every committed decode token, and
 * simulated inside the attention kernel for a speculative chain, so speculative
 * decoding evicts exactly as autoregressive decoding does.  Per lane: while more
 * than `capacity` keys are valid, the key with the lowest score is evicted among
 * those not protected (position < sinks, or one of the `recent` newest positions);
 * ties go to the oldest position. */
enum { LLMLAB_SCORE_MASS = 1, LLMLAB_SCORE_LAST = 2 };
typedef struct {
    uint32_t size;          /* sizeof(llmlab_evict_rule) */
    int capacity;           /* keys kept per lane; 0 = no rule */
    int recent;
    int sinks;
    int score;              /* LLMLAB_SCORE_* */
} llmlab_evict_rule;

/* ---- quantization (ABI 1.3) ------------------------------------------------------ */

/* A weight matrix handed to a quant plugin: [rows][cols] row-major in dtype
 * (f32/f16/bf16, or a GGUF block format; host weight_rows reads any of them). */
typedef struct {
    uint32_t size;
    const char *name;        /* e.g. "model.layers.0.mlp.up_proj.weight" */
    llmlab_dtype dtype;
    const void *data;
    int64_t rows, cols;
} llmlab_weight;

/* KV-cache storage formats.  A quant plugin chosen as an engine's KV format
 * (Lua kv_quant=) describes its storage with engine_set_kv_format in create; the
 * KV cache then stores and the attention kernel reads that format (the plugin
 * declares, the kernel executes, as with attention patterns).  Integer formats:
 *   values: per token, one scale (and zero when asymmetric) per `group` channels
 *           of a head;
 *   keys:   per token like values, or, with key_per_channel (KIVI), one scale
 *           (and zero) per channel over the tokens of one KV block (block_size
 *           tokens: KIVI's group G);
 *   residual: the newest `residual` positions of a sequence stay in f32 (KIVI's
 *           full-precision window R) and are quantized as they age out. */
typedef enum {
    LLMLAB_KV_F32 = 0,
    LLMLAB_KV_F16 = 1,
    LLMLAB_KV_BF16 = 2,
    LLMLAB_KV_INT8 = 3,
    LLMLAB_KV_INT4 = 4
} llmlab_kv_dtype;

typedef struct {
    uint32_t size;           /* sizeof(llmlab_kv_format) */
    int dtype;               /* llmlab_kv_dtype */
    int group;               /* channels per scale for per-token rows; 0 = head_dim */
    int key_per_channel;     /* 1: keys per channel over a block's tokens (KIVI) */
    int asymmetric;          /* 1: scale and zero point (min), else symmetric */
    int residual;            /* newest positions kept in f32; 0 = none */
} llmlab_kv_format;

typedef struct llmlab_host {
    uint32_t size;       /* sizeof(llmlab_host) of the host */
    uint32_t abi_major;  /* LLMLAB_ABI_MAJOR of the host */
    uint32_t abi_minor;

    /* logging and memory */
    void (*log)(int level, const char *plugin, const char *fmt, ...);
    void *(*alloc)(size_t bytes);          /* zeroed; NULL when out of memory */
    void (*free)(void *p);

    /* parameters (names must be declared; the values were validated) */
    int64_t (*param_int)(const llmlab_params *p, const char *name);
    double (*param_float)(const llmlab_params *p, const char *name);
    int (*param_bool)(const llmlab_params *p, const char *name);
    const char *(*param_string)(const llmlab_params *p, const char *name); /* STRING and ENUM */

    /* the engine's model */
    int (*model_vocab)(const llmlab_engine *e);
    int (*model_dim)(const llmlab_engine *e);
    int (*model_layers)(const llmlab_engine *e);
    int (*model_is_eos)(const llmlab_engine *e, int32_t token);
    llmlab_threadpool *(*engine_pool)(llmlab_engine *e);

    /* sequences */
    int (*seq_id)(const llmlab_seq *s);
    int (*seq_len)(const llmlab_seq *s);            /* prompt + accepted tokens */
    const int32_t *(*seq_tokens)(const llmlab_seq *s); /* [seq_len] */
    int (*seq_prompt_len)(const llmlab_seq *s);
    int (*seq_remaining)(const llmlab_seq *s);      /* tokens it may still accept */
    int (*seq_kv_len)(const llmlab_seq *s);         /* committed tokens in its KV cache */
    /* Draws a token from logits[vocab] with the engine's sampling settings and the
     * sequence's own seeded stream (greedy: argmax, lowest index on ties). */
    int32_t (*seq_sample)(llmlab_seq *s, const float *logits);
    uint64_t (*seq_rng_next)(llmlab_seq *s);        /* the sequence's random stream */
    /* Appends accepted tokens to the output (the engine stops at max_new / eos). */
    llmlab_status (*seq_accept)(llmlab_seq *s, const int32_t *tokens, int n, llmlab_err *err);
    /* KV: commit the listed provisional slots in order and drop the others. */
    llmlab_status (*seq_kv_keep)(llmlab_seq *s, const int *slots, int n, llmlab_err *err);
    /* KV: mark committed slots invalid (attention policies). */
    llmlab_status (*seq_kv_evict)(llmlab_seq *s, const int *slots, int n, llmlab_err *err);
    /* A committed slot: valid in any lane / its position in lane 0 (0 / -1 past the
     * committed slots; since 1.2 there may be fewer slots than seq_kv_len, see
     * seq_kv_lane for their count). */
    int (*seq_kv_slot_valid)(const llmlab_seq *s, int slot);
    int32_t (*seq_kv_slot_pos)(const llmlab_seq *s, int slot);

    /* the step being built (propose) and its results (verify) */
    int (*step_add)(llmlab_step *st, llmlab_seq *s, int32_t token, int32_t pos, int flags,
                    int parent); /* batch index, or -1 when the step is full */
    void (*step_set_tree)(llmlab_step *st);         /* parents given to step_add are used */
    const float *(*step_logits)(const llmlab_step *st, int index); /* [vocab] or NULL */
    const float *(*step_hidden)(const llmlab_step *st, int index); /* [dim] or NULL */
    int (*step_slot)(const llmlab_step *st, int index); /* KV slot the token was written to */
    /* Batch indices of s's tokens in this step, in order; returns the count. */
    int (*step_rows)(const llmlab_step *st, const llmlab_seq *s, int *indices, int cap);

    /* metrics: named counters per sequence, summed into the run's tables */
    void (*metric_add)(llmlab_seq *s, const char *name, double value);

    /* dense matmul (the quant "none" path and a reference for others):
     * y[M][N] = x[M][K] W[N][K]^T, W in dtype, batch invariant */
    void (*matmul_dense)(float *y, const float *x, const void *W, llmlab_dtype dtype, int M,
                         int N, int K, llmlab_threadpool *pool);

    /* Default sampling of the engine's sequences (a request may override it). */
    void (*engine_set_sampling)(llmlab_engine *e, float temperature, int top_k, float top_p,
                                float min_p);

    /* ---- ABI 1.1 ---------------------------------------------------------------- */

    /* The distribution seq_sample draws from: probs[vocab] after temperature, top-k,
     * top-p and min-p; greedy sequences get a one-hot argmax.  (Speculative sampling
     * compares these between target and draft.) */
    void (*seq_probs)(const llmlab_seq *s, const float *logits, float *probs);
    int (*seq_greedy)(const llmlab_seq *s);  /* 1 when its temperature is 0 */
    /* Marks token i of the step as seeing token j (j < i, same sequence) and turns
     * the step into mask visibility.  Tokens of the step that never got step_see
     * keep the chain/tree given by their parents. */
    void (*step_see)(llmlab_step *st, int i, int j);
    /* The final-normed hidden state of the prompt's last row is wanted too (its
     * rows then carry LLMLAB_ROW_HIDDEN), e.g. for Medusa heads.  Call in create. */
    void (*engine_want_hidden)(llmlab_engine *e);

    /* Auxiliary models (speculative drafts).  model: a model directory, or "self"
     * for the engine's own weights; skip_layers[n_skip]: layers the aux forward
     * leaves out (the residual passes through; skipping the last layers is an early
     * exit through the shared final norm and LM head).  The aux has its own paged
     * KV cache with a sequence per engine sequence; the engine frees a sequence's
     * aux cache when it finishes or is preempted. */
    llmlab_status (*aux_open)(llmlab_engine *e, const char *model, const int *skip_layers, int n_skip,
                              llmlab_aux **out, llmlab_err *err);
    void (*aux_close)(llmlab_aux *a);
    int (*aux_vocab)(const llmlab_aux *a);
    int (*aux_layers)(const llmlab_aux *a);
    /* Runs t[n] batched (one forward per token-budget chunk); the new KV slots are
     * kept (committed).  logits: [rows flagged logits][vocab] in order. */
    llmlab_status (*aux_forward)(llmlab_aux *a, const llmlab_aux_token *t, int n, float *logits,
                                 llmlab_err *err);
    int (*aux_kv_len)(const llmlab_aux *a, const llmlab_seq *s);
    void (*aux_kv_truncate)(llmlab_aux *a, const llmlab_seq *s, int len); /* drop slots >= len */

    /* Reading a safetensors file (extra weights such as Medusa heads).  tensors_get
     * returns the data (valid until close) or NULL when absent; shape has room for
     * 4 dims. */
    llmlab_status (*tensors_open)(const char *path, llmlab_tensors **out, llmlab_err *err);
    const void *(*tensors_get)(const llmlab_tensors *t, const char *name, llmlab_dtype *dtype,
                               int64_t shape[4], int *ndim);
    void (*tensors_close)(llmlab_tensors *t);
    /* The engine's model tensor by its Hugging Face name (e.g. "lm_head.weight",
     * "model.norm.weight"); NULL when absent. */
    const void *(*model_tensor)(const llmlab_engine *e, const char *name, llmlab_dtype *dtype,
                                int64_t shape[4], int *ndim);

    /* ---- ABI 1.2: attention policies -------------------------------------------- */

    /* The structured visibility every forward of the engine applies (call in create). */
    llmlab_status (*engine_set_pattern)(llmlab_engine *e, const llmlab_attn_pattern *p, llmlab_err *err);
    /* Turns on the mass/obs/last accumulators (call in create); obs_window: prompt
     * queries at positions >= prompt_len - obs_window feed `obs` (0: none). */
    llmlab_status (*engine_want_mass)(llmlab_engine *e, int obs_window, llmlab_err *err);
    int (*kv_lanes)(const llmlab_engine *e);  /* n_layers * n_kv_heads */
    int (*model_kv_heads)(const llmlab_engine *e);
    /* Reads lane `lane` of s's committed slots into arrays of seq_kv_len(s) entries
     * (NULL = skip); returns the number of slots n filled (n <= seq_kv_len: after
     * compaction the cache holds fewer slots than tokens).  Slots are in position
     * order within a lane; pos[i] = -1 for a slot not valid in this lane. */
    int (*seq_kv_lane)(const llmlab_seq *s, int lane, int32_t *pos, float *mass, float *obs, float *last);
    /* Evicts committed slots from one lane only (per-head keep sets). */
    llmlab_status (*seq_kv_evict_lane)(llmlab_seq *s, int lane, const int *slots, int n, llmlab_err *err);
    /* Sets s's score eviction rule (rule->capacity 0 clears it). */
    llmlab_status (*seq_set_evict_rule)(llmlab_seq *s, const llmlab_evict_rule *rule, llmlab_err *err);
    /* Applies s's rule now: every lane keeps its `capacity` best slots (prompt end). */
    llmlab_status (*seq_kv_enforce)(llmlab_seq *s, llmlab_err *err);

    /* ---- ABI 1.3: quantization ---------------------------------------------------- */

    /* Rows [row0, row0 + n) of w as f32 into out[n][cols], whatever w's dtype
     * (f32, f16, bf16 or a GGUF block format). */
    void (*weight_rows)(const llmlab_weight *w, int64_t row0, int64_t n, float *out);
    /* Calibration (call in create): before packing, the engine runs n_tokens tokens
     * through the unquantized model and keeps the input rows of every weight.
     * source: "generate" (text sampled from the model itself with `seed`),
     * "random" (uniform token ids from `seed`), or a file: a text file encoded with
     * the model's tokenizer, or whitespace-separated token ids when its name ends
     * in ".ids".  The stream is cut into sequences of at most the model's context. */
    llmlab_status (*engine_want_calibration)(llmlab_engine *e, const char *source, int n_tokens,
                                             uint64_t seed, llmlab_err *err);
    /* The inputs x[*rows][cols] weight `name` saw during calibration (q/k/v share
     * theirs, as do gate/up); NULL without calibration.  Valid during pack(). */
    const float *(*calibration_inputs)(const llmlab_engine *e, const char *name, int64_t *rows);
    /* The KV-cache storage this plugin stands for (call in create; see
     * llmlab_kv_format).  Only a plugin chosen as the engine's kv_quant may call it. */
    llmlab_status (*engine_set_kv_format)(llmlab_engine *e, const llmlab_kv_format *f, llmlab_err *err);
} llmlab_host;

/* ---- the four kinds' operation tables ----------------------------------------- */

/* Every ops table starts with the same three fields, llmlab_ops_head: its size,
 * create() (gets the validated params, returns the instance in *self) and
 * destroy() (destroy(NULL) must be safe).  The kind-specific functions follow. */
typedef llmlab_status (*llmlab_plugin_create_fn)(void **self, const llmlab_host *h, llmlab_engine *e,
                                                 const llmlab_params *p, llmlab_err *err);
typedef void (*llmlab_plugin_destroy_fn)(void *self);

typedef struct {
    uint32_t size;
    llmlab_plugin_create_fn create;
    llmlab_plugin_destroy_fn destroy;
} llmlab_ops_head;

typedef struct {
    uint32_t size;
    llmlab_plugin_create_fn create;
    llmlab_plugin_destroy_fn destroy;
    /* A sequence's prompt is in the KV cache; per-sequence state starts here. */
    llmlab_status (*seq_begin)(void *self, llmlab_seq *s, llmlab_err *err);
    void (*seq_end)(void *self, llmlab_seq *s);
    /* Adds the tokens to forward for s to the step.  The first is the last accepted
     * token (not yet in the KV cache) at position seq_kv_len. */
    llmlab_status (*propose)(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err);
    /* Reads the step's rows for s, accepts tokens and keeps the right KV slots. */
    llmlab_status (*verify)(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err);
    /* ---- ABI 1.1 (optional: NULL or a smaller size means absent) ---- */
    /* Once per iteration, before any propose(): every sequence that decodes in this
     * step, so draft work can be batched across sequences. */
    llmlab_status (*step_begin)(void *self, llmlab_seq *const *seqs, int n, llmlab_err *err);
    /* The most tokens propose() adds for one sequence (absent: 1).  Schedulers
     * charge this much token budget and KV room per decoding sequence. */
    int (*max_step_tokens)(void *self);
} llmlab_decoding_ops;

typedef struct {
    uint32_t size;
    llmlab_plugin_create_fn create;
    llmlab_plugin_destroy_fn destroy;
    llmlab_status (*seq_begin)(void *self, llmlab_seq *s, llmlab_err *err);
    void (*seq_end)(void *self, llmlab_seq *s);
    /* Called after each step that committed tokens to s, except the step that
     * finishes it (seq_end still sees its cache then); may evict slots.  Slot
     * numbers are only valid until the step ends: the engine compacts the cache
     * after after_step (order kept), so keep positions, not slots, across steps. */
    llmlab_status (*after_step)(void *self, llmlab_seq *s, llmlab_err *err);
} llmlab_attention_ops;

typedef struct {
    uint32_t size;
    llmlab_plugin_create_fn create;
    llmlab_plugin_destroy_fn destroy;
    /* Packs w into the plugin's format; *packed is freed by unpack.  *bits is the
     * storage per weight, scales included.  NULL for a plugin that is only a KV
     * format (it calls engine_set_kv_format in create). */
    llmlab_status (*pack)(void *self, const llmlab_weight *w, void **packed, double *bits,
                          llmlab_err *err);
    void (*unpack)(void *self, void *packed);
    /* y[M][rows] = x[M][cols] W^T with the packed W; must be batch invariant. */
    void (*matmul)(void *self, const void *packed, float *y, const float *x, int M,
                   llmlab_threadpool *pool);
    /* ---- ABI 1.3 (optional: NULL or a smaller size means absent) ---- */
    /* The weight the packed form stands for, rows [row0, row0 + n) as f32 into
     * out[n][cols] (weight error per layer; any scaling the format folds into
     * matmul is applied, so out * x == matmul's result up to rounding). */
    void (*dequant)(void *self, const void *packed, int64_t row0, int64_t n, float *out);
    /* Bytes the packed weight keeps resident (scales included; 0 when it only
     * borrows the loaded tensor). */
    size_t (*packed_bytes)(void *self, const void *packed);
} llmlab_quant_ops;

/* What a scheduler sees of one request. */
typedef enum {
    LLMLAB_REQ_WAITING = 0,  /* arrived, not admitted (or preempted) */
    LLMLAB_REQ_RUNNING = 1,  /* admitted: has KV */
    LLMLAB_REQ_FINISHED = 2,
    LLMLAB_REQ_FUTURE = 3,   /* not yet arrived */
    LLMLAB_REQ_SWAPPED = 4   /* ABI 1.3: preempted by swap; its KV blocks wait in host memory */
} llmlab_req_state;

typedef struct {
    int id;
    llmlab_req_state state;
    double arrival_s;
    int prompt_len;
    int computed;        /* tokens already in the KV cache */
    int target;          /* tokens it needs in the cache before its next decode */
    int generated;
    int max_new;
    int priority;
} llmlab_sched_req;

typedef struct {
    uint32_t size;
    double now_s;
    int n_reqs;
    const llmlab_sched_req *reqs;  /* [n_reqs], arrival order */
    int kv_blocks_free, kv_blocks_total, kv_block_size;
    int token_budget;              /* max tokens in one forward */
    int max_seqs;
    /* ABI 1.1: tokens one decoding sequence may forward in a step (drafts, trees);
     * charge this against token_budget for every request in decode. */
    int decode_tokens;
    /* ---- ABI 1.3 ---- */
    /* Since 1.3, reqs holds only requests that have arrived and not finished
     * (WAITING, RUNNING, SWAPPED), in arrival order, so an iteration costs what is
     * live, not the whole workload; keep state across iterations by reqs[i].id.
     * (Plugins built against 1.0-1.2 still get every request.) */
    int watermark_blocks;          /* blocks admissions must leave free (vLLM's watermark) */
    int swap_blocks_free, swap_blocks_total; /* host swap space in KV blocks; 0 total = no swap */
    const int *blocks_held;        /* [n_reqs] KV blocks a request holds (on device, or in swap) */
    const int *predicted_out;      /* [n_reqs] output length the engine predicts (its estimator,
                                      or the true length under an oracle workload) */
    int preempt_mode;              /* engine default: 1 recompute, 2 swap */
} llmlab_sched_view;

typedef struct {
    uint32_t size;
    int *run_tokens;   /* [n_reqs] tokens to run this iteration (0 = not scheduled);
                          a running request in decode runs 1 (its decoding plugin may
                          add up to view->decode_tokens - 1 drafts) */
    uint8_t *preempt;  /* [n_reqs] 1 = free its KV and recompute later;
                          2 (ABI 1.3) = swap its KV to host memory; a SWAPPED request
                          given run_tokens > 0 is swapped back in first */
} llmlab_sched_plan;

typedef struct {
    uint32_t size;
    llmlab_plugin_create_fn create;
    llmlab_plugin_destroy_fn destroy;
    llmlab_status (*schedule)(void *self, const llmlab_sched_view *v, llmlab_sched_plan *plan,
                              llmlab_err *err);
    /* ---- ABI 1.3 (optional) ---- */
    /* The engine ran out of KV blocks while carrying out a plan and must preempt a
     * running request: return its index in v->reqs (a RUNNING one), or -1 for the
     * engine's default (lowest priority, then latest arrival, as vLLM does). */
    int (*pick_victim)(void *self, const llmlab_sched_view *v);
} llmlab_sched_ops;

/* ---- the descriptor ------------------------------------------------------------- */

typedef struct {
    uint32_t abi_major;      /* LLMLAB_ABI_MAJOR the plugin was built against */
    uint32_t abi_minor;
    uint32_t size;           /* sizeof(llmlab_plugin_desc) the plugin was built with */
    llmlab_plugin_kind kind;
    const char *name;        /* registry name: [a-z_][a-z0-9_]* */
    const char *version;
    const char *doc;         /* one line */
    const llmlab_param_spec *params;
    int n_params;
    const void *ops;         /* the kind's ops table (first field: its size) */
} llmlab_plugin_desc;

/* The one exported function.  It must not call the host beyond reading `host`. */
typedef const llmlab_plugin_desc *(*llmlab_plugin_entry_fn)(uint32_t host_abi_major,
                                                            uint32_t host_abi_minor,
                                                            const llmlab_host *host);

/* Fills the version fields of a descriptor from the headers the plugin is built with. */
#define LLMLAB_PLUGIN_DESC_INIT(kind_, name_, version_, doc_, params_, n_params_, ops_)         \
    {LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR, (uint32_t)sizeof(llmlab_plugin_desc), (kind_), (name_), \
     (version_), (doc_), (params_), (n_params_), (ops_)}

#ifdef __cplusplus
}
#endif
#endif
