/* report_internal.h - the row table and groups shared by report.c (loading, grouping,
 * printing) and report_plot.c (gnuplot). */
#ifndef LLMLAB_REPORT_INTERNAL_H
#define LLMLAB_REPORT_INTERNAL_H

#include <stddef.h>

#include "report.h"

/* One column of the rows. */
typedef struct {
    char *name;
    int is_str;   /* 1: str[] holds the values; 0: num[] does (NaN = missing) */
    double *num;  /* [n_rows] */
    char **str;   /* [n_rows] */
} llmlab_rcol;

typedef struct {
    const char *path;     /* the file */
    llmlab_rcol *cols;    /* [n_cols] */
    int n_cols;
    size_t n_rows;
    char **run;           /* [n_rows] the run behind each row (in /runs) */
    char **params;        /* [n_params] default grouping keys */
    int n_params;
    int *metrics;         /* [n_metrics] column indices of the metrics reported */
    int n_metrics;
    int *by;              /* [n_by] column indices of the grouping keys */
    int n_by;
} llmlab_rtable;

/* One group: the rows sharing the values of the --by keys. */
typedef struct {
    size_t *rows;   /* [n] row indices */
    size_t n;
} llmlab_rgroup;

/* A cell as text: numbers with %g (integers exactly), strings as they are. */
void llmlab_report_cell(const llmlab_rcol *c, size_t row, char *buf, size_t cap);
/* The group's label "k=2 window=64" (by keys and values). */
void llmlab_report_group_label(const llmlab_rtable *t, const llmlab_rgroup *g, int first_key, int n_keys, char *buf,
                               size_t cap);
/* Mean of column c over the group's rows (NaN when none is a number). */
double llmlab_report_mean(const llmlab_rcol *c, const llmlab_rgroup *g);

/* Draws the plots into dir (report_plot.c). */
llmlab_status llmlab_report_plots(const llmlab_rtable *t, const llmlab_rgroup *groups, size_t n_groups, const char *dir,
                                  llmlab_err *err);

#endif
