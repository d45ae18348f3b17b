/*
 * main.c: the achievers-sandbox program. Runs the emulator in the foreground on 127.0.0.1,
 * prints its URL, the client credentials it accepts and the key of its control surface
 * (/__sandbox/..., admin.c), and serves until SIGINT or SIGTERM; with --log, one line per request.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"
#include "replay.h"

static void usage(FILE *out)
{
    fputs("usage: achievers-sandbox [--port N] [--expires absolute|relative] [--latency-ms N]\n"
          "                         [--no-rate-limit] [--limit-heavy N/SECS] [--limit-default N/SECS]\n"
          "                         [--tls-cert FILE --tls-key FILE]\n"
          "                         [--client-id ID --client-secret SECRET] [--redirect-uri URI]\n"
          "                         [--loopback-redirects] [--refresh-tokens] [--strict]\n"
          "                         [--user-budget POINTS] [--program-budget POINTS] [--evidence]\n"
          "                         [--replay FILE [--replay-strict] | --seed-from FILE]\n"
          "                         [--admin-key KEY] [--log]\n"
          "\n"
          "Runs a local emulator of the Achievers Open API v5 on 127.0.0.1 until interrupted.\n"
          "  --port N            port to listen on (default 8080; 0 picks a free one)\n"
          "  --expires MODE      token expires_in as an absolute UNIX time (default) or relative seconds\n"
          "  --latency-ms N      delay added before every /api/v5 answer\n"
          "  --no-rate-limit     do not enforce the per-token rate limits\n"
          "  --limit-heavy N/S   GET /recognitions and GET /newsfeed-events: N per S seconds\n"
          "                      per token and endpoint (default 50/60)\n"
          "  --limit-default N/S every other API call: N per S seconds per token (default 500/120)\n"
          "  --tls-cert FILE     serve HTTPS with this PEM certificate ...\n"
          "  --tls-key FILE      ... and this PEM private key\n"
          "  --client-id ID      accept these client credentials (default: random ones)\n"
          "  --client-secret S\n"
          "  --redirect-uri URI  the registered redirect URI (default " SBX_DEFAULT_REDIRECT_URI ")\n"
          "  --loopback-redirects\n"
          "                      also accept any http redirect URI on a loopback host and any\n"
          "                      port (127.0.0.1, localhost, [::1]; RFC 8252 7.3), for native apps\n"
          "  --refresh-tokens    user tokens come with a refresh_token\n"
          "  --strict            serve no field classed inferred (see --evidence)\n"
          "  --user-budget P     every user's points budget (default: managers 25000, others 5000)\n"
          "  --program-budget P  the program's account for achievement points (default 1000000)\n"
          "  --evidence          print what each served field rests on (markdown) and exit\n"
          "  --replay FILE       answer the requests recorded in FILE (client option record)\n"
          "                      with their recorded answers; others as the sandbox would\n"
          "  --replay-strict     ... and others with a 501 naming the nearest recorded request\n"
          "  --seed-from FILE    import the users and recognitions recorded in FILE\n"
          "  --admin-key KEY     the key of the control surface (default: a random one, printed\n"
          "                      as admin_key); 16 to 256 of A-Z a-z 0-9 - . _ ~ + /\n"
          "  --log               print one line per request: METHOD PATH STATUS MSms (query\n"
          "                      values other than paging ones shown as *; no header or body)\n"
          "  --help              this text\n"
          "\n"
          "Control surface, for tests in any language: on the same port, under /__sandbox/, with\n"
          "the admin key in an 'Authorization: Bearer KEY' or 'X-Sandbox-Key: KEY' header (never\n"
          "in the URL), from a loopback Host only. JSON in and out; GET reads, POST changes:\n"
          "  GET  /__sandbox/stats       counters and the clock\n"
          "  GET  /__sandbox/requests    the request log (?since=SEQ: only newer requests)\n"
          "  POST /__sandbox/consent     {user, scope, redirect_uri, state} -> {code, location}\n"
          "  POST /__sandbox/fail        {count, status, retry_after, drop, path, body, content_type}\n"
          "  POST /__sandbox/advance     {seconds}: move the clock on\n"
          "  POST /__sandbox/latency     {ms}: delay before every API answer\n"
          "  POST /__sandbox/revoke      {token}, or {} for every token\n"
          "  POST /__sandbox/reset       a fresh state\n"
          "  GET  /__sandbox/budget      ?user=NAME (else the program's account)\n"
          "  POST /__sandbox/budget      {user, points}\n"
          "Control requests are not counted in the stats, not rate limited, not in the request\n"
          "log, and never failed or delayed. Example:\n"
          "  curl -H \"Authorization: Bearer $KEY\" http://127.0.0.1:8080/__sandbox/stats\n",
          out);
}

/* "N/SECS", both positive. */
static int limit(const char *s, struct sbx_limit *out)
{
    char *end;
    long n, w;

    n = strtol(s, &end, 10);
    if (end == s || *end != '/' || n < 1 || n > 1000000000)
        return 0;
    s = end + 1;
    w = strtol(s, &end, 10);
    if (end == s || *end != '\0' || w < 1 || w > 1000000000)
        return 0;
    out->count = (int)n;
    out->window = (int)w;
    return 1;
}

static int number(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return 0;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv)
{
    struct sbx_config cfg;
    struct sbx_server *s;
    sigset_t set;
    char err[512];
    long v;
    int i, sig;
    const char *replay = NULL, *seed = NULL;
    enum sbx_replay_mode replay_mode = SBX_REPLAY_ANSWER;

    sbx_config_defaults(&cfg);
    cfg.port = 8080;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--no-rate-limit") == 0) {
            cfg.rate_limit = 0;
            takes = 0;
        } else if (strcmp(a, "--refresh-tokens") == 0) {
            cfg.refresh_tokens = 1;
            takes = 0;
        } else if (strcmp(a, "--loopback-redirects") == 0) {
            cfg.loopback_redirects = 1;
            takes = 0;
        } else if (strcmp(a, "--log") == 0) {
            cfg.access_log = stdout;
            takes = 0;
        } else if (strcmp(a, "--strict") == 0) {
            cfg.strict = 1;
            takes = 0;
        } else if (strcmp(a, "--evidence") == 0) {
            sbx_evidence_markdown(stdout);
            return 0;
        } else if (strcmp(a, "--replay-strict") == 0) {   /* replay.c */
            replay_mode = SBX_REPLAY_STRICT;
            takes = 0;
        } else if (next != NULL && strcmp(a, "--replay") == 0) {
            replay = next;
        } else if (next != NULL && strcmp(a, "--seed-from") == 0) {
            seed = next;
        } else if (next == NULL) {
            fprintf(stderr, "achievers-sandbox: %s needs a value\n", a);
            goto bad;
        } else if (strcmp(a, "--port") == 0) {
            if (!number(next, 0, 65535, &v))
                goto bad_value;
            cfg.port = (int)v;
        } else if (strcmp(a, "--limit-heavy") == 0) {
            if (!limit(next, &cfg.heavy))
                goto bad_value;
        } else if (strcmp(a, "--limit-default") == 0) {
            if (!limit(next, &cfg.normal))
                goto bad_value;
        } else if (strcmp(a, "--user-budget") == 0) {
            if (!number(next, 0, 1000000000, &v))
                goto bad_value;
            cfg.user_budget = v;
        } else if (strcmp(a, "--program-budget") == 0) {
            if (!number(next, 0, 1000000000, &v))
                goto bad_value;
            cfg.program_budget = v;
        } else if (strcmp(a, "--latency-ms") == 0) {
            if (!number(next, 0, 600000, &v))
                goto bad_value;
            cfg.latency_ms = (int)v;
        } else if (strcmp(a, "--expires") == 0) {
            if (strcmp(next, "relative") != 0 && strcmp(next, "absolute") != 0)
                goto bad_value;
            cfg.expires_relative = strcmp(next, "relative") == 0;
        } else if (strcmp(a, "--tls-cert") == 0) {
            cfg.tls_cert_file = next;
        } else if (strcmp(a, "--tls-key") == 0) {
            cfg.tls_key_file = next;
        } else if (strcmp(a, "--client-id") == 0) {
            cfg.client_id = next;
        } else if (strcmp(a, "--client-secret") == 0) {
            cfg.client_secret = next;
        } else if (strcmp(a, "--redirect-uri") == 0) {
            cfg.redirect_uri = next;
        } else if (strcmp(a, "--admin-key") == 0) {
            if (!sbx_admin_key_valid(next, err, sizeof err)) {
                fprintf(stderr, "achievers-sandbox: %s\n", err);   /* never echo the key */
                goto bad;
            }
            cfg.admin_key = next;
        } else {
            fprintf(stderr, "achievers-sandbox: unknown option %s\n", a);
            goto bad;
        }
        i += takes;
        continue;
bad_value:
        fprintf(stderr, "achievers-sandbox: bad value for %s: %s\n", a, next);
        goto bad;
    }
    if (replay_mode == SBX_REPLAY_STRICT && replay == NULL) {
        fprintf(stderr, "achievers-sandbox: --replay-strict needs --replay FILE\n");
        goto bad;
    }
    if ((cfg.tls_cert_file == NULL) != (cfg.tls_key_file == NULL)) {
        fprintf(stderr, "achievers-sandbox: --tls-cert and --tls-key go together\n");
        goto bad;
    }

    /* the server's threads inherit this mask, so only sigwait below sees the signals */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    s = sbx_start(&cfg, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "achievers-sandbox: %s\n", err);
        return 1;
    }
    if ((seed != NULL && sbx_replay_attach(s, seed, SBX_REPLAY_SEED, err, sizeof err) != 0) ||
        (replay != NULL && sbx_replay_attach(s, replay, replay_mode, err, sizeof err) != 0)) {
        fprintf(stderr, "achievers-sandbox: %s\n", err);
        sbx_stop(s);
        return 1;
    }
    printf("Achievers API sandbox\n"
           "url: %s\n"
           "client_id: %s\n"
           "client_secret: %s\n"
           "admin_key: %s\n"
           "token endpoint: %s/oauth/v2/openIDConnectClient/token\n"
           "API: %s/api/v5\n"
           "control: %s/__sandbox (Authorization: Bearer <admin_key>)\n",
           sbx_url(s), sbx_client_id(s), sbx_client_secret(s), sbx_admin_key(s), sbx_url(s),
           sbx_url(s), sbx_url(s));
    fflush(stdout);
    sigwait(&set, &sig);
    sbx_stop(s);
    printf("stopped (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return 0;

bad:
    usage(stderr);
    return 2;
}
