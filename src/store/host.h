/*
 * host.h: the host store, whose operations its host carries out (doc/design.md, "State
 * store"): OpenResty's Lua driver hands them to Lua, which runs them on a lua_shared_dict or on
 * Redis through lua-resty-redis, and hands the answers back. No I/O and no Lua here.
 */
#ifndef ACH_STORE_HOST_H
#define ACH_STORE_HOST_H

#include "core/engine.h"
#include "core/store.h"

enum {
	ACH_HOST_TOKEN_GET,
	ACH_HOST_TOKEN_PUT,
	ACH_HOST_LOCK,
	ACH_HOST_UNLOCK,
	ACH_HOST_TAKE,
	ACH_HOST_GIVE
};

/* An operation handed out: the strings belong to the store, valid until it is answered. */
typedef struct ach_host_op {
	unsigned id;
	int kind;         /* ACH_HOST_* */
	const char *name; /* "token_get", "token_put", "lock", "unlock", "take", "give" */
	const char *key, *value, *seen, *owner, *lease_id; /* those the operation has, else NULL */
	size_t seen_len; /* seen's bytes: a stored text may hold a NUL */
	double ttl;
	int n;         /* take: slots asked for */
	ach_limit lim; /* take: the budget */
	int granted, back; /* give */
} ach_host_op;

/* Makes st a host store; an operation handed out and not answered within grace seconds is
 * answered "failed". 0, or -1 out of memory. */
int ach_store_host(ach_store *st, double grace);
int ach_store_is_host(const ach_store *st);
/* Hands out the next operation nobody has taken yet (into out); 0: none. */
int ach_store_host_next(ach_store *st, double now, ach_host_op *out);
/* Operations queued that nobody has taken yet. */
int ach_store_host_pending(const ach_store *st);
/* The answer to operation id: calls its callback; -1 when nothing waits for it any more. */
int ach_store_host_reply(ach_store *st, unsigned id, const ach_store_reply *r);
/* Answers "failed" the operations handed out whose grace has passed. */
void ach_store_host_expire(ach_store *st, double now);

#endif
