/* workload_internal.h - trace and length-file readers shared by workload.c and
 * workload_trace.c.  Not part of any public API. */
#ifndef LLMLAB_WORKLOAD_INTERNAL_H
#define LLMLAB_WORKLOAD_INTERNAL_H

#include <stdint.h>

#include "llmlab/llmlab.h"

/* One request of a trace file. */
typedef struct {
    double arrival_s;
    int prompt_len;         /* -1 when the prompt is given as text or ids */
    int output_len;
    int priority, has_priority;
    double cancel_after_s;
    int has_cancel;
    char *text;             /* malloc'd prompt text, or NULL */
    int32_t *ids;           /* [n_ids] malloc'd prompt token ids, or NULL */
    int n_ids;
} llmlab_trace_row;

/* Reads up to limit rows (0 = all) of a CSV (header line, RFC 4180 quoting within
 * a line) or JSONL trace.  Columns / keys: arrival_s | arrival | timestamp;
 * prompt_len | input_len | prompt_tokens, or prompt | text (JSONL: a string or an
 * array of token ids); output_len | max_new | output_tokens; optional priority and
 * cancel_after_s.  Arrival times must not decrease.  Errors name file:line. */
llmlab_status llmlab_trace_read(const char *path, int limit, llmlab_trace_row **rows, int *n, llmlab_err *err);
void llmlab_trace_free(llmlab_trace_row *rows, int n);

/* Reads the non-negative integers of a file, one per line ('#' starts a comment,
 * blank lines are skipped); at least one.  Errors name file:line. */
llmlab_status llmlab_read_lengths(const char *path, int **values, int *n, llmlab_err *err);

#endif
