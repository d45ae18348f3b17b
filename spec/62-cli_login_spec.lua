-- `achievers login` end to end: the program runs in the background and prints the authorize
-- URL; the spec plays the browser (fetches the sandbox's consent page, submits its form,
-- follows the redirect to the program's loopback listener); then the stored token, its file
-- mode, and its reuse by later commands.
local h = require("helpers")
local http = require("sandbox_http")
local socket = require("socket")
local cjson = require("cjson")

local cli = require("support.cli")
local q, sh, slurp, run, env_prefix = cli.q, cli.sh, cli.slurp, cli.run, cli.env_prefix

-- Starts `achievers login ARGS...` in the background (at most 60 s); returns a handle with
-- the files it writes and `wait()` for its exit status.
local function start_login(env, dir, ...)
  local args = {}
  for i, a in ipairs { ... } do args[i] = q(a) end
  local cmd = string.format("%s %s bin/achievers login --wait 30 %s >%s 2>%s; echo $? >%s",
    env_prefix(env), h.lua, table.concat(args, " "), q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/rc"))
  os.execute(string.format("timeout 60 sh -c %s </dev/null >/dev/null 2>&1 & echo $! >%s", q(cmd), q(dir .. "/pid")))
  local handle = { dir = dir }
  function handle.output(pattern)
    for _ = 1, 600 do -- polls every 0.05 s: a bound for a busy machine
      local s = slurp(dir .. "/out") or ""
      local m = s:match(pattern)
      if m then return m end
      socket.sleep(0.05)
    end
    error("login printed nothing matching " .. pattern .. "; stderr: " .. tostring(slurp(dir .. "/err")))
  end
  function handle.wait()
    for _ = 1, 1200 do -- polls every 0.05 s: a bound for a busy machine
      local rc = slurp(dir .. "/rc")
      if rc and rc:match("%d+") then return tonumber(rc:match("%d+")) end
      socket.sleep(0.05)
    end
    error("login did not finish; stderr: " .. tostring(slurp(dir .. "/err")))
  end
  function handle.stop()
    local pid = (slurp(dir .. "/pid") or ""):match("%d+")
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  end
  return handle
end

local function url_decode(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end))
end

-- The browser: GET the consent page, submit its form with `decision`, return the Location of
-- the redirect (not followed).
local function consent(sb, authorize_url, decision, username)
  local path = authorize_url:sub(#sb.url + 1)
  local page = assert(http.request(sb, "GET", path))
  assert.equals(200, page.status)
  local form = {}
  for name, value in page.body:gmatch('<input type="hidden" name="([^"]+)" value="([^"]*)">') do
    form[name] = value:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&#39;", "'"):gsub("&amp;", "&")
  end
  local action = assert(page.body:match('<form method="post" action="([^"]+)"'))
  form.decision = decision
  form.username = username or "adele.olson"
  local res = assert(http.request(sb, "POST", action, { form = form }))
  assert.equals(302, res.status, res.body)
  return assert(res.headers["location"]), form
end

-- Follows a redirect to the program's listener, as the browser would.
local function visit(url)
  local base, path = url:match("^(http://[^/]+)(/.*)$")
  return assert(http.request(base, "GET", path))
end

describe("achievers login", function()
  local sb, home, env, dir

  setup(function()
    -- the CLI listens on a loopback port of its choosing (RFC 8252): the sandbox must allow it
    sb = h.start_sandbox { loopback_redirects = true }
  end)
  teardown(function() sb:stop() end)

  before_each(function()
    sb:reset()
    home, env = cli.private_env(sb)
    dir = home .. "/run"
    assert(sh("mkdir -p " .. q(dir)))
  end)
  after_each(function()
    os.execute("rm -rf " .. q(home))
  end)

  local function token_files()
    local p = io.popen("ls " .. q(home .. "/cfg/achievers") .. " 2>/dev/null")
    local names = {}
    for l in p:lines() do names[#names + 1] = l end
    p:close()
    return names
  end

  it("signs in through the browser, stores the token 0600 and later commands use it", function()
    local login = start_login(env, dir)
    local ok, e = pcall(function()
      local url = login.output("(http://%S+/authorize%?%S+)\n")
      assert.matches("response_type=code", url)
      assert.matches("redirect_uri=http%%3A%%2F%%2F127%.0%.0%.1%%3A%d+%%2Fcallback", url)
      local location, form = consent(sb, url, "approve", "adele.olson")
      assert.matches("^http://127%.0%.0%.1:%d+/callback%?code=%x+&state=", location)
      assert.equals(form.state, url_decode(location:match("state=([^&]+)")))
      local page = visit(location)
      assert.equals(200, page.status)
      assert.matches("Signed in", page.body)
      assert.equals(0, login.wait())
    end)
    login.stop()
    assert(ok, e)

    local err = slurp(dir .. "/err")
    assert.matches("Logged in: achievers%.token%(bearer, read,write", err)
    local files = token_files()
    assert.equals(1, #files)
    assert.matches("^token%-%x+%.json$", files[1])
    local path = home .. "/cfg/achievers/" .. files[1]
    assert.matches("Saved to " .. path:gsub("%p", "%%%0"), err)
    assert.equals("600", require("achievers.cli_store").mode(path))
    assert.equals("700", require("achievers.cli_store").mode(home .. "/cfg/achievers"))
    local saved = cjson.decode(slurp(path))
    assert.equals(sb.url, saved.base_url)
    assert.equals(sb.client_id, saved.client_id)
    assert.equals("authorization_code", saved.token.grant_type)
    local access = saved.token.access_token
    assert.is_string(access)
    assert.is_nil(slurp(dir .. "/out"):find(access, 1, true))
    assert.is_nil(err:find(access, 1, true))
    assert.is_nil(saved.client_secret)

    -- a later command acts with the stored user token: no new token request
    local before = sb:stats().token_requests
    local code, out = run(env, "--json", "get", "users")
    assert.equals(0, code)
    assert.equals(240, cjson.decode(out).paging.totalItems)
    assert.equals("Bearer " .. access, h.last_request(sb, "/api/v5/users").headers["authorization"])
    assert.equals(before, sb:stats().token_requests)

    code, out = run(env, "--json", "token")
    local info = cjson.decode(out)
    assert.equals("authorization_code", info.grant_type)
    assert.equals(path, info.file)

    -- send-recognition uses it too: the recognition comes from the person who signed in
    code, out = run(env, "--json", "send-recognition", "--to", "brady.garfinkel", "--criterion", "412",
      "--text", "Thanks for covering the release night!")
    assert.equals(0, code)
    local rec = cjson.decode(out)
    assert.equals("adele.olson", rec.nominator.username)
    assert.equals("brady.garfinkel", rec.nominees[1].username)
    assert.equals("Bearer " .. access, h.last_request(sb, "/api/v5/recognitions").headers["authorization"])

    -- --system still acts as the application
    code = run(env, "--system", "get", "users/10726811")
    assert.equals(0, code)
    assert.are_not.equal("Bearer " .. access, h.last_request(sb, "/users/10726811").headers["authorization"])

    -- logout forgets it
    code = run(env, "logout")
    assert.equals(0, code)
    assert.equals(0, #token_files())
    code = run(env, "--user", "get", "users")
    assert.equals(3, code)
  end)

  it("exits 11 and stores nothing when the state does not match", function()
    local login = start_login(env, dir)
    local ok, e = pcall(function()
      local url = login.output("(http://%S+/authorize%?%S+)\n")
      local location = consent(sb, url, "approve")
      local forged = location:gsub("state=[^&]+", "state=forged")
      local page = visit(forged)
      assert.equals(400, page.status)
      assert.matches("Sign%-in failed", page.body)
      assert.equals(11, login.wait())
    end)
    login.stop()
    assert(ok, e)
    assert.matches("state_mismatch", slurp(dir .. "/err"))
    assert.equals(0, #token_files())
    assert.equals(0, h.route_count(sb, "POST /token"))
  end)

  it("exits 11 when the person denies access", function()
    local login = start_login(env, dir, "--json")
    local ok, e = pcall(function()
      local line = login.output("({[^\n]*authorize_url[^\n]*})\n")
      local start = cjson.decode(line)
      assert.matches("^http://127%.0%.0%.1:%d+/callback$", start.redirect_uri)
      local location = consent(sb, start.authorize_url, "deny")
      assert.matches("error=access_denied", location)
      visit(location)
      assert.equals(11, login.wait())
    end)
    login.stop()
    assert(ok, e)
    local failure = cjson.decode(slurp(dir .. "/err"):match("[^\n]+"))
    assert.equals("access_denied", failure.error.kind)
    assert.equals(0, #token_files())
  end)

  it("ignores other requests to the listener and listens on a given port", function()
    local port = h.free_port()
    local login = start_login(env, dir, "--port", tostring(port))
    local ok, e = pcall(function()
      local url = login.output("(http://%S+/authorize%?%S+)\n")
      assert.matches("127%.0%.0%.1%%3A" .. port .. "%%2Fcallback", url)
      local stray = visit("http://127.0.0.1:" .. port .. "/favicon.ico")
      assert.equals(404, stray.status)
      visit(consent(sb, url, "approve", "brady.garfinkel"))
      assert.equals(0, login.wait())
    end)
    login.stop()
    assert(ok, e)
    assert.equals(1, #token_files())
  end)

  it("exits 9 when no browser comes back in time, saying so once", function()
    local code, out, err = run(env, "login", "--wait", "1")
    assert.equals(9, code)
    assert.matches("/authorize%?", out)
    assert.matches("\nachievers: login failed: timeout: no redirect came back within 1 s\n$", err)
    assert.is_nil(err:find("achievers: timeout", 1, true)) -- no prefix said twice
    assert.equals(0, #token_files())
  end)

  it("exits 12 with a clear message when the port is taken", function()
    local taken = assert(socket.bind("127.0.0.1", 0))
    local _, port = taken:getsockname()
    local code, out, err = run(env, "login", "--port", tostring(port), "--wait", "1")
    taken:close()
    assert.equals(12, code)
    assert.equals("", out)
    assert.equals("achievers: login failed: listen: cannot listen on 127.0.0.1:" .. port ..
      ": address already in use (another program has it: try another --port)\n", err)
    assert.is_nil(err:find("internal", 1, true))
  end)

  it("says so when --open finds no xdg-open, and still prints the URL", function()
    -- a PATH with the interpreter alone
    local bin = home .. "/bin"
    local lua = io.popen("command -v " .. q(h.lua)):read("*l")
    assert(sh("mkdir -p " .. q(bin) .. " && ln -s " .. q(lua) .. " " .. q(bin .. "/" .. h.lua:match("[^/]+$"))))
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    e.PATH = bin
    local code, out, err = run(e, "login", "--open", "--wait", "1")
    assert.equals(9, code)
    assert.matches("/authorize%?", out)
    assert.matches("achievers: --open: no xdg-open to open a browser with; open the URL above yourself\n",
      err, 1, true)
  end)

  -- `achievers login --no-browser`, its stdin a FIFO the spec writes the pasted line to.
  local function paste_login(line_of)
    local fifo = dir .. "/in"
    assert(sh("mkfifo " .. q(fifo)))
    local cmd = string.format("%s %s bin/achievers login --no-browser --wait 30 <%s >%s 2>%s; echo $? >%s",
      env_prefix(env), h.lua, q(fifo), q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/rc"))
    os.execute(string.format("timeout 60 sh -c %s </dev/null >/dev/null 2>&1 &", q(cmd)))
    local input = assert(io.open(fifo, "w")) -- opens once the program's shell opens it
    local url
    for _ = 1, 600 do -- polls every 0.05 s: a bound for a busy machine
      url = (slurp(dir .. "/out") or ""):match("(http://%S+/authorize%?%S+)\n")
      if url then break end
      socket.sleep(0.05)
    end
    assert(url, "no URL; stderr: " .. tostring(slurp(dir .. "/err")))
    assert.matches("paste that whole address here %(or just the code%)", slurp(dir .. "/err"))
    input:write(line_of(url), "\n")
    input:close()
    for _ = 1, 1200 do -- polls every 0.05 s: a bound for a busy machine
      local rc = (slurp(dir .. "/rc") or ""):match("%d+")
      if rc then return tonumber(rc) end
      socket.sleep(0.05)
    end
    error("login --no-browser did not finish: " .. tostring(slurp(dir .. "/err")))
  end

  it("--no-browser takes the pasted redirect address, and checks its state", function()
    local code = paste_login(function(url) return "  " .. consent(sb, url, "approve") .. "  " end)
    assert.equals(0, code, slurp(dir .. "/err"))
    assert.matches("Logged in: achievers%.token%(bearer, read,write", slurp(dir .. "/err"))
    assert.equals(1, #token_files())
    local rc, tok = run(env, "--user", "token")
    assert.equals(0, rc)
    assert.matches("^achievers%.token%(bearer, read,write", tok)
  end)

  it("--no-browser refuses a pasted address whose state does not match (exit 11)", function()
    local code = paste_login(function(url)
      return (consent(sb, url, "approve"):gsub("state=[^&]+", "state=forged"))
    end)
    assert.equals(11, code)
    assert.matches("state_mismatch", slurp(dir .. "/err"))
    assert.equals(0, #token_files())
    assert.equals(0, h.route_count(sb, "POST /token"))
  end)

  it("--no-browser takes a bare code too", function()
    local code = paste_login(function(url)
      return url_decode(consent(sb, url, "approve"):match("code=([^&]+)"))
    end)
    assert.equals(0, code, slurp(dir .. "/err"))
    assert.equals(1, #token_files())
  end)
end)
