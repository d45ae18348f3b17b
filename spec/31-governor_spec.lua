-- The rate governor: with rate_limit on, the client paces itself to the per-token limits
-- (achievers-api.md section 0) so the server never answers 429; blocking calls wait, async
-- calls queue, on_rate_limit says so. The limits are scaled down (same counts, windows of
-- seconds) so the specs run in seconds; one run at the real limits checks the first window.
local h = require("helpers")
local r = require("support.reliability")

-- statuses of every answer the trace saw
local function statuses(events)
  local out = {}
  for _, ev in ipairs(r.phase(events, "response")) do out[ev.status] = (out[ev.status] or 0) + 1 end
  return out
end

describe("rate governor", function()
  it("paces 15 GET /recognitions at 5 per 2 s: no 429, three windows, on_rate_limit told", function()
    local sb = h.start_sandbox { limits = { heavy = { 5, 2 } } }
    local hook, events = r.recorder()
    local waits = {}
    local c = h.client(sb, { limits = { heavy = { 5, 2 } }, on_request = hook,
      on_rate_limit = function(info) waits[#waits + 1] = info end })
    assert(c:token())
    local t0 = r.now()
    for i = 1, 15 do
      local page, err = c:get("recognitions")
      assert(page, "call " .. i .. ": " .. tostring(err))
    end
    local elapsed = r.now() - t0
    local stats = sb:stats()
    sb:stop()
    assert.equals(0, stats.rate_limited)
    assert.is_nil(statuses(events)[429])
    assert.equals(15, stats.by_route["GET /recognitions"])
    -- calls 6 and 11 each wait for a window to pass: about 2 x 2 s, under 3 windows
    assert.is_true(elapsed >= 3.9 and elapsed < 6, "elapsed " .. elapsed)
    assert.is_true(#waits >= 2)
    local total = 0
    for _, info in ipairs(waits) do
      assert.equals("heavy", info.class)
      assert.equals("GET", info.method)
      assert.matches("/api/v5/recognitions$", info.url)
      assert.is_true(info.wait > 0 and info.wait <= 2.1 + 1e-6, "wait " .. info.wait)
      total = total + info.wait
    end
    assert.is_true(total >= 3.5, "waited " .. total)
  end)

  it("a loop of 120 GET /recognitions at 50 per 2 s gets no 429", function()
    local sb = h.start_sandbox { limits = { heavy = { 50, 2 } } }
    local hook, events = r.recorder()
    local c = h.client(sb, { limits = { heavy = { 50, 2 } }, on_request = hook })
    assert(c:token())
    local t0 = r.now()
    for i = 1, 120 do assert(c:get("recognitions"), "call " .. i) end
    local elapsed = r.now() - t0
    local stats = sb:stats()
    sb:stop()
    assert.equals(0, stats.rate_limited)
    assert.is_nil(statuses(events)[429])
    assert.equals(120, stats.by_route["GET /recognitions"])
    assert.is_true(elapsed >= 3.9 and elapsed < 8, "elapsed " .. elapsed)
  end)

  it("paces the default class separately from the heavy one", function()
    local sb = h.start_sandbox { limits = { heavy = { 3, 2 }, default = { 10, 2 } } }
    local waits = {}
    local c = h.client(sb, { limits = { heavy = { 3, 2 }, default = { 10, 2 } },
      on_rate_limit = function(info) waits[#waits + 1] = info end })
    assert(c:token())
    -- heavy window used up: GET /users still goes at once
    for _ = 1, 3 do assert(c:get("recognitions")) end
    local t0 = r.now()
    for _ = 1, 10 do assert(c:get("users")) end
    assert.is_true(r.now() - t0 < 1)
    assert.equals(0, #waits)
    -- the 11th of the default class waits
    assert(c:get("users"))
    local stats = sb:stats()
    sb:stop()
    assert.equals(1, #waits)
    assert.equals("default", waits[1].class)
    assert.equals(0, stats.rate_limited)
  end)

  it("queues async calls: 15 at once finish without 429 at the pace of the limit", function()
    local sb = h.start_sandbox { limits = { heavy = { 5, 2 } } }
    local c = h.client(sb, { limits = { heavy = { 5, 2 } } })
    assert(c:token())
    local t0 = r.now()
    local reqs = {}
    for i = 1, 15 do reqs[i] = c:async { path = "recognitions" } end
    assert.is_true(r.now() - t0 < 0.5) -- async returns at once
    local done = 0
    while done < 15 and r.now() - t0 < 15 do done = done + c:poll(0.5) end
    local elapsed = r.now() - t0
    for i, req in ipairs(reqs) do
      local data, err = req:result()
      assert(data, "request " .. i .. ": " .. tostring(err))
    end
    local stats = sb:stats()
    sb:stop()
    assert.equals(0, stats.rate_limited)
    assert.equals(15, stats.by_route["GET /recognitions"])
    assert.is_true(elapsed >= 3.9 and elapsed < 8, "elapsed " .. elapsed)
  end)

  it("at the real limits: 50 GET /recognitions go at once, the 51st waits about a minute", function()
    -- the real heavy limit is 50 per 60 s; the 51st call would wait a whole window, so it is
    -- made async: the governor holds it back (on_rate_limit tells how long) and nothing is sent
    local sb = h.start_sandbox()
    local waits = {}
    local c = h.client(sb, { on_rate_limit = function(info) waits[#waits + 1] = info end })
    assert(c:token())
    for i = 1, 50 do assert(c:get("recognitions"), "call " .. i) end
    assert.equals(0, #waits)
    local req = c:async { path = "recognitions" }
    assert.equals(0, c:poll(0.3))
    assert.is_false(req:done())
    assert.is_true(#waits >= 1)
    assert.equals("heavy", waits[1].class)
    assert.is_true(waits[1].wait > 55 and waits[1].wait <= 61, "wait " .. waits[1].wait)
    assert.equals(50, sb:stats().by_route["GET /recognitions"])
    -- the sandbox would have refused it: the same token without the governor gets 429
    local ungoverned = h.client(sb, { rate_limit = false, retries = 0, token = assert(c:token()) })
    local data, err = ungoverned:get("recognitions")
    local stats = sb:stats()
    sb:stop()
    assert.is_nil(data)
    assert.equals("rate_limited", err.kind)
    assert.equals(1, stats.rate_limited)
  end)

  it("with rate_limit = false the sandbox's 429 comes back as rate_limited with retry_after", function()
    local sb = h.start_sandbox { limits = { heavy = { 3, 60 } } }
    local waits = {}
    local c = h.client(sb, { rate_limit = false, retries = 0,
      on_rate_limit = function(info) waits[#waits + 1] = info end })
    for _ = 1, 3 do assert(c:get("recognitions")) end
    local data, err = c:get("recognitions")
    sb:stop()
    assert.is_nil(data)
    assert.equals("rate_limited", err.kind)
    assert.equals(429, err.status)
    assert.is_number(err.retry_after)
    assert.is_true(err.retry_after >= 1 and err.retry_after <= 60, "retry_after " .. err.retry_after)
    assert.matches("retry after", tostring(err))
    assert.equals(0, #waits)
  end)

  it("on_rate_limit also tells of a wait the server's 429 caused (reason = server)", function()
    local sb = h.start_sandbox { limits = { heavy = { 2, 2 } } }
    local waits = {}
    local c = h.client(sb, { rate_limit = false, retries = 1,
      on_rate_limit = function(info) waits[#waits + 1] = info end })
    for _ = 1, 2 do assert(c:get("recognitions")) end
    assert.equals(0, #waits)
    assert(c:get("recognitions")) -- a 429, then a retry after its Retry-After
    sb:stop()
    assert.equals(1, #waits)
    assert.equals("server", waits[1].reason)
    assert.equals("heavy", waits[1].class)
    assert.is_true(waits[1].wait > 0 and waits[1].wait <= 3, "wait " .. waits[1].wait)
  end)

  it("says its own pacing waits are pacing (reason = pacing)", function()
    local sb = h.start_sandbox { limits = { heavy = { 2, 2 } } }
    local waits = {}
    local c = h.client(sb, { limits = { heavy = { 2, 2 } },
      on_rate_limit = function(info) waits[#waits + 1] = info end })
    for _ = 1, 3 do assert(c:get("recognitions")) end
    sb:stop()
    assert.is_true(#waits >= 1)
    assert.equals("pacing", waits[1].reason)
  end)

  it("refuses bad limits", function()
    local sb = h.start_sandbox()
    for _, bad in ipairs({ { heavy = { 0, 1 } }, { heavy = { 5 } }, { fast = { 1, 1 } }, { heavy = "5/2" },
                           { default = { 5, -1 } } }) do
      assert.has_error(function() h.client(sb, { limits = bad }) end)
    end
    sb:stop()
  end)
end)
