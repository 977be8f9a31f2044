/* test_chat.c - the built-in chat templates render what the Hugging Face Jinja
 * templates of their models render (expected strings written by hand from those
 * templates), and bad conversations or names are errors that say why. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chat.h"

/* system + two user turns with an assistant turn between them */
static const llmlab_chat_msg conv[] = {{"system", "You are terse."},
                                       {"user", "Hi there"},
                                       {"assistant", "Hello!"},
                                       {"user", "What is 2+2?"}};

static char *render(const char *name, const llmlab_chat_msg *m, int n, int gen) {
    char *out = NULL;
    size_t len = 0;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_chat_render(name, m, n, gen, &out, &len, &err), LLMLAB_OK, "%s: %s", name, err.msg);
    cr_assert_eq(len, strlen(out));
    return out;
}

static void expect(const char *name, const llmlab_chat_msg *m, int n, int gen, const char *want) {
    char *got = render(name, m, n, gen);
    cr_assert_str_eq(got, want, "template %s", name);
    free(got);
}

Test(chat, llama2_system_two_turns) {
    const char *want = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s>"
                       "<s>[INST] What is 2+2? [/INST]";
    expect("llama-2", conv, 4, 1, want);
    expect("llama-2", conv, 4, 0, want); /* no generation prompt in this template */
}

Test(chat, llama3_system_two_turns) {
    const char *body = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                       "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>";
    char want[1024];
    snprintf(want, sizeof want, "%s<|start_header_id|>assistant<|end_header_id|>\n\n", body);
    expect("llama-3", conv, 4, 1, want);
    expect("llama-3", conv, 4, 0, body);
}

Test(chat, chatml_and_qwen_system_two_turns) {
    const char *body = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                       "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    char want[1024];
    snprintf(want, sizeof want, "%s<|im_start|>assistant\n", body);
    expect("chatml", conv, 4, 1, want);
    expect("qwen", conv, 4, 1, want);
    expect("chatml", conv, 4, 0, body);
}

Test(chat, mistral_system_two_turns) {
    const char *want = "<s> [INST] You are terse.\n\nHi there [/INST] Hello!</s> [INST] What is 2+2? [/INST]";
    expect("mistral", conv, 4, 1, want);
    expect("mistral", conv, 4, 0, want);
}

Test(chat, without_system_message) {
    const llmlab_chat_msg m[] = {{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Bye"}};
    expect("llama-2", m, 3, 1, "<s>[INST] Hi [/INST] Yo </s><s>[INST] Bye [/INST]");
    expect("mistral", m, 3, 1, "<s> [INST] Hi [/INST] Yo</s> [INST] Bye [/INST]");
    expect("llama-3", m, 1, 1, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Qwen2's template supplies its default system message */
    expect("chatml", m, 1, 1, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

/* llama-2 strips the joined system + first user content as one string, llama-3
 * trims every content (Unicode white space too, as Python's str.strip), chatml
 * and mistral keep contents verbatim. */
Test(chat, white_space_handling_follows_each_template) {
    const llmlab_chat_msg m[] = {{"system", "  S  "}, {"user", " U\t\n"}, {"assistant", "\xc2\xa0" "A\xe3\x80\x80"}};
    expect("llama-2", m, 3, 0, "<s>[INST] <<SYS>>\n  S  \n<</SYS>>\n\n U [/INST] A </s>");
    expect("llama-3", m, 3, 0, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                               "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>");
    expect("chatml", m, 3, 0, "<|im_start|>system\n  S  <|im_end|>\n<|im_start|>user\n U\t\n<|im_end|>\n"
                              "<|im_start|>assistant\n\xc2\xa0" "A\xe3\x80\x80<|im_end|>\n");
    expect("mistral", m, 3, 0, "<s> [INST]   S  \n\n U\t\n [/INST] \xc2\xa0" "A\xe3\x80\x80</s>");
    /* a multi-byte character that is not white space stays, whole */
    const llmlab_chat_msg u[] = {{"user", " \xc3\xa9t\xc3\xa9 "}};
    expect("llama-2", u, 1, 0, "<s>[INST] \xc3\xa9t\xc3\xa9 [/INST]");
    const llmlab_chat_msg blank[] = {{"user", " \n "}};
    expect("llama-2", blank, 1, 0, "<s>[INST]  [/INST]");
}

Test(chat, llama3_and_chatml_accept_any_order) {
    const llmlab_chat_msg m[] = {{"assistant", "A"}, {"system", "S"}, {"user", "U"}, {"user", "V"}};
    char *a = render("llama-3", m, 4, 0), *b = render("chatml", m, 4, 0);
    cr_assert(strstr(a, "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"));
    cr_assert(strstr(b, "<|im_start|>user\nU<|im_end|>\n<|im_start|>user\nV<|im_end|>\n"));
    free(a);
    free(b);
}

static void expect_error(const char *name, const llmlab_chat_msg *m, int n, const char *must1, const char *must2) {
    char *out = (char *)1;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_chat_render(name, m, n, 1, &out, NULL, &err), LLMLAB_EINVAL, "%s should fail", name);
    cr_assert_null(out);
    cr_assert(strstr(err.msg, must1), "%s", err.msg);
    if (must2) cr_assert(strstr(err.msg, must2), "%s", err.msg);
}

Test(chat, role_order_errors) {
    const llmlab_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    expect_error("llama-2", two_users, 2, "message 2 has role 'user' where 'assistant'", "alternate");
    expect_error("mistral", two_users, 2, "message 2", "alternate");
    const llmlab_chat_msg asst_first[] = {{"system", "s"}, {"assistant", "a"}};
    expect_error("mistral", asst_first, 2, "message 2 has role 'assistant' where 'user'", NULL);
    const llmlab_chat_msg late_system[] = {{"user", "a"}, {"system", "s"}};
    expect_error("llama-2", late_system, 2, "message 2 has role 'system'", NULL);
    const llmlab_chat_msg tool[] = {{"user", "a"}, {"tool", "x"}};
    for (const char *const *t = (const char *const[]){"llama-2", "llama-3", "chatml", "mistral", NULL}; *t; t++)
        expect_error(*t, tool, 2, "role 'tool'", "system, user, assistant");
    expect_error("llama-3", conv, 0, "no messages", NULL);
}

Test(chat, unknown_template_lists_the_valid_names) {
    expect_error("llama2", conv, 4, "unknown chat template 'llama2'", "llama-2, llama-3, chatml (alias qwen), mistral");
    cr_assert(llmlab_chat_template_known("qwen"));
    cr_assert(llmlab_chat_template_known("mistral"));
    cr_assert(!llmlab_chat_template_known("vicuna"));
    cr_assert(!llmlab_chat_template_known(NULL));
}
