-- examples/embed: a C host embeds Lua, loads the module and drives client:poll(0) from its
-- own frame loop while requests complete.
local h = require("helpers")

describe("embedding in a C host", function()
  it("keeps its frames going while the requests complete", function()
    local host = os.getenv("ACHIEVERS_EMBED_HOST") or (h.build .. "/embed-host")
    local p = io.popen(("env -u ACHIEVERS_BASE_URL %s examples/embed/script.lua %s 2>&1"):format(host, h.build))
    local out = p:read("*a")
    local ok, _, code = p:close()
    assert.is_true(ok == true or code == 0, out)
    local waiting = 0
    for _ in out:gmatch("frame +%d+: waiting") do waiting = waiting + 1 end
    assert.is_true(waiting >= 3, out) -- frames went on during the 100 ms answers
    assert.matches("Adele Olson", out)
    assert.matches("Brady Garfinkel", out)
    local reported = tonumber(out:match("(%d+) requests reported by poll"))
    assert.equals(2, reported)
    local worst = tonumber(out:match("worst frame ([%d%.]+) ms"))
    assert.is_true(worst < 50, out)
  end)
end)
