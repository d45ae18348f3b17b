-- New calls and options (DESIGN.md "New calls and options"): req:cancel and task:cancel, the
-- deadline of a whole call, err.attempts, errors that say what went wrong and what to do
-- (a misspelled method, a non-list for each, long URLs, TLS to a plain-HTTP port, option
-- bounds), and client:warm.
local h = require("helpers")
local achievers = h.achievers
local socket = require("socket")

-- A port that accepts connections (the kernel's backlog) and never answers: nobody calls
-- accept on it.
local function silent_server()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  return "http://127.0.0.1:" .. port, function() srv:close() end
end

local function raises(pattern, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected a raise matching " .. pattern)
  assert.matches(pattern, tostring(err), 1, true)
end

describe("new calls", function()
  local sb
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)
  before_each(function() sb:reset() end)

  describe("cancel", function()
    it("stops an async request: nil, err with kind cancelled, on_done once, idempotent", function()
      local c = h.client(sb)
      assert(c:token())
      sb:latency(300)
      local req = c:async { path = "users" }
      local calls, got = 0, nil
      req:on_done(function(data, err)
        calls = calls + 1
        got = { data = data, err = err }
      end)
      assert.is_false(req:done())
      assert.is_true(req:cancel())
      assert.is_false(req:cancel()) -- idempotent: nothing left to stop
      assert.is_true(req:done())
      local data, err = req:result()
      assert.is_nil(data)
      assert.equals("cancelled", err.kind)
      assert.matches("cancelled", tostring(err))
      for _ = 1, 5 do c:poll(0.01) end
      assert.equals(1, calls)
      assert.is_nil(got.data)
      assert.equals("cancelled", got.err.kind)
      sb:latency(0)
      -- the client goes on: the next call works
      assert(c:get("users"))
    end)

    it("a request cancelled mid-transfer leaves libcurl; its connection is not reused", function()
      local c = h.client(sb)
      assert(c:token())
      local s0 = sb:stats().connections
      sb:latency(400)
      local req = c:async { path = "users" }
      c:poll(0.1) -- sent on the token's connection; the answer is 400 ms away
      assert.is_false(req:done())
      assert.is_true(req:cancel())
      sb:latency(0)
      assert(c:get("users"))
      socket.sleep(0.5) -- the sandbox finishes the cancelled request (it counts on its own)
      -- the call after it could not use the connection left mid-answer: a new one
      assert.equals(s0 + 1, sb:stats().connections)
    end)

    it("cancelling a finished request is a no-op", function()
      local c = h.client(sb)
      local req = c:async { path = "users" }
      local data = req:result()
      assert.is_table(data)
      assert.is_false(req:cancel())
      local again, err = req:result()
      assert.is_table(again)
      assert.is_nil(err)
    end)

    it("cancels the call a task waits on; the task goes on with nil, err", function()
      local c = h.client(sb)
      assert(c:token())
      sb:latency(300)
      local task = c:spawn(function()
        local data, err = c:get("users")
        return data, err and err.kind
      end)
      assert.is_false(task:done())
      assert.is_true(task:cancel())
      local data, kind = task:result()
      assert.is_nil(data)
      assert.equals("cancelled", kind)
      assert.is_false(task:cancel())
    end)

    it("a cancelled call that started the token request does not break the two others waiting on it", function()
      local c = h.client(sb) -- no token yet: the first call starts the shared token request
      sb:latency(300)
      local reqs = {}
      for i = 1, 3 do reqs[i] = c:async { path = "users" } end
      assert.is_true(reqs[1]:cancel())
      local _, err1 = reqs[1]:result()
      assert.equals("cancelled", err1.kind)
      for i = 2, 3 do
        local data, err = reqs[i]:result()
        assert.is_nil(err)
        assert.is_table(data.items)
      end
      assert.equals(1, sb:stats().token_requests)
    end)
  end)

  describe("deadline", function()
    it("ends a call to a server that never answers at the deadline, not at timeout x attempts", function()
      local url, close = silent_server()
      local c = achievers.client { base_url = url, timeout = 30, retries = 2, deadline = 2,
        token = { access_token = "x", expires_at = os.time() + 86400 } }
      local t0 = socket.gettime()
      local data, err = c:get("users")
      local took = socket.gettime() - t0
      close()
      assert.is_nil(data)
      assert.equals("timeout", err.kind)
      assert.is_true(took >= 1.9 and took < 10, "took " .. took)
      assert.matches("deadline", err.message, 1, true)
      assert.matches("after 1 attempt", err.message, 1, true)
      assert.equals(1, err.attempts)
    end)

    it("is a request field too, and counts the retries' waits", function()
      local c = h.client(sb, { retries = 5 })
      assert(c:token())
      sb:fail { count = 10, status = 503, retry_after = 1, path = "/api/v5/users" }
      local t0 = socket.gettime()
      local data, err = c:request { path = "users", deadline = 1.5 }
      local took = socket.gettime() - t0
      assert.is_nil(data)
      -- the second wait would pass the deadline: not attempted
      assert.equals(2, err.attempts)
      assert.is_true(took < 1.5, "took " .. took)
      raises("'deadline' must be a number of seconds", function() c:request { path = "users", deadline = 0 } end)
    end)

    it("a pacing wait that would pass the deadline is not waited for", function()
      local c = h.client(sb, { limits = { default = { 1, 60 }, heavy = { 1, 60 } }, deadline = 1 })
      assert(c:get("users/10726811"))
      local t0 = socket.gettime()
      local data, err = c:get("users/10726811")
      local took = socket.gettime() - t0
      assert.is_nil(data)
      assert.equals("timeout", err.kind)
      assert.matches("rate-limit pacing", err.message, 1, true)
      assert.is_true(took < 0.9, "took " .. took)
    end)

    it("ends a call waiting on a token request that does not come at its deadline", function()
      local url, close = silent_server()
      local c = achievers.client { base_url = url, client_id = "id", client_secret = "secret",
        timeout = 30, retries = 0 }
      local t0 = socket.gettime()
      local data, err = c:request { path = "users", deadline = 0.5 }
      local took = socket.gettime() - t0
      assert.is_nil(data)
      assert.equals("timeout", err.kind)
      assert.matches("waited for a token", err.message, 1, true)
      assert.is_true(took >= 0.45 and took < 5, "took " .. took)
      -- the token request it waited on was not its own: it goes on (until its own timeout)
      local req = c:async { path = "users", deadline = 0.3 }
      local _, err2 = req:result()
      assert.equals("timeout", err2.kind)
      close()
    end)
  end)

  describe("err.attempts", function()
    it("counts the attempts of a call and the message says so after retries", function()
      local c = h.client(sb, { retries = 2 })
      assert(c:token())
      local _, nf = c:get("users/0")
      assert.equals("not_found", nf.kind)
      assert.equals(1, nf.attempts)
      assert.is_nil(tostring(nf):find("after", 1, true))
      sb:fail { count = 10, status = 503, path = "/api/v5/users" }
      local data, err = c:get("users")
      assert.is_nil(data)
      assert.equals(3, err.attempts)
      assert.matches("after 3 attempts", tostring(err), 1, true)
    end)
  end)

  describe("errors that help", function()
    it("a misspelled method names the one meant", function()
      local c = h.client(sb)
      raises("no method 'recognitons' (did you mean 'recognitions'?)", function() c:recognitons() end)
      raises("(did you mean 'get'?)", function() c:gte("users") end)
      assert.is_nil(c.something_else_entirely)
      assert.is_function(c.recognitions)
    end)

    it("each on an answer that is not a list says so", function()
      local c = h.client(sb)
      local n, ok, e = 0, nil, nil
      for item, err in c:each("users/10726811") do
        if item == false then ok, e = item, err break end
        n = n + 1
      end
      assert.equals(0, n)
      assert.is_false(ok)
      assert.matches("is not a list", e.message, 1, true)
    end)

    it("no '(retry after 0 s)' on an error", function()
      local c = h.client(sb, { retries = 0 })
      assert(c:token())
      sb:fail { count = 1, status = 503, retry_after = 0, path = "/api/v5/users" }
      local _, err = c:get("users")
      assert.equals("server", err.kind)
      assert.is_nil(tostring(err):find("retry after 0", 1, true), tostring(err))
    end)

    it("cuts a long URL in the message and keeps it whole in err.url", function()
      local c = h.client(sb, { retries = 0 })
      local long = string.rep("x", 3000)
      local _, err = c:get("users/" .. long)
      assert.is_table(err)
      assert.matches(long, err.url, 1, true)
      local line = tostring(err)
      assert.is_true(#line < 700, #line)
      assert.matches("... (", line, 1, true)
      assert.matches(" bytes)", line, 1, true)
    end)

    it("https:// to a plain-HTTP port says so, and does not advise insecure = true", function()
      local port = sb.url:match(":(%d+)$")
      local c = achievers.client { base_url = "https://127.0.0.1:" .. port, retries = 0,
        token = { access_token = "x", expires_at = os.time() + 86400 } }
      local _, err = c:get("users")
      assert.equals("tls", err.kind)
      assert.matches("plain HTTP", err.message, 1, true)
      assert.is_nil(err.message:find("insecure", 1, true), err.message)
    end)

    it("bounds numeric options", function()
      local base = sb.url
      raises("option 'retries' must be a finite number >= 0 and <= 10 (got 1000000000)",
        function() achievers.client { base_url = base, retries = 1e9 } end)
      raises("option 'timeout' must be a finite number >= 0.001 and <= 86400",
        function() achievers.client { base_url = base, timeout = 1e7 } end)
      raises("option 'timeout'", function() achievers.client { base_url = base, timeout = 0 } end)
      raises("option 'connect_timeout'", function() achievers.client { base_url = base, connect_timeout = 0 / 0 } end)
      raises("option 'max_concurrency' must be a finite number >= 1 and <= 256",
        function() achievers.client { base_url = base, max_concurrency = 1000 } end)
      raises("option 'frame_budget'", function() achievers.client { base_url = base, frame_budget = 1e6 } end)
      raises("option 'retry_max_wait'", function() achievers.client { base_url = base, retry_max_wait = 1e9 } end)
      raises("option 'deadline'", function() achievers.client { base_url = base, deadline = -1 } end)
      raises("option 'deadline'", function() achievers.client { base_url = base, deadline = math.huge } end)
      assert(achievers.client { base_url = base, retries = 10, max_concurrency = 256, deadline = 60,
        timeout = 86400 })
    end)
  end)

  describe("warm", function()
    -- n calls in flight at once: the sandbox answers slowly so that they overlap
    local function concurrent(c, n)
      sb:latency(150)
      local reqs = {}
      for i = 1, n do reqs[i] = c:async { path = "users" } end
      for i = 1, n do assert(reqs[i]:result()) end
      sb:latency(0)
    end

    it("opens n connections that n concurrent calls then use, with no new one", function()
      local c = h.client(sb, { max_concurrency = 8 })
      assert(c:token())
      local s0 = sb:stats().connections
      assert.equals(4, c:warm(4))
      socket.sleep(0.1)
      local s1 = sb:stats().connections
      assert.equals(4, s1 - s0)
      concurrent(c, 4)
      socket.sleep(0.1)
      assert.equals(s1, sb:stats().connections)
    end)

    it("without warm, concurrent calls open connections (the baseline)", function()
      local c = h.client(sb, { max_concurrency = 8 })
      assert(c:token())
      local s0 = sb:stats().connections
      concurrent(c, 4)
      socket.sleep(0.1)
      assert.is_true(sb:stats().connections - s0 >= 3)
    end)

    it("is bounded by max_concurrency and sends no token", function()
      local c = h.client(sb, { max_concurrency = 2 })
      assert.equals(2, c:warm(5))
      assert.equals(0, sb:stats().token_requests)
      raises("n must be >= 1", function() c:warm(0) end)
    end)
  end)
end)
