/*
 * routes.c: the route table (method, path pattern, scope, token kind, rate class, handler),
 * matching, and the checks every API call passes before its handler: bearer token (401),
 * rate limit (429), scope and token kind (403). Runs with the server lock held.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define R SBX_SCOPE_READ
#define W SBX_SCOPE_WRITE
#define OAUTH "/oauth/v2/openIDConnectClient"

static const struct sbx_route routes[] = {
    /* key                              method     pattern                                api scope kind            rate             handler */
    {"POST /token",                     "POST",    OAUTH "/token",                        0, 0, SBX_TOKEN_ANY,  SBX_RATE_NONE,   sbx_h_token},
    {"GET /authorize",                  "GET",     OAUTH "/authorize",                    0, 0, SBX_TOKEN_ANY,  SBX_RATE_NONE,   sbx_h_authorize_get},
    {"POST /authorize",                 "POST",    OAUTH "/authorize",                    0, 0, SBX_TOKEN_ANY,  SBX_RATE_NONE,   sbx_h_authorize_post},
    {"POST /achievements",              "POST",    "/api/v5/achievements",                1, W, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_achievement_post},
    {"POST /uploads",                   "POST",    "/api/v5/uploads",                     1, W, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_upload_post},
    {"GET /users",                      "GET",     "/api/v5/users",                       1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_users},
    {"GET /users/{id}",                 "GET",     "/api/v5/users/{id}",                  1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_user},
    {"GET /recognitions",               "GET",     "/api/v5/recognitions",                1, R, SBX_TOKEN_ANY,  SBX_RATE_HEAVY,  sbx_h_recognitions},
    {"POST /recognitions",              "POST",    "/api/v5/recognitions",                1, W, SBX_TOKEN_USER, SBX_RATE_NORMAL, sbx_h_recognition_post},
    {"OPTIONS /recognitions",           "OPTIONS", "/api/v5/recognitions",                1, R, SBX_TOKEN_USER, SBX_RATE_NORMAL, sbx_h_recognition_options},
    {"GET /recognitions/{id}",          "GET",     "/api/v5/recognitions/{id}",           1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_recognition},
    {"GET /newsfeed-events",            "GET",     "/api/v5/newsfeed-events",             1, R, SBX_TOKEN_ANY,  SBX_RATE_HEAVY,  sbx_h_events},
    {"GET /newsfeed-events/{id}",       "GET",     "/api/v5/newsfeed-events/{id}",        1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_event},
    {"GET /newsfeed-events/{id}/likes", "GET",     "/api/v5/newsfeed-events/{id}/likes",  1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_event_likes},
    {"GET /newsfeed-events/{id}/comments", "GET",  "/api/v5/newsfeed-events/{id}/comments", 1, R, SBX_TOKEN_ANY, SBX_RATE_NORMAL, sbx_h_event_comments},
    {"GET /newsfeed-events/{id}/boosts", "GET",    "/api/v5/newsfeed-events/{id}/boosts", 1, R, SBX_TOKEN_ANY,  SBX_RATE_NORMAL, sbx_h_event_boosts},
    /* browser pages behind the URLs that API objects carry */
    {"GET /event/{id}",                 "GET",     "/event/{id}",                         0, 0, SBX_TOKEN_ANY,  SBX_RATE_NONE,   sbx_h_event_page},
    {"GET /platform_content/uploads/{id}", "GET",  "/platform_content/uploads/{id}",      0, 0, SBX_TOKEN_ANY,  SBX_RATE_NONE,   sbx_h_upload_get},
};

#define NROUTES (sizeof routes / sizeof routes[0])

size_t sbx_route_count(void)
{
    return NROUTES;
}

size_t sbx_route_body_limit(long i)
{
    /* files come in multipart bodies; everything else is a small form or JSON object */
    return i >= 0 && (size_t)i < NROUTES && routes[i].handler == sbx_h_upload_post ? SBX_UPLOAD_BODY_LIMIT
                                                                                     : SBX_BODY_LIMIT;
}

const char *sbx_route_key(size_t i)
{
    return i < NROUTES ? routes[i].key : NULL;
}

/* Does `path` match `pattern`? Collects the {id} segments. */
static int path_match(const char *pattern, const char *path, long long *ids, size_t *nids)
{
    *nids = 0;
    while (*pattern && *path) {
        if (strncmp(pattern, "{id}", 4) == 0) {
            const char *p = path;
            long long v = 0;
            while (isdigit((unsigned char)*p) && p - path < 18)
                v = v * 10 + (*p++ - '0');
            if (p == path || (*p && *p != '/'))
                return 0;
            if (*nids < 2)
                ids[(*nids)++] = v;
            pattern += 4;
            path = p;
        } else if (*pattern == *path) {
            pattern++;
            path++;
        } else {
            return 0;
        }
    }
    return *pattern == '\0' && *path == '\0';
}

static int method_is(const char *want, const char *method)
{
    return strcmp(want, method) == 0 || (strcmp(want, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

long sbx_route_index(const char *dpath, const char *method)
{
    long long ids[2];
    size_t i, n;

    if (dpath == NULL || method == NULL)
        return -1;
    for (i = 0; i < NROUTES; i++)
        if (method_is(routes[i].method, method) && path_match(routes[i].pattern, dpath, ids, &n))
            return (long)i;
    return -1;
}

static void reply_unauthorized(struct sbx_ctx *c, const char *why)
{
    if (why == NULL) {
        sbx_reply_error(c->rp, 401, "invalid_token", NULL,
                        "this call needs an access token: Authorization: Bearer <token>");
        sbx_reply_header(c->rp, "WWW-Authenticate", "Bearer realm=\"Achievers API\"");
    } else {
        sbx_reply_error(c->rp, 401, "invalid_token", NULL, "the access token is %s", why);
        sbx_reply_header(c->rp, "WWW-Authenticate",
                         "Bearer realm=\"Achievers API\", error=\"invalid_token\", "
                         "error_description=\"the access token is %s\"", why);
    }
}

/* Bearer token, rate limit, scope, token kind. 1 when the call may proceed. */
static int api_checks(struct sbx_ctx *c)
{
    const struct sbx_route *rt = c->route;
    const char *auth = sbx_req_header(c->req, "authorization"), *why = NULL;
    int wait;

    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
        reply_unauthorized(c, NULL);
        return 0;
    }
    auth += 7;
    while (*auth == ' ')
        auth++;
    c->tok = sbx_token_find(c->s, auth, &why);
    if (c->tok == NULL) {
        reply_unauthorized(c, why);
        return 0;
    }
    wait = sbx_rate_check(c->s, c->tok->access, rt->rate, (long)(rt - routes));
    if (wait > 0) {
        c->s->rate_limited++;
        sbx_reply_error(c->rp, 429, "rate_limited", NULL,
                        "too many requests for this token: %s allows %d per %d seconds",
                        rt->key, rt->rate == SBX_RATE_HEAVY ? c->s->heavy.count : c->s->normal.count,
                        rt->rate == SBX_RATE_HEAVY ? c->s->heavy.window : c->s->normal.window);
        sbx_reply_header(c->rp, "Retry-After", "%d", wait);
        return 0;
    }
    if ((c->tok->scope & rt->scope) != rt->scope) {
        sbx_reply_error(c->rp, 403, "forbidden", NULL, "%s needs the %s scope; the token has %s",
                        rt->key, sbx_scope_name(rt->scope), sbx_scope_name(c->tok->scope));
        sbx_reply_header(c->rp, "WWW-Authenticate",
                         "Bearer realm=\"Achievers API\", error=\"insufficient_scope\", scope=\"%s\"",
                         sbx_scope_name(rt->scope));
        return 0;
    }
    if (rt->token_kind == SBX_TOKEN_USER && c->tok->user < 0) {
        sbx_reply_error(c->rp, 403, "forbidden", NULL,
                        "%s needs a user token (authorization_code grant), not a system token",
                        rt->key);
        return 0;
    }
    return 1;
}

void sbx_dispatch(struct sbx_ctx *c)
{
    const char *path = c->req->dpath;
    struct sbx_buf allow = {0};
    long long ids[2];
    size_t i, n;
    int rc;

    if (path == NULL) {
        sbx_reply_error(c->rp, 400, "invalid_request", NULL, "the request path has a bad %%-escape");
        return;
    }
    for (i = 0; i < NROUTES; i++) {
        if (!path_match(routes[i].pattern, path, ids, &n))
            continue;
        if (method_is(routes[i].method, c->req->method)) {
            c->route = &routes[i];
            memcpy(c->ids, ids, sizeof ids);
            c->nids = n;
            break;
        }
        sbx_buf_addf(&allow, "%s%s", allow.len ? ", " : "", routes[i].method);
    }
    if (c->route == NULL) {
        if (allow.len > 0) {
            sbx_reply_error(c->rp, 405, "method_not_allowed", NULL, "%s is not allowed on %s",
                            c->req->method, c->req->path);
            sbx_reply_header(c->rp, "Allow", "%s", allow.data);
        } else {
            sbx_reply_error(c->rp, 404, "not_found", NULL, "no such resource: %s", c->req->path);
        }
        sbx_buf_free(&allow);
        return;
    }
    sbx_buf_free(&allow);
    rc = sbx_params_parse_form(&c->query, c->req->query, strlen(c->req->query));
    if (rc == SBX_EBAD) {
        sbx_reply_error(c->rp, 400, "invalid_request", NULL, "the query string has a bad %%-escape");
        return;
    }
    if (rc == SBX_ENOMEM) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return;
    }
    if (c->route->api && !api_checks(c))
        return;
    c->route->handler(c);
}

int sbx_body_params(struct sbx_ctx *c, struct sbx_params *p)
{
    const struct sbx_buf *b = &c->req->body;
    char media[128], why[256];
    int rc;

    sbx_req_media_type(c->req, media, sizeof media);
    if (b->len == 0)
        return 1;
    if (strcmp(media, "application/x-www-form-urlencoded") == 0) {
        rc = sbx_params_parse_form(p, b->data, b->len);
        if (rc == SBX_EBAD) {
            sbx_reply_error(c->rp, 400, "invalid_request", NULL, "the form body has a bad %%-escape");
            return 0;
        }
    } else if (strcmp(media, "application/json") == 0) {
        rc = sbx_params_parse_json(p, b->data, b->len, why, sizeof why);
        if (rc == SBX_EBAD) {
            sbx_reply_error(c->rp, 400, "invalid_request", NULL, "%s", why);
            return 0;
        }
    } else {
        sbx_reply_error(c->rp, 415, "unsupported_media_type", NULL,
                        "send application/x-www-form-urlencoded or application/json, not '%s'",
                        media[0] ? media : "(none)");
        return 0;
    }
    if (rc == SBX_ENOMEM) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return 0;
    }
    return 1;
}
