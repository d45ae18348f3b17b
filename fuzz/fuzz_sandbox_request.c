/*
 * fuzz_sandbox_request.c: whole requests through the sandbox's router and handlers, the way
 * server.c hands them over (raw URI split into path and query, the path percent-decoded,
 * headers lower-cased, the body), without libmicrohttpd in between.
 *
 * server.c is included so that its request helpers (static there) serve here too; the daemon
 * is never started. The server starts from the seeded data and three known tokens; it is
 * reset (re-seeded) every RESET_EVERY inputs, so an input may meet a few writes of earlier
 * ones.
 *
 * Input: "METHOD URI\n" then header lines "name: value\n", a blank line, the body. In header
 * values, "@S", "@U" and "@R" stand for a system token (read,write), a user token of
 * adele.olson (read,write) and a read-only user token; the credentials are
 * fuzz-id / fuzz-secret (Basic ZnV6ei1pZDpmdXp6LXNlY3JldA==).
 */
#include "../src/sandbox/server.c"

#define RESET_EVERY 512

static struct sbx_server *srv;
static unsigned runs;
static const char *const tok_names[3] = {"@S", "@U", "@R"};
static char tok_values[3][41];

static struct sbx_server *server_new(void)
{
	struct sbx_server *s = calloc(1, sizeof *s);
	if (s == NULL)
		abort();
	pthread_mutex_init(&s->lock, NULL);
	s->rate_limit = 1;
	s->refresh_tokens = 1;
	s->heavy.count = 50, s->heavy.window = 60;
	s->normal.count = 500, s->normal.window = 120;
	s->client_id = sbx_strdup("fuzz-id");
	s->client_secret = sbx_strdup("fuzz-secret");
	s->redirect_uri = sbx_strdup("http://127.0.0.1/callback");
	s->by_route = calloc(sbx_route_count(), sizeof *s->by_route);
	s->store = sbx_seed();
	snprintf(s->url, sizeof s->url, "http://127.0.0.1:1");
	if (!s->client_id || !s->client_secret || !s->redirect_uri || !s->by_route || !s->store)
		abort();
	return s;
}

static void fixed_tokens(struct sbx_server *s)
{
	int adele = sbx_user_by_name(s->store, "adele.olson");
	struct sbx_token *t;
	t = sbx_token_issue(s, SBX_GRANT_CLIENT, -1, SBX_SCOPE_READ | SBX_SCOPE_WRITE);
	snprintf(t->access, sizeof t->access, "%040d", 1);
	t = sbx_token_issue(s, SBX_GRANT_CODE, adele, SBX_SCOPE_READ | SBX_SCOPE_WRITE);
	snprintf(t->access, sizeof t->access, "%040d", 2);
	snprintf(t->refresh, sizeof t->refresh, "%040d", 3);
	t = sbx_token_issue(s, SBX_GRANT_CODE, adele, SBX_SCOPE_READ);
	snprintf(t->access, sizeof t->access, "%040d", 4);
	snprintf(tok_values[0], 41, "%040d", 1);
	snprintf(tok_values[1], 41, "%040d", 2);
	snprintf(tok_values[2], 41, "%040d", 4);
}

/* A header value with the token stand-ins replaced. */
static char *expand(const char *v, size_t n)
{
	struct sbx_buf b = {0};
	size_t i = 0;
	while (i < n) {
		int k, hit = -1;
		for (k = 0; k < 3; k++)
			if (n - i >= 2 && memcmp(v + i, tok_names[k], 2) == 0)
				hit = k;
		if (hit >= 0) {
			sbx_buf_add(&b, tok_values[hit], 40);
			i += 2;
		} else {
			sbx_buf_add(&b, v + i, 1);
			i++;
		}
	}
	if (b.data == NULL)
		return sbx_strdup("");
	return b.data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size, *nl, *sp;
	struct sbx_request *r;
	struct sbx_reply rp = {0};
	struct sbx_ctx c;
	char *method, *uri;

	if (srv == NULL)
		srv = server_new();
	if (runs++ % RESET_EVERY == 0) {
		if (sbx_reset(srv) != 0)
			abort();
		fixed_tokens(srv);
	}

	/* request line; NUL bytes end it, as they would in an HTTP parser */
	nl = memchr(s, '\n', size);
	if (nl == NULL)
		return 0;
	sp = memchr(s, ' ', (size_t)(nl - s));
	if (sp == NULL || memchr(s, '\0', (size_t)(nl - s)) != NULL)
		return 0;
	method = sbx_memdup(s, (size_t)(sp - s));
	uri = sbx_memdup(sp + 1, (size_t)(nl - sp - 1));
	r = request_new(uri);
	free(uri);
	if (r == NULL || r->path == NULL || r->query == NULL) {
		free(method);
		request_free(r);
		return 0;
	}
	r->method = method;
	/* headers */
	s = nl + 1;
	while (s < end) {
		const char *eol = memchr(s, '\n', (size_t)(end - s)), *colon;
		size_t len = eol ? (size_t)(eol - s) : (size_t)(end - s);
		if (len > 0 && s[len - 1] == '\r')
			len--;
		if (len == 0) {
			s = eol ? eol + 1 : end;
			break;
		}
		colon = memchr(s, ':', len);
		if (colon != NULL && memchr(s, '\0', len) == NULL) {
			char *name = sbx_memdup(s, (size_t)(colon - s)), *value, *p;
			const char *v = colon + 1;
			while (v < s + len && *v == ' ')
				v++;
			value = expand(v, (size_t)(s + len - v));
			for (p = name; p && *p; p++)
				*p = (char)tolower((unsigned char)*p);
			if (name == NULL || value == NULL || SBX_GROW(r->headers, r->hcap, r->nheaders) != 0)
				abort();
			r->headers[r->nheaders].name = name;
			r->headers[r->nheaders].value = value;
			r->nheaders++;
		}
		s = eol ? eol + 1 : end;
	}
	if (s < end && sbx_buf_add(&r->body, s, (size_t)(end - s)) != 0)
		abort();

	/* what handle_request does between the fault injection and send_reply */
	r->dpath = path_decode(r->path);
	sbx_route_index(r->dpath ? r->dpath : "", r->method);
	log_request(srv, r);
	memset(&c, 0, sizeof c);
	c.s = srv;
	c.req = r;
	c.rp = &rp;
	pthread_mutex_lock(&srv->lock);
	c.now = sbx_now(srv);
	sbx_dispatch(&c);
	pthread_mutex_unlock(&srv->lock);
	sbx_params_free(&c.query);
	if (rp.status < 100 || rp.status > 599 || (rp.len > 0 && rp.body == NULL))
		abort();
	if (rp.nheaders > SBX_MAX_REPLY_HEADERS)
		abort();
	sbx_reply_free(&rp);
	request_free(r);
	return 0;
}
