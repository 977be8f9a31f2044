/* calib_quant.c - group-wise codes and the plumbing the calibrated quant plugins
 * share (calib_quant.h). */
#include "calib_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/dtype.h"
#include "plugins/plugin_util.h"

/* ---- group-wise codes ------------------------------------------------------------------ */

/* Why directed rounding (as llmlab_qmat_pack does): a scale rounded up and a min
 * rounded down keep the group's extreme weights inside the code range. */
static float f16_up(float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    if (fabsf(llmlab_f16_to_f32(h)) < fabsf(v)) h++; /* sign-magnitude: +1 is the next magnitude */
    return llmlab_f16_to_f32(h);
}

static float f16_down(float v) {
    uint16_t h = llmlab_f32_to_f16(v);
    if (llmlab_f16_to_f32(h) > v) h = v > 0 ? (uint16_t)(h - 1) : (uint16_t)(h + 1);
    return llmlab_f16_to_f32(h);
}

llmlab_qgroup llmlab_qgroup_fit(const float *w, int n, int bits, int symmetric, float clip) {
    float lo = w[0], hi = w[0];
    for (int i = 1; i < n; i++) {
        if (w[i] < lo) lo = w[i];
        if (w[i] > hi) hi = w[i];
    }
    float amax = fmaxf(fabsf(lo), fabsf(hi)) * clip;
    llmlab_qgroup g;
    if (symmetric) {
        g.lo = -(1 << (bits - 1));
        g.hi = (1 << (bits - 1)) - 1;
        g.min = 0.0f;
        g.scale = f16_up(amax / (float)g.hi);
    } else {
        g.lo = 0;
        g.hi = (1 << bits) - 1;
        /* Clipping (AWQ) saturates both ends at +-clip*absmax. */
        lo = fmaxf(lo, -amax);
        hi = fminf(hi, amax);
        g.min = f16_down(lo);
        g.scale = f16_up((hi - g.min) / (float)g.hi);
    }
    return g;
}

int llmlab_qgroup_code(const llmlab_qgroup *g, float w) {
    if (!(g->scale > 0.0f)) return 0; /* a constant group: code 0 stands for min (asym) or 0 (sym) */
    float c = nearbyintf((w - g->min) / g->scale);
    return c < (float)g->lo ? g->lo : c > (float)g->hi ? g->hi : (int)c;
}

void llmlab_qgroup_rtn(const float *W, int64_t rows, int64_t cols, int group, int bits, int symmetric,
                       int8_t *codes, float *scale, float *min, float *deq) {
    int64_t ng = cols / group;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const float *w = W + r * cols + g * group;
            llmlab_qgroup q = llmlab_qgroup_fit(w, group, bits, symmetric, 1.0f);
            scale[r * ng + g] = q.scale;
            min[r * ng + g] = q.min;
            for (int i = 0; i < group; i++) {
                int c = llmlab_qgroup_code(&q, w[i]);
                if (codes) codes[r * cols + g * group + i] = (int8_t)c;
                if (deq) deq[r * cols + g * group + i] = llmlab_qgroup_value(&q, c);
            }
        }
}

/* ---- plumbing ------------------------------------------------------------------------- */

llmlab_status llmlab_cq_want_calibration(const llmlab_cq_base *b, const llmlab_params *p, const char *plugin,
                                         llmlab_err *err) {
    const llmlab_host *h = b->h;
    if (h->size < offsetof(llmlab_host, calibration_inputs) + sizeof h->calibration_inputs || !h->weight_rows ||
        !h->engine_want_calibration || !h->calibration_inputs)
        return llmlab_plugin_fail(err, LLMLAB_EUNSUPPORTED, "%s needs a host with ABI 1.3 (calibration)", plugin);
    return h->engine_want_calibration(b->e, h->param_string(p, "source"), (int)h->param_int(p, "tokens"),
                                      (uint64_t)h->param_int(p, "seed"), err);
}

llmlab_status llmlab_cq_weight(const llmlab_cq_base *b, const llmlab_weight *w, const char *plugin, float **W,
                               const float **X, int64_t *n, llmlab_err *err) {
    *W = NULL;
    *X = b->h->calibration_inputs(b->e, w->name, n);
    if (!*X || *n < 1)
        return llmlab_plugin_fail(err, LLMLAB_EINVAL, "%s: no calibration inputs for %s", plugin, w->name);
    *W = malloc((size_t)w->rows * (size_t)w->cols * sizeof **W);
    if (!*W) return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "%s: out of memory for %s", plugin, w->name);
    b->h->weight_rows(w, 0, w->rows, *W);
    return LLMLAB_OK;
}

llmlab_status llmlab_cq_check_group(int group, const char *plugin, llmlab_err *err) {
    if (group == 32 || group == 64 || group == 128) return LLMLAB_OK;
    return llmlab_plugin_fail(err, LLMLAB_EINVAL, "%s: group = %d, must be 32, 64 or 128", plugin, group);
}

llmlab_status llmlab_cq_finish(llmlab_qmat *q, void **packed, double *bits, llmlab_err *err) {
    llmlab_qmat *p = malloc(sizeof *p);
    if (!p) {
        llmlab_qmat_free(q);
        return llmlab_plugin_fail(err, LLMLAB_ENOMEM, "out of memory");
    }
    *p = *q;
    *packed = p;
    *bits = llmlab_qmat_bits(p);
    return LLMLAB_OK;
}

void llmlab_cq_unpack(void *self, void *packed) {
    llmlab_qmat_free(packed);
    free(packed);
}

void llmlab_cq_matmul(void *self, const void *packed, float *y, const float *x, int M, llmlab_threadpool *pool) {
    llmlab_qmat_matmul(packed, y, x, M, pool);
}

void llmlab_cq_dequant(void *self, const void *packed, int64_t row0, int64_t n, float *out) {
    llmlab_qmat_dequant_rows(packed, row0, n, out);
}

size_t llmlab_cq_packed_bytes(void *self, const void *packed) { return llmlab_qmat_bytes(packed); }
