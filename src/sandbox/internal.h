/*
 * internal.h: what the sandbox's own files share (server state, data store, requests and
 * replies, helpers). Nothing here is part of the C API in sandbox.h.
 *
 * Locking: `struct sbx_server.lock` guards everything in the server that changes after start.
 * Route handlers run with the lock held (server.c takes it around dispatch); they never block.
 */
#ifndef SBX_INTERNAL_H
#define SBX_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "sandbox.h"
#include "core/sha256.h" /* src/core/sha256.c, shared with the client */

#define SBX_BODY_LIMIT     (1u * 1024u * 1024u)   /* larger request bodies: 413 ... */
#define SBX_UPLOAD_BODY_LIMIT (8u * 1024u * 1024u) /* ... except POST /uploads: up to this */
#define SBX_UPLOAD_LIMIT   (5u * 1024u * 1024u)   /* larger files: 413 */
#define SBX_UPLOAD_STORE_MAX (64u * 1024u * 1024u) /* bytes of files kept; older ones forgotten */
#define SBX_TEXT_LIMIT     10000u                 /* recognitionText, description: bytes */
#define SBX_TOKEN_LIFETIME (14LL * 24 * 3600)
#define SBX_REISSUE_WINDOW (2LL * 3600)
#define SBX_CODE_LIFETIME  600LL
#define SBX_PAGE_DEFAULT   25
#define SBX_PAGE_MAX       100
#define SBX_INTEGRATION    "Sandbox Integration"   /* the key name of the emulated client */

/* ---- small utilities (util.c) ------------------------------------------------------------ */

struct sbx_buf {
    char *data;     /* NUL-terminated when len > 0 */
    size_t len, cap;
};
int sbx_buf_add(struct sbx_buf *b, const void *p, size_t n);        /* 0, or -1 out of memory */
int sbx_buf_addf(struct sbx_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sbx_buf_free(struct sbx_buf *b);

/* Makes room for one more element in a growable array. 0, or -1 out of memory. */
int sbx_grow(void **v, size_t *cap, size_t n, size_t elem);
#define SBX_GROW(vec, cap, n) sbx_grow((void **)&(vec), &(cap), (n), sizeof *(vec))

char *sbx_strdup(const char *s);
char *sbx_memdup(const void *p, size_t n);    /* n bytes plus a NUL */
int sbx_random_hex(char *out, size_t nhex);   /* nhex hex digits + NUL; 0, or -1 */
int sbx_utf8_valid(const char *s, size_t n);
int sbx_parse_int(const char *s, long long *out);   /* whole string, decimal; 1 ok, 0 bad */
void sbx_iso_time(long long t, char out[32]);       /* 2016-02-19T14:22:11-05:00 */
void sbx_http_date(long long t, char out[40]);      /* Sun, 06 Nov 1994 08:49:37 GMT */
int sbx_base64_decode(const char *in, unsigned char *out, size_t *outlen);  /* 1 ok, 0 bad */

/* ---- parameters: query strings, form and JSON bodies (params.c) ---------------------------- */

struct sbx_param {
    char *key;      /* decoded, a trailing "[]" removed */
    char *val;      /* decoded bytes, NUL-terminated */
    size_t vlen;
};
struct sbx_params {
    struct sbx_param *v;
    size_t n, cap;
};
enum { SBX_OK = 0, SBX_EBAD = 1, SBX_ENOMEM = -1 };

/* application/x-www-form-urlencoded (also query strings); SBX_EBAD on a bad %-escape. */
int sbx_params_parse_form(struct sbx_params *p, const char *s, size_t len);
/* A JSON object of strings, numbers, booleans and arrays of those; SBX_EBAD otherwise. */
int sbx_params_parse_json(struct sbx_params *p, const char *s, size_t len, char *why, size_t whylen);
void sbx_params_free(struct sbx_params *p);
const struct sbx_param *sbx_params_get(const struct sbx_params *p, const char *key);
/*
 * Every value of `key` (repeated keys, `key[]`, comma lists), trimmed, empty ones skipped.
 * `*out` is a malloc'd array of malloc'd strings: sbx_strv_free. SBX_OK, SBX_ENOMEM, or
 * SBX_EBAD when an item holds a NUL byte.
 */
int sbx_params_list(const struct sbx_params *p, const char *key, char ***out, size_t *n);
void sbx_strv_free(char **v, size_t n);
/* A boolean parameter: absent gives `dflt`; 1 ok, 0 when it is not true/false/1/0. */
int sbx_params_bool(const struct sbx_params *p, const char *key, int dflt, int *out);

/* multipart/form-data: the part named `name`, binary-safe. */
struct sbx_part {
    const char *data;
    size_t len;
    char filename[256];
    char content_type[128];
};
/* SBX_OK found, SBX_EBAD malformed, 2 not present. */
int sbx_multipart_find(const char *content_type, const char *body, size_t len, const char *name,
                       struct sbx_part *part);

/* ---- requests and replies (server.c, reply.c) --------------------------------------------- */

struct sbx_header {
    char *name;     /* lower case */
    char *value;
};

struct sbx_request {
    char *method;
    char *raw_uri;
    char *path;     /* raw path, before '?' */
    char *query;    /* raw query, "" when none */
    char *dpath;    /* percent-decoded path, NULL when undecodable */
    struct sbx_header *headers;
    size_t nheaders, hcap;
    struct sbx_buf body;
    int started;    /* the access handler has seen this request */
    size_t limit;   /* the route's body limit */
    int too_big;    /* the body passed `limit` */
    unsigned long long received;   /* body bytes seen, kept or not */
    int answered;   /* a response was queued before the body was read */
    long long started_us;   /* monotonic clock when the request line arrived (access log) */
};
const char *sbx_req_header(const struct sbx_request *r, const char *lname);
/* The media type without parameters, lower case, e.g. "application/json"; "" when absent. */
void sbx_req_media_type(const struct sbx_request *r, char *out, size_t outlen);

#define SBX_MAX_REPLY_HEADERS 8
struct sbx_reply {
    int status;
    char *body;     /* malloc'd */
    size_t len;
    const char *ctype;
    struct sbx_header headers[SBX_MAX_REPLY_HEADERS];
    size_t nheaders;
    int drop;       /* close the connection without an answer */
};
void sbx_reply_free(struct sbx_reply *rp);
/* Takes ownership of `obj`. Out of memory turns the reply into a bare 500. */
void sbx_reply_json(struct sbx_reply *rp, int status, json_t *obj);
/* {"error": code, "error_description": text[, "field": field]} */
void sbx_reply_error(struct sbx_reply *rp, int status, const char *code, const char *field,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void sbx_reply_header(struct sbx_reply *rp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of `html` (a buffer's data). */
void sbx_reply_html(struct sbx_reply *rp, int status, struct sbx_buf *html);
void sbx_reply_redirect(struct sbx_reply *rp, const char *location);
/* Takes the "field" member out of a JSON error answer (strict mode: it is inferred). */
void sbx_reply_drop_field(struct sbx_reply *rp);

/* ---- data store (store.c, seed.c, views.c) ------------------------------------------------ */

enum { SBX_SCOPE_READ = 1, SBX_SCOPE_WRITE = 2 };
enum sbx_who { SBX_ANYONE, SBX_MANAGERS_ONLY, SBX_DIRECT_REPORTS_ONLY };

struct sbx_module {
    int id;
    const char *name, *description, *type;
};
struct sbx_criterion {
    int id;
    int module;             /* index into the module table */
    const char *name, *description;
    int points;             /* per nominee; 0 for social criteria */
    enum sbx_who who;       /* who may use it */
};

struct sbx_user {
    long long id;
    char username[48], first[24], last[24], email[80];
    long long created;
    int manager;            /* index of the manager (the CEO manages herself) */
    int is_manager;
    const char *department, *title;
    long long budget;       /* points left to give in recognitions */
};

struct sbx_recognition {
    long long id;
    int nominator;          /* user index */
    int *nominees;
    size_t nnominees;
    int criterion;          /* criterion index */
    char *text;
    size_t text_len;
    long long created;
    long long upload;       /* upload id, 0 when none */
    int event;              /* newsfeed event index */
};

struct sbx_achievement {
    long long id;
    int creator;            /* user index, -1: the integration */
    int *participants;
    size_t nparticipants;
    char *description;
    size_t desc_len;
    char date[11];          /* YYYY-MM-DD or "" */
    long long points;
    long long upload;
    long long created;
    int event;
};

enum sbx_event_type { SBX_EV_RECOGNITION, SBX_EV_ACHIEVEMENT };
struct sbx_event {
    long long id;
    enum sbx_event_type type;
    int object;             /* recognition or achievement index */
    long long created;
};

enum sbx_reaction_kind { SBX_LIKE, SBX_COMMENT, SBX_BOOST, SBX_REACTION_KINDS };
struct sbx_reaction {
    long long id;
    int event;              /* event index */
    int user;
    long long created;
    char *comment;          /* comments */
    long long points;       /* boosts */
};

struct sbx_upload {
    long long id;
    char *filename;
    char *content_type;
    char *data;             /* NULL once forgotten (SBX_UPLOAD_STORE_MAX) */
    size_t size;
    char sha256[65];
    long long created;
};

struct sbx_store {
    const struct sbx_module *modules;
    size_t nmodules;
    const struct sbx_criterion *criteria;
    size_t ncriteria;
    struct sbx_user *users;
    size_t nusers;
    struct sbx_recognition *recs;
    size_t nrecs, recs_cap;
    struct sbx_achievement *achs;
    size_t nachs, achs_cap;
    struct sbx_event *events;
    size_t nevents, events_cap;
    struct sbx_reaction *reactions[SBX_REACTION_KINDS];
    size_t nreactions[SBX_REACTION_KINDS], reactions_cap[SBX_REACTION_KINDS];
    struct sbx_upload *uploads;
    size_t nuploads, uploads_cap;
    size_t upload_bytes;        /* bytes of files kept */
    long long next_rec_id, next_ach_id, next_event_id, next_reaction_id, next_upload_id;
    long long program_budget;   /* the program's account: points of achievements */
};

struct sbx_store *sbx_seed(void);                /* deterministic; NULL out of memory */
/* The seed's budgets: a manager 25,000 points, anyone else 5,000, the program 1,000,000. */
#define SBX_SEED_MANAGER_BUDGET 25000LL
#define SBX_SEED_USER_BUDGET    5000LL
#define SBX_SEED_PROGRAM_BUDGET 1000000LL
/* Puts the configured budgets (when set) over the seed's in `st`. */
struct sbx_server;
void sbx_budgets_apply(const struct sbx_server *s, struct sbx_store *st);
void sbx_store_free(struct sbx_store *st);
int sbx_user_by_id(const struct sbx_store *st, long long id);              /* index or -1 */
int sbx_user_by_name(const struct sbx_store *st, const char *username);    /* index or -1 */
/* A user given as a username, or as a numeric id when `use_ids`. */
int sbx_user_lookup(const struct sbx_store *st, const char *v, int use_ids);
int sbx_criterion_by_id(const struct sbx_store *st, long long id);
int sbx_event_by_id(const struct sbx_store *st, long long id);
int sbx_rec_by_id(const struct sbx_store *st, long long id);
int sbx_upload_by_id(const struct sbx_store *st, long long id);
/* May `sender` use criterion `c` for all `n` nominees? */
int sbx_criterion_allowed(const struct sbx_store *st, int c, int sender, const int *nominees,
                          size_t n);
int sbx_event_involves(const struct sbx_store *st, int ev, int user);
/* Appending: each fills the new object's id and event, takes ownership of the arrays and
   strings it is given (also on failure). Index of the new object, or -1 out of memory. */
int sbx_store_add_recognition(struct sbx_store *st, struct sbx_recognition *r);
int sbx_store_add_achievement(struct sbx_store *st, struct sbx_achievement *a);
int sbx_store_add_upload(struct sbx_store *st, struct sbx_upload *u);
int sbx_store_add_reaction(struct sbx_store *st, enum sbx_reaction_kind k, struct sbx_reaction *r);

/* JSON views; NULL out of memory. `base` is the server URL. */
struct sbx_server;
json_t *sbx_link(struct sbx_server *s, const char *rel, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
json_t *sbx_view_user_summary(struct sbx_server *s, int u);
json_t *sbx_view_user(struct sbx_server *s, int u, int detailed);
json_t *sbx_view_recognition(struct sbx_server *s, int r);
json_t *sbx_view_achievement(struct sbx_server *s, int a);
json_t *sbx_view_event(struct sbx_server *s, int e);
json_t *sbx_view_reaction(struct sbx_server *s, enum sbx_reaction_kind k, int r);
json_t *sbx_view_module_list(struct sbx_server *s, int sender, const int *nominees, size_t n);

/* ---- tokens and codes (tokens.c) --------------------------------------------------------- */

enum sbx_grant { SBX_GRANT_CLIENT, SBX_GRANT_CODE };

struct sbx_token {
    char access[41];
    char refresh[41];       /* "" when none */
    enum sbx_grant grant;
    int user;               /* user index, -1 for a system token */
    unsigned scope;
    long long issued, expires;
    int revoked;
};

struct sbx_code {
    char code[41];
    int user;
    unsigned scope;
    char *redirect_uri;
    char challenge[44];     /* PKCE S256 code_challenge (RFC 7636), "" when none was sent */
    long long expires;
    int used;
};

/* Parses "read,write" / "read write" / "read+write"; 1 ok, 0 unknown scope. Empty gives 0 bits. */
int sbx_scope_parse(const char *s, unsigned *bits);
const char *sbx_scope_name(unsigned bits);   /* "read", "write", "read,write" */
/* The reissue rule: the live token of the same grant, scope and user more than 2 hours from
   expiry, else a new one. NULL out of memory. */
struct sbx_token *sbx_token_issue(struct sbx_server *s, enum sbx_grant g, int user, unsigned scope);
/* A token usable now, or NULL with `*why` set ("unknown", "expired", "revoked"). */
struct sbx_token *sbx_token_find(struct sbx_server *s, const char *access, const char **why);
struct sbx_token *sbx_token_by_refresh(struct sbx_server *s, const char *refresh);
/* A new code; `challenge` is a checked S256 code_challenge or NULL. */
struct sbx_code *sbx_code_new(struct sbx_server *s, int user, unsigned scope, const char *redirect_uri,
                              const char *challenge);
/* Is s an S256 code_challenge (43 base64url characters)? / a code_verifier (RFC 7636 4.1)? */
int sbx_pkce_challenge_valid(const char *s);
int sbx_pkce_verifier_valid(const char *s);
/* Does `verifier` hash to `challenge` (base64url(SHA-256(verifier)))? Constant time. */
int sbx_pkce_matches(const char *verifier, const char *challenge);
struct sbx_code *sbx_code_find(struct sbx_server *s, const char *code);
void sbx_tokens_clear(struct sbx_server *s);

/* ---- rate limits (ratelimit.c) ------------------------------------------------------------ */

enum sbx_rate_class { SBX_RATE_NONE, SBX_RATE_HEAVY, SBX_RATE_NORMAL };
struct sbx_window {
    char token[41];
    enum sbx_rate_class cls;
    long bucket;            /* heavy: each endpoint has its own window; normal: one for all */
    long long start;
    int count;
};
/* Counts one request of route `bucket`; 0 allowed, else the Retry-After seconds (>= 1). */
int sbx_rate_check(struct sbx_server *s, const char *token, enum sbx_rate_class cls, long bucket);
void sbx_rate_clear(struct sbx_server *s);

/* ---- routes (routes.c) and handlers -------------------------------------------------------- */

struct sbx_ctx;
typedef void sbx_handler(struct sbx_ctx *c);

enum { SBX_TOKEN_ANY, SBX_TOKEN_USER };

struct sbx_route {
    const char *key;        /* stats key, e.g. "GET /users/{id}" */
    const char *method;
    const char *pattern;    /* "{id}" matches a decimal segment */
    int api;                /* needs a bearer token */
    unsigned scope;
    int token_kind;
    enum sbx_rate_class rate;
    sbx_handler *handler;
};

struct sbx_ctx {
    struct sbx_server *s;
    struct sbx_request *req;
    struct sbx_reply *rp;
    const struct sbx_route *route;
    long long ids[2];       /* the {id} segments of the path */
    size_t nids;
    struct sbx_params query;
    struct sbx_token *tok;  /* API routes: the caller's token */
    long long now;
};

size_t sbx_route_count(void);
/* Index of the route for a decoded path and method (HEAD counts as GET), or -1. */
long sbx_route_index(const char *dpath, const char *method);
const char *sbx_route_key(size_t i);   /* stats key of route i */
size_t sbx_route_body_limit(long i);   /* the largest body route i takes (i may be -1) */
/* Routes the request and runs its handler; lock held. Fills c->rp. */
void sbx_dispatch(struct sbx_ctx *c);

/* Form or JSON body of a write call, by Content-Type; on failure a 400/415 reply is set. */
int sbx_body_params(struct sbx_ctx *c, struct sbx_params *p);

void sbx_h_token(struct sbx_ctx *c);
void sbx_h_authorize_get(struct sbx_ctx *c);
void sbx_h_authorize_post(struct sbx_ctx *c);
void sbx_h_users(struct sbx_ctx *c);
void sbx_h_user(struct sbx_ctx *c);
void sbx_h_recognitions(struct sbx_ctx *c);
void sbx_h_recognition(struct sbx_ctx *c);
void sbx_h_recognition_post(struct sbx_ctx *c);
void sbx_h_recognition_options(struct sbx_ctx *c);
void sbx_h_events(struct sbx_ctx *c);
void sbx_h_event(struct sbx_ctx *c);
void sbx_h_event_likes(struct sbx_ctx *c);
void sbx_h_event_comments(struct sbx_ctx *c);
void sbx_h_event_boosts(struct sbx_ctx *c);
void sbx_h_achievement_post(struct sbx_ctx *c);
void sbx_h_upload_post(struct sbx_ctx *c);
void sbx_h_event_page(struct sbx_ctx *c);
void sbx_h_upload_get(struct sbx_ctx *c);

/* Shared parameter checks (api_recognitions.c); each sets a 4xx reply and returns 0 on failure. */
int sbx_user_filter(struct sbx_ctx *c, int *user);   /* userId + useUserIds; -1 when absent */
int sbx_resolve_users(struct sbx_ctx *c, const struct sbx_params *p, const char *key, int use_ids,
                      int required, int not, int **out, size_t *nout);
int sbx_upload_param(struct sbx_ctx *c, const struct sbx_params *p, long long *id);
int sbx_text_param(struct sbx_ctx *c, const struct sbx_params *p, const char *key,
                   const struct sbx_param **out);

/* Appends n bytes HTML-escaped; 0, or -1 out of memory (api_newsfeed.c). */
int sbx_html_escape(struct sbx_buf *b, const char *s, size_t n);

/* ---- paging (paging.c) -------------------------------------------------------------------- */

struct sbx_page {
    long long page, size, total, pages, offset;
};
/* Reads page/pageSize from the query; on a bad value sets a 400 reply and returns 0. */
int sbx_page_parse(struct sbx_ctx *c, struct sbx_page *pg, long long total);
/* {paging = {...}, items = items}; takes ownership of `items`. NULL out of memory. */
json_t *sbx_page_envelope(struct sbx_ctx *c, const struct sbx_page *pg, json_t *items);
/* A 200 page of `view(s, idx[i])`, or a 400 for bad paging parameters. */
typedef json_t *sbx_view_fn(struct sbx_server *s, int i);
void sbx_reply_list(struct sbx_ctx *c, const int *idx, size_t n, sbx_view_fn *view);

/* ---- the server ----------------------------------------------------------------------------- */

struct sbx_server {
    pthread_mutex_t lock;
    struct MHD_Daemon *daemon;
    int port;
    char url[64];
    char *client_id, *client_secret, *redirect_uri;
    int loopback_redirects, strict;
    long long user_budget, program_budget;   /* configured; < 0: the seed's */
    char page_key[65];                  /* HMAC key of the consent page's form tokens */
    char *tls_cert, *tls_key;           /* PEM contents */
    int expires_relative, rate_limit, refresh_tokens;
    struct sbx_limit heavy, normal;
    int start_latency_ms;
    char *admin_key;                    /* the control surface's key (admin.c) */
    FILE *access_log;                   /* --log: one line per request, or NULL */

    /* state, guarded by lock */
    int latency_ms;
    long long clock_offset;
    int stopping;
    struct sbx_fault fault;             /* fault.path owned */
    long long requests, token_requests, connections, faults, rate_limited;
    long long *by_route;
    struct sbx_logged log[SBX_LOG_SIZE];
    size_t log_next, log_count;
    struct sbx_store *store;
    struct sbx_token *tokens;
    size_t ntokens, tokens_cap;
    struct sbx_code *codes;
    size_t ncodes, codes_cap;
    struct sbx_window *windows;
    size_t nwindows, windows_cap;
    unsigned long long log_seq;         /* requests logged since start (never reset) */
    char mhd_log[256];                  /* libmicrohttpd's last message */
    struct sbx_replay *replay;          /* answers from a recording (replay.c), or NULL */
};

long long sbx_now(struct sbx_server *s);   /* the emulator clock; lock held */

/* ---- redirect URIs (redirect.c) ------------------------------------------------------------ */

/* An absolute http(s) URI split for checking: no userinfo, a host that is a name, an IPv4
   address or a bracketed IPv6 one, an optional port 1..65535, no fragment, printable ASCII. */
struct sbx_uri {
    char scheme[6];     /* "http" or "https" */
    char host[256];     /* lower case; IPv6 with its brackets */
    int port;           /* -1 when absent */
    const char *rest;   /* path, query: "" or starting with '/' or '?' */
};
int sbx_uri_parse(const char *uri, struct sbx_uri *u);   /* 1 ok, 0 not such a URI */
int sbx_uri_loopback(const struct sbx_uri *u);          /* host 127.0.0.1, localhost or [::1] */
/* May a code or an error go to `uri`? The registered URI (exactly), or with loopback redirects
   on, any http URI on a loopback host and any port. */
int sbx_redirect_allowed(const struct sbx_server *s, const char *uri);
void sbx_log_clear(struct sbx_server *s);  /* forgets the request log; lock held */

/* ---- the control surface, /__sandbox/... (admin.c) ------------------------------------------ */

/* Is this raw path the control surface's (/__sandbox or below)? */
int sbx_admin_path(const char *path);
/* Answers a control request (Host check, admin key, then the control). Lock NOT held: the
   controls take it themselves. */
void sbx_admin_handle(struct sbx_server *s, const struct sbx_request *r, struct sbx_reply *rp);

#endif
