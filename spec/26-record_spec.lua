-- The client option `record`: every attempt as one JSON line, secrets as stable placeholders,
-- persons pseudonymised on request; the CLI's --record and `sandbox --compare` report.
local h = require("helpers")
local cjson = require("cjson")
local cli = require("support.cli")
local q = cli.q

local function lines_of(path)
  local t = {}
  for line in io.lines(path) do
    if line:match("%S") then t[#t + 1] = cjson.decode(line) end
  end
  return t
end

-- cjson gives floats on Lua 5.1 and with Debian's lua-cjson: ids printed as integers
local function int(n) return string.format("%d", n) end

local function exchanges(path, api_only)
  local t = {}
  for _, o in ipairs(lines_of(path)) do
    if o.type == "exchange" and not (api_only and o.token_request) then t[#t + 1] = o end
  end
  return t
end

describe("recordings", function()
  local sb, dir
  local scan = require("support.record_scan").new() -- every secret the sessions used
  local on_token, keep = scan.on_token, scan.keep
  local nfile = 0

  local function new_file()
    nfile = nfile + 1
    return dir .. "/rec" .. nfile .. ".jsonl"
  end

  setup(function()
    sb = h.start_sandbox { refresh_tokens = true }
    dir = os.tmpname()
    os.remove(dir)
    assert(cli.sh("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    sb:stop()
    os.execute("rm -rf " .. q(dir))
  end)
  after_each(function() scan.collect(sb) end)

  describe("the record option", function()
    it("finds a secret again where it was JSON-escaped or percent-encoded", function()
      local path = new_file()
      local secret = 'se/cr"et+' .. string.rep("x", 8)
      local c = h.achievers.client { base_url = sb.url, client_id = sb.client_id,
        client_secret = secret, record = path, retries = 0 }
      local _, err = c:token() -- refused: the secret is wrong, but it went out
      assert.equals("auth", err.kind)
      -- the same secret where no rule knows it is one: in a query value under a plain name
      local u = h.client(sb, { record = path })
      u:get("users", { x = secret })
      local text = assert(cli.slurp(path))
      for _, form in ipairs { secret, cjson.encode(secret):sub(2, -2), "se%2Fcr%22et%2B" } do
        assert.is_nil(text:find(form, 1, true), form .. " in: " .. text)
      end
    end)

    it("keeps no token from a token answer whatever its media type says", function()
      local path = new_file()
      local body = '{"access_token":"LEAKEDACCESS1234","token_type":"Bearer","expires_in":' ..
        string.format("%d", os.time() + 3600) .. ',"scope":"read","refresh_token":"LEAKEDREFRESH5678"}'
      sb:fail { count = 1, status = 200, path = "/oauth/v2/openIDConnectClient/token",
        content_type = "text/plain", body = body }
      local c = h.client(sb, { record = path })
      local tok = assert(c:token()) -- the client takes JSON under any content type
      assert.equals("LEAKEDACCESS1234", tok.access_token)
      local text = assert(cli.slurp(path))
      assert.is_nil(text:find("LEAKED", 1, true), text)
      assert.matches("<access_token:%d+>", text)
    end)

    it("writes every attempt, token requests included, as one JSON object per line", function()
      local path = new_file()
      local c = h.client(sb, { record = path, on_token = on_token, retries = 2, retry_max_wait = 0.1 })
      assert(c:users { pageSize = 2 })
      sb:fail { count = 1, status = 503, retry_after = 0, path = "/api/v5/users/" }
      assert(c:user(10726811))
      local _, err = c:get("users/99999999")
      assert.equals(404, err.status)
      local all = lines_of(path)
      assert.equals("meta", all[1].type)
      assert.equals("achievers-recording", all[1].format)
      assert.equals(sb.url, all[1].base_url)
      local ex = exchanges(path)
      assert.equals(5, #ex) -- token, users, 503, its retry, 404
      assert.is_true(ex[1].token_request)
      assert.equals("POST", ex[1].request.method)
      assert.equals("/api/v5/users", ex[2].request.path)
      assert.equals("pageSize=2", ex[2].request.query)
      assert.equals(200, ex[2].response.status)
      assert.equals(2, #ex[2].response.body.items)
      assert.equals(503, ex[3].response.status)
      assert.equals("0", ex[3].response.headers["retry-after"])
      assert.equals(1, ex[3].attempt)
      assert.equals(2, ex[4].attempt)
      assert.equals(200, ex[4].response.status)
      assert.equals(404, ex[5].response.status)
      for _, e in ipairs(ex) do
        assert.is_number(e.duration_us)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT", e.at)
      end
    end)

    it("gives a secret the same placeholder everywhere in a file, so links survive", function()
      local path = new_file()
      local c = h.client(sb, { record = path, on_token = on_token })
      assert(c:users())
      assert(c:recognitions { pageSize = 1 })
      local ex = exchanges(path)
      local tok = ex[1].response.body.access_token
      assert.equals("<access_token:1>", tok)
      assert.equals("Bearer <access_token:1>", ex[2].request.headers.authorization)
      assert.equals("Bearer <access_token:1>", ex[3].request.headers.authorization)
      assert.equals("<client_secret:1>", ex[1].request.body.client_secret)
      assert.equals("<client_id:1>", ex[1].request.body.client_id)
      assert.matches("^Basic <credentials:1>$", ex[1].request.headers.authorization)
      -- a second client of this process on the same file: one session, one set of placeholders
      -- (the sandbox hands it the same token again)
      local c2 = h.client(sb, { record = path, on_token = on_token })
      assert(c2:user(10726811))
      ex = exchanges(path)
      assert.equals("<client_secret:1>", ex[4].request.body.client_secret)
      assert.equals("<access_token:1>", ex[4].response.body.access_token)
      assert.equals("Bearer <access_token:1>", ex[5].request.headers.authorization)
      local metas = 0
      for _, o in ipairs(lines_of(path)) do if o.type == "meta" then metas = metas + 1 end end
      assert.equals(1, metas)
    end)

    it("replaces codes, refresh tokens and user tokens of the authorization code flow", function()
      local path = new_file()
      local c = h.client(sb, { record = path, on_token = on_token, scope = "read,write" })
      local user, tok = h.user_client(sb, c, "adele.olson")
      assert(user:send_recognition { nominees = { "brady.garfinkel" }, recognitionText = "Thanks",
        criterionId = 412 })
      local fresh = assert(tok:refresh())
      keep(fresh.access_token)
      local ex = exchanges(path)
      local grants = {}
      for _, e in ipairs(ex) do
        if e.token_request then grants[#grants + 1] = e.request.body.grant_type end
      end
      assert.same({ "authorization_code", "refresh_token" }, grants)
      assert.equals("<code:1>", ex[1].request.body.code)
      assert.equals("<refresh_token:1>", ex[1].response.body.refresh_token)
      assert.equals("<refresh_token:1>", ex[3].request.body.refresh_token)
      assert.equals("Bearer " .. ex[1].response.body.access_token, ex[2].request.headers.authorization)
      assert.equals(201, ex[2].response.status)
      assert.equals("brady.garfinkel", ex[2].response.body.nominees[1].username)
    end)

    it("is checked like every option", function()
      assert.has_error(function() h.client(sb, { record = 42 }) end,
        "achievers.client: option 'record' must be a file name (got number)")
      assert.has_error(function() h.client(sb, { record_pseudonymise = true }) end,
        "achievers.client: option 'record_pseudonymise' needs 'record'")
      assert.has_error(function() h.client(sb, { record = "/nonexistent-dir/x.jsonl" }) end)
    end)
  end)

  describe("pseudonymised", function()
    it("keeps the links between objects and holds none of the original persons", function()
      local path = new_file()
      local c = h.client(sb, { record = path, record_pseudonymise = true, on_token = on_token,
        scope = "read,write" })
      local users = assert(c:users { pageSize = 5 })
      local target = users.items[2]
      assert(c:user(target.id))
      local user = h.user_client(sb, c, "adele.olson")
      local sent = assert(user:send_recognition { nominees = { target.id }, useUserIds = true,
        recognitionText = "Thanks " .. target.firstName .. " for the help", criterionId = 412 })
      assert(c:recognition(sent.id))
      local text = cli.slurp(path)
      -- nothing personal of the real people
      local originals = { "adele.olson", "Adele", "Olson" }
      for _, u in ipairs(users.items) do
        for _, v in ipairs { u.username, u.firstName, u.lastName, u.fullName, u.emailAddress,
          int(u.id) } do
          originals[#originals + 1] = v
        end
      end
      for _, v in ipairs(originals) do
        assert.is_nil(text:find(v, 1, true), "the recording holds " .. v)
      end
      -- links: the fake id of the user is the nominee's id, in the path and in the answers
      local ex = exchanges(path, true)
      local fake = ex[1].response.body.items[2]
      assert.are_not.equal(target.id, fake.id)
      assert.are_not.equal(target.username, fake.username)
      assert.equals("/api/v5/users/" .. int(fake.id), ex[2].request.path)
      assert.equals(fake.id, ex[2].response.body.id)
      assert.equals(fake.username, ex[2].response.body.username)
      assert.equals(fake.emailAddress, ex[2].response.body.emailAddress)
      local post = ex[3]
      assert.equals("POST", post.request.method)
      assert.matches("nominees=" .. int(fake.id), post.request.body_text, 1, true)
      assert.equals(fake.id, post.response.body.nominees[1].id)
      assert.equals(fake.username, post.response.body.nominees[1].username)
      assert.matches(fake.firstName, post.response.body.recognitionText, 1, true)
      assert.equals(fake.id, ex[4].response.body.nominees[1].id)
      -- the nominator is the same fake person everywhere
      assert.equals(post.response.body.nominator.username, ex[4].response.body.nominator.username)
      -- ids that are not persons' stay (the recognition links to its own path)
      assert.equals("/api/v5/recognitions/" .. int(sent.id), ex[4].request.path)
    end)
  end)

  describe("the achievers program", function()
    local home, env

    setup(function() home, env = cli.private_env(sb) end)
    teardown(function() os.execute("rm -rf " .. q(home)) end)

    -- a session recorded through the program: lists, one user, a 404, a recognition
    local function session(path)
      assert.equals(0, (cli.run(env, "--record", path, "get", "users", "pageSize=3")))
      assert.equals(0, (cli.run(env, "--record=" .. path, "get", "recognitions", "pageSize=2")))
      assert.equals(5, (cli.run(env, "--record", path, "get", "users/99999999")))
      assert.equals(0, (cli.run(env, "--record", path, "get", "newsfeed-events", "pageSize=2")))
      assert.equals(0, (cli.run(env, "--record", path, "get", "users/10726811")))
      local c = h.client(sb, { record = path, on_token = on_token, scope = "read,write" })
      local user = h.user_client(sb, c, "adele.olson")
      assert(user:send_recognition { nominees = { "brady.garfinkel" }, recognitionText = "Thanks",
        criterionId = 412 })
    end

    it("--record appends the command's exchanges to the file", function()
      local path = new_file()
      local code, out = cli.run(env, "--record", path, "--json", "get", "users", "pageSize=1")
      assert.equals(0, code)
      assert.equals(1, #cjson.decode(out).items)
      code = cli.run(env, "get", "--record", path, "users/10726811")
      assert.equals(0, code)
      local ex = exchanges(path, true)
      assert.equals(2, #ex)
      assert.equals("/api/v5/users/10726811", ex[2].request.path)
      local code2, _, err = cli.run(env, "--record")
      assert.equals(2, code2)
      assert.matches("--record needs a file name", err, 1, true)
    end)

    it("sandbox --compare finds no difference in an unedited recording", function()
      local path = new_file()
      session(path)
      local code, out, err = cli.run(env, "sandbox", "--compare", path)
      assert.equals(0, code, err)
      assert.matches("ENDPOINT%s+REQUESTS%s+DIFFERENCES", out)
      assert.matches("GET /api/v5/users/{id}%s+2%s+none", out)
      assert.matches("POST /api/v5/recognitions%s+1%s+none", out)
      assert.matches("6 requests, 5 endpoints, 0 differences", out, 1, true)
      code, out = cli.run(env, "--json", "sandbox", "--compare", path)
      assert.equals(0, code)
      local r = cjson.decode(out)
      assert.equals(0, r.differences)
      assert.equals(6, r.requests)
    end)

    it("sandbox --compare lists the differences planted in a hand-edited recording", function()
      local path = new_file()
      session(path)
      -- plant: a renamed field in the users list, a field the sandbox lacks, an extra status
      -- on the 404, a Retry-After the sandbox does not send, a type change
      local out_lines = {}
      for line in io.lines(path) do
        local o = cjson.decode(line)
        if o.type == "exchange" and o.request.path == "/api/v5/users" then
          for _, u in ipairs(o.response.body.items) do
            u.mail = u.emailAddress
            u.emailAddress = nil
            u.badge = "gold"
          end
          o.response.headers["retry-after"] = "30"
          line = cjson.encode(o)
        elseif o.type == "exchange" and o.request.path == "/api/v5/users/99999999" then
          o.response.status = 410
          line = cjson.encode(o)
        elseif o.type == "exchange" and o.request.path == "/api/v5/recognitions" and
            o.request.method == "GET" then
          o.response.body.paging.totalItems = "many"
          line = cjson.encode(o)
        end
        out_lines[#out_lines + 1] = line
      end
      local f = assert(io.open(path, "w"))
      f:write(table.concat(out_lines, "\n"), "\n")
      f:close()
      local code, out, err = cli.run(env, "sandbox", "--compare", path)
      assert.equals(0, code, err)
      assert.matches("items[].mail: recorded (string), missing in sandbox", out, 1, true)
      assert.matches("items[].badge: recorded (string), missing in sandbox", out, 1, true)
      assert.matches("items[].emailAddress: not recorded, extra in sandbox (string)", out, 1, true)
      assert.matches("header retry-after: recorded 30, sandbox absent", out, 1, true)
      assert.matches("status: recorded 410, sandbox 404", out, 1, true)
      assert.matches("paging.totalItems: type string recorded, number in sandbox", out, 1, true)
      assert.matches("GET /api/v5/newsfeed%-events%s+1%s+none", out)
      code, out = cli.run(env, "--json", "sandbox", "--compare", path)
      assert.equals(0, code)
      local r = cjson.decode(out)
      assert.equals(6, r.differences)
      local by = {}
      for _, e in ipairs(r.endpoints) do by[e.endpoint] = e end
      assert.equals(4, #by["GET /api/v5/users"].differences)
      assert.same({ what = "status", recorded = 410, sandbox = 404 },
        by["GET /api/v5/users/{id}"].differences[1])
    end)

    it("records an upload's type and size, not its bytes, and compare leaves it out", function()
      local path = new_file()
      local c = h.client(sb, { record = path, on_token = on_token, scope = "read,write" })
      assert(c:upload { data = "GIF89a-private-bytes", filename = "a.gif" })
      assert(c:users { pageSize = 1 })
      local ex = exchanges(path, true)
      assert.matches("^multipart/form%-data, %d+ bytes$", ex[1].request.body_omitted)
      assert.is_nil(cli.slurp(path):find("private-bytes", 1, true))
      local code, out = cli.run(env, "sandbox", "--compare", path)
      assert.equals(0, code)
      assert.matches("1 requests, 1 endpoints, 0 differences (1 uploads not sent", out, 1, true)
    end)

    it("sandbox --compare names the bad line of a broken recording", function()
      local path = new_file()
      local f = assert(io.open(path, "w"))
      f:write('{"type":"meta","format":"achievers-recording","version":1}\n\n{"type":"exchange",\n')
      f:close()
      local code, _, err = cli.run(env, "sandbox", "--compare", path)
      assert.equals(2, code)
      assert.matches("line 3", err, 1, true)
    end)
  end)

  -- last: every file the specs above wrote
  it("never wrote a token, secret, code or verifier to any recording", function()
    scan.collect(sb)
    assert.is_true(scan.count() >= 8, "too few secrets collected: " .. scan.count())
    local files = 0
    for i = 1, nfile do
      local text = cli.slurp(dir .. "/rec" .. i .. ".jsonl")
      if text then
        files = files + 1
        assert.is_nil(scan.find_in(text), "rec" .. i .. ".jsonl")
      end
    end
    assert.is_true(files >= 8)
  end)
end)
