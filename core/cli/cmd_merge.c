/* cmd_merge.c - `llmlab merge OUT.h5 TASK_FILES_OR_DIRS...`: a sweep's task files
 * into one results file with a /sweep table (core/merge.h, docs/sweeps.md). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/merge.h"

static void merge_usage(FILE *f) {
    fprintf(f, "usage: llmlab merge OUT.h5 INPUT...\n"
               "  INPUT: a sweep directory (its task-*.h5 files), a task file, or a merged file\n"
               "  OUT.h5 gets every task's run and a /sweep table: one row per task with its point,\n"
               "  status (ok, failed, missing), error and summary metrics.  OUT.h5 is replaced.\n");
}

int llmlab_cmd_merge(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            merge_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "llmlab merge: unknown option '%s'\n", argv[i]);
            merge_usage(stderr);
            return 2;
        }
    if (argc < 3) {
        merge_usage(stderr);
        return 2;
    }
    llmlab_merge_stats s;
    llmlab_err err = {0};
    if (llmlab_merge(argv[1], (const char *const *)argv + 2, argc - 2, &s, &err)) {
        fprintf(stderr, "llmlab merge: %s\n", err.msg);
        return err.code == LLMLAB_EINVAL || err.code == LLMLAB_EFORMAT ? 2 : 1;
    }
    printf("merged %lld tasks into %s: %lld ok, %lld failed, %lld missing\n", (long long)s.tasks, argv[1],
           (long long)s.ok, (long long)s.failed, (long long)s.missing);
    return 0;
}
