/*
 * fuzz_query.c: the OAuth callback query (ach_push_query_table) and client:handle_callback
 * on it, as a string and as the table it decodes to.
 *
 * The expected state is "s", so the fuzzer reaches the access_denied, error and missing-code
 * branches; a callback that passes them runs exchange_code against a closed loopback port
 * (retries = 0), which must end as a network error, never a raise.
 */
#include "fuzz_lua.h"

static const char setup[] =
	"fuzz_client = achievers.client {\n"
	"  base_url = 'http://127.0.0.1:9', client_id = 'fuzz-client', client_secret = 'fuzz-secret',\n"
	"  retries = 0, connect_timeout = 1, timeout = 1,\n"
	"}\n";

typedef struct input {
	const uint8_t *p;
	size_t n;
} input;

static void callback(lua_State *L, int query)
{
	int top = lua_gettop(L);
	lua_getglobal(L, "fuzz_client");
	lua_getfield(L, -1, "handle_callback");
	lua_insert(L, -2);
	lua_pushvalue(L, query);
	lua_pushliteral(L, "s");
	lua_call(L, 3, 2);
	if (lua_isnil(L, -2)) {
		/* nil, err with a kind */
		if (lua_type(L, -1) != LUA_TTABLE)
			abort();
		lua_getfield(L, -1, "kind");
		if (lua_type(L, -1) != LUA_TSTRING)
			abort();
		lua_pop(L, 1);
	}
	fz_touch(L, -1, 0);
	lua_settop(L, top);
}

static int run(lua_State *L)
{
	input *in = lua_touserdata(L, 1);
	int t;
	ach_push_query_table(L, (const char *)in->p, in->n);
	t = lua_gettop(L);
	if (lua_type(L, t) != LUA_TTABLE)
		abort();
	fz_touch(L, t, 0);
	callback(L, t);
	lua_pushlstring(L, (const char *)in->p, in->n);
	callback(L, lua_gettop(L));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = fz_state(setup);
	input in = {data, size};
	fz_pcall(L, run, &in, 1);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
