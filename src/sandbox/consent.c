/*
 * consent.c: the authorization endpoint, GET/POST /oauth/v2/openIDConnectClient/authorize.
 * GET shows a consent page a person can use in a browser (who is signing in, which scopes, Approve
 * and Deny); POST is that page's form and redirects with code and state, or with
 * error=access_denied and state. A redirect only ever goes to a verified URI (redirect.c); an
 * unknown client or an unverified URI gets a 400 page, and once both are good, a bad
 * response_type or scope is an error redirect with the state (RFC 6749 4.1.2.1).
 *
 * The page cannot be framed (X-Frame-Options, CSP frame-ancestors), and its form carries a
 * token bound to the authorize request (an HMAC of client, redirect URI, scope, state and an
 * expiry under a per-server key): a post without it, or one a browser marks as coming from
 * another site (Origin, Sec-Fetch-Site), gets no code. Runs with the server lock held.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define AUTHORIZE_PATH "/oauth/v2/openIDConnectClient/authorize"
#define PAGE_TOKEN_LIFETIME 600LL   /* seconds a consent page's form stays good */

struct authz {
    const char *client_id, *scope_text, *state, *redirect_uri;
    unsigned scope;
};

static const char *param(const struct sbx_params *p, const char *key)
{
    const struct sbx_param *v = sbx_params_get(p, key);

    return v != NULL && strlen(v->val) == v->vlen && sbx_utf8_valid(v->val, v->vlen) ? v->val : NULL;
}

static int escape(struct sbx_buf *b, const char *s)
{
    return sbx_html_escape(b, s, strlen(s));
}

static int add_hidden(struct sbx_buf *b, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    return sbx_buf_addf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name) || escape(b, value) ||
           sbx_buf_add(b, "\">\n", 3);
}

static const char page_head[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>%s</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:2rem}\n"
    "main{max-width:28rem;margin:auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;"
    "box-shadow:0 1px 4px rgba(0,0,0,.15)}\n"
    "h1{font-size:1.3rem}.error{color:#b00020}label{display:block;margin:1rem 0 .3rem}\n"
    "input[type=text]{width:100%%;padding:.4rem;box-sizing:border-box}\n"
    "button{margin:1.2rem .6rem 0 0;padding:.5rem 1.4rem;font-size:1rem;border-radius:4px;"
    "border:1px solid #888;cursor:pointer}#approve{background:#0b6bcb;color:#fff;border-color:#0b6bcb}\n"
    "</style></head><body><main>\n";

/* Headers every answer of the authorization endpoint carries. */
static void page_headers(struct sbx_ctx *c)
{
    sbx_reply_header(c->rp, "Cache-Control", "no-store");
    sbx_reply_header(c->rp, "X-Frame-Options", "DENY");
    sbx_reply_header(c->rp, "Content-Security-Policy",
                     "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
    /* not no-referrer: browsers would then send "Origin: null" with the form */
    sbx_reply_header(c->rp, "Referrer-Policy", "same-origin");
}

/* A 400 (or `status`) page: the request cannot be trusted enough to redirect anywhere. */
static void status_page(struct sbx_ctx *c, int status, const char *what, const char *detail)
{
    struct sbx_buf b = {0};

    if (sbx_buf_addf(&b, page_head, "Authorization error") ||
        sbx_buf_addf(&b, "<h1>Authorization error</h1>\n<p class=\"error\">") || escape(&b, what) ||
        sbx_buf_add(&b, "</p>\n<p>", 8) || escape(&b, detail ? detail : "") ||
        sbx_buf_addf(&b, "</p>\n</main></body></html>\n")) {
        sbx_buf_free(&b);
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return;
    }
    sbx_reply_html(c->rp, status, &b);
}

static void error_page(struct sbx_ctx *c, const char *what, const char *detail)
{
    status_page(c, 400, what, detail);
}

static int url_encode(struct sbx_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int fail = isalnum(ch) || strchr("-._~", ch) ? sbx_buf_add(b, s, 1) : sbx_buf_addf(b, "%%%02X", ch);
        if (fail)
            return -1;
    }
    return 0;
}

/* A redirect to the verified URI with key=value (and error_description when given), then state. */
static void redirect(struct sbx_ctx *c, const struct authz *a, const char *key, const char *value,
                     const char *description)
{
    struct sbx_buf b = {0};
    int fail = sbx_buf_addf(&b, "%s%c%s=", a->redirect_uri, strchr(a->redirect_uri, '?') ? '&' : '?', key) ||
               url_encode(&b, value);

    if (!fail && description != NULL)
        fail = sbx_buf_add(&b, "&error_description=", 19) || url_encode(&b, description);
    if (!fail && a->state != NULL)
        fail = sbx_buf_add(&b, "&state=", 7) || url_encode(&b, a->state);
    if (fail)
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    else
        sbx_reply_redirect(c->rp, b.data);
    sbx_buf_free(&b);
}

/* Checks the parameters both forms share. 1 ok, 0 with a 400 page or an error redirect. */
static int check_request(struct sbx_ctx *c, const struct sbx_params *p, struct authz *a)
{
    const char *rt = param(p, "response_type");

    a->client_id = param(p, "client_id");
    a->scope_text = param(p, "scope");
    a->state = param(p, "state");
    a->redirect_uri = param(p, "redirect_uri");
    if (a->client_id == NULL || strcmp(a->client_id, c->s->client_id) != 0) {
        error_page(c, "Unknown application.", "The client_id is missing or not registered.");
        return 0;
    }
    if (a->redirect_uri == NULL || a->redirect_uri[0] == '\0') {
        a->redirect_uri = c->s->redirect_uri;
    } else if (!sbx_redirect_allowed(c->s, a->redirect_uri)) {
        error_page(c, "The redirect_uri is not registered for this application.", a->redirect_uri);
        return 0;
    }
    /* from here on the redirect URI is verified: errors go back to the application */
    if (rt == NULL || strcmp(rt, "code") != 0) {
        redirect(c, a, "error", "unsupported_response_type", "only response_type=code is supported");
        return 0;
    }
    if (!sbx_scope_parse(a->scope_text ? a->scope_text : "", &a->scope)) {
        redirect(c, a, "error", "invalid_scope", "ask for read, write or both");
        return 0;
    }
    if (a->scope == 0)
        a->scope = SBX_SCOPE_READ;
    return 1;
}

/* The form token of the page for request `a`, valid until `expires`: "<expires>.<hmac hex>". */
static void page_token(struct sbx_ctx *c, const struct authz *a, long long expires, char out[96])
{
    struct sbx_buf m = {0};
    char mac[65];

    if (sbx_buf_addf(&m, "%lld\n%s\n%s\n%s\n%c%s", expires, a->client_id, a->redirect_uri,
                     sbx_scope_name(a->scope), a->state ? 's' : '-', a->state ? a->state : "") != 0) {
        out[0] = '\0';
        return;
    }
    sbx_hmac_sha256_hex(c->s->page_key, strlen(c->s->page_key), m.data, m.len, mac);
    sbx_buf_free(&m);
    snprintf(out, 96, "%lld.%s", expires, mac);
}

/* Is `given` this request's form token, and still good? Compared in constant time. */
static int page_token_ok(struct sbx_ctx *c, const struct authz *a, const char *given)
{
    char want[96];
    long long expires;
    const char *dot;
    size_t i, n;
    unsigned diff = 0;

    if (given == NULL || (dot = strchr(given, '.')) == NULL || (size_t)(dot - given) > 20)
        return 0;
    {
        char num[24];
        memcpy(num, given, (size_t)(dot - given));
        num[dot - given] = '\0';
        if (!sbx_parse_int(num, &expires) || expires < c->now)
            return 0;
    }
    page_token(c, a, expires, want);
    n = strlen(want);
    if (n == 0 || strlen(given) != n)
        return 0;
    for (i = 0; i < n; i++)
        diff |= (unsigned)(want[i] ^ given[i]);
    return diff == 0;
}

/* A post a browser says comes from another site: an Origin that is not this server, or
   Sec-Fetch-Site other than same-origin or none. Clients that send neither pass. */
static int cross_site(struct sbx_ctx *c)
{
    const char *origin = sbx_req_header(c->req, "origin");
    const char *site = sbx_req_header(c->req, "sec-fetch-site");
    struct sbx_uri u;

    if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return 1;
    if (origin == NULL)
        return 0;
    return !sbx_uri_parse(origin, &u) || u.rest[0] != '\0' || !sbx_uri_loopback(&u) ||
           u.port != c->s->port || strcmp(u.scheme, strncmp(c->s->url, "https:", 6) == 0 ? "https" : "http") != 0;
}

static void consent_page(struct sbx_ctx *c, const struct authz *a, const char *user, const char *problem)
{
    const struct sbx_store *st = c->s->store;
    struct sbx_buf b = {0};
    char token[96];
    size_t i;
    int fail;

    page_token(c, a, c->now + PAGE_TOKEN_LIFETIME, token);
    fail = sbx_buf_addf(&b, page_head, "Authorize " SBX_INTEGRATION) ||
               sbx_buf_addf(&b, "<h1>Authorize <strong>%s</strong></h1>\n"
                                "<p><strong>%s</strong> wants to use your Achievers account to:</p>\n<ul>\n",
                            SBX_INTEGRATION, SBX_INTEGRATION);

    if (!fail && (a->scope & SBX_SCOPE_READ))
        fail = sbx_buf_addf(&b, "<li id=\"scope-read\">read: see people, recognitions and the newsfeed</li>\n");
    if (!fail && (a->scope & SBX_SCOPE_WRITE))
        fail = sbx_buf_addf(&b, "<li id=\"scope-write\">write: send recognitions and post achievements "
                                "as you</li>\n");
    fail = fail || sbx_buf_addf(&b, "</ul>\n");
    if (!fail && problem != NULL)
        fail = sbx_buf_add(&b, "<p class=\"error\" id=\"problem\">", 30) || escape(&b, problem) ||
               sbx_buf_add(&b, "</p>\n", 5);
    fail = fail || sbx_buf_addf(&b, "<form method=\"post\" action=\"%s\">\n", AUTHORIZE_PATH) ||
           add_hidden(&b, "response_type", "code") || add_hidden(&b, "client_id", a->client_id) ||
           add_hidden(&b, "scope", sbx_scope_name(a->scope)) || add_hidden(&b, "state", a->state) ||
           add_hidden(&b, "redirect_uri", a->redirect_uri) || add_hidden(&b, "csrf_token", token) ||
           sbx_buf_addf(&b, "<label for=\"username\">Signed in as (sandbox user)</label>\n"
                            "<input type=\"text\" id=\"username\" name=\"username\" list=\"users\" "
                            "autocomplete=\"off\" value=\"") ||
           escape(&b, user) || sbx_buf_addf(&b, "\">\n<datalist id=\"users\">\n");
    for (i = 0; !fail && i < st->nusers; i++)
        fail = sbx_buf_addf(&b, "<option value=\"%s\">%s %s</option>\n", st->users[i].username,
                            st->users[i].first, st->users[i].last);
    fail = fail || sbx_buf_addf(&b, "</datalist>\n"
                                    "<button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Approve</button>"
                                    "<button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button>\n"
                                    "</form>\n<p><small>Achievers API sandbox: no password needed.</small></p>\n"
                                    "</main></body></html>\n");
    if (fail) {
        sbx_buf_free(&b);
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return;
    }
    sbx_reply_html(c->rp, problem ? 400 : 200, &b);
}

void sbx_h_authorize_get(struct sbx_ctx *c)
{
    struct authz a;

    if (check_request(c, &c->query, &a))
        consent_page(c, &a, "adele.olson", NULL);
    page_headers(c);
}

void sbx_h_authorize_post(struct sbx_ctx *c)
{
    struct sbx_params p = {0};
    const char *decision, *user;
    struct sbx_code *code;
    struct authz a;
    char media[128];
    int u;

    if (cross_site(c)) {
        status_page(c, 403, "Refused: this form was posted from another site.",
                    "Approve or deny on the sandbox's own consent page.");
        goto done;
    }
    sbx_req_media_type(c->req, media, sizeof media);
    if (strcmp(media, "application/x-www-form-urlencoded") != 0 ||
        sbx_params_parse_form(&p, c->req->body.data ? c->req->body.data : "", c->req->body.len) != SBX_OK) {
        error_page(c, "Bad form submission.", "Use the consent page's form.");
        goto done;
    }
    if (!check_request(c, &p, &a))
        goto done;
    if (!page_token_ok(c, &a, param(&p, "csrf_token"))) {
        error_page(c, "This form has expired or was not made by this page.",
                   "Open the authorization link again.");
        goto done;
    }
    decision = param(&p, "decision");
    user = param(&p, "username");
    if (decision != NULL && strcmp(decision, "deny") == 0) {
        redirect(c, &a, "error", "access_denied", NULL);
    } else if (decision == NULL || strcmp(decision, "approve") != 0) {
        error_page(c, "Bad form submission.", "Choose Approve or Deny.");
    } else if (user == NULL || (u = sbx_user_by_name(c->s->store, user)) < 0) {
        consent_page(c, &a, user ? user : "", "Unknown user: pick a sandbox username.");
    } else if ((code = sbx_code_new(c->s, u, a.scope, a.redirect_uri)) == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    } else {
        redirect(c, &a, "code", code->code, NULL);
    }
done:
    sbx_params_free(&p);
    page_headers(c);
}
