/* error.c - filling llmlab_err records. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

llmlab_status llmlab_err_set(llmlab_err *err, llmlab_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

llmlab_status llmlab_err_prefix(llmlab_err *err, const char *fmt, ...) {
    if (!err) return LLMLAB_OK;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Shift the old message right and put "prefix: " in front, truncating the tail. */
    size_t cap = sizeof err->msg, plen = strlen(prefix);
    if (plen + 2 >= cap) plen = cap - 3;
    size_t olen = strnlen(err->msg, cap - 1);
    if (plen + 2 + olen >= cap) olen = cap - 1 - plen - 2;
    memmove(err->msg + plen + 2, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + olen] = '\0';
    return err->code;
}

const char *llmlab_status_name(llmlab_status s) {
    switch (s) {
    case LLMLAB_OK: return "ok";
    case LLMLAB_EINVAL: return "invalid argument";
    case LLMLAB_EIO: return "i/o error";
    case LLMLAB_EFORMAT: return "bad file format";
    case LLMLAB_ENOMEM: return "out of memory";
    case LLMLAB_ENOKV: return "out of KV-cache memory";
    case LLMLAB_EUNSUPPORTED: return "unsupported";
    }
    return "unknown error";
}
