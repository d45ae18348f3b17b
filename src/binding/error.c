/*
 * error.c: the error object of the public contract. Operational failures return nil and one
 * of these: a table {kind, status, code, message, retry_after, method, url, body, headers}
 * whose metatable gives a one-line tostring. Nothing secret is ever put in one: URLs are
 * redacted by the caller and request headers are not kept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "core/kind.h"

void ach_push_error(lua_State *L, ach_kind kind, const char *message)
{
	lua_createtable(L, 0, 8);
	lua_pushstring(L, ach_kind_name(kind));
	lua_setfield(L, -2, "kind");
	if (message != NULL) {
		lua_pushstring(L, message);
		lua_setfield(L, -2, "message");
	}
	luaL_setmetatable(L, ACH_ERROR_MT);
}

int ach_fail(lua_State *L, ach_kind kind, const char *message)
{
	lua_pushnil(L);
	ach_push_error(L, kind, message);
	return 2;
}

/* "achievers: not_found (404 not_found) GET https://host/api/v5/users/1: no such user".
 * Built by pushing the pieces and concatenating them, so no buffer spans stack changes. */
/* A number as whole digits, whatever its size (no int casts out of range). */
static const char *whole(double d, char buf[32])
{
	if (d != d)
		d = 0;
	snprintf(buf, 32, "%.0f", d > 1e18 ? 1e18 : d < -1e18 ? -1e18 : d);
	return buf;
}

#define SHOW_MAX 200 /* longer URLs and messages are cut in the one-line form */

/* Pushes the string at idx, cut at SHOW_MAX bytes with "... (N bytes)"; the full value stays
 * in its field. The cut does not split a UTF-8 sequence. */
static void push_cut(lua_State *L, int idx)
{
	size_t n, k = SHOW_MAX;
	const char *s = lua_tolstring(L, idx, &n);
	if (n <= SHOW_MAX + 20) {
		lua_pushvalue(L, idx);
		return;
	}
	while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
		k--;
	lua_pushlstring(L, s, k);
	lua_pushfstring(L, "... (%d bytes)", (int)(n > 0x7fffffff ? 0x7fffffff : n));
	lua_concat(L, 2);
}

static int error_tostring(lua_State *L)
{
	char num[32];
	int base;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	lua_getfield(L, 1, "kind");       /* 2 */
	lua_getfield(L, 1, "status");     /* 3 */
	lua_getfield(L, 1, "code");       /* 4 */
	lua_getfield(L, 1, "method");     /* 5 */
	lua_getfield(L, 1, "url");        /* 6 */
	lua_getfield(L, 1, "message");    /* 7 */
	lua_getfield(L, 1, "retry_after"); /* 8 */
	base = lua_gettop(L);
	lua_pushliteral(L, "achievers: ");
	if (lua_type(L, 2) == LUA_TSTRING)
		lua_pushvalue(L, 2);
	else
		lua_pushliteral(L, "error");
	if (lua_type(L, 3) == LUA_TNUMBER && lua_type(L, 4) == LUA_TSTRING)
		lua_pushfstring(L, " (%s %s)", whole(lua_tonumber(L, 3), num), lua_tostring(L, 4));
	else if (lua_type(L, 3) == LUA_TNUMBER)
		lua_pushfstring(L, " (%s)", whole(lua_tonumber(L, 3), num));
	else if (lua_type(L, 4) == LUA_TSTRING)
		lua_pushfstring(L, " (%s)", lua_tostring(L, 4));
	if (lua_type(L, 5) == LUA_TSTRING && lua_type(L, 6) == LUA_TSTRING) {
		push_cut(L, 6);
		lua_pushfstring(L, " %s %s", lua_tostring(L, 5), lua_tostring(L, -1));
		lua_remove(L, -2);
	}
	if (lua_type(L, 7) == LUA_TSTRING) {
		push_cut(L, 7);
		lua_pushfstring(L, ": %s", lua_tostring(L, -1));
		lua_remove(L, -2);
	}
	/* a wait the server asked for; "retry after 0 s" tells nobody anything */
	if (lua_type(L, 8) == LUA_TNUMBER && lua_tonumber(L, 8) >= 0.5)
		lua_pushfstring(L, " (retry after %s s)", whole(lua_tonumber(L, 8), num));
	lua_concat(L, lua_gettop(L) - base);
	return 1;
}

void ach_error_open(lua_State *L)
{
	luaL_newmetatable(L, ACH_ERROR_MT);
	lua_pushcfunction(L, error_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "achievers.error");
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}
int ach_nomem(lua_State *L)
{
	lua_pushliteral(L, "not enough memory");
	lua_error(L);
	abort(); /* not reached: lua_error does not return */
}
