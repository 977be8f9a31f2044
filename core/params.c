/* params.c - checking parameter values against declared specs. */
#include "params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

const char *llmlab_plugin_kind_name(llmlab_plugin_kind k) {
    switch (k) {
    case LLMLAB_PLUGIN_DECODING: return "decoding";
    case LLMLAB_PLUGIN_ATTENTION: return "attention";
    case LLMLAB_PLUGIN_QUANT: return "quant";
    case LLMLAB_PLUGIN_SCHED: return "sched";
    }
    return NULL;
}

const char *llmlab_param_type_name(llmlab_param_type t) {
    switch (t) {
    case LLMLAB_PARAM_INT: return "int";
    case LLMLAB_PARAM_FLOAT: return "float";
    case LLMLAB_PARAM_BOOL: return "bool";
    case LLMLAB_PARAM_STRING: return "string";
    case LLMLAB_PARAM_ENUM: return "enum";
    }
    return "?";
}

static int valid_ident(const char *s) {
    if (!s || !(islower((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

static void choices_text(const llmlab_param_spec *sp, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; sp->choices && sp->choices[i]; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? ", " : "", sp->choices[i]);
}

static int has_range(const llmlab_param_spec *sp) { return sp->min <= sp->max; }

void llmlab_param_value_from_text(llmlab_param_value *v, const char *key, const char *text) {
    char *end;
    memset(v, 0, sizeof *v);
    v->key = key;
    v->s = text;
    v->kind = LLMLAB_VAL_STRING;
    errno = 0;
    long long i = strtoll(text, &end, 10);
    if (*text && !*end && !errno) {
        v->kind = LLMLAB_VAL_INT;
        v->i = i;
        v->f = (double)i;
        return;
    }
    double f = strtod(text, &end);
    if (*text && !*end && !errno) {
        v->kind = LLMLAB_VAL_FLOAT;
        v->f = f;
        return;
    }
    if (!strcmp(text, "true") || !strcmp(text, "false")) {
        v->kind = LLMLAB_VAL_BOOL;
        v->b = text[0] == 't';
    }
}

/* Stores value v into slot per spec sp, or explains why it does not fit. */
static llmlab_status assign(llmlab_param_slot *slot, const llmlab_param_spec *sp,
                            const llmlab_param_value *v, const char *who, llmlab_err *err) {
    slot->type = sp->type;
    switch (sp->type) {
    case LLMLAB_PARAM_INT:
        if (v->kind != LLMLAB_VAL_INT)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' must be an integer%s",
                                  who, sp->name, v->kind == LLMLAB_VAL_FLOAT ? " (got a fraction)" : "");
        if (has_range(sp) && ((double)v->i < sp->min || (double)v->i > sp->max))
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' = %lld is outside [%g, %g]",
                                  who, sp->name, (long long)v->i, sp->min, sp->max);
        slot->i = v->i;
        return LLMLAB_OK;
    case LLMLAB_PARAM_FLOAT:
        if (v->kind != LLMLAB_VAL_INT && v->kind != LLMLAB_VAL_FLOAT)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' must be a number", who, sp->name);
        if (!isfinite(v->f) || (has_range(sp) && (v->f < sp->min || v->f > sp->max)))
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' = %g is outside [%g, %g]",
                                  who, sp->name, v->f, sp->min, sp->max);
        slot->f = v->f;
        return LLMLAB_OK;
    case LLMLAB_PARAM_BOOL:
        if (v->kind != LLMLAB_VAL_BOOL)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' must be true or false",
                                  who, sp->name);
        slot->b = v->b;
        return LLMLAB_OK;
    case LLMLAB_PARAM_STRING:
    case LLMLAB_PARAM_ENUM: {
        char text[64];
        const char *s = v->s;
        if (v->kind == LLMLAB_VAL_INT || v->kind == LLMLAB_VAL_FLOAT || v->kind == LLMLAB_VAL_BOOL) {
            if (v->s) s = v->s;
            else if (v->kind == LLMLAB_VAL_INT) snprintf(text, sizeof text, "%lld", (long long)v->i), s = text;
            else if (v->kind == LLMLAB_VAL_FLOAT) snprintf(text, sizeof text, "%.17g", v->f), s = text;
            else s = v->b ? "true" : "false";
        }
        if (!s) return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' must be a string", who, sp->name);
        if (sp->type == LLMLAB_PARAM_ENUM) {
            int ok = 0;
            for (int i = 0; sp->choices && sp->choices[i]; i++) ok |= !strcmp(sp->choices[i], s);
            if (!ok) {
                char allowed[512];
                choices_text(sp, allowed, sizeof allowed);
                return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' = '%s' is not one of: %s",
                                      who, sp->name, s, allowed);
            }
        }
        free(slot->s);
        slot->s = strdup(s);
        return slot->s ? LLMLAB_OK : llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    }
    return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' has an unknown type", who, sp->name);
}

static void plugin_label(const llmlab_plugin_desc *d, char *buf, size_t cap) {
    const char *k = llmlab_plugin_kind_name(d->kind);
    snprintf(buf, cap, "%s plugin '%s'", k ? k : "?", d->name ? d->name : "?");
}

llmlab_status llmlab_params_check_specs(const llmlab_plugin_desc *d, llmlab_err *err) {
    char who[160];
    plugin_label(d, who, sizeof who);
    if (d->n_params < 0 || (d->n_params > 0 && !d->params))
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: bad parameter table", who);
    for (int i = 0; i < d->n_params; i++) {
        const llmlab_param_spec *sp = &d->params[i];
        if (!valid_ident(sp->name))
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter %d has an invalid name", who, i);
        for (int j = 0; j < i; j++)
            if (!strcmp(d->params[j].name, sp->name))
                return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' declared twice", who, sp->name);
        if (sp->type < LLMLAB_PARAM_INT || sp->type > LLMLAB_PARAM_ENUM)
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' has an unknown type", who, sp->name);
        if (sp->type == LLMLAB_PARAM_ENUM && (!sp->choices || !sp->choices[0]))
            return llmlab_err_set(err, LLMLAB_EINVAL, "%s: enum parameter '%s' has no choices", who, sp->name);
        if (sp->default_value) {
            llmlab_param_value v;
            llmlab_param_slot slot = {0};
            llmlab_param_value_from_text(&v, sp->name, sp->default_value);
            llmlab_status st = assign(&slot, sp, &v, who, err);
            free(slot.s);
            if (st) return llmlab_err_prefix(err, "default value");
        }
    }
    return LLMLAB_OK;
}

void llmlab_params_free(llmlab_params *p) {
    if (!p) return;
    if (p->v)
        for (int i = 0; i < p->desc->n_params; i++) free(p->v[i].s);
    free(p->v);
    free(p);
}

static void known_names(const llmlab_plugin_desc *d, char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < d->n_params; i++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? ", " : "", d->params[i].name);
    if (!d->n_params) snprintf(buf, cap, "none");
}

llmlab_status llmlab_params_create(llmlab_params **out, const llmlab_plugin_desc *d,
                                   const llmlab_param_value *values, int n, llmlab_err *err) {
    *out = NULL;
    char who[160];
    plugin_label(d, who, sizeof who);
    llmlab_params *p = calloc(1, sizeof *p);
    if (!p || !(p->v = calloc((size_t)(d->n_params ? d->n_params : 1), sizeof *p->v))) {
        free(p);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    }
    p->desc = d;
    uint8_t given[256] = {0}; /* given[i]: parameter i was set by the caller */
    if (d->n_params > 256) {
        llmlab_params_free(p);
        return llmlab_err_set(err, LLMLAB_EINVAL, "%s: more than 256 parameters", who);
    }
    llmlab_status st = LLMLAB_OK;
    for (int k = 0; k < n && !st; k++) {
        int idx = -1;
        for (int i = 0; i < d->n_params; i++)
            if (!strcmp(d->params[i].name, values[k].key)) idx = i;
        if (idx < 0) {
            char names[512];
            known_names(d, names, sizeof names);
            st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: unknown parameter '%s' (parameters: %s)", who,
                                values[k].key, names);
        } else {
            for (int j = 0; j < k; j++)
                if (!strcmp(values[j].key, values[k].key))
                    st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: parameter '%s' given twice", who, values[k].key);
            if (!st) st = assign(&p->v[idx], &d->params[idx], &values[k], who, err);
            given[idx] = 1;
        }
    }
    for (int i = 0; i < d->n_params && !st; i++) {
        if (given[i]) continue;
        const llmlab_param_spec *sp = &d->params[i];
        if (!sp->default_value) {
            st = llmlab_err_set(err, LLMLAB_EINVAL, "%s: missing required parameter '%s' (%s: %s)", who,
                                sp->name, llmlab_param_type_name(sp->type), sp->doc ? sp->doc : "");
            break;
        }
        llmlab_param_value v;
        llmlab_param_value_from_text(&v, sp->name, sp->default_value);
        st = assign(&p->v[i], sp, &v, who, err);
    }
    if (st) {
        llmlab_params_free(p);
        return st;
    }
    *out = p;
    return LLMLAB_OK;
}

static const llmlab_param_slot *find_slot(const llmlab_params *p, const char *name,
                                          llmlab_param_type want) {
    for (int i = 0; i < p->desc->n_params; i++)
        if (!strcmp(p->desc->params[i].name, name)) {
            llmlab_param_type t = p->v[i].type;
            int str = (t == LLMLAB_PARAM_STRING || t == LLMLAB_PARAM_ENUM);
            int want_str = (want == LLMLAB_PARAM_STRING || want == LLMLAB_PARAM_ENUM);
            if (t == want || (str && want_str)) return &p->v[i];
            if (t == LLMLAB_PARAM_INT && want == LLMLAB_PARAM_FLOAT) return &p->v[i];
        }
    fprintf(stderr, "llmlab: plugin '%s' read undeclared or mistyped parameter '%s'\n", p->desc->name, name);
    return NULL;
}

int64_t llmlab_params_int(const llmlab_params *p, const char *name) {
    const llmlab_param_slot *s = find_slot(p, name, LLMLAB_PARAM_INT);
    return s ? s->i : 0;
}

double llmlab_params_float(const llmlab_params *p, const char *name) {
    const llmlab_param_slot *s = find_slot(p, name, LLMLAB_PARAM_FLOAT);
    return s ? (s->type == LLMLAB_PARAM_INT ? (double)s->i : s->f) : 0.0;
}

int llmlab_params_bool(const llmlab_params *p, const char *name) {
    const llmlab_param_slot *s = find_slot(p, name, LLMLAB_PARAM_BOOL);
    return s ? s->b : 0;
}

const char *llmlab_params_string(const llmlab_params *p, const char *name) {
    const llmlab_param_slot *s = find_slot(p, name, LLMLAB_PARAM_STRING);
    return s ? s->s : NULL;
}

void llmlab_params_format(const llmlab_params *p, int i, char *buf, size_t cap) {
    const llmlab_param_slot *s = &p->v[i];
    switch (s->type) {
    case LLMLAB_PARAM_INT: snprintf(buf, cap, "%lld", (long long)s->i); break;
    case LLMLAB_PARAM_FLOAT: snprintf(buf, cap, "%.17g", s->f); break;
    case LLMLAB_PARAM_BOOL: snprintf(buf, cap, "%s", s->b ? "true" : "false"); break;
    default: snprintf(buf, cap, "%s", s->s ? s->s : ""); break;
    }
}
