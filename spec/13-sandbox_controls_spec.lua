-- The sandbox's test controls and limits: rate limits (429 + Retry-After), faults, latency,
-- stats, the request log, reset, start options, several sandboxes at once, TLS.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")

describe("sandbox controls", function()
  local sb, tok

  before_each(function()
    sb = assert(sandbox.start{port = 0})
    tok = http.system_token(sb, "read,write")
  end)

  after_each(function()
    sb:stop()
  end)

  describe("rate limits", function()
    it("answers the 51st GET /recognitions within a minute with 429 and Retry-After", function()
      local conn = assert(http.connect(sb.url))
      for i = 1, 50 do
        local res = assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = tok}))
        assert.equal(200, res.status, "request " .. i)
      end
      local res = assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = tok}))
      assert.equal(429, res.status)
      assert.equal("rate_limited", res.json.error)
      local wait = tonumber(res.headers["retry-after"])
      assert.is_true(wait >= 1 and wait <= 60, tostring(wait))
      -- heavy and normal classes count separately, and so do tokens
      assert.equal(200, assert(conn:request("GET", "/api/v5/users?pageSize=1", {token = tok})).status)
      local other = http.system_token(sb, "read")
      assert.equal(200, assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = other})).status)
      -- the newsfeed is heavy too, with its own window
      for _ = 1, 50 do
        assert.equal(200, assert(conn:request("GET", "/api/v5/newsfeed-events?pageSize=1", {token = tok})).status)
      end
      assert.equal(429, assert(conn:request("GET", "/api/v5/newsfeed-events?pageSize=1", {token = tok})).status)
      -- advance moves the window: after Retry-After seconds the token may call again
      sb:advance(wait)
      assert.equal(200, assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = tok})).status)
      conn:close()
      assert.equal(2, sb:stats().rate_limited)
    end)

    it("limits everything else to 500 per 2 minutes", function()
      local conn = assert(http.connect(sb.url))
      for i = 1, 500 do
        local res = assert(conn:request("GET", "/api/v5/users/10726811", {token = tok}))
        assert.equal(200, res.status, "request " .. i)
      end
      local res = assert(conn:request("GET", "/api/v5/users/10726811", {token = tok}))
      assert.equal(429, res.status)
      assert.is_true(tonumber(res.headers["retry-after"]) <= 120)
      conn:close()
    end)

    it("takes its limits from the limits option, or none with rate_limit = false", function()
      local small = assert(sandbox.start{port = 0, limits = {heavy = {2, 10}, default = {3, 30}}})
      local t = http.system_token(small)
      assert.equal(200, assert(http.api(small, "GET", "/recognitions", t)).status)
      assert.equal(200, assert(http.api(small, "GET", "/recognitions", t)).status)
      local res = assert(http.api(small, "GET", "/recognitions", t))
      assert.equal(429, res.status)
      assert.is_true(tonumber(res.headers["retry-after"]) <= 10)
      for _ = 1, 3 do assert.equal(200, assert(http.api(small, "GET", "/users", t)).status) end
      assert.equal(429, assert(http.api(small, "GET", "/users", t)).status)
      small:stop()
      local free = assert(sandbox.start{port = 0, rate_limit = false})
      t = http.system_token(free)
      local conn = assert(http.connect(free.url))
      for _ = 1, 60 do
        assert.equal(200, assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = t})).status)
      end
      conn:close()
      free:stop()
    end)
  end)

  describe("fail", function()
    it("answers the next requests with a status and Retry-After, then recovers", function()
      sb:fail{count = 2, status = 503, retry_after = 7}
      for _ = 1, 2 do
        local res = assert(http.api(sb, "GET", "/users", tok))
        assert.equal(503, res.status)
        assert.equal("7", res.headers["retry-after"])
        assert.equal("service_unavailable", res.json.error)
      end
      assert.equal(200, assert(http.api(sb, "GET", "/users", tok)).status)
      sb:fail{status = 500}
      local res = assert(http.api(sb, "GET", "/users", tok))
      assert.equal(500, res.status)
      assert.is_nil(res.headers["retry-after"])
      assert.equal(2 + 1, sb:stats().faults)
    end)

    it("applies faults before authentication and to the token endpoint too", function()
      sb:fail{count = 1, status = 429, retry_after = 3}
      local res = assert(http.request(sb, "GET", "/api/v5/users"))
      assert.equal(429, res.status)
      sb:fail{count = 1, status = 502, path = "/oauth"}
      res = assert(http.token_request(sb, {grant_type = "client_credentials"}))
      assert.equal(502, res.status)
    end)

    it("only hits paths that start with path", function()
      sb:fail{count = 1, status = 504, path = "/api/v5/recognitions"}
      assert.equal(200, assert(http.api(sb, "GET", "/users", tok)).status)
      assert.equal(504, assert(http.api(sb, "GET", "/recognitions", tok)).status)
      assert.equal(200, assert(http.api(sb, "GET", "/recognitions", tok)).status)
    end)

    it("drops the connection after reading the whole request", function()
      sb:fail{count = 1, drop = true, path = "/api/v5/recognitions"}
      local conn = assert(http.connect(sb.url))
      local res, err = conn:request("POST", "/api/v5/recognitions", {token = tok,
        form = {nominees = "brady.garfinkel", recognitionText = "x", criterionId = 412}})
      assert.is_nil(res)
      assert.equal("closed", err)
      conn:close()
      local log = sb:requests()
      local last = log[#log]
      assert.equal("POST", last.method)
      assert.equal("/api/v5/recognitions", last.path)
      assert.matches("recognitionText=x", last.body, 1, true)
      assert.equal(200, assert(http.api(sb, "GET", "/recognitions", tok)).status)
    end)

    it("checks its arguments", function()
      assert.has_error(function() sb:fail{status = 42} end)
      assert.has_error(function() sb:fail{cnt = 1} end, "fail: unknown option 'cnt'")
      assert.has_error(function() sb:fail{count = "x"} end)
    end)
  end)

  describe("latency", function()
    it("delays API answers but not the token endpoint", function()
      sb:latency(300)
      local t0 = http.gettime()
      assert.equal(200, assert(http.api(sb, "GET", "/users/10726811", tok)).status)
      local api = http.gettime() - t0
      t0 = http.gettime()
      http.system_token(sb)
      local token = http.gettime() - t0
      assert.is_true(api >= 0.29, "api took " .. api)
      assert.is_true(token < 0.25, "token took " .. token)
      sb:latency(0)
      t0 = http.gettime()
      http.api(sb, "GET", "/users/10726811", tok)
      assert.is_true(http.gettime() - t0 < 0.25)
    end)

    it("starts from latency_ms", function()
      local slow = assert(sandbox.start{port = 0, latency_ms = 200})
      local t = http.system_token(slow)
      local t0 = http.gettime()
      http.api(slow, "GET", "/users/10726811", t)
      assert.is_true(http.gettime() - t0 >= 0.19)
      slow:stop()
    end)
  end)

  describe("stats and requests", function()
    it("counts requests, routes and distinct connections", function()
      sb:reset()
      local t = http.system_token(sb)
      local conn = assert(http.connect(sb.url))
      for _ = 1, 100 do
        assert.equal(200, assert(conn:request("GET", "/api/v5/users?pageSize=1", {token = t})).status)
      end
      assert.equal(200, assert(conn:request("GET", "/api/v5/users/10726811", {token = t})).status)
      assert.equal(200, assert(conn:request("OPTIONS", "/api/v5/recognitions",
        {token = http.user_token(sb, "adele.olson")})).status)
      assert.equal(404, assert(conn:request("GET", "/api/v5/nothing", {token = t})).status)
      conn:close()
      local st = sb:stats()
      assert.equal(1 + 1 + 100 + 1 + 1 + 1, st.requests)
      assert.equal(2, st.token_requests)
      assert.equal(1 + 1 + 1, st.connections, "one per token request, one keep-alive for the rest")
      assert.equal(100, st.by_route["GET /users"])
      assert.equal(1, st.by_route["GET /users/{id}"])
      assert.equal(1, st.by_route["OPTIONS /recognitions"])
      assert.equal(2, st.by_route["POST /token"])
      assert.equal(0, st.by_route["POST /recognitions"])
      assert.equal(0, st.by_route["GET /authorize"])
    end)

    it("keeps the last 64 requests byte for byte, oldest first", function()
      local body = "grant_type=client_credentials&scope=read%2Cwrite&client_id=" .. sb.client_id ..
        "&client_secret=" .. sb.client_secret
      assert.equal(200, assert(http.request(sb, "POST", http.TOKEN_PATH, {body = body,
        headers = {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Trace"] = "abc"}})).status)
      assert.equal(200, assert(http.request(sb, "GET", "/api/v5/users/10726811?x=%20y&z", {token = tok})).status)
      local log = sb:requests()
      local n = #log
      assert.equal("GET", log[n].method)
      assert.equal("/api/v5/users/10726811", log[n].path)
      assert.equal("x=%20y&z", log[n].query)
      assert.equal("Bearer " .. tok, log[n].headers.authorization)
      assert.equal("", log[n].body)
      assert.equal("POST", log[n - 1].method)
      assert.equal(body, log[n - 1].body)
      assert.equal("abc", log[n - 1].headers["x-trace"])
      assert.equal("application/x-www-form-urlencoded", log[n - 1].headers["content-type"])
      for i = 1, 70 do http.request(sb, "GET", "/n/" .. i) end
      log = sb:requests()
      assert.equal(64, #log)
      assert.equal("/n/7", log[1].path)
      assert.equal("/n/70", log[64].path)
    end)
  end)

  describe("control surface in process", function()
    it("has a random admin_key per sandbox, or the one given, and answers /__sandbox/ with it", function()
      assert.matches("^%x+$", sb.admin_key)
      assert.equal(32, #sb.admin_key)
      local fixed = assert(sandbox.start{port = 0, admin_key = "in-process-key-0123"})
      assert.equal("in-process-key-0123", fixed.admin_key)
      assert.are_not.equal(sb.admin_key, fixed.admin_key)
      assert.equal(401, assert(http.request(fixed, "GET", "/__sandbox/stats",
        {headers = {["X-Sandbox-Key"] = sb.admin_key}})).status)
      local res = assert(http.request(fixed, "POST", "/__sandbox/advance",
        {headers = {["X-Sandbox-Key"] = fixed.admin_key}, json = {seconds = 600}}))
      assert.equal(200, res.status)
      assert.is_true(math.abs(res.json.time - fixed:time()) <= 1)
      assert.is_true(fixed:time() >= os.time() + 590)
      fixed:stop()
      assert.has_error(function() sandbox.start{port = 0, admin_key = "short"} end,
        "sandbox.start: option 'admin_key': the admin key must be 16 to 256 characters long")
    end)

    it("numbers logged requests with seq, and a control request is neither logged nor counted", function()
      sb:reset()
      assert.same({}, sb:requests())
      tok = http.system_token(sb)
      assert.equal(200, assert(http.api(sb, "GET", "/users?pageSize=1", tok)).status)
      local key = {["Authorization"] = "Bearer " .. sb.admin_key}
      local res = assert(http.request(sb, "GET", "/__sandbox/requests", {headers = key}))
      assert.equal(200, res.status)
      local log = sb:requests()
      assert.equal(2, #log)
      assert.equal(log[1].seq + 1, log[2].seq)
      assert.equal(2, #res.json.requests)
      assert.equal(log[2].seq, res.json.requests[2].seq)
      assert.equal("/api/v5/users", res.json.requests[2].path)
      assert.equal(200, assert(http.api(sb, "GET", "/users?pageSize=1", tok)).status)
      log = sb:requests()
      assert.equal(3, #log)
      assert.equal(log[2].seq + 1, log[3].seq)
      local st = sb:stats()
      assert.equal(3, st.requests)
      assert.equal(3, st.connections, "the token's, and one per API request; not the control's")
      assert.equal(2, st.by_route["GET /users"])
    end)
  end)

  describe("reset", function()
    it("restores seed data, forgets tokens and codes, zeroes counters, clears faults and the clock", function()
      local user = http.user_token(sb, "adele.olson")
      local code = sb:consent{user = "adele.olson"}
      assert.equal(201, assert(http.api(sb, "POST", "/recognitions", user, {form = {
        nominees = "brady.garfinkel", recognitionText = "before reset", criterionId = 412}})).status)
      local before = assert(http.api(sb, "GET", "/recognitions?pageSize=1", tok)).json
      sb:fail{count = 5, status = 500}
      sb:latency(200)
      sb:advance(3600)
      sb:reset()
      assert.is_true(math.abs(sb:time() - os.time()) <= 2)
      assert.equal(0, sb:stats().requests)
      assert.same({}, sb:requests())
      local res = assert(http.api(sb, "GET", "/users", tok))
      assert.equal(401, res.status, "tokens are gone; the fault is cleared")
      assert.equal("invalid_grant", assert(http.token_request(sb, {grant_type = "authorization_code", code = code})).json.error)
      local t = http.system_token(sb)
      local t0 = http.gettime()
      local after = assert(http.api(sb, "GET", "/recognitions?pageSize=1", t)).json
      assert.is_true(http.gettime() - t0 < 0.2, "latency back to the start value")
      assert.equal(before.paging.totalItems - 1, after.paging.totalItems)
      assert.not_equal("before reset", after.items[1].recognitionText)
    end)

    it("gives the same seed data on every start", function()
      local other = assert(sandbox.start{port = 0})
      local a = assert(http.api(sb, "GET", "/newsfeed-events?pageSize=5", tok)).json
      local b = assert(http.api(other, "GET", "/newsfeed-events?pageSize=5", http.system_token(other))).json
      other:stop()
      assert.equal(a.paging.totalItems, b.paging.totalItems)
      for i = 1, 5 do
        assert.equal(a.items[i].id, b.items[i].id)
        assert.equal(a.items[i].dateCreated, b.items[i].dateCreated)
        assert.equal(a.items[i].creator.name, b.items[i].creator.name)
      end
    end)
  end)

  describe("start", function()
    it("rejects unknown options and wrong types, naming the option", function()
      assert.has_error(function() sandbox.start{prot = 0} end, "sandbox.start: unknown option 'prot'")
      assert.has_error(function() sandbox.start{port = "80"} end,
        "sandbox.start: option 'port' must be a number (got string)")
      assert.has_error(function() sandbox.start{port = 70000} end)
      assert.has_error(function() sandbox.start{expires = "never"} end)
      assert.has_error(function() sandbox.start{rate_limit = 1} end)
      assert.has_error(function() sandbox.start{limits = {heavy = {0, 60}}} end)
      assert.has_error(function() sandbox.start{limits = {light = {1, 60}}} end)
      assert.has_error(function() sandbox.start{tls_cert = "x.pem"} end)
      assert.has_error(function() sandbox.start("port=0") end)
    end)

    it("returns nil and a message when it cannot listen", function()
      local busy, err = sandbox.start{port = sb.port}
      assert.is_nil(busy)
      assert.matches("cannot start", err)
    end)

    it("takes fixed credentials and exposes its fields", function()
      local fixed = assert(sandbox.start{port = 0, client_id = "my_client", client_secret = "s3cret"})
      assert.equal("my_client", fixed.client_id)
      assert.equal("s3cret", fixed.client_secret)
      assert.equal("http://127.0.0.1:" .. fixed.port, fixed.url)
      assert.equal(200, assert(http.token_request(fixed, {grant_type = "client_credentials"})).status)
      local s = tostring(fixed)
      assert.matches(fixed.url, s, 1, true)
      assert.matches("my_client", s, 1, true)
      assert.not_matches("s3cret", s, 1, true)
      fixed:stop()
      fixed:stop()
      assert.equal("achievers.sandbox (stopped)", tostring(fixed))
      assert.has_error(function() fixed:stats() end, "the sandbox is stopped")
    end)

    it("makes random credentials by default", function()
      assert.matches("^sbx_" .. string.rep("%x", 32) .. "$", sb.client_id)
      assert.matches("^" .. string.rep("%x", 64) .. "$", sb.client_secret)
      local other = assert(sandbox.start{port = 0})
      assert.not_equal(sb.client_secret, other.client_secret)
      assert.not_equal(sb.port, other.port)
      other:stop()
    end)

    it("stops on garbage collection", function()
      local port
      do
        local tmp = assert(sandbox.start{port = 0})
        port = tmp.port
        tmp = nil -- luacheck: ignore
      end
      collectgarbage()
      collectgarbage()
      local conn = http.connect("http://127.0.0.1:" .. port)
      if conn then conn:close() end
      assert.is_nil(conn)
    end)

    it("serves HTTPS from certificate and key files", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      local ok = os.execute(http.TOOL .. "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -days 2 " ..
        "-keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem >/dev/null 2>&1")
      assert.is_true(ok == true or ok == 0)
      local tls = assert(sandbox.start{port = 0, tls_cert = dir .. "/cert.pem", tls_key = dir .. "/key.pem"})
      assert.matches("^https://127%.0%.0%.1:%d+$", tls.url)
      local p = io.popen(http.TOOL .. "timeout 20 curl -s --max-time 10 --cacert " .. dir .. "/cert.pem -X POST " .. tls.url ..
        http.TOKEN_PATH .. " -H 'Content-Type: application/json' -d '{\"grant_type\":\"client_credentials\"," ..
        "\"client_id\":\"" .. tls.client_id .. "\",\"client_secret\":\"" .. tls.client_secret .. "\"}'")
      local out = p:read("*a")
      p:close()
      tls:stop()
      os.execute("rm -rf " .. dir)
      local body = http.cjson.decode(out)
      assert.equal("Bearer", body.token_type)
      local missing, err = sandbox.start{port = 0, tls_cert = "/nonexistent.pem", tls_key = "/nonexistent.pem"}
      assert.is_nil(missing)
      assert.matches("cannot open", err)
    end)
  end)
end)
