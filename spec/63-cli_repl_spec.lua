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
    for _ = 1, 600 do -- polls every 0.05 s: a bound for a busy machine
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

  local env
  -- Starts `achievers repl` in a new tmux session `name` (the one the helpers then talk to).
  local function start_session(name)
    session = name
    local program = "env -u ACHIEVERS_CONFIG " .. table.concat(env, " ") .. " timeout 120 " .. h.lua ..
      " bin/achievers repl"
    local pwd = io.popen("pwd"):read("*l")
    assert(sh(tmux(string.format("new-session -d -s %s -x 200 -y 50 -c %s %s", q(session),
      q(pwd), q(program)))))
  end

  setup(function()
    sb = h.start_sandbox()
    home = os.tmpname()
    os.remove(home)
    assert(sh("mkdir -p " .. q(home)))
    local unique = os.tmpname() -- a name no other run has (two suites may run side by side)
    os.remove(unique)
    server = "achievers-spec-" .. unique:match("[^/]+$")
    env = {
      "TERM=xterm", "HOME=" .. q(home), "XDG_CONFIG_HOME=" .. q(home .. "/cfg"),
      "LUA_CPATH=" .. q(h.build .. "/?.so;;"), "LUA_PATH=" .. q("src/lua/?.lua;;"),
      "ACHIEVERS_BASE_URL=" .. q(sb.url), "ACHIEVERS_CLIENT_ID=" .. q(sb.client_id),
      "ACHIEVERS_CLIENT_SECRET=" .. q(sb.client_secret),
    }
    for _, k in ipairs { "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
      if os.getenv(k) then env[#env + 1] = k .. "=" .. q(os.getenv(k)) end
    end
    start_session("repl")
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

  it("prints a page as one summary line; show(_) prints it whole", function()
    type_line('client:get("users", { pageSize = 2 })')
    local answer = after_prompt(1, "%]\n")
    assert.matches('^client:get%("users", { pageSize = 2 }%)\n' ..
      "page 1/120, 2 users %(of 240%): [%w.]+, [%w.]+  %[show%(_%) or :full for all of it%]\n", answer)
    type_line("show(_)")
    local whole = after_prompt(2, "\n}\n")
    assert.matches('^show%(_%)\n{\n  items = {\n', whole)
    assert.matches('\n      username = "[%w.]+",\n', whole)
    assert.matches("\n  paging = {\n.-    totalItems = 240,\n", whole)
    type_line(":full")
    assert.matches("^:full\n{\n  items = {\n", after_prompt(3, "\n}\n"))
  end)

  it("prints an error answer as its readable line", function()
    type_line('client:get("users/1")')
    local answer = after_prompt(4, "achievers: not_found")
    assert.matches('^client:get%("users/1"%)\nnil\nachievers: not_found %(404 not_found%) GET http://' ..
      "127%.0%.0%.1:%d+/api/v5/users/1: no user with id 1", answer)
  end)

  it("catches raised errors, including error objects, and carries on", function()
    type_line('error(select(2, client:get("users/2")))') -- an error object raised
    local answer = after_prompt(5, "error:")
    assert.matches("error: achievers: not_found %(404 not_found%)", answer)
    type_line("client:no_such_method()")
    assert.matches("error: stdin:1: attempt to call .*'no_such_method'", -- worded per Lua version
      after_prompt(6, "error:"))
    type_line("t = {") -- a chunk over two lines
    type_line("access_token = 'zzz-secret', n = 40 + 2 }")
    assert.matches("^t = {\n>> access_token", after_prompt(7, "\n>> "))
    type_line("t")
    assert.matches('^t\n{ access_token = "%[redacted%]", n = 42 }\n', after_prompt(8, "}\n"))
    local _, seen = screen():gsub("zzz%-secret", "")
    assert.equals(1, seen) -- only where it was typed
    type_line("client:token()")
    local tok = after_prompt(9, "achievers%.token")
    assert.matches("achievers%.token%(bearer, read, expires ", tok)
  end)

  it("lists the reference's topics with help, and prints an entry with help(name)", function()
    type_line("help")
    local topics = after_prompt(10, "Ctrl%-L")
    assert.matches("^help\nhelp%(NAME%)", topics)
    assert.matches("\n  client  :token, :get, :post, ", topics)
    assert.matches(":newsfeed_event_boosts", topics, 1, true)
    type_line('help "client:get"')
    local entry = after_prompt(11, "Example:\n.-\n")
    assert.matches("client:get%(path, query%)\nGET a path", entry)
    type_line("help(client.users)") -- a function value: found among the client's methods
    assert.matches("client:users%(query%)\n`GET /api/v5/users`", after_prompt(12, "Example:"))
    type_line('help "no_such_thing"')
    assert.matches("\nno help for no_such_thing", after_prompt(13, "no help for"))
  end)

  it("completes globals, fields and the client's methods with Tab", function()
    assert(sh(tmux("send-keys -t " .. q(session) .. " -l " .. q("client:newsfeed_event_co"))))
    assert(sh(tmux("send-keys -t " .. q(session) .. " Tab")))
    after_prompt(14, "^client:newsfeed_event_comments%s*$")
    type_line("(0)")
    assert.matches("^client:newsfeed_event_comments%(0%)\nnil\nachievers: not_found", after_prompt(14, "not_found"))
    assert(sh(tmux("send-keys -t " .. q(session) .. " -l " .. q("achievers.json_d"))))
    assert(sh(tmux("send-keys -t " .. q(session) .. " Tab")))
    after_prompt(15, "^achievers%.json_decode%s*$")
    type_line("('[1, 2]')")
    assert.matches("^achievers%.json_decode%('%[1, 2%]'%)\n{ 1, 2 }\n", after_prompt(15, "}\n"))
  end)

  it("cancels the call in flight and returns to the prompt at once on Ctrl-C", function()
    sb:latency(6000)
    type_line("client:users { pageSize = 1 }")
    after_prompt(16, "pageSize = 1 }\n")
    socket.sleep(0.3) -- the call is out
    local t0 = socket.gettime()
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-c")))
    after_prompt(16, "interrupted")
    local took = socket.gettime() - t0
    assert.is_true(took < 3, "took " .. took .. " s, the call takes 6") -- not after the call
    assert.matches("interrupted %(Ctrl%-C%): the call was cancelled", after_prompt(16, "interrupted"))
    -- Ctrl-C at the prompt does not end the session (lua(1) would, the second time)
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-c")))
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-c")))
    sb:latency(0)
    type_line("select(2, _pending:result()).kind")
    assert.matches('"cancelled"', after_prompt(17, "cancelled"))
  end)

  it("stops a line that computes for long on Ctrl-C too", function()
    type_line("n = 0 while true do n = n + 1 end")
    after_prompt(18, "end\n")
    socket.sleep(0.3)
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-c")))
    assert.matches("^n = 0 while true do n = n %+ 1 end\ninterrupted %(Ctrl%-C%)\n", after_prompt(18, "interrupted"))
    type_line("n > 0")
    assert.matches("^n > 0\ntrue\n", after_prompt(19, "true"))
  end)

  it("keeps the history across sessions, and Ctrl-L clears the screen", function()
    -- a session that keeps the tmux server up while the REPL's ends
    assert(sh(tmux("new-session -d -s keep 'sleep 100'")))
    type_line("x = 'from the first session'")
    after_prompt(21, "")
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-d")))
    local hist = home .. "/.local/state/achievers/repl_history"
    local text
    for _ = 1, 300 do -- polls every 0.05 s: a bound for a busy machine
      text = cli.slurp(hist)
      if text and text:find("from the first session", 1, true) then break end
      socket.sleep(0.05)
    end
    assert.matches("x = 'from the first session'\n", text)
    assert.matches("client:users { pageSize = 1 }\n", text, 1, true)
    -- a second session: Up brings the last line back
    start_session("repl2")
    after_prompt(1, "")
    assert(sh(tmux("send-keys -t " .. q(session) .. " Up")))
    after_prompt(1, "^x = 'from the first session'%s*$")
    assert(sh(tmux("send-keys -t " .. q(session) .. " C-u C-l")))
    for _ = 1, 300 do -- polls every 0.05 s: a bound for a busy machine
      local visible = io.popen(tmux("capture-pane -p -t " .. q(session))):read("*a")
      if visible:match("^achievers>%s*\n") then return end -- the prompt alone, at the top
      socket.sleep(0.05)
    end
    error("Ctrl-L did not clear the screen:\n" .. screen())
  end)
end)
