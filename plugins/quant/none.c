/* none.c - the baseline quant plugin: weights stay as loaded (f32, f16 or bf16)
 * and multiply through the host's batch-invariant dense kernel. */
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
    *bits = w->dtype == LLMLAB_DTYPE_F32 ? 32.0 : 16.0;
    *packed = p;
    return LLMLAB_OK;
}

static void none_unpack(void *self, void *packed) { ((none_state *)self)->h->free(packed); }

static void none_matmul(void *self, const void *packed, float *y, const float *x, int M,
                        llmlab_threadpool *pool) {
    const none_packed *p = packed;
    ((none_state *)self)->h->matmul_dense(y, x, p->data, p->dtype, M, p->rows, p->cols, pool);
}

static const llmlab_quant_ops ops = {
    sizeof(llmlab_quant_ops), none_create, none_destroy, none_pack, none_unpack, none_matmul, NULL, NULL,
};

static const llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_QUANT, "none", "1.0", "weights as loaded (f32/f16/bf16), f32 accumulation", NULL, 0, &ops);

const llmlab_plugin_desc *llmlab_builtin_quant_none(uint32_t major, uint32_t minor, const llmlab_host *host) {
    return &desc;
}
