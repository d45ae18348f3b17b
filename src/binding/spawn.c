/*
 * spawn.c: client:spawn(fn, ...) runs fn in a coroutine whose blocking calls (get, post,
 * request, token, exchange_code, the resource helpers) do not block: they start their
 * exchange and yield, and client:poll resumes the coroutine with the result once it is
 * there. Game code can so be written sequentially and still never stall a frame.
 *
 * A task is a table {client =, thread =, ended =, results = {n = ...}, error =} with the
 * metatable achievers.task. Tasks in flight live in the root client's user value `tasks`
 * (thread -> task). A task that yields by itself (coroutine.yield()) with no call in flight is
 * resumed at the next poll.
 */
#include <string.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/request.h"
#include "binding/spawn.h"
#include "core/engine.h"

#define ACH_TASK_MT "achievers.task"

/* Pushes the root client's table `name` (pending, tasks) for the client at cl. */
static void push_root_table(lua_State *L, int cl, const char *name)
{
	cl = lua_absindex(L, cl);
	ach_getuservalue(L, cl);   /* uv */
	lua_getfield(L, -1, "root"); /* uv, root */
	ach_getuservalue(L, -1);   /* uv, root, root uv */
	lua_getfield(L, -1, name);  /* uv, root, root uv, t */
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, name);
	}
	lua_replace(L, -4);
	lua_pop(L, 2);
}

/* Pushes the task of thread co (nil when co is not a task of the client at cl). */
static void push_task(lua_State *L, int cl, lua_State *co)
{
	push_root_table(L, cl, "tasks");
	lua_pushthread(co);
	lua_xmove(co, L, 1);
	lua_rawget(L, -2);
	lua_remove(L, -2);
}

int ach_spawn_active(lua_State *L, int cl)
{
	int yes;
	if (ACH_HOST(ach_client_core(L, cl))->no_yield > 0)
		return 0;
#if ACH_HAS_ISYIELDABLE
	if (!lua_isyieldable(L))
		return 0;
#endif
	if (lua_pushthread(L)) { /* the main thread is never a task */
		lua_pop(L, 1);
		return 0;
	}
	lua_pop(L, 1);
	push_task(L, cl, L);
	yes = lua_istable(L, -1);
	lua_pop(L, 1);
	return yes;
}

int ach_spawn_wait(lua_State *L, int cl, ach_exchange *ex)
{
	int req = lua_gettop(L);
	cl = lua_absindex(L, cl);
	ach_getuservalue(L, req);
	lua_pushthread(L);
	lua_setfield(L, -2, "thread");
	lua_pop(L, 1);
	ach_request_watch(L, req, 1);
	push_task(L, cl, L);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "waiting");
	lua_pushvalue(L, req);
	lua_setfield(L, -2, "request"); /* the call it waits on, for task:cancel() */
	lua_pop(L, 1);
	ACH_HOST(ex->core)->L = L;
	ach_exchange_schedule(ex);
	ach_core_run(ex->core, NULL, 0, ex->core->opt.frame_budget); /* never blocks */
	ach_raise_hook_error(L, ex->core);
	return lua_yield(L, 0);
}

void ach_spawn_resume(lua_State *L, int cl, lua_State *co, int n)
{
	ach_core *core = ach_client_core(L, cl);
	int status, nres = 0, task, i;
	cl = lua_absindex(L, cl);
	push_task(L, cl, co);
	task = lua_gettop(L);
	lua_insert(L, task - n); /* task below the n values */
	task -= n;
	if (!lua_istable(L, task)) {
		lua_settop(L, task - 1);
		return;
	}
	lua_pushboolean(L, 0);
	lua_setfield(L, task, "waiting");
	lua_pushnil(L);
	lua_setfield(L, task, "request");
	lua_xmove(L, co, n);
	ACH_HOST(core)->L = co;
	status = ach_resume(co, L, n, &nres);
	ACH_HOST(core)->L = L;
	if (status == LUA_YIELD) {
		lua_pop(co, nres); /* what a task's own yield passed is not used */
		lua_getfield(L, task, "waiting");
		lua_pushboolean(L, !lua_toboolean(L, -1));
		lua_setfield(L, task, "idle"); /* resume it at the next poll */
		lua_settop(L, task - 1);
		return;
	}
	lua_pushboolean(L, 1);
	lua_setfield(L, task, "ended");
	if (status == LUA_OK) {
		lua_createtable(L, nres, 1);
		lua_pushinteger(L, nres);
		lua_setfield(L, -2, "n");
		lua_xmove(co, L, nres); /* task, results, v1..vn */
		for (i = nres; i >= 1; i--)
			lua_rawseti(L, task + 1, i);
		lua_setfield(L, task, "results");
	} else {
		lua_xmove(co, L, 1); /* the error value */
		lua_pushvalue(L, -1);
		lua_setfield(L, task, "error");
		ach_hook_error_set(L, core); /* raised by the poll that resumed it */
	}
	/* no longer in flight */
	push_root_table(L, cl, "tasks");
	lua_pushthread(co);
	lua_xmove(co, L, 1);
	lua_pushnil(L);
	lua_rawset(L, -3);
	lua_settop(L, task - 1);
}

/* Resumes the tasks of the client at cl that yielded by themselves. Returns how many. */
int ach_spawn_resume_idle(lua_State *L, int cl)
{
	int tasks, list, n = 0, i;
	cl = lua_absindex(L, cl);
	push_root_table(L, cl, "tasks");
	tasks = lua_gettop(L);
	lua_pushnil(L); /* list: made only when a task is idle, so a frame's poll allocates nothing */
	list = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, tasks) != 0) {
		lua_getfield(L, -1, "idle");
		if (lua_toboolean(L, -1)) {
			if (n == 0) {
				lua_newtable(L);
				lua_replace(L, list);
			}
			lua_pushvalue(L, -3);
			lua_rawseti(L, list, ++n);
		}
		lua_pop(L, 2);
	}
	for (i = 1; i <= n; i++) {
		lua_State *co;
		lua_rawgeti(L, list, i);
		co = lua_tothread(L, -1);
		lua_pop(L, 1);
		push_task(L, cl, co);
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "idle");
		lua_pop(L, 1);
		ach_spawn_resume(L, cl, co, 0);
	}
	lua_settop(L, tasks - 1);
	return n;
}

/* client:spawn(fn, ...) -> task. fn runs at once, up to its first call. */
static int client_spawn(lua_State *L)
{
	int nargs = lua_gettop(L) - 2, task;
	lua_State *co;
	ach_client_core(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	co = lua_newthread(L);
	lua_createtable(L, 0, 4);
	task = lua_gettop(L);
	luaL_setmetatable(L, ACH_TASK_MT);
	lua_pushvalue(L, 1);
	lua_setfield(L, task, "client");
	lua_pushvalue(L, task - 1);
	lua_setfield(L, task, "thread");
	lua_pushboolean(L, 0);
	lua_setfield(L, task, "ended");
	push_root_table(L, 1, "tasks");
	lua_pushvalue(L, task - 1);
	lua_pushvalue(L, task);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	/* fn and its arguments onto the coroutine */
	lua_pushvalue(L, 2);
	lua_xmove(L, co, 1);
	for (int i = 0; i < nargs; i++)
		lua_pushvalue(L, 3 + i);
	lua_xmove(L, co, nargs);
	{
		/* the first resume passes fn's arguments: ach_spawn_resume takes them from L */
		lua_xmove(co, L, nargs);
		ach_spawn_resume(L, 1, co, nargs);
	}
	ach_raise_hook_error(L, ach_client_core(L, 1));
	lua_settop(L, task);
	return 1;
}

static int task_done(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "ended");
	lua_pushboolean(L, lua_toboolean(L, -1));
	return 1;
}

/* task:result(): waits (polling its client) until the task ends; its results, or nil and its
 * error. */
static int task_result(lua_State *L)
{
	int n, i;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	for (;;) {
		lua_getfield(L, 1, "ended");
		if (lua_toboolean(L, -1))
			break;
		lua_pop(L, 1);
		lua_getfield(L, 1, "client");
		lua_getfield(L, -1, "poll");
		lua_insert(L, -2);
		lua_pushnumber(L, 0.05);
		lua_call(L, 2, 0); /* raises the task's error, if it fails */
	}
	lua_getfield(L, 1, "error");
	if (!lua_isnil(L, -1)) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	lua_getfield(L, 1, "results");
	lua_getfield(L, -1, "n");
	n = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	luaL_checkstack(L, n, "too many results");
	for (i = 1; i <= n; i++)
		lua_rawgeti(L, -i, i);
	return n;
}

/* task:cancel(): cancels the call the task waits on (its result is nil, err with kind
 * "cancelled", and the task goes on from there at the next poll); false when it waits on none. */
static int task_cancel(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "request");
	if (lua_isnil(L, -1)) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_pushboolean(L, ach_exchange_stop(ach_request_exchange(L, -1), ACH_KIND_CANCELLED,
					     "the request was cancelled"));
	return 1;
}

static int task_tostring(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "ended");
	lua_getfield(L, 1, "error");
	lua_pushfstring(L, "achievers.task(%s)", !lua_toboolean(L, -2) ? "running"
						 : lua_isnil(L, -1)  ? "done"
								     : "failed");
	return 1;
}

void ach_spawn_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"done", task_done},
		{"result", task_result},
		{"cancel", task_cancel},
		{NULL, NULL},
	};
	luaL_newmetatable(L, ACH_TASK_MT);
	lua_pushcfunction(L, task_tostring);
	lua_setfield(L, -2, "__tostring");
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}

void ach_spawn_methods(lua_State *L)
{
	lua_pushcfunction(L, client_spawn);
	lua_setfield(L, -2, "spawn");
}
