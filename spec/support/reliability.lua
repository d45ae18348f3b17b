-- Helpers for the reliability and security specs (30-34): the scripted server, a trace
-- recorder, and wall-clock timing.
local h = require("helpers")
local socket = require("socket")
local M = {}

M.now = socket.gettime -- wall time; the specs leave margins for it

M.scripted_server = h.scripted_server -- (mode, port) -> url, stop, stats

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
