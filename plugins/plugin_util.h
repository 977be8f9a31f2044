/* plugin_util.h - the error helper every built-in plugin shares.  Header-only and
 * ABI-clean: it only fills the llmlab_err the host passed in. */
#ifndef LLMLAB_PLUGINS_PLUGIN_UTIL_H
#define LLMLAB_PLUGINS_PLUGIN_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include "llmlab/plugin.h"

/* Writes code and a printf-style message into err (when non-NULL); returns code. */
static inline llmlab_status llmlab_plugin_fail(llmlab_err *err, llmlab_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static inline llmlab_status llmlab_plugin_fail(llmlab_err *err, llmlab_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

#endif
