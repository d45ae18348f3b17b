-- The parts of `achievers repl` that need no terminal: completion candidates (from a real
-- client, whose methods hide behind an __index function), the one-line summary of a page, the
-- help text, and a session on plain stdin.
local h = require("helpers")
local cli = require("support.cli")
local complete = require("achievers.repl_complete")
local repl = require("achievers.cli_repl")
local help = require("achievers.help")

describe("achievers repl, its parts", function()
  local sb, c
  setup(function()
    sb = h.start_sandbox()
    c = h.client(sb)
  end)
  teardown(function() sb:stop() end)

  local function env()
    return setmetatable({ client = c, achievers = h.achievers }, { __index = _G })
  end

  describe("completion", function()
    it("completes the client's methods, endpoint helpers included, and hides private ones", function()
      assert.equals("function", type(getmetatable(c).__index)) -- nothing to list there
      local got = complete.candidates(env(), "client:newsfeed_event_")
      assert.same({ "client:newsfeed_event_boosts", "client:newsfeed_event_comments",
        "client:newsfeed_event_likes" }, got)
      local all = complete.candidates(env(), "client:")
      for _, e in ipairs(h.achievers.endpoints) do
        assert.truthy(("\0" .. table.concat(all, "\0") .. "\0"):find("\0client:" .. e.name .. "\0", 1, true), e.name)
      end
      for _, m in ipairs { "get", "post", "request", "each", "async", "poll", "spawn", "token", "with_token" } do
        assert.truthy(("\0" .. table.concat(all, "\0") .. "\0"):find("\0client:" .. m .. "\0", 1, true), m)
      end
      for _, name in ipairs(all) do assert.is_nil(name:find(":_", 1, true), name) end
    end)

    it("completes globals, keywords and fields of tables and strings", function()
      local e = env()
      e.my_value = 1
      assert.same({ "my_value" }, complete.candidates(e, "my_"))
      assert.same({ "achievers.json_decode" }, complete.candidates(e, "achievers.json_"))
      assert.same({ "achievers.endpoints" }, complete.candidates(e, "achievers.endp"))
      assert.same({ "string.format" }, complete.candidates(e, "string.form"))
      assert.same({ "repeat", "require", "return" }, complete.candidates(e, "re"))
      e.s = "text"
      assert.same({ "s:upper" }, complete.candidates(e, "s:up"))
      assert.same({}, complete.candidates(e, "nothing_here.x"))
      assert.same({}, complete.candidates(e, "(1 +"))
    end)

    it("lists an object's methods from the reference when its metatable lists none", function()
      local fake = setmetatable({}, { __name = "achievers.token", __index = function() end })
      local got = complete.fields_of(fake, true)
      assert.same({ "expires_in", "is_expired", "needs_refresh", "refresh", "to_table" }, got)
    end)

    it("gives readline the word's candidates", function()
      local f = complete.readline_function(env())
      local line = "p(client:us"
      assert.same({ "client:user", "client:users" }, f(line, 3, #line))
    end)
  end)

  describe("summary of a page", function()
    it("is one line: page, count, kind and the names", function()
      local page = assert(c:get("users", { pageSize = 3 }))
      local s = repl.summary(page)
      assert.matches("^page 1/80, 3 users %(of 240%): [%w.]+, [%w.]+, [%w.]+$", s)
      local rec = assert(c:get("recognitions", { pageSize = 2 }))
      assert.matches("^page 1/%d+, 2 recognitions %(of %d+%): ", repl.summary(rec))
    end)

    it("shortens a long list of names, and is nil for anything else", function()
      local page = assert(c:get("users", { pageSize = 100 }))
      local s = repl.summary(page, 60)
      assert.matches(", %.%.%.$", s)
      assert.is_true(#s < 140)
      assert.is_nil(repl.summary(assert(c:get("users/10726811"))))
      assert.is_nil(repl.summary({ items = {} }))
      assert.is_nil(repl.summary("x"))
    end)
  end)

  describe("help", function()
    it("has an entry for every endpoint helper and the client's methods, with an example", function()
      for _, e in ipairs(h.achievers.endpoints) do
        local text = assert(help.text("client:" .. e.name))
        assert.matches("`" .. e.method .. " " .. e.path:gsub("%p", "%%%0") .. "`", text)
        assert.matches("\nExample:\n", text)
      end
      assert.matches("^client:get%(path, query%)\nGET a path", help.text("client:get"))
      assert.equals(help.text("client:get"), help.text("client.get"))
      assert.matches("^achievers%.json_decode%(text%)", help.text("json_decode"))
      assert.matches("`on_rate_limit`", help.text("achievers.client"))
      local none, why = help.text("nothing")
      assert.is_nil(none)
      assert.matches("no help for nothing", why)
      assert.matches("\n  client  :token, :get, ", help.topics())
    end)
  end)

  it("answers `help` with the topics on plain stdin (no terminal)", function()
    local home, e = cli.private_env(sb)
    local input = home .. "/in"
    local f = assert(io.open(input, "w"))
    f:write("help\nhelp 'client:users'\nclient:users { pageSize = 2 }\n:full\n")
    f:close()
    local cmd = string.format("%s %s bin/achievers repl <%s", cli.env_prefix(e), h.lua, cli.q(input))
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. cli.q(home))
    assert.matches("achievers> help%(NAME%) for one of these", out)
    assert.matches("achievers> client:users%(query%)\n`GET /api/v5/users`", out)
    assert.matches("achievers> page 1/120, 2 users %(of 240%): ", out)
    assert.matches("achievers> {\n  items = {", out)
  end)
end)
