/* kv_plugin.h - what the KV-cache format plugins (kv_f16, kv_int8, kv_int4)
 * share: they are quant-kind plugins without weight functions (pack == NULL)
 * whose create() declares the engine's KV storage format; the KV cache and the
 * attention kernel do the rest (kv_cache.h, docs/quantization.md "KV-cache
 * formats").  The instance only remembers the host, to free itself. */
#ifndef LLMLAB_PLUGINS_QUANT_KV_PLUGIN_H
#define LLMLAB_PLUGINS_QUANT_KV_PLUGIN_H

#include <stddef.h>

#include "plugins/builtins.h"
#include "plugins/plugin_util.h"

typedef struct {
    const llmlab_host *h;
} kv_plugin_state;

/* Declares format f to the engine and creates the instance. */
static inline llmlab_status kv_plugin_create(void **self, const llmlab_host *h, llmlab_engine *e,
                                             const llmlab_kv_format *f, const char *name, llmlab_err *err) {
    *self = NULL;
    if (h->size < offsetof(llmlab_host, engine_set_kv_format) + sizeof h->engine_set_kv_format ||
        !h->engine_set_kv_format)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "%s needs a host with ABI 1.3 (KV-cache formats)", name);
    kv_plugin_state *s = h->alloc(sizeof *s);
    if (!s) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "%s: out of memory", name);
    s->h = h;
    llmlab_status st = h->engine_set_kv_format(e, f, err);
    if (st) {
        h->free(s);
        return st;
    }
    *self = s;
    return LLMLAB_OK;
}

static inline void kv_plugin_destroy(void *self) {
    kv_plugin_state *s = self;
    if (s) s->h->free(s);
}

#endif
