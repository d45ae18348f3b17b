-- Every resource helper: a success and error paths (404, 400 naming the field, 403 for a
-- read-only or system token where a user token with write is needed).
local h = require("helpers")
local achievers = h.achievers

describe("resource helpers", function()
  local sb, system, readonly, writeonly, user, event_id, recognition_id, criterion
  setup(function()
    sb = h.start_sandbox { rate_limit = false }
    system = h.client(sb, { scope = "read,write" })
    readonly = h.client(sb, { scope = "read" })
    writeonly = h.client(sb, { scope = "write" })
    user = h.user_client(sb, system, "adele.olson", "read,write")
    event_id = assert(system:newsfeed_events { pageSize = 1 }).items[1].id
    recognition_id = assert(system:recognitions { pageSize = 1 }).items[1].id
    criterion = assert(user:recognition_criteria { nominees = "brady.garfinkel" }).items[1].criteria[1].id
  end)
  teardown(function() sb:stop() end)

  local function fails(kind, status, field, data, err)
    assert.is_nil(data)
    assert.equals(kind, err.kind)
    assert.equals(status, err.status)
    if field then assert.matches(field, err.message, 1, true) end
  end

  it("are described by one table", function()
    local names = {}
    for _, e in ipairs(achievers.endpoints) do
      names[#names + 1] = e.name
      assert.is_function(system[e.name], e.name)
      assert.matches("^/api/v5/", e.path)
      assert.matches("^[A-Z]+$", e.method)
      assert.is_true(e.scope == "read" or e.scope == "write")
    end
    assert.equals(13, #names)
  end)

  it("users", function()
    local page = assert(system:users { q = "adele" })
    assert.equals("adele.olson", page.items[1].username)
    fails("invalid", 400, "pageSize", system:users { pageSize = 0 })
    fails("forbidden", 403, nil, writeonly:users())
  end)

  it("user", function()
    assert.equals("adele.olson", assert(system:user(10726811)).username)
    assert.equals("adele.olson", assert(system:user(10726811.0)).username) -- no ".0" in the path
    fails("not_found", 404, nil, system:user(1))
    fails("forbidden", 403, nil, writeonly:user(10726811))
    assert.has_error(function() system:user({}) end)
    assert.has_error(function() system:user("1\r\nX: y") end)
  end)

  it("recognitions", function()
    local page = assert(system:recognitions { userId = "adele.olson", pageSize = 5 })
    assert.is_true(#page.items > 0)
    fails("invalid", 400, "page", system:recognitions { page = -1 })
    fails("forbidden", 403, nil, writeonly:recognitions())
  end)

  it("recognition", function()
    assert.equals(recognition_id, assert(system:recognition(recognition_id)).id)
    fails("not_found", 404, nil, system:recognition(42))
  end)

  it("recognition_criteria (OPTIONS) needs a user token", function()
    local crit = assert(user:recognition_criteria { nominees = "brady.garfinkel" })
    assert.is_table(crit.items[1].criteria)
    fails("forbidden", 403, nil, system:recognition_criteria { nominees = "brady.garfinkel" })
    fails("invalid", 400, "nominees", user:recognition_criteria { nominees = "no.such.person" })
  end)

  it("send_recognition needs a user token with write", function()
    local rec = assert(user:send_recognition {
      nominees = { "brady.garfinkel" }, criterionId = criterion, recognitionText = "Great demo",
    })
    assert.is_string(rec.newsfeedEventURL)
    fails("invalid", 400, "recognitionText", user:send_recognition { nominees = "brady.garfinkel", criterionId = criterion })
    fails("invalid", 400, "nominees", user:send_recognition { nominees = "nobody.here", criterionId = criterion, recognitionText = "x" })
    fails("forbidden", 403, nil, system:send_recognition { nominees = "brady.garfinkel", criterionId = criterion, recognitionText = "x" })
    local ro = h.user_client(sb, system, "adele.olson", "read")
    fails("forbidden", 403, nil, ro:send_recognition { nominees = "brady.garfinkel", criterionId = criterion, recognitionText = "x" })
    assert.has_error(function() user:send_recognition() end)
  end)

  it("create_achievement", function()
    local a = assert(system:create_achievement {
      participants = { "brady.garfinkel", "adele.olson" }, description = "Shipped it", points = 10,
    })
    assert.equals("Shipped it", a.description)
    fails("invalid", 400, "participants", system:create_achievement { description = "x" })
    fails("forbidden", 403, nil, readonly:create_achievement { participants = "brady.garfinkel", description = "x" })
  end)

  it("upload", function()
    local up = assert(system:upload { data = "GIF89a", filename = "a.gif" })
    assert.equals(6, up.size)
    fails("forbidden", 403, nil, readonly:upload { data = "x", filename = "a.png" })
    local d, err = system:upload { file = "/nonexistent/dir/image.png" }
    assert.is_nil(d)
    assert.equals("invalid", err.kind)
    assert.matches("cannot read '/nonexistent/dir/image.png'", err.message, 1, true)
    assert.has_error(function() system:upload {} end)
    -- the file field is required: a multipart body without it is 400 naming it
    fails("invalid", 400, "file", system:request { method = "POST", path = "uploads",
      multipart = { { name = "other", data = "x" } } })
  end)

  it("newsfeed_events", function()
    assert.is_true(#assert(system:newsfeed_events { pageSize = 3 }).items == 3)
    fails("invalid", 400, "pageSize", system:newsfeed_events { pageSize = "x" })
    fails("forbidden", 403, nil, writeonly:newsfeed_events())
  end)

  it("newsfeed_event, likes, comments and boosts", function()
    assert.equals(event_id, assert(system:newsfeed_event(event_id)).id)
    for _, name in ipairs { "newsfeed_event_likes", "newsfeed_event_comments", "newsfeed_event_boosts" } do
      local page = assert(system[name](system, event_id, { pageSize = 2 }), name)
      assert.is_table(page.items, name)
      assert.is_table(page.paging, name)
      fails("not_found", 404, nil, system[name](system, 1))
    end
    fails("not_found", 404, nil, system:newsfeed_event(1))
  end)
end)
