-- The sandbox as a target: redirect URIs that only look like loopback ones, the consent page in a
-- frame or posted from another site, connections left half-sent, and large bodies kept in memory.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")
local socket = require("socket")

local function authorize_query(sb, t)
  local q = {response_type = "code", client_id = sb.client_id, scope = "read,write", state = "st-9"}
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

-- The approve form a GET of the consent page gives, ready to post.
local function approve_form(sb, t)
  local res = assert(http.request(sb, "GET", authorize_query(sb, t)))
  assert.equal(200, res.status, res.body)
  local f = form_fields(res.body)
  f.decision = "approve"
  return f
end

describe("sandbox redirect URIs", function()
  local sb

  setup(function()
    sb = assert(sandbox.start{port = 0, loopback_redirects = true})
  end)

  teardown(function()
    sb:stop()
  end)

  it("refuses URIs whose host only starts like a loopback one (userinfo, odd hosts)", function()
    for _, uri in ipairs{
      "http://127.0.0.1:80@evil.example/cb",
      "http://localhost:1@evil.example/cb",
      "http://[::1]@evil.example/cb",
      "http://127.0.0.1@evil.example/cb",
      "http://user:pw@127.0.0.1/cb",
      "http://127.0.0.1.evil.example/cb",
      "http://localhost.evil.example:80/cb",
      "http://127.0.0.1:80\\@evil.example/cb",
      "http://127.0.0.1:8x/cb",
      "http://127.0.0.1:99999/cb",
      "http://127.0.0.1/cb#frag",
      "http://127.0.0.1/c b",
      "//127.0.0.1/cb",
      "javascript://127.0.0.1/%0aalert(1)",
      "http:/127.0.0.1/cb",
    } do
      local res = assert(http.request(sb, "GET", authorize_query(sb, {redirect_uri = uri})))
      assert.equal(400, res.status, uri)
      assert.is_nil(res.headers["location"], uri)
      -- and a hand-made approve form for it gets no code either
      local f = approve_form(sb)
      f.redirect_uri = uri
      res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
      assert.equal(400, res.status, uri)
      assert.is_nil(res.headers["location"], uri)
    end
  end)

  it("still accepts real loopback URIs on any port when loopback redirects are on", function()
    for _, uri in ipairs{"http://127.0.0.1:43210/callback", "http://localhost/cb?x=1", "http://[::1]:8080/"} do
      local f = approve_form(sb, {redirect_uri = uri})
      local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
      assert.equal(302, res.status, uri)
      assert.equal(uri, res.headers["location"]:match("^([^?]*)") .. (uri:match("%?.*$") or ""), uri)
    end
  end)
end)

describe("sandbox consent page against framing and cross-site posts", function()
  local sb

  setup(function()
    sb = assert(sandbox.start{port = 0})
  end)

  teardown(function()
    sb:stop()
  end)

  it("forbids framing", function()
    local res = assert(http.request(sb, "GET", authorize_query(sb)))
    assert.equal(200, res.status)
    assert.equal("DENY", res.headers["x-frame-options"])
    assert.matches("frame-ancestors 'none'", res.headers["content-security-policy"] or "", 1, true)
  end)

  it("needs the page's own token, bound to that authorize request", function()
    local f = approve_form(sb)
    assert.matches("^%S+$", f.csrf_token or "")
    -- without it
    local bare = {}
    for k, v in pairs(f) do bare[k] = v end
    bare.csrf_token = nil
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = bare}))
    assert.equal(400, res.status)
    assert.is_nil(res.headers["location"])
    -- a token from another request (another state, another scope)
    for _, other in ipairs{{state = "other"}, {scope = "read"}} do
      local g = approve_form(sb, other)
      local mixed = {}
      for k, v in pairs(f) do mixed[k] = v end
      mixed.csrf_token = g.csrf_token
      res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = mixed}))
      assert.equal(400, res.status)
      assert.is_nil(res.headers["location"])
    end
    -- a garbled one
    f.csrf_token = f.csrf_token:sub(1, -2) .. (f.csrf_token:sub(-1) == "0" and "1" or "0")
    res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.equal(400, res.status)
    assert.is_nil(res.headers["location"])
    -- the page's own token works
    res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = approve_form(sb)}))
    assert.equal(302, res.status)
    assert.matches("code=%x+", res.headers["location"])
  end)

  it("refuses a post a browser marks as coming from another site", function()
    for _, headers in ipairs{
      {Origin = "http://evil.example"},
      {Origin = "null"},
      {["Sec-Fetch-Site"] = "cross-site"},
      {["Sec-Fetch-Site"] = "same-site"},
      {Origin = "http://127.0.0.1:1"},
    } do
      local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = approve_form(sb), headers = headers}))
      assert.equal(403, res.status, http.cjson.encode(headers))
      assert.is_nil(res.headers["location"])
    end
    -- the page posting to itself, as a browser would say so
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = approve_form(sb),
      headers = {Origin = sb.url, ["Sec-Fetch-Site"] = "same-origin"}}))
    assert.equal(302, res.status)
  end)
end)

describe("achievers-sandbox under connection and memory pressure", function()
  local prog

  after_each(function()
    if prog then prog.finish("KILL") end
    prog = nil
  end)

  it("answers a normal request while 600 connections sit half-sent", function()
    prog = http.launch("--port 0")
    assert.is_string(prog.url)
    local held = {}
    for i = 1, 600 do
      local s = socket.tcp()
      s:settimeout(5)
      if s:connect("127.0.0.1", prog.port) then
        s:send("POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
        held[#held + 1] = s
      else
        s:close()
      end
      if i % 100 == 0 then socket.sleep(0.05) end
    end
    local t0 = socket.gettime()
    local conn = http.connect(prog.url)
    local res
    if conn then
      conn.sock:settimeout(10)
      res = conn:request("POST", http.TOKEN_PATH, {json = {grant_type = "client_credentials",
        client_id = prog.client_id, client_secret = prog.client_secret, scope = "read"}})
      conn:close()
    end
    local waited = socket.gettime() - t0
    for _, s in ipairs(held) do s:close() end
    assert.is_table(res, "no answer within 10 s while 600 connections were held")
    assert.equal(200, res.status)
    print(string.format("\n  answered after %.2f s with %d half-sent connections open", waited, #held))
  end)

  it("stays small after 64 POSTs of 8 MiB", function()
    -- ASan keeps freed memory in quarantine: keep that small for a measure of what is held
    local env = os.getenv("LD_PRELOAD") and ("ASAN_OPTIONS=" .. (os.getenv("ASAN_OPTIONS") or "") ..
      ":quarantine_size_mb=8 ") or ""
    prog = http.launch("--port 0 --no-rate-limit", env)
    assert.is_string(prog.url)
    local before = http.rss_kib(prog.pid)
    local body = string.rep("x", 8 * 1024 * 1024)
    for _ = 1, 64 do
      local res = assert(http.request(prog.url, "POST", "/api/v5/achievements", {body = body,
        headers = {["Content-Type"] = "application/json"}}))
      assert.is_true(res.status >= 400 and res.status < 500, tostring(res.status))
    end
    local after = http.rss_kib(prog.pid)
    print(string.format("\n  RSS %d KiB before, %d KiB after 64 x 8 MiB", before, after))
    assert.is_true(after < 150 * 1024, "RSS " .. after .. " KiB")
  end)
end)

describe("achievers-sandbox uploads", function()
  it("keeps the newest 64 MiB of files: older ones are gone (410), memory stays bounded", function()
    -- 60 uploads of 4 MiB: 240 MiB if every file were kept
    local env = os.getenv("LD_PRELOAD") and ("ASAN_OPTIONS=" .. (os.getenv("ASAN_OPTIONS") or "") ..
      ":quarantine_size_mb=8 ") or ""
    local prog = http.launch("--port 0 --no-rate-limit", env)
    local ok, e = pcall(function()
      local tok = assert(http.request(prog.url, "POST", http.TOKEN_PATH, {json = {grant_type = "client_credentials",
        scope = "read,write", client_id = prog.client_id, client_secret = prog.client_secret}})).json.access_token
      local file = "\137PNG\r\n\26\n" .. string.rep("p", 4 * 1024 * 1024 - 8)
      local body = "--b7\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" ..
        file .. "\r\n--b7--\r\n"
      local urls = {}
      for i = 1, 60 do
        local res = assert(http.request(prog.url, "POST", "/api/v5/uploads", {token = tok, body = body,
          headers = {["Content-Type"] = "multipart/form-data; boundary=b7"}}))
        assert.equal(201, res.status, res.body)
        urls[i] = res.json.url:sub(#prog.url + 1)
      end
      local rss = http.rss_kib(prog.pid)
      print(string.format("\n  RSS %d KiB after 60 uploads of 4 MiB", rss))
      -- 240 MiB of files if all were kept; 64 MiB are, plus what malloc holds on to
      assert.is_true(rss < 170 * 1024, "RSS " .. rss .. " KiB")
      assert.equal(410, assert(http.request(prog.url, "GET", urls[1])).status)
      local last = assert(http.request(prog.url, "GET", urls[60]))
      assert.equal(200, last.status)
      assert.equal(file, last.body)
    end)
    prog.finish()
    assert(ok, e)
  end)
end)

describe("sandbox request log", function()
  it("keeps the last 64 requests and at most 64 KiB of each body", function()
    local sb = assert(sandbox.start{port = 0, rate_limit = false})
    local big = string.rep("b", 200 * 1024)
    for i = 1, 80 do
      http.request(sb, "POST", "/api/v5/achievements?i=" .. i, {body = i % 2 == 0 and big or "small",
        headers = {["Content-Type"] = "application/json"}})
    end
    local reqs = sb:requests()
    sb:stop()
    assert.equal(64, #reqs)
    assert.equal("i=80", reqs[64].query)
    assert.equal(64 * 1024, #reqs[64].body)
    assert.is_true(reqs[64].body_truncated)
    assert.equal(200 * 1024, reqs[64].body_size)
    assert.equal("small", reqs[63].body)
    assert.is_false(reqs[63].body_truncated)
    assert.equal(5, reqs[63].body_size)
  end)
end)
