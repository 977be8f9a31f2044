/* engine_kv.c - the engine's KV-cache storage format.
 *
 * A KV format is a quant-kind plugin without weight functions (pack == NULL),
 * chosen as the engine's kv_quant; its create() calls the host's
 * engine_set_kv_format, and the engine rebuilds its (still empty) KV pool in
 * that format.  Weight quantization (quant) and KV storage (kv_quant) are two
 * independent choices; each refuses the other's plugins with a message that
 * says so.  Auxiliary models (speculative drafts) keep f32 caches. */
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"
#include "error.h"

/* Registered quant plugins that are KV formats (kv) or weight formats (!kv), listed. */
static void list_quant(const llmlab_registry *r, int kv, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < llmlab_registry_count(r); i++) {
        const llmlab_plugin_desc *d = llmlab_registry_get(r, i)->desc;
        if (d->kind != LLMLAB_PLUGIN_QUANT || (((const llmlab_quant_ops *)d->ops)->pack == NULL) != kv) continue;
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", d->name);
    }
}

llmlab_status llmlab_engine_check_kv_choices(const llmlab_engine *e, const llmlab_engine_opts *o, llmlab_err *err) {
    char names[512];
    const llmlab_plugin_desc *q =
        o->quant.name ? llmlab_registry_find(e->reg, LLMLAB_PLUGIN_QUANT, o->quant.name) : NULL;
    if (q && !((const llmlab_quant_ops *)q->ops)->pack) {
        list_quant(e->reg, 0, names, sizeof names);
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "quant plugin '%s' is a KV-cache format, not a weight format: choose it as kv_quant "
                              "(weight formats: %s)",
                              q->name, names);
    }
    const llmlab_plugin_desc *k =
        o->kv_quant.name ? llmlab_registry_find(e->reg, LLMLAB_PLUGIN_QUANT, o->kv_quant.name) : NULL;
    if (o->kv_quant.name && (!k || ((const llmlab_quant_ops *)k->ops)->pack)) {
        list_quant(e->reg, 1, names, sizeof names);
        if (!k)
            return llmlab_err_set(err, LLMLAB_EINVAL, "kv_quant: no KV-cache format plugin named '%s' (registered: %s)",
                                  o->kv_quant.name, names);
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "kv_quant plugin '%s' packs weights: choose it as quant; kv_quant takes a KV-cache "
                              "format (%s)",
                              k->name, names);
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_engine_set_kv_format(llmlab_engine *e, const llmlab_kv_format *f, llmlab_err *err) {
    if (!e->kv_fmt_open)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "engine_set_kv_format: only the plugin chosen as the engine's kv_quant may set the KV "
                              "format, from its create()");
    if (!f || f->size < offsetof(llmlab_kv_format, residual) + sizeof f->residual)
        return llmlab_err_set(err, LLMLAB_EINVAL, "engine_set_kv_format: no format, or a truncated one (size %u)",
                              f ? f->size : 0u);
    llmlab_kv_format fmt = *f;
    fmt.size = sizeof fmt;
    llmlab_status st = llmlab_kv_format_check(&fmt, e->m->cfg.head_dim, err);
    if (!st) st = llmlab_ctx_set_kv_format(e->ctx, &fmt, err);
    if (st) return st;
    e->kv_fmt = fmt;
    e->kv_fmt_set = 1;
    return LLMLAB_OK;
}

llmlab_status llmlab_engine_kv_format_done(const llmlab_engine *e, llmlab_err *err) {
    if (e->kv_fmt_set) return LLMLAB_OK;
    return llmlab_err_set(err, LLMLAB_EINVAL, "kv_quant plugin '%s' set no KV format (engine_set_kv_format in create)",
                          e->kvq.d ? e->kvq.d->name : "?");
}

const llmlab_plugin_desc *llmlab_engine_kv_plugin(const llmlab_engine *e) { return e->kvq.d; }
const llmlab_params *llmlab_engine_kv_params(const llmlab_engine *e) { return e->kvq.d ? e->kvq.p : NULL; }
double llmlab_engine_kv_bytes_per_token(const llmlab_engine *e) {
    return llmlab_kv_bytes_per_token(llmlab_ctx_kv(e->ctx));
}
llmlab_kv_format llmlab_engine_kv_format(const llmlab_engine *e) {
    return e->kv_fmt_set ? e->kv_fmt : (llmlab_kv_format){.size = sizeof(llmlab_kv_format)};
}
