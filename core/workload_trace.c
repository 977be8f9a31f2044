/* workload_trace.c - reading request traces (CSV, JSONL) and length files. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "workload_internal.h"

/* ---- numbers ---------------------------------------------------------------------- */

/* Whole-string parse of a finite double / an int in [lo, hi]; 0 on success. */
static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    return end == s || *end || errno || !isfinite(*out) ? -1 : 0;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static void strip_eol(char *line, ssize_t *len) {
    while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r')) line[--*len] = 0;
}

static int blank(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    return *s == 0;
}

/* ---- length files ------------------------------------------------------------------ */

llmlab_status llmlab_read_lengths(const char *path, int **values, int *n, llmlab_err *err) {
    *values = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, n_cap = 0;
    llmlab_status st = LLMLAB_OK;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        strip_eol(line, &len);
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        if (blank(line)) continue;
        int v;
        if (parse_int(line, 0, INT_MAX, &v)) {
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s:%d: '%s' is not a non-negative integer", path, lineno, line);
            break;
        }
        if (*n == n_cap) {
            n_cap = n_cap ? 2 * n_cap : 256;
            int *grown = realloc(*values, (size_t)n_cap * sizeof **values);
            if (!grown) {
                st = llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
                break;
            }
            *values = grown;
        }
        (*values)[(*n)++] = v;
    }
    free(line);
    fclose(f);
    if (!st && *n == 0) st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no lengths in the file", path);
    if (st) {
        free(*values);
        *values = NULL;
        *n = 0;
    }
    return st;
}

/* ---- traces ------------------------------------------------------------------------ */

/* The columns a trace may have, with the names each accepts. */
enum { COL_ARRIVAL, COL_PROMPT_LEN, COL_PROMPT, COL_OUTPUT, COL_PRIORITY, COL_CANCEL, N_COLS };
static const char *const col_names[N_COLS][4] = {
    {"arrival_s", "arrival", "timestamp", NULL},   {"prompt_len", "input_len", "prompt_tokens", NULL},
    {"prompt", "text", NULL, NULL},                {"output_len", "max_new", "output_tokens", NULL},
    {"priority", NULL, NULL, NULL},                {"cancel_after_s", NULL, NULL, NULL},
};

static int col_of(const char *name) {
    for (int c = 0; c < N_COLS; c++)
        for (int k = 0; k < 4 && col_names[c][k]; k++)
            if (!strcmp(name, col_names[c][k])) return c;
    return -1;
}

/* Sets one field of a row from its text (CSV) form. */
static llmlab_status set_field(llmlab_trace_row *r, int col, const char *v, const char *where, llmlab_err *err) {
    int bad = 0;
    switch (col) {
    case COL_ARRIVAL: bad = parse_double(v, &r->arrival_s) || r->arrival_s < 0; break;
    case COL_PROMPT_LEN: bad = parse_int(v, 1, INT_MAX, &r->prompt_len); break;
    case COL_OUTPUT: bad = parse_int(v, 0, INT_MAX, &r->output_len); break;
    case COL_PRIORITY: bad = parse_int(v, INT_MIN, INT_MAX, &r->priority); r->has_priority = 1; break;
    case COL_CANCEL: bad = parse_double(v, &r->cancel_after_s) || r->cancel_after_s < 0; r->has_cancel = 1; break;
    case COL_PROMPT:
        if (!*v) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: empty prompt", where);
        if (!(r->text = strdup(v))) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        break;
    default: break;
    }
    if (bad)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: %s '%s' is not a valid %s", where, col_names[col][0], v,
                              col == COL_ARRIVAL || col == COL_CANCEL ? "time in seconds (>= 0)"
                              : col == COL_PRIORITY                  ? "integer"
                              : col == COL_PROMPT_LEN                ? "length (>= 1)"
                                                                      : "length (>= 0)");
    return LLMLAB_OK;
}

/* Splits a CSV line in place: fields[*n] point into line.  Quoted fields may hold
 * commas and "" for a quote; -1 on an unterminated quote. */
static int csv_split(char *line, char **fields, int cap, int *n) {
    *n = 0;
    char *p = line;
    for (;;) {
        if (*n == cap) return -1;
        char *out = p;
        fields[(*n)++] = out;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"' && p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            while (*p && *p != ',') p++; /* text after the closing quote is ignored */
        } else {
            while (*p && *p != ',') *out++ = *p++;
        }
        int more = *p == ',';
        if (more) p++;
        *out = 0;
        if (!more) return 0;
    }
}

typedef struct {
    const char *path;
    llmlab_trace_row *rows;
    int n, cap, limit;
    int cols[N_COLS];  /* CSV: field index of each column, -1 if absent */
} trace_reader;

static llmlab_status push_row(trace_reader *t, llmlab_trace_row *r, const char *where, llmlab_err *err) {
    if (r->prompt_len < 0 && !r->text && !r->ids)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no prompt (give prompt_len, or prompt as text)", where);
    if (r->output_len < 0) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no output_len", where);
    if (r->arrival_s < 0) return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: no arrival time", where);
    if (t->n > 0 && r->arrival_s < t->rows[t->n - 1].arrival_s)
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: arrival %g is earlier than the previous request's %g "
                              "(sort the trace by arrival)", where, r->arrival_s, t->rows[t->n - 1].arrival_s);
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        llmlab_trace_row *g = realloc(t->rows, (size_t)cap * sizeof *g);
        if (!g) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        t->rows = g;
        t->cap = cap;
    }
    t->rows[t->n++] = *r;
    memset(r, 0, sizeof *r);
    return LLMLAB_OK;
}

static void row_clear(llmlab_trace_row *r) {
    free(r->text);
    free(r->ids);
    *r = (llmlab_trace_row){.arrival_s = -1, .prompt_len = -1, .output_len = -1};
}

static llmlab_status csv_header(trace_reader *t, char *line, llmlab_err *err) {
    char *fields[64];
    int n;
    if (csv_split(line, fields, 64, &n))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s:1: bad CSV header (unterminated quote or > 64 columns)",
                              t->path);
    for (int c = 0; c < N_COLS; c++) t->cols[c] = -1;
    for (int k = 0; k < n; k++) {
        int c = col_of(fields[k]);
        if (c >= 0) t->cols[c] = k;
    }
    if (t->cols[COL_ARRIVAL] < 0 || t->cols[COL_OUTPUT] < 0 || (t->cols[COL_PROMPT_LEN] < 0 && t->cols[COL_PROMPT] < 0))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s:1: the header needs columns arrival_s, output_len and "
                              "prompt_len or prompt", t->path);
    return LLMLAB_OK;
}

static llmlab_status csv_line(trace_reader *t, char *line, const char *where, llmlab_err *err) {
    char *fields[64];
    int n;
    if (csv_split(line, fields, 64, &n))
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: unterminated quote or more than 64 fields", where);
    llmlab_trace_row r;
    memset(&r, 0, sizeof r);
    row_clear(&r);
    llmlab_status st = LLMLAB_OK;
    for (int c = 0; c < N_COLS && !st; c++) {
        int k = t->cols[c];
        if (k < 0) continue;
        if (k >= n) {
            st = llmlab_err_set(err, LLMLAB_EFORMAT, "%s: missing field %s", where, col_names[c][0]);
            break;
        }
        /* Empty is "absent" for the optional columns, and for a prompt text or
         * length when the file has both columns (a row gives one of them). */
        int optional = c == COL_PRIORITY || c == COL_CANCEL ||
                       (c == COL_PROMPT && t->cols[COL_PROMPT_LEN] >= 0) ||
                       (c == COL_PROMPT_LEN && t->cols[COL_PROMPT] >= 0);
        if (*fields[k] || !optional) st = set_field(&r, c, fields[k], where, err);
    }
    if (!st && r.text) r.prompt_len = -1;
    if (!st) st = push_row(t, &r, where, err);
    row_clear(&r);
    return st;
}

/* A JSON number member as a field (absent: untouched). */
static llmlab_status json_num(const cJSON *o, int col, llmlab_trace_row *r, const char *where, llmlab_err *err) {
    for (int k = 0; k < 4 && col_names[col][k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, col_names[col][k]);
        if (!v) continue;
        if (!cJSON_IsNumber(v))
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: \"%s\" must be a number", where, col_names[col][k]);
        char buf[64];
        double d = v->valuedouble;
        if (col == COL_ARRIVAL || col == COL_CANCEL) snprintf(buf, sizeof buf, "%.17g", d);
        else if (d != floor(d) || fabs(d) > 2e9) snprintf(buf, sizeof buf, "%g", d);
        else snprintf(buf, sizeof buf, "%.0f", d);
        return set_field(r, col, buf, where, err);
    }
    return LLMLAB_OK;
}

static llmlab_status json_prompt(const cJSON *o, llmlab_trace_row *r, const char *where, llmlab_err *err) {
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, col_names[COL_PROMPT][k]);
        if (!v) continue;
        if (cJSON_IsString(v)) return set_field(r, COL_PROMPT, v->valuestring, where, err);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: \"%s\" must be a text or a non-empty array of token ids",
                                  where, col_names[COL_PROMPT][k]);
        r->n_ids = cJSON_GetArraySize(v);
        if (!(r->ids = malloc((size_t)r->n_ids * sizeof *r->ids)))
            return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
                e->valuedouble > INT32_MAX)
                return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: prompt token %d is not a token id", where, i);
            r->ids[i] = (int32_t)e->valuedouble;
        }
        return LLMLAB_OK;
    }
    return LLMLAB_OK;
}

static llmlab_status jsonl_line(trace_reader *t, const char *line, size_t len, const char *where, llmlab_err *err) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return llmlab_err_set(err, LLMLAB_EFORMAT, "%s: not a JSON object", where);
    }
    llmlab_trace_row r;
    memset(&r, 0, sizeof r);
    row_clear(&r);
    static const int num_cols[] = {COL_ARRIVAL, COL_PROMPT_LEN, COL_OUTPUT, COL_PRIORITY, COL_CANCEL};
    llmlab_status st = LLMLAB_OK;
    for (size_t k = 0; k < sizeof num_cols / sizeof num_cols[0] && !st; k++)
        st = json_num(o, num_cols[k], &r, where, err);
    if (!st) st = json_prompt(o, &r, where, err);
    if (!st && (r.text || r.ids)) r.prompt_len = -1;
    if (!st) st = push_row(t, &r, where, err);
    row_clear(&r);
    cJSON_Delete(o);
    return st;
}

/* JSONL by extension, else by a first non-blank character '{'. */
static int is_jsonl(const char *path, FILE *f) {
    size_t n = strlen(path);
    if (n >= 6 && !strcmp(path + n - 6, ".jsonl")) return 1;
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return 1;
    if (n >= 4 && !strcmp(path + n - 4, ".csv")) return 0;
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r') {}
    rewind(f);
    return c == '{';
}

llmlab_status llmlab_trace_read(const char *path, int limit, llmlab_trace_row **rows, int *n, llmlab_err *err) {
    *rows = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "trace %s: cannot open (%s)", path, strerror(errno));
    trace_reader t = {.path = path, .limit = limit};
    int jsonl = is_jsonl(path, f), lineno = 0, header = !jsonl;
    char *line = NULL, where[512];
    size_t cap = 0;
    ssize_t len;
    llmlab_status st = LLMLAB_OK;
    while (!st && (limit <= 0 || t.n < limit) && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        strip_eol(line, &len);
        if (blank(line)) continue;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (header) {
            st = csv_header(&t, line, err);
            header = 0;
        } else {
            st = jsonl ? jsonl_line(&t, line, (size_t)len, where, err) : csv_line(&t, line, where, err);
        }
    }
    free(line);
    fclose(f);
    if (!st && t.n == 0) st = llmlab_err_set(err, LLMLAB_EFORMAT, "trace %s: no requests in the file", path);
    if (st) {
        llmlab_trace_free(t.rows, t.n);
        return st;
    }
    *rows = t.rows;
    *n = t.n;
    return LLMLAB_OK;
}

void llmlab_trace_free(llmlab_trace_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].text);
        free(rows[i].ids);
    }
    free(rows);
}
