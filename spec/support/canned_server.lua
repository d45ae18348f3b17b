-- A scripted HTTP/1.1 server for specs: each path gives an answer the sandbox never gives.
-- usage: lua canned_server.lua PORT PIDFILE   (serves until killed; at most 10 minutes)
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

local function answer(status, ctype, body, extra)
  return table.concat({
    "HTTP/1.1 " .. status .. "\r\n",
    ctype and ("Content-Type: " .. ctype .. "\r\n") or "",
    "Content-Length: " .. #body .. "\r\n",
    extra or "",
    "Connection: close\r\n\r\n",
    body,
  })
end

local token = '{"access_token":"cannedtoken0123456789","token_type":"bearer","expires_in":3600}'
local routes = {
  ["/oauth/v2/openIDConnectClient/token"] = answer("200 OK", "application/json", token),
  ["/api/v5/not-json"] = answer("200 OK", "application/json", "this is not json"),
  ["/api/v5/html-error"] = answer("502 Bad Gateway", "text/html",
    "<html><body><h1>502 Bad Gateway</h1></body></html>"),
  ["/api/v5/empty"] = answer("200 OK", "application/json", ""),
  ["/api/v5/big"] = answer("200 OK", "application/json", '{"items":"' .. string.rep("x", 200000) .. '"}'),
}

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(1)
local deadline = os.time() + 600
while os.time() < deadline do
  local c = server:accept()
  if c then
    c:settimeout(5)
    local line = c:receive("*l")
    local path = line and line:match("^%u+ ([^ ?]+)")
    local len = 0
    repeat
      local h = c:receive("*l")
      local n = h and h:lower():match("^content%-length:%s*(%d+)")
      if n then len = tonumber(n) end
    until not h or h == ""
    if len > 0 then c:receive(len) end
    if path == "/api/v5/truncated" then
      -- promises 1000 bytes, sends 20, closes
      c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
      c:send('{"items":[{"id":1},')
    else
      c:send(routes[path] or answer("404 Not Found", "application/json", '{"error":"not_found"}'))
    end
    c:close()
  end
end
