/*
 * token.h: the token object of the public contract (its data: core/token.h) (binding;
 * doc/design.md).
 */
#ifndef ACH_BINDING_TOKEN_H
#define ACH_BINDING_TOKEN_H

#include "binding/binding.h"
#include "core/token.h"

/* Pushes a token object for t; `owner` (stack index or 0) is the client that can refresh it. */
void ach_push_token(lua_State *L, ach_token_data *t, int owner);
ach_token_data *ach_check_token(lua_State *L, int idx);
ach_token_data *ach_test_token(lua_State *L, int idx);
/* Token data from a saved table (as token:to_table() gives); raises on a bad table. */
ach_token_data *ach_token_from_table(lua_State *L, int idx);
void ach_token_open(lua_State *L);
int ach_token_new(lua_State *L); /* achievers.token(t) */

#endif
