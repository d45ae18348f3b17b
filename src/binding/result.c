/*
 * result.c: turns a finished exchange into Lua values: the decoded answer (or a token
 * object), or nil and an error object whose kind follows doc/achievers.luadoc (errors). Bad answers (not JSON,
 * truncated, an HTML error page, an empty 200) become `decode` errors, never raises.
 */
#include <ctype.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "binding/json.h"
#include "binding/result.h"
#include "binding/token.h"
#include "core/buf.h"
#include "core/engine.h"
#include "core/kind.h"
#include "core/url.h"

#define BODY_KEEP 4096 /* bytes of a non-JSON error body kept in err.body */
#define ERROR_DECODE_MAX (256 * 1024) /* an error body larger than this is not decoded */

/* Pushes a table of the answer's headers, names in lower case, repeats joined with ", ". */
static void push_headers(lua_State *L, const ach_buf *h)
{
	size_t i = 0;
	lua_newtable(L);
	while (h->data != NULL && i < h->len) {
		size_t end = i, colon;
		while (end < h->len && h->data[end] != '\n')
			end++;
		for (colon = i; colon < end && h->data[colon] != ':'; colon++)
			;
		if (colon < end && colon > i) {
			size_t v = colon + 1, e = end, k;
			luaL_Buffer b;
			while (v < e && (h->data[v] == ' ' || h->data[v] == '\t'))
				v++;
			while (e > v && isspace((unsigned char)h->data[e - 1]))
				e--;
			luaL_buffinit(L, &b);
			for (k = i; k < colon; k++)
				luaL_addchar(&b, (char)tolower((unsigned char)h->data[k]));
			luaL_pushresult(&b);            /* name */
			lua_pushvalue(L, -1);
			lua_rawget(L, -3);              /* name, old */
			if (lua_isstring(L, -1)) {
				lua_pushliteral(L, ", ");
				lua_pushlstring(L, h->data + v, e - v);
				lua_concat(L, 3);
			} else {
				lua_pop(L, 1);
				lua_pushlstring(L, h->data + v, e - v);
			}
			lua_rawset(L, -3);
		}
		i = end + 1;
	}
}

static int is_token_call(const ach_exchange *ex)
{
	return ex->type != ACH_EX_API || ex->token_failed;
}

/* Pushes nil and the error object for a failed exchange. */
static int push_failure(lua_State *L, ach_exchange *ex, ach_kind kind, const char *message,
			int body_idx)
{
	const char *method = ex->token_failed ? ex->error_method : ex->method;
	const char *url = ex->token_failed ? ex->error_url.data : ex->url;
	int err;
	lua_pushnil(L);
	ach_push_error(L, kind, NULL);
	err = lua_gettop(L);
	if (ex->status > 0) {
		lua_pushinteger(L, (lua_Integer)ex->status);
		lua_setfield(L, err, "status");
	}
	if (ex->retry_after >= 0) {
		if (ex->retry_after == (double)(lua_Integer)ex->retry_after)
			lua_pushinteger(L, (lua_Integer)ex->retry_after); /* seconds, capped by the parser */
		else
			lua_pushnumber(L, ex->retry_after);
		lua_setfield(L, err, "retry_after");
	}
	if (method != NULL) {
		lua_pushstring(L, method);
		lua_setfield(L, err, "method");
	}
	if (url != NULL) {
		ach_buf red = {0};
		if (ach_redact_url(&red, url) == 0 && red.data != NULL)
			lua_pushlstring(L, red.data, red.len);
		else
			lua_pushliteral(L, "?");
		ach_buf_free(&red);
		lua_setfield(L, err, "url");
	}
	/* code and message from a JSON error body, when there is one */
	if (body_idx != 0 && lua_type(L, body_idx) == LUA_TTABLE) {
		lua_getfield(L, body_idx, "error");
		if (lua_type(L, -1) == LUA_TSTRING)
			lua_setfield(L, err, "code");
		else
			lua_pop(L, 1);
		lua_getfield(L, body_idx, "error_description");
		if (lua_type(L, -1) != LUA_TSTRING) {
			lua_pop(L, 1);
			lua_getfield(L, body_idx, "message");
		}
		if (lua_type(L, -1) == LUA_TSTRING)
			lua_setfield(L, err, "message");
		else
			lua_pop(L, 1);
	}
	lua_getfield(L, err, "message");
	if (lua_isnil(L, -1)) {
		if (message != NULL && message[0] != '\0')
			lua_pushstring(L, message);
		else
			lua_pushfstring(L, "HTTP %d", (int)ex->status);
		lua_setfield(L, err, "message");
	}
	lua_pop(L, 1);
	/* how many HTTP attempts the call made; the message says so when it retried (a deadline's
	 * message says it already) */
	lua_pushinteger(L, ex->attempt);
	lua_setfield(L, err, "attempts");
	if (ex->attempt > 1 && !ex->deadline_hit) {
		lua_getfield(L, err, "message");
		lua_pushfstring(L, "%s (after %d attempts)", lua_tostring(L, -1), ex->attempt);
		lua_setfield(L, err, "message");
		lua_pop(L, 1);
	}
	if (is_token_call(ex) && ex->status >= 200 && ex->status < 300) {
		/* a token answer that could not be used: it may still carry tokens, keep it out */
	} else if (body_idx != 0) {
		lua_pushvalue(L, body_idx);
		lua_setfield(L, err, "body");
	} else if (ex->resp_body.len > 0) {
		lua_pushlstring(L, ex->resp_body.data,
				ex->resp_body.len > BODY_KEEP ? BODY_KEEP : ex->resp_body.len);
		lua_setfield(L, err, "body");
	}
	if (ex->resp_headers.len > 0) {
		push_headers(L, &ex->resp_headers);
		lua_setfield(L, err, "headers");
	}
	/* the token endpoint's RFC 6749 codes */
	if (is_token_call(ex) && kind == ACH_KIND_INVALID) {
		lua_getfield(L, err, "code");
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *c = lua_tostring(L, -1);
			if (strcmp(c, "invalid_client") == 0 || strcmp(c, "invalid_grant") == 0 ||
			    strcmp(c, "unauthorized_client") == 0) {
				lua_pushstring(L, ach_kind_name(ACH_KIND_AUTH));
				lua_setfield(L, err, "kind");
			}
		}
		lua_pop(L, 1);
	}
	return 2;
}

/* Decodes the body at the top of the stack when it looks like JSON; returns its index or 0.
 * An error body is a few hundred bytes: a large one is kept as text (its start), not decoded. */
static int decode_error_body(lua_State *L, ach_exchange *ex)
{
	if (ex->resp_body.len == 0 || ex->resp_body.len > ERROR_DECODE_MAX)
		return 0;
	if (ach_json_decode(L, ex->resp_body.data, ex->resp_body.len))
		return lua_gettop(L);
	lua_pop(L, 1);
	return 0;
}

int ach_exchange_push_result(lua_State *L, ach_exchange *ex, int owner)
{
	int body_idx;
	owner = lua_absindex(L, owner);
	if (ex->failure == ACH_KIND_NONE &&
	    ((ex->type == ACH_EX_ENSURE && !ex->token_failed) || (ex->status >= 200 && ex->status < 300))) {
		if (ex->type != ACH_EX_API) {
			ach_push_token(L, ex->token, owner);
			return 1;
		}
		if (ex->resp_body.len == 0) {
			if (ex->status != 200) {
				lua_pushboolean(L, 1); /* 201, 202, 204 with nothing to say */
				return 1;
			}
			return push_failure(L, ex, ACH_KIND_DECODE, "the answer is empty", 0);
		}
		if (ach_json_decode(L, ex->resp_body.data, ex->resp_body.len))
			return 1;
		{
			const char *why = lua_tostring(L, -1);
			lua_pushfstring(L, "the answer is not valid JSON (%s)", why ? why : "?");
			lua_remove(L, -2);
			return push_failure(L, ex, ACH_KIND_DECODE, lua_tostring(L, -1), 0);
		}
	}
	if (ex->failure != ACH_KIND_NONE)
		return push_failure(L, ex, ex->failure, ex->message.data, decode_error_body(L, ex));
	body_idx = decode_error_body(L, ex);
	return push_failure(L, ex, ach_kind_for_status(ex->status), ex->message.data, body_idx);
}
