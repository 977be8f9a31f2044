/* error.h - the one error record every fallible llmlab call fills in.
 *
 * Calls return an llmlab_status and, when given a non-NULL llmlab_err, write a
 * human-readable message naming the problem (file, tensor, key, value).  There is
 * no global "last error": the caller owns the record, as in SQLite's sqlite3_errmsg
 * per connection, so threads and nested calls never clobber each other.
 */
#ifndef LLMLAB_ERROR_H
#define LLMLAB_ERROR_H

#include "llmlab/llmlab.h"

/* Writes code and a printf-style message into err (if err is non-NULL) and
 * returns code, so error paths read `return llmlab_err_set(err, ..., ...);`. */
llmlab_status llmlab_err_set(llmlab_err *err, llmlab_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "context: " to an existing message (e.g. the file name). */
llmlab_status llmlab_err_prefix(llmlab_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
