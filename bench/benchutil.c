/*
 * clock.c: a two-function Lua module for bench/run.lua, built by it into build/bench/.
 *
 *   benchclock.now()  -> seconds on CLOCK_MONOTONIC, as a float (nanosecond resolution)
 *   benchclock.sleep(s) -> sleeps s seconds (nanosleep), for frame-loop style waits
 *
 * os.clock is CPU time and socket.gettime is the wall clock (it jumps when the clock is set),
 * so neither times a poll(0) call honestly.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

static int bc_now(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
	return 1;
}

static int bc_sleep(lua_State *L)
{
	double s = luaL_checknumber(L, 1);
	struct timespec ts;
	if (s <= 0)
		return 0;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		; /* interrupted: sleep the rest */
	return 0;
}

__attribute__((visibility("default"))) int luaopen_benchclock(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, bc_now);
	lua_setfield(L, -2, "now");
	lua_pushcfunction(L, bc_sleep);
	lua_setfield(L, -2, "sleep");
	return 1;
}
