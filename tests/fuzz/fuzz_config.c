/* fuzz_config.c - libFuzzer harness for config.json parsing.
 *
 * Any accepted config must survive llmlab_config_to_json -> llmlab_config_parse
 * unchanged; any rejected one must come with a message.  Build and run: see
 * tests/fuzz/README.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    llmlab_config a, b;
    llmlab_err err = {0};
    if (llmlab_config_parse(&a, text, &err) == LLMLAB_OK) {
        char *j = llmlab_config_to_json(&a);
        if (!j) abort();
        if (llmlab_config_parse(&b, j, &err) != LLMLAB_OK) abort();
        if (memcmp(&a, &b, sizeof a)) abort();
        free(j);
    } else if (err.msg[0] == 0) {
        abort();
    }
    free(text);
    return 0;
}
