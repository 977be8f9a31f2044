/* bench_tokenizer.c - `llmlab bench-tokenizer`: encode and decode speed of a
 * tokenizer on a text file, single thread.
 *
 * Each repetition encodes the whole file (add_special off), then decodes the ids
 * one-shot and streamed (one push per id); figures are medians over the
 * repetitions, in MB of text per second.  Nothing here passes or fails on time.
 */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli/args.h"
#include "core/cli/commands.h"
#include "core/error.h"
#include "core/tokenizer.h"

#define BT_MAX_REPS 1000

typedef struct {
    const char *tokenizer; /* tokenizer.json or a model directory */
    const char *text;      /* the text file */
    const char *out;       /* HDF5 output or NULL */
    int reps;              /* repetitions */
} bt_args;

static void bt_usage(FILE *f) {
    fprintf(f, "usage: llmlab bench-tokenizer --tokenizer FILE|DIR -f TEXT [--reps N] [--out FILE.h5]\n"
               "  --tokenizer  a tokenizer.json, or a model directory (its tokenizer.json or the byte fallback)\n"
               "  -f TEXT      the text to encode (read as bytes)\n"
               "  --reps N     repetitions (default 5); medians are reported\n"
               "  --out FILE   also write the figures to an HDF5 file (group /bench_tokenizer)\n");
}

static int parse_bt_args(int argc, char **argv, bt_args *a) {
    const char *C = "bench-tokenizer";
    *a = (bt_args){.reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            bt_usage(stdout);
            return 1;
        }
        if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2;
        if (!strcmp(o, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(o, "-f")) a->text = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--reps")) {
            if (llmlab_arg_int(C, o, v, 1, BT_MAX_REPS, &a->reps)) return 2;
        } else {
            fprintf(stderr, "llmlab bench-tokenizer: unknown option '%s'\n", o);
            bt_usage(stderr);
            return 2;
        }
    }
    if (!a->tokenizer || !a->text) {
        fprintf(stderr, "llmlab bench-tokenizer: need --tokenizer and -f\n");
        bt_usage(stderr);
        return 2;
    }
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double s[BT_MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static llmlab_status read_text(const char *path, char **buf, size_t *len, llmlab_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return llmlab_err_set(err, LLMLAB_EIO, "%s: cannot open", path);
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap);
    for (size_t k; b && (k = fread(b + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (!b) return llmlab_err_set(err, LLMLAB_ENOMEM, "%s: out of memory", path);
    *buf = b;
    *len = n;
    return LLMLAB_OK;
}

/* One repetition: encode, decode, stream; rates in MB/s of text. */
static llmlab_status bt_rep(const llmlab_tokenizer *t, const char *text, size_t len, double *enc, double *dec,
                            double *str, int *n_tok, llmlab_err *err) {
    int32_t *ids = NULL;
    char *out = NULL;
    llmlab_detok *d = NULL;
    size_t olen;
    double t0 = now_s();
    llmlab_status st = llmlab_tokenizer_encode(t, text, len, 0, &ids, n_tok, err);
    double t1 = now_s();
    if (st == LLMLAB_OK) st = llmlab_tokenizer_decode(t, ids, *n_tok, 0, &out, &olen, err);
    double t2 = now_s();
    if (st == LLMLAB_OK) st = llmlab_detok_create(&d, t, 0, err);
    for (int i = 0; st == LLMLAB_OK && i < *n_tok; i++) {
        const char *p;
        size_t k;
        st = llmlab_detok_push(d, ids[i], &p, &k, err);
    }
    if (st == LLMLAB_OK) {
        const char *p;
        size_t k;
        st = llmlab_detok_flush(d, &p, &k, err);
    }
    double t3 = now_s();
    double mb = (double)len / 1e6;
    *enc = mb / (t1 - t0);
    *dec = mb / (t2 - t1);
    *str = mb / (t3 - t2);
    llmlab_detok_free(d);
    free(out);
    free(ids);
    return st;
}

static int write_h5(const char *path, const bt_args *a, const llmlab_tokenizer *t, size_t len, int n_tok,
                    double v[3][BT_MAX_REPS]) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    const char *G = "/bench_tokenizer";
    hid_t g = H5Gcreate2(f, G, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0;
    const char *names[3] = {"encode_MB_per_s", "decode_MB_per_s", "stream_decode_MB_per_s"};
    hsize_t dims[1] = {(hsize_t)a->reps};
    for (int c = 0; c < 3 && !rc; c++) rc |= H5LTmake_dataset_double(g, names[c], 1, dims, v[c]) < 0;
    double bytes = (double)len;
    rc |= H5LTset_attribute_string(f, G, "tokenizer", a->tokenizer) < 0;
    rc |= H5LTset_attribute_string(f, G, "tokenizer_kind", llmlab_tokenizer_kind(t)) < 0;
    rc |= H5LTset_attribute_string(f, G, "text", a->text) < 0;
    rc |= H5LTset_attribute_string(f, G, "llmlab_commit", LLMLAB_GIT_COMMIT) < 0;
    rc |= H5LTset_attribute_double(f, G, "text_bytes", &bytes, 1) < 0;
    rc |= H5LTset_attribute_int(f, G, "tokens", &n_tok, 1) < 0;
    if (g >= 0) H5Gclose(g);
    rc |= H5Fclose(f) < 0;
    return rc ? -1 : 0;
}

int llmlab_cmd_bench_tokenizer(int argc, char **argv) {
    bt_args a;
    int rc = parse_bt_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0;
    static double v[3][BT_MAX_REPS];
    int n_tok = 0;
    rc = 1;
    size_t tl = strlen(a.tokenizer);
    int is_json = tl >= 5 && !strcmp(a.tokenizer + tl - 5, ".json");
    if ((is_json ? llmlab_tokenizer_load_json(&t, a.tokenizer, &err) : llmlab_tokenizer_load_dir(&t, a.tokenizer, &err)) ||
        read_text(a.text, &text, &len, &err))
        goto fail;
    fprintf(stderr, "bench-tokenizer: %s (%s), %s (%zu bytes), %d reps\n", a.tokenizer, llmlab_tokenizer_kind(t),
            a.text, len, a.reps);
    for (int r = 0; r < a.reps; r++) {
        if (bt_rep(t, text, len, &v[0][r], &v[1][r], &v[2][r], &n_tok, &err)) goto fail;
        fprintf(stderr, "  rep %d: encode %.2f MB/s, decode %.2f MB/s, streamed %.2f MB/s\n", r, v[0][r], v[1][r],
                v[2][r]);
    }
    printf("tokenizer        %s (%s, vocabulary %d)\n", a.tokenizer, llmlab_tokenizer_kind(t),
           llmlab_tokenizer_vocab_size(t));
    printf("text             %s (%zu bytes, %d tokens, %.2f bytes/token)\n", a.text, len, n_tok,
           n_tok ? (double)len / n_tok : 0.0);
    printf("encode           %.2f MB/s (median of %d)\n", median(v[0], a.reps), a.reps);
    printf("decode           %.2f MB/s\n", median(v[1], a.reps));
    printf("streamed decode  %.2f MB/s\n", median(v[2], a.reps));
    if (a.out && write_h5(a.out, &a, t, len, n_tok, v)) {
        llmlab_err_set(&err, LLMLAB_EIO, "cannot write %s", a.out);
        goto fail;
    }
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab bench-tokenizer: %s\n", err.msg);
end:
    free(text);
    llmlab_tokenizer_free(t);
    return rc;
}
