-- Helpers for the specs that run the `achievers` program (61-63): shell quoting, commands,
-- files, and a run of the program with a controlled environment.
local h = require("helpers")
local M = {}

-- A shell word.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.q

-- true when a shell command exits 0 (os.execute returns a number on 5.1, a boolean after)
function M.sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

-- A file's contents, or nil when it cannot be read.
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The environment of a run: the build, the module's Lua files, and `env` (a value of false
-- removes that variable); the user's own achievers settings are removed, sanitizer settings
-- (make test SAN=1) passed on explicitly.
function M.env_prefix(env)
  local parts = { "env", "-u ACHIEVERS_CONFIG -u ACHIEVERS_SCOPE -u XDG_CONFIG_HOME" }
  for _, k in ipairs { "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" } do
    if os.getenv(k) then parts[#parts + 1] = k .. "=" .. q(os.getenv(k)) end
  end
  parts[#parts + 1] = "LUA_CPATH=" .. q(h.build .. "/?.so;;")
  parts[#parts + 1] = "LUA_PATH=" .. q("src/lua/?.lua;;")
  local keys = {}
  for k in pairs(env) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do -- env(1) takes every -u before the first assignment
    if env[k] == false then table.insert(parts, 2, "-u " .. k) end
  end
  for _, k in ipairs(keys) do
    if env[k] ~= false then parts[#parts + 1] = k .. "=" .. q(env[k]) end
  end
  return table.concat(parts, " ")
end

-- A private HOME (made here) and the environment of a program run against the sandbox sb:
-- returns home, env.
function M.private_env(sb)
  local home = os.tmpname()
  os.remove(home)
  assert(M.sh("mkdir -p " .. q(home)))
  return home, {
    HOME = home,
    XDG_CONFIG_HOME = home .. "/cfg",
    ACHIEVERS_BASE_URL = sb.url,
    ACHIEVERS_CLIENT_ID = sb.client_id,
    ACHIEVERS_CLIENT_SECRET = sb.client_secret,
  }
end

-- Runs `achievers ARGS...` (bounded to 60 s): exit status, stdout, stderr. The status goes
-- through a file: io.popen's close gives none on Lua 5.1.
function M.run(env, ...)
  local args = {}
  for i, a in ipairs { ... } do args[i] = q(a) end
  local errfile, rcfile = os.tmpname(), os.tmpname()
  local cmd = string.format("timeout 60 %s %s bin/achievers %s 2>%s; echo $? >%s", M.env_prefix(env),
    h.lua, table.concat(args, " "), q(errfile), q(rcfile))
  local p = io.popen(cmd, "r")
  local out = p:read("*a")
  p:close()
  local err, code = M.slurp(errfile) or "", tonumber((M.slurp(rcfile) or ""):match("%d+"))
  os.remove(errfile)
  os.remove(rcfile)
  return code, out, err
end

return M
