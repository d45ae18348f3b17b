-- scripts/rock_smoke.lua TREE: loaded by scripts/rock-check with only the rock's private tree
-- (and Debian's lua-cjson) on the paths. Proves the installed module is the one loaded, that it
-- was built for this Lua, and that a whole client_credentials call works against the installed
-- sandbox module.
local tree = assert(arg[1], "usage: rock_smoke.lua TREE")
-- package.searchpath is 5.2+; the same search for 5.1
local function searchpath(name, path)
  for pattern in path:gmatch("[^;]+") do
    local file = pattern:gsub("%?", (name:gsub("%.", "/")))
    local f = io.open(file)
    if f then f:close() return file end
  end
end
local so = searchpath("achievers", package.cpath)
assert(so and so:sub(1, #tree) == tree, "achievers.so not loaded from the rock tree: " .. tostring(so))
local achievers = require("achievers")
local sandbox = require("achievers.sandbox")
local sb = sandbox.start {}
local client = achievers.client { base_url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret }
local tok = assert(client:token())
assert(tok:expires_in() > 0)
local page = assert(client:users { pageSize = 2 })
assert(#page.items == 2, "a users page of 2")
if math.type then assert(math.type(page.items[1].id) == "integer", "ids decode as integers") end
for _, mod in ipairs { "achievers.resty", "achievers.cli", "achievers.pretty" } do
  local path = searchpath(mod, package.path)
  assert(path and path:sub(1, #tree) == tree, mod .. " not installed in the rock tree: " .. tostring(path))
end
sb:stop()
print(("rock ok: %s, %s, %d users on page 1"):format(_VERSION .. (jit and (" " .. jit.version) or ""), so, #page.items))
