/*
 * client.c: the client object of the public contract: options, the OAuth 2.0 flows, and the
 * request calls. A client owns a token slot; it shares its core (options and the libcurl
 * multi handle, so the connection pool) with the clients with_token derives from it.
 *
 * User value of a client: {root = the client that owns the core's hooks (itself or a parent),
 * on_token, on_request, on_rate_limit, pending = {[exchange pointer] = request}}.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/encode.h"
#include "binding/error.h"
#include "binding/json.h"
#include "binding/lua_driver.h"
#include "binding/multipart.h"
#include "binding/record.h"
#include "binding/request.h"
#include "binding/resources.h"
#include "binding/result.h"
#include "binding/spawn.h"
#include "binding/store_option.h"
#include "binding/token.h"
#include "core/buf.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/kind.h"
#include "core/pkce.h"
#include "core/store.h"
#include "core/token.h"
#include "core/url.h"
#include "curl/driver.h"
#include "store/memory.h"

typedef struct client {
	ach_core *core;
	ach_slot *slot;
} client;

static const char objects_key = 'o'; /* registry: weak {[core or slot pointer] = client} */
static const char hook_error_key = 'h'; /* registry: the first error a hook raised */

/* ---- helpers ------------------------------------------------------------------------------- */

static client *check_client(lua_State *L, int idx)
{
	client *c = luaL_checkudata(L, idx, ACH_CLIENT_MT);
	if (c->core == NULL)
		luaL_argerror(L, idx, "client is closed");
	return c;
}

ach_core *ach_client_core(lua_State *L, int idx)
{
	return check_client(L, idx)->core;
}

ach_slot *ach_client_slot(lua_State *L, int idx)
{
	return check_client(L, idx)->slot;
}

static void push_objects(lua_State *L)
{
	ach_rawgetp(L, LUA_REGISTRYINDEX, &objects_key);
	if (lua_istable(L, -1))
		return;
	lua_pop(L, 1);
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "v");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	ach_rawsetp(L, LUA_REGISTRYINDEX, &objects_key);
}

/* Pushes the client registered for a core or slot pointer (nil when gone). */
static void push_object(lua_State *L, const void *p)
{
	push_objects(L);
	ach_rawgetp(L, -1, p);
	lua_remove(L, -2);
}

/* Pushes field `name` of the user value of the client registered for core `c`. */
static int push_root_field(lua_State *L, ach_core *c, const char *name)
{
	push_object(L, c);
	if (lua_isnil(L, -1))
		return 0;
	ach_getuservalue(L, -1);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	lua_remove(L, -2);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	return 1;
}

/* Calls the function below its nargs arguments in protected mode; the first error is kept
 * and raised when the Lua call that drives the core returns (ach_raise_hook_error). */
void ach_hook_error_set(lua_State *L, ach_core *c)
{
	if (!ACH_HOST(c)->hook_error) {
		ACH_HOST(c)->hook_error = 1;
		ach_rawsetp(L, LUA_REGISTRYINDEX, &hook_error_key);
	} else {
		lua_pop(L, 1); /* the first error wins */
	}
}

static void call_hook(lua_State *L, ach_core *c, int nargs)
{
	if (lua_pcall(L, nargs, 0, 0) != LUA_OK)
		ach_hook_error_set(L, c);
}

void ach_raise_hook_error(lua_State *L, ach_core *c)
{
	if (!ACH_HOST(c)->hook_error)
		return;
	ACH_HOST(c)->hook_error = 0;
	ach_rawgetp(L, LUA_REGISTRYINDEX, &hook_error_key);
	lua_pushnil(L);
	ach_rawsetp(L, LUA_REGISTRYINDEX, &hook_error_key);
	lua_error(L);
}

static void push_redacted_url(lua_State *L, const char *url)
{
	ach_buf b = {0};
	if (url == NULL || ach_redact_url(&b, url) != 0 || b.data == NULL) {
		ach_buf_free(&b);
		lua_pushliteral(L, "?");
		return;
	}
	lua_pushlstring(L, b.data, b.len);
	ach_buf_free(&b);
}


/* Blocking calls and poll from inside an on_request, on_token or on_rate_limit hook would
 * re-enter the driver that is running the hook. */
void ach_check_not_in_hook(lua_State *L, ach_core *core, const char *what)
{
	if (core->in_driver > 0)
		luaL_error(L, "achievers: %s cannot be called from inside an on_request, on_token or "
			      "on_rate_limit hook (use client:async, or act after the call returns)", what);
}

/* ---- hooks the engine calls -------------------------------------------------------------------- */

static void hook_token(ach_core *c, ach_exchange *ex, ach_slot *slot)
{
	lua_State *L = ACH_HOST(c)->L;
	int top;
	if (L == NULL)
		return;
	top = lua_gettop(L);
	if (push_root_field(L, c, "on_token")) {
		push_object(L, slot);
		ach_push_token(L, ex->token, lua_isnil(L, -1) ? 0 : -1);
		lua_remove(L, -2);
		call_hook(L, c, 1);
	}
	lua_settop(L, top);
}

static int push_event(lua_State *L, ach_exchange *ex, const char *phase)
{
	lua_createtable(L, 0, 8);
	lua_pushstring(L, phase);
	lua_setfield(L, -2, "phase");
	lua_pushstring(L, ex->method);
	lua_setfield(L, -2, "method");
	push_redacted_url(L, ex->url);
	lua_setfield(L, -2, "url");
	lua_pushinteger(L, ex->attempt);
	lua_setfield(L, -2, "attempt");
	lua_pushboolean(L, ex->type == ACH_EX_TOKEN);
	lua_setfield(L, -2, "token_request");
	return lua_gettop(L);
}

/* Headers whose values the trace never shows (the recorder's list too, record.lua). */
static const char *const secret_headers[] = {
	"Cookie:", "Proxy-Authorization:", "X-Api-Key:", "X-Auth-Token:", NULL,
};

static int secret_header(const char *h)
{
	for (int i = 0; secret_headers[i] != NULL; i++)
		if (strncasecmp(h, secret_headers[i], strlen(secret_headers[i])) == 0)
			return (int)strlen(secret_headers[i]);
	return 0;
}

static void hook_trace(ach_core *c, ach_exchange *ex, const char *phase, const ach_http_response *r)
{
	lua_State *L = ACH_HOST(c)->L;
	int top, ev, i;
	if (L == NULL || ex->warm)
		return;
	top = lua_gettop(L);
	if (push_root_field(L, c, "recorder")) /* record option (record.c) */
		ach_record_event(L, c, ex, phase, r);
	if (push_root_field(L, c, "on_request")) {
		ev = push_event(L, ex, phase);
		if (r == NULL && ex->headers != NULL) {
			lua_newtable(L);
			for (i = 0; ex->headers[i] != NULL; i++) {
				const char *h = ex->headers[i];
				int n;
				if (strncasecmp(h, "Authorization:", 14) == 0)
					lua_pushfstring(L, "Authorization: %s [redacted]",
							strncasecmp(h + 15, "Basic", 5) == 0 ? "Basic" : "Bearer");
				else if ((n = secret_header(h)) > 0) {
					lua_pushlstring(L, h, (size_t)n); /* the name, as sent */
					lua_pushliteral(L, " [redacted]");
					lua_concat(L, 2);
				} else
					lua_pushstring(L, h);
				lua_rawseti(L, -2, i + 1);
			}
			lua_setfield(L, ev, "headers");
		}
		if (r != NULL) {
			if (r->status > 0) {
				lua_pushinteger(L, (lua_Integer)r->status);
				lua_setfield(L, ev, "status");
			}
			if (r->failure != ACH_KIND_NONE) {
				lua_pushstring(L, ach_kind_name(r->failure));
				lua_setfield(L, ev, "kind");
				lua_pushstring(L, r->message ? r->message : "");
				lua_setfield(L, ev, "message");
			}
			lua_pushnumber(L, ach_now() - ex->started);
			lua_setfield(L, ev, "elapsed");
		}
		call_hook(L, c, 1);
	}
	lua_settop(L, top);
}

static void hook_retry(ach_core *c, ach_exchange *ex, double delay)
{
	lua_State *L = ACH_HOST(c)->L;
	int top;
	if (L == NULL)
		return;
	top = lua_gettop(L);
	if (push_root_field(L, c, "on_request")) {
		push_event(L, ex, "retry");
		lua_pushnumber(L, delay);
		lua_setfield(L, -2, "delay");
		call_hook(L, c, 1);
	}
	lua_settop(L, top);
}

static void hook_rate_limit(ach_core *c, ach_exchange *ex, double wait, int server)
{
	lua_State *L = ACH_HOST(c)->L;
	int top;
	if (L == NULL)
		return;
	top = lua_gettop(L);
	if (push_root_field(L, c, "on_rate_limit")) {
		lua_createtable(L, 0, 5);
		lua_pushnumber(L, wait);
		lua_setfield(L, -2, "wait");
		lua_pushstring(L, server ? "server" : "pacing"); /* a 429's Retry-After, or ours */
		lua_setfield(L, -2, "reason");
		lua_pushstring(L, ex->rate_class == ACH_CLASS_HEAVY ? "heavy" : "default");
		lua_setfield(L, -2, "class");
		lua_pushstring(L, ex->method);
		lua_setfield(L, -2, "method");
		push_redacted_url(L, ex->url);
		lua_setfield(L, -2, "url");
		call_hook(L, c, 1);
	}
	lua_settop(L, top);
}

/* ---- state store: on_store (src/store/) ---- */
static void hook_store(ach_core *c, int up, const char *message)
{
	lua_State *L = ACH_HOST(c)->L;
	int top;
	if (L == NULL)
		return;
	top = lua_gettop(L);
	if (push_root_field(L, c, "on_store")) {
		lua_createtable(L, 0, 2);
		lua_pushstring(L, up ? "up" : "down");
		lua_setfield(L, -2, "state");
		lua_pushstring(L, message);
		lua_setfield(L, -2, "message");
		call_hook(L, c, 1);
	}
	lua_settop(L, top);
}
/* ---- end of state store ---- */

/* The hooks as the engine sees them (core->hooks, with the core's ach_host). */
static void on_token_hook(void *ud, ach_exchange *ex, ach_slot *slot)
{
	hook_token(((ach_host *)ud)->core, ex, slot);
}

static void on_trace_hook(void *ud, ach_exchange *ex, const char *phase, const ach_http_response *r)
{
	hook_trace(((ach_host *)ud)->core, ex, phase, r);
}

static void on_retry_hook(void *ud, ach_exchange *ex, double delay)
{
	hook_retry(((ach_host *)ud)->core, ex, delay);
}

static void on_rate_limit_hook(void *ud, ach_exchange *ex, double wait, int server)
{
	hook_rate_limit(((ach_host *)ud)->core, ex, wait, server);
}

static void on_store_hook(void *ud, int up, const char *message)
{
	hook_store(((ach_host *)ud)->core, up, message);
}

static int hooks_ready(void *ud)
{
	return ((ach_host *)ud)->L != NULL;
}

static const ach_hooks lua_hooks = {on_token_hook, on_trace_hook,   on_retry_hook,
				    on_rate_limit_hook, on_store_hook, hooks_ready,
				    free, NULL};

/* A core for a Lua client: the system's clocks, the libcurl driver, the Lua hooks, the memory
 * store (until the store option says otherwise). NULL out of memory. */
static ach_core *new_core(void)
{
	ach_core *core = ach_core_new(&ach_env_system);
	ach_host *host = calloc(1, sizeof *host);
	ach_store *st = calloc(1, sizeof *st);
	if (core == NULL || host == NULL || st == NULL)
		goto fail;
	host->core = core;
	core->hooks = lua_hooks;
	core->hooks.ud = host;
	host = NULL; /* the core's now */
	ach_store_init(st, &core->env);
	if (ach_store_memory(st, &core->env) != 0)
		goto fail;
	ach_core_set_store(core, st);
	st = NULL;
	if (ach_curl_driver_init(core) != 0)
		goto fail;
	return core;
fail:
	free(host);
	free(st);
	ach_core_unref(core);
	return NULL;
}

/* ---- options ------------------------------------------------------------------------------------ */

/* Caller tables. A named field (an option, a request field) is read once, through the table's
 * metatable (so a table of defaults behind __index works), and its value stays on the stack
 * or is copied before anything else is read: __index may make it afresh, and the next read may
 * run a collection. The tables the module walks (headers, form, query, limits, scope lists, the
 * parts of a multipart body, batch lists) are read by their own contents: lua_next,
 * lua_rawlen and lua_rawgeti, never __pairs, __len or __index, in every Lua version. */

/* Whether the key at the top of the stack is one of `names` (byte for byte: "path\0x" is not
 * "path"). */
static int key_known(lua_State *L, const char *const *names)
{
	size_t n;
	const char *k;
	if (lua_type(L, -1) != LUA_TSTRING)
		return 0;
	k = lua_tolstring(L, -1, &n);
	for (int i = 0; names[i] != NULL; i++)
		if (strlen(names[i]) == n && memcmp(k, names[i], n) == 0)
			return 1;
	return 0;
}

static const char *const option_names[] = {
	"base_url", "client_id", "client_secret", "scope", "redirect_uri", "token_auth", "token",
	"on_token", "refresh_window", "timeout", "connect_timeout", "retries", "retry_max_wait",
	"rate_limit", "limits", "max_concurrency", "ca_file", "insecure", "proxy", "user_agent",
	"on_request", "on_rate_limit", "allow_http", "max_response_size", "frame_budget",
	"deadline", "record", "record_pseudonymise", /* record.c */
	"store", "on_store", /* state store (src/store/) */
	"pkce",
	NULL,
};

static int opt_type(lua_State *L, int opts, const char *name, int type)
{
	lua_getfield(L, opts, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (lua_type(L, -1) != type)
		luaL_error(L, "achievers.client: option '%s' must be a %s (got %s)", name,
			   lua_typename(L, type), luaL_typename(L, -1));
	return 1;
}

static char *opt_string(lua_State *L, int opts, const char *name)
{
	char *s = NULL;
	if (opt_type(L, opts, name, LUA_TSTRING)) {
		size_t n;
		const char *v = lua_tolstring(L, -1, &n);
		if (strlen(v) != n)
			luaL_error(L, "achievers.client: option '%s' must not contain NUL", name);
		lua_pushfstring(L, "achievers.client: option '%s'", name);
		ach_check_header_safe(L, v, n, lua_tostring(L, -1));
		s = ach_strdup(v);
		lua_pop(L, 2);
		if (s == NULL)
			ach_nomem(L);
	}
	return s;
}

#define DAY 86400.0 /* the longest timeout, wait or deadline an option takes, seconds */

/* A number option within [min, max]; raises naming both bounds and the value given. */
static double opt_number(lua_State *L, int opts, const char *name, double def, double min,
			 double max)
{
	double v = def;
	if (opt_type(L, opts, name, LUA_TNUMBER)) {
		v = lua_tonumber(L, -1);
		if (!(v >= min) || !(v <= max)) { /* also keeps later casts in range */
			char lo[32], hi[32], got[32];
			snprintf(lo, sizeof lo, "%.15g", min);
			snprintf(hi, sizeof hi, "%.15g", max);
			snprintf(got, sizeof got, "%.15g", v);
			luaL_error(L, "achievers.client: option '%s' must be a finite number >= %s and "
				      "<= %s (got %s)", name, lo, hi, got);
		}
		lua_pop(L, 1);
	}
	return v;
}

static int opt_integer(lua_State *L, int opts, const char *name, int def, int min, int max)
{
	double v = opt_number(L, opts, name, def, min, max);
	if (v != floor(v) || v > 1e9)
		luaL_error(L, "achievers.client: option '%s' must be an integer", name);
	return (int)v;
}

static int opt_boolean(lua_State *L, int opts, const char *name, int def)
{
	int v = def;
	if (opt_type(L, opts, name, LUA_TBOOLEAN)) {
		v = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	return v;
}

/* scope: "read,write", "read write" or {"read", "write"} -> comma and space forms */
static void opt_scope(lua_State *L, int opts, ach_options *o)
{
	ach_buf comma = {0}, space = {0};
	int failed = 0;
	lua_getfield(L, opts, "scope");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushliteral(L, "read");
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		const char *s = lua_tostring(L, -1);
		ach_check_header_safe(L, s, lua_rawlen(L, -1), "scope");
		lua_newtable(L);
		for (int i = 1; *s != '\0';) {
			size_t n = strcspn(s, ", +");
			if (n > 0) {
				lua_pushlstring(L, s, n);
				lua_rawseti(L, -2, i++);
			}
			s += n;
			if (*s != '\0')
				s++;
		}
		lua_remove(L, -2);
	}
	if (lua_type(L, -1) != LUA_TTABLE)
		luaL_error(L, "achievers.client: option 'scope' must be a string or a list of strings "
			      "(got %s)", luaL_typename(L, -1));
	for (int i = 1; i <= (int)lua_rawlen(L, -1); i++) { /* check first: raising frees nothing */
		const char *s;
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "achievers.client: option 'scope' must list strings");
		s = lua_tostring(L, -1);
		if (s[strcspn(s, ", +\r\n")] != '\0' || s[0] == '\0' || strlen(s) != lua_rawlen(L, -1))
			luaL_error(L, "achievers.client: option 'scope' has a bad entry '%s'", s);
		lua_pop(L, 1);
	}
	for (int i = 1; i <= (int)lua_rawlen(L, -1); i++) {
		const char *s;
		lua_rawgeti(L, -1, i);
		s = lua_tostring(L, -1);
		failed |= (i > 1 && (ach_buf_addc(&comma, ',') || ach_buf_addc(&space, ' '))) ||
			  ach_buf_adds(&comma, s) || ach_buf_adds(&space, s);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (!failed) {
		free(o->scope_comma);
		free(o->scope_space);
		o->scope_comma = ach_buf_take(&comma);
		o->scope_space = ach_buf_take(&space);
	}
	ach_buf_free(&comma);
	ach_buf_free(&space);
	if (failed || o->scope_comma == NULL || o->scope_space == NULL)
		ach_nomem(L);
}

static void opt_limits(lua_State *L, int opts, ach_options *o)
{
	static const char *const names[ACH_CLASS_COUNT] = {"default", "heavy"};
	o->limits[ACH_CLASS_DEFAULT] = (ach_limit){500, 120};
	o->limits[ACH_CLASS_HEAVY] = (ach_limit){50, 60};
	if (!opt_type(L, opts, "limits", LUA_TTABLE))
		return;
	lua_pushnil(L);
	while (lua_next(L, -2) != 0) {
		int k, found = -1;
		for (k = 0; k < ACH_CLASS_COUNT; k++)
			if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), names[k]) == 0 &&
			    lua_rawlen(L, -2) == strlen(names[k]))
				found = k;
		if (found < 0)
			luaL_error(L, "achievers.client: option 'limits' takes 'default' and 'heavy'");
		if (lua_type(L, -1) != LUA_TTABLE)
			luaL_error(L, "achievers.client: option 'limits.%s' must be {count, seconds}",
				   names[found]);
		lua_rawgeti(L, -1, 1);
		lua_rawgeti(L, -2, 2);
		if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1) || lua_tonumber(L, -2) < 1 ||
		    lua_tonumber(L, -2) > 1e6 || lua_tonumber(L, -1) <= 0 || lua_tonumber(L, -1) > 1e7)
			luaL_error(L, "achievers.client: option 'limits.%s' must be {count (1 to "
				      "1000000), seconds (> 0)}", names[found]);
		o->limits[found].count = (int)lua_tonumber(L, -2);
		o->limits[found].window = lua_tonumber(L, -1);
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
}

/* Whether a proxy URL ([scheme://][user@]host[:port][/...]) names a loopback host. */
static int proxy_on_loopback(const char *p)
{
	const char *s = strstr(p, "://"), *at, *end;
	char host[256];
	size_t n;
	p = s != NULL ? s + 3 : p;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at != NULL)
		p = at + 1;
	if (*p == '[') {
		p++;
		n = strcspn(p, "]");
	} else {
		n = strcspn(p, ":/?#");
	}
	if (n == 0 || n >= sizeof host || p + n > end)
		return 0;
	memcpy(host, p, n);
	host[n] = '\0';
	return ach_host_is_loopback(host);
}

/* proxy: a URL, or false (or "") for none, not even the environment's. A proxy reads what
 * goes to an http:// base_url (the client secret, tokens): with one, the proxy must be on
 * loopback too, or allow_http = true must say that plaintext is accepted. The rest of the
 * policy is the driver's (curl/driver.c, drv_start). */
static void opt_proxy(lua_State *L, int opts, ach_options *o, int allow_http)
{
	lua_getfield(L, opts, "proxy"); /* read once: the value is checked and copied from here */
	if (lua_type(L, -1) == LUA_TBOOLEAN) {
		if (lua_toboolean(L, -1))
			luaL_error(L, "achievers.client: option 'proxy' must be a proxy URL, or false for "
				      "none");
		o->proxy = ach_strdup("");
	} else if (lua_type(L, -1) == LUA_TSTRING) {
		size_t n;
		const char *v = lua_tolstring(L, -1, &n);
		if (strlen(v) != n)
			luaL_error(L, "achievers.client: option 'proxy' must not contain NUL");
		ach_check_header_safe(L, v, n, "achievers.client: option 'proxy'");
		o->proxy = ach_strdup(v);
	} else if (!lua_isnil(L, -1)) {
		luaL_error(L, "achievers.client: option 'proxy' must be a proxy URL, or false for none "
			      "(got %s)", luaL_typename(L, -1));
	} else {
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 1);
	if (o->proxy == NULL)
		ach_nomem(L);
	if (o->proxy[0] != '\0' && !o->base.https && !allow_http && !proxy_on_loopback(o->proxy))
		luaL_error(L, "achievers.client: option 'proxy' is not on loopback and base_url uses "
			      "http://: the proxy would read the client secret and tokens; use https://, "
			      "a proxy on loopback, or set allow_http = true");
}

/* Reads every option of the table at `opts` into the core, and the hook functions into the
 * table at `hooks`; raises on misuse. */
static void read_options(lua_State *L, int opts, ach_core *core, int hooks)
{
	ach_options *o = &core->opt;
	const char *why;
	char *base, *mode;
	int allow_http;

	lua_pushnil(L);
	while (lua_next(L, opts) != 0) {
		lua_pop(L, 1);
		if (!key_known(L, option_names))
			luaL_error(L, "achievers.client: unknown option '%s'",
				   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
	}
	base = opt_string(L, opts, "base_url");
	if (base == NULL)
		luaL_error(L, "achievers.client: option 'base_url' is required (the program URL, "
			      "e.g. https://example.sandbox.achievers.com)");
	why = ach_url_parse(base, &o->base);
	free(base);
	if (why != NULL)
		luaL_error(L, "achievers.client: option 'base_url' %s", why);
	/* a base URL given with the API prefix: keep the program root */
	{
		size_t n = strlen(o->base.path), p = strlen("/api/v5");
		if (n >= p && strcmp(o->base.path + n - p, "/api/v5") == 0)
			o->base.path[n - p] = '\0';
	}
	allow_http = opt_boolean(L, opts, "allow_http", 0);
	if (!o->base.https && !allow_http && !ach_host_is_loopback(o->base.host))
		luaL_error(L, "achievers.client: option 'base_url' uses http:// on a host that is not "
			      "loopback; use https://, or set allow_http = true to send tokens in the clear");
	o->client_id = opt_string(L, opts, "client_id");
	o->client_secret = opt_string(L, opts, "client_secret");
	o->redirect_uri = opt_string(L, opts, "redirect_uri");
	o->ca_file = opt_string(L, opts, "ca_file");
	opt_proxy(L, opts, o, allow_http);
	o->user_agent = opt_string(L, opts, "user_agent");
	if (o->user_agent == NULL && (o->user_agent = ach_strdup("lua-achievers/" ACH_VERSION)) == NULL)
		ach_nomem(L);
	opt_scope(L, opts, o);
	mode = opt_string(L, opts, "token_auth");
	o->token_auth = ACH_AUTH_JSON;
	if (mode != NULL) {
		int ok = 1;
		if (strcmp(mode, "basic") == 0)
			o->token_auth = ACH_AUTH_BASIC;
		else if (strcmp(mode, "post") == 0)
			o->token_auth = ACH_AUTH_POST;
		else if (strcmp(mode, "json") != 0)
			ok = 0;
		free(mode);
		if (!ok)
			luaL_error(L, "achievers.client: option 'token_auth' must be \"json\", \"basic\" "
				      "or \"post\"");
	}
	o->refresh_window = opt_number(L, opts, "refresh_window", 7200, 0, 1e12);
	o->timeout = opt_number(L, opts, "timeout", 30, 0.001, DAY);
	o->connect_timeout = opt_number(L, opts, "connect_timeout", 10, 0.001, DAY);
	o->deadline = opt_number(L, opts, "deadline", 0, 0.001, DAY);
	o->retries = opt_integer(L, opts, "retries", 2, 0, 10);
	o->retry_max_wait = opt_number(L, opts, "retry_max_wait", 60, 0, DAY);
	o->rate_limit = opt_boolean(L, opts, "rate_limit", 1);
	opt_limits(L, opts, o);
	o->max_concurrency = opt_integer(L, opts, "max_concurrency", 8, 1, 256);
	o->frame_budget = opt_number(L, opts, "frame_budget", ACH_FRAME_BUDGET, 0, 60);
	o->insecure = opt_boolean(L, opts, "insecure", 0);
	/* 8 MiB: a page of 100 items is well under 1 MiB */
	o->max_response = (size_t)opt_number(L, opts, "max_response_size", 8.0 * 1024 * 1024, 1,
					     1e12);
	o->pkce = opt_boolean(L, opts, "pkce", 1);
	if (opt_type(L, opts, "on_token", LUA_TFUNCTION))
		lua_setfield(L, hooks, "on_token");
	if (opt_type(L, opts, "on_request", LUA_TFUNCTION))
		lua_setfield(L, hooks, "on_request");
	if (opt_type(L, opts, "on_rate_limit", LUA_TFUNCTION))
		lua_setfield(L, hooks, "on_rate_limit");
	/* state store (binding/store_option.c): last, it may connect to Redis */
	if (opt_type(L, opts, "on_store", LUA_TFUNCTION))
		lua_setfield(L, hooks, "on_store");
	lua_getfield(L, opts, "store");
	ach_store_open(L, -1, core);
	lua_pop(L, 1);
}

/* ---- construction ---------------------------------------------------------------------------------- */

/* Pushes a new client object with no core yet (safe for __gc). */
static client *push_client_shell(lua_State *L)
{
	client *c = ach_newuserdata(L, sizeof *c);
	c->core = NULL;
	c->slot = NULL;
	luaL_setmetatable(L, ACH_CLIENT_MT);
	return c;
}

static void register_object(lua_State *L, const void *p, int idx)
{
	idx = lua_absindex(L, idx);
	push_objects(L);
	lua_pushvalue(L, idx);
	ach_rawsetp(L, -2, p);
	lua_pop(L, 1);
}

static void set_slot_token(lua_State *L, ach_slot *s, int idx)
{
	ach_token_data *t = ach_test_token(L, idx);
	if (t == NULL) {
		if (lua_type(L, idx) != LUA_TTABLE)
			luaL_error(L, "achievers.client: option 'token' must be a token or a saved "
				      "token table");
		t = ach_token_from_table(L, idx);
		ach_slot_set_token(s, t);
		ach_token_unref(t);
	} else {
		ach_slot_set_token(s, t);
	}
	s->user = strcmp(s->tok->grant_type, "authorization_code") == 0;
}

int ach_client_new(lua_State *L)
{
	client *c;
	int obj;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	c = push_client_shell(L);
	obj = lua_gettop(L);
	if ((c->core = new_core()) == NULL)
		ach_nomem(L);
	if ((c->slot = ach_slot_new(c->core)) == NULL)
		ach_nomem(L);
	/* user value: hooks and the anchor for pending requests */
	lua_createtable(L, 0, 6);
	read_options(L, 1, c->core, lua_gettop(L));
	lua_pushvalue(L, obj);
	lua_setfield(L, -2, "root");
	lua_newtable(L);
	lua_setfield(L, -2, "pending");
	ach_record_setup(L, 1, -1); /* record option (record.c) */
	ach_setuservalue(L, obj);
	register_object(L, c->core, obj);
	register_object(L, c->slot, obj);
	lua_getfield(L, 1, "token");
	if (!lua_isnil(L, -1))
		set_slot_token(L, c->slot, -1);
	lua_pop(L, 1);
	return 1;
}

/* client:with_token(tok): a client acting with this token, on the same connection pool. */
static int client_with_token(lua_State *L)
{
	client *parent = check_client(L, 1), *c;
	int obj;
	luaL_argcheck(L, ach_test_token(L, 2) != NULL || lua_istable(L, 2), 2,
		      "expected a token or a saved token table");
	c = push_client_shell(L);
	obj = lua_gettop(L);
	c->core = parent->core;
	c->core->refs++;
	if ((c->slot = ach_slot_new(c->core)) == NULL)
		ach_nomem(L);
	set_slot_token(L, c->slot, 2);
	/* A client made with a token acts only as that token's holder: when it is rejected or runs
	 * out, it is refreshed or the call says reauthorize; it never fetches the program's own
	 * client_credentials token in its place (a saved table without grant_type reads as one). */
	c->slot->user = 1;
	ach_getuservalue(L, 1);
	lua_createtable(L, 0, 3);
	lua_getfield(L, -2, "root");
	lua_setfield(L, -2, "root");
	lua_newtable(L);
	lua_setfield(L, -2, "pending");
	ach_setuservalue(L, obj);
	lua_pop(L, 1);
	register_object(L, c->slot, obj);
	return 1;
}

static int client_gc(lua_State *L)
{
	client *c = luaL_checkudata(L, 1, ACH_CLIENT_MT);
	ach_slot_unref(c->slot);
	ach_core_unref(c->core);
	c->slot = NULL;
	c->core = NULL;
	return 0;
}

/* ---- requests ------------------------------------------------------------------------------------------ */

static const char *const request_fields[] = {
	"method", "path", "query", "form", "json", "body", "content_type", "headers", "timeout",
	"multipart", "deadline", NULL,
};

/* Builds the absolute URL for `path` (and `query`) into b; raises on misuse. */
static void build_url(lua_State *L, ach_core *core, int path_idx, int query_idx, ach_buf *b)
{
	const ach_options *o = &core->opt;
	size_t n;
	const char *path = lua_tolstring(L, path_idx, &n);
	int rc = 0;
	if (strlen(path) != n || n == 0)
		luaL_error(L, "request: 'path' must be a non-empty string without NUL");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f)
			luaL_error(L, "request: 'path' must not contain spaces or control characters "
				      "(encode path parameters)");
	if (strncasecmp(path, "https://", 8) == 0 || strncasecmp(path, "http://", 7) == 0) {
		ach_url u;
		const char *why = ach_url_parse(path, &u);
		int same;
		if (why != NULL && strstr(why, "query") == NULL)
			luaL_error(L, "request: 'path' %s", why);
		if (why == NULL) {
			same = strcmp(u.origin, o->base.origin) == 0;
			ach_url_free(&u);
		} else {
			/* has a query: compare the origin by hand */
			size_t on = strlen(o->base.origin);
			same = strncasecmp(path, o->base.origin, on) == 0 &&
			       (path[on] == '/' || path[on] == '?' || path[on] == '\0');
		}
		if (!same)
			luaL_error(L, "request: 'path' is an absolute URL on another host than "
				      "base_url (%s): refusing to send the token there", o->base.origin);
		rc = ach_buf_adds(b, path);
	} else {
		rc = ach_buf_adds(b, o->base.origin) || ach_buf_adds(b, o->base.path);
		if (path[0] == '/')
			rc = rc || ach_buf_adds(b, path);
		else
			rc = rc || ach_buf_adds(b, ACH_API_PREFIX) || ach_buf_adds(b, path);
	}
	if (rc)
		ach_nomem(L);
	if (query_idx != 0 && !lua_isnil(L, query_idx)) {
		size_t before = b->len;
		if (lua_type(L, query_idx) == LUA_TSTRING) {
			const char *q = lua_tostring(L, query_idx);
			ach_check_header_safe(L, q, lua_rawlen(L, query_idx), "query");
			if (q[0] != '\0')
				rc = ach_buf_addc(b, strchr(b->data, '?') ? '&' : '?') ||
				     ach_buf_adds(b, q[0] == '?' ? q + 1 : q);
		} else if (lua_type(L, query_idx) == LUA_TTABLE) {
			if (ach_buf_addc(b, strchr(b->data, '?') ? '&' : '?') != 0)
				ach_nomem(L);
			before = b->len;
			ach_encode_form(L, query_idx, b, "query");
			if (b->len == before)
				b->data[--b->len] = '\0'; /* empty table: drop the separator */
		} else {
			luaL_error(L, "request: 'query' must be a table or a string (got %s)",
				   luaL_typename(L, query_idx));
		}
		if (rc)
			ach_nomem(L);
	}
}

static char *dup_or_raise(lua_State *L, const char *s)
{
	char *p = ach_strdup(s);
	if (p == NULL)
		ach_nomem(L);
	return p;
}

/* Sets the exchange's Content-Type line; the field is owned, so replace rather than leak. */
static void set_content_type(lua_State *L, ach_exchange *ex, const char *line)
{
	char *p = dup_or_raise(L, line);
	free(ex->content_type);
	ex->content_type = p;
}

/* Fills an API exchange from a request table at `spec`. The exchange lives in a userdata on
 * the stack, so whatever it holds is freed by __gc if this raises. */
void ach_client_prepare(lua_State *L, int cl, int spec, ach_exchange *ex)
{
	client *c = check_client(L, cl);
	const char *method = "GET";
	int body_kinds = 0, nheaders = 0;

	spec = lua_absindex(L, spec);
	lua_pushnil(L);
	while (lua_next(L, spec) != 0) {
		lua_pop(L, 1);
		if (!key_known(L, request_fields))
			luaL_error(L, "request: unknown field '%s'",
				   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
	}
	lua_getfield(L, spec, "method");
	if (!lua_isnil(L, -1)) {
		const char *m;
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "request: 'method' must be a string");
		m = lua_tostring(L, -1);
		if (m[0] == '\0' || m[strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")] != '\0' ||
		    strlen(m) != lua_rawlen(L, -1))
			luaL_error(L, "request: 'method' must be an upper-case HTTP method");
		method = m;
	}
	ex->method = dup_or_raise(L, method);
	lua_pop(L, 1);

	lua_getfield(L, spec, "path");
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "request: 'path' must be a string (got %s)", luaL_typename(L, -1));
	lua_getfield(L, spec, "query");
	/* built in the exchange's scratch buffer, which __gc frees if anything raises */
	build_url(L, c->core, lua_gettop(L) - 1, lua_gettop(L), &ex->scratch);
	if ((ex->url = ach_buf_take(&ex->scratch)) == NULL)
		ach_nomem(L);
	lua_pop(L, 2);

	lua_getfield(L, spec, "timeout");
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > DAY)
			luaL_error(L, "request: 'timeout' must be a number of seconds, > 0 and <= 86400");
		ex->timeout = lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	lua_getfield(L, spec, "deadline");
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0) || lua_tonumber(L, -1) > DAY)
			luaL_error(L, "request: 'deadline' must be a number of seconds, > 0 and <= 86400");
		ex->deadline_at = ex->started + lua_tonumber(L, -1);
	}
	lua_pop(L, 1);

	lua_getfield(L, spec, "form");
	if (!lua_isnil(L, -1)) {
		if (!lua_istable(L, -1))
			luaL_error(L, "request: 'form' must be a table");
		ach_encode_form(L, -1, &ex->body, "form");
		if (ex->body.data == NULL && ach_buf_add(&ex->body, "", 0) != 0)
			ach_nomem(L);
		set_content_type(L, ex, "Content-Type: application/x-www-form-urlencoded");
		body_kinds++;
	}
	lua_pop(L, 1);
	lua_getfield(L, spec, "json");
	if (!lua_isnil(L, -1)) {
		ach_json_encode(L, -1, &ex->body);
		set_content_type(L, ex, "Content-Type: application/json");
		body_kinds++;
	}
	lua_pop(L, 1);
	lua_getfield(L, spec, "body");
	if (!lua_isnil(L, -1)) {
		size_t n;
		const char *s;
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "request: 'body' must be a string");
		s = lua_tolstring(L, -1, &n);
		if (ach_buf_add(&ex->body, s, n) != 0)
			ach_nomem(L);
		body_kinds++;
		lua_getfield(L, spec, "content_type");
		if (!lua_isnil(L, -1)) {
			if (lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "request: 'content_type' must be a string");
			ach_check_header_safe(L, lua_tostring(L, -1), lua_rawlen(L, -1), "content_type");
			lua_pushfstring(L, "Content-Type: %s", lua_tostring(L, -1));
			set_content_type(L, ex, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	lua_getfield(L, spec, "multipart");
	if (!lua_isnil(L, -1)) {
		ach_encode_multipart(L, lua_gettop(L), ex);
		body_kinds++;
	}
	lua_pop(L, 1);
	if (body_kinds > 1)
		luaL_error(L, "request: give only one of 'form', 'json', 'body' and 'multipart'");

	lua_getfield(L, spec, "headers");
	if (!lua_isnil(L, -1)) {
		int h = lua_gettop(L), i = 0;
		if (!lua_istable(L, h))
			luaL_error(L, "request: 'headers' must be a table of name = value");
		lua_pushnil(L);
		while (lua_next(L, h) != 0) {
			lua_pop(L, 1);
			nheaders++;
		}
		ex->extra_headers = calloc((size_t)nheaders + 1, sizeof(char *));
		if (ex->extra_headers == NULL)
			ach_nomem(L);
		lua_pushnil(L);
		while (lua_next(L, h) != 0) {
			const char *k, *v;
			size_t kn;
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "request: 'headers' must map strings to strings");
			/* the count above is only good while the table stays as it was */
			if (i >= nheaders)
				luaL_error(L, "request: 'headers' changed while it was read");
			k = lua_tolstring(L, -2, &kn);
			v = lua_tostring(L, -1);
			if (k[0] == '\0' || k[strcspn(k, ": \t\r\n")] != '\0' || strlen(k) != kn)
				luaL_error(L, "request: header name '%s' is not valid", k);
			ach_check_header_safe(L, v, lua_rawlen(L, -1), "a header value");
			lua_pushfstring(L, "%s: %s", k, v);
			ex->extra_headers[i++] = dup_or_raise(L, lua_tostring(L, -1));
			lua_pop(L, 2);
		}
	}
	lua_pop(L, 1);
	ex->needs_auth = 1;
	ex->rate_class = ach_rate_class(ex->method, ex->url);
}

/* Runs an exchange held by the request object at the top of the stack to its end, then
 * pushes its result. */
int ach_client_run(lua_State *L, int cl, ach_exchange *ex)
{
	ach_core *core = ex->core;
	cl = lua_absindex(L, cl);
	ach_check_not_in_hook(L, core, "a blocking call");
	if (ach_spawn_active(L, cl))
		return ach_spawn_wait(L, cl, ex); /* in a task: yield to poll instead */
	ACH_HOST(core)->L = L;
	ach_exchange_schedule(ex);
	switch (ach_core_finish(core, ex)) {
	case 0:
		break;
	case -2:
		ach_exchange_cancel(ex);
		return luaL_error(L, "%s", ACH_NO_BLOCKING);
	default:
		ach_exchange_cancel(ex);
		return luaL_error(L, "achievers: internal error: exchange stalled");
	}
	ach_raise_hook_error(L, core);
	{
		int n = ach_exchange_push_result(L, ex, cl);
		ach_exchange_trim(ex); /* bodies and buffers go now, not at the next GC */
		return n;
	}
}

int ach_client_request(lua_State *L)
{
	ach_exchange *ex;
	check_client(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	ex = ach_request_push(L, 1, ACH_EX_API);
	ach_client_prepare(L, 1, 2, ex);
	return ach_client_run(L, 1, ex);
}

static int client_get(lua_State *L)
{
	check_client(L, 1);
	luaL_checktype(L, 2, LUA_TSTRING);
	if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3) && lua_type(L, 3) != LUA_TSTRING)
		luaL_argerror(L, 3, "query must be a table or a string");
	lua_settop(L, 3);
	lua_createtable(L, 0, 2);
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "path");
	lua_pushvalue(L, 3);
	lua_setfield(L, -2, "query");
	lua_replace(L, 2);
	lua_settop(L, 2);
	return ach_client_request(L);
}

static int client_post(lua_State *L)
{
	check_client(L, 1);
	luaL_checktype(L, 2, LUA_TSTRING);
	if (!lua_isnoneornil(L, 3))
		luaL_checktype(L, 3, LUA_TTABLE);
	lua_settop(L, 3);
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "POST");
	lua_setfield(L, -2, "method");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "path");
	if (lua_isnil(L, 3))
		lua_newtable(L);
	else
		lua_pushvalue(L, 3);
	lua_setfield(L, -2, "form");
	lua_replace(L, 2);
	lua_settop(L, 2);
	return ach_client_request(L);
}

/* client:warm([n]): opens up to n (default 1, at most max_concurrency) keep-alive connections
 * to base_url's host, TLS handshakes done, before the frame loop needs them; blocks until they
 * are up. Each is a HEAD of the API root without a token (an answer without side effects,
 * whatever its status): libcurl does not reuse a CURLOPT_CONNECT_ONLY connection for later
 * transfers, so a real request is what leaves a connection in the cache. Returns how many got
 * an answer (so have a connection ready). No hook or recording sees these requests. */
static int client_warm(lua_State *L)
{
	client *c = check_client(L, 1);
	ach_core *core = c->core;
	const ach_options *o = &core->opt;
	lua_Integer n = luaL_optinteger(L, 2, 1);
	int i, first, ready = 0;
	luaL_argcheck(L, n >= 1, 2, "n must be >= 1");
	if (n > o->max_concurrency)
		n = o->max_concurrency;
	ach_check_not_in_hook(L, core, "client:warm");
	lua_settop(L, 1);
	first = lua_gettop(L) + 1;
	for (i = 0; i < (int)n; i++) {
		ach_exchange *ex = ach_request_push(L, 1, ACH_EX_API);
		ach_slot_unref(ex->slot); /* no token, no pacing: nothing of the slot's is used */
		ex->slot = NULL;
		ex->warm = 1;
		ex->method = dup_or_raise(L, "HEAD");
		if (ach_buf_adds(&ex->scratch, o->base.origin) || ach_buf_adds(&ex->scratch, o->base.path) ||
		    ach_buf_adds(&ex->scratch, ACH_API_PREFIX) ||
		    (ex->url = ach_buf_take(&ex->scratch)) == NULL)
			ach_nomem(L);
		if (ex->deadline_at == 0)
			ex->deadline_at = ex->started + o->connect_timeout + o->timeout;
	}
	ACH_HOST(core)->L = L;
	for (i = 0; i < (int)n; i++)
		ach_exchange_schedule(ach_request_exchange(L, first + i));
	for (i = 0; i < (int)n; i++) {
		ach_exchange *ex = ach_request_exchange(L, first + i);
		int rc = ach_core_finish(core, ex);
		if (rc == -2)
			return luaL_error(L, "%s", ACH_NO_BLOCKING);
		if (rc != 0)
			return luaL_error(L, "achievers: internal error: client:warm stalled");
	}
	ach_raise_hook_error(L, core);
	for (i = 0; i < (int)n; i++) {
		ach_exchange *ex = ach_request_exchange(L, first + i);
		ready += ex->status > 0;
		ach_exchange_trim(ex);
	}
	lua_pushinteger(L, ready);
	return 1;
}

/* ---- tokens and the authorization code flow --------------------------------------------------------------- */

static int client_token(lua_State *L)
{
	ach_exchange *ex;
	check_client(L, 1);
	ex = ach_request_push(L, 1, ACH_EX_ENSURE);
	return ach_client_run(L, 1, ex);
}

/* client:_refresh_token(tok): tok:refresh() through this client. */
static int client_refresh_token(lua_State *L)
{
	client *c = check_client(L, 1);
	ach_token_data *t = ach_check_token(L, 2);
	ach_exchange *ex;
	if (c->slot->tok != t && (c->slot->tok == NULL || strcmp(c->slot->tok->access_token,
								  t->access_token) != 0)) {
		/* not the token this client holds: refresh it through a client holding it */
		lua_pushcfunction(L, client_with_token);
		lua_pushvalue(L, 1);
		lua_pushvalue(L, 2);
		lua_call(L, 2, 1);
		lua_replace(L, 1);
	}
	ex = ach_request_push(L, 1, ACH_EX_ENSURE);
	ex->force_refresh = 1;
	return ach_client_run(L, 1, ex);
}

/* The PKCE verifier at idx (nil: none); raises unless it is one (RFC 7636 4.1). */
static const char *opt_verifier(lua_State *L, int idx)
{
	size_t n;
	const char *v;
	if (lua_isnoneornil(L, idx))
		return NULL;
	v = luaL_checklstring(L, idx, &n);
	luaL_argcheck(L, ach_pkce_verifier_valid(v, n), idx,
		      "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~");
	return v;
}

/* client:exchange_code(code[, code_verifier]) -> user token */
static int client_exchange_code(lua_State *L)
{
	client *c = check_client(L, 1);
	size_t n;
	const char *code = luaL_checklstring(L, 2, &n), *verifier = opt_verifier(L, 3);
	ach_exchange *ex;
	luaL_argcheck(L, n > 0 && strlen(code) == n, 2, "code must be a non-empty string");
	if (c->core->opt.client_id == NULL || c->core->opt.client_secret == NULL)
		return luaL_error(L, "exchange_code: the client needs client_id and client_secret");
	ex = ach_request_push(L, 1, ACH_EX_TOKEN);
	ex->grant = ACH_GRANT_AUTHORIZATION_CODE;
	ex->code = dup_or_raise(L, code);
	if (verifier != NULL)
		ex->code_verifier = dup_or_raise(L, verifier);
	return ach_client_run(L, 1, ex);
}

/* The string at idx (a field of authorize_url's table, kept there on the stack while it is
 * used); raises when it is not a string, or holds a NUL byte (it would be cut short). */
static const char *field_text(lua_State *L, int idx, const char *name)
{
	size_t n;
	const char *s;
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_error(L, "authorize_url: '%s' must be a string (got %s)", name, luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n)
		luaL_error(L, "authorize_url: '%s' must not contain NUL bytes", name);
	return s;
}

/* client:authorize_url{scope=, state=, redirect_uri=} -> url, state, verifier (nil when the
 * client's pkce option is false: no code_challenge is sent then) */
static int client_authorize_url(lua_State *L)
{
	client *c = check_client(L, 1);
	const ach_options *o = &c->core->opt;
	const char *scope = o->scope_comma, *state, *redirect = o->redirect_uri;
	char hex[33], verifier[ACH_PKCE_LEN + 1], challenge[ACH_PKCE_LEN + 1];
	luaL_Buffer b;
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	else {
		lua_settop(L, 1);
		lua_newtable(L);
	}
	lua_settop(L, 2);
	if (o->client_id == NULL)
		return luaL_error(L, "authorize_url: the client needs client_id");
	lua_getfield(L, 2, "scope"); /* 3 */
	if (lua_type(L, 3) == LUA_TTABLE) {
		/* a list, by its own contents, joined with ',' */
		int n = (int)lua_rawlen(L, 3);
		luaL_buffinit(L, &b);
		for (int i = 1; i <= n; i++) {
			if (i > 1)
				luaL_addchar(&b, ',');
			lua_rawgeti(L, 3, i);
			if (lua_type(L, -1) != LUA_TSTRING)
				return luaL_error(L, "authorize_url: 'scope' must be a string or a list "
						     "of strings");
			luaL_addvalue(&b);
		}
		luaL_pushresult(&b);
		lua_replace(L, 3);
	}
	if (!lua_isnil(L, 3))
		scope = field_text(L, 3, "scope");
	lua_getfield(L, 2, "redirect_uri"); /* 4 */
	if (!lua_isnil(L, 4))
		redirect = field_text(L, 4, "redirect_uri");
	lua_getfield(L, 2, "state"); /* 5 */
	if (!lua_isnil(L, 5)) {
		state = field_text(L, 5, "state");
		if (state[0] == '\0')
			return luaL_error(L, "authorize_url: 'state' must not be empty");
	} else {
		unsigned char raw[16];
		static const char digits[] = "0123456789abcdef";
		if (ach_random_bytes(raw, sizeof raw) != 0)
			return luaL_error(L, "authorize_url: the OS random source failed");
		for (int i = 0; i < 16; i++) {
			hex[2 * i] = digits[raw[i] >> 4];
			hex[2 * i + 1] = digits[raw[i] & 15];
		}
		hex[32] = '\0';
		state = hex;
	}
	lua_newtable(L);
	lua_pushliteral(L, "code");
	lua_setfield(L, -2, "response_type");
	lua_pushstring(L, o->client_id);
	lua_setfield(L, -2, "client_id");
	lua_pushstring(L, scope);
	lua_setfield(L, -2, "scope");
	lua_pushstring(L, state);
	lua_setfield(L, -2, "state");
	if (redirect != NULL) {
		lua_pushstring(L, redirect);
		lua_setfield(L, -2, "redirect_uri");
	}
	if (o->pkce) { /* RFC 7636 4.2, S256 */
		if (ach_pkce_new(verifier, challenge) != 0)
			return luaL_error(L, "authorize_url: the OS random source failed");
		lua_pushstring(L, challenge);
		lua_setfield(L, -2, "code_challenge");
		lua_pushliteral(L, "S256");
		lua_setfield(L, -2, "code_challenge_method");
	}
	{
		ach_exchange *scratch = ach_request_push(L, 1, ACH_EX_TOKEN); /* owns the buffer */
		ach_buf *q = &scratch->scratch;
		ach_encode_form(L, -2, q, "authorize_url");
		luaL_buffinit(L, &b);
		luaL_addstring(&b, o->base.origin);
		luaL_addstring(&b, o->base.path);
		luaL_addstring(&b, "/oauth/v2/openIDConnectClient/authorize?");
		luaL_addlstring(&b, q->data, q->len);
		luaL_pushresult(&b);
	}
	lua_pushstring(L, state);
	if (!o->pkce)
		return 2;
	lua_pushstring(L, verifier);
	memset(verifier, 0, sizeof verifier);
	return 3;
}

/* client:handle_callback(query, expected_state[, code_verifier]) -> token | nil, err */
static int client_handle_callback(lua_State *L)
{
	size_t elen, glen;
	const char *expected, *got;
	check_client(L, 1);
	opt_verifier(L, 4);
	lua_settop(L, 4);
	expected = luaL_checklstring(L, 3, &elen);
	luaL_argcheck(L, elen > 0, 3, "expected_state must not be empty");
	if (lua_type(L, 2) == LUA_TSTRING) {
		size_t n;
		const char *q = lua_tolstring(L, 2, &n), *mark = memchr(q, '?', n);
		if (mark != NULL) {
			n -= (size_t)(mark + 1 - q);
			q = mark + 1;
		}
		ach_push_query_table(L, q, n);
		lua_replace(L, 2);
	}
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, 2, "state");
	got = lua_tolstring(L, -1, &glen);
	if (got == NULL || !ach_memeq_const(got, glen, expected, elen))
		return ach_fail(L, ACH_KIND_STATE_MISMATCH,
				"the callback's state does not match the one this flow started with");
	lua_getfield(L, 2, "error");
	if (!lua_isnil(L, -1)) {
		const char *e = lua_tostring(L, -1);
		ach_kind k = e != NULL && strcmp(e, "access_denied") == 0 ? ACH_KIND_ACCESS_DENIED
									  : ACH_KIND_AUTH;
		lua_getfield(L, 2, "error_description");
		lua_pushnil(L);
		ach_push_error(L, k, lua_isstring(L, -2) ? lua_tostring(L, -2)
							  : k == ACH_KIND_ACCESS_DENIED
								? "the user denied access"
								: "the authorization server refused");
		lua_pushvalue(L, -4);
		lua_setfield(L, -2, "code");
		return 2;
	}
	lua_getfield(L, 2, "code");
	if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
		return ach_fail(L, ACH_KIND_INVALID, "the callback has no code");
	if (strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
		return ach_fail(L, ACH_KIND_INVALID, "the callback's code is not valid"); /* browser data */
	lua_replace(L, 2);
	lua_pushvalue(L, 4); /* the verifier (or nil) */
	lua_replace(L, 3);
	lua_settop(L, 3);
	return client_exchange_code(L);
}

/* ---- the object ----------------------------------------------------------------------------------------------- */

static int client_tostring(lua_State *L)
{
	client *c = luaL_checkudata(L, 1, ACH_CLIENT_MT);
	if (c->core == NULL) {
		lua_pushliteral(L, "achievers.client(closed)");
		return 1;
	}
	if (c->slot->tok == NULL)
		lua_pushfstring(L, "achievers.client(%s%s, client_id=%s, no token)",
				c->core->opt.base.origin, c->core->opt.base.path,
				c->core->opt.client_id ? c->core->opt.client_id : "none");
	else
		lua_pushfstring(L, "achievers.client(%s%s, client_id=%s, %s token, %d s left)",
				c->core->opt.base.origin, c->core->opt.base.path,
				c->core->opt.client_id ? c->core->opt.client_id : "none",
				c->slot->user ? "user" : "system",
				(int)fmax(-1e9, fmin(1e9, ach_token_remaining(c->slot->tok))));
	return 1;
}

/* Edit distance (insertions, deletions, substitutions, adjacent swaps) between two short names;
 * names longer than 63 bytes count as far from everything. */
static int edit_distance(const char *a, const char *b)
{
	int n = (int)strlen(a), m = (int)strlen(b), i, j;
	int d[64][64];
	if (n >= 64 || m >= 64)
		return 99;
	for (i = 0; i <= n; i++)
		d[i][0] = i;
	for (j = 0; j <= m; j++)
		d[0][j] = j;
	for (i = 1; i <= n; i++)
		for (j = 1; j <= m; j++) {
			int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < c)
				c = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < c)
				c = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < c)
				c = d[i - 2][j - 2] + 1;
			d[i][j] = c;
		}
	return d[n][m];
}

/* A name of the client the unknown key k is probably a misspelling of: raises "no method 'k'
 * (did you mean 'x'?)". Nothing close: returns, and the key reads as nil. The methods table is
 * at the top of the stack. */
static void suggest_method(lua_State *L, const char *k)
{
	static const char *const fields[] = {"base_url", "client_id", "scope", "redirect_uri",
					     "refresh_window", "max_concurrency", "frame_budget",
					     "rate_limit", "limits", "current_token", NULL};
	int methods = lua_gettop(L), best = 99, len = (int)strlen(k), limit, i;
	char name[64] = "";
	if (k[0] == '_' || len < 3)
		return;
	limit = len < 6 ? 1 : 2;
	lua_pushnil(L);
	while (lua_next(L, methods) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING && lua_tostring(L, -1)[0] != '_') {
			const char *m = lua_tostring(L, -1);
			int dist = edit_distance(k, m);
			/* ties go to the first in byte order: the same answer whatever the table order */
			if (dist < best || (dist == best && strcmp(m, name) < 0)) {
				best = dist;
				snprintf(name, sizeof name, "%s", m);
			}
		}
	}
	for (i = 0; fields[i] != NULL; i++) {
		int dist = edit_distance(k, fields[i]);
		if (dist < best) {
			best = dist;
			snprintf(name, sizeof name, "%s", fields[i]);
		}
	}
	if (best > 0 && best <= limit)
		luaL_error(L, "achievers.client: no method '%s' (did you mean '%s'?)", k, name);
}

static int client_index(lua_State *L)
{
	client *c = check_client(L, 1);
	const char *k = luaL_checkstring(L, 2);
	const ach_options *o = &c->core->opt;
	luaL_getmetatable(L, ACH_CLIENT_MT);
	lua_getfield(L, -1, "methods");
	lua_getfield(L, -1, k);
	if (!lua_isnil(L, -1))
		return 1;
	lua_pop(L, 1);
	if (strcmp(k, "base_url") == 0)
		lua_pushfstring(L, "%s%s", o->base.origin, o->base.path);
	else if (strcmp(k, "client_id") == 0)
		lua_pushstring(L, o->client_id);
	else if (strcmp(k, "scope") == 0)
		lua_pushstring(L, o->scope_comma);
	else if (strcmp(k, "redirect_uri") == 0)
		lua_pushstring(L, o->redirect_uri);
	else if (strcmp(k, "refresh_window") == 0)
		lua_pushnumber(L, o->refresh_window);
	else if (strcmp(k, "max_concurrency") == 0)
		lua_pushinteger(L, o->max_concurrency);
	else if (strcmp(k, "frame_budget") == 0)
		lua_pushnumber(L, o->frame_budget);
	else if (strcmp(k, "rate_limit") == 0)
		lua_pushboolean(L, o->rate_limit);
	else if (strcmp(k, "limits") == 0) {
		static const char *const names[ACH_CLASS_COUNT] = {"default", "heavy"};
		lua_createtable(L, 0, ACH_CLASS_COUNT);
		for (int i = 0; i < ACH_CLASS_COUNT; i++) {
			lua_createtable(L, 2, 0);
			lua_pushinteger(L, o->limits[i].count);
			lua_rawseti(L, -2, 1);
			lua_pushnumber(L, o->limits[i].window);
			lua_rawseti(L, -2, 2);
			lua_setfield(L, -2, names[i]);
		}
	}
	else if (strcmp(k, "current_token") == 0) {
		if (c->slot->tok == NULL)
			lua_pushnil(L);
		else
			ach_push_token(L, c->slot->tok, 1);
	} else {
		suggest_method(L, k); /* raises for a misspelled name */
		lua_pushnil(L);
	}
	return 1;
}

void ach_client_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__gc", client_gc},
		{"__index", client_index},
		{"__tostring", client_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {
		{"token", client_token},
		{"get", client_get},
		{"post", client_post},
		{"request", ach_client_request},
		{"authorize_url", client_authorize_url},
		{"handle_callback", client_handle_callback},
		{"exchange_code", client_exchange_code},
		{"with_token", client_with_token},
		{"warm", client_warm},
		{"_refresh_token", client_refresh_token},
		{NULL, NULL},
	};
	luaL_newmetatable(L, ACH_CLIENT_MT);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	ach_request_methods(L);  /* async, poll, batch */
	ach_resource_methods(L); /* users, send_recognition, ..., each */
	ach_spawn_methods(L);    /* spawn */
	ach_lua_driver_methods(L);
	lua_setfield(L, -2, "methods");
	lua_pop(L, 1);
}
