/*
 * engine_spec.c: the exchange engine (src/core/) on its own, with no sockets and no Lua.
 *
 * The real core runs here on a world made for it:
 *   - a virtual clock: monotonic and wall time move only when the fake driver is asked to wait
 *     (pump(ms) with nothing due) or when a case moves it, so every time below is exact;
 *   - a deterministic random source (xorshift, or one fixed byte), whose last byte is kept so
 *     that a backoff's jitter can be checked against the formula;
 *   - a fake driver (ach_driver): start records the request (method, url, headers, body,
 *     timeout) and asks the scripted server for its answer; pump hands the answers that are
 *     due back with ach_exchange_response;
 *   - a scripted server: the token endpoint hands out tok-1, tok-2, ... (or always the same
 *     token), API paths answer from the case's queue (200 {"ok":true} when it is empty);
 *   - hooks that count what the engine tells its host (tokens, retries, rate-limit waits);
 *   - the memory store (src/store/memory.c), as a client has by default.
 *
 *   engine_spec CASE     runs one case: prints what it saw; exit 0 on pass, 1 with a message
 *   engine_spec --list   the cases, "name<TAB>what it shows", one a line
 *
 * Each case asserts the rules as engine.c states them (RETRY_BASE 0.25 s doubling, jitter
 * 50-100%, the memory store's window margin of 5% of the window, at most 1 s, ...).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/kind.h"
#include "core/store.h"
#include "store/memory.h"

#define T0 1000.0           /* the virtual monotonic clock at the start of a case */
#define WALL0 1800000000.0  /* the virtual wall clock then (UNIX time) */
#define ORIGIN "https://api.example.test"
#define TOKEN_PATH "/oauth/v2/openIDConnectClient/token"
#define SECRET "spec-secret-value"
#define EPS 1e-9

/* ---- failures ----------------------------------------------------------------------------- */

static const char *case_name = "?";

static void failed(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void failed(int line, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "FAIL %s (engine_spec.c:%d): ", case_name, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			failed(__LINE__, __VA_ARGS__); \
	} while (0)
#define CHECK_INT(got, want) \
	do { \
		long g_ = (long)(got), w_ = (long)(want); \
		if (g_ != w_) \
			failed(__LINE__, "%s is %ld, expected %ld", #got, g_, w_); \
	} while (0)
#define CHECK_NEAR(got, want, eps) \
	do { \
		double g_ = (got), w_ = (want); \
		if (!(fabs(g_ - w_) <= (eps))) \
			failed(__LINE__, "%s is %.9g, expected %.9g (within %g)", #got, g_, w_, \
			       (double)(eps)); \
	} while (0)
#define CHECK_STR(got, want) \
	do { \
		const char *g_ = (got), *w_ = (want); \
		if (g_ == NULL || strcmp(g_, w_) != 0) \
			failed(__LINE__, "%s is \"%s\", expected \"%s\"", #got, g_ ? g_ : "(null)", w_); \
	} while (0)
#define CHECK_HAS(got, part) \
	do { \
		const char *g_ = (got), *p_ = (part); \
		if (g_ == NULL || strstr(g_, p_) == NULL) \
			failed(__LINE__, "%s (\"%s\") does not hold \"%s\"", #got, g_ ? g_ : "(null)", p_); \
	} while (0)

/* ---- the world: clock, random source, server, driver, hooks -------------------------------- */

/* A scripted answer. Zero-initialised: 200, reached, at once. */
typedef struct answer {
	long status;
	ach_kind failure;    /* a transport failure instead of an answer */
	int unreached;       /* with a failure: the request provably never reached the server */
	int hang;            /* no answer: the driver times the attempt out at its timeout */
	double latency;      /* seconds until the answer (virtual) */
	const char *headers; /* extra header lines, each ending in \r\n */
	const char *body;
} answer;

/* A request the driver was handed, and what it got. */
typedef struct sent {
	double t; /* virtual seconds since the case started */
	char method[8];
	char *url;  /* without the origin */
	char *auth; /* the Authorization header's value, or NULL */
	char *body;
	double timeout;
	int attempt;
	int token; /* to the token endpoint */
	long status;
	ach_kind failure;
	double done_t;
} sent;

typedef struct flight {
	ach_exchange *ex;
	double due;
	int idx; /* in the log */
	answer a;
	char *hdr, *body;
	struct flight *next;
} flight;

#define LOG_MAX 512
#define Q_MAX 64
#define HOOK_MAX 64

static struct world {
	double now;
	uint32_t rnd;
	int fixed_byte; /* >= 0: every random byte is this */
	int last_byte;  /* the last random byte given, or -1 once a retry hook has seen it */
	ach_core *core;
	ach_slot *slot;
	/* server */
	answer api_q[Q_MAX];
	int api_n, api_next;
	answer tok_q[8];
	int tok_n, tok_next;
	int issued;             /* tokens handed out */
	const char *same_token; /* hand back this token (expires_in: same_expires) every time */
	double same_expires;    /* absolute UNIX time */
	double token_latency;
	double api_latency; /* for answers from the default (empty queue) */
	/* driver */
	flight *flights;
	int active, max_active;
	int expired_sent;  /* API requests sent with a token past its expiry */
	int allow_expired; /* the case expects some */
	sent log[LOG_MAX];
	int nlog;
	/* hooks */
	int token_hook;
	char hook_token[64];
	int trace_requests;
	int nretry;
	double retry_delay[HOOK_MAX], retry_t[HOOK_MAX];
	int retry_byte[HOOK_MAX];
	int nrl;
	double rl_wait[HOOK_MAX], rl_t[HOOK_MAX];
	int rl_server[HOOK_MAX];
} W;

static double rel(double t)
{
	return t - T0;
}

static double v_now(void *ud)
{
	(void)ud;
	return W.now;
}

static double v_wall(void *ud)
{
	(void)ud;
	return WALL0 + (W.now - T0);
}

static int v_random(void *ud, void *out, size_t n)
{
	unsigned char *p = out;
	size_t i;
	(void)ud;
	for (i = 0; i < n; i++) {
		if (W.fixed_byte >= 0) {
			p[i] = (unsigned char)W.fixed_byte;
		} else {
			W.rnd ^= W.rnd << 13;
			W.rnd ^= W.rnd >> 17;
			W.rnd ^= W.rnd << 5;
			p[i] = (unsigned char)(W.rnd >> 24);
		}
		W.last_byte = p[i];
	}
	return 0;
}

static const ach_env virtual_env = {v_now, v_wall, v_random, NULL};

/* The server: what it answers to a request. */
static answer serve(const sent *s, char **hdr, char **body)
{
	answer a;
	char buf[256];
	if (s->token) {
		if (W.tok_next < W.tok_n) {
			a = W.tok_q[W.tok_next++];
		} else {
			memset(&a, 0, sizeof a);
			a.latency = W.token_latency;
		}
		if (a.body == NULL && a.status == 0 && a.failure == ACH_KIND_NONE && !a.hang) {
			W.issued++;
			if (W.same_token != NULL)
				snprintf(buf, sizeof buf,
					 "{\"access_token\":\"%s\",\"token_type\":\"bearer\",\"expires_in\":%.0f}",
					 W.same_token, W.same_expires);
			else
				snprintf(buf, sizeof buf,
					 "{\"access_token\":\"tok-%d\",\"token_type\":\"bearer\",\"expires_in\":86400}",
					 W.issued);
			*body = ach_strdup(buf);
		}
	} else if (W.api_next < W.api_n) {
		a = W.api_q[W.api_next++];
	} else {
		memset(&a, 0, sizeof a);
		a.latency = W.api_latency;
	}
	if (a.status == 0 && a.failure == ACH_KIND_NONE && !a.hang)
		a.status = 200;
	if (*body == NULL && a.failure == ACH_KIND_NONE && !a.hang)
		*body = ach_strdup(a.body != NULL ? a.body : a.status < 300 ? "{\"ok\":true}" : "{}");
	snprintf(buf, sizeof buf, "HTTP/1.1 %ld X\r\nContent-Type: application/json\r\n%s", a.status,
		 a.headers != NULL ? a.headers : "");
	*hdr = ach_strdup(buf);
	return a;
}

static int d_start(void *ud, ach_exchange *ex)
{
	ach_http_request req;
	sent *s;
	flight *f, **p;
	int i;
	(void)ud;
	CHECK(W.nlog < LOG_MAX, "too many requests");
	ach_exchange_request(ex, &req);
	s = &W.log[W.nlog];
	memset(s, 0, sizeof *s);
	s->t = rel(W.now);
	snprintf(s->method, sizeof s->method, "%s", req.method);
	CHECK(strncmp(req.url, ORIGIN, strlen(ORIGIN)) == 0, "request to %s", req.url);
	s->url = ach_strdup(req.url + strlen(ORIGIN));
	for (i = 0; req.headers != NULL && req.headers[i] != NULL; i++)
		if (strncmp(req.headers[i], "Authorization: ", 15) == 0)
			s->auth = ach_strdup(req.headers[i] + 15);
	s->body = ach_strndup(req.body != NULL ? req.body : "", req.body != NULL ? req.body_len : 0);
	s->timeout = req.timeout;
	s->attempt = req.attempt;
	s->token = strcmp(s->url, TOKEN_PATH) == 0;
	if (!s->token && ex->used_token != NULL &&
	    ach_token_remaining_at(ex->used_token, v_wall(NULL)) <= 0)
		W.expired_sent++;
	f = calloc(1, sizeof *f);
	CHECK(f != NULL && s->url != NULL && s->body != NULL, "out of memory");
	f->ex = ex;
	f->idx = W.nlog++;
	f->a = serve(s, &f->hdr, &f->body);
	f->due = W.now + (f->a.hang ? req.timeout : f->a.latency);
	for (p = &W.flights; *p != NULL; p = &(*p)->next)
		;
	*p = f;
	ex->transfer = f;
	if (++W.active > W.max_active)
		W.max_active = W.active;
	return 0;
}

static void flight_free(flight *f)
{
	free(f->hdr);
	free(f->body);
	free(f);
}

static void d_cancel(void *ud, ach_exchange *ex)
{
	flight **p;
	(void)ud;
	for (p = &W.flights; *p != NULL; p = &(*p)->next)
		if ((*p)->ex == ex) {
			flight *f = *p;
			*p = f->next;
			flight_free(f);
			W.active--;
			break;
		}
	ex->transfer = NULL;
}

static double d_timer(void *ud)
{
	flight *f;
	double t = -1;
	(void)ud;
	for (f = W.flights; f != NULL; f = f->next)
		if (t < 0 || f->due < t)
			t = f->due;
	return t;
}

/* Hands back the answers that are due; with none due, the clock moves on by ms (or to the next
 * answer, if that is sooner). */
static int d_pump(void *ud, int ms)
{
	int n = 0;
	double next = d_timer(ud);
	if (ms > 0 && (next < 0 || next > W.now)) {
		double until = W.now + ms / 1000.0;
		W.now = next >= 0 && next < until ? next : until;
	}
	for (;;) {
		flight *f, **p;
		ach_http_response r;
		sent *s;
		for (p = &W.flights; *p != NULL && (*p)->due > W.now; p = &(*p)->next)
			;
		if (*p == NULL)
			break;
		f = *p;
		*p = f->next;
		W.active--;
		f->ex->transfer = NULL;
		s = &W.log[f->idx];
		memset(&r, 0, sizeof r);
		r.reached = !f->a.unreached;
		if (f->a.hang) {
			r.failure = ACH_KIND_TIMEOUT;
			r.message = "injected: the server did not answer in time";
		} else if (f->a.failure != ACH_KIND_NONE) {
			r.failure = f->a.failure;
			r.message = "injected transport failure";
		} else {
			r.status = f->a.status;
			r.body = f->body;
			r.body_len = f->body != NULL ? strlen(f->body) : 0;
		}
		r.headers = f->hdr;
		r.headers_len = f->hdr != NULL ? strlen(f->hdr) : 0;
		s->status = r.status;
		s->failure = r.failure;
		s->done_t = rel(W.now);
		ach_core_work(W.core);
		ach_exchange_response(f->ex, &r, W.now);
		flight_free(f);
		n++;
	}
	return n;
}

static int d_active(void *ud)
{
	(void)ud;
	return W.active;
}

static void d_free(void *ud)
{
	(void)ud;
}

static void h_token(void *ud, ach_exchange *ex, ach_slot *slot)
{
	(void)ud, (void)ex;
	W.token_hook++;
	snprintf(W.hook_token, sizeof W.hook_token, "%s",
		 slot != NULL && slot->tok != NULL ? slot->tok->access_token : "?");
}

static void h_trace(void *ud, ach_exchange *ex, const char *phase, const ach_http_response *r)
{
	(void)ud, (void)ex, (void)r;
	if (strcmp(phase, "request") == 0)
		W.trace_requests++;
}

static void h_retry(void *ud, ach_exchange *ex, double delay)
{
	(void)ud, (void)ex;
	CHECK(W.nretry < HOOK_MAX, "too many retries");
	W.retry_delay[W.nretry] = delay;
	W.retry_t[W.nretry] = rel(W.now);
	W.retry_byte[W.nretry] = W.last_byte; /* -1: no byte drawn for it (a Retry-After) */
	W.last_byte = -1;
	W.nretry++;
}

static void h_rate_limit(void *ud, ach_exchange *ex, double wait, int server)
{
	(void)ud, (void)ex;
	CHECK(W.nrl < HOOK_MAX, "too many rate-limit waits");
	W.rl_wait[W.nrl] = wait;
	W.rl_t[W.nrl] = rel(W.now);
	W.rl_server[W.nrl] = server;
	W.nrl++;
}

/* ---- setting up and running ------------------------------------------------------------------- */

/* A core as the binding makes one (binding/client.c: new_core, read_options' defaults), on the
 * virtual world. */
static void setup(void)
{
	ach_options *o;
	ach_store *st;
	memset(&W, 0, sizeof W);
	W.now = T0;
	W.rnd = 0x9e3779b9u;
	W.fixed_byte = -1;
	W.core = ach_core_new(&virtual_env);
	CHECK(W.core != NULL, "out of memory");
	o = &W.core->opt;
	CHECK(ach_url_parse(ORIGIN, &o->base) == NULL, "base url");
	o->client_id = ach_strdup("spec-client");
	o->client_secret = ach_strdup(SECRET);
	o->scope_comma = ach_strdup("read,write");
	o->scope_space = ach_strdup("read write");
	o->user_agent = ach_strdup("lua-achievers/engine-spec");
	o->token_auth = ACH_AUTH_JSON;
	o->refresh_window = 7200;
	o->timeout = 30;
	o->connect_timeout = 10;
	o->deadline = 0;
	o->retries = 2;
	o->retry_max_wait = 60;
	o->rate_limit = 1;
	o->limits[ACH_CLASS_DEFAULT] = (ach_limit){500, 120};
	o->limits[ACH_CLASS_HEAVY] = (ach_limit){50, 60};
	o->max_concurrency = 8;
	o->frame_budget = ACH_FRAME_BUDGET;
	o->max_response = 8u * 1024 * 1024;
	o->pkce = 1;
	st = calloc(1, sizeof *st);
	CHECK(st != NULL, "out of memory");
	ach_store_init(st, &W.core->env);
	CHECK(ach_store_memory(st, &W.core->env) == 0, "memory store");
	ach_core_set_store(W.core, st);
	W.core->drv = (ach_driver){d_start, d_cancel, d_pump, d_active, d_timer, d_free, NULL};
	W.core->hooks = (ach_hooks){h_token, h_trace, h_retry, h_rate_limit, NULL, NULL, NULL, NULL};
	W.slot = ach_slot_new(W.core);
	CHECK(W.slot != NULL, "out of memory");
	W.last_byte = -1; /* the store's owner id took some */
}

static void teardown(void)
{
	int i;
	CHECK(W.flights == NULL, "requests left on the wire");
	ach_slot_unref(W.slot);
	ach_core_unref(W.core);
	for (i = 0; i < W.nlog; i++) {
		free(W.log[i].url);
		free(W.log[i].auth);
		free(W.log[i].body);
	}
	W.nlog = 0;
}

/* Gives the slot a system token with `remaining` seconds to live (on the virtual wall clock). */
static void hold_token(const char *access, double remaining)
{
	ach_token_data *t = ach_token_alloc();
	CHECK(t != NULL, "out of memory");
	t->access_token = ach_strdup(access);
	t->token_type = ach_strdup("bearer");
	t->scope = ach_strdup("read,write");
	t->grant_type = ach_strdup("client_credentials");
	t->expires_at = (int64_t)floor(v_wall(NULL) + remaining);
	CHECK(ach_token_complete(t), "out of memory");
	ach_slot_set_token(W.slot, t);
	ach_token_unref(t);
}

static void api(answer a)
{
	CHECK(W.api_n < Q_MAX, "too many answers");
	W.api_q[W.api_n++] = a;
}

/* A call as ach_client_prepare fills one: method, URL, body, needs_auth, rate class. */
static ach_exchange *call(const char *method, const char *path, int rate_class)
{
	ach_exchange *ex = malloc(sizeof *ex);
	char url[256];
	CHECK(ex != NULL, "out of memory");
	ach_exchange_init(ex, W.core, W.slot, ACH_EX_API);
	ex->method = ach_strdup(method);
	snprintf(url, sizeof url, "%s%s", ORIGIN, path);
	ex->url = ach_strdup(url);
	if (strcmp(method, "POST") == 0) {
		ach_buf_adds(&ex->body, "{\"recognitionText\":\"thanks\"}");
		ex->content_type = ach_strdup("Content-Type: application/json");
	}
	ex->needs_auth = 1;
	ex->rate_class = rate_class;
	ach_exchange_schedule(ex);
	return ex;
}

static void finish(ach_exchange *ex)
{
	CHECK(ach_core_finish(W.core, ex) == 0, "the exchange stalled");
	CHECK(ach_exchange_done(ex), "not done");
}

static void finish_all(ach_exchange **v, int n)
{
	int i;
	for (i = 0; i < n; i++)
		finish(v[i]);
}

static void drop(ach_exchange *ex)
{
	ach_exchange_release(ex);
	free(ex);
}

/* The outcome's kind as the binding reports it (binding/result.c). */
static ach_kind kind_of(const ach_exchange *ex)
{
	if (ex->failure != ACH_KIND_NONE)
		return ex->failure;
	if (ex->status >= 200 && ex->status < 300)
		return ACH_KIND_NONE;
	return ach_kind_for_status(ex->status);
}

static const char *kind_name(const ach_exchange *ex)
{
	return ach_kind_name(kind_of(ex));
}

static int count(int token)
{
	int i, n = 0;
	for (i = 0; i < W.nlog; i++)
		n += W.log[i].token == token;
	return n;
}

#define API_REQUESTS() count(0)
#define TOKEN_REQUESTS() count(1)

static void show_log(void)
{
	int i;
	for (i = 0; i < W.nlog; i++) {
		const sent *s = &W.log[i];
		printf("  t=%8.3f %-4s %-36s %-14s -> ", s->t, s->method, s->url,
		       s->token ? "(Basic)" : s->auth != NULL ? s->auth + 7 : "(none)");
		if (s->failure != ACH_KIND_NONE)
			printf("%s failure at t=%.3f\n", ach_kind_name(s->failure), s->done_t);
		else
			printf("%ld\n", s->status);
	}
}

static void show_hooks(void)
{
	int i;
	printf("  hooks: token %d, trace(request) %d, retry %d, rate_limit %d\n", W.token_hook,
	       W.trace_requests, W.nretry, W.nrl);
	for (i = 0; i < W.nretry; i++) {
		printf("    retry at t=%.3f delay %.6f s", W.retry_t[i], W.retry_delay[i]);
		if (W.retry_byte[i] >= 0)
			printf(" (backoff, random byte %d)", W.retry_byte[i]);
		printf("\n");
	}
	for (i = 0; i < W.nrl; i++)
		printf("    rate_limit at t=%.3f wait %.3f s server=%d\n", W.rl_t[i], W.rl_wait[i],
		       W.rl_server[i]);
}

static void show_result(const char *what, const ach_exchange *ex)
{
	printf("  %s: status %ld, kind %s, attempts %d%s%s%s\n", what, ex->status, kind_name(ex),
	       ex->attempt, ex->message.len > 0 ? ", message \"" : "",
	       ex->message.len > 0 ? ex->message.data : "", ex->message.len > 0 ? "\"" : "");
}

/* Every request the driver started was traced once; the secret went only to the token
 * endpoint; no two requests were on the wire beyond max_concurrency. */
static void common_checks(void)
{
	int i;
	CHECK_INT(W.trace_requests, W.nlog);
	if (!W.allow_expired)
		CHECK_INT(W.expired_sent, 0);
	CHECK(W.max_active <= W.core->opt.max_concurrency, "%d requests on the wire at once",
	      W.max_active);
	for (i = 0; i < W.nlog; i++) {
		const sent *s = &W.log[i];
		if (s->token) {
			CHECK_STR(s->method, "POST");
			CHECK(s->auth != NULL && strncmp(s->auth, "Basic ", 6) == 0,
			      "token request without Basic credentials");
			CHECK_HAS(s->body, "\"grant_type\":\"client_credentials\"");
		} else {
			CHECK(strstr(s->body, SECRET) == NULL && (s->auth == NULL || strncmp(s->auth, "Bearer ", 7) == 0),
			      "API request %d carries credentials", i);
			CHECK(strncmp(s->url, ACH_API_PREFIX, strlen(ACH_API_PREFIX)) == 0, "API url %s", s->url);
		}
	}
}

/* The backoff engine.c states for the attempt just failed: 0.25 s * 2^(attempt-1), times a
 * jitter of 0.5 + byte/510 (50% to 100%). */
static void check_backoff(int i, int attempt)
{
	double base = 0.25 * pow(2.0, attempt - 1);
	CHECK(W.retry_byte[i] >= 0, "retry %d drew no random byte", i);
	CHECK_NEAR(W.retry_delay[i], base * (0.5 + W.retry_byte[i] / 510.0), EPS);
	CHECK(W.retry_delay[i] >= base * 0.5 - EPS && W.retry_delay[i] <= base + EPS,
	      "retry delay %.6f outside [%.4f, %.4f]", W.retry_delay[i], base * 0.5, base);
}

/* ---- cases: retries -------------------------------------------------------------------------- */

static void case_retry_503(void)
{
	ach_exchange *ex;
	double d;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.status = 503});
	api((answer){.status = 200});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_INT(API_REQUESTS(), 2);
	CHECK_INT(TOKEN_REQUESTS(), 0);
	CHECK_INT(ex->attempt, 2);
	CHECK_STR(kind_name(ex), "none");
	CHECK_INT(ex->status, 200);
	CHECK_INT(W.nretry, 1);
	check_backoff(0, 1);
	d = W.retry_delay[0];
	CHECK_NEAR(W.retry_t[0], 0, EPS);
	CHECK_NEAR(W.log[0].t, 0, EPS);
	/* sent again once the delay has passed on the virtual clock, within the scheduler's 1 ms
	 * rounding of its waits */
	CHECK(W.log[1].t >= d - EPS && W.log[1].t <= d + 0.001 + EPS,
	      "second attempt at t=%.6f, delay %.6f", W.log[1].t, d);
	CHECK_INT(W.log[1].attempt, 2);
	CHECK_STR(W.log[1].auth, "Bearer tok-A");
	CHECK_INT(W.nrl, 0);
	drop(ex);
	teardown();
}

/* The jitter's ends, and the doubling: random byte 0 gives 50%, byte 255 gives 100%. */
static void case_retry_jitter_bounds(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	W.fixed_byte = 0;
	api((answer){.status = 503});
	api((answer){.status = 502});
	api((answer){.status = 200});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" random byte 0:\n");
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(W.nretry, 2);
	CHECK_NEAR(W.retry_delay[0], 0.125, EPS);
	CHECK_NEAR(W.retry_delay[1], 0.25, EPS);
	CHECK_NEAR(W.log[1].t, 0.125, EPS);
	CHECK_NEAR(W.log[2].t, 0.375, EPS);
	CHECK_INT(ex->status, 200);
	drop(ex);
	teardown();

	setup();
	hold_token("tok-A", 86400);
	W.fixed_byte = 255;
	api((answer){.status = 504});
	api((answer){.status = 503});
	api((answer){.status = 200});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" random byte 255:\n");
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(W.nretry, 2);
	CHECK_NEAR(W.retry_delay[0], 0.25, EPS);
	CHECK_NEAR(W.retry_delay[1], 0.5, EPS);
	CHECK_NEAR(W.log[1].t, 0.25, EPS);
	CHECK_NEAR(W.log[2].t, 0.75, EPS);
	CHECK_INT(ex->attempt, 3);
	CHECK_INT(ex->status, 200);
	drop(ex);
	teardown();
}

static void case_retry_429(void)
{
	ach_exchange *ex, *post;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.status = 429, .headers = "Retry-After: 3\r\n"});
	api((answer){.status = 200});
	api((answer){.status = 429, .headers = "Retry-After: 3\r\n"});
	api((answer){.status = 201, .body = "{\"id\":7}"});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	post = call("POST", "/api/v5/recognitions", ACH_CLASS_DEFAULT);
	finish(post);
	show_log();
	show_hooks();
	show_result("GET", ex);
	show_result("POST", post);
	common_checks();
	CHECK_INT(API_REQUESTS(), 4);
	CHECK_INT(W.nretry, 2);
	CHECK_INT(W.nrl, 2);
	/* the server's Retry-After, exactly: no jitter, no backoff */
	CHECK_NEAR(W.retry_delay[0], 3, EPS);
	CHECK_INT(W.retry_byte[0], -1); /* no backoff drawn */
	CHECK_NEAR(W.rl_wait[0], 3, EPS);
	CHECK_INT(W.rl_server[0], 1);
	CHECK_NEAR(W.log[1].t, 3, EPS);
	CHECK_INT(ex->status, 200);
	/* a POST answered 429 is retried too (the server did not take it) */
	CHECK_STR(W.log[2].method, "POST");
	CHECK_NEAR(W.log[2].t, 3, EPS);
	CHECK_NEAR(W.rl_wait[1], 3, EPS);
	CHECK_INT(W.rl_server[1], 1);
	CHECK_NEAR(W.log[3].t, 6, EPS);
	CHECK_INT(post->status, 201);
	CHECK_INT(post->attempt, 2);
	drop(ex);
	drop(post);
	teardown();
}

static void case_post_503(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.status = 503});
	ex = call("POST", "/api/v5/recognitions", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_INT(API_REQUESTS(), 1);
	CHECK_INT(ex->attempt, 1);
	CHECK_INT(ex->status, 503);
	CHECK_STR(kind_name(ex), "server");
	CHECK_INT(W.nretry, 0);
	CHECK_INT(W.api_next, 1);
	drop(ex);
	teardown();
}

static void case_post_unreached(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.failure = ACH_KIND_NETWORK, .unreached = 1});
	api((answer){.failure = ACH_KIND_TIMEOUT, .unreached = 1, .latency = 10});
	api((answer){.status = 201, .body = "{\"id\":7}"});
	ex = call("POST", "/api/v5/recognitions", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	/* refused, then a connect timeout: neither reached the server, so both are sent again */
	CHECK_INT(API_REQUESTS(), 3);
	CHECK_INT(ex->attempt, 3);
	CHECK_INT(ex->status, 201);
	CHECK_STR(kind_name(ex), "none");
	CHECK_INT(W.nretry, 2);
	check_backoff(0, 1);
	check_backoff(1, 2);
	CHECK(W.log[1].t >= W.retry_delay[0] - EPS, "sent before its delay");
	CHECK(W.log[2].t >= W.log[1].t + 10 + W.retry_delay[1] - EPS, "sent before its delay");
	drop(ex);
	teardown();
}

static void case_post_reached(void)
{
	ach_exchange *a, *b, *c;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.failure = ACH_KIND_NETWORK});
	api((answer){.failure = ACH_KIND_TIMEOUT, .latency = 30});
	api((answer){.failure = ACH_KIND_TLS, .unreached = 1});
	a = call("POST", "/api/v5/recognitions", ACH_CLASS_DEFAULT);
	finish(a);
	b = call("POST", "/api/v5/recognitions", ACH_CLASS_DEFAULT);
	finish(b);
	/* TLS failures are not retried even unreached, even for a GET: a bad certificate stays so */
	c = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(c);
	show_log();
	show_hooks();
	show_result("POST, network failure after sending", a);
	show_result("POST, timed out after sending", b);
	show_result("GET, TLS failure", c);
	common_checks();
	CHECK_INT(API_REQUESTS(), 3);
	CHECK_INT(a->attempt, 1);
	CHECK_STR(kind_name(a), "network");
	CHECK_HAS(a->message.data, "injected");
	CHECK_INT(b->attempt, 1);
	CHECK_STR(kind_name(b), "timeout");
	CHECK_INT(c->attempt, 1);
	CHECK_STR(kind_name(c), "tls");
	CHECK_INT(W.nretry, 0);
	drop(a);
	drop(b);
	drop(c);
	teardown();
}

static void case_retries_exhausted(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.status = 503});
	api((answer){.status = 502});
	api((answer){.failure = ACH_KIND_TIMEOUT, .latency = 30});
	api((answer){.status = 200}); /* never asked for */
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" retries = 2:\n");
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_INT(API_REQUESTS(), 3);
	CHECK_INT(ex->attempt, 3);
	CHECK_INT(W.api_next, 3);
	CHECK_INT(W.nretry, 2);
	check_backoff(0, 1);
	check_backoff(1, 2);
	/* the last error is the call's */
	CHECK_STR(kind_name(ex), "timeout");
	CHECK_INT(ex->status, 0);
	CHECK_HAS(ex->message.data, "injected transport failure");
	drop(ex);
	teardown();

	setup();
	hold_token("tok-A", 86400);
	W.core->opt.retries = 0;
	api((answer){.status = 503});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" retries = 0:\n");
	show_log();
	show_result("result", ex);
	common_checks();
	CHECK_INT(API_REQUESTS(), 1);
	CHECK_INT(W.nretry, 0);
	CHECK_STR(kind_name(ex), "server");
	drop(ex);
	teardown();
}

static void case_retry_max_wait(void)
{
	ach_exchange *a, *b, *c;
	setup();
	hold_token("tok-A", 86400);
	api((answer){.status = 429, .headers = "Retry-After: 60\r\n"});
	api((answer){.status = 200});
	api((answer){.status = 429, .headers = "Retry-After: 61\r\n"});
	api((answer){.status = 503, .headers = "Retry-After: 61\r\n"});
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	b = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(b);
	c = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(c);
	printf(" retry_max_wait = 60:\n");
	show_log();
	show_hooks();
	show_result("Retry-After 60", a);
	show_result("429 Retry-After 61", b);
	show_result("503 Retry-After 61", c);
	common_checks();
	/* equal to retry_max_wait: waited for, exactly */
	CHECK_INT(a->attempt, 2);
	CHECK_INT(a->status, 200);
	CHECK_NEAR(W.log[1].t, 60, EPS);
	/* above it: not retried, the server's answer is the call's */
	CHECK_INT(b->attempt, 1);
	CHECK_STR(kind_name(b), "rate_limited");
	CHECK_NEAR(b->retry_after, 61, EPS);
	CHECK_INT(c->attempt, 1);
	CHECK_STR(kind_name(c), "server");
	CHECK_NEAR(c->retry_after, 61, EPS);
	CHECK_INT(API_REQUESTS(), 4);
	CHECK_INT(W.nretry, 1);
	CHECK_INT(W.nrl, 1);
	CHECK_NEAR(rel(W.now), 60, EPS);
	drop(a);
	drop(b);
	drop(c);
	teardown();

	/* the backoff is held to it as well */
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.retry_max_wait = 0.1;
	api((answer){.status = 503});
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	printf(" retry_max_wait = 0.1 (backoff at least 0.125):\n");
	show_log();
	show_result("result", a);
	common_checks();
	CHECK_INT(a->attempt, 1);
	CHECK_INT(W.nretry, 0);
	CHECK_STR(kind_name(a), "server");
	drop(a);
	teardown();
}

/* ---- cases: deadline --------------------------------------------------------------------------- */

static void case_deadline_retry_would_pass(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.deadline = 1;
	api((answer){.failure = ACH_KIND_TIMEOUT, .latency = 0.9});
	api((answer){.status = 200}); /* never asked for */
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	/* the attempt's timeout is cut to the deadline */
	CHECK_NEAR(W.log[0].timeout, 1, EPS);
	/* at t=0.9 the shortest backoff (0.125 s) passes t=1: no second attempt */
	CHECK_INT(API_REQUESTS(), 1);
	CHECK_INT(ex->attempt, 1);
	CHECK_INT(W.nretry, 0);
	CHECK_STR(kind_name(ex), "timeout");
	CHECK_INT(ex->deadline_hit, 1);
	CHECK_HAS(ex->message.data, "would pass before a retry after 1 attempt");
	CHECK_NEAR(rel(W.now), 0.9, EPS);
	drop(ex);
	teardown();
}

static void case_deadline_hang(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.deadline = 2;
	api((answer){.hang = 1});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_NEAR(W.log[0].timeout, 2, EPS); /* not timeout = 30 */
	CHECK_NEAR(W.log[0].done_t, 2, EPS);
	CHECK_INT(ex->attempt, 1);
	CHECK_INT(W.nretry, 0);
	CHECK_STR(kind_name(ex), "timeout");
	CHECK_INT(ex->deadline_hit, 1);
	CHECK_HAS(ex->message.data, "the call's deadline (2 s) passed after 1 attempt");
	drop(ex);
	teardown();
}

/* A status answer (503) whose retry would pass the deadline: not retried, and the call ends
 * with the server's answer (kind server), not kind timeout: engine.c sets the deadline failure
 * only when the last attempt itself timed out. */
static void case_deadline_status(void)
{
	ach_exchange *a, *b;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.deadline = 1;
	api((answer){.status = 503, .headers = "Retry-After: 2\r\n"});
	api((answer){.status = 503, .latency = 0.9});
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	b = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(b);
	show_log();
	show_hooks();
	show_result("503 Retry-After 2", a);
	show_result("503 at t=0.9, backoff >= 0.125", b);
	common_checks();
	CHECK_INT(API_REQUESTS(), 2);
	CHECK_INT(W.nretry, 0);
	CHECK_INT(a->attempt, 1);
	CHECK_STR(kind_name(a), "server");
	CHECK_INT(a->deadline_hit, 0);
	CHECK_INT(b->attempt, 1);
	CHECK_STR(kind_name(b), "server");
	CHECK_INT(b->deadline_hit, 0);
	drop(a);
	drop(b);
	teardown();
}

/* ---- cases: 401 ---------------------------------------------------------------------------------- */

static void case_auth_401_once(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-old", 86400);
	api((answer){.status = 401});
	api((answer){.status = 200});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_INT(W.nlog, 3);
	CHECK_INT(TOKEN_REQUESTS(), 1);
	CHECK_INT(API_REQUESTS(), 2);
	CHECK_STR(W.log[0].auth, "Bearer tok-old");
	CHECK_INT(W.log[1].token, 1);
	CHECK_STR(W.log[2].auth, "Bearer tok-1");
	CHECK_INT(W.token_hook, 1);
	CHECK_STR(W.hook_token, "tok-1");
	CHECK_INT(ex->status, 200);
	CHECK_STR(kind_name(ex), "none");
	CHECK_INT(W.nretry, 0);
	CHECK_STR(W.slot->tok->access_token, "tok-1");
	drop(ex);
	teardown();
}

static void case_auth_401_twice(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-old", 86400);
	api((answer){.status = 401});
	api((answer){.status = 401});
	api((answer){.status = 200}); /* never asked for */
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	CHECK_INT(W.nlog, 3);
	CHECK_INT(TOKEN_REQUESTS(), 1);
	CHECK_INT(API_REQUESTS(), 2);
	CHECK_INT(W.api_next, 2);
	CHECK_STR(W.log[2].auth, "Bearer tok-1");
	CHECK_INT(ex->status, 401);
	CHECK_STR(kind_name(ex), "auth");
	drop(ex);
	teardown();
}

static void case_auth_401_concurrent(void)
{
	ach_exchange *v[3];
	int i;
	setup();
	hold_token("tok-old", 86400);
	for (i = 0; i < 3; i++)
		api((answer){.status = 401});
	for (i = 0; i < 3; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v, 3);
	show_log();
	show_hooks();
	common_checks();
	/* the first 401 drops the token; the others find it gone and wait for its replacement */
	CHECK_INT(TOKEN_REQUESTS(), 1);
	CHECK_INT(API_REQUESTS(), 6);
	for (i = 0; i < 3; i++) {
		CHECK_STR(W.log[i].auth, "Bearer tok-old");
		CHECK_STR(W.log[4 + i].auth, "Bearer tok-1");
		CHECK_INT(v[i]->status, 200);
		drop(v[i]);
	}
	CHECK_INT(W.log[3].token, 1);
	teardown();
}

/* ---- cases: tokens ------------------------------------------------------------------------------- */

static void case_token_shared(void)
{
	ach_exchange *v[12];
	int i;
	setup();
	W.token_latency = 0.05;
	W.api_latency = 0.05;
	for (i = 0; i < 12; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v, 12);
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(TOKEN_REQUESTS(), 1);
	CHECK_INT(API_REQUESTS(), 12);
	CHECK_INT(W.log[0].token, 1);
	CHECK_NEAR(W.log[0].t, 0, EPS);
	for (i = 1; i < W.nlog; i++) {
		CHECK_STR(W.log[i].auth, "Bearer tok-1");
		/* max_concurrency = 8: eight go when the token arrives, four when they are answered */
		CHECK_NEAR(W.log[i].t, i <= 8 ? 0.05 : 0.1, EPS);
	}
	CHECK_INT(W.max_active, 8);
	CHECK_INT(W.token_hook, 1);
	for (i = 0; i < 12; i++) {
		CHECK_INT(v[i]->status, 200);
		drop(v[i]);
	}
	teardown();
}

static void case_token_refresh_window(void)
{
	ach_exchange *a, *b, *c;
	setup();
	hold_token("tok-A", 7300); /* refresh_window 7200 */
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	W.now += 99; /* 7201 s left: still outside the window */
	b = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(b);
	W.now += 2; /* 7199 s left: inside */
	c = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(c);
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(W.nlog, 4);
	CHECK_STR(W.log[0].auth, "Bearer tok-A");
	CHECK_STR(W.log[1].auth, "Bearer tok-A");
	/* the new token is asked for before the call, which then goes with it */
	CHECK_INT(W.log[2].token, 1);
	CHECK_NEAR(W.log[2].t, 101, EPS);
	CHECK_STR(W.log[3].auth, "Bearer tok-1");
	CHECK_INT(W.token_hook, 1);
	drop(a);
	drop(b);
	drop(c);
	teardown();
}

/* The token server hands back the token we hold (its expiry unchanged): that ends the matter
 * for min(300 s, max(remaining/2, 1 s)), engine.c's token_fetch_done; no storm. */
static void case_token_same_back(void)
{
	ach_exchange *ex;
	int i, k = 0;
	double want[] = {0, 300, 600, 900};
	setup();
	hold_token("tok-same", 3600); /* inside refresh_window (7200) for its whole life */
	W.same_token = "tok-same";
	W.same_expires = WALL0 + 3600; /* expires_in >= 1e9 reads as a UNIX time: same expiry */
	for (i = 0; i < 100; i++) {
		W.now = T0 + 10.0 * i;
		ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
		finish(ex);
		CHECK_INT(ex->status, 200);
		drop(ex);
	}
	for (i = 0; i < W.nlog; i++)
		if (W.log[i].token) {
			printf("  token request at t=%.3f\n", W.log[i].t);
			CHECK(k < 4, "more than 4 token requests");
			CHECK_NEAR(W.log[i].t, want[k], EPS);
			k++;
		} else {
			CHECK_STR(W.log[i].auth, "Bearer tok-same");
		}
	show_hooks();
	printf("  100 calls over 990 s: %d API requests, %d token requests\n", API_REQUESTS(),
	       TOKEN_REQUESTS());
	common_checks();
	CHECK_INT(API_REQUESTS(), 100);
	CHECK_INT(TOKEN_REQUESTS(), 4);
	CHECK_INT(W.token_hook, 0); /* the same token: nothing new to tell */
	teardown();
}

static void case_token_expired(void)
{
	ach_exchange *ex;
	/* a held token past its expiry: the call waits for a new one */
	setup();
	hold_token("tok-expired", -10);
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" held token expired 10 s ago:\n");
	show_log();
	common_checks();
	CHECK_INT(W.nlog, 2);
	CHECK_INT(W.log[0].token, 1);
	CHECK_STR(W.log[1].auth, "Bearer tok-1");
	drop(ex);
	teardown();

	/* it expires while a call waits to retry: the retry goes with a new token */
	setup();
	W.core->opt.refresh_window = 0;
	hold_token("tok-short", 2);
	api((answer){.status = 429, .headers = "Retry-After: 3\r\n"});
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	printf(" token expires during a 3 s Retry-After wait (refresh_window 0):\n");
	show_log();
	common_checks();
	CHECK_INT(W.nlog, 3);
	CHECK_STR(W.log[0].auth, "Bearer tok-short");
	CHECK_INT(W.log[1].token, 1);
	CHECK_NEAR(W.log[1].t, 3, EPS);
	CHECK_STR(W.log[2].auth, "Bearer tok-1");
	CHECK_INT(ex->status, 200);
	drop(ex);
	teardown();
}

/* A user token with no refresh token, past expiry on our clock: the call fails kind
 * reauthorize and nothing is sent. (It once fell through to a client_credentials request, so
 * the person's slot got the program's token and the call went out as the program: DESIGN.md
 * says every person acts only as themself, as the 401 path already answered.) */
static void case_token_user_expired(void)
{
	ach_exchange *ex;
	setup();
	hold_token("tok-user", -1);
	free(W.slot->tok->grant_type);
	W.slot->tok->grant_type = ach_strdup("authorization_code");
	W.slot->user = 1; /* as binding/client.c's set_slot_token says for that grant */
	ex = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(ex);
	show_log();
	show_hooks();
	show_result("result", ex);
	common_checks();
	/* a person's call never goes out as the program: nothing is sent, the person must sign
	 * in again */
	CHECK_INT(W.nlog, 0);
	CHECK_INT(ex->failure, ACH_KIND_REAUTHORIZE);
	CHECK_INT(W.slot->user, 1);
	CHECK_STR(W.slot->tok->grant_type, "authorization_code");
	CHECK_INT(W.token_hook, 0);
	drop(ex);
	teardown();
}

/* The token server hands out a token that has already expired (our clock and its disagree):
 * engine.c's waiters use the token they waited for "whatever its age" (fresh_token), and the
 * slot keeps it for refresh_after = max(remaining/2, 1 s). What that does, exactly. */
static void case_token_expired_on_arrival(void)
{
	ach_exchange *a, *b, *c;
	setup();
	W.allow_expired = 1;
	W.same_token = "tok-stale";
	W.same_expires = WALL0 - 5;
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	W.now += 0.5;
	b = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(b);
	W.now += 0.5;
	c = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(c);
	show_log();
	show_hooks();
	common_checks();
	/* t=0: asked, and sent as it came; t=0.5: still inside refresh_after (1 s): sent again
	 * with no token request; t=1: asked again */
	CHECK_INT(W.nlog, 5);
	CHECK_INT(W.log[0].token, 1);
	CHECK_STR(W.log[1].auth, "Bearer tok-stale");
	CHECK_STR(W.log[2].auth, "Bearer tok-stale");
	CHECK_NEAR(W.log[2].t, 0.5, EPS);
	CHECK_INT(W.log[3].token, 1);
	CHECK_NEAR(W.log[3].t, 1, EPS);
	CHECK_STR(W.log[4].auth, "Bearer tok-stale");
	CHECK_INT(TOKEN_REQUESTS(), 2);
	CHECK_INT(W.expired_sent, 3);
	drop(a);
	drop(b);
	drop(c);
	teardown();
}

/* ---- cases: governor ------------------------------------------------------------------------------ */

static void check_send_times(const char *path, const double *want, int n)
{
	int i, k = 0;
	for (i = 0; i < W.nlog; i++) {
		if (W.log[i].token || strcmp(W.log[i].url, path) != 0)
			continue;
		CHECK(k < n, "more requests to %s than expected", path);
		CHECK(fabs(W.log[i].t - want[k]) <= EPS, "request %d to %s at t=%.6f, expected %.6f", k,
		      path, W.log[i].t, want[k]);
		k++;
	}
	CHECK(k == n, "%d requests to %s, expected %d", k, path, n);
}

static void case_governor_default(void)
{
	ach_exchange *v[12];
	int i;
	const double want[12] = {0, 0, 0, 0, 0, 10.5, 10.5, 10.5, 10.5, 10.5, 21, 21};
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){5, 10};
	for (i = 0; i < 12; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v, 12);
	show_log();
	show_hooks();
	common_checks();
	/* the memory store's window is the limit's plus 5% of it (at most 1 s): 10.5 s */
	check_send_times("/api/v5/users", want, 12);
	CHECK_INT(W.nrl, 9);
	for (i = 0; i < W.nrl; i++) {
		CHECK_INT(W.rl_server[i], 0);
		CHECK_NEAR(W.rl_wait[i], 10.5, EPS);
		CHECK_NEAR(W.rl_t[i], i < 7 ? 0 : 10.5, EPS);
	}
	CHECK_INT(W.nretry, 0);
	for (i = 0; i < 12; i++) {
		CHECK_INT(v[i]->status, 200);
		drop(v[i]);
	}
	teardown();
}

static void case_governor_heavy(void)
{
	ach_exchange *v[14];
	int i, n = 0;
	const double d6[6] = {0, 0, 0, 0, 0, 10.5}, h4[4] = {0, 0, 0, 10.5};
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){5, 10};
	W.core->opt.limits[ACH_CLASS_HEAVY] = (ach_limit){3, 10};
	/* GET recognitions and GET newsfeed-events are heavy, each with its own budget
	 * (binding/resources.c sets rate_class; engine.c's bucket_of picks the budget) */
	for (i = 0; i < 6; i++)
		v[n++] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	for (i = 0; i < 4; i++)
		v[n++] = call("GET", "/api/v5/recognitions", ACH_CLASS_HEAVY);
	for (i = 0; i < 4; i++)
		v[n++] = call("GET", "/api/v5/newsfeed-events", ACH_CLASS_HEAVY);
	finish_all(v, n);
	show_log();
	show_hooks();
	common_checks();
	check_send_times("/api/v5/users", d6, 6);
	check_send_times("/api/v5/recognitions", h4, 4);
	check_send_times("/api/v5/newsfeed-events", h4, 4);
	CHECK_INT(W.nrl, 3);
	for (i = 0; i < W.nrl; i++) {
		CHECK_INT(W.rl_server[i], 0);
		CHECK_NEAR(W.rl_wait[i], 10.5, EPS);
	}
	for (i = 0; i < n; i++)
		drop(v[i]);
	teardown();
}

static void case_governor_per_token(void)
{
	ach_exchange *v[11];
	int i;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){5, 10};
	for (i = 0; i < 5; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v, 5);
	hold_token("tok-B", 86400); /* a new token: its budget is fresh */
	for (i = 5; i < 11; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v + 5, 6);
	printf(" token changed by its holder:\n");
	show_log();
	show_hooks();
	common_checks();
	for (i = 0; i < 5; i++) {
		CHECK_STR(W.log[i].auth, "Bearer tok-A");
		CHECK_NEAR(W.log[i].t, 0, EPS);
	}
	for (i = 5; i < 11; i++) {
		CHECK_STR(W.log[i].auth, "Bearer tok-B");
		CHECK_NEAR(W.log[i].t, i < 10 ? 0 : 10.5, EPS);
	}
	CHECK_INT(W.nrl, 1);
	for (i = 0; i < 11; i++)
		drop(v[i]);
	teardown();

	/* the engine's own new token (after a 401) starts a fresh budget too */
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){2, 10};
	api((answer){.status = 200});
	api((answer){.status = 401});
	v[0] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(v[0]);
	v[1] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(v[1]);
	v[2] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	v[3] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v + 2, 2);
	printf(" token replaced after a 401 (limit 2 per 10 s):\n");
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(W.nlog, 6);
	CHECK_STR(W.log[0].auth, "Bearer tok-A");
	CHECK_STR(W.log[1].auth, "Bearer tok-A");
	CHECK_INT(W.log[2].token, 1);
	CHECK_STR(W.log[3].auth, "Bearer tok-1");
	CHECK_NEAR(W.log[3].t, 0, EPS); /* tok-A's budget is spent; tok-1's is not */
	CHECK_STR(W.log[4].auth, "Bearer tok-1");
	CHECK_NEAR(W.log[4].t, 0, EPS);
	CHECK_STR(W.log[5].auth, "Bearer tok-1");
	CHECK_NEAR(W.log[5].t, 10.5, EPS);
	CHECK_INT(W.nrl, 1);
	for (i = 0; i < 4; i++) {
		CHECK_INT(v[i]->status, 200);
		drop(v[i]);
	}
	teardown();
}

static void case_governor_deadline(void)
{
	ach_exchange *a, *b;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){1, 10};
	W.core->opt.deadline = 5;
	a = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(a);
	b = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish(b);
	show_log();
	show_hooks();
	show_result("second call", b);
	common_checks();
	CHECK_INT(W.nlog, 1);
	CHECK_INT(a->status, 200);
	CHECK_INT(b->attempt, 0);
	CHECK_STR(kind_name(b), "timeout");
	CHECK_INT(b->deadline_hit, 1);
	CHECK_HAS(b->message.data, "would pass while rate-limit pacing held it");
	CHECK_INT(W.nrl, 0); /* not held: it ends at once */
	CHECK_NEAR(rel(W.now), 0, EPS);
	drop(a);
	drop(b);
	teardown();
}

static void case_governor_off(void)
{
	ach_exchange *v[12];
	int i;
	setup();
	hold_token("tok-A", 86400);
	W.core->opt.limits[ACH_CLASS_DEFAULT] = (ach_limit){5, 10};
	W.core->opt.rate_limit = 0;
	for (i = 0; i < 12; i++)
		v[i] = call("GET", "/api/v5/users", ACH_CLASS_DEFAULT);
	finish_all(v, 12);
	show_log();
	show_hooks();
	common_checks();
	CHECK_INT(API_REQUESTS(), 12);
	for (i = 0; i < W.nlog; i++)
		CHECK_NEAR(W.log[i].t, 0, EPS);
	CHECK_INT(W.nrl, 0);
	for (i = 0; i < 12; i++)
		drop(v[i]);
	teardown();
}

/* ---- main ------------------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	void (*fn)(void);
	const char *what;
} cases[] = {
	{"retry_503", case_retry_503, "GET answered 503 then 200: 2 attempts, the second after the backoff (0.25 s, jitter 50-100%)"},
	{"retry_jitter_bounds", case_retry_jitter_bounds, "random byte 0 gives 0.125 s then 0.25 s, byte 255 gives 0.25 s then 0.5 s"},
	{"retry_429", case_retry_429, "429 with Retry-After: 3 is retried after exactly 3 s (GET and POST), rate_limit hook with server=1"},
	{"post_503", case_post_503, "POST answered 503 is not retried: 1 attempt, kind server"},
	{"post_unreached", case_post_unreached, "POST whose transport failed before reaching the server is retried"},
	{"post_reached", case_post_reached, "POST that reached the server then failed is not retried; TLS failures never are"},
	{"retries_exhausted", case_retries_exhausted, "retries = 2: 3 attempts, then the last error; retries = 0: 1 attempt"},
	{"retry_max_wait", case_retry_max_wait, "a wait above retry_max_wait is not retried (Retry-After 61 > 60; backoff > 0.1); equal is"},
	{"deadline_retry_would_pass", case_deadline_retry_would_pass, "a timed-out attempt whose retry would pass the deadline ends kind timeout, no extra attempt"},
	{"deadline_hang", case_deadline_hang, "an attempt's timeout is cut to the deadline; a server that never answers ends the call at it"},
	{"deadline_status", case_deadline_status, "a 503 whose retry would pass the deadline is not retried and ends kind server"},
	{"auth_401_once", case_auth_401_once, "401: one token request, the call sent again once with the new token"},
	{"auth_401_twice", case_auth_401_twice, "401 again with the new token: kind auth, 3 requests in all, no loop"},
	{"auth_401_concurrent", case_auth_401_concurrent, "3 calls answered 401 together share one token request"},
	{"token_shared", case_token_shared, "12 calls with no token: 1 token request; at most max_concurrency (8) on the wire"},
	{"token_refresh_window", case_token_refresh_window, "a token inside refresh_window is replaced before the call; outside it is used"},
	{"token_same_back", case_token_same_back, "the same token handed back: 4 token requests for 100 calls over 990 s (one per 300 s)"},
	{"token_expired", case_token_expired, "an expired token is never sent: held, or expiring during a retry wait"},
	{"token_user_expired", case_token_user_expired, "an expired user token with no refresh token: reauthorize, nothing sent (never the program's token)"},
	{"token_expired_on_arrival", case_token_expired_on_arrival, "a token that arrives expired is used as given, and asked for again after 1 s"},
	{"governor_default", case_governor_default, "limit 5 per 10 s, 12 calls: 5 at t=0, 5 at t=10.5, 2 at t=21; rate_limit hook server=0"},
	{"governor_heavy", case_governor_heavy, "recognitions and newsfeed-events each have their own heavy budget, apart from the default"},
	{"governor_per_token", case_governor_per_token, "a new token starts a fresh budget (set by the holder, or after a 401)"},
	{"governor_deadline", case_governor_deadline, "a pacing wait that would pass the deadline ends the call kind timeout, nothing sent"},
	{"governor_off", case_governor_off, "rate_limit = false: 12 calls at t=0"},
};

int main(int argc, char **argv)
{
	size_t i, n = sizeof cases / sizeof cases[0];
	if (argc != 2) {
		fprintf(stderr, "usage: engine_spec CASE | --list\n");
		return 2;
	}
	if (strcmp(argv[1], "--list") == 0) {
		for (i = 0; i < n; i++)
			printf("%s\t%s\n", cases[i].name, cases[i].what);
		return 0;
	}
	for (i = 0; i < n; i++)
		if (strcmp(argv[1], cases[i].name) == 0) {
			case_name = cases[i].name;
			printf("%s: %s\n", cases[i].name, cases[i].what);
			cases[i].fn();
			printf("ok %s\n", cases[i].name);
			return 0;
		}
	fprintf(stderr, "engine_spec: no case '%s' (--list lists them)\n", argv[1]);
	return 2;
}
