-- The asynchronous API: async, on_done, poll, batch, spawn; one engine and one pool.
local h = require("helpers")

local function now()
  return require("socket").gettime()
end

describe("async", function()
  local sb, c
  setup(function() sb = h.start_sandbox { rate_limit = false } end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    c = h.client(sb, { max_concurrency = 8 })
  end)

  local function drain(client, pred, limit)
    local deadline = now() + (limit or 10)
    while not pred() and now() < deadline do client:poll(0.05) end
    assert.is_truthy(pred(), "timed out")
  end

  it("returns at once and gives results and callbacks per request", function()
    sb:latency(200)
    local t0 = now()
    local reqs, got = {}, {}
    for i, id in ipairs { 10726811, 10726846, 1 } do
      reqs[i] = c:async { path = "users/" .. id }
      reqs[i]:on_done(function(data, err) got[i] = { data = data, err = err } end)
    end
    assert.is_true(now() - t0 < 0.15) -- nothing waited for the 200 ms answers
    assert.is_false(reqs[1]:done())
    assert.matches("^achievers%.request%(GET .*/api/v5/users/10726811, pending%)$", tostring(reqs[1]))
    drain(c, function() return got[1] and got[2] and got[3] end)
    assert.equals("adele.olson", got[1].data.username)
    assert.equals("brady.garfinkel", got[2].data.username)
    assert.is_nil(got[3].data)
    assert.equals("not_found", got[3].err.kind)
    assert.is_true(reqs[1]:done())
    local data = reqs[2]:result()
    assert.equals("brady.garfinkel", data.username)
    local d3, e3 = reqs[3]:result()
    assert.is_nil(d3)
    assert.equals("not_found", e3.kind)
  end)

  it("result() waits when the request is not done yet", function()
    local r = c:async { path = "users/10726811" }
    local data, err = r:result()
    assert.is_nil(err)
    assert.equals("adele.olson", data.username)
  end)

  it("keeps a dropped request running and still calls its callback", function()
    local hit = false
    c:async({ path = "users/10726811" }):on_done(function(d) hit = d.username end)
    collectgarbage()
    collectgarbage()
    drain(c, function() return hit end)
    assert.equals("adele.olson", hit)
  end)

  it("lets a dropped request's answer go in one collection", function()
    -- an object with a finalizer is kept, with all it refers to, for one more collection
    -- (marked in the collector's single unsplittable step): a request must not hold its
    -- decoded answer that way, or every game frame's collection would mark old pages
    local seen = setmetatable({}, { __mode = "k" })
    local done = false
    c:async({ path = "users", query = { pageSize = 5 } }):on_done(function(data)
      seen[data] = true
      done = true
    end)
    drain(c, function() return done end)
    assert.is_not_nil(next(seen))
    collectgarbage("collect")
    assert.is_nil(next(seen))
  end)

  it("reports what finished in the order it finished, once", function()
    assert(c:token())
    sb:latency(300)
    local before = sb:stats().requests
    local order = {}
    c:async({ path = "users/10726811" }):on_done(function() order[#order + 1] = "slow" end)
    drain(c, function() return sb:stats().requests > before end) -- it has arrived: 300 ms
    sb:latency(0)
    local fast = c:async { path = "users/10726846" }
    fast:on_done(function() order[#order + 1] = "fast" end)
    local consumed = c:async { path = "users/10726846" }
    assert(consumed:result()) -- taken here: poll has nothing to report for it
    drain(c, function() return #order == 2 end)
    assert.same({ "fast", "slow" }, order)
    assert.equals(0, c:poll(0))
    -- a callback set again on a finished request is reported by the next poll, once
    fast:on_done(function() order[#order + 1] = "again" end)
    assert.equals(1, c:poll(0))
    assert.equals(0, c:poll(0))
    assert.same({ "fast", "slow", "again" }, order)
  end)

  it("poll(0) never blocks", function()
    sb:latency(300)
    local reqs = {}
    for i = 1, 16 do reqs[i] = c:async { path = "users/10726811" } end
    local worst = 0
    for _ = 1, 20 do
      local t0 = now()
      c:poll(0)
      worst = math.max(worst, now() - t0)
    end
    assert.is_true(worst < 0.1, "poll(0) took " .. worst)
    for i = 1, 16 do assert(reqs[i]:result()) end
  end)

  it("poll(0) allocates nothing while nothing has finished", function()
    -- a frame's poll that has nothing to report must not feed the garbage collector
    assert(c:token())
    sb:latency(500)
    local reqs = {}
    for i = 1, 8 do reqs[i] = c:async { path = "users/10726811" } end
    for _ = 1, 5 do c:poll(0) end
    if jit then jit.off() end -- LuaJIT's traces live in the Lua heap: compile none here
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    local reported = 0
    for _ = 1, 100 do reported = reported + c:poll(0) end
    local grown = collectgarbage("count") - before
    collectgarbage("restart")
    if jit then jit.on() end
    assert.equals(0, reported)
    assert.equals(0, grown)
    for i = 1, 8 do assert(reqs[i]:result()) end
  end)

  it("poll(0) spreads a burst of answers over frames, within frame_budget", function()
    local function finished_burst(client)
      assert(client:token())
      local reqs = {}
      for i = 1, 5 do
        reqs[i] = client:async { path = "users/10726811" }
        reqs[i]:on_done(function() end)
      end
      for i = 1, 5 do assert(reqs[i]:result()) end -- all finished, none reported yet
    end
    local frugal = h.client(sb, { frame_budget = 0 })
    assert.equals(0, frugal.frame_budget)
    finished_burst(frugal)
    local per_poll = {}
    for i = 1, 6 do per_poll[i] = frugal:poll(0) end
    assert.same({ 1, 1, 1, 1, 1, 0 }, per_poll) -- one step per poll
    local lavish = h.client(sb, { frame_budget = 10 })
    finished_burst(lavish)
    assert.equals(5, lavish:poll(0))
    assert.equals(1e-4, c.frame_budget) -- the default: a tenth of a millisecond
  end)

  it("poll(timeout) keeps its own limits when a hook starts a request inside it", function()
    sb:latency(300)
    local hc, second
    hc = h.client(sb, {
      on_request = function(ev)
        if ev.phase == "response" and not second then -- the token answer, inside poll
          second = hc:async { path = "users/10726846" } -- a run of its own, with a frame budget
        end
      end,
    })
    local first = hc:async { path = "users/10726811" }
    local t0 = now()
    local n = hc:poll(5) -- returns when one of the two has finished, not before
    assert.is_not_nil(second)
    assert.equals(1, n)
    assert.is_true(first:done() or second:done())
    assert.is_true(now() - t0 >= 0.25, "poll(5) returned after " .. (now() - t0) .. " s")
  end)

  it("poll(timeout) returns when something finished, not later", function()
    sb:latency(100)
    c:async { path = "users/10726811" }
    local t0 = now()
    local n = 0
    while n == 0 and now() - t0 < 5 do n = n + c:poll(2) end
    assert.equals(1, n)
    assert.is_true(now() - t0 < 1.5)
  end)

  it("batch keeps order, and one failure does not fail the others", function()
    sb:latency(50)
    local list = {}
    for i = 1, 20 do
      list[i] = { path = (i % 5 == 0) and "users/1" or "users/10726811" }
    end
    local results = c:batch(list)
    assert.equals(20, #results)
    for i = 1, 20 do
      if i % 5 == 0 then
        assert.is_nil(results[i].data)
        assert.equals("not_found", results[i].err.kind)
      else
        assert.equals("adele.olson", results[i].data.username)
        assert.is_nil(results[i].err)
      end
    end
  end)

  it("batch runs max_concurrency at a time", function()
    sb:latency(200)
    local bc = h.client(sb, { max_concurrency = 4 })
    assert(bc:token())
    local list = {}
    for i = 1, 8 do list[i] = { path = "users/10726811" } end
    local t0 = now()
    bc:batch(list)
    local dt = now() - t0
    assert.is_true(dt >= 0.38 and dt < 1.5, "8 requests at 4 at a time took " .. dt)
    assert.is_true(sb:stats().connections <= 5)
  end)

  it("shares one token request between exchanges that need a token", function()
    sb:latency(100)
    local list = {}
    for i = 1, 10 do list[i] = { path = "users/10726811" } end
    local results = c:batch(list)
    for i = 1, 10 do assert.is_table(results[i].data) end
    assert.equals(1, sb:stats().token_requests)
  end)

  it("shares one token request between async requests too", function()
    local reqs = {}
    for i = 1, 6 do reqs[i] = c:async { path = "users/10726811" } end
    for i = 1, 6 do assert(reqs[i]:result()) end
    assert.equals(1, sb:stats().token_requests)
  end)

  it("raises a callback's error from poll, after the other callbacks ran", function()
    local ran = {}
    for i = 1, 3 do
      c:async({ path = "users/10726811" }):on_done(function()
        ran[#ran + 1] = i
        if i == 2 then error("callback " .. i .. " failed") end
      end)
    end
    local errors = {}
    local deadline = now() + 10
    while #ran < 3 and now() < deadline do
      local ok, err = pcall(c.poll, c, 0.05)
      if not ok then errors[#errors + 1] = err end
    end
    assert.equals(3, #ran)
    assert.equals(1, #errors)
    assert.matches("callback 2 failed", errors[1])
    -- the engine goes on
    assert(c:get("users/10726811"))
  end)

  describe("spawn", function()
    it("runs sequential code whose calls yield to poll", function()
      sb:latency(100)
      local log = {}
      local task = c:spawn(function(who)
        local u = assert(c:user(who))
        log[#log + 1] = u.username
        local page = assert(c:get("users", { pageSize = 3 }))
        log[#log + 1] = #page.items
        return u.id, "done"
      end, 10726811)
      assert.equals(0, #log) -- the first call yielded
      assert.is_false(task:done())
      local frames = 0
      while not task:done() and frames < 500 do
        frames = frames + 1
        c:poll(0.01)
      end
      assert.is_true(task:done())
      assert.is_true(frames > 2) -- the frame loop kept going while requests were in flight
      assert.same({ "adele.olson", 3 }, log)
      local id, word = task:result()
      assert.equals(10726811, id)
      assert.equals("done", word)
      assert.equals("achievers.task(done)", tostring(task))
    end)

    it("runs several tasks at once", function()
      sb:latency(200)
      local tasks = {}
      local t0 = now()
      for i = 1, 4 do
        tasks[i] = c:spawn(function() return assert(c:user(10726811)).username end)
      end
      for i = 1, 4 do assert.equals("adele.olson", tasks[i]:result()) end
      assert.is_true(now() - t0 < 0.6, "4 tasks of 200 ms each ran one after another")
    end)

    it("carries on at the next poll after a yield of its own", function()
      local steps = 0
      local task = c:spawn(function()
        for _ = 1, 3 do steps = steps + 1 coroutine.yield() end
        return steps
      end)
      assert.equals(1, steps)
      c:poll(0)
      assert.equals(2, steps)
      assert.equals(3, task:result())
    end)

    it("reports a task's error through poll and task:result()", function()
      local task = c:spawn(function()
        assert(c:user(10726811))
        error("task failed on purpose")
      end)
      local caught
      local deadline = now() + 10
      while not task:done() and now() < deadline do
        local ok, err = pcall(c.poll, c, 0.05)
        if not ok then caught = err end
      end
      assert.matches("task failed on purpose", caught)
      local r, err = task:result()
      assert.is_nil(r)
      assert.matches("task failed on purpose", err)
    end)

    it("walks pages with each inside a task", function()
      local task = c:spawn(function()
        local n = 0
        for _ in c:each("users", { pageSize = 100 }) do n = n + 1 end
        return n
      end)
      assert.equals(assert(c:users()).paging.totalItems, task:result())
    end)
  end)
end)
