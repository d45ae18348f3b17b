/*
 * views.c: the JSON shapes of achievers-api.md section 3 (users, recognitions, achievements,
 * newsfeed events, likes, comments, boosts, recognition modules), with URLs built from the
 * server's own URL. Runs with the server lock held. Every function returns NULL when out of
 * memory (jansson's setters ignore NULL values, so a partial object is caught at the end).
 * Fields classed INFERRED in evidence.h are added only when sbx_serves() says so (not in strict
 * mode); drop() takes them out of objects built whole.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"
#include "evidence.h"

/* Removes `key` from `o` unless `id` is served; `o` may be NULL. Returns `o`. */
static json_t *drop(struct sbx_server *s, json_t *o, enum sbx_evidence_id id, const char *key)
{
    if (o != NULL && !sbx_serves(s, id))
        json_object_del(o, key);
    return o;
}

json_t *sbx_link(struct sbx_server *s, const char *rel, const char *method, const char *fmt, ...)
{
    char path[256], href[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    snprintf(href, sizeof href, "%s%s", s->url, path);
    return json_pack("{s:s, s:s, s:s}", "href", href, "method", method, "rel", rel);
}

static json_t *url(struct sbx_server *s, const char *fmt, long long id)
{
    char buf[384];
    int n = snprintf(buf, sizeof buf, "%s", s->url);

    snprintf(buf + n, sizeof buf - (size_t)n, fmt, id);
    return json_string(buf);
}

static json_t *iso(long long t)
{
    char buf[32];

    sbx_iso_time(t, buf);
    return json_string(buf);
}

static json_t *text(const char *p, size_t n)
{
    return json_stringn(p, n);
}

static json_t *full_name(const struct sbx_user *u)
{
    char buf[64];

    snprintf(buf, sizeof buf, "%s %s", u->first, u->last);
    return json_string(buf);
}

json_t *sbx_view_user_summary(struct sbx_server *s, int u)
{
    const struct sbx_user *us = &s->store->users[u];

    return json_pack("{s:I, s:s, s:o, s:o, s:{s:o}}", "id", (json_int_t)us->id,
                     "username", us->username, "fullName", full_name(us),
                     "profileImageUrl", url(s, "/platform_content/system/user/icon_med.jpg", 0),
                     "links", "self", sbx_link(s, "self", "GET", "/api/v5/users/%lld", us->id));
}

json_t *sbx_view_user(struct sbx_server *s, int u, int detailed)
{
    const struct sbx_user *us = &s->store->users[u];
    json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:o, s:{s:o}, s:o, s:b, s:I}",
                          "id", (json_int_t)us->id, "firstName", us->first, "lastName", us->last,
                          "fullName", full_name(us), "username", us->username,
                          "emailAddress", us->email, "dateCreated", iso(us->created),
                          "links", "self", sbx_link(s, "self", "GET", "/api/v5/users/%lld", us->id),
                          "profileImageUrl", url(s, "/platform_content/system/user/icon_med.jpg", 0),
                          "isPersonalizedProfileImage", 0,
                          "managerId", (json_int_t)s->store->users[us->manager].id);

    drop(s, o, SBX_EV_USER_MANAGER_ID, "managerId");
    if (o != NULL && detailed && sbx_serves(s, SBX_EV_USER_DETAIL)) {
        size_t want = json_object_size(o) + 4;
        json_object_set_new(o, "manager", sbx_view_user_summary(s, us->manager));
        json_object_set_new(o, "isManager", json_boolean(us->is_manager));
        json_object_set_new(o, "department", json_string(us->department));
        json_object_set_new(o, "title", json_string(us->title));
        if (json_object_size(o) != want) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *user_list(struct sbx_server *s, const int *v, size_t n)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, sbx_view_user_summary(s, v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *criterion_summary(struct sbx_server *s, int c)
{
    const struct sbx_criterion *cr = &s->store->criteria[c];
    const struct sbx_module *m = &s->store->modules[cr->module];

    json_t *o = json_pack("{s:i, s:s, s:i, s:s, s:i}", "id", cr->id, "name", cr->name, "moduleId", m->id,
                          "moduleName", m->name, "points", cr->points);

    drop(s, o, SBX_EV_REC_CRITERION_X, "moduleId");
    drop(s, o, SBX_EV_REC_CRITERION_X, "moduleName");
    return drop(s, o, SBX_EV_REC_CRITERION_X, "points");
}

static json_t *upload_ref(struct sbx_server *s, long long id)
{
    return drop(s, json_pack("{s:I, s:o}", "id", (json_int_t)id,
                             "url", url(s, "/platform_content/uploads/%lld", id)),
                SBX_EV_REC_UPLOAD_ID, "id");
}

json_t *sbx_view_recognition(struct sbx_server *s, int r)
{
    const struct sbx_recognition *rc = &s->store->recs[r];
    long long ev = s->store->events[rc->event].id;
    json_t *o = json_pack(
        "{s:I, s:o, s:o, s:I, s:o, s:o, s:o, s:I, s:o, s:{s:o, s:o}}",
        "id", (json_int_t)rc->id, "recognitionText", text(rc->text, rc->text_len),
        "criterion", criterion_summary(s, rc->criterion),
        "points", (json_int_t)s->store->criteria[rc->criterion].points,
        "nominator", sbx_view_user_summary(s, rc->nominator),
        "nominees", user_list(s, rc->nominees, rc->nnominees), "dateCreated", iso(rc->created),
        "newsfeedEventId", (json_int_t)ev, "newsfeedEventURL", url(s, "/event/%lld", ev),
        "links", "self", sbx_link(s, "self", "GET", "/api/v5/recognitions/%lld", rc->id),
        "newsfeedEvent", sbx_link(s, "newsfeedEvent", "GET", "/api/v5/newsfeed-events/%lld", ev));

    if (o != NULL && rc->upload != 0 && json_object_set_new(o, "fileUpload", upload_ref(s, rc->upload)) != 0) {
        json_decref(o);
        return NULL;
    }
    drop(s, o, SBX_EV_REC_POINTS, "points");
    drop(s, o, SBX_EV_REC_POINTS, "nominator");
    drop(s, o, SBX_EV_REC_EVENT_ID, "newsfeedEventId");
    if (o != NULL)
        drop(s, json_object_get(o, "links"), SBX_EV_REC_EVENT_LINK, "newsfeedEvent");
    return o;
}

static json_t *integration_creator(struct sbx_server *s)
{
    return drop(s, json_pack("{s:n, s:s, s:s}", "id", "username", SBX_INTEGRATION, "fullName", SBX_INTEGRATION),
                SBX_EV_ACH_CREATOR_NAME, "username");
}

json_t *sbx_view_achievement(struct sbx_server *s, int a)
{
    const struct sbx_achievement *ac = &s->store->achs[a];
    long long ev = s->store->events[ac->event].id;
    json_t *o = json_pack(
        "{s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:I, s:o, s:{s:o}}",
        "id", (json_int_t)ac->id, "description", text(ac->description, ac->desc_len),
        "dateAchieved", ac->date[0] ? json_string(ac->date) : json_null(),
        "creator", ac->creator >= 0 ? sbx_view_user_summary(s, ac->creator) : integration_creator(s),
        "participants", user_list(s, ac->participants, ac->nparticipants),
        "points", (json_int_t)ac->points, "dateCreated", iso(ac->created),
        "newsfeedEventId", (json_int_t)ev, "newsfeedEventURL", url(s, "/event/%lld", ev),
        "links", "newsfeedEvent",
        sbx_link(s, "newsfeedEvent", "GET", "/api/v5/newsfeed-events/%lld", ev));

    if (o != NULL && ac->upload != 0 && json_object_set_new(o, "fileUpload", upload_ref(s, ac->upload)) != 0) {
        json_decref(o);
        return NULL;
    }
    drop(s, o, SBX_EV_ACH_EVENT_URL, "newsfeedEventURL");
    drop(s, o, SBX_EV_ACH_EVENT_ID, "newsfeedEventId");
    if (o != NULL && json_object_get(o, "links") != NULL) {
        drop(s, json_object_get(o, "links"), SBX_EV_ACH_EVENT_LINK, "newsfeedEvent");
        if (json_object_size(json_object_get(o, "links")) == 0)
            json_object_del(o, "links");
    }
    return o;
}

static size_t reaction_count(const struct sbx_store *st, enum sbx_reaction_kind k, int ev)
{
    size_t i, n = 0;

    for (i = 0; i < st->nreactions[k]; i++)
        if (st->reactions[k][i].event == ev)
            n++;
    return n;
}

json_t *sbx_view_event(struct sbx_server *s, int e)
{
    const struct sbx_store *st = s->store;
    const struct sbx_event *ev = &st->events[e];
    json_t *creator, *subject, *o;
    const char *type;
    int who;

    if (ev->type == SBX_EV_RECOGNITION) {
        const struct sbx_recognition *r = &st->recs[ev->object];
        type = "recognition";
        who = r->nominator;
        subject = sbx_view_recognition(s, ev->object);
    } else {
        const struct sbx_achievement *a = &st->achs[ev->object];
        type = "achievement";
        who = a->creator;
        subject = sbx_view_achievement(s, ev->object);
    }
    if (who >= 0) {
        const struct sbx_user *u = &st->users[who];
        creator = json_pack("{s:I, s:o, s:s, s:o}", "id", (json_int_t)u->id, "name", full_name(u),
                            "username", u->username,
                            "profileImageUrl", url(s, "/platform_content/system/user/icon_med.jpg", 0));
    } else {
        creator = json_pack("{s:n, s:s, s:n, s:o}", "id", "name", SBX_INTEGRATION, "username",
                            "profileImageUrl", url(s, "/platform_content/system/user/icon_med.jpg", 0));
    }
    o = json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o}}",
                  "id", (json_int_t)ev->id, "eventType", type, "creator", creator,
                  "dateCreated", iso(ev->created), "newsfeedEventURL", url(s, "/event/%lld", ev->id),
                  type, subject,
                  "likesCount", (json_int_t)reaction_count(st, SBX_LIKE, e),
                  "commentsCount", (json_int_t)reaction_count(st, SBX_COMMENT, e),
                  "boostsCount", (json_int_t)reaction_count(st, SBX_BOOST, e),
                  "links",
                  "self", sbx_link(s, "self", "GET", "/api/v5/newsfeed-events/%lld", ev->id),
                  "likes", sbx_link(s, "likes", "GET", "/api/v5/newsfeed-events/%lld/likes", ev->id),
                  "comments", sbx_link(s, "comments", "GET", "/api/v5/newsfeed-events/%lld/comments", ev->id),
                  "boosts", sbx_link(s, "boosts", "GET", "/api/v5/newsfeed-events/%lld/boosts", ev->id));
    drop(s, o, SBX_EV_EVENT_EMBED, type);
    drop(s, o, SBX_EV_EVENT_COUNTS, "likesCount");
    drop(s, o, SBX_EV_EVENT_COUNTS, "commentsCount");
    drop(s, o, SBX_EV_EVENT_COUNTS, "boostsCount");
    if (o != NULL)
        drop(s, json_object_get(o, "creator"), SBX_EV_EVENT_CREATOR_USERNAME, "username");
    return o;
}

json_t *sbx_view_reaction(struct sbx_server *s, enum sbx_reaction_kind k, int r)
{
    const struct sbx_reaction *re = &s->store->reactions[k][r];
    json_t *o = json_pack("{s:I, s:o, s:o}", "id", (json_int_t)re->id,
                          "user", sbx_view_user_summary(s, re->user), "dateCreated", iso(re->created));

    if (o == NULL)
        return NULL;
    if ((k == SBX_COMMENT && json_object_set_new(o, "comment", json_string(re->comment)) != 0) ||
        (k == SBX_BOOST && json_object_set_new(o, "points", json_integer(re->points)) != 0)) {
        json_decref(o);
        return NULL;
    }
    drop(s, o, SBX_EV_REACTION_FIELDS, "user");
    drop(s, o, SBX_EV_REACTION_FIELDS, "comment");
    return drop(s, o, SBX_EV_REACTION_FIELDS, "points");
}

/* The modules with the criteria `sender` may use for all `n` nominees (modules left empty are
   left out). An array, or NULL out of memory. */
json_t *sbx_view_module_list(struct sbx_server *s, int sender, const int *nominees, size_t n)
{
    const struct sbx_store *st = s->store;
    json_t *items = json_array();
    size_t m, c;

    for (m = 0; items != NULL && m < st->nmodules; m++) {
        const struct sbx_module *mod = &st->modules[m];
        json_t *crits = json_array(), *o;
        for (c = 0; crits != NULL && c < st->ncriteria; c++) {
            const struct sbx_criterion *cr = &st->criteria[c];
            if (cr->module != (int)m || !sbx_criterion_allowed(st, (int)c, sender, nominees, n))
                continue;
            if (json_array_append_new(crits, drop(s, json_pack(
                    "{s:i, s:s, s:s, s:o, s:i}", "id", cr->id, "name", cr->name,
                    "description", cr->description,
                    "criterionBannerUrl", url(s, "/platform_content/criteria/%lld.png", cr->id),
                    "points", cr->points), SBX_EV_CRITERION_POINTS, "points")) != 0) {
                json_decref(crits);
                crits = NULL;
            }
        }
        if (crits == NULL) {
            json_decref(items);
            return NULL;
        }
        if (json_array_size(crits) == 0) {
            json_decref(crits);
            continue;
        }
        o = json_pack("{s:i, s:s, s:s, s:o, s:s, s:o}", "id", mod->id, "name", mod->name,
                      "description", mod->description,
                      "bannerURL", url(s, "/platform_content/modules/%lld/banner.png", mod->id),
                      "moduleType", mod->type, "criteria", crits);
        if (json_array_append_new(items, o) != 0) {
            json_decref(items);
            return NULL;
        }
    }
    return items;
}
