-- spec/sandbox_http.lua: a small HTTP/1.1 client over LuaSocket for the sandbox specs (the
-- project's own client is tested against the sandbox elsewhere; these specs talk raw HTTP so
-- that they see exactly what the emulator sends). Keep-alive connections, any method, binary
-- bodies, chunked answers; JSON answers are decoded with lua-cjson.

local socket = require("socket")
local cjson = require("cjson")

local M = {cjson = cjson}

local TIMEOUT = 15

local function parse_url(url)
  local scheme, host, port, rest = url:match("^(https?)://([^:/]+):?(%d*)(.*)$")
  assert(scheme == "http", "sandbox_http speaks plain http only: " .. tostring(url))
  return host, tonumber(port) or 80, rest ~= "" and rest or "/"
end

function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Form encoding: lists become repeated keys; keys sorted so requests are reproducible.
function M.form(t)
  local keys, out = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do out[#out + 1] = M.urlencode(k) .. "=" .. M.urlencode(item) end
    else
      out[#out + 1] = M.urlencode(k) .. "=" .. M.urlencode(tostring(v))
    end
  end
  return table.concat(out, "&")
end

local Conn = {}
Conn.__index = Conn

-- A keep-alive connection to `base` ("http://127.0.0.1:PORT").
function M.connect(base)
  local host, port = parse_url(base)
  local sock = socket.tcp()
  sock:settimeout(TIMEOUT)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({sock = sock, host = host .. ":" .. port}, Conn)
end

function Conn:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
end

local function read_body(sock, headers, method, status)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return ""
  end
  local te = headers["transfer-encoding"]
  if te and te:lower():find("chunked") then
    local parts = {}
    while true do
      local line, err = sock:receive("*l")
      if not line then return nil, err end
      local size = tonumber(line:match("^%x+"), 16)
      if not size then return nil, "bad chunk size" end
      if size == 0 then
        repeat line = sock:receive("*l") until line == nil or line == ""
        return table.concat(parts)
      end
      local data, derr = sock:receive(size)
      if not data then return nil, derr end
      parts[#parts + 1] = data
      sock:receive("*l")
    end
  end
  local len = tonumber(headers["content-length"])
  if len then
    if len == 0 then return "" end
    return sock:receive(len)
  end
  return sock:receive("*a")
end

-- Sends one request and reads the answer: {status, reason, headers (lower-case names), body,
-- json (when the body is JSON)}, or nil, error when the connection fails or is closed.
-- opts: headers, body, form (table), json (table), token (bearer), close (boolean).
function Conn:request(method, path, opts)
  opts = opts or {}
  local headers = {["Host"] = self.host}
  local body = opts.body
  if opts.form then
    body = M.form(opts.form)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  elseif opts.json then
    body = cjson.encode(opts.json)
    headers["Content-Type"] = "application/json"
  end
  if opts.token then headers["Authorization"] = "Bearer " .. opts.token end
  if opts.close then headers["Connection"] = "close" end
  for k, v in pairs(opts.headers or {}) do
    for existing in pairs(headers) do
      if existing:lower() == k:lower() then headers[existing] = nil end
    end
    headers[k] = v
  end
  if body and not headers["Content-Length"] then headers["Content-Length"] = tostring(#body) end
  local lines = {method .. " " .. path .. " HTTP/1.1"}
  for k, v in pairs(headers) do
    if v ~= false then lines[#lines + 1] = k .. ": " .. v end
  end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
  local sock = self.sock
  if not sock then return nil, "closed" end
  local ok, err = sock:send(req)
  if not ok then return nil, err end
  local statusline, serr = sock:receive("*l")
  if not statusline then return nil, serr end
  local status, reason = statusline:match("^HTTP/1%.%d (%d%d%d) ?(.*)$")
  if not status then return nil, "bad status line: " .. statusline end
  local res = {status = tonumber(status), reason = reason, headers = {}}
  while true do
    local line, herr = sock:receive("*l")
    if not line then return nil, herr end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then res.headers[name:lower()] = value end
  end
  local b, berr = read_body(sock, res.headers, method, res.status)
  if not b then return nil, berr end
  res.body = b
  local ct = res.headers["content-type"] or ""
  if ct:find("application/json", 1, true) and b ~= "" then
    local okj, decoded = pcall(cjson.decode, b)
    if okj then res.json = decoded end
  end
  if (res.headers["connection"] or ""):lower() == "close" then self:close() end
  return res
end

-- One request on a fresh connection. `target` is a sandbox object or a base URL.
function M.request(target, method, path, opts)
  local base = type(target) == "string" and target or target.url
  local conn, err = M.connect(base)
  if not conn then return nil, err end
  opts = opts or {}
  opts.close = true
  local res, rerr = conn:request(method, path, opts)
  conn:close()
  return res, rerr
end

-- Prefix for external tools (curl, chromium, openssl) run from specs: under `make test SAN=1`
-- LD_PRELOAD carries the sanitizer runtimes, which those programs must not load.
-- An integral number as digits, on every Lua (math.tointeger is 5.3+).
function M.int(n)
  return string.format("%d", n)
end

M.TOOL = "env -u LD_PRELOAD "

M.TOKEN_PATH = "/oauth/v2/openIDConnectClient/token"
M.AUTHORIZE_PATH = "/oauth/v2/openIDConnectClient/authorize"

-- The token answer for a grant (JSON body with the credentials), as a response.
function M.token_request(sb, fields)
  local body = {client_id = sb.client_id, client_secret = sb.client_secret}
  for k, v in pairs(fields) do body[k] = v end
  return M.request(sb, "POST", M.TOKEN_PATH, {json = body})
end

-- A system token (client_credentials) string.
function M.system_token(sb, scope)
  local res = assert(M.token_request(sb, {grant_type = "client_credentials", scope = scope or "read"}))
  assert(res.status == 200, "token request failed: " .. tostring(res.body))
  return res.json.access_token
end

-- A user token string for `user` (authorization_code via sb:consent).
function M.user_token(sb, user, scope)
  local code = sb:consent{user = user or "adele.olson", scope = scope or "read,write"}
  local res = assert(M.token_request(sb, {grant_type = "authorization_code", code = code}))
  assert(res.status == 200, "code exchange failed: " .. tostring(res.body))
  return res.json.access_token
end

-- GET/POST/... on /api/v5 with a bearer token.
function M.api(sb, method, path, token, opts)
  opts = opts or {}
  opts.token = token
  return M.request(sb, method, "/api/v5" .. path, opts)
end

-- A free TCP port on 127.0.0.1 (for the program spec).
function M.free_port()
  local s = socket.bind("127.0.0.1", 0)
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.sleep(seconds)
  socket.sleep(seconds)
end

M.gettime = socket.gettime

-- ---- the achievers-sandbox program, run in the background -------------------------------------

M.BIN = os.getenv("ACHIEVERS_SANDBOX_BIN") or "build/5.4/achievers-sandbox"

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Starts the program with `args` (a string of flags; `env` a prefix such as "X=1 ") and waits
-- until it printed its credentials. Returns {pid, url, client_id, client_secret, out(), rc(),
-- finish(signal) -> rc, stderr}; finish ends it by its pid and waits for its exit status.
function M.launch(args, env)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  os.execute("(" .. (env or "") .. M.BIN .. " " .. args .. " >" .. dir .. "/out 2>" .. dir ..
    "/err & echo $! >" .. dir .. "/pid; wait $!; echo $? >" .. dir .. "/rc) >/dev/null 2>&1 &")
  local prog = {dir = dir}
  function prog.out() return slurp(dir .. "/out") or "" end
  function prog.rc() return tonumber(slurp(dir .. "/rc") or "") end
  for _ = 1, 200 do
    prog.pid = prog.pid or tonumber(slurp(dir .. "/pid") or "")
    if prog.out():find("client_secret: %S+\n") or prog.rc() then break end
    M.sleep(0.05)
  end
  prog.url = prog.out():match("url: (%S+)")
  prog.port = tonumber((prog.url or ""):match(":(%d+)$"))
  prog.client_id = prog.out():match("client_id: (%S+)")
  prog.client_secret = prog.out():match("client_secret: (%S+)")
  function prog.finish(signal)
    if prog.pid and not prog.rc() then os.execute("kill -" .. (signal or "TERM") .. " " .. prog.pid) end
    local rc
    for _ = 1, 200 do
      rc = prog.rc()
      if rc then break end
      M.sleep(0.05)
    end
    if not rc and prog.pid then os.execute("kill -KILL " .. prog.pid .. " 2>/dev/null") end
    local err = slurp(dir .. "/err")
    os.execute("rm -rf " .. dir)
    return rc, err
  end
  return prog
end

-- The resident set size of process `pid` in KiB (Linux /proc), or nil.
function M.rss_kib(pid)
  local status = slurp("/proc/" .. pid .. "/status") or ""
  return tonumber(status:match("VmRSS:%s*(%d+)"))
end

-- The query of a URL (a redirect's Location) as a table, '+' and %XX decoded.
local function unescape(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end))
end

function M.query_of(url)
  local out = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do out[unescape(k)] = unescape(v) end
  return out
end

-- The hidden fields of an HTML form (the consent page's), entities decoded.
function M.hidden_fields(html)
  local form = {}
  for name, value in html:gmatch('<input type="hidden" name="([^"]+)" value="([^"]*)">') do
    form[name] = value:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&#39;", "'"):gsub("&amp;", "&")
  end
  return form
end

return M
