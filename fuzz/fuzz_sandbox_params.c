/*
 * fuzz_sandbox_params.c: the sandbox's parsers of request bytes, called directly: form and
 * query strings, JSON bodies, the list and boolean views of parameters, multipart bodies,
 * scopes, Basic credentials (base64), UTF-8 checks and integers.
 *
 * Input: the first line is a Content-Type (for multipart) and a scratch key; the rest is the
 * body every parser reads.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void views(const struct sbx_params *p)
{
	static const char *const keys[] = {"nominees", "participants", "useUserIds", "scope", "q", "", NULL};
	size_t i;
	for (i = 0; keys[i] != NULL; i++) {
		char **v = NULL;
		size_t n = 0, k;
		int b;
		const struct sbx_param *one = sbx_params_get(p, keys[i]);
		if (one != NULL && (one->key == NULL || one->val == NULL || one->val[one->vlen] != '\0'))
			abort();
		if (sbx_params_list(p, keys[i], &v, &n) == SBX_OK) {
			for (k = 0; k < n; k++)
				if (v[k] == NULL)
					abort();
			sbx_strv_free(v, n);
		}
		sbx_params_bool(p, keys[i], 0, &b);
	}
	for (i = 0; i < p->n; i++) {
		long long x;
		unsigned bits;
		sbx_parse_int(p->v[i].val, &x);
		sbx_scope_parse(p->v[i].val, &bits);
		sbx_utf8_valid(p->v[i].val, p->v[i].vlen);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *nl = memchr(s, '\n', size);
	size_t hlen = nl != NULL ? (size_t)(nl - s) : 0;
	const char *body = nl != NULL ? nl + 1 : s;
	size_t blen = size - (size_t)(body - s);
	char *ctype = malloc(hlen + 1), *text = malloc(blen + 1);
	struct sbx_params p;
	struct sbx_part part;
	char why[256];
	unsigned char *dec;
	size_t declen;

	if (ctype == NULL || text == NULL)
		goto out;
	memcpy(ctype, s, hlen);
	ctype[hlen] = '\0';
	memcpy(text, body, blen);
	text[blen] = '\0';

	memset(&p, 0, sizeof p);
	if (sbx_params_parse_form(&p, body, blen) == SBX_OK)
		views(&p);
	sbx_params_free(&p);

	memset(&p, 0, sizeof p);
	why[0] = '\0';
	if (sbx_params_parse_json(&p, body, blen, why, sizeof why) == SBX_OK)
		views(&p);
	sbx_params_free(&p);

	memset(&part, 0, sizeof part);
	if (sbx_multipart_find(ctype, body, blen, "file", &part) == SBX_OK) {
		if (part.data < body || part.data + part.len > body + blen)
			abort();
		if (memchr(part.filename, '\0', sizeof part.filename) == NULL ||
		    memchr(part.content_type, '\0', sizeof part.content_type) == NULL)
			abort();
	}

	dec = malloc(strlen(text) * 3 / 4 + 1);
	if (dec != NULL)
		sbx_base64_decode(text, dec, &declen);
	free(dec);
	{
		unsigned bits;
		long long x;
		sbx_scope_parse(text, &bits);
		sbx_parse_int(text, &x);
		sbx_utf8_valid(body, blen);
	}
out:
	free(ctype);
	free(text);
	return 0;
}
