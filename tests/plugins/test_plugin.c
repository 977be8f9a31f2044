/* test_plugin.c - a decoding plugin built in several broken ways for the ABI tests.
 *
 * TEST_PLUGIN_GOOD: a valid plugin "test_echo" (greedy, with an int and an enum param);
 * TEST_PLUGIN_WRONG_MAJOR: claims ABI major + 1;
 * TEST_PLUGIN_TRUNCATED: claims a descriptor smaller than the host's;
 * TEST_PLUGIN_NEWER_MINOR: claims minor + 5 (must load);
 * TEST_PLUGIN_NO_ENTRY: exports no entry symbol;
 * TEST_PLUGIN_BAD_KIND: kind 9. */
#include "llmlab/plugin.h"

typedef struct {
    const llmlab_host *h;
} echo_state;

static llmlab_status echo_create(void **self, const llmlab_host *h, llmlab_engine *e, const llmlab_params *p,
                                 llmlab_err *err) {
    echo_state *s = h->alloc(sizeof *s);
    if (!s) return LLMLAB_ENOMEM;
    s->h = h;
    *self = s;
    return LLMLAB_OK;
}
static void echo_destroy(void *self) {
    if (self) ((echo_state *)self)->h->free(self);
}
static llmlab_status echo_begin(void *self, llmlab_seq *s, llmlab_err *err) { return LLMLAB_OK; }
static void echo_end(void *self, llmlab_seq *s) {}
static llmlab_status echo_propose(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((echo_state *)self)->h;
    H->step_add(st, s, H->seq_tokens(s)[H->seq_len(s) - 1], H->seq_kv_len(s), LLMLAB_ROW_LOGITS, -1);
    return LLMLAB_OK;
}
static llmlab_status echo_verify(void *self, llmlab_seq *s, llmlab_step *st, llmlab_err *err) {
    const llmlab_host *H = ((echo_state *)self)->h;
    int rows[256], n = H->step_rows(st, s, rows, 256);
    int slot = H->step_slot(st, rows[n - 1]);
    if (slot >= H->seq_kv_len(s)) H->seq_kv_keep(s, &slot, 1, err);
    int32_t t = H->seq_sample(s, H->step_logits(st, rows[n - 1]));
    return H->seq_accept(s, &t, 1, err);
}

static const llmlab_decoding_ops ops = {sizeof ops, echo_create, echo_destroy, echo_begin, echo_end,
                                        echo_propose, echo_verify};
static const char *const modes[] = {"plain", "fancy", NULL};
static const llmlab_param_spec params[] = {
    {"width", LLMLAB_PARAM_INT, "4", 1, 64, NULL, "an int parameter"},
    {"mode", LLMLAB_PARAM_ENUM, "plain", 1, 0, modes, "an enum parameter"},
};

static llmlab_plugin_desc desc = LLMLAB_PLUGIN_DESC_INIT(LLMLAB_PLUGIN_DECODING, "test_echo", "0.1",
                                                         "test plugin", params, 2, &ops);

#ifndef TEST_PLUGIN_NO_ENTRY
const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t major, uint32_t minor, const llmlab_host *host);
const llmlab_plugin_desc *llmlab_plugin_entry(uint32_t major, uint32_t minor, const llmlab_host *host) {
#if defined(TEST_PLUGIN_WRONG_MAJOR)
    desc.abi_major = LLMLAB_ABI_MAJOR + 1;
#elif defined(TEST_PLUGIN_TRUNCATED)
    desc.size = 24;
#elif defined(TEST_PLUGIN_NEWER_MINOR)
    desc.abi_minor = LLMLAB_ABI_MINOR + 5;
    desc.name = "test_echo_newer";
#elif defined(TEST_PLUGIN_BAD_KIND)
    desc.kind = (llmlab_plugin_kind)9;
#endif
    return &desc;
}
#else
int llmlab_not_an_entry(void);
int llmlab_not_an_entry(void) { return 0; }
#endif
