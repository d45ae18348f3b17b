-- achievers.cli_repl: `achievers repl`, a Lua REPL with a ready `client` (and `user` when
-- logged in).
--
-- - On a terminal, with the `readline` module (Debian lua-readline): line editing, a history
--   kept across sessions ($XDG_STATE_HOME/achievers/repl_history), Tab completion of globals,
--   fields and methods (achievers.repl_complete), Ctrl-L to clear the screen. Without a
--   terminal or the module, lines are read plainly from stdin.
-- - Expressions print their values through achievers.pretty; a page of a list prints as one
--   summary line (`page 1/10, 25 users: adele.olson, ...`); `_` holds the last value and
--   show(_) (or `:full`) prints it whole. `nil, err` answers print the error's readable line;
--   errors raised by the code typed are caught and printed, never ending the session.
-- - `help` lists the reference's topics, help(name) prints one (achievers.help).
-- - Each line runs as a task (client:spawn): its calls go out asynchronously while the REPL
--   polls, so Ctrl-C cancels the call in flight and returns to the prompt at once (the
--   cancelled task is kept in `_pending`); a line that computes for long is stopped by a count
--   hook. On a terminal Ctrl-C is read as a key (the terminal's
--   interrupt character is switched off for the session and restored at the end): lua(1)
--   catches SIGINT only once, and a second Ctrl-C would end the session. At the prompt
--   Ctrl-C does nothing (Ctrl-U clears the line); Ctrl-D quits.

local pretty = require("achievers.pretty")
local store = require("achievers.cli_store")

local M = {}

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

local function compile(src, env)
  local f, err
  if setfenv then
    f, err = loadstring(src, "=stdin")
    if f then setfenv(f, env) end
  else
    f, err = load(src, "=stdin", "t", env)
  end
  return f, err
end

-- A chunk is incomplete when the parser stopped at the end of the input ("... near <eof>";
-- "'<eof>' expected near 'x'" is a real error).
local function incomplete(err)
  -- Lua 5.2+ say near <eof>; 5.1 and LuaJIT quote it: near '<eof>'
  return type(err) == "string" and (err:sub(-5) == "<eof>" or err:sub(-7) == "'<eof>'")
end

local function show(v)
  local ok, text = pcall(pretty, v)
  return ok and text or ("<" .. tostring(text) .. ">")
end

local function message_of(e)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e) -- error objects, tables with __tostring
  if ok and type(e) == "table" and not (getmetatable(e) or {}).__tostring then
    return show(e)
  end
  return ok and s or "(error object)"
end

-- What an item of a list is called in a summary: its username, name or id.
local function label(item)
  if type(item) ~= "table" then return show(item) end
  for _, k in ipairs { "username", "name", "title", "id" } do
    local v = rawget(item, k)
    if type(v) == "string" or type(v) == "number" then return tostring(v) end
  end
  return "{...}"
end

-- The kind of items of a page, from its first item's own link (".../api/v5/users/1").
local function kind_of_items(items)
  local first = items[1]
  local links = type(first) == "table" and rawget(first, "links")
  local self = type(links) == "table" and rawget(links, "self")
  local href = type(self) == "table" and rawget(self, "href")
  return type(href) == "string" and href:match("/api/v5/([%w-]+)/[^/]*$") or "items"
end

--- A page of a list in one line, e.g. `page 1/10, 25 users (of 240): adele.olson, ...`; nil
-- for any other value. `width` bounds the names shown (default 100 characters).
function M.summary(v, width)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return nil end
  local items, paging = rawget(v, "items"), rawget(v, "paging")
  if type(items) ~= "table" or type(paging) ~= "table" then return nil end
  width = width or 100
  local names, used = {}, 0
  for i, item in ipairs(items) do
    local l = label(item)
    if used + #l > width and i > 1 then
      names[#names + 1] = "..."
      break
    end
    names[#names + 1] = l
    used = used + #l + 2
  end
  local page, pages = tonumber(paging.page), tonumber(paging.totalPages)
  local total = tonumber(paging.totalItems)
  local head = page and pages and ("page " .. page .. "/" .. pages .. ", ") or ""
  local count = #items .. " " .. kind_of_items(items)
  if total and total ~= #items then count = count .. " (of " .. total .. ")" end
  return head .. count .. (#names > 0 and (": " .. table.concat(names, ", ")) or "")
end

-- ---------------------------------------------------------------------------------------------
-- The terminal

local function sh_ok(cmd) return store.run(cmd) end

local function stty_get()
  local p = io.popen("stty -g </dev/tty 2>/dev/null")
  if not p then return nil end
  local s = p:read("*l")
  p:close()
  return s ~= "" and s or nil
end

local function stty(args)
  return sh_ok("stty " .. args .. " </dev/tty >/dev/null 2>&1")
end

-- Standard input as LuaSocket's select sees a socket.
local STDIN = { getfd = function() return 0 end, dirty = function() return false end }

-- A key reader for the time a line runs: true when Ctrl-C was pressed since the last look.
-- Keys typed ahead meanwhile are dropped.
local function interrupt_watch(socket)
  return function()
    local hit = false
    while true do
      local ready = socket.select({ STDIN }, nil, 0)
      if not ready or #ready == 0 then return hit end
      local c = io.stdin:read(1)
      if c == nil then return hit end
      if c == "\3" then hit = true end
    end
  end
end

local function state_dir()
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then return nil end
    base = home .. "/.local/state"
  end
  return base .. "/achievers"
end

--- The history file of the REPL: $XDG_STATE_HOME/achievers/repl_history (or
-- ~/.local/state/achievers/repl_history); nil without HOME.
function M.history_path()
  local dir = state_dir()
  return dir and (dir .. "/repl_history")
end

-- Reads lines: readline on a terminal, else plain reads. Returns {read(prompt), close()}.
local function line_reader(o, env)
  local input, output = o.input or io.stdin, o.output or io.stdout
  local plain = {
    read = function(prompt)
      output:write(prompt)
      output:flush()
      return input:read("*l")
    end,
    close = function() end,
  }
  if o.input or o.output or not o.tty then return plain end
  local ok, rl = pcall(require, "readline")
  if not ok or type(rl) ~= "table" or not rl.readline then return plain end
  local path = M.history_path()
  if path then
    sh_ok("mkdir -p " .. store.shquote(path:match("^(.*)/")) .. " 2>/dev/null")
  end
  pcall(rl.set_options, { histfile = path or "", keeplines = 1000, minlength = 1, completion = true })
  if rl.set_readline_name then pcall(rl.set_readline_name, "achievers") end
  if rl.set_complete_function then
    local complete = require("achievers.repl_complete").readline_function(env)
    pcall(rl.set_complete_function, function(line, from, to)
      -- readline puts its space back before every completion: no space after `client:get`
      if rl.set_completion_append_character then pcall(rl.set_completion_append_character, "") end
      return complete(line, from, to)
    end)
  end
  return {
    readline = true,
    read = function(prompt) return rl.readline(prompt) end,
    close = function() if path then pcall(rl.save_history) end end,
  }
end

-- ---------------------------------------------------------------------------------------------
-- The session

--- Runs the REPL; `o`: client, user, base_url, input (default io.stdin), output (default
-- io.stdout), tty (stdin and stdout are a terminal: line editing, Ctrl-C as a key). Returns
-- the exit status (0).
function M.run(o)
  local output = o.output or io.stdout
  local achievers = require("achievers")
  local help = require("achievers.help")
  if o.tty == nil and not o.input and not o.output then
    o.tty = sh_ok("test -t 0 && test -t 1")
  end
  local env = setmetatable({
    client = o.client, user = o.user, achievers = achievers, pretty = pretty,
  }, { __index = _G })
  local function write_values(t, from)
    for i = from or 1, t.n do output:write(show(t[i]), "\n") end
  end
  env.p = function(...) write_values(pack(...)) end
  env.show = function(...)
    local t = pack(...)
    if t.n == 0 then t = pack(rawget(env, "_")) end
    write_values(t)
  end
  env.help = function(name)
    if name == nil then
      output:write(help.topics(), "\n")
      return
    end
    if type(name) ~= "string" then
      -- a function value: find its name among the client's methods and the module's functions
      local found
      local mt = o.client and getmetatable(o.client)
      for k, v in pairs(type(mt) == "table" and type(mt.methods) == "table" and mt.methods or {}) do
        if v == name then found = "client:" .. k end
      end
      for k, v in pairs(achievers) do
        if v == name then found = "achievers." .. k end
      end
      if not found then
        output:write("no help for this ", type(name), " (help() lists the topics)\n")
        return
      end
      name = found
    end
    local text, why = help.text(name)
    output:write(text or why, "\n")
  end

  local reader = line_reader(o, env)
  local socket_ok, socket = pcall(require, "socket")
  local keys = o.tty and socket_ok and interrupt_watch(socket) or nil
  local saved_tty = keys and stty_get() or nil
  if saved_tty then stty("intr undef") end

  output:write(("achievers %s REPL on %s\n"):format(tostring(achievers._VERSION), tostring(o.base_url)))
  output:write("  client: ", tostring(o.client), "\n")
  if o.user then
    output:write("  user:   ", tostring(o.user), "\n")
  else
    output:write("  (no `user`: run `achievers login` to act as a person)\n")
  end
  output:write("Try client:users { pageSize = 3 }. help for the reference, Ctrl-D quits.\n")

  -- Prints the values of a line: a page as its summary, the rest in full.
  local function print_results(r)
    -- `data, nil` from a call is its data alone
    while r.n > 1 and r[1] ~= nil and r[r.n] == nil do r.n = r.n - 1 end
    if r.n > 0 then env._ = r[1] end
    for i = 1, r.n do
      local s = r.n == 1 and M.summary(r[i]) or nil
      if s then
        output:write(s, "  [show(_) or :full for all of it]\n")
      else
        output:write(show(r[i]), "\n")
      end
    end
  end

  -- Runs a compiled line as a task of the client, polling until it ends; Ctrl-C (a key on a
  -- terminal, or lua(1)'s "interrupted!") cancels its call and returns at once.
  local INTERRUPTED = "interrupted (Ctrl-C)"
  local function evaluate(f)
    local c = o.client
    local run = f
    if keys then
      -- a line that computes for long, with no call to wait on, stops on Ctrl-C too: a count
      -- hook on the line's own coroutine looks at the keyboard now and then
      run = function(...)
        debug.sethook(function() if keys() then error(INTERRUPTED, 0) end end, "", 1000000)
        return f(...)
      end
      -- LuaJIT runs no hooks in compiled loops: the typed line (and the functions it defines)
      -- is interpreted
      if type(rawget(_G, "jit")) == "table" and jit.off then pcall(jit.off, f, true) end
    end
    if saved_tty then stty("-icanon -echo min 1 time 0") end
    local r
    if not (c and c.spawn) then
      r = pack(xpcall(run, function(e) return e end))
      if keys then debug.sethook() end
    else
      local ok, task = pcall(c.spawn, c, run)
      if not ok then
        r = { n = 2, false, task }
      else
        local interrupted = false
        local ok2, err = pcall(function()
          while not task:done() do
            pcall(c.poll, c, 0.05) -- the task's error is in task.error
            if keys and keys() then
              interrupted = true
              return
            end
          end
        end)
        if not ok2 and message_of(err):match("interrupted!$") then interrupted = true end
        if interrupted then
          -- the call in flight is cancelled (its transfer stopped, nothing sent again); the
          -- task stays in `_pending`, whose result() says it was cancelled
          if task.cancel then pcall(task.cancel, task) end
          env._pending = task
          r = { n = 2, false, INTERRUPTED .. ": the call was cancelled" }
        elseif not ok2 then
          r = { n = 2, false, err }
        elseif task.error ~= nil then
          r = { n = 2, false, task.error }
        else
          local res = task.results or { n = 0 }
          r = pack(true, unpack(res, 1, res.n or #res))
        end
      end
    end
    if saved_tty then stty("icanon echo") end
    if not r[1] and type(r[2]) == "string" and r[2]:sub(1, #INTERRUPTED) == INTERRUPTED then
      output:write(r[2], "\n")
      return nil
    end
    return r
  end

  local buffer = nil
  -- One line: false at the end of the input. Runs under pcall so that nothing (not even the
  -- interpreter's "interrupted!" after a Ctrl-C) ends the session but Ctrl-D.
  local function step()
    local line = reader.read(buffer and ">> " or "achievers> ")
    if line == nil then return false end
    if not buffer then
      local cmd = line:match("^%s*(:?%a*)%s*$")
      if cmd == ":full" then line = "show(_)" end
      if cmd == "help" or cmd == ":help" or cmd == "?" then line = "help()" end
      if cmd == ":quit" or cmd == ":q" then return false end
    end
    buffer = buffer and (buffer .. "\n" .. line) or line
    local src = buffer:gsub("^%s*=", "return ")
    local f, rerr = compile("return " .. src, env)
    local err
    if not f then f, err = compile(src, env) end
    if not f and (incomplete(err) or incomplete(rerr)) then
      return true -- wait for more lines
    end
    buffer = nil
    if not f then
      output:write("syntax error: ", tostring(err), "\n")
      return true
    end
    local r = evaluate(f)
    if r == nil then return true end
    if not r[1] then
      output:write("error: ", message_of(r[2]), "\n")
    else
      print_results({ n = r.n - 1, unpack(r, 2, r.n) })
    end
    return true
  end
  local status = 0
  while true do
    local ok, more = pcall(step)
    if not ok then
      buffer = nil
      local msg = message_of(more)
      -- lua(1) turns the first Ctrl-C into this error (a second one ends the process)
      if msg:match("interrupted!$") then msg = "interrupted" end
      output:write("\n", msg, "\n")
    elseif not more then
      output:write("\n")
      break
    end
    output:flush()
  end
  reader.close()
  if saved_tty then sh_ok("stty " .. store.shquote(saved_tty) .. " </dev/tty >/dev/null 2>&1") end
  output:flush()
  return status
end

return M
