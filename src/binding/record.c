/*
 * record.c: the client options `record = "path"` and `record_pseudonymise = true`. The
 * writing itself (JSON Lines, placeholders for secrets, pseudonyms) is Lua:
 * achievers.record (src/lua/achievers/record.lua). Here: setting it up when a client is made,
 * and handing it each attempt's request and answer from the trace hook, unredacted: the
 * recorder is the one place that removes the secrets before anything is written.
 */
#include <string.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/record.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/kind.h"

/* Called by ach_client_new with the options at `opts` and the client's user value at `uv`:
 * when `record` is set, uv.recorder = require("achievers.record").open(path, {...}). */
void ach_record_setup(lua_State *L, int opts, int uv)
{
	int pseudo = 0;
	opts = lua_absindex(L, opts);
	uv = lua_absindex(L, uv);
	lua_getfield(L, opts, "record_pseudonymise");
	if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
		luaL_error(L, "achievers.client: option 'record_pseudonymise' must be a boolean (got %s)",
			   luaL_typename(L, -1));
	pseudo = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, opts, "record");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		if (pseudo)
			luaL_error(L, "achievers.client: option 'record_pseudonymise' needs 'record'");
		return;
	}
	if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
		luaL_error(L, "achievers.client: option 'record' must be a file name (got %s)",
			   luaL_typename(L, -1));
	lua_getglobal(L, "require");
	lua_pushliteral(L, "achievers.record");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "open");
	lua_pushvalue(L, -3);
	lua_createtable(L, 0, 1);
	lua_pushboolean(L, pseudo);
	lua_setfield(L, -2, "pseudonymise");
	lua_call(L, 2, 1);
	lua_setfield(L, uv, "recorder");
	lua_pop(L, 2);
}

/* The recorder is at the top of the stack; it is popped. Errors (a full disk) are kept like
 * a hook's and raised when the Lua call that drives the client returns. */
void ach_record_event(lua_State *L, ach_core *c, ach_exchange *ex, const char *phase,
		      const ach_http_response *r)
{
	int ev, i;
	lua_createtable(L, 0, 16);
	ev = lua_gettop(L);
	lua_pushstring(L, phase);
	lua_setfield(L, ev, "phase");
	lua_pushlightuserdata(L, ex);
	lua_setfield(L, ev, "key");
	lua_pushnumber(L, ach_now());
	lua_setfield(L, ev, "now");
	if (r != NULL) {
		lua_pushstring(L, ex->method);
		lua_setfield(L, ev, "method");
		lua_pushstring(L, ex->url);
		lua_setfield(L, ev, "url");
		lua_pushinteger(L, ex->attempt);
		lua_setfield(L, ev, "attempt");
		lua_pushboolean(L, ex->type == ACH_EX_TOKEN);
		lua_setfield(L, ev, "token_request");
		lua_newtable(L);
		for (i = 0; ex->headers != NULL && ex->headers[i] != NULL; i++) {
			lua_pushstring(L, ex->headers[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, ev, "headers");
		if (ex->body.len > 0) {
			lua_pushlstring(L, ex->body.data, ex->body.len);
			lua_setfield(L, ev, "body");
		}
		lua_pushinteger(L, (lua_Integer)r->status);
		lua_setfield(L, ev, "status");
		if (r->failure != ACH_KIND_NONE) {
			lua_pushstring(L, ach_kind_name(r->failure));
			lua_setfield(L, ev, "kind");
			lua_pushstring(L, r->message ? r->message : "");
			lua_setfield(L, ev, "message");
		}
		if (r->headers != NULL) {
			lua_pushlstring(L, r->headers, r->headers_len);
			lua_setfield(L, ev, "resp_headers");
		}
		if (r->body != NULL) {
			lua_pushlstring(L, r->body, r->body_len);
			lua_setfield(L, ev, "resp_body");
		}
	}
	if (lua_pcall(L, 1, 0, 0) != LUA_OK)
		ach_hook_error_set(L, c);
}
