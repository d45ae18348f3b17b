/*
 * redis.h: the Redis store, shared by processes and hosts (hiredis, non-blocking; its socket is
 * watched by the driver's poll through core->watch). doc/design.md, "State store".
 */
#ifndef ACH_STORE_REDIS_H
#define ACH_STORE_REDIS_H

#include "core/buf.h"
#include "core/engine.h"
#include "core/store.h"

typedef struct ach_redis_options {
	char *host;
	int port;
	int db;
	char *password;
	char *prefix;
	int fleet_size; /* share of the budget paced locally while Redis is down: 1/fleet_size */
	double timeout; /* seconds an answer may take before Redis counts as down */
} ach_redis_options;

/* Makes st a Redis store for this core from parsed options: connects and checks the server
 * (a clear message in err when it is not a Redis that takes us); 0 or -1. */
int ach_store_redis(ach_store *st, ach_core *core, const ach_redis_options *o, ach_buf *err);

#endif
