-- A real redis-server for the state store specs: started on a free loopback port with a
-- throw-away directory, no persistence; it can be paused (SIGSTOP), resumed, killed and
-- started again empty on the same port. `r:call(...)` speaks RESP over LuaSocket.
local socket = require("socket")

local M = {}
M.__index = M

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

-- Starts redis-server; opts.password sets requirepass, opts.port a fixed port.
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({ port = opts.port or free_port(), password = opts.password }, M)
  self.dir = sh("mktemp -d /tmp/achievers-redis.XXXXXX"):gsub("%s+$", "")
  self:_launch()
  return self
end

function M:_launch()
  local args = string.format("--port %d --bind 127.0.0.1 --dir %s --save '' --appendonly no " ..
    "--daemonize no --logfile %s/redis.log", self.port, self.dir, self.dir)
  if self.password then args = args .. " --requirepass " .. self.password end
  -- its own process under a pipe we hold: closing the pipe waits for it, so no zombie is left
  local pidfile = self.dir .. "/redis.pid"
  os.remove(pidfile)
  self.proc = assert(io.popen("exec env -u LD_PRELOAD redis-server " .. args .. " --pidfile " ..
    pidfile .. " >/dev/null 2>&1", "r"))
  for _ = 1, 200 do
    local f = io.open(pidfile)
    self.pid = f and tonumber(f:read("*l") or "")
    if f then f:close() end
    if self.pid then break end
    socket.sleep(0.01)
  end
  assert(self.pid, "redis-server did not start")
  for _ = 1, 200 do
    local ok = pcall(function() assert(self:call("PING")) end)
    if ok then break end
    socket.sleep(0.025)
  end
  self.url = string.format("redis://127.0.0.1:%d/0", self.port)
end

local function encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  return table.concat(out)
end

local function read_reply(c)
  local line = assert(c:receive("*l"))
  local t, rest = line:sub(1, 1), line:sub(2)
  if t == "+" then return rest end
  if t == "-" then return nil, rest end
  if t == ":" then return tonumber(rest) end
  if t == "$" then
    local n = tonumber(rest)
    if n < 0 then return false end
    local s = assert(c:receive(n + 2))
    return s:sub(1, n)
  end
  if t == "*" then
    local n, out = tonumber(rest), {}
    for i = 1, n do out[i] = read_reply(c) end
    return out
  end
  error("not RESP: " .. line)
end

-- One command on a fresh connection (authenticated when the server has a password).
function M:call(...)
  local c = assert(socket.connect("127.0.0.1", self.port))
  c:settimeout(2)
  if self.password then
    c:send(encode { "AUTH", self.password })
    read_reply(c)
  end
  c:send(encode { ... })
  local a, b = read_reply(c)
  c:close()
  return a, b
end

-- Keys matching a pattern, sorted.
function M:keys(pattern)
  local ks = self:call("KEYS", pattern or "*")
  table.sort(ks)
  return ks
end

function M:pause() os.execute("kill -STOP " .. self.pid) end
function M:resume() os.execute("kill -CONT " .. self.pid) end

-- Kills it (SIGKILL: nothing is saved, the port closes).
function M:kill()
  if not self.pid then return end
  os.execute("kill -CONT " .. self.pid .. " 2>/dev/null; kill -KILL " .. self.pid .. " 2>/dev/null")
  if self.proc then self.proc:close() end -- waits for it to end
  self.proc = nil
  self.pid = nil
end

-- Kills it and starts a new, empty one on the same port.
function M:restart()
  self:kill()
  self:_launch()
end

function M:stop()
  self:kill()
  if self.dir and self.dir:match("^/tmp/achievers%-redis%.") then os.execute("rm -rf " .. self.dir) end
end

M.free_port = free_port
return M
