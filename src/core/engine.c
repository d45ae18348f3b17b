/*
 * engine.c: exchanges, the policy of one logical call, with no I/O (doc/design.md, "Layers":
 * the core; its driver, hooks, clocks and store come in as tables of functions).
 *
 * An exchange hands its driver the next HTTP request to send (a shared token request first
 * when the slot holds no usable token, a retry after a wait), takes the answer back, and
 * ends with a result or an error. Everything a call decides lives here, once: when a token
 * needs refreshing (and that the same token handed back ends the matter), what to retry and
 * after how long, how to pace requests under the per-token rate limits, what a 401 means.
 *
 * States: START -> (BLOCKED on the slot's token request) -> (SLEEP for the governor) ->
 * SENDING -> START again for a retry after SLEEP, or DONE.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/engine.h"
#include "core/http.h"
#include "core/sha256.h"
#include "core/store.h"

enum { ST_START, ST_BLOCKED, ST_SLEEP, ST_SENDING, ST_DONE, ST_STORE };

#define RETRY_BASE 0.25   /* first backoff, seconds; doubles each attempt */

/* ---- core and slots ---------------------------------------------------------------------- */

#define NOW(c) ((c)->env.now((c)->env.ud))
#define WALL(c) ((c)->env.wall((c)->env.ud))

/* The host's hooks (core->hooks), each optional. */
static void hook_token(ach_core *c, ach_exchange *ex, ach_slot *s)
{
	if (c->hooks.token != NULL)
		c->hooks.token(c->hooks.ud, ex, s);
}

static void hook_trace(ach_core *c, ach_exchange *ex, const char *phase,
		       const ach_http_response *r)
{
	if (c->hooks.trace != NULL)
		c->hooks.trace(c->hooks.ud, ex, phase, r);
}

static void hook_retry(ach_core *c, ach_exchange *ex, double delay)
{
	if (c->hooks.retry != NULL)
		c->hooks.retry(c->hooks.ud, ex, delay);
}

static void hook_rate_limit(ach_core *c, ach_exchange *ex, double wait, int server)
{
	if (c->hooks.rate_limit != NULL)
		c->hooks.rate_limit(c->hooks.ud, ex, wait, server);
}

ach_core *ach_core_new(const ach_env *env)
{
	ach_core *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->refs = 1;
	c->env = *env;
	c->watch.fd = -1;
	c->watch.timer = -1;
	c->budget_end = INFINITY;
	return c;
}

void ach_core_set_store(ach_core *c, ach_store *st)
{
	ach_store_close(c);
	c->store = st;
}

static void options_free(ach_options *o)
{
	ach_url_free(&o->base);
	free(o->client_id);
	ach_free_secret(o->client_secret);
	free(o->scope_comma);
	free(o->scope_space);
	free(o->redirect_uri);
	free(o->ca_file);
	free(o->proxy);
	free(o->user_agent);
	memset(o, 0, sizeof *o);
}

#define SPARE_MAX_CAP (1024 * 1024) /* a buffer larger than this is not kept */

void ach_core_take_buffer(ach_core *c, ach_buf *b)
{
	if (b->data != NULL || c->nspare == 0)
		return;
	*b = c->spare[--c->nspare];
	ach_buf_reset(b);
}

void ach_core_give_buffer(ach_core *c, ach_buf *b)
{
	int limit = (int)(sizeof c->spare / sizeof c->spare[0]);
	if (b->data != NULL && b->cap <= SPARE_MAX_CAP && c->nspare < limit &&
	    c->nspare < 2 * c->opt.max_concurrency) {
		c->spare[c->nspare++] = *b;
		memset(b, 0, sizeof *b);
		return;
	}
	ach_buf_free(b);
}

void ach_core_unref(ach_core *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	while (c->nspare > 0)
		ach_buf_free(&c->spare[--c->nspare]);
	ach_store_close(c);
	if (c->drv.free != NULL)
		c->drv.free(c->drv.ud);
	if (c->hooks.release != NULL)
		c->hooks.release(c->hooks.ud);
	options_free(&c->opt);
	free(c);
}

ach_slot *ach_slot_new(ach_core *c)
{
	int i;
	ach_slot *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->refs = 1;
	s->core = c;
	c->refs++;
	for (i = 0; i < ACH_BUCKET_COUNT; i++) {
		s->lease[i].slot = s;
		s->lease[i].bucket = i;
		s->lease[i].ask = 1;
	}
	return s;
}

static void lease_give_back(ach_lease *l);

/* The server counts per access token: a new token starts with fresh budgets (its own keys). */
static void governor_reset(ach_slot *s)
{
	int i;
	for (i = 0; i < ACH_BUCKET_COUNT; i++) {
		lease_give_back(&s->lease[i]);
		s->lease[i].next = 0;
		s->lease[i].ask = 1;
	}
	s->tok_hash[0] = '\0';
	if (s->tok != NULL) {
		char hex[65];
		ach_sha256_hex(s->tok->access_token, strlen(s->tok->access_token), hex);
		memcpy(s->tok_hash, hex, sizeof s->tok_hash - 1);
		s->tok_hash[sizeof s->tok_hash - 1] = '\0';
	}
}

void ach_slot_set_token(ach_slot *s, ach_token_data *t)
{
	int changed;
	if (s->tok == t)
		return;
	changed = s->tok == NULL || t == NULL || strcmp(s->tok->access_token, t->access_token) != 0;
	ach_token_unref(s->tok);
	s->tok = ach_token_ref(t);
	if (changed)
		governor_reset(s);
	s->refresh_after = 0;
}

static void exchange_destroy(ach_exchange *ex);
static void lease_give_back(ach_lease *l);

void ach_slot_unref(ach_slot *s)
{
	int i;
	if (s == NULL || --s->refs > 0)
		return;
	if (s->fetching != NULL) {
		ach_exchange *t = s->fetching;
		s->fetching = NULL;
		exchange_destroy(t); /* cancels its transfer; the core is still alive here */
	}
	ach_token_unref(s->tok);
	for (i = 0; i < ACH_BUCKET_COUNT; i++) {
		s->core->store->ops->forget(s->core->store->ud, &s->lease[i]);
		lease_give_back(&s->lease[i]);
	}
	ach_core_unref(s->core);
	free(s);
}

/* ---- exchanges ----------------------------------------------------------------------------- */

void ach_exchange_init(ach_exchange *ex, ach_core *core, ach_slot *slot, ach_ex_type type)
{
	memset(ex, 0, sizeof *ex);
	ex->type = type;
	ex->core = core;
	core->refs++;
	ex->slot = slot;
	if (slot != NULL)
		slot->refs++;
	ex->timeout = core->opt.timeout;
	ex->started = NOW(core);
	ex->deadline_at = core->opt.deadline > 0 ? ex->started + core->opt.deadline : 0;
}

static void unlink_runnable(ach_exchange *ex)
{
	ach_exchange **p;
	if (!ex->in_runnable)
		return;
	for (p = &ex->core->runnable; *p != NULL; p = &(*p)->next_runnable)
		if (*p == ex) {
			*p = ex->next_runnable;
			break;
		}
	ex->in_runnable = 0;
	ex->next_runnable = NULL;
}

static void unlink_waiter(ach_exchange *ex)
{
	ach_exchange **p;
	if (ex->slot == NULL)
		return;
	for (p = &ex->slot->waiters; *p != NULL; p = &(*p)->next_waiter)
		if (*p == ex) {
			*p = ex->next_waiter;
			break;
		}
	ex->next_waiter = NULL;
}

void ach_exchange_schedule(ach_exchange *ex)
{
	if (ex->in_runnable || ex->state == ST_DONE)
		return;
	ex->next_runnable = ex->core->runnable;
	ex->core->runnable = ex;
	ex->in_runnable = 1;
}

static void link_done(ach_exchange *ex)
{
	ach_core *c = ex->core;
	if (ex->in_done)
		return;
	ex->done_next = NULL;
	ex->done_prev = c->done_tail;
	if (c->done_tail != NULL)
		c->done_tail->done_next = ex;
	else
		c->done_head = ex;
	c->done_tail = ex;
	ex->in_done = 1;
	c->done_count++;
}

static void unlink_done(ach_exchange *ex)
{
	ach_core *c = ex->core;
	if (!ex->in_done)
		return;
	if (ex->done_prev != NULL)
		ex->done_prev->done_next = ex->done_next;
	else
		c->done_head = ex->done_next;
	if (ex->done_next != NULL)
		ex->done_next->done_prev = ex->done_prev;
	else
		c->done_tail = ex->done_prev;
	ex->done_prev = ex->done_next = NULL;
	ex->in_done = 0;
	c->done_count--;
}

void ach_exchange_watch(ach_exchange *ex, int on)
{
	ex->watched = on;
	if (!on)
		unlink_done(ex);
	else if (ex->state == ST_DONE)
		link_done(ex);
}

static void lease_unlink(ach_lease *l, ach_exchange *ex);
static void token_unlock(ach_exchange *t);

void ach_exchange_cancel(ach_exchange *ex)
{
	if (ex->core == NULL)
		return;
	if (ex->transfer != NULL)
		if (ex->core->drv.cancel != NULL)
			ex->core->drv.cancel(ex->core->drv.ud, ex);
	unlink_runnable(ex);
	unlink_waiter(ex);
	if (ex->slot != NULL) {
		int i;
		for (i = 0; i < ACH_BUCKET_COUNT; i++)
			lease_unlink(&ex->slot->lease[i], ex);
	}
	if (ex->store_wait) {
		ex->core->store->ops->forget(ex->core->store->ud, ex);
		ex->store_wait = 0;
	}
	if (ex->locked)
		token_unlock(ex);
	if (ex->slot != NULL && ex->slot->fetching == ex)
		ex->slot->fetching = NULL;
}

/* Frees a buffer that may hold a secret (a token request's credentials, a token answer). */
static void wipe_buf(ach_buf *b)
{
	if (b->data != NULL)
		memset(b->data, 0, b->cap);
	ach_buf_free(b);
}

void ach_exchange_release(ach_exchange *ex)
{
	int i;
	if (ex->core == NULL)
		return;
	ach_exchange_cancel(ex);
	unlink_done(ex);
	if (ex->type != ACH_EX_API || ex->token_failed) {
		wipe_buf(&ex->body);
		wipe_buf(&ex->resp_body);
	}
	ach_core_give_buffer(ex->core, &ex->resp_body);
	free(ex->method);
	free(ex->url);
	ach_buf_free(&ex->body);
	free(ex->content_type);
	if (ex->extra_headers != NULL) {
		for (i = 0; ex->extra_headers[i] != NULL; i++)
			free(ex->extra_headers[i]);
		free(ex->extra_headers);
	}
	free(ex->headers);
	ach_free_secret(ex->code);
	ach_free_secret(ex->code_verifier);
	free(ex->grant_scope);
	if (ex->seen != NULL)
		memset(ex->seen, 0, ex->seen_len); /* NUL bytes and all */
	ach_free_secret(ex->seen);
	if (ex->auth_header.data != NULL)
		memset(ex->auth_header.data, 0, ex->auth_header.len);
	ach_buf_free(&ex->auth_header);
	ach_buf_free(&ex->resp_headers);
	ach_buf_free(&ex->resp_body);
	ach_buf_free(&ex->message);
	ach_buf_free(&ex->error_url);
	ach_buf_free(&ex->scratch);
	free(ex->error_method);
	ach_token_unref(ex->token);
	ach_token_unref(ex->used_token);
	if (!ex->owned_by_slot) {
		ach_slot_unref(ex->slot);
		ach_core_unref(ex->core);
	}
	memset(ex, 0, sizeof *ex);
}

void ach_exchange_trim(ach_exchange *ex)
{
	int i;
	if (ex->type != ACH_EX_API || ex->token_failed) {
		wipe_buf(&ex->body);
		wipe_buf(&ex->resp_body);
	}
	ach_buf_free(&ex->body);
	ach_core_give_buffer(ex->core, &ex->resp_body);
	ach_buf_free(&ex->resp_headers);
	ach_buf_free(&ex->scratch);
	if (ex->auth_header.data != NULL)
		memset(ex->auth_header.data, 0, ex->auth_header.len);
	ach_buf_free(&ex->auth_header);
	free(ex->headers);
	ex->headers = NULL;
	if (ex->extra_headers != NULL) {
		for (i = 0; ex->extra_headers[i] != NULL; i++)
			free(ex->extra_headers[i]);
		free(ex->extra_headers);
		ex->extra_headers = NULL;
	}
}

static void exchange_destroy(ach_exchange *ex)
{
	ach_exchange_release(ex);
	free(ex);
}

int ach_exchange_done(const ach_exchange *ex)
{
	return ex->state == ST_DONE;
}

static void finish(ach_exchange *ex)
{
	ex->state = ST_DONE;
	unlink_runnable(ex);
	ex->core->finished++;
	if (ex->watched)
		link_done(ex);
}

static void fail(ach_exchange *ex, ach_kind kind, const char *message)
{
	ex->failure = kind;
	ach_buf_reset(&ex->message);
	if (message != NULL)
		ach_buf_adds(&ex->message, message);
	finish(ex);
}

/* ---- deadline and cancel --------------------------------------------------------------------- */

/* Sets the failure of a call whose deadline passed (or would pass before its next attempt):
 * kind timeout, a message that says so and after how many attempts, then the last failure. */
static void set_deadline_failure(ach_exchange *ex, const char *why)
{
	ach_buf m = {0};
	double secs = ex->deadline_at - ex->started;
	ach_buf_printf(&m, "the call's deadline (%.3g s) %s after %d attempt%s", secs, why,
		       ex->attempt, ex->attempt == 1 ? "" : "s");
	if (ex->message.len > 0)
		ach_buf_printf(&m, " (last: %s)", ex->message.data);
	else if (ex->status > 0)
		ach_buf_printf(&m, " (last: HTTP %ld)", ex->status);
	ex->failure = ACH_KIND_TIMEOUT;
	ex->deadline_hit = 1;
	ach_buf_reset(&ex->message);
	if (m.data != NULL)
		ach_buf_add(&ex->message, m.data, m.len);
	ach_buf_free(&m);
}

static int past_deadline(const ach_exchange *ex, double now)
{
	return ex->deadline_at > 0 && now >= ex->deadline_at;
}

/* An exchange waiting for a rate lease (ST_STORE) leaves the lease's waiters; the take goes on
 * for the others. */
static void leave_store_wait(ach_exchange *ex)
{
	int i;
	if (ex->slot != NULL)
		for (i = 0; i < ACH_BUCKET_COUNT; i++)
			lease_unlink(&ex->slot->lease[i], ex);
	if (ex->store_wait)
		ex->core->store->ops->forget(ex->core->store->ud, ex);
	ex->store_wait = 0;
}

int ach_exchange_stop(ach_exchange *ex, ach_kind kind, const char *message)
{
	if (ex->core == NULL || ex->state == ST_DONE || ex->owned_by_slot)
		return 0;
	if (ex->transfer != NULL)
		if (ex->core->drv.cancel != NULL)
			ex->core->drv.cancel(ex->core->drv.ud, ex); /* mid-transfer: libcurl closes that connection */
	if (ex->state == ST_BLOCKED)
		unlink_waiter(ex); /* the token request goes on for the other waiters */
	if (ex->state == ST_STORE)
		leave_store_wait(ex);
	ex->status = 0;
	ex->retry_after = -1;
	ach_buf_reset(&ex->resp_body);
	ach_buf_reset(&ex->resp_headers);
	fail(ex, kind, message);
	return 1;
}

/* ---- token requests ------------------------------------------------------------------------- */

static const char *grant_name(ach_grant g)
{
	switch (g) {
	case ACH_GRANT_AUTHORIZATION_CODE:
		return "authorization_code";
	case ACH_GRANT_REFRESH_TOKEN:
		return "refresh_token";
	default:
		return "client_credentials";
	}
}

/* A token request for the slot's grant, shared by every exchange that waits on the slot. */
static ach_exchange *start_token_fetch(ach_slot *s)
{
	ach_exchange *t = malloc(sizeof *t);
	if (t == NULL)
		return NULL;
	ach_exchange_init(t, s->core, s, ACH_EX_TOKEN);
	t->owned_by_slot = 1;
	/* the slot owns it, so it must not keep the slot (or the core) alive: a client dropped
	 * while its token request is in flight frees both, and this exchange with them */
	s->refs--;
	s->core->refs--;
	if (s->user && s->tok != NULL && s->tok->refresh_token != NULL) {
		t->grant = ACH_GRANT_REFRESH_TOKEN;
		t->code = ach_strdup(s->tok->refresh_token);
		t->grant_scope = ach_strdup(s->tok->scope);
		if (t->code == NULL || t->grant_scope == NULL) {
			exchange_destroy(t);
			return NULL;
		}
	} else {
		t->grant = ACH_GRANT_CLIENT_CREDENTIALS;
	}
	s->fetching = t;
	ach_exchange_schedule(t);
	return t;
}

static int add_basic_auth(ach_exchange *ex)
{
	const ach_options *o = &ex->core->opt;
	ach_buf raw = {0};
	int rc;
	rc = ach_url_escape(&raw, o->client_id, strlen(o->client_id)) || ach_buf_addc(&raw, ':') ||
	     ach_url_escape(&raw, o->client_secret, strlen(o->client_secret)) ||
	     ach_buf_adds(&ex->auth_header, "Authorization: Basic ") ||
	     ach_base64(&ex->auth_header, (const unsigned char *)raw.data, raw.len);
	if (raw.data != NULL)
		memset(raw.data, 0, raw.len);
	ach_buf_free(&raw);
	return rc ? -1 : 0;
}

static int form_field(ach_buf *b, const char *k, const char *v)
{
	return (b->len > 0 && ach_buf_addc(b, '&')) || ach_buf_adds(b, k) || ach_buf_addc(b, '=') ||
	       ach_url_escape(b, v, strlen(v));
}

static int json_field(ach_buf *b, const char *k, const char *v)
{
	return ach_buf_adds(b, b->len > 1 ? "," : "") || ach_json_string(b, k) ||
	       ach_buf_addc(b, ':') || ach_json_string(b, v);
}

/* Builds the token request per section 0 of achievers-api.md: a JSON body with the
 * credentials plus Basic by default; form bodies for standard OAuth servers. */
static int build_token_request(ach_exchange *ex)
{
	const ach_options *o = &ex->core->opt;
	const char *grant = grant_name(ex->grant);
	int json = o->token_auth == ACH_AUTH_JSON, rc = 0;
	const char *scope = ex->grant_scope != NULL ? ex->grant_scope
			    : json			? o->scope_comma
							: o->scope_space;
	ach_buf *b = &ex->body;
	free(ex->method);
	free(ex->url);
	ex->method = ach_strdup("POST");
	ex->url = NULL;
	{
		ach_buf u = {0};
		if (ach_buf_adds(&u, o->base.origin) || ach_buf_adds(&u, o->base.path) ||
		    ach_buf_adds(&u, "/oauth/v2/openIDConnectClient/token")) {
			ach_buf_free(&u);
			return -1;
		}
		ex->url = ach_buf_take(&u);
	}
	ach_buf_reset(b);
	ach_buf_reset(&ex->auth_header);
	free(ex->content_type);
	ex->content_type = ach_strdup(json ? "Content-Type: application/json"
				       : "Content-Type: application/x-www-form-urlencoded");
	if (ex->method == NULL || ex->url == NULL || ex->content_type == NULL)
		return -1;
	if (json) {
		rc = ach_buf_addc(b, '{') || json_field(b, "grant_type", grant);
		if (ex->grant != ACH_GRANT_AUTHORIZATION_CODE && scope != NULL && scope[0] != '\0')
			rc = rc || json_field(b, "scope", scope);
		if (ex->grant == ACH_GRANT_AUTHORIZATION_CODE)
			rc = rc || json_field(b, "code", ex->code);
		if (ex->grant == ACH_GRANT_AUTHORIZATION_CODE && ex->code_verifier != NULL)
			rc = rc || json_field(b, "code_verifier", ex->code_verifier); /* PKCE */
		if (ex->grant == ACH_GRANT_REFRESH_TOKEN)
			rc = rc || json_field(b, "refresh_token", ex->code);
		rc = rc || json_field(b, "client_id", o->client_id) ||
		     json_field(b, "client_secret", o->client_secret) || ach_buf_addc(b, '}');
	} else {
		rc = form_field(b, "grant_type", grant);
		if (ex->grant != ACH_GRANT_AUTHORIZATION_CODE && scope != NULL && scope[0] != '\0')
			rc = rc || form_field(b, "scope", scope);
		if (ex->grant == ACH_GRANT_AUTHORIZATION_CODE) {
			rc = rc || form_field(b, "code", ex->code);
			if (ex->code_verifier != NULL)
				rc = rc || form_field(b, "code_verifier", ex->code_verifier); /* PKCE */
			if (o->redirect_uri != NULL)
				rc = rc || form_field(b, "redirect_uri", o->redirect_uri);
		}
		if (ex->grant == ACH_GRANT_REFRESH_TOKEN)
			rc = rc || form_field(b, "refresh_token", ex->code);
		if (o->token_auth == ACH_AUTH_POST)
			rc = rc || form_field(b, "client_id", o->client_id) ||
			     form_field(b, "client_secret", o->client_secret);
	}
	if (rc == 0 && o->token_auth != ACH_AUTH_POST)
		rc = add_basic_auth(ex);
	return rc ? -1 : 0;
}

/* ---- rate governor: slots taken from the state store ------------------------------------------ */

static int bucket_of(const ach_exchange *ex)
{
	if (ex->rate_class != ACH_CLASS_HEAVY)
		return ACH_BUCKET_DEFAULT;
	return ex->url != NULL && strstr(ex->url, "/newsfeed-events") != NULL ? ACH_BUCKET_NEWSFEED
									       : ACH_BUCKET_RECOGNITIONS;
}

static void lease_unlink(ach_lease *l, ach_exchange *ex)
{
	ach_exchange **p;
	for (p = &l->waiters; *p != NULL; p = &(*p)->next_waiter)
		if (*p == ex) {
			*p = ex->next_waiter;
			ex->next_waiter = NULL;
			return;
		}
}

/* Gives the store back the slots of the lease not spent: they count no more for anybody. */
static void lease_give_back(ach_lease *l)
{
	ach_core *c = l->slot->core;
	ach_buf key = {0};
	if (l->n > 0 && l->id[0] != '\0' &&
	    ach_store_budget_key(c, l->take_hash, l->bucket, &key) == 0)
		c->store->ops->give(c->store->ud, key.data, l->id, l->granted, l->n);
	ach_buf_free(&key);
	l->n = 0;
	l->id[0] = '\0';
}

/* The store answered a take: keep the lease (or when to ask again), wake the waiters. */
static void take_done(void *arg, const ach_store_reply *r)
{
	ach_lease *l = arg;
	ach_slot *s = l->slot;
	double now = NOW(s->core);
	ach_exchange *w = l->waiters;
	l->taking = 0;
	if (strcmp(l->take_hash, s->tok_hash) == 0) {
		if (!r->ok) {
			l->n = 1; /* the store failed outright: a call is not held back for that */
			l->until = now + 1;
		} else if (r->granted > 0) {
			l->n = l->granted = r->granted;
			l->id[0] = '\0';
			if (r->lease_id != NULL && strlen(r->lease_id) < sizeof l->id)
				strcpy(l->id, r->lease_id);
			l->until = l->take_sent + r->lease;
		} else {
			l->next = now + r->wait;
		}
	}
	l->waiters = NULL;
	while (w != NULL) {
		ach_exchange *next = w->next_waiter;
		w->next_waiter = NULL;
		if (w->state == ST_STORE) {
			w->state = ST_START;
			w->store_wait = 0;
			ach_exchange_schedule(w);
		}
		w = next;
	}
}

/* Whether the exchange may send now (0), sleeps (1: state and wake set) or waits for the
 * store (2). */
static int rate_admit(ach_exchange *ex, double now)
{
	ach_slot *s = ex->slot;
	ach_core *c = s->core;
	const ach_limit *lim = &c->opt.limits[ex->rate_class];
	ach_lease *l = &s->lease[bucket_of(ex)];
	ach_buf key = {0};
	int shrink = 0;
	if (!c->opt.rate_limit || lim->count <= 0)
		return 0;
	for (;;) {
		if (l->n > 0 && now <= l->until) {
			l->n--;
			return 0;
		}
		if (l->n > 0) { /* slots left unspent: give them back, ask for fewer next time */
			lease_give_back(l);
			shrink = 1;
		}
		if (now < l->next) {
			if (ex->deadline_at > 0 && l->next >= ex->deadline_at) {
				set_deadline_failure(ex, "would pass while rate-limit pacing held it");
				return 3;
			}
			ex->state = ST_SLEEP;
			ex->wake_at = l->next;
			hook_rate_limit(c, ex, l->next - now, 0);
			return 1;
		}
		ex->state = ST_STORE;
		ex->store_wait = 1;
		ex->next_waiter = l->waiters;
		l->waiters = ex;
		if (l->taking)
			return 2;
		if (ach_store_budget_key(c, s->tok_hash, l->bucket, &key) != 0) {
			lease_unlink(l, ex);
			ex->state = ST_START;
			return 0; /* out of memory: let it through, the server still counts */
		}
		if (c->store->ops->shared) {
			/* a lease spent in time: a busy caller gets more slots per round trip;
			 * one that lapsed unspent: fewer */
			int cap = lim->count / 8 < 1 ? 1 : lim->count / 8;
			if (shrink)
				l->ask = l->ask > 1 ? l->ask / 2 : 1;
			else if (l->ask < cap && l->take_sent > 0)
				l->ask = l->ask * 2 > cap ? cap : l->ask * 2;
		}
		l->taking = 1;
		l->take_sent = now;
		memcpy(l->take_hash, s->tok_hash, sizeof l->take_hash);
		c->store->ops->take(c->store->ud, key.data, c->store->ops->shared ? l->ask : 1, lim,
				    take_done, l);
		ach_buf_free(&key);
		if (ex->state == ST_STORE)
			return 2;
		now = NOW(c); /* answered at once: look again */
	}
}

/* ---- shared token requests: the store first ------------------------------------------------- */

enum { SYNC_NONE, SYNC_GET, SYNC_LOCK, SYNC_GET2, SYNC_FETCH };

#define LOCK_RETRY 0.1 /* seconds between looks at the store while another process fetches */

static int token_shared(const ach_exchange *t)
{
	return t->owned_by_slot && t->grant == ACH_GRANT_CLIENT_CREDENTIALS && !t->slot->user &&
	       t->core->store->ops->shared;
}

static void token_fetch_done(ach_exchange *t, double now);

static void token_unlock(ach_exchange *t)
{
	ach_store *st = t->core->store;
	ach_buf key = {0};
	if (t->locked && ach_store_token_key(t->core, &key) == 0)
		st->ops->unlock(st->ud, key.data, st->owner, NULL, NULL);
	t->locked = 0;
	ach_buf_free(&key);
}

static void store_answered(ach_exchange *t)
{
	t->store_wait = 0;
	if (t->state == ST_STORE)
		t->state = ST_START;
	if (t->from_store && !t->in_step) {
		token_fetch_done(t, NOW(t->core)); /* destroys t */
		return;
	}
	ach_exchange_schedule(t);
}

static void token_got(void *arg, const ach_store_reply *r)
{
	ach_exchange *t = arg;
	ach_slot *s = t->slot;
	ach_token_data *tok = NULL;
	double fresh = 0;
	if (!r->ok) {
		t->sync = SYNC_FETCH; /* the store is down: ask the server ourselves */
		store_answered(t);
		return;
	}
	if (r->value != NULL)
		tok = ach_store_token_parse(r->value, r->value_len, &fresh);
	if (tok != NULL) {
		double rem = ach_token_remaining_at(tok, WALL(t->core));
		int bad = 0;
		if (s->bad_hash[0] != '\0') {
			char hex[65];
			ach_sha256_hex(tok->access_token, strlen(tok->access_token), hex);
			bad = strncmp(hex, s->bad_hash, sizeof s->bad_hash - 1) == 0;
		}
		if (!bad && (rem > t->core->opt.refresh_window || (rem > 0 && fresh > WALL(t->core)))) {
			t->token = tok;
			t->from_store = 1;
			t->fresh_until = fresh;
			token_unlock(t);
			store_answered(t);
			return;
		}
		ach_token_unref(tok);
	}
	if (t->sync == SYNC_GET) {
		t->sync = SYNC_LOCK;
	} else {
		free(t->seen);
		t->seen = ach_strndup(r->value != NULL ? r->value : "", r->value != NULL ? r->value_len : 0);
		t->seen_len = t->seen != NULL && r->value != NULL ? r->value_len : 0;
		t->sync = SYNC_FETCH;
	}
	store_answered(t);
}

static void lock_done(void *arg, const ach_store_reply *r)
{
	ach_exchange *t = arg;
	if (!r->ok) {
		t->sync = SYNC_FETCH;
	} else if (r->granted) {
		t->locked = 1;
		t->sync = SYNC_GET2;
	} else {
		/* another process is asking the server: look again in a moment */
		t->sync = SYNC_GET;
		t->store_wait = 0;
		t->state = ST_SLEEP;
		t->wake_at = NOW(t->core) + LOCK_RETRY;
		ach_exchange_schedule(t);
		return;
	}
	store_answered(t);
}

/* Steps a shared token request through the store; returns 1 when it should now ask the
 * server, 0 when it waits (state set), -1 on failure (failed). */
static int token_sync_step(ach_exchange *t)
{
	ach_store *st = t->core->store;
	ach_buf key = {0};
	if (t->sync == SYNC_NONE)
		t->sync = SYNC_GET;
	while (t->sync != SYNC_FETCH) {
		if (ach_store_token_key(t->core, &key) != 0) {
			ach_buf_free(&key);
			return -1;
		}
		t->state = ST_STORE;
		t->store_wait = 1;
		t->in_step = 1;
		if (t->sync == SYNC_LOCK)
			st->ops->lock(st->ud, key.data, st->owner,
				      t->core->opt.timeout + t->core->opt.connect_timeout + 1, lock_done, t);
		else
			st->ops->token_get(st->ud, key.data, token_got, t);
		t->in_step = 0;
		ach_buf_free(&key);
		if (t->state == ST_STORE) {
			unlink_runnable(t);
			return 0; /* the answer comes later */
		}
		if (t->state == ST_SLEEP || t->from_store)
			return 0;
	}
	return 1;
}

/* After the server answered a shared token request: store the token, let the lock go. */
static void token_sync_end(ach_exchange *t, double now)
{
	ach_store *st = t->core->store;
	ach_buf key = {0}, text = {0};
	(void)now;
	if (t->sync == SYNC_NONE || t->from_store)
		return;
	if (ach_store_token_key(t->core, &key) == 0) {
		if (t->token != NULL && t->failure == ACH_KIND_NONE) {
			double rem = ach_token_remaining_at(t->token, WALL(t->core)), fresh = 0;
			if (rem <= t->core->opt.refresh_window)
				fresh = WALL(t->core) + fmin(300.0, fmax(rem / 2, 1.0));
			if (rem > 1 && ach_store_token_text(t->token, fresh, &text) == 0)
				st->ops->token_put(st->ud, key.data, text.data,
						   t->seen != NULL ? t->seen : "", t->seen_len, rem,
						   NULL, NULL);
		}
	}
	token_unlock(t);
	if (text.data != NULL)
		memset(text.data, 0, text.len);
	ach_buf_free(&text);
	ach_buf_free(&key);
}

/* ---- stepping -------------------------------------------------------------------------------- */

static int token_usable(ach_slot *s, double now, int *refresh)
{
	const ach_token_data *t = s->tok;
	double rem;
	*refresh = 0;
	if (t == NULL) {
		*refresh = 1;
		return 0;
	}
	rem = ach_token_remaining_at(t, WALL(s->core));
	if (rem > s->core->opt.refresh_window)
		return 1;
	if (s->user && t->refresh_token == NULL) {
		if (rem > 0)
			return 1; /* nothing to refresh with: use it to the end */
		*refresh = 1; /* and then only a new authorization helps (ach_exchange_step) */
		return 0;
	}
	if (now < s->refresh_after)
		return 1; /* a token request ended a moment ago: use what it gave */
	*refresh = 1;
	return 0;
}

static int build_api_request(ach_exchange *ex)
{
	ach_buf_reset(&ex->auth_header);
	if (!ex->needs_auth)
		return 0;
	ach_token_unref(ex->used_token);
	ex->used_token = ach_token_ref(ex->slot->tok);
	return ach_buf_adds(&ex->auth_header, "Authorization: Bearer ") ||
			       ach_buf_adds(&ex->auth_header, ex->slot->tok->access_token)
		       ? -1
		       : 0;
}

ach_step ach_exchange_step(ach_exchange *ex, double now)
{
	ach_slot *s = ex->slot;
	int refresh;
	for (;;) {
		switch (ex->state) {
		case ST_DONE:
			return ACH_STEP_DONE;
		case ST_BLOCKED:
			/* stays runnable only when it has a deadline, to be woken at it */
			if (past_deadline(ex, now)) {
				unlink_waiter(ex);
				set_deadline_failure(ex, "passed while it waited for a token");
				finish(ex);
				return ACH_STEP_DONE;
			}
			return ex->deadline_at > 0 ? ACH_STEP_WAIT : ACH_STEP_BLOCKED;
		case ST_STORE:
			/* like ST_BLOCKED: runnable only when it has a deadline, to be woken at it */
			if (!ex->owned_by_slot && past_deadline(ex, now)) {
				leave_store_wait(ex);
				set_deadline_failure(ex, "passed while it waited for the rate budget");
				finish(ex);
				return ACH_STEP_DONE;
			}
			return ex->deadline_at > 0 && !ex->owned_by_slot ? ACH_STEP_WAIT : ACH_STEP_BLOCKED;
		case ST_SENDING:
			return ACH_STEP_BLOCKED;
		case ST_SLEEP:
			if (now < ex->wake_at)
				return ACH_STEP_WAIT;
			ex->state = ST_START;
			continue;
		case ST_START:
			break;
		}
		if (past_deadline(ex, now) && !ex->owned_by_slot) {
			set_deadline_failure(ex, "passed");
			finish(ex);
			return ACH_STEP_DONE;
		}
		if (ex->type == ACH_EX_TOKEN) {
			if (token_shared(ex) && ex->sync != SYNC_FETCH) {
				int go = token_sync_step(ex);
				if (go < 0) {
					fail(ex, ACH_KIND_NETWORK, "not enough memory");
					return ACH_STEP_DONE;
				}
				if (ex->from_store) {
					token_fetch_done(ex, now); /* destroys ex */
					return ACH_STEP_BLOCKED;
				}
				if (go == 0)
					return ex->state == ST_SLEEP ? ACH_STEP_WAIT : ACH_STEP_BLOCKED;
			}
			if (build_token_request(ex) != 0) {
				fail(ex, ACH_KIND_NETWORK, "not enough memory");
				return ACH_STEP_DONE;
			}
			ex->attempt++;
			ex->state = ST_SENDING;
			return ACH_STEP_SEND;
		}
		if (ex->needs_auth || ex->type == ACH_EX_ENSURE) {
			int have = token_usable(s, now, &refresh);
			if (ex->fresh_token && s->tok != NULL) {
				have = 1; /* the token request it waited for just ended */
				ex->fresh_token = 0;
			}
			if (ex->force_refresh && s->fetching == NULL && !ex->forced) {
				have = 0;
				refresh = 1;
			}
			if (!have) {
				/* a person's slot is renewed by its refresh token or not at all: never
				 * by a client_credentials token, which would make their call the
				 * program's */
				if (s->fetching == NULL && s->user &&
				    (s->tok == NULL || s->tok->refresh_token == NULL)) {
					fail(ex, ACH_KIND_REAUTHORIZE,
					     s->tok == NULL ? "no user token: run the authorization flow"
							    : "the user token expired and there is no "
							      "refresh token: run the authorization flow again");
					return ACH_STEP_DONE;
				}
				if (s->fetching == NULL) {
					if (s->core->opt.client_id == NULL ||
					    s->core->opt.client_secret == NULL) {
						fail(ex, ACH_KIND_AUTH,
						     "no usable token and no client_id/client_secret to get one");
						return ACH_STEP_DONE;
					}
					if (start_token_fetch(s) == NULL) {
						fail(ex, ACH_KIND_NETWORK, "not enough memory");
						return ACH_STEP_DONE;
					}
				}
				ex->forced = 1;
				ex->state = ST_BLOCKED;
				ex->next_waiter = s->waiters;
				s->waiters = ex;
				/* with a deadline it stays runnable, to be woken at it
				 * (ach_exchange_wake) should the token request still run then */
				if (ex->deadline_at == 0)
					unlink_runnable(ex);
				return ACH_STEP_BLOCKED;
			}
			if (ex->type == ACH_EX_ENSURE) {
				ach_token_unref(ex->token);
				ex->token = ach_token_ref(s->tok);
				finish(ex);
				return ACH_STEP_DONE;
			}
		}
		if (s != NULL) {
			switch (rate_admit(ex, now)) {
			case 1:
				return ACH_STEP_WAIT;
			case 2: /* waits for the store; with a deadline it stays runnable, woken at it */
				if (ex->deadline_at > 0)
					return ACH_STEP_WAIT;
				unlink_runnable(ex);
				return ACH_STEP_BLOCKED;
			case 3: /* the deadline would pass while pacing held it */
				finish(ex);
				return ACH_STEP_DONE;
			default:
				break;
			}
		}
		if (build_api_request(ex) != 0) {
			fail(ex, ACH_KIND_NETWORK, "not enough memory");
			return ACH_STEP_DONE;
		}
		ex->attempt++;
		ex->state = ST_SENDING;
		return ACH_STEP_SEND;
	}
}

int ach_exchange_waits_on_slot(const ach_exchange *ex)
{
	return ex->state == ST_BLOCKED && ex->slot != NULL && ex->slot->fetching != NULL &&
	       ex->slot->fetching != ex;
}

double ach_exchange_wake(const ach_exchange *ex)
{
	if ((ex->state == ST_BLOCKED || (ex->state == ST_STORE && !ex->owned_by_slot)) &&
	    ex->deadline_at > 0)
		return ex->deadline_at;
	return ex->state == ST_SLEEP ? ex->wake_at : 0;
}

void ach_exchange_request(ach_exchange *ex, ach_http_request *req)
{
	int n = 0, i;
	if (ex->headers == NULL) {
		int extra = 0;
		while (ex->extra_headers != NULL && ex->extra_headers[extra] != NULL)
			extra++;
		ex->headers = calloc((size_t)extra + 6, sizeof *ex->headers);
	}
	if (ex->headers != NULL) {
		ex->headers[n++] = "Accept: application/json";
		if (ex->content_type != NULL)
			ex->headers[n++] = ex->content_type;
		if (ex->auth_header.len > 0)
			ex->headers[n++] = ex->auth_header.data;
		for (i = 0; ex->extra_headers != NULL && ex->extra_headers[i] != NULL; i++)
			ex->headers[n++] = ex->extra_headers[i];
		ex->headers[n] = NULL;
	}
	req->method = ex->method;
	req->url = ex->url;
	req->headers = (const char *const *)ex->headers;
	req->body = ex->body.data;
	req->body_len = ex->body.len;
	req->timeout = ex->timeout;
	if (ex->deadline_at > 0) {
		/* an attempt never runs past the call's deadline */
		double left = ex->deadline_at - NOW(ex->core);
		if (left < req->timeout)
			req->timeout = left > 0.001 ? left : 0.001;
	}
	req->attempt = ex->attempt;
}

/* ---- answers ------------------------------------------------------------------------------------ */

static int retry_status(long status)
{
	return status == 429 || status == 502 || status == 503 || status == 504;
}

/* Backoff for the attempt just failed: base * 2^(attempt-1), with jitter in [50%, 100%]. */
static double backoff(const ach_core *c, int attempt)
{
	unsigned char r = 0;
	double d = RETRY_BASE * pow(2.0, attempt - 1);
	c->env.random(c->env.ud, &r, 1);
	return d * (0.5 + (double)r / 510.0);
}

/* A token exchange owned by a slot ended: install the token or pass the failure on. The
 * waiters are settled before any Lua hook runs, and the exchange is destroyed last. */
static void token_fetch_done(ach_exchange *t, double now)
{
	ach_slot *s = t->slot;
	ach_exchange *w = s->waiters;
	ach_token_data *fresh = NULL;
	int same = 0;
	if (t->token == NULL && t->grant == ACH_GRANT_REFRESH_TOKEN &&
	    (t->status == 400 || t->status == 401))
		t->failure = ACH_KIND_REAUTHORIZE; /* the refresh token is no good any more */
	if (t->token != NULL && t->token->refresh_token == NULL && s->tok != NULL &&
	    s->tok->refresh_token != NULL) {
		t->token->refresh_token = ach_strdup(s->tok->refresh_token); /* kept when not rotated */
	}
	token_sync_end(t, now);
	if (t->token != NULL) {
		double rem;
		same = s->tok != NULL && strcmp(s->tok->access_token, t->token->access_token) == 0;
		ach_slot_set_token(s, t->token);
		s->bad_hash[0] = '\0';
		/* A token that is already inside the refresh window when it arrives (the one we
		 * held, handed back; a short-lived one; one expired on arrival): use it for a
		 * while rather than asking again at once, so there is no loop. */
		rem = ach_token_remaining_at(s->tok, WALL(s->core));
		if (t->from_store && t->fresh_until > WALL(s->core))
			s->refresh_after = now + (t->fresh_until - WALL(s->core));
		else if (rem <= s->core->opt.refresh_window)
			s->refresh_after = now + fmin(300.0, fmax(rem / 2, 1.0));
		fresh = ach_token_ref(t->token);
	}
	s->waiters = NULL;
	s->fetching = NULL;
	while (w != NULL) {
		ach_exchange *next = w->next_waiter;
		w->next_waiter = NULL;
		if (t->token != NULL) {
			w->state = ST_START;
			w->fresh_token = 1; /* it waited for this token: it uses it, whatever its age */
			ach_exchange_schedule(w);
		} else {
			/* the waiter fails with the token request's failure */
			w->failure = t->failure != ACH_KIND_NONE ? t->failure : ach_kind_for_status(t->status);
			w->status = t->status;
			w->retry_after = t->retry_after;
			w->token_failed = 1;
			w->attempt += t->attempt; /* the attempts made for it */
			w->deadline_hit = t->deadline_hit;
			ach_buf_reset(&w->resp_body);
			ach_buf_reset(&w->resp_headers);
			ach_buf_reset(&w->message);
			ach_buf_add(&w->resp_body, t->resp_body.data, t->resp_body.len);
			ach_buf_add(&w->resp_headers, t->resp_headers.data, t->resp_headers.len);
			ach_buf_add(&w->message, t->message.data, t->message.len);
			free(w->error_method);
			w->error_method = ach_strdup(t->method);
			ach_buf_reset(&w->error_url);
			ach_buf_adds(&w->error_url, t->url);
			finish(w);
		}
		w = next;
	}
	if (fresh != NULL && !same) {
		ach_token_unref(t->token);
		t->token = fresh; /* the hook sees it through t; keep our reference */
		fresh = NULL;
		hook_token(t->core, t, s);
	}
	ach_token_unref(fresh);
	exchange_destroy(t);
}

void ach_exchange_sent(ach_exchange *ex)
{
	hook_trace(ex->core, ex, "request", NULL);
}

/* Reads a token answer; sets t->token or a decode failure. */
static void take_token_answer(ach_exchange *t, int64_t date)
{
	const ach_options *o = &t->core->opt;
	const char *why = NULL;
	const char *scope = t->grant_scope != NULL ? t->grant_scope : o->scope_comma;
	t->token = ach_token_from_json(t->resp_body.data, t->resp_body.len,
				       t->grant == ACH_GRANT_CLIENT_CREDENTIALS ? "client_credentials"
										: "authorization_code",
				       scope, date, WALL(t->core), &why);
	if (t->token == NULL) {
		t->failure = ACH_KIND_DECODE;
		ach_buf_reset(&t->message);
		ach_buf_adds(&t->message, why);
	}
}

void ach_exchange_response(ach_exchange *ex, const ach_http_response *r, double now)
{
	const ach_options *o = &ex->core->opt;
	size_t vlen = 0;
	const char *v;
	int64_t date = 0;
	int retry = 0, idempotent;
	double delay = -1;

	ex->status = r->status;
	ex->failure = r->failure;
	ex->retry_after = -1;
	ach_buf_reset(&ex->message);
	if (r->failure != ACH_KIND_NONE && r->message != NULL)
		ach_buf_adds(&ex->message, r->message);
	if (r->headers != ex->resp_headers.data) {
		ach_buf_reset(&ex->resp_headers);
		ach_buf_add(&ex->resp_headers, r->headers, r->headers_len);
	}
	if (r->body != ex->resp_body.data) {
		ach_buf_reset(&ex->resp_body);
		ach_buf_add(&ex->resp_body, r->body, r->body_len);
	}
	hook_trace(ex->core, ex, r->failure != ACH_KIND_NONE ? "error" : "response", r);
	if (ex->state == ST_DONE)
		return; /* the hook cancelled it */

	if (r->failure == ACH_KIND_NONE) {
		v = ach_header_find(ex->resp_headers.data, ex->resp_headers.len, "Date", &vlen);
		if (v != NULL && (date = ach_parse_http_date(v, vlen)) > 0) {
			double skew = (double)date - WALL(ex->core);
			ex->core->skew = fabs(skew) >= 2.0 ? (int64_t)llround(skew) : 0;
			if (ex->slot != NULL && ex->slot->tok != NULL)
				ex->slot->tok->skew = ex->core->skew;
		}
		v = ach_header_find(ex->resp_headers.data, ex->resp_headers.len, "Retry-After", &vlen);
		ex->retry_after = ach_parse_retry_after(v, vlen, date, WALL(ex->core));
	}

	/* 401 on an API call: drop the token, get a new one once, repeat the call once. */
	if (r->status == 401 && ex->type == ACH_EX_API && ex->needs_auth && !ex->auth_retried &&
	    ex->slot != NULL &&
	    (!ex->slot->user || (ex->used_token != NULL && ex->used_token->refresh_token != NULL))) {
		ach_slot *s = ex->slot;
		ex->auth_retried = 1;
		/* the token it was sent with is bad; when several calls find that out at once, the
		 * first drops it and the others use (or wait for) its replacement */
		if (s->tok != NULL && s->tok == ex->used_token) {
			s->refresh_after = 0;
			if (s->user) {
				s->tok->expires_at = INT64_MIN; /* forces the refresh grant */
			} else {
				memcpy(s->bad_hash, s->tok_hash, sizeof s->bad_hash);
				ach_slot_set_token(s, NULL);
			}
		}
		ex->state = ST_START;
		ach_exchange_schedule(ex);
		return;
	}

	/* 401 with a user token that cannot be refreshed: only a new authorization helps */
	if (r->status == 401 && ex->type == ACH_EX_API && ex->needs_auth && ex->slot != NULL &&
	    ex->slot->user && (ex->slot->tok == NULL || ex->slot->tok->refresh_token == NULL)) {
		ex->failure = ACH_KIND_REAUTHORIZE;
		ach_buf_reset(&ex->message);
		ach_buf_adds(&ex->message, "the server rejected the user token and there is no refresh "
					   "token: run the authorization flow again");
		finish(ex);
		return;
	}

	idempotent = ex->type == ACH_EX_TOKEN || ach_method_idempotent(ex->method);
	if (r->failure == ACH_KIND_NETWORK || r->failure == ACH_KIND_TIMEOUT)
		retry = idempotent || !r->reached; /* a bad certificate or an oversized answer stays so */
	else if (retry_status(r->status))
		retry = idempotent || r->status == 429;
	if (retry && ex->attempt <= o->retries) {
		delay = ex->retry_after >= 0 ? ex->retry_after : backoff(ex->core, ex->attempt);
		if (delay > o->retry_max_wait)
			retry = 0;
	} else {
		retry = 0;
	}
	if (ex->deadline_at > 0 && r->failure != ACH_KIND_NONE && past_deadline(ex, now + 0.002)) {
		set_deadline_failure(ex, "passed"); /* the attempt's timeout was cut to the deadline */
		retry = 0;
	} else if (retry && ex->deadline_at > 0 && now + delay >= ex->deadline_at) {
		/* a retry whose wait would pass the deadline is not attempted */
		if (r->failure == ACH_KIND_TIMEOUT)
			set_deadline_failure(ex, "would pass before a retry");
		retry = 0;
	}
	if (retry) {
		hook_retry(ex->core, ex, delay);
		if (r->status == 429) /* the server's own pacing: said as ours is */
			hook_rate_limit(ex->core, ex, delay, 1);
		ex->state = ST_SLEEP;
		ex->wake_at = now + delay;
		ach_exchange_schedule(ex);
		return;
	}

	if (ex->type == ACH_EX_TOKEN && ex->failure == ACH_KIND_NONE && r->status >= 200 &&
	    r->status < 300)
		take_token_answer(ex, date);
	if (ex->type == ACH_EX_TOKEN && ex->owned_by_slot) {
		token_fetch_done(ex, now);
		return;
	}
	if (ex->type == ACH_EX_TOKEN && ex->token != NULL)
		hook_token(ex->core, ex, ex->slot); /* a user token from exchange_code */
	finish(ex);
}
