-- scripts/doc-coverage.lua: the reference has an entry for every public name, the endpoint
-- helpers' section is what achievers.endpoints says, and the REPL's help text is current; a
-- missing entry or a drifted section fails it, naming what is wrong.
local h = require("helpers")
local cli = require("support.cli")
local q, sh, slurp = cli.q, cli.sh, cli.slurp

-- Runs the script in `dir` (the repository, or a copy): exit status, stdout .. stderr.
local function run(dir)
  local pwd = io.popen("pwd"):read("*l")
  local cmd = string.format("cd %s && env LUA_PATH=%s LUA_CPATH=%s %s %s 2>&1; echo \"rc=$?\"", q(dir),
    q(pwd .. "/src/lua/?.lua;;"), q(pwd .. "/" .. h.build .. "/?.so;;"), h.lua, q(pwd .. "/scripts/doc-coverage.lua"))
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

describe("doc coverage", function()
  local copy

  before_each(function()
    copy = os.tmpname()
    os.remove(copy)
    assert(sh("mkdir -p " .. q(copy .. "/src/lua/achievers") .. " " .. q(copy .. "/src/binding") ..
      " && cp -r doc " .. q(copy) ..
      " && cp src/binding/client.c " .. q(copy .. "/src/binding/") ..
      " && cp src/lua/achievers/*.lua " .. q(copy .. "/src/lua/achievers/")))
  end)
  after_each(function() os.execute("rm -rf " .. q(copy)) end)

  local function edit(path, from, to)
    local text = assert(slurp(copy .. "/" .. path))
    local a, b = text:find(from, 1, true)
    assert(a, "not found in " .. path .. ": " .. from)
    local f = assert(io.open(copy .. "/" .. path, "wb"))
    f:write(text:sub(1, a - 1) .. to .. text:sub(b + 1))
    f:close()
  end

  it("passes on the repository", function()
    local code, out = run(".")
    assert.equals(0, code, out)
    assert.matches("every public name documented", out)
  end)

  it("names a client method without an entry", function()
    edit("doc/achievers.luadoc", "-- @function client:batch", "-- @function client:batch_gone")
    local code, out = run(copy)
    assert.equals(1, code)
    assert.matches("client:batch %(client method%) has no entry in the reference", out)
    assert.matches("client:batch_gone is documented but the client has no such method", out)
  end)

  it("names a function without an example, and an undescribed client option", function()
    edit("doc/achievers.luadoc", "-- @usage local tok = assert(client:exchange_code(code))", "")
    edit("doc/achievers.luadoc", "- `on_rate_limit`:", "- on_rate_limit:")
    local code, out = run(copy)
    assert.equals(1, code)
    assert.matches("client:exchange_code %(client method%) has no example", out)
    assert.matches("on_rate_limit %(client option%) is not described in achievers.client", out)
  end)

  it("fails when the endpoint helpers' section drifts from achievers.endpoints", function()
    edit("doc/achievers.luadoc", "-- @function client:newsfeed_event_boosts\n", "")
    local code, out = run(copy)
    assert.equals(1, code)
    assert.matches("the endpoint helpers' section differs from achievers.endpoints", out)
    assert.matches("client:newsfeed_event_boosts %(client method%) has no entry", out)
  end)

  it("fails when the REPL's help is stale, and --write brings both back", function()
    edit("doc/achievers.luadoc", "GET a path: the decoded JSON answer.", "GET a path.")
    edit("doc/achievers.luadoc", "-- @function client:newsfeed_event_boosts\n", "")
    local code, out = run(copy)
    assert.equals(1, code)
    assert.matches("help_data.lua is stale", out)
    local pwd = io.popen("pwd"):read("*l")
    assert(sh(string.format("cd %s && env LUA_PATH=%s LUA_CPATH=%s %s %s --write >/dev/null 2>&1", q(copy),
      q(pwd .. "/src/lua/?.lua;;"), q(pwd .. "/" .. h.build .. "/?.so;;"), h.lua, q(pwd .. "/scripts/doc-coverage.lua"))))
    code, out = run(copy)
    assert.equals(0, code, out)
    assert.matches('"client:get%(path, query%)\\nGET a path%.', slurp(copy .. "/src/lua/achievers/help_data.lua"))
  end)
end)
