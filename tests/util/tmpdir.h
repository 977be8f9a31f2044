/* tmpdir.h - the fresh temporary directory a test suite's .init makes and its
 * .fini removes again. */
#ifndef LLMLAB_TEST_TMPDIR_H
#define LLMLAB_TEST_TMPDIR_H

/* A fresh directory /tmp/llmlab-test-XXXXXX (malloc'd path); asserts success. */
char *tmpdir_make(void);
/* Removes dir and everything under it, then frees the path (no-op on NULL). */
void tmpdir_remove(char *dir);

#endif
