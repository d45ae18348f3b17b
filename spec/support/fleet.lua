-- Runs a fleet of processes that share one client_id against a sandbox (spec/support/fleet_worker.lua)
-- and sums what they saw. Used by spec/84-store_fleet_spec.lua and bench/store.lua.
local socket = require("socket")

local M = {}

-- opts: sb, lua, build, store ("memory" or a redis URL), procs, gets, posts, heavy = {n, s},
-- default = {n, s}. Returns {ok, failed, elapsed, statuses = {[code] = n}, ideal}.
function M.run(opts)
  local start = socket.gettime() + 1.0 + 0.1 * opts.procs -- every process up and connected by then
  local pipes = {}
  for i = 1, opts.procs do
    local cmd = string.format("%s spec/support/fleet_worker.lua '%s/?.so' '%s' '%s' '%s' '%s' %.6f %d %d %d %g %d %g",
      opts.lua, opts.build, opts.sb.url, opts.sb.client_id, opts.sb.client_secret, opts.store, start,
      opts.gets, opts.posts, opts.heavy[1], opts.heavy[2], opts.default[1], opts.default[2])
    pipes[i] = assert(io.popen(cmd))
  end
  local out = { ok = 0, failed = 0, statuses = {}, last = start, lines = {} }
  for i = 1, opts.procs do
    local line = pipes[i]:read("*a")
    pipes[i]:close()
    out.lines[i] = line
    local ok, failed, _, last, st = line:match("^done (%d+) (%d+) ([%d.]+) ([%d.]+) ?(%S*)")
    if ok then
      out.ok, out.failed = out.ok + tonumber(ok), out.failed + tonumber(failed)
      if tonumber(last) > out.last then out.last = tonumber(last) end
      for code, n in st:gmatch("(%d+)=(%d+)") do
        out.statuses[tonumber(code)] = (out.statuses[tonumber(code)] or 0) + tonumber(n)
      end
    else
      out.failed = out.failed + 1
    end
  end
  out.elapsed = out.last - start
  -- the budget's ideal: the server's windows let n through at the start of each window
  local function ideal(total, lim) return total > 0 and math.floor((total - 1) / lim[1]) * lim[2] or 0 end
  out.ideal = math.max(ideal(opts.procs * opts.gets, opts.heavy), ideal(opts.procs * opts.posts, opts.default))
  return out
end

return M
