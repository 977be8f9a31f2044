/* none.c - the baseline quant plugin: weights stay as loaded (f32, f16, bf16, or
 * a GGUF file's Q8_0/Q4_0/Q4_K blocks) and multiply through the host's
 * batch-invariant dense kernel. */
#include "llmlab/plugin.h"
#include "plugins/builtins.h"

typedef struct {
    const llmlab_host *h;
} none_state;

typedef struct {
    llmlab_dtype dtype;
    const void *data; /* [rows][cols], the memory-mapped tensor */
    int rows, cols;
} none_packed;

static llmlab_status none_create(void **self, const llmlab_host *h, llmlab_engine *e,
                                 const llmlab_params *p, llmlab_err *err) {
    none_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    *self = s;
    return LLMLAB_OK;
}

static void none_destroy(void *self) {
    if (self) ((none_state *)self)->h->free(self);
}

static llmlab_status none_pack(void *self, const llmlab_weight *w, void **packed, double *bits,
                               llmlab_err *err) {
    none_state *s = self;
    none_packed *p = s->h->alloc(sizeof *p);
    if (!p) return LLMLAB_ENOMEM;
    p->dtype = w->dtype;
    p->data = w->data;
    p->rows = (int)w->rows;
    p->cols = (int)w->cols;
    /* Storage per weight of the loaded dtype, block scales included. */
    switch (w->dtype) {
    case LLMLAB_DTYPE_F32: *bits = 32.0; break;
    case LLMLAB_DTYPE_F16:
    case LLMLAB_DTYPE_BF16: *bits = 16.0; break;
    case LLMLAB_DTYPE_Q8_0: *bits = 8.5; break;  /* 34 bytes / 32 weights */
    case LLMLAB_DTYPE_Q4_0: *bits = 4.5; break;  /* 18 bytes / 32 weights */
    case LLMLAB_DTYPE_Q4_K: *bits = 4.5; break;  /* 144 bytes / 256 weights */
    }
    *packed = p;
    return LLMLAB_OK;
}

static void none_unpack(void *self, void *packed) { ((none_state *)self)->h->free(packed); }

static void none_matmul(void *self, const void *packed, float *y, const float *x, int M,
                        llmlab_threadpool *pool) {
    const none_packed *p = packed;
    ((none_state *)self)->h->matmul_dense(y, x, p->data, p->dtype, M, p->rows, p->cols, pool);
}

/* The loaded weight itself, through the host (any dtype, block formats too). */
static void none_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out) {
    const none_packed *p = packed;
    llmlab_weight w = {sizeof w, "", p->dtype, p->data, p->rows, p->cols};
    ((none_state *)self)->h->weight_rows(&w, row0, n, out);
}

/* 0: it borrows the loaded (memory-mapped) tensor. */
static size_t none_packed_bytes(void *self, const void *packed) { return 0; }

static const llmlab_quant_ops ops = {
    sizeof(llmlab_quant_ops), none_create, none_destroy, none_pack, none_unpack, none_matmul,
    none_dequant, none_packed_bytes,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "none", "1.0", "weights as loaded (f32/f16/bf16/q8_0/q4_0/q4_k), f32 accumulation", NULL, 0, &ops);

const llmlab_plugin_desc *llmlab_builtin_quant_none(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
