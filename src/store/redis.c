/*
 * redis.c: the state store shared by many processes and hosts, on Redis through hiredis's
 * asynchronous API. Nothing here blocks after the client is made: the connection's socket is
 * watched by the curl driver's poll together with libcurl's (core->watch), commands are
 * written when the socket can take them and answers are read when they arrive, so poll(0)
 * never waits on Redis and a blocking call waits for both.
 *
 * Redis down (unreachable, stopped, restarted): an answer that does not come within
 * `timeout` drops the connection; until a new one is up (tried again every second), every
 * call is answered at once from a local fallback: no shared token (the process asks the server
 * itself), and budgets paced in this process at 1/fleet_size of the limit. on_store is told
 * when Redis goes down and when it is back.
 *
 * At client creation one blocking look (a few round trips, bounded by `timeout`) tells a
 * misconfiguration apart from an outage: a wrong password, a database Redis does not have or
 * a server that does not speak Redis raise there; an unreachable or silent Redis does not.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/env.h"
#include "core/sha256.h"
#include "store/memory.h"
#include "store/redis.h"

/* src/lua/achievers/store_scripts.lua as one C string (made by the Makefile) */
#include "store_scripts.h"

enum { SC_TAKE, SC_PUT, SC_UNLOCK, SC_GIVE, SC_COUNT };
static const char *const script_names[SC_COUNT] = {"take", "token_put", "unlock", "give"};

enum { OP_GET, OP_PUT, OP_LOCK, OP_UNLOCK, OP_TAKE, OP_SETUP, OP_SETUP_LAST };

#define RECONNECT_EVERY 1.0 /* seconds between attempts while Redis is down */

typedef struct rstore rstore;

typedef struct op {
	rstore *rs;
	int kind;
	ach_store_cb cb;
	void *arg;
	double deadline;
	/* a script's arguments, kept to send again as EVAL on NOSCRIPT */
	int script, argc, resent;
	char **argv;
	size_t *lens;
	/* take: what the local fallback needs, and the lease's id */
	ach_limit lim;
	int n;
	char *key;
	char lease_id[48];
	struct op *prev, *next;
} op;

#define NOW(rs) ((rs)->core->env.now((rs)->core->env.ud)) /* the core's clock */

struct rstore {
	ach_core *core;
	ach_redis_options o;
	redisAsyncContext *ac;
	int up;              /* connected, authenticated, scripts loaded */
	int reported;        /* state last told to on_store: 1 up, 0 down, -1 nothing yet */
	char down_msg[256];
	double setup_deadline;
	double next_connect;
	int drop;            /* drop the connection at the next tick (asked from a callback) */
	int first;           /* the first connection's handshake: commands may queue behind it */
	double driven_at;    /* when the driver last served us (monotonic) */
	op *pending;
	int npending;
	char *script[SC_COUNT];
	char sha[SC_COUNT][41];
	unsigned long seq;
	ach_store local;     /* the fallback while Redis is down */
};

/* ---- scripts -------------------------------------------------------------------------------- */

/* Finds `name = [[...]]` in the embedded Lua file. */
static char *script_text(const char *name)
{
	const char *p = store_scripts_lua, *s, *e;
	size_t n = strlen(name);
	while ((p = strstr(p, name)) != NULL) {
		if ((p == store_scripts_lua || p[-1] == ' ') && strncmp(p + n, " = [[", 5) == 0) {
			s = p + n + 5;
			if (*s == '\n')
				s++;
			e = strstr(s, "]]");
			return e != NULL ? ach_strndup(s, (size_t)(e - s)) : NULL;
		}
		p += n;
	}
	return NULL;
}

/* ---- state ---------------------------------------------------------------------------------- */

static void report(rstore *rs)
{
	int state = rs->up;
	ach_hooks *h = &rs->core->hooks;
	if (rs->reported == state || (h->ready != NULL && !h->ready(h->ud)))
		return; /* told later, when the host can run its hooks */
	if (state == 0 && rs->reported == -1 && rs->down_msg[0] == '\0')
		return;
	if (rs->reported == -1 && state == 1) {
		rs->reported = 1; /* up from the start: nothing to tell */
		return;
	}
	rs->reported = state;
	if (h->store != NULL)
		h->store(h->ud, state, state ? "Redis is back: tokens and budgets are shared again"
					     : rs->down_msg);
}

static void set_down(rstore *rs, const char *why)
{
	if (rs->up || rs->down_msg[0] == '\0' || rs->reported != 0) {
		snprintf(rs->down_msg, sizeof rs->down_msg,
			 "Redis at %s:%d is down (%s): pacing locally at 1/%d of each budget, the "
			 "token is not shared",
			 rs->o.host, rs->o.port, why, rs->o.fleet_size);
	}
	rs->up = 0;
	rs->first = 0;
}

static void watch_update(rstore *rs);

static void op_unlink(rstore *rs, op *o)
{
	if (o->prev != NULL)
		o->prev->next = o->next;
	else if (rs->pending == o)
		rs->pending = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	o->prev = o->next = NULL;
	rs->npending--;
}

static void op_link(rstore *rs, op *o)
{
	o->prev = NULL;
	o->next = rs->pending;
	if (rs->pending != NULL)
		rs->pending->prev = o;
	rs->pending = o;
	rs->npending++;
}

static void op_free(op *o)
{
	int i;
	for (i = 0; i < o->argc; i++) {
		if (o->argv[i] != NULL)
			memset(o->argv[i], 0, o->lens[i]);
		free(o->argv[i]);
	}
	free(o->argv);
	free(o->lens);
	free(o->key);
	free(o);
}

/* An operation Redis did not answer: answered from the local fallback. */
static void op_fallback(rstore *rs, op *o, const char *why)
{
	ach_store_reply r;
	memset(&r, 0, sizeof r);
	r.message = why;
	if (o->cb == NULL)
		return;
	if (o->kind == OP_TAKE) {
		ach_limit lim = o->lim;
		lim.count = lim.count / rs->o.fleet_size > 0 ? lim.count / rs->o.fleet_size : 1;
		rs->local.ops->take(rs->local.ud, o->key, o->n, &lim, o->cb, o->arg);
		return;
	}
	o->cb(o->arg, &r); /* ok = 0: the engine goes on without the store */
}

/* Drops the connection: every operation in flight is answered from the fallback. */
static void drop_connection(rstore *rs, const char *why)
{
	redisAsyncContext *ac = rs->ac;
	set_down(rs, why);
	rs->ac = NULL;
	rs->drop = 0;
	rs->next_connect = NOW(rs) + RECONNECT_EVERY;
	if (ac != NULL)
		redisAsyncFree(ac); /* calls each pending callback with no reply */
	watch_update(rs);
	report(rs);
}

/* ---- the adapter: hiredis asks, the curl driver's poll watches ------------------------------------ */

static void watch_update(rstore *rs)
{
	ach_watch *w = &rs->core->watch;
	double t = -1;
	op *o;
	for (o = rs->pending; o != NULL; o = o->next)
		if (t < 0 || o->deadline < t)
			t = o->deadline;
	if (rs->ac != NULL && !rs->up && (t < 0 || rs->setup_deadline < t))
		t = rs->setup_deadline;
	if (rs->drop)
		t = 0;
	w->timer = t;
	if (rs->ac == NULL) {
		w->fd = -1;
		w->events = 0;
	}
}

static void ev_add_read(void *p)
{
	rstore *rs = p;
	rs->core->watch.fd = rs->ac->c.fd;
	rs->core->watch.events |= POLLIN;
}

static void ev_del_read(void *p)
{
	rstore *rs = p;
	rs->core->watch.events &= (short)~POLLIN;
}

static void ev_add_write(void *p)
{
	rstore *rs = p;
	rs->core->watch.fd = rs->ac->c.fd;
	rs->core->watch.events |= POLLOUT;
}

static void ev_del_write(void *p)
{
	rstore *rs = p;
	rs->core->watch.events &= (short)~POLLOUT;
}

static void ev_cleanup(void *p)
{
	rstore *rs = p;
	rs->core->watch.fd = -1;
	rs->core->watch.events = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	rstore *rs = ac->data;
	(void)status;
	if (rs == NULL || rs->ac != ac)
		return;
	rs->ac = NULL; /* hiredis frees it after this */
	set_down(rs, ac->errstr[0] ? ac->errstr : "connection closed");
	rs->next_connect = NOW(rs) + RECONNECT_EVERY;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	rstore *rs = ac->data;
	if (status != REDIS_OK && rs != NULL && rs->ac == ac) {
		rs->ac = NULL; /* hiredis frees it after this */
		set_down(rs, ac->errstr[0] ? ac->errstr : "cannot connect");
		rs->next_connect = NOW(rs) + RECONNECT_EVERY;
	}
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Sends a command; the operation is pending until on_reply. */
static int send_op(rstore *rs, op *o, int argc, const char **argv, const size_t *lens)
{
	o->rs = rs;
	o->deadline = NOW(rs) + rs->o.timeout;
	if (redisAsyncCommandArgv(rs->ac, on_reply, o, argc, argv, lens) != REDIS_OK)
		return -1;
	op_link(rs, o);
	return 0;
}

static void connect_start(rstore *rs)
{
	redisAsyncContext *ac;
	const char *argv[4];
	size_t lens[4];
	char db[16];
	int i, k;
	rs->next_connect = NOW(rs) + RECONNECT_EVERY;
	ac = redisAsyncConnect(rs->o.host, rs->o.port);
	if (ac == NULL)
		return;
	if (ac->err) {
		set_down(rs, ac->errstr);
		redisAsyncFree(ac);
		return;
	}
	rs->ac = ac;
	ac->data = rs;
	ac->ev.data = rs;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	rs->core->watch.fd = ac->c.fd;
	rs->core->watch.events = POLLOUT; /* the connect completes when writable */
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	rs->setup_deadline = NOW(rs) + rs->o.timeout + 0.5;
	rs->driven_at = NOW(rs);
	/* AUTH, SELECT, the scripts, then PING: when PING answers, the store is up */
	for (i = 0; i < SC_COUNT + 3; i++) {
		op *o = calloc(1, sizeof *o);
		int argc = 0;
		if (o == NULL)
			break;
		o->kind = i == SC_COUNT + 2 ? OP_SETUP_LAST : OP_SETUP;
		o->script = -1;
		if (i == 0) {
			if (rs->o.password == NULL) {
				free(o);
				continue;
			}
			argv[0] = "AUTH", argv[1] = rs->o.password, argc = 2;
		} else if (i == 1) {
			snprintf(db, sizeof db, "%d", rs->o.db);
			argv[0] = "SELECT", argv[1] = db, argc = 2;
		} else if (i < SC_COUNT + 2) {
			o->script = i - 2;
			argv[0] = "SCRIPT", argv[1] = "LOAD", argv[2] = rs->script[i - 2], argc = 3;
		} else {
			argv[0] = "PING", argc = 1;
		}
		for (k = 0; k < argc; k++)
			lens[k] = strlen(argv[k]);
		if (send_op(rs, o, argc, argv, lens) != 0) {
			free(o);
			break;
		}
	}
	watch_update(rs);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	op *o = priv;
	rstore *rs = o->rs;
	redisReply *r = reply;
	ach_store_reply out;
	(void)ac;
	op_unlink(rs, o);
	memset(&out, 0, sizeof out);
	if (r == NULL) {
		op_fallback(rs, o, "Redis is down");
		goto done;
	}
	if (r->type == REDIS_REPLY_ERROR && o->script >= 0 && !o->resent && rs->ac != NULL &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0 && o->kind != OP_SETUP) {
		/* the script cache was flushed: send the text itself (EVAL caches it again) */
		o->resent = 1;
		free(o->argv[0]);
		free(o->argv[1]);
		o->argv[0] = ach_strdup("EVAL");
		o->argv[1] = ach_strdup(rs->script[o->script]);
		if (o->argv[0] != NULL && o->argv[1] != NULL) {
			o->lens[0] = 4;
			o->lens[1] = strlen(o->argv[1]);
			if (send_op(rs, o, o->argc, (const char **)o->argv, o->lens) == 0)
				goto resent;
		}
		op_fallback(rs, o, "Redis lost its scripts");
		goto done;
	}
	if (o->kind == OP_SETUP || o->kind == OP_SETUP_LAST) {
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(rs->down_msg, sizeof rs->down_msg, "Redis at %s:%d refused us: %s",
				 rs->o.host, rs->o.port, r->str);
			rs->drop = 1;
		} else if (o->script >= 0 && r->type == REDIS_REPLY_STRING && r->len == 40) {
			memcpy(rs->sha[o->script], r->str, 40);
			rs->sha[o->script][40] = '\0';
		} else if (o->kind == OP_SETUP_LAST && !rs->drop) {
			rs->up = 1;
			rs->down_msg[0] = '\0';
			report(rs);
		}
		goto done;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		op_fallback(rs, o, r->str);
		goto done;
	}
	out.ok = 1;
	switch (o->kind) {
	case OP_GET:
		if (r->type == REDIS_REPLY_STRING) {
			out.value = r->str;
			out.value_len = r->len;
		}
		break;
	case OP_LOCK:
		out.granted = r->type == REDIS_REPLY_STATUS; /* OK; nil when taken */
		break;
	case OP_TAKE:
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[0]->type == REDIS_REPLY_INTEGER &&
		    r->element[1]->type == REDIS_REPLY_INTEGER) {
			out.granted = (int)r->element[0]->integer;
			out.wait = (double)r->element[1]->integer / 1e6;
			out.lease = fmin(1.0, fmax(0.05, 0.02 * o->lim.window));
			out.lease_id = o->lease_id;
		} else {
			op_fallback(rs, o, "unexpected answer to take");
			goto done;
		}
		break;
	default:
		out.granted = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
		break;
	}
	if (o->cb != NULL)
		o->cb(o->arg, &out);
done:
	op_free(o);
resent:
	watch_update(rs);
}

/* Time when nobody drove the connection (the program slept, or did not poll) is not time
 * Redis took to answer: the deadlines move on by that much. While the driver runs, it serves
 * the socket or the timer at least every `timeout`. */
static void catch_up(rstore *rs, double now)
{
	double gap = now - rs->driven_at;
	op *o;
	rs->driven_at = now;
	if (gap <= rs->o.timeout + 0.25)
		return;
	for (o = rs->pending; o != NULL; o = o->next)
		o->deadline += gap;
	rs->setup_deadline += gap;
	watch_update(rs);
}

/* The driver's poll found the socket ready (or the timer due). */
static void on_ready(void *ud, short revents)
{
	rstore *rs = ud;
	double now;
	catch_up(rs, NOW(rs));
	if (rs->ac != NULL && (revents & (POLLIN | POLLHUP | POLLERR)))
		redisAsyncHandleRead(rs->ac);
	if (rs->ac != NULL && (revents & POLLOUT))
		redisAsyncHandleWrite(rs->ac);
	now = NOW(rs);
	if (rs->drop)
		drop_connection(rs, rs->down_msg[0] ? rs->down_msg : "refused");
	else if (rs->ac != NULL && !rs->up && now >= rs->setup_deadline)
		drop_connection(rs, "no answer to the handshake");
	else if (rs->pending != NULL) {
		op *o;
		for (o = rs->pending; o != NULL; o = o->next)
			if (now >= o->deadline) {
				char why[64];
				snprintf(why, sizeof why, "no answer within %g s", rs->o.timeout);
				drop_connection(rs, why);
				break;
			}
	}
	if (rs->ac == NULL)
		watch_update(rs);
	report(rs);
}

static int r_busy(void *ud)
{
	return ((rstore *)ud)->npending > 0;
}

/* Whether commands can go to Redis now; starts a connection when one is due. */
static int usable(rstore *rs)
{
	catch_up(rs, NOW(rs));
	if (rs->ac == NULL && NOW(rs) >= rs->next_connect)
		connect_start(rs);
	report(rs);
	/* while the first handshake runs (Redis answered the look at start), commands queue
	 * behind it on the connection; after an outage, the fallback answers until Redis does */
	return rs->ac != NULL && (rs->up || rs->first);
}

static op *op_new(rstore *rs, int kind, ach_store_cb cb, void *arg)
{
	op *o = calloc(1, sizeof *o);
	if (o == NULL)
		return NULL;
	o->rs = rs;
	o->kind = kind;
	o->cb = cb;
	o->arg = arg;
	o->script = -1;
	return o;
}

/* Sends a plain command or a script (EVALSHA sha 1 key args...). The arguments are C strings,
 * or (lens_in given) bytes of those lengths. */
static void run(rstore *rs, op *o, ach_store_cb cb, void *arg, int script, int argc,
		const char **argv, const size_t *lens_in)
{
	int i;
	if (o == NULL) {
		ach_store_reply r;
		memset(&r, 0, sizeof r);
		r.message = "not enough memory";
		if (cb != NULL)
			cb(arg, &r);
		return;
	}
	if (!usable(rs)) {
		op_fallback(rs, o, "Redis is down");
		op_free(o);
		return;
	}
	o->script = script;
	o->argc = argc;
	o->argv = calloc((size_t)argc, sizeof *o->argv);
	o->lens = calloc((size_t)argc, sizeof *o->lens);
	if (o->argv == NULL || o->lens == NULL)
		goto fail;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		size_t n;
		if (script >= 0 && rs->sha[script][0] == '\0' && i < 2)
			a = i == 0 ? "EVAL" : rs->script[script]; /* not loaded yet: send the text */
		n = lens_in != NULL && a == argv[i] ? lens_in[i] : strlen(a);
		if ((o->argv[i] = ach_strndup(a, n)) == NULL)
			goto fail;
		o->lens[i] = n;
	}
	if (send_op(rs, o, argc, (const char **)o->argv, o->lens) != 0)
		goto fail;
	watch_update(rs);
	return;
fail:
	op_fallback(rs, o, "not enough memory");
	op_free(o);
}

static void r_token_get(void *ud, const char *key, ach_store_cb cb, void *arg)
{
	rstore *rs = ud;
	const char *argv[] = {"GET", key};
	run(rs, op_new(rs, OP_GET, cb, arg), cb, arg, -1, 2, argv, NULL);
}

static void r_token_put(void *ud, const char *key, const char *value, const char *seen,
			size_t seen_len, double ttl, ach_store_cb cb, void *arg)
{
	rstore *rs = ud;
	char ms[32];
	const char *argv[] = {"EVALSHA", rs->sha[SC_PUT], "1", key, value, seen, ms};
	size_t lens[7];
	snprintf(ms, sizeof ms, "%.0f", fmax(1000, ttl * 1000));
	lens[0] = 7, lens[1] = strlen(argv[1]), lens[2] = 1, lens[3] = strlen(key);
	lens[4] = strlen(value), lens[5] = seen_len, lens[6] = strlen(ms);
	/* seen is the stored text as it was read, bytes and all: a text with a NUL (not a token)
	 * must still compare equal, or it could never be replaced */
	run(rs, op_new(rs, OP_PUT, cb, arg), cb, arg, SC_PUT, 7, argv, lens);
}

static void r_lock(void *ud, const char *key, const char *owner, double ttl, ach_store_cb cb,
		   void *arg)
{
	rstore *rs = ud;
	char ms[32];
	ach_buf lk = {0};
	const char *argv[] = {"SET", NULL, owner, "NX", "PX", ms};
	snprintf(ms, sizeof ms, "%.0f", fmax(100, ttl * 1000));
	if (ach_buf_printf(&lk, "%s:lock", key) != 0) {
		ach_store_reply r;
		memset(&r, 0, sizeof r);
		if (cb != NULL)
			cb(arg, &r);
		return;
	}
	argv[1] = lk.data;
	run(rs, op_new(rs, OP_LOCK, cb, arg), cb, arg, -1, 6, argv, NULL);
	ach_buf_free(&lk);
}

static void r_unlock(void *ud, const char *key, const char *owner, ach_store_cb cb, void *arg)
{
	rstore *rs = ud;
	ach_buf lk = {0};
	const char *argv[] = {"EVALSHA", rs->sha[SC_UNLOCK], "1", NULL, owner};
	if (ach_buf_printf(&lk, "%s:lock", key) != 0)
		return;
	argv[3] = lk.data;
	run(rs, op_new(rs, OP_UNLOCK, cb, arg), cb, arg, SC_UNLOCK, 5, argv, NULL);
	ach_buf_free(&lk);
}

static void r_take(void *ud, const char *key, int n, const ach_limit *lim, ach_store_cb cb,
		   void *arg)
{
	rstore *rs = ud;
	char sn[16], slim[16], swin[32], slease[32], id[64];
	ach_buf ck = {0};
	double margin = fmin(0.5, 0.01 * lim->window + 0.02);
	double lease = fmin(1.0, fmax(0.05, 0.02 * lim->window));
	const char *argv[] = {"EVALSHA", rs->sha[SC_TAKE], "2", key, NULL, sn, slim, swin, slease, id};
	op *o = op_new(rs, OP_TAKE, cb, arg);
	snprintf(sn, sizeof sn, "%d", n);
	snprintf(slim, sizeof slim, "%d", lim->count);
	snprintf(swin, sizeof swin, "%.0f", (lim->window + margin) * 1e6);
	snprintf(slease, sizeof slease, "%.0f", lease * 1e6);
	snprintf(id, sizeof id, "%.12s%lu", rs->core->store->owner, ++rs->seq);
	if (o != NULL) {
		strcpy(o->lease_id, id);
		o->lim = *lim;
		o->n = n;
		o->key = ach_strdup(key);
		if (o->key == NULL) {
			free(o);
			o = NULL;
		}
	}
	if (o != NULL && ach_buf_printf(&ck, "%s:n", key) != 0) {
		op_free(o);
		o = NULL;
	}
	if (o == NULL) {
		ach_limit l = *lim;
		l.count = l.count / rs->o.fleet_size > 0 ? l.count / rs->o.fleet_size : 1;
		rs->local.ops->take(rs->local.ud, key, n, &l, cb, arg);
		return;
	}
	argv[4] = ck.data;
	run(rs, o, cb, arg, SC_TAKE, 10, argv, NULL);
	ach_buf_free(&ck);
}

static void r_give(void *ud, const char *key, const char *lease_id, int granted, int back)
{
	rstore *rs = ud;
	char sg[16], sb[16];
	ach_buf ck = {0};
	const char *argv[] = {"EVALSHA", rs->sha[SC_GIVE], "2", key, NULL, lease_id, sg, sb};
	if (rs->ac == NULL || !rs->up || ach_buf_printf(&ck, "%s:n", key) != 0) {
		ach_buf_free(&ck);
		return; /* Redis down: the slots lapse with their lease */
	}
	snprintf(sg, sizeof sg, "%d", granted);
	snprintf(sb, sizeof sb, "%d", back);
	argv[4] = ck.data;
	run(rs, op_new(rs, OP_UNLOCK, NULL, NULL), NULL, NULL, SC_GIVE, 8, argv, NULL);
	ach_buf_free(&ck);
}

static void r_forget(void *ud, void *arg)
{
	rstore *rs = ud;
	op *o;
	for (o = rs->pending; o != NULL; o = o->next)
		if (o->arg == arg)
			o->cb = NULL;
}

static void r_free(void *ud)
{
	rstore *rs = ud;
	int i;
	op *o;
	for (o = rs->pending; o != NULL; o = o->next)
		o->cb = NULL;
	if (rs->ac != NULL) {
		redisAsyncContext *ac = rs->ac;
		int done = 0;
		/* what is queued (slots given back, a lock let go) is written before we go: a
		 * non-blocking write of a few bytes, no answer awaited */
		if (rs->up)
			redisBufferWrite(&ac->c, &done);
		rs->ac = NULL;
		redisAsyncFree(ac);
	}
	rs->core->watch.fd = -1;
	rs->core->watch.timer = -1;
	rs->core->watch.busy = NULL;
	rs->core->watch.on_ready = NULL;
	rs->local.ops->free(rs->local.ud);
	for (i = 0; i < SC_COUNT; i++)
		free(rs->script[i]);
	free(rs->o.host);
	ach_free_secret(rs->o.password);
	free(rs->o.prefix);
	free(rs);
}

static const ach_store_ops redis_ops = {
	"redis", 1, r_token_get, r_token_put, r_lock,  r_unlock,
	r_take,	 r_give, r_forget,    r_busy, r_free,
};

/* ---- the look at start ------------------------------------------------------------------------ */

/* Returns 1 when Redis answered as it should, 0 when it did not answer (down: not an error),
 * -1 with err set when it answered wrong. */
static int check_at_start(rstore *rs, ach_buf *err)
{
	struct timeval tv;
	redisContext *c;
	redisReply *r;
	int rc = 1, i;
	tv.tv_sec = (long)rs->o.timeout;
	tv.tv_usec = (long)((rs->o.timeout - (double)tv.tv_sec) * 1e6);
	c = redisConnectWithTimeout(rs->o.host, rs->o.port, tv);
	if (c == NULL)
		return 0;
	if (c->err) {
		set_down(rs, c->errstr);
		redisFree(c);
		return 0;
	}
	redisSetTimeout(c, tv);
	for (i = 0; i < 3 && rc == 1; i++) {
		const char *what = i == 0 ? "the password" : i == 1 ? "the database" : "PING";
		if (i == 0 && rs->o.password == NULL)
			continue;
		if (i == 0)
			r = redisCommand(c, "AUTH %s", rs->o.password);
		else if (i == 1)
			r = redisCommand(c, "SELECT %d", rs->o.db);
		else
			r = redisCommand(c, "PING");
		if (r == NULL) {
			if (c->err == REDIS_ERR_PROTOCOL || c->err == REDIS_ERR_EOF) {
				ach_buf_printf(err, "the server at %s:%d does not speak Redis (%s)",
					       rs->o.host, rs->o.port, c->errstr);
				rc = -1;
			} else {
				set_down(rs, c->errstr[0] ? c->errstr : "no answer");
				rc = 0;
			}
		} else if (r->type == REDIS_REPLY_ERROR) {
			if (strncmp(r->str, "NOAUTH", 6) == 0)
				ach_buf_printf(err, "Redis at %s:%d wants a password (store.password, or "
						    "redis://:password@host): %s",
					       rs->o.host, rs->o.port, r->str);
			else
				ach_buf_printf(err, "Redis at %s:%d refused %s: %s", rs->o.host,
					       rs->o.port, what, r->str);
			rc = -1;
		} else if (i == 2 && !(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0)) {
			ach_buf_printf(err, "the server at %s:%d does not answer PING as Redis does",
				       rs->o.host, rs->o.port);
			rc = -1;
		}
		if (r != NULL)
			freeReplyObject(r);
	}
	redisFree(c);
	return rc;
}

int ach_store_redis(ach_store *st, ach_core *core, const ach_redis_options *o, ach_buf *err)
{
	rstore *rs = calloc(1, sizeof *rs);
	int i, rc;
	if (rs == NULL)
		return -1;
	rs->core = core;
	rs->reported = -1;
	rs->o = *o;
	rs->o.host = ach_strdup(o->host);
	rs->o.password = o->password != NULL ? ach_strdup(o->password) : NULL;
	rs->o.prefix = NULL;
	for (i = 0; i < SC_COUNT; i++)
		rs->script[i] = script_text(script_names[i]);
	for (i = 0; i < SC_COUNT; i++)
		if (rs->script[i] == NULL)
			goto fail;
	if (rs->o.host == NULL || (o->password != NULL && rs->o.password == NULL) ||
	    ach_store_memory(&rs->local, &core->env) != 0)
		goto fail;
	rc = check_at_start(rs, err);
	if (rc < 0)
		goto fail;
	st->ops = &redis_ops;
	st->ud = rs;
	core->watch.fd = -1;
	core->watch.timer = -1;
	core->watch.busy = r_busy;
	core->watch.on_ready = on_ready;
	core->watch.ud = rs;
	if (rc == 1) {
		rs->first = 1;
		connect_start(rs);
	}
	else
		rs->next_connect = NOW(rs) + RECONNECT_EVERY;
	return 0;
fail:
	if (rs->local.ops != NULL)
		rs->local.ops->free(rs->local.ud);
	for (i = 0; i < SC_COUNT; i++)
		free(rs->script[i]);
	free(rs->o.host);
	ach_free_secret(rs->o.password);
	free(rs);
	return -1;
}
