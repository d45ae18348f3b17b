-- The sandbox's token endpoint: encodings, client authentication, grants, RFC 6749 errors,
-- the reissue rule, both expires_in modes, refresh tokens, revocation.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")

local function b64(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({"", "==", "="})[#s % 3 + 1])
end

local function basic(id, secret)
  return "Basic " .. b64(id .. ":" .. secret)
end

describe("sandbox token endpoint", function()
  local sb

  before_each(function()
    sb = assert(sandbox.start{port = 0})
  end)

  after_each(function()
    sb:stop()
  end)

  it("issues a system token for the Authentication page's JSON body", function()
    local res = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"}))
    assert.equal(200, res.status)
    assert.equal("application/json; charset=utf-8", res.headers["content-type"])
    assert.equal("no-store", res.headers["cache-control"])
    assert.matches("^%x+$", res.json.access_token)
    assert.equal(40, #res.json.access_token)
    assert.equal(res.json.access_token:lower(), res.json.access_token)
    assert.equal("Bearer", res.json.token_type)
    assert.equal("read", res.json.scope)
    assert.equal(sb:time() + 14 * 24 * 3600, res.json.expires_in)
    assert.is_nil(res.json.refresh_token)
  end)

  it("accepts form bodies with the credentials in the body", function()
    local res = assert(http.request(sb, "POST", http.TOKEN_PATH, {form = {
      grant_type = "client_credentials", scope = "read write",
      client_id = sb.client_id, client_secret = sb.client_secret}}))
    assert.equal(200, res.status)
    assert.equal("read,write", res.json.scope)
  end)

  it("accepts HTTP Basic alone, and Basic together with matching body credentials", function()
    local res = assert(http.request(sb, "POST", http.TOKEN_PATH, {
      form = {grant_type = "client_credentials", scope = "write+read"},
      headers = {Authorization = basic(sb.client_id, sb.client_secret)}}))
    assert.equal(200, res.status)
    assert.equal("read,write", res.json.scope)
    res = assert(http.request(sb, "POST", http.TOKEN_PATH, {
      json = {grant_type = "client_credentials", client_id = sb.client_id, client_secret = sb.client_secret},
      headers = {Authorization = basic(sb.client_id, sb.client_secret)}}))
    assert.equal(200, res.status)
    assert.equal("read", res.json.scope, "the default scope is read")
  end)

  it("answers invalid_client (401) for wrong, missing or disagreeing credentials", function()
    local cases = {
      {json = {grant_type = "client_credentials", client_id = sb.client_id, client_secret = "nope"}},
      {json = {grant_type = "client_credentials", client_id = "sbx_other", client_secret = sb.client_secret}},
      {json = {grant_type = "client_credentials"}},
      {json = {grant_type = "client_credentials"}, headers = {Authorization = basic(sb.client_id, "bad")}},
      {json = {grant_type = "client_credentials", client_id = "sbx_other", client_secret = sb.client_secret},
       headers = {Authorization = basic(sb.client_id, sb.client_secret)}},
      {json = {grant_type = "client_credentials"}, headers = {Authorization = "Basic !!!"}},
    }
    for i, opts in ipairs(cases) do
      local res = assert(http.request(sb, "POST", http.TOKEN_PATH, opts))
      assert.equal(401, res.status, "case " .. i)
      assert.equal("invalid_client", res.json.error, "case " .. i)
      assert.is_string(res.json.error_description)
      if opts.headers then
        assert.matches("^Basic", res.headers["www-authenticate"], "case " .. i)
      end
    end
  end)

  it("answers RFC 6749 errors for bad grants, scopes and bodies", function()
    local res = assert(http.token_request(sb, {grant_type = "password"}))
    assert.equal(400, res.status)
    assert.equal("unsupported_grant_type", res.json.error)
    res = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "admin"}))
    assert.equal(400, res.status)
    assert.equal("invalid_scope", res.json.error)
    res = assert(http.token_request(sb, {scope = "read"}))
    assert.equal(400, res.status)
    assert.equal("invalid_request", res.json.error)
    res = assert(http.request(sb, "POST", http.TOKEN_PATH, {body = "{not json",
      headers = {["Content-Type"] = "application/json"}}))
    assert.equal(400, res.status)
    assert.equal("invalid_request", res.json.error)
    res = assert(http.request(sb, "POST", http.TOKEN_PATH, {body = "grant_type=client_credentials",
      headers = {["Content-Type"] = "text/plain"}}))
    assert.equal(400, res.status)
    assert.equal("invalid_request", res.json.error)
    res = assert(http.token_request(sb, {grant_type = "refresh_token", refresh_token = "x"}))
    assert.equal(400, res.status)
    assert.equal("unsupported_grant_type", res.json.error, "refresh tokens are off by default")
    res = assert(http.request(sb, "GET", http.TOKEN_PATH))
    assert.equal(405, res.status)
    assert.equal("POST", res.headers["allow"])
  end)

  it("reissues the same token until 2 hours before expiry, then a new one", function()
    local first = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"})).json
    local again = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"})).json
    assert.equal(first.access_token, again.access_token)
    assert.equal(first.expires_in, again.expires_in)
    -- another scope is another token
    local rw = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read,write"})).json
    assert.not_equal(first.access_token, rw.access_token)
    -- still more than 2 hours left: the same token
    sb:advance(14 * 24 * 3600 - 2 * 3600 - 60)
    again = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"})).json
    assert.equal(first.access_token, again.access_token)
    -- inside the 2-hour window: a new token, and the old one keeps working until it expires
    sb:advance(120)
    local fresh = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"})).json
    assert.not_equal(first.access_token, fresh.access_token)
    assert.equal(sb:time() + 14 * 24 * 3600, fresh.expires_in)
    assert.equal(200, assert(http.api(sb, "GET", "/users/10726811", first.access_token)).status)
    sb:advance(2 * 3600)
    local res = assert(http.api(sb, "GET", "/users/10726811", first.access_token))
    assert.equal(401, res.status)
    assert.matches('error="invalid_token"', res.headers["www-authenticate"])
    assert.equal(200, assert(http.api(sb, "GET", "/users/10726811", fresh.access_token)).status)
  end)

  it("gives expires_in as relative seconds when started with expires = 'relative'", function()
    local rel = assert(sandbox.start{port = 0, expires = "relative"})
    local res = assert(http.token_request(rel, {grant_type = "client_credentials"}))
    rel:stop()
    assert.equal(200, res.status)
    assert.equal(14 * 24 * 3600, res.json.expires_in)
  end)

  it("exchanges an authorization code once for a user token", function()
    local code = sb:consent{user = "brady.garfinkel", scope = "read,write"}
    assert.matches("^%x+$", code)
    local res = assert(http.token_request(sb, {grant_type = "authorization_code", code = code}))
    assert.equal(200, res.status)
    assert.equal("read,write", res.json.scope)
    -- the token acts as brady: OPTIONS /recognitions is per user
    local opts = assert(http.api(sb, "OPTIONS", "/recognitions", res.json.access_token))
    assert.equal(200, opts.status)
    res = assert(http.token_request(sb, {grant_type = "authorization_code", code = code}))
    assert.equal(400, res.status)
    assert.equal("invalid_grant", res.json.error)
    res = assert(http.token_request(sb, {grant_type = "authorization_code", code = "0123"}))
    assert.equal("invalid_grant", res.json.error)
    res = assert(http.token_request(sb, {grant_type = "authorization_code"}))
    assert.equal("invalid_request", res.json.error)
  end)

  it("expires authorization codes after 10 minutes of emulator time", function()
    local code = sb:consent{user = "adele.olson"}
    sb:advance(601)
    local res = assert(http.token_request(sb, {grant_type = "authorization_code", code = code}))
    assert.equal(400, res.status)
    assert.equal("invalid_grant", res.json.error)
  end)

  it("checks redirect_uri against the one the code was issued for", function()
    local code = sb:consent{user = "adele.olson", redirect_uri = sb.redirect_uri}
    local res = assert(http.token_request(sb, {grant_type = "authorization_code", code = code,
      redirect_uri = "http://127.0.0.1:9/other"}))
    assert.equal("invalid_grant", res.json.error)
  end)

  it("rejects consent for unknown users and scopes", function()
    assert.has_error(function() sb:consent{user = "no.body"} end, "consent: unknown user 'no.body'")
    assert.has_error(function() sb:consent{user = "adele.olson", scope = "admin"} end)
    assert.has_error(function() sb:consent{usr = "adele.olson"} end, "consent: unknown option 'usr'")
  end)

  it("issues and honours refresh tokens when started with refresh_tokens = true", function()
    local rsb = assert(sandbox.start{port = 0, refresh_tokens = true})
    local code = rsb:consent{user = "adele.olson", scope = "read,write"}
    local first = assert(http.token_request(rsb, {grant_type = "authorization_code", code = code})).json
    assert.matches("^%x+$", first.refresh_token)
    local sys = assert(http.token_request(rsb, {grant_type = "client_credentials"})).json
    assert.is_nil(sys.refresh_token)
    rsb:advance(14 * 24 * 3600 - 3600)
    local res = assert(http.token_request(rsb, {grant_type = "refresh_token", refresh_token = first.refresh_token}))
    assert.equal(200, res.status)
    assert.not_equal(first.access_token, res.json.access_token)
    assert.equal("read,write", res.json.scope)
    res = assert(http.token_request(rsb, {grant_type = "refresh_token", refresh_token = "bad"}))
    assert.equal("invalid_grant", res.json.error)
    rsb:stop()
  end)

  it("revokes one token or all of them", function()
    local a = http.system_token(sb, "read")
    local b = http.user_token(sb, "adele.olson", "read")
    assert.equal(1, sb:revoke{token = a})
    local res = assert(http.api(sb, "GET", "/users", a))
    assert.equal(401, res.status)
    assert.matches('error="invalid_token"', res.headers["www-authenticate"])
    assert.matches("revoked", res.json.error_description)
    assert.equal(200, assert(http.api(sb, "GET", "/users", b)).status)
    -- a new request after revocation gets a new token
    local a2 = http.system_token(sb, "read")
    assert.not_equal(a, a2)
    assert.equal(2, sb:revoke())
    assert.equal(401, assert(http.api(sb, "GET", "/users", b)).status)
    assert.equal(401, assert(http.api(sb, "GET", "/users", a2)).status)
  end)

  it("counts token requests", function()
    http.system_token(sb)
    http.system_token(sb)
    local st = sb:stats()
    assert.equal(2, st.token_requests)
    assert.equal(2, st.by_route["POST /token"])
  end)
end)
