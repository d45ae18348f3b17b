/*
 * module.c: luaopen_achievers, the module table of the public contract.
 */
#include "binding/binding.h"
#include "binding/client.h"
#include "binding/error.h"
#include "binding/json.h"
#include "binding/pkce.h"
#include "binding/request.h"
#include "binding/resources.h"
#include "binding/spawn.h"
#include "binding/token.h"

/* achievers.pretty(value): the Lua module achievers.pretty, loaded on first use. */
static int pretty(lua_State *L)
{
	lua_settop(L, 1);
	lua_getglobal(L, "require");
	lua_pushliteral(L, "achievers.pretty");
	lua_call(L, 1, 1);
	lua_insert(L, 1);
	lua_call(L, 1, 1);
	return 1;
}

/* achievers._error(kind, message): an error object, for drivers written in Lua. */
static int new_error(lua_State *L)
{
	lua_settop(L, 2);
	ach_push_error(L, ACH_KIND_NONE, luaL_optstring(L, 2, NULL));
	lua_pushvalue(L, 1);
	luaL_checkstring(L, -1);
	lua_setfield(L, -2, "kind");
	return 1;
}

ACH_EXPORT int luaopen_achievers(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{"client", ach_client_new},
		{"token", ach_token_new},
		{"pretty", pretty},
		{"json_decode", ach_json_decode_lua},
		{"_error", new_error},
		{NULL, NULL},
	};
	ach_json_init(L);
	ach_error_open(L);
	ach_token_open(L);
	ach_request_open(L);
	ach_spawn_open(L);
	ach_client_open(L);
	luaL_newlib(L, functions);
	ach_resource_open(L, lua_gettop(L));
	ach_pkce_open(L, lua_gettop(L));
	lua_pushliteral(L, ACH_VERSION);
	lua_setfield(L, -2, "_VERSION");
	ach_push_null(L);
	lua_setfield(L, -2, "null");
	return 1;
}
