-- Helpers for the reliability and security specs (30-33): a scripted server process, a
-- trace recorder, and wall-clock timing.
local h = require("helpers")
local socket = require("socket")
local M = {}

M.now = socket.gettime -- wall time; the specs leave margins for it

-- Starts spec/support/scripted_server.lua in MODE on `port` (a free one when nil); returns
-- its base URL, a stop function and a stats function ({requests = {...}, tokens = n}).
function M.scripted_server(mode, port)
  port = port or h.free_port()
  local pidfile = os.tmpname()
  os.execute(string.format("env -u LD_PRELOAD %s spec/support/scripted_server.lua %d %s %s >/dev/null 2>&1 &",
    h.lua, port, pidfile, mode))
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
    local cl = h.achievers.client { base_url = url, retries = 0, rate_limit = false,
      token = { access_token = "stats", expires_at = os.time() + 86400 } }
    return assert(cl:get(url .. "/stats"))
  end
  return url, stop, stats
end

-- An on_request hook that keeps every event; returns the hook and the list.
function M.recorder()
  local events = {}
  return function(ev) events[#events + 1] = ev end, events
end

-- The events of one phase (and, when given, whose url ends with `suffix`).
function M.phase(events, phase, suffix)
  local out = {}
  for _, ev in ipairs(events) do
    if ev.phase == phase and (suffix == nil or ev.url:sub(-#suffix) == suffix) then
      out[#out + 1] = ev
    end
  end
  return out
end

return M
