/*
 * pkce.h: the Lua helpers of PKCE and token hashing (PKCE itself: core/pkce.h) (binding;
 * doc/design.md).
 */
#ifndef ACH_BINDING_PKCE_H
#define ACH_BINDING_PKCE_H

#include "binding/binding.h"

void ach_pkce_open(lua_State *L, int module); /* achievers._sha256_hex, achievers._random_id */

#endif
