/* args.h - strict parsing of numeric command-line values. */
#ifndef LLMLAB_CLI_ARGS_H
#define LLMLAB_CLI_ARGS_H

#include <stdint.h>

/* Each returns 0 and stores the value, or prints "llmlab CMD: bad value for OPT: 'S'"
 * to stderr and returns -1.  The whole string must be consumed and in range. */
int llmlab_arg_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int llmlab_arg_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int llmlab_arg_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                     float *out);
/* Returns argv[*i + 1] and advances *i, or prints "OPT needs a value" and returns NULL. */
const char *llmlab_arg_value(const char *cmd, int argc, char **argv, int *i);

#endif
