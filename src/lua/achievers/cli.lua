-- achievers.cli: the `achievers` program. bin/achievers calls main(arg) and exits with what it
-- returns. Configuration comes from flags, then the environment (ACHIEVERS_BASE_URL,
-- ACHIEVERS_CLIENT_ID, ACHIEVERS_CLIENT_SECRET, ACHIEVERS_SCOPE), then a config file; the
-- user token from `achievers login` is kept by achievers.cli_store and used by later
-- commands. Results go to stdout (pretty text, or one line of JSON with --json), messages and
-- errors to stderr, and the exit status says which kind of error stopped the program.
--
-- No token or secret is ever printed: tokens are shown through tostring, except for
-- `achievers token --show-token`, whose whole point is to print the access token.

local M = {}

local pretty = require("achievers.pretty")
local json = require("achievers.cli_json")
local store = require("achievers.cli_store")

--- Exit status for each error kind (see EXIT_TEXT, printed by --help).
M.EXIT = {
  ok = 0, internal = 1, usage = 2,
  auth = 3, reauthorize = 3,
  forbidden = 4, not_found = 5, invalid = 6, rate_limited = 7, server = 8,
  network = 9, timeout = 9, tls = 9,
  decode = 10,
  state_mismatch = 11, access_denied = 11,
  listen = 12,
  interrupted = 130,
}

local EXIT_TEXT = [[
Exit status:
   0  success
   1  internal error (a bug: please report it)
   2  usage: bad arguments, bad or missing configuration
   3  auth: credentials refused, token expired or revoked, not logged in (run `achievers login`)
   4  forbidden (403): the token lacks the scope or the user the right
   5  not_found (404)
   6  invalid (400, 422): the server refused the parameters
   7  rate_limited (429): retried and still over the limit
   8  server (5xx)
   9  network, timeout or tls: no usable answer from the server
  10  decode: an answer that is not the JSON it should be
  11  login failed: state_mismatch or access_denied
  12  login could not listen on its loopback port (in use: try another --port)
 130  interrupted (Ctrl-C), also during a wait for the rate limit
]]

local HELP = [[
usage: achievers [options] COMMAND [arguments]

Commands:
  token                     show the token commands use (a system token, or your login's)
  get PATH [key=value...]   GET an API path, e.g. `achievers get users q=adele`
  options PATH [key=value...]
                            OPTIONS on an API path (recognitions: the criteria you may use)
  post PATH [key=value...]  form-encoded POST; a key given twice becomes a list
  each PATH [key=value...]  every item of a list across all its pages, one per line
  send-recognition --to USER[,USER...] --criterion ID --text TEXT [key=value...]
                            send a recognition as the logged-in user
  login                     sign in as a person (authorization code flow for installed apps)
  logout                    forget the saved user token
  repl                      a Lua REPL with `client` (and `user` when logged in) ready:
                            Tab completes, `help` shows the reference, Ctrl-C stops a call
  sandbox [sandbox options] run the local API emulator (achievers-sandbox; try --help)
  sandbox --compare FILE [--json]
                            replay a recording against a fresh sandbox: where do they differ
  help                      this text

Options:
  --base-url URL            program URL (ACHIEVERS_BASE_URL)
  --client-id ID            (ACHIEVERS_CLIENT_ID)
  --client-secret SECRET    (ACHIEVERS_CLIENT_SECRET; prefer the environment or the config
                            file: command lines are visible to other users)
  --scope SCOPE             scope for system tokens: read, write or read,write (ACHIEVERS_SCOPE)
  --config FILE             config file (ACHIEVERS_CONFIG; default
                            $XDG_CONFIG_HOME/achievers/config.lua or ~/.config/achievers/config.lua)
  --json                    machine-readable output: one JSON value per line on stdout, and
                            errors as {"error": {...}} on stderr
  --system                  use a system token (client_credentials) even when logged in
  --user                    use the saved user token; fail with status 3 when not logged in
  --timeout SECONDS         per-request timeout
  --record FILE             append every HTTP exchange to FILE (JSON Lines; secrets are never
                            written); --record-pseudonymise also replaces people's names,
                            usernames, addresses and ids
  --version                 print the version
  -h, --help                this text

token:   --show-token       print the access token itself (alone on a line; in --json, as
                            access_token); without it the token is never printed
each:    --limit N          stop after N items
         --no-progress      no progress bar (it is drawn on stderr only when stderr is a terminal)
login:   --port N           port to listen on at 127.0.0.1 (default: a free one)
         --redirect-uri URI the registered loopback redirect URI to listen on instead
                            (http://127.0.0.1:PORT/PATH; or redirect_uri in the config file)
         --wait SECONDS     how long to wait for the browser (default 300)
         --open             open the authorize URL with xdg-open (or open)
         --no-browser       listen for nothing: paste the address the browser was sent
                            to (or just its code) on stdin; for a browser on another machine
         --scope SCOPE      scope to ask the user for (default read,write)

Login keeps the user token in $XDG_CONFIG_HOME/achievers/token-HASH.json (mode 0600), one
file per base URL and client id; get, options, post, each, token, send-recognition and repl
use it until `achievers logout` (--system to act as the application instead).

The config file is Lua: assignments such as
  base_url = "https://example.sandbox.achievers.com"
  client_id = "..."
  client_secret = "..."
  scope = "read"
and any other client option (timeout, retries, ca_file, proxy, ...).
]]

M.HELP = HELP .. "\n" .. EXIT_TEXT

-- ---------------------------------------------------------------------------------------------
-- Failures: commands raise a table {exit = n, message = text, err = error object}; main catches
-- it. Anything else raised is a bug (status 1).

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

local function fail(code, message, err)
  error(setmetatable({ exit = code, message = message, err = err }, Failure), 0)
end

local function usage(message)
  fail(M.EXIT.usage, message .. "\n(achievers --help for usage)")
end

-- An operational error from the module: exit status by kind.
local function api_fail(err, what)
  local kind = type(err) == "table" and err.kind or nil
  local msg = tostring(err)
  -- "achievers: login failed: timeout: ...", not "...: login failed: achievers: timeout: ..."
  if what then msg = what .. ": " .. msg:gsub("^achievers: ", "") end
  fail(M.EXIT[kind] or M.EXIT.internal, msg, err)
end

-- ---------------------------------------------------------------------------------------------
-- Arguments

-- Options: name -> {key, value = true when it takes one, number = true, cmds = {...} or nil
-- for every command}.
local OPTIONS = {
  ["--base-url"] = { key = "base_url", value = true },
  ["--client-id"] = { key = "client_id", value = true },
  ["--client-secret"] = { key = "client_secret", value = true },
  ["--scope"] = { key = "scope", value = true },
  ["--config"] = { key = "config", value = true },
  ["--timeout"] = { key = "timeout", value = true, number = true },
  ["--json"] = { key = "json" },
  ["--system"] = { key = "system" },
  ["--user"] = { key = "user" },
  ["--help"] = { key = "help" },
  ["-h"] = { key = "help" },
  ["--version"] = { key = "version" },
  ["--show-token"] = { key = "show_token", cmds = { token = true } },
  ["--limit"] = { key = "limit", value = true, number = true, cmds = { each = true } },
  ["--no-progress"] = { key = "no_progress", cmds = { each = true } },
  ["--to"] = { key = "to", value = true, list = true, cmds = { ["send-recognition"] = true } },
  ["--criterion"] = { key = "criterion", value = true, cmds = { ["send-recognition"] = true } },
  ["--text"] = { key = "text", value = true, cmds = { ["send-recognition"] = true } },
  ["--port"] = { key = "port", value = true, number = true, cmds = { login = true } },
  ["--redirect-uri"] = { key = "redirect_uri", value = true, cmds = { login = true } },
  ["--wait"] = { key = "wait", value = true, number = true, cmds = { login = true } },
  ["--open"] = { key = "open", cmds = { login = true } },
  ["--no-browser"] = { key = "no_browser", cmds = { login = true } },
}

local COMMANDS -- name -> function(ctx); defined below

-- Splits argv into options and positionals. The first positional is the command; after
-- `sandbox` everything is passed through to the emulator untouched.
function M.parse(argv)
  local opts, pos, i = {}, {}, 1
  local passthrough = nil
  while i <= #argv do
    local a = argv[i]
    if passthrough then
      passthrough[#passthrough + 1] = a
    elseif a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
      name = name or a
      local spec = OPTIONS[name]
      if not spec then usage("unknown option " .. name) end
      local v = true
      if spec.value then
        if inline then
          v = inline
        else
          i = i + 1
          v = argv[i]
          if v == nil then usage(name .. " needs a value") end
        end
        if spec.number then
          local n = tonumber(v)
          if not n or n < 0 then usage(name .. " needs a number, got '" .. v .. "'") end
          v = n
        end
      elseif inline then
        usage(name .. " takes no value")
      end
      if spec.list then
        opts[spec.key] = opts[spec.key] or {}
        local list = opts[spec.key]
        for item in tostring(v):gmatch("[^,]+") do list[#list + 1] = item:match("^%s*(.-)%s*$") end
      else
        opts[spec.key] = v
      end
      opts["flag:" .. spec.key] = name
    else
      pos[#pos + 1] = a
      if #pos == 1 and a == "sandbox" then passthrough = {} end
    end
    i = i + 1
  end
  local command = table.remove(pos, 1)
  -- options that belong to one command only
  for name, spec in pairs(OPTIONS) do
    if spec.cmds and opts[spec.key] ~= nil and opts["flag:" .. spec.key] == name and
        not spec.cmds[command or ""] then
      usage(name .. " is not an option of " .. (command and ("`" .. command .. "`") or "achievers"))
    end
  end
  return command, pos, opts, passthrough
end

-- key=value arguments: a table; a key given twice becomes a list.
function M.fields(args)
  local t = {}
  for _, a in ipairs(args) do
    local k, v = a:match("^([^=]+)=(.*)$")
    if not k then usage("expected key=value, got '" .. a .. "'") end
    local old = t[k]
    if old == nil then
      t[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      t[k] = { old, v }
    end
  end
  return t
end

-- ---------------------------------------------------------------------------------------------
-- Configuration

local function getenv(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- Runs a config file in an empty environment; it may assign globals or return a table.
local function load_config(path)
  local env = {}
  local chunk, err
  if setfenv then -- Lua 5.1, LuaJIT
    chunk, err = loadfile(path)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = loadfile(path, "t", env)
  end
  if not chunk then usage("config file: " .. tostring(err)) end
  local ok, ret = pcall(chunk)
  if not ok then usage("config file " .. path .. ": " .. tostring(ret)) end
  if type(ret) == "table" then
    for k, v in pairs(ret) do env[k] = v end
  elseif ret ~= nil then
    usage("config file " .. path .. " returns a " .. type(ret) .. ", not a table")
  end
  return env
end

-- Keys of the config that are the program's own, not client options.
local OWN_KEYS = { base_url = true, client_id = true, client_secret = true, scope = true,
  redirect_uri = true }

function M.config(opts)
  local path = opts.config or getenv("ACHIEVERS_CONFIG")
  local file = {}
  if path then
    if not io.open(path, "r") then usage("cannot read config file " .. path) end
    file = load_config(path)
  else
    local dir = store.config_dir()
    local default = dir and (dir .. "/config.lua")
    local f = default and io.open(default, "r")
    if f then
      f:close()
      file = load_config(default)
      path = default
    end
  end
  local cfg = { path = path, client = {} }
  for k, v in pairs(file) do
    if OWN_KEYS[k] then cfg[k] = v else cfg.client[k] = v end
  end
  cfg.base_url = opts.base_url or getenv("ACHIEVERS_BASE_URL") or cfg.base_url
  cfg.client_id = opts.client_id or getenv("ACHIEVERS_CLIENT_ID") or cfg.client_id
  cfg.client_secret = opts.client_secret or getenv("ACHIEVERS_CLIENT_SECRET") or cfg.client_secret
  cfg.scope = opts.scope or getenv("ACHIEVERS_SCOPE") or cfg.scope
  if opts.timeout then cfg.client.timeout = opts.timeout end
  return cfg
end

-- ---------------------------------------------------------------------------------------------
-- Clients and tokens

local function achievers()
  return require("achievers")
end

-- A client from the configuration; `extra` adds options. Misuse raised by achievers.client
-- (an unknown or mistyped option) is a usage error here: it comes from the config.
local function new_client(cfg, extra)
  if not cfg.base_url then
    usage("no base URL: set ACHIEVERS_BASE_URL, pass --base-url, or put base_url in the config file")
  end
  local o = { base_url = cfg.base_url, client_id = cfg.client_id, client_secret = cfg.client_secret }
  for k, v in pairs(cfg.client) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  local ok, c = pcall(achievers().client, o)
  if not ok then usage("bad client configuration: " .. tostring(c)) end
  return c
end

local function save_user_token(cfg, tok)
  local path, err = store.save_token(cfg.base_url, cfg.client_id, tok:to_table(), json.encode)
  if not path then fail(M.EXIT.internal, "cannot save the token: " .. tostring(err)) end
  return path
end

-- The saved user token for this program and application (a token object), or nil.
local function saved_user_token(cfg)
  if not cfg.base_url or not cfg.client_id then return nil end
  local t, path, err = store.load_token(cfg.base_url, cfg.client_id)
  if err then io.stderr:write("achievers: warning: ", err, "\n") end
  if not t then return nil, path end
  local ok, tok = pcall(achievers().token, t)
  if not ok then
    io.stderr:write("achievers: warning: ignoring ", path, ": ", tostring(tok), "\n")
    return nil, path
  end
  return tok, path
end

-- One request through async and poll rather than a blocking call: lua(1) turns the first
-- Ctrl-C (SIGINT) into an "interrupted!" error at the next Lua instruction, and a blocking call
-- (a wait for the rate limit can be a minute) runs none until it returns. Polling in short
-- steps lets main stop at once (exit status 130). Clients without async (the specs' stand-ins)
-- get a plain request.
local function call(c, req)
  if not c.async then return c:request(req) end
  local r = c:async(req)
  while not r:done() do c:poll(0.05) end
  return r:result()
end
M.call = call

-- "waiting 12.5 s for the rate limit (heavy requests)": what on_rate_limit tells the person.
local function rate_limit_text(info)
  return string.format("waiting %.1f s for the rate limit (%s requests%s)", tonumber(info.wait) or 0,
    tostring(info.class or "default"), info.reason == "server" and ", the server said so" or "")
end
M.rate_limit_text = rate_limit_text

-- The clients a command works with: ctx.client acts as the application (system token),
-- ctx.user as the logged-in person (nil when not logged in). A user token refreshed on the
-- way is saved again.
local function clients(ctx)
  if ctx.client then return ctx.client, ctx.user end
  local cfg = ctx.cfg
  local extra = { scope = cfg.scope or "read" }
  extra.on_token = function(tok)
    if tok.grant_type ~= "client_credentials" then pcall(save_user_token, cfg, tok) end
  end
  -- the progress line (or a line on stderr) says when and how long the governor holds a
  -- request back; an on_rate_limit of the config file is called too
  local own = cfg.client.on_rate_limit
  extra.on_rate_limit = function(info)
    if ctx.on_rate_limit then
      ctx.on_rate_limit(info)
    elseif ctx.opts.json then -- stderr carries JSON only
      io.stderr:write(json.encode({ rate_limit = { wait = tonumber(info.wait), class = info.class } }), "\n")
      io.stderr:flush()
    else
      io.stderr:write("achievers: ", rate_limit_text(info), "\n")
      io.stderr:flush()
    end
    if type(own) == "function" then own(info) end
  end
  ctx.client = new_client(cfg, extra)
  local tok, path = saved_user_token(cfg)
  ctx.token_path = path
  if tok then ctx.user = ctx.client:with_token(tok) end
  return ctx.client, ctx.user
end

-- The client a request command uses: the user's when logged in (unless --system), else the
-- application's.
local function acting_client(ctx)
  local c, u = clients(ctx)
  if ctx.opts.system and ctx.opts.user then usage("--system and --user exclude each other") end
  if ctx.opts.user or ctx.need_user then
    if not u then
      fail(M.EXIT.auth, "not logged in to " .. ctx.cfg.base_url .. ": run `achievers login` first")
    end
    return u
  end
  if ctx.opts.system then return c end
  return u or c
end

-- ---------------------------------------------------------------------------------------------
-- Output

local function out(s)
  io.stdout:write(s, "\n")
end

local function emit(ctx, value)
  if ctx.opts.json then out(json.encode(value)) else out(pretty(value)) end
end

local function token_info(tok, extra)
  local t = {
    token_type = tok.token_type, scope = tok.scope, grant_type = tok.grant_type,
    expires_at = tok.expires_at, expires_in = tok:expires_in(), expired = tok:is_expired(),
  }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Is file descriptor 2 a terminal? (`test -t 2` in a shell that inherits our stderr.)
local function stderr_is_tty()
  return store.run("test -t 2")
end

-- ---------------------------------------------------------------------------------------------
-- Commands

COMMANDS = {}

COMMANDS.help = function()
  out(M.HELP)
  return 0
end

function COMMANDS.token(ctx)
  if #ctx.args > 0 then usage("token takes no arguments") end
  local c = acting_client(ctx)
  local tok, err = c:token() -- the user's token on the user's client, refreshed if it must be
  if not tok then api_fail(err) end
  if ctx.opts.json then
    local info = token_info(tok, { base_url = ctx.cfg.base_url, client_id = ctx.cfg.client_id })
    if c == ctx.user then info.file = ctx.token_path end
    if ctx.opts.show_token then info.access_token = tok.access_token end
    out(json.encode(info))
  elseif ctx.opts.show_token then
    out(tok.access_token)
  else
    out(tostring(tok))
  end
  return 0
end

local function request_command(method)
  return function(ctx)
    local path = table.remove(ctx.args, 1)
    if not path then usage(method:lower() .. " needs a PATH, e.g. users") end
    local fields = M.fields(ctx.args)
    local c = acting_client(ctx)
    local req = { method = method, path = path }
    if method == "POST" then req.form = fields else req.query = next(fields) and fields or nil end
    local data, err = call(c, req)
    if data == nil then api_fail(err) end
    emit(ctx, data)
    return 0
  end
end

COMMANDS.get = request_command("GET")
COMMANDS.post = request_command("POST")
COMMANDS.options = request_command("OPTIONS")

-- A progress bar on stderr: "[#####.....]  120/240 items  page 5/10". Only drawn when stderr
-- is a terminal; `clear` removes it before other output is written.
local function progress_bar(enabled)
  local shown = false
  local last = ""
  local bar = { enabled = enabled }
  function bar.draw(count, total, page, pages)
    if not enabled then return end
    local width = 30
    local text
    if total and total > 0 then
      local filled = math.floor(width * math.min(count, total) / total)
      text = string.format("\r[%s%s] %d/%d items", ("#"):rep(filled), ("."):rep(width - filled), count, total)
      if page and pages then text = text .. string.format("  page %d/%d", page, pages) end
    else
      text = string.format("\r%d items", count)
    end
    last = text
    io.stderr:write(text, "\27[K")
    io.stderr:flush()
    shown = true
  end
  -- the bar, then `text` (a wait for the rate limit)
  function bar.note(text)
    if not enabled then return end
    io.stderr:write(last ~= "" and last or "\r", "  ", text, "\27[K")
    io.stderr:flush()
    shown = true
  end
  function bar.clear()
    if shown then
      io.stderr:write("\r\27[K")
      io.stderr:flush()
      shown = false
    end
  end
  return bar
end

-- Items of every page, following paging.next, each page through `call` (so Ctrl-C stops a
-- wait). Calls on_item(item, count, paging) for each (false stops); returns nil, or the error
-- (an error object, or {kind = "not_list"} when the first answer has no `items` list).
-- Exported as M.each_item for the specs.
local function each_item(c, path, query, on_item)
  local page, err = call(c, { method = "GET", path = path, query = query })
  local count = 0
  if page and (type(page) ~= "table" or type(page.items) ~= "table") then
    return { kind = "not_list" }
  end
  while true do
    if not page then return err end
    local paging = type(page.paging) == "table" and page.paging or nil
    for _, item in ipairs(type(page.items) == "table" and page.items or {}) do
      count = count + 1
      if on_item(item, count, paging) == false then return nil end
    end
    local nxt = paging and paging.next
    if type(nxt) ~= "string" or nxt == "" then return nil end
    -- a link to another origin is the server's mistake (or an attack): not followed, the token
    -- would go there; the same check and words as the module's own each
    local there, here = nxt:match("^%a[%w+.-]*://[^/?#]+"), c.base_url and c.base_url:match("^%a[%w+.-]*://[^/?#]+")
    if there and here and there:lower() ~= here:lower() then
      return achievers()._error("invalid", "paging.next points to another origin than base_url (" ..
        here .. "): not followed, the token is only sent to base_url")
    end
    page, err = call(c, { method = "GET", path = nxt })
  end
end

M.each_item = each_item

function COMMANDS.each(ctx)
  local path = table.remove(ctx.args, 1)
  if not path then usage("each needs a PATH, e.g. users") end
  local query = M.fields(ctx.args)
  local c = acting_client(ctx)
  local limit = ctx.opts.limit
  local bar = progress_bar(not ctx.opts.no_progress and stderr_is_tty())
  ctx.bar = bar
  if bar.enabled then ctx.on_rate_limit = function(info) bar.note(rate_limit_text(info)) end end
  local err = each_item(c, path, next(query) and query or nil, function(item, count, paging)
    bar.clear()
    if ctx.opts.json then
      out(json.encode(item))
    else
      out(pretty(item, { compact = true, max_string = 60 }))
    end
    io.stdout:flush()
    if limit and count >= limit then return false end
    bar.draw(count, paging and tonumber(paging.totalItems), paging and tonumber(paging.page),
      paging and tonumber(paging.totalPages))
  end)
  bar.clear()
  if err and err.kind == "not_list" then
    usage(path .. " is not a list (its answer has no items): `achievers get " .. path .. "` shows it")
  end
  if err then api_fail(err) end
  return 0
end

COMMANDS["send-recognition"] = function(ctx)
  ctx.need_user = true
  local o = ctx.opts
  local extra = M.fields(ctx.args)
  if not o.to or #o.to == 0 then usage("send-recognition needs --to USER[,USER...]") end
  if not o.text or o.text == "" then usage("send-recognition needs --text TEXT") end
  local u = acting_client(ctx)
  if not o.criterion then
    -- say which criteria these nominees can get
    local opts = u:request { method = "OPTIONS", path = "recognitions", query = { nominees = o.to } }
    local lines = {}
    for _, module in ipairs(opts and opts.items or {}) do
      for _, cr in ipairs(module.criteria or {}) do
        lines[#lines + 1] = string.format("  %s  %s (%s)", tostring(cr.id), tostring(cr.name),
          tostring(module.name))
      end
    end
    usage("send-recognition needs --criterion ID" ..
      (#lines > 0 and ("; criteria for these nominees:\n" .. table.concat(lines, "\n")) or ""))
  end
  local fields = { nominees = o.to, criterionId = o.criterion, recognitionText = o.text }
  for k, v in pairs(extra) do fields[k] = v end
  local rec, err = u:post("recognitions", fields)
  if not rec then api_fail(err) end
  emit(ctx, rec)
  return 0
end

function COMMANDS.login(ctx)
  if #ctx.args > 0 then usage("login takes no arguments") end
  local login = require("achievers.cli_login")
  local cfg = ctx.cfg
  if not cfg.client_id or not cfg.client_secret then
    usage("login needs the application's client id and secret (ACHIEVERS_CLIENT_ID, ACHIEVERS_CLIENT_SECRET)")
  end
  local c = new_client(cfg, { scope = cfg.scope or "read" })
  if ctx.opts.open and ctx.opts.no_browser then usage("--open and --no-browser exclude each other") end
  local tok, err = login.run(c, {
    port = ctx.opts.port,
    redirect_uri = ctx.opts.redirect_uri or cfg.redirect_uri,
    scope = ctx.opts.scope or "read,write",
    wait = ctx.opts.wait or 300,
    open = ctx.opts.open,
    no_browser = ctx.opts.no_browser,
    json = ctx.opts.json,
    out = out,
    usage = usage,
  })
  if not tok then
    if type(err) == "table" then api_fail(err, "login failed") end
    fail(M.EXIT.internal, "login failed: " .. tostring(err))
  end
  local path = save_user_token(cfg, tok)
  if ctx.opts.json then
    out(json.encode({ logged_in = true, file = path, token = token_info(tok) }))
  else
    io.stderr:write("Logged in: ", tostring(tok), "\nSaved to ", path, "\n")
  end
  return 0
end

function COMMANDS.logout(ctx)
  local cfg = ctx.cfg
  if not cfg.base_url or not cfg.client_id then usage("logout needs the base URL and client id") end
  local removed, path = store.remove_token(cfg.base_url, cfg.client_id)
  if ctx.opts.json then
    out(json.encode({ logged_out = removed, file = path }))
  else
    io.stderr:write(removed and ("Removed " .. path) or "Not logged in", "\n")
  end
  return 0
end

function COMMANDS.repl(ctx)
  if #ctx.args > 0 then usage("repl takes no arguments") end
  local c, u = clients(ctx)
  return require("achievers.cli_repl").run {
    client = c, user = u, base_url = ctx.cfg.base_url,
  }
end

-- The achievers-sandbox program: $ACHIEVERS_SANDBOX_BIN, else next to this script, else PATH.
function M.sandbox_program(script)
  local bin = getenv("ACHIEVERS_SANDBOX_BIN")
  if bin then return bin end
  local dir = script and script:match("^(.*)/[^/]*$")
  if dir then
    local candidate = dir .. "/achievers-sandbox"
    local f = io.open(candidate, "r")
    if f then
      f:close()
      return candidate
    end
  end
  return "achievers-sandbox"
end

function COMMANDS.sandbox(ctx)
  local rec = require("achievers.cli_record") -- --compare FILE: the fidelity report
  if rec.wants_compare(ctx.passthrough) then return rec.compare(ctx.passthrough, ctx.opts.json) end
  local bin = M.sandbox_program(ctx.script)
  local words = { "exec", store.shquote(bin) }
  for _, a in ipairs(ctx.passthrough or {}) do words[#words + 1] = store.shquote(a) end
  io.stdout:flush()
  local a, how, code = os.execute(table.concat(words, " "))
  if type(a) == "number" then -- Lua 5.1: a wait status
    if a % 256 == 0 then return math.floor(a / 256) end
    return 128 + a % 128
  end
  if how == "signal" then return 128 + (code or 0) end
  if code == 127 then
    fail(M.EXIT.usage, "cannot run " .. bin .. ": set ACHIEVERS_SANDBOX_BIN or put achievers-sandbox on PATH")
  end
  return code or (a and 0 or 1)
end

-- ---------------------------------------------------------------------------------------------
-- main

local function report(ctx, f)
  if ctx.opts and ctx.opts.json then
    -- kind, status, code, message, ... of the module's error; kind "usage" or "auth" for the
    -- program's own; text: the line the program prints without --json
    local e = { exit = f.exit, text = f.message, message = f.message,
      kind = f.exit == M.EXIT.usage and "usage" or f.exit == M.EXIT.auth and "auth" or nil }
    if type(f.err) == "table" then
      for _, k in ipairs { "kind", "status", "code", "message", "retry_after", "method", "url" } do
        e[k] = f.err[k]
      end
    end
    io.stderr:write(json.encode({ error = e }), "\n")
  else
    local msg = f.message
    if not msg:match("^achievers") then msg = "achievers: " .. msg end
    io.stderr:write(msg, "\n")
  end
end

--- Runs the program with the argument list `argv` (arg of the script); returns the exit status.
function M.main(argv)
  argv = argv or {}
  local ctx = { script = argv[0], opts = {} }
  local ok, ret = xpcall(function()
    local rec_opts, rec_err -- --record FILE: achievers.cli_record
    argv, rec_opts, rec_err = require("achievers.cli_record").take_flags(argv)
    if rec_err then usage(rec_err) end
    local command, args, opts, passthrough = M.parse(argv)
    ctx.opts, ctx.args, ctx.passthrough = opts, args, passthrough
    if opts.help then return COMMANDS.help(ctx) end
    if opts.version then
      out("achievers " .. tostring(achievers()._VERSION))
      return 0
    end
    if not command then
      io.stderr:write(HELP)
      return M.EXIT.usage
    end
    local run = COMMANDS[command]
    if not run then usage("unknown command '" .. command .. "'") end
    if command ~= "help" and command ~= "sandbox" then ctx.cfg = M.config(opts) end
    for k, v in pairs(ctx.cfg and rec_opts or {}) do ctx.cfg.client[k] = v end
    return run(ctx)
  end, function(e)
    if getmetatable(e) == Failure then return e end
    -- lua(1) turns a Ctrl-C into this error (see `call`)
    if type(e) == "string" and e:match("interrupted!$") then
      return setmetatable({ exit = M.EXIT.interrupted, message = "interrupted" }, Failure)
    end
    return { internal = true, message = tostring(e), trace = debug.traceback(nil, 2) }
  end)
  if ctx.bar then ctx.bar.clear() end
  io.stdout:flush()
  if ok then return ret or 0 end
  if ret.internal then
    io.stderr:write("achievers: internal error: ", ret.message, "\n")
    if getenv("ACHIEVERS_DEBUG") then io.stderr:write(ret.trace, "\n") end
    return M.EXIT.internal
  end
  report(ctx, ret)
  return ret.exit
end

return M
