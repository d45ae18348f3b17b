/*
 * request.c: the pending-request object, and the asynchronous calls built on it: async,
 * poll and batch. Every call, blocking or not, runs as an exchange owned by one of these
 * objects, so whatever the exchange holds is freed by __gc even when a raise interrupts.
 *
 * User value of a request: {client = the client it runs on, ex = the exchange, on_done = fn,
 * data = ..., err = ...}. The exchange is a userdata of its own, and the only one with a
 * finalizer: an object with __gc is kept (with all it refers to) for one more collection, and
 * the collector marks it in the one step it cannot split. Were the finalizer on the request,
 * every dropped request would bring its decoded answer back to life, and a collection would
 * mark megabytes of pages in a single step: a stall inside some poll(0). The exchange refers
 * to no Lua value, so finalizing it costs nothing to mark.
 *
 * Async requests are anchored in their root client's `pending` table ({[exchange pointer] =
 * request}) until poll reports them, so a request the caller dropped still runs and its
 * callback still fires. The engine lists the finished ones in the order they finished, so poll
 * finds what to report without looking at the requests still in flight.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/lua_driver.h"
#include "binding/request.h"
#include "binding/result.h"
#include "binding/spawn.h"
#include "core/buf.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/url.h"

typedef struct request {
	ach_exchange *ex; /* in the userdata at field `ex` of the user value */
	int cached;       /* data and err are in the user value */
} request;

static request *check_request(lua_State *L, int idx)
{
	request *r = luaL_checkudata(L, idx, ACH_REQUEST_MT);
	if (r->ex == NULL || r->ex->core == NULL)
		luaL_argerror(L, idx, "request has been released");
	return r;
}

ach_exchange *ach_request_exchange(lua_State *L, int idx)
{
	return check_request(L, idx)->ex;
}

ach_exchange *ach_request_push(lua_State *L, int cl, ach_ex_type type)
{
	request *r;
	ach_exchange *ex;
	cl = lua_absindex(L, cl);
	r = ach_newuserdata(L, sizeof *r);
	memset(r, 0, sizeof *r);
	luaL_setmetatable(L, ACH_REQUEST_MT);
	lua_createtable(L, 0, 4);
	lua_pushvalue(L, cl);
	lua_setfield(L, -2, "client");
	ex = ach_newuserdata_plain(L, sizeof *ex);
	memset(ex, 0, sizeof *ex); /* released as is if what follows raises */
	luaL_setmetatable(L, ACH_EXCHANGE_MT);
	lua_setfield(L, -2, "ex");
	ach_setuservalue(L, -2);
	ach_exchange_init(ex, ach_client_core(L, cl), ach_client_slot(L, cl), type);
	r->ex = ex;
	return ex;
}

static int exchange_gc(lua_State *L)
{
	ach_exchange_release(luaL_checkudata(L, 1, ACH_EXCHANGE_MT));
	return 0;
}

/* Pushes field `name` of the request's user value. */
static void push_field(lua_State *L, int idx, const char *name)
{
	ach_getuservalue(L, idx);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
}

/* Pushes the root client's pending table for the client at cl. */
static void push_pending(lua_State *L, int cl)
{
	ach_getuservalue(L, cl);
	lua_getfield(L, -1, "root");
	ach_getuservalue(L, -1);
	lua_getfield(L, -1, "pending");
	lua_replace(L, -4);
	lua_pop(L, 2);
}

void ach_request_watch(lua_State *L, int req, int on)
{
	request *r = check_request(L, req);
	req = lua_absindex(L, req);
	push_field(L, req, "client");
	push_pending(L, lua_gettop(L));
	if (on)
		lua_pushvalue(L, req);
	else
		lua_pushnil(L);
	ach_rawsetp(L, -2, r->ex);
	lua_pop(L, 2);
	ach_exchange_watch(r->ex, on);
}

/* Pushes data, err for a finished request, computing them once. */
static void push_cached_result(lua_State *L, int idx)
{
	request *r = check_request(L, idx);
	idx = lua_absindex(L, idx);
	if (!r->cached) {
		int n, top;
		push_field(L, idx, "client");
		top = lua_gettop(L);
		n = ach_exchange_push_result(L, r->ex, top); /* may leave more below its n values */
		if (n == 1)
			lua_pushnil(L);
		ach_getuservalue(L, idx);
		lua_pushvalue(L, -3);
		lua_setfield(L, -2, "data");
		lua_pushvalue(L, -2);
		lua_setfield(L, -2, "err");
		lua_settop(L, top - 1);
		r->cached = 1;
		ach_exchange_trim(r->ex); /* the answer lives on as Lua values only */
	}
	ach_getuservalue(L, idx);
	lua_getfield(L, -1, "data");
	lua_getfield(L, -2, "err");
	lua_remove(L, -3);
}

static int request_done(lua_State *L)
{
	lua_pushboolean(L, ach_exchange_done(check_request(L, 1)->ex));
	return 1;
}

/* Runs the core until the request at idx is done. */
static void wait_for(lua_State *L, request *r)
{
	ach_exchange *ex = r->ex;
	ach_core *core = ex->core;
	if (!ach_exchange_done(ex))
		ach_check_not_in_hook(L, core, "req:result()");
	ACH_HOST(core)->L = L;
	switch (ach_core_finish(core, ex)) {
	case 0:
		break;
	case -2:
		luaL_error(L, "%s", ACH_NO_BLOCKING);
		break;
	default:
		luaL_error(L, "achievers: internal error: request stalled");
	}
	ach_raise_hook_error(L, core);
}

static int request_result(lua_State *L)
{
	request *r = check_request(L, 1);
	lua_settop(L, 1);
	wait_for(L, r);
	push_cached_result(L, 1);
	push_field(L, 1, "on_done");
	if (lua_isnil(L, -1))
		ach_request_watch(L, 1, 0); /* consumed here: poll has nothing left to report */
	lua_pop(L, 1);
	if (!lua_isnil(L, -1))
		return 2; /* nil, err */
	lua_pop(L, 1);
	return 1; /* data */
}

static int request_on_done(lua_State *L)
{
	check_request(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	ach_getuservalue(L, 1);
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "on_done");
	lua_pop(L, 1);
	ach_request_watch(L, 1, 1); /* (again) for the next poll to report */
	lua_settop(L, 1);
	return 1;
}

/* req:cancel(): a pending request ends now with kind "cancelled" (its on_done, or the task
 * waiting for it, hears so from the next poll); true when it was pending, false when it had
 * already finished (nothing changes then). */
static int request_cancel(lua_State *L)
{
	request *r = check_request(L, 1);
	lua_pushboolean(L, ach_exchange_stop(r->ex, ACH_KIND_CANCELLED, "the request was cancelled"));
	return 1;
}

static int request_tostring(lua_State *L)
{
	request *r = luaL_checkudata(L, 1, ACH_REQUEST_MT);
	ach_buf u = {0};
	if (r->ex == NULL || r->ex->core == NULL) {
		lua_pushliteral(L, "achievers.request(released)");
		return 1;
	}
	if (r->ex->url != NULL && ach_redact_url(&u, r->ex->url) == 0 && u.data != NULL)
		lua_pushlstring(L, u.data, u.len);
	else
		lua_pushstring(L, r->ex->type == ACH_EX_API ? "?" : "token");
	ach_buf_free(&u);
	lua_pushfstring(L, "achievers.request(%s %s, %s)", r->ex->method ? r->ex->method : "TOKEN",
			lua_tostring(L, -1), ach_exchange_done(r->ex) ? "done" : "pending");
	return 1;
}

/* ---- client methods ------------------------------------------------------------------------------ */

/* client:async{...}: starts the request and returns it at once. */
static int client_async(lua_State *L)
{
	ach_exchange *ex;
	int req;
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	ex = ach_request_push(L, 1, ACH_EX_API);
	req = lua_gettop(L);
	ach_client_prepare(L, 1, 2, ex);
	ach_request_watch(L, req, 1);
	ACH_HOST(ex->core)->L = L;
	ach_exchange_schedule(ex);
	ach_core_run(ex->core, NULL, 0, ex->core->opt.frame_budget); /* never blocks */
	lua_settop(L, req);
	ach_raise_hook_error(L, ex->core);
	return 1;
}

/* client:poll([timeout]): when nothing waits to be reported, drives transfers for up to
 * timeout seconds (returning as soon as something finished); then calls the on_done callbacks
 * of finished requests, and resumes the tasks waiting for them, in the order they finished and
 * within the frame_budget option from the start of the call, so a frame is never held up by a
 * burst (what is left goes to the next poll; at least one is reported, except that a poll(0)
 * whose transfers used the whole budget leaves them all to the next one). Returns how many it
 * reported. A callback that raises does not stop the others; the first such error is raised
 * once all have run. */
static int client_poll(lua_State *L)
{
	ach_core *core = ach_client_core(L, 1);
	double timeout = luaL_optnumber(L, 2, 0), started, budget = core->opt.frame_budget;
	int pending, errslot, n, available, report = 1;
	luaL_argcheck(L, timeout >= 0, 2, "timeout must be >= 0");
	ach_check_not_in_hook(L, core, "client:poll");
	lua_settop(L, 1);
	ACH_HOST(core)->L = L;
	started = ach_now();
	if (core->done_head == NULL) {
		ach_core_run(core, NULL, started + timeout, timeout == 0 ? budget : INFINITY);
		/* poll(0) is a frame's slice: when moving bytes took the budget, what finished
		 * is reported by the next poll */
		if (timeout == 0 && ach_now() - started > budget)
			report = 0;
	}
	if (core->done_head == NULL || !report) {
		n = ach_spawn_resume_idle(L, 1);
		ach_raise_hook_error(L, core);
		lua_pushinteger(L, n);
		return 1;
	}
	push_pending(L, 1);
	pending = lua_gettop(L);
	lua_pushnil(L); /* the first error a callback raised */
	errslot = lua_gettop(L);
	/* the requests finished before this poll, from the head of the list: a request set to be
	 * reported again by its own callback waits for the next poll */
	available = core->done_count;
	for (n = 0; n < available && core->done_head != NULL; ) {
		ach_exchange *ex = core->done_head;
		/* a frame's budget: what is left is reported by the next poll */
		if (n > 0 && ach_now() - started > budget)
			break;
		ach_rawgetp(L, pending, ex);
		if (lua_isnil(L, -1)) {
			ach_exchange_watch(ex, 0); /* no request object: nobody to report to */
			lua_settop(L, errslot);
			available--;
			continue;
		}
		n++;
		push_cached_result(L, -1); /* before it leaves the list, should this raise */
		ach_request_watch(L, -3, 0);
		push_field(L, -3, "thread");
		if (lua_isthread(L, -1)) {
			/* a task waits for this one: resume it with the result */
			lua_State *co = lua_tothread(L, -1);
			lua_pop(L, 1);
			ach_spawn_resume(L, 1, co, 2);
			lua_settop(L, errslot);
			continue;
		}
		lua_pop(L, 1);
		push_field(L, -3, "on_done");
		if (lua_isfunction(L, -1)) {
			lua_insert(L, -3); /* fn, data, err */
			if (lua_pcall(L, 2, 0, 0) != LUA_OK && lua_isnil(L, errslot))
				lua_replace(L, errslot); /* keep the first */
		}
		lua_settop(L, errslot);
	}
	n += ach_spawn_resume_idle(L, 1);
	ach_raise_hook_error(L, core);
	if (!lua_isnil(L, errslot)) {
		lua_pushvalue(L, errslot);
		lua_error(L);
	}
	lua_pushinteger(L, n);
	return 1;
}

/* client:batch(list): runs the request tables concurrently (max_concurrency at a time);
 * results[i] = {data = ..., err = ...} for list[i]. */
static int client_batch(lua_State *L)
{
	ach_core *core = ach_client_core(L, 1);
	int n, i, reqs, out;
	luaL_checktype(L, 2, LUA_TTABLE);
	ach_check_not_in_hook(L, core, "client:batch");
	lua_settop(L, 2);
	if (lua_rawlen(L, 2) > (size_t)INT_MAX)
		return luaL_error(L, "batch: the list is too long");
	n = (int)lua_rawlen(L, 2);
	/* a border (rawlen) can be far past the items there are: a hole raises below */
	lua_createtable(L, n < 64 ? n : 64, 0);
	reqs = lua_gettop(L);
	for (i = 1; i <= n; i++) {
		ach_exchange *ex;
		lua_rawgeti(L, 2, i);
		if (!lua_istable(L, -1))
			return luaL_error(L, "batch: item %d must be a request table", i);
		ex = ach_request_push(L, 1, ACH_EX_API);
		ach_client_prepare(L, 1, -2, ex);
		lua_rawseti(L, reqs, i);
		lua_pop(L, 1);
	}
	ACH_HOST(core)->L = L;
	for (i = 1; i <= n; i++) {
		request *r;
		lua_rawgeti(L, reqs, i);
		r = lua_touserdata(L, -1);
		ach_exchange_schedule(r->ex);
		lua_pop(L, 1);
	}
	lua_createtable(L, n, 0);
	out = lua_gettop(L);
	for (i = 1; i <= n; i++) {
		request *r;
		lua_rawgeti(L, reqs, i);
		r = lua_touserdata(L, -1);
		wait_for(L, r);
		lua_createtable(L, 0, 2);
		push_cached_result(L, -2);
		lua_setfield(L, -3, "err");
		lua_setfield(L, -2, "data");
		lua_rawseti(L, out, i);
		lua_pop(L, 1);
	}
	return 1;
}

void ach_request_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"async", client_async},
		{"poll", client_poll},
		{"batch", client_batch},
		{NULL, NULL},
	};
	luaL_setfuncs(L, methods, 0);
}

void ach_request_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{"__tostring", request_tostring},
		{NULL, NULL},
	};
	static const luaL_Reg methods[] = {
		{"done", request_done},
		{"result", request_result},
		{"on_done", request_on_done},
		{"cancel", request_cancel},
		{NULL, NULL},
	};
	luaL_newmetatable(L, ACH_REQUEST_MT);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	ach_lua_driver_request_methods(L);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newmetatable(L, ACH_EXCHANGE_MT);
	lua_pushcfunction(L, exchange_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
