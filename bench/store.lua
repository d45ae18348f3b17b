-- bench/store.lua: what the Redis state store costs and what it buys (src/store/).
--
--   lua5.4 bench/store.lua [--quick] [--fleet | --cost]   (with the environment `make bench` gives:
--                                          ACHIEVERS_BUILD, ACHIEVERS_LUA)
--
-- (1) Fleet use of the budget: 8 processes share one client_id (one token, so one budget per
--     endpoint) through Redis against the sandbox at scaled-down per-token limits, and read
--     GET /recognitions as fast as the budget lets them (plus a few writes). Figure: the ideal
--     time the budget allows divided by the time taken. Target >= 0.95, with 0 answers 429.
-- (2) The cost of Redis per call: sequential GET /users with the governor on, the Redis store
--     against the memory store, interleaved in rounds; figure: the median difference per call.
--     Target < 100 us per call (slots are leased several at a time, so most calls make no
--     round trip at all).
-- A redis-server is started on a free loopback port with a throw-away directory.
package.path = "spec/?.lua;src/lua/?.lua;" .. package.path
local build = os.getenv("ACHIEVERS_BUILD") or "build/5.4"
local lua = os.getenv("ACHIEVERS_LUA") or "lua5.4"
package.cpath = build .. "/?.so;" .. package.cpath

local socket = require("socket")
local achievers = require("achievers")
local sandbox = require("achievers.sandbox")
local R = require("support.redis")
local fleet = require("support.fleet")

local quick, only = false, nil
for _, a in ipairs(arg) do
  if a == "--quick" then quick = true
  elseif a == "--fleet" or a == "--cost" then only = a:sub(3)
  else io.stderr:write("usage: lua5.4 bench/store.lua [--quick] [--fleet | --cost]\n") os.exit(2) end
end
local results = {}

local function report(name, value, target, pass, detail)
  results[#results + 1] = pass
  print(string.format("%-44s %10s   target %-10s %s   %s", name, value, target, pass and "PASS" or "FAIL", detail or ""))
end

local r = R.start()
local ok, err = pcall(function()
  -- (1) fleet use of the budget ------------------------------------------------------------
  if only ~= "cost" then
  local heavy = quick and { 20, 5 } or { 20, 10 }
  local default = { 500, 120 }
  local sb = sandbox.start { limits = { heavy = heavy, default = default } }
  local res = fleet.run { sb = sb, lua = lua, build = build, store = r.url, procs = 8,
    gets = 10, posts = 2, heavy = heavy, default = default }
  local st = sb:stats()
  sb:stop()
  local use = res.ideal / res.elapsed
  report("fleet use of the budget (8 processes)", string.format("%.3f", use), ">= 0.95",
    use >= 0.95 and st.rate_limited == 0 and res.failed == 0,
    string.format("ideal %.2f s / actual %.2f s; %d calls, %d failed, %d answered 429, %d token request(s)",
      res.ideal, res.elapsed, res.ok, res.failed, st.rate_limited, st.token_requests))
  end
  if only == "fleet" then return end

  -- (2) the cost of Redis per call ----------------------------------------------------------
  local lim = { 100000, 120 }
  local sb = sandbox.start { limits = { heavy = lim, default = lim } }
  local function client(store)
    local c = achievers.client { base_url = sb.url, client_id = sb.client_id,
      client_secret = sb.client_secret, limits = { heavy = lim, default = lim }, store = store }
    assert(c:token())
    for _ = 1, 20 do assert(c:get("users")) end -- warm: connection, leases
    return c
  end
  local mem, red = client("memory"), client { redis = r.url }
  local rounds, n = quick and 5 or 9, quick and 200 or 500
  local diffs, tm, tr = {}, {}, {}
  for i = 1, rounds do
    local order = i % 2 == 0 and { mem, red } or { red, mem }
    local t = {}
    for _, c in ipairs(order) do
      local t0 = socket.gettime()
      for _ = 1, n do assert(c:get("users")) end
      t[c] = (socket.gettime() - t0) / n
    end
    tm[i], tr[i], diffs[i] = t[mem], t[red], t[red] - t[mem]
  end
  sb:stop()
  local function median(t)
    local s = {}
    for i, v in ipairs(t) do s[i] = v end
    table.sort(s)
    return s[math.floor((#s + 1) / 2)]
  end
  local cost = median(diffs) * 1e6
  report("Redis store cost per call (leases)", string.format("%.1f us", cost), "< 100 us", cost < 100,
    string.format("median per call: memory %.1f us, Redis %.1f us (%d rounds of %d GET /users)",
      median(tm) * 1e6, median(tr) * 1e6, rounds, n))
end)
r:stop()
if not ok then error(err, 0) end
for _, pass in ipairs(results) do
  if not pass then os.exit(1) end
end
