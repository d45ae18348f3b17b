/*
 * binding.h: what every module of the binding (the C side of the Lua module; doc/design.md,
 * "Layers") shares: the Lua version shims, the metatable names, and the Lua side of a core
 * (ach_host). Each module has its own header besides (client.h, request.h, token.h, ...).
 * Nothing below the binding includes it.
 */
#ifndef ACH_BINDING_H
#define ACH_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "binding/compat.h"
#include "core/engine.h"

#define ACH_VERSION "0.1.0"
#define ACH_EXPORT __attribute__((visibility("default")))

#define ACH_CLIENT_MT "achievers.client"
#define ACH_TOKEN_MT "achievers.token"
#define ACH_ERROR_MT "achievers.error"
#define ACH_REQUEST_MT "achievers.request"
#define ACH_EXCHANGE_MT "achievers.exchange"

/* The Lua side of a core: the state of the Lua call now driving it, a hook's error waiting to be
 * raised, and whether tasks must block. It is the core's hooks.ud (client.c). */
typedef struct ach_host {
	ach_core *core;
	lua_State *L;   /* the state of the Lua call now driving the core */
	int hook_error; /* a hook raised; its error waits in the registry */
	int no_yield;   /* > 0 while a C function calls a blocking call: tasks block there */
} ach_host;
#define ACH_HOST(core) ((ach_host *)(core)->hooks.ud)

#endif
