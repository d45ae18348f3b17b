/*
 * fuzz_json.c: JSON answers through the module's own decoder (ach_json_decode: straight into
 * Lua values, integers exact), and the core's reading of the same bytes as a token answer
 * (ach_token_from_json); then what the client builds from a token: its tostring and to_table,
 * and achievers.token on the saved table.
 *
 * Invariants checked: a failed decode leaves a message string; a token answer that decodes is
 * either refused with a reason or gives a complete token.
 */
#include "fuzz_lua.h"

typedef struct input {
	const uint8_t *p;
	size_t n;
} input;

static int run(lua_State *L)
{
	input *in = lua_touserdata(L, 1);
	const char *why = NULL;
	ach_token_data *t;
	int top = lua_gettop(L);
	if (!ach_json_decode(L, (const char *)in->p, in->n)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			abort(); /* the contract: a message */
	} else {
		fz_touch(L, -1, 0);
	}
	lua_settop(L, top);
	t = ach_token_from_json((const char *)in->p, in->n,
				in->n & 1 ? "client_credentials" : "authorization_code", "read",
				in->n & 2 ? 1700000000 : 0, 1700000000.0, &why);
	if (t == NULL) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (t->access_token == NULL || t->token_type == NULL || t->scope == NULL || t->grant_type == NULL)
		abort();
	ach_push_token(L, t, 0);
	ach_token_unref(t);
	fz_touch(L, -1, 0);
	lua_getfield(L, -1, "to_table");
	lua_pushvalue(L, -2);
	lua_call(L, 1, 1);
	fz_touch(L, -1, 0);
	/* a saved token reads back */
	lua_getglobal(L, "achievers");
	lua_getfield(L, -1, "token");
	lua_pushvalue(L, -3);
	lua_call(L, 1, 1);
	fz_touch(L, -1, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = fz_state(NULL);
	input in = {data, size};
	fz_pcall(L, run, &in, 1);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
