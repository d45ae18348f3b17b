-- achievers.cli_repl: `achievers repl`, a Lua REPL with a ready `client` (and `user` when
-- logged in). Expressions print their values through achievers.pretty; `nil, err` answers
-- print the error's one readable line; errors raised by the code typed are caught and printed,
-- never ending the session. `_` holds the last value. Reads lines from stdin (any terminal's
-- line editing applies); Ctrl-D ends it.

local pretty = require("achievers.pretty")

local M = {}

local pack = table.pack or function(...) return { n = select("#", ...), ... } end

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

--- Runs the REPL; `o`: client, user, base_url, input (default io.stdin), output (default
-- io.stdout). Returns the exit status (0).
function M.run(o)
  local input, output = o.input or io.stdin, o.output or io.stdout
  local achievers = require("achievers")
  local env = setmetatable({
    client = o.client, user = o.user, achievers = achievers, pretty = pretty,
  }, { __index = _G })
  env.p = function(...)
    local t = pack(...)
    for i = 1, t.n do output:write(show(t[i]), "\n") end
  end
  output:write(("achievers %s REPL on %s\n"):format(tostring(achievers._VERSION), tostring(o.base_url)))
  output:write("  client: ", tostring(o.client), "\n")
  if o.user then
    output:write("  user:   ", tostring(o.user), "\n")
  else
    output:write("  (no `user`: run `achievers login` to act as a person)\n")
  end
  output:write("Try client:get(\"users\", {pageSize = 3}). Ctrl-D quits.\n")

  local buffer = nil
  -- One line: false at the end of the input. Runs under pcall so that nothing (not even the
  -- interpreter's "interrupted!" after a Ctrl-C) ends the session but Ctrl-D.
  local function step()
    output:write(buffer and ">> " or "achievers> ")
    output:flush()
    local line = input:read("*l")
    if line == nil then return false end
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
    local r = pack(xpcall(f, function(e) return e end))
    if not r[1] then
      output:write("error: ", message_of(r[2]), "\n")
    else
      if r.n > 1 then env._ = r[2] end
      for i = 2, r.n do output:write(show(r[i]), "\n") end
    end
    return true
  end
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
      output:flush()
      return 0
    end
    output:flush()
  end
end

return M
