/* generate.c - chunked prefill and a token-at-a-time decode loop. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

double llmlab_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

llmlab_status llmlab_prefill(llmlab_ctx *ctx, int seq, const int32_t *tokens, int n, int start,
                             float *last_logits, llmlab_err *err) {
    int chunk = llmlab_ctx_max_batch(ctx);
    llmlab_batch *b = llmlab_batch_create(chunk);
    if (!b) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory for a batch");
    const llmlab_model *m = llmlab_ctx_model(ctx);
    llmlab_status st = LLMLAB_OK;
    for (int i0 = 0; i0 < n && st == LLMLAB_OK; i0 += chunk) {
        int i1 = i0 + chunk < n ? i0 + chunk : n;
        llmlab_batch_clear(b);
        for (int i = i0; i < i1; i++)
            llmlab_batch_add(b, tokens[i], seq, start + i, (i == n - 1 && last_logits) ? LLMLAB_TOK_LOGITS : 0, -1);
        const llmlab_outputs *o;
        st = llmlab_forward(ctx, b, &o, err);
        if (st == LLMLAB_OK) {
            llmlab_kv_commit(llmlab_ctx_kv(ctx), seq);
            if (i1 == n && last_logits)
                memcpy(last_logits, o->logits, (size_t)m->cfg.vocab_size * sizeof(float));
        }
    }
    llmlab_batch_free(b);
    return st;
}

llmlab_status llmlab_generate(llmlab_ctx *ctx, int seq, const int32_t *prompt, int n_prompt,
                              const llmlab_gen_opts *opts, int32_t *out, int *n_out,
                              llmlab_gen_stats *stats, llmlab_err *err) {
    const llmlab_model *m = llmlab_ctx_model(ctx);
    int vocab = m->cfg.vocab_size;
    *n_out = 0;
    if (n_prompt <= 0) return llmlab_err_set(err, LLMLAB_EINVAL, "generate: empty prompt");
    const char *bad = llmlab_sampling_check(&opts->samp);
    if (bad) return llmlab_err_set(err, LLMLAB_EINVAL, "generate: %s", bad);
    float *logits = malloc((size_t)vocab * sizeof(float));
    float *probs = malloc((size_t)vocab * sizeof(float));
    int *work = malloc((size_t)vocab * sizeof(int));
    llmlab_batch *b = llmlab_batch_create(1);
    llmlab_status st = LLMLAB_OK;
    if (!logits || !probs || !work || !b) {
        st = llmlab_err_set(err, LLMLAB_ENOMEM, "generate: out of memory");
        goto done;
    }
    llmlab_rng rng;
    llmlab_rng_seed(&rng, opts->seed, (uint64_t)seq);
    double t0 = llmlab_now();
    st = llmlab_prefill(ctx, seq, prompt, n_prompt, 0, logits, err);
    double t1 = llmlab_now();
    if (stats) {
        stats->n_prompt = n_prompt;
        stats->prefill_s = t1 - t0;
    }
    int pos = n_prompt;
    while (st == LLMLAB_OK && *n_out < opts->max_new) {
        int tok = llmlab_sample(logits, vocab, &opts->samp, &rng, probs, work);
        out[(*n_out)++] = tok;
        if ((opts->stop_at_eos && llmlab_config_is_eos(&m->cfg, tok)) || *n_out == opts->max_new) break;
        llmlab_batch_clear(b);
        llmlab_batch_add(b, tok, seq, pos++, LLMLAB_TOK_LOGITS, -1);
        const llmlab_outputs *o;
        st = llmlab_forward(ctx, b, &o, err);
        if (st == LLMLAB_OK) {
            llmlab_kv_commit(llmlab_ctx_kv(ctx), seq);
            memcpy(logits, o->logits, (size_t)vocab * sizeof(float));
        }
    }
    if (stats) {
        stats->n_new = *n_out;
        stats->decode_s = llmlab_now() - t1;
    }
done:
    free(logits);
    free(probs);
    free(work);
    llmlab_batch_free(b);
    return st;
}
