/*
 * multipart.c: multipart/form-data bodies (RFC 7578), binary-safe: part data is copied byte
 * for byte, and the boundary is chosen so that it occurs in none of the parts.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "binding/multipart.h"
#include "core/buf.h"
#include "core/env.h"

/* The fields of a part, in the order they are kept in the copy ach_encode_multipart makes. */
enum { PART_NAME, PART_FILENAME, PART_TYPE, PART_DATA, PART_FIELDS };

/* Reads field `field` of the part at `part` once (its metatable may serve it, and run any
 * code while it does) and stores it at `slot` of the copy at `copy`: nothing is read from the
 * caller's table again, so what was checked is what is sent, and every string stays alive in
 * the copy. Raises when a name, filename or type could break out of its header. */
static void copy_field(lua_State *L, int part, int i, const char *field, int required, int copy,
		       int slot)
{
	size_t n;
	const char *s;
	lua_getfield(L, part, field);
	if (lua_isnil(L, -1)) {
		if (required)
			luaL_error(L, "multipart: part %d needs '%s'%s", i, field,
				   slot == PART_DATA ? " (a string)" : "");
	} else if (lua_type(L, -1) != LUA_TSTRING) {
		luaL_error(L, slot == PART_DATA ? "multipart: part %d needs '%s' (a string)"
						: "multipart: part %d: '%s' must be a string", i, field);
	} else if (slot != PART_DATA) {
		s = lua_tolstring(L, -1, &n);
		if (s[strcspn(s, "\"\r\n")] != '\0' || strlen(s) != n)
			luaL_error(L, "multipart: '%s' must not contain quotes, CR, LF or NUL", field);
	}
	lua_rawseti(L, copy, (i - 1) * PART_FIELDS + slot + 1);
}

/* Pushes field `slot` of part i from the copy (nil when the part has none). */
static const char *copied(lua_State *L, int copy, int i, int slot, size_t *len)
{
	lua_rawgeti(L, copy, (i - 1) * PART_FIELDS + slot + 1);
	return lua_tolstring(L, -1, len);
}

static int boundary_clear(lua_State *L, int copy, int n, const char *boundary)
{
	int i;
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *d = copied(L, copy, i, PART_DATA, &len);
		int clear = memmem(d, len, boundary, strlen(boundary)) == NULL;
		lua_pop(L, 1);
		if (!clear)
			return 0;
	}
	return 1;
}

/* The parts list is read by its own contents (lua_rawlen, lua_rawgeti: no __len, no
 * __index); each part's fields through its metatable, once (see copy_field). */
void ach_encode_multipart(lua_State *L, int list, ach_exchange *ex)
{
	static const char digits[] = "0123456789abcdef";
	char boundary[48];
	ach_buf *b = &ex->body;
	int n, i, tries = 0, rc = 0, copy;
	list = lua_absindex(L, list);
	if (!lua_istable(L, list))
		luaL_error(L, "request: 'multipart' must be a list of parts");
	if (lua_rawlen(L, list) == 0)
		luaL_error(L, "request: 'multipart' must have at least one part");
	if (lua_rawlen(L, list) > (size_t)(INT_MAX - PART_FIELDS) / PART_FIELDS)
		luaL_error(L, "request: 'multipart' has too many parts");
	n = (int)lua_rawlen(L, list);
	/* room for a few parts only: a border (rawlen) can be far past the parts there are */
	lua_createtable(L, (n < 16 ? n : 16) * PART_FIELDS, 0);
	copy = lua_gettop(L);
	for (i = 1; i <= n; i++) {
		int part;
		lua_rawgeti(L, list, i);
		part = lua_gettop(L);
		if (!lua_istable(L, part))
			luaL_error(L, "multipart: part %d must be a table {name=, data=, ...}", i);
		copy_field(L, part, i, "name", 1, copy, PART_NAME);
		copy_field(L, part, i, "filename", 0, copy, PART_FILENAME);
		copy_field(L, part, i, "content_type", 0, copy, PART_TYPE);
		copy_field(L, part, i, "data", 1, copy, PART_DATA);
		lua_pop(L, 1);
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
	} while (!boundary_clear(L, copy, n, boundary));

	for (i = 1; i <= n && rc == 0; i++) {
		const char *name, *filename, *type, *data;
		size_t len;
		/* all four stay on the stack (in the copy, too) while they are written */
		name = copied(L, copy, i, PART_NAME, NULL);
		filename = copied(L, copy, i, PART_FILENAME, NULL);
		type = copied(L, copy, i, PART_TYPE, NULL);
		data = copied(L, copy, i, PART_DATA, &len);
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
		lua_pop(L, 4);
	}
	lua_pop(L, 1); /* the copy */
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
