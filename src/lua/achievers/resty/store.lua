-- achievers.resty.store: the Redis state store for OpenResty, over lua-resty-redis (cosockets).
--
-- The same keys, the same stored token text and the same server-side scripts
-- (achievers.store_scripts, run by EVALSHA, timed by Redis's TIME) as the C client's Redis
-- store (src/store/redis.c), so that nginx workers on any host and C processes that use one
-- client_id share one system token and one rate budget per access token:
--   <prefix>:{<client_id>}:token:<sha256(base_url \n scope), 32 hex>    the system token
--   <prefix>:{<client_id>}:token:<same>:lock                              its request lock
--   <prefix>:{<client_id>}:rate:<sha256(access token), 16 hex>:<bucket>  a rate budget
--   (and its count, the same key with ":n"); bucket: default, recognitions, newsfeed-events.
--
-- Connections come from the worker's cosocket pool (one pool per host, port, database and
-- password); a new one is authenticated (AUTH), placed on its database (SELECT) before use.
-- Every operation answers nil, "down" when Redis cannot be reached or does not answer within
-- `timeout`: the caller then goes on locally. While Redis is down a worker tries again once a
-- second; the first failure and the return are logged (ngx.WARN) and told to on_store.
-- A Redis that answers but refuses us (wrong password, no such database) or a server that
-- does not speak Redis is a configuration error: check() says so, and the client's calls fail
-- with it. No cosocket outside a request's context (init_by_lua, init_worker_by_lua): nothing
-- is tried when the client is made.
local achievers = require("achievers")
local scripts = require("achievers.store_scripts")

local ngx = ngx
local M = {}
local Store = {}
Store.__index = Store

local RECONNECT_EVERY = 1 -- seconds between attempts while Redis is down
local KEEPALIVE = 60000   -- ms a pooled connection may stay idle
local POOL_SIZE = 32

local function hex(bin)
  return (bin:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local SHA
local function shas()
  if not SHA then
    SHA = {}
    for name, text in pairs(scripts) do SHA[name] = hex(ngx.sha1_bin(text)) end
  end
  return SHA
end

local KEYS = { redis = true, password = true, prefix = true, fleet_size = true, timeout = true }

local function bad(msg) error("achievers.resty.client: option 'store" .. msg, 3) end

-- redis://[:password@]host[:port][/db], as the C client reads it.
local function parse_url(url)
  local rest = url:match("^redis://(.*)$")
  if not rest then bad(".redis' must be a redis:// URL") end
  local o = { port = 6379, db = 0 }
  local auth, after = rest:match("^([^/]*)@(.*)$")
  if auth then
    local pw = auth:match("^[^:]*:(.*)$")
    if not pw then bad(".redis': give the password as redis://:password@host or as store.password") end
    o.password, rest = pw, after
  end
  local hostport, path = rest:match("^([^/]*)(.*)$")
  local host, port = hostport:match("^(.*):([^:]*)$")
  if host then
    local p = tonumber(port)
    if not p or p ~= math.floor(p) or p < 1 or p > 65535 or not port:match("^%d+$") then bad(".redis': bad port") end
    o.port = p
  else
    host = hostport
  end
  if host == "" then bad(".redis': no host") end
  o.host = host
  if path ~= "" and path ~= "/" then
    local db = path:match("^/(%d+)$")
    if not db then bad(".redis': the path must be a database number") end
    o.db = tonumber(db)
  end
  return o
end

-- The store option, checked as the C client checks it (nothing connects here).
function M.new(opt, client_id, hooks)
  if type(opt) ~= "table" then
    bad("' must be a table {redis = \"redis://host:port/db\", ...} (\"memory\": leave it out)")
  end
  for k in pairs(opt) do
    if not KEYS[k] then
      bad("' has no key '" .. tostring(k) .. "' (it takes redis, password, prefix, fleet_size, timeout)")
    end
  end
  if type(opt.redis) ~= "string" then bad("' needs redis = \"redis://host:port/db\"") end
  local self = setmetatable(parse_url(opt.redis), Store)
  if opt.password ~= nil then
    if type(opt.password) ~= "string" then bad(".password' must be a string") end
    self.password = opt.password
  end
  local prefix = opt.prefix == nil and "achievers" or opt.prefix
  if type(prefix) ~= "string" or prefix == "" or #prefix > 63 or prefix:find("[{}\r\n ]") then
    bad(".prefix' must be 1 to 63 characters without braces or spaces")
  end
  local n = opt.fleet_size == nil and 1 or opt.fleet_size
  if type(n) ~= "number" or n ~= math.floor(n) or n < 1 or n > 100000 then
    bad(".fleet_size' must be an integer from 1 to 100000")
  end
  local timeout = opt.timeout == nil and 0.5 or opt.timeout
  if type(timeout) ~= "number" or not (timeout >= 0.001 and timeout <= 60) then
    bad(".timeout' must be a number from 0.001 to 60")
  end
  if type(client_id) == "string" and client_id:find("[{}]") then
    error("achievers.resty.client: a client_id with braces cannot name Redis keys", 2)
  end
  self.prefix, self.fleet_size, self.timeout = prefix, n, timeout
  self.head = prefix .. ":{" .. tostring(client_id) .. "}:"
  -- the pool's name tells databases and passwords apart (a hash: never the password itself)
  self.pool = "achievers-redis:" .. self.host .. ":" .. self.port .. ":" .. self.db .. ":" ..
    (self.password and achievers._sha256_hex(self.password):sub(1, 16) or "")
  self.where = self.host .. ":" .. self.port
  self.hooks = hooks or {}
  self.down = false
  self.next_try = 0
  self.owner = achievers._random_id(16)
  self.seq = 0
  self.spent, self.nspent = {}, 0
  return self
end

function Store:__tostring()
  return "achievers.resty.store(redis://" .. self.where .. "/" .. self.db .. ")"
end

-- Redis went down or came back: a log line and on_store, once per change (per worker).
function Store:_state(up, why)
  if up == not self.down then return end
  self.down = not up
  local msg = up and "Redis is back: tokens and budgets are shared again" or
    ("Redis at " .. self.where .. " is down (" .. tostring(why) .. "): pacing locally at 1/" ..
      self.fleet_size .. " of each budget, the token is not shared")
  ngx.log(ngx.WARN, "achievers: ", msg)
  if self.hooks.on_store then pcall(self.hooks.on_store, { state = up and "up" or "down", message = msg }) end
end

local function refusal(self, err)
  return "Redis at " .. self.where .. " refused us: " .. tostring(err)
end

-- lua-resty-redis: "resty.redis" in OpenResty, "nginx.redis" in Debian's lua-nginx-redis.
local DRIVER
local function driver()
  if not DRIVER then
    local ok, m = pcall(require, "resty.redis")
    if not ok then
      ok, m = pcall(require, "nginx.redis")
      if not ok then
        error("achievers.resty: a Redis store needs lua-resty-redis (require \"resty.redis\"; " ..
          "Debian: lua-nginx-redis)", 0)
      end
    end
    DRIVER = m
  end
  return DRIVER
end

-- A connection ready for commands, or nil, "down"|"refused", why.
function Store:_connect()
  local redis = driver()
  local red = redis:new()
  local ms = math.floor(self.timeout * 1000 + 0.5)
  if rawget(redis, "set_timeouts") then red:set_timeouts(ms, ms, ms) else red:set_timeout(ms) end
  local ok, err = red:connect(self.host, self.port, { pool = self.pool, pool_size = POOL_SIZE })
  if not ok then return nil, "down", err end
  if (red:get_reused_times() or 0) == 0 then
    local steps = {}
    if self.password then steps[#steps + 1] = { "auth", self.password } end
    steps[#steps + 1] = { "select", self.db }
    for _, s in ipairs(steps) do
      local res, e = red[s[1]](red, s[2])
      if not res then
        red:close()
        if res == false then return nil, "refused", refusal(self, e) end -- an error reply
        if type(e) == "string" and (e:find("^bad ") or e:find("^unknown prefix")) then
          return nil, "refused", "the server at " .. self.where .. " does not speak Redis"
        end
        return nil, "down", e
      end
    end
  end
  return red
end

-- Runs fn(red) on a connection: its result, or nil, "down"|"refused"|"error", why.
-- fn answers nil, err on a network failure, false, err on an error reply.
function Store:_run(fn)
  ngx.update_time()
  local now = ngx.now()
  if self.down then
    if now < self.next_try then return nil, "down", "Redis is down" end
    self.next_try = now + RECONNECT_EVERY -- this call tries; the others go on locally meanwhile
  end
  local red, kind, why = self:_connect()
  if not red then
    if kind == "down" then
      self.next_try = now + RECONNECT_EVERY
      self:_state(false, why)
    else
      self.refused = why
    end
    return nil, kind, why
  end
  local ok, res, err = pcall(fn, red)
  if not ok then
    red:close()
    error(res, 0)
  end
  if res == nil then
    red:close()
    self.next_try = ngx.now() + RECONNECT_EVERY
    self:_state(false, err)
    return nil, "down", err
  end
  red:set_keepalive(KEEPALIVE, POOL_SIZE)
  self.refused = nil
  self:_state(true)
  if res == false then return nil, "error", err end
  return res
end

-- Whether the store may be used: nil, message when Redis refuses us (wrong password, no such
-- database, not Redis); true otherwise (up or down: down is not an error).
function Store:check()
  if self.checked then return true end
  local ok, kind, why = self:_run(function(red) return red:ping() end)
  if ok or kind == "down" then
    self.checked = ok and true or nil
    return true
  end
  if kind == "refused" then return nil, "store: " .. why end
  return true
end

local function script(red, name, nkeys, ...)
  local res, err = red:evalsha(shas()[name], nkeys, ...)
  if res == false and type(err) == "string" and err:find("^NOSCRIPT") then
    res, err = red:eval(scripts[name], nkeys, ...) -- the cache was flushed: EVAL loads it again
  end
  return res, err
end

-- ---- the token -----------------------------------------------------------------------------

-- The stored text, or false when there is none; nil, kind, why when Redis cannot say.
function Store:token_get(key)
  local res, kind, why = self:_run(function(red) return red:get(key) end)
  if res == nil then return nil, kind, why end
  if res == ngx.null or type(res) ~= "string" then return false end
  return res
end

-- Compare-and-set: stored only when the stored text is still `seen` ("" for none).
function Store:token_put(key, text, seen, ttl)
  local ms = string.format("%.0f", math.max(1000, ttl * 1000))
  local res, kind, why = self:_run(function(red) return script(red, "token_put", 1, key, text, seen or "", ms) end)
  if res == nil then return nil, kind, why end
  return res == 1
end

-- true when `owner` now holds the lock, false when another does; nil when Redis cannot say.
function Store:lock(key, owner, ttl)
  local ms = string.format("%.0f", math.max(100, ttl * 1000))
  local res, kind, why = self:_run(function(red) return red:set(key .. ":lock", owner, "NX", "PX", ms) end)
  if res == nil then return nil, kind, why end
  return res == "OK"
end

function Store:unlock(key, owner)
  return self:_run(function(red) return script(red, "unlock", 1, key .. ":lock", owner) end)
end

-- ---- rate budgets --------------------------------------------------------------------------

-- A new lease's name, as the C store makes them: never the same twice in the fleet.
function Store:lease_id()
  self.seq = self.seq + 1
  return self.owner:sub(1, 12) .. self.seq
end

-- Up to n slots of the budget `key` (count per window seconds) under the lease `id`: the
-- slots granted (0: none, and seconds to wait), or nil, kind, why when Redis cannot say. The
-- window is the server's and a little more, as the C store asks (so each of the server's
-- windows falls inside one of ours).
function Store:take(key, count, window, n, id)
  local margin = math.min(0.5, 0.01 * window + 0.02)
  local lease = math.min(1.0, math.max(0.05, 0.02 * window))
  local res, kind, why = self:_run(function(red)
    return script(red, "take", 2, key, key .. ":n", n or 1, count,
      string.format("%.0f", (window + margin) * 1e6), string.format("%.0f", lease * 1e6), id)
  end)
  if res == nil then return nil, kind, why end
  if type(res) ~= "table" or type(res[1]) ~= "number" then return nil, "error", "unexpected answer to take" end
  if res[1] > 0 then return res[1] end
  return 0, math.max((tonumber(res[2]) or 1000) / 1e6, 0.001)
end

-- Gives back `back` unspent slots of the lease `id` of `granted` slots.
function Store:give(key, id, granted, back)
  return self:_run(function(red)
    return script(red, "give", 2, key, key .. ":n", id, granted, back)
  end)
end

-- Slots spent locally while Redis was down: they count for `window` seconds. Once Redis
-- answers again, repay() takes those still counting from its budget, so that the calls made
-- during the outage are not sent a second time over by the whole fleet's budget.
function Store:spent_locally(key, window, n)
  local now = ngx.now()
  local s = self.spent[key]
  if not s or s.till <= now then
    if not s then self.nspent = self.nspent + 1 end
    if self.nspent > 256 then -- many tokens during a long outage: keep what still counts
      local kept = 0
      for k, v in pairs(self.spent) do
        if v.till <= now and k ~= key then self.spent[k] = nil else kept = kept + 1 end
      end
      self.nspent = kept + (self.spent[key] and 0 or 1)
    end
    s = { n = 0 }
    self.spent[key] = s
  end
  s.n, s.till = s.n + (n or 1), now + window
end

function Store:repay(key, count, window)
  local s = self.spent[key]
  if not s or self.down then return end
  self.spent[key], self.nspent = nil, self.nspent - 1
  if s.till > ngx.now() and s.n > 0 then self:take(key, count, window, s.n, self:lease_id()) end
end

return M
