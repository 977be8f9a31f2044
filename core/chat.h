/* chat.h - built-in chat templates: a conversation -> the prompt text an
 * instruction-tuned model was trained on.
 *
 * Each template renders exactly what the Jinja `chat_template` in the Hugging
 * Face tokenizer_config.json of its model produces with apply_chat_template
 * (tokenize=False):
 *   "llama-2"           meta-llama/Llama-2-7b-chat-hf
 *   "llama-3"           meta-llama/Meta-Llama-3-8B-Instruct
 *   "chatml" ("qwen")   Qwen/Qwen2-7B-Instruct (adds the default system message
 *                       "You are a helpful assistant." when the first message is
 *                       not a system message)
 *   "mistral"           mistralai/Mistral-7B-Instruct-v0.2
 *
 * The BOS is part of the text ("<s>", "<|begin_of_text|>"), as in the Hugging
 * Face templates, so rendered text must be encoded with add_special = 0 (no
 * second BOS from the tokenizer's post-processor); the CLI and Lua do so.
 *
 * Differences from the Jinja originals, all of them errors instead of silently
 * odd text: no messages at all; a role other than system/user/assistant; for
 * llama-2 and mistral, anything but an optional first system message followed
 * by user/assistant/user/... (the originals raise on most of these too, but
 * llama-2 silently drops a system message at an assistant position).  llama-2
 * and llama-3 strip white space around contents (Python str.strip: ASCII and
 * Unicode white space); chatml and mistral keep contents verbatim.  llama-2 and
 * mistral have no generation prompt (their text already ends in " [/INST]"). */
#ifndef LLMLAB_CHAT_H
#define LLMLAB_CHAT_H

#include <stddef.h>

#include "llmlab/llmlab.h"

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* NUL-terminated text */
} llmlab_chat_msg;

/* The accepted template names, for messages: "llama-2, llama-3, chatml (alias qwen), mistral". */
const char *llmlab_chat_template_names(void);

/* 1 when name is a built-in template (or an alias). */
int llmlab_chat_template_known(const char *name);

/* Renders msgs[n] with template `name`; generation_prompt appends the header of
 * an assistant turn where the template has one.  *out is malloc'd and
 * NUL-terminated (free() it); *len its length (len may be NULL). */
llmlab_status llmlab_chat_render(const char *name, const llmlab_chat_msg *msgs, int n, int generation_prompt,
                                 char **out, size_t *len, llmlab_err *err);

#endif
