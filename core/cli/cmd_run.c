/* cmd_run.c - `llmlab run SCRIPT.lua` and `llmlab plugins`: settings from
 * llmlab.ini (or --config), overridden by the command line, then the registry
 * (built-ins + plugin_path + LLMLAB_PLUGIN_PATH), then the script. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/lua_api.h"
#include "core/params.h"

static void run_usage(FILE *f) {
    fprintf(f, "usage: llmlab run SCRIPT.lua [--set key=value ...] [--config FILE] [--threads N]\n"
               "                  [--backend cpu|cuda] [--plugin-path DIRS]\n"
               "  --set k=v      passed to the script as llmlab.args.k (numbers and booleans converted)\n"
               "  --config FILE  settings file (default: ./llmlab.ini, then ~/.config/llmlab/llmlab.ini)\n"
               "  --threads, --backend, --plugin-path override the settings file\n");
}

/* Loads settings (file, then command-line overrides in order) and the registry. */
static int setup(int argc, char **argv, const char *cmd, llmlab_settings *s, llmlab_registry **reg,
                 const char **script, char ***sets, int *n_sets) {
    const char *config = NULL;
    char used[1024];
    llmlab_err err = {0};
    llmlab_settings_defaults(s);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[i + 1];
    if (llmlab_settings_find(s, config, used, sizeof used, &err)) goto fail;
    *sets = calloc((size_t)argc, sizeof **sets);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *key = !strcmp(o, "--threads") ? "threads" : !strcmp(o, "--backend") ? "backend"
                        : !strcmp(o, "--plugin-path") ? "plugin_path" : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            run_usage(stdout);
            return 1;
        }
        if (key || !strcmp(o, "--set") || !strcmp(o, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "llmlab %s: %s needs a value\n", cmd, o);
                return 2;
            }
            const char *v = argv[++i];
            if (key && llmlab_settings_set(s, key, v, &err)) goto fail;
            if (!strcmp(o, "--set")) {
                if (!strchr(v, '=') || v[0] == '=') {
                    fprintf(stderr, "llmlab %s: --set '%s': expected key=value\n", cmd, v);
                    return 2;
                }
                (*sets)[(*n_sets)++] = argv[i];
            }
        } else if (o[0] == '-') {
            fprintf(stderr, "llmlab %s: unknown option '%s'\n", cmd, o);
            run_usage(stderr);
            return 2;
        } else if (script && !*script) {
            *script = o;
        } else {
            fprintf(stderr, "llmlab %s: unexpected argument '%s'\n", cmd, o);
            return 2;
        }
    }
    if (llmlab_settings_apply_env(s, &err)) goto fail;
    if (llmlab_registry_create(reg, &err)) goto fail;
    if (llmlab_registry_load_path(*reg, s->plugin_path, &err)) goto fail;
    return 0;
fail:
    fprintf(stderr, "llmlab %s: %s\n", cmd, err.msg);
    return err.code == LLMLAB_EINVAL ? 2 : 1;
}

int llmlab_cmd_run(int argc, char **argv) {
    llmlab_settings s;
    llmlab_registry *reg = NULL;
    const char *script = NULL;
    char **sets = NULL;
    int n_sets = 0;
    int rc = setup(argc, argv, "run", &s, &reg, &script, &sets, &n_sets);
    if (rc == 0 && !script) {
        fprintf(stderr, "llmlab run: need a SCRIPT.lua\n");
        run_usage(stderr);
        rc = 2;
    }
    if (rc == 0) {
        llmlab_lua_opts o = {script, n_sets, sets, &s, reg};
        llmlab_err err = {0};
        if (llmlab_lua_run(&o, &err)) {
            fprintf(stderr, "llmlab run: %s\n", err.msg);
            rc = 1;
        }
    }
    llmlab_registry_free(reg);
    llmlab_settings_free(&s);
    free(sets);
    return rc == 1 && argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : rc;
}

static void print_param(const llmlab_param_spec *sp) {
    char range[96] = "";
    if (sp->min <= sp->max && (sp->type == LLMLAB_PARAM_INT || sp->type == LLMLAB_PARAM_FLOAT))
        snprintf(range, sizeof range, " in [%g, %g]", sp->min, sp->max);
    if (sp->type == LLMLAB_PARAM_ENUM) {
        snprintf(range, sizeof range, " one of {");
        for (int c = 0; sp->choices[c]; c++)
            snprintf(range + strlen(range), sizeof range - strlen(range), "%s%s", c ? ", " : "", sp->choices[c]);
        snprintf(range + strlen(range), sizeof range - strlen(range), "}");
    }
    printf("    %-14s %-6s default %-8s%s\n                   %s\n", sp->name, llmlab_param_type_name(sp->type),
           sp->default_value ? sp->default_value : "(required)", range, sp->doc ? sp->doc : "");
}

int llmlab_cmd_plugins(int argc, char **argv) {
    llmlab_settings s;
    llmlab_registry *reg = NULL;
    char **sets = NULL;
    int n_sets = 0;
    int rc = setup(argc, argv, "plugins", &s, &reg, NULL, &sets, &n_sets);
    if (rc == 0) {
        static const llmlab_plugin_kind kinds[] = {LLMLAB_PLUGIN_DECODING, LLMLAB_PLUGIN_ATTENTION,
                                                   LLMLAB_PLUGIN_QUANT, LLMLAB_PLUGIN_SCHED};
        for (int k = 0; k < 4; k++) {
            printf("%s plugins:\n", llmlab_plugin_kind_name(kinds[k]));
            for (int i = 0; i < llmlab_registry_count(reg); i++) {
                const llmlab_registry_entry *en = llmlab_registry_get(reg, i);
                if (en->desc->kind != kinds[k]) continue;
                printf("  %s %s (%s) - %s\n", en->desc->name, en->desc->version ? en->desc->version : "",
                       en->origin, en->desc->doc ? en->desc->doc : "");
                for (int p = 0; p < en->desc->n_params; p++) print_param(&en->desc->params[p]);
            }
        }
    }
    llmlab_registry_free(reg);
    llmlab_settings_free(&s);
    free(sets);
    return rc;
}
