/*
 * api_recognitions.c: GET /recognitions (sent or received by a user, newest first),
 * GET /recognitions/{id}, POST /recognitions (a user token with write; the sender is the token
 * owner; points criteria debit the sender's budget, a 403 when it is short) and OPTIONS /recognitions (the criteria the token owner may use, optionally for given
 * nominees). Runs with the server lock held.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Parameter names in one place (achievers-api.md section 0). */
#define P_NOMINEES   "nominees"
#define P_TEXT       "recognitionText"
#define P_CRITERION  "criterionId"
#define P_USE_IDS    "useUserIds"
#define P_USER       "userId"
#define P_UPLOAD     "fileUploadId"

static void oom(struct sbx_ctx *c)
{
    sbx_reply_error(c->rp, 500, "server_error", NULL, "out of memory");
}

int sbx_user_filter(struct sbx_ctx *c, int *user)
{
    const struct sbx_param *p = sbx_params_get(&c->query, P_USER);
    int use_ids;

    *user = -1;
    if (!sbx_params_bool(&c->query, P_USE_IDS, 0, &use_ids)) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_USE_IDS, P_USE_IDS ": must be true or false");
        return 0;
    }
    if (p == NULL || p->vlen == 0)
        return 1;
    *user = sbx_user_lookup(c->s->store, p->val, use_ids);
    if (*user < 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_USER, P_USER ": unknown user '%s'%s",
                        p->val, use_ids ? "" : " (a username; numeric ids need useUserIds=true)");
        return 0;
    }
    return 1;
}

static int involves(const struct sbx_recognition *r, int user)
{
    size_t i;

    if (r->nominator == user)
        return 1;
    for (i = 0; i < r->nnominees; i++)
        if (r->nominees[i] == user)
            return 1;
    return 0;
}

void sbx_h_recognitions(struct sbx_ctx *c)
{
    const struct sbx_store *st = c->s->store;
    int user, *idx;
    size_t i, n = 0;

    if (!sbx_user_filter(c, &user))
        return;
    idx = malloc((st->nrecs ? st->nrecs : 1) * sizeof *idx);
    if (idx == NULL) {
        oom(c);
        return;
    }
    for (i = st->nrecs; i-- > 0;)
        if (user < 0 || involves(&st->recs[i], user))
            idx[n++] = (int)i;
    sbx_reply_list(c, idx, n, sbx_view_recognition);
    free(idx);
}

void sbx_h_recognition(struct sbx_ctx *c)
{
    int r = sbx_rec_by_id(c->s->store, c->ids[0]);

    if (r < 0) {
        sbx_reply_error(c->rp, 404, "not_found", NULL, "no recognition with id %lld", c->ids[0]);
        return;
    }
    sbx_reply_json(c->rp, 200, sbx_view_recognition(c->s, r));
}

/*
 * Resolves a list of users named by `key` into `*out` (malloc'd, duplicates removed).
 * Sets a 400 reply and returns 0 when one is unknown or is `not`; `required` makes an empty
 * list a 400 too.
 */
int sbx_resolve_users(struct sbx_ctx *c, const struct sbx_params *p, const char *key, int use_ids,
                      int required, int not, int **out, size_t *nout)
{
    char **names;
    size_t n, i, k = 0, j;
    int *v;

    *out = NULL;
    *nout = 0;
    switch (sbx_params_list(p, key, &names, &n)) {
    case SBX_OK:
        break;
    case SBX_EBAD:
        sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: a name holds a NUL byte", key);
        return 0;
    default:
        oom(c);
        return 0;
    }
    if (n == 0 && required) {
        sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: at least one user is required", key);
        return 0;
    }
    v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL) {
        sbx_strv_free(names, n);
        oom(c);
        return 0;
    }
    for (i = 0; i < n; i++) {
        int u = sbx_user_lookup(c->s->store, names[i], use_ids);
        if (u < 0) {
            sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: unknown user '%s'", key, names[i]);
            goto fail;
        }
        if (u == not) {
            sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: you cannot recognize yourself",
                            key);
            goto fail;
        }
        for (j = 0; j < k && v[j] != u; j++)
            ;
        if (j == k)
            v[k++] = u;
    }
    sbx_strv_free(names, n);
    *out = v;
    *nout = k;
    return 1;
fail:
    sbx_strv_free(names, n);
    free(v);
    return 0;
}

/* An optional fileUploadId that must name an upload; 0 when absent. 1 ok, 0 reply set. */
int sbx_upload_param(struct sbx_ctx *c, const struct sbx_params *p, long long *id)
{
    const struct sbx_param *v = sbx_params_get(p, P_UPLOAD);

    *id = 0;
    if (v == NULL || v->vlen == 0)
        return 1;
    if (!sbx_parse_int(v->val, id) || sbx_upload_by_id(c->s->store, *id) < 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_UPLOAD, P_UPLOAD ": no upload '%s'", v->val);
        return 0;
    }
    return 1;
}

/* A required text field: present, non-empty, valid UTF-8, at most SBX_TEXT_LIMIT bytes. */
int sbx_text_param(struct sbx_ctx *c, const struct sbx_params *p, const char *key,
                   const struct sbx_param **out)
{
    const struct sbx_param *v = sbx_params_get(p, key);

    if (v == NULL || v->vlen == 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: required", key);
        return 0;
    }
    if (v->vlen > SBX_TEXT_LIMIT) {
        sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: at most %u bytes", key, SBX_TEXT_LIMIT);
        return 0;
    }
    if (!sbx_utf8_valid(v->val, v->vlen)) {
        sbx_reply_error(c->rp, 400, "invalid_request", key, "%s: not valid UTF-8", key);
        return 0;
    }
    *out = v;
    return 1;
}

void sbx_h_recognition_post(struct sbx_ctx *c)
{
    struct sbx_params p = {0};
    struct sbx_recognition r;
    const struct sbx_param *text, *crit;
    struct sbx_store *st = c->s->store;
    long long cid, upload, cost;
    int use_ids, *nominees = NULL, criterion, idx;
    size_t n = 0;

    if (!sbx_body_params(c, &p))
        goto done;
    if (!sbx_params_bool(&p, P_USE_IDS, 0, &use_ids)) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_USE_IDS, P_USE_IDS ": must be true or false");
        goto done;
    }
    if (!sbx_resolve_users(c, &p, P_NOMINEES, use_ids, 1, c->tok->user, &nominees, &n) ||
        !sbx_text_param(c, &p, P_TEXT, &text))
        goto done;
    crit = sbx_params_get(&p, P_CRITERION);
    if (crit == NULL || crit->vlen == 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_CRITERION, P_CRITERION ": required");
        goto done;
    }
    if (!sbx_parse_int(crit->val, &cid) || (criterion = sbx_criterion_by_id(st, cid)) < 0) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_CRITERION,
                        P_CRITERION ": unknown criterion '%s'", crit->val);
        goto done;
    }
    if (!sbx_criterion_allowed(st, criterion, c->tok->user, nominees, n)) {
        sbx_reply_error(c->rp, 403, "forbidden", P_CRITERION,
                        P_CRITERION ": %s may not use '%s' for these nominees",
                        st->users[c->tok->user].username, st->criteria[criterion].name);
        goto done;
    }
    if (!sbx_upload_param(c, &p, &upload))
        goto done;
    cost = (long long)st->criteria[criterion].points * (long long)n;
    if (cost > st->users[c->tok->user].budget) {
        sbx_reply_error(c->rp, 403, "insufficient_budget", P_CRITERION,
                        "%s has %lld points left to give; '%s' for %zu nominee%s needs %lld",
                        st->users[c->tok->user].username, st->users[c->tok->user].budget,
                        st->criteria[criterion].name, n, n == 1 ? "" : "s", cost);
        goto done;
    }
    memset(&r, 0, sizeof r);
    r.nominator = c->tok->user;
    r.nominees = nominees;
    r.nnominees = n;
    nominees = NULL;
    r.criterion = criterion;
    r.text = sbx_memdup(text->val, text->vlen);
    r.text_len = text->vlen;
    r.created = c->now;
    r.upload = upload;
    if (r.text == NULL) {
        free(r.nominees);
        oom(c);
        goto done;
    }
    idx = sbx_store_add_recognition(st, &r);
    if (idx < 0) {
        oom(c);
    } else {
        st->users[c->tok->user].budget -= cost;
        sbx_reply_json(c->rp, 201, sbx_view_recognition(c->s, idx));
    }
done:
    free(nominees);
    sbx_params_free(&p);
}

void sbx_h_recognition_options(struct sbx_ctx *c)
{
    struct sbx_page pg;
    int use_ids, *nominees = NULL;
    size_t n = 0, i;
    json_t *all, *items;

    if (!sbx_params_bool(&c->query, P_USE_IDS, 0, &use_ids)) {
        sbx_reply_error(c->rp, 400, "invalid_request", P_USE_IDS, P_USE_IDS ": must be true or false");
        return;
    }
    if (!sbx_resolve_users(c, &c->query, P_NOMINEES, use_ids, 0, c->tok->user, &nominees, &n))
        return;
    all = sbx_view_module_list(c->s, c->tok->user, nominees, n);
    free(nominees);
    if (all == NULL) {
        oom(c);
        return;
    }
    if (!sbx_page_parse(c, &pg, (long long)json_array_size(all))) {
        json_decref(all);
        return;
    }
    items = json_array();
    for (i = (size_t)pg.offset; items && i < json_array_size(all) && i < (size_t)(pg.offset + pg.size); i++)
        json_array_append(items, json_array_get(all, i));
    json_decref(all);
    sbx_reply_json(c->rp, 200, sbx_page_envelope(c, &pg, items));
}
