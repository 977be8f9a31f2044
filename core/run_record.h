/* run_record.h - turning an engine run into a results record (schema v1):
 * every setting as attributes, and the requests / steps / tokens / summary tables. */
#ifndef LLMLAB_RUN_RECORD_H
#define LLMLAB_RUN_RECORD_H

#include "engine.h"
#include "results.h"

typedef struct {
    const char *script_path;  /* NULL when not run from a script */
    const char *script_text;
    const char *backend;      /* "cpu" */
    int device;
    int threads;
    uint64_t seed;
    const char *start_time;   /* ISO 8601 UTC */
    const char *end_time;
} llmlab_record_info;

/* Fills run with the engine's settings and the result's tables. */
llmlab_status llmlab_record_run(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                const llmlab_record_info *info, llmlab_err *err);

#endif
