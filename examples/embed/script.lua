-- The script examples/embed/host.c runs: it makes a client (on an in-process sandbox unless
-- ACHIEVERS_BASE_URL is set), starts requests, and leaves polling to the host's frame loop.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start { latency_ms = 100 }
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
end

game = {
  client = achievers.client { base_url = base_url, client_id = client_id, client_secret = client_secret },
  names = {},
}

for _, id in ipairs { 10726811, 10726846 } do
  game.client:async({ path = "users/" .. id }):on_done(function(user, err)
    game.names[#game.names + 1] = user and user.fullName or tostring(err)
  end)
end

-- called by the host once a frame, after it polled the client; false ends the loop
function game.frame(i)
  print(("frame %3d: %s"):format(i, #game.names > 0 and table.concat(game.names, ", ") or "waiting"))
  if #game.names == 2 then
    if sb then sb:stop() end
    return false
  end
  return true
end
