/* cmd_report.c - `llmlab report FILE.h5`: summary metrics grouped by sweep
 * parameters as a table (text, Markdown, CSV) and plots (core/report.h). */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "core/report.h"

static void report_usage(FILE *f) {
    fprintf(f, "usage: llmlab report FILE.h5 [--by KEY,...] [--metric NAME,...] [--format text|md|csv]\n"
               "                     [--plot DIR]\n"
               "  FILE.h5       a merged sweep (llmlab merge) or any results file\n"
               "  --by          group by these sweep parameters, columns or run attributes\n"
               "                (default: the sweep's parameters; for a plain file, each run)\n"
               "  --metric      summary columns to report (default: every numeric one)\n"
               "  --format      text (default), md (Markdown) or csv\n"
               "  --plot DIR    also draw PNG and SVG plots there with gnuplot: each metric against the\n"
               "                first --by key (a line per value of the second), latency CDFs, KV memory\n");
}

int llmlab_cmd_report(int argc, char **argv) {
    llmlab_report_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            report_usage(stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--by") ? &o.by : !strcmp(a, "--metric") ? &o.metrics
                           : !strcmp(a, "--plot") ? &o.plot_dir : NULL;
        if (dst || !strcmp(a, "--format")) {
            const char *v = llmlab_arg_value("report", argc, argv, &i);
            if (!v) return 2;
            if (dst) {
                *dst = v;
            } else if (!strcmp(v, "text") || !strcmp(v, "md") || !strcmp(v, "csv")) {
                o.format = v[0] == 't' ? LLMLAB_REPORT_TEXT : v[0] == 'm' ? LLMLAB_REPORT_MD : LLMLAB_REPORT_CSV;
            } else {
                fprintf(stderr, "llmlab report: bad value for --format: '%s' (text, md or csv)\n", v);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "llmlab report: unknown option '%s'\n", a);
            report_usage(stderr);
            return 2;
        } else if (!o.path) {
            o.path = a;
        } else {
            fprintf(stderr, "llmlab report: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!o.path) {
        report_usage(stderr);
        return 2;
    }
    llmlab_err err = {0};
    if (llmlab_report(&o, stdout, &err)) {
        fprintf(stderr, "llmlab report: %s\n", err.msg);
        return err.code == LLMLAB_EINVAL ? 2 : 1;
    }
    return 0;
}
