/* batch.c - building llmlab_batch values (see forward.h for the semantics). */
#include <stdlib.h>
#include <string.h>

#include "forward.h"

llmlab_batch *llmlab_batch_create(int cap) {
    if (cap <= 0) return NULL;
    llmlab_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cap = cap;
    b->mask_words = (cap + 63) / 64;
    b->token = malloc((size_t)cap * sizeof *b->token);
    b->seq = malloc((size_t)cap * sizeof *b->seq);
    b->pos = malloc((size_t)cap * sizeof *b->pos);
    b->flags = malloc((size_t)cap);
    b->parent = malloc((size_t)cap * sizeof *b->parent);
    b->mass_mode = calloc((size_t)cap, 1);
    b->mask = calloc((size_t)cap * (size_t)b->mask_words, sizeof *b->mask);
    if (!b->token || !b->seq || !b->pos || !b->flags || !b->parent || !b->mass_mode || !b->mask) {
        llmlab_batch_free(b);
        return NULL;
    }
    llmlab_batch_clear(b);
    return b;
}

void llmlab_batch_free(llmlab_batch *b) {
    if (!b) return;
    free(b->token);
    free(b->seq);
    free(b->pos);
    free(b->flags);
    free(b->parent);
    free(b->mass_mode);
    free(b->mask);
    free(b);
}

void llmlab_batch_clear(llmlab_batch *b) {
    if (b->vis == LLMLAB_VIS_MASK && b->n > 0)
        memset(b->mask, 0, (size_t)b->n * (size_t)b->mask_words * sizeof *b->mask);
    b->n = 0;
    b->vis = LLMLAB_VIS_CAUSAL;
    b->tap_layer = -1;
}

int llmlab_batch_add(llmlab_batch *b, int32_t token, int32_t seq, int32_t pos, uint8_t flags,
                     int32_t parent) {
    if (b->n >= b->cap) return -1;
    int i = b->n++;
    b->token[i] = token;
    b->seq[i] = seq;
    b->pos[i] = pos;
    b->flags[i] = flags;
    b->parent[i] = parent;
    b->mass_mode[i] = LLMLAB_MASS_ACC;
    memset(b->mask + (size_t)i * (size_t)b->mask_words, 0, (size_t)b->mask_words * sizeof *b->mask);
    return i;
}

void llmlab_batch_see(llmlab_batch *b, int i, int j) {
    b->mask[(size_t)i * (size_t)b->mask_words + (size_t)(j / 64)] |= (uint64_t)1 << (j % 64);
}
