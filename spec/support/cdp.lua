-- Headless Chromium for specs, driven over the DevTools protocol (a WebSocket over LuaSocket,
-- framing in plain arithmetic so it runs on every Lua the suite supports). One browser process;
-- each `browser:new_page()` is a tab in a browser context of its own (its own cookies), so one
-- process holds several people at once.
--
--   local cdp = require("support.cdp")
--   local browser = cdp.start()                 -- stop it in teardown: browser:stop()
--   local page = browser:new_page()
--   page:navigate(url); page:wait_for("document.readyState === 'complete'")
--   page:eval("document.title"); page:click("approve")   -- by element id
local socket = require("socket")
local cjson = require("cjson")
local http = require("sandbox_http")

local M = {}

-- os.execute's success on every Lua (5.1 gives a number, later ones true/nil).
local function sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function ws_connect(url)
  local host, port, path = url:match("^ws://([^:/]+):(%d+)(/.*)$")
  local sock = socket.tcp()
  sock:settimeout(20)
  assert(sock:connect(host, tonumber(port)))
  sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2FuZGJveHNwZWNrZXkxMg==\r\n" ..
    "Sec-WebSocket-Version: 13\r\n\r\n")
  local status = assert(sock:receive("*l"))
  assert(status:find(" 101 "), "websocket handshake failed: " .. status)
  repeat local line = assert(sock:receive("*l")) until line == ""
  return sock
end

local function be_bytes(n, width)
  local out = {}
  for i = width, 1, -1 do
    out[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(out)
end

local function be_number(s)
  local n = 0
  for i = 1, #s do n = n * 256 + s:byte(i) end
  return n
end

local function xor8(a, b)
  local r, bit = 0, 1
  for _ = 1, 8 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + bit end
    a, b, bit = (a - x) / 2, (b - y) / 2, bit * 2
  end
  return r
end

local function ws_send(sock, text)
  local len, header = #text
  if len < 126 then
    header = string.char(0x81, 0x80 + len)
  elseif len < 65536 then
    header = string.char(0x81, 0x80 + 126) .. be_bytes(len, 2)
  else
    header = string.char(0x81, 0x80 + 127) .. be_bytes(len, 8)
  end
  local mask = { math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255) }
  local out = {}
  for i = 1, len do out[i] = string.char(xor8(text:byte(i), mask[(i - 1) % 4 + 1])) end
  assert(sock:send(header .. string.char(mask[1], mask[2], mask[3], mask[4]) .. table.concat(out)))
end

local function ws_receive(sock)
  local message = {}
  while true do
    local h = assert(sock:receive(2))
    local b1, b2 = h:byte(1, 2)
    local len = b2 % 128
    if len == 126 then
      len = be_number(assert(sock:receive(2)))
    elseif len == 127 then
      len = be_number(assert(sock:receive(8)))
    end
    local payload = len > 0 and assert(sock:receive(len)) or ""
    local opcode = b1 % 16
    if opcode == 8 then error("websocket closed by the browser") end
    if opcode == 0 or opcode == 1 or opcode == 2 then
      message[#message + 1] = payload
      if b1 >= 128 then return table.concat(message) end
    end
  end
end

-- ---- a DevTools connection (the browser's, or a page's) ----------------------------------------

local Conn = {}
Conn.__index = Conn

function Conn:call(method, params)
  self.id = self.id + 1
  ws_send(self.sock, cjson.encode { id = self.id, method = method, params = params or {} })
  while true do
    local msg = cjson.decode(ws_receive(self.sock))
    if msg.id == self.id then
      assert(not msg.error, method .. ": " .. cjson.encode(msg.error or {}))
      return msg.result
    end
  end
end

function Conn:eval(expr)
  local r = self:call("Runtime.evaluate", { expression = expr, returnByValue = true })
  if r.exceptionDetails then error("eval: " .. cjson.encode(r.exceptionDetails)) end
  return r.result.value
end

-- Polls `expr` until it is truthy (at most `seconds`); a page between documents is retried.
function Conn:wait_for(expr, seconds)
  local deadline = socket.gettime() + (seconds or 20)
  local last
  while socket.gettime() < deadline do
    local ok, v = pcall(self.eval, self, expr)
    if ok and v then return v end
    last = ok and v or last
    socket.sleep(0.05)
  end
  error("timed out waiting for " .. expr .. " (at " .. tostring(select(2, pcall(self.eval, self, "location.href"))) .. ")")
end

function Conn:navigate(url)
  return self:call("Page.navigate", { url = url })
end

-- Clicks the element with id `id` (a button submits its form, with its name and value).
function Conn:click(id)
  self:wait_for("!!document.getElementById('" .. id .. "')")
  self:eval("document.getElementById('" .. id .. "').click(); true")
end

-- Sets the value of the field with id `id`, as typing would.
function Conn:fill(id, value)
  self:wait_for("!!document.getElementById('" .. id .. "')")
  self:eval("(function(){var e=document.getElementById('" .. id .. "');e.value=" .. cjson.encode(value) ..
    ";e.dispatchEvent(new Event('input'));return true})()")
end

-- The cookies of this page's browser context (each page has a context of its own).
function Conn:cookies()
  return self.browser.conn:call("Storage.getCookies", { browserContextId = self.context }).cookies
end

function Conn:close()
  if self.sock then self.sock:close() self.sock = nil end
end

-- ---- the browser ---------------------------------------------------------------------------------

local Browser = {}
Browser.__index = Browser

--- start(): a headless Chromium with its DevTools server on a free port, in a private profile.
function M.start()
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. dir))
  local cmd = http.TOOL .. "setsid /usr/bin/chromium --headless --no-sandbox --disable-gpu " ..
    "--disable-background-networking --disable-component-update --disable-sync --no-first-run " ..
    "--disable-features=Translate,MediaRouter --remote-debugging-port=0 " ..
    "--user-data-dir=" .. dir .. " about:blank >" .. dir .. "/log 2>&1 & echo $!"
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("*l"))
  p:close()
  local self = setmetatable({ pid = pid, dir = dir, pages = {} }, Browser)
  local deadline = socket.gettime() + 30
  while socket.gettime() < deadline do
    local f = io.open(dir .. "/DevToolsActivePort")
    if f then
      self.port = tonumber(f:read("*l"))
      f:close()
      if self.port then break end
    end
    socket.sleep(0.1)
  end
  if not self.port then
    self:stop()
    error("Chromium did not start its DevTools server")
  end
  local res = assert(http.request("http://127.0.0.1:" .. self.port, "GET", "/json/version"))
  self.conn = setmetatable({ sock = ws_connect(cjson.decode(res.body).webSocketDebuggerUrl), id = 0 }, Conn)
  return self
end

--- browser:new_page(): a tab in a new browser context (cookies of its own).
function Browser:new_page()
  local ctx = self.conn:call("Target.createBrowserContext", { disposeOnDetach = false }).browserContextId
  local target = self.conn:call("Target.createTarget", { url = "about:blank", browserContextId = ctx }).targetId
  local page = setmetatable({ id = 0, context = ctx, browser = self,
    sock = ws_connect(("ws://127.0.0.1:%d/devtools/page/%s"):format(self.port, target)) }, Conn)
  page:call("Page.enable")
  self.pages[#self.pages + 1] = page
  return page
end

--- browser:stop(): ends the process group Chromium leads (setsid), removes its profile.
function Browser:stop()
  for _, page in ipairs(self.pages or {}) do pcall(page.close, page) end
  if self.conn then pcall(self.conn.close, self.conn) end
  if self.pid then
    os.execute("kill -TERM -" .. self.pid .. " 2>/dev/null")
    for _ = 1, 50 do
      if not sh("kill -0 " .. self.pid .. " 2>/dev/null") then break end
      socket.sleep(0.1)
    end
    os.execute("kill -KILL -" .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
  if self.dir then os.execute("rm -rf " .. self.dir) self.dir = nil end
end

return M
