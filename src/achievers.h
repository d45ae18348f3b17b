/*
 * achievers.h: the module's internal interfaces.
 *
 * Layers (see doc/design.md):
 *   buf.c, encode.c, json.c   bytes, URLs, forms, JSON <-> Lua
 *   error.c, token.c          the error and token objects of the public contract
 *   engine.c                  exchanges: the policy of one logical call, no I/O
 *   curl_driver.c             moves the bytes of exchanges over libcurl (multi handle)
 *   client.c, request.c       the Lua-facing client and pending-request objects
 *   module.c                  luaopen_achievers
 */
#ifndef ACHIEVERS_H
#define ACHIEVERS_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define ACH_VERSION "0.1.0"
#define ACH_EXPORT __attribute__((visibility("default")))
#define ACH_API_PREFIX "/api/v5/"

#define ACH_CLIENT_MT "achievers.client"
#define ACH_TOKEN_MT "achievers.token"
#define ACH_ERROR_MT "achievers.error"
#define ACH_REQUEST_MT "achievers.request"
#define ACH_EXCHANGE_MT "achievers.exchange"

/* ---- buf.c: growable byte buffers ----------------------------------------------------- */

typedef struct ach_buf {
	char *data; /* always NUL-terminated when not NULL */
	size_t len;
	size_t cap;
} ach_buf;

/* Each returns 0, or -1 when memory ran out (the buffer is left as it was). */
int ach_buf_add(ach_buf *b, const void *p, size_t n);
int ach_buf_reserve(ach_buf *b, size_t extra); /* room for `extra` more bytes */
int ach_buf_adds(ach_buf *b, const char *s);
int ach_buf_addc(ach_buf *b, char c);
int ach_buf_printf(ach_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ach_buf_reset(ach_buf *b);
void ach_buf_free(ach_buf *b);
/* Hands the bytes to the caller (malloc'd, NUL-terminated, never NULL on success). */
char *ach_buf_take(ach_buf *b);

char *ach_strdup(const char *s); /* NULL for NULL or out of memory */
char *ach_strndup(const char *s, size_t n);
void ach_free_secret(char *s); /* overwrites, then frees */
int ach_memeq_const(const void *a, size_t alen, const void *b, size_t blen);
double ach_now(void); /* monotonic seconds */
int64_t ach_clamp_i64(double d); /* saturating, NaN -> 0 */
double ach_wall(void); /* UNIX time, seconds */
int ach_random_bytes(void *out, size_t n); /* 0, or -1 when the OS CSPRNG failed */

/* Raises a Lua memory error. */
int ach_nomem(lua_State *L) __attribute__((noreturn));

/* ---- encode.c: URLs, query strings, forms -------------------------------------------- */

int ach_url_escape(ach_buf *b, const char *s, size_t n);
/* Appends the number in the shortest form that reads back the same, never with an exponent. */
int ach_format_number(ach_buf *b, lua_Number n);
/* Appends `key=value&...` for the table at idx (sorted keys, lists as repeated keys, booleans
 * as true/false), with no separator before the first pair. Raises naming `what` on a value
 * that cannot be encoded; b must then be owned by something __gc frees. */
void ach_encode_form(lua_State *L, int idx, ach_buf *b, const char *what);
/* Pushes a table of the decoded pairs of a query string (the last value of a repeated key). */
void ach_push_query_table(lua_State *L, const char *q, size_t n);
/* Appends the value at idx as a path segment (number without .0, string percent-encoded).
 * Raises for other types or for CR/LF. */
void ach_encode_path_value(lua_State *L, int idx, ach_buf *b, const char *what);
/* Raises when s holds CR, LF or NUL: header values and path parameters must not. */
void ach_check_header_safe(lua_State *L, const char *s, size_t n, const char *what);

typedef struct ach_url {
	int https;
	char *origin; /* scheme://host[:port], lower-case scheme and host */
	char *host;
	char *path;   /* the path below the origin, without a trailing slash ("" for none) */
} ach_url;

/* Parses an absolute http(s) URL; returns NULL on success or a message. */
const char *ach_url_parse(const char *s, ach_url *out);
void ach_url_free(ach_url *u);
int ach_host_is_loopback(const char *host);
/* Copies s with the values of secret query parameters (code, state, access_token,
 * refresh_token, client_secret) replaced by "[redacted]". */
int ach_redact_url(ach_buf *b, const char *s);
int ach_base64(ach_buf *b, const unsigned char *s, size_t n);
int ach_json_string(ach_buf *b, const char *s); /* a JSON string literal for s */

/* ---- json.c ------------------------------------------------------------------------- */

/* Loads the private lua-cjson instance into the registry (at luaopen time). */
void ach_json_init(lua_State *L);
/* Decodes n bytes into a Lua value pushed on the stack; returns 1, or 0 with a message pushed
 * instead. Integral numbers come back as Lua integers on 5.3+. */
int ach_json_decode(lua_State *L, const char *s, size_t n);
/* Encodes the value at idx; raises on values JSON cannot represent. */
void ach_json_encode(lua_State *L, int idx, ach_buf *b);
void ach_push_null(lua_State *L);
int ach_json_decode_lua(lua_State *L); /* achievers.json_decode */

/* ---- error.c ------------------------------------------------------------------------ */

typedef enum ach_kind {
#define ACH_KINDS(X) \
	X(NONE, "none") \
	X(NETWORK, "network") \
	X(TIMEOUT, "timeout") \
	X(TLS, "tls") \
	X(AUTH, "auth") \
	X(FORBIDDEN, "forbidden") \
	X(NOT_FOUND, "not_found") \
	X(INVALID, "invalid") \
	X(RATE_LIMITED, "rate_limited") \
	X(SERVER, "server") \
	X(DECODE, "decode") \
	X(STATE_MISMATCH, "state_mismatch") \
	X(ACCESS_DENIED, "access_denied") \
	X(REAUTHORIZE, "reauthorize") \
	X(CANCELLED, "cancelled")
#define ACH_KIND_ENUM(e, s) ACH_KIND_##e,
	ACH_KINDS(ACH_KIND_ENUM)
#undef ACH_KIND_ENUM
	ACH_KIND_COUNT
} ach_kind;

const char *ach_kind_name(ach_kind k);
ach_kind ach_kind_for_status(long status);

/* Pushes an error object {kind, message, ...}: fields the caller sets afterwards with
 * lua_setfield on the table at the top. */
void ach_push_error(lua_State *L, ach_kind kind, const char *message);
/* Pushes nil and an error object; returns 2 for `return ach_fail(...)`. */
int ach_fail(lua_State *L, ach_kind kind, const char *message);
void ach_error_open(lua_State *L);

/* ---- token.c ------------------------------------------------------------------------ */

typedef enum ach_grant {
	ACH_GRANT_CLIENT_CREDENTIALS,
	ACH_GRANT_AUTHORIZATION_CODE,
	ACH_GRANT_REFRESH_TOKEN,
	ACH_GRANT_SAVED /* came from a saved table; refresh follows its grant_type */
} ach_grant;

/* A token's data, shared (reference counted) by token objects and client slots. */
typedef struct ach_token_data {
	int refs;
	char *access_token;
	char *refresh_token; /* NULL when the server gave none */
	char *token_type;
	char *scope;
	char *grant_type; /* "client_credentials" or "authorization_code" */
	int64_t expires_at; /* UNIX time on the server's clock */
	int64_t skew;       /* server clock minus ours when it was issued, seconds */
} ach_token_data;

ach_token_data *ach_token_ref(ach_token_data *t);
void ach_token_unref(ach_token_data *t);
/* Seconds until expiry on the server's clock, as seen from here. */
double ach_token_remaining(const ach_token_data *t);
/* Builds token data from the decoded token answer at idx; returns NULL with *why set when the
 * answer is not a usable token. `date` is the answer's Date (UNIX time) or 0. */
ach_token_data *ach_token_from_answer(lua_State *L, int idx, const char *grant, const char *scope,
				      int64_t date, const char **why);
/* Pushes a token object for t; `owner` (stack index or 0) is the client that can refresh it. */
void ach_push_token(lua_State *L, ach_token_data *t, int owner);
ach_token_data *ach_check_token(lua_State *L, int idx);
ach_token_data *ach_test_token(lua_State *L, int idx);
/* Token data from a saved table (as token:to_table() gives); raises on a bad table. */
ach_token_data *ach_token_from_table(lua_State *L, int idx);
void ach_token_open(lua_State *L);
int ach_token_new(lua_State *L); /* achievers.token(t) */

/* ---- engine.c: exchanges --------------------------------------------------------------- */

typedef struct ach_core ach_core;
typedef struct ach_slot ach_slot;
typedef struct ach_exchange ach_exchange;

typedef enum ach_token_auth { ACH_AUTH_JSON, ACH_AUTH_BASIC, ACH_AUTH_POST } ach_token_auth;

typedef struct ach_limit {
	int count;
	double window;
} ach_limit;

enum { ACH_CLASS_DEFAULT, ACH_CLASS_HEAVY, ACH_CLASS_COUNT };

/* ---- state store (src/store/store.h): budgets as the server counts them ---------------- */
/* Everything else; GET /recognitions; GET /newsfeed-events: each heavy one its own budget. */
enum { ACH_BUCKET_DEFAULT, ACH_BUCKET_RECOGNITIONS, ACH_BUCKET_NEWSFEED, ACH_BUCKET_COUNT };
typedef struct ach_store ach_store;

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

struct ach_core {
	int refs;
	ach_options opt;
	int64_t skew; /* server clock minus ours, from Date headers */
	ach_exchange *runnable; /* exchanges the driver must step (linked list) */
	unsigned finished; /* exchanges that ever finished: a counter, for the driver to notice */
	ach_exchange *done_head, *done_tail; /* finished watched exchanges poll has not reported */
	int done_count;
	int in_driver;     /* > 0 while the driver runs: hooks must not start blocking calls */
	ach_buf spare[32]; /* answer buffers kept for reuse: no large malloc per request, so no */
	int nspare;        /* allocator consolidation pause inside some frame's poll */
	void *driver; /* the curl driver's state */
	lua_State *L; /* the state of the Lua call now driving the core */
	int hook_error; /* a hook raised; its error waits in the registry */
	int no_yield;   /* > 0 while a C function calls a blocking call: tasks block there */
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

ach_core *ach_core_new(void);
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
	int lua_inflight; /* sent by a Lua driver (lua_driver.c), its answer not fed yet */
	double lua_deadline; /* when a Lua driver's answer is overdue (monotonic) */
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
	char *seen;      /* the stored token text it saw (compare-and-set) */
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
int ach_rate_class(const char *method, const char *url); /* resources.c */
int ach_method_idempotent(const char *method); /* GET, OPTIONS, HEAD: safe to send again */

const char *ach_header_find(const char *block, size_t len, const char *name, size_t *vlen);
int64_t ach_parse_http_date(const char *s, size_t n);
double ach_parse_retry_after(const char *v, size_t n, int64_t date);

/* result.c: pushes an exchange's result: the decoded value (or a token object), or nil and
 * an error. Returns the number of values pushed. `owner` is the stack index of the client. */
int ach_exchange_push_result(lua_State *L, ach_exchange *ex, int owner);

/* Hooks the engine calls while in a Lua call (client.c implements them). */
void ach_hook_token(ach_core *core, ach_exchange *ex, ach_slot *slot);
void ach_hook_trace(ach_core *core, ach_exchange *ex, const char *phase, const ach_http_response *resp);
void ach_hook_retry(ach_core *core, ach_exchange *ex, double delay);
/* on_rate_limit: `wait` seconds held back by our pacing, or (server != 0) by the server's 429. */
void ach_hook_rate_limit(ach_core *core, ach_exchange *ex, double wait, int server);

/* ---- curl_driver.c ------------------------------------------------------------------- */

int ach_driver_init(ach_core *core); /* 0 or -1 */
void ach_driver_free(ach_core *core);
/* Runs transfers until `until` (monotonic), or until `target` is done, or (target NULL) until
 * any exchange finishes, or until `budget` seconds of work are used (INFINITY: no budget; at
 * least one unit of work, a transfer started or a socket served, is always done). Never
 * blocks when until <= now. Returns how many finished. */
int ach_driver_run(ach_core *core, ach_exchange *target, double until, double budget);
/* The default of the frame_budget option: seconds of work a call made from a frame (poll(0),
 * async) may spend before it leaves the rest to the next poll. */
#define ACH_FRAME_BUDGET 0.0001
void ach_driver_cancel(ach_core *core, ach_exchange *ex);

/* ---- client.c, request.c --------------------------------------------------------------- */

void ach_client_open(lua_State *L);
int ach_client_new(lua_State *L);
ach_core *ach_client_core(lua_State *L, int idx);
ach_slot *ach_client_slot(lua_State *L, int idx);
/* Fills an API exchange from the request table at `spec` (raises on misuse). */
void ach_client_prepare(lua_State *L, int cl, int spec, ach_exchange *ex);
/* Runs the exchange to its end (blocking) and pushes its result. */
int ach_client_run(lua_State *L, int cl, ach_exchange *ex);
void ach_raise_hook_error(lua_State *L, ach_core *c);
void ach_check_not_in_hook(lua_State *L, ach_core *core, const char *what);

void ach_request_open(lua_State *L);
/* Pushes a new request object holding an exchange of this type for the client at cl. */
ach_exchange *ach_request_push(lua_State *L, int cl, ach_ex_type type);
/* Whether poll reports the request at idx: on anchors it in the pending table and puts it on
 * the core's done list once finished; off undoes both. */
void ach_request_watch(lua_State *L, int req, int on);
/* The exchange of the request object at idx; raises if it is not a live request. */
ach_exchange *ach_request_exchange(lua_State *L, int idx);
/* Adds async, poll and batch to the client methods table at the top of the stack. */
void ach_request_methods(lua_State *L);

/* spawn.c: coroutines whose blocking calls yield to poll. */
void ach_spawn_open(lua_State *L);
void ach_spawn_methods(lua_State *L);
/* Is L a task of the client at cl that can yield here? */
int ach_spawn_active(lua_State *L, int cl);
/* Instead of blocking: anchors the request at the top of L, starts it, and yields. */
int ach_spawn_wait(lua_State *L, int cl, ach_exchange *ex);
/* Resumes task thread co with the n values on top of L (popped) and settles the task. */
void ach_spawn_resume(lua_State *L, int cl, lua_State *co, int n);
/* Resumes the tasks that yielded by themselves; returns how many. */
int ach_spawn_resume_idle(lua_State *L, int cl);
/* Keeps the error at the top of L (popped) to be raised by ach_raise_hook_error. */
void ach_hook_error_set(lua_State *L, ach_core *c);
/* client:request with the client at 1 and the request table at 2. */
int ach_client_request(lua_State *L);

/* lua_driver.c: the engine for drivers written in Lua (OpenResty). */
void ach_lua_driver_methods(lua_State *L);         /* client:_exchange, client:_set_token */
void ach_lua_driver_request_methods(lua_State *L); /* ex:_next, ex:_feed */

/* resources.c: the endpoint table, the resource helpers, client:each. */
void ach_resource_methods(lua_State *L); /* into the client methods table at the top */
void ach_resource_open(lua_State *L, int module); /* achievers.endpoints */

/* ---- pkce.c: RFC 7636 S256 ----------------------------------------------------------------- */

#define ACH_PKCE_LEN 43 /* characters of a verifier we make, and of any S256 challenge */
/* A new verifier (32 random bytes, base64url) and its challenge; -1 when the OS random failed. */
int ach_pkce_new(char verifier[ACH_PKCE_LEN + 1], char challenge[ACH_PKCE_LEN + 1]);
void ach_pkce_challenge(const char *verifier, char out[ACH_PKCE_LEN + 1]);
int ach_pkce_verifier_valid(const char *s, size_t n); /* RFC 7636 4.1: 43-128 unreserved chars */
void ach_pkce_open(lua_State *L, int module); /* achievers._sha256_hex, achievers._random_id */

/* record.c: the record option. Setup reads it from the options at `opts` into the user
 * value at `uv`; the trace hook hands each attempt to the recorder at the top (popped). */
void ach_record_setup(lua_State *L, int opts, int uv);
void ach_record_event(lua_State *L, ach_core *c, ach_exchange *ex, const char *phase,
		      const ach_http_response *r);

/* multipart.c: the multipart/form-data body of the parts list at idx. */
void ach_encode_multipart(lua_State *L, int idx, ach_exchange *ex);

#endif
