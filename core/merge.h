/* merge.h - `llmlab merge`: per-task results files of a sweep into one file.
 *
 * The merged file is an ordinary results file (schema version 1) whose /runs holds
 * every task's run (copied with H5Ocopy, named task-00007 as in the task files,
 * failed tasks included: they have attributes but no tables) plus a root table
 * /sweep with one row per task 0..N-1: task, each grid parameter, repeat, status
 * ("ok", "failed" or "missing"), error, and the columns of the run's summary
 * table.  Root attributes sweep_name and sweep_grid (the JSON of sweep.h) describe
 * the sweep.  docs/results-format.md specifies the table; docs/sweeps.md shows use.
 *
 * Refused, with a message naming the files: a file of another schema version, a
 * run that is not a sweep task, task files of different sweeps, and a task index
 * present twice.  The output is written to a temporary and renamed into place.
 */
#ifndef LLMLAB_MERGE_H
#define LLMLAB_MERGE_H

#include <stdint.h>

#include "llmlab/llmlab.h"

typedef struct {
    int64_t tasks;    /* N of the sweep */
    int64_t ok;       /* tasks with status ok */
    int64_t failed;   /* tasks with status failed */
    int64_t missing;  /* tasks without a file */
} llmlab_merge_stats;

/* Merges inputs (task files, merged files, or directories: their task-*.h5 files)
 * into out (replaced if it exists; never read as an input). */
llmlab_status llmlab_merge(const char *out, const char *const *inputs, int n_inputs, llmlab_merge_stats *stats,
                           llmlab_err *err);

#endif
