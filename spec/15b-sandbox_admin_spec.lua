-- The achievers-sandbox program's control surface, /__sandbox/... on its own port, driven the
-- way a test in another language would drive it: with plain curl. The admin key (printed at
-- start, or --admin-key), the loopback Host check, every control, bad input, and --log.
local http = require("sandbox_http")
local cli = require("support.cli")
local q, slurp = cli.q, cli.slurp
local cjson = http.cjson

local running = {}   -- programs launched and not yet finished, ended by after_each
local scratch        -- a private directory for curl's output files

local function launch(args)
  local prog = http.launch(args)
  prog.admin_key = prog.out():match("admin_key: (%S+)")
  running[prog] = true
  return prog
end

local function finish(prog, signal)
  running[prog] = nil
  return prog.finish(signal)
end

-- Runs curl: {status, headers (lower-case names), body, json, time, rc}. opts: key (default the
-- program's admin key; false: none), header ("bearer", the default, or "x"), json (a table or a
-- string sent as the body), host (the Host header), headers (extra "Name: value" strings).
local function curl(prog, method, path, opts)
  opts = opts or {}
  local args = {"-s", "--max-time", "10", "-X", method, "-D", q(scratch .. "/h"), "-o", q(scratch .. "/b"),
                "-w", q("%{http_code} %{time_total}")}
  local key = opts.key
  if key == nil then key = prog.admin_key end
  if key then
    args[#args + 1] = "-H " .. q(opts.header == "x" and "X-Sandbox-Key: " .. key or "Authorization: Bearer " .. key)
  end
  if opts.host then args[#args + 1] = "-H " .. q("Host: " .. opts.host) end
  for _, h in ipairs(opts.headers or {}) do args[#args + 1] = "-H " .. q(h) end
  if opts.json ~= nil then
    local body = type(opts.json) == "table" and cjson.encode(opts.json) or opts.json
    args[#args + 1] = "-H 'Content-Type: application/json' --data-binary " .. q(body)
  elseif opts.data then
    args[#args + 1] = opts.data
  end
  os.remove(scratch .. "/h")
  os.remove(scratch .. "/b")
  local p = io.popen(http.TOOL .. "timeout 20 curl " .. table.concat(args, " ") .. " " ..
    q(prog.url .. path) .. "; echo \" rc=$?\"")
  local out = p:read("*a")
  p:close()
  local res = {headers = {}, body = slurp(scratch .. "/b") or ""}
  res.status, res.time, res.rc = out:match("^(%d+) ([%d.]+) rc=(%d+)")
  res.status, res.time, res.rc = tonumber(res.status), tonumber(res.time), tonumber(res.rc or out:match("rc=(%d+)"))
  for line in (slurp(scratch .. "/h") or ""):gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then res.headers[name:lower()] = value end
  end
  if (res.headers["content-type"] or ""):find("application/json", 1, true) then
    res.json = cjson.decode(res.body)
  end
  return res
end

local function get(prog, path, opts) return curl(prog, "GET", "/__sandbox/" .. path, opts) end
local function post(prog, path, body, opts)
  opts = opts or {}
  opts.json = body or {}
  return curl(prog, "POST", "/__sandbox/" .. path, opts)
end

-- A token through the token endpoint, also with curl.
local function system_token(prog, scope)
  local res = curl(prog, "POST", http.TOKEN_PATH, {key = false, json = {grant_type = "client_credentials",
    scope = scope or "read", client_id = prog.client_id, client_secret = prog.client_secret}})
  assert.equal(200, res.status, res.body)
  return res.json.access_token
end

local function api(prog, path, token)
  return curl(prog, "GET", "/api/v5" .. path, {key = false, headers = {"Authorization: Bearer " .. token}})
end

describe("achievers-sandbox control surface", function()
  before_each(function()
    scratch = os.tmpname()
    os.remove(scratch)
    assert(cli.sh("mkdir -p " .. q(scratch)))
  end)

  after_each(function()
    for prog in pairs(running) do finish(prog, "KILL") end
    os.execute("rm -rf " .. q(scratch))
  end)

  it("prints a random admin key at start; without it, or with a wrong one, every control is a 401", function()
    local prog = launch("--port 0")
    assert.matches("^%x+$", prog.admin_key)
    assert.equal(32, #prog.admin_key, "128 random bits in hex")
    local other = launch("--port 0")
    assert.are_not.equal(prog.admin_key, other.admin_key)
    assert.matches("control: " .. prog.url:gsub("%p", "%%%0") .. "/__sandbox", prog.out())

    for _, opts in ipairs {
      {key = false},
      {key = other.admin_key},
      {key = other.admin_key, header = "x"},
      {key = prog.admin_key:sub(1, 31)},
      {key = prog.admin_key .. "0"},
      {key = false, headers = {"Authorization: Basic " .. prog.admin_key}},
      {key = false, headers = {"Authorization: " .. prog.admin_key}},
    } do
      local res = get(prog, "stats", opts)
      assert.equal(401, res.status, cjson.encode(opts))
      assert.equal("invalid_admin_key", res.json.error)
      assert.matches("^Bearer", res.headers["www-authenticate"])
      assert.not_matches(prog.admin_key, res.body, 1, true)
    end
    -- every path under /__sandbox, even one that is not a control, asks for the key first
    assert.equal(401, get(prog, "nothing", {key = false}).status)
    assert.equal(401, post(prog, "reset", {}, {key = false}).status)
    assert.equal(404, get(prog, "nothing").status)

    -- either header carries it; the Bearer scheme in any case
    assert.equal(200, get(prog, "stats").status)
    assert.equal(200, get(prog, "stats", {header = "x"}).status)
    assert.equal(200, get(prog, "stats", {key = false, headers = {"Authorization: bearer " .. prog.admin_key}}).status)

    -- never from the URL: alone it is a 401, next to the header a 400 that says where it goes
    for _, name in ipairs {"key", "admin_key", "X-Sandbox-Key", "access_token"} do
      local res = get(prog, "stats?" .. name .. "=" .. prog.admin_key, {key = false})
      assert.equal(401, res.status, name)
      res = get(prog, "stats?" .. name .. "=" .. prog.admin_key)
      assert.equal(400, res.status, name)
      assert.matches("never taken from the URL", res.json.error_description, 1, true)
      assert.matches("header", res.json.error_description, 1, true)
    end
    assert.equal(0, finish(prog, "INT"))
    assert.equal(0, finish(other, "INT"))
  end)

  it("fixes the key with --admin-key, and refuses a weak one without echoing it", function()
    local key = "ci-fixed-key_0123456789"
    local prog = launch("--port 0 --admin-key " .. key)
    assert.equal(key, prog.admin_key)
    assert.equal(200, get(prog, "stats").status)
    assert.equal(401, get(prog, "stats", {key = "ci-fixed-key_012345678"}).status)
    assert.equal(0, finish(prog))
    for _, bad in ipairs {"short-key", "has space in it 0123", "quote\"0123456789abcdef", string.rep("k", 257)} do
      local code, out = 0, ""
      local p = io.popen(http.BIN .. " --port 0 --admin-key " .. q(bad) .. " 2>&1; echo rc=$?")
      out = p:read("*a")
      p:close()
      code = tonumber(out:match("rc=(%d+)"))
      assert.equal(2, code, bad)
      assert.matches("admin key", out, 1, true)
      assert.not_matches(bad, out, 1, true)
    end
  end)

  it("refuses a Host header that is not a loopback name (DNS rebinding)", function()
    local prog = launch("--port 0")
    local port = tostring(prog.port)
    for _, host in ipairs {"evil.example", "evil.example:" .. port, "127.0.0.1.evil.example:" .. port,
                           "localhost.evil.example", "127.0.0.1@evil.example", "10.0.0.1:" .. port,
                           "127.0.0.1:" .. port .. "/x", "0.0.0.0:" .. port} do
      local res = get(prog, "stats", {host = host})
      assert.equal(403, res.status, host)
      assert.equal("forbidden_host", res.json.error, host)
    end
    -- an HTTP/1.0 request without Host comes from no browser: allowed
    assert.equal(200, get(prog, "stats", {data = "--http1.0 -H Host:"}).status)
    -- the key does not help a rebound page: the Host check comes first
    assert.equal(403, get(prog, "stats", {key = false, host = "evil.example"}).status)
    for _, host in ipairs {"127.0.0.1:" .. port, "127.0.0.1", "localhost:" .. port, "LOCALHOST", "[::1]:" .. port} do
      assert.equal(200, get(prog, "stats", {host = host}).status, host)
    end
    -- the API itself is not concerned
    assert.equal(401, curl(prog, "GET", "/api/v5/users", {key = false, host = "evil.example"}).status)
    assert.equal(0, finish(prog))
  end)

  it("reads stats and the request log, pages it with ?since=, and counts and logs no control request", function()
    local prog = launch("--port 0")
    local tok = system_token(prog)
    assert.equal(200, api(prog, "/users?pageSize=1", tok).status)
    for _ = 1, 5 do assert.equal(200, get(prog, "stats").status) end
    assert.equal(200, post(prog, "advance", {seconds = 0}).status)
    local st = get(prog, "stats").json
    assert.equal(2, st.requests)
    assert.equal(1, st.token_requests)
    assert.equal(2, st.connections, "curl's two API connections; the control ones are not counted")
    assert.equal(1, st.by_route["GET /users"])
    assert.equal(1, st.by_route["POST /token"])
    assert.equal(0, st.faults)
    assert.equal(0, st.rate_limited)
    assert.is_true(math.abs(st.time - os.time()) < 60)

    local log = get(prog, "requests").json
    assert.equal(2, #log.requests)
    assert.equal(0, log.missed)
    assert.equal(log.requests[2].seq, log.next)
    local t, u = log.requests[1], log.requests[2]
    assert.equal(1, t.seq)
    assert.equal("POST", t.method)
    assert.equal(http.TOKEN_PATH, t.path)
    assert.matches('"grant_type":"client_credentials"', t.body, 1, true)
    assert.equal(#t.body, t.body_size)
    assert.is_false(t.body_truncated)
    assert.equal("application/json", t.headers["content-type"])
    assert.equal(2, u.seq)
    assert.equal("GET", u.method)
    assert.equal("/api/v5/users", u.path)
    assert.equal("pageSize=1", u.query)
    assert.equal("Bearer " .. tok, u.headers.authorization)
    assert.equal("", u.body)

    -- paging: only what came after `since`
    log = get(prog, "requests?since=1").json
    assert.equal(1, #log.requests)
    assert.equal(2, log.requests[1].seq)
    assert.equal(2, log.next)
    log = get(prog, "requests?since=" .. http.int(log.next)).json
    assert.equal(0, #log.requests)
    assert.equal(2, log.next)

    -- a body that is not UTF-8 comes back as base64
    local bin = scratch .. "/bin"
    local f = assert(io.open(bin, "wb"))
    f:write("\255\254ab\0c")
    f:close()
    assert.equal(401, curl(prog, "POST", "/api/v5/recognitions", {key = false,
      data = "-H 'Content-Type: application/octet-stream' --data-binary @" .. q(bin)}).status)
    log = get(prog, "requests?since=2").json
    assert.equal(1, #log.requests)
    assert.is_nil(log.requests[1].body)
    assert.equal("//5hYgBj", log.requests[1].body_base64)
    assert.equal(6, log.requests[1].body_size)

    -- the log holds 64: what fell out since `since` is counted as missed
    local conn = assert(http.connect(prog.url))
    for _ = 1, 70 do
      assert.equal(200, assert(conn:request("GET", "/api/v5/users/10726811", {token = tok})).status)
    end
    conn:close()
    log = get(prog, "requests?since=3").json
    assert.equal(64, #log.requests)
    assert.equal(73, log.next)
    assert.equal(6, log.missed)
    assert.equal(10, log.requests[1].seq)
    st = get(prog, "stats").json
    assert.equal(73, st.requests)
    assert.equal(4, st.connections)
    assert.equal(0, finish(prog))
  end)

  it("gives an authorization code with consent, which the token endpoint takes", function()
    local prog = launch("--port 0")
    local res = post(prog, "consent", {user = "brady.garfinkel", scope = "read", state = "s 1/x"})
    assert.equal(200, res.status, res.body)
    local code = res.json.code
    assert.matches("^%x+$", code)
    assert.equal("http://127.0.0.1:8910/callback", res.json.redirect_uri)
    assert.equal("http://127.0.0.1:8910/callback?code=" .. code .. "&state=s%201%2Fx", res.json.location)
    local tok = curl(prog, "POST", http.TOKEN_PATH, {key = false, json = {grant_type = "authorization_code",
      code = code, client_id = prog.client_id, client_secret = prog.client_secret}})
    assert.equal(200, tok.status, tok.body)
    assert.equal("read", tok.json.scope)
    assert.equal(200, api(prog, "/users/10726811", tok.json.access_token).status)
    local logged = get(prog, "requests").json.requests
    assert.equal(2, #logged, "the consent control is not in the log")
    assert.equal(http.TOKEN_PATH, logged[1].path)
    assert.equal("/api/v5/users/10726811", logged[2].path)
    -- defaults: adele.olson, read and write, the registered redirect URI, no state
    res = post(prog, "consent")
    assert.equal(200, res.status)
    assert.equal("http://127.0.0.1:8910/callback?code=" .. res.json.code, res.json.location)
    -- refusals, as for sb:consent
    for _, case in ipairs {
      {{user = "nobody"}, "unknown user 'nobody'"},
      {{scope = "admin"}, "unknown scope"},
      {{redirect_uri = "https://evil.example/cb"}, "is not registered"},
      {{user = 5}, "'user' must be a string"},
      {{code_verifier = "x"}, "unknown field 'code_verifier'"},
    } do
      res = post(prog, "consent", case[1])
      assert.equal(400, res.status, cjson.encode(case[1]))
      assert.matches(case[2], res.json.error_description, 1, true)
    end
    assert.equal(0, finish(prog))
  end)

  it("injects faults as sb:fail does, and never fails a control request", function()
    local prog = launch("--port 0")
    local tok = system_token(prog)
    local res = post(prog, "fail", {count = 1, status = 502, retry_after = 7, path = "/api/v5/users"})
    assert.equal(200, res.status, res.body)
    assert.same({count = 1, status = 502, drop = false}, res.json)
    assert.equal(200, api(prog, "/recognitions", tok).status, "another path")
    res = api(prog, "/users", tok)
    assert.equal(502, res.status)
    assert.equal("7", res.headers["retry-after"])
    assert.equal(200, api(prog, "/users", tok).status, "only once")
    -- a body as given
    post(prog, "fail", {status = 503, body = "<html>down</html>", content_type = "text/html"})
    res = api(prog, "/users", tok)
    assert.equal(503, res.status)
    assert.equal("<html>down</html>", res.body)
    assert.equal("text/html", res.headers["content-type"])
    -- a dropped connection: curl gets an empty reply
    post(prog, "fail", {drop = true})
    res = api(prog, "/users", tok)
    assert.equal(52, res.rc, "curl: empty reply from server")
    -- faults for every path leave the control surface alone
    post(prog, "fail", {count = 100, status = 500})
    assert.equal(200, get(prog, "stats").status)
    assert.equal(3, get(prog, "stats").json.faults)
    assert.equal(500, api(prog, "/users", tok).status)
    assert.equal(200, post(prog, "fail", {count = 0}).status, "count 0 clears it")
    assert.equal(200, api(prog, "/users", tok).status)
    assert.equal(0, finish(prog))
  end)

  it("moves the clock, sets latency, revokes, sets budgets and resets", function()
    local prog = launch("--port 0")
    local tok = system_token(prog)
    local t0 = get(prog, "stats").json.time
    local res = post(prog, "advance", {seconds = 3600})
    assert.equal(200, res.status)
    assert.is_true(res.json.time >= t0 + 3600 and res.json.time < t0 + 3700, tostring(res.json.time))
    -- past the token's 14 days it has expired
    post(prog, "advance", {seconds = 15 * 24 * 3600})
    assert.equal(401, api(prog, "/users", tok).status)

    -- latency delays the API, not the control surface
    tok = system_token(prog)
    local base = api(prog, "/users/10726811", tok).time
    res = post(prog, "latency", {ms = 400})
    assert.same({ms = 400}, res.json)
    local slow = api(prog, "/users/10726811", tok).time
    local control = get(prog, "stats").time
    assert.is_true(slow >= 0.4, "API answer after " .. slow .. " s")
    assert.is_true(control < slow, "control " .. control .. " s, API " .. slow .. " s, before " .. base .. " s")
    post(prog, "latency", {ms = 0})

    -- revoke one token, then all
    local other = system_token(prog, "read,write")
    assert.same({revoked = 1}, post(prog, "revoke", {token = tok}).json)
    assert.equal(401, api(prog, "/users", tok).status)
    assert.equal(200, api(prog, "/users/10726811", other).status)
    assert.same({revoked = 0}, post(prog, "revoke", {token = "nope"}).json)
    assert.same({revoked = 2}, post(prog, "revoke").json, "other, and the expired one")
    assert.equal(401, api(prog, "/users/10726811", other).status)

    -- budgets: the program's account, a user's, set and read back
    res = get(prog, "budget")
    assert.same({user = cjson.null, budget = 1000000}, res.json)
    assert.same({user = "adele.olson", budget = 25000}, get(prog, "budget?user=adele.olson").json)
    assert.same({user = "adele.olson", budget = 10}, post(prog, "budget", {user = "adele.olson", points = 10}).json)
    assert.same({user = "adele.olson", budget = 10}, get(prog, "budget?user=adele.olson").json)
    assert.same({user = cjson.null, budget = 5}, post(prog, "budget", {points = 5}).json)
    res = get(prog, "budget?user=nobody")
    assert.equal(400, res.status)
    assert.equal("user", res.json.field)

    local last = get(prog, "requests").json.next
    -- reset: the seed's budgets, no tokens, zero counters, an empty log, the clock back
    res = post(prog, "reset")
    assert.same({ok = true}, res.json)
    assert.same({user = "adele.olson", budget = 25000}, get(prog, "budget?user=adele.olson").json)
    local st = get(prog, "stats").json
    assert.equal(0, st.requests)
    assert.is_true(math.abs(st.time - os.time()) < 60)
    assert.equal(0, #get(prog, "requests").json.requests)
    -- request numbers go on after a reset, so a reader's `since` stays good
    system_token(prog)
    local log = get(prog, "requests").json
    assert.equal(last + 1, log.requests[1].seq)
    assert.equal(0, finish(prog))
  end)

  it("answers bad input with a 400 and a JSON error that says what is wrong", function()
    local prog = launch("--port 0")
    for _, case in ipairs {
      {"advance", "{\"seconds\":", "invalid_json", "not JSON"},
      {"advance", "[1]", "invalid_request", "must be a JSON object"},
      {"advance", "{\"seconds\":1,\"seconds\":2}", "invalid_json", "duplicate"},
      {"advance", "{}", "invalid_request", "'seconds' is required"},
      {"advance", "{\"seconds\":\"60\"}", "invalid_request", "'seconds' must be an integer"},
      {"advance", "{\"seconds\":1.5}", "invalid_request", "'seconds' must be an integer"},
      {"advance", "{\"seconds\":-1}", "invalid_request", "from 0 to"},
      {"advance", "{\"secs\":1}", "invalid_request", "unknown field 'secs' (this takes: seconds)"},
      {"latency", "{\"ms\":600001}", "invalid_request", "'ms' must be an integer from 0 to 600000"},
      {"fail", "{\"status\":99}", "invalid_request", "'status' must be an integer from 100 to 599"},
      {"fail", "{\"drop\":1}", "invalid_request", "'drop' must be true or false"},
      {"fail", "{\"content_type\":\"a\\r\\nX-Evil: 1\"}", "invalid_request", "one header line"},
      {"fail", "{\"count\":-1}", "invalid_request", "'count' must be an integer"},
      {"revoke", "{\"token\":1}", "invalid_request", "'token' must be a string"},
      {"revoke", "{\"user\":\"adele.olson\"}", "invalid_request", "unknown field 'user'"},
      {"reset", "{\"now\":true}", "invalid_request", "unknown field 'now' (this takes: nothing)"},
      {"budget", "{\"points\":-5}", "invalid_request", "'points' must be an integer from 0"},
      {"consent", "{\"user\":\"a\\u0000b\"}", "invalid_json", "u0000"},
      {"budget", "{\"user\":\"adele.olson\",\"points\":1e3}", "invalid_request", "'points' must be an integer"},
    } do
      local res = post(prog, case[1], case[2])
      assert.equal(400, res.status, case[1] .. " " .. case[2])
      assert.equal(case[3], res.json.error, case[2])
      assert.matches(case[4], res.json.error_description, 1, true)
    end
    local res = get(prog, "requests?since=abc")
    assert.equal(400, res.status)
    assert.equal("since", res.json.field)
    res = get(prog, "stats?verbose=1")
    assert.equal(400, res.status)
    assert.matches("unknown query parameter 'verbose'", res.json.error_description, 1, true)
    -- wrong method, unknown control
    res = curl(prog, "POST", "/__sandbox/stats", {json = {}})
    assert.equal(405, res.status)
    assert.equal("GET", res.headers.allow)
    res = get(prog, "reset")
    assert.equal(405, res.status)
    assert.equal("POST", res.headers.allow)
    res = curl(prog, "PUT", "/__sandbox/budget", {json = {}})
    assert.equal(405, res.status)
    assert.equal("GET, POST", res.headers.allow)
    assert.equal(404, get(prog, "stats/x").status)
    -- nothing was changed or counted by all that
    assert.equal(0, get(prog, "stats").json.requests)
    -- the index lists the controls
    local list = get(prog, "").json.endpoints
    local seen = {}
    for _, e in ipairs(list) do seen[e.method .. " " .. e.path] = true end
    for _, k in ipairs {"GET /stats", "GET /requests", "POST /consent", "POST /fail", "POST /advance",
                        "POST /latency", "POST /revoke", "POST /reset", "GET /budget", "POST /budget"} do
      assert.is_true(seen[k], k)
    end
    assert.equal(0, finish(prog))
  end)

  it("--log prints one line per request, method path status ms, with no token, secret, code or key", function()
    local prog = launch("--port 0 --log --loopback-redirects")
    local banner = #prog.out()
    local secrets = {prog.client_secret, prog.admin_key}
    local tok = system_token(prog)
    secrets[#secrets + 1] = tok
    api(prog, "/users?pageSize=2&q=adele", tok)
    local res = curl(prog, "GET", http.AUTHORIZE_PATH .. "?response_type=code&client_id=" .. prog.client_id ..
      "&scope=read&state=st4te-s3cret&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&code_challenge=ch4llenge-s3cret" ..
      "&code_challenge_method=S256", {key = false})
    assert.equal(200, res.status)
    secrets[#secrets + 1] = "st4te-s3cret"
    secrets[#secrets + 1] = "ch4llenge-s3cret"
    local code = post(prog, "consent", {state = "an0ther-s3cret"}).json.code
    secrets[#secrets + 1] = code
    secrets[#secrets + 1] = "an0ther-s3cret"
    local user = curl(prog, "POST", http.TOKEN_PATH, {key = false, data = "-u " ..
      q(prog.client_id .. ":" .. prog.client_secret) .. " -d grant_type=authorization_code -d code=" .. code})
    assert.equal(200, user.status, user.body)
    secrets[#secrets + 1] = user.json.access_token
    get(prog, "stats?key=" .. prog.admin_key)   -- a key in the URL (refused) must not be printed
    get(prog, "stats", {key = false})
    post(prog, "fail", {drop = true})
    api(prog, "/users/10726811", tok)
    local out = prog.out():sub(banner + 1)   -- each line is flushed before its answer is sent
    assert.equal(0, finish(prog, "INT"))

    local lines = {}
    for line in out:gmatch("[^\n]+") do
      if not line:match("^stopped") then lines[#lines + 1] = line end
    end
    for _, line in ipairs(lines) do
      assert.matches("^%u+ /%S* %w+ %d+ms$", line)
      for _, s in ipairs(secrets) do assert.not_matches(s, line, 1, true) end
    end
    local expect = {
      "^POST /oauth/v2/openIDConnectClient/token 200 %d+ms$",
      "^GET /api/v5/users%?pageSize=2&q=%* 200 %d+ms$",
      "^GET /oauth/v2/openIDConnectClient/authorize%?response_type=code&client_id=%*&scope=read&state=%*" ..
        "&redirect_uri=%*&code_challenge=%*&code_challenge_method=S256 200 %d+ms$",
      "^POST /__sandbox/consent 200 %d+ms$",
      "^POST /oauth/v2/openIDConnectClient/token 200 %d+ms$",
      "^GET /__sandbox/stats%?key=%* 400 %d+ms$",
      "^GET /__sandbox/stats 401 %d+ms$",
      "^POST /__sandbox/fail 200 %d+ms$",
      "^GET /api/v5/users/10726811 drop %d+ms$",
    }
    assert.equal(#expect, #lines, out)
    for i, pat in ipairs(expect) do assert.matches(pat, lines[i]) end
  end)

  it("documents the control surface and its flags in --help", function()
    local p = io.popen(http.BIN .. " --help")
    local out = p:read("*a")
    p:close()
    for _, s in ipairs {"--admin-key KEY", "--log", "/__sandbox/stats", "/__sandbox/requests", "/__sandbox/consent",
                        "/__sandbox/fail", "/__sandbox/advance", "/__sandbox/latency", "/__sandbox/revoke",
                        "/__sandbox/reset", "/__sandbox/budget", "X-Sandbox-Key", "never\nin the URL"} do
      assert.matches(s, out, 1, true)
    end
  end)
end)
