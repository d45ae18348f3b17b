-- The authorization_code flow end to end against the sandbox.
local h = require("helpers")

describe("authorization_code flow", function()
  local sb, c
  before_each(function()
    sb = h.start_sandbox()
    c = h.client(sb, { redirect_uri = "http://127.0.0.1:9/callback", scope = "read,write" })
  end)
  after_each(function() sb:stop() end)

  it("builds the authorize URL with a random 128-bit state", function()
    local url, state = c:authorize_url()
    assert.matches("^" .. sb.url:gsub("%p", "%%%0") .. "/oauth/v2/openIDConnectClient/authorize%?", url)
    assert.matches("response_type=code", url)
    assert.matches("client_id=" .. sb.client_id, url, 1, true)
    assert.matches("scope=read%2Cwrite", url, 1, true)
    assert.matches("redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback", url, 1, true)
    assert.matches("^%x+$", state)
    assert.equals(32, #state)
    local _, other = c:authorize_url()
    assert.are_not.equal(state, other)
    local _, given = c:authorize_url { state = "mine" }
    assert.equals("mine", given)
  end)

  it("turns a consented code into a user token and acts as that user", function()
    local url, state = c:authorize_url()
    assert.is_string(url)
    local code = sb:consent { user = "adele.olson", scope = "read,write" }
    local tok, err = c:handle_callback("code=" .. code .. "&state=" .. state, state)
    assert.is_nil(err)
    assert.equals("authorization_code", tok.grant_type)
    assert.equals("read,write", tok.scope)
    local user = c:with_token(tok)
    local me = assert(user:get("users/10726811"))
    assert.equals("adele.olson", me.username)
    -- the user client acts with the user token, not a system one
    local r = h.last_request(sb, "/users/10726811")
    assert.equals("Bearer " .. tok.access_token, r.headers["authorization"])
    assert.equals(1, sb:stats().token_requests)
  end)

  it("a with_token client never becomes the program, even from a saved table without grant_type", function()
    local _, state = c:authorize_url()
    local code = sb:consent { user = "adele.olson", scope = "read,write" } -- no challenge: no verifier
    local tok = assert(c:handle_callback("code=" .. code .. "&state=" .. state, state))
    local saved = tok:to_table()
    saved.grant_type = nil -- an app that keeps only some fields
    local user = c:with_token(saved)
    local before = sb:stats().token_requests
    sb:revoke { token = tok.access_token }
    local data, err = user:get("users/10726811")
    assert.is_nil(data)
    assert.equals("reauthorize", err.kind)
    assert.equals(before, sb:stats().token_requests, "no token request for the program on the person's behalf")
  end)

  it("calls on_token with the user token from exchange_code", function()
    local seen = {}
    local cl = h.client(sb, { on_token = function(t) seen[#seen + 1] = t end })
    local code = sb:consent { user = "adele.olson" }
    local tok = assert(cl:exchange_code(code))
    assert.equals(1, #seen)
    assert.equals(tok.access_token, seen[1].access_token)
    assert.equals("authorization_code", seen[1].grant_type)
  end)

  it("takes the whole redirect URL as the callback too", function()
    local _, state = c:authorize_url()
    local code = sb:consent { user = "brady.garfinkel" }
    local tok = assert(c:handle_callback("http://127.0.0.1:9/callback?code=" .. code .. "&state=" .. state, state))
    assert.equals("authorization_code", tok.grant_type)
  end)

  it("refuses a callback whose state does not match", function()
    local _, state = c:authorize_url()
    local code = sb:consent { user = "adele.olson" }
    local tok, err = c:handle_callback({ code = code, state = state .. "x" }, state)
    assert.is_nil(tok)
    assert.equals("state_mismatch", err.kind)
    tok, err = c:handle_callback({ code = code }, state)
    assert.equals("state_mismatch", err.kind)
    assert.equals(0, sb:stats().token_requests)
  end)

  it("reports a denied consent as access_denied", function()
    local _, state = c:authorize_url()
    local tok, err = c:handle_callback("error=access_denied&state=" .. state, state)
    assert.is_nil(tok)
    assert.equals("access_denied", err.kind)
  end)

  it("fails with auth for a code used twice", function()
    local code = sb:consent { user = "adele.olson" }
    assert(c:exchange_code(code))
    local tok, err = c:exchange_code(code)
    assert.is_nil(tok)
    assert.equals("auth", err.kind)
    assert.equals("invalid_grant", err.code)
  end)

  it("asks for re-authorization when a user token without refresh token expires", function()
    local user, tok = h.user_client(sb, c)
    sb:advance(15 * 86400)
    local d, err = user:get("users")
    assert.is_nil(d)
    assert.equals("reauthorize", err.kind)
    assert.equals(401, err.status)
    local t2, e2 = tok:refresh()
    assert.is_nil(t2)
    assert.equals("reauthorize", e2.kind)
  end)

  it("never sends a person's call as the program when their token has expired on our clock", function()
    -- a saved user token without a refresh token, past its expiry here: nothing can renew it
    -- but the person signing in again; the program's own token must not stand in for it
    local _, tok = h.user_client(sb, c)
    local saved = tok:to_table()
    saved.expires_at = os.time() - 10
    local user = c:with_token(saved)
    local before, calls = sb:stats().token_requests, sb:stats().requests
    local data, err = user:get("users")
    assert.is_nil(data)
    assert.equals("reauthorize", err.kind)
    assert.equals(before, sb:stats().token_requests, "no token request on the person's behalf")
    assert.equals(calls, sb:stats().requests, "nothing sent")
    local t2, e2 = user:token()
    assert.is_nil(t2)
    assert.equals("reauthorize", e2.kind)
    assert.equals(before, sb:stats().token_requests)
  end)

  it("refreshes a user token with its refresh token when the server gives one", function()
    local rsb = h.start_sandbox { refresh_tokens = true }
    local rc = h.client(rsb)
    local user, tok = h.user_client(rsb, rc)
    assert.is_string(tok.refresh_token)
    rsb:advance(14 * 86400 - 600)
    assert(user:get("users")) -- its Date header tells the client how late it is
    assert.equals(1, rsb:stats().token_requests)
    assert(user:get("users"))
    assert.equals(2, rsb:stats().token_requests)
    local last = h.last_request(rsb, "/token")
    assert.matches('"grant_type":"refresh_token"', last.body, 1, true)
    rsb:stop()
  end)
end)
