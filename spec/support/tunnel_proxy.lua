-- A small HTTP proxy for the achievers.resty specs: CONNECT tunnels (for https:// targets)
-- and absolute-form requests (for http:// targets, sent on with Connection: close), many
-- connections at once (coroutines over non-blocking sockets). It counts what it was asked.
-- usage: lua tunnel_proxy.lua PORT PIDFILE   (serves until killed; at most 10 minutes)
--
--   GET /stats (origin-form, to the proxy itself): {"connect": n, "forward": n, "targets": [...]}
local socket = require("socket")
local port, pidfile = tonumber(arg[1]), arg[2]

local f = io.open("/proc/self/stat")
if f and pidfile then
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local out = io.open(pidfile, "w")
  out:write(pid, "\n")
  out:close()
end

local counts = { connect = 0, forward = 0, targets = {} }
local readers, writers = {}, {} -- socket -> the coroutine waiting on it

local function wait(set, s)
  set[s] = coroutine.running()
  coroutine.yield()
end

-- A line, or nil once the peer is gone.
local function line_of(s)
  local acc = ""
  while true do
    local data, err, partial = s:receive("*l", acc)
    if data then return data end
    if err ~= "timeout" then return nil end
    acc = partial
    if #acc > 65536 then return nil end
    wait(readers, s)
  end
end

local function send_all(s, data)
  local i = 1
  while i <= #data do
    local last, err, partial = s:send(data, i)
    if last then return true end
    if err ~= "timeout" then return false end
    i = partial + 1
    wait(writers, s)
  end
  return true
end

-- Copies from a to b until a closes; then closes b's sending side.
local function pipe(a, b)
  while true do
    local data, err, partial = a:receive(16384)
    local chunk = data or partial
    if chunk and #chunk > 0 and not send_all(b, chunk) then break end
    if err == "timeout" then wait(readers, a) elseif err then break end
  end
  b:shutdown("send")
end

local function spawn(fn, ...)
  local co = coroutine.create(fn)
  local ok, err = coroutine.resume(co, ...)
  if not ok then io.stderr:write(tostring(err), "\n") end
end

local function resume(co)
  local ok, err = coroutine.resume(co)
  if not ok then io.stderr:write(tostring(err), "\n") end
end

local function upstream(host, p)
  local u = socket.connect(host, tonumber(p))
  if u then u:settimeout(0) end
  return u
end

local function handle(c)
  local first = line_of(c)
  local method, target = (first or ""):match("^(%u+) (%S+) HTTP/1%.%d$")
  local headers, len = {}, 0
  repeat
    local hl = line_of(c)
    if hl and hl ~= "" then
      headers[#headers + 1] = hl
      len = tonumber(hl:lower():match("^content%-length:%s*(%d+)")) or len
    end
  until not hl or hl == ""
  if method == "CONNECT" then
    counts.connect = counts.connect + 1
    counts.targets[#counts.targets + 1] = "CONNECT " .. target
    local host, p = target:match("^([^:]+):(%d+)$")
    local u = host and upstream(host, p)
    if not u then
      send_all(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
      c:close()
      return
    end
    send_all(c, "HTTP/1.1 200 Connection established\r\n\r\n")
    spawn(pipe, u, c)
    pipe(c, u)
  elseif method and target:match("^http://") then
    counts.forward = counts.forward + 1
    counts.targets[#counts.targets + 1] = method .. " " .. target
    local host, p, path = target:match("^http://([^/:]+):(%d+)(.*)$")
    local u = host and upstream(host, p)
    if not u then
      send_all(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      c:close()
      return
    end
    local out = { method .. " " .. (path ~= "" and path or "/") .. " HTTP/1.1" }
    for _, hl in ipairs(headers) do
      local name = hl:match("^([^:]+)"):lower()
      if name ~= "connection" and not name:match("^proxy%-") then out[#out + 1] = hl end
    end
    out[#out + 1] = "Connection: close"
    local body = ""
    while #body < len do
      local data, err, partial = c:receive(len - #body)
      body = body .. (data or partial or "")
      if err == "timeout" then wait(readers, c) elseif err then break end
    end
    send_all(u, table.concat(out, "\r\n") .. "\r\n\r\n" .. body)
    pipe(u, c)
    c:close()
    u:close()
  elseif method == "GET" and target == "/stats" then
    local t = {}
    for i, x in ipairs(counts.targets) do t[i] = ("%q"):format(x) end
    local body = ('{"connect":%d,"forward":%d,"targets":[%s]}'):format(counts.connect, counts.forward,
      table.concat(t, ","))
    send_all(c, ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" ..
      "Connection: close\r\n\r\n%s"):format(#body, body))
    c:close()
  else
    send_all(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c:close()
  end
end

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(0)
local stop_at = os.time() + 600
while os.time() < stop_at do
  local rl, wl = { server }, {}
  for s in pairs(readers) do rl[#rl + 1] = s end
  for s in pairs(writers) do wl[#wl + 1] = s end
  local r, w = socket.select(rl, wl, 1)
  for _, s in ipairs(r) do
    if s == server then
      local c = server:accept()
      if c then
        c:settimeout(0)
        spawn(handle, c)
      end
    elseif readers[s] then
      local co = readers[s]
      readers[s] = nil
      resume(co)
    end
  end
  for _, s in ipairs(w) do
    local co = writers[s]
    if co then
      writers[s] = nil
      resume(co)
    end
  end
end
