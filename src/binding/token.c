/*
 * token.c: token data (shared, reference counted) and the token object of the public
 * contract. A token knows its expiry on the server's clock: `skew` (server minus local time,
 * learnt from the Date header of the answer that issued it) keeps that right when the two
 * clocks disagree. tostring never shows the access or refresh token.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "binding/token.h"
#include "core/buf.h"
#include "core/token.h"


typedef struct token_obj {
	ach_token_data *t;
} token_obj;

/* Raises unless the string on the stack top is a token's: visible ASCII only (so no NUL either,
 * which would cut the copy short). */
static void check_token_string(lua_State *L, const char *name)
{
	size_t n;
	const char *s = lua_tolstring(L, -1, &n);
	if (!ach_token_chars_ok(s, n))
		luaL_error(L, "token table: %s must hold only visible ASCII (no spaces, CR, LF, NUL "
			      "or control bytes)", name);
}

/* Pushes field `name` of the table at idx (read once, through its metatable) and returns it
 * when it is a string, else NULL. The value stays on the stack, which is what keeps it alive:
 * __index may have made it afresh, and the next field's __index may collect. The caller puts
 * the stack top back when it has copied what it needs. */
static const char *opt_string_field(lua_State *L, int idx, const char *name)
{
	luaL_checkstack(L, 2, "token table");
	lua_getfield(L, idx, name);
	return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

ach_token_data *ach_token_from_table(lua_State *L, int idx)
{
	ach_token_data *t;
	const char *access, *type, *scope, *grant, *refresh;
	int64_t expires_at, skew = 0;
	int top = lua_gettop(L);
	idx = lua_absindex(L, idx);
	luaL_checktype(L, idx, LUA_TTABLE);
	access = opt_string_field(L, idx, "access_token");
	if (access == NULL || access[0] == '\0')
		luaL_error(L, "token table: access_token must be a non-empty string");
	check_token_string(L, "access_token"); /* the value read, still on the stack: read once */
	lua_getfield(L, idx, "expires_at");
	if (!lua_isnumber(L, -1))
		luaL_error(L, "token table: expires_at must be a number (UNIX time)");
	expires_at = ach_clamp_i64(lua_tonumber(L, -1));
	lua_pop(L, 1);
	lua_getfield(L, idx, "clock_skew");
	if (lua_isnumber(L, -1))
		skew = ach_clamp_i64(lua_tonumber(L, -1));
	lua_pop(L, 1);
	type = opt_string_field(L, idx, "token_type");
	scope = opt_string_field(L, idx, "scope");
	grant = opt_string_field(L, idx, "grant_type");
	refresh = opt_string_field(L, idx, "refresh_token");
	if (refresh != NULL)
		check_token_string(L, "refresh_token");
	if (type != NULL && strcasecmp(type, "bearer") != 0)
		luaL_error(L, "token table: token_type must be bearer");
	if (grant != NULL && strcmp(grant, "client_credentials") != 0 &&
	    strcmp(grant, "authorization_code") != 0)
		luaL_error(L, "token table: grant_type must be client_credentials or authorization_code");
	t = ach_token_alloc();
	if (t == NULL)
		ach_nomem(L);
	t->expires_at = expires_at;
	t->skew = skew;
	t->access_token = ach_strdup(access);
	t->refresh_token = ach_strdup(refresh);
	t->token_type = ach_strdup("bearer");
	t->scope = ach_strdup(scope != NULL ? scope : "");
	t->grant_type = ach_strdup(grant != NULL ? grant : "client_credentials");
	lua_settop(L, top); /* the strings are copied */
	if (!ach_token_complete(t) || (refresh != NULL && t->refresh_token == NULL)) {
		ach_token_unref(t);
		ach_nomem(L);
	}
	if (ach_token_bad_field(t) != NULL) {
		const char *which = ach_token_bad_field(t);
		ach_token_unref(t);
		luaL_error(L, "token table: %s must hold only visible ASCII", which);
	}
	return t;
}

/* ---- the Lua object --------------------------------------------------------------------- */

void ach_push_token(lua_State *L, ach_token_data *t, int owner)
{
	token_obj *o;
	if (owner != 0)
		owner = lua_absindex(L, owner);
	o = ach_newuserdata(L, sizeof *o);
	o->t = NULL;
	luaL_setmetatable(L, ACH_TOKEN_MT);
	lua_createtable(L, 0, 1);
	if (owner != 0) {
		lua_pushvalue(L, owner);
		lua_setfield(L, -2, "client");
	}
	ach_setuservalue(L, -2);
	o->t = ach_token_ref(t);
}

ach_token_data *ach_test_token(lua_State *L, int idx)
{
	token_obj *o = luaL_testudata(L, idx, ACH_TOKEN_MT);
	return o != NULL ? o->t : NULL;
}

ach_token_data *ach_check_token(lua_State *L, int idx)
{
	token_obj *o = luaL_checkudata(L, idx, ACH_TOKEN_MT);
	if (o->t == NULL)
		luaL_argerror(L, idx, "token has been released");
	return o->t;
}

int ach_token_new(lua_State *L)
{
	ach_token_data *t;
	if (ach_test_token(L, 1) != NULL) {
		lua_settop(L, 1);
		return 1;
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	t = ach_token_from_table(L, 1);
	ach_push_token(L, t, 0);
	ach_token_unref(t);
	return 1;
}

static int token_gc(lua_State *L)
{
	token_obj *o = luaL_checkudata(L, 1, ACH_TOKEN_MT);
	ach_token_unref(o->t);
	o->t = NULL;
	return 0;
}

static int token_expires_in(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	lua_pushinteger(L, (lua_Integer)ach_clamp_i64(floor(ach_token_remaining(t))));
	return 1;
}

static int token_is_expired(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	lua_pushboolean(L, ach_token_remaining(t) <= 0);
	return 1;
}

/* Pushes the client that issued the token (nil when there is none). */
static int push_owner(lua_State *L, int idx)
{
	ach_getuservalue(L, idx);
	if (lua_type(L, -1) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_pushnil(L);
		return 0;
	}
	lua_getfield(L, -1, "client");
	lua_remove(L, -2);
	return !lua_isnil(L, -1);
}

static int token_needs_refresh(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	double window = 7200;
	if (!lua_isnoneornil(L, 2)) {
		window = luaL_checknumber(L, 2);
	} else if (push_owner(L, 1)) {
		lua_getfield(L, -1, "refresh_window");
		if (lua_isnumber(L, -1))
			window = lua_tonumber(L, -1);
		lua_pop(L, 1);
	}
	lua_pushboolean(L, ach_token_remaining(t) <= window);
	return 1;
}

/* tok:refresh([client]): a fresh token from the grant it came from, through the client that
 * issued it (or the one given). */
static int token_refresh(lua_State *L)
{
	ach_check_token(L, 1);
	lua_settop(L, 2);
	if (lua_isnil(L, 2) && !push_owner(L, 1))
		return luaL_error(L, "token:refresh needs the client: this token was not issued by one "
				     "(call tok:refresh(client))");
	if (lua_isnil(L, 2))
		lua_replace(L, 2);
	lua_getfield(L, 2, "_refresh_token");
	if (!lua_isfunction(L, -1))
		return luaL_argerror(L, 2, "expected an achievers client");
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 1);
	lua_call(L, 2, 2);
	return 2;
}

static void set_string(lua_State *L, const char *name, const char *value)
{
	if (value == NULL)
		return;
	lua_pushstring(L, value);
	lua_setfield(L, -2, name);
}

static int token_to_table(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	lua_createtable(L, 0, 7);
	set_string(L, "access_token", t->access_token);
	set_string(L, "token_type", t->token_type);
	set_string(L, "scope", t->scope);
	set_string(L, "grant_type", t->grant_type);
	set_string(L, "refresh_token", t->refresh_token);
	lua_pushinteger(L, (lua_Integer)t->expires_at);
	lua_setfield(L, -2, "expires_at");
	if (t->skew != 0) {
		lua_pushinteger(L, (lua_Integer)t->skew);
		lua_setfield(L, -2, "clock_skew");
	}
	return 1;
}

static int token_index(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	const char *k = luaL_checkstring(L, 2);
	if (strcmp(k, "access_token") == 0)
		lua_pushstring(L, t->access_token);
	else if (strcmp(k, "token_type") == 0)
		lua_pushstring(L, t->token_type);
	else if (strcmp(k, "scope") == 0)
		lua_pushstring(L, t->scope);
	else if (strcmp(k, "grant_type") == 0)
		lua_pushstring(L, t->grant_type);
	else if (strcmp(k, "refresh_token") == 0)
		lua_pushstring(L, t->refresh_token);
	else if (strcmp(k, "expires_at") == 0)
		lua_pushinteger(L, (lua_Integer)t->expires_at);
	else {
		luaL_getmetatable(L, ACH_TOKEN_MT);
		lua_getfield(L, -1, "methods");
		lua_getfield(L, -1, k);
	}
	return 1;
}

/* achievers.token(bearer, read, expires 2026-12-11 16:00:00Z, in 13d 23h) */
static int token_tostring(lua_State *L)
{
	ach_token_data *t = ach_check_token(L, 1);
	char when[32], left[48];
	time_t at = (time_t)t->expires_at;
	struct tm tm;
	double rem = ach_token_remaining(t);
	long long r = (long long)ach_clamp_i64(floor(fabs(rem)));
	if (gmtime_r(&at, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
		strcpy(when, "?");
	if (rem <= 0)
		snprintf(left, sizeof left, "expired %lldd %lldh ago", r / 86400, r % 86400 / 3600);
	else if (r >= 86400)
		snprintf(left, sizeof left, "in %lldd %lldh", r / 86400, r % 86400 / 3600);
	else if (r >= 3600)
		snprintf(left, sizeof left, "in %lldh %lldm", r / 3600, r % 3600 / 60);
	else
		snprintf(left, sizeof left, "in %lldm %llds", r / 60, r % 60);
	lua_pushfstring(L, "achievers.token(%s, %s, expires %s, %s)", t->token_type,
			t->scope[0] ? t->scope : "no scope", when, left);
	return 1;
}

void ach_token_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__gc", token_gc},
		{"__index", token_index},
		{"__tostring", token_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {
		{"expires_in", token_expires_in},
		{"is_expired", token_is_expired},
		{"needs_refresh", token_needs_refresh},
		{"refresh", token_refresh},
		{"to_table", token_to_table},
		{NULL, NULL},
	};
	luaL_newmetatable(L, ACH_TOKEN_MT);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "methods");
	lua_pop(L, 1);
}
