-- `achievers repl` driven through tmux, as a person would use it in a terminal: a call, its
-- pretty-printed answer, an error printed readably, and a session that survives errors.
local h = require("helpers")
local socket = require("socket")

local cli = require("support.cli")
local q, sh = cli.q, cli.sh

local function have_tmux()
  return sh("command -v tmux >/dev/null 2>&1")
end

describe("achievers repl (through tmux)", function()
  if not have_tmux() then
    -- tmux is in scripts/deps' test group; without it this spec cannot say anything
    it("needs tmux", function() error("tmux is not installed: scripts/deps test") end)
    return
  end

  local sb, home, server, session

  -- tmux itself never runs under the sanitizers (LD_PRELOAD); the program inside does.
  local function tmux(args)
    return string.format("env -u LD_PRELOAD timeout 20 tmux -L %s %s", q(server), args)
  end

  local function screen()
    local p = io.popen(tmux("capture-pane -p -J -S -1000 -t " .. q(session)) .. " 2>/dev/null")
    local s = p:read("*a")
    p:close()
    return s
  end

  -- The text after each "achievers> " prompt, up to the next one.
  local function segments(text)
    local out, pos = {}, 1
    local PROMPT = "achievers> "
    local at = text:find(PROMPT, pos, true)
    while at do
      local nxt = text:find(PROMPT, at + #PROMPT, true)
      out[#out + 1] = text:sub(at + #PROMPT, (nxt or #text + 1) - 1)
      at = nxt
    end
    return out
  end

  -- Waits until the screen after the `n`th prompt matches `pattern`; returns that part.
  local function after_prompt(n, pattern)
    local last = ""
    for _ = 1, 200 do
      last = screen()
      local rest = segments(last)[n]
      if rest and rest:match(pattern) then return rest end
      socket.sleep(0.05)
    end
    error("screen never showed " .. pattern .. " after prompt " .. n .. ":\n" .. last)
  end

  local function type_line(text)
    assert(sh(tmux("send-keys -t " .. q(session) .. " -l " .. q(text))))
    assert(sh(tmux("send-keys -t " .. q(session) .. " Enter")))
  end

  setup(function()
    sb = h.start_sandbox()
    home = os.tmpname()
    os.remove(home)
    assert(sh("mkdir -p " .. q(home)))
    server = "achievers-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))
    session = "repl"
    local env = {
      "TERM=xterm", "HOME=" .. q(home), "XDG_CONFIG_HOME=" .. q(home .. "/cfg"),
      "LUA_CPATH=" .. q(h.build .. "/?.so;;"), "LUA_PATH=" .. q("src/lua/?.lua;;"),
      "ACHIEVERS_BASE_URL=" .. q(sb.url), "ACHIEVERS_CLIENT_ID=" .. q(sb.client_id),
      "ACHIEVERS_CLIENT_SECRET=" .. q(sb.client_secret),
    }
    for _, k in ipairs { "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
      if os.getenv(k) then env[#env + 1] = k .. "=" .. q(os.getenv(k)) end
    end
    local program = "env -u ACHIEVERS_CONFIG " .. table.concat(env, " ") .. " timeout 120 " .. h.lua ..
      " bin/achievers repl"
    local pwd = io.popen("pwd"):read("*l")
    assert(sh(tmux(string.format("new-session -d -s %s -x 200 -y 50 -c %s %s", q(session),
      q(pwd), q(program)))))
  end)

  teardown(function()
    os.execute(tmux("kill-server") .. " 2>/dev/null")
    sb:stop()
    os.execute("rm -rf " .. q(home))
  end)

  it("starts with a ready client and says so", function()
    local s = after_prompt(1, "")
    assert.is_string(s)
    local banner = screen()
    assert.matches("achievers [%d.]+ REPL on " .. sb.url:gsub("%p", "%%%0"), banner)
    assert.matches("client: achievers%.client%(", banner)
    assert.is_nil(banner:find(sb.client_secret, 1, true))
  end)

  it("pretty-prints the answer of a call", function()
    type_line('client:get("users", { pageSize = 2 })')
    local answer = after_prompt(1, "\n}\n")
    assert.matches('^client:get%("users", { pageSize = 2 }%)\n{\n  items = {\n', answer)
    assert.matches('\n      username = "[%w.]+",\n', answer)
    assert.matches("\n  paging = {\n.-    totalItems = 240,\n", answer)
  end)

  it("prints an error answer as its readable line", function()
    type_line('client:get("users/1")')
    local answer = after_prompt(2, "achievers: not_found")
    assert.matches('^client:get%("users/1"%)\nnil\nachievers: not_found %(404 not_found%) GET http://' ..
      "127%.0%.0%.1:%d+/api/v5/users/1: no user with id 1", answer)
  end)

  it("catches raised errors, including error objects, and carries on", function()
    type_line('error(select(2, client:get("users/2")))') -- an error object raised
    local answer = after_prompt(3, "error:")
    assert.matches("error: achievers: not_found %(404 not_found%)", answer)
    type_line("client:no_such_method()")
    assert.matches("error: stdin:1: attempt to call .*'no_such_method'", -- worded per Lua version
      after_prompt(4, "error:"))
    type_line("t = {") -- a chunk over two lines
    type_line("access_token = 'zzz-secret', n = 40 + 2 }")
    assert.matches("^t = {\n>> access_token", after_prompt(5, "\n>> "))
    type_line("t")
    assert.matches('^t\n{ access_token = "%[redacted%]", n = 42 }\n', after_prompt(6, "}\n"))
    local _, seen = screen():gsub("zzz%-secret", "")
    assert.equals(1, seen) -- only where it was typed
    type_line("client:token()")
    local tok = after_prompt(7, "achievers%.token")
    assert.matches("achievers%.token%(bearer, read, expires ", tok)
  end)
end)
