/*
 * lua_driver.h: the engine for drivers written in Lua (OpenResty) (binding; doc/design.md).
 */
#ifndef ACH_BINDING_LUA_DRIVER_H
#define ACH_BINDING_LUA_DRIVER_H

#include "binding/binding.h"

void ach_lua_driver_methods(lua_State *L);         /* client:_exchange, client:_set_token */
void ach_lua_driver_request_methods(lua_State *L); /* ex:_next, ex:_feed */

#endif
