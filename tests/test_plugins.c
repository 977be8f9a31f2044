/* test_plugins.c - the plugin ABI and registries: refusals with exact reasons,
 * newer minors loading, parameter validation messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/params.h"
#include "core/registry.h"

static llmlab_registry *reg(void) {
    llmlab_registry *r = NULL;
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_create(&r, &err), LLMLAB_OK, "%s", err.msg);
    return r;
}

static llmlab_status load(llmlab_registry *r, const char *variant, llmlab_err *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/testplugin_%s.so", LLMLAB_TEST_PLUGIN_DIR, variant);
    return llmlab_registry_load(r, path, err);
}

Test(plugins, builtins_are_registered) {
    llmlab_registry *r = reg();
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "autoregressive"));
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_ATTENTION, "dense"));
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_QUANT, "none"));
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_SCHED, "fcfs"));
    cr_assert_null(llmlab_registry_find(r, LLMLAB_PLUGIN_SCHED, "autoregressive"), "registries are per kind");
    llmlab_registry_free(r);
}

Test(plugins, good_plugin_loads_and_duplicate_is_refused) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "good", &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "test_echo"));
    cr_assert_eq(load(r, "good", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "already registered"), "%s", err.msg);
    llmlab_registry_free(r);
}

Test(plugins, wrong_major_is_refused_with_versions) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "wrong_major", &err), LLMLAB_EINVAL);
    char want[64];
    snprintf(want, sizeof want, "ABI %d.", LLMLAB_ABI_MAJOR + 1);
    cr_assert(strstr(err.msg, want) && strstr(err.msg, "major versions must match"), "%s", err.msg);
    cr_assert_null(llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "test_echo"));
    llmlab_registry_free(r);
}

Test(plugins, truncated_descriptor_is_refused) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "truncated", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "truncated descriptor") && strstr(err.msg, "24 bytes"), "%s", err.msg);
    llmlab_registry_free(r);
}

Test(plugins, missing_entry_symbol_is_refused) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "no_entry", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "no entry symbol 'llmlab_plugin_entry'"), "%s", err.msg);
    llmlab_registry_free(r);
}

Test(plugins, unknown_kind_is_refused) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "bad_kind", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "unknown kind 9"), "%s", err.msg);
    llmlab_registry_free(r);
}

Test(plugins, newer_minor_loads) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "newer_minor", &err), LLMLAB_OK, "%s", err.msg);
    cr_assert_not_null(llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "test_echo_newer"));
    llmlab_registry_free(r);
}

Test(plugins, missing_file_names_the_path) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(llmlab_registry_load(r, "/nonexistent/plugin.so", &err), LLMLAB_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/plugin.so"), "%s", err.msg);
    llmlab_registry_free(r);
}

static llmlab_status make_params(const llmlab_plugin_desc *d, const char *key, const char *text, llmlab_err *err) {
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, key, text);
    llmlab_params *p = NULL;
    llmlab_status st = llmlab_params_create(&p, d, &v, 1, err);
    llmlab_params_free(p);
    return st;
}

Test(plugins, param_errors_name_plugin_param_and_allowed_values) {
    llmlab_registry *r = reg();
    llmlab_err err = {0};
    cr_assert_eq(load(r, "good", &err), LLMLAB_OK);
    const llmlab_plugin_desc *d = llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "test_echo");
    cr_assert_eq(make_params(d, "width", "100", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "'test_echo'") && strstr(err.msg, "'width'") && strstr(err.msg, "[1, 64]"), "%s", err.msg);
    cr_assert_eq(make_params(d, "width", "2.5", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "integer"), "%s", err.msg);
    cr_assert_eq(make_params(d, "mode", "weird", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "plain, fancy"), "%s", err.msg);
    cr_assert_eq(make_params(d, "colour", "red", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "unknown parameter 'colour'") && strstr(err.msg, "width, mode"), "%s", err.msg);
    cr_assert_eq(make_params(d, "width", "8", &err), LLMLAB_OK);
    const llmlab_plugin_desc *ar = llmlab_registry_find(r, LLMLAB_PLUGIN_DECODING, "autoregressive");
    cr_assert_eq(make_params(ar, "temperature", "hot", &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "'temperature' must be a number"), "%s", err.msg);
    llmlab_registry_free(r);
}

static const llmlab_param_spec required_spec[] = {
    {"draft", LLMLAB_PARAM_STRING, NULL, 1, 0, NULL, "path of the draft model"},
};
static const llmlab_decoding_ops dummy_ops = {.size = sizeof dummy_ops};
static const llmlab_plugin_desc required_desc = LLMLAB_PLUGIN_DESC_INIT(
    LLMLAB_PLUGIN_DECODING, "needs_draft", "1", "", required_spec, 1, &dummy_ops);

Test(plugins, missing_required_param_and_defaults) {
    llmlab_err err = {0};
    llmlab_params *p = NULL;
    cr_assert_eq(llmlab_params_create(&p, &required_desc, NULL, 0, &err), LLMLAB_EINVAL);
    cr_assert(strstr(err.msg, "missing required parameter 'draft'"), "%s", err.msg);
    llmlab_param_value v;
    llmlab_param_value_from_text(&v, "draft", "/models/d");
    cr_assert_eq(llmlab_params_create(&p, &required_desc, &v, 1, &err), LLMLAB_OK);
    cr_assert_str_eq(llmlab_params_string(p, "draft"), "/models/d");
    llmlab_params_free(p);
}
