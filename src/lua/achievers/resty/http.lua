--- achievers.resty.http: one HTTP/1.1 request and its answer over an nginx cosocket, for
-- achievers.resty (which the C engine tells what to send).
--
-- What a server sends is never trusted to end: the answer is read in bounded pieces, its
-- headers are capped (count and size), its body is capped at max_response_size whether it has
-- a length, is chunked or ends with the connection, and a body over the cap is dropped
-- unread and reported as the libcurl driver reports it (kind "decode", "the answer is larger
-- than max_response_size (N bytes)"). The request's timeout bounds the whole attempt, as
-- libcurl's does: connect, proxy tunnel, TLS handshake, sending, headers and body share one
-- deadline, and every socket operation waits at most the time left (nginx's own timeouts are
-- per operation, so a server sending a byte every half second would otherwise never time out).
--
-- Connections are pooled by everything that makes them different (scheme, host, port, proxy,
-- TLS verification, server name), so a connection opened without verification is never
-- handed to a client that verifies.
local ngx = ngx

local M = {}

M.MAX_HEADER_BYTES = 64 * 1024 -- the status line and headers of one answer, together
M.MAX_HEADERS = 100            -- header lines in one answer
local MAX_LINE = 4096          -- a chunk-size line
local PIECE = 65536            -- bytes asked of the socket at once
local KEEPALIVE_MS = 60000
local POOL_SIZE = 64

--- M.parse_url(url) -> scheme, host, port, path (host without IPv6 brackets), or nil
function M.parse_url(url)
  local scheme, rest = url:match("^(https?)://(.*)$")
  if not scheme then return nil end
  local host, port, path = rest:match("^%[([%x:.]+)%]:?(%d*)(.*)$")
  if not host then host, port, path = rest:match("^([^/:?#%[%]@]+):?(%d*)(.*)$") end
  if not host then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if path == "" then path = "/" end
  return scheme, host, port, path
end

local function hostport(host, port)
  if host:find(":", 1, true) then return "[" .. host .. "]:" .. port end
  return host .. ":" .. port
end

-- localhost, ::1 or 127.x.y.z without leading zeros (the C client's rule).
function M.is_loopback(host)
  if host:lower() == "localhost" or host == "::1" then return true end
  local a, b, c = host:match("^127%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs { a, b, c } do
    if #x > 3 or tonumber(x) > 255 or (#x > 1 and x:sub(1, 1) == "0") then return false end
  end
  return true
end

--- M.parse_proxy(url) -> {host =, port =} or nil, why. Only http:// proxies: a TLS hop to the
-- proxy itself cannot be made with cosockets (no TLS inside TLS), and credentials in the URL
-- would cross that plaintext hop.
function M.parse_proxy(url)
  if type(url) ~= "string" then return nil, "must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    scheme, rest = "http", url -- curl's reading of "host:port"
  end
  if scheme:lower() ~= "http" then return nil, "must be an http:// proxy (achievers.resty speaks plain HTTP to it)" end
  if rest:find("@", 1, true) then return nil, "must not carry credentials" end
  local _, host, port, path = M.parse_url("http://" .. rest)
  if not host or (path ~= "/" and path ~= "") then return nil, "must be http://host:port" end
  return { host = host, port = port, loopback = M.is_loopback(host) }
end

local function kind_of(err)
  return err == "timeout" and "timeout" or "network"
end

-- nil, kind, message for a socket error while reading `what`.
local function failed(err, what)
  return nil, kind_of(err), what .. ": " .. tostring(err)
end

-- A buffered reader over a cosocket whose every read keeps to one deadline. The unread bytes
-- are buf from pos on (no copy of the rest per line taken).
local Reader = {}
Reader.__index = Reader

local function reader(sock, deadline)
  return setmetatable({ sock = sock, buf = "", pos = 1, deadline = deadline, got = 0 }, Reader)
end

-- Sets the socket's timeouts to the time left; false when none is left.
local function time_left(sock, deadline)
  ngx.update_time()
  local ms = math.floor((deadline - ngx.now()) * 1000)
  if ms <= 0 then return false end
  sock:settimeouts(ms, ms, ms)
  return true
end

-- Bytes buffered and not read yet.
function Reader:buffered()
  return #self.buf - self.pos + 1
end

-- One more piece (at most max bytes) from the socket into the buffer: true, or nil and
-- "timeout", "closed", ...
function Reader:fill(max)
  if not time_left(self.sock, self.deadline) then return nil, "timeout" end
  local data, err = self.sock:receiveany(max)
  if not data then return nil, err end
  self.got = self.got + #data
  if self.pos > #self.buf then
    self.buf = data
  else
    self.buf = self.buf:sub(self.pos) .. data
  end
  self.pos = 1
  return true
end

-- A line (without CR LF) no longer than max: the line, or nil and "too long", "timeout", ...
function Reader:line(max)
  local from = self.pos
  while true do
    local nl = self.buf:find("\n", from, true)
    if nl then
      local line = self.buf:sub(self.pos, nl - 1)
      self.pos = nl + 1
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      if #line > max then return nil, "too long" end
      return line
    end
    local have = self:buffered()
    if have > max + 1 then return nil, "too long" end
    local ok, err = self:fill(max + 2 - have)
    if not ok then return nil, err end
    from = have + 1 -- fill moved the unread bytes to the front
  end
end

-- Exactly n bytes into the list `parts`: true, or nil and an error.
function Reader:take(n, parts)
  while n > 0 do
    if self:buffered() == 0 then
      local ok, err = self:fill(math.min(n, PIECE))
      if not ok then return nil, err end
    end
    local last = math.min(#self.buf, self.pos + n - 1)
    parts[#parts + 1] = (self.pos == 1 and last == #self.buf) and self.buf or self.buf:sub(self.pos, last)
    n = n - (last - self.pos + 1)
    self.pos = last + 1
  end
  return true
end

-- Everything up to the close, at most `limit` bytes: true, or nil and "too large" or an error.
function Reader:rest(limit, parts)
  local total = 0
  while true do
    local have = self:buffered()
    if have > 0 then
      total = total + have
      if total > limit then return nil, "too large" end
      parts[#parts + 1] = self.buf:sub(self.pos)
      self.buf, self.pos = "", 1
    end
    local ok, err = self:fill(PIECE)
    if not ok then
      if err == "closed" then return true end
      return nil, err
    end
  end
end

-- The status line and headers: status, raw header block, {lowercased name = value}, version;
-- or nil, kind, message.
local function read_head(r)
  local line, err
  local status, version
  for _ = 1, 10 do
    line, err = r:line(M.MAX_HEADER_BYTES)
    if not line then
      if err == "too long" then
        return nil, "decode", "the answer's status line is longer than " .. M.MAX_HEADER_BYTES .. " bytes"
      end
      return failed(err, "no answer")
    end
    version, status = line:match("^HTTP/(%d%.%d) (%d%d%d)")
    if not status then return nil, "network", "not an HTTP answer" end
    status = tonumber(status)
    local raw, headers, size, count = {}, {}, #line, 0
    while true do
      line, err = r:line(M.MAX_HEADER_BYTES - size)
      if not line then
        if err == "too long" then
          return nil, "decode", "the answer's headers are larger than " .. M.MAX_HEADER_BYTES .. " bytes"
        end
        return failed(err, "headers")
      end
      if line == "" then break end
      size, count = size + #line + 2, count + 1
      if size > M.MAX_HEADER_BYTES then
        return nil, "decode", "the answer's headers are larger than " .. M.MAX_HEADER_BYTES .. " bytes"
      end
      if count > M.MAX_HEADERS then
        return nil, "decode", "the answer has more than " .. M.MAX_HEADERS .. " headers"
      end
      raw[#raw + 1] = line
      local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
      if name then
        name = name:lower()
        if name == "content-length" and headers[name] and headers[name] ~= value then
          return nil, "network", "the answer has two different Content-Length headers"
        end
        headers[name] = value
      end
    end
    if status >= 200 or status == 101 then
      return status, table.concat(raw, "\r\n") .. "\r\n", headers, version
    end
  end -- a 1xx interim answer: the real one follows, after a few at most
  return nil, "network", "more than 10 interim (1xx) answers"
end

local function too_large(limit)
  return "the answer is larger than max_response_size (" .. string.format("%d", limit) .. " bytes)"
end

-- The body: the string, whether the connection may be kept; or nil, kind, message.
local function read_body(r, method, status, headers, limit)
  if method == "HEAD" or status == 204 or status == 304 then return "", true end
  local parts = {}
  local te = headers["transfer-encoding"]
  if te and te:lower():find("chunked", 1, true) then
    local total = 0
    while true do
      local line, err = r:line(MAX_LINE)
      if not line then return failed(err, "body: chunk size") end
      local size = line:match("^(%x+)%s*;?") and tonumber(line:match("^(%x+)"), 16)
      if not size or #line:match("^%x+") > 15 then return nil, "network", "body: a bad chunk size" end
      if size == 0 then
        -- trailers, capped like headers
        local size_left = M.MAX_HEADER_BYTES
        repeat
          line, err = r:line(size_left)
          if not line then
            if err == "too long" then return nil, "decode", "the answer's trailers are too large" end
            return failed(err, "body: trailers")
          end
          size_left = size_left - #line - 2
        until line == ""
        return table.concat(parts), true
      end
      total = total + size
      if total > limit then return nil, "decode", too_large(limit) end
      local ok, err2 = r:take(size, parts)
      if not ok then return failed(err2, "body") end
      line, err = r:line(2)
      if not line then return failed(err, "body: chunk end") end
      if line ~= "" then return nil, "network", "body: a chunk not ended by CR LF" end
    end
  end
  local len = headers["content-length"]
  if len then
    if not len:match("^%d+$") or #len > 15 then return nil, "network", "body: a bad Content-Length" end
    len = tonumber(len)
    if len > limit then return nil, "decode", too_large(limit) end
    local ok, err = r:take(len, parts)
    if not ok then return failed(err, "body") end
    return table.concat(parts), true
  end
  local ok, err = r:rest(limit, parts)
  if not ok then
    if err == "too large" then return nil, "decode", too_large(limit) end
    return failed(err, "body")
  end
  return table.concat(parts), false -- ended by the close
end

-- The connection pool's name: everything that makes a connection different. (The trusted CAs
-- are nginx's lua_ssl_trusted_certificate, one setting for every socket of the worker; there is
-- no client certificate.)
local function pool_name(c, scheme, host, port)
  return table.concat({ "achievers", scheme, hostport(host, port),
    c.proxy and ("proxy=" .. hostport(c.proxy.host, c.proxy.port)) or "direct",
    scheme == "https" and (c.insecure and "verify=off" or "verify=on") or "plain",
    scheme == "https" and ("sni=" .. host) or "" }, "|")
end

-- Opens (or takes from the pool) a connection to host:port, through the proxy when there is
-- one, with TLS when https. Returns sock, reused; or nil, kind, message, reached.
local function open(c, scheme, host, port, deadline)
  local sock = ngx.socket.tcp()
  ngx.update_time()
  local left = deadline - ngx.now()
  local connect_ms = math.floor(math.min(c.connect_timeout, left) * 1000)
  if connect_ms <= 0 then return nil, "timeout", "no time left to connect", false end
  sock:settimeouts(connect_ms, connect_ms, connect_ms)
  local to_host, to_port = host, port
  if c.proxy then to_host, to_port = c.proxy.host, c.proxy.port end
  local ok, err = sock:connect(to_host, to_port, { pool = pool_name(c, scheme, host, port) })
  if not ok then
    return nil, kind_of(err), "connect to " .. hostport(to_host, to_port) .. ": " .. tostring(err), false
  end
  local reused = sock:getreusedtimes() > 0
  if reused then return sock, true end
  if c.proxy and scheme == "https" then
    -- a tunnel through the proxy: nothing but the target's name crosses the plaintext hop
    if not time_left(sock, deadline) then sock:close() return nil, "timeout", "proxy CONNECT: timeout", false end
    local target = hostport(host, port)
    local sent, serr = sock:send("CONNECT " .. target .. " HTTP/1.1\r\nHost: " .. target .. "\r\n\r\n")
    if not sent then sock:close() return nil, kind_of(serr), "proxy CONNECT: " .. tostring(serr), false end
    local r = reader(sock, deadline)
    local status, kind, msg = read_head(r)
    if not status then sock:close() return nil, kind, "proxy CONNECT: " .. tostring(msg), false end
    if status ~= 200 or r:buffered() > 0 then
      sock:close()
      return nil, "network", "the proxy refused the tunnel to " .. target .. " (HTTP " .. status .. ")", false
    end
  end
  if scheme == "https" then
    ngx.update_time()
    local ms = math.floor((deadline - ngx.now()) * 1000)
    if ms <= 0 then sock:close() return nil, "timeout", "TLS handshake: timeout", false end
    sock:settimeouts(ms, ms, ms)
    -- lua-resty-core up to 0.1.31 raises ("assertion failed!") instead of answering nil, err
    -- when a handshake ends at once and verification then fails (openresty/lua-resty-core
    -- #499): that is a failed verification too. (Never pass false as the session: that
    -- path skips the verification result.)
    local ran, session, herr = pcall(sock.sslhandshake, sock, nil, host, not c.insecure)
    if not ran then session, herr = nil, "certificate verification failed" end
    if not session then
      sock:close()
      if herr == "timeout" then return nil, "timeout", "TLS handshake with " .. host .. ": timeout", false end
      return nil, "tls", "TLS handshake with " .. host .. ": " .. tostring(herr) ..
        " (nginx verifies with lua_ssl_trusted_certificate: give it the CA that signed the server's " ..
        "certificate, or set insecure = true to turn verification off)", false
    end
  end
  return sock, false
end

-- One attempt on one connection: the answer for ex:_feed, and whether a failure happened on a
-- reused connection before any byte of the answer (a keep-alive the server had closed).
local function attempt(c, req, scheme, host, port, path, deadline)
  local sock, reused_or_kind, msg, reached = open(c, scheme, host, port, deadline)
  if not sock then return { error = reused_or_kind, message = msg, reached = reached } end
  local reused = reused_or_kind
  local target = path
  if c.proxy and scheme == "http" then target = "http://" .. hostport(host, port) .. path end
  local lines = { req.method .. " " .. target .. " HTTP/1.1", "Host: " .. hostport(host, port),
    "User-Agent: " .. c.user_agent, "Connection: keep-alive" }
  for name, value in pairs(req.headers) do
    if tostring(name):find("[%c:]") or tostring(value):find("%c") then
      sock:close()
      return { error = "network", message = "refusing to send a header with control characters", reached = false }
    end
    lines[#lines + 1] = name .. ": " .. value
  end
  if req.body or req.method == "POST" or req.method == "PUT" or req.method == "PATCH" then
    lines[#lines + 1] = "Content-Length: " .. #(req.body or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = req.body or ""
  if not time_left(sock, deadline) then
    sock:close()
    return { error = "timeout", message = "no time left to send", reached = false }
  end
  local sent, serr = sock:send(table.concat(lines, "\r\n"))
  if not sent then
    sock:close()
    return { error = kind_of(serr), message = "send: " .. tostring(serr) }, reused
  end
  local r = reader(sock, deadline)
  local status, raw, headers, version = read_head(r)
  if not status then
    local kind, message = raw, headers
    sock:close()
    return { error = kind, message = message }, reused and r.got == 0 and kind == "network"
  end
  local body, keep, bmsg = read_body(r, req.method, status, headers, c.max_response_size)
  if not body then
    sock:close()
    return { error = keep, message = bmsg }
  end
  local conn = (headers["connection"] or ""):lower()
  if keep and version == "1.1" and not conn:find("close", 1, true) and r:buffered() == 0 then
    sock:setkeepalive(KEEPALIVE_MS, POOL_SIZE)
  else
    sock:close()
  end
  return { status = status, headers = raw, body = body }
end

--- M.request(c, req) -> the answer in the form ex:_feed takes. c: {connect_timeout,
-- max_response_size, insecure, proxy, user_agent}; req: what ex:_next handed out.
function M.request(c, req)
  local scheme, host, port, path = M.parse_url(req.url)
  if not scheme then return { error = "network", message = "bad URL", reached = false } end
  local timeout = req.timeout or 30
  ngx.update_time()
  local deadline = ngx.now() + timeout
  local answer, stale = attempt(c, req, scheme, host, port, path, deadline)
  if stale then -- the pooled connection was closed by the server: once more on a new one
    answer = attempt(c, req, scheme, host, port, path, deadline)
  end
  if answer.error == "timeout" then
    answer.message = ("the call took longer than its timeout (%g s: connect, send and the whole answer; %s)")
      :format(timeout, tostring(answer.message))
  end
  return answer
end

return M
