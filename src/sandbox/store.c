/*
 * store.c: the emulator's data (users, recognitions, achievements, newsfeed events, likes,
 * comments, boosts, uploads): lookups, rules that depend on the data, appending, freeing.
 * Arrays are kept in id order, and ids grow with time, so the newest object is the last one.
 * Runs with the server lock held.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void sbx_store_free(struct sbx_store *st)
{
    size_t i, k;

    if (st == NULL)
        return;
    for (i = 0; i < st->nrecs; i++) {
        free(st->recs[i].nominees);
        free(st->recs[i].text);
    }
    for (i = 0; i < st->nachs; i++) {
        free(st->achs[i].participants);
        free(st->achs[i].description);
    }
    for (k = 0; k < SBX_REACTION_KINDS; k++) {
        for (i = 0; i < st->nreactions[k]; i++)
            free(st->reactions[k][i].comment);
        free(st->reactions[k]);
    }
    for (i = 0; i < st->nuploads; i++) {
        free(st->uploads[i].filename);
        free(st->uploads[i].content_type);
        free(st->uploads[i].data);
    }
    free(st->users);
    free(st->recs);
    free(st->achs);
    free(st->events);
    free(st->uploads);
    free(st);
}

/* Binary search over an array sorted by a leading `long long id` member. */
#define FIND_BY_ID(arr, n, want)                          \
    do {                                                  \
        size_t lo_ = 0, hi_ = (n);                        \
        while (lo_ < hi_) {                               \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;          \
            if ((arr)[mid_].id == (want))                 \
                return (int)mid_;                         \
            if ((arr)[mid_].id < (want))                  \
                lo_ = mid_ + 1;                           \
            else                                          \
                hi_ = mid_;                               \
        }                                                 \
        return -1;                                        \
    } while (0)

int sbx_user_by_id(const struct sbx_store *st, long long id) { FIND_BY_ID(st->users, st->nusers, id); }
int sbx_event_by_id(const struct sbx_store *st, long long id) { FIND_BY_ID(st->events, st->nevents, id); }
int sbx_rec_by_id(const struct sbx_store *st, long long id) { FIND_BY_ID(st->recs, st->nrecs, id); }
int sbx_upload_by_id(const struct sbx_store *st, long long id) { FIND_BY_ID(st->uploads, st->nuploads, id); }

int sbx_user_by_name(const struct sbx_store *st, const char *username)
{
    size_t i;

    for (i = 0; i < st->nusers; i++)
        if (strcmp(st->users[i].username, username) == 0)
            return (int)i;
    return -1;
}

int sbx_user_lookup(const struct sbx_store *st, const char *v, int use_ids)
{
    long long id;

    if (use_ids)
        return sbx_parse_int(v, &id) ? sbx_user_by_id(st, id) : -1;
    return sbx_user_by_name(st, v);
}

int sbx_criterion_by_id(const struct sbx_store *st, long long id)
{
    size_t i;

    for (i = 0; i < st->ncriteria; i++)
        if (st->criteria[i].id == id)
            return (int)i;
    return -1;
}

int sbx_criterion_allowed(const struct sbx_store *st, int c, int sender, const int *nominees,
                          size_t n)
{
    const struct sbx_criterion *cr = &st->criteria[c];
    size_t i;

    switch (cr->who) {
    case SBX_ANYONE:
        return 1;
    case SBX_MANAGERS_ONLY:
        return st->users[sender].is_manager;
    case SBX_DIRECT_REPORTS_ONLY:
        if (!st->users[sender].is_manager)
            return 0;
        for (i = 0; i < n; i++)
            if (st->users[nominees[i]].manager != sender)
                return 0;
        return 1;
    }
    return 0;
}

int sbx_event_involves(const struct sbx_store *st, int ev, int user)
{
    const struct sbx_event *e = &st->events[ev];
    size_t i;

    if (e->type == SBX_EV_RECOGNITION) {
        const struct sbx_recognition *r = &st->recs[e->object];
        if (r->nominator == user)
            return 1;
        for (i = 0; i < r->nnominees; i++)
            if (r->nominees[i] == user)
                return 1;
    } else {
        const struct sbx_achievement *a = &st->achs[e->object];
        if (a->creator == user)
            return 1;
        for (i = 0; i < a->nparticipants; i++)
            if (a->participants[i] == user)
                return 1;
    }
    return 0;
}

/* A newsfeed event for object `obj`; index or -1. */
static int add_event(struct sbx_store *st, enum sbx_event_type type, int obj, long long created)
{
    struct sbx_event *e;

    if (SBX_GROW(st->events, st->events_cap, st->nevents) != 0)
        return -1;
    e = &st->events[st->nevents];
    e->id = st->next_event_id++;
    e->type = type;
    e->object = obj;
    e->created = created;
    return (int)st->nevents++;
}

int sbx_store_add_recognition(struct sbx_store *st, struct sbx_recognition *r)
{
    int ev;

    if (SBX_GROW(st->recs, st->recs_cap, st->nrecs) != 0 ||
        (ev = add_event(st, SBX_EV_RECOGNITION, (int)st->nrecs, r->created)) < 0) {
        free(r->nominees);
        free(r->text);
        return -1;
    }
    r->id = st->next_rec_id++;
    r->event = ev;
    st->recs[st->nrecs] = *r;
    return (int)st->nrecs++;
}

int sbx_store_add_achievement(struct sbx_store *st, struct sbx_achievement *a)
{
    int ev;

    if (SBX_GROW(st->achs, st->achs_cap, st->nachs) != 0 ||
        (ev = add_event(st, SBX_EV_ACHIEVEMENT, (int)st->nachs, a->created)) < 0) {
        free(a->participants);
        free(a->description);
        return -1;
    }
    a->id = st->next_ach_id++;
    a->event = ev;
    st->achs[st->nachs] = *a;
    return (int)st->nachs++;
}

int sbx_store_add_upload(struct sbx_store *st, struct sbx_upload *u)
{
    size_t i;

    if (SBX_GROW(st->uploads, st->uploads_cap, st->nuploads) != 0) {
        free(u->filename);
        free(u->content_type);
        free(u->data);
        return -1;
    }
    u->id = st->next_upload_id++;
    st->uploads[st->nuploads] = *u;
    st->upload_bytes += u->size;
    /* keep the newest files' bytes within SBX_UPLOAD_STORE_MAX; older ones are forgotten */
    for (i = 0; i < st->nuploads && st->upload_bytes > SBX_UPLOAD_STORE_MAX; i++) {
        if (st->uploads[i].data != NULL) {
            free(st->uploads[i].data);
            st->uploads[i].data = NULL;
            st->upload_bytes -= st->uploads[i].size;
        }
    }
    return (int)st->nuploads++;
}

int sbx_store_add_reaction(struct sbx_store *st, enum sbx_reaction_kind k, struct sbx_reaction *r)
{
    if (SBX_GROW(st->reactions[k], st->reactions_cap[k], st->nreactions[k]) != 0) {
        free(r->comment);
        return -1;
    }
    r->id = st->next_reaction_id++;
    st->reactions[k][st->nreactions[k]] = *r;
    return (int)st->nreactions[k]++;
}
