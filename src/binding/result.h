/*
 * result.h: an exchange's result as Lua values (binding; doc/design.md).
 */
#ifndef ACH_BINDING_RESULT_H
#define ACH_BINDING_RESULT_H

#include "binding/binding.h"
#include "core/engine.h"

/* Pushes an exchange's result: the decoded value (or a token object), or nil and
 * an error. Returns the number of values pushed. `owner` is the stack index of the client. */
int ach_exchange_push_result(lua_State *L, ach_exchange *ex, int owner);

#endif
