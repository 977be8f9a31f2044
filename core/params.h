/* params.h - validated plugin parameter values (the opaque llmlab_params).
 *
 * Values arrive from Lua, INI or the command line as loosely typed items; they are
 * checked against the plugin's declared llmlab_param_spec list (type, range,
 * choices, required) before the plugin's create() runs, with messages that name
 * the plugin, the parameter and what is allowed. */
#ifndef LLMLAB_PARAMS_H
#define LLMLAB_PARAMS_H

#include <stdint.h>

#include "llmlab/plugin.h"

typedef enum { LLMLAB_VAL_INT, LLMLAB_VAL_FLOAT, LLMLAB_VAL_BOOL, LLMLAB_VAL_STRING } llmlab_val_kind;

/* One given value: key = value as the user wrote it. */
typedef struct {
    const char *key;
    llmlab_val_kind kind;
    int64_t i;
    double f;
    int b;
    const char *s;
} llmlab_param_value;

typedef struct {
    llmlab_param_type type;
    int64_t i;
    double f;
    int b;
    char *s; /* owned: STRING and ENUM */
} llmlab_param_slot;

struct llmlab_params {
    const llmlab_plugin_desc *desc;
    llmlab_param_slot *v; /* [desc->n_params], in declaration order */
};

/* Validates values against desc (defaults fill the rest).  Errors name the plugin,
 * the parameter and the allowed values. */
llmlab_status llmlab_params_create(llmlab_params **out, const llmlab_plugin_desc *desc,
                                   const llmlab_param_value *values, int n, llmlab_err *err);
void llmlab_params_free(llmlab_params *p);

/* Parses a value written as text ("8", "0.5", "true", "greedy") into values[i]
 * form (kind guessed from the text; the spec decides if it fits). */
void llmlab_param_value_from_text(llmlab_param_value *v, const char *key, const char *text);

/* Checks a descriptor's own declarations (names, types, defaults within range). */
llmlab_status llmlab_params_check_specs(const llmlab_plugin_desc *desc, llmlab_err *err);

/* Formats the value of parameter i as text into buf. */
void llmlab_params_format(const llmlab_params *p, int i, char *buf, size_t cap);

/* Host-table accessors (abort-free: an undeclared name returns 0 / NULL and logs). */
int64_t llmlab_params_int(const llmlab_params *p, const char *name);
double llmlab_params_float(const llmlab_params *p, const char *name);
int llmlab_params_bool(const llmlab_params *p, const char *name);
const char *llmlab_params_string(const llmlab_params *p, const char *name);

const char *llmlab_plugin_kind_name(llmlab_plugin_kind k); /* "decoding", ... or NULL */
const char *llmlab_param_type_name(llmlab_param_type t);

#endif
