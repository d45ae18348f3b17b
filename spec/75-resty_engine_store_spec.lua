-- achievers.resty's token sharing and pacing are the C engine's, through the state store the
-- driver carries out on the lua_shared_dict (src/store/host.c, achievers.resty.ops): nginx
-- with 2 workers, the sandbox, the dictionary read from inside a worker (/eval).
local h = require("helpers")
local nginx = require("support.nginx")
local socket = require("socket")

local sh, slurp = nginx.sh, nginx.slurp

local CLIENT = [[
                require("achievers.resty").client {
                    base_url = os.getenv("ACHIEVERS_BASE_URL"),
                    client_id = os.getenv("ACHIEVERS_CLIENT_ID"),
                    client_secret = os.getenv("ACHIEVERS_CLIENT_SECRET"),
                    shared_dict = "achievers", limits = { heavy = { 5, 2 } },
                }
]]

describe("achievers.resty: the engine's store under nginx", function()
  local sb, server

  setup(function()
    sb = h.start_sandbox { limits = { heavy = { 5, 2 }, default = { 1000, 60 } } }
    server = nginx.start {
      env = { ACHIEVERS_BASE_URL = sb.url, ACHIEVERS_CLIENT_ID = sb.client_id, ACHIEVERS_CLIENT_SECRET = sb.client_secret },
      -- one client per worker, as an application keeps it; each answer names its worker
      locations = [[
        location = /shared {
            content_by_lua_block {
                shared_client = shared_client or ]] .. CLIENT .. [[
                ngx.sleep(0.05) -- hold the connection a moment: the other worker takes some
                local user, err = shared_client:get("users/10726811")
                ngx.say(ngx.worker.pid(), " ", user and "ok" or tostring(err))
            }
        }
        location = /paced {
            content_by_lua_block {
                shared_client = shared_client or ]] .. CLIENT .. [[
                local page, err = shared_client:recognitions { pageSize = 1 }
                ngx.say(ngx.worker.pid(), " ", page and "ok" or tostring(err))
            }
        }
]],
    }
  end)

  teardown(function()
    if server then server:stop() end
    if sb then sb:stop() end
  end)

  -- n calls to path at once (one curl process); the answers' lines.
  local function burst(path, n)
    local out = server.prefix .. "/burst"
    sh("rm -rf " .. out .. " && mkdir -p " .. out)
    local args = {}
    for i = 1, n do args[i] = ("-o %s/%d http://127.0.0.1:%d%s?i=%d"):format(out, i, server.port, path, i) end
    local t0 = socket.gettime()
    assert(sh(("env -u LD_PRELOAD curl -s --parallel --parallel-immediate --parallel-max %d --max-time 60 %s 2>/dev/null"):format(
      n, table.concat(args, " "))))
    local lines = {}
    for i = 1, n do lines[i] = (slurp(out .. "/" .. i) or ""):gsub("\n$", "") end
    return lines, socket.gettime() - t0
  end

  local function tally(lines)
    local ok, pids, errs = 0, {}, {}
    for _, l in ipairs(lines) do
      local pid, what = l:match("^(%d+) (.*)$")
      if what == "ok" then ok = ok + 1 else errs[#errs + 1] = l end
      if pid then pids[pid] = true end
    end
    local npids = 0
    for _ in pairs(pids) do npids = npids + 1 end
    return ok, npids, table.concat(errs, "\n")
  end

  it("a revoked token: calls on both workers at once make exactly one token request", function()
    local warm = tally(burst("/shared", 8))
    assert.equals(8, warm)
    -- the shared token is the C store's text under the C store's key
    local entry = server:eval([[
      local c = require("achievers.resty").client { base_url = ARGS.url, client_id = ARGS.id,
        client_secret = ARGS.secret, shared_dict = "achievers" }
      return { key = c.key, text = ngx.shared.achievers:get(c.key) }
    ]], { url = sb.url, id = sb.client_id, secret = sb.client_secret })
    assert.matches("^achievers:{" .. sb.client_id:gsub("%p", "%%%0") .. "}:token:%x+$", entry.key)
    assert.matches("^v1 %d+ ", entry.text)
    -- until a burst has reached both workers (nginx decides who accepts), each burst after a
    -- revocation costs exactly one token request
    local both = 0
    for round = 1, 4 do
      sb:revoke()
      local before = sb:stats().token_requests
      local ok, npids, errs = tally(burst("/shared", 16))
      local asked = sb:stats().token_requests - before
      print(("\n  round %d: 16 calls after a revocation, %d ok, workers %d, token requests %d"):format(
        round, ok, npids, asked))
      if ok ~= 16 then print(server:error_log()) end
      assert.equals(16, ok, errs)
      assert.equals(1, asked)
      if npids >= 2 then both = both + 1 end
      if both >= 1 and round >= 2 then break end
    end
    assert.is_true(both >= 1, "no burst reached both workers")
  end)

  it("paces both workers on the engine's leases in the dictionary: 0 429s", function()
    socket.sleep(2.1) -- the sandbox's window of any call before
    local before = sb:stats()
    local lines, elapsed = burst("/paced", 15)
    local ok, npids, errs = tally(lines)
    local after = sb:stats()
    print(("\n  15 GET /recognitions at 5 per 2 s on %d workers: %.2f s, sandbox 429s %d"):format(
      npids, elapsed, after.rate_limited - before.rate_limited))
    assert.equals(15, ok, errs)
    assert.equals(before.rate_limited, after.rate_limited)
    assert.is_true(elapsed >= 4, "15 calls at 5 per 2 s went too fast: " .. elapsed)
    -- the budget is the engine's: leased slots under the token's hash, the C store's key
    local keys = server:eval([[
      local out = {}
      for _, k in ipairs(ngx.shared.achievers:get_keys(0)) do
        if k:find(":rate:", 1, true) then out[#out + 1] = k .. " = " .. tostring(ngx.shared.achievers:get(k)) end
      end
      return out
    ]])
    local all = table.concat(keys, "\n")
    assert.matches("achievers:{" .. sb.client_id:gsub("%p", "%%%0") .. "}:rate:%x+:recognitions = [%d.]+ %S+ %d+;", all)
  end)

  it("a store operation taken by a request that died is answered after the grace; the call completes", function()
    local before = sb:stats().token_requests
    local out = server:eval([[
      local c = require("achievers.resty").client { base_url = ARGS.url, client_id = ARGS.id,
        client_secret = ARGS.secret, shared_dict = "achievers", scope = "read" }
      ngx.shared.achievers:delete(c.key) -- no shared token: the engine asks the store, then the server
      -- a request takes the engine's first store operation and dies without answering it
      local taken
      local t = ngx.thread.spawn(function()
        local ex = c.c:_exchange("token")
        local action, op = ex:_next()
        taken = action == "store" and op.op
        error("this request died")
      end)
      ngx.thread.wait(t)
      ngx.update_time()
      local t0 = ngx.now()
      local tok, err = c:token()
      ngx.update_time()
      return { taken = taken, ok = tok ~= nil, err = err and tostring(err), took = ngx.now() - t0 }
    ]], { url = sb.url, id = sb.client_id, secret = sb.client_secret })
    print(("\n  an operation left unanswered: the call took %.2f s"):format(out.took))
    assert.equals("token_get", out.taken)
    assert.is_true(out.ok, out.err)
    -- it waited for the grace (5 s), not for ever
    assert.is_true(out.took >= 4, "the call did not wait for the operation in hand: " .. out.took)
    assert.is_true(out.took < 30, "too slow: " .. out.took)
    assert.equals(before + 1, sb:stats().token_requests)
  end)
end)
