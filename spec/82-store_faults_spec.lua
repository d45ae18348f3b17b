-- The state store when Redis fails: unreachable at start, stopped (SIGSTOP) or killed mid-run,
-- restarted empty, a token lock whose holder died. Calls go on (paced locally at 1/fleet_size
-- of each budget), on_store says "down" and then "up", coordination resumes; nothing hangs.
local h = require("helpers")
local R = require("support.redis")
local socket = require("socket")

local function states(events)
  local out = {}
  for _, e in ipairs(events) do out[#out + 1] = e.state end
  return table.concat(out, ",")
end

-- polls `f` every 50 ms until it is true or `secs` pass
local function eventually(secs, f)
  local t0 = socket.gettime()
  while socket.gettime() - t0 < secs do
    if f() then return true end
    socket.sleep(0.05)
  end
  return f()
end

describe("state store on Redis: faults", function()
  local sb, r
  before_each(function()
    sb = h.start_sandbox { limits = { heavy = { 6, 2 }, default = { 500, 120 } } }
  end)
  after_each(function()
    if r then r:stop() end
    r = nil
    sb:stop()
  end)

  it("Redis unreachable at start: calls go on at 1/fleet_size of the budget; Redis comes: shared", function()
    local port = R.free_port()
    local events, waits = {}, {}
    local c = h.client(sb, { limits = { heavy = { 6, 2 } },
      store = { redis = "redis://127.0.0.1:" .. port .. "/0", fleet_size = 2 },
      on_store = function(e) events[#events + 1] = e end,
      on_rate_limit = function(w) waits[#waits + 1] = w end })
    -- 3 per window (6 / 2) paced here: the 4th waits for the window
    local t0 = socket.gettime()
    for i = 1, 4 do assert(c:get("recognitions"), "call " .. i) end
    assert.is_true(socket.gettime() - t0 >= 1.9, "elapsed " .. socket.gettime() - t0)
    assert.equals(1, #waits)
    assert.equals("down", events[1].state)
    assert.matches("1/2 of each budget", events[1].message, 1, true)
    assert.matches("127.0.0.1:" .. port, events[1].message, 1, true)
    -- Redis starts: within a reconnect period the calls use it again
    r = R.start { port = port }
    assert.is_true(eventually(5, function()
      assert(c:get("users"))
      return #r:keys("achievers:*:rate:*:default") > 0
    end))
    assert.equals("down,up", states(events))
    assert.equals(0, sb:stats().rate_limited)
  end)

  it("a call's deadline holds while it waits for a rate slot from a stopped Redis", function()
    r = R.start()
    local c = h.client(sb, { store = { redis = r.url, fleet_size = 1, timeout = 4 } })
    assert(c:get("users"))
    r:pause()
    socket.sleep(1.1) -- any lease of slots taken before has lapsed: the next call asks Redis
    local t0 = socket.gettime()
    local data, err = c:request { path = "users", deadline = 0.5 }
    local took = socket.gettime() - t0
    r:resume()
    assert.is_nil(data)
    assert.equals("timeout", err.kind)
    assert.matches("deadline", err.message, 1, true)
    -- the store's own timeout is 4 s: the call ends well before it
    assert.is_true(took < 3, "took " .. took .. " s with a 0.5 s deadline")
  end)

  it("a password with '@' or '/' in the URL never shows in what on_store says", function()
    local port = R.free_port()
    local events = {}
    local c = h.client(sb, {
      store = { redis = "redis://:Pa55@word/SECRET-TAIL@127.0.0.1:" .. port .. "/0", fleet_size = 1 },
      on_store = function(e) events[#events + 1] = e end })
    assert(c:get("users"))
    assert.equals("down", events[1].state)
    assert.matches("127.0.0.1:" .. port, events[1].message, 1, true)
    for _, e in ipairs(events) do
      assert.is_nil(e.message:find("SECRET", 1, true), e.message)
      assert.is_nil(e.message:find("word", 1, true), e.message)
    end
    assert.is_nil(tostring(c):find("SECRET", 1, true))
  end)

  it("Redis stopped (SIGSTOP) mid-run: calls go on, no hang; SIGCONT: coordination resumes", function()
    r = R.start()
    local events = {}
    local c = h.client(sb, { store = { redis = r.url, fleet_size = 1, timeout = 0.3 },
      on_store = function(e) events[#events + 1] = e end })
    assert(c:get("users"))
    r:pause()
    local t0 = socket.gettime()
    for i = 1, 20 do assert(c:get("users"), "call " .. i) end
    local paused = socket.gettime() - t0
    -- one answer awaited for at most the store timeout, then local pacing: no call per call
    assert.is_true(paused < 3, "20 calls took " .. paused)
    assert.equals("down", states(events))
    assert.matches("no answer within 0.3 s", events[1].message, 1, true)
    r:resume()
    local before = #r:keys()
    assert.is_true(eventually(5, function()
      assert(c:get("users"))
      return #events == 2
    end))
    assert.equals("down,up", states(events))
    assert.is_true(before >= 1)
    assert.equals(1, sb:stats().token_requests)
  end)

  it("poll(0) never waits on Redis, even a stopped one; the request finishes all the same", function()
    r = R.start()
    local c = h.client(sb, { store = { redis = r.url, timeout = 0.3 } })
    assert(c:get("users"))
    r:pause()
    local req = c:async { path = "users" }
    local worst, t0 = 0, socket.gettime()
    while not req:done() and socket.gettime() - t0 < 10 do
      local p0 = socket.gettime()
      c:poll(0)
      worst = math.max(worst, socket.gettime() - p0)
      socket.sleep(0.005)
    end
    r:resume()
    assert(req:result())
    -- the take waited for Redis (0.3 s) before the local fallback answered; no poll did
    assert.is_true(socket.gettime() - t0 >= 0.25)
    assert.is_true(worst < 0.1, "slowest poll(0) " .. worst)
  end)

  it("Redis killed and restarted empty: the token stays; exactly one new token request for all", function()
    r = R.start()
    local events = {}
    local clients = {}
    for i = 1, 3 do
      clients[i] = h.client(sb, { store = { redis = r.url },
        on_store = function(e) events[#events + 1] = e end })
      assert(clients[i]:get("users"))
    end
    assert.equals(1, sb:stats().token_requests)
    r:kill()
    for i = 1, 3 do assert(clients[i]:get("users"), "while down " .. i) end
    r:restart()
    assert.is_true(eventually(5, function()
      for i = 1, 3 do assert(clients[i]:get("users")) end
      local ups = 0
      for _, e in ipairs(events) do if e.state == "up" then ups = ups + 1 end end
      return ups == 3
    end))
    assert.equals(1, sb:stats().token_requests) -- nobody asked again for having lost Redis
    assert.equals(0, #r:keys("achievers:*:token:*"))
    -- the token expires for everyone at once: one request among the three
    sb:advance(15 * 86400)
    local reqs = {}
    for i = 1, 3 do reqs[i] = clients[i]:async { path = "users" } end
    local t0 = socket.gettime()
    local function all_done()
      for i = 1, 3 do if not reqs[i]:done() then return false end end
      return true
    end
    while not all_done() and socket.gettime() - t0 < 20 do
      for i = 1, 3 do clients[i]:poll(0.02) end
    end
    for i = 1, 3 do assert(reqs[i]:result()) end
    assert.equals(2, sb:stats().token_requests)
    assert.equals(1, #r:keys("achievers:*:token:*"))
  end)

  it("the holder of the token lock dies: the lock lapses, another process fetches", function()
    r = R.start()
    local marker = os.tmpname()
    os.remove(marker)
    -- a process that takes the lock and then hangs in its token request, until killed
    local child = string.format([[
      package.cpath = %q .. ";" .. package.cpath
      local a = require("achievers")
      local c = a.client { base_url = %q, client_id = %q, client_secret = %q, timeout = 2,
        connect_timeout = 1, store = { redis = %q },
        on_request = function(ev)
          if ev.phase == "request" then
            local f = io.open(%q, "w") f:write("locked") f:close()
            while true do os.execute("sleep 1") end
          end
        end }
      c:token()
    ]], h.build .. "/?.so", sb.url, sb.client_id, sb.client_secret, r.url, marker)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(child)
    f:close()
    local pid = tonumber(io.popen(h.lua .. " " .. script ..
      " >/dev/null 2>&1 & echo $!"):read("*l"))
    assert.is_true(eventually(10, function() return io.open(marker) ~= nil end), "the child took the lock")
    local lock = r:keys("achievers:*:lock")
    assert.equals(1, #lock)
    os.execute("kill -KILL " .. pid) -- (its `sleep 1` ends by itself)
    local c = h.client(sb, { store = { redis = r.url } })
    local t0 = socket.gettime()
    local tok, err = c:token()
    local waited = socket.gettime() - t0
    assert(tok, tostring(err))
    -- the child's lock lives timeout + connect_timeout + 1 = 4 s: we waited for it, not forever
    assert.is_true(waited > 1 and waited < 8, "waited " .. waited)
    assert.equals(1, #r:keys("achievers:*:token:*"))
    os.remove(marker)
    os.remove(script)
  end)
end)
