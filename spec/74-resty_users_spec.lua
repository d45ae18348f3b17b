-- achievers.resty's authorization code flow in nginx (2 workers): authorize_url with PKCE,
-- handle_callback and exchange_code over cosockets, and user clients (with_token) that act as
-- their person, never put a token in the shared dictionary, and share each token's rate budget
-- across both workers under a hash of the token.
local h = require("helpers")
local nginx = require("support.nginx")
local socket = require("socket")

local PRELUDE = [[
local resty = require("achievers.resty")
local function client(extra)
  local o = { base_url = ARGS.url, client_id = ARGS.client_id, client_secret = ARGS.client_secret,
              shared_dict = "achievers", scope = "read,write" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return resty.client(o)
end
local function plain(err)
  if type(err) ~= "table" then return err end
  return { kind = err.kind, message = err.message, status = err.status, code = err.code }
end
]]

local query_of = require("sandbox_http").query_of

describe("achievers.resty: people signing in", function()
  local sb, server

  setup(function()
    sb = h.start_sandbox { limits = { heavy = { 5, 2 }, default = { 500, 120 } } }
    server = nginx.start {
      env = { ACHIEVERS_BASE_URL = sb.url, ACHIEVERS_CLIENT_ID = sb.client_id, ACHIEVERS_CLIENT_SECRET = sb.client_secret },
      -- GET /as?t=<access token>: one GET /recognitions as that person, paced at 5 per 2 s
      -- (a test location: a real app keeps the token in its session, never in a URL)
      locations = [[
        location = /as {
            content_by_lua_block {
                paced = paced or require("achievers.resty").client {
                    base_url = os.getenv("ACHIEVERS_BASE_URL"),
                    client_id = os.getenv("ACHIEVERS_CLIENT_ID"),
                    client_secret = os.getenv("ACHIEVERS_CLIENT_SECRET"),
                    shared_dict = "achievers", limits = { heavy = { 5, 2 } },
                }
                local me = paced:with_token { access_token = ngx.var.arg_t, token_type = "bearer",
                    scope = "read,write", expires_at = ngx.time() + 3600, grant_type = "authorization_code" }
                local page, err = me:recognitions { pageSize = 1 }
                ngx.status = page and 200 or (err.status or 502)
                ngx.say(page and "ok" or tostring(err))
            }
        }
]],
    }
  end)

  teardown(function()
    if server then server:stop() end
    if sb then sb:stop() end
  end)

  local function run(code, extra)
    local args = { url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret }
    for k, v in pairs(extra or {}) do args[k] = v end
    return server:eval(PRELUDE .. code, args)
  end

  -- A person's token through the worker: authorize_url there, consent here, callback there.
  local function sign_in(user)
    local a = run([[
      local url, state, verifier = client():authorize_url()
      return { url = url, state = state, verifier = verifier }
    ]])
    local code = sb:consent { user = user, scope = "read,write", code_challenge = query_of(a.url).code_challenge }
    local out = run([[
      local tok, err = client():handle_callback("code=" .. ARGS.code .. "&state=" .. ARGS.state, ARGS.state, ARGS.verifier)
      return { tok = tok and tok:to_table(), err = plain(err) }
    ]], { code = code, state = a.state, verifier = a.verifier })
    return out.tok, out.err, a, code
  end

  it("signs a person in with PKCE over cosockets: the verifier goes with the code", function()
    local tok, err, a = sign_in("brady.garfinkel")
    assert.is_table(tok, err and err.message)
    assert.equals("S256", query_of(a.url).code_challenge_method)
    assert.equals(43, #a.verifier)
    local r = h.last_request(sb, "/token")
    assert.equals(a.verifier, require("cjson").decode(r.body).code_verifier)
    assert.equals("authorization_code", tok.grant_type)
  end)

  it("refuses a forged state, reports a denial, and a replayed code gets invalid_grant", function()
    local tok, _, a, code = sign_in("adele.olson")
    assert.is_table(tok)
    local out = run([[
      local c = client()
      local r = {}
      local _, e1 = c:handle_callback({ code = "x", state = "forged" }, ARGS.state, ARGS.verifier)
      local _, e2 = c:handle_callback("?error=access_denied&state=" .. ARGS.state, ARGS.state)
      local _, e3 = c:handle_callback({ code = ARGS.code, state = ARGS.state }, ARGS.state, ARGS.verifier)
      return { forged = plain(e1), denied = plain(e2), replay = plain(e3) }
    ]], { code = code, state = a.state, verifier = a.verifier })
    assert.equals("state_mismatch", out.forged.kind)
    assert.equals("access_denied", out.denied.kind)
    assert.equals("auth", out.replay.kind)
    assert.equals("invalid_grant", out.replay.code)
  end)

  it("a user client acts as its person and writes no token into the shared dictionary", function()
    local ta = assert(sign_in("adele.olson"))
    local tb = assert(sign_in("brady.garfinkel"))
    local out = run([[
      local c = client()
      local sys = assert(c:token()) -- the system token is in the dictionary: that one is allowed
      local r = { sent = {} }
      for i, t in ipairs(ARGS.tokens) do
        local me = c:with_token(t)
        local rec, err = me:send_recognition { nominees = { "olivia.varga" }, recognitionText = "as me " .. i, criterionId = 412 }
        r.sent[i] = rec and rec.nominator.username or tostring(err)
        r["str" .. i] = tostring(me)
      end
      local dict = ngx.shared.achievers
      r.entries = {}
      for _, k in ipairs(dict:get_keys(0)) do
        r.entries[#r.entries + 1] = k .. "=" .. tostring(dict:get(k))
      end
      r.system = sys.access_token
      r.key = resty.budget_key(ARGS.client_id, ARGS.tokens[1].access_token, "default")
      return r
    ]], { tokens = { ta, tb } })
    assert.same({ "adele.olson", "brady.garfinkel" }, out.sent)
    local all = table.concat(out.entries, "\n")
    for i, t in ipairs { ta, tb } do
      assert.is_nil(all:find(t.access_token, 1, true), "a user's token is in the dictionary")
      assert.is_nil(out["str" .. i]:find(t.access_token, 1, true))
    end
    assert.matches("^achievers:{" .. sb.client_id .. "}:rate:%x+:default$", out.key)
    assert.is_truthy(all:find(out.key, 1, true), "no budget under the token's hash: " .. all)
    -- what the sandbox saw: each recognition sent with its person's own token
    local seen = {}
    for _, req in ipairs(sb:requests()) do
      if req.method == "POST" and req.path == "/api/v5/recognitions" then
        seen[#seen + 1] = req.headers.authorization
      end
    end
    assert.same({ "Bearer " .. ta.access_token, "Bearer " .. tb.access_token }, { seen[#seen - 1], seen[#seen] })
  end)

  it("a revoked user token without a refresh token ends in reauthorize", function()
    local t = assert(sign_in("olivia.varga"))
    sb:revoke { token = t.access_token }
    local out = run([[
      local _, err = client():with_token(ARGS.t):users { pageSize = 1 }
      return plain(err)
    ]], { t = t })
    assert.equals("reauthorize", out.kind)
  end)

  it("shares one person's rate budget across both workers (no 429 at 5 per 2 s)", function()
    local t = assert(sign_in("adele.olson"))
    local before = sb:stats().rate_limited
    local args = {}
    for i = 1, 15 do args[i] = ("-o /dev/null 'http://127.0.0.1:%d/as?t=%s&i=%d'"):format(server.port, t.access_token, i) end
    local out = server.prefix .. "/as.out"
    local t0 = socket.gettime()
    assert(nginx.sh(("env -u LD_PRELOAD curl -s --parallel --parallel-immediate --parallel-max 15 --max-time 30 " ..
      "-w '%%{http_code}\\n' %s > %s 2>&1"):format(table.concat(args, " "), out)))
    local elapsed = socket.gettime() - t0
    local codes = {}
    for code in (nginx.slurp(out) or ""):gmatch("(%d%d%d)\n") do codes[#codes + 1] = code end
    assert.equals(15, #codes)
    for _, code in ipairs(codes) do assert.equals("200", code) end
    assert.equals(before, sb:stats().rate_limited)
    assert.is_true(elapsed >= 4, "15 calls at 5 per 2 s went too fast: " .. elapsed)
  end)
end)
