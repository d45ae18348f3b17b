/*
 * api_achievements.c: POST /achievements (creator rules of achievers-api.md section 1.8),
 * POST /uploads (multipart, field `file`, binary-safe, images only: PNG, JPEG or GIF by their
 * content) and GET of an uploaded file's URL. Achievement points come out of the program's
 * account (a 403 when it cannot pay).
 * Runs with the server lock held.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "evidence.h"

#define P_CREATOR      "creator"
#define P_PARTICIPANTS "participants"
#define P_DESCRIPTION  "description"
#define P_POINTS       "points"
#define P_DATE         "dateAchieved"
#define P_USE_IDS      "useUserIds"
#define P_ADJUSTED     "adjustedForUserCountry"
#define P_FILE         "file"

static void oom(struct sbx_ctx *c)
{
    sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
}

/* RFC 3339 full-date that names a real day. */
static int valid_date(const char *s)
{
    struct tm tm;
    time_t t;
    int y, m, d;
    char tail;

    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || s[4] != '-' ||
        s[7] != '-' || m < 1 || m > 12 || d < 1 || d > 31)
        return 0;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;
    t = timegm(&tm);
    return t != (time_t)-1 && tm.tm_mday == d && tm.tm_mon == m - 1;
}

void sbx_h_achievement_post(struct sbx_ctx *c)
{
    struct sbx_store *st = c->s->store;
    struct sbx_params p = {0};
    struct sbx_achievement a;
    const struct sbx_param *desc, *v;
    int use_ids, adjusted, creator, *parts = NULL, idx;
    size_t n = 0, i;
    long long points = 0, upload;

    if (!sbx_body_params(c, &p))
        goto done;
    if (!sbx_params_bool(&p, P_USE_IDS, 0, &use_ids) ||
        !sbx_params_bool(&p, P_ADJUSTED, 1, &adjusted)) {
        const char *bad = sbx_params_bool(&p, P_USE_IDS, 0, &use_ids) ? P_ADJUSTED : P_USE_IDS;
        sbx_reply_error(c->rp, 400, "invalid_request", bad, "%s: must be true or false", bad);
        goto done;
    }
    creator = c->tok->user;   /* a user token: the owner is the creator, `creator` is ignored */
    if (creator < 0 && (v = sbx_params_get(&p, P_CREATOR)) != NULL && v->vlen > 0) {
        creator = sbx_user_lookup(st, v->val, use_ids);
        if (creator < 0) {
            sbx_reply_error(c->rp, 400, "invalid_request", P_CREATOR, P_CREATOR ": unknown user '%s'",
                            v->val);
            goto done;
        }
    }
    if (!sbx_resolve_users(c, &p, P_PARTICIPANTS, use_ids, 1, -2, &parts, &n) ||
        !sbx_text_param(c, &p, P_DESCRIPTION, &desc))
        goto done;
    if ((v = sbx_params_get(&p, P_POINTS)) != NULL && v->vlen > 0 &&
        (!sbx_parse_int(v->val, &points) || points < 0 || points > 1000000000LL)) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_POINTS,
                        P_POINTS ": must be an integer, 0 or more");
        goto done;
    }
    if ((v = sbx_params_get(&p, P_DATE)) != NULL && v->vlen > 0 && !valid_date(v->val)) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_DATE,
                        P_DATE ": must be a date like 2017-01-25");
        goto done;
    }
    if (!sbx_upload_param(c, &p, &upload))
        goto done;
    /* the creator counts as a participant */
    for (i = 0; creator >= 0 && i < n && parts[i] != creator; i++)
        ;
    if (creator >= 0 && i == n) {
        int *grown = realloc(parts, (n + 1) * sizeof *parts);
        if (grown == NULL) {
            oom(c);
            goto done;
        }
        parts = grown;
        parts[n++] = creator;
    }
    if (points > 0 && points * (long long)n > st->program_budget) {
        sbx_reply_error(c->rp, 403, "insufficient_budget", P_POINTS,
                        P_POINTS ": %lld points for each of %zu participants is %lld, more than the %lld "
                        "left in the program's account", points, n, points * (long long)n,
                        st->program_budget);
        goto done;
    }
    memset(&a, 0, sizeof a);
    a.creator = creator;
    a.participants = parts;
    a.nparticipants = n;
    parts = NULL;
    a.description = sbx_memdup(desc->val, desc->vlen);
    a.desc_len = desc->vlen;
    if (v != NULL && v->vlen > 0)
        snprintf(a.date, sizeof a.date, "%s", v->val);
    a.points = points;
    a.upload = upload;
    a.created = c->now;
    if (a.description == NULL) {
        free(a.participants);
        oom(c);
        goto done;
    }
    idx = sbx_store_add_achievement(st, &a);
    if (idx < 0) {
        oom(c);
    } else {
        st->program_budget -= points * (long long)n;
        sbx_reply_json(c->rp, 201, sbx_view_achievement(c->s, idx));
    }
done:
    free(parts);
    sbx_params_free(&p);
}

/* The image formats the upload takes, by their magic bytes (the docs say an image; the name and
   Content-Type a client gives are not looked at). */
static const struct {
    const char *magic;
    size_t len;
    const char *type;
} image_kinds[] = {
    {"\x89PNG\r\n\x1a\n", 8, "image/png"},
    {"\xff\xd8\xff", 3, "image/jpeg"},
    {"GIF87a", 6, "image/gif"},
    {"GIF89a", 6, "image/gif"},
};

/* The media type of an image file, or NULL when it is none of image_kinds. */
static const char *image_type(const char *data, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof image_kinds / sizeof image_kinds[0]; i++)
        if (len >= image_kinds[i].len && memcmp(data, image_kinds[i].magic, image_kinds[i].len) == 0)
            return image_kinds[i].type;
    return NULL;
}

/* A non-empty header value we can echo: printable ASCII only. */
static int printable(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return 0;
    return 1;
}

void sbx_h_upload_post(struct sbx_ctx *c)
{
    const char *ct = sbx_req_header(c->req, "content-type");
    struct sbx_upload u;
    struct sbx_part part;
    char media[64];
    int rc, idx;
    json_t *o;

    sbx_req_media_type(c->req, media, sizeof media);
    if (strcmp(media, "multipart/form-data") != 0) {
        sbx_reply_error(c->rp, 415, "unsupported_media_type", P_FILE,
                        "send the file as multipart/form-data in a field named 'file'");
        return;
    }
    rc = sbx_multipart_find(ct, c->req->body.data ? c->req->body.data : "", c->req->body.len,
                            P_FILE, &part);
    if (rc == SBX_EBAD) {
        sbx_reply_error(c->rp, 400, "invalid_request", NULL, "malformed multipart/form-data body");
        return;
    }
    if (rc != SBX_OK) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_FILE, P_FILE ": required");
        return;
    }
    if (part.len == 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_FILE, P_FILE ": the file is empty");
        return;
    }
    if (part.len > SBX_UPLOAD_LIMIT) {
        sbx_reply_error(c->rp, 413, "file_too_large", P_FILE, P_FILE ": at most %u bytes",
                        SBX_UPLOAD_LIMIT);
        return;
    }
    if (image_type(part.data, part.len) == NULL) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_FILE,
                        P_FILE ": not an image; send a PNG, JPEG or GIF file (its content is checked, "
                        "not its name or type)");
        return;
    }
    memset(&u, 0, sizeof u);
    u.filename = sbx_strdup(part.filename);
    u.content_type = sbx_strdup(printable(part.content_type) ? part.content_type : "application/octet-stream");
    u.data = sbx_memdup(part.data, part.len);
    u.size = part.len;
    u.created = c->now;
    sbx_sha256_hex(part.data, part.len, u.sha256);
    if (u.filename == NULL || u.content_type == NULL || u.data == NULL) {
        free(u.filename);
        free(u.content_type);
        free(u.data);
        oom(c);
        return;
    }
    idx = sbx_store_add_upload(c->s->store, &u);
    if (idx < 0) {
        oom(c);
        return;
    }
    {
        const struct sbx_upload *up = &c->s->store->uploads[idx];
        char url[256];
        snprintf(url, sizeof url, "%s/platform_content/uploads/%lld", c->s->url, up->id);
        o = json_pack("{s:I}", "fileUploadId", (json_int_t)up->id);
        if (o != NULL && sbx_serves(c->s, SBX_EV_UPLOAD_URL))
            json_object_set_new(o, "url", json_string(url));
        if (o != NULL && sbx_serves(c->s, SBX_EV_UPLOAD_DETAIL) &&
            json_object_update_missing_new(o, json_pack(
                "{s:I, s:s, s:s, s:s}", "size", (json_int_t)up->size, "sha256", up->sha256,
                "filename", sbx_utf8_valid(up->filename, strlen(up->filename)) ? up->filename : "",
                "contentType", up->content_type)) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    sbx_reply_json(c->rp, 201, o);
}

/* The bytes of an upload, at the URL POST /uploads answered. */
void sbx_h_upload_get(struct sbx_ctx *c)
{
    int i = sbx_upload_by_id(c->s->store, c->ids[0]);
    const struct sbx_upload *u;
    struct sbx_buf b = {0};

    if (i < 0) {
        sbx_reply_error(c->rp, 404, "not_found", NULL, "no upload with id %lld", c->ids[0]);
        return;
    }
    u = &c->s->store->uploads[i];
    if (u->data == NULL) {
        sbx_reply_error(c->rp, 410, "gone", NULL, "upload %lld is no longer kept: the sandbox keeps the "
                        "newest %u bytes of files", c->ids[0], SBX_UPLOAD_STORE_MAX);
        return;
    }
    if (sbx_buf_add(&b, u->data, u->size) != 0) {
        oom(c);
        return;
    }
    sbx_reply_html(c->rp, 200, &b);
    c->rp->ctype = NULL;
    sbx_reply_header(c->rp, "Content-Type", "%s", u->content_type);
}
