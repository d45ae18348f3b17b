-- The authorization_code flow: send the user to the consent page, take the redirect back,
-- exchange the code for a user token, and act as that user.
--
-- Against a real program it prints the authorize URL and asks for the URL the browser was
-- redirected to. Without ACHIEVERS_BASE_URL it runs against an in-process sandbox, whose
-- consent() approves as a user would in a browser.
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
  redirect_uri = os.getenv("ACHIEVERS_REDIRECT_URI") or "http://127.0.0.1:8910/callback",
  scope = { "read", "write" },
}

-- 1. where to send the user; keep `state` to check the redirect against, and the PKCE
--    verifier (RFC 7636) to prove the code is ours: only its S256 hash is in the URL
local url, state, verifier = client:authorize_url()
print("open this in a browser: " .. url)

-- 2. the redirect back to us carries ?code=...&state=...
local redirect
if sb then
  local code = sb:consent { user = "adele.olson", scope = "read,write",
    code_challenge = url:match("code_challenge=([%w_-]+)") }
  redirect = "http://127.0.0.1:8910/callback?code=" .. code .. "&state=" .. state
else
  io.write("paste the URL you were redirected to: ")
  redirect = io.read("*l")
end

-- 3. check state, exchange the code (with the verifier)
local token, err = client:handle_callback(redirect, state, verifier)
if not token then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("user token: " .. tostring(token))

-- 4. act as that user
local me = client:with_token(token)
local options = assert(me:request { method = "OPTIONS", path = "recognitions" })
print("recognition programs this user can use:")
for _, module in ipairs(options.items) do
  local names = {}
  for _, c in ipairs(module.criteria or {}) do names[#names + 1] = c.name end
  print(("  %s: %s"):format(module.name, table.concat(names, ", ")))
end

if sb then sb:stop() end
