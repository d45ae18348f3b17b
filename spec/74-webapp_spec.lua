-- The example web app (examples/openresty/webapp) in nginx with 2 workers, driven by headless
-- Chromium: people sign in through the sandbox's consent page at the same time, each sends a
-- recognition as themself and lists their own; a browser without a session is sent to sign in;
-- a forged state and a replayed code are refused; sign-out ends the session; and while 50
-- signed-in page loads wait on a slow sandbox, /ping keeps answering and the sandbox sees no
-- 429.
local h = require("helpers")
local http = require("sandbox_http")
local nginx = require("support.nginx")
local cdp = require("support.cdp")
local socket = require("socket")

local LATENCY = 0.3 -- the sandbox's answer time in the concurrency check

local query_of, hidden_fields = http.query_of, http.hidden_fields

describe("example web app (OpenResty, sign-in with PKCE)", function()
  local sb, server, app, browser
  local people = {} -- name -> {page =, sid =}

  setup(function()
    sb = h.start_sandbox { loopback_redirects = true }
    server = nginx.start {
      conf = "examples/openresty/webapp/nginx.conf",
      env = { ACHIEVERS_BASE_URL = sb.url, ACHIEVERS_CLIENT_ID = sb.client_id, ACHIEVERS_CLIENT_SECRET = sb.client_secret },
    }
    app = "http://127.0.0.1:" .. server.port
    browser = cdp.start()
  end)

  teardown(function()
    if browser then browser:stop() end
    if server then server:stop() end
    if sb then sb:stop() end
  end)

  -- The app over plain HTTP with a session cookie (nil: none): the answer.
  local function get(path, sid)
    return assert(http.request(app, "GET", path, { headers = sid and { Cookie = "sid=" .. sid } or nil }))
  end

  local function cookie_sid(res)
    return (res.headers["set-cookie"] or ""):match("^sid=([%w_-]*)")
  end

  -- Every access token the sandbox has seen in an Authorization header.
  local function tokens_seen()
    local out = {}
    for _, r in ipairs(sb:requests()) do
      local t = (r.headers.authorization or ""):match("^Bearer (%S+)")
      if t then out[t] = true end
    end
    return out
  end

  it("two people sign in at the same time, each sends a recognition and lists their own", function()
    local who = { { name = "adele.olson", to = "olivia.varga" }, { name = "brady.garfinkel", to = "adele.olson" } }
    for _, p in ipairs(who) do
      p.page = browser:new_page()
      p.page:navigate(app .. "/")
    end
    -- both are on the consent page (the app sent them there) before either approves
    for _, p in ipairs(who) do
      p.page:wait_for("location.href.indexOf(" .. ("%q"):format(sb.url) .. ") === 0 && !!document.getElementById('approve')")
      assert.matches("code_challenge_method=S256", p.page:eval("location.href"), 1, true)
      p.page:fill("username", p.name)
    end
    for _, p in ipairs(who) do p.page:click("approve") end
    for _, p in ipairs(who) do
      p.page:wait_for("location.href === " .. ("%q"):format(app .. "/") .. " && !!document.getElementById('send-form')")
    end
    -- each sends one, as themself
    for i, p in ipairs(who) do
      p.text = ("from browser %d (%s) %d"):format(i, p.name, math.random(1e6))
      p.page:fill("nominee", p.to)
      p.page:fill("text", p.text)
      p.page:click("send")
    end
    for _, p in ipairs(who) do
      p.page:wait_for("!!document.getElementById('sent') && !!document.getElementById('mine')")
      assert.equals(p.name, p.page:eval("document.getElementById('username').textContent"))
      local mine = p.page:eval("document.getElementById('mine').innerText")
      assert.matches(p.text, mine, 1, true)
      -- what the other one sent is not on this page unless it involves this person
      local other = who[p == who[1] and 2 or 1]
      if other.to ~= p.name then assert.is_nil(mine:find(other.text, 1, true)) end
    end
    -- the sandbox has each recognition from the right person
    local system = h.client(sb)
    local found = {}
    for r in system:each("recognitions", { pageSize = 100 }) do
      for _, p in ipairs(who) do
        if r.recognitionText == p.text then found[p.name] = r.nominator.username end
      end
    end
    assert.same({ ["adele.olson"] = "adele.olson", ["brady.garfinkel"] = "brady.garfinkel" }, found)
    -- the session cookie: HttpOnly, SameSite=Lax, an id that is not a token
    local tokens = tokens_seen()
    for _, p in ipairs(who) do
      local c
      for _, k in ipairs(p.page:cookies()) do
        if k.name == "sid" and k.domain == "127.0.0.1" then c = k end
      end
      assert.is_table(c, "no session cookie")
      assert.equals("sid", c.name)
      assert.is_true(c.httpOnly)
      assert.equals("Lax", c.sameSite)
      assert.equals(43, #c.value)
      assert.is_nil(tokens[c.value])
      local html = p.page:eval("document.documentElement.outerHTML")
      for t in pairs(tokens) do assert.is_nil(html:find(t, 1, true), "a token is in the page") end
      people[p.name] = { page = p.page, sid = c.value }
    end
    assert.are_not.equal(people["adele.olson"].sid, people["brady.garfinkel"].sid)
  end)

  it("sends a browser without a session to sign in (the consent page, with a PKCE challenge)", function()
    local page = browser:new_page()
    page:navigate(app .. "/")
    local landed = page:wait_for("!!document.getElementById('approve') && location.href")
    assert.equals(sb.url .. http.AUTHORIZE_PATH, landed:match("^[^?]*"))
    local q = query_of(landed)
    assert.equals("S256", q.code_challenge_method)
    assert.equals(43, #q.code_challenge)
    assert.equals(app .. "/callback", q.redirect_uri)
    -- and over plain HTTP: no cookie, or one the app does not know, goes to /login
    for _, sid in ipairs { false, ("x"):rep(43) } do
      local res = get("/", sid or nil)
      assert.equals(302, res.status)
      assert.equals("/login", res.headers["location"]:match("/login$"))
    end
  end)

  -- A sign-in over plain HTTP: the session id /login set, and the redirect's code and state.
  local function start_sign_in(user)
    local res = get("/login")
    assert.equals(302, res.status)
    local sid = assert(cookie_sid(res))
    local page = assert(http.request(sb, "GET", res.headers["location"]:sub(#sb.url + 1)))
    local form = hidden_fields(page.body)
    form.decision, form.username = "approve", user
    local back = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, { form = form }))
    assert.equals(302, back.status)
    local q = query_of(back.headers["location"])
    return sid, q.code, q.state
  end

  it("refuses a forged state and a replayed code", function()
    -- forged state: no token request is made for it
    local sid, code = start_sign_in("olivia.varga")
    local before = sb:stats().token_requests
    local res = get("/callback?code=" .. code .. "&state=forged", sid)
    assert.equals(400, res.status)
    assert.matches("state_mismatch", res.body, 1, true)
    assert.equals(before, sb:stats().token_requests)
    -- a good sign-in, then its code again: in the signed-in session, and in a new sign-in's
    local sid2, code2, state2 = start_sign_in("olivia.varga")
    res = get("/callback?code=" .. code2 .. "&state=" .. state2, sid2)
    assert.equals(302, res.status)
    local signed = assert(cookie_sid(res))
    assert.are_not.equal(sid2, signed) -- a new session id once signed in
    assert.equals(302, get("/", sid2).status) -- the old id is gone
    assert.equals(200, get("/", signed).status)
    res = get("/callback?code=" .. code2 .. "&state=" .. state2, signed)
    assert.equals(400, res.status)
    local sid3, _, state3 = start_sign_in("olivia.varga")
    res = get("/callback?code=" .. code2 .. "&state=" .. state3, sid3)
    assert.equals(400, res.status)
    assert.matches("invalid_grant", res.body, 1, true)
  end)

  it("keeps answering /ping while 50 signed-in page loads wait on a slow sandbox, and sends no request over the rate limits", function()
    assert.is_table(people["adele.olson"], "needs the sessions of the first test")
    sb:latency(math.floor(LATENCY * 1000))
    local rate_limited = sb:stats().rate_limited
    -- one curl process per person (a cookie is per process), 25 transfers each in parallel
    local outs, before = {}, sb:stats().requests
    local t0 = socket.gettime()
    for k, name in ipairs { "adele.olson", "brady.garfinkel" } do
      local args = {}
      for i = 1, 25 do args[i] = ("-o /dev/null '%s/?i=%d'"):format(app, i) end
      outs[k] = server.prefix .. "/load" .. k .. ".out"
      assert(nginx.sh(("env -u LD_PRELOAD curl -s -b sid=%s --parallel --parallel-immediate --parallel-max 25 " ..
        "--max-time 60 -w '%%{http_code} %%{time_total}\\n' %s > %s 2>&1 &")
        :format(people[name].sid, table.concat(args, " "), outs[k])))
    end
    local pings, worst, failed, early, lines = 0, 0, 0, 0, {}
    while socket.gettime() < t0 + 70 do
      -- page loads are in flight: the sandbox has had some of their calls, not yet all (each
      -- makes two, OPTIONS and GET /recognitions, and cannot end before its second is answered)
      local calls = sb:stats().requests - before
      local in_flight = calls > 0 and calls < 100
      local dt = server:ping()
      if dt then
        pings = pings + 1
        worst = math.max(worst, dt)
        if in_flight then early = early + 1 end
      else
        failed = failed + 1
      end
      lines = {}
      for _, out in ipairs(outs) do
        for l in (nginx.slurp(out) or ""):gmatch("[^\n]+") do
          if l:match("^%d%d%d ") then lines[#lines + 1] = l end
        end
      end
      if #lines >= 50 then break end
      socket.sleep(0.01)
    end
    sb:latency(0)
    local ok200 = 0
    for _, l in ipairs(lines) do if l:match("^200 ") then ok200 = ok200 + 1 end end
    print(("\n  webapp: 50 signed-in page loads in %.2f s, %d answered 200; /ping %d times, worst %.1f ms, " ..
      "%d while they were in flight"):format(socket.gettime() - t0, ok200, pings, worst * 1000, early))
    assert.equals(50, #lines)
    assert.equals(50, ok200, table.concat(lines, "\n") .. "\n" .. server:error_log():sub(-3000))
    assert.equals(0, failed)
    assert.is_true(early >= 1, "no ping while the page loads were in flight to tell")
    -- a worker that blocked on a call would hold a ping for a whole sandbox answer
    assert.is_true(worst < LATENCY, ("/ping took %.1f ms"):format(worst * 1000))
    assert.equals(rate_limited, sb:stats().rate_limited)
    -- each person has a budget of their own (by token hash): 25 page loads each stay within
    -- 50 GET /recognitions a minute, so nobody waited for one (a budget shared by everyone would)
    assert.is_nil(server:error_log():find("rate limit", 1, true), server:error_log())
  end)

  it("a link to /login from anywhere does not sign a signed-in person out", function()
    local a = assert(people["adele.olson"])
    local res = get("/login", a.sid)
    assert.equals(302, res.status)
    assert.equals("/", (res.headers["location"] or ""):match("^https?://[^/]+(/.*)$") or res.headers["location"])
    assert.equals(200, get("/", a.sid).status)
  end)

  it("signs out: the session and the token in it are gone", function()
    local p = assert(people["brady.garfinkel"])
    p.page:navigate(app .. "/")
    p.page:wait_for("!!document.getElementById('signout')")
    p.page:click("signout")
    p.page:wait_for("!!document.getElementById('signed-out')")
    -- signed out, / sends the browser to sign in again
    p.page:navigate(app .. "/")
    p.page:wait_for("!!document.getElementById('approve')")
    assert.equals(302, get("/", p.sid).status)
    -- a sign-out post without the form's token is refused
    local a = people["adele.olson"]
    local res = assert(http.request(app, "POST", "/logout", { headers = { Cookie = "sid=" .. a.sid }, form = { csrf_token = "guess" } }))
    assert.equals(403, res.status)
    assert.equals(200, get("/", a.sid).status)
  end)
end)
