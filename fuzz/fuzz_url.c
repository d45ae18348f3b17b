/*
 * fuzz_url.c: URLs from outside. ach_url_parse (base_url, paging links), ach_redact_url (every
 * URL that reaches a trace event or an error), ach_host_is_loopback, and the client's own
 * checks: achievers.client{base_url = input} (may raise: that is misuse, not a finding) and
 * client:request{path = input} up to the built request (paging links come from the server).
 *
 * Invariants checked: a redacted URL keeps no value of a secret query parameter; a host
 * counted as loopback (http:// allowed, tokens in the clear) is localhost, ::1 or an IPv4
 * address 127.x.x.x; a request URL stays on the program host.
 */
#include <arpa/inet.h>

#include "fuzz_lua.h"

static void check_loopback(const char *host)
{
	struct in_addr a;
	if (!ach_host_is_loopback(host))
		return;
	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
		return;
	if (inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127)
		return;
	fprintf(stderr, "counted as loopback: %s\n", host);
	abort();
}

static const char setup[] =
	"fuzz_client = achievers.client {\n"
	"  base_url = 'https://program.sandbox.achievers.com/base', client_id = 'id', client_secret = 'sec',\n"
	"}\n";

typedef struct input {
	const uint8_t *p;
	size_t n;
	char *s; /* NUL-terminated copy */
} input;

static int new_client(lua_State *L)
{
	input *in = lua_touserdata(L, 1);
	lua_getglobal(L, "achievers");
	lua_getfield(L, -1, "client");
	lua_createtable(L, 0, 1);
	lua_pushlstring(L, (const char *)in->p, in->n);
	lua_setfield(L, -2, "base_url");
	lua_call(L, 1, 1);
	fz_touch(L, -1, 0);
	return 0;
}

static int build_request(lua_State *L)
{
	input *in = lua_touserdata(L, 1);
	ach_exchange *ex;
	int cl;
	lua_getglobal(L, "fuzz_client");
	cl = lua_gettop(L);
	ex = ach_request_push(L, cl, ACH_EX_API);
	lua_createtable(L, 0, 1);
	lua_pushlstring(L, (const char *)in->p, in->n);
	lua_setfield(L, -2, "path");
	ach_client_prepare(L, cl, -1, ex); /* may raise on a path that is misuse */
	if (ex->url == NULL || strncasecmp(ex->url, "https://program.sandbox.achievers.com", 37) != 0) {
		fprintf(stderr, "request left the program host: %s\n", ex->url ? ex->url : "(null)");
		abort();
	}
	if (strpbrk(ex->url, "\r\n") != NULL || strpbrk(ex->url, " ") != NULL) {
		fprintf(stderr, "request URL with CR, LF or space: %s\n", ex->url);
		abort();
	}
	return 0;
}

/* Redaction covers the query, from the first '?' to the first '#' after it, whatever the case of
 * the names. */
static void check_redacted(const char *r)
{
	static const char *const secrets[] = {"code=", "state=", "access_token=", "refresh_token=",
					      "client_secret=", NULL};
	const char *q = strchr(r, '?'), *end;
	int i;
	if (q == NULL)
		return;
	end = q + strcspn(q, "#");
	for (i = 0; secrets[i] != NULL; i++) {
		const char *p = q;
		size_t n = strlen(secrets[i]);
		while ((p = strcasestr(p, secrets[i])) != NULL && p < end) {
			int at_param = p == q + 1 || p[-1] == '&';
			p += n;
			if (at_param && p < end && *p != '&' && strncmp(p, "[redacted]", 10) != 0) {
				fprintf(stderr, "secret left in redacted URL: %s\n", r);
				abort();
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = fz_state(setup);
	input in = {data, size, NULL};
	ach_url u;
	ach_buf b = {0};
	const char *err;

	in.s = malloc(size + 1);
	if (in.s == NULL)
		return 0;
	memcpy(in.s, data, size);
	in.s[size] = '\0';

	memset(&u, 0, sizeof u);
	err = ach_url_parse(in.s, &u);
	if (err == NULL) {
		if (u.origin == NULL || u.host == NULL || u.path == NULL)
			abort();
		check_loopback(u.host);
	}
	ach_url_free(&u);

	if (ach_redact_url(&b, in.s) == 0 && b.data != NULL)
		check_redacted(b.data);
	ach_buf_free(&b);
	ach_url_escape(&b, (const char *)data, size);
	ach_buf_free(&b);

	fz_pcall(L, new_client, &in, 0);
	fz_pcall(L, build_request, &in, 0);
	free(in.s);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
