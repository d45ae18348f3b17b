-- Form encoding and binary safety, checked at the sandbox byte for byte.
local h = require("helpers")

local function sha256_hex(s)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(s)
  f:close()
  local p = io.popen("sha256sum " .. tmp)
  local out = p:read("*a")
  p:close()
  os.remove(tmp)
  return out:match("^(%x+)")
end

describe("encoding", function()
  local sb, system, user, criterion
  setup(function()
    sb = h.start_sandbox { rate_limit = false }
    system = h.client(sb, { scope = "read,write" })
    user = h.user_client(sb, system)
    criterion = assert(user:recognition_criteria { nominees = "brady.garfinkel" }).items[1].criteria[1].id
  end)
  teardown(function() sb:stop() end)

  it("sends accents, emoji and &=%+ byte-identical and gets them back from GET /recognitions", function()
    local text = "Merci Zoë & Ågot: 100% + «très» bien = 🎉🚀 a+b=c&d%20e"
    local rec = assert(user:send_recognition {
      nominees = { "brady.garfinkel" }, criterionId = criterion, recognitionText = text,
    })
    local r = h.last_request(sb, "/recognitions")
    local got = r.body:match("recognitionText=([^&]*)")
    assert.equals(text, (got:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)))
    assert.is_nil(r.body:find("+", 1, true)) -- spaces as %20, a literal + as %2B
    assert.equals(text, rec.recognitionText)
    local back = assert(system:recognition(rec.id))
    assert.equals(text, back.recognitionText)
    local list = assert(system:recognitions { userId = "brady.garfinkel", pageSize = 1 })
    assert.equals(text, list.items[1].recognitionText)
  end)

  it("writes lists as repeated keys, booleans as true/false, numbers without exponent", function()
    local ids = { 10726846, 10726811.0 }
    local a = assert(system:create_achievement {
      participants = ids, useUserIds = true, description = "ids", points = 1e3,
    })
    assert.is_table(a)
    local r = h.last_request(sb, "/achievements")
    assert.equals("description=ids&participants=10726846&participants=10726811&points=1000&useUserIds=true", r.body)
  end)

  it("writes fractional and huge numbers without exponent", function()
    system:request { method = "POST", path = "achievements", form = { a = 0.000001, b = 1e21, c = -2.5 } }
    local r = h.last_request(sb, "/achievements")
    assert.equals("a=0.000001&b=1000000000000000000000&c=-2.5", r.body)
  end)

  it("uploads every byte value 0 to 255 intact", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    -- after a PNG signature: the sandbox takes images only
    local data = "\137PNG\r\n\26\n" .. table.concat(bytes):rep(4)
    local up = assert(system:upload { data = data, filename = "bytes.png" })
    assert.equals(#data, up.size)
    assert.equals(sha256_hex(data), up.sha256)
  end)

  it("uploads a file from disk with its type and name", function()
    local path = os.tmpname() .. ".png"
    local f = assert(io.open(path, "wb"))
    local png = "\137PNG\r\n\26\n" .. string.rep("\0\255\r\n", 100)
    f:write(png)
    f:close()
    local up = assert(system:upload { file = path })
    os.remove(path)
    assert.equals(#png, up.size)
    assert.equals(sha256_hex(png), up.sha256)
    local r = h.last_request(sb, "/uploads")
    assert.matches('filename="' .. path:match("[^/]+$"), r.body, 1, true)
    assert.matches("Content-Type: image/png", r.body, 1, true)
  end)
end)
