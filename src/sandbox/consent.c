/*
 * consent.c: the authorization endpoint, GET/POST /oauth/v2/openIDConnectClient/authorize.
 * GET shows a consent page a person can use in a browser (who is signing in, which scopes, Approve
 * and Deny); POST is that page's form and redirects with code and state, or with
 * error=access_denied and state. A redirect only ever goes to a verified URI: the configured
 * one, or any http(s) URI on a loopback host (RFC 8252 section 7.3); anything else gets a 400
 * page. Runs with the server lock held.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define AUTHORIZE_PATH "/oauth/v2/openIDConnectClient/authorize"

struct authz {
    const char *client_id, *scope_text, *state, *redirect_uri;
    unsigned scope;
};

static const char *param(const struct sbx_params *p, const char *key)
{
    const struct sbx_param *v = sbx_params_get(p, key);

    return v != NULL && strlen(v->val) == v->vlen && sbx_utf8_valid(v->val, v->vlen) ? v->val : NULL;
}

static int loopback_uri(const char *uri)
{
    const char *h;
    size_t n;

    if (strncmp(uri, "http://", 7) == 0)
        h = uri + 7;
    else if (strncmp(uri, "https://", 8) == 0)
        h = uri + 8;
    else
        return 0;
    n = strcspn(h, ":/?#");
    if (h[0] == '[')
        n = strcspn(h, "]") + 1;
    return (n == 9 && strncmp(h, "127.0.0.1", 9) == 0) || (n == 9 && strncmp(h, "localhost", 9) == 0) ||
           (n == 5 && strncmp(h, "[::1]", 5) == 0);
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

/* A 400 page: the request cannot be trusted enough to redirect anywhere. */
static void error_page(struct sbx_ctx *c, const char *what, const char *detail)
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
    sbx_reply_html(c->rp, 400, &b);
}

/* Checks the parameters both forms share. 1 ok, 0 with a 400 page. */
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
    } else if (strcmp(a->redirect_uri, c->s->redirect_uri) != 0 && !loopback_uri(a->redirect_uri)) {
        error_page(c, "The redirect_uri is not registered for this application.", a->redirect_uri);
        return 0;
    }
    if (rt == NULL || strcmp(rt, "code") != 0) {
        error_page(c, "Unsupported response_type.", "Only response_type=code is supported.");
        return 0;
    }
    if (!sbx_scope_parse(a->scope_text ? a->scope_text : "", &a->scope)) {
        error_page(c, "Unknown scope.", "Ask for read, write or both.");
        return 0;
    }
    if (a->scope == 0)
        a->scope = SBX_SCOPE_READ;
    return 1;
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

static void redirect(struct sbx_ctx *c, const struct authz *a, const char *key, const char *value)
{
    struct sbx_buf b = {0};
    int fail = sbx_buf_addf(&b, "%s%c%s=", a->redirect_uri, strchr(a->redirect_uri, '?') ? '&' : '?', key) ||
               url_encode(&b, value);

    if (!fail && a->state != NULL)
        fail = sbx_buf_add(&b, "&state=", 7) || url_encode(&b, a->state);
    if (fail)
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    else
        sbx_reply_redirect(c->rp, b.data);
    sbx_buf_free(&b);
}

static void consent_page(struct sbx_ctx *c, const struct authz *a, const char *user, const char *problem)
{
    const struct sbx_store *st = c->s->store;
    struct sbx_buf b = {0};
    size_t i;
    int fail = sbx_buf_addf(&b, page_head, "Authorize " SBX_INTEGRATION) ||
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
           add_hidden(&b, "redirect_uri", a->redirect_uri) ||
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
    sbx_reply_header(c->rp, "Cache-Control", "no-store");
}

void sbx_h_authorize_post(struct sbx_ctx *c)
{
    struct sbx_params p = {0};
    const char *decision, *user;
    struct sbx_code *code;
    struct authz a;
    char media[128];
    int u;

    sbx_req_media_type(c->req, media, sizeof media);
    if (strcmp(media, "application/x-www-form-urlencoded") != 0 ||
        sbx_params_parse_form(&p, c->req->body.data ? c->req->body.data : "", c->req->body.len) != SBX_OK) {
        error_page(c, "Bad form submission.", "Use the consent page's form.");
        goto done;
    }
    if (!check_request(c, &p, &a))
        goto done;
    decision = param(&p, "decision");
    user = param(&p, "username");
    if (decision != NULL && strcmp(decision, "deny") == 0) {
        redirect(c, &a, "error", "access_denied");
    } else if (decision == NULL || strcmp(decision, "approve") != 0) {
        error_page(c, "Bad form submission.", "Choose Approve or Deny.");
    } else if (user == NULL || (u = sbx_user_by_name(c->s->store, user)) < 0) {
        consent_page(c, &a, user ? user : "", "Unknown user: pick a sandbox username.");
    } else if ((code = sbx_code_new(c->s, u, a.scope, a.redirect_uri)) == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
    } else {
        redirect(c, &a, "code", code->code);
    }
done:
    sbx_params_free(&p);
    sbx_reply_header(c->rp, "Cache-Control", "no-store");
}
