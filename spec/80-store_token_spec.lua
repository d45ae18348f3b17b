-- The state store's token half (src/store/): with store = {redis = ...}, processes and hosts
-- that use one client_id share the system token through Redis: one token request for all,
-- one process at a time asking (a lock that lapses by itself), user tokens never shared.
-- A real redis-server runs on a free loopback port (spec/support/redis.lua).
local h = require("helpers")
local R = require("support.redis")

describe("state store option", function()
  local sb
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)

  it("takes \"memory\" and nil, and raises on anything it does not know", function()
    assert(h.client(sb, { store = "memory" }))
    assert(h.client(sb, {}))
    local bad = {
      { 5, "option 'store' must be" },
      { "redis", "option 'store' must be" },
      { {}, "needs redis" },
      { { redis = "http://127.0.0.1:6379" }, "redis:// URL" },
      { { redis = "redis://127.0.0.1:99999/0" }, "bad port" },
      { { redis = "redis://127.0.0.1:6379/x" }, "database number" },
      { { redis = "redis://127.0.0.1:6379/0", pasword = "x" }, "has no key 'pasword'" },
      { { redis = "redis://127.0.0.1:6379/0", fleet_size = 0 }, "fleet_size" },
      { { redis = "redis://127.0.0.1:6379/0", fleet_size = 2.5 }, "fleet_size" },
      { { redis = "redis://127.0.0.1:6379/0", prefix = "a{b}" }, "store.prefix" },
      { { redis = "redis://127.0.0.1:6379/0", timeout = "1" }, "store.timeout" },
    }
    for _, case in ipairs(bad) do
      local ok, err = pcall(h.client, sb, { store = case[1] })
      assert.is_false(ok)
      assert.matches(case[2], tostring(err), 1, true)
    end
  end)
end)

describe("state store on Redis: the token", function()
  local sb, r
  before_each(function()
    sb = h.start_sandbox()
    r = R.start()
  end)
  after_each(function()
    r:stop()
    sb:stop()
  end)

  it("two clients with one client_id share one token request", function()
    local a = h.client(sb, { store = { redis = r.url } })
    local b = h.client(sb, { store = { redis = r.url } })
    local ta = assert(a:token())
    local tb = assert(b:token())
    assert.equals(ta.access_token, tb.access_token)
    assert.equals(1, sb:stats().token_requests)
    -- the key names the client id as a hash tag and never the token; it lives as long as the token
    local keys = r:keys("achievers:*:token:*")
    assert.equals(1, #keys)
    assert.matches("^achievers:{" .. sb.client_id:gsub("%p", "%%%0") .. "}:token:%x+$", keys[1])
    local ttl = r:call("PTTL", keys[1])
    assert.is_true(ttl > 0 and ttl <= (ta:expires_in() + 5) * 1000, "ttl " .. tostring(ttl))
    for _, k in ipairs(r:keys()) do assert.is_nil(k:find(ta.access_token, 1, true)) end
  end)

  it("a prefix and a database of our own", function()
    local url = string.format("redis://127.0.0.1:%d/3", r.port)
    local a = h.client(sb, { store = { redis = url, prefix = "myapp" } })
    assert(a:token())
    assert.equals(0, #r:keys())
    r:call("SELECT", 3) -- (another connection: look through a client of db 3)
    local c = h.client(sb, { store = { redis = url, prefix = "myapp" } })
    assert(c:token())
    assert.equals(1, sb:stats().token_requests)
  end)

  it("a token another process left in Redis is used without a token request", function()
    local a = h.client(sb, { store = { redis = r.url } })
    local ta = assert(a:token())
    local n = sb:stats().token_requests
    for _ = 1, 3 do
      local c = h.client(sb, { store = { redis = r.url } })
      assert.equals(ta.access_token, assert(c:token()).access_token)
      assert(c:get("users"))
    end
    assert.equals(n, sb:stats().token_requests)
  end)

  -- A client stores its token in Redis; the stored text is then rewritten with its token
  -- made into what(token). Returns how many values were rewritten.
  local function plant(what)
    local a = h.client(sb, { store = { redis = r.url } })
    local ta = assert(a:token())
    local planted = 0
    for _, key in ipairs(r:keys("*")) do
      local v = r:call("GET", key)
      local at = type(v) == "string" and v:find(ta.access_token, 1, true)
      if at then
        r:call("SET", key, v:sub(1, at - 1) .. what(ta.access_token) .. v:sub(at + #ta.access_token), "EX", "3600")
        planted = planted + 1
      end
    end
    return planted
  end

  it("a token in Redis with CR, LF or control bytes is never sent: a new one is fetched", function()
    assert.equals(1, plant(function(tok) return tok .. "\r\nX-Injected: 1" end))
    local n = sb:stats().token_requests
    local c = h.client(sb, { store = { redis = r.url } })
    local tc = assert(c:token())
    assert.is_nil(tc.access_token:find("[%c ]"))
    assert(c:get("users"))
    local last = h.last_request(sb, "/api/v5/users")
    assert.is_nil(last.headers["x-injected"])
    assert.equals("Bearer " .. tc.access_token, last.headers["authorization"])
    assert.equals(n + 1, sb:stats().token_requests)
  end)

  it("a token in Redis with a NUL byte is not read as the bytes before it", function()
    assert.equals(1, plant(function(tok) return "planted\0" .. tok end))
    local n = sb:stats().token_requests
    local c = h.client(sb, { store = { redis = r.url } })
    local tc = assert(c:token())
    assert.are_not.equals("planted", tc.access_token)
    assert.is_nil(tc.access_token:find("%z"))
    assert.equals(n + 1, sb:stats().token_requests)
    -- and the bad text was replaced (compare-and-set on the bytes as read): the next process
    -- takes the new token from Redis, no request of its own
    local d = h.client(sb, { store = { redis = r.url } })
    assert.equals(tc.access_token, assert(d:token()).access_token)
    assert.equals(n + 1, sb:stats().token_requests)
    for _, key in ipairs(r:keys("*")) do
      local v = r:call("GET", key)
      if type(v) == "string" then assert.is_nil(v:find("planted", 1, true)) end
    end
  end)

  it("waits while another holds the token lock, and fetches once it lapses", function()
    local socket = require("socket")
    local a = h.client(sb, { store = { redis = r.url } })
    local probe = h.client(sb, { store = { redis = r.url } })
    assert(probe:token())
    -- a holder that died: its lock is there, no token is, and nobody will put one
    local tk = r:keys("achievers:*:token:*")[1]
    r:call("DEL", tk)
    r:call("SET", tk .. ":lock", "dead-holder", "PX", 1200)
    local n = sb:stats().token_requests
    local w0 = socket.gettime()
    local tok = assert(a:token())
    local waited = socket.gettime() - w0
    assert.is_true(waited >= 0.9 and waited < 10, "waited " .. waited) -- the lock's time
    assert.truthy(tok.access_token)
    assert.equals(n + 1, sb:stats().token_requests)
    assert.equals(0, r:call("EXISTS", tk .. ":lock")) -- ours, let go
    assert.equals(1, r:call("EXISTS", tk))
  end)

  it("looks again every 0.1 s while the lock is held: a short lock costs about its own time", function()
    local socket = require("socket")
    local probe = h.client(sb, { store = { redis = r.url } })
    assert(probe:token())
    local tk = r:keys("achievers:*:token:*")[1]
    r:call("DEL", tk)
    r:call("SET", tk .. ":lock", "another-process", "PX", 200)
    local a = h.client(sb, { store = { redis = r.url } })
    local w0 = socket.gettime()
    assert(a:token())
    local waited = socket.gettime() - w0
    assert.is_true(waited >= 0.15 and waited < 0.8, "waited " .. waited)
  end)

  it("never writes a user token to the shared key; its budgets are shared by hash", function()
    local c = h.client(sb, { store = { redis = r.url }, redirect_uri = "http://localhost/cb" })
    local uc, tok = h.user_client(sb, c)
    assert(uc:get("recognitions"))
    assert.equals(0, #r:keys("achievers:*:token:*"))
    local rate = r:keys("achievers:*:rate:*")
    assert.is_true(#rate >= 1)
    for _, k in ipairs(r:keys()) do
      assert.is_nil(k:find(tok.access_token, 1, true))
      local v = r:call("TYPE", k) == "string" and r:call("GET", k) or ""
      assert.is_nil(v:find(tok.access_token, 1, true))
    end
  end)

  it("a server rejects the shared token (401): one new token for all, not the bad one again", function()
    local a = h.client(sb, { store = { redis = r.url } })
    local b = h.client(sb, { store = { redis = r.url } })
    local t1 = assert(a:token()).access_token
    assert(b:token())
    sb:revoke(t1)
    assert(a:get("users"))
    local t2 = assert(a:token()).access_token
    assert.are_not.equal(t1, t2)
    -- b still holds t1: its 401 finds t2 in Redis, without a token request of its own
    local n = sb:stats().token_requests
    assert(b:get("users"))
    assert.equals(t2, assert(b:token()).access_token)
    assert.equals(n, sb:stats().token_requests)
  end)
end)

describe("state store on Redis: a clear error at client creation", function()
  local sb
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)

  it("for a wrong password, a missing one, a database Redis does not have", function()
    local r = R.start { password = "s3cret-pw" }
    finally(function() r:stop() end)
    local ok, err = pcall(h.client, sb, { store = { redis = r.url, password = "wrong-pw" } })
    assert.is_false(ok)
    assert.matches("refused the password", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("wrong-pw", 1, true))
    ok, err = pcall(h.client, sb, { store = { redis = r.url } })
    assert.is_false(ok)
    assert.matches("wants a password", tostring(err), 1, true)
    assert(h.client(sb, { store = { redis = r.url, password = "s3cret-pw" } }))
    ok, err = pcall(h.client, sb, { store = { redis = string.format("redis://:s3cret-pw@127.0.0.1:%d/999", r.port) } })
    assert.is_false(ok)
    assert.matches("refused the database", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("s3cret", 1, true))
  end)

  it("for a server that does not speak Redis", function()
    local port = sb.url:match(":(%d+)$")
    local ok, err = pcall(h.client, sb, { store = { redis = "redis://127.0.0.1:" .. port .. "/0" } })
    assert.is_false(ok)
    assert.matches("does not speak Redis", tostring(err), 1, true)
  end)
end)
