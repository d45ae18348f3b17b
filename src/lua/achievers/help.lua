-- achievers.help: the reference, for `help` in `achievers repl`. Its text is the reference's
-- own: achievers.help_data is written from doc/*.luadoc (and the endpoint list) by
-- `lua5.4 scripts/doc-coverage.lua --write`, and `make docs` fails when it is stale, so the
-- REPL's help and the generated HTML reference never say different things.

local M = {}

local function data()
  return require("achievers.help_data")
end

-- The section a name belongs to: "client" for "client:get", "achievers" for
-- "achievers.client", the name itself for a module.
local function section(name)
  local kind = name:match("^([%w_]+):")
  if kind then return kind end
  local mod = name:match("^(.*)%.[%w_]+$")
  return mod or name
end

--- The list of topics: every documented name, by section.
function M.topics()
  local d = data()
  local order, groups = {}, {}
  for _, name in ipairs(d.order) do
    local s = section(name)
    if d.entries[s] and s == name and not groups[s] then -- a module or type on its own
      groups[s] = {}
      order[#order + 1] = s
    elseif s ~= name then
      if not groups[s] then
        groups[s] = {}
        order[#order + 1] = s
      end
      local short = name:sub(#s + 2)
      table.insert(groups[s], short)
    end
  end
  local lines = { "help(NAME) for one of these (e.g. help \"client:get\", help(client.users)):" }
  for _, s in ipairs(order) do
    local sep = (d.entries[s] and d.entries[s].kind == "type") and ":" or "."
    local names = groups[s]
    local text = #names > 0 and (sep .. table.concat(names, ", " .. sep)) or ""
    lines[#lines + 1] = "  " .. s .. (text ~= "" and ("  " .. text) or "")
  end
  lines[#lines + 1] = "In the REPL: `_` is the last value, show(_) (or :full) prints it whole, " ..
    "`_pending` a call left running by Ctrl-C; Tab completes, Ctrl-L clears the screen."
  return table.concat(lines, "\n")
end

-- Every way a name may be asked for: "client:get", "client.get", "get", "achievers.client",
-- "client" (a type and a function share a name: the type wins, its constructor is
-- achievers.client).
local function lookup(name)
  local d = data()
  if d.entries[name] then return name end
  local dotted = name:gsub("^([%w_]+)%.([%w_]+)$", "%1:%2")
  if d.entries[dotted] then return dotted end
  if d.entries["achievers." .. name] then return "achievers." .. name end
  -- a bare method name: the first documented one that has it
  for _, n in ipairs(d.order) do
    if n:match("[:.]([%w_]+)$") == name then return n end
  end
  return nil
end

--- The help text of `name` (a string); nil and a message when there is none.
function M.text(name)
  local key = lookup(name)
  if not key then return nil, "no help for " .. tostring(name) .. " (help() lists the topics)" end
  return data().entries[key].text, key
end

--- The documented names (in reference order).
function M.names()
  return data().order
end

return M
