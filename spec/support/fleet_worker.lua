-- One process of a fleet that shares a client_id (spec/84-store_fleet_spec.lua, bench/store.lua):
--   lua fleet_worker.lua CPATH BASE_URL CLIENT_ID SECRET STORE START GETS POSTS HEAVY_N HEAVY_S DEFAULT_N DEFAULT_S
-- STORE is a redis:// URL or "memory". At wall time START it reads GET /recognitions GETS times
-- and creates POSTS achievements (a write with the system token) in between, then prints one line:
--   done <ok> <failed> <first send time> <last answer time> <statuses seen, "code=count,...">
local cpath, base, id, secret, store, start, gets, posts, hn, hs, dn, ds = ...
package.cpath = cpath .. ";" .. package.cpath
local socket = require("socket")
local achievers = require("achievers")

local statuses = {}
local c = achievers.client {
  base_url = base, client_id = id, client_secret = secret, scope = "read,write",
  store = store == "memory" and "memory" or { redis = store, fleet_size = 4 },
  limits = { heavy = { tonumber(hn), tonumber(hs) }, default = { tonumber(dn), tonumber(ds) } },
  on_request = function(ev)
    if ev.phase == "response" then statuses[ev.status] = (statuses[ev.status] or 0) + 1 end
  end,
}

local wait = tonumber(start) - socket.gettime()
if wait > 0 then socket.sleep(wait) end
local t_first = socket.gettime()
local ok, failed = 0, 0
gets, posts = tonumber(gets), tonumber(posts)
local every = posts > 0 and math.max(1, math.floor(gets / posts)) or math.huge
local sent = 0
for i = 1, gets do
  local data = c:get("recognitions")
  if data then ok = ok + 1 else failed = failed + 1 end
  if i % every == 0 and sent < posts then
    sent = sent + 1
    local a = c:create_achievement { participants = "brady.garfinkel", description = "fleet " .. i }
    if a then ok = ok + 1 else failed = failed + 1 end
  end
end
local t_last = socket.gettime()
local parts = {}
for code, n in pairs(statuses) do parts[#parts + 1] = code .. "=" .. n end
table.sort(parts)
io.write(string.format("done %d %d %.6f %.6f %s\n", ok, failed, t_first, t_last, table.concat(parts, ",")))
