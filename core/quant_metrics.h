/* quant_metrics.h - what a quant plugin did to the weights (docs/quantization.md).
 *
 * For every weight matrix the engine packed (LLMLAB_MATS_PER_LAYER per layer, then
 * the LM head), the report compares the weight the packed form stands for (the
 * plugin's dequant) with the weight as loaded (f32 view of any stored dtype):
 *   rmse     = sqrt(mean (w_q - w)^2)
 *   rel_rmse = rmse / sqrt(mean w^2)
 *   max_abs  = max |w_q - w|
 * plus the plugin's bits per weight and the bytes the packed matrix keeps resident
 * (a plugin that borrows the loaded tensor, like `none`, is charged its stored
 * bytes).  Sums run in double, matrix by matrix, 64 rows at a time, so the report
 * costs one pass over the weights and a few hundred KB of memory. */
#ifndef LLMLAB_QUANT_METRICS_H
#define LLMLAB_QUANT_METRICS_H

#include <stdint.h>

#include "engine.h"
#include "results.h"

typedef struct {
    int n_mats;
    char (*name)[96];      /* [n_mats] Hugging Face weight name */
    int *layer;            /* [n_mats] layer index; n_layers for the LM head */
    int64_t *rows, *cols;  /* [n_mats] */
    double *bits;          /* [n_mats] bits per weight the plugin reported */
    double *rmse, *rel_rmse, *max_abs; /* [n_mats] (0 when the plugin has no dequant) */
    double *ref_rms;       /* [n_mats] sqrt(mean w^2) of the loaded weight (0 when not measured) */
    int64_t *bytes;        /* [n_mats] resident bytes */
    /* over all packed matrices, weighted by element count */
    double bits_per_weight, rmse_all, rel_rmse_all;
    int64_t resident_bytes; /* packed matrices + the embedding as stored */
    int has_error;         /* 1 when the plugin had a dequant and errors were measured */
} llmlab_weight_report;

/* Measures the engine's packed weights (see above). */
llmlab_status llmlab_weight_report_create(const llmlab_engine *e, llmlab_weight_report **out, llmlab_err *err);
void llmlab_weight_report_free(llmlab_weight_report *w);

/* Adds table `weights` (name, layer, rows, cols, bits, bytes, rmse, rel_rmse,
 * max_abs) and attributes weight_totals/{bits_per_weight, resident_bytes, rmse,
 * rel_rmse} to a run record (docs/results-format.md). */
llmlab_status llmlab_weight_report_record(llmlab_run *run, const llmlab_weight_report *w, llmlab_err *err);

#endif
