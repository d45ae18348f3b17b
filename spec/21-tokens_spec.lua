-- client_credentials tokens against the sandbox: caching, the refresh window, the reissue
-- rule, both expires_in forms, the token request's shape.
local h = require("helpers")
local achievers = h.achievers
local cjson = require("cjson")

describe("client:token()", function()
  local sb
  before_each(function() sb = h.start_sandbox() end)
  after_each(function() sb:stop() end)

  it("gets a system token with the fields of the contract", function()
    local c = h.client(sb)
    local tok, err = c:token()
    assert.is_nil(err)
    assert.is_string(tok.access_token)
    assert.equals("bearer", tok.token_type)
    assert.equals("read", tok.scope)
    assert.equals("client_credentials", tok.grant_type)
    assert.is_true(_VERSION < "Lua 5.3" or math.type(tok.expires_at) == "integer")
    -- 14 days
    assert.is_true(math.abs(tok:expires_in() - 14 * 86400) <= 5)
    assert.is_false(tok:needs_refresh())
  end)

  it("sends a JSON body with the credentials plus Basic, as the Authentication page says", function()
    local c = h.client(sb, { scope = { "read", "write" } })
    assert(c:token())
    local r = h.last_request(sb, "/token")
    assert.matches("^application/json", r.headers["content-type"])
    local body = cjson.decode(r.body)
    assert.same({ grant_type = "client_credentials", scope = "read,write",
      client_id = sb.client_id, client_secret = sb.client_secret }, body)
    assert.matches("^Basic ", r.headers["authorization"])
  end)

  it("sends form bodies for token_auth = basic and post", function()
    local c = h.client(sb, { token_auth = "basic", scope = { "read", "write" } })
    assert(c:token())
    local r = h.last_request(sb, "/token")
    assert.matches("^application/x%-www%-form%-urlencoded", r.headers["content-type"])
    assert.equals("grant_type=client_credentials&scope=read%20write", r.body)
    assert.matches("^Basic ", r.headers["authorization"])

    c = h.client(sb, { token_auth = "post" })
    assert(c:token())
    r = h.last_request(sb, "/token")
    assert.is_nil(r.headers["authorization"])
    assert.matches("client_id=" .. sb.client_id, r.body, 1, true)
  end)

  it("makes one token request for two token() calls and a request", function()
    local c = h.client(sb)
    local t1 = assert(c:token())
    local t2 = assert(c:token())
    assert(c:get("users"))
    assert.equals(t1.access_token, t2.access_token)
    assert.equals(1, sb:stats().token_requests)
  end)

  it("refreshes a token within the window once, and the server's same token ends it", function()
    local c = h.client(sb)
    local t1 = assert(c:token())
    -- 13 days 23 hours later: inside the 2-hour window
    sb:advance(14 * 86400 - 3600)
    assert(c:get("users"))
    assert(c:get("users"))
    local t2 = assert(c:token())
    assert.are_not.equal(t1.access_token, t2.access_token)
    assert.equals(2, sb:stats().token_requests)
    assert.is_true(t2:expires_in() > 13 * 86400)
  end)

  it("does not loop when the server hands back the same token inside our window", function()
    -- a client window wider than the server's reissue window: the server returns the same token
    local c = h.client(sb, { refresh_window = 5 * 86400 })
    local t1 = assert(c:token())
    sb:advance(10 * 86400) -- 4 days left: inside our window, outside the server's 2 hours
    for _ = 1, 5 do assert(c:get("users")) end
    local t2 = assert(c:token())
    assert.equals(t1.access_token, t2.access_token)
    assert.equals(2, sb:stats().token_requests) -- one refresh attempt, not one per call
  end)

  it("understands relative expires_in", function()
    local rel = h.start_sandbox { expires = "relative" }
    local c = h.client(rel)
    local tok = assert(c:token())
    rel:stop()
    assert.is_true(math.abs(tok:expires_in() - 14 * 86400) <= 5)
    assert.is_true(math.abs(tok.expires_at - (os.time() + 14 * 86400)) <= 5)
  end)

  it("understands absolute expires_in", function()
    local c = h.client(sb)
    local tok = assert(c:token())
    local r = sb:requests()
    assert.is_true(math.abs(tok.expires_at - (sb:time() + 14 * 86400)) <= 2)
    assert.is_not_nil(r)
  end)

  it("reuses a saved token and calls on_token for new ones", function()
    local seen = {}
    local c = h.client(sb, { on_token = function(t) seen[#seen + 1] = t:to_table() end })
    local tok = assert(c:token())
    assert.equals(1, #seen)
    assert.equals(tok.access_token, seen[1].access_token)
    local c2 = h.client(sb, { token = seen[1] })
    assert(c2:get("users"))
    assert.equals(1, sb:stats().token_requests)
  end)

  it("tok:refresh() gets a fresh token through its client", function()
    local c = h.client(sb)
    local t1 = assert(c:token())
    sb:advance(14 * 86400 - 600)
    local t2 = assert(t1:refresh())
    assert.are_not.equal(t1.access_token, t2.access_token)
    assert.equals(2, sb:stats().token_requests)
  end)

  it("maps token endpoint errors to auth", function()
    local c = h.client(sb, { client_secret = "wrong" })
    local tok, err = c:token()
    assert.is_nil(tok)
    assert.equals("auth", err.kind)
    assert.equals("invalid_client", err.code)
    assert.equals(401, err.status)
    local d, e2 = c:get("users")
    assert.is_nil(d)
    assert.equals("auth", e2.kind)
  end)

  it("maps a bad scope to invalid", function()
    local c = h.client(sb, { scope = "admin" })
    local tok, err = c:token()
    assert.is_nil(tok)
    assert.equals("invalid", err.kind)
    assert.equals("invalid_scope", err.code)
  end)

  it("fails with auth when it has no credentials to get a token", function()
    local c = achievers.client { base_url = sb.url }
    local d, err = c:get("users")
    assert.is_nil(d)
    assert.equals("auth", err.kind)
    assert.equals(0, sb:stats().requests)
  end)
end)
