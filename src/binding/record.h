/*
 * record.h: the record option (binding; doc/design.md).
 */
#ifndef ACH_BINDING_RECORD_H
#define ACH_BINDING_RECORD_H

#include "binding/binding.h"
#include "core/engine.h"

/* The record option. Setup reads it from the options at `opts` into the user
 * value at `uv`; the trace hook hands each attempt to the recorder at the top (popped). */
void ach_record_setup(lua_State *L, int opts, int uv);
void ach_record_event(lua_State *L, ach_core *c, ach_exchange *ex, const char *phase,
		      const ach_http_response *r);

#endif
