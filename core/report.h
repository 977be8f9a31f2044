/* report.h - `llmlab report`: summary metrics of a results file grouped by sweep
 * parameters, as a table (text, Markdown or CSV) and as gnuplot plots.
 *
 * Rows: a merged sweep file (with a /sweep table, merge.h) gives one row per task
 * with status ok, its parameters and summary metrics; any other results file gives
 * one row per run, with the run's summary columns, its name (column `run`) and, for
 * --by keys that are not columns, the run attribute of that name (e.g.
 * settings/attention/window).  Groups: the distinct values of the --by keys
 * (default: the sweep's parameters, or `run`), sorted (numbers numerically).  Per
 * group and metric: the mean over the group's rows, with n and, when some group has
 * more than one row, min and max.  NaN values are left out of the statistics.
 * docs/sweeps.md describes the output and the plots.
 */
#ifndef LLMLAB_REPORT_H
#define LLMLAB_REPORT_H

#include <stdio.h>

#include "llmlab/llmlab.h"

typedef enum {
    LLMLAB_REPORT_TEXT = 0, /* aligned columns for a terminal */
    LLMLAB_REPORT_MD = 1,   /* a Markdown (GitHub) table */
    LLMLAB_REPORT_CSV = 2   /* RFC 4180 CSV with a header row */
} llmlab_report_format;

typedef struct {
    const char *path;             /* the results file */
    const char *by;               /* comma-separated grouping keys, or NULL for the default */
    const char *metrics;          /* comma-separated metric columns, or NULL for all numeric ones */
    llmlab_report_format format;
    const char *plot_dir;         /* write plots (PNG + SVG + data + gnuplot script) here, or NULL */
} llmlab_report_opts;

/* Prints the table to out and draws the plots.  EINVAL names an unknown --by key
 * or metric (listing the known ones); EUNSUPPORTED when plots are asked for and
 * gnuplot cannot be run. */
llmlab_status llmlab_report(const llmlab_report_opts *o, FILE *out, llmlab_err *err);

#endif
