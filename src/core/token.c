/*
 * token.c: token data, and the reading of a token answer. A token knows its expiry on the
 * server's clock: `skew` (server minus local time, learnt from the Date header of the answer
 * that issued it) keeps that right when the two clocks disagree. Core: libc only.
 */
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/env.h"
#include "core/token.h"
#include "core/url.h"

#define ACH_DEFAULT_LIFETIME 1209600 /* 14 days: the Authentication page's token lifetime */
#define ACH_ABSOLUTE_MIN 1000000000  /* expires_in at or above this is a UNIX time */

ach_token_data *ach_token_alloc(void)
{
	ach_token_data *t = calloc(1, sizeof *t);
	if (t != NULL)
		t->refs = 1;
	return t;
}

ach_token_data *ach_token_ref(ach_token_data *t)
{
	if (t != NULL)
		t->refs++;
	return t;
}

void ach_token_unref(ach_token_data *t)
{
	if (t == NULL || --t->refs > 0)
		return;
	ach_free_secret(t->access_token);
	ach_free_secret(t->refresh_token);
	free(t->token_type);
	free(t->scope);
	free(t->grant_type);
	free(t);
}

double ach_token_remaining_at(const ach_token_data *t, double wall)
{
	return (double)t->expires_at - (wall + (double)t->skew);
}

double ach_token_remaining(const ach_token_data *t)
{
	return ach_token_remaining_at(t, ach_wall());
}

int ach_token_complete(const ach_token_data *t)
{
	return t->access_token != NULL && t->token_type != NULL && t->scope != NULL &&
	       t->grant_type != NULL;
}

int ach_token_chars_ok(const char *s, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

const char *ach_token_bad_field(const ach_token_data *t)
{
	if (t->access_token != NULL && !ach_token_chars_ok(t->access_token, strlen(t->access_token)))
		return "access_token";
	if (t->refresh_token != NULL && !ach_token_chars_ok(t->refresh_token, strlen(t->refresh_token)))
		return "refresh_token";
	return NULL;
}

/* ---- the token answer's JSON ------------------------------------------------------------
 * A token answer is one flat JSON object; only its string and number members are read, the
 * rest is checked for well-formedness and skipped. A member named twice: the last counts (as
 * in a decoded table). Strings are unescaped (\uXXXX, surrogate pairs) into the buffers. */

#define FIELD_MAX_DEPTH 200 /* as the module's JSON decoder */

enum { F_ACCESS, F_REFRESH, F_TYPE, F_SCOPE, F_EXPIRES, F_COUNT };
static const char *const field_names[F_COUNT] = {"access_token", "refresh_token", "token_type",
						 "scope", "expires_in"};

typedef struct jfield {
	int type;   /* 0 absent, 's' string, 'n' number, 'o' anything else */
	ach_buf text; /* a string's bytes (unescaped), or a number's literal */
} jfield;

typedef struct jscan {
	const char *p, *end;
	int depth;
	int nomem;
} jscan;

static void ws(jscan *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hex4(const char *p, unsigned long *out)
{
	int i;
	*out = 0;
	for (i = 0; i < 4; i++) {
		int c = p[i], v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -1;
		*out = *out * 16 + (unsigned long)v;
	}
	return 0;
}

static int add_utf8(ach_buf *b, unsigned long cp)
{
	char u[4];
	return ach_buf_add(b, u, ach_utf8(cp, u));
}

/* A string at j->p (its opening quote); its bytes go to out (NULL: only checked). */
static int jstring(jscan *j, ach_buf *out)
{
	if (j->p >= j->end || *j->p != '"')
		return -1;
	j->p++;
	if (out != NULL)
		ach_buf_reset(out);
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p++;
		unsigned long cp;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			if (out != NULL && ach_buf_addc(out, (char)c) != 0)
				return j->nomem = 1, -1;
			continue;
		}
		if (j->p >= j->end)
			return -1;
		c = (unsigned char)*j->p++;
		switch (c) {
		case '"': case '\\': case '/': cp = c; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (j->end - j->p < 4 || hex4(j->p, &cp) != 0)
				return -1;
			j->p += 4;
			if (cp >= 0xdc00 && cp < 0xe000)
				return -1; /* a lone low surrogate: not a character */
			if (cp >= 0xd800 && cp < 0xdc00) {
				/* a high surrogate only as the first of a pair, as the JSON decoder */
				unsigned long lo;
				if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
				    hex4(j->p + 2, &lo) != 0 || lo < 0xdc00 || lo >= 0xe000)
					return -1;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				j->p += 6;
			}
			break;
		default:
			return -1;
		}
		if (out != NULL && add_utf8(out, cp) != 0)
			return j->nomem = 1, -1;
	}
	return -1;
}

static int jnumber(jscan *j, ach_buf *out)
{
	const char *s = j->p;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9'))
		return -1;
	if (*j->p == '0')
		j->p++;
	else
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9'))
			return -1;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9'))
			return -1;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (out != NULL) {
		ach_buf_reset(out);
		if (ach_buf_add(out, s, (size_t)(j->p - s)) != 0)
			return j->nomem = 1, -1;
	}
	return 0;
}

static int jvalue(jscan *j, jfield *f);

/* An object or array, checked and skipped. */
static int jcompound(jscan *j)
{
	char close = *j->p == '{' ? '}' : ']';
	int first = 1;
	if (++j->depth > FIELD_MAX_DEPTH)
		return -1;
	j->p++;
	for (;;) {
		ws(j);
		if (j->p < j->end && *j->p == close && first) {
			j->p++;
			break;
		}
		if (close == '}') {
			if (jstring(j, NULL) != 0)
				return -1;
			ws(j);
			if (j->p >= j->end || *j->p++ != ':')
				return -1;
		}
		if (jvalue(j, NULL) != 0)
			return -1;
		ws(j);
		first = 0;
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == close) {
			j->p++;
			break;
		}
		return -1;
	}
	j->depth--;
	return 0;
}

static int jliteral(jscan *j, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
		return -1;
	j->p += n;
	return 0;
}

/* A value; when f is given, a string or number is kept in it and its type noted. */
static int jvalue(jscan *j, jfield *f)
{
	ws(j);
	if (j->p >= j->end)
		return -1;
	switch (*j->p) {
	case '"':
		if (f != NULL)
			f->type = 's';
		return jstring(j, f != NULL ? &f->text : NULL);
	case '{':
	case '[':
		if (f != NULL)
			f->type = 'o';
		return jcompound(j);
	case 't':
		if (f != NULL)
			f->type = 'o';
		return jliteral(j, "true");
	case 'f':
		if (f != NULL)
			f->type = 'o';
		return jliteral(j, "false");
	case 'n':
		if (f != NULL)
			f->type = 'z'; /* null: no string (a string member is then absent) */
		return jliteral(j, "null");
	default:
		if (f != NULL)
			f->type = 'n';
		return jnumber(j, f != NULL ? &f->text : NULL);
	}
}

/* Reads the members of the object; returns 0, -1 not JSON, -2 JSON but not an object. */
static int read_object(jscan *j, jfield *fields)
{
	ach_buf key = {0};
	int first = 1, rc = -1;
	ws(j);
	if (j->p < j->end && *j->p != '{') {
		rc = jvalue(j, NULL) == 0 && (ws(j), j->p == j->end) ? -2 : -1;
		return rc;
	}
	if (j->p >= j->end)
		return -1;
	j->p++;
	j->depth = 1;
	for (;;) {
		jfield *f = NULL;
		int i;
		ws(j);
		if (first && j->p < j->end && *j->p == '}') {
			j->p++;
			break;
		}
		if (jstring(j, &key) != 0)
			goto out;
		for (i = 0; i < F_COUNT && key.data != NULL; i++)
			if (strlen(field_names[i]) == key.len && strcmp(key.data, field_names[i]) == 0)
				f = &fields[i];
		ws(j);
		if (j->p >= j->end || *j->p++ != ':')
			goto out;
		if (jvalue(j, f) != 0)
			goto out;
		ws(j);
		first = 0;
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			break;
		}
		goto out;
	}
	ws(j);
	rc = j->p == j->end ? 0 : -1;
out:
	ach_buf_free(&key);
	return rc;
}

/* A finite number from text, whatever the host's LC_NUMERIC (strtod reads that locale's
 * decimal point: the text's '.' is given in the locale's form first); spaces around it are
 * allowed, as Lua's tonumber allows them. 0, or -1 when the text is not one finite number. */
static int read_number(const char *s, double *out)
{
	char tmp[64], *end;
	const char *dp = localeconv()->decimal_point;
	size_t n = strlen(s), i, o = 0, dn = dp != NULL ? strlen(dp) : 0;
	double v;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++, n--;
	if (n == 0 || n >= sizeof tmp - 8)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] == '.' && dn > 0 && strcmp(dp, ".") != 0) {
			if (o + dn >= sizeof tmp)
				return -1;
			memcpy(tmp + o, dp, dn);
			o += dn;
		} else {
			tmp[o++] = s[i];
		}
	}
	tmp[o] = '\0';
	v = strtod(tmp, &end);
	if (*end != '\0' || !isfinite(v))
		return -1; /* also inf and nan, which Lua's tonumber does not read either */
	*out = v;
	return 0;
}

/* A member's string (NULL when absent or not a string); one holding a NUL byte counts as the
 * bytes before it, as a C string would, so it is checked as a token before that. */
static const char *field_string(const jfield *f)
{
	return f->type == 's' ? (f->text.data != NULL ? f->text.data : "") : NULL;
}

ach_token_data *ach_token_from_json(const char *body, size_t n, const char *grant,
				    const char *scope, int64_t date, double wall, const char **why)
{
	jfield f[F_COUNT];
	jscan j;
	ach_token_data *t = NULL;
	const char *access, *type, *sc, *refresh;
	double expires_in = ACH_DEFAULT_LIFETIME;
	int i, rc;
	memset(f, 0, sizeof f);
	j.p = body != NULL ? body : "";
	j.end = j.p + (body != NULL ? n : 0);
	j.depth = 0;
	j.nomem = 0;
	rc = read_object(&j, f);
	if (j.nomem) {
		*why = "not enough memory";
		goto out;
	}
	if (rc != 0) {
		*why = rc == -2 ? "the token answer is not a JSON object" : "the token answer is not JSON";
		goto out;
	}
	for (i = 0; i < 2; i++) /* access_token, refresh_token */
		if (f[i].type == 's' && !ach_token_chars_ok(f[i].text.data ? f[i].text.data : "",
							 f[i].text.len)) {
			*why = i == F_ACCESS
				       ? "the token answer's access_token holds bytes a token may not "
					 "(only visible ASCII): refused, it would go into a header"
				       : "the token answer's refresh_token holds bytes a token may not "
					 "(only visible ASCII): refused";
			goto out;
		}
	access = field_string(&f[F_ACCESS]);
	if (access == NULL || access[0] == '\0') {
		*why = "the token answer has no access_token";
		goto out;
	}
	type = field_string(&f[F_TYPE]);
	if (type != NULL && strcasecmp(type, "bearer") != 0) {
		*why = "the token answer's token_type is not bearer";
		goto out;
	}
	if (f[F_EXPIRES].type == 'n' || f[F_EXPIRES].type == 's') {
		/* a number, or a string that reads whole as one (as Lua's tonumber would) */
		if (read_number(f[F_EXPIRES].text.data != NULL ? f[F_EXPIRES].text.data : "",
				&expires_in) != 0) {
			*why = "the token answer's expires_in is not a number";
			goto out;
		}
	} else if (f[F_EXPIRES].type != 0) {
		*why = "the token answer's expires_in is not a number";
		goto out;
	}
	sc = field_string(&f[F_SCOPE]);
	refresh = field_string(&f[F_REFRESH]);

	t = ach_token_alloc();
	if (t == NULL) {
		*why = "not enough memory";
		goto out;
	}
	if (date > 0 && fabs((double)date - wall) >= 2.0)
		t->skew = ach_clamp_i64((double)date - wall);
	if (expires_in >= ACH_ABSOLUTE_MIN)
		t->expires_at = ach_clamp_i64(expires_in);
	else
		t->expires_at = ach_clamp_i64(floor(wall + (double)t->skew + expires_in));
	t->access_token = ach_strdup(access);
	t->refresh_token = ach_strdup(refresh);
	t->token_type = ach_strdup("bearer");
	t->scope = ach_strdup(sc != NULL ? sc : scope != NULL ? scope : "");
	t->grant_type = ach_strdup(grant);
	if (!ach_token_complete(t) || (refresh != NULL && t->refresh_token == NULL)) {
		ach_token_unref(t);
		t = NULL;
		*why = "not enough memory";
		goto out;
	}
	if (ach_token_bad_field(t) != NULL) {
		ach_token_unref(t);
		t = NULL;
		*why = "the token answer's tokens hold bytes a token may not (only visible ASCII)";
	}
out:
	for (i = 0; i < F_COUNT; i++) {
		if (i == F_ACCESS || i == F_REFRESH)
			ach_free_secret(ach_buf_take(&f[i].text)); /* wiped, not just freed */
		else
			ach_buf_free(&f[i].text);
	}
	return t;
}
