-- Replaying recordings in the sandbox: recorded answers in recorded order, the sandbox's own
-- token endpoint, strict mode's 501, seed mode, bad lines named, large files streamed.
local h = require("helpers")
local cjson = require("cjson")
local cli = require("support.cli")
local http = require("sandbox_http")
local q = cli.q

local BIN = os.getenv("ACHIEVERS_SANDBOX_BIN") or (h.build .. "/achievers-sandbox")

local function int(n) return string.format("%d", n) end

-- A value with the sandbox's URL taken out, for comparing answers of two sandboxes.
local function plain(v, url)
  return (require("achievers.cli_json").encode(v):gsub(url:gsub("%p", "%%%0"), "URL"))
end

local running = {}

-- Starts achievers-sandbox ARGS in the background; returns {pid, url, out(), rc()} once it
-- printed its credentials or ended.
local function launch(args, wait)
  local dir = os.tmpname()
  os.remove(dir)
  assert(cli.sh("mkdir -p " .. q(dir)))
  -- under AddressSanitizer (make test SAN=1) freed memory waits in a 256 MB quarantine, which
  -- would count as resident: a small one measures the program, not the sanitizer
  local asan = os.getenv("ASAN_OPTIONS")
  local prefix = asan and ("ASAN_OPTIONS=" .. q(asan .. ":quarantine_size_mb=4") .. " ") or ""
  os.execute("(" .. prefix .. BIN .. " " .. args .. " >" .. dir .. "/out 2>" .. dir .. "/err & echo $! >" .. dir ..
    "/pid; wait $!; echo $? >" .. dir .. "/rc) >/dev/null 2>&1 &")
  local prog = { dir = dir }
  function prog.out() return cli.slurp(dir .. "/out") or "" end
  function prog.err() return cli.slurp(dir .. "/err") or "" end
  function prog.rc() return tonumber(cli.slurp(dir .. "/rc") or "") end
  for _ = 1, (wait or 10) * 20 do
    prog.pid = prog.pid or tonumber(cli.slurp(dir .. "/pid") or "")
    if prog.out():find("client_secret: %S+\n") or prog.rc() then break end
    http.sleep(0.05)
  end
  prog.url = prog.out():match("url: (%S+)")
  prog.client_id = prog.out():match("client_id: (%S+)")
  prog.client_secret = prog.out():match("client_secret: (%S+)")
  running[prog] = true
  return prog
end

local function finish(prog)
  running[prog] = nil
  if prog.pid and not prog.rc() then os.execute("kill -TERM " .. prog.pid) end
  for _ = 1, 200 do
    if prog.rc() then break end
    http.sleep(0.05)
  end
  if not prog.rc() and prog.pid then os.execute("kill -KILL " .. prog.pid .. " 2>/dev/null") end
  local rc, err = prog.rc(), prog.err()
  os.execute("rm -rf " .. q(prog.dir))
  return rc, err
end

-- Resident memory of a process, kB.
local function rss_kb(pid)
  local s = cli.slurp("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

describe("sandbox replay", function()
  local sb, dir
  local scan = require("support.record_scan").new()

  setup(function()
    sb = h.start_sandbox()
    dir = os.tmpname()
    os.remove(dir)
    assert(cli.sh("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    sb:stop()
    for prog in pairs(running) do finish(prog) end
    os.execute("rm -rf " .. q(dir))
  end)
  before_each(function() sb:reset() end)
  after_each(function() scan.collect(sb) end)

  -- a recorded session: lists, one user, a 404, a recognition, the list again
  local function session(c, user)
    local out = {}
    out[#out + 1] = assert(c:users { pageSize = 3 })
    out[#out + 1] = assert(c:user(10726811))
    local _, err = c:get("users/99999999")
    out[#out + 1] = { status = err.status, code = err.code, body = err.body }
    out[#out + 1] = assert(c:recognitions { pageSize = 2 })
    out[#out + 1] = assert(user:send_recognition { nominees = { "brady.garfinkel" },
      recognitionText = "Thanks for the review", criterionId = 412 })
    out[#out + 1] = assert(c:recognitions { pageSize = 2 })
    return out
  end

  local function record(path)
    local c = h.client(sb, { record = path, scope = "read,write" })
    local user = h.user_client(sb, c, "adele.olson")
    return session(c, user)
  end

  it("answers a recorded session in a second sandbox with the same answers", function()
    local path = dir .. "/session.jsonl"
    local recorded = record(path)
    local rp = assert(h.sandbox.start { replay = path })
    local c = h.client(rp, { scope = "read,write" })
    local replayed = session(c, h.user_client(rp, c, "adele.olson"))
    assert.equals(#recorded, #replayed)
    for i = 1, #recorded do
      assert.equals(plain(recorded[i], sb.url), plain(replayed[i], rp.url))
    end
    -- the same request twice got its two recorded answers, in order: before and after the POST
    assert.are_not.equal(plain(replayed[4], rp.url), plain(replayed[6], rp.url))
    assert.equals(int(replayed[5].id), int(replayed[6].items[1].id))
    -- links point at the replaying sandbox
    assert.equals(rp.url .. "/api/v5/users?pageSize=3&page=2", replayed[1].paging.next)
    -- the store was not touched: the recognition came from the file
    local _, e = c:recognition(int(replayed[5].id))
    assert.equals(404, e.status)
    -- tokens are the sandbox's own (a recording holds placeholders, never tokens)
    assert.equals(2, rp:stats().token_requests)
    rp:stop()
  end)

  it("answers with the last recorded answer once a request's answers are used up", function()
    local path = dir .. "/twice.jsonl"
    local c = h.client(sb, { record = path })
    local first = assert(c:user(10726811))
    local rp = assert(h.sandbox.start { replay = path })
    local c2 = h.client(rp)
    for _ = 1, 3 do assert.equals(first.username, assert(c2:user(10726811)).username) end
    rp:stop()
  end)

  it("leaves requests it has no recording of to the sandbox itself", function()
    local path = dir .. "/one.jsonl"
    assert(h.client(sb, { record = path }):user(10726811))
    local rp = assert(h.sandbox.start { replay = path })
    local c = h.client(rp)
    assert.equals(25, #assert(c:users()).items)
    assert.equals(1, h.route_count(rp, "GET /users"))
    assert.equals(0, h.route_count(rp, "GET /users/{id}"))
    assert(c:user(10726811))
    rp:stop()
  end)

  it("strict mode answers an unrecorded request with a 501 naming it and the nearest", function()
    local path = dir .. "/strict.jsonl"
    local c0 = h.client(sb, { record = path })
    assert(c0:users { pageSize = 3 })
    assert(c0:recognitions { pageSize = 2 })
    local rp = assert(h.sandbox.start { replay = path, replay_mode = "strict" })
    local c = h.client(rp, { retries = 0 })
    assert(c:users { pageSize = 3 })
    local _, err = c:users { pageSize = 4 }
    assert.equals(501, err.status)
    assert.equals("not_recorded", err.code)
    assert.matches("GET /api/v5/users?pageSize=4 was not recorded", err.message, 1, true)
    assert.matches("nearest recorded request: GET /api/v5/users?pageSize=3", err.message, 1, true)
    _, err = c:get("recognitions", { page = 2, pageSize = 2 })
    assert.equals(501, err.status)
    assert.matches("nearest recorded request: GET /api/v5/recognitions?pageSize=2", err.message, 1, true)
    -- the token endpoint stays the sandbox's own
    assert(c:token())
    assert.has_error(function() h.sandbox.start { replay = path, replay_mode = "loose" } end)
    assert.has_error(function() h.sandbox.start { replay_mode = "strict" } end)
    rp:stop()
  end)

  it("seed mode imports recorded users and recognitions, and stays stateful", function()
    local path = dir .. "/seed.jsonl"
    local c0 = h.client(sb, { record = path, record_pseudonymise = true })
    assert(c0:users { pageSize = 4 })
    assert(c0:recognitions { pageSize = 3 })
    local ex = {}
    for line in io.lines(path) do
      local o = cjson.decode(line)
      if o.type == "exchange" and not o.token_request then ex[#ex + 1] = o end
    end
    local fake_users = ex[1].response.body.items
    local fake_rec = ex[2].response.body.items[1]
    local rp = assert(h.sandbox.start { replay = path, replay_mode = "seed" })
    local c = h.client(rp, { scope = "read,write" })
    -- the recorded (pseudonymised) people are there, with their ids and names
    for _, u in ipairs(fake_users) do
      local got = assert(c:user(int(u.id)))
      assert.equals(u.username, got.username)
      assert.equals(u.firstName, got.firstName)
      assert.equals(u.emailAddress, got.emailAddress)
    end
    -- and the recorded recognition, with its id, its people and its newsfeed event
    local r = assert(c:recognition(int(fake_rec.id)))
    assert.equals(fake_rec.recognitionText, r.recognitionText)
    assert.equals(fake_rec.nominator.username, r.nominator.username)
    assert.equals(int(fake_rec.nominees[1].id), int(r.nominees[1].id))
    assert.equals(int(fake_rec.newsfeedEventId), int(r.newsfeedEventId))
    assert(c:newsfeed_event(int(fake_rec.newsfeedEventId)))
    -- a recorded person sends a recognition to another: it works, and is there afterwards
    local user = h.user_client(rp, c, fake_users[2].username)
    local sent = assert(user:send_recognition { nominees = { int(fake_users[3].id) }, useUserIds = true,
      recognitionText = "Seeded thanks", criterionId = 412 })
    assert.equals(fake_users[3].username, sent.nominees[1].username)
    assert.equals(fake_users[2].username, sent.nominator.username)
    assert.equals("Seeded thanks", assert(c:recognition(int(sent.id))).recognitionText)
    local listed = assert(c:recognitions { userId = int(fake_users[3].id), useUserIds = true })
    assert.equals(int(sent.id), int(listed.items[1].id))
    -- the seed's own people are still there too
    assert(c:user(10726811))
    rp:stop()
  end)

  it("answers a recorded status that is not HTTP's with a 500 saying so", function()
    local path = dir .. "/badstatus.jsonl"
    local f = assert(io.open(path, "w"))
    f:write('{"type":"meta","format":"achievers-recording","version":1}\n',
      '{"type":"exchange","request":{"method":"GET","path":"/api/v5/users/10726811"},',
      '"response":{"status":99999,"headers":{"content-type":"application/json"},"body":{}}}\n')
    f:close()
    local rp = assert(h.sandbox.start { replay = path })
    local c = h.client(rp, { retries = 0 })
    local data, err = c:user(10726811)
    rp:stop()
    assert.is_nil(data)
    assert.equals(500, err.status)
    assert.matches("not an HTTP status", tostring(err), 1, true)
  end)

  it("names the line of a bad recording", function()
    local path = dir .. "/bad.jsonl"
    local f = assert(io.open(path, "w"))
    f:write('{"type":"meta","format":"achievers-recording","version":1}\n',
      '{"type":"exchange","request":{"method":"GET","path":"/api/v5/users"},"response":{"status":200}}\n',
      '\n', '{"type":"exchange","request":{"method":"GET"', '\n')
    f:close()
    local rp, err = h.sandbox.start { replay = path }
    assert.is_nil(rp)
    assert.matches("bad.jsonl line 4: not valid JSON", err, 1, true)
    f = assert(io.open(path, "w"))
    f:write('{"type":"exchange","request":{"method":"GET"},"response":{"status":200}}\n')
    f:close()
    rp, err = h.sandbox.start { replay = path, replay_mode = "seed" }
    assert.is_nil(rp)
    assert.matches("line 1: an exchange needs request.method and request.path", err, 1, true)
    rp, err = h.sandbox.start { replay = dir .. "/missing.jsonl" }
    assert.is_nil(rp)
    assert.matches("cannot open", err, 1, true)
    -- the program says the same and exits 1
    local rc, perr = finish(launch("--port 0 --replay " .. q(path)))
    assert.equals(1, rc)
    assert.matches("achievers-sandbox: replay: " .. path .. " line 1: an exchange needs", perr, 1, true)
  end)

  it("achievers-sandbox --replay answers from the file, --replay-strict with a 501", function()
    local path = dir .. "/prog.jsonl"
    assert(h.client(sb, { record = path }):users { pageSize = 2 })
    local prog = launch("--port 0 --replay-strict --replay " .. q(path))
    assert.truthy(prog.url, prog.err())
    local c = h.client(prog, { retries = 0 })
    assert.equals(2, #assert(c:users { pageSize = 2 }).items)
    local _, err = c:users { pageSize = 5 }
    assert.equals(501, err.status)
    assert.equals(0, finish(prog))
    prog = launch("--port 0 --seed-from " .. q(path))
    assert.truthy(prog.url)
    c = h.client(prog, { retries = 0 })
    assert.equals(25, #assert(c:users()).items)
    assert.equals(0, finish(prog))
  end)

  it("streams a ~100 MB recording: the program's memory stays far below the file's size", function()
    local path = dir .. "/big.jsonl"
    local f = assert(io.open(path, "w"))
    f:write('{"type":"meta","format":"achievers-recording","version":1,"base_url":"https://example.achievers.com"}\n')
    local filler = string.rep("x", 100 * 1024)
    local pages = 1000
    for page = 1, pages do
      f:write('{"type":"exchange","seq":', page, ',"request":{"method":"GET","path":"/api/v5/users",',
        '"query":"page=', page, '&pageSize=1"},"response":{"status":200,"headers":',
        '{"content-type":"application/json"},"body":{"items":[{"id":', page,
        ',"note":"', filler, '"}],"paging":{"page":', page,
        ',"next":"https://example.achievers.com/api/v5/users?page=', page + 1, '&pageSize=1"}}}}\n')
    end
    f:close()
    local size = #filler * pages
    -- a baseline: the same program without a recording
    local base = launch("--port 0 --no-rate-limit")
    assert.truthy(base.url)
    local c0 = h.client(base)
    assert(c0:users { page = 1, pageSize = 1 })
    local base_rss = assert(rss_kb(base.pid))
    finish(base)
    local prog = launch("--port 0 --no-rate-limit --replay " .. q(path), 120)
    assert.truthy(prog.url, prog.err())
    local c = h.client(prog)
    for _, page in ipairs { 1, 500, 999, 1000, 2 } do
      local r = assert(c:users { page = page, pageSize = 1 })
      assert.equals(page, r.items[1].id)
      assert.equals(#filler, #r.items[1].note)
      assert.equals(prog.url .. "/api/v5/users?page=" .. (page + 1) .. "&pageSize=1", r.paging.next)
    end
    local rss = assert(rss_kb(prog.pid))
    finish(prog)
    -- the index and one answer at a time: far less than the 100 MB (ASan builds carry their
    -- own overhead, so the growth over the baseline is what counts)
    local growth = (rss - base_rss) * 1024
    if os.getenv("SPEC_VERBOSE") then print("rss", base_rss, rss, growth, size) end
    assert.is_true(growth < size / 5, string.format("grew by %d bytes for a %d byte file", growth, size))
  end)

  -- last: every recording the specs above made (the generated 100 MB one is not a recording)
  it("never wrote a token, secret, code or verifier to any recording", function()
    scan.collect(sb)
    assert.is_true(scan.count() >= 6, "too few secrets collected: " .. scan.count())
    local p = assert(io.popen("ls " .. q(dir)))
    local files = 0
    for name in p:lines() do
      if name:match("%.jsonl$") and name ~= "big.jsonl" then
        files = files + 1
        assert.is_nil(scan.find_in(cli.slurp(dir .. "/" .. name) or ""), name)
      end
    end
    p:close()
    assert.is_true(files >= 6, "only " .. files .. " recordings")
  end)
end)
