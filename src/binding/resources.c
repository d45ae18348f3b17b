/*
 * resources.c: the endpoints of the Achievers API as data, and the resource helpers
 * (client:users(), client:send_recognition{...}, ...) built from it, each a thin name over
 * client:request. Also client:each, the iterator over every item of every page, and
 * client:upload, the multipart upload of a file or of bytes in memory.
 *
 * A correction to a path, a method, a scope or a rate-limit class is one line of the table.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "binding/binding.h"
#include "binding/client.h"
#include "binding/encode.h"
#include "binding/error.h"
#include "binding/request.h"
#include "binding/resources.h"
#include "core/buf.h"
#include "core/engine.h"

enum arg_kind {
	ARG_QUERY,    /* helper(query) */
	ARG_ID_QUERY, /* helper(id, query) */
	ARG_FORM,     /* helper(fields) */
	ARG_UPLOAD    /* helper{file = path} or helper{data =, filename =, content_type =} */
};

typedef struct endpoint {
	const char *name;   /* the helper's name */
	const char *method;
	const char *path;   /* below /api/v5/; {id} is the helper's first argument */
	const char *scope;  /* the scope the call needs */
	int rate_class;     /* the per-token limit it counts against */
	enum arg_kind args;
} endpoint;

static const endpoint endpoints[] = {
	{"users", "GET", "users", "read", ACH_CLASS_DEFAULT, ARG_QUERY},
	{"user", "GET", "users/{id}", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
	{"recognitions", "GET", "recognitions", "read", ACH_CLASS_HEAVY, ARG_QUERY},
	{"recognition", "GET", "recognitions/{id}", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
	{"recognition_criteria", "OPTIONS", "recognitions", "read", ACH_CLASS_DEFAULT, ARG_QUERY},
	{"send_recognition", "POST", "recognitions", "write", ACH_CLASS_DEFAULT, ARG_FORM},
	{"create_achievement", "POST", "achievements", "write", ACH_CLASS_DEFAULT, ARG_FORM},
	{"upload", "POST", "uploads", "write", ACH_CLASS_DEFAULT, ARG_UPLOAD},
	{"newsfeed_events", "GET", "newsfeed-events", "read", ACH_CLASS_HEAVY, ARG_QUERY},
	{"newsfeed_event", "GET", "newsfeed-events/{id}", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
	{"newsfeed_event_likes", "GET", "newsfeed-events/{id}/likes", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
	{"newsfeed_event_comments", "GET", "newsfeed-events/{id}/comments", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
	{"newsfeed_event_boosts", "GET", "newsfeed-events/{id}/boosts", "read", ACH_CLASS_DEFAULT, ARG_ID_QUERY},
};
#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])

/* The rate class of any call, from the table: a call counts as heavy when its method and path
 * (query aside) are those of a heavy endpoint. */
int ach_rate_class(const char *method, const char *url)
{
	const char *p = strstr(url, "://");
	size_t i, n, plen = strlen(ACH_API_PREFIX);
	p = p != NULL ? strchr(p + 3, '/') : NULL;
	if (p == NULL)
		return ACH_CLASS_DEFAULT;
	n = strcspn(p, "?#");
	for (i = 0; i < N_ENDPOINTS; i++) {
		const endpoint *e = &endpoints[i];
		size_t elen = strlen(e->path);
		if (e->rate_class == ACH_CLASS_DEFAULT || strcmp(e->method, method) != 0)
			continue;
		/* the path may sit below a base path: compare the tail */
		if (n >= plen + elen && strncmp(p + n - elen, e->path, elen) == 0 &&
		    strncmp(p + n - elen - plen, ACH_API_PREFIX, plen) == 0)
			return e->rate_class;
	}
	return ACH_CLASS_DEFAULT;
}

/* Builds "path" with {id} replaced by the value at id_idx (percent-encoded); pushes it. */
static void push_path(lua_State *L, const endpoint *e, int id_idx)
{
	const char *brace = strstr(e->path, "{id}");
	luaL_Buffer b;
	if (brace == NULL) {
		lua_pushstring(L, e->path);
		return;
	}
	{
		/* the encoded id goes through a request object's scratch buffer, freed by __gc */
		ach_exchange *scratch;
		lua_pushvalue(L, 1);
		scratch = ach_request_push(L, -1, ACH_EX_API);
		lua_remove(L, -2);
		lua_pushfstring(L, "%s: id", e->name);
		ach_encode_path_value(L, id_idx, &scratch->scratch, lua_tostring(L, -1));
		lua_pop(L, 1);
		luaL_buffinit(L, &b);
		luaL_addlstring(&b, e->path, (size_t)(brace - e->path));
		luaL_addlstring(&b, scratch->scratch.data, scratch->scratch.len);
		luaL_addstring(&b, brace + 4);
		luaL_pushresult(&b);
		lua_remove(L, -2); /* the scratch request */
	}
}

static const char *content_type_for(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{".png", "image/png"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
		{".gif", "image/gif"}, {".webp", "image/webp"}, {".svg", "image/svg+xml"},
		{".bmp", "image/bmp"}, {".pdf", "application/pdf"},
	};
	const char *dot = strrchr(name, '.');
	size_t i;
	for (i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
		if (strcasecmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* Reads the file at `path` into a Lua string pushed on the stack; returns 1, or 0 with an
 * error message pushed instead. */
static int push_file(lua_State *L, const char *path)
{
	FILE *f = fopen(path, "rb");
	luaL_Buffer b;
	size_t n;
	int failed;
	if (f == NULL) {
		lua_pushfstring(L, "cannot read '%s': %s", path, strerror(errno));
		return 0;
	}
	luaL_buffinit(L, &b);
	do {
		char *p = luaL_prepbuffer(&b);
		n = fread(p, 1, LUAL_BUFFERSIZE, f);
		luaL_addsize(&b, n);
	} while (n == LUAL_BUFFERSIZE);
	failed = ferror(f);
	fclose(f);
	luaL_pushresult(&b);
	if (failed) {
		lua_pop(L, 1);
		lua_pushfstring(L, "cannot read '%s'", path);
		return 0;
	}
	return 1;
}

/* The string at idx, field `name` of upload's table (kept on the stack while it is used);
 * raises when it is not a string. */
static const char *upload_text(lua_State *L, int idx, const char *name)
{
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_error(L, "upload: '%s' must be a string (got %s)", name, luaL_typename(L, idx));
	return lua_tostring(L, idx);
}

/* client:upload{file = path} or client:upload{data = s, filename =, content_type =}: pushes
 * the request table for it, or returns 2 (nil, err) when the file cannot be read. Each field
 * is read once, through the table's metatable, and stays on the stack while it is used. */
static int push_upload_spec(lua_State *L, int arg)
{
	const char *file, *filename;
	int part;
	luaL_checktype(L, arg, LUA_TTABLE);
	lua_getfield(L, arg, "file");
	lua_getfield(L, arg, "data");
	if (lua_isnil(L, -1) == lua_isnil(L, -2))
		return luaL_error(L, "upload: give either 'file' (a path) or 'data' (the bytes)");
	lua_createtable(L, 0, 4);
	part = lua_gettop(L);
	lua_pushliteral(L, "file");
	lua_setfield(L, part, "name");
	if (!lua_isnil(L, -3)) {
		file = upload_text(L, -3, "file");
		if (!push_file(L, file)) {
			ach_push_error(L, ACH_KIND_INVALID, lua_tostring(L, -1));
			lua_pushnil(L);
			lua_insert(L, -2);
			return 2;
		}
		lua_setfield(L, part, "data");
		filename = strrchr(file, '/') != NULL ? strrchr(file, '/') + 1 : file;
	} else {
		if (lua_type(L, -2) != LUA_TSTRING)
			return luaL_error(L, "upload: 'data' must be a string");
		lua_pushvalue(L, -2);
		lua_setfield(L, part, "data");
		filename = "upload.bin";
	}
	lua_getfield(L, arg, "filename");
	if (!lua_isnil(L, -1))
		filename = upload_text(L, -1, "filename");
	lua_pushstring(L, filename);
	lua_setfield(L, part, "filename");
	lua_getfield(L, arg, "content_type");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushstring(L, content_type_for(filename));
	} else {
		upload_text(L, -1, "content_type");
	}
	lua_setfield(L, part, "content_type");
	lua_pop(L, 1); /* filename */
	/* spec = {method = "POST", path = "uploads", multipart = {part}} */
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "POST");
	lua_setfield(L, -2, "method");
	lua_pushliteral(L, "uploads");
	lua_setfield(L, -2, "path");
	lua_createtable(L, 1, 0);
	lua_pushvalue(L, part);
	lua_rawseti(L, -2, 1);
	lua_setfield(L, -2, "multipart");
	return 1;
}

/* The helper for endpoints[upvalue 1]: builds the request table and calls client:request. */
static int resource_call(lua_State *L)
{
	const endpoint *e = &endpoints[lua_tointeger(L, lua_upvalueindex(1))];
	int spec;
	luaL_checkudata(L, 1, ACH_CLIENT_MT);
	if (e->args == ARG_UPLOAD) {
		lua_settop(L, 2);
		if (push_upload_spec(L, 2) == 2)
			return 2;
		spec = lua_gettop(L);
	} else {
		int data = e->args == ARG_ID_QUERY ? 3 : 2;
		lua_settop(L, data); /* the arguments, nil for those not given */
		if (e->args == ARG_ID_QUERY)
			luaL_checkany(L, 2);
		if (!lua_isnoneornil(L, data))
			luaL_checktype(L, data, LUA_TTABLE);
		else if (e->args == ARG_FORM)
			luaL_argerror(L, data, "expected a table of fields");
		lua_createtable(L, 0, 3);
		spec = lua_gettop(L);
		lua_pushstring(L, e->method);
		lua_setfield(L, spec, "method");
		push_path(L, e, 2);
		lua_setfield(L, spec, "path");
		if (!lua_isnoneornil(L, data)) {
			lua_pushvalue(L, data);
			lua_setfield(L, spec, e->args == ARG_FORM ? "form" : "query");
		}
	}
	/* client:request(spec), called directly so that a task can yield from it */
	lua_replace(L, 2);
	lua_settop(L, 2);
	return ach_client_request(L);
}

/* ---- client:each ------------------------------------------------------------------------------ */

/* Whether a paging.next link stays on base_url's origin (a relative one does). */
static int next_on_base(ach_core *core, const char *url)
{
	size_t on = strlen(core->opt.base.origin);
	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0)
		return strncmp(url, "//", 2) != 0;
	return strncasecmp(url, core->opt.base.origin, on) == 0 &&
	       (url[on] == '/' || url[on] == '?' || url[on] == '\0');
}

/* The page after the answer at `page` (a decoded page, absolute index), the rule both each
 * loops follow (client:each here, achievers.resty's through client:_page): paging.next when
 * it stays on base_url's origin, else page + 1 while page < totalPages (on a copy of the query
 * at `query`, false or a table), else none. Pushes two values: the next path or link (a
 * string), false for none, or an error object for a link to another origin; and the query to
 * send with it (a table) or false. */
static void push_next_page(lua_State *L, ach_core *core, int page, int path, int query)
{
	lua_getfield(L, page, "paging");
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 0);
		lua_pushboolean(L, 0);
		return;
	}
	lua_getfield(L, -1, "next");
	if (lua_type(L, -1) == LUA_TSTRING && !next_on_base(core, lua_tostring(L, -1))) {
		/* the server's link: an error to report, not a raise (the caller did nothing
		 * wrong); the loops hand it back as false, err */
		lua_pop(L, 1);
		lua_pushfstring(L, "paging.next points to another origin than base_url (%s): "
				   "not followed, the token is only sent to base_url",
				core->opt.base.origin);
		ach_push_error(L, ACH_KIND_INVALID, lua_tostring(L, -1));
		lua_remove(L, -2);
		lua_remove(L, -2); /* paging */
		lua_pushboolean(L, 0);
		return;
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		lua_remove(L, -2); /* paging */
		lua_pushboolean(L, 0); /* the link carries the query: do not add it again */
		return;
	}
	{
		lua_Integer n, total;
		lua_pop(L, 1);
		lua_getfield(L, -1, "page");
		lua_getfield(L, -2, "totalPages");
		/* the server's numbers: clamped before they become integers */
		n = lua_isnumber(L, -2) ? (lua_Integer)ach_clamp_i64(fmin(lua_tonumber(L, -2), 1e15)) : 0;
		total = lua_isnumber(L, -1) ? (lua_Integer)ach_clamp_i64(fmin(lua_tonumber(L, -1), 1e15)) : 0;
		lua_pop(L, 3); /* page, totalPages, paging */
		if (!(n > 0 && n < total)) {
			lua_pushboolean(L, 0);
			lua_pushboolean(L, 0);
			return;
		}
		lua_pushvalue(L, path);
		/* query.page = page + 1 on a copy of the query */
		lua_newtable(L);
		if (lua_istable(L, query)) {
			lua_pushnil(L);
			while (lua_next(L, query) != 0) {
				lua_pushvalue(L, -2);
				lua_insert(L, -2);
				lua_rawset(L, -4);
			}
		}
		lua_pushinteger(L, n + 1);
		lua_setfield(L, -2, "page");
	}
}

/* The message of a page whose answer has no items list. */
static void push_not_a_list(lua_State *L, int path)
{
	lua_pushfstring(L, "%s is not a list (its answer has no items): client:get shows it",
			lua_tostring(L, path));
	ach_push_error(L, ACH_KIND_DECODE, lua_tostring(L, -1));
	lua_remove(L, -2);
}

/* Iterator state, in the upvalues of the iterator closure:
 *   1 client, 2 the current page's items, 3 index of the next item, 4 URL of the next page
 *   (false when there is none; an error object when the server's link cannot be followed), 5 done flag, 6 the query (for page-number paging), 7 path,
 *   8 the paging object of the current page (the third value the iterator yields).
 * each_fetch fetches the page at upvalue 4 and leaves nothing on the stack: it returns 0, or 2
 * with false, err pushed. */
static int each_fetch(lua_State *L)
{
	ach_core *core = ach_client_core(L, lua_upvalueindex(1));
	lua_getfield(L, lua_upvalueindex(1), "request");
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_createtable(L, 0, 2);
	lua_pushvalue(L, lua_upvalueindex(4));
	lua_setfield(L, -2, "path");
	if (lua_toboolean(L, lua_upvalueindex(6))) {
		lua_pushvalue(L, lua_upvalueindex(6));
		lua_setfield(L, -2, "query");
	}
	/* called through lua_call, so a task cannot yield here: the page is fetched blocking */
	ACH_HOST(core)->no_yield++;
	if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
		ACH_HOST(core)->no_yield--;
		return lua_error(L);
	}
	ACH_HOST(core)->no_yield--;
	if (lua_isnil(L, -2)) {
		lua_pushboolean(L, 1);
		lua_replace(L, lua_upvalueindex(5));
		lua_pushboolean(L, 0);
		lua_replace(L, -3);
		return 2;
	}
	lua_pop(L, 1);
	/* items */
	lua_getfield(L, -1, "items");
	if (!lua_istable(L, -1)) {
		/* not a list: say so (false, err once), rather than end as if it were empty */
		lua_pop(L, 2);
		lua_pushboolean(L, 1);
		lua_replace(L, lua_upvalueindex(5));
		lua_pushboolean(L, 0);
		push_not_a_list(L, lua_upvalueindex(7));
		return 2;
	}
	lua_replace(L, lua_upvalueindex(2));
	lua_pushinteger(L, 1);
	lua_replace(L, lua_upvalueindex(3));
	lua_getfield(L, -1, "paging");
	lua_replace(L, lua_upvalueindex(8));
	/* the next page, and the query it goes with */
	push_next_page(L, core, lua_gettop(L), lua_upvalueindex(7), lua_upvalueindex(6));
	lua_replace(L, lua_upvalueindex(6));
	lua_replace(L, lua_upvalueindex(4));
	lua_pop(L, 1); /* page */
	return 0;
}

/* client:_page(page, path[, query]) -> items, next, next_query, paging | nil, err: what
 * client:each makes of a page it fetched (path: the walk's first path; query: the one this
 * page was fetched with), for loops that fetch pages themselves (achievers.resty's each). */
static int client_page(lua_State *L)
{
	ach_core *core = ach_client_core(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	luaL_checkstring(L, 3);
	lua_settop(L, 4);
	lua_getfield(L, 2, "items");
	if (!lua_istable(L, -1)) {
		lua_pushnil(L);
		push_not_a_list(L, 3);
		return 2;
	}
	push_next_page(L, core, 2, 3, 4);
	lua_getfield(L, 2, "paging");
	return 4;
}

static int each_next(lua_State *L)
{
	for (;;) {
		lua_Integer i;
		if (lua_toboolean(L, lua_upvalueindex(5)))
			return 0;
		i = (lua_Integer)lua_tonumber(L, lua_upvalueindex(3));
		if (lua_istable(L, lua_upvalueindex(2))) {
			lua_rawgeti(L, lua_upvalueindex(2), (int)i);
			if (!lua_isnil(L, -1)) {
				lua_pushinteger(L, i + 1);
				lua_replace(L, lua_upvalueindex(3));
				lua_pushnil(L);
				lua_pushvalue(L, lua_upvalueindex(8));
				return 3; /* item, nil, the paging of its page */
			}
			lua_pop(L, 1);
		}
		if (lua_istable(L, lua_upvalueindex(4))) {
			lua_pushboolean(L, 1);
			lua_replace(L, lua_upvalueindex(5));
			lua_pushboolean(L, 0);
			lua_pushvalue(L, lua_upvalueindex(4));
			return 2; /* false, err: once, then done */
		}
		if (!lua_toboolean(L, lua_upvalueindex(4))) {
			lua_pushboolean(L, 1);
			lua_replace(L, lua_upvalueindex(5));
			lua_pushnil(L);
			lua_replace(L, lua_upvalueindex(2));
			return 0;
		}
		if (each_fetch(L) == 2)
			return 2; /* false, err: once, then done */
		lua_rawgeti(L, lua_upvalueindex(2), 1);
		if (lua_isnil(L, -1)) {
			/* an empty page ends the walk, whatever the paging says */
			lua_pushboolean(L, 1);
			lua_replace(L, lua_upvalueindex(5));
			return 0;
		}
		lua_pop(L, 1);
	}
}

#if LUA_VERSION_NUM >= 504
/* The closing value: `break` out of the loop marks the iterator done and drops its page. */
static int each_close(lua_State *L)
{
	lua_getfield(L, 1, "iterator");
	if (lua_isfunction(L, -1)) {
		lua_pushboolean(L, 1);
		lua_setupvalue(L, -2, 5);
		lua_pushnil(L);
		lua_setupvalue(L, -2, 2);
	}
	return 0;
}
#endif

/* client:each(path, query) -> iterator[, nil, nil, closing value]. The iterator yields
 * item, nil, paging; on an error false, err once; then nothing. */
static int client_each(lua_State *L)
{
	luaL_checkudata(L, 1, ACH_CLIENT_MT);
	luaL_checktype(L, 2, LUA_TSTRING);
	if (!lua_isnoneornil(L, 3))
		luaL_checktype(L, 3, LUA_TTABLE);
	lua_settop(L, 3);
	lua_pushvalue(L, 1);             /* 1 client */
	lua_pushnil(L);                  /* 2 items */
	lua_pushinteger(L, 1);           /* 3 index */
	lua_pushvalue(L, 2);             /* 4 next URL: the first page */
	lua_pushboolean(L, 0);           /* 5 done */
	if (lua_isnil(L, 3))             /* 6 query */
		lua_pushboolean(L, 0);
	else
		lua_pushvalue(L, 3);
	lua_pushvalue(L, 2);             /* 7 path */
	lua_pushnil(L);                  /* 8 paging of the current page */
	lua_pushcclosure(L, each_next, 8);
#if LUA_VERSION_NUM >= 504
	lua_pushnil(L);
	lua_pushnil(L);
	lua_createtable(L, 0, 1);
	lua_pushvalue(L, -4);
	lua_setfield(L, -2, "iterator");
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, each_close);
	lua_setfield(L, -2, "__close");
	lua_setmetatable(L, -2);
	return 4;
#else
	return 1;
#endif
}

/* achievers.endpoints: the table above, for people and tools to read. */
static void push_endpoints(lua_State *L)
{
	size_t i;
	lua_createtable(L, (int)N_ENDPOINTS, 0);
	for (i = 0; i < N_ENDPOINTS; i++) {
		const endpoint *e = &endpoints[i];
		lua_createtable(L, 0, 5);
		lua_pushstring(L, e->name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, e->method);
		lua_setfield(L, -2, "method");
		lua_pushfstring(L, "%s%s", ACH_API_PREFIX, e->path);
		lua_setfield(L, -2, "path");
		lua_pushstring(L, e->scope);
		lua_setfield(L, -2, "scope");
		lua_pushstring(L, e->rate_class == ACH_CLASS_HEAVY ? "heavy" : "default");
		lua_setfield(L, -2, "rate_class");
		lua_pushstring(L, e->args == ARG_QUERY ? "query" : e->args == ARG_ID_QUERY ? "id"
							  : e->args == ARG_FORM    ? "form"
										   : "upload");
		lua_setfield(L, -2, "args");
		lua_rawseti(L, -2, (int)i + 1);
	}
}

void ach_resource_methods(lua_State *L)
{
	size_t i;
	for (i = 0; i < N_ENDPOINTS; i++) {
		lua_pushinteger(L, (lua_Integer)i);
		lua_pushcclosure(L, resource_call, 1);
		lua_setfield(L, -2, endpoints[i].name);
	}
	lua_pushcfunction(L, client_each);
	lua_setfield(L, -2, "each");
	lua_pushcfunction(L, client_page);
	lua_setfield(L, -2, "_page");
}

void ach_resource_open(lua_State *L, int module)
{
	push_endpoints(L);
	lua_setfield(L, module, "endpoints");
}
