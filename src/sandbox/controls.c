/*
 * controls.c: the test controls of the C API (consent without a browser, faults, clock,
 * latency, revocation, reset, counters, points budgets). Each takes the server lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int sbx_consent(struct sbx_server *s, const char *user, const char *scope,
                const char *redirect_uri, char *code, size_t codelen, char *err, size_t errlen)
{
    struct sbx_code *c;
    unsigned bits;
    int u, rc = -1;

    pthread_mutex_lock(&s->lock);
    u = sbx_user_by_name(s->store, user);
    if (u < 0) {
        snprintf(err, errlen, "unknown user '%s'", user);
    } else if (redirect_uri != NULL && !sbx_redirect_allowed(s, redirect_uri)) {
        snprintf(err, errlen, "redirect_uri '%s' is not registered (%s)%s", redirect_uri, s->redirect_uri,
                 s->loopback_redirects ? " nor a loopback http URI" : "; loopback_redirects is off");
    } else if (!sbx_scope_parse(scope ? scope : "read", &bits)) {
        snprintf(err, errlen, "unknown scope '%s' (read, write or both)", scope);
    } else if ((c = sbx_code_new(s, u, bits ? bits : SBX_SCOPE_READ, redirect_uri)) == NULL) {
        snprintf(err, errlen, "out of memory");
    } else {
        snprintf(code, codelen, "%s", c->code);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sbx_fail(struct sbx_server *s, const struct sbx_fault *f)
{
    char *path = NULL, *body = NULL, *ctype = NULL;

    if ((f->path != NULL && (path = sbx_strdup(f->path)) == NULL) ||
        (f->body != NULL && (body = sbx_memdup(f->body, f->body_len)) == NULL) ||
        (f->content_type != NULL && (ctype = sbx_strdup(f->content_type)) == NULL)) {
        free(path);
        free(body);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    free((char *)s->fault.path);
    free((char *)s->fault.body);
    free((char *)s->fault.content_type);
    s->fault = *f;
    s->fault.path = path;
    s->fault.body = body;
    s->fault.content_type = ctype;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void sbx_budgets_apply(const struct sbx_server *s, struct sbx_store *st)
{
    size_t i;

    if (s->user_budget >= 0)
        for (i = 0; i < st->nusers; i++)
            st->users[i].budget = s->user_budget;
    if (s->program_budget >= 0)
        st->program_budget = s->program_budget;
}

long long sbx_budget(struct sbx_server *s, const char *user, long long points)
{
    long long v = -1;
    int u;

    pthread_mutex_lock(&s->lock);
    if (user == NULL) {
        if (points >= 0)
            s->store->program_budget = points;
        v = s->store->program_budget;
    } else if ((u = sbx_user_by_name(s->store, user)) >= 0) {
        if (points >= 0)
            s->store->users[u].budget = points;
        v = s->store->users[u].budget;
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

void sbx_advance(struct sbx_server *s, long long seconds)
{
    pthread_mutex_lock(&s->lock);
    s->clock_offset += seconds;
    pthread_mutex_unlock(&s->lock);
}

void sbx_set_latency(struct sbx_server *s, int ms)
{
    pthread_mutex_lock(&s->lock);
    s->latency_ms = ms > 0 ? ms : 0;
    pthread_mutex_unlock(&s->lock);
}

long long sbx_time(struct sbx_server *s)
{
    long long t;

    pthread_mutex_lock(&s->lock);
    t = sbx_now(s);
    pthread_mutex_unlock(&s->lock);
    return t;
}

int sbx_revoke(struct sbx_server *s, const char *token)
{
    size_t i;
    int n = 0;

    pthread_mutex_lock(&s->lock);
    for (i = 0; i < s->ntokens; i++) {
        if (!s->tokens[i].revoked && (token == NULL || strcmp(s->tokens[i].access, token) == 0)) {
            s->tokens[i].revoked = 1;
            n++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

int sbx_reset(struct sbx_server *s)
{
    struct sbx_store *fresh = sbx_seed(), *old;

    if (fresh == NULL)
        return -1;
    sbx_budgets_apply(s, fresh);   /* reads configuration only, set before any thread ran */
    pthread_mutex_lock(&s->lock);
    old = s->store;
    s->store = fresh;
    sbx_tokens_clear(s);
    sbx_rate_clear(s);
    free((char *)s->fault.path);
    free((char *)s->fault.body);
    free((char *)s->fault.content_type);
    memset(&s->fault, 0, sizeof s->fault);
    s->clock_offset = 0;
    s->latency_ms = s->start_latency_ms;
    s->requests = s->token_requests = s->connections = s->faults = s->rate_limited = 0;
    memset(s->by_route, 0, sbx_route_count() * sizeof *s->by_route);
    sbx_log_clear(s);
    pthread_mutex_unlock(&s->lock);
    sbx_store_free(old);
    return 0;
}

int sbx_stats_get(struct sbx_server *s, struct sbx_stats *st)
{
    size_t n = sbx_route_count(), i;

    memset(st, 0, sizeof *st);
    st->route_keys = malloc(n * sizeof *st->route_keys);
    st->by_route = malloc(n * sizeof *st->by_route);
    if (st->route_keys == NULL || st->by_route == NULL) {
        sbx_stats_free(st);
        return -1;
    }
    st->nroutes = n;
    pthread_mutex_lock(&s->lock);
    st->requests = s->requests;
    st->token_requests = s->token_requests;
    st->connections = s->connections;
    st->faults = s->faults;
    st->rate_limited = s->rate_limited;
    for (i = 0; i < n; i++) {
        st->route_keys[i] = sbx_route_key(i);
        st->by_route[i] = s->by_route[i];
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void sbx_stats_free(struct sbx_stats *st)
{
    free(st->route_keys);
    free(st->by_route);
    st->route_keys = NULL;
    st->by_route = NULL;
    st->nroutes = 0;
}
