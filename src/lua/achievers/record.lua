-- achievers.record: the writer behind the client option `record = "path"`.
--
-- Every HTTP attempt of the client (token requests included) becomes one JSON object on one
-- line of the file (JSON Lines), appended and flushed line by line:
--
--   {"type":"meta","format":"achievers-recording","version":1,"base_url":...,...}   (first)
--   {"type":"exchange","seq":1,"at":"...Z","duration_us":12500,"attempt":1,"token_request":false,
--    "request":{"method":"GET","path":"/api/v5/users","query":"page=1","headers":{...},
--               "body":<JSON> | "body_text":"a=b" | "body_omitted":"..."},
--    "response":{"status":200,"headers":{...},"body":<JSON> | "body_text":"..."}
--      or "error":{"kind":"timeout","message":"..."}}
--
-- Secrets never reach the file. Authorization headers, access and refresh tokens, client ids
-- and secrets, authorization codes, state, code verifiers and cookies are replaced by stable
-- placeholders ("<access_token:1>"): within one file the same value always gets the same
-- placeholder, so a token answer and the requests that use the token stay linked. As a last
-- net, every secret value seen so far is replaced wherever else it appears in a line.
--
-- With `pseudonymise`, names, usernames, e-mail addresses and ids are replaced by fakes, the
-- same input always by the same fake (a recognition's nominee id still matches the user's id).
-- The mapping lives in this process's memory only and is never written.
--
-- The C side (src/record.c) calls the function open() returns with one event per phase:
-- {phase = "request", key = <attempt>} when an attempt starts, and on its answer or failure
-- {phase = "response"|"error", key, method, url, headers = {lines}, body, token_request,
--  attempt, status, resp_headers = raw block, resp_body, kind, message}.

local M = {}

local json = require("achievers.cli_json")

local format, concat = string.format, table.concat

local function decode(s)
  local a = require("achievers")
  local ok, v = pcall(a.json_decode, s)
  if ok then return v end
  return nil
end

local function is_null(v)
  local a = package.loaded["achievers"]
  return a ~= nil and v == a.null
end

-- Secret keys in JSON bodies, forms and query strings (lower case): the placeholder kind.
local SECRET = {
  access_token = "access_token", refresh_token = "refresh_token", id_token = "id_token",
  token = "access_token", client_secret = "client_secret", client_id = "client_id",
  code = "code", state = "state", code_verifier = "code_verifier", password = "password",
  assertion = "assertion", code_challenge = "code_challenge", nonce = "nonce",
}

-- Headers whose whole value is secret.
local SECRET_HEADERS = { cookie = "cookie", ["set-cookie"] = "cookie",
  ["proxy-authorization"] = "authorization", ["x-api-key"] = "api_key" }

-- Person fields when pseudonymising: key -> how.
local PERSON = {
  firstname = "word", lastname = "word", fullname = "words", name = "words",
  displayname = "words", nickname = "words",
  username = "username", emailaddress = "email", email = "email",
}

-- People's ids: "id" in an object that describes a person (it has a username, a name or an
-- address), and these keys wherever they appear (bodies, forms, query strings). Other ids
-- (recognitions, criteria, events) are the program's, not a person's, and are kept.
local PERSON_ID = { username = true, email = true, userid = true, managerid = true, nominatorid = true, nomineeid = true,
  creatorid = true, nominees = true, nominee = true, participants = true, userids = true,
  user = true, users = true, nomineeids = true }

local function person_object(t)
  return type(t.username) == "string" or type(t.fullName) == "string" or
    type(t.firstName) == "string" or type(t.emailAddress) == "string"
end

-- Fake words: pronounceable, from a counter (never from the input).
local SYL = { "ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "po", "za", "fi", "bu", "ge" }
local function fake_word(n)
  local parts = {}
  repeat
    local d = n % #SYL
    parts[#parts + 1] = SYL[d + 1]
    n = (n - d) / #SYL
  until n == 0
  if #parts < 2 then parts[#parts + 1] = "r" end
  local w = concat(parts)
  return w:sub(1, 1):upper() .. w:sub(2)
end

local function iso_now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- Percent-decoding and encoding for forms and query strings.
local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
local function escape(s)
  return (s:gsub("[^%w%-%._~<>:]", function(c) return format("%%%02X", c:byte()) end))
end

-- Valid UTF-8 (JSON strings must be).
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
      or (c >= 0xF0 and c <= 0xF4) and 4 or nil
    if not len or i + len - 1 > n then return false end
    for j = i + 1, i + len - 1 do
      local b = s:byte(j)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

local Recorder = {}
Recorder.__index = Recorder

-- The stable placeholder of a secret value.
function Recorder:secret(kind, value)
  if type(value) ~= "string" and type(value) ~= "number" then return value end
  value = tostring(value)
  if value == "" or value:match("^<[%w_]+:%d+>$") then return value end
  local known = self.secrets[value]
  if known then return known end
  local n = (self.counts[kind] or 0) + 1
  self.counts[kind] = n
  local p = format("<%s:%d>", kind, n)
  self.secrets[value] = p
  if #value >= 6 then
    -- the last net looks in the written (JSON) line: the value as JSON escapes it, and as a
    -- URL or a form percent-encodes it (either case of hex), maps to the same placeholder
    local function pct(fmt)
      return (value:gsub("[^%w%-._~]", function(ch) return format(fmt, ch:byte()) end))
    end
    local seen = {}
    for _, f in ipairs { value, json.encode(value):sub(2, -2), pct("%%%02X"), pct("%%%02x") } do
      if not seen[f] and (f == value or not self.secrets[f]) then
        seen[f] = true
        self.secrets[f] = p
        self.net[#self.net + 1] = f
      end
    end
  end
  return p
end

-- ---- pseudonyms --------------------------------------------------------------------------

function Recorder:fake_id(v)
  local key = tostring(math.floor(tonumber(v) or 0))
  local f = self.ids[key]
  if not f then
    self.nid = self.nid + 1
    f = 900000000 + self.nid
    self.ids[key] = f
  end
  return f
end

function Recorder:fake_word(w)
  if self.fakes[w] then return w end
  local f = self.words[w]
  if not f then
    self.nword = self.nword + 1
    f = fake_word(self.nword + 13)
    self.words[w] = f
    self.lwords[w:lower()] = self.lwords[w:lower()] or f
    self.fakes[f] = true
  end
  return f
end

function Recorder:fake_words(s)
  return (s:gsub("[^%s]+", function(w) return self:fake_word(w) end))
end

function Recorder:fake_username(u)
  if self.fakes[u] then return u end
  local f = self.users[u]
  if not f then
    self.nuser = self.nuser + 1
    f = format("user%d", self.nuser)
    self.users[u] = f
    self.lusers[u:lower()] = self.lusers[u:lower()] or f
    self.fakes[f] = true
    -- a username often holds the person's names: learn its parts too
    for part in u:gmatch("[%a][%a]+") do
      if #part >= 3 then self:fake_word(part:sub(1, 1):upper() .. part:sub(2)) end
    end
  end
  return f
end

function Recorder:fake_email(e)
  if self.fakes[e] then return e end
  local f = self.emails[e]
  if not f then
    self.nemail = self.nemail + 1
    f = format("person%d@example.invalid", self.nemail)
    self.emails[e] = f
    self.lemails[e:lower()] = self.lemails[e:lower()] or f
    self.fakes[f] = true
    local localpart = e:match("^([^@]+)@")
    if localpart and not self.users[localpart] then -- "adele.olson@...": its names are words
      for part in localpart:gmatch("%a%a%a+") do self:fake_word(part:sub(1, 1):upper() .. part:sub(2)) end
    end
  end
  return f
end

-- A value that may be an id or a username (query and form values such as nominees).
function Recorder:fake_ref(v)
  if v:match("^%d+$") then return tostring(self:fake_id(v)) end
  if v:match("^[%w%._%-@]+$") and v ~= "" then
    if v:find("@", 1, true) then return self:fake_email(v) end
    return self:fake_username(v)
  end
  return v
end

-- A user's id in a path (/api/v5/users/123) is a person's id.
function Recorder:fake_path(p)
  return (p:gsub("/users/(%d+)", function(d) return "/users/" .. self:fake_id(d) end))
end

-- A known person's word, username or address (any letter case), or nil.
function Recorder:known(tok)
  local f = self.emails[tok] or self.users[tok] or self.words[tok]
  if f then return f end
  local lower = tok:lower()
  f = self.lwords[lower] or self.lusers[lower] or self.lemails[lower]
  if f and tok == lower then return f:lower() end
  return f
end

-- Free text: known names, usernames, e-mail addresses and user ids replaced wherever they
-- appear as words ("Thanks Adele", "adele.olson's", "<adele@example.com>"). One pass.
function Recorder:fake_text(s)
  s = s:gsub("%d+", function(d) local f = self.ids[d] return f and tostring(f) or d end)
  return (s:gsub("[%w_%.%-@+]+", function(tok)
    local core, tail = tok:match("^(.-)([%.%-]*)$")
    if core == "" then return nil end
    local f = self:known(core)
    if f then return f .. tail end
    if core:find("[%._%-@]") then -- the parts of a username or an address
      return (core:gsub("%a+", function(w) return self:known(w) end)) .. tail
    end
    return nil
  end))
end

-- A URL or path string in a body: ids in its path, references in its query.
function Recorder:fake_url(s)
  local head, path, query = s:match("^(https?://[^/]+)([^?]*)%??(.*)$")
  if not head then
    head = ""
    path, query = s:match("^([^?]*)%??(.*)$")
  end
  path = self:fake_path(path)
  if query ~= "" then query = self:query_string(query, "pseudonym") end
  return head .. path .. (query ~= "" and ("?" .. query) or "")
end

-- ---- walking values -------------------------------------------------------------------------

-- Secrets (and, when pseudonymising, persons) in a decoded JSON value; in place.
function Recorder:clean_value(v, key)
  local lk = key and tostring(key):lower()
  if type(v) == "table" and not is_null(v) then
    -- first the person fields, so that free text met later knows the names
    if self.pseudonymise then
      if person_object(v) and (type(v.id) == "number" or
          (type(v.id) == "string" and v.id:match("^%d+$"))) then
        v.id = type(v.id) == "number" and self:fake_id(v.id) or tostring(self:fake_id(v.id))
      end
      for k, x in pairs(v) do
        local lk2 = tostring(k):lower()
        if PERSON[lk2] then lk2 = "" end -- the person fields below
        if PERSON_ID[lk2] and type(x) == "number" then v[k] = self:fake_id(x)
        elseif PERSON_ID[lk2] and type(x) == "table" then
          for i, y in ipairs(x) do
            if type(y) == "number" then x[i] = self:fake_id(y)
            elseif type(y) == "string" then x[i] = self:fake_ref(y) end
          end
        elseif PERSON_ID[lk2] and type(x) == "string" then v[k] = self:fake_ref(x)
        end
      end
      for k, x in pairs(v) do
        local how = PERSON[tostring(k):lower()]
        if type(x) == "string" then
          if how == "username" then v[k] = self:fake_username(x)
          elseif how == "email" then v[k] = self:fake_email(x)
          elseif how == "word" then v[k] = self:fake_word(x)
          elseif how == "words" then v[k] = self:fake_words(x)
          end
        end
      end
    end
    for k, x in pairs(v) do
      if type(x) == "table" then
        self:clean_value(x, type(k) == "string" and k or key)
      elseif not (self.pseudonymise and PERSON[tostring(k):lower()]) then
        v[k] = self:clean_value(x, type(k) == "string" and k or key)
      end
    end
    return v
  end
  if lk and SECRET[lk] and (type(v) == "string" or type(v) == "number") then
    return self:secret(SECRET[lk], v)
  end
  if self.pseudonymise and key then
    if type(v) == "string" then
      if v:match("^https?://") or v:match("^/") then v = self:fake_url(v) end
      return self:fake_text(v)
    end
  elseif self.pseudonymise and type(v) == "string" then
    return self:fake_text(v)
  end
  return v
end

-- key=value&... with secret values replaced (and references pseudonymised).
function Recorder:query_string(q, mode)
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    local dk = unescape(k)
    local lk = dk:lower()
    if SECRET[lk] then
      v = escape(self:secret(SECRET[lk], unescape(v)))
    elseif self.pseudonymise then
      local dv = unescape(v)
      if PERSON_ID[lk] then
        local items = {}
        for item in (dv .. ","):gmatch("([^,]*),") do items[#items + 1] = self:fake_ref(item) end
        dv = concat(items, ",")
      else
        dv = self:fake_text(dv)
      end
      v = escape(dv)
    end
    out[#out + 1] = pair:find("=", 1, true) and (k .. "=" .. v) or k
  end
  return concat(out, "&")
end

local function header_lines(lines)
  local t = {}
  for _, h in ipairs(lines or {}) do
    local n, v = h:match("^([^:]+):%s*(.-)%s*$")
    if n then t[#t + 1] = { n, v } end
  end
  return t
end

-- Raw header block of an answer -> list of {name, value} (the last block: after 100 Continue
-- and redirects only the final answer's headers count).
local function header_block(block)
  local t = {}
  for line in (block or ""):gmatch("[^\r\n]+") do
    if line:match("^HTTP/") then
      t = {}
    else
      local n, v = line:match("^([^:]+):%s*(.-)%s*$")
      if n then t[#t + 1] = { n, v } end
    end
  end
  return t
end

function Recorder:clean_headers(list)
  local out = {}
  for _, p in ipairs(list) do
    local name, value = p[1]:lower(), p[2]
    if name == "authorization" then
      local scheme, cred = value:match("^(%S+)%s+(.*)$")
      scheme = scheme or "?"
      if scheme:lower() == "bearer" then
        value = "Bearer " .. self:secret("access_token", cred)
      else
        value = scheme .. " " .. self:secret("credentials", cred or value)
      end
    elseif SECRET_HEADERS[name] then
      value = self:secret(SECRET_HEADERS[name], value)
    elseif name == "location" then
      value = self:clean_url_string(value)
    end
    if out[name] then out[name] = out[name] .. ", " .. value else out[name] = value end
  end
  return out
end

-- A whole URL (Location headers): the secret query values replaced.
function Recorder:clean_url_string(u)
  local head, query = u:match("^([^?]*)%?(.*)$")
  if not head then return self.pseudonymise and self:fake_url(u) or u end
  if self.pseudonymise then head = self:fake_url(head) end
  return head .. "?" .. self:query_string(query)
end

local function media(headers)
  local ct = headers["content-type"] or ""
  return ct:match("^%s*([^;%s]+)") and ct:match("^%s*([^;%s]+)"):lower() or ""
end

-- Fills t.body / t.body_text / t.body_omitted from raw bytes. A token request's bodies carry
-- secrets whatever their media type says (the client takes a token answer labelled
-- text/plain): they are decoded and cleaned as JSON or as a form, or left out, never kept raw.
function Recorder:put_body(t, raw, mt, token)
  if raw == nil or raw == "" then return end
  if token and mt ~= "application/x-www-form-urlencoded" then
    local v = decode(raw)
    if type(v) == "table" then
      t.body = self:clean_value(v)
    elseif raw:match("^[%w%%._~+-]+=[^%s]*$") then
      t.body_text = self:query_string(raw)
    else
      t.body_omitted = format("%s, %d bytes (a token request's body that is not JSON)",
        mt ~= "" and mt or "binary", #raw)
    end
    return
  end
  if mt == "application/json" or mt:match("%+json$") or (mt == "" and raw:match("^%s*[%[{]")) then
    local v = decode(raw)
    if v ~= nil then
      if type(v) == "table" and next(v) == nil and raw:match("^%s*{") then
        t.body_text = "{}" -- an empty object: the JSON writer would give []
      else
        t.body = self:clean_value(v)
      end
      return
    end
  end
  if mt == "application/x-www-form-urlencoded" then
    t.body_text = self:query_string(raw)
    return
  end
  if mt:match("^multipart/") or not utf8_ok(raw) then
    t.body_omitted = format("%s, %d bytes", mt ~= "" and mt or "binary", #raw)
    return
  end
  t.body_text = self.pseudonymise and self:fake_text(raw) or raw
end

-- The last net: any secret value seen so far, wherever it still appears in the line.
function Recorder:net_line(line)
  for _, v in ipairs(self.net) do
    local p = self.secrets[v]
    local i = 1
    while true do
      local a, b = line:find(v, i, true)
      if not a then break end
      line = line:sub(1, a - 1) .. p .. line:sub(b + 1)
      i = a + #p
    end
  end
  return line
end

function Recorder:write(obj)
  local line = self:net_line(json.encode(obj))
  local ok, err = self.file:write(line, "\n")
  if not ok then error("achievers: record: cannot write " .. self.path .. ": " .. tostring(err), 0) end
  self.file:flush()
end

function Recorder:event(ev)
  if ev.phase == "request" then
    self.started[ev.key] = { os.time(), 0, ev.now }
    return
  end
  local st = self.started[ev.key]
  self.started[ev.key] = nil
  self.seq = self.seq + 1
  local url = ev.url or ""
  local origin, path, query = url:match("^(https?://[^/]+)([^?]*)%??(.*)$")
  if not origin then path, query = url, "" end
  if not self.meta_written then
    self.meta_written = true
    self:write({ type = "meta", format = "achievers-recording", version = 1,
      base_url = origin or "", created = iso_now(), pseudonymised = self.pseudonymise or false })
  end
  local req = { method = ev.method, path = self.pseudonymise and self:fake_path(path) or path }
  if query and query ~= "" then req.query = self:query_string(query) end
  req.headers = self:clean_headers(header_lines(ev.headers))
  self:put_body(req, ev.body, media(req.headers), ev.token_request)
  local rec = { type = "exchange", seq = self.seq, attempt = ev.attempt,
    token_request = ev.token_request or false, request = req }
  if st and st[3] and ev.now then
    rec.at = os.date("!%Y-%m-%dT%H:%M:%SZ", st[1])
    rec.duration_us = math.floor((ev.now - st[3]) * 1e6 + 0.5)
  else
    rec.at = iso_now()
  end
  if ev.phase == "error" and (ev.status or 0) == 0 then
    rec.error = { kind = ev.kind, message = ev.message }
  else
    local resp = { status = ev.status }
    resp.headers = self:clean_headers(header_block(ev.resp_headers))
    self:put_body(resp, ev.resp_body, media(resp.headers), ev.token_request)
    rec.response = resp
  end
  self:write(rec)
end

-- The clients of one process that record to one file share its recorder, so that a value
-- has one placeholder in the whole session (weak: the last client gone, the file is closed).
local open_recorders = setmetatable({}, { __mode = "v" })

--- Opens (appends to) a recording; returns the function the client calls with each event.
-- opts.pseudonymise: replace persons and ids too.
function M.open(path, opts)
  opts = opts or {}
  local key = path .. (opts.pseudonymise and "\0p" or "\0")
  local shared = open_recorders[key]
  if shared then return shared, nil end
  local f, err = io.open(path, "a")
  if not f then error("achievers.client: option 'record': cannot open " .. tostring(err), 0) end
  local self = setmetatable({
    path = path, file = f, pseudonymise = opts.pseudonymise and true or false,
    secrets = {}, counts = {}, net = {}, seq = 0, started = {},
    ids = {}, nid = 0, words = {}, nword = 0, users = {}, nuser = 0, emails = {}, nemail = 0,
    lwords = {}, lusers = {}, lemails = {}, fakes = {},
  }, Recorder)
  -- a file that already holds lines: go on after them (placeholders restart per process, so
  -- a new meta line says where)
  local fn = function(ev) return self:event(ev) end
  open_recorders[key] = fn
  return fn, self
end

M._Recorder = Recorder
return M
