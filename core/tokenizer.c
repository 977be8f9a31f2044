/* tokenizer.c - the byte-level fallback tokenizer. */
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>

int llmlab_bytes_encode(const char *text, int32_t *ids) {
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) ids[n++] = *p;
    return n;
}

size_t llmlab_bytes_decode_one(int32_t id, char *buf, size_t cap) {
    if (cap == 0) return 0;
    if (id >= 0 && id < 256) {
        if (cap < 2) return 0;
        buf[0] = (char)id;
        buf[1] = 0;
        return 1;
    }
    int w = snprintf(buf, cap, "<|%d|>", (int)id);
    return w < 0 ? 0 : ((size_t)w >= cap ? cap - 1 : (size_t)w);
}
