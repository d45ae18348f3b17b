-- Caller tables with hostile metatables. The module reads a named field of a caller's table
-- (an option, a request field, a token field, a part of a multipart body, an authorize_url or
-- callback field) through its metatable, once, and keeps the value alive until it is used;
-- it reads the tables it walks (form, query, headers, the parts list, batch lists, scope
-- lists, limits) by their own contents: __pairs, __len and __index are not consulted there.
-- A metamethod that raises, yields or returns the wrong type gives a clear error and sends
-- nothing; one that allocates and collects changes nothing that goes on the wire.
--
-- Under `make test SAN=1` these catch reads of freed memory: the values served by __index are
-- long strings (never interned in Lua 5.4) made fresh on every read, and each read runs a full
-- collection first, so a value the C code dropped from the stack is freed before it is used.
local h = require("helpers")
local achievers = h.achievers

local LONG = string.rep("L", 48) -- longer than Lua 5.4's short strings
local PNG = "\137PNG\r\n\26\n" -- uploads are images: the sandbox checks the content

-- A new string object equal to s, on every call (for long strings in 5.4).
local function fresh(s)
  return (s .. "!"):sub(1, -2)
end

-- A table with nothing of its own: every field comes from __index, fresh, after a full
-- collection. reads_of[t] counts the reads of each key.
local reads_of = setmetatable({}, { __mode = "k" })
local function served(fields)
  local reads = {}
  local t = setmetatable({}, {
    __index = function(_, k)
      reads[k] = (reads[k] or 0) + 1
      collectgarbage()
      local v = fields[k]
      if type(v) == "string" then return fresh(v) end
      return v
    end,
  })
  reads_of[t] = reads
  return t
end

-- Own contents, and every metamethod the C code must not consult when it walks the table;
-- each one counts itself, allocates and collects.
local function walked(own)
  local calls = { n = 0 }
  local function touch()
    calls.n = calls.n + 1
    local junk = {}
    for i = 1, 50 do junk[i] = string.rep("j", 60) .. i end
    collectgarbage()
  end
  return setmetatable(own, {
    __index = function(_, k) touch() return "from __index " .. tostring(k) end,
    __pairs = function(t)
      touch()
      return next, { extra = "from __pairs" }, nil
    end,
    __len = function() touch() return 3 end,
    __tostring = function() touch() return "from __tostring" end,
  }), calls
end

-- A table whose __index raises, or yields.
local function raising()
  return setmetatable({}, { __index = function() error("hostile __index raised", 0) end })
end
local function yielding()
  return setmetatable({}, { __index = function(_, k) return coroutine.yield(k) end })
end

local function at_most_once(t)
  for k, n in pairs(reads_of[t]) do
    assert.is_true(n <= 1, ("field %s read %d times"):format(tostring(k), n))
  end
end

describe("caller tables with hostile metatables", function()
  local sb, c, user
  setup(function()
    sb = h.start_sandbox()
    c = h.client(sb)
    assert(c:token())
    user = h.user_client(sb, c)
  end)
  teardown(function() sb:stop() end)

  local function requests() return sb:stats().requests end

  -- fn raises a clear error (matching `pattern`) and sends nothing
  local function refused(fn, pattern, what)
    local before = requests()
    local ok, msg = pcall(fn)
    assert.is_false(ok, what)
    assert.is_string(msg, what)
    if pattern then assert.matches(pattern, msg, 1, false, what) end
    assert.equals(before, requests(), (what or "") .. ": something was sent")
    return msg
  end

  describe("fields served by __index that collect", function()
    it("multipart part fields reach the wire as given", function()
      local filename, ctype, data = LONG .. ".png", "image/" .. LONG, PNG .. LONG .. "data\0\r\nbytes"
      local part = served { name = "file", filename = filename, content_type = ctype, data = data }
      local spec = served { method = "POST", path = "uploads", multipart = { part } }
      assert(user:request(spec))
      local r = h.last_request(sb, "/uploads")
      assert.truthy(r.body:find('Content-Disposition: form-data; name="file"; filename="' .. filename .. '"\r\n'
        .. "Content-Type: " .. ctype .. "\r\n\r\n" .. data .. "\r\n", 1, true), r.body)
      at_most_once(part)
      at_most_once(spec)
    end)

    it("upload's fields reach the wire as given", function()
      local filename, data = LONG .. ".gif", "GIF89a" .. LONG .. "gif bytes"
      local t = served { data = data, filename = filename }
      assert(user:upload(t))
      local r = h.last_request(sb, "/uploads")
      assert.truthy(r.body:find('filename="' .. filename .. '"\r\nContent-Type: image/gif\r\n\r\n' .. data, 1, true), r.body)
      at_most_once(t)
    end)

    it("a token table's fields become the token as given", function()
      local access, scope = LONG .. "access", LONG .. "scope"
      local expires = os.time() + 3600
      local t = served { access_token = access, expires_at = expires, token_type = "bearer",
        scope = scope, grant_type = "client_credentials", refresh_token = LONG .. "refresh" }
      local tok = achievers.token(t)
      assert.equals(access, tok.access_token)
      assert.equals(scope, tok.scope)
      assert.equals(expires, tok.expires_at)
      assert.equals("client_credentials", tok.grant_type)
      at_most_once(t)
    end)

    it("a token table given to client{token =} and with_token is what authorizes", function()
      local access = LONG .. "saved"
      local function saved() return served { access_token = access, expires_at = os.time() + 86400, scope = LONG } end
      local cl = h.client(sb, { token = (saved()), retries = 0 })
      cl:get("users") -- the sandbox does not know the token: 401, then a token of its own
      local reqs = sb:requests()
      local seen = false
      for _, r in ipairs(reqs) do
        if r.headers.authorization == "Bearer " .. access then seen = true end
      end
      assert.is_true(seen, "the saved token never went on the wire")
      local wt = c:with_token((saved()))
      assert.equals(access, wt.current_token.access_token)
    end)

    it("client options reach the wire as given, each read once", function()
      local agent = LONG .. " agent"
      local fired = 0
      local opts = served { base_url = sb.url, client_id = sb.client_id,
        client_secret = sb.client_secret, user_agent = agent, scope = { "read", "write" },
        redirect_uri = "http://127.0.0.1/" .. LONG, on_token = function() fired = fired + 1 end,
        on_request = function() end, retries = 1 }
      local cl = achievers.client(opts)
      assert(cl:get("users"))
      assert.equals(agent, h.last_request(sb, "/users").headers["user-agent"])
      assert.equals(1, fired)
      assert.equals("http://127.0.0.1/" .. LONG, cl.redirect_uri)
      at_most_once(opts)
    end)

    it("request fields reach the wire as given", function()
      local q, hv = LONG .. "q", LONG .. " header"
      local spec = served { path = "users", query = { q = q }, headers = { ["X-Trace"] = hv } }
      assert(c:request(spec))
      local r = h.last_request(sb, "/users")
      assert.equals("q=" .. q, r.query)
      assert.equals(hv, r.headers["x-trace"])
      at_most_once(spec)
      local body = LONG .. " body"
      spec = served { method = "POST", path = "uploads", body = body, content_type = "text/" .. LONG }
      user:request(spec)
      r = h.last_request(sb, "/uploads")
      assert.equals(body, r.body)
      assert.equals("text/" .. LONG, r.headers["content-type"])
      at_most_once(spec)
    end)

    it("async and batch take served request tables", function()
      local q = LONG .. "async"
      local req = c:async((served { path = "users", query = { q = q } }))
      assert(req:result())
      assert.equals("q=" .. q, h.last_request(sb, "/users").query)
      local list = {}
      for i = 1, 3 do list[i] = served { path = "users", query = { q = LONG .. i } } end
      local out = c:batch(list)
      for i = 1, 3 do assert.is_nil(out[i].err) end
      local got = {}
      for _, r in ipairs(sb:requests()) do got[r.query] = true end
      for i = 1, 3 do assert.is_true(got["q=" .. LONG .. i], "batch item " .. i) end
    end)

    it("authorize_url and handle_callback read their tables as given", function()
      local state = LONG .. "state"
      local t = served { scope = { "read", "write" }, state = state, redirect_uri = "http://127.0.0.1/" .. LONG }
      local url, st = c:authorize_url(t)
      assert.equals(state, st)
      assert.truthy(url:find("state=" .. state, 1, true), url)
      assert.truthy(url:find("scope=read%2Cwrite", 1, true), url)
      at_most_once(t)
      local code = sb:consent { user = "adele.olson", scope = "read" }
      local q = served { code = code, state = state }
      assert(c:handle_callback(q, state))
      at_most_once(q)
      -- a code the server never gave: what went on the wire is still the one given
      local bogus = LONG .. "code"
      q = served { code = bogus, state = state }
      local tok, err = c:handle_callback(q, state)
      assert.is_nil(tok)
      assert.equals("auth", err.kind)
      assert.truthy(h.last_request(sb, "/token").body:find(bogus, 1, true))
      q = served { error = "access_denied", error_description = LONG .. " said no", state = state }
      tok, err = c:handle_callback(q, state)
      assert.is_nil(tok)
      assert.equals("access_denied", err.kind)
      assert.equals(LONG .. " said no", err.message)
    end)
  end)

  describe("tables the module walks are read by their own contents", function()
    it("form and query: __pairs, __index, __len are not consulted", function()
      local form, calls = walked { b = LONG .. "b", a = walked { "x", "y" } }
      user:post("recognitions", form)
      assert.equals("a=x&a=y&b=" .. LONG .. "b", h.last_request(sb, "/recognitions").body)
      local query, qcalls = walked { q = "ad", page = 1 }
      assert(c:users(query))
      assert.equals("page=1&q=ad", h.last_request(sb, "/users").query)
      assert.equals(0, calls.n + qcalls.n)
    end)

    it("headers and json: only their own contents", function()
      local headers, calls = walked { ["X-One"] = "1" }
      local json, jcalls = walked { text = LONG }
      user:request { method = "POST", path = "recognitions", headers = headers, json = json }
      local r = h.last_request(sb, "/recognitions")
      assert.equals("1", r.headers["x-one"])
      assert.is_nil(r.headers.extra)
      assert.equals('{"text":"' .. LONG .. '"}', r.body)
      assert.equals(0, calls.n + jcalls.n)
    end)

    it("multipart, batch and scope lists: their own length, not __len", function()
      local parts, calls = walked { { name = "file", filename = "a.png", data = PNG } }
      assert(user:request { method = "POST", path = "uploads", multipart = parts })
      local list, lcalls = walked {}
      assert.same({}, c:batch(list))
      local scope, scalls = walked { "read" }
      local cl = h.client(sb, { scope = scope, token_auth = "post" })
      assert(cl:token())
      assert.truthy(h.last_request(sb, "/token").body:find("scope=read", 1, true))
      assert.is_nil(h.last_request(sb, "/token").body:find("__", 1, true))
      local alist, acalls = walked { "read", "write" }
      local url = c:authorize_url { scope = alist }
      assert.equals("read%2Cwrite", url:match("[?&]scope=([^&]*)"))
      assert.equals(0, calls.n + lcalls.n + scalls.n + acalls.n)
    end)

    it("send_recognition and users take walked tables as they are", function()
      local text = LONG .. " thanks"
      local crit = assert(user:recognition_criteria { nominees = "brady.garfinkel" })
      local id = crit.items and crit.items[1] and crit.items[1].id or 1
      local form, calls = walked { nominees = "brady.garfinkel", criterionId = id, recognitionText = text }
      user:send_recognition(form)
      local body = h.last_request(sb, "/recognitions").body
      assert.truthy(body:find("recognitionText=" .. text:gsub(" ", "%%20"), 1, true), body)
      assert.is_nil(body:find("extra", 1, true))
      local query, qcalls = walked { q = "ad" }
      for item in c:each("users", query) do assert(item) break end
      assert.equals("q=ad", h.last_request(sb, "/users").query)
      assert.equals(0, calls.n + qcalls.n)
    end)

    it("refuses a NUL byte in a form or query key", function()
      refused(function() user:post("recognitions", { ["a\0b"] = "1" }) end, "NUL", "form key")
      refused(function() c:get("users", { ["q\0x"] = "1" }) end, "NUL", "query key")
      refused(function() c:users { ["q\0"] = "1" } end, "NUL", "users query key")
      refused(function() h.client(sb, { scope = { "read\0write" } }) end, "scope", "scope entry")
      refused(function() c:authorize_url { state = "s\0t" } end, "NUL", "state")
      refused(function() c:request { method = "GET\0X", path = "users" } end, "method", "method")
      refused(function() c:request { path = "users", headers = { ["X-A\0B"] = "1" } } end, "header name", "header name")
      refused(function() c:request { ["path\0x"] = "users" } end, "unknown field", "request field")
      refused(function() h.client(sb, { ["retries\0x"] = 1 }) end, "unknown option", "option")
      refused(function() h.client(sb, { limits = { ["heavy\0x"] = { 1, 1 } } }) end, "limits", "limits key")
    end)
  end)

  describe("metamethods that raise, yield or give odd types", function()
    it("a raising __index gives its error and sends nothing, at every entry point", function()
      local entry = {
        client = function() achievers.client(raising()) end,
        token = function() achievers.token(raising()) end,
        request = function() c:request(raising()) end,
        async = function() c:async(raising()) end,
        batch = function() c:batch { raising() } end,
        multipart = function() user:request { method = "POST", path = "uploads", multipart = { raising() } } end,
        upload = function() user:upload(raising()) end,
        with_token = function() c:with_token(raising()) end,
        client_token = function() h.client(sb, { token = raising() }) end,
        authorize_url = function() c:authorize_url(raising()) end,
        handle_callback = function() c:handle_callback(raising(), "s") end,
      }
      for name, fn in pairs(entry) do
        refused(fn, "hostile __index raised", name)
      end
      assert(c:get("users")) -- and the client still works
    end)

    it("a yielding __index inside a coroutine is a clear error", function()
      local entry = {
        client = function() achievers.client(yielding()) end,
        token = function() achievers.token(yielding()) end,
        request = function() c:request(yielding()) end,
        multipart = function() user:request { method = "POST", path = "uploads", multipart = { yielding() } } end,
        upload = function() user:upload(yielding()) end,
        authorize_url = function() c:authorize_url(yielding()) end,
        handle_callback = function() c:handle_callback(yielding(), "s") end,
      }
      for name, fn in pairs(entry) do
        local before = requests()
        local co = coroutine.create(function() return pcall(fn) end)
        local ok, pok, msg = coroutine.resume(co)
        assert.is_true(ok, name)
        assert.is_false(pok, name)
        assert.matches("yield", tostring(msg), 1, false, name)
        assert.equals(before, requests(), name .. ": something was sent")
      end
    end)

    it("fields of the wrong type are refused clearly", function()
      local t = {}
      local f = function() end
      local cases = {
        { function() c:request(served { path = 12 }) end, "'path' must be a string" },
        { function() c:request(served { path = "users", query = f }) end, "'query' must be a table or a string" },
        { function() c:request(served { path = "users", headers = "x" }) end, "'headers' must be a table" },
        { function() c:request(served { path = "users", timeout = "soon" }) end, "'timeout'" },
        { function() c:request { path = "users", headers = { X = setmetatable({}, { __tostring = function() return "v" end }) } } end,
          "map strings to strings" },
        { function() user:request { method = "POST", path = "uploads", multipart = { served { name = "file", data = 5 } } } end,
          "needs 'data'" },
        { function() user:request { method = "POST", path = "uploads", multipart = { served { name = t, data = "x" } } } end,
          "'name' must be a string" },
        { function() user:request { method = "POST", path = "uploads", multipart = { served { name = "file", filename = 7, data = "x" } } } end,
          "'filename' must be a string" },
        { function() achievers.token(served { access_token = 5, expires_at = 1 }) end, "access_token" },
        { function() achievers.token(served { access_token = "a", expires_at = t }) end, "expires_at" },
        { function() achievers.client(served { base_url = t }) end, "'base_url' must be a string" },
        { function() achievers.client(served { base_url = sb.url, on_token = "x" }) end, "'on_token' must be a function" },
        { function() user:upload(served { data = t }) end, "'data' must be a string" },
        { function() user:upload(served { data = "x", filename = t }) end, "filename" },
        { function() c:authorize_url(served { state = t }) end, "state" },
        { function() c:authorize_url(served { scope = f }) end, "scope" },
      }
      for i, case in ipairs(cases) do
        refused(case[1], case[2], "case " .. i)
      end
    end)

    it("a client whose saved token expires at -2^63 prints a sane line", function()
      -- regression (found by fuzz_tables under UBSan): (int) cast of about -9.2e18
      local cl = achievers.client { base_url = sb.url, token = { access_token = "x", expires_at = -2 ^ 63 } }
      assert.matches("system token, %-1000000000 s left", tostring(cl))
    end)

    it("a __index that answers differently on every read is read once", function()
      -- the first read is a string; any later read would be a table
      local function flip(fields)
        local seen = {}
        return setmetatable({}, { __index = function(_, k)
          if seen[k] then return {} end
          seen[k] = true
          return fields[k]
        end })
      end
      local data = PNG .. LONG .. "once"
      assert(user:request { method = "POST", path = "uploads",
        multipart = { flip { name = "file", filename = "a.png", data = data } } })
      assert.truthy(h.last_request(sb, "/uploads").body:find(data, 1, true))
      local fired = 0
      local cl = achievers.client(flip { base_url = sb.url, client_id = sb.client_id,
        client_secret = sb.client_secret, on_token = function() fired = fired + 1 end })
      assert(cl:token())
      assert.equals(1, fired)
    end)
  end)
end)
