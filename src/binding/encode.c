/*
 * encode.c: form and query strings built from Lua tables, path segments from Lua values
 * (the bytes-level encoders are in core/url.c).
 */
#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "binding/binding.h"
#include "binding/encode.h"
#include "binding/error.h"
#include "core/buf.h"
#include "core/url.h"

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
		else if (c == '%' && i + 2 < n && ach_hexval((unsigned char)s[i + 1]) >= 0 &&
			 ach_hexval((unsigned char)s[i + 2]) >= 0) {
			c = (char)(ach_hexval((unsigned char)s[i + 1]) * 16 + ach_hexval((unsigned char)s[i + 2]));
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

