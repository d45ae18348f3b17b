-- The examples run end to end (each against its own in-process sandbox).
local h = require("helpers")

local function run(example)
  local cmd = ("env -u ACHIEVERS_BASE_URL LUA_CPATH='%s/?.so;;' LUA_PATH='src/lua/?.lua;;' %s %s 2>&1")
    :format(h.build, h.lua, example)
  local p = io.popen(cmd)
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

describe("examples", function()
  it("client_credentials.lua lists users", function()
    local out, ok = run("examples/client_credentials.lua")
    assert.is_true(ok, out)
    assert.matches("users match 'ad'", out)
    assert.matches("achievers%.token%(bearer, read", out)
  end)

  it("user_flow.lua gets a user token and lists the criteria", function()
    local out, ok = run("examples/user_flow.lua")
    assert.is_true(ok, out)
    assert.matches("user token: achievers%.token%(bearer, read,write", out)
    assert.matches("recognition programs this user can use", out)
  end)

  it("get_recognitions.lua lists a person's recognitions across pages", function()
    local out, ok = run("examples/get_recognitions.lua")
    assert.is_true(ok, out)
    assert.matches("adele%.olson sent %d+ and received %d+ recognitions", out)
  end)

  it("send_recognition.lua picks a criterion and sends", function()
    local out, ok = run("examples/send_recognition.lua")
    assert.is_true(ok, out)
    assert.matches("sent recognition %d+ for", out)
  end)

  it("create_achievement.lua uploads an image and posts the achievement", function()
    local out, ok = run("examples/create_achievement.lua")
    assert.is_true(ok, out)
    assert.matches("uploaded image %S+ %(%d+ bytes%)", out)
    assert.matches("achievement %d+ posted", out)
  end)

  it("game_loop.lua keeps drawing frames while requests complete", function()
    local out, ok = run("examples/game_loop.lua")
    assert.is_true(ok, out)
    local frames = 0
    for _ in out:gmatch("frame +%d+ ") do frames = frames + 1 end
    assert.is_true(frames >= 5, out) -- frames went on during the 150 ms answers
    assert.matches("frame +%d+  players=%.%.%.  loading", out)
    assert.matches("players=5  recognition event %d+ with %d+ likes", out)
  end)
end)
