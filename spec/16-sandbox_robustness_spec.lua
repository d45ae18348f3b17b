-- The sandbox under abuse and load: garbage, invalid JSON and escapes, wrong content types,
-- huge headers and bodies, abandoned connections (4xx or a closed connection, and it keeps
-- serving), and a bounded load run of 10,000 requests over 16 concurrent connections.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")
local socket = require("socket")

-- Sends raw bytes on a fresh connection and returns the status of the answer (nil when the
-- server closed the connection without one, or gave none within `timeout` seconds) and its head.
local function raw(sb, bytes, timeout)
  local sock = socket.tcp()
  sock:settimeout(timeout or 15)
  assert(sock:connect("127.0.0.1", sb.port))
  sock:send(bytes)
  local head = {}
  local line = sock:receive("*l")
  while line and line ~= "" do
    head[#head + 1] = line
    line = sock:receive("*l")
  end
  sock:close()
  local text = table.concat(head, "\n")
  return tonumber(text:match("^HTTP/1%.%d (%d%d%d)")), text
end

describe("sandbox robustness", function()
  local sb, tok

  setup(function()
    sb = assert(sandbox.start{port = 0, rate_limit = false})
    tok = http.system_token(sb, "read,write")
  end)

  teardown(function()
    sb:stop()
  end)

  local function still_serving()
    local res = assert(http.api(sb, "GET", "/users/10726811", tok))
    assert.equal(200, res.status)
    assert.equal("adele.olson", res.json.username)
  end

  it("answers garbage request lines and headers with 400 or a close", function()
    -- NUL bytes in the request line: libmicrohttpd waits for a line end it can use and never
    -- answers (the connection times out); what matters is that everyone else is still served
    assert.is_nil(raw(sb, "\0\1\2\3\255\254 / HTTP/1.1\r\n\r\n", 1))
    still_serving()
    for _, bytes in ipairs{
      "GARBAGE\r\n\r\n",
      "\255\254\253 / HTTP/1.1\r\n\r\n",
      "GET /api/v5/users HTTP/9.9\r\nHost: x\r\n\r\n",
      "GET /api/v5/users HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
      "POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n\r\n",
      string.rep("A", 100000),
    } do
      local status = raw(sb, bytes)
      -- 505 HTTP Version Not Supported is the right answer to HTTP/9.9
      assert.is_true(status == nil or (status >= 400 and status < 500) or status == 505, tostring(status))
      still_serving()
    end
  end)

  it("answers bad escapes in paths and queries with 400", function()
    assert.equal(400, raw(sb, "GET /api/v5/users/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert.equal(400, raw(sb, "GET /api/v5/users/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local res = assert(http.api(sb, "GET", "/users?q=%E0%A4", tok))
    assert.equal(200, res.status, "invalid UTF-8 in a search is just a search without matches")
    assert.equal(0, res.json.paging.totalItems)
    assert.equal(400, assert(http.api(sb, "GET", "/users?q=%4", tok)).status)
    still_serving()
  end)

  it("answers invalid JSON, invalid UTF-8 and wrong content types with 4xx", function()
    local cases = {
      {"POST", "/achievements", "application/json", "{", 400},
      {"POST", "/achievements", "application/json", '{"description": "\255\254"}', 400},
      {"POST", "/achievements", "application/json", '"just a string"', 400},
      {"POST", "/achievements", "application/json", string.rep("[", 100000), 400},
      {"POST", "/achievements", "application/json", '{"participants": [[1]]}', 400},
      {"POST", "/achievements", "text/plain", "participants=x", 415},
      {"POST", "/achievements", nil, "participants=x", 415},
      {"POST", "/achievements", "application/x-www-form-urlencoded", "description=%G0", 400},
      {"POST", "/achievements", "application/x-www-form-urlencoded", "participants=brady.garfinkel&description=%FF", 400},
      {"POST", "/uploads", "multipart/form-data", "--x\r\n", 400},
      {"POST", "/uploads", "multipart/form-data; boundary=", "--\r\n", 400},
      {"POST", "/uploads", "multipart/form-data; boundary=zz", "--zz\r\nno header end", 400},
    }
    for i, c in ipairs(cases) do
      local headers = {["Content-Type"] = c[3] or false}
      local res = assert(http.api(sb, c[1], c[2], tok, {body = c[4], headers = headers}))
      assert.equal(c[5], res.status, "case " .. i .. ": " .. res.body)
      assert.is_string(res.json.error)
    end
    local res = assert(http.request(sb, "POST", http.TOKEN_PATH, {body = "\255\0\1garbage",
      headers = {["Content-Type"] = "application/json"}}))
    assert.equal(400, res.status)
    assert.equal("invalid_request", res.json.error)
    still_serving()
  end)

  it("refuses huge headers", function()
    local status = raw(sb, "GET /api/v5/users HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 200000) .. "\r\n\r\n")
    assert.is_true(status == 431 or status == 413 or status == nil, tostring(status))
    local many = {}
    for i = 1, 5000 do many[#many + 1] = "X-H" .. i .. ": " .. string.rep("v", 20) end
    status = raw(sb, "GET /api/v5/users HTTP/1.1\r\nHost: x\r\n" .. table.concat(many, "\r\n") .. "\r\n\r\n")
    assert.is_true(status == 431 or status == 413 or status == nil, tostring(status))
    status = raw(sb, "GET /api/v5/users?" .. string.rep("q", 200000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.is_true(status == 414 or status == 431 or status == 413 or status == nil, tostring(status))
    still_serving()
  end)

  it("answers bodies over 8 MiB with 413: huge ones at once, others after reading them", function()
    local status = raw(sb, "POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " .. tok ..
      "\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n" .. string.rep("x", 1000))
    assert.equal(413, status)
    local chunk = string.rep("y", 1024 * 1024)
    local body = {}
    for _ = 1, 9 do body[#body + 1] = string.format("%x\r\n%s\r\n", #chunk, chunk) end
    status = raw(sb, "POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" ..
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" .. table.concat(body) .. "0\r\n\r\n")
    assert.equal(413, status)
    local res = assert(http.api(sb, "POST", "/achievements", tok, {body = string.rep("z", 8 * 1024 * 1024 + 1),
      headers = {["Content-Type"] = "application/json"}}))
    assert.equal(413, res.status)
    still_serving()
  end)

  it("survives clients that vanish mid-request and many idle connections", function()
    for _ = 1, 20 do
      local sock = socket.tcp()
      sock:settimeout(5)
      assert(sock:connect("127.0.0.1", sb.port))
      sock:send("POST /api/v5/achievements HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
      sock:close()
    end
    local idle = {}
    for i = 1, 50 do
      idle[i] = socket.tcp()
      idle[i]:settimeout(5)
      assert(idle[i]:connect("127.0.0.1", sb.port))
    end
    still_serving()
    for _, s in ipairs(idle) do s:close() end
    still_serving()
  end)

  it("serves 10,000 requests over 16 concurrent connections without an error", function()
    -- curl's parallel mode is the load driver: an exact request count, 16 transfers at once on
    -- reused connections, one status line per transfer
    local run = assert(sandbox.start{port = 0, rate_limit = false})
    local t = http.system_token(run, "read")
    local paths = {"/api/v5/users?pageSize=5", "/api/v5/users/10726811", "/api/v5/recognitions?pageSize=5",
                   "/api/v5/newsfeed-events/880001", "/api/v5/newsfeed-events/880001/comments"}
    local config = os.tmpname()
    local f = assert(io.open(config, "w"))
    for i = 1, 10000 do
      f:write('url = "', run.url, paths[i % #paths + 1], '"\noutput = "/dev/null"\n')
    end
    f:close()
    local t0 = socket.gettime()
    local p = assert(io.popen(http.TOOL .. "timeout 120 curl -s --parallel --parallel-max 16 --max-time 10 " ..
      "-H 'Authorization: Bearer " .. t .. "' -w '%{http_code} %{num_connects}\\n' -K " .. config .. " 2>/dev/null"))
    local statuses, connects, n = {}, 0, 0
    for line in p:lines() do
      local code, c = line:match("(%d+) (%d+)$")
      if code then
        n = n + 1
        statuses[code] = (statuses[code] or 0) + 1
        connects = connects + tonumber(c)
      end
    end
    p:close()
    local seconds = socket.gettime() - t0
    os.remove(config)
    local st = run:stats()
    run:stop()
    print(string.format("\n  load: %d responses in %.2f s (%.0f/s), statuses %s, client connects %d; " ..
      "sandbox counted %d requests on %d connections", n, seconds, n / seconds,
      http.cjson.encode(statuses), connects, st.requests, st.connections))
    assert.equal(10000, n)
    assert.same({["200"] = 10000}, statuses)
    assert.equal(10000 + 1, st.requests)
    assert.equal(16, connects)
    assert.equal(16 + 1, st.connections, "16 keep-alive connections plus the token request")
  end)
end)
