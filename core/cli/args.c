/* args.c - numeric option values that reject trailing junk and out-of-range input. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int llmlab_arg_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "llmlab %s: bad value for %s: '%s' (an integer in %ld..%ld)\n", cmd, opt, s,
                lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int llmlab_arg_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') {
        fprintf(stderr, "llmlab %s: bad value for %s: '%s' (a non-negative integer)\n", cmd, opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int llmlab_arg_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "llmlab %s: bad value for %s: '%s' (a number in %g..%g)\n", cmd, opt, s, lo,
                hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}

const char *llmlab_arg_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "llmlab %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}
