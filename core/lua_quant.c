/* lua_quant.c - e:weights(): what the engine's quant plugin did to the weights
 * (core/quant_metrics.h, docs/quantization.md). */
#include <math.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_internal.h"
#include "quant_metrics.h"

/* One matrix as a Lua table {name, layer, rows, cols, bits, bytes, rmse, rel_rmse, max_abs}. */
static void push_matrix(lua_State *L, const llmlab_weight_report *w, int i) {
    lua_createtable(L, 0, 9);
    lua_pushstring(L, w->name[i]);
    lua_setfield(L, -2, "name");
    llmlab_lua_setint(L, "layer", w->layer[i]);
    llmlab_lua_setint(L, "rows", w->rows[i]);
    llmlab_lua_setint(L, "cols", w->cols[i]);
    llmlab_lua_setnum(L, "bits", w->bits[i]);
    llmlab_lua_setint(L, "bytes", w->bytes[i]);
    llmlab_lua_setnum(L, "rmse", w->rmse[i]);
    llmlab_lua_setnum(L, "rel_rmse", w->rel_rmse[i]);
    llmlab_lua_setnum(L, "max_abs", w->max_abs[i]);
}

/* e:weights() -> {bits_per_weight, resident_bytes, rmse, rel_rmse, error_measured,
 *                 matrices = {...}, layers = {{layer, rmse, rel_rmse}, ...}} */
int llmlab_lua_engine_weights(lua_State *L) {
    llmlab_lua_engine *u = luaL_checkudata(L, 1, "llmlab.engine");
    llmlab_weight_report *w = NULL;
    llmlab_err err = {0};
    if (llmlab_weight_report_create(u->e, &w, &err)) return llmlab_lua_fail(L, &err);
    lua_createtable(L, 0, 7);
    llmlab_lua_setnum(L, "bits_per_weight", w->bits_per_weight);
    llmlab_lua_setint(L, "resident_bytes", w->resident_bytes);
    llmlab_lua_setnum(L, "rmse", w->rmse_all);
    llmlab_lua_setnum(L, "rel_rmse", w->rel_rmse_all);
    lua_pushboolean(L, w->has_error);
    lua_setfield(L, -2, "error_measured");
    lua_createtable(L, w->n_mats, 0);
    for (int i = 0; i < w->n_mats; i++) {
        push_matrix(L, w, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "matrices");
    /* per layer (the LM head is its own last entry): element-weighted error */
    lua_newtable(L);
    int n_layers = 0;
    for (int i = 0; i < w->n_mats;) {
        double se = 0, sw = 0, elems = 0;
        int layer = w->layer[i];
        for (; i < w->n_mats && w->layer[i] == layer; i++) {
            double n = (double)w->rows[i] * (double)w->cols[i];
            se += w->rmse[i] * w->rmse[i] * n;
            sw += w->ref_rms[i] * w->ref_rms[i] * n;
            elems += n;
        }
        lua_createtable(L, 0, 3);
        llmlab_lua_setint(L, "layer", layer);
        llmlab_lua_setnum(L, "rmse", elems > 0 ? sqrt(se / elems) : 0);
        llmlab_lua_setnum(L, "rel_rmse", sw > 0 ? sqrt(se / sw) : 0);
        lua_rawseti(L, -2, ++n_layers);
    }
    lua_setfield(L, -2, "layers");
    llmlab_weight_report_free(w);
    return 1;
}
