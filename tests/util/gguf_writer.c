/* gguf_writer.c - a GGUF writer for tests, independent of core/gguf.c. */
#include "gguf_writer.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

void gw_put(gw_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

void gw_put_le(gw_buf *b, uint64_t v, int bytes) {
    unsigned char t[8];
    for (int i = 0; i < bytes; i++) t[i] = (unsigned char)(v >> (8 * i));
    gw_put(b, t, (size_t)bytes);
}

void gw_put_u32(gw_buf *b, uint32_t v) { gw_put_le(b, v, 4); }
void gw_put_u64(gw_buf *b, uint64_t v) { gw_put_le(b, v, 8); }

void gw_put_str(gw_buf *b, const char *s, size_t len) {
    gw_put_u64(b, len);
    gw_put(b, s, len);
}

void gw_put_cstr(gw_buf *b, const char *s) { gw_put_str(b, s, strlen(s)); }

void gw_pad_to(gw_buf *b, size_t align) {
    while (b->n % align) gw_put_le(b, 0, 1);
}

char *gw_write_file(const char *dir, const char *name, const gw_buf *b) {
    char *p = fsu_join(dir, name);
    cr_assert_not_null(p);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "cannot create %s", p);
    cr_assert_eq(fwrite(b->p, 1, b->n, f), b->n, "short write to %s", p);
    cr_assert_eq(fclose(f), 0, "cannot close %s", p);
    return p;
}
