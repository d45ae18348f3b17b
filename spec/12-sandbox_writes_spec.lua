-- The sandbox's write endpoints: POST /recognitions, POST /achievements, POST /uploads. Form and
-- JSON bodies, list encodings, validation naming the field, token kind and scope rules, and
-- writes showing up in the reads.
local sandbox = require("achievers.sandbox")
local http = require("sandbox_http")

local function sha256_of(data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  local p = assert(io.popen(http.TOOL .. "sha256sum " .. path))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out:match("^(%x+)")
end

local function multipart(fields, boundary)
  boundary = boundary or "----sandboxspec7d3f"
  local parts = {}
  for _, f in ipairs(fields) do
    local disp = 'Content-Disposition: form-data; name="' .. f.name .. '"'
    if f.filename then disp = disp .. '; filename="' .. f.filename .. '"' end
    parts[#parts + 1] = "--" .. boundary .. "\r\n" .. disp .. "\r\n" ..
      (f.type and ("Content-Type: " .. f.type .. "\r\n") or "") .. "\r\n" .. f.data .. "\r\n"
  end
  return table.concat(parts) .. "--" .. boundary .. "--\r\n", "multipart/form-data; boundary=" .. boundary
end

describe("sandbox API writes", function()
  local sb, adele, brady, sys_rw, sys_r

  before_each(function()
    sb = assert(sandbox.start{port = 0, rate_limit = false})
    adele = http.user_token(sb, "adele.olson", "read,write")
    brady = http.user_token(sb, "brady.garfinkel", "read,write")
    sys_rw = http.system_token(sb, "read,write")
    sys_r = http.system_token(sb, "read")
  end)

  after_each(function()
    sb:stop()
  end)

  describe("POST /recognitions", function()
    it("creates a recognition from the token's user that shows up everywhere", function()
      local text = "Thank you 🎉 for the déjà-vu fix: a&b=c %41 + more\nline two"
      local res = assert(http.api(sb, "POST", "/recognitions", adele, {form = {
        nominees = {"brady.garfinkel"}, recognitionText = text, criterionId = 412}}))
      assert.equal(201, res.status)
      local r = res.json
      assert.equal(text, r.recognitionText)
      assert.equal("adele.olson", r.nominator.username)
      assert.equal("brady.garfinkel", r.nominees[1].username)
      assert.equal(412, r.criterion.id)
      assert.equal(0, r.points)
      assert.matches("^" .. sb.url:gsub("%p", "%%%0") .. "/event/%d+$", r.newsfeedEventURL)
      local id = http.int(r.id)
      -- GET /recognitions/{id}
      local one = assert(http.api(sb, "GET", "/recognitions/" .. id, sys_r))
      assert.equal(200, one.status)
      assert.same(r, one.json)
      -- first in GET /recognitions, also filtered by either party
      local list = assert(http.api(sb, "GET", "/recognitions?pageSize=1", sys_r))
      assert.equal(r.id, list.json.items[1].id)
      list = assert(http.api(sb, "GET", "/recognitions?userId=brady.garfinkel&pageSize=1", sys_r))
      assert.equal(r.id, list.json.items[1].id)
      -- and a newsfeed event
      local feed = assert(http.api(sb, "GET", "/newsfeed-events?pageSize=1", sys_r))
      local e = feed.json.items[1]
      assert.equal("recognition", e.eventType)
      assert.equal(r.newsfeedEventURL, e.newsfeedEventURL)
      assert.equal(r.id, e.recognition.id)
      assert.equal(text, e.recognition.recognitionText)
    end)

    it("stores the text byte for byte from a JSON body too", function()
      local text = 'JSON "quotes" \\ backslash, tab\t, emoji 🙌🏽, CJK 感谢, 100% & more'
      local res = assert(http.api(sb, "POST", "/recognitions", adele, {json = {
        nominees = {"brady.garfinkel", "10726900"}, recognitionText = text, criterionId = 420}}))
      assert.equal(400, res.status, "10726900 is an id, not a username")
      res = assert(http.api(sb, "POST", "/recognitions", adele, {json = {
        nominees = {10726846, 10726900}, useUserIds = true, recognitionText = text, criterionId = 420}}))
      assert.equal(201, res.status)
      assert.equal(text, res.json.recognitionText)
      assert.equal(2, #res.json.nominees)
      assert.equal(500, res.json.points)
      local again = assert(http.api(sb, "GET", "/recognitions/" .. http.int(res.json.id), sys_r))
      assert.equal(text, again.json.recognitionText)
    end)

    it("accepts nominees as repeated keys, key[] and comma lists", function()
      for _, body in ipairs{
        "nominees=brady.garfinkel&nominees=" .. "olivia.varga",
        "nominees%5B%5D=brady.garfinkel&nominees[]=olivia.varga",
        "nominees=brady.garfinkel%2Colivia.varga",
        "nominees=brady.garfinkel,%20olivia.varga",
      } do
        local res = assert(http.api(sb, "POST", "/recognitions", adele, {
          body = body .. "&recognitionText=Thanks&criterionId=413",
          headers = {["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8"}}))
        assert.equal(201, res.status, body .. ": " .. res.body)
        assert.equal(2, #res.json.nominees, body)
      end
    end)

    it("validates fields, naming the bad one", function()
      local cases = {
        {{recognitionText = "x", criterionId = 412}, "nominees"},
        {{nominees = "no.such.user", recognitionText = "x", criterionId = 412}, "nominees", "unknown user 'no.such.user'"},
        {{nominees = "adele.olson", recognitionText = "x", criterionId = 412}, "nominees"},
        {{nominees = "brady.garfinkel", criterionId = 412}, "recognitionText"},
        {{nominees = "brady.garfinkel", recognitionText = "", criterionId = 412}, "recognitionText"},
        {{nominees = "brady.garfinkel", recognitionText = string.rep("a", 10001), criterionId = 412}, "recognitionText"},
        {{nominees = "brady.garfinkel", recognitionText = "x"}, "criterionId"},
        {{nominees = "brady.garfinkel", recognitionText = "x", criterionId = 9999}, "criterionId"},
        {{nominees = "brady.garfinkel", recognitionText = "x", criterionId = "abc"}, "criterionId"},
        {{nominees = "brady.garfinkel", recognitionText = "x", criterionId = 412, useUserIds = "yes"}, "useUserIds"},
        {{nominees = "brady.garfinkel", recognitionText = "x", criterionId = 412, fileUploadId = 1}, "fileUploadId"},
      }
      for i, c in ipairs(cases) do
        local res = assert(http.api(sb, "POST", "/recognitions", adele, {form = c[1]}))
        assert.equal(400, res.status, "case " .. i)
        assert.equal("invalid_request", res.json.error, "case " .. i)
        assert.equal(c[2], res.json.field, "case " .. i)
        if c[3] then assert.matches(c[3], res.json.error_description, 1, true) end
      end
      local ok = assert(http.api(sb, "POST", "/recognitions", adele, {form = {
        nominees = "brady.garfinkel", recognitionText = string.rep("é", 5000), criterionId = 412}}))
      assert.equal(201, ok.status, "10,000 bytes is allowed")
      local bad = assert(http.api(sb, "POST", "/recognitions", adele, {
        body = "nominees=brady.garfinkel&criterionId=412&recognitionText=%FF%FE",
        headers = {["Content-Type"] = "application/x-www-form-urlencoded"}}))
      assert.equal(400, bad.status)
      assert.equal("recognitionText", bad.json.field)
    end)

    it("answers 403 for criteria the sender may not use", function()
      local res = assert(http.api(sb, "POST", "/recognitions", brady, {form = {
        nominees = "adele.olson", recognitionText = "x", criterionId = 421}}))
      assert.equal(403, res.status)
      assert.equal("forbidden", res.json.error)
      assert.equal("criterionId", res.json.field)
      -- the Gold award: managers, for their own direct reports only
      res = assert(http.api(sb, "POST", "/recognitions", adele, {form = {
        nominees = "brady.garfinkel", recognitionText = "x", criterionId = 422}}))
      assert.equal(201, res.status)
      assert.equal(2500, res.json.points)
      res = assert(http.api(sb, "POST", "/recognitions", adele, {form = {
        nominees = "10726900", useUserIds = "true", recognitionText = "x", criterionId = 422}}))
      assert.equal(403, res.status)
    end)

    it("needs a user token with write", function()
      local form = {nominees = "brady.garfinkel", recognitionText = "x", criterionId = 412}
      local res = assert(http.api(sb, "POST", "/recognitions", sys_rw, {form = form}))
      assert.equal(403, res.status)
      assert.equal("forbidden", res.json.error)
      local read_only = http.user_token(sb, "adele.olson", "read")
      res = assert(http.api(sb, "POST", "/recognitions", read_only, {form = form}))
      assert.equal(403, res.status)
      res = assert(http.request(sb, "POST", "/api/v5/recognitions", {form = form}))
      assert.equal(401, res.status)
    end)

    it("rejects other content types and invalid JSON", function()
      local res = assert(http.api(sb, "POST", "/recognitions", adele, {body = "<xml/>",
        headers = {["Content-Type"] = "application/xml"}}))
      assert.equal(415, res.status)
      res = assert(http.api(sb, "POST", "/recognitions", adele, {body = '{"nominees": [',
        headers = {["Content-Type"] = "application/json"}}))
      assert.equal(400, res.status)
      assert.matches("invalid JSON", res.json.error_description)
      res = assert(http.api(sb, "POST", "/recognitions", adele, {body = '[1, 2]',
        headers = {["Content-Type"] = "application/json"}}))
      assert.equal(400, res.status)
      res = assert(http.api(sb, "POST", "/recognitions", adele, {body = '{"nominees": {"a": 1}}',
        headers = {["Content-Type"] = "application/json"}}))
      assert.equal(400, res.status)
      res = assert(http.api(sb, "POST", "/recognitions", adele, {body = "a=%zz",
        headers = {["Content-Type"] = "application/x-www-form-urlencoded"}}))
      assert.equal(400, res.status)
    end)
  end)

  describe("POST /achievements", function()
    it("makes the token's user the creator, ignoring creator", function()
      local res = assert(http.api(sb, "POST", "/achievements", adele, {form = {
        participants = {"brady.garfinkel"}, description = "Shipped v2 ✅", creator = "olivia.varga",
        points = 100, dateAchieved = "2017-01-25"}}))
      assert.equal(201, res.status)
      local a = res.json
      assert.equal("adele.olson", a.creator.username)
      assert.equal("Shipped v2 ✅", a.description)
      assert.equal("2017-01-25", a.dateAchieved)
      assert.equal(100, a.points)
      local names = {}
      for _, p in ipairs(a.participants) do names[p.username] = true end
      assert.is_true(names["brady.garfinkel"] and names["adele.olson"])
      local feed = assert(http.api(sb, "GET", "/newsfeed-events?pageSize=1", sys_r))
      assert.equal("achievement", feed.json.items[1].eventType)
      assert.equal(a.id, feed.json.items[1].achievement.id)
      assert.equal(a.newsfeedEventURL, feed.json.items[1].newsfeedEventURL)
    end)

    it("uses creator, or the integration's name, with a system token", function()
      local res = assert(http.api(sb, "POST", "/achievements", sys_rw, {form = {
        participants = "brady.garfinkel", description = "Did it", creator = "olivia.varga"}}))
      assert.equal(201, res.status)
      assert.equal("olivia.varga", res.json.creator.username)
      res = assert(http.api(sb, "POST", "/achievements", sys_rw, {json = {
        participants = {"brady.garfinkel"}, description = "Did it again"}}))
      assert.equal(201, res.status)
      assert.equal("Sandbox Integration", res.json.creator.fullName)
      assert.equal(http.cjson.null, res.json.creator.id)
      assert.equal(http.cjson.null, res.json.dateAchieved)
    end)

    it("validates fields, naming the bad one, and needs write", function()
      local cases = {
        {{description = "x"}, "participants"},
        {{participants = "no.body", description = "x"}, "participants"},
        {{participants = "brady.garfinkel"}, "description"},
        {{participants = "brady.garfinkel", description = "x", points = -1}, "points"},
        {{participants = "brady.garfinkel", description = "x", points = "ten"}, "points"},
        {{participants = "brady.garfinkel", description = "x", dateAchieved = "2017-02-30"}, "dateAchieved"},
        {{participants = "brady.garfinkel", description = "x", dateAchieved = "25/01/2017"}, "dateAchieved"},
        {{participants = "brady.garfinkel", description = "x", fileUploadId = 42}, "fileUploadId"},
        {{participants = "brady.garfinkel", description = "x", creator = "no.body"}, "creator"},
      }
      for i, c in ipairs(cases) do
        local res = assert(http.api(sb, "POST", "/achievements", sys_rw, {form = c[1]}))
        assert.equal(400, res.status, "case " .. i .. ": " .. res.body)
        assert.equal(c[2], res.json.field, "case " .. i)
      end
      local res = assert(http.api(sb, "POST", "/achievements", sys_r, {form = {
        participants = "brady.garfinkel", description = "x"}}))
      assert.equal(403, res.status)
    end)
  end)

  describe("POST /uploads", function()
    it("stores a binary file and describes the bytes it received", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      -- a PNG signature (uploads are images), every byte value, CRLFs and a fake boundary inside
      local data = "\137PNG\r\n\26\n" .. table.concat(bytes) .. "\r\n------sandboxspec7d3\r\n\0\0" ..
        string.rep("\255\0", 5000)
      local body, ctype = multipart({
        {name = "note", data = "ignored"},
        {name = "file", filename = "photo.png", type = "image/png", data = data},
      })
      local res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = body,
        headers = {["Content-Type"] = ctype}}))
      assert.equal(201, res.status, res.body)
      assert.equal(#data, res.json.size)
      assert.equal(sha256_of(data), res.json.sha256)
      assert.is_number(res.json.fileUploadId)
      assert.equal(sb.url .. "/platform_content/uploads/" .. http.int(res.json.fileUploadId), res.json.url)
      local got = assert(http.request(sb, "GET", res.json.url:sub(#sb.url + 1)))
      assert.equal(200, got.status)
      assert.equal("image/png", got.headers["content-type"])
      assert.equal(data, got.body)
      -- and it can be attached to an achievement
      local a = assert(http.api(sb, "POST", "/achievements", adele, {form = {
        participants = "brady.garfinkel", description = "with a picture", fileUploadId = http.int(res.json.fileUploadId)}}))
      assert.equal(201, a.status)
      assert.equal(res.json.url, a.json.fileUpload.url)
    end)

    it("needs the file field, a multipart body, write scope and at most 5 MiB", function()
      local body, ctype = multipart({{name = "image", filename = "a.png", data = "xyz"}})
      local res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(400, res.status)
      assert.equal("file", res.json.field)
      res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = "xyz", headers = {["Content-Type"] = "image/png"}}))
      assert.equal(415, res.status)
      res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = "garbage without boundaries",
        headers = {["Content-Type"] = "multipart/form-data; boundary=abc"}}))
      assert.equal(400, res.status)
      body, ctype = multipart({{name = "file", filename = "a.png", data = "xyz"}})
      res = assert(http.api(sb, "POST", "/uploads", sys_r, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(403, res.status)
      body, ctype = multipart({{name = "file", filename = "big.bin", data = string.rep("x", 5 * 1024 * 1024 + 1)}})
      res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(413, res.status)
      assert.equal("file", res.json.field)
      body, ctype = multipart({{name = "file", filename = "max.png",
        data = "\137PNG\r\n\26\n" .. string.rep("y", 5 * 1024 * 1024 - 8)}})
      res = assert(http.api(sb, "POST", "/uploads", sys_rw, {body = body, headers = {["Content-Type"] = ctype}}))
      assert.equal(201, res.status)
    end)
  end)
end)
