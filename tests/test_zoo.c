/* test_zoo.c - the trained model zoo (models/zoo/) through llmlab.
 *
 * Each model directory holds what tools/zoo/evaluate.py measured with PyTorch on
 * the committed f16 weights (upcast to f32): ref_logits.f32 ([REF_T][vocab] of the
 * first REF_T ids of heldout_ids.u16, one causal forward) and eval.json (held-out
 * perplexity with llmlab's window rule, docs/perplexity.md, over the first
 * short_tokens ids).  For target and draft:
 *   logits      llmlab's one-batch forward reproduces PyTorch's logits rows within
 *               ATOL + RTOL*|ref| and with the same argmax per row;
 *   perplexity  llmlab_perplexity over the same ids, ctx and stride gives the
 *               same perplexity "within rounding": |ppl - ref| <= PPL_RTOL * ref;
 *   tokenizer   the directory's tokenizer.json loads as byte-level BPE whose BOS
 *               is what config.json says, and the held-out ids decode and re-encode
 *               to the same ids (the corpus tokenizer is self-consistent on text it
 *               produced).
 * And the target's Medusa heads load and decode losslessly (medusa == greedy).
 *
 * Tolerances.  Both sides compute in f32 from the same f16 weights; they differ
 * only in summation order (dot products of 192..768 terms, softmax over <= 8
 * keys) and libm.  At REF_T = 8 positions the logits are of magnitude <= ~20; f32
 * rounding of such a forward is ~1e-5 relative per op, so 1e-3 absolute + 1e-4
 * relative leaves room while a wrong RoPE, GQA map or tied head moves logits by
 * whole units.  Perplexity: NLLs are summed in double on both sides from f32
 * logits that agree to ~1e-5, so the mean NLL agrees to ~1e-5 nats and
 * ppl to ~1e-5 relative; PPL_RTOL = 1e-4.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/forward.h"
#include "core/model.h"
#include "core/perplexity.h"
#include "core/registry.h"
#include "core/tokenizer.h"

#define ATOL 1e-3
#define RTOL 1e-4
#define PPL_RTOL 1e-4

static void zoo_path(char *buf, size_t cap, const char *model, const char *file) {
    const char *zoo = getenv("LLMLAB_ZOO_DIR"); /* to try a freshly trained zoo elsewhere */
    int n = snprintf(buf, cap, "%s/%s%s%s", zoo ? zoo : LLMLAB_SOURCE_DIR "/models/zoo", model, file ? "/" : "",
                     file ? file : "");
    cr_assert(n > 0 && (size_t)n < cap);
}

static unsigned char *slurp(const char *model, const char *file, size_t *len) {
    char path[1024];
    zoo_path(path, sizeof path, model, file);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (tools/zoo/make_zoo.sh makes it)", path);
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static double json_number(const char *model, const char *file, const char *key) {
    size_t len;
    char *text = (char *)slurp(model, file, &len);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s/%s is not JSON", model, file);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(cJSON_IsNumber(v), "%s/%s: no number '%s'", model, file, key);
    double d = v->valuedouble;
    cJSON_Delete(j);
    free(text);
    return d;
}

static double eval_number(const char *model, const char *key) { return json_number(model, "eval.json", key); }

/* heldout_ids.u16: little-endian uint16 ids. */
static int32_t *heldout_ids(const char *model, int *n) {
    size_t len;
    unsigned char *raw = slurp(model, "heldout_ids.u16", &len);
    *n = (int)(len / 2);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)(raw[2 * i] | raw[2 * i + 1] << 8);
    free(raw);
    return ids;
}

static llmlab_model *load(const char *model) {
    char dir[1024];
    zoo_path(dir, sizeof dir, model, NULL);
    llmlab_model *m = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_model_load(&m, dir, &err), LLMLAB_OK, "%s", err.msg);
    return m;
}

static void check_logits(const char *name) {
    llmlab_model *m = load(name);
    int n_ids;
    int32_t *ids = heldout_ids(name, &n_ids);
    size_t len;
    unsigned char *raw = slurp(name, "ref_logits.f32", &len);
    int V = m->cfg.vocab_size, T = (int)(len / 4 / (size_t)V);
    cr_assert(T >= 2 && len == (size_t)T * (size_t)V * 4, "%s: ref_logits.f32 has %zu bytes", name, len);

    llmlab_ctx *ctx;
    llmlab_err err = {0};
    llmlab_ctx_opts co = {.n_threads = 2, .max_seqs = 1, .kv_tokens = 64, .max_batch = 64};
    cr_assert_eq(llmlab_ctx_create(&ctx, m, &co, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_batch *b = llmlab_batch_create(64);
    for (int t = 0; t < T; t++) llmlab_batch_add(b, ids[t], 0, t, LLMLAB_TOK_LOGITS, -1);
    const llmlab_outputs *out;
    cr_assert_eq(llmlab_forward(ctx, b, &out, &err), LLMLAB_OK, "%s", err.msg);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        const float *got = out->logits + (size_t)t * (size_t)V;
        int am_got = 0, am_ref = 0;
        float ref_best = -INFINITY;
        for (int i = 0; i < V; i++) {
            uint32_t u;
            const unsigned char *p = raw + 4 * ((size_t)t * (size_t)V + (size_t)i);
            u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            float ref;
            memcpy(&ref, &u, sizeof ref);
            double d = fabs((double)got[i] - ref);
            worst = d > worst ? d : worst;
            cr_assert(d <= ATOL + RTOL * fabs(ref), "%s: row %d logit %d: llmlab %.6f, PyTorch %.6f", name, t, i,
                      got[i], ref);
            if (got[i] > got[am_got]) am_got = i;
            if (ref > ref_best) ref_best = ref, am_ref = i;
        }
        cr_assert_eq(am_got, am_ref, "%s: row %d argmax %d, PyTorch %d", name, t, am_got, am_ref);
    }
    cr_log_info("%s: %d rows x %d logits, max |llmlab - PyTorch| = %.2e", name, T, V, worst);
    llmlab_batch_free(b);
    llmlab_ctx_free(ctx);
    free(raw);
    free(ids);
    llmlab_model_free(m);
}

static void check_perplexity(const char *name) {
    llmlab_model *m = load(name);
    int n_ids;
    int32_t *ids = heldout_ids(name, &n_ids);
    int n = (int)eval_number(name, "short_tokens");
    double ref = eval_number(name, "short_ppl");
    cr_assert(n >= 2 && n <= n_ids);
    llmlab_registry *reg;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_engine_opts o = {.registry = reg, .n_threads = 2, .kv_tokens = 8192, .max_seqs = 16};
    llmlab_engine *e;
    cr_assert_eq(llmlab_engine_create(&e, m, &o, &err), LLMLAB_OK, "%s", err.msg);
    llmlab_ppl_opts po = {(int)eval_number(name, "ctx"), (int)eval_number(name, "stride")};
    llmlab_ppl_result *r;
    cr_assert_eq(llmlab_perplexity(e, ids, n, &po, &r, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(r->scored, (int)eval_number(name, "short_scored"));
    cr_assert(fabs(r->ppl - ref) <= PPL_RTOL * ref, "%s: llmlab perplexity %.6f, PyTorch %.6f", name, r->ppl, ref);
    cr_log_info("%s: held-out perplexity over %d ids: llmlab %.5f, PyTorch %.5f", name, n, r->ppl, ref);
    llmlab_ppl_result_free(r);
    llmlab_engine_free(e);
    llmlab_registry_free(reg);
    free(ids);
    llmlab_model_free(m);
}

static void check_tokenizer(const char *name) {
    llmlab_model *m = load(name);
    cr_assert_str_eq(llmlab_tokenizer_kind(m->tok), "bpe-bytelevel");
    cr_assert_eq(llmlab_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
    int32_t bos = llmlab_tokenizer_bos(m->tok);
    cr_assert_eq(bos, (int32_t)json_number(name, "config.json", "bos_token_id"));
    int n_ids;
    int32_t *ids = heldout_ids(name, &n_ids);
    /* The first document: BOS ... up to its EOS; decode, re-encode with the BOS. */
    int32_t eos = llmlab_tokenizer_eos(m->tok);
    int end = 1;
    while (end < n_ids && ids[end] != eos) end++;
    cr_assert(ids[0] == bos && end > 16, "%s: heldout_ids.u16 does not start with a BOS document", name);
    char *text;
    size_t len;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_tokenizer_decode(m->tok, ids + 1, end - 1, 0, &text, &len, &err), LLMLAB_OK, "%s", err.msg);
    int32_t *again;
    int n_again;
    cr_assert_eq(llmlab_tokenizer_encode(m->tok, text, len, 1, &again, &n_again, &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_eq(n_again, end, "%s: %d ids re-encode to %d", name, end, n_again);
    for (int i = 0; i < end; i++) cr_assert_eq(again[i], ids[i], "%s: id %d: %d != %d", name, i, again[i], ids[i]);
    free(again);
    free(text);
    free(ids);
    llmlab_model_free(m);
}

Test(zoo, target_logits) { check_logits("target"); }
Test(zoo, draft_logits) { check_logits("draft"); }
Test(zoo, target_perplexity) { check_perplexity("target"); }
Test(zoo, draft_perplexity) { check_perplexity("draft"); }
Test(zoo, target_tokenizer) { check_tokenizer("target"); }
Test(zoo, draft_tokenizer) { check_tokenizer("draft"); }

/* Medusa heads: load, and decode exactly what greedy autoregressive decodes. */
Test(zoo, medusa_lossless) {
    llmlab_model *m = load("target");
    char heads[1024];
    zoo_path(heads, sizeof heads, "target", "medusa_lm_head.safetensors");
    llmlab_registry *reg;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&reg, &err), LLMLAB_OK, "%s", err.msg);
    int n_ids;
    int32_t *ids = heldout_ids("target", &n_ids);
    llmlab_request req = {.id = 0, .prompt = ids, .prompt_len = 48, .max_new = 40, .stop_at_eos = 0};
    llmlab_run_result *runs[2];
    llmlab_param_value hv = {.key = "heads", .kind = LLMLAB_VAL_STRING, .s = heads};
    for (int k = 0; k < 2; k++) {
        llmlab_engine_opts o = {.registry = reg, .n_threads = 2, .kv_tokens = 4096, .max_seqs = 2};
        if (k == 1) o.decoding = (llmlab_plugin_choice){"medusa", &hv, 1};
        llmlab_engine *e;
        cr_assert_eq(llmlab_engine_create(&e, m, &o, &err), LLMLAB_OK, "%s", err.msg);
        cr_assert_eq(llmlab_engine_run(e, &req, 1, &runs[k], &err), LLMLAB_OK, "%s", err.msg);
        llmlab_engine_free(e);
    }
    cr_assert_eq(runs[1]->output_len[0], runs[0]->output_len[0]);
    for (int i = 0; i < runs[0]->output_len[0]; i++)
        cr_assert_eq(runs[1]->output[0][i], runs[0]->output[0][i], "token %d", i);
    cr_log_info("medusa on the zoo target: %d tokens in %d forwards (greedy: %d)", runs[1]->output_len[0],
                runs[1]->forwards[0], runs[0]->forwards[0]);
    for (int k = 0; k < 2; k++) llmlab_run_result_free(runs[k]);
    free(ids);
    llmlab_registry_free(reg);
    llmlab_model_free(m);
}
