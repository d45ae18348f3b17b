-- A recording HTTP proxy for specs: it forwards nothing. Every request it receives (request
-- line, headers and body) is appended to LOGFILE; a CONNECT is answered 403 once recorded
-- (so a client going through it sees only the CONNECT line, never what it would tunnel), any
-- other request 502.
-- usage: lua proxy_server.lua PORT PIDFILE LOGFILE   (serves until killed; at most 5 minutes)
local socket = require("socket")
local port, pidfile, logfile = tonumber(arg[1]), arg[2], arg[3]

local f = io.open("/proc/self/stat")
if f and pidfile then
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local out = io.open(pidfile, "w")
  out:write(pid, "\n")
  out:close()
end

local function record(text)
  local out = assert(io.open(logfile, "a"))
  out:write(text, "\n--\n")
  out:close()
end

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(1)
local deadline = os.time() + 300
while os.time() < deadline do
  local c = server:accept()
  if c then
    c:settimeout(5)
    local lines, len = {}, 0
    local line = c:receive("*l")
    if line then
      lines[1] = line
      repeat
        local hl = c:receive("*l")
        if hl then
          lines[#lines + 1] = hl
          local n = hl:lower():match("^content%-length:%s*(%d+)")
          if n then len = tonumber(n) end
        end
      until not hl or hl == ""
      if len > 0 then lines[#lines + 1] = c:receive(len) or "" end
      record(table.concat(lines, "\n"))
      if line:match("^CONNECT ") then
        c:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      else
        c:send("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n" ..
          "Connection: close\r\n\r\nno proxy")
      end
    end
    c:close()
  end
end
