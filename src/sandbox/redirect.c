/*
 * redirect.c: which redirect URIs the authorization endpoint may send a code or an error to.
 * RFC 6749 3.1.2 and 4.1.2.1: only a verified URI, compared exactly with the registered one;
 * RFC 8252 7.3 (opt-in): any port on a loopback host for native apps. URIs are parsed, not
 * matched by prefix: "http://127.0.0.1:80@evil.example/" has the host evil.example.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Characters a redirect URI may hold: printable ASCII, minus those no valid URI has unescaped
   and that browsers or parsers treat differently (space, quotes, angle brackets, backslash,
   braces, pipe, caret, backtick). */
static int uri_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && strchr("\"<>\\{}|^`", ch) == NULL;
}

int sbx_uri_parse(const char *uri, struct sbx_uri *u)
{
    const char *p, *auth, *end, *h, *hend;
    size_t n, i;

    memset(u, 0, sizeof *u);
    u->port = -1;
    for (p = uri; *p; p++)
        if (!uri_char((unsigned char)*p) || *p == '#')
            return 0;
    if (strncmp(uri, "http://", 7) == 0) {
        strcpy(u->scheme, "http");
        auth = uri + 7;
    } else if (strncmp(uri, "https://", 8) == 0) {
        strcpy(u->scheme, "https");
        auth = uri + 8;
    } else {
        return 0;
    }
    end = auth + strcspn(auth, "/?");
    if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
        return 0;   /* userinfo: never, it hides the real host */
    h = auth;
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL)
            return 0;
        for (p = h + 1; p < hend; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return 0;
        hend++;
    } else {
        hend = h + strcspn(h, ":/?");
        if (hend > end)
            hend = end;
        for (p = h; p < hend; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
                return 0;
    }
    n = (size_t)(hend - h);
    if (n == 0 || n >= sizeof u->host)
        return 0;
    for (i = 0; i < n; i++)
        u->host[i] = (char)tolower((unsigned char)h[i]);
    u->host[n] = '\0';
    if (hend < end) {
        long port = 0;
        if (*hend != ':' || hend + 1 == end || end - hend > 6)
            return 0;
        for (p = hend + 1; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return 0;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return 0;
        u->port = (int)port;
    }
    u->rest = end;
    return 1;
}

int sbx_uri_loopback(const struct sbx_uri *u)
{
    return strcmp(u->host, "127.0.0.1") == 0 || strcmp(u->host, "localhost") == 0 ||
           strcmp(u->host, "[::1]") == 0;
}

int sbx_redirect_allowed(const struct sbx_server *s, const char *uri)
{
    struct sbx_uri u;

    if (!sbx_uri_parse(uri, &u))
        return 0;
    if (strcmp(uri, s->redirect_uri) == 0)
        return 1;
    return s->loopback_redirects && strcmp(u.scheme, "http") == 0 && sbx_uri_loopback(&u);
}
