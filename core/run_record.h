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

/* Fills run with the engine's settings and the result's tables.  e == NULL (a
 * simulated run, sim.h) leaves the model, plugin and weight records out. */
llmlab_status llmlab_record_run(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                const llmlab_record_info *info, llmlab_err *err);

/* The same with the `serving` table's options (percentiles, SLOs; serve_metrics.h);
 * serve == NULL: the defaults, with the engine's KV pool for utilization. */
struct llmlab_serve_opts;
llmlab_status llmlab_record_run_serving(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                        const llmlab_record_info *info, const struct llmlab_serve_opts *serve,
                                        llmlab_err *err);

#endif
