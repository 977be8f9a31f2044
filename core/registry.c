/* registry.c - checking descriptors, dlopen, and the list of built-ins. */
#include "registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "plugins/builtins.h"

struct llmlab_registry {
    int n, cap;
    llmlab_registry_entry *items; /* [n] */
    void **handles;               /* [n_handles] dlopen handles, closed at free */
    int n_handles, cap_handles;
};

/* Smallest ops sizes this host accepts: every function of ABI 1.0. */
static size_t min_ops_size(llmlab_plugin_kind k) {
    switch (k) {
    case LLMLAB_PLUGIN_DECODING: return offsetof(llmlab_decoding_ops, step_begin); /* step_begin...: 1.1 */
    case LLMLAB_PLUGIN_ATTENTION: return sizeof(llmlab_attention_ops);
    case LLMLAB_PLUGIN_QUANT: return offsetof(llmlab_quant_ops, dequant); /* dequant, packed_bytes: 1.3 */
    case LLMLAB_PLUGIN_SCHED: return offsetof(llmlab_sched_ops, pick_victim); /* pick_victim: 1.3 */
    }
    return 0;
}

/* Every function pointer of the ops table must be set (they all are required in 1.0). */
static int ops_complete(llmlab_plugin_kind k, const void *ops) {
    switch (k) {
    case LLMLAB_PLUGIN_DECODING: {
        const llmlab_decoding_ops *o = ops;
        return o->create && o->destroy && o->seq_begin && o->seq_end && o->propose && o->verify;
    }
    case LLMLAB_PLUGIN_ATTENTION: {
        const llmlab_attention_ops *o = ops;
        return o->create && o->destroy && o->seq_begin && o->seq_end && o->after_step;
    }
    case LLMLAB_PLUGIN_QUANT: {
        const llmlab_quant_ops *o = ops; /* pack NULL: a KV-cache format only (engine_set_kv_format) */
        return o->create && o->destroy && (!o->pack || (o->unpack && o->matmul));
    }
    case LLMLAB_PLUGIN_SCHED: {
        const llmlab_sched_ops *o = ops;
        return o->create && o->destroy && o->schedule;
    }
    }
    return 0;
}

static llmlab_status check_desc(const llmlab_registry *r, const llmlab_plugin_desc *d,
                                const char *origin, llmlab_err *err) {
    if (!d) return llmlab_err_set(err, LLMLAB_EINVAL, "plugin %s: entry function returned no descriptor", origin);
    if (d->abi_major != LLMLAB_ABI_MAJOR)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "plugin %s: built for plugin ABI %u.%u, this llmlab has ABI %d.%d "
                              "(major versions must match; rebuild the plugin against these headers)",
                              origin, d->abi_major, d->abi_minor, LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR);
    if (d->size < sizeof(llmlab_plugin_desc))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "plugin %s: descriptor is %u bytes, ABI %d.%d needs at least %zu "
                              "(truncated descriptor)",
                              origin, d->size, LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR,
                              sizeof(llmlab_plugin_desc));
    const char *kind = llmlab_plugin_kind_name(d->kind);
    if (!kind)
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "plugin %s: unknown kind %d (known: 1 decoding, 2 attention, 3 quant, 4 sched)",
                              origin, (int)d->kind);
    llmlab_plugin_desc probe = *d; /* name check reuses the param identifier rule */
    llmlab_param_spec spec = {.name = d->name, .type = LLMLAB_PARAM_INT};
    probe.params = &spec;
    probe.n_params = 1;
    llmlab_status st = llmlab_params_check_specs(&probe, err);
    if (st || !d->name)
        return llmlab_err_set(err, LLMLAB_EINVAL, "plugin %s: invalid name '%s' (use [a-z_][a-z0-9_]*)",
                              origin, d->name ? d->name : "(null)");
    if (!d->ops || *(const uint32_t *)d->ops < min_ops_size(d->kind))
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "%s plugin '%s' (%s): ops table missing or smaller than ABI %d.%d needs",
                              kind, d->name, origin, LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR);
    if (!ops_complete(d->kind, d->ops))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s plugin '%s' (%s): ops table has a NULL function",
                              kind, d->name, origin);
    if ((st = llmlab_params_check_specs(d, err))) return llmlab_err_prefix(err, "%s", origin);
    const llmlab_plugin_desc *dup = llmlab_registry_find(r, d->kind, d->name);
    if (dup) {
        const char *first = "";
        for (int i = 0; i < r->n; i++)
            if (r->items[i].desc == dup) first = r->items[i].origin;
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "plugin %s: a %s plugin named '%s' is already registered (from %s)",
                              origin, kind, d->name, first);
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_registry_add(llmlab_registry *r, llmlab_plugin_entry_fn entry,
                                  const char *origin, llmlab_err *err) {
    const llmlab_plugin_desc *d = entry(LLMLAB_ABI_MAJOR, LLMLAB_ABI_MINOR, llmlab_host_table());
    llmlab_status st = check_desc(r, d, origin, err);
    if (st) return st;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        llmlab_registry_entry *g = realloc(r->items, (size_t)cap * sizeof *g);
        if (!g) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        r->items = g;
        r->cap = cap;
    }
    r->items[r->n].desc = d;
    r->items[r->n].origin = strdup(origin);
    if (!r->items[r->n].origin) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    r->n++;
    return LLMLAB_OK;
}

static llmlab_status keep_handle(llmlab_registry *r, void *h, llmlab_err *err) {
    if (r->n_handles == r->cap_handles) {
        int cap = r->cap_handles ? r->cap_handles * 2 : 8;
        void **g = realloc(r->handles, (size_t)cap * sizeof *g);
        if (!g) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        r->handles = g;
        r->cap_handles = cap;
    }
    r->handles[r->n_handles++] = h;
    return LLMLAB_OK;
}

llmlab_status llmlab_registry_load(llmlab_registry *r, const char *path, llmlab_err *err) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return llmlab_err_set(err, LLMLAB_EIO, "cannot load plugin %s: %s", path, dlerror());
    void *sym = dlsym(h, LLMLAB_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        dlclose(h);
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "plugin %s: no entry symbol '%s' (is it an llmlab plugin? see docs/plugins.md)",
                              path, LLMLAB_PLUGIN_ENTRY_SYMBOL);
    }
    llmlab_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object -> function pointer, as dlsym requires */
    llmlab_status st = llmlab_registry_add(r, entry, path, err);
    if (st == LLMLAB_OK) st = keep_handle(r, h, err);
    if (st) dlclose(h);
    return st;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Loads the *.so files of one directory in name order (so duplicates resolve the same way). */
static llmlab_status load_dir(llmlab_registry *r, const char *dir, llmlab_err *err) {
    DIR *d = opendir(dir);
    if (!d) return LLMLAB_OK;
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024)
        if (ends_with(e->d_name, ".so")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < n; i++) {
        if (!st && names[i]) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            st = llmlab_registry_load(r, path, err);
        }
        free(names[i]);
    }
    return st;
}

llmlab_status llmlab_registry_load_path(llmlab_registry *r, const char *dirs, llmlab_err *err) {
    if (!dirs) return LLMLAB_OK;
    char *copy = strdup(dirs), *save = NULL;
    if (!copy) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    llmlab_status st = LLMLAB_OK;
    for (char *dir = strtok_r(copy, ":", &save); dir && !st; dir = strtok_r(NULL, ":", &save))
        if (*dir) st = load_dir(r, dir, err);
    free(copy);
    return st;
}

llmlab_status llmlab_registry_create(llmlab_registry **out, llmlab_err *err) {
    *out = NULL;
    llmlab_registry *r = calloc(1, sizeof *r);
    if (!r) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    for (int i = 0; llmlab_builtin_plugins[i]; i++) {
        llmlab_status st = llmlab_registry_add(r, llmlab_builtin_plugins[i], "built-in", err);
        if (st) {
            llmlab_registry_free(r);
            return st;
        }
    }
    *out = r;
    return LLMLAB_OK;
}

void llmlab_registry_free(llmlab_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) free(r->items[i].origin);
    free(r->items);
    /* Handles stay open until the process ends: instances created from them may
     * still be alive in the caller (dlclose would unmap their code). */
    free(r->handles);
    free(r);
}

const llmlab_plugin_desc *llmlab_registry_find(const llmlab_registry *r, llmlab_plugin_kind kind,
                                               const char *name) {
    for (int i = 0; i < r->n; i++)
        if (r->items[i].desc->kind == kind && !strcmp(r->items[i].desc->name, name)) return r->items[i].desc;
    return NULL;
}

int llmlab_registry_count(const llmlab_registry *r) { return r->n; }
const llmlab_registry_entry *llmlab_registry_get(const llmlab_registry *r, int i) { return &r->items[i]; }
