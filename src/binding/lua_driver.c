/*
 * lua_driver.c: the exchange engine seen from Lua, for drivers whose I/O lives in Lua
 * (OpenResty's cosockets, a game engine's own HTTP stack, tests). Under LuaJIT a C function
 * cannot call Lua code that yields, so such a driver loops in Lua:
 *
 *   local ex = client:_exchange{path = "users"}       -- or client:_exchange("token")
 *   while true do
 *     local action, a = ex:_next()
 *     if action == "send" then ex:_feed(my_send(a))   -- a = {method, url, headers, body, timeout}
 *     elseif action == "wait" then my_sleep(a)        -- a = seconds
 *     else break end                                   -- "done"
 *   end
 *   return ex:result()
 *
 * _feed takes {status =, headers = {name = value} or a raw header block, body =} for an
 * answer, or {error = "network" | "timeout" | "tls" | "decode", message =, reached = false}
 * when there was none ("decode": an answer the driver stopped reading, e.g. one over
 * max_response_size; never retried). The policy (tokens, retries, pacing, errors) is the same
 * C code the libcurl driver runs, and so is the stepping: this is an ach_driver whose callers
 * each move their own exchange, one scheduler step at a time (ach_core_step_own, core/sched.c;
 * doc/design.md, last section).
 *
 * A client whose core uses the host store (client:_host_store{...}, OpenResty's shared dict or
 * Redis over cosockets) also gets `"store", op` from _next: a state store operation to carry
 * out ({id =, op = "token_get" | "token_put" | "lock" | "unlock" | "take" | "give", key =, and
 * value =, seen =, ttl =, owner =, n =, count =, window =, lease_id =, granted =, back = as
 * the operation has them}), answered with ex:_store_reply(op.id, {ok =, message =, value =,
 * granted =, wait =, lease =, lease_id =}). Any caller driving the core may carry out any
 * operation; one never answered is answered "failed" after the store's grace.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/encode.h"
#include "binding/error.h"
#include "binding/lua_driver.h"
#include "binding/request.h"
#include "binding/token.h"
#include "core/buf.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/pkce.h"
#include "core/store.h"
#include "core/token.h"
#include "store/host.h"

#define LUA_DRIVER_GRACE 5.0 /* seconds past its timeout before an unanswered request fails */
#define LUA_DRIVER_POLL 0.02 /* seconds a caller waits for a request another caller sent */

/* ---- the driver ops (core/engine.h) of a core whose requests are moved from Lua ------------
 * A request is "on the wire" from the step that starts it (ach_core_step_own) until its answer
 * is fed: ex->transfer holds when that answer is overdue. There is nothing to pump and no cap
 * of ours on concurrency (the host has its own); blocking calls cannot wait on such a core. */
typedef struct lua_transfer {
	double deadline; /* monotonic: past it, the caller that sent it is taken for dead */
} lua_transfer;

static int ld_start(void *ud, ach_exchange *ex)
{
	lua_transfer *t = calloc(1, sizeof *t);
	(void)ud;
	if (t == NULL)
		return -1;
	t->deadline = INFINITY; /* set when _next hands the request out */
	ex->transfer = t;
	return 0;
}

static void ld_cancel(void *ud, ach_exchange *ex)
{
	(void)ud;
	free(ex->transfer);
	ex->transfer = NULL;
}

static int ld_pump(void *ud, int ms)
{
	(void)ud;
	return ms > 0 ? -1 : 0; /* its callers move the bytes: nothing here can wait for them */
}

static int ld_active(void *ud)
{
	(void)ud;
	return 0;
}

static double ld_timer(void *ud)
{
	(void)ud;
	return -1;
}

static void ld_free(void *ud)
{
	(void)ud;
}

static const ach_driver lua_ops = {ld_start, ld_cancel, ld_pump, ld_active, ld_timer, ld_free,
				   NULL};

/* The core's requests are moved from Lua from now on: the libcurl driver it was made with
 * goes (it has nothing in flight: nothing was sent through it). */
static void lua_driven(lua_State *L, ach_core *core)
{
	if (core->drv.start == ld_start)
		return;
	if (core->drv.active != NULL && core->drv.active(core->drv.ud) > 0)
		luaL_error(L, "_exchange: the client has requests in flight over libcurl");
	if (core->drv.free != NULL)
		core->drv.free(core->drv.ud);
	core->drv = lua_ops;
}

/* The answer of a request on the wire came (or never will): it leaves the wire. */
static void off_the_wire(ach_exchange *ex)
{
	free(ex->transfer);
	ex->transfer = NULL;
}

static ach_exchange *check_exchange(lua_State *L, int idx)
{
	return ach_request_exchange(L, idx);
}

/* client:_exchange("code", code[, code_verifier]): exchange_code's token request (its answer
 * is the user's token, which stays out of this client's slot). */
static int code_exchange(lua_State *L)
{
	size_t n, vn = 0;
	const char *code = luaL_checklstring(L, 3, &n);
	const char *verifier = luaL_optlstring(L, 4, NULL, &vn);
	ach_exchange *ex;
	luaL_argcheck(L, n > 0 && strlen(code) == n, 3, "code must be a non-empty string");
	luaL_argcheck(L, verifier == NULL || ach_pkce_verifier_valid(verifier, vn), 4,
		      "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~");
	ex = ach_request_push(L, 1, ACH_EX_TOKEN);
	if (ex->core->opt.client_id == NULL || ex->core->opt.client_secret == NULL)
		return luaL_error(L, "exchange_code: the client needs client_id and client_secret");
	ex->grant = ACH_GRANT_AUTHORIZATION_CODE;
	if ((ex->code = ach_strdup(code)) == NULL ||
	    (verifier != NULL && (ex->code_verifier = ach_strdup(verifier)) == NULL))
		ach_nomem(L);
	return 1;
}

/* client:_exchange(spec), client:_exchange("token"[, force]) or client:_exchange("code", code[,
 * verifier]): an exchange for a Lua driver. */
static int client_exchange(lua_State *L)
{
	ach_exchange *ex;
	lua_driven(L, ach_client_core(L, 1));
	if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "code") == 0)
		return code_exchange(L);
	if (lua_type(L, 2) == LUA_TSTRING) {
		luaL_argcheck(L, strcmp(lua_tostring(L, 2), "token") == 0, 2,
			      "expected a request table, \"token\" or \"code\"");
		int force = lua_toboolean(L, 3); /* read before the push: the exchange lands at 3 */
		ex = ach_request_push(L, 1, ACH_EX_ENSURE);
		ex->force_refresh = force;
		return 1;
	}
	luaL_checktype(L, 2, LUA_TTABLE);
	ex = ach_request_push(L, 1, ACH_EX_API);
	ach_client_prepare(L, 1, 2, ex);
	return 1;
}

static void set_string(lua_State *L, const char *name, const char *v)
{
	if (v == NULL)
		return;
	lua_pushstring(L, v);
	lua_setfield(L, -2, name);
}

static void set_number(lua_State *L, const char *name, double v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, name);
}

/* A host store's operation as the Lua driver hands it out: {id =, op =, key =, ...} with the
 * fields that operation has. */
static void push_host_op(lua_State *L, const ach_host_op *o)
{
	lua_createtable(L, 0, 8);
	set_number(L, "id", o->id);
	set_string(L, "op", o->name);
	set_string(L, "key", o->key);
	switch (o->kind) {
	case ACH_HOST_TOKEN_PUT:
		set_string(L, "value", o->value);
		if (o->seen != NULL) { /* bytes and all: it must compare equal to what is stored */
			lua_pushlstring(L, o->seen, o->seen_len);
			lua_setfield(L, -2, "seen");
		}
		set_number(L, "ttl", o->ttl);
		break;
	case ACH_HOST_LOCK:
		set_string(L, "owner", o->owner);
		set_number(L, "ttl", o->ttl);
		break;
	case ACH_HOST_UNLOCK:
		set_string(L, "owner", o->owner);
		break;
	case ACH_HOST_TAKE:
		set_number(L, "n", o->n);
		set_number(L, "count", o->lim.count);
		set_number(L, "window", o->lim.window);
		break;
	case ACH_HOST_GIVE:
		set_string(L, "lease_id", o->lease_id);
		set_number(L, "granted", o->granted);
		set_number(L, "back", o->back);
		break;
	default:
		break;
	}
}

/* ex:_next() -> "send", request | "wait", seconds | "store", op | "done" */
static int exchange_next(lua_State *L)
{
	ach_exchange *ex = check_exchange(L, 1);
	ach_store *st = ex->core->store;
	ach_host_op op;
	int guard;
	ACH_HOST(ex->core)->L = L;
	if (ex->core->drv.start != ld_start)
		return luaL_error(L, "_next: not an exchange of client:_exchange");
	for (guard = 0; guard < 16; guard++) {
		ach_exchange *cur;
		double now = ach_now();
		ach_http_request req;
		int i;
		if (ach_store_is_host(st)) {
			/* the store's questions first: the exchanges of every caller wait on them */
			ach_store_host_expire(st, now);
			ach_raise_hook_error(L, ex->core);
			if (ach_store_host_next(st, now, &op)) {
				lua_pushliteral(L, "store");
				push_host_op(L, &op);
				return 2;
			}
		}
		switch (ach_core_step_own(ex, now, &cur)) {
		case ACH_STEP_DONE:
			ach_raise_hook_error(L, ex->core);
			lua_pushliteral(L, "done");
			return 1;
		case ACH_STEP_WAIT: {
			double wait = ach_exchange_wake(cur) - now;
			/* waiting for a store answer another caller carries out: look again soon */
			if (cur->store_wait && wait > LUA_DRIVER_POLL)
				wait = LUA_DRIVER_POLL;
			/* not past the call's own deadline (ach_core_step_own looks at it) */
			if (ex->deadline_at > 0 && ex->deadline_at - now < wait)
				wait = ex->deadline_at > now ? ex->deadline_at - now : 0;
			lua_pushliteral(L, "wait");
			lua_pushnumber(L, wait);
			return 2;
		}
		case ACH_STEP_BLOCKED:
			if (cur->transfer != NULL) {
				lua_transfer *t = cur->transfer;
				if (cur == ex)
					return luaL_error(L, "_next: feed the answer of the request in flight first");
				/* another caller (coroutine) sent the token request this one waits for */
				if (now > t->deadline) {
					/* its caller never fed the answer (its coroutine died): fail it */
					ach_http_response r;
					memset(&r, 0, sizeof r);
					r.failure = ACH_KIND_TIMEOUT;
					r.message = "no answer was fed for this request";
					off_the_wire(cur);
					ach_exchange_response(cur, &r, now);
					continue;
				}
			} else if (cur->store_wait && ach_store_host_pending(st)) {
				continue; /* its store question is queued: hand it out (the top) */
			}
			/* an answer another caller brings: look again soon */
			lua_pushliteral(L, "wait");
			lua_pushnumber(L, LUA_DRIVER_POLL);
			return 2;
		case ACH_STEP_SEND:
			ach_exchange_request(cur, &req);
			lua_pushliteral(L, "send");
			lua_createtable(L, 0, 6);
			lua_pushstring(L, req.method);
			lua_setfield(L, -2, "method");
			lua_pushstring(L, req.url);
			lua_setfield(L, -2, "url");
			lua_newtable(L);
			for (i = 0; req.headers != NULL && req.headers[i] != NULL; i++) {
				const char *h = req.headers[i], *colon = strchr(h, ':');
				if (colon == NULL)
					continue;
				lua_pushlstring(L, h, (size_t)(colon - h));
				lua_pushstring(L, colon[1] == ' ' ? colon + 2 : colon + 1);
				lua_rawset(L, -3);
			}
			lua_setfield(L, -2, "headers");
			if (req.body != NULL) {
				lua_pushlstring(L, req.body, req.body_len);
				lua_setfield(L, -2, "body");
			}
			lua_pushnumber(L, req.timeout);
			lua_setfield(L, -2, "timeout");
			lua_pushboolean(L, cur->type == ACH_EX_TOKEN);
			lua_setfield(L, -2, "token_request");
			((lua_transfer *)cur->transfer)->deadline = now + req.timeout + LUA_DRIVER_GRACE;
			return 2;
		}
	}
	return luaL_error(L, "_next: the exchange made no progress");
}

/* ex:_feed(answer): hands the answer of the request _next asked for to the engine. */
static int exchange_feed(lua_State *L)
{
	ach_exchange *ex = check_exchange(L, 1), *cur = ex;
	ach_http_response r;
	ach_buf headers = {0};
	int k;
	luaL_checktype(L, 2, LUA_TTABLE);
	if (ex->core->drv.start != ld_start)
		return luaL_error(L, "_feed: not an exchange of client:_exchange");
	/* the caller's own request first: another caller of the same core may have the slot's
	 * token request in flight at the same time, and this answer is not that one's */
	if (ex->transfer == NULL && ex->slot != NULL && ex->slot->fetching != NULL &&
	    ex->slot->fetching->transfer != NULL)
		cur = ex->slot->fetching;
	if (cur->transfer == NULL)
		return luaL_error(L, "_feed: nothing was sent (call _next first)");
	memset(&r, 0, sizeof r);
	r.reached = 1;
	lua_getfield(L, 2, "error");
	if (!lua_isnil(L, -1)) {
		const char *kind = luaL_checkstring(L, -1);
		r.failure = strcmp(kind, "timeout") == 0  ? ACH_KIND_TIMEOUT
			    : strcmp(kind, "tls") == 0    ? ACH_KIND_TLS
			    : strcmp(kind, "decode") == 0 ? ACH_KIND_DECODE
							  : ACH_KIND_NETWORK;
		lua_getfield(L, 2, "message");
		r.message = lua_isstring(L, -1) ? lua_tostring(L, -1) : kind;
		lua_getfield(L, 2, "reached");
		if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
			r.reached = 0;
	} else {
		lua_getfield(L, 2, "status");
		r.status = (long)luaL_checkinteger(L, -1);
		lua_getfield(L, 2, "body");
		if (!lua_isnil(L, -1))
			r.body = luaL_checklstring(L, -1, &r.body_len);
		lua_getfield(L, 2, "headers");
		if (lua_type(L, -1) == LUA_TSTRING) {
			r.headers = lua_tolstring(L, -1, &r.headers_len);
		} else if (lua_istable(L, -1)) {
			/* {name = value or {values}} -> a raw block the engine reads like libcurl's */
			int t = lua_gettop(L);
			lua_pushnil(L);
			while (lua_next(L, t) != 0) {
				if (lua_type(L, -2) == LUA_TSTRING) {
					if (lua_istable(L, -1)) {
						/* up to the first hole: a border can be far past the values */
						for (k = 1; k <= (int)lua_rawlen(L, -1); k++) {
							lua_rawgeti(L, -1, k);
							if (lua_isnil(L, -1)) {
								lua_pop(L, 1);
								break;
							}
							ach_buf_printf(&headers, "%s: %s\r\n", lua_tostring(L, -3),
								       lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
							lua_pop(L, 1);
						}
					} else if (lua_isstring(L, -1)) {
						ach_buf_printf(&headers, "%s: %s\r\n", lua_tostring(L, -2),
							       lua_tostring(L, -1));
					}
				}
				lua_pop(L, 1);
			}
			r.headers = headers.data;
			r.headers_len = headers.len;
		}
		if (r.body_len > ex->core->opt.max_response) {
			r.failure = ACH_KIND_DECODE;
			r.message = "the answer is larger than max_response_size";
			r.status = 0;
			r.body = ""; /* nothing of it is decoded, not even as an error body */
			r.body_len = 0;
		}
	}
	off_the_wire(cur);
	ACH_HOST(ex->core)->L = L;
	ach_exchange_response(cur, &r, ach_now());
	ach_buf_free(&headers);
	ach_raise_hook_error(L, ex->core);
	return 0;
}

/* ex:_store_reply(id, {ok =, message =, value =, granted =, wait =, lease =, lease_id =}): the
 * answer to the store operation _next handed out; false when nothing waits for it any more
 * (it was answered "failed" after its grace). */
static int exchange_store_reply(lua_State *L)
{
	ach_exchange *ex = check_exchange(L, 1);
	lua_Number id = luaL_checknumber(L, 2);
	ach_store_reply r;
	int rc;
	luaL_checktype(L, 3, LUA_TTABLE);
	luaL_argcheck(L, id >= 1 && id <= 4294967295.0 && id == floor(id), 2, "not an operation id");
	memset(&r, 0, sizeof r);
	lua_getfield(L, 3, "ok");
	r.ok = lua_toboolean(L, -1);
	lua_getfield(L, 3, "message");
	r.message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (!r.ok && r.message == NULL)
		r.message = "the store failed";
	lua_getfield(L, 3, "value");
	if (lua_type(L, -1) == LUA_TSTRING)
		r.value = lua_tolstring(L, -1, &r.value_len);
	lua_getfield(L, 3, "granted");
	if (lua_type(L, -1) == LUA_TBOOLEAN)
		r.granted = lua_toboolean(L, -1);
	else if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0)
		r.granted = lua_tonumber(L, -1) > 1e6 ? 1000000 : (int)lua_tonumber(L, -1);
	lua_getfield(L, 3, "wait");
	r.wait = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0 ? lua_tonumber(L, -1) : 0;
	if (r.wait > 3600)
		r.wait = 3600;
	lua_getfield(L, 3, "lease");
	r.lease = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0 ? lua_tonumber(L, -1) : 1.0;
	lua_getfield(L, 3, "lease_id");
	r.lease_id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	ACH_HOST(ex->core)->L = L;
	rc = ach_store_host_reply(ex->core->store, (unsigned)id, &r);
	ach_raise_hook_error(L, ex->core);
	lua_pushboolean(L, rc == 0);
	return 1;
}

/* client:_host_store{prefix =, grace =}: the client's core takes its state store operations
 * from the host from now on (the Lua driver hands them out). Only before the core's first
 * exchange: a store does not change under a running call. */
static int client_host_store(lua_State *L)
{
	ach_core *core = ach_client_core(L, 1);
	ach_store *st = core->store;
	ach_store old;
	const char *prefix = NULL;
	double grace = 10;
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, 2, "prefix");
	if (!lua_isnil(L, -1)) {
		prefix = luaL_checkstring(L, -1);
		luaL_argcheck(L, prefix[0] != '\0' && strlen(prefix) < sizeof st->prefix &&
					 strpbrk(prefix, "{}\r\n ") == NULL,
			      2, "prefix: 1 to 63 characters without braces or spaces");
	}
	lua_getfield(L, 2, "grace");
	if (!lua_isnil(L, -1)) {
		grace = luaL_checknumber(L, -1);
		luaL_argcheck(L, grace > 0 && grace <= 3600, 2, "grace: seconds from 0 to 3600");
	}
	if (ach_store_is_host(st) && prefix == NULL)
		return 0;
	if (core->finished > 0 || core->runnable != NULL || (!ach_store_is_host(st) &&
							     strcmp(st->ops->name, "memory") != 0))
		return luaL_error(L, "_host_store: only for a new client on the memory store");
	if (!ach_store_is_host(st)) {
		old = *st;
		if (ach_store_host(st, grace) != 0) {
			*st = old;
			return ach_nomem(L);
		}
		old.ops->free(old.ud);
	}
	if (prefix != NULL)
		strcpy(st->prefix, prefix);
	return 0;
}

/* client:_store_key() -> the key of the client's shared token in its store. */
static int client_store_key(lua_State *L)
{
	ach_core *core = ach_client_core(L, 1);
	ach_buf key = {0};
	if (ach_store_token_key(core, &key) != 0)
		return ach_nomem(L);
	lua_pushlstring(L, key.data, key.len);
	ach_buf_free(&key);
	return 1;
}

/* client:_path_value(v, what) -> v as one path segment, percent-encoded by the rule the
 * resource helpers use (ach_encode_path_value); raises "<what> must ..." on a bad value. */
static int client_path_value(lua_State *L)
{
	const char *what = luaL_optstring(L, 3, "id");
	ach_exchange *scratch;
	lua_settop(L, 3);
	/* the encoded value goes through a request object's scratch buffer, freed by __gc */
	scratch = ach_request_push(L, 1, ACH_EX_API);
	ach_encode_path_value(L, 2, &scratch->scratch, what);
	lua_pushlstring(L, scratch->scratch.data != NULL ? scratch->scratch.data : "",
			scratch->scratch.len);
	return 1;
}

/* client:_set_token(tok or table): the token this client acts with (a shared cache's). */
static int client_set_token(lua_State *L)
{
	ach_slot *s = ach_client_slot(L, 1);
	ach_token_data *t = ach_test_token(L, 2);
	if (t == NULL) {
		luaL_checktype(L, 2, LUA_TTABLE);
		t = ach_token_from_table(L, 2);
		ach_slot_set_token(s, t);
		ach_token_unref(t);
	} else {
		ach_slot_set_token(s, t);
	}
	return 0;
}

void ach_lua_driver_methods(lua_State *L)
{
	lua_pushcfunction(L, client_exchange);
	lua_setfield(L, -2, "_exchange");
	lua_pushcfunction(L, client_set_token);
	lua_setfield(L, -2, "_set_token");
	lua_pushcfunction(L, client_host_store);
	lua_setfield(L, -2, "_host_store");
	lua_pushcfunction(L, client_store_key);
	lua_setfield(L, -2, "_store_key");
	lua_pushcfunction(L, client_path_value);
	lua_setfield(L, -2, "_path_value");
}

/* ex:_rate_class() -> "heavy" or "default": the per-token limit the call counts against. */
static int exchange_rate_class(lua_State *L)
{
	ach_exchange *ex = check_exchange(L, 1);
	lua_pushstring(L, ex->type == ACH_EX_API && ex->rate_class == ACH_CLASS_HEAVY ? "heavy" : "default");
	return 1;
}

void ach_lua_driver_request_methods(lua_State *L)
{
	lua_pushcfunction(L, exchange_rate_class);
	lua_setfield(L, -2, "_rate_class");
	lua_pushcfunction(L, exchange_next);
	lua_setfield(L, -2, "_next");
	lua_pushcfunction(L, exchange_feed);
	lua_setfield(L, -2, "_feed");
	lua_pushcfunction(L, exchange_store_reply);
	lua_setfield(L, -2, "_store_reply");
}
