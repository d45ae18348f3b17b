/*
 * request.h: pending requests: async, poll, batch (binding; doc/design.md).
 */
#ifndef ACH_BINDING_REQUEST_H
#define ACH_BINDING_REQUEST_H

#include "binding/binding.h"
#include "core/engine.h"

void ach_request_open(lua_State *L);
/* Pushes a new request object holding an exchange of this type for the client at cl. */
ach_exchange *ach_request_push(lua_State *L, int cl, ach_ex_type type);
/* Whether poll reports the request at idx: on anchors it in the pending table and puts it on
 * the core's done list once finished; off undoes both. */
void ach_request_watch(lua_State *L, int req, int on);
/* The exchange of the request object at idx; raises if it is not a live request. */
ach_exchange *ach_request_exchange(lua_State *L, int idx);
/* Adds async, poll and batch to the client methods table at the top of the stack. */
void ach_request_methods(lua_State *L);

#endif
