-- The state store's rate half: the API counts its limits per access token, so every client
-- that uses one client_id (one token) spends one budget. With store = {redis = ...} they take
-- slots from one budget in Redis (a sliding window timed by Redis's clock), several at a time
-- (a lease) when they are busy; the two heavy endpoints each have their own budget.
local h = require("helpers")
local R = require("support.redis")
local socket = require("socket")

local function evalsha_calls(r)
  local info = r:call("INFO", "commandstats")
  local n = 0
  for cmd, calls in info:gmatch("cmdstat_(%w+):calls=(%d+)") do
    if cmd == "evalsha" or cmd == "eval" then n = n + tonumber(calls) end
  end
  return n
end

describe("state store on Redis: rate budgets", function()
  local sb, r
  before_each(function()
    sb = h.start_sandbox { limits = { heavy = { 5, 2 }, default = { 500, 120 } } }
    r = R.start()
  end)
  after_each(function()
    r:stop()
    sb:stop()
  end)

  local function pair(store)
    local o = { limits = { heavy = { 5, 2 } }, store = store }
    local a, b = h.client(sb, o), h.client(sb, o)
    assert(a:token())
    assert(b:token())
    return a, b
  end

  it("two clients of one client_id spend one budget: no 429, the pace of one token", function()
    local a, b = pair { redis = r.url }
    local t0 = socket.gettime()
    for i = 1, 15 do
      local c = i % 2 == 0 and a or b
      assert(c:get("recognitions"), "call " .. i)
    end
    local elapsed = socket.gettime() - t0
    local st = sb:stats()
    assert.equals(0, st.rate_limited)
    assert.equals(15, st.by_route["GET /recognitions"])
    assert.equals(1, st.token_requests)
    -- 15 calls at 5 per 2 s: two windows of waiting
    assert.is_true(elapsed >= 3.9 and elapsed < 9, "elapsed " .. elapsed)
  end)

  it("(the same two clients with the memory store each think they have the whole budget)", function()
    local a, b = pair "memory"
    for i = 1, 12 do
      local c = i % 2 == 0 and a or b
      c:get("recognitions")
    end
    local st = sb:stats()
    -- the server counts per token: 2 x 5 per window offered, 5 accepted, the rest 429 (retried)
    assert.is_true(st.rate_limited > 0, "429s " .. st.rate_limited)
  end)

  it("GET /recognitions and GET /newsfeed-events each have their own budget", function()
    local a, b = pair { redis = r.url }
    local t0 = socket.gettime()
    for i = 1, 5 do
      assert(a:get("recognitions"), "recognitions " .. i)
      assert(b:get("newsfeed-events"), "newsfeed " .. i)
    end
    assert.is_true(socket.gettime() - t0 < 1.5)
    assert.equals(0, sb:stats().rate_limited)
    local keys = r:keys("achievers:*:rate:*")
    local names = {}
    for _, k in ipairs(keys) do names[k:match(":([%w-]+)$")] = true end
    assert.is_true(names.recognitions and names["newsfeed-events"])
    -- a hash names the budget, never the token; every key has a TTL
    local tok = assert(a:token()).access_token
    for _, k in ipairs(keys) do
      assert.is_nil(k:find(tok, 1, true))
      local ttl = r:call("PTTL", k)
      assert.is_true(ttl > 0 and ttl < 10000, k .. " ttl " .. tostring(ttl))
    end
  end)

  it("a busy caller takes slots in leases: far fewer round trips than calls", function()
    local a = pair { redis = r.url }
    local before = evalsha_calls(r)
    for i = 1, 100 do assert(a:get("users"), "call " .. i) end
    local trips = evalsha_calls(r) - before
    assert.is_true(trips < 50, "round trips " .. trips)
    assert.equals(0, sb:stats().rate_limited)
  end)

  it("slots leased and not spent are given back when the client goes", function()
    local a = pair { redis = r.url }
    for _ = 1, 4 do assert(a:get("users")) end -- leases of 1, 2, then 4: one left over
    local key = r:keys("achievers:*:rate:*:default:n")[1]
    local held = tonumber(r:call("GET", key))
    a = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local sent = h.route_count(sb, "GET /users")
    assert.is_true(held > sent, "held " .. held .. ", sent " .. sent)
    local t0 = socket.gettime() -- (written as the client went; Redis reads it a moment later)
    while tonumber(r:call("GET", key)) ~= sent and socket.gettime() - t0 < 2 do socket.sleep(0.01) end
    assert.equals(sent, tonumber(r:call("GET", key)))
  end)

  it("async calls queue on the shared budget without 429", function()
    local a, b = pair { redis = r.url }
    local reqs = {}
    local t0 = socket.gettime()
    for i = 1, 8 do
      reqs[#reqs + 1] = a:async { path = "recognitions" }
      reqs[#reqs + 1] = b:async { path = "recognitions" }
    end
    local done = 0
    while done < #reqs and socket.gettime() - t0 < 20 do
      done = done + a:poll(0.05) + b:poll(0.05)
    end
    for i, q in ipairs(reqs) do
      local data, err = q:result()
      assert(data, "request " .. i .. ": " .. tostring(err))
    end
    assert.equals(0, sb:stats().rate_limited)
    assert.is_true(socket.gettime() - t0 >= 3.9) -- 16 at 5 per 2 s
  end)
end)
