-- A fleet: 4 lua processes share one client_id (so one token, so one budget per endpoint)
-- through Redis against the sandbox at scaled-down per-token limits. They read GET
-- /recognitions and write (POST /achievements): no 429 reaches the sandbox, one token request
-- in all, and the whole run takes at most 1.1 times what the budget allows at best.
local h = require("helpers")
local R = require("support.redis")
local fleet = require("support.fleet")

describe("state store: a fleet of 4 processes", function()
  local heavy, default = { 10, 3 }, { 12, 3 }

  local function run(sb, store)
    return fleet.run { sb = sb, lua = h.lua, build = h.build, store = store, procs = 4,
      gets = 10, posts = 3, heavy = heavy, default = default }
  end

  it("shares one token and one budget through Redis: 0 429s, 1 token request, <= 1.1 x ideal", function()
    local r = R.start()
    local sb = h.start_sandbox { limits = { heavy = heavy, default = default } }
    finally(function() -- (busted keeps one finally per test)
      sb:stop()
      r:stop()
    end)
    local res = run(sb, r.url)
    local st = sb:stats()
    print(string.format("\n  fleet with Redis: %d calls in %.2f s, ideal %.2f s (ratio %.3f), statuses %s, token requests %d",
      res.ok, res.elapsed, res.ideal, res.ideal / res.elapsed,
      (function() local t = {} for k, v in pairs(res.statuses) do t[#t + 1] = k .. "=" .. v end return table.concat(t, ",") end)(),
      st.token_requests))
    assert.equals(0, res.failed, table.concat(res.lines))
    assert.equals(4 * 13, res.ok)
    assert.equals(0, st.rate_limited)
    assert.is_nil(res.statuses[429])
    assert.equals(1, st.token_requests)
    assert.is_true(res.elapsed <= 1.1 * res.ideal, string.format("%.2f s for an ideal of %.2f s", res.elapsed, res.ideal))
  end)

  it("(the same fleet without Redis runs into the server's limits: printed, not asserted)", function()
    local sb = h.start_sandbox { limits = { heavy = heavy, default = default } }
    finally(function() sb:stop() end)
    local res = run(sb, "memory")
    local st = sb:stats()
    print(string.format("\n  fleet without Redis: %d ok, %d failed in %.2f s, sandbox 429s %d, token requests %d",
      res.ok, res.failed, res.elapsed, st.rate_limited, st.token_requests))
    assert.equals(4 * 13, res.ok + res.failed)
  end)
end)
