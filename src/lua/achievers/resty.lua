--- achievers.resty: the client for OpenResty (nginx with the Lua module).
--
-- Same calls as an achievers client (request, get, post, token, each and the resource
-- helpers), but every byte goes through nginx's non-blocking cosockets, so a call never
-- blocks the worker. The C engine still decides everything (tokens, retries, pacing, errors):
-- it hands this driver the requests to send and takes the answers back. The bytes themselves
-- (caps, deadline, proxy, connection pools) are achievers.resty.http's.
--
-- The system token lives in a lua_shared_dict, shared by all workers; one worker at a time
-- fetches a new one (a lock in the dictionary) while the others keep using the still-valid
-- token or wait for the new one. The per-token rate limits are counted in the same
-- dictionary, across all workers. A user's token is never put there (every worker would act
-- as that user): the `token` option is refused.
--
--   lua_shared_dict achievers 1m;
--   local client = require("achievers.resty").client {
--     base_url = ..., client_id = ..., client_secret = ..., shared_dict = "achievers" }
--   local users, err = client:get("users")
--
-- People who sign in act as themselves (the authorization code flow, with PKCE by default):
-- `client:authorize_url{...}` gives url, state, verifier (keep state and verifier in the
-- browser's server-side session), `client:handle_callback(query, state, verifier)` gives the
-- person's token (keep it in that session too), and `client:with_token(tok)` gives, per
-- request, a user client: cheap (no I/O, no lock), on the same cosockets, whose token is never
-- written anywhere. Only its rate budget is shared by the workers, in the dictionary under a
-- hash of the token (budget_key below), the key a Redis store would use too.
--
-- A fleet (many nginx, many hosts, C processes too): `store = {redis = "redis://host:6379/0",
-- fleet_size = N}` shares the token and the budgets through Redis (achievers.resty.store: the
-- C store's keys and scripts, over cosockets); the dictionary, when given, becomes this host's
-- cache and its fallback while Redis is down (pacing there at 1/fleet_size of each budget).
--
-- For https, nginx verifies the server with lua_ssl_trusted_certificate (and
-- lua_ssl_verify_depth); `insecure = true` turns verification off.
--
-- `proxy = "http://host:port"`: https:// programs are reached through a CONNECT tunnel (TLS
-- end to end); an http:// program only through a proxy on loopback (or with allow_http =
-- true), since everything secret would cross the hop to the proxy in the clear, as the C
-- client decides. `proxy = false` (or "") is no proxy. Environment variables (https_proxy, ...) are
-- not read: nginx workers do not see them unless nginx.conf passes them with `env`, and a
-- setting that decides where tokens go belongs in the code.
local achievers = require("achievers")
local http = require("achievers.resty.http")
local rstore = require("achievers.resty.store")

local ngx = ngx
local M = {}

local Client = {}
Client.__index = Client

local LOCK_TTL = 30     -- seconds a fetching worker holds the lock at most
local WAIT_STEP = 0.02  -- seconds between looks at the dictionary while another worker fetches

-- A JSON codec for the dictionary: the C module's decoder and OpenResty's cjson.
local cjson = require("cjson")

local function send(self, req)
  return http.request(self.conn, req)
end

-- A token from the dictionary reaches the Authorization header: only visible ASCII (RFC
-- 6750's b64token and then some), never CR, LF, NUL or another control byte.
local function header_safe(v)
  return type(v) == "string" and v ~= "" and not v:find("[^\33-\126]")
end

-- The dictionary's entry decoded, or nil when it is not a usable system token.
local function decode_entry(raw)
  local t = achievers.json_decode(raw)
  if type(t) ~= "table" or not header_safe(t.access_token) or type(t.expires_at) ~= "number" then return nil end
  if t.refresh_token ~= nil and not header_safe(t.refresh_token) then return nil end
  if t.grant_type ~= nil and t.grant_type ~= "client_credentials" then return nil end
  if t.token_type ~= nil and (type(t.token_type) ~= "string" or t.token_type:lower() ~= "bearer") then return nil end
  if t.scope ~= nil and type(t.scope) ~= "string" then return nil end
  if t.clock_skew ~= nil and type(t.clock_skew) ~= "number" then return nil end
  if t.hold_until ~= nil and type(t.hold_until) ~= "number" then return nil end
  return t
end

-- Seconds the token t has left on the server's clock.
local function remaining(t)
  return t.expires_at - (ngx.time() + (t.clock_skew or 0))
end

-- Without a shared_dict (a Redis store alone), this worker's own stand-in for one: the
-- local cache of the token, the lock and the pacing while Redis is down.
local function local_dict()
  local data, expiry, d = {}, {}, {}
  local function live(k)
    local e = expiry[k]
    if e and e <= ngx.now() then data[k], expiry[k] = nil, nil end
    return data[k]
  end
  function d:get(k) return live(k) end
  function d:set(k, v, ttl)
    data[k], expiry[k] = v, (ttl and ttl > 0) and ngx.now() + ttl or nil
    return true
  end
  function d:add(k, v, ttl)
    if live(k) ~= nil then return false, "exists" end
    return self:set(k, v, ttl)
  end
  function d:delete(k) data[k], expiry[k] = nil, nil end
  function d:incr(k, by, init, ttl)
    local v = live(k)
    if v == nil then
      self:set(k, init + by, ttl)
      return init + by
    end
    data[k] = v + by
    return data[k]
  end
  function d:ttl(k)
    if live(k) == nil then return nil, "not found" end
    return expiry[k] and expiry[k] - ngx.now() or 0
  end
  return d
end

local function judge(self, t)
  local rem = remaining(t)
  return t, rem > self.refresh_window or (t.hold_until ~= nil and ngx.now() < t.hold_until and rem > 0), rem > 0
end

-- The token in the shared dictionary; whether it may be used without asking for a new one;
-- and whether it has not expired yet. An entry that is not a usable token is deleted.
--
-- The engine's rule: a token is fresh while it is more than refresh_window from its expiry;
-- one that arrived already inside the window (a short-lived token) is used for a while
-- (hold_until, set when it was stored) rather than asked for again on every call.
--
-- With a Redis store the dictionary is this host's cache: a fresh token there is used as it
-- is; otherwise Redis is asked (its token, not `skip`, the one just rejected, is cached here),
-- and while Redis is down the dictionary is all there is.
function Client:_shared_token(skip)
  local raw = self.dict:get(self.key)
  local t
  if raw ~= nil then
    t = decode_entry(raw)
    if not t then
      if self.dict:get(self.key) == raw then self.dict:delete(self.key) end
    end
  end
  if not self.store then
    if not t then return nil end
    return judge(self, t)
  end
  if t then
    local _, fresh = judge(self, t)
    if fresh and t.access_token ~= skip then return judge(self, t) end
  end
  local text = self.store:token_get(self.skey)
  if text == nil then -- Redis cannot say: what this host has
    if not t then return nil end
    return judge(self, t)
  end
  self.seen = text or ""
  local rt = text and rstore.token_parse(text)
  if rt and header_safe(rt.access_token) and rt.token_type:lower() == "bearer" then
    local rem = remaining(rt)
    if rt.access_token ~= skip and rem > 1 then self.dict:set(self.key, cjson.encode(rt), rem) end
    return judge(self, rt)
  end
  return nil
end

-- Stores the engine's new token for every worker (and, with a Redis store, for every host
-- and process: compare-and-set against the text last seen there).
function Client:_store(tok)
  local saved = tok:to_table()
  if not header_safe(saved.access_token) then return end
  local rem = remaining(saved)
  if rem <= self.refresh_window then
    saved.hold_until = ngx.now() + math.min(300, math.max(rem / 2, 1)) -- as src/engine.c holds back
  end
  self.dict:set(self.key, cjson.encode(saved), math.max(1, rem))
  self.installed = saved.access_token
  if self.store and rem > 1 then
    local text = rstore.token_text(saved, saved.hold_until)
    if text then self.store:token_put(self.skey, text, self.seen or "", rem) end
  end
end

-- The token request lock: in Redis when there is one and it answers, else in the dictionary.
-- Returns whether it is ours, and where (for _unlock).
function Client:_lock()
  if self.store then
    local got = self.store:lock(self.skey, LOCK_TTL)
    if got ~= nil then return got, "redis" end
  end
  return (self.dict:add(self.lock, true, LOCK_TTL)), "dict"
end

function Client:_unlock(where)
  if where == "redis" then self.store:unlock(self.skey) else self.dict:delete(self.lock) end
end

-- Hands the engine the shared token t, unless it holds it already.
function Client:_install(t)
  if t.access_token ~= self.installed then
    local copy = {}
    for k, v in pairs(t) do if k ~= "hold_until" then copy[k] = v end end
    self.c:_set_token(copy)
    self.installed = t.access_token
  end
end

-- Runs an exchange of the C engine to its end over cosockets. A token request the engine
-- makes in the middle of a call (its token was rejected with a 401, or expired) goes through
-- the dictionary, unless the caller holds the lock already or the request is not the shared
-- system token's (`holding_lock` true: exchange_code, user clients).
function Client:_run(ex, holding_lock)
  while true do
    local action, arg = ex:_next()
    if action == "send" then
      if arg.token_request and not holding_lock then
        self:_renew(ex, arg)
      else
        ex:_feed(send(self, arg))
      end
    elseif action == "wait" then
      ngx.sleep(arg)
    else
      return ex:result()
    end
  end
end

-- The answer to the engine's token request when another worker has the token already: it is
-- handed to the engine as the server's answer would be (nothing is sent; on_request and
-- on_token see it as an answer).
local function answer_with(t)
  return { status = 200, headers = "Content-Type: application/json\r\n", body = cjson.encode {
    access_token = t.access_token, token_type = "bearer", scope = t.scope,
    expires_in = t.expires_at, -- an absolute UNIX time, as the engine reads one
  } }
end

-- The engine asks for a new token in the middle of a call: the one it held was rejected or
-- has expired. That token leaves the dictionary; one worker asks the server, under the lock,
-- and stores the answer; the others take what it stored.
function Client:_renew(ex, req)
  local rejected = self.installed
  ngx.update_time()
  -- not past the request's own timeout: the engine gives up on a request never answered
  local deadline = ngx.now() + math.min(LOCK_TTL, req.timeout or LOCK_TTL)
  local where
  while true do
    local t, _, alive = self:_shared_token(rejected)
    if t and alive and t.access_token ~= rejected then
      self.installed = t.access_token
      return ex:_feed(answer_with(t))
    end
    local got
    got, where = self:_lock()
    if got then break end
    if ngx.now() > deadline then
      return ex:_feed { error = "timeout", reached = false,
        message = "timed out waiting for another worker's token request" }
    end
    ngx.sleep(WAIT_STEP)
  end
  local t, _, alive = self:_shared_token(rejected)
  if t and alive and t.access_token ~= rejected then
    self:_unlock(where)
    self.installed = t.access_token
    return ex:_feed(answer_with(t))
  end
  if t and t.access_token == rejected then self.dict:delete(self.key) end
  -- the lock goes whatever happens, a raise included
  local ok, err = pcall(function()
    ex:_feed(send(self, req))
    local tok = self.c.current_token
    if tok and tok.access_token ~= rejected then self:_store(tok) end
  end)
  self:_unlock(where)
  if not ok then error(err, 0) end
end

-- Makes sure the engine holds a usable token, fetching one in at most one worker at a time.
function Client:_ensure_token()
  local t, fresh, alive = self:_shared_token()
  if t and fresh then
    self:_install(t)
    return true
  end
  ngx.update_time()
  local deadline = ngx.now() + LOCK_TTL
  while ngx.now() < deadline do
    local got, where = self:_lock()
    if got then
      -- look again: another worker may have stored a token between our look and the lock
      t, fresh = self:_shared_token()
      if t and fresh then
        self:_unlock(where)
        self:_install(t)
        return true
      end
      -- the lock goes whatever happens, a raise included
      local ran, tok, err = pcall(function()
        local tk, e = self:_run(self.c:_exchange("token", t ~= nil), true)
        if tk then self:_store(tk) end
        return tk, e
      end)
      self:_unlock(where)
      if not ran then error(tok, 0) end
      if not tok then return nil, err end
      return true
    end
    -- another worker is fetching: a still-valid token will do meanwhile
    if t and alive and remaining(t) > 5 then
      self:_install(t)
      return true
    end
    ngx.sleep(WAIT_STEP)
    t, fresh, alive = self:_shared_token()
    if t and fresh then
      self:_install(t)
      return true
    end
  end
  return nil, "timed out waiting for another worker's token request"
end

-- A failed token request's error goes to the caller as it is (timeout, server, auth...);
-- only our own failures (the wait for another worker) are made into one here.
local function token_error(err)
  if type(err) == "table" then return err end
  return achievers._error("timeout", tostring(err))
end

-- The budget a call counts against: the C client's buckets (src/engine.c): "default", and
-- the heavy reads, each its own ("recognitions", "newsfeed-events"), as the server counts them.
local function bucket_of(class, path)
  if class ~= "heavy" then return "default" end
  return type(path) == "string" and path:find("newsfeed-events", 1, true) and "newsfeed-events" or "recognitions"
end

-- The per-token rate limits, counted across all workers in the shared dictionary: a window
-- per bucket, a little longer than the server's (as the C governor does), so that each of the
-- server's windows falls inside one of ours. A worker over the limit sleeps to the window's end.
-- With a Redis store, the budget is Redis's, shared by every host and C process (the take
-- script); while Redis is down, this host paces at 1/fleet_size of it in the dictionary.
function Client:_pace(class, bucket, access)
  local limit = self.limits[class]
  local key = self.budget .. bucket
  local window = limit[2] + math.min(1, limit[2] * 0.05)
  local count = limit[1]
  local rkey = self.store and access and self.store:budget_key(access, bucket)
  for _ = 1, 10000 do
    local wait
    if rkey then
      wait = self.store:take(rkey, limit)
      if wait ~= nil then self.store:repay(rkey, limit) end
      if wait == 0 then
        -- counted here too: should Redis go down, this host's own recent calls still count
        self.dict:incr(key, 1, 0, window)
        return
      end
      if wait == nil then
        count = math.max(1, math.floor(limit[1] / self.store.fleet_size))
      end
    end
    if not wait then
      local n = self.dict:incr(key, 1, 0, window)
      if not n or n <= count then
        if rkey then self.store:spent_locally(rkey, window) end
        return
      end
      wait = math.max(self.dict:ttl(key) or 0, 0.01)
    end
    if self.on_rate_limit then pcall(self.on_rate_limit, { wait = wait, class = class }) end
    ngx.sleep(wait)
  end
end

-- A Redis store that refuses us (wrong password, not Redis): the call's error.
local function store_error(self)
  if not self.store then return nil end
  local ok, why = self.store:check()
  if ok then return nil end
  local e = achievers._error("invalid", why)
  e.code = "store"
  return e
end

--- client:request{method=, path=, query=, form=, json=, headers=, timeout=}
function Client:request(spec)
  local serr = store_error(self)
  if serr then return nil, serr end
  local ok, err = self:_ensure_token()
  if not ok then return nil, token_error(err) end
  local ex = self.c:_exchange(spec)
  if self.rate_limit then
    local class = ex:_rate_class()
    self:_pace(class, bucket_of(class, type(spec) == "table" and spec.path), self.installed)
  end
  return self:_run(ex)
end

function Client:get(path, query) return self:request { path = path, query = query } end

function Client:post(path, fields) return self:request { method = "POST", path = path, form = fields or {} } end

--- client:token(): the token the workers share.
function Client:token()
  local serr = store_error(self)
  if serr then return nil, serr end
  local ok, err = self:_ensure_token()
  if not ok then return nil, token_error(err) end
  return self:_run(self.c:_exchange("token"))
end

--- client:each(path, query): every item of every page (false, err once on an error). A next
-- page link the server gives is its data, not the caller's: one the client refuses (another
-- host, where the token must not go) ends the walk with false, err instead of a raise.
function Client:each(path, query)
  local items, i, done = nil, 1, false
  local nextpath, nextquery = path, query
  return function()
    while not done do
      if items and items[i] ~= nil then
        i = i + 1
        return items[i - 1]
      end
      if not nextpath then done = true return nil end
      local page, err
      if items == nil then
        page, err = self:request { path = nextpath, query = nextquery }
      else
        local ok, a, b = pcall(self.request, self, { path = nextpath })
        if ok then
          page, err = a, b
        else
          err = achievers._error("invalid", "paging.next: " .. tostring(a):gsub("^request: ", ""))
        end
      end
      if not page then done = true return false, err end
      items, i = page.items or {}, 1
      if #items == 0 then done = true return nil end
      local paging = page.paging or {}
      nextpath, nextquery = paging.next, nil
    end
  end
end

-- ---- the authorization code flow ------------------------------------------------------------

--- client:authorize_url{scope=, state=, redirect_uri=} -> url, state, verifier: as the C
-- client's (no I/O). With pkce (the default) the URL carries an S256 code_challenge; keep
-- state and verifier with the browser's session for the callback. verifier is nil with
-- pkce = false.
function Client:authorize_url(opts)
  return self.c:authorize_url(opts)
end

local function unescape(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end))
end

-- A query string (or a whole URL) as a table; the first of repeated keys wins.
local function query_table(q)
  q = q:match("%?(.*)$") or q
  q = q:match("^[^#]*")
  local t = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k)
    if t[k] == nil then t[k] = unescape(v) end
  end
  return t
end

local function flow_error(kind, message, code)
  local e = achievers._error(kind, message)
  e.code = code
  return e
end

--- client:handle_callback(query, expected_state[, verifier]) -> token | nil, err: checks the
-- redirect's state (err.kind "state_mismatch"), its error ("access_denied", or "auth" with the
-- server's code), and exchanges its code, sending the PKCE verifier. `query` is the query
-- string (ngx.var.args), a URL, or a table (ngx.req.get_uri_args()).
function Client:handle_callback(query, expected_state, verifier)
  if type(expected_state) ~= "string" or expected_state == "" then
    error("handle_callback: expected_state must be a non-empty string", 2)
  end
  if type(query) == "string" then
    query = query_table(query)
  elseif type(query) ~= "table" then
    error("handle_callback: query must be a string or a table", 2)
  end
  local got = query.state
  -- compared through their hashes: how long the comparison takes tells nothing of the state
  if type(got) ~= "string" or achievers._sha256_hex(got) ~= achievers._sha256_hex(expected_state) then
    return nil, flow_error("state_mismatch", "the callback's state does not match the one this flow started with")
  end
  if query.error ~= nil then
    local e = type(query.error) == "string" and query.error or nil
    local kind = e == "access_denied" and "access_denied" or "auth"
    local desc = type(query.error_description) == "string" and query.error_description or
      (kind == "access_denied" and "the user denied access" or "the authorization server refused")
    return nil, flow_error(kind, desc, e)
  end
  local code = query.code
  if type(code) ~= "string" or code == "" then return nil, flow_error("invalid", "the callback has no code") end
  if code:find("%z") then return nil, flow_error("invalid", "the callback's code is not valid") end
  return self:exchange_code(code, verifier)
end

--- client:exchange_code(code[, verifier]) -> the person's token: not kept by this client, nor
-- written to the dictionary; the caller keeps it (in the browser's server-side session).
function Client:exchange_code(code, verifier)
  return self:_run(self.c:_exchange("code", code, verifier), true)
end

-- ---- user clients ---------------------------------------------------------------------------

-- The key of a rate budget: per client, per access token (by the first 16 hex digits of its
-- SHA-256, never the token itself), per bucket ("default", "recognitions", "newsfeed-events").
-- The Redis store's keys: "achievers:{<client_id>}:rate:<hash>:<bucket>" ({client_id} is a
-- Cluster hash tag); the dictionary uses the same names.
function M.budget_key(client_id, access_token, bucket)
  return "achievers:{" .. tostring(client_id) .. "}:rate:" ..
    achievers._sha256_hex(access_token):sub(1, 16) .. ":" .. (bucket or "")
end

local User = {}
User.__index = User

--- client:with_token(tok[, {on_token = fn}]) -> a client acting as the person whose token tok
-- is (a token object or a saved table). Made per request: no I/O, no lock, same cosockets;
-- the token stays in this object (and in what the caller keeps). When the engine gets this
-- person a new token (a refresh), on_token(new_token) is called so the caller can keep it.
function Client:with_token(tok, opts)
  if type(tok) ~= "table" and type(tok) ~= "userdata" then
    error("with_token: expected a token or a saved token table", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("with_token: options must be a table", 2) end
  if opts and opts.on_token ~= nil and type(opts.on_token) ~= "function" then
    error("with_token: on_token must be a function", 2)
  end
  local c = self.c:with_token(tok)
  local access = c.current_token.access_token
  return setmetatable({
    c = c, conn = self.conn, dict = self.dict, rate_limit = self.rate_limit, limits = self.limits,
    on_rate_limit = self.on_rate_limit, client_id = self.client_id, store = self.store,
    budget = M.budget_key(self.client_id, access, ""), access = access,
    on_token = opts and opts.on_token,
  }, User)
end

User._run = Client._run
User._pace = Client._pace

-- After a call: a refreshed token moves the budget to its own key and goes to on_token.
function User:_check_token()
  local now = self.c.current_token
  if now and now.access_token ~= self.access then
    self.access = now.access_token
    self.budget = M.budget_key(self.client_id, self.access, "")
    if self.on_token then self.on_token(now) end
  end
end

--- user:request{...}: as client:request, acting as the person (never the dictionary's token).
function User:request(spec)
  local serr = store_error(self)
  if serr then return nil, serr end
  local ex = self.c:_exchange(spec)
  if self.rate_limit then
    local class = ex:_rate_class()
    self:_pace(class, bucket_of(class, type(spec) == "table" and spec.path), self.access)
  end
  local data, err = self:_run(ex, true)
  self:_check_token()
  return data, err
end

--- user:token(): the person's token as this client holds it now (a refresh may have replaced it).
function User:token()
  return self.c.current_token
end

function User:__tostring()
  return "achievers.resty.user_client(" .. tostring(self.c):match("%((.*)%)$") .. ")"
end

-- The resource helpers, from the module's endpoint table.
local function escape_id(id)
  if type(id) == "number" and id == math.floor(id) then id = string.format("%d", id) end
  if type(id) ~= "string" or id == "" or id:find("[%c]") then
    error("bad id: " .. tostring(id), 3)
  end
  return (id:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

for _, e in ipairs(achievers.endpoints) do
  local path = e.path:gsub("^/api/v5/", "")
  if e.args == "query" then
    Client[e.name] = function(self, query) return self:request { method = e.method, path = path, query = query } end
  elseif e.args == "id" then
    Client[e.name] = function(self, id, query)
      local escaped = escape_id(id) -- a function's result is taken as it is ("%40" stays)
      return self:request { method = e.method, path = (path:gsub("{id}", function() return escaped end)), query = query }
    end
  elseif e.args == "form" then
    Client[e.name] = function(self, fields)
      assert(type(fields) == "table", e.name .. ": expected a table of fields")
      return self:request { method = e.method, path = path, form = fields }
    end
  else -- upload
    Client[e.name] = function(self, t)
      local data, filename = t.data, t.filename
      if t.file then
        local f, err = io.open(t.file, "rb")
        if not f then return nil, achievers._error("invalid", "cannot read '" .. t.file .. "': " .. tostring(err)) end
        data = f:read("*a")
        f:close()
        filename = filename or t.file:match("[^/]+$")
      end
      return self:request { method = "POST", path = path, multipart = {
        { name = "file", data = data, filename = filename or "upload.bin",
          content_type = t.content_type or "application/octet-stream" } } }
    end
  end
end

-- A user client has the same request methods and resource helpers.
for _, name in ipairs { "get", "post", "each" } do User[name] = Client[name] end
for _, e in ipairs(achievers.endpoints) do User[e.name] = Client[e.name] end

--- require("achievers.resty").random_id([nbytes = 32]): nbytes from the OS random source,
-- base64url (session ids, form tokens): what an app needs and nginx's Lua does not give.
M.random_id = achievers._random_id

function Client:__tostring()
  return "achievers.resty.client(" .. tostring(self.c):match("%((.*)%)$") ..
    (self.dict_name and ", shared_dict=" .. self.dict_name or "") ..
    (self.store and ", store=redis://" .. self.store.where .. "/" .. self.store.db or "") .. ")"
end

--- require("achievers.resty").client(opts): the client options plus shared_dict (the name of
-- a lua_shared_dict). Not taken: `token` (the dictionary holds one system token for every
-- worker) and `ca_file` (nginx's lua_ssl_trusted_certificate is the trust store).
function M.client(opts)
  assert(type(opts) == "table", "achievers.resty.client: expected an options table")
  local copy, dict_name = {}, opts.shared_dict
  for k, v in pairs(opts) do
    if k ~= "shared_dict" and k ~= "proxy" and k ~= "store" and k ~= "on_store" then copy[k] = v end
  end
  local with_store = opts.store ~= nil and opts.store ~= "memory"
  if type(dict_name) ~= "string" and not (with_store and dict_name == nil) then
    error("achievers.resty.client: option 'shared_dict' must name a lua_shared_dict" ..
      " (or give a Redis store)", 2)
  end
  if opts.on_store ~= nil and type(opts.on_store) ~= "function" then
    error("achievers.resty.client: option 'on_store' must be a function", 2)
  end
  if opts.token ~= nil then
    error("achievers.resty.client: option 'token' is not supported: the shared dictionary holds one " ..
      "system token for every worker, so a user's token there would let every caller act as that user", 2)
  end
  if opts.ca_file ~= nil then
    error("achievers.resty.client: option 'ca_file' is not supported: nginx verifies servers with " ..
      "lua_ssl_trusted_certificate (in nginx.conf)", 2)
  end
  local dict
  if dict_name then
    dict = ngx.shared[dict_name]
    if not dict then error("achievers.resty.client: no lua_shared_dict named '" .. dict_name .. "'", 2) end
  else
    dict = local_dict()
  end
  local store = with_store and rstore.new(opts.store, copy.client_id, { on_store = opts.on_store }) or nil
  local window = copy.refresh_window or 7200
  copy.refresh_window = 0 -- the engine refreshes only expired tokens; the dictionary does the rest
  local on_rate_limit = copy.on_rate_limit
  local c = achievers.client(copy)
  local proxy
  if opts.proxy ~= nil and opts.proxy ~= false and opts.proxy ~= "" then -- false, "": none
    local why
    proxy, why = http.parse_proxy(opts.proxy)
    if not proxy then error("achievers.resty.client: option 'proxy' " .. why, 2) end
    if c.base_url:match("^http://") and not proxy.loopback and not opts.allow_http then
      error("achievers.resty.client: option 'proxy' is not on loopback and base_url uses http://: " ..
        "the proxy would read the client secret and tokens in the clear; use https:// (tunnelled " ..
        "with CONNECT), a proxy on loopback, or set allow_http = true", 2)
    end
  end
  local self = setmetatable({
    c = c,
    dict = dict,
    dict_name = dict_name,
    key = "achievers:token:" .. tostring(copy.client_id) .. ":" .. c.base_url .. ":" .. c.scope,
    refresh_window = window,
    conn = {
      connect_timeout = copy.connect_timeout or 10,
      insecure = copy.insecure or false,
      max_response_size = copy.max_response_size or 8 * 1024 * 1024, -- as the C client
      proxy = proxy,
      user_agent = copy.user_agent or ("lua-achievers/" .. achievers._VERSION .. " (resty)"),
    },
    rate_limit = c.rate_limit,
    limits = c.limits,
    on_rate_limit = on_rate_limit,
    store = store,
  }, Client)
  if store then self.skey = store:token_key(c.base_url, c.scope) end
  self.lock = self.key .. ":lock"
  self.budget = self.key .. ":rate:"
  self.client_id = copy.client_id
  return self
end

return M
