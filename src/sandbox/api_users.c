/*
 * api_users.c: GET /users (search with q over names, e-mail and username; paging) and
 * GET /users/{id} (with the manager). Runs with the server lock held.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static json_t *user_item(struct sbx_server *s, int u)
{
    return sbx_view_user(s, u, 0);
}

static int matches(const struct sbx_user *u, const char *q)
{
    char full[64];

    if (strcasestr(u->first, q) || strcasestr(u->last, q) || strcasestr(u->email, q) ||
        strcasestr(u->username, q))
        return 1;
    strcpy(full, u->first);
    strcat(full, " ");
    strcat(full, u->last);
    return strcasestr(full, q) != NULL;
}

void sbx_h_users(struct sbx_ctx *c)
{
    const struct sbx_store *st = c->s->store;
    const struct sbx_param *q = sbx_params_get(&c->query, "q");
    int *idx = malloc((st->nusers ? st->nusers : 1) * sizeof *idx);
    size_t i, n = 0;

    if (idx == NULL) {
        sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
        return;
    }
    if (q != NULL && strlen(q->val) != q->vlen) {
        free(idx);
        sbx_reply_error(c->rp, 400, "invalid_request", "q", "q: must not contain NUL bytes");
        return;
    }
    for (i = 0; i < st->nusers; i++)
        if (q == NULL || q->vlen == 0 || matches(&st->users[i], q->val))
            idx[n++] = (int)i;
    sbx_reply_list(c, idx, n, user_item);
    free(idx);
}

void sbx_h_user(struct sbx_ctx *c)
{
    int u = sbx_user_by_id(c->s->store, c->ids[0]);

    if (u < 0) {
        sbx_reply_error(c->rp, 404, "not_found", NULL, "no user with id %lld", c->ids[0]);
        return;
    }
    sbx_reply_json(c->rp, 200, sbx_view_user(c->s, u, 1));
}
