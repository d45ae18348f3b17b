/*
 * store.c: what every state store shares: the keys, the stored form of a token. (The client
 * option `store` is read in binding/store_option.c.)
 *
 * Keys carry the client id as a Redis Cluster hash tag, so one client's keys share a slot:
 *   <prefix>:{<client_id>}:token:<sha256(base_url \n scope), 32 hex>   the system token
 *   <prefix>:{<client_id>}:lock:<same>                                 its request lock
 *   <prefix>:{<client_id>}:rate:<sha256(access token), 16 hex>:<bucket> a rate budget
 * The access token itself never appears in a key.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/sha256.h"
#include "core/store.h"

static const char *const bucket_names[ACH_BUCKET_COUNT] = {"default", "recognitions",
							    "newsfeed-events"};

static int key_head(ach_core *core, ach_buf *key)
{
	const char *id = core->opt.client_id != NULL ? core->opt.client_id : "";
	ach_buf_reset(key);
	return ach_buf_printf(key, "%s:{%s}:", core->store->prefix, id);
}

int ach_store_token_key(ach_core *core, ach_buf *key)
{
	ach_buf what = {0};
	char hex[65];
	int rc;
	rc = ach_buf_printf(&what, "%s%s\n%s", core->opt.base.origin, core->opt.base.path,
			    core->opt.scope_comma != NULL ? core->opt.scope_comma : "");
	if (rc == 0)
		ach_sha256_hex(what.data, what.len, hex);
	ach_buf_free(&what);
	hex[32] = '\0';
	return rc || key_head(core, key) || ach_buf_printf(key, "token:%s", hex) ? -1 : 0;
}

int ach_store_budget_key(ach_core *core, const char *token_hash, int bucket, ach_buf *key)
{
	if (bucket < 0 || bucket >= ACH_BUCKET_COUNT)
		bucket = ACH_BUCKET_DEFAULT;
	return key_head(core, key) || ach_buf_printf(key, "rate:%s:%s", token_hash,
						     bucket_names[bucket])
		       ? -1
		       : 0;
}

/* "v1 <expires_at> <fresh_until> <skew>\n<token_type>\n<scope>\n<access_token>": simple to
 * read from C and from Lua (the OpenResty driver). Tokens with a newline are not shared. */
int ach_store_token_text(const ach_token_data *t, double fresh_until, ach_buf *out)
{
	if (strchr(t->access_token, '\n') != NULL || strchr(t->token_type, '\n') != NULL ||
	    strchr(t->scope, '\n') != NULL)
		return -1;
	ach_buf_reset(out);
	return ach_buf_printf(out, "v1 %lld %.0f %lld\n%s\n%s\n%s", (long long)t->expires_at,
			      fresh_until, (long long)t->skew, t->token_type, t->scope,
			      t->access_token)
		       ? -1
		       : 0;
}

ach_token_data *ach_store_token_parse(const char *s, size_t n, double *fresh_until)
{
	ach_token_data *t;
	char *copy, *line[4], *p, *end;
	long long exp, skew;
	double fresh;
	int i;
	/* a NUL would cut the copy short: the bytes before it are not the stored token */
	if (n < 4 || memcmp(s, "v1 ", 3) != 0 || memchr(s, '\0', n) != NULL ||
	    (copy = ach_strndup(s, n)) == NULL)
		return NULL;
	p = copy;
	for (i = 0; i < 4; i++) {
		line[i] = p;
		p = strchr(p, '\n');
		if (i < 3) {
			if (p == NULL)
				goto bad;
			*p++ = '\0';
		}
	}
	errno = 0;
	exp = strtoll(line[0] + 3, &end, 10);
	fresh = strtod(end, &end);
	skew = strtoll(end, &end, 10);
	if (errno != 0 || *end != '\0' || line[3][0] == '\0' || line[1][0] == '\0')
		goto bad;
	/* the token goes into a header: visible ASCII only, as from a token answer (token.c);
	 * whoever can write the store must not be able to inject header lines */
	for (p = line[3]; *p != '\0'; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
			goto bad;
	t = calloc(1, sizeof *t);
	if (t == NULL)
		goto bad;
	t->refs = 1;
	t->expires_at = exp;
	t->skew = skew;
	t->token_type = ach_strdup(line[1]);
	t->scope = ach_strdup(line[2]);
	t->access_token = ach_strdup(line[3]);
	t->grant_type = ach_strdup("client_credentials");
	ach_free_secret(copy);
	if (t->token_type == NULL || t->scope == NULL || t->access_token == NULL ||
	    t->grant_type == NULL) {
		ach_token_unref(t);
		return NULL;
	}
	*fresh_until = fresh;
	return t;
bad:
	ach_free_secret(copy);
	return NULL;
}

void ach_store_close(ach_core *core)
{
	if (core->store == NULL)
		return;
	if (core->store->ops != NULL)
		core->store->ops->free(core->store->ud);
	free(core->store);
	core->store = NULL;
}

void ach_store_init(ach_store *st, const ach_env *env)
{
	unsigned char rnd[16];
	int i;
	if (env->random(env->ud, rnd, sizeof rnd) != 0)
		memset(rnd, 0, sizeof rnd);
	for (i = 0; i < 16; i++)
		snprintf(st->owner + 2 * i, 3, "%02x", rnd[i]);
	strcpy(st->prefix, "achievers");
}
