/*
 * client.h: the client object: options, the OAuth 2.0 flows, the hooks, the core's making
 * (binding; doc/design.md).
 */
#ifndef ACH_BINDING_CLIENT_H
#define ACH_BINDING_CLIENT_H

#include "binding/binding.h"
#include "core/engine.h"

void ach_client_open(lua_State *L);
int ach_client_new(lua_State *L);
ach_core *ach_client_core(lua_State *L, int idx);
ach_slot *ach_client_slot(lua_State *L, int idx);
/* Fills an API exchange from the request table at `spec` (raises on misuse). */
void ach_client_prepare(lua_State *L, int cl, int spec, ach_exchange *ex);
/* Runs the exchange to its end (blocking) and pushes its result. */
int ach_client_run(lua_State *L, int cl, ach_exchange *ex);
void ach_raise_hook_error(lua_State *L, ach_core *c);
/* The error of a blocking call on a client whose requests are moved from Lua. */
#define ACH_NO_BLOCKING \
	"achievers: this client's requests are moved from Lua (client:_exchange, as achievers.resty " \
	"does): it has no blocking calls"
void ach_check_not_in_hook(lua_State *L, ach_core *core, const char *what);

/* Keeps the error at the top of L (popped) to be raised by ach_raise_hook_error. */
void ach_hook_error_set(lua_State *L, ach_core *c);
/* client:request with the client at 1 and the request table at 2. */
int ach_client_request(lua_State *L);

#endif
