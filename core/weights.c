/* weights.c - llmlab_weight_rows: any stored weight dtype to f32 rows. */
#include "weights.h"

#include <math.h>

#include "../kernels/cpu/quant.h"
#include "dtype.h"

static void nan_rows(float *out, int64_t n, int64_t cols) {
    for (int64_t i = 0; i < n * cols; i++) out[i] = NAN;
}

void llmlab_weight_rows(const llmlab_weight *w, int64_t row0, int64_t n, float *out) {
    if (n <= 0) return;
    if (row0 < 0 || row0 + n > w->rows || !w->data) {
        nan_rows(out, n, w->cols);
        return;
    }
    if (llmlab_dtype_block(w->dtype) > 1) {
        llmlab_qmat q;
        if (llmlab_qmat_wrap(&q, w->dtype, w->data, w->rows, w->cols, NULL) != LLMLAB_OK) {
            nan_rows(out, n, w->cols);
            return;
        }
        llmlab_qmat_dequant_rows(&q, row0, n, out);
        return;
    }
    size_t row_bytes = (size_t)w->cols * llmlab_dtype_size(w->dtype);
    llmlab_to_f32(out, (const char *)w->data + (size_t)row0 * row_bytes, w->dtype, (size_t)(n * w->cols));
}
