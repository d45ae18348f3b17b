/*
 * json.c: JSON through a private lua-cjson instance (cjson.new(), so the caller's own cjson
 * settings never change how we decode), plus the integer correction: Debian's lua-cjson
 * 2.1.0 decodes every number as a float, so integral values are turned back into integers.
 */
#include <math.h>
#include <string.h>

#include "achievers.h"

static const char json_key = 'j'; /* registry: {decode = f, encode = f, null = v} */

void ach_json_init(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "cjson");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "new");
	lua_call(L, 0, 1); /* cjson, instance */
	lua_getfield(L, -1, "decode_max_depth");
	lua_pushinteger(L, 200);
	lua_call(L, 1, 0);
	lua_getfield(L, -1, "encode_sparse_array");
	lua_pushboolean(L, 1); /* convert sparse arrays to objects instead of raising */
	lua_call(L, 1, 0);
	lua_createtable(L, 0, 3);
	lua_getfield(L, -2, "decode");
	lua_setfield(L, -2, "decode");
	lua_getfield(L, -2, "encode");
	lua_setfield(L, -2, "encode");
	lua_getfield(L, -2, "null");
	lua_setfield(L, -2, "null");
	ach_rawsetp(L, LUA_REGISTRYINDEX, &json_key);
	lua_pop(L, 2);
}

static void push_json_field(lua_State *L, const char *name)
{
	ach_rawgetp(L, LUA_REGISTRYINDEX, &json_key);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
}

void ach_push_null(lua_State *L)
{
	push_json_field(L, "null");
}

#if ACH_HAS_INTEGERS
/* Rewrites integral floats of the tree at idx as integers; depth is bounded by the decoder. */
static void fix_integers(lua_State *L, int idx)
{
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int t = lua_type(L, -1);
		if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
			lua_Number n = lua_tonumber(L, -1);
			if (n == floor(n) && n >= -9223372036854775808.0 && n < 9223372036854775808.0) {
				lua_pushvalue(L, -2);
				lua_pushinteger(L, (lua_Integer)n);
				lua_rawset(L, idx);
			}
		} else if (t == LUA_TTABLE) {
			luaL_checkstack(L, 3, "JSON too deep");
			fix_integers(L, lua_gettop(L));
		}
		lua_pop(L, 1);
	}
}
#endif

static int decode_protected(lua_State *L)
{
	/* stack: decode, text */
	lua_call(L, 1, 1);
#if ACH_HAS_INTEGERS
	if (lua_type(L, -1) == LUA_TTABLE)
		fix_integers(L, lua_gettop(L));
	else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
		lua_Number n = lua_tonumber(L, -1);
		if (n == floor(n) && fabs(n) < 9.2e18)
			lua_pushinteger(L, (lua_Integer)n), lua_remove(L, -2);
	}
#endif
	return 1;
}

int ach_json_decode(lua_State *L, const char *s, size_t n)
{
	int rc;
	lua_pushcfunction(L, decode_protected);
	push_json_field(L, "decode");
	lua_pushlstring(L, s, n);
	rc = lua_pcall(L, 2, 1, 0);
	if (rc == LUA_OK)
		return 1;
	if (lua_type(L, -1) != LUA_TSTRING) {
		lua_pop(L, 1);
		lua_pushliteral(L, "invalid JSON");
	}
	return 0;
}

void ach_json_encode(lua_State *L, int idx, ach_buf *b)
{
	size_t n;
	const char *s;
	idx = lua_absindex(L, idx);
	push_json_field(L, "encode");
	lua_pushvalue(L, idx);
	lua_call(L, 1, 1); /* raises on functions, NaN and the like: misuse */
	s = lua_tolstring(L, -1, &n);
	if (ach_buf_add(b, s, n) != 0)
		ach_nomem(L);
	lua_pop(L, 1);
}
