-- achievers.resty.ops: the state store operations the C engine hands the OpenResty driver
-- (ex:_next() -> "store", op; see src/binding/lua_driver.c), carried out where this host
-- keeps them.
-- The policy (when to look for the shared token, who asks the server for a new one, how many
-- rate slots to lease and when to wait) is the engine's; this file only reads and writes.
--
--   ops.dict(d)          a lua_shared_dict: every worker of this host
--   ops.fleet(store, d)  Redis (achievers.resty.store: the C store's keys and scripts), and the
--                        dictionary as this host's copy of the token and its fallback while
--                        Redis is down (pacing there at 1/fleet_size of each budget)
--
-- Each returns a function op -> reply ({ok =, message =, value =, granted =, wait =, lease =,
-- lease_id =}), the argument of ex:_store_reply. Dictionary operations are atomic one by
-- one; a read-compare-write runs under a short-lived mutex (dict:add) and never yields inside.
local achievers = require("achievers")

local ngx = ngx
local M = {}

local MUTEX_TTL = 0.5 -- seconds: a worker that died holding the mutex holds it no longer
local MUTEX_TRIES = 2000

-- As src/store/redis.c asks: the window a little longer than the server's (each of its windows
-- falls inside one of ours), granted slots spent within the lease.
local function margin_of(window) return math.min(0.5, 0.01 * window + 0.02) end
local function lease_of(window) return math.min(1.0, math.max(0.05, 0.02 * window)) end

-- fn() under the mutex of key; nil, why when it stayed taken. fn never yields, so the mutex is
-- held for microseconds; its TTL covers only a worker that dies holding it. It is released
-- only while it is still this holder's (a worker descheduled past the TTL must not free the
-- next holder's).
local held = 0
local function locked(d, key, fn)
  local mk = key .. ":mx"
  held = held + 1
  local me = tostring(ngx.worker and ngx.worker.pid and ngx.worker.pid() or 0) .. ":" .. held
  for _ = 1, MUTEX_TRIES do
    local ok, err = d:add(mk, me, MUTEX_TTL)
    if ok then
      local ran, res = pcall(fn)
      if d:get(mk) == me then d:delete(mk) end
      if not ran then error(res, 0) end
      return res
    end
    if err ~= "exists" then return nil, "shared dict: " .. tostring(err) end
    ngx.sleep(0.001)
  end
  return nil, "the shared dict's entry stayed locked"
end

local function failed(why) return { ok = false, message = why } end

-- ---- one host: the dictionary ---------------------------------------------------------------

local Dict = {}
Dict.__index = Dict

-- Without a shared_dict (a Redis store alone), a worker's own stand-in for one: the
-- lua_shared_dict calls these operations make (get, set, add, delete, with expiry on ngx.now),
-- on a Lua table. Also what plain-Lua hosts of the host store use (spec/76).
function M.local_dict()
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
  return d
end

function M.dict(d)
  local self = setmetatable({ d = d, id = achievers._random_id(16):sub(1, 12), seq = 0 }, Dict)
  return function(op) return self:run(op) end, self
end

function Dict:run(op)
  local f = self[op.op]
  if not f then return failed("unknown store operation " .. tostring(op.op)) end
  return f(self, op)
end

-- A stored text with a NUL is nobody's token (the engine reads C strings): it goes, so that
-- the next token stored replaces it.
function Dict:token_get(op)
  local v = self.d:get(op.key)
  if type(v) ~= "string" or v:find("%z") then
    if v ~= nil and self.d:get(op.key) == v then self.d:delete(op.key) end
    v = nil
  end
  return { ok = true, value = v }
end

-- Compare-and-set: stored only when the stored text is still `seen` ("" for none).
function Dict:token_put(op)
  local r, why = locked(self.d, op.key, function()
    local cur = self.d:get(op.key)
    if (cur == nil and op.seen == "") or cur == op.seen then
      local ok, err = self.d:set(op.key, op.value, math.max(1, op.ttl or 1))
      if not ok then return failed("shared dict: " .. tostring(err)) end
      return { ok = true, granted = 1 }
    end
    return { ok = true, granted = 0 }
  end)
  return r or failed(why)
end

function Dict:lock(op)
  local ok, err = self.d:add(op.key .. ":lock", op.owner, math.max(0.1, op.ttl or 1))
  if not ok and err ~= "exists" then return failed("shared dict: " .. tostring(err)) end
  return { ok = true, granted = ok and 1 or 0 }
end

-- Only its owner lets a lock go.
function Dict:unlock(op)
  local k = op.key .. ":lock"
  if self.d:get(k) == op.owner then self.d:delete(k) end
  return { ok = true, granted = 1 }
end

-- A budget: "<until> <lease id> <slots>;" per lease, each counting until its lease and the
-- window have passed (the Redis take script's sorted set, as text).
local function leases(raw, now)
  local out, used, first = {}, 0, nil
  if type(raw) == "string" then
    for e, id, n in raw:gmatch("([%d.]+) (%S+) (%d+);") do
      e, n = tonumber(e), tonumber(n)
      if e > now then
        out[#out + 1] = { e, id, n }
        used = used + n
        if not first or e < first then first = e end
      end
    end
  end
  return out, used, first
end

local function write(d, key, list, now)
  local parts, last = {}, now
  for i, l in ipairs(list) do
    parts[i] = string.format("%.3f %s %d;", l[1], l[2], l[3])
    if l[1] > last then last = l[1] end
  end
  if #parts == 0 then return d:delete(key) end
  return d:set(key, table.concat(parts), last - now + 1)
end

-- Up to n slots of the budget key (count per window seconds): granted and the lease, or none
-- and how long until one frees. count: this host's share (Redis down) instead of the limit.
function Dict:take(op, count)
  count = count or op.count
  local window = op.window + margin_of(op.window)
  local lease = lease_of(op.window)
  self.seq = self.seq + 1
  local id = self.id .. self.seq
  local r, why = locked(self.d, op.key, function()
    ngx.update_time()
    local now = ngx.now()
    local list, used, first = leases(self.d:get(op.key), now)
    local free = count - used
    if free <= 0 then return { ok = true, granted = 0, wait = math.max(0.001, (first or now + 1) - now) } end
    local n = math.max(1, op.n or 1)
    -- the last quarter goes one slot at a time, as the take script grants it
    if free <= count / 4 then n = 1 end
    if n > free then n = free end
    list[#list + 1] = { now + lease + window, id, n }
    local ok, err = write(self.d, op.key, list, now)
    if not ok and err then return failed("shared dict: " .. tostring(err)) end
    return { ok = true, granted = n, lease = lease, lease_id = id }
  end)
  return r or failed(why)
end

-- Unspent slots of a lease count no more.
function Dict:give(op)
  locked(self.d, op.key, function()
    ngx.update_time()
    local now = ngx.now()
    local list = leases(self.d:get(op.key), now)
    for i, l in ipairs(list) do
      if l[2] == op.lease_id then
        l[3] = l[3] - math.min(l[3], op.back or 0)
        if l[3] <= 0 then table.remove(list, i) end
        write(self.d, op.key, list, now)
        break
      end
    end
  end)
  return { ok = true }
end

-- ---- a fleet: Redis, the dictionary as this host's copy and fallback ------------------------

local Fleet = {}
Fleet.__index = Fleet

function M.fleet(store, d)
  local _, dict = M.dict(d)
  local self = setmetatable({ store = store, dict = dict }, Fleet)
  return function(op) return self:run(op) end, self
end

Fleet.run = Dict.run

-- A token text Redis gave or took, kept here too until its expiry: this host's workers still
-- share it while Redis is down.
local function keep(d, key, text)
  local exp = tonumber(text:match("^v1 (%-?%d+) "))
  local left = exp and exp - ngx.time()
  if left and left > 1 then d:set(key, text, left) end
end

function Fleet:token_get(op)
  local text, kind, why = self.store:token_get(op.key)
  if text == nil then
    if kind == "down" then return self.dict:token_get(op) end
    return failed(why)
  end
  if text then keep(self.dict.d, op.key, text) end
  return { ok = true, value = text or nil }
end

function Fleet:token_put(op)
  local stored, kind, why = self.store:token_put(op.key, op.value, op.seen, op.ttl or 1)
  if stored == nil then
    if kind == "down" then return self.dict:token_put(op) end
    return failed(why)
  end
  if stored then keep(self.dict.d, op.key, op.value) end
  return { ok = true, granted = stored and 1 or 0 }
end

function Fleet:lock(op)
  local got, kind, why = self.store:lock(op.key, op.owner, op.ttl or 1)
  if got == nil then
    if kind == "down" then return self.dict:lock(op) end
    return failed(why)
  end
  return { ok = true, granted = got and 1 or 0 }
end

-- Let go wherever it was taken (in Redis, or here while Redis was down).
function Fleet:unlock(op)
  self.store:unlock(op.key, op.owner)
  return self.dict:unlock(op)
end

function Fleet:take(op)
  local store = self.store
  store:repay(op.key, op.count, op.window)
  local id = store:lease_id()
  local granted, wait, why = store:take(op.key, op.count, op.window, op.n or 1, id)
  if granted == nil then
    if wait ~= "down" then return failed(why) end
    local share = math.max(1, math.floor(op.count / store.fleet_size))
    local r = self.dict:take(op, share)
    if r.ok and (r.granted or 0) > 0 then
      store:spent_locally(op.key, op.window + margin_of(op.window) + lease_of(op.window), r.granted)
    end
    return r
  end
  if granted > 0 then return { ok = true, granted = granted, lease = lease_of(op.window), lease_id = id } end
  return { ok = true, granted = 0, wait = wait }
end

function Fleet:give(op)
  local _, kind = self.store:give(op.key, op.lease_id, op.granted or 0, op.back or 0)
  if kind == "down" then self.dict:give(op) end
  return { ok = true }
end

return M
