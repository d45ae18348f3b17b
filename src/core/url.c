/*
 * url.c: percent-encoding, numbers written without exponents, base64, JSON string literals,
 * and the small URL parser the client needs (origin, loopback, redaction). Core: libc only.
 */
#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"

static int is_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

int ach_url_escape(ach_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_unreserved(c)) {
			if (ach_buf_addc(b, (char)c) != 0)
				return -1;
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			if (ach_buf_add(b, e, 3) != 0)
				return -1;
		}
	}
	return 0;
}

/* snprintf and strtod write and read the decimal point of LC_NUMERIC, which a host may have
 * set (fr_FR: "1,5"): the text is made and checked in that form, then given a '.'. */
static void c_decimal_point(char *s)
{
	const char *dp = localeconv()->decimal_point;
	size_t dn = dp != NULL ? strlen(dp) : 0;
	char *at;
	if (dn == 0 || strcmp(dp, ".") == 0 || (at = strstr(s, dp)) == NULL)
		return;
	*at = '.';
	memmove(at + 1, at + dn, strlen(at + dn) + 1);
}

int ach_format_number(ach_buf *b, double n)
{
	char tmp[400];
	int prec;
	if (!isfinite(n))
		return -2;
	if (n == floor(n) && fabs(n) < 9.2e18) {
		snprintf(tmp, sizeof tmp, "%lld", (long long)n);
		return ach_buf_adds(b, tmp);
	}
	/* shortest %.Ng that reads back exactly; then rewrite any exponent as plain digits */
	for (prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, (double)n);
		if (strtod(tmp, NULL) == (double)n)
			break;
	}
	c_decimal_point(tmp);
	if (strchr(tmp, 'e') != NULL) {
		int exp10 = 0, digits;
		char *e = strchr(tmp, 'e');
		exp10 = atoi(e + 1);
		/* significant digits after the point in the %g form */
		digits = prec - 1 - exp10;
		if (digits < 0)
			digits = 0;
		if (digits > 340)
			digits = 340;
		snprintf(tmp, sizeof tmp, "%.*f", digits, (double)n);
		c_decimal_point(tmp);
		/* trim trailing zeros of the fraction */
		if (strchr(tmp, '.') != NULL) {
			size_t len = strlen(tmp);
			while (len > 0 && tmp[len - 1] == '0')
				tmp[--len] = '\0';
			if (len > 0 && tmp[len - 1] == '.')
				tmp[--len] = '\0';
		}
	}
	return ach_buf_adds(b, tmp);
}

int ach_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

const char *ach_url_parse(const char *s, ach_url *out)
{
	const char *p, *host, *hend, *pend;
	ach_buf origin = {0};
	size_t i, plen;
	memset(out, 0, sizeof *out);
	if (strncasecmp(s, "https://", 8) == 0) {
		out->https = 1;
		p = s + 8;
	} else if (strncasecmp(s, "http://", 7) == 0) {
		p = s + 7;
	} else {
		return "must start with https:// or http://";
	}
	host = p;
	while (*p != '\0' && *p != '/' && *p != '?' && *p != '#')
		p++;
	hend = p;
	if (hend == host)
		return "has no host";
	for (const char *c = host; c < hend; c++)
		if (*c == '@' || isspace((unsigned char)*c) || (unsigned char)*c < 0x20)
			return "must not contain credentials or spaces in the host part";
	pend = p + strcspn(p, "?#");
	if (*pend != '\0')
		return "must not contain a query or fragment";
	if (ach_buf_adds(&origin, out->https ? "https://" : "http://") != 0)
		return "out of memory";
	for (const char *c = host; c < hend; c++)
		if (ach_buf_addc(&origin, (char)tolower((unsigned char)*c)) != 0) {
			ach_buf_free(&origin);
			return "out of memory";
		}
	out->origin = ach_buf_take(&origin);
	/* host without port ([v6] keeps its brackets off) */
	{
		const char *h = out->origin + (out->https ? 8 : 7), *end;
		if (*h == '[') {
			end = strchr(h, ']');
			if (end == NULL) {
				ach_url_free(out);
				return "has a bad IPv6 host";
			}
			out->host = ach_strndup(h + 1, (size_t)(end - h - 1));
		} else {
			end = strchr(h, ':');
			out->host = ach_strndup(h, end ? (size_t)(end - h) : strlen(h));
		}
	}
	plen = (size_t)(pend - hend);
	while (plen > 0 && hend[plen - 1] == '/')
		plen--;
	out->path = ach_strndup(hend, plen);
	if (out->host == NULL || out->path == NULL) {
		ach_url_free(out);
		return "out of memory";
	}
	for (i = 0; out->path[i] != '\0'; i++)
		if ((unsigned char)out->path[i] <= 0x20) {
			ach_url_free(out);
			return "must not contain spaces or control characters";
		}
	return NULL;
}

void ach_url_free(ach_url *u)
{
	free(u->origin);
	free(u->host);
	free(u->path);
	memset(u, 0, sizeof *u);
}

/* localhost, ::1, or an IPv4 literal 127.x.y.z: a name that merely starts with "127." is
 * somebody's host on the network. */
int ach_host_is_loopback(const char *host)
{
	int parts = 0;
	const char *p = host;
	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
		return 1;
	if (strncmp(host, "127.", 4) != 0)
		return 0;
	while (*p != '\0') {
		int digits = 0, value = 0;
		while (*p >= '0' && *p <= '9' && digits < 4) {
			value = value * 10 + (*p - '0');
			p++;
			digits++;
		}
		if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && p[-digits] == '0'))
			return 0; /* a leading zero is octal to libcurl: not the address we checked */
		parts++;
		if (*p == '.')
			p++;
		else if (*p != '\0')
			return 0;
	}
	return parts == 4 && p[-1] != '.';
}

static const char *const secret_params[] = {
	"code", "state", "access_token", "refresh_token", "client_secret", "id_token", "password",
	NULL,
};

/* Whether a query parameter's name (as written: any case, percent-encoded, `-` for `_`) is
 * one whose value is a secret. A server decodes the name before it reads it, so the check
 * does too: `Access_Token`, `access%5Ftoken` and `CLIENT-SECRET` are all secrets. */
static int secret_param(const char *k, size_t n)
{
	char name[24];
	size_t i, m = 0;
	int j;
	for (i = 0; i < n; i++) {
		int c = (unsigned char)k[i];
		if (c == '%' && i + 2 < n && ach_hexval((unsigned char)k[i + 1]) >= 0 &&
		    ach_hexval((unsigned char)k[i + 2]) >= 0) {
			c = ach_hexval((unsigned char)k[i + 1]) * 16 + ach_hexval((unsigned char)k[i + 2]);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		c = tolower(c);
		if (c == '-')
			c = '_';
		if (m + 1 >= sizeof name)
			return 0; /* longer than any secret name */
		name[m++] = (char)c;
	}
	name[m] = '\0';
	for (j = 0; secret_params[j] != NULL; j++)
		if (strcmp(name, secret_params[j]) == 0)
			return 1;
	return 0;
}

int ach_redact_url(ach_buf *b, const char *s)
{
	/* the path is kept; every parameter of the query and of the fragment (an implicit-flow
	 * answer carries its token there) has a secret's value replaced */
	const char *q = s + strcspn(s, "?#");
	if (*q == '\0')
		return ach_buf_adds(b, s);
	if (ach_buf_add(b, s, (size_t)(q - s) + 1) != 0)
		return -1;
	q++;
	while (*q != '\0') {
		size_t len = strcspn(q, "&#;?"), klen = strcspn(q, "=&#;?");
		if (klen < len && secret_param(q, klen)) {
			if (ach_buf_add(b, q, klen) != 0 || ach_buf_adds(b, "=[redacted]") != 0)
				return -1;
		} else if (ach_buf_add(b, q, len) != 0) {
			return -1;
		}
		q += len;
		if (*q == '\0')
			break;
		if (ach_buf_addc(b, *q) != 0)
			return -1;
		q++;
	}
	return 0;
}

int ach_base64(ach_buf *b, const unsigned char *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		char o[4] = {tab[s[i] >> 2], tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)],
			     tab[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)], tab[s[i + 2] & 63]};
		if (ach_buf_add(b, o, 4) != 0)
			return -1;
	}
	if (i < n) {
		char o[4] = {tab[s[i] >> 2], '=', '=', '='};
		if (i + 1 < n) {
			o[1] = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
			o[2] = tab[(s[i + 1] & 15) << 2];
		} else {
			o[1] = tab[(s[i] & 3) << 4];
		}
		if (ach_buf_add(b, o, 4) != 0)
			return -1;
	}
	return 0;
}

int ach_json_string(ach_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (ach_buf_addc(b, '"') != 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		int rc;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			rc = ach_buf_add(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			rc = ach_buf_add(b, e, 6);
		} else {
			rc = ach_buf_addc(b, (char)c);
		}
		if (rc != 0)
			return -1;
	}
	return ach_buf_addc(b, '"');
}

size_t ach_utf8(unsigned long cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}
