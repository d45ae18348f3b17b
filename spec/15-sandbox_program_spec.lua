-- The achievers-sandbox program: flags, the printed URL and credentials, the Authentication
-- page's curl commands against it, and a clean exit on SIGINT/SIGTERM.
local http = require("sandbox_http")

local BIN = os.getenv("ACHIEVERS_SANDBOX_BIN") or "build/5.4/achievers-sandbox"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local read_file = require("support.cli").slurp

local running = {}   -- programs launched and not yet finished, ended by after_each

-- Starts the program in the background; returns {pid, dir, out()} once it printed its URL.
local function launch(args)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  os.execute("(" .. BIN .. " " .. args .. " >" .. dir .. "/out 2>" .. dir .. "/err & echo $! >" .. dir ..
    "/pid; wait $!; echo $? >" .. dir .. "/rc) >/dev/null 2>&1 &")
  local prog = {dir = dir}
  function prog.out() return read_file(dir .. "/out") or "" end
  function prog.rc() return tonumber(read_file(dir .. "/rc") or "") end
  for _ = 1, 100 do
    prog.pid = prog.pid or tonumber(read_file(dir .. "/pid") or "")
    if prog.out():find("client_secret: %S+\n") or prog.rc() then break end
    http.sleep(0.05)
  end
  prog.url = prog.out():match("url: (%S+)")
  prog.client_id = prog.out():match("client_id: (%S+)")
  prog.client_secret = prog.out():match("client_secret: (%S+)")
  running[prog] = true
  return prog
end

-- Sends `signal` to the program (by its pid) and waits for its exit status.
local function finish(prog, signal)
  running[prog] = nil
  if prog.pid and not prog.rc() then os.execute("kill -" .. (signal or "INT") .. " " .. prog.pid) end
  local rc
  for _ = 1, 100 do
    rc = prog.rc()
    if rc then break end
    http.sleep(0.05)
  end
  if not rc and prog.pid then os.execute("kill -KILL " .. prog.pid .. " 2>/dev/null") end
  local err = read_file(prog.dir .. "/err")
  os.execute("rm -rf " .. prog.dir)
  return rc, err
end

local function curl(args)
  return sh(http.TOOL .. "timeout 20 curl -s --max-time 10 " .. args)
end

describe("achievers-sandbox program", function()
  after_each(function()
    for prog in pairs(running) do finish(prog, "KILL") end
  end)

  it("prints its URL and credentials, serves the Authentication page's curl commands, exits 0 on SIGINT", function()
    local prog = launch("--port " .. http.free_port())
    assert.is_string(prog.url)
    assert.matches("^http://127%.0%.0%.1:%d+$", prog.url)
    assert.matches("^sbx_%x+$", prog.client_id)
    assert.matches("^%x+$", prog.client_secret)
    local token_json = curl("-X POST " .. prog.url .. "/oauth/v2/openIDConnectClient/token " ..
      "-H 'Content-Type: application/json' -H 'Accept: application/json' " ..
      "-d '{\"grant_type\":\"client_credentials\",\"scope\":\"read\",\"client_id\":\"" .. prog.client_id ..
      "\",\"client_secret\":\"" .. prog.client_secret .. "\"}'")
    local token = http.cjson.decode(token_json)
    assert.equal("Bearer", token.token_type)
    assert.equal("read", token.scope)
    assert.is_true(token.expires_in > 1e9, "an absolute UNIX time by default")
    local users = http.cjson.decode(curl(prog.url .. "/api/v5/users -H 'Authorization: Bearer " ..
      token.access_token .. "' -H 'Accept: application/json'"))
    assert.equal(25, #users.items)
    assert.is_true(users.paging.totalItems >= 200)
    local rc, err = finish(prog, "INT")
    assert.equal(0, rc)
    assert.equal("", err)
  end)

  it("picks a free port with --port 0 and takes its options", function()
    local prog = launch("--port 0 --expires relative --client-id my_app --client-secret s3cret " ..
      "--latency-ms 0 --no-rate-limit --refresh-tokens")
    assert.matches("^http://127%.0%.0%.1:%d+$", prog.url)
    assert.equal("my_app", prog.client_id)
    assert.equal("s3cret", prog.client_secret)
    local token = http.cjson.decode(curl("-X POST " .. prog.url .. http.TOKEN_PATH ..
      " -u my_app:s3cret -d grant_type=client_credentials"))
    assert.equal(14 * 24 * 3600, token.expires_in)
    -- no rate limit: 60 GET /recognitions in a row
    local conn = assert(http.connect(prog.url))
    for _ = 1, 60 do
      assert.equal(200, assert(conn:request("GET", "/api/v5/recognitions?pageSize=1", {token = token.access_token})).status)
    end
    conn:close()
    assert.equal(0, finish(prog, "TERM"))
  end)

  it("prints usage for --help and exits 0", function()
    local out = sh(BIN .. " --help; echo rc=$?")
    assert.matches("usage: achievers%-sandbox", out)
    assert.matches("rc=0", out, 1, true)
  end)

  it("prints usage on stderr and exits 2 for bad flags", function()
    for _, args in ipairs{"--bogus", "--port", "--port abc", "--port 70000", "--expires soon",
                          "--latency-ms -1", "--tls-cert x.pem"} do
      local out = sh(BIN .. " " .. args .. " 2>&1 >/dev/null; echo rc=$?")
      assert.matches("usage: achievers%-sandbox", out, 1, false)
      assert.matches("rc=2", out, 1, true)
    end
  end)

  it("exits 1 with a message when the port is taken", function()
    local first = launch("--port 0")
    local port = first.url:match(":(%d+)$")
    local out = sh(BIN .. " --port " .. port .. " 2>&1 >/dev/null; echo rc=$?")
    assert.matches("cannot start", out, 1, true)
    assert.matches("rc=1", out, 1, true)
    assert.equal(0, finish(first))
  end)
end)
