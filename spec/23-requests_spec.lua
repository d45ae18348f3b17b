-- get, post and request against the sandbox: what arrives, what comes back, keep-alive.
local h = require("helpers")
local achievers = h.achievers

describe("requests", function()
  local sb, c
  setup(function() sb = h.start_sandbox() end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    c = h.client(sb)
  end)

  it("gets a list as a Lua table with integer ids", function()
    local page = assert(c:get("users", { pageSize = 5 }))
    assert.equals(5, #page.items)
    assert.equals(5, page.paging.pageSize)
    local id = page.items[1].id
    if _VERSION >= "Lua 5.3" then assert.equals("integer", math.type(id)) end
    assert.matches("^users/%d+$", "users/" .. id)
    local one = assert(c:get("users/" .. id))
    assert.equals(id, one.id)
  end)

  it("accepts a path, an API path or an absolute URL on the program host", function()
    local a = assert(c:get("users", { pageSize = 2 }))
    local b = assert(c:get("/api/v5/users", { pageSize = 2 }))
    local d = assert(c:get(a.paging.first))
    assert.same(a.items, b.items)
    assert.equals(a.items[1].id, d.items[1].id)
    local r = h.last_request(sb, "/users")
    assert.equals("GET", r.method)
  end)

  it("encodes queries: sorted keys, lists repeated, booleans, numbers without .0", function()
    assert(c:get("users", { q = "a b&c", page = 1, pageSize = 2.0, flag = true, l = { "x", "y" } }))
    local r = h.last_request(sb, "/users")
    assert.equals("flag=true&l=x&l=y&page=1&pageSize=2&q=a%20b%26c", r.query)
  end)

  it("posts form bodies with lists as repeated keys", function()
    local user = h.user_client(sb, c)
    local crit = assert(user:request { method = "OPTIONS", path = "recognitions", query = { nominees = "brady.garfinkel" } })
    local criterion = crit.items[1].criteria[1].id
    local rec, err = user:post("recognitions", {
      nominees = { "brady.garfinkel" },
      criterionId = criterion,
      recognitionText = "Thanks!",
    })
    assert.is_nil(err)
    assert.is_table(rec)
    local r = h.last_request(sb, "/recognitions")
    assert.equals("POST", r.method)
    assert.matches("^application/x%-www%-form%-urlencoded", r.headers["content-type"])
    assert.equals("criterionId=" .. criterion .. "&nominees=brady.garfinkel&recognitionText=Thanks%21", r.body)
  end)

  it("sends JSON bodies and extra headers with request{}", function()
    local user = h.user_client(sb, c)
    local crit = assert(user:request { method = "OPTIONS", path = "recognitions" })
    local rec = user:request {
      method = "POST", path = "recognitions",
      json = { nominees = { "brady.garfinkel" }, criterionId = crit.items[1].criteria[1].id, recognitionText = "JSON" },
      headers = { ["X-Request-Id"] = "abc-123" },
      timeout = 5,
    }
    assert.is_table(rec)
    local r = h.last_request(sb, "/recognitions")
    assert.equals("application/json", r.headers["content-type"])
    assert.equals("abc-123", r.headers["x-request-id"])
    assert.matches('"recognitionText":"JSON"', r.body, 1, true)
  end)

  it("reuses one connection for 100 GETs", function()
    for i = 1, 100 do assert(c:get("users/10726811")) end
    local st = sb:stats()
    assert.equals(101, st.requests) -- 100 GETs and the token request
    assert.equals(1, st.token_requests)
    assert.equals(1, st.connections)
  end)

  it("returns achievers.null for JSON null", function()
    -- the paging object of a single page has no next; a null appears in users' optional fields
    local page = assert(c:get("users", { pageSize = 1 }))
    assert.is_nil(page.paging.previous)
    assert.is_not_nil(achievers.null)
  end)
end)
