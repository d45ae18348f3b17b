/*
 * host.c: a state store whose operations are carried out by the host, for drivers whose I/O
 * lives in Lua (OpenResty: a lua_shared_dict, or Redis through lua-resty-redis on cosockets).
 * It does no I/O itself: each call queues an operation with its callback; the Lua driver
 * hands queued operations out (ex:_next() -> "store", op), whoever drives the core carries
 * them out, and hands the answer back (ex:_store_reply(id, reply)), which calls the callback.
 *
 * Any caller driving the core may carry out any operation (the core is shared by every request
 * of a worker). An operation handed out and never answered (the caller died) is answered
 * "failed" once its grace has passed, so that nothing waits on it for ever.
 */
#include <stdlib.h>
#include <string.h>

#include "store/host.h"

typedef struct host_op {
	unsigned id;
	int kind;
	char *key, *value, *seen, *lease_id;
	size_t seen_len; /* seen's bytes (a stored text may hold a NUL) */
	const char *owner; /* the store's, lives as long as it */
	double ttl;
	int n, granted, back;
	ach_limit lim;
	ach_store_cb cb;
	void *arg;
	int handed;
	double deadline; /* handed out: answered "failed" after this (monotonic) */
	struct host_op *next;
} host_op;

typedef struct hoststore {
	host_op *head, *tail;
	int count;
	unsigned next_id;
	double grace; /* seconds a handed-out operation may take */
} hoststore;

static const char *const kind_names[] = {"token_get", "token_put", "lock", "unlock", "take",
					 "give"};
enum {
	K_GET = ACH_HOST_TOKEN_GET,
	K_PUT = ACH_HOST_TOKEN_PUT,
	K_LOCK = ACH_HOST_LOCK,
	K_UNLOCK = ACH_HOST_UNLOCK,
	K_TAKE = ACH_HOST_TAKE,
	K_GIVE = ACH_HOST_GIVE
};

static void op_free(host_op *o)
{
	free(o->key);
	if (o->value != NULL)
		ach_free_secret(o->value); /* a token's text */
	if (o->seen != NULL) {
		memset(o->seen, 0, o->seen_len);
		ach_free_secret(o->seen);
	}
	free(o->lease_id);
	free(o);
}

static void failed(host_op *o, const char *message)
{
	ach_store_reply r;
	memset(&r, 0, sizeof r);
	r.message = message;
	if (o->cb != NULL)
		o->cb(o->arg, &r);
}

/* Queues an operation; without memory it is answered "failed" at once. */
static host_op *queue(hoststore *h, int kind, const char *key, ach_store_cb cb, void *arg)
{
	host_op *o = calloc(1, sizeof *o);
	if (o == NULL || (o->key = ach_strdup(key)) == NULL) {
		free(o);
		if (cb != NULL) {
			host_op tmp;
			memset(&tmp, 0, sizeof tmp);
			tmp.cb = cb;
			tmp.arg = arg;
			failed(&tmp, "not enough memory");
		}
		return NULL;
	}
	o->kind = kind;
	o->cb = cb;
	o->arg = arg;
	o->id = ++h->next_id;
	if (o->id == 0)
		o->id = ++h->next_id;
	if (h->tail != NULL)
		h->tail->next = o;
	else
		h->head = o;
	h->tail = o;
	h->count++;
	return o;
}

static void unlink_op(hoststore *h, host_op *o)
{
	host_op **p, *prev = NULL;
	for (p = &h->head; *p != NULL; prev = *p, p = &(*p)->next)
		if (*p == o) {
			*p = o->next;
			if (h->tail == o)
				h->tail = prev;
			o->next = NULL;
			h->count--;
			return;
		}
}

/* A string field of a queued operation failed to copy: the operation is answered now. */
static void copy_failed(hoststore *h, host_op *o)
{
	unlink_op(h, o);
	failed(o, "not enough memory");
	op_free(o);
}

static void h_token_get(void *ud, const char *key, ach_store_cb cb, void *arg)
{
	queue(ud, K_GET, key, cb, arg);
}

static void h_token_put(void *ud, const char *key, const char *value, const char *seen,
			size_t seen_len, double ttl, ach_store_cb cb, void *arg)
{
	host_op *o = queue(ud, K_PUT, key, cb, arg);
	if (o == NULL)
		return;
	o->ttl = ttl;
	o->seen_len = seen_len;
	if ((o->value = ach_strdup(value)) == NULL || (o->seen = ach_strndup(seen, seen_len)) == NULL)
		copy_failed(ud, o);
}

static void h_lock(void *ud, const char *key, const char *owner, double ttl, ach_store_cb cb,
		   void *arg)
{
	host_op *o = queue(ud, K_LOCK, key, cb, arg);
	if (o == NULL)
		return;
	o->ttl = ttl;
	o->owner = owner;
}

static void h_unlock(void *ud, const char *key, const char *owner, ach_store_cb cb, void *arg)
{
	host_op *o = queue(ud, K_UNLOCK, key, cb, arg);
	if (o != NULL)
		o->owner = owner;
}

static void h_take(void *ud, const char *key, int n, const ach_limit *lim, ach_store_cb cb,
		   void *arg)
{
	host_op *o = queue(ud, K_TAKE, key, cb, arg);
	if (o == NULL)
		return;
	o->n = n;
	o->lim = *lim;
}

static void h_give(void *ud, const char *key, const char *lease_id, int granted, int back)
{
	host_op *o = queue(ud, K_GIVE, key, NULL, NULL);
	if (o == NULL)
		return;
	o->granted = granted;
	o->back = back;
	if ((o->lease_id = ach_strdup(lease_id)) == NULL)
		copy_failed(ud, o);
}

/* No callback for arg any more. A question nobody has taken yet is dropped; one handed out is
 * answered into the void (a lock taken meanwhile lapses by itself). */
static void h_forget(void *ud, void *arg)
{
	hoststore *h = ud;
	host_op *o = h->head, *next;
	for (; o != NULL; o = next) {
		next = o->next;
		if (o->arg != arg || arg == NULL)
			continue;
		o->cb = NULL;
		if (!o->handed && (o->kind == K_GET || o->kind == K_LOCK || o->kind == K_TAKE)) {
			unlink_op(h, o);
			op_free(o);
		}
	}
}

static int h_busy(void *ud)
{
	return ((hoststore *)ud)->count;
}

static void h_free(void *ud)
{
	hoststore *h = ud;
	while (h->head != NULL) {
		host_op *o = h->head;
		h->head = o->next;
		op_free(o); /* the core goes: nobody is left to answer */
	}
	free(h);
}

static const ach_store_ops host_ops = {
	"host", 1, h_token_get, h_token_put, h_lock, h_unlock, h_take, h_give, h_forget, h_busy, h_free,
};

int ach_store_host(ach_store *st, double grace)
{
	hoststore *h = calloc(1, sizeof *h);
	if (h == NULL)
		return -1;
	h->grace = grace;
	st->ops = &host_ops;
	st->ud = h;
	return 0;
}

int ach_store_is_host(const ach_store *st)
{
	return st != NULL && st->ops == &host_ops;
}

/* ---- the driver's side ----------------------------------------------------------------------- */

void ach_store_host_expire(ach_store *st, double now)
{
	hoststore *h;
	host_op *o, *next;
	if (!ach_store_is_host(st))
		return;
	h = st->ud;
	for (o = h->head; o != NULL; o = next) {
		next = o->next;
		if (o->handed && now > o->deadline) {
			unlink_op(h, o);
			failed(o, "the store operation was never answered");
			op_free(o);
			next = h->head; /* the callback may have queued or dropped others */
		}
	}
}

int ach_store_host_next(ach_store *st, double now, ach_host_op *out)
{
	hoststore *h;
	host_op *o;
	if (!ach_store_is_host(st))
		return 0;
	h = st->ud;
	for (o = h->head; o != NULL && o->handed; o = o->next)
		;
	if (o == NULL)
		return 0;
	o->handed = 1;
	o->deadline = now + h->grace;
	memset(out, 0, sizeof *out);
	out->id = o->id;
	out->kind = o->kind;
	out->name = kind_names[o->kind];
	out->key = o->key;
	out->value = o->value;
	out->seen = o->seen;
	out->seen_len = o->seen_len;
	out->owner = o->owner;
	out->lease_id = o->lease_id;
	out->ttl = o->ttl;
	out->n = o->n;
	out->lim = o->lim;
	out->granted = o->granted;
	out->back = o->back;
	return 1;
}

int ach_store_host_pending(const ach_store *st)
{
	const host_op *o;
	int n = 0;
	if (!ach_store_is_host(st))
		return 0;
	for (o = ((const hoststore *)st->ud)->head; o != NULL; o = o->next)
		n += !o->handed;
	return n;
}

int ach_store_host_reply(ach_store *st, unsigned id, const ach_store_reply *r)
{
	hoststore *h;
	host_op *o;
	if (!ach_store_is_host(st))
		return -1;
	h = st->ud;
	for (o = h->head; o != NULL && o->id != id; o = o->next)
		;
	if (o == NULL || !o->handed)
		return -1; /* answered already (or after its grace): nothing waits for it now */
	unlink_op(h, o);
	if (o->cb != NULL)
		o->cb(o->arg, r);
	op_free(o);
	return 0;
}
