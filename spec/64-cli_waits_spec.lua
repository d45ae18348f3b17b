-- The program while it waits for the rate limit: it says so and for how long, and a Ctrl-C
-- (SIGINT) stops it at once with exit status 130, rather than after the wait.
local h = require("helpers")
local socket = require("socket")

local cli = require("support.cli")
local q, sh, slurp, env_prefix = cli.q, cli.sh, cli.slurp, cli.env_prefix

describe("achievers program and the rate limit", function()
  local sb, home, env

  setup(function()
    sb = h.start_sandbox()
    home, env = cli.private_env(sb)
  end)
  teardown(function()
    sb:stop()
    os.execute("rm -rf " .. q(home))
  end)

  -- Starts `achievers ARGS...` in the background as the process itself (exec: its pid is the
  -- interpreter's, so a signal reaches it); returns a handle.
  local function start(...)
    local args = {}
    for i, a in ipairs { ... } do args[i] = q(a) end
    local dir = home .. "/run" .. tostring(math.random(1e9))
    assert(sh("mkdir -p " .. q(dir)))
    local inner = string.format("echo $$ >%s; exec %s %s bin/achievers %s", q(dir .. "/pid"),
      env_prefix(env), h.lua, table.concat(args, " "))
    local cmd = string.format("timeout 120 sh -c %s </dev/null >%s 2>%s; echo $? >%s", q(inner),
      q(dir .. "/out"), q(dir .. "/err"), q(dir .. "/rc"))
    os.execute(string.format("sh -c %s >/dev/null 2>&1 &", q(cmd)))
    local p = { dir = dir }
    function p.err() return slurp(dir .. "/err") or "" end
    function p.until_err(pattern)
      for _ = 1, 600 do
        local m = p.err():match(pattern)
        if m then return m end
        socket.sleep(0.05)
      end
      error("stderr never matched " .. pattern .. ": " .. p.err())
    end
    function p.pid() return assert((slurp(dir .. "/pid") or ""):match("%d+")) end
    function p.wait(seconds)
      local t = socket.gettime() + seconds
      while socket.gettime() < t do
        local rc = (slurp(dir .. "/rc") or ""):match("%d+")
        if rc then return tonumber(rc) end
        socket.sleep(0.05)
      end
      return nil
    end
    function p.kill() os.execute("kill " .. p.pid() .. " 2>/dev/null") end
    return p
  end

  local cfg
  before_each(function()
    sb:reset()
    -- one heavy request per minute: the second page of recognitions waits a minute
    cfg = home .. "/slow.lua"
    local f = assert(io.open(cfg, "w"))
    f:write("limits = { heavy = { 1, 60 }, default = { 100, 60 } }\n")
    f:close()
  end)

  it("says on stderr that it waits for the rate limit, and for how long", function()
    local p = start("--config", cfg, "each", "recognitions", "pageSize=1", "--limit", "2")
    local ok, e = pcall(function()
      local secs = p.until_err("achievers: waiting (%d+%.%d) s for the rate limit %(heavy requests%)\n")
      assert.is_true(tonumber(secs) > 30 and tonumber(secs) <= 61, secs)
    end)
    p.kill()
    p.wait(10)
    assert(ok, e)
  end)

  it("stops at once with exit status 130 on Ctrl-C (SIGINT) during the wait", function()
    local p = start("--config", cfg, "each", "recognitions", "pageSize=1", "--limit", "2")
    local ok, e = pcall(function()
      p.until_err("waiting [%d.]+ s for the rate limit")
      socket.sleep(0.3) -- inside the wait
      local t0 = socket.gettime()
      os.execute("kill -INT " .. p.pid())
      local rc = p.wait(30) -- the wait itself is a minute
      local took = socket.gettime() - t0
      assert.equals(130, rc, p.err())
      assert.is_true(took < 15, "took " .. took .. " s")
      assert.matches("\nachievers: interrupted\n$", p.err())
      assert.equals(1, h.route_count(sb, "GET /recognitions")) -- the second page never went
    end)
    p.kill()
    assert(ok, e)
  end)

  it("says which class waits: default requests (users) paced too", function()
    local f = assert(io.open(cfg, "w"))
    f:write("limits = { heavy = { 1, 60 }, default = { 1, 60 } }\n")
    f:close()
    local p = start("--config", cfg, "each", "users", "pageSize=100")
    local ok, e = pcall(function()
      p.until_err("waiting [%d.]+ s for the rate limit %(default requests%)")
      local t0 = socket.gettime()
      os.execute("kill -INT " .. p.pid())
      assert.equals(130, p.wait(30), p.err())
      assert.is_true(socket.gettime() - t0 < 15)
    end)
    p.kill()
    assert(ok, e)
  end)

  it("says it as a line of JSON on stderr with --json", function()
    local p = start("--json", "--config", cfg, "each", "recognitions", "pageSize=1", "--limit", "2")
    local ok, e = pcall(function()
      local line = p.until_err("({[^\n]*})\n")
      local t = require("cjson").decode(line)
      assert.equals("heavy", t.rate_limit.class)
      assert.is_true(t.rate_limit.wait > 30, line)
    end)
    p.kill()
    p.wait(10)
    assert(ok, e)
  end)

  it("puts the wait on the progress line when stderr is a terminal", function()
    local f = assert(io.open(cfg, "w"))
    f:write("limits = { heavy = { 1, 2 } }\n") -- the second page waits about 2 s
    f:close()
    local logfile = home .. "/tty.log"
    local inner = string.format("%s %s bin/achievers --config %s each recognitions pageSize=1 --limit 2 " ..
      "--json 2>&1 >/dev/null", env_prefix(env), h.lua, q(cfg))
    -- script(1) gives the program a pseudo-terminal; only its stderr reaches the log
    assert(sh(string.format("timeout 60 script -q -e -c %s %s </dev/null >/dev/null 2>&1", q(inner),
      q(logfile))))
    local log = slurp(logfile) or ""
    assert.matches("\r%[[#.]+%] 1/%d+ items  page 1/%d+  waiting %d%.%d s for the rate limit " ..
      "%(heavy requests%)\27%[K", log)
    assert.is_nil(log:find("achievers: waiting", 1, true)) -- not as a line of its own
  end)
end)
