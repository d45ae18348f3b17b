-- The guide "Send a Recognition": a person signs in (authorization code), the criteria they
-- may use for the recipients come from OPTIONS /recognitions, then the recognition is sent.
--
-- Without ACHIEVERS_BASE_URL it runs against an in-process sandbox, whose consent() stands in
-- for the person approving in a browser.
local achievers = require("achievers")

local sb
local base_url = os.getenv("ACHIEVERS_BASE_URL")
local client_id, client_secret = os.getenv("ACHIEVERS_CLIENT_ID"), os.getenv("ACHIEVERS_CLIENT_SECRET")
if not base_url then
  sb = require("achievers.sandbox").start {}
  base_url, client_id, client_secret = sb.url, sb.client_id, sb.client_secret
end

local client = achievers.client {
  base_url = base_url, client_id = client_id, client_secret = client_secret,
  redirect_uri = os.getenv("ACHIEVERS_REDIRECT_URI") or "http://127.0.0.1:8910/callback",
  scope = { "read", "write" },
}

-- sign in as the sender
-- (keep state and the PKCE verifier for the redirect; only the verifier's hash is in the URL)
local url, state, verifier = client:authorize_url()
local redirect
if sb then
  redirect = "http://127.0.0.1:8910/callback?state=" .. state .. "&code=" ..
    sb:consent { user = "adele.olson", scope = "read,write", code_challenge = url:match("code_challenge=([%w_-]+)") }
else
  print("open this in a browser: " .. url)
  io.write("paste the URL you were redirected to: ")
  redirect = io.read("*l")
end
local token = assert(client:handle_callback(redirect, state, verifier))
local me = client:with_token(token)

-- the criteria this sender may use for these recipients
local nominees = { arg[1] or "brady.garfinkel" }
local options = assert(me:recognition_criteria { nominees = nominees })
local chosen
for _, module in ipairs(options.items) do
  for _, criterion in ipairs(module.criteria or {}) do
    print(("  criterion %d: %s / %s (%s points)"):format(criterion.id, module.name, criterion.name,
      tostring(criterion.points or 0)))
    chosen = chosen or criterion
  end
end
assert(chosen, "no criterion available for these recipients")

local rec, err = me:send_recognition {
  nominees = nominees,
  criterionId = chosen.id,
  recognitionText = arg[2] or "Thanks for covering the release night! 🎉",
}
if not rec then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(("sent recognition %d for '%s': %s"):format(rec.id, chosen.name, rec.newsfeedEventURL))

if sb then sb:stop() end
