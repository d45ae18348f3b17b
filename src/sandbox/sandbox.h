/*
 * sandbox.h: the C API of the Achievers API emulator.
 *
 * One `struct sbx_server` is one running emulator: its HTTP daemon, its data, its clock, its
 * counters. Nothing is process-global, so several servers can run in one process. Every
 * function here is thread-safe with respect to the server's own threads (one mutex per server).
 * Used by lua_sandbox.c (the `achievers.sandbox` module) and main.c (the program).
 */
#ifndef SBX_SANDBOX_H
#define SBX_SANDBOX_H

#include <stddef.h>
#include <stdio.h>

/* A fixed rate-limit window: at most `count` requests per `window` seconds per token. */
struct sbx_limit {
    int count;
    int window;
};

struct sbx_config {
    int port;                    /* 0 picks a free port */
    int expires_relative;        /* token expires_in as seconds from now, not a UNIX time */
    int latency_ms;              /* delay before every /api/v5 answer */
    int rate_limit;              /* enforce the per-token limits */
    struct sbx_limit heavy;      /* GET /recognitions, GET /newsfeed-events */
    struct sbx_limit normal;     /* everything else */
    int refresh_tokens;          /* user tokens come with a refresh_token */
    const char *tls_cert_file;   /* both or neither: PEM files */
    const char *tls_key_file;
    const char *client_id;       /* NULL: random "sbx_" + 32 hex */
    const char *client_secret;   /* NULL: random 64 hex */
    const char *redirect_uri;    /* the registered one; NULL: SBX_DEFAULT_REDIRECT_URI */
    int loopback_redirects;      /* also any http loopback redirect URI, any port (RFC 8252 7.3) */
    int strict;                  /* serve no field classed INFERRED (evidence.h) */
    long long user_budget;       /* every user's points budget; < 0: the seed's (by role) */
    long long program_budget;    /* the program's account for achievement points; < 0: seed's */
    const char *admin_key;       /* the control surface's key (admin.c); NULL: random 32 hex */
    FILE *access_log;            /* one line per request (method, path, status, ms), or NULL */
};

#define SBX_DEFAULT_REDIRECT_URI "http://127.0.0.1:8910/callback"

/* Fills `cfg` with the documented defaults. */
void sbx_config_defaults(struct sbx_config *cfg);

/*
 * Starts an emulator on 127.0.0.1. Returns NULL and writes a message to `err` on failure.
 * The configuration strings are copied.
 */
struct sbx_server *sbx_start(const struct sbx_config *cfg, char *err, size_t errlen);

/* Stops the daemon (waiting for its threads) and frees everything. NULL is allowed. */
void sbx_stop(struct sbx_server *s);

const char *sbx_url(const struct sbx_server *s);
int sbx_port(const struct sbx_server *s);
const char *sbx_client_id(const struct sbx_server *s);
const char *sbx_client_secret(const struct sbx_server *s);
const char *sbx_redirect_uri(const struct sbx_server *s);
const char *sbx_admin_key(const struct sbx_server *s);

/*
 * An admin key given by the user: 16 to 256 characters of the bearer token alphabet
 * (A-Z a-z 0-9 - . _ ~ + /). 1 ok, 0 not (with the reason in `err`).
 */
int sbx_admin_key_valid(const char *key, char *err, size_t errlen);

/*
 * An authorization code as if `user` had approved `scope` in the consent page. `redirect_uri`
 * may be NULL (the configured one). Returns 0 and writes the code (NUL-terminated) to `code`,
 * or -1 with a message in `err` (unknown user, bad scope).
 */
int sbx_consent(struct sbx_server *s, const char *user, const char *scope,
                const char *redirect_uri, char *code, size_t codelen, char *err, size_t errlen);

/* Fault injection: the next `count` requests whose path starts with `path` (NULL: any). */
struct sbx_fault {
    int count;
    int status;         /* answer this status ... */
    int retry_after;    /* ... with Retry-After seconds when >= 0 */
    int drop;           /* or close the connection without an answer */
    const char *path;
    const char *body;           /* NULL: a JSON error body; else this body ... */
    size_t body_len;
    const char *content_type;   /* ... with this Content-Type (NULL: none) */
};
int sbx_fail(struct sbx_server *s, const struct sbx_fault *f);   /* 0, or -1 out of memory */

/*
 * Points budgets: a user's (`user` a username) or, with `user` NULL, the program's account.
 * Sets it when `points` >= 0. Returns the budget (after the change), or -1 for an unknown user.
 */
long long sbx_budget(struct sbx_server *s, const char *user, long long points);

void sbx_advance(struct sbx_server *s, long long seconds);
void sbx_set_latency(struct sbx_server *s, int ms);
long long sbx_time(struct sbx_server *s);

/* Revokes one access token, or all when `token` is NULL. Returns how many were revoked. */
int sbx_revoke(struct sbx_server *s, const char *token);

/* Fresh state: seed data, no tokens or codes, zero counters, no faults, clock and latency reset. */
int sbx_reset(struct sbx_server *s);   /* 0, or -1 out of memory (the old state is kept) */

struct sbx_stats {
    long long requests;
    long long token_requests;
    long long connections;
    long long faults;
    long long rate_limited;
    size_t nroutes;
    const char **route_keys;         /* malloc'd array of static strings, e.g. "GET /users/{id}" */
    long long *by_route;             /* malloc'd, nroutes counters */
};
int sbx_stats_get(struct sbx_server *s, struct sbx_stats *st);   /* 0, or -1 out of memory */
void sbx_stats_free(struct sbx_stats *st);

struct sbx_logged_header {
    char *name;     /* lower case */
    char *value;
};
struct sbx_logged {
    unsigned long long seq;     /* 1 for the first request logged since start, never reused */
    char *method;
    char *path;     /* raw, as received, without the query */
    char *query;    /* raw query string, "" when none */
    struct sbx_logged_header *headers;
    size_t nheaders;
    char *body;     /* raw bytes, at most SBX_LOG_BODY_MAX, NUL-terminated for convenience */
    size_t body_len;
    unsigned long long body_size;   /* the whole body's size as received */
    int body_truncated;             /* body holds only the first SBX_LOG_BODY_MAX bytes */
};
#define SBX_LOG_SIZE 64
#define SBX_LOG_BODY_MAX (64u * 1024u)
/* A copy of the last SBX_LOG_SIZE requests, oldest first. 0, or -1 out of memory. */
int sbx_requests_get(struct sbx_server *s, struct sbx_logged **out, size_t *n);
void sbx_requests_free(struct sbx_logged *v, size_t n);

/* ---- evidence (evidence.c): what each served field and behaviour rests on -------------------- */

struct sbx_evidence {
    const char *object;     /* e.g. "user", "recognition", "behaviour" */
    const char *field;      /* e.g. "managerId", "links.newsfeedEvent" */
    const char *class;      /* "documented", "code" or "inferred" */
    const char *source;     /* where: achievers-api.md section, source ids (S2, C1) */
};
/* The table, in order; `*n` entries. Static data. */
const struct sbx_evidence *sbx_evidence_table(size_t *n);
/* The table as markdown (doc/sandbox-evidence.md is this output). */
void sbx_evidence_markdown(FILE *out);

#endif
