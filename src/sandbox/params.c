/*
 * params.c: request parameters. Query strings and form bodies (percent-decoding, repeated keys,
 * `key[]`), JSON bodies flattened to the same shape, and the file part of a multipart body,
 * parsed by boundary over the raw bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes `n` bytes of form encoding into a new string. SBX_EBAD on a bad escape. */
static int form_decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = malloc(n + 1);
    size_t i, k = 0;

    if (d == NULL)
        return SBX_ENOMEM;
    for (i = 0; i < n; i++) {
        if (s[i] == '+') {
            d[k++] = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n) {
                free(d);
                return SBX_EBAD;
            }
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(d);
                return SBX_EBAD;
            }
            d[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    *out = d;
    *outlen = k;
    return SBX_OK;
}

/* Appends a pair; takes ownership of `key` and `val` (also on failure). */
static int params_push(struct sbx_params *p, char *key, char *val, size_t vlen)
{
    size_t klen = strlen(key);

    if (klen > 2 && strcmp(key + klen - 2, "[]") == 0)
        key[klen - 2] = '\0';
    if (SBX_GROW(p->v, p->cap, p->n) != 0) {
        free(key);
        free(val);
        return SBX_ENOMEM;
    }
    p->v[p->n].key = key;
    p->v[p->n].val = val;
    p->v[p->n].vlen = vlen;
    p->n++;
    return SBX_OK;
}

int sbx_params_parse_form(struct sbx_params *p, const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *piece = s + i, *amp = memchr(piece, '&', len - i), *eq;
        size_t plen = amp ? (size_t)(amp - piece) : len - i, klen, vlen, dummy;
        char *key, *val;
        int rc;

        i += plen + 1;
        if (plen == 0)
            continue;
        eq = memchr(piece, '=', plen);
        klen = eq ? (size_t)(eq - piece) : plen;
        rc = form_decode(piece, klen, &key, &dummy);
        if (rc != SBX_OK)
            return rc;
        if (eq)
            rc = form_decode(eq + 1, plen - klen - 1, &val, &vlen);
        else
            rc = form_decode("", 0, &val, &vlen);
        if (rc != SBX_OK) {
            free(key);
            return rc;
        }
        rc = params_push(p, key, val, vlen);
        if (rc != SBX_OK)
            return rc;
    }
    return SBX_OK;
}

/* One JSON scalar as a parameter value; SBX_EBAD for objects, arrays and null. */
static int json_scalar(struct sbx_params *p, const char *key, json_t *v)
{
    char num[64], *k, *val;
    const char *src;
    size_t len;

    switch (json_typeof(v)) {
    case JSON_STRING:
        src = json_string_value(v);
        len = json_string_length(v);
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        src = num;
        len = strlen(num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof num, "%.17g", json_real_value(v));
        src = num;
        len = strlen(num);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        src = json_is_true(v) ? "true" : "false";
        len = strlen(src);
        break;
    default:
        return SBX_EBAD;
    }
    k = sbx_strdup(key);
    val = sbx_memdup(src, len);
    if (k == NULL || val == NULL) {
        free(k);
        free(val);
        return SBX_ENOMEM;
    }
    return params_push(p, k, val, len);
}

int sbx_params_parse_json(struct sbx_params *p, const char *s, size_t len, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *root = json_loadb(s, len, 0, &jerr), *v;
    const char *key;
    int rc = SBX_OK;

    if (root == NULL) {
        snprintf(why, whylen, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return SBX_EBAD;
    }
    if (!json_is_object(root)) {
        snprintf(why, whylen, "the JSON body must be an object");
        json_decref(root);
        return SBX_EBAD;
    }
    json_object_foreach(root, key, v) {
        if (json_is_null(v))
            continue;
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                rc = json_scalar(p, key, e);
                if (rc != SBX_OK)
                    break;
            }
        } else {
            rc = json_scalar(p, key, v);
        }
        if (rc != SBX_OK) {
            if (rc == SBX_EBAD)
                snprintf(why, whylen, "%s: must be a string, number, boolean or a list of those",
                         key);
            break;
        }
    }
    json_decref(root);
    return rc;
}

void sbx_params_free(struct sbx_params *p)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        free(p->v[i].key);
        free(p->v[i].val);
    }
    free(p->v);
    p->v = NULL;
    p->n = p->cap = 0;
}

const struct sbx_param *sbx_params_get(const struct sbx_params *p, const char *key)
{
    size_t i;

    for (i = 0; i < p->n; i++)
        if (strcmp(p->v[i].key, key) == 0)
            return &p->v[i];
    return NULL;
}

void sbx_strv_free(char **v, size_t n)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int sbx_params_list(const struct sbx_params *p, const char *key, char ***out, size_t *n)
{
    char **v = NULL;
    size_t cnt = 0, cap = 0, i;

    for (i = 0; i < p->n; i++) {
        const char *s = p->v[i].val, *end = s + p->v[i].vlen;
        if (strcmp(p->v[i].key, key) != 0)
            continue;
        while (s <= end) {
            const char *comma = memchr(s, ',', (size_t)(end - s));
            const char *e = comma ? comma : end, *b = s;
            while (b < e && (*b == ' ' || *b == '\t'))
                b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (e > b && memchr(b, '\0', (size_t)(e - b)) != NULL) {
                sbx_strv_free(v, cnt); /* a C string would silently drop what follows the NUL */
                return SBX_EBAD;
            }
            if (e > b) {
                if (SBX_GROW(v, cap, cnt) != 0 || (v[cnt] = sbx_memdup(b, (size_t)(e - b))) == NULL) {
                    sbx_strv_free(v, cnt);
                    return SBX_ENOMEM;
                }
                cnt++;
            }
            if (comma == NULL)
                break;
            s = comma + 1;
        }
    }
    *out = v;
    *n = cnt;
    return SBX_OK;
}

int sbx_params_bool(const struct sbx_params *p, const char *key, int dflt, int *out)
{
    const struct sbx_param *v = sbx_params_get(p, key);

    if (v == NULL || v->vlen == 0) {
        *out = dflt;
        return 1;
    }
    if (strcasecmp(v->val, "true") == 0 || strcmp(v->val, "1") == 0) {
        *out = 1;
        return 1;
    }
    if (strcasecmp(v->val, "false") == 0 || strcmp(v->val, "0") == 0) {
        *out = 0;
        return 1;
    }
    return 0;
}

/* ---- multipart/form-data ----------------------------------------------------------------- */

/* The value of parameter `name` in a header value like `form-data; name="file"`. */
static int header_param(const char *h, size_t hlen, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name), i = 0;

    while (i < hlen) {
        const char *semi = memchr(h + i, ';', hlen - i);
        size_t k;
        if (semi == NULL)
            return 0;
        i = (size_t)(semi - h) + 1;
        while (i < hlen && (h[i] == ' ' || h[i] == '\t'))
            i++;
        if (hlen - i > nlen && strncasecmp(h + i, name, nlen) == 0 && h[i + nlen] == '=') {
            i += nlen + 1;
            k = 0;
            if (i < hlen && h[i] == '"') {
                i++;
                while (i < hlen && h[i] != '"' && k + 1 < outlen) {
                    if (h[i] == '\\' && i + 1 < hlen)
                        i++;
                    out[k++] = h[i++];
                }
            } else {
                while (i < hlen && h[i] != ';' && h[i] != ' ' && k + 1 < outlen)
                    out[k++] = h[i++];
            }
            out[k] = '\0';
            return 1;
        }
    }
    return 0;
}

int sbx_multipart_find(const char *content_type, const char *body, size_t len, const char *name,
                       struct sbx_part *part)
{
    char boundary[128], delim[132];
    size_t dlen;
    const char *p, *end = body + len;

    if (!header_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary) ||
        boundary[0] == '\0' || strlen(boundary) > 70)
        return SBX_EBAD;
    dlen = (size_t)snprintf(delim, sizeof delim, "--%s", boundary);
    if (len < dlen || memcmp(body, delim, dlen) != 0) {
        /* a preamble: the first delimiter follows a line break */
        char crlf_delim[134];
        size_t cl = (size_t)snprintf(crlf_delim, sizeof crlf_delim, "\r\n%s", delim);
        p = memmem(body, len, crlf_delim, cl);
        if (p == NULL)
            return SBX_EBAD;
        p += cl;
    } else {
        p = body + dlen;
    }
    for (;;) {
        const char *hend, *next, *h;
        char pname[128] = "";
        int found;

        /* after a delimiter: "--" ends the body, else a line break starts a part */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 2;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            p += 2;
        else
            return SBX_EBAD;
        hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (hend == NULL)
            return SBX_EBAD;
        memset(part, 0, sizeof *part);
        found = 0;
        for (h = p; h < hend;) {
            const char *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
            size_t hl = eol ? (size_t)(eol - h) : (size_t)(hend - h);
            if (hl > 20 && strncasecmp(h, "content-disposition:", 20) == 0) {
                header_param(h, hl, "name", pname, sizeof pname);
                header_param(h, hl, "filename", part->filename, sizeof part->filename);
                found = strcmp(pname, name) == 0;
            } else if (hl > 13 && strncasecmp(h, "content-type:", 13) == 0) {
                size_t off = 13, k = 0;
                while (off < hl && (h[off] == ' ' || h[off] == '\t'))
                    off++;
                while (off < hl && k + 1 < sizeof part->content_type)
                    part->content_type[k++] = h[off++];
                part->content_type[k] = '\0';
            }
            h += hl + 2;
        }
        p = hend + 4;
        {
            char crlf_delim[134];
            size_t cl = (size_t)snprintf(crlf_delim, sizeof crlf_delim, "\r\n%s", delim);
            next = memmem(p, (size_t)(end - p), crlf_delim, cl);
            if (next == NULL)
                return SBX_EBAD;
            if (found) {
                part->data = p;
                part->len = (size_t)(next - p);
                return SBX_OK;
            }
            p = next + cl;
        }
    }
}
