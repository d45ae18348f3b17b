-- achievers.resty's defences, in Debian's nginx with its Lua module (2 workers, loopback): a
-- user's token never becomes everyone's, answers are capped and bounded in time while they are
-- read, tokens from the shared dictionary are header input, the proxy option works without
-- sending anything secret over a plaintext hop, the engine's token policy holds across
-- workers, connection pools never mix verified and unverified connections, ids are escaped,
-- and a foreign paging link ends `each` with an error. The code under test runs inside an
-- nginx worker (support/nginx.lua's /eval); the servers are the sandbox and small LuaSocket
-- servers in spec/support.
local h = require("helpers")
local nginx = require("support.nginx")
local servers = require("support.servers")
local tlsgen = require("support.tls")

-- Prepended to every piece of code run in a worker: a client on ARGS.url with ARGS's
-- credentials, and an error as plain fields.
local PRELUDE = [[
local resty = require("achievers.resty")
local cjson = require("cjson")
local function client(extra)
  local o = { base_url = ARGS.url, client_id = ARGS.client_id, client_secret = ARGS.client_secret,
              shared_dict = "achievers" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return resty.client(o)
end
local function plain(err)
  if type(err) ~= "table" then return err end
  return { kind = err.kind, message = err.message, status = err.status }
end
-- The shared token as the engine stores it (src/core/store.c): "v1 <expires_at> <fresh_until>
-- <skew>\n<type>\n<scope>\n<access token>", under the client's store key.
local function stored_text(access, expires_at)
  return string.format("v1 %d 0 0\nbearer\nread\n%s", expires_at, access)
end
local function stored_token(cl)
  local raw = cl.dict:get(cl.key)
  return raw and raw:match("^v1 [^\n]*\n[^\n]*\n[^\n]*\n(.*)$")
end
]]

describe("achievers.resty under nginx", function()
  local sb, tsb, server, certs, cleanup_certs
  local hostile, stop_hostile, proxy_url, proxy_port, stop_proxy

  setup(function()
    certs, cleanup_certs = tlsgen.make()
    sb = h.start_sandbox {}
    tsb = h.start_sandbox { tls_cert = certs.cert, tls_key = certs.key }
    hostile, _, stop_hostile = servers.start("spec/support/hostile_server.lua")
    proxy_url, proxy_port, stop_proxy = servers.start("spec/support/tunnel_proxy.lua")
    server = nginx.start {}
  end)

  teardown(function()
    if server then server:stop() end
    if stop_hostile then stop_hostile() end
    if stop_proxy then stop_proxy() end
    if sb then sb:stop() end
    if tsb then tsb:stop() end
    if cleanup_certs then cleanup_certs() end
  end)

  -- Runs code in a worker with ARGS = the sandbox's (or `on`'s) url and credentials + extra.
  local function run(code, extra, on)
    on = on or sb
    local args = { url = on.url, client_id = on.client_id, client_secret = on.client_secret }
    for k, v in pairs(extra or {}) do args[k] = v end
    return server:eval(PRELUDE .. code, args)
  end

  local function hostile_stats() return servers.get_json(hostile .. "/stats") end
  local function proxy_stats() return servers.get_json(proxy_url .. "/stats") end

  it("refuses a user's token: no user acts as another, nor the system client as a user", function()
    local c = h.client(sb, { scope = "read,write" })
    local _, a = h.user_client(sb, c, "adele.olson")
    local _, b = h.user_client(sb, c, "brady.garfinkel")
    local out = run([[
      local r = { users = {} }
      for i, tok in ipairs(ARGS.tokens) do
        local ok, cl = pcall(client, { token = tok, scope = "read,write" })
        r.users[i] = { refused = not ok, message = not ok and tostring(cl) or nil }
        if ok then cl:get("users/10726811", { who = "user" .. i }) end
      end
      local page, err = client({ scope = "read,write" }):get("users/10726811", { who = "system" })
      r.system = page ~= nil
      return r
    ]], { tokens = { a:to_table(), b:to_table() } })
    -- whatever was sent, nobody acted with someone else's token
    local own = { user1 = a.access_token, user2 = b.access_token }
    for _, req in ipairs(sb:requests()) do
      local who = (req.query or ""):match("who=(%w+)")
      local auth = req.headers and req.headers["authorization"]
      if who == "system" then
        assert.is_true(auth ~= "Bearer " .. a.access_token and auth ~= "Bearer " .. b.access_token,
          "the system client acted as a user")
      elseif who then
        assert.equals("Bearer " .. own[who], auth, who .. " acted with another token")
      end
    end
    for i = 1, 2 do
      assert.is_true(out.users[i].refused, "a client with a user's token was made")
      assert.matches("option 'token' is not supported", out.users[i].message, 1, true)
      assert.is_nil(out.users[i].message:find(i == 1 and a.access_token or b.access_token, 1, true))
    end
    assert.is_true(out.system)
  end)

  describe("caps what it reads", function()
    local function call(path, extra)
      return run([[
        local cl = client(ARGS.opts)
        collectgarbage()
        local before = collectgarbage("count")
        local data, err = cl:get(ARGS.path)
        return { ok = data ~= nil, err = plain(err), grew_kb = collectgarbage("count") - before }
      ]], { path = path, opts = extra or { max_response_size = 1024 * 1024, retries = 0 } }, {
        url = hostile, client_id = "hostile", client_secret = "secret" })
    end

    for _, path in ipairs { "endless-unsized", "endless-chunked", "huge-length" } do
      it("an answer over max_response_size (" .. path .. ") stops being read, a decode error as libcurl's", function()
        local out = call(path)
        assert.is_false(out.ok)
        assert.equals("decode", out.err.kind)
        assert.equals("the answer is larger than max_response_size (1048576 bytes)", out.err.message)
        local sent = hostile_stats().sent["/api/v5/" .. path]
        assert.is_true(sent < 8 * 1024 * 1024, ("the server got to send %d bytes of 64 MiB"):format(sent))
      end)
    end

    for _, path in ipairs { "endless-headers", "long-header" } do
      it("headers without end (" .. path .. ") stop being read, a decode error", function()
        local out = call(path)
        assert.is_false(out.ok)
        assert.equals("decode", out.err.kind)
        assert.matches("header", out.err.message)
        local sent = hostile_stats().sent["/api/v5/" .. path]
        assert.is_true(sent < 4 * 1024 * 1024, ("the server got to send %d bytes of 16 MiB"):format(sent))
      end)
    end
  end)

  it("ends an answer that never gets past interim (1xx) answers", function()
    local out = run([[
      local data, err = client({ retries = 0 }):get("endless-interim")
      return { ok = data ~= nil, err = plain(err) }
    ]], nil, { url = hostile, client_id = "hostile", client_secret = "secret" })
    assert.is_false(out.ok)
    assert.equals("network", out.err.kind)
    assert.matches("interim", out.err.message)
    local sent = hostile_stats().sent["/api/v5/endless-interim"]
    assert.is_true(sent < 4 * 1024 * 1024, ("the server got to send %d bytes of 16 MiB"):format(sent))
  end)

  it("still reads good answers: small chunks with extensions and trailers, no length, a 100 first", function()
    local out = run([[
      local cl = client { max_response_size = 1024 }
      local r = {}
      for _, path in ipairs { "chunked-small", "unsized-small", "interim" } do
        local data, err = cl:get(path)
        r[path] = data and data.items or plain(err)
      end
      return r
    ]], nil, { url = hostile, client_id = "hostile", client_secret = "secret" })
    assert.same({ { id = 1 }, { id = 2 }, { id = 3 } }, out["chunked-small"])
    assert.same({ { id = 7 } }, out["unsized-small"])
    assert.same({ { id = 9 } }, out["interim"])
  end)

  for _, path in ipairs { "trickle-headers", "trickle-body" } do
    it("keeps to timeout for the whole call when the server trickles (" .. path .. ")", function()
      local out = run([[
        local cl = client { timeout = 2, retries = 0 }
        assert(cl:token())
        ngx.update_time()
        local t0 = ngx.now()
        local data, err = cl:get(ARGS.path)
        ngx.update_time()
        return { ok = data ~= nil, err = plain(err), took = ngx.now() - t0 }
      ]], { path = path }, { url = hostile, client_id = "hostile", client_secret = "secret" })
      print(("\n  resty: %s with timeout = 2 ended after %.2f s"):format(path, out.took))
      assert.is_false(out.ok)
      assert.equals("timeout", out.err.kind)
      -- a byte every 0.5 s for 60 s: per-read timeouts alone would wait for all of it
      assert.is_true(out.took < 10, ("the call took %.1f s"):format(out.took))
    end)
  end

  it("client:token() of a new client takes the dictionary's token: no token request", function()
    run([[ ngx.shared.achievers:flush_all() assert(client():token()) return true ]])
    local n0 = sb:stats().token_requests
    local out = run([[
      local a = assert(client():token())
      local b = assert(client():token())
      return { a = a.access_token, b = b.access_token }
    ]])
    assert.equals(out.a, out.b)
    assert.equals(n0, sb:stats().token_requests)
  end)

  it("never puts a dictionary token with control bytes in a header, and drops it", function()
    local bad = { "planted\r\nX-Injected: 1", "planted\0nul", "planted\1ctl", "planted\127del" }
    local before = sb:stats().token_requests
    local out = run([[
      local r = {}
      for i, bad in ipairs(ARGS.bad) do
        local cl = client()
        cl.dict:set(cl.key, stored_text(bad, ngx.time() + 86400))
        local user, err = cl:get("users/10726811")
        local now = stored_token(cl)
        r[i] = { ok = user ~= nil, err = plain(err), kept = now == bad,
                 clean = type(now) == "string" and not now:find("[^\33-\126]") }
      end
      return r
    ]], { bad = bad })
    for i = 1, #bad do
      assert.is_true(out[i].ok, "call " .. i .. ": " .. tostring(out[i].err and out[i].err.message))
      assert.is_false(out[i].kept, "the bad token stayed in the dictionary")
      assert.is_true(out[i].clean)
    end
    for _, req in ipairs(sb:requests()) do
      assert.is_nil(req.headers["x-injected"])
      assert.is_nil((req.headers["authorization"] or ""):find("planted", 1, true))
    end
    assert.equals(#bad, sb:stats().token_requests - before) -- one new token for each planted one
  end)

  describe("proxy", function()
    it("tunnels https:// with CONNECT, TLS end to end", function()
      local out = run([[
        local cl = client { proxy = ARGS.proxy, insecure = true }
        local user, err = cl:get("users/10726811")
        return { ok = user ~= nil, err = plain(err) }
      ]], { proxy = proxy_url }, tsb)
      assert.is_true(out.ok, out.err and out.err.message)
      local st = proxy_stats()
      assert.is_true(st.connect >= 1)
      assert.equals(0, st.forward)
      assert.equals("CONNECT 127.0.0.1:" .. tsb.port, st.targets[1])
    end)

    it("sends http:// through a proxy on loopback as absolute-form requests", function()
      local before = proxy_stats().forward
      local out = run([[
        local cl = client { proxy = ARGS.proxy }
        local user, err = cl:get("users/10726811")
        return { ok = user ~= nil, err = plain(err) }
      ]], { proxy = "http://127.0.0.1:" .. proxy_port })
      assert.is_true(out.ok, out.err and out.err.message)
      local st = proxy_stats()
      assert.is_true(st.forward > before)
      assert.equals("GET " .. sb.url .. "/api/v5/users/10726811", st.targets[#st.targets])
    end)

    it("refuses a plaintext hop off loopback, a TLS proxy, and credentials in the proxy URL", function()
      local out = run([[
        local r = {}
        for i, p in ipairs(ARGS.proxies) do
          local ok, e = pcall(client, { proxy = p })
          r[i] = not ok and tostring(e) or "accepted"
        end
        return r
      ]], { proxies = { "http://192.0.2.1:3128", "https://127.0.0.1:3128", "http://user:pw@127.0.0.1:3128" } })
      assert.matches("not on loopback", out[1], 1, true)
      assert.matches("http://", out[2], 1, true)
      assert.matches("credentials", out[3], 1, true)
      assert.is_nil(out[3]:find("pw", 1, true))
      -- https:// through a proxy off loopback is fine: the tunnel carries TLS; so are no proxy
      -- (false, "") and a plaintext hop the caller accepted with allow_http
      assert.is_true(run([[ return pcall(client, { proxy = "http://192.0.2.1:3128" }) ]], nil, tsb))
      assert.is_true(run([[ return pcall(client, { proxy = false }) and pcall(client, { proxy = "" }) and
        pcall(client, { proxy = "http://192.0.2.1:3128", allow_http = true }) ]]))
    end)
  end)

  describe("token policy", function()
    it("uses a short-lived token for a while instead of asking again on every call", function()
      local url, stop, stats = h.scripted_server("fresh_tokens") -- tokens live 1 h < refresh_window
      local ok, err = pcall(function()
        for _ = 1, 2 do -- two evals: either worker, or both
          local out = run([[
            local n = 0
            for _ = 1, 10 do if client():get("users") then n = n + 1 end end
            return n
          ]], nil, { url = url, client_id = "fresh", client_secret = "secret" })
          assert.equals(10, out)
        end
        assert.equals(1, stats().tokens)
      end)
      stop()
      assert(ok, err)
    end)

    it("after a 401 stores the new token and drops the rejected one, one token request", function()
      local before = sb:stats().token_requests
      local out = run([[
        local cl = client()
        assert(cl:get("users/10726811"))
        cl.dict:set(cl.key, stored_text("rejected0000000000000000000000000000", ngx.time() + 86400))
        local user, err = client():get("users/10726811")
        return { ok = user ~= nil, err = plain(err), now = stored_token(cl) }
      ]])
      assert.is_true(out.ok, out.err and out.err.message)
      assert.are_not.equal("rejected0000000000000000000000000000", out.now)
      for _ = 1, 4 do -- either worker: the stored token serves
        assert.is_true(run([[ return client():get("users/10726811") ~= nil ]]))
      end
      assert.equals(1, sb:stats().token_requests - before)
    end)
  end)

  it("two calls rejected at once make one token request: the second takes the first's token", function()
    local first = run([[
      local cl = client()
      assert(cl:get("users/10726811"))
      return stored_token(cl)
    ]])
    sb:revoke(first)
    local before = sb:stats().token_requests
    local out = run([[
      local a, b = client(), client() -- two engines, as two workers have
      assert(a:token())
      assert(b:token())
      local ta = ngx.thread.spawn(function() return a:get("users/10726811") ~= nil end)
      local tb = ngx.thread.spawn(function() return b:get("users/10726811") ~= nil end)
      local _, oka = ngx.thread.wait(ta)
      local _, okb = ngx.thread.wait(tb)
      return { a = oka, b = okb, now = stored_token(a) }
    ]])
    assert.is_true(out.a)
    assert.is_true(out.b)
    assert.are_not.equal(first, out.now)
    assert.equals(1, sb:stats().token_requests - before)
  end)

  it("never hands a connection made without verification to a client that verifies", function()
    local out = run([[
      local user, err = client({ insecure = true }):get("users/10726811")
      local r = { insecure = { ok = user ~= nil, err = plain(err) } }
      user, err = client():get("users/10726811") -- nginx trusts the system CAs, not the test CA
      r.verifying = { ok = user ~= nil, err = plain(err) }
      return r
    ]], nil, tsb)
    assert.is_true(out.insecure.ok, out.insecure.err and out.insecure.err.message)
    assert.is_false(out.verifying.ok, "the verifying client used the unverified connection")
    assert.equals("tls", out.verifying.err.kind)
    assert.matches("lua_ssl_trusted_certificate", out.verifying.err.message, 1, true)
  end)

  it("escapes ids with / or @ in them (no gsub capture raise)", function()
    local out = run([[
      local cl = client()
      local r = {}
      for i, id in ipairs { "a/b", "someone@example.com", "100%" } do
        local ok, user, err = pcall(cl.user, cl, id)
        r[i] = { raised = not ok and tostring(user) or false, err = plain(err) }
      end
      -- a bad id raises as the C client's helpers do (the same encoder)
      local _, empty = pcall(cl.user, cl, "")
      local _, ctl = pcall(cl.user, cl, "a\r\nb")
      local c = require("achievers").client { base_url = ARGS.url }
      local _, cempty = pcall(c.user, c, "")
      r[4] = { empty = tostring(empty), ctl = tostring(ctl), cempty = tostring(cempty) }
      return r
    ]])
    for i = 1, 3 do
      assert.is_false(out[i].raised)
      assert.equals("not_found", out[i].err.kind)
    end
    assert.matches("user: id must not be empty", out[4].empty, 1, true)
    assert.is_truthy(out[4].empty:find(out[4].cempty, 1, true), out[4].cempty)
    assert.matches("must not contain CR, LF or NUL", out[4].ctl, 1, true)
    local paths = {}
    for _, req in ipairs(sb:requests()) do paths[req.path] = true end
    assert.is_true(paths["/api/v5/users/a%2Fb"] or paths["/api/v5/users/a/b"])
  end)

  it("each: pages by number up to totalPages with the query, as the C client's each", function()
    local code = [[
      local got, pages = {}, {}
      for item, err, paging in client():each("numbered", { q = "abc" }) do
        if item == false then return { err = plain(err) } end
        got[#got + 1] = item.id .. ":" .. item.q
        pages[#pages + 1] = paging and paging.page or false
      end
      return { got = got, pages = pages }
    ]]
    local out = run(code, nil, { url = hostile, client_id = "hostile", client_secret = "secret" })
    assert.is_nil(out.err)
    assert.same({ "1:abc", "2:abc", "3:abc" }, out.got)
    assert.same({ 1, 2, 3 }, out.pages)
    -- the C client walks the same pages
    local c = h.achievers.client { base_url = hostile, client_id = "hostile", client_secret = "secret" }
    local cgot = {}
    for item in c:each("numbered", { q = "abc" }) do cgot[#cgot + 1] = item.id .. ":" .. item.q end
    assert.same(out.got, cgot)
  end)

  it("each: a page without an items list ends the walk with a decode error, as the C client's", function()
    local out = run([[
      local got, last = 0, nil
      for item, err in client():each("no-items") do
        if item == false then last = plain(err) break end
        got = got + 1
      end
      return { got = got, err = last }
    ]], nil, { url = hostile, client_id = "hostile", client_secret = "secret" })
    assert.equals(0, out.got)
    assert.equals("decode", out.err.kind)
    assert.matches("not a list", out.err.message, 1, true)
  end)

  it("each: a paging.next link to another host ends the walk with false, err", function()
    local out = run([[
      local got, last = {}, nil
      local ok, e = pcall(function()
        for item, err in client():each("foreign-next") do
          if item == false then last = plain(err) break end
          got[#got + 1] = item.id
        end
      end)
      return { raised = not ok and tostring(e) or false, got = got, err = last }
    ]], nil, { url = hostile, client_id = "hostile", client_secret = "secret" })
    assert.is_false(out.raised)
    assert.same({ 1 }, out.got)
    assert.equals("invalid", out.err.kind)
    assert.matches("another origin than base_url", out.err.message, 1, true)
  end)
end)
