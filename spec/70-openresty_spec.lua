-- achievers.resty in Debian's nginx with its Lua module: 2 workers, loopback only, the
-- example configuration of examples/openresty, a sandbox answering after LATENCY.
local h = require("helpers")
local socket = require("socket")

-- The sandbox's answer time: a worker that blocked on a call would hold a /ping that long.
local LATENCY = 1.0

local nginx = require("support.nginx")
local sh, slurp = nginx.sh, nginx.slurp

describe("achievers.resty under nginx", function()
  local sb, server, prefix, port

  setup(function()
    sb = h.start_sandbox { latency_ms = math.floor(LATENCY * 1000), limits = { heavy = { 5, 2 }, default = { 500, 120 } } }
    server = nginx.start {
      env = { ACHIEVERS_BASE_URL = sb.url, ACHIEVERS_CLIENT_ID = sb.client_id, ACHIEVERS_CLIENT_SECRET = sb.client_secret },
      -- one more location for the shared rate governor: limits scaled down to 5 per 2 s
      locations = [[
        location = /paced {
            content_by_lua_block {
                paced = paced or require("achievers.resty").client {
                    base_url = os.getenv("ACHIEVERS_BASE_URL"),
                    client_id = os.getenv("ACHIEVERS_CLIENT_ID"),
                    client_secret = os.getenv("ACHIEVERS_CLIENT_SECRET"),
                    shared_dict = "achievers", limits = { heavy = { 5, 2 } },
                }
                local page, err = paced:recognitions { pageSize = 1 }
                ngx.status = page and 200 or (err.status or 502)
                ngx.say(page and "ok" or tostring(err))
            }
        }
]],
    }
    prefix, port = server.prefix, server.port
  end)

  teardown(function()
    if server then server:stop() end
    if sb then sb:stop() end
  end)

  local function ping() return server:ping() end

  it("answers 50 concurrent calls to a slow API, never blocks a worker, and fetches one token", function()
    local out = prefix .. "/curl.out"
    local t0 = socket.gettime()
    -- one curl process with 50 transfers in parallel (50 processes would load the 2 cores)
    local args = {}
    for i = 1, 50 do args[i] = ("-o /dev/null http://127.0.0.1:%d/users/10726811?i=%d"):format(port, i) end
    assert(sh(("env -u LD_PRELOAD curl -s --parallel --parallel-immediate --parallel-max 50 --max-time 20 " ..
      "-w '%%{http_code} %%{time_total}\\n' %s > %s 2>&1 &"):format(table.concat(args, " "), out)))
    local pings, worst, failed, early = 0, 0, 0, 0
    local lines = {}
    local deadline = t0 + 30
    while socket.gettime() < deadline do
      local dt = ping()
      if dt then
        pings = pings + 1
        worst = math.max(worst, dt)
        -- no call can end before one sandbox answer: these pings ran while all 50 were in flight
        if socket.gettime() < t0 + LATENCY then early = early + 1 end
      else
        failed = failed + 1
      end
      lines = {}
      for l in (slurp(out) or ""):gmatch("[^\n]+") do
        if l:match("^%d%d%d ") then lines[#lines + 1] = l end
      end
      if #lines >= 50 then break end
      socket.sleep(0.01)
    end
    local elapsed = socket.gettime() - t0
    local ok200, slowest = 0, 0
    for _, l in ipairs(lines) do
      local code, t = l:match("^(%d+) ([%d%.]+)")
      if code == "200" then ok200 = ok200 + 1 end
      slowest = math.max(slowest, tonumber(t) or 0)
    end
    print(("\n  nginx: 50 calls in %.2f s (slowest %.3f s), %d/50 answered 200; /ping %d times meanwhile, " ..
      "worst %.1f ms, %d failed, %d while every call was in flight; sandbox token requests: %d")
      :format(elapsed, slowest, ok200, pings, worst * 1000, failed, early, sb:stats().token_requests))
    assert.equals(50, #lines)
    assert.equals(50, ok200)
    assert.is_true(pings >= 10, "too few pings to tell")
    assert.equals(0, failed)
    assert.is_true(early >= 3, "too few pings while the calls were in flight to tell")
    -- a worker that blocked on a call would hold a ping for a whole sandbox answer (or all 50
    -- of them): any ping shorter than that was answered by a worker that was not waiting. No
    -- tighter bound: on a busy machine an idle nginx can take tens of ms to answer.
    assert.is_true(worst < LATENCY, ("/ping took %.1f ms"):format(worst * 1000))
    assert.equals(1, sb:stats().token_requests)
    assert.equals(50, h.route_count(sb, "GET /users/{id}"))
  end)

  it("passes errors through as the contract's error objects", function()
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    c:send("GET /users/1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    local all = c:receive("*a")
    c:close()
    assert.matches("^HTTP/1%.1 404", all)
    assert.matches('"error":"not_found"', all, 1, true)
  end)

  it("keeps to the per-token rate limits across both workers", function()
    sb:latency(0)
    local before = sb:stats()
    local out = prefix .. "/paced.out"
    local args = {}
    for i = 1, 15 do args[i] = ("-o /dev/null http://127.0.0.1:%d/paced?i=%d"):format(port, i) end
    local t0 = socket.gettime()
    assert(sh(("env -u LD_PRELOAD curl -s --parallel --parallel-immediate --parallel-max 15 --max-time 30 " ..
      "-w '%%{http_code}\\n' %s > %s 2>&1"):format(table.concat(args, " "), out)))
    local elapsed = socket.gettime() - t0
    local codes = {}
    for code in (slurp(out) or ""):gmatch("(%d%d%d)\n") do codes[#codes + 1] = code end
    local after = sb:stats()
    print(("\n  nginx: 15 GET /recognitions at 5 per 2 s over 2 workers took %.2f s; sandbox 429s: %d")
      :format(elapsed, after.rate_limited - before.rate_limited))
    assert.equals(15, #codes)
    for _, code in ipairs(codes) do assert.equals("200", code) end
    assert.equals(before.rate_limited, after.rate_limited) -- no 429 from the sandbox
    assert.is_true(elapsed >= 4, "15 calls at 5 per 2 s went too fast: " .. elapsed)
    assert.is_true(elapsed < 12, "too slow: " .. elapsed)
  end)
end)
