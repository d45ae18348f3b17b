/*
 * json.h: JSON: answers decoded into Lua values, bodies encoded by a private lua-cjson (binding;
 * doc/design.md).
 */
#ifndef ACH_BINDING_JSON_H
#define ACH_BINDING_JSON_H

#include "binding/binding.h"
#include "core/buf.h"

/* Loads the private lua-cjson instance into the registry (at luaopen time). */
void ach_json_init(lua_State *L);
/* Decodes n bytes into a Lua value pushed on the stack; returns 1, or 0 with a message pushed
 * instead. Integral numbers come back as Lua integers on 5.3+. */
int ach_json_decode(lua_State *L, const char *s, size_t n);
/* Encodes the value at idx; raises on values JSON cannot represent. */
void ach_json_encode(lua_State *L, int idx, ach_buf *b);
void ach_push_null(lua_State *L);
int ach_json_decode_lua(lua_State *L); /* achievers.json_decode */

#endif
