-- achievers.repl_complete: tab completion for `achievers repl`. Completes globals, fields of
-- tables (`achievers.endpoints`, `string.fo`) and methods after a colon (`client:ge`). Client
-- objects hide their methods behind an __index function: their metatable's `methods` table
-- lists them (the endpoint helpers among them); when it is missing, the names come from the
-- reference (achievers.help_data) and achievers.endpoints.

local M = {}

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}

-- The documented methods of a kind of object ("client", "token", "request", ...).
local function documented(kind)
  local names = {}
  local ok, data = pcall(require, "achievers.help_data")
  if ok then
    for _, name in ipairs(data.order) do
      local k, m = name:match("^([%w_]+):([%w_]+)$")
      if k == kind then names[#names + 1] = m end
    end
  end
  if kind == "client" then
    local ok2, achievers = pcall(require, "achievers")
    if ok2 and type(achievers.endpoints) == "table" then
      for _, e in ipairs(achievers.endpoints) do names[#names + 1] = e.name end
    end
  end
  return names
end

-- The kind of an object from its metatable's __name ("achievers.client" -> "client").
local function kind_of(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name:match("^achievers%.([%w_]+)$") or nil
end

-- Names reachable on `v` with `.` (fields) or `:` (methods, functions only).
function M.fields_of(v, methods)
  local out, seen = {}, {}
  local function add(k, val)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k] and
        (not methods or type(val) == "function" or val == true) then
      seen[k] = true
      out[#out + 1] = k
    end
  end
  local function from_table(t)
    for k, val in pairs(t) do add(k, val) end
  end
  if type(v) == "table" then from_table(v) end
  if type(v) == "string" then from_table(string) end
  local mt = getmetatable(v)
  if type(mt) == "table" then
    if type(rawget(mt, "methods")) == "table" then from_table(rawget(mt, "methods")) end
    local index = rawget(mt, "__index")
    if type(index) == "table" then from_table(index) end
    if type(index) == "function" and type(rawget(mt, "methods")) ~= "table" then
      local kind = kind_of(v)
      if kind then for _, name in ipairs(documented(kind)) do add(name, true) end end
    end
  end
  -- private names (_exchange, _set_token, ...) only when asked for: see candidates
  table.sort(out)
  return out
end

-- The value an expression of names (`achievers.endpoints`) has in env; nil when it is not one.
local function resolve(env, expr)
  local v = env
  for name in expr:gmatch("[^.]+") do
    if not name:match("^[%a_][%w_]*$") then return nil end
    local ok, nv = pcall(function() return v[name] end)
    if not ok or nv == nil then return nil end
    v = nv
  end
  return v
end

--- The completions of `word` (the text before the cursor, from the last word break): full
-- replacements, sorted. `env` is the REPL's environment (its __index reaches the globals).
function M.candidates(env, word)
  local out = {}
  local expr, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  local names
  if not expr then
    expr, sep, partial = "", "", word
    if not word:match("^[%a_]?[%w_]*$") then return out end
    local seen, list = {}, {}
    local function add(k)
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k] then
        seen[k] = true
        list[#list + 1] = k
      end
    end
    for k in pairs(env) do add(k) end
    local mt = getmetatable(env)
    if mt and type(mt.__index) == "table" then for k in pairs(mt.__index) do add(k) end end
    for _, k in ipairs(KEYWORDS) do add(k) end
    table.sort(list)
    names = list
  else
    if expr:find(":", 1, true) or expr == "" then return out end
    local v = resolve(env, expr)
    if v == nil then return out end
    names = M.fields_of(v, sep == ":")
  end
  for _, k in ipairs(names) do
    if k:sub(1, #partial) == partial and (partial:sub(1, 1) == "_" or k:sub(1, 1) ~= "_" or sep == "" or
        sep == ".") then
      if not (sep == ":" and k:sub(1, 1) == "_" and partial:sub(1, 1) ~= "_") then
        out[#out + 1] = expr .. sep .. k
      end
    end
  end
  return out
end

--- For readline: the word being completed is line:sub(from, to); returns its candidates. The
-- word break characters of readline do not split on `.` and `:`, so the word is a whole
-- `a.b:c`; what precedes it on the line (`p(`) is left alone.
function M.readline_function(env)
  return function(line, from, to)
    local ok, list = pcall(M.candidates, env, line:sub(from, to))
    return ok and list or {}
  end
end

return M
