--- Readable text for any value: API answers, tokens, clients, errors.
--
-- `pretty(value [, opts])` renders a value as indented Lua-like text with the keys sorted,
-- long strings shortened and secrets redacted. It is what the `achievers` program and its REPL
-- print, and it is safe to log: values under secret-looking keys (`access_token`,
-- `refresh_token`, `client_secret`, `code`, `authorization`, `password`, ...) show as
-- `"[redacted]"`, and such parameters inside URLs are blanked too. Tokens, clients, errors and
-- pending requests are shown through their own `tostring`, which never shows a secret.
--
-- This file needs nothing but Lua (5.1 to 5.4, LuaJIT); it recognises `achievers.null` (and
-- `cjson.null`, the same value) when those modules are loaded.
--
--    local pretty = require("achievers.pretty")
--    print(pretty(client:get("users", { pageSize = 2 })))
--
-- @module achievers.pretty

local pairs, type, tostring, getmetatable = pairs, type, tostring, getmetatable
local concat, sort = table.concat, table.sort
local format, rep = string.format, string.rep

local REDACTED = "[redacted]"

-- Keys whose values are never shown (compared in lower case, with `-` read as `_`).
local SECRET_KEYS = {
  access_token = true, refresh_token = true, id_token = true, client_secret = true,
  code = true, authorization = true, proxy_authorization = true, password = true,
  secret = true, cookie = true, set_cookie = true,
}

-- URL parameters blanked inside strings ("...?code=abc&state=x" -> "...?code=[redacted]&state=[redacted]"),
-- the names compared as the C module's redaction does (encode.c): percent-decoded, in lower
-- case, `-` read as `_`, so `Access_Token=` and `access%5Ftoken=` are caught too.
local SECRET_PARAMS = {
  code = true, state = true, access_token = true, refresh_token = true, client_secret = true,
  id_token = true, password = true,
}

local DEFAULTS = {
  indent = "  ",      -- one level of indentation
  width = 80,         -- a table whose one-line form fits in this many columns stays on one line
  max_string = 100,   -- strings longer than this many bytes are shortened
  depth = 16,         -- tables nested deeper than this show as {...}
  compact = false,    -- true: everything on one line
}

local function is_secret_key(k)
  if type(k) ~= "string" then return false end
  return SECRET_KEYS[(k:lower():gsub("%-", "_"))] == true
end

local function param_name(raw)
  local name = raw:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end)
  return (name:lower():gsub("%-", "_"))
end

local function redact_params(s)
  if not s:find("=", 1, true) then return s end
  return (s:gsub("([?&#;])([^=&#;?%s\"']+)=([^&#;%s\"']*)", function(sep, name, value)
    if SECRET_PARAMS[param_name(name)] and value ~= REDACTED then
      return sep .. name .. "=" .. REDACTED
    end
  end))
end

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }

local function quote(s, max)
  local n = #s
  local shortened = false
  if n > max then
    local cut = max
    -- do not cut a UTF-8 sequence in the middle: back off continuation bytes
    while cut > 1 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    s, shortened = s:sub(1, cut), true
  end
  s = s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or format("\\%03d", c:byte())
  end)
  if shortened then
    return format('"%s..." (%d bytes)', s, n)
  end
  return '"' .. s .. '"'
end

-- The values JSON null decodes to, looked up when needed so this file loads on its own.
local function is_null(v)
  local a = package.loaded["achievers"]
  if type(a) == "table" and a.null ~= nil and v == a.null then return true end
  local cj = package.loaded["cjson"]
  if type(cj) == "table" and cj.null ~= nil and v == cj.null then return true end
  return false
end

local function has_tostring(v)
  local ok, mt = pcall(getmetatable, v)
  return ok and type(mt) == "table" and mt.__tostring ~= nil
end

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local TYPE_ORDER = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (TYPE_ORDER[ta] or 9) < (TYPE_ORDER[tb] or 9) or
      ((TYPE_ORDER[ta] or 9) == (TYPE_ORDER[tb] or 9) and ta < tb)
  end
  if ta == "string" then
    local la, lb = a:lower(), b:lower()
    if la ~= lb then return la < lb end
    return a < b
  end
  if ta == "number" then return a < b end
  return tostring(a) < tostring(b)
end

local render

local function scalar(v, opts)
  local t = type(v)
  if t == "string" then
    return quote(redact_params(v), opts.max_string)
  elseif t == "number" then
    if v ~= v then return "nan" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    if math.type and math.type(v) == "float" and v == math.floor(v) and v > -2^53 and v < 2^53 then
      return format("%d", v) -- ids decoded as floats read as the integers they are
    end
    return tostring(v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  elseif is_null(v) then
    return "null"
  elseif has_tostring(v) then
    local ok, s = pcall(tostring, v)
    return ok and s or "<" .. t .. ">"
  end
  return "<" .. tostring(v) .. ">" -- functions, threads, plain userdata
end

-- Keys of `t` in display order, and how many of them form the list part 1..n.
local function sorted_keys(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
      keys[#keys + 1] = k
    end
  end
  sort(keys, key_less)
  return n, keys
end

local function key_text(k, opts, path)
  if is_identifier(k) then return k end
  if type(k) == "table" then return "[" .. render(k, opts, path, 0, true) .. "]" end
  return "[" .. scalar(k, opts) .. "]"
end

-- One "key = value" (or list item) entry of table `t`, rendered with `line` (the renderer for
-- the children).
local function entry(t, k, opts, path, level, one_line)
  local x = t[k]
  local key = key_text(k, opts, path) .. " = "
  if is_secret_key(k) and type(x) ~= "table" then
    return key .. '"' .. REDACTED .. '"'
  end
  return key .. render(x, opts, path, level + 1, one_line, #key)
end

-- `path` holds the tables being rendered (the ancestors), to show a cycle instead of looping.
-- A table is written on one line when that fits in `opts.width` (after `lead` columns of
-- key), else one entry per line.
function render(v, opts, path, level, one_line, lead)
  if type(v) ~= "table" or has_tostring(v) then return scalar(v, opts) end
  if path[v] then return "<cycle>" end
  if level >= opts.depth then return "{...}" end
  local n, keys = sorted_keys(v)
  if n == 0 and #keys == 0 then return "{}" end
  if not one_line then
    local flat = render(v, opts, path, level, true)
    if #flat + #opts.indent * level + (lead or 0) <= opts.width then return flat end
  end
  path[v] = true
  local parts = {}
  for i = 1, n do
    parts[#parts + 1] = render(v[i], opts, path, level + 1, one_line)
  end
  for _, k in ipairs(keys) do
    parts[#parts + 1] = entry(v, k, opts, path, level, one_line)
  end
  path[v] = nil
  if one_line then
    return "{ " .. concat(parts, ", ") .. " }"
  end
  local pad = rep(opts.indent, level + 1)
  return "{\n" .. pad .. concat(parts, ",\n" .. pad) .. ",\n" .. rep(opts.indent, level) .. "}"
end

--- Renders `value` as readable text.
-- @param value any Lua value
-- @tparam[opt] table opts `indent` (default two spaces), `width` (80: a table whose one-line
--   form fits stays on one line), `max_string` (100: longer strings are shortened and their
--   length given), `depth` (16: deeper tables show as `{...}`), `compact` (false: true puts
--   everything on one line)
-- @treturn string the text, without a trailing newline
-- @usage print(pretty({ b = 1, a = { "x", "y" }, access_token = "abc" }))
-- --> { a = { "x", "y" }, access_token = "[redacted]", b = 1 }
-- @function pretty
local function pretty(value, opts)
  local o = {}
  for k, d in pairs(DEFAULTS) do o[k] = d end
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #2 to 'pretty' (table expected, got " .. type(opts) .. ")", 2)
    end
    for k, x in pairs(opts) do
      if DEFAULTS[k] == nil then error("pretty: unknown option '" .. tostring(k) .. "'", 2) end
      o[k] = x
    end
  end
  return render(value, o, {}, 0, o.compact)
end

return pretty
