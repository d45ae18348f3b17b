/*
 * pkce.c: the helpers Lua drivers need besides PKCE (core/pkce.c): a hash of a token (rate
 * budgets are named by it, never by the token) and random identifiers.
 */
#include <string.h>

#include "binding/binding.h"
#include "binding/pkce.h"
#include "core/env.h"
#include "core/pkce.h"
#include "core/sha256.h"

static int sha256_hex(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	char out[65];
	ach_sha256_hex(s, n, out);
	lua_pushlstring(L, out, 64);
	return 1;
}

/* achievers._random_id([nbytes = 32]): nbytes from the OS random source, base64url without
 * padding (session ids, form tokens). Raises when the random source fails. */
static int random_id(lua_State *L)
{
	lua_Integer n = luaL_optinteger(L, 1, 32);
	unsigned char raw[96];
	char out[129];
	luaL_argcheck(L, n >= 16 && n <= 96, 1, "between 16 and 96 bytes");
	if (ach_random_bytes(raw, (size_t)n) != 0)
		return luaL_error(L, "the OS random source failed");
	ach_base64url(raw, (size_t)n, out);
	memset(raw, 0, sizeof raw);
	lua_pushstring(L, out);
	return 1;
}

void ach_pkce_open(lua_State *L, int module)
{
	lua_pushcfunction(L, sha256_hex);
	lua_setfield(L, module, "_sha256_hex");
	lua_pushcfunction(L, random_id);
	lua_setfield(L, module, "_random_id");
}
