-- How closely the sandbox follows what is known of the real API: the token type, the evidence
-- behind every field (and a strict mode without the inferred ones), the registered redirect URI,
-- points budgets, proxy error pages, authorize error redirects, image uploads, empty pages and
-- the program's rate-limit flags.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")
local h = require("helpers")

local query_of = http.query_of

local function authorize_query(client_id, t)
  local q = {response_type = "code", client_id = client_id, scope = "read,write", state = "st-18"}
  for k, v in pairs(t or {}) do q[k] = v or nil end
  return http.AUTHORIZE_PATH .. "?" .. http.form(q)
end

local function form_fields(html)
  local fields = {}
  for tag in html:gmatch("<input[^>]*>") do
    local name, value = tag:match('name="([^"]*)"'), tag:match('value="([^"]*)"')
    if name then fields[name] = (value or ""):gsub("&amp;", "&") end
  end
  return fields
end

-- A user token through the consent page over HTTP (works against the program too).
local function user_token_via_page(target, client_id, client_secret, user)
  local page = assert(http.request(target, "GET", authorize_query(client_id)))
  assert.equal(200, page.status, page.body)
  local f = form_fields(page.body)
  f.username, f.decision = user, "approve"
  local res = assert(http.request(target, "POST", http.AUTHORIZE_PATH, {form = f}))
  assert.equal(302, res.status, res.body)
  local code = query_of(res.headers["location"]).code
  local tok = assert(http.request(target, "POST", http.TOKEN_PATH, {json = {grant_type = "authorization_code",
    code = code, client_id = client_id, client_secret = client_secret}}))
  assert.equal(200, tok.status, tok.body)
  return tok.json.access_token
end

local function multipart(filename, data)
  local b = "sbx18boundary"
  return "--" .. b .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" .. filename ..
    "\"\r\nContent-Type: application/octet-stream\r\n\r\n" .. data .. "\r\n--" .. b .. "--\r\n",
    "multipart/form-data; boundary=" .. b
end

local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR"

describe("sandbox token type", function()
  it("is Bearer, as on the Authentication page, and the client takes it", function()
    local sb = assert(sandbox.start{port = 0})
    local res = assert(http.token_request(sb, {grant_type = "client_credentials", scope = "read"}))
    assert.equal("Bearer", res.json.token_type)
    local tok = assert(h.client(sb):token())
    sb:stop()
    assert.equal("bearer", tok.token_type, "the client compares case-insensitively and normalizes")
  end)
end)

describe("sandbox evidence", function()
  local rows

  setup(function()
    rows = sandbox.evidence()
  end)

  local function find(object, field_part)
    for _, r in ipairs(rows) do
      if r.object == object and r.field:find(field_part, 1, true) then return r end
    end
  end

  it("classes every field and behaviour as documented, code or inferred, with a source", function()
    assert.is_true(#rows > 40)
    for _, r in ipairs(rows) do
      assert.is_truthy(({documented = true, code = true, inferred = true})[r.class], r.field)
      assert.is_true(#r.source > 0 and #r.object > 0 and #r.field > 0)
    end
    for _, want in ipairs{
      {"newsfeed event", "likesCount"}, {"newsfeed event", "creator.username"},
      {"newsfeed event", "recognition / achievement"}, {"user", "managerId"},
      {"recognition", "newsfeedEventId"}, {"recognition", "links.newsfeedEvent"},
      {"recognition", "criterion.moduleId"}, {"upload answer", "sha256"}, {"error", "field"},
    } do
      local r = find(want[1], want[2])
      assert.is_table(r, want[1] .. " " .. want[2])
      assert.equal("inferred", r.class, want[1] .. " " .. want[2])
    end
    assert.equal("documented", find("token answer", "token_type").class)
    assert.equal("documented", find("user", "firstName").class)
  end)

  it("is what doc/sandbox-evidence.md shows", function()
    local p = assert(io.popen(http.BIN .. " --evidence"))
    local generated = p:read("*a")
    p:close()
    local f = assert(io.open("doc/sandbox-evidence.md", "rb"))
    local doc = f:read("*a")
    f:close()
    assert.equal(generated, doc, "regenerate: achievers-sandbox --evidence > doc/sandbox-evidence.md")
    for _, r in ipairs(rows) do
      local function esc(t) return (t:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end
      assert.matches("<tr><td>" .. esc(r.object) .. "</td><td>" .. esc(r.field) .. "</td><td>" .. r.class ..
        "</td>", doc, 1, true)
    end
  end)
end)

describe("sandbox strict mode", function()
  local loose, strict

  setup(function()
    loose = assert(sandbox.start{port = 0, rate_limit = false})
    strict = assert(sandbox.start{port = 0, rate_limit = false, strict = true})
  end)

  teardown(function()
    loose:stop()
    strict:stop()
  end)

  -- The same calls on both: {users page, recognition (POST), one recognition (GET), upload, error,
  -- event, options, comments}.
  local function sample(sb)
    local sys = http.system_token(sb, "read,write")
    local adele = http.user_token(sb, "adele.olson")
    local out = {}
    out.users = assert(http.api(sb, "GET", "/users?pageSize=3", sys)).json
    out.one_user = assert(http.api(sb, "GET", "/users/10726811", sys)).json
    out.rec = assert(http.api(sb, "POST", "/recognitions", adele, {form = {nominees = "brady.garfinkel",
      recognitionText = "strict", criterionId = 420}})).json
    out.got = assert(http.api(sb, "GET", "/recognitions/" .. http.int(out.rec.id), sys)).json
    local body, ctype = multipart("a.png", PNG)
    out.upload = assert(http.api(sb, "POST", "/uploads", sys, {body = body, headers = {["Content-Type"] = ctype}})).json
    out.err = assert(http.api(sb, "POST", "/recognitions", adele, {form = {nominees = "nobody.at.all",
      recognitionText = "x", criterionId = 412}}))
    out.events = assert(http.api(sb, "GET", "/newsfeed-events?pageSize=5", sys)).json
    out.options = assert(http.api(sb, "OPTIONS", "/recognitions", adele)).json
    out.comments = assert(http.api(sb, "GET", "/newsfeed-events/880001/comments", sys)).json
    return out
  end

  it("serves no inferred field in users, recognitions, uploads, errors and events", function()
    local l, s = sample(loose), sample(strict)
    -- the loose sandbox serves them ...
    assert.is_number(l.users.items[1].managerId)
    assert.is_number(l.rec.newsfeedEventId)
    assert.is_table(l.rec.links.newsfeedEvent)
    assert.is_number(l.rec.criterion.moduleId)
    assert.is_number(l.upload.size)
    assert.equal("nominees", l.err.json.field)
    assert.is_number(l.events.items[1].likesCount)
    -- ... the strict one does not
    for _, u in ipairs(s.users.items) do
      assert.is_nil(u.managerId)
      assert.is_string(u.username)
      assert.is_string(u.firstName)
    end
    assert.is_nil(s.one_user.manager)
    assert.is_nil(s.one_user.department)
    for _, r in ipairs{s.rec, s.got} do
      assert.is_nil(r.newsfeedEventId)
      assert.is_nil(r.links.newsfeedEvent)
      assert.is_nil(r.criterion.moduleId)
      assert.is_nil(r.criterion.moduleName)
      assert.is_nil(r.criterion.points)
      assert.is_nil(r.points)
      assert.is_nil(r.nominator)
      assert.equal(420, r.criterion.id)
      assert.equal("strict", r.recognitionText)
      assert.is_string(r.newsfeedEventURL)
      assert.equal("brady.garfinkel", r.nominees[1].username)
    end
    assert.same({"fileUploadId"}, (function()
      local keys = {}
      for k in pairs(s.upload) do keys[#keys + 1] = k end
      return keys
    end)())
    assert.equal(400, s.err.status)
    assert.equal("invalid_request", s.err.json.error)
    assert.is_string(s.err.json.error_description)
    assert.is_nil(s.err.json.field)
    for _, e in ipairs(s.events.items) do
      assert.is_nil(e.likesCount)
      assert.is_nil(e.commentsCount)
      assert.is_nil(e.boostsCount)
      assert.is_nil(e.recognition)
      assert.is_nil(e.achievement)
      assert.is_nil(e.creator.username)
      assert.is_string(e.eventType)
    end
    for _, m in ipairs(s.options.items) do
      for _, c in ipairs(m.criteria) do assert.is_nil(c.points) end
    end
    for _, c in ipairs(s.comments.items) do
      assert.is_nil(c.user)
      assert.is_nil(c.comment)
    end
  end)

  it("is a flag of the program too", function()
    local prog = http.launch("--port 0 --strict")
    local ok, e = pcall(function()
      local tok = assert(http.request(prog.url, "POST", http.TOKEN_PATH, {json = {grant_type = "client_credentials",
        scope = "read", client_id = prog.client_id, client_secret = prog.client_secret}})).json.access_token
      local users = assert(http.request(prog.url, "GET", "/api/v5/users?pageSize=2", {token = tok})).json
      assert.equal(2, #users.items)
      assert.is_nil(users.items[1].managerId)
    end)
    prog.finish()
    assert(ok, e)
  end)
end)

describe("sandbox registered redirect URI", function()
  it("accepts only the registered URI by default, and exposes it", function()
    local sb = assert(sandbox.start{port = 0})
    assert.equal("http://127.0.0.1:8910/callback", sb.redirect_uri)
    local ok = assert(http.request(sb, "GET", authorize_query(sb.client_id, {redirect_uri = sb.redirect_uri})))
    assert.equal(200, ok.status)
    for _, uri in ipairs{"http://127.0.0.1:9/callback", "http://127.0.0.1:8910/callback/x",
                         "http://localhost:8910/callback", "https://127.0.0.1:8910/callback"} do
      local res = assert(http.request(sb, "GET", authorize_query(sb.client_id, {redirect_uri = uri})))
      assert.equal(400, res.status, uri)
      assert.is_nil(res.headers["location"], uri)
    end
    assert.has_error(function() sb:consent{redirect_uri = "http://127.0.0.1:9/cb"} end)
    assert.is_string(sb:consent{redirect_uri = sb.redirect_uri})
    sb:stop()
  end)

  it("takes another registered URI, and loopback ones only when asked", function()
    local sb = assert(sandbox.start{port = 0, redirect_uri = "https://app.example.com/achievers/cb"})
    assert.equal("https://app.example.com/achievers/cb", sb.redirect_uri)
    local page = assert(http.request(sb, "GET", authorize_query(sb.client_id)))
    local f = form_fields(page.body)
    f.decision = "approve"
    local res = assert(http.request(sb, "POST", http.AUTHORIZE_PATH, {form = f}))
    assert.matches("^https://app%.example%.com/achievers/cb%?code=%x+&state=st%-18$", res.headers["location"])
    assert.equal(400, assert(http.request(sb, "GET", authorize_query(sb.client_id,
      {redirect_uri = "http://127.0.0.1:9/cb"}))).status)
    sb:stop()
    local lb = assert(sandbox.start{port = 0, loopback_redirects = true})
    assert.equal(200, assert(http.request(lb, "GET", authorize_query(lb.client_id,
      {redirect_uri = "http://127.0.0.1:9/cb"}))).status)
    -- RFC 8252 7.3 is about http on loopback: not https, not other hosts
    assert.equal(400, assert(http.request(lb, "GET", authorize_query(lb.client_id,
      {redirect_uri = "https://127.0.0.1:9/cb"}))).status)
    assert.equal(400, assert(http.request(lb, "GET", authorize_query(lb.client_id,
      {redirect_uri = "http://10.0.0.1:9/cb"}))).status)
    lb:stop()
    local bad, err = sandbox.start{port = 0, redirect_uri = "http://user@127.0.0.1/cb"}
    assert.is_nil(bad)
    assert.matches("redirect_uri", err)
  end)

  it("is --redirect-uri and --loopback-redirects in the program", function()
    local strictp = http.launch("--port 0 --redirect-uri http://127.0.0.1:7000/cb")
    local lenient = http.launch("--port 0 --loopback-redirects")
    local ok, e = pcall(function()
      assert.equal(200, assert(http.request(strictp.url, "GET", authorize_query(strictp.client_id,
        {redirect_uri = "http://127.0.0.1:7000/cb"}))).status)
      assert.equal(400, assert(http.request(strictp.url, "GET", authorize_query(strictp.client_id,
        {redirect_uri = "http://127.0.0.1:7001/cb"}))).status)
      assert.equal(200, assert(http.request(lenient.url, "GET", authorize_query(lenient.client_id,
        {redirect_uri = "http://127.0.0.1:7001/cb"}))).status)
    end)
    strictp.finish()
    lenient.finish()
    assert(ok, e)
  end)
end)

describe("sandbox points budgets", function()
  local sb

  before_each(function()
    sb = assert(sandbox.start{port = 0, rate_limit = false})
  end)

  after_each(function()
    sb:stop()
  end)

  it("seeds realistic budgets and reads and sets them", function()
    assert.equal(25000, sb:budget{user = "adele.olson"})   -- a manager
    assert.equal(5000, sb:budget{user = "brady.garfinkel"})
    assert.equal(1000000, sb:budget())
    assert.equal(100, sb:budget{user = "brady.garfinkel", points = 100})
    assert.equal(100, sb:budget{user = "brady.garfinkel"})
    assert.equal(7, sb:budget{points = 7})
    assert.has_error(function() sb:budget{user = "no.body"} end, "budget: unknown user 'no.body'")
    assert.has_error(function() sb:budget{points = -1} end)
    assert.has_error(function() sb:budget{usr = "x"} end)
    sb:reset()
    assert.equal(5000, sb:budget{user = "brady.garfinkel"})
    assert.equal(1000000, sb:budget())
  end)

  it("debits points recognitions: 30 Gold awards of 2,500, the later ones 403", function()
    local adele = http.user_token(sb, "adele.olson")
    local statuses, last = {}, nil
    for i = 1, 30 do
      local res = assert(http.api(sb, "POST", "/recognitions", adele, {form = {nominees = "brady.garfinkel",
        recognitionText = "gold " .. i, criterionId = 422}}))
      statuses[#statuses + 1] = res.status
      last = res
    end
    for i = 1, 10 do assert.equal(201, statuses[i], "recognition " .. i) end
    for i = 11, 30 do assert.equal(403, statuses[i], "recognition " .. i) end
    assert.equal("insufficient_budget", last.json.error)
    assert.matches("adele.olson has 0 points left", last.json.error_description, 1, true)
    assert.matches("2500", last.json.error_description, 1, true)
    assert.equal(0, sb:budget{user = "adele.olson"})
    -- social criteria cost nothing
    assert.equal(201, assert(http.api(sb, "POST", "/recognitions", adele, {form = {nominees = "brady.garfinkel",
      recognitionText = "thanks", criterionId = 412}})).status)
    sb:budget{user = "adele.olson", points = 2500}
    assert.equal(201, assert(http.api(sb, "POST", "/recognitions", adele, {form = {nominees = "brady.garfinkel",
      recognitionText = "one more", criterionId = 422}})).status)
  end)

  it("takes achievement points from the program's account", function()
    local sys = http.system_token(sb, "read,write")
    sb:budget{points = 1000}
    local res = assert(http.api(sb, "POST", "/achievements", sys, {form = {participants = {"brady.garfinkel",
      "olivia.varga"}, description = "big", points = 600}}))
    assert.equal(403, res.status)
    assert.equal("insufficient_budget", res.json.error)
    assert.equal(1000, sb:budget())
    res = assert(http.api(sb, "POST", "/achievements", sys, {form = {participants = {"brady.garfinkel",
      "olivia.varga"}, description = "fits", points = 500}}))
    assert.equal(201, res.status)
    assert.equal(0, sb:budget())
  end)

  it("takes budgets from the program's flags", function()
    local prog = http.launch("--port 0 --user-budget 3000 --program-budget 10")
    local ok, e = pcall(function()
      local adele = user_token_via_page(prog.url, prog.client_id, prog.client_secret, "adele.olson")
      local function gold()
        return assert(http.request(prog.url, "POST", "/api/v5/recognitions", {token = adele, form = {
          nominees = "brady.garfinkel", recognitionText = "gold", criterionId = 422}})).status
      end
      assert.equal(201, gold())
      assert.equal(403, gold())
    end)
    prog.finish()
    assert(ok, e)
  end)
end)

describe("sandbox fail with a body", function()
  it("answers a proxy's HTML page with the status and content type given", function()
    local sb = assert(sandbox.start{port = 0})
    local tok = http.system_token(sb, "read")
    local page = "<html><body><h1>502 Bad Gateway</h1></body></html>\n"
    sb:fail{count = 1, status = 502, body = page, content_type = "text/html"}
    local res = assert(http.api(sb, "GET", "/users", tok))
    assert.equal(502, res.status)
    assert.equal("text/html", res.headers["content-type"])
    assert.equal(page, res.body)
    sb:fail{count = 1, status = 504, body = "upstream timed out"}
    res = assert(http.api(sb, "GET", "/users", tok))
    assert.equal(504, res.status)
    assert.is_nil(res.headers["content-type"])
    assert.equal("upstream timed out", res.body)
    assert.equal(200, assert(http.api(sb, "GET", "/users", tok)).status)
    assert.has_error(function() sb:fail{body = 5} end)
    assert.has_error(function() sb:fail{content_type = "text/html\r\nX: 1"} end)
    sb:stop()
  end)
end)

describe("sandbox authorize error redirects", function()
  it("redirects invalid_scope and unsupported_response_type to the verified URI with the state", function()
    local sb = assert(sandbox.start{port = 0})
    local res = assert(http.request(sb, "GET", authorize_query(sb.client_id, {scope = "admin"})))
    assert.equal(302, res.status)
    local loc = res.headers["location"]
    assert.equal(sb.redirect_uri, loc:match("^[^?]*"))
    local q = query_of(loc)
    assert.equal("invalid_scope", q.error)
    assert.equal("st-18", q.state)
    assert.is_string(q.error_description)
    res = assert(http.request(sb, "GET", authorize_query(sb.client_id, {response_type = "token", state = false})))
    assert.equal(302, res.status)
    q = query_of(res.headers["location"])
    assert.equal("unsupported_response_type", q.error)
    assert.is_nil(q.state)
    -- but never to an unverified URI
    res = assert(http.request(sb, "GET", authorize_query(sb.client_id, {scope = "admin",
      redirect_uri = "https://evil.example/cb"})))
    assert.equal(400, res.status)
    assert.is_nil(res.headers["location"])
    sb:stop()
  end)
end)

describe("sandbox uploads", function()
  it("takes PNG, JPEG and GIF files by their content and refuses text", function()
    local sb = assert(sandbox.start{port = 0})
    local tok = http.system_token(sb, "read,write")
    for _, data in ipairs{PNG, "\255\216\255\224\0\16JFIF\0", "GIF87a\1\0\1\0", "GIF89a\1\0\1\0"} do
      local body, ctype = multipart("picture.bin", data)
      local res = assert(http.api(sb, "POST", "/uploads", tok, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(201, res.status, res.body)
    end
    for _, data in ipairs{"hello, world\n", "<svg xmlns='http://www.w3.org/2000/svg'/>", "\137PNG", "%PDF-1.4"} do
      local body, ctype = multipart("picture.png", data)
      local res = assert(http.api(sb, "POST", "/uploads", tok, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(400, res.status, data)
      assert.equal("file", res.json.field)
      assert.matches("not an image", res.json.error_description, 1, true)
    end
    sb:stop()
  end)
end)

describe("sandbox empty pages", function()
  it("has totalPages 0 and no last, next or previous link", function()
    local sb = assert(sandbox.start{port = 0})
    local tok = http.system_token(sb, "read")
    for _, page in ipairs{1, 3} do
      local p = assert(http.api(sb, "GET", "/users?q=zzznobody&page=" .. page, tok)).json.paging
      assert.equal(0, p.totalItems)
      assert.equal(0, p.totalPages)
      assert.equal(sb.url .. "/api/v5/users?q=zzznobody&page=1", p.first)
      assert.is_nil(p.last)
      assert.is_nil(p.next)
      assert.is_nil(p.previous)
    end
    sb:stop()
  end)
end)

describe("sandbox rate-limit flags of the program", function()
  it("--limit-heavy and --limit-default set the limits; bad values exit 2", function()
    local prog = http.launch("--port 0 --limit-heavy 2/60 --limit-default 3/60")
    local ok, e = pcall(function()
      local tok = assert(http.request(prog.url, "POST", http.TOKEN_PATH, {json = {grant_type = "client_credentials",
        scope = "read", client_id = prog.client_id, client_secret = prog.client_secret}})).json.access_token
      local function get(path) return assert(http.request(prog.url, "GET", "/api/v5" .. path, {token = tok})) end
      assert.equal(200, get("/recognitions?pageSize=1").status)
      assert.equal(200, get("/recognitions?pageSize=1").status)
      local res = get("/recognitions?pageSize=1")
      assert.equal(429, res.status)
      assert.matches("2 per 60 seconds", res.json.error_description, 1, true)
      for _ = 1, 3 do assert.equal(200, get("/users/10726811").status) end
      assert.equal(429, get("/users/10726811").status)
    end)
    prog.finish()
    assert(ok, e)
    for _, args in ipairs{"--limit-heavy 5", "--limit-heavy 0/60", "--limit-default 5/", "--limit-default x/1"} do
      local p = io.popen(http.BIN .. " " .. args .. " 2>&1 >/dev/null; echo rc=$?")
      local out = p:read("*a")
      p:close()
      assert.matches("rc=2", out, 1, true)
    end
  end)

  it("are documented, with every other start option", function()
    local f = assert(io.open("doc/sandbox.luadoc", "rb"))
    local doc = f:read("*a")
    f:close()
    for _, name in ipairs{"port", "expires", "latency_ms", "rate_limit", "limits", "tls_cert", "tls_key",
                          "client_id", "client_secret", "redirect_uri", "loopback_redirects",
                          "refresh_tokens", "strict", "user_budget", "program_budget"} do
      assert.matches("`" .. name .. "`", doc, 1, true)
    end
    assert.matches("heavy = {", doc, 1, true)
  end)
end)
