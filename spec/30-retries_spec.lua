-- Retries and 401 recovery (README, Errors; doc/design.md), proved with the sandbox's faults and its
-- counters: what is retried, how often, after how long, and that a POST never runs twice.
local h = require("helpers")
local r = require("support.reliability")
local achievers = h.achievers

describe("retries", function()
  local sb
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)
  before_each(function() sb:reset() end)

  -- a client holding a token already, so that token requests stay out of the counts
  local function ready(extra)
    local hook, events = r.recorder()
    local opts = { on_request = hook }
    for k, v in pairs(extra or {}) do opts[k] = v end
    local c = h.client(sb, opts)
    assert(c:token())
    return c, events
  end

  it("a GET through two 503s succeeds in 3 attempts", function()
    local c, events = ready()
    sb:fail { count = 2, status = 503, path = "/api/v5/users" }
    local page, err = c:get("users")
    assert.is_nil(err)
    assert.is_table(page.items)
    assert.equals(3, h.route_count(sb, "GET /users"))
    local sent = r.phase(events, "request", "/api/v5/users")
    assert.equals(3, #sent)
    for i, ev in ipairs(sent) do assert.equals(i, ev.attempt) end
    local retries = r.phase(events, "retry", "/api/v5/users")
    assert.equals(2, #retries)
    for _, ev in ipairs(retries) do
      assert.equals("GET", ev.method)
      assert.is_true(ev.delay > 0 and ev.delay <= 1, "backoff " .. ev.delay)
    end
    local answers = r.phase(events, "response", "/api/v5/users")
    assert.same({ 503, 503, 200 }, { answers[1].status, answers[2].status, answers[3].status })
  end)

  it("backs off exponentially, with jitter", function()
    local c, events = ready({ retries = 3 })
    sb:fail { count = 3, status = 503, path = "/api/v5/users" }
    assert(c:get("users"))
    local d = {}
    for i, ev in ipairs(r.phase(events, "retry")) do d[i] = ev.delay end
    assert.equals(3, #d)
    -- base 0.25 s doubling, each somewhere in [50%, 100%] of its step
    assert.is_true(d[1] >= 0.125 - 1e-9 and d[1] <= 0.25 + 1e-9, d[1])
    assert.is_true(d[2] >= 0.25 - 1e-9 and d[2] <= 0.5 + 1e-9, d[2])
    assert.is_true(d[3] >= 0.5 - 1e-9 and d[3] <= 1 + 1e-9, d[3])
  end)

  it("retries are bounded: retries = N gives N + 1 attempts, then the error", function()
    for _, n in ipairs({ 0, 1, 3 }) do
      sb:reset()
      local c, events = ready({ retries = n })
      sb:fail { count = 10, status = 503, path = "/api/v5/users" }
      local page, err = c:get("users")
      assert.is_nil(page)
      assert.equals("server", err.kind)
      assert.equals(503, err.status)
      assert.equals(n + 1, h.route_count(sb, "GET /users"))
      assert.equals(n, #r.phase(events, "retry"))
    end
  end)

  it("retries GET on 429, 502, 503, 504 and network errors, not on 500 or 4xx", function()
    -- sb:reset() forgets every token, so each round takes a new client
    for _, status in ipairs({ 429, 502, 503, 504 }) do
      sb:reset()
      local c = ready({ retries = 1 })
      sb:fail { count = 1, status = status, path = "/api/v5/users", retry_after = status == 429 and 0 or nil }
      assert(c:get("users"), "status " .. status)
      assert.equals(2, h.route_count(sb, "GET /users"), "status " .. status)
    end
    for _, status in ipairs({ 500, 400, 403, 404 }) do
      sb:reset()
      local c = ready({ retries = 1 })
      sb:fail { count = 1, status = status, path = "/api/v5/users" }
      local _, err = c:get("users")
      assert.equals(status, err.status)
      assert.equals(1, h.route_count(sb, "GET /users"), "status " .. status)
    end
    -- a dropped connection: a fresh client, so libcurl cannot hide it by re-sending itself
    sb:reset()
    local fresh = h.client(sb, { retries = 1 })
    assert(fresh:token())
    sb:fail { count = 1, drop = true, path = "/api/v5/users" }
    assert(fresh:get("users"))
    assert.equals(2, h.route_count(sb, "GET /users"))
  end)

  it("retries token requests and OPTIONS", function()
    local c = h.client(sb)
    sb:fail { count = 1, status = 503, path = "/oauth/v2/openIDConnectClient/token" }
    assert(c:token())
    assert.equals(2, sb:stats().token_requests)
    local user = h.user_client(sb, c)
    sb:fail { count = 1, status = 502, path = "/api/v5/recognitions" }
    assert(user:request { method = "OPTIONS", path = "recognitions", query = { nominees = "brady.garfinkel" } })
    assert.equals(2, h.route_count(sb, "OPTIONS /recognitions"))
  end)

  it("honours Retry-After in seconds", function()
    local c, events = ready()
    sb:fail { count = 1, status = 503, retry_after = 1, path = "/api/v5/users" }
    local t0 = r.now()
    assert(c:get("users"))
    local elapsed = r.now() - t0
    assert.is_true(elapsed >= 0.95, "waited only " .. elapsed)
    assert.is_true(elapsed < 5, "waited " .. elapsed)
    local retries = r.phase(events, "retry")
    assert.equals(1, #retries)
    assert.equals(1, retries[1].delay)
  end)

  it("honours Retry-After as an HTTP date", function()
    local url, stop = r.scripted_server("date_retry")
    local hook, events = r.recorder()
    local c = achievers.client { base_url = url, on_request = hook,
      token = { access_token = "scripted", expires_at = os.time() + 86400 } }
    local t0 = r.now()
    local page, err = c:get("users")
    local elapsed = r.now() - t0
    stop()
    assert.is_nil(err)
    assert.is_table(page.items)
    local retries = r.phase(events, "retry")
    assert.equals(1, #retries)
    -- two seconds after the answer's Date header
    assert.equals(2, retries[1].delay)
    assert.is_true(elapsed >= 1.9, "waited only " .. elapsed)
    assert.is_true(elapsed < 6, "waited " .. elapsed)
  end)

  it("does not wait past retry_max_wait: a longer Retry-After comes back as the error at once", function()
    local c, events = ready({ retry_max_wait = 2 })
    sb:fail { count = 1, status = 503, retry_after = 30, path = "/api/v5/users" }
    local t0 = r.now()
    local page, err = c:get("users")
    assert.is_true(r.now() - t0 < 2)
    assert.is_nil(page)
    assert.equals("server", err.kind)
    assert.equals(30, err.retry_after)
    assert.equals(1, h.route_count(sb, "GET /users"))
    assert.equals(0, #r.phase(events, "retry"))
    -- within the cap it waits
    sb:fail { count = 1, status = 429, retry_after = 1, path = "/api/v5/users" }
    assert(c:get("users"))
    assert.equals(1, #r.phase(events, "retry"))
  end)

  it("the default retry_max_wait is 60 s", function()
    local c = ready()
    sb:fail { count = 1, status = 429, retry_after = 61, path = "/api/v5/users" }
    local t0 = r.now()
    local _, err = c:get("users")
    assert.is_true(r.now() - t0 < 2)
    assert.equals("rate_limited", err.kind)
    assert.equals(61, err.retry_after)
  end)

  describe("POST", function()
    local user, criterion
    before_each(function()
      local c = h.client(sb)
      user = h.user_client(sb, c)
      local options = assert(user:request { method = "OPTIONS", path = "recognitions",
        query = { nominees = "brady.garfinkel" } })
      criterion = options.items[1].criteria[1].id
    end)

    local function send()
      return user:post("recognitions", { nominees = { "brady.garfinkel" }, criterionId = criterion,
        recognitionText = "Thanks for the release night" })
    end

    local function posts()
      local n = 0
      for _, req in ipairs(sb:requests()) do
        if req.method == "POST" and req.path == "/api/v5/recognitions" then n = n + 1 end
      end
      return n
    end

    it("answered 503 is sent once", function()
      sb:fail { count = 1, status = 503, path = "/api/v5/recognitions" }
      local rec, err = send()
      assert.is_nil(rec)
      assert.equals("server", err.kind)
      assert.equals(1, h.route_count(sb, "POST /recognitions"))
      assert.equals(1, posts())
    end)

    it("answered 502 or 504 is sent once", function()
      for _, status in ipairs({ 502, 504 }) do
        local before = posts()
        sb:fail { count = 1, status = status, path = "/api/v5/recognitions" }
        local _, err = send()
        assert.equals(status, err.status)
        assert.equals(before + 1, posts())
      end
    end)

    it("whose connection drops is sent once", function()
      sb:fail { count = 1, drop = true, path = "/api/v5/recognitions" }
      local rec, err = send()
      assert.is_nil(rec)
      assert.equals("network", err.kind)
      assert.equals(1, h.route_count(sb, "POST /recognitions"))
      assert.equals(1, posts())
      -- and the same client's next POST (on a new connection) goes through once
      assert(send())
      assert.equals(2, posts())
    end)

    it("that times out is sent once", function()
      sb:latency(1500)
      local rec, err = user:request { method = "POST", path = "recognitions", timeout = 0.3,
        form = { nominees = "brady.garfinkel", criterionId = criterion, recognitionText = "slow" } }
      sb:latency(0)
      assert.is_nil(rec)
      assert.equals("timeout", err.kind)
      assert.equals(1, posts())
    end)

    it("answered 429 with Retry-After: 1 succeeds on the second attempt after at least 1 s", function()
      sb:fail { count = 1, status = 429, retry_after = 1, path = "/api/v5/recognitions" }
      local t0 = r.now()
      local rec, err = send()
      local elapsed = r.now() - t0
      assert.is_nil(err)
      assert.is_table(rec)
      assert.is_true(elapsed >= 0.95, "waited only " .. elapsed)
      assert.equals(2, h.route_count(sb, "POST /recognitions"))
    end)
  end)

  it("a POST whose connection is refused is retried, and lands once", function()
    -- nothing listens on the port at first; the retry hook starts a server there
    local port = h.free_port()
    local stop, stats
    local hook, events = r.recorder()
    local c = achievers.client { base_url = "http://127.0.0.1:" .. port, retries = 2,
      token = { access_token = "scripted", grant_type = "authorization_code", expires_at = os.time() + 86400 },
      on_request = function(ev)
        hook(ev)
        if ev.phase == "retry" and not stop then
          local _
          _, stop, stats = r.scripted_server("accept", port)
        end
      end }
    local rec, err = c:post("recognitions", { nominees = "brady.garfinkel", criterionId = 1, recognitionText = "x" })
    local counts = stats and stats().requests or {}
    if stop then stop() end
    assert.is_nil(err)
    assert.equals(1, rec.id)
    local errors = r.phase(events, "error")
    assert.equals(1, #errors)
    assert.equals("network", errors[1].kind)
    assert.equals(1, #r.phase(events, "retry"))
    assert.equals(2, #r.phase(events, "request"))
    assert.equals(1, counts["POST /api/v5/recognitions"])
  end)

  it("a POST to a port that stays closed is tried retries + 1 times, then network", function()
    local port = h.free_port()
    local hook, events = r.recorder()
    local c = achievers.client { base_url = "http://127.0.0.1:" .. port, retries = 2, on_request = hook,
      token = { access_token = "x", expires_at = os.time() + 86400 } }
    local rec, err = c:post("recognitions", { nominees = "a" })
    assert.is_nil(rec)
    assert.equals("network", err.kind)
    assert.equals(3, #r.phase(events, "request"))
    assert.equals(2, #r.phase(events, "retry"))
  end)

  it("concurrent calls that need a token share one token request, through its retries", function()
    local c = h.client(sb)
    sb:fail { count = 1, status = 503, path = "/oauth/v2/openIDConnectClient/token" }
    local list = {}
    for i = 1, 6 do list[i] = { path = "users", query = { page = i } } end
    for i, res in ipairs(c:batch(list)) do assert(res.data, "call " .. i .. ": " .. tostring(res.err)) end
    assert.equals(2, sb:stats().token_requests) -- the 503 and its retry, shared by all six
  end)

  describe("short-lived tokens", function()
    -- regression: a token living less than refresh_window (or expired on arrival) made every
    -- exchange ask for another one, without end; the scripted server hands out a new
    -- one-hour token per request and ends a loop after 20 with invalid_grant
    it("a token valid for an hour (less than refresh_window) is used, not asked again", function()
      local url, stop, stats = r.scripted_server("fresh_tokens")
      local c = achievers.client { base_url = url, client_id = "id", client_secret = "secret", retries = 0 }
      local tok = c:token()
      local page, err = c:get("users")
      local again = c:get("users")
      local s = stats()
      stop()
      assert.is_not_nil(tok)
      assert.is_nil(err)
      assert.is_table(page)
      assert.is_table(again)
      assert.equals(1, s.tokens)
    end)

    it("a token answer with an absurd expires_in (1e60) is usable, not a loop", function()
      local url, stop, stats = r.scripted_server("huge_expiry")
      local c = achievers.client { base_url = url, client_id = "id", client_secret = "secret", retries = 0 }
      local tok = assert(c:token())
      local page, err = c:get("users")
      local s = stats()
      stop()
      assert.is_nil(err)
      assert.is_table(page)
      assert.is_false(tok:is_expired())
      assert.equals(1, s.tokens)
    end)
  end)

  describe("401", function()
    it("a revoked token is replaced once and the call succeeds", function()
      local tokens = {}
      local c = h.client(sb, { on_token = function(t) tokens[#tokens + 1] = t end })
      local first = assert(c:token())
      local before = sb:stats().token_requests
      assert.is_true(sb:revoke {} >= 1)
      local page, err = c:get("users")
      assert.is_nil(err)
      assert.is_table(page.items)
      assert.equals(before + 1, sb:stats().token_requests)
      assert.equals(2, h.route_count(sb, "GET /users"))
      assert.equals(2, #tokens)
      assert.are_not.equal(first.access_token, tokens[2].access_token)
      -- the new token serves the next calls without another token request
      assert(c:get("users"))
      assert.equals(before + 1, sb:stats().token_requests)
    end)

    it("concurrent calls that all get 401 all recover, with one token request", function()
      -- regression: only the first recovered; the others found the token already dropped
      local c = h.client(sb)
      assert(c:token())
      local before = sb:stats().token_requests
      sb:revoke {}
      local list = {}
      for i = 1, 6 do list[i] = { path = "users", query = { page = i } } end
      for i, res in ipairs(c:batch(list)) do
        assert(res.data, "call " .. i .. ": " .. tostring(res.err))
      end
      assert.equals(before + 1, sb:stats().token_requests)
    end)

    it("a second 401 after the replacement is returned, not looped", function()
      local c = h.client(sb, { retries = 2 })
      assert(c:token())
      local before = sb:stats().token_requests
      sb:fail { count = 5, status = 401, path = "/api/v5/users" }
      local page, err = c:get("users")
      assert.is_nil(page)
      assert.equals("auth", err.kind)
      assert.equals(401, err.status)
      assert.equals(2, h.route_count(sb, "GET /users"))
      assert.equals(before + 1, sb:stats().token_requests)
    end)

    it("a 401 on a POST with a user token that has no refresh token is reauthorize, sent once", function()
      local c = h.client(sb, { scope = "read,write" })
      local user = h.user_client(sb, c)
      local options = assert(user:request { method = "OPTIONS", path = "recognitions",
        query = { nominees = "brady.garfinkel" } })
      sb:fail { count = 1, status = 401, path = "/api/v5/recognitions" }
      -- a user token with no refresh token cannot be replaced: reauthorize, sent once
      local rec, err = user:post("recognitions", { nominees = "brady.garfinkel",
        criterionId = options.items[1].criteria[1].id, recognitionText = "x" })
      assert.is_nil(rec)
      assert.equals("reauthorize", err.kind)
      assert.equals(1, h.route_count(sb, "POST /recognitions"))
    end)

    it("a 401 on a POST with a refreshable user token refreshes it and repeats the POST once", function()
      local rsb = h.start_sandbox { refresh_tokens = true }
      local c = h.client(rsb, { scope = "read,write" })
      local user, tok = h.user_client(rsb, c)
      assert.is_string(tok:to_table().refresh_token)
      local options = assert(user:request { method = "OPTIONS", path = "recognitions",
        query = { nominees = "brady.garfinkel" } })
      local before = rsb:stats().token_requests
      rsb:fail { count = 1, status = 401, path = "/api/v5/recognitions" }
      local rec, err = user:post("recognitions", { nominees = "brady.garfinkel",
        criterionId = options.items[1].criteria[1].id, recognitionText = "x" })
      local posts, tokens = h.route_count(rsb, "POST /recognitions"), rsb:stats().token_requests
      rsb:stop()
      assert.is_nil(err)
      assert.is_table(rec)
      assert.equals(2, posts) -- the refused one and the repeat
      assert.equals(before + 1, tokens)
    end)
  end)
end)
