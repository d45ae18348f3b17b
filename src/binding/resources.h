/*
 * resources.h: the endpoint table, the resource helpers, client:each (binding; doc/design.md).
 */
#ifndef ACH_BINDING_RESOURCES_H
#define ACH_BINDING_RESOURCES_H

#include "binding/binding.h"

int ach_rate_class(const char *method, const char *url); /* from the endpoint table */
void ach_resource_methods(lua_State *L); /* into the client methods table at the top */
void ach_resource_open(lua_State *L, int module); /* achievers.endpoints */

#endif
