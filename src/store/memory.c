/*
 * memory.c: the state store of one process, the default. The token stays in the client's
 * slot, as it always did, so the shared-token calls answer "none" and grant the lock; the
 * rate budgets are sliding windows of send times, one per budget key (token hash + bucket),
 * so a budget starts empty when the access token changes, as the server's does.
 *
 * Every call answers before it returns.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "store/memory.h"

#define WINDOW_MARGIN 0.05 /* of the window (at most 1 s): the server's clock and ours differ */

typedef struct budget {
	char *key;
	double *sent; /* ring buffer of send times (monotonic) */
	int cap, head, n;
	double last;
	struct budget *next;
} budget;

typedef struct memstore {
	budget *budgets;
	ach_env env; /* its clock: the engine's */
} memstore;

static void answer(ach_store_cb cb, void *arg, int granted)
{
	ach_store_reply r;
	memset(&r, 0, sizeof r);
	r.ok = 1;
	r.granted = granted;
	if (cb != NULL)
		cb(arg, &r);
}

static void m_token_get(void *ud, const char *key, ach_store_cb cb, void *arg)
{
	(void)ud;
	(void)key;
	answer(cb, arg, 0);
}

static void m_token_put(void *ud, const char *key, const char *value, const char *seen,
			size_t seen_len, double ttl, ach_store_cb cb, void *arg)
{
	(void)ud, (void)key, (void)value, (void)seen, (void)seen_len, (void)ttl;
	answer(cb, arg, 1);
}

static void m_lock(void *ud, const char *key, const char *owner, double ttl, ach_store_cb cb,
		   void *arg)
{
	(void)ud, (void)key, (void)owner, (void)ttl;
	answer(cb, arg, 1);
}

static void m_unlock(void *ud, const char *key, const char *owner, ach_store_cb cb, void *arg)
{
	(void)ud, (void)key, (void)owner;
	answer(cb, arg, 1);
}

static void budget_free(budget *b)
{
	free(b->key);
	free(b->sent);
	free(b);
}

/* Finds (or makes) the budget for key; drops budgets idle for longer than their window. */
static budget *find_budget(memstore *m, const char *key, const ach_limit *lim, double now)
{
	budget **p = &m->budgets, *b;
	while ((b = *p) != NULL) {
		if (strcmp(b->key, key) == 0)
			break;
		if (now - b->last > lim->window + 2.0 && now - b->last > 300) {
			*p = b->next;
			budget_free(b);
			continue;
		}
		p = &b->next;
	}
	if (b != NULL && b->cap != lim->count) {
		*p = b->next; /* the limit changed: start again */
		budget_free(b);
		b = NULL;
	}
	if (b == NULL) {
		b = calloc(1, sizeof *b);
		if (b == NULL)
			return NULL;
		b->key = ach_strdup(key);
		b->sent = calloc((size_t)lim->count, sizeof(double));
		b->cap = lim->count;
		if (b->key == NULL || b->sent == NULL) {
			budget_free(b);
			return NULL;
		}
		b->next = m->budgets;
		m->budgets = b;
	}
	return b;
}

/* Grants a slot now, or says how long until the oldest send leaves the window. */
static void m_take(void *ud, const char *key, int n, const ach_limit *lim, ach_store_cb cb,
		   void *arg)
{
	memstore *m = ud;
	double now = m->env.now(m->env.ud), window, oldest;
	ach_store_reply r;
	budget *b;
	(void)n; /* one at a time: asking costs nothing here */
	memset(&r, 0, sizeof r);
	r.ok = 1;
	r.lease = INFINITY;
	if (lim->count <= 0) {
		r.granted = 1;
		cb(arg, &r);
		return;
	}
	b = find_budget(m, key, lim, now);
	if (b == NULL) {
		r.ok = 0;
		r.message = "not enough memory";
		cb(arg, &r);
		return;
	}
	window = lim->window + fmin(1.0, lim->window * WINDOW_MARGIN);
	if (b->n >= b->cap) {
		oldest = b->sent[b->head];
		if (oldest + window > now) {
			r.wait = oldest + window - now;
			cb(arg, &r);
			return;
		}
		b->sent[b->head] = now;
		b->head = (b->head + 1) % b->cap;
	} else {
		b->sent[(b->head + b->n) % b->cap] = now;
		b->n++;
	}
	b->last = now;
	r.granted = 1;
	cb(arg, &r);
}

static void m_give(void *ud, const char *key, const char *lease_id, int granted, int back)
{
	(void)ud, (void)key, (void)lease_id, (void)granted, (void)back; /* never leases */
}

static void m_forget(void *ud, void *arg)
{
	(void)ud, (void)arg; /* nothing is ever in flight */
}

static int m_busy(void *ud)
{
	(void)ud;
	return 0;
}

static void m_free(void *ud)
{
	memstore *m = ud;
	while (m->budgets != NULL) {
		budget *b = m->budgets;
		m->budgets = b->next;
		budget_free(b);
	}
	free(m);
}

static const ach_store_ops memory_ops = {
	"memory", 0, m_token_get, m_token_put, m_lock,	 m_unlock,
	m_take,	  m_give, m_forget,    m_busy, m_free,
};

int ach_store_memory(ach_store *st, const ach_env *env)
{
	memstore *m = calloc(1, sizeof *m);
	if (m == NULL)
		return -1;
	m->env = *env;
	st->ops = &memory_ops;
	st->ud = m;
	return 0;
}
