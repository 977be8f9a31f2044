/* settings.c - site settings: a table of keys, validation, inih parsing with line
 * numbers, file lookup, environment, and writing back as INI.
 *
 * Debian's inih is built without INI_HANDLER_LINENO, so the file is fed to
 * ini_parse_stream through our own reader: it counts lines (the handler runs while
 * the line just read is being parsed), strips indentation (so indented keys work
 * and inih's multi-line continuation never triggers), and rejects lines longer
 * than inih's buffer instead of letting inih split them.
 */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "error.h"

/* ---- the key table ------------------------------------------------------- */

typedef enum { KIND_STR, KIND_INT, KIND_BOOL, KIND_BACKEND } key_kind;

/* Checks a string value; returns NULL when fine, else what was expected. */
typedef const char *(*str_check)(const char *v);

typedef struct {
    const char *section; /* "llmlab" or "slurm" */
    const char *name;
    key_kind kind;
    size_t off;          /* offset of the field in llmlab_settings */
    int min, max;        /* KIND_INT range */
    str_check check;     /* KIND_STR validator */
    const char *deflt;   /* KIND_STR default (a static string) */
} key_def;

static const char *check_any(const char *v);
static const char *check_nonempty(const char *v);
static const char *check_name(const char *v);
static const char *check_time(const char *v);
static const char *check_mem(const char *v);

#define F(field) offsetof(llmlab_settings, field)
static const key_def KEYS[] = {
    {"llmlab", "backend", KIND_BACKEND, F(backend), 0, 0, NULL, NULL},
    {"llmlab", "device", KIND_INT, F(device), 0, 1023, NULL, NULL},
    {"llmlab", "threads", KIND_INT, F(threads), 0, 4096, NULL, NULL},
    {"llmlab", "plugin_path", KIND_STR, F(plugin_path), 0, 0, check_any, ""},
    {"llmlab", "results_dir", KIND_STR, F(results_dir), 0, 0, check_nonempty, "results"},
    {"llmlab", "kv_block_size", KIND_INT, F(kv_block_size), 1, 65536, NULL, NULL},
    {"llmlab", "deterministic", KIND_BOOL, F(deterministic), 0, 0, NULL, NULL},
    {"slurm", "partition", KIND_STR, F(slurm.partition), 0, 0, check_name, ""},
    {"slurm", "account", KIND_STR, F(slurm.account), 0, 0, check_name, ""},
    {"slurm", "time", KIND_STR, F(slurm.time), 0, 0, check_time, "01:00:00"},
    {"slurm", "gpus", KIND_INT, F(slurm.gpus), 0, 1024, NULL, NULL},
    {"slurm", "cpus_per_task", KIND_INT, F(slurm.cpus_per_task), 1, 4096, NULL, NULL},
    {"slurm", "mem", KIND_STR, F(slurm.mem), 0, 0, check_mem, ""},
    {"slurm", "max_parallel", KIND_INT, F(slurm.max_parallel), 1, 100000, NULL, NULL},
    {"slurm", "qos", KIND_STR, F(slurm.qos), 0, 0, check_name, ""},
    {"slurm", "extra", KIND_STR, F(slurm.extra), 0, 0, check_any, ""},
};
#undef F
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static const char *const BACKENDS[] = {"cpu", "cuda"};

static const char **str_field(llmlab_settings *s, const key_def *k) {
    return (const char **)(void *)((char *)s + k->off);
}
static const char *const *cstr_field(const llmlab_settings *s, const key_def *k) {
    return (const char *const *)(const void *)((const char *)s + k->off);
}
static int *int_field(llmlab_settings *s, const key_def *k) {
    return (int *)(void *)((char *)s + k->off);
}
static unsigned key_bit(const key_def *k) { return 1u << (unsigned)(k - KEYS); }

static const key_def *find_key(const char *section, const char *name) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].name, name)) return &KEYS[i];
    return NULL;
}

static int known_section(const char *section) {
    return !strcmp(section, "llmlab") || !strcmp(section, "slurm");
}

/* "threads" for [llmlab] keys, "slurm.time" for the others. */
static void full_name(const key_def *k, char *buf, size_t cap) {
    if (!strcmp(k->section, "llmlab")) snprintf(buf, cap, "%s", k->name);
    else snprintf(buf, cap, "%s.%s", k->section, k->name);
}

/* Comma-separated key names of one section (dotted, all sections when NULL). */
static void key_list(const char *section, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS && n < cap; i++) {
        if (section && strcmp(KEYS[i].section, section)) continue;
        char name[64];
        if (section) snprintf(name, sizeof name, "%s", KEYS[i].name);
        else full_name(&KEYS[i], name, sizeof name);
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    }
}

/* ---- defaults and ownership ---------------------------------------------- */

void llmlab_settings_defaults(llmlab_settings *s) {
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < N_KEYS; i++)
        if (KEYS[i].kind == KIND_STR) *str_field(s, &KEYS[i]) = KEYS[i].deflt;
    s->backend = BACKENDS[0];
    s->device = 0;
    s->threads = 0;
    s->kv_block_size = 16;
    s->deterministic = false;
    s->slurm.gpus = 0;
    s->slurm.cpus_per_task = 1;
    s->slurm.max_parallel = 1;
}

void llmlab_settings_free(llmlab_settings *s) {
    if (!s) return;
    for (size_t i = 0; i < N_KEYS; i++)
        if (KEYS[i].kind == KIND_STR && (s->owned_ & key_bit(&KEYS[i])))
            free((char *)(uintptr_t)*str_field(s, &KEYS[i]));
    llmlab_settings_defaults(s);
}

/* Replaces a string field by a copy of v (s unchanged on ENOMEM). */
static llmlab_status store_str(llmlab_settings *s, const key_def *k, const char *v,
                               llmlab_err *err) {
    char *copy = strdup(v);
    if (!copy) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory storing %s", k->name);
    const char **field = str_field(s, k);
    if (s->owned_ & key_bit(k)) free((char *)(uintptr_t)*field);
    *field = copy;
    s->owned_ |= key_bit(k);
    return LLMLAB_OK;
}

/* ---- value checks --------------------------------------------------------- */

/* Strings must survive a round trip through an INI line: no control characters
 * and no ';' after whitespace (inih reads that as an inline comment). */
static const char *check_any(const char *v) {
    for (const char *p = v; *p; p++) {
        if (iscntrl((unsigned char)*p)) return "text without control characters";
        if (*p == ';' && p > v && isspace((unsigned char)p[-1]))
            return "text without ' ;' (a ';' after a space starts an INI comment)";
    }
    return NULL;
}

static const char *check_nonempty(const char *v) {
    return *v ? check_any(v) : "a non-empty path";
}

static const char *check_name(const char *v) {
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return "a name without spaces (or empty for the cluster default)";
    return NULL;
}

/* Reads 1-6 digits at *p; returns -1 when there are none or too many. */
static long read_num(const char **p) {
    long v = 0;
    int n = 0;
    while (isdigit((unsigned char)**p)) {
        if (++n > 6) return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return n ? v : -1;
}

/* Up to 3 ':'-separated numbers; returns the count, 0 on a syntax error. */
static int read_fields(const char *p, long f[3]) {
    int n = 0;
    for (;;) {
        if (n == 3 || (f[n] = read_num(&p)) < 0) return 0;
        n++;
        if (*p == '\0') return n;
        if (*p++ != ':') return 0;
    }
}

/* Slurm --time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, INFINITE/UNLIMITED. */
static const char *check_time(const char *v) {
    static const char *want = "a Slurm time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                              "D-HH:MM:SS, INFINITE or UNLIMITED (not zero)";
    if (!strcasecmp(v, "INFINITE") || !strcasecmp(v, "UNLIMITED")) return NULL;
    const char *p = v;
    long days = -1, f[3] = {0, 0, 0};
    if (strchr(v, '-')) {
        if ((days = read_num(&p)) < 0 || *p++ != '-') return want;
    }
    int n = read_fields(p, f);
    if (n == 0) return want;
    long h = 0, m = 0, sec = 0;
    if (days >= 0) { /* D-HH[:MM[:SS]] */
        h = f[0], m = n > 1 ? f[1] : 0, sec = n > 2 ? f[2] : 0;
        if (h > 23 || m > 59 || sec > 59) return want;
    } else if (n == 3) { /* HH:MM:SS */
        h = f[0], m = f[1], sec = f[2];
        if (m > 59 || sec > 59) return want;
    } else { /* MM[:SS] */
        m = f[0], sec = n > 1 ? f[1] : 0;
        if (sec > 59) return want;
    }
    if ((days > 0 ? days : 0) + h + m + sec == 0) return want;
    return NULL;
}

/* Slurm --mem: a number of megabytes, or with a K/M/G/T suffix ("0" = whole node). */
static const char *check_mem(const char *v) {
    static const char *want = "a Slurm memory size: digits with an optional K, M, G or T "
                              "suffix, e.g. 16G (or empty for the cluster default)";
    if (!*v) return NULL;
    size_t digits = strspn(v, "0123456789");
    if (digits == 0 || digits > 12) return want;
    const char *p = v + digits;
    if (*p && strchr("KMGTkmgt", *p)) p++;
    return *p ? want : NULL;
}

static int parse_int(const char *v, int min, int max, int *out) {
    if (!*v || !(isdigit((unsigned char)*v) || ((*v == '-' || *v == '+') && v[1]))) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || errno == ERANGE || x < min || x > max) return 0;
    *out = (int)x;
    return 1;
}

static int parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "yes", "1", "on"};
    static const char *const no[] = {"false", "no", "0", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, 1;
        if (!strcasecmp(v, no[i])) return *out = false, 1;
    }
    return 0;
}

/* ---- storing one value ---------------------------------------------------- */

static llmlab_status bad_value(const key_def *k, const char *v, const char *want,
                               llmlab_err *err) {
    char name[64];
    full_name(k, name, sizeof name);
    return llmlab_err_set(err, LLMLAB_EINVAL, "%s: bad value '%.200s' (expected %s)", name, v,
                          want);
}

/* Validates v (already trimmed) for key k and stores it; s unchanged on error. */
static llmlab_status apply(llmlab_settings *s, const key_def *k, const char *v,
                           llmlab_err *err) {
    char want[96];
    switch (k->kind) {
    case KIND_INT:
        snprintf(want, sizeof want, "an integer from %d to %d", k->min, k->max);
        return parse_int(v, k->min, k->max, int_field(s, k)) ? LLMLAB_OK
                                                              : bad_value(k, v, want, err);
    case KIND_BOOL: {
        bool *b = (bool *)(void *)((char *)s + k->off);
        return parse_bool(v, b) ? LLMLAB_OK
                                : bad_value(k, v, "one of true, false, yes, no, 1, 0, on, off",
                                            err);
    }
    case KIND_BACKEND:
        for (size_t i = 0; i < sizeof BACKENDS / sizeof BACKENDS[0]; i++)
            if (!strcmp(v, BACKENDS[i])) return s->backend = BACKENDS[i], LLMLAB_OK;
        return bad_value(k, v, "one of cpu, cuda", err);
    case KIND_STR: {
        const char *why = k->check(v);
        return why ? bad_value(k, v, why, err) : store_str(s, k, v, err);
    }
    }
    return llmlab_err_set(err, LLMLAB_EINVAL, "internal: bad key kind");
}

/* ---- llmlab_settings_set -------------------------------------------------- */

/* Splits "slurm.time" / "threads" / "llmlab.threads" and finds the key. */
static const key_def *lookup_dotted(const char *key) {
    const char *dot = strchr(key, '.');
    if (!dot) return find_key("llmlab", key);
    char section[32];
    size_t n = (size_t)(dot - key);
    if (n >= sizeof section) return NULL;
    memcpy(section, key, n);
    section[n] = '\0';
    return find_key(section, dot + 1);
}

llmlab_status llmlab_settings_set(llmlab_settings *s, const char *key, const char *value,
                                  llmlab_err *err) {
    if (!s || !key || !value) return llmlab_err_set(err, LLMLAB_EINVAL, "settings: NULL argument");
    const key_def *k = lookup_dotted(key);
    if (!k) {
        char known[512];
        key_list(NULL, known, sizeof known);
        return llmlab_err_set(err, LLMLAB_EINVAL, "unknown setting '%.100s' (known: %s)", key,
                              known);
    }
    /* Trim like the INI reader does, so both sources accept the same text. */
    while (isspace((unsigned char)*value)) value++;
    size_t n = strlen(value);
    while (n && isspace((unsigned char)value[n - 1])) n--;
    char *v = strndup(value, n);
    if (!v) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory setting %s", key);
    llmlab_status st = apply(s, k, v, err);
    free(v);
    return st;
}

/* ---- reading a file ------------------------------------------------------- */

typedef struct {
    llmlab_settings *s;
    FILE *f;
    const char *path;
    char *line;        /* getline buffer */
    size_t line_cap;
    int lineno;        /* lines read so far = the line inih is parsing */
    int err_line;      /* line of the first error we found, 0 = none */
    llmlab_err err;    /* its message, already "path:LINE: ..." */
} load_ctx;

/* Records the first error (by line) as "path:LINE: msg". */
static void ctx_fail(load_ctx *c, int line, llmlab_status code, const char *msg) {
    if (c->err_line && c->err_line <= line) return;
    c->err_line = line;
    llmlab_err_set(&c->err, code, "%s:%d: %s", c->path, line, msg);
}

/* A line "[name]..." naming a section we do not know; inih takes the text up to the
 * first ']' verbatim (a line without ']' is inih's syntax error, not ours). */
static void check_section_line(load_ctx *c, const char *p) {
    const char *end = strchr(p + 1, ']');
    if (*p != '[' || !end) return;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
    if (known_section(name)) return;
    char msg[256];
    snprintf(msg, sizeof msg, "unknown section [%s] (known: [llmlab], [slurm])", name);
    ctx_fail(c, c->lineno, LLMLAB_EINVAL, msg);
}

/* fgets-like reader for ini_parse_stream: one whole line per call, indentation
 * removed; stops (NULL) at EOF, on a read error, or at a line inih cannot hold. */
static char *ctx_reader(char *str, int num, void *stream) {
    load_ctx *c = stream;
    ssize_t n = getline(&c->line, &c->line_cap, c->f);
    if (n < 0) return NULL;
    c->lineno++;
    if ((size_t)n != strlen(c->line)) {
        ctx_fail(c, c->lineno, LLMLAB_EINVAL, "NUL byte in line");
        return NULL;
    }
    const char *p = c->line;
    while (*p == ' ' || *p == '\t') p++;
    size_t len = strlen(p);
    if (len && p[len - 1] == '\n') len--;
    if (len + 2 > (size_t)num) { /* keep one spare byte: inih's buffer is num bytes */
        char msg[96];
        snprintf(msg, sizeof msg, "line too long (at most %d characters)", num - 2);
        ctx_fail(c, c->lineno, LLMLAB_EINVAL, msg);
        return NULL;
    }
    memcpy(str, p, len);
    str[len] = '\0';
    check_section_line(c, p);
    return str;
}

/* inih handler: validates and stores one "name = value" of section. */
static int ctx_handler(void *user, const char *section, const char *name, const char *value) {
    load_ctx *c = user;
    char msg[600];
    if (!*section) {
        snprintf(msg, sizeof msg, "key '%.100s' is outside any section (put it under [llmlab])",
                 name);
        ctx_fail(c, c->lineno, LLMLAB_EINVAL, msg);
        return 0;
    }
    if (!known_section(section)) { /* normally already reported at the section line */
        snprintf(msg, sizeof msg, "unknown section [%.60s] (known: [llmlab], [slurm])", section);
        ctx_fail(c, c->lineno, LLMLAB_EINVAL, msg);
        return 0;
    }
    const key_def *k = find_key(section, name);
    if (!k) {
        char known[256];
        key_list(section, known, sizeof known);
        snprintf(msg, sizeof msg, "unknown key '%.100s' in [%s] (known: %s)", name, section,
                 known);
        ctx_fail(c, c->lineno, LLMLAB_EINVAL, msg);
        return 0;
    }
    llmlab_err e = {0};
    if (apply(c->s, k, value, &e) == LLMLAB_OK) return 1;
    ctx_fail(c, c->lineno, e.code, e.msg);
    return 0;
}

/* Copies line `want` of path (indentation kept, newline dropped) into buf. */
static void fetch_line(const char *path, int want, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t lcap = 0;
    for (int i = 1; getline(&line, &lcap, f) >= 0; i++) {
        if (i < want) continue;
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(buf, cap, "%s", line);
        break;
    }
    free(line);
    fclose(f);
}

static llmlab_status syntax_error(const char *path, int line, llmlab_err *err) {
    char text[120];
    fetch_line(path, line, text, sizeof text);
    return llmlab_err_set(err, LLMLAB_EINVAL,
                          "%s:%d: syntax error: expected '[section]', 'key = value' or a "
                          "comment, got '%s'",
                          path, line, text);
}

llmlab_status llmlab_settings_load_file(llmlab_settings *s, const char *path, llmlab_err *err) {
    if (!s || !path) return llmlab_err_set(err, LLMLAB_EINVAL, "settings: NULL argument");
    load_ctx c = {.s = s, .path = path};
    c.f = fopen(path, "r");
    if (!c.f)
        return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot open settings file: %s", path,
                              strerror(errno));
    int rc = ini_parse_stream(ctx_reader, &c, ctx_handler, &c);
    int read_failed = ferror(c.f);
    int read_errno = errno;
    free(c.line);
    fclose(c.f);
    if (read_failed)
        return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot read settings file: %s", path,
                              strerror(read_errno));
    if (rc == -2) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    if (rc > 0 && (!c.err_line || rc < c.err_line)) return syntax_error(path, rc, err);
    if (c.err_line) return llmlab_err_set(err, c.err.code, "%s", c.err.msg);
    if (rc != 0) return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot parse (inih %d)", path, rc);
    return LLMLAB_OK;
}

/* ---- lookup ----------------------------------------------------------------- */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The per-user file, following the XDG base-directory rules; 0 when neither
 * XDG_CONFIG_HOME (absolute) nor HOME is usable. */
static int user_config_path(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/') n = snprintf(buf, cap, "%s/llmlab/" LLMLAB_SETTINGS_FILE, xdg);
    else if (home && *home) n = snprintf(buf, cap, "%s/.config/llmlab/" LLMLAB_SETTINGS_FILE, home);
    else return 0;
    return n > 0 && (size_t)n < cap;
}

/* The path to load, "" when none; EINVAL when a path does not fit. */
static llmlab_status pick_path(const char *explicit_path, char *buf, size_t cap,
                               llmlab_err *err) {
    buf[0] = '\0';
    if (explicit_path && *explicit_path) {
        if (strlen(explicit_path) >= cap)
            return llmlab_err_set(err, LLMLAB_EINVAL, "settings path too long: %.100s...",
                                  explicit_path);
        snprintf(buf, cap, "%s", explicit_path);
        return LLMLAB_OK; /* must exist: load_file reports it when it does not */
    }
    if (file_exists("./" LLMLAB_SETTINGS_FILE)) {
        snprintf(buf, cap, "./" LLMLAB_SETTINGS_FILE);
        return LLMLAB_OK;
    }
    if (user_config_path(buf, cap) && file_exists(buf)) return LLMLAB_OK;
    buf[0] = '\0';
    return LLMLAB_OK;
}

llmlab_status llmlab_settings_find(llmlab_settings *s, const char *explicit_path,
                                   char *used_path, size_t cap, llmlab_err *err) {
    if (!s) return llmlab_err_set(err, LLMLAB_EINVAL, "settings: NULL argument");
    char path[4096];
    llmlab_status st = pick_path(explicit_path, path, sizeof path, err);
    if (st != LLMLAB_OK) return st;
    if (used_path) {
        if (cap <= strlen(path))
            return llmlab_err_set(err, LLMLAB_EINVAL,
                                  "settings path '%.200s' does not fit in %zu bytes", path, cap);
        snprintf(used_path, cap, "%s", path);
    }
    return path[0] ? llmlab_settings_load_file(s, path, err) : LLMLAB_OK;
}

/* ---- environment ------------------------------------------------------------ */

llmlab_status llmlab_settings_apply_env(llmlab_settings *s, llmlab_err *err) {
    if (!s) return llmlab_err_set(err, LLMLAB_EINVAL, "settings: NULL argument");
    const char *env = getenv(LLMLAB_SETTINGS_ENV_PLUGIN_PATH);
    if (!env || !*env) return LLMLAB_OK;
    const char *cur = s->plugin_path;
    size_t n = strlen(cur) + strlen(env) + 2;
    char *joined = malloc(n);
    if (!joined) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory joining plugin_path");
    snprintf(joined, n, "%s%s%s", cur, *cur ? ":" : "", env);
    llmlab_status st = llmlab_settings_set(s, "plugin_path", joined, err);
    free(joined);
    if (st != LLMLAB_OK) llmlab_err_prefix(err, "%s", LLMLAB_SETTINGS_ENV_PLUGIN_PATH);
    return st;
}

/* ---- writing ------------------------------------------------------------------ */

/* The text form of key k's current value (static or in buf). */
static const char *value_text(const llmlab_settings *s, const key_def *k, char *buf,
                              size_t cap) {
    const void *field = (const char *)s + k->off;
    switch (k->kind) {
    case KIND_INT: snprintf(buf, cap, "%d", *(const int *)field); return buf;
    case KIND_BOOL: return *(const bool *)field ? "true" : "false";
    case KIND_BACKEND:
    case KIND_STR: return *cstr_field(s, k);
    }
    return "";
}

static llmlab_status write_key(const llmlab_settings *s, const key_def *k, FILE *f,
                               llmlab_err *err) {
    char num[32];
    const char *v = value_text(s, k, num, sizeof num);
    size_t len = strlen(k->name) + 3 + strlen(v);
    if (len + 2 > INI_MAX_LINE) {
        char name[64];
        full_name(k, name, sizeof name);
        return llmlab_err_set(err, LLMLAB_EINVAL,
                              "%s: value too long for an INI line (%zu characters, at most %d)",
                              name, strlen(v), INI_MAX_LINE - 2 - (int)strlen(k->name) - 3);
    }
    fprintf(f, "%s =%s%s\n", k->name, *v ? " " : "", v);
    return LLMLAB_OK;
}

llmlab_status llmlab_settings_to_ini(const llmlab_settings *s, FILE *f, llmlab_err *err) {
    if (!s || !f) return llmlab_err_set(err, LLMLAB_EINVAL, "settings: NULL argument");
    fprintf(f, "; llmlab settings (effective values)\n");
    const char *section = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(section, KEYS[i].section)) {
            section = KEYS[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
        }
        llmlab_status st = write_key(s, &KEYS[i], f, err);
        if (st != LLMLAB_OK) return st;
    }
    if (fflush(f) != 0 || ferror(f))
        return llmlab_err_set(err, LLMLAB_EIO, "writing settings: %s", strerror(errno));
    return LLMLAB_OK;
}
