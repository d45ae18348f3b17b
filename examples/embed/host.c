/*
 * host.c: a game-engine-style host that embeds Lua 5.4, loads the achievers module, runs a
 * script, and drives client:poll(0) from its own frame loop, the way an engine ticks its
 * subsystems. The network never holds a frame up.
 *
 *   cc host.c $(pkg-config --cflags --libs lua5.4) -o host
 *   ./host script.lua [module dir]
 *
 * Rules for hosts (see README): the module calls curl_global_init itself, once per process;
 * a client belongs to the Lua state that made it; drive it from the thread that runs that
 * state; several states may each load the module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef LUA_OK /* Lua 5.1 */
#define LUA_OK 0
#endif

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	double d = t - now();
	if (d > 0) {
		struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

/* Calls game.client:poll(0); returns how many requests it reported, or -1 on a Lua error. */
static int poll_client(lua_State *L)
{
	int n;
	lua_getglobal(L, "game");
	lua_getfield(L, -1, "client");
	lua_getfield(L, -1, "poll");
	lua_insert(L, -2);      /* game, poll, client */
	lua_pushnumber(L, 0);   /* never blocks */
	if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
		fprintf(stderr, "poll: %s\n", lua_tostring(L, -1));
		lua_pop(L, 2);
		return -1;
	}
	n = (int)lua_tointeger(L, -1);
	lua_pop(L, 2);
	return n;
}

/* Calls game.frame(i); returns 1 to go on, 0 when the script says it is done, -1 on error. */
static int run_frame(lua_State *L, int i)
{
	int more;
	lua_getglobal(L, "game");
	lua_getfield(L, -1, "frame");
	lua_pushinteger(L, i);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		fprintf(stderr, "frame: %s\n", lua_tostring(L, -1));
		lua_pop(L, 2);
		return -1;
	}
	more = lua_toboolean(L, -1);
	lua_pop(L, 2);
	return more;
}

int main(int argc, char **argv)
{
	const double frame_time = 1.0 / 60;
	const char *script = argc > 1 ? argv[1] : "examples/embed/script.lua";
	const char *modules = argc > 2 ? argv[2] : "build/5.4";
	double worst = 0, next;
	int i, status = 0, finished = 0;
	lua_State *L = luaL_newstate();
	if (L == NULL)
		return 1;
	luaL_openlibs(L);
	/* where the host ships the module */
	lua_getglobal(L, "package");
	lua_pushfstring(L, "%s/?.so;", modules);
	lua_getfield(L, -2, "cpath");
	lua_concat(L, 2);
	lua_setfield(L, -2, "cpath");
	lua_pop(L, 1);
	if (luaL_dofile(L, script) != LUA_OK) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		lua_close(L);
		return 1;
	}
	next = now();
	for (i = 1; i <= 600; i++) {
		double t0 = now(), spent;
		int n = poll_client(L), more;
		if (n < 0) {
			status = 1;
			break;
		}
		finished += n;
		more = run_frame(L, i);
		spent = now() - t0;
		if (spent > worst)
			worst = spent;
		if (more <= 0) {
			status = more < 0;
			break;
		}
		next += frame_time;
		sleep_until(next);
	}
	printf("host: %d frames, %d requests reported by poll, worst frame %.2f ms\n", i, finished,
	       worst * 1000);
	lua_close(L);
	return status;
}
