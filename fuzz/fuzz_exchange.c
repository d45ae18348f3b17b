/*
 * fuzz_exchange.c: the engine's answer handling, end to end without a network.
 *
 * A fake driver steps the exchanges of one call as the scheduler (core/sched.c) does, but
 * instead of sending, hands each request the next answer cut from the input: status,
 * transport failure, raw header block and body. So every answer the engine can see (retries with any Retry-After
 * or Date, 401 recovery, token answers, JSON and non-JSON bodies, failures) reaches
 * ach_exchange_response and ach_exchange_push_result, with the trace and token hooks set.
 *
 * Input: one byte picking the call, then answers separated by NUL bytes. Each answer is
 *   "<status>[flags]\n<header lines>\n\n<body>"
 * where flags are n (network failure after sending), u (never reached the server),
 * t (timeout), s (TLS), d (over max_response_size).
 *
 * FUZZ_VERBOSE=1 in the environment prints each request and the answer it got (to replay a
 * finding by hand).
 *
 * Findings besides sanitizer reports: a raise out of push_result, a call that stalls (no
 * runnable exchange left and not done), or one that does not end within the step budget.
 */
#include <math.h>

#include "fuzz_lua.h"

static const char setup[] =
	"local far = os.time() + 30 * 86400\n"
	"local specs = {\n"
	"  G = {path = 'users', query = {q = 'ad', page = 2}},\n"
	"  R = {path = 'recognitions'},\n"
	"  P = {method = 'POST', path = 'recognitions', form = {nominees = {'a', 'b'}, criterionId = 1}},\n"
	"  O = {method = 'OPTIONS', path = 'recognitions', query = {nominees = 'a'}},\n"
	"  U = {path = 'users/1'},\n"
	"}\n"
	"function fuzz_make(kind)\n"
	"  local c = achievers.client {\n"
	"    base_url = 'http://127.0.0.1:9/prefix', client_id = 'fuzz-client', client_secret = 'fuzz-secret',\n"
	"    retries = 2, retry_max_wait = 5, limits = {heavy = {3, 1}, default = {5, 1}},\n"
	"    redirect_uri = 'http://127.0.0.1/cb', scope = {'read', 'write'},\n"
	"    on_request = function(ev) for k, v in pairs(ev) do tostring(v) end end,\n"
	"    on_token = function(t) tostring(t) end,\n"
	"    on_rate_limit = function(i) tostring(i.wait) end,\n"
	"    token = (kind ~= 'T' and kind ~= 'C') and {access_token = 'fuzz-access', expires_at = far} or nil,\n"
	"  }\n"
	"  if kind == 'U' then\n"
	"    c = c:with_token {access_token = 'fuzz-user', refresh_token = 'fuzz-refresh',\n"
	"                      grant_type = 'authorization_code', expires_at = far, scope = 'read,write'}\n"
	"  end\n"
	"  return c, specs[kind]\n"
	"end\n";

typedef struct input {
	const uint8_t *p;
	size_t n;
} input;

/* Cuts the next answer off the input; with none left, a network failure after sending. */
static void next_answer(input *in, ach_http_response *r, ach_buf *hdr, ach_buf *body)
{
	const char *s = (const char *)in->p, *end, *line_end, *blank;
	size_t len, i;
	memset(r, 0, sizeof *r);
	ach_buf_reset(hdr);
	ach_buf_reset(body);
	r->reached = 1;
	if (in->n == 0) {
		r->failure = ACH_KIND_NETWORK;
		r->message = "end of input";
		return;
	}
	end = memchr(s, '\0', in->n);
	len = end != NULL ? (size_t)(end - s) : in->n;
	in->p += end != NULL ? len + 1 : len;
	in->n -= end != NULL ? len + 1 : len;
	for (i = 0; i < len && i < 4 && s[i] >= '0' && s[i] <= '9'; i++)
		r->status = r->status * 10 + (s[i] - '0');
	for (; i < len && s[i] != '\n'; i++) {
		switch (s[i]) {
		case 'n': r->failure = ACH_KIND_NETWORK; break;
		case 'u': r->failure = ACH_KIND_NETWORK; r->reached = 0; break;
		case 't': r->failure = ACH_KIND_TIMEOUT; break;
		case 's': r->failure = ACH_KIND_TLS; break;
		case 'd': r->failure = ACH_KIND_DECODE; break;
		default: break;
		}
	}
	if (r->failure != ACH_KIND_NONE) {
		r->status = 0;
		r->message = "injected transport failure";
	}
	line_end = i < len ? s + i + 1 : s + len;
	len -= (size_t)(line_end - s);
	blank = NULL;
	for (i = 0; i + 1 < len; i++)
		if (line_end[i] == '\n' && (line_end[i + 1] == '\n' ||
					   (line_end[i + 1] == '\r' && i + 2 < len && line_end[i + 2] == '\n'))) {
			blank = line_end + i + 1;
			break;
		}
	if (blank == NULL) {
		ach_buf_add(hdr, line_end, len);
	} else {
		const char *b = blank + (blank[0] == '\r' ? 2 : 1);
		ach_buf_add(hdr, line_end, (size_t)(blank - line_end));
		ach_buf_add(body, b, len - (size_t)(b - line_end));
	}
	/* the real driver hands the exchange's own buffers: the engine must cope with both */
	r->headers = hdr->data;
	r->headers_len = hdr->len;
	r->body = body->data;
	r->body_len = body->len;
}

static int run(lua_State *L)
{
	input *in = lua_touserdata(L, 1);
	char kind;
	int cl, steps;
	ach_exchange *ex;
	ach_core *core;
	double now = 1000.0;
	ach_buf hdr = {0}, body = {0};
	static const char kinds[] = "GRPOTCU";

	kind = kinds[in->p[0] % (sizeof kinds - 1)];
	in->p++, in->n--;
	lua_getglobal(L, "fuzz_make");
	lua_pushlstring(L, &kind, 1);
	lua_call(L, 1, 2); /* client, spec */
	cl = lua_gettop(L) - 1;
	if (kind == 'T') {
		ex = ach_request_push(L, cl, ACH_EX_ENSURE);
	} else if (kind == 'C') {
		ex = ach_request_push(L, cl, ACH_EX_TOKEN);
		ex->grant = ACH_GRANT_AUTHORIZATION_CODE;
		ex->code = ach_strdup("fuzz-code");
	} else {
		ex = ach_request_push(L, cl, ACH_EX_API);
		ach_client_prepare(L, cl, cl + 1, ex);
	}
	core = ex->core;
	ACH_HOST(core)->L = L;
	ach_exchange_schedule(ex);
	for (steps = 0; !ach_exchange_done(ex); steps++) {
		ach_exchange *e = core->runnable, *next;
		double wake = INFINITY;
		int progress = 0;
		if (steps > 200 || e == NULL) {
			fprintf(stderr, "exchange %s after %d steps\n", e == NULL ? "stalled" : "runs on", steps);
			abort();
		}
		for (; e != NULL; e = next) {
			ach_http_response r;
			ach_http_request req;
			next = e->next_runnable;
			switch (ach_exchange_step(e, now)) {
			case ACH_STEP_SEND:
				ach_exchange_request(e, &req);
				ach_exchange_sent(e);
				if (req.method == NULL || req.url == NULL)
					abort();
				next_answer(in, &r, &hdr, &body);
				if (getenv("FUZZ_VERBOSE") != NULL)
					fprintf(stderr, "%s %s -> %ld%s\n", req.method, req.url, r.status,
						r.failure != ACH_KIND_NONE ? " (transport failure)" : "");
				ach_exchange_response(e, &r, now);
				progress = 1;
				break;
			case ACH_STEP_WAIT:
				if (ach_exchange_wake(e) < wake)
					wake = ach_exchange_wake(e);
				break;
			default:
				progress = 1;
				break;
			}
		}
		if (!progress && isfinite(wake) && wake > now)
			now = wake;
	}
	ach_buf_free(&hdr);
	ach_buf_free(&body);
	ACH_HOST(core)->L = NULL;
	ach_exchange_push_result(L, ex, cl);
	fz_touch(L, -1, 0);
	if (lua_gettop(L) >= cl + 4)
		fz_touch(L, -1, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L = fz_state(setup);
	input in = {data, size};
	if (size == 0)
		return 0;
	fz_pcall(L, run, &in, 1);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
