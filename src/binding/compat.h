/*
 * compat.h: every difference between Lua 5.1 (and LuaJIT 2.1), 5.2, 5.3 and 5.4 that the
 * module relies on, in one place. The rest of the sources are written against the 5.4 API.
 */
#ifndef ACHIEVERS_COMPAT_H
#define ACHIEVERS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM < 502
/* Lua 5.1 and LuaJIT: environments stand in for user values (they must be tables). LuaJIT
 * 2.1 (the OpenResty branch) already has a few 5.2 functions; its lauxlib.h defines
 * luaL_newlib, which tells the two apart. */
#if defined(luaL_newlib)
#define ACH_LUAJIT 1
#else
#define luaL_setfuncs(L, l, nup) ach_compat_setfuncs((L), (l), (nup))
#define luaL_newlibtable(L, l) lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1)
#define luaL_newlib(L, l) (luaL_newlibtable((L), (l)), luaL_setfuncs((L), (l), 0))
#define luaL_setmetatable(L, tname) (luaL_getmetatable((L), (tname)), lua_setmetatable((L), -2))

static inline void ach_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	luaL_checkstack(L, nup + 1, "too many upvalues");
	for (; l->name != NULL; l++) {
		int i;
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}

static inline void *luaL_testudata(lua_State *L, int ud, const char *tname)
{
	void *p = lua_touserdata(L, ud);
	if (p != NULL && lua_getmetatable(L, ud)) {
		luaL_getmetatable(L, tname);
		if (!lua_rawequal(L, -1, -2))
			p = NULL;
		lua_pop(L, 2);
		return p;
	}
	return NULL;
}
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define lua_absindex(L, i) (((i) > 0 || (i) <= LUA_REGISTRYINDEX) ? (i) : lua_gettop(L) + (i) + 1)

static inline int ach_compat_getuservalue(lua_State *L, int idx)
{
	lua_getfenv(L, idx);
	return lua_type(L, -1);
}
#define ach_getuservalue(L, i) ach_compat_getuservalue((L), (i))
#define ach_setuservalue(L, i) lua_setfenv((L), (i))
#define ach_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define ach_rawgetp(L, i, p) (lua_pushlightuserdata((L), (void *)(p)), lua_rawget((L), (i) < 0 && (i) > LUA_REGISTRYINDEX ? (i) - 1 : (i)))
#define ach_rawsetp(L, i, p) ach_compat_rawsetp((L), (i), (p))
static inline void ach_compat_rawsetp(lua_State *L, int idx, const void *p)
{
	idx = lua_absindex(L, idx);
	lua_pushlightuserdata(L, (void *)p);
	lua_insert(L, -2);
	lua_rawset(L, idx);
}
#define ach_resume(L, from, n, nres) ach_compat_resume51((L), (n), (nres))
static inline int ach_compat_resume51(lua_State *co, int n, int *nres)
{
	int status = lua_resume(co, n);
	*nres = lua_gettop(co);
	return status;
}
#else
#define ach_rawgetp(L, i, p) ((void)lua_rawgetp((L), (i), (p)))
#define ach_rawsetp(L, i, p) lua_rawsetp((L), (i), (p))
#endif

#if LUA_VERSION_NUM == 502 || LUA_VERSION_NUM == 503
#define ach_getuservalue(L, i) (lua_getuservalue((L), (i)), lua_type((L), -1))
#define ach_setuservalue(L, i) lua_setuservalue((L), (i))
#define ach_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

#if LUA_VERSION_NUM == 502
#define ach_resume(L, from, n, nres) (*(nres) = 0, ach_compat_resume52((L), (from), (n), (nres)))
static inline int ach_compat_resume52(lua_State *co, lua_State *from, int n, int *nres)
{
	int status = lua_resume(co, from, n);
	*nres = lua_gettop(co);
	return status;
}
#elif LUA_VERSION_NUM == 503
#define ach_resume(L, from, n, nres) ach_compat_resume53((L), (from), (n), (nres))
static inline int ach_compat_resume53(lua_State *co, lua_State *from, int n, int *nres)
{
	int status = lua_resume(co, from, n);
	*nres = lua_gettop(co);
	return status;
}
#endif

#if LUA_VERSION_NUM < 504
#define ach_newuserdata_plain(L, sz) lua_newuserdata((L), (sz))
#endif

#if LUA_VERSION_NUM >= 504
#define ach_getuservalue(L, i) lua_getiuservalue((L), (i), 1)
#define ach_setuservalue(L, i) lua_setiuservalue((L), (i), 1)
#define ach_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 1)
#define ach_newuserdata_plain(L, sz) lua_newuserdatauv((L), (sz), 0)
#define ach_resume(L, from, n, nres) lua_resume((L), (from), (n), (nres))
#endif

/* Whether a running coroutine may yield here (lua_isyieldable: 5.3+ and LuaJIT 2.1). */
#if LUA_VERSION_NUM >= 503 || defined(ACH_LUAJIT)
#define ACH_HAS_ISYIELDABLE 1
#else
#define ACH_HAS_ISYIELDABLE 0
#endif

/* Integers: 5.3 and later have a real integer subtype; before that every number is a double. */
#if LUA_VERSION_NUM >= 503
#define ACH_HAS_INTEGERS 1
#define ach_isinteger(L, i) lua_isinteger((L), (i))
#else
#define ACH_HAS_INTEGERS 0
static inline int ach_isinteger(lua_State *L, int i)
{
	lua_Number n;
	if (lua_type(L, i) != LUA_TNUMBER)
		return 0;
	n = lua_tonumber(L, i);
	return n == (lua_Number)(long long)n && n > -9007199254740992.0 && n < 9007199254740992.0;
}
#endif

/* lua_len that leaves an integer length on the stack top and returns it. */
static inline long long ach_len(lua_State *L, int i)
{
#if LUA_VERSION_NUM >= 502
	long long n;
	lua_len(L, i);
	n = (long long)lua_tonumber(L, -1);
	lua_pop(L, 1);
	return n;
#else
	return (long long)lua_objlen(L, i);
#endif
}

#endif
