/*
 * api_newsfeed.c: GET /newsfeed-events (optionally only those involving a user, newest first),
 * GET /newsfeed-events/{id} and its likes, comments and boosts, plus the small browser page
 * behind every newsfeedEventURL. Runs with the server lock held.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void oom(struct sbx_ctx *c)
{
    sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
}

void sbx_h_events(struct sbx_ctx *c)
{
    const struct sbx_store *st = c->s->store;
    int user, *idx;
    size_t i, n = 0;

    if (!sbx_user_filter(c, &user))
        return;
    idx = malloc((st->nevents ? st->nevents : 1) * sizeof *idx);
    if (idx == NULL) {
        oom(c);
        return;
    }
    for (i = st->nevents; i-- > 0;)
        if (user < 0 || sbx_event_involves(st, (int)i, user))
            idx[n++] = (int)i;
    sbx_reply_list(c, idx, n, sbx_view_event);
    free(idx);
}

static int find_event(struct sbx_ctx *c)
{
    int e = sbx_event_by_id(c->s->store, c->ids[0]);

    if (e < 0)
        sbx_reply_error(c->rp, 404, "not_found", NULL, "no newsfeed event with id %lld", c->ids[0]);
    return e;
}

void sbx_h_event(struct sbx_ctx *c)
{
    int e = find_event(c);

    if (e >= 0)
        sbx_reply_json(c->rp, 200, sbx_view_event(c->s, e));
}

static json_t *like_item(struct sbx_server *s, int i) { return sbx_view_reaction(s, SBX_LIKE, i); }
static json_t *comment_item(struct sbx_server *s, int i) { return sbx_view_reaction(s, SBX_COMMENT, i); }
static json_t *boost_item(struct sbx_server *s, int i) { return sbx_view_reaction(s, SBX_BOOST, i); }

static void reactions(struct sbx_ctx *c, enum sbx_reaction_kind k, sbx_view_fn *view)
{
    const struct sbx_store *st = c->s->store;
    int e = find_event(c), *idx;
    size_t i, n = 0;

    if (e < 0)
        return;
    idx = malloc((st->nreactions[k] ? st->nreactions[k] : 1) * sizeof *idx);
    if (idx == NULL) {
        oom(c);
        return;
    }
    for (i = 0; i < st->nreactions[k]; i++)
        if (st->reactions[k][i].event == e)
            idx[n++] = (int)i;
    sbx_reply_list(c, idx, n, view);
    free(idx);
}

void sbx_h_event_likes(struct sbx_ctx *c) { reactions(c, SBX_LIKE, like_item); }
void sbx_h_event_comments(struct sbx_ctx *c) { reactions(c, SBX_COMMENT, comment_item); }
void sbx_h_event_boosts(struct sbx_ctx *c) { reactions(c, SBX_BOOST, boost_item); }

/* HTML-escapes n bytes. */
int sbx_html_escape(struct sbx_buf *b, const char *s, size_t n)
{
    size_t i;
    int fail = 0;

    for (i = 0; i < n && !fail; i++) {
        switch (s[i]) {
        case '&': fail = sbx_buf_add(b, "&amp;", 5); break;
        case '<': fail = sbx_buf_add(b, "&lt;", 4); break;
        case '>': fail = sbx_buf_add(b, "&gt;", 4); break;
        case '"': fail = sbx_buf_add(b, "&quot;", 6); break;
        case '\'': fail = sbx_buf_add(b, "&#39;", 5); break;
        case '\0': break;
        default: fail = sbx_buf_add(b, s + i, 1); break;
        }
    }
    return fail;
}

/* The page a person reaches from newsfeedEventURL. */
void sbx_h_event_page(struct sbx_ctx *c)
{
    const struct sbx_store *st = c->s->store;
    struct sbx_buf b = {0};
    const struct sbx_event *ev;
    int e = sbx_event_by_id(st, c->ids[0]), fail;
    char when[32];

    if (e < 0) {
        sbx_reply_error(c->rp, 404, "not_found", NULL, "no newsfeed event with id %lld", c->ids[0]);
        return;
    }
    ev = &st->events[e];
    sbx_iso_time(ev->created, when);
    fail = sbx_buf_addf(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                            "<title>Newsfeed event %lld</title></head><body>\n<h1>", ev->id);
    if (ev->type == SBX_EV_RECOGNITION) {
        const struct sbx_recognition *r = &st->recs[ev->object];
        const struct sbx_user *u = &st->users[r->nominator];
        fail = fail || sbx_buf_addf(&b, "Recognition from %s %s</h1>\n<p>", u->first, u->last) ||
               sbx_html_escape(&b, r->text, r->text_len);
    } else {
        const struct sbx_achievement *a = &st->achs[ev->object];
        fail = fail || sbx_buf_addf(&b, "Achievement</h1>\n<p>") ||
               sbx_html_escape(&b, a->description, a->desc_len);
    }
    fail = fail || sbx_buf_addf(&b, "</p>\n<p><small>%s</small></p>\n</body></html>\n", when);
    if (fail) {
        sbx_buf_free(&b);
        oom(c);
        return;
    }
    sbx_reply_html(c->rp, 200, &b);
}
