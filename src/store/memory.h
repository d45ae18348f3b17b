/*
 * memory.h: the memory store, one process's (the default; doc/design.md, "State store").
 */
#ifndef ACH_STORE_MEMORY_H
#define ACH_STORE_MEMORY_H

#include "core/store.h"

/* Makes st a memory store (its ops and state) on env's clock; 0, or -1 out of memory. */
int ach_store_memory(ach_store *st, const ach_env *env);

#endif
