-- achievers.cli_record: recordings in the `achievers` program.
--
--   achievers --record FILE [--record-pseudonymise] COMMAND ...
--       every HTTP exchange of COMMAND is appended to FILE (the client option `record`)
--   achievers sandbox --compare FILE [--json]
--       the fidelity report: the recorded requests are sent again to a fresh in-process
--       sandbox seeded from FILE, and per endpoint the answers are compared by shape (fields
--       missing or extra, types), status code and the headers that drive clients
--       (Retry-After, Content-Type, WWW-Authenticate, Allow, Location)
--
-- cli.lua calls take_flags() on its argument list and compare() from its sandbox command.

local M = {}

local json = require("achievers.cli_json")

local format, concat = string.format, table.concat

--- Removes --record FILE / --record=FILE / --record-pseudonymise from argv (before the
-- command's `--` and before a `sandbox` command, whose arguments are the emulator's).
-- Returns the new list (argv[0] kept) and the client options to add, or nil.
function M.take_flags(argv)
  local out, opts = { [0] = argv[0] }, nil
  local i, stop = 1, false
  while i <= #argv do
    local a = argv[i]
    if stop then
      out[#out + 1] = a
    elseif a == "--" or a == "sandbox" then
      stop = true
      out[#out + 1] = a
    elseif a == "--record" or a:match("^%-%-record=") then
      local v = a:match("^%-%-record=(.*)$")
      if not v then
        i = i + 1
        v = argv[i]
      end
      if v == nil or v == "" then return nil, nil, "--record needs a file name" end
      opts = opts or {}
      opts.record = v
    elseif a == "--record-pseudonymise" or a == "--record-pseudonymize" then
      opts = opts or {}
      opts.record_pseudonymise = true
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  if opts and opts.record_pseudonymise and not opts.record then
    return nil, nil, "--record-pseudonymise needs --record FILE"
  end
  return out, opts
end

--- Whether the sandbox command's arguments ask for the fidelity report.
function M.wants_compare(args)
  for _, a in ipairs(args or {}) do
    if a == "--compare" or a:match("^%-%-compare=") then return true end
  end
  return false
end

-- ---------------------------------------------------------------------------------------------
-- Reading recordings

local function decode(s)
  local a = require("achievers")
  local v, err = a.json_decode(s)
  return v, err
end

--- Calls fn(obj, lineno) for each line of a recording; raises naming the line of a bad one.
function M.each_line(path, fn)
  local f, err = io.open(path, "rb")
  if not f then error({ usage = "cannot read " .. tostring(err) }, 0) end
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local v, why = decode(line)
      if type(v) ~= "table" then
        f:close()
        error({ usage = format("%s line %d: not a recorded exchange (%s)", path, n,
          tostring(why or "not a JSON object")) }, 0)
      end
      fn(v, n)
    end
  end
  f:close()
end

local function is_null(v)
  local a = package.loaded["achievers"]
  return a ~= nil and v == a.null
end

-- ---------------------------------------------------------------------------------------------
-- Shapes

-- The shape of a decoded JSON value: "string", "number", "boolean", "null", {object = {k =
-- shape}}, {array = shape or false}.
local function shape(v, depth)
  depth = depth or 0
  if is_null(v) or v == nil then return "null" end
  local t = type(v)
  if t ~= "table" then return t end
  if depth > 32 then return "deep" end
  local n, count = 0, 0
  for _ in pairs(v) do count = count + 1 end
  while v[n + 1] ~= nil do n = n + 1 end
  if n == count then
    local merged = false
    for i = 1, n do merged = M.merge(merged, shape(v[i], depth + 1)) end
    return { array = merged }
  end
  local o = {}
  for k, x in pairs(v) do o[tostring(k)] = shape(x, depth + 1) end
  return { object = o }
end

-- Two shapes met in one array (or one endpoint): fields of either; types that disagree kept
-- as "a|b".
function M.merge(a, b)
  if a == false or a == nil then return b end
  if b == false or b == nil then return a end
  if type(a) == "table" and type(b) == "table" then
    if a.object and b.object then
      local o = {}
      for k, x in pairs(a.object) do o[k] = x end
      for k, x in pairs(b.object) do o[k] = o[k] ~= nil and M.merge(o[k], x) or x end
      return { object = o }
    end
    if a.array ~= nil and b.array ~= nil then return { array = M.merge(a.array, b.array) } end
  end
  local ta, tb = M.type_name(a), M.type_name(b)
  if ta == tb then return a end
  if ta == "null" then return b end -- a field that is sometimes null: the other type
  if tb == "null" then return a end
  return ta .. "|" .. tb
end

function M.type_name(s)
  if type(s) == "table" then return s.object and "object" or "array" end
  return s
end

-- Differences between a recorded and a sandbox shape, as {path, what, recorded, sandbox}.
local function diff(rec, live, path, out)
  if rec == false or live == false then return out end -- an empty array: nothing to compare
  local tr, tl = M.type_name(rec), M.type_name(live)
  if tr ~= tl then
    if tr ~= "null" and tl ~= "null" then
      out[#out + 1] = { path = path, what = "type", recorded = tr, sandbox = tl }
    end
    return out
  end
  if tr == "object" then
    local keys = {}
    for k in pairs(rec.object) do keys[#keys + 1] = k end
    for k in pairs(live.object) do if rec.object[k] == nil then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local p = path == "" and k or (path .. "." .. k)
      local a, b = rec.object[k], live.object[k]
      if b == nil then
        out[#out + 1] = { path = p, what = "missing in sandbox", recorded = M.type_name(a) }
      elseif a == nil then
        out[#out + 1] = { path = p, what = "extra in sandbox", sandbox = M.type_name(b) }
      else
        diff(a, b, p, out)
      end
    end
  elseif tr == "array" then
    diff(rec.array, live.array, path .. "[]", out)
  end
  return out
end

local HEADERS = { "retry-after", "content-type", "www-authenticate", "allow", "location" }

local function media(v)
  return v and (v:match("^%s*([^;%s]+)") or v):lower() or nil
end

-- The endpoint of a request: numeric path segments become {id}.
function M.endpoint(method, path)
  return method .. " " .. (path:gsub("/%d+", "/{id}"))
end

-- ---------------------------------------------------------------------------------------------
-- The report

-- Tokens: "session:placeholder" -> grant, from the recorded token requests (placeholders are
-- numbered per session: each recording process starts with a meta line).
local function token_grants(path)
  local grants, session = {}, 0
  M.each_line(path, function(o)
    if o.type == "meta" then session = session + 1 end
    if o.type == "exchange" and o.token_request and type(o.response) == "table" then
      local body = o.response.body
      local tok = type(body) == "table" and body.access_token
      local rb = o.request and o.request.body
      local grant = type(rb) == "table" and rb.grant_type or
        (o.request and type(o.request.body_text) == "string" and
          o.request.body_text:match("grant_type=([%w_]+)"))
      if type(tok) == "string" and grant then grants[session .. ":" .. tok] = grant end
    end
  end)
  return grants
end

-- Who the user token acts as: the nominator of a recorded recognition, else the first user.
local function acting_user(path)
  local nominator, first
  M.each_line(path, function(o)
    local b = type(o.response) == "table" and o.response.body
    if type(b) == "table" and not nominator then
      if o.request and o.request.method == "POST" and type(b.nominator) == "table" then
        nominator = b.nominator.username
      end
      local items = type(b.items) == "table" and b.items or { b }
      for _, it in ipairs(items) do
        if not first and type(it) == "table" and type(it.username) == "string" then
          first = it.username
        end
      end
    end
  end)
  return nominator or first
end

local function read_new_lines(f)
  local got = {}
  while true do
    local line = f:read("*l") -- read (not lines): it clears the end-of-file mark on every Lua
    if not line then break end
    local v = decode(line)
    if type(v) == "table" and v.type == "exchange" and not v.token_request then got[#got + 1] = v end
  end
  return got
end

--- Replays the recording at `path` against a fresh sandbox; returns the report:
-- {endpoints = {{endpoint, requests, differences = {...}}}, differences = n, requests = n}.
function M.report(path, opts)
  opts = opts or {}
  local achievers = require("achievers")
  local sandbox = require("achievers.sandbox")
  -- check every line first: a bad one is named before anything runs
  M.each_line(path, function() end)
  local sb, err = sandbox.start { replay = path, replay_mode = "seed", rate_limit = false }
  if not sb then error({ usage = tostring(err) }, 0) end
  local live = os.tmpname()
  local ok, result = pcall(function()
    local grants = token_grants(path)
    local base = { base_url = sb.url, client_id = sb.client_id, client_secret = sb.client_secret,
      scope = "read,write", retries = 0, rate_limit = false, record = live }
    local system = achievers.client(base)
    local user
    local function user_client()
      if user then return user end
      local who = acting_user(path) or "adele.olson"
      local url, state = system:authorize_url { scope = "read,write" }
      assert(url)
      local ok2, code = pcall(sb.consent, sb, { user = who, scope = "read,write" })
      if not ok2 then code = sb:consent { user = "adele.olson", scope = "read,write" } end
      local tok = assert(system:handle_callback({ code = code, state = state }, state))
      user = system:with_token(tok)
      return user
    end
    local lf = assert(io.open(live, "rb"))
    local by_endpoint, order = {}, {}
    local total, requests, session, skipped = 0, 0, 0, 0
    M.each_line(path, function(o)
      if o.type == "meta" then session = session + 1 end
      if o.type ~= "exchange" or o.token_request or type(o.request) ~= "table" or
          type(o.response) ~= "table" or tostring(o.request.path):match("^/oauth/") then
        return
      end
      local rq = o.request
      if rq.body_omitted then -- an upload: its bytes were never recorded, so it cannot be sent
        skipped = skipped + 1
        return
      end
      local auth = rq.headers and rq.headers.authorization or ""
      local placeholder = auth:match("^Bearer%s+(.*)$")
      local g = placeholder and grants[session .. ":" .. placeholder]
      local c = (g == "authorization_code" or g == "refresh_token") and user_client() or system
      local spec = { method = rq.method, path = rq.path, query = rq.query }
      if rq.body ~= nil then
        spec.body = json.encode(rq.body)
        spec.content_type = "application/json"
      elseif rq.body_text then
        spec.body = rq.body_text
        spec.content_type = rq.headers and rq.headers["content-type"] or
          "application/x-www-form-urlencoded"
      end
      c:request(spec)
      local answers = read_new_lines(lf)
      local got = answers[#answers]
      requests = requests + 1
      local ep = M.endpoint(rq.method, rq.path)
      local e = by_endpoint[ep]
      if not e then
        e = { endpoint = ep, requests = 0, differences = {}, seen = {} }
        by_endpoint[ep] = e
        order[#order + 1] = ep
      end
      e.requests = e.requests + 1
      local function add(d)
        local k = d.what .. "|" .. (d.path or "") .. "|" .. tostring(d.recorded) .. "|" .. tostring(d.sandbox)
        if not e.seen[k] then
          e.seen[k] = true
          e.differences[#e.differences + 1] = d
          total = total + 1
        end
      end
      if not got or type(got.response) ~= "table" then
        add({ what = "no answer from the sandbox", recorded = o.response.status,
          sandbox = got and got.error and got.error.kind or "none" })
        return
      end
      local ra, la = o.response, got.response
      if ra.status ~= la.status then
        add({ what = "status", recorded = ra.status, sandbox = la.status })
      end
      local rh, lh = ra.headers or {}, la.headers or {}
      for _, h in ipairs(HEADERS) do
        local a, b = rh[h], lh[h]
        if h == "content-type" then a, b = media(a), media(b) end
        if (a == nil) ~= (b == nil) or (h == "content-type" and a ~= b) then
          add({ what = "header", path = h, recorded = a or "absent", sandbox = b or "absent" })
        end
      end
      -- bodies: compared by shape, and only when both sides answered alike (an error body
      -- and a list are different things, which the status already says)
      if ra.status == la.status then
        local a = ra.body ~= nil and shape(ra.body) or (ra.body_text and "text" or "none")
        local b = la.body ~= nil and shape(la.body) or (la.body_text and "text" or "none")
        for _, d in ipairs(diff(a, b, "", {})) do
          d.path = d.path == "" and "(body)" or d.path
          add(d)
        end
      end
    end)
    lf:close()
    local eps = {}
    table.sort(order)
    for _, ep in ipairs(order) do
      local e = by_endpoint[ep]
      e.seen = nil
      eps[#eps + 1] = e
    end
    return { endpoints = eps, differences = total, requests = requests, recording = path,
      skipped = skipped }
  end)
  sb:stop()
  os.remove(live)
  if not ok then error(result, 0) end
  return result
end

local function describe(d)
  if d.what == "status" then
    return format("status: recorded %s, sandbox %s", tostring(d.recorded), tostring(d.sandbox))
  elseif d.what == "header" then
    return format("header %s: recorded %s, sandbox %s", d.path, tostring(d.recorded), tostring(d.sandbox))
  elseif d.what == "type" then
    return format("%s: type %s recorded, %s in sandbox", d.path, tostring(d.recorded), tostring(d.sandbox))
  elseif d.what == "missing in sandbox" then
    return format("%s: recorded (%s), missing in sandbox", d.path, tostring(d.recorded))
  elseif d.what == "extra in sandbox" then
    return format("%s: not recorded, extra in sandbox (%s)", d.path, tostring(d.sandbox))
  end
  return format("%s: recorded %s, sandbox %s", d.what, tostring(d.recorded), tostring(d.sandbox))
end
M.describe = describe

--- The report as a table of text.
function M.format(r)
  local w = #"ENDPOINT"
  for _, e in ipairs(r.endpoints) do if #e.endpoint > w then w = #e.endpoint end end
  local lines = { format("%-" .. w .. "s  %8s  %s", "ENDPOINT", "REQUESTS", "DIFFERENCES") }
  for _, e in ipairs(r.endpoints) do
    if #e.differences == 0 then
      lines[#lines + 1] = format("%-" .. w .. "s  %8d  %s", e.endpoint, e.requests, "none")
    else
      for i, d in ipairs(e.differences) do
        if i == 1 then
          lines[#lines + 1] = format("%-" .. w .. "s  %8d  %s", e.endpoint, e.requests, describe(d))
        else
          lines[#lines + 1] = format("%-" .. w .. "s  %8s  %s", "", "", describe(d))
        end
      end
    end
  end
  lines[#lines + 1] = format("%d requests, %d endpoints, %d differences", r.requests,
    #r.endpoints, r.differences) .. (r.skipped > 0 and
    format(" (%d uploads not sent: their bodies are not recorded)", r.skipped) or "")
  return concat(lines, "\n")
end

--- `achievers sandbox --compare FILE [--json]`: prints the report; returns the exit status
-- (0, or 2 for usage: no file, a bad line).
function M.compare(args, as_json)
  local path
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--compare" then
      i = i + 1
      path = args[i]
    elseif a:match("^%-%-compare=") then
      path = a:match("^%-%-compare=(.*)$")
    elseif a == "--json" then
      as_json = true
    else
      io.stderr:write("achievers: sandbox --compare takes FILE and --json only, not ", a, "\n")
      return 2
    end
    i = i + 1
  end
  if not path or path == "" then
    io.stderr:write("achievers: sandbox --compare needs a recording (FILE)\n")
    return 2
  end
  local ok, r = pcall(M.report, path)
  if not ok then
    io.stderr:write("achievers: compare: ", type(r) == "table" and tostring(r.usage) or tostring(r), "\n")
    return 2
  end
  if as_json then
    io.stdout:write(json.encode(r), "\n")
  else
    io.stdout:write(M.format(r), "\n")
  end
  return 0
end

return M
