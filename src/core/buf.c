/*
 * buf.c: growable byte buffers and the small utilities every layer uses (constant-time
 * comparison, secret wiping, saturating casts). Core: libc only (doc/design.md, "Layers").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

int ach_buf_reserve(ach_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;
	if (extra > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int ach_buf_add(ach_buf *b, const void *p, size_t n)
{
	if (ach_buf_reserve(b, n) != 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int ach_buf_adds(ach_buf *b, const char *s)
{
	return ach_buf_add(b, s, strlen(s));
}

int ach_buf_addc(ach_buf *b, char c)
{
	return ach_buf_add(b, &c, 1);
}

int ach_buf_printf(ach_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char small[256];
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof small)
		return ach_buf_add(b, small, (size_t)n);
	if (ach_buf_reserve(b, (size_t)n) != 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void ach_buf_reset(ach_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void ach_buf_free(ach_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *ach_buf_take(ach_buf *b)
{
	char *p;
	if (b->data == NULL && ach_buf_add(b, "", 0) != 0)
		return NULL;
	p = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

char *ach_strndup(const char *s, size_t n)
{
	char *p;
	if (s == NULL)
		return NULL;
	p = malloc(n + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *ach_strdup(const char *s)
{
	return s == NULL ? NULL : ach_strndup(s, strlen(s));
}

void ach_free_secret(char *s)
{
	if (s == NULL)
		return;
	/* volatile so the wipe is not optimised away before free */
	for (volatile char *p = s; *p != '\0'; p++)
		*p = '\0';
	free(s);
}

/* Compares in time that depends only on the lengths, not on where the bytes differ. */
int ach_memeq_const(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	unsigned char diff = (unsigned char)(alen != blen);
	size_t i, n = alen < blen ? alen : blen;
	for (i = 0; i < n; i++)
		diff |= (unsigned char)(x[i] ^ y[i]);
	return diff == 0;
}

int64_t ach_clamp_i64(double d)
{
	if (d != d)
		return 0;
	if (d >= 9223372036854775807.0)
		return INT64_MAX;
	if (d <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)d;
}
