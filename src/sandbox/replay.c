/*
 * replay.c: answering recorded requests with their recorded answers, and seeding the store
 * from a recording (see replay.h for the contract, record.lua for the file format).
 *
 * Memory: the index holds one key per distinct request and 12 bytes per recorded answer; the
 * answers themselves stay in the file and are read (pread) when asked for. Loops are bounded
 * by the file (one pass) and by the index size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "replay.h"

#define RP_LINE_MAX (256u * 1024u * 1024u) /* one line (one answer) at most */
#define RP_ORIGINS 8

struct rp_entry {
    char *key;              /* NULL: free slot */
    int64_t *off;
    uint32_t *len;
    size_t n, cap, next;    /* answers, room, the one the next request gets */
};

struct sbx_replay {
    int fd;
    char *path;
    enum sbx_replay_mode mode;
    struct rp_entry *tab;   /* open addressing, power of two */
    size_t cap, count;
    char *origins[RP_ORIGINS];  /* the recorded base URLs, replaced by the sandbox's own */
    size_t norigins;
};

int sbx_replay_mode_parse(const char *s, enum sbx_replay_mode *out)
{
    if (s == NULL || strcmp(s, "answer") == 0)
        *out = SBX_REPLAY_ANSWER;
    else if (strcmp(s, "strict") == 0)
        *out = SBX_REPLAY_STRICT;
    else if (strcmp(s, "seed") == 0)
        *out = SBX_REPLAY_SEED;
    else
        return 0;
    return 1;
}

void sbx_replay_free(struct sbx_replay *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->cap; i++) {
        free(r->tab[i].key);
        free(r->tab[i].off);
        free(r->tab[i].len);
    }
    for (i = 0; i < r->norigins; i++)
        free(r->origins[i]);
    free(r->tab);
    free(r->path);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

/* ---- keys ----------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "METHOD path?query" with the query's pairs sorted, so that the order of parameters does not
   matter. NULL out of memory. */
static char *make_key(const char *method, const char *path, const char *query)
{
    struct sbx_buf b = {0};
    char *q = NULL, **pairs = NULL, *p, *save = NULL;
    size_t n = 0, cap = 0, i;
    int bad = 0;

    if (sbx_buf_addf(&b, "%s %s", method, path) != 0)
        return NULL;
    if (query != NULL && query[0] != '\0') {
        if ((q = sbx_strdup(query)) == NULL)
            bad = 1;
        for (p = q ? strtok_r(q, "&", &save) : NULL; p != NULL && !bad; p = strtok_r(NULL, "&", &save)) {
            if (SBX_GROW(pairs, cap, n) != 0)
                bad = 1;
            else
                pairs[n++] = p;
        }
        if (!bad && n > 0) {
            qsort(pairs, n, sizeof *pairs, cmp_str);
            for (i = 0; i < n && !bad; i++)
                bad = sbx_buf_addf(&b, "%c%s", i == 0 ? '?' : '&', pairs[i]) != 0;
        }
    }
    free(pairs);
    free(q);
    if (bad || b.data == NULL) {
        sbx_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static struct rp_entry *find(struct sbx_replay *r, const char *key)
{
    size_t i, mask = r->cap - 1;

    if (r->cap == 0)
        return NULL;
    for (i = (size_t)hash_str(key) & mask; r->tab[i].key != NULL; i = (i + 1) & mask)
        if (strcmp(r->tab[i].key, key) == 0)
            return &r->tab[i];
    return NULL;
}

static int grow_table(struct sbx_replay *r)
{
    size_t ncap = r->cap ? r->cap * 2 : 64, i, j;
    struct rp_entry *nt = calloc(ncap, sizeof *nt);

    if (nt == NULL)
        return -1;
    for (i = 0; i < r->cap; i++) {
        if (r->tab[i].key == NULL)
            continue;
        for (j = (size_t)hash_str(r->tab[i].key) & (ncap - 1); nt[j].key != NULL; j = (j + 1) & (ncap - 1))
            ;
        nt[j] = r->tab[i];
    }
    free(r->tab);
    r->tab = nt;
    r->cap = ncap;
    return 0;
}

/* Adds one answer (file offset and length of its line) for `key` (taken). */
static int index_add(struct sbx_replay *r, char *key, int64_t off, uint32_t len)
{
    struct rp_entry *e = find(r, key);
    size_t i;

    if (e == NULL) {
        if ((r->count + 1) * 2 > r->cap && grow_table(r) != 0) {
            free(key);
            return -1;
        }
        for (i = (size_t)hash_str(key) & (r->cap - 1); r->tab[i].key != NULL; i = (i + 1) & (r->cap - 1))
            ;
        e = &r->tab[i];
        e->key = key;
        r->count++;
    } else {
        free(key);
    }
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 2;
        int64_t *o = realloc(e->off, ncap * sizeof *o);
        uint32_t *l;
        if (o == NULL)
            return -1;
        e->off = o;
        if ((l = realloc(e->len, ncap * sizeof *l)) == NULL)
            return -1;
        e->len = l;
        e->cap = ncap;
    }
    e->off[e->n] = off;
    e->len[e->n] = len;
    e->n++;
    return 0;
}

/* ---- reading the file ------------------------------------------------------------------------ */

/* The recorded exchange on one line: its request and answer objects (borrowed from `line`), or
   0 for a line that is not an exchange (meta). -1 with a message for a bad line. */
static int exchange_parts(json_t *line, json_t **req, json_t **resp, char *why, size_t whylen)
{
    const char *type;

    if (!json_is_object(line)) {
        snprintf(why, whylen, "not a JSON object");
        return -1;
    }
    type = json_string_value(json_object_get(line, "type"));
    if (type != NULL && strcmp(type, "exchange") != 0)
        return 0;
    *req = json_object_get(line, "request");
    *resp = json_object_get(line, "response");
    if (!json_is_object(*req) || !json_is_string(json_object_get(*req, "method")) ||
        !json_is_string(json_object_get(*req, "path"))) {
        snprintf(why, whylen, "an exchange needs request.method and request.path");
        return -1;
    }
    if (*resp != NULL && (!json_is_object(*resp) || !json_is_integer(json_object_get(*resp, "status")))) {
        snprintf(why, whylen, "response.status must be an integer");
        return -1;
    }
    return 1;
}

/* Token endpoints and the authorize page are always the sandbox's own. */
static int is_oauth(const char *path)
{
    return strncmp(path, "/oauth/", 7) == 0;
}

typedef int line_fn(void *ud, json_t *line, int64_t off, size_t len, char *why, size_t whylen);

/* Calls fn for each non-empty line of the file, one line in memory at a time. */
static int each_line(const char *path, line_fn *fn, void *ud, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, why[256];
    size_t cap = 0;
    ssize_t n;
    int64_t off = 0;
    long lineno = 0;
    int rc = 0;

    if (f == NULL) {
        snprintf(err, errlen, "replay: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&buf, &cap, f)) > 0) {
        json_error_t je;
        json_t *line;
        size_t len = (size_t)n;
        lineno++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            len--;
        if (len == 0 || strspn(buf, " \t") == len) {
            off += n;
            continue;
        }
        if (len > RP_LINE_MAX) {
            snprintf(err, errlen, "replay: %s line %ld: longer than %u bytes", path, lineno, RP_LINE_MAX);
            rc = -1;
            break;
        }
        line = json_loadb(buf, len, 0, &je);
        if (line == NULL) {
            snprintf(err, errlen, "replay: %s line %ld: not valid JSON (%s at column %d)", path,
                     lineno, je.text, je.column);
            rc = -1;
            break;
        }
        why[0] = '\0';
        if (fn(ud, line, off, len, why, sizeof why) != 0) {
            snprintf(err, errlen, "replay: %s line %ld: %s", path, lineno, why[0] ? why : "out of memory");
            json_decref(line);
            rc = -1;
            break;
        }
        json_decref(line);
        off += n;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "replay: cannot read %s", path);
        rc = -1;
    }
    free(buf);
    fclose(f);
    return rc;
}

static int remember_origin(struct sbx_replay *r, json_t *line)
{
    const char *type = json_string_value(json_object_get(line, "type"));
    const char *base = json_string_value(json_object_get(line, "base_url"));
    size_t i;

    if (type == NULL || strcmp(type, "meta") != 0 || base == NULL || base[0] == '\0')
        return 0;
    for (i = 0; i < r->norigins; i++)
        if (strcmp(r->origins[i], base) == 0)
            return 0;
    if (r->norigins == RP_ORIGINS)
        return 0;
    return (r->origins[r->norigins++] = sbx_strdup(base)) == NULL ? -1 : 0;
}

static int index_line(void *ud, json_t *line, int64_t off, size_t len, char *why, size_t whylen)
{
    struct sbx_replay *r = ud;
    json_t *req, *resp;
    const char *path;
    char *key;
    int rc = exchange_parts(line, &req, &resp, why, whylen);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return remember_origin(r, line);
    path = json_string_value(json_object_get(req, "path"));
    if (resp == NULL || is_oauth(path) || json_is_true(json_object_get(line, "token_request")))
        return 0;   /* no answer (a transport failure), or a token request */
    if (len > UINT32_MAX) {
        snprintf(why, whylen, "line too long");
        return -1;
    }
    key = make_key(json_string_value(json_object_get(req, "method")), path,
                   json_string_value(json_object_get(req, "query")));
    if (key == NULL)
        return -1;
    return index_add(r, key, off, (uint32_t)len);
}

/* ---- answering ------------------------------------------------------------------------------- */

/* Replaces every recorded origin in `text` (taken) by the sandbox's URL. */
static char *rewrite_origins(struct sbx_replay *r, const char *url, char *text, size_t *len)
{
    size_t i;

    for (i = 0; i < r->norigins && text != NULL; i++) {
        const char *o = r->origins[i], *p = text, *hit;
        size_t olen = strlen(o);
        struct sbx_buf b = {0};
        if (strcmp(o, url) == 0 || strstr(text, o) == NULL)
            continue;
        while ((hit = strstr(p, o)) != NULL) {
            if (sbx_buf_add(&b, p, (size_t)(hit - p)) != 0 || sbx_buf_add(&b, url, strlen(url)) != 0)
                break;
            p = hit + olen;
        }
        if (hit != NULL || sbx_buf_add(&b, p, strlen(p)) != 0) {
            sbx_buf_free(&b);
            free(text);
            return NULL;
        }
        free(text);
        text = b.data;
        *len = b.len;
    }
    return text;
}

static const char *const skipped_headers[] = {
    "date", "content-length", "connection", "transfer-encoding", "keep-alive", "set-cookie", NULL,
};

/* Fills the reply from a recorded answer. */
static void build_reply(struct sbx_ctx *c, struct sbx_replay *r, json_t *resp)
{
    json_t *hs = json_object_get(resp, "headers"), *body = json_object_get(resp, "body"), *v;
    const char *text = json_string_value(json_object_get(resp, "body_text")), *name;
    char *out = NULL;
    size_t len = 0, i;
    int has_ctype = 0;

    if (body != NULL) {
        out = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        len = out ? strlen(out) : 0;
    } else if (text != NULL) {
        len = json_string_length(json_object_get(resp, "body_text"));
        out = sbx_memdup(text, len);
    }
    if (out != NULL)
        out = rewrite_origins(r, c->s->url, out, &len);
    if ((body != NULL || text != NULL) && out == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return;
    }
    {
        /* a hand-edited recording may hold any number: HTTP has 100-599 */
        json_int_t st = json_integer_value(json_object_get(resp, "status"));
        if (st < 100 || st > 599) {
            free(out);
            sbx_reply_error(c->rp, 500, "server_error", NULL,
                            "replay: the recorded status is not an HTTP status (100-599)");
            return;
        }
    }
    free(c->rp->body);
    c->rp->status = (int)json_integer_value(json_object_get(resp, "status"));
    c->rp->body = out;
    c->rp->len = len;
    c->rp->ctype = NULL;
    json_object_foreach(hs, name, v) {
        if (!json_is_string(v))
            continue;
        for (i = 0; skipped_headers[i] != NULL && strcasecmp(skipped_headers[i], name) != 0; i++)
            ;
        if (skipped_headers[i] != NULL)
            continue;
        if (strcasecmp(name, "content-type") == 0)
            has_ctype = 1;
        /* header values come from the file: no CR or LF may pass into the answer */
        if (strpbrk(json_string_value(v), "\r\n") == NULL)
            sbx_reply_header(c->rp, name, "%s", json_string_value(v));
    }
    if (!has_ctype && body != NULL)
        c->rp->ctype = "application/json; charset=utf-8";
}

/* The recorded request key closest to `key`: same method first, then the longest common
   prefix. */
static const char *nearest(struct sbx_replay *r, const char *key)
{
    const char *best = NULL, *sp = strchr(key, ' ');
    size_t mlen = sp ? (size_t)(sp - key) : 0, i;
    long best_score = -1;

    for (i = 0; i < r->cap; i++) {
        const char *k = r->tab[i].key;
        long score = 0;
        size_t j;
        if (k == NULL)
            continue;
        if (strncmp(k, key, mlen + 1) == 0)
            score += 100000;
        for (j = mlen + 1; k[j] != '\0' && key[j] != '\0' && k[j] == key[j] && j < 4096; j++)
            score++;
        if (score > best_score || (score == best_score && best != NULL && strcmp(k, best) < 0)) {
            best_score = score;
            best = k;
        }
    }
    return best;
}

int sbx_replay_answer(struct sbx_ctx *c)
{
    struct sbx_replay *r = c->s->replay;
    struct rp_entry *e;
    const char *near;
    char *key, *buf;
    json_t *line, *req, *resp;
    size_t k;
    ssize_t got;
    char why[128];

    if (r == NULL || is_oauth(c->req->path))
        return 0;
    if ((key = make_key(c->req->method, c->req->path, c->req->query)) == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return 1;
    }
    e = find(r, key);
    if (e == NULL) {
        if (r->mode != SBX_REPLAY_STRICT) {
            free(key);
            return 0;
        }
        near = nearest(r, key);
        sbx_reply_error(c->rp, 501, "not_recorded", NULL,
                        "replay (strict): %s was not recorded; nearest recorded request: %s",
                        key, near ? near : "(none: the recording holds no API request)");
        free(key);
        return 1;
    }
    free(key);
    k = e->next < e->n ? e->next++ : e->n - 1;   /* in recorded order, then the last again */
    buf = malloc((size_t)e->len[k] + 1);
    if (buf == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return 1;
    }
    got = pread(r->fd, buf, e->len[k], (off_t)e->off[k]);
    line = got == (ssize_t)e->len[k] ? json_loadb(buf, e->len[k], 0, NULL) : NULL;
    free(buf);
    if (line == NULL || exchange_parts(line, &req, &resp, why, sizeof why) != 1 || resp == NULL) {
        json_decref(line);
        sbx_reply_error(c->rp, 500, "server_error", NULL,
                        "replay: the recording %s changed since it was indexed", r->path);
        return 1;
    }
    build_reply(c, r, resp);
    json_decref(line);
    return 1;
}

/* ---- seeding the store ------------------------------------------------------------------------ */

struct seed {
    struct sbx_server *s;
    size_t users_cap;
    json_t *recs;   /* recognition objects met, imported once every user is known */
};

static void copy_field(char *dst, size_t dstlen, const char *src)
{
    size_t n;
    if (src == NULL)
        return;
    n = strlen(src);
    if (n >= dstlen)    /* cut at a UTF-8 character boundary */
        for (n = dstlen - 1; n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80; n--)
            ;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A person object (a user, or a summary in a recognition): inserted or updated by id. */
static int seed_user(struct seed *sd, json_t *o)
{
    struct sbx_store *st = sd->s->store;
    json_t *id = json_object_get(o, "id");
    const char *username = json_string_value(json_object_get(o, "username"));
    const char *first = json_string_value(json_object_get(o, "firstName"));
    const char *last = json_string_value(json_object_get(o, "lastName"));
    const char *full = json_string_value(json_object_get(o, "fullName"));
    const char *email = json_string_value(json_object_get(o, "emailAddress"));
    struct sbx_user *u;
    size_t i;
    int idx;

    if (!json_is_integer(id) || username == NULL || username[0] == '\0')
        return 0;
    idx = -1;
    for (i = 0; i < st->nusers; i++)   /* the array is sorted only once seeding ends */
        if (st->users[i].id == (long long)json_integer_value(id))
            idx = (int)i;
    if (idx < 0) {
        if (st->nusers == sd->users_cap) {
            size_t ncap = sd->users_cap * 2 + 16;
            struct sbx_user *nu = realloc(st->users, ncap * sizeof *nu);
            if (nu == NULL)
                return -1;
            st->users = nu;
            sd->users_cap = ncap;
        }
        idx = (int)st->nusers++;
        u = &st->users[idx];
        memset(u, 0, sizeof *u);
        u->id = (long long)json_integer_value(id);
        u->created = sbx_now(sd->s);
        u->manager = idx;
        u->department = "Imported";
        u->title = "Imported";
    }
    u = &st->users[idx];
    copy_field(u->username, sizeof u->username, username);
    if (first == NULL && last == NULL && full != NULL && u->first[0] == '\0') {
        const char *sp = strchr(full, ' ');
        char tmp[sizeof u->first];
        size_t n = sp ? (size_t)(sp - full) : strlen(full);
        if (n >= sizeof tmp)
            n = sizeof tmp - 1;
        memcpy(tmp, full, n);
        tmp[n] = '\0';
        copy_field(u->first, sizeof u->first, tmp);
        copy_field(u->last, sizeof u->last, sp ? sp + 1 : "");
    }
    copy_field(u->first, sizeof u->first, first);
    copy_field(u->last, sizeof u->last, last);
    copy_field(u->email, sizeof u->email, email);
    if (u->email[0] == '\0')
        snprintf(u->email, sizeof u->email, "user%lld@example.invalid", u->id);
    return 0;
}

/* Walks a recorded answer: people now, recognitions for later. Depth-bounded. */
static int seed_walk(struct seed *sd, json_t *v, int depth)
{
    size_t i;
    const char *k;
    json_t *x;

    if (depth > 32)
        return 0;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
            if (seed_walk(sd, x, depth + 1) != 0)
                return -1;
        return 0;
    }
    if (!json_is_object(v))
        return 0;
    if (json_is_string(json_object_get(v, "username")) && seed_user(sd, v) != 0)
        return -1;
    if (json_is_string(json_object_get(v, "recognitionText")) &&
        json_is_object(json_object_get(v, "nominator")) &&
        json_is_array(json_object_get(v, "nominees")) && json_is_integer(json_object_get(v, "id")) &&
        json_array_append(sd->recs, v) != 0)
        return -1;
    json_object_foreach(v, k, x)
        if (seed_walk(sd, x, depth + 1) != 0)
            return -1;
    return 0;
}

static int seed_line(void *ud, json_t *line, int64_t off, size_t len, char *why, size_t whylen)
{
    struct seed *sd = ud;
    json_t *req, *resp;
    int rc = exchange_parts(line, &req, &resp, why, whylen);

    (void)off;
    (void)len;
    if (rc <= 0 || resp == NULL || json_is_true(json_object_get(line, "token_request")))
        return rc < 0 ? -1 : 0;
    return seed_walk(sd, json_object_get(resp, "body"), 0);
}

static int user_index(const struct sbx_store *st, json_t *o)
{
    json_t *id = json_object_get(o, "id");
    size_t i;
    if (!json_is_integer(id))
        return -1;
    for (i = 0; i < st->nusers; i++)
        if (st->users[i].id == (long long)json_integer_value(id))
            return (int)i;
    return -1;
}

static int seed_recognition(struct seed *sd, json_t *o)
{
    struct sbx_store *st = sd->s->store;
    struct sbx_recognition rec;
    json_t *noms = json_object_get(o, "nominees"), *x;
    long long id = (long long)json_integer_value(json_object_get(o, "id"));
    json_t *evid = json_object_get(o, "newsfeedEventId");
    const char *text = json_string_value(json_object_get(o, "recognitionText"));
    size_t i, k;
    int idx, c;

    memset(&rec, 0, sizeof rec);
    rec.nominator = user_index(st, json_object_get(o, "nominator"));
    if (rec.nominator < 0 || json_array_size(noms) == 0)
        return 0;
    rec.nominees = malloc(json_array_size(noms) * sizeof *rec.nominees);
    if (rec.nominees == NULL)
        return -1;
    json_array_foreach(noms, i, x) {
        int u = user_index(st, x);
        if (u >= 0)
            rec.nominees[rec.nnominees++] = u;
    }
    c = sbx_criterion_by_id(st, (long long)json_integer_value(
                                    json_object_get(json_object_get(o, "criterion"), "id")));
    rec.criterion = c >= 0 ? c : 0;
    rec.text_len = strlen(text);
    rec.text = sbx_memdup(text, rec.text_len);
    rec.created = sbx_now(sd->s);
    if (rec.nnominees == 0 || rec.text == NULL) {
        free(rec.nominees);
        free(rec.text);
        return rec.text == NULL ? -1 : 0;
    }
    for (k = 0; k < st->nrecs; k++) {
        struct sbx_recognition *old = &st->recs[k];
        if (old->id != id)
            continue;
        /* already there (the seed's own, or met before): the recording wins */
        free(old->nominees);
        free(old->text);
        old->nominator = rec.nominator;
        old->nominees = rec.nominees;
        old->nnominees = rec.nnominees;
        old->criterion = rec.criterion;
        old->text = rec.text;
        old->text_len = rec.text_len;
        return 0;
    }
    if ((idx = sbx_store_add_recognition(st, &rec)) < 0)
        return -1;
    st->recs[idx].id = id;
    if (json_is_integer(evid)) {
        long long e = (long long)json_integer_value(evid);
        for (k = 0; k < st->nevents && st->events[k].id != e; k++)
            ;
        if (k == st->nevents)
            st->events[st->recs[idx].event].id = e;
    }
    return 0;
}

/* ---- keeping the store sorted by id (lookups search it) --------------------------------------- */

static const void *sort_base;
static size_t sort_size;
static int cmp_by_id(const void *a, const void *b)
{
    long long x = *(const long long *)((const char *)sort_base + (size_t)*(const int *)a * sort_size);
    long long y = *(const long long *)((const char *)sort_base + (size_t)*(const int *)b * sort_size);
    return x < y ? -1 : x > y;
}

/* Sorts n elements of `size` bytes (each starting with a long long id); fills map[old] = new.
   Called with the server lock held, so the static comparator state is not shared. */
static int sort_ids(void *base, size_t n, size_t size, int *map)
{
    int *order = malloc((n ? n : 1) * sizeof *order);
    char *copy = malloc((n ? n : 1) * size);
    size_t i;

    if (order == NULL || copy == NULL) {
        free(order);
        free(copy);
        return -1;
    }
    for (i = 0; i < n; i++)
        order[i] = (int)i;
    sort_base = base;
    sort_size = size;
    qsort(order, n, sizeof *order, cmp_by_id);
    memcpy(copy, base, n * size);
    for (i = 0; i < n; i++) {
        memcpy((char *)base + i * size, copy + (size_t)order[i] * size, size);
        map[order[i]] = (int)i;
    }
    free(order);
    free(copy);
    return 0;
}

static int resort_store(struct sbx_store *st)
{
    int *um = malloc((st->nusers + 1) * sizeof *um), *rm = malloc((st->nrecs + 1) * sizeof *rm);
    int *em = malloc((st->nevents + 1) * sizeof *em);
    size_t i, j, k;
    int rc = -1;

    if (um == NULL || rm == NULL || em == NULL ||
        sort_ids(st->users, st->nusers, sizeof *st->users, um) != 0 ||
        sort_ids(st->recs, st->nrecs, sizeof *st->recs, rm) != 0 ||
        sort_ids(st->events, st->nevents, sizeof *st->events, em) != 0)
        goto out;
    for (i = 0; i < st->nusers; i++)
        st->users[i].manager = um[st->users[i].manager];
    for (i = 0; i < st->nrecs; i++) {
        st->recs[i].nominator = um[st->recs[i].nominator];
        for (j = 0; j < st->recs[i].nnominees; j++)
            st->recs[i].nominees[j] = um[st->recs[i].nominees[j]];
        st->recs[i].event = em[st->recs[i].event];
    }
    for (i = 0; i < st->nachs; i++) {
        if (st->achs[i].creator >= 0)
            st->achs[i].creator = um[st->achs[i].creator];
        for (j = 0; j < st->achs[i].nparticipants; j++)
            st->achs[i].participants[j] = um[st->achs[i].participants[j]];
        st->achs[i].event = em[st->achs[i].event];
    }
    for (i = 0; i < st->nevents; i++)
        if (st->events[i].type == SBX_EV_RECOGNITION)
            st->events[i].object = rm[st->events[i].object];
    for (k = 0; k < SBX_REACTION_KINDS; k++)
        for (i = 0; i < st->nreactions[k]; i++) {
            st->reactions[k][i].user = um[st->reactions[k][i].user];
            st->reactions[k][i].event = em[st->reactions[k][i].event];
        }
    /* new objects get ids after every imported one */
    if (st->nrecs > 0 && st->next_rec_id <= st->recs[st->nrecs - 1].id)
        st->next_rec_id = st->recs[st->nrecs - 1].id + 1;
    if (st->nevents > 0 && st->next_event_id <= st->events[st->nevents - 1].id)
        st->next_event_id = st->events[st->nevents - 1].id + 1;
    rc = 0;
out:
    free(um);
    free(rm);
    free(em);
    return rc;
}

static int seed_store(struct sbx_server *s, const char *path, char *err, size_t errlen)
{
    struct seed sd;
    size_t i;
    json_t *o;
    int rc;

    memset(&sd, 0, sizeof sd);
    sd.s = s;
    sd.users_cap = s->store->nusers;
    if ((sd.recs = json_array()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    rc = each_line(path, seed_line, &sd, err, errlen);
    json_array_foreach(sd.recs, i, o)
        if (rc == 0 && seed_recognition(&sd, o) != 0) {
            snprintf(err, errlen, "replay: out of memory while seeding");
            rc = -1;
        }
    /* the users may be half imported: sort what is there either way */
    if (resort_store(s->store) != 0 && rc == 0) {
        snprintf(err, errlen, "replay: out of memory while seeding");
        rc = -1;
    }
    pthread_mutex_unlock(&s->lock);
    json_decref(sd.recs);
    return rc;
}

/* ---- attaching ------------------------------------------------------------------------------- */

int sbx_replay_attach(struct sbx_server *s, const char *path, enum sbx_replay_mode mode,
                      char *err, size_t errlen)
{
    struct sbx_replay *r;

    if (mode == SBX_REPLAY_SEED)
        return seed_store(s, path, err, errlen);
    r = calloc(1, sizeof *r);
    if (r == NULL || (r->path = sbx_strdup(path)) == NULL) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->mode = mode;
    r->fd = -1;
    if (each_line(path, index_line, r, err, errlen) != 0) {
        sbx_replay_free(r);
        return -1;
    }
    if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "replay: cannot open %s: %s", path, strerror(errno));
        sbx_replay_free(r);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    sbx_replay_free(s->replay);
    s->replay = r;
    pthread_mutex_unlock(&s->lock);
    return 0;
}
