/* lua_sim.c - serving metrics and the simulated executor in Lua (lua_internal.h):
 *   result.serving of e:run(workload, {slo = {ttft =, tpot =, e2e =}, percentiles = {...}})
 *   llmlab.simulate{model = m | "dir" | shape = {...}, profile = "p.json" | hardware = "h200" | {...},
 *                   sched = ..., workload = w, kv_tokens = n, ...} -> a result like e:run's
 *   llmlab.profile{model = m, out = "p.json", quick = false, ...} -> the fitted cost model
 * (llmlab.capacity is in lua_capacity.c). */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "lua_internal.h"
#include "lua_sim.h"
#include "profile.h"
#include "workload.h"

/* ---- serving-metric options and tables ----------------------------------------------------- */

void llmlab_lua_read_serve_opts(lua_State *L, int t, llmlab_serve_opts *o) {
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, t)) return;
    luaL_checktype(L, t, LUA_TTABLE);
    int ty = lua_getfield(L, t, "slo");
    if (ty == LUA_TTABLE) {
        int s = lua_gettop(L);
        static const char *const keys[] = {"ttft", "tpot", "e2e", NULL};
        llmlab_lua_check_keys(L, s, "slo", keys);
        o->slo_ttft_s = llmlab_lua_opt_num(L, s, "ttft", 0);
        o->slo_tpot_s = llmlab_lua_opt_num(L, s, "tpot", 0);
        o->slo_e2e_s = llmlab_lua_opt_num(L, s, "e2e", 0);
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "slo must be a table {ttft = s, tpot = s, e2e = s}");
    }
    lua_pop(L, 1);
    ty = lua_getfield(L, t, "percentiles");
    if (ty == LUA_TTABLE) {
        int n = (int)luaL_len(L, -1);
        if (n < 1 || n > LLMLAB_SERVE_MAX_PCT) luaL_error(L, "percentiles: give 1 to %d values", LLMLAB_SERVE_MAX_PCT);
        for (int k = 0; k < n; k++) {
            lua_geti(L, -1, k + 1);
            int ok;
            double p = lua_tonumberx(L, -1, &ok);
            if (!ok || !(p >= 0 && p <= 100)) luaL_error(L, "percentiles[%d] must be a number in [0, 100]", k + 1);
            o->pct[k] = p;
            lua_pop(L, 1);
        }
        o->n_pct = n;
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "percentiles must be a list of numbers, e.g. {50, 90, 99}");
    }
    lua_pop(L, 1);
}

/* "p50", "p99_9". */
static void pct_key(char *buf, size_t cap, double p) {
    snprintf(buf, cap, "p%g", p);
    for (char *c = buf; *c; c++)
        if (*c == '.') *c = '_';
}

static void push_dist(lua_State *L, const llmlab_dist *d, const llmlab_serve_metrics *m) {
    lua_createtable(L, 0, 5 + m->n_pct);
    llmlab_lua_setint(L, "n", d->n);
    llmlab_lua_setnum(L, "mean", d->mean);
    llmlab_lua_setnum(L, "std", d->std);
    llmlab_lua_setnum(L, "min", d->min);
    llmlab_lua_setnum(L, "max", d->max);
    for (int k = 0; k < m->n_pct; k++) {
        char key[32];
        pct_key(key, sizeof key, m->pct_at[k]);
        llmlab_lua_setnum(L, key, d->pct[k]);
    }
}

void llmlab_lua_push_serve_metrics(lua_State *L, const llmlab_serve_metrics *m) {
    lua_newtable(L);
    llmlab_lua_setint(L, "requests", m->requests);
    llmlab_lua_setint(L, "completed", m->completed);
    llmlab_lua_setint(L, "cancelled", m->cancelled);
    llmlab_lua_setint(L, "input_tokens", m->input_tokens);
    llmlab_lua_setint(L, "output_tokens", m->output_tokens);
    llmlab_lua_setnum(L, "duration_s", m->duration_s);
    llmlab_lua_setnum(L, "req_per_s", m->req_per_s);
    llmlab_lua_setnum(L, "output_tok_per_s", m->output_tok_per_s);
    llmlab_lua_setnum(L, "total_tok_per_s", m->total_tok_per_s);
    llmlab_lua_setint(L, "good", m->good);
    llmlab_lua_setnum(L, "goodput", m->goodput_req_per_s);
    llmlab_lua_setnum(L, "slo_attainment", m->slo_attainment);
    llmlab_lua_setint(L, "preemptions", m->preemptions);
    llmlab_lua_setint(L, "recomputed_tokens", m->recomputed_tokens);
    llmlab_lua_setint(L, "swaps", m->swaps);
    llmlab_lua_setnum(L, "kv_util_time_mean", m->kv_util_time_mean);
    const char *names[] = {"ttft", "tpot", "itl", "e2e", "queue", "kv_util"};
    const llmlab_dist *d[] = {&m->ttft, &m->tpot, &m->itl, &m->e2e, &m->queue, &m->kv_util};
    for (int k = 0; k < 6; k++) {
        push_dist(L, d[k], m);
        lua_setfield(L, -2, names[k]);
    }
}

/* ---- cost models from Lua options ------------------------------------------------------------ */

static void shape_from_table(lua_State *L, int t, llmlab_config *c) {
    static const char *const keys[] = {"dim", "layers", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_pos",
                                       NULL};
    llmlab_lua_check_keys(L, t, "llmlab.simulate: shape", keys);
    memset(c, 0, sizeof *c);
    c->dim = llmlab_lua_opt_int(L, t, "dim", 0);
    c->n_layers = llmlab_lua_opt_int(L, t, "layers", 0);
    c->n_heads = llmlab_lua_opt_int(L, t, "heads", 0);
    c->n_kv_heads = llmlab_lua_opt_int(L, t, "kv_heads", c->n_heads);
    c->ffn_dim = llmlab_lua_opt_int(L, t, "ffn", 4 * c->dim);
    c->vocab_size = llmlab_lua_opt_int(L, t, "vocab", 32000);
    c->max_pos = llmlab_lua_opt_int(L, t, "max_pos", 4096);
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->ffn_dim <= 0 ||
        c->vocab_size <= 0)
        luaL_error(L, "llmlab.simulate: shape needs positive dim, layers, heads (kv_heads, ffn, vocab)");
    c->head_dim = llmlab_lua_opt_int(L, t, "head_dim", c->dim / c->n_heads);
}

/* The model config of option `model` (a model, or a directory holding config.json)
 * or `shape`; 0 when neither is given. */
static int read_config(lua_State *L, int opts, llmlab_config *c, double *bpw) {
    int ty = lua_getfield(L, opts, "model");
    int have = 1;
    llmlab_lua_model *mu = ty == LUA_TUSERDATA ? luaL_testudata(L, -1, "llmlab.model") : NULL;
    if (mu) {
        *c = mu->m->cfg;
        const llmlab_mat *w = &mu->m->layers[0].wq;
        *bpw = w->dtype == LLMLAB_DTYPE_F32 ? 4 : 2;
    } else if (ty == LUA_TSTRING) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", lua_tostring(L, -1));
        FILE *f = fopen(path, "rb");
        if (!f) luaL_error(L, "llmlab.simulate: cannot open %s", path);
        char *text = calloc(1 << 20, 1);
        size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
        llmlab_err err = {0};
        llmlab_status st = text && n ? llmlab_config_parse(c, text, &err) : LLMLAB_EIO;
        free(text);
        if (st) luaL_error(L, "llmlab.simulate: %s: %s", path, err.msg[0] ? err.msg : "cannot read");
    } else if (ty != LUA_TNIL) {
        luaL_error(L, "llmlab.simulate: model must be a model from llmlab.model{...} or a model directory");
    } else {
        have = 0;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, opts, "shape") == LUA_TTABLE) {
        shape_from_table(L, lua_gettop(L), c);
        have = 1;
    }
    lua_pop(L, 1);
    return have;
}

static void hw_from_table(lua_State *L, int t, llmlab_hw_spec *h) {
    static const char *const keys[] = {"name", "peak_flops", "mem_bw", "compute_eff", "memory_eff", "overhead_s",
                                       NULL};
    llmlab_lua_check_keys(L, t, "llmlab.simulate: hardware", keys);
    const char *base = llmlab_lua_opt_str(L, t, "name", NULL);
    llmlab_err err = {0};
    memset(h, 0, sizeof *h);
    if (base && llmlab_hw_lookup(base, 0, h, &err)) { /* a table may start from a named spec */
        snprintf(h->name, sizeof h->name, "%s", base);
        h->compute_eff = h->memory_eff = 1;
    }
    h->peak_flops = llmlab_lua_opt_num(L, t, "peak_flops", h->peak_flops);
    h->mem_bw = llmlab_lua_opt_num(L, t, "mem_bw", h->mem_bw);
    h->compute_eff = llmlab_lua_opt_num(L, t, "compute_eff", h->compute_eff > 0 ? h->compute_eff : 1);
    h->memory_eff = llmlab_lua_opt_num(L, t, "memory_eff", h->memory_eff > 0 ? h->memory_eff : 1);
    h->overhead_s = llmlab_lua_opt_num(L, t, "overhead_s", h->overhead_s);
    if (!base) snprintf(h->name, sizeof h->name, "custom");
}

void llmlab_lua_read_cost(lua_State *L, int opts, llmlab_costmodel *m, int threads) {
    llmlab_config cfg;
    double bpw = 2;
    int have_cfg = read_config(L, opts, &cfg, &bpw);
    bpw = llmlab_lua_opt_num(L, opts, "weight_bytes", bpw);
    double kv_bytes = llmlab_lua_opt_num(L, opts, "kv_bytes", bpw >= 4 ? 4 : 2);
    const char *profile = llmlab_lua_opt_str(L, opts, "profile", NULL);
    int hty = lua_getfield(L, opts, "hardware");
    llmlab_err err = {0};
    if (profile && hty != LUA_TNIL) luaL_error(L, "llmlab.simulate: give profile or hardware, not both");
    if (profile) {
        if (llmlab_cost_load(m, profile, &err)) llmlab_lua_fail(L, &err);
        /* a model or shape given with a fitted profile sets the KV bytes per block */
        if (have_cfg) llmlab_model_shape_of(&m->shape, &cfg, bpw, kv_bytes);
    } else if (hty == LUA_TSTRING || hty == LUA_TTABLE) {
        llmlab_hw_spec hw;
        if (hty == LUA_TSTRING && llmlab_hw_lookup(lua_tostring(L, -1), threads, &hw, &err)) llmlab_lua_fail(L, &err);
        if (hty == LUA_TTABLE) hw_from_table(L, lua_gettop(L), &hw);
        if (!have_cfg) luaL_error(L, "llmlab.simulate: a hardware roofline needs the model: model = m or shape = {...}");
        llmlab_model_shape sh;
        llmlab_model_shape_of(&sh, &cfg, bpw, kv_bytes);
        if (llmlab_cost_roofline(m, &sh, &hw, &err)) llmlab_lua_fail(L, &err);
    } else {
        luaL_error(L, "llmlab.simulate: give a cost model: profile = \"profile.json\" (llmlab profile) or hardware = "
                      "\"h200\" | {peak_flops =, mem_bw =}");
    }
    lua_pop(L, 1);
}

/* ---- requests from a workload ---------------------------------------------------------------- */

/* Userdata "llmlab.simreqs": a request list (prompts are not needed). */
typedef struct {
    int n;
    llmlab_request *reqs;
} sim_reqs;

static int simreqs_gc(lua_State *L) {
    sim_reqs *b = luaL_checkudata(L, 1, "llmlab.simreqs");
    free(b->reqs);
    b->reqs = NULL;
    return 0;
}

/* Reads the workload at idx (llmlab.workload{...} or a list of request tables)
 * into a new "llmlab.simreqs" userdata left on the stack.  A request's prompt
 * length is prompt_len, else the length of its prompt (a table of ids, or a
 * string encoded with tok when given). */
llmlab_request *llmlab_lua_read_sim_requests(lua_State *L, int idx, const struct llmlab_tokenizer *tok, int *n_out) {
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "workload must be llmlab.workload{...} or a list of requests");
    if (lua_getfield(L, idx, "requests") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushvalue(L, idx);
    }
    int rq = lua_gettop(L), n = (int)luaL_len(L, rq);
    sim_reqs *b = lua_newuserdatauv(L, sizeof *b, 0);
    *b = (sim_reqs){0};
    luaL_setmetatable(L, "llmlab.simreqs");
    if (!(b->reqs = calloc((size_t)(n ? n : 1), sizeof *b->reqs))) luaL_error(L, "out of memory");
    b->n = n;
    for (int i = 0; i < n; i++) {
        if (lua_geti(L, rq, i + 1) != LUA_TTABLE) luaL_error(L, "workload: request %d is not a table", i + 1);
        int t = lua_gettop(L);
        llmlab_request *r = &b->reqs[i];
        r->id = i;
        r->prompt_len = llmlab_lua_opt_int(L, t, "prompt_len", 0);
        if (r->prompt_len <= 0) {
            int ty = lua_getfield(L, t, "prompt");
            if (ty == LUA_TTABLE) r->prompt_len = (int)luaL_len(L, -1);
            else if (ty == LUA_TSTRING && tok) {
                int32_t *ids = llmlab_lua_read_prompt_tok(L, lua_gettop(L), tok, 1, &r->prompt_len);
                free(ids);
            } else if (ty == LUA_TSTRING) {
                luaL_error(L, "workload: request %d has a text prompt; give model = m to count its tokens, or "
                              "prompt_len", i + 1);
            }
            lua_pop(L, 1);
        }
        if (r->prompt_len <= 0) luaL_error(L, "workload: request %d has no prompt_len or prompt", i + 1);
        r->max_new = llmlab_lua_opt_int(L, t, "max_new", 32);
        r->arrival_s = llmlab_lua_opt_num(L, t, "arrival_s", 0.0);
        llmlab_lua_read_request_serving(L, t, r);
        lua_pop(L, 1);
    }
    lua_remove(L, rq);
    *n_out = n;
    return b->reqs;
}

/* ---- llmlab.simulate ---------------------------------------------------------------------------- */

typedef struct {
    llmlab_sim *s;
} lua_simh;

static int sim_gc(lua_State *L) {
    lua_simh *u = luaL_checkudata(L, 1, "llmlab.sim");
    llmlab_sim_free(u->s);
    u->s = NULL;
    return 0;
}

const char *const llmlab_lua_sim_keys[] = {"model", "shape", "profile", "hardware", "weight_bytes", "kv_bytes",
                                           "sched", "kv_tokens", "kv_block_size", "max_seqs", "token_budget",
                                           "watermark", "swap_space", "preempt_mode", "swap_bw", "record_tokens",
                                           "seed", NULL};

void llmlab_lua_read_sim_opts(lua_State *L, int opts, llmlab_sim_opts *o, llmlab_lua_choice_values *cv) {
    llmlab_lua_opts *ctx = llmlab_lua_ctx(L);
    memset(o, 0, sizeof *o);
    o->registry = ctx->registry;
    llmlab_lua_read_choice(L, opts, "sched", &o->sched, cv);
    o->sched.values = cv->v;
    o->sched.n_values = cv->n;
    llmlab_lua_read_cost(L, opts, &o->cost, ctx->settings->threads);
    o->max_seqs = llmlab_lua_opt_int(L, opts, "max_seqs", 0);
    int max_pos = o->cost.shape.n_layers > 0 ? 4096 : 2048;
    o->kv_tokens = llmlab_lua_opt_int(L, opts, "kv_tokens", (o->max_seqs ? o->max_seqs : 64) * max_pos);
    o->kv_block_size = llmlab_lua_opt_int(L, opts, "kv_block_size", ctx->settings->kv_block_size);
    o->token_budget = llmlab_lua_opt_int(L, opts, "token_budget", 0);
    llmlab_engine_opts eo = {0}; /* watermark, swap_space, preempt_mode as llmlab.engine reads them */
    llmlab_lua_read_serving(L, opts, &eo);
    o->watermark = eo.watermark;
    o->swap_tokens = eo.swap_tokens;
    o->swap_bytes = eo.swap_bytes;
    o->preempt_mode = eo.preempt_mode;
    o->swap_bw = llmlab_lua_opt_num(L, opts, "swap_bw", 0);
    int rt = lua_getfield(L, opts, "record_tokens");
    o->record_tokens = rt == LUA_TNIL ? -1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    o->seed = (uint64_t)llmlab_lua_opt_int(L, opts, "seed", 0);
}

/* Pushes a new "llmlab.sim" userdata made from the options at `opts`. */
llmlab_sim *llmlab_lua_new_sim(lua_State *L, int opts) {
    llmlab_sim_opts o;
    llmlab_lua_choice_values cv;
    llmlab_lua_read_sim_opts(L, opts, &o, &cv);
    lua_simh *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = NULL;
    luaL_setmetatable(L, "llmlab.sim");
    llmlab_err err = {0};
    if (llmlab_sim_create(&u->s, &o, &err)) llmlab_lua_fail(L, &err);
    return u->s;
}

static void push_summary(lua_State *L, const llmlab_run_result *r, double sim_seconds) {
    lua_newtable(L);
    llmlab_lua_setint(L, "requests", r->n_reqs);
    llmlab_lua_setint(L, "prompt_tokens", r->prompt_tokens);
    llmlab_lua_setint(L, "output_tokens", r->output_tokens);
    llmlab_lua_setint(L, "steps", r->n_steps);
    llmlab_lua_setnum(L, "wall_s", r->wall_s);
    llmlab_lua_setnum(L, "output_tok_per_s", r->output_tok_per_s);
    llmlab_lua_setnum(L, "sim_seconds", sim_seconds);
    llmlab_lua_push_serving_summary(L, r);
}

static void push_requests(lua_State *L, const llmlab_run_result *r) {
    lua_createtable(L, r->n_reqs, 0);
    for (int i = 0; i < r->n_reqs; i++) {
        lua_createtable(L, 0, 12);
        llmlab_lua_setint(L, "id", r->req_id[i]);
        llmlab_lua_setint(L, "prompt_len", r->prompt_len[i]);
        llmlab_lua_setint(L, "output_len", r->output_len[i]);
        llmlab_lua_setnum(L, "arrival_s", r->arrival_s[i]);
        llmlab_lua_setnum(L, "admit_s", r->admit_s[i]);
        llmlab_lua_setnum(L, "first_token_s", r->first_token_s[i]);
        llmlab_lua_setnum(L, "finish_s", r->finish_s[i]);
        llmlab_lua_setnum(L, "ttft_s", r->first_token_s[i] - r->arrival_s[i]);
        llmlab_lua_setnum(L, "latency_s", r->finish_s[i] - r->arrival_s[i]);
        llmlab_lua_push_request_serving(L, r, i);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Pushes the steps of r as columns {start_s = {...}, duration_s = {...}, ...}. */
static void push_steps(lua_State *L, const llmlab_run_result *r) {
    lua_newtable(L);
    const char *dn[] = {"start_s", "duration_s"};
    const double *dv[] = {r->step_start_s, r->step_dt_s};
    for (int c = 0; c < 2; c++) {
        lua_createtable(L, r->n_steps, 0);
        for (int j = 0; j < r->n_steps; j++) {
            lua_pushnumber(L, dv[c][j]);
            lua_rawseti(L, -2, j + 1);
        }
        lua_setfield(L, -2, dn[c]);
    }
    const char *in[] = {"tokens", "seqs", "kv_blocks_used", "prefill_tokens", "decode_seqs", "kv_context"};
    const int *iv[] = {r->step_tokens, r->step_seqs, r->step_kv_blocks, r->step_prefill_tokens, r->step_decode_seqs,
                       r->step_kv_context};
    for (int c = 0; c < 6; c++) {
        if (!iv[c]) continue;
        lua_createtable(L, r->n_steps, 0);
        for (int j = 0; j < r->n_steps; j++) {
            lua_pushinteger(L, iv[c][j]);
            lua_rawseti(L, -2, j + 1);
        }
        lua_setfield(L, -2, in[c]);
    }
}

void llmlab_lua_push_steps(lua_State *L, const llmlab_run_result *r) { push_steps(L, r); }

/* llmlab.simulate{...} -> {summary, requests, steps, serving, _run} */
static int l_simulate(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *extra[] = {"workload", "slo", "percentiles", "requests", "steps", NULL};
    const char *keys[64];
    int nk = 0;
    for (int i = 0; llmlab_lua_sim_keys[i]; i++) keys[nk++] = llmlab_lua_sim_keys[i];
    for (int i = 0; extra[i]; i++) keys[nk++] = extra[i];
    keys[nk] = NULL;
    llmlab_lua_check_keys(L, 1, "llmlab.simulate", keys);
    llmlab_sim *s = llmlab_lua_new_sim(L, 1);
    int sim_idx = lua_gettop(L);
    llmlab_serve_opts so;
    llmlab_lua_read_serve_opts(L, 1, &so);
    so.kv_blocks_total = llmlab_sim_kv_blocks(s);
    int want_reqs = llmlab_lua_opt_bool(L, 1, "requests", 1), want_steps = llmlab_lua_opt_bool(L, 1, "steps", 0);
    const struct llmlab_tokenizer *tok = NULL;
    if (lua_getfield(L, 1, "model") == LUA_TUSERDATA) {
        llmlab_lua_model *mu = luaL_testudata(L, -1, "llmlab.model");
        if (mu) tok = mu->m->tok;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "workload") == LUA_TNIL) return luaL_error(L, "llmlab.simulate: workload is required");
    int n = 0;
    llmlab_request *reqs = llmlab_lua_read_sim_requests(L, -1, tok, &n);
    llmlab_lua_result *res = lua_newuserdatauv(L, sizeof *res, 1);
    memset(res, 0, sizeof *res);
    luaL_setmetatable(L, "llmlab.result");
    lua_pushvalue(L, sim_idx); /* the result keeps its simulator alive for results:write */
    lua_setiuservalue(L, -2, 1);
    int res_idx = lua_gettop(L);
    res->serve = so;
    res->itl = malloc(sizeof *res->itl);
    if (!res->itl) return luaL_error(L, "out of memory");
    llmlab_results_utc_now(res->start);
    llmlab_err err = {0};
    double t0 = llmlab_now();
    llmlab_status st = llmlab_sim_run(s, reqs, n, &res->r, res->itl, &err);
    double elapsed = llmlab_now() - t0;
    llmlab_results_utc_now(res->end);
    if (!st) st = llmlab_workload_from_requests(reqs, n, &res->wl, &err); /* recorded for replay (lengths) */
    if (st) return llmlab_lua_fail(L, &err);
    res->serve.itl_hist = res->itl;
    llmlab_serve_metrics m;
    if (llmlab_serve_metrics_compute(res->r, &res->serve, &m, &err)) return llmlab_lua_fail(L, &err);
    lua_newtable(L);
    push_summary(L, res->r, elapsed);
    lua_setfield(L, -2, "summary");
    if (want_reqs) {
        push_requests(L, res->r);
        lua_setfield(L, -2, "requests");
    }
    if (want_steps) {
        push_steps(L, res->r);
        lua_setfield(L, -2, "steps");
    }
    llmlab_lua_push_serve_metrics(L, &m);
    lua_setfield(L, -2, "serving");
    lua_pushvalue(L, res_idx);
    lua_setfield(L, -2, "_run");
    return 1;
}

/* ---- llmlab.profile ------------------------------------------------------------------------------ */

static void push_cost(lua_State *L, const llmlab_costmodel *m) {
    lua_newtable(L);
    lua_pushstring(L, m->kind == LLMLAB_COST_ROOFLINE ? "roofline" : "fitted");
    lua_setfield(L, -2, "kind");
    static const char *const names[LLMLAB_COST_NTERMS] = {"c0_s", "prefill_token_s", "decode_seq_s",
                                                           "decode_kv_token_s", "prefill_attn_pair_s"};
    for (int k = 0; k < LLMLAB_COST_NTERMS; k++) llmlab_lua_setnum(L, names[k], m->coef[k]);
    llmlab_lua_setnum(L, "fit_mape", m->fit_mape);
    llmlab_lua_setnum(L, "fit_r2", m->fit_r2);
    llmlab_lua_setint(L, "samples", m->n_samples);
    lua_pushstring(L, m->machine);
    lua_setfield(L, -2, "machine");
}

/* llmlab.profile{model = m, out = "profile.json", quick = false, token_budget =, max_seqs =, reps =} */
static int l_profile(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"model", "out", "quick", "token_budget", "max_seqs", "reps", "fastest",
                                       "engine_overhead", "verbose", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.profile", keys);
    lua_getfield(L, 1, "model");
    llmlab_lua_model *mu = luaL_testudata(L, -1, "llmlab.model");
    if (!mu || !mu->m) return luaL_error(L, "llmlab.profile: model must be a model from llmlab.model{...}");
    llmlab_profile_opts o = {.n_threads = mu->threads,
                             .token_budget = llmlab_lua_opt_int(L, 1, "token_budget", 0),
                             .max_seqs = llmlab_lua_opt_int(L, 1, "max_seqs", 0),
                             .reps = llmlab_lua_opt_int(L, 1, "reps", 0),
                             .quick = llmlab_lua_opt_bool(L, 1, "quick", 0),
                             .fastest = llmlab_lua_opt_bool(L, 1, "fastest", 0),
                             .verbose = llmlab_lua_opt_bool(L, 1, "verbose", 0)};
    if (llmlab_lua_opt_bool(L, 1, "engine_overhead", 1)) o.registry = llmlab_lua_ctx(L)->registry;
    const char *out = llmlab_lua_opt_str(L, 1, "out", NULL);
    llmlab_costmodel m;
    llmlab_profile_samples s;
    llmlab_err err = {0};
    if (llmlab_profile(mu->m, &o, &m, &s, &err)) return llmlab_lua_fail(L, &err);
    if (out && llmlab_cost_save(&m, out, &err)) {
        llmlab_profile_samples_free(&s);
        return llmlab_lua_fail(L, &err);
    }
    push_cost(L, &m);
    lua_createtable(L, s.n, 0); /* the profiled points with the fit's prediction */
    for (int i = 0; i < s.n; i++) {
        const llmlab_iter_shape *it = &s.shape[i];
        lua_createtable(L, 0, 6);
        llmlab_lua_setint(L, "prefill_tokens", it->prefill_tokens);
        llmlab_lua_setint(L, "decode_seqs", it->decode_seqs);
        llmlab_lua_setnum(L, "decode_kv", it->decode_kv);
        llmlab_lua_setnum(L, "prefill_attn", it->prefill_attn);
        llmlab_lua_setnum(L, "time_s", s.t[i]);
        llmlab_lua_setnum(L, "pred_s", llmlab_cost_predict(&m, it));
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "samples");
    llmlab_lua_setnum(L, "overhead_c0_s", s.overhead_c0);
    llmlab_lua_setnum(L, "overhead_decode_s", s.overhead_dec);
    llmlab_profile_samples_free(&s);
    return 1;
}

/* llmlab.step_error{result = r, profile = "p.json" | hardware = ..., model = / shape = }
 * -> {n, mape, bias, real_mean_s, pred_mean_s}: the cost model against r's steps. */
static int l_step_error(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"result", "profile", "hardware", "model", "shape", "weight_bytes", "kv_bytes",
                                       "steps", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.step_error", keys);
    lua_getfield(L, 1, "result");
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, "_run") != LUA_TUSERDATA)
        return luaL_error(L, "llmlab.step_error: result must be the result of e:run or llmlab.simulate");
    llmlab_lua_result *res = luaL_checkudata(L, -1, "llmlab.result");
    if (!res->r) return luaL_error(L, "llmlab.step_error: the result holds no run");
    llmlab_costmodel m;
    llmlab_lua_read_cost(L, 1, &m, llmlab_lua_ctx(L)->settings->threads);
    llmlab_step_error e;
    llmlab_err err = {0};
    int want_steps = llmlab_lua_opt_bool(L, 1, "steps", 0), ns = res->r->n_steps;
    double *t = want_steps ? lua_newuserdatauv(L, 2 * sizeof(double) * (size_t)(ns > 1 ? ns : 1), 0) : NULL;
    if (llmlab_sim_step_error(&m, res->r, &e, t, t ? t + ns : NULL, &err)) return llmlab_lua_fail(L, &err);
    lua_newtable(L);
    if (t) { /* {real_s = {...}, pred_s = {...}, shape columns} per iteration */
        for (int c = 0; c < 2; c++) {
            lua_createtable(L, ns - 1, 0);
            for (int j = 0; j + 1 < ns; j++) {
                lua_pushnumber(L, t[c * ns + j]);
                lua_rawseti(L, -2, j + 1);
            }
            lua_setfield(L, -2, c ? "pred_s" : "real_s");
        }
        const char *names[] = {"prefill_tokens", "decode_seqs", "decode_kv"};
        for (int c = 0; c < 3; c++) {
            lua_createtable(L, ns - 1, 0);
            for (int j = 0; j + 1 < ns; j++) {
                llmlab_iter_shape it;
                llmlab_sim_step_shape(res->r, j, &it);
                lua_pushnumber(L, c == 0 ? it.prefill_tokens : c == 1 ? it.decode_seqs : it.decode_kv);
                lua_rawseti(L, -2, j + 1);
            }
            lua_setfield(L, -2, names[c]);
        }
    }
    llmlab_lua_setint(L, "n", e.n);
    llmlab_lua_setnum(L, "wape", e.wape);
    llmlab_lua_setnum(L, "mape", e.mape);
    llmlab_lua_setnum(L, "bias", e.bias);
    llmlab_lua_setnum(L, "real_mean_s", e.real_mean_s);
    llmlab_lua_setnum(L, "pred_mean_s", e.pred_mean_s);
    return 1;
}

int llmlab_lua_step_error(lua_State *L) { return l_step_error(L); }

void llmlab_lua_push_run_serving(lua_State *L, int opts_arg, llmlab_lua_result *res, int kv_blocks) {
    llmlab_lua_read_serve_opts(L, opts_arg, &res->serve);
    res->serve.kv_blocks_total = kv_blocks;
    llmlab_serve_metrics m;
    llmlab_err err = {0};
    if (llmlab_serve_metrics_compute(res->r, &res->serve, &m, &err)) llmlab_lua_fail(L, &err);
    llmlab_lua_push_serve_metrics(L, &m);
}

llmlab_sim *llmlab_lua_result_sim(lua_State *L, int idx) {
    lua_simh *u = luaL_testudata(L, idx, "llmlab.sim");
    return u ? u->s : NULL;
}

void llmlab_lua_open_sim(lua_State *L) {
    llmlab_lua_gc_metatable(L, "llmlab.sim", sim_gc);
    llmlab_lua_gc_metatable(L, "llmlab.simreqs", simreqs_gc);
}

int llmlab_lua_simulate(lua_State *L) { return l_simulate(L); }
int llmlab_lua_profile(lua_State *L) { return l_profile(L); }
