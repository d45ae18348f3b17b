-- A server whose answers never end, or end too slowly: for the achievers.resty specs of
-- caps and deadlines. One connection at a time; every answer closes its connection.
-- usage: lua hostile_server.lua PORT PIDFILE   (serves until killed; at most 10 minutes)
--
--   POST /oauth/v2/openIDConnectClient/token   a token for 14 days
--   GET /api/v5/trickle-headers   a status line, then a header a byte every 0.5 s (60 s)
--   GET /api/v5/trickle-body      headers promising 1000 bytes, then a byte every 0.5 s
--   GET /api/v5/endless-unsized   no length, 64 MiB ended by closing
--   GET /api/v5/endless-chunked   64 MiB in 64 KiB chunks
--   GET /api/v5/huge-length       Content-Length: 10 GiB, then 64 MiB
--   GET /api/v5/endless-headers   16 MiB of short header lines
--   GET /api/v5/long-header       one header line of 16 MiB
--   GET /api/v5/chunked-small     a good answer in chunks of 1 to 7 bytes, an extension, a trailer
--   GET /api/v5/unsized-small     a good answer with no length, ended by closing
--   GET /api/v5/interim           a 100 Continue, then a good answer
--   GET /api/v5/endless-interim   100 Continue after 100 Continue (16 MiB of them)
--   GET /api/v5/foreign-next      one item, and a paging.next link to another host
--   GET /api/v5/numbered?page=N   page N of 3 by page numbers only (no paging.next): one item
--                                 {"id": N, "q": the q parameter}
--   GET /api/v5/no-items          a page with paging but no items list
--   GET /api/v5/users             an empty page
--   GET /stats                    {"sent": {path: bytes sent of its last answer}, "tokens": n}
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

local MiB = 1024 * 1024
local sent, tokens = {}, 0

local function answer(status, body)
  return ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s")
    :format(status, #body, body)
end

-- Sends `s`; false once the client has gone.
local function put(c, path, s)
  local last, err, partial = c:send(s)
  sent[path] = (sent[path] or 0) + (last or partial or 0)
  return last ~= nil, err
end

-- Sends pieces from `next_piece()` until it returns nil or the client goes.
local function stream(c, path, next_piece)
  for piece in next_piece do
    if not put(c, path, piece) then return end
  end
end

local function count(total, piece)
  local n = 0
  return function()
    if n >= total then return nil end
    n = n + #piece
    return piece
  end
end

local function trickle(c, path, head, seconds)
  if not put(c, path, head) then return end
  local deadline = socket.gettime() + seconds
  while socket.gettime() < deadline do
    socket.sleep(0.5)
    if not put(c, path, "x") then return end
  end
end

local block = string.rep("x", 64 * 1024)

local routes = {
  ["/api/v5/trickle-headers"] = function(c, path)
    trickle(c, path, "HTTP/1.1 200 OK\r\nX-Slow: ", 60)
  end,
  ["/api/v5/trickle-body"] = function(c, path)
    trickle(c, path, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", 60)
  end,
  ["/api/v5/endless-unsized"] = function(c, path)
    if put(c, path, 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"items":"') then
      stream(c, path, count(64 * MiB, block))
    end
  end,
  ["/api/v5/endless-chunked"] = function(c, path)
    if put(c, path, 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n') then
      stream(c, path, count(64 * MiB, ("%x\r\n%s\r\n"):format(#block, block)))
    end
  end,
  ["/api/v5/huge-length"] = function(c, path)
    if put(c, path, 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n') then
      stream(c, path, count(64 * MiB, block))
    end
  end,
  ["/api/v5/endless-headers"] = function(c, path)
    local line = "X-Pad: " .. string.rep("p", 100) .. "\r\n"
    if put(c, path, "HTTP/1.1 200 OK\r\n") then stream(c, path, count(16 * MiB, line:rep(100))) end
  end,
  ["/api/v5/long-header"] = function(c, path)
    if put(c, path, "HTTP/1.1 200 OK\r\nX-Long: ") then stream(c, path, count(16 * MiB, block)) end
  end,
  ["/api/v5/chunked-small"] = function(c, path)
    local body, out, i, n = '{"items":[{"id":1},{"id":2},{"id":3}],"chunked":true}', {}, 1, 1
    while i <= #body do
      local piece = body:sub(i, i + n - 1)
      out[#out + 1] = ("%x%s\r\n%s\r\n"):format(#piece, n == 3 and ";ext=1" or "", piece)
      i, n = i + #piece, n % 7 + 1
    end
    put(c, path, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      table.concat(out) .. "0\r\nX-Trailer: 1\r\n\r\n")
  end,
  ["/api/v5/unsized-small"] = function(c, path)
    put(c, path, 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"items":[{"id":7}]}')
  end,
  ["/api/v5/endless-interim"] = function(c, path)
    stream(c, path, count(16 * MiB, ("HTTP/1.1 100 Continue\r\n\r\n"):rep(1000)))
  end,
  ["/api/v5/interim"] = function(c, path)
    put(c, path, "HTTP/1.1 100 Continue\r\n\r\n" .. answer("200 OK", '{"items":[{"id":9}]}'))
  end,
  ["/api/v5/foreign-next"] = function(c, path)
    put(c, path, answer("200 OK", '{"items":[{"id":1}],"paging":{"page":1,"totalPages":2,' ..
      '"next":"http://127.0.0.2:9/api/v5/foreign-next?page=2"}}'))
  end,
  ["/api/v5/numbered"] = function(c, path, query)
    local n = tonumber((query or ""):match("page=(%d+)")) or 1
    local q = (query or ""):match("q=([%w]*)") or ""
    put(c, path, answer("200 OK", ('{"items":[{"id":%d,"q":"%s"}],"paging":{"page":%d,"totalPages":3}}')
      :format(n, q, n)))
  end,
  ["/api/v5/no-items"] = function(c, path)
    put(c, path, answer("200 OK", '{"paging":{"page":1,"totalPages":2},"error":"not a list"}'))
  end,
  ["/api/v5/users"] = function(c, path)
    put(c, path, answer("200 OK", '{"paging":{"page":1,"totalPages":1},"items":[]}'))
  end,
  ["/oauth/v2/openIDConnectClient/token"] = function(c, path)
    tokens = tokens + 1
    put(c, path, answer("200 OK",
      '{"access_token":"hostile00000000000000000000000000000000","token_type":"bearer","expires_in":1209600,"scope":"read"}'))
  end,
  ["/stats"] = function(c, path)
    local parts = {}
    for k, v in pairs(sent) do parts[#parts + 1] = ("%q:%d"):format(k, v) end
    put(c, path, answer("200 OK", '{"sent":{' .. table.concat(parts, ",") .. '},"tokens":' .. tokens .. "}"))
  end,
}

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(1)
local stop_at = os.time() + 600
while os.time() < stop_at do
  local c = server:accept()
  if c then
    c:settimeout(5)
    local line = c:receive("*l")
    local path, query = (line or ""):match("^%u+ ([^ ?]+)%??([^ ]*)")
    local len = 0
    repeat
      local hl = c:receive("*l")
      local n = hl and hl:lower():match("^content%-length:%s*(%d+)")
      if n then len = tonumber(n) end
    until not hl or hl == ""
    if len > 0 then c:receive(len) end
    if path then
      sent[path] = 0
      local route = routes[path]
      if route then route(c, path, query) else put(c, path, answer("404 Not Found", '{"error":"not_found"}')) end
    end
    c:shutdown("send")
    c:close()
  end
end
