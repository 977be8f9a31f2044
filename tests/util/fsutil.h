/* fsutil.h - temp directories and raw file helpers for tests. */
#ifndef LLMLAB_TEST_FSUTIL_H
#define LLMLAB_TEST_FSUTIL_H

#include <stddef.h>

/* Creates a fresh directory /tmp/llmlab-test-XXXXXX; returns a malloc'd path or NULL. */
char *fsu_mkdtemp(void);
/* Removes dir and everything under it (no-op on NULL); frees nothing. */
void fsu_rmtree(const char *dir);
/* dir + "/" + name, malloc'd. */
char *fsu_join(const char *dir, const char *name);
/* Writes n bytes to path (truncating); 0 on success. */
int fsu_write(const char *path, const void *data, size_t n);
/* Reads a whole file; malloc'd, NUL-terminated, *n = bytes (may be NULL). NULL on error. */
char *fsu_read(const char *path, size_t *n);
/* Truncates path to n bytes; 0 on success. */
int fsu_truncate(const char *path, size_t n);
/* 1 if path exists. */
int fsu_exists(const char *path);
/* Writes a safetensors file whose header is exactly `header` (length prefix added)
 * followed by data_len bytes of a fixed pattern; 0 on success. */
int fsu_write_st_raw(const char *path, const char *header, size_t data_len);

#endif
