-- scripts/layers.lua: checks the include graph of the C sources against the layers of
-- doc/design.md, and prints it (`make layers`; `make test` runs it first).
--
--   core     includes only core (and the C library)
--   store    includes core and store
--   curl     includes core, store and curl
--   binding  includes anything of the client (core, store, curl, binding)
--   sandbox  includes sandbox, and of the client only core/sha256.h and binding/compat.h
--
-- and no header includes itself back through others (no cycle). Exit status 1 on a breach.
-- Usage: lua scripts/layers.lua [--graph]   (run from the top of the repository)

local allowed = {
  core = { core = true },
  store = { core = true, store = true },
  curl = { core = true, store = true, curl = true },
  binding = { core = true, store = true, curl = true, binding = true },
  sandbox = { sandbox = true },
}
local sandbox_may = { ["core/sha256.h"] = true, ["binding/compat.h"] = true }

local function files()
  local list = {}
  local p = assert(io.popen("find src -name '*.[ch]' | sort"))
  for path in p:lines() do list[#list + 1] = path end
  p:close()
  return list
end

-- The quoted includes of a file, as paths below src/ ("core/buf.h").
local function includes(path)
  local out = {}
  local dir = path:match("^src/(.*)/[^/]+$")
  for line in io.lines(path) do
    local inc = line:match('^%s*#%s*include%s+"([^"]+)"')
    if inc then
      if not inc:find("/") then inc = dir .. "/" .. inc end -- next to the file (sandbox)
      out[#out + 1] = inc
    end
  end
  return out
end

local problems, graph = {}, {}
for _, path in ipairs(files()) do
  local name = path:sub(5) -- below src/
  local layer = name:match("^([^/]+)/")
  local rules = allowed[layer]
  graph[name] = includes(path)
  for _, inc in ipairs(graph[name]) do
    local to = inc:match("^([^/]+)/")
    local ok = rules and (rules[to] or (layer == "sandbox" and sandbox_may[inc]))
    -- generated headers (the Redis scripts text) live in the build tree
    if inc:match("^store/store_scripts%.h$") then ok = true end
    if not ok then
      problems[#problems + 1] = ("%s (%s) includes %s (%s)"):format(name, layer or "?", inc, to or "?")
    end
  end
end

-- cycles among headers: depth-first search over header -> header edges
local state = {}
local function visit(h, stack)
  if state[h] == "done" then return end
  if state[h] == "open" then
    problems[#problems + 1] = "include cycle: " .. table.concat(stack, " -> ") .. " -> " .. h
    return
  end
  state[h] = "open"
  stack[#stack + 1] = h
  for _, inc in ipairs(graph[h] or {}) do
    if inc:match("%.h$") and graph[inc] then visit(inc, stack) end
  end
  stack[#stack] = nil
  state[h] = "done"
end
local names = {}
for name in pairs(graph) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do visit(name, {}) end

if arg[1] == "--graph" then
  for _, name in ipairs(names) do
    if #graph[name] > 0 and not name:match("^sandbox/") then
      print(("%-26s -> %s"):format(name, table.concat(graph[name], " ")))
    end
  end
end
if #problems > 0 then
  for _, p in ipairs(problems) do io.stderr:write("layers: ", p, "\n") end
  os.exit(1)
end
print(("layers: %d files, every include within its layer's reach, no cycle"):format(#names))
