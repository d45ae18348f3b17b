/*
 * fuzz_tables.c: caller tables with hostile metatables, at every entry point that takes a table.
 *
 * The input drives a small generator (Lua, below) that builds tables and values: plain tables,
 * and tables whose __index, __pairs, __len, __tostring, __newindex and __gc allocate, run a full
 * collection, raise (a string or a table), yield (outside a coroutine, or inside one across
 * the C call), empty the table they belong to, or answer with a value of any type (long fresh
 * strings, strings with NUL/CR/LF/quotes, NaN, huge numbers, functions, threads, tables).
 * Every read a metamethod serves takes the next byte, so the input steers them too. The
 * tables go to achievers.client, achievers.token, with_token, _set_token, request, _exchange
 * (and _next, which hands out the built request), async and poll, batch, get, post, each,
 * every resource helper, upload, authorize_url and handle_callback.
 *
 * No I/O: the clients that make calls have no client_secret and no token, so every call ends
 * with kind = "auth" before anything is sent; the built request is looked at through the Lua
 * driver's _next, which hands it out instead of sending it.
 *
 * Raises are expected (misuse raises, and so do the metamethods); the findings are sanitizer
 * reports, and a built request whose URL or header lines hold CR, LF or NUL, or whose URL
 * leaves the client's host.
 */
#include "fuzz_lua.h"

static const char setup[] =
	"local A = achievers\n"
	"local base = 'http://127.0.0.1:9/p'\n"
	"pcall(collectgarbage, 'incremental', 25, 200)\n"
	"local S, P, N = '', 1, 0\n"
	"local function byte() if P > N then return 0 end local b = S:byte(P); P = P + 1; return b end\n"
	"local function bytes(k) local s = S:sub(P, P + k - 1); P = P + k; return s end\n"
	"local names = { 'base_url', 'client_id', 'client_secret', 'scope', 'redirect_uri', 'token_auth',\n"
	"  'token', 'on_token', 'refresh_window', 'timeout', 'retries', 'rate_limit', 'limits',\n"
	"  'max_concurrency', 'user_agent', 'on_request', 'on_rate_limit', 'allow_http',\n"
	"  'max_response_size', 'method', 'path', 'query', 'form', 'json', 'body', 'content_type',\n"
	"  'headers', 'multipart', 'access_token', 'expires_at', 'clock_skew', 'token_type',\n"
	"  'grant_type', 'refresh_token', 'name', 'filename', 'data', 'file', 'state', 'code', 'error',\n"
	"  'error_description', 'q', 'page', 'nominees', 'criterionId', 'default', 'heavy', 'X-Trace' }\n"
	"local words = { 'users', 'recognitions', 'uploads', '/api/v5/users', base .. '/api/v5/users',\n"
	"  'GET', 'POST', 'OPTIONS', 'read', 'write', 'read,write', 'bearer', 'client_credentials',\n"
	"  'authorization_code', 'json', 'basic', 'post', 'file', 'a.png', 'image/png', 'fz-state',\n"
	"  'access_denied', '', 'x', 'a\\0b', 'a\\r\\nX: 1', 'q\"uote' }\n"
	"local counter = 0\n"
	"local victims = setmetatable({}, { __mode = 'k' })\n"
	"local function fresh(s) return (s .. '!'):sub(1, -2) end\n"
	"local function long()\n"
	"  counter = counter + 1\n"
	"  return string.rep(string.char(65 + byte() % 26), 41 + byte() % 40) .. counter\n"
	"end\n"
	"local gen, plain, hostile, good\n"
	"function gen(depth)\n"
	"  local k = byte() % 15\n"
	"  if k == 0 then return nil\n"
	"  elseif k == 1 then return names[byte() % #names + 1]\n"
	"  elseif k == 2 then return words[byte() % #words + 1]\n"
	"  elseif k == 3 then return long()\n"
	"  elseif k == 4 then return bytes(byte() % 16)\n"
	"  elseif k == 5 then return byte() - 128\n"
	"  elseif k == 6 then return (byte() - 128) / 7\n"
	"  elseif k == 7 then return byte() % 2 == 0\n"
	"  elseif k == 8 then local v = words[byte() % #words + 1]; return function() return v end\n"
	"  elseif k == 9 then return ({ math.huge, -math.huge, 0/0, 2^63, -2^63, 1e300, 2^53 + 1 })[byte() % 7 + 1]\n"
	"  elseif k == 10 then return tostring(byte())\n"
	"  elseif k == 11 then return coroutine.create(function() end)\n"
	"  elseif depth > 3 then return long()\n"
	"  elseif k == 12 then return plain(depth + 1)\n"
	"  elseif k == 13 then return hostile(depth + 1)\n"
	"  else return good(names[byte() % #names + 1], depth + 1) end\n"
	"end\n"
	/* a sensible value for a field, so that calls get past their first check */
	"function good(name, depth)\n"
	"  local b = byte() % 4\n"
	"  if name == 'path' then return ({ 'users', 'uploads', 'recognitions', base .. '/api/v5/users' })[b + 1]\n"
	"  elseif name == 'base_url' then return base\n"
	"  elseif name == 'method' then return ({ 'GET', 'POST', 'OPTIONS', 'PUT' })[b + 1]\n"
	"  elseif name == 'access_token' or name == 'refresh_token' then return b == 0 and long() or 'fz-token'\n"
	"  elseif name == 'expires_at' then return os.time() + 86400\n"
	"  elseif name == 'state' then return 'fz-state'\n"
	"  elseif name == 'name' then return 'file'\n"
	"  elseif name == 'data' or name == 'body' or name == 'filename' then return long()\n"
	"  elseif name == 'multipart' or name == 'headers' or name == 'query' or name == 'form'\n"
	"      or name == 'json' or name == 'scope' or name == 'limits' then\n"
	"    if depth > 3 then return {} end\n"
	"    if name == 'multipart' then return { hostile(depth + 1), plain(depth + 1) } end\n"
	"    return b % 2 == 0 and plain(depth + 1) or hostile(depth + 1)\n"
	"  elseif name == 'on_token' or name == 'on_request' or name == 'on_rate_limit' then\n"
	"    return function(x) tostring(x) end\n"
	"  end\n"
	"  return gen(depth + 1)\n"
	"end\n"
	"function plain(depth)\n"
	"  local t = {}\n"
	"  for _ = 1, byte() % 6 do\n"
	"    local kk, key = byte() % 4\n"
	"    if kk == 0 then key = #t + 1 elseif kk == 3 then key = gen(depth + 1)\n"
	"    else key = names[byte() % #names + 1] end\n"
	"    if key ~= nil and key == key then\n"
	"      local v\n"
	"      if type(key) == 'string' and byte() % 2 == 0 then v = good(key, depth + 1) else v = gen(depth + 1) end\n"
	"      t[key] = v\n"
	"    end\n"
	"  end\n"
	"  return t\n"
	"end\n"
	/* what a metamethod does before it answers */
	"local function act(t)\n"
	"  local mode = byte() % 9\n"
	"  if mode == 1 then collectgarbage()\n"
	"  elseif mode == 2 then error(byte() % 2 == 0 and 'fz raise' or { 'fz raise table' })\n"
	"  elseif mode == 3 then coroutine.yield('fz')\n"
	"  elseif mode == 4 and type(t) == 'table' then for k in next, t do rawset(t, k, nil) end collectgarbage()\n"
	"  elseif mode == 5 then local junk = {} for i = 1, 40 do junk[i] = string.rep('j', 50) .. i end\n"
	"  end\n"
	"  return mode\n"
	"end\n"
	"local function finalizer()\n"
	"  for v in next, victims do\n"
	"    if byte() % 2 == 0 then for k in next, v do rawset(v, k, nil) end end\n"
	"  end\n"
	"end\n"
	"function hostile(depth)\n"
	"  local own, fields, m = plain(depth), plain(depth), byte()\n"
	"  local mt = {}\n"
	"  victims[own] = true\n"
	"  if m % 2 == 1 then mt.__index = fields\n"
	"  else mt.__index = function(t, k)\n"
	"    if act(t) == 6 then return gen(depth + 1) end\n"
	"    local v = fields[k]\n"
	"    if v == nil and type(k) == 'string' and byte() % 2 == 0 then v = good(k, depth + 1) end\n"
	"    if type(v) == 'string' then return fresh(v) end\n"
	"    return v\n"
	"  end end\n"
	"  m = m // 2\n"
	"  if m % 2 == 1 then mt.__pairs = function(t) act(t) return next, fields, nil end end\n"
	"  if (m // 2) % 2 == 1 then mt.__len = function(t) act(t) return gen(depth + 1) end end\n"
	"  if (m // 4) % 2 == 1 then mt.__tostring = function(t) act(t) return gen(depth + 1) end end\n"
	"  if (m // 8) % 2 == 1 then mt.__newindex = function(t) act(t) end end\n"
	"  if (m // 16) % 2 == 1 then mt.__gc = finalizer end\n"
	"  if (m // 32) % 2 == 1 then mt.__metatable = 'locked' end\n"
	"  return setmetatable(own, mt)\n"
	"end\n"
	/* a request as the Lua driver hands it out: the invariants of the built request */
	"local function check_built(ex, base_url)\n"
	"  local host = base_url:match('^%a+://[^/?#]+')\n"
	"  local action, req = ex:_next()\n"
	"  if action ~= 'send' then return end\n"
	"  if req.url:find('[%z\\r\\n ]') then fz_finding('URL with CR, LF, NUL or space: ' .. req.url) end\n"
	"  if req.url:sub(1, #host + 1):lower() ~= (host .. '/'):lower() then fz_finding('request left its host: ' .. req.url) end\n"
	"  for k, v in pairs(req.headers) do\n"
	"    if (k .. v):find('[%z\\r\\n]') then fz_finding('header with CR, LF or NUL: ' .. k) end\n"
	"  end\n"
	"  if req.body then assert(#req.body >= 0) end\n"
	"end\n"
	/* clients that never do I/O: no client_secret, no token */
	"local C0 = A.client { base_url = base, client_id = 'fz-id', retries = 0, rate_limit = false }\n"
	"local function with_token_client(t)\n"
	"  local c = A.client { base_url = base, retries = 0, rate_limit = false }\n"
	"  c:_set_token(t)\n"
	"  return c\n"
	"end\n"
	"local T = function() local b = byte() % 3; if b == 0 then return plain(1) end return hostile(1) end\n"
	"local entries = {\n"
	"  function() local c = A.client(T()); tostring(c); check_built(c:_exchange { path = 'users' }, c.base_url) end,\n"
	"  function() local tok = A.token(T()); tostring(tok); tok:to_table() end,\n"
	"  function() local c = C0:with_token(T()); tostring(c) end,\n"
	"  function() check_built(with_token_client(T()):_exchange { path = 'users' }, base) end,\n"
	"  function() check_built(with_token_client { access_token = 'fz', expires_at = os.time() + 86400 }:_exchange(T()), base) end,\n"
	"  function() C0:request(T()) end,\n"
	"  function() check_built(C0:_exchange(T()), base) end,\n"
	"  function() local r = C0:async(T()); C0:poll(0); r:result() end,\n"
	"  function() local l = {}; for i = 1, byte() % 4 do l[i] = T() end; C0:batch(byte() % 2 == 0 and l or hostile(1)) end,\n"
	"  function() C0:get(good('path', 1), T()) end,\n"
	"  function() C0:post(good('path', 1), T()) end,\n"
	"  function() C0:users(T()) end,\n"
	"  function() C0:user(gen(1), T()) end,\n"
	"  function() C0:recognition_criteria(T()) end,\n"
	"  function() C0:send_recognition(T()) end,\n"
	"  function() C0:create_achievement(T()) end,\n"
	"  function() C0:upload(T()) end,\n"
	"  function() local u, s = C0:authorize_url(T()); assert(type(u) == 'string' and type(s) == 'string') end,\n"
	"  function() C0:handle_callback(T(), 'fz-state') end,\n"
	"  function() local it = C0:each(good('path', 1), T()); it() end,\n"
	"}\n"
	"function fuzz_run(s)\n"
	"  S, P, N = s, 1, #s\n"
	"  while P <= N do\n"
	"    local e = entries[byte() % #entries + 1]\n"
	"    if byte() % 4 == 0 then\n"
	"      local co = coroutine.create(function() return pcall(e) end)\n"
	"      local ok, _, err = coroutine.resume(co)\n"
	"      tostring(err)\n"
	"    else\n"
	"      local ok, err = pcall(e)\n"
	"      if not ok and type(err) == 'table' then for _, v in pairs(err) do tostring(v) end end\n"
	"    end\n"
	"  end\n"
	"  C0:poll(0)\n"
	"end\n";

static int finding(lua_State *L)
{
	fprintf(stderr, "finding: %s\n", luaL_checkstring(L, 1));
	abort();
	return 0;
}

static int run(lua_State *L)
{
	const uint8_t **in = lua_touserdata(L, 1);
	lua_getglobal(L, "fuzz_run");
	lua_pushlstring(L, (const char *)in[0], (size_t)(in[1] - in[0]));
	lua_call(L, 1, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int registered;
	lua_State *L = fz_state(NULL);
	const uint8_t *in[2] = {data, data + size};
	if (!registered) {
		lua_register(L, "fz_finding", finding);
		if (luaL_dostring(L, setup) != LUA_OK) {
			fprintf(stderr, "fuzz setup failed: %s\n", lua_tostring(L, -1));
			abort();
		}
		lua_settop(L, 0);
		registered = 1;
	}
	/* a raise out of fuzz_run is the generator's own (out of memory): not a finding */
	fz_pcall(L, run, (void *)in, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
