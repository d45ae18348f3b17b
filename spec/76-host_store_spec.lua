-- The host store (src/store/host.c) driven from plain Lua, under every Lua and the sanitizers:
-- the Lua driver hands the engine's state store operations out (ex:_next() -> "store", op),
-- coroutines carry them out with achievers.resty.ops on a stand-in for a lua_shared_dict and
-- answer them (ex:_store_reply), LuaSocket sends the requests to the sandbox. nginx runs the
-- same code in spec/75.
local h = require("helpers")
local socket = require("socket")
local http = require("socket.http")
local ltn12 = require("ltn12")

-- What achievers.resty.ops uses of nginx's API, on LuaSocket's clock.
local NGX = {
  now = socket.gettime,
  update_time = function() end,
  time = function() return math.floor(socket.gettime()) end,
  sleep = socket.sleep,
}

local function send(req)
  local out, headers = {}, {}
  for k, v in pairs(req.headers) do headers[k:lower()] = v end
  if req.body then headers["content-length"] = tostring(#req.body) end
  http.TIMEOUT = req.timeout
  local ok, status, rh = http.request {
    url = req.url, method = req.method, headers = headers,
    source = req.body and ltn12.source.string(req.body), sink = ltn12.sink.table(out),
  }
  if not ok then return { error = "network", message = tostring(status), reached = false } end
  return { status = status, headers = rh, body = table.concat(out) }
end

-- A coroutine that runs an exchange to its end: it yields the seconds it waits, and yields
-- once between carrying out a store operation and answering it (another may run meanwhile).
local function task(ex, exec, log)
  return coroutine.create(function()
    while true do
      local action, a = ex:_next()
      if action == "send" then
        ex:_feed(send(a))
      elseif action == "wait" then
        coroutine.yield(a)
      elseif action == "store" then
        if log then log[#log + 1] = a.op end
        local reply = exec(a)
        coroutine.yield(0)
        ex:_store_reply(a.id, reply)
      else
        return ex:result()
      end
    end
  end)
end

-- Runs the tasks side by side until every one has ended; their results, in order.
local function run_all(tasks)
  local wake, results, live = {}, {}, #tasks
  while live > 0 do
    local now, soonest = socket.gettime(), math.huge
    for i, co in ipairs(tasks) do
      if coroutine.status(co) == "suspended" and (wake[i] or 0) <= now then
        local ok, a, b = coroutine.resume(co)
        assert(ok, a)
        if coroutine.status(co) == "dead" then
          results[i] = { a, b }
          live = live - 1
        else
          wake[i] = socket.gettime() + (a or 0)
        end
      end
      if coroutine.status(co) == "suspended" then soonest = math.min(soonest, wake[i]) end
    end
    local dt = soonest - socket.gettime()
    if live > 0 and dt > 0 then socket.sleep(math.min(dt, 0.05)) end
  end
  return results
end

describe("the host store from plain Lua", function()
  local sb, ops, saved_ngx

  setup(function()
    sb = h.start_sandbox { limits = { default = { 4, 1 }, heavy = { 4, 1 } } }
    saved_ngx = rawget(_G, "ngx")
    _G.ngx = NGX
    ops = require("achievers.resty.ops")
  end)

  teardown(function()
    _G.ngx = saved_ngx
    if sb then sb:stop() end
  end)

  local function client(d, extra, grace)
    local c = h.client(sb, extra)
    c:_host_store { grace = grace }
    return c, ops.dict(d)
  end

  it("three calls on one core make one token request, kept in the store for the next client", function()
    local d = ops.local_dict()
    socket.sleep(1.1) -- the sandbox's window of anything before
    local before = sb:stats().token_requests
    local c, exec = client(d)
    local log = {}
    local tasks = {}
    for i = 1, 3 do tasks[i] = task(c:_exchange { path = "users/10726811" }, exec, log) end
    for _, r in ipairs(run_all(tasks)) do assert.is_table(r[1], tostring(r[2])) end
    assert.equals(before + 1, sb:stats().token_requests)
    local text = d:get(c:_store_key())
    assert.matches("^v1 %d+ ", text)
    assert.matches("^achievers:{.*}:token:%x+$", c:_store_key())
    local ops_seen = table.concat(log, " ")
    assert.matches("token_get lock token_get token_put unlock", ops_seen, 1, true)
    -- another core (another worker) on the same store: the stored token, no request
    local c2, exec2 = client(d)
    local r = run_all { task(c2:_exchange { path = "users/10726811" }, exec2) }
    assert.is_table(r[1][1], tostring(r[1][2]))
    assert.equals(before + 1, sb:stats().token_requests)
  end)

  it("two cores pace one budget through the store's leases: 0 429s", function()
    local d = ops.local_dict()
    local a, ea = client(d, { limits = { default = { 4, 1 } } })
    local b, eb = client(d, { limits = { default = { 4, 1 } } })
    run_all { task(a:_exchange("token"), ea), task(b:_exchange("token"), eb) }
    socket.sleep(1.1)
    local before = sb:stats().rate_limited
    local tasks = {}
    for i = 1, 12 do
      local c, e = a, ea
      if i % 2 == 0 then c, e = b, eb end
      tasks[i] = task(c:_exchange { path = "users/10726811" }, e)
    end
    local t0 = socket.gettime()
    for _, r in ipairs(run_all(tasks)) do assert.is_table(r[1], tostring(r[2])) end
    local elapsed = socket.gettime() - t0
    print(("\n  host store: 12 calls on 2 cores at 4 per 1 s: %.2f s, sandbox 429s %d"):format(
      elapsed, sb:stats().rate_limited - before))
    assert.equals(before, sb:stats().rate_limited)
    assert.is_true(elapsed >= 2, "12 calls at 4 per 1 s went too fast: " .. elapsed)
  end)

  it("an operation taken and never answered is answered after the grace; the call completes", function()
    local d = ops.local_dict()
    local c, exec = client(d, { scope = "read" }, 0.3)
    local before = sb:stats().token_requests
    local dead = c:_exchange("token")
    local action, op = dead:_next()
    assert.equals("store", action)
    assert.equals("token_get", op.op)
    local t0 = socket.gettime()
    local r = run_all { task(c:_exchange("token"), exec) }
    local took = socket.gettime() - t0
    assert.is_truthy(r[1][1], tostring(r[1][2]))
    assert.is_true(took >= 0.25, "did not wait for the operation in hand: " .. took)
    assert.equals(before + 1, sb:stats().token_requests)
    -- its late answer finds nothing waiting
    assert.is_false(dead:_store_reply(op.id, { ok = true }))
    -- a client dropped with operations queued and handed out frees them
    local c3 = client(d, { scope = "write" })
    local ex3 = c3:_exchange("token")
    assert.equals("store", (ex3:_next()))
    ex3, c3 = nil, nil
    collectgarbage()
    collectgarbage()
  end)

  it("keeps to the call's deadline while another worker holds the token lock", function()
    -- every lock is answered "held by someone else": the call waits on the slot's token
    -- request, and its own deadline must still end it, as the C driver's scheduler does
    local c = client(ops.local_dict(), { deadline = 0.3, scope = "write" })
    local ex = c:_exchange { path = "users/10726811" }
    local t0, locks, sent, action, a = socket.gettime(), 0, 0, nil, nil
    while socket.gettime() - t0 < 5 do
      action, a = ex:_next()
      if action == "store" then
        if a.op == "lock" then locks = locks + 1 end
        ex:_store_reply(a.id, { ok = true, granted = a.op == "lock" and 0 or nil })
      elseif action == "wait" then
        socket.sleep(a)
      elseif action == "send" then
        sent = sent + 1
        ex:_feed { error = "network", message = "not expected", reached = false }
      else
        break
      end
    end
    local took = socket.gettime() - t0
    assert.equals("done", action)
    local data, err = ex:result()
    assert.is_nil(data)
    assert.equals("timeout", err.kind)
    assert.equals(0, sent)
    assert.is_true(locks >= 1)
    assert.is_true(took < 1.5, "the deadline of 0.3 s ended the call only after " .. took .. " s")
  end)

  it("a client whose requests are moved from Lua has no blocking calls: a clear error, no hang", function()
    local c = h.client(sb)
    local ex = c:_exchange("token")
    assert.equals("send", (ex:_next()))
    local ok, err = pcall(c.get, c, "users/10726811")
    assert.is_false(ok)
    assert.matches("requests are moved from Lua", tostring(err), 1, true)
    -- a request of the libcurl driver is not the Lua driver's to step
    local d = h.client(sb)
    local req = d:async { path = "users/10726811" }
    assert.has_error(function() req:_next() end, "_next: not an exchange of client:_exchange")
    assert.is_table((req:result()))
  end)

  it("is only for a new client on the memory store", function()
    local c = h.client(sb, { token = { access_token = "abc", expires_at = os.time() + 86400 } })
    assert(c:get("users/10726811"))
    assert.has_error(function() c:_host_store {} end, "_host_store: only for a new client on the memory store")
    assert.has_error(function() h.client(sb):_host_store { prefix = "a b" } end)
  end)
end)
