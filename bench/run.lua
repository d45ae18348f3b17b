-- bench/run.lua: the lua-achievers benchmark (`make bench`). See bench/README.md.
--
-- Measures, side by side in one run and round by round (the contenders interleaved, since the
-- machine is shared), against achievers-sandbox processes over HTTP and HTTPS:
--   (a) raw libcurl C loop (bench/raw_curl.c, keep-alive) + lua-cjson on the same bodies: the limit
--   (b) our client, sequential client:get
--   (c) LuaSocket / LuaSec, one request (one new connection) per call, + lua-cjson
--   (d) our client:batch against 50 ms of server latency
-- plus poll(0) latency with 16 transfers in flight (in a child process per protocol and
-- collector mode) and resident memory over 10,000 requests (in a child process), and prints
-- each target with its measured ratio and PASS or FAIL.
--
-- Environment (set by `make bench`): ACHIEVERS_BUILD (the directory of achievers.so),
-- ACHIEVERS_SANDBOX_BIN (the achievers-sandbox program), CC (default cc).

local USAGE = [[
usage: lua5.4 bench/run.lua [options]        (make bench BENCH_ARGS="...")
  --quick               fewer rounds and requests (a smoke run, about 30 s)
  --rounds N            rounds of the sequential comparison (default 9)
  --requests N          timed GETs per round for (a) and (b) (default 200)
  --luasec-requests N   GETs per round for (c) (default 30; each opens a connection)
  --batch-rounds N      rounds of the 200-GET batch per protocol (default 7)
  --poll-rounds N       rounds of the poll(0) measurement per protocol (default 5)
  --memory N            requests measured for memory growth (default 10000)
  --memory-warmup N     requests before the first memory reading (default 1000)
  --key rsa|ec          server key of the test certificate (default rsa: RSA 2048)
  --warm-rounds N       fresh clients per variant of the warm section (default 7)
  --only LIST           comma-separated sections: seq,batch,poll,warm,memory (default all)
  --strict              exit with status 1 when a target fails
  --help                this text]]

-- ---- options -------------------------------------------------------------------------------

local opt = {
  rounds = 9, requests = 200, luasec_requests = 30, batch_rounds = 7, poll_rounds = 5,
  memory = 10000, memory_warmup = 1000, key = "rsa", strict = false, warm_rounds = 7,
  only = { seq = true, batch = true, poll = true, warm = true, memory = true },
}
local QUICK = { rounds = 3, requests = 100, luasec_requests = 15, batch_rounds = 3,
                poll_rounds = 2, memory = 3000, memory_warmup = 500, warm_rounds = 3 }

-- misuse of the command line: report and exit before anything was started
local function usage_error(fmt, ...)
  io.stderr:write("bench: ", string.format(fmt, ...), "\n")
  os.exit(2)
end

-- a failed measurement: raise, so that main's caller still stops the servers
local function die(fmt, ...)
  error("bench: " .. string.format(fmt, ...), 0)
end

local function parse_args(argv)
  local i, child = 1, nil
  local function value(name)
    i = i + 1
    if argv[i] == nil then usage_error("%s needs a value", name) end
    return argv[i]
  end
  local function count(name, min)
    local n = math.tointeger(tonumber(value(name)))
    if n == nil or n < min then usage_error("%s needs an integer >= %d", name, min) end
    return n
  end
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--help" or a == "-h" then print(USAGE) os.exit(0)
    elseif a == "--quick" then for k, v in pairs(QUICK) do opt[k] = v end
    elseif a == "--rounds" then opt.rounds = count(a, 1)
    elseif a == "--requests" then opt.requests = count(a, 1)
    elseif a == "--luasec-requests" then opt.luasec_requests = count(a, 1)
    elseif a == "--batch-rounds" then opt.batch_rounds = count(a, 1)
    elseif a == "--poll-rounds" then opt.poll_rounds = count(a, 1)
    elseif a == "--warm-rounds" then opt.warm_rounds = count(a, 1)
    elseif a == "--memory" then opt.memory = count(a, 1)
    elseif a == "--memory-warmup" then opt.memory_warmup = count(a, 1)
    elseif a == "--strict" then opt.strict = true
    elseif a == "--key" then
      opt.key = value(a)
      if opt.key ~= "rsa" and opt.key ~= "ec" then usage_error("--key is rsa or ec") end
    elseif a == "--only" then
      opt.only = {}
      for s in value(a):gmatch("[^,%s]+") do
        if not ({ seq = 1, batch = 1, poll = 1, warm = 1, memory = 1 })[s] then
          usage_error("unknown section %s", s)
        end
        opt.only[s] = true
      end
    elseif a == "--child-memory" or a == "--child-poll" or a == "--child-warm" then
      child = { kind = a:sub(9) }
      local n = ({ ["--child-poll"] = 8, ["--child-memory"] = 7, ["--child-warm"] = 5 })[a]
      for _ = 1, n do child[#child + 1] = value(a) end
    else
      usage_error("unknown option %s (--help lists them)", a)
    end
    i = i + 1
  end
  return child
end

local child_args = parse_args(arg)

local BUILD = os.getenv("ACHIEVERS_BUILD") or "build/5.4"
local SANDBOX_BIN = os.getenv("ACHIEVERS_SANDBOX_BIN") or (BUILD .. "/achievers-sandbox")
local BENCH_OUT = "build/bench"
local LUA = arg[-1] or "lua5.4"

package.cpath = BUILD .. "/?.so;" .. BENCH_OUT .. "/?.so;" .. package.cpath
package.path = "src/lua/?.lua;src/lua/?/init.lua;" .. package.path

-- ---- small helpers -------------------------------------------------------------------------

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local ok, how, code = os.execute(cmd)
  return ok == true and how == "exit" and code == 0
end

local function sorted(list)
  local s = {}
  for i = 1, #list do s[i] = list[i] end
  table.sort(s)
  return s
end

local function median(list)
  local s, n = sorted(list), #list
  if n == 0 then return 0 / 0 end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- nearest-rank percentile of an already sorted list
local function percentile(s, p)
  if #s == 0 then return 0 / 0 end
  local k = math.max(1, math.ceil(p / 100 * #s))
  return s[math.min(k, #s)]
end

local function us(seconds) return string.format("%8.1f us", seconds * 1e6) end
local function ms(seconds) return string.format("%7.1f ms", seconds * 1e3) end

-- "median (min .. max)" of a list of seconds, in microseconds
local function spread_us(list)
  local s = sorted(list)
  return string.format("%s  (min %.1f, max %.1f over %d rounds)", us(median(list)),
                       s[1] * 1e6, s[#s] * 1e6, #s)
end

local function rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)%s*kB"))
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- ---- the clock ---------------------------------------------------------------------------------

local function build_helpers()
  local cc = os.getenv("CC") or "cc"
  run("mkdir -p " .. BENCH_OUT)
  local function cflags_of(pc, fallback)
    local p = io.popen("pkg-config --cflags " .. pc .. " 2>/dev/null")
    local out = p and p:read("a") or ""
    if p then p:close() end
    out = out:gsub("%s+$", "")
    return out ~= "" and out or fallback
  end
  local warn = "-O2 -std=c99 -Wall -Wextra -Werror"
  local lua_inc = cflags_of("lua5.4", "-I/usr/include/lua5.4")
  local cmds = {
    { BENCH_OUT .. "/raw_curl", string.format("%s %s -o %s/raw_curl bench/raw_curl.c %s -lcurl",
      cc, warn, BENCH_OUT, cflags_of("libcurl", "")) },
    { BENCH_OUT .. "/benchutil.so", string.format(
      "%s %s -fPIC -shared -fvisibility=hidden %s -o %s/benchutil.so bench/benchutil.c",
      cc, warn, lua_inc, BENCH_OUT) },
  }
  for _, c in ipairs(cmds) do
    if not run(c[2]) then die("could not build %s:\n  %s", c[1], c[2]) end
  end
end

-- ---- child process: resident memory over many requests --------------------------------------

-- Runs in a fresh Lua process so that memory freed by other sections cannot hide growth.
-- Half the requests are sequential gets, half go through batch (async engine and poll loop).
local function memory_child(a)
  local achievers = require("achievers")
  local url, ca, id, secret = a[1], a[2], a[3], a[4]
  local warm, n = tonumber(a[5]), tonumber(a[6])
  local c = achievers.client { base_url = url, client_id = id, client_secret = secret,
                               ca_file = ca ~= "-" and ca or nil, rate_limit = false,
                               max_concurrency = 16 }
  local function work(count)
    local seq = count // 2
    for _ = 1, seq do assert(c:get("users")) end
    local left, list = count - seq, {}
    for i = 1, 50 do list[i] = { path = "users" } end
    while left > 0 do
      local k = math.min(50, left)
      local l = list
      if k < 50 then l = {} for i = 1, k do l[i] = { path = "users" } end end
      for _, r in ipairs(c:batch(l)) do assert(r.data, r.err) end
      left = left - k
    end
  end
  -- VmRSS after a full GC; with "trim", after malloc_trim(0) as well: what the allocator
  -- keeps cached versus what is still in use (a separate run: trimming changes what follows)
  local util, trim = require("benchutil"), a[7] == "trim"
  local function readings()
    full_gc()
    local raw = rss_kb()
    if trim then util.malloc_trim() end
    return raw, rss_kb()
  end
  work(warm)
  local rss0, trim0 = readings()
  local heap0 = collectgarbage("count")
  local steps, done, rss1, trim1 = 5, 0, nil, nil
  for i = 1, steps do
    local k = n * i // steps - done
    work(k)
    done = done + k
    rss1, trim1 = readings()
    print(string.format("checkpoint %d %d %d", done, rss1, trim1))
  end
  print(string.format("result %d %d %.0f %.0f %d %d", rss0, rss1, heap0, collectgarbage("count"),
                      trim0, trim1))
  os.exit(0)
end

-- ---- child process: poll(0) in a frame loop ------------------------------------------------

local POLL_N, POLL_CONC = 200, 16

-- Rounds of POLL_N async GETs driven by poll(0) in a 1 ms frame loop. Returns the durations
-- of the poll(0) calls made while POLL_CONC transfers were in flight, their CPU times, how
-- many requests each reported, and the wall time of each round.
local function poll_rounds(clock, c, rounds, with_callbacks)
  local samples, reported, walls, cpus = {}, {}, {}, {}
  local function check(data, err)
    if not data then die("async request failed: %s", tostring(err)) end
  end
  for round = 0, rounds do -- round 0 warms up: connections, TLS sessions
    local done = 0
    local t_start = clock.now()
    for _ = 1, POLL_N do
      local r = c:async { path = "users" }
      if with_callbacks then r:on_done(check) end
    end
    local deadline = clock.now() + 30
    for _ = 1, 100000 do
      if done >= POLL_N then break end
      if clock.now() > deadline then die("poll: requests did not finish in 30 s") end
      local in_flight = POLL_N - done >= POLL_CONC
      local c0, t0 = clock.cpu(), clock.now()
      local k = c:poll(0)
      local dt, dc = clock.now() - t0, clock.cpu() - c0
      done = done + k
      if round > 0 and in_flight then
        samples[#samples + 1] = dt
        cpus[#cpus + 1] = dc
        reported[#reported + 1] = k
      end
      clock.sleep(0.001)
    end
    if done < POLL_N then die("poll: only %d of %d finished", done, POLL_N) end
    if round > 0 then walls[#walls + 1] = clock.now() - t_start end
  end
  return samples, reported, walls, cpus
end

-- A fresh process, so that what the other sections loaded (LuaSec, lua-cjson, their results)
-- does not weigh on the collector: the module, and a game's state of a[8] MB (entities in
-- zones of 100, as a game keeps them), the collector in the mode a[6]. Prints one line of
-- figures per variant.
local function poll_child(a)
  local achievers, clock = require("achievers"), require("benchutil")
  local url, ca, id, secret, rounds, mode = a[1], a[2], a[3], a[4], tonumber(a[5]), a[6]
  local world = {}
  collectgarbage(mode)
  while collectgarbage("count") < tonumber(a[8]) * 1024 do
    local zone = {}
    for i = 1, 100 do
      zone[i] = { id = #world * 100 + i, x = i * 1.5, y = #world * 2.5, hp = 100,
                  name = "entity " .. (#world * 100 + i), tags = { "npc", "zone" .. #world } }
    end
    world[#world + 1] = zone
  end
  collectgarbage("collect")
  local c = achievers.client { base_url = url, client_id = id, client_secret = secret,
                               ca_file = ca ~= "-" and ca or nil, rate_limit = false,
                               max_concurrency = POLL_CONC }
  assert(c:token())
  local variants = a[7] == "both" and { true, false } or { true }
  for _, with_callbacks in ipairs(variants) do
    local samples, reported, walls, cpus = poll_rounds(clock, c, rounds, with_callbacks)
    local s, idle, busy, maxk = sorted(samples), {}, {}, 0
    for i, k in ipairs(reported) do
      if k == 0 then idle[#idle + 1] = samples[i] else busy[#busy + 1] = samples[i] end
      maxk = math.max(maxk, k)
    end
    idle, busy = sorted(idle), sorted(busy)
    local cs = sorted(cpus)
    print(string.format("variant=%s n=%d p50=%.9f p99=%.9f max=%.9f cp50=%.9f cp99=%.9f" ..
                        " cmax=%.9f idle=%d idlep99=%.9f busy=%d busyp99=%.9f maxk=%d" ..
                        " wall=%.6f heap=%.0f",
                        with_callbacks and "callbacks" or "plain", #s, percentile(s, 50),
                        percentile(s, 99), s[#s], percentile(cs, 50), percentile(cs, 99),
                        cs[#cs], #idle, percentile(idle, 99), #busy, percentile(busy, 99),
                        maxk, median(walls), collectgarbage("count")))
  end
  assert(#world >= 0) -- the state lives until the end
  os.exit(0)
end

-- ---- child process: the first calls of a fresh client over HTTPS, with and without warm ------

local WARM_N = 16

-- a[1] url, a[2] CA file, a[3] access token, a[4] rounds, a[5] "cold" or "warm". Each round
-- is a fresh client (no connection, no TLS session: each has its own pool and session cache)
-- holding a saved token, so that nothing has connected before the timed frames; "warm" calls
-- client:warm(WARM_N) first, untimed, as a loading screen would. Then WARM_N async GETs are
-- started in one frame and driven by poll(0) in 1 ms frames until all are done: every
-- async and poll(0) call is a sample (the handshakes happen inside them when cold). Prints the
-- samples' p50, p99 and max, and the connections warm reported ready.
local function warm_child(a)
  local achievers, clock = require("achievers"), require("benchutil")
  local url, ca, token, rounds, mode = a[1], a[2], a[3], tonumber(a[4]), a[5]
  local samples, ready, walls = {}, 0, {}
  collectgarbage("incremental") -- as a host's luaL_newstate has it (the poll section's target)
  for _ = 1, rounds do
    local c = achievers.client { base_url = url, ca_file = ca ~= "-" and ca or nil,
                                 rate_limit = false, max_concurrency = WARM_N,
                                 token = { access_token = token, expires_at = os.time() + 86400 } }
    if mode == "warm" then ready = ready + c:warm(WARM_N) end
    collectgarbage("collect")
    local done, reqs = 0, {}
    local t_start = clock.now()
    for i = 1, WARM_N do
      local t0 = clock.now()
      reqs[i] = c:async { path = "users" }
      samples[#samples + 1] = clock.now() - t0
      reqs[i]:on_done(function(data, err)
        if not data then die("async request failed: %s", tostring(err)) end
      end)
    end
    local deadline = clock.now() + 30
    while done < WARM_N do
      if clock.now() > deadline then die("warm: requests did not finish in 30 s") end
      local t0 = clock.now()
      done = done + c:poll(0)
      samples[#samples + 1] = clock.now() - t0
      clock.sleep(0.001)
    end
    walls[#walls + 1] = clock.now() - t_start
  end
  local s = sorted(samples)
  print(string.format("n=%d p50=%.9f p99=%.9f max=%.9f ready=%d wall=%.6f", #s, percentile(s, 50),
                      percentile(s, 99), s[#s], ready, median(walls)))
  os.exit(0)
end

if child_args and child_args.kind == "memory" then memory_child(child_args) end
if child_args and child_args.kind == "warm" then warm_child(child_args) end
if child_args and child_args.kind == "poll" then poll_child(child_args) end

-- ---- servers and TLS material -------------------------------------------------------------------

local tmpdir
local servers = {}

local function make_tls(dir, key)
  local newkey = key == "ec" and "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
                 or "-newkey rsa:2048"
  local q = function(f) return sh_quote(dir .. "/" .. f) end
  local ext = io.open(dir .. "/server.ext", "w")
  ext:write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
  ext:close()
  local cmds = {
    "openssl req -x509 " .. newkey .. " -nodes -days 2 -subj '/CN=lua-achievers bench CA'" ..
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign" ..
      " -keyout " .. q("ca.key") .. " -out " .. q("ca.pem"),
    "openssl req " .. newkey .. " -nodes -subj '/CN=127.0.0.1' -keyout " .. q("server.key") ..
      " -out " .. q("server.csr"),
    "openssl x509 -req -days 2 -in " .. q("server.csr") .. " -CA " .. q("ca.pem") ..
      " -CAkey " .. q("ca.key") .. " -CAcreateserial -extfile " .. q("server.ext") ..
      " -out " .. q("server.pem"),
  }
  for _, c in ipairs(cmds) do
    if not run(c .. " >/dev/null 2>&1") then die("openssl failed: %s", c) end
  end
  return { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
end

-- Starts an achievers-sandbox process; returns {url, client_id, client_secret, pid, proc}.
local function start_server(name, extra)
  local cmd = "echo $$; exec " .. sh_quote(SANDBOX_BIN) .. " --port 0 --no-rate-limit " ..
              extra .. " 2>&1"
  local p = assert(io.popen(cmd, "r"))
  local s = { name = name, proc = p, pid = tonumber(p:read("l")) }
  servers[#servers + 1] = s
  for _ = 1, 10 do
    local line = p:read("l")
    if line == nil then break end
    local k, v = line:match("^(%w[%w_ ]*): (%S+)$")
    if k == "url" then s.url = v
    elseif k == "client_id" then s.client_id = v
    elseif k == "client_secret" then s.client_secret = v end
    if s.url and s.client_id and s.client_secret then return s end
    if not k and not line:match("^Achievers") then die("sandbox %s: %s", name, line) end
  end
  die("sandbox %s did not start", name)
end

local function stop_servers()
  for _, s in ipairs(servers) do
    if s.pid then os.execute("kill " .. s.pid .. " 2>/dev/null") end
    if s.proc then s.proc:close() end
  end
  servers = {}
  if tmpdir then os.execute("rm -rf " .. sh_quote(tmpdir)) end
end

-- ---- contenders ---------------------------------------------------------------------------------

local clock, achievers, cjson, socket, ssl, http, https, ltn12

-- (a) the raw libcurl loop; returns mean seconds per request, connections opened, bodies file
local function raw_curl_round(srv, token, ca, n)
  local bodies = tmpdir .. "/bodies"
  local cmd = table.concat({ BENCH_OUT .. "/raw_curl", sh_quote(srv.url .. "/api/v5/users"),
                             sh_quote(token), "3", tostring(n), sh_quote(ca or "-"),
                             sh_quote(bodies) }, " ")
  local p = assert(io.popen(cmd, "r"))
  local total, count, conns, size = 0, 0, nil, nil
  for line in p:lines() do
    local status, bytes, ns = line:match("^(%d+) (%d+) (%d+)$")
    if status then
      if status ~= "200" then die("raw_curl got status %s", status) end
      total, count, size = total + tonumber(ns), count + 1, tonumber(bytes)
    else
      conns = tonumber(line:match("^connections (%d+)$"))
    end
  end
  if not p:close() or count ~= n then die("raw_curl failed (%d of %d requests)", count, n) end
  return total / count * 1e-9, conns, bodies, size
end

-- lua-cjson on the bodies raw_curl captured: mean seconds per body
local function decode_round(bodies_path)
  local f = assert(io.open(bodies_path, "rb"))
  local bodies = {}
  for _ = 1, 1000000 do
    local len = f:read("n")
    if len == nil then break end
    f:read(1) -- the newline
    bodies[#bodies + 1] = f:read(len)
  end
  f:close()
  local decode = cjson.decode
  local t0 = clock.now()
  for i = 1, #bodies do
    local v = decode(bodies[i])
    if v.items == nil then die("a captured body is not a users page") end
  end
  return (clock.now() - t0) / #bodies
end

-- (b) our client, sequential gets
local function client_round(c, n)
  local t0 = clock.now()
  for _ = 1, n do
    local page, err = c:get("users")
    if not page then die("client:get failed: %s", tostring(err)) end
  end
  return (clock.now() - t0) / n
end

-- (c) LuaSocket / LuaSec: one request, one connection, then lua-cjson
local function luasocket_round(srv, token, ca, n)
  local url = srv.url .. "/api/v5/users"
  local t0 = clock.now()
  for _ = 1, n do
    local chunks = {}
    local req = { url = url, sink = ltn12.sink.table(chunks),
                  headers = { authorization = "Bearer " .. token, accept = "application/json" } }
    local ok, code
    if ca then
      req.cafile, req.verify = ca, "peer"
      ok, code = https.request(req)
    else
      ok, code = http.request(req)
    end
    if ok ~= 1 or code ~= 200 then die("LuaSocket request failed: %s %s", ok, code) end
    local v = cjson.decode(table.concat(chunks))
    if v.items == nil then die("LuaSocket: not a users page") end
  end
  return (clock.now() - t0) / n
end

-- (c') LuaSec used as well as it can be for one request per connection: TCP_NODELAY, one
-- TLS context for all calls, the request in one write, the body read by Content-Length.
-- Not what users do; it shows how much of (c) is the handshake and how much LuaSocket's
-- small writes waiting on delayed ACKs (see bench/README.md).
local function luasec_tuned_round(srv, token, ca, n)
  local host, port = srv.url:match("^https://([^:/]+):(%d+)")
  local req = "GET /api/v5/users HTTP/1.1\r\nHost: " .. host .. ":" .. port ..
              "\r\nAuthorization: Bearer " .. token .. "\r\nAccept: application/json" ..
              "\r\nConnection: close\r\n\r\n"
  local ctx = assert(ssl.newcontext { mode = "client", protocol = "any", verify = "peer",
                                      cafile = ca, options = { "all", "no_sslv2", "no_sslv3" } })
  local t0 = clock.now()
  for _ = 1, n do
    local s = socket.tcp()
    s:settimeout(10)
    assert(s:connect(host, tonumber(port)))
    s:setoption("tcp-nodelay", true)
    s = assert(ssl.wrap(s, ctx))
    s:settimeout(10)
    s:sni(host)
    assert(s:dohandshake())
    assert(s:send(req))
    local status = assert(s:receive("*l"))
    if not status:match("^HTTP/1%.%d 200") then die("tuned LuaSec: %s", status) end
    local len
    for _ = 1, 100 do
      local line = assert(s:receive("*l"))
      if line == "" then break end
      len = len or tonumber(line:lower():match("^content%-length:%s*(%d+)"))
    end
    local body = assert(s:receive(len))
    s:close()
    local v = cjson.decode(body)
    if v.items == nil then die("tuned LuaSec: not a users page") end
  end
  return (clock.now() - t0) / n
end

local function new_client(srv, ca, extra)
  local o = { base_url = srv.url, client_id = srv.client_id, client_secret = srv.client_secret,
              ca_file = ca, rate_limit = false }
  for k, v in pairs(extra or {}) do o[k] = v end
  local c = achievers.client(o)
  assert(c:token())
  return c
end

-- ---- results ------------------------------------------------------------------------------------

local targets = {}

local function target(name, measured, limit, pass, detail)
  targets[#targets + 1] = { name = name, measured = measured, limit = limit, pass = pass,
                            detail = detail }
  print(string.format("  TARGET %-4s %s: %s (target %s)", pass and "PASS" or "FAIL", name,
                      measured, limit))
end

-- ---- sections -----------------------------------------------------------------------------------

local function section_sequential(protos)
  print(string.format("\n== Sequential GET /api/v5/users (25 users), keep-alive, JSON decoded" ..
                      "\n   %d rounds; per round %d timed GETs for (a) and (b), %d for (c);" ..
                      " contenders interleaved, order rotated each round",
                      opt.rounds, opt.requests, opt.luasec_requests))
  for _, pr in ipairs(protos) do
    pr.client = new_client(pr.srv, pr.ca)
    for _ = 1, 3 do assert(pr.client:get("users")) end -- connection and TLS session are warm
    pr.t = { raw = {}, dec = {}, lim = {}, ours = {}, luasock = {}, luasec_tuned = {} }
  end
  local order = { "a", "b", "c" }
  for round = 1, opt.rounds do
    for _, pr in ipairs(protos) do
      for k = 0, 2 do
        local who = order[(round + k - 1) % 3 + 1]
        if who == "a" then
          local per, conns, bodies, size = raw_curl_round(pr.srv, pr.token, pr.ca, opt.requests)
          local dec = decode_round(bodies)
          table.insert(pr.t.raw, per)
          table.insert(pr.t.dec, dec)
          table.insert(pr.t.lim, per + dec)
          pr.size, pr.raw_conns = size, math.max(pr.raw_conns or 0, conns or 0)
        elseif who == "b" then
          table.insert(pr.t.ours, client_round(pr.client, opt.requests))
        else
          table.insert(pr.t.luasock, luasocket_round(pr.srv, pr.token, pr.ca, opt.luasec_requests))
          if pr.ca then
            table.insert(pr.t.luasec_tuned, luasec_tuned_round(pr.srv, pr.token, pr.ca,
                                                            opt.luasec_requests))
          end
        end
      end
    end
  end
  for _, pr in ipairs(protos) do
    local t = pr.t
    local lim, ours = median(t.lim), median(t.ours)
    local ls = median(t.luasock)
    -- per-round ratios, so a noisy round hits both contenders of that round alike
    local r_ab, r_cb = {}, {}
    for i = 1, #t.ours do
      r_ab[i] = t.ours[i] / t.lim[i]
      r_cb[i] = t.luasock[i] / t.ours[i]
    end
    print(string.format("\n-- %s (%s, body %d bytes; raw loop opened %d connection(s) while timed)",
                        pr.name:upper(), pr.srv.url, pr.size or 0, pr.raw_conns or 0))
    print("   per request, median over rounds:")
    print("   (a)  raw libcurl loop            " .. spread_us(t.raw))
    print("        + lua-cjson decode          " .. spread_us(t.dec))
    print("        = limit (a)                 " .. spread_us(t.lim))
    print("   (b)  achievers client:get        " .. spread_us(t.ours))
    if pr.ca then
      print("   (c)  LuaSec https.request        " .. spread_us(t.luasock))
      print("   (c') LuaSec tuned (see README)   " .. spread_us(t.luasec_tuned))
    else
      print("   (c)  LuaSocket http.request      " .. spread_us(t.luasock))
    end
    print(string.format("   ratios: (b)/(a) = %.2fx (median of per-round ratios %.2fx);" ..
                        "  (c)/(b) = %.1fx (per-round %.1fx)", ours / lim, median(r_ab),
                        ls / ours, median(r_cb)))
    print(string.format("           (b) - (a) = %+.1f us per request: our cost over the limit",
                        (ours - lim) * 1e6))
    if pr.ca then
      print(string.format("           (c')/(b) = %.1fx (not a target: LuaSec without its" ..
                          " 40 ms delayed-ACK stall)", median(t.luasec_tuned) / ours))
      target("HTTPS sequential: client at most 1.25x the limit (a)",
             string.format("%.2fx", ours / lim), "<= 1.25x", ours / lim <= 1.25)
      target("HTTPS sequential: client at least 20x faster than LuaSec (c)",
             string.format("%.1fx", ls / ours), ">= 20x", ls / ours >= 20)
    end
  end
end

local BATCH_N, CONC, LAT = 200, 16, 0.050

-- the raw libcurl multi loop: seconds for `n` GETs at most `conc` in flight
local function raw_multi_round(srv, token, ca, n, conc)
  local cmd = table.concat({ BENCH_OUT .. "/raw_curl", sh_quote(srv.url .. "/api/v5/users"),
                             sh_quote(token), tostring(conc), tostring(n), sh_quote(ca or "-"),
                             "-", tostring(conc) }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ns = tonumber(out:match("batch (%d+)"))
  if not p:close() or not ns then die("raw_curl (multi) failed: %s", out) end
  return ns * 1e-9
end

local function section_batch(protos)
  local ideal = math.ceil(BATCH_N / CONC) * LAT
  print(string.format("\n== batch: %d GETs /api/v5/users, server latency %d ms, max_concurrency %d" ..
                      "\n   ideal = %d rounds x %d ms = %d ms; %d timed batches per protocol" ..
                      " (connections opened beforehand),\n   interleaved with the same %d GETs" ..
                      " by a raw libcurl multi loop (16 in flight, no decoding): the floor",
                      BATCH_N, LAT * 1000, CONC, math.ceil(BATCH_N / CONC), LAT * 1000,
                      ideal * 1000, opt.batch_rounds, BATCH_N))
  local list = {}
  for i = 1, BATCH_N do list[i] = { path = "users" } end
  for _, pr in ipairs(protos) do
    pr.bclient = new_client(pr.lat_srv, pr.ca, { max_concurrency = CONC })
    pr.lat_token = pr.bclient:token().access_token
    pr.bclient:batch({ table.unpack(list, 1, CONC) }) -- opens the 16 connections
    pr.bt, pr.braw = {}, {}
  end
  for round = 1, opt.batch_rounds do
    for _, pr in ipairs(protos) do
      for k = 0, 1 do
        if (round + k) % 2 == 0 then
          table.insert(pr.braw, raw_multi_round(pr.lat_srv, pr.lat_token, pr.ca, BATCH_N, CONC))
        else
          local t0 = clock.now()
          local res = pr.bclient:batch(list)
          local dt = clock.now() - t0
          for i = 1, BATCH_N do
            if not (res[i] and res[i].data) then
              die("batch item %d failed: %s", i, tostring(res[i] and res[i].err))
            end
          end
          table.insert(pr.bt, dt)
        end
      end
    end
  end
  for _, pr in ipairs(protos) do
    local s, r = sorted(pr.bt), sorted(pr.braw)
    local m, mr = median(pr.bt), median(pr.braw)
    print(string.format("   %-5s client:batch   median %s (min %.1f, max %.1f ms) = %.2fx ideal" ..
                        "\n         raw multi loop median %s (min %.1f, max %.1f ms) = %.2fx ideal;" ..
                        " batch / raw = %.2fx", pr.name, ms(m), s[1] * 1e3, s[#s] * 1e3, m / ideal,
                        ms(mr), r[1] * 1e3, r[#r] * 1e3, mr / ideal, m / mr))
    target(pr.name:upper() .. " batch 200 GETs at 50 ms, concurrency 16: at most 1.3x ideal",
           string.format("%.2fx (%.0f ms)", m / ideal, m * 1e3), "<= 1.3x (845 ms)",
           m / ideal <= 1.3)
  end
end

-- poll(0) in a frame loop: 200 async GETs, 16 in flight, 1 ms "frames"; each protocol and
-- collector mode in a child process of its own (see poll_child)
local POLL_SETUPS = {
  { heap = 16, mode = "incremental", target = true,
    about = "a game's state: 16 MB of entity tables; the collector in incremental mode, the" ..
            "\n         default of a state a host creates with luaL_newstate" },
  { heap = 0, mode = "incremental",
    about = "a bare process, nothing but the module: every collector step is a whole cycle" ..
            "\n         over its few hundred kB (not the target's setting)" },
  { heap = 0, mode = "generational",
    about = "a bare process in generational mode, which the lua5.4 program itself" ..
            "\n         switches to (not the target's setting)" },
}

local function section_poll(protos)
  print(string.format("\n== poll(0) with %d transfers in flight: %d async GETs /api/v5/users," ..
                      " server latency %d ms,\n   a 1 ms frame (sleep) between polls; %d timed" ..
                      " rounds after a warm-up round, in a fresh Lua process\n   per protocol" ..
                      " and setup; only calls made while %d transfers were in flight count",
                      CONC, POLL_N, LAT * 1000,
                      opt.poll_rounds, CONC))
  for _, pr in ipairs(protos) do
    for _, gc in ipairs(POLL_SETUPS) do
      local cmd = table.concat({ "ACHIEVERS_BUILD=" .. sh_quote(BUILD), sh_quote(LUA),
                                 "bench/run.lua", "--child-poll", sh_quote(pr.lat_srv.url),
                                 sh_quote(pr.ca or "-"), sh_quote(pr.lat_srv.client_id),
                                 sh_quote(pr.lat_srv.client_secret), tostring(opt.poll_rounds),
                                 gc.mode, gc.target and "both" or "callbacks",
                                 tostring(gc.heap) }, " ")
      local p = assert(io.popen(cmd, "r"))
      local out = p:read("a")
      if not p:close() then die("poll child failed: %s", out) end
      print(string.format("   %-5s %s:", pr.name, gc.about))
      for line in out:gmatch("[^\n]+") do
        local v = {}
        for k, x in line:gmatch("(%w+)=(%S+)") do v[k] = tonumber(x) or x end
        if v.variant then
          local cb = v.variant == "callbacks"
          print(string.format("     %s:\n         %d calls: p50 %s  p99 %s  max %s" ..
                              "\n         CPU time of the same calls: p50 %s  p99 %s  max %s" ..
                              "\n         calls that reported nothing: %d, p99 %s; calls that" ..
                              " reported 1..%d requests: %d, p99 %s;\n         %d GETs took" ..
                              " %.0f ms (median); Lua heap after the rounds %d kB",
                              cb and "with on_done (bodies decoded inside poll)"
                                 or "without callbacks (nothing decoded)",
                              v.n, us(v.p50), us(v.p99), us(v.max), us(v.cp50), us(v.cp99),
                              us(v.cmax), v.idle, us(v.idlep99), v.maxk, v.busy, us(v.busyp99),
                              POLL_N, v.wall * 1e3, v.heap))
          if cb and gc.target then
            target(pr.name:upper() .. " poll(0) with 16 in flight: p99 under 1 ms",
                   string.format("p99 %.0f us (p50 %.0f, max %.0f)", v.p99 * 1e6, v.p50 * 1e6,
                                 v.max * 1e6), "< 1000 us", v.p99 < 0.001)
          end
        end
      end
    end
  end
end

-- The first calls of a fresh client over HTTPS (handshakes included), without and with
-- client:warm, side by side; each variant in a child process of its own (see warm_child).
local function section_warm(protos)
  print(string.format("\n== The first %d async GETs of a fresh HTTPS client, driven by poll(0) in" ..
                      " 1 ms frames, TLS handshakes\n   included; %d fresh clients per variant;" ..
                      " every async and poll(0) call is a sample; without and\n   with" ..
                      " client:warm(%d) first (untimed, as on a loading screen)",
                      WARM_N, opt.warm_rounds, WARM_N))
  for _, pr in ipairs(protos) do
    if pr.ca then
      local v = {}
      for _, mode in ipairs({ "cold", "warm" }) do
        local cmd = table.concat({ "ACHIEVERS_BUILD=" .. sh_quote(BUILD), sh_quote(LUA),
                                   "bench/run.lua", "--child-warm", sh_quote(pr.srv.url),
                                   sh_quote(pr.ca), sh_quote(pr.token),
                                   tostring(opt.warm_rounds), mode }, " ")
        local p = assert(io.popen(cmd, "r"))
        local out = p:read("a")
        if not p:close() then die("warm child failed: %s", out) end
        local r = {}
        for k, x in out:gmatch("(%w+)=(%S+)") do r[k] = tonumber(x) end
        if not r.p99 then die("warm child printed no figures: %s", out) end
        v[mode] = r
      end
      print(string.format("   %-5s %-26s %12s %12s %12s", pr.name, "", "p50", "p99", "max"))
      print(string.format("         %-26s %s  %s  %s   (%d calls, %.1f ms per round)",
                          "without warm", us(v.cold.p50), us(v.cold.p99), us(v.cold.max),
                          v.cold.n, v.cold.wall * 1e3))
      print(string.format("         %-26s %s  %s  %s   (%d calls, %.1f ms per round; warm" ..
                          " readied %d of %d connections)", "after client:warm(" .. WARM_N .. ")",
                          us(v.warm.p50), us(v.warm.p99), us(v.warm.max), v.warm.n,
                          v.warm.wall * 1e3, v.warm.ready, WARM_N * opt.warm_rounds))
      target(pr.name:upper() .. " first calls after client:warm: poll(0) p99 under 1 ms",
             string.format("p99 %.0f us (without warm %.0f us)", v.warm.p99 * 1e6,
                           v.cold.p99 * 1e6), "< 1000 us", v.warm.p99 < 0.001)
    end
  end
end

-- Runs the memory child; returns {r0, r1, heap0, heap1, t0, t1, trace = {...}} in kB.
local function memory_child_run(pr, mode)
  local cmd = table.concat({ "ACHIEVERS_BUILD=" .. sh_quote(BUILD), sh_quote(LUA),
                             "bench/run.lua", "--child-memory", sh_quote(pr.srv.url),
                             sh_quote(pr.ca or "-"), sh_quote(pr.srv.client_id),
                             sh_quote(pr.srv.client_secret), tostring(opt.memory_warmup),
                             tostring(opt.memory), mode }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  local v = { out:match("result (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)") }
  if not ok or #v ~= 6 then die("memory child failed: %s", out) end
  local m = { trace = {} }
  for i, k in ipairs { "r0", "r1", "heap0", "heap1", "t0", "t1" } do m[k] = tonumber(v[i]) end
  for reqs, kb, tkb in out:gmatch("checkpoint (%d+) (%d+) (%d+)") do
    local base, kbv = mode == "trim" and m.t0 or m.r0, mode == "trim" and tkb or kb
    m.trace[#m.trace + 1] = string.format("%s: %+d", reqs, tonumber(kbv) - base)
  end
  return m
end

local function section_memory(protos)
  print(string.format("\n== Resident memory (VmRSS of a fresh Lua process): %d requests of" ..
                      " warm-up, then %d more;\n   half sequential gets, half batches of 50;" ..
                      " full GC before each reading; a second run\n   reads VmRSS after" ..
                      " malloc_trim(0) too (memory in use, without glibc's cached free pages)",
                      opt.memory_warmup, opt.memory))
  for _, pr in ipairs(protos) do
    local t0 = clock.now()
    local m = memory_child_run(pr, "raw")
    local t = memory_child_run(pr, "trim")
    local growth = m.r1 - m.r0
    print(string.format("   %-5s VmRSS after warm-up %d kB, after %d more requests %d kB: growth %+d kB" ..
                        "\n         growth (kB) after N requests: %s" ..
                        "\n         after malloc_trim: %d kB -> %d kB, growth %+d kB (%s)" ..
                        "\n         Lua heap %d kB -> %d kB; %.1f s for both runs",
                        pr.name, m.r0, opt.memory, m.r1, growth, table.concat(m.trace, ", "),
                        t.t0, t.t1, t.t1 - t.t0, table.concat(t.trace, ", "), m.heap0, m.heap1,
                        clock.now() - t0))
    target(pr.name:upper() .. " memory over " .. opt.memory .. " requests: growth under 2 MB",
           string.format("%+d kB (%+d kB after malloc_trim)", growth, t.t1 - t.t0), "< 2048 kB",
           growth < 2048)
  end
end

-- ---- main ---------------------------------------------------------------------------------------

local function main()
  build_helpers()
  clock = require("benchutil")
  achievers = require("achievers")
  cjson = require("cjson")
  socket = require("socket")
  ssl = require("ssl")
  http = require("socket.http")
  https = require("ssl.https")
  ltn12 = require("ltn12")
  local t_start = clock.now()

  local p = assert(io.popen("mktemp -d /tmp/achievers-bench.XXXXXX"))
  tmpdir = p:read("l")
  p:close()
  if not tmpdir or tmpdir == "" then die("mktemp failed") end
  local tls = make_tls(tmpdir, opt.key)
  local tls_args = "--tls-cert " .. sh_quote(tls.cert) .. " --tls-key " .. sh_quote(tls.key)

  local protos = {
    { name = "http", srv = start_server("http", ""),
      lat_srv = start_server("http+50ms", "--latency-ms 50") },
    { name = "https", ca = tls.ca, srv = start_server("https", tls_args),
      lat_srv = start_server("https+50ms", "--latency-ms 50 " .. tls_args) },
  }
  for _, pr in ipairs(protos) do
    local c = new_client(pr.srv, pr.ca)
    pr.token = c:token().access_token
  end

  local f = io.open("/proc/cpuinfo")
  local cpu = f and f:read("a"):match("model name%s*:%s*([^\n]+)") or "?"
  if f then f:close() end
  local cores = io.popen("nproc"):read("l")
  print(string.format("lua-achievers %s benchmark: %s, %s core(s), %s", achievers._VERSION, cpu,
                      cores, _VERSION))
  local ver = io.popen("curl-config --version 2>/dev/null"):read("l") or "libcurl ?"
  print(string.format("%s, %s, LuaSec %s, lua-cjson %s; servers: achievers-sandbox processes," ..
                      " --no-rate-limit;\nTLS: test CA + %s server certificate for 127.0.0.1," ..
                      " verification on everywhere", ver, require("socket")._VERSION,
                      https._VERSION, cjson._VERSION,
                      opt.key == "ec" and "ECDSA P-256" or "RSA 2048"))

  if opt.only.seq then section_sequential(protos) end
  if opt.only.batch then section_batch(protos) end
  if opt.only.poll then section_poll(protos) end
  if opt.only.warm then section_warm(protos) end
  if opt.only.memory then section_memory(protos) end

  local failed = 0
  print("\n== Summary")
  for _, t in ipairs(targets) do
    print(string.format("  %s  %-66s %s (target %s)", t.pass and "PASS" or "FAIL", t.name,
                        t.measured, t.limit))
    if not t.pass then failed = failed + 1 end
  end
  print(string.format("%d of %d targets met; total %.0f s", #targets - failed, #targets,
                      clock.now() - t_start))
  return failed
end

local ok, result = xpcall(main, function(e)
  if type(e) == "string" and e:match("^bench: ") then return e end
  return debug.traceback(e, 2)
end)
stop_servers()
if not ok then
  io.stderr:write(tostring(result), "\n")
  os.exit(2)
end
os.exit((opt.strict and result > 0) and 1 or 0)
