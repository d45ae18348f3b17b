-- achievers.cli_json: the JSON writer behind `achievers --json`. Unlike cjson.encode it keeps
-- integers exact at any size, sorts object keys (stable output for diffs and tests), does not
-- escape "/", and writes an empty table as [] (the API's empty values are lists: `items`).
-- JSON null is achievers.null (the same value as cjson.null). Reading JSON is left to cjson.

local M = {}

local format, concat = string.format, table.concat

local function is_null(v)
  local a = package.loaded["achievers"]
  if type(a) == "table" and a.null ~= nil and v == a.null then return true end
  local cj = package.loaded["cjson"]
  return type(cj) == "table" and cj.null ~= nil and v == cj.null
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

local function string_(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or format("\\u%04x", c:byte())
  end) .. '"'
end

local function number_(n)
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if math.type and math.type(n) == "integer" then return format("%d", n) end
  if n == math.floor(n) and n > -2^53 and n < 2^53 then return format("%d", n) end
  return format("%.17g", n)
end

local encode

local function table_(t, seen)
  if seen[t] then error("cannot encode a table that contains itself", 0) end
  seen[t] = true
  local n, count = 0, 0
  for _ in pairs(t) do count = count + 1 end
  while t[n + 1] ~= nil do n = n + 1 end
  local out = {}
  if n == count then
    for i = 1, n do out[i] = encode(t[i], seen) end
    seen[t] = nil
    return "[" .. concat(out, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local by_text = {}
  for k, v in pairs(t) do by_text[tostring(k)] = v end
  for i, k in ipairs(keys) do out[i] = string_(k) .. ":" .. encode(by_text[k], seen) end
  seen[t] = nil
  return "{" .. concat(out, ",") .. "}"
end

function encode(v, seen)
  local t = type(v)
  if t == "string" then return string_(v)
  elseif t == "number" then return number_(v)
  elseif t == "boolean" then return tostring(v)
  elseif t == "nil" or is_null(v) then return "null"
  elseif t == "table" then
    local mt = getmetatable(v)
    if mt and mt.__tostring then -- error objects: their fields, not their text
      local plain = {}
      for k, x in pairs(v) do plain[k] = x end
      return table_(plain, seen)
    end
    return table_(v, seen)
  end
  return string_(tostring(v)) -- tokens, clients: their (secret-free) tostring
end

--- One line of JSON for `v`.
function M.encode(v)
  return encode(v, {})
end

return M
