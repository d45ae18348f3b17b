-- Regressions found late by fuzzing (fuzz/findings): each failed before its fix.
local h = require("helpers")
local achievers = h.achievers

describe("http:// base_url", function()
  it("is refused for dotted numbers with leading zeros", function()
    for _, url in ipairs({ "http://127.088.1.1", "http://127.0.0.09", "http://127.07.0.1", "http://127.0.0.00" }) do
      assert.has_error(function() achievers.client { base_url = url } end, nil, url)
    end
  end)
end)

describe("sandbox", function()
  it("refuses a nominee with a NUL byte", function()
    local sb = h.start_sandbox()
    local c = h.client(sb, { scope = "read,write" })
    local user = h.user_client(sb, c)
    local o = assert(user:request { method = "OPTIONS", path = "recognitions", query = { nominees = "brady.garfinkel" } })
    local rec, err = user:post("recognitions", { nominees = "brady.garfinkel\0junk",
      criterionId = o.items[1].criteria[1].id, recognitionText = "x" })
    sb:stop()
    assert.is_nil(rec)
    assert.equals("invalid", err.kind)
  end)
end)
