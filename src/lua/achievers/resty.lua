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
-- as that user): the `token` option is refused. That policy is the engine's, the one a C
-- client runs with a Redis store: the engine asks its state store (get the token, take the
-- lock, lease rate slots...) and this driver carries those operations out on the dictionary
-- or on Redis (achievers.resty.ops), as it sends the engine's requests over cosockets.
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
-- hash of the token (budget_key below), the key a Redis store uses too.
--
-- A fleet (many nginx, many hosts, C processes too): `store = {redis = "redis://host:6379/0",
-- fleet_size = N}` shares the token and the budgets through Redis (achievers.resty.store: the
-- C store's keys and scripts, over cosockets); the dictionary, when given, keeps this host's
-- copy of the token and is the fallback while Redis is down (the token shared by this host's
-- workers only, pacing at 1/fleet_size of each budget).
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
local ops = require("achievers.resty.ops")

local ngx = ngx
local M = {}

local Client = {}
Client.__index = Client

-- The engine's state store operations, carried out for it (achievers.resty.ops). A failure
-- there is answered as one: the engine goes on without the store (asks the server itself, or
-- lets a call through unpaced), as it does when Redis is down under a C client.
local function carry_out(self, op)
  local ok, reply = pcall(self.ops, op)
  if ok then return reply end
  ngx.log(ngx.ERR, "achievers: state store operation ", tostring(op.op), " failed: ", tostring(reply))
  return { ok = false, message = "the state store operation failed" }
end

local function send(self, req)
  return http.request(self.conn, req)
end

-- Runs an exchange of the C engine to its end over cosockets: its requests go out through
-- cosockets, its waits are ngx.sleep, its state store operations (the shared token, its lock,
-- the rate budgets) are carried out on the dictionary or Redis. Another caller's operations
-- may come this way too: the engine is the worker's, shared by its requests.
function Client:_run(ex)
  while true do
    local action, arg = ex:_next()
    if action == "send" then
      ex:_feed(send(self, arg))
    elseif action == "wait" then
      ngx.sleep(arg)
    elseif action == "store" then
      ex:_store_reply(arg.id, carry_out(self, arg))
    else
      return ex:result()
    end
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
  return self:_run(self.c:_exchange(spec))
end

function Client:get(path, query) return self:request { path = path, query = query } end

function Client:post(path, fields) return self:request { method = "POST", path = path, form = fields or {} } end

--- client:token(): the token the workers share.
function Client:token()
  local serr = store_error(self)
  if serr then return nil, serr end
  return self:_run(self.c:_exchange("token"))
end

--- client:each(path, query): every item of every page (false, err once on an error). A next
-- page link the server gives is its data, not the caller's: one the client refuses (another
-- host, where the token must not go) ends the walk with false, err instead of a raise.
function Client:each(path, query)
  -- which page comes next is the C client's rule (client:_page, as client:each follows it):
  -- paging.next on base_url's origin, else page numbers up to totalPages; only the fetching
  -- is ours, over cosockets
  local items, i, done, paging = nil, 1, false, nil
  local nextpath, nextquery, first = path, query, true
  return function()
    while not done do
      if items and items[i] ~= nil then
        i = i + 1
        return items[i - 1], nil, paging
      end
      if not nextpath then done = true return nil end
      if type(nextpath) ~= "string" then done = true return false, nextpath end -- a link we refuse
      local page, err
      local used = nextquery or nil
      if first then
        page, err = self:request { path = nextpath, query = used }
      else
        local ok, a, b = pcall(self.request, self, { path = nextpath, query = used })
        if ok then
          page, err = a, b
        else
          err = achievers._error("invalid", "paging.next: " .. tostring(a):gsub("^request: ", ""))
        end
      end
      first = false
      if not page then done = true return false, err end
      local its, np, nq, pg = self.c:_page(page, path, used)
      if not its then done = true return false, np end
      items, i, paging = its, 1, pg
      if items[1] == nil then done = true return nil end
      nextpath, nextquery = np, nq
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
  return self:_run(self.c:_exchange("code", code, verifier))
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
    c = c, conn = self.conn, ops = self.ops, store = self.store, access = access,
    on_token = opts and opts.on_token,
  }, User)
end

User._run = Client._run

-- After a call: a refreshed token goes to on_token (the engine moved its budget already).
function User:_check_token()
  local now = self.c.current_token
  if now and now.access_token ~= self.access then
    self.access = now.access_token
    if self.on_token then self.on_token(now) end
  end
end

--- user:request{...}: as client:request, acting as the person (never the dictionary's token).
function User:request(spec)
  local serr = store_error(self)
  if serr then return nil, serr end
  local data, err = self:_run(self.c:_exchange(spec))
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

-- The resource helpers, from the module's endpoint table; an id is one path segment,
-- encoded by the C client's rule (client:_path_value).
for _, e in ipairs(achievers.endpoints) do
  local path = e.path:gsub("^/api/v5/", "")
  if e.args == "query" then
    Client[e.name] = function(self, query) return self:request { method = e.method, path = path, query = query } end
  elseif e.args == "id" then
    Client[e.name] = function(self, id, query)
      local escaped = self.c:_path_value(id, e.name .. ": id") -- taken as it is by gsub ("%40" stays)
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
    dict = ops.local_dict()
  end
  local store = with_store and rstore.new(opts.store, copy.client_id, { on_store = opts.on_store }) or nil
  local c = achievers.client(copy)
  -- the engine's token sharing and pacing, through the state store this driver carries out;
  -- an operation a dead request took is given up after the longest a Redis one can take
  c:_host_store { prefix = store and store.prefix, grace = math.max(5, store and 6 * store.timeout + 1 or 0) }
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
    key = c:_store_key(), -- where the shared token is (the C store's key and text)
    conn = {
      connect_timeout = copy.connect_timeout or 10,
      insecure = copy.insecure or false,
      max_response_size = copy.max_response_size or 8 * 1024 * 1024, -- as the C client
      proxy = proxy,
      user_agent = copy.user_agent or ("lua-achievers/" .. achievers._VERSION .. " (resty)"),
    },
    store = store,
    ops = store and ops.fleet(store, dict) or ops.dict(dict),
  }, Client)
  return self
end

return M
