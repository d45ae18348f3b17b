/*
 * http.c: what the engine reads of HTTP: header lookup in a raw block, HTTP dates (RFC 9110
 * IMF-fixdate and the two obsolete forms), Retry-After, and which methods may be sent again.
 * Core: libc only.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/http.h"

/* Finds a header in a raw header block; returns its value (not NUL-terminated) and length. */
const char *ach_header_find(const char *block, size_t len, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name), i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && block[end] != '\n')
			end++;
		if (end - i > nlen && block[i + nlen] == ':' && strncasecmp(block + i, name, nlen) == 0) {
			const char *v = block + i + nlen + 1;
			const char *e = block + end;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*vlen = (size_t)(e - v);
			return v;
		}
		i = end + 1;
	}
	return NULL;
}

/* ---- HTTP dates ----------------------------------------------------------------------------------- */

/* HTTP dates are parsed here with fixed English names, not strptime: %a and %b follow LC_TIME,
 * so a host that calls setlocale (a game, an editor) would make every Date and Retry-After
 * unreadable. */

typedef struct cursor {
	const char *p, *e;
} cursor;

static int take_char(cursor *c, char ch)
{
	if (c->p < c->e && *c->p == ch) {
		c->p++;
		return 1;
	}
	return 0;
}

/* min to max digits; returns 1 with *out set, or 0 */
static int take_digits(cursor *c, int min, int max, int *out)
{
	int n = 0, v = 0;
	while (n < max && c->p < c->e && *c->p >= '0' && *c->p <= '9') {
		v = v * 10 + (*c->p++ - '0');
		n++;
	}
	*out = v;
	return n >= min;
}

/* An alphabetic word, matched against names (case-insensitively, whole word); its index or -1. */
static int take_name(cursor *c, const char *const *names, int count)
{
	const char *w = c->p;
	size_t n = 0;
	int i;
	while (c->p < c->e && ((*c->p | 0x20) >= 'a' && (*c->p | 0x20) <= 'z')) {
		c->p++;
		n++;
	}
	for (i = 0; i < count; i++)
		if (strlen(names[i]) == n && strncasecmp(w, names[i], n) == 0)
			return i;
	return -1;
}

/* "HH:MM:SS" */
static int take_time(cursor *c, int *h, int *m, int *s)
{
	return take_digits(c, 2, 2, h) && take_char(c, ':') && take_digits(c, 2, 2, m) &&
	       take_char(c, ':') && take_digits(c, 2, 2, s);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Parses an HTTP date: the IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and the obsolete
 * RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994")
 * forms of RFC 9110. Returns the UNIX time, or 0 when it is none of them. */
int64_t ach_parse_http_date(const char *str, size_t n)
{
	static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
					   "Monday", "Tuesday", "Wednesday", "Thursday",
					   "Friday", "Saturday", "Sunday"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	cursor c = {str, str + n};
	int wday, mon = -1, day = 0, year = 0, hh = 0, mm = 0, ss = 0;
	int64_t t;
	if (str == NULL || n == 0)
		return 0;
	wday = take_name(&c, days, 14);
	if (wday < 0)
		return 0;
	if (take_char(&c, ',')) {
		if (!take_char(&c, ' ') || !take_digits(&c, 2, 2, &day))
			return 0;
		if (wday < 7 && take_char(&c, ' ')) { /* IMF-fixdate */
			if ((mon = take_name(&c, months, 12)) < 0 || !take_char(&c, ' ') ||
			    !take_digits(&c, 4, 4, &year))
				return 0;
		} else if (wday >= 7 && take_char(&c, '-')) { /* RFC 850: two-digit year */
			if ((mon = take_name(&c, months, 12)) < 0 || !take_char(&c, '-') ||
			    !take_digits(&c, 2, 2, &year))
				return 0;
			year += year < 70 ? 2000 : 1900;
		} else {
			return 0;
		}
		if (!take_char(&c, ' ') || !take_time(&c, &hh, &mm, &ss) || !take_char(&c, ' ') ||
		    c.e - c.p != 3 || strncmp(c.p, "GMT", 3) != 0)
			return 0;
	} else if (wday < 7 && take_char(&c, ' ')) { /* asctime: "Nov  6" or "Nov 16" */
		if ((mon = take_name(&c, months, 12)) < 0 || !take_char(&c, ' '))
			return 0;
		take_char(&c, ' ');
		if (!take_digits(&c, 1, 2, &day) || !take_char(&c, ' ') ||
		    !take_time(&c, &hh, &mm, &ss) || !take_char(&c, ' ') ||
		    !take_digits(&c, 4, 4, &year) || c.p != c.e)
			return 0;
	} else {
		return 0;
	}
	if (day < 1 || day > mdays[mon] || hh > 23 || mm > 59 || ss > 60)
		return 0;
	t = days_from_civil(year, mon + 1, day) * 86400 + hh * 3600 + mm * 60 + ss;
	return t > 0 ? t : 0;
}

/* Retry-After: delta seconds or an HTTP date; -1 when absent or unreadable. */
double ach_parse_retry_after(const char *v, size_t n, int64_t date, double wall)
{
	size_t i;
	double secs = 0;
	int64_t when;
	if (v == NULL || n == 0)
		return -1;
	for (i = 0; i < n && isdigit((unsigned char)v[i]); i++) {
		secs = secs * 10 + (v[i] - '0');
		if (secs > 1e9)
			return -1;
	}
	if (i == n)
		return secs;
	when = ach_parse_http_date(v, n);
	if (when == 0)
		return -1;
	when -= date > 0 ? date : (int64_t)wall;
	return when > 0 ? (when > 1000000000 ? 1e9 : (double)when) : 0;
}

int ach_method_idempotent(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "OPTIONS") == 0 || strcmp(m, "HEAD") == 0;
}
