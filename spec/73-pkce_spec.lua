-- PKCE (RFC 7636, S256) end to end: the C client's authorize_url makes a verifier and sends its
-- challenge, handle_callback/exchange_code send the verifier; the sandbox keeps the challenge
-- with the code (from its consent page or from sb:consent{code_challenge=}) and refuses a code
-- exchange with a wrong, missing or unasked-for verifier; `pkce = false` sends none.
local h = require("helpers")
local http = require("sandbox_http")
local achievers = h.achievers

local B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url (no padding) of the bytes written as hex digits, in plain arithmetic (5.1 too).
local function b64url_of_hex(hex)
  local bytes = {}
  for x in hex:gmatch("%x%x") do bytes[#bytes + 1] = tonumber(x, 16) end
  local out = {}
  for i = 1, #bytes, 3 do
    local a, b, c = bytes[i], bytes[i + 1] or 0, bytes[i + 2] or 0
    local v = a * 65536 + b * 256 + c
    local chars = { math.floor(v / 262144) % 64, math.floor(v / 4096) % 64, math.floor(v / 64) % 64, v % 64 }
    local n = (bytes[i + 2] and 4) or (bytes[i + 1] and 3) or 2
    for k = 1, n do out[#out + 1] = B64URL:sub(chars[k] + 1, chars[k] + 1) end
  end
  return table.concat(out)
end

-- The S256 challenge of a verifier, computed here (SHA-256 from the module, the rest by hand).
local function challenge_of(verifier)
  return b64url_of_hex(achievers._sha256_hex(verifier))
end

local query_of, hidden_fields = http.query_of, http.hidden_fields

-- A person approving in a browser: the consent page of `url`, its form posted back (after
-- `tamper(form)` when given). Returns the redirect's query table, or the answer when none.
local function approve(sb, url, user, tamper)
  local page = assert(http.request(sb, "GET", url:sub(#sb.url + 1)))
  assert.equals(200, page.status, page.body)
  local form = hidden_fields(page.body)
  form.decision, form.username = "approve", user or "adele.olson"
  if tamper then tamper(form) end
  local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, { form = form }))
  if res.status ~= 302 then return nil, res end
  return query_of(res.headers["location"]), form
end

-- The last token request the sandbox received, its body decoded (JSON by default).
local function last_token_body(sb)
  local r = assert(h.last_request(sb, "/token"))
  return http.cjson.decode(r.body)
end

describe("PKCE (S256)", function()
  local sb, c

  setup(function()
    sb = h.start_sandbox { loopback_redirects = true }
  end)

  teardown(function()
    if sb then sb:stop() end
  end)

  before_each(function()
    c = h.client(sb, { scope = "read,write", redirect_uri = sb.url .. "/callback" })
  end)

  it("authorize_url returns url, state and a 43-character verifier whose S256 challenge the URL carries", function()
    local url, state, verifier = c:authorize_url()
    assert.is_string(state)
    assert.equals(43, #verifier)
    assert.matches("^[A-Za-z0-9_-]+$", verifier)
    local q = query_of(url)
    assert.equals("S256", q.code_challenge_method)
    assert.equals(challenge_of(verifier), q.code_challenge)
    assert.equals(state, q.state)
    -- a new verifier every time, never in the URL itself
    local url2, _, verifier2 = c:authorize_url()
    assert.are_not.equal(verifier, verifier2)
    assert.is_nil(url:find(verifier, 1, true))
    assert.is_nil(url2:find(verifier2, 1, true))
  end)

  it("the consent page carries the challenge; the code exchange sends the verifier and the sandbox checks it", function()
    local url, state, verifier = c:authorize_url()
    local q, form = approve(sb, url, "brady.garfinkel")
    assert.equals(query_of(url).code_challenge, form.code_challenge)
    assert.equals("S256", form.code_challenge_method)
    local tok, err = c:handle_callback(q, state, verifier)
    assert.is_truthy(tok, tostring(err))
    assert.equals(verifier, last_token_body(sb).code_verifier)
    -- the token acts as the person who approved
    local me = c:with_token(tok)
    local sent = assert(me:send_recognition { nominees = { "olivia.varga" }, recognitionText = "pkce", criterionId = 412 })
    assert.equals("brady.garfinkel", sent.nominator.username)
  end)

  it("the sandbox refuses a wrong verifier, and the code is spent afterwards", function()
    local url, state, verifier = c:authorize_url()
    local q = approve(sb, url)
    local _, _, other = c:authorize_url()
    local tok, err = c:handle_callback(q, state, other)
    assert.is_nil(tok)
    assert.equals("auth", err.kind)
    assert.equals("invalid_grant", err.code)
    assert.matches("code_verifier does not match", err.message, 1, true)
    tok, err = c:handle_callback(q, state, verifier)
    assert.is_nil(tok)
    assert.equals("invalid_grant", err.code)
  end)

  it("the sandbox refuses a missing verifier when the code was issued for a challenge", function()
    local url, state = c:authorize_url()
    local q = approve(sb, url)
    local tok, err = c:handle_callback(q, state)
    assert.is_nil(tok)
    assert.equals("invalid_grant", err.code)
    assert.matches("code_verifier: required", err.message, 1, true)
    assert.is_nil(last_token_body(sb).code_verifier)
  end)

  it("sb:consent{code_challenge=} stands in for the browser; a verifier without a challenge is refused", function()
    local _, _, verifier = c:authorize_url()
    local code = sb:consent { user = "adele.olson", scope = "read,write", code_challenge = challenge_of(verifier) }
    assert.is_truthy(c:exchange_code(code, verifier))
    -- a code issued without a challenge: sending a verifier for it is a downgrade, refused
    code = sb:consent { user = "adele.olson", scope = "read,write" }
    local tok, err = c:exchange_code(code, verifier)
    assert.is_nil(tok)
    assert.equals("invalid_grant", err.code)
    assert.has_error(function() sb:consent { code_challenge = "short" } end)
  end)

  it("the control surface's consent takes a code_challenge too", function()
    local _, _, verifier = c:authorize_url()
    local function consent(json)
      local res = assert(http.request(sb, "POST", "/__sandbox/consent",
        { headers = { ["X-Sandbox-Key"] = sb.admin_key }, json = json }))
      assert.equals(200, res.status, res.body)
      return res.json.code
    end
    local code = consent { user = "brady.garfinkel", code_challenge = challenge_of(verifier) }
    local tok, err = c:exchange_code(code)
    assert.is_nil(tok)
    assert.equals("invalid_grant", err.code)
    code = consent { user = "brady.garfinkel", code_challenge = challenge_of(verifier) }
    assert.is_truthy(c:exchange_code(code, verifier))
    local bad = assert(http.request(sb, "POST", "/__sandbox/consent",
      { headers = { ["X-Sandbox-Key"] = sb.admin_key }, json = { code_challenge = "plain-text" } }))
    assert.equals(400, bad.status)
  end)

  it("pkce = false sends no challenge and no verifier", function()
    local plain = h.client(sb, { scope = "read,write", pkce = false, redirect_uri = sb.url .. "/callback" })
    local url, state, verifier = plain:authorize_url()
    assert.is_nil(verifier)
    assert.is_nil(url:find("code_challenge", 1, true))
    local q, form = approve(sb, url)
    assert.is_nil(form.code_challenge)
    assert.is_truthy(plain:handle_callback(q, state))
    assert.is_nil(last_token_body(sb).code_verifier)
  end)

  it("sends the verifier in form bodies too (token_auth = \"basic\")", function()
    local fc = h.client(sb, { scope = "read,write", token_auth = "basic", redirect_uri = sb.url .. "/callback" })
    local url, state, verifier = fc:authorize_url()
    local q = approve(sb, url)
    assert.is_truthy(fc:handle_callback(q, state, verifier))
    local body = assert(h.last_request(sb, "/token")).body
    assert.matches("code_verifier=" .. verifier:gsub("%-", "%%-"), body)
  end)

  it("the sandbox takes only S256: plain, or a challenge without a method, is an invalid_request redirect", function()
    local base = http.AUTHORIZE_PATH .. "?" .. http.form { response_type = "code", client_id = sb.client_id,
      scope = "read", state = "s1", redirect_uri = sb.url .. "/callback", code_challenge = ("a"):rep(43) }
    for _, extra in ipairs { "&code_challenge_method=plain", "" } do
      local res = assert(http.request(sb, "GET", base .. extra))
      assert.equals(302, res.status)
      local q = query_of(res.headers["location"])
      assert.equals("invalid_request", q.error)
      assert.equals("s1", q.state)
    end
    local res = assert(http.request(sb, "GET", base:gsub(("a"):rep(43), "short") .. "&code_challenge_method=S256"))
    assert.equals("invalid_request", query_of(res.headers["location"]).error)
  end)

  it("the consent form's token covers the challenge: a swapped challenge gets no code", function()
    local url = c:authorize_url()
    local _, _, other = c:authorize_url()
    local q, res = approve(sb, url, nil, function(form) form.code_challenge = challenge_of(other) end)
    assert.is_nil(q)
    assert.equals(400, res.status)
    assert.matches("was not made by this page", res.body, 1, true)
  end)

  it("a strict sandbox (only what the docs show) ignores PKCE, as a server that knows none would", function()
    local strict = h.start_sandbox { strict = true, loopback_redirects = true }
    local sc = h.client(strict, { scope = "read,write", redirect_uri = strict.url .. "/callback" })
    local url, state, verifier = sc:authorize_url()
    local q, form = approve(strict, url)
    local tok, err = sc:handle_callback(q, state, verifier)
    strict:stop()
    assert.is_nil(form.code_challenge)
    assert.is_truthy(tok, tostring(err))
  end)

  it("refuses a malformed verifier as misuse", function()
    assert.has_error(function() c:exchange_code("abc", "too-short") end)
    assert.has_error(function() c:exchange_code("abc", ("a"):rep(42) .. " ") end)
    assert.has_error(function() c:handle_callback({ code = "abc", state = "s" }, "s", ("a"):rep(129)) end)
  end)
end)

describe("achievers login with PKCE", function()
  local cli = require("support.cli")
  local socket = require("socket")
  local sb, home, env

  setup(function()
    sb = h.start_sandbox { loopback_redirects = true }
    home, env = cli.private_env(sb)
  end)

  teardown(function()
    if home then os.execute("rm -rf " .. cli.q(home)) end
    if sb then sb:stop() end
  end)

  it("sends an S256 challenge in the URL it prints and the matching verifier with the code", function()
    local out, rc = home .. "/out", home .. "/rc"
    local cmd = string.format("%s %s bin/achievers login --wait 30 >%s 2>%s; echo $? >%s",
      cli.env_prefix(env), h.lua, cli.q(out), cli.q(home .. "/err"), cli.q(rc))
    os.execute(string.format("timeout 60 sh -c %s </dev/null >/dev/null 2>&1 &", cli.q(cmd)))
    local url
    for _ = 1, 200 do
      url = (cli.slurp(out) or ""):match("(http://%S+/authorize%?%S+)\n")
      if url then break end
      socket.sleep(0.05)
    end
    assert.is_string(url, "login printed no URL: " .. tostring(cli.slurp(home .. "/err")))
    local q = query_of(url)
    assert.equals("S256", q.code_challenge_method)
    assert.equals(43, #q.code_challenge)
    local redirect = assert(approve(sb, url))
    local location = q.redirect_uri .. "?code=" .. redirect.code .. "&state=" .. http.urlencode(redirect.state)
    local base, path = location:match("^(http://[^/]+)(/.*)$")
    local page = assert(http.request(base, "GET", path))
    assert.equals(200, page.status, page.body)
    local status
    for _ = 1, 200 do
      status = (cli.slurp(rc) or ""):match("%d+")
      if status then break end
      socket.sleep(0.05)
    end
    assert.equals("0", status, cli.slurp(home .. "/err"))
    local verifier = last_token_body(sb).code_verifier
    assert.equals(q.code_challenge, challenge_of(verifier))
  end)
end)
