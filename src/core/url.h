/*
 * url.h: URLs and the encodings requests are made of (core: libc only; doc/design.md).
 */
#ifndef ACH_CORE_URL_H
#define ACH_CORE_URL_H

#include <stddef.h>

#include "core/buf.h"

int ach_url_escape(ach_buf *b, const char *s, size_t n);
int ach_hexval(int c); /* a hex digit's value, or -1 */
/* Appends the number in the shortest form that reads back the same, never with an exponent.
 * Returns 0, -1 out of memory, -2 not finite. */
int ach_format_number(ach_buf *b, double n);

typedef struct ach_url {
	int https;
	char *origin; /* scheme://host[:port], lower-case scheme and host */
	char *host;
	char *path;   /* the path below the origin, without a trailing slash ("" for none) */
} ach_url;

/* Parses an absolute http(s) URL; returns NULL on success or a message. */
const char *ach_url_parse(const char *s, ach_url *out);
void ach_url_free(ach_url *u);
int ach_host_is_loopback(const char *host);
/* Copies s with the values of secret query parameters (code, state, access_token,
 * refresh_token, client_secret) replaced by "[redacted]". */
int ach_redact_url(ach_buf *b, const char *s);
int ach_base64(ach_buf *b, const unsigned char *s, size_t n);
int ach_json_string(ach_buf *b, const char *s); /* a JSON string literal for s */
/* The UTF-8 bytes of code point cp (at most 0x10FFFF) into out; returns how many. */
size_t ach_utf8(unsigned long cp, char out[4]);

#endif
