/* quant_metrics.c - per-matrix weight error, bits and resident bytes of a
 * quantized engine (quant_metrics.h). */
#include "quant_metrics.h"
#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "engine_internal.h"
#include "kernels/cpu/kernels.h"

enum { CHUNK_ROWS = 64 }; /* rows compared at once: bounds the scratch memory */

void llmlab_weight_report_free(llmlab_weight_report *w) {
    if (!w) return;
    free(w->name);
    free(w->layer);
    free(w->rows);
    free(w->cols);
    free(w->bits);
    free(w->rmse);
    free(w->rel_rmse);
    free(w->max_abs);
    free(w->ref_rms);
    free(w->bytes);
    free(w);
}

static llmlab_weight_report *report_alloc(int n) {
    llmlab_weight_report *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    size_t N = (size_t)n;
    w->n_mats = n;
    w->name = calloc(N, sizeof *w->name);
    w->layer = calloc(N, sizeof *w->layer);
    w->rows = calloc(N, sizeof *w->rows);
    w->cols = calloc(N, sizeof *w->cols);
    w->bits = calloc(N, sizeof *w->bits);
    w->rmse = calloc(N, sizeof *w->rmse);
    w->rel_rmse = calloc(N, sizeof *w->rel_rmse);
    w->max_abs = calloc(N, sizeof *w->max_abs);
    w->ref_rms = calloc(N, sizeof *w->ref_rms);
    w->bytes = calloc(N, sizeof *w->bytes);
    if (!w->name || !w->layer || !w->rows || !w->cols || !w->bits || !w->rmse || !w->rel_rmse || !w->max_abs ||
        !w->ref_rms || !w->bytes) {
        llmlab_weight_report_free(w);
        return NULL;
    }
    return w;
}

/* Sums of squared error and squared weight of matrix i, and its largest error.
 * ref/deq: [CHUNK_ROWS][cols] scratch. */
static void compare_matrix(const llmlab_engine *e, const llmlab_quant_ops *q, int i, float *ref, float *deq,
                           double *se, double *sw, double *max_abs) {
    const llmlab_mat *w = llmlab_model_matrix(e->m, i);
    *se = *sw = *max_abs = 0;
    for (int64_t r0 = 0; r0 < w->rows; r0 += CHUNK_ROWS) {
        int64_t n = w->rows - r0 < CHUNK_ROWS ? w->rows - r0 : CHUNK_ROWS;
        for (int64_t r = 0; r < n; r++) llmlab_cpu_row_to_f32(ref + r * w->cols, w->data, w->dtype, r0 + r, (int)w->cols);
        q->dequant(e->quant.self, e->packed[i], r0, n, deq);
        for (int64_t k = 0; k < n * w->cols; k++) {
            double d = (double)deq[k] - (double)ref[k];
            *se += d * d;
            *sw += (double)ref[k] * (double)ref[k];
            if (fabs(d) > *max_abs) *max_abs = fabs(d);
        }
    }
}

/* Resident bytes of matrix i: what the plugin keeps; 0 when it borrows the
 * loaded tensor (no packed_bytes, or it says 0). */
static int64_t packed_bytes(const llmlab_engine *e, const llmlab_quant_ops *q, int i) {
    if (q->size >= offsetof(llmlab_quant_ops, packed_bytes) + sizeof q->packed_bytes && q->packed_bytes)
        return (int64_t)q->packed_bytes(e->quant.self, e->packed[i]);
    return 0;
}

llmlab_status llmlab_weight_report_create(const llmlab_engine *e, llmlab_weight_report **out, llmlab_err *err) {
    *out = NULL;
    const llmlab_quant_ops *q = e->quant.d->ops;
    int has_dequant = q->size >= offsetof(llmlab_quant_ops, dequant) + sizeof q->dequant && q->dequant;
    /* `none` multiplies the weights as loaded: its error is 0 by definition, and
     * skipping the pass keeps recording an unquantized run cheap. */
    int exact = !strcmp(e->quant.d->name, "none");
    llmlab_weight_report *w = report_alloc(e->n_mats);
    int64_t max_cols = 0;
    for (int i = 0; i < e->n_mats; i++)
        if (llmlab_model_matrix(e->m, i)->cols > max_cols) max_cols = llmlab_model_matrix(e->m, i)->cols;
    float *ref = malloc((size_t)(CHUNK_ROWS * max_cols) * sizeof(float));
    float *deq = malloc((size_t)(CHUNK_ROWS * max_cols) * sizeof(float));
    if (!w || !ref || !deq) {
        llmlab_weight_report_free(w);
        free(ref);
        free(deq);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "weight report: out of memory");
    }
    double se_all = 0, sw_all = 0, bits_all = 0, n_all = 0;
    const llmlab_mat *emb = &e->m->embed;
    w->resident_bytes = (int64_t)((size_t)emb->rows * llmlab_dtype_row_bytes(emb->dtype, emb->cols));
    for (int i = 0; i < e->n_mats; i++) {
        const llmlab_mat *m = llmlab_model_matrix(e->m, i);
        double elems = (double)m->rows * (double)m->cols, se = 0, sw = 0, mx = 0;
        llmlab_engine_matrix_name(e->m, i, w->name[i], sizeof w->name[i]);
        w->layer[i] = i / LLMLAB_MATS_PER_LAYER;
        w->rows[i] = m->rows;
        w->cols[i] = m->cols;
        w->bits[i] = e->mat_bits[i];
        int64_t own = packed_bytes(e, q, i);
        w->bytes[i] = own ? own : (int64_t)((size_t)m->rows * llmlab_dtype_row_bytes(m->dtype, m->cols));
        /* a borrowed tied LM head is the embedding, whose bytes are counted already */
        if (own || m->data != emb->data) w->resident_bytes += w->bytes[i];
        if (has_dequant && !exact) compare_matrix(e, q, i, ref, deq, &se, &sw, &mx);
        w->rmse[i] = sqrt(se / elems);
        w->rel_rmse[i] = sw > 0 ? sqrt(se / sw) : 0;
        w->max_abs[i] = mx;
        w->ref_rms[i] = sqrt(sw / elems);
        se_all += se, sw_all += sw, bits_all += e->mat_bits[i] * elems, n_all += elems;
    }
    free(ref);
    free(deq);
    w->has_error = has_dequant || exact;
    w->bits_per_weight = n_all > 0 ? bits_all / n_all : 0;
    w->rmse_all = n_all > 0 ? sqrt(se_all / n_all) : 0;
    w->rel_rmse_all = sw_all > 0 ? sqrt(se_all / sw_all) : 0;
    *out = w;
    return LLMLAB_OK;
}

llmlab_status llmlab_weight_report_record(llmlab_run *run, const llmlab_weight_report *w, llmlab_err *err) {
    llmlab_table *t = llmlab_run_table(run, "weights", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = LLMLAB_OK;
    const char *const dcols[] = {"bits", "rmse", "rel_rmse", "max_abs"};
    const double *const dvals[] = {w->bits, w->rmse, w->rel_rmse, w->max_abs};
    for (int i = 0; i < w->n_mats && !st; i++) {
        st = llmlab_table_append_str(t, "name", w->name[i], err);
        if (!st) st = llmlab_table_append_int(t, "layer", w->layer[i], err);
        if (!st) st = llmlab_table_append_int(t, "rows", w->rows[i], err);
        if (!st) st = llmlab_table_append_int(t, "cols", w->cols[i], err);
        if (!st) st = llmlab_table_append_int(t, "bytes", w->bytes[i], err);
        for (int c = 0; c < 4 && !st; c++) st = llmlab_table_append_double(t, dcols[c], dvals[c][i], err);
    }
    if (!st) st = llmlab_table_column(t, "bytes", LLMLAB_COL_INT, "bytes", err);
    if (!st) st = llmlab_run_attr_double(run, "weight_totals/bits_per_weight", w->bits_per_weight, err);
    if (!st) st = llmlab_run_attr_int(run, "weight_totals/resident_bytes", w->resident_bytes, err);
    if (!st) st = llmlab_run_attr_double(run, "weight_totals/rmse", w->rmse_all, err);
    if (!st) st = llmlab_run_attr_double(run, "weight_totals/rel_rmse", w->rel_rmse_all, err);
    if (!st) st = llmlab_run_attr_int(run, "weight_totals/error_measured", w->has_error, err);
    return st;
}
