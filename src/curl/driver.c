/*
 * driver.c: moves the bytes of exchanges over one libcurl multi handle per client core: the
 * driver ops (core/engine.h) the scheduler (core/sched.c) calls: start a transfer, cancel
 * one, pump (poll the sockets, let libcurl work, hand finished answers back to the engine).
 * Connections stay in the multi handle's cache, so calls reuse them (keep-alive, HTTP/2
 * multiplexing where offered).
 *
 * libcurl is driven by its socket interface: it tells us which sockets to watch and when its
 * next timeout is; one poll() over those sockets finds the ready ones, and libcurl works only
 * on their transfers, told what is ready, so it need not poll each socket again. A poll(0)
 * with 16 transfers in flight and nothing arrived is then one system call.
 *
 * libcurl never calls into Lua from here: the write and header callbacks only append bytes.
 */
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "core/env.h"
#include "core/http.h"
#include "curl/driver.h"

typedef struct transfer {
	CURL *easy;
	struct curl_slist *headers;
	ach_exchange *ex;
	size_t max;
	int overflow;
	char errbuf[CURL_ERROR_SIZE];
	struct transfer *next_free;
} transfer;

typedef struct driver {
	ach_core *core;
	CURLM *multi;
	CURLSH *share; /* TLS sessions, so a new connection resumes instead of a full handshake */
	transfer *free_list;
	int active;
	struct pollfd *fds; /* the sockets libcurl wants watched, with what for */
	int nfds, capfds;
	struct pollfd *ready; /* poll()'s copy: libcurl may change fds while it acts */
	double timer; /* when libcurl wants curl_multi_socket_action(CURL_SOCKET_TIMEOUT); < 0: never */
	int next_fd;  /* where the next pump starts looking at ready sockets (round robin) */
	struct pollfd store_pfd; /* the state store's socket (core->watch) */
} driver;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl says which sockets to watch, and for what. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	driver *d = userp;
	int i;
	(void)easy;
	(void)socketp;
	for (i = 0; i < d->nfds; i++)
		if (d->fds[i].fd == s)
			break;
	if (what == CURL_POLL_REMOVE) {
		if (i < d->nfds)
			d->fds[i] = d->fds[--d->nfds];
		return 0;
	}
	if (i == d->nfds) {
		if (d->nfds == d->capfds) {
			int cap = d->capfds ? d->capfds * 2 : 16;
			struct pollfd *f = realloc(d->fds, (size_t)cap * sizeof *f);
			/* one more in ready: the state store's socket */
			struct pollfd *r = f ? realloc(d->ready, (size_t)(cap + 1) * sizeof *r) : NULL;
			if (f != NULL)
				d->fds = f;
			if (r == NULL)
				return -1; /* out of memory: libcurl aborts the transfers */
			d->ready = r;
			d->capfds = cap;
		}
		d->nfds++;
		d->fds[i].fd = s;
	}
	d->fds[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
				   ((what & CURL_POLL_OUT) ? POLLOUT : 0));
	d->fds[i].revents = 0;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: when libcurl next wants to run its timeouts. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	driver *d = userp;
	(void)multi;
	d->timer = timeout_ms < 0 ? -1 : ach_now() + (double)timeout_ms / 1000.0;
	return 0;
}

static const ach_driver curl_ops;

int ach_curl_driver_init(ach_core *core)
{
	driver *d;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return -1;
	d = calloc(1, sizeof *d);
	if (d == NULL)
		return -1;
	d->multi = curl_multi_init();
	if (d->multi == NULL) {
		free(d);
		return -1;
	}
	d->timer = -1;
	d->core = core;
	curl_multi_setopt(d->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
	d->share = curl_share_init();
	if (d->share != NULL)
		curl_share_setopt(d->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	core->drv = curl_ops;
	core->drv.ud = d;
	return 0;
}

static void transfer_free(transfer *t)
{
	if (t->easy != NULL)
		curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t);
}

static void drv_free(void *ud)
{
	driver *d = ud;
	if (d == NULL)
		return;
	while (d->free_list != NULL) {
		transfer *t = d->free_list;
		d->free_list = t->next_free;
		transfer_free(t);
	}
	curl_multi_cleanup(d->multi);
	if (d->share != NULL)
		curl_share_cleanup(d->share);
	free(d->fds);
	free(d->ready);
	d->core->drv.ud = NULL;
	free(d);
}

static void transfer_recycle(driver *d, transfer *t)
{
	curl_multi_remove_handle(d->multi, t->easy);
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	t->ex = NULL;
	t->next_free = d->free_list;
	d->free_list = t;
	d->active--;
}

static void drv_cancel(void *ud, ach_exchange *ex)
{
	driver *d = ud;
	transfer *t = ex->transfer;
	if (t == NULL)
		return;
	ex->transfer = NULL;
	transfer_recycle(d, t);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	transfer *t = ud;
	size_t len = size * n;
	if (t->ex->resp_body.len + len > t->max) {
		t->overflow = 1;
		return 0;
	}
	return ach_buf_add(&t->ex->resp_body, p, len) == 0 ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	transfer *t = ud;
	size_t len = size * n;
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
		ach_buf_reset(&t->ex->resp_headers); /* a new answer (after 100 Continue, say) */
	if (t->ex->resp_headers.len + len > 256 * 1024) {
		t->overflow = 1;
		return 0;
	}
	/* size the body buffer once from Content-Length: one allocation, not a doubling chain */
	if (len > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
		unsigned long long want = strtoull(p + 15, NULL, 10);
		if (want > 0 && want <= t->max && ach_buf_reserve(&t->ex->resp_body, (size_t)want) != 0)
			return 0;
	}
	return ach_buf_add(&t->ex->resp_headers, p, len) == 0 ? len : 0;
}

/* Starts the transfer an exchange asked for. Returns 0, or -1 (the exchange has failed). */
static int drv_start(void *ud, ach_exchange *ex)
{
	driver *d = ud;
	ach_core *core = d->core;
	const ach_options *o = &core->opt;
	ach_http_request req;
	transfer *t = d->free_list;
	struct curl_slist *h;
	int i;

	ach_exchange_request(ex, &req);
	if (t != NULL) {
		d->free_list = t->next_free;
		curl_easy_reset(t->easy);
	} else {
		t = calloc(1, sizeof *t);
		if (t == NULL || (t->easy = curl_easy_init()) == NULL) {
			free(t);
			return -1;
		}
	}
	t->ex = ex;
	t->overflow = 0;
	t->errbuf[0] = '\0';
	t->max = o->max_response;
	t->headers = NULL;
	for (i = 0; req.headers != NULL && req.headers[i] != NULL; i++) {
		h = curl_slist_append(t->headers, req.headers[i]);
		if (h == NULL)
			goto nomem;
		t->headers = h;
	}
	h = curl_slist_append(t->headers, "Expect:");
	if (h == NULL)
		goto nomem;
	t->headers = h;
	d->active++;
	if (ex->type == ACH_EX_API)
		ach_core_take_buffer(core, &ex->resp_body); /* token answers get fresh (wiped) ones */
	ach_buf_reset(&ex->resp_body);
	ach_buf_reset(&ex->resp_headers);

	curl_easy_setopt(t->easy, CURLOPT_URL, req.url);
	curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(t->easy, CURLOPT_USERAGENT, o->user_agent);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)ceil(req.timeout * 1000));
	curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(o->connect_timeout * 1000));
	if (d->share != NULL)
		curl_easy_setopt(t->easy, CURLOPT_SHARE, d->share);
	/* keep a connection per transfer slot in the cache (libcurl's default follows the
	 * number of handles added, which here comes and goes): a connection closed and opened
	 * again costs a TLS handshake inside some frame's poll */
	curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, (long)o->max_concurrency + 4);
	/* TLS 1.2 at least, to the server and to an https:// proxy, whatever the system's OpenSSL
	 * configuration would allow (a host may lower it for some old service of its own) */
	curl_easy_setopt(t->easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(t->easy, CURLOPT_PROXY_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
	curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
	if (o->ca_file != NULL)
		curl_easy_setopt(t->easy, CURLOPT_CAINFO, o->ca_file);
	/* Proxies, as curl-based tools do: the environment's (http_proxy, https_proxy, ALL_PROXY,
	 * NO_PROXY) apply, but nothing secret crosses a plaintext hop that is not loopback:
	 *  - a request to an http:// URL (base_url on loopback, or allow_http) never goes through
	 *    a proxy from the environment (libcurl would send even 127.0.0.1 there when no_proxy
	 *    is unset);
	 *  - an explicit `proxy` with an http:// base_url must itself be on loopback, unless
	 *    allow_http = true (checked when the client is made, client.c);
	 *  - a request to an https:// URL always tunnels (CONNECT): the proxy sees only TLS;
	 *  - proxy = false (or "") turns the environment's proxies off. */
	if (o->proxy != NULL)
		curl_easy_setopt(t->easy, CURLOPT_PROXY, o->proxy);
	else if (strncasecmp(req.url, "https://", 8) != 0)
		curl_easy_setopt(t->easy, CURLOPT_PROXY, "");
	if (strncasecmp(req.url, "https://", 8) == 0)
		curl_easy_setopt(t->easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
	if (strcmp(req.method, "GET") == 0) {
		curl_easy_setopt(t->easy, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(req.method, "HEAD") == 0)
			curl_easy_setopt(t->easy, CURLOPT_NOBODY, 1L);
		else if (strcmp(req.method, "POST") != 0)
			curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, req.method);
		if (req.body != NULL || strcmp(req.method, "POST") == 0) {
			curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.body_len);
			curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, req.body != NULL ? req.body : "");
		}
	}
	/* libcurl silently sends a request again when a reused connection turns out dead with
	 * no answer; for a request that must not run twice, use a connection of its own. */
	if (!ach_method_idempotent(req.method) && ex->type == ACH_EX_API)
		curl_easy_setopt(t->easy, CURLOPT_FRESH_CONNECT, 1L);
	/* client:warm: each of its requests opens a connection of its own (on a fast server they
	 * would otherwise follow one another on one), which then stays in the cache */
	if (ex->warm)
		curl_easy_setopt(t->easy, CURLOPT_FRESH_CONNECT, 1L);

	if (curl_multi_add_handle(d->multi, t->easy) != CURLM_OK) {
		transfer_recycle(d, t); /* removes nothing: it was never added */
		return -1;
	}
	ex->transfer = t;
	/* on the wire now: libcurl starts a new transfer from its timer (and tells on_timer its
	 * next deadline if that changes) */
	{
		int running;
		curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return 0;
nomem:
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	t->ex = NULL;
	t->next_free = d->free_list;
	d->free_list = t;
	return -1;
}

static ach_kind failure_kind(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return ACH_KIND_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		return ACH_KIND_TLS;
	default:
		return ACH_KIND_NETWORK;
	}
}

/* What to do about a TLS failure, from libcurl's (OpenSSL's) message: advice that matches it.
 * "insecure = true" is only offered for certificate problems, never for a port that does not
 * speak TLS at all, where it would not help. */
static const char *tls_advice(const char *m)
{
	if (strstr(m, "wrong version number") != NULL || strstr(m, "packet length too long") != NULL ||
	    strstr(m, "record layer failure") != NULL || strstr(m, "http request") != NULL)
		return " (TLS: the port seems to speak plain HTTP, not TLS: check the port in "
		       "base_url, or use http:// for a local server)";
	if (strstr(m, "SSL_ERROR_SYSCALL") != NULL || strstr(m, "unexpected eof") != NULL ||
	    strstr(m, "Connection reset") != NULL)
		return " (TLS: the server closed the connection during the handshake: the port may "
		       "speak plain HTTP, not TLS; check the port in base_url)";
	if (strstr(m, "subject name") != NULL || strstr(m, "host name") != NULL ||
	    strstr(m, "hostname") != NULL)
		return " (TLS: the server's certificate is not for this host name: use a name it "
		       "lists in base_url; trusting its CA with ca_file does not change that, "
		       "insecure = true turns verification off)";
	if (strstr(m, "protocol") != NULL || strstr(m, "no protocols available") != NULL)
		return " (TLS: the server offers no TLS 1.2 or later, which this client requires)";
	if (strstr(m, "certificate") != NULL || strstr(m, "issuer") != NULL ||
	    strstr(m, "verify") != NULL)
		return " (TLS: the server's certificate is not trusted: give the CA that signed it "
		       "with ca_file, or set insecure = true to turn verification off)";
	return " (TLS: the handshake failed: check the server's certificate; give the CA that "
	       "signed it with ca_file, or set insecure = true to turn verification off)";
}

/* Hands a finished transfer's answer to its exchange. */
static void complete(driver *d, transfer *t, CURLcode rc, double now)
{
	ach_exchange *ex = t->ex;
	ach_http_response r;
	ach_buf msg = {0};
	curl_off_t sent = 0;
	memset(&r, 0, sizeof r);
	ex->transfer = NULL;
	r.reached = 1;
	if (t->overflow) {
		/* the transfer stopped at the cap (on_body said so); what came is cut, so nothing of it
		 * is decoded, not even as an error body */
		r.failure = ACH_KIND_DECODE;
		ach_buf_reset(&ex->resp_body);
		ach_buf_printf(&msg, "the answer is larger than max_response_size (%zu bytes)", t->max);
	} else if (rc != CURLE_OK) {
		r.failure = failure_kind(rc);
		curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
		if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
		    rc == CURLE_COULDNT_RESOLVE_PROXY || sent == 0)
			r.reached = 0;
		ach_buf_adds(&msg, t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
		if (r.failure == ACH_KIND_TLS)
			ach_buf_adds(&msg, tls_advice(msg.data ? msg.data : ""));
	} else {
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.status);
	}
	r.message = msg.data;
	r.headers = ex->resp_headers.data;
	r.headers_len = ex->resp_headers.len;
	r.body = ex->resp_body.data;
	r.body_len = ex->resp_body.len;
	transfer_recycle(d, t);
	ach_exchange_response(ex, &r, now);
	ach_buf_free(&msg);
}

/* Waits up to ms milliseconds (0: not at all) for a watched socket to be ready, then lets
 * libcurl act on its timeouts if they are due and on the ready sockets, within the run's
 * budget (the sockets left ready are found again by the next pump). */
static void pump_sockets(driver *d, int ms)
{
	ach_core *core = d->core;
	int n = d->nfds, i, k, ready = 0, running;
	/* state store (src/store/): its socket in the same poll, one slot past libcurl's */
	ach_watch *w = &core->watch;
	int wfd = w->fd >= 0 && w->events != 0 && w->on_ready != NULL;
	if (wfd) {
		d->store_pfd.fd = w->fd;
		d->store_pfd.events = w->events;
		d->store_pfd.revents = 0;
	}
	if (n > 0 || wfd) {
		if (n > 0)
			memcpy(d->ready, d->fds, (size_t)n * sizeof *d->ready);
		if (wfd && n > 0) {
			/* d->ready has room for one more: see on_socket */
			d->ready[n] = d->store_pfd;
			ready = poll(d->ready, (nfds_t)n + 1, ms);
			d->store_pfd.revents = d->ready[n].revents;
		} else if (wfd) {
			ready = poll(&d->store_pfd, 1, ms);
		} else {
			ready = poll(d->ready, (nfds_t)n, ms);
		}
		if (wfd && d->store_pfd.revents != 0) {
			ready--;
			w->on_ready(w->ud, d->store_pfd.revents);
		}
	} else if (ms > 0) {
		poll(NULL, 0, ms); /* only a timeout (or an exchange waking up) to wait for */
	}
	if (w->on_ready != NULL && w->timer >= 0 && w->timer <= ach_now())
		w->on_ready(w->ud, 0); /* the store's timeouts */
	/* ---- end of state store ---- */
	if (d->timer >= 0 && d->timer <= ach_now()) {
		/* the timer is one-shot: it has fired. libcurl sets the next through on_timer; should
		 * it not (its earliest deadline unchanged), ask, so that no timeout is lost */
		d->timer = -1;
		curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		if (d->timer < 0) {
			long next = -1;
			curl_multi_timeout(d->multi, &next);
			if (next >= 0)
				d->timer = ach_now() + (double)next / 1000.0;
		}
	}
	for (k = 0; k < n && ready > 0; k++) {
		int ev = 0;
		short re;
		i = (d->next_fd + k) % n;
		re = d->ready[i].revents;
		if (re == 0)
			continue;
		if (ach_core_over_budget(core)) {
			d->next_fd = i; /* first in line next time */
			return;
		}
		ready--;
		if (re & (POLLIN | POLLHUP))
			ev |= CURL_CSELECT_IN;
		if (re & POLLOUT)
			ev |= CURL_CSELECT_OUT;
		if (re & (POLLERR | POLLNVAL))
			ev |= CURL_CSELECT_ERR;
		curl_multi_socket_action(d->multi, d->ready[i].fd, ev, &running);
		ach_core_work(core);
	}
	d->next_fd = n > 0 ? (d->next_fd + 1) % n : 0;
}

/* The driver op: pumps the sockets, then hands finished transfers to their exchanges. */
static int drv_pump(void *ud, int ms)
{
	driver *d = ud;
	CURLMsg *m;
	int msgs, n = 0;
	pump_sockets(d, ms);
	while ((m = curl_multi_info_read(d->multi, &msgs)) != NULL) {
		transfer *t = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		complete(d, t, m->data.result, ach_now());
		n++;
	}
	return n;
}

static int drv_active(void *ud)
{
	return ((driver *)ud)->active;
}

static double drv_timer(void *ud)
{
	return ((driver *)ud)->timer;
}

static const ach_driver curl_ops = {drv_start, drv_cancel, drv_pump, drv_active, drv_timer,
				    drv_free, NULL};
