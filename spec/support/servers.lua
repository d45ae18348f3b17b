-- Starts one of the small LuaSocket servers of spec/support (a script taking PORT PIDFILE
-- first) in its own process, and stops it: for the achievers.resty specs' misbehaving
-- servers and proxy.
local h = require("helpers")
local socket = require("socket")
local M = {}

--- start(script, ...) -> url ("http://127.0.0.1:PORT"), port, stop function
function M.start(script, ...)
  local port = h.free_port()
  local pidfile = os.tmpname()
  local args = {}
  for i, a in ipairs { ... } do args[i] = "'" .. tostring(a) .. "'" end
  os.execute(("env -u LD_PRELOAD %s %s %d %s %s >/dev/null 2>&1 &"):format(h.lua, script, port, pidfile,
    table.concat(args, " ")))
  local up = false
  for _ = 1, 200 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() up = true break end
    socket.sleep(0.05)
  end
  assert(up, script .. " did not start")
  local function stop()
    local f = io.open(pidfile)
    local pid = f and f:read("*l")
    if f then f:close() end
    if pid and pid:match("^%d+$") then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.remove(pidfile)
  end
  return "http://127.0.0.1:" .. port, port, stop
end

-- GET url (a plain HTTP/1.0 exchange, no client module): the decoded JSON body.
function M.get_json(url)
  local host, port, path = url:match("^http://([^/:]+):(%d+)(.*)$")
  local c = socket.tcp()
  c:settimeout(10)
  assert(c:connect(host, tonumber(port)))
  c:send("GET " .. path .. " HTTP/1.0\r\nHost: " .. host .. "\r\n\r\n")
  local all = c:receive("*a") or ""
  c:close()
  return require("dkjson").decode(all:match("\r\n\r\n(.*)$") or "")
end

return M
