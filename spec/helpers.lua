-- Shared spec helpers: the module under test, a sandbox per spec file, a client on it, and a
-- tiny scripted HTTP server (spec/support/scripted_server.lua) for answers the sandbox never
-- gives (HTML error pages, truncated bodies, Retry-After dates).
local M = {}

M.build = os.getenv("ACHIEVERS_BUILD") or "build/5.4"
M.lua = os.getenv("ACHIEVERS_LUA") or "lua5.4"
package.cpath = M.build .. "/?.so;" .. package.cpath

M.achievers = require("achievers")
M.sandbox = require("achievers.sandbox")

-- A running sandbox; stop it in teardown.
function M.start_sandbox(opts)
  return M.sandbox.start(opts or {})
end

-- A client on the sandbox with its credentials; `extra` adds or overrides options.
function M.client(sb, extra)
  local opts = {
    base_url = sb.url,
    client_id = sb.client_id,
    client_secret = sb.client_secret,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return M.achievers.client(opts)
end

-- A user token for `user` through the whole authorization_code flow (consent without a browser).
function M.user_client(sb, client, user, scope)
  local url, state = client:authorize_url { scope = scope or "read,write" }
  assert(url and state)
  local code = sb:consent { user = user or "adele.olson", scope = scope or "read,write" }
  local tok = assert(client:handle_callback({ code = code, state = state }, state))
  return client:with_token(tok), tok
end

function M.route_count(sb, route)
  return sb:stats().by_route[route] or 0
end

-- The last request the sandbox received whose path ends with `suffix`.
function M.last_request(sb, suffix)
  local reqs = sb:requests()
  for i = #reqs, 1, -1 do
    local r = reqs[i]
    if suffix == nil or r.path:sub(-#suffix) == suffix then return r end
  end
end

-- A free loopback port: bind to port 0 and read it back.
function M.free_port()
  local socket = require("socket")
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Starts spec/support/scripted_server.lua in MODE on `port` (a free one when nil), in its own
-- process; returns its base URL, a stop function and a stats function ({requests = {...},
-- tokens = n}).
function M.scripted_server(mode, port)
  local socket = require("socket")
  port = port or M.free_port()
  local pidfile = os.tmpname()
  os.execute(string.format("env -u LD_PRELOAD %s spec/support/scripted_server.lua %d %s %s >/dev/null 2>&1 &",
    M.lua, port, pidfile, mode))
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() break end
    socket.sleep(0.05)
  end
  local url = "http://127.0.0.1:" .. port
  local function stop()
    local f = io.open(pidfile)
    local pid = f and f:read("*l")
    if f then f:close() end
    if pid and pid:match("^%d+$") then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.remove(pidfile)
  end
  local function stats()
    local cl = M.achievers.client { base_url = url, retries = 0, rate_limit = false,
      token = { access_token = "stats", expires_at = os.time() + 86400 } }
    return assert(cl:get(url .. "/stats"))
  end
  return url, stop, stats
end

-- The scripted server's "canned" mode: each path gives a broken answer (see the server).
function M.canned_server()
  local url, stop = M.scripted_server("canned")
  return url, stop
end

-- Every string a value holds, for "no secret anywhere" checks.
function M.strings_of(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do
      M.strings_of(k, out, seen)
      M.strings_of(x, out, seen)
    end
  elseif v ~= nil then
    out[#out + 1] = tostring(v)
  end
  return out
end

return M
