-- A scripted HTTP/1.1 server for specs: answers the sandbox never gives.
-- usage: lua scripted_server.lua PORT PIDFILE MODE   (serves until killed; at most 10 minutes)
--
-- Every mode answers GET /stats with {"requests": {"METHOD /path": n}, "tokens": n}.
--   canned         broken answers by path, 404 for any other API path: /api/v5/not-json (200,
--                  not JSON), /api/v5/html-error (502 with an HTML page), /api/v5/empty (200,
--                  no body), /api/v5/big (200, 200 kB), /api/v5/truncated (promises 1000
--                  bytes, sends 20, closes).
--   date_retry     GET /api/v5/users: the first answer is 503 with Retry-After as an HTTP
--                  date two seconds ahead (and a Date header); then 200. GET /api/v5/rfc850
--                  and /api/v5/asctime: the same, one second ahead, in the obsolete forms.
--   fresh_tokens   the token endpoint hands out a new token on every request, valid for an
--                  hour (expires_in = 3600, relative), like most OAuth servers; after 20
--                  token requests it answers 400 invalid_grant, so a client that keeps asking
--                  ends instead of spinning; GET /api/v5/users: 200.
--   accept         every request: 200 (a POST to /api/v5/recognitions: 201 with an id).
--   far_retry      GET /api/v5/users: 503 with Retry-After as a date in the year 3940.
--   huge_expiry    the token endpoint answers expires_in = 1e60; GET /api/v5/users: 200.
--   inject_token   the token endpoint answers an access_token with "\r\nX-Injected: 1" inside;
--                  /stats counts in "injected" the requests that arrived with an X-Injected
--                  header (every mode counts them).
--   inject_refresh the token endpoint answers a clean access_token and a refresh_token with
--                  "\r\nX-Injected: 1" inside.
--   foreign_next   GET /api/v5/users: a page of two items whose paging.next is on another
--                  origin (http://127.0.0.2:PORT/...), as a hostile or broken server might say.
--   bombs          GET /api/v5/endless-error: 500 with no length and a body of "[[],[],..."
--                  that never ends (up to 256 MiB, while the client reads; /stats says in
--                  "sent" how many body bytes went out). GET /api/v5/nested: 200 with a
--                  valid 6 MiB "[[],[],...,[]]" (2 million empty arrays).
--   huge           GET /api/v5/huge: a 33 MiB JSON answer with Content-Length; GET
--                  /api/v5/huge-unsized: the same with no length, ended by closing.
local socket = require("socket")
local port, pidfile, mode = tonumber(arg[1]), arg[2], arg[3]

local f = io.open("/proc/self/stat")
if f and pidfile then
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local out = io.open(pidfile, "w")
  out:write(pid, "\n")
  out:close()
end

local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

local function answer(status, body, extra, now, ctype)
  return table.concat({
    "HTTP/1.1 ", status, "\r\n",
    "Content-Type: ", ctype or "application/json", "\r\n",
    "Content-Length: ", #body, "\r\n",
    "Date: ", http_date(now or os.time()), "\r\n",
    extra or "",
    "Connection: close\r\n\r\n",
    body,
  })
end

local counts, tokens, injected, sent = {}, 0, 0, 0
local page = '{"paging":{"totalItems":0,"totalPages":1,"page":1,"pageSize":25},"items":[]}'

local function route(method, path)
  local key = method .. " " .. path
  counts[key] = (counts[key] or 0) + 1
  local n = counts[key]
  if key == "GET /stats" then
    local parts = {}
    for k, v in pairs(counts) do parts[#parts + 1] = string.format("%q:%d", k, v) end
    return answer("200 OK", '{"requests":{' .. table.concat(parts, ",") .. '},"tokens":' .. tokens ..
      ',"injected":' .. injected .. ',"sent":' .. sent .. "}")
  end
  if path == "/oauth/v2/openIDConnectClient/token" then
    tokens = tokens + 1
    if mode == "fresh_tokens" and tokens > 20 then
      return answer("400 Bad Request", '{"error":"invalid_grant","error_description":"enough"}')
    end
    if mode == "inject_token" then
      return answer("200 OK", '{"access_token":"scripted\\r\\nX-Injected: 1","token_type":"bearer",' ..
        '"expires_in":3600,"scope":"read,write"}')
    end
    if mode == "inject_refresh" then
      return answer("200 OK", '{"access_token":"scripted","token_type":"bearer","expires_in":3600,' ..
        '"scope":"read,write","refresh_token":"r\\r\\nX-Injected: 1"}')
    end
    local access = mode == "fresh_tokens" and string.format("fresh%035d", tokens) or "scriptedtoken000000000000000000000000000"
    local expires = mode == "fresh_tokens" and "3600" or mode == "huge_expiry" and "1e60" or "1209600"
    return answer("200 OK", string.format(
      '{"access_token":"%s","token_type":"bearer","expires_in":%s,"scope":"read,write"}', access, expires))
  end
  if mode == "far_retry" and key == "GET /api/v5/users" then
    return answer("503 Service Unavailable", '{"error":"service_unavailable"}',
      "Retry-After: Fri, 01 Jan 3940 00:00:00 GMT\r\n")
  end
  if mode == "date_retry" and key == "GET /api/v5/users" and n == 1 then
    local now = os.time() -- one reading for both headers, so they are exactly 2 s apart
    return answer("503 Service Unavailable", '{"error":"service_unavailable"}',
      "Retry-After: " .. http_date(now + 2) .. "\r\n", now)
  end
  if mode == "foreign_next" and key == "GET /api/v5/users" then
    return answer("200 OK", '{"items":[{"id":1},{"id":2}],"paging":{"page":1,"totalPages":2,' ..
      '"pageSize":2,"totalItems":4,"next":"http://127.0.0.2:' .. port .. '/api/v5/users?page=2"}}')
  end
  if mode == "date_retry" and (path == "/api/v5/rfc850" or path == "/api/v5/asctime") and n == 1 then
    local now = os.time()
    local form = path == "/api/v5/rfc850" and "!%A, %d-%b-%y %H:%M:%S GMT" or "!%a %b %e %H:%M:%S %Y"
    return answer("503 Service Unavailable", '{"error":"service_unavailable"}',
      "Retry-After: " .. os.date(form, now + 1) .. "\r\n", now)
  end
  if mode == "bombs" and path == "/api/v5/nested" then
    return answer("200 OK", "[" .. string.rep("[],", 2 * 1024 * 1024 - 1) .. "[]]")
  end
  if mode == "bombs" and path == "/api/v5/endless-error" then
    -- streamed by the accept loop: a function instead of the whole answer
    return function(c)
      c:send("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n" ..
        "Connection: close\r\n\r\n[")
      local chunk = string.rep("[],", 21845)
      while sent < 256 * 1024 * 1024 do
        local n = c:send(chunk)
        if not n then break end
        sent = sent + #chunk
      end
    end
  end
  if mode == "huge" and (path == "/api/v5/huge" or path == "/api/v5/huge-unsized") then
    local body = '{"items":"' .. string.rep("x", 33 * 1024 * 1024) .. '"}'
    if path == "/api/v5/huge" then return answer("200 OK", body) end
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" .. body
  end
  if mode == "canned" then
    if path == "/api/v5/not-json" then return answer("200 OK", "this is not json") end
    if path == "/api/v5/html-error" then
      return answer("502 Bad Gateway", "<html><body><h1>502 Bad Gateway</h1></body></html>", nil,
                    nil, "text/html")
    end
    if path == "/api/v5/empty" then return answer("200 OK", "") end
    if path == "/api/v5/big" then return answer("200 OK", '{"items":"' .. string.rep("x", 200000) .. '"}') end
    if path == "/api/v5/truncated" then
      return 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"items":[{"id":1},'
    end
    return answer("404 Not Found", '{"error":"not_found"}')
  end
  if method == "POST" and path == "/api/v5/recognitions" then
    return answer("201 Created", '{"id":' .. n .. "}")
  end
  return answer("200 OK", page)
end

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(1)
local deadline = os.time() + 600
while os.time() < deadline do
  local c = server:accept()
  if c then
    c:settimeout(5)
    local line = c:receive("*l")
    local method, path = (line or ""):match("^(%u+) ([^ ?]+)")
    local len = 0
    repeat
      local h = c:receive("*l")
      local n = h and h:lower():match("^content%-length:%s*(%d+)")
      if n then len = tonumber(n) end
      if h and h:lower():match("^x%-injected:") then injected = injected + 1 end
    until not h or h == ""
    if len > 0 then c:receive(len) end
    local out = method and route(method, path)
    if type(out) == "function" then out(c) elseif out then c:send(out) end
    c:shutdown("send")
    c:close()
  end
end
