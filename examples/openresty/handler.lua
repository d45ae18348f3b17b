-- The handler of examples/openresty/nginx.conf: one achievers.resty client per worker, made on
-- first use; the token is shared by all workers through the `achievers` shared dictionary.
local resty = require("achievers.resty")
local cjson = require("cjson")

local M = {}
local client

local function get_client()
  if not client then
    client = resty.client {
      base_url = os.getenv("ACHIEVERS_BASE_URL"),
      client_id = os.getenv("ACHIEVERS_CLIENT_ID"),
      client_secret = os.getenv("ACHIEVERS_CLIENT_SECRET"),
      shared_dict = "achievers",
    }
  end
  return client
end

function M.user(id)
  local user, err = get_client():user(tonumber(id))
  if not user then
    ngx.status = err.status or 502
    ngx.header.content_type = "application/json"
    ngx.say(cjson.encode { error = err.kind, message = err.message })
    return
  end
  ngx.header.content_type = "application/json"
  ngx.say(cjson.encode { id = user.id, username = user.username, fullName = user.fullName })
end

return M
