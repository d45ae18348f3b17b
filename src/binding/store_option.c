/*
 * store_option.c: the client option `store`: "memory" (the default) or a table naming a Redis
 * server; installs the backend it asks for (doc/design.md, "State store").
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "binding/store_option.h"
#include "core/buf.h"
#include "store/redis.h"

/* ---- the option ----------------------------------------------------------------------------- */

static const char *const store_keys[] = {"redis", "password", "prefix", "fleet_size", "timeout",
					 NULL};

static void check_keys(lua_State *L, int idx)
{
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		int i, known = 0;
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING)
			for (i = 0; store_keys[i] != NULL; i++)
				if (strcmp(lua_tostring(L, -1), store_keys[i]) == 0)
					known = 1;
		if (!known)
			luaL_error(L, "achievers.client: option 'store' has no key '%s' (it takes redis, "
				      "password, prefix, fleet_size, timeout)",
				   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
	}
}

static const char *field_string(lua_State *L, int idx, const char *name)
{
	const char *v;
	lua_getfield(L, idx, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "achievers.client: option 'store.%s' must be a string", name);
	v = lua_tostring(L, -1);
	lua_pop(L, 1); /* the table still holds it */
	return v;
}

static double field_number(lua_State *L, int idx, const char *name, double def, double min,
			   double max, int integer)
{
	double v;
	lua_getfield(L, idx, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return def;
	}
	v = lua_tonumber(L, -1);
	if (lua_type(L, -1) != LUA_TNUMBER || !(v >= min && v <= max) || (integer && v != floor(v)))
	{
		char msg[160];
		snprintf(msg, sizeof msg, "achievers.client: option 'store.%s' must be %s from %g to %g",
			 name, integer ? "an integer" : "a number", min, max);
		luaL_error(L, "%s", msg);
	}
	lua_pop(L, 1);
	return v;
}

/* redis://[:password@]host[:port][/db]: validated whole before anything is allocated, so a
 * raise leaks nothing */
static void parse_redis_url(lua_State *L, const char *url, ach_redis_options *o)
{
	const char *p = url, *host, *at, *colon, *slash, *pw = NULL;
	size_t pwlen = 0, hostlen;
	char *end;
	long v, port = 6379, db = 0;
	if (strncmp(p, "redis://", 8) != 0)
		luaL_error(L, "achievers.client: option 'store.redis' must be a redis:// URL");
	p += 8;
	/* the password may hold '@' and '/': the host starts after the last '@' */
	at = strrchr(p, '@');
	slash = strchr(at != NULL ? at : p, '/');
	if (at != NULL) {
		pw = strchr(p, ':');
		if (pw == NULL || pw > at)
			luaL_error(L, "achievers.client: option 'store.redis': give the password as "
				      "redis://:password@host or as store.password");
		pw++;
		pwlen = (size_t)(at - pw);
		p = at + 1;
	}
	host = p;
	colon = strchr(p, ':');
	if (colon != NULL && (slash == NULL || colon < slash)) {
		hostlen = (size_t)(colon - host);
		errno = 0;
		v = strtol(colon + 1, &end, 10);
		if (errno != 0 || v < 1 || v > 65535 || (end != slash && *end != '\0'))
			luaL_error(L, "achievers.client: option 'store.redis': bad port");
		port = v;
	} else {
		hostlen = slash != NULL ? (size_t)(slash - host) : strlen(host);
	}
	if (hostlen == 0)
		luaL_error(L, "achievers.client: option 'store.redis': no host");
	if (slash != NULL && slash[1] != '\0') {
		errno = 0;
		v = strtol(slash + 1, &end, 10);
		if (errno != 0 || v < 0 || v > INT_MAX || *end != '\0')
			luaL_error(L, "achievers.client: option 'store.redis': the path must be a "
				      "database number");
		db = v;
	}
	o->host = ach_strndup(host, hostlen);
	o->password = pw != NULL ? ach_strndup(pw, pwlen) : NULL;
	o->port = (int)port;
	o->db = (int)db;
	if (o->host == NULL || (pw != NULL && o->password == NULL)) {
		free(o->host);
		ach_free_secret(o->password);
		ach_nomem(L);
	}
}

static void redis_options_free(ach_redis_options *o)
{
	free(o->host);
	ach_free_secret(o->password);
	free(o->prefix);
	memset(o, 0, sizeof *o);
}

void ach_store_open(lua_State *L, int idx, ach_core *core)
{
	ach_store *st = core->store;
	ach_redis_options o;
	ach_buf err = {0};
	const char *s;
	idx = lua_absindex(L, idx);
	if (lua_isnil(L, idx) || (lua_type(L, idx) == LUA_TSTRING &&
				  strcmp(lua_tostring(L, idx), "memory") == 0))
		return;
	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "achievers.client: option 'store' must be \"memory\" or a table "
			      "{redis = \"redis://host:port/db\", ...}");
	check_keys(L, idx);
	memset(&o, 0, sizeof o);
	s = field_string(L, idx, "redis");
	if (s == NULL)
		luaL_error(L, "achievers.client: option 'store' needs redis = \"redis://host:port/db\"");
	{
		const char *url = s, *pw = field_string(L, idx, "password");
		s = field_string(L, idx, "prefix");
		if (s != NULL) {
			if (s[0] == '\0' || strlen(s) >= sizeof st->prefix ||
			    strpbrk(s, "{}\r\n ") != NULL)
				luaL_error(L, "achievers.client: option 'store.prefix' must be 1 to %d "
					      "characters without braces or spaces",
					   (int)sizeof st->prefix - 1);
			strcpy(st->prefix, s);
		}
		o.fleet_size = (int)field_number(L, idx, "fleet_size", 1, 1, 100000, 1);
		o.timeout = field_number(L, idx, "timeout", 0.5, 0.001, 60, 0);
		if (core->opt.client_id != NULL && strpbrk(core->opt.client_id, "{}") != NULL)
			luaL_error(L, "achievers.client: a client_id with braces cannot name Redis keys");
		parse_redis_url(L, url, &o); /* the last thing that may raise before the connection */
		if (pw != NULL) {
			ach_free_secret(o.password);
			if ((o.password = ach_strdup(pw)) == NULL) {
				redis_options_free(&o);
				ach_nomem(L);
			}
		}
	}
	{
		ach_store old = *st;
		if (ach_store_redis(st, core, &o, &err) != 0) {
			*st = old;
			redis_options_free(&o);
			lua_pushstring(L, err.data != NULL ? err.data : "not enough memory");
			ach_buf_free(&err);
			luaL_error(L, "achievers.client: store: %s", lua_tostring(L, -1));
		}
		old.ops->free(old.ud); /* the memory store it replaces */
	}
	redis_options_free(&o);
}

