-- Input safety: CR or LF (or NUL) in a header value, a path, a query string, a path parameter
-- or an option is refused before anything is sent (misuse: it raises); path parameters are
-- percent-encoded; an answer larger than max_response_size (default 8 MiB) is a decode error,
-- not an out-of-memory.
local h = require("helpers")
local r = require("support.reliability")
local achievers = h.achievers

describe("input safety", function()
  local sb, c
  setup(function()
    sb = h.start_sandbox()
    c = h.client(sb)
    assert(c:token())
  end)
  teardown(function() sb:stop() end)

  local function refused(fn, what)
    local before = sb:stats().requests
    local ok, msg = pcall(fn)
    assert.is_false(ok, what)
    assert.is_string(msg)
    assert.equals(before, sb:stats().requests, what .. ": something was sent")
  end

  it("refuses CR, LF and NUL in header values and names", function()
    for _, v in ipairs({ "a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b" }) do
      refused(function() c:request { path = "users", headers = { ["X-Trace"] = v } } end, ("value %q"):format(v))
    end
    for _, k in ipairs({ "X-A\r\nX-B", "X A", "X:A", "" }) do
      refused(function() c:request { path = "users", headers = { [k] = "v" } } end, ("name %q"):format(k))
    end
    refused(function() c:request { method = "POST", path = "uploads", body = "x", content_type = "text/plain\r\nX: 1" } end,
      "content_type")
  end)

  it("refuses CR, LF, NUL, spaces and control characters in a path", function()
    for _, p in ipairs({ "users\r\nX: 1", "users\n", "users 1", "users\0", "users\t", "users\127" }) do
      refused(function() c:get(p) end, ("path %q"):format(p))
    end
  end)

  it("refuses CR, LF and NUL in a query string, and encodes a query table", function()
    refused(function() c:get("users", "q=a\r\nX: 1") end, "query string")
    assert(c:get("users", { q = "a\r\nX-Injected: 1 &page=2" }))
    local req = h.last_request(sb, "/api/v5/users")
    assert.is_nil(req.headers["x-injected"])
    assert.equals("q=a%0D%0AX-Injected%3A%201%20%26page%3D2", req.query)
  end)

  it("percent-encodes path parameters and refuses CR/LF in them", function()
    local _, err = c:user("a/b?c=d#e f")
    assert.equals("not_found", err.kind)
    local req = h.last_request(sb)
    assert.equals("/api/v5/users/a%2Fb%3Fc%3Dd%23e%20f", req.path)
    assert.equals("", req.query)
    for _, id in ipairs({ "1\r\nX: 1", "1\n", "1\0" }) do
      refused(function() c:user(id) end, ("id %q"):format(id))
    end
    -- integral numbers go without ".0"
    assert(c:user(10726811.0))
    assert.equals("/api/v5/users/10726811", h.last_request(sb).path)
  end)

  it("a callback whose code holds a NUL byte is nil, err, not a raise", function()
    -- regression (found by fuzz_query): the query comes from the browser, so it is data
    for _, q in ipairs({ "code=a%00b&state=s", { code = "a\0b", state = "s" } }) do
      local ok, tok, err = pcall(c.handle_callback, c, q, "s")
      assert.is_true(ok, tostring(tok))
      assert.is_nil(tok)
      assert.equals("invalid", err.kind)
    end
  end)

  it("a Retry-After date centuries ahead is capped and prints as a sane number", function()
    -- regression (found by fuzz_exchange under UBSan): (int) cast of about 6e10
    local url, stop = r.scripted_server("far_retry")
    local cl = achievers.client { base_url = url, token = { access_token = "x", expires_at = os.time() + 86400 } }
    local t0 = r.now()
    local _, err = cl:get("users")
    stop()
    assert.is_true(r.now() - t0 < 2) -- beyond retry_max_wait: not waited for
    assert.equals("server", err.kind)
    assert.is_true(err.retry_after > 0 and err.retry_after <= 1e9, tostring(err.retry_after))
    assert.is_nil(tostring(err):match("retry after %-"), tostring(err))
  end)

  it("a saved token with an out-of-range expires_at is not expired", function()
    -- regression (found by fuzz_json under UBSan): unchecked cast to int64_t
    assert.is_false(achievers.token({ access_token = "a", expires_at = 1e60 }):is_expired())
    assert.is_true(achievers.token({ access_token = "a", expires_at = -1e60 }):is_expired())
  end)

  it("refuses CR/LF in options that end up in headers", function()
    for _, opt in ipairs({ { client_id = "a\r\nb" }, { client_secret = "a\nb" }, { user_agent = "ua\r\nX: 1" },
                           { scope = "read\r\nX: 1" }, { redirect_uri = "http://x/\r\n" } }) do
      local k = next(opt)
      assert.has_error(function() h.client(sb, opt) end, nil, k)
    end
  end)

  describe("max_response_size", function()
    local url, stop
    setup(function() url, stop = r.scripted_server("huge") end)
    teardown(function() stop() end)

    local function client(extra)
      local opts = { base_url = url, retries = 0, token = { access_token = "x", expires_at = os.time() + 86400 } }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return achievers.client(opts)
    end

    it("an answer over the default (8 MiB) is decode, with or without a length", function()
      for _, path in ipairs({ "huge", "huge-unsized" }) do
        local data, err = client():get(path)
        assert.is_nil(data)
        assert.equals("decode", err.kind, path)
        assert.matches("max_response_size", err.message)
        assert.matches("8388608", err.message)
      end
    end)

    it("a larger max_response_size takes it", function()
      local data, err = client({ max_response_size = 40 * 1024 * 1024 }):get("huge")
      assert.is_nil(err)
      assert.equals(33 * 1024 * 1024, #data.items)
    end)

    it("a small one refuses an ordinary page from the sandbox, without retrying", function()
      -- regression: an oversized answer was retried like a network error (downloaded again)
      local hook, events = r.recorder()
      local small = h.client(sb, { max_response_size = 1000, retries = 2, on_request = hook,
        token = assert(c:token()) })
      local data, err = small:get("users", { pageSize = 100 })
      assert.is_nil(data)
      assert.equals("decode", err.kind)
      assert.matches("max_response_size", err.message)
      assert.equals(0, #r.phase(events, "retry"))
    end)
  end)
end)
