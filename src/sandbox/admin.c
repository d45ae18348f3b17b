/*
 * admin.c: the control surface, `/__sandbox/...` on the emulator's own port, so that a test in
 * any language (or curl) can do what sb:stats(), sb:consent{...}, sb:fail{...} and the other
 * controls of the Lua module do. JSON in, JSON out; GET reads, POST changes.
 *
 * Guarded three ways: the server listens on 127.0.0.1 only; a request whose Host header is not
 * a loopback name is refused (a web page that rebinds its DNS name to 127.0.0.1 sends its own
 * name); and every request carries the admin key, as `Authorization: Bearer KEY` or
 * `X-Sandbox-Key: KEY`, compared in constant time. The key is never read from the URL: a URL
 * ends up in logs and browser histories.
 *
 * Control requests are not API traffic: server.c answers them before counting, logging, faults,
 * latency and rate limits, and this file calls only the C API of sandbox.h (which takes the
 * server lock itself), so it runs without the lock.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define ADMIN_PREFIX "/__sandbox"
#define MAX_SECONDS  10000000000LL     /* advance: about 317 years */
#define MAX_LATENCY  600000            /* ms, as the program's --latency-ms */
#define MAX_POINTS   1000000000LL
#define MAX_COUNT    1000000000LL

int sbx_admin_path(const char *path)
{
    size_t n = sizeof ADMIN_PREFIX - 1;

    return strncmp(path, ADMIN_PREFIX, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* ---- the key -------------------------------------------------------------------------------- */

int sbx_admin_key_valid(const char *key, char *err, size_t errlen)
{
    size_t n = strlen(key), i;

    if (n < 16 || n > 256) {
        snprintf(err, errlen, "the admin key must be 16 to 256 characters long");
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!isalnum((unsigned char)key[i]) && strchr("-._~+/", key[i]) == NULL) {
            snprintf(err, errlen, "the admin key may hold only letters, digits and - . _ ~ + /");
            return 0;
        }
    }
    return 1;
}

/* Both sides are MACed with the server's random key, so the comparison takes the same time
   whatever the two strings are, and their lengths do not show either. */
static int key_matches(const struct sbx_server *s, const char *given, size_t len)
{
    char a[65], b[65];
    unsigned diff = 0;
    size_t i;

    sbx_hmac_sha256_hex(s->page_key, strlen(s->page_key), given, len, a);
    sbx_hmac_sha256_hex(s->page_key, strlen(s->page_key), s->admin_key, strlen(s->admin_key), b);
    for (i = 0; i < 64; i++)
        diff |= (unsigned)(a[i] ^ b[i]);
    return diff == 0;
}

/* The key the request carries: X-Sandbox-Key, else the credentials of `Authorization: Bearer`.
   NULL when neither is there. */
static const char *given_key(const struct sbx_request *r, size_t *len)
{
    const char *v = sbx_req_header(r, "x-sandbox-key");

    if (v == NULL) {
        v = sbx_req_header(r, "authorization");
        if (v == NULL || strncasecmp(v, "Bearer ", 7) != 0)
            return NULL;
        v += 7;
        while (*v == ' ')
            v++;
    }
    *len = strlen(v);
    while (*len > 0 && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
        (*len)--;
    return v;
}

/* No Host (HTTP/1.0), or a loopback name with an optional port: 127.0.0.1, localhost, [::1]. */
static int host_allowed(const struct sbx_request *r)
{
    const char *host = sbx_req_header(r, "host");
    char uri[300];
    struct sbx_uri u;

    if (host == NULL)
        return 1;
    if (strlen(host) > 255 || strpbrk(host, "/?#@\\ \t") != NULL)
        return 0;
    snprintf(uri, sizeof uri, "http://%s/", host);
    return sbx_uri_parse(uri, &u) && sbx_uri_loopback(&u);
}

/* ---- requests and answers ------------------------------------------------------------------- */

struct actx {
    struct sbx_server *s;
    const struct sbx_request *r;
    struct sbx_reply *rp;
    json_t *in;                 /* POST: the body, a JSON object ({} when empty) */
    struct sbx_params query;
};

/* A 400 naming the member (or parameter) `field` at fault, when there is one. */
static void bad(struct actx *a, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(struct actx *a, const char *field, const char *fmt, ...)
{
    char why[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    sbx_reply_error(a->rp, 400, "invalid_request", field, "%s", why);
}

/* Takes ownership of `obj`. */
static void ok(struct actx *a, json_t *obj)
{
    sbx_reply_json(a->rp, 200, obj);
}

/* A JSON string of bytes that may not be UTF-8: invalid bytes become U+FFFD. */
static json_t *text(const char *p, size_t n)
{
    struct sbx_buf b = {0};
    json_t *j;
    size_t i = 0;

    if (sbx_utf8_valid(p, n))
        return json_stringn(p, n);
    while (i < n) {
        size_t k = 1;
        /* the longest valid sequence starting here, else one byte */
        while (k <= 4 && i + k <= n && !sbx_utf8_valid(p + i, k))
            k++;
        if (k <= 4 && i + k <= n) {
            if (sbx_buf_add(&b, p + i, k) != 0)
                goto oom;
            i += k;
        } else {
            if (sbx_buf_add(&b, "\xEF\xBF\xBD", 3) != 0)
                goto oom;
            i++;
        }
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    sbx_buf_free(&b);
    return j;
oom:
    sbx_buf_free(&b);
    return NULL;
}

static char *base64(const char *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)p;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    size_t i;

    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = t[s[i] >> 2];
        *o++ = t[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = t[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        *o++ = t[s[i + 2] & 63];
    }
    if (i < n) {
        *o++ = t[s[i] >> 2];
        if (i + 1 < n) {
            *o++ = t[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
            *o++ = t[(s[i + 1] & 15) << 2];
        } else {
            *o++ = t[(s[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* ---- reading the input ------------------------------------------------------------------------ */

/* 1 when every member of the body is one of `names` (NULL-terminated), else a 400. */
static int only_fields(struct actx *a, const char *const *names)
{
    const char *key;
    json_t *v;

    json_object_foreach(a->in, key, v) {
        const char *const *n = names;
        while (*n != NULL && strcmp(*n, key) != 0)
            n++;
        if (*n == NULL) {
            struct sbx_buf list = {0};
            for (n = names; *n != NULL; n++)
                sbx_buf_addf(&list, "%s%s", n == names ? "" : ", ", *n);
            bad(a, key, "unknown field '%s' (this takes: %s)", key, list.data ? list.data : "nothing");
            sbx_buf_free(&list);
            return 0;
        }
    }
    return 1;
}

/* An integer member from lo to hi; absent gives `dflt` (or a 400 when `required`). */
static int int_field(struct actx *a, const char *name, int required, long long dflt, long long lo,
                     long long hi, long long *out)
{
    json_t *v = json_object_get(a->in, name);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            bad(a, name, "'%s' is required", name);
            return 0;
        }
        *out = dflt;
        return 1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        bad(a, name, "'%s' must be an integer from %lld to %lld", name, lo, hi);
        return 0;
    }
    *out = json_integer_value(v);
    return 1;
}

/* A string member without NUL bytes, or NULL when absent. */
static int str_field(struct actx *a, const char *name, const char **out, size_t *len)
{
    json_t *v = json_object_get(a->in, name);

    *out = NULL;
    if (len != NULL)
        *len = 0;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        bad(a, name, "'%s' must be a string (without NUL characters)", name);
        return 0;
    }
    *out = json_string_value(v);
    if (len != NULL)
        *len = json_string_length(v);
    return 1;
}

static int bool_field(struct actx *a, const char *name, int *out)
{
    json_t *v = json_object_get(a->in, name);

    *out = 0;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_boolean(v)) {
        bad(a, name, "'%s' must be true or false", name);
        return 0;
    }
    *out = json_is_true(v);
    return 1;
}

/* ---- the endpoints ---------------------------------------------------------------------------- */

static void a_stats(struct actx *a)
{
    struct sbx_stats st;
    json_t *o, *routes;
    size_t i;

    if (sbx_stats_get(a->s, &st) != 0) {
        ok(a, NULL);
        return;
    }
    routes = json_object();
    for (i = 0; routes != NULL && i < st.nroutes; i++)
        json_object_set_new(routes, st.route_keys[i], json_integer(st.by_route[i]));
    o = json_pack("{sIsIsIsIsIsosI}", "requests", (json_int_t)st.requests,
                  "token_requests", (json_int_t)st.token_requests,
                  "connections", (json_int_t)st.connections, "faults", (json_int_t)st.faults,
                  "rate_limited", (json_int_t)st.rate_limited, "by_route", routes,
                  "time", (json_int_t)sbx_time(a->s));
    sbx_stats_free(&st);
    ok(a, o);
}

static json_t *logged_json(const struct sbx_logged *l)
{
    json_t *o = json_object(), *h = json_object();
    size_t k;

    if (o == NULL || h == NULL) {
        json_decref(o);
        json_decref(h);
        return NULL;
    }
    json_object_set_new(o, "seq", json_integer((json_int_t)l->seq));
    json_object_set_new(o, "method", text(l->method, strlen(l->method)));
    json_object_set_new(o, "path", text(l->path, strlen(l->path)));
    json_object_set_new(o, "query", text(l->query, strlen(l->query)));
    for (k = 0; k < l->nheaders; k++)
        json_object_set_new(h, l->headers[k].name, text(l->headers[k].value, strlen(l->headers[k].value)));
    json_object_set_new(o, "headers", h);
    if (sbx_utf8_valid(l->body, l->body_len)) {
        json_object_set_new(o, "body", json_stringn(l->body, l->body_len));
    } else {
        char *b64 = base64(l->body, l->body_len);
        json_object_set_new(o, "body_base64", b64 ? json_string(b64) : NULL);
        free(b64);
    }
    json_object_set_new(o, "body_size", json_integer((json_int_t)l->body_size));
    json_object_set_new(o, "body_truncated", json_boolean(l->body_truncated));
    return o;
}

/* ?since=N: only the requests after the one numbered N. */
static void a_requests(struct actx *a)
{
    const struct sbx_param *p = sbx_params_get(&a->query, "since");
    long long since = 0, next, missed = 0;
    struct sbx_logged *v;
    size_t n, i;
    json_t *list;

    if (p != NULL && (!sbx_parse_int(p->val, &since) || since < 0)) {
        bad(a, "since", "'%s' must be a request number, 0 or more", "since");
        return;
    }
    if (sbx_requests_get(a->s, &v, &n) != 0) {
        ok(a, NULL);
        return;
    }
    next = since;
    if (n > 0 && (long long)v[0].seq > since + 1)
        missed = (long long)v[0].seq - since - 1;
    list = json_array();
    for (i = 0; list != NULL && i < n; i++) {
        if ((long long)v[i].seq <= since)
            continue;
        if (json_array_append_new(list, logged_json(&v[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
        next = (long long)v[i].seq;
    }
    sbx_requests_free(v, n);
    ok(a, list ? json_pack("{sosIsI}", "requests", list, "next", (json_int_t)next,
                           "missed", (json_int_t)missed) : NULL);
}

/* Appends `s` percent-encoded (all but unreserved characters). */
static int urlencode(struct sbx_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-._~", ch) != NULL) {
            if (sbx_buf_add(b, s, 1) != 0)
                return -1;
        } else if (sbx_buf_addf(b, "%%%02X", ch) != 0) {
            return -1;
        }
    }
    return 0;
}

static void a_consent(struct actx *a)
{
    static const char *const names[] = {"user", "scope", "redirect_uri", "state", NULL};
    const char *user, *scope, *redirect, *state;
    char code[64], err[512];
    struct sbx_buf loc = {0};

    if (!only_fields(a, names) || !str_field(a, "user", &user, NULL) ||
        !str_field(a, "scope", &scope, NULL) || !str_field(a, "redirect_uri", &redirect, NULL) ||
        !str_field(a, "state", &state, NULL))
        return;
    if (sbx_consent(a->s, user ? user : "adele.olson", scope ? scope : "read,write", redirect, code,
                    sizeof code, err, sizeof err) != 0) {
        bad(a, NULL, "%s", err);
        return;
    }
    if (redirect == NULL)
        redirect = sbx_redirect_uri(a->s);
    /* where the browser would have been sent: the redirect URI with code (and state) added */
    if (sbx_buf_addf(&loc, "%s%scode=%s", redirect, strchr(redirect, '?') ? "&" : "?", code) != 0 ||
        (state != NULL && (sbx_buf_add(&loc, "&state=", 7) != 0 || urlencode(&loc, state) != 0))) {
        sbx_buf_free(&loc);
        ok(a, NULL);
        return;
    }
    ok(a, json_pack("{ssssss}", "code", code, "redirect_uri", redirect, "location", loc.data));
    sbx_buf_free(&loc);
}

static void a_fail(struct actx *a)
{
    static const char *const names[] = {"count", "status", "retry_after", "drop", "path", "body",
                                        "content_type", NULL};
    struct sbx_fault f;
    long long count, status, retry;

    memset(&f, 0, sizeof f);
    if (!only_fields(a, names) || !int_field(a, "count", 0, 1, 0, MAX_COUNT, &count) ||
        !int_field(a, "status", 0, 503, 100, 599, &status) ||
        !int_field(a, "retry_after", 0, -1, 0, MAX_COUNT, &retry) || !bool_field(a, "drop", &f.drop) ||
        !str_field(a, "path", &f.path, NULL) || !str_field(a, "body", &f.body, &f.body_len) ||
        !str_field(a, "content_type", &f.content_type, NULL))
        return;
    if (f.content_type != NULL && strpbrk(f.content_type, "\r\n") != NULL) {
        bad(a, "content_type", "'%s' must be one header line", "content_type");
        return;
    }
    f.count = (int)count;
    f.status = (int)status;
    f.retry_after = (int)retry;
    if (sbx_fail(a->s, &f) != 0) {
        ok(a, NULL);
        return;
    }
    ok(a, json_pack("{sisisb}", "count", f.count, "status", f.status, "drop", f.drop));
}

static void a_advance(struct actx *a)
{
    static const char *const names[] = {"seconds", NULL};
    long long secs;

    if (!only_fields(a, names) || !int_field(a, "seconds", 1, 0, 0, MAX_SECONDS, &secs))
        return;
    sbx_advance(a->s, secs);
    ok(a, json_pack("{sI}", "time", (json_int_t)sbx_time(a->s)));
}

static void a_latency(struct actx *a)
{
    static const char *const names[] = {"ms", NULL};
    long long ms;

    if (!only_fields(a, names) || !int_field(a, "ms", 1, 0, 0, MAX_LATENCY, &ms))
        return;
    sbx_set_latency(a->s, (int)ms);
    ok(a, json_pack("{sI}", "ms", (json_int_t)ms));
}

static void a_revoke(struct actx *a)
{
    static const char *const names[] = {"token", NULL};
    const char *token;

    if (!only_fields(a, names) || !str_field(a, "token", &token, NULL))
        return;
    ok(a, json_pack("{si}", "revoked", sbx_revoke(a->s, token)));
}

static void a_reset(struct actx *a)
{
    static const char *const names[] = {NULL};

    if (!only_fields(a, names))
        return;
    if (sbx_reset(a->s) != 0) {
        ok(a, NULL);
        return;
    }
    ok(a, json_pack("{sb}", "ok", 1));
}

static void budget_answer(struct actx *a, const char *user, long long points)
{
    long long v = sbx_budget(a->s, user, points);

    if (v < 0) {
        bad(a, "user", "unknown user '%s'", user);
        return;
    }
    ok(a, json_pack("{sosI}", "user", user ? json_string(user) : json_null(), "budget", (json_int_t)v));
}

/* GET ?user=NAME: a user's budget; without it the program's account. */
static void a_budget_get(struct actx *a)
{
    const struct sbx_param *p = sbx_params_get(&a->query, "user");

    if (p != NULL && strlen(p->val) != p->vlen) {
        bad(a, "user", "'%s' must not hold NUL characters", "user");
        return;
    }
    budget_answer(a, p ? p->val : NULL, -1);
}

static void a_budget_post(struct actx *a)
{
    static const char *const names[] = {"user", "points", NULL};
    const char *user;
    long long points;

    if (!only_fields(a, names) || !str_field(a, "user", &user, NULL) ||
        !int_field(a, "points", 0, -1, 0, MAX_POINTS, &points))
        return;
    budget_answer(a, user, points);
}

static void a_index(struct actx *a);

typedef void admin_fn(struct actx *a);

static const struct admin_route {
    const char *path;       /* after the prefix */
    const char *method;
    const char *query;      /* the query parameters it takes, comma-separated ("" none) */
    admin_fn *fn;
    const char *what;       /* for the index */
} routes[] = {
    {"", "GET", "", a_index, "this list"},
    {"/", "GET", "", a_index, NULL},
    {"/stats", "GET", "", a_stats, "counters and the clock, as sb:stats()"},
    {"/requests", "GET", "since", a_requests, "the request log, ?since=SEQ for the newer ones"},
    {"/consent", "POST", "", a_consent, "{user, scope, redirect_uri, state}: an authorization code"},
    {"/fail", "POST", "", a_fail, "{count, status, retry_after, drop, path, body, content_type}"},
    {"/advance", "POST", "", a_advance, "{seconds}: move the clock on"},
    {"/latency", "POST", "", a_latency, "{ms}: delay before every API answer"},
    {"/revoke", "POST", "", a_revoke, "{token}: revoke it, {} every token"},
    {"/reset", "POST", "", a_reset, "back to a fresh state"},
    {"/budget", "GET", "user", a_budget_get, "?user=NAME: a points budget, else the program's"},
    {"/budget", "POST", "", a_budget_post, "{user, points}: set a points budget"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static void a_index(struct actx *a)
{
    json_t *list = json_array();
    size_t i;

    for (i = 0; list != NULL && i < NROUTES; i++)
        if (routes[i].what != NULL)
            json_array_append_new(list, json_pack("{ssssss}", "method", routes[i].method, "path",
                                                  routes[i].path[0] ? routes[i].path : "/",
                                                  "does", routes[i].what));
    ok(a, list ? json_pack("{so}", "endpoints", list) : NULL);
}

/* Names that would mean a key in the URL. */
static int looks_like_key(const char *name)
{
    static const char *const names[] = {"key", "admin_key", "sandbox_key", "x-sandbox-key",
                                        "access_token", "token", "authorization", NULL};
    const char *const *n;

    for (n = names; *n != NULL; n++)
        if (strcasecmp(*n, name) == 0)
            return 1;
    return 0;
}

/* Every query parameter is one of `allowed` (comma-separated); else a 400. */
static int query_allowed(struct actx *a, const char *allowed)
{
    size_t i, n;

    for (i = 0; i < a->query.n; i++) {
        const char *k = a->query.v[i].key;
        const char *hit = strstr(allowed, k);
        n = strlen(k);
        if (n > 0 && hit != NULL && (hit == allowed || hit[-1] == ',') && (hit[n] == ',' || hit[n] == '\0'))
            continue;
        if (looks_like_key(k))
            bad(a, k, "the admin key is never taken from the URL ('%s'): send it in an "
                      "Authorization: Bearer or X-Sandbox-Key header", k);
        else if (!sbx_utf8_valid(k, strlen(k)))
            bad(a, NULL, "unknown query parameter");
        else
            bad(a, k, "unknown query parameter '%s'%s%s", k,
                allowed[0] ? "; this takes: " : "; this takes none", allowed);
        return 0;
    }
    return 1;
}

void sbx_admin_handle(struct sbx_server *s, const struct sbx_request *r, struct sbx_reply *rp)
{
    const char *sub = r->path + sizeof ADMIN_PREFIX - 1, *key;
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    const struct admin_route *route = NULL;
    struct actx a;
    struct sbx_buf allow = {0};
    size_t i, klen = 0;

    memset(&a, 0, sizeof a);
    a.s = s;
    a.r = r;
    a.rp = rp;
    if (!host_allowed(r)) {
        sbx_reply_error(rp, 403, "forbidden_host", NULL, "%s",
                        "the control surface answers only requests to a loopback name "
                        "(127.0.0.1, localhost, [::1]) in the Host header");
        return;
    }
    key = given_key(r, &klen);
    if (key == NULL || !key_matches(s, key, klen)) {
        sbx_reply_error(rp, 401, "invalid_admin_key", NULL, "%s",
                        key == NULL ? "send the admin key (printed at start as admin_key) in an "
                                      "Authorization: Bearer or X-Sandbox-Key header"
                                    : "wrong admin key");
        sbx_reply_header(rp, "WWW-Authenticate", "Bearer realm=\"achievers-sandbox control\"");
        return;
    }
    if (r->too_big) {
        sbx_reply_error(rp, 413, "request_too_large", NULL,
                        "the request body is larger than %zu bytes", r->limit);
        return;
    }
    for (i = 0; i < NROUTES; i++) {
        if (strcmp(routes[i].path, sub) != 0)
            continue;
        sbx_buf_addf(&allow, "%s%s", allow.len ? ", " : "", routes[i].method);
        if (strcmp(routes[i].method, method) == 0)
            route = &routes[i];
    }
    if (route == NULL) {
        if (allow.len > 0) {
            sbx_reply_error(rp, 405, "method_not_allowed", NULL, "%s %s is not a control: changes are "
                            "POST, reads GET", r->method, sub);
            sbx_reply_header(rp, "Allow", "%s", allow.data);
        } else {
            sbx_reply_error(rp, 404, "not_found", NULL, "no control at %s (GET " ADMIN_PREFIX
                            " lists them)", sbx_utf8_valid(r->path, strlen(r->path)) ? r->path : "this path");
        }
        sbx_buf_free(&allow);
        return;
    }
    sbx_buf_free(&allow);
    switch (sbx_params_parse_form(&a.query, r->query, strlen(r->query))) {
    case SBX_OK:
        break;
    case SBX_EBAD:
        bad(&a, NULL, "the query string has a bad %%-escape");
        goto done;
    default:
        ok(&a, NULL);
        goto done;
    }
    if (!query_allowed(&a, route->query))
        goto done;
    if (strcmp(route->method, "POST") == 0) {
        json_error_t jerr;
        if (r->body.len == 0) {
            a.in = json_object();
        } else if ((a.in = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
            sbx_reply_error(rp, 400, "invalid_json", NULL, "the body is not JSON: %s (line %d, column %d)",
                            jerr.text, jerr.line, jerr.column);
            goto done;
        } else if (!json_is_object(a.in)) {
            bad(&a, NULL, "the body must be a JSON object");
            goto done;
        }
        if (a.in == NULL) {
            ok(&a, NULL);
            goto done;
        }
    }
    route->fn(&a);
done:
    json_decref(a.in);
    sbx_params_free(&a.query);
}
