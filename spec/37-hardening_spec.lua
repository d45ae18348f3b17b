-- Hardening: what comes from a server, a caller's table or a file on disk cannot reach a
-- header it should not, cross a plaintext hop it should not, or cost memory out of proportion
-- to what was received.
local h = require("helpers")
local r = require("support.reliability")
local cli = require("support.cli")
local achievers = h.achievers

local DAY = 86400

describe("tokens are header input", function()
  local bad = {
    "abc\r\nX-Injected: 1", "abc\nX-Injected: 1", "abc\rdef", "abc\0def", "abc def",
    "abc\tdef", "abc\127", "abc\195\169",
  }

  it("a token answer with CR LF in its access_token is decode, and nothing is sent with it", function()
    local url, stop, stats = r.scripted_server("inject_token")
    local c = achievers.client { base_url = url, client_id = "id", client_secret = "secret", retries = 0 }
    local data, err = c:get("users")
    local st = stats()
    stop()
    assert.is_nil(data)
    assert.equals("decode", err.kind)
    assert.matches("access_token", err.message)
    assert.is_nil(st.requests["GET /api/v5/users"])
    assert.equals(0, st.injected)
    -- and client:token() says the same
    local url2, stop2, stats2 = r.scripted_server("inject_token")
    local c2 = achievers.client { base_url = url2, client_id = "id", client_secret = "secret", retries = 0 }
    local tok, terr = c2:token()
    local st2 = stats2()
    stop2()
    assert.is_nil(tok)
    assert.equals("decode", terr.kind)
    assert.equals(0, st2.injected)
  end)

  it("a token answer with CR LF in its refresh_token is decode", function()
    local url, stop, stats = r.scripted_server("inject_refresh")
    local c = achievers.client { base_url = url, client_id = "id", client_secret = "secret", retries = 0 }
    local data, err = c:get("users")
    local st = stats()
    stop()
    assert.is_nil(data)
    assert.equals("decode", err.kind)
    assert.matches("refresh_token", err.message)
    assert.is_nil(st.requests["GET /api/v5/users"])
  end)

  it("a caller's token table with a byte no token holds raises, however it is given", function()
    local url, stop, stats = r.scripted_server("accept")
    local c = achievers.client { base_url = url, retries = 0 }
    for _, v in ipairs(bad) do
      local t = { access_token = v, expires_at = os.time() + DAY }
      local shown = string.format("%q", v)
      assert.has_error(function() achievers.token(t) end, nil, shown)
      local ok, e = pcall(achievers.token, t)
      assert.is_false(ok)
      assert.matches("access_token", tostring(e), 1, true)
      assert.is_false((pcall(achievers.client, { base_url = url, token = t })), shown)
      assert.is_false((pcall(c.with_token, c, t)), shown)
      local rt = { access_token = "fine", refresh_token = v, expires_at = os.time() + DAY,
        grant_type = "authorization_code" }
      ok, e = pcall(achievers.token, rt)
      assert.is_false(ok, shown)
      assert.matches("refresh_token", tostring(e), 1, true)
      assert.is_false((pcall(c.with_token, c, rt)), shown)
    end
    -- a clean one still works, and nothing injected ever arrived
    local good = c:with_token { access_token = "A-z0.9_~+/=", expires_at = os.time() + DAY }
    assert(good:get("users"))
    local st = stats()
    stop()
    assert.equals(0, st.injected)
  end)

  it("a saved CLI token file with CR LF in its token is refused with a clear message", function()
    local url, stop, stats = r.scripted_server("accept")
    local home = os.tmpname()
    os.remove(home)
    assert(cli.sh("mkdir -p " .. cli.q(home)))
    local env = { HOME = home, XDG_CONFIG_HOME = home .. "/cfg", ACHIEVERS_BASE_URL = url,
      ACHIEVERS_CLIENT_ID = "id", ACHIEVERS_CLIENT_SECRET = "secret" }
    -- the file as the store writes it, with a token no server of ours would have given
    local saver = os.tmpname()
    local f = assert(io.open(saver, "w"))
    f:write(string.format([[
local store = require("achievers.cli_store")
local json = require("achievers.cli_json")
assert(store.save_token(%q, "id", { access_token = "abc\r\nX-Injected: 1", token_type = "bearer",
  scope = "read", grant_type = "authorization_code", expires_at = os.time() + 86400 }, json.encode))
]], url))
    f:close()
    assert(cli.sh(cli.env_prefix(env) .. " " .. h.lua .. " " .. saver))
    os.remove(saver)
    local code, out, err = cli.run(env, "get", "users", "--user")
    local st = stats()
    stop()
    os.execute("rm -rf " .. cli.q(home))
    assert.equals(0, st.injected)
    assert.is_nil(st.requests["GET /api/v5/users"])
    assert.is_not.equals(0, code)
    assert.matches("token", err)
    assert.matches("visible ASCII", err, 1, true)
    assert.not_matches("internal error", err, 1, true)
    assert.equals("", out)
  end)
end)

describe("each", function()
  it("a paging.next on another origin ends the walk with false, err (invalid), not a raise", function()
    local url, stop, stats = r.scripted_server("foreign_next")
    local c = achievers.client { base_url = url, retries = 0,
      token = { access_token = "scripted", expires_at = os.time() + DAY } }
    local ids, failure, calls = {}, nil, 0
    local ok, raised = pcall(function()
      for item, err in c:each("users") do
        calls = calls + 1
        if item == false then failure = err else ids[#ids + 1] = item.id end
        assert(calls < 10)
      end
    end)
    local st = stats()
    stop()
    assert.is_true(ok, tostring(raised))
    assert.same({ 1, 2 }, ids)
    assert.is_table(failure)
    assert.equals("invalid", failure.kind)
    assert.matches("paging.next", failure.message, 1, true)
    assert.matches("another origin", tostring(failure), 1, true)
    assert.equals(1, st.requests["GET /api/v5/users"])
  end)

  it("the CLI's each reports it as an error of the server's answer, not an internal error", function()
    local url, stop = r.scripted_server("foreign_next")
    local home = os.tmpname()
    os.remove(home)
    local env = { HOME = home, XDG_CONFIG_HOME = home .. "/cfg", ACHIEVERS_BASE_URL = url,
      ACHIEVERS_CLIENT_ID = "id", ACHIEVERS_CLIENT_SECRET = "secret" }
    local code, out, err = cli.run(env, "each", "users")
    stop()
    os.execute("rm -rf " .. cli.q(home))
    assert.not_matches("internal error", err, 1, true)
    assert.matches("another origin", err, 1, true)
    assert.equals(6, code)
    assert.matches("1", out)
  end)
end)

describe("redaction of URL parameters", function()
  local query = "Access_Token=SEKRIT1&access%5Ftoken=SEKRIT2&CLIENT_SECRET=SEKRIT3&Code=SEKRIT4" ..
    "&REFRESH-TOKEN=SEKRIT5&%63ode=SEKRIT6&Password=SEKRIT7&q=keep#access_token=SEKRIT8&state=SEKRIT9"

  it("sees names in any case and percent-encoded, in traces, errors and tostring", function()
    local url, stop = r.scripted_server("canned")
    local hook, events = r.recorder()
    local c = achievers.client { base_url = url, retries = 0, on_request = hook,
      token = { access_token = "scripted", expires_at = os.time() + DAY } }
    local data, err = c:get("nothing-here", query)
    local req = c:async { path = "nothing-here", query = query }
    local shown = tostring(req)
    c:poll(5)
    stop()
    assert.is_nil(data)
    assert.equals("not_found", err.kind)
    local seen = h.strings_of(events)
    seen[#seen + 1] = tostring(err)
    seen[#seen + 1] = err.url
    seen[#seen + 1] = shown
    for _, s in ipairs(h.strings_of(err)) do seen[#seen + 1] = s end
    local all = table.concat(seen, "\n")
    for i = 1, 9 do
      assert.not_matches("SEKRIT" .. i, all, 1, true)
    end
    -- what is not a secret stays, names as they were written
    assert.matches("q=keep", err.url, 1, true)
    assert.matches("Access_Token=[redacted]", err.url, 1, true)
    assert.matches("access%5Ftoken=[redacted]", err.url, 1, true)
    assert.matches("REFRESH-TOKEN=[redacted]", tostring(err), 1, true)
  end)
end)

describe("HTTP dates under a host's locale", function()
  local function retried_after(path, locale, category)
    local url, stop = r.scripted_server("date_retry")
    local hook, events = r.recorder()
    local c = achievers.client { base_url = url, on_request = hook,
      token = { access_token = "scripted", expires_at = os.time() + DAY } }
    local before = os.setlocale(nil, category)
    local set = os.setlocale(locale, category)
    local ok, page, err = pcall(c.get, c, path)
    os.setlocale(before, category)
    stop()
    assert.equals(locale, set, "the " .. locale .. " locale is not installed (scripts/deps test makes it)")
    assert.is_true(ok, tostring(page))
    assert.is_nil(err)
    assert.is_table(page.items)
    local retries = r.phase(events, "retry")
    assert.equals(1, #retries)
    return retries[1].delay
  end

  it("a Retry-After date is honoured after setlocale(fr_FR.UTF-8) for LC_TIME", function()
    -- the delay is the Retry-After date less the answer's Date: 2 s, when both were read
    assert.equals(2, retried_after("users", "fr_FR.UTF-8", "time"))
  end)

  it("numbers in queries and forms keep their '.' under LC_NUMERIC fr_FR", function()
    local url, stop = r.scripted_server("canned")
    local c = achievers.client { base_url = url, retries = 0,
      token = { access_token = "scripted", expires_at = os.time() + DAY } }
    local before = os.setlocale(nil, "numeric")
    local set = os.setlocale("fr_FR.UTF-8", "numeric")
    local ok, data, err = pcall(c.get, c, "nothing-here", { x = 1.5, y = 1e-7 })
    os.setlocale(before, "numeric")
    stop()
    assert.equals("fr_FR.UTF-8", set)
    assert.is_true(ok, tostring(data))
    assert.equals(url .. "/api/v5/nothing-here?x=1.5&y=0.0000001", err.url)
  end)

  it("a token answer's fractional expires_in reads under LC_NUMERIC fr_FR; inf and nan do not", function()
    -- the token answer is read by the core's own reader; strtod there reads the locale's point
    local function token_for(body)
      local c = achievers.client { base_url = "http://127.0.0.1:9", client_id = "id",
        client_secret = "secret", retries = 0 }
      local ex = c:_exchange("token")
      for _ = 1, 10 do
        local act = ex:_next()
        if act == "send" then
          ex:_feed { status = 200, headers = "Content-Type: application/json\r\n", body = body }
        elseif act ~= "wait" then break end
      end
      return ex:result()
    end
    local before = os.setlocale(nil, "numeric")
    local set = os.setlocale("fr_FR.UTF-8", "numeric")
    local ok, res = pcall(function()
      local out = {}
      for i, body in ipairs { '{"access_token":"abc","expires_in":3599.5}',
                              '{"access_token":"abc","expires_in":"3600.0"}',
                              '{"access_token":"abc","expires_in":"inf"}',
                              '{"access_token":"abc","expires_in":"nan"}',
                              '{"access_token":"abc","expires_in":null}' } do
        local tok, err = token_for(body)
        out[i] = tok and math.floor(tok:expires_in() / 100 + 0.5) * 100 or err.kind
      end
      return out
    end)
    os.setlocale(before, "numeric")
    assert.equals("fr_FR.UTF-8", set)
    assert.is_true(ok, tostring(res))
    assert.same({ 3600, 3600, "decode", "decode", "decode" }, res)
  end)

  it("and for every category, in the RFC 850 and asctime forms too", function()
    assert.equals(2, retried_after("users", "fr_FR.UTF-8", "all"))
    assert.equals(1, retried_after("rfc850", "fr_FR.UTF-8", "all"))
    assert.equals(1, retried_after("asctime", "fr_FR.UTF-8", "all"))
  end)
end)

describe("TLS floor", function()
  local tls = require("support.tls")
  local certs, cleanup, dir
  setup(function()
    certs, cleanup = tls.make()
    dir = certs.dir
    -- a system OpenSSL configuration that allows TLS 1.0 and 1.1 (as a host may set for some
    -- old service of its own): what refuses then is the client's own floor
    local f = assert(io.open(dir .. "/permissive.cnf", "w"))
    f:write("openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n",
      "system_default = system_default_sect\n[system_default_sect]\nMinProtocol = TLSv1\n",
      "CipherString = DEFAULT:@SECLEVEL=0\n")
    f:close()
  end)
  teardown(function() cleanup() end)

  -- an openssl s_server speaking only TLS 1.1 on a free port; returns its URL, a stop function
  -- and a function that returns what it received
  local function old_server()
    local port = h.free_port()
    local pidfile, log = dir .. "/s_server.pid", dir .. "/s_server." .. port .. ".log"
    -- in its own process group (stopped whole); stdin held open: s_server echoes what it
    -- receives to stdout, and stops at the end of its input
    os.execute(string.format("setsid sh -c 'echo $$ >%s; sleep 60 | timeout --foreground 60 openssl s_server " ..
      "-accept 127.0.0.1:%d -cert %s -key %s -tls1_1 -cipher DEFAULT:@SECLEVEL=0' </dev/null >%s 2>&1 &",
      pidfile, port, certs.cert, certs.key, log))
    local socket = require("socket")
    for _ = 1, 100 do
      local c = socket.connect("127.0.0.1", port)
      if c then c:close() break end
      socket.sleep(0.05)
    end
    return "https://127.0.0.1:" .. port, function()
      local pid = cli.slurp(pidfile)
      if pid and pid:match("^%d+") then os.execute("kill -- -" .. pid:match("^%d+") .. " 2>/dev/null") end
    end, function() return cli.slurp(log) or "" end
  end

  it("a server that speaks only TLS 1.1 is refused: kind tls, the protocol named, no body sent", function()
    local url, stop, received = old_server()
    local script = dir .. "/tls11.lua"
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
local achievers = require("achievers")
local c = achievers.client { base_url = %q, client_id = "id", client_secret = "TOPSECRET",
  ca_file = %q, retries = 0, timeout = 3 }
local tok, err = c:token()
io.write(tostring(tok and "token" or err.kind), "\n", tostring(err and err.message), "\n")
]], url, certs.ca))
    f:close()
    local p = io.popen(cli.env_prefix({ OPENSSL_CONF = dir .. "/permissive.cnf" }) .. " " .. h.lua ..
      " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    local got = received()
    stop()
    local kind, message = out:match("^(%S+)\n(.*)")
    assert.not_matches("grant_type", got, 1, true)
    assert.not_matches("TOPSECRET", got, 1, true)
    assert.equals("tls", kind, out)
    assert.matches("protocol", message:lower(), 1, true)
    assert.matches("TLS 1.2", message, 1, true)
  end)
end)

describe("proxies", function()
  -- the recording proxy (spec/support/proxy_server.lua): its URL, a stop function and a
  -- function that returns everything it received
  local function start_proxy()
    local socket = require("socket")
    local port = h.free_port()
    local pidfile, log = os.tmpname(), os.tmpname()
    os.execute(string.format("env -u LD_PRELOAD %s spec/support/proxy_server.lua %d %s %s >/dev/null 2>&1 &",
      h.lua, port, pidfile, log))
    for _ = 1, 100 do
      local c = socket.connect("127.0.0.1", port)
      if c then c:close() break end
      socket.sleep(0.05)
    end
    -- the probe connection sent nothing: the log starts empty
    return "http://127.0.0.1:" .. port, function()
      local pid = cli.slurp(pidfile)
      if pid and pid:match("^%d+") then os.execute("kill " .. pid:match("^%d+") .. " 2>/dev/null") end
      os.remove(pidfile)
      os.remove(log)
    end, function() return cli.slurp(log) or "" end
  end

  -- Runs `code` in a child Lua process with the module and `env` (the proxy variables are
  -- read by libcurl from the process environment); returns what it printed.
  local function child(env, code)
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write("local achievers = require('achievers')\n", code)
    f:close()
    local base = { http_proxy = false, https_proxy = false, HTTPS_PROXY = false, ALL_PROXY = false,
      all_proxy = false, no_proxy = false, NO_PROXY = false }
    for k, v in pairs(env) do base[k] = v end
    local p = io.popen(cli.env_prefix(base) .. " timeout 60 " .. h.lua .. " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(script)
    return out
  end

  local get_users = [[
local c = achievers.client { base_url = BASE, client_id = "id", client_secret = "TOPSECRET",
  retries = 0, timeout = 5, proxy = PROXY, allow_http = ALLOW }
local page, err = c:get("users")
print(page and "ok" or (err.kind .. ": " .. err.message))
]]
  local function script(base, proxy, allow)
    return string.format("local BASE, PROXY, ALLOW = %q, %s, %s\n", base,
      proxy == nil and "nil" or type(proxy) == "string" and string.format("%q", proxy) or tostring(proxy),
      tostring(allow or false)) .. get_users
  end

  it("the environment's proxy is not used for an http:// base_url on loopback: the secret stays here", function()
    local url, stop = r.scripted_server("accept")
    local purl, pstop, received = start_proxy()
    local outs = {
      child({ http_proxy = purl }, script(url)),
      child({ ALL_PROXY = purl }, script(url)),
      child({ http_proxy = purl }, script((url:gsub("127%.0%.0%.1", "localhost")))),
    }
    local got = received()
    pstop()
    stop()
    assert.equals("", got)
    for _, out in ipairs(outs) do assert.equals("ok\n", out) end
  end)

  it("an https:// base_url goes through the environment's proxy by CONNECT only", function()
    local purl, pstop, received = start_proxy()
    local target = "https://127.0.0.1:" .. h.free_port()
    local out1 = child({ https_proxy = purl }, script(target))
    local out2 = child({ ALL_PROXY = purl }, script(target))
    local got = received()
    pstop()
    assert.matches("CONNECT 127.0.0.1:%d+ HTTP/1.1", got)
    assert.not_matches("TOPSECRET", got, 1, true)
    assert.not_matches("POST", got, 1, true)
    assert.not_matches("grant_type", got, 1, true)
    assert.matches("^network", out1)
    assert.matches("^network", out2)
  end)

  it("an explicit proxy with an https:// base_url tunnels: the proxy sees CONNECT host:port", function()
    local purl, pstop, received = start_proxy()
    local port = h.free_port()
    local out = child({}, script("https://127.0.0.1:" .. port, purl))
    local got = received()
    pstop()
    assert.matches("CONNECT 127.0.0.1:" .. port .. " HTTP/1.1", got, 1, true)
    assert.not_matches("TOPSECRET", got, 1, true)
    assert.matches("^network", out)
  end)

  it("an explicit proxy with an http:// base_url must be on loopback, or allow_http", function()
    local url, stop = r.scripted_server("accept")
    local ok, e = pcall(achievers.client, { base_url = url, proxy = "http://proxy.example.com:3128" })
    assert.is_false(ok)
    assert.matches("option 'proxy'", tostring(e), 1, true)
    assert.matches("allow_http", tostring(e), 1, true)
    assert.is_false((pcall(achievers.client, { base_url = url, proxy = "socks5://user@10.0.0.1:1080" })))
    assert.is_false((pcall(achievers.client, { base_url = url, proxy = "127.0.0.1.example.com:8080" })))
    -- allowed: a proxy on loopback, or allow_http = true (the client is made; nothing is sent)
    assert(achievers.client { base_url = url, proxy = "http://127.0.0.1:3128" })
    assert(achievers.client { base_url = url, proxy = "http://u:p@[::1]:3128/" })
    assert(achievers.client { base_url = url, proxy = "localhost:3128" })
    assert(achievers.client { base_url = url, proxy = "http://proxy.example.com:3128", allow_http = true })
    assert(achievers.client { base_url = "https://program.example.com", proxy = "http://proxy.example.com:3128" })
    -- and one on loopback is used when given
    local purl, pstop, received = start_proxy()
    local out = child({}, script(url, purl))
    local got = received()
    pstop()
    stop()
    assert.matches("POST " .. url .. "/oauth/v2/openIDConnectClient/token", got, 1, true)
    assert.not_equals("ok\n", out)
  end)

  it("proxy = false (or \"\") turns the environment's proxies off", function()
    local purl, pstop, received = start_proxy()
    local target = "https://127.0.0.1:" .. h.free_port()
    local out1 = child({ https_proxy = purl, ALL_PROXY = purl }, script(target, false))
    local out2 = child({ https_proxy = purl, ALL_PROXY = purl }, script(target, ""))
    local got = received()
    pstop()
    assert.equals("", got)
    -- straight to the (closed) port
    assert.matches("^network", out1)
    assert.matches("^network", out2)
    assert.has_error(function() achievers.client { base_url = target, proxy = true } end)
  end)
end)

describe("an answer whose string breaks off", function()
  -- A string with an escape is built piecewise in a Lua buffer; past the buffer's first size
  -- Lua 5.4 keeps it in a box that is closed when the stack is cut back. Lua 5.4.4's
  -- lua_settop keeps a pointer to the stack across that close, which can move the stack: a
  -- decoder that left the box for lua_settop to close after a broken string (a control byte,
  -- a bad escape, the end of the answer) wrote through a stale pointer. Run in a process of its
  -- own: under AddressSanitizer (make test SAN=1) the old decoder is a use-after-free report.
  it("leaves the Lua stack whole, however the string ends", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
-- a collector that runs at every allocation
if not pcall(collectgarbage, "incremental", 100, 1000) then
  collectgarbage("setpause", 100)
  collectgarbage("setstepmul", 1000)
end
local achievers = require("achievers")
local seen = 0
-- values waiting on the stack before the string: the stack is near a size where closing the
-- box has to grow it
for n = 30, 50 do
  local items = {}
  for i = 1, n do items[i] = tostring(i + 0.5) end
  local head = "[" .. table.concat(items, ",") .. ',{"k\\n' .. string.rep("x", 1500)
  local cases = {
    { head .. '\1":1}]', "control character" },
    { head .. '\\q":1}]', "bad escape" },
    { head .. '\\udc00":1}]', "lone low surrogate" },
    { head, "unterminated string" },
  }
  for round = 1, 10 do
    for _, c in ipairs(cases) do
      local v, msg = achievers.json_decode(c[1])
      assert(v == nil and tostring(msg):find(c[2], 1, true), tostring(msg))
      seen = seen + 1
    end
  end
end
print("decoded " .. seen)
]])
    f:close()
    local p = io.popen(("LUA_CPATH=%q %s %s 2>&1"):format(h.build .. "/?.so;;", h.lua, script))
    local out = p:read("*a")
    local ok = p:close()
    os.remove(script)
    assert.is_true(ok == true or ok == 0, out)
    assert.matches("decoded 840", out)
  end)
end)

describe("answers cost memory in proportion to their size", function()
  local url, stop, stats
  setup(function() url, stop, stats = r.scripted_server("bombs") end)
  teardown(function() stop() end)

  local function client(extra)
    local opts = { base_url = url, retries = 0, timeout = 30,
      token = { access_token = "scripted", expires_at = os.time() + DAY } }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return achievers.client(opts)
  end

  -- Lua heap allocated by f (collector stopped: garbage counts too), in bytes, and f's results.
  local function allocated(f)
    collectgarbage()
    collectgarbage("stop")
    local before = collectgarbage("count")
    local a, b = f()
    local after = collectgarbage("count")
    collectgarbage("restart")
    return (after - before) * 1024, a, b
  end

  it("an endless error body stops at max_response_size and is not decoded", function()
    local cap = 4 * 1024 * 1024
    local used, data, err = allocated(function() return client({ max_response_size = cap }):get("endless-error") end)
    assert.is_true(data == nil)
    assert.equals("decode", err.kind)
    assert.matches("max_response_size", err.message)
    -- the decoder built nothing from the cut body (it once built a table per 3 bytes of it)
    assert.is_true(used < cap / 4, "the call allocated " .. used .. " bytes in Lua")
    -- and the transfer stopped near the cap, not at the end of the server's 256 MiB
    assert.is_true(stats().sent < 64 * 1024 * 1024)
  end)

  it("a valid answer of millions of empty arrays is decode, within a bounded allocation", function()
    local size = 6 * 1024 * 1024
    local used, data, err = allocated(function() return client():get("nested") end)
    assert.is_true(data == nil, "decoded, " .. used .. " bytes") -- (not shown: 2 million tables)
    assert.equals("decode", err.kind)
    assert.matches("size", err.message)
    assert.is_true(used < 64 * size, "the call allocated " .. used .. " bytes in Lua")
  end)

  it("achievers.json_decode has the same bound; ordinary pages decode", function()
    local v, e = achievers.json_decode("[" .. string.rep("[],", 100000) .. "[]]")
    assert.is_true(v == nil)
    assert.matches("size", e)
    local page = { items = {} }
    for i = 1, 100 do
      page.items[i] = string.format('{"id":%d,"name":"user %d","tags":[],"manager":{},"groups":[{"id":1}]}', i, i)
    end
    local text = '{"paging":{"page":1,"totalPages":1},"items":[' .. table.concat(page.items, ",") .. "]}"
    local ok = achievers.json_decode(text)
    assert.equals(100, #ok.items)
    -- small documents of nothing but containers stay readable
    assert.same({ {}, {}, { {} } }, achievers.json_decode("[[],{},[[]]]"))
  end)

  it("max_response_size is 8 MiB by default, enough for any page of the API", function()
    local data, err = client():get("endless-error")
    assert.is_nil(data)
    assert.matches("8388608", err.message)
  end)
end)

describe("the CLI's token file", function()
  local home, env, dir
  before_each(function()
    home = os.tmpname()
    os.remove(home)
    assert(cli.sh("mkdir -p " .. cli.q(home)))
    env = { HOME = home, XDG_CONFIG_HOME = home .. "/cfg", ACHIEVERS_BASE_URL = "https://program.example.com",
      ACHIEVERS_CLIENT_ID = "id", ACHIEVERS_CLIENT_SECRET = "secret" }
    dir = home .. "/cfg/achievers"
  end)
  after_each(function() os.execute("rm -rf " .. cli.q(home)) end)

  -- Runs Lua code with the store loaded, in a child with `env`; returns its output. `prefix`
  -- goes before the Lua command (strace, say).
  local function store_do(code, prefix)
    local script = home .. "/do.lua"
    local f = assert(io.open(script, "w"))
    f:write("local store = require('achievers.cli_store')\nlocal json = require('achievers.cli_json')\n",
      "local TOKEN = { access_token = 'FULLTOKEN0123456789', token_type = 'bearer', scope = 'read',",
      " grant_type = 'authorization_code', expires_at = os.time() + 86400 }\n", code)
    f:close()
    local p = io.popen(cli.env_prefix(env) .. " " .. (prefix or "") .. " " .. h.lua .. " " .. script .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
  end
  local save = "print(assert(store.save_token('https://program.example.com', 'id', TOKEN, json.encode)))\n"

  local function files()
    local p = io.popen("ls -A " .. cli.q(dir) .. " 2>/dev/null")
    local out = p:read("*a")
    p:close()
    local t = {}
    for name in out:gmatch("[^\n]+") do t[#t + 1] = name end
    table.sort(t)
    return t
  end

  it("logout removes the temporary files a killed save left, with the token in them", function()
    local path = store_do(save):match("[^\n]+")
    assert.matches("/token%-%x+%.json$", path)
    for _, suffix in ipairs { ".tmp17000000001", ".tmp17000000002" } do
      local f = assert(io.open(path .. suffix, "w"))
      f:write('{"token":{"access_token":"FULLTOKEN0123456789"}}')
      f:close()
    end
    local code = cli.run(env, "logout")
    assert.equals(0, code)
    assert.same({}, files())
  end)

  it("a save removes leftovers older than a minute, and keeps another save's fresh one", function()
    local path = store_do(save):match("[^\n]+")
    local old, fresh = path .. ".tmp1", path .. ".tmp2"
    for _, p in ipairs { old, fresh } do assert(cli.sh("umask 077; echo FULLTOKEN0123456789 >" .. cli.q(p))) end
    assert(cli.sh("touch -d '5 minutes ago' " .. cli.q(old)))
    store_do(save)
    local names = files()
    assert.equals(2, #names, table.concat(names, " "))
    assert.matches("%.json$", names[1])
    assert.matches("%.json%.tmp2$", names[2])
    assert.equals("600", require("achievers.cli_store").mode(path))
  end)

  it("a save is flushed to the disk before the rename", function()
    local out = store_do(save, "strace -f -e trace=fsync,rename -o " .. cli.q(home .. "/trace"))
    assert.matches("/token%-%x+%.json", out)
    local trace = cli.slurp(home .. "/trace") or ""
    local fsync_at = trace:find("fsync%(") or trace:find("execve%(\"[^\"]*sync\"")
    local rename_at = trace:find("rename%(")
    assert.is_truthy(fsync_at, trace)
    assert.is_truthy(rename_at, trace)
    assert.is_true(fsync_at < rename_at)
  end)

  it("after saves killed at any moment, logout leaves no file with a token", function()
    local script, pidfile = home .. "/loop.lua", home .. "/pid"
    local f = assert(io.open(script, "w"))
    f:write("local store = require('achievers.cli_store')\nlocal json = require('achievers.cli_json')\n",
      "for i = 1, 300 do store.save_token('https://program.example.com', 'id', { access_token = 'FULLTOKEN' .. i,",
      " token_type = 'bearer', scope = 'read', grant_type = 'authorization_code', expires_at = 1e10 }, json.encode) end\n")
    f:close()
    for i = 1, 3 do
      -- env execs the Lua: $! is the saving process itself
      os.execute(string.format("%s %s %s >/dev/null 2>&1 & echo $! >%s; sleep 0.%d; kill -9 $(cat %s) 2>/dev/null; wait",
        cli.env_prefix(env), h.lua, cli.q(script), cli.q(pidfile), i * 2, cli.q(pidfile)))
    end
    -- it was saving: the token file is there
    assert.is_true(#files() >= 1)
    assert.equals(0, (cli.run(env, "logout")))
    assert.same({}, files())
  end)
end)
