-- Every error kind the sandbox can produce maps to the contract's kind; bad answers are
-- nil, err and never a raise; no error, client or token ever shows a secret.
local h = require("helpers")
local achievers = h.achievers

describe("errors", function()
  local sb, c
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    c = h.client(sb, { retries = 0 })
  end)

  local function expect(kind, status, data, err)
    assert.is_nil(data)
    assert.is_table(err)
    assert.equals(kind, err.kind)
    if status then assert.equals(status, err.status) end
    assert.is_string(err.message)
    assert.matches("^achievers: " .. kind, tostring(err))
  end

  it("404 is not_found, with method and url", function()
    local d, err = c:get("users/1")
    expect("not_found", 404, d, err)
    assert.equals("GET", err.method)
    assert.equals(sb.url .. "/api/v5/users/1", err.url)
    assert.is_table(err.body)
    assert.is_table(err.headers)
    assert.matches("application/json", err.headers["content-type"])
  end)

  it("400 is invalid and names the field", function()
    local d, err = c:get("users", { pageSize = "lots" })
    expect("invalid", 400, d, err)
    assert.matches("pageSize", err.message)
  end)

  it("403 is forbidden (a system token cannot send a recognition)", function()
    local d, err = c:post("recognitions", { nominees = "brady.garfinkel", criterionId = 1, recognitionText = "x" })
    expect("forbidden", 403, d, err)
  end)

  it("401 is auth", function()
    local bogus = achievers.client { base_url = sb.url, retries = 0,
      token = { access_token = "0000000000000000000000000000000000000000", expires_at = os.time() + 86400 } }
    local d, err = bogus:get("users")
    expect("auth", 401, d, err)
    assert.matches("Bearer", err.headers["www-authenticate"])
  end)

  it("429 is rate_limited with retry_after", function()
    sb:fail { count = 1, status = 429, retry_after = 7, path = "/api/v5/users" }
    local d, err = c:get("users")
    expect("rate_limited", 429, d, err)
    assert.equals(7, err.retry_after)
    assert.matches("retry after 7 s", tostring(err))
  end)

  it("5xx is server", function()
    sb:fail { count = 1, status = 500, path = "/api/v5/users" }
    expect("server", 500, c:get("users"))
  end)

  it("a dropped connection is network", function()
    -- a new client, so the GET opens its connection (libcurl itself re-sends a request once
    -- when a reused connection turns out closed)
    local fresh = h.client(sb, { retries = 0, token = assert(c:token()) })
    sb:fail { count = 1, drop = true, path = "/api/v5/users" }
    expect("network", nil, fresh:get("users"))
  end)

  it("a refused connection is network", function()
    local port = h.free_port()
    local dead = achievers.client { base_url = "http://127.0.0.1:" .. port, retries = 0,
      token = { access_token = "x", expires_at = os.time() + 86400 } }
    expect("network", nil, dead:get("users"))
  end)

  it("a slow answer past the timeout is timeout", function()
    assert(c:token())
    sb:latency(1500)
    local d, err = c:request { path = "users", timeout = 0.3 }
    sb:latency(0)
    expect("timeout", nil, d, err)
  end)

  describe("bad answers", function()
    local url, stop
    setup(function() url, stop = h.canned_server() end)
    teardown(function() stop() end)

    local function canned()
      return achievers.client { base_url = url, client_id = "id", client_secret = "secret", retries = 0 }
    end

    it("a non-JSON body is decode", function()
      local d, err = canned():get("not-json")
      expect("decode", 200, d, err)
      assert.equals("this is not json", err.body)
    end)

    it("a truncated body is network", function()
      expect("network", nil, canned():get("truncated"))
    end)

    it("an HTML error page is server with the page as body", function()
      local d, err = canned():get("html-error")
      expect("server", 502, d, err)
      assert.matches("<h1>502 Bad Gateway</h1>", err.body, 1, true)
    end)

    it("an empty 200 is decode", function()
      local d, err = canned():get("empty")
      expect("decode", 200, d, err)
      assert.matches("empty", err.message)
    end)

    it("an answer over max_response_size is decode", function()
      local cl = achievers.client { base_url = url, client_id = "id", client_secret = "secret",
        retries = 0, max_response_size = 1000 }
      local d, err = cl:get("big")
      expect("decode", nil, d, err)
      assert.matches("max_response_size", err.message)
    end)
  end)

  it("no tostring, error or trace shows the token or the secret", function()
    local seen = {}
    local traced = h.client(sb, { retries = 0, on_request = function(ev) seen[#seen + 1] = ev end })
    local tok = assert(traced:token())
    local user, utok = h.user_client(sb, traced)
    local _, e1 = traced:get("users/1")
    local _, e2 = user:post("recognitions", {})
    sb:fail { count = 1, status = 503, path = "/api/v5/users" }
    local _, e3 = traced:get("users")
    local texts = h.strings_of({ seen, e1, e2, e3 })
    for _, v in ipairs({ traced, user, tok, utok, e1, e2, e3 }) do texts[#texts + 1] = tostring(v) end
    assert.is_true(#seen >= 6)
    for _, s in ipairs(texts) do
      assert.is_nil(s:find(tok.access_token, 1, true), s)
      assert.is_nil(s:find(utok.access_token, 1, true), s)
      assert.is_nil(s:find(sb.client_secret, 1, true), s)
    end
  end)
end)

describe("achievers.json_decode", function()
  local d = achievers.json_decode

  it("keeps integers exact, beyond 2^53 too", function()
    assert.equals(10726811, d("10726811"))
    if _VERSION >= "Lua 5.3" then
      assert.equals("integer", math.type(d("10726811")))
      assert.equals(9007199254740993, d("9007199254740993"))
      assert.equals(math.mininteger, d("-9223372036854775808"))
      assert.equals("float", math.type(d("1.5")))
      assert.equals("float", math.type(d("9223372036854775808")))
    end
    assert.equals(1000, d("1e3"))
  end)

  it("decodes escapes, surrogate pairs and null", function()
    assert.equals("aé😀\n/", d('"a\\u00e9\\ud83d\\ude00\\n\\/"'))
    assert.same({ 1, 2, { 3, { a = achievers.null } } }, d('[1,2,[3,{"a":null}]]'))
    assert.equals(achievers.null, require("cjson").null)
  end)

  it("fills long objects and arrays completely; of two equal keys the last wins", function()
    -- members go into a table made at its final size, 64 at a time
    for _, n in ipairs { 1, 63, 64, 65, 128, 129, 1000 } do
      local items, members = {}, {}
      for i = 1, n do
        items[i] = tostring(i)
        members[i] = string.format('"k%d":[%d,{"v":%d}]', i, i, i)
      end
      local arr = d("[" .. table.concat(items, ",") .. "]")
      assert.equals(n, #arr)
      for i = 1, n do assert.equals(i, arr[i]) end
      local obj = d("{" .. table.concat(members, ",") .. "}")
      local count = 0
      for k, v in pairs(obj) do
        count = count + 1
        assert.equals(tonumber(k:sub(2)), v[2].v)
      end
      assert.equals(n, count)
    end
    assert.same({ a = 3, b = 2 }, d('{"a":1,"b":2,"a":3}'))
    local dup = { '"x":0' }
    for i = 1, 100 do dup[#dup + 1] = string.format('"k%d":%d', i, i) end
    dup[#dup + 1] = '"x":1'
    assert.equals(1, d("{" .. table.concat(dup, ",") .. "}").x)
    assert.same({ {}, {}, { {} } }, d("[{},[],[[]]]"))
  end)

  it("decodes 199 levels of wide objects and arrays on every Lua (LuaJIT's C stack too)", function()
    local members = {}
    for i = 1, 63 do members[i] = string.format('"k%d":%d', i, i) end
    local obj = string.rep("{" .. table.concat(members, ",") .. ',"n":', 199) .. "0" ..
                string.rep("}", 199)
    local items = {}
    for i = 1, 127 do items[i] = tostring(i) end
    local arr = string.rep("[" .. table.concat(items, ",") .. ",", 199) .. "0" .. string.rep("]", 199)
    local o, depth = assert(d(obj)), 0
    while type(o) == "table" do
      depth = depth + 1
      assert.equals(63, o.k63)
      o = o.n
    end
    assert.equals(199, depth)
    local a = assert(d(arr))
    depth = 0
    while type(a) == "table" do
      depth = depth + 1
      assert.equals(128, #a)
      a = a[128]
    end
    assert.equals(199, depth)
  end)

  it("returns nil and a message for bad JSON, never raises", function()
    for _, bad in ipairs { "", " ", "[1,]", '{"a"}', '"\\ud800"', "01", "-", "1.", "nul",
      ("["):rep(300), '"abc', "true false", '"\1"', "{'a':1}", "[1 2]" } do
      local v, err = d(bad)
      assert.is_nil(v, bad)
      assert.matches("at byte %d+", err)
    end
  end)
end)
