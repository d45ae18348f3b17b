-- A game's frame loop that never stalls on the network: requests run while frames are
-- drawn, results arrive through callbacks and through a task written as sequential code.
--
-- Without ACHIEVERS_BASE_URL it runs against an in-process sandbox that answers after 150 ms.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start { latency_ms = 150 }
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
end

local client = achievers.client {
  base_url = base_url, client_id = client_id, client_secret = client_secret,
}

local hud = {} -- what the "screen" shows

-- callbacks: fire and forget
client:async({ path = "users", query = { pageSize = 5 } }):on_done(function(page, err)
  hud.players = page and #page.items or tostring(err)
end)

-- a task: sequential code, each call yields to the frame loop instead of blocking it
local task = client:spawn(function()
  local feed = assert(client:newsfeed_events { pageSize = 1 })
  local event = feed.items[1]
  local likes = assert(client:newsfeed_event_likes(event.id))
  hud.event = ("%s event %d with %d likes"):format(event.eventType, event.id, #likes.items)
  return true
end)

local frame_time = 1 / 60
local frame = 0
local function draw()
  print(("frame %3d  players=%s  %s"):format(frame, tostring(hud.players or "..."), hud.event or "loading..."))
end

while not (task:done() and hud.players) and frame < 600 do
  frame = frame + 1
  local t0 = os.clock()
  client:poll(0) -- never blocks: moves the transfers, runs finished callbacks and tasks
  draw()
  -- wait out the rest of the frame inside poll, so answers are taken as they come
  client:poll(math.max(0, frame_time - (os.clock() - t0)))
end
frame = frame + 1
draw()
assert(task:result()) -- true, or nil and the task's error
print(("done after %d frames"):format(frame))

if sb then sb:stop() end
