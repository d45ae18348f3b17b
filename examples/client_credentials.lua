-- The client_credentials flow: a system token, then a list of users.
--
--   ACHIEVERS_BASE_URL=https://example.sandbox.achievers.com ACHIEVERS_CLIENT_ID=... \
--   ACHIEVERS_CLIENT_SECRET=... lua examples/client_credentials.lua
--
-- Without ACHIEVERS_BASE_URL it runs against an in-process sandbox.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start {}
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
  print("sandbox running at " .. sb.url)
end

local client = achievers.client {
  base_url = base_url,
  client_id = client_id,
  client_secret = client_secret,
  scope = "read",
}

local token = assert(client:token())
print("token: " .. tostring(token)) -- the token itself is never printed

local page, err = client:get("users", { q = "ad", pageSize = 5 })
if not page then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(("%d users match 'ad'; the first %d:"):format(page.paging.totalItems, #page.items))
for _, u in ipairs(page.items) do
  print(("  %-10s %-24s %s"):format(u.id, u.fullName or (u.firstName .. " " .. u.lastName), u.emailAddress))
end

if sb then sb:stop() end
