/*
 * error.h: the error object of the public contract (kinds: core/kind.h) (binding; doc/design.md).
 */
#ifndef ACH_BINDING_ERROR_H
#define ACH_BINDING_ERROR_H

#include "binding/binding.h"
#include "core/kind.h"

/* Raises a Lua memory error. */
int ach_nomem(lua_State *L) __attribute__((noreturn));

/* Pushes an error object {kind, message, ...}: fields the caller sets afterwards with
 * lua_setfield on the table at the top. */
void ach_push_error(lua_State *L, ach_kind kind, const char *message);
/* Pushes nil and an error object; returns 2 for `return ach_fail(...)`. */
int ach_fail(lua_State *L, ach_kind kind, const char *message);
void ach_error_open(lua_State *L);

#endif
