/* fuzz_safetensors.c - libFuzzer harness for safetensors header validation.
 *
 * Each input is written as a file and opened; whatever the bytes, the open must
 * either succeed with every tensor inside the mapping or fail with a message.
 * Build and run: see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) snprintf(path, sizeof path, "/tmp/llmlab-fuzz-st-%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    llmlab_st_set set = {0};
    llmlab_err err = {0};
    if (llmlab_st_open_file(&set, path, &err) == LLMLAB_OK) {
        const uint8_t *base = set.files[0].map, *end = base + set.files[0].size;
        unsigned sum = 0;
        for (int i = 0; i < set.n_tensors; i++) {
            const llmlab_st_tensor *t = &set.tensors[i];
            const uint8_t *p = t->data;
            if (p < base || p + t->nbytes > end || p + t->nbytes < p) abort();
            if (t->nbytes) sum += p[0] + p[t->nbytes - 1]; /* touch both ends */
            if (llmlab_st_find(&set, t->name) == NULL) abort();
        }
        (void)sum;
        llmlab_st_close(&set);
    } else if (err.msg[0] == 0 || set.n_files != 0) {
        abort(); /* every failure explains itself and leaves the set closed */
    }
    return 0;
}
