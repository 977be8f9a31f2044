/* engine_calib.c - the host table's calibration functions (ABI 1.3): a quant
 * plugin asks in create(), the engine runs the calibration stream through the
 * unquantized model before pack() and frees the inputs once every weight is
 * packed (calibrate.h). */
#include <stdio.h>
#include <stdlib.h>

#include "calibrate.h"
#include "engine_internal.h"
#include "error.h"
#include "generate.h"

/* A second request replaces the first (the plugin's latest word counts). */
llmlab_status llmlab_engine_want_calibration(llmlab_engine *e, const char *source, int n_tokens, uint64_t seed,
                                             llmlab_err *err) {
    llmlab_calib *c;
    llmlab_status st = llmlab_calib_create(&c, source, n_tokens, seed, err);
    if (st) return st;
    llmlab_calib_free(e->calib);
    e->calib = c;
    return LLMLAB_OK;
}

const float *llmlab_engine_calibration_inputs(const llmlab_engine *e, const char *name, int64_t *rows) {
    return e->calib ? llmlab_calib_inputs(e->calib, name, rows) : NULL;
}

llmlab_status llmlab_engine_calibrate(llmlab_engine *e, llmlab_err *err) {
    if (!e->calib) return LLMLAB_OK;
    double t0 = llmlab_now();
    llmlab_status st = llmlab_calib_run(e->calib, e->m, llmlab_threadpool_size(llmlab_ctx_pool(e->ctx)), err);
    if (st) return llmlab_err_prefix(err, "quant plugin '%s'", e->quant.d ? e->quant.d->name : "?");
    int n = 0, n_seqs = 0;
    llmlab_calib_tokens(e->calib, &n, NULL, &n_seqs);
    if (getenv("LLMLAB_DEBUG"))
        fprintf(stderr, "llmlab [calibration] %d tokens in %d sequences, %.2f s\n", n, n_seqs, llmlab_now() - t0);
    return LLMLAB_OK;
}

void llmlab_engine_calibration_done(llmlab_engine *e) {
    llmlab_calib_free(e->calib);
    e->calib = NULL;
}
