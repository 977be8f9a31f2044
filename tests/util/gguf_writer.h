/* gguf_writer.h - a GGUF writer for tests, byte by byte.
 *
 * It is written from the format description alone and shares nothing with the
 * reader in core/gguf.c (its own little-endian encoding), so a misreading of the
 * format on one side does not cancel out on the other.  It writes whatever it is
 * told, damaged files included: the tests decide what goes where. */
#ifndef LLMLAB_TEST_GGUF_WRITER_H
#define LLMLAB_TEST_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

/* GGUF metadata value types (the type tag before each value). */
enum {
    GW_U8, GW_I8, GW_U16, GW_I16, GW_U32, GW_I32, GW_F32, GW_BOOL, GW_STR, GW_ARR, GW_U64, GW_I64, GW_F64
};

/* A growing byte buffer; zero-initialise it, free p when done. */
typedef struct {
    unsigned char *p; /* bytes written so far */
    size_t n, cap;    /* used, allocated */
} gw_buf;

/* Appends n raw bytes (asserting on allocation failure). */
void gw_put(gw_buf *b, const void *d, size_t n);
/* Appends the low `bytes` bytes of v, little-endian. */
void gw_put_le(gw_buf *b, uint64_t v, int bytes);
void gw_put_u32(gw_buf *b, uint32_t v);
void gw_put_u64(gw_buf *b, uint64_t v);
/* A GGUF string: uint64 byte count, then the bytes (len of them; NULs allowed). */
void gw_put_str(gw_buf *b, const char *s, size_t len);
/* The same for a NUL-terminated string. */
void gw_put_cstr(gw_buf *b, const char *s);
/* Zero bytes up to the next multiple of align. */
void gw_pad_to(gw_buf *b, size_t align);
/* Writes the buffer to dir/name (asserting success); returns the malloc'd path. */
char *gw_write_file(const char *dir, const char *name, const gw_buf *b);

#endif
