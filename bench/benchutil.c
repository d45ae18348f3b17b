/*
 * benchutil.c: a small Lua module for bench/run.lua, built by it into build/bench/.
 *
 *   benchutil.now()    -> seconds on CLOCK_MONOTONIC, as a float (nanosecond resolution)
 *   benchutil.cpu()    -> CPU seconds of the calling thread (CLOCK_THREAD_CPUTIME_ID): with
 *                        now(), tells work from waiting or being descheduled
 *   benchutil.sleep(s) -> sleeps s seconds (nanosleep), for frame-loop style waits
 *   benchutil.malloc_trim() -> true after glibc's malloc_trim(0) (false elsewhere): hands
 *                        freed heap pages back to the kernel, so that a VmRSS reading taken
 *                        after it shows memory still in use rather than allocator caches
 *
 * os.clock is CPU time and socket.gettime is the wall clock (it jumps when the clock is set),
 * so neither times a poll(0) call honestly.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <lua.h>
#include <lauxlib.h>

static int bu_now(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
	return 1;
}

static int bu_cpu(lua_State *L)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
	return 1;
}

static int bu_sleep(lua_State *L)
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

static int bu_malloc_trim(lua_State *L)
{
#ifdef __GLIBC__
	malloc_trim(0);
	lua_pushboolean(L, 1);
#else
	lua_pushboolean(L, 0);
#endif
	return 1;
}

__attribute__((visibility("default"))) int luaopen_benchutil(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, bu_now);
	lua_setfield(L, -2, "now");
	lua_pushcfunction(L, bu_cpu);
	lua_setfield(L, -2, "cpu");
	lua_pushcfunction(L, bu_sleep);
	lua_setfield(L, -2, "sleep");
	lua_pushcfunction(L, bu_malloc_trim);
	lua_setfield(L, -2, "malloc_trim");
	return 1;
}
