/*
 * reply.c: building answers (JSON, JSON errors, HTML, redirects, extra headers) as plain data;
 * server.c turns a `struct sbx_reply` into a libmicrohttpd response.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void sbx_reply_free(struct sbx_reply *rp)
{
    size_t i;

    free(rp->body);
    rp->body = NULL;
    for (i = 0; i < rp->nheaders; i++) {
        free(rp->headers[i].name);
        free(rp->headers[i].value);
    }
    rp->nheaders = 0;
}

/* Replaces the body; a failed allocation leaves a bare 500. */
static void reply_body(struct sbx_reply *rp, int status, char *body, size_t len, const char *ctype)
{
    free(rp->body);
    if (body == NULL) {
        rp->status = 500;
        rp->body = NULL;
        rp->len = 0;
        rp->ctype = NULL;
        return;
    }
    rp->status = status;
    rp->body = body;
    rp->len = len;
    rp->ctype = ctype;
}

void sbx_reply_json(struct sbx_reply *rp, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

    json_decref(obj);
    reply_body(rp, status, text, text ? strlen(text) : 0, "application/json; charset=utf-8");
}

void sbx_reply_error(struct sbx_reply *rp, int status, const char *code, const char *field,
                     const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    json_t *obj;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    obj = json_object();
    if (obj != NULL) {
        json_object_set_new(obj, "error", json_string(code));
        /* descriptions may quote user input: keep them valid UTF-8 */
        json_object_set_new(obj, "error_description",
                            sbx_utf8_valid(text, strlen(text)) ? json_string(text)
                                                               : json_string("(invalid UTF-8)"));
        if (field != NULL)
            json_object_set_new(obj, "field", json_string(field));
    }
    sbx_reply_json(rp, status, obj);
}

void sbx_reply_header(struct sbx_reply *rp, const char *name, const char *fmt, ...)
{
    struct sbx_buf b = {0};
    va_list ap;
    int n;

    if (rp->nheaders >= SBX_MAX_REPLY_HEADERS)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (b.data = malloc((size_t)n + 1)) == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(b.data, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rp->headers[rp->nheaders].name = sbx_strdup(name);
    if (rp->headers[rp->nheaders].name == NULL) {
        free(b.data);
        return;
    }
    rp->headers[rp->nheaders].value = b.data;
    rp->nheaders++;
}

void sbx_reply_html(struct sbx_reply *rp, int status, struct sbx_buf *html)
{
    reply_body(rp, status, html->data, html->len, "text/html; charset=utf-8");
    html->data = NULL;
    html->len = html->cap = 0;
}

void sbx_reply_redirect(struct sbx_reply *rp, const char *location)
{
    free(rp->body);
    rp->body = NULL;
    rp->len = 0;
    rp->ctype = NULL;
    rp->status = 302;
    sbx_reply_header(rp, "Location", "%s", location);
}

void sbx_reply_drop_field(struct sbx_reply *rp)
{
    json_t *o;
    char *text;

    if (rp->body == NULL || rp->status < 400 || rp->ctype == NULL ||
        strncmp(rp->ctype, "application/json", 16) != 0)
        return;
    o = json_loadb(rp->body, rp->len, 0, NULL);
    if (o != NULL && json_is_object(o) && json_object_get(o, "field") != NULL) {
        json_object_del(o, "field");
        if ((text = json_dumps(o, JSON_COMPACT)) != NULL) {
            free(rp->body);
            rp->body = text;
            rp->len = strlen(text);
        }
    }
    json_decref(o);
}
