/*
 * server.c: the emulator's HTTP side on libmicrohttpd. Starting and stopping, collecting each
 * request (raw URI, headers, body within SBX_BODY_LIMIT), the request log and counters, fault
 * injection, latency, the Date header from the emulator clock, and turning replies into
 * responses. Routing and the API itself live in routes.c and the handler files.
 *
 * Threads: MHD's internal polling thread accepts, one thread per connection serves, so
 * latency can simply sleep. Everything shared is guarded by `struct sbx_server.lock`.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "internal.h"
#include "evidence.h"
#include "replay.h"

#define SBX_CONN_MEMORY (64 * 1024)   /* per connection: larger header blocks get 431 */
/* Bodies over their route's limit get 413; up to this size they are read (and dropped) first so
   the client can read the answer, beyond it the 413 comes at once and the connection is closed. */
#define SBX_DISCARD_LIMIT (64ull * 1024 * 1024)
/* Connections: at most this many at once (each has its own thread), and one that sends nothing
   for SBX_CONN_TIMEOUT seconds (idle keep-alive, or a request left half-sent) is closed. So a
   crowd of stalled clients is turned away after seconds, and everyone else is still served. */
#define SBX_MAX_CONNECTIONS 4000
#define SBX_CONN_TIMEOUT    10
#define SBX_THREAD_STACK    (512 * 1024)

void sbx_config_defaults(struct sbx_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->rate_limit = 1;
    cfg->heavy.count = 50;
    cfg->heavy.window = 60;
    cfg->normal.count = 500;
    cfg->normal.window = 120;
    cfg->user_budget = -1;
    cfg->program_budget = -1;
}

long long sbx_now(struct sbx_server *s)
{
    return (long long)time(NULL) + s->clock_offset;
}

/* ---- requests ---------------------------------------------------------------------------- */

static long long monotonic_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct sbx_request *request_new(const char *uri)
{
    struct sbx_request *r = calloc(1, sizeof *r);
    const char *q;

    if (r == NULL)
        return NULL;
    r->raw_uri = sbx_strdup(uri ? uri : "/");
    if (r->raw_uri == NULL) {
        free(r);
        return NULL;
    }
    q = strchr(r->raw_uri, '?');
    r->path = q ? sbx_memdup(r->raw_uri, (size_t)(q - r->raw_uri)) : sbx_strdup(r->raw_uri);
    r->query = sbx_strdup(q ? q + 1 : "");
    r->started_us = monotonic_us();
    return r;
}

static void request_free(struct sbx_request *r)
{
    size_t i;

    if (r == NULL)
        return;
    free(r->method);
    free(r->raw_uri);
    free(r->path);
    free(r->query);
    free(r->dpath);
    for (i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    sbx_buf_free(&r->body);
    free(r);
}

const char *sbx_req_header(const struct sbx_request *r, const char *lname)
{
    size_t i;

    for (i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, lname) == 0)
            return r->headers[i].value;
    return NULL;
}

void sbx_req_media_type(const struct sbx_request *r, char *out, size_t outlen)
{
    const char *ct = sbx_req_header(r, "content-type");
    size_t k = 0;

    if (ct != NULL) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        while (*ct && *ct != ';' && *ct != ' ' && k + 1 < outlen)
            out[k++] = (char)tolower((unsigned char)*ct++);
    }
    out[k] = '\0';
}

/* Decodes %XX in a path; NULL when an escape is bad or decodes to NUL. */
static char *path_decode(const char *p)
{
    size_t n = strlen(p), i, k = 0;
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (p[i] == '%') {
            unsigned v;
            if (i + 2 >= n || !isxdigit((unsigned char)p[i + 1]) ||
                !isxdigit((unsigned char)p[i + 2]) || sscanf(p + i + 1, "%2x", &v) != 1 || v == 0) {
                free(d);
                return NULL;
            }
            d[k++] = (char)v;
            i += 2;
        } else {
            d[k++] = p[i];
        }
    }
    d[k] = '\0';
    return d;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct sbx_request *r = cls;
    char *name, *p;

    (void)kind;
    if (key == NULL || SBX_GROW(r->headers, r->hcap, r->nheaders) != 0)
        return MHD_NO;
    name = sbx_strdup(key);
    if (name == NULL)
        return MHD_NO;
    for (p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = sbx_strdup(value ? value : "");
    if (r->headers[r->nheaders].value == NULL) {
        free(name);
        return MHD_NO;
    }
    r->nheaders++;
    return MHD_YES;
}

/* ---- the request log (lock held) ---------------------------------------------------------- */

static void logged_free(struct sbx_logged *l)
{
    size_t i;

    free(l->method);
    free(l->path);
    free(l->query);
    for (i = 0; i < l->nheaders; i++) {
        free(l->headers[i].name);
        free(l->headers[i].value);
    }
    free(l->headers);
    free(l->body);
    memset(l, 0, sizeof *l);
}

/* Deep copy, keeping at most SBX_LOG_BODY_MAX bytes of the body; `size` is the body's whole size.
   On failure `dst` is left empty and -1 returned. */
static int logged_copy(struct sbx_logged *dst, const char *method, const char *path,
                       const char *query, const struct sbx_header *h, size_t nh, const char *body,
                       size_t blen, unsigned long long size)
{
    size_t i;

    if (body == NULL)
        blen = 0;
    if (blen > SBX_LOG_BODY_MAX)
        blen = SBX_LOG_BODY_MAX;
    memset(dst, 0, sizeof *dst);
    dst->method = sbx_strdup(method);
    dst->path = sbx_strdup(path);
    dst->query = sbx_strdup(query);
    dst->body = sbx_memdup(body ? body : "", blen);
    dst->body_len = blen;
    dst->body_size = size;
    dst->body_truncated = size > blen;
    dst->headers = calloc(nh ? nh : 1, sizeof *dst->headers);
    if (!dst->method || !dst->path || !dst->query || !dst->body || !dst->headers)
        goto fail;
    for (i = 0; i < nh; i++) {
        dst->headers[i].name = sbx_strdup(h[i].name);
        dst->headers[i].value = sbx_strdup(h[i].value);
        dst->nheaders = i + 1;
        if (!dst->headers[i].name || !dst->headers[i].value)
            goto fail;
    }
    return 0;
fail:
    logged_free(dst);
    return -1;
}

static void log_request(struct sbx_server *s, const struct sbx_request *r)
{
    struct sbx_logged *slot = &s->log[s->log_next];

    logged_free(slot);
    if (logged_copy(slot, r->method, r->path, r->query, r->headers, r->nheaders, r->body.data,
                    r->body.len, r->received) != 0)
        return;
    slot->seq = ++s->log_seq;
    s->log_next = (s->log_next + 1) % SBX_LOG_SIZE;
    if (s->log_count < SBX_LOG_SIZE)
        s->log_count++;
}

void sbx_log_clear(struct sbx_server *s)
{
    size_t i;

    for (i = 0; i < SBX_LOG_SIZE; i++)
        logged_free(&s->log[i]);
    s->log_next = s->log_count = 0;
}

int sbx_requests_get(struct sbx_server *s, struct sbx_logged **out, size_t *n)
{
    struct sbx_logged *v;
    size_t i, cnt, first;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    cnt = s->log_count;
    first = (s->log_next + SBX_LOG_SIZE - cnt) % SBX_LOG_SIZE;
    v = calloc(cnt ? cnt : 1, sizeof *v);
    if (v == NULL) {
        rc = -1;
    } else {
        for (i = 0; i < cnt; i++) {
            const struct sbx_logged *l = &s->log[(first + i) % SBX_LOG_SIZE];
            if (logged_copy(&v[i], l->method, l->path, l->query,
                            (const struct sbx_header *)(const void *)l->headers, l->nheaders,
                            l->body, l->body_len, l->body_size) != 0) {
                sbx_requests_free(v, i);
                v = NULL;
                rc = -1;
                break;
            }
            v[i].seq = l->seq;
        }
    }
    pthread_mutex_unlock(&s->lock);
    *out = v;
    *n = rc == 0 ? cnt : 0;
    return rc;
}

void sbx_requests_free(struct sbx_logged *v, size_t n)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < n; i++)
        logged_free(&v[i]);
    free(v);
}

/* ---- the access log (--log) ---------------------------------------------------------------- */

/* Query parameters whose values the access log shows; every other value is written as `*`,
   since codes, states, tokens, credentials or search terms may be in it. */
static const char *const shown_params[] = {
    "page", "pageSize", "useUserIds", "userId", "response_type", "scope", "since",
    "code_challenge_method", NULL,
};

/* Appends at most `max` of the `n` bytes at `p`, printable ASCII as is and
   anything else %-escaped, so that a line of the log stays one line. */
static void log_bytes(struct sbx_buf *b, const char *p, size_t n, size_t max)
{
    size_t i;

    for (i = 0; i < n && i < max; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch > 0x20 && ch < 0x7f)
            sbx_buf_add(b, p + i, 1);
        else
            sbx_buf_addf(b, "%%%02X", ch);
    }
    if (n > max)
        sbx_buf_add(b, "...", 3);
}

static int shown_param(const char *name, size_t n)
{
    const char *const *p;

    for (p = shown_params; *p != NULL; p++)
        if (strlen(*p) == n && memcmp(*p, name, n) == 0)
            return 1;
    return 0;
}

/* One line: METHOD PATH[?QUERY] STATUS MSms, STATUS being "drop" for a dropped connection.
   Never a header or a body, so no token, key or secret; query values as in shown_params. */
static void access_log(struct sbx_server *s, const struct sbx_request *r, int status)
{
    struct sbx_buf b = {0};
    const char *q = r->query;
    long long us = monotonic_us() - r->started_us;

    if (s->access_log == NULL)
        return;
    log_bytes(&b, r->method ? r->method : "-", strlen(r->method ? r->method : "-"), 16);
    sbx_buf_add(&b, " ", 1);
    log_bytes(&b, r->path, strlen(r->path), 256);
    if (*q != '\0') {
        int first = 1;
        sbx_buf_add(&b, "?", 1);
        while (*q != '\0') {
            size_t len = strcspn(q, "&"), nlen = strcspn(q, "=&");
            if (!first)
                sbx_buf_add(&b, "&", 1);
            first = 0;
            log_bytes(&b, q, nlen, 64);
            if (nlen < len) {
                sbx_buf_add(&b, "=", 1);
                if (shown_param(q, nlen))
                    log_bytes(&b, q + nlen + 1, len - nlen - 1, 64);
                else
                    sbx_buf_add(&b, "*", 1);
            }
            q += len;
            if (*q == '&')
                q++;
        }
    }
    if (status > 0)
        sbx_buf_addf(&b, " %d %lldms", status, us / 1000);
    else
        sbx_buf_addf(&b, " drop %lldms", us / 1000);
    if (b.data != NULL) {
        /* one call per line: stdio's lock keeps lines from several threads whole */
        fprintf(s->access_log, "%s\n", b.data);
        fflush(s->access_log);
    }
    sbx_buf_free(&b);
}

/* ---- connections ------------------------------------------------------------------------------ */

/*
 * `connections` counts the connections of API traffic: one opened only for control requests is
 * taken out of the count at its first request, and put back if API requests follow on it. The
 * state lives in the connection's socket context (on_connection allocates it).
 */
enum { CONN_FRESH, CONN_API, CONN_CONTROL_ONLY };

static void connection_mark(struct sbx_server *s, struct MHD_Connection *conn, int control)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    int *state = info ? info->socket_context : NULL;

    if (state == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (control && *state == CONN_FRESH) {
        *state = CONN_CONTROL_ONLY;
        if (s->connections > 0)
            s->connections--;
    } else if (!control && *state != CONN_API) {
        if (*state == CONN_CONTROL_ONLY)
            s->connections++;
        *state = CONN_API;
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- answering ---------------------------------------------------------------------------- */

static enum MHD_Result send_reply(struct sbx_server *s, struct MHD_Connection *conn,
                                  struct sbx_reply *rp)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char date[40];
    size_t i;

    if (rp->body != NULL) {
        resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL)
            rp->body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        sbx_reply_free(rp);
        return MHD_NO;
    }
    if (rp->ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rp->ctype);
    for (i = 0; i < rp->nheaders; i++)
        MHD_add_response_header(resp, rp->headers[i].name, rp->headers[i].value);
    pthread_mutex_lock(&s->lock);
    sbx_http_date(sbx_now(s), date);
    pthread_mutex_unlock(&s->lock);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_DATE, date);
    ret = MHD_queue_response(conn, (unsigned)rp->status, resp);
    MHD_destroy_response(resp);
    sbx_reply_free(rp);
    return ret;
}

static int stopping(struct sbx_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE);
}

/* Sleeps `ms`, in short steps so that stopping the server is not held up. */
static void sleep_ms(struct sbx_server *s, int ms)
{
    while (ms > 0 && !stopping(s)) {
        int step = ms > 20 ? 20 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        ms -= step;
    }
}

static const char *status_code_name(int status)
{
    switch (status) {
    case 400: return "invalid_request";
    case 401: return "invalid_token";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 429: return "rate_limited";
    case 500: return "server_error";
    case 502: return "bad_gateway";
    case 503: return "service_unavailable";
    case 504: return "gateway_timeout";
    default: return status >= 500 ? "server_error" : "error";
    }
}

/* The whole request has arrived: count, log, fault, latency, dispatch, answer. */
static enum MHD_Result handle_request(struct sbx_server *s, struct MHD_Connection *conn,
                                      struct sbx_request *r)
{
    struct sbx_reply rp = {0};
    struct sbx_ctx c;
    int fault = 0, drop = 0, status = 0, retry_after = -1, latency;
    char *fault_body = NULL, *fault_ctype = NULL;
    size_t fault_len = 0;
    int is_api = strncmp(r->path, "/api/v5/", 8) == 0 || strcmp(r->path, "/api/v5") == 0;
    long route;
    enum MHD_Result ret;

    if (sbx_admin_path(r->path)) {
        /* the control surface: not counted, logged, delayed, limited or failed (admin.c) */
        connection_mark(s, conn, 1);
        sbx_admin_handle(s, r, &rp);
        status = rp.status;
        ret = send_reply(s, conn, &rp);
        access_log(s, r, status);
        return ret;
    }
    connection_mark(s, conn, 0);
    r->dpath = path_decode(r->path);
    route = sbx_route_index(r->dpath, r->method);
    pthread_mutex_lock(&s->lock);
    s->requests++;
    if (route >= 0) {
        s->by_route[route]++;
        if (strcmp(sbx_route_key((size_t)route), "POST /token") == 0)
            s->token_requests++;
    }
    log_request(s, r);
    if (s->fault.count > 0 &&
        (s->fault.path == NULL || strncmp(r->path, s->fault.path, strlen(s->fault.path)) == 0)) {
        fault = 1;
        s->fault.count--;
        s->faults++;
        drop = s->fault.drop;
        status = s->fault.status;
        retry_after = s->fault.retry_after;
        if (s->fault.body != NULL) {
            fault_body = sbx_memdup(s->fault.body, s->fault.body_len);
            fault_len = s->fault.body_len;
            fault_ctype = s->fault.content_type ? sbx_strdup(s->fault.content_type) : NULL;
        }
    }
    latency = is_api ? s->latency_ms : 0;
    pthread_mutex_unlock(&s->lock);

    if (latency > 0)
        sleep_ms(s, latency);
    if (drop) {
        free(fault_body);
        free(fault_ctype);
        access_log(s, r, 0);
        return MHD_NO;
    }
    if (fault && fault_body != NULL) {
        /* the body as given, e.g. a proxy's HTML page */
        rp.status = status;
        rp.body = fault_body;
        rp.len = fault_len;
        if (fault_ctype != NULL)
            sbx_reply_header(&rp, "Content-Type", "%s", fault_ctype);
        if (retry_after >= 0)
            sbx_reply_header(&rp, "Retry-After", "%d", retry_after);
    } else if (fault) {
        sbx_reply_error(&rp, status, status_code_name(status), NULL,
                        "injected fault: the sandbox was told to answer %d", status);
        if (retry_after >= 0)
            sbx_reply_header(&rp, "Retry-After", "%d", retry_after);
    } else if (r->too_big) {
        sbx_reply_error(&rp, 413, "request_too_large", NULL,
                        "the request body is larger than %zu bytes, the most %s takes", r->limit,
                        route >= 0 ? sbx_route_key((size_t)route) : "this path");
    } else {
        memset(&c, 0, sizeof c);
        c.s = s;
        c.req = r;
        c.rp = &rp;
        pthread_mutex_lock(&s->lock);
        c.now = sbx_now(s);
        if (!sbx_replay_answer(&c))   /* a recording answers first (replay.c) */
            sbx_dispatch(&c);
        pthread_mutex_unlock(&s->lock);
        sbx_params_free(&c.query);
        if (!sbx_serves(s, SBX_EV_ERROR_FIELD))
            sbx_reply_drop_field(&rp);
    }
    free(fault_ctype);
    status = rp.status;
    ret = send_reply(s, conn, &rp);
    access_log(s, r, status);
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **req_cls)
{
    struct sbx_server *s = cls;
    struct sbx_request *r = *req_cls;

    (void)version;
    if (r == NULL) {
        r = request_new(url);
        if (r == NULL || r->path == NULL || r->query == NULL) {
            request_free(r);
            return MHD_NO;
        }
        *req_cls = r;
    }
    if (!r->started) {
        const char *cl;
        r->started = 1;
        r->method = sbx_strdup(method);
        if (r->method == NULL || r->path == NULL || r->query == NULL)
            return MHD_NO;
        if (MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, r) < 0)
            return MHD_NO;
        {
            char *dpath = path_decode(r->path);
            r->limit = sbx_route_body_limit(sbx_route_index(dpath, r->method));
            free(dpath);
        }
        cl = sbx_req_header(r, "content-length");
        if (cl != NULL && strtoull(cl, NULL, 10) > SBX_DISCARD_LIMIT) {
            /* refuse before reading the body; MHD closes the connection afterwards */
            r->answered = 1;
            r->too_big = 1;
            return handle_request(s, conn, r);
        }
        if (cl != NULL && strtoull(cl, NULL, 10) > r->limit) {
            /* too big, but small enough to read and drop so the client sees the 413 */
            r->too_big = 1;
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        r->received += *upload_data_size;
        if (r->received > SBX_DISCARD_LIMIT)
            return MHD_NO;   /* a chunked body without end: stop reading, close */
        if (!r->answered && !r->too_big) {
            if (r->body.len + *upload_data_size > r->limit) {
                /* read and drop the rest, so that the client gets its 413 on a live connection */
                r->too_big = 1;
                sbx_buf_free(&r->body);
            } else if (sbx_buf_add(&r->body, upload_data, *upload_data_size) != 0) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    r->answered = 1;
    return handle_request(s, conn, r);
}

/* The raw URI, before MHD decodes the path and splits off the query. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    return request_new(uri);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    request_free(*req_cls);
    *req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct sbx_server *s = cls;

    (void)conn;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(int));   /* CONN_FRESH; NULL: always counted */
        pthread_mutex_lock(&s->lock);
        s->connections++;
        pthread_mutex_unlock(&s->lock);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        free(*socket_context);
        *socket_context = NULL;
    }
}

/* MHD's own messages: kept quiet, but the last one explains a failed start. Never called
   with the lock held (we do not call into MHD while holding it). */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    struct sbx_server *s = cls;

    pthread_mutex_lock(&s->lock);
    vsnprintf(s->mhd_log, sizeof s->mhd_log, fmt, ap);
    pthread_mutex_unlock(&s->lock);
}

/* ---- start and stop ---------------------------------------------------------------------- */

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct sbx_buf b = {0};
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > 1024 * 1024 || sbx_buf_add(&b, chunk, n) != 0) {
            snprintf(err, errlen, "%s: too large or out of memory", path);
            fclose(f);
            sbx_buf_free(&b);
            return NULL;
        }
    }
    fclose(f);
    if (b.data == NULL)
        snprintf(err, errlen, "%s is empty", path);
    return b.data;
}

static void server_free(struct sbx_server *s)
{
    size_t i;

    for (i = 0; i < SBX_LOG_SIZE; i++)
        logged_free(&s->log[i]);
    sbx_tokens_clear(s);
    free(s->tokens);
    free(s->codes);
    free(s->windows);
    sbx_store_free(s->store);
    sbx_replay_free(s->replay);
    free(s->by_route);
    free((char *)s->fault.path);
    free((char *)s->fault.body);
    free((char *)s->fault.content_type);
    free(s->client_id);
    free(s->client_secret);
    free(s->redirect_uri);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->admin_key);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* SBX_MAX_CONNECTIONS, or fewer when the process may not open that many files. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    unsigned n = SBX_MAX_CONNECTIONS;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n + 128)
        n = rl.rlim_cur > 256 ? (unsigned)rl.rlim_cur - 128 : 128;
    return n;
}

struct sbx_server *sbx_start(const struct sbx_config *cfg, char *err, size_t errlen)
{
    struct sbx_server *s;
    struct sockaddr_in addr;
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_AUTO | MHD_USE_SUPPRESS_DATE_NO_CLOCK | MHD_USE_ERROR_LOG;
    int tls = cfg->tls_cert_file != NULL || cfg->tls_key_file != NULL;

    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "port must be between 0 and 65535");
        return NULL;
    }
    if (tls && (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL)) {
        snprintf(err, errlen, "tls_cert and tls_key go together");
        return NULL;
    }
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS support");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->expires_relative = cfg->expires_relative;
    s->rate_limit = cfg->rate_limit;
    s->refresh_tokens = cfg->refresh_tokens;
    s->heavy = cfg->heavy;
    s->normal = cfg->normal;
    s->start_latency_ms = s->latency_ms = cfg->latency_ms > 0 ? cfg->latency_ms : 0;
    s->client_id = malloc(4 + 32 + 1);
    s->client_secret = malloc(64 + 1);
    if (s->client_id == NULL || s->client_secret == NULL)
        goto oom;
    memcpy(s->client_id, "sbx_", 4);
    if (sbx_random_hex(s->client_id + 4, 32) != 0 || sbx_random_hex(s->client_secret, 64) != 0) {
        snprintf(err, errlen, "no random numbers from the system");
        goto fail;
    }
    if (cfg->client_id != NULL) {
        free(s->client_id);
        if ((s->client_id = sbx_strdup(cfg->client_id)) == NULL)
            goto oom;
    }
    if (cfg->client_secret != NULL) {
        free(s->client_secret);
        if ((s->client_secret = sbx_strdup(cfg->client_secret)) == NULL)
            goto oom;
    }
    s->redirect_uri = sbx_strdup(cfg->redirect_uri ? cfg->redirect_uri : SBX_DEFAULT_REDIRECT_URI);
    s->loopback_redirects = cfg->loopback_redirects;
    s->strict = cfg->strict;
    s->user_budget = cfg->user_budget;
    s->program_budget = cfg->program_budget;
    if (sbx_random_hex(s->page_key, 64) != 0) {
        snprintf(err, errlen, "no random numbers from the system");
        goto fail;
    }
    if (cfg->admin_key != NULL) {
        if (!sbx_admin_key_valid(cfg->admin_key, err, errlen))
            goto fail;
        s->admin_key = sbx_strdup(cfg->admin_key);
    } else if ((s->admin_key = malloc(32 + 1)) != NULL && sbx_random_hex(s->admin_key, 32) != 0) {
        snprintf(err, errlen, "no random numbers from the system");
        goto fail;
    }
    if (s->admin_key == NULL)
        goto oom;
    s->access_log = cfg->access_log;
    s->by_route = calloc(sbx_route_count(), sizeof *s->by_route);
    s->store = sbx_seed();
    if (s->redirect_uri == NULL || s->by_route == NULL || s->store == NULL)
        goto oom;
    {
        struct sbx_uri u;
        if (!sbx_uri_parse(s->redirect_uri, &u)) {
            snprintf(err, errlen, "redirect_uri must be an absolute http(s) URI without userinfo "
                                  "or fragment: %s", s->redirect_uri);
            goto fail;
        }
    }
    sbx_budgets_apply(s, s->store);
    if (tls) {
        if ((s->tls_cert = read_file(cfg->tls_cert_file, err, errlen)) == NULL ||
            (s->tls_key = read_file(cfg->tls_key_file, err, errlen)) == NULL)
            goto fail;
        flags |= MHD_USE_TLS;
    }

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_log, s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SBX_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SBX_CONN_TIMEOUT,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)connection_limit(),
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)SBX_THREAD_STACK,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
        MHD_OPTION_END);
    if (s->daemon == NULL) {
        snprintf(err, errlen, "cannot start the HTTP server on 127.0.0.1:%d%s%s", cfg->port,
                 s->mhd_log[0] ? ": " : "", s->mhd_log);
        /* trailing newline from MHD's message */
        if (strlen(err) > 0 && err[strlen(err) - 1] == '\n')
            err[strlen(err) - 1] = '\0';
        goto fail;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d", tls ? "https" : "http", s->port);
    return s;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    server_free(s);
    return NULL;
}

void sbx_stop(struct sbx_server *s)
{
    if (s == NULL)
        return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    if (s->daemon != NULL)
        MHD_stop_daemon(s->daemon);
    server_free(s);
}

const char *sbx_url(const struct sbx_server *s) { return s->url; }
int sbx_port(const struct sbx_server *s) { return s->port; }
const char *sbx_client_id(const struct sbx_server *s) { return s->client_id; }
const char *sbx_client_secret(const struct sbx_server *s) { return s->client_secret; }
const char *sbx_redirect_uri(const struct sbx_server *s) { return s->redirect_uri; }
const char *sbx_admin_key(const struct sbx_server *s) { return s->admin_key; }
