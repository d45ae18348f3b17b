/*
 * encode.h: query strings, forms and path segments from Lua values (the byte-level encoders are
 * core/url.h) (binding; doc/design.md).
 */
#ifndef ACH_BINDING_ENCODE_H
#define ACH_BINDING_ENCODE_H

#include "binding/binding.h"
#include "core/buf.h"

/* Appends `key=value&...` for the table at idx (sorted keys, lists as repeated keys, booleans
 * as true/false), with no separator before the first pair. Raises naming `what` on a value
 * that cannot be encoded; b must then be owned by something __gc frees. */
void ach_encode_form(lua_State *L, int idx, ach_buf *b, const char *what);
/* Pushes a table of the decoded pairs of a query string (the last value of a repeated key). */
void ach_push_query_table(lua_State *L, const char *q, size_t n);
/* Appends the value at idx as a path segment (number without .0, string percent-encoded).
 * Raises for other types or for CR/LF. */
void ach_encode_path_value(lua_State *L, int idx, ach_buf *b, const char *what);
/* Raises when s holds CR, LF or NUL: header values and path parameters must not. */
void ach_check_header_safe(lua_State *L, const char *s, size_t n, const char *what);

#endif
