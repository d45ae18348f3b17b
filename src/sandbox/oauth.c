/*
 * oauth.c: the token endpoint, POST /oauth/v2/openIDConnectClient/token. JSON or form bodies;
 * client credentials in the body or as HTTP Basic (if both, they must agree); the grants
 * client_credentials, authorization_code and (when enabled) refresh_token; RFC 6749 error
 * answers. Runs with the server lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static void token_error(struct sbx_ctx *c, int status, const char *code, const char *fmt,
                        const char *arg)
{
    sbx_reply_error(c->rp, status, code, NULL, fmt, arg ? arg : "");
}

/* Compares a credential given by the client with ours, as sent or %-decoded (RFC 6749 2.3.1). */
static int same_secret(const char *given, const char *ours)
{
    struct sbx_params p = {0};
    int same = strcmp(given, ours) == 0;
    char *form;

    if (same || strchr(given, '%') == NULL)
        return same;
    form = malloc(strlen(given) + 3);
    if (form == NULL)
        return 0;
    sprintf(form, "x=%s", given);
    if (sbx_params_parse_form(&p, form, strlen(form)) == SBX_OK && p.n == 1)
        same = strcmp(p.v[0].val, ours) == 0;
    sbx_params_free(&p);
    free(form);
    return same;
}

/* Client authentication. 1 when authenticated; else an invalid_client (401) reply is set. */
static int authenticate(struct sbx_ctx *c, const struct sbx_params *p)
{
    const char *auth = sbx_req_header(c->req, "authorization");
    const struct sbx_param *bid = sbx_params_get(p, "client_id");
    const struct sbx_param *bsecret = sbx_params_get(p, "client_secret");
    char *decoded = NULL, *colon = NULL;
    int basic = 0, ok = 1, any = 0;

    if (auth != NULL && strncasecmp(auth, "Basic ", 6) == 0) {
        size_t n;
        basic = 1;
        decoded = malloc(strlen(auth) + 1);
        if (decoded == NULL || !sbx_base64_decode(auth + 6, (unsigned char *)decoded, &n) ||
            strlen(decoded) != n || (colon = strchr(decoded, ':')) == NULL) {
            ok = 0;
        } else {
            *colon = '\0';
            any = 1;
            ok = same_secret(decoded, c->s->client_id) && same_secret(colon + 1, c->s->client_secret);
            if (bid != NULL && strcmp(bid->val, decoded) != 0 && !same_secret(bid->val, c->s->client_id))
                ok = 0;
        }
    }
    if (bid != NULL) {
        if (strcmp(bid->val, c->s->client_id) != 0)
            ok = 0;
        if (bsecret != NULL) {
            any = 1;
            if (strcmp(bsecret->val, c->s->client_secret) != 0)
                ok = 0;
        }
    } else if (bsecret != NULL) {
        ok = 0;
    }
    free(decoded);
    if (ok && any)
        return 1;
    sbx_reply_error(c->rp, 401, "invalid_client", NULL, "%s",
                    any || !ok ? "client authentication failed: unknown client or wrong secret"
                               : "client authentication is required: client_id and client_secret "
                                 "in the body, or HTTP Basic");
    if (basic)
        sbx_reply_header(c->rp, "WWW-Authenticate", "Basic realm=\"Achievers OAuth\"");
    return 0;
}

/* Every `scope` value (repeated keys and scope[] too). 1 ok, 0 with an invalid_scope reply. */
static int requested_scope(struct sbx_ctx *c, const struct sbx_params *p, unsigned *bits)
{
    size_t i;

    *bits = 0;
    for (i = 0; i < p->n; i++) {
        unsigned b;
        if (strcmp(p->v[i].key, "scope") != 0)
            continue;
        if (!sbx_scope_parse(p->v[i].val, &b) || strlen(p->v[i].val) != p->v[i].vlen) {
            token_error(c, 400, "invalid_scope", "unknown scope '%s': use read, write or both",
                        p->v[i].val);
            return 0;
        }
        *bits |= b;
    }
    return 1;
}

static void token_answer(struct sbx_ctx *c, const struct sbx_token *t)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "access_token", t->access, "token_type", "Bearer",
                          "expires_in", (json_int_t)(c->s->expires_relative ? t->expires - c->now
                                                                            : t->expires),
                          "scope", sbx_scope_name(t->scope));

    if (o != NULL && t->refresh[0] && json_object_set_new(o, "refresh_token", json_string(t->refresh)) != 0) {
        json_decref(o);
        o = NULL;
    }
    sbx_reply_json(c->rp, 200, o);
}

static void grant_code(struct sbx_ctx *c, const struct sbx_params *p)
{
    const struct sbx_param *code = sbx_params_get(p, "code");
    const struct sbx_param *redirect = sbx_params_get(p, "redirect_uri");
    struct sbx_code *k;
    struct sbx_token *t;

    if (code == NULL || code->vlen == 0) {
        token_error(c, 400, "invalid_request", "code: required for grant_type authorization_code%s", NULL);
        return;
    }
    k = sbx_code_find(c->s, code->val);
    if (k == NULL || k->used || c->now >= k->expires) {
        token_error(c, 400, "invalid_grant", "the authorization code is %s",
                    k == NULL ? "unknown" : k->used ? "already used" : "expired");
        return;
    }
    if (redirect != NULL && redirect->vlen > 0 && strcmp(redirect->val, k->redirect_uri) != 0) {
        token_error(c, 400, "invalid_grant", "redirect_uri differs from the one the code was issued for%s",
                    NULL);
        return;
    }
    k->used = 1;
    t = sbx_token_issue(c->s, SBX_GRANT_CODE, k->user, k->scope);
    if (t == NULL)
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    else
        token_answer(c, t);
}

static void grant_refresh(struct sbx_ctx *c, const struct sbx_params *p)
{
    const struct sbx_param *rt = sbx_params_get(p, "refresh_token");
    struct sbx_token *old, *t;
    unsigned scope;

    if (rt == NULL || rt->vlen == 0) {
        token_error(c, 400, "invalid_request", "refresh_token: required%s", NULL);
        return;
    }
    old = sbx_token_by_refresh(c->s, rt->val);
    if (old == NULL || old->revoked) {
        token_error(c, 400, "invalid_grant", "the refresh token is %s", old ? "revoked" : "unknown");
        return;
    }
    if (!requested_scope(c, p, &scope))
        return;
    if (scope != 0 && (scope & ~old->scope) != 0) {
        token_error(c, 400, "invalid_scope", "the refresh token does not cover scope '%s'",
                    sbx_scope_name(scope));
        return;
    }
    t = sbx_token_issue(c->s, SBX_GRANT_CODE, old->user, scope ? scope : old->scope);
    if (t == NULL)
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    else
        token_answer(c, t);
}

void sbx_h_token(struct sbx_ctx *c)
{
    struct sbx_params p = {0};
    const struct sbx_param *grant;
    const struct sbx_buf *b = &c->req->body;
    char media[128], why[256];
    unsigned scope;
    int rc = SBX_OK;

    sbx_req_media_type(c->req, media, sizeof media);
    if (b->len > 0 && strcmp(media, "application/json") == 0) {
        rc = sbx_params_parse_json(&p, b->data, b->len, why, sizeof why);
    } else if (b->len > 0 && strcmp(media, "application/x-www-form-urlencoded") == 0) {
        rc = sbx_params_parse_form(&p, b->data, b->len);
        snprintf(why, sizeof why, "the form body has a bad %%-escape");
    } else if (b->len > 0) {
        snprintf(why, sizeof why, "send application/json or application/x-www-form-urlencoded, not '%s'",
                 media[0] ? media : "(none)");
        rc = SBX_EBAD;
    }
    if (rc == SBX_ENOMEM) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        goto done;
    }
    if (rc == SBX_EBAD) {
        token_error(c, 400, "invalid_request", "%s", why);
        goto done;
    }
    if (!authenticate(c, &p))
        goto done;
    grant = sbx_params_get(&p, "grant_type");
    if (grant == NULL || grant->vlen == 0) {
        token_error(c, 400, "invalid_request", "grant_type: required%s", NULL);
    } else if (strcmp(grant->val, "client_credentials") == 0) {
        struct sbx_token *t;
        if (!requested_scope(c, &p, &scope))
            goto done;
        t = sbx_token_issue(c->s, SBX_GRANT_CLIENT, -1, scope ? scope : SBX_SCOPE_READ);
        if (t == NULL)
            sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        else
            token_answer(c, t);
    } else if (strcmp(grant->val, "authorization_code") == 0) {
        grant_code(c, &p);
    } else if (strcmp(grant->val, "refresh_token") == 0 && c->s->refresh_tokens) {
        grant_refresh(c, &p);
    } else {
        token_error(c, 400, "unsupported_grant_type", "grant_type '%s' is not supported",
                    grant->val);
    }
done:
    sbx_params_free(&p);
    sbx_reply_header(c->rp, "Cache-Control", "no-store");
    sbx_reply_header(c->rp, "Pragma", "no-cache");
}
