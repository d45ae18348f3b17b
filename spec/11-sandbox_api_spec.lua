-- The sandbox's read endpoints: users, recognitions, newsfeed events with likes, comments and
-- boosts; paging; the 401/403/404/405 rules every API call shares.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")

describe("sandbox API reads", function()
  local sb, sys, user

  setup(function()
    sb = assert(sandbox.start{port = 0, rate_limit = false})
    sys = http.system_token(sb, "read")
    user = http.user_token(sb, "adele.olson", "read,write")
  end)

  teardown(function()
    sb:stop()
  end)

  local function get(path, token)
    return assert(http.api(sb, "GET", path, token or sys))
  end

  describe("GET /users", function()
    it("lists at least 200 users, 25 per page by default, with paging links", function()
      local res = get("/users")
      assert.equal(200, res.status)
      assert.equal("application/json; charset=utf-8", res.headers["content-type"])
      local p = res.json.paging
      assert.is_true(p.totalItems >= 200)
      assert.equal(25, p.pageSize)
      assert.equal(1, p.page)
      assert.equal(math.ceil(p.totalItems / 25), p.totalPages)
      assert.equal(25, #res.json.items)
      assert.equal(sb.url .. "/api/v5/users", p.self)
      assert.equal(sb.url .. "/api/v5/users?page=1", p.first)
      assert.equal(sb.url .. "/api/v5/users?page=" .. http.int(p.totalPages), p.last)
      assert.equal(sb.url .. "/api/v5/users?page=2", p.next)
      assert.is_nil(p.previous)
      local u = res.json.items[1]
      for _, f in ipairs{"id", "firstName", "lastName", "fullName", "username", "emailAddress",
                         "dateCreated", "profileImageUrl", "isPersonalizedProfileImage", "links"} do
        assert.is_not_nil(u[f], f)
      end
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[-+]%d%d:%d%d$", u.dateCreated)
      assert.equal(sb.url .. "/api/v5/users/" .. http.int(u.id), u.links.self.href)
      assert.equal("GET", u.links.self.method)
      assert.equal("self", u.links.self.rel)
    end)

    it("follows next links to the end, and pages past the end are empty", function()
      local seen, url, pages = {}, "/api/v5/users?pageSize=100", 0
      while url do
        local res = assert(http.request(sb, "GET", url, {token = sys}))
        assert.equal(200, res.status)
        assert.equal(100, res.json.paging.pageSize)
        for _, u in ipairs(res.json.items) do
          assert.is_nil(seen[u.id], "no user twice")
          seen[u.id] = true
        end
        pages = pages + 1
        url = res.json.paging.next and res.json.paging.next:sub(#sb.url + 1)
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      local res = get("/users?pageSize=100&page=" .. http.int(pages + 1))
      assert.equal(200, res.status)
      assert.equal(0, #res.json.items)
      assert.equal(n, res.json.paging.totalItems)
      assert.equal(pages, res.json.paging.totalPages)
      assert.equal(pages + 1, res.json.paging.page)
      assert.is_string(res.json.paging.previous)
    end)

    it("caps pageSize at 100 and rejects bad page parameters naming the field", function()
      assert.equal(100, get("/users?pageSize=1000").json.paging.pageSize)
      for _, q in ipairs{"page=0", "page=-1", "page=abc", "pageSize=0", "pageSize=2.5", "page="} do
        local res = get("/users?" .. q)
        assert.equal(400, res.status, q)
        assert.equal("invalid_request", res.json.error)
        assert.equal(q:match("^(%a+)"), res.json.field, q)
      end
    end)

    it("searches first and last names, e-mail and username with q", function()
      local res = get("/users?q=adele")
      assert.equal(1, res.json.paging.totalItems)
      assert.equal(10726811, res.json.items[1].id)
      assert.equal("adele.olson", res.json.items[1].username)
      assert.equal("Adele Olson", res.json.items[1].fullName)
      assert.equal(1, get("/users?q=GARFINKEL").json.paging.totalItems)
      assert.equal(1, get("/users?q=brady.garfinkel%40example.com").json.paging.totalItems)
      assert.equal(0, get("/users?q=zzzzzz").json.paging.totalItems)
      local olson = get("/users?q=ol&pageSize=2")
      assert.equal(sb.url .. "/api/v5/users?q=ol&pageSize=2&page=2", olson.json.paging.next)
    end)

    it("works with a user token too", function()
      assert.equal(200, get("/users", user).status)
    end)
  end)

  describe("GET /users/{id}", function()
    it("returns one user with a manager", function()
      local res = get("/users/10726846")
      assert.equal(200, res.status)
      assert.equal("brady.garfinkel", res.json.username)
      assert.equal(10726811, res.json.managerId)
      assert.equal("adele.olson", res.json.manager.username)
      assert.is_false(res.json.isManager)
      assert.is_true(get("/users/10726811").json.isManager)
    end)

    it("gives every user a manager", function()
      local res = get("/users?pageSize=100&page=2")
      for _, u in ipairs(res.json.items) do
        assert.is_number(u.managerId)
      end
    end)

    it("answers 404 for unknown ids", function()
      local res = get("/users/1")
      assert.equal(404, res.status)
      assert.equal("not_found", res.json.error)
      assert.equal(404, get("/users/abc").status)
    end)
  end)

  describe("GET /recognitions", function()
    it("lists recognitions newest first", function()
      local res = get("/recognitions")
      assert.equal(200, res.status)
      assert.is_true(res.json.paging.totalItems > 100)
      local items = res.json.items
      for i = 2, #items do
        assert.is_true(items[i - 1].dateCreated >= items[i].dateCreated)
      end
      local r = items[1]
      for _, f in ipairs{"id", "recognitionText", "criterion", "points", "nominator", "nominees",
                         "dateCreated", "newsfeedEventURL", "links"} do
        assert.is_not_nil(r[f], f)
      end
      assert.equal(sb.url .. "/api/v5/recognitions/" .. http.int(r.id), r.links.self.href)
    end)

    it("filters by username, or by id with useUserIds=true", function()
      local by_name = get("/recognitions?userId=brady.garfinkel&pageSize=100")
      local by_id = get("/recognitions?userId=10726846&useUserIds=true&pageSize=100")
      assert.equal(200, by_name.status)
      assert.is_true(by_name.json.paging.totalItems > 0)
      assert.same(by_name.json.items, by_id.json.items)
      for _, r in ipairs(by_name.json.items) do
        local involved = r.nominator.username == "brady.garfinkel"
        for _, n in ipairs(r.nominees) do involved = involved or n.username == "brady.garfinkel" end
        assert.is_true(involved)
      end
    end)

    it("rejects unknown users and bad booleans naming the field", function()
      local res = get("/recognitions?userId=no.body")
      assert.equal(400, res.status)
      assert.equal("userId", res.json.field)
      res = get("/recognitions?userId=10726846")
      assert.equal(400, res.status, "a number without useUserIds is a username")
      res = get("/recognitions?userId=1&useUserIds=maybe")
      assert.equal(400, res.status)
      assert.equal("useUserIds", res.json.field)
    end)

    it("returns one recognition, or 404", function()
      local first = get("/recognitions?pageSize=1").json.items[1]
      local res = get("/recognitions/" .. http.int(first.id))
      assert.equal(200, res.status)
      assert.same(first, res.json)
      assert.equal(404, get("/recognitions/1").status)
    end)
  end)

  describe("OPTIONS /recognitions", function()
    it("lists the modules and criteria the token's user may use", function()
      local res = assert(http.api(sb, "OPTIONS", "/recognitions", user))
      assert.equal(200, res.status)
      local names, types, points = {}, {}, {}
      for _, m in ipairs(res.json.items) do
        names[m.name] = true
        types[m.moduleType] = true
        assert.is_string(m.description)
        assert.is_string(m.bannerURL)
        for _, c in ipairs(m.criteria) do
          assert.is_number(c.id)
          assert.is_string(c.criterionBannerUrl)
          points[c.id] = c.points
        end
      end
      assert.is_true(names["Email Recognition"])
      assert.is_true(types.FREE)
      assert.is_true(types.POINTS)
      assert.equal(0, points[412])
      assert.equal(500, points[420])
      assert.equal(1000, points[421], "adele is a manager")
    end)

    it("narrows the criteria for the given nominees", function()
      local mine = assert(http.api(sb, "OPTIONS", "/recognitions?nominees=brady.garfinkel", user))
      local other = assert(http.api(sb, "OPTIONS", "/recognitions?nominees=10726900&useUserIds=true", user))
      local function has(res, id)
        for _, m in ipairs(res.json.items) do
          for _, c in ipairs(m.criteria) do if c.id == id then return true end end
        end
        return false
      end
      assert.is_true(has(mine, 422), "adele may give her report the Gold award")
      assert.is_false(has(other, 422))
      local brady = http.user_token(sb, "brady.garfinkel", "read")
      local res = assert(http.api(sb, "OPTIONS", "/recognitions", brady))
      assert.is_false(has(res, 421), "brady is no manager")
      assert.is_true(has(res, 412))
    end)

    it("needs a user token and known nominees", function()
      local res = assert(http.api(sb, "OPTIONS", "/recognitions", sys))
      assert.equal(403, res.status)
      assert.equal("forbidden", res.json.error)
      res = assert(http.api(sb, "OPTIONS", "/recognitions?nominees=no.body", user))
      assert.equal(400, res.status)
      assert.equal("nominees", res.json.field)
    end)
  end)

  describe("GET /newsfeed-events", function()
    it("lists recognition and achievement events newest first", function()
      local res = get("/newsfeed-events?pageSize=100")
      assert.equal(200, res.status)
      local types = {}
      for i, e in ipairs(res.json.items) do
        types[e.eventType] = true
        if i > 1 then assert.is_true(res.json.items[i - 1].dateCreated >= e.dateCreated) end
        assert.is_not_nil(e.creator.name)
        assert.equal(sb.url .. "/event/" .. http.int(e.id), e.newsfeedEventURL)
        assert.equal(sb.url .. "/api/v5/newsfeed-events/" .. http.int(e.id) .. "/likes", e.links.likes.href)
      end
      assert.is_true(types.recognition)
      assert.is_true(types.achievement)
    end)

    it("filters by user", function()
      local res = get("/newsfeed-events?userId=adele.olson")
      assert.equal(200, res.status)
      assert.is_true(res.json.paging.totalItems > 0)
      local all = get("/newsfeed-events").json.paging.totalItems
      assert.is_true(res.json.paging.totalItems < all)
      assert.equal(400, get("/newsfeed-events?userId=nobody.at.all").status)
    end)

    it("returns one event with its likes, comments and boosts", function()
      local items = get("/newsfeed-events?pageSize=50").json.items
      local found = {}
      for _, e in ipairs(items) do
        local id = http.int(e.id)
        assert.same(e, get("/newsfeed-events/" .. id).json)
        for _, kind in ipairs{"likes", "comments", "boosts"} do
          local res = get("/newsfeed-events/" .. id .. "/" .. kind)
          assert.equal(200, res.status)
          assert.equal(e[kind .. "Count"], res.json.paging.totalItems)
          for _, r in ipairs(res.json.items) do
            found[kind] = true
            assert.is_number(r.id)
            assert.is_string(r.user.username)
            if kind == "comments" then assert.is_string(r.comment) end
            if kind == "boosts" then assert.is_true(r.points > 0) end
          end
        end
      end
      assert.is_true(found.likes and found.comments and found.boosts)
      assert.equal(404, get("/newsfeed-events/1").status)
      assert.equal(404, get("/newsfeed-events/1/likes").status)
    end)

    it("serves the event page behind newsfeedEventURL", function()
      local e = get("/newsfeed-events?pageSize=1").json.items[1]
      local res = assert(http.request(sb, "GET", e.newsfeedEventURL:sub(#sb.url + 1)))
      assert.equal(200, res.status)
      assert.matches("text/html", res.headers["content-type"])
    end)

    it("answers the pre-2018 /events paths with 404", function()
      assert.equal(404, get("/events").status)
      assert.equal(404, get("/events/880001").status)
      assert.equal(404, get("/events/880001/likes").status)
    end)
  end)

  describe("authorization", function()
    it("answers 401 with WWW-Authenticate: Bearer without a token", function()
      local res = assert(http.request(sb, "GET", "/api/v5/users"))
      assert.equal(401, res.status)
      assert.matches("^Bearer", res.headers["www-authenticate"])
      assert.equal("invalid_token", res.json.error)
      res = assert(http.request(sb, "GET", "/api/v5/users", {headers = {Authorization = "Basic eDp5"}}))
      assert.equal(401, res.status)
    end)

    it("answers 401 invalid_token for unknown tokens", function()
      local res = get("/users", string.rep("0", 40))
      assert.equal(401, res.status)
      assert.matches('error="invalid_token"', res.headers["www-authenticate"])
    end)

    it("answers 403 for a missing scope", function()
      local wo = http.system_token(sb, "write")
      local res = get("/users", wo)
      assert.equal(403, res.status)
      assert.equal("forbidden", res.json.error)
      assert.matches('insufficient_scope', res.headers["www-authenticate"])
    end)

    it("answers 404 for unknown paths and 405 for a wrong method on a known one", function()
      local res = get("/nothing")
      assert.equal(404, res.status)
      assert.equal("not_found", res.json.error)
      res = assert(http.api(sb, "DELETE", "/users", sys))
      assert.equal(405, res.status)
      assert.equal("GET", res.headers["allow"])
      res = assert(http.api(sb, "PUT", "/recognitions", sys))
      assert.equal(405, res.status)
      assert.matches("OPTIONS", res.headers["allow"])
      assert.equal(404, assert(http.request(sb, "GET", "/")).status)
    end)

    it("sets the Date header from the emulator clock", function()
      local function date_of(res)
        return res.headers["date"]
      end
      local before = date_of(get("/users?pageSize=1"))
      sb:advance(3 * 24 * 3600)
      local t0 = sb:time()
      local after = date_of(get("/users?pageSize=1"))
      local t1 = sb:time()
      assert.not_equal(before, after)
      assert.is_true(after == os.date("!%a, %d %b %Y %H:%M:%S GMT", t0) or
                     after == os.date("!%a, %d %b %Y %H:%M:%S GMT", t1), after)
    end)
  end)
end)
