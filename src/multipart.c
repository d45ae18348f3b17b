/*
 * multipart.c: multipart/form-data bodies (RFC 7578), binary-safe: part data is copied byte
 * for byte, and the boundary is chosen so that it occurs in none of the parts.
 */
#include <stdlib.h>
#include <string.h>

#include "achievers.h"

/* Raises when a name or filename could break out of its quoted header parameter. */
static const char *part_text(lua_State *L, int part, const char *field, int required)
{
	const char *s;
	lua_getfield(L, part, field);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		if (required)
			luaL_error(L, "multipart: every part needs a '%s'", field);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "multipart: '%s' must be a string", field);
	s = lua_tostring(L, -1);
	if (s[strcspn(s, "\"\r\n")] != '\0' || strlen(s) != lua_rawlen(L, -1))
		luaL_error(L, "multipart: '%s' must not contain quotes, CR, LF or NUL", field);
	lua_pop(L, 1); /* anchored by the part table */
	return s;
}

static int boundary_clear(lua_State *L, int list, int n, const char *boundary)
{
	int i;
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *d;
		lua_rawgeti(L, list, i);
		lua_getfield(L, -1, "data");
		d = lua_tolstring(L, -1, &len);
		lua_pop(L, 2);
		if (d != NULL && memmem(d, len, boundary, strlen(boundary)) != NULL)
			return 0;
	}
	return 1;
}

void ach_encode_multipart(lua_State *L, int list, ach_exchange *ex)
{
	static const char digits[] = "0123456789abcdef";
	char boundary[48];
	ach_buf *b = &ex->body;
	int n, i, tries = 0, rc = 0;
	list = lua_absindex(L, list);
	if (!lua_istable(L, list))
		luaL_error(L, "request: 'multipart' must be a list of parts");
	n = (int)lua_rawlen(L, list);
	if (n == 0)
		luaL_error(L, "request: 'multipart' must have at least one part");
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, list, i);
		if (!lua_istable(L, -1))
			luaL_error(L, "multipart: part %d must be a table {name=, data=, ...}", i);
		lua_getfield(L, -1, "data");
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "multipart: part %d needs 'data' (a string)", i);
		lua_pop(L, 2);
	}
	do {
		unsigned char raw[12];
		if (ach_random_bytes(raw, sizeof raw) != 0 || ++tries > 8)
			luaL_error(L, "multipart: could not choose a boundary");
		memcpy(boundary, "----achievers-", 14);
		for (int k = 0; k < 12; k++) {
			boundary[14 + 2 * k] = digits[raw[k] >> 4];
			boundary[15 + 2 * k] = digits[raw[k] & 15];
		}
		boundary[38] = '\0';
	} while (!boundary_clear(L, list, n, boundary));

	for (i = 1; i <= n && rc == 0; i++) {
		const char *name, *filename, *type, *data;
		size_t len;
		lua_rawgeti(L, list, i);
		name = part_text(L, lua_gettop(L), "name", 1);
		filename = part_text(L, lua_gettop(L), "filename", 0);
		type = part_text(L, lua_gettop(L), "content_type", 0);
		lua_getfield(L, -1, "data");
		data = lua_tolstring(L, -1, &len);
		rc = ach_buf_printf(b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary,
				    name);
		if (rc == 0 && filename != NULL)
			rc = ach_buf_printf(b, "; filename=\"%s\"", filename);
		if (rc == 0 && (type != NULL || filename != NULL))
			rc = ach_buf_printf(b, "\r\nContent-Type: %s",
					    type != NULL ? type : "application/octet-stream");
		if (rc == 0)
			rc = ach_buf_adds(b, "\r\n\r\n") || ach_buf_add(b, data, len) ||
			     ach_buf_adds(b, "\r\n");
		lua_pop(L, 2);
	}
	if (rc == 0)
		rc = ach_buf_printf(b, "--%s--\r\n", boundary);
	if (rc != 0)
		ach_nomem(L);
	lua_pushfstring(L, "Content-Type: multipart/form-data; boundary=%s", boundary);
	free(ex->content_type);
	ex->content_type = ach_strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	if (ex->content_type == NULL)
		ach_nomem(L);
}
