--- achievers.resty: the client for OpenResty (nginx with the Lua module).
--
-- Same calls as an achievers client (request, get, post, token, each and the resource
-- helpers), but every byte goes through nginx's non-blocking cosockets, so a call never
-- blocks the worker. The C engine still decides everything (tokens, retries, pacing, errors):
-- it hands this driver the requests to send and takes the answers back.
--
-- The token lives in a lua_shared_dict, shared by all workers; one worker at a time fetches
-- a new one (a lock in the dictionary) while the others keep using the still-valid token or
-- wait for the new one. The per-token rate limits are counted in the same dictionary, across
-- all workers.
--
--   lua_shared_dict achievers 1m;
--   local client = require("achievers.resty").client {
--     base_url = ..., client_id = ..., client_secret = ..., shared_dict = "achievers" }
--   local users, err = client:get("users")
--
-- For https, nginx verifies the server with lua_ssl_trusted_certificate (and
-- lua_ssl_verify_depth); `insecure = true` turns verification off.
local achievers = require("achievers")

local ngx = ngx
local M = {}

local Client = {}
Client.__index = Client

local LOCK_TTL = 30     -- seconds a fetching worker holds the lock at most
local WAIT_STEP = 0.02  -- seconds between looks at the dictionary while another worker fetches

-- A JSON codec for the dictionary: the C module's decoder and OpenResty's cjson.
local cjson = require("cjson")

local function parse_url(url)
  local scheme, host, port, path = url:match("^(https?)://([^/:]+):?(%d*)(.*)$")
  if not scheme then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if path == "" then path = "/" end
  return scheme, host, port, path
end

-- Reads the answer's body: Content-Length, chunked, or up to the close.
local function read_body(sock, headers, limit)
  local te = headers["transfer-encoding"]
  if te and te:lower():find("chunked", 1, true) then
    local parts, total = {}, 0
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%x+"), 16)
      if not size then return nil, "bad chunk size" end
      if size == 0 then
        repeat line = sock:receive("*l") until not line or line == ""
        break
      end
      total = total + size
      if total > limit then return nil, "too large" end
      local data, derr = sock:receive(size)
      if not data then return nil, derr end
      parts[#parts + 1] = data
      sock:receive("*l")
    end
    return table.concat(parts)
  end
  local len = tonumber(headers["content-length"])
  if len then
    if len > limit then return nil, "too large" end
    if len == 0 then return "" end
    return sock:receive(len)
  end
  return sock:receive("*a")
end

-- Sends one request over a pooled cosocket; returns the answer in the form ex:_feed takes.
function Client:_send(req)
  local scheme, host, port, path = parse_url(req.url)
  if not scheme then return { error = "network", message = "bad URL", reached = false } end
  local sock = ngx.socket.tcp()
  local ms = math.floor((req.timeout or 30) * 1000)
  sock:settimeouts(math.floor(self.connect_timeout * 1000), ms, ms)
  local pool = scheme .. ":" .. host .. ":" .. port
  local ok, err = sock:connect(host, port, { pool = pool })
  if not ok then
    return { error = err == "timeout" and "timeout" or "network", message = "connect: " .. tostring(err), reached = false }
  end
  if scheme == "https" and sock:getreusedtimes() == 0 then
    local session, serr = sock:sslhandshake(nil, host, not self.insecure)
    if not session then
      sock:close()
      return { error = "tls", message = "TLS handshake with " .. host .. ": " .. tostring(serr) ..
        " (set lua_ssl_trusted_certificate to the CA that signed it, or insecure = true)", reached = false }
    end
  end
  local lines = { req.method .. " " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port,
    "User-Agent: lua-achievers/" .. achievers._VERSION .. " (resty)", "Connection: keep-alive" }
  for name, value in pairs(req.headers) do lines[#lines + 1] = name .. ": " .. value end
  if req.body or req.method == "POST" then lines[#lines + 1] = "Content-Length: " .. #(req.body or "") end
  lines[#lines + 1] = ""
  lines[#lines + 1] = req.body or ""
  local sent, serr2 = sock:send(table.concat(lines, "\r\n"))
  if not sent then
    sock:close()
    return { error = serr2 == "timeout" and "timeout" or "network", message = "send: " .. tostring(serr2) }
  end
  local status_line, rerr = sock:receive("*l")
  if not status_line then
    sock:close()
    return { error = rerr == "timeout" and "timeout" or "network", message = "no answer: " .. tostring(rerr) }
  end
  local status = tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then
    sock:close()
    return { error = "network", message = "not an HTTP answer" }
  end
  local raw, headers = {}, {}
  while true do
    local line, herr = sock:receive("*l")
    if not line then
      sock:close()
      return { error = "network", message = "headers: " .. tostring(herr) }
    end
    if line == "" then break end
    raw[#raw + 1] = line
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body, berr = read_body(sock, headers, self.max_response_size)
  if not body then
    sock:close()
    if berr == "too large" then
      return { status = status, headers = table.concat(raw, "\r\n"), body = string.rep(" ", self.max_response_size + 1) }
    end
    return { error = berr == "timeout" and "timeout" or "network", message = "body: " .. tostring(berr) }
  end
  if (headers["connection"] or ""):lower() == "close" then
    sock:close()
  else
    sock:setkeepalive(60000, 64)
  end
  return { status = status, headers = table.concat(raw, "\r\n") .. "\r\n", body = body }
end

-- Runs an exchange of the C engine to its end over cosockets.
function Client:_run(ex)
  while true do
    local action, arg = ex:_next()
    if action == "send" then
      ex:_feed(self:_send(arg))
    elseif action == "wait" then
      ngx.sleep(arg)
    else
      return ex:result()
    end
  end
end

-- The token in the shared dictionary, and whether it is still outside the refresh window.
function Client:_shared_token()
  local raw = self.dict:get(self.key)
  if not raw then return nil end
  local t = achievers.json_decode(raw)
  if type(t) ~= "table" then return nil end
  return t, t.expires_at - ngx.time() > self.refresh_window
end

-- Hands the engine the shared token t, unless it holds it already.
function Client:_install(t)
  if t.access_token ~= self.installed then
    self.c:_set_token(t)
    self.installed = t.access_token
  end
end

-- Makes sure the engine holds a usable token, fetching one in at most one worker at a time.
function Client:_ensure_token()
  local t, fresh = self:_shared_token()
  if t and fresh then
    self:_install(t)
    return true
  end
  local deadline = ngx.now() + LOCK_TTL
  while ngx.now() < deadline do
    local locked = self.dict:add(self.lock, true, LOCK_TTL)
    if locked then
      -- look again: another worker may have stored a token between our look and the lock
      t, fresh = self:_shared_token()
      if t and fresh then
        self.dict:delete(self.lock)
        self:_install(t)
        return true
      end
      -- the lock goes whatever happens, a raise included
      local ran, tok, err = pcall(self._run, self, self.c:_exchange("token", t ~= nil))
      if not ran then
        self.dict:delete(self.lock)
        error(tok, 0)
      end
      if tok then
        local saved = tok:to_table()
        self.dict:set(self.key, cjson.encode(saved), math.max(1, saved.expires_at - ngx.time()))
        self.installed = tok.access_token
      end
      self.dict:delete(self.lock)
      if not tok then return nil, err end
      return true
    end
    -- another worker is fetching: a still-valid token will do meanwhile
    if t and t.expires_at > ngx.time() + 5 then
      self:_install(t)
      return true
    end
    ngx.sleep(WAIT_STEP)
    t, fresh = self:_shared_token()
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

-- The per-token rate limits, counted across all workers in the shared dictionary: a window
-- per class, a little longer than the server's (as the C governor does), so that each of the
-- server's windows falls inside one of ours. A worker over the limit sleeps to the window's end.
function Client:_pace(class)
  local limit = self.limits[class]
  local key = self.key .. ":rate:" .. class
  local window = limit[2] + math.min(1, limit[2] * 0.05)
  for _ = 1, 10000 do
    local n = self.dict:incr(key, 1, 0, window)
    if not n or n <= limit[1] then return end
    local wait = math.max(self.dict:ttl(key) or 0, 0.01)
    if self.on_rate_limit then pcall(self.on_rate_limit, { wait = wait, class = class }) end
    ngx.sleep(wait)
  end
end

--- client:request{method=, path=, query=, form=, json=, headers=, timeout=}
function Client:request(spec)
  local ok, err = self:_ensure_token()
  if not ok then return nil, token_error(err) end
  local ex = self.c:_exchange(spec)
  if self.rate_limit then self:_pace(ex:_rate_class()) end
  return self:_run(ex)
end

function Client:get(path, query) return self:request { path = path, query = query } end

function Client:post(path, fields) return self:request { method = "POST", path = path, form = fields or {} } end

--- client:token(): the token the workers share.
function Client:token()
  local ok, err = self:_ensure_token()
  if not ok then return nil, token_error(err) end
  return self:_run(self.c:_exchange("token"))
end

--- client:each(path, query): every item of every page (false, err once on an error).
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
      local page, err = self:request { path = nextpath, query = nextquery }
      if not page then done = true return false, err end
      items, i = page.items or {}, 1
      if #items == 0 then done = true return nil end
      local paging = page.paging or {}
      nextpath, nextquery = paging.next, nil
    end
  end
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
      return self:request { method = e.method, path = (path:gsub("{id}", escape_id(id))), query = query }
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

function Client:__tostring()
  return "achievers.resty.client(" .. tostring(self.c):match("%((.*)%)$") .. ", shared_dict=" .. self.dict_name .. ")"
end

--- require("achievers.resty").client(opts): the client options plus shared_dict (the name of
-- a lua_shared_dict).
function M.client(opts)
  assert(type(opts) == "table", "achievers.resty.client: expected an options table")
  local copy, dict_name = {}, opts.shared_dict
  for k, v in pairs(opts) do if k ~= "shared_dict" then copy[k] = v end end
  if type(dict_name) ~= "string" then
    error("achievers.resty.client: option 'shared_dict' must name a lua_shared_dict", 2)
  end
  local dict = ngx.shared[dict_name]
  if not dict then error("achievers.resty.client: no lua_shared_dict named '" .. dict_name .. "'", 2) end
  local window = copy.refresh_window or 7200
  copy.refresh_window = 0 -- the engine refreshes only expired tokens; the dictionary does the rest
  local on_rate_limit = copy.on_rate_limit
  local c = achievers.client(copy)
  local self = setmetatable({
    c = c,
    dict = dict,
    dict_name = dict_name,
    key = "achievers:token:" .. tostring(copy.client_id) .. ":" .. c.base_url .. ":" .. c.scope,
    refresh_window = window,
    connect_timeout = copy.connect_timeout or 10,
    insecure = copy.insecure or false,
    max_response_size = copy.max_response_size or 32 * 1024 * 1024,
    rate_limit = c.rate_limit,
    limits = c.limits,
    on_rate_limit = on_rate_limit,
  }, Client)
  self.lock = self.key .. ":lock"
  return self
end

return M
