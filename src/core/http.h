/*
 * http.h: what the engine reads of HTTP (core: libc only; doc/design.md).
 */
#ifndef ACH_CORE_HTTP_H
#define ACH_CORE_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* Finds a header in a raw header block; returns its value (not NUL-terminated) and length. */
const char *ach_header_find(const char *block, size_t len, const char *name, size_t *vlen);
/* An HTTP date as UNIX time; 0 when it is not one. */
int64_t ach_parse_http_date(const char *s, size_t n);
/* Seconds a Retry-After value asks for (-1: not one). A date counts from the answer's Date, or
 * when it had none from `wall` (UNIX time here). */
double ach_parse_retry_after(const char *v, size_t n, int64_t date, double wall);
int ach_method_idempotent(const char *method); /* GET, OPTIONS, HEAD: safe to send again */

#endif
