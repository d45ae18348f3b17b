-- achievers.pretty: readable text for any value, with secrets redacted.
local h = require("helpers")
local pretty = require("achievers.pretty")

describe("achievers.pretty", function()
  it("writes small tables on one line with their keys sorted, lists first", function()
    assert.equals('{ "x", "y", a = 1, B = true, c = "three" }',
      pretty({ c = "three", B = true, a = 1, "x", "y" }))
    assert.equals("{}", pretty({}))
  end)

  it("breaks tables that do not fit over indented lines", function()
    local t = { items = {}, paging = { page = 1, totalPages = 3 } }
    for i = 1, 4 do t.items[i] = { id = i, name = "user number " .. i, email = "user" .. i .. "@example.com" } end
    local text = pretty(t)
    assert.equals([[
{
  items = {
    { email = "user1@example.com", id = 1, name = "user number 1" },
    { email = "user2@example.com", id = 2, name = "user number 2" },
    { email = "user3@example.com", id = 3, name = "user number 3" },
    { email = "user4@example.com", id = 4, name = "user number 4" },
  },
  paging = { page = 1, totalPages = 3 },
}]], text)
    for line in text:gmatch("[^\n]+") do assert.is_true(#line <= 80, line) end
    assert.equals(1, select(2, pretty(t, { compact = true }):gsub("\n", "")) + 1)
  end)

  it("quotes strings readably and shortens long ones, never inside a UTF-8 character", function()
    assert.equals('"a\\nb\\t\\"c\\""', pretty('a\nb\t"c"'))
    local long = pretty(string.rep("é", 80))
    assert.matches('%.%.%." %(160 bytes%)$', long)
    local body = long:match('^"(.-)%.%.%."')
    assert.is_true(#body <= 100)
    assert.is_truthy(utf8 == nil or utf8.len(body))
    assert.equals(string.rep("x", 100), pretty(string.rep("x", 100)):sub(2, -2))
    assert.matches("%(12 bytes%)$", pretty("abcdefghijkl", { max_string = 5 }))
  end)

  it("redacts secrets under secret keys and in URLs, whatever their case", function()
    local text = pretty({
      access_token = "tok-123", refresh_token = "ref-456", client_secret = "sec-789",
      code = "code-abc", password = "pw", headers = { Authorization = "Bearer tok-123" },
      ["Proxy-Authorization"] = "Basic xyz",
      redirect = "http://127.0.0.1:9/cb?code=code-abc&state=s1",
      scope = "read",
    })
    for _, secret in ipairs { "tok-123", "ref-456", "sec-789", "code-abc", "pw\"", "xyz" } do
      assert.is_nil(text:find(secret, 1, true), secret .. " leaked: " .. text)
    end
    assert.matches('access_token = "%[redacted%]"', text)
    assert.matches('Authorization = "%[redacted%]"', text)
    assert.matches("code=%[redacted%]&state=%[redacted%]", text) -- as the C module's redaction
    assert.matches('scope = "read"', text)
  end)

  it("redacts URL parameters whose names differ in case or are percent-encoded", function()
    local text = pretty("https://h.example/cb?Access_Token=SEK1&access%5Ftoken=SEK2&CLIENT-SECRET=SEK3" ..
      "&page=2#Code=SEK4", { max_string = 1000 })
    for i = 1, 4 do assert.is_nil(text:find("SEK" .. i, 1, true), "SEK" .. i .. " leaked: " .. text) end
    assert.matches("page=2", text)
  end)

  it("shows cycles instead of looping, and stops at the depth limit", function()
    local t = { name = "root" }
    t.self = t
    t.child = { parent = t }
    local text = pretty(t)
    assert.equals('{ child = { parent = <cycle> }, name = "root", self = <cycle> }', text)
    local shared = { 1 }
    assert.equals("{ a = { 1 }, b = { 1 } }", pretty({ a = shared, b = shared }))
    local deep = {}
    local cur = deep
    for _ = 1, 30 do cur.next = {}; cur = cur.next end
    assert.matches("{%.%.%.}", pretty(deep, { depth = 3 }))
  end)

  it("shows JSON null, integral floats and odd keys", function()
    assert.equals("null", pretty(h.achievers.null))
    assert.equals("{ a = null }", pretty({ a = h.achievers.null }))
    assert.equals("10726811", pretty(10726811.0))
    assert.equals("1.5", pretty(1.5))
    assert.equals('{ [3] = "c", ["odd-key"] = 1, [true] = 2 }', pretty({ [3] = "c", ["odd-key"] = 1, [true] = 2 }))
  end)

  describe("with the module's objects", function()
    local sb, c
    setup(function()
      sb = h.start_sandbox()
      c = h.client(sb)
    end)
    teardown(function() sb:stop() end)

    it("shows tokens, clients and errors through their tostring, with no secret", function()
      local tok = assert(c:token())
      local _, err = c:get("users/1")
      local text = pretty({ token = tok, client = c, err = err })
      assert.matches("token = achievers%.token%(bearer", text)
      assert.matches("client = achievers%.client%(", text)
      assert.matches("err = achievers: not_found %(404", text)
      assert.equals(tostring(err), pretty(err))
      assert.is_nil(text:find(tok.access_token, 1, true))
      assert.is_nil(text:find(sb.client_secret, 1, true))
    end)

    it("renders a real answer", function()
      local page = assert(c:get("users", { pageSize = 2 }))
      local text = pretty(page)
      assert.matches("^{\n  items = {\n", text)
      assert.matches("totalItems = 240,", text)
      assert.matches('username = "[%w.]+"', text)
    end)
  end)

  it("rejects unknown options", function()
    assert.has_error(function() pretty({}, { colour = true }) end)
  end)
end)
