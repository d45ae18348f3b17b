/*
 * binding.h: the binding, the C side of the Lua module (doc/design.md, "Layers"): the client,
 * request, token and error objects, results, the Lua driver, module registration. It includes
 * the core and the drivers it chooses; nothing below includes it.
 */
#ifndef ACH_BINDING_H
#define ACH_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "binding/compat.h"
#include "core/buf.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/http.h"
#include "core/kind.h"
#include "core/pkce.h"
#include "core/store.h"
#include "core/token.h"
#include "core/url.h"

#define ACH_VERSION "0.1.0"
#define ACH_EXPORT __attribute__((visibility("default")))

#define ACH_CLIENT_MT "achievers.client"
#define ACH_TOKEN_MT "achievers.token"
#define ACH_ERROR_MT "achievers.error"
#define ACH_REQUEST_MT "achievers.request"
#define ACH_EXCHANGE_MT "achievers.exchange"

/* The Lua side of a core: the state of the Lua call now driving it, a hook's error waiting to be
 * raised, and whether tasks must block. It is the core's hooks.ud (client.c). */
typedef struct ach_host {
	ach_core *core;
	lua_State *L;   /* the state of the Lua call now driving the core */
	int hook_error; /* a hook raised; its error waits in the registry */
	int no_yield;   /* > 0 while a C function calls a blocking call: tasks block there */
} ach_host;
#define ACH_HOST(core) ((ach_host *)(core)->hooks.ud)

/* Raises a Lua memory error. */
int ach_nomem(lua_State *L) __attribute__((noreturn));

/* ---- encode.c: query strings, forms, path segments ------------------------------------ */

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

/* ---- error.c: the error object (kinds: core/kind.h) ------------------------------------- */

/* Pushes an error object {kind, message, ...}: fields the caller sets afterwards with
 * lua_setfield on the table at the top. */
void ach_push_error(lua_State *L, ach_kind kind, const char *message);
/* Pushes nil and an error object; returns 2 for `return ach_fail(...)`. */
int ach_fail(lua_State *L, ach_kind kind, const char *message);
void ach_error_open(lua_State *L);

/* ---- token.c: the token object (its data: core/token.h) --------------------------------- */

/* Pushes a token object for t; `owner` (stack index or 0) is the client that can refresh it. */
void ach_push_token(lua_State *L, ach_token_data *t, int owner);
ach_token_data *ach_check_token(lua_State *L, int idx);
ach_token_data *ach_test_token(lua_State *L, int idx);
/* Token data from a saved table (as token:to_table() gives); raises on a bad table. */
ach_token_data *ach_token_from_table(lua_State *L, int idx);
void ach_token_open(lua_State *L);
int ach_token_new(lua_State *L); /* achievers.token(t) */

/* result.c: pushes an exchange's result: the decoded value (or a token object), or nil and
 * an error. Returns the number of values pushed. `owner` is the stack index of the client. */
int ach_exchange_push_result(lua_State *L, ach_exchange *ex, int owner);

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

int ach_rate_class(const char *method, const char *url); /* resources.c: from the table */


/* store_option.c: installs the backend the client option `store` (at idx; nil: memory) asks
 * for; raises on a bad option or on a Redis that answers but refuses us (password, database,
 * not Redis). */
void ach_store_open(lua_State *L, int idx, ach_core *core);


/* resources.c: the endpoint table, the resource helpers, client:each. */
void ach_resource_methods(lua_State *L); /* into the client methods table at the top */
void ach_resource_open(lua_State *L, int module); /* achievers.endpoints */

/* pkce.c (PKCE itself: core/pkce.h) */
void ach_pkce_open(lua_State *L, int module); /* achievers._sha256_hex, achievers._random_id */

/* record.c: the record option. Setup reads it from the options at `opts` into the user
 * value at `uv`; the trace hook hands each attempt to the recorder at the top (popped). */
void ach_record_setup(lua_State *L, int opts, int uv);
void ach_record_event(lua_State *L, ach_core *c, ach_exchange *ex, const char *phase,
		      const ach_http_response *r);

/* multipart.c: the multipart/form-data body of the parts list at idx. */
void ach_encode_multipart(lua_State *L, int idx, ach_exchange *ex);

#endif
