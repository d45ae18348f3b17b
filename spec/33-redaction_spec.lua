-- Redaction: over a full flow (client credentials, the user flow with consent, a sent
-- recognition, a refresh, errors of every kind from 401 to a TLS failure), nothing the caller
-- can see (the on_request trace, on_token and on_rate_limit hooks, every field of every error
-- object, tostring of clients, tokens, errors and pending requests, achievers.pretty of the
-- results) holds an access token, a refresh token, the client secret, an authorization code
-- or an Authorization header value.
local h = require("helpers")
local r = require("support.reliability")
local tls = require("support.tls")
local achievers = h.achievers

-- base64, to find the Basic credentials in any form
local function b64(s)
  local t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((s:gsub(".", function(x)
    local bits, b = "", x:byte()
    for i = 8, 1, -1 do bits = bits .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return t:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

describe("redaction over a full flow", function()
  local sb, tsb, certs, cleanup
  setup(function()
    sb = h.start_sandbox { refresh_tokens = true, limits = { heavy = { 2, 1 } } }
    certs, cleanup = tls.make()
    tsb = h.start_sandbox { tls_cert = certs.cert, tls_key = certs.key }
  end)
  teardown(function()
    sb:stop()
    tsb:stop()
    cleanup()
  end)

  it("no secret anywhere the caller can look", function()
    local seen = {}        -- every value a hook or a call handed out
    local texts = {}       -- tostring and pretty renderings
    local secrets = { sb.client_secret, tsb.client_secret }
    local function keep(v)
      seen[#seen + 1] = v
      return v
    end
    local function show(v)
      texts[#texts + 1] = tostring(v)
      texts[#texts + 1] = achievers.pretty(v)
      keep(v)
    end
    local tokens = {}
    local function hooks(extra)
      local opts = {
        on_request = keep,
        on_token = function(t) tokens[#tokens + 1] = t; show(t) end,
        on_rate_limit = keep,
        scope = "read,write",
        redirect_uri = "http://127.0.0.1:9/callback",
      }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return opts
    end
    local function call(data, err)
      if data ~= nil then show(data) end
      if err ~= nil then show(err) end
      return data, err
    end

    -- client credentials, with retries through two 503s
    local c = h.client(sb, hooks())
    local systok = assert(c:token())
    show(c)
    show(systok)
    sb:fail { count = 2, status = 503, path = "/api/v5/users" }
    assert(call(c:get("users", { q = "ad" })))
    -- the governor (heavy limit 2 per second here) and its hook
    for _ = 1, 3 do assert(call(c:get("recognitions"))) end

    -- the user flow: authorize URL, consent, callback, a recognition, a refresh
    local url, state = c:authorize_url()
    texts[#texts + 1] = url
    local code = sb:consent { user = "adele.olson", scope = "read,write" }
    secrets[#secrets + 1] = code
    local usertok = assert(call(c:handle_callback("http://127.0.0.1:9/callback?code=" .. code .. "&state=" .. state, state)))
    local user = c:with_token(usertok)
    show(user)
    local options = assert(call(user:request { method = "OPTIONS", path = "recognitions",
      query = { nominees = "brady.garfinkel" } }))
    local rec = assert(call(user:post("recognitions", { nominees = { "brady.garfinkel" },
      criterionId = options.items[1].criteria[1].id, recognitionText = "Thanks for the release" })))
    assert.is_table(rec)
    local refreshed = assert(call(usertok:refresh()))
    show(refreshed)
    -- a revoked token is replaced through the refresh grant
    sb:revoke {}
    call(user:get("users/10726811"))

    -- the same code again (invalid_grant), a wrong state, a denial
    call(c:exchange_code(code))
    call(c:handle_callback({ code = code, state = "other" }, state))
    call(c:handle_callback("error=access_denied&state=" .. state, state))

    -- errors of each kind
    local retries0 = h.client(sb, hooks({ retries = 0 }))
    call(retries0:get("users/1"))                                            -- 404
    call(retries0:post("recognitions", { nominees = "brady.garfinkel" }))    -- 403 (system token)
    local bogus_token = "0000000000000000000000000000000000000bad"
    secrets[#secrets + 1] = bogus_token
    local bogus = achievers.client(hooks({ base_url = sb.url, retries = 0,
      token = { access_token = bogus_token, expires_at = os.time() + 86400 } }))
    call(bogus:get("users"))                                                -- 401
    sb:fail { count = 1, status = 429, retry_after = 3, path = "/api/v5/users" }
    call(retries0:get("users"))                                             -- 429
    sb:fail { count = 5, status = 503, path = "/api/v5/users" }
    call(c:get("users"))                                                    -- 503 after retries
    local dead = achievers.client(hooks({ base_url = "http://127.0.0.1:" .. h.free_port(),
      client_id = sb.client_id, client_secret = sb.client_secret }))
    call(dead:get("users"))                                                 -- network (token request)
    local tclient = h.client(tsb, hooks({ retries = 0 }))
    call(tclient:get("users"))                                              -- tls
    show(tclient)

    -- pending requests, before and after they finish
    local req = c:async { path = "users", query = { q = "br" } }
    show(req)
    local ureq = user:async { path = "users/10726811" }
    show(ureq)
    call(req:result())
    call(ureq:result())
    show(req)
    show(ureq)
    for _, res in ipairs(c:batch { { path = "users" }, { path = "users/1" } }) do
      call(res.data, res.err)
    end

    -- every token that ever existed, and the headers that carried them
    for _, t in ipairs({ systok, usertok, refreshed, (table.unpack or unpack)(tokens) }) do
      local saved = t:to_table()
      secrets[#secrets + 1] = saved.access_token
      if saved.refresh_token then secrets[#secrets + 1] = saved.refresh_token end
    end
    for _, req in ipairs(sb:requests()) do
      local auth = req.headers["authorization"]
      if auth then secrets[#secrets + 1] = auth:match("^%a+ (.+)$") end
    end
    secrets[#secrets + 1] = b64(sb.client_id .. ":" .. sb.client_secret)

    assert.is_true(#tokens >= 3, "on_token calls: " .. #tokens)
    assert.is_true(#seen > 40, "values seen: " .. #seen)
    local all = h.strings_of(seen)
    for _, t in ipairs(texts) do all[#all + 1] = t end
    for _, secret in ipairs(secrets) do
      assert.is_true(#secret >= 8, secret)
      for _, s in ipairs(all) do
        if s:find(secret, 1, true) then
          error(("secret %q... found in: %s"):format(secret:sub(1, 6), s), 0)
        end
      end
    end
    -- the trace did show the Authorization header, redacted
    local redacted = 0
    for _, ev in ipairs(r.phase(seen, "request")) do
      for _, line in ipairs(ev.headers or {}) do
        if line:match("^Authorization:") then
          assert.matches("^Authorization: %a+ %[redacted%]$", line)
          redacted = redacted + 1
        end
      end
    end
    assert.is_true(redacted >= 10, "redacted Authorization lines: " .. redacted)
  end)

  it("the trace redacts a caller's Cookie, Proxy-Authorization and API-key headers too", function()
    local lines = {}
    local c = h.client(sb, { on_request = function(ev)
      for _, l in ipairs(ev.headers or {}) do lines[#lines + 1] = l end
    end })
    assert(c:request { path = "users", headers = { Cookie = "sid=COOKIESECRET1",
      ["Proxy-Authorization"] = "Basic PROXYSECRET2", ["X-Api-Key"] = "APIKEYSECRET3",
      ["X-Trace"] = "visible" } })
    local text = table.concat(lines, "\n")
    for _, secret in ipairs { "COOKIESECRET1", "PROXYSECRET2", "APIKEYSECRET3" } do
      assert.is_nil(text:find(secret, 1, true), secret .. " in the trace: " .. text)
    end
    assert.matches("Cookie: %[redacted%]", text)
    assert.matches("X%-Trace: visible", text)
  end)
end)
