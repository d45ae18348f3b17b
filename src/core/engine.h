/*
 * engine.h: the exchange engine, the policy of every call with no I/O (doc/design.md,
 * "Layers"). Clients hold a core (options, scheduler, store) and slots (token holders);
 * a call is an exchange that a driver moves. Core: includes only core headers.
 */
#ifndef ACH_CORE_ENGINE_H
#define ACH_CORE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/env.h"
#include "core/kind.h"
#include "core/token.h"
#include "core/url.h"

#define ACH_API_PREFIX "/api/v5/"
/* The default of the frame_budget option: seconds of work a call made from a frame (poll(0),
 * async) may spend before it leaves the rest to the next poll. */
#define ACH_FRAME_BUDGET 0.0001

typedef struct ach_store ach_store; /* core/store.h */
typedef struct ach_core ach_core;
typedef struct ach_slot ach_slot;
typedef struct ach_exchange ach_exchange;

typedef enum ach_token_auth { ACH_AUTH_JSON, ACH_AUTH_BASIC, ACH_AUTH_POST } ach_token_auth;

typedef struct ach_limit {
	int count;
	double window;
} ach_limit;

enum { ACH_CLASS_DEFAULT, ACH_CLASS_HEAVY, ACH_CLASS_COUNT };

/* budgets as the server counts them (core/store.h): */
/* Everything else; GET /recognitions; GET /newsfeed-events: each heavy one its own budget. */
enum { ACH_BUCKET_DEFAULT, ACH_BUCKET_RECOGNITIONS, ACH_BUCKET_NEWSFEED, ACH_BUCKET_COUNT };

/* A socket and a timer of the state store, watched by the driver's poll with libcurl's. */
typedef struct ach_watch {
	int fd;       /* -1: none */
	short events; /* POLLIN, POLLOUT */
	double timer; /* monotonic seconds when on_ready wants calling anyway; < 0: never */
	int (*busy)(void *ud); /* answers awaited: the driver must keep running */
	void (*on_ready)(void *ud, short revents); /* revents 0: the timer */
	void *ud;
} ach_watch;

/* The slot's leases of rate slots, one per budget bucket. */
typedef struct ach_lease {
	struct ach_slot *slot;
	int bucket;
	int n;           /* slots left to spend */
	int ask;         /* how many the next take asks for (grows while leases get used up) */
	double until;    /* monotonic: slots left after this are not spent */
	double next;     /* monotonic: no slot before this (the store said wait) */
	int taking;      /* a take is in flight */
	double take_sent;
	char take_hash[17]; /* the token the take in flight was for */
	char id[48];     /* the store's name of the lease held, to give unspent slots back */
	int granted;     /* slots the lease held had */
	struct ach_exchange *waiters; /* exchanges waiting for the take in flight */
} ach_lease;

/* Options shared by a client and the clients with_token derives from it. */
typedef struct ach_options {
	ach_url base;
	char *client_id;
	char *client_secret;
	char *scope_comma; /* "read,write" */
	char *scope_space; /* "read write" */
	char *redirect_uri;
	char *ca_file;
	char *proxy;
	char *user_agent;
	ach_token_auth token_auth;
	double timeout;
	double connect_timeout;
	double refresh_window;
	int retries;
	double retry_max_wait;
	int rate_limit;
	ach_limit limits[ACH_CLASS_COUNT];
	int max_concurrency;
	double frame_budget; /* seconds of work a poll(0) or an async call may do */
	int insecure;
	size_t max_response;
	int pkce; /* authorize_url adds an S256 code_challenge (RFC 7636) */
	double deadline; /* seconds for a whole call, retries and waits included; 0: none */
} ach_options;

/* What a driver must send. The strings belong to the exchange. */
typedef struct ach_http_request {
	const char *method;
	const char *url;
	const char *const *headers; /* "Name: value", NULL-terminated */
	const char *body;
	size_t body_len;
	double timeout;
	int attempt;
} ach_http_request;

/* What a driver got back. */
typedef struct ach_http_response {
	long status;       /* 0 when there was no answer */
	ach_kind failure;  /* NONE, or NETWORK/TIMEOUT/TLS when there was no answer */
	int reached;       /* 0 when the request provably never reached the server */
	const char *message; /* transport message when failure != NONE */
	const char *headers; size_t headers_len; /* raw header block of the final answer */
	const char *body; size_t body_len;
} ach_http_response;

typedef enum ach_step {
	ACH_STEP_SEND,    /* ach_exchange_request() says what to send */
	ACH_STEP_WAIT,    /* call again at ach_exchange_wake() (monotonic seconds) */
	ACH_STEP_BLOCKED, /* waiting for another exchange (a shared token request) */
	ACH_STEP_DONE
} ach_step;

/* What the engine asks of a driver, the layer that moves bytes (curl/driver.c; the Lua
 * driver of binding/lua_driver.c loops outside and steps its exchange itself). A table of
 * functions with a user-data pointer: the core includes no driver. */
typedef struct ach_driver {
	/* puts the request the exchange asks for (ach_exchange_request) on the wire; 0, or -1
	 * when it could not (the scheduler fails the exchange) */
	int (*start)(void *ud, ach_exchange *ex);
	/* takes an exchange's request off the wire (its connection is closed) */
	void (*cancel)(void *ud, ach_exchange *ex);
	/* waits up to ms milliseconds (0: not at all) for I/O, moves bytes (a unit of work each:
	 * ach_core_work; none past ach_core_over_budget), and hands finished answers back with
	 * ach_exchange_response; returns how many it handed back, or -1 when it cannot wait (its
	 * callers move their own exchanges: ach_core_step_own) */
	int (*pump)(void *ud, int ms);
	int (*active)(void *ud);   /* requests on the wire */
	double (*timer)(void *ud); /* when it wants pumping anyway (monotonic seconds); < 0: never */
	void (*free)(void *ud);
	void *ud;
} ach_driver;

/* What the engine tells its host while a call runs (client.c makes them Lua hooks). Any may be
 * NULL. They may run Lua code: the engine calls them only where its state is consistent. */
typedef struct ach_hooks {
	void (*token)(void *ud, ach_exchange *ex, ach_slot *slot); /* a new token in the slot */
	void (*trace)(void *ud, ach_exchange *ex, const char *phase, const ach_http_response *resp);
	void (*retry)(void *ud, ach_exchange *ex, double delay);
	/* `wait` seconds held back by our pacing, or (server != 0) by the server's 429 */
	void (*rate_limit)(void *ud, ach_exchange *ex, double wait, int server);
	void (*store)(void *ud, int up, const char *message); /* the shared store went down/up */
	int (*ready)(void *ud);    /* whether hooks can run now (NULL: always) */
	void (*release)(void *ud); /* the core is going away */
	void *ud;
} ach_hooks;

struct ach_core {
	int refs;
	ach_options opt;
	ach_env env;     /* clocks and random bytes */
	ach_driver drv;  /* moves the bytes */
	ach_hooks hooks;
	int64_t skew; /* server clock minus ours, from Date headers */
	ach_exchange *runnable; /* exchanges the scheduler must step (linked list) */
	unsigned finished; /* exchanges that ever finished: a counter, for the scheduler to notice */
	ach_exchange *done_head, *done_tail; /* finished watched exchanges poll has not reported */
	int done_count;
	int in_driver;     /* > 0 while the scheduler runs: hooks must not start blocking calls */
	unsigned round;    /* the scheduler's stepping pass (exchanges remember the last they saw) */
	double budget_end; /* this run's work budget ends (monotonic; INFINITY: none) */
	int cannot_wait;   /* the driver said it cannot wait (pump < 0) */
	int units;         /* units of work done in this run: a request started, a socket served */
	ach_buf spare[32]; /* answer buffers kept for reuse: no large malloc per request, so no */
	int nspare;        /* allocator consolidation pause inside some frame's poll */
	ach_store *store; /* tokens and rate budgets (src/store/): memory unless configured */
	ach_watch watch;  /* the store's socket and timer in the driver's poll */
};

/* A token holder: one per client object. Exchanges that need a token ask their slot. */
struct ach_slot {
	int refs;
	ach_core *core;
	ach_token_data *tok;
	int user; /* holds a user token (from authorization_code or with_token) */
	ach_exchange *fetching; /* the token request in flight, shared by everybody waiting */
	ach_exchange *waiters;
	double refresh_after; /* no refresh before (monotonic), after one returned the same token */
	char tok_hash[17]; /* the held access token's hash (names its budgets in the store) */
	char bad_hash[17]; /* a token the server rejected: not taken from the store again */
	ach_lease lease[ACH_BUCKET_COUNT]; /* rate governor: slots taken from the store */
};

typedef enum ach_ex_type {
	ACH_EX_API,    /* an API call */
	ACH_EX_TOKEN,  /* a token request (a slot's shared one, or exchange_code's) */
	ACH_EX_ENSURE  /* client:token(): ends when the slot holds a usable token */
} ach_ex_type;

/* A core with this environment (ach_env_system for the real one), no driver, no hooks and no
 * store yet: its host gives them (ach_core_set_store) before the first exchange. */
ach_core *ach_core_new(const ach_env *env);
/* Gives the core its store (taken over; the one it had is freed). */
void ach_core_set_store(ach_core *c, ach_store *st);
void ach_core_unref(ach_core *c);
/* Gives an empty buffer a kept one (if any); takes a buffer's memory back for reuse. */
void ach_core_take_buffer(ach_core *c, ach_buf *b);
void ach_core_give_buffer(ach_core *c, ach_buf *b);
ach_slot *ach_slot_new(ach_core *c);
void ach_slot_unref(ach_slot *s);
void ach_slot_set_token(ach_slot *s, ach_token_data *t); /* takes a new reference */

struct ach_exchange {
	ach_ex_type type;
	int state;
	ach_core *core;
	ach_slot *slot;
	/* the call */
	char *method;
	char *url;
	ach_buf body;
	char *content_type;   /* a whole "Content-Type: ..." header line */
	char **extra_headers; /* "Name: value", NULL-terminated */
	double timeout;
	int needs_auth;
	int rate_class;
	int force_refresh; /* ENSURE: get a new token even if the held one is fresh */
	int forced;
	/* token requests */
	ach_grant grant;
	char *code; /* authorization code, or the refresh token */
	char *code_verifier; /* PKCE (RFC 7636): sent with an authorization code, when given */
	char *grant_scope;
	int owned_by_slot;
	/* progress */
	int attempt;
	int auth_retried;
	ach_token_data *used_token; /* the token this attempt was sent with */
	int fresh_token;            /* a token request just ended for this exchange: use its token */
	double wake_at;
	double started;
	double deadline_at; /* monotonic; the call fails with kind timeout past it (0: none) */
	int deadline_hit;   /* it failed because of deadline_at */
	int warm;           /* client:warm's request: opens a connection, no hooks see it */
	const char **headers; /* the header lines handed to the driver */
	ach_buf scratch;      /* building space that __gc frees if a raise interrupts */
	ach_buf auth_header;
	/* outcome */
	ach_kind failure;
	long status;
	ach_buf resp_headers;
	ach_buf resp_body;
	ach_buf message;
	double retry_after; /* -1 when the server did not say */
	ach_token_data *token; /* a token or ENSURE exchange's result */
	int token_failed;      /* failed because the token request did: the fields below say which */
	char *error_method;
	ach_buf error_url;
	/* bookkeeping */
	int in_runnable;
	ach_exchange *next_runnable;
	ach_exchange *next_waiter;
	void *transfer; /* the driver's per-exchange state */
	int watched;    /* poll reports it: once finished, it waits on the core's done list */
	ach_exchange *done_prev, *done_next; /* the core's done list, in order of finishing */
	int in_done;    /* on that list */
	/* state store */
	int sync;        /* a shared token request's progress through the store (engine.c) */
	int store_wait;  /* a store answer is awaited */
	int in_step;     /* ach_exchange_step runs: a store answer given at once waits for it */
	int locked;      /* holds the store's token lock */
	int from_store;  /* its token came from the store, not from the server */
	double fresh_until; /* wall time: a stored token inside the refresh window is used till then */
	char *seen;      /* the stored token text it saw (compare-and-set), seen_len bytes */
	size_t seen_len;
	unsigned stepped; /* the driver's last stepping round that saw it */
};

void ach_exchange_init(ach_exchange *ex, ach_core *core, ach_slot *slot, ach_ex_type type);
void ach_exchange_release(ach_exchange *ex); /* frees what the exchange owns; idempotent */
/* Frees the bodies, headers and buffers of a finished exchange whose result has been taken. */
void ach_exchange_trim(ach_exchange *ex);
void ach_exchange_schedule(ach_exchange *ex); /* put on the runnable list */
ach_step ach_exchange_step(ach_exchange *ex, double now);
double ach_exchange_wake(const ach_exchange *ex); /* when a sleeping exchange wants a step */
int ach_exchange_waits_on_slot(const ach_exchange *ex); /* blocked on the slot's token request */
void ach_exchange_request(ach_exchange *ex, ach_http_request *req);
/* The request is on the wire: the trace hook sees it (called once the exchange is consistent,
 * by the scheduler or by a driver that steps its exchange itself). */
void ach_exchange_sent(ach_exchange *ex);
void ach_exchange_response(ach_exchange *ex, const ach_http_response *resp, double now);
int ach_exchange_done(const ach_exchange *ex);
/* Whether poll should report the exchange when it finishes (on: it is put on the core's done
 * list then, or now if it has finished); off takes it off the list. */
void ach_exchange_watch(ach_exchange *ex, int on);
/* Detaches the exchange from its slot, the runnable list and the driver. */
void ach_exchange_cancel(ach_exchange *ex);
/* Ends a pending exchange now with this failure (req:cancel()): its transfer leaves libcurl,
 * it leaves the slot's waiters (a token request it waited on goes on for the others). No-op
 * on a finished exchange or a slot's own token request. Returns 1 when it stopped it. */
int ach_exchange_stop(ach_exchange *ex, ach_kind kind, const char *message);

/* ---- sched.c: the scheduler, one for every driver that has a start ---------------------- */

/* Steps runnable exchanges and pumps the driver until `until` (monotonic), or until `target`
 * is done, or (target NULL) until any exchange finishes, or until `budget` seconds of work are
 * used (INFINITY: no budget; at least one unit of work, a request started or a socket served,
 * is always done). Never blocks when until <= now. Returns how many finished. */
int ach_core_run(ach_core *core, ach_exchange *target, double until, double budget);
/* Runs the exchange to its end (blocking); 0, -1 when nothing can move it any more (an
 * internal error: the caller says so), or -2 when its driver cannot wait (its callers move
 * their own exchanges). */
int ach_core_finish(ach_core *core, ach_exchange *ex);
/* One step of a caller's own exchange, for drivers that loop outside (binding/lua_driver.c):
 * the exchange, or the slot's token request it waits on (not past the exchange's deadline).
 * *stepped is the exchange the outcome concerns: SEND, its request was started through the
 * driver (ach_exchange_request says what it is); WAIT, until ach_exchange_wake(*stepped);
 * BLOCKED, it waits for an answer another caller brings (a request on the wire, a state
 * store answer); DONE, the caller's exchange has ended. */
ach_step ach_core_step_own(ach_exchange *ex, double now, ach_exchange **stepped);
/* For drivers, inside pump: count a unit of work; whether the run's budget is used up. */
void ach_core_work(ach_core *core);
int ach_core_over_budget(const ach_core *core);

#endif
