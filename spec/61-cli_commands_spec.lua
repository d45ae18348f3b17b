-- The `achievers` program run as a subprocess against a sandbox in this process: exit status
-- by error kind, --json output parsed back, `each` across pages, the progress bar, config.
local h = require("helpers")
local cjson = require("cjson")

local cli = require("support.cli")
local q, sh, run, env_prefix = cli.q, cli.sh, cli.run, cli.env_prefix
local function slurp(path) return cli.slurp(path) or "" end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("achievers program", function()
  local sb, home, env

  setup(function()
    sb = h.start_sandbox()
    home, env = cli.private_env(sb)
  end)
  teardown(function()
    sb:stop()
    os.execute("rm -rf " .. q(home))
  end)
  before_each(function() sb:reset() end)

  local function with(extra)
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    for k, v in pairs(extra) do e[k] = v end
    return e
  end

  describe("usage", function()
    it("documents its exit status table in --help", function()
      local code, out = run(env, "--help")
      assert.equals(0, code)
      assert.matches("usage: achievers", out)
      assert.matches("Exit status:", out)
      for _, row in ipairs { " 2  usage", " 3  auth", " 5  not_found", " 9  network",
        "11  login failed", "12  login could not listen", "130  interrupted (Ctrl-C)" } do
        assert.matches(row, out, 1, true)
      end
    end)

    it("exits 2 on usage errors, with a one-line reason on stderr", function()
      local code, out, err = run(env)
      assert.equals(2, code)
      assert.equals("", out)
      assert.matches("usage: achievers", err)
      code, _, err = run(env, "frobnicate")
      assert.equals(2, code)
      assert.matches("unknown command 'frobnicate'", err)
      code, _, err = run(env, "get")
      assert.equals(2, code)
      assert.matches("get needs a PATH", err)
      code, _, err = run(env, "get", "users", "pageSize")
      assert.equals(2, code)
      assert.matches("expected key=value", err)
      code, _, err = run(env, "each", "users", "--limit", "many")
      assert.equals(2, code)
      assert.matches("--limit needs a number", err)
      code, _, err = run(env, "get", "users", "--show-token")
      assert.equals(2, code)
      assert.matches("not an option of `get`", err)
      code, _, err = run(with { ACHIEVERS_BASE_URL = false }, "get", "users")
      assert.equals(2, code)
      assert.matches("no base URL", err)
    end)
  end)

  describe("get, options and post", function()
    it("prints an answer readably, and as JSON with --json", function()
      local code, out, err = run(env, "get", "users", "pageSize=3")
      assert.equals(0, code, err)
      assert.matches("^{\n  items = {", out)
      assert.matches("totalItems = 240", out)
      code, out = run(env, "--json", "get", "users", "pageSize=3", "q=a")
      assert.equals(0, code)
      local page = cjson.decode(out)
      assert.equals(3, #page.items)
      assert.equals(3, page.paging.pageSize)
      assert.is_string(page.items[1].username)
      assert.equals(1, #lines(out))
    end)

    it("sends repeated keys as a list", function()
      local code = run(env, "get", "users", "q=adele", "q=brady")
      assert.equals(0, code)
      assert.equals("q=adele&q=brady", h.last_request(sb, "/users").query)
    end)

    it("exits 5 for not_found, and reports the error as JSON on stderr with --json", function()
      local code, out, err = run(env, "get", "users/1")
      assert.equals(5, code)
      assert.equals("", out)
      assert.matches("^achievers: not_found %(404", err)
      code, out, err = run(env, "--json", "get", "users/1")
      assert.equals(5, code)
      assert.equals("", out)
      local e = cjson.decode(err).error
      assert.equals("not_found", e.kind)
      assert.equals(404, e.status)
      assert.equals(5, e.exit)
      assert.equals("GET", e.method)
      assert.matches("^achievers: not_found %(404", e.text)
      code, _, err = run(env, "--json", "get")
      assert.equals(2, code)
      assert.equals("usage", cjson.decode(err).error.kind)
    end)

    it("exits 3 when the credentials are refused", function()
      local code, _, err = run(with { ACHIEVERS_CLIENT_SECRET = "s3cr3t-guess" }, "get", "users")
      assert.equals(3, code)
      assert.matches("auth", err)
      assert.is_nil(err:find("s3cr3t-guess", 1, true))
    end)

    it("exits 4 for forbidden, 6 for invalid", function()
      local code, _, err = run(env, "options", "recognitions", "nominees=brady.garfinkel")
      assert.equals(4, code)
      assert.matches("forbidden", err)
      code, _, err = run(env, "post", "achievements", "title=x")
      assert.equals(4, code)
      code, _, err = run(env, "get", "users", "pageSize=abc")
      assert.equals(6, code)
      assert.matches("invalid %(400", err)
    end)

    it("exits 8 for a server error and 7 when still rate limited after the retries", function()
      sb:fail { count = 1, status = 500 }
      local code, _, err = run(env, "get", "users")
      assert.equals(8, code)
      assert.matches("server %(500", err)
      sb:fail { count = 20, status = 429, retry_after = 0 }
      code, _, err = run(env, "get", "users")
      assert.equals(7, code)
      assert.matches("rate_limited", err)
    end)

    it("exits 9 when nothing listens and 10 for an answer that is not JSON", function()
      local code, _, err = run(with { ACHIEVERS_BASE_URL = "http://127.0.0.1:" .. h.free_port() },
        "--timeout", "5", "get", "users")
      assert.equals(9, code)
      assert.matches("network", err)
      local url, stop = h.canned_server()
      code, _, err = run(with { ACHIEVERS_BASE_URL = url }, "get", "not-json")
      stop()
      assert.equals(10, code)
      assert.matches("decode", err)
    end)
  end)

  describe("token", function()
    it("shows the token without its secret, and the secret only with --show-token", function()
      local c = h.client(sb)
      local tok = assert(c:token()) -- the sandbox hands the same token to the same client and scope
      local code, out, err = run(env, "token")
      assert.equals(0, code, err)
      assert.matches("^achievers%.token%(bearer, read, expires ", out)
      assert.is_nil(out:find(tok.access_token, 1, true))
      code, out = run(env, "--json", "token")
      assert.equals(0, code)
      local info = cjson.decode(out)
      assert.equals("client_credentials", info.grant_type)
      assert.equals("read", info.scope)
      assert.is_true(info.expires_in > 0)
      assert.is_nil(info.access_token)
      assert.is_nil(out:find(tok.access_token, 1, true))
      code, out = run(env, "token", "--show-token")
      assert.equals(0, code)
      assert.equals(tok.access_token .. "\n", out)
      code, out = run(env, "--json", "token", "--show-token")
      assert.equals(tok.access_token, cjson.decode(out).access_token)
    end)

    it("never prints the client secret", function()
      for _, args in ipairs { { "token" }, { "--json", "token" }, { "get", "users/1" }, { "get", "users" } } do
        local _, out, err = run(env, (table.unpack or unpack)(args))
        assert.is_nil((out .. err):find(sb.client_secret, 1, true))
      end
    end)
  end)

  describe("each", function()
    it("prints every item of every page, one per line", function()
      local code, out, err = run(env, "--json", "each", "users", "pageSize=50")
      assert.equals(0, code, err)
      local ids, n = {}, 0
      for _, l in ipairs(lines(out)) do
        local item = cjson.decode(l)
        assert.is_number(item.id)
        assert.is_nil(ids[item.id])
        ids[item.id] = true
        n = n + 1
      end
      assert.equals(240, n)
      assert.equals(5, h.route_count(sb, "GET /users"))
      assert.equals("", err) -- no progress bar: stderr is not a terminal
    end)

    it("prints one readable line per item, and stops at --limit", function()
      local code, out = run(env, "each", "users", "pageSize=2", "--limit", "3")
      assert.equals(0, code)
      local l = lines(out)
      assert.equals(3, #l)
      assert.matches('^{ .*username = "[%w.]+".* }$', l[1])
      assert.equals(2, h.route_count(sb, "GET /users"))
    end)

    it("exits with the error's status when the list cannot be read", function()
      local code, out, err = run(env, "--json", "each", "users/1")
      assert.equals(5, code)
      assert.equals("", out)
      assert.equals("not_found", cjson.decode(err).error.kind)
    end)

    it("follows paging.next with async calls, or plain requests without async", function()
      local cli = require("achievers.cli")
      -- a stand-in with only request (no async): its answers, and its error
      local calls = {}
      local pages = { { items = { { id = 1 }, { id = 2 } }, paging = { next = "users?page=2" } } }
      local fake = { request = function(_, req)
        calls[#calls + 1] = req
        if #calls == 1 then return pages[1] end
        return nil, { kind = "server" }
      end }
      local seen = {}
      local err = cli.each_item(fake, "users", { q = "a" }, function(item) seen[#seen + 1] = item.id end)
      assert.same({ 1, 2 }, seen)
      assert.equals("server", err.kind)
      assert.same({ { method = "GET", path = "users", query = { q = "a" } },
        { method = "GET", path = "users?page=2" } }, calls)
      -- a real client: async and poll, against the sandbox
      local c = h.client(sb)
      local n = 0
      err = cli.each_item(c, "users", { pageSize = 100 }, function() n = n + 1 end)
      assert.is_nil(err)
      assert.equals(240, n)
      n = 0
      cli.each_item(c, "users", { pageSize = 100 }, function() n = n + 1; return n < 150 end)
      assert.equals(150, n)
      assert.equals("not_list", cli.each_item(c, "users/10726811", nil, function() end).kind)
    end)

    it("says when the path is not a list, and exits 2", function()
      local code, out, err = run(env, "each", "users/10726811")
      assert.equals(2, code)
      assert.equals("", out)
      assert.matches("^achievers: users/10726811 is not a list", err)
      assert.matches("achievers get users/10726811", err, 1, true)
    end)

    it("draws a progress bar on stderr when it is a terminal", function()
      local logfile = os.tmpname()
      local inner = string.format("%s %s bin/achievers each users pageSize=60 --json 2>&1 >/dev/null",
        env_prefix(env), h.lua)
      -- script(1) gives the program a pseudo-terminal; only its stderr reaches the log
      local cmd = string.format("timeout 60 script -q -e -c %s %s </dev/null >/dev/null 2>&1",
        q(inner), q(logfile))
      local ok = sh(cmd)
      local log = slurp(logfile)
      os.remove(logfile)
      assert.is_truthy(ok)
      assert.matches("%[#+%.*%] %d+/240 items  page %d/4", log)
      assert.matches("240/240 items", log, 1, true)
      assert.matches("\r\27%[K", log) -- and it erases itself
    end)
  end)

  describe("send-recognition", function()
    it("exits 3 and says how to log in when there is no user token", function()
      local code, _, err = run(env, "send-recognition", "--to", "brady.garfinkel", "--criterion", "412",
        "--text", "Thanks")
      assert.equals(3, code)
      assert.matches("achievers login", err)
      assert.equals(0, h.route_count(sb, "POST /recognitions"))
    end)

    it("needs --to and --text", function()
      local code, _, err = run(env, "send-recognition", "--criterion", "412", "--text", "x")
      assert.equals(2, code)
      assert.matches("--to", err)
    end)
  end)

  describe("configuration", function()
    it("reads a Lua config file, overridden by the environment and flags", function()
      local cfg = home .. "/my-config.lua"
      local f = assert(io.open(cfg, "w"))
      f:write(string.format("base_url = %q\nclient_id = %q\nclient_secret = %q\nscope = 'read,write'\n",
        sb.url, sb.client_id, sb.client_secret))
      f:close()
      local bare = { HOME = home, XDG_CONFIG_HOME = home .. "/cfg", ACHIEVERS_BASE_URL = false,
        ACHIEVERS_CLIENT_ID = false, ACHIEVERS_CLIENT_SECRET = false }
      local code, out, err = run(bare, "--config", cfg, "--json", "token")
      assert.equals(0, code, err)
      assert.equals("read,write", cjson.decode(out).scope)
      code, out = run(bare, "--config", cfg, "--scope", "read", "--json", "token")
      assert.equals("read", cjson.decode(out).scope)
      -- the default place: $XDG_CONFIG_HOME/achievers/config.lua
      assert(sh("mkdir -p " .. q(home .. "/cfg/achievers") .. " && cp " .. q(cfg) .. " " ..
        q(home .. "/cfg/achievers/config.lua")))
      code, out = run(bare, "--json", "token")
      assert.equals(0, code)
      code = run(with { ACHIEVERS_BASE_URL = "http://127.0.0.1:" .. h.free_port() }, "--timeout", "5", "token")
      assert.equals(9, code) -- the environment wins over the file
      os.remove(home .. "/cfg/achievers/config.lua")
    end)

    it("exits 2 for a broken config file or an unknown client option in it", function()
      local cfg = home .. "/bad.lua"
      local f = assert(io.open(cfg, "w"))
      f:write("base_url = ")
      f:close()
      local code, _, err = run(env, "--config", cfg, "token")
      assert.equals(2, code)
      assert.matches("config file", err)
      f = assert(io.open(cfg, "w"))
      f:write("colour = 'blue'")
      f:close()
      code, _, err = run(env, "--config", cfg, "token")
      assert.equals(2, code)
      assert.matches("colour", err)
      code, _, err = run(env, "--config", home .. "/missing.lua", "token")
      assert.equals(2, code)
      os.remove(cfg)
    end)
  end)

  describe("sandbox", function()
    local sandbox_bin = h.build .. "/achievers-sandbox"

    it("passes its arguments and exit status through to achievers-sandbox", function()
      local code, out = run(with { ACHIEVERS_SANDBOX_BIN = sandbox_bin }, "sandbox", "--help")
      assert.equals(0, code)
      assert.matches("usage: achievers%-sandbox", out)
      local err
      code, _, err = run(with { ACHIEVERS_SANDBOX_BIN = sandbox_bin }, "sandbox", "--latency-ms", "x")
      assert.equals(2, code)
      assert.matches("achievers%-sandbox", err)
    end)

    it("runs the emulator, which answers the program's own requests", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(sh("mkdir -p " .. q(dir)))
      -- its own process group, so the program and the emulator it runs stop together
      os.execute(string.format("setsid sh -c %s >%s 2>&1 </dev/null &",
        q("echo $$ > " .. q(dir .. "/pid") .. "; exec timeout 60 " .. env_prefix(
          { ACHIEVERS_SANDBOX_BIN = sandbox_bin }) .. " " .. h.lua .. " bin/achievers sandbox --port 0"),
        q(dir .. "/out")))
      local out = ""
      for _ = 1, 300 do -- polls every 0.05 s: a bound for a busy machine
        out = slurp(dir .. "/out")
        if out:match("client_secret: %x+") then break end
        require("socket").sleep(0.05)
      end
      local pid = slurp(dir .. "/pid"):match("%d+")
      local ok, e = pcall(function()
        local url = assert(out:match("url: (%S+)"), out)
        local code, got = run({ ACHIEVERS_BASE_URL = url, ACHIEVERS_CLIENT_ID = out:match("client_id: (%S+)"),
          ACHIEVERS_CLIENT_SECRET = out:match("client_secret: (%S+)"), HOME = home },
          "--json", "get", "users/10726811")
        assert.equals(0, code)
        assert.equals("adele.olson", cjson.decode(got).username)
      end)
      local gone = false
      if pid then
        os.execute("kill -TERM -" .. pid .. " 2>/dev/null") -- the whole group
        for _ = 1, 300 do -- polls every 0.05 s: a bound for a busy machine
          if not sh("kill -0 -" .. pid .. " 2>/dev/null") then gone = true break end
          require("socket").sleep(0.05)
        end
      end
      os.execute("rm -rf " .. q(dir))
      assert(ok, e)
      assert.is_true(gone, "the program and its emulator stop on SIGTERM")
    end)
  end)
end)
