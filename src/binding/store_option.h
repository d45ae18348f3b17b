/*
 * store_option.h: the client option `store` (binding; doc/design.md).
 */
#ifndef ACH_BINDING_STORE_OPTION_H
#define ACH_BINDING_STORE_OPTION_H

#include "binding/binding.h"
#include "core/engine.h"

/* Installs the backend the client option `store` (at idx; nil: memory) asks
 * for; raises on a bad option or on a Redis that answers but refuses us (password, database,
 * not Redis). */
void ach_store_open(lua_State *L, int idx, ach_core *core);

#endif
