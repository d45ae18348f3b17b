-- achievers.cli_store: where the `achievers` program keeps things on disk. The user token from
-- `achievers login` lives in $XDG_CONFIG_HOME/achievers (default ~/.config/achievers), one JSON
-- file per program and application: token-<hash of base_url and client_id>.json, mode 0600 in
-- a 0700 directory. The file also names its base_url and client_id, which are checked on load,
-- so a hash collision can never hand one program's token to another.
--
-- Plain Lua has no chmod or umask, so files are created by `sh` under `umask 077` and then
-- written: the token is never in a file anyone else can read, not even for a moment. Nor
-- fsync: lua-posix gives it where it is installed for the Lua in use, coreutils' `sync FILE`
-- otherwise.

local M = {}

local function getenv(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

--- Quotes `s` for /bin/sh.
function M.shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- true when the command exited with status 0 (os.execute differs between 5.1 and 5.2+).
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end
M.run = run

--- The configuration directory: $XDG_CONFIG_HOME/achievers or ~/.config/achievers.
function M.config_dir()
  local base = getenv("XDG_CONFIG_HOME")
  if not base then
    local home = getenv("HOME")
    if not home then return nil, "neither XDG_CONFIG_HOME nor HOME is set" end
    base = home .. "/.config"
  end
  return base .. "/achievers"
end

-- Two 32-bit string hashes side by side (djb2 and sdbm): a file name, not a security measure
-- (the file's content is checked on load). Every product stays below 2^53, so the arithmetic
-- is exact with floats too and every Lua version finds the same file.
local function hash(s)
  local a, b = 5381, 0
  for i = 1, #s do
    local c = s:byte(i)
    a = (a * 33 + c) % 4294967296
    b = (b * 65599 + c) % 4294967296
  end
  return string.format("%08x%08x", a, b)
end

local function normalize_url(u)
  return (tostring(u):gsub("/+$", ""))
end

--- The token file for a program (base_url) and application (client_id).
function M.token_path(base_url, client_id)
  local dir, err = M.config_dir()
  if not dir then return nil, err end
  return dir .. "/token-" .. hash(normalize_url(base_url) .. "\n" .. tostring(client_id)) .. ".json"
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Flushes the open file `f` (at `path`) to the disk: lua-posix's fsync when it is there
-- (Debian: lua-posix; not built for every Lua), else coreutils' `sync FILE`, which fsyncs
-- that file. false when neither could.
local function fsync(f, path)
  local ok_u, unistd = pcall(require, "posix.unistd")
  local ok_s, stdio = pcall(require, "posix.stdio")
  if ok_u and ok_s and type(unistd) == "table" and type(stdio) == "table" and unistd.fsync and
      stdio.fileno then
    local fd = stdio.fileno(f)
    if fd and unistd.fsync(fd) == 0 then return true end
  end
  return run("sync -- " .. M.shquote(path) .. " 2>/dev/null")
end

-- The temporary files of writes to `path` (path.tmp<digits>) that were never renamed (a save
-- killed halfway): all of them, or those not touched for a minute (older_only: another save
-- may be writing its own right now). They may hold a whole token.
function M.remove_temp_files(path, older_only)
  local dir, base = dirname(path), path:match("([^/]*)$")
  run("find " .. M.shquote(dir) .. " -maxdepth 1 -type f -name " .. M.shquote(base .. ".tmp*") ..
    (older_only and " -mmin +1" or "") .. " -delete 2>/dev/null")
end

--- Writes `text` to `path` with mode 0600 (its directory 0700), atomically: a temporary file
-- in the same directory, created 0600, written and flushed to the disk, then renamed over
-- `path`; a crash leaves the old file or the new one, never half of one. Temporary files a
-- killed save left behind are removed.
function M.write_private(path, text)
  local dir = dirname(path)
  local tmp = path .. ".tmp" .. tostring(os.time()) .. tostring(math.random(1e6))
  local q = M.shquote
  if not run("umask 077 && mkdir -p " .. q(dir) .. " && : > " .. q(tmp) .. " && chmod 600 " .. q(tmp)) then
    return nil, "cannot create " .. tmp
  end
  M.remove_temp_files(path, true)
  local f, err = io.open(tmp, "w")
  if not f then
    os.remove(tmp)
    return nil, err
  end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  if ok and not fsync(f, tmp) then
    io.stderr:write("achievers: warning: could not flush ", tmp, " to the disk (no lua-posix, ",
      "no sync command): a crash now may lose the saved token\n")
  end
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, werr or cerr
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, rerr
  end
  run("sync -- " .. q(dir) .. " 2>/dev/null") -- the rename itself, best effort
  return true
end

--- The permission bits of `path` as an octal string ("600"), or nil.
function M.mode(path)
  local p = io.popen("stat -c %a " .. M.shquote(path) .. " 2>/dev/null")
  if not p then return nil end
  local m = p:read("*l")
  p:close()
  return m
end

--- Saves a token table (token:to_table()) for base_url and client_id; returns the path.
function M.save_token(base_url, client_id, token_table, encode)
  local path, err = M.token_path(base_url, client_id)
  if not path then return nil, err end
  local doc = {
    version = 1,
    base_url = normalize_url(base_url),
    client_id = client_id,
    saved_at = os.time(),
    token = token_table,
  }
  local ok, werr = M.write_private(path, encode(doc) .. "\n")
  if not ok then return nil, werr end
  return path
end

-- JSON numbers may come back as floats (Debian's lua-cjson 2.1.0): make integral ones integers.
local function integers(t)
  for k, v in pairs(t) do
    if type(v) == "number" and math.tointeger then
      t[k] = math.tointeger(v) or v
    end
  end
  return t
end

--- The saved token table for base_url and client_id: `token_table, path`, or `nil, path`
-- when there is none, or `nil, path, message` when the file is unreadable or not ours.
function M.load_token(base_url, client_id)
  local path, err = M.token_path(base_url, client_id)
  if not path then return nil, nil, err end
  local f = io.open(path, "r")
  if not f then return nil, path end
  local text = f:read("*a")
  f:close()
  local cjson = require("cjson").new()
  local ok, doc = pcall(cjson.decode, text)
  if not ok or type(doc) ~= "table" or type(doc.token) ~= "table" then
    return nil, path, "unreadable token file " .. path
  end
  if doc.base_url ~= normalize_url(base_url) or doc.client_id ~= client_id then
    return nil, path, "token file " .. path .. " belongs to another program or application"
  end
  local tok = integers(doc.token)
  for k, v in pairs(tok) do
    if v == cjson.null then tok[k] = nil end
  end
  -- a token goes into an Authorization header: only visible ASCII (RFC 6750's b64token)
  for _, k in ipairs { "access_token", "refresh_token" } do
    if tok[k] ~= nil and (type(tok[k]) ~= "string" or not tok[k]:match("^[\33-\126]+$")) then
      return nil, path, "token file " .. path .. ": its " .. k .. " holds bytes a token may not " ..
        "(only visible ASCII): not used; run `achievers login` again"
    end
  end
  return tok, path
end

--- Removes the saved token, and any temporary file a killed save left; true when there was
-- a saved token.
function M.remove_token(base_url, client_id)
  local path = M.token_path(base_url, client_id)
  if path then M.remove_temp_files(path, false) end
  return path ~= nil and os.remove(path) ~= nil, path
end

return M
