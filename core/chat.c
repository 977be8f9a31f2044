/* chat.c - the built-in chat templates (chat.h). */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- a growing string ------------------------------------------------------------- */

typedef struct {
    char *p;     /* [cap] text so far, NUL-terminated when cap > 0 */
    size_t n;    /* bytes used (without the NUL) */
    size_t cap;  /* bytes allocated */
    int oom;     /* 1 once an allocation failed (later appends do nothing) */
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g) {
            b->oom = 1;
            return;
        }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* ---- Python's str.strip() on UTF-8 ------------------------------------------------ */

/* Code points Python's str.isspace() accepts (the Jinja templates call strip/trim). */
static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the UTF-8 character at s[0..len) into *c; returns its byte count, or
 * 0 when the bytes are not a well-formed character (then it is not a space). */
static size_t utf8_at(const unsigned char *s, size_t len, uint32_t *c) {
    if (len == 0) return 0;
    if (s[0] < 0x80) {
        *c = s[0];
        return 1;
    }
    size_t k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (k == 0 || k > len) return 0;
    uint32_t v = s[0] & (0x7f >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    *c = v;
    return k;
}

/* The span of s without leading and trailing white space. */
static void strip(const char *s, const char **start, size_t *len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t a = 0, b = strlen(s), k;
    uint32_t c;
    while (a < b && (k = utf8_at(p + a, b - a, &c)) && py_space(c)) a += k;
    while (b > a) {
        size_t j = b - 1; /* back up to the first byte of the last character */
        while (j > a && (p[j] & 0xc0) == 0x80 && b - j < 4) j--;
        if (!(k = utf8_at(p + j, b - j, &c)) || j + k != b || !py_space(c)) break;
        b = j;
    }
    *start = s + a;
    *len = b - a;
}

static void sb_strip(strbuf *b, const char *s) {
    const char *p;
    size_t n;
    strip(s, &p, &n);
    sb_add(b, p, n);
}

/* ---- the templates -------------------------------------------------------------- */

typedef enum { T_LLAMA2, T_LLAMA3, T_CHATML, T_MISTRAL } tmpl_id;

static const struct {
    const char *name;
    tmpl_id id;
} g_names[] = {{"llama-2", T_LLAMA2}, {"llama-3", T_LLAMA3}, {"chatml", T_CHATML}, {"qwen", T_CHATML},
               {"mistral", T_MISTRAL}};

const char *llmlab_chat_template_names(void) { return "llama-2, llama-3, chatml (alias qwen), mistral"; }

static int find_template(const char *name, tmpl_id *id) {
    for (size_t i = 0; name && i < sizeof g_names / sizeof g_names[0]; i++)
        if (!strcmp(name, g_names[i].name)) {
            *id = g_names[i].id;
            return 1;
        }
    return 0;
}

int llmlab_chat_template_known(const char *name) {
    tmpl_id id;
    return find_template(name, &id);
}

static int is_role(const llmlab_chat_msg *m, const char *role) { return !strcmp(m->role, role); }

/* Every message has a known role and content; llama-2 and mistral also need an
 * optional first system message, then user/assistant alternating from user. */
static llmlab_status check_roles(const char *name, tmpl_id id, const llmlab_chat_msg *m, int n, llmlab_err *err) {
    if (n <= 0 || !m) return llmlab_err_set(err, LLMLAB_EINVAL, "chat template '%s': no messages", name);
    for (int i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return llmlab_err_set(err, LLMLAB_EINVAL, "chat template '%s': message %d lacks a role or content", name,
                                  i + 1);
        if (!is_role(&m[i], "system") && !is_role(&m[i], "user") && !is_role(&m[i], "assistant"))
            return llmlab_err_set(err, LLMLAB_EINVAL, "chat template '%s': message %d has role '%s' (roles: system, "
                                  "user, assistant)", name, i + 1, m[i].role);
    }
    if (id != T_LLAMA2 && id != T_MISTRAL) return LLMLAB_OK;
    int first = is_role(&m[0], "system") ? 1 : 0;
    for (int i = first; i < n; i++) {
        const char *want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (!is_role(&m[i], want))
            return llmlab_err_set(err, LLMLAB_EINVAL, "chat template '%s': message %d has role '%s' where '%s' is "
                                  "expected (after an optional first system message, roles must alternate "
                                  "user/assistant/user/...)", name, i + 1, m[i].role, want);
    }
    return LLMLAB_OK;
}

/* <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST]; the system
 * text joins the first user content before the strip. */
static void render_llama2(strbuf *b, const llmlab_chat_msg *m, int n) {
    int first = is_role(&m[0], "system") ? 1 : 0;
    for (int i = first; i < n; i++) {
        const char *content = m[i].content;
        strbuf joined = {0};
        if (i == first && first) {
            sb_str(&joined, "<<SYS>>\n");
            sb_str(&joined, m[0].content);
            sb_str(&joined, "\n<</SYS>>\n\n");
            sb_str(&joined, m[i].content);
            if (joined.oom) b->oom = 1;
            else content = joined.p;
        }
        if (is_role(&m[i], "user")) {
            sb_str(b, "<s>[INST] ");
            sb_strip(b, content);
            sb_str(b, " [/INST]");
        } else {
            sb_str(b, " ");
            sb_strip(b, content);
            sb_str(b, " </s>");
        }
        free(joined.p);
    }
}

/* <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>... */
static void render_llama3(strbuf *b, const llmlab_chat_msg *m, int n, int gen) {
    sb_str(b, "<|begin_of_text|>");
    for (int i = 0; i < n; i++) {
        sb_str(b, "<|start_header_id|>");
        sb_str(b, m[i].role);
        sb_str(b, "<|end_header_id|>\n\n");
        sb_strip(b, m[i].content);
        sb_str(b, "<|eot_id|>");
    }
    if (gen) sb_str(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* <|im_start|>ROLE\nCONTENT<|im_end|>\n..., Qwen2's default system message first. */
static void render_chatml(strbuf *b, const llmlab_chat_msg *m, int n, int gen) {
    if (!is_role(&m[0], "system")) sb_str(b, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    for (int i = 0; i < n; i++) {
        sb_str(b, "<|im_start|>");
        sb_str(b, m[i].role);
        sb_str(b, "\n");
        sb_str(b, m[i].content);
        sb_str(b, "<|im_end|>\n");
    }
    if (gen) sb_str(b, "<|im_start|>assistant\n");
}

/* <s> [INST] S\n\nU [/INST] A</s> [INST] U2 [/INST] */
static void render_mistral(strbuf *b, const llmlab_chat_msg *m, int n) {
    int first = is_role(&m[0], "system") ? 1 : 0;
    sb_str(b, "<s>");
    for (int i = first; i < n; i++) {
        if (is_role(&m[i], "user")) {
            sb_str(b, " [INST] ");
            if (i == first && first) {
                sb_str(b, m[0].content);
                sb_str(b, "\n\n");
            }
            sb_str(b, m[i].content);
            sb_str(b, " [/INST]");
        } else {
            sb_str(b, " ");
            sb_str(b, m[i].content);
            sb_str(b, "</s>");
        }
    }
}

llmlab_status llmlab_chat_render(const char *name, const llmlab_chat_msg *msgs, int n, int generation_prompt,
                                 char **out, size_t *len, llmlab_err *err) {
    *out = NULL;
    tmpl_id id;
    if (!find_template(name, &id))
        return llmlab_err_set(err, LLMLAB_EINVAL, "unknown chat template '%s' (templates: %s)", name ? name : "(null)",
                              llmlab_chat_template_names());
    llmlab_status st = check_roles(name, id, msgs, n, err);
    if (st) return st;
    strbuf b = {0};
    sb_add(&b, "", 0); /* an empty rendering is still a string */
    switch (id) {
    case T_LLAMA2: render_llama2(&b, msgs, n); break;
    case T_LLAMA3: render_llama3(&b, msgs, n, generation_prompt); break;
    case T_CHATML: render_chatml(&b, msgs, n, generation_prompt); break;
    case T_MISTRAL: render_mistral(&b, msgs, n); break;
    }
    if (b.oom) {
        free(b.p);
        return llmlab_err_set(err, LLMLAB_ENOMEM, "chat template '%s': out of memory", name);
    }
    *out = b.p;
    if (len) *len = b.n;
    return LLMLAB_OK;
}
