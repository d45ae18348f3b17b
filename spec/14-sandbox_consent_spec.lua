-- The sandbox's authorization endpoint: the consent page over plain HTTP (form fields, escaping,
-- 400 pages, approve and deny redirects), and the same page driven in headless Chromium through
-- the DevTools protocol, clicking Approve and Deny like a person would.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")
local socket = require("socket")

local query_of = http.query_of

local function authorize_query(sb, t)
  local q = {response_type = "code", client_id = sb.client_id, scope = "read,write", state = "st-123"}
  for k, v in pairs(t or {}) do q[k] = v or nil end
  return http.AUTHORIZE_PATH .. "?" .. http.form(q)
end

-- The hidden and text inputs of the page's form.
local function form_fields(html)
  local fields = {}
  for tag in html:gmatch("<input[^>]*>") do
    local name = tag:match('name="([^"]*)"')
    local value = tag:match('value="([^"]*)"')
    if name then
      fields[name] = (value or ""):gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">")
        :gsub("&#39;", "'"):gsub("&amp;", "&")
    end
  end
  return fields
end

-- Which user a token acts for: send a recognition with it and read the nominator.
local function token_user(sb, token)
  local res = assert(http.api(sb, "POST", "/recognitions", token, {form = {
    nominees = "olivia.varga", recognitionText = "who am I", criterionId = 412}}))
  assert.equal(201, res.status, res.body)
  return res.json.nominator.username
end

describe("sandbox consent page over HTTP", function()
  local sb

  before_each(function()
    -- loopback redirects on: the specs below redirect to loopback URIs of their own
    sb = assert(sandbox.start{port = 0, loopback_redirects = true})
  end)

  after_each(function()
    sb:stop()
  end)

  it("shows the application, the scopes, a username prefilled and Approve/Deny", function()
    local res = assert(http.request(sb, "GET", authorize_query(sb)))
    assert.equal(200, res.status)
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    local html = res.body
    assert.matches("Sandbox Integration", html, 1, true)
    assert.matches('id="scope-read"', html, 1, true)
    assert.matches('id="scope-write"', html, 1, true)
    assert.matches('<form method="post" action="' .. http.AUTHORIZE_PATH .. '">', html, 1, true)
    assert.matches('value="approve">Approve</button>', html, 1, true)
    assert.matches('value="deny">Deny</button>', html, 1, true)
    local f = form_fields(html)
    assert.equal("adele.olson", f.username)
    assert.equal(sb.client_id, f.client_id)
    assert.equal("st-123", f.state)
    assert.equal("read,write", f.scope)
    assert.equal(sb.redirect_uri, f.redirect_uri)
    assert.equal("http://127.0.0.1:8910/callback", sb.redirect_uri)
    assert.equal(1, sb:stats().by_route["GET /authorize"])
  end)

  it("escapes what it echoes", function()
    local res = assert(http.request(sb, "GET", authorize_query(sb, {state = '"><script>alert(1)</script>'})))
    assert.equal(200, res.status)
    assert.not_matches("<script>", res.body, 1, true)
    assert.matches("&quot;&gt;&lt;script&gt;", res.body, 1, true)
    assert.equal('"><script>alert(1)</script>', form_fields(res.body).state)
  end)

  it("answers a 400 page, never a redirect, for an unknown client or redirect URI", function()
    -- (a bad response_type or scope with a good client and URI is an error redirect: spec 18)
    for _, q in ipairs{
      {client_id = "sbx_unknown"},
      {client_id = false},
      {redirect_uri = "https://evil.example.com/cb"},
      {redirect_uri = "https://evil.example.com/cb", scope = "admin"},
      {client_id = "sbx_unknown", response_type = "token"},
    } do
      local res = assert(http.request(sb, "GET", authorize_query(sb, q)))
      assert.equal(400, res.status)
      assert.is_nil(res.headers["location"])
      assert.matches("text/html", res.headers["content-type"])
    end
  end)

  it("redirects with code and state on Approve; the code gives that user's token", function()
    local f = form_fields(assert(http.request(sb, "GET", authorize_query(sb, {
      redirect_uri = "http://localhost:9999/cb?app=1"}))).body)
    f.username = "brady.garfinkel"
    f.decision = "approve"
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.equal(302, res.status)
    local loc = res.headers["location"]
    assert.matches("^http://localhost:9999/cb%?app=1&code=%x+&state=st%-123$", loc)
    local q = query_of(loc)
    local tok = assert(http.token_request(sb, {grant_type = "authorization_code", code = q.code}))
    assert.equal(200, tok.status)
    assert.equal("read,write", tok.json.scope)
    assert.equal("brady.garfinkel", token_user(sb, tok.json.access_token))
  end)

  it("redirects with error=access_denied and state on Deny", function()
    local f = form_fields(assert(http.request(sb, "GET", authorize_query(sb, {state = "a b&c"}))).body)
    f.decision = "deny"
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.equal(302, res.status)
    assert.equal(sb.redirect_uri .. "?error=access_denied&state=a%20b%26c", res.headers["location"])
  end)

  it("shows the page again for an unknown user, and rejects forged forms", function()
    local f = form_fields(assert(http.request(sb, "GET", authorize_query(sb))).body)
    f.username = "<b>nobody</b>"
    f.decision = "approve"
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.equal(400, res.status)
    assert.matches('id="problem"', res.body, 1, true)
    assert.not_matches("<b>nobody", res.body, 1, true)
    f.username = "adele.olson"
    f.redirect_uri = "https://evil.example.com/"
    res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.equal(400, res.status)
    assert.is_nil(res.headers["location"])
    res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {body = "{}",
      headers = {["Content-Type"] = "application/json"}}))
    assert.equal(400, res.status)
  end)
end)

-- ---- a minimal DevTools protocol client: WebSocket over LuaSocket ------------------------------

local function ws_connect(url)
  local host, port, path = url:match("^ws://([^:/]+):(%d+)(/.*)$")
  local sock = socket.tcp()
  sock:settimeout(10)
  assert(sock:connect(host, tonumber(port)))
  sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2FuZGJveHNwZWNrZXkxMg==\r\n" ..
    "Sec-WebSocket-Version: 13\r\n\r\n")
  local status = assert(sock:receive("*l"))
  assert(status:find(" 101 "), "websocket handshake failed: " .. status)
  repeat local line = assert(sock:receive("*l")) until line == ""
  return sock
end

-- WebSocket framing in plain arithmetic, so the spec runs on every Lua the suite supports.
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
  local mask = {math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255)}
  local out = {}
  for i = 1, len do
    out[i] = string.char(xor8(text:byte(i), mask[(i - 1) % 4 + 1]))
  end
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

local Cdp = {}
Cdp.__index = Cdp

function Cdp:call(method, params)
  self.id = self.id + 1
  ws_send(self.sock, http.cjson.encode({id = self.id, method = method, params = params or {}}))
  while true do
    local msg = http.cjson.decode(ws_receive(self.sock))
    if msg.id == self.id then
      assert(not msg.error, method .. ": " .. http.cjson.encode(msg.error or {}))
      return msg.result
    end
  end
end

function Cdp:eval(expr)
  local r = self:call("Runtime.evaluate", {expression = expr, returnByValue = true})
  return r.result.value
end

-- Polls `expr` until it is truthy (at most `seconds`).
function Cdp:wait_for(expr, seconds)
  local deadline = socket.gettime() + (seconds or 15)
  while socket.gettime() < deadline do
    local v = self:eval(expr)
    if v then return v end
    socket.sleep(0.05)
  end
  error("timed out waiting for " .. expr)
end

-- A real mouse click in the middle of the element with id `id`.
function Cdp:click(id)
  local rect = self:wait_for("(function(){var e=document.getElementById('" .. id .. "');" ..
    "if(!e)return null;var r=e.getBoundingClientRect();return {x:r.x+r.width/2,y:r.y+r.height/2};})()")
  for _, kind in ipairs{"mousePressed", "mouseReleased"} do
    self:call("Input.dispatchMouseEvent", {type = kind, x = rect.x, y = rect.y, button = "left", clickCount = 1})
  end
end

local function start_chromium()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local cmd = http.TOOL .. "setsid /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking " ..
    "--disable-component-update --disable-sync --no-first-run --remote-debugging-port=0 " ..
    "--user-data-dir=" .. dir .. " about:blank >" .. dir .. "/log 2>&1 & echo $!"
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("*l"))
  p:close()
  local browser = {pid = pid, dir = dir}
  local deadline = socket.gettime() + 30
  while socket.gettime() < deadline do
    local f = io.open(dir .. "/DevToolsActivePort")
    if f then
      browser.port = tonumber(f:read("*l"))
      f:close()
      if browser.port then break end
    end
    socket.sleep(0.1)
  end
  return browser
end

local function stop_chromium(browser)
  if browser.pid then
    -- setsid made the browser a process group leader: end the group it leads, by its id
    os.execute("kill -TERM -" .. browser.pid .. " 2>/dev/null")
    for _ = 1, 50 do
      if not os.execute("kill -0 " .. browser.pid .. " 2>/dev/null") then break end
      socket.sleep(0.1)
    end
    os.execute("kill -KILL -" .. browser.pid .. " 2>/dev/null")
  end
  if browser.dir then os.execute("rm -rf " .. browser.dir) end
end

local function open_page(browser)
  local res = assert(http.request("http://127.0.0.1:" .. browser.port, "GET", "/json/list"))
  for _, t in ipairs(http.cjson.decode(res.body)) do
    if t.type == "page" then
      return setmetatable({sock = ws_connect(t.webSocketDebuggerUrl), id = 0}, Cdp)
    end
  end
  error("no page target")
end

describe("sandbox consent page in headless Chromium", function()
  local sb, browser, page

  setup(function()
    sb = assert(sandbox.start{port = 0, loopback_redirects = true})
    browser = start_chromium()
    assert(browser.port, "Chromium did not start its DevTools server")
    page = open_page(browser)
    page:call("Page.enable")
  end)

  teardown(function()
    if page then page.sock:close() end
    if browser then stop_chromium(browser) end
    sb:stop()
  end)

  local function visit(state, redirect)
    page:call("Page.navigate", {url = sb.url .. authorize_query(sb, {state = state, redirect_uri = redirect})})
    page:wait_for("document.readyState === 'complete' && !!document.getElementById('approve')")
  end

  it("approves: lands on the redirect URI with a code for the user typed in", function()
    local redirect = sb.url .. "/callback"   -- the sandbox answers 404 there: we only read the URL
    visit("chrome-approve", redirect)
    assert.equal("adele.olson", page:eval("document.getElementById('username').value"))
    assert.matches("Sandbox Integration", page:eval("document.body.innerText"), 1, true)
    -- pick another user the way a person would: select the field, type
    page:click("username")
    page:eval("document.getElementById('username').select()")
    page:call("Input.insertText", {text = "brady.garfinkel"})
    page:click("approve")
    local landed = page:wait_for("location.href.indexOf('/callback?') > 0 && location.href")
    local q = query_of(landed)
    assert.equal("chrome-approve", q.state)
    assert.matches("^%x+$", q.code)
    assert.equal(redirect, landed:match("^[^?]*"))
    local tok = assert(http.token_request(sb, {grant_type = "authorization_code", code = q.code}))
    assert.equal(200, tok.status)
    assert.equal("brady.garfinkel", token_user(sb, tok.json.access_token))
  end)

  it("denies: lands on the redirect URI with error=access_denied and the state", function()
    visit("chrome-deny", sb.url .. "/callback")
    page:click("deny")
    local landed = page:wait_for("location.href.indexOf('/callback?') > 0 && location.href")
    local q = query_of(landed)
    assert.equal("access_denied", q.error)
    assert.equal("chrome-deny", q.state)
    assert.is_nil(q.code)
    local st = sb:stats()
    assert.equal(2, st.by_route["POST /authorize"])
  end)
end)
