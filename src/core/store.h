/*
 * store.h: the state store, where a client keeps what it may share with other processes: the
 * system token (with a lock so that one process at a time asks for a new one) and the rate
 * budgets the API counts per access token. DESIGN.md, "State store", is the contract.
 *
 * One interface, a table of functions with a user-data pointer, used by the engine only.
 * Every call is asynchronous by nature: it starts the operation and its answer comes through
 * the callback, exactly once, unless `forget` was called for that callback argument first. The
 * memory backend answers before the call returns; the Redis backend answers later, from the
 * driver's poll loop (its socket is watched there with libcurl's), or at once when Redis is
 * down and it answers from its local fallback.
 *
 * Backends (src/store/): memory.c (one process: the token cache stays in the slot, budgets
 * are local sliding windows), redis.c (many processes, many hosts; hiredis, non-blocking),
 * host.c (the operations are carried out by the host: OpenResty's shared dict or
 * lua-resty-redis, through the Lua driver).
 */
#ifndef ACH_CORE_STORE_H
#define ACH_CORE_STORE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/token.h"

typedef struct ach_store_reply {
	int ok;              /* 0: the store could not answer (down, timed out); message says why */
	const char *message;
	const char *value;   /* token_get: the stored token text (ach_store_token_text), or NULL */
	size_t value_len;
	int granted;         /* lock: 1 when ours; token_put: 1 when stored; take: slots granted */
	double wait;         /* take, granted == 0: seconds until a slot frees */
	double lease;        /* take: seconds the granted slots stay valid for sending */
	const char *lease_id; /* take: names the granted slots to give back unspent ones (or NULL) */
} ach_store_reply;

typedef void (*ach_store_cb)(void *arg, const ach_store_reply *r);

typedef struct ach_store_ops {
	const char *name;
	int shared; /* tokens and budgets are shared with other processes (worth asking, leasing) */
	/* the shared token for this key (client_id + base_url + scope), or none */
	void (*token_get)(void *ud, const char *key, ach_store_cb cb, void *arg);
	/* stores `value` only if the stored text is still `seen` (seen_len bytes, as token_get read
	 * them, NUL bytes and all; "" for none); ttl in seconds */
	void (*token_put)(void *ud, const char *key, const char *value, const char *seen,
			  size_t seen_len, double ttl, ach_store_cb cb, void *arg);
	/* one token request at a time across everyone; the lock lapses after ttl seconds */
	void (*lock)(void *ud, const char *key, const char *owner, double ttl, ach_store_cb cb,
		     void *arg);
	void (*unlock)(void *ud, const char *key, const char *owner, ach_store_cb cb, void *arg);
	/* reserve up to n request slots of the budget `class_key` (limit lim): granted slots are
	 * spent within `lease` seconds; none granted: `wait` says when to ask again */
	void (*take)(void *ud, const char *class_key, int n, const ach_limit *lim, ach_store_cb cb,
		     void *arg);
	/* gives back `back` unspent slots of the lease `lease_id` of `granted` slots (fire and
	 * forget): they count no more */
	void (*give)(void *ud, const char *class_key, const char *lease_id, int granted, int back);
	/* no callback for arg any more: it is going away */
	void (*forget)(void *ud, void *arg);
	/* operations in flight (the driver keeps running while there are some) */
	int (*busy)(void *ud);
	void (*free)(void *ud);
} ach_store_ops;

struct ach_store {
	const ach_store_ops *ops;
	void *ud;
	char owner[33];   /* this process's lock owner id: random hex */
	char prefix[64];  /* key prefix, "achievers" */
};

/* store.c */
/* A new store's owner id (random hex, from env) and default key prefix. */
void ach_store_init(ach_store *st, const ach_env *env);
void ach_store_close(ach_core *core);
/* Key of the shared token of the core's client_id + base_url + scope. */
int ach_store_token_key(ach_core *core, ach_buf *key);
/* Key of a rate budget: the access token's hash (never the token) and the bucket. */
int ach_store_budget_key(ach_core *core, const char *token_hash, int bucket, ach_buf *key);
/* The stored form of a system token, and back (NULL when the text is not one). */
int ach_store_token_text(const ach_token_data *t, double fresh_until, ach_buf *out);
ach_token_data *ach_store_token_parse(const char *s, size_t n, double *fresh_until);

#endif
