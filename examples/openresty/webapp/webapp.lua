-- The web app of examples/openresty/webapp/nginx.conf: people sign in with their Achievers
-- account (authorization code flow with PKCE) and act as themselves.
--
-- What the app does itself, and why:
-- * Sessions live on the server, in the `sessions` lua_shared_dict, under a random id (32
--   bytes from the OS) that the browser holds in an HttpOnly, SameSite=Lax cookie (Secure
--   over https). A person's token is only ever in that session: never in a cookie, a URL, a
--   log, or the library's own `achievers` dictionary.
-- * The sign-in's state and PKCE verifier are kept in the browser's session, used once, and
--   the session id changes when someone signs in (no session fixation).
-- * The send and sign-out forms carry a per-session CSRF token; a post another site makes
--   (Origin, Sec-Fetch-Site) is refused too.
-- * Each request makes a user client from the session's token (client:with_token): cheap, no
--   I/O; a refreshed token goes back into the session; `reauthorize` sends the person to sign
--   in again.
-- * Who signed in: the API documents no "current user" call (achievers-api.md lists
--   /current-member only as internal). The app learns the person's identity from the
--   nominator of the first recognition they send (POST /recognitions answers with it), keeps
--   it in the session, and lists "my recognitions" by it. A real deployment that must show the
--   person at once should take the identity from its own sign-in (the company's SSO) or use
--   /current-member where the program offers it.
local resty = require("achievers.resty")
local cjson = require("cjson.safe")

local M = {}

local SESSION_TTL = 8 * 3600   -- seconds a signed-in session lasts at most (idle or not)
local PENDING_TTL = 600        -- seconds a sign-in may take (the consent page)
local sessions = ngx.shared.sessions

local client -- one per worker, made on first use

-- The app's public origin: WEBAPP_URL, else this listener's address (never the Host header,
-- which the browser controls).
local function origin()
  local o = os.getenv("WEBAPP_URL")
  if o and o ~= "" then return (o:gsub("/+$", "")) end
  return "http://" .. ngx.var.server_addr .. ":" .. ngx.var.server_port
end

local function get_client()
  if not client then
    client = resty.client {
      base_url = os.getenv("ACHIEVERS_BASE_URL"),
      client_id = os.getenv("ACHIEVERS_CLIENT_ID"),
      client_secret = os.getenv("ACHIEVERS_CLIENT_SECRET"),
      shared_dict = "achievers",
      scope = { "read", "write" },
      redirect_uri = origin() .. "/callback",
      -- a request waits (never blocking the worker) rather than go over a person's rate limits
      on_rate_limit = function(e)
        ngx.log(ngx.WARN, "achievers: waiting ", e.wait, " s for the ", e.class, " rate limit")
      end,
      -- pkce = true is the default: the verifier stays in the session, its hash goes out
    }
  end
  return client
end

-- ---- sessions --------------------------------------------------------------------------------

local function load_session()
  local sid = ngx.var.cookie_sid
  if type(sid) ~= "string" or not sid:match("^[%w_-]+$") or #sid ~= 43 then return nil end
  local raw = sessions:get("s:" .. sid)
  local s = raw and cjson.decode(raw)
  if type(s) ~= "table" then return nil end
  if type(s.started) == "number" and ngx.time() - s.started > SESSION_TTL then
    sessions:delete("s:" .. sid) -- a refreshed token does not make a session outlive its limit
    return nil
  end
  return s, sid
end

local function set_cookie(sid, max_age)
  local secure = origin():match("^https://") and "; Secure" or ""
  ngx.header["Set-Cookie"] = ("sid=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s")
    :format(sid, max_age, secure)
end

local function save_session(sid, s, ttl)
  if type(s.started) == "number" then ttl = math.min(ttl, s.started + SESSION_TTL - ngx.time()) end
  if ttl <= 0 then sessions:delete("s:" .. sid) return false end
  local ok, err = sessions:set("s:" .. sid, cjson.encode(s), ttl)
  if not ok then ngx.log(ngx.ERR, "session store: ", err) end
  return ok
end

-- A session under a new id (the old one, if any, is gone): at every change of who is signed in.
local function new_session(s, ttl, old_sid)
  if old_sid then sessions:delete("s:" .. old_sid) end
  local sid = resty.random_id()
  s.csrf = resty.random_id()
  s.started = ngx.time() -- the session lasts SESSION_TTL from here at most
  save_session(sid, s, ttl)
  set_cookie(sid, ttl)
  return sid
end

local function signed_in()
  local s, sid = load_session()
  if s and type(s.token) == "table" then return s, sid end
end

-- ---- pages -----------------------------------------------------------------------------------

local function esc(v)
  return (tostring(v):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local HEAD = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title><style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
.rec{margin:.4rem 0}.error{color:#b00020}label{display:block;margin:.6rem 0 .2rem}
input[type=text],textarea,select{width:100%%;box-sizing:border-box;padding:.3rem}
</style></head><body>
]]

local function page(status, title, body)
  ngx.status = status
  ngx.header.content_type = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["X-Frame-Options"] = "DENY"
  ngx.header["Content-Security-Policy"] =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
  ngx.header["Referrer-Policy"] = "same-origin"
  ngx.print(HEAD:format(esc(title)), body, "\n</body></html>\n")
end

local function redirect(to, status)
  ngx.header["Cache-Control"] = "no-store"
  return ngx.redirect(to, status or ngx.HTTP_MOVED_TEMPORARILY)
end

local function failure_page(status, what, err)
  -- err's text names the call and the server's answer; never a token or secret (the library's
  -- contract), so it may be shown
  page(status, what, ("<h1>%s</h1>\n<p class=\"error\" id=\"problem\">%s</p>\n<p><a href=\"/\">Back</a></p>")
    :format(esc(what), esc(type(err) == "table" and
      (err.kind .. (err.code and (" (" .. tostring(err.code) .. ")") or "") .. ": " .. tostring(err.message)) or err)))
end

-- The person's client for this request; a refreshed token goes back into the session.
local function me(s, sid)
  return get_client():with_token(s.token, { on_token = function(tok)
    s.token = tok:to_table()
    save_session(sid, s, SESSION_TTL)
  end })
end

-- The API said the person must sign in again: forget the token, start a sign-in.
local function reauthorize(s, sid)
  sessions:delete("s:" .. sid)
  return redirect("/login")
end

-- ---- handlers --------------------------------------------------------------------------------

--- GET /login: a new session holding the state and the PKCE verifier, then the consent page.
function M.login()
  local s, old = load_session()
  -- a link from any site can land here (SameSite=Lax sends the cookie): it must not sign a
  -- signed-in person out
  if s and type(s.token) == "table" then return redirect("/") end
  local url, state, verifier = get_client():authorize_url()
  new_session({ state = state, verifier = verifier }, PENDING_TTL, old)
  return redirect(url)
end

--- GET /callback?code=&state=: checks the state against the session's, exchanges the code
-- with the session's verifier. The state and verifier are used once, whatever happens.
function M.callback()
  local s, sid = load_session()
  if not s or type(s.state) ~= "string" then
    return failure_page(400, "Sign-in failed", "no sign-in was started in this browser (or it took too long)")
  end
  local state, verifier = s.state, s.verifier
  s.state, s.verifier = nil, nil
  save_session(sid, s, PENDING_TTL)
  local tok, err = get_client():handle_callback(ngx.var.args or "", state, verifier)
  if not tok then
    return failure_page(err.kind == "access_denied" and 403 or 400, "Sign-in failed", err)
  end
  new_session({ token = tok:to_table() }, SESSION_TTL, sid)
  return redirect("/")
end

local function recognition_line(r)
  local to = {}
  for _, n in ipairs(type(r.nominees) == "table" and r.nominees or {}) do
    to[#to + 1] = esc(n.fullName or n.username or "?")
  end
  local from = type(r.nominator) == "table" and (r.nominator.fullName or r.nominator.username) or "?"
  return ("<li class=\"rec\" data-id=\"%s\"><strong>%s</strong> to %s: %s</li>\n")
    :format(esc(r.id), esc(from), table.concat(to, ", "), esc(r.recognitionText or ""))
end

--- GET /: who is signed in, their recognitions, the send form. No session: sign in.
function M.home()
  local s, sid = signed_in()
  if not s then return redirect("/login") end
  local client_me = me(s, sid)
  local out = {}
  if s.me then
    out[#out + 1] = ("<p id=\"who\">Signed in as <strong>%s</strong> (<span id=\"username\">%s</span>)</p>\n")
      :format(esc(s.me.fullName or s.me.username), esc(s.me.username))
  else
    out[#out + 1] = "<p id=\"who\">Signed in. Achievers does not tell this app who you are until you send " ..
      "your first recognition; your name shows here then.</p>\n"
  end
  out[#out + 1] = ("<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf_token\" value=\"%s\">" ..
    "<button id=\"signout\">Sign out</button></form>\n"):format(esc(s.csrf))
  if ngx.var.arg_sent then out[#out + 1] = "<p id=\"sent\">Recognition sent.</p>\n" end

  -- the criteria this person may use (OPTIONS /recognitions)
  local options, err = client_me:recognition_criteria()
  if not options then
    if err.kind == "reauthorize" then return reauthorize(s, sid) end
    return failure_page(502, "Achievers did not answer", err)
  end
  local choices = {}
  for _, module in ipairs(options.items or {}) do
    for _, c in ipairs(module.criteria or {}) do
      choices[#choices + 1] = ("<option value=\"%s\">%s: %s</option>"):format(esc(c.id), esc(module.name), esc(c.name))
    end
  end
  out[#out + 1] = ("<h2>Send a recognition</h2>\n<form method=\"post\" action=\"/send\" id=\"send-form\">\n" ..
    "<input type=\"hidden\" name=\"csrf_token\" value=\"%s\">\n" ..
    "<label for=\"nominee\">To (username)</label><input type=\"text\" id=\"nominee\" name=\"nominee\" required>\n" ..
    "<label for=\"criterion\">For</label><select id=\"criterion\" name=\"criterionId\">%s</select>\n" ..
    "<label for=\"text\">Message</label><textarea id=\"text\" name=\"text\" required></textarea>\n" ..
    "<button id=\"send\">Send</button></form>\n"):format(esc(s.csrf), table.concat(choices))

  out[#out + 1] = "<h2>My recognitions</h2>\n"
  if not s.me then
    out[#out + 1] = "<p id=\"mine-unknown\">Send a recognition first (see above).</p>\n"
  else
    out[#out + 1] = "<ul id=\"mine\">\n"
    local n = 0
    for r, lerr in client_me:each("recognitions", { userId = s.me.username, pageSize = 100 }) do
      if not r then
        if lerr.kind == "reauthorize" then return reauthorize(s, sid) end
        return failure_page(502, "Achievers did not answer", lerr)
      end
      out[#out + 1] = recognition_line(r)
      n = n + 1
      if n >= 200 then break end
    end
    out[#out + 1] = "</ul>\n"
  end
  page(200, "Recognitions", "<h1>Recognitions</h1>\n" .. table.concat(out))
end

-- A form post this session made: its CSRF token, and nothing that says another site sent it.
-- Returns session, session id, post args; or nil, HTTP status, why.
local function form_post()
  if ngx.req.get_method() ~= "POST" then return nil, 405, "use the form" end
  local s, sid = signed_in()
  if not s then return nil, 403, "not signed in" end
  local site = ngx.var.http_sec_fetch_site
  if site and site ~= "same-origin" and site ~= "none" then return nil, 403, "posted from another site" end
  local o = ngx.var.http_origin
  if o and o ~= origin() then return nil, 403, "posted from another origin" end
  ngx.req.read_body()
  local args = ngx.req.get_post_args(20) or {}
  local given = args.csrf_token
  -- compared through their hashes: the time taken tells nothing of the token
  if type(given) ~= "string" or type(s.csrf) ~= "string" or ngx.sha1_bin(given) ~= ngx.sha1_bin(s.csrf) then
    return nil, 403, "the form's token is missing or wrong: reload the page"
  end
  return s, sid, args
end

--- POST /send: nominee, criterionId, text.
function M.send()
  local s, sid, args = form_post()
  if not s then return failure_page(sid, "Refused", args) end -- (nil, status, why)
  if type(args.nominee) ~= "string" or type(args.text) ~= "string" or not tonumber(args.criterionId) then
    return failure_page(400, "Not sent", "fill in the whole form")
  end
  local rec, err = me(s, sid):send_recognition {
    nominees = { args.nominee }, recognitionText = args.text, criterionId = tonumber(args.criterionId) }
  if not rec then
    if err.kind == "reauthorize" then return reauthorize(s, sid) end
    return failure_page(err.status == 400 and 400 or 502, "Not sent", err)
  end
  -- the answer names the sender: the person signed in here
  if type(rec.nominator) == "table" and type(rec.nominator.username) == "string" then
    s.me = { username = rec.nominator.username, fullName = rec.nominator.fullName }
    save_session(sid, s, SESSION_TTL)
  end
  return redirect("/?sent=1", ngx.HTTP_SEE_OTHER)
end

--- POST /logout: the session (and the token in it) is gone. The answer is a page, not a
-- redirect to sign in again (which the form-action policy would stop anyway: the consent page
-- is on another origin).
function M.logout()
  local s, sid, why = form_post()
  if not s then return failure_page(sid, "Refused", why) end
  sessions:delete("s:" .. sid)
  set_cookie("", 0)
  page(200, "Signed out", "<h1 id=\"signed-out\">Signed out</h1>\n<p><a id=\"signin\" href=\"/login\">Sign in again</a></p>")
end

return M
