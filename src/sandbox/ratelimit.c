/*
 * ratelimit.c: the per-token limits of achievers-api.md section 0, as fixed windows that start
 * at the first request: per token, one for each heavy endpoint (GET /recognitions, GET
 * /newsfeed-events, each 50 per 60 s) and one for everything else (500 per 120 s). Runs with the server lock held; windows
 * follow the emulator clock, so `advance` moves them too.
 */
#include <string.h>

#include "internal.h"

int sbx_rate_check(struct sbx_server *s, const char *token, enum sbx_rate_class cls, long bucket)
{
    const struct sbx_limit *lim = cls == SBX_RATE_HEAVY ? &s->heavy : &s->normal;
    long long now = sbx_now(s);
    struct sbx_window *w = NULL;
    size_t i;

    if (!s->rate_limit || cls == SBX_RATE_NONE)
        return 0;
    if (cls != SBX_RATE_HEAVY)
        bucket = -1;
    for (i = 0; i < s->nwindows; i++) {
        if (s->windows[i].cls == cls && s->windows[i].bucket == bucket &&
            strcmp(s->windows[i].token, token) == 0) {
            w = &s->windows[i];
            break;
        }
    }
    if (w == NULL) {
        if (SBX_GROW(s->windows, s->windows_cap, s->nwindows) != 0)
            return 0;   /* out of memory: let the request through rather than fail it */
        w = &s->windows[s->nwindows++];
        memset(w, 0, sizeof *w);
        strncpy(w->token, token, sizeof w->token - 1);
        w->cls = cls;
        w->bucket = bucket;
        w->start = now;
    }
    if (now >= w->start + lim->window) {
        w->start = now;
        w->count = 0;
    }
    if (w->count >= lim->count) {
        long long left = w->start + lim->window - now;
        return left < 1 ? 1 : (int)left;
    }
    w->count++;
    return 0;
}

void sbx_rate_clear(struct sbx_server *s)
{
    s->nwindows = 0;
}
