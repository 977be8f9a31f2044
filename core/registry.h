/* registry.h - the plugin registries: built-ins at start, shared objects by path.
 *
 * Every descriptor, built-in or loaded, goes through the same checks before it is
 * registered: ABI major equal to the host's, descriptor and ops tables at least
 * the size this host needs, a known kind, a valid unique name, well-formed
 * parameter declarations.  A refused plugin is never called again. */
#ifndef LLMLAB_REGISTRY_H
#define LLMLAB_REGISTRY_H

#include "llmlab/plugin.h"

typedef struct llmlab_registry llmlab_registry;

typedef struct {
    const llmlab_plugin_desc *desc;
    char *origin; /* "built-in" or the .so path */
} llmlab_registry_entry;

/* Creates a registry holding every built-in plugin. */
llmlab_status llmlab_registry_create(llmlab_registry **out, llmlab_err *err);
void llmlab_registry_free(llmlab_registry *r);

/* Validates and registers a descriptor returned by an entry function. */
llmlab_status llmlab_registry_add(llmlab_registry *r, llmlab_plugin_entry_fn entry,
                                  const char *origin, llmlab_err *err);
/* dlopen()s a plugin .so and registers its descriptor. */
llmlab_status llmlab_registry_load(llmlab_registry *r, const char *path, llmlab_err *err);
/* Loads every *.so in each directory of a colon-separated list (missing dirs are
 * skipped; a bad plugin is an error). */
llmlab_status llmlab_registry_load_path(llmlab_registry *r, const char *dirs, llmlab_err *err);

const llmlab_plugin_desc *llmlab_registry_find(const llmlab_registry *r, llmlab_plugin_kind kind,
                                               const char *name);
int llmlab_registry_count(const llmlab_registry *r);
const llmlab_registry_entry *llmlab_registry_get(const llmlab_registry *r, int i);

/* The host function table given to every plugin. */
const llmlab_host *llmlab_host_table(void);

#endif
