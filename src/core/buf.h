/*
 * buf.h: growable byte buffers and small utilities (core: libc only; doc/design.md).
 */
#ifndef ACH_CORE_BUF_H
#define ACH_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ach_buf {
	char *data; /* always NUL-terminated when not NULL */
	size_t len;
	size_t cap;
} ach_buf;

/* Each returns 0, or -1 when memory ran out (the buffer is left as it was). */
int ach_buf_add(ach_buf *b, const void *p, size_t n);
int ach_buf_reserve(ach_buf *b, size_t extra); /* room for `extra` more bytes */
int ach_buf_adds(ach_buf *b, const char *s);
int ach_buf_addc(ach_buf *b, char c);
int ach_buf_printf(ach_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ach_buf_reset(ach_buf *b);
void ach_buf_free(ach_buf *b);
/* Hands the bytes to the caller (malloc'd, NUL-terminated, never NULL on success). */
char *ach_buf_take(ach_buf *b);

char *ach_strdup(const char *s); /* NULL for NULL or out of memory */
char *ach_strndup(const char *s, size_t n);
void ach_free_secret(char *s); /* overwrites, then frees */
int ach_memeq_const(const void *a, size_t alen, const void *b, size_t blen);
int64_t ach_clamp_i64(double d); /* saturating, NaN -> 0 */

#endif
