/*
 * tokens.c: access tokens, refresh tokens and authorization codes of the emulated OAuth server,
 * with the reissue rule of achievers-api.md section 0. Every function runs with the server
 * lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int sbx_scope_parse(const char *s, unsigned *bits)
{
    unsigned b = 0;

    while (*s) {
        size_t n = strcspn(s, ", +\t");
        if (n == 4 && strncmp(s, "read", 4) == 0)
            b |= SBX_SCOPE_READ;
        else if (n == 5 && strncmp(s, "write", 5) == 0)
            b |= SBX_SCOPE_WRITE;
        else if (n > 0)
            return 0;
        s += n;
        if (*s)
            s++;
    }
    *bits = b;
    return 1;
}

const char *sbx_scope_name(unsigned bits)
{
    switch (bits & (SBX_SCOPE_READ | SBX_SCOPE_WRITE)) {
    case SBX_SCOPE_READ: return "read";
    case SBX_SCOPE_WRITE: return "write";
    case SBX_SCOPE_READ | SBX_SCOPE_WRITE: return "read,write";
    default: return "";
    }
}

struct sbx_token *sbx_token_issue(struct sbx_server *s, enum sbx_grant g, int user, unsigned scope)
{
    long long now = sbx_now(s);
    struct sbx_token *t;
    size_t i = s->ntokens;

    /* newest first: the live token of this grant, user and scope, unless it is near expiry */
    while (i-- > 0) {
        t = &s->tokens[i];
        if (t->grant == g && t->user == user && t->scope == scope && !t->revoked) {
            if (t->expires - now > SBX_REISSUE_WINDOW)
                return t;
            break;
        }
    }
    if (SBX_GROW(s->tokens, s->tokens_cap, s->ntokens) != 0)
        return NULL;
    t = &s->tokens[s->ntokens];
    memset(t, 0, sizeof *t);
    if (sbx_random_hex(t->access, 40) != 0)
        return NULL;
    if (s->refresh_tokens && user >= 0 && sbx_random_hex(t->refresh, 40) != 0)
        return NULL;
    t->grant = g;
    t->user = user;
    t->scope = scope;
    t->issued = now;
    t->expires = now + SBX_TOKEN_LIFETIME;
    s->ntokens++;
    return t;
}

struct sbx_token *sbx_token_find(struct sbx_server *s, const char *access, const char **why)
{
    size_t i;

    for (i = 0; i < s->ntokens; i++) {
        struct sbx_token *t = &s->tokens[i];
        if (strcmp(t->access, access) != 0)
            continue;
        if (t->revoked) {
            *why = "revoked";
            return NULL;
        }
        if (sbx_now(s) >= t->expires) {
            *why = "expired";
            return NULL;
        }
        return t;
    }
    *why = "unknown";
    return NULL;
}

struct sbx_token *sbx_token_by_refresh(struct sbx_server *s, const char *refresh)
{
    size_t i = s->ntokens;

    while (i-- > 0)
        if (s->tokens[i].refresh[0] && strcmp(s->tokens[i].refresh, refresh) == 0)
            return &s->tokens[i];
    return NULL;
}

struct sbx_code *sbx_code_new(struct sbx_server *s, int user, unsigned scope, const char *redirect_uri,
                              const char *challenge)
{
    struct sbx_code *c;

    if (SBX_GROW(s->codes, s->codes_cap, s->ncodes) != 0)
        return NULL;
    c = &s->codes[s->ncodes];
    memset(c, 0, sizeof *c);
    if (sbx_random_hex(c->code, 40) != 0)
        return NULL;
    c->redirect_uri = sbx_strdup(redirect_uri ? redirect_uri : s->redirect_uri);
    if (c->redirect_uri == NULL)
        return NULL;
    c->user = user;
    c->scope = scope;
    if (challenge != NULL)
        snprintf(c->challenge, sizeof c->challenge, "%s", challenge);
    c->expires = sbx_now(s) + SBX_CODE_LIFETIME;
    s->ncodes++;
    return c;
}

struct sbx_code *sbx_code_find(struct sbx_server *s, const char *code)
{
    size_t i;

    for (i = 0; i < s->ncodes; i++)
        if (strcmp(s->codes[i].code, code) == 0)
            return &s->codes[i];
    return NULL;
}

void sbx_tokens_clear(struct sbx_server *s)
{
    size_t i;

    for (i = 0; i < s->ncodes; i++)
        free(s->codes[i].redirect_uri);
    s->ncodes = 0;
    s->ntokens = 0;
}

/* ---- PKCE (RFC 7636): only S256; "plain" is refused at the authorization endpoint ---------- */

static int unreserved(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '.' || ch == '_' || ch == '~';
}

int sbx_pkce_verifier_valid(const char *s)
{
    size_t n = strlen(s), i;

    if (n < 43 || n > 128)
        return 0;
    for (i = 0; i < n; i++)
        if (!unreserved((unsigned char)s[i]))
            return 0;
    return 1;
}

int sbx_pkce_challenge_valid(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!unreserved((unsigned char)s[i]) || s[i] == '.' || s[i] == '~')
            return 0;
    return i == 43; /* base64url of 32 bytes, no padding */
}

int sbx_pkce_matches(const char *verifier, const char *challenge)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char d[33] = {0};
    char want[44];
    unsigned diff = 0;
    int i, o = 0;

    ach_sha256(verifier, strlen(verifier), d);
    for (i = 0; i < 33; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        want[o++] = b64[v >> 18 & 63];
        want[o++] = b64[v >> 12 & 63];
        want[o++] = b64[v >> 6 & 63];
        want[o++] = b64[v & 63];
    }
    want[43] = '\0'; /* 32 bytes: 43 characters, the rest is padding */
    if (strlen(challenge) != 43)
        return 0;
    for (i = 0; i < 43; i++)
        diff |= (unsigned)(want[i] ^ challenge[i]);
    return diff == 0;
}
