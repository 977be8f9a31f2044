/* cmd_tokenize.c - `llmlab tokenize`: text to token ids and back, for checking a
 * tokenizer against another implementation or counting a prompt's tokens.
 *
 *   llmlab tokenize (-m MODEL_DIR | --tokenizer FILE) (-p TEXT | -f FILE)
 *                   [--special] [--pieces | --count]
 *   llmlab tokenize (-m MODEL_DIR | --tokenizer FILE) --decode 1,2,3 [--skip-special]
 *
 * FILE is a tokenizer.json or a GGUF file (told apart by the "GGUF" magic, not
 * the extension).  stdout carries only the result.  Usage errors exit 2, load
 * and encode errors exit 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/error.h"
#include "core/tokenizer.h"

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab tokenize (-m MODEL_DIR | --tokenizer FILE) (-p TEXT | -f FILE)\n"
            "                       [--special] [--pieces | --count]\n"
            "       llmlab tokenize (-m MODEL_DIR | --tokenizer FILE) --decode 1,2,3 [--skip-special]\n"
            "  -m DIR          model directory (its tokenizer.json, else the byte-level fallback)\n"
            "  --tokenizer F   a tokenizer.json or a .gguf file (told apart by content)\n"
            "  -p TEXT         text to encode;  -f FILE  encode a file's bytes\n"
            "  --special       add the special tokens the tokenizer adds (e.g. BOS)\n"
            "  --pieces        one \"id<TAB>piece\" line per token instead of the ids\n"
            "  --count         only the number of tokens\n"
            "  --decode L      print the text of comma-separated ids (then a newline)\n"
            "  --skip-special  with --decode: drop special tokens\n");
}

typedef struct {
    const char *model_dir, *file, *text, *text_file, *decode;
    int special, pieces, count, skip_special;
} tokenize_args;

/* 0 ok, 2 usage error, -1 --help printed. */
static int parse_args(int argc, char **argv, tokenize_args *a) {
    const char *C = "tokenize";
    *a = (tokenize_args){0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = NULL;
        int needs = !strcmp(o, "-m") || !strcmp(o, "--tokenizer") || !strcmp(o, "-p") || !strcmp(o, "-f") ||
                    !strcmp(o, "--decode");
        if (needs && !(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            tokenize_usage(stdout);
            return -1;
        } else if (!strcmp(o, "-m")) a->model_dir = v;
        else if (!strcmp(o, "--tokenizer")) a->file = v;
        else if (!strcmp(o, "-p")) a->text = v;
        else if (!strcmp(o, "-f")) a->text_file = v;
        else if (!strcmp(o, "--decode")) a->decode = v;
        else if (!strcmp(o, "--special")) a->special = 1;
        else if (!strcmp(o, "--pieces")) a->pieces = 1;
        else if (!strcmp(o, "--count")) a->count = 1;
        else if (!strcmp(o, "--skip-special")) a->skip_special = 1;
        else {
            fprintf(stderr, "llmlab tokenize: unknown option '%s'\n", o);
            tokenize_usage(stderr);
            return 2;
        }
    }
    const char *why = !a->model_dir == !a->file                        ? "give one of -m and --tokenizer"
                      : (!!a->text + !!a->text_file + !!a->decode) != 1 ? "give one of -p, -f and --decode"
                      : a->pieces && a->count                          ? "--pieces and --count exclude each other"
                      : a->decode && (a->pieces || a->count || a->special)
                          ? "--decode takes no --pieces, --count or --special"
                          : NULL;
    if (why) {
        fprintf(stderr, "llmlab tokenize: %s\n", why);
        tokenize_usage(stderr);
        return 2;
    }
    return 0;
}

/* A tokenizer.json or GGUF file, by its first four bytes. */
static llmlab_status load_file(llmlab_tokenizer **t, const char *path, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: %s", path, strerror(errno));
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n == 4 && !memcmp(magic, "GGUF", 4)) return llmlab_tokenizer_load_gguf(t, path, err);
    return llmlab_tokenizer_load_json(t, path, err);
}

/* The whole file; *len bytes (NULs kept). */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        char *g = realloc(b, cap *= 2);
        if (!g) free(b);
        b = g;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

/* "1,2,3" -> ids; the count, or -1 (message printed). */
static int parse_ids(const char *s, int32_t **out) {
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (size_t i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',') || *p == ' ' || *p == '+') {
            fprintf(stderr, "llmlab tokenize: --decode: '%s' is not a comma-separated list of token ids\n", s);
            free(ids);
            return -1;
        }
        ids[i] = (int32_t)v;
        p = end + (*end == ',');
    }
    *out = ids;
    return (int)n;
}

static int run_decode(const llmlab_tokenizer *t, const tokenize_args *a) {
    int32_t *ids = NULL;
    int n = parse_ids(a->decode, &ids);
    if (n < 0) return 2;
    char *text = NULL;
    size_t len = 0;
    llmlab_err err = {0};
    llmlab_status s = llmlab_tokenizer_decode(t, ids, n, a->skip_special, &text, &len, &err);
    free(ids);
    if (s) {
        fprintf(stderr, "llmlab tokenize: %s\n", err.msg);
        return 1;
    }
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    return 0;
}

static void print_ids(const llmlab_tokenizer *t, const tokenize_args *a, const int32_t *ids, int n) {
    if (a->count) {
        printf("%d\n", n);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (a->pieces) {
            const char *p = llmlab_tokenizer_piece(t, ids[i]);
            printf("%d\t%s\n", (int)ids[i], p ? p : "");
        } else {
            printf("%s%d", i ? " " : "", (int)ids[i]);
        }
    }
    if (!a->pieces) putchar('\n');
}

static int run_encode(const llmlab_tokenizer *t, const tokenize_args *a) {
    size_t len = a->text ? strlen(a->text) : 0;
    char *owned = NULL;
    if (a->text_file && !(owned = read_all(a->text_file, &len))) {
        fprintf(stderr, "llmlab tokenize: cannot read %s: %s\n", a->text_file, strerror(errno));
        return 1;
    }
    int32_t *ids = NULL;
    int n = 0;
    llmlab_err err = {0};
    llmlab_status s = llmlab_tokenizer_encode(t, owned ? owned : a->text, len, a->special, &ids, &n, &err);
    free(owned);
    if (s) {
        fprintf(stderr, "llmlab tokenize: %s\n", err.msg);
        return 1;
    }
    print_ids(t, a, ids, n);
    free(ids);
    return 0;
}

int llmlab_cmd_tokenize(int argc, char **argv) {
    tokenize_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    llmlab_tokenizer *t = NULL;
    llmlab_err err = {0};
    llmlab_status s = a.file ? load_file(&t, a.file, &err) : llmlab_tokenizer_load_dir(&t, a.model_dir, &err);
    if (s) {
        fprintf(stderr, "llmlab tokenize: %s\n", err.msg);
        return 1;
    }
    rc = a.decode ? run_decode(t, &a) : run_encode(t, &a);
    llmlab_tokenizer_free(t);
    return rc;
}
