/* run_record.c - what a run writes into its HDF5 group (docs/results-format.md). */
#include "run_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "quant_metrics.h"
#include "serve_metrics.h"

/* settings/kv_quant: the KV-format plugin (or "none": f32) with its values, and
 * the storage format it set (kv_dtype, kv_group, ... as the cache uses them). */
static llmlab_status record_kv_quant(llmlab_run *run, const llmlab_engine *e, llmlab_err *err);

static llmlab_status record_plugins(llmlab_run *run, const llmlab_engine *e, llmlab_err *err) {
    static const llmlab_plugin_kind kinds[] = {LLMLAB_PLUGIN_DECODING, LLMLAB_PLUGIN_ATTENTION,
                                               LLMLAB_PLUGIN_QUANT, LLMLAB_PLUGIN_SCHED, LLMLAB_PLUGIN_QUANT};
    llmlab_status st = LLMLAB_OK;
    for (size_t k = 0; k < 5 && !st; k++) {
        const llmlab_plugin_desc *d = k == 4 ? llmlab_engine_kv_plugin(e) : llmlab_engine_plugin(e, kinds[k]);
        const llmlab_params *p = k == 4 ? llmlab_engine_kv_params(e) : llmlab_engine_params(e, kinds[k]);
        char key[320];
        const char *kind = k == 4 ? "kv_quant" : llmlab_plugin_kind_name(kinds[k]);
        if (k == 4 && (st = record_kv_quant(run, e, err))) break;
        if (!d) break; /* kv_quant: none chosen */
        snprintf(key, sizeof key, "settings/%s/plugin", kind);
        st = llmlab_run_attr_str(run, key, d->name, err);
        snprintf(key, sizeof key, "settings/%s/plugin_version", kind);
        if (!st) st = llmlab_run_attr_str(run, key, d->version ? d->version : "", err);
        for (int i = 0; i < d->n_params && !st; i++) {
            const llmlab_param_slot *v = &p->v[i];
            snprintf(key, sizeof key, "settings/%s/%s", kind, d->params[i].name);
            switch (d->params[i].type) {
            case LLMLAB_PARAM_INT: st = llmlab_run_attr_int(run, key, v->i, err); break;
            case LLMLAB_PARAM_FLOAT: st = llmlab_run_attr_double(run, key, v->f, err); break;
            case LLMLAB_PARAM_BOOL: st = llmlab_run_attr_int(run, key, v->b, err); break;
            default: st = llmlab_run_attr_str(run, key, v->s, err); break;
            }
        }
    }
    return st;
}

static llmlab_status record_kv_quant(llmlab_run *run, const llmlab_engine *e, llmlab_err *err) {
    llmlab_kv_format f = llmlab_engine_kv_format(e);
    const llmlab_plugin_desc *d = llmlab_engine_kv_plugin(e);
    llmlab_status st = d ? LLMLAB_OK : llmlab_run_attr_str(run, "settings/kv_quant/plugin", "none", err);
    if (!st) st = llmlab_run_attr_str(run, "settings/kv_quant/kv_dtype", llmlab_kv_dtype_name(f.dtype), err);
    if (!st) st = llmlab_run_attr_int(run, "settings/kv_quant/kv_group", f.group, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/kv_quant/kv_key_per_channel", f.key_per_channel, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/kv_quant/kv_asymmetric", f.asymmetric, err);
    if (!st) st = llmlab_run_attr_int(run, "settings/kv_quant/kv_residual", f.residual, err);
    if (!st)
        st = llmlab_run_attr_double(run, "settings/kv_quant/kv_bytes_per_token",
                                    llmlab_engine_kv_bytes_per_token(e), err);
    return st;
}

static llmlab_status record_model(llmlab_run *run, const llmlab_engine *e, llmlab_err *err) {
    const llmlab_model *m = llmlab_engine_model(e);
    char *cfg = llmlab_config_to_json(&m->cfg);
    llmlab_status st = llmlab_run_attr_str(run, "model/path", m->path, err);
    if (!st) st = llmlab_run_attr_str(run, "model/hash", m->hash, err);
    if (!st) st = llmlab_run_attr_str(run, "model/config", cfg ? cfg : "", err);
    if (!st) st = llmlab_run_attr_str(run, "model/architecture", m->cfg.arch_name, err);
    if (!st) st = llmlab_run_attr_double(run, "model/bits_per_weight", llmlab_engine_bits_per_weight(e), err);
    free(cfg);
    return st;
}

static llmlab_status record_info(llmlab_run *run, const llmlab_record_info *in, llmlab_err *err) {
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    llmlab_status st = llmlab_run_attr_str(run, "backend", in->backend ? in->backend : "cpu", err);
    if (!st) st = llmlab_run_attr_int(run, "device", in->device, err);
    if (!st) st = llmlab_run_attr_int(run, "threads", in->threads, err);
    if (!st) st = llmlab_run_attr_int(run, "seed", (int64_t)in->seed, err);
    if (!st) st = llmlab_run_attr_str(run, "host", host, err);
    if (!st) st = llmlab_run_attr_str(run, "llmlab_version", LLMLAB_VERSION_STRING, err);
    if (!st) st = llmlab_run_attr_str(run, "git_commit", LLMLAB_GIT_COMMIT, err);
    if (!st) st = llmlab_run_attr_str(run, "script_path", in->script_path ? in->script_path : "", err);
    if (!st) st = llmlab_run_attr_str(run, "script", in->script_text ? in->script_text : "", err);
    if (!st) st = llmlab_run_attr_str(run, "start_time", in->start_time ? in->start_time : "", err);
    if (!st) st = llmlab_run_attr_str(run, "end_time", in->end_time ? in->end_time : "", err);
    return st;
}

static llmlab_status ints(llmlab_table *t, const char *name, const int *v, size_t n, const char *unit, llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_INT, unit, err);
    for (size_t i = 0; i < n && !st; i++) st = llmlab_table_append_int(t, name, v[i], err);
    return st;
}

static llmlab_status doubles(llmlab_table *t, const char *name, const double *v, size_t n, const char *unit,
                             llmlab_err *err) {
    llmlab_status st = llmlab_table_column(t, name, LLMLAB_COL_DOUBLE, unit, err);
    if (!st && n) st = llmlab_table_append_doubles(t, name, v, n, err);
    return st;
}

/* Plugin counters as columns "m_<name>": data is [n_metrics][n] column-major. */
static llmlab_status metric_columns(llmlab_table *t, const llmlab_run_result *r, const double *data, size_t n,
                                    llmlab_err *err) {
    llmlab_status st = LLMLAB_OK;
    for (int m = 0; m < r->n_metrics && !st; m++) {
        char col[64];
        snprintf(col, sizeof col, "m_%s", r->metric_names[m]);
        st = doubles(t, col, data + (size_t)m * (n ? n : 1), n, "", err);
    }
    return st;
}

/* The serving loop's records (engine.h); a producer that leaves a column NULL
 * does not get it. */
static llmlab_status serving_request_columns(llmlab_table *t, const llmlab_run_result *r, size_t n,
                                             llmlab_err *err) {
    const int *cols[] = {r->status, r->preemptions, r->recomputed_tokens, r->swaps};
    const char *names[] = {"status", "preemptions", "recomputed_tokens", "swaps"};
    const char *units[] = {"", "", "tokens", ""};
    llmlab_status st = LLMLAB_OK;
    for (int c = 0; c < 4 && !st; c++)
        if (cols[c]) st = ints(t, names[c], cols[c], n, units[c], err);
    return st;
}

static llmlab_status serving_step_columns(llmlab_table *t, const llmlab_run_result *r, size_t n, llmlab_err *err) {
    const int *cols[] = {r->step_prefill_tokens, r->step_decode_seqs, r->step_kv_context, r->step_preempted,
                         r->step_swap_in, r->step_swap_out};
    const char *names[] = {"prefill_tokens", "decode_seqs", "kv_context", "preempted", "swap_in_blocks",
                           "swap_out_blocks"};
    const char *units[] = {"tokens", "sequences", "tokens", "requests", "blocks", "blocks"};
    llmlab_status st = LLMLAB_OK;
    for (int c = 0; c < 6 && !st; c++)
        if (cols[c]) st = ints(t, names[c], cols[c], n, units[c], err);
    return st;
}

static llmlab_status serving_summary_columns(llmlab_table *t, const llmlab_run_result *r, llmlab_err *err) {
    int64_t v[] = {r->preemptions_total, r->recomputed_tokens_total, r->swaps_total, r->cancelled_total};
    const char *names[] = {"preemptions", "recomputed_tokens", "swaps", "cancelled"};
    llmlab_status st = LLMLAB_OK;
    for (int i = 0; i < 4 && !st; i++) {
        st = llmlab_table_column(t, names[i], LLMLAB_COL_INT, "", err);
        if (!st) st = llmlab_table_append_int(t, names[i], v[i], err);
    }
    if (!st) st = llmlab_table_column(t, "swap_bytes", LLMLAB_COL_DOUBLE, "bytes", err);
    if (!st) st = llmlab_table_append_double(t, "swap_bytes", r->swap_bytes, err);
    return st;
}

static llmlab_status record_tables(llmlab_run *run, const llmlab_run_result *r, llmlab_err *err) {
    size_t n = (size_t)r->n_reqs;
    llmlab_table *t = llmlab_run_table(run, "requests", err);
    if (!t) return err ? err->code : LLMLAB_EINVAL;
    llmlab_status st = ints(t, "id", r->req_id, n, "", err);
    if (!st) st = ints(t, "prompt_len", r->prompt_len, n, "tokens", err);
    if (!st) st = ints(t, "output_len", r->output_len, n, "tokens", err);
    if (!st) st = ints(t, "target_forwards", r->forwards, n, "forwards", err);
    if (!st) st = doubles(t, "arrival_s", r->arrival_s, n, "s", err);
    if (!st) st = doubles(t, "admit_s", r->admit_s, n, "s", err);
    if (!st) st = doubles(t, "first_token_s", r->first_token_s, n, "s", err);
    if (!st) st = doubles(t, "finish_s", r->finish_s, n, "s", err);
    if (!st) st = serving_request_columns(t, r, n, err);
    if (!st) st = metric_columns(t, r, r->metrics, n, err);
    if (st) return st;
    size_t s = (size_t)r->n_steps;
    if (!(t = llmlab_run_table(run, "steps", err))) return err ? err->code : LLMLAB_EINVAL;
    st = doubles(t, "start_s", r->step_start_s, s, "s", err);
    if (!st) st = doubles(t, "duration_s", r->step_dt_s, s, "s", err);
    if (!st) st = ints(t, "tokens", r->step_tokens, s, "tokens", err);
    if (!st) st = ints(t, "seqs", r->step_seqs, s, "sequences", err);
    if (!st) st = ints(t, "kv_blocks_used", r->step_kv_blocks, s, "blocks", err);
    if (!st) st = doubles(t, "kv_bytes", r->step_kv_bytes, s, "bytes", err);
    if (!st) st = ints(t, "accepted", r->step_accepted, s, "tokens", err);
    if (!st) st = serving_step_columns(t, r, s, err);
    if (!st) st = metric_columns(t, r, r->step_metrics, s, err);
    if (st) return st;
    size_t k = (size_t)r->n_tok;
    if (!(t = llmlab_run_table(run, "tokens", err))) return err ? err->code : LLMLAB_EINVAL;
    st = ints(t, "request", r->tok_req, k, "", err);
    if (!st) st = ints(t, "index", r->tok_index, k, "", err);
    if (!st) st = llmlab_table_column(t, "token", LLMLAB_COL_INT, "", err);
    for (size_t i = 0; i < k && !st; i++) st = llmlab_table_append_int(t, "token", r->tok_id[i], err);
    if (!st) st = doubles(t, "time_s", r->tok_time_s, k, "s", err);
    if (st) return st;
    if (!(t = llmlab_run_table(run, "summary", err))) return err ? err->code : LLMLAB_EINVAL;
    int64_t row_i[] = {r->n_reqs, r->prompt_tokens, r->output_tokens, r->target_forwards, r->n_steps};
    const char *names_i[] = {"requests", "prompt_tokens", "output_tokens", "target_forwards", "steps"};
    for (int i = 0; i < 5 && !st; i++) {
        st = llmlab_table_column(t, names_i[i], LLMLAB_COL_INT, "", err);
        if (!st) st = llmlab_table_append_int(t, names_i[i], row_i[i], err);
    }
    if (!st) st = serving_summary_columns(t, r, err);
    double row_d[] = {r->wall_s, r->output_tok_per_s, r->mean_accepted};
    const char *names_d[] = {"wall_s", "output_tok_per_s", "mean_accepted"};
    for (int i = 0; i < 3 && !st; i++) {
        st = llmlab_table_column(t, names_d[i], LLMLAB_COL_DOUBLE, "", err);
        if (!st) st = llmlab_table_append_double(t, names_d[i], row_d[i], err);
    }
    for (int m = 0; m < r->n_metrics && !st; m++) { /* run totals of the plugin counters */
        char col[64];
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += r->metrics[(size_t)m * (n ? n : 1) + i];
        snprintf(col, sizeof col, "m_%s", r->metric_names[m]);
        st = llmlab_table_column(t, col, LLMLAB_COL_DOUBLE, "", err);
        if (!st) st = llmlab_table_append_double(t, col, sum, err);
    }
    return st;
}

/* The `weights` table: measured for every engine, so a quantized run and its
 * unquantized baseline carry the same columns (the baseline's errors are 0). */
static llmlab_status record_weights(llmlab_run *run, const llmlab_engine *e, llmlab_err *err) {
    llmlab_weight_report *w = NULL;
    llmlab_status st = llmlab_weight_report_create(e, &w, err);
    if (!st) st = llmlab_weight_report_record(run, w, err);
    llmlab_weight_report_free(w);
    return st;
}

/* The `serving` table (serve_metrics.h): the options given, the engine's KV pool
 * for utilization when they leave it out. */
static llmlab_status record_serving(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                    const llmlab_serve_opts *given, llmlab_err *err) {
    llmlab_serve_opts o = given ? *given : (llmlab_serve_opts){0};
    if (o.kv_blocks_total == 0 && e) o.kv_blocks_total = llmlab_engine_kv((llmlab_engine *)e)->o.n_blocks;
    llmlab_serve_metrics m;
    llmlab_status st = llmlab_serve_metrics_compute(res, &o, &m, err);
    return st ? st : llmlab_serve_metrics_record(run, &m, err);
}

llmlab_status llmlab_record_run(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                const llmlab_record_info *info, llmlab_err *err) {
    return llmlab_record_run_serving(run, e, res, info, NULL, err);
}

llmlab_status llmlab_record_run_serving(llmlab_run *run, const llmlab_engine *e, const llmlab_run_result *res,
                                        const llmlab_record_info *info, const llmlab_serve_opts *serve,
                                        llmlab_err *err) {
    llmlab_status st = record_info(run, info, err);
    if (!st && e) st = record_model(run, e, err);
    if (!st && e) st = record_plugins(run, e, err);
    if (!st) st = record_tables(run, res, err);
    if (!st && e) st = record_weights(run, e, err);
    if (!st) st = record_serving(run, e, res, serve, err);
    return st;
}
