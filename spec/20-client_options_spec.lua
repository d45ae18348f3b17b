-- Misuse raises with a message that names the option; nothing needs a server here.
local h = require("helpers")
local achievers = h.achievers

local function raises(pattern, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
end

describe("achievers.client options", function()
  local base = "https://example.sandbox.achievers.com"

  it("exposes the module contract", function()
    assert.equals("0.1.0", achievers._VERSION)
    assert.is_function(achievers.client)
    assert.is_function(achievers.token)
    assert.is_not_nil(achievers.null)
    assert.matches("read", achievers.pretty({ scope = "read", access_token = "abc" }))
    assert.is_nil(achievers.pretty({ access_token = "abcdef" }):find("abcdef", 1, true))
  end)

  it("requires base_url", function()
    raises("option 'base_url' is required", function() achievers.client {} end)
    raises("bad argument", function() achievers.client() end)
  end)

  it("rejects unknown options and wrong types, naming them", function()
    raises("unknown option 'tiemout'", function() achievers.client { base_url = base, tiemout = 3 } end)
    raises("option 'timeout' must be a number", function() achievers.client { base_url = base, timeout = "3" } end)
    raises("option 'retries' must be a number", function() achievers.client { base_url = base, retries = {} } end)
    raises("option 'retries' must be an integer", function() achievers.client { base_url = base, retries = 1.5 } end)
    raises("option 'rate_limit' must be a boolean", function() achievers.client { base_url = base, rate_limit = 1 } end)
    raises("option 'on_token' must be a function", function() achievers.client { base_url = base, on_token = "f" } end)
    raises("option 'token_auth' must be", function() achievers.client { base_url = base, token_auth = "digest" } end)
    raises("option 'scope' has a bad entry", function() achievers.client { base_url = base, scope = { "read", "" } } end)
    raises("option 'max_concurrency' must be a finite number >= 1", function()
      achievers.client { base_url = base, max_concurrency = 0 }
    end)
    raises("option 'frame_budget' must be a finite number >= 0", function()
      achievers.client { base_url = base, frame_budget = -1 }
    end)
    raises("option 'limits' takes", function() achievers.client { base_url = base, limits = { fast = { 1, 1 } } } end)
    raises("option 'client_secret' must not contain CR", function()
      achievers.client { base_url = base, client_secret = "a\r\nb" }
    end)
  end)

  it("accepts http:// only for loopback hosts unless allow_http is set", function()
    raises("option 'base_url' uses http://", function() achievers.client { base_url = "http://example.com" } end)
    assert.is_not_nil(achievers.client { base_url = "http://127.0.0.1:8080" })
    assert.is_not_nil(achievers.client { base_url = "http://localhost:8080" })
    assert.is_not_nil(achievers.client { base_url = "http://example.com", allow_http = true })
    raises("option 'base_url' must start with https://", function() achievers.client { base_url = "ftp://x" } end)
    raises("option 'base_url' must not contain a query", function() achievers.client { base_url = base .. "?a=1" } end)
  end)

  it("keeps the program root when base_url ends with /api/v5", function()
    local c = achievers.client { base_url = base .. "/api/v5/" }
    assert.equals(base, c.base_url)
  end)

  it("joins a scope list with commas (the Achievers form)", function()
    assert.equals("read,write", achievers.client { base_url = base, scope = { "read", "write" } }.scope)
    assert.equals("read,write", achievers.client { base_url = base, scope = "read write" }.scope)
    assert.equals("read", achievers.client { base_url = base }.scope)
  end)

  it("refuses bad request tables", function()
    local c = achievers.client { base_url = base }
    raises("unknown field 'pth'", function() c:request { pth = "users" } end)
    raises("'path' must be a string", function() c:request { method = "GET" } end)
    raises("'method' must be an upper%-case", function() c:request { method = "get", path = "users" } end)
    raises("only one of", function() c:request { path = "x", form = {}, json = {} } end)
    raises("must not contain CR, LF or NUL", function()
      c:request { path = "users", headers = { ["X-A"] = "a\r\nInjected: 1" } }
    end)
    raises("header name", function() c:request { path = "users", headers = { ["X A"] = "v" } } end)
    raises("must not contain spaces or control characters", function() c:get("users/1\r\nX: y") end)
    raises("another host", function() c:get("https://evil.example.net/api/v5/users") end)
    raises("cannot be form%-encoded", function() c:get("users", { q = function() end }) end)
    raises("'timeout' must be a number", function() c:request { path = "users", timeout = 0 } end)
  end)
end)

describe("achievers.token", function()
  it("rebuilds a token from a saved table and knows its expiry", function()
    local now = os.time()
    local t = achievers.token { access_token = "abc123", expires_at = now + 3 * 3600, scope = "read" }
    assert.equals("abc123", t.access_token)
    assert.equals("bearer", t.token_type)
    assert.equals("read", t.scope)
    assert.equals(now + 3 * 3600, t.expires_at)
    assert.is_true(math.abs(t:expires_in() - 3 * 3600) <= 2)
    assert.is_false(t:is_expired())
    assert.is_false(t:needs_refresh())
    assert.is_true(t:needs_refresh(4 * 3600))
    local again = achievers.token(t:to_table())
    assert.same(t:to_table(), again:to_table())
  end)

  it("knows an expired token", function()
    local t = achievers.token { access_token = "x", expires_at = os.time() - 10 }
    assert.is_true(t:is_expired())
    assert.is_true(t:expires_in() < 0)
    assert.matches("expired", tostring(t))
  end)

  it("never shows the token in tostring", function()
    local t = achievers.token { access_token = "s3cr3t-token-value", expires_at = os.time() + 86400 * 14 }
    local s = tostring(t)
    assert.matches("^achievers%.token%(bearer, ", s)
    assert.matches("in 1[34]d", s)
    assert.is_nil(s:find("s3cr3t", 1, true))
  end)

  it("raises on a bad table, naming the field", function()
    raises("access_token", function() achievers.token {} end)
    raises("expires_at", function() achievers.token { access_token = "x" } end)
    raises("token_type", function() achievers.token { access_token = "x", expires_at = 1, token_type = "mac" } end)
  end)

  it("cannot refresh without a client", function()
    local t = achievers.token { access_token = "x", expires_at = os.time() + 10 }
    raises("needs the client", function() t:refresh() end)
  end)
end)
