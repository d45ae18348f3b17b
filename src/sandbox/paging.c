/*
 * paging.c: the list envelope of achievers-api.md section 0: {paging = {totalItems, totalPages,
 * page, pageSize, self, first, last, [next], [previous]}, items}. Pages are 1-based; pageSize
 * defaults to SBX_PAGE_DEFAULT and is capped at SBX_PAGE_MAX (the applied size is reported).
 * Paging links keep the caller's other query parameters as they were sent. An empty result has
 * totalPages 0 and so no last page: `last` (and `previous`) are left out; `first` stays, it
 * names page 1, which answers an empty list.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "evidence.h"

static int positive(struct sbx_ctx *c, const char *name, long long *out)
{
    const struct sbx_param *p = sbx_params_get(&c->query, name);

    if (p == NULL)
        return 1;
    if (!sbx_parse_int(p->val, out) || *out < 1) {
        sbx_reply_error(c->rp, 400, "invalid_request", name, "%s: must be a positive integer", name);
        return 0;
    }
    return 1;
}

int sbx_page_parse(struct sbx_ctx *c, struct sbx_page *pg, long long total)
{
    pg->page = 1;
    pg->size = SBX_PAGE_DEFAULT;
    if (!positive(c, "page", &pg->page) || !positive(c, "pageSize", &pg->size))
        return 0;
    if (pg->size > SBX_PAGE_MAX)
        pg->size = SBX_PAGE_MAX;
    if (pg->page > 1000000000LL)
        pg->page = 1000000000LL;
    pg->total = total;
    pg->pages = (total + pg->size - 1) / pg->size;
    pg->offset = (pg->page - 1) * pg->size;
    return 1;
}

/* The request's query without page and pageSize, raw; NULL out of memory. */
static json_t *page_url(struct sbx_ctx *c, const struct sbx_page *pg, long long page)
{
    const char *q = c->req->query;
    struct sbx_buf b = {0};
    json_t *v;
    int fail = sbx_buf_addf(&b, "%s%s?", c->s->url, c->req->path);

    while (*q && !fail) {
        size_t n = strcspn(q, "&"), k = strcspn(q, "=&");
        int skip = (k == 4 && strncmp(q, "page", 4) == 0) ||
                   (k == 8 && strncmp(q, "pageSize", 8) == 0) || n == 0;
        if (!skip)
            fail = sbx_buf_add(&b, q, n) || sbx_buf_add(&b, "&", 1);
        q += n;
        if (*q == '&')
            q++;
    }
    if (!fail && sbx_params_get(&c->query, "pageSize") != NULL)
        fail = sbx_buf_addf(&b, "pageSize=%lld&", pg->size);
    if (!fail)
        fail = sbx_buf_addf(&b, "page=%lld", page);
    v = fail ? NULL : json_string(b.data);
    sbx_buf_free(&b);
    return v;
}

json_t *sbx_page_envelope(struct sbx_ctx *c, const struct sbx_page *pg, json_t *items)
{
    struct sbx_buf self = {0};
    long long last = pg->pages;
    json_t *paging, *o;

    if (items == NULL)
        return NULL;
    if (sbx_buf_addf(&self, "%s%s%s%s", c->s->url, c->req->path, c->req->query[0] ? "?" : "",
                     c->req->query) != 0) {
        json_decref(items);
        return NULL;
    }
    paging = json_pack("{s:I, s:I, s:I, s:I, s:s, s:o}", "totalItems", (json_int_t)pg->total,
                       "totalPages", (json_int_t)pg->pages, "page", (json_int_t)pg->page,
                       "pageSize", (json_int_t)pg->size, "self", self.data,
                       "first", page_url(c, pg, 1));
    sbx_buf_free(&self);
    if (paging != NULL && last > 0 && json_object_set_new(paging, "last", page_url(c, pg, last)) != 0)
        json_decref(paging), paging = NULL;
    if (paging != NULL && pg->page < pg->pages && sbx_serves(c->s, SBX_EV_PAGING_NEXT) &&
        json_object_set_new(paging, "next", page_url(c, pg, pg->page + 1)) != 0)
        json_decref(paging), paging = NULL;
    if (paging != NULL && pg->page > 1 && last > 0 && sbx_serves(c->s, SBX_EV_PAGING_NEXT) &&
        json_object_set_new(paging, "previous", page_url(c, pg, pg->page - 1 < last ? pg->page - 1 : last)) != 0)
        json_decref(paging), paging = NULL;
    o = json_pack("{s:o, s:o}", "paging", paging, "items", items);
    return o;
}

void sbx_reply_list(struct sbx_ctx *c, const int *idx, size_t n, sbx_view_fn *view)
{
    struct sbx_page pg;
    json_t *items;
    long long i;

    if (!sbx_page_parse(c, &pg, (long long)n))
        return;
    items = json_array();
    for (i = pg.offset; items != NULL && i < (long long)n && i < pg.offset + pg.size; i++) {
        if (json_array_append_new(items, view(c->s, idx[i])) != 0) {
            json_decref(items);
            items = NULL;
        }
    }
    sbx_reply_json(c->rp, 200, sbx_page_envelope(c, &pg, items));
}
