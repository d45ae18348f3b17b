-- achievers.resty with a Redis store: nginx instances (2 workers each) and C-client processes
-- that use one client_id share one system token and one budget per access token through one
-- real redis-server, with the same keys and scripts; Redis stopped mid-run does not stop
-- nginx's calls; user clients share their budgets by token hash and never put a token in Redis.
local h = require("helpers")
local nginx = require("support.nginx")
local R = require("support.redis")
local socket = require("socket")
local json = require("dkjson")

local PRELUDE = [[
local resty = require("achievers.resty")
local function client(extra)
  local o = { base_url = ARGS.url, client_id = ARGS.client_id, client_secret = ARGS.client_secret,
              shared_dict = "achievers", scope = ARGS.scope or "read,write",
              store = ARGS.redis and { redis = ARGS.redis, fleet_size = ARGS.fleet_size or 4,
                                       timeout = ARGS.timeout } or nil }
  for k, v in pairs(extra or {}) do o[k] = v end
  return resty.client(o)
end
]]

local query_of = require("sandbox_http").query_of

-- An eval on nginx run in the background (curl): read its result later with :result().
local function eval_async(server, code, args)
  local body = os.tmpname()
  local f = assert(io.open(body, "w"))
  f:write(json.encode { code = PRELUDE .. code, args = args })
  f:close()
  local p = assert(io.popen(("env -u LD_PRELOAD curl -s --max-time 120 -X POST --data-binary @%s " ..
    "http://127.0.0.1:%d/eval"):format(body, server.port)))
  return { result = function()
    local out = p:read("*a")
    p:close()
    os.remove(body)
    local r = json.decode(out, 1, json.null)
    assert(type(r) == "table" and r.ok, "eval: " .. tostring(out) .. "\n" .. server:error_log())
    return r.result
  end }
end

-- Every key and every value in Redis, as one text.
local function redis_dump(r)
  local out = {}
  for _, k in ipairs(r:keys("*")) do
    local t = r:call("TYPE", k)
    local v
    if t == "string" then
      v = r:call("GET", k)
    elseif t == "zset" then
      v = table.concat(r:call("ZRANGE", k, 0, -1), " ")
    else
      v = "(" .. tostring(t) .. ")"
    end
    out[#out + 1] = k .. " = " .. tostring(v)
  end
  return table.concat(out, "\n")
end

describe("achievers.resty with a Redis store", function()
  local r, sb, ng1, ng2
  local heavy = { 10, 2 }

  setup(function()
    r = R.start()
    sb = h.start_sandbox { limits = { heavy = heavy, default = { 1000, 60 } } }
    local env = { ACHIEVERS_BASE_URL = sb.url, ACHIEVERS_CLIENT_ID = sb.client_id, ACHIEVERS_CLIENT_SECRET = sb.client_secret }
    ng1 = nginx.start { env = env }
    ng2 = nginx.start { env = env }
  end)

  teardown(function()
    if ng1 then ng1:stop() end
    if ng2 then ng2:stop() end
    if sb then sb:stop() end
    if r then r:stop() end
  end)

  local function args(extra)
    local a = { url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret, redis = r.url }
    for k, v in pairs(extra or {}) do a[k] = v end
    return a
  end

  -- A clean slate: no token, no budget, in Redis or in either nginx's dictionary; and the
  -- sandbox's windows of the test before have passed (it may hand out the same token again).
  local function reset()
    r:call("FLUSHALL")
    for _, ng in ipairs { ng1, ng2 } do
      ng:eval("ngx.shared.achievers:flush_all() return true") -- (one dictionary for both workers)
    end
    socket.sleep(heavy[2] + 0.1)
  end

  -- The fleet of the issue: 2 nginx (2 workers each, 2 runs on each) and 4 C processes
  -- (lua), one client_id, each reading GET /recognitions (heavy: 10 per 2 s at the sandbox)
  -- and sending achievements in between; through Redis, or (redis = false) each on its own.
  local function fleet(redis)
    reset()
    local gets, posts, evals_per_nginx, procs = 6, 2, 2, 4
    local before = sb:stats()
    local start = socket.gettime() + 2.0
    local code = [[
      local c = client { limits = { heavy = ARGS.heavy, default = { 1000, 60 } } }
      ngx.update_time()
      if ARGS.start > ngx.now() then ngx.sleep(ARGS.start - ngx.now()) end
      local out = { ok = 0, failed = 0, pid = ngx.worker.pid() }
      local every = math.floor(ARGS.gets / ARGS.posts)
      for i = 1, ARGS.gets do
        local page, err = c:recognitions { pageSize = 1 }
        if page then out.ok = out.ok + 1 else out.failed = out.failed + 1 out.err = tostring(err) end
        if i % every == 0 then
          local a, e = c:create_achievement { participants = "brady.garfinkel", description = "fleet " .. i }
          if a then out.ok = out.ok + 1 else out.failed = out.failed + 1 out.err = tostring(e) end
        end
      end
      ngx.update_time()
      out.last = ngx.now()
      return out
    ]]
    local runs = {}
    for _, ng in ipairs { ng1, ng2 } do
      for _ = 1, evals_per_nginx do
        runs[#runs + 1] = eval_async(ng, code, args { heavy = heavy, gets = gets, posts = posts,
          start = start, redis = redis and r.url or nil })
      end
    end
    local pipes = {}
    for i = 1, procs do
      pipes[i] = assert(io.popen(string.format("%s spec/support/fleet_worker.lua '%s/?.so' '%s' '%s' '%s' '%s' %.6f %d %d %d %g %d %g",
        h.lua, h.build, sb.url, sb.client_id, sb.client_secret, redis and r.url or "memory", start, gets,
        posts, heavy[1], heavy[2], 1000, 60)))
    end
    local ok, failed, last, pids, errs = 0, 0, start, {}, {}
    for _, run in ipairs(runs) do
      local o = run.result()
      ok, failed = ok + o.ok, failed + o.failed
      if o.err then errs[#errs + 1] = o.err end
      if o.last > last then last = o.last end
      pids[o.pid] = true
    end
    for i = 1, procs do
      local line = pipes[i]:read("*a")
      pipes[i]:close()
      local k, f, _, l = line:match("^done (%d+) (%d+) ([%d.]+) ([%d.]+)")
      assert(k, "a C process: " .. line)
      ok, failed = ok + tonumber(k), failed + tonumber(f)
      if tonumber(l) > last then last = tonumber(l) end
    end
    local reads = gets * (2 * evals_per_nginx + procs)
    local st = sb:stats()
    local npids = 0
    for _ in pairs(pids) do npids = npids + 1 end
    return {
      total = (gets + posts) * (2 * evals_per_nginx + procs), ok = ok, failed = failed, errs = errs,
      elapsed = last - start, ideal = math.floor((reads - 1) / heavy[1]) * heavy[2],
      rate_limited = st.rate_limited - before.rate_limited,
      token_requests = st.token_requests - before.token_requests, workers = npids,
    }
  end

  it("2 nginx (2 workers each) and 4 C processes read and send: 0 429s, 1 token request, <= 1.1 x ideal", function()
    local f = fleet(true)
    print(string.format("\n  nginx x2 + C x4 through Redis: %d calls (%d failed) in %.2f s, ideal %.2f s (x%.3f), " ..
      "sandbox 429s %d, token requests %d, nginx workers used %d",
      f.ok, f.failed, f.elapsed, f.ideal, f.elapsed / f.ideal, f.rate_limited, f.token_requests, f.workers))
    assert.equals(0, f.failed, table.concat(f.errs, "\n"))
    assert.equals(f.total, f.ok)
    assert.equals(0, f.rate_limited)
    assert.equals(1, f.token_requests)
    assert.is_true(f.elapsed <= 1.1 * f.ideal, string.format("%.2f s for an ideal of %.2f s", f.elapsed, f.ideal))
    -- one budget for all: under the token's hash, the C client's bucket name
    local keys = table.concat(r:keys("*"), "\n")
    assert.matches("achievers:{" .. sb.client_id:gsub("%p", "%%%0") .. "}:rate:%x+:recognitions", keys)
    -- the same fleet without Redis, beside it (not asserted): every process on its own
    local n = fleet(false)
    print(string.format("  the same without Redis: %d ok, %d failed in %.2f s, sandbox 429s %d, token requests %d",
      n.ok, n.failed, n.elapsed, n.rate_limited, n.token_requests))
  end)

  it("a token a C process put is used by nginx, and one nginx put is used by a C process", function()
    reset()
    local achievers = require("achievers")
    local before = sb:stats().token_requests
    -- C first
    local c = achievers.client { base_url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret,
      scope = "read,write", store = { redis = r.url } }
    local ct = assert(c:token())
    local out = ng1:eval(PRELUDE .. [[
      local t = assert(client():token())
      local page = client():users { pageSize = 1 }
      return { token = t.access_token, ok = page ~= nil }
    ]], args())
    assert.equals(ct.access_token, out.token, "nginx did not take the C process's token")
    assert.is_true(out.ok)
    assert.equals(before + 1, sb:stats().token_requests)
    -- nginx first (another scope: another key)
    out = ng2:eval(PRELUDE .. [[
      local t = assert(client():token())
      return { token = t.access_token }
    ]], args { scope = "read" })
    assert.equals(before + 2, sb:stats().token_requests)
    local c2 = achievers.client { base_url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret,
      scope = "read", store = { redis = r.url } }
    local t2 = assert(c2:token())
    assert.equals(out.token, t2.access_token, "the C process did not take nginx's token")
    assert.equals(before + 2, sb:stats().token_requests)
    local page = assert(c2:users { pageSize = 1 })
    assert.is_table(page.items)
    -- the stored form is the C client's: its text, under its key
    local keys = r:keys("achievers:{" .. sb.client_id .. "}:token:*")
    assert.equals(2, #keys)
    for _, k in ipairs(keys) do
      assert.matches("^achievers:{.*}:token:%x+$", k)
      assert.matches("^v1 %d+ ", r:call("GET", k))
    end
  end)

  it("Redis stopped mid-run: nginx calls go on (paced locally, logged, on_store), then resume", function()
    reset()
    local run = eval_async(ng1, [[
      local events = {}
      local c = client { limits = { heavy = ARGS.heavy, default = { 1000, 60 } },
        on_store = function(e) events[#events + 1] = e.state end }
      local out = { ok = 0, failed = 0, t = {} }
      ngx.update_time()
      local t0 = ngx.now()
      while ngx.now() - t0 < 6 do
        local page, err = c:recognitions { pageSize = 1 }
        if page then out.ok = out.ok + 1 else out.failed = out.failed + 1 out.err = tostring(err) end
        ngx.update_time()
        out.t[#out.t + 1] = ngx.now() - t0
      end
      out.events = events
      return out
    ]], args { timeout = 0.2, fleet_size = 2, heavy = heavy })
    local before = sb:stats().rate_limited
    socket.sleep(1.2)
    r:pause()
    socket.sleep(2.4)
    r:resume()
    local out = run.result()
    print(string.format("\n  Redis paused for 2.4 s of 6: %d calls ok, %d failed, on_store %s, sandbox 429s %d",
      out.ok, out.failed, table.concat(out.events, ","), sb:stats().rate_limited - before))
    assert.equals(0, out.failed, out.err)
    assert.same({ "down", "up" }, out.events)
    -- calls went on while Redis was stopped (between 1.2 s and 3.6 s)
    local during = 0
    for _, t in ipairs(out.t) do if t > 1.6 and t < 3.5 then during = during + 1 end end
    assert.is_true(during >= 2, "no call went through while Redis was stopped")
    assert.equals(before, sb:stats().rate_limited)
    local log = ng1:error_log()
    assert.matches("%[warn%].-achievers: Redis at 127%.0%.0%.1:%d+ is down", log)
    assert.matches("%[warn%].-achievers: Redis is back", log)
    -- resumed: the budget is Redis's again
    assert.matches(":rate:%x+:recognitions", table.concat(r:keys("*"), "\n"))
  end)

  it("user clients share budgets by token hash across nginx instances and never write a token to Redis", function()
    reset()
    -- a person signs in through nginx 1
    local a = ng1:eval(PRELUDE .. [[
      local url, state, verifier = client():authorize_url()
      return { url = url, state = state, verifier = verifier }
    ]], args())
    local code = sb:consent { user = "adele.olson", scope = "read,write", code_challenge = query_of(a.url).code_challenge }
    local tok = ng1:eval(PRELUDE .. [[
      local tok, err = client():handle_callback("code=" .. ARGS.code .. "&state=" .. ARGS.state, ARGS.state, ARGS.verifier)
      return tok and tok:to_table() or { err = tostring(err) }
    ]], args { code = code, state = a.state, verifier = a.verifier })
    assert.is_string(tok.access_token, tok.err)
    local before = sb:stats().rate_limited
    local code_as = [[
      local c = client { limits = { heavy = { 5, 2 }, default = { 1000, 60 } } }
      local me = c:with_token(ARGS.tok)
      ngx.update_time()
      if ARGS.start > ngx.now() then ngx.sleep(ARGS.start - ngx.now()) end
      local out = { ok = 0, failed = 0 }
      for i = 1, 4 do
        local page, err = me:recognitions { pageSize = 1 }
        if page then out.ok = out.ok + 1 else out.failed = out.failed + 1 out.err = tostring(err) end
      end
      return out
    ]]
    local start = socket.gettime() + 1.0
    local runs = {}
    for _, ng in ipairs { ng1, ng2, ng1, ng2 } do
      runs[#runs + 1] = eval_async(ng, code_as, args { tok = tok, start = start })
    end
    local ok = 0
    for _, run in ipairs(runs) do
      local o = run.result()
      assert.equals(0, o.failed, o.err)
      ok = ok + o.ok
    end
    local elapsed = socket.gettime() - start
    print(string.format("\n  one person, 16 calls from 2 nginx at 5 per 2 s: %.2f s, sandbox 429s %d",
      elapsed, sb:stats().rate_limited - before))
    assert.equals(16, ok)
    assert.equals(before, sb:stats().rate_limited)
    assert.is_true(elapsed >= 6 * 0.95, "16 calls at 5 per 2 s went too fast: " .. elapsed)
    -- Redis holds that person's budget under the token's hash, and no token of theirs
    local dump = redis_dump(r)
    local hash = require("achievers")._sha256_hex(tok.access_token):sub(1, 16)
    assert.is_truthy(dump:find(":rate:" .. hash .. ":recognitions", 1, true), dump)
    assert.is_nil(dump:find(tok.access_token, 1, true), "a user's token is in Redis")
    if tok.refresh_token then assert.is_nil(dump:find(tok.refresh_token, 1, true)) end
    assert.is_nil(dump:find(":token:", 1, true), "a token entry in Redis: " .. dump)
  end)

  it("a wrong password is a clear error on the first call, not a silent local run", function()
    local rp = R.start { password = "s3cret-pw" }
    finally(function() rp:stop() end)
    local out = ng1:eval(PRELUDE .. [[
      local c = client { store = { redis = ARGS.redis, password = "wrong-pw" } }
      local page, err = c:users { pageSize = 1 }
      local ok = client { store = { redis = ARGS.redis, password = "s3cret-pw" } }:users { pageSize = 1 }
      return { page = page ~= nil, kind = err and err.kind, code = err and err.code, msg = err and err.message,
               right = ok ~= nil, str = tostring(c) }
    ]], args { redis = rp.url })
    assert.is_false(out.page)
    assert.equals("invalid", out.kind)
    assert.equals("store", out.code)
    assert.matches("refused us", out.msg)
    assert.is_nil(out.msg:find("wrong-pw", 1, true))
    assert.is_nil(out.str:find("wrong-pw", 1, true))
    assert.is_true(out.right)
  end)
end)
