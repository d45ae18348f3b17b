/*
 * encode.c: percent-encoding, form and query strings built from Lua tables, numbers written
 * without exponents, and the small URL parser the client needs (origin, loopback, redaction).
 */
#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "achievers.h"

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

int ach_format_number(ach_buf *b, lua_Number n)
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

/* Appends the scalar at idx as form text. Returns 0, -1 out of memory, -2 not encodable. */
static int add_scalar(lua_State *L, int idx, ach_buf *b)
{
	size_t n;
	const char *s;
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &n);
		return ach_url_escape(b, s, n);
	case LUA_TNUMBER:
#if ACH_HAS_INTEGERS
		if (lua_isinteger(L, idx))
			return ach_buf_printf(b, "%lld", (long long)lua_tointeger(L, idx));
#endif
		return ach_format_number(b, lua_tonumber(L, idx));
	case LUA_TBOOLEAN:
		return ach_buf_adds(b, lua_toboolean(L, idx) ? "true" : "false");
	default:
		return -2;
	}
}

static int is_list(lua_State *L, int idx)
{
	long long n = (long long)lua_rawlen(L, idx), count = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		count++;
		if (lua_type(L, -1) != LUA_TNUMBER || count > n) {
			lua_pop(L, 1);
			return 0;
		}
	}
	return count == n;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void form_pair(lua_State *L, ach_buf *b, size_t start, const char *key, int vidx,
		      const char *what)
{
	if ((b->len > start && ach_buf_addc(b, '&') != 0) || ach_url_escape(b, key, strlen(key)) != 0 ||
	    ach_buf_addc(b, '=') != 0)
		ach_nomem(L);
	switch (add_scalar(L, vidx, b)) {
	case 0:
		return;
	case -1:
		ach_nomem(L);
		break;
	default:
		luaL_error(L, "%s: value of '%s' cannot be form-encoded (%s)", what, key,
			   luaL_typename(L, vidx));
	}
}

/* The table at idx is read by its own contents (lua_next, lua_rawget, lua_rawlen: no __pairs,
 * __index or __len), as lua-cjson reads a table it encodes. Its keys are copied into a list of
 * our own first, which keeps them alive whatever happens to the table while we allocate (a
 * finalizer may change it); a key that went away meanwhile reads as nil and raises. */
void ach_encode_form(lua_State *L, int idx, ach_buf *b, const char *what)
{
	int n = 0, i, list;
	const char **keys;
	size_t start = b->len;
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	list = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		size_t len;
		const char *k;
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s: keys must be strings", what);
		k = lua_tolstring(L, -1, &len);
		if (strlen(k) != len)
			luaL_error(L, "%s: key '%s' must not contain NUL bytes", what, k);
		lua_pushvalue(L, -1);
		lua_rawseti(L, list, ++n);
	}
	if (n == 0) {
		lua_pop(L, 1);
		return;
	}
	/* scratch array in a userdata on the stack, so a raise below does not leak it */
	keys = lua_newuserdata(L, sizeof *keys * (size_t)n);
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, list, i + 1);
		keys[i] = lua_tostring(L, -1); /* kept alive by `list` */
		lua_pop(L, 1);
	}
	qsort(keys, (size_t)n, sizeof *keys, key_cmp);
	for (i = 0; i < n; i++) {
		lua_pushstring(L, keys[i]);
		lua_rawget(L, idx);
		if (lua_type(L, -1) == LUA_TTABLE) {
			long long j, len;
			if (!is_list(L, lua_gettop(L)))
				luaL_error(L, "%s: value of '%s' must be a list of scalars", what, keys[i]);
			len = (long long)lua_rawlen(L, -1);
			for (j = 1; j <= len; j++) {
				lua_rawgeti(L, -1, (int)j);
				form_pair(L, b, start, keys[i], lua_gettop(L), what);
				lua_pop(L, 1);
			}
		} else {
			form_pair(L, b, start, keys[i], lua_gettop(L), what);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 2); /* keys, list */
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Pushes s[0..n) with %XX and '+' decoded. */
static void push_unescaped(lua_State *L, const char *s, size_t n)
{
	luaL_Buffer lb;
	size_t i;
	luaL_buffinit(L, &lb);
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '+')
			c = ' ';
		else if (c == '%' && i + 2 < n && hexval((unsigned char)s[i + 1]) >= 0 &&
			 hexval((unsigned char)s[i + 2]) >= 0) {
			c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		}
		luaL_addchar(&lb, c);
	}
	luaL_pushresult(&lb);
}

void ach_push_query_table(lua_State *L, const char *q, size_t n)
{
	size_t i = 0;
	lua_newtable(L);
	if (n > 0 && q[0] == '?')
		i = 1;
	while (i < n) {
		size_t start = i, eq = (size_t)-1;
		while (i < n && q[i] != '&') {
			if (q[i] == '=' && eq == (size_t)-1)
				eq = i;
			i++;
		}
		if (i > start) {
			push_unescaped(L, q + start, (eq == (size_t)-1 ? i : eq) - start);
			if (eq == (size_t)-1)
				lua_pushliteral(L, "");
			else
				push_unescaped(L, q + eq + 1, i - eq - 1);
			lua_rawset(L, -3);
		}
		i++;
	}
}

void ach_check_header_safe(lua_State *L, const char *s, size_t n, const char *what)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			luaL_error(L, "%s must not contain CR, LF or NUL", what);
}

void ach_encode_path_value(lua_State *L, int idx, ach_buf *b, const char *what)
{
	size_t n;
	const char *s;
	int rc;
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		rc = add_scalar(L, idx, b);
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &n);
		if (n == 0)
			luaL_error(L, "%s must not be empty", what);
		ach_check_header_safe(L, s, n, what);
		rc = ach_url_escape(b, s, n);
		break;
	default:
		return (void)luaL_error(L, "%s must be a number or a string, got %s", what,
					luaL_typename(L, idx));
	}
	if (rc == -1)
		ach_nomem(L);
	if (rc != 0)
		luaL_error(L, "%s must be a finite number", what);
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
		if (c == '%' && i + 2 < n && hexval((unsigned char)k[i + 1]) >= 0 &&
		    hexval((unsigned char)k[i + 2]) >= 0) {
			c = hexval((unsigned char)k[i + 1]) * 16 + hexval((unsigned char)k[i + 2]);
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
