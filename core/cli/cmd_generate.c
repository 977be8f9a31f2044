/* cmd_generate.c - `llmlab generate`: prompt in, continuation out.
 *
 * stdout carries only the result (text, or ids with --ids) so it can be piped;
 * speeds go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/chat.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/tokenizer.h"

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: llmlab generate -m MODEL_DIR (-p TEXT | --tokens 1,2,3) [-n N]\n"
            "         [--chat TEMPLATE [--system TEXT]] [--temp T] [--top-k K] [--top-p P]\n"
            "         [--min-p P] [--seed S] [--threads N] [--ids] [--no-eos]\n"
            "  -m MODEL      Hugging Face model directory (config.json + safetensors [+ tokenizer.json])\n"
            "                or a llama.cpp .gguf file\n"
            "  -p TEXT       prompt text, encoded with the model's tokenizer (tokenizer.json, else\n"
            "                bytes), with its special tokens (a leading BOS for Llama tokenizers)\n"
            "  --tokens L    prompt as comma-separated token ids\n"
            "  --chat NAME   wrap -p TEXT as a user turn in chat template NAME (llama-2, llama-3,\n"
            "                chatml/qwen, mistral) with the assistant's generation prompt; the\n"
            "                template's text holds the BOS, so no special tokens are added\n"
            "  --system TEXT a system message for --chat\n"
            "  -n N          tokens to generate (default 32)\n"
            "  --temp T      temperature, 0 = greedy (default 0)\n"
            "  --top-k K, --top-p P, --min-p P   sampling filters (defaults off)\n"
            "  --seed S      sampling seed (default 0)\n"
            "  --threads N   worker threads (default: all cores)\n"
            "  --ids         print generated token ids on one line instead of text\n"
            "  --no-eos      do not stop at the model's end-of-sequence token\n");
}

/* Parses "1,2,3" into a malloc'd array; returns the count or -1. */
static int parse_token_list(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    const char *p = s;
    while (ids && *p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *g = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!g) break;
            ids = g;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids || n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    return n;
}

typedef struct {
    const char *model_dir, *prompt, *tokens, *chat, *system;
    int n_new, threads, ids, eos;
    llmlab_sampling samp;
    uint64_t seed;
} generate_args;

static int parse_args(int argc, char **argv, generate_args *a) {
    const char *C = "generate";
    *a = (generate_args){.n_new = 32, .eos = 1, .samp = LLMLAB_SAMPLING_GREEDY};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
#define VAL() if (!(v = llmlab_arg_value(C, argc, argv, &i))) return 2
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { generate_usage(stdout); return 1; }
        else if (!strcmp(o, "-m")) { VAL(); a->model_dir = v; }
        else if (!strcmp(o, "-p")) { VAL(); a->prompt = v; }
        else if (!strcmp(o, "--tokens")) { VAL(); a->tokens = v; }
        else if (!strcmp(o, "--chat")) { VAL(); a->chat = v; }
        else if (!strcmp(o, "--system")) { VAL(); a->system = v; }
        else if (!strcmp(o, "-n")) { VAL(); if (llmlab_arg_int(C, o, v, 0, 1 << 24, &a->n_new)) return 2; }
        else if (!strcmp(o, "--threads")) { VAL(); if (llmlab_arg_int(C, o, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(o, "--temp")) { VAL(); if (llmlab_arg_float(C, o, v, 0, 1e6, &a->samp.temperature)) return 2; }
        else if (!strcmp(o, "--top-k")) { VAL(); if (llmlab_arg_int(C, o, v, 0, 1 << 30, &a->samp.top_k)) return 2; }
        else if (!strcmp(o, "--top-p")) { VAL(); if (llmlab_arg_float(C, o, v, 1e-9, 1, &a->samp.top_p)) return 2; }
        else if (!strcmp(o, "--min-p")) { VAL(); if (llmlab_arg_float(C, o, v, 0, 1, &a->samp.min_p)) return 2; }
        else if (!strcmp(o, "--seed")) { VAL(); if (llmlab_arg_u64(C, o, v, &a->seed)) return 2; }
        else if (!strcmp(o, "--ids")) a->ids = 1;
        else if (!strcmp(o, "--no-eos")) a->eos = 0;
        else { fprintf(stderr, "llmlab generate: unknown option '%s'\n", o); generate_usage(stderr); return 2; }
#undef VAL
    }
    if (!a->model_dir || (!a->prompt == !a->tokens)) {
        fprintf(stderr, "llmlab generate: need -m MODEL_DIR and exactly one of -p TEXT or --tokens LIST\n");
        generate_usage(stderr);
        return 2;
    }
    if ((a->chat || a->system) && !a->prompt) {
        fprintf(stderr, "llmlab generate: --chat and --system need a text prompt (-p TEXT)\n");
        return 2;
    }
    if (a->system && !a->chat) {
        fprintf(stderr, "llmlab generate: --system needs --chat TEMPLATE\n");
        return 2;
    }
    if (a->chat && !llmlab_chat_template_known(a->chat)) {
        fprintf(stderr, "llmlab generate: unknown chat template '%s' (templates: %s)\n", a->chat,
                llmlab_chat_template_names());
        return 2;
    }
    return 0;
}

/* 1 when tok can decode id: the byte fallback decodes every id (>= 256 as
 * "<|id|>"); a tokenizer.json has no text for padding rows of a larger embedding,
 * which are left out of the text. */
static int decodable(const llmlab_tokenizer *tok, int32_t id) {
    return !strcmp(llmlab_tokenizer_kind(tok), "bytes") ? id >= 0 : llmlab_tokenizer_piece(tok, id) != NULL;
}

/* Prints the ids, or their text through the streaming detokenizer (special
 * tokens skipped; a UTF-8 character split across tokens is printed whole). */
static llmlab_status print_result(const llmlab_tokenizer *tok, const int32_t *out, int n, int as_ids,
                                  llmlab_err *err) {
    if (as_ids) {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)out[i]);
        printf("\n");
        return LLMLAB_OK;
    }
    llmlab_detok *d = NULL;
    llmlab_status st = llmlab_detok_create(&d, tok, 1, err);
    const char *text;
    size_t len;
    for (int i = 0; i < n && !st; i++)
        if (decodable(tok, out[i]) && !(st = llmlab_detok_push(d, out[i], &text, &len, err))) {
            fwrite(text, 1, len, stdout);
            fflush(stdout);
        }
    if (!st && !(st = llmlab_detok_flush(d, &text, &len, err))) fwrite(text, 1, len, stdout);
    llmlab_detok_free(d);
    printf("\n");
    return st;
}

/* -p TEXT as ids: encoded with special tokens, or wrapped in the chat template
 * and encoded without (the template's text holds the BOS). */
static llmlab_status encode_prompt(const llmlab_tokenizer *tok, const generate_args *a, int32_t **ids, int *n,
                                   llmlab_err *err) {
    if (!a->chat) return llmlab_tokenizer_encode(tok, a->prompt, strlen(a->prompt), 1, ids, n, err);
    llmlab_chat_msg msgs[2] = {{"system", a->system}, {"user", a->prompt}};
    char *text = NULL;
    size_t len = 0;
    llmlab_status st = llmlab_chat_render(a->chat, a->system ? msgs : msgs + 1, a->system ? 2 : 1, 1, &text, &len, err);
    if (!st) st = llmlab_tokenizer_encode(tok, text, len, 0, ids, n, err);
    free(text);
    return st;
}

int llmlab_cmd_generate(int argc, char **argv) {
    generate_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    llmlab_err err = {0};
    llmlab_model *m = NULL;
    llmlab_ctx *ctx = NULL;
    int32_t *prompt = NULL, *out = NULL;
    int n_prompt = 0, n_out = 0;
    rc = 1;
    if (llmlab_model_load(&m, a.model_dir, &err)) goto fail;
    if (a.tokens) {
        if ((n_prompt = parse_token_list(a.tokens, &prompt)) < 0) {
            fprintf(stderr, "llmlab generate: bad --tokens list '%s' (comma-separated ids)\n", a.tokens);
            rc = 2;
            goto end;
        }
    } else {
        if (encode_prompt(m->tok, &a, &prompt, &n_prompt, &err)) goto fail;
        if (n_prompt == 0) {
            fprintf(stderr, "llmlab generate: the prompt is empty\n");
            rc = 2;
            goto end;
        }
    }
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] >= m->cfg.vocab_size) {
            fprintf(stderr, "llmlab generate: prompt token %d is outside the vocabulary (size %d)\n",
                    (int)prompt[i], m->cfg.vocab_size);
            rc = 2;
            goto end;
        }
    int need = n_prompt + a.n_new + 1;
    llmlab_ctx_opts co = {.n_threads = a.threads, .max_seqs = 1, .kv_tokens = need};
    if (llmlab_ctx_create(&ctx, m, &co, &err)) goto fail;
    out = malloc((size_t)(a.n_new + 1) * sizeof *out);
    llmlab_gen_opts go = {.max_new = a.n_new, .samp = a.samp, .seed = a.seed, .stop_at_eos = a.eos};
    llmlab_gen_stats gs = {0};
    if (!out) {
        llmlab_err_set(&err, LLMLAB_ENOMEM, "out of memory");
        goto fail;
    }
    if (a.n_new > 0 && llmlab_generate(ctx, 0, prompt, n_prompt, &go, out, &n_out, &gs, &err)) goto fail;
    if (print_result(m->tok, out, n_out, a.ids, &err)) goto fail;
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.2f tok/s)\n",
            gs.n_prompt, gs.prefill_s, gs.prefill_s > 0 ? gs.n_prompt / gs.prefill_s : 0.0, gs.n_new,
            gs.decode_s, (gs.n_new > 1 && gs.decode_s > 0) ? (gs.n_new - 1) / gs.decode_s : 0.0);
    rc = 0;
    goto end;
fail:
    fprintf(stderr, "llmlab generate: %s\n", err.msg);
end:
    free(prompt);
    free(out);
    llmlab_ctx_free(ctx);
    llmlab_model_free(m);
    return rc;
}
