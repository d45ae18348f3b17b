-- client:each: every item of every page exactly once, an empty list yields nothing, an error
-- is yielded once (as false, err, so a for loop sees it) and ends the walk.
local h = require("helpers")

describe("client:each", function()
  local sb, c
  setup(function() sb = h.start_sandbox { rate_limit = false } end)
  teardown(function() sb:stop() end)
  before_each(function()
    sb:reset()
    c = h.client(sb)
  end)

  it("walks at least 5 pages and returns every item exactly once", function()
    local total = assert(c:users { pageSize = 1 }).paging.totalItems
    local seen, n = {}, 0
    for item, err in c:each("users", { pageSize = 40 }) do
      assert.is_nil(err)
      assert.is_nil(seen[item.id], "item twice: " .. tostring(item.id))
      seen[item.id] = true
      n = n + 1
    end
    assert.equals(total, n)
    assert.is_true(math.ceil(total / 40) >= 5)
    assert.equals(math.ceil(total / 40), h.route_count(sb, "GET /users") - 1)
  end)

  it("keeps the query across pages", function()
    local n = 0
    for item in c:each("users", { q = "a", pageSize = 7 }) do
      n = n + 1
      local text = (item.firstName .. item.lastName .. item.emailAddress .. item.username):lower()
      assert.truthy(text:find("a", 1, true))
    end
    assert.equals(assert(c:users { q = "a" }).paging.totalItems, n)
  end)

  it("yields nothing for an empty result", function()
    local n = 0
    for _ in c:each("users", { q = "no-such-person-anywhere" }) do n = n + 1 end
    assert.equals(0, n)
  end)

  it("yields false, err once on an error and stops", function()
    assert(c:token())
    local items, errs = 0, {}
    -- page 2 fails
    local first = true
    for item, err in c:each("users", { pageSize = 100 }) do
      if first then
        sb:fail { count = 3, status = 500, path = "/api/v5/users" }
        first = false
      end
      if item then items = items + 1 else errs[#errs + 1] = err end
    end
    assert.equals(100, items)
    assert.equals(1, #errs)
    assert.equals("server", errs[1].kind)
  end)

  it("stops cleanly on the last page and after break", function()
    local it = c:each("users", { pageSize = 100 })
    local n = 0
    for _ in it do n = n + 1 if n == 150 then break end end
    assert.equals(150, n)
    assert.equals(2, h.route_count(sb, "GET /users"))
  end)

  it("follows recognitions for one user", function()
    local n = 0
    for rec in c:each("recognitions", { userId = "adele.olson", pageSize = 3 }) do
      n = n + 1
      assert.is_number(rec.id)
    end
    assert.equals(assert(c:recognitions { userId = "adele.olson" }).paging.totalItems, n)
  end)
end)
