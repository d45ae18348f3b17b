/*
 * raw_curl.c: contender (a) of bench/run.lua, the floor for lua-achievers' design: one libcurl
 * easy handle doing sequential keep-alive GETs, the body appended to a memory buffer and
 * nothing else (no Lua, no decoding, no exchange engine).
 *
 * usage: raw_curl URL TOKEN WARMUP COUNT CA_FILE|- BODIES_FILE|- [CONCURRENCY]
 *
 * Sends WARMUP untimed GETs (they open the connection and the TLS session), then COUNT timed
 * ones on the same handle, with the headers our client sends. Prints one line per timed
 * request, "status body_bytes nanoseconds", and a last line "connections N" (how many
 * connections libcurl opened in the timed part; 0 means every request reused the warm one).
 * When BODIES_FILE is given, writes the timed bodies there, each as "<length>\n<bytes>", so
 * that run.lua can time lua-cjson on exactly these bodies. Exit status 0 only when every
 * request got a 200.
 *
 * With CONCURRENCY > 1 it is instead the floor for client:batch: one multi handle, at most
 * CONCURRENCY transfers in flight, WARMUP untimed requests (which open the connections), then
 * COUNT timed ones; it prints "batch NANOSECONDS". Bodies are dropped.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct body {
	char *data;
	size_t len, cap;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	body *b = ud;
	size_t len = size * n;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *d;
		while (cap < b->len + len)
			cap *= 2;
		if ((d = realloc(b->data, cap)) == NULL)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	return len;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Adds handle `i` of the pool, which writes into bufs[i], to the multi handle. */
static int add_transfer(CURLM *m, CURL *h, body *b, const char *url, struct curl_slist *headers,
			const char *ca)
{
	b->len = 0;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "raw-curl-bench");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_PRIVATE, b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	if (ca != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	return curl_multi_add_handle(m, h) == CURLM_OK ? 0 : -1;
}

/* Runs `count` GETs with at most `conc` in flight, handle i writing into bufs[i]; returns the
 * number that got a 200, or -1. */
static long run_multi(CURLM *m, CURL **pool, body *bufs, int conc, long count, const char *url,
		      struct curl_slist *headers, const char *ca)
{
	long started = 0, finished = 0, ok = 0;
	int idle[256], n_idle = conc, running = 0, i, msgs;
	for (i = 0; i < conc; i++)
		idle[i] = i;
	while (finished < count) {
		CURLMsg *msg;
		while (started < count && n_idle > 0) {
			i = idle[--n_idle];
			if (add_transfer(m, pool[i], &bufs[i], url, headers, ca) != 0)
				return -1;
			started++;
		}
		if (curl_multi_perform(m, &running) != CURLM_OK)
			return -1;
		while ((msg = curl_multi_info_read(m, &msgs)) != NULL) {
			long status = 0;
			body *b = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&b);
			if (msg->data.result == CURLE_OK && status == 200)
				ok++;
			curl_multi_remove_handle(m, msg->easy_handle);
			idle[n_idle++] = (int)(b - bufs);
			finished++;
		}
		if (finished < count && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK)
			return -1;
	}
	return ok;
}

static int main_multi(const char *url, struct curl_slist *headers, const char *ca, long warmup,
		      long count, int conc)
{
	CURLM *m = curl_multi_init();
	CURL *pool[256];
	body bufs[256];
	long ok;
	double t0, t1;
	int i;
	memset(bufs, 0, sizeof bufs);
	for (i = 0; i < conc; i++)
		if ((pool[i] = curl_easy_init()) == NULL)
			return 1;
	if (run_multi(m, pool, bufs, conc, warmup, url, headers, ca) != warmup) {
		fputs("raw_curl: warm-up requests failed\n", stderr);
		return 1;
	}
	t0 = now_ns();
	ok = run_multi(m, pool, bufs, conc, count, url, headers, ca);
	t1 = now_ns();
	printf("batch %.0f\n", t1 - t0);
	for (i = 0; i < conc; i++) {
		curl_easy_cleanup(pool[i]);
		free(bufs[i].data);
	}
	curl_multi_cleanup(m);
	return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *url, *ca, *out_path;
	char auth[512];
	long warmup, count, i, status = 0, conns, failed = 0;
	struct curl_slist *headers = NULL;
	body b = {0};
	FILE *out = NULL;
	CURL *h;

	int conc;

	if (argc != 7 && argc != 8) {
		fputs("usage: raw_curl URL TOKEN WARMUP COUNT CA_FILE|- BODIES_FILE|- [CONCURRENCY]\n",
		      stderr);
		return 2;
	}
	url = argv[1];
	warmup = strtol(argv[3], NULL, 10);
	count = strtol(argv[4], NULL, 10);
	ca = strcmp(argv[5], "-") != 0 ? argv[5] : NULL;
	out_path = strcmp(argv[6], "-") != 0 ? argv[6] : NULL;
	if (warmup < 1 || count < 1 || count > 1000000) {
		fputs("raw_curl: WARMUP and COUNT must be positive\n", stderr);
		return 2;
	}
	conc = argc == 8 ? (int)strtol(argv[7], NULL, 10) : 1;
	if (conc < 1 || conc > 256) {
		fputs("raw_curl: CONCURRENCY must be 1 to 256\n", stderr);
		return 2;
	}
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (h = curl_easy_init()) == NULL) {
		fputs("raw_curl: libcurl did not initialise\n", stderr);
		return 1;
	}
	if (out_path != NULL && (out = fopen(out_path, "wb")) == NULL) {
		perror(out_path);
		return 1;
	}
	/* the same request lua-achievers makes */
	headers = curl_slist_append(headers, auth);
	headers = curl_slist_append(headers, "Accept: application/json");
	headers = curl_slist_append(headers, "Expect:");
	if (conc > 1)
		return main_multi(url, headers, ca, warmup, count, conc);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "raw-curl-bench");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, ca);

	for (i = 0; i < warmup; i++) {
		b.len = 0;
		if (curl_easy_perform(h) != CURLE_OK) {
			fputs("raw_curl: warm-up request failed\n", stderr);
			return 1;
		}
	}
	conns = 0;
	for (i = 0; i < count; i++) {
		double t0, t1;
		long n = 0;
		CURLcode rc;
		b.len = 0;
		t0 = now_ns();
		rc = curl_easy_perform(h);
		t1 = now_ns();
		if (rc != CURLE_OK) {
			fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
			return 1;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &n);
		conns += n;
		if (status != 200)
			failed++;
		printf("%ld %zu %.0f\n", status, b.len, t1 - t0);
		if (out != NULL) {
			fprintf(out, "%zu\n", b.len);
			fwrite(b.data, 1, b.len, out);
		}
	}
	printf("connections %ld\n", conns);
	if (out != NULL && fclose(out) != 0) {
		perror(out_path);
		return 1;
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	curl_global_cleanup();
	free(b.data);
	return failed ? 1 : 0;
}
