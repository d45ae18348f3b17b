/*
 * fuzz_lua.h: one Lua state per fuzz process with the module loaded from the client objects
 * linked into the harness (not from a .so), and helpers shared by the Lua-side harnesses.
 *
 * The state lives for the whole run; each input works inside lua_pcall and leaves the stack
 * as it found it. A raise out of the module on untrusted bytes is a finding (the contract says
 * operational failures are `nil, err`), so harnesses abort() on one where no raise is allowed.
 */
#ifndef FUZZ_LUA_H
#define FUZZ_LUA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/encode.h"
#include "binding/error.h"
#include "binding/json.h"
#include "binding/request.h"
#include "binding/result.h"
#include "binding/token.h"
#include "core/url.h"

#include <lualib.h>

int luaopen_achievers(lua_State *L);

/* Lua code run once at start-up: `achievers` is a global there. */
static lua_State *fz_state(const char *setup)
{
	static lua_State *L;
	if (L != NULL)
		return L;
	L = luaL_newstate();
	if (L == NULL)
		abort();
	luaL_openlibs(L);
	luaL_requiref(L, "achievers", luaopen_achievers, 1);
	lua_pop(L, 1);
	if (setup != NULL && luaL_dostring(L, setup) != LUA_OK) {
		fprintf(stderr, "fuzz setup failed: %s\n", lua_tostring(L, -1));
		abort();
	}
	lua_settop(L, 0);
	return L;
}

/* Runs fn(L) protected; a raise is reported and, when `fatal`, aborts. */
static int fz_pcall(lua_State *L, lua_CFunction fn, void *ud, int fatal)
{
	int top = lua_gettop(L), rc;
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, ud);
	rc = lua_pcall(L, 1, 0, 0);
	if (rc != LUA_OK) {
		if (fatal) {
			fprintf(stderr, "unexpected raise: %s\n",
				lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
			abort();
		}
	}
	lua_settop(L, top);
	return rc;
}

/* Calls tostring on the value at idx and touches every string in it (walks tables,
 * bounded depth): exercises __tostring and the fields of error objects. */
static void fz_touch(lua_State *L, int idx, int depth)
{
	idx = lua_absindex(L, idx);
	luaL_tolstring(L, idx, NULL);
	lua_pop(L, 1);
	if (lua_type(L, idx) != LUA_TTABLE || depth > 8)
		return;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		fz_touch(L, -1, depth + 1);
		lua_pop(L, 1);
	}
}

#endif
