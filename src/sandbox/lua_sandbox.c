/*
 * lua_sandbox.c: the `achievers.sandbox` Lua module. `start{...}` runs an emulator on its own
 * threads and returns an object of type `achievers.sandbox` with the fields url, port,
 * client_id, client_secret, redirect_uri, admin_key and the control methods of
 * doc/sandbox.luadoc. Misuse (unknown
 * option, wrong type, unknown user) raises; a server that cannot start returns nil, message.
 */
#include <stdio.h>
#include <string.h>

#include "binding/compat.h"
#include "sandbox.h"
#include "replay.h"

#define SBX_TYPE "achievers.sandbox"

struct lsbx {
    struct sbx_server *s;   /* NULL once stopped */
};

static struct sbx_server *check_sbx(lua_State *L, int idx)
{
    struct lsbx *u = luaL_checkudata(L, idx, SBX_TYPE);

    if (u->s == NULL)
        luaL_error(L, "the sandbox is stopped");
    return u->s;
}

/* ---- options ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int type;
} start_options[] = {
    {"port", LUA_TNUMBER},         {"expires", LUA_TSTRING},       {"latency_ms", LUA_TNUMBER},
    {"rate_limit", LUA_TBOOLEAN},  {"tls_cert", LUA_TSTRING},      {"tls_key", LUA_TSTRING},
    {"client_id", LUA_TSTRING},    {"client_secret", LUA_TSTRING}, {"redirect_uri", LUA_TSTRING},
    {"refresh_tokens", LUA_TBOOLEAN}, {"limits", LUA_TTABLE},   {"loopback_redirects", LUA_TBOOLEAN},
    {"strict", LUA_TBOOLEAN},      {"user_budget", LUA_TNUMBER},   {"program_budget", LUA_TNUMBER},
    {"replay", LUA_TSTRING},       {"replay_mode", LUA_TSTRING},   /* replay.c */
    {"admin_key", LUA_TSTRING},    /* admin.c */
};

/* Raises unless every key of the table at `idx` is a known option of the right type. */
static void check_options(lua_State *L, int idx, const char *fn)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        size_t i, n = sizeof start_options / sizeof start_options[0];
        const char *key;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fn);
        key = lua_tostring(L, -2);
        for (i = 0; i < n && strcmp(start_options[i].name, key) != 0; i++)
            ;
        if (i == n)
            luaL_error(L, "%s: unknown option '%s'", fn, key);
        if (lua_type(L, -1) != start_options[i].type)
            luaL_error(L, "%s: option '%s' must be a %s (got %s)", fn, key,
                       lua_typename(L, start_options[i].type), luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

static lua_Integer opt_integer(lua_State *L, int idx, const char *key, lua_Integer dflt,
                               lua_Integer lo, lua_Integer hi, const char *fn)
{
    lua_Integer v = dflt;

    lua_getfield(L, idx, key);
    if (!lua_isnil(L, -1)) {
        if (!ach_isinteger(L, -1) || lua_tonumber(L, -1) < (lua_Number)lo ||
            lua_tonumber(L, -1) > (lua_Number)hi)
            luaL_error(L, "%s: option '%s' must be an integer from %d to %d", fn, key, (int)lo, (int)hi);
        v = (lua_Integer)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int idx, const char *key)
{
    const char *v;

    lua_getfield(L, idx, key);
    v = lua_tostring(L, -1);   /* stays valid: the options table holds the string */
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
    int v;

    lua_getfield(L, idx, key);
    v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* limits = {heavy = {count, window}, default = {count, window}} */
static void opt_limits(lua_State *L, int idx, struct sbx_config *cfg)
{
    static const char *const names[] = {"heavy", "default"};
    struct sbx_limit *dst[2];
    int i, k;

    dst[0] = &cfg->heavy;
    dst[1] = &cfg->normal;
    lua_getfield(L, idx, "limits");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            (strcmp(lua_tostring(L, -2), "heavy") != 0 && strcmp(lua_tostring(L, -2), "default") != 0))
            luaL_error(L, "sandbox.start: option 'limits' takes the keys heavy and default");
        lua_pop(L, 1);
    }
    for (i = 0; i < 2; i++) {
        lua_getfield(L, -1, names[i]);
        if (!lua_isnil(L, -1)) {
            int v[2];
            if (!lua_istable(L, -1))
                luaL_error(L, "sandbox.start: limits.%s must be {count, window_seconds}", names[i]);
            for (k = 0; k < 2; k++) {
                lua_rawgeti(L, -1, k + 1);
                if (!ach_isinteger(L, -1) || lua_tonumber(L, -1) < 1 || lua_tonumber(L, -1) > 1e9)
                    luaL_error(L, "sandbox.start: limits.%s must be {count, window_seconds}, "
                                  "positive integers", names[i]);
                v[k] = (int)lua_tonumber(L, -1);
                lua_pop(L, 1);
            }
            dst[i]->count = v[0];
            dst[i]->window = v[1];
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* ---- start -------------------------------------------------------------------------------- */

static int l_start(lua_State *L)
{
    static const char fn[] = "sandbox.start";
    struct sbx_config cfg;
    struct lsbx *u;
    const char *expires, *replay;
    enum sbx_replay_mode replay_mode;
    char err[512];

    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    check_options(L, 1, fn);
    sbx_config_defaults(&cfg);
    cfg.port = (int)opt_integer(L, 1, "port", 0, 0, 65535, fn);
    cfg.latency_ms = (int)opt_integer(L, 1, "latency_ms", 0, 0, 600000, fn);
    expires = opt_string(L, 1, "expires");
    if (expires != NULL && strcmp(expires, "absolute") != 0 && strcmp(expires, "relative") != 0)
        luaL_error(L, "%s: option 'expires' must be \"absolute\" or \"relative\"", fn);
    cfg.expires_relative = expires != NULL && strcmp(expires, "relative") == 0;
    cfg.rate_limit = opt_bool(L, 1, "rate_limit", 1);
    cfg.refresh_tokens = opt_bool(L, 1, "refresh_tokens", 0);
    cfg.tls_cert_file = opt_string(L, 1, "tls_cert");
    cfg.tls_key_file = opt_string(L, 1, "tls_key");
    if ((cfg.tls_cert_file == NULL) != (cfg.tls_key_file == NULL))
        luaL_error(L, "%s: options 'tls_cert' and 'tls_key' go together", fn);
    cfg.client_id = opt_string(L, 1, "client_id");
    cfg.client_secret = opt_string(L, 1, "client_secret");
    cfg.redirect_uri = opt_string(L, 1, "redirect_uri");
    cfg.loopback_redirects = opt_bool(L, 1, "loopback_redirects", 0);
    cfg.strict = opt_bool(L, 1, "strict", 0);
    cfg.user_budget = (long long)opt_integer(L, 1, "user_budget", -1, 0, 1000000000, fn);
    cfg.program_budget = (long long)opt_integer(L, 1, "program_budget", -1, 0, 1000000000, fn);
    opt_limits(L, 1, &cfg);
    cfg.admin_key = opt_string(L, 1, "admin_key");
    if (cfg.admin_key != NULL && !sbx_admin_key_valid(cfg.admin_key, err, sizeof err))
        luaL_error(L, "%s: option 'admin_key': %s", fn, err);
    replay = opt_string(L, 1, "replay");   /* replay.c */
    if (!sbx_replay_mode_parse(opt_string(L, 1, "replay_mode"), &replay_mode) ||
        (replay == NULL && opt_string(L, 1, "replay_mode") != NULL))
        luaL_error(L, "%s: option 'replay_mode' must be \"answer\", \"strict\" or \"seed\", "
                      "with 'replay'", fn);

    /* the object exists (closed) before the server does, so __gc can always clean up */
    u = ach_newuserdata(L, sizeof *u);
    u->s = NULL;
    luaL_setmetatable(L, SBX_TYPE);
    lua_newtable(L);
    ach_setuservalue(L, -2);
    u->s = sbx_start(&cfg, err, sizeof err);
    if (u->s == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    if (replay != NULL && sbx_replay_attach(u->s, replay, replay_mode, err, sizeof err) != 0) {
        sbx_stop(u->s);
        u->s = NULL;
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    ach_getuservalue(L, -1);   /* stack: opts, ud, fields */
    lua_pushstring(L, sbx_url(u->s));
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, sbx_port(u->s));
    lua_setfield(L, -2, "port");
    lua_pushstring(L, sbx_client_id(u->s));
    lua_setfield(L, -2, "client_id");
    lua_pushstring(L, sbx_client_secret(u->s));
    lua_setfield(L, -2, "client_secret");
    lua_pushstring(L, sbx_redirect_uri(u->s));
    lua_setfield(L, -2, "redirect_uri");
    lua_pushstring(L, sbx_admin_key(u->s));
    lua_setfield(L, -2, "admin_key");
    lua_pop(L, 1);
    return 1;
}

/* ---- methods ------------------------------------------------------------------------------- */

static const char *field_string(lua_State *L, int idx, const char *key, const char *dflt)
{
    const char *v;

    lua_getfield(L, idx, key);
    if (lua_isnil(L, -1))
        v = dflt;
    else if (lua_type(L, -1) != LUA_TSTRING)
        v = (luaL_error(L, "'%s' must be a string", key), NULL);
    else
        v = lua_tostring(L, -1);
    lua_pop(L, 1);   /* the caller's table still holds the string */
    return v;
}

static lua_Integer field_integer(lua_State *L, int idx, const char *key, lua_Integer dflt)
{
    lua_Integer v = dflt;

    lua_getfield(L, idx, key);
    if (!lua_isnil(L, -1)) {
        if (!ach_isinteger(L, -1))
            luaL_error(L, "'%s' must be an integer", key);
        v = (lua_Integer)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* Raises unless every key of the table at `idx` is one of `names` (NULL-terminated). */
static void only_keys(lua_State *L, int idx, const char *fn, const char *const *names)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *const *n = names;
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        while (*n && strcmp(*n, key) != 0)
            n++;
        if (*n == NULL)
            luaL_error(L, "%s: unknown option '%s'", fn, key);
        lua_pop(L, 1);
    }
}

static int l_consent(lua_State *L)
{
    static const char *const keys[] = {"user", "scope", "redirect_uri", "code_challenge", NULL};
    struct sbx_server *s = check_sbx(L, 1);
    const char *user, *scope, *redirect, *challenge;
    char code[64], err[256];

    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    only_keys(L, 2, "consent", keys);
    user = field_string(L, 2, "user", "adele.olson");
    scope = field_string(L, 2, "scope", "read,write");
    redirect = field_string(L, 2, "redirect_uri", NULL);
    challenge = field_string(L, 2, "code_challenge", NULL);
    if (sbx_consent(s, user, scope, redirect, challenge, code, sizeof code, err, sizeof err) != 0)
        return luaL_error(L, "consent: %s", err);
    lua_pushstring(L, code);
    return 1;
}

static int l_fail(lua_State *L)
{
    static const char *const keys[] = {"count", "status", "retry_after", "drop", "path", "body",
                                       "content_type", NULL};
    struct sbx_server *s = check_sbx(L, 1);
    struct sbx_fault f;

    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    only_keys(L, 2, "fail", keys);
    memset(&f, 0, sizeof f);
    f.count = (int)field_integer(L, 2, "count", 1);
    f.status = (int)field_integer(L, 2, "status", 503);
    f.retry_after = (int)field_integer(L, 2, "retry_after", -1);
    lua_getfield(L, 2, "drop");
    f.drop = lua_toboolean(L, -1);
    lua_pop(L, 1);
    f.path = field_string(L, 2, "path", NULL);
    f.content_type = field_string(L, 2, "content_type", NULL);
    lua_getfield(L, 2, "body");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "'body' must be a string");
        f.body = lua_tolstring(L, -1, &f.body_len);   /* the caller's table holds it */
    }
    lua_pop(L, 1);
    if (f.content_type != NULL && strpbrk(f.content_type, "\r\n") != NULL)
        return luaL_error(L, "fail: 'content_type' must be one header line");
    if (f.count < 0)
        return luaL_error(L, "fail: 'count' must be 0 or more");
    if (f.status < 100 || f.status > 599)
        return luaL_error(L, "fail: 'status' must be an HTTP status (100 to 599)");
    if (sbx_fail(s, &f) != 0)
        return luaL_error(L, "fail: out of memory");
    return 0;
}

/* sb:budget() / sb:budget{user =, points =}: reads, or sets then reads, a points budget. */
static int l_budget(lua_State *L)
{
    static const char *const keys[] = {"user", "points", NULL};
    struct sbx_server *s = check_sbx(L, 1);
    const char *user;
    lua_Integer points;
    long long v;

    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    only_keys(L, 2, "budget", keys);
    user = field_string(L, 2, "user", NULL);
    points = field_integer(L, 2, "points", -1);
    lua_getfield(L, 2, "points");
    if (!lua_isnil(L, -1) && (points < 0 || points > 1000000000))
        return luaL_error(L, "budget: 'points' must be from 0 to 1000000000");
    lua_pop(L, 1);
    v = sbx_budget(s, user, (long long)points);
    if (v < 0)
        return luaL_error(L, "budget: unknown user '%s'", user);
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
}

static int l_advance(lua_State *L)
{
    struct sbx_server *s = check_sbx(L, 1);
    lua_Number secs = luaL_checknumber(L, 2);

    if (secs < 0 || secs > 1e10)
        return luaL_argerror(L, 2, "seconds must be 0 or more");
    sbx_advance(s, (long long)secs);
    lua_pushinteger(L, (lua_Integer)sbx_time(s));
    return 1;
}

static int l_latency(lua_State *L)
{
    struct sbx_server *s = check_sbx(L, 1);
    lua_Number ms = luaL_checknumber(L, 2);

    if (ms < 0 || ms > 600000)
        return luaL_argerror(L, 2, "milliseconds must be from 0 to 600000");
    sbx_set_latency(s, (int)ms);
    return 0;
}

static int l_time(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)sbx_time(check_sbx(L, 1)));
    return 1;
}

static int l_stats(lua_State *L)
{
    struct sbx_server *s = check_sbx(L, 1);
    struct sbx_stats st;
    size_t i;

    if (sbx_stats_get(s, &st) != 0)
        return luaL_error(L, "stats: out of memory");
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, (lua_Integer)st.token_requests);
    lua_setfield(L, -2, "token_requests");
    lua_pushinteger(L, (lua_Integer)st.connections);
    lua_setfield(L, -2, "connections");
    lua_pushinteger(L, (lua_Integer)st.faults);
    lua_setfield(L, -2, "faults");
    lua_pushinteger(L, (lua_Integer)st.rate_limited);
    lua_setfield(L, -2, "rate_limited");
    lua_createtable(L, 0, (int)st.nroutes);
    for (i = 0; i < st.nroutes; i++) {
        lua_pushinteger(L, (lua_Integer)st.by_route[i]);
        lua_setfield(L, -2, st.route_keys[i]);
    }
    lua_setfield(L, -2, "by_route");
    sbx_stats_free(&st);
    return 1;
}

static int l_requests(lua_State *L)
{
    struct sbx_server *s = check_sbx(L, 1);
    struct sbx_logged *v;
    size_t n, i, k;

    if (sbx_requests_get(s, &v, &n) != 0)
        return luaL_error(L, "requests: out of memory");
    /* a raise below would leak `v`: make room first, pushing strings can only fail on memory */
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_createtable(L, 0, 8);
        lua_pushinteger(L, (lua_Integer)v[i].seq);
        lua_setfield(L, -2, "seq");
        lua_pushstring(L, v[i].method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, v[i].path);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, v[i].query);
        lua_setfield(L, -2, "query");
        lua_pushlstring(L, v[i].body, v[i].body_len);
        lua_setfield(L, -2, "body");
        lua_pushinteger(L, (lua_Integer)v[i].body_size);
        lua_setfield(L, -2, "body_size");
        lua_pushboolean(L, v[i].body_truncated);
        lua_setfield(L, -2, "body_truncated");
        lua_createtable(L, 0, (int)v[i].nheaders);
        for (k = 0; k < v[i].nheaders; k++) {
            lua_pushstring(L, v[i].headers[k].value);
            lua_setfield(L, -2, v[i].headers[k].name);
        }
        lua_setfield(L, -2, "headers");
        lua_rawseti(L, -2, (int)i + 1);
    }
    sbx_requests_free(v, n);
    return 1;
}

static int l_revoke(lua_State *L)
{
    static const char *const keys[] = {"token", NULL};
    struct sbx_server *s = check_sbx(L, 1);
    const char *token = NULL;

    if (lua_type(L, 2) == LUA_TSTRING) {
        token = lua_tostring(L, 2);
    } else if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        only_keys(L, 2, "revoke", keys);
        token = field_string(L, 2, "token", NULL);
    }
    lua_pushinteger(L, sbx_revoke(s, token));
    return 1;
}

static int l_reset(lua_State *L)
{
    if (sbx_reset(check_sbx(L, 1)) != 0)
        return luaL_error(L, "reset: out of memory");
    return 0;
}

/* stop, __gc and __close: idempotent. */
static int l_stop(lua_State *L)
{
    struct lsbx *u = luaL_checkudata(L, 1, SBX_TYPE);

    if (u->s != NULL) {
        struct sbx_server *s = u->s;
        u->s = NULL;
        sbx_stop(s);
    }
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct lsbx *u = luaL_checkudata(L, 1, SBX_TYPE);

    if (u->s == NULL)
        lua_pushstring(L, "achievers.sandbox (stopped)");
    else
        lua_pushfstring(L, "achievers.sandbox (%s, client_id %s)", sbx_url(u->s), sbx_client_id(u->s));
    return 1;
}

/* __index: fields (url, port, client_id, client_secret, redirect_uri, admin_key) from the user
   value, then methods. */
static int l_index(lua_State *L)
{
    luaL_checkudata(L, 1, SBX_TYPE);
    ach_getuservalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg methods[] = {
    {"consent", l_consent}, {"fail", l_fail},         {"advance", l_advance},
    {"latency", l_latency}, {"time", l_time},         {"stats", l_stats},
    {"requests", l_requests}, {"revoke", l_revoke},   {"reset", l_reset},
    {"budget", l_budget},   {"stop", l_stop},         {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", l_stop}, {"__close", l_stop}, {"__tostring", l_tostring}, {NULL, NULL},
};

/* sandbox.evidence(): {{object =, field =, class =, source =}, ...}, the table of evidence.h. */
static int l_evidence(lua_State *L)
{
    size_t n, i;
    const struct sbx_evidence *t = sbx_evidence_table(&n);

    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, t[i].object);
        lua_setfield(L, -2, "object");
        lua_pushstring(L, t[i].field);
        lua_setfield(L, -2, "field");
        lua_pushstring(L, t[i].class);
        lua_setfield(L, -2, "class");
        lua_pushstring(L, t[i].source);
        lua_setfield(L, -2, "source");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static const luaL_Reg functions[] = {
    {"start", l_start}, {"evidence", l_evidence}, {NULL, NULL},
};

__attribute__((visibility("default"))) int luaopen_achievers_sandbox(lua_State *L)
{
    if (luaL_newmetatable(L, SBX_TYPE)) {
        luaL_setfuncs(L, metamethods, 0);
        luaL_newlib(L, methods);
        lua_pushcclosure(L, l_index, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, functions);
    return 1;
}
