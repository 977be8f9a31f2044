/* proc.h - running a shell command from a test and capturing its output. */
#ifndef LLMLAB_TEST_PROC_H
#define LLMLAB_TEST_PROC_H

#include <stddef.h>

/* Runs cmd with sh; stdout into out[cap], stderr into errout[ecap] (both
 * NUL-terminated, truncated).  Returns the exit status, -1 if killed. */
int proc_run(const char *cmd, char *out, size_t cap, char *errout, size_t ecap);

/* Writes text to path (aborting the test on failure). */
void proc_write_file(const char *path, const char *text);

#endif
