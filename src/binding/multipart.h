/*
 * multipart.h: multipart/form-data bodies (binding; doc/design.md).
 */
#ifndef ACH_BINDING_MULTIPART_H
#define ACH_BINDING_MULTIPART_H

#include "binding/binding.h"
#include "core/engine.h"

/* The multipart/form-data body of the parts list at idx. */
void ach_encode_multipart(lua_State *L, int idx, ach_exchange *ex);

#endif
